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
from dataclasses import dataclass, field

import constriction
import numpy as np

from . import context as ctx
from . import palette
from .entropy import AdaptiveTables, decode_symbols, encode_symbols, n_tokens, unzigzag, zigzag
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


def _new_bank(config: ModelConfig, kinds=("intra", "inter"), seed: int = 0, untrained: bool = False):
    """A NetBank with one network per pass group and kind, started as neighbour averages: the
    linear skip path averages the four nearest in-slice neighbours (or, for the inter-slice top
    pass, copies the voxel of the previous slice)."""
    from . import training

    groups = _group_passes(config)
    nets = [(kind, g) for kind in kinds for g in groups]
    bank = training.NetBank([n_inputs(groups[g][0], kind == "inter") for kind, g in nets], config.hidden,
                            seed=seed, untrained=untrained)
    for i, (kind, g) in enumerate(nets):
        p = groups[g][0]
        if p.inslice:
            bank.init_skip(i, {k: 0.25 for k in range(4)})
        elif kind == "inter":
            bank.init_skip(i, {p.prev.index((0, 0)): 1.0})
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
    target = {int(z): (data[z].astype(np.float32) - centre) / 2.0 ** shift for z in need}
    groups = _group_passes(config)
    pools = []
    for kind, zs in (("intra", picks), ("inter", prev_picks)):
        for g in groups:
            xs, ys = [], []
            for p in groups[g]:
                for z in zs:
                    prev = vol[int(z) - 1] if kind == "inter" else vol[int(z)]
                    xs.append(ctx.gather(vol[int(z)][None], prev[None], p, (h, w), pad, kind == "inter")[:, 0])
                    ys.append(ctx.take(target[int(z)][None], p)[0])
            n = n_inputs(groups[g][0], kind == "inter")
            x = np.concatenate(xs, axis=1) if xs else np.zeros((n, 0), np.float32)
            y = np.concatenate(ys) if ys else np.zeros(0, np.float32)
            if y.size > opts.pool:
                sel = rng.integers(0, y.size, opts.pool)
                x, y = x[:, sel], y[sel]
            pools.append((x, y))
    return pools


def fit_block(data, config: ModelConfig, opts: FitOptions, bank=None, min_voxels: int = MIN_TRAIN_VOXELS,
              progress=None):
    """Train the block's networks. Returns (BlockModel, bank, stats); ``bank`` warm-starts the next block.

    Blocks of fewer than ``min_voxels`` voxels get :func:`untrained_model` (and bank None).
    ``progress(step, steps)`` is called as training goes."""
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
        bank = _new_bank(config, seed=opts.seed)
        steps, lr = opts.steps, opts.lr
    else:  # warm start from the previous block's weights
        bank = copy.deepcopy(bank)
        steps, lr = opts.warm_steps, opts.warm_lr
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


def _pass_outputs(model: BlockModel, p, cur_pad, prev_pad, shape_yx, pad, inter: bool, shift, batch=None):
    """Predicted offsets from the block centre and token-table indices of every voxel of pass ``p``."""
    nets = model.inter if inter else model.intra
    feats = ctx.gather(cur_pad, prev_pad, p, shape_yx, pad, inter)
    f, depth, n = feats.shape
    bins = model.config.bins
    off, sbin = nets[group_of(p)].infer(feats.reshape(f, depth * n), bins, shift, **({"chunk": batch} if batch else {}))
    return off.reshape(depth, n), (sbin + bins * table_class(p)).reshape(depth, n)


def _tables(config: ModelConfig, lo: int, hi: int) -> AdaptiveTables:
    """Fresh token tables for a block: ``bins`` per table class, tokens covering residuals in [lo, hi]."""
    return AdaptiveTables(config.bins * 4, n_tokens(2 * (hi - lo)))


def block_predictions(data: np.ndarray, model: BlockModel, chunk_voxels: int = 1 << 20):
    """Encoder-side predictions of a whole block, a few slices at a time.

    Yields ``(z0, z1, passes)`` where ``passes`` holds, for each pass of the schedule, the arrays
    ``(values, prediction, table)`` of shape (z1 - z0, voxels of the pass): what the decoder will
    compute for those slices (the encoder knows every voxel, so it batches slices together).
    """
    lo, hi, centre, shift = value_range(data)
    d, h, w = data.shape
    cfg = model.config
    pad = ctx.pad_width(cfg.levels)
    use_inter = model.inter is not None
    chunk_slices = max(1, chunk_voxels // max(h * w, 1))
    for z0 in range(0, d, chunk_slices):
        z1 = min(d, z0 + chunk_slices)
        lo_z = max(z0 - 1, 0)
        vpad = padded(centred(data[lo_z:z1], centre, shift), pad)
        cur = vpad[z0 - lo_z:]
        prev = np.concatenate([np.zeros_like(vpad[:1]), vpad[:-1]])[z0 - lo_z:]
        per_pass = []
        for p in ctx.schedule(cfg.levels, cfg.neighbours):
            x = ctx.take(data[z0:z1], p).astype(np.int64)
            if use_inter:
                off, table = _pass_outputs(model, p, cur, prev, (h, w), pad, True, shift)
                if z0 == 0:  # the first slice of a block has no slice before it
                    o0, t0 = _pass_outputs(model, p, cur[:1], prev[:1], (h, w), pad, False, shift)
                    off[0], table[0] = o0[0], t0[0]
            else:
                off, table = _pass_outputs(model, p, cur, prev, (h, w), pad, False, shift)
            per_pass.append((x, np.clip(centre + off, lo, hi), table))
        yield z0, z1, per_pass


def encode_block(data: np.ndarray, model: BlockModel, progress=None) -> tuple[bytes, dict]:
    """Entropy-code ``data`` (depth, H, W) with ``model``.

    Returns ``(payload, fields)``: fields hold the value range for the block header and
    ``slice_bits``, the payload bits spent on each slice. ``progress(slices_done, depth)`` is
    called after each slice.
    """
    lo, hi, centre, shift = value_range(data)
    tables = _tables(model.config, lo, hi)
    coder = RangeEncoder()
    slice_bits = []
    for z0, z1, per_pass in block_predictions(data, model):
        for i in range(z1 - z0):
            before = coder.num_bits()
            kind, values = palette.choose(data[z0 + i], lo, hi)
            palette.encode(coder, kind, values, lo, hi)
            if kind != palette.CONSTANT:  # a constant slice is its value alone
                lut = None if kind == palette.NORMAL else palette.Lookup(values, lo, hi)
                for x, pred, table in per_pass:
                    r = x[i] - pred[i] if lut is None else lut.residual(x[i], pred[i])
                    encode_symbols(coder, tables, zigzag(r), table[i])
            slice_bits.append(coder.num_bits() - before)
            if progress is not None:
                progress(len(slice_bits), data.shape[0])
    payload = coder.get_compressed().tobytes()
    return payload, {"lo": lo, "hi": hi, "centre": centre, "shift": shift, "slice_bits": slice_bits}


def predict_slice(data: np.ndarray, model: BlockModel, z: int):
    """The model's view of slice ``z`` of a block: (prediction, scale bin), each (H, W).

    For figures and analysis; the scale of bin b is ``SCALE_MIN * 2**(b / 2) * 2**shift``.
    """
    d, h, w = data.shape
    pred = np.zeros((h, w), np.int64)
    sbin = np.zeros((h, w), np.int64)
    for z0, z1, per_pass in block_predictions(data, model):
        if z0 <= z < z1:
            for p, (_, pr, table) in zip(ctx.schedule(model.config.levels, model.config.neighbours), per_pass):
                ctx.scatter(pred[None], pr[z - z0:z - z0 + 1], p, (h, w))
                ctx.scatter(sbin[None], table[z - z0:z - z0 + 1] % model.config.bins, p, (h, w))
            break
    return pred, sbin


def decode_block(payload: bytes, model: BlockModel, shape, lo: int, hi: int, centre: int, shift: int,
                 dtype, block_index=None, out=None, batch=None, version: int = FORMAT_VERSION) -> np.ndarray:
    """Decode a block payload into an array of ``shape`` (depth, H, W).

    ``batch`` bounds how many voxels one inference call handles (memory only: any value gives the
    same voxels).  ``version``: the stream's format version (see :mod:`.palette`).  The arguments
    come from a checked block header (see
    :meth:`voxcodec.core.container.BlockHeader.check`): ``0 <= lo < hi <= dtype max``, centre and
    shift as the encoder derives them.  A damaged payload raises CorruptStreamError naming the block,
    including a panic of the range coder (a ``BaseException`` in constriction)."""
    try:
        return _decode_block(payload, model, shape, lo, hi, centre, shift, dtype, block_index, out, batch, version)
    except CorruptStreamError:
        raise
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise CorruptStreamError(f"entropy decoding failed: {exc}", block_index) from None
    except BaseException as exc:  # constriction's pyo3_runtime.PanicException derives from BaseException
        if type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError...: not ours to hide
        raise CorruptStreamError(f"entropy decoding failed (the range coder panicked: {exc})", block_index) from None


def _decode_block(payload, model, shape, lo, hi, centre, shift, dtype, block_index, out, batch, version):
    d, h, w = shape
    cfg = model.config
    pad = ctx.pad_width(cfg.levels)
    passes = ctx.schedule(cfg.levels, cfg.neighbours)
    if len(payload) % 4:
        raise CorruptStreamError("payload length is not a multiple of 4", block_index)
    if not 0 <= lo < hi <= np.iinfo(dtype).max:
        raise CorruptStreamError(f"value range {lo}..{hi} of a coded block", block_index)
    words = np.frombuffer(payload, np.uint32)
    if words.size == 0:
        words = np.zeros(1, np.uint32)  # constriction needs at least one word to start a decoder
    decoder = RangeDecoder(words)
    tables = _tables(cfg, lo, hi)
    out = np.zeros(shape, dtype) if out is None else out  # every voxel is written below, or we raise
    prev = np.zeros((1, h + 2 * pad, w + 2 * pad), np.float32)
    for z in range(d):
        cur = np.zeros_like(prev)
        slice_out = out[z:z + 1]
        inter = model.inter is not None and z > 0
        try:
            kind, values = palette.decode(decoder, lo, hi, h * w, version)
        except (ValueError, RuntimeError, AssertionError) as exc:
            raise CorruptStreamError(f"entropy decoding failed in slice {z}: {exc}", block_index) from None
        if kind == palette.CONSTANT:
            slice_out[...] = values[0]
            cur[0, pad:pad + h, pad:pad + w] = centred(values[:1], centre, shift)[0]
            prev = cur
            continue
        lut = None if kind == palette.NORMAL else palette.Lookup(values, lo, hi)
        for p in passes:
            off, table = _pass_outputs(model, p, cur, prev, (h, w), pad, inter, shift, batch)
            try:
                u = decode_symbols(decoder, tables, table[0])
            except (ValueError, RuntimeError, AssertionError) as exc:
                raise CorruptStreamError(f"entropy decoding failed in slice {z}: {exc}", block_index) from None
            pred = np.clip(centre + off[0], lo, hi)
            if lut is None:
                x = pred + unzigzag(u)
                bad = x.size and (x.min() < lo or x.max() > hi)
            else:
                x, ok = lut.value(pred, unzigzag(u))
                bad = not ok
            if bad:
                raise CorruptStreamError(f"decoded values outside the block's range in slice {z}", block_index)
            x = x[None]
            ctx.scatter(slice_out, x, p, (h, w))
            ctx.scatter(cur, centred(x, centre, shift), p, (h, w), pad)
        prev = cur
    return out
