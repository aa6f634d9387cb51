"""The codecs the benchmark compares, each with its parameters written into the results.

Every codec here comes from a maintained library (imagecodecs, the standard library) or is
voxcodec itself; none is written by hand.  Image codecs code each z-slice alone.
"""

from __future__ import annotations

import lzma
from abc import ABC, abstractmethod

import numpy as np


class Codec(ABC):
    name = ""
    params: dict = {}

    @abstractmethod
    def encode(self, vol: np.ndarray):
        """Return (encoded payload, bits spent on each slice or None)."""

    @abstractmethod
    def decode(self, payload, shape, dtype) -> np.ndarray:
        """Return the decoded volume."""


class SliceCodec(Codec):
    """An image codec applied to each z-slice on its own."""

    def __init__(self, name, enc, dec, params):
        self.name, self._enc, self._dec, self.params = name, enc, dec, params

    def encode(self, vol):
        parts = [self._enc(s) for s in vol]
        return parts, [8 * len(p) for p in parts]

    def decode(self, parts, shape, dtype):
        out = np.empty(shape, dtype)
        for i, p in enumerate(parts):
            out[i] = self._dec(p)
        return out


class RawCodec(Codec):
    """A general-purpose compressor on the raw voxel bytes of the whole volume."""

    def __init__(self, name, enc, dec, params):
        self.name, self._enc, self._dec, self.params = name, enc, dec, params

    def encode(self, vol):
        return [self._enc(np.ascontiguousarray(vol).tobytes())], None

    def decode(self, parts, shape, dtype):
        return np.frombuffer(self._dec(parts[0]), dtype).reshape(shape)


class Voxcodec(Codec):
    def __init__(self, preset):
        self.preset = preset
        self.name = f"voxcodec-{preset}"
        self.params = {"preset": preset, "block_depth": "auto", "tile": "auto", "threads": "torch default",
                       "prior": "none (every block trains; the zoo's priors were trained on these volumes)"}

    def encode(self, vol):
        import voxcodec

        enc = voxcodec.Encoder(None, dtype=vol.dtype, slice_shape=vol.shape[1:], preset=self.preset,
                               expected_slices=vol.shape[0], prior="none")
        enc.write(vol)
        data = enc.getvalue()
        if all(blk.x0 == 0 and blk.y0 == 0 for blk in enc.blocks):
            # spread block headers and models over the block's slices so the per-slice bits add up
            bits = []
            for blk in enc.blocks:
                extra = 8 * blk.nbytes - sum(blk.slice_bits)
                bits += [b + extra / blk.depth for b in blk.slice_bits]
            # and the file header and block index over all slices
            file_extra = 8 * len(data) - sum(8 * blk.nbytes for blk in enc.blocks)
            bits = [b + file_extra / max(len(bits), 1) for b in bits]
        else:
            bits = None
        return [data], bits

    def decode(self, parts, shape, dtype):
        import voxcodec

        return voxcodec.decode(parts[0])


def _grey3(s):
    return np.repeat(s[..., None], 3, axis=2)


def all_codecs() -> dict:
    """name -> zero-argument factory."""
    import imagecodecs as ic

    c = {
        "png": lambda: SliceCodec("png", lambda s: ic.png_encode(s, level=9), ic.png_decode,
                                  {"library": "imagecodecs (libpng/zlib)", "level": 9}),
        "jpegxl-e7": lambda: SliceCodec("jpegxl-e7", lambda s: ic.jpegxl_encode(s, lossless=True, effort=7),
                                        ic.jpegxl_decode, {"library": "imagecodecs (libjxl)", "lossless": True,
                                                           "effort": 7}),
        "jpegxl-e9": lambda: SliceCodec("jpegxl-e9", lambda s: ic.jpegxl_encode(s, lossless=True, effort=9),
                                        ic.jpegxl_decode, {"library": "imagecodecs (libjxl)", "lossless": True,
                                                           "effort": 9}),
        "jpegls": lambda: SliceCodec("jpegls", lambda s: ic.jpegls_encode(s, level=0), ic.jpegls_decode,
                                     {"library": "imagecodecs (CharLS)", "near_lossless": 0}),
        "webp-ll": lambda: SliceCodec("webp-ll", lambda s: ic.webp_encode(_grey3(s), lossless=True, level=100),
                                      lambda b: ic.webp_decode(b)[..., 0],
                                      {"library": "imagecodecs (libwebp)", "lossless": True, "level": 100,
                                       "input": "grey repeated into RGB, channel 0 decoded"}),
        "jpeg2k-ll": lambda: SliceCodec("jpeg2k-ll", lambda s: ic.jpeg2k_encode(s, level=0, reversible=True),
                                        ic.jpeg2k_decode, {"library": "imagecodecs (OpenJPEG)", "reversible": True}),
        "zstd-19": lambda: RawCodec("zstd-19", lambda b: ic.zstd_encode(b, level=19), ic.zstd_decode,
                                    {"library": "imagecodecs (zstd)", "level": 19, "input": "raw volume bytes"}),
        "xz-9": lambda: RawCodec("xz-9", lambda b: lzma.compress(b, preset=9), lzma.decompress,
                                 {"library": "python lzma (liblzma)", "preset": 9, "input": "raw volume bytes"}),
    }
    for preset in ("fast", "default", "max"):
        c[f"voxcodec-{preset}"] = (lambda p=preset: Voxcodec(p))
    return c


DEFAULT_CODECS = ["voxcodec-default", "png", "jpegxl-e7", "jpegxl-e9", "jpegls", "webp-ll", "jpeg2k-ll",
                  "zstd-19", "xz-9"]
