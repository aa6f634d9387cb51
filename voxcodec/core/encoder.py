"""Writing ``.vxc`` streams: the streaming :class:`Encoder`, :func:`encode` and :func:`fit_model`.

The data path of the encoder: slices -> blocks of ``block_depth`` slices, cut into tiles -> a model
per tile (trained, fine-tuned from the tile above, or shared) -> exact integer inference and range
coding (:mod:`voxcodec.core.block`) -> block records in the container (:mod:`voxcodec.core.container`).
"""

from __future__ import annotations

import io
import os
import time
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .. import __version__
from ..errors import CorruptStreamError, InputError, UnsupportedError
from . import parallel
from . import resume as _resume
from .block import MIN_TRAIN_VOXELS, encode_block, fit_block, untrained_model, value_range
from .container import (FLAG_CONSTANT, FLAG_INTER, FLAG_RAW, FLAG_SHARED, MAX_SLICES, BlockHeader, IndexEntry, check_dtype,
                        dtype_name, to_coded,
                        layout_from_meta, pack_file_header, pack_index, voxel_crc)
from .network import BlockModel, ModelConfig
from .presets import preset as get_preset

#: the automatic block depth aims at about this many voxels per block when every block trains its own
#: networks (they need that much data to learn from) ...
AUTO_BLOCK_VOXELS = 16 * 2 ** 20
#: ... and at this many when blocks start from a zoo prior: small blocks then cost no bits (measured
#: on the five volumes of ../shared/data: -0.35% to +0.13% for `fast`, -0.6% to 0 for `default`) and
#: spread a volume over the cores
AUTO_PRIOR_BLOCK_VOXELS = 4 * 2 ** 20
#: the fewest slices of an automatic block with priors (the first slice of a block has none before it)
AUTO_PRIOR_MIN_DEPTH = 4
#: slices larger than this are tiled in-plane by default
AUTO_TILE = 2048
#: blocks smaller than this are also coded with untrained networks, and the smaller result is kept
CHECK_UNTRAINED_BELOW = 1 << 21


def auto_block_depth(slice_shape, total_slices: int | None = None, *, prior: bool = False) -> int:
    """About AUTO_BLOCK_VOXELS voxels per block (AUTO_PRIOR_BLOCK_VOXELS with zoo priors), at most
    256 slices. When the volume's depth is known, blocks are balanced so that no small block is left
    at the end (each block trains a model: a 4-slice tail block would pay for a whole one); with
    priors their number is also made even (2 blocks rather than 3, 4 rather than 5), so that they
    share 2 or 4 cores evenly.  The layout depends on the volume only, never on the worker count."""
    h, w = slice_shape
    target = AUTO_PRIOR_BLOCK_VOXELS if prior else AUTO_BLOCK_VOXELS
    depth = int(max(AUTO_PRIOR_MIN_DEPTH if prior else 1, min(256, target // max(h * w, 1))))
    if total_slices:
        n_blocks = max(1, round(total_slices / depth))
        if prior and n_blocks > 2 and n_blocks % 2:
            n_blocks -= 1
        depth = -(-total_slices // n_blocks)
    return depth


@dataclass
class BlockInfo:
    index: int
    z0: int
    depth: int
    y0: int
    x0: int
    h: int
    w: int
    nbytes: int
    model_bytes: int
    inter: bool
    constant: bool
    fit_seconds: float = 0.0
    code_seconds: float = 0.0
    #: payload bits of each slice of the block (encoder side only)
    slice_bits: list | None = None
    #: the block was kept from the partial stream of an interrupted encode (``resume=True``)
    resumed: bool = False

    @property
    def voxels(self):
        return self.depth * self.h * self.w

    @property
    def bits_per_voxel(self):
        return 8 * self.nbytes / max(self.voxels, 1)


#: warm-start lanes: a block fine-tunes from the block ``LANES`` layers above it in its tile column,
#: so that the blocks of ``LANES`` successive layers train at once (the stream never depends on the
#: number of workers); the first ``LANES`` layers of a column train from scratch
LANES = 2


@dataclass
class TileSettings:
    """What coding one tile needs besides its voxels (sent once to each worker process)."""

    config: ModelConfig
    opts: object  # FitOptions
    train: str
    threads: int | None
    shared_model: BlockModel | None
    #: zoo priors (their models) a block may start from; a block header names the one it uses
    priors: tuple = ()


def code_tile(st: TileSettings, data: np.ndarray, z: int, y0: int, x0: int, index: int, bank,
              progress=(None, None)):
    """Code one tile of a layer: ``(BlockInfo, record, bank)``, the bank being the training state the
    tile ``LANES`` layers below starts from (None when nothing was trained)."""
    d, h, w = data.shape
    lo, hi, centre, shift = value_range(data)
    t0 = time.perf_counter()
    if lo == hi:  # constant block: no model, no payload
        flags, model_bytes, payload, inter, slice_bits, fit_s = FLAG_CONSTANT, b"", b"", False, [0] * d, 0.0
        bank = None
        prior = 0
    else:
        model, model_bytes, payload, fields, fit_s, bank, prior = _code(st, data, bank, progress)
        inter = model.inter is not None
        flags = (FLAG_INTER if inter else 0) | (FLAG_SHARED if model is st.shared_model else 0)
        slice_bits = fields["slice_bits"]
        if len(model_bytes) + len(payload) >= data.nbytes:  # incompressible (noise): store the voxels
            flags, inter, model_bytes, prior = FLAG_RAW, False, b"", 0
            payload = np.ascontiguousarray(data, data.dtype.newbyteorder("<")).tobytes()
            slice_bits = [8 * data.itemsize * h * w] * d
    header = BlockHeader(index, z, d, y0, x0, h, w, lo, hi, centre, shift, flags, len(model_bytes),
                         len(payload), zlib.crc32(model_bytes + payload), voxel_crc(data), prior)
    record = header.pack() + model_bytes + payload
    info = BlockInfo(index, z, d, y0, x0, h, w, len(record), len(model_bytes), inter,
                     bool(flags & FLAG_CONSTANT), fit_s, time.perf_counter() - t0 - fit_s, slice_bits)
    return info, record, bank


def _code(st: TileSettings, data, bank, progress=(None, None)):
    """Choose the block's model and code the block with it.

    Returns ``(model, model bytes to embed, payload, fields, fit seconds, bank, prior)``: ``prior`` is
    0, or k when the model is the k-th prior (the model bytes then hold its difference from it)."""
    on_fit, on_code = progress
    if st.shared_model is not None:
        payload, fields = encode_block(data, st.shared_model, progress=on_code)
        return st.shared_model, b"", payload, fields, 0.0, bank, 0
    if st.priors:
        return _code_with_prior(st, data, bank, progress)
    if st.train == "never":
        return (*_coded(untrained_model(st.config), data, on_code), 0.0, bank, 0)
    model, bank, fit_s = _fit(st, data, bank, st.config, on_fit)
    best = _coded(model, data, on_code)
    if data.size < CHECK_UNTRAINED_BELOW and bank is not None and st.train == "auto":
        # small block: keep the trained model only if it pays for its weights
        plain = _coded(untrained_model(st.config), data)
        if len(plain[1]) + len(plain[2]) < len(best[1]) + len(best[2]):
            best = plain
    return (*best, fit_s, bank, 0)


def _fit(st: TileSettings, data, bank, config, on_fit, **kw):
    """Train (or fine-tune) a model for the block: ``(model, bank, seconds)``."""
    import torch

    t0 = time.perf_counter()
    old = torch.get_num_threads()
    if st.threads:
        torch.set_num_threads(st.threads)
    try:
        model, bank, _ = fit_block(data, config, st.opts, bank,
                                   min_voxels=1 if st.train == "always" else MIN_TRAIN_VOXELS, progress=on_fit, **kw)
    finally:
        torch.set_num_threads(old)
    return model, bank, time.perf_counter() - t0


def _code_with_prior(st: TileSettings, data, bank, progress):
    """Code the block with the prior that codes a sample of it best, as it is or fine-tuned (and, with
    ``scratch``, with a model trained from scratch too): the candidate of fewest bytes wins."""
    from ..zoo.select import choose

    on_fit, on_code = progress
    # the prior, and whether the slice before pays for its inputs here (on sectioned EM it mostly does not)
    k, as_is = choose(data, st.priors)
    prior = st.priors[k]
    opts = st.opts
    train = st.train != "never" and opts.prior_steps > 0 and \
        data.size >= (1 if st.train == "always" else MIN_TRAIN_VOXELS)
    payload, fields = encode_block(data, as_is, progress=None if train or opts.scratch else on_code)
    best = (as_is, b"", payload, fields, k + 1)  # the prior as it is: no model bytes
    fit_s = 0.0
    banks = dict(bank) if isinstance(bank, dict) else {}  # the lane's training state: "tuned", "scratch"
    if train:
        from .training import NetBank

        start = banks.get("tuned")
        if getattr(start, "prior_sha256", None) != prior.sha256:
            start = NetBank.from_nets(list(prior.intra.values()) + list((prior.inter or {}).values()),
                                      prior.config.hidden)
        model, tuned_bank, fit_s = _fit(st, data, start, prior.config, on_fit, steps=opts.prior_steps,
                                        lr=opts.prior_lr)
        if tuned_bank is not None:
            tuned_bank.prior_sha256 = prior.sha256
            banks["tuned"] = tuned_bank
            payload, fields = encode_block(data, model, progress=None if opts.scratch else on_code)
            tuned = (model, model.delta_bytes(prior), payload, fields, k + 1)
            if _size(tuned) < _size(best):
                best = tuned
    if opts.scratch and st.train != "never":
        model, scratch_bank, s_fit = _fit(st, data, banks.get("scratch"), st.config, on_fit)
        fit_s += s_fit
        if scratch_bank is not None:
            banks["scratch"] = scratch_bank
        own = (*_coded(model, data, on_code), 0)
        if _size(own) < _size(best):
            best = own
    return (*best[:4], fit_s, banks or None, best[4])


def _size(c) -> int:
    return len(c[1]) + len(c[2])


def _coded(model, data, progress=None):
    payload, fields = encode_block(data, model, progress=progress)
    return model, model.to_bytes(), payload, fields


def _load_trainer():
    """Import what training loads on first use: torch, and the compiler stack torch.optim imports
    when an optimizer is first built (about 1.4 s).  Forked workers then inherit it."""
    import importlib

    importlib.import_module("torch")
    try:
        importlib.import_module("torch._dynamo")
    except ImportError:
        pass


_SETTINGS: TileSettings | None = None  # in a worker process: the encoder's settings


def _worker_init(settings: TileSettings):
    global _SETTINGS
    _SETTINGS = settings


def _worker_code(job):
    return code_tile(_SETTINGS, *job)


class Encoder:
    """Streaming encoder: feed z-slices in order, each block is coded and written once complete.

    >>> enc = Encoder("out.vxc", dtype="uint8", slice_shape=(512, 512))   # doctest: +SKIP
    >>> for s in slices: enc.write(s)                                       # doctest: +SKIP
    >>> enc.close()                                                         # doctest: +SKIP

    ``file`` is a path, a writable binary file object, or ``None`` to collect the stream in memory
    (:meth:`getvalue`).  ``block_depth`` defaults to about 4 Mi voxels per block with zoo priors, 16 Mi
    without them or with ``max`` (which also trains a model from scratch), balanced over
    ``expected_slices`` when the depth of the volume is known in advance (:func:`auto_block_depth`);
    ``tile`` splits large slices in-plane (default: slices above 2048 x 2048 are cut into 2048 x
    2048 tiles).
    ``on_block`` is called with a :class:`BlockInfo` after each block is written.
    ``train``: "auto" trains a model per block but keeps plain neighbour-average networks when they
    code a small block into fewer bytes; "always" / "never" force one or the other.
    ``fit_options`` overrides fields of the preset's :class:`~voxcodec.core.block.FitOptions`
    (for example ``{"steps": 400, "inter": "always"}``).
    ``prior``: the zoo priors (:mod:`voxcodec.zoo`) blocks may start from: "auto" (default) every prior
    installed, "none" none (every block trains from scratch), an id or a list of ids; each block
    uses the one that codes a sample of it best, as the preset says (see :mod:`.presets`).
    ``shared_model`` (from :func:`voxcodec.fit_model`) codes every block with one model held
    outside the stream, for many small chunks that cannot each afford a model; the decoder then
    needs the same model.
    ``banks``: a dict holding the training state of each tile, updated as blocks are coded. Pass
    the same dict to successive encoders (one per zarr chunk, say) and each block fine-tunes from
    the weights of the block before it, as within one stream.
    ``on_progress(voxels)`` is called often while a block trains and codes, with the number of
    voxels done so far (a float: the block in hand counts in part), for progress bars and ETAs.
    ``workers``: processes that code blocks at once (None: every core; default 1), each with
    ``threads`` torch threads (default 1); the stream never depends on either.  The blocks of a
    layer's tiles and of ``LANES`` successive layers code in parallel: a block fine-tunes from the
    block ``LANES`` layers above it in its tile column.  Records are written in order, and at most
    ``2 * workers`` blocks are in flight; with several workers, progress moves block by block.

    Interrupted encodes (path-backed ``file`` only): ``resume=True`` keeps the complete blocks of
    the partial stream already at ``file`` (see :mod:`voxcodec.core.resume`); write the volume from
    its first slice as usual: slices already coded are checked against their blocks' CRC-32s
    instead of being coded again (``resumed_slices`` says how many). ``checkpoint=True`` (implied by
    ``resume``) saves the training state beside the stream after every layer of blocks, so that a
    resumed encode writes the same bytes as an uninterrupted one; it is removed by :meth:`close`.
    """

    def __init__(self, file=None, *, dtype="uint8", slice_shape, preset: str = "default", block_depth=None,
                 tile=None, metadata: dict | None = None, device: str = "cpu", threads: int | None = None,
                 seed: int = 0, warm_start: bool = True, on_block=None, config: ModelConfig | None = None,
                 train: str = "auto", fit_options: dict | None = None, expected_slices: int | None = None,
                 shared_model: BlockModel | None = None, banks: dict | None = None, on_progress=None,
                 resume: bool = False, checkpoint: bool = False, workers: int | None = 1, prior="auto"):
        self.dtype = check_dtype(dtype)  # the volume's type; int8 / int16 are coded as unsigned (to_coded)
        h, w = (int(s) for s in slice_shape)
        if h < 1 or w < 1:
            raise UnsupportedError(f"slices must be at least 1 x 1, got {h} x {w}")
        self.slice_shape = (h, w)
        self.preset = preset
        self.config, self.opts = get_preset(preset)
        if config is not None:
            self.config = config
        self.shared_model = shared_model
        if shared_model is not None:
            self.config = shared_model.config
        self.config.validate()
        for k, v in (fit_options or {}).items():
            if not hasattr(self.opts, k):
                raise ValueError(f"unknown fit option {k!r}")
            setattr(self.opts, k, v)
        self.opts.device, self.opts.seed = device, seed
        self.workers = parallel.resolve(workers)
        from .. import zoo

        if shared_model is not None and prior not in ("auto", "none", None):
            raise ValueError("a shared model and a prior exclude each other")
        self.priors = [] if shared_model is not None else zoo.resolve(prior)
        # blocks from a prior may be small; `max` also trains a model from scratch, which needs a large block
        self.block_depth = int(block_depth) if block_depth else \
            auto_block_depth(self.slice_shape, expected_slices, prior=bool(self.priors) and not self.opts.scratch)
        if self.block_depth < 1:
            raise ValueError("block_depth must be at least 1")
        if tile is None:
            tile = (min(h, AUTO_TILE), min(w, AUTO_TILE))
        self.tile = (min(int(tile[0]), h), min(int(tile[1]), w))
        if min(self.tile) < 1:
            raise ValueError("tile sizes must be at least 1")
        if expected_slices:  # never more workers than blocks: one block codes here, with progress that moves
            n_blocks = -(-int(expected_slices) // self.block_depth) * -(-h // self.tile[0]) * -(-w // self.tile[1])
            self.workers = max(1, min(self.workers, n_blocks))
        if train not in ("auto", "always", "never"):
            raise ValueError(f"train must be 'auto', 'always' or 'never', got {train!r}")
        self.train = train
        self.threads = threads
        self.warm_start = warm_start
        self.on_block = on_block
        self.on_progress = on_progress
        self._own = isinstance(file, (str, os.PathLike))
        if (resume or checkpoint) and not self._own:
            raise ValueError("resume and checkpoint need a file path")
        self._path = os.fspath(file) if self._own else None
        self._checkpoint = bool(resume or checkpoint)
        self._pos = 0
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._z = 0
        self._banks: dict = {} if banks is None else banks  # (y0, x0, lane) -> bank, as of the last layer written
        self._latest: dict = {}  # (y0, x0, lane) -> the bank (or the pending job) its next block starts from
        self._pending: deque = deque()  # layers submitted and not yet written: (z, [job results or futures])
        self._pool = None
        self._code = lambda job: (_worker_code, job)  # a job as the pool runs it (a process's; threads: below)
        self.blocks: list[BlockInfo] = []
        self._index: list[IndexEntry] = []
        self._closed = False
        self.meta = {"dtype": dtype_name(self.dtype),
                     "slice_shape": list(self.slice_shape), "block_depth": self.block_depth, "tile": list(self.tile),
                     "model": self.config.to_json(), "preset": preset, "encoder": f"voxcodec {__version__}",
                     "metadata": metadata or {}}
        if shared_model is not None:
            self.meta["shared_model"] = shared_model.id
        if self.priors:
            self.meta["priors"] = [p.ref for p in self.priors]
        try:  # never write a stream that a decoder would refuse
            layout_from_meta(self.meta)
        except CorruptStreamError as exc:
            raise UnsupportedError(f"{exc}".replace("file header field ", "") +
                                   " (a decoder refuses such streams: choose a smaller tile or block depth)") from None
        self._voxels_done = 0.0  # voxels of the blocks coded so far (progress)
        self._fit_share = 0.8  # share of a tile's time spent training, updated from each trained tile
        self._last_report = 0.0
        #: slices restored from the partial stream (``resume=True``), checked as they are written again
        self.resumed_slices = 0
        self.resumed_identical = False  # the training state was restored too: same bytes as without the stop
        self._kept: dict = {}
        self._layer_states: dict = {}  # checkpointed training state of the last layers (see resume.save_state)
        part = _resume.load_partial(self._path, self.meta) if resume else None
        if part is None:
            if self._checkpoint:
                _resume.remove_state(self._path)  # a checkpoint of an earlier run does not belong to this one
            self._f = open(file, "wb") if self._own else (file if file is not None else io.BytesIO())
            self._write(pack_file_header(self.meta))
        else:
            self._reopen(part)

    def _reopen(self, part):
        """Continue the partial stream: keep its complete layers, cut what follows them."""
        self._f = open(self._path, "r+b")
        self._f.truncate(part.end)
        self._f.seek(part.end)
        self._pos = part.end
        for e, hd in zip(part.index, part.headers):
            info = BlockInfo(len(self.blocks), e.z0, e.depth, e.y0, e.x0, e.h, e.w, e.length, e.model_bytes, e.inter,
                             bool(hd.flags & FLAG_CONSTANT), resumed=True)
            self.blocks.append(info)
            self._index.append(e)
            self._kept.setdefault(e.z0, []).append((info, hd.voxel_crc))
        self.resumed_slices = part.z
        if part.banks is not None:
            self._banks.update(part.banks)
            self._latest.update(part.banks)
            self.resumed_identical = True
            self._layer_states = {part.z: {"end": part.end, "banks": dict(part.banks)}}

    # -- writing -------------------------------------------------------------------------------
    def _write(self, b: bytes):
        self._f.write(b)
        self._pos += len(b)

    def write(self, slices) -> list[BlockInfo]:
        """Append one slice (H, W) or a stack (n, H, W). Returns the blocks written by this call (with
        several workers, blocks are written once the layers before them are)."""
        if self._closed:
            raise ValueError("the encoder is closed")
        a = np.asarray(slices)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] != self.slice_shape:
            raise UnsupportedError(f"expected slices of shape {self.slice_shape}, got an array of shape {a.shape}")
        if a.dtype.newbyteorder("=") != self.dtype:
            raise UnsupportedError(f"expected {self.dtype} slices, got {a.dtype}")
        a = to_coded(np.asarray(a, self.dtype))  # what the blocks code: unsigned values
        if self._z + self._buffered + a.shape[0] > MAX_SLICES:
            raise UnsupportedError(f"a stream holds at most {MAX_SLICES} slices")
        done = []
        while a.shape[0]:
            take = min(a.shape[0], self.block_depth - self._buffered)
            self._buffer.append(np.ascontiguousarray(a[:take]))
            self._buffered += take
            a = a[take:]
            if self._buffered == self.block_depth:
                done += self._flush()
        return done

    def _trains(self) -> bool:
        """Whether blocks may train (torch): then workers are processes, else threads."""
        return self.train != "never" and self.shared_model is None and bool(
            self.opts.prior_steps or self.opts.scratch or not self.priors)

    def _settings(self) -> TileSettings:
        return TileSettings(self.config, self.opts, self.train, self.threads or 1, self.shared_model,
                            tuple(p.model for p in self.priors))

    def _bank(self, key):
        if not self.warm_start:
            return None
        v = self._latest.get(key, self._banks.get(key))
        return v.result()[2] if isinstance(v, Future) else v

    def _flush(self) -> list[BlockInfo]:
        """Code the layer in hand (its tiles go to the workers, if any) and write what is ready."""
        if not self._buffered:
            return []
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer, self._buffered = [], 0
        if self._z < self.resumed_slices:
            return self._check_kept(data)
        th, tw = self.tile
        h, w = self.slice_shape
        z, lane = self._z, (self._z // self.block_depth) % LANES
        tiles = [(y0, x0) for y0 in range(0, h, th) for x0 in range(0, w, tw)]
        if self.workers > 1 and self._pool is None:
            if self._trains():
                _load_trainer()  # once here, not once in every forked worker
                self._pool = parallel.pool(self.workers, _worker_init, (self._settings(),),
                                           threads=self.threads or 1)
            else:  # the compiled kernels release the GIL: threads, with no process to start or feed
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="voxcodec-encode")
                settings = self._settings()
                self._code = lambda job: (code_tile, settings, *job)
        done = []
        if self._pool is not None:  # keep at most 2 x workers tiles in flight
            while self._pending and sum(len(r) for _, r in self._pending) + len(tiles) > 2 * self.workers:
                done += self._write_layer()
        results, index = [], len(self.blocks) + sum(len(r) for _, r in self._pending)
        for k, (y0, x0) in enumerate(tiles):
            tile = np.ascontiguousarray(data[:, y0:y0 + th, x0:x0 + tw])
            job = (tile, z, y0, x0, index + k, self._bank((y0, x0, lane)))
            if self._pool is None:
                r = code_tile(self._settings(), *job, progress=self._tile_progress(tile.size))
                self._voxels_done += r[0].voxels
                self._report(self._voxels_done, force=True)
            else:
                r = self._pool.submit(*self._code(job))
            self._latest[(y0, x0, lane)] = r if isinstance(r, Future) else r[2]
            results.append(r)
        self._z += data.shape[0]
        self._pending.append((z, results))
        while self._pending and (self._pool is None or all(r.done() for r in self._pending[0][1])):
            done += self._write_layer()
        return done

    def _write_layer(self) -> list[BlockInfo]:
        """Write the oldest layer not yet written (waiting for its tiles): its records, in order."""
        z, results = self._pending.popleft()
        coded = [r.result() if isinstance(r, Future) else r for r in results]
        lane = (z // self.block_depth) % LANES
        for info, _, bank in coded:
            self._banks[(info.y0, info.x0, lane)] = bank
            if self._pool is not None:
                self._voxels_done += info.voxels
            if info.fit_seconds > 0:
                self._fit_share = info.fit_seconds / max(info.fit_seconds + info.code_seconds, 1e-9)
        end_z = z + coded[0][0].depth
        if self._checkpoint:  # the training state after this layer goes to disk before the layer itself
            self._layer_states = _resume.save_state(self._path, self._layer_states, end_z,
                                                    self._pos + sum(len(r) for _, r, _ in coded), self._banks)
        for info, record, _ in coded:
            self._index.append(IndexEntry(self._pos, len(record), info.z0, info.depth, info.y0, info.x0, info.h,
                                          info.w, 8 * len(record), info.model_bytes, info.inter))
            self._write(record)
            self.blocks.append(info)
            if self.on_block is not None:
                self.on_block(info)
        if self._checkpoint:
            self._f.flush()
            os.fsync(self._f.fileno())
        if self._pool is not None:
            self._report(self._voxels_done, force=True)
        return [info for info, _, _ in coded]

    def _stop_pool(self, cancel: bool):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def _check_kept(self, data) -> list[BlockInfo]:
        """Slices of a layer kept from the partial stream: they must be the ones it coded."""
        kept = self._kept.get(self._z, [])
        for info, crc in kept:
            tile = data[:, info.y0:info.y0 + info.h, info.x0:info.x0 + info.w]
            if tile.shape != (info.depth, info.h, info.w) or voxel_crc(np.ascontiguousarray(tile)) != crc:
                raise InputError(f"slices {self._z}:{self._z + data.shape[0]} differ from those coded into "
                                 f"{self._path} before it was interrupted: the input changed; start over without "
                                 "resuming")
        if not kept:
            raise InputError(f"slices {self._z}:{self._z + data.shape[0]} do not line up with the blocks kept in "
                             f"{self._path}; start over without resuming")
        self._z += data.shape[0]
        for info, _ in kept:
            self._voxels_done += info.voxels
            if self.on_block is not None:
                self.on_block(info)
        self._report(self._voxels_done, force=True)
        return [info for info, _ in kept]

    def _report(self, voxels: float, force: bool = False):
        if self.on_progress is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= 0.1:
            self._last_report = now
            self.on_progress(voxels)

    def _tile_progress(self, voxels: int):
        """Progress callbacks for one tile: ``(fit(step, steps), code(slices_done, slices))``; training
        counts for the share of the tile's time it took on the tile before."""
        base, share = self._voxels_done, self._fit_share
        seen = [0.0]

        def at(fraction):
            seen[0] = max(seen[0], fraction)  # a small block may be coded twice: never step back
            self._report(base + voxels * seen[0])

        return (lambda step, steps: at(share * step / max(steps, 1)),
                lambda done, total: at(share + (1 - share) * done / max(total, 1)))

    @property
    def shape(self):
        return (self._z + self._buffered, *self.slice_shape)

    def close(self):
        """Code the last (partial) block and write the block index. Idempotent."""
        if self._closed:
            return
        try:
            self._flush()
            while self._pending:
                self._write_layer()
        finally:
            self._stop_pool(cancel=True)
        if self._z < self.resumed_slices:
            raise InputError(f"the input ended after {self._z} slices, but {self._path} already holds "
                             f"{self.resumed_slices}: the input changed; start over without resuming")
        self._write(pack_index((self._z, *self.slice_shape), self._index, self._pos))
        self._f.flush()
        if self._own:
            os.fsync(self._f.fileno())
            self._f.close()
        if self._checkpoint:
            _resume.remove_state(self._path)
        self._closed = True

    def getvalue(self) -> bytes:
        """The whole stream, for an encoder writing to memory (``file=None``)."""
        self.close()
        return self._f.getvalue()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self._stop_pool(cancel=True)
            if self._own:
                self._f.close()


def encode(array, *, preset: str = "default", block_depth=None, tile=None, metadata=None, device="cpu",
           threads=None, seed: int = 0, train: str = "auto", fit_options: dict | None = None,
           shared_model: BlockModel | None = None, banks: dict | None = None, workers: int | None = 1,
           prior="auto") -> bytes:
    """Encode a (Z, Y, X) uint8, uint16, int8 or int16 array into a ``.vxc`` stream (bytes).  Signed
    volumes are coded through the offset mapping of :func:`voxcodec.core.container.to_coded` and
    decode to their own type.

    2-D arrays are treated as a single slice. ``banks``: training state carried over between
    calls; ``workers``: processes coding blocks at once (see :class:`Encoder`).
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise UnsupportedError(f"expected a 3-D (z, y, x) array, got {a.ndim} dimensions")
    check_dtype(a.dtype)
    enc = Encoder(None, dtype=a.dtype, slice_shape=a.shape[1:], preset=preset, block_depth=block_depth, tile=tile,
                  metadata=metadata, device=device, threads=threads, seed=seed, train=train,
                  fit_options=fit_options, expected_slices=a.shape[0], shared_model=shared_model, banks=banks,
                  workers=workers, prior=prior)
    enc.write(a)
    return enc.getvalue()


def fit_model(volume, *, preset: str = "default", seed: int = 0, device: str = "cpu",
              threads: int | None = None) -> BlockModel:
    """Train one model on a sample volume, to code many small chunks with (``shared_model=``).

    The sample should look like the data to come (same modality and contrast); a few million
    voxels are plenty. The model's weights are a few kilobytes (``model.to_bytes()``).
    """
    import torch

    from .block import fit_block

    a = np.asarray(volume)
    if a.ndim == 2:
        a = a[None]
    check_dtype(a.dtype)
    if a.ndim != 3 or a.size == 0:
        raise UnsupportedError(f"fit_model needs a non-empty 3-D sample volume, got shape {a.shape}")
    config, opts = get_preset(preset)
    opts.seed, opts.device = seed, device
    opts.train_slices = max(opts.train_slices, 12)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model, _, _ = fit_block(np.ascontiguousarray(a), config, opts, min_voxels=1)
    finally:
        torch.set_num_threads(old)
    return model
