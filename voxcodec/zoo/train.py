"""Train zoo priors from EM volumes: ``python -m voxcodec.zoo.train``.

    python -m voxcodec.zoo.train --shared --out voxcodec/zoo/priors      # the priors shipped
    python -m voxcodec.zoo.train --shared --exclude isbi_train --id loo-isbi --out DIR

Each prior is one :class:`~voxcodec.core.network.BlockModel` (the ``default`` preset's networks)
trained on samples of many blocks of several volumes: crops of up to ``--depth`` slices and
``--side`` x ``--side`` voxels, each centred as the encoder centres a block, half of them with black
margins that vary per slice (the borders of aligned stacks) so that the networks learn such edges.
Every volume gives the same number of samples.  Training is seeded: the same volumes, options and
torch build give the same weights.  On one core of the project's 2-core machine a prior takes
about 4 minutes (the run time is written into its model card).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from . import save
from ..core import block, training
from ..core.presets import preset

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

#: what the model cards say of the volumes in ../shared/data (from its README)
VOLUMES = {
    "isbi_train": {"modality": "serial-section TEM", "voxel_nm": [50, 4, 4],
                   "source": "ISBI 2012 EM segmentation challenge (Cardona et al. 2010), zhixuhao/unet",
                   "licence": "challenge data, research use"},
    "vnc_sstem_stack1": {"modality": "serial-section TEM", "voxel_nm": [50, 4.6, 4.6],
                         "source": "unidesigner/groundtruth-drosophila-vnc (Gerhard et al. 2013)",
                         "licence": "CC BY-NC-SA 3.0"},
    "snemi3d_ac4_z00-31": {"modality": "ATUM serial-section SEM", "voxel_nm": [30, 6, 6],
                           "source": "SNEMI3D training input (Kasthuri et al. 2015), Rhoana/icon_archived",
                           "licence": "challenge data, research use"},
    "cdeep3m_sbem_mito": {"modality": "serial block-face SEM (probably)", "voxel_nm": None,
                          "source": "CRBS/cdeep3m mito_testsample", "licence": "UC Regents, non-commercial research and "
                                                                          "education only"},
    "flyem_fib_ts1": {"modality": "FIB-SEM, isotropic", "voxel_nm": [10, 10, 10],
                      "source": "Janelia FlyEM neuroproof_examples training_sample1",
                      "licence": "CC-BY (credit: Janelia FlyEM)"},
}

#: the priors shipped in the package: id -> volumes (None: all)
SHIPPED = {
    "em-general-v2": None,
    "em-section-v2": ["isbi_train", "vnc_sstem_stack1", "snemi3d_ac4_z00-31", "cdeep3m_sbem_mito"],
    "em-fib-v2": ["flyem_fib_ts1"],
}


def crops(vol: np.ndarray, depth: int, side: int, rng, n: int):
    """``n`` sub-blocks of ``vol`` (up to depth x side x side), spread over the volume."""
    d, h, w = vol.shape
    k = min(d, depth)
    out = []
    for _ in range(n):
        z0 = int(rng.integers(0, d - k + 1))
        sy, sx = min(h, side), min(w, side)
        y0, x0 = int(rng.integers(0, h - sy + 1)), int(rng.integers(0, w - sx + 1))
        out.append(np.ascontiguousarray(vol[z0:z0 + k, y0:y0 + sy, x0:x0 + sx]))
    return out


def with_margins(sub: np.ndarray, rng, value: int = 0, most: int = 40) -> np.ndarray:
    """``sub`` inside black margins that drift from slice to slice (a registered stack's borders)."""
    d, h, w = sub.shape
    out = np.full((d, h, w), value, sub.dtype)
    top, left = int(rng.integers(4, most)), int(rng.integers(4, most))
    for z in range(d):
        top = int(np.clip(top + rng.integers(-3, 4), 1, most))
        left = int(np.clip(left + rng.integers(-3, 4), 1, most))
        out[z, top:, left:] = sub[z, :h - top, :w - left]
    return out


def pools_of(volumes: dict, config, opts, rng, per_volume: int, blocks: int, depth: int, side: int):
    """Training samples ``(features, target)`` for every network, ``per_volume`` from each volume."""
    per_net = None
    for name, vol in volumes.items():
        mine = None
        for i, sub in enumerate(crops(vol, depth, side, rng, blocks)):
            if i % 2:
                sub = with_margins(sub, rng)
            pools = block._training_pools(sub, config, opts, inter_ok=sub.shape[0] > 1)
            mine = pools if mine is None else [(np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]]))
                                               for a, b in zip(mine, pools)]
        keep = []
        for x, y in mine:
            sel = rng.permutation(y.size)[:per_volume]
            keep.append((x[:, sel], y[sel]))
        per_net = keep if per_net is None else [(np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]]))
                                                for a, b in zip(per_net, keep)]
    return per_net


def train_prior(volumes: dict, *, steps: int = 3000, batch: int = 4096, per_volume: int = 60000, blocks: int = 8,
                depth: int = 12, side: int = 384, seed: int = 0, lr: float = 1e-2, config=None, progress=None):
    """Train one prior on ``volumes`` (name -> uint8/uint16 array) with ``config`` (default: the
    default preset's).  Returns ``(model, card fields)``."""
    import torch

    torch.manual_seed(seed)
    default, opts = preset("default")
    config = config or default
    opts.train_slices, opts.pool, opts.seed = 8, 10 ** 9, seed
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    pools = pools_of(volumes, config, opts, rng, per_volume, blocks, depth, side)
    bank = block._new_bank(config, seed=seed, pools=pools)
    bits = training.fit(bank, pools, config, steps, quantum=1.0, batch=batch, lr=lr, seed=seed, progress=progress)
    nets = bank.export()
    names = list(block._group_passes(config))
    model = block.BlockModel(config, dict(zip(names, nets[:len(names)])), dict(zip(names, nets[len(names):])))
    card = {"trained_on": [{"volume": n, "shape": list(v.shape), **VOLUMES.get(n, {})} for n, v in volumes.items()],
            "config": config.to_json(), "parameters": int(sum(p.numel() for p in bank.parameters())),
            "training": {"steps": steps, "batch": batch, "samples_per_volume_and_network": per_volume,
                         "crops_per_volume": blocks, "crop": [depth, side, side], "seed": seed, "lr": lr,
                         "half_with_black_margins": True, "seconds": round(time.perf_counter() - t0, 1),
                         "torch": torch.__version__},
            "train_bits_per_sample": {f"{kind}:{g}": round(b, 4) for (kind, g), b in
                                      zip([(k, g) for k in ("intra", "inter") for g in names], bits)}}
    return model, card


def measure(model, volumes: dict) -> dict:
    """Bits per voxel of each training volume's central crop (16 x 512 x 512 at most) coded with the
    prior as it is (the ``fast`` preset).  These volumes trained the prior: for what it does on new
    data, see the leave-one-out figures of bench/zoo.py."""
    from .. import encode
    from . import Prior
    from .preview import sample_of

    out = {}
    for name, vol in volumes.items():
        crop = sample_of(vol, 16, 512)
        data = encode(crop, preset="fast", prior=[Prior("new", model)], workers=1, threads=1)
        out[name] = {"crop": list(crop.shape), "bits_per_voxel_fast": round(8 * len(data) / crop.size, 4)}
    return {"note": "in-sample: central crops of the training volumes, coded with the prior as it is", **out}


def load_volumes(names, folder: Path) -> dict:
    import tifffile

    out = {}
    for n in names:
        a = tifffile.imread(folder / f"{n}.tif")
        out[n] = a[None] if a.ndim == 2 else a
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m voxcodec.zoo.train", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volumes", nargs="*", help="TIFF volumes to train on (default with --shared: ../shared/data)")
    ap.add_argument("--shared", action="store_true", help="train on the volumes of ../shared/data")
    ap.add_argument("--data", type=Path, default=SHARED, help="folder of the --shared volumes")
    ap.add_argument("--exclude", action="append", default=[], help="leave this volume out (repeatable)")
    ap.add_argument("--id", help="the prior's id (default: the shipped priors, em-general-v2, em-section-v2 and "
                                 "em-fib-v2, each from its volumes)")
    ap.add_argument("--out", type=Path, required=True, help="folder to write <id>.json into")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--hidden", default="8,8", help="hidden sizes of the networks (default 8,8)")
    ap.add_argument("--neighbours", type=int, default=preset("default")[0].neighbours,
                    help="in-slice neighbours (default: the default preset's, %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.shared:
        names = [n for n in VOLUMES if (args.data / f"{n}.tif").exists()]
        volumes = load_volumes(names, args.data)
    else:
        if not args.volumes:
            ap.error("give volumes, or --shared")
        import tifffile

        volumes = {Path(v).stem: tifffile.imread(v) for v in args.volumes}
    volumes = {k: v for k, v in volumes.items() if k not in args.exclude}
    jobs = {args.id: list(volumes)} if args.id else {k: v or list(volumes) for k, v in SHIPPED.items()}
    for pid, names in jobs.items():
        chosen = {n: volumes[n] for n in names if n in volumes}
        if not chosen:
            print(f"{pid}: none of its volumes is here, skipped")
            continue
        last = [0.0]

        def progress(step, steps):
            now = time.monotonic()
            if now - last[0] > 5 or step == steps:
                last[0] = now
                print(f"\r{pid}: step {step}/{steps}", end="", flush=True)

        config = dataclasses.replace(preset("default")[0], hidden=tuple(int(h) for h in args.hidden.split(",")),
                                     neighbours=args.neighbours)
        config.validate()
        model, card = train_prior(chosen, steps=args.steps, seed=args.seed, config=config, progress=progress)
        card["measured"] = measure(model, chosen)
        card["command"] = "python -m voxcodec.zoo.train " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
        path = save(model, pid, args.out, card)
        print(f"\n{pid}: {len(chosen)} volumes, {card['training']['seconds']} s -> {path} (sha256 {model.sha256[:16]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
