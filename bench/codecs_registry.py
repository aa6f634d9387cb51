"""The codecs the benchmark compares, each with its parameters written into the results.

Every codec here comes from a maintained library (imagecodecs, the standard library) or is
voxcodec itself; none is written by hand.  Image codecs code each z-slice alone.

paq8px (a context-mixing compressor, GPL) is an optional anchor: far slower than the others (tens
of KB/s), it is run as a separate program from a path given to :func:`all_codecs` (``paq8px=PATH``)
or :func:`paq8px_codec`, never by default.
"""

from __future__ import annotations

import lzma
import os
import re
import subprocess
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

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
        self.params = {"preset": preset, "block_depth": "auto", "tile": "auto", "workers": 1}

    def encode(self, vol):
        import voxcodec

        enc = voxcodec.Encoder(None, dtype=vol.dtype, slice_shape=vol.shape[1:], preset=self.preset,
                               expected_slices=vol.shape[0])
        enc.write(vol)
        data = enc.getvalue()
        if all(blk.x0 == 0 and blk.y0 == 0 for blk in enc.blocks):
            # spread block headers and parameters over the block's slices so the per-slice bits add up
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


def pgm_bytes(s: np.ndarray) -> bytes:
    """A uint8 slice (h, w) as a binary PGM: ``P5\\n{w} {h}\\n255\\n`` and the voxels, row by row."""
    s = np.asarray(s)
    if s.dtype != np.uint8 or s.ndim != 2:
        raise ValueError(f"a PGM slice here is a 2-D uint8 array, got {s.ndim}-D {s.dtype}")
    h, w = s.shape
    return f"P5\n{w} {h}\n255\n".encode() + np.ascontiguousarray(s).tobytes()


_PGM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n)*([0-9]+|P5)")


def parse_pgm(data: bytes) -> np.ndarray:
    """The uint8 slice of a binary PGM (P5, maxval 255; comments allowed in the header).  Anything
    else, or voxel bytes missing or left over, raises ValueError."""
    tokens, pos = [], 0
    for _ in range(4):  # magic, width, height, maxval
        m = _PGM_TOKEN.match(data, pos)
        if m is None:
            raise ValueError(f"not a binary PGM: bad header near byte {pos}")
        tokens.append(m.group(1))
        pos = m.end()
    if tokens[0] != b"P5" or not all(t.isdigit() for t in tokens[1:]):
        raise ValueError(f"not a binary PGM: header {b' '.join(tokens)!r}")
    w, h, maxval = (int(t) for t in tokens[1:])
    if maxval != 255:
        raise ValueError(f"PGM with maxval {maxval}: only 8-bit (255) is read here")
    if pos >= len(data) or data[pos:pos + 1] not in (b" ", b"\t", b"\n", b"\r"):
        raise ValueError("not a binary PGM: no whitespace after the header")
    body = data[pos + 1:]
    if len(body) != w * h:
        raise ValueError(f"PGM of {w}x{h} voxels holds {len(body)} bytes of them")
    return np.frombuffer(body, np.uint8).reshape(h, w).copy()


class Paq8px(Codec):
    """paq8px (a separate, GPL program: only run, never linked) on each z-slice alone, as a binary
    PGM (``PATH -8 slice.pgm slice.pgm.paq8px``); decoded with ``PATH -d slice.pgm.paq8px out.pgm``
    and the PGM parsed back here.  uint8 volumes only.  Bits per slice: 8 x the archive's size (which
    holds the PGM header and paq8px's own header).  Level 8 takes about 2.4 GB of memory per process."""

    def __init__(self, path, level: int = 8):
        self.path = str(Path(path).expanduser().resolve())
        if not (os.path.isfile(self.path) and os.access(self.path, os.X_OK)):
            raise FileNotFoundError(f"paq8px: no executable at {path}")
        self.level = int(level)
        self.name = "paq8px"
        self.params = {"program": "paq8px", "version": self.version(), "level": self.level,
                       "input": "each z-slice as a binary PGM (P5)"}

    def version(self) -> str:
        """The version paq8px names in its usage text (its first line), e.g. ``v216``."""
        res = subprocess.run([self.path], capture_output=True, text=True)
        m = re.search(r"paq8px[^\n]*?\b(v\d+\w*)", res.stdout + res.stderr)
        return m.group(1) if m else "?"

    def _run(self, args, cwd, want: str) -> bytes:
        res = subprocess.run([self.path, *args], cwd=cwd, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL)
        out = Path(cwd) / want
        if res.returncode != 0 or not out.is_file():
            raise RuntimeError(f"paq8px {' '.join(args)} failed (exit {res.returncode}, no {want}):\n"
                               f"{(res.stdout + res.stderr)[-2000:]}")
        return out.read_bytes()

    def encode_slice(self, s: np.ndarray) -> bytes:
        with tempfile.TemporaryDirectory(prefix="paq8px-") as tmp:
            (Path(tmp) / "slice.pgm").write_bytes(pgm_bytes(s))
            return self._run([f"-{self.level}", "slice.pgm", "slice.pgm.paq8px"], tmp, "slice.pgm.paq8px")

    def decode_slice(self, payload: bytes) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="paq8px-") as tmp:
            (Path(tmp) / "slice.pgm.paq8px").write_bytes(payload)
            return parse_pgm(self._run(["-d", "slice.pgm.paq8px", "out.pgm"], tmp, "out.pgm"))

    def encode(self, vol):
        if vol.dtype != np.uint8:
            raise ValueError(f"paq8px codes uint8 volumes only (8-bit PGM slices); this volume is {vol.dtype}")
        parts = [self.encode_slice(s) for s in vol]
        return parts, [8 * len(p) for p in parts]

    def decode(self, parts, shape, dtype):
        return np.stack([self.decode_slice(p) for p in parts])


def paq8px_codec(path, level: int = 8) -> Paq8px:
    """The paq8px anchor, run from ``path`` (see :class:`Paq8px`)."""
    return Paq8px(path, level)


def _grey3(s):
    return np.repeat(s[..., None], 3, axis=2)


def all_codecs(paq8px=None) -> dict:
    """name -> zero-argument factory; ``paq8px``: the path of a paq8px program, which adds the
    ``paq8px`` codec (never there otherwise)."""
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
    if paq8px:
        c["paq8px"] = lambda: Paq8px(paq8px)
    return c


#: run when no codecs are named (paq8px never: it is an optional anchor, see all_codecs)
DEFAULT_CODECS = ["voxcodec-default", "png", "jpegxl-e7", "jpegxl-e9", "jpegls", "webp-ll", "jpeg2k-ll",
                  "zstd-19", "xz-9"]
