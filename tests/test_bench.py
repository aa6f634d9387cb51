"""The benchmark harness itself (bench/bitrate.py) on a tiny volume."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bitrate  # noqa: E402
from codecs_registry import SliceCodec, all_codecs  # noqa: E402

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
    for fig in ("bitrate.png", "slices.png", "confidence.png"):
        assert (out / fig).stat().st_size > 1000


def test_headroom_statistics(sample):
    """bench/headroom.py: its pass statistic, voxcodec's passes from a stream, and the probe, on a tiny volume."""
    import headroom

    r = np.tile(np.arange(4), 250)
    assert headroom.conditional_bits(r, np.zeros_like(r)) == pytest.approx(2.0)
    assert headroom.conditional_bits(r, r) == pytest.approx(0.0)  # the context says it all
    vol = np.ascontiguousarray(sample[:4, :48, :40])
    stream, passes = headroom.voxcodec_passes(vol, "none")
    assert 0 < stream < 8 and sum(p["share"] for p in passes.values()) == pytest.approx(1.0)
    assert all(0 <= p["voxcodec"] < 9 for p in passes.values())
    args = type("Args", (), {"neighbours": 12, "hidden": 8, "steps": 3, "samples": 100})
    bits = headroom.probe_pass(vol, "C", 0, args, others=[vol[::-1].copy()])
    assert 0 < bits < 12
