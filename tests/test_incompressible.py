"""Format 2: no block costs more than its raw voxels plus a small fixed header (stored blocks), and a
slice of few values over a wide range (a uint16 mask) is coded by rank (listed palettes)."""

import numpy as np
import pytest

import voxcodec
from voxcodec.core.container import FLAG_RAW, HEADER_SIZE


@pytest.mark.parametrize("dtype, limit", [(np.uint8, 8.01), (np.uint16, 16.02)])
def test_noise_costs_at_most_its_raw_size(dtype, limit):
    noise = np.random.default_rng(1).integers(0, np.iinfo(dtype).max + 1, (16, 256, 256), dtype=dtype)
    data = voxcodec.encode(noise, preset="fast")
    bits = 8 * len(data) / noise.size
    assert bits <= limit, bits  # it was 8.12 and 16.48 bits per voxel with format 1
    with voxcodec.Decoder(data) as dec:
        assert all(dec.block_header(i).flags == FLAG_RAW for i in range(len(dec.index)))
        np.testing.assert_array_equal(dec[...], noise)


def test_no_block_costs_more_than_raw_plus_its_header(sample):
    """Tiles of noise beside tiles of EM: each block stays within its voxels' bytes + a block header."""
    rng = np.random.default_rng(2)
    vol = np.ascontiguousarray(sample[:8, :64, :128])
    vol[:, :, 64:] = rng.integers(0, 256, (8, 64, 64), dtype=np.uint8)
    with voxcodec.Encoder(None, slice_shape=vol.shape[1:], tile=(64, 64), block_depth=8, preset="fast") as enc:
        enc.write(vol)
        data = enc.getvalue()
    for b in enc.blocks:
        assert b.nbytes <= b.voxels + HEADER_SIZE
    assert [b.model_bytes for b in enc.blocks][1] == 0  # the noise tile is stored
    np.testing.assert_array_equal(voxcodec.decode(data), vol)


def test_a_small_uint16_mask_codes_by_rank():
    mask = (np.random.default_rng(3).random((16, 32, 32)) < 0.3).astype(np.uint16) * 65535
    data = voxcodec.encode(mask, preset="fast")
    assert 8 * len(data) / mask.size < 2.0  # 15.2 bits per voxel with format 1 (a bitmap of 65536 values)
    np.testing.assert_array_equal(voxcodec.decode(data), mask)
