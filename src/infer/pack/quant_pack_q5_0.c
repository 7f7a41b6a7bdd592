/*
 * quant_pack_q5_0.c - Q5_0 weights packed 16 rows at a time: the layout, the pack function,
 * the scalar reference kernel and the AVX-512 VNNI kernel. See quant_pack.h for why packing
 * pays and for the activation format (qpack_act) every packed kernel reads.
 *
 * GGUF Q5_0 (ggml's block_q5_0, quant_internal.h): 32 values in 22 bytes, an F16 d, a 32-bit
 * little-endian qh whose bit j is the fifth bit of element j, and 16 bytes of nibbles (element
 * j < 16 the low nibble of qs[j], element j + 16 its high nibble); a value is d * (q - 16).
 *
 * Packed layout. Block b (32 columns) of a group of 16 rows takes 16 * 22 = 352 bytes, the
 * same bytes as the 16 GGUF blocks:
 *
 *   offset   0  uint16_t d[16]         the 16 rows' d (F16)
 *   offset  32  uint8_t  qs[4][16][4]  chunk c, row r: bytes 4c..4c+3 of that row's qs (as
 *                                      Q4_0x16: 32-bit lane r of chunk c holds the low nibbles
 *                                      of elements 4c..4c+3 and the high nibbles of 16+4c..19+4c)
 *   offset 288  uint64_t hb[4][2]      fifth bits, little-endian: bit 4r + i of hb[c][0] is the
 *                                      fifth bit of element 4c + i of row r, of hb[c][1] that of
 *                                      element 16 + 4c + i
 *
 * so each 64-bit mask lines up bit for byte with one decoded chunk vector, and the kernel adds
 * 16 to the bytes it selects (a masked byte add after a kmov from memory) to make q = 0..31.
 *
 * Arithmetic: isum = sum q * y over the block (vpdpbusd, q the unsigned operand), then in float
 * d * (dx * isum - 16 * s), with s the activation block's scaled sum (qpack_act), as Q4_0 does
 * with 8. Zero rows (past n_out) have d = 0 and produce exactly 0.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"

#define Q5X16_BLOCK  (QPACK_ROWS * sizeof(block_q5_0)) /* 352 bytes per block of 32 columns */
#define Q5X16_QS     32                                /* offset of the nibbles */
#define Q5X16_HB     (Q5X16_QS + 4 * 64)               /* offset of the fifth-bit masks: 288 */
#define Q5X16_OFFSET 16                                /* value = d * (q - 16) */

static_assert(Q5X16_HB + 8 * 8 == Q5X16_BLOCK, "Q5_0x16 block is 16 GGUF blocks");

void qpack_q5_0x16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    assert(k % QK5_0 == 0 && n_rows >= 1 && n_rows <= QPACK_ROWS);
    size_t nb = k / QK5_0;
    uint8_t *g = group;
    memset(g, 0, nb * Q5X16_BLOCK); /* missing rows: d = 0, quants 0 */
    for (size_t r = 0; r < n_rows; r++) {
        const block_q5_0 *row = (const block_q5_0 *)((const uint8_t *)rows + r * row_bytes);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *gb = g + b * Q5X16_BLOCK;
            memcpy(gb + 2 * r, &row[b].d, 2);
            uint32_t qh = (uint32_t)row[b].qh[0] | (uint32_t)row[b].qh[1] << 8 |
                          (uint32_t)row[b].qh[2] << 16 | (uint32_t)row[b].qh[3] << 24;
            for (int c = 0; c < 4; c++) {
                memcpy(gb + Q5X16_QS + 64 * c + 4 * r, row[b].qs + 4 * c, 4);
                /* mask bits 4r .. 4r+3 are the low or high nibble of mask byte r / 2 */
                uint8_t *lo = gb + Q5X16_HB + 16 * c, *hi = lo + 8;
                lo[r / 2] |= (uint8_t)(((qh >> (4 * c)) & 0xF) << (4 * (r % 2)));
                hi[r / 2] |= (uint8_t)(((qh >> (16 + 4 * c)) & 0xF) << (4 * (r % 2)));
            }
        }
    }
}

/* The quant q (0..31) of element j of row r in a packed block, read as the layout says. */
static int q5x16_get(const uint8_t *gb, int r, int j)
{
    int half = j / 16, c = (j % 16) / 4, n = 4 * r + j % 4;
    uint8_t byte = gb[Q5X16_QS + 64 * c + n];
    int nib = half ? byte >> 4 : byte & 0xF;
    int bit = (gb[Q5X16_HB + 16 * c + 8 * half + n / 8] >> (n % 8)) & 1;
    return nib | bit << 4;
}

void qpack_q5_0x16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK5_0 == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    size_t nb = k / QK5_0;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *q = qpack_act_q(a);
        const float *d = qpack_act_d(a, k), *s = qpack_act_s(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *gb = (const uint8_t *)group + b * Q5X16_BLOCK;
                uint16_t h;
                memcpy(&h, gb + 2 * r, 2);
                int isum = 0;
                for (int j = 0; j < QK5_0; j++)
                    isum += q5x16_get(gb, r, j) * q[b * QK5_0 + j];
                sum += quant_fp16_to_fp32(h) * (d[b] * (float)isum - (float)Q5X16_OFFSET * s[b]);
            }
            out[t][r] = sum;
        }
    }
}

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

static INLINE VNNI __mmask64 load_mask64(const uint8_t *p)
{
    uint64_t m;
    memcpy(&m, p, 8); /* x86 is little-endian: bit n of the stored mask is bit n here */
    return _cvtu64_mask64(m);
}

static INLINE VNNI void q5_0x16_body(size_t k, const uint8_t *g, const void *act, size_t stride,
                                     const size_t NT, float out[QPACK_TOK][QPACK_ROWS])
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m16 = _mm512_set1_epi8(0x10);
    const __m512i zero = _mm512_setzero_si512();
    const int8_t *y[QPACK_TOK];
    const float *dx[QPACK_TOK], *sx[QPACK_TOK];
    __m512 acc[QPACK_TOK];
#pragma GCC unroll 4
    for (size_t t = 0; t < NT; t++) {
        const void *a = (const uint8_t *)act + t * stride;
        y[t] = qpack_act_q(a);
        dx[t] = qpack_act_d(a, k);
        sx[t] = qpack_act_s(a, k);
        acc[t] = _mm512_setzero_ps();
    }
    for (size_t b = 0; b < k / QK5_0; b++, g += Q5X16_BLOCK) {
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i lo[4], hi[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i w = _mm512_loadu_si512(g + Q5X16_QS + 64 * c);
            lo[c] = _mm512_and_si512(w, m4);
            hi[c] = _mm512_and_si512(_mm512_srli_epi16(w, 4), m4);
            /* the fifth bit: nibble + 16 = nibble | 16 where the mask says so */
            lo[c] = _mm512_mask_add_epi8(lo[c], load_mask64(g + Q5X16_HB + 16 * c), lo[c], m16);
            hi[c] = _mm512_mask_add_epi8(hi[c], load_mask64(g + Q5X16_HB + 16 * c + 8), hi[c], m16);
        }
#pragma GCC unroll 4
        for (size_t t = 0; t < NT; t++) {
            const int8_t *yb = y[t] + b * QK5_0;
            __m512i il = zero, ih = zero; /* two chains: elements 0-15 and 16-31 */
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++) {
                il = _mm512_dpbusd_epi32(il, lo[c], qpack_bcast32(yb + 4 * c));
                ih = _mm512_dpbusd_epi32(ih, hi[c], qpack_bcast32(yb + 16 + 4 * c));
            }
            __m512i isum = _mm512_add_epi32(il, ih);
            acc[t] = qpack_block_fma(acc[t], dw, isum, dx[t][b], (float)Q5X16_OFFSET * sx[t][b]);
        }
    }
#pragma GCC unroll 4
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

VNNI void qpack_q5_0x16_kernel_avx512(size_t k, const void *group, const void *act,
                                      size_t act_stride, size_t n_tok,
                                      float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK5_0 == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    /* a constant token count per instantiation keeps the accumulators in registers */
    switch (n_tok) {
    case 1: q5_0x16_body(k, group, act, act_stride, 1, out); break;
    case 2: q5_0x16_body(k, group, act, act_stride, 2, out); break;
    case 3: q5_0x16_body(k, group, act, act_stride, 3, out); break;
    default: q5_0x16_body(k, group, act, act_stride, 4, out); break;
    }
}

#endif /* __x86_64__ */
