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

#include "infer/quant_pack.h"

#define VNNI   __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define INLINE __attribute__((always_inline)) inline

/* The 4 activation bytes at p, broadcast to all 16 lanes (one per row). */
static INLINE VNNI __m512i qpack_bcast32(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
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

#endif
