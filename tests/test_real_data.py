"""The real EM volumes in ../shared/data: every one round-trips bit-exactly through the CLI and
codes below PNG (each slice alone, zlib level 9), with the fast preset (the benchmarks in bench/ measure
every preset). Skipped where the data is not present."""

import numpy as np
import pytest
import tifffile

from conftest import SHARED_DATA
from test_cli import voxcodec_cmd

VOLUMES = sorted(SHARED_DATA.glob("*.tif")) if SHARED_DATA.is_dir() else []


@pytest.mark.skipif(not VOLUMES, reason=f"no EM volumes in {SHARED_DATA}")
@pytest.mark.parametrize("path", VOLUMES, ids=[p.stem for p in VOLUMES])
def test_cli_roundtrip_is_exact_and_beats_png(path, tmp_path):
    import imagecodecs

    vxc, back = tmp_path / "v.vxc", tmp_path / "back.tif"
    voxcodec_cmd("encode", str(path), "-o", str(vxc), "--preset", "fast", "-q")  # the presets differ in training only
    voxcodec_cmd("decode", str(vxc), "-o", str(back), "-q")
    original = tifffile.imread(path)
    decoded = tifffile.imread(back)
    assert decoded.dtype == original.dtype and decoded.shape == original.shape
    assert np.array_equal(decoded, original)
    png_bits = sum(8 * len(imagecodecs.png_encode(s, level=9)) for s in original)
    assert 8 * vxc.stat().st_size < png_bits
