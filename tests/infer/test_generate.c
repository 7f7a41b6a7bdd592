/*
 * test_generate.c - the generation loop and `llmos generate` on stories260K: greedy ids equal
 * llama2.c's, stop tokens and stop strings (also across token boundaries) end the text
 * without showing the stop, the callback and a full context stop it, seeds reproduce, and
 * the command prints the same ids, with the limits a user meets reported clearly.
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

static const int32_t greedy[64] = {461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362,
                                   409, 283, 264, 283, 452, 288, 13,  431, 431, 431, 431, 431, 431,
                                   431, 431, 431, 431, 431, 431, 431, 293, 430, 417, 363, 416, 315,
                                   342, 418, 424, 400, 442, 402, 303, 266, 299, 374, 466, 396, 303,
                                   271, 362, 390, 469, 306, 469, 423, 314, 347, 305, 356, 333};

static char model_path[4096];

typedef struct sink {
    int32_t ids[1024];
    size_t n_ids;
    llmos_buf text;
    size_t stop_after; /* return false after this many tokens (0 = never) */
} sink;

static bool collect(void *user, int32_t token, const char *text, size_t len)
{
    sink *s = user;
    if (token >= 0 && s->n_ids < 1024)
        s->ids[s->n_ids++] = token;
    if (text)
        assert_int_equal(buf_append(&s->text, text, len), LLMOS_OK);
    return !(s->stop_after && s->n_ids >= s->stop_after);
}

typedef struct fixture {
    llmos_model *m;
    tokenizer *tok;
} fixture;

static int setup(void **state)
{
    static fixture fx;
    *state = &fx;
    if (!tu_testdata_find(model_path, sizeof model_path, "models/stories260K.gguf"))
        return 0;
    if (model_load(model_path, &fx.m) != LLMOS_OK ||
        tok_load_gguf(model_gguf(fx.m), model_path, &fx.tok) != LLMOS_OK) {
        fprintf(stderr, "loading stories260K: %s\n", llmos_errmsg());
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    tok_free(fx->tok);
    model_free(fx->m);
    return 0;
}

/* The loaded model; skips the test when stories260K is absent. */
static fixture *need(void **state)
{
    fixture *fx = *state;
    char path[4096];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    assert_non_null(fx->m);
    return fx;
}

/* Generate from [BOS] with the given parameters into s; returns the stats. */
static gen_stats run(fixture *fx, const gen_params *p, bool with_tok, uint32_t n_ctx, sink *s)
{
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = n_ctx;
    llmos_model_ctx *c = NULL;
    assert_int_equal(model_ctx_new(fx->m, &cp, &c), LLMOS_OK);
    int32_t bos = 1;
    gen_stats st;
    llmos_err err = gen_run(c, with_tok ? fx->tok : NULL, &bos, 1, p, collect, s, &st);
    if (err)
        fail_msg("gen_run: %s", llmos_errmsg());
    model_ctx_free(c);
    return st;
}

static gen_params greedy_params(uint32_t n)
{
    gen_params p = gen_default_params();
    p.n_predict = n;
    p.sampling.temperature = 0;
    return p;
}

static void test_greedy_ids(void **state)
{
    fixture *fx = need(state);
    gen_params p = greedy_params(64);
    sink s = {0};
    gen_stats st = run(fx, &p, false, 0, &s);
    assert_int_equal(st.stop, GEN_STOP_LENGTH);
    assert_int_equal(st.n_prompt, 1);
    assert_int_equal(st.n_generated, 64);
    assert_int_equal(s.n_ids, 64);
    assert_memory_equal(s.ids, greedy, sizeof greedy);
    buf_free(&s.text);
}

static void test_text_and_stop_token(void **state)
{
    fixture *fx = need(state);
    /* the streamed text is the decoding of the ids */
    gen_params p = greedy_params(64);
    sink s = {0};
    run(fx, &p, true, 0, &s);
    llmos_buf want = {0};
    assert_int_equal(tok_decode(fx->tok, greedy, 64, false, &want), LLMOS_OK);
    assert_int_equal(s.text.len, want.len);
    assert_memory_equal(s.text.data, want.data, want.len);

    /* a stop token ends the generation before it is shown: 431 first comes at step 20 */
    int32_t stop = 431;
    p.stop_tokens = &stop;
    p.n_stop_tokens = 1;
    sink t = {0};
    gen_stats st = run(fx, &p, true, 0, &t);
    assert_int_equal(st.stop, GEN_STOP_TOKEN);
    assert_int_equal(st.n_generated, 20);
    assert_memory_equal(t.ids, greedy, 20 * sizeof(int32_t));
    buf_free(&s.text);
    buf_free(&t.text);
    buf_free(&want);
}

static void test_stop_strings(void **state)
{
    fixture *fx = need(state);
    llmos_buf full = {0};
    assert_int_equal(tok_decode(fx->tok, greedy, 64, false, &full), LLMOS_OK);
    /* "31tok_43" starts inside one token's text and ends inside the next one's */
    const char *stops[] = {"never appears", "31tok_43"};
    const char *hit = strstr(full.data, stops[1]);
    assert_non_null(hit);
    gen_params p = greedy_params(64);
    p.stop_strings = stops;
    p.n_stop_strings = 2;
    sink s = {0};
    gen_stats st = run(fx, &p, true, 0, &s);
    assert_int_equal(st.stop, GEN_STOP_STRING);
    size_t want = (size_t)(hit - full.data);
    assert_int_equal(s.text.len, want);
    assert_memory_equal(s.text.data, full.data, want);
    assert_null(strstr(s.text.data ? s.text.data : "", stops[1]));
    assert_true(st.n_generated < 64);

    /* a prefix of a stop string that never completes is shown in the end */
    const char *almost[] = {"tok_333 and more"};
    p.stop_strings = almost;
    p.n_stop_strings = 1;
    sink t = {0};
    st = run(fx, &p, true, 0, &t);
    assert_int_equal(st.stop, GEN_STOP_LENGTH);
    assert_int_equal(t.text.len, full.len);
    buf_free(&s.text);
    buf_free(&t.text);
    buf_free(&full);
}

static void test_callback_and_context(void **state)
{
    fixture *fx = need(state);
    gen_params p = greedy_params(64);
    sink s = {.stop_after = 5};
    gen_stats st = run(fx, &p, false, 0, &s);
    assert_int_equal(st.stop, GEN_STOP_CALLBACK);
    assert_int_equal(st.n_generated, 5);

    /* a context of 10 positions: BOS + 9 evaluated tokens, the 10th sampled from them */
    sink t = {0};
    st = run(fx, &p, false, 10, &t);
    assert_int_equal(st.stop, GEN_STOP_CONTEXT);
    assert_int_equal(st.n_generated, 10);
    assert_memory_equal(t.ids, greedy, 10 * sizeof(int32_t));
    buf_free(&s.text);
    buf_free(&t.text);
}

static void test_seeded_sampling(void **state)
{
    fixture *fx = need(state);
    gen_params p = gen_default_params();
    p.n_predict = 40;
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 42;
    sink a = {0}, b = {0}, c = {0};
    run(fx, &p, false, 0, &a);
    run(fx, &p, false, 0, &b);
    p.sampling.seed = 43;
    run(fx, &p, false, 0, &c);
    assert_int_equal(a.n_ids, 40);
    assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * 40);
    assert_memory_not_equal(a.ids, c.ids, sizeof(int32_t) * 40);
}

static void test_cli(void **state)
{
    need(state);
    llmos_buf out = {0}, err = {0};
    int rc = tu_run_llmos(&out, &err, "generate --model '%s' --prompt 1 --ids -n 64 --temp 0 -t 2",
                          model_path);
    assert_int_equal(rc, 0);
    char want[1024] = "";
    for (int i = 0; i < 64; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? " " : "",
                 (int)greedy[i]);
    strcat(want, "\n");
    assert_string_equal(out.data, want);
    assert_non_null(strstr(err.data, "tokens/s"));

    /* text mode streams the same tokens as text */
    buf_clear(&out);
    rc = tu_run_llmos(&out, NULL, "generate --model '%s' --prompt '' -n 3 --temp 0", model_path);
    assert_int_equal(rc, 0);
    assert_string_equal(out.data, "tok_461tok_461tok_401\n");

    /* a prompt longer than the model's 512 positions */
    char *ids = malloc(600 * 4 + 1);
    ids[0] = 0;
    for (int i = 0; i < 600; i++)
        strcat(ids, "5 ");
    buf_clear(&err);
    rc =
        tu_run_llmos(NULL, &err, "generate --model '%s' --ids --prompt '%s' -n 1", model_path, ids);
    free(ids);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err.data, "context length is 512"));

    /* usage errors exit 2 and say what was wrong */
    buf_clear(&err);
    rc = tu_run_llmos(NULL, &err, "generate --model '%s' --prompt hi --top-p 2", model_path);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err.data, "--top-p"));
    buf_free(&out);
    buf_free(&err);
}

/* `llmos model make-random`: a qwen2 model of given dims with the vocabulary copied, the same
 * file for the same seed, loadable and runnable; bad arguments are usage errors. */
static void test_make_random(void **state)
{
    need(state);
    char dir[4096], a[4200], b[4200], c[4200];
    assert_true(tu_mkdtemp("make-random", dir, sizeof dir));
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    snprintf(c, sizeof c, "%s/c.gguf", dir);
    const char *args = "--arch qwen2 --dims 32,2,4,2,48,64 --type bf16 --tied";
    assert_int_equal(tu_run_llmos(NULL, NULL,
                                  "model make-random %s --vocab-from '%s' --seed 7 '%s'", args,
                                  model_path, a),
                     0);
    assert_int_equal(tu_run_llmos(NULL, NULL,
                                  "model make-random %s --vocab-from '%s' --seed 7 '%s'", args,
                                  model_path, b),
                     0);
    assert_int_equal(tu_run_llmos(NULL, NULL,
                                  "model make-random %s --vocab-from '%s' --seed 8 '%s'", args,
                                  model_path, c),
                     0);
    llmos_buf fa = {0}, fb = {0}, fc = {0};
    assert_int_equal(llmos_file_read_all(a, 1 << 24, &fa), LLMOS_OK);
    assert_int_equal(llmos_file_read_all(b, 1 << 24, &fb), LLMOS_OK);
    assert_int_equal(llmos_file_read_all(c, 1 << 24, &fc), LLMOS_OK);
    assert_int_equal(fa.len, fb.len);
    assert_memory_equal(fa.data, fb.data, fa.len);
    assert_int_equal(fa.len, fc.len);
    assert_memory_not_equal(fa.data, fc.data, fa.len);

    llmos_model *m = NULL;
    assert_int_equal(model_load(a, &m), LLMOS_OK);
    const model_hparams *hp = model_hparams_of(m);
    assert_int_equal(hp->arch, MODEL_ARCH_QWEN2);
    assert_int_equal(hp->n_layer, 2);
    assert_int_equal(hp->n_vocab, 512); /* the vocabulary file's size */
    assert_int_equal(hp->n_ctx_train, 64);
    assert_true(hp->tied_output && hp->qkv_bias);
    assert_int_equal(hp->weight_type, GGML_TYPE_BF16);
    tokenizer *t = NULL;
    assert_int_equal(tok_load_gguf(model_gguf(m), a, &t), LLMOS_OK);
    assert_int_equal(tok_n_vocab(t), 512);
    tok_free(t);
    model_free(m);

    llmos_buf out = {0}, err = {0};
    assert_int_equal(
        tu_run_llmos(&out, NULL, "generate --model '%s' --prompt 'Once' -n 5 --seed 1", a), 0);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "model make-random --shape nope --vocab-from '%s' '%s'",
                                  model_path, c),
                     2);
    assert_non_null(strstr(err.data, "unknown shape 'nope'"));
    buf_free(&out);
    buf_free(&err);
    buf_free(&fa);
    buf_free(&fb);
    buf_free(&fc);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_ids),      cmocka_unit_test(test_text_and_stop_token),
        cmocka_unit_test(test_stop_strings),    cmocka_unit_test(test_callback_and_context),
        cmocka_unit_test(test_seeded_sampling), cmocka_unit_test(test_cli),
        cmocka_unit_test(test_make_random),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
