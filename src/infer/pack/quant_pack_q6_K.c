/*
 * quant_pack_q6_K.c - Q6_K weights packed 16 rows at a time: the layout, the pack function,
 * the scalar reference kernel and the AVX-512 VNNI kernel. See quant_pack.h for why packing
 * pays and for the activation format (qpack_act) every packed kernel reads.
 *
 * GGUF Q6_K (ggml's block_q6_K, quant_internal.h): 256 values in 210 bytes, 16 sub-blocks of
 * 16 values, each with an int8 scale, one F16 d per block; a value is d * scale_j * (q - 32)
 * with q a 6-bit unsigned quant (low 4 bits in ql, high 2 bits in qh; q6k_unpack below).
 *
 * Packed layout. One super-block (256 columns) of a group of 16 rows takes 16 * 210 = 3360
 * bytes, the same bytes as the 16 GGUF blocks:
 *
 *   offset    0  uint16_t d[16]            the 16 rows' d (F16): one 32-byte load, cvtph
 *   offset   32  int8_t   sc[16][16]       sc[j][r] = scale of sub-block j of row r: 16 bytes
 *                                          sign-extend to one vector of the 16 rows' scale j
 *   offset  288  uint8_t  q[16][3][16][4]  sub-block j, vector v (A, B, C), row r, byte i
 *
 * Sub-block j of a row covers elements 16j .. 16j+15 and is split into four chunks of four:
 * chunk c holds elements 16j + 4c + i, i = 0..3. A chunk of all 16 rows is one 64-byte vector
 * whose 32-bit lane r is row r, which is what vpdpbusd against a broadcast 4-byte activation
 * word wants. Four chunks of 6-bit quants (4 * 6 bits per byte position) are stored in three
 * vectors A, B, C (3 * 8 bits): the low 6 bits of A, B, C are chunks 0, 1, 2, and their top two
 * bits hold chunk 3, two bits each:
 *
 *   A = q0 | (q3 & 3) << 6        chunk 0 = A & 0x3F
 *   B = q1 | (q3 >> 2 & 3) << 6   chunk 1 = B & 0x3F
 *   C = q2 | (q3 >> 4) << 6       chunk 2 = C & 0x3F
 *   chunk 3 = ((((A & 0xC0) >> 2 | (B & 0xC0)) >> 2) | (C & 0xC0)) >> 2
 *
 * so decoding a sub-block of 16 rows takes nine simple operations for four vectors (the shifts
 * may be 16-bit: the masked bits never cross into the neighbouring byte).
 *
 * Arithmetic (exact in integers up to the last float steps). For one 32-value activation block
 * b (the two sub-blocks j = 2b, 2b+1) and one token with int8 quants y, scale dx[b]:
 *
 *   isum = sc[2b] * (S[2b] - 32 Y[2b]) + sc[2b+1] * (S[2b+1] - 32 Y[2b+1])
 *
 * with S[j] = sum q * y over sub-block j (vpdpbusd: q is the unsigned operand, 0..63) and Y[j]
 * the sum of the token's 16 y of sub-block j: the -32 offset of Q6_K needs each half's own
 * scale, so the activation sums are taken per 16, not from qpack_act's per-32 sum. The kernels
 * compute -32 Y[j] once per token and super-block and start each vpdpbusd chain from it. Bounds:
 * |S - 32 Y| <= 16 * 32 * 127 and |sc| <= 128, so isum fits int32 easily. Then in float
 *
 *   out[r] = sum over super-blocks of d[r] * (sum over its 8 blocks b of dx[b] * isum[b])
 *
 * in that order in both kernels (the SIMD one with fused multiply-adds).
 *
 * Zero rows (past n_out) have d = 0 and scales 0, so they produce exactly 0.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"

#define Q6X16_SB     (QPACK_ROWS * sizeof(block_q6_K)) /* 3360 bytes per super-block */
#define Q6X16_SC     32                                /* offset of sc[16][16] */
#define Q6X16_Q      (Q6X16_SC + 16 * QPACK_ROWS)      /* offset of the quants: 288 */
#define Q6X16_SUB    (3 * 64)                          /* bytes of one sub-block's A, B, C */
#define Q6X16_OFFSET 32                                /* value = d * sc * (q - 32) */

static_assert(Q6X16_Q + 16 * Q6X16_SUB == Q6X16_SB, "Q6_Kx16 super-block is 16 GGUF blocks");

/* The 256 6-bit quants q (0..63) of a GGUF Q6_K block. ggml's dequantize_row_q6_K: element
 * e = 128h + 32k + l (k < 4, l < 32) has as low 4 bits nibble k / 2 of ql[64h + 32(k % 2) + l]
 * and as high 2 bits bits 2k, 2k+1 of qh[32h + l]. */
static void q6k_unpack(const block_q6_K *b, uint8_t q[QK_K])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int lo = (b->ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
                int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
                q[128 * h + 32 * k + l] = (uint8_t)(lo | hi << 4);
            }
}

void qpack_q6_Kx16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    assert(k % QK_K == 0 && n_rows >= 1 && n_rows <= QPACK_ROWS);
    size_t nsb = k / QK_K;
    uint8_t *g = group;
    memset(g, 0, nsb * Q6X16_SB); /* missing rows: d = 0, scales 0, quants 0 */
    for (size_t r = 0; r < n_rows; r++) {
        const block_q6_K *row = (const block_q6_K *)((const uint8_t *)rows + r * row_bytes);
        for (size_t s = 0; s < nsb; s++) {
            const block_q6_K *blk = &row[s];
            uint8_t *gs = g + s * Q6X16_SB, q[QK_K];
            q6k_unpack(blk, q);
            memcpy(gs + 2 * r, &blk->d, 2);
            for (int j = 0; j < 16; j++) {
                const uint8_t *qj = q + 16 * j; /* chunk c of sub-block j: qj[4c .. 4c+3] */
                gs[Q6X16_SC + 16 * j + r] = (uint8_t)blk->scales[j];
                uint8_t *sub = gs + Q6X16_Q + Q6X16_SUB * j + 4 * r;
                for (int i = 0; i < 4; i++) {
                    int q3 = qj[12 + i];
                    sub[i] = (uint8_t)(qj[i] | (q3 & 3) << 6);
                    sub[64 + i] = (uint8_t)(qj[4 + i] | (q3 >> 2 & 3) << 6);
                    sub[128 + i] = (uint8_t)(qj[8 + i] | (q3 >> 4) << 6);
                }
            }
        }
    }
}

/* The quant of element e (0..255) of row r in a packed super-block, read as the layout says. */
static int q6x16_get(const uint8_t *gs, int r, int e)
{
    int j = e / 16, c = (e % 16) / 4, i = e % 4;
    const uint8_t *sub = gs + Q6X16_Q + Q6X16_SUB * j + 4 * r + i;
    if (c < 3)
        return sub[64 * c] & 0x3F;
    return (sub[0] >> 6) | (sub[64] >> 6) << 2 | (sub[128] >> 6) << 4;
}

void qpack_q6_Kx16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK_K == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    size_t nsb = k / QK_K;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *y = qpack_act_q(a);
        const float *dx = qpack_act_d(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t s = 0; s < nsb; s++) {
                const uint8_t *gs = (const uint8_t *)group + s * Q6X16_SB;
                const int8_t *ys = y + s * QK_K;
                uint16_t h;
                memcpy(&h, gs + 2 * r, 2);
                float sb = 0;
                for (int b = 0; b < QK_K / QPACK_BLOCK; b++) {
                    int isum = 0;
                    for (int j = 2 * b; j < 2 * b + 2; j++) {
                        int sq = 0, sy = 0;
                        for (int e = 16 * j; e < 16 * j + 16; e++) {
                            sq += q6x16_get(gs, r, e) * ys[e];
                            sy += ys[e];
                        }
                        isum += (int8_t)gs[Q6X16_SC + 16 * j + r] * (sq - Q6X16_OFFSET * sy);
                    }
                    sb += dx[s * (QK_K / QPACK_BLOCK) + b] * (float)isum;
                }
                sum += quant_fp16_to_fp32(h) * sb;
            }
            out[t][r] = sum;
        }
    }
}

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

/* -32 times the sum of each 16 of the 256 int8 values at y, in the order
 * neg[4 * (j % 4) + j / 4] for sub-block j (the order the two unpack steps leave them in). */
static INLINE VNNI void q6x16_neg_sums(const int8_t *y, int32_t neg[16])
{
    const __m512i m32 = _mm512_set1_epi8(Q6X16_OFFSET), zero = _mm512_setzero_si512();
    __m512i v[4];
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) /* lane l of v[p]: 32 * (y[64p + 4l] + ... + y[64p + 4l + 3]) */
        v[p] = _mm512_dpbusd_epi32(zero, m32, _mm512_loadu_si512(y + 64 * p));
    /* in each 128-bit lane L: a01 = v0[0]+v0[2], v1[0]+v1[2], v0[1]+v0[3], v1[1]+v1[3] */
    __m512i a01 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
    __m512i a23 =
        _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
    /* lane 4L + p: the four dwords of 128-bit lane L of v[p] summed = sub-block 4p + L */
    __m512i s = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
    _mm512_storeu_si512(neg, _mm512_sub_epi32(zero, s));
}

/* The four chunks of quants (bytes 0..63) of one sub-block from its vectors A, B, C. */
static INLINE VNNI void q6x16_decode(const uint8_t *sub, __m512i w[4])
{
    const __m512i m3f = _mm512_set1_epi8(0x3F), mc0 = _mm512_set1_epi8((char)0xC0);
    __m512i a = _mm512_loadu_si512(sub), b = _mm512_loadu_si512(sub + 64);
    __m512i c = _mm512_loadu_si512(sub + 128);
    w[0] = _mm512_and_si512(a, m3f);
    w[1] = _mm512_and_si512(b, m3f);
    w[2] = _mm512_and_si512(c, m3f);
    /* 0xF8 = A | (B & C) */
    __m512i t = _mm512_srli_epi16(_mm512_and_si512(a, mc0), 2);
    t = _mm512_srli_epi16(_mm512_ternarylogic_epi32(t, b, mc0, 0xF8), 2);
    w[3] = _mm512_srli_epi16(_mm512_ternarylogic_epi32(t, c, mc0, 0xF8), 2);
}

static INLINE VNNI void q6_Kx16_body(size_t k, const uint8_t *g, const void *act, size_t stride,
                                     const size_t NT, float out[QPACK_TOK][QPACK_ROWS])
{
    const int8_t *y[QPACK_TOK];
    const float *dx[QPACK_TOK];
#pragma GCC unroll 4
    for (size_t t = 0; t < NT; t++) {
        const void *a = (const uint8_t *)act + t * stride;
        y[t] = qpack_act_q(a);
        dx[t] = qpack_act_d(a, k);
    }
    __m512 acc[QPACK_TOK];
#pragma GCC unroll 4
    for (size_t t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    for (size_t s = 0; s < k / QK_K; s++, g += Q6X16_SB) {
        int32_t neg[QPACK_TOK][16];
        __m512 sb[QPACK_TOK];
#pragma GCC unroll 4
        for (size_t t = 0; t < NT; t++) {
            q6x16_neg_sums(y[t] + s * QK_K, neg[t]);
            sb[t] = _mm512_setzero_ps();
        }
        for (int b = 0; b < QK_K / QPACK_BLOCK; b++) {
            int j0 = 2 * b, j1 = 2 * b + 1;
            __m512i w0[4], w1[4];
            q6x16_decode(g + Q6X16_Q + Q6X16_SUB * j0, w0);
            q6x16_decode(g + Q6X16_Q + Q6X16_SUB * j1, w1);
            __m512i sc0 =
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(g + Q6X16_SC + 16 * j0)));
            __m512i sc1 =
                _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(g + Q6X16_SC + 16 * j1)));
#pragma GCC unroll 4
            for (size_t t = 0; t < NT; t++) {
                const int8_t *yb = y[t] + s * QK_K + QPACK_BLOCK * b;
                __m512i s0 = _mm512_set1_epi32(neg[t][4 * (j0 % 4) + j0 / 4]);
                __m512i s1 = _mm512_set1_epi32(neg[t][4 * (j1 % 4) + j1 / 4]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    s0 = _mm512_dpbusd_epi32(s0, w0[c], qpack_bcast32(yb + 4 * c));
                    s1 = _mm512_dpbusd_epi32(s1, w1[c], qpack_bcast32(yb + 16 + 4 * c));
                }
                __m512i isum =
                    _mm512_add_epi32(_mm512_mullo_epi32(s0, sc0), _mm512_mullo_epi32(s1, sc1));
                sb[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum),
                                        _mm512_set1_ps(dx[t][s * (QK_K / QPACK_BLOCK) + b]), sb[t]);
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
#pragma GCC unroll 4
        for (size_t t = 0; t < NT; t++)
            acc[t] = _mm512_fmadd_ps(dw, sb[t], acc[t]);
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

VNNI void qpack_q6_Kx16_kernel_avx512(size_t k, const void *group, const void *act,
                                      size_t act_stride, size_t n_tok,
                                      float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK_K == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    /* a constant token count per instantiation keeps the accumulators in registers */
    switch (n_tok) {
    case 1: q6_Kx16_body(k, group, act, act_stride, 1, out); break;
    case 2: q6_Kx16_body(k, group, act, act_stride, 2, out); break;
    case 3: q6_Kx16_body(k, group, act, act_stride, 3, out); break;
    default: q6_Kx16_body(k, group, act, act_stride, 4, out); break;
    }
}

#endif /* __x86_64__ */
