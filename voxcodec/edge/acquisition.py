"""Slice files arriving in an acquisition folder: which ones are complete, in z order.

A microscope writes one image per slice. A file is *complete* once its writer closed it or renamed
it into place (reported by ``watchdog``: inotify's close-write and move events), or, where no such
event can be seen (network shares, files already there at start), once its size and modification
time have not changed for ``settle`` seconds. Files are handed out in natural name order
(``s_9.tif`` before ``s_10.tif``) and only as an unbroken run: a file still being written holds
back every file after it, so z order never has a gap.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from pathlib import Path

from ..storage.volume_io import natural_key

log = logging.getLogger("voxcodec.edge")



class SliceWatcher:
    """Watch ``folder`` for files matching ``pattern`` (a shell pattern on the file name).

    ``poll=True`` uses watchdog's polling observer (for network shares, where inotify sees no
    remote writes); without watchdog installed, or when inotify cannot start, it polls as well.
    Either way a directory scan every call to :meth:`ready` is the ground truth; events only make
    completion known sooner and wake the caller.
    """

    def __init__(self, folder, pattern: str = "*.tif", *, settle: float = 2.0, poll: bool = False,
                 ignore=()):
        self.folder = Path(folder)
        self.ignore = set(ignore)
        self.pattern = pattern
        self.settle = float(settle)
        self.wake = threading.Event()
        self._complete: set[str] = set()
        self._stat: dict[str, tuple[int, int, float]] = {}
        self._lock = threading.Lock()
        self._observer = None
        self.mode = "scan"
        self._start_observer(poll)

    # -- events ------------------------------------------------------------------------------------
    def matches(self, name: str) -> bool:
        return not name.startswith(".") and name not in self.ignore and fnmatch.fnmatchcase(name, self.pattern)

    def _start_observer(self, poll: bool):
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer
            from watchdog.observers.polling import PollingObserver
        except ImportError:
            log.warning("watchdog is not installed: scanning %s once a second (pip install watchdog)", self.folder)
            return
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_closed(self, event):  # a writer closed the file it wrote (inotify IN_CLOSE_WRITE)
                watcher._event(event.src_path, complete=True)

            def on_moved(self, event):  # an atomic rename into place
                watcher._event(event.dest_path, complete=True)

            def on_created(self, event):
                watcher._event(event.src_path, complete=False)

            def on_modified(self, event):
                watcher._event(event.src_path, complete=False)

        for cls, mode in ((None, None) if poll else (Observer, "inotify"), (PollingObserver, "polling")):
            if cls is None:
                continue
            try:
                obs = cls(timeout=1.0) if cls is PollingObserver else cls()
                obs.schedule(Handler(), str(self.folder), recursive=False)
                obs.daemon = True
                obs.start()
            except OSError as exc:
                log.warning("%s watcher failed on %s (%s); falling back to polling", mode, self.folder, exc)
                continue
            self._observer, self.mode = obs, mode
            return

    def _event(self, path, complete: bool):
        name = os.path.basename(os.fsdecode(path))
        if not self.matches(name):
            return
        if complete:
            with self._lock:
                self._complete.add(name)
        self.wake.set()

    # -- queries -----------------------------------------------------------------------------------
    def listing(self) -> list[str]:
        """Names in the folder that match the pattern, in z order."""
        with os.scandir(self.folder) as it:
            names = [e.name for e in it if self.matches(e.name) and e.is_file()]
        return sorted(names, key=natural_key)

    def ready(self, taken: set[str], last_key=None) -> tuple[list[Path], list[str], int]:
        """``(complete files in z order not yet taken, late files, files still being written)``.

        Late files sort before ``last_key`` (the last file already taken): they arrived out of
        order and cannot be placed any more."""
        now = time.monotonic()
        out, late, pending, blocked = [], [], 0, False
        for name in self.listing():
            if name in taken:
                continue
            key = natural_key(name)
            if last_key is not None and key <= last_key:
                late.append(name)
                continue
            complete = self._is_complete(name, now)  # every file, so that each one's settle clock runs
            if complete and not blocked:
                out.append(self.folder / name)
            else:
                pending += 1
                blocked = True
        return out, late, pending

    def _is_complete(self, name: str, now: float) -> bool:
        with self._lock:
            if name in self._complete:
                return True
        try:
            st = os.stat(self.folder / name)
        except FileNotFoundError:
            return False
        sig = (st.st_size, st.st_mtime_ns)
        old = self._stat.get(name)
        if old is None or old[:2] != sig:
            self._stat[name] = (*sig, now)
            return self.settle <= 0 and st.st_size > 0
        return st.st_size > 0 and now - old[2] >= self.settle

    def forget(self, name: str):
        """Drop what is known about ``name`` (once it was taken)."""
        with self._lock:
            self._complete.discard(name)
        self._stat.pop(name, None)

    def wait(self, timeout: float):
        self.wake.wait(timeout)
        self.wake.clear()

    def stop(self):
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
