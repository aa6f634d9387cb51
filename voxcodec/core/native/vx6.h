/* voxcodec's native engine: the format 6 block coder (plain C, no Python API).
 *
 * A block is coded slice by slice, each slice in raster order.  Every voxel is predicted by an online
 * least-squares filter over its causal neighbours in the slice and its neighbours in the two slices
 * before; the residual is coded by an adaptive model (token tables, or binary context mixing) that
 * learns while coding, in the encoder and the decoder alike.  docs/format.md ("Block coding (version 6)") is the
 * specification; this file and vx6.c are its reference.
 *
 * Exactness: everything the coder sees is integer arithmetic, except the least-squares solve, which
 * uses IEEE-754 double + - * / and sqrt in a fixed order (compile without FMA contraction and without
 * -ffast-math: see setup.py).
 */
#ifndef VX6_H
#define VX6_H

#include <stddef.h>
#include <stdint.h>

#define VX6_PARAM_BYTES 16
#define VX6_MAX_CAUSAL 40
#define VX6_MAX_PREV 25
#define VX6_MAX_PREV2 9
#define VX6_MAX_REG 48
#define VX6_MAX_CASC 8

/* error codes of vx6_decode (0: fine) */
enum {
  VX6_OK = 0,
  VX6_ERR_PARAMS = 1,   /* the block's parameters are outside the limits */
  VX6_ERR_EARLY = 2,    /* the payload ends early */
  VX6_ERR_RANGE = 3,    /* a decoded value lies outside the block's range or palette */
  VX6_ERR_SLICE = 4,    /* a slice header (kind, palette) the encoder never writes */
  VX6_ERR_TAIL = 5,     /* bytes left over, or a chunk's first or final coder state is wrong */
  VX6_ERR_MEMORY = 6,   /* not enough memory */
  VX6_ERR_INPUT = 7     /* encoder: a value outside [lo, hi], or a bad palette */
};

enum { VX6_TABLES = 1, VX6_MIXING = 2 };

typedef struct {
  int coder;        /* VX6_TABLES or VX6_MIXING */
  int n_causal;     /* causal neighbours in the slice (0..40) */
  int n_prev;       /* neighbours in the slice before (0..25) */
  int n_prev2;      /* neighbours in the slice before that (0..9) */
  int interval_log; /* the filters are re-solved every 2^interval_log voxels they code (0..10) */
  int forget;       /* at each solve, the statistics keep 1 - 2^-forget of their weight (1..24) */
  int ridge;        /* ridge regularization 2^-ridge (relative to the mean diagonal) (1..40) */
  int band_log;     /* the main filter has one state per band of 2^band_log columns (0: one state; 4..13) */
  int casc;         /* residual regressors of the second-stage filter (0..8) */
  int inputs;       /* mixing: context inputs (1..6) */
  int mant;         /* mixing: modelled bits of a residual's mantissa (1..16) */
  int lr;           /* mixing: mixer learning rate (1..64) */
  int limit_log;    /* mixing: adaptation limit of the bit models, 2^limit_log - 1 updates (1..10) */
  int sparse;       /* only the voxels of every 2^sparse-th row feed the filters' statistics (0..3) */
} vx6_params;

/* Fill the engine's constant tables.  The coders call it themselves; a program that codes from
 * several threads calls it once first (the Python binding does, at import). */
void vx6_init(void);

/* Parse and check a block's 16 parameter bytes; returns 0 or VX6_ERR_PARAMS. */
int vx6_parse_params(const uint8_t *raw, vx6_params *p);
void vx6_pack_params(const vx6_params *p, uint8_t *raw);

/* One block: its voxels are d slices of h x w, of 1 (uint8) or 2 (uint16) bytes each, values in
 * [lo, hi] (lo < hi); shift and centre as the block header says ((hi - lo) >> shift <= 255,
 * centre = lo + ((((hi - lo) >> shift) + 1) / 2 << shift)). */
typedef struct {
  int d, h, w, itemsize;
  int64_t lo, hi, centre;
  int shift;
} vx6_block;

/* Slice headers chosen by the encoder: kind[z] is 0 normal, 1 bitmap palette, 2 constant,
 * 3 listed palette; the values of slice z are values[start[z] .. start[z + 1]) (sorted, in [lo, hi];
 * one value for a constant slice, none for a normal one). */
typedef struct {
  const uint8_t *kind;
  const int64_t *start;
  const int64_t *values;
} vx6_slices;

/* Encode a block; *out is malloc'ed (the caller frees it), *out_len its length.  slice_bytes (d
 * entries, or NULL) receives the bytes written or owed after each slice.  Returns 0 or an error code. */
int vx6_encode(const vx6_block *b, const vx6_params *p, const void *voxels, const vx6_slices *s,
               uint8_t **out, size_t *out_len, int64_t *slice_bytes);

/* Decode a block into voxels (d * h * w items); returns 0 or an error code (the voxels written so far
 * are then meaningless). */
int vx6_decode(const vx6_block *b, const vx6_params *p, const uint8_t *payload, size_t len, void *voxels);

/* The same, with a workspace the caller lends: the block's planes (and, decoding, a padded copy of the
 * payload) then live there instead of in memory allocated and freed for each block, which a caller
 * coding many blocks on one thread reuses (fresh memory costs page faults).  vx6_workspace gives its
 * size in bytes (payload_len: the payload's, decoding; 0 encoding); a smaller or NULL workspace is not
 * used.  The bytes are the same either way. */
size_t vx6_workspace(const vx6_block *b, const vx6_params *p, size_t payload_len);
int vx6_encode_ws(const vx6_block *b, const vx6_params *p, const void *voxels, const vx6_slices *s, uint8_t **out,
                  size_t *out_len, int64_t *slice_bytes, void *ws, size_t ws_len);
int vx6_decode_ws(const vx6_block *b, const vx6_params *p, const uint8_t *payload, size_t len, void *voxels, void *ws,
                  size_t ws_len);

#endif
