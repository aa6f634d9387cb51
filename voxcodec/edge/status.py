"""How far an edge run is, and where that is shown: ``status.json`` in the run's state folder,
rewritten twice a second by a status thread whatever the encoder and shipper threads are doing
(coding one block can take seconds), and read back by ``voxcodec-edge status``.

:class:`Progress` holds what the encoder, shipper and status threads share (blocks coded, shipped,
sources deleted, slices taken, the link state and messages), under one lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

from .errors import EdgeError

log = logging.getLogger("voxcodec.edge")

STATUS_FILE = "status.json"
#: seconds between two refreshes of status.json (and calls of ``on_tick``) while a run goes on
STATUS_INTERVAL = 0.5


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        t = time.monotonic()
        with self._lock:
            while self.samples and t - self.samples[0][0] > self.window:
                self.samples.popleft()
            if not self.samples:
                return 0.0
            span = max(t - self.samples[0][0], 1.0)
            return sum(n for _, n in self.samples) / span


class Progress:
    """How far the run is: the journal records of the blocks coded, the blocks shipped and those
    whose sources were deleted, the slice files taken; and the live notes of ``stats`` (link state,
    message, files being written, slices buffered, late files) and the in / out rates.

    The encoder, shipper and status threads share it. Every change, and every read that copies or
    iterates what another thread changes, holds ``cond``; its waiters are woken when a block is
    coded, shipped or has its sources deleted."""

    def __init__(self, blocks: dict, shipped: set, deleted: set, taken: set, finished: bool):
        self.cond = threading.Condition()
        self.blocks: dict[int, dict] = blocks  # k -> its "block" journal record (never changed once added)
        self.shipped: set[int] = shipped
        self.deleted: set[int] = deleted
        self.taken: set[str] = taken
        self.finished = finished
        self.stats = {"started": now(), "pid": os.getpid(), "link": "ok", "message": "", "late_files": []}
        self.in_rate, self.out_rate = Rate(), Rate()

    # -- changes ---------------------------------------------------------------------------------------
    def set(self, **stats):
        with self.cond:
            self.stats.update(stats)

    def add_late(self, names) -> list[str]:
        """Note files that arrived after later slices were taken; returns those not noted before."""
        with self.cond:
            new = [name for name in names if name not in self.stats["late_files"]]
            self.stats["late_files"].extend(new)
        return new

    def take(self, name: str):
        with self.cond:
            self.taken.add(name)

    def add_block(self, rec: dict):
        with self.cond:  # the shipper iterates self.blocks under this lock
            self.blocks[rec["k"]] = rec
            self.cond.notify_all()

    def mark_shipped(self, k: int):
        with self.cond:
            self.shipped.add(k)

    def mark_deleted(self, k: int):
        with self.cond:
            self.deleted.add(k)

    def mark_finished(self):
        with self.cond:
            self.finished = True

    # -- reads -----------------------------------------------------------------------------------------
    def late_files(self) -> list[str]:
        with self.cond:
            return list(self.stats["late_files"])

    def shipped_now(self) -> set[int]:
        with self.cond:
            return set(self.shipped)

    def spooled_bytes(self, shipped: set | None = None, blocks: dict | None = None) -> int:
        """Bytes of coded blocks waiting in the spool."""
        blocks = self.blocks if blocks is None else blocks
        shipped = self.shipped_now() if shipped is None else shipped
        return sum(c["bytes"] for k, r in blocks.items() if k not in shipped for c in r["chunks"])

    def status(self, *, acq_dir: str, dest: str, state_dir: str, preset: str, spool_budget: int) -> dict:
        """The status dict (what status.json holds); safe to call from any thread."""
        with self.cond:  # copies taken under the lock every change of them holds
            blocks = dict(self.blocks)
            shipped = set(self.shipped)
            stats = dict(self.stats, late_files=list(self.stats["late_files"]))
            taken = len(self.taken)
            finished = self.finished
        raw = sum(r["raw_bytes"] for r in blocks.values())
        coded = sum(c["bytes"] for r in blocks.values() for c in r["chunks"])
        return dict(stats, acq_dir=acq_dir, dest=dest, state_dir=state_dir, preset=preset, updated=now(),
                    slices_taken=taken, slices_shipped=sum(len(blocks[k]["files"]) for k in shipped),
                    blocks_coded=len(blocks), blocks_shipped=len(shipped), raw_bytes=raw, coded_bytes=coded,
                    ratio=raw / coded if coded else None, spool_bytes=self.spooled_bytes(shipped, blocks),
                    spool_budget=spool_budget, in_MBps=self.in_rate.per_second() / 1e6,
                    out_MBps=self.out_rate.per_second() / 1e6, finished=finished)


class StatusWriter:
    """Writes a status (the dict ``status()`` returns) to ``state_dir/status.json``, atomically (a
    reader never sees half of it); between :meth:`start` and :meth:`stop`, a status thread does so
    every STATUS_INTERVAL seconds and hands each status to ``on_tick``.

    It keeps no reference to ``status`` (a run's bound method) between calls, so a run that is done
    with is freed at once, and with it the lock on its state folder."""

    def __init__(self, state_dir: Path, interval: float = STATUS_INTERVAL):
        self.path = Path(state_dir) / STATUS_FILE
        self.interval = interval
        self._lock = threading.Lock()  # one writer at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def write(self, status) -> dict:
        with self._lock:  # computed under the lock too: the last file written is the newest status
            st = status()
            tmp = self.path.with_name(STATUS_FILE + ".tmp")
            tmp.write_text(json.dumps(st, indent=1))
            os.replace(tmp, self.path)
        return st

    def start(self, status, on_tick=None):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, args=(status, on_tick), name="voxcodec-edge-status",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _loop(self, status, on_tick):
        failed = None
        while True:
            try:
                st = self.write(status)
                if on_tick is not None:
                    on_tick(st)
                failed = None
            except Exception as exc:  # a full disk under --state, a broken terminal: keep the run going
                if repr(exc) != failed:
                    log.warning("cannot refresh the status (%s: %s)", type(exc).__name__, exc)
                    failed = repr(exc)
            if self._stop.wait(self.interval):
                return


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
