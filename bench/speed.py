#!/usr/bin/env python
"""Speed against JPEG-XL, PNG and JPEG-LS: per core, whole machine, worker scaling, contention.

    python bench/speed.py --shared --prior loo --out bench/results/speed   # every volume in ../shared/data
    python bench/speed.py VOLUME.tif ... --out DIR [--presets fast,default] [--max-slices N] [--prior none]

``--prior``: the zoo priors voxcodec may use: ``none`` (default; every block trains, as voxcodec 0.3
did), ``auto`` (the priors shipped, trained on ../shared/data itself: in-sample there) or ``loo``
(each volume V with ``loo-V`` from ``--zoo``, trained without it; see bench/zoo.py).

Everything it reports is measured in this one run, on this machine:

* **per core**: every codec with one thread (voxcodec ``workers=1, threads=1``; imagecodecs
  ``numthreads=1``), each (volume, codec) in its own process: bits per voxel, encode and decode MB/s
  (MB = 10^6 bytes of voxels), and a check that decoding gave back every voxel;
* **whole machine**: the same codecs on every core: voxcodec with ``workers`` = cores, the slice
  codecs with one single-threaded process per core over the slices (as EM pipelines run JPEG-XL);
* **scaling**: voxcodec's whole-machine MB/s over its per-core MB/s (1 worker against N), on each
  volume and on a stack of the volumes that share a slice shape (more blocks than workers: a volume
  of one block codes on one core, whatever the workers);
* **contention**: on each volume, 4 ``voxcodec encode`` commands at once (each with its default
  workers: every core) against one alone; their combined MB/s over the single one's.

Timings: each process first codes a small crop (voxcodec loads torch and its compiled kernels
then), encodes at least twice and decodes at least three times, and again while the codings so far
took under 3 s (at most six), keeping the fastest of each: a process's first large encode also pays
for fresh memory pages and threads (about 10% on voxcodec), and codings of a fraction of a second
vary by 10% and more on a shared 2-core machine.  Writes DIR/speed.json,
DIR/speed.md and DIR/pareto.png (bits per voxel against MB/s per core, the picture a facility
chooses a codec from).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
sys.path.insert(0, str(HERE))
from bitrate import load_volume, machine_info  # noqa: E402
from voxcodec.core.parallel import cores  # noqa: E402

ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
SLICE_CODECS = ["jpegxl-e1", "jpegxl-e2", "jpegxl-e3", "jpegxl-e5", "jpegxl-e7", "jpegxl-e9", "png", "jpegls"]


def load(path, max_slices=None) -> np.ndarray:
    """A volume (``bitrate.load_volume``), its first ``max_slices`` slices when given."""
    a = load_volume(path)
    return np.ascontiguousarray(a[:max_slices] if max_slices else a)


# -- one codec, in its own process -----------------------------------------------------------------------

def _slice_fns(name: str):
    import imagecodecs as ic

    if name.startswith("jpegxl-e"):
        effort = int(name[len("jpegxl-e"):])
        return (lambda s: ic.jpegxl_encode(s, lossless=True, effort=effort, numthreads=1),
                lambda b: ic.jpegxl_decode(b, numthreads=1))
    if name == "png":
        return (lambda s: ic.png_encode(s, level=9)), ic.png_decode
    if name == "jpegls":
        return (lambda s: ic.jpegls_encode(s, level=0)), ic.jpegls_decode
    raise ValueError(f"unknown codec {name}")


def _enc_slices(args):
    name, part = args
    enc, _ = _slice_fns(name)
    return [enc(s) for s in part]


def _dec_slices(args):
    name, parts = args
    _, dec = _slice_fns(name)
    return np.stack([dec(p) for p in parts])


def bench_prior(path) -> str:
    """The zoo priors voxcodec may use here (``--prior``, passed to the codec processes as
    ``VOXCODEC_BENCH_PRIOR``): "none" (default: every block trains, as in voxcodec 0.3; the priors
    shipped were trained on these volumes), "auto", or "loo": the prior ``loo-<volume>`` trained
    without the volume (bench/zoo.py; its folder in ``VOXCODEC_ZOO``)."""
    p = os.environ.get("VOXCODEC_BENCH_PRIOR", "none")
    if p != "loo":
        return p
    from voxcodec import zoo

    name = f"loo-{Path(path).stem}"
    return name if name in {q.id for q in zoo.available()} else "none"  # a stack of volumes has no such prior


#: encodes and decodes timed per codec, the fastest kept: at least this many, and more (up to
#: REPEAT_MAX) while they fit in REPEAT_SECONDS, so that codings of a fraction of a second, whose
#: timings on a shared 2-core machine vary by 10% and more, are sampled several times
ENCODE_REPEATS, DECODE_REPEATS, REPEAT_MAX, REPEAT_SECONDS = 2, 3, 6, 3.0


def _fastest(fn, least: int):
    """``(fastest seconds, last result)`` of ``fn()`` run ``least`` times, then again while the runs
    so far took under REPEAT_SECONDS in all (at most REPEAT_MAX runs)."""
    best, spent, out, n = float("inf"), 0.0, None, 0
    while n < least or (n < REPEAT_MAX and spent < REPEAT_SECONDS):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best, out


def run_codec(path: str, name: str, workers: int, max_slices=None) -> dict:
    """Encode and decode (at least twice and three times; see :func:`_fastest`), keep the fastest
    of each, compare: one record."""
    vol = load(path, max_slices)
    if name.startswith("voxcodec-"):
        import voxcodec

        preset = name[len("voxcodec-"):]
        prior = bench_prior(path)
        voxcodec.encode(vol[:2, :64, :64], preset=preset, workers=1, train="always", prior=prior)  # loads torch, kernels
        enc_s, data = _fastest(lambda: voxcodec.encode(vol, preset=preset, workers=workers, threads=1, prior=prior),
                               ENCODE_REPEATS)
        size = len(data)
        decode = lambda: voxcodec.decode(data, workers=workers)  # noqa: E731
    else:
        enc, dec = _slice_fns(name)
        dec(enc(vol[0, :64, :64]))
        chunks = np.array_split(np.arange(vol.shape[0]), workers)
        pool = None
        if workers > 1:
            from multiprocessing import get_context

            pool = get_context("fork").Pool(workers)
        def encode():
            if pool is None:
                return [enc(s) for s in vol]
            return [p for ps in pool.map(_enc_slices, [(name, vol[c]) for c in chunks]) for p in ps]

        enc_s, parts = _fastest(encode, ENCODE_REPEATS)
        size = sum(len(p) for p in parts)
        splits = np.cumsum([len(c) for c in chunks])[:-1]

        def decode():
            if pool is None:
                return np.stack([dec(p) for p in parts])
            groups = np.split(np.array(parts, dtype=object), splits)
            return np.concatenate(pool.map(_dec_slices, [(name, list(g)) for g in groups]))
    best, out = _fastest(decode, DECODE_REPEATS)
    if not name.startswith("voxcodec-") and workers > 1:
        pool.close()
    return {"volume": Path(path).stem, "codec": name, "workers": workers, "shape": list(vol.shape),
            "bits_per_voxel": 8 * size / vol.size, "encode_MBps": vol.nbytes / 1e6 / enc_s,
            "decode_MBps": vol.nbytes / 1e6 / best, "encode_seconds": enc_s, "decode_seconds": best,
            "lossless": bool(out.shape == vol.shape and np.array_equal(out, vol))}


def _subprocess(path, name, workers, max_slices) -> dict:
    env = {**os.environ, **ONE_THREAD}
    cmd = [sys.executable, __file__, "--one", str(path), name, str(workers)] + \
        (["--max-slices", str(max_slices)] if max_slices else [])
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{name} on {path} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _stack(vols, out: Path, max_slices=None):
    """The volumes that share the most common slice shape (two or more), stacked along z: a volume of
    several blocks, real EM throughout (written to ``out``; None when no two volumes share a shape)."""
    import tifffile

    shapes = {}
    for v in vols:
        with tifffile.TiffFile(v) as tf:
            shapes.setdefault(tuple(tf.series[0].shape[-2:]), []).append(v)
    group = max(shapes.values(), key=len)
    if len(group) < 2:
        return None
    path = out / f"stack_{'_'.join(p.stem.split('_')[0] for p in group)}.tif"
    tifffile.imwrite(path, np.concatenate([load(p, max_slices) for p in group]), photometric="minisblack")
    return path


# -- contention ------------------------------------------------------------------------------------------

def contention(path: Path, preset: str, jobs: int = 4, max_slices=None) -> dict:
    """``jobs`` CLI encodes at once (default workers) against one encode alone with every core."""
    with tempfile.TemporaryDirectory() as tmp:
        src = path
        if max_slices:
            import tifffile

            src = Path(tmp) / "input.tif"
            tifffile.imwrite(src, load(path, max_slices), photometric="minisblack")
        nbytes = load(src).nbytes
        cli = [sys.executable, "-m", "voxcodec_cli.main", "encode", str(src), "--preset", preset, "-q", "--overwrite",
               "--prior", bench_prior(path)]

        def run(n):
            t0 = time.perf_counter()
            procs = [subprocess.Popen(cli + ["-o", str(Path(tmp) / f"out{i}.vxc")]) for i in range(n)]
            if any(p.wait() for p in procs):
                raise RuntimeError("an encode failed")
            return time.perf_counter() - t0

        alone = run(1)
        together = run(jobs)
    single, combined = nbytes / 1e6 / alone, jobs * nbytes / 1e6 / together
    return {"volume": path.stem, "preset": preset, "jobs": jobs, "cores": cores(), "alone_seconds": alone,
            "together_seconds": together, "alone_MBps": single, "combined_MBps": combined,
            "ratio": combined / single}


# -- report ----------------------------------------------------------------------------------------------

def _agg(recs):
    """MB/s over all volumes (total bytes / total seconds) and bits per voxel relative to JPEG-XL e7."""
    by = {}
    for r in recs:
        by.setdefault(r["codec"], []).append(r)
    e7 = {r["volume"]: r["bits_per_voxel"] for r in recs if r["codec"] == "jpegxl-e7"}
    out = {}
    for name, rs in by.items():
        mb = sum(np.prod(r["shape"]) for r in rs) / 1e6  # uint8 volumes: voxels = bytes
        out[name] = {"encode_MBps": mb / sum(r["encode_seconds"] for r in rs),
                     "decode_MBps": mb / sum(r["decode_seconds"] for r in rs),
                     "bpv_vs_e7": float(np.mean([r["bits_per_voxel"] / e7[r["volume"]] - 1 for r in rs]))
                     if all(r["volume"] in e7 for r in rs) else None}
    return out


def pareto(core_recs, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = _agg(core_recs)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "encode_MBps", "encode"), (axes[1], "decode_MBps", "decode")):
        for name, a in agg.items():
            if a["bpv_vs_e7"] is None:  # JPEG-XL e7, the reference, was not run
                continue
            vox = name.startswith("voxcodec")
            ax.scatter(a[key], 100 * a["bpv_vs_e7"], s=60 if vox else 35, marker="o" if vox else "s",
                       color="tab:red" if vox else ("tab:blue" if name.startswith("jpegxl") else "tab:gray"))
            ax.annotate(name.replace("jpegxl-", "JXL "), (a[key], 100 * a["bpv_vs_e7"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} MB/s per core (1 thread)")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title)
    axes[0].set_ylabel("bits per voxel vs JPEG-XL e7 (%)\n(lower is better)")
    fig.suptitle("Lossless EM: size against speed per core (mean over volumes; up and left is worse)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def report(res: dict) -> str:
    lines = [f"# voxcodec speed ({res['machine']}, {res['cores']} cores)", "",
             f"Command: `{res['command']}`", "", "## Per core (1 thread)", "",
             "| volume | codec | bits/voxel | encode MB/s | decode MB/s | lossless |", "|---|---|---|---|---|---|"]
    for r in res["per_core"]:
        lines.append(f"| {r['volume']} | {r['codec']} | {r['bits_per_voxel']:.3f} | {r['encode_MBps']:.2f} | "
                     f"{r['decode_MBps']:.1f} | {r['lossless']} |")
    lines += ["", f"## Whole machine ({res['cores']} cores)", "",
              "| volume | codec | encode MB/s | decode MB/s | encode x 1 core | decode x 1 core |", "|---|---|---|---|---|---|"]
    core = {(r["volume"], r["codec"]): r for r in res["per_core"]}
    for r in res["machine_wide"]:
        c = core[(r["volume"], r["codec"])]
        lines.append(f"| {r['volume']} | {r['codec']} | {r['encode_MBps']:.2f} | {r['decode_MBps']:.1f} | "
                     f"{r['encode_MBps'] / c['encode_MBps']:.2f} | {r['decode_MBps'] / c['decode_MBps']:.2f} |")
    agg = _agg(res["per_core"])
    lines += ["", "## All volumes, per core", "", "| codec | bits/voxel vs JPEG-XL e7 | encode MB/s | decode MB/s |",
              "|---|---|---|---|"]
    for name, a in sorted(agg.items(), key=lambda kv: kv[1]["bpv_vs_e7"] or 0):
        rel = "n/a" if a["bpv_vs_e7"] is None else f"{100 * a['bpv_vs_e7']:+.2f}%"  # JPEG-XL e7 not run
        lines.append(f"| {name} | {rel} | {a['encode_MBps']:.2f} | {a['decode_MBps']:.1f} |")
    if res.get("scaling"):
        lines += ["", f"## Scaling: 1 worker against {res['cores']}", "",
                  "| volume | codec | bits/voxel | encode MB/s, 1 / N workers | decode MB/s, 1 / N workers | encode x | decode x |",
                  "|---|---|---|---|---|---|---|"]
        for r in res["scaling"]:
            lines.append(f"| {r['volume']} ({'x'.join(map(str, r['shape']))}) | {r['codec']} | {r['bits_per_voxel']:.3f} | "
                         f"{r['encode_MBps_1']:.2f} / {r['encode_MBps_n']:.2f} | {r['decode_MBps_1']:.1f} / "
                         f"{r['decode_MBps_n']:.1f} | {r['encode_MBps_n'] / r['encode_MBps_1']:.2f} | "
                         f"{r['decode_MBps_n'] / r['decode_MBps_1']:.2f} |")
    if res.get("contention"):
        c0 = res["contention"][0]
        lines += ["", "## Contention", "",
                  f"{c0['jobs']} `voxcodec encode --preset {c0['preset']}` commands at once on {c0['cores']} cores (each "
                  "with its default workers, one per core), against one alone:", "",
                  "| volume | one alone: s, MB/s | four at once: s, combined MB/s | ratio |", "|---|---|---|---|"]
        for c in res["contention"]:
            lines.append(f"| {c['volume']} | {c['alone_seconds']:.1f}, {c['alone_MBps']:.2f} | "
                         f"{c['together_seconds']:.1f}, {c['combined_MBps']:.2f} | {c['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volumes", nargs="*", help="TIFF stacks (z, y, x)")
    ap.add_argument("--shared", action="store_true", help="every volume in ../shared/data")
    ap.add_argument("--out", default="bench/results/speed", help="output folder")
    ap.add_argument("--presets", default="fast,default", help="voxcodec presets (comma-separated)")
    ap.add_argument("--codecs", default=",".join(SLICE_CODECS), help="other codecs (comma-separated)")
    ap.add_argument("--max-slices", type=int, help="use the first N slices of each volume (quick runs)")
    ap.add_argument("--contention-volume", help="volume of the contention run (default: every volume)")
    ap.add_argument("--skip-contention", action="store_true")
    ap.add_argument("--prior", default="none", choices=["none", "auto", "loo"],
                    help="zoo priors of voxcodec: none (every block trains; default), auto (the priors shipped, "
                         "trained on ../shared/data itself), loo (loo-<volume> from --zoo, trained without it)")
    ap.add_argument("--zoo", default=str(HERE / "results" / "zoo" / "priors"), help="folder of the loo priors")
    ap.add_argument("--one", nargs=3, metavar=("VOLUME", "CODEC", "WORKERS"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:  # a codec process: the prior comes from the parent (VOXCODEC_BENCH_PRIOR)
        print(json.dumps(run_codec(a.one[0], a.one[1], int(a.one[2]), a.max_slices)))
        return 0
    os.environ["VOXCODEC_BENCH_PRIOR"] = a.prior  # read by the codec processes
    if a.prior == "loo":
        os.environ["VOXCODEC_ZOO"] = os.path.abspath(a.zoo)
    vols = [Path(v) for v in a.volumes] + (sorted(SHARED.glob("*.tif")) if a.shared else [])
    if not vols:
        ap.error("name volumes or pass --shared")
    presets = [p for p in a.presets.split(",") if p]
    codecs = [f"voxcodec-{p}" for p in presets] + [c for c in a.codecs.split(",") if c]
    n = cores()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"machine": machine_info()["cpu"], "cores": n, "command": "python " + " ".join([__file__] + sys.argv[1:]),
           "per_core": [], "machine_wide": []}
    for v in vols:
        for c in codecs:
            r = _subprocess(v, c, 1, a.max_slices)
            res["per_core"].append(r)
            print(f"{v.stem:24s} {c:18s} 1 core   {r['bits_per_voxel']:.3f} bpv  enc {r['encode_MBps']:7.2f}  "
                  f"dec {r['decode_MBps']:6.1f} MB/s  lossless {r['lossless']}", flush=True)
            if n > 1:
                r = _subprocess(v, c, n, a.max_slices)
                res["machine_wide"].append(r)
                print(f"{v.stem:24s} {c:18s} {n} cores  enc {r['encode_MBps']:7.2f}  dec {r['decode_MBps']:6.1f} MB/s",
                      flush=True)
    stack = _stack(vols, Path(a.out), a.max_slices)
    if stack is not None and n > 1:
        res["scaling"] = []
        for c in [f"voxcodec-{p}" for p in presets]:
            one, many = _subprocess(stack, c, 1, None), _subprocess(stack, c, n, None)
            res["scaling"].append({"volume": stack.stem, "codec": c, "shape": one["shape"],
                                   "bits_per_voxel": one["bits_per_voxel"], "workers": n,
                                   "encode_MBps_1": one["encode_MBps"], "encode_MBps_n": many["encode_MBps"],
                                   "decode_MBps_1": one["decode_MBps"], "decode_MBps_n": many["decode_MBps"],
                                   "lossless": one["lossless"] and many["lossless"]})
            print(f"{stack.stem} {c}: encode x{many['encode_MBps'] / one['encode_MBps']:.2f}, "
                  f"decode x{many['decode_MBps'] / one['decode_MBps']:.2f} with {n} workers", flush=True)
        stack.unlink()
    if not a.skip_contention:
        res["contention"] = []
        for cv in [Path(a.contention_volume)] if a.contention_volume else vols:
            c = contention(cv, presets[-1] if "default" not in presets else "default", max_slices=a.max_slices)
            res["contention"].append(c)
            print(f"contention {cv.stem}: ratio {c['ratio']:.2f}", flush=True)
    (out / "speed.json").write_text(json.dumps(res, indent=1))
    (out / "speed.md").write_text(report(res))
    pareto(res["per_core"], out / "pareto.png")
    print(f"wrote {out}/speed.json, speed.md, pareto.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
