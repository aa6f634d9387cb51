"""The command line never codes a wrong volume and never ends in a traceback: every input is read
completely or refused with one line and exit status 2, before anything is written."""

import subprocess

import numpy as np
import pytest
import tifffile

from conftest import console_script
from voxcodec_cli.main import main


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("voxcodec: warning")]
    assert len(lines) == 1 and lines[0].startswith("voxcodec: error: "), err
    assert "Traceback" not in err
    return lines[0]


def roundtrip(tmp_path, src) -> np.ndarray:
    vxc, back = tmp_path / "v.vxc", tmp_path / "back.npy"
    assert main(["encode", str(src), "-o", str(vxc), "--preset", "fast", "-q"]) == 0
    assert main(["decode", str(vxc), "-o", str(back), "-q"]) == 0
    assert main(["verify", str(vxc), "--against", str(src), "-q"]) == 0
    return np.load(back)


def refused(tmp_path, capsys, src, *match) -> str:
    out = tmp_path / "refused.vxc"
    assert main(["encode", str(src), "-o", str(out), "-q"]) == 2
    line = one_error_line(capsys.readouterr().err)
    for m in match:
        assert m in line, line
    assert not out.exists() and not (tmp_path / "refused.vxc.part").exists()
    return line


# -- the four inputs that gave a wrong volume with exit status 0 ------------------------------------------
def test_tiff_written_page_by_page_is_read_whole(tmp_path, em_u8):
    src = tmp_path / "pages.tif"
    with tifffile.TiffWriter(src) as tw:
        for s in em_u8:
            tw.write(s)
    np.testing.assert_array_equal(roundtrip(tmp_path, src), em_u8)


def test_truncated_tiff_is_refused(tmp_path, capsys, sample):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, sample[:30])
    src = tmp_path / "cut.tif"
    src.write_bytes(full.read_bytes()[:300_000])  # 30 slices of 16 kB: about 18 complete
    refused(tmp_path, capsys, src, "cut.tif")


def test_slice_folder_is_taken_in_natural_order(tmp_path, em_u8):
    import imagecodecs

    folder = tmp_path / "acq"
    folder.mkdir()
    for z, s in enumerate(em_u8):  # s0.png ... s11.png: plain sorting would give 0, 1, 10, 11, 2, ...
        (folder / f"s{z}.png").write_bytes(imagecodecs.png_encode(s))
    np.testing.assert_array_equal(roundtrip(tmp_path, folder), em_u8)


def test_rgb_image_is_refused_with_a_hint(tmp_path, capsys, sample):
    src = tmp_path / "rgb.tif"
    tifffile.imwrite(src, np.stack([sample[0]] * 3, axis=-1), photometric="rgb")  # (128, 128, 3)
    line = refused(tmp_path, capsys, src, "rgb.tif")
    assert "channel" in line


# -- other bad inputs: one line, exit 2 ---------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [("empty.tif", b""), ("empty.npy", b""), ("text.npy", b"1 2 3\n4 5 6\n"),
                                           ("junk.tif", b"this is not a tiff file at all")])
def test_unreadable_files_are_refused(tmp_path, capsys, name, content):
    src = tmp_path / name
    src.write_bytes(content)
    refused(tmp_path, capsys, src, name)


def test_truncated_png_in_a_folder_is_named(tmp_path, capsys, em_u8):
    import imagecodecs

    folder = tmp_path / "acq"
    folder.mkdir()
    for z, s in enumerate(em_u8[:4]):
        (folder / f"s{z}.png").write_bytes(imagecodecs.png_encode(s))
    data = (folder / "s2.png").read_bytes()
    (folder / "s2.png").write_bytes(data[:len(data) // 2])
    refused(tmp_path, capsys, folder, "s2.png")


def test_other_bad_inputs(tmp_path, capsys):
    refused(tmp_path, capsys, tmp_path / "missing.tif", "missing.tif")
    np.save(tmp_path / "f.npy", np.zeros((2, 8, 8), np.float32))
    refused(tmp_path, capsys, tmp_path / "f.npy", "uint8, uint16, int8 and int16")
    (tmp_path / "v.raw").write_bytes(b"\0" * 64)
    refused(tmp_path, capsys, tmp_path / "v.raw", "v.raw")
    (tmp_path / "nothing").mkdir()
    refused(tmp_path, capsys, tmp_path / "nothing", "nothing")


# -- outputs and ranges ----------------------------------------------------------------------------------------
@pytest.fixture
def stream(tmp_path, em_u8):
    src = tmp_path / "v.npy"
    np.save(src, em_u8)
    vxc = tmp_path / "v.vxc"
    assert main(["encode", str(src), "-o", str(vxc), "--block-depth", "4", "--preset", "fast", "-q"]) == 0
    return vxc


def test_decode_z_out_of_range_is_an_error(tmp_path, capsys, stream):
    for z in ("100:200", "10:13", "5:3", "a:b"):
        assert main(["decode", str(stream), "-o", str(tmp_path / "x.tif"), "--z", z, "-q"]) == 2
        assert "--z" in one_error_line(capsys.readouterr().err)
        assert not (tmp_path / "x.tif").exists()
    assert main(["decode", str(stream), "-o", str(tmp_path / "x.npy"), "--z", "8:12", "-q"]) == 0


def test_output_is_checked_before_any_work(tmp_path, capsys, stream, monkeypatch):
    import voxcodec

    def no_work(*a, **k):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(voxcodec, "Encoder", no_work)
    monkeypatch.setattr(voxcodec, "Decoder", no_work)
    src = tmp_path / "v.npy"
    for args, match in ((["encode", str(src), "-o", str(tmp_path)], "is a folder"),
                        (["encode", str(src), "-o", str(tmp_path / "no" / "such" / "x.vxc")], "does not exist"),
                        (["encode", str(src), "-o", str(stream)], "--overwrite"),
                        (["decode", str(stream), "-o", str(tmp_path)], "is a folder"),
                        (["decode", str(stream), "-o", str(tmp_path / "nowhere" / "x.tif")], "does not exist")):
        assert main(args) == 2
        assert match in one_error_line(capsys.readouterr().err)


def test_odd_output_extension_is_warned_about(tmp_path, capsys, stream):
    assert main(["decode", str(stream), "-o", str(tmp_path / "back.raw"), "-q"]) == 0
    assert "warning: " in capsys.readouterr().err and tifffile.imread(tmp_path / "back.raw").shape[0] == 12


def test_verify_salvage_of_nothing_fails(tmp_path, capsys, stream):
    cut = tmp_path / "cut.vxc"
    cut.write_bytes(stream.read_bytes()[:600])  # the file header and no complete block
    assert main(["verify", str(cut), "--salvage"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert main(["verify", str(cut)]) == 1
    assert "decode --salvage" in one_error_line(capsys.readouterr().err)


def test_info_json_into_a_closed_pipe_is_quiet(tmp_path):
    src, vxc = tmp_path / "z.npy", tmp_path / "z.vxc"
    np.save(src, np.zeros((200, 16, 16), np.uint8))
    assert main(["encode", str(src), "-o", str(vxc), "--block-depth", "1", "--tile", "8x8", "-q"]) == 0
    cmd = console_script("voxcodec", "voxcodec_cli.main") + ["info", str(vxc), "--json"]
    big = subprocess.run(cmd, capture_output=True, text=True)
    assert big.returncode == 0 and len(big.stdout) > 200_000  # more than a pipe holds
    res = subprocess.run(" ".join(cmd) + " | head -c 10", shell=True, capture_output=True, text=True,
                         executable="/bin/bash")
    assert res.stdout == big.stdout[:10] and res.stderr == ""


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, stream, monkeypatch):
    import voxcodec

    def boom(*a, **k):
        raise RuntimeError("something unexpected")

    monkeypatch.setattr(voxcodec, "Decoder", boom)
    assert main(["info", str(stream)]) == 3
    assert "--debug" in one_error_line(capsys.readouterr().err)
    with pytest.raises(RuntimeError):
        main(["--debug", "info", str(stream)])
    with pytest.raises(RuntimeError):
        main(["info", str(stream), "--debug"])
