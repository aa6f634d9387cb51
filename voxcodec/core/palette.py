"""Sparse value sets: code a slice's voxels by rank among the values it uses.

Contrast-stretched 8-bit EM slices often use only some of the 256 grey values, and 12- or 14-bit
detectors written as uint16 use every 16th or 4th value.  When a slice's value set is sparse, the
encoder sends it as a bitmap over the block's value range and codes each residual in rank space
(rank of the value minus rank of the used value nearest the prediction): impossible values then
cost nothing.  A slice of one value (the fill value of a padded zarr chunk, a blank section) is
sent as that value alone.

Each slice starts with its kind: NORMAL, PALETTE (then the bitmap) or CONSTANT (then the value).
"""

from __future__ import annotations

import numpy as np
import constriction

_UNIFORM = constriction.stream.model.Uniform()


NORMAL, PALETTE, CONSTANT = 0, 1, 2


def choose(slice_values: np.ndarray, lo: int, hi: int):
    """``(kind, values)`` for a slice: its one value, its sorted used values when a palette pays
    for its bitmap, or ``(NORMAL, None)``."""
    vals = np.unique(slice_values)
    if vals.size == 1:
        return CONSTANT, vals.astype(np.int64)
    span = int(vals[-1]) - int(vals[0]) + 1
    if vals.size >= span:
        return NORMAL, None
    gain = 0.5 * slice_values.size * np.log2(span / vals.size)
    return (PALETTE, vals.astype(np.int64)) if gain > 2 * (hi - lo + 1) else (NORMAL, None)


def encode(coder, kind: int, values, lo: int, hi: int):
    coder.encode(np.array([kind], np.int32), _UNIFORM, np.array([3], np.int32))
    if kind == PALETTE:
        bits = np.zeros(hi - lo + 1, np.int32)
        bits[values - lo] = 1
        coder.encode(bits, _UNIFORM, np.full(bits.size, 2, np.int32))
    elif kind == CONSTANT:
        coder.encode(np.array([values[0] - lo], np.int32), _UNIFORM, np.array([hi - lo + 1], np.int32))


def decode(decoder, lo: int, hi: int):
    """Inverse of :func:`encode`: ``(kind, values)``."""
    kind = int(decoder.decode(_UNIFORM, np.array([3], np.int32))[0])
    if kind == PALETTE:
        bits = decoder.decode(_UNIFORM, np.full(hi - lo + 1, 2, np.int32))
        values = np.flatnonzero(bits).astype(np.int64) + lo
        return kind, (values if values.size else np.array([lo], np.int64))
    if kind == CONSTANT:
        return kind, np.array([lo + int(decoder.decode(_UNIFORM, np.array([hi - lo + 1], np.int32))[0])], np.int64)
    return NORMAL, None


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
