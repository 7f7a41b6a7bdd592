/*
 * quant_avx512.c - AVX-512 kernels for the most used types: Q4_0, Q8_0, Q4_K and Q6_K with
 * VNNI (vpdpbusd: 64 unsigned x signed byte products summed four at a time into 16 int32
 * lanes in one instruction), F16 with 16-wide conversions, BF16 with AVX512-BF16 (vdpbf16ps).
 *
 * Each function carries its own target attribute; quant.c calls them only when
 * llmos_cpu_features() reports every feature named there. As in quant_avx2.c, integer sums are
 * exact and scaled per (sub-)block in float, so results differ from the scalar reference only
 * by float summation order.
 *
 * VNNI multiplies unsigned by signed bytes, so:
 *   - Q4_0 uses the nibbles q (0..15) as they are: sum (q-8) y = sum q y - sum 8 y;
 *   - Q8_0 uses |x| against y with x's sign (AVX-512 has no vpsignb: a masked subtract);
 *   - Q6_K uses q (0..63): sum (q-32) y = sum q y - sum 32 y; Q4_K nibbles need nothing.
 *
 * vdpbf16ps (BF16): products of two bf16 are exact in float, but the instruction flushes
 * denormal inputs and results to zero and rounds to nearest even regardless of MXCSR (Intel
 * SDM, VDPBF16PS). So the result matches the reference to float summation order except where
 * values below 2^-126 contribute; activations reach this kernel already rounded to bf16 (BF16
 * weights pair with BF16 activations), so no further rounding of the inputs takes place.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define VNNI       __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define AVX512F16  __attribute__((target("avx2,fma,f16c,avx512f")))
#define AVX512BF16 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512bf16")))

static inline VNNI __m512i load2x256(const void *lo, const void *hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* 16 floats: lanes 0-7 = a, lanes 8-15 = b (one scale per 32-element block). */
static inline VNNI __m512 halves_ps(float a, float b)
{
    return _mm512_mask_blend_ps((__mmask16)0xFF00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}

/* The nibbles of two consecutive Q4_0 blocks in element order (block i in the low 256 bits):
 * split both 16-byte quant arrays into low and high nibbles at once, then put each block's
 * low-nibble lane before its high-nibble lane. */
static inline VNNI __m512i nibbles64_512(const uint8_t *qs0, const uint8_t *qs1)
{
    __m256i q =
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qs0)),
                                _mm_loadu_si128((const __m128i *)qs1), 1);
    __m512i z = _mm512_broadcast_i64x4(q);
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xFFFF0000u, z, 4);
    z = _mm512_and_si512(z, _mm512_set1_epi8(0xF));             /* 128-bit lanes: lo0 lo1 hi0 hi1 */
    return _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)); /* lo0 hi0 lo1 hi1 */
}

static inline VNNI float h2f512(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* Two Q4_0 blocks against two Q8_0 blocks: 16 int32 lanes of sum (q-8) y, 8 per block, scaled
 * by each block's d_x d_y and added to acc. */
static inline VNNI __m512 q4_0_pair(const block_q4_0 *a, const block_q8_0 *b, __m512 acc)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i u = nibbles64_512(a[0].qs, a[1].qs);
    __m512i yv = load2x256(b[0].qs, b[1].qs);
    __m512i dot = _mm512_dpbusd_epi32(zero, u, yv);
    __m512i off = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(8), yv);
    __m512 p = _mm512_cvtepi32_ps(_mm512_sub_epi32(dot, off));
    __m512 d = halves_ps(h2f512(a[0].d) * h2f512(b[0].d), h2f512(a[1].d) * h2f512(b[1].d));
    return _mm512_fmadd_ps(d, p, acc);
}

/* Two Q8_0 blocks: |x| * (y with the sign of x). */
static inline VNNI __m512 q8_0_pair(const block_q8_0 *a, const block_q8_0 *b, __m512 acc)
{
    const __m512i zero = _mm512_setzero_si512();
    __m512i xv = load2x256(a[0].qs, a[1].qs);
    __m512i yv = load2x256(b[0].qs, b[1].qs);
    __m512i sy = _mm512_mask_sub_epi8(yv, _mm512_movepi8_mask(xv), zero, yv);
    __m512i dot = _mm512_dpbusd_epi32(zero, _mm512_abs_epi8(xv), sy);
    __m512 d = halves_ps(h2f512(a[0].d) * h2f512(b[0].d), h2f512(a[1].d) * h2f512(b[1].d));
    return _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc);
}

VNNI void quant_q4_0_vec_dot_avx512(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK4_0 == 0);
    const block_q4_0 *a = x;
    const block_q8_0 *b = y;
    size_t nb = n / QK4_0, i = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; i + 4 <= nb; i += 4) {
        acc0 = q4_0_pair(a + i, b + i, acc0);
        acc1 = q4_0_pair(a + i + 2, b + i + 2, acc1);
    }
    for (; i + 2 <= nb; i += 2)
        acc0 = q4_0_pair(a + i, b + i, acc0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        float rest;
        quant_q4_0_vec_dot_avx2((nb - i) * QK4_0, &rest, a + i, b + i);
        sum += rest;
    }
    *s = sum;
}

VNNI void quant_q8_0_vec_dot_avx512(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK8_0 == 0);
    const block_q8_0 *a = x, *b = y;
    size_t nb = n / QK8_0, i = 0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; i + 4 <= nb; i += 4) {
        acc0 = q8_0_pair(a + i, b + i, acc0);
        acc1 = q8_0_pair(a + i + 2, b + i + 2, acc1);
    }
    for (; i + 2 <= nb; i += 2)
        acc0 = q8_0_pair(a + i, b + i, acc0);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    if (i < nb) {
        float rest;
        quant_q8_0_vec_dot_avx2((nb - i) * QK8_0, &rest, a + i, b + i);
        sum += rest;
    }
    *s = sum;
}

VNNI void quant_q4_K_vec_dot_avx512(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q4_K *a = x;
    const block_q8_K *b = y;
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0xF), zero = _mm512_setzero_si512();
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t w[4];
        uint8_t sc[8];
        quant_k4_scale_words(a[i].scales, w);
        memcpy(sc, w, 8);
        /* min terms: m_j (bsums[2j] + bsums[2j+1]) in 8 int32 lanes */
        __m256i m32 =
            _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)((uint64_t)w[3] << 32 | w[2])));
        __m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b[i].bsums),
                                         _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16)));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f512(a[i].dmin)), _mm256_cvtepi32_ps(mins),
                               accm);
        __m512i sumi = zero;
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            /* low nibbles of qs[32c..32c+32) are sub-block 2c, high nibbles sub-block 2c+1:
             * put both copies side by side and shift the upper one */
            __m512i q =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c)));
            q = _mm512_mask_srli_epi16(q, (__mmask32)0xFFFF0000u, q, 4);
            __m512i u = _mm512_and_si512(q, m4);
            __m512i dot = _mm512_dpbusd_epi32(zero, u, _mm512_loadu_si512(b[i].qs + 64 * c));
            __m512i scv = _mm512_mask_blend_epi32((__mmask16)0xFF00, _mm512_set1_epi32(sc[2 * c]),
                                                  _mm512_set1_epi32(sc[2 * c + 1]));
            sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dot, scv));
        }
        acc =
            _mm512_fmadd_ps(_mm512_set1_ps(b[i].d * h2f512(a[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    __m256 m8 = _mm256_add_ps(accm, _mm256_permute2f128_ps(accm, accm, 1));
    m8 = _mm256_hadd_ps(m8, m8);
    m8 = _mm256_hadd_ps(m8, m8);
    *s = _mm512_reduce_add_ps(acc) - _mm256_cvtss_f32(m8);
}

VNNI void quant_q6_K_vec_dot_avx512(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q6_K *a = x;
    const block_q8_K *b = y;
    __m512 acc = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0xF), m3 = _mm512_set1_epi8(3), m32 = _mm512_set1_epi8(32);
    const __m512i zero = _mm512_setzero_si512();
    /* lane l of the dpbusd result covers elements 4l..4l+3 of a 64-element vector, i.e.
     * sub-block l/4 of its four */
    const __m512i rep4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (size_t i = 0; i < n / QK_K; i++) {
        __m512i sc32 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)a[i].scales));
        __m512i sumi = zero;
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* ql[64h..64h+64): low nibbles are elements 0-63 of this half, high 64-127 */
            __m512i ql = _mm512_loadu_si512(a[i].ql + 64 * h);
            __m512i qh =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h)));
            /* elements 32k + l take bits 2k..2k+1 of qh[l]: shift the upper copy 2 further */
            __m512i qh01 = _mm512_mask_srli_epi16(qh, (__mmask32)0xFFFF0000u, qh, 2);
            __m512i qh23 = _mm512_srli_epi16(qh01, 4);
            __m512i u[2];
            u[0] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                   _mm512_slli_epi16(_mm512_and_si512(qh01, m3), 4));
            u[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                   _mm512_slli_epi16(_mm512_and_si512(qh23, m3), 4));
#pragma GCC unroll 2
            for (int v = 0; v < 2; v++) {
                __m512i yv = _mm512_loadu_si512(b[i].qs + 128 * h + 64 * v);
                __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u[v], yv),
                                               _mm512_dpbusd_epi32(zero, m32, yv));
                int first = 8 * h + 4 * v; /* first sub-block of these 64 elements */
                __m512i scv = _mm512_permutexvar_epi32(
                    _mm512_add_epi32(rep4, _mm512_set1_epi32(first)), sc32);
                sumi = _mm512_add_epi32(sumi, _mm512_mullo_epi32(dot, scv));
            }
        }
        acc =
            _mm512_fmadd_ps(_mm512_set1_ps(b[i].d * h2f512(a[i].d)), _mm512_cvtepi32_ps(sumi), acc);
    }
    *s = _mm512_reduce_add_ps(acc);
}

AVX512F16 void quant_f16_vec_dot_avx512(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i))),
                               _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + i))), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 16))),
                               _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + i + 16))),
                               acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++)
        sum += quant_fp16_to_fp32(a[i]) * quant_fp16_to_fp32(b[i]);
    *s = sum;
}

AVX512BF16 void quant_bf16_vec_dot_avx512(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(a + i),
                                (__m512bh)_mm512_loadu_si512(b + i));
        acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512(a + i + 32),
                                (__m512bh)_mm512_loadu_si512(b + i + 32));
    }
    for (; i + 32 <= n; i += 32)
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(a + i),
                                (__m512bh)_mm512_loadu_si512(b + i));
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++)
        sum += quant_bf16_to_fp32(a[i]) * quant_bf16_to_fp32(b[i]);
    *s = sum;
}

/* ---- four tokens at a time (quant_gemm) -------------------------------------------------- */

/* As the vec_dots above, with each weight block decoded once and used for four activation
 * rows (y + t * y_stride bytes). */
#define ROWS4(type, y, stride, b)                                                                  \
    const type *b[4];                                                                              \
    for (int t_ = 0; t_ < 4; t_++)                                                                 \
    b[t_] = (const type *)((const uint8_t *)(y) + (size_t)t_ * (stride))

VNNI void quant_q8_0_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                     size_t y_stride)
{
    assert(n % QK8_0 == 0);
    const block_q8_0 *a = x;
    ROWS4(block_q8_0, y, y_stride, b);
    size_t nb = n / QK8_0, i = 0;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (; i + 2 <= nb; i += 2) {
        __m512i xv = load2x256(a[i].qs, a[i + 1].qs);
        __m512i ax = _mm512_abs_epi8(xv);
        __mmask64 neg = _mm512_movepi8_mask(xv);
        float d0 = h2f512(a[i].d), d1 = h2f512(a[i + 1].d);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m512i yv = load2x256(b[t][i].qs, b[t][i + 1].qs);
            __m512i dot = _mm512_dpbusd_epi32(zero, ax, _mm512_mask_sub_epi8(yv, neg, zero, yv));
            __m512 d = halves_ps(d0 * h2f512(b[t][i].d), d1 * h2f512(b[t][i + 1].d));
            acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        s[t] = _mm512_reduce_add_ps(acc[t]);
        if (i < nb) {
            float rest;
            quant_q8_0_vec_dot_avx2(QK8_0, &rest, a + i, b[t] + i);
            s[t] += rest;
        }
    }
}

VNNI void quant_q4_0_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                     size_t y_stride)
{
    assert(n % QK4_0 == 0);
    const block_q4_0 *a = x;
    ROWS4(block_q8_0, y, y_stride, b);
    size_t nb = n / QK4_0, i = 0;
    const __m512i zero = _mm512_setzero_si512(), eight = _mm512_set1_epi8(8);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (; i + 2 <= nb; i += 2) {
        __m512i u = nibbles64_512(a[i].qs, a[i + 1].qs);
        float d0 = h2f512(a[i].d), d1 = h2f512(a[i + 1].d);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m512i yv = load2x256(b[t][i].qs, b[t][i + 1].qs);
            __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u, yv),
                                           _mm512_dpbusd_epi32(zero, eight, yv));
            __m512 d = halves_ps(d0 * h2f512(b[t][i].d), d1 * h2f512(b[t][i + 1].d));
            acc[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(dot), acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
        s[t] = _mm512_reduce_add_ps(acc[t]);
        if (i < nb) {
            float rest;
            quant_q4_0_vec_dot_avx2(QK4_0, &rest, a + i, b[t] + i);
            s[t] += rest;
        }
    }
}

static inline VNNI float hsum256_ps(__m256 v)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

VNNI void quant_q4_K_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                     size_t y_stride)
{
    assert(n % QK_K == 0);
    const block_q4_K *a = x;
    ROWS4(block_q8_K, y, y_stride, b);
    const __m512i m4 = _mm512_set1_epi8(0xF), zero = _mm512_setzero_si512();
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t w[4];
        uint8_t sc[8];
        quant_k4_scale_words(a[i].scales, w);
        memcpy(sc, w, 8);
        __m256i m32 =
            _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)((uint64_t)w[3] << 32 | w[2])));
        __m256i mpair = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));
        __m512i sumi[4] = {zero, zero, zero, zero};
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i q =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * c)));
            q = _mm512_mask_srli_epi16(q, (__mmask32)0xFFFF0000u, q, 4);
            __m512i u = _mm512_and_si512(q, m4);
            __m512i scv = _mm512_mask_blend_epi32((__mmask16)0xFF00, _mm512_set1_epi32(sc[2 * c]),
                                                  _mm512_set1_epi32(sc[2 * c + 1]));
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                __m512i dot = _mm512_dpbusd_epi32(zero, u, _mm512_loadu_si512(b[t][i].qs + 64 * c));
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(dot, scv));
            }
        }
        float dx = h2f512(a[i].d), mx = h2f512(a[i].dmin);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(b[t][i].d * dx), _mm512_cvtepi32_ps(sumi[t]),
                                     acc[t]);
            __m256i mins =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)b[t][i].bsums), mpair);
            accm[t] =
                _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * mx), _mm256_cvtepi32_ps(mins), accm[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = _mm512_reduce_add_ps(acc[t]) - hsum256_ps(accm[t]);
}

VNNI void quant_q6_K_vec_dot4_avx512(size_t n, float s[4], const void *x, const void *y,
                                     size_t y_stride)
{
    assert(n % QK_K == 0);
    const block_q6_K *a = x;
    ROWS4(block_q8_K, y, y_stride, b);
    const __m512i m4 = _mm512_set1_epi8(0xF), m3 = _mm512_set1_epi8(3), m32 = _mm512_set1_epi8(32);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i rep4 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (size_t i = 0; i < n / QK_K; i++) {
        __m512i sc32 = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)a[i].scales));
        __m512i sumi[4] = {zero, zero, zero, zero};
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i ql = _mm512_loadu_si512(a[i].ql + 64 * h);
            __m512i qh =
                _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(a[i].qh + 32 * h)));
            __m512i qh01 = _mm512_mask_srli_epi16(qh, (__mmask32)0xFFFF0000u, qh, 2);
            __m512i qh23 = _mm512_srli_epi16(qh01, 4);
            __m512i u[2];
            u[0] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                   _mm512_slli_epi16(_mm512_and_si512(qh01, m3), 4));
            u[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                   _mm512_slli_epi16(_mm512_and_si512(qh23, m3), 4));
#pragma GCC unroll 2
            for (int v = 0; v < 2; v++) {
                __m512i scv = _mm512_permutexvar_epi32(
                    _mm512_add_epi32(rep4, _mm512_set1_epi32(8 * h + 4 * v)), sc32);
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) {
                    __m512i yv = _mm512_loadu_si512(b[t][i].qs + 128 * h + 64 * v);
                    __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u[v], yv),
                                                   _mm512_dpbusd_epi32(zero, m32, yv));
                    sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(dot, scv));
                }
            }
        }
        float dx = h2f512(a[i].d);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(b[t][i].d * dx), _mm512_cvtepi32_ps(sumi[t]),
                                     acc[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = _mm512_reduce_add_ps(acc[t]);
}

#endif /* __x86_64__ */
