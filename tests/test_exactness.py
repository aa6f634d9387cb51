"""The guarantees that make a stream decodable anywhere: integer-exact inference, independence from
thread counts, batch and tile splits, and format stability (golden streams)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import voxcodec
from voxcodec.core import context as ctx
from voxcodec.core.network import ACT_BITS, IN_BITS, IntNet

from conftest import run_python

DATA = Path(__file__).parent / "data"


def _reference_infer(net: IntNet, x: np.ndarray, bins: int, shift: int):
    """Pure int64 (object-free) reference of IntNet.infer, written from the formulas in network.py."""
    xi = x.astype(np.int64)
    e1, e2, emu, es, esc = net.e
    z1 = net.w1.astype(np.int64) @ xi + net.b1.astype(np.int64)[:, None]
    s1 = e1 + IN_BITS - ACT_BITS
    a1 = np.clip(np.floor_divide(z1 + 2 ** (s1 - 1), 2 ** s1), 0, 127)
    z2 = net.w2.astype(np.int64) @ a1 + net.b2.astype(np.int64)[:, None]
    a2 = np.clip(np.floor_divide(z2 + 2 ** (e2 - 1), 2 ** e2), 0, 127)
    fmu = max(emu + ACT_BITS, es + IN_BITS)
    mu = (net.wmu.astype(np.int64) @ a2) * 2 ** (fmu - emu - ACT_BITS) \
        + (net.ws.astype(np.int64) @ xi) * 2 ** (fmu - es - IN_BITS) + net.bmu
    sh = fmu - IN_BITS
    off = np.floor_divide(mu * 2 ** shift + 2 ** (sh - 1), 2 ** sh)
    t = net.wsc.astype(np.int64) @ a2 + net.bsc
    sbin = np.clip(np.floor_divide(t + 2 ** (esc + ACT_BITS - 1), 2 ** (esc + ACT_BITS)), 0, bins - 1)
    return off, sbin


def test_float32_inference_equals_int64_reference(em_stream):
    data, _ = em_stream
    dec = voxcodec.Decoder(data)
    hd = dec.block_header(1)
    dec._f.seek(dec.index[1].offset + voxcodec.core.container.HEADER_SIZE)
    model = voxcodec.core.network.BlockModel.from_bytes(dec._f.read(hd.model_len), dec.config)
    rng = np.random.default_rng(0)
    for kind in ("intra", "inter"):
        for p in ctx.schedule(dec.config.levels, dec.config.neighbours):
            net = getattr(model, kind)[voxcodec.core.network.group_of(p)]
            f = net.w1.shape[1]
            # extreme inputs too: every feature at -128 or 127
            x = np.concatenate([rng.integers(-128, 128, (f, 4000)), np.full((f, 1), -128), np.full((f, 1), 127)],
                               axis=1).astype(np.float32)
            for shift in (0, 3):
                got = net.infer(x, dec.config.bins, shift, chunk=777)
                want = _reference_infer(net, x, dec.config.bins, shift)
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])


def test_batch_split_does_not_change_decoding(em_u8, em_stream):
    data, _ = em_stream
    for batch in (1, 97, 4096, None):
        np.testing.assert_array_equal(voxcodec.Decoder(data, batch=batch).read(), em_u8)


DECODE_SNIPPET = """
import hashlib, sys, torch
import voxcodec
torch.set_num_threads({threads})
data = open({path!r}, 'rb').read()
out = voxcodec.Decoder(data, batch={batch}).read()
print(hashlib.sha256(out.tobytes()).hexdigest())
"""


@pytest.mark.parametrize("threads,batch", [(1, 50000), (2, 333)])
def test_other_thread_counts_decode_identically(em_u8, em_stream, tmp_path, threads, batch):
    """Encoded with 1 torch thread in this process; decoded in fresh processes with other BLAS/torch
    thread counts and inference batch sizes."""
    data, _ = em_stream
    path = tmp_path / "s.vxc"
    path.write_bytes(data)
    env = {"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    digest = run_python(DECODE_SNIPPET.format(threads=threads, path=str(path), batch=batch), env).strip()
    assert digest == hashlib.sha256(em_u8.tobytes()).hexdigest()


def test_stream_encoded_with_two_threads_decodes_with_one(em_u8, tmp_path):
    path = tmp_path / "two.vxc"
    code = f"""
import numpy as np, voxcodec
from voxcodec.storage.volume_io import sample_volume
a = np.ascontiguousarray(sample_volume()[:12, :96, :96])
open({str(path)!r}, 'wb').write(voxcodec.encode(a, threads=2, train='always', fit_options={{'steps': 40}}))
"""
    run_python(code, {"OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"})
    digest = run_python(DECODE_SNIPPET.format(threads=1, path=str(path), batch=1000),
                        {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}).strip()
    assert digest == hashlib.sha256(em_u8.tobytes()).hexdigest()


def test_tile_and_block_splits_all_decode_to_the_volume(em_u8):
    streams = {(td, bd): voxcodec.encode(em_u8, tile=td, block_depth=bd, train="always", fit_options={"steps": 20})
               for td, bd in [((96, 96), 12), ((48, 64), 5), ((96, 33), 3)]}
    for data in streams.values():
        np.testing.assert_array_equal(voxcodec.decode(data), em_u8)


def test_decoder_never_reads_unknown_positions(em_stream, em_u8):
    """Fill the decoder's not-yet-decoded positions with garbage: if any pass read a voxel that is
    not decoded yet, predictions would change and the checksums would fail."""
    import voxcodec.core.block as blk

    data, _ = em_stream
    real_zeros_like = np.zeros_like

    def garbage_zeros_like(a, *args, **kw):
        out = real_zeros_like(a, *args, **kw)
        if out.dtype == np.float32 and out.ndim == 3:
            out[...] = 77.0  # padding/unknown value the encoder never saw
            pad = ctx.pad_width(4)
            out[:, :pad], out[:, -pad:], out[:, :, :pad], out[:, :, -pad:] = 0, 0, 0, 0
        return out

    blk.np.zeros_like = garbage_zeros_like
    try:
        out = voxcodec.Decoder(data).read()
    finally:
        blk.np.zeros_like = real_zeros_like
    np.testing.assert_array_equal(out, em_u8)


def test_every_offset_is_known_when_read():
    """Simulate the decoding order on a lattice and check each pass only reads decoded positions."""
    for levels, neighbours in [(0, 12), (1, 4), (2, 16), (4, 12), (4, 16)]:
        h, w = 37, 45
        known = np.zeros((h, w), bool)
        for p in ctx.schedule(levels, neighbours):
            mine = np.zeros((h, w), bool)
            for y0, x0, step in p.grids:
                mine[y0::step, x0::step] = True
            assert not (mine & known).any(), f"{p.name} decodes a voxel twice"
            ys, xs = np.nonzero(mine)
            for dy, dx in p.inslice:
                yy, xx = ys + dy, xs + dx
                inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
                assert known[yy[inside], xx[inside]].all(), f"{p.name} reads an unknown offset {(dy, dx)}"
            known |= mine
        assert known.all()


@pytest.mark.parametrize("name, version", [("golden_u8", 1), ("golden_u16", 1), ("golden_plain_u8", 1),
                                           ("golden_v2_stored_u8", 2), ("golden_v2_listed_u16", 2),
                                           ("golden_v3_u8", 3), ("golden_v3_u16", 3),
                                           ("golden_v4_em-general-v1", 4), ("golden_v4_em-section-v1", 4),
                                           ("golden_v4_em-fib-v1", 4), ("golden_v4_delta", 4), ("golden_v4_intra", 4),
                                           ("golden_v4_u16", 4), ("golden_v4_i16", 4),
                                           ("golden_v5_em-general-v2", 5), ("golden_v5_em-section-v2", 5),
                                           ("golden_v5_em-fib-v2", 5), ("golden_v5_delta", 5), ("golden_v5_own", 5)])
def test_golden_streams_still_decode(name, version):
    """Streams written by voxcodec 0.1.0 (format 1), 0.2.0 (format 2), 0.3.0 (format 3), 0.4.0 (format 4)
    and 0.5.0 (format 5; one stream per zoo prior released: every released prior stays decodable) keep
    decoding to the same voxels."""
    meta = json.loads((DATA / "golden.json").read_text())[name]
    with voxcodec.Decoder(DATA / f"{name}.vxc") as dec:
        assert dec.format_version == version
    out = voxcodec.decode(DATA / f"{name}.vxc")
    assert list(out.shape) == meta["shape"] and str(out.dtype) == meta["dtype"]
    assert hashlib.sha256(out.tobytes()).hexdigest() == meta["sha256"]


def test_golden_arrays_match_their_source(sample):
    from make_golden import golden_arrays  # noqa: the generator documents how they were made

    meta = json.loads((DATA / "golden.json").read_text())
    for name, (arr, _) in golden_arrays().items():
        assert hashlib.sha256(arr.tobytes()).hexdigest() == meta[name]["sha256"]
