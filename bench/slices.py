#!/usr/bin/env python
"""The ten slices of issue 22, each coded alone in 2-D: voxcodec against JPEG-XL e7, paq8px and voxcodec 0.5.

The results in bench/results/slices were made with

    python bench/slices.py --paq8px /work/paq/paq8px --v05 /work/v05/.venv/bin/python --out bench/results/slices

(``/work/v05``: voxcodec 0.5, see bench/volumes.py; paq8px: the GPL compressor, run as a program).
``--quick`` codes 64 x 64 crops of the same slices (a smoke test); ``--only NAME ...`` some of the slices
(``isbi_train-z10``); ``--codecs`` some of the codecs.

The slices are ``v[z, :512, :512]`` of the volumes in ../shared/data: cdeep3m_sbem_mito z5, z15;
flyem_fib_ts1 z100, z200 (its whole 250 x 250 slice); isbi_train z10, z20; snemi3d_ac4_z00-31 z10, z20;
vnc_sstem_stack1 z5, z15.  Each is coded as a volume of one slice (no slice before to predict from) by

* ``voxcodec-fast``, ``voxcodec-default``, ``voxcodec-max`` (this voxcodec, format 6, ``workers=1``);
* ``jpegxl-e7``: JPEG-XL lossless effort 7 (imagecodecs, ``numthreads=1``);
* ``paq8px`` (``--paq8px PATH``): ``paq8px -8`` on the slice as a binary PGM (its image model), the size of
  its archive (the PGM header and the file name included, some 20 bytes); decoded with ``paq8px -d`` and
  compared.  It codes some 14 KB/s, so its results are kept in DIR/paq8px_cache.json and reused for a
  slice whose sha256 (with its shape) and the binary's sha256 match;
* ``voxcodec0.5-default``, ``voxcodec0.5-fast`` (``--v05 PYTHON``): voxcodec 0.5 with the leave-one-out
  prior of the slice's volume (``loo-<volume>``, trained without it), ``workers=1, threads=1``.

One thread everywhere (``OMP_NUM_THREADS=1`` and the like in every child process).  Each codec runs in a
fresh process that encodes every slice and another that decodes them, comparing voxel for voxel; MB/s
per core (MB = 10^6 bytes of voxels) are the fastest of at least 2 encodes and 3 decodes per slice
(more while under 3 s, at most 6; bench/volumes.py), over all slices; paq8px's are of its one run
(a process start and 2.4 GB of tables each).

Writes DIR/slices.json and DIR/slices.md: per slice bits per voxel with x e7 in brackets, and x paq8px;
per codec the means of the per-slice ratios; and the criteria of issue 22 (default <= 1.03 x paq8px,
max <= 1.01 x paq8px, as the mean of the per-slice ratios).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from volumes import SHARED, V05, _f, code_items, summarize, v05_setup  # noqa: E402

SLICES = [("cdeep3m_sbem_mito", 5), ("cdeep3m_sbem_mito", 15), ("flyem_fib_ts1", 100), ("flyem_fib_ts1", 200),
          ("isbi_train", 10), ("isbi_train", 20), ("snemi3d_ac4_z00-31", 10), ("snemi3d_ac4_z00-31", 20),
          ("vnc_sstem_stack1", 5), ("vnc_sstem_stack1", 15)]
SIDE, QUICK_SIDE = 512, 64
FORMAT6 = ["voxcodec-fast", "voxcodec-default", "voxcodec-max"]
V05_CODECS = [V05 + "default", V05 + "fast"]
PAQ_LEVEL = "-8"


def slice_name(volume: str, z: int) -> str:
    return f"{volume}-z{z}"


def load_slices(data: Path, side: int, only=None) -> list:
    """``[(name, volume, z, slice)]``: ``v[z, :side, :side]`` of each slice of SLICES (or of ``only``)."""
    from bitrate import load_volume

    out, cache = [], {}
    for vol, z in SLICES:
        name = slice_name(vol, z)
        if only and name not in only:
            continue
        if vol not in cache:
            cache = {vol: load_volume(data / f"{vol}.tif")}
        out.append((name, vol, z, np.ascontiguousarray(cache[vol][z, :side, :side])))
    return out


# -- paq8px, a program ------------------------------------------------------------------------------------

def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def slice_sha(a: np.ndarray) -> str:
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def paq8px(a: np.ndarray, binary: str) -> dict:
    """Code a 2-D uint8 slice with ``paq8px -8`` as a binary PGM, decode it, compare: sizes and seconds."""
    if a.dtype != np.uint8 or a.ndim != 2:
        raise ValueError("paq8px codes 2-D uint8 slices here (an 8-bit PGM)")
    pgm = f"P5\n{a.shape[1]} {a.shape[0]}\n255\n".encode() + a.tobytes()
    with tempfile.TemporaryDirectory(prefix="vxpaq-") as tmp:
        Path(tmp, "s.pgm").write_bytes(pgm)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        res = subprocess.run([binary, PAQ_LEVEL, "s.pgm", "s.paq8px"], cwd=tmp, capture_output=True, text=True, env=env)
        t1 = time.perf_counter()
        if res.returncode or not Path(tmp, "s.paq8px").exists():
            raise RuntimeError(f"paq8px failed to encode:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        size = Path(tmp, "s.paq8px").stat().st_size
        res = subprocess.run([binary, "-d", "s.paq8px", "r.pgm"], cwd=tmp, capture_output=True, text=True, env=env)
        t2 = time.perf_counter()
        if res.returncode or not Path(tmp, "r.pgm").exists():
            raise RuntimeError(f"paq8px failed to decode:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        lossless = Path(tmp, "r.pgm").read_bytes() == pgm
    return {"bytes": size, "encode_seconds": t1 - t0, "decode_seconds": t2 - t1, "lossless": lossless,
            "level": PAQ_LEVEL}


def paq8px_key(a: np.ndarray, binary_sha256: str) -> str:
    """The cache key of a slice coded by the paq8px binary of that sha256 (at PAQ_LEVEL)."""
    return f"{slice_sha(a)}:{binary_sha256}:{PAQ_LEVEL}"


def paq8px_cached(a: np.ndarray, binary: str, cache_path: Path) -> tuple[dict, bool]:
    """:func:`paq8px`, or its result from ``cache_path`` for the same slice and binary: ``(result, cached)``."""
    key = paq8px_key(a, sha256_file(binary))
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    if key in cache and cache[key].get("lossless"):
        return cache[key], True
    res = paq8px(a, binary)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    cache[key] = res
    cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True))
    return res, False


# -- the report -------------------------------------------------------------------------------------------

def means(recs: list, codecs: list, names: list) -> dict:
    """Per codec: mean bits per voxel, mean of the per-slice ratios to e7 and to paq8px, MB/s over all slices."""
    by = {(r["slice"], r["codec"]): r for r in recs}
    out = {}
    for c in codecs:
        rs = [by[(n, c)] for n in names if (n, c) in by]
        if not rs:
            continue
        e7 = [r["bits_per_voxel"] / by[(r["slice"], "jpegxl-e7")]["bits_per_voxel"] for r in rs
              if (r["slice"], "jpegxl-e7") in by]
        paq = [r["bits_per_voxel"] / by[(r["slice"], "paq8px")]["bits_per_voxel"] for r in rs
               if (r["slice"], "paq8px") in by]
        mb = sum(np.prod(r["shape"]) for r in rs) / 1e6
        out[c] = {"slices": len(rs), "bits_per_voxel": float(np.mean([r["bits_per_voxel"] for r in rs])),
                  "x_e7": float(np.mean(e7)) if len(e7) == len(rs) else None,
                  "x_paq8px": float(np.mean(paq)) if len(paq) == len(rs) else None,
                  "encode_MBps": mb / sum(min(r["encode_seconds"]) for r in rs),
                  "decode_MBps": mb / sum(min(r["decode_seconds"]) for r in rs),
                  "lossless": all(r["lossless"] for r in rs)}
    return out


def criteria(summary: dict) -> list:
    out = []
    for c, most in (("voxcodec-default", 1.03), ("voxcodec-max", 1.01)):
        x = summary.get(c, {}).get("x_paq8px")
        if x is None:
            out.append((f"{c.split('-')[1]}: <= {most} x paq8px (no paq8px or no {c} in this run)", None))
        else:
            out.append((f"{c.split('-')[1]}: mean of the per-slice ratios to paq8px <= {most} ({x:.4f})", x <= most))
    n = sum(s["slices"] for s in summary.values())
    out.append((f"every slice decoded exactly ({n} codings)", all(s["lossless"] for s in summary.values())))
    return out


def write_report(results: dict, out: Path):
    recs = results["records"]
    m = results["machine"]
    names = list(dict.fromkeys(r["slice"] for r in recs))
    codecs = list(dict.fromkeys(r["codec"] for r in recs))
    by = {(r["slice"], r["codec"]): r for r in recs}
    shapes = {r["slice"]: r["shape"] for r in recs}
    lines = ["# Ten slices, each coded alone in 2-D", "",
             f"Command: `{results['command']}`  ",
             f"Machine: {m['cpu']}, {m['cores']} cores; voxcodec {m['versions'].get('voxcodec')}, imagecodecs "
             f"{m['versions'].get('imagecodecs')}" + (f"; voxcodec 0.5 from `{results['v05']}`" if results.get("v05")
                                                     else "")
             + (f"; paq8px `{results['paq8px']}` (sha256 {results['paq8px_sha256'][:12]}, {PAQ_LEVEL})"
                if results.get("paq8px") else "") + f"; {results['seconds']:.0f} s.", "",
             "Bits per voxel, and in brackets relative to JPEG-XL lossless effort 7 on the same slice. "
             "voxcodec0.5-* use the leave-one-out prior of the slice's volume. Every coding decoded and compared "
             "voxel for voxel (✗: not lossless).", "",
             "| slice | shape | " + " | ".join(codecs) + " |", "|---|---|" + "---:|" * len(codecs)]
    for n in names:
        e7 = by.get((n, "jpegxl-e7"))
        cells = []
        for c in codecs:
            r = by.get((n, c))
            if r is None:
                cells.append("")
                continue
            rel = f" ({r['bits_per_voxel'] / e7['bits_per_voxel']:.3f})" if e7 else ""
            cells.append(f"{r['bits_per_voxel']:.4f}{rel}" + ("" if r["lossless"] else " ✗"))
        lines.append(f"| {n} | {'x'.join(map(str, shapes[n]))} | " + " | ".join(cells) + " |")
    if "paq8px" in codecs:
        lines += ["", "Bits relative to paq8px on the same slice:", "",
                  "| slice | " + " | ".join(codecs) + " |", "|---|" + "---:|" * len(codecs)]
        for n in names:
            p = by.get((n, "paq8px"))
            cells = [f"{by[(n, c)]['bits_per_voxel'] / p['bits_per_voxel']:.4f}" if p and (n, c) in by else ""
                     for c in codecs]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    summary = results["summary"]
    lines += ["", "Means over the slices (of the per-slice ratios); MB/s per core over all slices, one thread "
              "(encode / decode; paq8px: one run, a process start included):", "",
              "| codec | mean bits/voxel | mean x e7 | mean x paq8px | encode MB/s | decode MB/s | lossless |",
              "|---|---:|---:|---:|---:|---:|---|"]
    for c, s in summary.items():
        e7 = "" if s["x_e7"] is None else f"{s['x_e7']:.4f}"
        paq = "" if s["x_paq8px"] is None else f"{s['x_paq8px']:.4f}"
        lines.append(f"| {c} | {s['bits_per_voxel']:.4f} | {e7} | {paq} | {_f(s['encode_MBps'])} | "
                     f"{_f(s['decode_MBps'])} | {s['lossless']} |")
    verdict = {True: "met", False: "NOT MET", None: "not measured"}
    lines += ["", "## Criteria (issue 22)", ""] + [f"- {verdict[ok]}: {t}" for t, ok in criteria(summary)]
    if results.get("paq8px_cached"):
        lines += ["", f"paq8px results reused from paq8px_cache.json (same slice, same binary): "
                  f"{', '.join(results['paq8px_cached'])}."]
    if results.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in results["failures"]]
    (out / "slices.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED, help=f"folder of the volumes (default {SHARED})")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/slices; with "
                    "--quick bench/out/slices-quick)")
    ap.add_argument("--paq8px", metavar="PATH", help="the paq8px program (optional; cached, see above)")
    ap.add_argument("--v05", metavar="PYTHON", help="the interpreter of a voxcodec 0.5 install")
    ap.add_argument("--v05-zoo", type=Path, help="its leave-one-out priors (default: bench/results/zoo/priors "
                    "of the 0.5 tree that PYTHON's .venv is in)")
    ap.add_argument("--codecs", nargs="+", help="codecs (default: all that the options allow)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these slices only (" +
                    ", ".join(slice_name(v, z) for v, z in SLICES) + ")")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SIDE} x {QUICK_SIDE} crops (a smoke test)")
    args = ap.parse_args(argv)
    known_names = [slice_name(v, z) for v, z in SLICES]
    if args.only and set(args.only) - set(known_names):
        ap.error(f"unknown slices {sorted(set(args.only) - set(known_names))}; known: {' '.join(known_names)}")
    out = args.out or (HERE / "out" / "slices-quick" if args.quick else HERE / "results" / "slices")
    v05 = v05_setup(args.v05, args.v05_zoo)
    all_codecs = FORMAT6 + ["jpegxl-e7"] + (["paq8px"] if args.paq8px else []) + (V05_CODECS if v05 else [])
    codecs = args.codecs or all_codecs
    bad = [c for c in codecs if c not in all_codecs]
    if bad:
        ap.error(f"unknown or unavailable codecs {bad} (available with these options: {' '.join(all_codecs)})")
    if args.paq8px and not os.access(args.paq8px, os.X_OK):
        ap.error(f"--paq8px {args.paq8px}: not an executable")
    slices = load_slices(args.data, QUICK_SIDE if args.quick else SIDE, args.only)
    if v05 and any(c.startswith(V05) for c in codecs):
        missing = sorted({v for _, v, _, _ in slices if not (v05[1] / f"loo-{v}.json").exists()})
        if missing:
            ap.error(f"no leave-one-out prior in {v05[1]} for {missing}")
    out.mkdir(parents=True, exist_ok=True)
    from bitrate import machine_info

    cmd = "python bench/slices.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": cmd, "machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "quick": args.quick,
               "v05": v05[0] if v05 else None, "v05_zoo": str(v05[1]) if v05 else None,
               "paq8px": args.paq8px, "paq8px_sha256": sha256_file(args.paq8px) if args.paq8px else None,
               "slices": [{"slice": n, "volume": v, "z": z, "shape": list(a.shape), "sha256": slice_sha(a)}
                          for n, v, z, a in slices],
               "records": [], "failures": [], "paq8px_cached": [], "seconds": 0.0}
    t_start = time.time()
    for c in codecs:
        try:
            if c == "paq8px":
                for n, v, z, a in slices:
                    res, cached = paq8px_cached(a, args.paq8px, out / "paq8px_cache.json")
                    if cached:
                        results["paq8px_cached"].append(n)
                    mb = a.nbytes / 1e6
                    results["records"].append(
                        {"slice": n, "volume": v, "z": z, "codec": c, "shape": list(a.shape), "bytes": res["bytes"],
                         "bits_per_voxel": 8 * res["bytes"] / a.size, "encode_MBps": mb / res["encode_seconds"],
                         "decode_MBps": mb / res["decode_seconds"], "encode_seconds": [res["encode_seconds"]],
                         "decode_seconds": [res["decode_seconds"]], "lossless": res["lossless"], "cached": cached})
                    print(f"{n:<26} {c:<20} {8 * res['bytes'] / a.size:.4f} bpv{' (cached)' if cached else ''}",
                          flush=True)
            else:
                arrays = [a for _, _, _, a in slices]
                if c.startswith(V05):
                    priors = [f"loo-{v}" for _, v, _, _ in slices]
                    res = code_items(arrays, c, python=v05[0], env={"VOXCODEC_ZOO": str(v05[1])}, priors=priors)
                else:
                    priors, res = None, code_items(arrays, c)
                for i, (n, v, z, a) in enumerate(slices):
                    rec = {"slice": n, "volume": v, "z": z, "codec": c, "shape": list(a.shape),
                           **summarize(a, res["encode"]["items"][i], res["decode"]["items"][i]),
                           "version": res["encode"]["version"]}
                    if priors:
                        rec["prior"] = priors[i]
                    results["records"].append(rec)
                    print(f"{n:<26} {c:<20} {rec['bits_per_voxel']:.4f} bpv  enc {_f(rec['encode_MBps'])} MB/s  "
                          f"dec {_f(rec['decode_MBps'])} MB/s  lossless {rec['lossless']}", flush=True)
        except RuntimeError as exc:
            results["failures"].append(f"{c}: {str(exc).strip().splitlines()[-1]}")
            print(f"FAILED {c}:\n{exc}", file=sys.stderr)
        results["seconds"] = time.time() - t_start
        results["summary"] = means(results["records"], codecs, [s[0] for s in slices])
        (out / "slices.json").write_text(json.dumps(results, indent=1))
    write_report(results, out)
    print((out / "slices.md").read_text())
    print(f"results in {out}/ (slices.json, slices.md)")
    return 1 if results["failures"] or not all(r["lossless"] for r in results["records"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
