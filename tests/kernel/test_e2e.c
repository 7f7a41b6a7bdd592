/*
 * test_e2e.c - the kernel end to end over the LOCAL backend with the tiny stories260K model.
 * The model writes gibberish (it knows children's stories, not tools); what is tested is the
 * plumbing: the privileged context goes through the real chat template, tokenizer and
 * forward pass, the loop ends in a final state within its budgets, the process is saved, and
 * the audit log holds the login, the model load and the process records, with an intact chain.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/kernel.h"
#include "testutil.h"

typedef struct kinds {
    int login, model_local, process_end;
} kinds;

static bool count_kind(const store_audit_record *r, void *ctx)
{
    kinds *k = ctx;
    k->login += strcmp(r->kind, "login") == 0;
    k->model_local += strcmp(r->kind, "model.load") == 0 && strstr(r->payload, "\"local\"");
    k->process_end += strcmp(r->kind, "process") == 0 && strstr(r->payload, "\"end\"");
    return true;
}

static void test_stories260k_loop(void **state)
{
    (void)state;
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    local_backend_params lp = local_backend_default_params();
    lp.n_ctx = 512;
    lp.n_threads = 1;
    llm_backend *b = NULL;
    assert_int_equal(local_backend_open(model, &lp, &b), LLMOS_OK);
    char dir[256];
    assert_true(tu_mkdtemp("e2e", dir, sizeof dir));
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    store *st = NULL;
    assert_int_equal(store_open(dir, "pw", &o, &st), LLMOS_OK);
    llm_backend *q = NULL; /* the quarantined model: a second context on the same weights */
    assert_int_equal(local_backend_fork(b, &q), LLMOS_OK);
    assert_int_equal(llm_context_size(q), llm_context_size(b));
    kernel_config c = {.st = st,
                       .privileged = b,
                       .quarantined = q,
                       .max_tokens_per_turn = 12,
                       .system_prompt = "Once upon a time"};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&c, &k), LLMOS_OK);
    /* Budgets: 3 model turns' worth of generated tokens at most, a few seconds. */
    ksession_params sp = {.principal = "user",
                          .device = "test",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_MESSAGE,
                          .budget = {.tokens = 400, .tool_calls = 3, .wall_s = 20}};
    ksession *s = NULL;
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    int64_t pid;
    assert_int_equal(ksession_spawn(s, 0, &pid), LLMOS_OK);
    kproc_state fin;
    assert_int_equal(ksession_send(s, pid, "Tell me a story about a cat.", NULL, NULL, NULL, &fin),
                     LLMOS_OK);
    kproc_info in;
    assert_int_equal(ksession_proc(s, pid, &in), LLMOS_OK);
    print_message("stories260K process ended %s (%s): %lld tokens, %lld tool calls, %.3f s\n",
                  kproc_state_name(fin), in.reason, (long long)in.used.tokens,
                  (long long)in.used.tool_calls, in.used.wall_s);
    if (fin == KPROC_FAILED)
        fail_msg("the loop failed: %s", in.reason);
    assert_true(fin != KPROC_RUNNING && fin != KPROC_WAITING);
    assert_true(in.used.tokens > 0);
    assert_true(in.used.tokens <= 400 + 512); /* a turn may overshoot by at most one prompt */
    char *ans = NULL;
    assert_int_equal(ksession_answer(s, pid, &ans), LLMOS_OK);
    free(ans);
    kinds kk = {0};
    assert_int_equal(ksession_audit(s, 1, count_kind, &kk), LLMOS_OK);
    assert_int_equal(kk.login, 1);
    assert_int_equal(kk.model_local, 2); /* privileged and quarantined */
    assert_int_equal(kk.process_end, 1);
    audit_verdict v;
    assert_int_equal(ksession_audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    ksession_close(s);

    /* A tight token budget stops a second process after its first turn at the latest. */
    sp.budget = (kbudget){.tokens = 1};
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    int64_t pid2;
    assert_int_equal(ksession_spawn(s, 0, &pid2), LLMOS_OK);
    assert_int_equal(ksession_send(s, pid2, "Again.", NULL, NULL, NULL, &fin), LLMOS_OK);
    assert_true(fin == KPROC_DONE || fin == KPROC_OUT_OF_TOKENS);
    assert_int_equal(ksession_proc(s, pid2, &in), LLMOS_OK);
    assert_true(in.used.tokens >= 1);

    ksession_close(s);
    kernel_free(k);
    llm_backend_free(q);
    llm_backend_free(b);
    store_close(st);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
