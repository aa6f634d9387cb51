"""The compiled exact engine (format 3): the inference kernel against the reference inference, the
rANS coder and its raw bits, stripes, and damaged format 3 payloads."""

import numpy as np
import pytest

import voxcodec
from voxcodec import CorruptStreamError
from voxcodec.core import block, kernels, payload
from voxcodec.core import context as ctx
from voxcodec.core.network import BlockModel, IntNet, ModelConfig, group_of, n_inputs


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


def _random_model(rng, cfg: ModelConfig, inter=True, big_bias=False):
    groups = {}
    for p in ctx.schedule(cfg.levels, cfg.neighbours):
        groups.setdefault(group_of(p), p)
    intra = {g: _random_net(rng, n_inputs(p, False), cfg.hidden, big_bias) for g, p in groups.items()}
    inter_nets = {g: _random_net(rng, n_inputs(p, True), cfg.hidden, big_bias) for g, p in groups.items()} if inter else None
    return BlockModel(cfg, intra, inter_nets)


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
    lo, hi, centre, shift = block.value_range(data)
    pad = ctx.pad_width(levels)
    vpad = block.padded(block.centred(data, centre, shift), pad)
    prev = np.concatenate([np.zeros_like(vpad[:1]), vpad[:-1]])
    planes = payload.stack_planes(data, 0, shape[0], centre, shift, pad)
    for big in (False, True):
        model = _random_model(rng, cfg, big_bias=big)
        for inter in (False, True):
            for i, p in enumerate(ctx.schedule(levels, neighbours)):
                for flat in (False, True):
                    want = _reference(model, p, vpad, prev, shape[1:], inter, lo, hi, centre, shift, flat)
                    got = block.pass_predictions(model, i, planes, shape[1:], inter, lo, hi, centre, shift, flat=flat)
                    np.testing.assert_array_equal(got[0], want[0], err_msg=f"{p.name} inter={inter} flat={flat}")
                    np.testing.assert_array_equal(got[1], want[1], err_msg=f"{p.name} inter={inter} flat={flat}")


def test_rans_roundtrip_and_its_checks():
    rng = np.random.default_rng(1)
    n, n_tables, tokens = 20000, 6, 40
    table = rng.integers(0, n_tables, n).astype(np.int32)
    toks = np.minimum(rng.geometric(0.25, n) - 1 + (table == 2) * 9, kernels.DIRECT - 1).astype(np.int32)  # no raw bits
    counts = np.ones((n_tables, tokens), np.int64)
    totals, seen = np.full(n_tables, tokens, np.int64), np.zeros(n_tables, np.int64)
    starts, freqs = np.empty(n, np.int32), np.empty(n, np.int32)
    order, sizes = np.empty(n, np.int64), np.empty(n_tables + 1, np.int64)
    cum, lut = np.empty(tokens + 1, np.int64), np.empty(1 << kernels.LUT_BITS, np.int64)
    k, ideal = kernels.model_symbols(toks, table, n_tables, counts, totals, seen, starts, freqs, 0, order, sizes, cum, lut)
    assert k == n
    words = np.empty(4 * n + 8, np.uint16)
    m = kernels.rans_encode(starts, freqs, n, words, 0)
    assert 16 * m < ideal + 16 * 10  # within a few words of the ideal code length

    def state(w, c):
        return sum(int(w[4 * c + k]) << (16 * (3 - k)) for k in range(4))

    def decode(w):
        rstate = np.array([state(w, 0), state(w, 1), 8, w.size], np.int64)
        c, t, s = np.ones((n_tables, tokens), np.int64), np.full(n_tables, tokens, np.int64), np.zeros(n_tables, np.int64)
        got, vals = np.empty(n, np.int32), np.empty(n, np.int32)
        pred = np.full(n, 5000, np.int32)
        err = kernels.decode_pass(table, pred, n_tables, c, t, s, w, rstate, np.zeros(16, np.uint8),
                                  np.array([0, 0], np.int64), payload._NONE, payload._NONE, 0, 10 ** 6,
                                  order, sizes, cum, lut, got, vals)
        return err, got, rstate

    err, got, rstate = decode(words[:m])
    assert err == 0 and np.array_equal(got, toks)
    assert rstate[0] == rstate[1] == kernels.RANS_L and rstate[2] == m
    err, _, _ = decode(words[:m // 2])  # cut short: reported, never read past the end
    assert err == kernels.ERR_WORDS
    bad = words[:m].copy()
    bad[m // 3] ^= 1 << 7
    err, got, rstate = decode(bad)  # damaged: the states no longer end where they started
    assert err == kernels.ERR_WORDS or not (rstate[0] == rstate[1] == kernels.RANS_L and rstate[2] == m) \
        or not np.array_equal(got, toks)


def test_raw_bits_roundtrip():
    rng = np.random.default_rng(2)
    nb = rng.integers(0, 33, 500)
    vals = np.array([int(rng.integers(0, 2 ** int(b))) if b else 0 for b in nb], np.int64)
    w = payload._BitWriter(8)
    for v, b in zip(vals, nb):
        w.put(int(v), int(b))
    raw = w.getvalue()
    assert len(raw) == (int(nb.sum()) + 7) // 8
    r = payload._Reader(np.zeros(0, np.uint32), raw, 1, 1)
    assert [r.bits(int(b)) if b else 0 for b in nb] == list(vals)
    r.close()
    with pytest.raises(CorruptStreamError, match="ends early"):
        r.bits(8)


@pytest.mark.parametrize("streams", [1, 2, 3, 7])
def test_stripes_decode_to_the_same_voxels(sample, streams):
    data = np.ascontiguousarray(sample[:6, :64, :80])
    data[2] = 77  # a constant slice
    data[3] = (data[3] // 16) * 16  # a palette slice
    cfg = ModelConfig(levels=3, hidden=(8, 8), bins=20)
    model = _random_model(np.random.default_rng(3), cfg)
    code, fields = payload.encode(data, model, streams=streams)
    assert code[0] == min(streams, 64 // 16) and len(fields["slice_bits"]) == 6
    lo, hi, centre, shift = block.value_range(data)
    out = block.decode_block(code, model, data.shape, lo, hi, centre, shift, data.dtype)
    np.testing.assert_array_equal(out, data)


def test_damaged_format3_payloads_are_refused(sample):
    data = np.ascontiguousarray(sample[:4, :48, :48])
    cfg = ModelConfig(levels=3, hidden=(8, 8), bins=20)
    model = _random_model(np.random.default_rng(4), cfg)
    code, _ = payload.encode(data, model, streams=2)
    lo, hi, centre, shift = block.value_range(data)

    def dec(c):
        return block.decode_block(c, model, data.shape, lo, hi, centre, shift, data.dtype, block_index=5)

    np.testing.assert_array_equal(dec(code), data)
    for bad, match in [(b"", "payload is empty"), (b"\0" + code[1:], "0 streams"), (code[:-1], "length differs"),
                       (bytes([60]) + code[1:], "60 streams"), (code + b"\0", "length differs")]:
        with pytest.raises(CorruptStreamError, match=f"block 5: .*{match}"):
            dec(bad)
    rng = np.random.default_rng(5)
    for _ in range(300):  # flipped bits past the stream table: refused or, rarely, other voxels (the CRCs catch those)
        b = bytearray(code)
        i = int(rng.integers(17, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
        try:
            dec(bytes(b))
        except CorruptStreamError:
            pass


def test_payload_costs_what_the_tables_say(sample):
    """The rANS coder spends within 0.1% of the ideal code length of its integer tables."""
    data = np.ascontiguousarray(sample[:16])
    stream = voxcodec.encode(data, preset="fast", block_depth=16)
    with voxcodec.Decoder(stream) as dec:
        assert dec.format_version == voxcodec.core.container.FORMAT_VERSION
    enc = voxcodec.core.encoder.Encoder(None, dtype=data.dtype, slice_shape=data.shape[1:], preset="fast", block_depth=16)
    infos = []
    enc.on_block = infos.append
    enc.write(data)
    enc.close()
    info = infos[0]
    payload_bits = 8 * (info.nbytes - info.model_bytes - voxcodec.core.container.HEADER_SIZE)
    assert sum(info.slice_bits) <= payload_bits <= 1.001 * sum(info.slice_bits) + 8 * 64


def test_workspace_buffers_are_reused_between_blocks_and_threads_and_bounded(monkeypatch):
    import threading

    from voxcodec.core import workspace

    workspace.release()
    with workspace.borrowed():
        a = workspace.buffer("t", (4, 5), np.int32)
        b = workspace.buffer("t", (3, 2), np.int32)  # fits: the same memory
        assert np.shares_memory(a, b) and b.shape == (3, 2) and b.dtype == np.int32
        c = workspace.buffer("t", 100, np.float64, zero=True)  # grown: new memory, zeroed
        assert not np.shares_memory(a, c) and c.shape == (100,) and not c.any()
        with workspace.borrowed():  # nested: the same workspace
            assert np.shares_memory(workspace.buffer("t", 10, np.float64), c)
        busy = []  # another thread, while this one holds its workspace: a workspace of its own
        th = threading.Thread(target=lambda: busy.append(workspace.buffer("t", 10, np.float64)))
        th.start()
        th.join()
        assert not np.shares_memory(busy[0], c)
    later = []  # given back: the next block, in any thread, codes in the same memory

    def block():
        with workspace.borrowed():
            later.append(workspace.buffer("t", 100, np.float64))

    th = threading.Thread(target=block)
    th.start()
    th.join()
    assert np.shares_memory(later[0], c)
    monkeypatch.setattr(workspace, "KEEP_BYTES", 1000)
    with workspace.borrowed():
        big = workspace.buffer("big", 2000, np.uint8)  # over the bound: a plain array, not kept
        assert not np.shares_memory(big, workspace.buffer("big", 2000, np.uint8))
    assert workspace.held() <= 1000
    workspace.release()
    assert workspace.held() == 0


def test_slice_palette_refuses_values_outside_the_block_range():
    from voxcodec.core import palette

    s = np.array([[3, 5], [5, 9]], np.uint8)
    kind, values = palette.choose(s, 3, 9)
    assert kind in (palette.NORMAL, palette.PALETTE, palette.LISTED)
    if values is not None:
        assert values.tolist() == [3, 5, 9]
    with pytest.raises(ValueError):
        palette.choose(s, 4, 9)
    with pytest.raises(ValueError):
        palette.choose(s, 3, 8)
