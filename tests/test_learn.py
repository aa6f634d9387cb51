"""Format 6 blocks (voxcodec.core.learn and the native engine): lossless on every kind of block, what the
parameters accept, and damaged payloads refused without a crash, a hang or other voxels."""

import time

import numpy as np
import pytest

from voxcodec import CorruptStreamError
from voxcodec.core import learn, palette
from voxcodec.core.presets import PRESETS

PARAMS = {name: cands[0] for name, cands in PRESETS.items()}
PARAMS["bands+prev2"] = learn.Params("mixing", causal=8, prev=5, prev2=9, interval_log=3, forget=3, ridge=10,
                                     band_log=4, casc=3, inputs=3, mant=1, lr=1, limit_log=1, sparse=2)
PARAMS["no causal"] = learn.Params("tables", causal=0, prev=9, prev2=0, interval_log=0, forget=1, ridge=30,
                                   band_log=0, casc=8)


def roundtrip(vol, params):
    payload, bits = learn.encode_block(vol, params)
    lo, hi, centre, shift = learn.value_range(vol)
    out = learn.decode_block(payload, params, vol.shape, lo, hi, centre, shift, vol.dtype)
    np.testing.assert_array_equal(out, vol)
    assert len(bits) == vol.shape[0] and abs(sum(bits) - 8 * len(payload)) <= 64
    return payload


def _blocks(sample):
    rng = np.random.default_rng(3)
    em = np.ascontiguousarray(sample[:4, :33, :47])
    yield "em", em
    yield "one voxel of two values", np.array([[[0, 1]]], np.uint8)
    yield "one row", np.ascontiguousarray(sample[:2, :1, :100])
    yield "one column", np.ascontiguousarray(sample[:2, :70, :1])
    yield "one slice", np.ascontiguousarray(sample[7:8, :50, :50])
    yield "noise", rng.integers(0, 256, (2, 30, 30), dtype=np.uint8)
    yield "full uint16 range", np.concatenate([rng.integers(0, 65536, (1, 20, 20)), np.full((1, 20, 20), 65535),
                                               np.zeros((1, 20, 20))]).astype(np.uint16)
    yield "uint16 EM with a shift", (sample[:3, :40, :40].astype(np.uint16) * 257)
    pal = em.copy()
    pal[0] = pal[0] // 16 * 16  # a listed palette
    pal[1] = pal[1] // 2 * 2  # a bitmap palette
    pal[2] = 200  # constant
    yield "palettes", pal
    mask = ((sample[:3, :24, :24] > 120) * 65535).astype(np.uint16)
    mask[1] = 0
    yield "uint16 mask", mask
    yield "saturated", np.clip(sample[:3, :40, :40].astype(np.int32) * 3 - 200, 0, 255).astype(np.uint8)
    # wide slices: the coder's chunks hold 65536 // 2100 = 31 rows, so each slice takes two
    yield "two chunks a slice", np.ascontiguousarray(np.tile(sample[:2, :40, :100], (1, 1, 21)))


@pytest.mark.parametrize("pname", list(PARAMS))
def test_every_kind_of_block_is_lossless(sample, pname):
    for name, vol in _blocks(sample):
        if vol.min() == vol.max():
            continue
        roundtrip(vol, PARAMS[pname])


def test_palette_slices_cost_less_than_normal_ones(sample):
    vol = np.ascontiguousarray(sample[:2, :64, :64]) // 4 * 4  # 64 of 256 values
    kinds, _, _ = learn.slice_headers(vol, *learn.value_range(vol)[:2])
    assert (kinds != palette.NORMAL).all()
    assert len(roundtrip(vol, PARAMS["default"])) < 0.85 * len(roundtrip(np.ascontiguousarray(sample[:2, :64, :64]),
                                                                        PARAMS["default"]))


def test_params_roundtrip_and_limits():
    for p in PARAMS.values():
        assert learn.Params.from_bytes(p.to_bytes()) == p
    for bad in [dict(causal=41), dict(prev=26), dict(prev2=10), dict(causal=0, prev=0, prev2=0), dict(interval_log=11),
                dict(forget=0), dict(ridge=41), dict(band_log=3), dict(casc=9), dict(inputs=1), dict(sparse=4),
                dict(coder="mixing"), dict(coder="other")]:
        with pytest.raises(ValueError):
            PARAMS["default"].replace(**bad).to_bytes()
    raw = bytearray(PARAMS["max"].to_bytes())
    for i, v in [(0, 2), (1, 3), (14, 4), (15, 9), (10, 7)]:
        bad = bytearray(raw)
        bad[i] = v
        with pytest.raises(CorruptStreamError, match="block 4: the model section"):
            learn.Params.from_bytes(bytes(bad), 4)
    with pytest.raises(CorruptStreamError):
        learn.Params.from_bytes(raw[:15])


def test_constant_and_wrong_type_blocks_are_refused_by_the_encoder():
    with pytest.raises(ValueError):
        learn.encode_block(np.full((2, 3, 3), 5, np.uint8), PARAMS["fast"])
    with pytest.raises(TypeError):
        learn.encode_block(np.zeros((2, 3, 3), np.int16), PARAMS["fast"])


@pytest.mark.parametrize("pname", ["fast", "max"])
def test_damaged_payloads_are_refused_quickly(sample, pname):
    vol = np.ascontiguousarray(sample[:3, :40, :40])
    params = PARAMS[pname]
    payload = roundtrip(vol, params)
    lo, hi, centre, shift = learn.value_range(vol)

    def dec(p, shape=vol.shape):
        return learn.decode_block(p, params, shape, lo, hi, centre, shift, vol.dtype, block=7)

    for bad, match in [(b"", "ends early"), (payload[:len(payload) // 2], "ends early"), (payload + b"\0", "left over"),
                       (b"\0\0\0\0" + payload[4:], "damaged start"),  # a first coder state below 2^16
                       (payload[:4] + bytes([payload[4] ^ 1]) + payload[5:], "damaged start or end|outside")]:
        with pytest.raises(CorruptStreamError, match=f"block 7: .*{match}"):
            dec(bad)
    rng = np.random.default_rng(11)
    for _ in range(200):  # flipped bits: refused, or other voxels (the block's voxel checksum catches those)
        b = bytearray(payload)
        b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
        try:
            dec(bytes(b))
        except CorruptStreamError:
            pass
    # a few bytes cannot make a decoder work for long: it stops once it has read far past the end
    t0 = time.perf_counter()
    with pytest.raises(CorruptStreamError, match="ends early"):
        dec(b"\0\0\1\0" + b"\0" * 4, shape=(64, 512, 512))  # a valid first state, then nothing
    assert time.perf_counter() - t0 < 5


def test_a_threads_workspace_is_reused_across_blocks_of_any_size(sample):
    """Each thread lends the engine one workspace, grown as blocks need: blocks coded after larger or smaller
    ones, on this thread or a fresh one, give the bytes and voxels of the engine's own allocations."""
    import threading

    from voxcodec.core import _native

    params = PRESETS["default"][0]
    big, small = np.ascontiguousarray(sample[:8]), np.ascontiguousarray(sample[8:12, :40, :72])
    raw = params.to_bytes()

    def alone(vol):  # the engine's own allocations (no workspace lent)
        lo, hi, centre, shift = learn.value_range(vol)
        kinds, starts, values = learn.slice_headers(vol, lo, hi)
        return _native.encode(vol, *vol.shape, vol.itemsize, lo, hi, centre, shift, raw, kinds, starts, values,
                              np.zeros(vol.shape[0], np.int64))

    want = {id(v): alone(v) for v in (big, small)}
    seen = []

    def run():
        for vol in (big, small, big):
            payload, _ = learn.encode_block(vol, params)
            assert payload == want[id(vol)]
            lo, hi, centre, shift = learn.value_range(vol)
            out = learn.decode_block(payload, params, vol.shape, lo, hi, centre, shift, vol.dtype)
            seen.append(np.array_equal(out, vol))

    run()
    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert seen == [True] * 6
    assert _native.workspace(*big.shape, raw, 0) > _native.workspace(*small.shape, raw, 0) > 0
