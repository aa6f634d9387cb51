"""N5 datasets, read block by block (and a small writer, for tests and examples).

zarr-python 3 has no N5 store, and N5 is what many EM pipelines (BigDataViewer, Paintera, the
Janelia/Saalfeld lab tools) write, so voxcodec reads it itself. The format, as the N5 specification
states it:

- a dataset is a folder whose ``attributes.json`` holds ``dimensions``, ``blockSize``, ``dataType``
  and ``compression`` (``{"type": "raw" | "gzip" | ...}``; N5 before 2.0 wrote ``compressionType``);
- dimensions are listed fastest axis first (x, y, z): the reverse of numpy's (z, y, x);
- the block at grid position (i, j, k) (x, y, z order) is the file ``i/j/k`` below the dataset;
- each block starts with a big-endian header: ``uint16 mode`` (0 default, 1 varlength, 2 object),
  ``uint16 ndim``, ``ndim x uint32`` block dimensions (edge blocks are stored cut to the dataset,
  smaller than ``blockSize``), and for mode 1 ``uint32`` element count; the (compressed) voxels
  follow, big-endian, x fastest;
- a block that does not exist holds zeros.

Only ``raw`` and ``gzip`` (gzip or zlib streams, as N5's ``useZlib`` chooses) are read: other
compressions are refused with a message that says how to rewrite the dataset. Files are read through
a :class:`Files` object: the local file system or any fsspec file system.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import zlib

import numpy as np

from ..errors import InputError

#: N5 data types voxcodec can code, and those it can read but will refuse later by dtype
DTYPES = {"uint8": "u1", "uint16": "u2", "uint32": "u4", "uint64": "u8", "int8": "i1", "int16": "i2",
          "int32": "i4", "int64": "i8", "float32": "f4", "float64": "f8"}
COMPRESSIONS = ("raw", "gzip")


class Files:
    """Bytes by path: local files, or an fsspec file system (``fs``) for remote containers."""

    def __init__(self, fs=None):
        self.fs = fs

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist (a missing N5 block is all zeros)."""
        try:
            if self.fs is None:
                with open(path, "rb") as f:
                    return f.read()
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def json(self, path: str) -> dict | None:
        raw = self.read(path)
        if raw is None:
            return None
        try:
            out = json.loads(raw)
        except ValueError:
            raise InputError(f"{path}: is not valid JSON (a damaged N5 attributes file)") from None
        return out if isinstance(out, dict) else None


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


def is_dataset(attrs: dict | None) -> bool:
    return isinstance(attrs, dict) and "dimensions" in attrs and "dataType" in attrs


class N5Dataset:
    """One N5 dataset as a read-only (z, y, x) array: ``shape``, ``dtype`` (native byte order),
    ``attrs`` and ``read(box)`` / ``[...]`` for a region (only the blocks it touches are read)."""

    def __init__(self, path: str, files: Files | None = None, label: str | None = None):
        self.path = path.rstrip("/")
        self.files = files or Files()
        self.label = label or self.path
        attrs = self.files.json(join(self.path, "attributes.json"))
        if not is_dataset(attrs):
            raise InputError(f"{self.label}: is not an N5 dataset (its attributes.json lacks dimensions and "
                             "dataType): give the dataset's folder, e.g. container.n5/volume")
        self.attrs = attrs
        dims = [int(d) for d in attrs["dimensions"]]
        block = [int(b) for b in attrs.get("blockSize", dims)]
        if len(block) != len(dims) or min(block, default=1) < 1:
            raise InputError(f"{self.label}: blockSize {block} does not fit dimensions {dims}")
        kind = attrs["dataType"]
        if kind not in DTYPES:
            raise InputError(f"{self.label}: N5 dataType {kind!r} is not a numeric type voxcodec can read")
        self.compression = compression_of(attrs, self.label)
        self.ndim = len(dims)
        self.shape = tuple(reversed(dims))            # numpy order: slowest axis first
        self.block_shape = tuple(reversed(block))
        self.stored_dtype = np.dtype(">" + DTYPES[kind])
        self.dtype = self.stored_dtype.newbyteorder("=")

    def block_path(self, index) -> str:
        """The file of the block at numpy grid ``index`` (z, y, x): N5 names it x/y/z."""
        return join(self.path, *(str(int(i)) for i in reversed(index)))

    def read_block(self, index) -> np.ndarray | None:
        """The block at numpy grid ``index`` as stored (edge blocks cut to the dataset), or None if absent."""
        raw = self.files.read(self.block_path(index))
        if raw is None:
            return None
        return decode_block(raw, self.compression, self.stored_dtype, self.dtype,
                            f"{self.label}: block {'/'.join(str(int(i)) for i in reversed(index))}")

    def read(self, box) -> np.ndarray:
        """Voxels of ``box`` (one ``(start, stop)`` per axis, numpy order); absent blocks read as 0."""
        box = [(max(0, int(a)), min(int(b), n)) for (a, b), n in zip(box, self.shape)]
        out = np.zeros([max(0, b - a) for a, b in box], self.dtype)
        if out.size == 0:
            return out
        ranges = [range(a // s, (b - 1) // s + 1) for (a, b), s in zip(box, self.block_shape)]
        for index in np.ndindex(*[len(r) for r in ranges]):
            grid = [r[i] for r, i in zip(ranges, index)]
            blk = self.read_block(grid)
            if blk is None:
                continue
            origin = [g * s for g, s in zip(grid, self.block_shape)]
            src, dst = [], []
            for (a, b), o, n in zip(box, origin, blk.shape):
                lo, hi = max(a, o), min(b, o + n)
                if hi <= lo:
                    break
                src.append(slice(lo - o, hi - o))
                dst.append(slice(lo - a, hi - a))
            else:
                out[tuple(dst)] = blk[tuple(src)]
        return out

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        if any(not isinstance(k, slice) or k.step not in (None, 1) for k in key):
            raise TypeError("N5Dataset supports contiguous slices only")
        return self.read([k.indices(n)[:2] for k, n in zip(key, self.shape)])


def compression_of(attrs: dict, label: str) -> dict:
    """The dataset's compression as ``{"type": ...}``; anything but raw and gzip is refused."""
    comp = attrs.get("compression")
    if comp is None:
        comp = {"type": attrs.get("compressionType", "raw")}
    if not isinstance(comp, dict) or "type" not in comp:
        raise InputError(f"{label}: N5 compression {comp!r} is not understood")
    if comp["type"] not in COMPRESSIONS:
        raise InputError(f"{label}: N5 compression {comp['type']!r} is not supported (voxcodec reads raw and "
                         "gzip): rewrite the dataset with gzip, e.g. n5-copy or zarr/z5py with compression='gzip'")
    return comp


_HEAD = struct.Struct(">HH")


def decode_block(raw: bytes, compression: dict, stored: np.dtype, native: np.dtype, label: str) -> np.ndarray:
    """One N5 block file -> its voxels in numpy order (native byte order)."""
    try:
        mode, ndim = _HEAD.unpack_from(raw, 0)
        if mode not in (0, 1):
            raise InputError(f"{label}: N5 block mode {mode} (object blocks) cannot hold voxels")
        dims = struct.unpack_from(f">{ndim}I", raw, _HEAD.size)
        pos = _HEAD.size + 4 * ndim
        count = int(np.prod(dims, dtype=np.int64))
        if mode == 1:
            (count,) = struct.unpack_from(">I", raw, pos)
            pos += 4
    except struct.error:
        raise InputError(f"{label}: the N5 block header is cut short (was the copy interrupted?)") from None
    body = raw[pos:]
    if compression["type"] == "gzip":
        try:
            body = zlib.decompressobj(wbits=47).decompress(body)  # 47: gzip or zlib header, detected
        except zlib.error as exc:
            raise InputError(f"{label}: the gzip data does not decompress ({exc}); the block is damaged") from None
    need = count * stored.itemsize
    if len(body) < need or count != int(np.prod(dims, dtype=np.int64)):
        raise InputError(f"{label}: the block holds {len(body)} bytes of voxels, expected {need} for "
                         f"{'x'.join(map(str, dims))} (x, y, z); the block is damaged or cut short")
    arr = np.frombuffer(body, stored, count).reshape(tuple(reversed(dims)))
    return arr.astype(native)


# -- writing (tests, examples) -----------------------------------------------------------------------------
def write_dataset(path, array, block_shape, *, compression: str = "gzip", attrs: dict | None = None,
                  skip_zero_blocks: bool = False):
    """Write ``array`` (numpy order) as an N5 dataset at ``path`` (a local folder), creating the container's
    root ``attributes.json`` beside it when ``path``'s parent has none. Edge blocks are cut to the array
    as N5 writers do; ``skip_zero_blocks`` leaves all-zero blocks out (readers fill them with 0)."""
    path = os.fspath(path)
    array = np.asarray(array)
    kind = next((k for k, v in DTYPES.items() if np.dtype(v) == array.dtype.newbyteorder("=")), None)
    if kind is None:
        raise ValueError(f"N5 cannot hold {array.dtype}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}")
    os.makedirs(path, exist_ok=True)
    root = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(os.path.join(root, "attributes.json")):
        with open(os.path.join(root, "attributes.json"), "w") as f:
            json.dump({"n5": "2.5.1"}, f)
    meta = dict(attrs or {}, dimensions=list(reversed(array.shape)), blockSize=list(reversed(block_shape)),
                dataType=kind, compression={"type": compression} if compression == "raw" else
                {"type": "gzip", "level": 6, "useZlib": False})
    with open(os.path.join(path, "attributes.json"), "w") as f:
        json.dump(meta, f)
    big = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    grid = [range(0, n, b) for n, b in zip(array.shape, block_shape)]
    for origin in np.ndindex(*[len(g) for g in grid]):
        lo = [g[i] for g, i in zip(grid, origin)]
        blk = array[tuple(slice(a, a + b) for a, b in zip(lo, block_shape))]
        if skip_zero_blocks and not blk.any():
            continue
        head = _HEAD.pack(0, blk.ndim) + struct.pack(f">{blk.ndim}I", *reversed(blk.shape))
        body = np.ascontiguousarray(blk, big).tobytes()
        if compression == "gzip":
            body = gzip.compress(body, compresslevel=6, mtime=0)
        file = os.path.join(path, *(str(i) for i in reversed(origin)))  # N5 order: x/y/z
        os.makedirs(os.path.dirname(file), exist_ok=True)
        with open(file, "wb") as f:
            f.write(head + body)
