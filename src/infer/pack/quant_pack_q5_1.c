/*
 * quant_pack_q5_1.c - Q5_1 weights packed 16 rows at a time: the layout, the pack function,
 * the scalar reference kernel and the AVX-512 VNNI kernel. See quant_pack.h for why packing
 * pays and for the activation format (qpack_act) every packed kernel reads.
 *
 * GGUF Q5_1 (ggml's block_q5_1, quant_internal.h): 32 values in 24 bytes, an F16 d, an F16 m,
 * a 32-bit little-endian qh whose bit j is the fifth bit of element j, and 16 bytes of nibbles
 * (element j < 16 the low nibble of qs[j], element j + 16 its high nibble); a value is
 * d * q + m with q = 0..31 (ggml's dequantize_row_q5_1; quant/quant_ref.c quant_q5_1_to_float).
 *
 * Packed layout. Block b (32 columns) of a group of 16 rows takes 16 * 24 = 384 bytes, the
 * same bytes as the 16 GGUF blocks:
 *
 *   offset   0  uint16_t d[16]         the 16 rows' d (F16)
 *   offset  32  uint16_t m[16]         the 16 rows' m (F16)
 *   offset  64  uint8_t  qs[4][16][4]  chunk c, row r: bytes 4c..4c+3 of that row's qs (as
 *                                      Q4_0x16: 32-bit lane r of chunk c holds the low nibbles
 *                                      of elements 4c..4c+3 and the high nibbles of 16+4c..19+4c)
 *   offset 320  uint8_t  hb[16][4]     fifth bits, one byte per byte of a chunk: for byte
 *                                      n = 4r + i of the chunks (row r), bit 4 + c of hb[n] is
 *                                      the fifth bit of element 4c + i of row r (the low nibble
 *                                      of byte n of chunk c), and bit c of hb[4r + (i + 1) % 4]
 *                                      that of element 16 + 4c + i (its high nibble: stored in
 *                                      the next byte of the lane, cyclically); other bits 0
 *
 * The kernel decodes chunk c with no mask registers (as Q5_K does, quant_pack_q5_K.c):
 * e = (hb >> c) & 0x11 keeps bit 4 (low nibble) and bit 0 (high nibble) of every byte; the low
 * quants are (w & 0x0F) | (e & 0xF0), one ternary-logic op, and the high quants are
 * (w & 0xF0) | (e & 0x0F) rotated right by 4 in each 32-bit lane, which brings a byte's high
 * nibble down and the next byte's bit 0 up to bit 4: q = 0..31 in every byte.
 *
 * Arithmetic: with activations x = dx * y over the block (qpack_act, sx = dx * sum y),
 *     sum_j (d q_j + m) x_j = d * dx * isum + m * sx,   isum = sum q * y (vpdpbusd, exact),
 * two float multiply-adds per block and token. Zero rows (past n_out) have d = m = 0 and
 * produce exactly 0.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"

#define Q5_1X16_BLOCK (QPACK_ROWS * sizeof(block_q5_1)) /* 384 bytes per block of 32 columns */
#define Q5_1X16_M     32                                /* offset of the m's */
#define Q5_1X16_QS    64                                /* offset of the nibbles */
#define Q5_1X16_HB    (Q5_1X16_QS + 4 * 64)             /* offset of the fifth bits: 320 */

static_assert(Q5_1X16_HB + 64 == Q5_1X16_BLOCK, "Q5_1x16 block is 16 GGUF blocks");

void qpack_q5_1x16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    assert(k % QK5_1 == 0 && n_rows >= 1 && n_rows <= QPACK_ROWS);
    size_t nb = k / QK5_1;
    uint8_t *g = group;
    memset(g, 0, nb * Q5_1X16_BLOCK); /* missing rows: d = m = 0, quants 0 */
    for (size_t r = 0; r < n_rows; r++) {
        const block_q5_1 *row = (const block_q5_1 *)((const uint8_t *)rows + r * row_bytes);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *gb = g + b * Q5_1X16_BLOCK;
            memcpy(gb + 2 * r, &row[b].d, 2);
            memcpy(gb + Q5_1X16_M + 2 * r, &row[b].m, 2);
            uint32_t qh = (uint32_t)row[b].qh[0] | (uint32_t)row[b].qh[1] << 8 |
                          (uint32_t)row[b].qh[2] << 16 | (uint32_t)row[b].qh[3] << 24;
            uint8_t *hb = gb + Q5_1X16_HB + 4 * r; /* row r's lane */
            for (int c = 0; c < 4; c++) {
                memcpy(gb + Q5_1X16_QS + 64 * c + 4 * r, row[b].qs + 4 * c, 4);
                for (int i = 0; i < 4; i++) {
                    hb[i] |= (uint8_t)(((qh >> (4 * c + i)) & 1) << (4 + c));
                    hb[(i + 1) % 4] |= (uint8_t)(((qh >> (16 + 4 * c + i)) & 1) << c);
                }
            }
        }
    }
}

/* The quant q (0..31) of element j of row r in a packed block, read as the layout says. */
static int q5_1x16_get(const uint8_t *gb, int r, int j)
{
    int half = j / 16, c = (j % 16) / 4, i = j % 4;
    uint8_t byte = gb[Q5_1X16_QS + 64 * c + 4 * r + i];
    int nib = half ? byte >> 4 : byte & 0xF;
    const uint8_t *hb = gb + Q5_1X16_HB + 4 * r;
    int bit = half ? (hb[(i + 1) % 4] >> c) & 1 : (hb[i] >> (4 + c)) & 1;
    return nib | bit << 4;
}

/* Reads the packed bytes one element at a time as the layout comment says; the float sums
 * are those of the SIMD kernel up to summation order. */
void qpack_q5_1x16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK5_1 == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    size_t nb = k / QK5_1;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *y = qpack_act_q(a);
        const float *dx = qpack_act_d(a, k), *sx = qpack_act_s(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *gb = (const uint8_t *)group + b * Q5_1X16_BLOCK;
                uint16_t hd, hm;
                memcpy(&hd, gb + 2 * r, 2);
                memcpy(&hm, gb + Q5_1X16_M + 2 * r, 2);
                int isum = 0;
                for (int j = 0; j < QK5_1; j++)
                    isum += q5_1x16_get(gb, r, j) * y[b * QK5_1 + (size_t)j];
                sum +=
                    quant_fp16_to_fp32(hd) * (dx[b] * (float)isum) + quant_fp16_to_fp32(hm) * sx[b];
            }
            out[t][r] = sum;
        }
    }
}

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

/* loops over chunks and tokens unrolled, so the vectors stay in registers */
#define UNROLL _Pragma("GCC unroll 4")

static INLINE VNNI void q5_1x16_body(size_t k, const uint8_t *g, const void *act, size_t stride,
                                     const size_t NT, float out[QPACK_TOK][QPACK_ROWS])
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m11 = _mm512_set1_epi8(0x11);
    const __m512i zero = _mm512_setzero_si512();
    const int8_t *y[QPACK_TOK];
    const float *dx[QPACK_TOK], *sx[QPACK_TOK];
    __m512 acc[QPACK_TOK];
    UNROLL
    for (size_t t = 0; t < NT; t++) {
        const void *a = (const uint8_t *)act + t * stride;
        y[t] = qpack_act_q(a);
        dx[t] = qpack_act_d(a, k);
        sx[t] = qpack_act_s(a, k);
        acc[t] = _mm512_setzero_ps();
    }
    for (size_t b = 0; b < k / QK5_1; b++, g += Q5_1X16_BLOCK) {
        /* weights stream from memory once per token: ask for the bytes 4 KiB ahead (past the
         * group's end that is the next group; a prefetch never faults, and the address is
         * formed as an integer, not a pointer past the object) */
        UNROLL
        for (int l = 0; l < (int)(Q5_1X16_BLOCK / 64); l++)
            _mm_prefetch((const char *)((uintptr_t)g + 4096 + 64 * (size_t)l), _MM_HINT_T0);
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512 mw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + Q5_1X16_M)));
        /* q = 0..31 per byte as the layout comment says (ternary-logic 0xE4 = C ? A : B,
         * 0xD8 = C ? B : A, with C = 0x0F) */
        __m512i lo[4], hi[4];
        __m512i h = _mm512_loadu_si512(g + Q5_1X16_HB);
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m512i w = _mm512_loadu_si512(g + Q5_1X16_QS + 64 * c);
            __m512i e = _mm512_and_si512(_mm512_srli_epi16(h, (unsigned)c), m11);
            lo[c] = _mm512_ternarylogic_epi32(w, e, m4, 0xE4);
            hi[c] = _mm512_ror_epi32(_mm512_ternarylogic_epi32(w, e, m4, 0xD8), 4);
        }
        UNROLL
        for (size_t t = 0; t < NT; t++) {
            const int8_t *yb = y[t] + b * QK5_1;
            __m512i il = zero, ih = zero; /* two chains: elements 0-15 and 16-31 */
            UNROLL
            for (int c = 0; c < 4; c++) {
                il = _mm512_dpbusd_epi32(il, lo[c], qpack_bcast32(yb + 4 * c));
                ih = _mm512_dpbusd_epi32(ih, hi[c], qpack_bcast32(yb + 16 + 4 * c));
            }
            __m512 v = _mm512_mul_ps(_mm512_set1_ps(dx[t][b]),
                                     _mm512_cvtepi32_ps(_mm512_add_epi32(il, ih)));
            acc[t] = _mm512_fmadd_ps(dw, v, acc[t]);
            acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx[t][b]), acc[t]);
        }
    }
    UNROLL
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

/* avx512f+bw+vl+vnni, f16c; quant_pack.c selects it only when llmos_cpu_features() has them all. */
VNNI void qpack_q5_1x16_kernel_avx512(size_t k, const void *group, const void *act,
                                      size_t act_stride, size_t n_tok,
                                      float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK5_1 == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    /* a constant token count per instantiation keeps the accumulators in registers */
    switch (n_tok) {
    case 1: q5_1x16_body(k, group, act, act_stride, 1, out); break;
    case 2: q5_1x16_body(k, group, act, act_stride, 2, out); break;
    case 3: q5_1x16_body(k, group, act, act_stride, 3, out); break;
    default: q5_1x16_body(k, group, act, act_stride, 4, out); break;
    }
}

#endif /* __x86_64__ */
