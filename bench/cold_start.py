#!/usr/bin/env python
"""A fresh install and a cold start, as a new user meets them: what ``pip install .`` puts on disk, and
how long the first command of a fresh process takes.

    python bench/cold_start.py --out bench/results/cold_start

Steps, each timed on the wall clock:

1. a fresh virtual environment (``python3 -m venv``) and ``pip install`` of this checkout with no
   extras (pip's cache may serve the dependencies; the engine is compiled from source here);
   then the size of its site-packages, the packages in it, and whether torch, numba or constriction
   came along (they must not: format 6 needs numpy and the compiled engine only);
2. in that environment, each command in its own fresh process, timed from before the interpreter
   starts to its exit (``--repeat`` times; the first and the fastest are reported):
   ``voxcodec sample``; ``voxcodec encode --preset fast`` and ``--preset default`` of the sample (1 MB);
   ``voxcodec decode`` of a stream of 4 Mi voxels (the first 4 slices of snemi3d, 1024 x 1024, from
   ../shared/data, or the sample tiled to that size when it is missing), written to a TIFF.

Writes DIR/cold_start.json and DIR/cold_start.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNEMI = ROOT.parent / "shared" / "data" / "snemi3d_ac4_z00-31.tif"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    return env


def timed(cmd, cwd, env) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n"
                         f"{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return dt


def _shown(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cold_start")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    env = _env()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        python = shutil.which("python3") or sys.executable
        t_venv = timed([python, "-m", "venv", str(tmp / "venv")], tmp, env)
        bin_ = tmp / "venv" / "bin"
        t_install = timed([str(bin_ / "pip"), "install", "-q", str(ROOT)], tmp, env)
        site = next((tmp / "venv" / "lib").glob("python*/site-packages"))
        packages = sorted(p.name.split("-")[0] for p in site.glob("*.dist-info"))
        sizes = {}
        for top in site.iterdir():
            if top.is_dir() and not top.name.endswith(".dist-info"):
                sizes[top.name] = du(top)
        present = {m: (site / m).exists() for m in ("torch", "numba", "constriction", "llvmlite")}
        total = du(site)  # (the environment is gone after this block)

        # a 4 Mi-voxel stream, written with this environment's voxcodec
        make = ("import numpy as np, tifffile, voxcodec, sys\n"
                f"p = {str(SNEMI)!r}\n"
                "import os\n"
                "v = (tifffile.imread(p)[:4] if os.path.exists(p)\n"
                "     else np.tile(voxcodec.sample_volume()[:4], (1, 8, 8)))\n"
                "tifffile.imwrite('big.tif', np.ascontiguousarray(v), photometric='minisblack'); print(v.shape)\n")
        (tmp / "make.py").write_text(make)
        subprocess.run([str(bin_ / "python"), "make.py"], cwd=tmp, env=env, check=True, capture_output=True)
        vox = [str(bin_ / "voxcodec")]
        subprocess.run(vox + ["encode", "big.tif", "-o", "big.vxc", "--quiet"], cwd=tmp, env=env, check=True)
        commands = {
            "voxcodec sample": vox + ["sample", "s.tif", "--overwrite"],
            "voxcodec encode --preset fast (sample, 1 MB)": vox + ["encode", "s.tif", "-o", "f.vxc", "--preset", "fast",
                                                                   "--overwrite", "--quiet"],
            "voxcodec encode --preset default (sample, 1 MB)": vox + ["encode", "s.tif", "-o", "d.vxc", "--preset",
                                                                      "default", "--overwrite", "--quiet"],
            "voxcodec decode (4 Mi voxels)": vox + ["decode", "big.vxc", "-o", "back.tif", "--overwrite", "--quiet"],
        }
        timings = {}
        subprocess.run(commands["voxcodec sample"], cwd=tmp, env=env, check=True, capture_output=True)
        for name, cmd in commands.items():
            timings[name] = [timed(cmd, tmp, env) for _ in range(args.repeat)]
        subprocess.run(vox + ["verify", "big.vxc", "--against", "big.tif"], cwd=tmp, env=env, check=True,
                       capture_output=True)
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
              "venv_seconds": t_venv, "install_seconds": t_install, "site_packages_bytes": total,
              "largest": dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:8]), "packages": packages,
              "present": present, "timings": timings}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.json").write_text(json.dumps(result, indent=2))
    md = ["# Fresh install and cold start", "",
          f"`python bench/cold_start.py --out {_shown(args.out)}` on {result['machine']['platform']}, Python "
          f"{result['machine']['python']}, {result['machine']['cpus']} cores.", "",
          f"- `pip install .` (no extras) into a fresh virtual environment: {t_install:.1f} s; site-packages "
          f"{result['site_packages_bytes'] / 1e6:.1f} MB ({', '.join(packages)})",
          "- largest: " + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in result["largest"].items()),
          "- torch, numba, constriction, llvmlite installed: "
          + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in present.items()), "",
          "| command, fresh process (interpreter start to exit) | first s | fastest s |", "|---|---:|---:|"]
    md += [f"| {name} | {ts[0]:.2f} | {min(ts):.2f} |" for name, ts in timings.items()]
    (args.out / "cold_start.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
