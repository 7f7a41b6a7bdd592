/*
 * quant_pack_q4_K.c - packed (16-row interleaved) Q4_K weights: the group layout, the pack
 * function, the scalar reference kernel and the AVX-512 VNNI kernel. See quant_pack.h for why
 * rows are interleaved and for the kernel contract.
 *
 * Q4_K (ggml's block_q4_K, 144 bytes per 256 values): F16 d and dmin, 12 bytes holding eight
 * 6-bit scales sc_j and eight 6-bit mins m_j (one per 32-value sub-block j, bit layout at
 * quant_k4_scale_min), and 128 bytes of nibbles where bytes 32p..32p+31 hold sub-block 2p in
 * their low nibbles and sub-block 2p+1 in their high nibbles. value = d*sc_j*q - dmin*m_j.
 *
 * With activations x = dx_j * y per 32 values (qpack_act, sx_j = dx_j * sum y), one
 * super-block of one row contributes
 *     d * sum_j (sc_j * dx_j) * isum_j  -  dmin * sum_j m_j * sx_j,   isum_j = sum q * y,
 * integer sums exact, two float sums per super-block, and d and dmin applied once.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"

/* ---- layout and pack --------------------------------------------------------------------- */

/* Super-block b of a group (2304 bytes = 16 Q4_K blocks, the same bytes as the GGUF rows):
 *   offset    0  uint16_t d[16]            the 16 rows' d (F16)
 *   offset   32  uint16_t dmin[16]         the 16 rows' dmin (F16)
 *   offset   64  uint8_t  sc[3][16][4]     word w, row r: bytes 4w..4w+3 of that row's 12
 *                                          scale bytes, unchanged (GGUF bit layout)
 *   offset  256  uint8_t  qs[32][16][4]    chunk c, row r: bytes 4c..4c+3 of that row's qs
 * so 32-bit lane r of chunk c = 8p + i (p = 0..3, i = 0..7) holds elements 64p+4i..64p+4i+3
 * in its low nibbles (sub-block 2p) and 64p+32+4i..64p+32+4i+3 in its high nibbles (sub-block
 * 2p+1). The scale words decode for all 16 rows at once with the shifts and masks of
 * quant_k4_scale_words. Rows of zeros (d = dmin = 0) produce 0. */
#define Q4_KX16_BLOCK (QPACK_ROWS * sizeof(block_q4_K))
#define Q4_KX16_SC    64
#define Q4_KX16_QS    256

static_assert(Q4_KX16_QS + 32 * 64 == Q4_KX16_BLOCK, "Q4_K group block keeps the GGUF bytes");

void qpack_q4_Kx16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    assert(k % QK_K == 0 && n_rows >= 1 && n_rows <= QPACK_ROWS);
    size_t nb = k / QK_K;
    uint8_t *g = group;
    memset(g, 0, nb * Q4_KX16_BLOCK);
    for (size_t r = 0; r < n_rows; r++) {
        const block_q4_K *row = (const block_q4_K *)((const uint8_t *)rows + r * row_bytes);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *gb = g + b * Q4_KX16_BLOCK;
            memcpy(gb + 2 * r, &row[b].d, 2);
            memcpy(gb + 32 + 2 * r, &row[b].dmin, 2);
            for (int w = 0; w < 3; w++)
                memcpy(gb + Q4_KX16_SC + 64 * w + 4 * r, row[b].scales + 4 * w, 4);
            for (int c = 0; c < 32; c++)
                memcpy(gb + Q4_KX16_QS + 64 * c + 4 * r, row[b].qs + 4 * c, 4);
        }
    }
}

/* ---- scalar reference -------------------------------------------------------------------- */

/* Reads the packed bytes one element at a time as the layout comment says; the float sums
 * are those of the SIMD kernel up to summation order. */
void qpack_q4_Kx16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK_K == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    size_t nb = k / QK_K;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *y = qpack_act_q(a);
        const float *dx = qpack_act_d(a, k), *sx = qpack_act_s(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *gb = (const uint8_t *)group + b * Q4_KX16_BLOCK;
                uint16_t hd, hm;
                memcpy(&hd, gb + 2 * r, 2);
                memcpy(&hm, gb + 32 + 2 * r, 2);
                uint8_t scales[K_SCALE_SIZE];
                for (int w = 0; w < 3; w++)
                    memcpy(scales + 4 * w, gb + Q4_KX16_SC + 64 * w + 4 * r, 4);
                float s = 0, m_sum = 0;
                for (int j = 0; j < 8; j++) {
                    uint8_t sc, m;
                    quant_k4_scale_min(j, scales, &sc, &m);
                    int isum = 0;
                    for (int l = 0; l < 32; l++) {
                        int c = 8 * (j / 2) + l / 4;
                        uint8_t byte = gb[Q4_KX16_QS + 64 * c + 4 * r + l % 4];
                        int nib = j % 2 ? byte >> 4 : byte & 0xF;
                        isum += nib * y[b * QK_K + 32 * (size_t)j + (size_t)l];
                    }
                    size_t jb = b * 8 + (size_t)j;
                    s += (float)sc * dx[jb] * (float)isum;
                    m_sum += (float)m * sx[jb];
                }
                sum += quant_fp16_to_fp32(hd) * s - quant_fp16_to_fp32(hm) * m_sum;
            }
            out[t][r] = sum;
        }
    }
}

/* ---- AVX-512 VNNI ------------------------------------------------------------------------ */

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

/* loops over chunks, sub-blocks and tokens unrolled, so the vectors stay in registers */
#define UNROLL _Pragma("GCC unroll 8")

static INLINE VNNI void q4_Kx16_body(size_t k, const uint8_t *g, const int8_t *const *y,
                                     const float *const *dx, const float *const *sx,
                                     const size_t NT, float out[QPACK_TOK][QPACK_ROWS])
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m4h = _mm512_set1_epi8((char)0xF0);
    const __m512 sixteenth = _mm512_set1_ps(1.0f / 16);
    __m512 acc[QPACK_TOK];
    UNROLL
    for (size_t t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / QK_K; b++, g += Q4_KX16_BLOCK) {
        /* weights stream from memory once per token: ask for the super-block two ahead
         * (past the group's end, the next group). Measured for Q4_K on one core streaming
         * 150 MB: 20 -> 29 GB/s. */
        qpack_prefetch((uintptr_t)g + 2 * Q4_KX16_BLOCK, Q4_KX16_BLOCK);
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + 32)));
        qpack_k4_scales ks = qpack_k4_decode(g + Q4_KX16_SC);
        qpack_k4_mins(acc, dmin, &ks, sx, b, NT);

        /* the quants, one pair of sub-blocks (64 values, 8 chunks) at a time; the high
         * nibbles stay in place (16 q), their scale carries the 1/16 (exact) */
        __m512 s[QPACK_TOK];
        UNROLL
        for (size_t t = 0; t < NT; t++)
            s[t] = _mm512_setzero_ps();
        UNROLL
        for (int p = 0; p < 4; p++) {
            const uint8_t *qs = g + Q4_KX16_QS + 64 * 8 * p;
            __m512i lo[8], hi[8];
            UNROLL
            for (int c = 0; c < 8; c++) {
                __m512i w = _mm512_loadu_si512(qs + 64 * c);
                lo[c] = _mm512_and_si512(w, m4);
                hi[c] = _mm512_and_si512(w, m4h);
            }
            __m512 sc_lo = qpack_byte_ps(p < 2 ? ks.sc03 : ks.sc47, (2 * p) % 4);
            __m512 sc_hi =
                _mm512_mul_ps(qpack_byte_ps(p < 2 ? ks.sc03 : ks.sc47, (2 * p + 1) % 4), sixteenth);
            size_t jb = b * 8 + 2 * (size_t)p;
            UNROLL
            for (size_t t = 0; t < NT; t++) {
                const int8_t *yp = y[t] + b * QK_K + 64 * (size_t)p;
                __m512i il0 = _mm512_setzero_si512(), il1 = _mm512_setzero_si512();
                __m512i ih0 = _mm512_setzero_si512(), ih1 = _mm512_setzero_si512();
                UNROLL
                for (int c = 0; c < 8; c += 2) {
                    il0 = _mm512_dpbusd_epi32(il0, lo[c], qpack_bcast32(yp + 4 * c));
                    il1 = _mm512_dpbusd_epi32(il1, lo[c + 1], qpack_bcast32(yp + 4 * c + 4));
                    ih0 = _mm512_dpbusd_epi32(ih0, hi[c], qpack_bcast32(yp + 32 + 4 * c));
                    ih1 = _mm512_dpbusd_epi32(ih1, hi[c + 1], qpack_bcast32(yp + 36 + 4 * c));
                }
                __m512 fl = _mm512_cvtepi32_ps(_mm512_add_epi32(il0, il1));
                __m512 fh = _mm512_cvtepi32_ps(_mm512_add_epi32(ih0, ih1));
                s[t] = _mm512_fmadd_ps(fl, _mm512_mul_ps(sc_lo, _mm512_set1_ps(dx[t][jb])), s[t]);
                s[t] =
                    _mm512_fmadd_ps(fh, _mm512_mul_ps(sc_hi, _mm512_set1_ps(dx[t][jb + 1])), s[t]);
            }
        }
        UNROLL
        for (size_t t = 0; t < NT; t++)
            acc[t] = _mm512_fmadd_ps(d, s[t], acc[t]);
    }
    UNROLL
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

/* avx512f+bw+vl+vnni, f16c; quant_pack.c selects it only when llmos_cpu_features() has them all. */
VNNI void qpack_q4_Kx16_kernel_avx512(size_t k, const void *group, const void *act,
                                      size_t act_stride, size_t n_tok,
                                      float out[QPACK_TOK][QPACK_ROWS])
{
    assert(k % QK_K == 0 && n_tok >= 1 && n_tok <= QPACK_TOK);
    const int8_t *y[QPACK_TOK];
    const float *dx[QPACK_TOK], *sx[QPACK_TOK];
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        y[t] = qpack_act_q(a);
        dx[t] = qpack_act_d(a, k);
        sx[t] = qpack_act_s(a, k);
    }
    switch (n_tok) {
    case 1: q4_Kx16_body(k, group, y, dx, sx, 1, out); break;
    case 2: q4_Kx16_body(k, group, y, dx, sx, 2, out); break;
    case 3: q4_Kx16_body(k, group, y, dx, sx, 3, out); break;
    default: q4_Kx16_body(k, group, y, dx, sx, 4, out); break;
    }
}

#endif /* __x86_64__ */
