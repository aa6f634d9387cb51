"""Named presets: how hard a block's model works while it codes (format 6, :mod:`.learn`).

Every preset predicts each voxel by least squares over its neighbours in the slice and in the slices
before, re-solved as the block is coded; they differ in how many neighbours, how often the filters
are re-solved, and how the residuals are modelled:

- ``fast``: 16 neighbours in the slice and 5 in the slice before; the statistics come from every 8th
  row and the filters are re-solved every 512 of those voxels; token tables per error level.  Encodes
  and decodes faster than JPEG-XL lossless effort 3.
- ``default``: 24 + 5 + 5 neighbours, statistics from every other row, re-solved every 128 of those
  voxels, and a second stage over the residuals of the nearest neighbours; token tables.  Decodes
  faster than JPEG-XL effort 7, in fewer bits.
- ``max``: 32 + 9 + 5 neighbours re-solved every 16 voxels and binary context mixing of six context
  models for the residuals: about 15 times slower than ``default``, 1% smaller.

A preset is a tuple of candidate :class:`~voxcodec.core.learn.Params`: the encoder codes each block
with every candidate and keeps the smallest (the decoder reads the winner's parameters from the
block).  The measurements behind these choices are in docs/results.md.
"""

from __future__ import annotations

from .learn import Params

PRESETS = {
    "fast": (Params("tables", causal=16, prev=5, prev2=0, interval_log=9, forget=3, ridge=17, band_log=0, casc=0,
                    sparse=3),),
    "default": (Params("tables", causal=24, prev=5, prev2=5, interval_log=7, forget=6, ridge=17, band_log=0,
                       casc=6, sparse=1),),
    "max": (Params("mixing", causal=32, prev=9, prev2=5, interval_log=4, forget=9, ridge=17, band_log=0, casc=6,
                   inputs=6, mant=3, lr=6, limit_log=8),),
}


def preset(name: str) -> tuple[Params, ...]:
    """The candidate parameters of a preset."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
