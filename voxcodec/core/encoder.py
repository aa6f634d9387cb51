"""Writing ``.vxc`` streams: the streaming :class:`Encoder` and :func:`encode`.

The data path of the encoder: slices -> blocks of ``block_depth`` slices, cut into tiles -> each
block coded by the native engine with the preset's parameters, its model learning while it codes
(:mod:`voxcodec.core.learn`) -> block records in the container (:mod:`voxcodec.core.container`).
Blocks are independent: nothing carries over from one to the next, so blocks code in parallel and
an interrupted encode resumes to the same bytes.
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
from . import learn, parallel
from . import resume as _resume
from .container import (FLAG_CONSTANT, FLAG_RAW, MAX_SLICES, BlockHeader, IndexEntry, check_dtype, dtype_name,
                        layout_from_meta, pack_file_header, pack_index, to_coded, voxel_crc)
from .presets import preset as get_preset

#: the automatic block depth aims at about this many voxels per block: enough to learn from (a block
#: starts learning from nothing), small enough to spread a volume over the cores and to read a region
#: without decoding much more
AUTO_BLOCK_VOXELS = 4 * 2 ** 20
#: the fewest slices of an automatic block (the first slice of a block has none before it)
AUTO_MIN_DEPTH = 4
#: slices larger than this are tiled in-plane by default
AUTO_TILE = 2048


def auto_block_depth(tile_shape, total_slices: int | None = None) -> int:
    """About AUTO_BLOCK_VOXELS voxels per block (of tiles of ``tile_shape``), at least AUTO_MIN_DEPTH and at
    most 256 slices.  When
    the volume's depth is known, blocks are balanced so that no small block is left at the end, and
    their number is made even (2 blocks rather than 3, 4 rather than 5) so that they share 2 or 4
    cores evenly.  The layout depends on the volume only, never on the worker count."""
    h, w = tile_shape
    depth = int(max(AUTO_MIN_DEPTH, min(256, AUTO_BLOCK_VOXELS // max(h * w, 1))))
    if total_slices:
        n_blocks = max(1, round(total_slices / depth))
        if n_blocks > 2 and n_blocks % 2:
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
    constant: bool
    #: how the block is coded: "constant", "stored", or the coder of its parameters ("tables", "mixing")
    mode: str = ""
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


def code_tile(candidates, data: np.ndarray, z: int, y0: int, x0: int, index: int) -> tuple[BlockInfo, bytes]:
    """Code one tile of a layer: ``(BlockInfo, record)``.  A constant tile costs its header; otherwise
    every candidate set of parameters codes it and the smallest payload wins, unless storing the voxels
    is smaller still."""
    d, h, w = data.shape
    lo, hi, centre, shift = learn.value_range(data)
    t0 = time.perf_counter()
    section, payload = b"", b""
    if lo == hi:  # constant block: no model, no payload
        flags, slice_bits, mode = FLAG_CONSTANT, [0.0] * d, "constant"
    else:
        best = None
        for params in candidates:
            coded, bits = learn.encode_block(data, params)
            if best is None or len(coded) < len(best[1]):
                best = (params, coded, bits)
        params, payload, slice_bits = best
        section, flags, mode = params.to_bytes(), 0, params.coder
        if len(section) + len(payload) >= data.nbytes:  # incompressible (noise): store the voxels
            flags, section, mode = FLAG_RAW, b"", "stored"
            payload = np.ascontiguousarray(data, data.dtype.newbyteorder("<")).tobytes()
            slice_bits = [8.0 * data.itemsize * h * w] * d
    header = BlockHeader(index, z, d, y0, x0, h, w, lo, hi, centre, shift, flags, len(section), len(payload),
                         zlib.crc32(section + payload), voxel_crc(data), 0)
    record = header.pack() + section + payload
    info = BlockInfo(index, z, d, y0, x0, h, w, len(record), len(section), bool(flags & FLAG_CONSTANT), mode,
                     time.perf_counter() - t0, slice_bits)
    return info, record


class Encoder:
    """Streaming encoder: feed z-slices in order, each block is coded and written once complete.

    >>> enc = Encoder("out.vxc", dtype="uint8", slice_shape=(512, 512))   # doctest: +SKIP
    >>> for s in slices: enc.write(s)                                       # doctest: +SKIP
    >>> enc.close()                                                         # doctest: +SKIP

    ``file`` is a path, a writable binary file object, or ``None`` to collect the stream in memory
    (:meth:`getvalue`).  ``preset``: "fast", "default" or "max" (:mod:`voxcodec.core.presets`);
    ``params``, a list of :class:`~voxcodec.core.learn.Params`, replaces the preset's candidates.
    ``block_depth`` defaults to about 4 Mi voxels per block, balanced over ``expected_slices`` when the
    depth of the volume is known in advance (:func:`auto_block_depth`); ``tile`` splits large slices
    in-plane (default: slices above 2048 x 2048 are cut into 2048 x 2048 tiles).
    ``on_block`` is called with a :class:`BlockInfo` after each block is written, ``on_progress(voxels)``
    with the number of voxels coded so far (for progress bars and ETAs).
    ``workers``: threads that code blocks at once (None: every core; default 1); the native engine
    releases the GIL, and the stream never depends on the worker count.  Records are written in order,
    and at most ``2 * workers`` blocks are in flight.

    Interrupted encodes (path-backed ``file`` only): ``resume=True`` keeps the complete blocks of the
    partial stream already at ``file`` (see :mod:`voxcodec.core.resume`); write the volume from its first
    slice as usual: slices already coded are checked against their blocks' CRC-32s instead of being
    coded again (``resumed_slices`` says how many).  Blocks depend on nothing before them, so a resumed
    stream is byte-identical to an uninterrupted one.
    """

    def __init__(self, file=None, *, dtype="uint8", slice_shape, preset: str = "default", block_depth=None,
                 tile=None, metadata: dict | None = None, on_block=None, expected_slices: int | None = None,
                 on_progress=None, resume: bool = False, workers: int | None = 1, params=None):
        self.dtype = check_dtype(dtype)  # the volume's type; int8 / int16 are coded as unsigned (to_coded)
        h, w = (int(s) for s in slice_shape)
        if h < 1 or w < 1:
            raise UnsupportedError(f"slices must be at least 1 x 1, got {h} x {w}")
        self.slice_shape = (h, w)
        self.preset = preset
        self.candidates = tuple(params) if params is not None else get_preset(preset)
        if not self.candidates or not all(isinstance(p, learn.Params) for p in self.candidates):
            raise ValueError("params must be a non-empty list of voxcodec.core.learn.Params")
        for p in self.candidates:
            p.to_bytes()  # refuse parameters outside the format's limits before anything is written
        self.workers = parallel.resolve(workers)
        if tile is None:
            tile = (min(h, AUTO_TILE), min(w, AUTO_TILE))
        self.tile = (min(int(tile[0]), h), min(int(tile[1]), w))
        if min(self.tile) < 1:
            raise ValueError("tile sizes must be at least 1")
        # a block is a tile's column of slices: its depth follows the tile, not the whole slice
        self.block_depth = int(block_depth) if block_depth else auto_block_depth(self.tile, expected_slices)
        if self.block_depth < 1:
            raise ValueError("block_depth must be at least 1")
        if expected_slices:  # never more workers than blocks
            n_blocks = -(-int(expected_slices) // self.block_depth) * -(-h // self.tile[0]) * -(-w // self.tile[1])
            self.workers = max(1, min(self.workers, n_blocks))
        self.on_block = on_block
        self.on_progress = on_progress
        self._own = isinstance(file, (str, os.PathLike))
        if resume and not self._own:
            raise ValueError("resume needs a file path")
        self._path = os.fspath(file) if self._own else None
        self._pos = 0
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._z = 0
        self._pending: deque = deque()  # layers submitted and not yet written: (z, [results or futures])
        self._pool = None
        self.blocks: list[BlockInfo] = []
        self._index: list[IndexEntry] = []
        self._closed = False
        self.meta = {"dtype": dtype_name(self.dtype), "slice_shape": list(self.slice_shape),
                     "block_depth": self.block_depth, "tile": list(self.tile),
                     "model": [p.to_bytes().hex() for p in self.candidates],  # the candidates' 16 bytes each
                     "preset": preset, "encoder": f"voxcodec {__version__}", "metadata": metadata or {}}
        try:  # never write a stream that a decoder would refuse
            layout_from_meta(self.meta)
        except CorruptStreamError as exc:
            raise UnsupportedError(f"{exc}".replace("file header field ", "") +
                                   " (a decoder refuses such streams: choose a smaller tile or block depth)") from None
        self._voxels_done = 0
        #: slices restored from the partial stream (``resume=True``), checked as they are written again
        self.resumed_slices = 0
        self._kept: dict = {}
        part = _resume.load_partial(self._path, self.meta) if resume else None
        if part is None:
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
            info = BlockInfo(len(self.blocks), e.z0, e.depth, e.y0, e.x0, e.h, e.w, e.length, e.model_bytes,
                             bool(hd.flags & FLAG_CONSTANT), resumed=True)
            self.blocks.append(info)
            self._index.append(e)
            self._kept.setdefault(e.z0, []).append((info, hd.voxel_crc))
        self.resumed_slices = part.z

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
        z = self._z
        tiles = [(y0, x0) for y0 in range(0, h, th) for x0 in range(0, w, tw)]
        if self.workers > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="voxcodec-encode")
        done = []
        if self._pool is not None:  # keep at most 2 x workers tiles in flight
            while self._pending and sum(len(r) for _, r in self._pending) + len(tiles) > 2 * self.workers:
                done += self._write_layer()
        results, index = [], len(self.blocks) + sum(len(r) for _, r in self._pending)
        for k, (y0, x0) in enumerate(tiles):
            job = (self.candidates, np.ascontiguousarray(data[:, y0:y0 + th, x0:x0 + tw]), z, y0, x0, index + k)
            results.append(code_tile(*job) if self._pool is None else self._pool.submit(code_tile, *job))
        self._z += data.shape[0]
        self._pending.append((z, results))
        while self._pending and (self._pool is None or all(r.done() for r in self._pending[0][1])):
            done += self._write_layer()
        return done

    def _write_layer(self) -> list[BlockInfo]:
        """Write the oldest layer not yet written (waiting for its tiles): its records, in order."""
        _, results = self._pending.popleft()
        coded = [r.result() if isinstance(r, Future) else r for r in results]
        for info, record in coded:
            self._index.append(IndexEntry(self._pos, len(record), info.z0, info.depth, info.y0, info.x0, info.h,
                                          info.w, 8 * len(record), info.model_bytes, False))
            self._write(record)
            self.blocks.append(info)
            self._voxels_done += info.voxels
            if self.on_block is not None:
                self.on_block(info)
        if self._own:  # a layer on disk is a layer a resumed encode keeps
            self._f.flush()
        if self.on_progress is not None:
            self.on_progress(self._voxels_done)
        return [info for info, _ in coded]

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
        if self.on_progress is not None:
            self.on_progress(self._voxels_done)
        return [info for info, _ in kept]

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


def encode(array, *, preset: str = "default", block_depth=None, tile=None, metadata=None, workers: int | None = 1,
           params=None) -> bytes:
    """Encode a (Z, Y, X) uint8, uint16, int8 or int16 array into a ``.vxc`` stream (bytes).  Signed
    volumes are coded through the offset mapping of :func:`voxcodec.core.container.to_coded` and
    decode to their own type.  2-D arrays are treated as a single slice.  ``workers``: threads coding
    blocks at once; ``params`` replaces the preset's candidate parameters (see :class:`Encoder`)."""
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise UnsupportedError(f"expected a 3-D (z, y, x) array, got {a.ndim} dimensions")
    check_dtype(a.dtype)
    enc = Encoder(None, dtype=a.dtype, slice_shape=a.shape[1:], preset=preset, block_depth=block_depth, tile=tile,
                  metadata=metadata, expected_slices=a.shape[0], workers=workers, params=params)
    enc.write(a)
    return enc.getvalue()
