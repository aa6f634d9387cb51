"""Public API: :func:`encode`, :func:`decode`, the streaming :class:`Encoder` and the random-access
:class:`Decoder` of ``.vxc`` streams."""

from __future__ import annotations

import io
import os
import time
import zlib
from dataclasses import dataclass

import numpy as np

from . import __version__
from .block import MIN_TRAIN_VOXELS, decode_block, encode_block, fit_block, untrained_model, value_range
from .container import (FLAG_CONSTANT, FLAG_INTER, FLAG_SHARED, HEADER_SIZE, BlockHeader, IndexEntry, pack_file_header,
                        pack_index, read_file_header, read_index, voxel_crc)
from .errors import CorruptStreamError, TruncatedStreamError, UnsupportedError
from .network import BlockModel, ModelConfig
from .presets import preset as get_preset

DTYPES = (np.dtype("uint8"), np.dtype("uint16"))
#: the automatic block depth aims at about this many voxels per block
AUTO_BLOCK_VOXELS = 16 * 2 ** 20
#: slices larger than this are tiled in-plane by default
AUTO_TILE = 2048
#: blocks smaller than this are also coded with untrained networks, and the smaller result is kept
CHECK_UNTRAINED_BELOW = 1 << 21


def auto_block_depth(slice_shape, total_slices: int | None = None) -> int:
    """About AUTO_BLOCK_VOXELS voxels per block (at most 256 slices). When the volume's depth is
    known, blocks are balanced so that no small block is left at the end (each block trains a
    model: a 4-slice tail block would pay for a whole one)."""
    h, w = slice_shape
    depth = int(max(1, min(256, AUTO_BLOCK_VOXELS // max(h * w, 1))))
    if total_slices:
        n_blocks = max(1, round(total_slices / depth))
        depth = -(-total_slices // n_blocks)
    return depth


def _check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in DTYPES:
        raise UnsupportedError(f"dtype {dt} is not supported: voxcodec codes uint8 and uint16 volumes "
                               "(convert with arr.astype(np.uint16) if the values fit)")
    return dt.newbyteorder("=")


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

    @property
    def voxels(self):
        return self.depth * self.h * self.w

    @property
    def bits_per_voxel(self):
        return 8 * self.nbytes / max(self.voxels, 1)


class Encoder:
    """Streaming encoder: feed z-slices in order, each block is coded and written once complete.

    >>> enc = Encoder("out.vxc", dtype="uint8", slice_shape=(512, 512))   # doctest: +SKIP
    >>> for s in slices: enc.write(s)                                       # doctest: +SKIP
    >>> enc.close()                                                         # doctest: +SKIP

    ``file`` is a path, a writable binary file object, or ``None`` to collect the stream in memory
    (:meth:`getvalue`).  ``block_depth`` defaults to about 16 Mi voxels per block (balanced over
    ``expected_slices`` when the depth of the volume is known in advance); ``tile`` splits
    large slices in-plane (default: slices above 2048 x 2048 are cut into 2048 x 2048 tiles).
    ``on_block`` is called with a :class:`BlockInfo` after each block is written.
    ``train``: "auto" trains a model per block but keeps plain neighbour-average networks when they
    code a small block into fewer bytes; "always" / "never" force one or the other.
    ``fit_options`` overrides fields of the preset's :class:`~voxcodec.block.FitOptions`
    (for example ``{"steps": 400, "inter": "always"}``).
    ``shared_model`` (from :func:`voxcodec.fit_model`) codes every block with one model held
    outside the stream, for many small chunks that cannot each afford a model; the decoder then
    needs the same model.
    ``banks``: a dict holding the training state of each tile, updated as blocks are coded. Pass
    the same dict to successive encoders (one per zarr chunk, say) and each block fine-tunes from
    the weights of the block before it, as within one stream.
    """

    def __init__(self, file=None, *, dtype="uint8", slice_shape, preset: str = "default", block_depth=None,
                 tile=None, metadata: dict | None = None, device: str = "cpu", threads: int | None = None,
                 seed: int = 0, warm_start: bool = True, on_block=None, config: ModelConfig | None = None,
                 train: str = "auto", fit_options: dict | None = None, expected_slices: int | None = None,
                 shared_model: BlockModel | None = None, banks: dict | None = None):
        self.dtype = _check_dtype(dtype)
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
        self.block_depth = int(block_depth) if block_depth else auto_block_depth(self.slice_shape, expected_slices)
        if self.block_depth < 1:
            raise ValueError("block_depth must be at least 1")
        if tile is None:
            tile = (min(h, AUTO_TILE), min(w, AUTO_TILE))
        self.tile = (min(int(tile[0]), h), min(int(tile[1]), w))
        if min(self.tile) < 1:
            raise ValueError("tile sizes must be at least 1")
        if train not in ("auto", "always", "never"):
            raise ValueError(f"train must be 'auto', 'always' or 'never', got {train!r}")
        self.train = train
        self.threads = threads
        self.warm_start = warm_start
        self.on_block = on_block
        self._own = isinstance(file, (str, os.PathLike))
        self._f = open(file, "wb") if self._own else (file if file is not None else io.BytesIO())
        self._pos = 0
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._z = 0
        self._banks: dict = {} if banks is None else banks
        self.blocks: list[BlockInfo] = []
        self._index: list[IndexEntry] = []
        self._closed = False
        self.meta = {"dtype": self.dtype.str.replace(">", "<").replace("=", "<").replace("|", "|"),
                     "slice_shape": list(self.slice_shape), "block_depth": self.block_depth, "tile": list(self.tile),
                     "model": self.config.to_json(), "preset": preset, "encoder": f"voxcodec {__version__}",
                     "metadata": metadata or {}}
        if shared_model is not None:
            self.meta["shared_model"] = shared_model.id
        self._write(pack_file_header(self.meta))

    # -- writing -------------------------------------------------------------------------------
    def _write(self, b: bytes):
        self._f.write(b)
        self._pos += len(b)

    def write(self, slices) -> list[BlockInfo]:
        """Append one slice (H, W) or a stack (n, H, W). Returns the blocks completed by this call."""
        if self._closed:
            raise ValueError("the encoder is closed")
        a = np.asarray(slices)
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3 or a.shape[1:] != self.slice_shape:
            raise UnsupportedError(f"expected slices of shape {self.slice_shape}, got an array of shape {a.shape}")
        if a.dtype.newbyteorder("=") != self.dtype:
            raise UnsupportedError(f"expected {self.dtype} slices, got {a.dtype}")
        done = []
        while a.shape[0]:
            take = min(a.shape[0], self.block_depth - self._buffered)
            self._buffer.append(np.ascontiguousarray(a[:take], self.dtype))
            self._buffered += take
            a = a[take:]
            if self._buffered == self.block_depth:
                done += self._flush()
        return done

    def _flush(self) -> list[BlockInfo]:
        if not self._buffered:
            return []
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer, self._buffered = [], 0
        done = []
        th, tw = self.tile
        h, w = self.slice_shape
        for y0 in range(0, h, th):
            for x0 in range(0, w, tw):
                done.append(self._encode_tile(np.ascontiguousarray(data[:, y0:y0 + th, x0:x0 + tw]), y0, x0))
        self._z += data.shape[0]
        return done

    def _encode_tile(self, data: np.ndarray, y0: int, x0: int) -> BlockInfo:
        d, h, w = data.shape
        lo, hi, centre, shift = value_range(data)
        t0 = time.perf_counter()
        if lo == hi:  # constant block: no model, no payload
            flags, model_bytes, payload, inter, slice_bits, fit_s = FLAG_CONSTANT, b"", b"", False, [0] * d, 0.0
        else:
            model, model_bytes, payload, fields, fit_s = self._code(data, y0, x0)
            inter = model.inter is not None
            flags = (FLAG_INTER if inter else 0) | (FLAG_SHARED if model is self.shared_model else 0)
            slice_bits = fields["slice_bits"]
        index = len(self.blocks)
        header = BlockHeader(index, self._z, d, y0, x0, h, w, lo, hi, centre, shift, flags, len(model_bytes),
                             len(payload), zlib.crc32(model_bytes + payload), voxel_crc(data))
        record = header.pack() + model_bytes + payload
        offset = self._pos
        self._write(record)
        info = BlockInfo(index, self._z, d, y0, x0, h, w, len(record), len(model_bytes), inter,
                         bool(flags & FLAG_CONSTANT), fit_s, time.perf_counter() - t0 - fit_s, slice_bits)
        self.blocks.append(info)
        self._index.append(IndexEntry(offset, len(record), self._z, d, y0, x0, h, w, 8 * len(record),
                                      len(model_bytes), inter))
        if self.on_block is not None:
            self.on_block(info)
        return info

    def _code(self, data, y0, x0):
        """Choose the block's model and code the block with it.

        Returns ``(model, model bytes to embed, payload, fields, fit seconds)``."""
        if self.shared_model is not None:
            payload, fields = encode_block(data, self.shared_model)
            return self.shared_model, b"", payload, fields, 0.0
        if self.train == "never":
            return (*self._coded(untrained_model(self.config), data), 0.0)
        import torch

        t0 = time.perf_counter()
        old = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            bank = self._banks.get((y0, x0)) if self.warm_start else None
            model, bank, _ = fit_block(data, self.config, self.opts, bank,
                                       min_voxels=1 if self.train == "always" else MIN_TRAIN_VOXELS)
        finally:
            torch.set_num_threads(old)
        self._banks[(y0, x0)] = bank
        fit_s = time.perf_counter() - t0
        best = self._coded(model, data)
        if data.size < CHECK_UNTRAINED_BELOW and bank is not None and self.train == "auto":
            # small block: keep the trained model only if it pays for its weights
            plain = self._coded(untrained_model(self.config), data)
            if len(plain[1]) + len(plain[2]) < len(best[1]) + len(best[2]):
                best = plain
        return (*best, fit_s)

    @staticmethod
    def _coded(model, data):
        payload, fields = encode_block(data, model)
        return model, model.to_bytes(), payload, fields

    @property
    def shape(self):
        return (self._z + self._buffered, *self.slice_shape)

    def close(self):
        """Code the last (partial) block and write the block index. Idempotent."""
        if self._closed:
            return
        self._flush()
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
        elif self._own:
            self._f.close()


class Decoder:
    """Random-access reader of a ``.vxc`` stream (bytes, a path or a seekable binary file).

    ``salvage=True`` reads a stream whose end is missing (an interrupted write) by scanning its
    complete blocks; their checksums are still verified.  ``batch`` caps the voxels per inference
    call (memory only; the result never depends on it).
    """

    def __init__(self, source, *, salvage: bool = False, batch: int | None = None,
                 shared_model: BlockModel | None = None):
        self.batch = batch
        self.shared_model = shared_model
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._f = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            self._f = open(source, "rb")
        else:
            self._f = source
        try:
            self._open(salvage)
        except BaseException:
            if isinstance(source, (str, os.PathLike)):
                self._f.close()
            raise

    def _open(self, salvage):
        self._f.seek(0, io.SEEK_END)
        self.nbytes = self._f.tell()
        self._f.seek(0)
        self.meta, self._header_size = read_file_header(self._f)
        try:
            self.dtype = _check_dtype(np.dtype(self.meta["dtype"]))
            self.config = ModelConfig.from_json(self.meta["model"])
            self.slice_shape = tuple(int(s) for s in self.meta["slice_shape"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CorruptStreamError):
                raise
            raise CorruptStreamError(f"file header is malformed: {exc}") from None
        self.salvaged = False
        try:
            shape, self.index = read_index(self._f, self.nbytes)
        except TruncatedStreamError:
            if not salvage:
                raise
            shape, self.index = self._scan()
            self.salvaged = True
        self.shape = tuple(int(s) for s in shape)

    def _scan(self):
        entries, pos, z = [], self._header_size, 0
        while True:
            self._f.seek(pos)
            raw = self._f.read(HEADER_SIZE)
            if len(raw) < HEADER_SIZE:
                break
            try:
                hd = BlockHeader.unpack(raw, len(entries))
            except CorruptStreamError:
                break
            length = HEADER_SIZE + hd.model_len + hd.payload_len
            if pos + length > self.nbytes:
                break
            entries.append(IndexEntry(pos, length, hd.z0, hd.depth, hd.y0, hd.x0, hd.h, hd.w, 8 * length,
                                      hd.model_len, bool(hd.flags & FLAG_INTER)))
            pos += length
        # keep whole z-layers only: every tile of the last layer must be present
        h, w = self.slice_shape
        layers: dict = {}
        for e in entries:
            layers.setdefault((e.z0, e.depth), []).append(e)
        keep = []
        for (z0, depth), es in sorted(layers.items()):
            if z0 != z or sum(e.h * e.w for e in es) != h * w:
                break
            keep += es
            z = z0 + depth
        return (z, h, w), keep

    def __len__(self):
        return len(self.index)

    def block_header(self, i: int) -> BlockHeader:
        e = self.index[i]
        self._f.seek(e.offset)
        hd = BlockHeader.unpack(self._f.read(HEADER_SIZE), i)
        if (hd.z0, hd.depth, hd.y0, hd.x0, hd.h, hd.w) != (e.z0, e.depth, e.y0, e.x0, e.h, e.w) or \
                HEADER_SIZE + hd.model_len + hd.payload_len != e.length:
            raise CorruptStreamError("block header disagrees with the block index", i)
        return hd

    def read_block(self, i: int) -> np.ndarray:
        """Decode block ``i`` (depth, h, w) and check its checksums."""
        if not 0 <= i < len(self.index):
            raise IndexError(f"block {i} out of range (the stream has {len(self.index)} blocks)")
        hd = self.block_header(i)
        body = self._f.read(hd.model_len + hd.payload_len)
        if len(body) < hd.model_len + hd.payload_len:
            raise TruncatedStreamError("block data is cut short", i)
        if zlib.crc32(body) != hd.data_crc:
            raise CorruptStreamError("block data checksum mismatch (the stream is damaged)", i)
        if hd.flags & FLAG_CONSTANT:
            if hd.lo != hd.hi:
                raise CorruptStreamError("constant block with a value range", i)
            out = np.full(hd.shape, hd.lo, self.dtype)
        else:
            if hd.flags & FLAG_SHARED:
                model = self._shared(i)
            else:
                try:
                    model = BlockModel.from_bytes(body[:hd.model_len], self.config)
                except CorruptStreamError as exc:
                    raise CorruptStreamError(str(exc), i) from None
            if bool(hd.flags & FLAG_INTER) != (model.inter is not None):
                raise CorruptStreamError("block flags disagree with its model", i)
            out = decode_block(body[hd.model_len:], model, hd.shape, hd.lo, hd.hi, hd.centre, hd.shift,
                               self.dtype, block_index=i, batch=self.batch)
        if voxel_crc(out) != hd.voxel_crc:
            raise CorruptStreamError("decoded voxels do not match their checksum", i)
        return out

    def _shared(self, i):
        want = self.meta.get("shared_model")
        if want is None:
            raise CorruptStreamError("block refers to a shared model but the stream names none", i)
        if self.shared_model is None:
            raise UnsupportedError(f"this stream was coded with the shared model {want}: pass it as "
                                   "Decoder(..., shared_model=model)")
        if self.shared_model.id != want:
            raise UnsupportedError(f"this stream needs the shared model {want}, not {self.shared_model.id}")
        return self.shared_model

    def blocks_in(self, z0: int, z1: int) -> list[int]:
        return [i for i, e in enumerate(self.index) if e.z0 < z1 and e.z0 + e.depth > z0]

    def read(self, z0: int = 0, z1: int | None = None, progress=None) -> np.ndarray:
        """Decode slices ``z0:z1`` (default: the whole volume), decoding only the blocks they touch."""
        z1 = self.shape[0] if z1 is None else z1
        z0, z1, _ = slice(z0, z1).indices(self.shape[0])
        out = np.empty((max(z1 - z0, 0), *self.shape[1:]), self.dtype)
        for i in self.blocks_in(z0, z1):
            e = self.index[i]
            blk = self.read_block(i)
            a, b = max(z0, e.z0), min(z1, e.z0 + e.depth)
            out[a - z0:b - z0, e.y0:e.y0 + e.h, e.x0:e.x0 + e.w] = blk[a - e.z0:b - e.z0]
            if progress is not None:
                progress(e)
        return out

    def __getitem__(self, key):
        if isinstance(key, slice) and key.step in (None, 1):
            return self.read(*slice(key.start, key.stop).indices(self.shape[0])[:2])
        if isinstance(key, (int, np.integer)):
            z = int(key) + (self.shape[0] if key < 0 else 0)
            if not 0 <= z < self.shape[0]:
                raise IndexError(f"slice {key} out of range for depth {self.shape[0]}")
            return self.read(z, z + 1)[0]
        raise TypeError("index a Decoder with an int or a z-slice with step 1")

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def encode(array, *, preset: str = "default", block_depth=None, tile=None, metadata=None, device="cpu",
           threads=None, seed: int = 0, train: str = "auto", fit_options: dict | None = None,
           shared_model: BlockModel | None = None, banks: dict | None = None) -> bytes:
    """Encode a (Z, Y, X) uint8 or uint16 array into a ``.vxc`` stream (bytes).

    2-D arrays are treated as a single slice. ``banks``: training state carried over between
    calls (see :class:`Encoder`).
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise UnsupportedError(f"expected a 3-D (z, y, x) array, got {a.ndim} dimensions")
    _check_dtype(a.dtype)
    enc = Encoder(None, dtype=a.dtype, slice_shape=a.shape[1:], preset=preset, block_depth=block_depth, tile=tile,
                  metadata=metadata, device=device, threads=threads, seed=seed, train=train,
                  fit_options=fit_options, expected_slices=a.shape[0], shared_model=shared_model, banks=banks)
    enc.write(a)
    return enc.getvalue()


def decode(data, *, shared_model: BlockModel | None = None) -> np.ndarray:
    """Decode a whole ``.vxc`` stream (bytes or a path) into a numpy array."""
    with Decoder(data, shared_model=shared_model) as dec:
        return dec.read()


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
    _check_dtype(a.dtype)
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
