#!/usr/bin/env python
"""Speed against JPEG-XL, PNG and JPEG-LS: per core, whole machine, worker scaling, contention.

    python bench/speed.py --shared --out bench/results/speed        # every volume in ../shared/data
    python bench/speed.py VOLUME.tif ... --out DIR [--presets fast,default] [--codecs ...] [--max-slices N]
    python bench/speed.py --shared --paq8px /path/to/paq8px ...     # and the paq8px anchor on a crop

Everything it reports is measured in this one run, on this machine:

* **per core**: every codec on one core (voxcodec ``workers=1``: its engine codes a block on one
  thread; imagecodecs ``numthreads=1``), each (volume, codec) in its own process: bits per voxel,
  encode and decode MB/s (MB = 10^6 bytes of voxels), and a check that decoding gave back every voxel;
* **whole machine**: the same codecs on every core: voxcodec with ``workers=None`` (one thread per
  core, over the blocks), the slice codecs with one single-threaded process per core over the slices
  (as EM pipelines run JPEG-XL);
* **scaling**: voxcodec's whole-machine MB/s over its per-core MB/s (1 worker against every core),
  on a stack of the volumes that share a slice shape (more blocks than workers: a volume of one
  block codes on one core, whatever the workers);
* **contention**: on each volume, 4 ``voxcodec encode`` commands at once (each with its default
  workers: every core) against one alone; their combined MB/s over the single one's;
* **paq8px** (only with ``--paq8px PATH``): the context-mixing compressor paq8px (``-8``, run as
  a program on a binary PGM) on one core, on each volume's first slice cropped to at most
  512 x 512 (it codes tens of KB/s: a whole volume would take hours), with the bits per voxel
  of the other codecs on that same crop beside it.  Its figures are those of that crop, not of the
  volume, and its times include starting the program (each call also maps its 2.4 GB model).

Timings: each process first codes a small crop (loading the codec's libraries), then encodes at
least twice and decodes at least three times, and again while the codings so far took under 3 s
(at most six).  It reports the first full-size coding of the process beside the fastest: the first
also pays for fresh memory pages and threads, and codings of a fraction of a second vary by 10% and
more on a shared 2-core machine; the summary and the figure use the fastest.  paq8px encodes and
decodes once.  Writes DIR/speed.json, DIR/speed.md and DIR/pareto.png (bits per voxel against MB/s
per core, the picture a facility chooses a codec from).
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
from codecs_registry import Paq8px  # noqa: E402
from voxcodec.core.parallel import cores  # noqa: E402

ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
SLICE_CODECS = ["jpegxl-e1", "jpegxl-e2", "jpegxl-e3", "jpegxl-e5", "jpegxl-e7", "jpegxl-e9", "png", "jpegls"]
#: the largest crop (rows, columns) of a volume's first slice that paq8px codes
PAQ8PX_CROP = 512


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


#: encodes and decodes timed per codec, the fastest kept: at least this many, and more (up to
#: REPEAT_MAX) while they fit in REPEAT_SECONDS, so that codings of a fraction of a second, whose
#: timings on a shared 2-core machine vary by 10% and more, are sampled several times
ENCODE_REPEATS, DECODE_REPEATS, REPEAT_MAX, REPEAT_SECONDS = 2, 3, 6, 3.0


def _fastest(fn, least: int):
    """``(fastest seconds, first seconds, last result)`` of ``fn()`` run ``least`` times, then again
    while the runs so far took under REPEAT_SECONDS in all (at most REPEAT_MAX runs)."""
    best, first, spent, out, n = float("inf"), None, 0.0, None, 0
    while n < least or (n < REPEAT_MAX and spent < REPEAT_SECONDS):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        first = dt if first is None else first
        best, spent, n = min(best, dt), spent + dt, n + 1
    return best, first, out


def voxcodec_workers(workers: int):
    """The ``workers`` voxcodec is given for ``workers`` cores: 1, or None (every core) for all of them."""
    return None if workers > 1 and workers == cores() else workers


def run_codec(path: str, name: str, workers: int, max_slices=None) -> dict:
    """Encode and decode (at least twice and three times; see :func:`_fastest`), compare: one
    record, with the fastest and the first of each."""
    vol = load(path, max_slices)
    if name.startswith("voxcodec-"):
        import voxcodec

        preset = name[len("voxcodec-"):]
        vw = voxcodec_workers(workers)
        voxcodec.decode(voxcodec.encode(vol[:2, :64, :64], preset=preset, workers=1), workers=1)  # loads the engine
        enc_s, enc_first, data = _fastest(lambda: voxcodec.encode(vol, preset=preset, workers=vw), ENCODE_REPEATS)
        size = len(data)
        decode = lambda: voxcodec.decode(data, workers=vw)  # noqa: E731
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

        enc_s, enc_first, parts = _fastest(encode, ENCODE_REPEATS)
        size = sum(len(p) for p in parts)
        splits = np.cumsum([len(c) for c in chunks])[:-1]

        def decode():
            if pool is None:
                return np.stack([dec(p) for p in parts])
            groups = np.split(np.array(parts, dtype=object), splits)
            return np.concatenate(pool.map(_dec_slices, [(name, list(g)) for g in groups]))
    best, dec_first, out = _fastest(decode, DECODE_REPEATS)
    if not name.startswith("voxcodec-") and workers > 1:
        pool.close()
    mb = vol.nbytes / 1e6
    return {"volume": Path(path).stem, "codec": name, "workers": workers, "shape": list(vol.shape),
            "bits_per_voxel": 8 * size / vol.size, "encode_MBps": mb / enc_s, "decode_MBps": mb / best,
            "encode_seconds": enc_s, "decode_seconds": best, "first_encode_MBps": mb / enc_first,
            "first_decode_MBps": mb / dec_first, "first_encode_seconds": enc_first, "first_decode_seconds": dec_first,
            "lossless": bool(out.shape == vol.shape and np.array_equal(out, vol))}


def _crop_bits(name: str, crop: np.ndarray) -> tuple[float, bool]:
    """Bits per voxel of one codec on a (1, h, w) crop, one core, and whether it decoded exactly."""
    if name.startswith("voxcodec-"):
        import voxcodec

        data = voxcodec.encode(crop, preset=name[len("voxcodec-"):], workers=1)
        out = voxcodec.decode(data, workers=1)
        size = len(data)
    else:
        enc, dec = _slice_fns(name)
        data = enc(crop[0])
        out = dec(data)[None]
        size = len(data)
    return 8 * size / crop.size, bool(out.shape == crop.shape and np.array_equal(out, crop))


def run_paq8px(path: str, program: str, others=()) -> dict:
    """paq8px on one core on the first slice of a volume, cropped to PAQ8PX_CROP x PAQ8PX_CROP at most
    (one encode and one decode, each a run of the program; the decoded PGM compared voxel for voxel),
    and the bits per voxel of the codecs ``others`` on the same crop.  ``start_seconds``: one encode
    of an 8 x 8 crop, nearly all of it starting paq8px and mapping its model."""
    vol = load_volume(path)
    crop = np.ascontiguousarray(vol[:1, :PAQ8PX_CROP, :PAQ8PX_CROP])
    codec = Paq8px(program)
    t0 = time.perf_counter()
    codec.encode(crop[:, :8, :8])
    start = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts, _ = codec.encode(crop)
    t1 = time.perf_counter()
    out = codec.decode(parts, crop.shape, crop.dtype)
    t2 = time.perf_counter()
    mb = crop.nbytes / 1e6
    size = sum(len(p) for p in parts)
    rec = {"volume": Path(path).stem, "codec": "paq8px", "params": codec.params, "workers": 1,
           "shape": list(crop.shape), "crop": f"slice 0, rows 0:{crop.shape[1]}, columns 0:{crop.shape[2]}",
           "bits_per_voxel": 8 * size / crop.size, "encode_MBps": mb / (t1 - t0), "decode_MBps": mb / (t2 - t1),
           "encode_seconds": t1 - t0, "decode_seconds": t2 - t1, "start_seconds": start,
           "lossless": bool(out.shape == crop.shape and np.array_equal(out, crop)), "others": {}}
    for name in others:
        bpv, ok = _crop_bits(name, crop)
        rec["others"][name] = {"bits_per_voxel": bpv, "lossless": ok}
    return rec


def _subprocess(path, name, workers, max_slices, extra=()) -> dict:
    env = {**os.environ, **ONE_THREAD}
    cmd = [sys.executable, __file__, "--one", str(path), name, str(workers)] + \
        (["--max-slices", str(max_slices)] if max_slices else []) + list(extra)
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
        cli = [sys.executable, "-m", "voxcodec_cli.main", "encode", str(src), "--preset", preset, "-q", "--overwrite"]

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


def _first_best(r: dict, what: str) -> str:
    best = r[f"{what}_MBps"]
    first = r.get(f"first_{what}_MBps")
    fmt = "{:.2f}" if best < 100 else "{:.1f}"
    return (fmt.format(first) + " / " if first is not None else "") + fmt.format(best)


def report(res: dict) -> str:
    lines = [f"# voxcodec speed ({res['machine']}, {res['cores']} cores)", "",
             f"Command: `{res['command']}`", "", "## Per core (1 thread)", "",
             "MB/s: the first full-size coding in its process / the fastest of several (see bench/speed.py).", "",
             "| volume | codec | bits/voxel | encode MB/s, first / best | decode MB/s, first / best | lossless |",
             "|---|---|---|---|---|---|"]
    for r in res["per_core"]:
        lines.append(f"| {r['volume']} | {r['codec']} | {r['bits_per_voxel']:.3f} | {_first_best(r, 'encode')} | "
                     f"{_first_best(r, 'decode')} | {r['lossless']} |")
    lines += ["", f"## Whole machine ({res['cores']} cores)", "",
              "voxcodec with `workers=None` (every core); the slice codecs with one process per core.", "",
              "| volume | codec | encode MB/s, first / best | decode MB/s, first / best | encode x 1 core | "
              "decode x 1 core |", "|---|---|---|---|---|---|"]
    core = {(r["volume"], r["codec"]): r for r in res["per_core"]}
    for r in res["machine_wide"]:
        c = core[(r["volume"], r["codec"])]
        lines.append(f"| {r['volume']} | {r['codec']} | {_first_best(r, 'encode')} | {_first_best(r, 'decode')} | "
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
    if res.get("paq8px"):
        p0 = res["paq8px"][0]
        others = list(p0["others"])
        lines += ["", "## paq8px anchor: measured on a crop of each volume's first slice, not on the volume", "",
                  f"paq8px {p0['params'].get('version')} `-{p0['params'].get('level')}` on one core, the crop as a "
                  f"binary PGM (at most {PAQ8PX_CROP} x {PAQ8PX_CROP}), one encode and one decode, each a run of "
                  "the program (its start and 2.4 GB model included: `start s`, an 8 x 8 crop's encode); beside "
                  "it, the other codecs' bits per voxel on the same crop (one slice, so voxcodec codes it in 2-D).",
                  "", "| volume | crop | paq8px bits/voxel | encode MB/s | decode MB/s | start s | lossless | "
                  + " | ".join(others) + (" |" if others else ""),
                  "|---|---|---|---|---|---|---|" + "---|" * len(others)]
        for r in res["paq8px"]:
            ok = r["lossless"] and all(o["lossless"] for o in r["others"].values())
            lines.append(f"| {r['volume']} | {r['shape'][1]}x{r['shape'][2]} | {r['bits_per_voxel']:.3f} | "
                         f"{r['encode_MBps']:.3f} | {r['decode_MBps']:.3f} | {r['start_seconds']:.1f} | {ok} | "
                         + " | ".join(f"{r['others'][o]['bits_per_voxel']:.3f}" for o in others)
                         + (" |" if others else ""))
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
    ap.add_argument("--paq8px", metavar="PATH",
                    help=f"also time paq8px (the program at PATH) on one core on each volume's first slice, cropped "
                         f"to at most {PAQ8PX_CROP}x{PAQ8PX_CROP} (tens of seconds each; uint8 volumes only)")
    ap.add_argument("--one", nargs=3, metavar=("VOLUME", "CODEC", "WORKERS"), help=argparse.SUPPRESS)
    ap.add_argument("--others", default="", help=argparse.SUPPRESS)  # a paq8px process: codecs on its crop
    a = ap.parse_args(argv)
    if a.one:  # a codec process
        if a.one[1] == "paq8px":
            print(json.dumps(run_paq8px(a.one[0], a.paq8px, [c for c in a.others.split(",") if c])))
        else:
            print(json.dumps(run_codec(a.one[0], a.one[1], int(a.one[2]), a.max_slices)))
        return 0
    vols = [Path(v) for v in a.volumes] + (sorted(SHARED.glob("*.tif")) if a.shared else [])
    if not vols:
        ap.error("name volumes or pass --shared")
    presets = [p for p in a.presets.split(",") if p]
    codecs = [f"voxcodec-{p}" for p in presets] + [c for c in a.codecs.split(",") if c]
    paq8px = None
    if a.paq8px:
        paq8px = os.path.abspath(os.path.expanduser(a.paq8px))
        if not (os.path.isfile(paq8px) and os.access(paq8px, os.X_OK)):
            ap.error(f"--paq8px: no executable at {a.paq8px}")
        import tifffile

        wide = []
        for v in vols:
            with tifffile.TiffFile(v) as tf:
                if tf.series[0].dtype != np.uint8:
                    wide.append(f"{v} ({tf.series[0].dtype})")
        if wide:
            ap.error("--paq8px codes uint8 volumes only (8-bit PGM slices): " + ", ".join(wide))
    n = cores()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"machine": machine_info()["cpu"], "cores": n, "command": "python bench/speed.py " + " ".join(sys.argv[1:]),
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
    if paq8px:
        res["paq8px"] = []
        for v in vols:
            r = _subprocess(v, "paq8px", 1, None, ["--paq8px", paq8px, "--others", ",".join(codecs)])
            res["paq8px"].append(r)
            print(f"{v.stem:24s} {'paq8px':18s} 1 core   {r['bits_per_voxel']:.3f} bpv  enc {r['encode_MBps']:7.3f}  "
                  f"dec {r['decode_MBps']:6.3f} MB/s  lossless {r['lossless']}  (slice 0, crop "
                  f"{r['shape'][1]}x{r['shape'][2]}; start {r['start_seconds']:.1f} s)", flush=True)
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
