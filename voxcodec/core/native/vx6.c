/* The format 6 block coder: see vx6.h and docs/format.md ("Block coding (version 6)").
 *
 * The data path of one voxel, in the order the code below follows it:
 *
 *   neighbours -> least-squares prediction (+ second stage on neighbour residuals) -> contexts
 *   -> residual coded by token tables or by binary context mixing -> range coder
 *   -> the decoded voxel updates the filters' statistics, the error planes and the models
 *
 * Encoder and decoder run the same function (code_block), which keeps them in step by construction.
 */
#include "vx6.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "logistic.h"

/* >> of a negative integer is a floor (arithmetic) shift here, as the format says: implementation-defined in
 * C, true of GCC, Clang and MSVC; a compiler where it is not fails here */
typedef char vx6_needs_arithmetic_shift[((-3) >> 1) == -2 && ((int64_t)-3 >> 1) == -2 ? 1 : -1];

#if defined(__i386__) && !defined(__SSE2_MATH__)
#error "x87 floating point rounds the least-squares solve differently: build with -msse2 -mfpmath=sse"
#endif

/* The integer kernels below (sums of products of 16-bit integers: exact in any order and lane width)
 * are also compiled for AVX2 where GCC can dispatch at load time (x86-64 ELF); the results are the
 * same integers either way. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(VX6_NO_DISPATCH)
#define VX6_SIMD __attribute__((target_clones("avx2", "default")))
#else
#define VX6_SIMD
#endif

/* SSE2 (every x86-64) multiplies pairs of 16-bit integers and adds them in one instruction (pmaddwd):
 * dot_rows uses it there; VX6_NO_DISPATCH builds the plain C loops instead (a second code path for the
 * exactness tests: the sums are the same integers). */
#if defined(__SSE2__) && !defined(VX6_NO_DISPATCH)
#define VX6_SSE2 1
#include <emmintrin.h>
#endif

/* a condition as likely true as false: GCC then selects (cmov) instead of branching */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9
#define VX6_COIN(c) __builtin_expect_with_probability((c), 1, 0.5)
#else
#define VX6_COIN(c) (c)
#endif

#define PAD 8
#define NODES 64
#define EQ_LEVELS 24
#define EQ_FLAT EQ_LEVELS     /* the context level of flat voxels (their four nearest neighbours equal) */
#define EQ_EDGE (EQ_LEVELS + 1) /* ... and of voxels beside the block's lowest value: 16 levels, one per pattern */
#define EQ_ALL (EQ_EDGE + 16)
#define EQC_LEVELS 8         /* coarse levels: eq >> 2 (0..5), 6 flat, 7 edge */
#define E_MAX 2550 /* 2+2+1+1+1+1+2 neighbour errors of at most 255 */
#define PROB_TOTAL_BITS 15
#define PROB_TOTAL (1 << PROB_TOTAL_BITS)
#define MAX_TOKENS 128
#define LUT_BITS 9
#define LUT_BUCKETS (1 << LUT_BITS)
#define TOK_DIRECT 16
#define TOK_MSB 3

/* ---------------------------------------------------------------------------------------------------
 * Entropy coder: rANS with a 32-bit state in [2^16, 2^32) and 16-bit words, in chunks.  A chunk is a
 * run of rows of one slice (see code_block); the encoder keeps the chunk's symbols, then codes them
 * last to first from the state 2^16 and writes the final state (4 bytes, little-endian) followed by
 * the words it emitted, last emitted first (2 bytes each, little-endian).  The decoder reads the
 * state, decodes the symbols in order, and the chunk must end with the state back at 2^16.
 *
 * A symbol is a slot range [start, start + freq) of 2^bits slots: tokens of the tables 15 bits,
 * binary decisions 12 bits (a 1 is [0, p1), a 0 is [p1, 4096)), raw bits k <= 16 bits with freq 1.
 * Decoding never divides: slot = x mod 2^bits, x = freq * (x >> bits) + slot - start, and one word
 * is read when x < 2^16. */
#define RANS_L (1u << 16)
#define CHUNK_VOXELS 65536 /* a chunk holds the rows of a slice that fit, at least one */

typedef struct {
  uint16_t start, freq;
  uint8_t bits;
} Sym;

typedef struct {
  /* encoder */
  Sym *sym;
  size_t nsym, symcap;
  size_t mark; /* with waiting: a chunk's symbols are sym[0, mark), the next one's follow */
  int waiting;
  uint16_t *words;
  size_t wcap;
  uint8_t *buf;
  size_t len, cap;
  int oom;
  /* decoder */
  uint32_t x;
  const uint8_t *in;
  size_t pos, n;
} RC;

static void rc_enc_init(RC *c) { memset(c, 0, sizeof(*c)); }

static void rc_enc_free(RC *c) {
  free(c->sym);
  free(c->words);
}

static int grow(void **p, size_t *cap, size_t need, size_t item) {
  if (need <= *cap) return 1;
  size_t nc = *cap ? *cap : 1 << 12;
  while (nc < need) nc *= 2;
  void *np = realloc(*p, nc * item);
  if (!np) return 0;
  *p = np;
  *cap = nc;
  return 1;
}

static inline void rc_push(RC *c, uint32_t start, uint32_t freq, int bits) {
  if (c->nsym == c->symcap && !grow((void **)&c->sym, &c->symcap, c->nsym + 1, sizeof(Sym))) {
    c->oom = 1; /* keep going without output; the caller reports VX6_ERR_MEMORY */
    c->nsym = 0;
    return;
  }
  c->sym[c->nsym++] = (Sym){(uint16_t)start, (uint16_t)freq, (uint8_t)bits};
}

/* x / f for x < 2^32 and 1 <= f < 2^15, exactly: with m = ceil(2^48 / f) = (2^48 + e) / f, 0 <= e < f,
 * x m / 2^48 = x / f + x e / (f 2^48), and x e < 2^47, so the floor is x / f's (a multiplication
 * instead of a division, which is on the encoder's critical path) */
static uint64_t RCP48[1 << 15];
static inline uint32_t rc_div(uint32_t x, uint32_t f) {
#if defined(__SIZEOF_INT128__)
  return (uint32_t)(((unsigned __int128)x * RCP48[f]) >> 48);
#else
  return x / f;
#endif
}

/* one symbol into the state x (coding runs last to first); a word goes out to w[*nw] when x >= xmax,
 * without a branch (it would be mispredicted) */
static inline uint32_t rc_put(uint32_t x, const Sym s, uint16_t *w, size_t *nw) {
  const uint64_t xmax = (uint64_t)s.freq << (32 - s.bits); /* (2^16 >> bits << 16) * freq */
  const uint32_t out = x >= xmax;
  w[*nw] = (uint16_t)x;
  *nw += out;
  x >>= out << 4;
  const uint32_t q = rc_div(x, s.freq);
  return (q << s.bits) + (x - q * s.freq) + s.start;
}

/* append a coded chunk: its final state, then its words, last emitted first */
static void rc_write(RC *c, uint32_t x, const uint16_t *w, size_t nw) {
  if (!grow((void **)&c->buf, &c->cap, c->len + 4 + 2 * nw, 1)) {
    c->oom = 1;
    return;
  }
  uint8_t *o = c->buf + c->len;
  for (int k = 0; k < 4; k++) *o++ = (uint8_t)(x >> (8 * k));
  while (nw > 0) {
    const uint16_t wd = w[--nw];
    *o++ = (uint8_t)wd;
    *o++ = (uint8_t)(wd >> 8);
  }
  c->len = (size_t)(o - c->buf);
}

/* A chunk ends (more: another follows in the slice).  Chunks are coded two at a time when they can be:
 * the two states are independent, so their dependency chains interleave (the bytes are those of
 * coding each alone). */
static void rc_enc_chunk(RC *c, int more) {
  if (c->oom) return;
  if (more && !c->waiting) {
    c->waiting = 1;
    c->mark = c->nsym;
    return;
  }
  if (!grow((void **)&c->words, &c->wcap, c->nsym + 2, sizeof(uint16_t))) {
    c->oom = 1;
    return;
  }
  const size_t n0 = c->waiting ? c->mark : 0;
  uint16_t *const w0 = c->words, *const w1 = c->words + n0 + 1; /* (n0 is 0 without a waiting chunk) */
  uint32_t x0 = RANS_L, x1 = RANS_L;
  size_t nw0 = 0, nw1 = 0, i = n0, j = c->nsym;
  for (; i > 0 && j > n0;) {
    x0 = rc_put(x0, c->sym[--i], w0, &nw0);
    x1 = rc_put(x1, c->sym[--j], w1, &nw1);
  }
  for (; i > 0;) x0 = rc_put(x0, c->sym[--i], w0, &nw0);
  for (; j > n0;) x1 = rc_put(x1, c->sym[--j], w1, &nw1);
  if (c->waiting) rc_write(c, x0, w0, nw0);
  rc_write(c, x1, w1, nw1);
  c->waiting = 0;
  c->nsym = 0;
}

/* p1: probability of a 1 in 1..4095 (of 4096) */
static inline void rc_enc_bit(RC *c, int p1, int bit) {
  if (bit)
    rc_push(c, 0, (uint32_t)p1, 12);
  else
    rc_push(c, (uint32_t)p1, (uint32_t)(4096 - p1), 12);
}

static inline void rc_enc_raw(RC *c, uint32_t value, int nbits) {
  while (nbits > 16) {
    nbits -= 16;
    rc_push(c, (value >> nbits) & 0xFFFFu, 1, 16);
  }
  if (nbits > 0) rc_push(c, value & ((1u << nbits) - 1), 1, nbits);
}

static void rc_dec_init(RC *c, const uint8_t *in, size_t n) {
  memset(c, 0, sizeof(*c));
  c->in = in;
  c->n = n;
}

static inline uint32_t rc_byte(RC *c) {
  /* past the end the decoder reads zeros, counted: vx6_decode then fails (VX6_ERR_EARLY) */
  const size_t at = c->pos++;
  return at < c->n ? c->in[at] : 0;
}

/* a chunk starts: its state, at least 2^16 */
static inline int rc_dec_start(RC *c) {
  uint32_t x = 0;
  for (int k = 0; k < 4; k++) x |= rc_byte(c) << (8 * k);
  c->x = x;
  return x >= RANS_L ? VX6_OK : VX6_ERR_TAIL;
}

static inline int rc_dec_end(RC *c) { return c->x == RANS_L ? VX6_OK : VX6_ERR_TAIL; }

static inline void rc_dec_norm(RC *c) {
  /* without a branch: the word is read (zeros past the end) and kept only when x < 2^16 */
  const size_t at = c->pos;
  const uint32_t b0 = at < c->n ? c->in[at] : 0, b1 = at + 1 < c->n ? c->in[at + 1] : 0;
  const uint32_t s = c->x < RANS_L;
  const uint32_t shifted = (c->x << 16) | b0 | b1 << 8;
  c->x = s ? shifted : c->x;
  c->pos = at + 2 * s;
}

static inline int rc_dec_bit(RC *c, int p1) {
  const uint32_t slot = c->x & 4095u, q = c->x >> 12;
  int bit;
  if (slot < (uint32_t)p1) {
    c->x = (uint32_t)p1 * q + slot;
    bit = 1;
  } else {
    c->x = (uint32_t)(4096 - p1) * q + slot - (uint32_t)p1;
    bit = 0;
  }
  rc_dec_norm(c);
  return bit;
}

static inline uint32_t rc_dec_raw(RC *c, int nbits) {
  uint32_t v = 0;
  while (nbits > 0) {
    const int k = nbits > 16 ? 16 : nbits;
    nbits -= k;
    v = (v << k) | (c->x & ((1u << k) - 1));
    c->x >>= k;
    rc_dec_norm(c);
  }
  return v;
}

/* a little-endian 16-bit word (one load where the machine is little-endian) */
static inline uint32_t rd16(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
#else
  return (uint32_t)p[0] | (uint32_t)p[1] << 8;
#endif
}

/* ---------------------------------------------------------------------------------------------------
 * Neighbourhoods: causal offsets in the slice, offsets in the slice before and the one before that,
 * each list ordered by squared distance, then dy, then dx (part of the format). */
typedef struct {
  int dy, dx;
} Off;

static int off_cmp(const void *a, const void *b) {
  const Off *p = (const Off *)a, *q = (const Off *)b;
  int da = p->dy * p->dy + p->dx * p->dx, db = q->dy * q->dy + q->dx * q->dx;
  if (da != db) return da - db;
  if (p->dy != q->dy) return p->dy - q->dy;
  return p->dx - q->dx;
}

static Off CAUSAL[VX6_MAX_CAUSAL], PREV[VX6_MAX_PREV], PREV2[VX6_MAX_PREV2];
static int EQTAB[E_MAX + 1];
static uint32_t RECIP[1024];
static uint32_t TOK_BASE[MAX_TOKENS];
static int TOK_RAW[MAX_TOKENS];
static volatile int TABLES_READY = 0;

static void init_eqoff(void);
void vx6_init(void) {
  if (TABLES_READY) return;
  Off all[13 * 13];
  int n = 0;
  for (int dy = -6; dy <= 0; dy++)
    for (int dx = -6; dx <= 6; dx++)
      if (dy < 0 || dx < 0) all[n++] = (Off){dy, dx};
  qsort(all, (size_t)n, sizeof(Off), off_cmp);
  memcpy(CAUSAL, all, sizeof(CAUSAL));
  n = 0;
  for (int dy = -2; dy <= 2; dy++)
    for (int dx = -2; dx <= 2; dx++) all[n++] = (Off){dy, dx};
  qsort(all, (size_t)n, sizeof(Off), off_cmp);
  memcpy(PREV, all, sizeof(PREV));
  n = 0;
  for (int dy = -1; dy <= 1; dy++)
    for (int dx = -1; dx <= 1; dx++) all[n++] = (Off){dy, dx};
  qsort(all, (size_t)n, sizeof(Off), off_cmp);
  memcpy(PREV2, all, sizeof(PREV2));
  for (int e = 0; e <= E_MAX; e++) {
    int q = 0, e2 = e;
    while (e2 > 1 && q < EQ_LEVELS - 1) {
      e2 = (e2 * 181) >> 8;
      q++;
    }
    EQTAB[e] = q;
  }
  for (int i = 0; i < 1024; i++) RECIP[i] = (uint32_t)(131072 / (2 * i + 3));
  for (uint64_t f = 1; f < (1u << 15); f++) RCP48[f] = (((uint64_t)1 << 48) + f - 1) / f;
  for (int t = 0; t < MAX_TOKENS; t++) { /* token -> its smallest value and raw bits (see token_of) */
    TOK_RAW[t] = t < TOK_DIRECT ? 0 : ((t - TOK_DIRECT) >> TOK_MSB) + 1;
    TOK_BASE[t] = t < TOK_DIRECT ? (uint32_t)t
                                 : (uint32_t)((1 << TOK_MSB) + ((t - TOK_DIRECT) & ((1 << TOK_MSB) - 1))) << TOK_RAW[t];
  }
  init_eqoff();
#if defined(__GNUC__)
  __sync_synchronize(); /* the tables are written before the flag */
#endif
  TABLES_READY = 1; /* idempotent: two threads racing here write the same values */
}

/* ---------------------------------------------------------------------------------------------------
 * Parameters */
int vx6_parse_params(const uint8_t *raw, vx6_params *p) {
  if (raw[0] != 1) return VX6_ERR_PARAMS; /* layout version of the parameter bytes */
  p->coder = raw[1];
  p->n_causal = raw[2];
  p->n_prev = raw[3];
  p->n_prev2 = raw[4];
  p->interval_log = raw[5];
  p->forget = raw[6];
  p->ridge = raw[7];
  p->band_log = raw[8];
  p->casc = raw[9];
  p->inputs = raw[10];
  p->mant = raw[11];
  p->lr = raw[12];
  p->limit_log = raw[13];
  p->sparse = raw[14];
  if (raw[14] > 3 || raw[15]) return VX6_ERR_PARAMS;
  if (p->coder != VX6_TABLES && p->coder != VX6_MIXING) return VX6_ERR_PARAMS;
  if (p->n_causal > VX6_MAX_CAUSAL || p->n_prev > VX6_MAX_PREV || p->n_prev2 > VX6_MAX_PREV2) return VX6_ERR_PARAMS;
  int n = p->n_causal + p->n_prev + p->n_prev2;
  if (n < 1 || n > VX6_MAX_REG) return VX6_ERR_PARAMS;
  if (p->interval_log > 10 || p->forget < 1 || p->forget > 24 || p->ridge < 1 || p->ridge > 40) return VX6_ERR_PARAMS;
  if (p->band_log != 0 && (p->band_log < 4 || p->band_log > 13)) return VX6_ERR_PARAMS;
  if (p->casc > VX6_MAX_CASC) return VX6_ERR_PARAMS;
  if (p->coder == VX6_MIXING) {
    if (p->inputs < 1 || p->inputs > 6 || p->mant < 1 || p->mant > 16 || p->lr < 1 || p->lr > 64 ||
        p->limit_log < 1 || p->limit_log > 10)
      return VX6_ERR_PARAMS;
  } else if (p->inputs || p->mant || p->lr || p->limit_log) {
    return VX6_ERR_PARAMS;
  }
  return VX6_OK;
}

void vx6_pack_params(const vx6_params *p, uint8_t *raw) {
  memset(raw, 0, VX6_PARAM_BYTES);
  raw[0] = 1;
  raw[1] = (uint8_t)p->coder;
  raw[2] = (uint8_t)p->n_causal;
  raw[3] = (uint8_t)p->n_prev;
  raw[4] = (uint8_t)p->n_prev2;
  raw[5] = (uint8_t)p->interval_log;
  raw[6] = (uint8_t)p->forget;
  raw[7] = (uint8_t)p->ridge;
  raw[8] = (uint8_t)p->band_log;
  raw[9] = (uint8_t)p->casc;
  raw[10] = (uint8_t)p->inputs;
  raw[11] = (uint8_t)p->mant;
  raw[12] = (uint8_t)p->lr;
  raw[13] = (uint8_t)p->limit_log;
  raw[14] = (uint8_t)p->sparse;
}

/* ---------------------------------------------------------------------------------------------------
 * Online least squares.  A filter codes runs of voxels with fixed weights: a run is the next
 * 2^interval_log voxels the filter predicts in raster order, cut at the end of each slice.  After a
 * run, A = X X^T and a = X y over the run (integer sums of products of regressors of at most 9 bits,
 * read back from the planes) are folded into the double statistics R = R - R * 2^-forget + A (b
 * likewise), R + ridge * (trace / n + 1) * I is factored (Cholesky) and the solution rounded to weights
 * of 12 fractional bits (less than 8 in magnitude).  A failed factorization keeps the weights. */
typedef struct {
  int y, x0, x1;
} Seg;

typedef struct {
  int n, nseg, count;
  double *R, *b;
  Seg *seg;                      /* the run so far: row pieces */
  int16_t wq[VX6_MAX_REG + 8];   /* weights, zero past n */
} Ols;

static int ols_alloc(Ols *o, int n, int cap) {
  memset(o, 0, sizeof(*o));
  o->n = n;
  o->R = (double *)calloc((size_t)n * n + n, sizeof(double));
  o->seg = (Seg *)malloc((size_t)(cap + 2) * sizeof(Seg));
  if (!o->R || !o->seg) return VX6_ERR_MEMORY;
  o->b = o->R + (size_t)n * n;
  return VX6_OK;
}

static void ols_free(Ols *o) {
  free(o->R);
  free(o->seg);
}

static inline void ols_note(Ols *o, int y, int x0, int x1) {
  if (o->nseg && o->seg[o->nseg - 1].y == y && o->seg[o->nseg - 1].x1 == x0)
    o->seg[o->nseg - 1].x1 = x1;
  else
    o->seg[o->nseg++] = (Seg){y, x0, x1};
  o->count += x1 - x0;
}

static inline int32_t dot16(const int16_t *a, const int16_t *b, int m) {
  int32_t s = 0; /* products of at most 2^16, at most 2^10 of them: exact in any order */
  for (int t = 0; t < m; t++) s += (int32_t)a[t] * b[t];
  return s;
}

/* A += X X^T (lower triangle) and bA += X y over one row piece of m voxels at plane position pos */
VX6_SIMD static void fold_sums(int32_t *A, int32_t *bA, const int16_t *const *src, const int16_t *t, ptrdiff_t pos,
                               int m, int n) {
  int i = 0;
  for (; i + 2 <= n; i += 2) { /* two rows of A at a time: each loaded x_j serves both */
    const int16_t *x0 = src[i] + pos, *x1 = src[i + 1] + pos;
    int32_t *A0 = A + (size_t)i * n, *A1 = A0 + n;
    int j = 0;
    for (; j + 4 <= i; j += 4) {
      const int16_t *y0 = src[j] + pos, *y1 = src[j + 1] + pos, *y2 = src[j + 2] + pos, *y3 = src[j + 3] + pos;
      int32_t s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (int k = 0; k < m; k++) {
        s00 += (int32_t)x0[k] * y0[k];
        s01 += (int32_t)x0[k] * y1[k];
        s02 += (int32_t)x0[k] * y2[k];
        s03 += (int32_t)x0[k] * y3[k];
        s10 += (int32_t)x1[k] * y0[k];
        s11 += (int32_t)x1[k] * y1[k];
        s12 += (int32_t)x1[k] * y2[k];
        s13 += (int32_t)x1[k] * y3[k];
      }
      A0[j] += s00;
      A0[j + 1] += s01;
      A0[j + 2] += s02;
      A0[j + 3] += s03;
      A1[j] += s10;
      A1[j + 1] += s11;
      A1[j + 2] += s12;
      A1[j + 3] += s13;
    }
    for (; j + 2 <= i; j += 2) {
      const int16_t *y0 = src[j] + pos, *y1 = src[j + 1] + pos;
      int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;
      for (int k = 0; k < m; k++) {
        s00 += (int32_t)x0[k] * y0[k];
        s01 += (int32_t)x0[k] * y1[k];
        s10 += (int32_t)x1[k] * y0[k];
        s11 += (int32_t)x1[k] * y1[k];
      }
      A0[j] += s00;
      A0[j + 1] += s01;
      A1[j] += s10;
      A1[j + 1] += s11;
    }
    int32_t s00 = 0, s10 = 0, s11 = 0, b0 = 0, b1 = 0; /* j = i, i + 1, and the targets */
    for (int k = 0; k < m; k++) {
      s00 += (int32_t)x0[k] * x0[k];
      s10 += (int32_t)x1[k] * x0[k];
      s11 += (int32_t)x1[k] * x1[k];
      b0 += (int32_t)x0[k] * t[k];
      b1 += (int32_t)x1[k] * t[k];
    }
    A0[i] += s00;
    A1[i] += s10;
    A1[i + 1] += s11;
    bA[i] += b0;
    bA[i + 1] += b1;
  }
  for (; i < n; i++) {
    const int16_t *xi = src[i] + pos;
    int32_t *Ai = A + (size_t)i * n;
    for (int j = 0; j <= i; j++) Ai[j] += dot16(xi, src[j] + pos, m);
    bA[i] += dot16(xi, t, m);
  }
}

/* out[t] += w * src[t] for a row piece */
VX6_SIMD static void axpy16(int32_t *out, int32_t w, const int16_t *src, int m) {
  for (int t = 0; t < m; t++) out[t] += w * src[t];
}

/* out[t] = sum over k of w[k] * src[k][t] for a row piece (n >= 0 sources with weights of 16 bits; the
 * sums are exact integers, so the grouping does not matter) */
#if VX6_SSE2
static void dot_rows(int32_t *out, const int32_t *w, const int16_t *const *src, int n, int m) {
  /* sixteen voxels at a time, two sources a step: their values interleaved, times the two weights (an
   * odd source is paired with zeros) */
  __m128i ww[(VX6_MAX_REG + 1) / 2];
  const int np = (n + 1) / 2;
  for (int k = 0; k < np; k++) {
    const uint32_t wb = 2 * k + 1 < n ? (uint32_t)(uint16_t)w[2 * k + 1] : 0u;
    ww[k] = _mm_set1_epi32((int)((uint32_t)(uint16_t)w[2 * k] | wb << 16));
  }
  int t = 0;
  for (; t + 16 <= m; t += 16) {
    __m128i s0 = _mm_setzero_si128(), s1 = s0, s2 = s0, s3 = s0;
    for (int k = 0; k < np; k++) {
      const int16_t *pa = src[2 * k] + t;
      const __m128i a0 = _mm_loadu_si128((const __m128i *)pa), a1 = _mm_loadu_si128((const __m128i *)(pa + 8));
      __m128i b0 = _mm_setzero_si128(), b1 = b0;
      if (2 * k + 1 < n) {
        const int16_t *pb = src[2 * k + 1] + t;
        b0 = _mm_loadu_si128((const __m128i *)pb);
        b1 = _mm_loadu_si128((const __m128i *)(pb + 8));
      }
      s0 = _mm_add_epi32(s0, _mm_madd_epi16(_mm_unpacklo_epi16(a0, b0), ww[k]));
      s1 = _mm_add_epi32(s1, _mm_madd_epi16(_mm_unpackhi_epi16(a0, b0), ww[k]));
      s2 = _mm_add_epi32(s2, _mm_madd_epi16(_mm_unpacklo_epi16(a1, b1), ww[k]));
      s3 = _mm_add_epi32(s3, _mm_madd_epi16(_mm_unpackhi_epi16(a1, b1), ww[k]));
    }
    _mm_storeu_si128((__m128i *)(out + t), s0);
    _mm_storeu_si128((__m128i *)(out + t + 4), s1);
    _mm_storeu_si128((__m128i *)(out + t + 8), s2);
    _mm_storeu_si128((__m128i *)(out + t + 12), s3);
  }
  for (; t < m; t++) {
    int32_t sum = 0;
    for (int k = 0; k < n; k++) sum += w[k] * src[k][t];
    out[t] = sum;
  }
}
#else
VX6_SIMD static void dot_rows(int32_t *out, const int32_t *w, const int16_t *const *src, int n, int m) {
  int k = 0;
  for (int t = 0; t < m; t++) out[t] = 0;
  for (; k + 8 <= n; k += 8) {
    const int16_t *a = src[k], *b = src[k + 1], *c = src[k + 2], *d = src[k + 3], *e = src[k + 4], *f = src[k + 5],
                  *g = src[k + 6], *h = src[k + 7];
    const int32_t wa = w[k], wb = w[k + 1], wc = w[k + 2], wd = w[k + 3], we = w[k + 4], wf = w[k + 5],
                  wg = w[k + 6], wh = w[k + 7];
    for (int t = 0; t < m; t++)
      out[t] += wa * a[t] + wb * b[t] + wc * c[t] + wd * d[t] + we * e[t] + wf * f[t] + wg * g[t] + wh * h[t];
  }
  if (k + 4 <= n) {
    const int16_t *a = src[k], *b = src[k + 1], *c = src[k + 2], *d = src[k + 3];
    const int32_t wa = w[k], wb = w[k + 1], wc = w[k + 2], wd = w[k + 3];
    for (int t = 0; t < m; t++) out[t] += wa * a[t] + wb * b[t] + wc * c[t] + wd * d[t];
    k += 4;
  }
  for (; k < n; k++) axpy16(out, w[k], src[k], m);
}
#endif

/* sum of a[k] * b[k] over k < m, in four partial sums (k mod 4) added as (s0 + s1) + (s2 + s3): one
 * fixed order of IEEE-754 double operations (part of the format) */
static inline double dotd(const double *a, const double *b, int m) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int k = 0;
  for (; k + 4 <= m; k += 4) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
    s2 += a[k + 2] * b[k + 2];
    s3 += a[k + 3] * b[k + 3];
  }
  if (k < m) s0 += a[k] * b[k];
  if (k + 1 < m) s1 += a[k + 1] * b[k + 1];
  if (k + 2 < m) s2 += a[k + 2] * b[k + 2];
  return (s0 + s1) + (s2 + s3);
}

/* Fold the run into the statistics and solve.  src[i] points at regressor i of the voxel at plane
 * position 0 (its plane plus its offset); the targets are tplane at the run's positions, or tbuf[0..count). */
static void ols_fold(Ols *o, const int16_t *const *src, const int16_t *tplane, const int16_t *tbuf, int Wp,
                     double forget_frac, double ridge, double *L, double *y, int32_t *A) {
  const int n = o->n;
  memset(A, 0, sizeof(int32_t) * ((size_t)n * n + n));
  int32_t *bA = A + (size_t)n * n;
  int done = 0;
  for (int k = 0; k < o->nseg; k++) {
    const Seg sg = o->seg[k];
    const ptrdiff_t pos = (ptrdiff_t)(sg.y + PAD) * Wp + PAD + sg.x0;
    const int m = sg.x1 - sg.x0;
    fold_sums(A, bA, src, tplane ? tplane + pos : tbuf + done, pos, m, n);
    done += m;
  }
  o->nseg = 0;
  o->count = 0;
  for (int i = 0; i < n; i++) {
    double *Ri = o->R + (size_t)i * n;
    for (int j = 0; j <= i; j++) Ri[j] = (Ri[j] - Ri[j] * forget_frac) + (double)A[(size_t)i * n + j];
    o->b[i] = (o->b[i] - o->b[i] * forget_frac) + (double)bA[i];
  }
  double tr = 0.0;
  for (int i = 0; i < n; i++) tr += o->R[(size_t)i * n + i];
  const double reg = (tr / (double)n + 1.0) * ridge;
  for (int i = 0; i < n; i++) {
    for (int j = 0; j <= i; j++) L[i * n + j] = o->R[(size_t)i * n + j];
    L[i * n + i] += reg;
  }
  for (int j = 0; j < n; j++) {
    double dd = L[j * n + j] - dotd(L + j * n, L + j * n, j);
    if (!(dd > 0.0)) return;
    dd = sqrt(dd);
    L[j * n + j] = dd;
    const double inv = 1.0 / dd;
    for (int i = j + 1; i < n; i++) L[i * n + j] = (L[i * n + j] - dotd(L + i * n, L + j * n, j)) * inv;
  }
  for (int i = 0; i < n; i++) y[i] = (o->b[i] - dotd(L + i * n, y, i)) / L[i * n + i];
  for (int i = n - 1; i >= 0; i--) { /* L^T x = y, x over y, a row of L at a time */
    const double xi = y[i] / L[i * n + i];
    y[i] = xi;
    for (int k = 0; k < i; k++) y[k] -= L[i * n + k] * xi;
  }
  for (int i = 0; i < n; i++) {
    double q = floor(y[i] * 4096.0 + 0.5);
    if (!(q > -32767.0)) q = -32767.0; /* NaN too */
    if (!(q < 32767.0)) q = 32767.0;
    o->wq[i] = (int16_t)q;
  }
}

/* ---------------------------------------------------------------------------------------------------
 * Token tables (coder 1): adaptive counts per context, frozen into 15-bit frequencies for runs of
 * min(max(64, seen), 4096) symbols of the context. */
typedef struct {
  uint32_t cnt[MAX_TOKENS];
  /* an update adds 32 to one count, to total and 1 to seen; total is halved when it passes 2^16, and the
   * frequencies are frozen again when left reaches 0.  Between those events only the counts change: ev
   * counts the updates down to the next one, which brings total, seen and left up to date (tab_event) */
  uint32_t ev, ev_len;
  uint32_t total, seen, left;
  uint16_t freq[MAX_TOKENS];
  uint16_t cum[MAX_TOKENS + 1];
  uint8_t lut[LUT_BUCKETS];
} Tab;

/* EQOFF[e]: the byte offset of the table of error sum e's level (EQTAB[e] * sizeof(Tab)) */
static uint32_t EQOFF[E_MAX + 1];
static void init_eqoff(void) {
  for (int e = 0; e <= E_MAX; e++) EQOFF[e] = (uint32_t)(EQTAB[e] * sizeof(Tab));
}

static void tab_freeze(Tab *t, int ntok) {
  uint32_t sum = 0;
  int big = 0;
  for (int s = 0; s < ntok; s++) {
    uint32_t f = (uint32_t)(((uint64_t)t->cnt[s] << PROB_TOTAL_BITS) / t->total);
    if (f < 1) f = 1;
    t->freq[s] = (uint16_t)f;
    sum += f;
    if (f > t->freq[big]) big = s;
  }
  t->freq[big] = (uint16_t)(t->freq[big] + PROB_TOTAL - (int)sum);
  t->cum[0] = 0;
  for (int s = 0; s < ntok; s++) t->cum[s + 1] = (uint16_t)(t->cum[s] + t->freq[s]);
  int s = 0;
  for (int k = 0; k < LUT_BUCKETS; k++) {
    uint32_t at = (uint32_t)k << (PROB_TOTAL_BITS - LUT_BITS);
    while (t->cum[s + 1] <= at) s++;
    t->lut[k] = (uint8_t)s;
  }
  uint32_t run = t->seen < 64 ? 64 : t->seen > 4096 ? 4096 : t->seen;
  t->left = run;
}

/* the next event: the first update that takes total past 2^16, or the last of the run */
static void tab_schedule(Tab *t) {
  const uint32_t halve = ((1u << 16) - t->total) / 32 + 1; /* (total <= 2^16 here) */
  t->ev = t->ev_len = halve < t->left ? halve : t->left;
}

static void tab_init(Tab *t, int ntok) {
  memset(t, 0, sizeof(*t));
  for (int s = 0; s < ntok; s++) t->cnt[s] = 1;
  t->total = (uint32_t)ntok;
  tab_freeze(t, ntok);
  tab_schedule(t);
}

static void tab_event(Tab *t, int ntok) {
  t->total += 32 * t->ev_len;
  t->seen += t->ev_len;
  t->left -= t->ev_len;
  if (t->total > (1u << 16)) {
    uint32_t tot = 0;
    for (int k = 0; k < ntok; k++) {
      t->cnt[k] = (t->cnt[k] + 1) >> 1;
      tot += t->cnt[k];
    }
    t->total = tot;
  }
  if (t->left == 0) tab_freeze(t, ntok);
  tab_schedule(t);
}

static inline void tab_update(Tab *t, int s, int ntok) {
  t->cnt[s] += 32;
  if (--t->ev == 0) tab_event(t, ntok);
}

/* u's token and raw bits: u itself below TOK_DIRECT (16), else its octave n >= 4 and the TOK_MSB (3)
 * bits below the leading one, with n - 3 raw bits.  Written without a branch (it would be mispredicted
 * on noisy data): with n the octave of u | 8, u < 16 has n = 3 and no raw bits, and the formula gives
 * 8 + (u & 7), which is u from 8 on; below 8 it is 8 too many. */
typedef char vx6_token_layout[TOK_DIRECT == 16 && TOK_MSB == 3 ? 1 : -1];
static inline int token_of(uint32_t u, int *nraw) {
  const int n = 31 - __builtin_clz(u | 8u);
  *nraw = n - TOK_MSB;
  return TOK_DIRECT + (n - 4) * (1 << TOK_MSB) + (int)((u >> (n - TOK_MSB)) & 7u) - ((u < 8u) << 3);
}

/* ---------------------------------------------------------------------------------------------------
 * Binary context mixing (coder 2): per decision, `inputs` adaptive bit models (22-bit probability,
 * 10-bit count) are stretched, mixed by a weight set chosen by the decision and the error level,
 * squashed, and the bit is coded; the mixer and the models then learn from it. */
static const int CTX_SIZE[6] = {1, EQ_ALL, EQC_LEVELS * 81, EQC_LEVELS, 15 * EQC_LEVELS, 16 * EQC_LEVELS};
#define MIX_SETS (NODES * EQC_LEVELS)

typedef struct {
  int inputs, lr, limit;
  uint32_t *bits[6];
  int32_t *w;
} Mix;

static int mix_alloc(Mix *m, const vx6_params *p) {
  memset(m, 0, sizeof(*m));
  m->inputs = p->inputs;
  m->lr = p->lr;
  m->limit = (1 << p->limit_log) - 1;
  for (int i = 0; i < m->inputs; i++) {
    size_t n = (size_t)NODES * CTX_SIZE[i];
    m->bits[i] = (uint32_t *)malloc(n * sizeof(uint32_t));
    if (!m->bits[i]) return VX6_ERR_MEMORY;
    for (size_t k = 0; k < n; k++) m->bits[i][k] = 1u << 31; /* p = 1/2, count 0 */
  }
  m->w = (int32_t *)malloc((size_t)MIX_SETS * m->inputs * sizeof(int32_t));
  if (!m->w) return VX6_ERR_MEMORY;
  for (int k = 0; k < MIX_SETS * m->inputs; k++) m->w[k] = 65536 / (m->inputs + 1);
  return VX6_OK;
}

static void mix_free(Mix *m) {
  for (int i = 0; i < 6; i++) free(m->bits[i]);
  free(m->w);
}

static inline int squash(int x) {
  if (x > 2047) x = 2047;
  if (x < -2047) x = -2047;
  return SQUASH[x + 2047];
}

/* base[i]: the context of input i without the decision node; returns the bit (decoding) */
static inline int mix_code(Mix *m, RC *rc, int dec, const int *base, int node, int sel, int bit) {
  uint32_t *slot[6];
  int st[6];
  int32_t *w = m->w + (size_t)(node * EQC_LEVELS + sel) * m->inputs;
  int64_t dot = 0;
  for (int i = 0; i < m->inputs; i++) {
    slot[i] = m->bits[i] + (size_t)base[i] * NODES + node;
    st[i] = STRETCH[*slot[i] >> 20];
    dot += (int64_t)w[i] * st[i];
  }
  int p = squash((int)(dot >> 16));
  if (dec)
    bit = rc_dec_bit(rc, p);
  else
    rc_enc_bit(rc, p, bit);
  const int err = ((bit << 12) - p) * m->lr;
  for (int i = 0; i < m->inputs; i++) {
    int64_t nw = (int64_t)w[i] + (((int64_t)st[i] * err + 0x8000) >> 16);
    if (nw > (1 << 24)) nw = 1 << 24;
    if (nw < -(1 << 24)) nw = -(1 << 24);
    w[i] = (int32_t)nw;
    const uint32_t v = *slot[i];
    const int cnt = (int)(v & 1023);
    const int32_t pr = (int32_t)(v >> 10);
    const int32_t target = bit ? (1 << 22) - 1 : 0;
    const int32_t np = pr + (int32_t)(((int64_t)(target - pr) * RECIP[cnt]) >> 16);
    *slot[i] = ((uint32_t)np << 10) | (uint32_t)(cnt < m->limit ? cnt + 1 : cnt);
  }
  return bit;
}

/* ---------------------------------------------------------------------------------------------------
 * The block */
static inline int sgn3(int v) { return v > 0 ? 2 : v < 0 ? 0 : 1; }

static inline int qsig(int v) {
  int a = v < 0 ? -v : v;
  int q = a == 0 ? 0 : a < 2 ? 1 : a < 4 ? 2 : a < 8 ? 3 : a < 16 ? 4 : a < 32 ? 5 : 6;
  return v < 0 ? 7 - q : 7 + q;
}

static inline int bits_for(int64_t n) { /* bits of a field holding 0..n-1 (at least 1) */
  int b = 1;
  while (((int64_t)1 << b) < n) b++;
  return b;
}

typedef struct {
  int nvals;
  int64_t *vals;     /* the palette's values */
  int32_t *rank;     /* rank of each value of [lo, hi] (encoder), or -1 */
  int32_t *nearest;  /* rank of the palette value nearest each value of [lo, hi] (ties: the lower) */
} Pal;

static void pal_build(Pal *pl, int64_t lo, int64_t hi) {
  int64_t span = hi - lo + 1;
  int k = 0;
  for (int64_t v = 0; v < span; v++) {
    int64_t val = lo + v;
    while (k + 1 < pl->nvals && pl->vals[k + 1] <= val) k++;
    /* k: the last palette value <= val (or 0) */
    int r = k;
    if (pl->vals[k] < val && k + 1 < pl->nvals && pl->vals[k + 1] - val < val - pl->vals[k]) r = k + 1;
    if (pl->vals[k] > val) r = 0;
    pl->nearest[v] = r;
    pl->rank[v] = pl->vals[k] == val ? k : -1;
  }
}

/* Slice header (kind and palette), as raw bits of the range coder.  Decoding checks what the encoder
 * never writes (see palette.choose): returns the kind, or -1. */
static int slice_header(RC *rc, int dec, int kind, Pal *pl, const int64_t *vals, int nvals, int64_t lo, int64_t hi,
                        int64_t slice_voxels) {
  const int64_t span = hi - lo + 1;
  const int vb = bits_for(span);
  if (dec)
    kind = (int)rc_dec_raw(rc, 2);
  else
    rc_enc_raw(rc, (uint32_t)kind, 2);
  if (kind == 0) return 0;
  if (kind == 2) {
    int64_t v;
    if (dec) {
      v = lo + rc_dec_raw(rc, vb);
      if (v > hi) return -1;
    } else {
      v = vals[0];
      rc_enc_raw(rc, (uint32_t)(v - lo), vb);
    }
    pl->nvals = 1;
    pl->vals[0] = v;
    return 2;
  }
  if (kind == 3) {
    int n;
    if (dec) {
      n = (int)rc_dec_raw(rc, bits_for(span + 1));
      if (n < 2 || n > hi - lo || n > slice_voxels) return -1;
    } else {
      n = nvals;
      rc_enc_raw(rc, (uint32_t)n, bits_for(span + 1));
    }
    for (int i = 0; i < n; i++) {
      if (dec) {
        pl->vals[i] = lo + rc_dec_raw(rc, vb);
        if (pl->vals[i] > hi || (i && pl->vals[i] <= pl->vals[i - 1])) return -1;
      } else {
        pl->vals[i] = vals[i];
        rc_enc_raw(rc, (uint32_t)(vals[i] - lo), vb);
      }
    }
    pl->nvals = n;
  } else { /* 1: bitmap over [lo, hi] */
    if (dec && 4 * slice_voxels <= span) return -1;
    int n = 0, k = 0;
    for (int64_t v = 0; v < span; v++) {
      int bit;
      if (dec) {
        bit = (int)rc_dec_raw(rc, 1);
      } else {
        bit = k < nvals && vals[k] == lo + v;
        rc_enc_raw(rc, (uint32_t)bit, 1);
      }
      if (bit) {
        pl->vals[n++] = lo + v;
        k++;
      }
    }
    pl->nvals = n;
    if (n < 2) return -1;
  }
  if (pl->nvals >= pl->vals[pl->nvals - 1] - pl->vals[0] + 1) return -1; /* every value of its span */
  pal_build(pl, lo, hi);
  return kind;
}

/* the second-stage filter's regressors: signed residuals at W, N, NW, NE, WW, NN, the voxel of the
 * slice before, NNE (the first `casc` of them) */
static const int CASC_DY[8] = {0, -1, -1, -1, 0, -2, 0, -2}, CASC_DX[8] = {-1, 0, -1, 1, -2, 0, 0, 1};
static const int CASC_PREV[8] = {0, 0, 0, 0, 0, 0, 1, 0};

typedef struct {
  vx6_block b;
  vx6_params p;
  int Wp, Hp, interval;
  size_t plane;
  int16_t *val;   /* 3 planes: the slice, the one before, the one before that (centred, shifted) */
  uint8_t *err;   /* 2 planes: |residual| (shifted, at most 255) of this slice and the one before */
  int16_t *sres;  /* 2 planes: signed residual (shifted, clamped to +-127); only where read (see has_sres) */
  void *planes;   /* val, sres and err in one allocation, or NULL when the caller lent its workspace */
  Ols *bands;
  int nbands;
  Ols casc;
  int n_reg;
  int reg_plane[VX6_MAX_REG];   /* 0: this slice, 1: the one before, 2: the one before that */
  ptrdiff_t reg_off[VX6_MAX_REG];
  int n_rec, rec_idx[6], rec_dx[6];  /* regressors on the current row (W, WW, ...): added voxel by voxel */
  int edge_score[16];                /* per pattern of neighbours at the lowest value: > 0 when that value
                                        has predicted the voxels better than the filter lately */
  Tab *tabs;
  int ntok;
  Mix mix;
  Pal pal;
  double *L, *y;
  int32_t *A;
  int32_t *pm, *pc, *pe;  /* a row piece: the filters' sums over the regressors off the current row, errors */
  int16_t *ctgt;          /* the second stage's targets over its run */
  double forget_frac, ridge;
} State;

static void state_free(State *s) {
  free(s->planes);
  if (s->bands)
    for (int i = 0; i < s->nbands; i++) ols_free(&s->bands[i]);
  free(s->bands);
  ols_free(&s->casc);
  free(s->tabs);
  mix_free(&s->mix);
  free(s->pal.vals);
  free(s->pal.rank);
  free(s->pal.nearest);
  free(s->L);
  free(s->A);
  free(s->pm);
  free(s->ctgt);
}

/* the signed residuals are read by the second stage and by the mixing coder's contexts, and only then kept */
static int has_sres(const vx6_params *p) { return p->casc || p->coder == VX6_MIXING; }

/* the bytes of a block's planes: 3 of values and 2 of signed residuals (int16; see has_sres) and 2 of
 * errors (uint8) */
static size_t planes_bytes(const vx6_block *b, const vx6_params *p) {
  const size_t plane = (size_t)(b->w + 2 * PAD) * (size_t)(b->h + 2 * PAD);
  return plane * (3 * 2 + (has_sres(p) ? 2 * 2 : 0) + 2);
}

/* ws: the caller's workspace of at least planes_bytes, or NULL */
static int state_init(State *s, const vx6_block *b, const vx6_params *p, void *ws) {
  vx6_init();
  memset(s, 0, sizeof(*s));
  s->b = *b;
  s->p = *p;
  s->interval = 1 << p->interval_log;
  s->Wp = b->w + 2 * PAD;
  s->Hp = b->h + 2 * PAD;
  s->plane = (size_t)s->Wp * s->Hp;
  const size_t nplanes = planes_bytes(b, p);
  uint8_t *pl;
  if (ws) {
    pl = (uint8_t *)ws;
    memset(pl, 0, nplanes);
  } else {
    pl = (uint8_t *)calloc(nplanes, 1);
    s->planes = pl;
  }
  if (pl) {
    s->val = (int16_t *)pl;
    s->sres = has_sres(p) ? (int16_t *)(pl + 6 * s->plane) : NULL;
    s->err = pl + (has_sres(p) ? 10 : 6) * s->plane;
  }
  const int64_t span = b->hi - b->lo + 1;
  s->pal.vals = (int64_t *)malloc((size_t)span * sizeof(int64_t));
  s->pal.rank = (int32_t *)malloc((size_t)span * sizeof(int32_t));
  s->pal.nearest = (int32_t *)malloc((size_t)span * sizeof(int32_t));
  const size_t piece = (size_t)b->w + 8; /* a piece lies in a row */
  s->pm = (int32_t *)malloc(3 * piece * sizeof(int32_t));
  s->ctgt = (int16_t *)malloc((size_t)(s->interval + 8) * sizeof(int16_t));
  if (!pl || !s->pal.vals || !s->pal.rank || !s->pal.nearest || !s->pm || !s->ctgt)
    return VX6_ERR_MEMORY;
  s->pc = s->pm + piece;
  s->pe = s->pc + piece;
  int n = 0;
  for (int i = 0; i < p->n_causal; i++, n++) {
    s->reg_plane[n] = 0;
    s->reg_off[n] = (ptrdiff_t)CAUSAL[i].dy * s->Wp + CAUSAL[i].dx;
    if (CAUSAL[i].dy == 0) { /* dx = -1, -2, ... (at most -6: 40 causal neighbours hold 5 of them) */
      s->rec_idx[s->n_rec] = n;
      s->rec_dx[s->n_rec++] = CAUSAL[i].dx;
    }
  }
  for (int i = 0; i < p->n_prev; i++, n++) {
    s->reg_plane[n] = 1;
    s->reg_off[n] = (ptrdiff_t)PREV[i].dy * s->Wp + PREV[i].dx;
  }
  for (int i = 0; i < p->n_prev2; i++, n++) {
    s->reg_plane[n] = 2;
    s->reg_off[n] = (ptrdiff_t)PREV2[i].dy * s->Wp + PREV2[i].dx;
  }
  s->n_reg = n;
  s->nbands = p->band_log ? (b->w + (1 << p->band_log) - 1) >> p->band_log : 1;
  s->bands = (Ols *)calloc((size_t)s->nbands, sizeof(Ols));
  if (!s->bands) return VX6_ERR_MEMORY;
  for (int i = 0; i < s->nbands; i++) {
    if (ols_alloc(&s->bands[i], n, s->interval)) return VX6_ERR_MEMORY;
    /* start: the mean of the two nearest neighbours in the slice, else the voxel of the slice before */
    if (p->n_causal >= 2) {
      s->bands[i].wq[0] = 2048;
      s->bands[i].wq[1] = 2048;
    } else if (p->n_causal == 1 || p->n_prev) {
      s->bands[i].wq[0] = 4096;
    }
  }
  if (p->casc && ols_alloc(&s->casc, p->casc, s->interval)) return VX6_ERR_MEMORY;
  int nl = n > p->casc ? n : p->casc;
  s->L = (double *)malloc(((size_t)nl * nl + nl) * sizeof(double));
  s->A = (int32_t *)malloc(((size_t)nl * nl + nl) * sizeof(int32_t));
  if (!s->L || !s->A) return VX6_ERR_MEMORY;
  s->y = s->L + (size_t)nl * nl;
  double kf = 1.0, rg = 1.0;
  for (int i = 0; i < p->forget; i++) kf *= 0.5;
  for (int i = 0; i < p->ridge; i++) rg *= 0.5;
  s->forget_frac = kf;
  s->ridge = rg;
  int nraw;
  uint32_t umax = (uint32_t)(2 * (b->hi - b->lo));
  s->ntok = token_of(umax, &nraw) + 1;
  if (s->ntok < TOK_DIRECT) s->ntok = TOK_DIRECT;
  if (p->coder == VX6_TABLES) {
    s->tabs = (Tab *)malloc(EQ_ALL * sizeof(Tab));
    if (!s->tabs) return VX6_ERR_MEMORY;
    for (int i = 0; i < EQ_ALL; i++) tab_init(&s->tabs[i], s->ntok);
  } else if (mix_alloc(&s->mix, p)) {
    return VX6_ERR_MEMORY;
  }
  return VX6_OK;
}

/* Code the residual with binary decisions: zero?, sign, the magnitude's octave (unary), then its
 * mantissa bits (the top `mant` modelled, the rest raw). */
static inline int code_mixing(State *s, RC *rc, int dec, const int *base, int sel, int64_t rmin, int64_t rmax,
                              int64_t *r) {
  Mix *m = &s->mix;
  int64_t v = dec ? 0 : *r;
  int zero = mix_code(m, rc, dec, base, 0, sel, v == 0);
  if (zero) {
    *r = 0;
    return VX6_OK;
  }
  int pos;
  if (rmin < 0 && rmax > 0)
    pos = mix_code(m, rc, dec, base, 1, sel, v > 0);
  else
    pos = rmax > 0;
  const int64_t maxm = pos ? rmax : -rmin;
  if (maxm < 1) return VX6_ERR_RANGE;
  const int64_t mag = v < 0 ? -v : v;
  const int kmax = 63 - __builtin_clzll((unsigned long long)maxm);
  int k = dec ? 0 : 63 - __builtin_clzll((unsigned long long)mag);
  int j = 0;
  for (; j < kmax; j++) {
    int more = mix_code(m, rc, dec, base, 2 + (j < 15 ? j : 15), sel, k > j);
    if (!more) break;
  }
  if (dec) k = j;
  int64_t mm = 1;
  for (int i = k - 1; i >= 0; i--) {
    int bit = dec ? 0 : (int)((mag >> i) & 1);
    if (i >= k - s->p.mant) {
      int node = i == k - 1 ? 18 + (k < 16 ? k : 16) : i == k - 2 ? 35 + (k < 15 ? k : 15) : 51 + (i < 12 ? i : 12);
      bit = mix_code(m, rc, dec, base, node, sel, bit);
    } else if (dec) {
      bit = (int)rc_dec_raw(rc, 1);
    } else {
      rc_enc_raw(rc, (uint32_t)bit, 1);
    }
    mm = 2 * mm + bit;
  }
  if (dec) {
    if (mm > maxm) return VX6_ERR_RANGE;
    *r = pos ? mm : -mm;
  }
  return VX6_OK;
}

static inline int64_t get_voxel(const void *vox, int itemsize, size_t i) {
  return itemsize == 1 ? ((const uint8_t *)vox)[i] : ((const uint16_t *)vox)[i];
}

static inline void put_voxel(void *vox, int itemsize, size_t i, int64_t v) {
  if (itemsize == 1)
    ((uint8_t *)vox)[i] = (uint8_t)v;
  else
    ((uint16_t *)vox)[i] = (uint16_t)v;
}

/* fold and re-solve a main filter; its regressors are read back from the value planes */
static void fold_main(State *s, Ols *o, int16_t *const planes[3]) {
  const int16_t *src[VX6_MAX_REG];
  for (int i = 0; i < s->n_reg; i++) src[i] = planes[s->reg_plane[i]] + s->reg_off[i];
  ols_fold(o, src, planes[0], NULL, s->Wp, s->forget_frac, s->ridge, s->L, s->y, s->A);
}

static void fold_casc(State *s, int16_t *scur, int16_t *sprv) {
  const int16_t *src[VX6_MAX_CASC];
  for (int i = 0; i < s->p.casc; i++) src[i] = (CASC_PREV[i] ? sprv : scur) + (ptrdiff_t)CASC_DY[i] * s->Wp + CASC_DX[i];
  ols_fold(&s->casc, src, NULL, s->ctgt, s->Wp, s->forget_frac, s->ridge, s->L, s->y, s->A);
}

#if defined(__GNUC__)
#define VX6_INLINE __attribute__((always_inline)) inline
#else
#define VX6_INLINE inline
#endif

/* A piece of a row: one band, inside the runs of its filter and of the second stage; its weights are
 * fixed.  code_block prepares it (the sums over the regressors off the row, the error context of the
 * rows above) and code_piece codes its voxels. */
typedef struct {
  Ols *o;
  int y, x0, m, feeds, palette;
  ptrdiff_t pos0;
  size_t zbase;
  int16_t *cur, *scur;
  const int16_t *sprv;
  uint8_t *ecur;
  int run; /* out: where the last run of voxels that feed the statistics starts */
} Piece;

/* plain: a row below the first, shift 0 (the planes hold whole values), token tables, and a palette
 * (slice kinds 1 and 3) when pal; wide: up to 6 regressors on the row (else at most 3); cs: a second
 * stage as the parameters say (else none).  These are constants where code_block calls it, so that
 * each case compiles apart with fewer tests a voxel. */
static VX6_INLINE int code_piece(State *s, RC *rc, Piece *pp, void *vox, const int dec, const int coder,
                                 const int plain, const int pal, const int wide, const int cs) {
  const vx6_block *b = &s->b;
  const int w = b->w, Wp = s->Wp, shift = plain ? 0 : b->shift, casc = cs ? s->p.casc : 0, n_rec = s->n_rec;
  const int64_t lo = b->lo, hi = b->hi, centre = b->centre;
  const int y = pp->y, x0 = pp->x0, m = pp->m, feeds = pp->feeds, palette = plain ? pal : pp->palette;
  const uint64_t top = (uint64_t)s->pal.nvals - 1; /* a palette's highest rank */
  const ptrdiff_t pos0 = pp->pos0;
  const size_t zbase = pp->zbase;
  Ols *const o = pp->o;
  int16_t *const cur = pp->cur, *const scur = pp->scur;
  const int16_t *const sprv = pp->sprv;
  uint8_t *const ecur = pp->ecur;
  const int32_t *const pm = s->pm, *const pc = s->pc, *const pe = s->pe;
  const int64_t *const pv = s->pal.vals;
  const int32_t *const nearest = s->pal.nearest, *const rankof = s->pal.rank;
  const int32_t cW = casc >= 1 ? s->casc.wq[0] : 0, cWW = casc >= 5 ? s->casc.wq[4] : 0;
  const int sres = casc || coder == VX6_MIXING; /* has_sres, with cs's constant (else not written) */
  /* the weights of the regressors on the current row: wr[k] for the voxel k + 1 to the left */
  int32_t wr[6] = {0, 0, 0, 0, 0, 0};
  for (int r = 0; r < n_rec; r++) wr[-s->rec_dx[r] - 1] = o->wq[s->rec_idx[r]];
  const int32_t w1 = wr[0], w2 = wr[1], w3 = wr[2], w4 = wide ? wr[3] : 0, w5 = wide ? wr[4] : 0,
                w6 = wide ? wr[5] : 0;
  /* the row's recent voxels, in registers: values in the planes (h1 = W, h2 = WW, ...), errors and
   * signed residuals at W and WW, the voxels W and WW themselves (the padding holds zeros) */
  int32_t h1 = cur[pos0 - 1], h2 = cur[pos0 - 2], h3 = cur[pos0 - 3], h4 = cur[pos0 - 4], h5 = cur[pos0 - 5],
          h6 = cur[pos0 - 6];
  int e1 = ecur[pos0 - 1], e2 = ecur[pos0 - 2];
  int32_t s1 = sres ? scur[pos0 - 1] : 0, s2 = sres ? scur[pos0 - 2] : 0;
  const size_t rowbase = zbase + (size_t)y * w;
  int64_t v1 = 0, v2 = 0;
  if (!plain) {
    v1 = x0 >= 1 ? get_voxel(vox, b->itemsize, rowbase + x0 - 1) : 0;
    v2 = x0 >= 2 ? get_voxel(vox, b->itemsize, rowbase + x0 - 2) : 0;
  }
  const int32_t clo = (int32_t)(lo - centre); /* the lowest value in the planes (plain) */
  /* the token coder's state, in registers for the piece (written back at its end) */
  uint32_t x = 0;
  size_t pos = 0;
  const uint8_t *const in = rc->in; /* decoding: padded (see vx6_decode) */
  Sym *sp = NULL;
  if (coder == VX6_TABLES) {
    if (dec) {
      x = rc->x;
      pos = rc->pos;
    } else {
      if (!grow((void **)&rc->sym, &rc->symcap, rc->nsym + 2 * (size_t)m + 4, sizeof(Sym))) return VX6_ERR_MEMORY;
      sp = rc->sym + rc->nsym;
    }
  }
#define VX6_FAIL(e)                   \
  do {                                \
    if (coder == VX6_TABLES && dec) { \
      rc->x = x;                      \
      rc->pos = pos;                  \
    }                                 \
    return (e);                       \
  } while (0)
#define VX6_NORM() /* without a branch (it would be mispredicted): a word comes in when x < 2^16 */ \
  do {                                                                                              \
    const uint32_t wd_ = rd16(in + pos);                                                            \
    const int s_ = VX6_COIN(x < RANS_L);                                                            \
    x = s_ ? (x << 16) | wd_ : x;                                                                   \
    pos = s_ ? pos + 2 : pos;                                                                       \
  } while (0)
  Tab *const tabs = s->tabs;
  const int ntok = s->ntok;
  int run = 0, kept = 0; /* the current run of voxels that feed the statistics; how many so far */
  const int cbase = casc ? s->casc.count : 0;
  for (int t = 0; t < m; t++) {
    const ptrdiff_t idx = pos0 + t;
    const int xx = x0 + t;
    const size_t vi = rowbase + xx;
    int flat = 0, edge = 0;
    int64_t P = 0;
    /* flat: the nearest known voxels (W, NW, N, NE; on the first row W and WW; on the first column N and
     * NE; on the last W, NW and N) hold one value: it is the prediction, the voxel has a context of its own
     * and teaches the filters nothing (black margins and constant regions cost almost nothing).
     * edge: otherwise, beside the block's lowest value (the margins of a registered stack): predicted as that
     * value, in a context per pattern of which of W, NW, N, NE hold it */
    if (plain || (y > 0 && !shift)) { /* whole values: the tests on the planes (v - centre) */
      const int32_t cN = cur[idx - Wp], cNW = xx > 0 ? cur[idx - Wp - 1] : 0,
                    cNE = xx + 1 < w ? cur[idx - Wp + 1] : cN;
      if (xx > 0) {
        flat = ((h1 ^ cN) | (h1 ^ cNW) | (h1 ^ cNE)) == 0;
        P = h1 + centre;
        /* (clo is the lowest value: one of them holds it when their minimum does; mostly none) */
        const int32_t mn = h1 < cN ? h1 : cN, mn2 = cNW < cNE ? cNW : cNE;
        if (!flat && (mn < mn2 ? mn : mn2) == clo)
          edge = (h1 == clo) | (cNW == clo) << 1 | (cN == clo) << 2 | (cNE == clo) << 3;
      } else if (w > 1) {
        flat = cN == cNE;
        P = cN + centre;
      }
    } else if (y > 0) { /* shifted values: the tests on the voxels themselves (the row above decoded) */
      const int64_t vN = get_voxel(vox, b->itemsize, vi - w),
                    vNW = xx > 0 ? get_voxel(vox, b->itemsize, vi - w - 1) : 0,
                    vNE = xx + 1 < w ? get_voxel(vox, b->itemsize, vi - w + 1) : vN;
      if (xx > 0) {
        flat = v1 == vN && v1 == vNW && v1 == vNE;
        P = v1;
        edge = flat ? 0 : (v1 == lo) | (vNW == lo) << 1 | (vN == lo) << 2 | (vNE == lo) << 3;
      } else if (w > 1) {
        flat = vN == vNE;
        P = vN;
      }
    } else if (xx > 1) {
      flat = v1 == v2;
      P = v1;
    }
    if (edge) P = lo;
    int32_t acc = 0;
    int64_t Pf = 0; /* the filters' prediction */
    if (!flat) {
      acc = pm[t] + w1 * h1 + w2 * h2 + w3 * h3; /* exact integers: any order */
      if (wide) acc += w4 * h4 + w5 * h5 + w6 * h6;
      int32_t pfull = acc;
      if (casc) pfull += pc[t] + cW * s1 + cWW * s2;
      Pf = centre + ((((int64_t)pfull * ((int64_t)1 << shift)) + 2048) >> 12); /* (no shift of a negative) */
      if (Pf < lo) Pf = lo;
      if (Pf > hi) Pf = hi;
      P = edge && s->edge_score[edge] >= 0 ? lo : Pf;
    }
    /* the error context: its level (eq, eqc), and for the token tables its table */
    int eq = 0, eqc = 0;
    Tab *tb = NULL;
    if (flat || edge) {
      if (t > run && feeds) {
        ols_note(o, y, x0 + run, x0 + t);
        if (casc) ols_note(&s->casc, y, x0 + run, x0 + t);
      }
      run = t + 1;
      eq = flat ? EQ_FLAT : EQ_EDGE + edge;
      eqc = flat ? 6 : 7;
      tb = tabs + eq;
    } else {
      const int esum = pe[t] + 2 * e1 + e2;
      if (coder == VX6_TABLES) {
        tb = (Tab *)((char *)tabs + EQOFF[esum]);
      } else {
        eq = EQTAB[esum];
        eqc = eq >> 2;
      }
    }
    int64_t rmin = 0, rmax = 0, Pr = 0;
    if (palette) {
      Pr = nearest[P - lo];
      rmin = -Pr;
      rmax = (int64_t)top - Pr;
    } else if (!plain || coder != VX6_TABLES) {
      rmin = lo - P;
      rmax = hi - P;
    }
    int64_t r = 0, v = 0;
    int e0 = 0; /* the residual's magnitude in the planes, at most 255 */
    if (!dec) {
      v = get_voxel(vox, b->itemsize, vi);
      if (v < lo || v > hi) return VX6_ERR_INPUT;
      if (palette) {
        if (rankof[v - lo] < 0) return VX6_ERR_INPUT;
        r = rankof[v - lo] - Pr;
      } else {
        r = v - P;
      }
    }
    if (coder == VX6_TABLES) {
      /* the residual r in [rmin, rmax] (rmin <= 0 <= rmax, not both 0) as u = 2 r (r >= 0) or -2 r - 1: its
       * token with the table's 15-bit frequencies, then its raw low bits */
      int tok;
      if (!dec) {
        const uint32_t u = (uint32_t)(r * 2) ^ (uint32_t)(r >> 63); /* r >= 0: 2 r, else -2 r - 1 */
        int nraw;
        tok = token_of(u, &nraw);
        *sp++ = (Sym){tb->cum[tok], tb->freq[tok], PROB_TOTAL_BITS};
        *sp = (Sym){(uint16_t)(u & ((1u << nraw) - 1)), 1, (uint8_t)nraw}; /* nraw <= 13 */
        sp += nraw != 0; /* (kept only with raw bits: no branch) */
      } else {
        const uint32_t slot = x & (PROB_TOTAL - 1);
        tok = tb->lut[slot >> (PROB_TOTAL_BITS - LUT_BITS)];
        while (tb->cum[tok + 1] <= slot) tok++;
        /* tok < ntok: the table's cumulative frequencies end at cum[ntok] = 2^15 > slot (tab_freeze) */
        x = tb->freq[tok] * (x >> PROB_TOTAL_BITS) + slot - tb->cum[tok];
        VX6_NORM();
        const int nraw = TOK_RAW[tok]; /* 0 for small tokens: x is then unchanged */
        const uint32_t u = TOK_BASE[tok] | (x & ((1u << nraw) - 1));
        x >>= nraw;
        VX6_NORM();
        r = (int64_t)(int32_t)((u >> 1) ^ (0u - (u & 1))); /* u odd: -(u + 1) / 2, without a branch */
        if (plain) { /* r in [rmin, rmax]: a rank Pr + r in [0, top], or a value P + r in [lo, hi] */
          if (palette) {
            if ((uint64_t)(Pr + r) > top) VX6_FAIL(VX6_ERR_RANGE);
            v = pv[Pr + r];
          } else {
            v = P + r;
            if ((uint64_t)(v - lo) > (uint64_t)(hi - lo)) VX6_FAIL(VX6_ERR_RANGE);
          }
          e0 = (int)((u + 1) >> 1); /* |r| (a rank's too), at most 255: shift 0, or at most 256 ranks */
        } else if (r < rmin || r > rmax) {
          VX6_FAIL(VX6_ERR_RANGE);
        }
      }
      tab_update(tb, tok, ntok);
    } else {
      const int spat = sgn3(s1) * 27 + sgn3(scur[idx - Wp]) * 9 + sgn3(scur[idx - Wp - 1]) * 3 +
                       sgn3(scur[idx - Wp + 1]);
      const int iv = (int)(((P - lo) * 16) / (hi - lo + 1));
      const int base[6] = {0, eq, eqc * 81 + spat, eqc, qsig(sprv[idx]) * EQC_LEVELS + eqc,
                           iv * EQC_LEVELS + eqc};
      const int rc_err = code_mixing(s, rc, dec, base, eqc, rmin, rmax, &r);
      if (rc_err) return rc_err;
    }
    if (dec && !(plain && coder == VX6_TABLES)) { /* (plain: the row is written from the plane below) */
      v = palette ? pv[Pr + r] : P + r;
      put_voxel(vox, b->itemsize, vi, v);
    }
    /* learn from the voxel */
    if (edge) { /* which of the two predicts this pattern better */
      const int64_t dl = v - lo, df = v < Pf ? Pf - v : v - Pf;
      int *sc = &s->edge_score[edge];
      *sc += dl < df ? 1 : dl > df ? -1 : 0;
      *sc = *sc > 64 ? 64 : *sc < -64 ? -64 : *sc;
    }
    const int32_t tv = (int32_t)((v - centre) >> shift);
    cur[idx] = (int16_t)tv;
    const int64_t rs = palette ? r : (r >> shift);
    if (!(plain && coder == VX6_TABLES && dec)) {
      const int64_t ar = rs < 0 ? -rs : rs;
      e0 = (int)(ar > 255 ? 255 : ar);
    }
    ecur[idx] = (uint8_t)e0;
    int32_t s0 = 0;
    if (sres) {
      s0 = (int32_t)(rs > 127 ? 127 : rs < -127 ? -127 : rs);
      scur[idx] = (int16_t)s0;
    }
    if (!flat && !edge && casc && feeds) {
      int32_t pmain = (acc + 2048) >> 12;
      pmain = pmain > 127 ? 127 : pmain < -128 ? -128 : pmain;
      s->ctgt[cbase + kept] = (int16_t)(tv - pmain);
    }
    kept += !flat && !edge && feeds;
    h6 = h5;
    h5 = h4;
    h4 = h3;
    h3 = h2;
    h2 = h1;
    h1 = tv;
    e2 = e1;
    e1 = e0;
    s2 = s1;
    s1 = s0;
    v2 = v1;
    v1 = v;
  }
  if (coder == VX6_TABLES) {
    if (dec) {
      rc->x = x;
      rc->pos = pos;
    } else {
      rc->nsym = (size_t)(sp - rc->sym);
    }
  }
#undef VX6_FAIL
#undef VX6_NORM
  if (dec && plain && coder == VX6_TABLES) { /* the piece's voxels: their values in the plane (shift 0) */
    for (int t = 0; t < m; t++) put_voxel(vox, b->itemsize, rowbase + x0 + t, cur[pos0 + t] + centre);
  }
  pp->run = run;
  return VX6_OK;
}

/* One function codes and decodes (dec), with either coder; the four combinations are compiled apart
 * (code_block_* below) so that neither flag costs a branch per voxel. */
static VX6_INLINE int code_block(State *s, RC *rc, const int dec, const int coder, void *vox, const vx6_slices *sl,
                                 int64_t *slice_bytes) {
  const vx6_block *b = &s->b;
  const vx6_params *p = &s->p;
  const int h = b->h, w = b->w, Wp = s->Wp, shift = b->shift, I = s->interval;
  const int64_t lo = b->lo, hi = b->hi, centre = b->centre;
  const size_t plane = s->plane;
  const int n_reg = s->n_reg, casc = p->casc, n_rec = s->n_rec;
  int32_t *const pm = s->pm, *const pc = s->pc, *const pe = s->pe;
  const int chunk_rows = w >= CHUNK_VOXELS ? 1 : CHUNK_VOXELS / w; /* rows of a chunk of the entropy coder */
  for (int z = 0; z < b->d; z++) {
    int16_t *const planes[3] = {s->val + (size_t)(z % 3) * plane, s->val + (size_t)((z + 2) % 3) * plane,
                                s->val + (size_t)((z + 1) % 3) * plane};
    int16_t *const cur = planes[0];
    uint8_t *const ecur = s->err + (size_t)(z & 1) * plane;
    const uint8_t *const eprv = s->err + (size_t)((z + 1) & 1) * plane;
    int16_t *const scur = s->sres ? s->sres + (size_t)(z & 1) * plane : NULL;
    int16_t *const sprv = s->sres ? s->sres + (size_t)((z + 1) & 1) * plane : NULL;
    const size_t zbase = (size_t)z * h * w;
    int kind = 0;
    const int64_t *vals = NULL;
    int nvals = 0;
    if (!dec) {
      kind = sl->kind[z];
      vals = sl->values + sl->start[z];
      nvals = (int)(sl->start[z + 1] - sl->start[z]);
    }
    if (dec && rc_dec_start(rc)) return VX6_ERR_TAIL;
    kind = slice_header(rc, dec, kind, &s->pal, vals, nvals, lo, hi, (int64_t)h * w);
    if (kind < 0) return VX6_ERR_SLICE;
    if (kind == 2) { /* constant slice: no residuals; it is the slice before the next one as usual */
      const int64_t v = s->pal.vals[0];
      const int16_t c = (int16_t)((v - centre) >> shift);
      for (int y = 0; y < h; y++) {
        const size_t row = (size_t)(y + PAD) * Wp + PAD;
        for (int xx = 0; xx < w; xx++) {
          cur[row + xx] = c;
          ecur[row + xx] = 0;
          if (scur) scur[row + xx] = 0;
          if (dec) put_voxel(vox, b->itemsize, zbase + (size_t)y * w + xx, v);
          else if (get_voxel(vox, b->itemsize, zbase + (size_t)y * w + xx) != v) return VX6_ERR_INPUT;
        }
      }
      if (dec) {
        if (rc_dec_end(rc)) return VX6_ERR_TAIL;
      } else {
        rc_enc_chunk(rc, 0);
      }
      if (slice_bytes) slice_bytes[z] = (int64_t)rc->len;
      continue;
    }
    const int palette = kind != 0;
    for (int y = 0; y < h; y++) {
      if (dec && rc->pos > rc->n + 8) return VX6_ERR_EARLY; /* long past the end: stop early */
      const int feeds = (y & ((1 << p->sparse) - 1)) == 0; /* this row feeds the filters' statistics */
      int x0 = 0;
      while (x0 < w) {
        /* a piece: one band, inside the runs of its filter and of the second stage */
        const int band = p->band_log ? x0 >> p->band_log : 0;
        Ols *o = &s->bands[band];
        int x1 = p->band_log ? (band + 1) << p->band_log : w;
        if (x1 > w) x1 = w;
        if (feeds && x1 > x0 + I - o->count) x1 = x0 + I - o->count; /* (other rows never fill a run) */
        if (feeds && casc && x1 > x0 + I - s->casc.count) x1 = x0 + I - s->casc.count;
        const int m = x1 - x0;
        const ptrdiff_t pos0 = (ptrdiff_t)(y + PAD) * Wp + PAD + x0;
        /* the sums over regressors off the current row, for the whole piece (weights are fixed in it) */
        {
          const int16_t *src[VX6_MAX_REG];
          int32_t wk[VX6_MAX_REG];
          int k = 0;
          for (int i = 0, r = 0; i < n_reg; i++) {
            if (r < n_rec && s->rec_idx[r] == i) {
              r++;
              continue;
            }
            wk[k] = o->wq[i];
            src[k++] = planes[s->reg_plane[i]] + pos0 + s->reg_off[i];
          }
          dot_rows(pm, wk, src, k, m);
        }
        if (casc) {
          for (int t = 0; t < m; t++) pc[t] = 0;
          for (int i = 0; i < casc; i++) {
            if (!CASC_PREV[i] && CASC_DY[i] == 0) continue;
            const int32_t wi = s->casc.wq[i];
            axpy16(pc, wi, (CASC_PREV[i] ? sprv : scur) + pos0 + (ptrdiff_t)CASC_DY[i] * Wp + CASC_DX[i], m);
          }
        }
        {
          const uint8_t *eN = ecur + pos0 - Wp, *eP = eprv + pos0, *eNN = ecur + pos0 - 2 * Wp;
          for (int t = 0; t < m; t++) pe[t] = 2 * eN[t] + eN[t - 1] + eN[t + 1] + eNN[t] + 2 * eP[t];
        }
        Piece pp = {o, y, x0, m, feeds, palette, pos0, zbase, cur, scur, sprv, ecur, 0};
        /* the common case (a row below the first, whole values, no palette) compiled apart for the
         * token tables: fewer tests a voxel */
        int err;
        if (coder == VX6_TABLES && !shift && y > 0) { /* fast's shape (narrow, no second stage), or any */
          const int narrow = n_rec <= 3 && !casc;
          if (palette)
            err = narrow ? code_piece(s, rc, &pp, vox, dec, coder, 1, 1, 0, 0)
                         : code_piece(s, rc, &pp, vox, dec, coder, 1, 1, 1, 1);
          else
            err = narrow ? code_piece(s, rc, &pp, vox, dec, coder, 1, 0, 0, 0)
                         : code_piece(s, rc, &pp, vox, dec, coder, 1, 0, 1, 1);
        } else {
          err = code_piece(s, rc, &pp, vox, dec, coder, 0, 0, 1, 1);
        }
        if (err) return err;
        const int run = pp.run;
        if (m > run && feeds) {
          ols_note(o, y, x0 + run, x1);
          if (casc) ols_note(&s->casc, y, x0 + run, x1);
        }
        if (o->count == I) fold_main(s, o, planes);
        if (casc && s->casc.count == I) fold_casc(s, scur, sprv);
        x0 = x1;
      }
      if ((y + 1) % chunk_rows == 0 || y + 1 == h) { /* a chunk ends */
        if (dec) {
          if (rc_dec_end(rc) || (y + 1 < h && rc_dec_start(rc))) return VX6_ERR_TAIL;
        } else {
          rc_enc_chunk(rc, y + 1 < h);
        }
      }
    }
    /* runs end with the slice */
    for (int i = 0; i < s->nbands; i++)
      if (s->bands[i].count) fold_main(s, &s->bands[i], planes);
    if (casc && s->casc.count) fold_casc(s, scur, sprv);
    if (slice_bytes) slice_bytes[z] = (int64_t)rc->len;
  }
  return VX6_OK;
}

static int code_block_enc_tables(State *s, RC *rc, void *vox, const vx6_slices *sl, int64_t *slice_bytes) {
  return code_block(s, rc, 0, VX6_TABLES, vox, sl, slice_bytes);
}
static int code_block_dec_tables(State *s, RC *rc, void *vox) { return code_block(s, rc, 1, VX6_TABLES, vox, NULL, NULL); }
static int code_block_enc_mixing(State *s, RC *rc, void *vox, const vx6_slices *sl, int64_t *slice_bytes) {
  return code_block(s, rc, 0, VX6_MIXING, vox, sl, slice_bytes);
}
static int code_block_dec_mixing(State *s, RC *rc, void *vox) { return code_block(s, rc, 1, VX6_MIXING, vox, NULL, NULL); }

/* the block fields the coder relies on (the container checks them against the stream's limits) */
static int block_ok(const vx6_block *b) {
  if (b->d < 1 || b->h < 1 || b->w < 1 || (b->itemsize != 1 && b->itemsize != 2)) return 0;
  if (b->lo < 0 || b->hi <= b->lo || b->hi > (b->itemsize == 1 ? 255 : 65535)) return 0;
  int shift = 0;
  while ((b->hi - b->lo) >> shift > 255) shift++;
  return b->shift == shift && b->centre == b->lo + (((((b->hi - b->lo) >> shift) + 1) / 2) << shift);
}

/* the encoder's slice headers: kinds 0..3, value counts that fit them, sorted values in [lo, hi] */
static int slices_ok(const vx6_block *b, const vx6_slices *sl) {
  if (sl->start[0] != 0) return 0;
  for (int z = 0; z < b->d; z++) {
    const int64_t n = sl->start[z + 1] - sl->start[z];
    const int k = sl->kind[z];
    if (k > 3 || n < 0 || (k == 0 && n) || (k == 2 && n != 1) || ((k == 1 || k == 3) && n < 2)) return 0;
    if (n > b->hi - b->lo + 1) return 0;
    for (int64_t i = 0; i < n; i++) {
      const int64_t v = sl->values[sl->start[z] + i];
      if (v < b->lo || v > b->hi || (i && v <= sl->values[sl->start[z] + i - 1])) return 0;
    }
  }
  return 1;
}

size_t vx6_workspace(const vx6_block *b, const vx6_params *p, size_t payload_len) {
  return planes_bytes(b, p) + payload_len + 4 * (size_t)b->w + 64;
}

int vx6_encode(const vx6_block *b, const vx6_params *p, const void *voxels, const vx6_slices *sl, uint8_t **out,
               size_t *out_len, int64_t *slice_bytes) {
  return vx6_encode_ws(b, p, voxels, sl, out, out_len, slice_bytes, NULL, 0);
}

int vx6_encode_ws(const vx6_block *b, const vx6_params *p, const void *voxels, const vx6_slices *sl, uint8_t **out,
                  size_t *out_len, int64_t *slice_bytes, void *ws, size_t ws_len) {
  State s;
  RC rc;
  *out = NULL;
  *out_len = 0;
  if (!block_ok(b) || !slices_ok(b, sl)) return VX6_ERR_INPUT;
  rc_enc_init(&rc);
  int err = state_init(&s, b, p, ws && ws_len >= planes_bytes(b, p) ? ws : NULL);
  if (!err)
    err = p->coder == VX6_TABLES ? code_block_enc_tables(&s, &rc, (void *)voxels, sl, slice_bytes)
                                 : code_block_enc_mixing(&s, &rc, (void *)voxels, sl, slice_bytes);
  state_free(&s);
  rc_enc_free(&rc);
  if (!err && rc.oom) err = VX6_ERR_MEMORY;
  if (err) {
    free(rc.buf);
    return err;
  }
  *out = rc.buf;
  *out_len = rc.len;
  return VX6_OK;
}

int vx6_decode(const vx6_block *b, const vx6_params *p, const uint8_t *payload, size_t len, void *voxels) {
  return vx6_decode_ws(b, p, payload, len, voxels, NULL, 0);
}

int vx6_decode_ws(const vx6_block *b, const vx6_params *p, const uint8_t *payload, size_t len, void *voxels, void *ws,
                  size_t ws_len) {
  State s;
  RC rc;
  if (!block_ok(b)) return VX6_ERR_INPUT;
  /* the token coder reads its words without a bound check: the payload is copied with zeros after it,
   * more than a row can read (4 bytes a voxel) past the point where a row starts (at most 8 bytes past
   * the end, or decoding stops early); the checked readers still see the payload's length */
  const size_t pad = 4 * (size_t)b->w + 64, nplanes = planes_bytes(b, p);
  const int lent = ws && ws_len >= vx6_workspace(b, p, len);
  uint8_t *padded = lent ? (uint8_t *)ws + nplanes : (uint8_t *)malloc(len + pad);
  if (!padded) return VX6_ERR_MEMORY;
  if (len) memcpy(padded, payload, len);
  memset(padded + len, 0, pad);
  rc_dec_init(&rc, padded, len);
  int err = state_init(&s, b, p, lent ? ws : NULL);
  if (!err) err = p->coder == VX6_TABLES ? code_block_dec_tables(&s, &rc, voxels) : code_block_dec_mixing(&s, &rc, voxels);
  state_free(&s);
  if (!lent) free(padded);
  if (!err) {
    if (rc.pos > rc.n) err = VX6_ERR_EARLY;
    else if (rc.pos != rc.n) err = VX6_ERR_TAIL;
  } else if (rc.pos > rc.n) {
    err = VX6_ERR_EARLY;
  }
  return err;
}
