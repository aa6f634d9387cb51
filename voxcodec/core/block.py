"""One block: fit its networks, run exact integer inference, entropy-code its voxels.

The data path of a block reads straight through:

    voxels -> centred values -> context features (context.py) -> model fit (training.py)
    -> exact integer inference (network.py) -> residual tokens and bins -> range coder (entropy.py)

Decoding runs slice by slice and, within a slice, pass by pass: the features of a pass only read
voxels that earlier passes (or the previous slice) decoded, so the decoder recomputes exactly the
encoder's predictions and bins.
"""

from __future__ import annotations

import copy
import time
from functools import lru_cache
from dataclasses import dataclass, field

import constriction
import numpy as np

from . import context as ctx
from . import kernels, palette
from .entropy import AdaptiveTables, decode_symbols, n_tokens, unzigzag
from ..errors import CorruptStreamError
from .container import FORMAT_VERSION
from .network import BlockModel, ModelConfig, group_of, n_inputs

RangeEncoder = constriction.stream.queue.RangeEncoder
RangeDecoder = constriction.stream.queue.RangeDecoder


@dataclass
class FitOptions:
    """How hard a block's networks are trained (see :mod:`voxcodec.core.presets`)."""

    steps: int = 300
    warm_steps: int = 150
    batch: int = 1024
    pool: int = 24576
    train_slices: int = 6
    lr: float = 1e-2
    warm_lr: float = 4e-3
    seed: int = 0
    device: str = "cpu"
    #: inter-slice networks: "auto" keeps them where their gain pays for their weights
    inter: str = "auto"
    #: steps and learning rate of the fine-tune from a zoo prior (0 steps: the prior as it is)
    prior_steps: int = 0
    prior_lr: float = 1e-2
    #: with a prior, also train a model from scratch and keep whichever codes the block smaller
    scratch: bool = False


@dataclass
class BlockStats:
    fit_seconds: float = 0.0
    inter: bool = False
    train_bits: dict = field(default_factory=dict)


def value_range(data: np.ndarray):
    """Block centre and shift so that ``(x - centre) >> shift`` lies in [-128, 127]."""
    lo, hi = int(data.min()), int(data.max())
    shift = 0
    while (hi - lo) >> shift > 255:
        shift += 1
    centre = lo + ((((hi - lo) >> shift) + 1) // 2 << shift)
    return lo, hi, centre, shift


def centred(data: np.ndarray, centre: int, shift: int) -> np.ndarray:
    return np.clip((data.astype(np.int64) - centre) >> shift, -128, 127).astype(np.float32)


def padded(v: np.ndarray, pad: int) -> np.ndarray:
    out = np.zeros((v.shape[0], v.shape[1] + 2 * pad, v.shape[2] + 2 * pad), np.float32)
    out[:, pad:pad + v.shape[1], pad:pad + v.shape[2]] = v
    return out


def table_class(p) -> int:
    """Which set of adaptive tables a pass codes with: one per level-0 pass, one for the rest."""
    return "BCD".index(p.name[0]) + 1 if p.level == 0 and p.name != "T" else 0


def _group_passes(config):
    groups = {}
    for p in ctx.schedule(config.levels, config.neighbours):
        groups.setdefault(group_of(p), []).append(p)
    return groups


#: blocks smaller than this are not trained: their networks are plain neighbour averages whose
#: weights cost a few bytes (a trained model would cost more than it saves)
MIN_TRAIN_VOXELS = 1 << 15


def _new_bank(config: ModelConfig, kinds=("intra", "inter"), seed: int = 0, untrained: bool = False,
              pools=None):
    """A NetBank with one network per pass group and kind, started as neighbour averages: the
    linear skip path averages the four nearest in-slice neighbours (or, for the inter-slice top
    pass, copies the voxel of the previous slice).  Given the training ``pools`` and 12-bit skips,
    the skips start from their least-squares filters instead (:meth:`NetBank.fit_skip`)."""
    from . import training

    groups = _group_passes(config)
    nets = [(kind, g) for kind in kinds for g in groups]
    bank = training.NetBank([n_inputs(groups[g][0], kind == "inter") for kind, g in nets], config.hidden,
                            seed=seed, untrained=untrained, skip_bits=config.skip_bits)
    for i, (kind, g) in enumerate(nets):
        p = groups[g][0]
        if p.inslice:
            bank.init_skip(i, {k: 0.25 for k in range(4)})
        elif kind == "inter":
            bank.init_skip(i, {p.prev.index((0, 0)): 1.0})
    if pools is not None and config.skip_bits > 8:
        bank.fit_skip(pools)
    return bank


def untrained_model(config: ModelConfig) -> BlockModel:
    """Networks that predict the mean of the four nearest known neighbours, with hidden layers off.

    Their weights compress to a few dozen bytes; small blocks use them when a trained model would
    cost more than it saves."""
    bank = _new_bank(config, kinds=("intra",), untrained=True)
    return BlockModel(config, dict(zip(_group_passes(config), bank.export())), None)


def _varied_slices(data) -> np.ndarray:
    """Indices of the slices that hold more than one value."""
    flat = data.reshape(data.shape[0], -1)
    return np.flatnonzero(flat.min(axis=1) != flat.max(axis=1))


#: training slices holding more than this many pools' worth of a network's samples are sampled before
#: their features are gathered
SAMPLE_ABOVE = 4


def _training_pools(data, config: ModelConfig, opts: FitOptions, inter_ok: bool):
    """Samples ``(features (F, N), target (N,))`` for every network, intra-slice ones first.

    Features come from up to ``opts.train_slices`` slices spread over the block (the inter-slice
    networks see slices that have one before them); each pool keeps at most ``opts.pool`` samples.
    """
    lo, hi, centre, shift = value_range(data)
    d, h, w = data.shape
    pad = ctx.pad_width(config.levels)
    rng = np.random.default_rng(opts.seed)
    varied = _varied_slices(data)  # constant slices are coded as their value: nothing to learn there
    picks = varied[np.unique(np.linspace(0, varied.size - 1, min(varied.size, opts.train_slices)).round()
                             .astype(int))]
    prev_picks = picks[picks > 0] if inter_ok else picks[:0]
    if inter_ok and prev_picks.size == 0:
        prev_picks = np.array([1])
    need = np.unique(np.concatenate([picks, prev_picks - 1, prev_picks]))
    vol = {int(z): v for z, v in zip(need, padded(centred(data[need], centre, shift), pad))}
    floor = float((lo - centre) >> shift)  # the block's lowest value, centred (see kernels.infer_rows)
    target = {int(z): (data[z].astype(np.float32) - centre) / 2.0 ** shift for z in need}
    groups = _group_passes(config)
    pools = []
    for kind, zs in (("intra", picks), ("inter", prev_picks)):
        inter = kind == "inter"
        for g in groups:
            parts = [(p, int(z)) for p in groups[g] for z in zs]
            sizes = [ctx.pass_size((h, w), p) for p, _ in parts]
            # a large block: features of a random sample of twice the pool only (gathering every voxel of
            # the training slices to keep a pool's worth took longer than the fine-tune from a prior)
            sample = np.sort(rng.choice(sum(sizes), 2 * opts.pool, replace=False)) \
                if sum(sizes) > SAMPLE_ABOVE * opts.pool else None
            xs, ys = [], []
            start = 0
            for (p, z), size in zip(parts, sizes):
                flat_n = flat_args(config, p, inter, True)[0]
                prev = vol[z - 1] if inter else vol[z]
                if sample is None:
                    x = ctx.gather(vol[z][None], prev[None], p, (h, w), pad, inter)[:, 0]
                    y = ctx.take(target[z][None], p)[0]
                else:
                    a, b = np.searchsorted(sample, [start, start + size])
                    at = sample[a:b] - start
                    x = ctx.gather_at(vol[z], prev, p, (h, w), pad, inter, at)
                    y = ctx.take_at(target[z], p, at)
                start += size
                if flat_n:  # flat contexts are predicted without the network: nothing to learn there
                    keep = by_network(x, flat_n, floor)
                    x, y = x[:, keep], y[keep]
                xs.append(x)
                ys.append(y)
            n = n_inputs(groups[g][0], inter)
            x = np.concatenate(xs, axis=1) if xs else np.zeros((n, 0), np.float32)
            y = np.concatenate(ys) if ys else np.zeros(0, np.float32)
            if y.size > opts.pool:
                sel = rng.integers(0, y.size, opts.pool) if sample is None else \
                    np.sort(rng.permutation(y.size)[:opts.pool])
                x, y = x[:, sel], y[sel]
            pools.append((x, y))
    return pools


def fit_block(data, config: ModelConfig, opts: FitOptions, bank=None, min_voxels: int = MIN_TRAIN_VOXELS,
              progress=None, steps: int | None = None, lr: float | None = None):
    """Train the block's networks. Returns (BlockModel, bank, stats); ``bank`` warm-starts the next block.

    Blocks of fewer than ``min_voxels`` voxels get :func:`untrained_model` (and bank None).
    ``progress(step, steps)`` is called as training goes.  ``steps`` and ``lr`` override the
    options' (a fine-tune from a prior)."""
    from . import training  # torch is only needed to encode

    t0 = time.perf_counter()
    if data.size < min_voxels or _varied_slices(data).size == 0:
        return untrained_model(config), None, BlockStats(fit_seconds=time.perf_counter() - t0)
    d, h, w = data.shape
    shift = value_range(data)[3]
    groups = _group_passes(config)
    names = list(groups)
    inter_ok = opts.inter != "never" and d > 1
    pools = _training_pools(data, config, opts, inter_ok)
    n_in = [n_inputs(groups[g][0], kind == "inter") for kind in ("intra", "inter") for g in names]
    if bank is None or bank.n_in != n_in or tuple(bank.w2.shape[1:]) != (config.hidden[1], config.hidden[0]):
        bank = _new_bank(config, seed=opts.seed, pools=pools)
        steps, lr = (opts.steps if steps is None else steps), (opts.lr if lr is None else lr)
    else:  # warm start from the previous block's weights
        bank = copy.deepcopy(bank)
        steps, lr = (opts.warm_steps if steps is None else steps), (opts.warm_lr if lr is None else lr)
    per_net = training.fit(bank, pools, config, steps, quantum=2.0 ** -shift, batch=opts.batch, lr=lr,
                           seed=opts.seed, device=opts.device, progress=progress)
    nets = bank.export()
    intra = dict(zip(names, nets[:len(names)]))
    inter = dict(zip(names, nets[len(names):]))
    stats = BlockStats(fit_seconds=time.perf_counter() - t0)
    model = BlockModel(config, intra, None)
    if inter_ok:
        # keep the inter-slice networks only where their gain pays for their weights
        sizes = {g: sum(ctx.pass_size((h, w), p) for p in groups[g]) for g in names}
        gain = sum((per_net[i] - per_net[len(names) + i]) * sizes[g] for i, g in enumerate(names)) * (d - 1)
        with_inter = BlockModel(config, intra, inter)
        cost = 8 * (len(with_inter.to_bytes()) - len(model.to_bytes()))
        stats.train_bits = {"intra": per_net[:len(names)], "inter": per_net[len(names):], "gain_bits": gain,
                            "inter_cost_bits": cost}
        if gain > cost or opts.inter == "always":
            model = with_inter
    stats.inter = model.inter is not None
    return model, bank, stats


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


def by_network(x: np.ndarray, flat_n: int, floor: float) -> np.ndarray:
    """Which samples (columns of the features ``x``, (F, N)) the network predicts in format 4: not the
    flat contexts nor their edges at the block's lowest value ``floor`` (see :func:`kernels.infer_rows`)."""
    near = x[:min(flat_n, kernels.FLAT_NEAR)]
    flat = np.all(near == near[:1], axis=0)
    if near.shape[0] == kernels.FLAT_NEAR:
        flat |= (near == floor).sum(axis=0) >= 2
    return ~flat


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


def encode_block(data: np.ndarray, model: BlockModel, progress=None) -> tuple[bytes, dict]:
    """Entropy-code ``data`` (depth, H, W) with ``model``, in the current format (see
    :func:`voxcodec.core.payload.encode`).  Returns ``(payload, fields)``; fields hold the value
    range for the block header and ``slice_bits``, the bits spent on each slice.
    ``progress(slices_done, depth)`` is called after each slice."""
    from . import payload

    return payload.encode(data, model, progress=progress)


def predict_slice(data: np.ndarray, model: BlockModel, z: int):
    """The model's view of slice ``z`` of a block: (prediction, scale bin), each (H, W).

    For figures and analysis; the scale of bin b is ``SCALE_MIN * 2**(b / 2) * 2**shift``.
    """
    from . import payload

    d, h, w = data.shape
    pred = np.zeros((h, w), np.int64)
    sbin = np.zeros((h, w), np.int64)
    for z0, z1, per_pass in payload.predictions(data[z:z + 1] if model.inter is None else data, model,
                                                 chunk_voxels=h * w):
        if z0 == (0 if model.inter is None else z):
            for p, (_, pr, table) in zip(ctx.schedule(model.config.levels, model.config.neighbours), per_pass):
                ctx.scatter(pred[None], pr[:1], p, (h, w))
                ctx.scatter(sbin[None], table[:1] % model.config.bins, p, (h, w))
            break
    return pred, sbin


def decode_block(payload: bytes, model: BlockModel, shape, lo: int, hi: int, centre: int, shift: int,
                 dtype, block_index=None, out=None, batch=None, version: int = FORMAT_VERSION) -> np.ndarray:
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
            kind, values = palette.decode(decoder, lo, hi, h * w, version)
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
