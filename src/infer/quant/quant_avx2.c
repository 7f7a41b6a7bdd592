/*
 * quant_avx2.c - AVX2 + FMA (+ F16C) kernels: vec_dot for every block type, the F16/BF16
 * dots, the activation quantizers for Q8_0 and Q8_K, and the four-token dots behind
 * quant_gemm.
 *
 * Every function carries its own target attribute (no per-file flags); quant.c calls them
 * only when llmos_cpu_features() reports AVX2, FMA and F16C. Each computes what its scalar
 * reference in quant_ref.c computes: integer products summed exactly per (sub-)block, then
 * scaled in float, so results differ from the reference only in the order of float additions.
 * The quantizers perform the reference's float operations one for one and produce the same
 * bytes.
 *
 * Integer tricks used throughout:
 *   - _mm256_maddubs_epi16(u, s) multiplies unsigned by signed bytes and adds pairs into
 *     int16. With u <= 63 and |s| <= 127 the pair sums stay below 2^15.
 *   - signed x signed: |x| * (y with x's sign), via _mm256_sign_epi8. Exact as long as y is
 *     never -128, which holds for activations from our quantizers (|q| <= 127).
 *   - _mm256_madd_epi16(p, scales) multiplies int16 pair sums by int16 sub-block scales and
 *     adds pairs into int32.
 */
#include <string.h>

#include "infer/quant/quant_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

/* ---- helpers ----------------------------------------------------------------------------- */

static inline AVX2 float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline AVX2 int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

static inline AVX2 float hmax_ps(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline AVX2 float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* 8 int32 sums of 4 products each: unsigned bytes u times signed bytes s. */
static inline AVX2 __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* 8 int32 sums of 4 products each: signed x signed bytes (y never -128). */
static inline AVX2 __m256i dot_s8s8(__m256i x, __m256i y)
{
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* The 32 nibbles of a legacy block in element order: low nibbles of qs[0..16) are elements
 * 0..15, high nibbles elements 16..31. */
static inline AVX2 __m256i nibbles32(const uint8_t *qs)
{
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m128i m4 = _mm_set1_epi8(0xF);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* Byte j = 0x10 where bit j of the little-endian word at qh is set, else 0 (the fifth bits of
 * Q5_0/Q5_1). */
static inline AVX2 __m256i fifth_bits32(const uint8_t *qh)
{
    uint32_t bits;
    memcpy(&bits, qh, 4);
    __m256i v = _mm256_set1_epi32((int)bits);
    /* byte j takes byte j/8 of the word (shuffles stay within 128-bit lanes; each lane holds
     * the whole word) */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    v = _mm256_shuffle_epi8(v, spread);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* From 16 int16 sub-block scales (one per lane), the pair for sub-blocks g and g+1 (g even)
 * as scale_pair makes it: both are in dword g/2; spread it, then split its halves. */
static inline AVX2 __m256i scale_pair16(__m256i sc16, int g)
{
    const __m256i split = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2,
                                           3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
    __m256i t = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(g / 2));
    return _mm256_shuffle_epi8(t, split);
}

static inline AVX2 __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* ---- legacy 32-blocks ----------------------------------------------------------------------- */

/* One block's term, added to acc: d_x d_y * (integer dot of the block). The loops below keep
 * four accumulators so that the FMA latency chain does not bound the speed. */
static inline AVX2 __m256 q4_0_term(const block_q4_0 *a, const block_q8_0 *b, __m256 acc)
{
    __m256i qx = _mm256_sub_epi8(nibbles32(a->qs), _mm256_set1_epi8(8));
    __m256 p = _mm256_cvtepi32_ps(dot_s8s8(qx, load256(b->qs)));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * h2f(b->d)), p, acc);
}

static inline AVX2 __m256 q4_1_term(const block_q4_1 *a, const block_q8_1 *b, __m256 acc)
{
    __m256 p = _mm256_cvtepi32_ps(dot_u8s8(nibbles32(a->qs), load256(b->qs)));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * h2f(b->d)), p, acc);
}

static inline AVX2 __m256 q5_0_term(const block_q5_0 *a, const block_q8_0 *b, __m256 acc)
{
    __m256i qx = _mm256_or_si256(nibbles32(a->qs), fifth_bits32(a->qh));
    qx = _mm256_sub_epi8(qx, _mm256_set1_epi8(16));
    __m256 p = _mm256_cvtepi32_ps(dot_s8s8(qx, load256(b->qs)));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * h2f(b->d)), p, acc);
}

static inline AVX2 __m256 q5_1_term(const block_q5_1 *a, const block_q8_1 *b, __m256 acc)
{
    __m256i qx = _mm256_or_si256(nibbles32(a->qs), fifth_bits32(a->qh));
    __m256 p = _mm256_cvtepi32_ps(dot_u8s8(qx, load256(b->qs)));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * h2f(b->d)), p, acc);
}

static inline AVX2 __m256 q8_0_term(const block_q8_0 *a, const block_q8_0 *b, __m256 acc)
{
    __m256 p = _mm256_cvtepi32_ps(dot_s8s8(load256(a->qs), load256(b->qs)));
    return _mm256_fmadd_ps(_mm256_set1_ps(h2f(a->d) * h2f(b->d)), p, acc);
}

/* The loop shared by the 32-block dots: four accumulators, then the remaining blocks. */
#define DOT32_LOOP(term, a, b, nb, result)                                                         \
    do {                                                                                           \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                             \
        __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();                             \
        size_t i_ = 0;                                                                             \
        for (; i_ + 4 <= (nb); i_ += 4) {                                                          \
            acc0 = term(&(a)[i_], &(b)[i_], acc0);                                                 \
            acc1 = term(&(a)[i_ + 1], &(b)[i_ + 1], acc1);                                         \
            acc2 = term(&(a)[i_ + 2], &(b)[i_ + 2], acc2);                                         \
            acc3 = term(&(a)[i_ + 3], &(b)[i_ + 3], acc3);                                         \
        }                                                                                          \
        for (; i_ < (nb); i_++)                                                                    \
            acc0 = term(&(a)[i_], &(b)[i_], acc0);                                                 \
        (result) = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));   \
    } while (0)

AVX2 void quant_q4_0_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK4_0 == 0);
    const block_q4_0 *a = x;
    const block_q8_0 *b = y;
    DOT32_LOOP(q4_0_term, a, b, n / QK4_0, *s);
}

/* The min term m_x * s_y is summed separately in float. */
AVX2 void quant_q4_1_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK4_1 == 0);
    const block_q4_1 *a = x;
    const block_q8_1 *b = y;
    float sum, summ = 0;
    DOT32_LOOP(q4_1_term, a, b, n / QK4_1, sum);
    for (size_t i = 0; i < n / QK4_1; i++)
        summ += h2f(a[i].m) * h2f(b[i].s);
    *s = sum + summ;
}

AVX2 void quant_q5_0_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK5_0 == 0);
    const block_q5_0 *a = x;
    const block_q8_0 *b = y;
    DOT32_LOOP(q5_0_term, a, b, n / QK5_0, *s);
}

AVX2 void quant_q5_1_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK5_1 == 0);
    const block_q5_1 *a = x;
    const block_q8_1 *b = y;
    float sum, summ = 0;
    DOT32_LOOP(q5_1_term, a, b, n / QK5_1, sum);
    for (size_t i = 0; i < n / QK5_1; i++)
        summ += h2f(a[i].m) * h2f(b[i].s);
    *s = sum + summ;
}

AVX2 void quant_q8_0_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK8_0 == 0);
    const block_q8_0 *a = x, *b = y;
    DOT32_LOOP(q8_0_term, a, b, n / QK8_0, *s);
}

/* ---- K-quants ---------------------------------------------------------------------------- */

/* The sub-block offsets of Q3_K (q - 4) and Q6_K (q - 32) are taken out once per block with
 * the activation sums: sum_g sc_g sum (q - c) y = sum_g sc_g sum q y - c sum_g sc_g bsums_g. */
static inline AVX2 __m256i bsums_times(const block_q8_K *b, __m256i sc16)
{
    return _mm256_madd_epi16(load256(b->bsums), sc16);
}

AVX2 void quant_q2_K_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q2_K *a = x;
    const block_q8_K *b = y;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    for (size_t i = 0; i < n / QK_K; i++) {
        __m128i raw = _mm_loadu_si128((const __m128i *)a[i].scales);
        __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
        __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = load256(a[i].qs + 32 * h);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                __m256i p = _mm256_maddubs_epi16(u, load256(b[i].qs + 128 * h + 32 * j));
                sumi =
                    _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair16(sc16, 8 * h + 2 * j)));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].dmin)),
                               _mm256_cvtepi32_ps(bsums_times(&b[i], mn16)), accm);
    }
    *s = hsum_ps(_mm256_sub_ps(acc, accm));
}

AVX2 void quant_q3_K_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q3_K *a = x;
    const block_q8_K *b = y;
    __m256 acc = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t v[4];
        quant_q3k_scale_words(a[i].scales, v);
        __m128i sc8 = _mm_sub_epi8(_mm_setr_epi32((int)v[0], (int)v[1], (int)v[2], (int)v[3]),
                                   _mm_set1_epi8(32));
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
        __m256i hm = load256(a[i].hmask);
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = load256(a[i].qs + 32 * h);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                /* 3-bit value + 4 = low two bits | third bit << 2, in 0..7 */
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * j), m3);
                __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * h + j), one);
                __m256i u = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
                __m256i p = _mm256_maddubs_epi16(u, load256(b[i].qs + 128 * h + 32 * j));
                sumi =
                    _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair16(sc16, 8 * h + 2 * j)));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(bsums_times(&b[i], sc16), 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* sum_j m_j (bsums[2j] + bsums[2j+1]) of a Q4_K/Q5_K block as 8 int32 lanes: each lane pairs
 * two 16-element sums with the same 6-bit min. w: quant_k4_scale_words. */
static inline AVX2 __m256i k4_mins_dot(const uint32_t w[4], const block_q8_K *b)
{
    __m128i m8 = _mm_cvtsi64_si128((long long)((uint64_t)w[3] << 32 | w[2]));
    __m256i m32 = _mm256_cvtepu8_epi32(m8);
    return _mm256_madd_epi16(load256(b->bsums), _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16)));
}

/* The integer part of a Q4_K block against a Q8_K block: sum_s sc_s * sum(q * y). */
static inline AVX2 __m256i q4k_block_sumi(const block_q4_K *a, const int8_t *yq, const uint8_t *sc)
{
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i q = load256(a->qs + 32 * c);
        __m256i lo = _mm256_and_si256(q, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(yq + 64 * c)),
                                       _mm256_set1_epi16(sc[2 * c]));
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(yq + 64 * c + 32)),
                                       _mm256_set1_epi16(sc[2 * c + 1]));
        sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
    }
    return sumi;
}

AVX2 void quant_q4_K_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q4_K *a = x;
    const block_q8_K *b = y;
    __m256 acc = _mm256_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t w[4];
        uint8_t sc[8];
        quant_k4_scale_words(a[i].scales, w);
        memcpy(sc, w, 8);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].dmin)),
                               _mm256_cvtepi32_ps(k4_mins_dot(w, &b[i])), accm);
        __m256i sumi = q4k_block_sumi(&a[i], b[i].qs, sc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(_mm256_sub_ps(acc, accm));
}

AVX2 void quant_q5_K_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q5_K *a = x;
    const block_q8_K *b = y;
    __m256 acc = _mm256_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t w[4];
        uint8_t sc[8];
        quant_k4_scale_words(a[i].scales, w);
        memcpy(sc, w, 8);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].dmin)),
                               _mm256_cvtepi32_ps(k4_mins_dot(w, &b[i])), accm);
        __m256i qh = load256(a[i].qh);
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q = load256(a[i].qs + 32 * c);
            /* fifth bit of sub-block 2c is bit 2c of qh[l], of sub-block 2c+1 bit 2c+1 */
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            __m256i h1 =
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(b[i].qs + 64 * c)),
                                           _mm256_set1_epi16(sc[2 * c]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(b[i].qs + 64 * c + 32)),
                                           _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(_mm256_sub_ps(acc, accm));
}

/* The four 32-element vectors of 6-bit quants (0..63, not yet minus 32) of half h of a Q6_K
 * block: q[k] holds elements 128h + 32k .. 128h + 32k + 31. */
static inline AVX2 void q6k_unpack(const block_q6_K *a, int h, __m256i q[4])
{
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256i ql0 = load256(a->ql + 64 * h), ql1 = load256(a->ql + 64 * h + 32);
    __m256i qh = load256(a->qh + 32 * h);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i lo = _mm256_and_si256(
            k < 2 ? (k == 0 ? ql0 : ql1) : _mm256_srli_epi16(k == 2 ? ql0 : ql1, 4), m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), m3);
        q[k] = _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
    }
}

AVX2 void quant_q6_K_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q6_K *a = x;
    const block_q8_K *b = y;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6k_unpack(&a[i], h, q);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i p = _mm256_maddubs_epi16(q[k], load256(b[i].qs + 128 * h + 32 * k));
                sumi =
                    _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale_pair16(sc16, 8 * h + 2 * k)));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(bsums_times(&b[i], sc16), 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- F32, F16 and BF16 ------------------------------------------------------------------------
 */

/* Float sums in 32 lanes instead of the reference's double: the difference is float
 * summation error, relative 1e-6 or so at the lengths of model rows. */
AVX2 void quant_f32_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    const float *a = x, *b = y;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(b + i + 8 * k),
                                     acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
    float sum =
        hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++)
        sum += a[i] * b[i];
    *s = sum;
}

/* Products of two halves are exact in float (11-bit significands); only the summation order
 * differs from the reference (which sums in double). */
AVX2 void quant_f16_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256 va = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8 * k)));
            __m256 vb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8 * k)));
            acc[k] = _mm256_fmadd_ps(va, vb, acc[k]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 va = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 vb = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
        acc[0] = _mm256_fmadd_ps(va, vb, acc[0]);
    }
    float sum =
        hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++)
        sum += quant_fp16_to_fp32(a[i]) * quant_fp16_to_fp32(b[i]);
    *s = sum;
}

static inline AVX2 __m256 bf16x8(const uint16_t *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* bf16 products are exact in float (8-bit significands). */
AVX2 void quant_bf16_vec_dot_avx2(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            acc[k] = _mm256_fmadd_ps(bf16x8(a + i + 8 * k), bf16x8(b + i + 8 * k), acc[k]);
    for (; i + 8 <= n; i += 8)
        acc[0] = _mm256_fmadd_ps(bf16x8(a + i), bf16x8(b + i), acc[0]);
    float sum =
        hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++)
        sum += quant_bf16_to_fp32(a[i]) * quant_bf16_to_fp32(b[i]);
    *s = sum;
}

/* ---- activation quantizers --------------------------------------------------------------- */

/* Round 32 floats (already scaled) to nearest even and pack them to int8 in order. Values must
 * lie in [-128, 127]. i32 receives the four int32 vectors (for the Q8_K sums). */
static inline AVX2 void pack32(const __m256 v[4], int8_t *out, __m256i i32[4])
{
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        i32[k] = _mm256_cvtps_epi32(
            _mm256_round_ps(v[k], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    /* packs work within 128-bit lanes; the permute puts the 4-byte groups back in order */
    __m256i p =
        _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)out, p);
}

AVX2 void quant_q8_0_from_float_avx2(const float *src, void *dst, size_t n)
{
    assert(n % QK8_0 == 0);
    block_q8_0 *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        __m256 v[4], vmax = _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(src + 8 * k);
            vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, v[k]));
        }
        float amax = hmax_ps(vmax);
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0;
        b[i].d = quant_fp32_to_fp16(d);
        __m256 mul = _mm256_set1_ps(id);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            v[k] = _mm256_mul_ps(v[k], mul);
        __m256i i32[4];
        pack32(v, b[i].qs, i32);
    }
}

AVX2 void quant_q8_K_from_float_avx2(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q8_K *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        __m256 vmax = _mm256_setzero_ps();
        for (int k = 0; k < QK_K; k += 8)
            vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(src + k)));
        float amax = hmax_ps(vmax);
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        /* the first element of largest magnitude gives the sign, as in the reference */
        float max = 0;
        __m256 vam = _mm256_set1_ps(amax);
        for (int k = 0; k < QK_K; k += 8) {
            __m256 ax = _mm256_andnot_ps(sign, _mm256_loadu_ps(src + k));
            int mask = _mm256_movemask_ps(_mm256_cmp_ps(ax, vam, _CMP_EQ_OQ));
            if (mask) {
                max = src[k + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 mul = _mm256_set1_ps(iscale), top = _mm256_set1_ps(127.0f);
        for (int k = 0; k < QK_K; k += 32) {
            __m256 v[4];
            for (int q = 0; q < 4; q++)
                v[q] = _mm256_min_ps(_mm256_mul_ps(_mm256_loadu_ps(src + k + 8 * q), mul), top);
            __m256i i32[4];
            pack32(v, b[i].qs + k, i32);
            b[i].bsums[k / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(i32[0], i32[1]));
            b[i].bsums[k / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(i32[2], i32[3]));
        }
        b[i].d = 1 / iscale;
    }
}

/* ---- four tokens at a time (quant_gemm) -------------------------------------------------- */

AVX2 void quant_q8_0_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y,
                                   size_t y_stride)
{
    assert(n % QK8_0 == 0);
    const block_q8_0 *a = x;
    const block_q8_0 *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        b[t] = (const block_q8_0 *)((const uint8_t *)y + (size_t)t * y_stride);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (size_t i = 0; i < n / QK8_0; i++) {
        __m256i qx = load256(a[i].qs);
        __m256i ax = _mm256_sign_epi8(qx, qx);
        float dx = h2f(a[i].d);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i sy = _mm256_sign_epi8(load256(b[t][i].qs), qx);
            __m256 p = _mm256_cvtepi32_ps(dot_u8s8(ax, sy));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(b[t][i].d)), p, acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = hsum_ps(acc[t]);
}

AVX2 void quant_q4_0_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y,
                                   size_t y_stride)
{
    assert(n % QK4_0 == 0);
    const block_q4_0 *a = x;
    const block_q8_0 *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        b[t] = (const block_q8_0 *)((const uint8_t *)y + (size_t)t * y_stride);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const __m256i off = _mm256_set1_epi8(8);
    for (size_t i = 0; i < n / QK4_0; i++) {
        __m256i qx = _mm256_sub_epi8(nibbles32(a[i].qs), off);
        __m256i ax = _mm256_sign_epi8(qx, qx);
        float dx = h2f(a[i].d);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            __m256i sy = _mm256_sign_epi8(load256(b[t][i].qs), qx);
            __m256 p = _mm256_cvtepi32_ps(dot_u8s8(ax, sy));
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dx * h2f(b[t][i].d)), p, acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = hsum_ps(acc[t]);
}

AVX2 void quant_q4_K_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y,
                                   size_t y_stride)
{
    assert(n % QK_K == 0);
    const block_q4_K *a = x;
    const block_q8_K *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        b[t] = (const block_q8_K *)((const uint8_t *)y + (size_t)t * y_stride);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    const __m256i m4 = _mm256_set1_epi8(0xF);
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t w[4];
        uint8_t sc[8];
        quant_k4_scale_words(a[i].scales, w);
        memcpy(sc, w, 8);
        __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256()};
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q = load256(a[i].qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            __m256i s0 = _mm256_set1_epi16(sc[2 * c]);
            __m256i s1 = _mm256_set1_epi16(sc[2 * c + 1]);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                __m256i p0 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(b[t][i].qs + 64 * c)), s0);
                __m256i p1 = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, load256(b[t][i].qs + 64 * c + 32)), s1);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
            }
        }
        float dx = h2f(a[i].d), mx = h2f(a[i].dmin);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]),
                                     acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * mx),
                                      _mm256_cvtepi32_ps(k4_mins_dot(w, b[t] + i)), accm[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = hsum_ps(_mm256_sub_ps(acc[t], accm[t]));
}

AVX2 void quant_q5_K_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y,
                                   size_t y_stride)
{
    assert(n % QK_K == 0);
    const block_q5_K *a = x;
    const block_q8_K *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        b[t] = (const block_q8_K *)((const uint8_t *)y + (size_t)t * y_stride);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    const __m256i m4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    for (size_t i = 0; i < n / QK_K; i++) {
        uint32_t w[4];
        uint8_t sc[8];
        quant_k4_scale_words(a[i].scales, w);
        memcpy(sc, w, 8);
        __m256i qh = load256(a[i].qh);
        __m256i sumi[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256()};
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i q = load256(a[i].qs + 32 * c);
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one), 4);
            __m256i h1 =
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one), 4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h1);
            __m256i s0 = _mm256_set1_epi16(sc[2 * c]);
            __m256i s1 = _mm256_set1_epi16(sc[2 * c + 1]);
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                __m256i p0 =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(b[t][i].qs + 64 * c)), s0);
                __m256i p1 = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, load256(b[t][i].qs + 64 * c + 32)), s1);
                sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
            }
        }
        float dx = h2f(a[i].d), mx = h2f(a[i].dmin);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) {
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]),
                                     acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * mx),
                                      _mm256_cvtepi32_ps(k4_mins_dot(w, b[t] + i)), accm[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = hsum_ps(_mm256_sub_ps(acc[t], accm[t]));
}

AVX2 void quant_q6_K_vec_dot4_avx2(size_t n, float s[4], const void *x, const void *y,
                                   size_t y_stride)
{
    assert(n % QK_K == 0);
    const block_q6_K *a = x;
    const block_q8_K *b[4];
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        b[t] = (const block_q8_K *)((const uint8_t *)y + (size_t)t * y_stride);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (size_t i = 0; i < n / QK_K; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a[i].scales));
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(bsums_times(b[t] + i, sc16), 5));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            q6k_unpack(&a[i], h, q);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i scv = scale_pair16(sc16, 8 * h + 2 * k);
#pragma GCC unroll 4
                for (int t = 0; t < 4; t++) {
                    __m256i p = _mm256_maddubs_epi16(q[k], load256(b[t][i].qs + 128 * h + 32 * k));
                    sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, scv));
                }
            }
        }
        float dx = h2f(a[i].d);
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++)
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(b[t][i].d * dx), _mm256_cvtepi32_ps(sumi[t]),
                                     acc[t]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++)
        s[t] = hsum_ps(acc[t]);
}

#endif /* __x86_64__ */
