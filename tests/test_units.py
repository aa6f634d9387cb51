import numpy as np
import pytest

from voxcodec.core import palette
from voxcodec.core.legacy import context as ctx


def test_palette_nearest_rank():
    values = np.array([3, 10, 11, 40], np.int64)
    pred = np.array([0, 3, 6, 7, 10, 25, 26, 99])
    np.testing.assert_array_equal(palette.nearest_rank(values, pred), [0, 0, 0, 1, 1, 2, 3, 3])


def test_slice_palette_refuses_values_outside_the_block_range():
    s = np.array([[3, 5], [5, 9]], np.uint8)
    kind, values = palette.choose(s, 3, 9)
    assert kind in (palette.NORMAL, palette.PALETTE, palette.LISTED)
    if values is not None:
        assert values.tolist() == [3, 5, 9]
    with pytest.raises(ValueError):
        palette.choose(s, 4, 9)
    with pytest.raises(ValueError):
        palette.choose(s, 3, 8)


def test_palette_chosen_for_sparse_slices_only():
    rng = np.random.default_rng(0)
    sparse = rng.integers(0, 256, (256, 256)) // 16 * 16
    dense = rng.integers(0, 256, (256, 256))
    assert palette.choose(sparse, 0, 255)[0] == palette.LISTED  # 16 values: a list is cheaper than a bitmap
    stretched = rng.integers(0, 256, (256, 256)) // 2 * 2  # 128 values: the bitmap is cheaper
    assert palette.choose(stretched, 0, 255)[0] == palette.PALETTE
    binary = (rng.random((32, 32)) < 0.3) * 65535  # a small uint16 mask: 2 values over 65536
    assert palette.choose(binary, 0, 65535)[0] == palette.LISTED
    assert palette.choose(dense, 0, 255) == (palette.NORMAL, None)
    assert palette.choose(np.full((9, 9), 4), 0, 255)[0] == palette.CONSTANT


def test_gather_take_scatter_are_consistent():
    rng = np.random.default_rng(1)
    h, w = 23, 31
    levels = 3
    pad = ctx.pad_width(levels)
    img = rng.integers(-128, 128, (2, h, w)).astype(np.float32)
    padded = np.zeros((2, h + 2 * pad, w + 2 * pad), np.float32)
    padded[:, pad:pad + h, pad:pad + w] = img
    rebuilt = np.zeros_like(img)
    for p in ctx.schedule(levels):
        vals = ctx.take(img, p)
        ctx.scatter(rebuilt, vals, p, (h, w))
        f = ctx.gather(padded, padded, p, (h, w), pad, True)
        assert f.shape == (len(p.inslice) + len(p.prev), 2, vals.shape[1])
        # the previous-slice feature at offset (0, 0) is the voxel itself (prev = cur here)
        k = len(p.inslice) + p.prev.index((0, 0))
        np.testing.assert_array_equal(f[k], vals)
    np.testing.assert_array_equal(rebuilt, img)
