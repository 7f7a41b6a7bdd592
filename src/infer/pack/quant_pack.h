/*
 * quant_pack.h - row-interleaved ("packed") weights for fast matrix products (private).
 *
 * Why. A GGUF row stores its blocks one after another, each with its own scale, so a SIMD
 * dot product of one row spends most of its instructions on gathering scales and folding
 * lanes together, not on multiplying: the AVX-512 vec_dots reach only 15-20 GB/s of Q4_0 per
 * core even with the weights in cache, below the memory's read bandwidth. Interleaving 16 rows
 * removes that work: one 64-byte vector holds 4 quant bytes of each of 16 rows, every 32-bit
 * lane belongs to one row, so vpdpbusd with a broadcast activation word leaves 16 finished row
 * sums in one register and the 16 rows' scales load as one vector. No horizontal sums, no
 * scalar scale conversions. (The same idea as the "repacked" Q4_0 layouts of other CPU
 * engines; the layouts here are llmos's own.)
 *
 * Layout. A matrix of n_out rows becomes ceil(n_out / 16) groups of QPACK_ROWS rows; a group
 * takes exactly QPACK_ROWS * row_bytes bytes (the formats below keep the block size), rows past
 * n_out in the last group are zero (scales 0, so they produce 0). Within a group the blocks of
 * the 16 rows are stored block index by block index; each type documents its block layout in
 * its own file, quant_pack_<type>.c.
 *
 * Activations. Packed kernels take each token's activations as 8-bit integers with one float
 * scale per 32 values and the scaled sum of each 32 (qpack_act, quant_pack.c): finer than Q8_K
 * and exact float scales, so results are at least as accurate as the vec_dot path.
 *
 * Kernels. One kernel call multiplies one group (16 rows, all k columns) by 1 to QPACK_TOK
 * tokens. Each type's file holds its pack function, its scalar reference kernel (the truth)
 * and its AVX-512 VNNI kernel, which is tested against the reference; a type is packed at
 * load time only when its SIMD kernel can run on this CPU.
 */
#ifndef LLMOS_QUANT_PACK_H
#define LLMOS_QUANT_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/quant.h"

#define QPACK_ROWS  16 /* rows per group: one 64-byte vector holds 4 bytes of each */
#define QPACK_TOK   4  /* tokens per kernel call at most */
#define QPACK_BLOCK 32 /* activation values per scale */

/* ---- activations ------------------------------------------------------------------------- */

/* One token of n values (n a multiple of QPACK_BLOCK) in qpack_act_bytes(n) bytes:
 *   int8_t q[n]            q[i] = round(x[i] / d[b]), b = i / 32
 *   float  d[n / 32]       d[b] = max |x| of block b / 127 (0 for an all-zero block)
 *   float  s[n / 32]       s[b] = d[b] * sum of the block's q
 * so x[i] ~= d[b] q[i] and sum_i w[i] x[i] over a block = d[b] * sum w[i] q[i]. */
size_t qpack_act_bytes(size_t n);
static inline const int8_t *qpack_act_q(const void *act)
{
    return (const int8_t *)act;
}
static inline const float *qpack_act_d(const void *act, size_t n)
{
    return (const float *)((const uint8_t *)act + n);
}
static inline const float *qpack_act_s(const void *act, size_t n)
{
    return qpack_act_d(act, n) + n / QPACK_BLOCK;
}

/* Quantize x[0..n) into dst (qpack_act_bytes(n) bytes), with the best code for this CPU; the
 * _ref version is the portable truth (round half to even, as the SIMD conversion does). */
void qpack_act_quantize(const float *x, size_t n, void *dst);
void qpack_act_quantize_ref(const float *x, size_t n, void *dst);

/* ---- packed types ------------------------------------------------------------------------ */

/* out[t][r] = sum over k of row r of the group times token t, t < n_tok (1..QPACK_TOK).
 * act points at token 0; token t is at act + t * act_stride bytes. */
typedef void (*qpack_kernel_fn)(size_t k, const void *group, const void *act, size_t act_stride,
                                size_t n_tok, float out[QPACK_TOK][QPACK_ROWS]);

/* Write one group from n_rows (1..QPACK_ROWS) GGUF rows of k values, row r at
 * rows + r * row_bytes; missing rows are packed as zeros. */
typedef void (*qpack_pack_fn)(const void *rows, size_t row_bytes, size_t n_rows, size_t k,
                              void *group);

typedef struct qpack_traits {
    ggml_type type;
    size_t k_multiple; /* k must be a multiple of this (the type's block size) */
    qpack_pack_fn pack;
    qpack_kernel_fn kernel_ref; /* scalar reference */
    qpack_kernel_fn kernel;     /* the SIMD kernel for this CPU, NULL when it cannot run here */
} qpack_traits;

/* The packed form of `type`, or NULL when llmos has none. */
const qpack_traits *qpack_traits_of(ggml_type type);

/* Whether ops should pack matrices of `type` for a k-column matrix: a packed form with a
 * kernel for this CPU exists, k fits it, and packing is not turned off (LLMOS_PACK=0). */
bool qpack_usable(ggml_type type, size_t k);

/* ---- the kernels of each type (quant_pack_<type>.c) --------------------------------------- */

#define QPACK_DECLARE(type)                                                                        \
    void qpack_##type##x16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k,       \
                                void *group);                                                      \
    void qpack_##type##x16_kernel_ref(size_t k, const void *group, const void *act,                \
                                      size_t act_stride, size_t n_tok,                             \
                                      float out[QPACK_TOK][QPACK_ROWS]);                           \
    void qpack_##type##x16_kernel_avx512(size_t k, const void *group, const void *act,             \
                                         size_t act_stride, size_t n_tok,                          \
                                         float out[QPACK_TOK][QPACK_ROWS]);

QPACK_DECLARE(q4_0)
QPACK_DECLARE(q8_0)
QPACK_DECLARE(q4_K)
QPACK_DECLARE(q6_K)
QPACK_DECLARE(q5_0)
QPACK_DECLARE(q5_K)
QPACK_DECLARE(q5_1)

/* avx512f+bw+vl (quant_pack.c) */
void qpack_act_quantize_avx512(const float *x, size_t n, void *dst);

#endif
