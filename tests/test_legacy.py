"""The readers of formats 1 to 5 (voxcodec.core.legacy): the compiled inference kernel against the
integer reference, the float32 inference of released networks against an int64 one, the multi-pass
order, and damaged legacy payloads (every stream here is a golden stream written by voxcodec 0.1 to
0.5: this voxcodec writes format 6 only)."""

import json
from pathlib import Path

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError
from voxcodec.core.legacy import block, context as ctx
from voxcodec.core.legacy.network import ACT_BITS, IN_BITS, BlockModel, IntNet, ModelConfig, group_of, n_inputs

DATA = Path(__file__).parent / "data"


def _random_net(rng, f, hidden, big_bias=False):
    h1, h2 = hidden
    bias = 2 ** 31 - 1 if big_bias else 3000
    net = IntNet(w1=rng.integers(-128, 128, (h1, f)).astype(np.int8), b1=rng.integers(-bias, bias, h1).astype(np.int32),
                 w2=rng.integers(-128, 128, (h2, h1)).astype(np.int8), b2=rng.integers(-bias, bias, h2).astype(np.int32),
                 wmu=rng.integers(-128, 128, h2).astype(np.int8), ws=rng.integers(-128, 128, f).astype(np.int8),
                 bmu=int(rng.integers(-2 ** 40, 2 ** 40)), wsc=rng.integers(-128, 128, h2).astype(np.int8),
                 bsc=int(rng.integers(-2 ** 20, 2 ** 20)), e=tuple(int(e) for e in rng.integers(1, 21, 5)))
    net.validate()
    return net


def _random_model(rng, cfg: ModelConfig, big_bias=False):
    groups = {}
    for p in ctx.schedule(cfg.levels, cfg.neighbours):
        groups.setdefault(group_of(p), p)
    intra = {g: _random_net(rng, n_inputs(p, False), cfg.hidden, big_bias) for g, p in groups.items()}
    inter = {g: _random_net(rng, n_inputs(p, True), cfg.hidden, big_bias) for g, p in groups.items()}
    return BlockModel(cfg, intra, inter)


def _planes(data, centre, shift, pad):
    """The decoder's phase planes (D, 8, rows, cols) of each slice and of the slice before it (zero before
    the first): voxel (y, x) in plane 2 (y' & 1) + (x' & 1) at (y' >> 1, x' >> 1), y' = y + pad."""
    d, h, w = data.shape
    rows, cols = block.plane_shape((h, w), pad)
    padded = np.zeros((d, 2 * rows, 2 * cols), np.float32)
    padded[:, pad:pad + h, pad:pad + w] = block.centred(data, centre, shift)
    planes = np.zeros((d, 8, rows, cols), np.float32)
    for a in (0, 1):
        for b in (0, 1):
            planes[:, 2 * a + b] = padded[:, a::2, b::2]
    planes[1:, 4:] = planes[:-1, :4]
    return planes


def _value_range(data):
    from voxcodec.core.learn import value_range

    return value_range(data)


def _reference(model, p, cur_pad, prev_pad, shape_yx, inter, lo, hi, centre, shift, flat=False):
    """The numpy path: strided gathers (context.gather) and IntNet.infer, then (format 4) the flat
    contexts: the nearest features all equal give their value, and table 4 * bins (or 4 * bins + 1
    when the farther ones differ); else k >= 2 of them at the lowest value give lo, table 4 * bins + k."""
    pad = ctx.pad_width(model.config.levels)
    feats = ctx.gather(cur_pad, prev_pad, p, shape_yx, pad, inter)
    f, depth, n = feats.shape
    nets = model.inter if inter else model.intra
    off, sbin = nets[group_of(p)].infer(feats.reshape(f, depth * n), model.config.bins, shift)
    bins = model.config.bins
    pred = np.clip(centre + off, lo, hi).reshape(depth, n)
    table = (sbin + bins * block.table_class(p)).reshape(depth, n)
    k = len(p.inslice) if p.inslice else (len(p.prev) if inter else 0)
    if flat and k > 1:
        near = feats[:min(k, 4)]
        same = np.all(near == near[:1], axis=0)
        pred = np.where(same, np.clip(centre + (feats[0].astype(np.int64) << shift), lo, hi), pred)
        table = np.where(same, 4 * bins + np.any(feats[:k] != feats[:1], axis=0), table)
        if near.shape[0] == 4:  # the edges of regions at the block's lowest value
            low = (near == (lo - centre) >> shift).sum(axis=0)
            edge = ~same & (low >= 2)
            pred, table = np.where(edge, lo, pred), np.where(edge, 4 * bins + low, table)
    return pred, table


@pytest.mark.parametrize("levels, hidden, neighbours, shape, dtype", [
    (4, (8, 8), 12, (3, 37, 53), np.uint8),
    (2, (3, 5), 8, (2, 16, 9), np.uint8),
    (1, (16, 16), 16, (2, 11, 20), np.uint16),
    (0, (8, 1), 4, (2, 7, 6), np.uint16),  # a 0-level schedule: its top pass has an odd step
    (5, (12, 7), 12, (2, 70, 41), np.uint8)])
def test_kernel_inference_equals_reference(levels, hidden, neighbours, shape, dtype):
    rng = np.random.default_rng(levels)
    cfg = ModelConfig(levels=levels, hidden=hidden, bins=20, neighbours=neighbours)
    top = np.iinfo(dtype).max
    data = rng.integers(0, top + 1, shape).astype(dtype)
    data[0, 0, 0], data[-1, -1, -1] = 0, top  # the full range: extreme centred values
    data[:, 1:6, 2:] = top // 3  # a flat region, and its edges
    data[:, -6:, :-3] = 0  # a region at the lowest value, and its edges
    lo, hi, centre, shift = _value_range(data)
    pad = ctx.pad_width(levels)
    vpad = np.zeros((shape[0], shape[1] + 2 * pad, shape[2] + 2 * pad), np.float32)
    vpad[:, pad:pad + shape[1], pad:pad + shape[2]] = block.centred(data, centre, shift)
    prev = np.concatenate([np.zeros_like(vpad[:1]), vpad[:-1]])
    planes = _planes(data, centre, shift, pad)
    for big in (False, True):
        model = _random_model(rng, cfg, big_bias=big)
        for inter in (False, True):
            for i, p in enumerate(ctx.schedule(levels, neighbours)):
                for flat in (False, True):
                    want = _reference(model, p, vpad, prev, shape[1:], inter, lo, hi, centre, shift, flat)
                    got = block.pass_predictions(model, i, planes, shape[1:], inter, lo, hi, centre, shift, flat=flat)
                    np.testing.assert_array_equal(got[0], want[0], err_msg=f"{p.name} inter={inter} flat={flat}")
                    np.testing.assert_array_equal(got[1], want[1], err_msg=f"{p.name} inter={inter} flat={flat}")


def _reference_infer(net: IntNet, x: np.ndarray, bins: int, shift: int):
    """Pure int64 reference of IntNet.infer, written from the formulas in network.py."""
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


@pytest.mark.parametrize("name", ["golden_v5_own", "golden_v4_delta", "golden_u8"])
def test_float32_inference_of_released_networks_equals_int64_reference(name):
    with voxcodec.Decoder(DATA / f"{name}.vxc") as dec:
        models = [dec.block_model(i) for i in range(len(dec.index))]
        cfg = dec.config
    rng = np.random.default_rng(0)
    for model in (m for m in models if m is not None):
        for nets in (model.intra, model.inter or {}):
            for net in nets.values():
                f = net.w1.shape[1]
                # extreme inputs too: every feature at -128 or 127
                x = np.concatenate([rng.integers(-128, 128, (f, 3000)), np.full((f, 1), -128), np.full((f, 1), 127)],
                                   axis=1).astype(np.float32)
                for shift in (0, 3):
                    got = net.infer(x, cfg.bins, shift, chunk=777)
                    want = _reference_infer(net, x, cfg.bins, shift)
                    np.testing.assert_array_equal(got[0], want[0])
                    np.testing.assert_array_equal(got[1], want[1])


def test_batch_split_does_not_change_decoding():
    meta = json.loads((DATA / "golden.json").read_text())
    want = voxcodec.decode(DATA / "golden_u8.vxc")
    for batch in (1, 97, 4096, None):
        np.testing.assert_array_equal(voxcodec.Decoder(DATA / "golden_u8.vxc", batch=batch).read(), want)
    assert list(want.shape) == meta["golden_u8"]["shape"]


def test_every_offset_is_known_when_read():
    """Simulate the multi-pass decoding order on a lattice and check each pass only reads decoded positions."""
    for levels, neighbours in [(0, 12), (1, 4), (2, 16), (4, 12), (4, 24)]:
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


def test_schedule_covers_every_voxel_once():
    for levels in range(0, 7):
        for shape in [(1, 1), (5, 3), (64, 64), (70, 33)]:
            count = np.zeros(shape, int)
            for p in ctx.schedule(levels):
                for y0, x0, step in p.grids:
                    count[y0::step, x0::step] += 1
            assert (count == 1).all()


@pytest.mark.parametrize("bad", [dict(levels=7), dict(hidden=(65, 8)), dict(bins=1)])
def test_model_config_validation(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad).validate()


@pytest.mark.parametrize("name", ["golden_v3_u8", "golden_v3_u16", "golden_v5_own", "golden_u8"])
def test_damaged_legacy_payloads_are_refused_or_caught_by_the_checksums(name):
    """Bits flipped in a legacy payload, its checksum made valid again: a CorruptStreamError, never
    other voxels, a crash or a hang."""
    import struct
    import zlib

    from voxcodec.core.container import HEADER_SIZE

    data = (DATA / f"{name}.vxc").read_bytes()
    want = voxcodec.decode(data)
    with voxcodec.Decoder(data) as dec:
        e = max(dec.index, key=lambda e: e.length)
        hd = dec.block_header(dec.index.index(e))
    rng = np.random.default_rng(5)
    start = e.offset + HEADER_SIZE + hd.model_len
    for _ in range(40):
        b = bytearray(data)
        i = int(rng.integers(start, e.offset + e.length))
        b[i] ^= 1 << int(rng.integers(0, 8))
        body = bytes(b[e.offset + HEADER_SIZE:e.offset + e.length])
        head = bytearray(b[e.offset:e.offset + HEADER_SIZE])
        struct.pack_into("<I", head, HEADER_SIZE - 12, zlib.crc32(body))  # data checksum made valid
        struct.pack_into("<I", head, HEADER_SIZE - 4, zlib.crc32(bytes(head[:HEADER_SIZE - 4])))
        b[e.offset:e.offset + HEADER_SIZE] = head
        try:
            out = voxcodec.decode(bytes(b))
        except CorruptStreamError:
            continue
        np.testing.assert_array_equal(out, want)  # a flip that changed nothing the decoder uses


def test_without_the_legacy_extra_old_streams_say_what_to_install(monkeypatch):
    """numba and constriction come with the ``legacy`` extra: without them a format 1-5 stream still opens
    (its header and index) and its blocks raise UnsupportedError naming the extra; format 6 needs neither."""
    import sys

    from voxcodec import UnsupportedError

    for mod in [m for m in sys.modules if m.startswith("voxcodec.core.legacy.") and m != "voxcodec.core.legacy.network"
                and m != "voxcodec.core.legacy.reader"] + ["numba"]:
        monkeypatch.delitem(sys.modules, mod, raising=False)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    with voxcodec.Decoder(DATA / "golden_v5_own.vxc") as dec:
        assert dec.format_version == 5 and dec.shape[0] > 0
        with pytest.raises(UnsupportedError, match=r"format 5 .*numba.*pip install 'voxcodec\[legacy\]'"):
            dec.read_block(0)
    v6 = DATA / "golden_v6_default.vxc"
    assert voxcodec.decode(v6).shape == tuple(json.loads((DATA / "golden.json").read_text())[v6.stem]["shape"])
