#!/usr/bin/env python
"""``voxcodec convert`` with 1 worker against 2 (or any list): seconds end to end and the speedup.

    python bench/convert_speed.py                                    # ../shared/data/snemi3d_ac4_z00-31.tif
    python bench/convert_speed.py VOLUME --workers 1,2,4 --preset default --chunks 32,512,512
    python bench/convert_speed.py --zarr                             # from a zarr v2 (blosc) copy of it
    python bench/convert_speed.py --crop 8,256,256 --preset fast     # a quick check that it runs

Each run is the installed ``voxcodec convert`` command in its own process, timed from start to exit
(Python start, the source opened, every chunk coded, written and read back verified, the
metadata validated), into a fresh DEST; ``--repeat N`` keeps the fastest of N. Every result is read
back with plain zarr and compared with the source. Run it on an idle machine: the speedup of N workers
is only meaningful when N cores are free. Prints a table; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "snemi3d_ac4_z00-31.tif"


def voxcodec_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("voxcodec")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "voxcodec_cli.main"]


def load(path: Path, crop) -> np.ndarray:
    import tifffile

    vol = tifffile.imread(path) if path.suffix.lower() in (".tif", ".tiff") else np.load(path)
    if crop:
        vol = vol[:crop[0], :crop[1], :crop[2]]
    return np.ascontiguousarray(vol)


def write_source(vol: np.ndarray, work: Path, as_zarr: bool) -> str:
    """The volume as the converter will read it: a TIFF stack, or a zarr v2 blosc array."""
    if as_zarr:
        import numcodecs
        import zarr

        arr = zarr.create_array(str(work / "src.zarr"), shape=vol.shape, chunks=(32, 256, 256), dtype=vol.dtype,
                                zarr_format=2, compressors=numcodecs.Blosc(cname="zstd", clevel=5))
        arr[:] = vol
        return str(work / "src.zarr")
    import tifffile

    tifffile.imwrite(work / "src.tif", vol)
    return str(work / "src.tif")


def run_once(src: str, dest: Path, workers: int, args) -> float:
    if dest.exists():
        shutil.rmtree(dest)
    cmd = voxcodec_cmd() + ["convert", src, str(dest), "--workers", str(workers), "--preset", args.preset, "-q"]
    if args.chunks:
        cmd += ["--chunks", args.chunks]
    if args.levels > 1:
        cmd += ["--levels", str(args.levels)]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"convert --workers {workers} failed ({res.returncode}): {res.stderr.strip()}")
    return seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("volume", nargs="?", default=str(DEFAULT), help="TIFF stack or .npy (default: %(default)s)")
    ap.add_argument("--workers", default="1,2", help="worker counts to time, comma-separated (default 1,2)")
    ap.add_argument("--preset", default="default", choices=("fast", "default", "max"))
    ap.add_argument("--chunks", help="Z,Y,X (default: convert's, 32,512,512)")
    ap.add_argument("--levels", type=int, default=1)
    ap.add_argument("--crop", help="Z,Y,X: convert only this corner of the volume (a quick check)")
    ap.add_argument("--zarr", action="store_true", help="convert from a zarr v2 (blosc) copy instead of the TIFF")
    ap.add_argument("--repeat", type=int, default=1, help="runs per worker count; the fastest is kept")
    ap.add_argument("--json", help="write the figures to this file")
    args = ap.parse_args(argv)
    counts = [int(w) for w in args.workers.split(",")]
    crop = [int(c) for c in args.crop.split(",")] if args.crop else None
    path = Path(args.volume)
    if not path.exists():
        sys.exit(f"{path} does not exist: give a TIFF stack or .npy volume")
    vol = load(path, crop)
    mb = vol.nbytes / 1e6
    import zarr

    rows = []
    with tempfile.TemporaryDirectory(prefix="convert-speed-") as tmp:
        work = Path(tmp)
        src = write_source(vol, work, args.zarr)
        for w in counts:
            best = min(run_once(src, work / "dest.zarr", w, args) for _ in range(max(1, args.repeat)))
            back = zarr.open_array(str(work / "dest.zarr" / "0"), mode="r")[:]
            if not np.array_equal(back, vol):
                sys.exit(f"--workers {w}: the converted volume differs from the source")
            stored = sum(f.stat().st_size for f in (work / "dest.zarr").rglob("*") if f.is_file())
            rows.append({"workers": w, "seconds": round(best, 2), "MB_per_s": round(mb / best, 3),
                         "ratio": round(vol.nbytes / stored, 3)})
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = round(base / r["seconds"], 3)
    print(f"{path.name}{' (crop ' + args.crop + ')' if crop else ''}: {'x'.join(map(str, vol.shape))} {vol.dtype}, "
          f"{mb:.1f} MB, from {'zarr v2' if args.zarr else 'TIFF'}, preset {args.preset}, chunks "
          f"{args.chunks or 'default'}, {os.cpu_count()} cores here")
    print(f"{'workers':>7} {'seconds':>9} {'MB/s':>8} {'ratio':>7} {'speedup':>8}")
    for r in rows:
        print(f"{r['workers']:>7} {r['seconds']:>9.2f} {r['MB_per_s']:>8.3f} {r['ratio']:>7.3f} {r['speedup']:>7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"volume": str(path), "shape": list(vol.shape), "preset": args.preset,
                                               "chunks": args.chunks, "zarr_source": args.zarr, "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
