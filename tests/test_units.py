import numpy as np
import pytest

from voxcodec.core import context as ctx
from voxcodec.core import palette
from voxcodec.core.entropy import detokenize, n_tokens, tokenize, unzigzag, zigzag
from voxcodec.core.network import ModelConfig


def test_tokens_roundtrip_full_uint16_range():
    u = np.arange(0, 2 * 65536, dtype=np.int64)
    tok, nbits, extra = tokenize(u)
    assert tok.max() < n_tokens(u.max())
    assert (extra < (1 << nbits)).all()
    np.testing.assert_array_equal(detokenize(tok, extra), u)


def test_zigzag_roundtrip():
    r = np.arange(-70000, 70000)
    np.testing.assert_array_equal(unzigzag(zigzag(r)), r)
    assert zigzag(r).min() == 0


def test_palette_nearest_rank_and_roundtrip():
    import constriction

    values = np.array([3, 10, 11, 40], np.int64)
    pred = np.array([0, 3, 6, 7, 10, 25, 26, 99])
    np.testing.assert_array_equal(palette.nearest_rank(values, pred), [0, 0, 0, 1, 1, 2, 3, 3])
    enc = constriction.stream.queue.RangeEncoder()
    palette.encode(enc, palette.PALETTE, values, 0, 50)
    palette.encode(enc, palette.NORMAL, None, 0, 50)
    palette.encode(enc, palette.CONSTANT, np.array([37]), 0, 50)
    palette.encode(enc, palette.LISTED, values, 0, 50)
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    kind, got = palette.decode(dec, 0, 50)
    assert kind == palette.PALETTE
    np.testing.assert_array_equal(got, values)
    assert palette.decode(dec, 0, 50) == (palette.NORMAL, None)
    kind, got = palette.decode(dec, 0, 50)
    assert kind == palette.CONSTANT and got.tolist() == [37]
    kind, got = palette.decode(dec, 0, 50)
    assert kind == palette.LISTED
    np.testing.assert_array_equal(got, values)


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


def test_schedule_covers_every_voxel_once():
    for levels in range(0, 7):
        for shape in [(1, 1), (5, 3), (64, 64), (70, 33)]:
            count = np.zeros(shape, int)
            for p in ctx.schedule(levels):
                for y0, x0, step in p.grids:
                    count[y0::step, x0::step] += 1
            assert (count == 1).all()


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


@pytest.mark.parametrize("bad", [dict(levels=7), dict(hidden=(65, 8)), dict(bins=1)])
def test_model_config_validation(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad).validate()
