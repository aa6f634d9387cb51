"""Slice headers of formats 1 and 2: the slice kind and palette, coded with constriction's range coder
(see :mod:`voxcodec.core.palette` for what the kinds mean).  Version 1 streams code the kind among
the first three."""

from __future__ import annotations

import numpy as np
import constriction

from ..palette import CONSTANT, LISTED, NORMAL, PALETTE

_UNIFORM = constriction.stream.model.Uniform()


def _kinds(version: int) -> int:
    return 3 if version < 2 else 4


def decode(decoder, lo: int, hi: int, slice_voxels: int | None = None, version: int = 2):
    """Read a slice's kind and palette: ``(kind, values)``.

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
