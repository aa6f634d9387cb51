"""zarr v3 codecs (``from voxcodec.zarr import VoxCodec``); they live in :mod:`voxcodec.storage.zarr`."""

from .storage.zarr import JpegXlCodec, PngCodec, VoxCodec, register_codecs  # noqa: F401

__all__ = ["VoxCodec", "PngCodec", "JpegXlCodec", "register_codecs"]
