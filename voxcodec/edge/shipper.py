"""The shipper thread of an edge run: journaled blocks from the local spool to the zarr array at DEST.

Blocks go in order. Each chunk is written, read back and its SHA-256 compared with the one
journaled when it was coded (a chunk already at DEST with that digest, from before an interruption,
is kept; a half-written or damaged one is rewritten). Then the array's metadata grows its z extent
to cover the block, the block is journaled as shipped and its spool files are removed. With
``delete_source``, shipped blocks are then read back from DEST once more, decoded and compared with
the checksums of their source slices, and only if every slice matches are the source files deleted.

An error of the link (socket, SSH, HTTP, an OSError from the remote side) is retried with backoff
up to MAX_BACKOFF seconds while the encoder goes on filling the spool; any other error
(:class:`DestinationError`, :class:`EdgeError`) ends the run: the encoder finds it in ``fatal``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zlib
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import VoxcodecError
from ..storage.chunks import decode_chunk
from .destination import ArrayLayout, Destination, DestinationError
from .errors import EdgeError, VerifyError
from .journal import Journal
from .status import Progress, now

log = logging.getLogger("voxcodec.edge")

#: the longest wait between two upload attempts while DEST cannot be reached
MAX_BACKOFF = 60.0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Shipper:
    """Ships the blocks recorded in ``progress`` from ``spool`` to ``dest`` (see the module's doc).

    ``layout`` is None until the run has read its first slice (no block exists before that)."""

    def __init__(self, dest: Destination, spool: Path, journal: Journal, progress: Progress, *, run_id: str,
                 acq_dir: str, dest_url: str, pattern: str, preset: str, delete_source: bool, voxel_size, voxel_unit,
                 layout: ArrayLayout | None):
        self.dest, self.spool, self.journal, self.progress = dest, spool, journal, progress
        self.run_id, self.acq_dir, self.dest_url = run_id, acq_dir, dest_url
        self.pattern, self.preset, self.delete_source = pattern, preset, delete_source
        self.voxel_size, self.voxel_unit = voxel_size, voxel_unit
        self.layout = layout
        self.fatal: BaseException | None = None  # the error that ended the shipper thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_checked = False

    # -- the thread ------------------------------------------------------------------------------------
    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="voxcodec-edge-shipper", daemon=True)
        self._thread.start()

    def stop(self):
        """Ask the thread to end (it finishes the step it is in); :meth:`join` waits for it."""
        self._stop.set()
        with self.progress.cond:
            self.progress.cond.notify_all()

    def join(self, timeout: float = 30):
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def check_fatal(self):
        if self.fatal is not None:
            raise self.fatal

    def _loop(self):
        p = self.progress
        backoff = 1.0
        while not self._stop.is_set():
            with p.cond:
                todo = sorted(k for k in p.blocks if k not in p.shipped)
                todel = sorted(k for k in p.shipped if k not in p.deleted) if self.delete_source else []
                if not todo and not todel:
                    p.cond.wait(1.0)
                    continue
            try:
                if todo:
                    self.ship(todo[0])
                else:
                    self.delete_sources(todel[0])
                if p.stats["link"] != "ok":
                    log.info("DEST reachable again: shipping resumes")
                p.set(link="ok")
                backoff = 1.0
            except (DestinationError, EdgeError) as exc:
                self.fatal = exc
                return
            except Exception as exc:  # link errors: socket, SSH, HTTP, OSError from the remote side
                self.link_down(exc, backoff)
                self._stop.wait(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF)
            with p.cond:
                p.cond.notify_all()

    # -- the steps (also called from the encoder's thread: first contact, final metadata) ---------------
    def link_down(self, exc, backoff):
        with self.progress.cond:
            first = self.progress.stats["link"] == "ok"
            self.progress.stats["link"] = f"down ({type(exc).__name__}: {exc}); retrying in {backoff:.0f} s"
        if first:
            log.warning("cannot write to DEST (%s: %s): retrying with backoff, compressing into the spool meanwhile",
                        type(exc).__name__, exc)
        self.dest.reset()

    def check_dest_owner(self):
        if self._owner_checked:
            return
        meta = self.dest.read_metadata()
        if meta is not None:
            owner = meta.get("attributes", {}).get("voxcodec_edge", {}).get("run_id")
            if owner != self.run_id:
                raise DestinationError(f"{self.dest_url} already holds a zarr array written by something else; "
                                       "choose a new DEST (or the --state of the run that wrote it)")
        self._owner_checked = True

    def ship(self, k: int):
        self.check_dest_owner()
        rec = self.progress.blocks[k]
        for c in rec["chunks"]:
            remote = self.dest.get(c["key"])
            if remote is not None and sha256(remote) == c["sha256"]:
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
            if sha256(data) != c["sha256"]:
                raise EdgeError(f"spool file {path} of block {k} is damaged (its SHA-256 changed on the edge disk)")
            self.dest.put(c["key"], data)
            back = self.dest.get(c["key"])
            if back is None or sha256(back) != c["sha256"]:
                raise OSError(f"read-back of {c['key']} does not match what was written")
            self.progress.out_rate.add(len(data))
        self.commit_metadata(k, complete=False)
        self.journal.append({"event": "shipped", "k": k, "at": round(time.time(), 3)})
        self.progress.mark_shipped(k)
        for c in rec["chunks"]:
            (self.spool / c["spool"]).unlink(missing_ok=True)

    def commit_metadata(self, k: int, complete: bool):
        """zarr.json with the z extent and slice files of blocks 0..k."""
        self.check_dest_owner()
        blocks = self.progress.blocks
        names = [f["name"] for j in range(k + 1) for f in blocks[j]["files"]]
        depth = (blocks[k]["z0"] + blocks[k]["depth"]) if k >= 0 else 0
        attrs = {"voxcodec_edge": {
            "run_id": self.run_id, "source": os.path.abspath(self.acq_dir), "pattern": self.pattern,
            "preset": self.preset, "slices": depth, "complete": complete, "slice_files": names,
            "voxel_size": self.voxel_size, "voxel_unit": self.voxel_unit if self.voxel_size else None,
            "late_files": self.progress.late_files(), "updated": now(), "encoder": f"voxcodec {__version__}"}}
        if self.layout is None:  # finished before any slice arrived: nothing to write
            return
        self.dest.put("zarr.json", self.layout.metadata(depth, attrs))
        self._owner_checked = True

    def delete_sources(self, k: int):
        """Decode block ``k`` as read back from DEST; delete its source files if every slice matches."""
        rec = self.progress.blocks[k]
        depth, th, tw = self.layout.chunks
        h, w = self.layout.slice_shape
        vol = np.empty((depth, h, w), self.layout.dtype)
        for (iy, ix, y0, x0), c in zip(self.layout.grid(), rec["chunks"]):
            back = self.dest.get(c["key"])
            if back is None or sha256(back) != c["sha256"]:
                raise VerifyError(f"block {k}: {c['key']} at DEST changed after it was shipped; sources are kept")
            try:
                part = decode_chunk(back, shape=(depth, th, tw), dtype=self.layout.dtype, position=(k, iy, ix))
            except VoxcodecError as exc:
                raise VerifyError(f"block {k}: {c['key']} read back from DEST does not decode ({exc}); "
                                  "sources are kept") from None
            vol[:, y0:y0 + th, x0:x0 + tw] = part[:, :min(th, h - y0), :min(tw, w - x0)]
        for z, f in enumerate(rec["files"]):
            if zlib.crc32(vol[z].tobytes()) != f["crc32"]:
                raise VerifyError(f"block {k}: slice {f['name']} read back from DEST differs from the source; "
                                  "sources are kept")
        for f in rec["files"]:
            (Path(self.acq_dir) / f["name"]).unlink(missing_ok=True)
        self.journal.append({"event": "deleted", "k": k})
        self.progress.mark_deleted(k)
