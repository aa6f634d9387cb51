"""Compiled kernels of the exact engine (numba): integer inference, token modelling, rANS, raw bits.

Everything here is integer arithmetic, or float32 arithmetic on integers whose every product and
partial sum stays below 2^24 (so exact whatever the order or FMA contraction), see
:mod:`voxcodec.core.network`.  No kernel reads a float that is not such an integer, so the results
are the same on every machine, thread count and batch split.

Kernels are compiled once per machine (``cache=True``) and release the GIL (``nogil=True``).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_JIT = dict(cache=True, nogil=True, error_model="numpy", boundscheck=False)
_JIT_F = dict(_JIT, fastmath={"contract"})  # FMA contraction only: exact on the integers we feed

#: token modelling (the same constants as :mod:`voxcodec.core.entropy`)
DIRECT = 16
MSB = 3
INCREMENT = 32
HALVE_ABOVE = 1 << 20
MIN_RUN = 64
MAX_RUN = 4096
#: rANS: 20-bit probabilities, 63-bit states in [2^47, 2^63), 16-bit words.  The states keep 27 bits
#: more than the probabilities, so coding costs within about 2^-27 of the ideal code length, and a
#: token no table has seen costs 2^-20 of the probability mass
PROB_BITS = 20
PROB_SCALE = 1 << PROB_BITS
RANS_L = np.int64(1) << 47
#: the symbol lookup of a table state: 2^LUT_BITS buckets, then a short linear search
LUT_BITS = 10
LUT_SHIFT = PROB_BITS - LUT_BITS

#: voxels gathered at a time by the inference kernel for strided passes; contiguous passes sweep rows
#: of up to 2 x COLS, or several short rows at once (about 4 x COLS voxels).  Longer sweeps spread
#: each sweep's set-up over more voxels, and the buffers still fit the L2 cache: the finest pass took
#: 8.2 / 12.5 / 8.9 ns per voxel on isbi / flyem (inter-slice) / vnc with 256 and 2 x 256, and
#: 7.1 / 9.7 / 6.1 ns with these
COLS = 512
#: flat contexts: the nearest features that decide them (see infer_rows)
FLAT_NEAR = 4

# error codes returned by the decoding kernels
OK = 0
ERR_WORDS = 1  # the rANS section ended early
ERR_BITS = 2  # the raw-bit section ended early
ERR_RANGE = 3  # a decoded value lies outside the block's range or palette


# -- inference -------------------------------------------------------------------------------------------

# _dense1 .. _dense9: one sweep over the inputs for 1..9 outputs, four inputs at a time (written out:
# numba has no register blocking of its own; each accumulator row is loaded and stored once per
# four inputs).  Sums of integers below 2^24 in any order: exact.
@njit(**_JIT_F)
def _dense1(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense2(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense3(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense4(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    r3 = raw[h + 3]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
        r3[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        w3_0 = w[h + 3, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        w3_1 = w[h + 3, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        w3_2 = w[h + 3, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        w3_3 = w[h + 3, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
            r3[j] += w3_0 * v0 + w3_1 * v1 + w3_2 * v2 + w3_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        w3_0 = w[h + 3, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
            r3[j] += w3_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense5(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    r3 = raw[h + 3]
    r4 = raw[h + 4]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
        r3[j] = 0.0
        r4[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        w3_0 = w[h + 3, f + 0]
        w4_0 = w[h + 4, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        w3_1 = w[h + 3, f + 1]
        w4_1 = w[h + 4, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        w3_2 = w[h + 3, f + 2]
        w4_2 = w[h + 4, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        w3_3 = w[h + 3, f + 3]
        w4_3 = w[h + 4, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
            r3[j] += w3_0 * v0 + w3_1 * v1 + w3_2 * v2 + w3_3 * v3
            r4[j] += w4_0 * v0 + w4_1 * v1 + w4_2 * v2 + w4_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        w3_0 = w[h + 3, f]
        w4_0 = w[h + 4, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
            r3[j] += w3_0 * v0
            r4[j] += w4_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense6(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    r3 = raw[h + 3]
    r4 = raw[h + 4]
    r5 = raw[h + 5]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
        r3[j] = 0.0
        r4[j] = 0.0
        r5[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        w3_0 = w[h + 3, f + 0]
        w4_0 = w[h + 4, f + 0]
        w5_0 = w[h + 5, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        w3_1 = w[h + 3, f + 1]
        w4_1 = w[h + 4, f + 1]
        w5_1 = w[h + 5, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        w3_2 = w[h + 3, f + 2]
        w4_2 = w[h + 4, f + 2]
        w5_2 = w[h + 5, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        w3_3 = w[h + 3, f + 3]
        w4_3 = w[h + 4, f + 3]
        w5_3 = w[h + 5, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
            r3[j] += w3_0 * v0 + w3_1 * v1 + w3_2 * v2 + w3_3 * v3
            r4[j] += w4_0 * v0 + w4_1 * v1 + w4_2 * v2 + w4_3 * v3
            r5[j] += w5_0 * v0 + w5_1 * v1 + w5_2 * v2 + w5_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        w3_0 = w[h + 3, f]
        w4_0 = w[h + 4, f]
        w5_0 = w[h + 5, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
            r3[j] += w3_0 * v0
            r4[j] += w4_0 * v0
            r5[j] += w5_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense7(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    r3 = raw[h + 3]
    r4 = raw[h + 4]
    r5 = raw[h + 5]
    r6 = raw[h + 6]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
        r3[j] = 0.0
        r4[j] = 0.0
        r5[j] = 0.0
        r6[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        w3_0 = w[h + 3, f + 0]
        w4_0 = w[h + 4, f + 0]
        w5_0 = w[h + 5, f + 0]
        w6_0 = w[h + 6, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        w3_1 = w[h + 3, f + 1]
        w4_1 = w[h + 4, f + 1]
        w5_1 = w[h + 5, f + 1]
        w6_1 = w[h + 6, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        w3_2 = w[h + 3, f + 2]
        w4_2 = w[h + 4, f + 2]
        w5_2 = w[h + 5, f + 2]
        w6_2 = w[h + 6, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        w3_3 = w[h + 3, f + 3]
        w4_3 = w[h + 4, f + 3]
        w5_3 = w[h + 5, f + 3]
        w6_3 = w[h + 6, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
            r3[j] += w3_0 * v0 + w3_1 * v1 + w3_2 * v2 + w3_3 * v3
            r4[j] += w4_0 * v0 + w4_1 * v1 + w4_2 * v2 + w4_3 * v3
            r5[j] += w5_0 * v0 + w5_1 * v1 + w5_2 * v2 + w5_3 * v3
            r6[j] += w6_0 * v0 + w6_1 * v1 + w6_2 * v2 + w6_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        w3_0 = w[h + 3, f]
        w4_0 = w[h + 4, f]
        w5_0 = w[h + 5, f]
        w6_0 = w[h + 6, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
            r3[j] += w3_0 * v0
            r4[j] += w4_0 * v0
            r5[j] += w5_0 * v0
            r6[j] += w6_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense8(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    r3 = raw[h + 3]
    r4 = raw[h + 4]
    r5 = raw[h + 5]
    r6 = raw[h + 6]
    r7 = raw[h + 7]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
        r3[j] = 0.0
        r4[j] = 0.0
        r5[j] = 0.0
        r6[j] = 0.0
        r7[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        w3_0 = w[h + 3, f + 0]
        w4_0 = w[h + 4, f + 0]
        w5_0 = w[h + 5, f + 0]
        w6_0 = w[h + 6, f + 0]
        w7_0 = w[h + 7, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        w3_1 = w[h + 3, f + 1]
        w4_1 = w[h + 4, f + 1]
        w5_1 = w[h + 5, f + 1]
        w6_1 = w[h + 6, f + 1]
        w7_1 = w[h + 7, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        w3_2 = w[h + 3, f + 2]
        w4_2 = w[h + 4, f + 2]
        w5_2 = w[h + 5, f + 2]
        w6_2 = w[h + 6, f + 2]
        w7_2 = w[h + 7, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        w3_3 = w[h + 3, f + 3]
        w4_3 = w[h + 4, f + 3]
        w5_3 = w[h + 5, f + 3]
        w6_3 = w[h + 6, f + 3]
        w7_3 = w[h + 7, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
            r3[j] += w3_0 * v0 + w3_1 * v1 + w3_2 * v2 + w3_3 * v3
            r4[j] += w4_0 * v0 + w4_1 * v1 + w4_2 * v2 + w4_3 * v3
            r5[j] += w5_0 * v0 + w5_1 * v1 + w5_2 * v2 + w5_3 * v3
            r6[j] += w6_0 * v0 + w6_1 * v1 + w6_2 * v2 + w6_3 * v3
            r7[j] += w7_0 * v0 + w7_1 * v1 + w7_2 * v2 + w7_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        w3_0 = w[h + 3, f]
        w4_0 = w[h + 4, f]
        w5_0 = w[h + 5, f]
        w6_0 = w[h + 6, f]
        w7_0 = w[h + 7, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
            r3[j] += w3_0 * v0
            r4[j] += w4_0 * v0
            r5[j] += w5_0 * v0
            r6[j] += w6_0 * v0
            r7[j] += w7_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense9(src, bases, w, raw, h, m):
    r0 = raw[h + 0]
    r1 = raw[h + 1]
    r2 = raw[h + 2]
    r3 = raw[h + 3]
    r4 = raw[h + 4]
    r5 = raw[h + 5]
    r6 = raw[h + 6]
    r7 = raw[h + 7]
    r8 = raw[h + 8]
    for j in range(np.uint64(m)):
        r0[j] = 0.0
        r1[j] = 0.0
        r2[j] = 0.0
        r3[j] = 0.0
        r4[j] = 0.0
        r5[j] = 0.0
        r6[j] = 0.0
        r7[j] = 0.0
        r8[j] = 0.0
    n = w.shape[1]
    f = 0
    while f + 4 <= n:
        w0_0 = w[h + 0, f + 0]
        w1_0 = w[h + 1, f + 0]
        w2_0 = w[h + 2, f + 0]
        w3_0 = w[h + 3, f + 0]
        w4_0 = w[h + 4, f + 0]
        w5_0 = w[h + 5, f + 0]
        w6_0 = w[h + 6, f + 0]
        w7_0 = w[h + 7, f + 0]
        w8_0 = w[h + 8, f + 0]
        b0 = np.uint64(bases[f + 0])
        w0_1 = w[h + 0, f + 1]
        w1_1 = w[h + 1, f + 1]
        w2_1 = w[h + 2, f + 1]
        w3_1 = w[h + 3, f + 1]
        w4_1 = w[h + 4, f + 1]
        w5_1 = w[h + 5, f + 1]
        w6_1 = w[h + 6, f + 1]
        w7_1 = w[h + 7, f + 1]
        w8_1 = w[h + 8, f + 1]
        b1 = np.uint64(bases[f + 1])
        w0_2 = w[h + 0, f + 2]
        w1_2 = w[h + 1, f + 2]
        w2_2 = w[h + 2, f + 2]
        w3_2 = w[h + 3, f + 2]
        w4_2 = w[h + 4, f + 2]
        w5_2 = w[h + 5, f + 2]
        w6_2 = w[h + 6, f + 2]
        w7_2 = w[h + 7, f + 2]
        w8_2 = w[h + 8, f + 2]
        b2 = np.uint64(bases[f + 2])
        w0_3 = w[h + 0, f + 3]
        w1_3 = w[h + 1, f + 3]
        w2_3 = w[h + 2, f + 3]
        w3_3 = w[h + 3, f + 3]
        w4_3 = w[h + 4, f + 3]
        w5_3 = w[h + 5, f + 3]
        w6_3 = w[h + 6, f + 3]
        w7_3 = w[h + 7, f + 3]
        w8_3 = w[h + 8, f + 3]
        b3 = np.uint64(bases[f + 3])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            v1 = src[b1 + j]
            v2 = src[b2 + j]
            v3 = src[b3 + j]
            r0[j] += w0_0 * v0 + w0_1 * v1 + w0_2 * v2 + w0_3 * v3
            r1[j] += w1_0 * v0 + w1_1 * v1 + w1_2 * v2 + w1_3 * v3
            r2[j] += w2_0 * v0 + w2_1 * v1 + w2_2 * v2 + w2_3 * v3
            r3[j] += w3_0 * v0 + w3_1 * v1 + w3_2 * v2 + w3_3 * v3
            r4[j] += w4_0 * v0 + w4_1 * v1 + w4_2 * v2 + w4_3 * v3
            r5[j] += w5_0 * v0 + w5_1 * v1 + w5_2 * v2 + w5_3 * v3
            r6[j] += w6_0 * v0 + w6_1 * v1 + w6_2 * v2 + w6_3 * v3
            r7[j] += w7_0 * v0 + w7_1 * v1 + w7_2 * v2 + w7_3 * v3
            r8[j] += w8_0 * v0 + w8_1 * v1 + w8_2 * v2 + w8_3 * v3
        f += 4
    while f < n:
        w0_0 = w[h + 0, f]
        w1_0 = w[h + 1, f]
        w2_0 = w[h + 2, f]
        w3_0 = w[h + 3, f]
        w4_0 = w[h + 4, f]
        w5_0 = w[h + 5, f]
        w6_0 = w[h + 6, f]
        w7_0 = w[h + 7, f]
        w8_0 = w[h + 8, f]
        b0 = np.uint64(bases[f])
        for j in range(np.uint64(m)):
            v0 = src[b0 + j]
            r0[j] += w0_0 * v0
            r1[j] += w1_0 * v0
            r2[j] += w2_0 * v0
            r3[j] += w3_0 * v0
            r4[j] += w4_0 * v0
            r5[j] += w5_0 * v0
            r6[j] += w6_0 * v0
            r7[j] += w7_0 * v0
            r8[j] += w8_0 * v0
        f += 1


@njit(**_JIT_F)
def _dense(src, bases, w, raw, m):
    """``raw[h, :m] = sum_f w[h, f] * src[bases[f]:bases[f] + m]``: up to nine outputs per sweep
    over the inputs (each input row is read once per sweep; generated code, see above)."""
    n = w.shape[0]
    h = 0
    while h < n:
        left = min(n - h, 9)
        if left == 9:
            _dense9(src, bases, w, raw, h, m)
        elif left == 8:
            _dense8(src, bases, w, raw, h, m)
        elif left == 7:
            _dense7(src, bases, w, raw, h, m)
        elif left == 6:
            _dense6(src, bases, w, raw, h, m)
        elif left == 5:
            _dense5(src, bases, w, raw, h, m)
        elif left == 4:
            _dense4(src, bases, w, raw, h, m)
        elif left == 3:
            _dense3(src, bases, w, raw, h, m)
        elif left == 2:
            _dense2(src, bases, w, raw, h, m)
        else:
            _dense1(src, bases, w, raw, h, m)
        h += left


@njit(**_JIT_F)
def _activate(raw, b, s, a, m):
    """``a = clip((int(raw) + b) >> s, 0, 127)`` for the first ``len(b)`` rows, in int64: ``raw``
    holds integers below 2^24, so its conversion is exact (int64 vectors were a quarter faster than
    the float64 floor this replaces, with the same results)."""
    for h in range(b.shape[0]):
        bh = np.int64(b[h])
        rh = raw[h]
        ah = a[h]
        for j in range(np.uint64(m)):
            z = (np.int64(rh[j]) + bh) >> s
            ah[j] = np.float32(min(max(z, 0), 127))


@njit(**_JIT_F)
def infer_rows(planes, fq, fr, fc, rs, cs, ny, nx,
               w1s, b1, s1, w2, b2, s2, wout, sh_mu, sh_skip, bmu, sh, bsc, sh_t, data_shift, bins,
               centre, lo, hi, tbase, flat_n, flat_table, pred, table):
    """Predictions and table indices of every voxel of one pass, for a stack of slices.

    ``planes`` (D, 8, rows, cols) float32 holds each slice's centred values as four phase planes
    (``padded[a::2, b::2]`` at index ``2a + b``), then those of the slice before it.  Feature f of
    voxel (i, j) of the pass is ``planes[d, fq[f], fr[f] + rs * i, fc[f] + cs * j]``.  ``pred`` and
    ``table`` (D, ny * nx) int32 receive ``clip(centre + offset, lo, hi)`` and ``tbase + bin``,
    voxels row by row.  ``w1s`` holds the first layer's weights and, as its last row, the linear
    skip's.  This is :meth:`voxcodec.core.network.IntNet.infer` (the same integers).

    Flat contexts (format 4): when ``flat_n > 0`` and the first ``min(flat_n, FLAT_NEAR)`` features
    of a voxel (its nearest neighbours) are all equal to one value v, its prediction is
    ``clip(centre + (v << data_shift), lo, hi)`` and its table ``flat_table`` if all ``flat_n`` are
    equal, else ``flat_table + 1``, whatever the network says: constant regions such as the black
    borders of aligned stacks then cost almost nothing.  At their edges, a voxel whose nearest
    ``FLAT_NEAR`` (4) features hold k >= 2 times the block's lowest value ``lo`` (centred) and are not
    all equal is predicted as ``lo``, with table ``flat_table + k``."""
    if ny <= 0 or nx <= 0:
        return
    nf = fq.shape[0]
    h1 = b1.shape[0]
    h2 = b2.shape[0]
    rows, cols = planes.shape[2], planes.shape[3]
    # contiguous passes with short rows run g rows per sweep (about 4 x COLS voxels), with the padding
    # between them (computed and dropped): a sweep of 125 voxels spends much of its time on its start and tail
    g = 1
    if cs == 1 and nx < 2 * COLS:
        g = max(1, min(ny, (4 * COLS - nx) // (rs * cols) + 1))
    cap = max(COLS, (g - 1) * rs * cols + nx)
    x = np.empty((max(nf, 1), cap if cs != 1 else 1), np.float32)  # gathered features: strided passes only
    raw1 = np.empty((h1 + 1, cap), np.float32)
    a1 = np.empty((h1, cap), np.float32)
    raw2 = np.empty((h2, cap), np.float32)
    a2 = np.empty((h2, cap), np.float32)
    out = np.empty((2, cap), np.float32)
    span_p = np.empty(cap, pred.dtype)
    span_t = np.empty(cap, table.dtype)
    mark = np.empty(cap, np.int32)
    bases = np.empty(max(nf, 1), np.int64)
    rows_h1 = np.arange(max(h1, h2), dtype=np.int64) * cap
    xflat = x.ravel()
    a1flat = a1.ravel()
    a2flat = a2.ravel()
    half = np.int64(1) << (sh - 1)
    flat = planes.ravel()
    n = ny * nx
    for d in range(planes.shape[0]):
        pd = pred[d]
        td = table[d]
        # contiguous passes (level 0) read their features in place, a row at a time; strided ones
        # gather COLS voxels at a time, across rows (short rows would leave the sweeps short)
        for v0 in range(0, n, COLS if cs != 1 else nx * g):
            if cs == 1 and g > 1:  # rows i .. i + k - 1 as one span, padding included
                i = v0 // nx
                k = min(g, ny - i)
                m = (k - 1) * rs * cols + nx
                for f in range(nf):
                    bases[f] = ((d * 8 + fq[f]) * rows + fr[f] + rs * i) * cols + fc[f]
                _net(flat, bases, m, w1s, b1, s1, w2, b2, s2, wout, raw1, a1, a1flat, raw2, a2, a2flat, out,
                     rows_h1, sh_mu, sh_skip, bmu, half, sh, bsc, sh_t, data_shift, bins, centre, lo, hi, tbase,
                     flat_n, flat_table, span_p, span_t, 0, mark)
                for r in range(k):
                    src0 = r * rs * cols
                    dst0 = v0 + r * nx
                    for j in range(nx):
                        pd[dst0 + j] = span_p[src0 + j]
                        td[dst0 + j] = span_t[src0 + j]
            elif cs == 1:
                i = v0 // nx
                for j0 in range(0, nx, COLS):
                    m = min(COLS, nx - j0)
                    for f in range(nf):
                        bases[f] = ((d * 8 + fq[f]) * rows + fr[f] + rs * i) * cols + fc[f] + j0
                    _net(flat, bases, m, w1s, b1, s1, w2, b2, s2, wout, raw1, a1, a1flat, raw2, a2, a2flat, out,
                         rows_h1, sh_mu, sh_skip, bmu, half, sh, bsc, sh_t, data_shift, bins, centre, lo, hi, tbase,
                         flat_n, flat_table, pd, td, v0 + j0, mark)
            else:
                m = min(COLS, n - v0)
                ucs = np.uint64(cs)
                for f in range(nf):
                    xf = x[f]
                    t = 0
                    i = v0 // nx
                    j = v0 - i * nx
                    while t < m:
                        run = min(nx - j, m - t)
                        ub = np.uint64(((d * 8 + fq[f]) * rows + fr[f] + rs * i) * cols + fc[f] + cs * j)
                        for k in range(np.uint64(run)):
                            xf[np.uint64(t) + k] = flat[ub + ucs * k]
                        t += run
                        i += 1
                        j = 0
                    bases[f] = f * cap
                _net(xflat, bases, m, w1s, b1, s1, w2, b2, s2, wout, raw1, a1, a1flat, raw2, a2, a2flat, out,
                     rows_h1, sh_mu, sh_skip, bmu, half, sh, bsc, sh_t, data_shift, bins, centre, lo, hi, tbase,
                     flat_n, flat_table, pd, td, v0, mark)


@njit(**_JIT_F)
def _net(src, bases, m, w1s, b1, s1, w2, b2, s2, wout, raw1, a1, a1flat, raw2, a2, a2flat, out, rows_h1,
         sh_mu, sh_skip, bmu, half, sh, bsc, sh_t, data_shift, bins, centre, lo, hi, tbase, flat_n, flat_table, pd, td,
         start, mark):
    """The network on ``m`` voxels whose features are ``src[bases[f]:bases[f] + m]``; their
    predictions and tables go to ``pd``/``td`` from ``start``."""
    h1 = b1.shape[0]
    _dense(src, bases, w1s, raw1, m)
    _activate(raw1, b1, s1, a1, m)
    _dense(a1flat, rows_h1, w2, raw2, m)
    _activate(raw2, b2, s2, a2, m)
    _dense(a2flat, rows_h1, wout, out, m)
    skip = raw1[h1]
    o_mu = out[0]
    o_sc = out[1]
    base = np.uint64(start)
    for j in range(np.uint64(m)):
        mu = (np.int64(o_mu[j]) << sh_mu) + (np.int64(skip[j]) << sh_skip) + bmu
        mu = ((mu << data_shift) + half) >> sh
        pd[base + j] = min(max(centre + mu, lo), hi)
        t = (np.int64(o_sc[j]) + bsc) >> sh_t
        td[base + j] = tbase + min(max(t, 0), bins - 1)
    if flat_n > 0:  # flat contexts: the value of the neighbours, and tables of their own
        near = min(flat_n, FLAT_NEAR)
        floor = np.float32((lo - centre) >> data_shift)  # the block's lowest value, centred (black borders)
        b0 = bases[0]
        if near == FLAT_NEAR:  # branch-free sweeps: every voxel's class, then its prediction and table
            u0, u1, u2, u3 = np.uint64(b0), np.uint64(bases[1]), np.uint64(bases[2]), np.uint64(bases[3])
            for j in range(np.uint64(m)):
                v = src[u0 + j]
                v1 = src[u1 + j]
                v2 = src[u2 + j]
                v3 = src[u3 + j]
                at_floor = np.int32(v == floor) + np.int32(v1 == floor) + np.int32(v2 == floor) + np.int32(v3 == floor)
                same = np.int32((v1 == v) & (v2 == v) & (v3 == v))
                # bits 0-2: nearest at the floor (2..4, else 0); bit 3: the nearest all equal
                mark[j] = same * 8 + at_floor * np.int32(at_floor >= 2)
            for f in range(near, flat_n):  # bit 4: a farther neighbour differs
                uf = np.uint64(bases[f])
                for j in range(np.uint64(m)):
                    mark[j] |= np.int32(src[uf + j] != src[u0 + j]) * 16
            hi64 = np.int64(hi)
            lo64 = np.int64(lo)
            for j in range(np.uint64(m)):
                c = mark[j]
                e = (c & 8) != 0
                k = c & 7
                vf = min(max(centre + (np.int64(src[u0 + j]) << data_shift), lo64), hi64)
                p0 = pd[base + j]
                t0 = td[base + j]
                pe = lo64 if k >= 2 else p0
                te = flat_table + k if k >= 2 else t0
                pd[base + j] = vf if e else pe
                td[base + j] = flat_table + ((c >> 4) & 1) if e else te
        else:
            for j in range(np.uint64(m)):
                v = src[b0 + j]
                same = True
                for f in range(1, near):
                    if src[bases[f] + j] != v:
                        same = False
                        break
                if same:
                    t = flat_table
                    for f in range(near, flat_n):
                        if src[bases[f] + j] != v:
                            t = flat_table + 1
                            break
                    pd[base + j] = min(max(centre + (np.int64(v) << data_shift), lo), hi)
                    td[base + j] = t


# -- tables ----------------------------------------------------------------------------------------------

@njit(**_JIT)
def _build(counts, total, cum, lut, with_lut):
    """Quantize integer counts (sum ``total``) to frequencies summing to 2^20, every one >= 1:
    ``f = max(1, floor(c * (2^20 / total) + 0.5))`` in IEEE float64 (one correctly rounded division,
    then exact products and sums: the same on every machine), the largest frequency (the first of
    equal ones) taking what the others leave.  ``cum`` (T + 1) receives the cumulative sums and,
    ``with_lut``, ``lut`` the first symbol of every bucket."""
    t = counts.shape[0]
    s = np.int64(0)
    best = 0
    scale = PROB_SCALE / np.float64(total)
    for k in range(t):
        f = np.int64(np.floor(np.float64(counts[k]) * scale + 0.5))
        if f < 1:
            f = 1
        cum[k + 1] = f
        s += f
        if f > cum[best + 1]:
            best = k
    cum[best + 1] += PROB_SCALE - s
    cum[0] = 0
    for k in range(t):
        cum[k + 1] += cum[k]
    if with_lut:
        sym = 0
        for b in range(1 << LUT_BITS):
            while cum[sym + 1] <= (b << LUT_SHIFT):
                sym += 1
            lut[b] = sym


#: runs shorter than this find their symbols by a linear search instead of a lookup table (building
#: the table would cost more than it saves)
LUT_RUN = 256


@njit(**_JIT)
def _adapt(counts, hist, b):
    """Add a run's four token histograms (then cleared) to table ``b``, INCREMENT per symbol."""
    c = counts[b]
    for k in range(c.shape[0]):
        c[k] += INCREMENT * (hist[0, k] + hist[1, k] + hist[2, k] + hist[3, k])
        hist[0, k] = 0
        hist[1, k] = 0
        hist[2, k] = 0
        hist[3, k] = 0


@njit(**_JIT)
def _settle(counts, totals, seen, b, run):
    """After a run of ``run`` symbols was added to table ``b``: its sum, and halving when large."""
    totals[b] += INCREMENT * run
    seen[b] += run
    if totals[b] > HALVE_ABOVE:
        c = counts[b]
        s = np.int64(0)
        for k in range(c.shape[0]):
            c[k] = (c[k] + 1) >> 1
            s += c[k]
        totals[b] = s


@njit(**_JIT)
def _sort_by_table(table, n_tables, order, sizes):
    """Stable counting sort of voxel indices by table; ``sizes[b]`` receives the end of group b (its
    start is ``sizes[b - 1]``, 0 for b = 0).  The voxels are counted and placed as four quarters side
    by side, each with counters of its own: runs of one table (most voxels of a pass use a handful)
    then make four independent chains of increments instead of one (1.5 -> 1.0 ns per voxel)."""
    n = table.shape[0]
    q = n >> 2
    pos = np.zeros((4, n_tables), np.int64)
    c0 = pos[0]
    c1 = pos[1]
    c2 = pos[2]
    c3 = pos[3]
    for j in range(q):
        c0[table[j]] += 1
        c1[table[q + j]] += 1
        c2[table[2 * q + j]] += 1
        c3[table[3 * q + j]] += 1
    for j in range(4 * q, n):
        c3[table[j]] += 1
    end = 0
    for b in range(n_tables):  # quarter r of group b starts after quarters 0..r-1 of it
        for r in range(4):
            c = pos[r, b]
            pos[r, b] = end
            end += c
        sizes[b] = end
    sizes[n_tables] = end
    for j in range(q):
        b = table[j]
        order[c0[b]] = j
        c0[b] += 1
        b = table[q + j]
        order[c1[b]] = q + j
        c1[b] += 1
        b = table[2 * q + j]
        order[c2[b]] = 2 * q + j
        c2[b] += 1
        b = table[3 * q + j]
        order[c3[b]] = 3 * q + j
        c3[b] += 1
    for v in range(4 * q, n):
        b = table[v]
        order[c3[b]] = v
        c3[b] += 1


# -- encoding --------------------------------------------------------------------------------------------

# -- decoding --------------------------------------------------------------------------------------------

@njit(**_JIT)
def get_bits(buf, state, n):
    """Read ``n`` (<= 32) bits written by :func:`put_bits`; ``state`` = [bit position, bit length].
    Returns -1 past the end."""
    p = state[0]
    if p + n > state[1]:
        return -1
    byte = p >> 3
    v = np.int64(0)
    k = 0
    while k * 8 < (p & 7) + n:
        v |= np.int64(buf[byte + k]) << (8 * k)
        k += 1
    state[0] = p + n
    return (v >> (p & 7)) & ((np.int64(1) << n) - 1)


@njit(**_JIT)
def decode_pass(table, pred, n_tables, counts, totals, seen, words, rstate, raw, bstate,
                rank_values, nearest, lo, hi, order, sizes, cum, lut, toks, values):
    """Decode the tokens and raw bits of one pass (voxels in ``table``/``pred`` order) and rebuild
    their values into ``values``.  ``rstate`` = [the two rANS states, word position, word count].
    ``rank_values``/``nearest``: a palette (:class:`voxcodec.core.palette.Lookup`), or empty.
    Returns an error code (0: fine)."""
    n = table.shape[0]
    _sort_by_table(table, n_tables, order, sizes)
    hist = np.zeros((4, counts.shape[1]), np.int64)
    x0 = rstate[0]  # the state of the next symbol
    x1 = rstate[1]  # the state of the one after it
    pos = rstate[2]
    nw = rstate[3]
    a0 = 0
    for b in range(n_tables):
        end = sizes[b]
        a = a0
        while a < end:
            run = min(end - a, max(MIN_RUN, min(seen[b], MAX_RUN)))
            use_lut = run >= LUT_RUN
            _build(counts[b], totals[b], cum, lut, use_lut)
            for q in range(np.uint64(a), np.uint64(a + run)):
                slot = x0 & (PROB_SCALE - 1)
                s = np.uint64(lut[np.uint64(slot >> LUT_SHIFT)]) if use_lut else np.uint64(0)
                while cum[s + np.uint64(1)] <= slot:
                    s += np.uint64(1)
                start = cum[s]
                x = (cum[s + np.uint64(1)] - start) * (x0 >> PROB_BITS) + slot - start
                while x < RANS_L:
                    if pos >= nw:
                        return ERR_WORDS
                    x = (x << 16) | np.int64(words[np.uint64(pos)])
                    pos += 1
                x0 = x1
                x1 = x
                toks[np.uint64(order[q])] = s
                hist[q & np.uint64(3), s] += 1  # four histograms: repeated symbols do not wait on each other
            _adapt(counts, hist, b)
            _settle(counts, totals, seen, b, run)
            a += run
        a0 = end
    rstate[0] = x0
    rstate[1] = x1
    rstate[2] = pos
    palette = rank_values.shape[0] > 0
    for v in range(n):
        t = np.int64(toks[v])
        if t < DIRECT:
            u = t
        else:
            nb = ((t - DIRECT) >> MSB) + 1
            e = get_bits(raw, bstate, nb)
            if e < 0:
                return ERR_BITS
            u = (((np.int64(1) << MSB) + ((t - DIRECT) & ((1 << MSB) - 1))) << nb) | e
        r = -((u + 1) >> 1) if u & 1 else u >> 1
        if palette:  # residuals are ranks
            k = nearest[pred[v] - lo] + r
            if k < 0 or k >= rank_values.shape[0]:
                return ERR_RANGE
            values[v] = rank_values[k]
        else:
            val = pred[v] + r
            if val < lo or val > hi:
                return ERR_RANGE
            values[v] = val
    return OK

@njit(**_JIT)
def place(values, y0, x0, step, ny, nx, pad, out, planes, centre, shift):
    """Write a pass's values (ny * nx, row by row) into ``out`` (H, W) and, centred as
    ``clip((value - centre) >> shift, -128, 127)``, into the phase planes ``planes`` (4, rows, cols)
    of the padded slice."""
    for i in range(ny):
        y = y0 + step * i
        orow = out[y]
        py = pad + y
        for j in range(nx):
            v = values[i * nx + j]
            xx = x0 + step * j
            px = pad + xx
            orow[xx] = v
            c = (np.int64(v) - centre) >> shift
            planes[(py & 1) * 2 + (px & 1), py >> 1, px >> 1] = np.float32(min(max(c, -128), 127))


#: the columns of ``P`` in :func:`decode_slice`: a pass's integers
(P_RS, P_CS, P_NY, P_NX, P_S1, P_S2, P_SH_MU, P_SH_SKIP, P_BMU, P_SH, P_BSC, P_SH_T, P_DATA_SHIFT, P_BINS,
 P_CENTRE, P_LO, P_HI, P_TBASE, P_FLAT_N, P_FLAT_TABLE, P_Y0, P_X0, P_STEP, P_A, P_B, P_F0, P_F1, P_W0, P_W1,
 P_H1) = range(30)
P_FIELDS = 30


@njit(**_JIT)
def decode_slice(planes, fq, fr, fc, w1s, b1, w2, b2, wout, P, pred, table, values, n_tables, counts, totals,
                 seen, words, rstate, raw, bstate, rank_values, nearest, order, sizes, cum, lut, toks,
                 out, pad, centre, shift):
    """Every pass of one slice of a one-stream payload, in one call: for each pass (row i of ``P``),
    :func:`infer_rows`, :func:`decode_pass` and :func:`place`, as the decoder's loop over passes does
    one call at a time (those calls and the Python between them held the GIL for about a tenth of a
    decode of 250 x 250 slices).

    Pass i's features are ``fq/fr/fc[P[i, P_F0]:P[i, P_F1]]``, its first layer (with the skip row)
    ``w1s[P[i, P_W0]:P[i, P_W1]]`` as (P_H1 + 1, features), its other weights ``b1[i]``, ``w2[i]``,
    ``b2[i]``, ``wout[i]``; its voxels ``[P_A, P_B)`` are in the stream.  ``planes`` (1, 8, rows,
    cols): the slice's phase planes then the slice before's; the current ones are updated as voxels
    are placed in ``out`` (H, W).  Returns 0, or ``err + 16 * i`` for the first pass i that failed."""
    cur = planes[0, :4]
    for i in range(P.shape[0]):
        ny = P[i, P_NY]
        nx = P[i, P_NX]
        n = ny * nx
        if n == 0:
            continue
        nf = P[i, P_F1] - P[i, P_F0]
        h1 = P[i, P_H1]
        f0 = P[i, P_F0]
        f1 = P[i, P_F1]
        w1 = w1s[P[i, P_W0]:P[i, P_W1]].reshape(h1 + 1, nf)
        infer_rows(planes, fq[f0:f1], fr[f0:f1], fc[f0:f1], P[i, P_RS], P[i, P_CS], ny, nx, w1, b1[i],
                   P[i, P_S1], w2[i], b2[i], P[i, P_S2], wout[i], P[i, P_SH_MU], P[i, P_SH_SKIP], P[i, P_BMU],
                   P[i, P_SH], P[i, P_BSC], P[i, P_SH_T], P[i, P_DATA_SHIFT], P[i, P_BINS], P[i, P_CENTRE],
                   P[i, P_LO], P[i, P_HI], P[i, P_TBASE], P[i, P_FLAT_N], P[i, P_FLAT_TABLE], pred[:, :n],
                   table[:, :n])
        a = P[i, P_A]
        b = P[i, P_B]
        if a < b:
            err = decode_pass(table[0, a:b], pred[0, a:b], n_tables, counts, totals, seen, words, rstate, raw,
                              bstate, rank_values, nearest, P[i, P_LO], P[i, P_HI], order, sizes, cum, lut, toks,
                              values[a:b])
            if err:
                return err + 16 * i
        place(values, P[i, P_Y0], P[i, P_X0], P[i, P_STEP], ny, nx, pad, out, cur, centre, shift)
    return 0


@njit(**_JIT)
def get_flags(buf, state, flags):
    """Read ``flags.size`` single bits; False (nothing read) past the end."""
    p = state[0]
    n = flags.shape[0]
    if p + n > state[1]:
        return False
    for i in range(n):
        q = p + i
        flags[i] = (buf[q >> 3] >> (q & 7)) & 1
    state[0] = p + n
    return True
