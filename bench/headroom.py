#!/usr/bin/env python
"""How many bits a far larger predictor could still take off, pass by pass (issue 13's headroom).

    python bench/headroom.py --shared --out bench/results/headroom [--zoo DIR] [--steps 12000]
    python bench/headroom.py --shared --loo --out bench/results/headroom-loo

For each volume V, one run measures:

* ``voxcodec``: V coded with the ``default`` preset and its leave-one-out prior ``loo-V`` (one
  thread), the stream's bits per voxel, and per pass of the finest two levels (94% of the voxels)
  the empirical entropy of the rounded residual given the coder's table (a static stand-in for the
  adaptive tables) on V's odd slices, from the networks the stream holds
  (:meth:`voxcodec.Decoder.block_model`);
* ``probe``: per pass, a float network far larger than voxcodec's (``--neighbours`` 48 nearest
  known in-slice voxels and the 3 x 3 of the previous slice, two hidden layers of ``--hidden`` 128,
  about 60 times the multiply-adds of the ``default`` networks), trained for ``--steps`` Adam steps
  with a Laplace likelihood and measured on V's odd slices with the same statistic, its predicted
  scale quantized to 16 bins as the coder's tables are. It trains on V's *own* even slices (in
  sample, its weights not charged: more than a stream can have), or with ``--loo`` on the other
  volumes of the run (what a prior of that size could learn for a user's new data);
* JPEG-XL lossless effort 7 and 9 on the same volume (imagecodecs, one thread, slice by slice).

``bound`` is the stream's bits less every pass's gain where the probe beats voxcodec: what voxcodec
would reach if its networks matched the probe on the two finest levels. Writes DIR/headroom.json and
DIR/headroom.md. About 8 minutes per volume on one 2-core machine (torch uses 2 threads).
"""

from __future__ import annotations

import argparse
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

PASSES = [("B", 0), ("C", 0), ("D", 0), ("B", 1), ("C", 1), ("D", 1)]
SCALE_BINS = 16


def conditional_bits(residual: np.ndarray, context: np.ndarray) -> float:
    """Bits per voxel of the rounded residuals coded with one static table per context value."""
    r = np.round(residual).astype(np.int64)
    r -= r.min()
    width = int(r.max()) + 1
    c = context.astype(np.int64)
    counts = np.bincount((c - c.min()) * width + r, minlength=(int(c.max() - c.min()) + 1) * width).reshape(-1, width)
    total = counts.sum(1, keepdims=True)
    nz = counts > 0
    return float(-(counts[nz] * np.log2((counts / np.maximum(total, 1))[nz])).sum() / r.size)


def voxcodec_passes(vol: np.ndarray, prior: str) -> tuple[float, dict]:
    """The stream's bits per voxel, and per pass name the static conditional bits and share of voxels."""
    import voxcodec
    from voxcodec.core import context as ctx
    from voxcodec.core import payload

    data = voxcodec.encode(vol, preset="default", workers=1, threads=1, prior=prior)
    res, con, share = {}, {}, {}
    with voxcodec.Decoder(data) as dec:
        for i in range(len(dec)):
            h, model = dec.block_header(i), dec.block_model(i)
            if model is None:
                continue
            block = np.ascontiguousarray(vol[h.z0:h.z0 + h.depth, h.y0:h.y0 + h.h, h.x0:h.x0 + h.w])
            passes = ctx.schedule(model.config.levels, model.config.neighbours)
            for z0, z1, arrays in payload.predictions(block, model):
                odd = (h.z0 + np.arange(z0, z1)) % 2 == 1  # the slices the probe is tested on
                for p, (x, pred, table) in zip(passes, arrays):
                    share[p.name] = share.get(p.name, 0) + x.size / vol.size
                    res.setdefault(p.name, []).append((x[odd].astype(np.int64) - pred[odd]).ravel())
                    con.setdefault(p.name, []).append(table[odd].ravel())
    bits = {n: conditional_bits(np.concatenate(res[n]), np.concatenate(con[n])) for n in res}
    return 8 * len(data) / vol.size, {n: {"voxcodec": bits[n], "share": share[n]} for n in bits}


def _known(kind: str, s: int, k: int):
    """The k nearest in-slice offsets a pass of that kind and stride sees, in voxcodec's order
    (:func:`voxcodec.core.context.schedule`, over a 15 x 15 window instead of its 7 x 7)."""
    from voxcodec.core.context import _nearest

    return _nearest([(dy * s, dx * s) for dy in range(-7, 8) for dx in range(-7, 8)
                     if (kind == "B" and dy % 2 and dx % 2) or (kind == "C" and (dy + dx) % 2)
                     or (kind == "D" and (dy % 2 or dx % 2))], k)


def pass_features(vol: np.ndarray, kind: str, level: int, neighbours: int):
    """The probe's inputs (depth, ny, nx, features) and targets (depth, ny, nx) of one pass."""
    v = vol.astype(np.float32) - 128
    d, h, w = v.shape
    pad = 16
    cur = np.pad(v, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")
    prev = np.concatenate([np.zeros_like(cur[:1]), cur[:-1]])
    s = 2 ** level
    y0, x0 = {"B": (s, s), "C": (0, s), "D": (s, 0)}[kind]
    st = 2 * s
    ring = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]

    def views(src, offs):
        return [src[:, pad + y0 + dy: pad + h + dy: st, pad + x0 + dx: pad + w + dx: st] for dy, dx in offs]

    return np.stack(views(cur, _known(kind, s, neighbours)) + views(prev, ring), -1) / 64, v[:, y0::st, x0::st]


def probe_bits(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, hidden: int, steps: int,
               seed: int = 0) -> float:
    """Train the float probe on (xtr, ytr), rows of features and targets; its bits per voxel on the test
    rows (Laplace likelihood in training; the coder's statistic on the test rows)."""
    import torch

    torch.manual_seed(seed)
    xtr, ytr, xte = torch.tensor(xtr), torch.tensor(ytr), torch.tensor(xte)
    f = xtr.shape[1]
    net = torch.nn.Sequential(torch.nn.Linear(f, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                              torch.nn.ReLU(), torch.nn.Linear(hidden, 2))
    skip = torch.nn.Linear(f, 1)
    opt = torch.optim.Adam(list(net.parameters()) + list(skip.parameters()), 3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        i = torch.randint(0, xtr.shape[0], (4096,))
        o = net(xtr[i])
        mu = 64 * (o[:, 0] + skip(xtr[i])[:, 0])
        log_b = o[:, 1] + 1.5
        loss = (torch.abs(ytr[i] - mu) / torch.exp(log_b) + log_b).mean()  # Laplace negative log-likelihood
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        o = net(xte)
        mu = (64 * (o[:, 0] + skip(xte)[:, 0])).numpy()
        scale = o[:, 1].numpy()
    edges = np.quantile(scale, np.linspace(0, 1, SCALE_BINS + 1)[1:-1])
    return conditional_bits(yte - mu, np.searchsorted(edges, scale))


def probe_pass(vol: np.ndarray, kind: str, level: int, args, others=()) -> float:
    """Test bits per voxel of the probe on the odd slices of ``vol``: trained on its even slices, or
    (``others``: other volumes) on up to ``args.samples`` voxels of the pass from each of those."""
    x, y = pass_features(vol, kind, level, args.neighbours)
    f = x.shape[-1]
    xte, yte = x[1::2].reshape(-1, f), y[1::2].reshape(-1)
    if not others:
        return probe_bits(x[0::2].reshape(-1, f), y[0::2].reshape(-1), xte, yte, args.hidden, args.steps)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for o in others:
        xo, yo = pass_features(o, kind, level, args.neighbours)
        xo, yo = xo.reshape(-1, f), yo.reshape(-1)
        pick = rng.choice(yo.size, min(yo.size, args.samples), replace=False)
        xs.append(xo[pick])
        ys.append(yo[pick])
        del xo, yo
    return probe_bits(np.concatenate(xs), np.concatenate(ys), xte, yte, args.hidden, args.steps)


def jpegxl_bits(vol: np.ndarray, effort: int) -> float:
    import imagecodecs as ic

    return 8 * sum(len(ic.jpegxl_encode(s, lossless=True, effort=effort, numthreads=1)) for s in vol) / vol.size


def measure(path: Path, args, volumes: dict) -> dict:
    """``volumes``: path -> volume, every volume of the run (with --loo the probe trains on the others)."""
    vol = volumes[path]
    t0 = time.perf_counter()
    stream, passes = voxcodec_passes(vol, f"loo-{path.stem}")
    others = [v for o, v in volumes.items() if o != path] if args.loo else ()
    for kind, level in PASSES:
        passes[f"{kind}{level}"]["probe"] = probe_pass(vol, kind, level, args, others)
        print(f"  {path.stem} {kind}{level}: voxcodec {passes[f'{kind}{level}']['voxcodec']:.3f}  "
              f"probe {passes[f'{kind}{level}']['probe']:.3f}", flush=True)
    gain = sum(max(0.0, p["voxcodec"] - p["probe"]) * p["share"] for p in passes.values() if "probe" in p)
    e7, e9 = jpegxl_bits(vol, 7), (jpegxl_bits(vol, 9) if not args.no_e9 else None)
    return {"volume": path.stem, "shape": list(vol.shape), "stream": stream, "bound": stream - gain, "e7": e7,
            "e9": e9, "passes": passes, "seconds": time.perf_counter() - t0}


def n_params(args) -> int:
    f, h = args.neighbours + 9, args.hidden
    return f * h + h + h * h + h + 2 * h + 2 + f + 1


def report(results: list, args) -> str:
    lines = ["# Headroom: what a far larger predictor could still take off", "",
             f"Command: `python bench/headroom.py {' '.join(sys.argv[1:])}`  ",
             f"Machine: {machine_info().get('cpu', '')}", "",
             f"Probe: {args.neighbours} nearest in-slice voxels + 3 x 3 of the previous slice, 2 x {args.hidden} "
             f"hidden units ({n_params(args)} parameters per pass, not charged), {args.steps} Adam steps, "
             + ("trained on the other volumes of the run (leave one out), " if args.loo else
                "trained on the volume's own even slices (in sample), ")
             + "tested on its odd slices. Pass bits, on the odd slices: empirical entropy of the rounded residual "
             f"given the coder's table (voxcodec) or {SCALE_BINS} bins of the predicted scale (probe). voxcodec: "
             "`default` preset with the leave-one-out prior.", "",
             "| volume | pass | share | voxcodec bits | probe bits | probe - voxcodec |", "|---|---|---:|---:|---:|---:|"]
    for r in results:
        for name, p in sorted(r["passes"].items(), key=lambda kv: (-len(kv[0]), kv[0][1:], kv[0])):
            if "probe" in p:
                lines.append(f"| {r['volume']} | {name} | {p['share']:.4f} | {p['voxcodec']:.3f} | {p['probe']:.3f} | "
                             f"{p['probe'] - p['voxcodec']:+.3f} |")
    lines += ["", "Bits per voxel of the whole volume (x e7: relative to JPEG-XL effort 7 in this run):", "",
              "| volume | voxcodec default | x e7 | bound | x e7 | JPEG-XL e7 | JPEG-XL e9 | x e7 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        e9 = f"{r['e9']:.4f} | {r['e9'] / r['e7']:.4f}" if r["e9"] else "- | -"
        lines.append(f"| {r['volume']} | {r['stream']:.4f} | {r['stream'] / r['e7']:.4f} | {r['bound']:.4f} | "
                     f"{r['bound'] / r['e7']:.4f} | {r['e7']:.4f} | {e9} |")
    if len(results) > 1:
        mean = np.mean([r["stream"] / r["e7"] for r in results])
        mb = np.mean([r["bound"] / r["e7"] for r in results])
        lines += ["", f"Mean x e7: voxcodec default {mean:.4f}, bound {mb:.4f}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("volumes", nargs="*", type=Path, help="uint8 TIFF stacks (with a loo-<stem> prior in --zoo)")
    ap.add_argument("--shared", action="store_true", help="the five volumes of ../shared/data")
    ap.add_argument("--out", type=Path, help="folder for headroom.json and headroom.md")
    ap.add_argument("--zoo", type=Path, default=HERE / "results" / "zoo" / "priors",
                    help="folder of the leave-one-out priors (bench/zoo.py --train makes them)")
    ap.add_argument("--neighbours", type=int, default=48)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--loo", action="store_true",
                    help="train the probe on the other volumes of the run (what a prior can learn), not in sample")
    ap.add_argument("--samples", type=int, default=1_000_000,
                    help="with --loo: voxels of each pass taken from each other volume")
    ap.add_argument("--only", action="append", default=[],
                    help="measure only this volume (a file stem; repeatable); with --loo the others still train")
    ap.add_argument("--no-e9", action="store_true", help="leave JPEG-XL effort 9 out (slow)")
    args = ap.parse_args(argv)
    paths = list(args.volumes) + (sorted(SHARED.glob("*.tif")) if args.shared else [])
    if not paths:
        ap.error("name volumes or pass --shared")
    if args.loo and len(paths) < 2:
        ap.error("--loo trains on the other volumes of the run: name at least two")
    wanted = [p for p in paths if not args.only or p.stem in args.only]
    volumes = {p: np.ascontiguousarray(load_volume(p)) for p in (paths if args.loo else wanted)}
    os.environ["VOXCODEC_ZOO"] = str(args.zoo)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    results = []
    for p in wanted:
        print(f"{p.stem} ...", flush=True)
        results.append(measure(p, args, volumes))
    text = report(results, args)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        given = vars(args) | {"volumes": [str(p) for p in paths], "out": str(args.out), "zoo": str(args.zoo)}
        (args.out / "headroom.json").write_text(json.dumps({"machine": machine_info(), "args": given,
                                                            "results": results}, indent=1))
        (args.out / "headroom.md").write_text(text)


if __name__ == "__main__":
    main()
