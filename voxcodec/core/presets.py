"""Named presets: how big the networks are and how long each block trains."""

from __future__ import annotations

from .block import FitOptions
from .network import ModelConfig

PRESETS = {
    # fewer, smaller networks and a short fit: for slow edge computers
    "fast": (ModelConfig(levels=4, hidden=(8, 8), bins=20),
             FitOptions(steps=80, warm_steps=40, batch=1024, pool=12288, train_slices=3)),
    # the default: beats JPEG-XL lossless on the EM volumes we test, at >= 1 MB/s on 2 cores
    "default": (ModelConfig(levels=4, hidden=(8, 8), bins=20),
                FitOptions(steps=200, warm_steps=100, batch=1024, pool=24576, train_slices=6)),
    # more capacity and a longer fit: trades encode time for bits
    "max": (ModelConfig(levels=4, hidden=(16, 16), bins=24, neighbours=16),
            FitOptions(steps=1200, warm_steps=600, batch=2048, pool=98304, train_slices=12)),
}


def preset(name: str):
    """Return fresh ``(ModelConfig, FitOptions)`` for a preset name."""
    try:
        cfg, opts = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    return ModelConfig(cfg.levels, tuple(cfg.hidden), cfg.bins, cfg.neighbours), FitOptions(**vars(opts))
