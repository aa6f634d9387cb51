"""Reading ``.vxc`` streams: the random-access :class:`Decoder` and :func:`decode`.

The block index (or, for an interrupted stream, a scan of the block records) says where each block
lies; a block is decoded by the native engine (format 6, :mod:`voxcodec.core.learn`) or, for the
streams of voxcodec 0.1 to 0.5, by the readers of :mod:`voxcodec.core.legacy` (numba), and checked
against its CRC-32s.

A :class:`Decoder` is array-like (``shape``, ``dtype``, ``ndim``, ``size``, numpy basic indexing,
``__array__``) and may be shared between threads, so ``dask.array.from_array(Decoder(path))`` and
napari read a stream lazily: each read decodes only the blocks that hold requested voxels.
"""

from __future__ import annotations

import functools
import io
import operator
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import CorruptStreamError, TruncatedStreamError, UnsupportedError, VoxcodecError
from . import learn, parallel
from .container import (FLAG_CONSTANT, FLAG_INTER, FLAG_RAW, HEADER_SIZE, BlockHeader, IndexEntry, check_entry,
                        check_index, from_coded, layout_from_meta, read_file_header, read_index, voxel_crc)


class Decoder:
    """Random-access reader of a ``.vxc`` stream (bytes, a path or a seekable binary file).

    ``salvage=True`` reads a stream whose end is missing (an interrupted write) by scanning its
    complete blocks; their checksums are still verified.  ``batch`` is accepted for the streams of
    voxcodec 0.5 and older (memory only; the result never depends on it), as is ``shared_model``, the
    model such a stream names when it was coded with one.  ``workers``: threads that decode blocks in
    parallel when a read spans several blocks (default: every core); the compiled kernels release the
    GIL, so threads scale without a process to start or blocks to send back.  The voxels never
    depend on the worker count.

    Array-like: ``dec[z, y, x]`` takes numpy basic indices (ints, slices with any step, ``...``) and
    decodes only the blocks holding the requested voxels; ``np.asarray(dec)`` decodes the whole
    volume.  Unlike numpy, ``nbytes`` (alias ``stream_bytes``) is the size of the *stream* and
    ``len(dec)`` the number of blocks.  One Decoder may be read from several threads at once: every
    file access is a single locked seek+read, decoding runs outside the lock.  A Decoder of a path
    or of bytes pickles (the copy reopens the path), so dask's process and distributed schedulers
    can ship it to their workers.
    """

    def __init__(self, source, *, salvage: bool = False, batch: int | None = None,
                 shared_model: BlockModel | None = None, workers: int | None = None):
        if batch is not None and (isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1):
            raise UnsupportedError(f"batch must be a positive number of voxels, got {batch!r}")
        self.batch = batch
        self.shared_model = shared_model
        self.workers = parallel.resolve(workers)
        self._lock = threading.Lock()  # one seek+read pair on self._f at a time (see _read_at)
        self._salvage = salvage
        self._source = None  # what a pickled copy reopens: a path, or the stream's bytes
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._f = io.BytesIO(bytes(source))
            self._source = self._f.getvalue()
        elif isinstance(source, (str, os.PathLike)):
            self._f = open(source, "rb")
            self._source = os.path.abspath(source)
        else:
            self._f = source
        try:
            self._open(salvage)
        except BaseException:
            if isinstance(source, (str, os.PathLike)):
                self._f.close()
            raise

    def _open(self, salvage):
        """Read and check the file header and the block index (or, salvaging, the block records): every
        field is checked against the limits of docs/format.md before anything is allocated."""
        self._f.seek(0, io.SEEK_END)
        self.nbytes = self._f.tell()
        self._f.seek(0)
        self.meta, self._header_size, self.format_version = read_file_header(self._f, self.nbytes)
        self._layout = layout_from_meta(self.meta, self.format_version)
        self.dtype = self._layout.volume_dtype  # int8 / int16 volumes are coded as unsigned (container.to_coded)
        self.slice_shape = self._layout.slice_shape
        self._legacy = None  # formats 1-5: their reader (networks, priors, shared models)
        if self.format_version >= 6:
            # each block carries its parameters; the header's model lists the encoder's candidates (16 bytes
            # each, in hex), for information
            m = self.meta["model"]
            if isinstance(m, dict):  # the first 0.6.0 builds wrote the first candidate's parameters as an object
                pass
            elif not (isinstance(m, list) and 1 <= len(m) <= 64 and all(
                    isinstance(c, str) and len(c) == 32 and all(ch in "0123456789abcdef" for ch in c) for c in m)):
                raise CorruptStreamError(f"file header field model is {m!r:.60}, not a list of parameter sets "
                                         "(32 hex digits each)")
            if self.meta.get("shared_model") is not None:
                raise CorruptStreamError("file header field shared_model in a format 6 stream (format 6 has no "
                                         "shared models)")
        else:
            from .legacy.reader import LegacyReader

            self._legacy = LegacyReader(self.meta, self.format_version, self.shared_model)
        self.salvaged = False
        try:
            shape, self.index, end = read_index(self._f, self.nbytes)
        except TruncatedStreamError:
            if not salvage:
                raise
            shape, self.index = self._scan()
            self.salvaged = True
        else:
            check_index(self._layout, shape, self.index, self._header_size, end)
        self.shape = tuple(int(s) for s in shape)

    def _scan(self):
        """The complete z-layers of block records of a stream without a block index (salvage).

        Records are read from the end of the file header on.  The scan ends where an interrupted write
        ends: at a record that is incomplete, or whose header is not a block header (no marker, a bad
        header checksum).  A complete block header that does not fit -- a field out of range, an index
        field or geometry other than those of the block the encoder writes at that place (a record
        copied or moved), a layer after a shallower one -- is damage, not an interruption: it raises
        CorruptStreamError.  Only whole layers are kept."""
        lay = self._layout
        n_tiles = lay.n_tiles
        entries, pos, layer_depth = [], self._header_size, lay.block_depth
        while True:
            i = len(entries)
            layer, t = divmod(i, n_tiles)
            raw = self._read_at(pos, HEADER_SIZE)
            if len(raw) < HEADER_SIZE:
                break
            try:
                hd = BlockHeader.unpack(raw, i)
            except CorruptStreamError:
                break  # the end of what was written (or damage we cannot tell from it)
            hd.check(i, lay)
            if t == 0 and layer_depth < lay.block_depth:
                raise CorruptStreamError(f"a block record follows a layer of {layer_depth} slices, shallower than "
                                         f"the block depth {lay.block_depth}: only the last layer may be", i)
            z0, _, y0, x0, h, w = lay.block(i, (layer + 1) * lay.block_depth)
            if t == 0:
                layer_depth = hd.depth
            if hd.geometry != (z0, layer_depth, y0, x0, h, w) or not 1 <= layer_depth <= lay.block_depth:
                raise CorruptStreamError(f"block header places the block at z0, depth, y0, x0, h, w = "
                                         f"{list(hd.geometry)}, where block {i} of the volume is at "
                                         f"{[z0, min(layer_depth, lay.block_depth), y0, x0, h, w]}", i)
            length = HEADER_SIZE + hd.model_len + hd.payload_len
            if pos + length > self.nbytes:
                break  # its data was not all written
            entries.append(IndexEntry(pos, length, hd.z0, hd.depth, hd.y0, hd.x0, hd.h, hd.w, 8 * length,
                                      hd.model_len, bool(hd.flags & FLAG_INTER)))
            pos += length
        keep = entries[:len(entries) // n_tiles * n_tiles]  # whole z-layers only
        z = keep[-1].z0 + keep[-1].depth if keep else 0
        return (z, *lay.slice_shape), keep

    # -- array-like attributes (``shape`` and ``dtype`` are set by _open) --------------------------

    ndim = 3

    @property
    def size(self) -> int:
        """Number of voxels (as numpy's ``size``)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def stream_bytes(self) -> int:
        """Size of the ``.vxc`` stream in bytes (the same as ``nbytes``, which is NOT the decoded size)."""
        return self.nbytes

    def __len__(self):
        """The number of blocks (not ``shape[0]`` as for a numpy array)."""
        return len(self.index)

    # -- file access ---------------------------------------------------------------------------------

    def _read_at(self, offset: int, n: int) -> bytes:
        """Read ``n`` bytes at ``offset``: the only way blocks are read, atomic under threads."""
        with self._lock:
            self._f.seek(offset)
            return self._f.read(n)

    def _check_header(self, raw: bytes, i: int) -> BlockHeader:
        """The header of block ``i``: its checksum, its fields, its index field and geometry as in the
        block index (whose geometry was checked against the layout when the stream was opened)."""
        e = self.index[i]
        hd = BlockHeader.unpack(raw, i)
        hd.check(i, self._layout, self._layout.block_number(e.z0, e.y0, e.x0))
        check_entry(hd, e, i)
        return hd

    def block_header(self, i: int) -> BlockHeader:
        return self._check_header(self._read_at(self.index[i].offset, HEADER_SIZE), i)

    def read_block(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Decode block ``i`` (depth, h, w) and check its checksums.  ``out``: a C-contiguous array of the
        block's shape and of the stream's (unsigned) type to decode into, instead of a new one."""
        hd, body = self._record(i)
        try:
            coded = self._layout.dtype  # what the blocks hold: unsigned (int8 / int16 volumes are mapped back below)
            if out is not None and (out.shape != hd.shape or out.dtype != coded or not out.flags.c_contiguous):
                raise ValueError(f"block {i} decodes into a C-contiguous {coded} array of shape {hd.shape}")
            if hd.flags & (FLAG_CONSTANT | FLAG_RAW) and out is None:
                out = np.empty(hd.shape, coded)
            if hd.flags & FLAG_CONSTANT:
                out.fill(hd.lo)
            elif hd.flags & FLAG_RAW:  # stored: the voxels themselves (their length was checked)
                out[...] = np.frombuffer(body, coded.newbyteorder("<")).reshape(hd.shape)
            elif self.format_version >= 6:
                params = learn.Params.from_bytes(body[:hd.model_len], i)
                out = learn.decode_block(memoryview(body)[hd.model_len:], params, hd.shape, hd.lo, hd.hi, hd.centre,
                                         hd.shift, coded, out=out, block=i)  # (the payload in place, not copied)
            else:
                out = self._legacy.decode_block(hd, body, i, coded, out, self.batch)
        except MemoryError as exc:  # a valid block of up to MAX_BLOCK_VOXELS voxels, on a small machine
            raise UnsupportedError(f"block {i}: not enough memory to decode this block of {hd.depth} x {hd.h} x "
                                   f"{hd.w} voxels") from exc
        if voxel_crc(out) != hd.voxel_crc:
            raise CorruptStreamError("decoded voxels do not match their checksum", i)
        return from_coded(out, self.dtype)

    def block_model(self, i: int) -> "learn.Params | BlockModel | None":
        """What block ``i`` is coded with: its :class:`~voxcodec.core.learn.Params` (format 6), or the
        networks of a stream of voxcodec 0.5 and older (its own, a zoo prior with or without the block's
        difference, or the shared model); None for a constant or stored block."""
        hd, body = self._record(i)
        if hd.flags & (FLAG_CONSTANT | FLAG_RAW):
            return None
        if self.format_version >= 6:
            return learn.Params.from_bytes(body[:hd.model_len], i)
        return self._legacy.model(hd, body[:hd.model_len], i)

    @property
    def config(self):
        """The network configuration of a format 1-5 stream (its file header's ``model``); None in format 6."""
        return self._legacy.config if self._legacy is not None else None

    def block_params(self, i: int) -> "learn.Params | None":
        """The parameters of format 6 block ``i`` read from its model section alone (no payload read, so
        no data checksum: for describing a stream; decoding checks everything), None for a constant or
        stored block."""
        if self.format_version < 6:
            raise ValueError(f"a format {self.format_version} stream has networks, not format 6 parameters: "
                             "see block_model()")
        hd = self.block_header(i)
        if hd.flags & (FLAG_CONSTANT | FLAG_RAW):
            return None
        return learn.Params.from_bytes(self._read_at(self.index[i].offset + HEADER_SIZE, hd.model_len), i)

    def _record(self, i: int) -> tuple[BlockHeader, bytes]:
        """Block ``i``'s checked header and its body (model section and payload), read in one go."""
        if not 0 <= i < len(self.index):
            raise IndexError(f"block {i} out of range (the stream has {len(self.index)} blocks)")
        e = self.index[i]
        raw = self._read_at(e.offset, e.length)
        if len(raw) < e.length:
            raise TruncatedStreamError("block record is cut short (did the file shrink?)", i)
        hd = self._check_header(raw[:HEADER_SIZE], i)
        body = raw[HEADER_SIZE:]
        if zlib.crc32(body) != hd.data_crc:
            raise CorruptStreamError("block data checksum mismatch (the stream is damaged)", i)
        return hd, body

    # -- reading regions -----------------------------------------------------------------------------

    def blocks_in(self, z0: int, z1: int) -> list[int]:
        return [i for i, e in enumerate(self.index) if e.z0 < z1 and e.z0 + e.depth > z0]

    def blocks_in_box(self, z0: int, z1: int, y0: int = 0, y1: int | None = None, x0: int = 0,
                      x1: int | None = None) -> list[int]:
        """The blocks that intersect the box ``[z0, z1) x [y0, y1) x [x0, x1)`` (None: to the end)."""
        y1 = self.shape[1] if y1 is None else y1
        x1 = self.shape[2] if x1 is None else x1
        return [i for i, e in enumerate(self.index) if e.z0 < z1 and e.z0 + e.depth > z0
                and e.y0 < y1 and e.y0 + e.h > y0 and e.x0 < x1 and e.x0 + e.w > x0]

    def read(self, z0: int = 0, z1: int | None = None, progress=None) -> np.ndarray:
        """Decode slices ``z0:z1`` (default: the whole volume), decoding only the blocks they touch."""
        z1 = self.shape[0] if z1 is None else z1
        z0, z1, _ = slice(z0, z1).indices(self.shape[0])
        return self._read_ranges((range(z0, max(z0, z1)), range(self.shape[1]), range(self.shape[2])), progress)

    def _read_ranges(self, ranges, progress=None) -> np.ndarray:
        """The voxels at ``ranges`` (one ``range`` of in-bounds indices per axis, any step), as a new
        array of shape ``[len(r) for r in ranges]``.  Only blocks holding requested voxels are decoded;
        raises CorruptStreamError if the blocks do not cover every requested voxel."""
        shape = tuple(len(r) for r in ranges)
        total = int(np.prod(shape, dtype=np.int64))
        if total == 0:
            return np.zeros(shape, self.dtype)
        try:
            out = np.zeros(shape, self.dtype)  # never uninitialised memory, even if a check below failed to fire
        except MemoryError as exc:  # a valid stream may describe more voxels than memory holds
            raise UnsupportedError(f"not enough memory for {total} voxels of shape {shape}: read a smaller region "
                                   "(dec[z0:z1, y0:y1, x0:x1])") from exc
        filled = 0
        wanted, into = [], {}
        same_type = self._layout.dtype == self.dtype  # unsigned: blocks may decode straight into ``out``
        for i, e in enumerate(self.index):
            sel = [_axis_overlap(r, b0, b0 + n)
                   for r, b0, n in zip(ranges, (e.z0, e.y0, e.x0), (e.depth, e.h, e.w))]
            if None not in sel:
                wanted.append((i, sel))
                view = out[tuple(d for d, _ in sel)]
                whole = all(s.start == 0 and s.step in (None, 1) and (s.stop is None or s.stop == n)
                            for (_, s), n in zip(sel, (e.depth, e.h, e.w)))
                if same_type and whole and view.flags.c_contiguous and view.shape == (e.depth, e.h, e.w):
                    into[i] = view  # a whole block into a contiguous part of the result: no copy
        for (i, sel), blk in zip(wanted, self._blocks([i for i, _ in wanted], into=into)):
            dst = tuple(d for d, _ in sel)
            if i not in into:
                out[dst] = blk[tuple(s for _, s in sel)]
            filled += int(np.prod([d.stop - d.start for d in dst]))
            if progress is not None:
                progress(self.index[i])
        if filled != total:
            raise CorruptStreamError(f"the block index does not cover the requested region ({filled} of {total} "
                                     "voxels are in its blocks): the stream is damaged")
        return out

    def iter_layers(self, z0: int = 0, z1: int | None = None):
        """Slices ``z0:z1`` one z-layer of blocks at a time, in order: yields ``(a0, a1, voxels)``.

        Memory stays bounded by a few layers, and the blocks of successive layers decode in
        parallel (``workers``): what a converter or the CLI writes slice by slice."""
        z1 = self.shape[0] if z1 is None else z1
        z0, z1, _ = slice(z0, z1).indices(self.shape[0])
        layers = {}
        for i, e in enumerate(self.index):
            if e.z0 < z1 and e.z0 + e.depth > z0:
                layers.setdefault(e.z0, []).append(i)
        order = [i for lz in sorted(layers) for i in layers[lz]]
        blocks = self._blocks(order)
        for lz in sorted(layers):
            a0, a1 = max(z0, lz), min(z1, lz + self.index[layers[lz][0]].depth)
            out = np.zeros((a1 - a0, *self.shape[1:]), self.dtype)
            filled = 0
            for i in layers[lz]:
                e = self.index[i]
                blk = next(blocks)
                out[:, e.y0:e.y0 + e.h, e.x0:e.x0 + e.w] = blk[a0 - e.z0:a1 - e.z0]
                filled += e.h * e.w
            if filled != self.shape[1] * self.shape[2]:
                raise CorruptStreamError(f"the blocks of slices {lz}:{lz + self.index[layers[lz][0]].depth} do not "
                                         "cover the slices: the stream is damaged")
            yield a0, a1, out

    def iter_blocks(self, indices=None, catch: bool = False):
        """Decoded blocks (default: all), in order, as ``(i, voxels)``; with several ``workers`` they
        decode in parallel, a few blocks ahead.  ``catch=True`` yields a block's VoxcodecError in place
        of its voxels instead of raising it (to report every damaged block, as ``voxcodec verify``)."""
        indices = range(len(self.index)) if indices is None else list(indices)
        yield from zip(indices, self._blocks(indices, catch))

    def _blocks(self, indices, catch: bool = False, into=None):
        """Decoded blocks ``indices``, in order: by ``self.workers`` threads when there are several
        (outside any lock: decoding is the slow part).  ``into``: block index -> array to decode into."""
        read = functools.partial(_read_into, self, catch=catch, into=into or {})
        n = min(self.workers, len(indices))
        if n < 2:
            yield from (read(i) for i in indices)
            return
        with ThreadPoolExecutor(n, thread_name_prefix="voxcodec-decode") as executor:
            yield from parallel.ordered(executor, read, indices, n)

    def __getitem__(self, key):
        """numpy basic indexing over (z, y, x): ints, slices (any step) and ``...``."""
        ranges, keep, ellipsis = _basic_index(key, self.shape)
        out = self._read_ranges(ranges)
        if all(keep):
            return out
        # ints drop their axis; as in numpy, three ints give a scalar, and with '...' a 0-d array
        return out[tuple(slice(None) if k else 0 for k in keep) + ((Ellipsis,) if ellipsis else ())]

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a Decoder cannot give its voxels without decoding them into a new array (copy=False)")
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)

    def __reduce__(self):
        if self._source is None:
            raise TypeError("a Decoder of an open file object cannot be pickled: open it by path instead")
        return (_reopen, (self._source, self._salvage, self.batch, self.shared_model))

    def __dask_tokenize__(self):
        """dask's name for arrays read from this stream: its location, size and block index checksum."""
        return ("voxcodec.Decoder", self._source if isinstance(self._source, str) else id(self), self.nbytes,
                self._salvage, tuple((e.offset, e.length) for e in self.index))

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def _read_caught(dec: Decoder, i: int, catch: bool, out=None):
    if not catch:
        return dec.read_block(i, out)
    try:
        return dec.read_block(i, out)
    except VoxcodecError as exc:
        return exc


def _read_into(dec: Decoder, i: int, catch: bool, into: dict):
    return _read_caught(dec, i, catch, into.get(i))


def _reopen(source, salvage, batch, shared_model):
    """A pickled Decoder: it decodes in its own process (it is a dask task or a worker already)."""
    return Decoder(source, salvage=salvage, batch=batch, shared_model=shared_model, workers=1)


def decode(data, *, shared_model: BlockModel | None = None, workers: int | None = None) -> np.ndarray:
    """Decode a whole ``.vxc`` stream (bytes or a path) into a numpy array, with ``workers``
    threads (default: every core)."""
    with Decoder(data, shared_model=shared_model, workers=workers) as dec:
        return dec.read()


def _axis_overlap(r: range, b0: int, b1: int):
    """For the selection ``r`` on one axis and a block spanning ``[b0, b1)`` on it: ``(dst, src)``
    slices (positions in the result, positions in the block) of the selected indices inside the block,
    or None if there are none."""
    n, step = len(r), r.step
    if step > 0:  # k-th selected index: r.start + k * step; want b0 <= it < b1
        k0 = max(0, -((r.start - b0) // step))
        k1 = min(n, -((r.start - b1) // step))
    else:
        k0 = max(0, (r.start - b1) // -step + 1)
        k1 = min(n, (r.start - b0) // -step + 1)
    if k0 >= k1:
        return None
    first, last = r[k0] - b0, r[k1 - 1] - b0
    stop = last + (1 if step > 0 else -1)
    return slice(k0, k1), slice(first, None if stop < 0 else stop, step)


def _basic_index(key, shape):
    """Normalise a numpy basic index over ``shape``: one ``range`` per axis, whether each axis is kept
    and whether the index held an ellipsis."""
    key = key if isinstance(key, tuple) else (key,)
    found = [j for j, k in enumerate(key) if k is Ellipsis]
    if len(found) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if found:
        at = found[0]
        fill = len(shape) - (len(key) - 1)
        if fill < 0:
            raise IndexError(f"too many indices for a {len(shape)}-dimensional Decoder: {len(key) - 1} were indexed")
        key = key[:at] + (slice(None),) * fill + key[at + 1:]
    if len(key) > len(shape):
        raise IndexError(f"too many indices for a {len(shape)}-dimensional Decoder: {len(key)} were indexed")
    key = key + (slice(None),) * (len(shape) - len(key))
    ranges, keep = [], []
    for axis, (k, n) in enumerate(zip(key, shape)):
        if isinstance(k, slice):
            ranges.append(range(*k.indices(n)))
            keep.append(True)
            continue
        try:
            if isinstance(k, (bool, np.bool_)) or (isinstance(k, np.ndarray) and k.dtype == bool):
                raise TypeError
            i = operator.index(k)
        except TypeError:
            raise TypeError(f"a Decoder takes only basic indices (ints, slices, '...'), not {type(k).__name__} "
                            f"{k!r}; read the region with a slice first, then index the numpy array") from None
        if not -n <= i < n:
            raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
        i += n if i < 0 else 0
        ranges.append(range(i, i + 1))
        keep.append(False)
    return tuple(ranges), tuple(keep), bool(found)
