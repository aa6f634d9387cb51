"""Sparse value sets: code a slice's voxels by rank among the values it uses.

Contrast-stretched 8-bit EM slices often use only some of the 256 grey values, and 12- or 14-bit
detectors written as uint16 use every 16th or 4th value.  When a slice's value set is sparse, the
encoder sends it as a bitmap over the block's value range and codes each residual in rank space
(rank of the value minus rank of the used value nearest the prediction): impossible values then
cost nothing.  A slice of one value (the fill value of a padded zarr chunk, a blank section) is
sent as that value alone.

Each slice starts with its kind: NORMAL, PALETTE (then the bitmap), CONSTANT (then the value) or,
from format version 2 on, LISTED (then the number of values and each value): a palette of a few values
over a wide range (a binary 0/65535 mask in uint16) costs a few bits per value instead of a bitmap of
the whole range. Version 1 streams code the kind among the first three.
"""

from __future__ import annotations

import numpy as np


NORMAL, PALETTE, CONSTANT, LISTED = 0, 1, 2, 3


def listed_bits(n: int, lo: int, hi: int) -> float:
    """What a LISTED palette of ``n`` values costs: its count and each value, uniform over the range."""
    return (n + 1) * np.log2(hi - lo + 2)


def choose(slice_values: np.ndarray, lo: int, hi: int):
    """``(kind, values)`` for a slice: its one value, its sorted used values when a palette pays
    for its bitmap or its list (whichever is cheaper), or ``(NORMAL, None)``."""
    flat = np.asarray(slice_values).ravel()
    if flat.size and (int(flat.min()) < lo or int(flat.max()) > hi):
        raise ValueError(f"slice values outside the block's range [{lo}, {hi}]")
    vals = np.flatnonzero(np.bincount(flat, minlength=hi + 1)[lo:]) + lo  # sorted used values
    if vals.size == 1:
        return CONSTANT, vals.astype(np.int64)
    span = int(vals[-1]) - int(vals[0]) + 1
    if vals.size >= span:
        return NORMAL, None
    gain = 0.5 * slice_values.size * np.log2(span / vals.size)
    bitmap, listed = hi - lo + 1, listed_bits(vals.size, lo, hi)
    kind = PALETTE if bitmap <= listed else LISTED
    return (kind, vals.astype(np.int64)) if gain > 2 * min(bitmap, listed) else (NORMAL, None)


def nearest_rank(values: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Rank of the used value nearest each prediction (ties go to the lower value)."""
    k = np.clip(np.searchsorted(values, pred), 1, values.size - 1) if values.size > 1 else np.zeros_like(pred)
    if values.size > 1:
        k = np.where(pred - values[k - 1] <= values[k] - pred, k - 1, k)
    return k


class Lookup:
    """Rank tables of a palette over the block's range [lo, hi]: O(1) per voxel."""

    def __init__(self, values: np.ndarray, lo: int, hi: int):
        self.values, self.lo = values, lo
        span = np.arange(lo, hi + 1, dtype=np.int64)
        self.nearest = nearest_rank(values, span)
        self.rank = np.searchsorted(values, span)

    def residual(self, x, pred):
        """Rank of each value minus rank of the palette value nearest its prediction."""
        return self.rank[x - self.lo] - self.nearest[pred - self.lo]

    def value(self, pred, r):
        """Inverse of :meth:`residual`; also returns whether every rank is inside the palette."""
        rank = self.nearest[pred - self.lo] + r
        ok = rank.size == 0 or (rank.min() >= 0 and rank.max() < self.values.size)
        return self.values[np.clip(rank, 0, self.values.size - 1)], ok
