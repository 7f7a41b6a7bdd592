/*
 * test_backend_batch.c - many chats at once on one local backend (continuous batching,
 * batcher.c), on a random-weight qwen2 model made with `llmos model make-random`.
 *
 * Threads chatting at once get the same greedy answers as the same chats one at a time, with
 * more chats than max_seqs (the rest wait for a turn) and forward passes that hold several
 * sequences; a cancel reaches a chat in the middle of its prompt and in the middle of its
 * answer without disturbing the others; a KV budget too small for one sequence is refused
 * with its numbers; the prefix cache: a second turn reuses the first turn's cache in the same
 * scope (never across scopes), through a pool so small that kept sequences are swapped out
 * and restored, and answers as a backend without any cache does.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/backend.h"
#include "testutil.h"

#define N_CHATS 6

static char model_dir[4096];
static char model_file[4200], other_file[4200];

static int make_model(void **state)
{
    (void)state;
    char vocab[4096];
    if (!tu_testdata_find(vocab, sizeof vocab, "vocab/ggml-vocab-qwen2.gguf") ||
        !getenv("LLMOS_BIN") || !tu_mkdtemp("backend-batch", model_dir, sizeof model_dir))
        return 0;
    snprintf(model_file, sizeof model_file, "%s/rq.gguf", model_dir);
    if (tu_run_llmos(NULL, NULL,
                     "model make-random --arch qwen2 --dims 64,2,4,2,128,4096 --seed 11 "
                     "--vocab-from '%s' '%s'",
                     vocab, model_file) != 0)
        model_file[0] = 0;
    snprintf(other_file, sizeof other_file, "%s/other.gguf", model_dir);
    if (tu_run_llmos(NULL, NULL,
                     "model make-random --arch qwen2 --dims 64,2,4,2,128,4096 --seed 12 "
                     "--vocab-from '%s' '%s'",
                     vocab, other_file) != 0)
        other_file[0] = 0;
    return 0;
}

static int remove_model(void **state)
{
    (void)state;
    if (model_dir[0])
        tu_rmrf(model_dir);
    return 0;
}

static llm_backend *open_file(const char *file, uint32_t max_seqs, uint32_t n_batch, size_t kv_mem);

static llm_backend *open_with(uint32_t max_seqs, uint32_t n_batch, size_t kv_mem)
{
    return open_file(model_file, max_seqs, n_batch, kv_mem);
}

static llm_backend *open_file(const char *file, uint32_t max_seqs, uint32_t n_batch, size_t kv_mem)
{
    char vocab[4096];
    tu_testdata_path(vocab, sizeof vocab, "vocab/ggml-vocab-qwen2.gguf");
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set: no llmos program to make a model with");
    if (!model_file[0])
        fail_msg("llmos model make-random failed");
    local_backend_params p = local_backend_default_params();
    p.n_ctx = 2048;
    p.n_threads = 2;
    p.max_seqs = max_seqs;
    p.n_batch = n_batch;
    p.kv_mem = kv_mem;
    llm_backend *b = NULL;
    llmos_err err = local_backend_open(file, &p, &b);
    if (err)
        fail_msg("local_backend_open: %s", llmos_errmsg());
    return b;
}

static json_t *convo(size_t i)
{
    static const char *const asks[N_CHATS] = {
        "Tell me a story about a cat.", "What is two plus two?",
        "Name three rivers in Europe.", "Write a haiku about rain, please, with care.",
        "Why is the sky blue?",         "List the planets of the solar system in order."};
    return json_pack("[{ss ss} {ss ss}]", "role", "system", "content", "Be brief.", "role", "user",
                     "content", asks[i]);
}

typedef struct chat_job {
    llm_backend *b;
    json_t *msgs;
    int32_t max_tokens;
    const char *scope;
    const json_t *format; /* response_format, or NULL */
    atomic_bool cancel;
    size_t cancel_after;       /* pieces streamed before the chat cancels itself; 0: never */
    atomic_bool *cancel_other; /* set at this chat's first piece (or its end), when not NULL */
    size_t pieces;
    llm_response r;
    llmos_err err;
} chat_job;

static bool on_piece(void *ctx, const char *text, size_t len)
{
    chat_job *j = ctx;
    (void)text;
    (void)len;
    if (++j->pieces == j->cancel_after)
        atomic_store(&j->cancel, true); /* seen before the next token */
    if (j->cancel_other)
        atomic_store(j->cancel_other, true);
    return true;
}

static void *chat_thread(void *arg)
{
    chat_job *j = arg;
    llm_request rq = llm_request_default();
    rq.messages = j->msgs;
    rq.sampling.temperature = 0;
    rq.max_tokens = j->max_tokens;
    rq.cancel = &j->cancel;
    rq.cache_scope = j->scope;
    rq.response_format = j->format;
    j->err = llm_chat(j->b, &rq, on_piece, j, &j->r);
    if (j->cancel_other)
        atomic_store(j->cancel_other, true);
    if (j->err)
        fprintf(stderr, "llm_chat: %s\n", llmos_errmsg());
    return NULL;
}

static void run_all(chat_job *jobs, size_t n)
{
    pthread_t th[N_CHATS + 2];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(pthread_create(&th[i], NULL, chat_thread, &jobs[i]), 0);
    for (size_t i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

/* Each chat alone, on a backend of one sequence. */
static void answers_alone(chat_job *alone, int32_t max_tokens)
{
    llm_backend *b = open_with(1, 0, 0);
    for (size_t i = 0; i < N_CHATS; i++) {
        alone[i] = (chat_job){.b = b, .msgs = convo(i), .max_tokens = max_tokens};
        chat_thread(&alone[i]);
        assert_int_equal(alone[i].err, LLMOS_OK);
    }
    llm_backend_free(b);
}

static void free_jobs(chat_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        llm_response_free(&jobs[i].r);
        json_decref(jobs[i].msgs);
    }
}

static void test_concurrent_equals_alone(void **state)
{
    (void)state;
    chat_job alone[N_CHATS], together[N_CHATS];
    answers_alone(alone, 24);
    llm_backend *b = open_with(4, 64, 0); /* 6 chats, 4 at a time */
    assert_int_equal(llm_max_concurrent(b), 4);
    for (size_t i = 0; i < N_CHATS; i++)
        together[i] = (chat_job){.b = b, .msgs = convo(i), .max_tokens = 24};
    run_all(together, N_CHATS);
    for (size_t i = 0; i < N_CHATS; i++) {
        assert_int_equal(together[i].err, LLMOS_OK);
        assert_string_equal(together[i].r.finish_reason, alone[i].r.finish_reason);
        assert_int_equal(together[i].r.completion_tokens, alone[i].r.completion_tokens);
        assert_int_equal(together[i].r.prompt_tokens, alone[i].r.prompt_tokens);
        if (strcmp(together[i].r.content, alone[i].r.content) != 0)
            fail_msg("chat %zu: \"%s\" batched, \"%s\" alone", i, together[i].r.content,
                     alone[i].r.content);
    }
    llm_stats st;
    assert_int_equal(llm_get_stats(b, &st), LLMOS_OK);
    /* every token of every chat went through a step, and steps held several sequences */
    uint64_t want = 0;
    for (size_t i = 0; i < N_CHATS; i++)
        want += alone[i].r.prompt_tokens + alone[i].r.completion_tokens - 1;
    assert_int_equal(st.tokens, want);
    print_message("%" PRIu64 " tokens in %" PRIu64 " steps\n", st.tokens, st.steps);
    assert_true(st.steps < want / 2);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.kv_used, 0); /* no scope: nothing kept */
    free_jobs(alone, N_CHATS);
    free_jobs(together, N_CHATS);
    llm_backend_free(b);
}

/* Chats constrained by a grammar (JSON), several at once: each has its own grammar state and
 * masked logits, all share the backend's grammar vocabulary (built by the first of them). */
static void test_concurrent_grammar(void **state)
{
    (void)state;
    json_t *fmt = json_pack("{ss}", "type", "json_object");
    chat_job alone[3], together[3];
    llm_backend *one = open_with(1, 0, 0);
    for (size_t i = 0; i < 3; i++) {
        alone[i] = (chat_job){.b = one, .msgs = convo(i), .max_tokens = 16, .format = fmt};
        chat_thread(&alone[i]);
        assert_int_equal(alone[i].err, LLMOS_OK);
    }
    llm_backend_free(one);
    llm_backend *b = open_with(3, 0, 0);
    for (size_t i = 0; i < 3; i++)
        together[i] = (chat_job){.b = b, .msgs = convo(i), .max_tokens = 16, .format = fmt};
    run_all(together, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(together[i].err, LLMOS_OK);
        assert_true(together[i].r.content[0] == '{'); /* the grammar held */
        assert_string_equal(together[i].r.content, alone[i].r.content);
    }
    free_jobs(alone, 3);
    free_jobs(together, 3);
    json_decref(fmt);
    llm_backend_free(b);
}

/* A long prompt (about 1,500 tokens, at most 16 tokens a step) cancelled from another thread:
 * a short chat that joins once the long one is in sets the flag when it streams its first
 * piece (it is answered first: decode tokens go before prompt chunks, so the long prompt is
 * still going in then, whatever the timing). The short chat answers as it does alone. */
static void test_cancel_mid_prompt(void **state)
{
    (void)state;
    chat_job alone[N_CHATS];
    answers_alone(alone, 16);
    llm_backend *b = open_with(2, 16, 0);
    llmos_buf text = {0};
    for (int i = 0; i < 150; i++)
        assert_int_equal(buf_puts(&text, "the quick brown fox jumps over the lazy dog "), 0);
    chat_job jobs[2] = {
        {.b = b,
         .msgs = json_pack("[{ss ss}]", "role", "user", "content", text.data),
         .max_tokens = 16},
        {.b = b, .msgs = convo(1), .max_tokens = 16},
    };
    jobs[1].cancel_other = &jobs[0].cancel;
    pthread_t th[2];
    assert_int_equal(pthread_create(&th[0], NULL, chat_thread, &jobs[0]), 0);
    llm_stats st = {0};
    while (st.steps < 1) { /* the long prompt is going in */
        usleep(100);
        assert_int_equal(llm_get_stats(b, &st), LLMOS_OK);
    }
    assert_int_equal(pthread_create(&th[1], NULL, chat_thread, &jobs[1]), 0);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    assert_int_equal(jobs[0].err, LLMOS_OK);
    assert_string_equal(jobs[0].r.finish_reason, "cancelled");
    assert_int_equal(jobs[0].r.completion_tokens, 0);
    assert_true(jobs[0].r.prompt_tokens > 1000);
    assert_int_equal(llm_get_stats(b, &st), LLMOS_OK);
    assert_true(st.tokens < jobs[0].r.prompt_tokens); /* most of the prompt never ran */
    assert_int_equal(jobs[1].err, LLMOS_OK);
    assert_string_equal(jobs[1].r.content, alone[1].r.content);
    buf_free(&text);
    free_jobs(jobs, 2);
    free_jobs(alone, N_CHATS);
    llm_backend_free(b);
}

/* A chat cancelled after 3 streamed pieces stops there; the others go on to their ends. */
static void test_cancel_mid_answer(void **state)
{
    (void)state;
    chat_job alone[N_CHATS], jobs[3];
    answers_alone(alone, 20);
    llm_backend *b = open_with(3, 0, 0);
    for (size_t i = 0; i < 3; i++)
        jobs[i] = (chat_job){.b = b, .msgs = convo(i), .max_tokens = 20};
    jobs[1].cancel_after = 3;
    run_all(jobs, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(jobs[i].err, LLMOS_OK);
    assert_string_equal(jobs[1].r.finish_reason, "cancelled");
    assert_true(jobs[1].r.completion_tokens >= 3 && jobs[1].r.completion_tokens < 20);
    assert_memory_equal(jobs[1].r.content, alone[1].r.content, strlen(jobs[1].r.content));
    assert_string_equal(jobs[0].r.content, alone[0].r.content);
    assert_string_equal(jobs[2].r.content, alone[2].r.content);
    free_jobs(jobs, 3);
    free_jobs(alone, N_CHATS);
    llm_backend_free(b);
}

/* One chat in `scope` on b, greedy, 12 tokens. */
static llm_response chat_in(llm_backend *b, json_t *msgs, const char *scope)
{
    chat_job j = {.b = b, .msgs = msgs, .max_tokens = 12, .scope = scope};
    chat_thread(&j);
    assert_int_equal(j.err, LLMOS_OK);
    return j.r;
}

static json_t *second_turn(size_t i, const char *answer)
{
    json_t *m = convo(i);
    json_array_append_new(m, json_pack("{ss ss}", "role", "assistant", "content", answer));
    json_array_append_new(m, json_pack("{ss ss}", "role", "user", "content", "And then?"));
    return m;
}

/* The second turn of a conversation reuses the first turn's cache, in its scope only, and
 * answers as a backend with no cache does; through a pool of two sequences, where three
 * conversations make the oldest one swap out and back in; and after a context switch into a
 * second backend (llm_kv_save, llm_kv_restore), which refuses a foreign or corrupted cache. */
static void test_prefix_cache(void **state)
{
    (void)state;
    size_t one = 2 * 2 * 2048 * 2 * 16 * 4; /* K and V, layers, positions, heads x dims, F32 */
    llm_backend *b = open_with(2, 0, 2 * one);
    json_t *m1[3];
    llm_response first[3];
    const char *scopes[3] = {"alice", "bob", "carol"};
    for (size_t i = 0; i < 3; i++) {
        m1[i] = convo(i);
        first[i] = chat_in(b, m1[i], scopes[i]);
        assert_int_equal(first[i].cached_tokens, 0);
    }
    llm_stats st;
    assert_int_equal(llm_get_stats(b, &st), LLMOS_OK);
    assert_int_equal(st.kept, 2);    /* bob's and carol's caches */
    assert_int_equal(st.swapped, 1); /* alice's, the least recently used, as a snapshot */
    assert_int_equal(st.swaps_out, 1);
    assert_int_equal(st.kv_used, 2 * one);

    /* the answers a backend without any cache gives */
    llm_backend *fresh = open_with(1, 0, 0);
    json_t *m2 = second_turn(0, first[0].content);
    llm_response want = chat_in(fresh, m2, NULL);
    assert_int_equal(want.cached_tokens, 0);
    llm_backend_free(fresh);

    llm_response got = chat_in(b, m2, "alice"); /* swapped back in */
    assert_true(got.cached_tokens >= first[0].prompt_tokens);
    assert_true(got.cached_tokens < got.prompt_tokens);
    assert_string_equal(got.content, want.content);
    assert_int_equal(llm_get_stats(b, &st), LLMOS_OK);
    assert_int_equal(st.swaps_in, 1);
    assert_int_equal(st.cached_tokens, got.cached_tokens);
    llm_response_free(&got);

    /* another scope shares nothing */
    llm_response other = chat_in(b, m2, "mallory");
    assert_int_equal(other.cached_tokens, 0);
    assert_string_equal(other.content, want.content);
    llm_response_free(&other);

    /* context switch: alice's cache saved, restored into a second backend */
    llmos_buf snap = {0};
    assert_int_equal(llm_kv_save(b, "alice", &snap), LLMOS_OK);
    assert_int_equal(llm_kv_save(b, "nobody", &snap), LLMOS_ERR_NOT_FOUND);
    llm_backend *b2 = open_with(2, 0, 0);
    json_t *m3 = second_turn(0, want.content);
    json_array_append_new(m3, json_pack("{ss ss}", "role", "assistant", "content", "Fine."));
    json_array_append_new(m3, json_pack("{ss ss}", "role", "user", "content", "Thanks."));
    llm_response want3 = chat_in(b2, m3, NULL);
    assert_int_equal(llm_kv_restore(b2, "alice", snap.data, snap.len), LLMOS_OK);
    llm_response got3 = chat_in(b2, m3, "alice");
    assert_true(got3.cached_tokens > first[0].prompt_tokens);
    assert_string_equal(got3.content, want3.content);
    assert_int_equal(llm_kv_forget(b2, "alice"), 1);
    assert_int_equal(llm_kv_save(b2, "alice", &snap), LLMOS_ERR_NOT_FOUND);

    /* refused: a corrupted snapshot, one of another model */
    ((char *)snap.data)[snap.len / 2] ^= 4;
    assert_int_equal(llm_kv_restore(b2, "alice", snap.data, snap.len), LLMOS_ERR_FORMAT);
    ((char *)snap.data)[snap.len / 2] ^= 4;
    if (!other_file[0])
        fail_msg("llmos model make-random failed");
    llm_backend *foreign = open_file(other_file, 1, 0, 0);
    assert_int_equal(llm_kv_restore(foreign, "alice", snap.data, snap.len), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "another model"));
    llm_backend_free(foreign);

    buf_free(&snap);
    llm_response_free(&got3);
    llm_response_free(&want3);
    llm_response_free(&want);
    json_decref(m2);
    json_decref(m3);
    for (size_t i = 0; i < 3; i++) {
        llm_response_free(&first[i]);
        json_decref(m1[i]);
    }
    llm_backend_free(b2);
    llm_backend_free(b);
}

static void test_kv_budget_too_small(void **state)
{
    (void)state;
    char vocab[4096];
    tu_testdata_path(vocab, sizeof vocab, "vocab/ggml-vocab-qwen2.gguf");
    if (!model_file[0])
        fail_msg("llmos model make-random failed");
    local_backend_params p = local_backend_default_params();
    p.n_ctx = 2048;
    p.max_seqs = 4;
    p.kv_mem = 1000000; /* K and V: 2 layers x 2048 x 2 heads x 16 x 4 bytes x 2 = 1 MiB */
    llm_backend *b = NULL;
    assert_int_equal(local_backend_open(model_file, &p, &b), LLMOS_ERR_LIMIT);
    assert_null(b);
    const char *msg = llmos_errmsg();
    assert_non_null(strstr(msg, "1000000 bytes"));
    assert_non_null(strstr(msg, "1048576 bytes"));
    assert_non_null(strstr(msg, "2048 positions"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_equals_alone),
        cmocka_unit_test(test_concurrent_grammar),
        cmocka_unit_test(test_cancel_mid_prompt),
        cmocka_unit_test(test_cancel_mid_answer),
        cmocka_unit_test(test_prefix_cache),
        cmocka_unit_test(test_kv_budget_too_small),
    };
    return cmocka_run_group_tests(tests, make_model, remove_model);
}
