"""The ``.vxc`` container: file header, self-describing block records, block index, trailer.

See ``docs/format.md`` for the byte layout.  Everything is little-endian.  The container can be
written while streaming (the block index comes last) and every part carries a CRC-32.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import CorruptStreamError, TruncatedStreamError, UnsupportedError

MAGIC = b"\x89VXC\r\n\x1a\n"
FORMAT_VERSION = 1
BLOCK_MAGIC = b"VXBK"
INDEX_MAGIC = b"VXIX"
END_MAGIC = b"VXCEND01"

_FILE_HEAD = struct.Struct("<8sHHI")  # magic, version, reserved, json length
_BLOCK = struct.Struct("<4s8I3qBBH4I")  # see BlockHeader and docs/format.md
_TRAILER = struct.Struct("<Q8s")
FLAG_CONSTANT = 1
FLAG_INTER = 2
FLAG_SHARED = 4  # the block is coded with the stream's shared model (held outside the stream)

#: the voxel types a stream can hold
DTYPES = (np.dtype("uint8"), np.dtype("uint16"))


def check_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in DTYPES:
        raise UnsupportedError(f"dtype {dt} is not supported: voxcodec codes uint8 and uint16 volumes "
                               "(convert with arr.astype(np.uint16) if the values fit)")
    return dt.newbyteorder("=")


@dataclass
class BlockHeader:
    index: int
    z0: int
    depth: int
    y0: int
    x0: int
    h: int
    w: int
    lo: int
    hi: int
    centre: int
    shift: int
    flags: int
    model_len: int
    payload_len: int
    data_crc: int  # CRC-32 of model bytes + payload bytes
    voxel_crc: int  # CRC-32 of the decoded voxels (C order, little-endian)

    @property
    def shape(self):
        return (self.depth, self.h, self.w)

    def pack(self) -> bytes:
        body = _BLOCK.pack(BLOCK_MAGIC, self.index, self.z0, self.depth, self.y0, self.x0, self.h, self.w, 0,
                           self.lo, self.hi, self.centre, self.shift, self.flags, 0, self.model_len,
                           self.payload_len, self.data_crc, self.voxel_crc)
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def unpack(cls, raw: bytes, where: int | None = None) -> "BlockHeader":
        if len(raw) < HEADER_SIZE:
            raise TruncatedStreamError("block header is cut short", where)
        body = raw[:_BLOCK.size]
        (crc,) = struct.unpack_from("<I", raw, _BLOCK.size)
        fields = _BLOCK.unpack(body)
        if fields[0] != BLOCK_MAGIC:
            raise CorruptStreamError("no block marker where a block should start", where)
        if zlib.crc32(body) != crc:
            raise CorruptStreamError("block header checksum mismatch", where)
        (_, index, z0, depth, y0, x0, h, w, _, lo, hi, centre, shift, flags, _, model_len, payload_len,
         data_crc, voxel_crc) = fields
        return cls(index, z0, depth, y0, x0, h, w, lo, hi, centre, shift, flags, model_len, payload_len,
                   data_crc, voxel_crc)


HEADER_SIZE = _BLOCK.size + 4


def voxel_crc(block: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(block, block.dtype.newbyteorder("<")).tobytes())


def pack_file_header(meta: dict) -> bytes:
    js = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    head = _FILE_HEAD.pack(MAGIC, FORMAT_VERSION, 0, len(js)) + js
    return head + struct.pack("<I", zlib.crc32(head))


def read_file_header(f) -> tuple[dict, int]:
    """Parse the file header at the start of ``f``. Returns (meta, size in bytes)."""
    raw = f.read(_FILE_HEAD.size)
    if len(raw) < 8 or raw[:8] != MAGIC:
        raise CorruptStreamError("not a voxcodec .vxc stream (bad magic bytes)")
    if len(raw) < _FILE_HEAD.size:
        raise TruncatedStreamError("file header is cut short")
    _, version, _, n = _FILE_HEAD.unpack(raw)
    if version != FORMAT_VERSION:
        raise CorruptStreamError(f"format version {version} is not supported (this voxcodec reads {FORMAT_VERSION}); "
                                 "upgrade voxcodec")
    js = f.read(n)
    crc = f.read(4)
    if len(js) < n or len(crc) < 4:
        raise TruncatedStreamError("file header is cut short")
    if zlib.crc32(raw + js) != struct.unpack("<I", crc)[0]:
        raise CorruptStreamError("file header checksum mismatch")
    return json.loads(js), _FILE_HEAD.size + n + 4


@dataclass
class IndexEntry:
    offset: int
    length: int
    z0: int
    depth: int
    y0: int
    x0: int
    h: int
    w: int
    bits: int  # compressed bits of the whole record (header, model, payload)
    model_bytes: int
    inter: bool


def pack_index(shape, entries: list[IndexEntry], offset: int) -> bytes:
    js = json.dumps({"shape": list(shape), "blocks": [list(asdict(e).values()) for e in entries]},
                    separators=(",", ":")).encode()
    body = INDEX_MAGIC + struct.pack("<I", len(js)) + js
    return body + struct.pack("<I", zlib.crc32(body)) + _TRAILER.pack(offset, END_MAGIC)


def read_index(f, file_size: int) -> tuple[list[int], list[IndexEntry]]:
    """Read the block index through the trailer at the end of ``f``."""
    if file_size < _TRAILER.size:
        raise TruncatedStreamError("stream is cut short: no block index at its end")
    f.seek(file_size - _TRAILER.size)
    offset, end = _TRAILER.unpack(f.read(_TRAILER.size))
    if end != END_MAGIC:
        raise TruncatedStreamError(
            "stream is cut short or was not closed: no block index at its end "
            "(an interrupted write? `voxcodec decode --salvage` recovers its complete blocks)")
    if offset + 12 > file_size - _TRAILER.size:
        raise CorruptStreamError("block index offset points outside the stream")
    f.seek(offset)
    head = f.read(8)
    if head[:4] != INDEX_MAGIC:
        raise CorruptStreamError("block index marker missing")
    (n,) = struct.unpack("<I", head[4:])
    js = f.read(n)
    crc = f.read(4)
    if len(js) < n or len(crc) < 4 or zlib.crc32(head + js) != struct.unpack("<I", crc)[0]:
        raise CorruptStreamError("block index checksum mismatch")
    d = json.loads(js)
    return d["shape"], [IndexEntry(*e) for e in d["blocks"]]
