import json
import subprocess

import numpy as np
import tifffile

import voxcodec

from conftest import console_script
from voxcodec_cli.main import main


def voxcodec_cmd(*args, check=True):
    """Run the installed console script (falls back to the module when not on PATH)."""
    res = subprocess.run(console_script("voxcodec", "voxcodec_cli.main") + list(args), capture_output=True, text=True, timeout=600)
    if check:
        assert res.returncode == 0, res.stderr
    return res


def test_sample_encode_info_decode_verify(tmp_path):
    tif, vxc, back = tmp_path / "sample.tif", tmp_path / "sample.vxc", tmp_path / "back.tif"
    voxcodec_cmd("sample", str(tif))
    voxcodec_cmd("encode", str(tif), "-o", str(vxc), "--preset", "fast")
    info = json.loads(voxcodec_cmd("info", str(vxc), "--json").stdout)
    assert info["shape"] == [64, 128, 128] and info["dtype"] == "uint8"
    assert 0 < info["bits_per_voxel"] < 8
    assert info["blocks"] and {"bits_per_voxel", "model_bytes", "data_crc32", "voxel_crc32"} <= set(info["blocks"][0])
    text = voxcodec_cmd("info", str(vxc)).stdout
    assert "bits/voxel" in text and "voxel crc" in text
    voxcodec_cmd("decode", str(vxc), "-o", str(back))
    np.testing.assert_array_equal(tifffile.imread(back), tifffile.imread(tif))
    assert "identical" in voxcodec_cmd("verify", str(vxc), "--against", str(tif)).stdout


def test_decode_z_range_and_npy(tmp_path, em_u8):
    src = tmp_path / "v.npy"
    np.save(src, em_u8)
    assert main(["encode", str(src), "-o", str(tmp_path / "v.vxc"), "--block-depth", "4", "-q"]) == 0
    assert main(["decode", str(tmp_path / "v.vxc"), "-o", str(tmp_path / "part.npy"), "--z", "3:9", "-q"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "part.npy"), em_u8[3:9])


def test_folder_of_slices(tmp_path, em_u8):
    folder = tmp_path / "acq"
    folder.mkdir()
    for z, s in enumerate(em_u8[:5]):
        tifffile.imwrite(folder / f"slice_{z:04d}.tif", s)
    assert main(["encode", str(folder), "-o", str(tmp_path / "f.vxc"), "-q"]) == 0
    assert main(["verify", str(tmp_path / "f.vxc"), "--against", str(folder)]) == 0


def test_verify_detects_damage_and_mismatch(tmp_path, em_u8, capsys):
    src = tmp_path / "v.npy"
    np.save(src, em_u8)
    vxc = tmp_path / "v.vxc"
    assert main(["encode", str(src), "-o", str(vxc), "--block-depth", "6", "-q"]) == 0
    other = em_u8.copy()
    other[7, 5, 5] ^= 1
    np.save(tmp_path / "other.npy", other)
    assert main(["verify", str(vxc), "--against", str(tmp_path / "other.npy"), "-q"]) == 1
    assert "block 1: decoded voxels differ" in capsys.readouterr().out
    data = bytearray(vxc.read_bytes())
    data[400] ^= 0x40
    vxc.write_bytes(bytes(data))
    assert main(["verify", str(vxc), "-q"]) == 1
    assert main(["decode", str(vxc), "-o", str(tmp_path / "x.tif"), "-q"]) == 1
    assert not (tmp_path / "x.tif").exists() and not (tmp_path / "x.tif.part").exists()


def test_errors_are_clear(tmp_path, capsys):
    assert main(["encode", str(tmp_path / "missing.tif")]) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "f.npy", np.zeros((2, 4, 4), np.float32))
    assert main(["encode", str(tmp_path / "f.npy"), "-o", str(tmp_path / "f.vxc")]) == 2
    assert "uint8, uint16, int8 and int16" in capsys.readouterr().err
    assert not (tmp_path / "f.vxc").exists()
    (tmp_path / "junk.vxc").write_bytes(b"hello world")
    assert main(["info", str(tmp_path / "junk.vxc")]) == 1
    assert "not a voxcodec" in capsys.readouterr().err
    (tmp_path / "exists.vxc").write_bytes(b"x")
    np.save(tmp_path / "ok.npy", np.zeros((1, 2, 2), np.uint8))
    assert main(["encode", str(tmp_path / "ok.npy"), "-o", str(tmp_path / "exists.vxc")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_help_explains_every_command():
    out = voxcodec_cmd("--help").stdout
    for word in ("encode", "decode", "info", "verify", "sample", "examples"):
        assert word in out
    enc = voxcodec_cmd("encode", "--help").stdout
    for opt in ("--preset", "--block-depth", "--tile", "--workers", "--resume", "--overwrite"):
        assert opt in enc
    assert main(["encode", "x.tif", "--tile", "banana"]) == 2
    assert main(["encode", "x.tif", "--prior", "auto"]) == 2  # voxcodec 0.5's options are gone: a usage error
    for cmd in ("encode", "decode", "info", "verify", "preview", "zoo", "sample"):
        assert voxcodec_cmd(cmd, "--help").stdout.startswith(f"Usage: voxcodec {cmd}")
    assert voxcodec_cmd("--version").stdout.strip() == f"voxcodec {voxcodec.__version__}"
