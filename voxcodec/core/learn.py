"""Format 6 blocks: a model that learns while it codes, in the encoder and the decoder alike.

    block voxels -> slice headers (palettes) -> native engine: online least-squares prediction,
    contexts, adaptive residual model -> rANS coder -> payload

Each slice is coded in raster order.  A voxel is predicted by least-squares filters over its causal
neighbours in the slice and its neighbours in the two slices before, re-solved as the block is coded
(``voxcodec/core/native/vx6.c``); its residual is coded with token tables or with binary context
mixing, both adaptive.  Nothing the model learns is stored: the decoder learns the same integers
from the voxels it decodes.  A block's :class:`Params` (16 bytes) are its model section.

The engine is exact: integer arithmetic, and IEEE-754 double ``+ - * /`` and ``sqrt`` in a fixed order
for the least-squares solve (built without FMA contraction, see ``setup.py``), so every machine and
build decodes the same voxels.  ``docs/format.md`` ("Block coding (version 6)") specifies it.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np

from . import palette
from ..errors import CorruptStreamError

try:
    from . import _native
except ImportError as exc:  # pragma: no cover - a source tree whose extension was never built
    raise ImportError("voxcodec's native engine is not built: install the package (pip install .) or run "
                      "python setup.py build_ext --inplace in a source tree") from exc

PARAM_BYTES = 16
TABLES, MIXING = 1, 2
CODERS = {"tables": TABLES, "mixing": MIXING}

#: error codes of the engine (vx6.h) and what they mean in a stream
_ERRORS = {1: "its parameters are outside the limits", 2: "the payload ends early",
           3: "decoded values outside the block's range or palette",
           4: "a slice header (kind or palette) the encoder never writes",
           5: "the payload has bytes left over or a damaged start or end", 6: "not enough memory",
           7: "the block's fields or slice headers are inconsistent"}


@dataclass(frozen=True)
class Params:
    """How a format 6 block is modelled (its model section, 16 bytes).

    ``coder``: "tables" (adaptive token tables per error level: fast) or "mixing" (binary decisions,
    each from several adaptive context models mixed by an online logistic mixer).  The prediction:
    least squares over the ``causal`` nearest causal neighbours in the slice (0..40), ``prev`` in the
    slice before (0..25) and ``prev2`` in the one before that (0..9); re-solved every
    ``2 ** interval_log`` voxels, forgetting ``2 ** -forget`` of its statistics each time, with ridge
    ``2 ** -ridge``; one filter per band of ``2 ** band_log`` columns (0: one filter); a second stage
    over the residuals of ``casc`` neighbours (0..8); ``sparse`` (0..3): only the voxels of every
    ``2 ** sparse``-th row feed the filters' statistics (less work, about the same filters).  Mixing only: ``inputs`` context
    models (1..6), ``mant`` modelled mantissa bits, mixer rate ``lr``, bit models adapting over
    ``2 ** limit_log`` updates."""

    coder: str = "tables"
    causal: int = 24
    prev: int = 9
    prev2: int = 0
    interval_log: int = 7
    forget: int = 6
    ridge: int = 17
    band_log: int = 0
    casc: int = 6
    inputs: int = 0
    mant: int = 0
    lr: int = 0
    limit_log: int = 0
    sparse: int = 0

    def to_bytes(self) -> bytes:
        if self.coder not in CODERS:
            raise ValueError(f"coder must be one of {', '.join(CODERS)}, got {self.coder!r}")
        fields = [CODERS[self.coder], self.causal, self.prev, self.prev2, self.interval_log, self.forget,
                  self.ridge, self.band_log, self.casc, self.inputs, self.mant, self.lr, self.limit_log, self.sparse]
        if not all(isinstance(v, int) and 0 <= v <= 255 for v in fields):
            raise ValueError(f"parameters out of range: {self}")
        raw = bytes([1, *fields, 0])
        if _native.check_params(raw):
            raise ValueError(f"parameters outside the limits of format 6: {self}")
        return raw

    @classmethod
    def from_bytes(cls, raw: bytes, block: int | None = None) -> "Params":
        """A block's model section; CorruptStreamError unless it is 16 bytes of valid parameters."""
        raw = bytes(raw)
        if len(raw) != PARAM_BYTES or _native.check_params(raw):
            raise CorruptStreamError(f"the model section ({len(raw)} bytes) is not a valid set of format 6 "
                                     "parameters", block)
        coder = {v: k for k, v in CODERS.items()}[raw[1]]
        return cls(coder, *raw[2:15])

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> "Params":
        return dataclasses.replace(self, **kw)


def value_range(data: np.ndarray):
    """Block ``(lo, hi, centre, shift)``: ``(x - centre) >> shift`` lies in [-128, 127] (as in every format)."""
    lo, hi = int(data.min()), int(data.max())
    shift = 0
    while (hi - lo) >> shift > 255:
        shift += 1
    centre = lo + ((((hi - lo) >> shift) + 1) // 2 << shift)
    return lo, hi, centre, shift


def slice_headers(data: np.ndarray, lo: int, hi: int):
    """``(kinds, starts, values)``: each slice's kind and palette (:func:`voxcodec.core.palette.choose`)."""
    d = data.shape[0]
    kinds = np.zeros(d, np.uint8)
    starts = np.zeros(d + 1, np.int64)
    values = []
    for z in range(d):
        kind, vals = palette.choose(data[z], lo, hi)
        kinds[z] = kind
        if vals is not None:
            values.append(np.asarray(vals, np.int64))
        starts[z + 1] = starts[z] + (0 if vals is None else len(vals))
    return kinds, starts, (np.concatenate(values) if values else np.zeros(0, np.int64))


_SPARE = threading.local()


def _workspace(d: int, h: int, w: int, raw: bytes, payload_len: int = 0) -> np.ndarray:
    """This thread's workspace for the engine, grown as blocks need (one allocation reused from block to
    block: fresh memory for each block's planes would cost page faults; freed with the thread).  The
    engine does not use one smaller than it needs (parameters it refuses need none)."""
    n = _native.workspace(d, h, w, raw, payload_len)
    buf = getattr(_SPARE, "buf", None)
    if buf is None or buf.size < n:
        buf = _SPARE.buf = np.empty(n, np.uint8)
    return buf


def encode_block(data: np.ndarray, params: Params) -> tuple[bytes, list]:
    """Code a block (depth, H, W) of uint8 or uint16 voxels holding at least two values.  Returns
    ``(payload, slice_bits)``: the bits each slice added to the payload (approximate to a few bytes:
    the range coder owes some until it is flushed)."""
    data = np.ascontiguousarray(data)
    if data.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"format 6 blocks hold uint8 or uint16 voxels, not {data.dtype}")
    lo, hi, centre, shift = value_range(data)
    if lo == hi:
        raise ValueError("a constant block has no payload")
    d, h, w = data.shape
    kinds, starts, values = slice_headers(data, lo, hi)
    ends = np.zeros(d, np.int64)
    raw = params.to_bytes()
    out = _native.encode(data, d, h, w, data.itemsize, lo, hi, centre, shift, raw, kinds, starts, values, ends,
                         _workspace(d, h, w, raw))
    if isinstance(out, int):
        if out == 6:
            raise MemoryError("not enough memory to code the block")
        raise RuntimeError(f"the native engine refused the block (error {out})")  # a bug: inputs are checked
    return out, [8.0 * float(b) for b in np.diff(ends, prepend=0)]


def decode_block(payload: bytes, params: Params, shape, lo: int, hi: int, centre: int, shift: int, dtype,
                 out: np.ndarray | None = None, block: int | None = None) -> np.ndarray:
    """Decode a block payload into ``out`` (or a new array of ``shape`` and ``dtype``).  The arguments come
    from a checked block header.  Raises CorruptStreamError (naming ``block``) for a damaged payload,
    MemoryError where the machine lacks the memory."""
    dtype = np.dtype(dtype)
    if out is None:
        out = np.empty(shape, dtype)
    d, h, w = shape
    raw = params.to_bytes()
    err = _native.decode(payload, out, d, h, w, dtype.itemsize, lo, hi, centre, shift, raw,
                         _workspace(d, h, w, raw, len(payload)))
    if err == 6:
        raise MemoryError("not enough memory to decode the block")
    if err:
        raise CorruptStreamError(f"the payload is damaged: {_ERRORS.get(err, f'engine error {err}')}", block)
    return out
