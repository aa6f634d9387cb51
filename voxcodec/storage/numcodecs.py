"""voxcodec as numcodecs codecs, for zarr format 2 arrays (and anything else using numcodecs).

    import zarr
    from voxcodec.numcodecs import VoxCodec

    arr = zarr.create_array("em.zarr", shape=(512, 2048, 2048), chunks=(64, 256, 256), dtype="uint8",
                            compressors=VoxCodec(), zarr_format=2)

Codec ids ``voxcodec``, ``voxcodec_png`` and ``voxcodec_jpegxl``, registered through the
``numcodecs.codecs`` entry point and by :func:`register_codecs`. Parameters are keyword-only and
``get_config`` / ``from_config`` round-trip them as plain JSON.
"""

from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ndarray_copy

from . import chunks
from ..core.presets import PRESETS

__all__ = ["VoxCodec", "PngCodec", "JpegXlCodec", "register_codecs"]


class _Base(Codec):
    def encode(self, buf):
        return self._encode_array(np.asarray(buf))

    def decode(self, buf, out=None):
        arr = self._decode_bytes(bytes(memoryview(buf)))
        return arr if out is None else ndarray_copy(arr, out)


class VoxCodec(_Base):
    """voxcodec for numcodecs: each chunk a format 6 stream, lossless.  ``model``: only in the
    configurations of arrays written by voxcodec 0.5 and older (a zoo prior ``"zoo:<id>"`` or a shared
    model), for their chunks."""

    codec_id = "voxcodec"

    def __init__(self, *, preset: str = "default", model: str | None = None):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        if model is not None:
            chunks.cached_model(model)  # fail early on a malformed shared model
        self.preset = preset
        self.model = model

    def get_config(self):
        return {"id": self.codec_id, "preset": self.preset, **({"model": self.model} if self.model else {})}

    def __repr__(self):
        return f"VoxCodec(preset={self.preset!r}{'' if not self.model else f', model={self.model!r}' if self.model.startswith(chunks.ZOO) else ', model=<shared>'})"

    def _encode_array(self, arr):
        return chunks.encode_chunk(arr, preset=self.preset)

    def _decode_bytes(self, data):
        return chunks.decode_chunk(data, model=self.model)


class PngCodec(_Base):
    """Baseline: each z-slice of a chunk as its own PNG, zlib ``level`` 0-9."""

    codec_id = "voxcodec_png"

    def __init__(self, *, level: int = 9):
        if not 0 <= int(level) <= 9:
            raise ValueError(f"PNG level must be 0..9, got {level}")
        self.level = int(level)

    def _encode_array(self, arr):
        return chunks.encode_slices(arr, "png", level=self.level)

    def _decode_bytes(self, data):
        return chunks.decode_slices(data, "png")


class JpegXlCodec(_Base):
    """Baseline: each z-slice of a chunk as lossless JPEG XL, ``effort`` 1-10."""

    codec_id = "voxcodec_jpegxl"

    def __init__(self, *, effort: int = 7):
        if not 1 <= int(effort) <= 10:
            raise ValueError(f"JPEG-XL effort must be 1..10, got {effort}")
        self.effort = int(effort)

    def _encode_array(self, arr):
        return chunks.encode_slices(arr, "jpegxl", effort=self.effort)

    def _decode_bytes(self, data):
        return chunks.decode_slices(data, "jpegxl")


def register_codecs():
    """Register the codecs with numcodecs by hand (the entry points do this for installed voxcodec)."""
    from numcodecs.registry import register_codec

    for cls in (VoxCodec, PngCodec, JpegXlCodec):
        register_codec(cls)
