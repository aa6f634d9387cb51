"""Named presets: how big the networks are and how long each block trains.

With zoo priors (:mod:`voxcodec.zoo`, the default), every block starts from the prior that codes a
sample of it best: ``fast`` codes with the prior as it is (no training; the token tables still
adapt), ``default`` also fine-tunes it briefly and keeps the fine-tune where it pays for its stored
difference, ``max`` fine-tunes it four times longer.  (``FitOptions(scratch=True)`` also trains the
preset's networks from scratch and keeps whichever codes a block smaller: measured on isbi_train with
blocks of 4 Mi voxels, the fine-tune won every block, at a third of the time.)  Without priors
(``prior="none"``) every block trains from scratch with
the preset's configuration, as in voxcodec 0.3.

Every preset's networks see the 24 nearest known voxels of the slice (28 for D passes) through a
linear skip with 12-bit weights (format 5), started from the least-squares filter of the block: on
registered or resampled stacks neighbouring voxels are near-linear combinations of each other, which
a wide, precise linear filter captures and an int8 one loses."""

from __future__ import annotations

import dataclasses

from .block import FitOptions
from .network import ModelConfig

PRESETS = {
    # fewer, smaller networks and a short fit: for slow edge computers
    "fast": (ModelConfig(levels=4, hidden=(8, 8), bins=20, neighbours=24, skip_bits=12),
             FitOptions(steps=80, warm_steps=40, batch=1024, pool=12288, train_slices=3, prior_steps=0)),
    # the default: beats JPEG-XL lossless on the EM volumes we test, at >= 1 MB/s on 2 cores
    "default": (ModelConfig(levels=4, hidden=(8, 8), bins=20, neighbours=24, skip_bits=12),
                FitOptions(steps=200, warm_steps=100, batch=1024, pool=24576, train_slices=6, prior_steps=150)),
    # more capacity and a longer fit: trades encode time for bits
    "max": (ModelConfig(levels=4, hidden=(16, 16), bins=24, neighbours=24, skip_bits=12),
            FitOptions(steps=1200, warm_steps=600, batch=2048, pool=98304, train_slices=12, prior_steps=600)),
}


def preset(name: str):
    """Return fresh ``(ModelConfig, FitOptions)`` for a preset name."""
    try:
        cfg, opts = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return dataclasses.replace(cfg), dataclasses.replace(opts)
