"""Formats 3 to 5: decoding a block payload of residual tokens, rANS-coded.

    exact integer inference (kernels.infer_rows) -> tokens and adaptive tables -> rANS -> voxels

The token tables of :mod:`.entropy` (same counts, runs and adaptation), quantized to 20-bit integer
frequencies, drive an rANS decoder; raw mantissa bits and slice headers lie in a separate bit
section.  A block's rows are cut into ``streams`` stripes, each with its own tables, rANS words and
bits.  The rANS state is flushed every :func:`chunk_slices` slices, and checked at each flush.
Format 4 adds flat contexts (see :func:`kernels.infer_rows`).  docs/format-legacy.md specifies the layout::

    u8 streams (1..16); per stream: u32 rANS words, u32 raw bytes; then per stream its rANS words
    (u16), then per stream its raw bytes
"""

from __future__ import annotations

import struct

import numpy as np

from . import context as ctx, workspace
from . import kernels
from .. import palette
from .block import (centred, fill_planes, n_tables as _n_tables, pass_geometry_args, pass_predictions, plane_shape)
from .entropy import n_tokens
from .network import BlockModel
from ...errors import CorruptStreamError

#: the largest number of streams a block may have
MAX_STREAMS = 16
_NONE = np.empty(0, np.int64)


def stripe_rows(h: int, k: int):
    return [(i * h) // k for i in range(k + 1)]


def chunk_slices(h: int, w: int) -> int:
    """Slices between two flushes of the rANS state: about 2^22 voxels or more per flush."""
    return max(1, (1 << 22) // max(h * w, 1))


def _bits_for(n: int) -> int:
    """Bits of a field holding 0..n-1."""
    return max(1, (int(n) - 1).bit_length())


def _pass_voxels(shape_yx, p, rows):
    """The voxel range ``[a, b)`` of pass ``p`` (row by row) whose rows lie in each stripe."""
    (y0, _, step), = p.grids
    ny, nx = ctx.grid_shape(shape_yx, p.grids[0])
    out = []
    for r0, r1 in zip(rows[:-1], rows[1:]):
        i0 = min(ny, max(0, -(-(r0 - y0) // step)))
        i1 = min(ny, max(0, -(-(r1 - y0) // step)))
        out.append((i0 * nx, i1 * nx))
    return out


def _grid(shape_yx, p):
    (y0, x0, step), = p.grids
    ny, nx = ctx.grid_shape(shape_yx, p.grids[0])
    return y0, x0, step, ny, nx


class _Tables:
    """One stream's adaptive token tables (see :mod:`.entropy`): counts, their sums, symbols seen."""

    def __init__(self, n_tables: int, tokens: int):
        self.counts = np.ones((n_tables, tokens), np.int64)
        self.totals = np.full(n_tables, tokens, np.int64)
        self.seen = np.zeros(n_tables, np.int64)


class _Scratch:
    def __init__(self, n: int, n_tables: int, tokens: int):
        self.order = np.empty(max(n, 1), np.int64)
        self.sizes = np.empty(n_tables + 1, np.int64)
        self.cum = np.empty(tokens + 1, np.int64)
        self.lut = np.empty(1 << kernels.LUT_BITS, np.int32)
        self.toks = np.empty(max(n, 1), np.int32)


# -- encoding ----------------------------------------------------------------------------------------------

# -- decoding ----------------------------------------------------------------------------------------------

class _Reader:
    """One stream of a format 3 payload: its rANS words and state, its raw bits and tables."""

    def __init__(self, words: np.ndarray, raw: bytes, n_tables: int, tokens: int):
        self.words = words
        self.rstate = np.array([0, 0, 0, words.size], np.int64)
        self.raw = np.zeros(len(raw) + 8, np.uint8)
        self.raw[:len(raw)] = np.frombuffer(raw, np.uint8)
        self.bstate = np.array([0, 8 * len(raw)], np.int64)
        self.tables = _Tables(n_tables, tokens)

    def bits(self, n: int) -> int:
        v = kernels.get_bits(self.raw, self.bstate, n)
        if v < 0:
            raise CorruptStreamError("the raw-bit section of the payload ends early")
        return int(v)

    def start(self):
        """Read the two rANS states that start a chunk (four words each, most significant first)."""
        pos = int(self.rstate[2])
        if pos + 8 > self.words.size:
            raise CorruptStreamError("the rANS section of the payload ends early")
        for c in (0, 1):
            x = 0
            for k in range(4):
                x = (x << 16) | int(self.words[pos + 4 * c + k])
            if not kernels.RANS_L <= x < 1 << 63:
                raise CorruptStreamError("a rANS state of the payload is out of range")
            self.rstate[c] = x
        self.rstate[2] = pos + 8

    def finish(self):
        if int(self.rstate[0]) != kernels.RANS_L or int(self.rstate[1]) != kernels.RANS_L:
            raise CorruptStreamError("the payload is damaged: a rANS state does not end where it started")

    def close(self):
        if int(self.rstate[2]) != self.words.size:
            raise CorruptStreamError("the rANS section of the payload has words no symbol used")
        used, total = int(self.bstate[0]), int(self.bstate[1])
        if total - used >= 8 or (total > used and kernels.get_bits(self.raw, self.bstate, total - used) != 0):
            raise CorruptStreamError("the raw-bit section of the payload has bits no symbol used")


def _read_header(r: _Reader, lo: int, hi: int, slice_voxels: int):
    """A slice's kind and palette, with the checks of :func:`voxcodec.core.legacy.rc_palette.decode`."""
    kind = r.bits(2)
    if kind == palette.LISTED:
        n = r.bits(_bits_for(hi - lo + 2))
        if n < 2 or n > hi - lo or n > slice_voxels:
            raise CorruptStreamError(f"a listed palette of {n} values that the encoder never sends")
        nb = _bits_for(hi - lo + 1)
        values = np.array([r.bits(nb) for _ in range(n)], np.int64) + lo
        if np.any(np.diff(values) <= 0) or values[-1] > hi or values.size >= values[-1] - values[0] + 1:
            raise CorruptStreamError("a listed palette whose values are not strictly increasing, leave the "
                                     "block's range or fill their span")
        return kind, values
    if kind == palette.PALETTE:
        if 4 * slice_voxels <= hi - lo + 1:
            raise CorruptStreamError(f"a palette slice of {slice_voxels} voxels over {hi - lo + 1} values")
        flags = np.empty(hi - lo + 1, np.int64)
        if not kernels.get_flags(r.raw, r.bstate, flags):
            raise CorruptStreamError("the raw-bit section of the payload ends early")
        values = np.flatnonzero(flags).astype(np.int64) + lo
        if values.size < 2 or values.size >= values[-1] - values[0] + 1:
            raise CorruptStreamError(f"a palette of {values.size} values that the encoder never sends")
        return kind, values
    if kind == palette.CONSTANT:
        v = r.bits(_bits_for(hi - lo + 1)) + lo
        if v > hi:
            raise CorruptStreamError(f"a constant slice of value {v}, outside the block's range")
        return kind, np.array([v], np.int64)
    return palette.NORMAL, None


def _split(payload: bytes, h: int):
    if len(payload) < 1:
        raise CorruptStreamError("the payload is empty")
    k = payload[0]
    if not 1 <= k <= min(MAX_STREAMS, h):
        raise CorruptStreamError(f"the payload has {k} streams (1..{min(MAX_STREAMS, h)} for {h} rows)")
    head = 1 + 8 * k
    if len(payload) < head:
        raise CorruptStreamError("the payload is cut short in its stream table")
    sizes = [struct.unpack_from("<II", payload, 1 + 8 * s) for s in range(k)]
    if head + sum(2 * n + m for n, m in sizes) != len(payload):
        raise CorruptStreamError("the payload's length differs from what its stream table adds up to")
    pos, words = head, []
    for n, _ in sizes:
        words.append(np.frombuffer(payload, "<u2", n, pos).astype(np.uint16))
        pos += 2 * n
    raws = []
    for _, m in sizes:
        raws.append(payload[pos:pos + m])
        pos += m
    return words, raws


@workspace.borrowing
def decode(payload: bytes, model: BlockModel, shape, lo: int, hi: int, centre: int, shift: int, out: np.ndarray,
           flat: bool = True):
    """Decode a format 4 payload (``flat=False``: format 3) into ``out`` (depth, H, W).  Raises
    CorruptStreamError."""
    d, h, w = shape
    cfg = model.config
    passes = ctx.schedule(cfg.levels, cfg.neighbours)
    pad = ctx.pad_width(cfg.levels)
    words, raws = _split(payload, h)
    k = len(words)
    n_tables, tokens = _n_tables(cfg, flat), n_tokens(2 * (hi - lo))
    readers = [_Reader(wd, rw, n_tables, tokens) for wd, rw in zip(words, raws)]
    ranges = [_pass_voxels((h, w), p, stripe_rows(h, k)) for p in passes]
    grids = [_grid((h, w), p) for p in passes]
    most = max(ny * nx for *_, ny, nx in grids)
    scratch = _Scratch(most, n_tables, tokens)
    values = workspace.buffer("values", max(most, 1), np.int32)
    pred = workspace.buffer("pred", (1, max(most, 1)), np.int32)
    table = workspace.buffer("table", (1, max(most, 1)), np.int32)
    planes = workspace.buffer("planes", (1, 8, *plane_shape((h, w), pad)), np.float32, zero=True)
    group = chunk_slices(h, w)
    steps = {inter: [(pass_geometry_args(model, i, (h, w), inter, lo, hi, centre, shift, flat), grids[i], ranges[i])
                     for i in range(len(passes))]
             for inter in ((False, True) if model.inter is not None else (False,))}
    # one stream, every grid of even step (all but 0-level schedules): a slice's passes in one kernel call
    packed = {inter: _packed(st) for inter, st in steps.items()} if k == 1 else {}
    cur = planes[0, :4]
    for z in range(d):
        if z % group == 0:
            for r in readers:
                r.start()
        kind, pal = _read_header(readers[0], lo, hi, h * w)
        if kind == palette.CONSTANT:
            out[z] = pal[0]
            fill_planes(cur, float(centred(pal[:1], centre, shift)[0]), (h, w), pad)
        else:
            lut = None if kind == palette.NORMAL else palette.Lookup(pal, lo, hi)
            rank_values, nearest = (_NONE, _NONE) if lut is None else (lut.values, lut.nearest)
            oz = out[z]
            inter = model.inter is not None and z > 0
            if packed.get(inter) is not None:
                r = readers[0]
                t = r.tables
                code = kernels.decode_slice(planes, *packed[inter], pred, table, values, n_tables, t.counts, t.totals,
                                            t.seen, r.words, r.rstate, r.raw, r.bstate, rank_values, nearest,
                                            scratch.order, scratch.sizes, scratch.cum, scratch.lut, scratch.toks, oz,
                                            pad, centre, shift)
                if code:
                    raise CorruptStreamError(_ERRORS[code % 16] + f" (slice {z}, pass {passes[code // 16].name})")
            else:
                for i, (args, (y0, x0, step, ny, nx), rng) in enumerate(steps[inter]):
                    n = ny * nx
                    if n == 0:
                        continue
                    pv, tv = pred[:, :n], table[:, :n]
                    if args is None:  # an odd step: see pass_predictions
                        pass_predictions(model, i, planes, (h, w), inter, lo, hi, centre,
                                         shift, pv, tv, flat=flat)
                    else:
                        kernels.infer_rows(planes, *args, pv, tv)
                    for s, (a, b) in enumerate(rng):
                        if a == b:
                            continue
                        r = readers[s]
                        t = r.tables
                        err = kernels.decode_pass(table[0, a:b], pred[0, a:b], n_tables, t.counts, t.totals, t.seen,
                                                  r.words, r.rstate, r.raw, r.bstate, rank_values, nearest, lo, hi,
                                                  scratch.order, scratch.sizes, scratch.cum, scratch.lut,
                                                  scratch.toks, values[a:b])
                        if err:
                            raise CorruptStreamError(_ERRORS[err] + f" (slice {z}, pass {passes[i].name})")
                    kernels.place(values, y0, x0, step, ny, nx, pad, oz, cur, centre, shift)
        if (z + 1) % group == 0 or z == d - 1:
            for r in readers:
                r.finish()
        planes[0, 4:] = cur
    for r in readers:
        r.close()
    return out


def _packed(steps):
    """The arguments of :func:`kernels.decode_slice` after the planes, for a one-stream payload whose
    passes are ``steps`` (``(infer_rows arguments, grid, stripe ranges)`` each); None where a pass has
    a grid of odd step or the passes' networks differ in shape."""
    if any(args is None for args, _, _ in steps):
        return None
    K = kernels
    P = np.zeros((len(steps), K.P_FIELDS), np.int64)
    fq, fr, fc, w1s, b1, w2, b2, wout = [], [], [], [], [], [], [], []
    f = w = 0
    for i, (args, (y0, x0, step, ny, nx), rng) in enumerate(steps):
        (q, r, c, rs, cs, gy, gx, w1, bb1, s1, ww2, bb2, s2, wo, sh_mu, sh_skip, bmu, sh, bsc, sh_t, data_shift,
         bins, centre, lo, hi, tbase, flat_n, flat_table) = args
        (a, b), = rng
        fq.append(q)
        fr.append(r)
        fc.append(c)
        w1s.append(np.ravel(w1))
        b1.append(bb1)
        w2.append(ww2)
        b2.append(bb2)
        wout.append(wo)
        row = P[i]
        row[[K.P_RS, K.P_CS, K.P_NY, K.P_NX, K.P_S1, K.P_S2, K.P_SH_MU, K.P_SH_SKIP, K.P_BMU, K.P_SH, K.P_BSC,
             K.P_SH_T, K.P_DATA_SHIFT, K.P_BINS, K.P_CENTRE, K.P_LO, K.P_HI, K.P_TBASE, K.P_FLAT_N,
             K.P_FLAT_TABLE, K.P_Y0, K.P_X0, K.P_STEP, K.P_A, K.P_B, K.P_F0, K.P_F1, K.P_W0, K.P_W1, K.P_H1]] = [
            rs, cs, gy, gx, s1, s2, sh_mu, sh_skip, bmu, sh, bsc, sh_t, data_shift, bins, centre, lo, hi, tbase,
            flat_n, flat_table, y0, x0, step, a, b, f, f + len(q), w, w + w1.size, w1.shape[0] - 1]
        f += len(q)
        w += w1.size
    if len({x.shape for x in w2}) > 1 or len({x.shape for x in wout}) > 1 or len({x.shape for x in b1}) > 1:
        return None
    return (np.concatenate(fq).astype(np.int64), np.concatenate(fr).astype(np.int64),
            np.concatenate(fc).astype(np.int64), np.concatenate(w1s), np.stack(b1), np.stack(w2), np.stack(b2),
            np.stack(wout), P)


_ERRORS = {kernels.ERR_WORDS: "the rANS section of the payload ends early",
           kernels.ERR_BITS: "the raw-bit section of the payload ends early",
           kernels.ERR_RANGE: "decoded values outside the block's range"}
