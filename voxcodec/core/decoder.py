"""Reading ``.vxc`` streams: the random-access :class:`Decoder` and :func:`decode`.

Decoding needs numpy and constriction only (no torch): the block index (or, for an interrupted
stream, a scan of the block records) says where each block lies; a block is decoded by
:func:`voxcodec.core.block.decode_block` and checked against its CRC-32s.
"""

from __future__ import annotations

import io
import os
import zlib

import numpy as np

from ..errors import CorruptStreamError, TruncatedStreamError, UnsupportedError
from .block import decode_block
from .container import (FLAG_CONSTANT, FLAG_INTER, FLAG_SHARED, HEADER_SIZE, BlockHeader, IndexEntry, check_dtype,
                        read_file_header, read_index, voxel_crc)
from .network import BlockModel, ModelConfig


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
            self.dtype = check_dtype(np.dtype(self.meta["dtype"]))
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


def decode(data, *, shared_model: BlockModel | None = None) -> np.ndarray:
    """Decode a whole ``.vxc`` stream (bytes or a path) into a numpy array."""
    with Decoder(data, shared_model=shared_model) as dec:
        return dec.read()
