/*
 * repl.c - the llmos shell (llmos/repl.h): read a line, run a slash command or chat with the
 * model, stream the answer, repeat.
 *
 * The conversation is a jansson array of OpenAI-shaped messages sent whole with each turn
 * (the backend's chat template frames it). Slash commands are one table; adding one is one
 * line there and one function. Cancellation: the SIGINT handler sets an atomic flag that the
 * backend polls between tokens (llm_request.cancel) and the stream callback checks too.
 *
 * Kernel mode (repl_options.kern): the conversation is one kernel process; each line is fed to
 * it (kernel_spawn, then kernel_send) and kernel_run runs the agent loop, so tool calls are
 * checked, audited system calls. The tool calls and results of the turn are shown, then the
 * answer. /ps, /audit and /memory read the store.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <editline/readline.h>

#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/repl.h"
#include "llmos/tools.h"

#define REPL_MAX_LINE 65536

struct repl {
    repl_options o;
    json_t *messages;
    atomic_bool cancel;
    bool history_loaded;
    int64_t pid;   /* kernel mode: the conversation's process, 0 before the first turn */
    bool streamed; /* kernel mode: the model's words of this turn were shown as they came */
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

/* Kernel mode: the model's words as the kernel's loop generates them. */
static bool kernel_stream(void *ctx, const char *text, size_t len)
{
    repl *r = ctx;
    FILE *f = out_of(r);
    fwrite(text, 1, len, f);
    fflush(f);
    r->streamed = r->streamed || len > 0;
    return !atomic_load(&r->cancel);
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
    if (!opts->kern != !opts->st)
        return llmos_fail(LLMOS_ERR_INVALID, "repl_new: kernel mode needs both kern and st");
    repl *r = calloc(1, sizeof *r);
    if (!r)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the shell");
    r->o = *opts;
    if (r->o.max_tokens <= 0)
        r->o.max_tokens = 512;
    atomic_init(&r->cancel, false);
    if (r->o.kern)
        kernel_set_output(r->o.kern, kernel_stream, r, &r->cancel);
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
    if (r->o.kern)
        kernel_set_output(r->o.kern, NULL, NULL, NULL);
    json_decref(r->messages);
    free(r);
}

int64_t repl_pid(const repl *r)
{
    return r->pid;
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
    r->pid = 0; /* kernel mode: the next line starts a new process */
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
    if (r->o.kern)
        fprintf(out_of(r), "The model may call them: each call runs through the kernel "
                           "(capability check, argument check, flow policy, audit).\n");
    else
        fprintf(out_of(r), "This shell chats with the model directly; tool calls run when the "
                           "shell goes through the kernel's agent loop.\n");
}

static void ps_store(repl *r)
{
    FILE *f = out_of(r);
    kproc_info *list = NULL;
    size_t n = 0;
    if (kproc_list(r->o.st, &list, &n) != LLMOS_OK) {
        fprintf(f, "error: %s\n", llmos_errmsg());
        return;
    }
    if (n == 0)
        fprintf(f, "no processes yet: the first message starts this shell's process\n");
    else
        fprintf(f, "  %6s  %-13s  %-20s  %8s  %5s  %s\n", "PID", "STATE", "MODEL", "TOKENS",
                "CALLS", "REASON");
    for (size_t i = 0; i < n; i++) {
        const kproc_info *p = &list[i];
        fprintf(f, "%c %6" PRId64 "  %-13s  %-20.20s  %8" PRId64 "  %5" PRId64 "  %s\n",
                p->pid == r->pid ? '*' : ' ', p->pid, kproc_state_name(p->state), p->model,
                p->used.tokens, p->used.tool_calls, p->reason);
    }
    if (r->pid)
        fprintf(f, "(* this shell's process)\n");
    free(list);
}

static void cmd_ps(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    if (r->o.st) {
        ps_store(r);
        return;
    }
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
    if (r->o.st) {
        store_stats st;
        if (store_get_stats(r->o.st, &st) != LLMOS_OK) {
            fprintf(out_of(r), "error: %s\n", llmos_errmsg());
            return;
        }
        fprintf(out_of(r),
                "your encrypted store: %" PRId64 " messages, %" PRId64
                " archival memories, %" PRId64 " core blocks, %" PRId64 " settings, %" PRId64
                " audit records; %" PRId64 " bytes on disk (+%" PRId64 " in the WAL)\n",
                st.messages, st.archival, st.core_blocks, st.settings, st.audit_records,
                st.db_bytes, st.wal_bytes);
        return;
    }
    fprintf(out_of(r), "your memory lives in the encrypted store; from the command line:\n"
                       "  llmos memory add TEXT...      remember a text\n"
                       "  llmos memory search QUERY...  find the nearest memories\n"
                       "  llmos memory stats            what the store holds\n");
}

#define REPL_AUDIT_SHOWN 10

typedef struct audit_tail {
    char *line[REPL_AUDIT_SHOWN];
    size_t n; /* records seen */
} audit_tail;

static bool audit_keep(const store_audit_record *rec, void *ctx)
{
    audit_tail *t = ctx;
    char **slot = &t->line[t->n % REPL_AUDIT_SHOWN];
    free(*slot);
    size_t size = strlen(rec->payload) + strlen(rec->kind) + 64;
    *slot = malloc(size);
    if (*slot)
        snprintf(*slot, size, "%6" PRId64 "  %-10s  %s", rec->seq, rec->kind, rec->payload);
    t->n++;
    return true;
}

static void audit_store(repl *r)
{
    FILE *f = out_of(r);
    audit_tail t = {0};
    if (store_audit_iterate(r->o.st, 1, audit_keep, &t) != LLMOS_OK)
        fprintf(f, "error: %s\n", llmos_errmsg());
    size_t first = t.n > REPL_AUDIT_SHOWN ? t.n - REPL_AUDIT_SHOWN : 0;
    fprintf(f, "the last %zu of %zu audit records:\n", t.n - first, t.n);
    for (size_t i = first; i < t.n; i++) {
        const char *s = t.line[i % REPL_AUDIT_SHOWN];
        fprintf(f, "%s\n", s ? s : "(no memory)");
    }
    for (size_t i = 0; i < REPL_AUDIT_SHOWN; i++)
        free(t.line[i]);
    audit_verdict v;
    if (audit_verify(r->o.st, &v) != LLMOS_OK)
        fprintf(f, "error: %s\n", llmos_errmsg());
    else if (v.ok)
        fprintf(f, "audit log intact: %" PRId64 " records, hash chain verified\n", v.records);
    else
        fprintf(f, "audit log TAMPERED: first bad record %" PRId64 ": %s\n", v.bad_seq, v.reason);
}

static void cmd_audit(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    if (r->o.st) {
        audit_store(r);
        return;
    }
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

/* Show what happened in the process from context message `from` on: the tool calls with their
 * results (shortened), then the answer. */
static void show_turn(repl *r, const json_t *messages, size_t from, const char *answer)
{
    FILE *f = out_of(r);
    if (r->streamed)
        fprintf(f, "\n");
    for (size_t i = from; i < json_array_size(messages); i++) {
        const json_t *m = json_array_get(messages, i);
        const char *role = ljson_get_string(m, "role", "");
        const json_t *calls = json_object_get(m, "tool_calls");
        for (size_t j = 0; strcmp(role, "assistant") == 0 && j < json_array_size(calls); j++) {
            const json_t *fn = json_object_get(json_array_get(calls, j), "function");
            fprintf(f, "[tool call] %s %s\n", ljson_get_string(fn, "name", "?"),
                    ljson_get_string(fn, "arguments", "{}"));
        }
        if (strcmp(role, "tool") == 0) {
            const char *text = ljson_get_string(m, "content", "");
            size_t len = strlen(text);
            fprintf(f, "[tool result] %.*s%s\n", (int)(len > 300 ? 300 : len), text,
                    len > 300 ? "..." : "");
        }
    }
    if (!r->streamed)
        fprintf(f, "%s\n", answer);
    fflush(f);
}

static llmos_err kernel_turn(repl *r, const char *line)
{
    FILE *f = out_of(r);
    kernel *k = r->o.kern;
    llmos_err err = LLMOS_OK;
    if (r->pid) {
        err = kernel_send(k, r->pid, line);
        if (err == LLMOS_ERR_INVALID) {
            fprintf(f, "(%s; starting a new process)\n", llmos_errmsg());
            r->pid = 0;
            err = LLMOS_OK;
        }
    }
    uint32_t caps = r->o.caps ? r->o.caps : (KCAP_COMPUTE | KCAP_MESSAGE);
    if (!err && !r->pid)
        err = kernel_spawn(k, line, caps, r->o.budget, &r->pid);
    json_t *before = NULL;
    if (!err)
        err = kernel_context(k, r->pid, &before);
    size_t from = json_array_size(before);
    json_decref(before);
    kproc_state final = KPROC_FAILED;
    atomic_store(&r->cancel, false);
    repl_sigint = 0;
    r->streamed = false;
    if (!err)
        err = kernel_run(k, r->pid, &final);
    bool cancelled = atomic_load(&r->cancel);
    atomic_store(&r->cancel, false);
    if (err) {
        fprintf(f, "error: %s\n", llmos_errmsg());
        return LLMOS_OK;
    }
    json_t *after = NULL;
    char *answer = NULL;
    if (kernel_context(k, r->pid, &after) == LLMOS_OK &&
        kernel_answer(k, r->pid, &answer) == LLMOS_OK)
        show_turn(r, after, from, final == KPROC_DONE ? answer : "");
    else
        fprintf(f, "error: %s\n", llmos_errmsg());
    json_decref(after);
    free(answer);
    if (cancelled)
        fprintf(f, "[cancelled]\n");
    if (final != KPROC_DONE) {
        kproc_info info;
        if (kproc_get(r->o.st, r->pid, &info) == LLMOS_OK)
            fprintf(f, "[process %" PRId64 " ended: %s: %s]\n", r->pid, kproc_state_name(final),
                    info.reason);
    }
    fflush(f);
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
    else if (r->o.kern)
        err = kernel_turn(r, copy);
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
    if (r->o.kern)
        fprintf(f, "Each message runs through the kernel: the model may call tools, every call "
                   "is checked and audited (/ps, /audit).\n");
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
