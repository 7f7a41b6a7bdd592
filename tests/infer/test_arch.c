/*
 * test_arch.c - every architecture descriptor against a reference written here, and by hand.
 *
 * For each architecture (llama with Llama 3 rope factors, qwen3, gemma2, gemma3, phi3 with
 * LongRoPE), tiny random models are written in llama.cpp's GGUF layout for that
 * architecture, and llmos's logits after a whole sequence must match a plain double-precision
 * transformer below (the math of the reference model definitions, written loop by loop with
 * nothing shared with src/). Then cases whose answer is derived by hand (a Gemma 2 layer
 * whose blocks add nothing, so the logits are the soft-capped, scaled embedding products),
 * invariants (a sliding-window layer ignores tokens outside its window; a QK-norm model
 * ignores the scale of its q and k projections), a bge-small-shaped BERT encoder against its
 * own reference, and the bad input the descriptors refuse.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "infer/model/ops.h"
#include "llmos/backend.h"
#include "llmos/gguf.h"
#include "llmos/infer.h"
#include "llmos/json.h"
#include "llmos/quantize.h"
#include "testutil.h"

static char tmpdir[4096];

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static float frand(float scale)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return scale * ((float)((rs >> 40) * (1.0 / 8388608.0)) - 1.0f);
}

static float *rnd(size_t n, float scale, float offset)
{
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = offset + frand(scale);
    return x;
}

/* ---- the ops only some architectures use, against their formulas in double --------------- */

static void arch_ops_match_formulas(void **state)
{
    (void)state;
    enum { N = 6001 };
    static float g[N], u[N], x[N];
    for (int i = 0; i < N; i++) { /* -30 .. 30, past where exp overflows in float */
        g[i] = x[i] = -30.0f + 0.01f * (float)i;
        u[i] = 0.5f + 0.001f * (float)i;
    }
    ops_gelu_mul(g, u, N);
    ops_gelu(x, N);
    double worst_tanh = 0, worst_erf = 0;
    for (int i = 0; i < N; i++) {
        double v = -30.0 + 0.01 * i, w = 0.5f + 0.001f * (float)i;
        double want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))) * w;
        double e = fabs(g[i] - want) / (1 + fabs(want));
        worst_tanh = e > worst_tanh ? e : worst_tanh;
        want = 0.5 * v * (1 + erf(v / sqrt(2.0)));
        e = fabs(x[i] - want) / (1 + fabs(want));
        worst_erf = e > worst_erf ? e : worst_erf;
        assert_true(isfinite(g[i]) && isfinite(x[i]));
    }
    /* measured 2.7e-6 and 1.0e-6: a few float roundings of the cube and the exponential */
    if (!(worst_tanh < 1e-5 && worst_erf < 1e-5))
        fail_msg("GELU: tanh form off by %g, erf form by %g (relative)", worst_tanh, worst_erf);

    float c[5] = {-100.0f, -1.0f, 0.0f, 0.5f, 1e6f};
    ops_softcap(c, 30.0f, 5);
    assert_float_equal(c[0], 30.0 * tanh(-100.0 / 30.0), 1e-5);
    assert_float_equal(c[1], 30.0 * tanh(-1.0 / 30.0), 1e-6);
    assert_float_equal(c[2], 0.0, 0);
    assert_float_equal(c[4], 30.0, 1e-5);

    float row[4] = {1, 2, 3, 6}, wt[4] = {1, 2, 1, 1}, bias[4] = {0, 0, 1, 0}, out[4];
    ops_layernorm(out, row, wt, bias, 4, 1, 0.0f); /* mean 3, variance 3.5 */
    for (int i = 0; i < 4; i++)
        assert_float_equal(out[i], (row[i] - 3.0) / sqrt(3.5) * wt[i] + bias[i], 1e-6);
}

/* ---- a tiny decoder of any of the architectures -------------------------------------------- */

enum { MAXL = 6 };

typedef struct cfg {
    const char *arch;
    int d, n_head, n_kv, head_dim, ff, vocab, n_layer, ctx, rope_dim;
    bool neox, bias, qk_norm, post_norm, gelu, embd_scale, fused, tied;
    float base, local_base, attn_cap, final_cap, attn_factor;
    int window, pattern; /* sliding window and its layer pattern (0 = none) */
    bool rope_freqs;     /* llama: a rope_freqs tensor */
    bool longrope;       /* phi3: short and long factors */
    int n_ctx_orig;
} cfg;

typedef struct weights {
    float *emb, *out, *out_norm, *freqs, *f_short, *f_long;
    float *attn_norm[MAXL], *ffn_norm[MAXL], *post_attn[MAXL], *post_ffn[MAXL];
    float *wq[MAXL], *wk[MAXL], *wv[MAXL], *wo[MAXL], *bq[MAXL], *bk[MAXL], *bv[MAXL];
    float *qn[MAXL], *kn[MAXL], *gate[MAXL], *up[MAXL], *down[MAXL];
    float *qkv[MAXL], *gate_up[MAXL]; /* fused copies written for phi3 */
} weights;

static void make_weights(const cfg *c, weights *w)
{
    memset(w, 0, sizeof *w);
    int q = c->n_head * c->head_dim, kv = c->n_kv * c->head_dim, half = c->rope_dim / 2;
    w->emb = rnd((size_t)c->vocab * c->d, 1.0f, 0);
    w->out = c->tied ? w->emb : rnd((size_t)c->vocab * c->d, 0.5f, 0);
    w->out_norm = rnd(c->d, 0.2f, 1.0f);
    if (c->rope_freqs)
        w->freqs = rnd(half, 3.0f, 4.0f); /* 1 .. 7 */
    if (c->longrope) {
        w->f_short = rnd(half, 0.5f, 1.5f);
        w->f_long = rnd(half, 4.0f, 5.0f);
    }
    for (int l = 0; l < c->n_layer; l++) {
        w->attn_norm[l] = rnd(c->d, 0.2f, 1.0f);
        w->ffn_norm[l] = rnd(c->d, 0.2f, 1.0f);
        w->post_attn[l] = rnd(c->d, 0.2f, 1.0f);
        w->post_ffn[l] = rnd(c->d, 0.2f, 1.0f);
        w->wq[l] = rnd((size_t)q * c->d, 0.4f, 0);
        w->wk[l] = rnd((size_t)kv * c->d, 0.4f, 0);
        w->wv[l] = rnd((size_t)kv * c->d, 0.4f, 0);
        w->wo[l] = rnd((size_t)c->d * q, 0.3f, 0);
        w->bq[l] = rnd(q, 0.5f, 0);
        w->bk[l] = rnd(kv, 0.5f, 0);
        w->bv[l] = rnd(kv, 0.5f, 0);
        w->qn[l] = rnd(c->head_dim, 0.3f, 1.0f);
        w->kn[l] = rnd(c->head_dim, 0.3f, 1.0f);
        w->gate[l] = rnd((size_t)c->ff * c->d, 0.3f, 0);
        w->up[l] = rnd((size_t)c->ff * c->d, 0.3f, 0);
        w->down[l] = rnd((size_t)c->d * c->ff, 0.3f, 0);
    }
}

static void free_weights(const cfg *c, weights *w)
{
    if (w->out != w->emb)
        free(w->out);
    free(w->emb);
    free(w->out_norm);
    free(w->freqs);
    free(w->f_short);
    free(w->f_long);
    for (int l = 0; l < c->n_layer; l++) {
        float *all[] = {w->attn_norm[l], w->ffn_norm[l], w->post_attn[l], w->post_ffn[l],
                        w->wq[l],        w->wk[l],       w->wv[l],        w->wo[l],
                        w->bq[l],        w->bk[l],       w->bv[l],        w->qn[l],
                        w->kn[l],        w->gate[l],     w->up[l],        w->down[l],
                        w->qkv[l],       w->gate_up[l]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]);
    }
}

/* Write the model in llama.cpp's layout for c->arch. */
static void write_model(const cfg *c, weights *w, const char *path)
{
    gguf_writer *g = NULL;
    assert_int_equal(gguf_writer_new(&g), LLMOS_OK);
    char key[128];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", c->arch, s), key)
    assert_int_equal(gguf_set_str(g, "general.architecture", c->arch), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("block_count"), (uint32_t)c->n_layer), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("embedding_length"), (uint32_t)c->d), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("feed_forward_length"), (uint32_t)c->ff), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("attention.head_count"), (uint32_t)c->n_head), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->n_kv), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("attention.key_length"), (uint32_t)c->head_dim), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("attention.value_length"), (uint32_t)c->head_dim),
                     LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("rope.dimension_count"), (uint32_t)c->rope_dim), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("context_length"), (uint32_t)c->ctx), LLMOS_OK);
    assert_int_equal(gguf_set_f32(g, KEY("rope.freq_base"), c->base), LLMOS_OK);
    assert_int_equal(gguf_set_f32(g, KEY("attention.layer_norm_rms_epsilon"), 1e-6f), LLMOS_OK);
    if (c->window)
        assert_int_equal(gguf_set_u32(g, KEY("attention.sliding_window"), (uint32_t)c->window),
                         LLMOS_OK);
    if (c->attn_cap > 0)
        assert_int_equal(gguf_set_f32(g, KEY("attn_logit_softcapping"), c->attn_cap), LLMOS_OK);
    if (c->final_cap > 0)
        assert_int_equal(gguf_set_f32(g, KEY("final_logit_softcapping"), c->final_cap), LLMOS_OK);
    if (c->longrope) {
        assert_int_equal(gguf_set_f32(g, KEY("rope.scaling.attn_factor"), c->attn_factor),
                         LLMOS_OK);
        assert_int_equal(gguf_set_u32(g, KEY("rope.scaling.original_context_length"),
                                      (uint32_t)c->n_ctx_orig),
                         LLMOS_OK);
    }
#undef KEY
    int q = c->n_head * c->head_dim, kv = c->n_kv * c->head_dim;
    uint64_t ne[2];
#define ADD(name, data, n0, n1)                                                                    \
    do {                                                                                           \
        ne[0] = (uint64_t)(n0);                                                                    \
        ne[1] = (uint64_t)(n1);                                                                    \
        assert_int_equal(gguf_add_tensor(g, name, GGML_TYPE_F32, (n1) > 1 ? 2 : 1, ne, data),      \
                         LLMOS_OK);                                                                \
    } while (0)
    ADD("token_embd.weight", w->emb, c->d, c->vocab);
    ADD("output_norm.weight", w->out_norm, c->d, 1);
    if (!c->tied)
        ADD("output.weight", w->out, c->d, c->vocab);
    if (w->freqs)
        ADD("rope_freqs.weight", w->freqs, c->rope_dim / 2, 1);
    if (w->f_short) {
        ADD("rope_factors_short.weight", w->f_short, c->rope_dim / 2, 1);
        ADD("rope_factors_long.weight", w->f_long, c->rope_dim / 2, 1);
    }
    for (int l = 0; l < c->n_layer; l++) {
        char n[64];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        ADD(NAME("attn_norm.weight"), w->attn_norm[l], c->d, 1);
        ADD(NAME("ffn_norm.weight"), w->ffn_norm[l], c->d, 1);
        if (c->fused) {
            size_t dq = (size_t)q * c->d, dkv = (size_t)kv * c->d, dff = (size_t)c->ff * c->d;
            w->qkv[l] = malloc((dq + 2 * dkv) * sizeof(float));
            memcpy(w->qkv[l], w->wq[l], dq * sizeof(float));
            memcpy(w->qkv[l] + dq, w->wk[l], dkv * sizeof(float));
            memcpy(w->qkv[l] + dq + dkv, w->wv[l], dkv * sizeof(float));
            w->gate_up[l] = malloc(2 * dff * sizeof(float));
            memcpy(w->gate_up[l], w->gate[l], dff * sizeof(float));
            memcpy(w->gate_up[l] + dff, w->up[l], dff * sizeof(float));
            ADD(NAME("attn_qkv.weight"), w->qkv[l], c->d, q + 2 * kv);
            ADD(NAME("ffn_up.weight"), w->gate_up[l], c->d, 2 * c->ff);
        } else {
            ADD(NAME("attn_q.weight"), w->wq[l], c->d, q);
            ADD(NAME("attn_k.weight"), w->wk[l], c->d, kv);
            ADD(NAME("attn_v.weight"), w->wv[l], c->d, kv);
            ADD(NAME("ffn_gate.weight"), w->gate[l], c->d, c->ff);
            ADD(NAME("ffn_up.weight"), w->up[l], c->d, c->ff);
        }
        ADD(NAME("attn_output.weight"), w->wo[l], q, c->d);
        ADD(NAME("ffn_down.weight"), w->down[l], c->ff, c->d);
        if (c->bias) {
            ADD(NAME("attn_q.bias"), w->bq[l], q, 1);
            ADD(NAME("attn_k.bias"), w->bk[l], kv, 1);
            ADD(NAME("attn_v.bias"), w->bv[l], kv, 1);
        }
        if (c->qk_norm) {
            ADD(NAME("attn_q_norm.weight"), w->qn[l], c->head_dim, 1);
            ADD(NAME("attn_k_norm.weight"), w->kn[l], c->head_dim, 1);
        }
        if (c->post_norm) {
            ADD(NAME("post_attention_norm.weight"), w->post_attn[l], c->d, 1);
            ADD(NAME("post_ffw_norm.weight"), w->post_ffn[l], c->d, 1);
        }
#undef NAME
    }
#undef ADD
    assert_int_equal(gguf_writer_write(g, path), LLMOS_OK);
    gguf_writer_free(g);
}

/* ---- the reference: the transformer in double, one loop per formula ------------------------ */

static void ref_rmsnorm(double *x, const float *w, int n, int rows)
{
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++)
            ss += x[r * n + i] * x[r * n + i];
        double inv = 1.0 / sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; i++)
            x[r * n + i] *= inv * w[i];
    }
}

/* y[o] = sum_i W[o][i] x[i], W given as GGUF rows of n_in */
static void ref_matvec(double *y, const float *W, const double *x, int n_in, int n_out)
{
    for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++)
            s += (double)W[(size_t)o * n_in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rope(const cfg *c, const weights *w, double *x, int n_heads, int pos, bool local,
                     int n_ctx)
{
    int half = c->rope_dim / 2;
    bool use_long = c->longrope && n_ctx > c->n_ctx_orig;
    for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < half; i++) {
            double base = local && c->local_base > 0 ? c->local_base : c->base;
            double f = pow(base, -2.0 * i / c->rope_dim);
            if (c->rope_freqs)
                f /= w->freqs[i];
            if (c->longrope)
                f /= use_long ? w->f_long[i] : w->f_short[i];
            double th = pos * f, m = c->longrope ? c->attn_factor : 1.0;
            double co = cos(th) * m, si = sin(th) * m;
            int a = c->neox ? i : 2 * i, b = c->neox ? i + half : 2 * i + 1;
            double *v = x + h * c->head_dim;
            double x0 = v[a], x1 = v[b];
            v[a] = x0 * co - x1 * si;
            v[b] = x0 * si + x1 * co;
        }
}

static double gelu_tanh(double g)
{
    return 0.5 * g * (1.0 + tanh(sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
}

/* Logits of the last of toks[0..n) into logits[vocab]; n_ctx is the context's size (LongRoPE
 * picks its factors by it). */
static void ref_forward(const cfg *c, const weights *w, const int32_t *toks, int n, int n_ctx,
                        double *logits)
{
    int d = c->d, q_dim = c->n_head * c->head_dim, kv_dim = c->n_kv * c->head_dim;
    double *x = calloc((size_t)n * d, sizeof *x), *h = calloc(d, sizeof *h);
    double *q = calloc((size_t)n * q_dim, sizeof *q), *k = calloc((size_t)n * kv_dim, sizeof *k);
    double *v = calloc((size_t)n * kv_dim, sizeof *v), *att = calloc(q_dim, sizeof *att);
    double *o = calloc(d, sizeof *o), *g = calloc(c->ff, sizeof *g), *u = calloc(c->ff, sizeof *u);
    double *sc = calloc(n, sizeof *sc);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++)
            x[t * d + i] = w->emb[(size_t)toks[t] * d + i] * (c->embd_scale ? sqrt((double)d) : 1);
    double scale = 1.0 / sqrt((double)c->head_dim);
    for (int l = 0; l < c->n_layer; l++) {
        bool local = c->pattern && c->window && l % c->pattern < c->pattern - 1;
        for (int t = 0; t < n; t++) {
            memcpy(h, x + t * d, d * sizeof *h);
            ref_rmsnorm(h, w->attn_norm[l], d, 1);
            ref_matvec(q + t * q_dim, w->wq[l], h, d, q_dim);
            ref_matvec(k + t * kv_dim, w->wk[l], h, d, kv_dim);
            ref_matvec(v + t * kv_dim, w->wv[l], h, d, kv_dim);
            if (c->bias) {
                for (int i = 0; i < q_dim; i++)
                    q[t * q_dim + i] += w->bq[l][i];
                for (int i = 0; i < kv_dim; i++) {
                    k[t * kv_dim + i] += w->bk[l][i];
                    v[t * kv_dim + i] += w->bv[l][i];
                }
            }
            if (c->qk_norm) {
                ref_rmsnorm(q + t * q_dim, w->qn[l], c->head_dim, c->n_head);
                ref_rmsnorm(k + t * kv_dim, w->kn[l], c->head_dim, c->n_kv);
            }
            ref_rope(c, w, q + t * q_dim, c->n_head, t, local, n_ctx);
            ref_rope(c, w, k + t * kv_dim, c->n_kv, t, local, n_ctx);
        }
        double *xn = calloc((size_t)n * d, sizeof *xn);
        for (int t = 0; t < n; t++) {
            for (int hh = 0; hh < c->n_head; hh++) {
                int gk = hh / (c->n_head / c->n_kv);
                int lo = local && t >= c->window ? t - c->window + 1 : 0;
                double mx = -INFINITY, sum = 0;
                for (int j = lo; j <= t; j++) {
                    double s = 0;
                    for (int i = 0; i < c->head_dim; i++)
                        s += q[t * q_dim + hh * c->head_dim + i] * k[j * kv_dim + gk * c->head_dim + i];
                    s *= scale;
                    if (c->attn_cap > 0)
                        s = c->attn_cap * tanh(s / c->attn_cap);
                    sc[j] = s;
                    mx = s > mx ? s : mx;
                }
                for (int j = lo; j <= t; j++)
                    sum += sc[j] = exp(sc[j] - mx);
                for (int i = 0; i < c->head_dim; i++) {
                    double a = 0;
                    for (int j = lo; j <= t; j++)
                        a += sc[j] / sum * v[j * kv_dim + gk * c->head_dim + i];
                    att[hh * c->head_dim + i] = a;
                }
            }
            ref_matvec(o, w->wo[l], att, q_dim, d);
            if (c->post_norm)
                ref_rmsnorm(o, w->post_attn[l], d, 1);
            for (int i = 0; i < d; i++)
                xn[t * d + i] = x[t * d + i] + o[i];
        }
        for (int t = 0; t < n; t++) {
            memcpy(h, xn + t * d, d * sizeof *h);
            ref_rmsnorm(h, w->ffn_norm[l], d, 1);
            ref_matvec(g, w->gate[l], h, d, c->ff);
            ref_matvec(u, w->up[l], h, d, c->ff);
            for (int i = 0; i < c->ff; i++)
                g[i] = (c->gelu ? gelu_tanh(g[i]) : g[i] / (1 + exp(-g[i]))) * u[i];
            ref_matvec(o, w->down[l], g, c->ff, d);
            if (c->post_norm)
                ref_rmsnorm(o, w->post_ffn[l], d, 1);
            for (int i = 0; i < d; i++)
                x[t * d + i] = xn[t * d + i] + o[i];
        }
        free(xn);
    }
    memcpy(h, x + (size_t)(n - 1) * d, d * sizeof *h);
    ref_rmsnorm(h, w->out_norm, d, 1);
    ref_matvec(logits, w->out, h, d, c->vocab);
    if (c->final_cap > 0)
        for (int i = 0; i < c->vocab; i++)
            logits[i] = c->final_cap * tanh(logits[i] / c->final_cap);
    free(x), free(h), free(q), free(k), free(v), free(att), free(o), free(g), free(u), free(sc);
}

/* ---- driving llmos --------------------------------------------------------------------------- */

static llmos_model *load_ok(const char *path)
{
    llmos_model *m = NULL;
    llmos_err err = model_load(path, &m);
    if (err)
        fail_msg("model_load %s: %s", path, llmos_errmsg());
    return m;
}

/* llmos's logits after toks[0..n) evaluated in pieces of `step`, in a context of n_ctx. */
static void llmos_logits(const llmos_model *m, const int32_t *toks, int n, int step, int n_ctx,
                         float *out)
{
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = (uint32_t)n_ctx;
    p.n_batch = 8;
    llmos_model_ctx *ctx = NULL;
    assert_int_equal(model_ctx_new(m, &p, &ctx), LLMOS_OK);
    const float *lg = NULL;
    for (int i = 0; i < n; i += step)
        assert_int_equal(model_eval(ctx, toks + i, (size_t)(n - i < step ? n - i : step), &lg),
                         LLMOS_OK);
    memcpy(out, lg, (size_t)model_hparams_of(m)->n_vocab * sizeof *out);
    model_ctx_free(ctx);
}

/* Write c with random weights, load it, and compare with the reference at n tokens. */
static void check_against_reference(const cfg *c, model_arch want_arch)
{
    weights w;
    make_weights(c, &w);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.gguf", tmpdir, c->arch);
    write_model(c, &w, path);
    llmos_model *m = load_ok(path);
    const model_hparams *hp = model_hparams_of(m);
    assert_int_equal(hp->arch, want_arch);
    assert_int_equal(hp->head_dim, (uint32_t)c->head_dim);
    int32_t toks[64];
    int n = c->ctx;
    for (int i = 0; i < n; i++)
        toks[i] = (int32_t)((i * 7 + 3) % c->vocab);
    float *got = malloc((size_t)c->vocab * sizeof *got);
    double *want = malloc((size_t)c->vocab * sizeof *want);
    int ctxs[2] = {c->ctx, c->longrope ? c->n_ctx_orig : c->ctx};
    for (int which = 0; which < 2; which++) {
        int n_ctx = ctxs[which], nt = n < n_ctx ? n : n_ctx;
        ref_forward(c, &w, toks, nt, n_ctx, want);
        for (int step = 1; step <= nt; step += nt - 1) { /* token by token, then one batch */
            llmos_logits(m, toks, nt, step, n_ctx, got);
            double worst = 0, big = 0;
            for (int i = 0; i < c->vocab; i++) {
                double e = fabs(got[i] - want[i]);
                worst = e > worst || isnan(e) ? e : worst;
                big = fabs(want[i]) > big ? fabs(want[i]) : big;
            }
            if (!(worst <= 1e-4 * (1 + big)))
                fail_msg("%s (context %d, steps of %d): max |llmos - reference| = %g", c->arch,
                         n_ctx, step, worst);
        }
    }
    free(got);
    free(want);
    model_free(m);
    free_weights(c, &w);
    unlink(path);
}

static cfg base_cfg(const char *arch)
{
    return (cfg){.arch = arch, .d = 32, .n_head = 4, .n_kv = 2, .head_dim = 8, .ff = 40,
                 .vocab = 37, .n_layer = 2, .ctx = 20, .rope_dim = 8, .base = 10000.0f};
}

static void llama_rope_freqs_matches_reference(void **state)
{
    (void)state;
    cfg c = base_cfg("llama");
    c.rope_freqs = true;
    check_against_reference(&c, MODEL_ARCH_LLAMA);
}

static void qwen3_matches_reference(void **state)
{
    (void)state;
    cfg c = base_cfg("qwen3");
    c.head_dim = 16; /* Qwen3 heads are wider than n_embd / n_head */
    c.rope_dim = 16;
    c.neox = c.qk_norm = c.tied = true;
    c.base = 1000000.0f;
    check_against_reference(&c, MODEL_ARCH_QWEN3);
}

static void gemma2_matches_reference(void **state)
{
    (void)state;
    cfg c = base_cfg("gemma2");
    c.n_layer = 3; /* local, global, local */
    c.neox = c.post_norm = c.gelu = c.embd_scale = c.tied = true;
    c.attn_cap = 5.0f; /* small caps, so that they bite */
    c.final_cap = 3.0f;
    c.window = 4;
    c.pattern = 2;
    check_against_reference(&c, MODEL_ARCH_GEMMA2);
}

static void gemma3_matches_reference(void **state)
{
    (void)state;
    cfg c = base_cfg("gemma3");
    c.n_layer = 6; /* five local layers, then a global one */
    c.neox = c.post_norm = c.gelu = c.embd_scale = c.tied = c.qk_norm = true;
    c.window = 5;
    c.pattern = 6;
    c.base = 1000000.0f;
    c.local_base = 10000.0f;
    check_against_reference(&c, MODEL_ARCH_GEMMA3);
}

static void phi3_matches_reference(void **state)
{
    (void)state;
    cfg c = base_cfg("phi3");
    c.neox = c.fused = true;
    c.rope_dim = 6; /* partial rotary, as Phi-4-mini */
    c.longrope = true;
    c.attn_factor = 1.19f;
    c.n_ctx_orig = 12; /* a context of 20 uses the long factors, one of 12 the short */
    check_against_reference(&c, MODEL_ARCH_PHI3);
}

/* Gemma 2, one layer whose attention and FFN add nothing (Wo = 0 and down = 0, and the post
 * norms of a zero vector are zero): x = emb[tok] sqrt(d), and the logits are by hand
 * cap tanh(emb[j] . (rmsnorm(x) * norm) / cap), the last independent of the scale. */
static void gemma2_hand_checked(void **state)
{
    (void)state;
    cfg c = base_cfg("gemma2");
    c.n_layer = 1;
    c.neox = c.post_norm = c.gelu = c.embd_scale = c.tied = true;
    c.final_cap = 2.0f;
    c.window = 4;
    c.pattern = 2;
    weights w;
    make_weights(&c, &w);
    memset(w.wo[0], 0, (size_t)c.d * c.n_head * c.head_dim * sizeof(float));
    memset(w.down[0], 0, (size_t)c.d * c.ff * sizeof(float));
    char path[4200];
    snprintf(path, sizeof path, "%s/gemma2-hand.gguf", tmpdir);
    write_model(&c, &w, path);
    llmos_model *m = load_ok(path);
    int32_t tok = 5;
    float got[64];
    llmos_logits(m, &tok, 1, 1, c.ctx, got);
    double ss = 0;
    for (int i = 0; i < c.d; i++)
        ss += 32.0 * w.emb[tok * c.d + i] * w.emb[tok * c.d + i];
    double inv = 1.0 / sqrt(ss / c.d + 1e-6);
    for (int j = 0; j < c.vocab; j++) {
        double s = 0;
        for (int i = 0; i < c.d; i++)
            s += (double)w.emb[j * c.d + i] * sqrt(32.0) * w.emb[tok * c.d + i] * inv *
                 w.out_norm[i];
        assert_float_equal(got[j], 2.0 * tanh(s / 2.0), 1e-5);
        assert_true(fabsf(got[j]) <= 2.0f); /* capped */
    }
    model_free(m);
    free_weights(&c, &w);
    unlink(path);
}

/* A one-layer Gemma 2 model is all local (layer 0 of the pattern): what token p computes
 * depends on tokens p - window + 1 .. p only. Changing earlier tokens must not change its
 * logits, and changing one inside the window must. */
static void sliding_window_ignores_tokens_outside(void **state)
{
    (void)state;
    cfg c = base_cfg("gemma2");
    c.n_layer = 1;
    c.neox = c.post_norm = c.gelu = c.embd_scale = c.tied = true;
    c.window = 4;
    c.pattern = 2;
    weights w;
    make_weights(&c, &w);
    char path[4200];
    snprintf(path, sizeof path, "%s/gemma2-window.gguf", tmpdir);
    write_model(&c, &w, path);
    llmos_model *m = load_ok(path);
    assert_int_equal(model_hparams_of(m)->n_swa, 4);
    int32_t a[12], b[12];
    for (int i = 0; i < 12; i++)
        a[i] = b[i] = (int32_t)((i * 5 + 1) % c.vocab);
    for (int i = 0; i < 8; i++) /* positions 0..7 are outside the window of position 11 */
        b[i] = (int32_t)((b[i] + 11) % c.vocab);
    float la[64], lb[64];
    llmos_logits(m, a, 12, 12, c.ctx, la);
    llmos_logits(m, b, 12, 5, c.ctx, lb);
    assert_memory_equal(la, lb, (size_t)c.vocab * sizeof(float));
    b[8] = (int32_t)((b[8] + 1) % c.vocab); /* inside the window */
    llmos_logits(m, b, 12, 12, c.ctx, lb);
    double diff = 0;
    for (int i = 0; i < c.vocab; i++)
        diff += fabs(la[i] - lb[i]);
    assert_true(diff > 1e-3);
    model_free(m);
    free_weights(&c, &w);
    unlink(path);
}

/* Qwen3's norms make each head of q and k unit-RMS before rope: scaling Wq and Wk by any
 * positive factor leaves the output unchanged (up to rounding). */
static void qk_norm_ignores_projection_scale(void **state)
{
    (void)state;
    cfg c = base_cfg("qwen3");
    c.neox = c.qk_norm = c.tied = true;
    weights w;
    make_weights(&c, &w);
    char path[4200];
    snprintf(path, sizeof path, "%s/qwen3-scale.gguf", tmpdir);
    write_model(&c, &w, path);
    llmos_model *m = load_ok(path);
    int32_t toks[10];
    for (int i = 0; i < 10; i++)
        toks[i] = (int32_t)((i * 3 + 2) % c.vocab);
    float a[64], b[64];
    llmos_logits(m, toks, 10, 10, c.ctx, a);
    model_free(m);
    for (int l = 0; l < c.n_layer; l++) {
        for (int i = 0; i < c.n_head * c.head_dim * c.d; i++)
            w.wq[l][i] *= 7.0f;
        for (int i = 0; i < c.n_kv * c.head_dim * c.d; i++)
            w.wk[l][i] *= 0.25f;
    }
    write_model(&c, &w, path);
    m = load_ok(path);
    llmos_logits(m, toks, 10, 10, c.ctx, b);
    for (int i = 0; i < c.vocab; i++)
        assert_float_equal(a[i], b[i], 1e-4);
    model_free(m);
    free_weights(&c, &w);
    unlink(path);
}

/* phi3's fused QKV and gate/up, quantized to Q8_0: each part is a row range of the fused
 * matrix, packed on its own for the kernels. The logits stay within Q8_0's rounding of the F32
 * model's: measured 2.2% of the largest logit here (the same sized llama model without fused
 * tensors: 1.5%), bound 10%; a part taken from the wrong rows would be off by the size of
 * the logits. */
static void fused_tensors_quantized(void **state)
{
    (void)state;
    cfg c = base_cfg("phi3");
    c.neox = c.fused = true;
    c.ff = 64;
    weights w;
    make_weights(&c, &w);
    char f32[4200], q8[4200];
    snprintf(f32, sizeof f32, "%s/phi3-f32.gguf", tmpdir);
    snprintf(q8, sizeof q8, "%s/phi3-q8.gguf", tmpdir);
    write_model(&c, &w, f32);
    quantize_params qp = {.target = "Q8_0"};
    assert_int_equal(quantize_model(f32, q8, &qp), LLMOS_OK);
    llmos_model *a = load_ok(f32), *b = load_ok(q8);
    assert_int_equal(model_hparams_of(b)->weight_type, GGML_TYPE_Q8_0);
    int32_t toks[16];
    for (int i = 0; i < 16; i++)
        toks[i] = (int32_t)((i * 5 + 2) % c.vocab);
    float la[64], lb[64];
    llmos_logits(a, toks, 16, 16, c.ctx, la);
    llmos_logits(b, toks, 16, 16, c.ctx, lb);
    double worst = 0, big = 0;
    for (int i = 0; i < c.vocab; i++) {
        worst = fabs(la[i] - lb[i]) > worst ? fabs(la[i] - lb[i]) : worst;
        big = fabs(la[i]) > big ? fabs(la[i]) : big;
    }
    if (!(worst < 0.1 * (1 + big)))
        fail_msg("phi3 Q8_0 against F32: max |difference| %g, largest logit %g", worst, big);
    model_free(a);
    model_free(b);
    free_weights(&c, &w);
    unlink(f32);
    unlink(q8);
}

/* ---- bad input ------------------------------------------------------------------------------- */

static void expect_refused(const char *path, llmos_err code, const char *needle)
{
    llmos_model *m = NULL;
    assert_int_equal(model_load(path, &m), code);
    assert_null(m);
    if (!strstr(llmos_errmsg(), needle))
        fail_msg("error \"%s\" does not name \"%s\"", llmos_errmsg(), needle);
}

static void bad_models_refused(void **state)
{
    (void)state;
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.gguf", tmpdir);
    weights w;

    cfg c = base_cfg("mamba"); /* unknown architecture */
    make_weights(&c, &w);
    write_model(&c, &w, path);
    expect_refused(path, LLMOS_ERR_UNSUPPORTED, "'mamba'");
    free_weights(&c, &w);

    c = base_cfg("qwen3"); /* Q norm of the wrong width: names tensor, actual and expected */
    c.qk_norm = true;
    c.head_dim = 16;
    c.rope_dim = 16;
    make_weights(&c, &w);
    write_model(&c, &w, path);
    free_weights(&c, &w);
    c.head_dim = 8; /* the same weights, but the metadata now says heads of 8 */
    {
        gguf_file *f = NULL;
        assert_int_equal(gguf_open(path, &f), LLMOS_OK);
        gguf_writer *g = NULL;
        assert_int_equal(gguf_writer_new(&g), LLMOS_OK);
        for (size_t i = 0; i < gguf_n_kv(f); i++)
            assert_int_equal(gguf_set_from(g, gguf_key(f, i), f, (int64_t)i), LLMOS_OK);
        assert_int_equal(gguf_set_u32(g, "qwen3.attention.key_length", 8), LLMOS_OK);
        assert_int_equal(gguf_set_u32(g, "qwen3.attention.value_length", 8), LLMOS_OK);
        assert_int_equal(gguf_set_u32(g, "qwen3.rope.dimension_count", 8), LLMOS_OK);
        for (size_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *x = gguf_tensor_at(f, i);
            assert_int_equal(gguf_add_tensor(g, x->name, x->type, x->n_dims, x->ne, x->data),
                             LLMOS_OK);
        }
        char path2[4300];
        snprintf(path2, sizeof path2, "%s/bad2.gguf", tmpdir);
        assert_int_equal(gguf_writer_write(g, path2), LLMOS_OK);
        gguf_writer_free(g);
        gguf_close(f);
        expect_refused(path2, LLMOS_ERR_FORMAT, "blk.0.attn_q.weight");
        assert_non_null(strstr(llmos_errmsg(), "[32, 64,")); /* actual */
        assert_non_null(strstr(llmos_errmsg(), "expected [32, 32]"));
        unlink(path2);
    }

    c = base_cfg("gemma3"); /* a Gemma 3 file without its Q/K norms */
    c.n_layer = 1;
    c.neox = c.post_norm = c.gelu = c.embd_scale = c.tied = true;
    make_weights(&c, &w);
    write_model(&c, &w, path);
    expect_refused(path, LLMOS_ERR_FORMAT, "blk.0.attn_q_norm.weight");
    free_weights(&c, &w);

    c = base_cfg("llama"); /* 4 heads cannot share 3 key/value heads */
    c.n_kv = 3;
    make_weights(&c, &w);
    write_model(&c, &w, path);
    expect_refused(path, LLMOS_ERR_FORMAT, "key/value heads");
    free_weights(&c, &w);

    c = base_cfg("gemma2"); /* sliding window longer than the context */
    c.neox = c.post_norm = c.gelu = c.embd_scale = c.tied = true;
    c.window = 64;
    c.pattern = 2;
    make_weights(&c, &w);
    write_model(&c, &w, path);
    expect_refused(path, LLMOS_ERR_FORMAT, "sliding_window 64 is larger than the context");
    free_weights(&c, &w);

    c = base_cfg("phi3"); /* phi3 with separate q/k/v: the fused tensor is required */
    c.neox = true;
    make_weights(&c, &w);
    write_model(&c, &w, path);
    expect_refused(path, LLMOS_ERR_FORMAT, "blk.0.attn_qkv.weight");
    free_weights(&c, &w);
    unlink(path);
}

/* ---- a BERT encoder ------------------------------------------------------------------------- */

enum { BD = 32, BH = 4, BFF = 64, BV = 30, BCTX = 16, BL = 2 };

typedef struct bert_w {
    float *tok, *pos, *type, *en_w, *en_b;
    float *wq[BL], *wk[BL], *wv[BL], *wo[BL], *bq[BL], *bk[BL], *bv[BL], *bo[BL];
    float *up[BL], *bup[BL], *down[BL], *bdown[BL], *an_w[BL], *an_b[BL], *on_w[BL], *on_b[BL];
    float *gate[BL], *qkv[BL]; /* nomic-bert: SwiGLU gate; the fused Q/K/V it is written with */
    bool nomic;                /* write and compute as nomic-bert: rotary, fused, gated, no biases */
} bert_w;

static void write_bert(bert_w *b, uint32_t pooling, const char *path)
{
    gguf_writer *g = NULL;
    assert_int_equal(gguf_writer_new(&g), LLMOS_OK);
    const char *arch = b->nomic ? "nomic-bert" : "bert";
    char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    assert_int_equal(gguf_set_str(g, "general.architecture", arch), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("block_count"), BL), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("embedding_length"), BD), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("feed_forward_length"), BFF), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("attention.head_count"), BH), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("context_length"), BCTX), LLMOS_OK);
    assert_int_equal(gguf_set_f32(g, KEY("attention.layer_norm_epsilon"), 1e-12f), LLMOS_OK);
    assert_int_equal(gguf_set_u32(g, KEY("pooling_type"), pooling), LLMOS_OK);
    assert_int_equal(gguf_set_bool(g, KEY("attention.causal"), false), LLMOS_OK);
    if (b->nomic)
        assert_int_equal(gguf_set_f32(g, KEY("rope.freq_base"), 1000.0f), LLMOS_OK);
#undef KEY
    uint64_t ne[2];
#define ADD(name, data, n0, n1)                                                                    \
    do {                                                                                           \
        ne[0] = (uint64_t)(n0);                                                                    \
        ne[1] = (uint64_t)(n1);                                                                    \
        assert_int_equal(gguf_add_tensor(g, name, GGML_TYPE_F32, (n1) > 1 ? 2 : 1, ne, data),      \
                         LLMOS_OK);                                                                \
    } while (0)
    ADD("token_embd.weight", b->tok, BD, BV);
    if (!b->nomic)
        ADD("position_embd.weight", b->pos, BD, BCTX);
    ADD("token_types.weight", b->type, BD, 2);
    ADD("token_embd_norm.weight", b->en_w, BD, 1);
    ADD("token_embd_norm.bias", b->en_b, BD, 1);
    for (int l = 0; l < BL; l++) {
        char n[64];
#define NAME(s) (snprintf(n, sizeof n, "blk.%d.%s", l, s), n)
        if (b->nomic) {
            b->qkv[l] = malloc(3 * BD * BD * sizeof(float));
            memcpy(b->qkv[l], b->wq[l], BD * BD * sizeof(float));
            memcpy(b->qkv[l] + BD * BD, b->wk[l], BD * BD * sizeof(float));
            memcpy(b->qkv[l] + 2 * BD * BD, b->wv[l], BD * BD * sizeof(float));
            ADD(NAME("attn_qkv.weight"), b->qkv[l], BD, 3 * BD);
            ADD(NAME("attn_output.weight"), b->wo[l], BD, BD);
            ADD(NAME("attn_output_norm.weight"), b->an_w[l], BD, 1);
            ADD(NAME("attn_output_norm.bias"), b->an_b[l], BD, 1);
            ADD(NAME("ffn_gate.weight"), b->gate[l], BD, BFF);
            ADD(NAME("ffn_up.weight"), b->up[l], BD, BFF);
            ADD(NAME("ffn_down.weight"), b->down[l], BFF, BD);
            ADD(NAME("layer_output_norm.weight"), b->on_w[l], BD, 1);
            ADD(NAME("layer_output_norm.bias"), b->on_b[l], BD, 1);
            continue;
        }
        ADD(NAME("attn_q.weight"), b->wq[l], BD, BD);
        ADD(NAME("attn_q.bias"), b->bq[l], BD, 1);
        ADD(NAME("attn_k.weight"), b->wk[l], BD, BD);
        ADD(NAME("attn_k.bias"), b->bk[l], BD, 1);
        ADD(NAME("attn_v.weight"), b->wv[l], BD, BD);
        ADD(NAME("attn_v.bias"), b->bv[l], BD, 1);
        ADD(NAME("attn_output.weight"), b->wo[l], BD, BD);
        ADD(NAME("attn_output.bias"), b->bo[l], BD, 1);
        ADD(NAME("attn_output_norm.weight"), b->an_w[l], BD, 1);
        ADD(NAME("attn_output_norm.bias"), b->an_b[l], BD, 1);
        ADD(NAME("ffn_up.weight"), b->up[l], BD, BFF);
        ADD(NAME("ffn_up.bias"), b->bup[l], BFF, 1);
        ADD(NAME("ffn_down.weight"), b->down[l], BFF, BD);
        ADD(NAME("ffn_down.bias"), b->bdown[l], BD, 1);
        ADD(NAME("layer_output_norm.weight"), b->on_w[l], BD, 1);
        ADD(NAME("layer_output_norm.bias"), b->on_b[l], BD, 1);
#undef NAME
    }
#undef ADD
    assert_int_equal(gguf_writer_write(g, path), LLMOS_OK);
    gguf_writer_free(g);
    for (int l = 0; l < BL; l++) {
        free(b->qkv[l]);
        b->qkv[l] = NULL;
    }
}

static void ref_layernorm(double *x, const float *w, const float *b, int n)
{
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    double inv = 1.0 / sqrt(var / n + 1e-12);
    for (int i = 0; i < n; i++)
        x[i] = (x[i] - mean) * inv * w[i] + b[i];
}

/* The BERT encoder in double; pooled (1 mean, 2 CLS) and normalised into out[BD]. */
static void ref_bert(const bert_w *b, const int32_t *toks, int n, int pooling, double *out)
{
    double x[BCTX][BD], q[BCTX][BD], k[BCTX][BD], v[BCTX][BD], a[BCTX][BD], h[BFF], o[BD];
    double nb = b->nomic ? 0 : 1; /* nomic-bert has no biases: weigh them by 0 */
    for (int t = 0; t < n; t++) {
        for (int i = 0; i < BD; i++)
            x[t][i] = (double)b->tok[toks[t] * BD + i] + nb * b->pos[t * BD + i] + b->type[i];
        ref_layernorm(x[t], b->en_w, b->en_b, BD);
    }
    int hd = BD / BH;
    for (int l = 0; l < BL; l++) {
        for (int t = 0; t < n; t++) {
            ref_matvec(q[t], b->wq[l], x[t], BD, BD);
            ref_matvec(k[t], b->wk[l], x[t], BD, BD);
            ref_matvec(v[t], b->wv[l], x[t], BD, BD);
            for (int i = 0; i < BD; i++)
                q[t][i] += nb * b->bq[l][i], k[t][i] += nb * b->bk[l][i],
                    v[t][i] += nb * b->bv[l][i];
            for (int hh = 0; b->nomic && hh < BH; hh++) /* rotary, halves of each head */
                for (int i = 0; i < hd / 2; i++) {
                    double th = t * pow(1000.0, -2.0 * i / hd), co = cos(th), si = sin(th);
                    double *pq = q[t] + hh * hd, *pk = k[t] + hh * hd;
                    double q0 = pq[i], q1 = pq[i + hd / 2], k0 = pk[i], k1 = pk[i + hd / 2];
                    pq[i] = q0 * co - q1 * si, pq[i + hd / 2] = q0 * si + q1 * co;
                    pk[i] = k0 * co - k1 * si, pk[i + hd / 2] = k0 * si + k1 * co;
                }
        }
        for (int t = 0; t < n; t++)
            for (int hh = 0; hh < BH; hh++) {
                double s[BCTX], mx = -INFINITY, sum = 0;
                for (int j = 0; j < n; j++) { /* every token sees every token */
                    s[j] = 0;
                    for (int i = 0; i < hd; i++)
                        s[j] += q[t][hh * hd + i] * k[j][hh * hd + i];
                    s[j] /= sqrt((double)hd);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < n; j++)
                    sum += s[j] = exp(s[j] - mx);
                for (int i = 0; i < hd; i++) {
                    a[t][hh * hd + i] = 0;
                    for (int j = 0; j < n; j++)
                        a[t][hh * hd + i] += s[j] / sum * v[j][hh * hd + i];
                }
            }
        for (int t = 0; t < n; t++) {
            ref_matvec(o, b->wo[l], a[t], BD, BD);
            for (int i = 0; i < BD; i++)
                x[t][i] += o[i] + nb * b->bo[l][i];
            ref_layernorm(x[t], b->an_w[l], b->an_b[l], BD);
            ref_matvec(h, b->up[l], x[t], BD, BFF);
            double gt[BFF];
            ref_matvec(gt, b->gate[l], x[t], BD, BFF);
            for (int i = 0; i < BFF; i++) {
                double g = h[i] + b->bup[l][i];
                h[i] = b->nomic ? gt[i] / (1 + exp(-gt[i])) * h[i]
                                : 0.5 * g * (1 + erf(g / sqrt(2.0)));
            }
            ref_matvec(o, b->down[l], h, BFF, BD);
            for (int i = 0; i < BD; i++)
                x[t][i] += o[i] + nb * b->bdown[l][i];
            ref_layernorm(x[t], b->on_w[l], b->on_b[l], BD);
        }
    }
    double norm = 0;
    for (int i = 0; i < BD; i++) {
        double s = 0;
        if (pooling == 2)
            s = x[0][i];
        else {
            for (int t = 0; t < n; t++)
                s += x[t][i];
            s /= n;
        }
        out[i] = s;
        norm += s * s;
    }
    for (int i = 0; i < BD; i++)
        out[i] /= sqrt(norm);
}

static void check_encoder(bool nomic)
{
    bert_w b = {.nomic = nomic};
    b.tok = rnd(BD * BV, 1.0f, 0);
    b.pos = rnd(BD * BCTX, 0.5f, 0);
    b.type = rnd(BD * 2, 0.5f, 0);
    b.en_w = rnd(BD, 0.2f, 1.0f);
    b.en_b = rnd(BD, 0.2f, 0);
    for (int l = 0; l < BL; l++) {
        b.wq[l] = rnd(BD * BD, 0.4f, 0), b.wk[l] = rnd(BD * BD, 0.4f, 0);
        b.wv[l] = rnd(BD * BD, 0.4f, 0), b.wo[l] = rnd(BD * BD, 0.3f, 0);
        b.bq[l] = rnd(BD, 0.3f, 0), b.bk[l] = rnd(BD, 0.3f, 0), b.bv[l] = rnd(BD, 0.3f, 0);
        b.bo[l] = rnd(BD, 0.3f, 0);
        b.up[l] = rnd(BD * BFF, 0.3f, 0), b.bup[l] = rnd(BFF, 0.3f, 0);
        b.down[l] = rnd(BD * BFF, 0.3f, 0), b.bdown[l] = rnd(BD, 0.3f, 0);
        b.an_w[l] = rnd(BD, 0.2f, 1.0f), b.an_b[l] = rnd(BD, 0.2f, 0);
        b.on_w[l] = rnd(BD, 0.2f, 1.0f), b.on_b[l] = rnd(BD, 0.2f, 0);
        b.gate[l] = rnd(BD * BFF, 0.3f, 0);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/bert.gguf", tmpdir);
    int32_t toks[BCTX] = {1, 5, 9, 2, 28, 14, 3, 3, 7, 0, 11, 2};
    for (uint32_t pooling = 1; pooling <= 2; pooling++) {
        write_bert(&b, pooling, path);
        llmos_model *m = load_ok(path);
        const model_hparams *hp = model_hparams_of(m);
        assert_int_equal(hp->arch, nomic ? MODEL_ARCH_NOMIC_BERT : MODEL_ARCH_BERT);
        assert_true(hp->encoder);
        /* an encoder does not generate */
        llmos_model_ctx *ctx = NULL;
        model_ctx_params p = model_ctx_default_params();
        assert_int_equal(model_ctx_new(m, &p, &ctx), LLMOS_ERR_UNSUPPORTED);
        assert_non_null(strstr(llmos_errmsg(), "embedding model"));
        model_batch *mb = NULL;
        model_batch_params bp = {.n_tokens = 8, .n_seqs = 2, .n_ctx = 8};
        assert_int_equal(model_batch_new(m, &bp, &mb), LLMOS_ERR_UNSUPPORTED);
        assert_null(mb);
        float got[BD];
        double want[BD];
        for (int n = 1; n <= 12; n += 11) {
            assert_int_equal(model_embed(m, NULL, toks, (size_t)n, got, BD), LLMOS_OK);
            ref_bert(&b, toks, n, (int)pooling, want);
            for (int i = 0; i < BD; i++)
                assert_float_equal(got[i], want[i], 1e-5);
        }
        /* bidirectional: with mean pooling, the first token's state depends on later ones */
        int32_t other[BCTX];
        memcpy(other, toks, sizeof other);
        other[11] = 19;
        float got2[BD];
        assert_int_equal(model_embed(m, NULL, other, 12, got2, BD), LLMOS_OK);
        ref_bert(&b, other, 12, (int)pooling, want);
        for (int i = 0; i < BD; i++)
            assert_float_equal(got2[i], want[i], 1e-5);
        assert_true(memcmp(got, got2, sizeof got) != 0);
        assert_int_equal(model_embed(m, NULL, toks, BCTX + 1, got, BD), LLMOS_ERR_LIMIT);

        /* a batch of texts stacked in one pass gives each text's own vector */
        int32_t stacked[3 * BCTX];
        size_t start[4] = {0, 12, 13, 25};
        memcpy(stacked, toks, 12 * sizeof *stacked);
        stacked[12] = 4;
        memcpy(stacked + 13, other, 12 * sizeof *stacked);
        float batch[3 * BD];
        assert_int_equal(model_embed_batch(m, NULL, stacked, start, 3, batch, BD), LLMOS_OK);
        for (int s = 0; s < 3; s++) {
            ref_bert(&b, stacked + start[s], (int)(start[s + 1] - start[s]), (int)pooling, want);
            for (int i = 0; i < BD; i++)
                assert_float_equal(batch[s * BD + i], want[i], 1e-5);
        }
        model_free(m);
    }
    unlink(path);
    float *all[] = {b.tok, b.pos, b.type, b.en_w, b.en_b};
    for (size_t i = 0; i < 5; i++)
        free(all[i]);
    for (int l = 0; l < BL; l++) {
        float *lw[] = {b.wq[l], b.wk[l],  b.wv[l],    b.wo[l],   b.bq[l],   b.bk[l],
                       b.bv[l], b.bo[l],  b.up[l],    b.bup[l],  b.down[l], b.bdown[l],
                       b.an_w[l], b.an_b[l], b.on_w[l], b.on_b[l], b.gate[l]};
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
            free(lw[i]);
    }
}

/* BERT (BGE's layout): absolute positions, biases, GELU. */
static void bert_matches_reference(void **state)
{
    (void)state;
    check_encoder(false);
}

/* nomic-bert: rotary positions, fused QKV, SwiGLU, no biases. */
static void nomic_bert_matches_reference(void **state)
{
    (void)state;
    check_encoder(true);
}

/* A BGE-layout file with the real BGE vocabulary, opened as a local backend: embeddings are
 * the encoder's pooled vector of [CLS] text [SEP] (what /v1/embeddings and memory get), and
 * chat is refused with a message that says why. */
static void bge_local_backend_embeds(void **state)
{
    (void)state;
    char vocab[4096], path[4200];
    tu_testdata_path(vocab, sizeof vocab, "vocab/ggml-vocab-bert-bge.gguf");
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    snprintf(path, sizeof path, "%s/bge-tiny.gguf", tmpdir);
    llmos_buf out = {0}, err = {0};
    if (tu_run_llmos(&out, &err,
                     "model make-random --dims 32,2,4,4,64,64 --arch bert --vocab-from '%s' "
                     "--type f32 %s",
                     vocab, path) != 0)
        fail_msg("make-random: %s", err.data);
    buf_free(&out);
    buf_free(&err);

    llm_backend *b = NULL;
    local_backend_params p = local_backend_default_params();
    p.n_threads = 1;
    assert_int_equal(local_backend_open(path, &p, &b), LLMOS_OK);
    assert_int_equal(llm_context_size(b), 64);
    float *v = NULL;
    size_t dim = 0;
    const char *text = "Hello, World!";
    assert_int_equal(llm_embed(b, text, strlen(text), &v, &dim), LLMOS_OK);
    assert_int_equal(dim, 32);

    /* the same as model_embed over [CLS] hello , world ! [SEP] */
    llmos_model *m = load_ok(path);
    tokenizer *t = NULL;
    assert_int_equal(tok_load_gguf(model_gguf(m), NULL, &t), LLMOS_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(t, text, strlen(text), TOK_ADD_SPECIAL, &ids, &n), LLMOS_OK);
    assert_int_equal(n, 6);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[5], 102);
    float want[32];
    assert_int_equal(model_embed(m, NULL, ids, n, want, 32), LLMOS_OK);
    double norm = 0;
    for (int i = 0; i < 32; i++) {
        assert_float_equal(v[i], want[i], 1e-6);
        norm += (double)v[i] * v[i];
    }
    assert_float_equal(norm, 1.0, 1e-5);
    free(ids);
    tok_free(t);
    model_free(m);
    free(v);

    llm_request req = llm_request_default();
    req.prompt = "hi";
    llm_response resp;
    memset(&resp, 0, sizeof resp);
    assert_int_equal(llm_chat(b, &req, NULL, NULL, &resp), LLMOS_ERR_UNSUPPORTED);
    assert_non_null(strstr(llmos_errmsg(), "embedding model"));
    llm_response_free(&resp);
    /* no KV cache to save; stats are empty, not a crash */
    llmos_buf kv = {0};
    assert_int_equal(llm_kv_save(b, "s", &kv), LLMOS_ERR_UNSUPPORTED);
    buf_free(&kv);
    assert_int_equal(llm_kv_forget(b, "s"), 0);
    llm_stats st;
    assert_int_equal(llm_get_stats(b, &st), LLMOS_OK);
    assert_int_equal(st.tokens, 0);
    llm_backend_free(b);
    unlink(path);
}

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/llmos-test-arch-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    rmdir(tmpdir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arch_ops_match_formulas),
        cmocka_unit_test(llama_rope_freqs_matches_reference),
        cmocka_unit_test(qwen3_matches_reference),
        cmocka_unit_test(gemma2_matches_reference),
        cmocka_unit_test(gemma3_matches_reference),
        cmocka_unit_test(phi3_matches_reference),
        cmocka_unit_test(gemma2_hand_checked),
        cmocka_unit_test(sliding_window_ignores_tokens_outside),
        cmocka_unit_test(qk_norm_ignores_projection_scale),
        cmocka_unit_test(fused_tensors_quantized),
        cmocka_unit_test(bad_models_refused),
        cmocka_unit_test(bert_matches_reference),
        cmocka_unit_test(nomic_bert_matches_reference),
        cmocka_unit_test(bge_local_backend_embeds),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
