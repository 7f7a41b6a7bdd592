/*
 * quant_pack_avx512.c - AVX-512 VNNI kernels for packed (16-row interleaved) weights and the
 * activation quantizer they read. Layouts: quant_pack.c.
 *
 * Every kernel has one shape: for each 32-value block, decode the group's 16 rows once (a few
 * 64-byte vectors whose 32-bit lanes are rows), then for each token multiply them with
 * vpdpbusd against the token's 4-byte activation words broadcast to all lanes, which leaves
 * the block's 16 integer row sums in one register; scale by the 16 row scales (one vector)
 * and the token's block scale, and subtract the format's offset times the block's activation
 * sum. The token count is a compile-time constant in each instantiation (always_inline), so
 * the accumulators stay in registers.
 *
 * Each function carries its own target attribute; quant_pack.c selects them only when
 * llmos_cpu_features() reports every feature named there.
 */
#include <math.h>
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

/* loops over chunks and tokens unrolled, so the vectors stay in registers */
#define UNROLL _Pragma("GCC unroll 8")

/* Ask for the weight bytes [p, p + bytes) ahead of use. Weights stream from memory once per
 * token, and the hardware prefetcher alone leaves a core well below the memory's rate (the
 * packed Q4_K kernel measured 20 -> 29 GB/s on one core with this). A prefetch never faults;
 * past the end of a matrix it touches the next one, which is also weights. */
#define PREFETCH_AHEAD 4096
static INLINE void prefetch_bytes(const uint8_t *p, size_t bytes)
{
    UNROLL
    for (size_t l = 0; l < (bytes + 63) / 64; l++)
        _mm_prefetch((const char *)((uintptr_t)p + PREFETCH_AHEAD + 64 * l), _MM_HINT_T0);
}

/* ---- activations ------------------------------------------------------------------------- */

VNNI void qpack_act_quantize_avx512(const float *x, size_t n, void *dst)
{
    int8_t *q = dst;
    float *d = (float *)((uint8_t *)dst + n), *s = d + n / QPACK_BLOCK;
    for (size_t b = 0; b < n / QPACK_BLOCK; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * QPACK_BLOCK);
        __m512 v1 = _mm512_loadu_ps(x + b * QPACK_BLOCK + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        /* cvtps rounds to nearest even under the default MXCSR, as nearbyintf does */
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)(q + b * QPACK_BLOCK), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + b * QPACK_BLOCK + 16), _mm512_cvtsepi32_epi8(i1));
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
}

/* Per-token pointers into the activations. */
typedef struct tok_act {
    const int8_t *q;
    const float *d, *s;
} tok_act;

static INLINE void tok_acts(tok_act *ta, size_t n_tok, size_t k, const void *act, size_t stride)
{
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * stride;
        ta[t].q = qpack_act_q(a);
        ta[t].d = qpack_act_d(a, k);
        ta[t].s = qpack_act_s(a, k);
    }
}

/* ---- Q4_0 -------------------------------------------------------------------------------- */

static INLINE VNNI void q4_0x16_body(size_t k, const uint8_t *g, const tok_act *ta, const size_t NT,
                                     float out[QPACK_TOK][QPACK_ROWS])
{
    const __m512i m4 = _mm512_set1_epi8(0xF), m4h = _mm512_set1_epi8((char)0xF0);
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[QPACK_TOK];
    UNROLL
    for (size_t t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / QK4_0; b++, g += QPACK_ROWS * sizeof(block_q4_0)) {
        prefetch_bytes(g, QPACK_ROWS * sizeof(block_q4_0));
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        /* the high nibbles stay in place (16 q): their sum is shifted back once per block,
         * exactly, since it is a multiple of 16 */
        __m512i lo[4], hi[4];
        UNROLL
        for (int c = 0; c < 4; c++) {
            __m512i w = _mm512_loadu_si512(g + 32 + 64 * c);
            lo[c] = _mm512_and_si512(w, m4);
            hi[c] = _mm512_and_si512(w, m4h);
        }
        UNROLL
        for (size_t t = 0; t < NT; t++) {
            const int8_t *y = ta[t].q + b * QK4_0;
            __m512i il = zero, ih = zero;
            UNROLL
            for (int c = 0; c < 4; c++) {
                il = _mm512_dpbusd_epi32(il, lo[c], qpack_bcast32(y + 4 * c));
                ih = _mm512_dpbusd_epi32(ih, hi[c], qpack_bcast32(y + 16 + 4 * c));
            }
            __m512i isum = _mm512_add_epi32(il, _mm512_srai_epi32(ih, 4));
            acc[t] = qpack_block_fma(acc[t], dw, isum, ta[t].d[b], 8.0f * ta[t].s[b]);
        }
    }
    UNROLL
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

/* ---- Q8_0 -------------------------------------------------------------------------------- */

static INLINE VNNI void q8_0x16_body(size_t k, const uint8_t *g, const tok_act *ta, const size_t NT,
                                     float out[QPACK_TOK][QPACK_ROWS])
{
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[QPACK_TOK];
    UNROLL
    for (size_t t = 0; t < NT; t++)
        acc[t] = _mm512_setzero_ps();
    for (size_t b = 0; b < k / QK8_0; b++, g += QPACK_ROWS * sizeof(block_q8_0)) {
        prefetch_bytes(g, QPACK_ROWS * sizeof(block_q8_0));
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)g));
        __m512i w[8];
        UNROLL
        for (int c = 0; c < 8; c++)
            w[c] = _mm512_loadu_si512(g + 32 + 64 * c);
        UNROLL
        for (size_t t = 0; t < NT; t++) {
            const int8_t *y = ta[t].q + b * QK8_0;
            __m512i s0 = zero, s1 = zero;
            UNROLL
            for (int c = 0; c < 8; c += 2) {
                s0 = _mm512_dpbusd_epi32(s0, w[c], qpack_bcast32(y + 4 * c));
                s1 = _mm512_dpbusd_epi32(s1, w[c + 1], qpack_bcast32(y + 4 * c + 4));
            }
            acc[t] = qpack_block_fma(acc[t], dw, _mm512_add_epi32(s0, s1), ta[t].d[b],
                                     128.0f * ta[t].s[b]);
        }
    }
    UNROLL
    for (size_t t = 0; t < NT; t++)
        _mm512_storeu_ps(out[t], acc[t]);
}

/* ---- entry points: one instantiation per token count ------------------------------------- */

#define QPACK_ENTRY(type)                                                                          \
    VNNI void qpack_##type##x16_kernel_avx512(size_t k, const void *group, const void *act,        \
                                              size_t act_stride, size_t n_tok,                     \
                                              float out[QPACK_TOK][QPACK_ROWS])                    \
    {                                                                                              \
        tok_act ta[QPACK_TOK];                                                                     \
        tok_acts(ta, n_tok, k, act, act_stride);                                                   \
        switch (n_tok) {                                                                           \
        case 1: type##x16_body(k, group, ta, 1, out); break;                                       \
        case 2: type##x16_body(k, group, ta, 2, out); break;                                       \
        case 3: type##x16_body(k, group, ta, 3, out); break;                                       \
        default: type##x16_body(k, group, ta, 4, out); break;                                      \
        }                                                                                          \
    }

QPACK_ENTRY(q4_0)
QPACK_ENTRY(q8_0)

#endif /* __x86_64__ */
