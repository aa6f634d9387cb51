"""Formats 1 to 5: one block's networks, exact integer inference and the decoding of its payload.

Decoding runs slice by slice and, within a slice, pass by pass (the multi-pass order of
:mod:`.context`): the features of a pass only read voxels that earlier passes (or the previous slice)
decoded, so the decoder recomputes exactly the encoder's predictions and bins:

    model section -> networks (network.py) -> exact integer inference (kernels.py)
    -> residual tokens and bins -> range coder (formats 1-2, entropy.py) or rANS (3-5, payload.py)
"""

from __future__ import annotations

from functools import lru_cache

import constriction
import numpy as np

from . import context as ctx
from . import kernels
from .. import palette
from .entropy import AdaptiveTables, decode_symbols, n_tokens, unzigzag
from . import rc_palette
from ...errors import CorruptStreamError
from .network import BlockModel, ModelConfig, group_of

RangeDecoder = constriction.stream.queue.RangeDecoder


def centred(data: np.ndarray, centre: int, shift: int) -> np.ndarray:
    return np.clip((data.astype(np.int64) - centre) >> shift, -128, 127).astype(np.float32)


def table_class(p) -> int:
    """Which set of adaptive tables a pass codes with: one per level-0 pass, one for the rest."""
    return "BCD".index(p.name[0]) + 1 if p.level == 0 and p.name != "T" else 0


def plane_shape(shape_yx, pad: int):
    """Rows and columns of the phase planes of a slice padded by ``pad`` (see :func:`kernels.planes_of`)."""
    return (shape_yx[0] + 2 * pad + 1) // 2, (shape_yx[1] + 2 * pad + 1) // 2


def fill_planes(planes: np.ndarray, value: float, shape_yx, pad: int):
    """Set every voxel of a slice's phase planes (4, rows, cols) to ``value`` (padding stays 0)."""
    h, w = shape_yx
    for a in (0, 1):
        for b in (0, 1):
            r0, r1 = (pad - a + 1) // 2, (pad + h - a + 1) // 2
            c0, c1 = (pad - b + 1) // 2, (pad + w - b + 1) // 2
            planes[2 * a + b, r0:r1, c0:c1] = value


@lru_cache(maxsize=None)
def _pass_geometry(levels: int, neighbours: int, index: int, inter: bool, y0: int, x0: int, step: int):
    """Where each feature of pass ``index`` (on the grid ``y0, x0, step``) lies in the phase planes of
    the current slice (0..3) and of the previous one (4..7): ``(plane, row, column)`` arrays at
    voxel (0, 0), and the row and column stride (``step // 2``)."""
    p = ctx.schedule(levels, neighbours)[index]
    pad = ctx.pad_width(levels)
    offs = [(o, 0) for o in p.inslice] + ([(o, 1) for o in p.prev] if inter else [])
    q, r, c = [], [], []
    for (dy, dx), src in offs:
        y, x = pad + y0 + dy, pad + x0 + dx
        q.append(4 * src + 2 * (y & 1) + (x & 1))
        r.append(y >> 1)
        c.append(x >> 1)
    return np.array(q, np.int64), np.array(r, np.int64), np.array(c, np.int64), step // 2


def _sub_grids(grid):
    """A grid of odd step (only the top pass of a 0-level schedule has one) as four of even step."""
    y0, x0, step = grid
    if step % 2 == 0:
        return [grid]
    return [(y0 + a * step, x0 + b * step, 2 * step) for a in (0, 1) for b in (0, 1)]


def n_tables(config: ModelConfig, flat: bool) -> int:
    """Token tables of a block: ``bins`` per table class, and four for flat contexts and their edges
    (format 4, see :func:`kernels.infer_rows`)."""
    return config.bins * 4 + (4 if flat else 0)


def flat_args(config: ModelConfig, p, inter: bool, flat: bool):
    """``(flat_n, flat_table)`` of :func:`kernels.infer_rows` for pass ``p``: the in-slice features
    (or, for the top pass of an inter-slice network, the previous slice's) decide flatness."""
    if not flat:
        return 0, -1
    n = len(p.inslice) if p.inslice else (len(p.prev) if inter else 0)
    return (n if n > 1 else 0), config.bins * 4

def pass_geometry_args(model: BlockModel, index: int, shape_yx, inter: bool, lo: int, hi: int, centre: int,
                       shift: int, flat: bool = True):
    """The arguments of :func:`kernels.infer_rows` for pass ``index`` but the planes and the outputs
    (a decoder works them out once per block), or None for a grid of odd step.  ``flat``: flat
    contexts get their own prediction and table (format 4 on)."""
    cfg = model.config
    p = ctx.schedule(cfg.levels, cfg.neighbours)[index]
    grid, = p.grids
    if grid[2] % 2:
        return None
    ny, nx = ctx.grid_shape(shape_yx, grid)
    q, r, c, s = _pass_geometry(cfg.levels, cfg.neighbours, index, inter, *grid)
    return (q, r, c, s, s, ny, nx, *_network_args(model, p, inter, lo, hi, centre, shift, flat))


def _network_args(model: BlockModel, p, inter: bool, lo: int, hi: int, centre: int, shift: int, flat: bool):
    """The arguments of :func:`kernels.infer_rows` after the geometry: the pass's network, the value
    range, its table class and its flat contexts."""
    cfg = model.config
    net = (model.inter if inter else model.intra)[group_of(p)]
    return (*net.kernel_args(), shift, cfg.bins, centre, lo, hi, cfg.bins * table_class(p),
            *flat_args(cfg, p, inter, flat))


def pass_predictions(model: BlockModel, index: int, planes, shape_yx, inter: bool, lo: int, hi: int,
                     centre: int, shift: int, pred=None, table=None, flat: bool = True):
    """Predictions (clipped to [lo, hi]) and token-table indices of every voxel of pass ``index`` of
    the schedule, for a stack of slices given as phase planes (D, 8, rows, cols) (:func:`kernels.planes_of`
    of each slice, then of the slice before it): two int32 arrays (D, voxels of the pass, row by
    row), computed by the compiled exact kernel (the same integers as :meth:`IntNet.infer`)."""
    cfg = model.config
    p = ctx.schedule(cfg.levels, cfg.neighbours)[index]
    grid, = p.grids
    ny, nx = ctx.grid_shape(shape_yx, grid)
    depth = planes.shape[0]
    if pred is None:
        pred = np.empty((depth, ny * nx), np.int32)
        table = np.empty((depth, ny * nx), np.int32)
    even = pass_geometry_args(model, index, shape_yx, inter, lo, hi, centre, shift, flat)
    if even is not None:
        kernels.infer_rows(planes, *even, pred, table)
        return pred, table
    args = _network_args(model, p, inter, lo, hi, centre, shift, flat)
    pv, tv = pred.reshape(depth, ny, nx), table.reshape(depth, ny, nx)
    for k, sub in enumerate(_sub_grids(grid)):
        sy, sx = ctx.grid_shape(shape_yx, sub)
        if sy and sx:
            sp, st = np.empty((depth, sy * sx), np.int32), np.empty((depth, sy * sx), np.int32)
            q, r, c, s = _pass_geometry(cfg.levels, cfg.neighbours, index, inter, *sub)
            kernels.infer_rows(planes, q, r, c, s, s, sy, sx, *args, sp, st)
            pv[:, k // 2::2, k % 2::2] = sp.reshape(depth, sy, sx)
            tv[:, k // 2::2, k % 2::2] = st.reshape(depth, sy, sx)
    return pred, table


def _tables(config: ModelConfig, lo: int, hi: int) -> AdaptiveTables:
    """Fresh token tables for a block: ``bins`` per table class, tokens covering residuals in [lo, hi]."""
    return AdaptiveTables(config.bins * 4, n_tokens(2 * (hi - lo)))

def decode_block(payload: bytes, model: BlockModel, shape, lo: int, hi: int, centre: int, shift: int,
                 dtype, block_index=None, out=None, batch=None, version: int = 5) -> np.ndarray:
    """Decode a block payload into an array of ``shape`` (depth, H, W).

    ``version``: the stream's format version (3 and 4: :mod:`.payload`'s rANS payload, 4 with flat
    contexts; 1 and 2:
    constriction's range coder, see :mod:`.palette`).  ``batch`` is accepted for compatibility (the
    compiled kernels bound their own memory).  The arguments come from a checked block header (see
    :meth:`voxcodec.core.container.BlockHeader.check`): ``0 <= lo < hi <= dtype max``, centre and
    shift as the encoder derives them.  A damaged payload raises CorruptStreamError naming the block,
    including a panic of the range coder (a ``BaseException`` in constriction)."""
    try:
        return _decode_block(payload, model, shape, lo, hi, centre, shift, dtype, out, version)
    except CorruptStreamError as exc:
        if exc.block is None and block_index is not None:
            raise CorruptStreamError(str(exc), block_index) from None
        raise
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise CorruptStreamError(f"entropy decoding failed: {exc}", block_index) from None
    except BaseException as exc:  # constriction's pyo3_runtime.PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError...: not ours to hide
        raise CorruptStreamError(f"entropy decoding failed (the range coder panicked: {exc})", block_index) from None


def _decode_block(payload, model, shape, lo, hi, centre, shift, dtype, out, version):
    if not 0 <= lo < hi <= np.iinfo(dtype).max:
        raise CorruptStreamError(f"value range {lo}..{hi} of a coded block")
    out = np.zeros(shape, dtype) if out is None else out  # every voxel is written below, or we raise
    if version >= 3:
        from . import payload as _payload

        return _payload.decode(payload, model, shape, lo, hi, centre, shift, out, flat=version >= 4)
    return _decode_range_coded(payload, model, shape, lo, hi, centre, shift, out, version)


def _decode_range_coded(payload, model, shape, lo, hi, centre, shift, out, version):
    """Formats 1 and 2: constriction's range coder over the tables of :mod:`.entropy`."""
    d, h, w = shape
    cfg = model.config
    pad = ctx.pad_width(cfg.levels)
    passes = ctx.schedule(cfg.levels, cfg.neighbours)
    if len(payload) % 4:
        raise CorruptStreamError("payload length is not a multiple of 4")
    words = np.frombuffer(payload, np.uint32)
    if words.size == 0:
        words = np.zeros(1, np.uint32)  # constriction needs at least one word to start a decoder
    decoder = RangeDecoder(words)
    tables = _tables(cfg, lo, hi)
    planes = np.zeros((1, 8, *plane_shape((h, w), pad)), np.float32)
    cur = planes[0, :4]
    for z in range(d):
        inter = model.inter is not None and z > 0
        try:
            kind, values = rc_palette.decode(decoder, lo, hi, h * w, version)
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise CorruptStreamError(f"entropy decoding failed in slice {z}: {exc}") from None
        if kind == palette.CONSTANT:
            out[z] = values[0]
            fill_planes(cur, float(centred(values[:1], centre, shift)[0]), (h, w), pad)
            planes[0, 4:] = cur
            continue
        lut = None if kind == palette.NORMAL else palette.Lookup(values, lo, hi)
        for i, p in enumerate(passes):
            (y0, x0, step), = p.grids
            ny, nx = ctx.grid_shape((h, w), p.grids[0])
            pred, table = pass_predictions(model, i, planes, (h, w), inter, lo, hi, centre, shift, flat=False)
            try:
                u = decode_symbols(decoder, tables, table[0])
            except (ValueError, RuntimeError, AssertionError) as exc:
                raise CorruptStreamError(f"entropy decoding failed in slice {z}: {exc}") from None
            pred = pred[0].astype(np.int64)
            if lut is None:
                x = pred + unzigzag(u)
                bad = x.size and (x.min() < lo or x.max() > hi)
            else:
                x, ok = lut.value(pred, unzigzag(u))
                bad = not ok
            if bad:
                raise CorruptStreamError(f"decoded values outside the block's range in slice {z}")
            kernels.place(np.ascontiguousarray(x, np.int64), y0, x0, step, ny, nx, pad, out[z], cur, centre, shift)
        planes[0, 4:] = cur
    return out
