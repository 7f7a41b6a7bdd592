/*
 * quant_pack_simd.h - the AVX-512 pieces every packed kernel uses (private to the
 * quant_pack*.c files; x86-64 only, include inside `#if defined(__x86_64__)`).
 *
 * Each function carries the VNNI target attribute, so including this header needs no
 * compiler flags; the kernels that call them are selected at run time (quant_pack.c).
 */
#ifndef LLMOS_QUANT_PACK_SIMD_H
#define LLMOS_QUANT_PACK_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "infer/pack/quant_pack.h"

#define VNNI   __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE __attribute__((always_inline)) inline

/* The 4 activation bytes at p, broadcast to all 16 lanes (one per row). */
static INLINE VNNI __m512i qpack_bcast32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Where token t's activations (qpack_act) are: its quants, block scales and block sums. */
typedef struct qpack_tok_act {
    const int8_t *q;
    const float *d, *s;
} qpack_tok_act;

static INLINE VNNI void qpack_tok_acts(qpack_tok_act *ta, size_t n_tok, size_t k, const void *act,
                                       size_t stride)
{
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * stride;
        ta[t].q = qpack_act_q(a);
        ta[t].d = qpack_act_d(a, k);
        ta[t].s = qpack_act_s(a, k);
    }
}

/* acc += dw * (d_x * isum - off * s_x): one 32-value block's contribution for one token, dw
 * the 16 rows' scales, isum their integer sums, off the format's offset times s_x. */
static INLINE VNNI __m512 qpack_block_fma(__m512 acc, __m512 dw, __m512i isum, float dx,
                                          float off_sx)
{
    __m512 v =
        _mm512_fmsub_ps(_mm512_set1_ps(dx), _mm512_cvtepi32_ps(isum), _mm512_set1_ps(off_sx));
    return _mm512_fmadd_ps(dw, v, acc);
}

/* Byte i (0..3) of every 32-bit lane of w, zero-extended to the lane, as float (vpshufb
 * indexes within 128-bit lanes: dword q of a lane takes byte 4q + i, index 0x80 writes 0). */
static INLINE VNNI __m512 qpack_byte_ps(__m512i w, int i)
{
    const __m512i pos = _mm512_set_epi32(12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0, 12, 8, 4, 0);
    __m512i idx = _mm512_add_epi32(pos, _mm512_set1_epi32((int)0x80808000u + i));
    return _mm512_cvtepi32_ps(_mm512_shuffle_epi8(w, idx));
}

/* Ask for `bytes` of weights at p (an integer address: it may lie past the matrix, a
 * prefetch never faults) ahead of use: weights stream from memory once per token. */
static INLINE VNNI void qpack_prefetch(uintptr_t p, size_t bytes)
{
#pragma GCC unroll 64
    for (size_t l = 0; l < (bytes + 63) / 64; l++)
        _mm_prefetch((const char *)(p + 64 * l), _MM_HINT_T0);
}

/* The 6-bit scales and mins of a Q4_K/Q5_K super-block for 16 rows, from the 3 x 64 bytes at
 * sc (each row's 12 GGUF scale bytes as 3 words in its lane; bit layout as
 * quant_k4_scale_words): one byte per lane each, scales 0-3, scales 4-7, mins 0-3, mins 4-7. */
typedef struct qpack_k4_scales {
    __m512i sc03, sc47, mn03, mn47;
} qpack_k4_scales;

static INLINE VNNI qpack_k4_scales qpack_k4_decode(const uint8_t *sc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi8(0x3F);
    const __m512i m2h = _mm512_set1_epi8(0x30);
    __m512i r0 = _mm512_loadu_si512(sc), r1 = _mm512_loadu_si512(sc + 64);
    __m512i r2 = _mm512_loadu_si512(sc + 128);
    qpack_k4_scales k;
    k.sc03 = _mm512_and_si512(r0, m6);
    k.mn03 = _mm512_and_si512(r1, m6);
    k.sc47 =
        _mm512_or_si512(_mm512_and_si512(r2, m4), _mm512_and_si512(_mm512_srli_epi32(r0, 2), m2h));
    k.mn47 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(r2, 4), m4),
                             _mm512_and_si512(_mm512_srli_epi32(r1, 2), m2h));
    return k;
}

/* acc[t] -= dmin * sum_j m_j * sx_t[8b + j] over the 8 sub-blocks j of super-block b. */
static INLINE VNNI void qpack_k4_mins(__m512 *acc, __m512 dmin, const qpack_k4_scales *k,
                                      const float *const *sx, size_t b, const size_t NT)
{
    __m512 ms[QPACK_TOK];
#pragma GCC unroll 8
    for (size_t t = 0; t < NT; t++)
        ms[t] = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        __m512 mf = qpack_byte_ps(j < 4 ? k->mn03 : k->mn47, j % 4);
#pragma GCC unroll 8
        for (size_t t = 0; t < NT; t++)
            ms[t] = _mm512_fmadd_ps(mf, _mm512_set1_ps(sx[t][b * 8 + (size_t)j]), ms[t]);
    }
#pragma GCC unroll 8
    for (size_t t = 0; t < NT; t++)
        acc[t] = _mm512_fnmadd_ps(dmin, ms[t], acc[t]);
}

#endif
