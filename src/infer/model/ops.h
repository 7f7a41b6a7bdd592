/*
 * ops.h - the few neural-network operations the forward pass is made of (private).
 *
 * model.c writes the transformer as plain math over these ops; each op hides its loops and
 * its threads. Activations are F32, laid out row-major as [n_tok][n] (one row per token).
 * Weights are matrices of any tensor type: matmul goes through quant_traits_of(type), so a
 * type with kernels in quant.h works here with no change (activations are converted once per
 * call to the type's vec_dot_type, then each weight row is dotted with each token's row).
 *
 * Threading: ops that take a pool split their work with pool_parallel_for; matmul splits the
 * output rows in chunks of OPS_ROW_GRAIN (16 floats = one 64-byte cache line of output per
 * token), so no two threads write the same line. A NULL pool runs everything on the caller.
 */
#ifndef LLMOS_INFER_OPS_H
#define LLMOS_INFER_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/quant.h"

#define OPS_ROW_GRAIN 16

/* A weight matrix W of n_out rows by n_in columns (GGUF ne = {n_in, n_out}), y = W x.
 * `data` is borrowed (the model's memory map or its weight arena). When `packed` is set,
 * matmul reads the 16-row interleaved copy there (pack/quant_pack.h) instead of `data`. */
typedef struct ops_matrix {
    const void *data;
    ggml_type type;
    size_t n_in, n_out;
    size_t row_bytes;   /* bytes of one row of n_in elements in `type` */
    const void *packed; /* ceil(n_out / 16) groups of 16 * row_bytes, or NULL */
} ops_matrix;

/* Fill m from its parts; false when n_in does not fit the type's block size or the type has
 * no kernels. */
bool ops_matrix_init(ops_matrix *m, const void *data, ggml_type type, size_t n_in, size_t n_out);

/* Bytes of the packed form of m (ops_matrix_pack), 0 when its type has no packed form that
 * can run on this CPU (or packing is off: LLMOS_PACK=0). */
size_t ops_matrix_packed_bytes(const ops_matrix *m);

/* Write m's packed form into dst (ops_matrix_packed_bytes(m) bytes, 64-byte aligned) and set
 * m->packed to it. The pool, if any, shares the work. */
void ops_matrix_pack(llmos_pool *pool, ops_matrix *m, void *dst);

/* Bytes of scratch ops_matmul needs for n_tok rows of n_in activations against a matrix of
 * `type` (0 when the activations can be used as they are, i.e. vec_dot_type is F32). */
size_t ops_matmul_scratch(ggml_type type, size_t n_in, size_t n_tok);

/* y[t][0..n_out) = W x[t][0..n_in) for t < n_tok. `scratch` has ops_matmul_scratch() bytes.
 * y must not alias x. */
void ops_matmul(llmos_pool *pool, float *y, const ops_matrix *w, const float *x, size_t n_tok,
                void *scratch);

/* y[i] = W[i] x for i < count, all W[i] with the same n_in: the Q, K and V projections, or
 * the FFN's gate and up. When every W[i] is packed, the input is quantized once and the
 * matrices share one dispatch to the pool (one wait instead of `count`); otherwise this is
 * ops_matmul per matrix. */
#define OPS_MAX_FUSED 3
void ops_matmul_multi(llmos_pool *pool, size_t count, float *const y[], const ops_matrix *const w[],
                      const float *x, size_t n_tok, void *scratch);

/* Dequantize row `row` of W into out[0..n_in) (embedding lookup). */
void ops_get_row(const ops_matrix *w, size_t row, float *out);

/* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight, each row of n elements. y may equal x. */
void ops_rmsnorm(float *y, const float *x, const float *weight, size_t n, size_t n_tok, float eps);

/* x[t][i] += b[i] for each of n_tok rows of n (a bias, or a residual when n_tok = 1). */
void ops_add_rows(float *x, const float *b, size_t n, size_t n_tok);

/* dst[i] += src[i], i < n (the residual connection). */
void ops_add(float *dst, const float *src, size_t n);

/* x[i] = exp(x[i] - max) / sum, i < n. */
void ops_softmax(float *x, size_t n);

/* gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)) (the SwiGLU of the FFN). */
void ops_silu_mul(float *gate, const float *up, size_t n);

/* Rotary position embedding, layouts as ggml names them. */
typedef enum ops_rope_mode {
    OPS_ROPE_NORM, /* rotate adjacent pairs (x[2i], x[2i+1]): llama */
    OPS_ROPE_NEOX  /* rotate (x[i], x[i + rope_dim/2]): qwen2, GPT-NeoX */
} ops_rope_mode;

/* Rotate the first rope_dim dims of each of n_heads heads of head_dim in x (one token at
 * position pos); pair i turns by pos * base^(-2i/rope_dim) (RoFormer, Su et al. 2021, eq. 34).
 * Dims past rope_dim are left as they are (partial rotary). */
void ops_rope(float *x, size_t n_heads, size_t head_dim, size_t rope_dim, size_t pos,
              float freq_base, ops_rope_mode mode);

/* Causal multi-head attention with grouped-query heads over a KV cache.
 *
 * For each of n_tok tokens (at positions pos0 + t) and each of n_heads query heads h:
 * out[t][h] = sum_j softmax_j(q[t][h] . k[j][g] * scale) v[j][g] over j <= pos0 + t, where
 * g = h / (n_heads / n_kv_heads). k and v rows are kv_stride bytes apart (one row per
 * position, all kv heads side by side) in kv_type (F32 or F16). `scratch` holds
 * ops_attention_scratch() bytes per pool worker. */
typedef struct ops_attention_args {
    float *out;        /* [n_tok][n_heads * head_dim] */
    const float *q;    /* [n_tok][n_heads * head_dim] */
    const void *k, *v; /* cache of this layer, rows 0..pos0+n_tok-1 filled */
    ggml_type kv_type;
    size_t kv_stride; /* bytes per cache row */
    size_t n_tok, pos0;
    size_t n_heads, n_kv_heads, head_dim;
    float scale;
    size_t window;       /* > 0: token at p sees keys p - window < j <= p only (local layers) */
    float softcap;       /* > 0: scores become softcap * tanh(score / softcap) (Gemma 2) */
    bool bidirectional;  /* every token sees all n_tok keys (encoders; pos0 must be 0) */
    void *scratch;
    size_t scratch_per_worker;
} ops_attention_args;

size_t ops_attention_scratch(ggml_type kv_type, size_t head_dim, size_t n_ctx);
void ops_attention(llmos_pool *pool, const ops_attention_args *a);

/* ops_attention for n sequences at once (each its own cache, queries and output), shared out
 * to the pool's workers in one dispatch. Every a[i] has the same head_dim and scratch. */
void ops_attention_multi(llmos_pool *pool, const ops_attention_args *a, size_t n);

/* ---- ops of the other architectures (ops_arch.c) ----------------------------------------- */

/* x[i] *= s, i < n. */
void ops_scale(float *x, float s, size_t n);
/* x[i] = cap * tanh(x[i] / cap), i < n (logit soft-capping). */
void ops_softcap(float *x, float cap, size_t n);
/* gate[i] = gelu(gate[i]) * up[i] with GELU's tanh approximation (GeGLU). */
void ops_gelu_mul(float *gate, const float *up, size_t n);
/* x[i] = gelu(x[i]), the erf form (BERT). */
void ops_gelu(float *x, size_t n);
/* y[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias, rows of n; y may equal x. */
void ops_layernorm(float *y, const float *x, const float *weight, const float *bias, size_t n,
                   size_t n_tok, float eps);
/* Rotary embedding with given frequencies: pair i of each head turns by pos * inv_freq[i]
 * (computed in double), and cos and sin are multiplied by mscale (LongRoPE's attention
 * factor; 1 otherwise). With inv_freq[i] = base^(-2i/rope_dim) this is ops_rope exactly. */
void ops_rope_freqs(float *x, size_t n_heads, size_t head_dim, size_t rope_dim, size_t pos,
                    const double *inv_freq, float mscale, ops_rope_mode mode);

/* ---- AVX-512 inner loops (ops_avx512.c); ops.c picks them when the CPU has AVX-512F ------- */

/* Whether ops.c uses the functions below (AVX-512F and F16C present, LLMOS_QUANT_ISA not
 * capping below avx512). */
bool ops_simd_avx512(void);
/* x[i] = exp(x[i]), within about one ulp. */
void ops_exp_avx512(float *x, size_t n);
void ops_silu_mul_avx512(float *gate, const float *up, size_t n);
void ops_softmax_avx512(float *x, size_t n);
/* att[j] = scale * dot(q, key j) for j < n_keys; keys are rows of kv_stride bytes in kv_type
 * (F32 or F16), head_dim a multiple of 16. */
void ops_attn_scores_avx512(float *att, const float *q, const uint8_t *k, size_t kv_stride,
                            ggml_type kv_type, size_t n_keys, size_t head_dim, float scale);
/* out[d] = sum_j att[j] * value j [d], d < head_dim (a multiple of 16). */
void ops_attn_values_avx512(float *out, const float *att, const uint8_t *v, size_t kv_stride,
                            ggml_type kv_type, size_t n_keys, size_t head_dim);

#endif
