/*
 * test_workspace_tools.c - the python, shell and files tools as system calls, through kernel
 * sessions, driven by the scripted TEST backend: what they return reaches the user (through
 * send_message of the handle) and never the privileged model; a run is audited; the three
 * tools share one workspace per process and no process sees another's; without the exec or
 * read capability they are refused, and /tools (ksession_tools) does not list them; text of
 * untrusted origin cannot become code or a command.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "doubles.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/sandbox.h"
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
    assert_true(tu_mkdtemp("wstools", r->dir, sizeof r->dir));
    assert_int_equal(memory_open_ephemeral(&r->mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(steps, n, false, &r->b), LLMOS_OK);
    kernel_config kc = {.st = memory_store(r->mem),
                        .privileged = r->b,
                        .max_tokens_per_turn = 32,
                        .workspace_dir = r->dir};
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

static void need_sandbox(void)
{
    llmos_err err = sandbox_probe();
    if (err && geteuid() != 0 && err == LLMOS_ERR_UNSUPPORTED)
        tu_skip("%s", llmos_errmsg());
    if (err)
        fail_msg("sandbox_probe: %s", llmos_errmsg());
}

/* What the user got (send_message), all of it. */
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

/* The content of the n-th tool message (from 0) of process pid. */
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

static bool find_sandbox_record(const store_audit_record *rec, void *ctx)
{
    llmos_buf *b = ctx;
    if (strcmp(rec->kind, "sandbox") == 0)
        return buf_puts(b, rec->payload) == LLMOS_OK && buf_putc(b, '\n') == LLMOS_OK;
    return true;
}

static void test_python_through_the_kernel(void **state)
{
    (void)state;
    need_sandbox();
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"python\", \"arguments\": {\"code\": "
        "\"print('CANARY-%d' % (6 * 7))\\nopen('answer.txt', 'w').write('forty-two')\\n\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": {\"recipient\": "
        "\"user\", \"text\": \"$VAR1\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, 3, KCAP_EXEC | KCAP_MESSAGE);
    int64_t pid;
    assert_int_equal(ksession_spawn(r.s, 0, &pid), LLMOS_OK);
    turn(&r, pid, "What is 6 times 7?");
    /* the model got a handle, the user the report */
    assert_non_null(strstr(tool_result(&r, pid, 0), "untrusted and stored as $VAR1"));
    if (!strstr(delivered.data, "exit status 0\n--- stdout ---\nCANARY-42\n"))
        fail_msg("delivered: %s", delivered.data);
    assert_non_null(strstr(delivered.data, "--- files written in the workspace ---\n"
                                           "answer.txt (9 bytes)\n"));
    assert_null(strstr(scripted_test_backend_sent(r.b, NULL), "--- stdout"));
    /* the file is in the process's workspace */
    char path[512];
    snprintf(path, sizeof path, "%s/alice/%lld/answer.txt", r.dir, (long long)pid);
    assert_int_equal(access(path, F_OK), 0);
    /* audited: how it ended, not what it printed */
    llmos_buf recs = {0};
    assert_int_equal(ksession_audit(r.s, 1, find_sandbox_record, &recs), LLMOS_OK);
    assert_non_null(recs.data);
    assert_non_null(strstr(recs.data, "\"tool\":\"python\""));
    assert_non_null(strstr(recs.data, "\"exit\":0"));
    assert_non_null(strstr(recs.data, "\"files_written\":1"));
    assert_null(strstr(recs.data, "CANARY-42"));
    buf_free(&recs);
    rig_close(&r);
}

/* shell and files see python's files; another process does not. */
static void test_one_workspace_per_process(void **state)
{
    (void)state;
    need_sandbox();
    const char *steps[] = {
        /* process 1 */
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"write\", \"path\": "
        "\"notes/todo.txt\", \"content\": \"buy milk\\nbuy tea\\n\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"patch\", \"path\": "
        "\"notes/todo.txt\", \"old\": \"milk\", \"new\": \"bread\"}}]}",
        "{\"tool_calls\": [{\"name\": \"shell\", \"arguments\": {\"command\": \"cat "
        "notes/todo.txt | sort; echo ok > shell.txt\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"list\", \"path\": "
        "\".\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"read\", \"path\": "
        "\"shell.txt\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": {\"recipient\": "
        "\"user\", \"text\": \"[$VAR2][$VAR3][$VAR4][$VAR5]\"}}]}",
        "{\"content\": \"done\"}",
        /* process 2 */
        "{\"tool_calls\": [{\"name\": \"shell\", \"arguments\": {\"command\": \"ls -A /work; "
        "ls /work/notes\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": {\"recipient\": "
        "\"user\", \"text\": \"$VAR1\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, LLMOS_ARRAY_LEN(steps), KCAP_EXEC | KCAP_READ | KCAP_MESSAGE);
    int64_t p1, p2;
    assert_int_equal(ksession_spawn(r.s, 0, &p1), LLMOS_OK);
    turn(&r, p1, "Keep my list.");
    const char *d = delivered.data;
    assert_non_null(strstr(d, "[patched 'notes/todo.txt': 4 bytes replaced by 5"));
    assert_non_null(strstr(d, "--- stdout ---\nbuy bread\nbuy tea\n"));
    assert_non_null(strstr(d, "shell.txt (3 bytes)"));
    assert_non_null(strstr(d, "][notes/\nshell.txt (3 bytes)\n]"));
    assert_non_null(strstr(d, "[ok\n]"));
    assert_int_equal(ksession_spawn(r.s, 0, &p2), LLMOS_OK);
    turn(&r, p2, "What is in your workspace?");
    assert_non_null(strstr(delivered.data, "exit status 2\n--- stdout ---\n--- stderr ---\n"));
    assert_non_null(strstr(delivered.data, "No such file or directory"));
    rig_close(&r);
}

static void test_capabilities_and_tools_list(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"python\", \"arguments\": {\"code\": \"print(1)\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"list\", \"path\": "
        "\".\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, 3, KCAP_COMPUTE | KCAP_MESSAGE);
    int64_t pid;
    assert_int_equal(ksession_spawn(r.s, 0, &pid), LLMOS_OK);
    turn(&r, pid, "Run something.");
    assert_non_null(strstr(tool_result(&r, pid, 0), "permission denied: tool 'python' needs the "
                                                    "capability 'exec'"));
    assert_non_null(strstr(tool_result(&r, pid, 1), "permission denied: tool 'files' needs the "
                                                    "capability 'read'"));
    const ktool **list = NULL;
    size_t n = 0;
    assert_int_equal(ksession_tools(r.s, &list, &n), LLMOS_OK);
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(list[i]->name, "python");
        assert_string_not_equal(list[i]->name, "shell");
        assert_string_not_equal(list[i]->name, "files");
    }
    free(list);
    rig_close(&r);
    /* with exec and read they are listed */
    rig_open(&r, steps, 3, KCAP_EXEC | KCAP_READ);
    assert_int_equal(ksession_tools(r.s, &list, &n), LLMOS_OK);
    int found = 0;
    for (size_t i = 0; i < n; i++)
        found += strcmp(list[i]->name, "python") == 0 || strcmp(list[i]->name, "shell") == 0 ||
                 strcmp(list[i]->name, "files") == 0;
    assert_int_equal(found, 3);
    free(list);
    rig_close(&r);
}

/* Text read from a file (untrusted) may be written to a file, but never run. */
static void test_untrusted_never_code(void **state)
{
    (void)state;
    need_sandbox();
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"write\", \"path\": "
        "\"page.txt\", \"content\": \"import os; os.system('id')\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"read\", \"path\": "
        "\"page.txt\"}}]}",
        "{\"tool_calls\": [{\"name\": \"python\", \"arguments\": {\"code\": \"$VAR2\"}}]}",
        "{\"tool_calls\": [{\"name\": \"shell\", \"arguments\": {\"command\": \"echo $VAR2\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"write\", \"path\": "
        "\"$VAR2\", \"content\": \"x\"}}]}",
        "{\"tool_calls\": [{\"name\": \"files\", \"arguments\": {\"op\": \"write\", \"path\": "
        "\"copy.txt\", \"content\": \"$VAR2\"}}]}",
        "{\"content\": \"done\"}"};
    rig r;
    rig_open(&r, steps, LLMOS_ARRAY_LEN(steps), KCAP_EXEC | KCAP_READ);
    int64_t pid;
    assert_int_equal(ksession_spawn(r.s, 0, &pid), LLMOS_OK);
    turn(&r, pid, "Run the page.");
    assert_non_null(strstr(tool_result(&r, pid, 2), "may not flow into argument 'code' of tool "
                                                    "'python'"));
    assert_non_null(strstr(tool_result(&r, pid, 3), "may not flow into argument 'command' of "
                                                    "tool 'shell'"));
    assert_non_null(strstr(tool_result(&r, pid, 4), "may not flow into argument 'path' of tool "
                                                    "'files'"));
    assert_non_null(strstr(tool_result(&r, pid, 5), "ok: the output of tool 'files'"));
    char path[512];
    snprintf(path, sizeof path, "%s/alice/%lld/copy.txt", r.dir, (long long)pid);
    assert_int_equal(access(path, F_OK), 0);
    rig_close(&r);
}

/* A tool this machine cannot run (a TEST DOUBLE of python whose sandbox the kernel refused) is
 * not offered, not listed, and refused with the reason. */
static int unavailable_runs;
static llmos_err unavailable_run(const ktool_env *env)
{
    (void)env;
    unavailable_runs++;
    return LLMOS_OK;
}
static llmos_err no_sandbox_here(void)
{
    return llmos_fail(LLMOS_ERR_UNSUPPORTED, "sandbox: user.max_user_namespaces is 0");
}

static void test_unavailable_tool(void **state)
{
    (void)state;
    static const ktool python_double = {
        .name = "python",
        .description = "Python, on a machine without namespaces (a test double).",
        .parameters = "{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\"}}}",
        .capability = KCAP_EXEC,
        .run = unavailable_run,
        .available = no_sandbox_here};
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"python\", \"arguments\": {\"code\": \"1\"}}]}",
        "{\"content\": \"done\"}"};
    memory *mem = NULL;
    llm_backend *b = NULL;
    kernel *k = NULL;
    ksession *s = NULL;
    assert_int_equal(memory_open_ephemeral(&mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(steps, 2, false, &b), LLMOS_OK);
    kernel_config kc = {.st = memory_store(mem),
                        .privileged = b,
                        .extra_tools = &python_double,
                        .n_extra_tools = 1};
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    ksession_params sp = {
        .principal = "alice", .device = "test", .rights = KRIGHT_ALL, .caps = KCAP_EXEC};
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    const ktool **list = NULL;
    size_t n = 0;
    assert_int_equal(ksession_tools(s, &list, &n), LLMOS_OK);
    for (size_t i = 0; i < n; i++)
        assert_string_not_equal(list[i]->name, "python");
    free(list);
    int64_t pid;
    assert_int_equal(ksession_spawn(s, 0, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(ksession_send(s, pid, "Run it.", NULL, NULL, NULL, &st), LLMOS_OK);
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(s, pid, &ctx), LLMOS_OK);
    char *dump = json_dumps(ctx, 0);
    assert_non_null(strstr(dump, "error: tool 'python' cannot run on this machine: sandbox: "
                                 "user.max_user_namespaces is 0"));
    free(dump);
    json_decref(ctx);
    assert_int_equal(unavailable_runs, 0);
    /* and it was not offered to the model */
    const char *sent = scripted_test_backend_sent(b, NULL);
    assert_null(strstr(sent, "on a machine without namespaces"));
    ksession_close(s);
    kernel_free(k);
    llm_backend_free(b);
    memory_close(mem);
}

/* A kernel without a workspace directory says so. */
static void test_no_workspace_dir(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"x\"}"};
    rig r;
    rig_open(&r, steps, 1, KCAP_READ);
    ksession_close(r.s);
    kernel_free(r.k);
    kernel_config kc = {.st = memory_store(r.mem), .privileged = r.b};
    assert_int_equal(kernel_new(&kc, &r.k), LLMOS_OK);
    ksession_params sp = {
        .principal = "alice", .device = "test", .rights = KRIGHT_ALL, .caps = KCAP_READ};
    assert_int_equal(ksession_open(r.k, &sp, &r.s), LLMOS_OK);
    llmos_buf res = {0};
    bool is_error = false;
    assert_int_equal(
        ksession_tool(r.s, "files", "{\"op\": \"list\", \"path\": \".\"}", &res, &is_error),
        LLMOS_OK);
    assert_true(is_error);
    buf_free(&res);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_through_the_kernel),
        cmocka_unit_test(test_one_workspace_per_process),
        cmocka_unit_test(test_capabilities_and_tools_list),
        cmocka_unit_test(test_untrusted_never_code),
        cmocka_unit_test(test_unavailable_tool),
        cmocka_unit_test(test_no_workspace_dir),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    buf_free(&delivered);
    return rc;
}
