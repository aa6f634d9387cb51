"""Residual tokens and their adaptive, integer-defined distributions, coded with constriction.

A residual ``r = x - prediction`` is zigzag-mapped to ``u >= 0`` and split into a token and raw
bits (the hybrid-integer scheme of JPEG XL): ``u < 16`` is its own token; larger ``u`` keep their
exponent and the next 3 bits in the token and send the remaining low bits uniformly.

Each scale bin owns an integer count table over tokens, starting flat and updated after every
group of symbols, identically in encoder and decoder.  The coder receives ``counts / counts.sum()``
(exactly rounded IEEE division, the same on every machine), so the network's integer outputs reach
the range coder only through integer-defined tables.  Within a pass, symbols are grouped by scale
bin and each group is coded with one vectorized constriction call: no Python loop per voxel.
"""

from __future__ import annotations

import numpy as np
import constriction

Categorical = constriction.stream.model.Categorical
Uniform = constriction.stream.model.Uniform

DIRECT = 16  # tokens 0..15 code u directly
SPLIT = 4  # log2(DIRECT)
MSB = 3  # mantissa bits kept in the token above DIRECT
INCREMENT = 32  # count added per coded symbol (the flat prior counts 1)
HALVE_ABOVE = 1 << 20  # counts of a bin are halved when their total passes this
MIN_RUN = 64  # shortest run of symbols coded with one table state
MAX_RUN = 4096  # longest run: tables keep adapting inside large groups

_UNIFORM = Uniform()


def n_tokens(max_u: int) -> int:
    top = max(int(max_u).bit_length() - 1, SPLIT)
    return DIRECT + (top - SPLIT + 1) * (1 << MSB)

def unzigzag(u: np.ndarray) -> np.ndarray:
    return np.where(u & 1, -((u + 1) >> 1), u >> 1)

def token_bits(tok: np.ndarray) -> np.ndarray:
    t = tok.astype(np.int64)
    return np.where(t >= DIRECT, ((t - DIRECT) >> MSB) + SPLIT - MSB, 0)


def detokenize(tok: np.ndarray, extra: np.ndarray) -> np.ndarray:
    t = tok.astype(np.int64)
    big = t >= DIRECT
    nbits = token_bits(tok)
    head = ((1 << MSB) + ((t - DIRECT) & ((1 << MSB) - 1))) << nbits
    return np.where(big, head | extra.astype(np.int64), t)


class AdaptiveTables:
    """Per-bin integer token counts shared by encoder and decoder."""

    def __init__(self, bins: int, tokens: int):
        self.counts = np.ones((bins, tokens), np.int64)
        self.seen = np.zeros(bins, np.int64)
        self.tokens = tokens

    def chunks(self, b: int, n: int):
        """Split the next ``n`` symbols of table ``b`` into runs that are each coded with one table
        state: a run is never longer than what the table has already seen (at least MIN_RUN), so a
        fresh table learns fast, and never longer than MAX_RUN, so a table follows changes of the
        data (a noisier slice) within a pass."""
        start = 0
        seen = int(self.seen[b])
        while start < n:
            run = min(n - start, max(MIN_RUN, min(seen, MAX_RUN)))
            yield start, start + run
            start += run
            seen += run

    def model(self, b: int) -> Categorical:
        c = self.counts[b]
        return Categorical(c / c.sum(), perfect=False)

    def update(self, b: int, tok: np.ndarray):
        c = self.counts[b]
        c += INCREMENT * np.bincount(tok, minlength=self.tokens)
        self.seen[b] += tok.size
        if c.sum() > HALVE_ABOVE:
            self.counts[b] = (c + 1) >> 1


def _groups(bins: np.ndarray, n_bins: int):
    order = np.argsort(bins, kind="stable")
    sizes = np.bincount(bins, minlength=n_bins)
    start = 0
    for b in range(n_bins):
        if sizes[b]:
            yield b, order[start:start + sizes[b]]
            start += sizes[b]

def decode_symbols(decoder, tables: AdaptiveTables, bins: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_symbols`: returns u for every voxel of the pass."""
    tok = np.empty(bins.size, np.int32)
    for b, idx in _groups(bins, tables.counts.shape[0]):
        for a, z in tables.chunks(b, idx.size):
            t = np.asarray(decoder.decode(tables.model(b), z - a), np.int32)
            tok[idx[a:z]] = t
            tables.update(b, t)
    nbits = token_bits(tok)
    extra = np.zeros(bins.size, np.int64)
    raw = nbits > 0
    if raw.any():
        extra[raw] = decoder.decode(_UNIFORM, (np.int64(1) << nbits[raw]).astype(np.int32))
    return detokenize(tok, extra)
