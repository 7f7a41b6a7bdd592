/*
 * test_agent.c - the agent loop and system calls, driven by the scripted TEST backend:
 * tool-call chains, bad arguments, unknown tools, capability denials, policy refusals, each
 * budget, kill, persistence and resume after a restart, and the audit records they leave.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/json.h"
#include "llmos/kernel.h"
#include "testutil.h"

typedef struct fixture {
    char dir[256];
    store *st;
    llm_backend *priv, *quar;
    kernel *k;
    int delivered;
    char last_to[128], last_text[1024];
} fixture;

static fixture F;

static void on_message(void *ctx, int64_t pid, const char *to, const char *text)
{
    fixture *f = ctx;
    (void)pid;
    f->delivered++;
    snprintf(f->last_to, sizeof f->last_to, "%s", to);
    snprintf(f->last_text, sizeof f->last_text, "%s", text);
}

/* A tool with untrusted output (stands for a web fetch). */
static llmos_err fetch_run(kernel *k, kproc *p, const json_t *args, llmos_buf *out)
{
    (void)k, (void)p;
    return buf_printf(out, "PAGE(%s): secret-page-text", ljson_get_string(args, "url", ""))
               ? LLMOS_ERR_NOMEM
               : LLMOS_OK;
}

static int shell_runs;
static llmos_err shell_run(kernel *k, kproc *p, const json_t *args, llmos_buf *out)
{
    (void)k, (void)p, (void)args;
    shell_runs++;
    return buf_puts(out, "ran") ? LLMOS_ERR_NOMEM : LLMOS_OK;
}

static llmos_err echo_run(kernel *k, kproc *p, const json_t *args, llmos_buf *out)
{
    (void)k, (void)p;
    return buf_printf(out, "echo:%s", ljson_get_string(args, "text", "")) ? LLMOS_ERR_NOMEM
                                                                          : LLMOS_OK;
}

static const ktool extra[] = {
    {"fetch_page", "Fetch a web page (untrusted).",
     "{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},"
     "\"required\":[\"url\"]}",
     KCAP_READ, false, fetch_run, false},
    {"shell", "Run a command.",
     "{\"type\":\"object\",\"properties\":{\"command\":{\"type\":\"string\"}},"
     "\"required\":[\"command\"]}",
     KCAP_EXEC, true, shell_run, false},
    {"echo", "Echo text (trusted tool).",
     "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},"
     "\"required\":[\"text\"]}",
     KCAP_COMPUTE, true, echo_run, false},
};

static void open_store(void)
{
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    assert_int_equal(store_open(F.dir, "pw", &o, &F.st), LLMOS_OK);
}

static void start(const char *const *steps, size_t n, bool repeat, const char *const *qsteps,
                  size_t nq)
{
    memset(&F, 0, sizeof F);
    assert_true(tu_mkdtemp("agent", F.dir, sizeof F.dir));
    open_store();
    assert_int_equal(scripted_test_backend_new(steps, n, repeat, &F.priv), LLMOS_OK);
    if (qsteps)
        assert_int_equal(scripted_test_backend_new(qsteps, nq, true, &F.quar), LLMOS_OK);
    kernel_config c = {.st = F.st,
                       .privileged = F.priv,
                       .quarantined = F.quar,
                       .extra_tools = extra,
                       .n_extra_tools = LLMOS_ARRAY_LEN(extra),
                       .on_message = on_message,
                       .message_ctx = &F};
    assert_int_equal(kernel_new(&c, &F.k), LLMOS_OK);
    shell_runs = 0;
}

static void stop(void)
{
    kernel_free(F.k);
    llm_backend_free(F.priv);
    llm_backend_free(F.quar);
    store_close(F.st);
    tu_rmrf(F.dir);
}

/* The content of the tool message at index i of process pid's context. */
static const char *tool_result(json_t *ctx, size_t nth)
{
    size_t seen = 0;
    for (size_t i = 0; i < json_array_size(ctx); i++) {
        json_t *m = json_array_get(ctx, i);
        if (strcmp(ljson_get_string(m, "role", ""), "tool") == 0 && seen++ == nth)
            return ljson_get_string(m, "content", "");
    }
    return NULL;
}

typedef struct count_ctx {
    int kind_policy, kind_syscall, denied_cap, process_end, login, model;
    char last_end_state[64];
} count_ctx;

static bool count_rec(const store_audit_record *r, void *ctx)
{
    count_ctx *c = ctx;
    if (strcmp(r->kind, "policy") == 0)
        c->kind_policy++;
    if (strcmp(r->kind, "syscall") == 0)
        c->kind_syscall++;
    if (strstr(r->payload, "denied-capability"))
        c->denied_cap++;
    if (strcmp(r->kind, "login") == 0)
        c->login++;
    if (strcmp(r->kind, "model.load") == 0)
        c->model++;
    if (strcmp(r->kind, "process") == 0 && strstr(r->payload, "\"event\":\"end\"")) {
        c->process_end++;
        const char *s = strstr(r->payload, "\"state\":\"");
        if (s)
            snprintf(c->last_end_state, sizeof c->last_end_state, "%.*s", (int)strcspn(s + 9, "\""),
                     s + 9);
    }
    return true;
}

static count_ctx audit_counts(void)
{
    count_ctx c = {0};
    assert_int_equal(store_audit_iterate(F.st, 1, count_rec, &c), LLMOS_OK);
    return c;
}

static void test_answer_without_tools(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"Hello there.\", \"tokens\": 3}"};
    start(steps, 1, false, NULL, 0);
    int64_t pid = 0;
    assert_int_equal(kernel_spawn(F.k, "hi", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    assert_true(pid >= 1);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    char *ans = NULL;
    assert_int_equal(kernel_answer(F.k, pid, &ans), LLMOS_OK);
    assert_string_equal(ans, "Hello there.");
    free(ans);
    kproc_info in;
    assert_int_equal(kproc_get(F.st, pid, &in), LLMOS_OK);
    assert_int_equal(in.used.tokens, 3);
    assert_string_equal(in.model, "scripted-test");
    count_ctx c = audit_counts();
    assert_int_equal(c.login, 1);
    assert_int_equal(c.model, 1);
    assert_int_equal(c.process_end, 1);
    assert_string_equal(c.last_end_state, "done");
    /* The request carried the user's message and offered the tools. */
    const char *sent = scripted_test_backend_sent(F.priv, NULL);
    assert_non_null(strstr(sent, "\"content\":\"hi\""));
    assert_non_null(strstr(sent, "send_message"));
    stop();
}

static void test_tool_chain(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": {\"text\": \"one\"}}]}",
        "{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": {\"text\": \"two\"}},"
        "                  {\"name\": \"send_message\", \"arguments\": "
        "                   {\"recipient\": \"user\", \"text\": \"done soon\"}}]}",
        "{\"content\": \"All done.\"}"};
    start(steps, 3, false, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_string_equal(tool_result(ctx, 0), "echo:one");
    assert_string_equal(tool_result(ctx, 1), "echo:two");
    assert_string_equal(tool_result(ctx, 2), "message delivered (9 bytes)");
    json_decref(ctx);
    assert_int_equal(F.delivered, 1);
    assert_string_equal(F.last_text, "done soon");
    /* The model saw the first result before its second turn. */
    assert_non_null(strstr(scripted_test_backend_sent(F.priv, NULL), "echo:one"));
    assert_int_equal(scripted_test_backend_calls(F.priv), 3);
    kproc_info in;
    assert_int_equal(kproc_get(F.st, pid, &in), LLMOS_OK);
    assert_int_equal(in.used.tool_calls, 3);
    assert_int_equal(audit_counts().kind_syscall, 3);
    stop();
}

static void test_bad_arguments_and_unknown_tool(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": {\"txt\": 5}},"
                           "                  {\"name\": \"echo\", \"arguments\": \"{not json\"},"
                           "                  {\"name\": \"rm_rf\", \"arguments\": {}}]}",
                           "{\"content\": \"sorry\"}"};
    start(steps, 2, false, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    const char *r0 = tool_result(ctx, 0), *r1 = tool_result(ctx, 1), *r2 = tool_result(ctx, 2);
    assert_non_null(strstr(r0, "error: bad arguments for tool 'echo'"));
    assert_non_null(strstr(r0, "text")); /* names the missing member */
    assert_non_null(strstr(r1, "error: bad arguments for tool 'echo'"));
    assert_non_null(strstr(r1, "line 1"));
    assert_non_null(strstr(r2, "there is no tool 'rm_rf'"));
    assert_non_null(strstr(r2, "send_message"));
    json_decref(ctx);
    stop();
}

static void test_capability_denied(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"shell\", \"arguments\": {\"command\": \"ls\"}}]}",
        "{\"content\": \"cannot\"}"};
    start(steps, 2, false, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_COMPUTE | KCAP_MESSAGE, (kbudget){0}, &pid),
                     LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    assert_int_equal(shell_runs, 0);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_non_null(strstr(tool_result(ctx, 0), "permission denied: tool 'shell' needs the "
                                                "capability 'exec'"));
    json_decref(ctx);
    assert_int_equal(audit_counts().denied_cap, 1);
    /* Tools outside the set are not offered either. */
    assert_null(strstr(scripted_test_backend_sent(F.priv, NULL), "Run a command."));
    stop();
}

static void test_policy_refusal(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"fetch_page\", \"arguments\": {\"url\": \"http://x\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": "
        "  {\"recipient\": \"$VAR1\", \"text\": \"hello\"}},"
        "  {\"name\": \"shell\", \"arguments\": {\"command\": \"cat $VAR1\"}},"
        "  {\"name\": \"send_message\", \"arguments\": {\"recipient\": \"user\", "
        "   \"text\": \"The page says: $VAR1\"}}]}",
        "{\"content\": \"ok\"}"};
    start(steps, 3, false, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_non_null(strstr(tool_result(ctx, 0), "stored as $VAR1"));
    assert_non_null(strstr(tool_result(ctx, 1), "refused: flow policy: a value of origin "
                                                "'untrusted' may not flow into argument "
                                                "'recipient' of tool 'send_message'"));
    assert_non_null(strstr(tool_result(ctx, 2), "argument 'command' of tool 'shell'"));
    json_decref(ctx);
    assert_int_equal(shell_runs, 0);
    /* Showing the value to the user is allowed: the handle is replaced on delivery. */
    assert_int_equal(F.delivered, 1);
    assert_string_equal(F.last_to, "user");
    assert_string_equal(F.last_text, "The page says: PAGE(http://x): secret-page-text");
    assert_null(strstr(scripted_test_backend_sent(F.priv, NULL), "secret-page-text"));
    assert_int_equal(audit_counts().kind_policy, 2);
    stop();
}

static void test_quarantined_model(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"fetch_page\", \"arguments\": {\"url\": \"u\"}}]}",
        "{\"tool_calls\": [{\"name\": \"ask_quarantined\", \"arguments\": "
        "  {\"handle\": \"$VAR1\", \"question\": \"What is the title?\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": "
        "  {\"recipient\": \"user\", \"text\": \"$VAR2\"}}]}",
        "{\"content\": \"sent\"}"};
    const char *qsteps[] = {"{\"content\": \"The title is QANSWER.\"}"};
    start(steps, 4, false, qsteps, 1);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    /* The quarantined model read the page; the privileged one saw neither page nor answer. */
    assert_non_null(strstr(scripted_test_backend_sent(F.quar, NULL), "secret-page-text"));
    assert_non_null(strstr(scripted_test_backend_sent(F.quar, NULL), "What is the title?"));
    assert_null(strstr(scripted_test_backend_sent(F.quar, NULL), "\"tools\""));
    assert_null(strstr(scripted_test_backend_sent(F.priv, NULL), "QANSWER"));
    assert_string_equal(F.last_text, "The title is QANSWER.");
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_non_null(strstr(tool_result(ctx, 1), "stored as $VAR2"));
    json_decref(ctx);
    stop();
}

static void test_budget_tokens(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"x\"}}], \"tokens\": 40}"};
    start(steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "loop", KCAP_ALL, (kbudget){.tokens = 100}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_OUT_OF_TOKENS);
    kproc_info in;
    assert_int_equal(kproc_get(F.st, pid, &in), LLMOS_OK);
    assert_int_equal(in.used.tokens, 120);
    assert_non_null(strstr(in.reason, "token budget spent: 120 of 100"));
    assert_int_equal(scripted_test_backend_calls(F.priv), 3);
    assert_string_equal(audit_counts().last_end_state, "out-of-tokens");
    stop();
}

static void test_budget_calls(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"a\"}}, {\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"b\"}}]}"};
    start(steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "loop", KCAP_ALL, (kbudget){.tool_calls = 5}, &pid),
                     LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_OUT_OF_CALLS);
    kproc_info in;
    assert_int_equal(kproc_get(F.st, pid, &in), LLMOS_OK);
    assert_int_equal(in.used.tool_calls, 5);
    assert_string_equal(kproc_state_name(in.state), "out-of-calls");
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_non_null(strstr(tool_result(ctx, 5), "tool-call budget is spent"));
    json_decref(ctx);
    assert_string_equal(audit_counts().last_end_state, "out-of-calls");
    stop();
}

static void test_budget_time(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"a\"}}]}"};
    start(steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "loop", KCAP_ALL, (kbudget){.wall_s = 0.05}, &pid),
                     LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_OUT_OF_TIME);
    kproc_info in;
    assert_int_equal(kproc_get(F.st, pid, &in), LLMOS_OK);
    assert_true(in.used.wall_s >= 0.05);
    assert_non_null(strstr(in.reason, "wall-time budget spent"));
    stop();
}

static void test_backend_failure(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"a\"}}]}"};
    start(steps, 1, false, NULL, 0); /* the second request finds the script used up */
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "x", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_FAILED);
    kproc_info in;
    assert_int_equal(kproc_get(F.st, pid, &in), LLMOS_OK);
    assert_non_null(strstr(in.reason, "used up"));
    stop();
}

static void test_persist_resume_and_kill(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"resumed answer\"}"};
    start(steps, 1, false, NULL, 0);
    int64_t p1, p2;
    assert_int_equal(kernel_spawn(F.k, "first", KCAP_COMPUTE, (kbudget){.tokens = 9}, &p1),
                     LLMOS_OK);
    assert_int_equal(kernel_spawn(F.k, "second", KCAP_ALL, (kbudget){0}, &p2), LLMOS_OK);
    assert_int_equal(p2, p1 + 1);
    /* Restart: close everything, reopen the store, make a new kernel. */
    kernel_free(F.k);
    store_close(F.st);
    open_store();
    kernel_config c = {
        .st = F.st, .privileged = F.priv, .on_message = on_message, .message_ctx = &F};
    assert_int_equal(kernel_new(&c, &F.k), LLMOS_OK);
    kproc_info *list = NULL;
    size_t n = 0;
    assert_int_equal(kproc_list(F.st, &list, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].pid, p1);
    assert_int_equal(list[0].state, KPROC_WAITING);
    assert_int_equal(list[0].budget.tokens, 9);
    assert_int_equal(list[0].caps, KCAP_COMPUTE);
    free(list);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, p1, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    char *ans = NULL;
    assert_int_equal(kernel_answer(F.k, p1, &ans), LLMOS_OK);
    assert_string_equal(ans, "resumed answer");
    free(ans);
    /* The resumed context still holds the first user message. */
    assert_non_null(strstr(scripted_test_backend_sent(F.priv, NULL), "\"first\""));
    /* Kill: the second never runs; killing again or an unknown pid is an error. */
    assert_int_equal(kproc_kill(F.st, kernel_audit(F.k), p2), LLMOS_OK);
    assert_int_equal(kernel_run(F.k, p2, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_KILLED);
    assert_int_equal(scripted_test_backend_calls(F.priv), 1);
    assert_int_equal(kproc_kill(F.st, NULL, p2), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "already ended (killed)"));
    assert_int_equal(kproc_kill(F.st, NULL, 999), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(kernel_run(F.k, 999, &st), LLMOS_ERR_NOT_FOUND);
    audit_verdict v;
    assert_int_equal(audit_verify(F.st, &v), LLMOS_OK);
    assert_true(v.ok);
    stop();
}

static void test_caps_parse(void **state)
{
    (void)state;
    uint32_t c;
    assert_int_equal(kcap_parse("compute,message", &c), LLMOS_OK);
    assert_int_equal(c, KCAP_COMPUTE | KCAP_MESSAGE);
    char s[64];
    kcap_format(c, s, sizeof s);
    assert_string_equal(s, "compute,message");
    assert_int_equal(kcap_parse("all", &c), LLMOS_OK);
    assert_int_equal(c, KCAP_ALL);
    assert_int_equal(kcap_parse("compute,root", &c), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "unknown capability 'root'"));
}

/* The calculator (another part's engine) registered in the built-in table when built in. */
static void test_calculator_tool(void **state)
{
    (void)state;
    size_t n = 0;
    const ktool *t = ktool_builtin(&n);
    bool have = false;
    for (size_t i = 0; i < n; i++)
        have |= strcmp(t[i].name, "calculator") == 0;
#if defined(__has_include)
#if __has_include("llmos/tools.h")
    assert_true(have);
#endif
#endif
    if (!have)
        skip(); /* the calculator engine is not in this build */
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"calculator\", \"arguments\": "
        "{\"expression\": \"2+3*4\"}}, {\"name\": \"calculator\", \"arguments\": "
        "{\"expression\": \"1/0\"}}]}",
        "{\"content\": \"14\"}"};
    start(steps, 2, false, NULL, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "2+3*4?", KCAP_COMPUTE, (kbudget){0}, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(kernel_run(F.k, pid, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_string_equal(tool_result(ctx, 0), "14");
    assert_non_null(strstr(tool_result(ctx, 1), "error: tool 'calculator' failed"));
    json_decref(ctx);
    stop();
}

/* A policy.json in the user's config folder replaces the built-in default. */
static void test_policy_from_config_dir(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"fetch_page\", \"arguments\": {\"url\": \"u\"}}]}",
        "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": "
        "  {\"recipient\": \"user\", \"text\": \"$VAR1\"}}]}",
        "{\"content\": \"ok\"}"};
    start(steps, 3, false, NULL, 0);
    char cfgdir[300], path[400];
    snprintf(cfgdir, sizeof cfgdir, "%s", F.dir);
    snprintf(path, sizeof path, "%s/policy.json", cfgdir);
    const char *pol = "{\"rules\": [{\"tool\": \"send_message\", \"argument\": \"*\", "
                      "\"allow\": [\"user\", \"system\"]}]}";
    assert_int_equal(llmos_file_write_atomic(path, pol, strlen(pol), 0600), LLMOS_OK);
    kernel_free(F.k);
    kernel_config c = {.st = F.st,
                       .privileged = F.priv,
                       .config_dir = cfgdir,
                       .extra_tools = extra,
                       .n_extra_tools = LLMOS_ARRAY_LEN(extra),
                       .on_message = on_message,
                       .message_ctx = &F};
    assert_int_equal(kernel_new(&c, &F.k), LLMOS_OK);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    assert_int_equal(kernel_run(F.k, pid, NULL), LLMOS_OK);
    assert_int_equal(F.delivered, 0);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_non_null(strstr(tool_result(ctx, 1), "argument 'text' of tool 'send_message'"));
    json_decref(ctx);
    /* A broken policy file stops the kernel from starting, with the file named. */
    kernel_free(F.k);
    F.k = NULL;
    assert_int_equal(llmos_file_write_atomic(path, "{", 1, 0600), LLMOS_OK);
    assert_int_equal(kernel_new(&c, &F.k), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "policy.json"));
    stop();
}

/* A failing quarantined model: its error text (which may echo the data) is not passed on. */
static void test_quarantined_failure_withheld(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"fetch_page\", \"arguments\": {\"url\": \"u\"}}]}",
        "{\"tool_calls\": [{\"name\": \"ask_quarantined\", \"arguments\": "
        "  {\"handle\": \"$VAR1\", \"question\": \"q\"}},"
        "  {\"name\": \"ask_quarantined\", \"arguments\": "
        "  {\"handle\": \"$VAR5\", \"question\": \"q\"}}]}",
        "{\"content\": \"ok\"}"};
    /* An empty script: the quarantined model fails at once. */
    start(steps, 3, false, steps, 0);
    int64_t pid;
    assert_int_equal(kernel_spawn(F.k, "go", KCAP_ALL, (kbudget){0}, &pid), LLMOS_OK);
    assert_int_equal(kernel_run(F.k, pid, NULL), LLMOS_OK);
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(F.k, pid, &ctx), LLMOS_OK);
    assert_non_null(strstr(tool_result(ctx, 1), "details are withheld"));
    assert_null(strstr(tool_result(ctx, 1), "script"));
    assert_non_null(strstr(tool_result(ctx, 2), "'$VAR5' is not a handle"));
    json_decref(ctx);
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_without_tools),
        cmocka_unit_test(test_tool_chain),
        cmocka_unit_test(test_bad_arguments_and_unknown_tool),
        cmocka_unit_test(test_capability_denied),
        cmocka_unit_test(test_policy_refusal),
        cmocka_unit_test(test_quarantined_model),
        cmocka_unit_test(test_budget_tokens),
        cmocka_unit_test(test_budget_calls),
        cmocka_unit_test(test_budget_time),
        cmocka_unit_test(test_backend_failure),
        cmocka_unit_test(test_persist_resume_and_kill),
        cmocka_unit_test(test_caps_parse),
        cmocka_unit_test(test_calculator_tool),
        cmocka_unit_test(test_policy_from_config_dir),
        cmocka_unit_test(test_quarantined_failure_withheld),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
