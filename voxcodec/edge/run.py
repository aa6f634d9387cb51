"""The edge transfer pipeline: slice files in an acquisition folder -> blocks -> voxcodec chunks in a
local spool -> a zarr v3 array at DEST, losing and duplicating nothing whatever crashes.

Three threads. The *encoder* (:class:`EdgeRun`, the caller's thread) takes complete slice files in z
order, groups them into blocks of ``block_depth`` slices, has each block coded into the array's
chunks (format 6: each chunk's model learns while it codes, and depends on no other chunk), writes
them to the spool and journals the block. With several ``workers`` (default: every core), successive
blocks are coded at once by worker threads (the native engine releases the GIL); blocks are journaled
in z order whatever order they finish in, and the bytes do not depend on the number of workers. The *shipper*
(:class:`~voxcodec.edge.shipper.Shipper`) writes journaled blocks to DEST in order, reads every
chunk back and compares its SHA-256, then grows the array's z extent in its metadata and journals
the block as shipped; with ``delete_source`` it decodes the read-back chunks, compares them with the
checksums of the source slices and only then deletes those files. The *status* thread
(:class:`~voxcodec.edge.status.StatusWriter`) rewrites ``status.json`` twice a second, however long
a block takes to code. What they share is in a :class:`~voxcodec.edge.status.Progress`.

Every step is idempotent and keyed by the block's index, so a restart after ``kill -9`` redoes
at most the step that was cut short: blocks whose chunks were not journaled are coded again from
the source files (still there), journaled blocks are shipped from the spool, a chunk found
half-written or damaged at DEST is rewritten, and the array's extent only ever counts shipped
blocks. See :mod:`voxcodec.edge.journal` for the records.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import threading
import time
import uuid
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..core import parallel
from ..core.encoder import AUTO_TILE, auto_block_depth
from ..storage.chunks import encode_chunk
from ..storage.volume_io import read_image
from .acquisition import SliceWatcher, natural_key
from ..storage.atomic import write_atomic
from .destination import ArrayLayout, Destination, DestinationError
from .errors import EdgeError, VerifyError
from .journal import Journal
from .shipper import MAX_BACKOFF, Shipper, sha256
from .status import STATUS_FILE, Progress, StatusWriter, now, read_status

__all__ = ["EdgeRun", "EdgeOptions", "EdgeError", "VerifyError", "chunk_grid", "read_status", "STATUS_FILE",
           "MAX_BACKOFF"]

log = logging.getLogger("voxcodec.edge")


@dataclass
class EdgeOptions:
    acq_dir: str
    dest: str
    state_dir: str
    pattern: str = "*.tif"
    block_depth: int | None = None
    preset: str = "default"
    tile: int = AUTO_TILE
    exit_when_idle: float | None = None
    finish_marker: str = "finish"
    delete_source: bool = False
    spool_budget: int = 8 * 10**9
    poll: bool = False
    settle: float = 2.0
    scan_interval: float = 1.0
    voxel_size: list | None = None
    voxel_unit: str = "nanometer"
    storage_options: dict = field(default_factory=dict)
    #: blocks coded at once: None or 0 for every core
    workers: int | None = None


def _code_chunks(parts, preset: str, positions: list):
    """Code one block's chunks (in a worker): ``(chunk bytes, seconds)``."""
    t0 = time.perf_counter()
    out = [encode_chunk(part, preset=preset, position=pos) for part, pos in zip(parts, positions)]
    return out, time.perf_counter() - t0


def chunk_grid(slice_shape, tile: int):
    """In-plane chunk size: the whole slice up to ``tile``, else equal parts of at most ``tile``."""
    return tuple(-(-s // -(-s // tile)) for s in slice_shape)


class EdgeRun:
    """One acquisition shipped from ``acq_dir`` to ``dest``; resumable from its ``state_dir``.

    This is the encoder; it starts the shipper and the status thread for the length of :meth:`run`."""

    def __init__(self, opts: EdgeOptions):
        if not Path(opts.acq_dir).is_dir():
            raise EdgeError(f"ACQ_DIR {opts.acq_dir} is not a folder")
        self.opts = opts
        self.state = Path(opts.state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self._lockf = open(self.state / "lock", "w")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise EdgeError(f"another voxcodec-edge is running with --state {self.state}") from None
        self.spool = self.state / "spool"
        self.spool.mkdir(exist_ok=True)
        self.journal = Journal(self.state)
        if self.journal.dropped_tail:
            log.info("journal: dropped a torn last record (%d bytes) left by an interrupted run",
                     self.journal.dropped_tail)
        self.dest = Destination(opts.dest, opts.storage_options)
        self._halt = threading.Event()  # ends run() early (stop())
        self.workers = parallel.resolve(opts.workers)
        self._pool = None
        self._inflight: deque = deque()  # blocks being coded, in z order: (k, depth, files, raw bytes, keys, future)
        self._replay()
        self._next_k = max(self.progress.blocks, default=-1) + 1
        self.shipper = Shipper(self.dest, self.spool, self.journal, self.progress, run_id=self.run_id,
                               acq_dir=opts.acq_dir, dest_url=opts.dest, pattern=opts.pattern, preset=opts.preset,
                               delete_source=opts.delete_source, voxel_size=self.voxel_size,
                               voxel_unit=self.voxel_unit, layout=self.layout)
        self._status_writer = StatusWriter(self.state)

    # -- journal replay --------------------------------------------------------------------------------
    def _replay(self):
        o = self.opts
        runs = self.journal.of("run")
        if runs:
            run = runs[0]
            if os.path.abspath(o.acq_dir) != run["acq_dir"] or o.dest != run["dest"]:
                raise EdgeError(f"--state {self.state} belongs to the run {run['acq_dir']} -> {run['dest']}; "
                                "use another --state directory for a new acquisition")
            for k in ("pattern", "preset"):
                if getattr(o, k) != run[k]:
                    log.warning("resuming with --%s %s as first started (not %s)", k, run[k], getattr(o, k))
                    setattr(o, k, run[k])
            self.run_id = run["run_id"]
        else:
            self.run_id = uuid.uuid4().hex
            self.journal.append({"event": "run", "run_id": self.run_id, "acq_dir": os.path.abspath(o.acq_dir),
                                 "dest": o.dest, "pattern": o.pattern, "preset": o.preset, "started": now(),
                                 "voxel_size": o.voxel_size, "voxel_unit": o.voxel_unit, "encoder": __version__})
        run = self.journal.of("run")[0]
        self.voxel_size, self.voxel_unit = run.get("voxel_size"), run.get("voxel_unit")
        layouts = self.journal.of("layout")
        self.layout: ArrayLayout | None = None
        if layouts:
            lay = layouts[0]
            if o.block_depth and o.block_depth != lay["chunks"][0]:
                raise EdgeError(f"this run's blocks are {lay['chunks'][0]} slices deep (the chunk depth of the array "
                                f"at DEST); --block-depth {o.block_depth} cannot change that on resume")
            self.layout = ArrayLayout(lay["slice_shape"], lay["dtype"], lay["chunks"], o.preset)
        blocks = {r["k"]: r for r in self.journal.of("block")}
        self.progress = Progress(blocks=blocks, shipped={r["k"] for r in self.journal.of("shipped")},
                                 deleted={r["k"] for r in self.journal.of("deleted")},
                                 taken={f["name"] for r in blocks.values() for f in r["files"]},
                                 finished=bool(self.journal.of("finished")))
        ordered = [f["name"] for k in sorted(blocks) for f in blocks[k]["files"]]
        self.last_key = natural_key(ordered[-1]) if ordered else None
        self._clean_spool()

    def _clean_spool(self):
        """Remove spool files of blocks never journaled (cut short) or already shipped."""
        p = self.progress
        with p.cond:
            keep = {c["spool"] for k, r in p.blocks.items() if k not in p.shipped for c in r["chunks"]}
        for f in self.spool.iterdir():
            if f.name not in keep:
                f.unlink()

    # -- status ----------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The run's state now; safe to call from any thread while the encoder and shipper work."""
        return self.progress.status(acq_dir=os.path.abspath(self.opts.acq_dir), dest=self.opts.dest,
                                    state_dir=str(self.state), preset=self.opts.preset,
                                    spool_budget=self.opts.spool_budget)

    def write_status(self) -> dict:
        """Write the status to ``status.json`` atomically (a reader never sees half of it); return it."""
        return self._status_writer.write(self.status)

    # -- the encoder (caller's thread) -------------------------------------------------------------------
    def run(self, on_tick=None) -> dict:
        """Ship the acquisition until it ends (finish marker or idle timeout); returns the final status.

        ``on_tick(status)`` is called about twice a second (a live status line), from a status thread
        that also refreshes ``status.json``, so neither waits for a block being coded."""
        if self.progress.finished:
            log.info("this acquisition was already finished and shipped (%d slices)", len(self.progress.taken))
            self.write_status()
            return self.status()
        self._status_writer.start(self.status, on_tick)
        try:
            return self._encode()
        finally:
            self._status_writer.stop(timeout=30)
            try:
                self.write_status()
            except OSError:
                pass

    def _encode(self) -> dict:
        o = self.opts
        try:  # a DEST that belongs to something else is refused before any work; an unreachable one is retried
            self.shipper.check_dest_owner()
        except DestinationError:
            raise
        except Exception as exc:
            self.shipper.link_down(exc, 1)
        watcher = SliceWatcher(o.acq_dir, o.pattern, settle=o.settle, poll=o.poll, ignore={o.finish_marker})
        log.info("watching %s for %s (%s); shipping to %s; state in %s", o.acq_dir, o.pattern, watcher.mode, o.dest,
                 self.state)
        self.shipper.start()
        buffer: list[tuple[dict, np.ndarray]] = []
        last_new = time.monotonic()
        unreadable: dict[str, float] = {}
        try:
            while not self._halt.is_set():
                self.shipper.check_fatal()
                self._store_done()
                if self._spool_full():
                    watcher.wait(o.scan_interval)
                    continue
                files, late, pending = watcher.ready(self.progress.taken, self.last_key)
                self.progress.set(pending_files=pending)
                for name in self.progress.add_late(late):
                    log.warning("%s arrived after later slices were taken; it is left in ACQ_DIR, not shipped", name)
                took = 0
                for path in files:
                    arr = self._read_slice(path, unreadable)
                    if arr is None:
                        break  # not readable yet: keep z order, try again on the next scan
                    st = path.stat()
                    buffer.append(({"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                    "crc32": zlib.crc32(np.ascontiguousarray(arr).tobytes())}, arr))
                    self.progress.take(path.name)
                    self.last_key = natural_key(path.name)
                    watcher.forget(path.name)
                    self.progress.in_rate.add(arr.nbytes)
                    last_new = time.monotonic()
                    took += 1
                    self.progress.set(buffered_slices=len(buffer))
                    if len(buffer) == self.layout.chunks[0]:
                        self._code_block(buffer)
                        buffer = []
                        self.progress.set(buffered_slices=0)
                        if self._spool_full():
                            break
                if took:
                    continue
                marker = (Path(o.acq_dir) / o.finish_marker).exists()
                idle = o.exit_when_idle is not None and time.monotonic() - last_new >= o.exit_when_idle
                if (marker and not pending and not files) or (idle and not files):
                    why = "finish marker" if marker else f"no new slice for {o.exit_when_idle:g} s"
                    if pending:
                        log.warning("%d file(s) still being written are left in ACQ_DIR", pending)
                    log.info("acquisition ended (%s): %d slices", why, len(self.progress.taken))
                    if buffer:
                        self._code_block(buffer)
                        buffer = []
                        self.progress.set(buffered_slices=0)
                    self._drain()
                    self._finish()
                    return self.status()
                watcher.wait(o.scan_interval)
            log.info("stopped before the acquisition ended; run again to resume")
            return self.status()
        except BaseException:
            self._inflight.clear()  # an error: blocks in hand are dropped (a restart codes them again)
            raise
        finally:
            try:
                self._drain()  # stopped: blocks in hand are finished and journaled
            finally:
                if self._pool is not None:
                    self._pool.shutdown(wait=True, cancel_futures=True)
                    self._pool = None
                self.shipper.stop()
                watcher.stop()
                self.shipper.join(timeout=30)

    def stop(self):
        """Make :meth:`run` return soon (from another thread); the run resumes when started again."""
        self._halt.set()

    def _read_slice(self, path: Path, unreadable: dict) -> np.ndarray | None:
        try:
            arr = read_image(path)
        except FileNotFoundError:
            raise EdgeError(f"{path} vanished before it was shipped; it must stay in ACQ_DIR until then") from None
        except Exception as exc:
            first = unreadable.setdefault(path.name, time.monotonic())
            if time.monotonic() - first > max(30.0, 5 * self.opts.settle):
                raise EdgeError(f"{path} is not a readable image ({exc}); fix or remove it and start again") from None
            return None
        unreadable.pop(path.name, None)
        if arr.dtype not in (np.uint8, np.uint16, np.int8, np.int16):
            raise EdgeError(f"{path.name} is {arr.dtype}: voxcodec-edge ships uint8, uint16, int8 or int16 slices")
        if self.layout is None:
            self._set_layout(arr)
        elif arr.shape != self.layout.slice_shape or arr.dtype != np.dtype(self.layout.dtype):
            raise EdgeError(f"{path.name} is {arr.shape[0]}x{arr.shape[1]} {arr.dtype}; this acquisition's slices are "
                            f"{self.layout.slice_shape[0]}x{self.layout.slice_shape[1]} {self.layout.dtype}")
        return arr

    def _set_layout(self, first: np.ndarray):
        o = self.opts
        th, tw = chunk_grid(first.shape, o.tile)
        depth = o.block_depth or auto_block_depth((th, tw))
        lay = {"event": "layout", "slice_shape": list(first.shape), "dtype": first.dtype.name,
               "chunks": [depth, th, tw], "at": round(time.time(), 3)}
        self.layout = self.shipper.layout = ArrayLayout(lay["slice_shape"], lay["dtype"], lay["chunks"], o.preset)
        self.journal.append(lay)
        log.info("slices %dx%d %s: blocks of %d slices, chunks %s", *first.shape, first.dtype, depth,
                 "x".join(map(str, lay["chunks"])))

    def _spool_full(self) -> bool:
        """Wait (return True) while the spool is over its budget or its disk is nearly full."""
        spooled = self.progress.spooled_bytes()
        last = max((sum(c["bytes"] for c in r["chunks"]) for r in self.progress.blocks.values()), default=0)
        if not last and self._inflight and self.layout is not None:  # none coded yet: at most its raw size
            chunk = int(np.prod(self.layout.chunks)) * np.dtype(self.layout.dtype).itemsize
            last = chunk * len(list(self.layout.grid()))
        free = shutil.disk_usage(self.spool).free
        coming = (1 + len(self._inflight)) * last  # the next block, and those being coded, about as large
        if (spooled or self._inflight) and spooled + coming > self.opts.spool_budget:
            if not spooled:  # only blocks being coded would pass the budget: wait for them first, quietly
                return True
            msg = (f"spool budget reached ({spooled / 1e6:.0f} of {self.opts.spool_budget / 1e6:.0f} MB waiting "
                   "for DEST): compression paused until the link catches up; new slices wait in ACQ_DIR")
        elif free < coming + last + 64 * 2**20:
            msg = (f"the disk of --state {self.state} is nearly full ({free / 1e6:.0f} MB free): compression paused; "
                   "free space there or lower --spool-budget")
        else:
            if self.progress.stats["message"].startswith(("spool budget", "the disk of")):
                log.info("spool has room again: compression resumes")
                self.progress.set(message="")
            return False
        if self.progress.stats["message"] != msg:
            if not self.progress.stats["message"].startswith(msg[:12]):
                log.warning(msg)
            self.progress.set(message=msg)
        return True

    def _code_block(self, buffer):
        """Have block ``buffer`` (its slices) coded: here with one worker, else by the pool, at most
        ``workers`` blocks at once; blocks coded are journaled in z order."""
        k = self._next_k
        self._next_k += 1
        depth, th, tw = self.layout.chunks
        d = len(buffer)
        vol = np.stack([a for _, a in buffer])
        if d < depth:  # the last, partial block: zarr pads the chunk with the fill value (0)
            vol = np.concatenate([vol, np.zeros((depth - d, *vol.shape[1:]), vol.dtype)])
        parts, keys, positions = [], [], []
        for iy, ix, y0, x0 in self.layout.grid():
            part = vol[:, y0:y0 + th, x0:x0 + tw]
            if part.shape[1:] != (th, tw):  # in-plane edge chunk: pad by repeating the border (cheap to code)
                part = np.pad(part, ((0, 0), (0, th - part.shape[1]), (0, tw - part.shape[2])), mode="edge")
            parts.append(np.ascontiguousarray(part))
            keys.append((iy, ix))
            positions.append((k, iy, ix))
        files, raw = [f for f, _ in buffer], int(sum(a.nbytes for _, a in buffer))
        while len(self._inflight) >= self.workers:  # at most `workers` blocks in flight
            self._store_oldest()
        job = (parts, self.opts.preset, positions)
        if self.workers < 2:
            self._store_block(k, d, files, raw, keys, _code_chunks(*job))
            return
        if self._pool is None:
            # threads: the native engine releases the GIL, and a process whose shipper thread may hold
            # locks must not fork
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="voxcodec-edge-code")
        self._inflight.append((k, d, files, raw, keys, self._pool.submit(_code_chunks, *job)))
        self._store_done()

    def _store_oldest(self):
        k, d, files, raw, keys, fut = self._inflight.popleft()
        self._store_block(k, d, files, raw, keys, fut.result())

    def _store_done(self):
        """Journal the blocks whose coding has finished, in z order."""
        while self._inflight and self._inflight[0][-1].done():
            self._store_oldest()

    def _drain(self):
        while self._inflight:
            self._store_oldest()

    def _store_block(self, k: int, d: int, files: list, raw: int, keys: list, coded):
        """Spool a coded block's chunks and journal it (the encoder's thread, in z order)."""
        datas, seconds = coded
        depth = self.layout.chunks[0]
        chunks = []
        for (iy, ix), data in zip(keys, datas):
            name = f"{k:08d}.{iy}.{ix}"
            self._spool_write(name, data)
            chunks.append({"key": self.layout.chunk_key((k, iy, ix)), "spool": name, "bytes": len(data),
                           "sha256": sha256(data)})
        rec = {"event": "block", "k": k, "z0": k * depth, "depth": d, "files": files,
               "chunks": chunks, "raw_bytes": raw, "seconds": round(seconds, 3), "at": round(time.time(), 3)}
        self.journal.append(rec)
        self.progress.add_block(rec)
        coded_bytes = sum(c["bytes"] for c in chunks)
        log.debug("block %d: %d slices, %d -> %d bytes in %.1f s", k, d, raw, coded_bytes, seconds)

    def _spool_write(self, name: str, data: bytes):
        while True:
            try:
                write_atomic(self.spool / name, data)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                msg = f"no space left for the spool in {self.spool}: waiting for space (free some, or ship it)"
                if self.progress.stats["message"] != msg:
                    log.warning(msg)
                    self.progress.set(message=msg)
                self.shipper.check_fatal()
                time.sleep(5)

    def _finish(self):
        """Wait until every block is shipped (and verified), then mark the array complete."""
        p = self.progress
        while not self._halt.is_set():
            self.shipper.check_fatal()
            with p.cond:
                if set(p.blocks) <= p.shipped and (not self.opts.delete_source or set(p.blocks) <= p.deleted):
                    break
                p.cond.wait(0.5)
        else:
            return  # stop() while waiting: the next start ships the rest
        backoff = 1.0
        while True:  # the final metadata says complete=true; the link may still be down
            try:
                self.shipper.commit_metadata(max(p.shipped_now(), default=-1), complete=True)
                break
            except (DestinationError, EdgeError):
                raise
            except Exception as exc:
                self.shipper.link_down(exc, backoff)
                if self._halt.wait(backoff):
                    return
                backoff = min(2 * backoff, MAX_BACKOFF)
        self.journal.append({"event": "finished", "slices": len(p.taken), "blocks": len(p.blocks), "at": now()})
        p.mark_finished()
        self._clean_spool()
        self.write_status()
