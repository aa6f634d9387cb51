"""The ``.vxc`` container: file header, self-describing block records, block index, trailer.

See ``docs/format.md`` for the byte layout.  Everything is little-endian.  The container can be
written while streaming (the block index comes last) and every part carries a CRC-32.

Reading checks every field against the limits below (documented in ``docs/format.md``, "Limits")
before anything is allocated or looped over: a damaged or crafted stream raises
:class:`~voxcodec.errors.CorruptStreamError` naming the field (and the block), never a MemoryError,
a hang or wrong voxels.  The block layout is fully determined by the file header (slice shape,
block depth, tile) and the volume's depth: block ``i`` of a stream is tile ``i % n_tiles`` (row-major)
of z-layer ``i // n_tiles``, and the records follow each other in that order.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import CorruptStreamError, TruncatedStreamError, UnsupportedError

MAGIC = b"\x89VXC\r\n\x1a\n"
#: the version written; every version in READ_VERSIONS is read (see docs/format.md)
FORMAT_VERSION = 6
READ_VERSIONS = (1, 2, 3, 4, 5, 6)
#: format 6: a coded block's model section holds its 16 parameter bytes (:class:`voxcodec.core.learn.Params`)
PARAM_BYTES = 16
BLOCK_MAGIC = b"VXBK"
INDEX_MAGIC = b"VXIX"
END_MAGIC = b"VXCEND01"

_FILE_HEAD = struct.Struct("<8sHHI")  # magic, version, reserved, json length
_BLOCK = struct.Struct("<4s8I3qBBH4I")  # see BlockHeader and docs/format.md
_TRAILER = struct.Struct("<Q8s")
FLAG_CONSTANT = 1
FLAG_INTER = 2
FLAG_SHARED = 4  # the block is coded with the stream's shared model (held outside the stream)
FLAG_RAW = 8  # format 2: the payload is the voxels themselves (little-endian), no model
KNOWN_FLAGS = FLAG_CONSTANT | FLAG_INTER | FLAG_SHARED


def known_flags(version: int) -> int:
    if version >= 6:  # no networks: neither inter-slice ones nor a shared model
        return FLAG_CONSTANT | FLAG_RAW
    return KNOWN_FLAGS | (FLAG_RAW if version >= 2 else 0)

#: the voxel types a stream codes
DTYPES = (np.dtype("uint8"), np.dtype("uint16"))
#: how the file header spells them
DTYPE_NAMES = {"|u1": np.dtype("uint8"), "<u2": np.dtype("uint16")}
#: signed types (format 4 on), coded as the unsigned type of their size through the offset mapping
#: ``coded = value + 2^(bits - 1)`` (:func:`to_coded`), and decoded back to themselves
SIGNED = {np.dtype("int8"): np.dtype("uint8"), np.dtype("int16"): np.dtype("uint16")}
SIGNED_NAMES = {"|i1": np.dtype("int8"), "<i2": np.dtype("int16")}


def coded_dtype(dtype) -> np.dtype:
    """The unsigned type a volume of ``dtype`` is coded as (itself when unsigned)."""
    dt = np.dtype(dtype).newbyteorder("=")
    return SIGNED.get(dt, dt)


def to_coded(a: np.ndarray) -> np.ndarray:
    """int8 / int16 voxels as the unsigned values the codec sees: ``value + 2^(bits - 1)`` (the sign
    bit flipped), so that -32768 .. 32767 becomes 0 .. 65535 in order.  Unsigned arrays pass as they are."""
    dt = a.dtype.newbyteorder("=")
    if dt not in SIGNED:
        return a
    u = SIGNED[dt]
    return np.ascontiguousarray(a, dt).view(u) ^ u.type(1 << (8 * u.itemsize - 1))


def from_coded(u: np.ndarray, dtype) -> np.ndarray:
    """Inverse of :func:`to_coded`: unsigned codec values back to ``dtype``."""
    dt = np.dtype(dtype).newbyteorder("=")
    if dt not in SIGNED:
        return u
    return (u ^ u.dtype.type(1 << (8 * u.dtype.itemsize - 1))).view(dt)

# -- limits (docs/format.md, "Limits"): a stream beyond them is refused before any allocation ----------
#: y and x extent of a slice
MAX_SLICE_DIM = 1 << 20
#: z extent of a volume
MAX_SLICES = 1 << 31
#: voxels in one slice of one block (tile height x tile width): bounds a block's working memory
#: (about 50 bytes per voxel of a slice while it decodes)
MAX_TILE_VOXELS = 1 << 26
#: voxels in one block (block depth x tile height x tile width)
MAX_BLOCK_VOXELS = 1 << 31
#: bytes of the file header's JSON
MAX_HEADER_JSON = 1 << 24
#: the last bytes searched for the end of a stream followed by other bytes (only to word the error)
TAIL_SEARCH = 1 << 24
#: formats 1-5: a non-constant block's payload holds at least log2(3) > 1.58 bits per slice (each slice starts
#: with its kind, uniform over 3); the range coder's 64-bit state may keep up to PAYLOAD_SLACK_BITS unwritten.
#: (Format 6 needs more: 4 bytes per slice, the coder state each slice starts with; BlockHeader.check.)
MIN_SLICE_BITS_X100 = 158
PAYLOAD_SLACK_BITS = 64


def check_dtype(dtype) -> np.dtype:
    """The volume type (native byte order) if voxcodec codes it: uint8, uint16, int8 or int16."""
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in DTYPES and dt.newbyteorder("=") not in SIGNED:
        raise UnsupportedError(f"dtype {dt} is not supported: voxcodec codes uint8, uint16, int8 and int16 volumes "
                               "(convert with arr.astype(np.uint16) if the values fit)")
    return dt.newbyteorder("=")


def dtype_name(dtype) -> str:
    """How the file header spells a volume type: ``|u1``, ``<u2``, ``|i1`` or ``<i2``."""
    dt = np.dtype(dtype)
    return ("|" if dt.itemsize == 1 else "<") + dt.kind + str(dt.itemsize)


def _show(v, limit: int = 40) -> str:
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def check_int(v, what: str, lo: int, hi: int, block: int | None = None) -> int:
    """``v`` must be an integer (not a bool) in ``lo..hi``; else CorruptStreamError naming ``what``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise CorruptStreamError(f"{what} is {_show(v)}, not an integer", block)
    v = int(v)
    if not lo <= v <= hi:
        raise CorruptStreamError(f"{what} is {v}, outside {lo}..{hi}", block)
    return v


def centre_shift(lo: int, hi: int) -> tuple[int, int]:
    """The block centre and input shift the encoder derives from a block's value range (as
    ``voxcodec.core.block.value_range``): ``(x - centre) >> shift`` lies in [-128, 127]."""
    shift = 0
    while (hi - lo) >> shift > 255:
        shift += 1
    return lo + ((((hi - lo) >> shift) + 1) // 2 << shift), shift


@dataclass(frozen=True)
class Layout:
    """Where the blocks of a stream lie, from its file header: z-layers of ``block_depth`` slices (the
    last may be shallower), each cut into tiles of ``tile`` (smaller on the bottom and right edges)."""

    dtype: np.dtype
    slice_shape: tuple[int, int]
    block_depth: int
    tile: tuple[int, int]
    version: int = FORMAT_VERSION
    #: zoo priors the file header names (format 4 on); block header field ``prior`` k > 0 is the k-th
    n_priors: int = 0
    #: the volume's type when it differs from the coded ``dtype``: int8 / int16 (format 4 on)
    signed: np.dtype | None = None

    @property
    def volume_dtype(self) -> np.dtype:
        """What a decoder returns: ``signed`` if set, else ``dtype``."""
        return self.signed if self.signed is not None else self.dtype

    @property
    def tiles_x(self) -> int:
        return -(-self.slice_shape[1] // self.tile[1])

    @property
    def n_tiles(self) -> int:
        return -(-self.slice_shape[0] // self.tile[0]) * self.tiles_x

    @property
    def max_value(self) -> int:
        return int(np.iinfo(self.dtype).max)

    def tile_rect(self, t: int) -> tuple[int, int, int, int]:
        """``(y0, x0, h, w)`` of tile ``t`` (row-major)."""
        (h, w), (th, tw) = self.slice_shape, self.tile
        ty, tx = divmod(t, self.tiles_x)
        y0, x0 = ty * th, tx * tw
        return y0, x0, min(th, h - y0), min(tw, w - x0)

    def block_number(self, z0: int, y0: int, x0: int) -> int:
        """The index of the block starting at ``(z0, y0, x0)`` (its place in the stream)."""
        return (z0 // self.block_depth) * self.n_tiles + (y0 // self.tile[0]) * self.tiles_x + x0 // self.tile[1]

    def n_layers(self, z: int) -> int:
        return -(-z // self.block_depth)

    def block(self, i: int, z: int) -> tuple[int, int, int, int, int, int]:
        """``(z0, depth, y0, x0, h, w)`` of block ``i`` of a volume ``z`` slices deep."""
        layer, t = divmod(i, self.n_tiles)
        z0 = layer * self.block_depth
        y0, x0, h, w = self.tile_rect(t)
        return z0, min(self.block_depth, z - z0), y0, x0, h, w


def layout_from_meta(meta, version: int = FORMAT_VERSION) -> Layout:
    """Check the file header's ``dtype``, ``slice_shape``, ``block_depth`` and ``tile`` against the limits."""
    if not isinstance(meta, dict):
        raise CorruptStreamError(f"file header is malformed: its JSON is a {type(meta).__name__}, not an object")
    for key in ("dtype", "slice_shape", "block_depth", "tile", "model"):
        if key not in meta:
            raise CorruptStreamError(f"file header is malformed: field {key} is missing")
    dt = meta["dtype"]
    names = {**DTYPE_NAMES, **(SIGNED_NAMES if version >= 4 else {})}
    if not isinstance(dt, str) or dt not in names:
        raise CorruptStreamError(f"file header field dtype is {_show(dt)}, not one of {', '.join(names)}")
    signed = SIGNED_NAMES.get(dt)

    def pair(key, hi):
        v = meta[key]
        if not isinstance(v, list) or len(v) != 2:
            raise CorruptStreamError(f"file header field {key} is {_show(v)}, not a list of two integers")
        return tuple(check_int(s, f"file header field {key}", 1, hi) for s in v)

    h, w = pair("slice_shape", MAX_SLICE_DIM)
    th, tw = pair("tile", MAX_SLICE_DIM)
    if th > h or tw > w:
        raise CorruptStreamError(f"file header field tile is {[th, tw]}, larger than the slice {[h, w]}")
    if th * tw > MAX_TILE_VOXELS:
        raise CorruptStreamError(f"file header field tile is {[th, tw]}: {th * tw} voxels per tile slice, over "
                                 f"the limit of {MAX_TILE_VOXELS}")
    depth = check_int(meta["block_depth"], "file header field block_depth", 1, MAX_BLOCK_VOXELS // (th * tw))
    priors = check_priors(meta.get("priors", []), version)
    return Layout(coded_dtype(names[dt]), (h, w), depth, (th, tw), version, len(priors), signed)


#: at most this many zoo priors per stream
MAX_PRIORS = 64
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_priors(priors, version: int = FORMAT_VERSION) -> list:
    """The file header's ``priors``: a list of ``{"id": name, "sha256": hex}`` (format 4 on), the
    zoo priors its blocks may start from."""
    if priors and not 4 <= version <= 5:
        raise CorruptStreamError(f"file header field priors in a format {version} stream (only formats 4 and 5 "
                                 "have zoo priors)")
    if not isinstance(priors, list) or len(priors) > MAX_PRIORS:
        raise CorruptStreamError(f"file header field priors is {_show(priors)}, not a list of at most "
                                 f"{MAX_PRIORS} priors")
    for p in priors:
        pid = p.get("id") if isinstance(p, dict) else None
        digest = p.get("sha256") if isinstance(p, dict) else None
        if not (isinstance(pid, str) and 1 <= len(pid) <= 64 and set(pid) <= _ID_CHARS
                and isinstance(digest, str) and len(digest) == 64 and set(digest) <= set("0123456789abcdef")
                and len(p) == 2):
            raise CorruptStreamError(f"file header field priors holds {_show(p)}, not {{\"id\": name, \"sha256\": "
                                     "64 hex digits}")
    return priors


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
    #: format 4: 0, or k when the block's model is the k-th prior the file header names (its model
    #: section, if any, holds a difference against it)
    prior: int = 0

    @property
    def shape(self):
        return (self.depth, self.h, self.w)

    def pack(self) -> bytes:
        body = _BLOCK.pack(BLOCK_MAGIC, self.index, self.z0, self.depth, self.y0, self.x0, self.h, self.w, 0,
                           self.lo, self.hi, self.centre, self.shift, self.flags, self.prior, self.model_len,
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
        (_, index, z0, depth, y0, x0, h, w, reserved, lo, hi, centre, shift, flags, prior, model_len, payload_len,
         data_crc, voxel_crc) = fields
        if reserved:
            raise CorruptStreamError(f"block header reserved field is {reserved}, not 0", where)
        return cls(index, z0, depth, y0, x0, h, w, lo, hi, centre, shift, flags, model_len, payload_len,
                   data_crc, voxel_crc, prior)

    @property
    def geometry(self) -> tuple[int, int, int, int, int, int]:
        return (self.z0, self.depth, self.y0, self.x0, self.h, self.w)

    def check(self, i: int, layout: Layout, number: int | None = None):
        """Check the fields against ``layout``: the index field (``number``, the block's place in the
        stream, default ``i``), value range, centre and shift, flags, section lengths.  (The caller
        checks the geometry against the block index or the layout.)  Errors name block ``i``."""
        number = i if number is None else number
        if self.prior and not 4 <= layout.version <= 5:
            raise CorruptStreamError(f"block header reserved field is {self.prior}, not 0", i)
        if self.prior > layout.n_priors:
            raise CorruptStreamError(f"block header field prior is {self.prior}, but the file header names "
                                     f"{layout.n_priors} priors", i)
        if self.index != number:
            raise CorruptStreamError(f"block header field index is {self.index}: this record is not block "
                                     f"{number}", i)
        top = layout.max_value
        if not 0 <= self.lo <= self.hi <= top:
            raise CorruptStreamError(f"block header fields lo, hi are {self.lo}, {self.hi}: not a value range "
                                     f"within 0..{top}", i)
        if (self.centre, self.shift) != centre_shift(self.lo, self.hi):
            raise CorruptStreamError(f"block header fields centre, shift are {self.centre}, {self.shift}: they do not "
                                     f"follow from the value range {self.lo}..{self.hi}", i)
        if self.flags & ~known_flags(layout.version):
            raise CorruptStreamError(f"block header field flags is {self.flags:#x}: unknown flag bits", i)
        constant = self.lo == self.hi
        if bool(self.flags & FLAG_CONSTANT) != constant:
            raise CorruptStreamError(f"block header field flags is {self.flags:#x}, but the value range "
                                     f"{self.lo}..{self.hi} is {'' if constant else 'not '}one value", i)
        if constant:
            if self.flags != FLAG_CONSTANT or self.model_len or self.payload_len or self.prior:
                raise CorruptStreamError("constant block with a model, a prior, a payload or other flags", i)
            return
        if self.flags & FLAG_RAW:
            raw = self.depth * self.h * self.w * layout.dtype.itemsize
            if self.flags != FLAG_RAW or self.model_len or self.payload_len != raw or self.prior:
                raise CorruptStreamError(f"block header field flags is {self.flags:#x} (a stored block) with "
                                         f"model_len {self.model_len}, payload_len {self.payload_len} and prior "
                                         f"{self.prior}: its voxels take {raw} bytes and it has no model", i)
            return
        if self.payload_len % 4 and layout.version < 3:  # range-coded payloads are 32-bit words
            raise CorruptStreamError(f"block header field payload_len is {self.payload_len}, not a multiple of 4", i)
        if self.depth * MIN_SLICE_BITS_X100 > (8 * self.payload_len + PAYLOAD_SLACK_BITS) * 100:
            raise CorruptStreamError(f"block header field payload_len is {self.payload_len}: too short for "
                                     f"{self.depth} slices (each costs at least 1.58 bits)", i)
        if layout.version >= 6:
            if self.payload_len < 4 * self.depth:
                raise CorruptStreamError(f"block header field payload_len is {self.payload_len}: too short for "
                                         f"{self.depth} slices (each starts with a 4-byte coder state)", i)
            if self.model_len != PARAM_BYTES:
                raise CorruptStreamError(f"block header field model_len is {self.model_len}: a coded block of "
                                         f"format 6 carries its {PARAM_BYTES} parameter bytes", i)
            return
        if self.prior:
            if self.flags & FLAG_SHARED:
                raise CorruptStreamError("block header names both a prior and the shared model", i)
            return
        if bool(self.flags & FLAG_SHARED) == (self.model_len > 0):
            raise CorruptStreamError(f"block header field model_len is {self.model_len} with flags "
                                     f"{self.flags:#x}: a block carries a model unless it uses the shared one", i)


HEADER_SIZE = _BLOCK.size + 4


def voxel_crc(block: np.ndarray) -> int:
    """CRC-32 of the voxels, little-endian, in C order (read in place: no copy of a contiguous block)."""
    return zlib.crc32(np.ascontiguousarray(block, block.dtype.newbyteorder("<")))


def pack_file_header(meta: dict) -> bytes:
    js = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    head = _FILE_HEAD.pack(MAGIC, FORMAT_VERSION, 0, len(js)) + js
    return head + struct.pack("<I", zlib.crc32(head))


def _json(raw: bytes, what: str):
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, numbers too long, nesting too deep
        raise CorruptStreamError(f"{what} is malformed: {_show(str(exc), 80)}") from None


def read_file_header(f, file_size: int | None = None) -> tuple[dict, int, int]:
    """Parse the file header at the start of ``f`` (``file_size`` bytes long, if known).
    Returns (meta, size in bytes, format version)."""
    raw = f.read(_FILE_HEAD.size)
    if not raw:
        raise CorruptStreamError("the file is empty")
    if raw[:8] != MAGIC[:len(raw[:8])]:
        raise CorruptStreamError("not a voxcodec stream (it does not start with the .vxc magic bytes)")
    if len(raw) < _FILE_HEAD.size:
        raise TruncatedStreamError(f"stream is cut short inside its file header ({len(raw)} bytes)")
    _, version, reserved, n = _FILE_HEAD.unpack(raw)
    if version not in READ_VERSIONS:
        if FORMAT_VERSION < version < 256:
            raise CorruptStreamError(f"format version {version} is not supported (this voxcodec reads "
                                     f"versions 1 to {FORMAT_VERSION}); upgrade voxcodec")
        raise CorruptStreamError(f"file header is damaged: its format version field reads {version} (this "
                                 f"voxcodec reads versions 1 to {FORMAT_VERSION})")
    if n > MAX_HEADER_JSON:
        raise CorruptStreamError(f"file header is damaged: its JSON length {n} is over the limit of "
                                 f"{MAX_HEADER_JSON} bytes")
    if file_size is not None and _FILE_HEAD.size + n + 4 > file_size:
        raise TruncatedStreamError("stream is cut short inside its file header")
    js = f.read(n)
    crc = f.read(4)
    if len(js) < n or len(crc) < 4:
        raise TruncatedStreamError("stream is cut short inside its file header")
    if zlib.crc32(raw + js) != struct.unpack("<I", crc)[0]:
        raise CorruptStreamError("file header checksum mismatch")
    if reserved:
        raise CorruptStreamError(f"file header reserved field is {reserved}, not 0")
    meta = _json(js, "file header JSON")
    if not isinstance(meta, dict):
        raise CorruptStreamError(f"file header is malformed: its JSON is a {type(meta).__name__}, not an object")
    return meta, _FILE_HEAD.size + n + 4, version


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

    @property
    def geometry(self) -> tuple[int, int, int, int, int, int]:
        return (self.z0, self.depth, self.y0, self.x0, self.h, self.w)


def pack_index(shape, entries: list[IndexEntry], offset: int) -> bytes:
    js = json.dumps({"shape": list(shape), "blocks": [list(asdict(e).values()) for e in entries]},
                    separators=(",", ":")).encode()
    body = INDEX_MAGIC + struct.pack("<I", len(js)) + js
    return body + struct.pack("<I", zlib.crc32(body)) + _TRAILER.pack(offset, END_MAGIC)


def _trailer_at(f, end: int, file_size: int) -> int | None:
    """The offset of the block index if a valid index and trailer end at byte ``end``, else None."""
    if end < _TRAILER.size + 12:
        return None
    f.seek(end - _TRAILER.size)
    offset, magic = _TRAILER.unpack(f.read(_TRAILER.size))
    if magic != END_MAGIC or offset + 12 > end - _TRAILER.size:
        return None
    f.seek(offset)
    head = f.read(8)
    if len(head) < 8 or head[:4] != INDEX_MAGIC:
        return None
    (n,) = struct.unpack("<I", head[4:])
    if offset + 8 + n + 4 != end - _TRAILER.size:
        return None
    js = f.read(n)
    crc = f.read(4)
    if len(js) < n or len(crc) < 4 or zlib.crc32(head + js) != struct.unpack("<I", crc)[0]:
        return None
    return offset


def _end_before(f, file_size: int) -> int | None:
    """Where a complete stream ends if other bytes follow it (searching the last TAIL_SEARCH bytes)."""
    start = max(0, file_size - TAIL_SEARCH)
    f.seek(start)
    tail = f.read(file_size - start)
    at, tries = len(tail), 0
    while tries < 64:
        at = tail.rfind(END_MAGIC, 0, at + len(END_MAGIC) - 1)
        if at < 0:
            return None
        tries += 1
        end = start + at + len(END_MAGIC)
        if end < file_size and _trailer_at(f, end, file_size) is not None:
            return end
    return None


def read_index(f, file_size: int) -> tuple[list[int], list[IndexEntry], int]:
    """Read the block index through the trailer at the end of ``f``.

    Returns ``(shape, entries, offset of the index)``, with every field of the right type and range
    for its own sake; :func:`check_index` checks that the blocks tile the volume."""
    if file_size < _TRAILER.size:
        raise TruncatedStreamError("stream is cut short: no block index at its end")
    f.seek(file_size - _TRAILER.size)
    offset, end = _TRAILER.unpack(f.read(_TRAILER.size))
    if end != END_MAGIC:
        stream_end = _end_before(f, file_size)
        if stream_end is not None:
            raise CorruptStreamError(f"{file_size - stream_end} bytes after the end of the stream (it ends at byte "
                                     f"{stream_end} of {file_size}): cut them off, or find out what wrote them")
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
    if offset + 8 + n + 4 != file_size - _TRAILER.size:
        raise CorruptStreamError(f"block index length {n} does not reach the trailer")
    js = f.read(n)
    crc = f.read(4)
    if len(js) < n or len(crc) < 4 or zlib.crc32(head + js) != struct.unpack("<I", crc)[0]:
        raise CorruptStreamError("block index checksum mismatch")
    d = _json(js, "block index")
    if not isinstance(d, dict) or not isinstance(d.get("shape"), list) or not isinstance(d.get("blocks"), list):
        raise CorruptStreamError("block index is malformed: it needs a shape and a list of blocks")
    shape = d["shape"]
    if len(shape) != 3:
        raise CorruptStreamError(f"block index field shape is {_show(shape)}, not three integers")
    shape = [check_int(shape[0], "block index field shape[0] (z)", 0, MAX_SLICES),
             check_int(shape[1], "block index field shape[1] (y)", 1, MAX_SLICE_DIM),
             check_int(shape[2], "block index field shape[2] (x)", 1, MAX_SLICE_DIM)]
    entries = []
    names = list(IndexEntry.__dataclass_fields__)
    tops = [file_size if k in ("offset", "length") else 8 * file_size if k == "bits" else 0xFFFFFFFF
            for k in names[:-1]]
    for i, e in enumerate(d["blocks"]):
        if not isinstance(e, list) or len(e) != len(names):
            raise CorruptStreamError(f"block index entry is {_show(e)}, not a list of {len(names)} fields", i)
        vals = e[:-1]
        if not (all(type(v) is int and v >= 0 for v in vals) and all(v <= t for v, t in zip(vals, tops))):
            for k, v, top in zip(names, vals, tops):  # find and name the bad field
                check_int(v, f"block index field {k}", 0, top, i)
        if type(e[-1]) is not bool:
            raise CorruptStreamError(f"block index field inter is {_show(e[-1])}, not true or false", i)
        entries.append(IndexEntry(*vals, e[-1]))
    return shape, entries, offset


def check_index(layout: Layout, shape, entries: list[IndexEntry], start: int, end: int):
    """The block index must describe exactly the blocks the encoder writes for a volume of ``shape``:
    layer after layer of tiles in row-major order, records back to back from ``start`` (the end of the
    file header) to ``end`` (the block index), each at least a block header long."""
    z, h, w = shape
    if end < start:
        raise CorruptStreamError(f"block index offset {end} points inside the file header")
    if (h, w) != layout.slice_shape:
        raise CorruptStreamError(f"block index field shape is {list(shape)}, but the slices are "
                                 f"{list(layout.slice_shape)}")
    want = layout.n_layers(z) * layout.n_tiles
    if len(entries) != want:
        raise CorruptStreamError(f"the block index lists {len(entries)} blocks, but a volume of shape {list(shape)} "
                                 f"in blocks of {layout.block_depth} slices and tiles of {list(layout.tile)} has {want}")
    pos = start
    for i, e in enumerate(entries):
        if e.geometry != layout.block(i, z):
            raise CorruptStreamError(f"block index entry places the block at z0, depth, y0, x0, h, w = "
                                     f"{list(e.geometry)}, where block {i} of the volume is {list(layout.block(i, z))}", i)
        if e.offset != pos:
            raise CorruptStreamError(f"block index field offset is {e.offset}, but the previous record ends at {pos}", i)
        if e.length < HEADER_SIZE or e.bits != 8 * e.length or e.model_bytes > e.length - HEADER_SIZE:
            raise CorruptStreamError(f"block index fields length, bits, model_bytes ({e.length}, {e.bits}, "
                                     f"{e.model_bytes}) disagree", i)
        pos += e.length
        if pos > end:
            raise CorruptStreamError(f"block index field length is {e.length}: the record runs into the block index", i)
    if pos != end:
        raise CorruptStreamError(f"{end - pos} bytes between the last block and the block index")


def check_entry(hd: BlockHeader, e: IndexEntry, i: int):
    """A block header must agree with its index entry."""
    if hd.geometry != e.geometry:
        raise CorruptStreamError(f"block header places the block at z0, depth, y0, x0, h, w = {list(hd.geometry)}, "
                                 f"its index entry at {list(e.geometry)}", i)
    if HEADER_SIZE + hd.model_len + hd.payload_len != e.length or hd.model_len != e.model_bytes or \
            bool(hd.flags & FLAG_INTER) != e.inter:
        raise CorruptStreamError("block header fields model_len, payload_len, flags disagree with the block index", i)
