"""Context geometry: the multi-pass order within a slice and the neighbours each pass may see.

A slice is decoded in ``1 + 3 * levels`` passes.  Pass 0 ("top") holds the voxels on the coarse
lattice of stride ``2**levels``.  Then, for each level ``l`` from ``levels - 1`` down to 0 with
stride ``s = 2**l``:

* pass ``B_l`` holds the voxels at ``(s, s) mod 2s`` and sees the lattice of stride ``2s``
  (its diagonal neighbours);
* pass ``C_l`` holds the voxels at ``(0, s) mod 2s`` and sees the lattice ``2s`` and ``B_l``: its
  four direct neighbours;
* pass ``D_l`` holds the voxels at ``(s, 0) mod 2s`` and sees everything on the lattice of stride
  ``s`` but other ``D_l`` voxels: its four direct and four diagonal neighbours.

Three quarters of all voxels sit in the passes of level 0 and see their nearest neighbours on all
sides, which is where the in-slice context earns its gain on sectioned EM.

Every voxel of a pass sees the same set of relative offsets, so a pass's features are a stack of
strided views of a padded slice: no per-voxel Python and no fancy indexing.  Offsets falling
outside the slice read the padding value 0 (the block's centre grey value).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: default number of nearest known in-slice neighbours a B or C pass sees (D passes see 4 more)
N_INSLICE = 12


@dataclass(frozen=True)
class Pass:
    name: str
    level: int
    #: sub-lattices ``(y0, x0, step)`` whose voxels this pass decodes
    grids: tuple[tuple[int, int, int], ...]
    #: known offsets ``(dy, dx)`` in the current slice, nearest first
    inslice: tuple[tuple[int, int], ...]
    #: offsets ``(dy, dx)`` read from the previous slice
    prev: tuple[tuple[int, int], ...]


def _nearest(candidates, n):
    c = sorted(set(candidates), key=lambda o: (o[0] ** 2 + o[1] ** 2, o))
    return tuple(c[:n])


def _prev_offsets(inslice):
    ring = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return _nearest(ring + list(inslice[:8]), 17)


@lru_cache(maxsize=None)
def schedule(levels: int, neighbours: int = N_INSLICE) -> tuple[Pass, ...]:
    """The passes of one slice, in decoding order; each sees its ``neighbours`` nearest known
    in-slice voxels (``neighbours + 4`` for D passes, at most what a 7 x 7 window holds)."""
    if not 0 <= levels <= 6:
        raise ValueError(f"levels must be in 0..6, got {levels}")
    if not 4 <= neighbours <= 24:
        raise ValueError(f"neighbours must be in 4..24, got {neighbours}")
    top = 2 ** levels
    passes = [Pass("T", levels, ((0, 0, top),), (), _prev_offsets(()))]
    r = range(-3, 4)
    for level in range(levels - 1, -1, -1):
        s = 2 ** level
        # in units of s, relative to the voxel: B at (1,1) sees the lattice 2s (odd, odd offsets);
        # C at (0,1) also sees B (offsets with odd sum); D at (1,0) sees everything but other Ds
        b = _nearest([(dy * s, dx * s) for dy in r for dx in r if dy % 2 and dx % 2], neighbours)
        c = _nearest([(dy * s, dx * s) for dy in r for dx in r if (dy + dx) % 2], neighbours)
        d = _nearest([(dy * s, dx * s) for dy in r for dx in r if dy % 2 or dx % 2], neighbours + 4)
        passes.append(Pass(f"B{level}", level, ((s, s, 2 * s),), b, _prev_offsets(b)))
        passes.append(Pass(f"C{level}", level, ((0, s, 2 * s),), c, _prev_offsets(c)))
        passes.append(Pass(f"D{level}", level, ((s, 0, 2 * s),), d, _prev_offsets(d)))
    return tuple(passes)


def pad_width(levels: int) -> int:
    """Padding around a slice so that every offset of every pass stays inside the array."""
    return max(3 * 2 ** max(levels - 1, 0), 1)


def grid_shape(shape_yx, grid):
    y0, x0, step = grid
    h, w = shape_yx
    return (max(0, -(-(h - y0) // step)), max(0, -(-(w - x0) // step)))


def pass_size(shape_yx, p: Pass) -> int:
    return sum(int(np.prod(grid_shape(shape_yx, g))) for g in p.grids)


def _views(padded, grid, offsets, shape_yx, pad):
    """Strided views (depth, ny, nx) of a padded (depth, H+2p, W+2p) stack, one per offset."""
    y0, x0, step = grid
    ny, nx = grid_shape(shape_yx, grid)
    if ny == 0 or nx == 0:
        return [np.zeros((padded.shape[0], ny, nx), padded.dtype) for _ in offsets]
    out = []
    for dy, dx in offsets:
        ys = pad + y0 + dy
        xs = pad + x0 + dx
        out.append(padded[:, ys: ys + (ny - 1) * step + 1: step, xs: xs + (nx - 1) * step + 1: step])
    return out


def gather(cur_pad, prev_pad, p: Pass, shape_yx, pad, use_prev: bool) -> np.ndarray:
    """Features of every voxel of pass ``p``: float32 array (n_features, depth, n_voxels).

    ``cur_pad`` and ``prev_pad`` are padded float32 stacks (depth, H+2p, W+2p) of centred values
    (``prev_pad[i]`` is the slice before ``cur_pad[i]``). Within a slice, voxels are ordered grid
    by grid, then row, then column; in-slice features come first, then previous-slice ones.
    """
    depth = cur_pad.shape[0]
    columns = []
    for grid in p.grids:
        views = _views(cur_pad, grid, p.inslice, shape_yx, pad)
        if use_prev:
            views += _views(prev_pad, grid, p.prev, shape_yx, pad)
        n = int(np.prod(grid_shape(shape_yx, grid)))
        if views:
            columns.append(np.stack(views).reshape(len(views), depth, n))
        else:
            columns.append(np.zeros((0, depth, n), np.float32))
    return np.concatenate(columns, axis=2) if len(columns) > 1 else columns[0]


def gather_at(cur_pad, prev_pad, p: Pass, shape_yx, pad, use_prev: bool, index: np.ndarray) -> np.ndarray:
    """Features of the voxels ``index`` (sorted positions in the order of :func:`gather`) of pass ``p``
    of one slice: float32 (n_features, len(index)), equal to ``gather(...)[:, 0, index]`` without
    gathering the other voxels.  ``cur_pad`` and ``prev_pad`` are padded slices (H+2p, W+2p)."""
    offsets = [(o, cur_pad) for o in p.inslice] + ([(o, prev_pad) for o in p.prev] if use_prev else [])
    out = np.empty((len(offsets), index.size), np.float32)
    start = 0
    for grid in p.grids:
        y0, x0, step = grid
        ny, nx = grid_shape(shape_yx, grid)
        a, b = np.searchsorted(index, [start, start + ny * nx])
        if b > a:
            k = index[a:b] - start
            ys = pad + y0 + step * (k // nx)
            xs = pad + x0 + step * (k % nx)
            for f, ((dy, dx), src) in enumerate(offsets):
                out[f, a:b] = src[ys + dy, xs + dx]
        start += ny * nx
    return out


def take_at(src, p: Pass, index: np.ndarray) -> np.ndarray:
    """``take(src[None], p)[0, index]`` of one unpadded slice (H, W), for sorted ``index``."""
    out = np.empty(index.size, src.dtype)
    start = 0
    for grid in p.grids:
        y0, x0, step = grid
        ny, nx = grid_shape(src.shape, grid)
        a, b = np.searchsorted(index, [start, start + ny * nx])
        k = index[a:b] - start
        out[a:b] = src[y0 + step * (k // nx), x0 + step * (k % nx)]
        start += ny * nx
    return out


def scatter(dest, values, p: Pass, shape_yx, offset=0):
    """Write a pass's voxels (depth, n), ordered as by :func:`gather`, into ``dest`` at ``offset``."""
    start = 0
    for y0, x0, step in p.grids:
        ny, nx = grid_shape(shape_yx, (y0, x0, step))
        if ny and nx:
            dest[:, offset + y0: offset + y0 + (ny - 1) * step + 1: step,
                 offset + x0: offset + x0 + (nx - 1) * step + 1: step] = \
                values[:, start:start + ny * nx].reshape(-1, ny, nx)
        start += ny * nx


def take(src, p: Pass):
    """Voxels of pass ``p`` from an unpadded stack (depth, H, W) as (depth, n), ordered as by :func:`gather`."""
    parts = [src[:, y0::step, x0::step].reshape(src.shape[0], -1) for y0, x0, step in p.grids]
    return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
