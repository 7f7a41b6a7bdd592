/*
 * test_agent.c - the agent loop and system calls through a kernel session, driven by the
 * scripted TEST backend: tool-call chains, bad arguments, unknown tools, capability denials,
 * policy refusals, process and turn budgets, the events of a turn in order, kill (from this
 * and from another llmos program) within 200 ms, cancel, persistence and resume after a
 * restart, rights and limits of sessions, and the audit records they leave.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "doubles.h"
#include "kernel/kernel_internal.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "testutil.h"

typedef struct fixture {
    char dir[256];
    store *st;
    llm_backend *priv, *quar;
    kernel *k;
    ksession *s;
    int delivered;
    char last_to[128], last_text[1024];
    char kinds[64][16]; /* event kinds of the last turn, in order */
    size_t n_kinds;
    char notice[512];
} fixture;

static fixture F;

/* The device: records what a turn shows. */
static bool on_event(void *ctx, const kevent *ev)
{
    fixture *f = ctx;
    if (f->n_kinds < 64)
        snprintf(f->kinds[f->n_kinds++], sizeof f->kinds[0], "%s", kevent_kind_name(ev->kind));
    if (ev->kind == KEVENT_MESSAGE) {
        f->delivered++;
        snprintf(f->last_to, sizeof f->last_to, "%s", ev->name);
        snprintf(f->last_text, sizeof f->last_text, "%s", ev->text);
    }
    if (ev->kind == KEVENT_NOTICE)
        snprintf(f->notice, sizeof f->notice, "%s", ev->text);
    return true;
}

/* A tool with untrusted output (stands for a web fetch). */
static llmos_err fetch_run(const ktool_env *env)
{
    return buf_printf(env->out, "PAGE(%s): secret-page-text",
                      ljson_get_string(env->args, "url", ""))
               ? LLMOS_ERR_NOMEM
               : LLMOS_OK;
}

static int shell_runs;
static llmos_err shell_run(const ktool_env *env)
{
    shell_runs++;
    return buf_puts(env->out, "ran") ? LLMOS_ERR_NOMEM : LLMOS_OK;
}

static llmos_err echo_run(const ktool_env *env)
{
    return buf_printf(env->out, "echo:%s", ljson_get_string(env->args, "text", ""))
               ? LLMOS_ERR_NOMEM
               : LLMOS_OK;
}

static const ktool extra[] = {
    {.name = "fetch_page",
     .description = "Fetch a web page (untrusted).",
     .parameters = "{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},"
                   "\"required\":[\"url\"]}",
     .capability = KCAP_READ,
     .run = fetch_run},
    {.name = "shell",
     .description = "Run a command.",
     .parameters = "{\"type\":\"object\",\"properties\":{\"command\":{\"type\":\"string\"}},"
                   "\"required\":[\"command\"]}",
     .capability = KCAP_EXEC,
     .output_trusted = true,
     .run = shell_run},
    {.name = "echo",
     .description = "Echo text (trusted tool).",
     .parameters = "{\"type\":\"object\",\"properties\":{\"text\":{\"type\":\"string\"}},"
                   "\"required\":[\"text\"]}",
     .capability = KCAP_COMPUTE,
     .output_trusted = true,
     .run = echo_run},
};

static void open_store_at(const char *dir, store **out)
{
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    assert_int_equal(store_open(dir, "pw", &o, out), LLMOS_OK);
}

static ksession_params all_rights(const char *who)
{
    ksession_params p = {
        .principal = who, .device = "test", .rights = KRIGHT_ALL, .caps = KCAP_ALL};
    return p;
}

static void new_kernel(const char *config_dir)
{
    kernel_config c = {.st = F.st,
                       .privileged = F.priv,
                       .quarantined = F.quar,
                       .config_dir = config_dir,
                       .extra_tools = extra,
                       .n_extra_tools = LLMOS_ARRAY_LEN(extra)};
    assert_int_equal(kernel_new(&c, &F.k), LLMOS_OK);
}

static void start(const char *const *steps, size_t n, bool repeat, const char *const *qsteps,
                  size_t nq)
{
    memset(&F, 0, sizeof F);
    assert_true(tu_mkdtemp("agent", F.dir, sizeof F.dir));
    open_store_at(F.dir, &F.st);
    assert_int_equal(scripted_test_backend_new(steps, n, repeat, &F.priv), LLMOS_OK);
    if (qsteps)
        assert_int_equal(scripted_test_backend_new(qsteps, nq, true, &F.quar), LLMOS_OK);
    new_kernel(NULL);
    ksession_params p = all_rights("alice");
    assert_int_equal(ksession_open(F.k, &p, &F.s), LLMOS_OK);
    shell_runs = 0;
}

/* Replace the session by one with these process and turn budgets. */
static void budgets(kbudget process, kbudget turn)
{
    ksession_close(F.s);
    ksession_params p = all_rights("alice");
    p.budget = process;
    p.turn = turn;
    assert_int_equal(ksession_open(F.k, &p, &F.s), LLMOS_OK);
}

static void stop(void)
{
    ksession_close(F.s);
    kernel_free(F.k);
    llm_backend_free(F.priv);
    llm_backend_free(F.quar);
    store_close(F.st);
    tu_rmrf(F.dir);
}

/* Start a process with caps and send it msg; the state it ends the turn in. */
static kproc_state run_msg(const char *msg, uint32_t caps, int64_t *pid)
{
    assert_int_equal(ksession_spawn(F.s, caps, pid), LLMOS_OK);
    F.n_kinds = 0;
    kproc_state st = KPROC_FAILED;
    assert_int_equal(ksession_send(F.s, *pid, msg, on_event, &F, NULL, &st), LLMOS_OK);
    return st;
}

/* The content of the nth tool message of process pid's context. */
static char tool_text[4096];
static const char *tool_result(int64_t pid, size_t nth)
{
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(F.s, pid, &ctx), LLMOS_OK);
    size_t seen = 0;
    const char *found = NULL;
    for (size_t i = 0; i < json_array_size(ctx) && !found; i++) {
        json_t *m = json_array_get(ctx, i);
        if (strcmp(ljson_get_string(m, "role", ""), "tool") == 0 && seen++ == nth)
            found = ljson_get_string(m, "content", "");
    }
    snprintf(tool_text, sizeof tool_text, "%s", found ? found : "(none)");
    json_decref(ctx);
    return tool_text;
}

typedef struct count_ctx {
    int kind_policy, kind_syscall, denied_cap, process_end, login, model, denied, killed;
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
    if (strcmp(r->kind, "denied") == 0)
        c->denied++;
    if (strcmp(r->kind, "model.load") == 0)
        c->model++;
    if (strcmp(r->kind, "process") == 0 && strstr(r->payload, "\"event\":\"killed\""))
        c->killed++;
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
    assert_int_equal(ksession_audit(F.s, 1, count_rec, &c), LLMOS_OK);
    return c;
}

static kproc_info info_of(int64_t pid)
{
    kproc_info in;
    assert_int_equal(ksession_proc(F.s, pid, &in), LLMOS_OK);
    return in;
}

static void test_answer_without_tools(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"Hello there.\", \"tokens\": 3}",
                           "{\"content\": \"Still here.\", \"tokens\": 2}"};
    start(steps, 2, false, NULL, 0);
    int64_t pid = 0;
    assert_int_equal(run_msg("hi", KCAP_ALL, &pid), KPROC_DONE);
    assert_true(pid >= 1);
    char *ans = NULL;
    assert_int_equal(ksession_answer(F.s, pid, &ans), LLMOS_OK);
    assert_string_equal(ans, "Hello there.");
    free(ans);
    kproc_info in = info_of(pid);
    assert_int_equal(in.used.tokens, 3);
    assert_string_equal(in.model, "scripted-test");
    assert_string_equal(in.principal, "alice");
    count_ctx c = audit_counts();
    assert_int_equal(c.login, 1);
    assert_int_equal(c.model, 1);
    assert_int_equal(c.process_end, 1);
    assert_string_equal(c.last_end_state, "done");
    /* The request carried the user's message and offered the tools. */
    const char *sent = scripted_test_backend_sent(F.priv, NULL);
    assert_non_null(strstr(sent, "\"content\":\"hi\""));
    assert_non_null(strstr(sent, "send_message"));
    /* The answer is in recall memory. */
    store_message *m = NULL;
    size_t n = 0;
    assert_int_equal(ksession_recall_search(F.s, "there", 0, 0, 0, 5, &m, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].role, "assistant");
    ksession_messages_free(m, n);
    /* A second message continues the same process and conversation. */
    kproc_state st;
    assert_int_equal(ksession_send(F.s, pid, "again", on_event, &F, NULL, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    assert_int_equal(info_of(pid).used.tokens, 5);
    assert_non_null(strstr(sent = scripted_test_backend_sent(F.priv, NULL), "Hello there."));
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
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    assert_string_equal(tool_result(pid, 0), "echo:one");
    assert_string_equal(tool_result(pid, 1), "echo:two");
    assert_string_equal(tool_result(pid, 2), "message delivered (9 bytes)");
    assert_int_equal(F.delivered, 1);
    assert_string_equal(F.last_text, "done soon");
    /* The model saw the first result before its second turn. */
    assert_non_null(strstr(scripted_test_backend_sent(F.priv, NULL), "echo:one"));
    assert_int_equal(scripted_test_backend_calls(F.priv), 3);
    assert_int_equal(info_of(pid).used.tool_calls, 3);
    assert_int_equal(audit_counts().kind_syscall, 3);
    stop();
}

/* The device sees a turn as it happens: text, each call before its result, the message the
 * tool delivers between them, the end last. (Text streaming past the guard's window is
 * tests/kernel/test_guard_kernel.c's.) */
static void test_events_in_order(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"content\": \"Let me see.\", \"pieces\": 3, \"tool_calls\": [{\"name\": \"echo\", "
        "\"arguments\": {\"text\": \"x\"}}, {\"name\": \"send_message\", \"arguments\": "
        "{\"recipient\": \"user\", \"text\": \"hi\"}}]}",
        "{\"content\": \"Done.\"}"};
    start(steps, 2, false, NULL, 0);
    int64_t pid;
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    /* the output guard holds back a window of the answer, so a short one comes out whole */
    const char *want[] = {"text",    "tool_call",   "tool_result", "tool_call",
                          "message", "tool_result", "text",        "end"};
    assert_int_equal(F.n_kinds, LLMOS_ARRAY_LEN(want));
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(want); i++)
        assert_string_equal(F.kinds[i], want[i]);
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
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    assert_non_null(strstr(tool_result(pid, 0), "error: bad arguments for tool 'echo'"));
    assert_non_null(strstr(tool_result(pid, 0), "text")); /* names the missing member */
    assert_non_null(strstr(tool_result(pid, 1), "error: bad arguments for tool 'echo'"));
    assert_non_null(strstr(tool_result(pid, 1), "line 1"));
    assert_non_null(strstr(tool_result(pid, 2), "there is no tool 'rm_rf'"));
    assert_non_null(strstr(tool_result(pid, 2), "send_message"));
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
    assert_int_equal(run_msg("go", KCAP_COMPUTE | KCAP_MESSAGE, &pid), KPROC_DONE);
    assert_int_equal(shell_runs, 0);
    assert_non_null(strstr(tool_result(pid, 0), "permission denied: tool 'shell' needs the "
                                                "capability 'exec'"));
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
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    assert_non_null(strstr(tool_result(pid, 0), "stored as $VAR1"));
    assert_non_null(strstr(tool_result(pid, 1), "refused: flow policy: a value of origin "
                                                "'untrusted' may not flow into argument "
                                                "'recipient' of tool 'send_message'"));
    assert_non_null(strstr(tool_result(pid, 2), "argument 'command' of tool 'shell'"));
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
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    /* The quarantined model read the page; the privileged one saw neither page nor answer. */
    assert_non_null(strstr(scripted_test_backend_sent(F.quar, NULL), "secret-page-text"));
    assert_non_null(strstr(scripted_test_backend_sent(F.quar, NULL), "What is the title?"));
    assert_null(strstr(scripted_test_backend_sent(F.quar, NULL), "\"tools\""));
    assert_null(strstr(scripted_test_backend_sent(F.priv, NULL), "QANSWER"));
    assert_string_equal(F.last_text, "The title is QANSWER.");
    assert_non_null(strstr(tool_result(pid, 1), "stored as $VAR2"));
    stop();
}

/* A failing quarantined model: its error text (which may echo the data) is an untrusted value
 * like an answer, kept under a handle; the privileged model learns only that it failed. */
static void test_quarantined_failure_is_a_handle(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"fetch_page\", \"arguments\": {\"url\": \"u\"}}]}",
        "{\"tool_calls\": [{\"name\": \"ask_quarantined\", \"arguments\": "
        "  {\"handle\": \"$VAR1\", \"question\": \"q\"}},"
        "  {\"name\": \"ask_quarantined\", \"arguments\": "
        "  {\"handle\": \"$VAR5\", \"question\": \"q\"}},"
        "  {\"name\": \"send_message\", \"arguments\": {\"recipient\": \"user\", \"text\": "
        "   \"$VAR2\"}}]}",
        "{\"content\": \"ok\"}"};
    /* An empty script: the quarantined model fails at once with a message of its own. */
    start(steps, 3, false, steps, 0);
    int64_t pid;
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    const char *r1 = tool_result(pid, 1);
    assert_non_null(strstr(r1, "the quarantined model failed"));
    assert_non_null(strstr(r1, "stored as $VAR2"));
    assert_null(strstr(r1, "script"));
    assert_non_null(strstr(tool_result(pid, 2), "'$VAR5' is not a handle"));
    /* the model's own message reached the user through the handle, never the model */
    assert_non_null(strstr(F.last_text, "script"));
    assert_null(strstr(scripted_test_backend_sent(F.priv, NULL), "used up"));
    stop();
}

static void test_budget_tokens(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"x\"}}], \"tokens\": 40}"};
    start(steps, 1, true, NULL, 0);
    budgets((kbudget){.tokens = 100}, (kbudget){0});
    int64_t pid;
    assert_int_equal(run_msg("loop", KCAP_ALL, &pid), KPROC_OUT_OF_TOKENS);
    kproc_info in = info_of(pid);
    assert_int_equal(in.used.tokens, 120);
    assert_non_null(strstr(in.reason, "token budget spent: 120 of 100"));
    assert_int_equal(scripted_test_backend_calls(F.priv), 3);
    assert_string_equal(audit_counts().last_end_state, "out-of-tokens");
    /* a process out of its budget takes no more messages */
    assert_int_equal(ksession_send(F.s, pid, "more", NULL, NULL, NULL, NULL), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "takes no more messages"));
    stop();
}

static void test_budget_calls(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"a\"}}, {\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"b\"}}]}"};
    start(steps, 1, true, NULL, 0);
    budgets((kbudget){.tool_calls = 5}, (kbudget){0});
    int64_t pid;
    assert_int_equal(run_msg("loop", KCAP_ALL, &pid), KPROC_OUT_OF_CALLS);
    kproc_info in = info_of(pid);
    assert_int_equal(in.used.tool_calls, 5);
    assert_string_equal(kproc_state_name(in.state), "out-of-calls");
    assert_non_null(strstr(tool_result(pid, 5), "tool-call budget is spent"));
    assert_string_equal(audit_counts().last_end_state, "out-of-calls");
    stop();
}

static void test_budget_time(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"a\"}}]}"};
    start(steps, 1, true, NULL, 0);
    budgets((kbudget){.wall_s = 0.05}, (kbudget){.tool_calls = 1000000});
    int64_t pid;
    assert_int_equal(run_msg("loop", KCAP_ALL, &pid), KPROC_OUT_OF_TIME);
    kproc_info in = info_of(pid);
    assert_true(in.used.wall_s >= 0.05);
    assert_non_null(strstr(in.reason, "wall-time budget spent"));
    stop();
}

/* A model that keeps calling tools stops at the budget of one message, with a notice that
 * says so, and the process takes the next message. Without a budget of its own the session
 * gets the default one: the loop can never run for ever. */
static void test_turn_budget(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"again\"}}], \"tokens\": 1}"};
    start(steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(run_msg("loop", KCAP_ALL, &pid), KPROC_DONE);
    assert_int_equal(info_of(pid).used.tool_calls, KTURN_DEFAULT_TOOL_CALLS);
    assert_non_null(strstr(F.notice, "this message's tool-call budget is spent (16 calls)"));
    assert_string_equal(F.kinds[F.n_kinds - 2], "notice");
    assert_string_equal(F.kinds[F.n_kinds - 1], "end");
    /* a budget of the session's own: 3 calls; the next message gets 3 more */
    budgets((kbudget){0}, (kbudget){.tool_calls = 3});
    kproc_state st;
    assert_int_equal(ksession_send(F.s, pid, "go on", on_event, &F, NULL, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    assert_int_equal(info_of(pid).used.tool_calls, KTURN_DEFAULT_TOOL_CALLS + 3);
    assert_non_null(strstr(F.notice, "(3 calls)"));
    /* and a token budget per message */
    budgets((kbudget){0}, (kbudget){.tokens = 2});
    assert_int_equal(ksession_send(F.s, pid, "go on", on_event, &F, NULL, &st), LLMOS_OK);
    assert_non_null(strstr(F.notice, "this message's token budget is spent (2 of 2)"));
    stop();
}

static void test_backend_failure(void **state)
{
    (void)state;
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"echo\", \"arguments\": "
                           "{\"text\": \"a\"}}]}"};
    start(steps, 1, false, NULL, 0); /* the second request finds the script used up */
    int64_t pid;
    assert_int_equal(run_msg("x", KCAP_ALL, &pid), KPROC_FAILED);
    assert_non_null(strstr(info_of(pid).reason, "used up"));
    stop();
}

/* A process that was in the middle of a turn when llmos stopped (saved RUNNING, as after a
 * crash) goes on from its last saved step in a new kernel; kill works before and after. */
static void test_persist_resume_and_kill(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"resumed answer\"}"};
    start(steps, 1, false, NULL, 0);
    budgets((kbudget){.tokens = 9}, (kbudget){0});
    int64_t p1, p2;
    assert_int_equal(ksession_spawn(F.s, KCAP_COMPUTE, &p1), LLMOS_OK);
    assert_int_equal(ksession_spawn(F.s, 0, &p2), LLMOS_OK);
    assert_int_equal(p2, p1 + 1);
    /* p1 was given "first" and was running when llmos stopped */
    kproc *p = NULL;
    assert_int_equal(kproc_load(F.k, p1, &p), LLMOS_OK);
    assert_int_equal(kctx_append(&p->ctx, "user", trusted_user("first")), LLMOS_OK);
    p->info.state = KPROC_RUNNING;
    assert_int_equal(kproc_save(F.k, p), LLMOS_OK);
    kproc_free(p);
    /* Restart: close everything, reopen the store, make a new kernel and session. */
    ksession_close(F.s);
    kernel_free(F.k);
    store_close(F.st);
    open_store_at(F.dir, &F.st);
    new_kernel(NULL);
    ksession_params sp = all_rights("alice");
    assert_int_equal(ksession_open(F.k, &sp, &F.s), LLMOS_OK);
    kproc_info *list = NULL;
    size_t n = 0;
    assert_int_equal(ksession_ps(F.s, &list, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].pid, p1);
    assert_int_equal(list[0].state, KPROC_RUNNING);
    assert_int_equal(list[0].budget.tokens, 9);
    assert_int_equal(list[0].caps, KCAP_COMPUTE);
    assert_int_equal(list[1].state, KPROC_IDLE);
    free(list);
    kproc_state st;
    assert_int_equal(ksession_resume(F.s, p1, on_event, &F, NULL, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    char *ans = NULL;
    assert_int_equal(ksession_answer(F.s, p1, &ans), LLMOS_OK);
    assert_string_equal(ans, "resumed answer");
    free(ans);
    /* The resumed context still holds the first user message. */
    assert_non_null(strstr(scripted_test_backend_sent(F.priv, NULL), "\"first\""));
    /* Kill: the second never runs; killing again or an unknown pid is an error. */
    assert_int_equal(ksession_kill(F.s, p2), LLMOS_OK);
    assert_int_equal(ksession_send(F.s, p2, "hello", NULL, NULL, NULL, &st), LLMOS_ERR_INVALID);
    assert_int_equal(scripted_test_backend_calls(F.priv), 1);
    assert_int_equal(ksession_kill(F.s, p2), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "already ended (killed)"));
    assert_int_equal(ksession_kill(F.s, 999), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(ksession_send(F.s, 999, "x", NULL, NULL, NULL, &st), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(audit_counts().killed, 1);
    audit_verdict v;
    assert_int_equal(ksession_audit_verify(F.s, &v), LLMOS_OK);
    assert_true(v.ok);
    stop();
}

/* ---- kill and cancel while a turn runs ----------------------------------------------------- */

typedef struct turn_thread {
    ksession *s;
    int64_t pid;
    const atomic_bool *cancel;
    kproc_state st;
    llmos_err err;
    double ended;
} turn_thread;

static void *run_turn(void *arg)
{
    turn_thread *t = arg;
    t->err = ksession_send(t->s, t->pid, "tell me a long story", NULL, NULL, t->cancel, &t->st);
    t->ended = llmos_time_now();
    return NULL;
}

/* A slow answer: 200 pieces, 20 ms apart (4 s in all). */
static const char *const slow_steps[] = {
    "{\"content\": "
    "\"................................................................................"
    ".............................................................................................."
    "......."
    "...................\", \"pieces\": 200, \"delay_ms\": 20}"};

static void wait_running(int64_t pid)
{
    for (int i = 0; i < 200 && info_of(pid).state != KPROC_RUNNING; i++) {
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(info_of(pid).state, KPROC_RUNNING);
    struct timespec ts = {0, 50 * 1000000L}; /* well into the answer */
    nanosleep(&ts, NULL);
}

/* `llmos kill` from another llmos program: its own store connection, kernel and session. The
 * running turn stops within 200 ms of the kill. */
static void test_kill_from_another_program(void **state)
{
    (void)state;
    start(slow_steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(ksession_spawn(F.s, 0, &pid), LLMOS_OK);
    turn_thread t = {.s = F.s, .pid = pid};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_turn, &t), 0);
    wait_running(pid);
    store *st2 = NULL;
    kernel *k2 = NULL;
    ksession *s2 = NULL;
    open_store_at(F.dir, &st2);
    kernel_config c2 = {.st = st2};
    assert_int_equal(kernel_new(&c2, &k2), LLMOS_OK);
    ksession_params p2 = all_rights("alice");
    assert_int_equal(ksession_open(k2, &p2, &s2), LLMOS_OK);
    assert_int_equal(ksession_kill(s2, pid), LLMOS_OK);
    double killed = llmos_time_now();
    pthread_join(th, NULL);
    double took = t.ended - killed;
    fprintf(stderr, "kill from another program: the turn stopped %.0f ms after the kill\n",
            took * 1000);
    assert_true(took < 0.2);
    assert_int_equal(t.err, LLMOS_OK);
    assert_int_equal(t.st, KPROC_KILLED);
    assert_int_equal(info_of(pid).state, KPROC_KILLED);
    ksession_close(s2);
    kernel_free(k2);
    store_close(st2);
    stop();
}

/* A kill through the same kernel (another connection of the HTTP server) and a cancel flag. */
static void test_kill_here_and_cancel(void **state)
{
    (void)state;
    start(slow_steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(ksession_spawn(F.s, 0, &pid), LLMOS_OK);
    turn_thread t = {.s = F.s, .pid = pid};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_turn, &t), 0);
    wait_running(pid);
    /* a second turn of the same process while one runs is refused */
    assert_int_equal(ksession_send(F.s, pid, "me too", NULL, NULL, NULL, NULL), LLMOS_ERR_BUSY);
    assert_int_equal(ksession_kill(F.s, pid), LLMOS_OK);
    double killed = llmos_time_now();
    pthread_join(th, NULL);
    assert_true(t.ended - killed < 0.2);
    assert_int_equal(t.st, KPROC_KILLED);

    atomic_bool cancel;
    atomic_init(&cancel, false);
    assert_int_equal(ksession_spawn(F.s, 0, &pid), LLMOS_OK);
    turn_thread t2 = {.s = F.s, .pid = pid, .cancel = &cancel};
    assert_int_equal(pthread_create(&th, NULL, run_turn, &t2), 0);
    wait_running(pid);
    atomic_store(&cancel, true);
    double cancelled = llmos_time_now();
    pthread_join(th, NULL);
    assert_true(t2.ended - cancelled < 0.2);
    assert_int_equal(t2.st, KPROC_DONE);
    kproc_info in = info_of(pid);
    assert_string_equal(in.reason, "cancelled by the user");
    /* what was said before the cancel is kept, and the process takes the next message */
    char *ans = NULL;
    assert_int_equal(ksession_answer(F.s, pid, &ans), LLMOS_OK);
    assert_true(strlen(ans) > 0 && strlen(ans) < 200);
    free(ans);
    stop();
}

/* ---- sessions: rights, capabilities, limits --------------------------------------------- */

static void test_session_rights_and_limits(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"ok\"}"};
    start(steps, 1, true, NULL, 0);
    int64_t pid;
    assert_int_equal(ksession_spawn(F.s, KCAP_COMPUTE, &pid), LLMOS_OK);
    /* a chat-only principal may not start processes, read the audit log or another's process */
    ksession *bob = NULL;
    ksession_params bp = {.principal = "bob",
                          .device = "test",
                          .rights = KRIGHT_CHAT,
                          .caps = KCAP_COMPUTE,
                          .limits = {.requests_per_minute = 2}};
    assert_int_equal(ksession_open(F.k, &bp, &bob), LLMOS_OK);
    int64_t other;
    assert_int_equal(ksession_spawn(bob, 0, &other), LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "needs the right 'process'"));
    audit_verdict v;
    assert_int_equal(ksession_audit_verify(bob, &v), LLMOS_ERR_DENIED);
    assert_int_equal(audit_counts().denied, 2);
    /* two chats a minute, the third is a rate limit that says when to retry */
    llm_request rq = llm_request_default();
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", "hi");
    rq.messages = msgs;
    for (int i = 0; i < 2; i++) {
        llm_response r = {0};
        assert_int_equal(ksession_chat(bob, &rq, NULL, NULL, &r), LLMOS_OK);
        assert_string_equal(r.content, "ok");
        llm_response_free(&r);
    }
    llm_response r = {0};
    assert_int_equal(ksession_chat(bob, &rq, NULL, NULL, &r), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "2 requests a minute; retry in"));
    json_decref(msgs);
    ksession_close(bob);
    /* a process principal sees only its own processes */
    ksession *carol = NULL;
    ksession_params cp = {
        .principal = "carol", .device = "test", .rights = KRIGHT_PROCESS, .caps = KCAP_COMPUTE};
    assert_int_equal(ksession_open(F.k, &cp, &carol), LLMOS_OK);
    kproc_info *list = NULL;
    size_t n = 5;
    assert_int_equal(ksession_ps(carol, &list, &n), LLMOS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(ksession_kill(carol, pid), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(ksession_send(carol, pid, "x", NULL, NULL, NULL, NULL), LLMOS_ERR_NOT_FOUND);
    /* and may not give its processes capabilities it does not hold */
    assert_int_equal(ksession_spawn(carol, KCAP_EXEC, &other), LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "not exec"));
    ksession_close(carol);
    /* the audit log names who did what */
    count_ctx c = audit_counts();
    assert_int_equal(c.login, 3);
    stop();
}

static void test_caps_and_rights_parse(void **state)
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
    assert_int_equal(kright_parse("chat, embed", &c), LLMOS_OK);
    assert_int_equal(c, KRIGHT_CHAT | KRIGHT_EMBED);
    kright_format(KRIGHT_ALL, s, sizeof s);
    assert_string_equal(s, "chat,embed,process,audit,memory,admin");
    assert_int_equal(kright_parse("sudo", &c), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "unknown right 'sudo'"));
}

/* The calculator, a built-in tool: from the model and from the user (the shell's /calc). */
static void test_calculator_tool(void **state)
{
    (void)state;
    size_t n = 0;
    const ktool *const *t = ktool_builtin(&n);
    bool have = false;
    for (size_t i = 0; i < n; i++)
        have |= strcmp(t[i]->name, "calculator") == 0;
    assert_true(have);
    const char *steps[] = {
        "{\"tool_calls\": [{\"name\": \"calculator\", \"arguments\": "
        "{\"expression\": \"2+3*4\"}}, {\"name\": \"calculator\", \"arguments\": "
        "{\"expression\": \"1/0\"}}]}",
        "{\"content\": \"14\"}"};
    start(steps, 2, false, NULL, 0);
    int64_t pid;
    assert_int_equal(run_msg("2+3*4?", KCAP_COMPUTE, &pid), KPROC_DONE);
    assert_string_equal(tool_result(pid, 0), "14");
    assert_non_null(strstr(tool_result(pid, 1), "error: tool 'calculator' failed"));
    llmos_buf res = {0};
    bool is_error = true;
    assert_int_equal(
        ksession_tool(F.s, "calculator", "{\"expression\": \"2^10\"}", &res, &is_error), LLMOS_OK);
    assert_false(is_error);
    assert_string_equal(res.data, "1024");
    buf_free(&res);
    assert_int_equal(audit_counts().kind_syscall, 3);
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
    char path[400];
    snprintf(path, sizeof path, "%s/policy.json", F.dir);
    const char *pol = "{\"rules\": [{\"tool\": \"send_message\", \"argument\": \"*\", "
                      "\"allow\": [\"user\", \"system\"]}]}";
    assert_int_equal(llmos_file_write_atomic(path, pol, strlen(pol), 0600), LLMOS_OK);
    ksession_close(F.s);
    kernel_free(F.k);
    new_kernel(F.dir);
    ksession_params sp = all_rights("alice");
    assert_int_equal(ksession_open(F.k, &sp, &F.s), LLMOS_OK);
    int64_t pid;
    assert_int_equal(run_msg("go", KCAP_ALL, &pid), KPROC_DONE);
    assert_int_equal(F.delivered, 0);
    assert_non_null(strstr(tool_result(pid, 1), "argument 'text' of tool 'send_message'"));
    /* A broken policy file stops the kernel from starting, with the file named. */
    ksession_close(F.s);
    F.s = NULL;
    kernel_free(F.k);
    F.k = NULL;
    assert_int_equal(llmos_file_write_atomic(path, "{", 1, 0600), LLMOS_OK);
    kernel_config c = {.st = F.st, .privileged = F.priv, .config_dir = F.dir};
    assert_int_equal(kernel_new(&c, &F.k), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "policy.json"));
    stop();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_answer_without_tools),
        cmocka_unit_test(test_tool_chain),
        cmocka_unit_test(test_events_in_order),
        cmocka_unit_test(test_bad_arguments_and_unknown_tool),
        cmocka_unit_test(test_capability_denied),
        cmocka_unit_test(test_policy_refusal),
        cmocka_unit_test(test_quarantined_model),
        cmocka_unit_test(test_quarantined_failure_is_a_handle),
        cmocka_unit_test(test_budget_tokens),
        cmocka_unit_test(test_budget_calls),
        cmocka_unit_test(test_budget_time),
        cmocka_unit_test(test_turn_budget),
        cmocka_unit_test(test_backend_failure),
        cmocka_unit_test(test_persist_resume_and_kill),
        cmocka_unit_test(test_kill_from_another_program),
        cmocka_unit_test(test_kill_here_and_cancel),
        cmocka_unit_test(test_session_rights_and_limits),
        cmocka_unit_test(test_caps_and_rights_parse),
        cmocka_unit_test(test_calculator_tool),
        cmocka_unit_test(test_policy_from_config_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
