/*
 * repl.c - the llmos shell (llmos/repl.h): read a line, run a slash command or chat with the
 * model, stream the answer, repeat.
 *
 * The conversation is a jansson array of OpenAI-shaped messages sent whole with each turn
 * (the backend's chat template frames it). Slash commands are one table; adding one is one
 * line there and one function. Cancellation: the SIGINT handler sets an atomic flag that the
 * backend polls between tokens (llm_request.cancel) and the stream callback checks too.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <editline/readline.h>

#include "llmos/kernel.h"
#include "llmos/repl.h"
#include "llmos/tools.h"

#define REPL_MAX_LINE 65536

struct repl {
    repl_options o;
    json_t *messages;
    atomic_bool cancel;
    bool history_loaded;
};

/* The shell that the SIGINT handler cancels (one shell runs per process). */
static repl *volatile repl_active;
static volatile sig_atomic_t repl_sigint;

repl_options repl_default_options(void)
{
    repl_options o = {0};
    o.sampling = sampler_default_params();
    o.max_tokens = 512;
    return o;
}

static FILE *out_of(const repl *r)
{
    return r->o.out ? r->o.out : stdout;
}

static llmos_err reset_conversation(repl *r)
{
    json_decref(r->messages);
    r->messages = json_array();
    if (!r->messages)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the conversation");
    if (r->o.system_prompt && r->o.system_prompt[0]) {
        json_t *m = json_pack("{ss ss}", "role", "system", "content", r->o.system_prompt);
        if (!m || json_array_append_new(r->messages, m))
            return llmos_fail(LLMOS_ERR_INVALID, "the system prompt is not valid UTF-8");
    }
    return LLMOS_OK;
}

llmos_err repl_new(const repl_options *opts, repl **out)
{
    *out = NULL;
    if (!opts || !opts->backend)
        return llmos_fail(LLMOS_ERR_INVALID, "repl_new: a backend is required");
    repl *r = calloc(1, sizeof *r);
    if (!r)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the shell");
    r->o = *opts;
    if (r->o.max_tokens <= 0)
        r->o.max_tokens = 512;
    atomic_init(&r->cancel, false);
    llmos_err err = reset_conversation(r);
    if (err) {
        repl_free(r);
        return err;
    }
    *out = r;
    return LLMOS_OK;
}

void repl_free(repl *r)
{
    if (!r)
        return;
    if (repl_active == r)
        repl_active = NULL;
    json_decref(r->messages);
    free(r);
}

const json_t *repl_messages(const repl *r)
{
    return r->messages;
}

void repl_cancel(repl *r)
{
    atomic_store(&r->cancel, true);
}

/* ---- slash commands ---------------------------------------------------------------------- */

typedef struct repl_command {
    const char *name;
    const char *summary;
    void (*run)(repl *r, const char *args, bool *quit);
} repl_command;

static void cmd_help(repl *r, const char *args, bool *quit);

static void cmd_quit(repl *r, const char *args, bool *quit)
{
    (void)r;
    (void)args;
    *quit = true;
}

static void cmd_clear(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    if (reset_conversation(r) == LLMOS_OK)
        fprintf(out_of(r), "conversation cleared\n");
    else
        fprintf(out_of(r), "error: %s\n", llmos_errmsg());
}

static void cmd_model(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    llm_backend *b = r->o.backend;
    fprintf(out_of(r), "model: %s (%s backend, context %zu tokens)\n", llm_model_name(b),
            b->ops->kind, llm_context_size(b));
    fprintf(out_of(r), "conversation: %zu messages; answers up to %d tokens, temperature %.2f\n",
            json_array_size(r->messages), r->o.max_tokens, (double)r->o.sampling.temperature);
}

static void cmd_tools(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    size_t n = 0;
    const ktool *t = ktool_builtin(&n);
    fprintf(out_of(r), "built-in tools (system calls of the kernel):\n");
    for (size_t i = 0; i < n; i++)
        fprintf(out_of(r), "  %-16s %s\n", t[i].name, t[i].description);
    fprintf(out_of(r), "This shell chats with the model directly; tool calls run when the "
                       "shell goes through the kernel's agent loop.\n");
}

static void cmd_ps(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    fprintf(out_of(r),
            "no agent processes: this shell chats with the model directly (one "
            "conversation, %zu messages). Processes are kept in the encrypted "
            "store by the kernel.\n",
            json_array_size(r->messages));
}

static void cmd_memory(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    fprintf(out_of(r), "your memory lives in the encrypted store; from the command line:\n"
                       "  llmos memory add TEXT...      remember a text\n"
                       "  llmos memory search QUERY...  find the nearest memories\n"
                       "  llmos memory stats            what the store holds\n");
}

static void cmd_audit(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    fprintf(out_of(r), "the audit log (hash-chained) is written by the kernel for every "
                       "system call; this shell makes none, so there is nothing to show.\n");
}

static void cmd_calc(repl *r, const char *args, bool *quit)
{
    (void)quit;
    llmos_buf b = {0};
    if (calc_eval(args, &b) == LLMOS_OK)
        fprintf(out_of(r), "%s\n", b.data);
    else
        fprintf(out_of(r), "error: %s\n", llmos_errmsg());
    buf_free(&b);
}

static const repl_command repl_commands[] = {
    {"help", "list these commands", cmd_help},
    {"quit", "leave the shell (also /exit, or Ctrl-D)", cmd_quit},
    {"exit", "leave the shell", cmd_quit},
    {"clear", "forget the conversation and start a new one", cmd_clear},
    {"model", "which model answers, its context size and settings", cmd_model},
    {"tools", "the tools models may call", cmd_tools},
    {"calc", "EXPR: evaluate exactly with the calculator tool (/calc 2^100)", cmd_calc},
    {"ps", "agent processes", cmd_ps},
    {"memory", "how to reach your encrypted memory", cmd_memory},
    {"audit", "the audit log of system calls", cmd_audit},
};

static void cmd_help(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    FILE *f = out_of(r);
    fprintf(f, "Type a message and press Enter to ask the model. Commands:\n");
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(repl_commands); i++)
        fprintf(f, "  /%-8s %s\n", repl_commands[i].name, repl_commands[i].summary);
    fprintf(f, "Ctrl-C stops an answer (or clears the line); Ctrl-D quits.\n");
}

static size_t edit_distance(const char *a, size_t na, const char *b)
{
    size_t nb = strlen(b), row[32];
    if (na >= 31 || nb >= 31)
        return 99;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t sub = diag + (a[i - 1] != b[j - 1]);
            size_t best = (up < row[j - 1] ? up : row[j - 1]) + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[nb];
}

static void run_command(repl *r, const char *line, bool *quit)
{
    const char *name = line + 1;
    size_t n = strcspn(name, " \t");
    const char *args = name + n;
    while (*args == ' ' || *args == '\t')
        args++;
    const char *best = NULL;
    size_t bestd = 3;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(repl_commands); i++) {
        const repl_command *c = &repl_commands[i];
        if (strlen(c->name) == n && strncmp(c->name, name, n) == 0) {
            c->run(r, args, quit);
            return;
        }
        size_t d = edit_distance(name, n, c->name);
        /* a prefix also counts as close: /he -> /help */
        if (n > 0 && strncmp(c->name, name, n) == 0)
            d = 1;
        if (d < bestd) {
            bestd = d;
            best = c->name;
        }
    }
    FILE *f = out_of(r);
    fprintf(f, "unknown command /%.*s.", (int)(n > 40 ? 40 : n), name);
    if (best)
        fprintf(f, " Did you mean /%s?", best);
    fprintf(f, " Type /help for the list.\n");
}

/* ---- a chat turn ------------------------------------------------------------------------- */

static bool stream_out(void *ctx, const char *text, size_t len)
{
    repl *r = ctx;
    FILE *f = out_of(r);
    fwrite(text, 1, len, f);
    fflush(f);
    return !atomic_load(&r->cancel);
}

static llmos_err chat_turn(repl *r, const char *line)
{
    FILE *f = out_of(r);
    json_t *m = json_pack("{ss ss}", "role", "user", "content", line);
    if (!m) {
        fprintf(f, "error: the message is not valid UTF-8; nothing was sent\n");
        return LLMOS_OK;
    }
    if (json_array_append_new(r->messages, m))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the conversation");
    llm_request rq = llm_request_default();
    rq.messages = r->messages;
    rq.max_tokens = r->o.max_tokens;
    rq.sampling = r->o.sampling;
    rq.cancel = &r->cancel;
    atomic_store(&r->cancel, false);
    repl_sigint = 0;
    llm_response resp = {0};
    llmos_err err = llm_chat(r->o.backend, &rq, stream_out, r, &resp);
    bool cancelled = atomic_load(&r->cancel) || err == LLMOS_ERR_CANCELLED ||
                     (resp.finish_reason && strcmp(resp.finish_reason, "cancelled") == 0);
    if (err && !cancelled) {
        fprintf(f, "\nerror: %s\n", llmos_errmsg());
        /* forget the unanswered message so that the conversation stays well formed */
        json_array_remove(r->messages, json_array_size(r->messages) - 1);
        llm_response_free(&resp);
        return LLMOS_OK;
    }
    if (cancelled)
        fprintf(f, "\n[cancelled]\n");
    else
        fprintf(f, "\n");
    fflush(f);
    /* keep what was said, even a cut-off answer, so that the next turn reads naturally */
    json_t *a =
        json_pack("{ss ss}", "role", "assistant", "content", resp.content ? resp.content : "");
    llm_response_free(&resp);
    atomic_store(&r->cancel, false);
    if (!a || json_array_append_new(r->messages, a))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the conversation");
    return LLMOS_OK;
}

llmos_err repl_line(repl *r, const char *line, bool *quit)
{
    *quit = false;
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r' ||
                     line[n - 1] == '\n'))
        n--;
    if (n == 0)
        return LLMOS_OK;
    char *copy = strndup(line, n);
    if (!copy)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the line");
    llmos_err err = LLMOS_OK;
    if (copy[0] == '/')
        run_command(r, copy, quit);
    else
        err = chat_turn(r, copy);
    free(copy);
    return err;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void on_sigint(int sig)
{
    (void)sig;
    repl_sigint = 1;
    repl *r = repl_active;
    if (r)
        atomic_store(&r->cancel, true);
}

/* Next line: malloc'd without the newline, NULL at end of input. *interrupted when Ctrl-C
 * ended the read (the caller shows a new prompt). */
static char *read_line(repl *r, bool *interrupted)
{
    *interrupted = false;
    if (r->o.interactive) {
        repl_sigint = 0;
        char *s = readline("llmos> ");
        if (!s && repl_sigint) {
            *interrupted = true;
            repl_sigint = 0;
        }
        return s;
    }
    FILE *in = r->o.in ? r->o.in : stdin;
    llmos_buf b = {0};
    for (;;) {
        int c = fgetc(in);
        if (c == EOF) {
            if (ferror(in) && errno == EINTR) {
                clearerr(in);
                *interrupted = true;
                buf_free(&b);
                return NULL;
            }
            if (b.len == 0) {
                buf_free(&b);
                return NULL;
            }
            break;
        }
        if (c == '\n')
            break;
        if (b.len < REPL_MAX_LINE && buf_putc(&b, (char)c)) {
            buf_free(&b);
            return NULL;
        }
    }
    char *s = buf_detach(&b, NULL);
    return s;
}

llmos_err repl_run(repl *r)
{
    FILE *f = out_of(r);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: a blocked read returns EINTR */
    if (r->o.handle_sigint)
        sigaction(SIGINT, &sa, &old);
    repl_active = r;
    if (r->o.interactive && r->o.history_path) {
        using_history();
        stifle_history(1000);
        read_history(r->o.history_path); /* a missing file is a fresh history */
    }
    fprintf(f, "Model: %s. Type /help for commands, /quit or Ctrl-D to leave.\n",
            llm_model_name(r->o.backend));
    fflush(f);
    llmos_err err = LLMOS_OK;
    for (;;) {
        if (!r->o.interactive) {
            fprintf(f, "> ");
            fflush(f);
        }
        bool interrupted;
        char *line = read_line(r, &interrupted);
        if (interrupted) {
            fprintf(f, "\n");
            continue; /* Ctrl-C at the prompt: drop the line, prompt again */
        }
        if (!line) {
            fprintf(f, "\n");
            break; /* Ctrl-D */
        }
        if (r->o.interactive && line[0])
            add_history(line);
        bool quit = false;
        err = repl_line(r, line, &quit);
        free(line);
        if (err || quit)
            break;
    }
    if (r->o.interactive && r->o.history_path) {
        mode_t um = umask(077); /* the history holds what the user typed: 0600 */
        write_history(r->o.history_path);
        umask(um);
        chmod(r->o.history_path, 0600);
    }
    repl_active = NULL;
    if (r->o.handle_sigint)
        sigaction(SIGINT, &old, NULL);
    fflush(f);
    return err;
}
