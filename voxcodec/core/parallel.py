"""Workers: blocks coded in parallel, one compute thread each.

voxcodec parallelizes across blocks, one worker per core.  Blocks that train (torch) are coded in
worker processes: training is limited to one torch / BLAS / OpenMP thread per process, so that N
workers on N cores never oversubscribe them (oversubscribed torch threads spin: with several jobs on
two cores voxcodec once fell to a tenth of its speed).  Everything else (decoding, and encoding from
a zoo prior as it is) runs in threads: the compiled kernels release the GIL, and a thread needs no
process started nor its block sent back.  Results come back in order and at most ``2 * workers``
blocks are in flight, so memory stays bounded by a few blocks per worker.

Worker processes are forked where the platform can (Linux): they start in milliseconds with every
module and compiled kernel of the parent; elsewhere they are spawned.  They end with the process
that started them, even when it is killed, and leave Ctrl-C to it.  A process that may not have
children (a daemonic pool worker) codes its blocks itself.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import deque

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS")


def cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(workers) -> int:
    """``workers`` as a count: None or 0 mean every core."""
    if workers is None or workers == 0:
        return cores()
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (or None for every core), got {workers}")
    return workers


def one_thread(threads: int = 1):
    """Limit this process to ``threads`` compute threads: torch (if imported), BLAS and OpenMP pools
    already loaded (threadpoolctl), and those loaded later (environment)."""
    for var in _THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _die_with_parent(parent: int):
    """Workers end with the process that started them, even when it is killed (SIGKILL): on Linux
    the kernel signals them; elsewhere they notice the parent is gone when their queue breaks."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _init(parent, threads, init, args):
    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the parent stops the pool, workers do not raise mid-block;
    # a forked worker must not inherit a handler that turns SIGTERM into KeyboardInterrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    one_thread(threads)
    if init is not None:
        init(*args)


def can_fork_children() -> bool:
    import multiprocessing  # (here: a process pool is the exception, and importing it costs a fresh process time)

    return not multiprocessing.current_process().daemon


def pool(workers: int, init=None, args=(), threads: int = 1):
    """A process pool of ``workers`` processes, each limited to ``threads`` compute threads and set up
    by ``init(*args)``; None when this process cannot have children (then code in-process)."""
    if workers < 2 or not can_fork_children():
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init,
                               initargs=(os.getpid(), threads, init, args))


def ordered(executor, fn, items, workers: int, window: int | None = None):
    """``fn(item)`` for each item, computed by ``executor`` (or here when it is None), yielded in
    order; at most ``window`` (default ``2 * workers``) items are in flight."""
    if executor is None:
        for item in items:
            yield fn(item)
        return
    window = window or 2 * workers
    pending = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        while len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
