"""Chunk-level coding for storage codecs (zarr, numcodecs): any-rank chunks in, bytes out.

A chunk of rank N is coded as a (z, y, x) volume: the last two axes are the slice, all leading
axes are stacked along z (a 2-D chunk is one slice, a 1-D chunk one row). The chunk's own shape is
kept in the stream so that a decoder that is not told the shape (numcodecs) restores it.  Chunks
are written in format 6 and carry everything they need; the shared models that chunks of
voxcodec 0.5 and older may name are decoded once per process and cached here, never stored on codec
objects (those are pickled to every worker).
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

from ..core.container import DTYPES, SIGNED
from ..core.decoder import Decoder
from ..core.encoder import encode as _encode
from ..errors import CorruptStreamError, UnsupportedError
from ..core.legacy.network import BlockModel


def as_volume(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 0:
        return arr.reshape(1, 1, 1)
    if arr.ndim == 1:
        return arr.reshape(1, 1, -1)
    return arr.reshape(-1, *arr.shape[-2:])


def check_dtype(dtype, signed: bool = False) -> np.dtype:
    """The array type if the codec stores it: uint8 and uint16, and (``signed``: the voxcodec codec)
    int8 and int16, coded through the offset mapping of :func:`voxcodec.core.container.to_coded`."""
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in DTYPES and not (signed and dt.newbyteorder("=") in SIGNED):
        kinds = "uint8, uint16, int8 and int16" if signed else "uint8 and uint16"
        raise UnsupportedError(f"this codec stores {kinds} arrays, not {dt}")
    return dt


@lru_cache(maxsize=16)
def cached_model(text: str | None) -> BlockModel | None:
    """The shared model that chunks of voxcodec 0.5 and older were coded with, written as text in their
    codec configuration, decoded once per process (None for no model, or for a zoo prior,
    ``"zoo:<id>"``, which those chunks name themselves)."""
    return None if text is None or text.startswith(ZOO) else BlockModel.from_text(text)


#: a codec's ``model`` that names a zoo prior (voxcodec 0.5 and older): ``"zoo:<id>"``
ZOO = "zoo:"


def encode_chunk(arr, *, preset: str = "default", position=None) -> bytes:
    """One chunk as one block of a format 6 stream.  ``position``, the chunk's index in the array's
    chunk grid where the writer knows it, is recorded and checked on decoding."""
    arr = np.asarray(arr)
    check_dtype(arr.dtype, signed=True)
    vol = np.ascontiguousarray(as_volume(arr))
    meta = {"chunk_shape": list(arr.shape)}
    if position is not None:
        meta["chunk_position"] = [int(i) for i in position]
    return _encode(vol, preset=preset, block_depth=max(vol.shape[0], 1), metadata=meta)


def check_chunk_dtype(stored: np.dtype, wanted, what: str = "chunk"):
    """A chunk's voxels are of the array's type, or the chunk belongs elsewhere (never cast silently)."""
    if wanted is None:
        return
    wanted = np.dtype(wanted)
    if (stored.kind, stored.itemsize) != (wanted.kind, wanted.itemsize):
        raise CorruptStreamError(f"the {what} holds {stored.name} voxels but the array is {wanted.name}: "
                                 "it was written for another array")


def decode_chunk(data: bytes, *, shape=None, dtype=None, model: str | None = None, position=None) -> np.ndarray:
    """Decode a chunk of ``shape`` and ``dtype`` (as the array declares them; None: as stored).  ``model``:
    the codec configuration's model, for chunks of voxcodec 0.5 and older coded with a shared one.
    ``position``, where known, must match the grid index the chunk was written for, if it has one.
    zarr does not tell its codecs where a chunk lies: there only shape and dtype are checked."""
    with Decoder(data, shared_model=cached_model(model)) as dec:
        check_chunk_dtype(dec.dtype, dtype)
        meta = dec.meta.get("metadata", {})
        written_at = meta.get("chunk_position") if isinstance(meta, dict) else None
        if position is not None and written_at is not None and list(written_at) != [int(i) for i in position]:
            raise CorruptStreamError(f"chunk written for grid position {tuple(written_at)} was found at "
                                     f"{tuple(int(i) for i in position)}: chunks were moved or swapped")
        vol = dec.read()
        stored = meta.get("chunk_shape") if isinstance(meta, dict) else None
    if shape is None and not isinstance(stored, list):
        raise CorruptStreamError("chunk does not record its shape")
    shape = tuple(stored if shape is None else shape)
    if int(np.prod(shape)) != vol.size:
        raise CorruptStreamError(f"chunk holds {vol.size} voxels, expected shape {shape}")
    out = vol.reshape(shape)
    return out if dtype is None or np.dtype(dtype) == out.dtype else out.astype(dtype)


# -- baseline image codecs, each z-slice of a chunk coded alone ----------------------------------------
_SLICES = struct.Struct("<4sBB2sB")  # magic, version, codec, dtype ('u1'/'u2'), ndim


def _image_codec(name: str, **params):
    import imagecodecs

    if name == "png":
        return (lambda s: imagecodecs.png_encode(s, level=params.get("level", 9))), imagecodecs.png_decode
    if name == "jpegxl":
        return (lambda s: imagecodecs.jpegxl_encode(s, lossless=True, effort=params.get("effort", 7))), \
            imagecodecs.jpegxl_decode
    raise ValueError(f"unknown image codec {name!r}")


_IDS = {"png": 1, "jpegxl": 2}


def encode_slices(arr, name: str, **params) -> bytes:
    """Code every (y, x) slice of a chunk with an image codec; a small header keeps shape and lengths."""
    arr = np.asarray(arr)
    dt = check_dtype(arr.dtype)
    vol = np.ascontiguousarray(as_volume(arr), dt.newbyteorder("="))
    enc, _ = _image_codec(name, **params)
    parts = [enc(s) for s in vol]
    head = _SLICES.pack(b"VXSL", 1, _IDS[name], dt.str[1:].encode(), arr.ndim)
    head += struct.pack(f"<{arr.ndim}I", *arr.shape) + struct.pack("<I", len(parts))
    head += struct.pack(f"<{len(parts)}I", *(len(p) for p in parts))
    crc = zlib.crc32(np.ascontiguousarray(vol, vol.dtype.newbyteorder("<")).tobytes())
    return head + b"".join(parts) + struct.pack("<I", crc)


def decode_slices(data: bytes, name: str, *, shape=None, dtype=None) -> np.ndarray:
    data = bytes(data)
    try:
        magic, version, cid, dts, ndim = _SLICES.unpack_from(data, 0)
        if magic != b"VXSL" or version != 1 or cid != _IDS[name]:
            raise CorruptStreamError(f"not a voxcodec_{name} chunk")
        pos = _SLICES.size
        stored = struct.unpack_from(f"<{ndim}I", data, pos)
        pos += 4 * ndim
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        lengths = struct.unpack_from(f"<{n}I", data, pos)
        pos += 4 * n
        if dts not in (b"u1", b"u2") or ndim > 32:
            raise CorruptStreamError(f"voxcodec_{name} chunk header is damaged")
    except struct.error:
        raise CorruptStreamError(f"voxcodec_{name} chunk header is cut short") from None
    dt = np.dtype(dts.decode())
    check_chunk_dtype(dt, dtype, f"voxcodec_{name} chunk")
    shape = tuple(stored if shape is None else shape)
    _, dec = _image_codec(name)
    slices = []
    for ln in lengths:
        if pos + ln > len(data) - 4:
            raise CorruptStreamError(f"voxcodec_{name} chunk is cut short")
        try:
            slices.append(dec(data[pos:pos + ln]))
        except Exception as exc:  # the image codecs raise their own error types on damage
            raise CorruptStreamError(f"voxcodec_{name} slice does not decode: {exc}") from None
        pos += ln
    if any(sl.shape != slices[0].shape or sl.ndim != 2 for sl in slices):
        raise CorruptStreamError(f"voxcodec_{name} chunk slices differ in shape")
    vol = np.stack(slices).astype(dt, copy=False) if slices else np.zeros((0,), dt)
    if int(np.prod(shape)) != vol.size:
        raise CorruptStreamError(f"voxcodec_{name} chunk holds {vol.size} voxels, expected shape {shape}")
    if pos + 4 > len(data) or zlib.crc32(np.ascontiguousarray(vol, vol.dtype.newbyteorder("<")).tobytes()) != \
            struct.unpack_from("<I", data, pos)[0]:
        raise CorruptStreamError(f"voxcodec_{name} chunk checksum mismatch")
    out = vol.reshape(shape)
    return out if dtype is None or np.dtype(dtype) == out.dtype else out.astype(dtype)
