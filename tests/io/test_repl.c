/*
 * test_repl.c - the llmos shell: chat turns over a scripted backend (streamed answer, the
 * conversation kept and resent), slash commands and suggestions, backend errors, Ctrl-C
 * cancelling a long answer without leaving, and the program itself: no model -> guidance and
 * exit 0 without reading stdin; stories260K driven through a stdin pipe. Kernel mode: a model
 * that calls the calculator gets its result through the kernel (audited, the chain verifies
 * with `llmos audit verify`), the conversation is one process across turns, /ps shows it.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pty.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <inttypes.h>

#include "llmos/kernel.h"
#include "llmos/repl.h"
#include "testutil.h"

/* Everything written to f so far, as a malloc'd string. */
static char *slurp(FILE *f)
{
    fflush(f);
    long n = ftell(f);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    rewind(f);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    return s;
}

static repl *make_repl(llm_backend *b, FILE *out)
{
    repl_options o = repl_default_options();
    o.backend = b;
    o.out = out;
    repl *r = NULL;
    assert_int_equal(repl_new(&o, &r), LLMOS_OK);
    return r;
}

static void test_chat_turns_keep_the_conversation(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"Paris is the capital.\"}",
                           "{\"content\": \"About 2 million people.\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 2, false, &b), LLMOS_OK);
    FILE *out = tmpfile();
    repl *r = make_repl(b, out);
    bool quit = true;
    assert_int_equal(repl_line(r, "What is the capital of France?", &quit), LLMOS_OK);
    assert_false(quit);
    assert_int_equal(repl_line(r, "  How many live there?\n", &quit), LLMOS_OK);
    char *text = slurp(out);
    assert_non_null(strstr(text, "Paris is the capital.\n"));
    assert_non_null(strstr(text, "About 2 million people.\n"));
    free(text);
    /* the second request carried the first question and answer */
    size_t len = 0;
    const char *sent = scripted_test_backend_sent(b, &len);
    const char *second = strstr(sent, "How many live there?");
    assert_non_null(second);
    const char *first_q = strstr(sent, "What is the capital of France?");
    assert_non_null(first_q);
    assert_non_null(strstr(first_q + 1, "Paris is the capital."));
    const json_t *m = repl_messages(r);
    assert_int_equal(json_array_size(m), 4);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 2), "content")),
                        "How many live there?");
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 3), "role")),
                        "assistant");
    /* blank lines send nothing */
    assert_int_equal(repl_line(r, "   ", &quit), LLMOS_OK);
    assert_int_equal(scripted_test_backend_calls(b), 2);
    repl_free(r);
    fclose(out);
    llm_backend_free(b);
}

static void test_slash_commands(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"hi\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, true, &b), LLMOS_OK);
    FILE *out = tmpfile();
    repl *r = make_repl(b, out);
    bool quit = false;
    assert_int_equal(repl_line(r, "/help", &quit), LLMOS_OK);
    assert_false(quit);
    assert_int_equal(repl_line(r, "/hlep", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/tools", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/model", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/frobnicate", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/calc 0.1 + 0.2", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/calc 1/0", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "hello", &quit), LLMOS_OK);
    assert_int_equal(json_array_size(repl_messages(r)), 2);
    assert_int_equal(repl_line(r, "/clear", &quit), LLMOS_OK);
    assert_int_equal(json_array_size(repl_messages(r)), 0);
    assert_int_equal(scripted_test_backend_calls(b), 1); /* commands never reach the model */
    char *text = slurp(out);
    assert_non_null(strstr(text, "/quit"));
    assert_non_null(strstr(text, "/tools"));
    assert_non_null(strstr(text, "unknown command /hlep. Did you mean /help?"));
    assert_non_null(strstr(text, "unknown command /frobnicate. Type /help"));
    assert_non_null(strstr(text, "send_message"));
    assert_non_null(strstr(text, "conversation cleared"));
    assert_non_null(strstr(text, "3/10 = 0.3\n"));
    assert_non_null(strstr(text, "error: division by zero at column 2"));
    free(text);
    assert_int_equal(repl_line(r, "/quit", &quit), LLMOS_OK);
    assert_true(quit);
    repl_free(r);
    fclose(out);
    llm_backend_free(b);
}

static void test_backend_error_keeps_going(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"one\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, false, &b), LLMOS_OK);
    FILE *out = tmpfile();
    repl *r = make_repl(b, out);
    bool quit = false;
    assert_int_equal(repl_line(r, "first", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "second", &quit), LLMOS_OK); /* the script has run out */
    char *text = slurp(out);
    assert_non_null(strstr(text, "error: "));
    free(text);
    /* the failed question was dropped: user, assistant only */
    assert_int_equal(json_array_size(repl_messages(r)), 2);
    assert_int_equal(repl_line(r, "bad \xff utf-8", &quit), LLMOS_OK);
    assert_int_equal(json_array_size(repl_messages(r)), 2);
    repl_free(r);
    fclose(out);
    llm_backend_free(b);
}

/* ---- a slow backend for Ctrl-C: streams until cancelled, raising SIGINT itself ---------- */

typedef struct slow_backend {
    llm_backend base;
    int calls;
} slow_backend;

static llmos_err slow_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream, void *ctx,
                           llm_response *resp)
{
    slow_backend *s = (slow_backend *)b;
    s->calls++;
    memset(resp, 0, sizeof *resp);
    resp->finish_reason = "length";
    for (int i = 0; i < 10000; i++) { /* at most 10 s */
        if (req->cancel && atomic_load(req->cancel)) {
            resp->finish_reason = "cancelled";
            break;
        }
        if (i == 5)
            raise(SIGINT); /* the user presses Ctrl-C during the answer */
        if (stream && !stream(ctx, "x", 1)) {
            resp->finish_reason = "cancelled";
            break;
        }
        usleep(1000);
    }
    resp->content = strdup("xxxxx");
    return LLMOS_OK;
}

static const char *slow_name(llm_backend *b)
{
    (void)b;
    return "slow-test";
}

static size_t slow_ctx(llm_backend *b)
{
    (void)b;
    return 4096;
}

static void slow_free(llm_backend *b)
{
    (void)b;
}

static const llm_backend_ops slow_ops = {
    "slow-test", slow_chat, NULL, NULL, slow_ctx, slow_name, slow_free,
};

static void test_ctrl_c_cancels_and_returns_to_prompt(void **state)
{
    (void)state;
    slow_backend sb = {{&slow_ops}, 0};
    FILE *in = tmpfile();
    fputs("tell me a long story\nand another one\n/quit\nnever read\n", in);
    rewind(in);
    FILE *out = tmpfile();
    repl_options o = repl_default_options();
    o.backend = &sb.base;
    o.in = in;
    o.out = out;
    o.handle_sigint = true;
    repl *r = NULL;
    assert_int_equal(repl_new(&o, &r), LLMOS_OK);
    double t0 = llmos_time_now();
    assert_int_equal(repl_run(r), LLMOS_OK); /* still alive after two Ctrl-C */
    assert_true(llmos_time_now() - t0 < 5.0);
    assert_int_equal(sb.calls, 2); /* both questions answered (cut short); /quit stopped it */
    char *text = slurp(out);
    const char *c1 = strstr(text, "[cancelled]");
    assert_non_null(c1);
    assert_non_null(strstr(c1 + 1, "[cancelled]"));
    free(text);
    assert_int_equal(json_array_size(repl_messages(r)), 4);
    repl_free(r);
    /* the handler was removed: SIGINT is back to its default */
    struct sigaction now;
    sigaction(SIGINT, NULL, &now);
    assert_true(now.sa_handler == SIG_DFL);
    fclose(in);
    fclose(out);
}

/* ---- the program ------------------------------------------------------------------------- */

/* Run `sh -c "timeout 60 LLMOS_BIN ARGS"` (ARGS may redirect stdin, which tu_run_llmos does
 * not allow); stdout into *out; returns the exit status or -1. */
static int run_shell(llmos_buf *out, const char *fmt, ...) LLMOS_PRINTF(2, 3);

static int run_shell(llmos_buf *out, const char *fmt, ...)
{
    const char *bin = getenv("LLMOS_BIN");
    if (!bin)
        return -1;
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' %s 2>/dev/null", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    buf_clear(out);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        assert_int_equal(buf_append(out, chunk, n), LLMOS_OK);
    if (!out->data)
        assert_int_equal(buf_puts(out, ""), LLMOS_OK);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_no_model_prints_guidance(void **state)
{
    (void)state;
    char dir[256];
    assert_true(tu_mkdtemp("repl", dir, sizeof dir));
    llmos_buf out = {0};
    /* stdin is a pipe that never ends: the shell must not read it without a model */
    setenv("LLMOS_HOME", dir, 1);
    unsetenv("LLMOS_MODEL");
    int rc = run_shell(&out, "< /dev/zero");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out.data, "llmos --model "));
    assert_non_null(strstr(out.data, "Qwen2.5-0.5B-Instruct"));
    assert_non_null(strstr(out.data, "--api http://"));
    assert_non_null(strstr(out.data, "llmos model make-random"));
    buf_free(&out);
    assert_int_equal(tu_run_llmos(&out, NULL, "--api http://127.0.0.1:1/v1"), 2);
    assert_int_equal(tu_run_llmos(&out, NULL, "shell --bogus"), 2);
    buf_free(&out);
    tu_rmrf(dir);
}

static void test_stories260k_through_a_pipe(void **state)
{
    (void)state;
    char model[1024];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char dir[256];
    assert_true(tu_mkdtemp("repl", dir, sizeof dir));
    char input[512];
    snprintf(input, sizeof input, "%s/in.txt", dir);
    const char *lines = "Once upon a time\n/hepl\n/model\n/quit\n";
    assert_int_equal(llmos_file_write_atomic(input, lines, strlen(lines), 0600), LLMOS_OK);
    llmos_buf out = {0};
    setenv("LLMOS_HOME", dir, 1);
    int rc = run_shell(&out, "--model '%s' -n 16 --temp 0 < '%s'", model, input);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out.data, "Model: stories260K"));
    /* an answer came between the first prompt and the next */
    const char *p1 = strstr(out.data, "> ");
    assert_non_null(p1);
    const char *p2 = strstr(p1 + 2, "\n> ");
    if (!p2)
        fprintf(stderr, "shell output:\n%s\n", out.data);
    assert_non_null(p2);
    assert_true(p2 - p1 > 3);
    assert_non_null(strstr(out.data, "Did you mean /help?"));
    assert_non_null(strstr(out.data, "model: stories260K (local backend"));
    buf_free(&out);
    tu_rmrf(dir);
}

/* ---- a real terminal: libedit, Ctrl-C at the prompt and during an answer, history -------- */

/* Read from fd for `seconds` (or until `until` appears) and append to *acc. */
static void pty_read(int fd, llmos_buf *acc, double seconds, const char *until)
{
    double end = llmos_time_now() + seconds;
    while (llmos_time_now() < end) {
        if (until && acc->data && strstr(acc->data, until))
            return;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n <= 0)
            return;
        assert_int_equal(buf_append(acc, chunk, (size_t)n), LLMOS_OK);
    }
}

static void test_terminal_ctrl_c_and_history(void **state)
{
    (void)state;
    char model[1024];
    const char *bin = getenv("LLMOS_BIN");
    if (!bin)
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char dir[256];
    assert_true(tu_mkdtemp("repl", dir, sizeof dir));
    int fd = -1;
    pid_t pid = forkpty(&fd, NULL, NULL, NULL);
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("LLMOS_HOME", dir, 1);
        /* direct mode: stories260K's 512-token context cannot hold the kernel's tool
         * descriptions, and on a terminal the kernel mode would ask for a passphrase */
        execl(bin, "llmos", "--model", model, "-n", "100000", "--temp", "0.8", "--no-store",
              (char *)NULL);
        _exit(127);
    }
    llmos_buf acc = {0};
    pty_read(fd, &acc, 20, "llmos> ");
    assert_non_null(strstr(acc.data, "llmos> "));
    /* Ctrl-C at the prompt drops the half-typed line and prompts again */
    buf_clear(&acc);
    /* (typed at human speed: libedit puts the terminal in raw mode after the prompt shows) */
    pty_read(fd, &acc, 0.3, NULL);
    assert_int_equal(write(fd, "half typed", 10), 10);
    pty_read(fd, &acc, 0.2, NULL);
    assert_int_equal(write(fd, "\x03", 1), 1);
    pty_read(fd, &acc, 5, "llmos> ");
    if (!acc.data || !strstr(acc.data, "llmos> "))
        fprintf(stderr, "after Ctrl-C at the prompt: '%s'\n", acc.data ? acc.data : "");
    assert_non_null(strstr(acc.data, "llmos> "));
    /* a long answer, cancelled by Ctrl-C: the shell stays */
    buf_clear(&acc);
    pty_read(fd, &acc, 0.3, NULL);
    assert_int_equal(write(fd, "Once upon a time\r", 17), 17);
    double give_up = llmos_time_now() + 10;
    while (acc.len < 48 && llmos_time_now() < give_up) /* the echo, then the answer begins */
        pty_read(fd, &acc, 0.02, NULL);
    assert_int_equal(write(fd, "\x03", 1), 1);
    pty_read(fd, &acc, 10, "[cancelled]");
    assert_non_null(strstr(acc.data, "[cancelled]"));
    pty_read(fd, &acc, 5, "llmos> ");
    assert_int_equal(write(fd, "/quit\r", 6), 6);
    pty_read(fd, &acc, 5, NULL);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    close(fd);
    buf_free(&acc);
    /* the history file is private and holds what was typed */
    char hist[512];
    snprintf(hist, sizeof hist, "%s/history", dir);
    struct stat sb;
    assert_int_equal(stat(hist, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    llmos_buf h = {0};
    assert_int_equal(llmos_file_read_all(hist, 1 << 20, &h), LLMOS_OK);
    assert_non_null(strstr(h.data, "/quit"));
    buf_free(&h);
    tu_rmrf(dir);
}

/* ---- kernel mode: the model's tool calls are system calls -------------------------------- */

static void test_kernel_mode_calculator_audit_ps(void **state)
{
    (void)state;
    bool have_calc = false;
    size_t nt = 0;
    const ktool *t = ktool_builtin(&nt);
    for (size_t i = 0; i < nt; i++)
        have_calc |= strcmp(t[i].name, "calculator") == 0;
    if (!have_calc) {
        skip(); /* the calculator engine is not in this build */
        return;
    }
    char dir[256], sdir[300];
    assert_true(tu_mkdtemp("repl-kernel", dir, sizeof dir));
    snprintf(sdir, sizeof sdir, "%s/store", dir); /* where `llmos` looks under LLMOS_HOME */
    store_options so = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &so.kdf), LLMOS_OK);
    so.no_fsync = true;
    store *st = NULL;
    assert_int_equal(store_open(sdir, "pw", &so, &st), LLMOS_OK);
    const char *steps[] = {"{\"tool_calls\": [{\"name\": \"calculator\", \"arguments\": "
                           "{\"expression\": \"2^100\"}}]}",
                           "{\"content\": \"It is a big number.\"}",
                           "{\"content\": \"Second answer.\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 3, false, &b), LLMOS_OK);
    kernel_config kc = {0};
    kc.st = st;
    kc.privileged = b;
    kernel *k = NULL;
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    FILE *out = tmpfile();
    repl_options o = repl_default_options();
    o.backend = b;
    o.out = out;
    o.kern = k;
    o.st = st;
    repl *r = NULL;
    assert_int_equal(repl_new(&o, &r), LLMOS_OK);
    bool quit = false;
    assert_int_equal(repl_line(r, "What is 2^100?", &quit), LLMOS_OK);
    int64_t pid = repl_pid(r);
    assert_true(pid > 0);
    assert_int_equal(repl_line(r, "And again?", &quit), LLMOS_OK);
    assert_int_equal(repl_pid(r), pid); /* one process for the conversation */
    assert_int_equal(repl_line(r, "/ps", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/audit", &quit), LLMOS_OK);
    assert_int_equal(repl_line(r, "/memory", &quit), LLMOS_OK);
    char *text = slurp(out);
    /* the call and its exact result were shown, then the final answers */
    assert_non_null(strstr(text, "[tool call] calculator"));
    assert_non_null(strstr(text, "[tool result] 1267650600228229401496703205376"));
    assert_non_null(strstr(text, "It is a big number.\n"));
    assert_non_null(strstr(text, "Second answer.\n"));
    /* /ps lists this shell's process as answered */
    char row[64];
    snprintf(row, sizeof row, "* %6" PRId64 "  done", pid);
    if (!strstr(text, row))
        fprintf(stderr, "shell output:\n%s\n", text);
    assert_non_null(strstr(text, row));
    assert_non_null(strstr(text, "audit log intact"));
    assert_non_null(strstr(text, "audit records"));
    free(text);
    /* the result reached the model as a tool message, and the second turn saw the first */
    size_t len = 0;
    const char *sent = scripted_test_backend_sent(b, &len);
    assert_non_null(strstr(sent, "1267650600228229401496703205376"));
    assert_non_null(strstr(sent, "And again?"));
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(k, pid, &ctx), LLMOS_OK);
    /* system, user, tool call, tool result, answer, user, answer: one conversation */
    assert_int_equal(json_array_size(ctx), 7);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ctx, 4), "content")),
                        "It is a big number.");
    json_decref(ctx);
    repl_free(r);
    kernel_free(k);
    fclose(out);
    /* the system call is in the audit log */
    kproc_info info;
    assert_int_equal(kproc_get(st, pid, &info), LLMOS_OK);
    assert_int_equal(info.used.tool_calls, 1);
    store_close(st);
    llm_backend_free(b);
    /* and the program itself finds the chain intact and a syscall record in it */
    if (getenv("LLMOS_BIN")) {
        llmos_buf res = {0};
        assert_int_equal(
            tu_run_llmos(&res, NULL, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw audit verify", dir), 0);
        assert_non_null(strstr(res.data, "hash chain verified"));
        buf_clear(&res);
        assert_int_equal(tu_run_llmos(&res, NULL, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw audit", dir),
                         0);
        assert_non_null(strstr(res.data, "calculator"));
        buf_free(&res);
    }
    tu_rmrf(dir);
}

/* Kernel mode: Ctrl-C during an answer stops the model inside the kernel's loop; the process
 * ends "cancelled by the user" keeping what was said, and the next line continues it. */
static void test_kernel_mode_ctrl_c(void **state)
{
    (void)state;
    char dir[256];
    assert_true(tu_mkdtemp("repl-kcancel", dir, sizeof dir));
    store_options so = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &so.kdf), LLMOS_OK);
    so.no_fsync = true;
    store *st = NULL;
    assert_int_equal(store_open(dir, "pw", &so, &st), LLMOS_OK);
    slow_backend sb = {{&slow_ops}, 0};
    kernel_config kc = {0};
    kc.st = st;
    kc.privileged = &sb.base;
    kernel *k = NULL;
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    FILE *in = tmpfile();
    fputs("tell me a long story\nand another one\n/quit\n", in);
    rewind(in);
    FILE *out = tmpfile();
    repl_options o = repl_default_options();
    o.backend = &sb.base;
    o.in = in;
    o.out = out;
    o.handle_sigint = true;
    o.kern = k;
    o.st = st;
    repl *r = NULL;
    assert_int_equal(repl_new(&o, &r), LLMOS_OK);
    double t0 = llmos_time_now();
    assert_int_equal(repl_run(r), LLMOS_OK);
    assert_true(llmos_time_now() - t0 < 5.0);
    assert_int_equal(sb.calls, 2);
    char *text = slurp(out);
    const char *c1 = strstr(text, "[cancelled]");
    assert_non_null(c1);
    assert_non_null(strstr(c1 + 1, "[cancelled]"));
    assert_non_null(strstr(text, "xxxxx")); /* the answer streamed */
    free(text);
    kproc_info info;
    assert_int_equal(kproc_get(st, repl_pid(r), &info), LLMOS_OK);
    assert_int_equal(info.state, KPROC_DONE);
    assert_string_equal(info.reason, "cancelled by the user");
    json_t *ctx = NULL;
    assert_int_equal(kernel_context(k, repl_pid(r), &ctx), LLMOS_OK);
    assert_int_equal(json_array_size(ctx), 5); /* system, user, answer, user, answer */
    json_decref(ctx);
    repl_free(r);
    kernel_free(k);
    store_close(st);
    fclose(in);
    fclose(out);
    tu_rmrf(dir);
}

/* Without a passphrase (stdin not a terminal) or with --no-store the shell says so, once. */
static void test_shell_without_store_says_so(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    char model[1024];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char dir[256];
    assert_true(tu_mkdtemp("repl-nostore", dir, sizeof dir));
    llmos_buf out = {0}, err = {0};
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE= --model '%s' -n 4 < /dev/null",
                                  dir, model),
                     0);
    assert_non_null(strstr(out.data, "Model: stories260K"));
    assert_null(strstr(out.data, "runs through the kernel"));
    assert_non_null(strstr(err.data, "no passphrase"));
    assert_non_null(strstr(err.data, "chatting with the model directly"));
    /* --no-store wins over a passphrase; no store is made */
    buf_clear(&out);
    buf_clear(&err);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw --model '%s' -n 4 "
                                  "--no-store < /dev/null",
                                  dir, model),
                     0);
    assert_null(strstr(out.data, "runs through the kernel"));
    assert_non_null(strstr(err.data, "--no-store: chatting with the model directly"));
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/store", dir);
    assert_int_not_equal(access(sdir, F_OK), 0);
    /* with a passphrase the shell runs through the kernel and makes the store */
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak "
                                  "--model '%s' -n 4 < /dev/null",
                                  dir, model),
                     0);
    assert_non_null(strstr(out.data, "runs through the kernel"));
    assert_int_equal(access(sdir, F_OK), 0);
    buf_free(&out);
    buf_free(&err);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_turns_keep_the_conversation),
        cmocka_unit_test(test_slash_commands),
        cmocka_unit_test(test_backend_error_keeps_going),
        cmocka_unit_test(test_ctrl_c_cancels_and_returns_to_prompt),
        cmocka_unit_test(test_no_model_prints_guidance),
        cmocka_unit_test(test_stories260k_through_a_pipe),
        cmocka_unit_test(test_terminal_ctrl_c_and_history),
        cmocka_unit_test(test_kernel_mode_calculator_audit_ps),
        cmocka_unit_test(test_kernel_mode_ctrl_c),
        cmocka_unit_test(test_shell_without_store_says_so),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
