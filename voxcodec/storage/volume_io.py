"""Reading and writing volumes slice by slice (TIFF stacks, .npy, folders of slice images).

Readers never load more than the slices asked for, so a volume larger than memory streams through
the encoder with memory bounded by a few blocks.

A reader gives the whole volume or nothing: an input that cannot be read completely and unambiguously
(a file cut short, damaged pages, slices that disagree, several channels, several volumes in one file)
is refused with an :class:`~voxcodec.errors.InputError` whose one-line message names the file, says
what is wrong and what to do. Exceptions of tifffile, numpy or imagecodecs never escape raw.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError

SLICE_SUFFIXES = (".tif", ".tiff", ".png")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf")
_DIGITS = re.compile(r"(\d+)")
_RECOPY = " (was the copy interrupted?)"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"


def natural_key(name: str):
    """Sort key that orders embedded numbers by value: ``s_9.tif`` < ``s_10.tif``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in _DIGITS.split(name)]


def _why(exc: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r"^(<[^>]*>\s*)+", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


def _dims(shape) -> str:
    return "x".join(str(int(s)) for s in shape)


def _index_expr(axis: int, ndim: int) -> str:
    """Indexing that keeps element 0 of ``axis``: ``[..., 0]``, ``[:, 0]``, ``[0]``."""
    if axis == ndim - 1 and ndim > 1:
        return "[..., 0]"
    return "[" + ", ".join([":"] * axis + ["0"]) + "]"


def _slices(n: int) -> str:
    return f"{n} slice" if n == 1 else f"{n} slices"


class VolumeReader:
    """A (z, y, x) volume on disk. ``read(z0, z1)`` returns slices z0:z1 as an array.

    Reads a TIFF stack (.tif, .tiff, .btf: multi-page, ImageJ, OME, BigTIFF, compressed pages), a .npy
    array (memory-mapped), a single PNG image, or a folder of .tif/.tiff/.png slices (natural name order).
    Anything that cannot be read completely is refused with :class:`~voxcodec.errors.InputError`.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no such file or folder: {self.path}")
        self._close = None
        self._label = self.path.name or str(self.path)
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


# -- TIFF ----------------------------------------------------------------------------------------

# tifffile reports damage it works around (pages past the end of the file, a broken IFD chain,
# metadata that does not fit the pages) only on its logger; such a record makes the input refused.
_FATAL_LOG = re.compile(r"offset|corrupt|truncat|incomplet|missing|fail|reshape|series|got \d|subset|"
                        r"could not read|does not match|!=", re.I)


class _TiffLog(logging.Handler):
    """Collects the "tifffile" logger's records of this thread while active (``with``); records that
    tell of damage are kept in ``fatal``, the others are passed on when the block ends."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.fatal: list[str] = []
        self._other: list[logging.LogRecord] = []
        self._thread = threading.get_ident()
        self._logger = logging.getLogger("tifffile")

    def emit(self, record):
        if record.thread != self._thread:
            return
        msg = record.getMessage()
        if record.levelno >= logging.ERROR or _FATAL_LOG.search(msg):
            msg = re.sub(r"<(tifffile\.)?[\w.]+( [^>]*)?>\s*", "", msg)
            self.fatal.append(_why(Exception(re.sub(r"^raised \w+\(['\"](.*)['\"]\)$", r"\1", msg))))
        else:
            self._other.append(record)

    def __enter__(self):
        self._thread = threading.get_ident()
        self._logger.addHandler(self)
        return self

    def __exit__(self, *_):
        self._logger.removeHandler(self)
        other, self._other = self._other, []
        if not self._logger.hasHandlers() and logging.lastResort is not None:
            for rec in other:  # nothing else heard them: print them as logging would have
                if rec.levelno >= logging.lastResort.level:
                    logging.lastResort.handle(rec)

    def check(self, label: str):
        if self.fatal:
            extra = f" (and {len(self.fatal) - 1} more)" if len(self.fatal) > 1 else ""
            raise InputError(f"{label}: the file is damaged or cut short: tifffile reports "
                             f"'{self.fatal[0]}'{extra}{_RECOPY}")


class _TiffStack:
    """A TIFF file read as one (z, y, x) stack of 2-D pages, checked against what the file declares."""

    def __init__(self, path: Path, label: str):
        import tifffile

        self.path, self.label = path, label
        self.size = path.stat().st_size
        if self.size == 0:
            raise InputError(f"{label}: the file is empty (0 bytes){_RECOPY}")
        self._tif = None
        self._mm = None
        log = _TiffLog()
        try:
            with log:
                try:
                    self._tif = tifffile.TiffFile(path)
                except Exception as exc:
                    log.check(label)
                    raise InputError(f"{label}: the file is not a readable TIFF ({_why(exc)})") from None
                self._analyse(self._tif)
        except InputError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            log.check(label)
            raise InputError(f"{label}: cannot read the TIFF structure ({_why(exc)})") from None
        try:
            log.check(label)
        except InputError:
            self.close()
            raise

    # -- what the file holds

    def _refuse(self, what: str):
        raise InputError(f"{self.label}: {what}")

    def _analyse(self, tif):
        name = self.label.rsplit("/", 1)[-1]
        npages = len(tif.pages)  # walks the whole IFD chain (a chain running past the end is logged)
        plist = self._page_by_page(tif, npages)
        if plist is not None:  # tifffile would make one series per page, in time quadratic in their number
            p0 = plist[0]
            self.dtype = np.dtype(p0.dtype)
            self._mm = None
            self._per_page(tif, plist, tuple(p0.shape), 0, "", npages)
            self.shape = (self.nslices, *p0.shape)
            return
        series = tif.series
        if npages == 0 or not series:
            self._refuse("the TIFF file holds no images")
        s0 = series[0]
        kf = s0.keyframe
        if kf.samplesperpixel > 1 or "S" in s0.axes:
            self._refuse_samples(s0, name)
        if s0.is_multifile:
            self._refuse(f"the volume is spread over several OME-TIFF files; join it into one file first, e.g. "
                         f"tifffile.imwrite('volume.tif', tifffile.imread('{name}'))")
        if getattr(kf, "imagedepth", 1) > 1:
            self._refuse("its pages are 3-D tiles (SGI image depth), which voxcodec does not read; save the volume "
                         f"as a stack of 2-D pages: tifffile.imwrite('stack.tif', tifffile.imread('{name}'))")

        claims = []  # (count, where it is declared)
        if len(series) > 1:
            same = all(s.ndim == 2 and len(s) == 1 and s.shape == s0.shape and s.dtype == s0.dtype
                       and s.keyframe.samplesperpixel == 1 for s in series)
            if not same:
                desc = ", ".join(f"series {i}: {_dims(s.shape)} {s.dtype}" for i, s in enumerate(series[:3]))
                more = f", ... ({len(series)} in all)" if len(series) > 3 else ""
                self._refuse(f"holds {len(series)} separate images ({desc}{more}); voxcodec reads one "
                             f"(z, y, x) volume per file: keep one, e.g. tifffile.imwrite('s0.tif', "
                             f"tifffile.imread('{name}', series=0)), or join slices of one size with numpy.concatenate")
            # written page by page: one series per page; the pages are the slices
            plist = [s[0] for s in series]
            nslices, yx = len(series), tuple(s0.shape)
        else:
            nslices, yx = self._axes(tif, s0, name)
            kind = {"shaped": "tifffile", "imagej": "ImageJ", "ome": "OME"}.get(s0.kind)
            claims.append((nslices, f"its {kind} metadata" if kind else ""))
            try:
                plist = list(s0)
            except IndexError:
                plist = [s0[0]]
        claims += self._declared(tif, len(series))
        declared, where = max(claims, key=lambda c: c[0]) if claims else (len(plist), "")

        self.dtype = np.dtype(s0.dtype)
        self._pages = None
        if nslices > 1 and len(plist) == 1 and nslices != npages and s0.dataoffset is not None:
            self._contiguous(tif, s0, nslices, yx, declared, where)
        else:
            self._per_page(tif, plist, yx, declared, where, npages)
        self.shape = (self.nslices, *yx)

    @staticmethod
    def _page_by_page(tif, npages):
        """The pages of a stack written page by page by tifffile (each page holds its own 2-D "shape"
        description), or None for any other layout."""
        if npages < 2 or not tif.is_shaped:
            return None
        plist = []
        for i in range(npages):
            p = tif.pages.get(i)
            desc = p.shaped_description
            if desc is None or p.samplesperpixel != 1 or len(p.shape) != 2:
                return None
            try:
                shape = json.loads(desc).get("shape")
            except (ValueError, AttributeError):
                return None
            if not isinstance(shape, list) or shape != list(p.shape):
                return None
            plist.append(p)
        return plist

    def _refuse_samples(self, s, name):
        kf = s.keyframe
        spp = kf.samplesperpixel
        kind = {2: "RGB", 6: "YCbCr", 5: "CMYK", 3: "palette"}.get(int(kf.photometric), "multi-sample")
        axis = s.axes.find("S")
        pick = _index_expr(axis if axis >= 0 else s.ndim - 1, s.ndim)
        extra = ""
        if kf.planarconfig == 2 and spp in (3, 4) and s.ndim == 3:
            extra = (f"; if these are {spp} slices of a volume written by tifffile, write them again with "
                     "photometric='minisblack'")
        self._refuse(f"the image has {spp} samples per pixel ({kind}); voxcodec codes one grey channel: select one, "
                     f"e.g. tifffile.imwrite('ch0.tif', tifffile.imread('{name}'){pick}){extra}")

    def _axes(self, tif, s, name):
        """Slices and (y, x) of a single series; refuse channels and more than one stacking axis."""
        shape, axes = tuple(s.shape), s.axes
        if len(shape) < 2 or axes[-2:] != "YX":
            self._refuse(f"unusual image layout (axes {axes}, shape {shape}); save it as a (z, y, x) stack: "
                         f"tifffile.imwrite('stack.tif', tifffile.imread('{name}'))")
        lead = [(i, a, n) for i, (a, n) in enumerate(zip(axes[:-2], shape[:-2])) if n > 1]
        chan = [c for c in lead if c[1] == "C"]
        if chan:
            ij = tif.imagej_metadata or {}
            # tifffile writes a plain 3-D array with imagej=True as "channels" in grayscale mode: a stack
            plain_ij = s.kind == "imagej" and len(lead) == 1 and str(ij.get("mode", "grayscale")) == "grayscale"
            if not plain_ij:
                i, _, n = chan[0]
                self._refuse(f"the image has {n} channels (axes {axes}, shape {_dims(shape)}); voxcodec codes one "
                             f"grey channel: select one, e.g. tifffile.imwrite('ch0.tif', "
                             f"tifffile.imread('{name}'){_index_expr(i, len(shape))})")
        if len(lead) > 1:
            i = lead[0][0]
            self._refuse(f"holds a {len(lead) + 2}-D image (axes {axes}, shape {_dims(shape)}); voxcodec codes one "
                         f"(z, y, x) volume: save one, e.g. tifffile.imwrite('v0.tif', "
                         f"tifffile.imread('{name}'){_index_expr(i, len(shape))})")
        return (lead[0][2] if lead else 1), tuple(shape[-2:])

    def _declared(self, tif, nseries):
        """Slice counts the file's metadata declares: ImageJ images=, tifffile shape, OME SizeZ/C/T."""
        out = []
        try:
            if tif.is_imagej:
                images = (tif.imagej_metadata or {}).get("images")
                if images:
                    out.append((int(images), "its ImageJ metadata (images=)"))
            if tif.is_shaped and nseries == 1:
                for meta in tif.shaped_metadata or ():
                    shape = meta.get("shape")
                    if shape and len(shape) >= 2:
                        out.append((int(np.prod(shape[:-2], dtype=np.int64)), "its tifffile metadata (shape)"))
            if tif.is_ome:
                out += self._ome_claim(tif.ome_metadata)
        except Exception:  # unparsable metadata: the page checks and the log still apply
            pass
        return out

    @staticmethod
    def _ome_claim(xml):
        if not xml:
            return []
        m = re.search(r"<(?:\w+:)?Pixels\b[^>]*>", xml)
        if not m:
            return []
        sizes = dict(re.findall(r'\bSize([ZCT])\s*=\s*"(\d+)"', m.group(0)))
        n = 1
        for k in "ZCT":
            n *= int(sizes.get(k, 1))
        return [(n, "its OME metadata (SizeZ x SizeC x SizeT)")]

    def _cut_short(self, declared, complete, where):
        what = f"it declares {_slices(declared)} in {where}" if where else f"it has {declared} pages"
        self._refuse(f"the file is cut short: {what} but only {complete} {'is' if complete == 1 else 'are'} "
                     f"complete{_RECOPY}")

    def _complete_pages(self, tif, npages, yx) -> int:
        """How many leading pages of the file are (y, x) slices whose data lies inside the file."""
        n = 0
        try:
            for i in range(npages):
                p = tif.pages.get(i)
                ends = [o + c for o, c in zip(p.dataoffsets, p.databytecounts)]
                if tuple(p.shape) != yx or not ends or max(ends) > self.size:
                    break
                n += 1
        except Exception:
            pass
        return n

    def _chain_broken(self, tif) -> bool:
        """True when the last page found points to a further page (the IFD chain runs on past what was read)."""
        try:
            pos = tif.pages.next_page_offset
            if pos is None:
                return False
            fh = tif.filehandle
            fh.seek(pos)
            raw = fh.read(tif.tiff.offsetsize)
            return len(raw) < tif.tiff.offsetsize or struct.unpack(tif.tiff.offsetformat, raw)[0] != 0
        except Exception:
            return True

    def _contiguous(self, tif, s, nslices, yx, declared, where):
        """One page followed by the data of all slices (ImageJ hyperstacks > 4 GB): memory-map it."""
        kf = s.keyframe
        if tuple(kf.shape) != yx:
            self._refuse(f"unusual image layout (first page {_dims(kf.shape)}, volume {_dims((nslices, *yx))})")
        per = int(np.prod(yx)) * self.dtype.itemsize
        complete = max(0, (self.size - s.dataoffset) // per)
        if complete < max(nslices, declared):
            self._cut_short(max(nslices, declared), min(complete, nslices), where)
        dt = self.dtype.newbyteorder(tif.byteorder) if self.dtype.itemsize > 1 else self.dtype
        self._mm = np.memmap(self.path, dtype=dt, mode="r", offset=s.dataoffset, shape=(nslices, *yx))
        self.nslices = nslices

    def _per_page(self, tif, plist, yx, declared, where, npages):
        """Check every page: present, 2-D of the volume's size and type, its data inside the file."""
        import tifffile

        keep, complete, bad = [], 0, None
        for i, p in enumerate(plist):
            if p is None:
                bad = bad or f"page of slice {i} is missing"
                continue
            virtual = getattr(p, "is_virtual", False)
            if not virtual and not isinstance(p, tifffile.TiffPage):
                p = p.aspage()
            if p.samplesperpixel != 1 or tuple(p.shape) != yx or np.dtype(p.dtype) != self.dtype:
                self._refuse(f"page {p.index} is {_dims(p.shape)} {p.dtype} with {p.samplesperpixel} sample(s) per "
                             f"pixel but the first is {_dims(yx)} {self.dtype}; all slices of a stack must have one "
                             "size and type")
            ends = [o + c for o, c in zip(p.dataoffsets, p.databytecounts)]
            inside = bool(ends) and max(ends) <= self.size
            if inside and p.compression == 1 and p.bitspersample % 8 == 0 and sum(p.databytecounts) < p.nbytes:
                inside = False
            if inside and bad is None:
                complete += 1
            elif bad is None:
                bad = f"data of slice {i} lies past the end of the file"
            keep.append(p if virtual else p.index)
        found = len(plist)
        if bad is not None or declared > found:
            if declared > found and npages > found:  # the series fell apart: count the file's complete pages
                complete = self._complete_pages(tif, npages, yx)
            first = plist[0]
            if complete <= 1 and found == 1 and first is not None and first.is_contiguous:
                # the first page's data runs on into the following slices (the rest of the IFDs were lost)
                per = int(np.prod(yx)) * self.dtype.itemsize
                complete = int(min(declared, (self.size - first.dataoffsets[0]) // per))
            self._cut_short(max(declared, found), complete, where)
        if not any(not isinstance(k, int) for k in keep) and self._chain_broken(tif):
            self._refuse(f"the file is cut short: page {found + 1} and any after it lie past the end of the file, "
                         f"only {_slices(complete)} could be read{_RECOPY}")
        if npages > found:  # pages outside the volume (thumbnails and other reduced images aside)
            used = {k for k in keep if isinstance(k, int)}
            extra = [i for i in range(npages) if i not in used and not tif.pages.get(i).is_reduced]
            if extra:
                where = f" described by {where}" if where else ""
                name = self.label.rsplit("/", 1)[-1]
                self._refuse(f"holds {npages} pages but only {found} belong to the volume{where}; re-save the volume "
                             f"you want, e.g. tifffile.imwrite('stack.tif', tifffile.imread('{name}'))")
        self._pages = keep
        self.nslices = found

    # -- reading

    def read(self, a: int, b: int) -> np.ndarray:
        if self._mm is not None:
            return np.array(self._mm[a:b], dtype=self.dtype)
        out = np.empty((b - a, *self.shape[1:]), self.dtype)
        log = _TiffLog()
        with log:
            try:
                for i in range(a, b):
                    p = self._pages[i]
                    page = self._tif.pages.get(p) if isinstance(p, int) else p
                    out[i - a] = page.asarray()
            except Exception as exc:
                log.check(self.label)
                raise InputError(f"{self.label}: cannot read slice {i} ({_why(exc)}){_RECOPY}") from None
        log.check(self.label)
        return out

    def close(self):
        self._mm = None
        if self._tif is not None:
            self._tif.close()
            self._tif = None


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
