"""The edge tool's journal: an append-only file of JSON lines, each flushed to disk before the step
it records is taken to have happened.

A process killed mid-write leaves at most one torn last line; opening the journal drops it (the
step it described is redone). Records, in the order a block goes through them:

- ``{"event": "run", ...}``: the run's settings and identity (first line).
- ``{"event": "layout", ...}``: slice shape, dtype and chunking, once the first slice was read.
- ``{"event": "block", "k": ..., "files": [...], "chunks": [...]}``: block ``k`` is coded and its
  chunks are in the local spool (written and fsynced before this line).
- ``{"event": "shipped", "k": ...}``: its chunks were written to DEST, read back with matching
  SHA-256, and the array's metadata now includes it.
- ``{"event": "deleted", "k": ...}``: its source files were deleted after the read-back decoded to
  the source voxels.
- ``{"event": "finished", ...}``: the acquisition ended and every block is shipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import VoxcodecError


class Journal:
    def __init__(self, state_dir):
        self.path = Path(state_dir) / "journal.jsonl"
        self.records: list[dict] = []
        self.dropped_tail = 0
        good = 0
        if self.path.exists():
            data = self.path.read_bytes()
            for line in data.splitlines(keepends=True):
                try:
                    if not line.endswith(b"\n"):
                        raise ValueError("torn line")
                    rec = json.loads(line)
                    if not isinstance(rec, dict) or "event" not in rec:
                        raise ValueError("not a record")
                except ValueError:
                    break
                self.records.append(rec)
                good += len(line)
            tail = data[good:]
            if b"\n" in tail:  # a whole line that does not parse: not the torn end of a killed write
                raise VoxcodecError(f"{self.path} is damaged at line {len(self.records) + 1}; it was not left "
                                    "so by an interrupted voxcodec-edge. Move it away to start a new run.")
            self.dropped_tail = len(tail)
        self._f = open(self.path, "ab")
        if self.dropped_tail:  # the torn last line of a killed process: the step it began is redone
            self._f.truncate(good)
        new = not good
        if new:
            _fsync_dir(self.path.parent)

    def append(self, rec: dict):
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
        self._f.write(line)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records.append(rec)

    def of(self, event: str) -> list[dict]:
        return [r for r in self.records if r["event"] == event]

    def close(self):
        self._f.close()


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
