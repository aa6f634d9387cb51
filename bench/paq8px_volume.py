#!/usr/bin/env python
"""paq8px on every slice of a whole volume, each slice alone in 2-D: the best known lossless model as
a yardstick for voxcodec's whole-volume figures (``bench/volumes.py``).

    python bench/paq8px_volume.py --paq8px PATH/TO/paq8px ../shared/data/snemi3d_ac4_z00-31.tif \
        --out bench/results/paq8px_volume [--jobs 2]

Each slice is written as a binary PGM, coded with ``paq8px -8``, decoded and compared (as in
``bench/slices.py``); results are kept in DIR/paq8px_cache.json, keyed by the slice and the binary as
there, so a slice coded before by the same binary is not coded again. paq8px codes some 26 KB/s per core, so a 1024 x 1024 x 32 volume takes about 40
minutes of one core; ``--jobs`` slices run at once. Reported: bits per voxel over the whole volume
(the sum of the coded slices), and beside it JPEG-XL lossless e7 and voxcodec's presets on the same
volume, coded in this run on one thread. Writes DIR/paq8px_volume.json and DIR/paq8px_volume.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import slices  # noqa: E402  (the paq8px runner and its cache)


def _one(args):
    a, binary = args
    return slices.paq8px(a, binary)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume", help="a (z, y, x) uint8 TIFF stack")
    ap.add_argument("--paq8px", required=True, metavar="PATH", help="the paq8px binary")
    ap.add_argument("--out", default="bench/results/paq8px_volume", help="output folder")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="slices coded at once")
    ap.add_argument("--presets", default="fast,default,max", help="voxcodec presets coded beside it")
    a = ap.parse_args(argv)
    import imagecodecs
    import tifffile

    import voxcodec

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    vol = np.ascontiguousarray(tifffile.imread(a.volume))
    if vol.dtype != np.uint8 or vol.ndim != 3:
        raise SystemExit(f"{a.volume}: paq8px codes uint8 slices here; this is {vol.dtype} {vol.shape}")
    cache = out / "paq8px_cache.json"
    t0 = time.perf_counter()
    # the cache (slices.py's keys) is read and written here only; the workers just run paq8px
    known = json.loads(cache.read_text()) if cache.exists() else {}
    binary_sha = slices.sha256_file(a.paq8px)
    keys = [slices.paq8px_key(vol[z], binary_sha) for z in range(len(vol))]
    todo = [z for z in range(len(vol)) if not known.get(keys[z], {}).get("lossless")]
    print(f"{len(vol) - len(todo)} slices cached, {len(todo)} to code with {a.jobs} at once", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        for z, res in zip(todo, ex.map(_one, [(vol[z], a.paq8px) for z in todo])):
            known[keys[z]] = res
            cache.write_text(json.dumps(known, indent=1, sort_keys=True))
            print(f"slice {z}: {res['bytes']} bytes, encode {res['encode_seconds']:.0f} s, "
                  f"decode {res['decode_seconds']:.0f} s, lossless {res['lossless']}", flush=True)
    results = [known[k] for k in keys]
    wall = time.perf_counter() - t0
    n = vol.size
    rows = {"paq8px -8 (each slice alone, 2-D)": {"bits_per_voxel": 8 * sum(r["bytes"] for r in results) / n,
                                                   "lossless": all(r["lossless"] for r in results)}}
    jxl = sum(len(imagecodecs.jpegxl_encode(s, lossless=True, effort=7, numthreads=1)) for s in vol)
    rows["JPEG-XL e7 (each slice)"] = {"bits_per_voxel": 8 * jxl / n, "lossless": True}
    for p in a.presets.split(","):
        data = voxcodec.encode(vol, preset=p, workers=1)
        rows[f"voxcodec {p} (3-D)"] = {"bits_per_voxel": 8 * len(data) / n,
                                       "lossless": bool(np.array_equal(voxcodec.decode(data), vol))}
    e7 = rows["JPEG-XL e7 (each slice)"]["bits_per_voxel"]
    for r in rows.values():
        r["x_e7"] = r["bits_per_voxel"] / e7
    name = Path(a.volume).stem
    res = {"volume": name, "shape": list(vol.shape), "paq8px_seconds_wall": wall, "jobs": a.jobs, "rows": rows,
           "slices": results}
    (out / "paq8px_volume.json").write_text(json.dumps(res, indent=1))
    md = [f"# paq8px on every slice of {name}", "",
          f"Command: `python bench/paq8px_volume.py --paq8px PATH {a.volume} --out {a.out} --jobs {a.jobs}`  ",
          f"{vol.shape[0]} slices of {vol.shape[1]} x {vol.shape[2]}; paq8px took {wall / 60:.1f} minutes wall "
          f"with {a.jobs} slices at once.", "",
          "| codec | bits/voxel | x e7 | lossless |", "|---|---:|---:|---|"]
    md += [f"| {k} | {r['bits_per_voxel']:.4f} | {r['x_e7']:.4f} | {r['lossless']} |" for k, r in rows.items()]
    (out / "paq8px_volume.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
