"""Volumes to convert, opened lazily: zarr (v2, v3, OME-Zarr groups), N5, HDF5, MRC, TIFF stacks, .npy
arrays and folders of slices, on a local disk or behind an fsspec URL.

:func:`open_source` gives a :class:`Source`: ``shape`` and ``dtype`` (z, y, x; native byte order),
``voxel_size`` (z, y, x) and ``unit`` where the file says, and ``read(box)`` for any region. A source is
a small picklable description: each process that reads it (a dask worker) opens the file itself the
first time, so a conversion never ships voxels between processes, and file handles (h5py, memory
maps) never cross a fork.

Where each kind finds its voxel size:

- zarr: OME-NGFF multiscales (0.4 or 0.5) of the group (level 0 is converted), or the
  ``voxcodec_edge`` attributes voxcodec-edge writes;
- N5: ``pixelResolution`` (``{"unit": ..., "dimensions": [x, y, z]}``) or ``resolution`` (x, y, z) with
  ``units``, on the dataset or its parent group;
- HDF5: ``element_size_um`` (z, y, x, micrometers: ImageJ, ilastik) or ``resolution`` (z, y, x,
  nanometers: CREMI);
- MRC: the header's voxel size (Å), converted to nanometers;
- TIFF stacks, .npy and folders: what :class:`~voxcodec.storage.volume_io.VolumeReader` reports
  (``voxel_size`` and ``voxel_unit``), where it does.
"""

from __future__ import annotations

import abc
import os
import re
import shutil
import tempfile
import uuid
from collections import OrderedDict

import numpy as np

from ..core.container import DTYPES, SIGNED
from ..errors import InputError, UnsupportedError
from . import n5
from ._messages import dims as _dims, why as _why
from .ome import common_unit, level0, find_multiscales, normalize_unit

_H5 = re.compile(r"^(?P<file>.+?\.(?:h5|hdf5|hdf|he5|nxs))(?::(?P<dataset>/?[^:]*))?$", re.IGNORECASE)
MRC_SUFFIXES = (".mrc", ".mrcs", ".rec", ".st", ".ali", ".map")
VOLUME_SUFFIXES = (".tif", ".tiff", ".btf", ".npy")

#: sources opened in this process, by token: a worker that codes many chunks of one source opens it once
#: (a task arrives as a fresh unpickled copy of the source, without its handle)
_HANDLES: OrderedDict = OrderedDict()
_MAX_HANDLES = 8


def split_url(src: str) -> tuple[str | None, str]:
    """(protocol, path) of ``src``: protocol None for a local path (``file://`` URLs included)."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", str(src))
    if not m:
        return None, os.path.expanduser(str(src))
    if m.group(1).lower() in ("file", "local"):
        return None, m.group(2)
    return m.group(1).lower(), str(src)


def _fs(url: str, storage_options: dict | None):
    """An fsspec file system and the path inside it."""
    import fsspec

    return fsspec.core.url_to_fs(url, **(storage_options or {}))


class Source(abc.ABC):
    """A (z, y, x) volume to convert. Subclasses set the fields in ``__init__`` and open the file in
    ``_open`` (once per process); ``_read(handle, box)`` returns a region in stored order."""

    kind = "volume"

    def __init__(self, location: str, label: str | None = None):
        self.location = location
        self.label = label or location
        self.shape: tuple[int, int, int] = (0, 0, 0)
        self.dtype = np.dtype("u1")
        self.voxel_size: tuple[float, float, float] | None = None
        self.unit: str | None = None
        self.notes: list[str] = []  # what was picked or assumed, for the command to tell
        self._lead: tuple = ()      # leading axes of size 1 (OME t, c) indexed away
        self._flat = False          # a 2-D array read as one slice
        self._token = uuid.uuid4().hex  # names this source in every process's handle cache
        self._h = None
        self._pid = None

    # -- what every source shares ------------------------------------------------------------------
    def _set_shape(self, shape, dtype, names=None):
        """Take a stored shape: 3-D as it is, 2-D as one slice, more axes only when the extra leading
        ones have size 1 (a time point, a channel)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) == 2:
            self._flat, zyx = True, (1, *shape)
        elif len(shape) >= 3:
            lead = shape[:-3]
            if any(n != 1 for n in lead):
                names = names or [f"axis {i}" for i in range(len(shape))]
                extra = ", ".join(f"{names[i]} ({n})" for i, n in enumerate(lead) if n != 1)
                raise InputError(f"{self.label}: shape {_dims(shape)} has more than the z, y and x axes: {extra}; "
                                 "voxcodec converts one 3-D volume: write one channel / time point as its own array")
            self._lead, zyx = (0,) * len(lead), shape[-3:]
        else:
            raise InputError(f"{self.label}: expected a 3-D (z, y, x) volume, got shape {shape}")
        if min(zyx) == 0:
            raise InputError(f"{self.label}: the volume is empty (shape {_dims(zyx)})")
        self.shape, self.dtype = zyx, np.dtype(dtype).newbyteorder("=")

    def set_voxel_size(self, sizes, unit, where: str):
        if sizes is None:
            return
        sizes = tuple(float(s) for s in sizes)
        if len(sizes) != 3 or not all(np.isfinite(s) and s > 0 for s in sizes):
            self.notes.append(f"ignored the voxel size {list(sizes)} in {where} (not three positive numbers)")
            return
        self.voxel_size, self.unit = sizes, normalize_unit(unit, f"{self.label}: the unit in {where}")

    def _handle(self):
        pid = os.getpid()
        if self._h is None or self._pid != pid:
            cached = _HANDLES.get(self._token)
            if cached is not None and cached[0] == pid:
                self._h = cached[1]
                _HANDLES.move_to_end(self._token)
            else:
                self._h = self._open()
                _HANDLES[self._token] = (pid, self._h)
                while len(_HANDLES) > _MAX_HANDLES:
                    _, (owner, old) = _HANDLES.popitem(last=False)
                    if owner == pid:
                        _close_handle(old)
            self._pid = pid
        return self._h

    @abc.abstractmethod
    def _open(self):
        """The open handle of the source (each format's reader)."""

    def _read(self, handle, box) -> np.ndarray:
        return handle[tuple(slice(a, b) for a, b in box)]

    def read(self, box) -> np.ndarray:
        """The voxels of ``box`` (``(start, stop)`` for z, y, x; clipped to the volume) as a contiguous
        native-order array. A read that fails is an :class:`InputError` naming the source and region."""
        box = [(max(0, int(a)), min(int(b), n)) for (a, b), n in zip(box, self.shape)]
        stored = [(0, 1) for _ in self._lead] + (box[1:] if self._flat else box)
        try:
            out = np.asarray(self._read(self._handle(), stored))
        except (InputError, FileNotFoundError):
            raise
        except Exception as exc:
            where = ", ".join(f"{a}:{b}" for a, b in box)
            raise InputError(f"{self.label}: cannot read the region [{where}] ({_why(exc)})") from exc
        out = out.reshape([b - a for a, b in box])
        return np.ascontiguousarray(out, dtype=self.dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        if any(not isinstance(k, slice) or k.step not in (None, 1) for k in key):
            raise TypeError("a Source supports contiguous slices only")
        return self.read([k.indices(n)[:2] for k, n in zip(key, self.shape)])

    @property
    def ndim(self):
        return 3

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def close(self):
        h, self._h = self._h, None
        _HANDLES.pop(self._token, None)
        if h is not None:
            _close_handle(h)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h"], state["_pid"] = None, None
        return state

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def describe(self) -> str:
        vs = (f", voxel {'x'.join(f'{s:g}' for s in self.voxel_size)} {self.unit or '(no unit)'}"
              if self.voxel_size else ", voxel size unknown")
        return f"{self.kind} {self.label}: {_dims(self.shape)} {self.dtype}{vs}"


# -- zarr ---------------------------------------------------------------------------------------------------
class ZarrSource(Source):
    """A zarr v2 or v3 array; a group holding one array, or an OME-Zarr image (its level 0)."""

    kind = "zarr"

    def __init__(self, src: str, storage_options: dict | None = None):
        super().__init__(src)
        import zarr

        self.storage_options = storage_options
        proto, path = split_url(src)
        self.root = path if proto is None else src
        self.array_path = ""
        try:
            node = zarr.open(store=self.root, mode="r", storage_options=storage_options if proto else None)
        except Exception as exc:
            raise InputError(f"{src}: cannot open it as a zarr array or group ({_why(exc)})") from exc
        names = None
        if isinstance(node, zarr.Group):
            ms = find_multiscales(dict(node.attrs))
            if ms is not None:
                info = level0(ms, src)
                self.array_path = info["path"]
                names = info["names"]
                try:
                    arr = node[self.array_path]
                except KeyError:
                    raise InputError(f"{src}: the multiscales metadata names level 0 {self.array_path!r}, which the "
                                     "group does not hold") from None
                self.notes.append(f"OME-Zarr image: converting level 0 ({self.array_path!r})")
                if info["voxel_size"] and len(info["voxel_size"]) == 3:
                    self.set_voxel_size(info["voxel_size"], info["unit"], "the multiscales metadata")
            else:
                arrays = sorted(name for name, _ in node.arrays())
                if len(arrays) != 1:
                    listing = ", ".join(arrays[:8]) or "none"
                    raise InputError(f"{src}: is a zarr group holding {len(arrays)} arrays ({listing}) and no "
                                     f"OME-Zarr multiscales metadata: give one array, e.g. {src.rstrip('/')}/"
                                     f"{arrays[0] if arrays else 'ARRAY'}")
                self.array_path = arrays[0]
                arr = node[self.array_path]
                self.notes.append(f"zarr group: converting its one array {self.array_path!r}")
        else:
            arr = node
        if not isinstance(arr, zarr.Array):
            raise InputError(f"{src}: {self.array_path!r} is a group, not an array")
        self.label = src.rstrip("/") + (f"/{self.array_path}" if self.array_path else "")
        self._set_shape(arr.shape, arr.dtype, names)
        if names is not None:
            self._check_space_axes(names)
        edge = arr.attrs.get("voxcodec_edge")
        if self.voxel_size is None and isinstance(edge, dict) and edge.get("voxel_size"):
            self.set_voxel_size(edge["voxel_size"], edge.get("voxel_unit"), "the voxcodec_edge attributes")
        self._h, self._pid = arr, os.getpid()

    def _check_space_axes(self, names):
        if len(names) >= 3 and [n.lower() for n in names[-3:]] != ["z", "y", "x"]:
            self.notes.append(f"the last three axes are named {names[-3:]}; they are converted as z, y, x")

    def _open(self):
        import zarr

        proto, _ = split_url(self.location)
        return zarr.open_array(store=self.root, path=self.array_path, mode="r",
                               storage_options=self.storage_options if proto else None)


# -- N5 -----------------------------------------------------------------------------------------------------
class N5Source(Source):
    """An N5 dataset (give its folder: ``container.n5/volume``); a multiscale group's ``s0``."""

    kind = "n5"

    def __init__(self, src: str, storage_options: dict | None = None):
        super().__init__(src)
        self.storage_options = storage_options
        self._s0 = False
        self.path = self._dataset_path(src)
        ds = self._open()
        self.label = ds.label
        self._set_shape(ds.shape, ds.dtype)
        for attrs, where in ((ds.attrs, "the dataset's attributes.json"),
                             (ds.files.json(n5.join(self.path.rsplit("/", 1)[0], "attributes.json")) or {},
                              "the parent group's attributes.json")):
            sizes, unit = _n5_resolution(attrs)
            if sizes is not None:
                self.set_voxel_size(sizes, unit, where)
                break
        self._h, self._pid = ds, os.getpid()

    def _files(self):
        proto, path = split_url(self.location)
        if proto is None:
            return n5.Files(), path.rstrip("/")
        fs, inner = _fs(self.location, self.storage_options)
        return n5.Files(fs), inner.rstrip("/")

    def _dataset_path(self, src):
        files, path = self._files()
        attrs = files.json(n5.join(path, "attributes.json"))
        if attrs is None:
            raise InputError(f"{src}: has no attributes.json: give an N5 dataset's folder, e.g. container.n5/volume")
        if n5.is_dataset(attrs):
            return path
        s0 = files.json(n5.join(path, "s0", "attributes.json"))
        if n5.is_dataset(s0):
            self.notes.append("N5 multiscale group: converting its level s0")
            self._s0 = True
            return n5.join(path, "s0")
        raise InputError(f"{src}: is an N5 group, not a dataset: give a dataset's folder, e.g. "
                         f"{src.rstrip('/')}/VOLUME")

    def _open(self):
        files, _ = self._files()
        return n5.N5Dataset(self.path, files, label=self.location.rstrip("/") + ("/s0" if self._s0 else ""))

    def _read(self, handle, box):
        return handle.read(box)


def _n5_resolution(attrs: dict):
    """(sizes z, y, x; unit) from N5 attributes (x, y, z order in the file), or (None, None)."""
    pr = attrs.get("pixelResolution")
    if isinstance(pr, dict) and isinstance(pr.get("dimensions"), list) and len(pr["dimensions"]) == 3:
        return tuple(reversed(pr["dimensions"])), pr.get("unit")
    res = attrs.get("resolution")
    if isinstance(res, list) and len(res) == 3:
        units = attrs.get("units")
        if isinstance(units, list) and len(units) == 3:
            return common_unit(tuple(reversed(res)), list(reversed(units)))
        return tuple(reversed(res)), units if isinstance(units, str) else None
    return None, None


# -- HDF5 ---------------------------------------------------------------------------------------------------
class HDF5Source(Source):
    """A dataset in an HDF5 file: ``file.h5:/group/dataset`` (the dataset may be left out when the file
    holds only one volume)."""

    kind = "hdf5"

    def __init__(self, file: str, dataset: str | None, storage_options: dict | None = None):
        super().__init__(file)
        self.storage_options = storage_options
        self.dataset = dataset
        f = self._open_file()
        try:
            import h5py

            if not dataset:
                found = []
                f.visititems(lambda name, obj: found.append("/" + name)
                             if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 else None)
                if len(found) != 1:
                    raise InputError(f"{file}: holds {len(found)} image datasets ({', '.join(found[:8]) or 'none'}): "
                                     f"name one, e.g. {file}:{found[0] if found else '/volume'}")
                self.dataset = found[0]
            self.label = f"{file}:{self.dataset}"
            if self.dataset not in f:
                listing = []
                f.visititems(lambda name, obj: listing.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
                raise InputError(f"{file}: has no dataset {self.dataset}; it holds "
                                 f"{', '.join(listing[:8]) or 'no datasets'}: name one as {file}:/PATH")
            ds = f[self.dataset]
            if not isinstance(ds, h5py.Dataset):
                raise InputError(f"{self.label}: is a group, not a dataset: name a dataset inside it")
            self._set_shape(ds.shape, ds.dtype)
            self._voxel_size_from(dict(ds.attrs))
        except BaseException:
            f.close()
            raise
        self._h, self._pid = f, os.getpid()

    def _voxel_size_from(self, attrs):
        for key, unit in (("element_size_um", "micrometer"), ("resolution", "nanometer")):
            val = attrs.get(key)
            if val is not None and np.size(val) == 3:
                self.set_voxel_size(np.asarray(val, float).ravel(), unit, f"the dataset attribute {key}")
                return

    def _open_file(self):
        import h5py

        proto, path = split_url(self.location)
        try:
            if proto is None:
                if not os.path.exists(path):
                    raise FileNotFoundError(2, "No such file or directory", path)
                return h5py.File(path, "r")
            import fsspec

            fobj = fsspec.open(self.location, "rb", **(self.storage_options or {})).open()
            return h5py.File(fobj, "r")
        except (FileNotFoundError, InputError):
            raise
        except Exception as exc:
            raise InputError(f"{self.location}: cannot open it as an HDF5 file ({_why(exc)})") from exc

    def _open(self):
        return self._open_file()

    def _read(self, handle, box):
        return handle[self.dataset][tuple(slice(a, b) for a, b in box)]


# -- MRC ----------------------------------------------------------------------------------------------------
class MRCSource(Source):
    """An MRC / CCP4 volume (.mrc, .rec, .st, ...): local files memory-mapped, remote ones read by byte
    range (only the slices a region needs)."""

    kind = "mrc"

    def __init__(self, src: str, storage_options: dict | None = None):
        super().__init__(src)
        self.storage_options = storage_options
        h = self._open()
        try:
            self._set_shape(h["shape"], h["dtype"])
            vs = h["voxel_size"]
            if vs is not None and all(v > 0 for v in vs):
                self.set_voxel_size(tuple(v / 10.0 for v in reversed(vs)), "nanometer",
                                    "the MRC header (Å, converted to nanometers)")
        except BaseException:
            _close_mrc(h)
            raise
        self._h, self._pid = h, os.getpid()

    def _open(self):
        import mrcfile
        from mrcfile.mrcinterpreter import MrcInterpreter
        from mrcfile.utils import data_dtype_from_header

        proto, path = split_url(self.location)
        try:
            if proto is None:
                if not os.path.exists(path):
                    raise FileNotFoundError(2, "No such file or directory", path)
                mrc = mrcfile.mmap(path, mode="r")
                vs = mrc.voxel_size
                return {"mrc": mrc, "data": mrc.data, "shape": mrc.data.shape, "dtype": mrc.data.dtype,
                        "voxel_size": (float(vs.x), float(vs.y), float(vs.z))}
            import fsspec

            fobj = fsspec.open(self.location, "rb", **(self.storage_options or {})).open()
            mrc = MrcInterpreter(iostream=fobj, header_only=True)
            hd = mrc.header
            vs = mrc.voxel_size
            shape = (int(hd.nz), int(hd.ny), int(hd.nx))
            return {"file": fobj, "offset": 1024 + int(hd.nsymbt), "shape": shape,
                    "dtype": data_dtype_from_header(hd), "voxel_size": (float(vs.x), float(vs.y), float(vs.z))}
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise InputError(f"{self.location}: cannot read it as an MRC file ({_why(exc)})") from exc

    def _read(self, handle, box):
        if "data" in handle:
            return handle["data"][tuple(slice(a, b) for a, b in box)]  # box has the data's rank
        (z0, z1), (y0, y1), (x0, x1) = box[-3:] if len(box) == 3 else ((0, 1), *box[-2:])
        _, ny, nx = handle["shape"]
        dt = handle["dtype"]
        f = handle["file"]
        f.seek(handle["offset"] + (z0 * ny + y0) * nx * dt.itemsize)
        rows = (z1 - z0 - 1) * ny + (y1 - y0)  # whole rows from (z0, y0) to (z1 - 1, y1 - 1)
        buf = f.read(rows * nx * dt.itemsize)
        flat = np.frombuffer(buf, dt, rows * nx)
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), dt)
        for i in range(z1 - z0):
            start = i * ny * nx
            out[i] = flat[start:start + (y1 - y0) * nx].reshape(y1 - y0, nx)[:, x0:x1]
        return out



def _close_mrc(h):
    for key in ("mrc", "file"):
        if key in h:
            try:
                h[key].close()
            except Exception:
                pass


def _close_handle(h):
    """Close what ``_open`` returned: a file object, a reader, or an MRC handle (a dict)."""
    if isinstance(h, dict):
        _close_mrc(h)
    elif hasattr(h, "close"):
        try:
            h.close()
        except Exception:
            pass


# -- TIFF stacks, .npy, folders of slices ----------------------------------------------------------------
class VolumeSource(Source):
    """What :class:`~voxcodec.storage.volume_io.VolumeReader` reads (TIFF stacks, .npy, slice folders).
    It reads whole slices: the last slab read is kept (up to 256 MiB) so that the chunks of one row of
    the chunk grid read it once. Remote files are copied to a local temporary file first."""

    kind = "volume"
    SLAB_CACHE = 256 << 20

    def __init__(self, src: str, storage_options: dict | None = None):
        super().__init__(src)
        proto, path = split_url(src)
        self._tmpdir = None
        if proto is not None:
            path = self._fetch(src, storage_options)
            self.notes.append(f"copied {src} to a local temporary file to read it")
        self.path = path
        from .volume_io import VolumeReader

        reader = VolumeReader(path)
        self.kind = "folder" if os.path.isdir(path) else os.path.splitext(path)[1].lstrip(".").lower()
        self.label = src
        self._set_shape(reader.shape, reader.dtype)
        sizes, unit = getattr(reader, "voxel_size", None), getattr(reader, "voxel_unit", None)
        if sizes is not None:
            self.set_voxel_size(sizes, unit, "the file's metadata")
        self._h, self._pid = _SlabReader(reader, self.SLAB_CACHE), os.getpid()

    def _fetch(self, url, storage_options):
        import fsspec

        self._tmpdir = tempfile.mkdtemp(prefix="voxcodec-convert-")
        local = os.path.join(self._tmpdir, os.path.basename(url.rstrip("/")))
        fs, inner = _fs(url, storage_options)
        if fs.isdir(inner):
            fs.get(inner.rstrip("/") + "/", local, recursive=True)
        else:
            with fsspec.open(url, "rb", **(storage_options or {})) as f, open(local, "wb") as out:
                shutil.copyfileobj(f, out, 1 << 22)
        return local

    def _open(self):
        from .volume_io import VolumeReader

        return _SlabReader(VolumeReader(self.path), self.SLAB_CACHE)

    def _read(self, handle, box):
        return handle.region(box)

    def close(self):
        super().close()
        if self._tmpdir and os.getpid() == getattr(self, "_owner", os.getpid()):
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


class _SlabReader:
    """A VolumeReader that keeps the last slab of whole slices it read (up to ``limit`` bytes)."""

    def __init__(self, reader, limit: int):
        self.reader, self.limit, self.slab = reader, limit, None

    def region(self, box):
        (z0, z1), (y0, y1), (x0, x1) = box
        if self.slab is not None and self.slab[0] == (z0, z1):
            data = self.slab[1]
        else:
            data = self.reader.read(z0, z1)
            self.slab = ((z0, z1), data) if data.nbytes <= self.limit else None
        return data[:, y0:y1, x0:x1]

    def close(self):
        self.slab = None
        self.reader.close()


# -- choosing -----------------------------------------------------------------------------------------------
def _exists(src: str, storage_options, *names) -> bool:
    proto, path = split_url(src)
    if proto is None:
        return any(os.path.exists(os.path.join(path, n)) for n in names)
    try:
        fs, inner = _fs(src, storage_options)
        return any(fs.exists(n5.join(inner, n)) for n in names)
    except Exception:
        return False


def kind_of(src: str, storage_options: dict | None = None) -> str:
    """What ``src`` is: ``hdf5``, ``mrc``, ``n5``, ``zarr`` or ``volume``, by its name and, for folders, by
    the metadata files in it."""
    proto, path = split_url(src)
    if _H5.match(src):
        return "hdf5"
    low = path.rstrip("/").lower()
    if low.endswith(MRC_SUFFIXES):
        return "mrc"
    if low.endswith(VOLUME_SUFFIXES):
        return "volume"
    if _exists(src, storage_options, "attributes.json"):
        return "n5"
    if _exists(src, storage_options, "zarr.json", ".zarray", ".zgroup"):
        return "zarr"
    if ".n5" in low:
        return "n5"
    if low.endswith(".zarr") or proto is not None:
        return "zarr"
    return "volume"


def open_source(src: str, storage_options: dict | None = None, *, check_dtype: bool = True) -> Source:
    """Open ``src`` (a path or fsspec URL) as a :class:`Source`. Refuses (InputError, UnsupportedError)
    what cannot be read, or (``check_dtype``) a voxel type voxcodec does not code."""
    src = str(src)
    kind = kind_of(src, storage_options)
    proto, path = split_url(src)
    if proto is None and kind != "hdf5" and not os.path.exists(path):
        raise FileNotFoundError(2, "No such file or directory", path)
    if kind == "hdf5":
        m = _H5.match(src)
        source = HDF5Source(m.group("file"), m.group("dataset"), storage_options)
    elif kind == "mrc":
        source = MRCSource(src, storage_options)
    elif kind == "n5":
        source = N5Source(src, storage_options)
    elif kind == "zarr":
        source = ZarrSource(src, storage_options)
    else:
        source = VolumeSource(src, storage_options)
        source._owner = os.getpid()
    if check_dtype:
        check_source_dtype(source)
    return source


def check_source_dtype(source: Source):
    dt = source.dtype
    if dt not in DTYPES and dt not in SIGNED:
        source.close()
        hint = ("round or rescale it to uint8/uint16 first (voxcodec is lossless: it codes integers)" if dt.kind == "f"
                else "store it as one of those types first")
        raise UnsupportedError(f"{source.label}: holds {dt} voxels; voxcodec codes uint8, uint16, int8 and int16: "
                               f"{hint}")
