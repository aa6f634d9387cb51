"""numcodecs codecs for zarr format 2 (``from voxcodec.numcodecs import VoxCodec``); they live in
:mod:`voxcodec.storage.numcodecs`."""

from .storage.numcodecs import JpegXlCodec, PngCodec, VoxCodec, register_codecs  # noqa: F401

__all__ = ["VoxCodec", "PngCodec", "JpegXlCodec", "register_codecs"]
