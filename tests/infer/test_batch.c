/*
 * test_batch.c - one forward pass over several sequences (model_eval_batch) against each
 * sequence evaluated alone (model_eval).
 *
 * Greedy decoding of several different prompts, batched, must give the same tokens as
 * decoding each prompt in a context of its own, and logits within float rounding: on
 * stories260K (a trained llama2.c model, shared test data) and on random-weight models made
 * with `llmos model make-random` (llama with grouped-query attention quantized to Q4_0, so
 * that the packed matmul kernels take many rows; qwen2 with biases and NEOX rope in F16).
 * Batches mix prompt chunks with single decode tokens and sequences of different lengths
 * start at different steps. The errors leave every context as it was.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/infer.h"
#include "testutil.h"

#define N_SEQS  5
#define N_GEN   24
#define MAX_LEN 200

static char stories[4096];
static char tmpdir[4096];
static char llama_q4[4200], qwen_f16[4200];

static int make_models(void **state)
{
    (void)state;
    (void)tu_testdata_find(stories, sizeof stories, "models/stories260K.gguf");
    char vocab[4096], f32[4300];
    if (!tu_testdata_find(vocab, sizeof vocab, "vocab/ggml-vocab-llama-spm.gguf") ||
        !getenv("LLMOS_BIN") || !tu_mkdtemp("batch", tmpdir, sizeof tmpdir))
        return 0;
    snprintf(f32, sizeof f32, "%s/llama.gguf", tmpdir);
    snprintf(llama_q4, sizeof llama_q4, "%s/llama-q4_0.gguf", tmpdir);
    snprintf(qwen_f16, sizeof qwen_f16, "%s/qwen.gguf", tmpdir);
    if (tu_run_llmos(NULL, NULL,
                     "model make-random --arch llama --dims 128,3,8,2,256,512 --seed 3 "
                     "--type f32 --vocab-from '%s' '%s'",
                     vocab, f32) != 0 ||
        tu_run_llmos(NULL, NULL, "model quantize '%s' '%s' q4_0", f32, llama_q4) != 0)
        llama_q4[0] = 0;
    if (tu_run_llmos(NULL, NULL,
                     "model make-random --arch qwen2 --dims 64,2,4,2,128,512 --seed 5 "
                     "--type f16 --vocab-from '%s' '%s'",
                     vocab, qwen_f16) != 0)
        qwen_f16[0] = 0;
    return 0;
}

static int remove_models(void **state)
{
    (void)state;
    if (tmpdir[0])
        tu_rmrf(tmpdir);
    return 0;
}

static llmos_model *load(const char *path)
{
    llmos_model *m = NULL;
    llmos_err err = model_load(path, &m);
    if (err)
        fprintf(stderr, "model_load: %s\n", llmos_errmsg());
    assert_int_equal(err, LLMOS_OK);
    return m;
}

static llmos_model_ctx *new_ctx(const llmos_model *m, uint32_t n_ctx, uint32_t n_batch,
                                llmos_pool *pool)
{
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = n_ctx;
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
        if (!(d <= m))
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

/* Prompt i: a different length and different tokens for each sequence. */
static size_t make_prompt(size_t i, uint32_t n_vocab, int32_t *out)
{
    static const size_t lens[N_SEQS] = {1, 7, 70, 23, 130};
    uint32_t x = 2166136261u ^ (uint32_t)(i * 7919);
    out[0] = 1;
    for (size_t t = 1; t < lens[i]; t++) {
        x = x * 1664525u + 1013904223u;
        out[t] = (int32_t)(2 + (x >> 8) % (n_vocab - 2));
    }
    return lens[i];
}

typedef struct seq_run {
    int32_t prompt[MAX_LEN];
    size_t n_prompt;
    int32_t gen[N_GEN];
    float *first_logits; /* after the prompt */
} seq_run;

/* Each sequence alone: its prompt as one model_eval, then N_GEN greedy tokens. */
static void run_alone(const llmos_model *m, seq_run *r, llmos_pool *pool)
{
    size_t n_vocab = model_hparams_of(m)->n_vocab;
    llmos_model_ctx *c = new_ctx(m, 256, 64, pool);
    const float *logits = NULL;
    assert_int_equal(model_eval(c, r->prompt, r->n_prompt, &logits), LLMOS_OK);
    memcpy(r->first_logits, logits, n_vocab * sizeof(float));
    for (size_t i = 0; i < N_GEN; i++) {
        r->gen[i] = argmax(logits, n_vocab);
        if (i + 1 < N_GEN)
            assert_int_equal(model_eval(c, &r->gen[i], 1, &logits), LLMOS_OK);
    }
    model_ctx_free(c);
}

/* All sequences together; returns how many passes mixed prompt chunks with decode tokens. Sequence
 * i joins at step `start[i]`; its prompt goes in chunks of at most `chunk` tokens, so passes mix
 * prompt chunks with decode tokens of the others. */
static size_t run_batched(const llmos_model *m, seq_run *alone, size_t chunk, const size_t *start,
                          llmos_pool *pool)
{
    size_t n_vocab = model_hparams_of(m)->n_vocab;
    model_batch_params bp = {.n_tokens = 256, .n_seqs = N_SEQS, .n_ctx = 256, .pool = pool};
    model_batch *b = NULL;
    assert_int_equal(model_batch_new(m, &bp, &b), LLMOS_OK);
    llmos_model_ctx *c[N_SEQS];
    size_t fed[N_SEQS] = {0}, made[N_SEQS] = {0};
    int32_t gen[N_SEQS][N_GEN];
    for (size_t i = 0; i < N_SEQS; i++)
        c[i] = new_ctx(m, 256, 1, NULL); /* its own buffers are for one token only */
    size_t mixed = 0;
    for (size_t step = 0;; step++) {
        model_batch_seq seqs[N_SEQS];
        size_t n = 0, prompts = 0, decodes = 0;
        for (size_t i = 0; i < N_SEQS; i++) {
            if (step < start[i] || made[i] == N_GEN)
                continue;
            if (fed[i] < alone[i].n_prompt) {
                size_t k = alone[i].n_prompt - fed[i];
                seqs[n++] =
                    (model_batch_seq){c[i], alone[i].prompt + fed[i], k < chunk ? k : chunk};
                prompts++;
            } else {
                seqs[n++] = (model_batch_seq){c[i], &gen[i][made[i] - 1], 1};
                decodes++;
            }
        }
        if (prompts && decodes)
            mixed++;
        if (n == 0) {
            bool all = true;
            for (size_t i = 0; i < N_SEQS; i++)
                all = all && made[i] == N_GEN;
            if (all)
                break;
            continue;
        }
        llmos_err err = model_eval_batch(b, seqs, n);
        if (err)
            fprintf(stderr, "model_eval_batch: %s\n", llmos_errmsg());
        assert_int_equal(err, LLMOS_OK);
        for (size_t s = 0; s < n; s++) {
            size_t i = 0;
            while (c[i] != seqs[s].ctx)
                i++;
            const float *logits = model_ctx_logits(c[i]);
            if (fed[i] < alone[i].n_prompt) {
                fed[i] += seqs[s].n;
                if (fed[i] < alone[i].n_prompt)
                    continue;
                double diff = max_abs_diff(logits, alone[i].first_logits, n_vocab);
                if (diff > 1e-3)
                    fail_msg("sequence %zu: logits after the prompt differ by %g", i, diff);
            }
            gen[i][made[i]++] = argmax(logits, n_vocab);
        }
    }
    for (size_t i = 0; i < N_SEQS; i++) {
        for (size_t t = 0; t < N_GEN; t++)
            if (gen[i][t] != alone[i].gen[t])
                fail_msg("sequence %zu (prompt %zu tokens): token %zu is %d batched, %d alone", i,
                         alone[i].n_prompt, t, gen[i][t], alone[i].gen[t]);
        model_ctx_free(c[i]);
    }
    model_batch_free(b);
    return mixed;
}

static void check_model(const char *path, int threads)
{
    llmos_model *m = load(path);
    size_t n_vocab = model_hparams_of(m)->n_vocab;
    llmos_pool *pool = NULL;
    if (threads > 1)
        assert_int_equal(pool_new(threads, &pool), LLMOS_OK);
    seq_run runs[N_SEQS];
    for (size_t i = 0; i < N_SEQS; i++) {
        runs[i].n_prompt = make_prompt(i, (uint32_t)n_vocab, runs[i].prompt);
        runs[i].first_logits = malloc(n_vocab * sizeof(float));
        assert_non_null(runs[i].first_logits);
        run_alone(m, &runs[i], pool);
    }
    /* all start together, whole prompts in one pass (different lengths side by side) */
    static const size_t together[N_SEQS] = {0, 0, 0, 0, 0};
    assert_int_equal(run_batched(m, runs, 256, together, pool), 0);
    /* staggered starts and prompt chunks of 16: prompts meet other sequences' decoding */
    static const size_t staggered[N_SEQS] = {0, 3, 1, 9, 2};
    assert_true(run_batched(m, runs, 16, staggered, pool) > 5);
    for (size_t i = 0; i < N_SEQS; i++)
        free(runs[i].first_logits);
    pool_free(pool);
    model_free(m);
}

static void test_stories(void **state)
{
    (void)state;
    char path[4200];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    check_model(path, 1);
    check_model(path, 2);
}

static void need_random(const char *path)
{
    char vocab[4096];
    tu_testdata_path(vocab, sizeof vocab, "vocab/ggml-vocab-llama-spm.gguf");
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set: no llmos program to make a model with");
    if (!path[0])
        fail_msg("llmos model make-random or quantize failed");
}

static void test_random_llama_q4_0(void **state)
{
    (void)state;
    need_random(llama_q4);
    check_model(llama_q4, 2);
}

static void test_random_qwen2_f16(void **state)
{
    (void)state;
    need_random(qwen_f16);
    check_model(qwen_f16, 2);
}

/* A refused batch changes no context. */
static void test_errors(void **state)
{
    (void)state;
    char path[4200];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    llmos_model *m = load(path);
    model_batch_params bp = {.n_tokens = 8, .n_seqs = 2, .n_ctx = 64};
    model_batch *b = NULL;
    assert_int_equal(model_batch_new(m, &bp, &b), LLMOS_OK);
    llmos_model_ctx *a = new_ctx(m, 64, 1, NULL), *c = new_ctx(m, 64, 1, NULL);
    llmos_model_ctx *big = new_ctx(m, 128, 1, NULL);
    int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, bad[2] = {1, 512};

    model_batch_seq s1[] = {{a, toks, 5}, {c, toks, 4}};
    assert_int_equal(model_eval_batch(b, s1, 2), LLMOS_ERR_LIMIT); /* 9 tokens > 8 */
    assert_non_null(strstr(llmos_errmsg(), "9 tokens"));
    model_batch_seq s2[] = {{a, toks, 2}, {a, toks, 2}};
    assert_int_equal(model_eval_batch(b, s2, 2), LLMOS_ERR_INVALID);
    model_batch_seq s3[] = {{a, toks, 2}, {c, bad, 2}};
    assert_int_equal(model_eval_batch(b, s3, 2), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "sequence 1"));
    model_batch_seq s4[] = {{big, toks, 2}};
    assert_int_equal(model_eval_batch(b, s4, 1), LLMOS_ERR_LIMIT);
    model_batch_seq s5[] = {{a, toks, 1}, {c, toks, 1}, {big, toks, 1}};
    assert_int_equal(model_eval_batch(b, s5, 3), LLMOS_ERR_LIMIT);
    assert_int_equal(model_ctx_pos(a), 0);
    assert_int_equal(model_ctx_pos(c), 0);

    /* a context that would overflow */
    llmos_model_ctx *small = new_ctx(m, 4, 1, NULL);
    model_batch_seq s6[] = {{a, toks, 3}, {small, toks, 5}};
    assert_int_equal(model_eval_batch(b, s6, 2), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "context length 4 exceeded"));
    assert_int_equal(model_ctx_pos(a), 0);
    model_batch_seq s7[] = {{a, toks, 3}, {small, toks, 4}};
    assert_int_equal(model_eval_batch(b, s7, 2), LLMOS_OK);
    assert_int_equal(model_ctx_pos(a), 3);
    assert_int_equal(model_ctx_pos(small), 4);

    bp.n_seqs = 9;
    model_batch *b2 = NULL;
    assert_int_equal(model_batch_new(m, &bp, &b2), LLMOS_ERR_INVALID);
    assert_null(b2);
    model_ctx_free(small);
    model_ctx_free(big);
    model_ctx_free(a);
    model_ctx_free(c);
    model_batch_free(b);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories),
        cmocka_unit_test(test_random_llama_q4_0),
        cmocka_unit_test(test_random_qwen2_f16),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, make_models, remove_models);
}
