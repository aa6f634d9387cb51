"""Convert a volume (zarr, N5, HDF5, MRC, TIFF, ...) into a voxcodec-coded OME-Zarr image, chunk by chunk,
in parallel, every chunk read back and checked, resumable after a crash.

    from voxcodec.storage.convert import convert
    result = convert("raw.n5/volume", "em.ome.zarr", levels=3, workers=8)

DEST is a zarr v3 group: level ``"0"`` is the source, levels ``"1"``... are downsampled (see
:func:`level_factors`), every level an array coded with :class:`~voxcodec.storage.zarr.VoxCodec`, and
the group carries OME-NGFF 0.5 multiscales metadata (:mod:`.ome`). Any zarr v3 reader opens it; the
codec is found through its entry point (``pip install voxcodec``).

How a chunk is made (:func:`convert_chunk`, run by a worker): read the source region (or the region
under it, for a downsampled level, and average it), pad to the chunk shape with 0 (zarr's fill value,
as zarr itself pads edge chunks), code it, write it under a temporary name and rename it into place
(object stores: one PUT, atomic by itself), then read it back from DEST, decode it and compare every
voxel with what was coded. A chunk that reads back different is an error naming the chunk. A chunk of
zeros only is not stored (zarr reads a missing chunk as its fill value, 0).

Resuming (``resume=True``): the chunks found in DEST are read back, decoded and compared with the source
region; those that match are kept, any other (cut short by a crash, damaged, written from other data) is
coded again. Only then is the group marked complete (attribute ``voxcodec_convert.complete``).

Parallelism: dask. Local worker processes by default (forked, one compute thread each, ending with the
parent even when it is killed); ``scheduler="tcp://host:8786"`` sends the chunks to a running
dask.distributed cluster instead, whose workers must see SRC and DEST at the same paths or URLs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from ..core import parallel
from ..core.presets import PRESETS
from ..errors import CorruptStreamError, InputError, VoxcodecError
from . import chunks as chunkcodec
from .atomic import put_atomic, write_atomic
from . import ome
from .sources import Source, open_source, split_url

#: default chunk shape (z, y, x): 8 Mi voxels, see docs/convert.md
DEFAULT_CHUNKS = (32, 512, 512)
#: source voxels averaged at once when a downsampled chunk is made (bounds a worker's memory)
_REDUCE_BUDGET = 8 << 20
ATTR = "voxcodec_convert"


class VerifyError(CorruptStreamError):
    """A chunk read back from DEST does not decode to the voxels that were coded."""


class DestinationExists(InputError):
    """DEST exists and neither resuming nor overwriting was asked for (or it cannot be resumed)."""


# -- levels ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """One level of the pyramid: its array path, shape, chunk shape, downsampling factor from level 0
    (z, y, x) and voxel size."""

    index: int
    shape: tuple
    chunks: tuple
    factor: tuple
    scale: tuple

    @property
    def path(self) -> str:
        return str(self.index)

    def grid(self):
        return tuple(math.ceil(n / c) for n, c in zip(self.shape, self.chunks))


def level_factors(shape, voxel_size, levels: int) -> list[tuple[int, int, int]]:
    """The downsampling factor of each level relative to level 0, (z, y, x).

    Each level halves y and x (while they are longer than one voxel). z is halved too when, before the
    step, the z voxel size is below sqrt(2) times the y voxel size: then the halved z is closer to the
    new in-plane size than the kept one, so voxels stay as near to cubes as halving allows. Isotropic
    volumes (FIB-SEM) are halved in all three axes every level; a serial-section volume of 30 x 4 x 4 nm
    keeps its z until y and x have caught up (30 x 32 x 32 at level 3, 60 x 64 x 64 at level 4). An
    unknown voxel size counts as isotropic, as the metadata written for it (scale 1) says."""
    size = [float(s) for s in (voxel_size or (1.0, 1.0, 1.0))]
    n = [int(s) for s in shape]
    factor = [1, 1, 1]
    out = [tuple(factor)]
    for _ in range(1, levels):
        halve_z = size[0] < math.sqrt(2) * size[1] and n[0] > 1
        for axis in (0, 1, 2):
            if (axis > 0 or halve_z) and n[axis] > 1:
                factor[axis] *= 2
                size[axis] *= 2
                n[axis] = math.ceil(n[axis] / 2)
        out.append(tuple(factor))
    return out


def plan_levels(shape, voxel_size, levels: int, chunks) -> list[Level]:
    base = tuple(voxel_size) if voxel_size else (1.0, 1.0, 1.0)
    out = []
    for i, f in enumerate(level_factors(shape, voxel_size, levels)):
        lshape = tuple(math.ceil(n / k) for n, k in zip(shape, f))
        lchunks = tuple(min(c, n) for c, n in zip(chunks, lshape))
        out.append(Level(i, lshape, lchunks, f, tuple(s * k for s, k in zip(base, f))))
    return out


def mean_reduce(block: np.ndarray, factor) -> np.ndarray:
    """Integer mean over ``factor`` blocks (z, y, x), rounded half up: ``(sum + n // 2) // n`` with exact
    integer sums. Blocks cut by the end of ``block`` average the voxels they have. Deterministic and
    exact: any tool computing the same formula gets the same voxels."""
    factor = tuple(int(f) for f in factor)
    if factor == (1, 1, 1):
        return block.copy()
    pads = [(0, (-n) % f) for n, f in zip(block.shape, factor)]
    wide = np.pad(block.astype(np.int64), pads)
    shape = []
    for n, f in zip(wide.shape, factor):
        shape += [n // f, f]
    sums = wide.reshape(shape).sum(axis=(1, 3, 5))
    counts = []
    for n, f, m in zip(block.shape, factor, sums.shape):
        c = np.full(m, f, np.int64)
        c[-1] = n - (m - 1) * f
        counts.append(c)
    n = counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :]
    return ((sums + n // 2) // n).astype(block.dtype)


def level_region(source: Source, factor, box) -> np.ndarray:
    """The voxels of ``box`` (z, y, x ranges at a level downsampled by ``factor``), computed from the
    source a few planes at a time (memory stays near ``_REDUCE_BUDGET`` source voxels)."""
    factor = tuple(factor)
    if factor == (1, 1, 1):
        return source.read(box)
    fz, fy, fx = factor
    (z0, z1), (y0, y1), (x0, x1) = box
    out = np.empty((z1 - z0, y1 - y0, x1 - x0), source.dtype)
    src_x = (x0 * fx, min(x1 * fx, source.shape[2]))
    row_voxels = fz * fy * (src_x[1] - src_x[0])
    rows = max(1, min(y1 - y0, _REDUCE_BUDGET // max(row_voxels, 1)))
    for z in range(z0, z1):
        for y in range(y0, y1, rows):
            ye = min(y + rows, y1)
            part = source.read(((z * fz, min((z + 1) * fz, source.shape[0])),
                                (y * fy, min(ye * fy, source.shape[1])), src_x))
            out[z - z0, y - y0:ye - y0] = mean_reduce(part, factor)[0]
    return out


# -- DEST ----------------------------------------------------------------------------------------------------
class Store:
    """Objects of DEST by key (``"0/c/1/0/2"``): a local folder or an fsspec URL. Picklable: each process
    connects the first time it needs to. Writes are atomic: local and SFTP files are written under a
    hidden temporary name and renamed into place; object stores (S3, GCS) replace an object whole."""

    def __init__(self, dest: str, storage_options: dict | None = None):
        self.dest = str(dest)
        self.storage_options = dict(storage_options or {})
        self.protocol, path = split_url(self.dest)
        self.local = self.protocol is None
        self.root = os.path.abspath(path) if self.local else None
        self._fs = None

    def __getstate__(self):
        return dict(self.__dict__, _fs=None)

    @property
    def fs(self):
        if self._fs is None:
            import fsspec

            fs, root = fsspec.core.url_to_fs(self.dest, **self.storage_options)
            self._fs, self.root = fs, root.rstrip("/")
        return self._fs

    def path(self, key: str = "") -> str:
        if self.local:
            return os.path.join(self.root, *key.split("/")) if key else self.root
        self.fs
        return f"{self.root}/{key}" if key else self.root

    def get(self, key: str) -> bytes | None:
        try:
            if self.local:
                with open(self.path(key), "rb") as f:
                    return f.read()
            return self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes):
        """Write a chunk or metadata file atomically (:mod:`.atomic`): a kill leaves it whole or absent."""
        if self.local:
            write_atomic(self.path(key), data)
        else:
            put_atomic(self.fs, self.protocol, self.path(key), data)

    def delete(self, key: str):
        try:
            if self.local:
                os.unlink(self.path(key))
            else:
                self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass

    def exists(self) -> bool:
        return os.path.exists(self.root) if self.local else self.fs.exists(self.path())

    def is_empty_folder(self) -> bool:
        if self.local:
            return os.path.isdir(self.root) and not os.listdir(self.root)
        try:
            return self.fs.isdir(self.path()) and not self.fs.ls(self.path())
        except FileNotFoundError:
            return True

    def remove_all(self):
        if self.local:
            shutil.rmtree(self.root)
        else:
            self.fs.rm(self.path(), recursive=True)

    def remove_partials(self) -> int:
        """Remove temporary files a killed run left (local DEST only; elsewhere they are harmless: zarr
        never reads them)."""
        if not self.local:
            return 0
        n = 0
        for folder, _, files in os.walk(self.root):
            for f in files:
                if f.startswith(".") and f.endswith(".part"):
                    os.unlink(os.path.join(folder, f))
                    n += 1
        return n

    def zarr_store(self):
        """The store zarr-python writes metadata through."""
        import zarr

        if self.local:
            return zarr.storage.LocalStore(self.root)
        return zarr.storage.FsspecStore.from_url(self.dest, storage_options=self.storage_options or None)


# -- one chunk -----------------------------------------------------------------------------------------------
class Task:
    """What every chunk task needs (small and picklable: the source is reopened in each worker)."""

    def __init__(self, source: Source, store: Store, preset: str, resume: bool):
        self.source, self.store, self.preset, self.resume = source, store, preset, resume


def _crc(arr: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(arr).view(np.uint8).ravel())


def _decodes_to(data: bytes, want: np.ndarray, index) -> bool:
    """Does stored chunk ``data`` decode to ``want`` (its checksums checked by the decoder, its grid
    position if it records one, then every voxel's CRC-32 and the voxels themselves)?"""
    try:
        got = chunkcodec.decode_chunk(data, shape=want.shape, dtype=want.dtype, position=index)
    except VoxcodecError:
        return False
    return _crc(got) == _crc(want) and np.array_equal(got, want)


def convert_chunk(task: Task, level: Level, index, key: str) -> dict:
    """Make, write and verify one chunk (or keep a verified one, when resuming). Runs in a worker."""
    parallel.one_thread(1)
    box = [(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, level.chunks, level.shape)]
    region = level_region(task.source, level.factor, box)
    chunk = np.zeros(level.chunks, task.source.dtype)
    chunk[tuple(slice(0, b - a) for a, b in box)] = region
    done = {"level": level.index, "key": key, "bytes": region.nbytes, "stored": 0}
    if task.resume:
        old = task.store.get(key)
        if old is not None and _decodes_to(old, chunk, index):
            return dict(done, status="kept", stored=len(old))
    if not chunk.any():  # zarr's fill value: no object needed
        task.store.delete(key)
        return dict(done, status="empty")
    data = chunkcodec.encode_chunk(chunk, preset=task.preset, position=index)
    task.store.put(key, data)
    back = task.store.get(key)
    if back is None or not _decodes_to(back, chunk, index):
        what = "is missing" if back is None else ("differs from what was written" if back != data
                                                   else "does not decode to the source voxels")
        raise VerifyError(f"chunk {key} (level {level.index}, grid position {tuple(int(i) for i in index)}): read "
                          f"back from {task.store.dest} it {what}; check the storage and run again with --resume")
    return dict(done, status="written", stored=len(data))


# -- the conversion ----------------------------------------------------------------------------------------
@dataclass
class Result:
    source: str
    dest: str
    shape: tuple
    dtype: str
    levels: list
    voxel_size: tuple | None
    unit: str | None
    written: int = 0
    kept: int = 0
    empty: int = 0
    bytes_in: int = 0
    bytes_stored: int = 0
    seconds: float = 0.0
    notes: list = field(default_factory=list)

    @property
    def chunks(self) -> int:
        return self.written + self.kept + self.empty


def _check_chunks(chunks) -> tuple:
    chunks = tuple(int(c) for c in (chunks or DEFAULT_CHUNKS))
    if len(chunks) != 3 or min(chunks) < 1:
        raise InputError(f"chunks must be three positive sizes (z, y, x), got {chunks}")
    return chunks


def _plan_attr(source: Source, levels: list[Level], preset) -> dict:
    """What DEST was started with: a resumed run must match it exactly."""
    return {"shape": list(source.shape), "dtype": source.dtype.name, "preset": preset,
            "levels": [{"path": lv.path, "shape": list(lv.shape), "chunks": list(lv.chunks),
                        "factor": list(lv.factor)} for lv in levels]}


def _read_group_attrs(store: Store) -> dict | None:
    raw = store.get("zarr.json")
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    return meta.get("attributes", {}) if isinstance(meta, dict) and meta.get("node_type") == "group" else None


def _prepare_dest(store: Store, plan: dict, resume: bool, overwrite: bool, notes: list) -> bool:
    """Check DEST against the options; returns True when the metadata must be (re)written."""
    if not store.exists() or store.is_empty_folder():
        if resume:
            notes.append(f"nothing to resume at {store.dest}: starting a new conversion")
        return True
    attrs = _read_group_attrs(store)
    ours = attrs.get(ATTR) if isinstance(attrs, dict) else None
    if overwrite:
        if attrs is None and store.get("zarr.json") is None and store.get(".zgroup") is None \
                and store.get(".zarray") is None:
            raise DestinationExists(f"{store.dest} exists and is not a zarr hierarchy: voxcodec will not delete "
                                    "it; remove it yourself or choose another DEST")
        store.remove_all()
        return True
    if not resume:
        raise DestinationExists(f"{store.dest} exists: pass --resume to finish an interrupted conversion into it, "
                                "or --overwrite to replace it")
    if not isinstance(ours, dict):
        raise DestinationExists(f"{store.dest} exists but was not written by voxcodec convert: it cannot be "
                                "resumed; choose another DEST or pass --overwrite to replace it")
    started = ours.get("plan")
    if started != plan:
        diff = [k for k in plan if (started or {}).get(k) != plan[k]]
        raise DestinationExists(f"{store.dest} was started with other {', '.join(diff) or 'options'} "
                                f"({_short(started, diff)}): resume with the same source and options, or pass "
                                "--overwrite to start over")
    removed = store.remove_partials()
    if removed:
        notes.append(f"removed {removed} temporary files left by the interrupted run")
    return False


def _short(plan, keys) -> str:
    plan = plan or {}
    text = "; ".join(f"{k}={json.dumps(plan.get(k))}" for k in keys)
    return text if len(text) < 200 else text[:197] + "..."


def _write_metadata(store: Store, source: Source, levels, preset, plan, *, complete: bool, fresh: bool):
    """The group (OME-NGFF 0.5 attributes, and ours) and one array per level, made by zarr itself."""
    import zarr

    from .. import __version__
    from .zarr import VoxCodec

    attrs = {"ome": _ome(source, levels), ATTR: {"plan": plan, "complete": complete, "source": source.label,
                                                   "encoder": f"voxcodec {__version__}"}}
    ome.validate_attrs(attrs["ome"])
    zs = store.zarr_store()
    if fresh:
        group = zarr.create_group(store=zs, zarr_format=3, attributes=attrs, overwrite=True)
    else:
        group = zarr.open_group(store=zs, mode="r+", zarr_format=3)
        group.update_attributes(attrs)
    codec = VoxCodec(preset=preset)
    for lv in levels:
        if not fresh and lv.path in group:
            arr = group[lv.path]
            if tuple(arr.shape) == lv.shape and tuple(arr.chunks) == lv.chunks and arr.dtype == source.dtype:
                continue
        group.create_array(lv.path, shape=lv.shape, chunks=lv.chunks, dtype=source.dtype, serializer=codec,
                           compressors=None, fill_value=0, dimension_names=ome.AXES, overwrite=True)
    return group


def _ome(source: Source, levels) -> dict:
    desc = ("level 0 is the source; each further level is the integer mean (rounded half up) of 2 x 2 "
            "(x 2 in z when the voxels are near-isotropic) voxels of the level before, computed from level 0")
    return ome.multiscales([lv.scale for lv in levels], source.unit, name=os.path.basename(source.label.rstrip("/")),
                           kind="mean" if len(levels) > 1 else None,
                           metadata={"method": "voxcodec.storage.convert.mean_reduce", "description": desc,
                                     "factors": [list(lv.factor) for lv in levels]} if len(levels) > 1 else None)


def jobs(levels, template_meta) -> list:
    """(level, grid index, chunk key) of every chunk, level by level, in grid order."""
    out = []
    for lv in levels:
        for index in np.ndindex(*lv.grid()):
            index = tuple(int(i) for i in index)
            out.append((lv, index, f"{lv.path}/{template_meta[lv.path].encode_chunk_key(index)}"))
    return out


#: chunks handed to dask at once: a volume of millions of chunks never becomes one graph of millions of tasks
BATCH = 4096


def _batches(todo):
    for i in range(0, len(todo), BATCH):
        yield todo[i:i + BATCH]


def _run_local(task, todo, workers, on_done):
    """Chunks on this machine: in this process for one worker, else on dask graphs run by a pool of
    forked worker processes (one compute thread each, ending with this process even when it is killed)."""
    if workers < 2:
        for lv, index, key in todo:
            on_done(convert_chunk(task, lv, index, key))
        return
    import dask
    from dask.callbacks import Callback

    pool = parallel.pool(workers)
    if pool is None:  # a process that may not have children (a daemonic worker)
        return _run_local(task, todo, 1, on_done)
    try:
        with Callback(posttask=lambda key, result, dsk, state, worker: on_done(result)):
            for batch in _batches(todo):
                graph = [dask.delayed(convert_chunk, pure=False)(task, lv, index, key) for lv, index, key in batch]
                # chunksize=1: dask otherwise hands out ready chunks in fives, so a volume of four chunks
                # (or a batch's tail) went to one worker while the other waited
                dask.compute(*graph, scheduler="processes", pool=pool, num_workers=workers, optimize_graph=False,
                             chunksize=1)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _run_distributed(task, todo, scheduler, on_done):
    """Chunks on a running dask.distributed cluster (``scheduler`` is its address)."""
    from distributed import Client, as_completed

    with Client(scheduler, timeout="30s") as client:
        for batch in _batches(todo):
            futures = [client.submit(convert_chunk, task, lv, index, key, pure=False) for lv, index, key in batch]
            try:
                for fut in as_completed(futures):
                    on_done(fut.result())
            finally:
                client.cancel(futures)


def convert(src, dest, *, chunks=None, levels: int = 1, preset: str = "default",
            workers: int | None = None, scheduler: str | None = None, resume: bool = False,
            overwrite: bool = False, voxel_size=None, unit: str | None = None,
            storage_options: dict | None = None, dest_storage_options: dict | None = None,
            on_start=None, on_chunk=None) -> Result:
    """Convert ``src`` into a voxcodec-coded OME-Zarr group at ``dest`` (see the module's notes).

    ``chunks`` (z, y, x; default :data:`DEFAULT_CHUNKS`, cut to the volume), ``levels`` (1: level 0 only),
    ``preset`` (as :class:`~voxcodec.storage.zarr.VoxCodec` takes it), ``workers``
    (local processes, default every core) or ``scheduler`` (a dask.distributed address), ``resume``
    (keep the verified chunks of an interrupted run), ``overwrite`` (replace DEST), ``voxel_size`` and
    ``unit`` (override what the source says). ``on_start(result, total_bytes)`` and ``on_chunk(info)``
    report progress. Returns a :class:`Result`."""
    t0 = time.perf_counter()
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if int(levels) < 1:
        raise InputError(f"levels must be at least 1, got {levels}")
    chunks = _check_chunks(chunks)
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: resume keeps DEST's chunks, overwrite "
                         "deletes them")
    workers = parallel.resolve(workers)
    store = Store(dest, dest_storage_options)
    source = open_source(src, storage_options)
    try:
        notes = list(source.notes)
        if voxel_size is not None:
            source.set_voxel_size(voxel_size, unit if unit is not None else source.unit, "--voxel-size")
            if source.voxel_size is None:
                raise InputError(f"--voxel-size wants three positive numbers, got {list(voxel_size)}")
        elif unit is not None:
            if source.voxel_size is None:
                raise InputError("--unit goes with a voxel size: give --voxel-size Z,Y,X too (the source has none)")
            source.unit = ome.normalize_unit(unit, "--unit")
        if source.voxel_size is None:
            notes.append("voxel size unknown: the metadata says scale 1 and no unit (give --voxel-size Z,Y,X and "
                         "--unit to record it)")
        elif source.unit is None:
            notes.append("the voxel size has no unit: the axes are written without one (give --unit)")
        levels_ = plan_levels(source.shape, source.voxel_size, int(levels), chunks)
        plan = _plan_attr(source, levels_, preset)
        fresh = _prepare_dest(store, plan, resume, overwrite, notes)
        group = _write_metadata(store, source, levels_, preset, plan, complete=False, fresh=fresh)
        meta = {lv.path: group[lv.path].metadata for lv in levels_}
        result = Result(source.label, store.dest, source.shape, source.dtype.name, levels_, source.voxel_size,
                        source.unit, notes=notes)
        todo = jobs(levels_, meta)
        total = sum(int(np.prod([min((i + 1) * c, n) - i * c for i, c, n in zip(index, lv.chunks, lv.shape)]))
                    for lv, index, _ in todo) * source.dtype.itemsize
        if on_start is not None:
            on_start(result, total, len(todo))
        task = Task(source, store, preset, resume and not fresh)

        def done(info):
            setattr(result, info["status"], getattr(result, info["status"]) + 1)
            result.bytes_in += info["bytes"]
            result.bytes_stored += info["stored"]
            if on_chunk is not None:
                on_chunk(info)

        if scheduler:
            _run_distributed(task, todo, scheduler, done)
        else:
            _run_local(task, todo, workers, done)
        ome.validate_group(_write_metadata(store, source, levels_, preset, plan, complete=True, fresh=False))
    finally:
        source.close()
    result.seconds = time.perf_counter() - t0
    return result
