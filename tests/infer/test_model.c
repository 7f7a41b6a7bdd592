/*
 * test_model.c - the forward pass against an independent implementation, and its edges.
 *
 * stories260K (a trained llama2.c model, shared test data) must reproduce llama2.c's 64
 * greedy tokens exactly and all 512 logits of three sequences within 1e-4, whether a prompt
 * is evaluated as one batch, in small batches, token by token, or on several threads. The
 * same weights converted to F16 and BF16 (with the GGUF writer) must keep the top-1 token at
 * every position of the reference continuation, with logit errors bounded as the formats'
 * precision predicts. Tiny qwen2 models built here exercise biases, NEOX rope, tied output
 * and grouped-query attention: determinism, batched == sequential, one case checked by hand,
 * and the errors a user meets (context exceeded, bad token, unknown architecture, missing
 * tensor).
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

#include "llmos/gguf.h"
#include "llmos/infer.h"
#include "testutil.h"

/* ---- reference data ---------------------------------------------------------------------- */

#define N_VOCAB 512
#define MAX_SEQ 128

typedef struct reference {
    int32_t greedy[64];
    int32_t seq[3][MAX_SEQ];
    size_t seq_len[3];
    float logits[3][N_VOCAB];
} reference;

static reference ref;
static char model_path[4096];
static char tmpdir[4096];

static size_t parse_ids(const char *s, int32_t *out, size_t max)
{
    size_t n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || n == max)
            return n;
        out[n++] = (int32_t)v;
        s = end;
    }
}

static int load_reference(void **state)
{
    (void)state;
    char path[4200], logits_path[4200];
    if (!tu_testdata_find(model_path, sizeof model_path, "models/stories260K.gguf") ||
        !tu_testdata_find(path, sizeof path, "models/stories260K.expected.txt") ||
        !tu_testdata_find(logits_path, sizeof logits_path, "models/stories260K.logits.txt")) {
        model_path[0] = 0;
        return 0;
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "greedy_tokens:", 14) == 0)
            assert_int_equal(parse_ids(line + 14, ref.greedy, 64), 64);
        for (int i = 0; i < 3; i++) {
            char key[32];
            snprintf(key, sizeof key, "seq%d_tokens:", i + 1);
            if (strncmp(line, key, strlen(key)) == 0)
                ref.seq_len[i] = parse_ids(line + strlen(key), ref.seq[i], MAX_SEQ);
        }
    }
    fclose(f);
    f = fopen(logits_path, "r");
    assert_non_null(f);
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        int s, id;
        float v;
        if (sscanf(line, "seq%d %d %f", &s, &id, &v) == 3 && s >= 1 && s <= 3 && id >= 0 &&
            id < N_VOCAB) {
            ref.logits[s - 1][id] = v;
            n++;
        }
    }
    fclose(f);
    assert_int_equal(n, 3 * N_VOCAB);
    assert_int_equal(ref.seq_len[0], 1);
    assert_int_equal(ref.seq_len[1], 10);
    assert_int_equal(ref.seq_len[2], 128);
    return 0;
}

/* Skip the test without the model and its references; with them, setup has read them. */
static void need_testdata(void)
{
    char path[4200];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    tu_testdata_path(path, sizeof path, "models/stories260K.expected.txt");
    tu_testdata_path(path, sizeof path, "models/stories260K.logits.txt");
    assert_true(model_path[0]);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static llmos_model *load(const char *path)
{
    llmos_model *m = NULL;
    llmos_err err = model_load(path, &m);
    if (err)
        fprintf(stderr, "model_load: %s\n", llmos_errmsg());
    assert_int_equal(err, LLMOS_OK);
    return m;
}

static llmos_model_ctx *new_ctx(const llmos_model *m, uint32_t n_batch, llmos_pool *pool)
{
    model_ctx_params p = model_ctx_default_params();
    p.n_batch = n_batch;
    p.pool = pool;
    llmos_model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(m, &p, &c), LLMOS_OK);
    return c;
}

static int32_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) /* NaN counts as infinitely wrong */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* Logits after evaluating tokens[0..n) in a fresh context, in pieces of `step` tokens. */
static void eval_seq(const llmos_model *m, const int32_t *tokens, size_t n, size_t step,
                     uint32_t n_batch, llmos_pool *pool, float *out, size_t n_vocab)
{
    llmos_model_ctx *c = new_ctx(m, n_batch, pool);
    const float *logits = NULL;
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        assert_int_equal(model_eval(c, tokens + i, k, &logits), LLMOS_OK);
    }
    assert_int_equal(model_ctx_pos(c), n);
    memcpy(out, logits, n_vocab * sizeof(float));
    model_ctx_free(c);
}

/* ---- stories260K ------------------------------------------------------------------------- */

static void test_stories_hparams(void **state)
{
    (void)state;
    need_testdata();
    llmos_model *m = load(model_path);
    const model_hparams *hp = model_hparams_of(m);
    assert_int_equal(hp->arch, MODEL_ARCH_LLAMA);
    assert_int_equal(hp->n_vocab, 512);
    assert_int_equal(hp->n_embd, 64);
    assert_int_equal(hp->n_layer, 5);
    assert_int_equal(hp->n_head, 8);
    assert_int_equal(hp->n_head_kv, 4);
    assert_int_equal(hp->n_ff, 172);
    assert_int_equal(hp->n_ctx_train, 512);
    assert_int_equal(hp->rope_dim, 8);
    assert_true(hp->tied_output);
    assert_false(hp->qkv_bias);
    assert_int_equal(hp->weight_type, GGML_TYPE_F32);
    model_free(m);
}

static void test_stories_greedy(void **state)
{
    (void)state;
    need_testdata();
    llmos_model *m = load(model_path);
    llmos_model_ctx *c = new_ctx(m, 64, NULL);
    int32_t tok = 1; /* BOS at position 0 */
    for (int i = 0; i < 64; i++) {
        const float *logits;
        assert_int_equal(model_eval(c, &tok, 1, &logits), LLMOS_OK);
        tok = argmax(logits, N_VOCAB);
        if (tok != ref.greedy[i])
            fail_msg("greedy step %d: got %d, llama2.c chose %d", i, tok, ref.greedy[i]);
    }
    model_ctx_free(c);
    model_free(m);
}

static void test_stories_logits(void **state)
{
    (void)state;
    need_testdata();
    llmos_model *m = load(model_path);
    llmos_pool *pool = NULL;
    assert_int_equal(pool_new(2, &pool), LLMOS_OK);
    float batched[N_VOCAB], seq[N_VOCAB], small[N_VOCAB], threaded[N_VOCAB];
    for (int s = 0; s < 3; s++) {
        const int32_t *toks = ref.seq[s];
        size_t n = ref.seq_len[s];
        eval_seq(m, toks, n, n, 64, NULL, batched, N_VOCAB);  /* whole prompt, batches of 64 */
        eval_seq(m, toks, n, 1, 64, NULL, seq, N_VOCAB);      /* one token per call */
        eval_seq(m, toks, n, 7, 5, NULL, small, N_VOCAB);     /* odd pieces and batches */
        eval_seq(m, toks, n, n, 64, pool, threaded, N_VOCAB); /* two threads */
        double d_ref = max_abs_diff(batched, ref.logits[s], N_VOCAB);
        double d_seq = max_abs_diff(batched, seq, N_VOCAB);
        double d_small = max_abs_diff(batched, small, N_VOCAB);
        double d_thr = max_abs_diff(batched, threaded, N_VOCAB);
        printf("seq%d (%zu tokens): max |logit - llama2.c| = %.2e; batched vs token by token "
               "%.2e, vs small batches %.2e, vs 2 threads %.2e\n",
               s + 1, n, d_ref, d_seq, d_small, d_thr);
        assert_true(d_ref < 1e-4);
        assert_true(d_seq < 1e-5);
        assert_true(d_small < 1e-5);
        assert_true(d_thr < 1e-5);
    }
    pool_free(pool);
    model_free(m);
}

/* Write a copy of the model at `src` whose matrices are in `type` (norms stay F32, as the
 * usual converters keep them). */
static void convert_model(const char *src, const char *dst, ggml_type type)
{
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(src, &f), LLMOS_OK);
    gguf_writer *w = NULL;
    assert_int_equal(gguf_writer_new(&w), LLMOS_OK);
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        assert_int_equal(gguf_set_from(w, gguf_key(f, i), f, (int64_t)i), LLMOS_OK);
    size_t nt = gguf_n_tensors(f);
    void **bufs = calloc(nt, sizeof *bufs);
    const quant_traits *tr = quant_traits_of(type);
    for (size_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        assert_int_equal(t->type, GGML_TYPE_F32);
        ggml_type to = t->n_dims >= 2 ? type : GGML_TYPE_F32;
        const void *data = t->data;
        if (to != GGML_TYPE_F32) {
            float *tmp = malloc(t->n_elements * sizeof(float));
            memcpy(tmp, t->data, t->n_elements * sizeof(float));
            bufs[i] = malloc(t->n_elements * tr->type_size);
            tr->from_float(tmp, bufs[i], t->n_elements);
            free(tmp);
            data = bufs[i];
        }
        assert_int_equal(gguf_add_tensor(w, t->name, to, t->n_dims, t->ne, data), LLMOS_OK);
    }
    assert_int_equal(gguf_writer_write(w, dst), LLMOS_OK);
    gguf_writer_free(w);
    for (size_t i = 0; i < nt; i++)
        free(bufs[i]);
    free(bufs);
    gguf_close(f);
}

/* Largest minus second-largest logit. */
static double top_margin(const float *x, size_t n)
{
    int32_t best = argmax(x, n);
    double second = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if ((int32_t)i != best && x[i] > second)
            second = x[i];
    return x[best] - second;
}

/* Convert stories260K's matrices to `type` and compare with the F32 model, teacher-forced
 * along BOS + the reference greedy tokens (64 positions) and on seq1..seq3.
 *
 * Tolerance: F16 and BF16 round each weight and, because their kernels dot in the same
 * format, each activation entering a matmul, with unit roundoff u = 2^-11 (F16) or 2^-8
 * (BF16). These errors pass through 5 layers; the measured logit error is about 14u (F16)
 * and 9u (BF16) times the largest |logit| (~10). The bound is 32u * max|logit|: a 2-3x margin
 * over what was measured, scaled correctly between the two formats.
 *
 * Top-1: a near tie can flip legitimately (the error bound exceeds the gap), so the top-1
 * token must agree with the F32 model wherever the F32 gap between the best two logits is
 * larger than twice the bound; all other positions are counted and printed. */
static void check_converted(ggml_type type, double u)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/stories-%s.gguf", tmpdir, quant_type_name(type));
    convert_model(model_path, path, type);
    llmos_model *m = load(path), *m32 = load(model_path);
    assert_int_equal(model_hparams_of(m)->weight_type, type);

    llmos_model_ctx *c = new_ctx(m, 64, NULL), *c32 = new_ctx(m32, 64, NULL);
    int32_t tok = 1;
    int agree = 0, near_ties = 0;
    double worst = 0, worst_tol = 1e30;
    for (int i = 0; i < 64; i++) {
        const float *lo, *l32;
        assert_int_equal(model_eval(c, &tok, 1, &lo), LLMOS_OK);
        assert_int_equal(model_eval(c32, &tok, 1, &l32), LLMOS_OK);
        double scale = 0;
        for (size_t j = 0; j < N_VOCAB; j++)
            scale = fabs(l32[j]) > scale ? fabs(l32[j]) : scale;
        double tol = 32 * u * scale, d = max_abs_diff(lo, l32, N_VOCAB);
        if (d / tol > worst / worst_tol) {
            worst = d;
            worst_tol = tol;
        }
        assert_true(d < tol);
        bool same = argmax(lo, N_VOCAB) == argmax(l32, N_VOCAB);
        agree += same;
        if (top_margin(l32, N_VOCAB) > 2 * tol)
            assert_true(same);
        else
            near_ties++;
        tok = ref.greedy[i];
    }
    model_ctx_free(c);
    model_ctx_free(c32);

    double worst_seq = 0;
    for (int s = 0; s < 3; s++) {
        float out[N_VOCAB];
        eval_seq(m, ref.seq[s], ref.seq_len[s], ref.seq_len[s], 64, NULL, out, N_VOCAB);
        double scale = 0;
        for (size_t j = 0; j < N_VOCAB; j++)
            scale = fabs(ref.logits[s][j]) > scale ? fabs(ref.logits[s][j]) : scale;
        double d = max_abs_diff(out, ref.logits[s], N_VOCAB);
        worst_seq = d > worst_seq ? d : worst_seq;
        assert_true(d < 32 * u * scale);
        assert_int_equal(argmax(out, N_VOCAB), argmax(ref.logits[s], N_VOCAB));
    }
    printf("%s weights: top-1 equal to F32 at %d of 64 greedy positions (%d near ties, gap < "
           "2x bound); max |logit diff| %.3e (bound there %.3e), seq1..3 vs llama2.c %.3e\n",
           quant_type_name(type), agree, near_ties, worst, worst_tol, worst_seq);
    assert_true(agree >= 60); /* flips are rare even among near ties */
    model_free(m);
    model_free(m32);
    unlink(path);
}

static void test_stories_f16(void **state)
{
    (void)state;
    need_testdata();
    check_converted(GGML_TYPE_F16, 1.0 / 2048);
}

static void test_stories_bf16(void **state)
{
    (void)state;
    need_testdata();
    check_converted(GGML_TYPE_BF16, 1.0 / 256);
}

static void test_stories_f16_kv_cache(void **state)
{
    (void)state;
    need_testdata();
    /* an F16 KV cache: llama.cpp's default, within 2.5e-2 there per the data's notes */
    llmos_model *m = load(model_path);
    model_ctx_params p = model_ctx_default_params();
    p.kv_type = GGML_TYPE_F16;
    llmos_model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(m, &p, &c), LLMOS_OK);
    const float *logits;
    assert_int_equal(model_eval(c, ref.seq[2], ref.seq_len[2], &logits), LLMOS_OK);
    double d = max_abs_diff(logits, ref.logits[2], N_VOCAB);
    printf("F16 KV cache: seq3 max |logit - llama2.c| = %.3e\n", d);
    assert_true(d < 2.5e-2);
    assert_int_equal(argmax(logits, N_VOCAB), argmax(ref.logits[2], N_VOCAB));
    model_ctx_free(c);
    model_free(m);
}

static void test_context_limit(void **state)
{
    (void)state;
    need_testdata();
    llmos_model *m = load(model_path);
    model_ctx_params p = model_ctx_default_params();
    llmos_model_ctx *c = NULL;
    p.n_ctx = 513; /* more than the model's 512 */
    assert_int_equal(model_ctx_new(m, &p, &c), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "context_length"));
    assert_null(c);

    p.n_ctx = 16;
    assert_int_equal(model_ctx_new(m, &p, &c), LLMOS_OK);
    assert_int_equal(model_ctx_size(c), 16);
    int32_t toks[17];
    for (int i = 0; i < 17; i++)
        toks[i] = 1 + i;
    assert_int_equal(model_eval(c, toks, 12, NULL), LLMOS_OK);
    const float *logits = (const float *)1;
    assert_int_equal(model_eval(c, toks, 5, &logits), LLMOS_ERR_LIMIT);
    assert_null(logits);
    assert_non_null(strstr(llmos_errmsg(), "context length 16 exceeded"));
    assert_int_equal(model_ctx_pos(c), 12); /* unchanged by the failed call */
    assert_int_equal(model_eval(c, toks, 4, NULL), LLMOS_OK);

    /* rewinding frees room, and gives the same logits as before */
    model_ctx_truncate(c, 1);
    assert_int_equal(model_eval(c, &ref.seq[1][1], 9, &logits), LLMOS_OK);
    assert_true(max_abs_diff(logits, ref.logits[1], N_VOCAB) < 1e-4);

    int32_t bad = 512;
    assert_int_equal(model_eval(c, &bad, 1, NULL), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "outside the vocabulary"));
    model_ctx_free(c);
    model_free(m);
    model_ctx_free(NULL);
    model_free(NULL);
}

/* ---- tiny qwen2 models built here -------------------------------------------------------- */

enum { QD = 32, QL = 2, QH = 4, QKV = 2, QFF = 48, QV = 50, QCTX = 40, QHD = QD / QH };

typedef struct tiny_model {
    float emb[QV * QD], norm[QD];
    float wq[QL][QD * QD], wk[QL][QKV * QHD * QD], wv[QL][QKV * QHD * QD], wo[QL][QD * QD];
    float bq[QL][QD], bk[QL][QKV * QHD], bv[QL][QKV * QHD];
    float gate[QL][QFF * QD], up[QL][QFF * QD], down[QL][QD * QFF];
    float attn_norm[QL][QD], ffn_norm[QL][QD];
} tiny_model;

static uint64_t rs = 88172645463325252ULL;
static float frand(float scale)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return scale * ((float)((rs >> 40) * (1.0 / 8388608.0)) - 1.0f);
}

static void randomize(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand(scale);
}

static void write_tiny(const tiny_model *t, const char *arch, uint32_t n_layers, bool drop_one,
                       const char *path)
{
    gguf_writer *w = NULL;
    assert_int_equal(gguf_writer_new(&w), LLMOS_OK);
    char key[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    assert_int_equal(gguf_set_str(w, "general.architecture", arch), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, KEY("block_count"), n_layers), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, KEY("embedding_length"), QD), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, KEY("feed_forward_length"), QFF), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, KEY("attention.head_count"), QH), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, KEY("attention.head_count_kv"), QKV), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, KEY("context_length"), QCTX), LLMOS_OK);
    assert_int_equal(gguf_set_f32(w, KEY("rope.freq_base"), 1000000.0f), LLMOS_OK);
    assert_int_equal(gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-6f), LLMOS_OK);
#undef KEY
    uint64_t ne[2];
#define ADD(name, data, n0, n1)                                                                    \
    do {                                                                                           \
        ne[0] = (n0);                                                                              \
        ne[1] = (n1);                                                                              \
        assert_int_equal(gguf_add_tensor(w, name, GGML_TYPE_F32, (n1) > 1 ? 2 : 1, ne, data),      \
                         LLMOS_OK);                                                                \
    } while (0)
    ADD("token_embd.weight", t->emb, QD, QV);
    ADD("output_norm.weight", t->norm, QD, 1);
    for (uint32_t l = 0; l < n_layers; l++) {
        char n[64];
#define NAME(s) (snprintf(n, sizeof n, "blk.%u.%s", l, s), n)
        ADD(NAME("attn_norm.weight"), t->attn_norm[l], QD, 1);
        ADD(NAME("ffn_norm.weight"), t->ffn_norm[l], QD, 1);
        ADD(NAME("attn_q.weight"), t->wq[l], QD, QD);
        if (!drop_one)
            ADD(NAME("attn_k.weight"), t->wk[l], QD, QKV * QHD);
        ADD(NAME("attn_v.weight"), t->wv[l], QD, QKV * QHD);
        ADD(NAME("attn_output.weight"), t->wo[l], QD, QD);
        ADD(NAME("attn_q.bias"), t->bq[l], QD, 1);
        ADD(NAME("attn_k.bias"), t->bk[l], QKV * QHD, 1);
        ADD(NAME("attn_v.bias"), t->bv[l], QKV * QHD, 1);
        ADD(NAME("ffn_gate.weight"), t->gate[l], QD, QFF);
        ADD(NAME("ffn_up.weight"), t->up[l], QD, QFF);
        ADD(NAME("ffn_down.weight"), t->down[l], QFF, QD);
#undef NAME
    }
#undef ADD
    assert_int_equal(gguf_writer_write(w, path), LLMOS_OK);
    gguf_writer_free(w);
}

static tiny_model *random_tiny(void)
{
    tiny_model *t = calloc(1, sizeof *t);
    randomize(t->emb, QV * QD, 1.0f);
    for (int i = 0; i < QD; i++)
        t->norm[i] = 1.0f;
    for (int l = 0; l < QL; l++) {
        randomize(t->wq[l], QD * QD, 0.3f);
        randomize(t->wk[l], QKV * QHD * QD, 0.3f);
        randomize(t->wv[l], QKV * QHD * QD, 0.3f);
        randomize(t->wo[l], QD * QD, 0.3f);
        randomize(t->bq[l], QD, 0.5f);
        randomize(t->bk[l], QKV * QHD, 0.5f);
        randomize(t->bv[l], QKV * QHD, 0.5f);
        randomize(t->gate[l], QFF * QD, 0.3f);
        randomize(t->up[l], QFF * QD, 0.3f);
        randomize(t->down[l], QD * QFF, 0.3f);
        for (int i = 0; i < QD; i++)
            t->attn_norm[l][i] = t->ffn_norm[l][i] = 1.0f + frand(0.2f);
    }
    return t;
}

static void test_qwen2_random(void **state)
{
    (void)state;
    tiny_model *t = random_tiny();
    char path[4200];
    snprintf(path, sizeof path, "%s/qwen2-tiny.gguf", tmpdir);
    write_tiny(t, "qwen2", QL, false, path);
    llmos_model *m = load(path), *m2 = load(path);
    const model_hparams *hp = model_hparams_of(m);
    assert_int_equal(hp->arch, MODEL_ARCH_QWEN2);
    assert_true(hp->tied_output);
    assert_true(hp->qkv_bias);
    assert_int_equal(hp->n_head_kv, QKV);
    assert_float_equal(hp->rope_freq_base, 1e6, 0);

    int32_t toks[QCTX];
    for (int i = 0; i < QCTX; i++)
        toks[i] = (i * 17 + 3) % QV;
    float a[QV], b[QV], c[QV], d[QV];
    eval_seq(m, toks, QCTX, QCTX, 64, NULL, a, QV); /* the whole context as one batch */
    eval_seq(m, toks, QCTX, 1, 64, NULL, b, QV);    /* token by token */
    eval_seq(m2, toks, QCTX, 3, 4, NULL, c, QV);    /* another load, other batching */
    llmos_pool *pool = NULL;
    assert_int_equal(pool_new(3, &pool), LLMOS_OK);
    eval_seq(m, toks, QCTX, QCTX, 16, pool, d, QV);
    pool_free(pool);
    for (int i = 0; i < QV; i++)
        assert_true(isfinite(a[i]));
    assert_true(max_abs_diff(a, b, QV) < 1e-5);
    assert_true(max_abs_diff(a, c, QV) < 1e-5);
    assert_true(max_abs_diff(a, d, QV) < 1e-5);
    /* the logits depend on the tokens (the model is not degenerate) */
    toks[QCTX - 2] = (toks[QCTX - 2] + 1) % QV;
    eval_seq(m, toks, QCTX, QCTX, 64, NULL, b, QV);
    assert_true(max_abs_diff(a, b, QV) > 1e-3);

    /* the whole context fits, one more token does not */
    llmos_model_ctx *ctx = new_ctx(m, 64, NULL);
    assert_int_equal(model_eval(ctx, toks, QCTX, NULL), LLMOS_OK);
    assert_int_equal(model_eval(ctx, toks, 1, NULL), LLMOS_ERR_LIMIT);
    model_ctx_free(ctx);
    model_free(m);
    model_free(m2);
    free(t);
    unlink(path);
}

/* One layer whose attention sees q = 0 (so it averages v uniformly), v = bias only, Wo = I, and
 * an FFN that adds nothing: x_out = emb[tok] + concat_h bv[group(h)]. The logits are then
 * emb . (rmsnorm(x_out) * norm), computed here by hand, at every position. */
static void test_qwen2_hand_checked(void **state)
{
    (void)state;
    tiny_model *t = calloc(1, sizeof *t);
    randomize(t->emb, QV * QD, 1.0f);
    randomize(t->bv[0], QKV * QHD, 1.0f);
    randomize(t->bk[0], QKV * QHD, 1.0f); /* keys differ, but q = 0 makes them irrelevant */
    randomize(t->wk[0], QKV * QHD * QD, 1.0f);
    randomize(t->gate[0], QFF * QD, 1.0f); /* down = 0 cancels the FFN */
    for (int i = 0; i < QD; i++) {
        t->wo[0][i * QD + i] = 1.0f;
        t->norm[i] = 0.5f + 0.01f * (float)i;
        t->attn_norm[0][i] = t->ffn_norm[0][i] = 1.0f;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/qwen2-hand.gguf", tmpdir);
    write_tiny(t, "qwen2", 1, false, path);
    llmos_model *m = load(path);
    llmos_model_ctx *c = new_ctx(m, 64, NULL);
    int32_t toks[5] = {3, 7, 7, 11, 42};
    for (int p = 0; p < 5; p++) {
        const float *logits;
        assert_int_equal(model_eval(c, &toks[p], 1, &logits), LLMOS_OK);
        double x[QD], ss = 0;
        for (int i = 0; i < QD; i++) {
            int h = i / QHD, g = h / (QH / QKV);
            x[i] = t->emb[toks[p] * QD + i] + t->bv[0][g * QHD + i % QHD];
            ss += x[i] * x[i];
        }
        double inv = 1.0 / sqrt(ss / QD + 1e-6);
        for (int j = 0; j < QV; j++) {
            double want = 0;
            for (int i = 0; i < QD; i++)
                want += (double)t->emb[j * QD + i] * x[i] * inv * t->norm[i];
            assert_float_equal(logits[j], want, 1e-4);
        }
    }
    model_ctx_free(c);
    model_free(m);
    free(t);
    unlink(path);
}

static void test_load_errors(void **state)
{
    (void)state;
    tiny_model *t = random_tiny();
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.gguf", tmpdir);
    llmos_model *m = (llmos_model *)&m;

    write_tiny(t, "gpt2", 1, false, path);
    assert_int_equal(model_load(path, &m), LLMOS_ERR_UNSUPPORTED);
    assert_null(m);
    assert_non_null(strstr(llmos_errmsg(), "'gpt2'"));

    write_tiny(t, "qwen2", 1, true, path);
    assert_int_equal(model_load(path, &m), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "blk.0.attn_k.weight"));

    /* a llama model that claims two layers but holds the tensors of one */
    write_tiny(t, "llama", 1, false, path);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open(path, &f), LLMOS_OK);
    gguf_writer *w = NULL;
    assert_int_equal(gguf_writer_new(&w), LLMOS_OK);
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        assert_int_equal(gguf_set_from(w, gguf_key(f, i), f, (int64_t)i), LLMOS_OK);
    assert_int_equal(gguf_set_u32(w, "llama.block_count", 2), LLMOS_OK);
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *x = gguf_tensor_at(f, i);
        assert_int_equal(gguf_add_tensor(w, x->name, x->type, x->n_dims, x->ne, x->data), LLMOS_OK);
    }
    char path2[4300];
    snprintf(path2, sizeof path2, "%s/bad2.gguf", tmpdir);
    assert_int_equal(gguf_writer_write(w, path2), LLMOS_OK);
    gguf_writer_free(w);
    gguf_close(f);
    assert_int_equal(model_load(path2, &m), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "llama.block_count is 2"));
    assert_int_equal(model_load("/nonexistent/model.gguf", &m), LLMOS_ERR_NOT_FOUND);
    unlink(path);
    unlink(path2);
    free(t);
}

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/llmos-test-model-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
    return load_reference(state);
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
        cmocka_unit_test(test_stories_hparams),    cmocka_unit_test(test_stories_greedy),
        cmocka_unit_test(test_stories_logits),     cmocka_unit_test(test_stories_f16),
        cmocka_unit_test(test_stories_bf16),       cmocka_unit_test(test_stories_f16_kv_cache),
        cmocka_unit_test(test_context_limit),      cmocka_unit_test(test_qwen2_random),
        cmocka_unit_test(test_qwen2_hand_checked), cmocka_unit_test(test_load_errors),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
