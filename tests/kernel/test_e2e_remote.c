/*
 * test_e2e_remote.c - llmos as its own remote server: the stories260K model behind
 * `llmos serve`'s HTTP server on loopback, reached through the remote backend (libcurl, the
 * OpenAI wire format), gives the same greedy text as the local backend directly; and the
 * kernel's agent loop runs over that remote backend exactly as it does over the local one.
 * This proves the plumbing of "a model that runs elsewhere": nothing above the backend
 * interface can tell the difference.
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
#include "llmos/memory.h"
#include "llmos/server.h"
#include "testutil.h"

static bool count_model_loads(const store_audit_record *r, void *ctx)
{
    int *n = ctx;
    *n += strcmp(r->kind, "model.load") == 0;
    return true;
}

static char *greedy_answer(llm_backend *b, const char *question)
{
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", question);
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    rq.max_tokens = 16;
    rq.sampling.temperature = 0;
    llm_response r;
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_OK);
    assert_int_equal(r.completion_tokens, 16);
    char *text = strdup(r.content);
    llm_response_free(&r);
    json_decref(msgs);
    return text;
}

static void test_remote_equals_local_and_runs_the_kernel(void **state)
{
    (void)state;
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    local_backend_params lp = local_backend_default_params();
    lp.n_ctx = 512;
    lp.n_threads = 1;
    llm_backend *local = NULL;
    assert_int_equal(local_backend_open(model, &lp, &local), LLMOS_OK);
    char *direct = greedy_answer(local, "Once upon a time");

    /* llmos serve: a kernel over the local model, on a store in memory */
    memory *srv_mem = NULL;
    assert_int_equal(memory_open_ephemeral(&srv_mem), LLMOS_OK);
    kernel_config sc = {.st = memory_store(srv_mem), .privileged = local};
    kernel *srv_k = NULL;
    assert_int_equal(kernel_new(&sc, &srv_k), LLMOS_OK);
    http_server_params sp = http_server_default_params();
    sp.port = 0;
    http_server *srv = NULL;
    assert_int_equal(http_server_start(srv_k, &sp, &srv), LLMOS_OK);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1", (unsigned)http_server_port(srv));
    remote_backend_params rp = remote_backend_default_params();
    rp.context_size = 512;
    llm_backend *remote = NULL;
    assert_int_equal(remote_backend_open(url, llm_model_name(local), &rp, &remote), LLMOS_OK);

    /* same model, same greedy decoding, over HTTP: the same text */
    char *via_http = greedy_answer(remote, "Once upon a time");
    assert_string_equal(via_http, direct);
    free(via_http);
    free(direct);

    /* the kernel over the remote backend */
    char dir[256];
    assert_true(tu_mkdtemp("e2e-remote", dir, sizeof dir));
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    store *st = NULL;
    assert_int_equal(store_open(dir, "pw", &o, &st), LLMOS_OK);
    kernel_config c = {.st = st,
                       .privileged = remote,
                       .max_tokens_per_turn = 12,
                       .system_prompt = "Once upon a time"};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&c, &k), LLMOS_OK);
    ksession_params kp = {.principal = "user",
                          .device = "test",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_MESSAGE,
                          .budget = {.tokens = 400, .tool_calls = 3, .wall_s = 30}};
    ksession *s = NULL;
    assert_int_equal(ksession_open(k, &kp, &s), LLMOS_OK);
    int64_t pid;
    assert_int_equal(ksession_spawn(s, 0, &pid), LLMOS_OK);
    kproc_state fin;
    assert_int_equal(ksession_send(s, pid, "Tell me a story about a cat.", NULL, NULL, NULL, &fin),
                     LLMOS_OK);
    kproc_info in;
    assert_int_equal(ksession_proc(s, pid, &in), LLMOS_OK);
    print_message("over llmos serve: process ended %s (%s): %lld tokens\n", kproc_state_name(fin),
                  in.reason, (long long)in.used.tokens);
    if (fin == KPROC_FAILED)
        fail_msg("the loop failed over the remote backend: %s", in.reason);
    assert_true(fin != KPROC_RUNNING && fin != KPROC_WAITING);
    assert_true(in.used.tokens > 0);
    int loads = 0;
    assert_int_equal(ksession_audit(s, 1, count_model_loads, &loads), LLMOS_OK);
    assert_int_equal(loads, 1);
    audit_verdict v;
    assert_int_equal(ksession_audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    ksession_close(s);

    http_server_stats stats = http_server_get_stats(srv);
    assert_true(stats.generations >= 2); /* the direct comparison and at least one kernel turn */

    kernel_free(k);
    store_close(st);
    tu_rmrf(dir);
    llm_backend_free(remote);
    http_server_stop(srv);
    kernel_free(srv_k);
    memory_close(srv_mem);
    llm_backend_free(local);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_remote_equals_local_and_runs_the_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
