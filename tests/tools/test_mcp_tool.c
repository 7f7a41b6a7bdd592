/*
 * test_mcp_tool.c - the `mcp` system call (src/tools/mcp_tool.c) through a kernel session
 * driven by the scripted TEST backend, over a servers file naming scripted_mcp_server.py (a
 * TEST DOUBLE): listing a server's tools and calling one, the result quarantined as a handle
 * that reaches the user through send_message and never the privileged model; a server that
 * lies about its schema is an error result, not a crash; without the exec capability the call
 * is refused; no servers file, no tool; a damaged file is an error naming it.
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
#include "llmos/mcp.h"
#include "llmos/memory.h"
#include "testutil.h"

typedef struct rig {
    memory *mem;
    llm_backend *b;
    kernel *k;
    ksession *s;
    char dir[256];
} rig;

static void rig_open(rig *r, const char *const *steps, size_t n, uint32_t caps)
{
    memset(r, 0, sizeof *r);
    const char *src = getenv("LLMOS_SRC");
    if (!src)
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    assert_true(tu_mkdtemp("mcptool", r->dir, sizeof r->dir));
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/mcp.json", r->dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"servers\": {\"fake\": {\"command\": [\"python3\", "
            "\"%s/tests/tools/scripted_mcp_server.py\", \"good\"]},"
            " \"liar\": {\"command\": [\"python3\", \"%s/tests/tools/scripted_mcp_server.py\", "
            "\"lies\"]}}}",
            src, src);
    fclose(f);
    const ktool *t = NULL;
    assert_int_equal(mcp_syscall_tool(cfg, &t), LLMOS_OK);
    assert_string_equal(t->name, "mcp");
    assert_non_null(strstr(t->description, "fake, liar"));
    assert_false(t->output_trusted);
    assert_int_equal(memory_open_ephemeral(&r->mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(steps, n, false, &r->b), LLMOS_OK);
    kernel_config kc = {.st = memory_store(r->mem),
                        .privileged = r->b,
                        .max_tokens_per_turn = 32,
                        .extra_tools = t,
                        .n_extra_tools = 1};
    assert_int_equal(kernel_new(&kc, &r->k), LLMOS_OK);
    ksession_params sp = {
        .principal = "alice", .device = "test", .rights = KRIGHT_ALL, .caps = caps};
    assert_int_equal(ksession_open(r->k, &sp, &r->s), LLMOS_OK);
}

static void rig_close(rig *r)
{
    ksession_close(r->s);
    kernel_free(r->k);
    llm_backend_free(r->b);
    memory_close(r->mem);
    tu_rmrf(r->dir);
}

static llmos_buf delivered;

static bool on_event(void *ctx, const kevent *ev)
{
    (void)ctx;
    if (ev->kind == KEVENT_MESSAGE)
        assert_int_equal(buf_append(&delivered, ev->text, ev->len), LLMOS_OK);
    return true;
}

static void turn(rig *r, int64_t pid, const char *msg)
{
    buf_clear(&delivered);
    kproc_state st;
    assert_int_equal(ksession_send(r->s, pid, msg, on_event, NULL, NULL, &st), LLMOS_OK);
    if (st != KPROC_DONE) {
        kproc_info in;
        assert_int_equal(ksession_proc(r->s, pid, &in), LLMOS_OK);
        fail_msg("the turn ended %s: %s", kproc_state_name(st), in.reason);
    }
}

static char result_text[8192];
static const char *tool_result(rig *r, int64_t pid, size_t nth)
{
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(r->s, pid, &ctx), LLMOS_OK);
    result_text[0] = 0;
    size_t seen = 0;
    for (size_t i = 0; i < json_array_size(ctx); i++) {
        json_t *m = json_array_get(ctx, i);
        if (strcmp(ljson_get_string(m, "role", ""), "tool") == 0 && seen++ == nth)
            snprintf(result_text, sizeof result_text, "%s", ljson_get_string(m, "content", ""));
    }
    json_decref(ctx);
    return result_text;
}

static void test_list_and_call_through_the_kernel(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"mcp\", \"arguments\": {\"server\": \"fake\"}}]}",
        "{\"tool_calls\": [{\"name\": \"mcp\", \"arguments\": {\"server\": \"fake\", \"tool\": "
        "\"echo\", \"arguments\": {\"message\": \"CANARY-MCP\"}}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": {\"recipient\": "
        "\"user\", \"text\": \"$VAR1 // $VAR2\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, 4, KCAP_EXEC | KCAP_MESSAGE);
    int64_t pid;
    assert_int_equal(ksession_spawn(r.s, 0, &pid), LLMOS_OK);
    turn(&r, pid, "Echo something through MCP");
    assert_non_null(strstr(tool_result(&r, pid, 0), "untrusted and stored as $VAR1"));
    assert_non_null(strstr(tool_result(&r, pid, 1), "untrusted and stored as $VAR2"));
    if (!strstr(delivered.data, "2 tools\n- echo: Echoes its message\n  arguments: {") ||
        !strstr(delivered.data, "Echo: CANARY-MCP"))
        fail_msg("delivered: %s", delivered.data);
    /* the privileged model never saw what the server said */
    assert_null(strstr(scripted_test_backend_sent(r.b, NULL), "Echo: CANARY-MCP"));
    assert_null(strstr(scripted_test_backend_sent(r.b, NULL), "Echoes its message"));
    rig_close(&r);
}

static void test_liar_and_missing_server(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"mcp\", \"arguments\": {\"server\": \"liar\"}}]}",
        "{\"tool_calls\": [{\"name\": \"mcp\", \"arguments\": {\"server\": \"nosuch\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": {\"recipient\": "
        "\"user\", \"text\": \"$VAR1 // $VAR2\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, 4, KCAP_EXEC | KCAP_MESSAGE);
    int64_t pid;
    assert_int_equal(ksession_spawn(r.s, 0, &pid), LLMOS_OK);
    turn(&r, pid, "List the liar's tools");
    /* the errors are the servers' words too: quarantined, then shown to the user */
    assert_non_null(strstr(tool_result(&r, pid, 0), "error message of tool 'mcp' is untrusted"));
    if (!strstr(delivered.data, "inputSchema") || !strstr(delivered.data, "no server named nosuch"))
        fail_msg("delivered: %s", delivered.data);
    rig_close(&r);
}

static void test_needs_exec(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"mcp\", \"arguments\": {\"server\": \"fake\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, 2, KCAP_MESSAGE | KCAP_READ);
    int64_t pid;
    assert_int_equal(ksession_spawn(r.s, 0, &pid), LLMOS_OK);
    turn(&r, pid, "List the tools");
    const char *res = tool_result(&r, pid, 0);
    if (strstr(res, "2 tools") || !strstr(res, "error"))
        fail_msg("without exec: %s", res);
    rig_close(&r);
}

static void test_config_files(void **state)
{
    (void)state;
    char dir[256], cfg[512];
    assert_true(tu_mkdtemp("mcpcfg", dir, sizeof dir));
    snprintf(cfg, sizeof cfg, "%s/mcp.json", dir);
    const ktool *t = (const ktool *)1;
    assert_int_equal(mcp_syscall_tool(cfg, &t), LLMOS_ERR_NOT_FOUND); /* no file */
    assert_null(t);
    static const char *const bad[] = {
        "{\"servers\": {\"a b\": {\"command\": [\"x\"]}}}",
        "{\"servers\": {\"a\": {\"command\": []}}}",
        "{\"servers\": {\"a\": {\"command\": \"x\"}}}",
        "{\"servers\": []}",
        "{\"servers\": {\"a\": {\"command\": [\"x\\u0000y\"]}}}",
        "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(llmos_file_write_atomic(cfg, bad[i], strlen(bad[i]), 0600), LLMOS_OK);
        llmos_err err = mcp_syscall_tool(cfg, &t);
        if (err != LLMOS_ERR_FORMAT)
            fail_msg("%s: %s", bad[i], llmos_errmsg());
        assert_non_null(strstr(llmos_errmsg(), "mcp.json"));
    }
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_and_call_through_the_kernel),
        cmocka_unit_test(test_liar_and_missing_server),
        cmocka_unit_test(test_needs_exec),
        cmocka_unit_test(test_config_files),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    buf_free(&delivered);
    return rc;
}
