#!/usr/bin/env python
"""What each ingredient of format 6 buys: bits, and nanoseconds per voxel, one ingredient taken away at a time.

The results in bench/results/ablation were made with

    python bench/ablation.py --out bench/results/ablation

(``--full``: whole volumes instead of a block of each; ``--quick``: 3 x 64 x 64 crops, a smoke test;
``--only ROW ...`` some of the rows).

On each volume of ../shared/data (or the TIFFs given), by default its first block-sized part: the first
``max(4, 4 Mi // (h * w))`` slices, some 4 Mi voxels.  Each row is a :class:`voxcodec.core.learn.Params`
built from a preset with ``.replace(...)``, coded as one block with ``learn.encode_block`` and decoded
with ``learn.decode_block`` (checked voxel for voxel), in this process, one thread; bits per voxel =
8 x payload bytes / voxels (the block's header and model section, some 40 bytes, left out), and
ns per voxel of the faster of two encodes and of two decodes.

Rows, each against its baseline (the difference in bits, in %):

* from ``default`` (token tables; 24 + 5 + 5 neighbours; statistics from every other row): no second
  stage on the residuals (``casc=0``); no slice before, 2-D (``prev=0, prev2=0``); no slice before that
  (``prev2=0``); 12 neighbours in the slice, not 24 (``causal=12``); filters re-solved every 512 voxels,
  not 128 (``interval_log=9``); statistics from every row (``sparse=0``: what the sparse statistics save
  in time and cost in bits); and ``fast`` for reference;
* from ``max`` (context mixing): token tables instead of mixing (``coder="tables"``, the mixing fields 0);
  mixing with 1, 2 or 3 context models, not 6 (``inputs``); filters re-solved every 128 voxels, not 16
  (``interval_log=7``); one filter per band of 128 columns (``band_log=7``);
* a fixed predictor, against ``default``: least squares over N and W alone, re-solved every 1024 voxels
  with almost no forgetting and a strong ridge: close to the mean of N and W, close to no learning.

The flat and edge rules (constant regions and black margins) are part of every preset and have no
parameter: bench/volumes.py ``--margins`` shows what margins cost.

Every row's parameters are checked (``Params.to_bytes()``) before anything is coded: a combination that
format 6 does not allow stops the run with the row's name.  Writes DIR/ablation.json, DIR/ablation.md.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
BLOCK_VOXELS = 4 * 2**20
QUICK_CROP = (3, 64, 64)
REPEATS = 2


def variant(name: str, base, **kw):
    """``base.replace(**kw)``, refused (ValueError naming the row) unless format 6 allows it."""
    p = base.replace(**kw)
    try:
        p.to_bytes()
    except ValueError as exc:
        raise ValueError(f"ablation row {name!r}: {exc}") from None
    return p


def rows() -> list:
    """``[(name, baseline name, Params, what it shows)]``, every Params checked."""
    from voxcodec.core.learn import Params
    from voxcodec.core.presets import preset

    d, m, f = preset("default")[0], preset("max")[0], preset("fast")[0]
    out = [("default", None, variant("default", d), "the default preset"),
           ("default casc=0", "default", variant("default casc=0", d, casc=0), "no second stage on residuals"),
           ("default prev=0 prev2=0", "default", variant("default prev=0 prev2=0", d, prev=0, prev2=0),
            "no slice before (2D)"),
           ("default prev2=0", "default", variant("default prev2=0", d, prev2=0), "no slice before the slice before"),
           ("default causal=12", "default", variant("default causal=12", d, causal=12),
            "12 neighbours in the slice, not 24"),
           ("default interval_log=9", "default", variant("default interval_log=9", d, interval_log=9),
            "re-solved every 512 voxels, not 128"),
           ("default sparse=0", "default", variant("default sparse=0", d, sparse=0),
            "statistics from every row, not every other"),
           ("fast", "default", variant("fast", f), "the fast preset (for reference)"),
           ("max", None, variant("max", m), "the max preset"),
           ("max coder=tables", "max", variant("max coder=tables", m, coder="tables", inputs=0, mant=0, lr=0,
                                              limit_log=0), "token tables instead of mixing")]
    out += [(f"max inputs={k}", "max", variant(f"max inputs={k}", m, inputs=k), f"mixing with {k} context model"
             + ("s" if k > 1 else "")) for k in (1, 2, 3)]
    out += [("max interval_log=7", "max", variant("max interval_log=7", m, interval_log=7),
             "re-solved every 128 voxels, not 16"),
            ("max band_log=7", "max", variant("max band_log=7", m, band_log=7), "one filter per band of 128 columns"),
            ("fixed predictor", "default",
             variant("fixed predictor", Params("tables", causal=2, prev=0, prev2=0, interval_log=10, forget=24, ridge=1,
                                               band_log=0, casc=0)),
             "the mean of N and W re-solved rarely, close to no learning")]
    return out


def block_of(path: Path, full: bool, quick: bool) -> np.ndarray:
    sys.path.insert(0, str(HERE))
    from bitrate import load_volume

    v = load_volume(path)
    if quick:
        v = v[:QUICK_CROP[0], :QUICK_CROP[1], :QUICK_CROP[2]]
    elif not full:
        h, w = v.shape[1:]
        v = v[:max(4, BLOCK_VOXELS // (h * w))]
    return np.ascontiguousarray(v)


def code(block: np.ndarray, params) -> dict:
    """Encode and decode ``block`` as one format 6 block (the faster of REPEATS each), check it."""
    from voxcodec.core import learn

    enc, payload = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        p, _ = learn.encode_block(block, params)
        enc.append(time.perf_counter() - t0)
        if payload is not None and p != payload:
            raise RuntimeError(f"two encodes of the same block differ ({params})")
        payload = p
    lo, hi, centre, shift = learn.value_range(block)
    dec, lossless = [], True
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        out = learn.decode_block(payload, params, block.shape, lo, hi, centre, shift, block.dtype)
        dec.append(time.perf_counter() - t0)
        lossless = lossless and bool(np.array_equal(out, block))
    n = block.size
    return {"bytes": len(payload), "bits_per_voxel": 8 * len(payload) / n, "encode_ns": 1e9 * min(enc) / n,
            "decode_ns": 1e9 * min(dec) / n, "encode_seconds": enc, "decode_seconds": dec, "lossless": lossless}


def write_report(results: dict, out: Path):
    recs = results["records"]
    vols = list(dict.fromkeys(r["volume"] for r in recs))
    names = list(dict.fromkeys(r["row"] for r in recs))
    by = {(r["row"], r["volume"]): r for r in recs}
    base = {r["row"]: r["baseline"] for r in recs}
    what = {r["row"]: r["what"] for r in recs}
    shapes = {r["volume"]: r["shape"] for r in recs}
    m = results["machine"]

    def diff(n, v):
        b = base[n]
        if b is None or (b, v) not in by or (n, v) not in by:
            return None
        return 100 * (by[(n, v)]["bits_per_voxel"] / by[(b, v)]["bits_per_voxel"] - 1)

    lines = ["# Ablation of format 6: what each ingredient buys", "",
             f"Command: `{results['command']}`  ",
             f"Machine: {m['cpu']}, one thread; voxcodec {m['versions'].get('voxcodec')}; {results['seconds']:.0f} s.",
             "", "Blocks: " + ", ".join(f"{v} {'x'.join(map(str, shapes[v]))}" for v in vols)
             + ("" if results["full"] else " (each volume's first block-sized part, about 4 Mi voxels)") + ".", "",
             "Bits per voxel of the block's payload (`learn.encode_block`; the block header and its 16-byte model "
             "section left out), and in brackets the difference to the row's baseline; every block decoded and "
             "compared voxel for voxel (✗: not lossless).", "",
             "| row | what it shows | baseline | " + " | ".join(vols) + " | mean |",
             "|---|---|---|" + "---:|" * (len(vols) + 1)]
    for n in names:
        cells = []
        for v in vols:
            r = by.get((n, v))
            d = diff(n, v)
            cells.append("" if r is None else f"{r['bits_per_voxel']:.4f}" + ("" if d is None else f" ({d:+.2f}%)")
                         + ("" if r["lossless"] else " ✗"))
        bpv = [by[(n, v)]["bits_per_voxel"] for v in vols if (n, v) in by]
        ds = [diff(n, v) for v in vols if diff(n, v) is not None]
        mean = f"{np.mean(bpv):.4f}" + (f" ({np.mean(ds):+.2f}%)" if ds else "")
        lines.append(f"| {n} | {what[n]} | {base[n] or '—'} | " + " | ".join(cells) + f" | {mean} |")
    lines += ["", "ns per voxel, encode / decode (the faster of two each, one thread):", "",
              "| row | " + " | ".join(vols) + " | mean |", "|---|" + "---:|" * (len(vols) + 1)]
    for n in names:
        rs = [by.get((n, v)) for v in vols]
        cells = ["" if r is None else f"{r['encode_ns']:.0f} / {r['decode_ns']:.0f}" for r in rs]
        rs = [r for r in rs if r is not None]
        lines.append(f"| {n} | " + " | ".join(cells) + f" | {np.mean([r['encode_ns'] for r in rs]):.0f} / "
                     f"{np.mean([r['decode_ns'] for r in rs]):.0f} |")
    lines += ["", "Parameters:", ""]
    for n, p in results["params"].items():
        lines.append(f"- {n}: `" + ", ".join(f"{k}={v!r}" for k, v in p.items()) + "`")
    (out / "ablation.md").write_text("\n".join(lines) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volumes", nargs="*", type=Path, help=f"TIFF volumes (default: every volume in {SHARED})")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default bench/results/ablation; with "
                    "--quick bench/out/ablation-quick)")
    ap.add_argument("--full", action="store_true", help="whole volumes, not their first block-sized part")
    ap.add_argument("--quick", action="store_true", help=f"{'x'.join(map(str, QUICK_CROP))} crops (a smoke test)")
    ap.add_argument("--only", nargs="+", metavar="ROW", help="these rows only (their baselines are added)")
    args = ap.parse_args(argv)
    table = rows()
    if args.only:
        known = [r[0] for r in table]
        if set(args.only) - set(known):
            ap.error(f"unknown rows {sorted(set(args.only) - set(known))}; known: {known}")
        keep = set(args.only) | {r[1] for r in table if r[0] in args.only and r[1]}
        table = [r for r in table if r[0] in keep]
    vols = list(args.volumes) or sorted(SHARED.glob("*.tif"))
    if not vols:
        ap.error("no volumes")
    out = args.out or (HERE / "out" / "ablation-quick" if args.quick else HERE / "results" / "ablation")
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    from bitrate import machine_info

    cmd = "python bench/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = {"command": cmd, "machine": machine_info(), "date": time.strftime("%Y-%m-%d"), "full": args.full,
               "quick": args.quick, "params": {n: p.to_json() for n, _, p, _ in table}, "records": [], "seconds": 0.0}
    t_start = time.time()
    for v in vols:
        block = block_of(v, args.full, args.quick)
        for name, baseline, params, what in table:
            r = {"volume": v.stem, "shape": list(block.shape), "row": name, "baseline": baseline, "what": what,
                 **code(block, params)}
            results["records"].append(r)
            results["seconds"] = time.time() - t_start
            (out / "ablation.json").write_text(json.dumps(results, indent=1))
            print(f"{v.stem:<22} {name:<24} {r['bits_per_voxel']:.4f} bpv  enc {r['encode_ns']:7.0f} ns  "
                  f"dec {r['decode_ns']:7.0f} ns  lossless {r['lossless']}", flush=True)
    results["seconds"] = time.time() - t_start
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    write_report(results, out)
    print((out / "ablation.md").read_text())
    print(f"results in {out}/ (ablation.json, ablation.md)")
    return 0 if all(r["lossless"] for r in results["records"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
