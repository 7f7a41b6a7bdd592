/*
 * quant_internal.h - block layouts of the quantized formats and the kernels behind quant.h.
 *
 * The structs below are byte-for-byte the blocks GGUF files store (ggml's ggml-common.h,
 * block_q4_0 ... block_q8_K; half floats are IEEE binary16 kept as uint16_t). Static asserts
 * pin every size to the value in quant.c's type table, so a layout mistake fails the build.
 *
 * Kernels come in three sets with one naming scheme, <type>_<what>_<isa>:
 *   quant_ref.c     portable scalar references (to_float, from_float, vec_dot ..._ref)
 *   quant_avx2.c    AVX2+FMA (+F16C) vec_dots and activation quantizers
 *   quant_avx512.c  AVX-512 (BW/VL, VNNI, BF16) vec_dots for the common types
 * quant.c picks one per type once at run time from llmos_cpu_features(). Tests include this header
 * to run every set against the reference.
 */
#ifndef LLMOS_QUANT_INTERNAL_H
#define LLMOS_QUANT_INTERNAL_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "llmos/quant.h"

#define QK4_0        32
#define QK4_1        32
#define QK5_0        32
#define QK5_1        32
#define QK8_0        32
#define QK8_1        32
#define QK_K         256
#define K_SCALE_SIZE 12

/* ---- legacy blocks of 32 (ggml-common.h) ------------------------------------------------- */

/* value j = (nibble_j - 8) * d; element j is the low nibble of qs[j], element j+16 the high. */
typedef struct block_q4_0 {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;

/* value j = nibble_j * d + m (same nibble order as Q4_0). */
typedef struct block_q4_1 {
    uint16_t d, m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;

/* value j = (nibble_j | bit_j(qh) << 4) - 16) * d; qh is a little-endian 32-bit word whose bit
 * j is the fifth bit of element j. */
typedef struct block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;

/* value j = (nibble_j | bit_j(qh) << 4) * d + m. */
typedef struct block_q5_1 {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;

/* value j = qs[j] * d. */
typedef struct block_q8_0 {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;

/* value j = qs[j] * d; s = d * sum(qs), which the dot products with Q4_1/Q5_1 need for the
 * min term. */
typedef struct block_q8_1 {
    uint16_t d, s;
    int8_t qs[QK8_1];
} block_q8_1;

/* ---- K-quants, super-blocks of 256 (ggml-common.h) --------------------------------------- */

/* 16 sub-blocks of 16: scales[i] low nibble = scale, high nibble = min; 2-bit quants four to a
 * byte. value = d*scale*q - dmin*min. */
typedef struct block_q2_K {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} block_q2_K;

/* 16 sub-blocks of 16 with 6-bit signed scales (stored +32) packed into 12 bytes; 2 low bits in
 * qs, the third bit in hmask (bit set = no offset, clear = subtract 4). value = d*(scale-32)*q. */
typedef struct block_q3_K {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;

/* 8 sub-blocks of 32 with 6-bit scales and mins packed into 12 bytes; nibbles.
 * value = d*scale*q - dmin*min. */
typedef struct block_q4_K {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;

/* As Q4_K plus a fifth bit per element in qh. */
typedef struct block_q5_K {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;

/* 16 sub-blocks of 16 with int8 scales; 6-bit quants: low 4 bits in ql, high 2 in qh.
 * value = d*scale*(q-32). */
typedef struct block_q6_K {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;

/* Activations for the K-quant dot products: a float scale, 256 int8 values and the sums of
 * each 16 of them (used for the min terms). value = d*qs. */
typedef struct block_q8_K {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

static_assert(sizeof(block_q4_0) == 18, "Q4_0 block is 18 bytes");
static_assert(sizeof(block_q4_1) == 20, "Q4_1 block is 20 bytes");
static_assert(sizeof(block_q5_0) == 22, "Q5_0 block is 22 bytes");
static_assert(sizeof(block_q5_1) == 24, "Q5_1 block is 24 bytes");
static_assert(sizeof(block_q8_0) == 34, "Q8_0 block is 34 bytes");
static_assert(sizeof(block_q8_1) == 36, "Q8_1 block is 36 bytes");
static_assert(sizeof(block_q2_K) == 84, "Q2_K block is 84 bytes");
static_assert(sizeof(block_q3_K) == 110, "Q3_K block is 110 bytes");
static_assert(sizeof(block_q4_K) == 144, "Q4_K block is 144 bytes");
static_assert(sizeof(block_q5_K) == 176, "Q5_K block is 176 bytes");
static_assert(sizeof(block_q6_K) == 210, "Q6_K block is 210 bytes");
static_assert(sizeof(block_q8_K) == 292, "Q8_K block is 292 bytes");

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block (ggml's
 * get_scale_min_k4): bytes 0-3 hold scales 0-3 and bytes 4-7 mins 0-3 in their low 6 bits;
 * scales/mins 4-7 keep their low 4 bits in the nibbles of bytes 8-11 and their top 2 bits in
 * the top 2 bits of bytes 0-3 (scales) and 4-7 (mins). */
static inline void quant_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 6-bit scale i (0..15) of a Q3_K block, as stored (subtract 32 for its value): low 4 bits
 * in the low nibbles of bytes 0-7 (i < 8) or the high nibbles (i >= 8), top 2 bits in byte
 * 8 + i%4 at bit 2*(i/4). */
static inline int quant_q3k_scale(int i, const uint8_t *s)
{
    int lo = i < 8 ? (s[i] & 0xF) : (s[i - 8] >> 4);
    int hi = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return lo | (hi << 4);
}

/* The eight scales and mins of a Q4_K/Q5_K block as four little-endian words of four bytes
 * (the same packing as quant_k4_scale_min, decoded four at a time; the SIMD kernels keep the
 * words in registers): w[0] = scales 0-3, w[1] = scales 4-7, w[2] = mins 0-3, w[3] = mins 4-7. */
static inline void quant_k4_scale_words(const uint8_t *q, uint32_t w[4])
{
    uint32_t r[3];
    memcpy(r, q, 12);
    w[0] = r[0] & 0x3F3F3F3Fu;
    w[1] = (r[2] & 0x0F0F0F0Fu) | (((r[0] >> 6) & 0x03030303u) << 4);
    w[2] = r[1] & 0x3F3F3F3Fu;
    w[3] = ((r[2] >> 4) & 0x0F0F0F0Fu) | (((r[1] >> 6) & 0x03030303u) << 4);
}

/* The same as bytes. */
static inline void quant_k4_scales_all(const uint8_t *q, uint8_t sc[8], uint8_t m[8])
{
    uint32_t w[4];
    quant_k4_scale_words(q, w);
    memcpy(sc, w, 8);
    memcpy(m, w + 2, 8);
}

/* The sixteen stored Q3_K scales (value + 32) as four words: v[k] holds scales 4k..4k+3; see
 * quant_q3k_scale for the packing. */
static inline void quant_q3k_scale_words(const uint8_t *s, uint32_t v[4])
{
    uint32_t w[3];
    memcpy(w, s, 12);
    v[0] = (w[0] & 0x0F0F0F0Fu) | ((w[2] & 0x03030303u) << 4);
    v[1] = (w[1] & 0x0F0F0F0Fu) | (((w[2] >> 2) & 0x03030303u) << 4);
    v[2] = ((w[0] >> 4) & 0x0F0F0F0Fu) | (((w[2] >> 4) & 0x03030303u) << 4);
    v[3] = ((w[1] >> 4) & 0x0F0F0F0Fu) | (((w[2] >> 6) & 0x03030303u) << 4);
}

/* All sixteen Q3_K scales as signed values (stored - 32). */
static inline void quant_q3k_scales_all(const uint8_t *s, int8_t out[16])
{
    uint32_t v[4];
    quant_q3k_scale_words(s, v);
    uint8_t u[16];
    memcpy(u, v, 16);
    for (int i = 0; i < 16; i++)
        out[i] = (int8_t)(u[i] - 32);
}

/* ---- scalar references (quant_ref.c) ----------------------------------------------------- */

#define QUANT_DECLARE_REF(t)                                                                       \
    void quant_##t##_to_float(const void *src, float *dst, size_t n);                              \
    void quant_##t##_from_float_ref(const float *src, void *dst, size_t n);                        \
    void quant_##t##_vec_dot_ref(size_t n, float *s, const void *x, const void *y);

QUANT_DECLARE_REF(q4_0)
QUANT_DECLARE_REF(q4_1)
QUANT_DECLARE_REF(q5_0)
QUANT_DECLARE_REF(q5_1)
QUANT_DECLARE_REF(q8_0)
QUANT_DECLARE_REF(q8_1)
QUANT_DECLARE_REF(q2_K)
QUANT_DECLARE_REF(q3_K)
QUANT_DECLARE_REF(q4_K)
QUANT_DECLARE_REF(q5_K)
QUANT_DECLARE_REF(q6_K)
QUANT_DECLARE_REF(q8_K)

/* The float kernels of quant.c, for the tests. */
void quant_f32_vec_dot_ref(size_t n, float *s, const void *x, const void *y);
void quant_f16_vec_dot_ref(size_t n, float *s, const void *x, const void *y);
void quant_bf16_vec_dot_ref(size_t n, float *s, const void *x, const void *y);

/* ---- AVX2 + FMA + F16C (quant_avx2.c) ---------------------------------------------------- */

#define QUANT_DECLARE_DOT(t, isa)                                                                  \
    void quant_##t##_vec_dot_##isa(size_t n, float *s, const void *x, const void *y);

QUANT_DECLARE_DOT(q4_0, avx2)
QUANT_DECLARE_DOT(q4_1, avx2)
QUANT_DECLARE_DOT(q5_0, avx2)
QUANT_DECLARE_DOT(q5_1, avx2)
QUANT_DECLARE_DOT(q8_0, avx2)
QUANT_DECLARE_DOT(q2_K, avx2)
QUANT_DECLARE_DOT(q3_K, avx2)
QUANT_DECLARE_DOT(q4_K, avx2)
QUANT_DECLARE_DOT(q5_K, avx2)
QUANT_DECLARE_DOT(q6_K, avx2)
QUANT_DECLARE_DOT(f32, avx2)
QUANT_DECLARE_DOT(f16, avx2)
QUANT_DECLARE_DOT(bf16, avx2)
/* Bit-identical to the references (same arithmetic, same round-to-nearest-even). */
void quant_q8_0_from_float_avx2(const float *src, void *dst, size_t n);
void quant_q8_K_from_float_avx2(const float *src, void *dst, size_t n);

/* ---- AVX-512 (quant_avx512.c) ------------------------------------------------------------ */

/* avx512f+bw+vl+vnni */
QUANT_DECLARE_DOT(q4_0, avx512)
QUANT_DECLARE_DOT(q8_0, avx512)
QUANT_DECLARE_DOT(q4_K, avx512)
QUANT_DECLARE_DOT(q6_K, avx512)
/* avx512f+f16c */
QUANT_DECLARE_DOT(f16, avx512)
/* avx512f+bw+avx512bf16: denormals in the inputs and the products are flushed to zero */
QUANT_DECLARE_DOT(bf16, avx512)

/* ---- multi-token kernels (the tiles behind quant_gemm) ----------------------------------- */

/* s[t] = dot(x, y + t*y_stride bytes) for t < 4: one weight row against four activation rows,
 * decoding each weight block once. */
typedef void (*quant_vec_dot4_fn)(size_t n, float s[4], const void *x, const void *y,
                                  size_t y_stride);
void quant_q8_0_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y, size_t y_stride);
void quant_q4_0_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y, size_t y_stride);
void quant_q4_K_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y, size_t y_stride);
void quant_q5_K_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y, size_t y_stride);
void quant_q6_K_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y, size_t y_stride);
void quant_q8_0_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                size_t y_stride);
void quant_q4_0_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                size_t y_stride);
void quant_q4_K_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                size_t y_stride);
void quant_q6_K_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                size_t y_stride);

/* Which kernel set quant.c selected (for tests and benchmarks). */
typedef enum quant_isa { QUANT_ISA_REF, QUANT_ISA_AVX2, QUANT_ISA_AVX512 } quant_isa;

#endif
