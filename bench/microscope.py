"""A simulated microscope: write the slices of a volume into a folder, one image file per slice, at a
set rate, the way acquisition software does.

    python bench/microscope.py ../shared/data/flyem_fib_ts1.tif /acq/run1 --rate 5 --finish

``--mode rename`` (default) writes each slice to a hidden temporary name and renames it into place
(atomic); ``--mode inplace`` writes the file under its final name in several pieces with pauses,
the way a slow writer leaves a partial file visible (``--mode`` matters to the reader, not the data).
With ``--finish`` a ``finish`` marker file is written after the last slice.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np


def slice_bytes(arr: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, arr)
    return buf.getvalue()


def write_slices(volume: np.ndarray, folder, *, rate: float | None = None, mode: str = "rename",
                 start: int = 0, stop: int | None = None, prefix: str = "slice_", finish: bool = False,
                 pieces: int = 4, progress=None):
    """Write ``volume[start:stop]`` as ``{prefix}{z:05d}.tif``, ``rate`` slices per second (None: at once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stop = volume.shape[0] if stop is None else stop
    t0 = time.monotonic()
    for i, z in enumerate(range(start, stop)):
        if rate:
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        data = slice_bytes(volume[z])
        final = folder / f"{prefix}{z:05d}.tif"
        if mode == "rename":
            tmp = folder / f".{final.name}.writing"
            tmp.write_bytes(data)
            os.replace(tmp, final)
        elif mode == "inplace":
            step = -(-len(data) // pieces)
            with open(final, "wb") as f:
                for p in range(0, len(data), step):
                    f.write(data[p:p + step])
                    f.flush()
                    time.sleep(0.05)
        else:
            raise ValueError(f"unknown mode {mode!r}")
        if progress:
            progress(z)
    if finish:
        (folder / "finish").write_text("acquisition complete\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("volume", help="a TIFF stack (z, y, x)")
    p.add_argument("folder", help="the acquisition folder to write into")
    p.add_argument("--rate", type=float, help="slices per second (default: as fast as possible)")
    p.add_argument("--mode", choices=["rename", "inplace"], default="rename")
    p.add_argument("--slices", type=int, help="write only the first N slices")
    p.add_argument("--finish", action="store_true", help="write a 'finish' marker after the last slice")
    args = p.parse_args(argv)
    import tifffile

    vol = tifffile.imread(args.volume)
    write_slices(vol, args.folder, rate=args.rate, mode=args.mode, stop=args.slices, finish=args.finish,
                 progress=lambda z: print(f"\rslice {z}", end="", file=sys.stderr))
    print(file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
