"""Named presets: how hard a block's model works while it codes (format 6, :mod:`.learn`).

Every preset predicts each voxel by least squares over its neighbours in the slice and in the slice
before, re-solved as the block is coded; they differ in how many neighbours, how often the filters
are re-solved, and how the residuals are modelled:

- ``fast``: 16 neighbours in the slice and 5 in the slice before, re-solved every 256 voxels; token
  tables per error level.  Encodes and decodes at about JPEG-XL effort 3's speed.
- ``default``: 24 + 9 neighbours, re-solved every 128 voxels, and a second stage over the residuals
  of the nearest neighbours; token tables.
- ``max``: the same prediction re-solved every 16 voxels, one filter per band of 128 columns, and
  binary context mixing of six context models for the residuals.

A preset is a tuple of candidate :class:`~voxcodec.core.learn.Params`: the encoder codes each block
with every candidate and keeps the smallest (the decoder reads the winner's parameters from the
block).  The figures behind these choices are in docs/results.md.
"""

from __future__ import annotations

from .learn import Params

PRESETS = {
    "fast": (Params("tables", causal=16, prev=5, prev2=0, interval_log=8, forget=4, ridge=17, band_log=0, casc=0),),
    "default": (Params("tables", causal=24, prev=9, prev2=0, interval_log=7, forget=6, ridge=17, band_log=0,
                       casc=6),),
    "max": (Params("mixing", causal=24, prev=9, prev2=0, interval_log=4, forget=11, ridge=17, band_log=7, casc=6,
                   inputs=6, mant=3, lr=6, limit_log=8),),
}


def preset(name: str) -> tuple[Params, ...]:
    """The candidate parameters of a preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
