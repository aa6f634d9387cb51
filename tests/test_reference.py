"""The native engine against a second decoder written from the specification alone (tests/reference_v6.py,
plain Python): the native encoder's bytes decode to the same voxels there, on small blocks that reach every
rule of format 6 (both coders, shifted uint16, the slice kinds, flat and edge voxels, bands, sparse
statistics, the second stage, 48 regressors, one chunk per row), and on golden streams."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import reference_v6 as ref
import voxcodec
from voxcodec.core import learn

DATA = Path(__file__).parent / "data"
P = learn.Params


def smooth(rng, d, h, w, scale=60, base=100, dtype=np.uint8):
    yy, xx = np.mgrid[:h, :w]
    a = np.stack([base + scale * np.sin(xx / 3.0 + z) * np.cos(yy / 4.0 - z / 2) + rng.normal(0, 3, (h, w))
                  for z in range(d)])
    return np.clip(a, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def _cases():
    rng = np.random.default_rng(1)
    yield "tables", smooth(rng, 3, 10, 12), P("tables", causal=6, prev=3, prev2=2, interval_log=3, forget=3, ridge=10,
                                               casc=3)
    yield "mixing", smooth(rng, 3, 10, 12), P("mixing", causal=5, prev=2, prev2=1, interval_log=3, forget=3, ridge=10,
                                               casc=6, inputs=6, mant=2, lr=6, limit_log=4)
    yield "uint16 with a shift", smooth(rng, 3, 10, 12, scale=20000, base=30000, dtype=np.uint16), \
        P("tables", causal=4, prev=2, prev2=0, interval_log=2, forget=2, ridge=8, casc=8, sparse=1)
    a = smooth(rng, 4, 12, 20)
    a[0, :, :4] = 0
    a[1, 2:, :6] = 0
    a[1, 0, 0] = 0
    a[2] = a[2] // 16 * 16  # a palette
    a[3] = 77  # constant
    yield "flat, edge, palette, constant, bands", a, P("tables", causal=8, prev=3, prev2=1, interval_log=3, forget=3,
                                                       ridge=10, casc=5, band_log=4)
    a = smooth(rng, 3, 8, 30, scale=20000, base=30000, dtype=np.uint16)
    a[1] = np.where(a[1] > 30000, 65000, 3)  # a listed palette of a wide span
    a[0, 0, :2] = [0, 65535]
    yield "uint16 listed palette, mixing", a, P("mixing", causal=3, prev=1, prev2=0, interval_log=2, forget=2, ridge=8,
                                                casc=2, inputs=3, mant=16, lr=64, limit_log=10)
    a = smooth(rng, 2, 32, 32, scale=110, base=128)
    a[1] = a[1] // 2 * 2  # a bitmap palette
    yield "bitmap palette, mixing, sparse, bands", a, P("mixing", causal=7, prev=4, prev2=1, interval_log=5, forget=5,
                                                        ridge=12, casc=7, inputs=6, mant=1, lr=3, limit_log=6, sparse=2,
                                                        band_log=4)
    yield "slices two back only, re-solved every voxel", a, P("tables", causal=0, prev=0, prev2=3, interval_log=0,
                                                              forget=1, ridge=1, casc=0)
    yield "48 regressors", a, P("tables", causal=40, prev=8, prev2=0, interval_log=4, forget=24, ridge=40, casc=8)
    yield "a chunk per row", smooth(rng, 1, 3, 30000), P("tables", causal=2, prev=0, prev2=0, interval_log=6, forget=3,
                                                         ridge=10, casc=1)


CASES = {name: (vol, params) for name, vol, params in _cases()}


@pytest.mark.parametrize("name", list(CASES))
def test_reference_decoder_reads_what_the_engine_writes(name):
    vol, params = CASES[name]
    payload, _ = learn.encode_block(vol, params)
    lo, hi, centre, shift = learn.value_range(vol)
    d, h, w = vol.shape
    out = ref.decode(payload, params.to_bytes(), d, h, w, lo, hi, centre, shift)
    np.testing.assert_array_equal(np.array(out, dtype=vol.dtype), vol)
    with pytest.raises(ref.Err):  # and it notices a payload cut short, as the engine does
        ref.decode(payload[:-2], params.to_bytes(), d, h, w, lo, hi, centre, shift)


@pytest.mark.parametrize("name", ["golden_v6_fast", "golden_v6_u16"])
def test_reference_decoder_reads_golden_streams(name):
    """Every coded block of the stream, its header read with struct here, checked by its voxel CRC-32."""
    buf = (DATA / f"{name}.vxc").read_bytes()
    coded = 0
    with voxcodec.Decoder(buf) as dec:
        for e in dec.index:
            (_, _, _, d, _, _, h, w, _, lo, hi, centre, shift, flags, _, model_len, _, _,
             voxel_crc) = struct.unpack_from("<4s8I3qBBH4I", buf, e.offset)
            if flags:  # constant or stored
                continue
            body = buf[e.offset + 84:e.offset + e.length]
            out = ref.decode(body[model_len:], body[:model_len], d, h, w, lo, hi, centre, shift)
            dt = np.dtype("<u2") if dec.dtype.itemsize == 2 else np.dtype("u1")
            assert zlib.crc32(np.array(out, dtype=dt).tobytes()) == voxel_crc
            coded += 1
    assert coded > 0
