/*
 * ops_arch.c - the element-wise ops that only some architectures use (ops.h has their
 * contracts): scaling, soft-capping, GELU and GeGLU, LayerNorm, rotary embedding with given
 * frequencies. Plain loops: they touch activations once, next to matmuls that read every
 * weight, so they are not where the time goes.
 */
#include <assert.h>
#include <math.h>

#include "infer/model/ops.h"

void ops_scale(float *x, float s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
}

void ops_softcap(float *x, float cap, size_t n)
{
    assert(cap > 0);
    float inv = 1.0f / cap;
    for (size_t i = 0; i < n; i++)
        x[i] = cap * tanhf(x[i] * inv);
}

/* x[i] = exp(x[i]) for a chunk: the AVX-512 loop where there is one. */
static void exp_chunk(float *x, size_t n)
{
    if (ops_simd_avx512()) {
        ops_exp_avx512(x, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        x[i] = expf(x[i]);
}

enum { GELU_CHUNK = 256 };

void ops_gelu_mul(float *gate, const float *up, size_t n)
{
    /* GELU, tanh approximation (Hendrycks & Gimpel 2016):
     *   0.5 g (1 + tanh(u)), u = sqrt(2/pi) (g + 0.044715 g^3),
     * and 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), so gelu(g) = g / (1 + exp(-2u)): one
     * exponential, which runs vectorised (tanhf does not, and took as long as the matmuls
     * beside it in Gemma's prompt processing). For very negative g, exp overflows to
     * infinity and the result is 0, as it should be. */
    const float k2 = 2.0f * 0.7978845608028654f;
    float e[GELU_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        float *g = gate + i0;
        for (size_t j = 0; j < m; j++)
            e[j] = -k2 * (g[j] + 0.044715f * g[j] * g[j] * g[j]);
        exp_chunk(e, m);
        for (size_t j = 0; j < m; j++)
            g[j] = g[j] * up[i0 + j] / (1.0f + e[j]);
    }
}

void ops_gelu(float *x, size_t n)
{
    /* the exact form BERT's reference uses, 0.5 x (1 + erf(x / sqrt 2)), with erf from
     * Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7, under float rounding of the
     * activations): erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0,
     * odd in z; the exponential runs vectorised */
    const float p = 0.3275911f, a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f,
                a4 = -1.453152027f, a5 = 1.061405429f;
    float e[GELU_CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += GELU_CHUNK) {
        size_t m = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;
        float *v = x + i0;
        for (size_t j = 0; j < m; j++) {
            float z = v[j] * 0.70710678118654752f;
            e[j] = -z * z;
        }
        exp_chunk(e, m);
        for (size_t j = 0; j < m; j++) {
            float z = fabsf(v[j]) * 0.70710678118654752f;
            float t = 1.0f / (1.0f + p * z);
            float erf_abs = 1.0f - t * (a1 + t * (a2 + t * (a3 + t * (a4 + t * a5)))) * e[j];
            float erf_z = copysignf(erf_abs, v[j]);
            v[j] = 0.5f * v[j] * (1.0f + erf_z);
        }
    }
}

void ops_layernorm(float *y, const float *x, const float *weight, const float *bias, size_t n,
                   size_t n_tok, float eps)
{
    /* LayerNorm (Ba et al. 2016), mean and variance in double */
    for (size_t t = 0; t < n_tok; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        double mean = 0, var = 0;
        for (size_t i = 0; i < n; i++)
            mean += xr[i];
        mean /= (double)n;
        for (size_t i = 0; i < n; i++)
            var += ((double)xr[i] - mean) * ((double)xr[i] - mean);
        float inv = (float)(1.0 / sqrt(var / (double)n + eps)), mu = (float)mean;
        for (size_t i = 0; i < n; i++)
            yr[i] = (xr[i] - mu) * inv * weight[i] + (bias ? bias[i] : 0.0f);
    }
}

void ops_rope_freqs(float *x, size_t n_heads, size_t head_dim, size_t rope_dim, size_t pos,
                    const double *inv_freq, float mscale, ops_rope_mode mode)
{
    assert(rope_dim <= head_dim && rope_dim % 2 == 0);
    size_t half = rope_dim / 2;
    for (size_t i = 0; i < half; i++) {
        double theta = (double)pos * inv_freq[i];
        float c = (float)cos(theta), s = (float)sin(theta);
        if (mscale != 1.0f) {
            c *= mscale;
            s *= mscale;
        }
        for (size_t h = 0; h < n_heads; h++) {
            float *v = x + h * head_dim;
            size_t a = mode == OPS_ROPE_NORM ? 2 * i : i;
            size_t b = mode == OPS_ROPE_NORM ? 2 * i + 1 : i + half;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}
