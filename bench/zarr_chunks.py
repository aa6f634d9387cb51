#!/usr/bin/env python
"""Bits per voxel of zarr arrays with voxcodec chunks, and the speedup of dask worker processes.

    python bench/zarr_chunks.py [VOLUME.tif ...] [--shared] [--crop 256] [--chunks 64 128] --out DIR

For each volume a centred in-plane crop (all slices, at most 128) is written to zarr v3 arrays with
cubic chunks, once per codec: voxcodec (each chunk a format 6 stream: its model learns while it
codes, nothing shared), voxcodec_png and voxcodec_jpegxl. Every array is read back and compared.
Then the same crop of the first volume is written through dask.distributed with 1 and with 2 worker
processes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"


def crop(vol, size, depth=128, offset=(0, 0)):
    z = min(vol.shape[0], depth)
    y0 = max((vol.shape[1] - size) // 2 + offset[0], 0)
    x0 = max((vol.shape[2] - size) // 2 + offset[1], 0)
    return np.ascontiguousarray(vol[:z, y0:y0 + size, x0:x0 + size])


def stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "c").rglob("*") if f.is_file())


def write(path, vol, chunk, serializer):
    import zarr

    arr = zarr.create_array(str(path), shape=vol.shape, chunks=(chunk,) * 3, dtype=vol.dtype, serializer=serializer,
                            compressors=None, fill_value=0, overwrite=True)
    t0 = time.perf_counter()
    arr[...] = vol
    t1 = time.perf_counter()
    back = zarr.open_array(str(path), mode="r")[...]
    return t1 - t0, bool(np.array_equal(back, vol))


def dask_speedup(vol, chunk, preset, tmp: Path) -> dict:
    import dask.array as da
    import distributed
    import zarr

    from voxcodec.zarr import VoxCodec

    out = {}
    for workers in (1, 2):
        path = tmp / f"dask{workers}.zarr"
        arr = zarr.create_array(str(path), shape=vol.shape, chunks=(chunk,) * 3, dtype=vol.dtype,
                                serializer=VoxCodec(preset=preset), compressors=None, fill_value=0, overwrite=True)
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cl, distributed.Client(cl):
            x = da.from_array(vol, chunks=(chunk,) * 3)
            t0 = time.perf_counter()
            da.store(x, arr, lock=False, compute=True)
            out[workers] = time.perf_counter() - t0
        assert np.array_equal(zarr.open_array(str(path), mode="r")[...], vol)
    return {"seconds_1_worker": out[1], "seconds_2_workers": out[2], "speedup": out[1] / out[2],
            "MBps_1_worker": vol.nbytes / 1e6 / out[1], "MBps_2_workers": vol.nbytes / 1e6 / out[2]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("volumes", nargs="*")
    p.add_argument("--shared", action="store_true", help=f"every volume in {SHARED}")
    p.add_argument("--crop", type=int, default=256, help="in-plane crop size (default 256)")
    p.add_argument("--chunks", type=int, nargs="+", default=[64, 128])
    p.add_argument("--preset", default="default")
    p.add_argument("--out", default="bench/zarr_out")
    p.add_argument("--no-dask", action="store_true")
    a = p.parse_args(argv)
    import tifffile
    from tqdm.auto import tqdm

    from voxcodec.storage.volume_io import sample_path
    from voxcodec.zarr import JpegXlCodec, PngCodec, VoxCodec

    vols = list(a.volumes) + (sorted(str(f) for f in SHARED.glob("*.tif")) if a.shared else [])
    vols = vols or [sample_path()]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vxzarr"))
    records = []
    try:
        jobs = [(v, c) for v in vols for c in a.chunks]
        for v, chunk in tqdm(jobs, desc="volumes x chunk sizes"):
            full = tifffile.imread(v)
            vol = crop(full, a.crop)
            codecs = {"voxcodec": VoxCodec(preset=a.preset), "voxcodec_png": PngCodec(level=9),
                      "voxcodec_jpegxl": JpegXlCodec(effort=7)}
            for name, codec in codecs.items():
                path = tmp / "a.zarr"
                secs, ok = write(path, vol, chunk, codec)
                nbytes = stored_bytes(path)
                records.append({"volume": Path(v).stem, "crop": list(vol.shape), "chunk": chunk, "codec": name,
                                "bits_per_voxel": 8 * nbytes / vol.size, "write_MBps": vol.nbytes / 1e6 / secs,
                                "lossless": ok})
                shutil.rmtree(path)
        speed = None
        if not a.no_dask:
            full = tifffile.imread(vols[0])
            speed = {"volume": Path(vols[0]).stem, "chunk": min(a.chunks), "preset": a.preset,
                     **dask_speedup(crop(full, a.crop), min(a.chunks), a.preset, tmp)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
           "cores": os.cpu_count(), "records": records, "dask": speed}
    (out / "results.json").write_text(json.dumps(res, indent=1))
    lines = [f"Command: `{res['command']}` ({os.cpu_count()} cores)", "",
             "| volume | crop | chunk | codec | bits/voxel | write MB/s | lossless |", "|---|---|---:|---|---:|---:|---|"]
    for r in records:
        lines.append(f"| {r['volume']} | {'x'.join(map(str, r['crop']))} | {r['chunk']}^3 | {r['codec']} | "
                     f"{r['bits_per_voxel']:.3f} | {r['write_MBps']:.2f} | {'yes' if r['lossless'] else 'NO'} |")
    if speed:
        lines += ["", f"dask.distributed on {speed['volume']} ({speed['chunk']}^3 chunks, preset {speed['preset']}): "
                      f"1 worker process {speed['seconds_1_worker']:.1f} s ({speed['MBps_1_worker']:.2f} MB/s), "
                      f"2 worker processes {speed['seconds_2_workers']:.1f} s ({speed['MBps_2_workers']:.2f} MB/s): "
                      f"speedup {speed['speedup']:.2f}x"]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["lossless"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
