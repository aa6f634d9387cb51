"""Try the presets on a user's data before committing to one: ``voxcodec preview VOLUME``.

A sample of the volume (a few slices from its middle, cropped around the centre) is coded with each
preset and, when imagecodecs is installed, with JPEG-XL lossless efforts 3 and 7, each on one thread.
Every row is measured on the same sample in this run, and every voxcodec row is decoded and compared
voxel for voxel.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass
class Row:
    codec: str
    bits_per_voxel: float
    encode_MBps: float
    decode_MBps: float
    lossless: bool
    note: str = ""


def sample_of(volume, slices: int = 16, side: int = 512) -> np.ndarray:
    """Up to ``slices`` consecutive slices from the middle of ``volume`` (an array or a
    :class:`~voxcodec.storage.volume_io.VolumeReader`), cropped to ``side`` x ``side`` around the centre."""
    d, h, w = volume.shape
    k = min(d, slices)
    z0 = (d - k) // 2
    part = volume.read(z0, z0 + k) if hasattr(volume, "read") else np.asarray(volume[z0:z0 + k])
    sy, sx = min(h, side), min(w, side)
    y0, x0 = (h - sy) // 2, (w - sx) // 2
    return np.ascontiguousarray(part[:, y0:y0 + sy, x0:x0 + sx])


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def preview(sample: np.ndarray, presets=("fast", "default"), baselines=True, on_row=None):
    """Rows of (codec, bits per voxel, encode and decode MB/s on one thread, lossless) for ``sample``."""
    import voxcodec

    rows = []
    mb = sample.nbytes / 1e6

    def add(row):
        rows.append(row)
        if on_row is not None:
            on_row(row)

    for name in presets:
        data, te = _timed(lambda: voxcodec.encode(sample, preset=name, workers=1))
        out, td = _timed(lambda: voxcodec.decode(data, workers=1))
        add(Row(f"preset {name}", 8 * len(data) / sample.size, mb / te, mb / td, bool(np.array_equal(out, sample))))
    if baselines:
        try:
            import imagecodecs as ic
        except ImportError:
            add(Row("JPEG-XL", float("nan"), float("nan"), float("nan"), False, "imagecodecs is not installed"))
        else:
            for effort in (3, 7):
                parts, te = _timed(lambda: [ic.jpegxl_encode(s, lossless=True, effort=effort, numthreads=1)
                                            for s in sample])
                out, td = _timed(lambda: np.stack([ic.jpegxl_decode(p, numthreads=1) for p in parts]))
                add(Row(f"JPEG-XL lossless e{effort}", 8 * sum(len(p) for p in parts) / sample.size, mb / te,
                        mb / td, bool(np.array_equal(out, sample)), "each slice alone"))
    return rows
