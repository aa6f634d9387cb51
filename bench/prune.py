#!/usr/bin/env python
"""Magnitude pruning of zoo priors: sparsity against bits and speed, layer-wise against network-wide.

    python bench/prune.py --shared --zoo bench/results/zoo/priors --out bench/results/prune

For each volume V, the leave-one-out prior ``loo-V`` (trained without V, see bench/zoo.py) is pruned
to each sparsity: its smallest int8 weights set to 0, either in every weight matrix alone
(layer-wise) or over all the weight matrices of each network at once (network-wide, on the float
values ``w / 2^e`` so that layers of different scales compare).  Biases are kept.  V is then coded
with the pruned prior as it is (the ``fast`` preset: no training), on one thread, and decoded;
bits per voxel, encode and decode MB/s.  Writes DIR/prune.json and DIR/prune.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
sys.path.insert(0, str(HERE))
from bitrate import load_volume, machine_info  # noqa: E402

MATRICES = ("w1", "w2", "wmu", "ws", "wsc")
SPARSITY = (0.0, 0.25, 0.5, 0.75, 0.9)


def prune(model, sparsity: float, mode: str):
    """A copy of ``model`` whose smallest weights (a ``sparsity`` share of each matrix, or of each
    network's matrices together) are 0."""
    out = copy.deepcopy(model)
    for nets in (out.intra, out.inter or {}):
        for net in nets.values():
            mats = [getattr(net, m) for m in MATRICES]
            scales = [2.0 ** -e for e in (net.e[0], net.e[1], net.e[2], net.e[3], net.e[4])]
            if mode == "layer-wise":
                for a in mats:
                    k = int(sparsity * a.size)
                    if k:
                        a[np.unravel_index(np.argsort(np.abs(a.astype(np.int64)), axis=None)[:k], a.shape)] = 0
            else:
                mags = np.concatenate([np.abs(a.astype(np.float64)).ravel() * s for a, s in zip(mats, scales)])
                k = int(sparsity * mags.size)
                if k:
                    cut = np.sort(mags)[k - 1]
                    for a, s in zip(mats, scales):
                        a[np.abs(a.astype(np.float64)) * s <= cut] = 0
            net._f32.clear()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("volumes", nargs="*", type=Path)
    ap.add_argument("--shared", action="store_true")
    ap.add_argument("--zoo", type=Path, default=HERE / "results" / "zoo" / "priors")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import voxcodec
    from voxcodec import zoo

    vols = list(args.volumes) + (sorted(SHARED.glob("*.tif")) if args.shared else [])
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for v in vols:
        vol = load_volume(v)
        prior = zoo.load(args.zoo / f"loo-{v.stem}.json")
        voxcodec.encode(vol[:2, :64, :64], preset="fast", prior=[prior])
        for mode in ("layer-wise", "network-wide"):
            for sp in SPARSITY:
                if sp == 0 and mode == "network-wide":
                    continue
                pruned = zoo.Prior(f"loo-{v.stem}-pruned", prune(prior.model, sp, mode))
                t0 = time.perf_counter()
                data = voxcodec.encode(vol, preset="fast", prior=[pruned], workers=1, threads=1)
                te = time.perf_counter() - t0
                with voxcodec.Decoder(data, workers=1) as dec:
                    dec._priors[1] = pruned.model  # the pruned copy is not installed: hand it over
                    t0 = time.perf_counter()
                    out = dec.read()
                    td = time.perf_counter() - t0
                nz = sum(int(np.count_nonzero(getattr(n, m))) for ns in (pruned.model.intra, pruned.model.inter)
                         for n in ns.values() for m in MATRICES)
                r = {"volume": v.stem, "mode": mode if sp else "dense", "sparsity": sp, "nonzero_weights": nz,
                     "bits_per_voxel": 8 * len(data) / vol.size, "encode_MBps": vol.nbytes / 1e6 / te,
                     "decode_MBps": vol.nbytes / 1e6 / td, "lossless": bool(np.array_equal(out, vol))}
                records.append(r)
                print(json.dumps(r), flush=True)
    (args.out / "prune.json").write_text(json.dumps({"machine": machine_info(), "records": records}, indent=1))
    dense = {r["volume"]: r for r in records if r["sparsity"] == 0}
    lines = ["# Pruning the zoo priors", "", f"Command: `python bench/prune.py {' '.join(argv or sys.argv[1:])}`", "",
             "Each volume coded with its leave-one-out prior as it is (fast preset), one thread. Bits relative to "
             "the dense prior; MB/s per core.", "",
             "| mode | sparsity | bits vs dense (mean) | worst volume | encode MB/s | decode MB/s | lossless |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for mode in ("dense", "layer-wise", "network-wide"):
        for sp in SPARSITY:
            rs = [r for r in records if r["mode"] == mode and r["sparsity"] == sp]
            if not rs:
                continue
            rel = [r["bits_per_voxel"] / dense[r["volume"]]["bits_per_voxel"] for r in rs]
            enc = np.mean([r["encode_MBps"] for r in rs])
            dec = np.mean([r["decode_MBps"] for r in rs])
            lines.append(f"| {mode} | {sp:.2f} | {np.mean(rel):.4f} | {max(rel):.4f} | {enc:.1f} | {dec:.1f} | "
                         f"{all(r['lossless'] for r in rs)} |")
    (args.out / "prune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
