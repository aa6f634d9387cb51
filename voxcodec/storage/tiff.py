"""TIFF stacks read as one (z, y, x) volume of 2-D pages, checked against what the file declares
(series shape, ImageJ ``images=``, OME SizeZ, tifffile's shaped metadata) and refused with an
:class:`~voxcodec.errors.InputError` when the pages found fall short of it, lie past the end of
the file, disagree with each other or hold several channels. The voxel size its metadata declares is
read too (:mod:`.voxel_size`)."""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._messages import RECOPY as _RECOPY, dims as _dims, index_expr as _index_expr, slices as _slices, why as _why
from .voxel_size import from_tiff as voxel_size_from_tiff

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


class TiffStack:
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
        #: (z, y, x) size of a voxel (None entries where unknown) or None, and its unit: see voxel_size.py
        self.voxel_size, self.voxel_unit = self._voxel_size()

    def _voxel_size(self):
        with _TiffLog():  # what tifffile says about metadata it cannot parse does not refuse the volume
            return voxel_size_from_tiff(self._tif)

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
