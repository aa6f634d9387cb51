"""Scratch buffers that blocks reuse.

A block of 1024 x 1024 slices needs tens of megabytes of planes, predictions and rANS symbols. Fresh
arrays of that size come from the kernel as new pages: encoding vnc_sstem_stack1 (20 x 1024 x 1024)
took some 34,000 page faults, and in a process whose threads code blocks at once those faults and
the unmapping after them contend for the process's one memory map.  Two encoder threads ran 1.54x
as fast as one (bench/speed.py); with glibc told to keep freed memory, 1.74-1.85x.

So a block borrows a workspace (:func:`borrowed`) for as long as it is coded, and gives it back
afterwards to a free list that the next block, in any thread and in any later encoder or decoder of
the process, borrows again: about 1,200 faults for the same volume on one thread.  What the free list
keeps is bounded (:data:`KEEP_BYTES` in all, the most recently used first); :func:`release` empties it.

Buffers are views into the workspace: valid until the same thread asks for the same name again, so a
caller uses them within one block and never returns them.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

import numpy as np

#: bytes kept between blocks at most: by one workspace, and by the free list in all
KEEP_BYTES = 256 << 20

_LOCAL = threading.local()  # this thread's workspace (a dict: name -> uint8 memory) and borrow depth
_FREE: list[dict] = []  # workspaces no block holds, the most recently given back last
_LOCK = threading.Lock()


def _size(ws: dict) -> int:
    return sum(m.size for m in ws.values())


def _mine() -> dict:
    ws = getattr(_LOCAL, "ws", None)
    if ws is None:
        with _LOCK:
            ws = _FREE.pop() if _FREE else {}
        _LOCAL.ws = ws
    return ws


@contextmanager
def borrowed():
    """Hold a workspace for this thread while the block inside is coded, then give it back to the
    free list (nested uses share the outer one)."""
    depth = getattr(_LOCAL, "depth", 0)
    _LOCAL.depth = depth + 1
    try:
        yield
    finally:
        _LOCAL.depth = depth
        if depth == 0:
            ws = getattr(_LOCAL, "ws", None)
            _LOCAL.ws = None
            if ws:
                with _LOCK:
                    _FREE.append(ws)
                    while sum(_size(w) for w in _FREE) > KEEP_BYTES:
                        _FREE.pop(0)


def borrowing(fn):
    """Decorate a function that codes one block: it runs inside :func:`borrowed`."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with borrowed():
            return fn(*args, **kwargs)
    return run


def buffer(name: str, shape, dtype, zero: bool = False) -> np.ndarray:
    """An array of ``shape`` and ``dtype``: uninitialised unless ``zero``; the same memory as the last
    call with this ``name`` in this thread's workspace, grown when too small."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in (shape if isinstance(shape, tuple) else (shape,)))
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    ws = _mine()
    mem = ws.get(name)
    if mem is None or mem.size < nbytes:
        ws.pop(name, None)
        mem = np.empty(max(nbytes, 1), np.uint8)
        if _size(ws) + mem.size <= KEEP_BYTES:
            ws[name] = mem
    out = mem[:nbytes].view(dtype).reshape(shape)
    if zero:
        out.fill(0)
    return out


def release():
    """Drop the free list and this thread's workspace (the memory goes back to the allocator)."""
    with _LOCK:
        _FREE.clear()
    _LOCAL.ws = None


def held() -> int:
    """Bytes kept: by this thread's workspace and by the free list."""
    with _LOCK:
        free = sum(_size(w) for w in _FREE)
    return free + _size(getattr(_LOCAL, "ws", None) or {})
