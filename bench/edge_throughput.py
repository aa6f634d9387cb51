"""Input rate the edge tool sustains, per preset, next to its compression ratio.

    python bench/edge_throughput.py --out bench/edge_results                  # FlyEM FIB-SEM + SNEMI3D
    python bench/edge_throughput.py --volumes ../shared/data/isbi_train.tif --presets fast --dest sftp

Each run: the volume's slices are written into an acquisition folder as one TIFF per slice (with a
``finish`` marker), then ``voxcodec-edge`` ships them to a fresh zarr array (a local directory, or
with ``--dest sftp`` an OpenSSH server on 127.0.0.1 started for the run) as fast as it can. The
array is read back with plain zarr and compared with the source. Reported:

- sustained MB/s: input bytes / (last block shipped - first slice read), from the run's journal:
  the rate the tool keeps up with once running (slices, coding, spool, upload, read-back check);
- end-to-end MB/s: input bytes / wall time of the whole command (Python start included);
- ratio and bits per voxel of the shipped chunks, and PNG (zlib 9, each slice alone) on the same slices.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import microscope  # noqa: E402

SHARED = HERE.parent.parent / "shared" / "data"
DEFAULT_VOLUMES = [SHARED / "flyem_fib_ts1.tif", SHARED / "snemi3d_ac4_z00-31.tif"]


def edge_exe():
    exe = os.path.join(os.path.dirname(sys.executable), "voxcodec-edge")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "voxcodec_cli.edge"]


def block_depth(shape) -> int:
    """The tool's automatic depth, but at least four blocks per volume so that the run streams."""
    from voxcodec.core.encoder import auto_block_depth
    from voxcodec.edge import chunk_grid

    return max(1, min(auto_block_depth(chunk_grid(shape[1:], 2048)), math.ceil(shape[0] / 4)))


def png_bytes(vol) -> int:
    import imagecodecs

    return sum(len(imagecodecs.png_encode(s, level=9)) for s in vol)


def run_one(path: Path, vol, preset: str, dest_kind: str, work: Path, server=None, workers: int = 0) -> dict:
    import zarr

    acq, state, dest = work / "acq", work / "state", work / "dest.zarr"
    for p in (acq, state, dest):
        shutil.rmtree(p, ignore_errors=True)
    microscope.write_slices(vol, acq, finish=True)
    depth = block_depth(vol.shape)
    url, extra = str(dest), []
    if dest_kind == "sftp":
        url = server.url(dest)
        for k, v in server.storage_options.items():
            extra += ["--storage-option", f"{k}={','.join(v) if isinstance(v, list) else v}"]
    cmd = edge_exe() + [str(acq), url, "--state", str(state), "--preset", preset, "--block-depth", str(depth),
                        "--settle", "0", "--workers", str(workers), "-q", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise RuntimeError(f"voxcodec-edge failed: {res.stderr}")
    recs = [json.loads(line) for line in (state / "journal.jsonl").read_text().splitlines()]
    blocks = [r for r in recs if r["event"] == "block"]
    start = next(r["at"] for r in recs if r["event"] == "layout")
    end = max(r["at"] for r in recs if r["event"] == "shipped")
    raw = sum(b["raw_bytes"] for b in blocks)
    coded = sum(c["bytes"] for b in blocks for c in b["chunks"])
    back = zarr.open_array(str(dest), mode="r")[:]
    return {"volume": path.stem, "shape": list(vol.shape), "preset": preset, "dest": dest_kind, "block_depth": depth,
            "workers": workers,
            "blocks": len(blocks), "input_MB": raw / 1e6, "coded_MB": coded / 1e6, "ratio": raw / coded,
            "bits_per_voxel": 8 * coded / vol.size / vol.itemsize, "coding_s": sum(b["seconds"] for b in blocks),
            "sustained_MBps": raw / 1e6 / (end - start), "end_to_end_MBps": raw / 1e6 / wall, "wall_s": wall,
            "lossless": bool(np.array_equal(back, vol))}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count()}


def markdown(results, pngs) -> str:
    lines = ["| volume | preset | DEST | workers | block depth | input MB | ratio | bits/voxel | PNG ratio | "
             "sustained MB/s | end-to-end MB/s | lossless |", "|" + "---|" * 12]
    for r in results:
        w = r.get("workers") or "all"
        lines.append(f"| {r['volume']} | {r['preset']} | {r['dest']} | {w} | {r['block_depth']} | "
                     f"{r['input_MB']:.1f} | "
                     f"{r['ratio']:.3f} | {r['bits_per_voxel']:.3f} | {pngs[r['volume']]:.3f} | "
                     f"{r['sustained_MBps']:.2f} | {r['end_to_end_MBps']:.2f} | {r['lossless']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--volumes", nargs="+", type=Path, default=DEFAULT_VOLUMES)
    p.add_argument("--presets", nargs="+", default=["fast", "default", "max"])
    p.add_argument("--dest", choices=["local", "sftp"], default="local")
    p.add_argument("--out", type=Path, default=HERE / "edge_results")
    p.add_argument("--workers", nargs="+", type=int, default=[0],
                   help="voxcodec-edge --workers for each run (default 0: every core); several values: one run each")
    args = p.parse_args(argv)
    server = None
    work = Path(tempfile.mkdtemp(prefix="voxcodec-edge-bench-"))
    try:
        if args.dest == "sftp":
            sys.path.insert(0, str(HERE.parent / "tests"))
            import sshd

            server = sshd.SshServer(work / "sshd").start()
        results, pngs = [], {}
        for path in args.volumes:
            vol = tifffile.imread(path)
            pngs[path.stem] = vol.nbytes / png_bytes(vol)
            for preset in args.presets:
                for workers in args.workers:
                    r = run_one(path, vol, preset, args.dest, work, server, workers)
                    results.append(r)
                    print(f"{r['volume']:>22} {preset:>8} workers {workers or 'all'}: ratio {r['ratio']:.3f} "
                          f"(PNG {pngs[path.stem]:.3f}), "
                          f"sustained {r['sustained_MBps']:.2f} MB/s, end-to-end {r['end_to_end_MBps']:.2f} MB/s, "
                          f"lossless {r['lossless']}", flush=True)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine(), "command": "python bench/edge_throughput.py " + " ".join(argv or sys.argv[1:]),
            "results": results, "png_ratio": pngs}
    (args.out / "results.json").write_text(json.dumps(info, indent=1))
    (args.out / "results.md").write_text(markdown(results, pngs))
    print(markdown(results, pngs))
    return 0 if all(r["lossless"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
