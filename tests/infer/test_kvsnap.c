/*
 * test_kvsnap.c - KV snapshots: a context saved after its prompt and restored into a fresh
 * context continues with the same greedy tokens as the original; the token ids come back;
 * the refusals: a snapshot of another model (two random files of one shape and different
 * seeds, so only the weights differ), a corrupted one (a flipped byte, a cut), another
 * version, a context too small. The model digest is stable across loads.
 */
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

static char tmpdir[4096];
static char rand_a[4200], rand_b[4200];

static int make_models(void **state)
{
    (void)state;
    char vocab[4096];
    if (!tu_testdata_find(vocab, sizeof vocab, "vocab/ggml-vocab-llama-spm.gguf") ||
        !getenv("LLMOS_BIN") || !tu_mkdtemp("kvsnap", tmpdir, sizeof tmpdir))
        return 0;
    snprintf(rand_a, sizeof rand_a, "%s/a.gguf", tmpdir);
    snprintf(rand_b, sizeof rand_b, "%s/b.gguf", tmpdir);
    for (int i = 0; i < 2; i++) {
        char *out = i ? rand_b : rand_a;
        if (tu_run_llmos(NULL, NULL,
                         "model make-random --arch llama --dims 64,2,4,2,128,256 --seed %d "
                         "--type f32 --vocab-from '%s' '%s'",
                         i + 1, vocab, out) != 0)
            out[0] = 0;
    }
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

static llmos_model_ctx *new_ctx(const llmos_model *m, uint32_t n_ctx, ggml_type kv_type)
{
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = n_ctx;
    p.kv_type = kv_type;
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

/* Greedy tokens after what c holds, starting from logits. */
static void greedy(llmos_model_ctx *c, const float *logits, int32_t *out, size_t n)
{
    size_t n_vocab = model_hparams_of(model_ctx_model(c))->n_vocab;
    for (size_t i = 0; i < n; i++) {
        out[i] = argmax(logits, n_vocab);
        assert_int_equal(model_eval(c, &out[i], 1, &logits), LLMOS_OK);
    }
}

static void roundtrip(ggml_type kv_type)
{
    char path[4200];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    llmos_model *m = load(path);
    int32_t prompt[40];
    for (int i = 0; i < 40; i++)
        prompt[i] = i == 0 ? 1 : (int32_t)(7 + 13 * i) % 500;
    llmos_model_ctx *a = new_ctx(m, 256, kv_type);
    const float *logits = NULL;
    assert_int_equal(model_eval(a, prompt, 40, &logits), LLMOS_OK);
    llmos_buf snap = {0};
    assert_int_equal(model_kv_save(a, prompt, &snap), LLMOS_OK);
    int32_t want[20], got[20];
    greedy(a, logits, want, 20);

    /* restored over a context that held something else */
    llmos_model_ctx *b = new_ctx(m, 256, kv_type);
    assert_int_equal(model_eval(b, prompt + 5, 30, &logits), LLMOS_OK);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    assert_int_equal(model_kv_restore(b, (const uint8_t *)snap.data, snap.len, &ids, &n_ids),
                     LLMOS_OK);
    assert_int_equal(model_ctx_pos(b), 40);
    assert_int_equal(n_ids, 40);
    assert_memory_equal(ids, prompt, sizeof prompt);
    free(ids);
    /* the last prompt token again (positions 0..38 kept) gives the logits to continue from */
    model_ctx_truncate(b, 39);
    assert_int_equal(model_eval(b, &prompt[39], 1, &logits), LLMOS_OK);
    greedy(b, logits, got, 20);
    assert_memory_equal(got, want, sizeof want);

    model_kv_header h;
    assert_int_equal(model_kv_parse((const uint8_t *)snap.data, snap.len, &h), LLMOS_OK);
    assert_int_equal(h.version, MODEL_KV_VERSION);
    assert_int_equal(h.kv_type, kv_type);
    assert_int_equal(h.n_pos, 40);
    assert_int_equal(h.n_layer, 5);
    assert_memory_equal(h.digest, model_digest(m), MODEL_DIGEST_BYTES);

    /* without token ids */
    llmos_buf bare = {0};
    assert_int_equal(model_kv_save(a, NULL, &bare), LLMOS_OK);
    assert_int_equal(model_kv_parse((const uint8_t *)bare.data, bare.len, &h), LLMOS_OK);
    assert_int_equal(h.n_tokens, 0);
    assert_int_equal(h.n_pos, 60);
    assert_int_equal(model_kv_restore(b, (const uint8_t *)bare.data, bare.len, &ids, &n_ids),
                     LLMOS_OK);
    assert_null(ids);
    assert_int_equal(n_ids, 0);
    assert_int_equal(model_ctx_pos(b), 60); /* a held 40 + 20 generated when saved */

    buf_free(&bare);
    buf_free(&snap);
    model_ctx_free(a);
    model_ctx_free(b);
    model_free(m);
}

static void test_roundtrip_f32(void **state)
{
    (void)state;
    roundtrip(GGML_TYPE_F32);
}

static void test_roundtrip_f16(void **state)
{
    (void)state;
    roundtrip(GGML_TYPE_F16);
}

static void test_corrupted(void **state)
{
    (void)state;
    char path[4200];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    llmos_model *m = load(path);
    llmos_model_ctx *c = new_ctx(m, 64, GGML_TYPE_F32);
    int32_t prompt[10] = {1, 20, 30, 40, 50, 60, 70, 80, 90, 100};
    assert_int_equal(model_eval(c, prompt, 10, NULL), LLMOS_OK);
    llmos_buf snap = {0};
    assert_int_equal(model_kv_save(c, prompt, &snap), LLMOS_OK);
    uint8_t *d = (uint8_t *)snap.data;
    llmos_model_ctx *fresh = new_ctx(m, 64, GGML_TYPE_F32);

    d[snap.len / 2] ^= 0x10; /* one bit in the cache rows */
    assert_int_equal(model_kv_restore(fresh, d, snap.len, NULL, NULL), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "corrupted"));
    model_kv_header peeked; /* the header alone does not see it; the checksum does */
    assert_int_equal(model_kv_peek(d, snap.len, &peeked), LLMOS_OK);
    assert_int_equal(peeked.n_pos, 10);
    assert_int_equal(model_kv_peek(d, snap.len - 1, &peeked), LLMOS_ERR_FORMAT);
    assert_int_equal(model_ctx_pos(fresh), 0);
    d[snap.len / 2] ^= 0x10;
    assert_int_equal(model_kv_restore(fresh, d, snap.len - 1, NULL, NULL), LLMOS_ERR_FORMAT);
    assert_int_equal(model_kv_restore(fresh, d, 40, NULL, NULL), LLMOS_ERR_FORMAT);
    d[64] ^= 1; /* n_pos: the sizes no longer add up */
    assert_int_equal(model_kv_restore(fresh, d, snap.len, NULL, NULL), LLMOS_ERR_FORMAT);
    d[64] ^= 1;
    d[8] = 2; /* another version */
    assert_int_equal(model_kv_restore(fresh, d, snap.len, NULL, NULL), LLMOS_ERR_UNSUPPORTED);
    assert_non_null(strstr(llmos_errmsg(), "version 2"));
    d[8] = 1;
    d[0] = 'X';
    assert_int_equal(model_kv_restore(fresh, d, snap.len, NULL, NULL), LLMOS_ERR_FORMAT);
    d[0] = 'L';
    llmos_model_ctx *small = new_ctx(m, 8, GGML_TYPE_F32);
    assert_int_equal(model_kv_restore(small, d, snap.len, NULL, NULL), LLMOS_ERR_CONTEXT);
    llmos_model_ctx *f16 = new_ctx(m, 64, GGML_TYPE_F16);
    assert_int_equal(model_kv_restore(f16, d, snap.len, NULL, NULL), LLMOS_ERR_INVALID);
    assert_int_equal(model_kv_restore(fresh, d, snap.len, NULL, NULL), LLMOS_OK);
    assert_int_equal(model_ctx_pos(fresh), 10);

    buf_free(&snap);
    model_ctx_free(small);
    model_ctx_free(f16);
    model_ctx_free(fresh);
    model_ctx_free(c);
    model_free(m);
}

/* Two files of the same shape and metadata, different weights: different models. */
static void test_foreign(void **state)
{
    (void)state;
    char vocab[4096];
    tu_testdata_path(vocab, sizeof vocab, "vocab/ggml-vocab-llama-spm.gguf");
    if (!rand_a[0] || !rand_b[0])
        fail_msg("llmos model make-random failed");
    llmos_model *a = load(rand_a), *b = load(rand_b), *a2 = load(rand_a);
    assert_memory_equal(model_digest(a), model_digest(a2), MODEL_DIGEST_BYTES);
    assert_memory_not_equal(model_digest(a), model_digest(b), MODEL_DIGEST_BYTES);
    llmos_model_ctx *ca = new_ctx(a, 64, GGML_TYPE_F32), *cb = new_ctx(b, 64, GGML_TYPE_F32);
    int32_t prompt[4] = {1, 300, 400, 500};
    assert_int_equal(model_eval(ca, prompt, 4, NULL), LLMOS_OK);
    llmos_buf snap = {0};
    assert_int_equal(model_kv_save(ca, prompt, &snap), LLMOS_OK);
    assert_int_equal(model_kv_restore(cb, (const uint8_t *)snap.data, snap.len, NULL, NULL),
                     LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "another model"));
    assert_int_equal(model_ctx_pos(cb), 0);
    llmos_model_ctx *ca2 = new_ctx(a2, 64, GGML_TYPE_F32);
    assert_int_equal(model_kv_restore(ca2, (const uint8_t *)snap.data, snap.len, NULL, NULL),
                     LLMOS_OK);
    buf_free(&snap);
    model_ctx_free(ca);
    model_ctx_free(ca2);
    model_ctx_free(cb);
    model_free(a);
    model_free(a2);
    model_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_f32),
        cmocka_unit_test(test_roundtrip_f16),
        cmocka_unit_test(test_corrupted),
        cmocka_unit_test(test_foreign),
    };
    return cmocka_run_group_tests(tests, make_models, remove_models);
}
