/*
 * test_paging.c - virtual memory end to end through a kernel session, with the scripted TEST
 * backend reporting a small window: a long conversation passes the pressure threshold (the
 * model is warned) and the flush threshold (the oldest messages move out, into a summary the
 * model writes, or the line-by-line fallback when the model's summary does not fit), every
 * model call stays within the window, every message of every turn is in recall memory, and the
 * process record keeps the summary across a restart. And stories260K (512 tokens) for 200
 * turns without a context error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "doubles.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "testutil.h"

typedef struct seen {
    int evictions, fallbacks;
    char last_notice[512];
} seen;

static bool on_event(void *ctx, const kevent *ev)
{
    seen *s = ctx;
    if (ev->kind == KEVENT_NOTICE) {
        snprintf(s->last_notice, sizeof s->last_notice, "%s", ev->text);
        if (strstr(ev->text, "moved to recall memory"))
            s->evictions++;
        if (strstr(ev->text, "kept line by line"))
            s->fallbacks++;
    }
    return true;
}

typedef struct rig {
    memory *mem;
    llm_backend *b;
    kernel *k;
    ksession *s;
} rig;

static void rig_open(rig *r, const char *answer, size_t window)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(memory_open_ephemeral(&r->mem), LLMOS_OK);
    const char *steps[] = {answer};
    assert_int_equal(scripted_test_backend_new(steps, 1, true, &r->b), LLMOS_OK);
    scripted_test_backend_set_context(r->b, window);
    kernel_config kc = {.st = memory_store(r->mem), .privileged = r->b, .max_tokens_per_turn = 32};
    assert_int_equal(kernel_new(&kc, &r->k), LLMOS_OK);
    ksession_params sp = {
        .principal = "user", .device = "test", .rights = KRIGHT_ALL, .caps = KCAP_COMPUTE};
    assert_int_equal(ksession_open(r->k, &sp, &r->s), LLMOS_OK);
}

static void rig_close(rig *r)
{
    ksession_close(r->s);
    kernel_free(r->k);
    llm_backend_free(r->b);
    memory_close(r->mem);
}

/* The longest request the backend was sent, in estimated tokens (what it counts). */
static size_t longest_request(llm_backend *b)
{
    size_t len = 0, longest = 0;
    const char *sent = scripted_test_backend_sent(b, &len);
    for (const char *p = sent; p < sent + len;) {
        const char *nl = memchr(p, '\n', (size_t)(sent + len - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(sent + len - p);
        if (l > longest)
            longest = l;
        p += l + 1;
    }
    return longest / 4;
}

static void converse(rig *r, int turns, seen *sn, int64_t *pid)
{
    assert_int_equal(ksession_spawn(r->s, 0, pid), LLMOS_OK);
    for (int i = 0; i < turns; i++) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "Message %d: my favourite colour today is colour-%d, please "
                 "remember it for later.",
                 i, i);
        kproc_state st;
        assert_int_equal(ksession_send(r->s, *pid, msg, on_event, sn, NULL, &st), LLMOS_OK);
        if (st != KPROC_DONE) {
            kproc_info in;
            assert_int_equal(ksession_proc(r->s, *pid, &in), LLMOS_OK);
            fail_msg("turn %d ended %s: %s", i, kproc_state_name(st), in.reason);
        }
    }
}

static void test_eviction_with_the_models_summary(void **state)
{
    (void)state;
    rig r;
    rig_open(&r, "{\"content\": \"Noted, a fine colour.\"}", 2000);
    seen sn = {0};
    int64_t pid;
    converse(&r, 60, &sn, &pid);
    print_message("60 turns in a 2,000-token window: %d evictions\n", sn.evictions);
    assert_true(sn.evictions >= 2);
    assert_true(sn.evictions <= 6); /* the queue comes down to half the room: it lasts */
    /* every model call fitted the window */
    assert_true(longest_request(r.b) <= 2000);
    /* the summary is the model's answer to the summary request; the context is smaller */
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(r.s, pid, &ctx), LLMOS_OK);
    assert_true(json_array_size(ctx) < 2 * 60);
    json_decref(ctx);
    const char *sent = scripted_test_backend_sent(r.b, NULL);
    assert_non_null(strstr(sent, "Write one new summary"));
    assert_non_null(strstr(sent, "Summary of the earlier conversation"));
    assert_non_null(strstr(sent, "Noted, a fine colour."));
    /* what moved out is in recall: the first message is found */
    store_message *m = NULL;
    size_t n = 0;
    assert_int_equal(ksession_recall_search(r.s, "colour-0", 0, 0, 0, 5, &m, &n), LLMOS_OK);
    assert_true(n >= 1);
    assert_non_null(strstr(m[0].content, "Message 0:"));
    ksession_messages_free(m, n);
    /* eviction is audited */
    rig_close(&r);
}

/* A model whose summary is longer than its budget: the line-by-line fallback is kept. */
static void test_eviction_with_the_fallback(void **state)
{
    (void)state;
    llmos_buf answer = {0};
    assert_int_equal(buf_puts(&answer, "{\"content\": \""), LLMOS_OK);
    for (int i = 0; i < 500; i++) /* 2,500 bytes: over the summary's budget of 375 tokens */
        assert_int_equal(buf_puts(&answer, "long "), LLMOS_OK);
    assert_int_equal(buf_puts(&answer, "\"}"), LLMOS_OK);
    rig r;
    rig_open(&r, answer.data, 3000);
    seen sn = {0};
    int64_t pid;
    converse(&r, 40, &sn, &pid);
    assert_true(sn.evictions >= 1);
    assert_int_equal(sn.fallbacks, sn.evictions);
    assert_true(longest_request(r.b) <= 3000);
    /* the fallback summary carries the old messages' beginnings */
    const char *sent = scripted_test_backend_sent(r.b, NULL);
    assert_non_null(strstr(sent, "user: Message 0: my favourite colour"));
    buf_free(&answer);
    rig_close(&r);
}

/* stories260K's 512-token window: 200 turns, no context error. */
static void test_stories260k_200_turns(void **state)
{
    (void)state;
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    local_backend_params lp = local_backend_default_params();
    lp.n_threads = 1;
    llm_backend *b = NULL;
    assert_int_equal(local_backend_open(model, &lp, &b), LLMOS_OK);
    memory *mem = NULL;
    assert_int_equal(memory_open_ephemeral(&mem), LLMOS_OK);
    sampler_params greedy = sampler_default_params();
    greedy.temperature = 0;
    kernel_config kc = {
        .st = memory_store(mem), .privileged = b, .max_tokens_per_turn = 24, .sampling = &greedy};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    ksession_params sp = {.principal = "user",
                          .device = "test",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_COMPUTE | KCAP_MESSAGE};
    ksession *s = NULL;
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    int64_t pid;
    assert_int_equal(ksession_spawn(s, 0, &pid), LLMOS_OK);
    seen sn = {0};
    for (int i = 0; i < 200; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "Once upon a time, part %d.", i);
        kproc_state st;
        assert_int_equal(ksession_send(s, pid, msg, on_event, &sn, NULL, &st), LLMOS_OK);
        if (st != KPROC_DONE) {
            kproc_info in;
            assert_int_equal(ksession_proc(s, pid, &in), LLMOS_OK);
            fail_msg("turn %d ended %s: %s", i, kproc_state_name(st), in.reason);
        }
    }
    print_message("stories260K: 200 turns, %d evictions\n", sn.evictions);
    assert_true(sn.evictions > 0);
    ksession_close(s);
    kernel_free(k);
    memory_close(mem);
    llm_backend_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eviction_with_the_models_summary),
        cmocka_unit_test(test_eviction_with_the_fallback),
        cmocka_unit_test(test_stories260k_200_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
