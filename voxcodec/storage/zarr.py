"""voxcodec as native zarr v3 codecs (zarr-python 3), with PNG and JPEG-XL baselines.

    import zarr
    from voxcodec.zarr import VoxCodec

    arr = zarr.create_array("em.zarr", shape=(512, 2048, 2048), chunks=(64, 256, 256), dtype="uint8",
                            serializer=VoxCodec(preset="default"), compressors=None)

``VoxCodec``, ``PngCodec`` and ``JpegXlCodec`` are array-to-bytes codecs named ``voxcodec``,
``voxcodec_png`` and ``voxcodec_jpegxl`` in the array metadata, registered through the
``zarr.codecs`` entry point: a Python process that never imports voxcodec still reads the array.
Their configuration is plain JSON.  Every chunk is a format 6 stream that carries everything it
needs: its model learns while it codes.  The ``model`` of a configuration written by voxcodec 0.5
and older (a zoo prior, ``"zoo:<id>"``, or a shared model's weights) is kept: the chunks coded with it
decode, and new chunks of the array are written in format 6.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from zarr.abc.codec import ArrayBytesCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import parse_named_configuration

from . import chunks
from ..core.presets import PRESETS

__all__ = ["VoxCodec", "PngCodec", "JpegXlCodec", "register_codecs"]


class _ChunkCodec(ArrayBytesCodec):
    """Shared plumbing: sync encode/decode run in a worker thread, fixed-size output is unknown."""

    is_fixed_size = False
    codec_name = ""

    @classmethod
    def from_dict(cls, data):
        _, config = parse_named_configuration(data, cls.codec_name, require_configuration=False)
        return cls(**(config or {}))

    def to_dict(self):
        return {"name": self.codec_name, "configuration": self._config()}

    def evolve_from_array_spec(self, array_spec):
        chunks.check_dtype(array_spec.dtype.to_native_dtype(), signed=self.codec_name == "voxcodec")
        return self

    def compute_encoded_size(self, input_byte_length, chunk_spec):
        # zarr's protocol for codecs whose output size depends on the data (its compressors do the same)
        raise NotImplementedError("compute_encoded_size: the coded size of a chunk depends on its voxels")

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec) -> Buffer | None:
        return chunk_spec.prototype.buffer.from_bytes(self._encode_array(chunk_array.as_numpy_array()))

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec) -> NDBuffer:
        arr = self._decode_bytes(chunk_bytes.to_bytes(), tuple(chunk_spec.shape), chunk_spec.dtype.to_native_dtype())
        return chunk_spec.prototype.nd_buffer.from_numpy_array(arr)


@dataclass(frozen=True)
class VoxCodec(_ChunkCodec):
    """voxcodec: each chunk a format 6 stream, lossless.  ``model``: only in the configurations of arrays
    written by voxcodec 0.5 and older (a zoo prior ``"zoo:<id>"`` or a shared model), for their chunks."""

    codec_name = "voxcodec"
    preset: str = "default"
    model: str | None = None

    def __init__(self, *, preset: str = "default", model: str | None = None):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if model is not None:
            chunks.cached_model(model)  # fail early on a malformed shared model
        object.__setattr__(self, "preset", preset)
        object.__setattr__(self, "model", model)

    def _config(self):
        return {"preset": self.preset, **({"model": self.model} if self.model else {})}

    def _encode_array(self, arr):
        return chunks.encode_chunk(arr, preset=self.preset)

    def _decode_bytes(self, data, shape, dtype):
        return chunks.decode_chunk(data, shape=shape, dtype=dtype, model=self.model)


@dataclass(frozen=True)
class PngCodec(_ChunkCodec):
    """Baseline: each z-slice of a chunk as its own PNG (imagecodecs), zlib ``level`` 0-9."""

    codec_name = "voxcodec_png"
    level: int = 9

    def __init__(self, *, level: int = 9):
        if not 0 <= int(level) <= 9:
            raise ValueError(f"PNG level must be 0..9, got {level}")
        object.__setattr__(self, "level", int(level))

    def _config(self):
        return {"level": self.level}

    def _encode_array(self, arr):
        return chunks.encode_slices(arr, "png", level=self.level)

    def _decode_bytes(self, data, shape, dtype):
        return chunks.decode_slices(data, "png", shape=shape, dtype=dtype)


@dataclass(frozen=True)
class JpegXlCodec(_ChunkCodec):
    """Baseline: each z-slice of a chunk as lossless JPEG XL (imagecodecs), ``effort`` 1-10."""

    codec_name = "voxcodec_jpegxl"
    effort: int = 7

    def __init__(self, *, effort: int = 7):
        if not 1 <= int(effort) <= 10:
            raise ValueError(f"JPEG-XL effort must be 1..10, got {effort}")
        object.__setattr__(self, "effort", int(effort))

    def _config(self):
        return {"effort": self.effort}

    def _encode_array(self, arr):
        return chunks.encode_slices(arr, "jpegxl", effort=self.effort)

    def _decode_bytes(self, data, shape, dtype):
        return chunks.decode_slices(data, "jpegxl", shape=shape, dtype=dtype)


def register_codecs():
    """Register the codecs with zarr by hand (the entry points do this for installed voxcodec)."""
    from zarr.registry import register_codec

    for cls in (VoxCodec, PngCodec, JpegXlCodec):
        register_codec(cls.codec_name, cls)
