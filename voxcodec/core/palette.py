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
import constriction

from . import kernels

_UNIFORM = constriction.stream.model.Uniform()


NORMAL, PALETTE, CONSTANT, LISTED = 0, 1, 2, 3


def _kinds(version: int) -> int:
    return 3 if version < 2 else 4


def listed_bits(n: int, lo: int, hi: int) -> float:
    """What a LISTED palette of ``n`` values costs: its count and each value, uniform over the range."""
    return (n + 1) * np.log2(hi - lo + 2)


def choose(slice_values: np.ndarray, lo: int, hi: int):
    """``(kind, values)`` for a slice: its one value, its sorted used values when a palette pays
    for its bitmap or its list (whichever is cheaper), or ``(NORMAL, None)``."""
    counts = np.zeros(hi - lo + 1, np.int64)
    if kernels.count_values(slice_values, lo, counts):  # compiled, without the GIL (bincount holds it)
        raise ValueError(f"slice values outside the block's range [{lo}, {hi}]")
    vals = np.flatnonzero(counts) + lo  # sorted used values
    if vals.size == 1:
        return CONSTANT, vals.astype(np.int64)
    span = int(vals[-1]) - int(vals[0]) + 1
    if vals.size >= span:
        return NORMAL, None
    gain = 0.5 * slice_values.size * np.log2(span / vals.size)
    bitmap, listed = hi - lo + 1, listed_bits(vals.size, lo, hi)
    kind = PALETTE if bitmap <= listed else LISTED
    return (kind, vals.astype(np.int64)) if gain > 2 * min(bitmap, listed) else (NORMAL, None)


def encode(coder, kind: int, values, lo: int, hi: int):
    """Write a slice's kind and palette (format version 2)."""
    coder.encode(np.array([kind], np.int32), _UNIFORM, np.array([4], np.int32))
    if kind == PALETTE:
        bits = np.zeros(hi - lo + 1, np.int32)
        bits[values - lo] = 1
        coder.encode(bits, _UNIFORM, np.full(bits.size, 2, np.int32))
    elif kind == LISTED:
        coder.encode(np.array([values.size], np.int32), _UNIFORM, np.array([hi - lo + 2], np.int32))
        coder.encode((values - lo).astype(np.int32), _UNIFORM, np.full(values.size, hi - lo + 1, np.int32))
    elif kind == CONSTANT:
        coder.encode(np.array([values[0] - lo], np.int32), _UNIFORM, np.array([hi - lo + 1], np.int32))


def decode(decoder, lo: int, hi: int, slice_voxels: int | None = None, version: int = 2):
    """Inverse of :func:`encode`: ``(kind, values)``.

    Raises ValueError for what :func:`choose` never sends: a palette of fewer than two values or of
    every value in its span, or a palette for a slice of ``slice_voxels`` voxels when its bitmap
    (``hi - lo + 1`` bits) could not pay for itself (``choose`` needs ``0.5 * voxels * log2(span /
    values) > 2 * (hi - lo + 1)``, and the log is at most 16, so ``4 * voxels > hi - lo + 1``): a
    damaged payload then stops before it decodes a bitmap larger than the slice. A listed palette
    holds at least two values and at most one per voxel, strictly increasing."""
    kind = int(decoder.decode(_UNIFORM, np.array([_kinds(version)], np.int32))[0])
    if kind == LISTED:
        n = int(decoder.decode(_UNIFORM, np.array([hi - lo + 2], np.int32))[0])
        if n < 2 or n > hi - lo or (slice_voxels is not None and n > slice_voxels):
            raise ValueError(f"a listed palette of {n} values that the encoder never sends")
        values = decoder.decode(_UNIFORM, np.full(n, hi - lo + 1, np.int32)).astype(np.int64) + lo
        if np.any(np.diff(values) <= 0) or values.size >= values[-1] - values[0] + 1:
            raise ValueError("a listed palette whose values are not strictly increasing or fill their span")
        return kind, values
    if kind == PALETTE:
        if slice_voxels is not None and 4 * slice_voxels <= hi - lo + 1:
            raise ValueError(f"a palette slice of {slice_voxels} voxels over {hi - lo + 1} values")
        bits = decoder.decode(_UNIFORM, np.full(hi - lo + 1, 2, np.int32))
        values = np.flatnonzero(bits).astype(np.int64) + lo
        if values.size < 2 or values.size >= values[-1] - values[0] + 1:
            raise ValueError(f"a palette of {values.size} values that the encoder never sends")
        return kind, values
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
