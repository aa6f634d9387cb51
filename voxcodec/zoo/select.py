"""Choosing a block's prior: each candidate codes the same sample of the block, the fewest bytes win."""

from __future__ import annotations

import numpy as np

#: the sample: up to this many slices from the middle of the block...
SAMPLE_SLICES = 4
#: ...cropped around the centre of the slice to about 1/SAMPLE_SHARE of the block's voxels, in a square
#: of SAMPLE_MIN_SIDE to SAMPLE_SIDE rows and columns (each candidate codes the sample: with 4 Mi-voxel
#: blocks and three priors, 256 x 256 samples took a quarter of `fast`'s encode time)
SAMPLE_SHARE = 64
SAMPLE_MIN_SIDE = 128
SAMPLE_SIDE = 256


def sample(data: np.ndarray) -> np.ndarray:
    """A sub-block that stands for ``data`` (depth, H, W): a few consecutive slices from its middle
    (the inter-slice networks need neighbours), cropped around the centre."""
    d, h, w = data.shape
    k = min(d, SAMPLE_SLICES)
    z0 = (d - k) // 2
    side = int(min(max(np.sqrt(d * h * w / (SAMPLE_SHARE * k)), SAMPLE_MIN_SIDE), SAMPLE_SIDE))
    sy, sx = min(h, side), min(w, side)
    y0, x0 = (h - sy) // 2, (w - sx) // 2
    return np.ascontiguousarray(data[z0:z0 + k, y0:y0 + sy, x0:x0 + sx])


def sample_bytes(sample: np.ndarray, model) -> int:
    """Bytes of ``sample`` (a block's :func:`sample`) coded with ``model`` (exactly what the coder
    would write)."""
    from ..core.block import encode_block

    payload, _ = encode_block(sample, model)
    return len(payload)


def choose(data: np.ndarray, models):
    """``(k, model)``: the index of the model (prior) of ``models`` that codes the sample of ``data`` in
    the fewest bytes (the first of equals; 0 when there is only one), and that model as the block
    uses it: without its inter-slice networks where they code the sample in strictly more bytes."""
    s = sample(data)
    if s.min() == s.max():
        return 0, models[0]
    costs = [sample_bytes(s, m) for m in models] if len(models) > 1 else [None]
    k = int(np.argmin(costs)) if len(models) > 1 else 0
    best = models[k]
    if best.inter is None:
        return k, best
    with_inter = costs[k] if costs[k] is not None else sample_bytes(s, best)
    alone = best.intra_only()
    return k, (alone if sample_bytes(s, alone) < with_inter else best)
