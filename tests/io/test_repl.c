/*
 * test_repl.c - the llmos shell, a device over a kernel session: turns over a scripted backend
 * (streamed answer, the conversation one process across turns), the turn shown as it happens
 * (text, each tool call and its result in order, then the answer), slash commands and
 * suggestions (/calc is a system call too), backend errors, Ctrl-C cancelling a long answer
 * without leaving, lines of any length from a pipe (a line beyond the limit refused whole, never
 * cut); and the program itself: no model -> guidance and exit 0 without reading stdin; one
 * message on the command line answered once; stories260K driven through a stdin pipe; a real
 * terminal (libedit, Ctrl-C, history); the store or a store in memory only; the passphrase
 * prompt left by Ctrl-C with the terminal as it was.
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
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>
#include <inttypes.h>

#include "doubles.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
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
    fseek(f, 0, SEEK_END);
    return s;
}

/* A shell over a kernel session on a store in memory only (what --no-store gives). */
typedef struct shell {
    memory *mem;
    kernel *k;
    ksession *s;
    repl *r;
    FILE *out;
} shell;

static void shell_open(shell *sh, llm_backend *b, FILE *in, bool handle_sigint)
{
    memset(sh, 0, sizeof *sh);
    assert_int_equal(memory_open_ephemeral(&sh->mem), LLMOS_OK);
    kernel_config kc = {.st = memory_store(sh->mem), .privileged = b};
    assert_int_equal(kernel_new(&kc, &sh->k), LLMOS_OK);
    ksession_params sp = {.principal = "user",
                          .device = "shell",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_COMPUTE | KCAP_MESSAGE};
    assert_int_equal(ksession_open(sh->k, &sp, &sh->s), LLMOS_OK);
    sh->out = tmpfile();
    repl_options o = repl_default_options();
    o.session = sh->s;
    o.out = sh->out;
    o.in = in;
    o.handle_sigint = handle_sigint;
    assert_int_equal(repl_new(&o, &sh->r), LLMOS_OK);
}

static void shell_close(shell *sh)
{
    repl_free(sh->r);
    ksession_close(sh->s);
    kernel_free(sh->k);
    memory_close(sh->mem);
    fclose(sh->out);
}

/* The conversation of the shell's process. */
static json_t *conversation(shell *sh)
{
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(sh->s, repl_pid(sh->r), &ctx), LLMOS_OK);
    return ctx;
}

static void test_turns_keep_the_conversation(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"Paris is the capital.\", \"pieces\": 4}",
                           "{\"content\": \"About 2 million people.\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 2, false, &b), LLMOS_OK);
    shell sh;
    shell_open(&sh, b, NULL, false);
    bool quit = true;
    assert_int_equal(repl_line(sh.r, "What is the capital of France?", &quit), LLMOS_OK);
    assert_false(quit);
    int64_t pid = repl_pid(sh.r);
    assert_true(pid > 0);
    assert_int_equal(repl_line(sh.r, "  How many live there?\n", &quit), LLMOS_OK);
    assert_int_equal(repl_pid(sh.r), pid); /* one process for the conversation */
    char *text = slurp(sh.out);
    assert_non_null(strstr(text, "Paris is the capital.\n"));
    assert_non_null(strstr(text, "About 2 million people.\n"));
    free(text);
    /* the second request carried the first question and answer */
    const char *sent = scripted_test_backend_sent(b, NULL);
    const char *first_q = strstr(sent, "What is the capital of France?");
    assert_non_null(first_q);
    assert_non_null(strstr(first_q + 1, "Paris is the capital."));
    assert_non_null(strstr(sent, "How many live there?"));
    json_t *m = conversation(&sh);
    assert_int_equal(json_array_size(m), 5); /* system, user, answer, user, answer */
    assert_string_equal(ljson_get_string(json_array_get(m, 3), "content", ""),
                        "How many live there?");
    json_decref(m);
    /* blank lines send nothing */
    assert_int_equal(repl_line(sh.r, "   ", &quit), LLMOS_OK);
    assert_int_equal(scripted_test_backend_calls(b), 2);
    shell_close(&sh);
    llm_backend_free(b);
}

/* The turn is shown as it happens: what the model says, each call, its result, the answer. */
static void test_turn_shown_in_order(void **state)
{
    (void)state;
    const char *steps[] = {
        "{\"content\": \"Let me compute.\", \"tool_calls\": [{\"name\": \"calculator\", "
        "\"arguments\": {\"expression\": \"2^100\"}}, {\"name\": \"send_message\", "
        "\"arguments\": {\"recipient\": \"user\", \"text\": \"working on it\"}}]}",
        "{\"content\": \"It is a big number.\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 2, false, &b), LLMOS_OK);
    shell sh;
    shell_open(&sh, b, NULL, false);
    bool quit;
    assert_int_equal(repl_line(sh.r, "What is 2^100?", &quit), LLMOS_OK);
    char *text = slurp(sh.out);
    const char *said = strstr(text, "Let me compute.\n");
    const char *call = strstr(text, "[tool call] calculator {\"expression\":\"2^100\"}");
    const char *result = strstr(text, "[tool result] 1267650600228229401496703205376");
    const char *msg = strstr(text, "[message to user] working on it");
    const char *answer = strstr(text, "It is a big number.\n");
    if (!said || !call || !result || !msg || !answer)
        fprintf(stderr, "shell output:\n%s\n", text);
    assert_true(said && call && result && msg && answer);
    assert_true(said < call && call < result && result < msg && msg < answer);
    free(text);
    shell_close(&sh);
    llm_backend_free(b);
}

static void test_slash_commands(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"hi\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, true, &b), LLMOS_OK);
    shell sh;
    shell_open(&sh, b, NULL, false);
    bool quit = false;
    assert_int_equal(repl_line(sh.r, "/help", &quit), LLMOS_OK);
    assert_false(quit);
    assert_int_equal(repl_line(sh.r, "/hlep", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/tools", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/model", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/frobnicate", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/calc 0.1 + 0.2", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/calc 1/0", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/kill x", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "hello", &quit), LLMOS_OK);
    int64_t pid = repl_pid(sh.r);
    assert_int_equal(repl_line(sh.r, "/ps", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/memory hello", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/audit", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "/clear", &quit), LLMOS_OK);
    assert_int_equal(repl_line(sh.r, "hello again", &quit), LLMOS_OK);
    assert_true(repl_pid(sh.r) > pid);                   /* a new process after /clear */
    assert_int_equal(scripted_test_backend_calls(b), 2); /* commands never reach the model */
    char *text = slurp(sh.out);
    assert_non_null(strstr(text, "/quit"));
    assert_non_null(strstr(text, "/tools"));
    assert_non_null(strstr(text, "unknown command /hlep. Did you mean /help?"));
    assert_non_null(strstr(text, "unknown command /frobnicate. Type /help"));
    assert_non_null(strstr(text, "send_message"));
    assert_non_null(strstr(text, "model: scripted-test"));
    assert_non_null(strstr(text, "3/10 = 0.3\n"));
    assert_non_null(strstr(text, "division by zero at column 2"));
    assert_non_null(strstr(text, "usage: /kill PID"));
    assert_non_null(strstr(text, "[proc:1 user] hello"));
    assert_non_null(strstr(text, "conversation cleared"));
    /* /calc was a system call: audited like the model's */
    assert_non_null(strstr(text, "\"tool\":\"calculator\""));
    assert_non_null(strstr(text, "audit log intact"));
    free(text);
    assert_int_equal(repl_line(sh.r, "/quit", &quit), LLMOS_OK);
    assert_true(quit);
    shell_close(&sh);
    llm_backend_free(b);
}

static void test_backend_error_keeps_going(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"one\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, false, &b), LLMOS_OK);
    shell sh;
    shell_open(&sh, b, NULL, false);
    bool quit = false;
    assert_int_equal(repl_line(sh.r, "first", &quit), LLMOS_OK);
    int64_t pid = repl_pid(sh.r);
    assert_int_equal(repl_line(sh.r, "second", &quit), LLMOS_OK); /* the script has run out */
    assert_int_equal(repl_line(sh.r, "third", &quit), LLMOS_OK);
    char *text = slurp(sh.out);
    assert_non_null(strstr(text, "ended: failed: the model failed"));
    assert_non_null(strstr(text, "starting a new process"));
    free(text);
    assert_true(repl_pid(sh.r) > pid);
    size_t calls = scripted_test_backend_calls(b);
    assert_int_equal(repl_line(sh.r, "bad \xff utf-8", &quit), LLMOS_OK);
    assert_int_equal(scripted_test_backend_calls(b), calls);
    text = slurp(sh.out);
    assert_non_null(strstr(text, "not valid UTF-8; nothing was sent"));
    free(text);
    shell_close(&sh);
    llm_backend_free(b);
}

/* Piped input: a line of any length up to REPL_MAX_LINE reaches the model whole; a longer one
 * is refused whole with a message, and the shell goes on with the next line. */
static void test_long_lines_from_a_pipe(void **state)
{
    (void)state;
    const char *steps[] = {"{\"content\": \"read it\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, true, &b), LLMOS_OK);
    FILE *in = tmpfile();
    size_t big = 100 * 1024; /* beyond the 64 KiB where lines used to be cut */
    for (size_t i = 0; i < big; i++)
        fputc('a' + (int)(i % 26), in);
    fputs("Z\n", in);
    for (size_t i = 0; i < REPL_MAX_LINE + 10; i++)
        fputc('x', in);
    fputs("\nshort\n", in);
    rewind(in);
    shell sh;
    shell_open(&sh, b, in, false);
    assert_int_equal(repl_run(sh.r), LLMOS_OK);
    json_t *m = conversation(&sh);
    /* system, the long line, answer, "short", answer: the too long one never reached it */
    assert_int_equal(json_array_size(m), 5);
    const char *first = ljson_get_string(json_array_get(m, 1), "content", "");
    assert_int_equal(strlen(first), big + 1);
    assert_int_equal(first[big], 'Z');
    assert_string_equal(ljson_get_string(json_array_get(m, 3), "content", ""), "short");
    json_decref(m);
    char *text = slurp(sh.out);
    assert_non_null(strstr(text, "error: that line is 8388618 bytes; the shell takes lines of up "
                                 "to 8388608 bytes. Nothing was sent."));
    free(text);
    shell_close(&sh);
    fclose(in);
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

static const llm_backend_ops slow_ops = {.kind = "slow-test",
                                         .chat = slow_chat,
                                         .context_size = slow_ctx,
                                         .model_name = slow_name,
                                         .free = slow_free};

static void test_ctrl_c_cancels_and_returns_to_prompt(void **state)
{
    (void)state;
    slow_backend sb = {{&slow_ops}, 0};
    FILE *in = tmpfile();
    fputs("tell me a long story\nand another one\n/quit\nnever read\n", in);
    rewind(in);
    shell sh;
    shell_open(&sh, &sb.base, in, true);
    double t0 = llmos_time_now();
    assert_int_equal(repl_run(sh.r), LLMOS_OK); /* still alive after two Ctrl-C */
    assert_true(llmos_time_now() - t0 < 5.0);
    assert_int_equal(sb.calls, 2); /* both questions answered (cut short); /quit stopped it */
    char *text = slurp(sh.out);
    const char *c1 = strstr(text, "[cancelled]");
    assert_non_null(c1);
    assert_non_null(strstr(c1 + 1, "[cancelled]"));
    assert_non_null(strstr(text, "xxxxx")); /* the answer streamed */
    free(text);
    kproc_info info;
    assert_int_equal(ksession_proc(sh.s, repl_pid(sh.r), &info), LLMOS_OK);
    assert_int_equal(info.state, KPROC_DONE);
    assert_string_equal(info.reason, "cancelled by the user");
    json_t *m = conversation(&sh);
    assert_int_equal(json_array_size(m), 5); /* system, user, answer, user, answer */
    json_decref(m);
    shell_close(&sh);
    /* the handler was removed: SIGINT is back to its default */
    struct sigaction now;
    sigaction(SIGINT, NULL, &now);
    assert_true(now.sa_handler == SIG_DFL);
    fclose(in);
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
        /* a store in memory only: on a terminal the user's store would ask for a passphrase */
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
    /* what was typed is written nowhere in plaintext */
    char hist[512];
    snprintf(hist, sizeof hist, "%s/history", dir);
    assert_int_not_equal(access(hist, F_OK), 0);
    tu_rmrf(dir);
}

/* The history of a terminal session lives in the encrypted store, never in a plaintext file;
 * an old plaintext history file is removed, saying so; the next session has the lines. */
static void test_history_in_the_store(void **state)
{
    (void)state;
    char model[1024];
    const char *bin = getenv("LLMOS_BIN");
    if (!bin)
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char dir[256], hist[512];
    assert_true(tu_mkdtemp("repl-history", dir, sizeof dir));
    snprintf(hist, sizeof hist, "%s/history", dir);
    const char *old = "my secret question\n";
    assert_int_equal(llmos_file_write_atomic(hist, old, strlen(old), 0600), LLMOS_OK);
    for (int run = 0; run < 2; run++) {
        int fd = -1;
        pid_t pid = forkpty(&fd, NULL, NULL, NULL);
        assert_true(pid >= 0);
        if (pid == 0) {
            setenv("LLMOS_HOME", dir, 1);
            setenv("LLMOS_PASSPHRASE", "pw", 1);
            setenv("LLMOS_KDF", "test-weak", 1);
            execl(bin, "llmos", "--model", model, "-n", "4", (char *)NULL);
            _exit(127);
        }
        llmos_buf acc = {0};
        pty_read(fd, &acc, 20, "llmos> ");
        assert_non_null(strstr(acc.data, "llmos> "));
        if (run == 0) {
            assert_non_null(strstr(acc.data, "is now kept in your encrypted store"));
            pty_read(fd, &acc, 0.3, NULL);
            assert_int_equal(write(fd, "/calc 6*7\r", 10), 10);
            pty_read(fd, &acc, 5, "42");
        } else {
            /* the lines typed last time come back with the up arrow: /quit, then /calc */
            pty_read(fd, &acc, 0.3, NULL);
            buf_clear(&acc);
            assert_int_equal(write(fd, "\x1b[A", 3), 3);
            pty_read(fd, &acc, 0.3, NULL);
            assert_int_equal(write(fd, "\x1b[A", 3), 3);
            pty_read(fd, &acc, 2, "calc 6*7"); /* libedit redraws from the first change */
            assert_non_null(strstr(acc.data, "calc 6*7"));
            assert_int_equal(write(fd, "\x15", 1), 1); /* Ctrl-U: drop it */
        }
        pty_read(fd, &acc, 0.3, NULL);
        assert_int_equal(write(fd, "/quit\r", 6), 6);
        pty_read(fd, &acc, 5, NULL);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        close(fd);
        buf_free(&acc);
        assert_int_not_equal(access(hist, F_OK), 0); /* no plaintext history */
    }
    /* the store holds it, sealed: its files do not contain the typed text */
    char cmd[700];
    snprintf(cmd, sizeof cmd, "grep -rqs '6\\*7' '%s/store'", dir);
    assert_int_not_equal(system(cmd), 0);
    tu_rmrf(dir);
}

/* The encrypted store through the shell: a model that calls the calculator gets its result
 * through the kernel, and the program itself finds the syscall in an intact audit log. */
static void test_store_calculator_audit(void **state)
{
    (void)state;
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
                           "{\"content\": \"It is a big number.\"}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 2, false, &b), LLMOS_OK);
    kernel_config kc = {.st = st, .privileged = b};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    ksession_params sp = {
        .principal = "user", .device = "shell", .rights = KRIGHT_ALL, .caps = KCAP_COMPUTE};
    ksession *s = NULL;
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    FILE *out = tmpfile();
    repl_options o = repl_default_options();
    o.session = s;
    o.out = out;
    repl *r = NULL;
    assert_int_equal(repl_new(&o, &r), LLMOS_OK);
    bool quit = false;
    assert_int_equal(repl_line(r, "What is 2^100?", &quit), LLMOS_OK);
    int64_t pid = repl_pid(r);
    assert_int_equal(repl_line(r, "/ps", &quit), LLMOS_OK);
    char *text = slurp(out);
    char row[64];
    snprintf(row, sizeof row, "* %6" PRId64 "  done", pid);
    if (!strstr(text, row))
        fprintf(stderr, "shell output:\n%s\n", text);
    assert_non_null(strstr(text, row));
    free(text);
    assert_non_null(strstr(scripted_test_backend_sent(b, NULL), "1267650600228229401496703205376"));
    repl_free(r);
    ksession_close(s);
    kernel_free(k);
    fclose(out);
    store_close(st);
    llm_backend_free(b);
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

/* Without a passphrase (stdin not a terminal) or with --no-store the shell still runs through
 * the kernel, on a store in memory only, and says so; with a passphrase it uses the user's. */
static void test_shell_store_or_memory(void **state)
{
    (void)state;
    char model[1024];
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char dir[256];
    assert_true(tu_mkdtemp("repl-nostore", dir, sizeof dir));
    llmos_buf out = {0}, err = {0};
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE= --model '%s' -n 4 < /dev/null",
                                  dir, model),
                     0);
    assert_non_null(strstr(out.data, "Model: stories260K"));
    assert_non_null(strstr(out.data, "No passphrase"));
    assert_non_null(strstr(out.data, "store in memory only"));
    /* --no-store wins over a passphrase; no store is made, and /calc is still audited */
    buf_clear(&out);
    buf_clear(&err);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw --model '%s' -n 4 "
                                  "--no-store <<'EOF'\n/calc 6*7\n/audit\nEOF",
                                  dir, model),
                     0);
    assert_non_null(strstr(out.data, "--no-store: each message runs through the kernel"));
    assert_non_null(strstr(out.data, "42"));
    assert_non_null(strstr(out.data, "\"tool\":\"calculator\""));
    char sdir[300];
    snprintf(sdir, sizeof sdir, "%s/store", dir);
    assert_int_not_equal(access(sdir, F_OK), 0);
    /* with a passphrase the shell makes and uses the store */
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak "
                                  "--model '%s' -n 4 < /dev/null",
                                  dir, model),
                     0);
    assert_non_null(strstr(out.data, "Each message runs through the kernel"));
    assert_int_equal(access(sdir, F_OK), 0);
    buf_free(&out);
    buf_free(&err);
    tu_rmrf(dir);
}

/* `llmos --model M "text"` answers once and exits, as `ollama run M "text"` does. */
static void test_one_message_on_the_command_line(void **state)
{
    (void)state;
    char model[1024];
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char dir[256];
    assert_true(tu_mkdtemp("repl-once", dir, sizeof dir));
    llmos_buf out = {0}, err = {0};
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_MODEL='%s' LLMOS_PASSPHRASE= -n 8 "
                                  "--temp 0 Once upon a time < /dev/zero",
                                  dir, model),
                     0);
    assert_null(strstr(out.data, "Type /help")); /* no shell: one answer */
    assert_true(out.len > 1);
    /* without a model: a usage error saying how to give one */
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' LLMOS_MODEL= -n 4 hello", dir), 2);
    assert_non_null(strstr(err.data, "needs a model"));
    buf_free(&out);
    buf_free(&err);
    tu_rmrf(dir);
}

/* Ctrl-C at the passphrase prompt leaves the terminal as it was (echo on) and exits 130. */
static void test_ctrl_c_at_the_passphrase_prompt(void **state)
{
    (void)state;
    const char *bin = getenv("LLMOS_BIN");
    if (!bin)
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    char dir[256];
    assert_true(tu_mkdtemp("repl-secret", dir, sizeof dir));
    int master = -1, slave = -1;
    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    struct termios before;
    assert_int_equal(tcgetattr(slave, &before), 0);
    assert_true(before.c_lflag & ECHO);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setsid();
        ioctl(slave, TIOCSCTTY, 0);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(slave, 2);
        close(master);
        setenv("LLMOS_HOME", dir, 1);
        unsetenv("LLMOS_PASSPHRASE");
        execl(bin, "llmos", "memory", "add", "--embed-model", "lexical", "remember", "this",
              (char *)NULL);
        _exit(127);
    }
    llmos_buf acc = {0};
    pty_read(master, &acc, 20, "New passphrase: ");
    assert_non_null(strstr(acc.data, "New passphrase: "));
    struct termios during;
    assert_int_equal(tcgetattr(slave, &during), 0);
    assert_false(during.c_lflag & ECHO); /* the prompt turned echo off */
    assert_int_equal(write(master, "hunter2", 7), 7);
    assert_int_equal(write(master, "\x03", 1), 1);
    pty_read(master, &acc, 5, "interrupted");
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 130);
    assert_non_null(strstr(acc.data, "interrupted"));
    assert_null(strstr(acc.data, "hunter2")); /* never echoed */
    struct termios after;
    assert_int_equal(tcgetattr(slave, &after), 0);
    assert_true(after.c_lflag & ECHO);
    assert_int_equal(after.c_lflag, before.c_lflag);
    close(master);
    close(slave);
    buf_free(&acc);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_turns_keep_the_conversation),
        cmocka_unit_test(test_turn_shown_in_order),
        cmocka_unit_test(test_slash_commands),
        cmocka_unit_test(test_backend_error_keeps_going),
        cmocka_unit_test(test_long_lines_from_a_pipe),
        cmocka_unit_test(test_ctrl_c_cancels_and_returns_to_prompt),
        cmocka_unit_test(test_no_model_prints_guidance),
        cmocka_unit_test(test_stories260k_through_a_pipe),
        cmocka_unit_test(test_terminal_ctrl_c_and_history),
        cmocka_unit_test(test_history_in_the_store),
        cmocka_unit_test(test_store_calculator_audit),
        cmocka_unit_test(test_shell_store_or_memory),
        cmocka_unit_test(test_one_message_on_the_command_line),
        cmocka_unit_test(test_ctrl_c_at_the_passphrase_prompt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
