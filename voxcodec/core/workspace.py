"""Per-thread scratch buffers that blocks reuse.

A block of 1024 x 1024 slices needs tens of megabytes of planes, predictions and rANS words. Fresh
arrays of that size come from the kernel as new pages: encoding vnc_sstem_stack1 (20 x 1024 x 1024)
took some 34,000 page faults, and in a process whose threads code blocks at once those faults and
the unmapping after them contend for the process's one memory map.  Two encoder threads ran 1.54x
as fast as one (bench/speed.py); with glibc told to keep freed memory, 1.74-1.85x.  A thread now
keeps its buffers (up to :data:`KEEP_BYTES` in all) and codes every block in the same memory: about
1,200 faults for the same volume on one thread.

Buffers are views into the kept memory: valid until the same thread asks for the same name again, so
a caller uses them within one block and never returns them.
"""

from __future__ import annotations

import threading

import numpy as np

#: bytes a thread keeps between blocks at most (larger requests are plain fresh arrays)
KEEP_BYTES = 256 << 20

_LOCAL = threading.local()


def buffer(name: str, shape, dtype, zero: bool = False) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` for this thread: uninitialised unless ``zero``; the same
    memory as the last call with this ``name`` in this thread, grown when too small."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, tuple) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    kept = getattr(_LOCAL, "kept", None)
    if kept is None:
        kept = _LOCAL.kept = {}
    mem = kept.get(name)
    if mem is None or mem.size < nbytes:
        kept.pop(name, None)
        held = sum(m.size for m in kept.values())
        mem = np.empty(max(nbytes, 1), np.uint8)
        if held + mem.size <= KEEP_BYTES:
            kept[name] = mem
    out = mem[:nbytes].view(dtype).reshape(shape)
    if zero:
        out.fill(0)
    return out


def release():
    """Drop this thread's buffers (an encoder or decoder does so when it closes)."""
    _LOCAL.kept = {}


def held() -> int:
    """Bytes this thread keeps."""
    return sum(m.size for m in getattr(_LOCAL, "kept", {}).values())
