/*
 * quant_pack_q8_0.c - Q8_0 weights packed 16 rows at a time: the layout, the pack function,
 * the scalar reference kernel and the AVX-512 VNNI kernel. See quant_pack.h for why packing
 * pays and for the activation format (qpack_act) every packed kernel reads.
 *
 * GGUF Q8_0 (ggml's block_q8_0, quant_internal.h): 32 values in 34 bytes, an F16 d and 32
 * signed bytes q; a value is d * q.
 *
 * Packed layout. Block b (32 columns) of a group of 16 rows takes 16 * 34 = 544 bytes, the
 * same bytes as the 16 GGUF blocks:
 *
 *   offset   0  uint16_t d[16]         the 16 rows' d (F16)
 *   offset  32  uint8_t  qs[8][16][4]  chunk c, row r: bytes 4c..4c+3 of that row's qs, each
 *                                      XOR 0x80
 *
 * The XOR stores q + 128 as an unsigned byte (what vpdpbusd multiplies), so
 * sum q y = sum (q + 128) y - 128 sum y.
 *
 * Arithmetic: isum = sum (q + 128) * y over the block, then in float d * (dx * isum - 128 * s),
 * with s the activation block's scaled sum (qpack_act). Zero rows (past n_out) have d = 0 and
 * their bytes read as q = 0 (stored as 0x80), so they produce exactly 0.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"

#define Q8_0X16_BLOCK  (QPACK_ROWS * sizeof(block_q8_0)) /* 544 bytes per block of 32 columns */
#define Q8_0X16_QS     32                                /* offset of the quants */
#define Q8_0X16_OFFSET 128                               /* stored byte = q + 128 */

static_assert(Q8_0X16_QS + 8 * 64 == Q8_0X16_BLOCK, "Q8_0x16 block is 16 GGUF blocks");

void qpack_q8_0x16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    assert(k % QK8_0 == 0 && n_rows >= 1 && n_rows <= QPACK_ROWS);
    size_t nb = k / QK8_0;
    uint8_t *g = group;
    memset(g, 0, nb * Q8_0X16_BLOCK);
    for (size_t b = 0; b < nb; b++) /* zero rows must read as q = 0, stored as 0x80 */
        memset(g + b * Q8_0X16_BLOCK + Q8_0X16_QS, 0x80, Q8_0X16_BLOCK - Q8_0X16_QS);
    for (size_t r = 0; r < n_rows; r++) {
        const block_q8_0 *row = (const block_q8_0 *)((const uint8_t *)rows + r * row_bytes);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *gb = g + b * Q8_0X16_BLOCK;
            memcpy(gb + 2 * r, &row[b].d, 2);
            for (int c = 0; c < 8; c++) { /* 4 bytes at a time, each XOR 0x80 */
                uint32_t w;
                memcpy(&w, row[b].qs + 4 * c, 4);
                w ^= 0x80808080u;
                memcpy(gb + Q8_0X16_QS + 64 * c + 4 * r, &w, 4);
            }
        }
    }
}

void qpack_q8_0x16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK8_0 == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    size_t nb = k / QK8_0;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *q = qpack_act_q(a);
        const float *d = qpack_act_d(a, k), *s = qpack_act_s(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *gb = (const uint8_t *)group + b * Q8_0X16_BLOCK;
                uint16_t h;
                memcpy(&h, gb + 2 * r, 2);
                int isum = 0;
                for (int j = 0; j < QK8_0; j++)
                    isum += gb[Q8_0X16_QS + 64 * (j / 4) + 4 * r + j % 4] * q[b * QK8_0 + j];
                sum += quant_fp16_to_fp32(h) * (d[b] * (float)isum - (float)Q8_0X16_OFFSET * s[b]);
            }
            out[t][r] = sum;
        }
    }
}

/* ---- AVX-512 VNNI ------------------------------------------------------------------------ */

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

/* loops over chunks and tokens unrolled, so the vectors stay in registers */
#define UNROLL _Pragma("GCC unroll 8")

static INLINE VNNI void q8_0x16_body(size_t k, const uint8_t *g, const qpack_tok_act *ta,
                                     const size_t NT, float out[QPACK_TOK][QPACK_ROWS])
{
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[QPACK_TOK];
    UNROLL
    for (size_t t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / QK8_0; b++, g += Q8_0X16_BLOCK) {
        /* weights stream from memory once per token: ask for the bytes 4 KiB ahead (past the
         * group's end, the next group) */
        qpack_prefetch((uintptr_t)g + 4096, Q8_0X16_BLOCK);
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i w[8];
        UNROLL
        for (int c = 0; c < 8; c++)
            w[c] = _mm512_loadu_si512(g + Q8_0X16_QS + 64 * c);
        UNROLL
        for (size_t t = 0; t < NT; t++) {
            const int8_t *y = ta[t].q + b * QK8_0;
            __m512i s0 = zero, s1 = zero; /* two chains */
            UNROLL
            for (int c = 0; c < 8; c += 2) {
                s0 = _mm512_dpbusd_epi32(s0, w[c], qpack_bcast32(y + 4 * c));
                s1 = _mm512_dpbusd_epi32(s1, w[c + 1], qpack_bcast32(y + 4 * c + 4));
            }
            acc[t] = qpack_block_fma(acc[t], dw, _mm512_add_epi32(s0, s1), ta[t].d[b],
                                     (float)Q8_0X16_OFFSET * ta[t].s[b]);
        }
    }
    UNROLL
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

/* avx512f+bw+vl+vnni, f16c; quant_pack.c selects it only when llmos_cpu_features() has them all. */
VNNI void qpack_q8_0x16_kernel_avx512(size_t k, const void *group, const void *act,
                                      size_t act_stride, size_t n_tok,
                                      float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK8_0 == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    qpack_tok_act ta[QPACK_TOK];
    qpack_tok_acts(ta, n_tok, k, act, act_stride);
    /* a constant token count per instantiation keeps the accumulators in registers */
    switch (n_tok) {
    case 1: q8_0x16_body(k, group, ta, 1, out); break;
    case 2: q8_0x16_body(k, group, ta, 2, out); break;
    case 3: q8_0x16_body(k, group, ta, 3, out); break;
    default: q8_0x16_body(k, group, ta, 4, out); break;
    }
}

#endif /* __x86_64__ */
