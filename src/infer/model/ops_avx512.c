/*
 * ops_avx512.c - AVX-512 versions of the forward pass's non-matmul inner loops: exp-based
 * activations (SwiGLU, softmax) and the two halves of attention (scores against the cached
 * keys, the probability-weighted sum of the cached values), for F32 and F16 caches.
 *
 * Once the matmuls ran from packed weights, these became a third of prompt processing: the
 * library is built for baseline x86-64, so the plain C loops compile to SSE2 and expf is a
 * libm call per element. ops.c calls these when llmos_cpu_features() reports AVX-512F (and F16C for
 * the F16 cache) and the sizes fit (head_dim a multiple of 16); the C loops stay as the
 * portable path and as the reference in tests/infer/test_ops.c.
 *
 * exp: x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2 (ln2 split in a high part exact
 * in float and a low correction, after Cody and Waite), exp(r) by its Taylor polynomial to
 * degree 7 (truncation error below 1e-8 relative on that interval), then 2^n applied with
 * vscalefps, which saturates to 0 and +inf where the true result underflows or overflows.
 * Measured against exp in double over [-103, 89]: worst relative error 7.4e-8, about one ulp
 * (tests/infer/test_ops.c requires 4e-7).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "infer/model/ops.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx2,fma,f16c,avx512f")))

static inline AVX512 __m512 exp512(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693145751953125f); /* 12 significant bits */
    const __m512 ln2_lo = _mm512_set1_ps(1.42860682030941723e-6f);
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

AVX512 void ops_exp_avx512(float *x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, exp512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

AVX512 void ops_silu_mul_avx512(float *gate, const float *up, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

AVX512 void ops_softmax_avx512(float *x, size_t n)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
    float max = _mm512_reduce_max_ps(vmax);
    for (; i < n; i++)
        max = x[i] > max ? x[i] : max;
    for (i = 0; i < n; i++)
        x[i] -= max;
    ops_exp_avx512(x, n);
    double sum = 0;
    for (i = 0; i < n; i++)
        sum += x[i];
    __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    for (; i < n; i++)
        x[i] *= (float)(1.0 / sum);
}

/* One key or value row of head_dim (a multiple of 16) elements, 16 at a time. */
static inline AVX512 __m512 load_kv(const uint8_t *p, size_t d, ggml_type type)
{
    if (type == GGML_TYPE_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + d)));
    return _mm512_loadu_ps((const float *)p + d);
}

AVX512 void ops_attn_scores_avx512(float *att, const float *q, const uint8_t *k, size_t kv_stride,
                                   ggml_type kv_type, size_t n_keys, size_t head_dim, float scale)
{
    for (size_t j = 0; j < n_keys; j++) {
        const uint8_t *kr = k + j * kv_stride;
        __m512 acc = _mm512_setzero_ps();
        for (size_t d = 0; d < head_dim; d += 16)
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), load_kv(kr, d, kv_type), acc);
        att[j] = _mm512_reduce_add_ps(acc) * scale;
    }
}

AVX512 void ops_attn_values_avx512(float *out, const float *att, const uint8_t *v, size_t kv_stride,
                                   ggml_type kv_type, size_t n_keys, size_t head_dim)
{
    for (size_t d = 0; d < head_dim; d += 16) {
        __m512 acc = _mm512_setzero_ps();
        for (size_t j = 0; j < n_keys; j++)
            acc = _mm512_fmadd_ps(_mm512_set1_ps(att[j]), load_kv(v + j * kv_stride, d, kv_type),
                                  acc);
        _mm512_storeu_ps(out + d, acc);
    }
}

#endif /* __x86_64__ */
