"""The benchmark harness itself (bench/bitrate.py, bench/codecs_registry.py) on a tiny volume."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bitrate  # noqa: E402
from codecs_registry import DEFAULT_CODECS, Paq8px, SliceCodec, all_codecs, parse_pgm, pgm_bytes  # noqa: E402

FIELDS = {"volume", "codec", "params", "bits_per_voxel", "ratio", "encode_MBps", "decode_MBps", "peak_rss_MB",
          "lossless", "slice_bits_per_voxel", "shape", "dtype"}


@pytest.fixture()
def tiny(tmp_path, sample):
    path = tmp_path / "tiny.tif"
    tifffile.imwrite(path, np.ascontiguousarray(sample[:4, :48, :40]), photometric="minisblack")
    return path


@pytest.mark.parametrize("name", ["png", "jpegxl-e7", "jpegls", "webp-ll", "jpeg2k-ll", "zstd-19", "xz-9",
                                  "voxcodec-fast"])
def test_records_are_complete_and_lossless(tiny, name):
    rec = bitrate.run_one(tiny, all_codecs()[name]())
    assert FIELDS <= set(rec)
    assert rec["lossless"] is True
    assert rec["codec"] == name and rec["volume"] == "tiny"
    assert 0 < rec["bits_per_voxel"] < 12 and rec["ratio"] == pytest.approx(8 / rec["bits_per_voxel"], rel=1e-6)
    assert rec["encode_MBps"] > 0 and rec["decode_MBps"] > 0 and rec["peak_rss_MB"] > 0
    if rec["slice_bits_per_voxel"] is not None:
        assert len(rec["slice_bits_per_voxel"]) == 4
        assert sum(rec["slice_bits_per_voxel"]) / 4 == pytest.approx(rec["bits_per_voxel"], rel=1e-6)


def test_a_codec_that_corrupts_data_is_not_lossless(tiny):
    import imagecodecs

    def flip_one(b):
        out = imagecodecs.png_decode(b).copy()
        out[3, 7] ^= 1
        return out

    bad = SliceCodec("png-broken", lambda s: imagecodecs.png_encode(s), flip_one, {})
    assert bitrate.run_one(tiny, bad)["lossless"] is False
    shape_bad = SliceCodec("png-transposed", lambda s: imagecodecs.png_encode(s),
                           lambda b: imagecodecs.png_decode(b).T.copy().T, {})
    assert bitrate.run_one(tiny, shape_bad)["lossless"] is True  # same voxels: still lossless


def test_whole_run_writes_results_tables_and_figures(tiny, tmp_path):
    out = tmp_path / "out"
    rc = bitrate.main([str(tiny), "--out", str(out), "--codecs", "png", "zstd-19", "--presets", "fast"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["codec"] for r in res["records"]} == {"voxcodec-fast", "png", "zstd-19"}
    assert res["machine"]["cores"] and "voxcodec" in res["machine"]["versions"]
    md = (out / "results.md").read_text()
    assert "| voxcodec-fast |" in md and "MB/s" in md
    for fig in ("bitrate.png", "slices.png"):
        assert (out / fig).stat().st_size > 1000
    assert not (out / "confidence.png").exists()
    assert "torch" not in res["machine"]["versions"] and "torch" not in md


# -- the paq8px anchor, without paq8px: its PGM helpers, and its plumbing around a stand-in program ---------

#: a stand-in for paq8px with its command line (``-8 IN OUT``, ``-d IN OUT``, usage without arguments):
#: the "archive" is a marker and the input unchanged, so bits = 8 x (PGM size + marker)
FAKE_PAQ8PX = """import shutil, sys
args = sys.argv[1:]
if not args:
    print("paq8px archiver v999 (a stand-in for the tests)")
    sys.exit(0)
if args[0] == "-d":
    data = open(args[1], "rb").read()
    assert data.startswith(b"FAKE"), "not an archive"
    open(args[2], "wb").write(data[4:])
else:
    assert args[0] == "-8", args
    open(args[2], "wb").write(b"FAKE" + open(args[1], "rb").read())
"""


@pytest.fixture()
def fake_paq8px(tmp_path):
    path = tmp_path / "paq8px"
    path.write_text(f"#!{sys.executable}\n" + FAKE_PAQ8PX)
    path.chmod(0o755)
    return path


def test_pgm_write_and_parse():
    s = np.arange(35, dtype=np.uint8).reshape(5, 7)
    data = pgm_bytes(s)
    assert data.startswith(b"P5\n7 5\n255\n") and len(data) == len(b"P5\n7 5\n255\n") + 35
    out = parse_pgm(data)
    assert out.dtype == np.uint8 and out.shape == (5, 7) and np.array_equal(out, s)
    # other writers' headers: comments, other whitespace
    assert np.array_equal(parse_pgm(b"P5 # made elsewhere\n7\t5\r\n# depth\n255\n" + s.tobytes()), s)
    for bad in (b"P2\n7 5\n255\n" + s.tobytes(),  # ASCII PGM
                b"P5\n7 5\n65535\n" + s.tobytes(),  # 16-bit
                b"P5\n7 5\n255\n" + s.tobytes()[:-1],  # a voxel short
                b"P5\n7 5\n255\n" + s.tobytes() + b"\0",  # a byte over
                b"P5\n7 5\n255", b""):
        with pytest.raises(ValueError):
            parse_pgm(bad)
    with pytest.raises(ValueError):
        pgm_bytes(s.astype(np.uint16))


def test_paq8px_codec_plumbing(tiny, fake_paq8px, sample):
    assert "paq8px" not in all_codecs() and "paq8px" not in DEFAULT_CODECS
    with pytest.raises(FileNotFoundError):
        Paq8px(fake_paq8px.parent / "missing")
    codec = all_codecs(paq8px=fake_paq8px)["paq8px"]()
    assert codec.params["version"] == "v999" and codec.params["level"] == 8
    rec = bitrate.run_one(tiny, codec)
    assert rec["lossless"] is True and rec["codec"] == "paq8px"
    per_slice = 8 * (len(b"FAKEP5\n40 48\n255\n") + 48 * 40)
    assert rec["slice_bits_per_voxel"] == [per_slice / (48 * 40)] * 4
    with pytest.raises(ValueError, match="uint8"):
        codec.encode(np.zeros((2, 4, 4), np.uint16))


def test_whole_run_with_paq8px(tiny, fake_paq8px, tmp_path):
    out = tmp_path / "out"
    rc = bitrate.main([str(tiny), "--out", str(out), "--codecs", "png", "--presets", "fast", "--no-plots",
                       "--paq8px", str(fake_paq8px)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["codec"] for r in res["records"]] == ["voxcodec-fast", "png", "paq8px"]
    assert "| paq8px |" in (out / "results.md").read_text()
    wide = tmp_path / "wide.tif"
    tifffile.imwrite(wide, np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(SystemExit):  # refused before any codec runs
        bitrate.main([str(wide), "--out", str(out), "--paq8px", str(fake_paq8px)])
    with pytest.raises(SystemExit):  # paq8px named without its program
        bitrate.main([str(tiny), "--out", str(out), "--codecs", "paq8px"])


def test_speed_paq8px_record_and_report(tiny, fake_paq8px):
    import speed

    r = speed.run_paq8px(tiny, str(fake_paq8px), ["png", "voxcodec-fast"])
    assert r["lossless"] and r["shape"] == [1, 48, 40] and r["start_seconds"] > 0
    assert set(r["others"]) == {"png", "voxcodec-fast"} and all(o["lossless"] for o in r["others"].values())
    res = {"machine": "test", "cores": os.cpu_count(), "command": "x", "per_core": [], "machine_wide": [],
           "paq8px": [r]}
    md = speed.report(res)
    assert "paq8px anchor" in md and "48x40" in md and "| voxcodec-fast |" in md


def test_paq8px_on_every_slice_of_a_volume(tiny, fake_paq8px, tmp_path, capsys):
    """bench/paq8px_volume.py with the stand-in: every slice coded once (the second run reads them all from
    its cache), the sum of the slices as bits per voxel, voxcodec and JPEG-XL e7 beside it, all lossless."""
    import paq8px_volume

    out = tmp_path / "pv"
    argv = [str(tiny), "--paq8px", str(fake_paq8px), "--out", str(out), "--jobs", "1", "--presets", "fast"]
    assert paq8px_volume.main(argv) == 0
    res = json.loads((out / "paq8px_volume.json").read_text())
    rows = res["rows"]
    pgm = len(b"P5\n40 48\n255\n") + 48 * 40 + 4  # the stand-in's archive: marker + PGM
    assert rows["paq8px -8 (each slice alone, 2-D)"]["bits_per_voxel"] == pytest.approx(8 * pgm / (48 * 40))
    assert len(res["slices"]) == 4 and all(r["lossless"] for r in rows.values())
    assert rows["JPEG-XL e7 (each slice)"]["x_e7"] == 1.0 and "voxcodec fast (3-D)" in rows
    cache = json.loads((out / "paq8px_cache.json").read_text())
    assert len(cache) == 4
    capsys.readouterr()
    assert paq8px_volume.main(argv) == 0  # the same binary on the same slices: read from the cache
    assert "4 slices cached, 0 to code" in capsys.readouterr().out
