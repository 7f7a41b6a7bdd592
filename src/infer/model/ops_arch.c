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

/* GELU, tanh approximation (Hendrycks & Gimpel 2016):
 * 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) */
static float gelu_tanh(float g)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)));
}

void ops_gelu_mul(float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gate[i] = gelu_tanh(gate[i]) * up[i];
}

void ops_gelu(float *x, size_t n)
{
    /* the exact form BERT's reference uses: 0.5 x (1 + erf(x / sqrt 2)) */
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
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
