"""Reading and writing volumes slice by slice (TIFF stacks, .npy, folders of slice images).

Readers never load more than the slices asked for, so a volume larger than memory streams through
the encoder with memory bounded by a few blocks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import UnsupportedError

SLICE_SUFFIXES = (".tif", ".tiff", ".png")
_DIGITS = re.compile(r"(\d+)")


def natural_key(name: str):
    """Sort key that orders embedded numbers by value: ``s_9.tif`` < ``s_10.tif``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _DIGITS.split(name)]


class VolumeReader:
    """A (z, y, x) volume on disk. ``read(z0, z1)`` returns slices z0:z1 as an array."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        self._close = None
        if self.path.is_dir():
            self._init_folder()
        elif self.path.suffix.lower() == ".npy":
            self._arr = np.load(self.path, mmap_mode="r")
            self._read = lambda a, b: np.asarray(self._arr[a:b])
            self._set(self._arr.shape, self._arr.dtype)
        elif self.path.suffix.lower() in (".tif", ".tiff"):
            self._init_tiff()
        else:
            raise UnsupportedError(f"cannot read {self.path.name}: give a TIFF stack (.tif), a .npy array "
                                   "or a folder of slice images")

    def _set(self, shape, dtype):
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise UnsupportedError(f"{self.path.name}: expected a 3-D (z, y, x) volume, got shape {shape}; "
                                   "multi-channel or time series volumes are not supported")
        self.shape, self.dtype = shape, np.dtype(dtype)

    def _init_tiff(self):
        import tifffile

        tif = tifffile.TiffFile(self.path)
        self._close = tif.close
        series = tif.series[0]
        shape = series.shape
        self._set(shape, series.dtype)
        pages = series.pages
        if len(shape) == 3 and len(pages) == shape[0] and all(p is not None for p in pages[:1]):
            def read(a, b):
                return np.stack([pages[i].asarray() for i in range(a, b)]) if b > a else \
                    np.empty((0, *self.shape[1:]), self.dtype)
        else:  # one page holding the whole stack (or an unusual layout): memory-map when possible
            try:
                arr = tifffile.memmap(self.path)
            except (ValueError, OSError):
                arr = series.asarray()
            arr = arr.reshape(self.shape)

            def read(a, b):
                return np.asarray(arr[a:b])
        self._read = read

    def _init_folder(self):
        files = sorted((f for f in self.path.iterdir() if f.suffix.lower() in SLICE_SUFFIXES), key=lambda f: natural_key(f.name))
        if not files:
            raise UnsupportedError(f"{self.path} holds no slice images (.tif, .tiff, .png)")
        self._files = files
        first = read_image(files[0])
        self._set((len(files), *first.shape), first.dtype)

        def read(a, b):
            out = np.empty((b - a, *self.shape[1:]), self.dtype)
            for i in range(a, b):
                im = read_image(self._files[i])
                if im.shape != self.shape[1:] or im.dtype != self.dtype:
                    raise UnsupportedError(f"{self._files[i].name}: shape {im.shape} {im.dtype} differs from the "
                                           f"first slice {self.shape[1:]} {self.dtype}")
                out[i - a] = im
            return out
        self._read = read

    def read(self, z0: int, z1: int) -> np.ndarray:
        return self._read(max(z0, 0), min(z1, self.shape[0]))

    def iter_chunks(self, depth: int):
        for z in range(0, self.shape[0], depth):
            yield self.read(z, z + depth)

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def close(self):
        if self._close:
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def read_image(path) -> np.ndarray:
    """One 2-D slice image (TIFF or PNG)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        try:
            import imagecodecs
        except ImportError:
            raise UnsupportedError("reading PNG slices needs imagecodecs: pip install imagecodecs") from None
        im = imagecodecs.png_decode(path.read_bytes())
    else:
        import tifffile

        im = tifffile.imread(path)
    if im.ndim != 2:
        raise UnsupportedError(f"{path.name}: expected a single-channel 2-D image, got shape {im.shape}")
    return im


class TiffStackWriter:
    """Append (n, y, x) chunks to a TIFF stack, one page per slice (BigTIFF above 2 GB)."""

    def __init__(self, path, shape, dtype):
        import tifffile

        big = int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31 - 2**25
        self._tw = tifffile.TiffWriter(path, bigtiff=big)
        self._meta = {"axes": "ZYX"}

    def write(self, chunk: np.ndarray):
        for s in chunk:
            self._tw.write(s, contiguous=True, metadata=self._meta)
            self._meta = None

    def close(self):
        self._tw.close()


def write_volume(path, array: np.ndarray):
    """Write a whole array as .npy or a TIFF stack, chosen by the file name."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        np.save(path, array)
        return
    w = TiffStackWriter(path, array.shape, array.dtype)
    try:
        w.write(array)
    finally:
        w.close()


def sample_path() -> str:
    """Path of the sample volume shipped with voxcodec (64 x 128 x 128 uint8 FIB-SEM crop,
    Janelia FlyEM, CC-BY)."""
    return os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "sample_flyem_fib.tif")


def sample_volume() -> np.ndarray:
    """The sample volume as an array (see :func:`sample_path`)."""
    import tifffile

    return tifffile.imread(sample_path())
