"""The edge transfer pipeline: slice files in an acquisition folder -> blocks -> voxcodec chunks in a
local spool -> a zarr v3 array at DEST, losing and duplicating nothing whatever crashes.

Three threads. The *encoder* (the caller's thread) takes complete slice files in z order, groups
them into blocks of ``block_depth`` slices, codes each block into the array's chunks (training at
the edge, each chunk fine-tuned from the weights of the chunk above it), writes them to the spool
and journals the block. The *shipper* writes journaled blocks to DEST in order, reads every chunk
back and compares its SHA-256, then grows the array's z extent in its metadata and journals the
block as shipped; with ``delete_source`` it decodes the read-back chunks, compares them with the
checksums of the source slices and only then deletes those files. The *status* thread rewrites
``status.json`` twice a second, however long a block takes to code.

Every step is idempotent and keyed by the block's index, so a restart after ``kill -9`` redoes
at most the step that was cut short: blocks whose chunks were not journaled are coded again from
the source files (still there), journaled blocks are shipped from the spool, a chunk found
half-written or damaged at DEST is rewritten, and the array's extent only ever counts shipped
blocks. See :mod:`voxcodec.edge.journal` for the records.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from .acquisition import SliceWatcher, natural_key
from ..storage.chunks import decode_chunk, encode_chunk
from ..core.encoder import AUTO_TILE, auto_block_depth
from .destination import ArrayLayout, Destination, DestinationError, write_atomic
from ..errors import VoxcodecError
from .journal import Journal
from ..storage.volume_io import read_image

log = logging.getLogger("voxcodec.edge")

STATUS_FILE = "status.json"
#: seconds between two refreshes of status.json (and calls of ``on_tick``) while a run goes on
STATUS_INTERVAL = 0.5
#: the longest wait between two upload attempts while DEST cannot be reached
MAX_BACKOFF = 60.0


@dataclass
class EdgeOptions:
    acq_dir: str
    dest: str
    state_dir: str
    pattern: str = "*.tif"
    block_depth: int | None = None
    preset: str = "default"
    device: str = "cpu"
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


class EdgeError(VoxcodecError):
    """The run cannot go on (bad input, DEST belongs to another run, the spool was tampered with)."""


class VerifyError(EdgeError):
    """What DEST holds differs from the source: nothing is deleted, the run stops."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_grid(slice_shape, tile: int):
    """In-plane chunk size: the whole slice up to ``tile``, else equal parts of at most ``tile``."""
    return tuple(-(-s // -(-s // tile)) for s in slice_shape)


class Rate:
    """Bytes per second over the last ``window`` seconds (added to and read from any thread)."""

    def __init__(self, window: float = 30.0):
        self.window = window
        self.samples: deque = deque()
        self._lock = threading.Lock()

    def add(self, nbytes: int):
        with self._lock:
            self.samples.append((time.monotonic(), nbytes))

    def per_second(self) -> float:
        now = time.monotonic()
        with self._lock:
            while self.samples and now - self.samples[0][0] > self.window:
                self.samples.popleft()
            if not self.samples:
                return 0.0
            span = max(now - self.samples[0][0], 1.0)
            return sum(n for _, n in self.samples) / span


class EdgeRun:
    """One acquisition shipped from ``acq_dir`` to ``dest``; resumable from its ``state_dir``."""

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
        # guards what the encoder, shipper and status threads share: blocks, shipped, deleted, taken, stats
        self._cond = threading.Condition()
        self._status_lock = threading.Lock()  # one writer of status.json at a time
        self._stop = threading.Event()  # ends the shipper thread
        self._halt = threading.Event()  # ends run() early (stop())
        self._fatal: BaseException | None = None
        self.stats = {"started": _now(), "pid": os.getpid(), "link": "ok", "message": "", "late_files": []}
        self.in_rate, self.out_rate = Rate(), Rate()
        self._banks: dict = {}  # training state per chunk position: each block fine-tunes from the one before
        self._replay()

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
                                 "dest": o.dest, "pattern": o.pattern, "preset": o.preset, "started": _now(),
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
        self.blocks = {r["k"]: r for r in self.journal.of("block")}
        self.shipped = {r["k"] for r in self.journal.of("shipped")}
        self.deleted = {r["k"] for r in self.journal.of("deleted")}
        self.finished = bool(self.journal.of("finished"))
        self.taken = {f["name"] for r in self.blocks.values() for f in r["files"]}
        ordered = [f["name"] for k in sorted(self.blocks) for f in self.blocks[k]["files"]]
        self.last_key = natural_key(ordered[-1]) if ordered else None
        self._clean_spool()

    def _clean_spool(self):
        """Remove spool files of blocks never journaled (cut short) or already shipped."""
        keep = {c["spool"] for k, r in self.blocks.items() if k not in self.shipped for c in r["chunks"]}
        for p in self.spool.iterdir():
            if p.name not in keep:
                p.unlink()

    # -- status --------------------------------------------------------------------------------------------
    def status(self) -> dict:
        """The run's state now; safe to call from any thread while the encoder and shipper work."""
        with self._cond:  # copies taken under the lock every mutation of them holds
            blocks = dict(self.blocks)
            shipped = set(self.shipped)
            stats = dict(self.stats, late_files=list(self.stats["late_files"]))
            taken = len(self.taken)
            finished = self.finished
        raw = sum(r["raw_bytes"] for r in blocks.values())
        coded = sum(c["bytes"] for r in blocks.values() for c in r["chunks"])
        spooled = self._spooled_bytes(shipped, blocks)
        return dict(stats, acq_dir=os.path.abspath(self.opts.acq_dir), dest=self.opts.dest,
                    state_dir=str(self.state), preset=self.opts.preset, updated=_now(),
                    slices_taken=taken, slices_shipped=sum(len(blocks[k]["files"]) for k in shipped),
                    blocks_coded=len(blocks), blocks_shipped=len(shipped), raw_bytes=raw, coded_bytes=coded,
                    ratio=raw / coded if coded else None, spool_bytes=spooled, spool_budget=self.opts.spool_budget,
                    in_MBps=self.in_rate.per_second() / 1e6, out_MBps=self.out_rate.per_second() / 1e6,
                    finished=finished)

    def _spooled_bytes(self, shipped: set, blocks: dict | None = None) -> int:
        """Bytes of coded blocks waiting in the spool."""
        blocks = self.blocks if blocks is None else blocks
        return sum(c["bytes"] for k, r in blocks.items() if k not in shipped for c in r["chunks"])

    def _set_stats(self, **kw):
        with self._cond:
            self.stats.update(kw)

    def write_status(self) -> dict:
        """Write the status to ``status.json`` atomically (a reader never sees half of it); return it."""
        with self._status_lock:  # computed under the lock too: the last file written is the newest status
            st = self.status()
            tmp = self.state / (STATUS_FILE + ".tmp")
            tmp.write_text(json.dumps(st, indent=1))
            os.replace(tmp, self.state / STATUS_FILE)
        return st

    def _status_loop(self, on_tick, stop: threading.Event):
        """The status thread: refresh status.json and call ``on_tick`` every STATUS_INTERVAL seconds,
        whatever the encoder is doing (training one block can take minutes)."""
        failed = None
        while True:
            try:
                st = self.write_status()
                if on_tick is not None:
                    on_tick(st)
                failed = None
            except Exception as exc:  # a full disk under --state, a broken terminal: keep the run going
                if repr(exc) != failed:
                    log.warning("cannot refresh the status (%s: %s)", type(exc).__name__, exc)
                    failed = repr(exc)
            if stop.wait(STATUS_INTERVAL):
                return

    # -- the encoder (caller's thread) -------------------------------------------------------------------
    def run(self, on_tick=None) -> dict:
        """Ship the acquisition until it ends (finish marker or idle timeout); returns the final status.

        ``on_tick(status)`` is called about twice a second (a live status line), from a status thread
        that also refreshes ``status.json``, so neither waits for a block being coded."""
        if self.finished:
            log.info("this acquisition was already finished and shipped (%d slices)", len(self.taken))
            self.write_status()
            return self.status()
        stop_status = threading.Event()
        ticker = threading.Thread(target=self._status_loop, args=(on_tick, stop_status), name="voxcodec-edge-status",
                                  daemon=True)
        ticker.start()
        try:
            return self._encode()
        finally:
            stop_status.set()
            ticker.join(timeout=30)
            try:
                self.write_status()
            except OSError:
                pass

    def _encode(self) -> dict:
        o = self.opts
        try:  # a DEST that belongs to something else is refused before any work; an unreachable one is retried
            self._check_dest_owner()
        except DestinationError:
            raise
        except Exception as exc:
            self._link_down(exc, 1)
        watcher = SliceWatcher(o.acq_dir, o.pattern, settle=o.settle, poll=o.poll, ignore={o.finish_marker})
        log.info("watching %s for %s (%s); shipping to %s; state in %s", o.acq_dir, o.pattern, watcher.mode, o.dest,
                 self.state)
        shipper = threading.Thread(target=self._ship_loop, name="voxcodec-edge-shipper", daemon=True)
        shipper.start()
        buffer: list[tuple[dict, np.ndarray]] = []
        last_new = time.monotonic()
        unreadable: dict[str, float] = {}
        try:
            while not self._halt.is_set():
                self._check_fatal()
                if self._spool_full():
                    watcher.wait(o.scan_interval)
                    continue
                files, late, pending = watcher.ready(self.taken, self.last_key)
                with self._cond:
                    self.stats["pending_files"] = pending
                    new_late = [name for name in late if name not in self.stats["late_files"]]
                    self.stats["late_files"].extend(new_late)
                for name in new_late:
                    log.warning("%s arrived after later slices were taken; it is left in ACQ_DIR, not shipped", name)
                took = 0
                for path in files:
                    arr = self._read_slice(path, unreadable)
                    if arr is None:
                        break  # not readable yet: keep z order, try again on the next scan
                    st = path.stat()
                    buffer.append(({"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                    "crc32": zlib.crc32(np.ascontiguousarray(arr).tobytes())}, arr))
                    with self._cond:
                        self.taken.add(path.name)
                    self.last_key = natural_key(path.name)
                    watcher.forget(path.name)
                    self.in_rate.add(arr.nbytes)
                    last_new = time.monotonic()
                    took += 1
                    self._set_stats(buffered_slices=len(buffer))
                    if len(buffer) == self.layout.chunks[0]:
                        self._code_block(buffer)
                        buffer = []
                        self._set_stats(buffered_slices=0)
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
                    log.info("acquisition ended (%s): %d slices", why, len(self.taken))
                    if buffer:
                        self._code_block(buffer)
                        buffer = []
                        self._set_stats(buffered_slices=0)
                    self._finish()
                    return self.status()
                watcher.wait(o.scan_interval)
            log.info("stopped before the acquisition ended; run again to resume")
            return self.status()
        finally:
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            watcher.stop()
            shipper.join(timeout=30)

    def stop(self):
        """Make :meth:`run` return soon (from another thread); the run resumes when started again."""
        self._halt.set()

    def _check_fatal(self):
        if self._fatal is not None:
            raise self._fatal

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
        if arr.dtype not in (np.uint8, np.uint16):
            raise EdgeError(f"{path.name} is {arr.dtype}: voxcodec-edge ships uint8 or uint16 slices")
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
        self.layout = ArrayLayout(lay["slice_shape"], lay["dtype"], lay["chunks"], o.preset)
        self.journal.append(lay)
        log.info("slices %dx%d %s: blocks of %d slices, chunks %s", *first.shape, first.dtype, depth,
                 "x".join(map(str, lay["chunks"])))

    def _spool_full(self) -> bool:
        """Wait (return True) while the spool is over its budget or its disk is nearly full."""
        with self._cond:
            shipped = set(self.shipped)
        spooled = self._spooled_bytes(shipped)
        last = max((sum(c["bytes"] for c in r["chunks"]) for r in self.blocks.values()), default=0)
        free = shutil.disk_usage(self.spool).free
        if spooled and spooled + last > self.opts.spool_budget:
            msg = (f"spool budget reached ({spooled / 1e6:.0f} of {self.opts.spool_budget / 1e6:.0f} MB waiting "
                   "for DEST): compression paused until the link catches up; new slices wait in ACQ_DIR")
        elif free < 2 * last + 64 * 2**20:
            msg = (f"the disk of --state {self.state} is nearly full ({free / 1e6:.0f} MB free): compression paused; "
                   "free space there or lower --spool-budget")
        else:
            if self.stats["message"].startswith(("spool budget", "the disk of")):
                log.info("spool has room again: compression resumes")
                self._set_stats(message="")
            return False
        if self.stats["message"] != msg:
            if not self.stats["message"].startswith(msg[:12]):
                log.warning(msg)
            self._set_stats(message=msg)
        return True

    def _code_block(self, buffer):
        k = max(self.blocks, default=-1) + 1
        depth, th, tw = self.layout.chunks
        d = len(buffer)
        vol = np.stack([a for _, a in buffer])
        if d < depth:  # the last, partial block: zarr pads the chunk with the fill value (0)
            vol = np.concatenate([vol, np.zeros((depth - d, *vol.shape[1:]), vol.dtype)])
        t0 = time.perf_counter()
        chunks = []
        for iy, ix, y0, x0 in self.layout.grid():
            part = vol[:, y0:y0 + th, x0:x0 + tw]
            if part.shape[1:] != (th, tw):  # in-plane edge chunk: pad by repeating the border (cheap to code)
                part = np.pad(part, ((0, 0), (0, th - part.shape[1]), (0, tw - part.shape[2])), mode="edge")
            data = encode_chunk(part, preset=self.opts.preset, banks=self._banks.setdefault((iy, ix), {}),
                                device=self.opts.device)
            name = f"{k:08d}.{iy}.{ix}"
            self._spool_write(name, data)
            chunks.append({"key": self.layout.chunk_key((k, iy, ix)), "spool": name, "bytes": len(data),
                           "sha256": _sha256(data)})
        rec = {"event": "block", "k": k, "z0": k * depth, "depth": d, "files": [f for f, _ in buffer],
               "chunks": chunks, "raw_bytes": int(sum(a.nbytes for _, a in buffer)),
               "seconds": round(time.perf_counter() - t0, 3), "at": round(time.time(), 3)}
        self.journal.append(rec)
        with self._cond:  # the shipper iterates self.blocks under this lock
            self.blocks[k] = rec
            self._cond.notify_all()
        coded = sum(c["bytes"] for c in chunks)
        log.debug("block %d: %d slices, %d -> %d bytes in %.1f s", k, d, rec["raw_bytes"], coded, rec["seconds"])

    def _spool_write(self, name: str, data: bytes):
        while True:
            try:
                write_atomic(self.spool / name, data)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                msg = f"no space left for the spool in {self.spool}: waiting for space (free some, or ship it)"
                if self.stats["message"] != msg:
                    log.warning(msg)
                    self._set_stats(message=msg)
                self._check_fatal()
                time.sleep(5)

    def _finish(self):
        """Wait until every block is shipped (and verified), then mark the array complete."""
        while not self._halt.is_set():
            self._check_fatal()
            with self._cond:
                if set(self.blocks) <= self.shipped and (not self.opts.delete_source or set(self.blocks) <= self.deleted):
                    break
                self._cond.wait(0.5)
        else:
            return  # stop() while waiting: the next start ships the rest
        backoff = 1.0
        while True:  # the final metadata says complete=true; the link may still be down
            try:
                self._commit_metadata(max(self.shipped, default=-1), complete=True)
                break
            except (DestinationError, EdgeError):
                raise
            except Exception as exc:
                self._link_down(exc, backoff)
                if self._halt.wait(backoff):
                    return
                backoff = min(2 * backoff, MAX_BACKOFF)
        self.journal.append({"event": "finished", "slices": len(self.taken), "blocks": len(self.blocks),
                             "at": _now()})
        with self._cond:
            self.finished = True
        self._clean_spool()
        self.write_status()

    # -- the shipper thread ----------------------------------------------------------------------------
    def _ship_loop(self):
        backoff = 1.0
        while not self._stop.is_set():
            with self._cond:
                todo = sorted(k for k in self.blocks if k not in self.shipped)
                todel = sorted(k for k in self.shipped if k not in self.deleted) if self.opts.delete_source else []
                if not todo and not todel:
                    self._cond.wait(1.0)
                    continue
            try:
                if todo:
                    self._ship(todo[0])
                else:
                    self._delete_sources(todel[0])
                if self.stats["link"] != "ok":
                    log.info("DEST reachable again: shipping resumes")
                self._set_stats(link="ok")
                backoff = 1.0
            except (DestinationError, EdgeError) as exc:
                self._fatal = exc
                return
            except Exception as exc:  # link errors: socket, SSH, HTTP, OSError from the remote side
                self._link_down(exc, backoff)
                self._stop.wait(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF)
            with self._cond:
                self._cond.notify_all()

    def _link_down(self, exc, backoff):
        with self._cond:  # called from the shipper and from the encoder (first contact, final metadata)
            first = self.stats["link"] == "ok"
            self.stats["link"] = f"down ({type(exc).__name__}: {exc}); retrying in {backoff:.0f} s"
        if first:
            log.warning("cannot write to DEST (%s: %s): retrying with backoff, compressing into the spool meanwhile",
                        type(exc).__name__, exc)
        self.dest.reset()

    def _check_dest_owner(self):
        if getattr(self, "_owner_checked", False):
            return
        meta = self.dest.read_metadata()
        if meta is not None:
            owner = meta.get("attributes", {}).get("voxcodec_edge", {}).get("run_id")
            if owner != self.run_id:
                raise DestinationError(f"{self.opts.dest} already holds a zarr array written by something else; "
                                       "choose a new DEST (or the --state of the run that wrote it)")
        self._owner_checked = True

    def _ship(self, k: int):
        self._check_dest_owner()
        rec = self.blocks[k]
        for c in rec["chunks"]:
            remote = self.dest.get(c["key"])
            if remote is not None and _sha256(remote) == c["sha256"]:
                continue  # already written before an interruption
            if remote is not None:
                log.warning("block %d: %s at DEST is half-written or damaged (%d bytes); rewriting it", k, c["key"],
                            len(remote))
            path = self.spool / c["spool"]
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise EdgeError(f"spool file {path} of block {k} is missing and DEST does not hold it: "
                                "the spool was changed by hand") from None
            if _sha256(data) != c["sha256"]:
                raise EdgeError(f"spool file {path} of block {k} is damaged (its SHA-256 changed on the edge disk)")
            self.dest.put(c["key"], data)
            back = self.dest.get(c["key"])
            if back is None or _sha256(back) != c["sha256"]:
                raise OSError(f"read-back of {c['key']} does not match what was written")
            self.out_rate.add(len(data))
        self._commit_metadata(k, complete=False)
        self.journal.append({"event": "shipped", "k": k, "at": round(time.time(), 3)})
        with self._cond:
            self.shipped.add(k)
        for c in rec["chunks"]:
            (self.spool / c["spool"]).unlink(missing_ok=True)

    def _commit_metadata(self, k: int, complete: bool):
        """zarr.json with the z extent and slice files of blocks 0..k."""
        self._check_dest_owner()
        names = [f["name"] for j in range(k + 1) for f in self.blocks[j]["files"]]
        depth = (self.blocks[k]["z0"] + self.blocks[k]["depth"]) if k >= 0 else 0
        attrs = {"voxcodec_edge": {
            "run_id": self.run_id, "source": os.path.abspath(self.opts.acq_dir), "pattern": self.opts.pattern,
            "preset": self.opts.preset, "slices": depth, "complete": complete, "slice_files": names,
            "voxel_size": self.voxel_size, "voxel_unit": self.voxel_unit if self.voxel_size else None,
            "late_files": self._late_files(), "updated": _now(), "encoder": f"voxcodec {__version__}"}}
        if self.layout is None:  # finished before any slice arrived: nothing to write
            return
        self.dest.put("zarr.json", self.layout.metadata(depth, attrs))
        self._owner_checked = True

    def _late_files(self) -> list:
        with self._cond:
            return list(self.stats["late_files"])

    def _delete_sources(self, k: int):
        """Decode block ``k`` as read back from DEST; delete its source files if every slice matches."""
        rec = self.blocks[k]
        depth, th, tw = self.layout.chunks
        h, w = self.layout.slice_shape
        vol = np.empty((depth, h, w), self.layout.dtype)
        for (iy, ix, y0, x0), c in zip(self.layout.grid(), rec["chunks"]):
            back = self.dest.get(c["key"])
            if back is None or _sha256(back) != c["sha256"]:
                raise VerifyError(f"block {k}: {c['key']} at DEST changed after it was shipped; sources are kept")
            try:
                part = decode_chunk(back, shape=(depth, th, tw), dtype=self.layout.dtype)
            except VoxcodecError as exc:
                raise VerifyError(f"block {k}: {c['key']} read back from DEST does not decode ({exc}); "
                                  "sources are kept") from None
            vol[:, y0:y0 + th, x0:x0 + tw] = part[:, :min(th, h - y0), :min(tw, w - x0)]
        for z, f in enumerate(rec["files"]):
            if zlib.crc32(vol[z].tobytes()) != f["crc32"]:
                raise VerifyError(f"block {k}: slice {f['name']} read back from DEST differs from the source; "
                                "sources are kept")
        for f in rec["files"]:
            (Path(self.opts.acq_dir) / f["name"]).unlink(missing_ok=True)
        self.journal.append({"event": "deleted", "k": k})
        with self._cond:
            self.deleted.add(k)


def read_status(state_dir) -> dict:
    """The last status a run wrote to ``state_dir``, with ``running`` telling whether it still runs."""
    path = Path(state_dir) / STATUS_FILE
    if not path.exists():
        raise EdgeError(f"no voxcodec-edge status in {state_dir}")
    st = json.loads(path.read_text())
    running = False
    try:
        with open(Path(state_dir) / "lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
            except OSError:
                running = True
    except OSError:
        pass
    st["running"] = running
    return st
