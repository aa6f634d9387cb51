"""Reading and writing volumes slice by slice (TIFF stacks, .npy, folders of slice images).

Readers never load more than the slices asked for, so a volume larger than memory streams through
the encoder with memory bounded by a few blocks.

A reader gives the whole volume or nothing: an input that cannot be read completely and unambiguously
(a file cut short, damaged pages, slices that disagree, several channels, several volumes in one file)
is refused with an :class:`~voxcodec.errors.InputError` whose one-line message names the file, says
what is wrong and what to do. Exceptions of tifffile, numpy or imagecodecs never escape raw.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._messages import RECOPY as _RECOPY, dims as _dims, index_expr as _index_expr, slices as _slices, why as _why
from .tiff import TiffStack as _TiffStack
from .voxel_size import tiff_calibration

SLICE_SUFFIXES = (".tif", ".tiff", ".png")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf")
_DIGITS = re.compile(r"(\d+)")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"


def natural_key(name: str):
    """Sort key that orders embedded numbers by value: ``s_9.tif`` < ``s_10.tif``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _DIGITS.split(name)]


class VolumeReader:
    """A (z, y, x) volume on disk. ``read(z0, z1)`` returns slices z0:z1 as an array.

    Reads a TIFF stack (.tif, .tiff, .btf: multi-page, ImageJ, OME, BigTIFF, compressed pages), a .npy
    array (memory-mapped), a single PNG image, or a folder of .tif/.tiff/.png slices (natural name order).
    Anything that cannot be read completely is refused with :class:`~voxcodec.errors.InputError`.

    ``voxel_size`` is the (z, y, x) size of a voxel in ``voxel_unit`` (``"nanometer"``, ``"micrometer"``, ...)
    as the input's metadata declares it: ``None`` when it declares none (.npy, PNG), otherwise a tuple
    whose unknown entries are None (a folder of TIFF slices tells y and x, not z). See
    :mod:`voxcodec.storage.voxel_size` for the rules.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        self._close = None
        self._label = self.path.name or str(self.path)
        self.voxel_size: tuple | None = None
        self.voxel_unit: str | None = None
        try:
            if self.path.is_dir():
                self._init_folder()
            else:
                suffix = self.path.suffix.lower()
                if suffix not in (".npy", ".png", *TIFF_SUFFIXES):
                    raise InputError(f"{self._label}: cannot read a {suffix or 'suffix-less'} file: give a TIFF "
                                     "stack (.tif, .tiff), a .npy array, a PNG image or a folder of slice images")
                if self.path.stat().st_size == 0:
                    raise InputError(f"{self._label}: the file is empty (0 bytes){_RECOPY}")
                if suffix == ".npy":
                    self._init_npy()
                elif suffix == ".png":
                    im = read_image(self.path)
                    self._set(im.shape, im.dtype)
                    self._read = lambda a, b: np.array(im[None][a:b])
                else:
                    tif = _TiffStack(self.path, self._label)
                    self._close = tif.close
                    self._set(tif.shape, tif.dtype)
                    self.voxel_size, self.voxel_unit = tif.voxel_size, tif.voxel_unit
                    self._read = tif.read
        except InputError:
            self.close()
            raise
        except FileNotFoundError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise InputError(f"{self._label}: cannot read it ({_why(exc)})") from exc

    def _set(self, shape, dtype):
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            shape = (1, *shape)
        if len(shape) != 3:
            raise InputError(f"{self._label}: expected a 3-D (z, y, x) volume, got shape {shape}; "
                             "multi-channel or time series volumes are not supported")
        if min(shape) == 0:
            raise InputError(f"{self._label}: the volume is empty (shape {shape})")
        self.shape, self.dtype = shape, np.dtype(dtype)

    # -- .npy ------------------------------------------------------------------------------------

    def _init_npy(self):
        name = self._label
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            magic = f.read(6)
            if magic != _NPY_MAGIC:
                what = ("is a .npz archive (zip), not a .npy array" if magic.startswith(b"PK") else
                        "is not a NumPy .npy array (it lacks the .npy header)")
                raise InputError(f"{name}: the file {what}; save the array with numpy.save('volume.npy', array)")
            f.seek(0)
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except Exception as exc:
                raise InputError(f"{name}: the .npy header is damaged ({_why(exc)}){_RECOPY}") from None
            start = f.tell()
        if dtype.hasobject:
            raise InputError(f"{name}: holds Python objects (dtype {dtype}), which can only be loaded with pickle; "
                             "save a numeric array (uint8 or uint16)")
        shape = tuple(int(s) for s in shape)
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size - start < need:
            if len(shape) >= 3 and not fortran and shape[0] > 0:
                whole = (size - start) // (need // shape[0])
                raise InputError(f"{name}: the file is cut short: it declares {_slices(shape[0])} "
                                 f"({_dims(shape)} {dtype}) but only {whole} are complete{_RECOPY}")
            raise InputError(f"{name}: the file is cut short: it declares a {_dims(shape)} {dtype} array of "
                             f"{need} bytes but holds only {size - start}{_RECOPY}")
        hint = f"numpy.save('ch0.npy', numpy.load('{name}', mmap_mode='r')" + "{})"
        # (y, x, c): a last axis of 1-4 where y and x are far larger is a channel axis, not x
        image_yxc = len(shape) == 3 and shape[-1] <= 4 and shape[-1] * 4 <= min(shape[:2])
        if len(shape) == 4 and shape[-1] == 1:
            pick = (slice(None), slice(None), slice(None), 0)
        elif image_yxc and shape[-1] == 1:
            pick = (slice(None), slice(None), 0)
        elif len(shape) == 4 and shape[-1] > 1:
            raise InputError(f"{name}: shape {shape} looks like a (z, y, x, channel) volume with {shape[-1]} "
                             f"channels; voxcodec codes one grey channel: select one, e.g. "
                             f"{hint.format('[..., 0]')}")
        elif image_yxc:
            raise InputError(f"{name}: shape {shape} looks like a (y, x, channel) image with {shape[-1]} "
                             f"channel(s), not a (z, y, x) volume; voxcodec codes one grey channel: select one, "
                             f"e.g. {hint.format('[..., 0]')}")
        elif len(shape) in (2, 3):
            pick = None
        else:
            raise InputError(f"{name}: holds a {len(shape)}-D array of shape {shape}; voxcodec reads a 3-D "
                             "(z, y, x) volume or a 2-D image: save one, e.g. " + hint.format(_index_expr(0, 2)))
        if need == 0:
            raise InputError(f"{name}: the array is empty (shape {shape})")
        arr = np.load(self.path, mmap_mode="r")
        if pick is not None:
            arr = arr[pick]
        if arr.ndim == 2:
            arr = arr[None]
        self._arr = arr
        native = arr.dtype.newbyteorder("=") if arr.dtype.byteorder not in "=|" else arr.dtype
        self._set(arr.shape, native)
        self._close = self._drop_npy
        self._read = lambda a, b: np.ascontiguousarray(self._arr[a:b], dtype=self.dtype)

    def _drop_npy(self):
        self._arr = None

    # -- folders of slices -----------------------------------------------------------------------

    def _init_folder(self):
        files = sorted((f for f in self.path.iterdir()
                        if f.suffix.lower() in SLICE_SUFFIXES and not f.name.startswith(".") and f.is_file()),
                       key=lambda f: natural_key(f.name))
        if not files:
            raise InputError(f"{self._label}: the folder holds no slice images (.tif, .tiff, .png)")
        self._files = files
        first = read_image(files[0], self._slice_label(files[0]))
        self._set((len(files), *first.shape), first.dtype)
        # PNG headers are 33 bytes: check every slice's size, depth and colour now rather than hours into a run
        for f in files[1:]:
            if f.suffix.lower() == ".png":
                head = _png_header(f, self._slice_label(f))
                if head is not None:
                    self._check_slice(f, *head)

        if files[0].suffix.lower() in TIFF_SUFFIXES:  # y and x of the first slice; the spacing of slices is unknown
            tif = _TiffStack(files[0], self._slice_label(files[0]))
            try:
                if tif.voxel_size is not None and tif.voxel_size[1:] != (None, None):
                    self.voxel_size, self.voxel_unit = (None, *tif.voxel_size[1:]), tif.voxel_unit
            finally:
                tif.close()

        def read(a, b):
            out = np.empty((b - a, *self.shape[1:]), self.dtype)
            for i in range(a, b):
                f = self._files[i]
                im = read_image(f, self._slice_label(f))
                self._check_slice(f, im.shape, im.dtype)
                out[i - a] = im
            return out
        self._read = read

    def _slice_label(self, f: Path) -> str:
        return f"{self._label}/{f.name}"

    def _check_slice(self, f: Path, shape, dtype):
        if tuple(shape) != self.shape[1:] or np.dtype(dtype) != self.dtype:
            first = self._files[0].name
            raise InputError(f"{self._slice_label(f)}: the slice is {_dims(shape)} {np.dtype(dtype)} but the first "
                             f"slice ({first}) is {_dims(self.shape[1:])} {self.dtype}; all slices of a folder "
                             "must have one size and type")

    # -- reading ---------------------------------------------------------------------------------

    def read(self, z0: int, z1: int) -> np.ndarray:
        a, b = max(int(z0), 0), min(int(z1), self.shape[0])
        if b <= a:
            return np.empty((0, *self.shape[1:]), self.dtype)
        try:
            return self._read(a, b)
        except (InputError, FileNotFoundError):
            raise
        except Exception as exc:
            raise InputError(f"{self._label}: cannot read slices {a}:{b} ({_why(exc)})") from exc

    def iter_chunks(self, depth: int):
        for z in range(0, self.shape[0], depth):
            yield self.read(z, z + depth)

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def close(self):
        if self._close:
            self._close()
            self._close = None

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


# -- single images -------------------------------------------------------------------------------

def _png_header(path: Path, label: str):
    """(shape, dtype) from a PNG's IHDR; refuses non-PNG files and colour images. None if unusual."""
    with open(path, "rb") as f:
        head = f.read(33)
    if not head:
        raise InputError(f"{label}: the file is empty (0 bytes){_RECOPY}")
    if not head.startswith(_PNG_MAGIC):
        raise InputError(f"{label}: is not a PNG file (it lacks the PNG signature)")
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise InputError(f"{label}: the PNG file is cut short or damaged (no image header){_RECOPY}")
    w, h, depth, colour = struct.unpack(">IIBB", head[16:26])
    if colour != 0:
        _refuse_png_colour(label, {2: "RGB", 3: "colour palette", 4: "grey + alpha", 6: "RGBA"}.get(colour, "colour"))
    if depth not in (1, 2, 4, 8, 16):
        return None
    return (h, w), np.dtype(np.uint16 if depth == 16 else np.uint8)


def _refuse_png_colour(label, kind):
    name = label.rsplit("/", 1)[-1]
    if "/" in label:  # a slice of a folder
        what, out = "one channel of every slice into a new folder", f"grey/{name}"
    else:
        what, out = "one channel", "ch0.png"
    raise InputError(f"{label}: the image is {kind}; voxcodec codes one grey channel: save {what}, e.g. "
                     f"imagecodecs.imwrite('{out}', imagecodecs.imread('{name}')[..., 0])")


def read_image(path, label: str | None = None) -> np.ndarray:
    """One 2-D slice image (TIFF or PNG). Refuses (InputError) an image that is not one complete grey slice."""
    path = Path(path)
    label = label or path.name
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".png":
        try:
            import imagecodecs
        except ImportError:
            raise InputError("reading PNG slices needs imagecodecs: pip install imagecodecs") from None
        _png_header(path, label)
        try:
            im = imagecodecs.png_decode(path.read_bytes())
        except Exception as exc:
            raise InputError(f"{label}: cannot decode the PNG image ({_why(exc)}); the file is damaged or cut "
                             f"short{_RECOPY}") from None
        if im.ndim != 2:
            _refuse_png_colour(label, f"{im.shape[-1]}-channel" if im.ndim == 3 else f"of shape {im.shape}")
        return im
    if suffix not in TIFF_SUFFIXES:
        raise InputError(f"{label}: cannot read a {suffix or 'suffix-less'} file as a slice: "
                         "give .tif, .tiff or .png")
    try:
        tif = _TiffStack(path, label)
    except (InputError, FileNotFoundError):
        raise
    except Exception as exc:
        raise InputError(f"{label}: cannot read it ({_why(exc)})") from None
    try:
        if tif.shape[0] != 1:
            raise InputError(f"{label}: holds {_slices(tif.shape[0])}; a slice image must hold one 2-D image")
        return tif.read(0, 1)[0]
    finally:
        tif.close()


class TiffStackWriter:
    """Append (n, y, x) chunks to a TIFF stack, one page per slice (BigTIFF above 2 GB).

    With a ``voxel_size`` (z, y, x) and its ``unit`` the file carries them as ImageJ writes them
    (XResolution/YResolution = 1 / size, ImageJ ``spacing`` and ``unit``), so that Fiji, tifffile and
    :class:`VolumeReader` read them back; ``notes`` says what of it a TIFF could not hold."""

    def __init__(self, path, shape, dtype, voxel_size=None, unit=None):
        import tifffile

        big = int(np.prod(shape)) * np.dtype(dtype).itemsize > 2**31 - 2**25
        self._first, self._every, self.notes = tiff_calibration(shape, dtype, voxel_size, unit)
        self._tw = tifffile.TiffWriter(path, bigtiff=big)

    def write(self, chunk: np.ndarray):
        for s in chunk:
            self._tw.write(s, contiguous=True, **{"metadata": None, **self._every, **self._first})
            self._first = {}

    def close(self):
        self._tw.close()


def write_volume(path, array: np.ndarray, voxel_size=None, unit=None):
    """Write a whole array as .npy or a TIFF stack, chosen by the file name (a TIFF stack with the voxel
    size, if given: see :class:`TiffStackWriter`; a .npy file holds none)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        np.save(path, array)
        return
    w = TiffStackWriter(path, array.shape, array.dtype, voxel_size, unit)
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
