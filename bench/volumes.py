#!/usr/bin/env python
"""Whole EM volumes, one thread: voxcodec's presets against JPEG-XL, PNG and voxcodec 0.5.

The results in bench/results/volumes were made with

    python bench/volumes.py --shared --margins --v05 /work/v05/.venv/bin/python --out bench/results/volumes

(``/work/v05``: voxcodec 0.5, ``git worktree add /work/v05 5cb87ac``, with its own virtual environment:
``pip install torch==2.13.0`` then ``pip install -e "/work/v05[bench]"``).  ``--quick`` runs the same on
tiny crops (a smoke test, seconds); ``--codecs`` picks codecs.

Codecs, every one with one thread (``OMP_NUM_THREADS=1`` and the like in every child process):

* ``voxcodec-fast``, ``voxcodec-default``, ``voxcodec-max``: this voxcodec (format 6),
  ``voxcodec.encode(v, preset=..., workers=1)``;
* ``jpegxl-e3``, ``jpegxl-e7``: JPEG-XL lossless, efforts 3 and 7, and ``png`` (level 9), each slice
  coded alone (imagecodecs; JPEG-XL with ``numthreads=1``, PNG is single-threaded);
* with ``--v05 PYTHON``: ``voxcodec0.5-fast``, ``-default``, ``-max``: voxcodec 0.5 (format 5) run in
  that interpreter, each volume V with the leave-one-out prior ``loo-V`` (trained without V; from
  ``--v05-zoo``, by default 0.5's bench/results/zoo/priors, found through ``VOXCODEC_ZOO``) and
  ``workers=1, threads=1``, exactly as 0.5's bench/zoo.py coded them.

``--margins`` also codes each volume inside black margins that drift from slice to slice (24 voxels
more on each side, the volume placed 2 to 21 voxels from the top left corner, a fresh offset on
every slice: the borders of a registered stack, as tests/make_golden.py's ``framed`` makes them).

Each (volume, codec) runs in its own fresh process, which encodes, and its stream is decoded in
another fresh process (for every codec, voxcodec's included) and compared with the source voxel for
voxel.  Timings, MB/s per core (MB = 10^6 bytes of voxels):

* **first**: the process's first coding, timed from before the codec's package is imported (voxcodec
  0.5 then loads torch, the slice codecs their library): what one coding in a fresh process costs;
* **best**: the fastest of at least 2 encodes and 3 decodes (the first included, without its import),
  more while the codings so far took under 3 s, at most 6.

Writes DIR/volumes.json, DIR/volumes.md (per volume x codec; the mean of bits / JPEG-XL e7 bits per
codec; the criteria of issue 22, each met or not met with its numbers) and DIR/volumes.png.
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

ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                               "NUMBA_NUM_THREADS")}
V05 = "voxcodec0.5-"
FORMAT6 = ["voxcodec-fast", "voxcodec-default", "voxcodec-max"]
BASELINES = ["jpegxl-e3", "jpegxl-e7", "png"]
V05_CODECS = [V05 + p for p in ("fast", "default", "max")]
QUICK_CROP = (4, 64, 64)

#: encodes and decodes timed, the fastest kept: at least this many (the first coding included), more
#: while the codings so far took under REPEAT_SECONDS, at most REPEAT_MAX
ENCODE_REPEATS, DECODE_REPEATS, REPEAT_MAX, REPEAT_SECONDS = 2, 3, 6, 3.0


def framed(a: np.ndarray, seed: int) -> np.ndarray:
    """``a`` inside black margins that drift from slice to slice (a local copy of tests/make_golden.py's)."""
    out = np.zeros((a.shape[0], a.shape[1] + 24, a.shape[2] + 24), a.dtype)
    rng = np.random.default_rng(seed)
    for z in range(a.shape[0]):
        t, left = (int(v) for v in rng.integers(2, 22, 2))
        out[z, t:t + a.shape[1], left:left + a.shape[2]] = a[z]
    return out


# -- the child processes: one codec, its items (volumes or slices) in TMP/source_<i>.npy --------------------

def _codec(codec: str, job: dict):
    """``(encode, decode)`` of a codec: ``encode(array, prior) -> [bytes]`` (``prior``: voxcodec 0.5's, the
    others ignore it), ``decode([bytes], shape, dtype) -> array``.
    Imports the codec's package (timed as part of the first coding)."""
    if codec.startswith("voxcodec-") or codec.startswith(V05):
        import voxcodec

        v05 = codec.startswith(V05)
        if v05 != voxcodec.__version__.startswith("0.5"):
            raise RuntimeError(f"{codec} needs {'voxcodec 0.5' if v05 else 'this voxcodec'}, this interpreter "
                               f"({sys.executable}) has voxcodec {voxcodec.__version__}")
        preset = codec.split("-", 1)[1]
        if v05:  # as 0.5's bench/zoo.py: the volume's leave-one-out prior, one worker, one torch thread
            def enc(a, prior):
                return [voxcodec.encode(a, preset=preset, prior=prior, workers=1, threads=1)]
        else:
            def enc(a, prior):
                return [voxcodec.encode(a, preset=preset, workers=1)]

        def dec(parts, shape, dtype):
            return voxcodec.decode(parts[0], workers=1)
        return enc, dec
    import imagecodecs as ic

    if codec.startswith("jpegxl-e"):
        effort = int(codec[len("jpegxl-e"):])
        one_enc = lambda s: ic.jpegxl_encode(s, lossless=True, effort=effort, numthreads=1)  # noqa: E731
        one_dec = lambda b: ic.jpegxl_decode(b, numthreads=1)  # noqa: E731
    elif codec == "png":
        one_enc = lambda s: ic.png_encode(s, level=9)  # noqa: E731
        one_dec = ic.png_decode
    else:
        raise ValueError(f"unknown codec {codec}")

    def enc(a, prior):
        return [one_enc(s) for s in a.reshape(-1, *a.shape[-2:])]

    def dec(parts, shape, dtype):
        return np.stack([one_dec(p) for p in parts])
    return enc, dec


def _runs(fn, least: int, first_seconds: float, first_out):
    """The seconds of ``fn()`` run after a first run (``first_seconds``, ``first_out``) until there are
    ``least`` runs, then while they took under REPEAT_SECONDS in all (at most REPEAT_MAX runs); and the
    outputs of all runs."""
    times, outs = [first_seconds], [first_out]
    while len(times) < least or (len(times) < REPEAT_MAX and sum(times) < REPEAT_SECONDS):
        t0 = time.perf_counter()
        outs.append(fn())
        times.append(time.perf_counter() - t0)
    return times, outs


def _child_sys_path():
    """Nothing from bench/ shadows the codec's imports (the child may run in voxcodec 0.5's interpreter)."""
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != HERE]


def child_encode(codec: str, tmp: str) -> dict:
    """Encode each item of TMP (timed, see the module docstring) and write its parts to TMP."""
    _child_sys_path()
    tmp = Path(tmp)
    job = json.loads((tmp / "job.json").read_text())
    items = []
    fns = None
    for i in range(job["items"]):
        a = np.load(tmp / f"source_{i}.npy")
        t0 = time.perf_counter()
        if fns is None:
            fns = _codec(codec, job)
        t1 = time.perf_counter()
        prior = job["priors"][i]
        parts = fns[0](a, prior)
        t2 = time.perf_counter()
        times, outs = _runs(lambda: fns[0](a, prior), ENCODE_REPEATS, t2 - t1, parts)
        deterministic = all(o == parts for o in outs)
        (tmp / f"payload_{i}.bin").write_bytes(b"".join(parts))
        np.save(tmp / f"lengths_{i}.npy", np.array([len(p) for p in parts], np.int64))
        items.append({"bytes": sum(len(p) for p in parts), "first_seconds": t2 - t0, "import_seconds": t1 - t0,
                      "seconds": times, "deterministic": deterministic})
    return {"items": items, "python": sys.executable, "version": _version(codec)}


def child_decode(codec: str, tmp: str) -> dict:
    """Decode each item's parts (timed), compare with the source voxel for voxel."""
    _child_sys_path()
    tmp = Path(tmp)
    job = json.loads((tmp / "job.json").read_text())
    items = []
    fns = None
    for i in range(job["items"]):
        src = np.load(tmp / f"source_{i}.npy")
        blob = (tmp / f"payload_{i}.bin").read_bytes()
        ends = np.cumsum(np.load(tmp / f"lengths_{i}.npy"))
        parts = [blob[s:e] for s, e in zip(np.concatenate([[0], ends[:-1]]), ends)]
        t0 = time.perf_counter()
        if fns is None:
            fns = _codec(codec, job)
        t1 = time.perf_counter()
        out = fns[1](parts, src.shape, src.dtype)
        t2 = time.perf_counter()
        times, outs = _runs(lambda: fns[1](parts, src.shape, src.dtype), DECODE_REPEATS, t2 - t1, out)
        lossless = all(o.size == src.size and o.dtype == src.dtype and np.array_equal(o.reshape(src.shape), src)
                       for o in (outs[0], outs[-1]))
        items.append({"first_seconds": t2 - t0, "import_seconds": t1 - t0, "seconds": times, "lossless": lossless})
    return {"items": items}


def _version(codec: str) -> str:
    if codec.startswith("voxcodec") or codec.startswith(V05):
        import voxcodec

        return voxcodec.__version__
    import imagecodecs

    return imagecodecs.__version__


def _call(python: str, args: list, env: dict, cwd: str) -> dict:
    res = subprocess.run([python, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                         env={**os.environ, **ONE_THREAD, **env}, cwd=cwd)
    if res.returncode:
        raise RuntimeError(f"{' '.join(args)} failed in {python}:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def code_items(arrays: list, codec: str, python: str | None = None, env: dict | None = None,
               priors: list | None = None) -> dict:
    """Encode ``arrays`` with ``codec`` in a fresh process (``python``, default this interpreter; voxcodec
    0.5 with ``priors[i]`` for ``arrays[i]``) and decode them in another: ``{"encode": ..., "decode": ...}``
    (see child_encode, child_decode)."""
    python = python or sys.executable
    with tempfile.TemporaryDirectory(prefix="vxbench-") as tmp:
        for i, a in enumerate(arrays):
            np.save(Path(tmp) / f"source_{i}.npy", np.ascontiguousarray(a))
        (Path(tmp) / "job.json").write_text(json.dumps({"items": len(arrays),
                                                          "priors": priors or [None] * len(arrays)}))
        enc = _call(python, ["--child-encode", codec, tmp], env or {}, tmp)
        dec = _call(python, ["--child-decode", codec, tmp], env or {}, tmp)
    return {"encode": enc, "decode": dec}


def summarize(a: np.ndarray, e: dict, d: dict) -> dict:
    """One record's sizes, MB/s (first and best) and check from an item's encode and decode results."""
    mb = a.nbytes / 1e6
    return {"bytes": e["bytes"], "bits_per_voxel": 8 * e["bytes"] / a.size,
            "encode_first_MBps": mb / e["first_seconds"], "encode_MBps": mb / min(e["seconds"]),
            "decode_first_MBps": mb / d["first_seconds"], "decode_MBps": mb / min(d["seconds"]),
            "encode_seconds": e["seconds"], "decode_seconds": d["seconds"],
            "encode_first_seconds": e["first_seconds"], "decode_first_seconds": d["first_seconds"],
            "encode_import_seconds": e["import_seconds"], "decode_import_seconds": d["import_seconds"],
            "deterministic": e["deterministic"], "lossless": d["lossless"]}


def v05_setup(python: str | None, zoo: Path | None):
    """``(python, priors folder)`` of voxcodec 0.5, checked (None when not asked for)."""
    if not python:
        return None
    python = str(Path(python).absolute())  # not resolved: a virtual environment's python is a link
    if not Path(python).exists():
        raise SystemExit(f"--v05: no interpreter {python}")
    zoo = zoo or Path(python).parents[2] / "bench" / "results" / "zoo" / "priors"
    res = subprocess.run([python, "-c", "import voxcodec; print(voxcodec.__version__)"], capture_output=True,
                         text=True, cwd=tempfile.gettempdir())
    if res.returncode or not res.stdout.strip().startswith("0.5"):
        raise SystemExit(f"--v05 {python}: voxcodec 0.5 expected, got {res.stdout.strip() or res.stderr[-500:]}")
    if not zoo.is_dir():
        raise SystemExit(f"no folder of leave-one-out priors {zoo} (--v05-zoo)")
    return python, zoo.resolve()


# -- the whole volumes ------------------------------------------------------------------------------------

def volume_array(path: Path, margins: bool, quick: bool) -> np.ndarray:
    sys.path.insert(0, str(HERE))
    from bitrate import load_volume

    vol = load_volume(path)
    if quick:
        vol = vol[:QUICK_CROP[0], :QUICK_CROP[1], :QUICK_CROP[2]]
    if margins:
        vol = framed(vol, 0)
    return np.ascontiguousarray(vol)


def run_volume(path: Path, margins: bool, codec: str, quick: bool, v05) -> dict:
    vol = volume_array(path, margins, quick)
    rec = {"volume": path.stem + ("+margins" if margins else ""), "codec": codec, "shape": list(vol.shape),
           "dtype": str(vol.dtype)}
    if codec.startswith(V05):
        prior = f"loo-{path.stem}"
        res = code_items([vol], codec, python=v05[0], env={"VOXCODEC_ZOO": str(v05[1])}, priors=[prior])
        rec["prior"] = prior
    else:
        res = code_items([vol], codec)
    rec.update(summarize(vol, res["encode"]["items"][0], res["decode"]["items"][0]))
    rec["version"] = res["encode"]["version"]
    return rec


# -- the report -------------------------------------------------------------------------------------------

def _f(x: float) -> str:
    """MB/s: two decimals, three significant digits under 1."""
    return f"{x:.2f}" if x >= 1 else f"{x:.3g}"


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else float("nan")


def criteria(recs: list) -> list:
    """Issue 22's criteria on the plain volumes: ``[(text, met)]``."""
    by = {(r["volume"], r["codec"]): r for r in recs}
    vols = [v for v in dict.fromkeys(r["volume"] for r in recs) if not v.endswith("+margins")]
    out = []

    def have(codec, vs=None):
        return all((v, codec) in by for v in (vs or vols)) and bool(vols)

    def rel(codec, v):
        return by[(v, codec)]["bits_per_voxel"] / by[(v, "jpegxl-e7")]["bits_per_voxel"]

    if not have("jpegxl-e7"):
        return [("JPEG-XL e7 missing: no criteria", False)]
    if have("voxcodec-default"):
        xs = [rel("voxcodec-default", v) for v in vols]
        out.append((f"default: mean x e7 <= 0.95 (mean {np.mean(xs):.4f})", np.mean(xs) <= 0.95))
        worst = max(zip(xs, vols))
        out.append((f"default: each volume x e7 <= 0.97 (worst {worst[0]:.4f}, {worst[1]}; "
                    + ", ".join(f"{v} {x:.4f}" for v, x in zip(vols, xs)) + ")", worst[0] <= 0.97))
    if have("voxcodec-fast"):
        xs = [rel("voxcodec-fast", v) for v in vols]
        out.append((f"fast: mean x e7 <= 0.97 (mean {np.mean(xs):.4f})", np.mean(xs) <= 0.97))
        if have("jpegxl-e3"):
            for what in ("encode", "decode"):
                for kind, key in (("first coding", f"{what}_first_MBps"), ("best", f"{what}_MBps")):
                    pairs = [(by[(v, "voxcodec-fast")][key], by[(v, "jpegxl-e3")][key]) for v in vols]
                    ok = all(f >= e for f, e in pairs)
                    out.append((f"fast: {what} MB/s >= JPEG-XL e3's on each volume, {kind} ("
                                + ", ".join(f"{v} {_f(f)} vs {_f(e)}" for v, (f, e) in zip(vols, pairs)) + ")", ok))
    if have("voxcodec-default"):
        for what, k in (("encode", 0.4), ("decode", 0.7)):
            pairs = [(by[(v, "voxcodec-default")][f"{what}_MBps"], by[(v, "jpegxl-e7")][f"{what}_MBps"]) for v in vols]
            ok = all(d >= k * e for d, e in pairs)
            out.append((f"default: {what} MB/s >= {k} x JPEG-XL e7's on each volume, best ("
                        + ", ".join(f"{v} {_f(d)} vs {_f(k * e)}" for v, (d, e) in zip(vols, pairs)) + ")", ok))
    if have("voxcodec-max"):
        for what, least in (("encode", 0.1), ("decode", 0.5)):
            xs = [by[(v, "voxcodec-max")][f"{what}_MBps"] for v in vols]
            out.append((f"max: {what} >= {least} MB/s on each volume, best ("
                        + ", ".join(f"{v} {x:.3f}" for v, x in zip(vols, xs)) + ")", min(xs) >= least))
    out.append((f"every stream decoded exactly in a fresh process ({sum(r['lossless'] for r in recs)} of "
                f"{len(recs)})", all(r["lossless"] for r in recs)))
    return out


def write_report(results: dict, out: Path):
    recs = results["records"]
    m = results["machine"]
    vols = list(dict.fromkeys(r["volume"] for r in recs))
    codecs = list(dict.fromkeys(r["codec"] for r in recs))
    by = {(r["volume"], r["codec"]): r for r in recs}

    def rel(r):
        e7 = by.get((r["volume"], "jpegxl-e7"))
        return r["bits_per_voxel"] / e7["bits_per_voxel"] if e7 else None

    lines = ["# Whole volumes, one thread", "",
             f"Command: `{results['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores; voxcodec {m['versions'].get('voxcodec')}, imagecodecs "
             f"{m['versions'].get('imagecodecs')}" + (f"; voxcodec 0.5 from `{results['v05']}`" if results.get("v05")
                                                     else "") + f"; {results['seconds']:.0f} s.", "",
             "Bits per voxel; x e7 = bits relative to JPEG-XL lossless effort 7 on the same volume; MB/s per core "
             "(MB = 10^6 bytes of voxels), *first* = the first coding in a fresh process (its import included), "
             "*best* = the fastest of 2-6 encodes and 3-6 decodes; every stream decoded in a fresh process and "
             "compared voxel for voxel. voxcodec0.5-* code each volume with the leave-one-out prior `loo-<volume>` "
             "(trained without it).", ""]
    for title, group in (("Volumes", [v for v in vols if not v.endswith("+margins")]),
                         ("Volumes inside drifting black margins", [v for v in vols if v.endswith("+margins")])):
        if not group:
            continue
        lines += [f"## {title}", "", "| volume | codec | bits/voxel | x e7 | encode MB/s first / best | "
                  "decode MB/s first / best | lossless |", "|---|---|---:|---:|---:|---:|---|"]
        for v in group:
            for c in codecs:
                r = by.get((v, c))
                if r is None:
                    continue
                x = rel(r)
                lines.append(f"| {v} | {c} | {r['bits_per_voxel']:.4f} | {'' if x is None else f'{x:.4f}'} | "
                             f"{_f(r['encode_first_MBps'])} / {_f(r['encode_MBps'])} | "
                             f"{_f(r['decode_first_MBps'])} / {_f(r['decode_MBps'])} | {r['lossless']} |")
        lines += ["", f"Summary ({title.lower()}): mean over the volumes; MB/s = all voxels / all seconds (best).", "",
                  "| codec | mean bits/voxel | mean x e7 | worst x e7 | encode MB/s | decode MB/s | lossless |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for c in codecs:
            rs = [by[(v, c)] for v in group if (v, c) in by]
            if not rs:
                continue
            xs = [rel(r) for r in rs]
            mb = sum(np.prod(r["shape"]) * np.dtype(r["dtype"]).itemsize for r in rs) / 1e6
            enc = mb / sum(min(r["encode_seconds"]) for r in rs)
            dec = mb / sum(min(r["decode_seconds"]) for r in rs)
            worst = max((x for x in xs if x is not None), default=None)
            lines.append(f"| {c} | {_mean(r['bits_per_voxel'] for r in rs):.4f} | {_mean(xs):.4f} | "
                         f"{'' if worst is None else f'{worst:.4f}'} | {_f(enc)} | {_f(dec)} | "
                         f"{all(r['lossless'] for r in rs)} |")
        lines.append("")
    lines += ["## Criteria (issue 22, on the volumes without margins)", ""]
    lines += [f"- {'met' if ok else 'NOT MET'}: {text}" for text, ok in criteria(recs)]
    if results.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in results["failures"]]
    (out / "volumes.md").write_text("\n".join(lines) + "\n")


def plot(results: dict, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in results["records"] if not r["volume"].endswith("+margins")]
    if not recs:
        return
    vols = list(dict.fromkeys(r["volume"] for r in recs))
    codecs = list(dict.fromkeys(r["codec"] for r in recs))
    by = {(r["volume"], r["codec"]): r for r in recs}
    cmap = plt.get_cmap("tab10")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(codecs)
    for i, c in enumerate(codecs):
        xs = np.arange(len(vols)) + (i - (len(codecs) - 1) / 2) * width
        a1.bar(xs, [by[(v, c)]["bits_per_voxel"] if (v, c) in by else np.nan for v in vols], width, label=c,
               color=cmap(i % 10))
    low = min(r["bits_per_voxel"] for r in recs)
    a1.set_ylim(0.85 * low, None)
    a1.set_xticks(range(len(vols)), vols, rotation=15, fontsize=8)
    a1.set_ylabel("bits per voxel (lossless; lower is better)")
    a1.set_title("bits per voxel")
    a1.legend(fontsize=7, ncol=3)
    x = np.arange(len(codecs))
    for j, (what, hatch) in enumerate((("encode", ""), ("decode", "//"))):
        ys = []
        for c in codecs:
            rs = [by[(v, c)] for v in vols if (v, c) in by]
            mb = sum(np.prod(r["shape"]) * np.dtype(r["dtype"]).itemsize for r in rs) / 1e6
            ys.append(mb / sum(min(r[f"{what}_seconds"]) for r in rs))
        a2.bar(x + (j - 0.5) * 0.4, ys, 0.4, label=what, color=[cmap(i % 10) for i in range(len(codecs))],
               hatch=hatch, edgecolor="black", linewidth=0.5)
    a2.set_yscale("log")
    a2.set_xticks(x, codecs, rotation=30, ha="right", fontsize=8)
    a2.set_ylabel("MB/s per core (best; all volumes)")
    a2.set_title("speed, one thread (plain: encode, hatched: decode)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volumes", nargs="*", type=Path, help="TIFF volumes (z, y, x)")
    ap.add_argument("--shared", action="store_true", help=f"every volume in {SHARED}")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/volumes; "
                    "with --quick bench/out/volumes-quick)")
    ap.add_argument("--margins", action="store_true", help="also the volumes inside drifting black margins")
    ap.add_argument("--codecs", nargs="+", default=None,
                    help=f"codecs (default: {' '.join(FORMAT6 + BASELINES)}, and {' '.join(V05_CODECS)} with --v05)")
    ap.add_argument("--v05", metavar="PYTHON", help="the interpreter of a voxcodec 0.5 install")
    ap.add_argument("--v05-zoo", type=Path, help="its leave-one-out priors (default: bench/results/zoo/priors "
                    "of the 0.5 tree that PYTHON's .venv is in)")
    ap.add_argument("--quick", action="store_true", help=f"tiny crops v[:{QUICK_CROP[0]}, :{QUICK_CROP[1]}, "
                    f":{QUICK_CROP[2]}] (a smoke test)")
    ap.add_argument("--child-encode", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--child-decode", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_encode:
        print(json.dumps(child_encode(*args.child_encode)))
        return 0
    if args.child_decode:
        print(json.dumps(child_decode(*args.child_decode)))
        return 0
    vols = list(args.volumes) + (sorted(SHARED.glob("*.tif")) if args.shared else [])
    if not vols:
        ap.error("give volumes or --shared")
    out = args.out or (HERE / "out" / "volumes-quick" if args.quick else HERE / "results" / "volumes")
    v05 = v05_setup(args.v05, args.v05_zoo)
    codecs = args.codecs or (FORMAT6 + BASELINES + (V05_CODECS if v05 else []))
    known = FORMAT6 + BASELINES + V05_CODECS + [f"jpegxl-e{e}" for e in range(1, 10)]
    bad = [c for c in codecs if c not in known]
    if bad:
        ap.error(f"unknown codecs {bad}; known: {' '.join(dict.fromkeys(known))}")
    if any(c.startswith(V05) for c in codecs):
        if not v05:
            ap.error("voxcodec 0.5 codecs need --v05 PYTHON")
        missing = [v.stem for v in vols if not (v05[1] / f"loo-{v.stem}.json").exists()]
        if missing:
            ap.error(f"no leave-one-out prior in {v05[1]} for {missing}")
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    from bitrate import machine_info

    cmd = "python bench/volumes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": cmd, "machine": machine_info(), "date": time.strftime("%Y-%m-%d"),
               "v05": v05[0] if v05 else None, "v05_zoo": str(v05[1]) if v05 else None, "quick": args.quick,
               "repeats": {"encode_least": ENCODE_REPEATS, "decode_least": DECODE_REPEATS, "most": REPEAT_MAX,
                           "seconds": REPEAT_SECONDS},
               "volumes": [str(v) for v in vols], "records": [], "failures": [], "seconds": 0.0}
    t_start = time.time()
    for v in vols:
        for margins in (False, True) if args.margins else (False,):
            for c in codecs:
                try:
                    r = run_volume(v, margins, c, args.quick, v05)
                except RuntimeError as exc:
                    results["failures"].append(f"{c} on {v.stem}{'+margins' if margins else ''}: "
                                               f"{str(exc).strip().splitlines()[-1]}")
                    print(f"FAILED {c} on {v.stem}{'+margins' if margins else ''}:\n{exc}", file=sys.stderr)
                    continue
                results["records"].append(r)
                results["seconds"] = time.time() - t_start
                (out / "volumes.json").write_text(json.dumps(results, indent=1))
                print(f"{r['volume']:<28} {c:<22} {r['bits_per_voxel']:.4f} bpv  enc {r['encode_first_MBps']:7.2f} / "
                      f"{r['encode_MBps']:7.2f} MB/s  dec {r['decode_first_MBps']:7.2f} / {r['decode_MBps']:7.2f} "
                      f"MB/s  lossless {r['lossless']}", flush=True)
    results["seconds"] = time.time() - t_start
    (out / "volumes.json").write_text(json.dumps(results, indent=1))
    write_report(results, out)
    try:
        plot(results, out / "volumes.png")
    except ImportError:
        pass
    print((out / "volumes.md").read_text())
    print(f"results in {out}/ (volumes.json, volumes.md, volumes.png)")
    return 1 if results["failures"] or not all(r["lossless"] for r in results["records"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
