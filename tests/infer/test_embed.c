/*
 * test_embed.c - embeddings from the engine: model_embed, the local backend's embed, and
 * `llmos memory --model`.
 *
 * Over stories260K (shared test data): vectors are finite, unit length and deterministic; the
 * same whether the tokens go one per forward pass or many; equal to a reference built here by
 * running the model token by token through the public API (model_eval, model_ctx_hidden) and
 * averaging by hand; the backend's embed equals model_embed over the tokens it says; an
 * embedding leaves a chat context alone; errors (wrong dim, no tokens, bad token). On the
 * command line: an exact text added with --model is found first by the same text, and a store
 * filled by one embedder refuses another, saying what to pass.
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

#include "llmos/backend.h"
#include "llmos/infer.h"
#include "testutil.h"

static char model_path[4096];
static llmos_model *model;
static size_t dim;

static const int32_t toks[] = {1, 403, 407, 261, 378, 429, 271, 360, 290, 306, 267, 300,
                               1, 5,   44,  311, 402, 260, 275, 280, 301, 399, 256, 270};
#define N_TOKS (sizeof toks / sizeof toks[0])

static int setup(void **state)
{
    (void)state;
    if (!tu_testdata_find(model_path, sizeof model_path, "models/stories260K.gguf"))
        return 0;
    if (model_load(model_path, &model) != LLMOS_OK)
        return -1;
    dim = model_hparams_of(model)->n_embd;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    model_free(model);
    return 0;
}

/* Skip the test without stories260K; with it, setup has loaded it. */
static void need_model(void)
{
    char path[4096];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    assert_non_null(model);
}

static double norm_of(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static void embed_batch(size_t n_batch, const int32_t *t, size_t n, float *out)
{
    model_ctx_params p = model_ctx_default_params();
    p.n_batch = (uint32_t)n_batch;
    assert_int_equal(model_embed(model, &p, t, n, out, dim), LLMOS_OK);
}

static void test_unit_finite_deterministic(void **state)
{
    (void)state;
    need_model();
    float a[512], b[512];
    assert_true(dim <= 512);
    assert_int_equal(model_embed(model, NULL, toks, N_TOKS, a, dim), LLMOS_OK);
    assert_int_equal(model_embed(model, NULL, toks, N_TOKS, b, dim), LLMOS_OK);
    for (size_t i = 0; i < dim; i++)
        assert_true(isfinite(a[i]));
    assert_true(fabs(norm_of(a, dim) - 1.0) < 1e-5);
    assert_memory_equal(a, b, dim * sizeof *a);
    /* a different text gives a different vector */
    assert_int_equal(model_embed(model, NULL, toks + 12, 6, b, dim), LLMOS_OK);
    assert_true(max_diff(a, b, dim) > 1e-3f);
}

static void test_batch_sizes(void **state)
{
    (void)state;
    need_model();
    float one[512], many[512], odd[512];
    embed_batch(1, toks, N_TOKS, one);
    embed_batch(64, toks, N_TOKS, many);
    embed_batch(5, toks, N_TOKS, odd);
    float d1 = max_diff(one, many, dim), d2 = max_diff(one, odd, dim);
    fprintf(stderr, "batch 1 vs 64: max diff %g; 1 vs 5: %g\n", d1, d2);
    assert_true(d1 < 1e-5f);
    assert_true(d2 < 1e-5f);
}

/* The reference: token by token through the public API, the mean by hand. */
static void test_reference_by_hand(void **state)
{
    (void)state;
    need_model();
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = 64;
    llmos_model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(model, &p, &c), LLMOS_OK);
    double sum[512] = {0};
    float h[512];
    for (size_t t = 0; t < N_TOKS; t++) {
        assert_int_equal(model_eval(c, &toks[t], 1, NULL), LLMOS_OK);
        model_ctx_hidden(c, 0, h);
        for (size_t i = 0; i < dim; i++)
            sum[i] += h[i];
    }
    model_ctx_free(c);
    double nrm = 0;
    for (size_t i = 0; i < dim; i++)
        nrm += (sum[i] / N_TOKS) * (sum[i] / N_TOKS);
    nrm = sqrt(nrm);
    float want[512], got[512];
    for (size_t i = 0; i < dim; i++)
        want[i] = (float)(sum[i] / N_TOKS / nrm);
    embed_batch(64, toks, N_TOKS, got);
    float d = max_diff(want, got, dim);
    fprintf(stderr, "model_embed vs reference by hand: max diff %g\n", d);
    assert_true(d < 1e-5f);
}

/* An embedding does not touch a chat context: its next logits stay the same. */
static void test_chat_context_untouched(void **state)
{
    (void)state;
    need_model();
    llmos_model_ctx *c = NULL;
    model_ctx_params p = model_ctx_default_params();
    assert_int_equal(model_ctx_new(model, &p, &c), LLMOS_OK);
    const float *lg = NULL;
    assert_int_equal(model_eval(c, toks, 6, NULL), LLMOS_OK);
    float v[512];
    assert_int_equal(model_embed(model, NULL, toks + 6, 10, v, dim), LLMOS_OK);
    assert_int_equal(model_ctx_pos(c), 6);
    assert_int_equal(model_eval(c, toks + 6, 1, &lg), LLMOS_OK);
    float after[512];
    memcpy(after, lg, sizeof after);
    model_ctx_free(c);
    c = NULL;
    assert_int_equal(model_ctx_new(model, &p, &c), LLMOS_OK);
    assert_int_equal(model_eval(c, toks, 7, &lg), LLMOS_OK);
    assert_true(max_diff(after, lg, 512) < 1e-5f);
    model_ctx_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    need_model();
    float v[512];
    assert_int_equal(model_embed(model, NULL, toks, N_TOKS, v, dim + 1), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "embedding length"));
    assert_int_equal(model_embed(model, NULL, toks, 0, v, dim), LLMOS_ERR_INVALID);
    int32_t bad[2] = {1, 100000};
    assert_int_equal(model_embed(model, NULL, bad, 2, v, dim), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "outside the vocabulary"));
    size_t big = model_hparams_of(model)->n_ctx_train + 1;
    int32_t *many = calloc(big, sizeof *many);
    assert_non_null(many);
    assert_int_equal(model_embed(model, NULL, many, big, v, dim), LLMOS_ERR_LIMIT);
    free(many);
}

/* The backend tokenizes plain text with BOS and gives model_embed's vector. */
static void test_backend_matches(void **state)
{
    (void)state;
    need_model();
    llm_backend *b = NULL;
    local_backend_params lp = local_backend_default_params();
    lp.chat_template = "{{ '' }}";
    assert_int_equal(local_backend_open(model_path, &lp, &b), LLMOS_OK);
    const char *text = "Once upon a time, there was a little cat.";
    float *vec = NULL;
    size_t n_dim = 0;
    assert_int_equal(llm_embed(b, text, strlen(text), &vec, &n_dim), LLMOS_OK);
    assert_int_equal(n_dim, dim);

    tokenizer *tok = NULL;
    assert_int_equal(tok_load_file(model_path, &tok), LLMOS_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(tok, text, strlen(text), TOK_ADD_SPECIAL, &ids, &n), LLMOS_OK);
    assert_true(n > 2);
    assert_int_equal(ids[0], tok_bos(tok)); /* llama2.c vocabularies add BOS */
    float want[512];
    assert_int_equal(model_embed(model, NULL, ids, n, want, dim), LLMOS_OK);
    assert_true(max_diff(want, vec, dim) < 1e-5f);
    free(ids);
    free(vec);
    tok_free(tok);

    /* text longer than the context is truncated, not refused */
    llmos_buf big = {0};
    for (int i = 0; i < 400; i++)
        assert_int_equal(buf_puts(&big, " the cat sat"), LLMOS_OK);
    assert_int_equal(llm_embed(b, big.data, big.len, &vec, &n_dim), LLMOS_OK);
    assert_true(fabs(norm_of(vec, n_dim) - 1.0) < 1e-5);
    free(vec);
    buf_free(&big);
    llm_backend_free(b);
}

/* `llmos memory --model` on a fresh home: exact text found first; mixing refused. */
static void test_cli_memory(void **state)
{
    (void)state;
    need_model();
    char home[256];
    assert_true(tu_mkdtemp("embed", home, sizeof home));
    char env[600];
    snprintf(env, sizeof env, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak", home);
    const char *texts[] = {"the cat sat on the mat", "Lily went to the park with her dog",
                           "a big red ball bounced high", "Tom and Sue ate cake"};
    llmos_buf out = {0}, err = {0};
    for (size_t i = 0; i < 4; i++) {
        buf_clear(&out);
        assert_int_equal(
            tu_run_llmos(&out, NULL, "%s memory add --model '%s' '%s'", env, model_path, texts[i]),
            0);
        assert_non_null(strstr(out.data, "remembered as #"));
    }
    for (size_t i = 0; i < 4; i++) {
        buf_clear(&out);
        assert_int_equal(tu_run_llmos(&out, NULL, "%s LLMOS_EMBED_MODEL='%s' memory search '%s'",
                                      env, model_path, texts[i]),
                         0);
        char want[200];
        snprintf(want, sizeof want, "1. #%zu (1.000) %s\n", i + 1, texts[i]);
        assert_true(strncmp(out.data, want, strlen(want)) == 0);
    }
    /* without the model this store cannot embed: refused, naming it; the lexical embedder
     * asked for by name is refused too */
    buf_clear(&out);
    assert_int_not_equal(tu_run_llmos(&out, &err, "%s memory search cat", env), 0);
    assert_non_null(strstr(err.data, "engine:stories260K 64"));
    assert_non_null(strstr(err.data, "--embed-model"));
    buf_clear(&err);
    assert_int_not_equal(
        tu_run_llmos(NULL, &err, "%s memory add --embed-model lexical another", env), 0);
    assert_non_null(strstr(err.data, "cannot be compared"));
    /* the model the shell chats with ($LLMOS_MODEL) is the default */
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, NULL, "%s LLMOS_MODEL='%s' memory search '%s' -k 1", env,
                                  model_path, texts[2]),
                     0);
    assert_non_null(strstr(out.data, "1. #3 (1.000)"));
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, NULL, "%s memory stats", env), 0);
    assert_non_null(strstr(out.data, "4 memories"));
    assert_non_null(strstr(out.data, "engine:stories260K 64"));
    tu_rmrf(home);

    /* and the other way round: a lexical-embedder store refuses the model */
    assert_true(tu_mkdtemp("embed", home, sizeof home));
    snprintf(env, sizeof env, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak", home);
    assert_int_equal(
        tu_run_llmos(NULL, NULL, "%s memory add --embed-model lexical plain words", env), 0);
    assert_int_equal(tu_run_llmos(NULL, NULL, "%s memory add more plain words", env), 0);
    buf_clear(&err);
    assert_int_not_equal(
        tu_run_llmos(NULL, &err, "%s memory add --model '%s' more words", env, model_path), 0);
    assert_non_null(strstr(err.data, "lexical-v1 512"));
    assert_non_null(strstr(err.data, "--embed-model lexical"));
    assert_non_null(strstr(err.data, "reembed"));
    buf_clear(&err);
    assert_int_not_equal(tu_run_llmos(NULL, &err, "%s memory add --model", env), 0);
    /* reembed moves the store to the model, and the model finds its passages */
    buf_clear(&out);
    assert_int_equal(
        tu_run_llmos(&out, NULL, "%s memory reembed --embed-model '%s'", env, model_path), 0);
    assert_non_null(strstr(out.data, "re-embedded 2 passages with engine:stories260K 64"));
    buf_clear(&out);
    assert_int_equal(
        tu_run_llmos(&out, NULL, "%s memory search --model '%s' plain words -k 1", env, model_path),
        0);
    assert_non_null(strstr(out.data, "1. #1 (1.000) plain words"));
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, NULL, "%s memory verify", env), 0);
    assert_non_null(strstr(out.data, "2 vectors of engine:stories260K"));
    tu_rmrf(home);
    buf_free(&out);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unit_finite_deterministic),
        cmocka_unit_test(test_batch_sizes),
        cmocka_unit_test(test_reference_by_hand),
        cmocka_unit_test(test_chat_context_untouched),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_backend_matches),
        cmocka_unit_test(test_cli_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
