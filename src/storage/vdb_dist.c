/*
 * vdb_dist.c - distance kernels for the vector index: squared L2 and dot product over float
 * vectors, as a portable scalar reference and AVX2+FMA and AVX-512 versions chosen at run
 * time from llmos_cpu_features(). Tests hold each SIMD version against the scalar one.
 *
 * Summation order differs between versions (several accumulators, tree reduction), so results
 * agree to rounding, not bit for bit.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "storage/vdb_dist.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VDB_X86 1
#endif

/* ---- scalar reference -------------------------------------------------------------------- */

static float l2sq_scalar(const float *a, const float *b, size_t n)
{
    float s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (size_t j = 0; j < 4; j++) {
            float d = a[i + j] - b[i + j];
            s[j] += d * d;
        }
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s[0] += d * d;
    }
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static float dot_scalar(const float *a, const float *b, size_t n)
{
    float s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (size_t j = 0; j < 4; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < n; i++)
        s[0] += a[i] * b[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

#ifdef VDB_X86

/* ---- AVX2 + FMA: 8 lanes, two accumulators, scalar tail ------------------------------------ */

__attribute__((target("avx2,fma"))) static float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma"))) static float l2sq_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        s1 = _mm256_fmadd_ps(d1, d1, s1);
    }
    if (i + 8 <= n) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
        s0 = _mm256_fmadd_ps(d0, d0, s0);
        i += 8;
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) {
        float d = a[i] - b[i];
        s += d * d;
    }
    return s;
}

__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= n) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        i += 8;
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ---- AVX-512: 16 lanes, two accumulators, masked tail ------------------------------------ */

__attribute__((target("avx512f"))) static float l2sq_avx512(const float *a, const float *b,
                                                            size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        s1 = _mm512_fmadd_ps(d1, d1, s1);
    }
    if (i + 16 <= n) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
        s0 = _mm512_fmadd_ps(d0, d0, s0);
        i += 16;
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 d0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i));
        s1 = _mm512_fmadd_ps(d0, d0, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    if (i + 16 <= n) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        i += 16;
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

#endif /* VDB_X86 */

/* ---- selection --------------------------------------------------------------------------- */

bool vdb_simd_available(vdb_simd simd)
{
    const llmos_cpu *cpu = llmos_cpu_features();
    switch (simd) {
    case VDB_SIMD_SCALAR: return true;
#ifdef VDB_X86
    case VDB_SIMD_AVX2: return cpu->avx2 && cpu->fma;
    case VDB_SIMD_AVX512: return cpu->avx512f;
#endif
    default: (void)cpu; return false;
    }
}

vdb_simd vdb_simd_best(void)
{
    vdb_simd cap = VDB_SIMD_AVX512;
    const char *env = getenv("LLMOS_VDB_SIMD");
    if (env && strcmp(env, "scalar") == 0)
        cap = VDB_SIMD_SCALAR;
    else if (env && strcmp(env, "avx2") == 0)
        cap = VDB_SIMD_AVX2;
    for (int s = (int)cap; s > 0; s--)
        if (vdb_simd_available((vdb_simd)s))
            return (vdb_simd)s;
    return VDB_SIMD_SCALAR;
}

vdb_kernels vdb_kernels_for(vdb_simd simd)
{
    vdb_kernels k = {l2sq_scalar, dot_scalar};
    if (!vdb_simd_available(simd))
        return k;
#ifdef VDB_X86
    if (simd == VDB_SIMD_AVX2)
        k = (vdb_kernels){l2sq_avx2, dot_avx2};
    else if (simd == VDB_SIMD_AVX512)
        k = (vdb_kernels){l2sq_avx512, dot_avx512};
#endif
    return k;
}

float vdb_l2sq_with(vdb_simd simd, const float *a, const float *b, size_t n)
{
    assert(vdb_simd_available(simd) && (n == 0 || (a && b)));
    return vdb_kernels_for(simd).l2sq(a, b, n);
}

float vdb_dot_with(vdb_simd simd, const float *a, const float *b, size_t n)
{
    assert(vdb_simd_available(simd) && (n == 0 || (a && b)));
    return vdb_kernels_for(simd).dot(a, b, n);
}
