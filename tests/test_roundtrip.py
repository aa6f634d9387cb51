import numpy as np
import pytest

import voxcodec
from voxcodec import Decoder, Encoder


def _random_volume(rng, shape, dtype):
    """Smooth-ish random data with noise, so predictions matter; sometimes constant or extreme."""
    kind = rng.integers(0, 4)
    top = np.iinfo(dtype).max
    if kind == 0:
        return rng.integers(0, top, shape, dtype=dtype, endpoint=True)
    if kind == 1:
        return np.full(shape, rng.integers(0, top, endpoint=True), dtype)
    base = np.cumsum(np.cumsum(rng.normal(size=shape), axis=-1), axis=-2)
    base = (base - base.min()) / max(np.ptp(base), 1e-9)
    span = top if kind == 2 else int(rng.integers(1, 300))
    noise = rng.normal(scale=max(span / 50, 0.5), size=shape)
    return np.clip(base * span + noise + rng.integers(0, top - min(span, top) + 1), 0, top).astype(dtype)


@pytest.mark.parametrize("seed", range(12))
def test_random_shapes_roundtrip(seed):
    rng = np.random.default_rng(seed)
    dtype = (np.uint8, np.uint16)[seed % 2]
    shape = tuple(int(rng.integers(1, n)) for n in (7, 45, 45))
    a = _random_volume(rng, shape, dtype)
    depth = int(rng.integers(1, 5))
    data = voxcodec.encode(a, block_depth=depth)
    out = voxcodec.decode(data)
    assert out.dtype == a.dtype and out.shape == a.shape
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 1, 2), (2, 1, 1), (1, 3, 1), (3, 2, 17), (2, 33, 1)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiny_shapes(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)
    np.testing.assert_array_equal(voxcodec.decode(voxcodec.encode(a)), a)


def test_extreme_values_uint16(em_u8):
    a = em_u8[:4].astype(np.uint16) * 257  # full 16-bit range, every 257th value
    a[0, 0, 0], a[-1, -1, -1] = 0, 65535
    data = voxcodec.encode(a)
    np.testing.assert_array_equal(voxcodec.decode(data), a)


def test_constant_slices_cost_almost_nothing(em_u8):
    """A zarr chunk padded along z with its fill value: the padding must not cost more than a few bits."""
    padded = np.zeros((36, 96, 96), np.uint8)
    padded[:12] = em_u8
    padded[20] = 7
    real = voxcodec.encode(em_u8, block_depth=12)
    data = voxcodec.encode(padded, block_depth=36)
    np.testing.assert_array_equal(voxcodec.decode(data), padded)
    assert len(data) < len(real) * 1.03


def test_empty_depth_volume():
    a = np.zeros((0, 5, 6), np.uint8)
    out = voxcodec.decode(voxcodec.encode(a))
    assert out.shape == (0, 5, 6) and out.dtype == np.uint8


def test_two_block_stream_roundtrip(em_u8, em_stream):
    data, blocks = em_stream
    assert len(blocks) == 2 and all(b.mode == "tables" and b.model_bytes == 16 for b in blocks)
    np.testing.assert_array_equal(voxcodec.decode(data), em_u8)


def test_black_margins_cost_almost_nothing(sample):
    """A volume inside black margins that drift from slice to slice (a registered stack) costs little
    more than the volume itself."""
    from make_golden import framed

    vol = np.ascontiguousarray(sample[:8, :96, :96])
    big = framed(vol, 1)  # 12-pixel margins around 96 x 96
    for preset in ("fast", "default"):
        plain, margins = (len(voxcodec.encode(a, preset=preset)) for a in (vol, big))
        extra_bits_per_margin_voxel = 8 * (margins - plain) / (big.size - vol.size)
        # most of it is the border between image and margin (the 96 x 96 image has a long perimeter for
        # its 12-pixel margins), coded at about 2 bits a voxel; the margins themselves cost ~0 (0.31-0.33 here)
        assert extra_bits_per_margin_voxel < 0.35, (preset, extra_bits_per_margin_voxel)
        np.testing.assert_array_equal(voxcodec.decode(voxcodec.encode(big, preset=preset)), big)


def test_streaming_encoder_emits_blocks_as_completed(em_u8, tmp_path):
    path = tmp_path / "s.vxc"
    seen = []
    with Encoder(path, slice_shape=em_u8.shape[1:], block_depth=5, on_block=seen.append) as enc:
        for z, s in enumerate(em_u8):
            done = enc.write(s)
            # a block is written exactly when its last slice arrives
            assert [b.index for b in done] == ([(z + 1) // 5 - 1] if (z + 1) % 5 == 0 else [])
        assert len(seen) == 2
    assert len(seen) == 3 and seen[-1].depth == 2  # close() flushes the partial block
    np.testing.assert_array_equal(voxcodec.decode(path), em_u8)


def test_random_access_reads_only_needed_blocks(em_u8, em_stream, monkeypatch):
    data, _ = em_stream
    dec = Decoder(data)
    assert dec.shape == em_u8.shape and len(dec) == 2
    calls = []
    orig = dec.read_block
    monkeypatch.setattr(dec, "read_block", lambda i, *a: calls.append(i) or orig(i, *a))
    np.testing.assert_array_equal(dec.read(7, 10), em_u8[7:10])
    assert calls == [1]
    np.testing.assert_array_equal(dec[3], em_u8[3])
    np.testing.assert_array_equal(dec[-1], em_u8[-1])
    np.testing.assert_array_equal(dec[4:8], em_u8[4:8])
    np.testing.assert_array_equal(dec.read_block(0), em_u8[:6])


def test_tiles_cover_the_slice(sample):
    a = np.ascontiguousarray(sample[:3, :70, :90])
    data = voxcodec.encode(a, tile=(32, 40), block_depth=2)
    dec = Decoder(data)
    assert len(dec) == 2 * 3 * 3
    np.testing.assert_array_equal(dec.read(), a)


def test_wrong_inputs_raise_clear_errors():
    with pytest.raises(voxcodec.UnsupportedError, match="uint8, uint16, int8 and int16"):
        voxcodec.encode(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(voxcodec.UnsupportedError, match="uint8, uint16, int8 and int16"):
        voxcodec.encode(np.zeros((2, 3, 3), np.int32))  # int16 is coded (test_signed.py)
    with pytest.raises(voxcodec.UnsupportedError, match="3-D"):
        voxcodec.encode(np.zeros((2, 3, 3, 2), np.uint8))
    with pytest.raises(voxcodec.UnsupportedError, match="at least 1 x 1"):
        voxcodec.encode(np.zeros((2, 0, 3), np.uint8))
    enc = Encoder(None, slice_shape=(4, 4))
    with pytest.raises(voxcodec.UnsupportedError, match="shape"):
        enc.write(np.zeros((5, 4), np.uint8))
    with pytest.raises(voxcodec.UnsupportedError, match="uint16"):
        enc.write(np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError, match="unknown preset"):
        Encoder(None, slice_shape=(4, 4), preset="ultra")


def test_big_endian_input_is_coded_by_value():
    a = np.arange(2 * 9 * 11, dtype=">u2").reshape(2, 9, 11) * 3
    out = voxcodec.decode(voxcodec.encode(a))
    np.testing.assert_array_equal(out, a)
    assert out.dtype == np.uint16


def test_encoder_refuses_layouts_a_decoder_refuses():
    with pytest.raises(voxcodec.UnsupportedError, match="tile"):
        Encoder(None, slice_shape=(20000, 20000), tile=(10000, 10000))
    with pytest.raises(voxcodec.UnsupportedError, match="block_depth"):
        Encoder(None, slice_shape=(2048, 2048), block_depth=1000)
