/*
 * repl.c - the llmos shell (llmos/repl.h): read a line, run a slash command or send it to the
 * conversation's kernel process, show the turn as it happens, repeat.
 *
 * The shell is a device: it holds a kernel session and nothing else (and, for /voice, a speech
 * recognizer: what is heard is handled like a typed line). Slash commands are one
 * table; adding one is one line there and one function. Cancellation: the SIGINT handler sets
 * an atomic flag that the kernel forwards to the model (ksession_send's cancel), and the event
 * callback checks it too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>

#include "llmos/json.h"
#include "llmos/repl.h"

#define REPL_RESULT_SHOWN 300 /* bytes of a tool result the shell shows */
#define REPL_AUDIT_SHOWN  10  /* audit records /audit shows */

struct repl {
    repl_options o;
    voice_recognizer *own_recognizer; /* loaded at the first /voice when none was given */
    voice_grammar *grammar;           /* the one the recognizer holds */
    json_t *history; /* the lines of history (an array of strings), loaded from the store */
    atomic_bool cancel;
    int64_t pid;        /* the conversation's process, 0 before the first message */
    bool at_line_start; /* the last thing printed ended a line */
};

/* The shell that the SIGINT handler cancels (one shell runs per process). */
static repl *volatile repl_active;
static volatile sig_atomic_t repl_sigint;

repl_options repl_default_options(void)
{
    repl_options o = {0};
    return o;
}

static FILE *out_of(const repl *r)
{
    return r->o.out ? r->o.out : stdout;
}

llmos_err repl_new(const repl_options *opts, repl **out)
{
    *out = NULL;
    if (!opts || !opts->session)
        return llmos_fail(LLMOS_ERR_INVALID, "repl_new: a kernel session is required");
    repl *r = calloc(1, sizeof *r);
    if (!r)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the shell");
    r->o = *opts;
    r->at_line_start = true;
    atomic_init(&r->cancel, false);
    *out = r;
    return LLMOS_OK;
}

void repl_free(repl *r)
{
    if (!r)
        return;
    if (repl_active == r)
        repl_active = NULL;
    json_decref(r->history);
    voice_recognizer_free(r->own_recognizer);
    voice_grammar_free(r->grammar);
    free(r);
}

int64_t repl_pid(const repl *r)
{
    return r->pid;
}

void repl_cancel(repl *r)
{
    atomic_store(&r->cancel, true);
}

/* Start a new line unless the output is at one. */
static void newline(repl *r)
{
    if (!r->at_line_start)
        fputc('\n', out_of(r));
    r->at_line_start = true;
}

/* printf that keeps track of where the line is. */
static void say(repl *r, const char *fmt, ...) LLMOS_PRINTF(2, 3);

static void say(repl *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out_of(r), fmt, ap);
    va_end(ap);
    size_t n = strlen(fmt);
    r->at_line_start = n > 0 && fmt[n - 1] == '\n';
}

/* ---- slash commands ---------------------------------------------------------------------- */

typedef struct repl_command {
    const char *name;
    const char *summary;
    void (*run)(repl *r, const char *args, bool *quit);
} repl_command;

static void cmd_help(repl *r, const char *args, bool *quit);
static void cmd_voice(repl *r, const char *args, bool *quit);

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
    r->pid = 0; /* the next message starts a new process */
    say(r, "conversation cleared: the next message starts a new process\n");
}

static void cmd_model(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    kmodel_info m = ksession_model(r->o.session);
    say(r, "model: %s (%s backend, context %zu tokens); quarantined model: %s\n", m.name, m.kind,
        m.context_size, m.has_quarantine ? "yes" : "none");
    if (r->pid)
        say(r, "conversation: process %" PRId64 "\n", r->pid);
}

static void cmd_tools(repl *r, const char *args, bool *quit)
{
    (void)quit;
    const ktool **list = NULL;
    size_t n = 0;
    if (ksession_tools(r->o.session, &list, &n) != LLMOS_OK) {
        say(r, "error: %s\n", llmos_errmsg());
        return;
    }
    if (*args) { /* one tool: what it does and its arguments */
        for (size_t i = 0; i < n; i++) {
            if (strcmp(list[i]->name, args) == 0) {
                char cap[32];
                kcap_format(list[i]->capability, cap, sizeof cap);
                say(r, "%s [%s]: %s\narguments (JSON Schema): %s\n", list[i]->name, cap,
                    list[i]->description, list[i]->parameters);
                free(list);
                return;
            }
        }
        say(r, "no tool '%.100s' among this session's (/tools lists them)\n", args);
        free(list);
        return;
    }
    say(r, "tools the model may call (system calls of the kernel: capability check, argument "
           "check, flow policy, audit):\n");
    for (size_t i = 0; i < n; i++) {
        char cap[32];
        kcap_format(list[i]->capability, cap, sizeof cap);
        say(r, "  %-16s [%s] %s\n", list[i]->name, cap, list[i]->description);
    }
    if (n == 0)
        say(r, "  none: this session's processes have no capabilities\n");
    free(list);
}

/* Run a tool as the user, with `args` as its JSON arguments. */
static void user_tool(repl *r, const char *tool, const char *args)
{
    llmos_buf res = {0};
    bool is_error = false;
    if (ksession_tool(r->o.session, tool, args, &res, &is_error) != LLMOS_OK)
        say(r, "error: %s\n", llmos_errmsg());
    else
        say(r, "%s\n", res.data ? res.data : "");
    buf_free(&res);
}

static void cmd_calc(repl *r, const char *args, bool *quit)
{
    (void)quit;
    json_t *a = json_pack("{s:s}", "expression", args);
    char *text = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (!text) {
        say(r, "error: the expression is not UTF-8 text\n");
        return;
    }
    user_tool(r, "calculator", text);
    free(text);
}

static void cmd_ps(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    kproc_info *list = NULL;
    size_t n = 0;
    if (ksession_ps(r->o.session, &list, &n) != LLMOS_OK) {
        say(r, "error: %s\n", llmos_errmsg());
        return;
    }
    if (n == 0)
        say(r, "no processes yet: the first message starts this shell's process\n");
    else
        say(r, "  %6s  %-13s  %-20s  %8s  %5s  %s\n", "PID", "STATE", "MODEL", "TOKENS", "CALLS",
            "REASON");
    for (size_t i = 0; i < n; i++) {
        const kproc_info *p = &list[i];
        say(r, "%c %6" PRId64 "  %-13s  %-20.20s  %8" PRId64 "  %5" PRId64 "  %s\n",
            p->pid == r->pid ? '*' : ' ', p->pid, kproc_state_name(p->state), p->model,
            p->used.tokens, p->used.tool_calls, p->reason);
    }
    if (r->pid)
        say(r, "(* this shell's process)\n");
    free(list);
}

static void cmd_kill(repl *r, const char *args, bool *quit)
{
    (void)quit;
    char *end = NULL;
    long long pid = strtoll(args, &end, 10);
    if (end == args || *end || pid <= 0) {
        say(r, "usage: /kill PID (see /ps)\n");
        return;
    }
    if (ksession_kill(r->o.session, pid) != LLMOS_OK)
        say(r, "error: %s\n", llmos_errmsg());
    else
        say(r, "process %lld killed\n", pid);
}

static void cmd_memory(repl *r, const char *args, bool *quit)
{
    (void)quit;
    if (*args) {
        store_message *m = NULL;
        size_t n = 0;
        if (ksession_recall_search(r->o.session, args, 0, 0, 0, 5, &m, &n) != LLMOS_OK) {
            say(r, "error: %s\n", llmos_errmsg());
            return;
        }
        if (n == 0)
            say(r, "nothing said so far matches '%s'\n", args);
        for (size_t i = 0; i < n; i++)
            say(r, "  [%s %s] %.200s\n", m[i].conversation, m[i].role, m[i].content);
        ksession_messages_free(m, n);
        return;
    }
    store_stats st;
    if (ksession_memory_stats(r->o.session, &st) != LLMOS_OK) {
        say(r, "error: %s\n", llmos_errmsg());
        return;
    }
    say(r,
        "your store: %" PRId64 " messages, %" PRId64 " archival memories, %" PRId64
        " core blocks, %" PRId64 " settings, %" PRId64 " audit records; %" PRId64
        " bytes on disk (+%" PRId64 " in the WAL)\n",
        st.messages, st.archival, st.core_blocks, st.settings, st.audit_records, st.db_bytes,
        st.wal_bytes);
    say(r, "/memory WORDS searches what was said; `llmos memory core|recall|archival` shows each "
           "level\n");
}

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

static void cmd_audit(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    audit_tail t = {0};
    if (ksession_audit(r->o.session, 1, audit_keep, &t) != LLMOS_OK)
        say(r, "error: %s\n", llmos_errmsg());
    size_t first = t.n > REPL_AUDIT_SHOWN ? t.n - REPL_AUDIT_SHOWN : 0;
    say(r, "the last %zu of %zu audit records:\n", t.n - first, t.n);
    for (size_t i = first; i < t.n; i++) {
        const char *s = t.line[i % REPL_AUDIT_SHOWN];
        say(r, "%s\n", s ? s : "(no memory)");
    }
    for (size_t i = 0; i < REPL_AUDIT_SHOWN; i++)
        free(t.line[i]);
    audit_verdict v;
    if (ksession_audit_verify(r->o.session, &v) != LLMOS_OK)
        say(r, "error: %s\n", llmos_errmsg());
    else if (v.ok)
        say(r, "audit log intact: %" PRId64 " records, hash chain verified\n", v.records);
    else
        say(r, "audit log TAMPERED: first bad record %" PRId64 ": %s\n", v.bad_seq, v.reason);
}

static const repl_command repl_commands[] = {
    {"help", "list these commands", cmd_help},
    {"quit", "leave the shell (also /exit, or Ctrl-D)", cmd_quit},
    {"exit", "leave the shell", cmd_quit},
    {"clear", "forget the conversation: the next message starts a new process", cmd_clear},
    {"model", "which model answers, its context size", cmd_model},
    {"tools", "[NAME]: the tools the model may call, or what one does", cmd_tools},
    {"calc", "EXPR: evaluate exactly with the calculator tool (/calc 2^100)", cmd_calc},
    {"ps", "your processes", cmd_ps},
    {"kill", "PID: stop a process", cmd_kill},
    {"memory", "[WORDS]: what your store holds, or search what was said", cmd_memory},
    {"audit", "the last audit records, and the check of their hash chain", cmd_audit},
    {"voice", "[command] [FILE.wav]: speak a message (or a command) into the microphone", cmd_voice},
};

/* How the commands may be said, for the voice grammar (repl_voice_grammar): lower-case words of
 * the recognizer's dictionary, '|' between the ways. */
static const voice_command repl_spoken[] = {
    {"/help", "help|show help|show the help", VOICE_ARG_NONE},
    {"/quit", "quit|exit|goodbye", VOICE_ARG_NONE},
    {"/clear", "clear|clear the conversation|start over", VOICE_ARG_NONE},
    {"/model", "model|which model", VOICE_ARG_NONE},
    {"/tools", "tools|list tools|list the tools", VOICE_ARG_NONE},
    {"/tools", "describe|describe tool|describe the tool", VOICE_ARG_TOOL},
    {"/calc", "calculate|compute", VOICE_ARG_EXPRESSION},
    {"/ps", "processes|list processes|show processes", VOICE_ARG_NONE},
    {"/kill", "kill|kill process|stop process", VOICE_ARG_NUMBER},
    {"/memory", "memory|show memory", VOICE_ARG_NONE},
    {"/audit", "audit|show the audit log", VOICE_ARG_NONE},
};

static void cmd_help(repl *r, const char *args, bool *quit)
{
    (void)args;
    (void)quit;
    say(r, "Type a message and press Enter to ask the model. Commands:\n");
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(repl_commands); i++)
        say(r, "  /%-8s %s\n", repl_commands[i].name, repl_commands[i].summary);
    say(r, "Ctrl-C stops an answer (or clears the line); Ctrl-D quits.\n");
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
        size_t d = llmos_edit_distance(name, n, c->name, strlen(c->name));
        /* a prefix also counts as close: /he -> /help */
        if (n > 0 && strncmp(c->name, name, n) == 0)
            d = 1;
        if (d < bestd) {
            bestd = d;
            best = c->name;
        }
    }
    say(r, "unknown command /%.*s.", (int)(n > 40 ? 40 : n), name);
    if (best)
        say(r, " Did you mean /%s?", best);
    say(r, " Type /help for the list.\n");
}

/* ---- a turn ------------------------------------------------------------------------------- */

/* Show one event of the turn as it happens. */
static bool on_event(void *ctx, const kevent *ev)
{
    repl *r = ctx;
    FILE *f = out_of(r);
    switch (ev->kind) {
    case KEVENT_TEXT:
        if (r->o.on_text)
            r->o.on_text(r->o.text_ctx, ev->text, ev->len);
        fwrite(ev->text, 1, ev->len, f);
        r->at_line_start = ev->len > 0 && ev->text[ev->len - 1] == '\n';
        break;
    case KEVENT_TOOL_CALL:
        newline(r);
        say(r, "[tool call] %s %s\n", ev->name, ev->arguments);
        break;
    case KEVENT_TOOL_RESULT:
        newline(r);
        say(r, "[tool result%s] %.*s%s\n", ev->is_error ? ", error" : "",
            (int)(ev->len > REPL_RESULT_SHOWN ? REPL_RESULT_SHOWN : ev->len), ev->text,
            ev->len > REPL_RESULT_SHOWN ? "..." : "");
        break;
    case KEVENT_MESSAGE:
        if (r->o.on_text && strcmp(ev->name, "user") == 0)
            r->o.on_text(r->o.text_ctx, ev->text, ev->len);
        newline(r);
        say(r, "[message to %s] %s\n", ev->name, ev->text);
        break;
    case KEVENT_NOTICE:
        newline(r);
        say(r, "[%s]\n", ev->text);
        break;
    case KEVENT_END:
        newline(r);
        if (ev->state == KPROC_DONE && strcmp(ev->text, "cancelled by the user") == 0)
            say(r, "[cancelled]\n");
        else if (ev->state != KPROC_DONE)
            say(r, "[process %" PRId64 " ended: %s: %s]\n", ev->pid, kproc_state_name(ev->state),
                ev->text);
        break;
    }
    fflush(f);
    return !atomic_load(&r->cancel);
}

static llmos_err turn(repl *r, const char *line)
{
    ksession *s = r->o.session;
    if (!utf8_valid(line, strlen(line))) {
        say(r, "error: the message is not valid UTF-8; nothing was sent\n");
        return LLMOS_OK;
    }
    if (!r->pid && ksession_spawn(s, 0, &r->pid) != LLMOS_OK) {
        say(r, "error: %s\n", llmos_errmsg());
        r->pid = 0;
        return LLMOS_OK;
    }
    atomic_store(&r->cancel, false);
    repl_sigint = 0;
    kproc_state final = KPROC_FAILED;
    llmos_err err = ksession_send(s, r->pid, line, on_event, r, &r->cancel, &final);
    if (err == LLMOS_ERR_INVALID) {
        /* the process ended (killed, out of budget): the conversation goes on in a new one */
        say(r, "(%s; starting a new process)\n", llmos_errmsg());
        r->pid = 0;
        if (ksession_spawn(s, 0, &r->pid) == LLMOS_OK)
            err = ksession_send(s, r->pid, line, on_event, r, &r->cancel, &final);
        else
            r->pid = 0;
    }
    if (err) {
        newline(r);
        say(r, "error: %s\n", llmos_errmsg());
    }
    newline(r);
    atomic_store(&r->cancel, false);
    if (r->o.on_text)
        r->o.on_text(r->o.text_ctx, NULL, 0);
    fflush(out_of(r));
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
        err = turn(r, copy);
    free(copy);
    return err;
}

/* ---- voice ------------------------------------------------------------------------------ */

llmos_err repl_voice_grammar(repl *r, voice_grammar **out)
{
    const ktool **list = NULL;
    size_t n = 0;
    llmos_err err = ksession_tools(r->o.session, &list, &n);
    if (err)
        return err;
    const char **names = calloc(n ? n : 1, sizeof *names);
    if (!names) {
        free(list);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the voice grammar");
    }
    for (size_t i = 0; i < n; i++)
        names[i] = list[i]->name;
    err = voice_grammar_new(repl_spoken, LLMOS_ARRAY_LEN(repl_spoken), names, n, out);
    free(names);
    free(list);
    return err;
}

/* The recognizer, loaded at first use, with the grammar of the commands and tools now. */
static llmos_err voice_ready(repl *r, voice_mode m, voice_recognizer **out)
{
    voice_recognizer *rec = r->o.recognizer ? r->o.recognizer : r->own_recognizer;
    llmos_err err = LLMOS_OK;
    if (!rec) {
        err = voice_recognizer_new(NULL, &r->own_recognizer);
        rec = r->own_recognizer;
    }
    if (!err && m == VOICE_GRAMMAR) {
        voice_grammar *g = NULL;
        err = repl_voice_grammar(r, &g);
        if (!err)
            err = voice_recognizer_set_grammar(rec, g);
        if (!err) {
            voice_grammar_free(r->grammar);
            r->grammar = g;
        } else {
            voice_grammar_free(g);
        }
    }
    *out = err ? NULL : rec;
    return err;
}

llmos_err repl_voice(repl *r, const voice_audio *a, voice_mode m, char **heard, bool *quit)
{
    *quit = false;
    if (heard)
        *heard = NULL;
    voice_recognizer *rec = NULL;
    llmos_err err = voice_ready(r, m, &rec);
    voice_result res = {0};
    if (!err)
        err = voice_recognize(rec, m, a, &res);
    if (err)
        return err;
    if (!res.speech)
        say(r, "(no speech heard)\n");
    else if (!*res.text)
        say(r, "(heard \"%s\": no command of the shell)\n", res.heard);
    else
        say(r, "(heard) %s\n", res.text);
    if (*res.text)
        err = repl_line(r, res.text, quit);
    if (heard) {
        *heard = res.text;
        res.text = NULL;
    }
    voice_result_free(&res);
    return err;
}

/* Push-to-talk: record from the microphone until the speaker stops (the activity detector)
 * or presses Enter, 30 seconds at most. */
static llmos_err voice_record(repl *r, voice_audio *out)
{
    memset(out, 0, sizeof *out);
    voice_mic *mic = NULL;
    llmos_err err = voice_mic_open(r->o.mic, &mic);
    if (err)
        return err;
    voice_vad *vad = NULL;
    err = voice_vad_new(NULL, VOICE_RATE, &vad);
    size_t cap = (size_t)VOICE_RATE * 30;
    out->samples = err ? NULL : malloc(cap * sizeof *out->samples);
    out->rate = VOICE_RATE;
    if (!err && !out->samples)
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory to record");
    say(r, "(listening: speak, then pause or press Enter)\n");
    fflush(out_of(r));
    FILE *in = r->o.in ? r->o.in : stdin;
    bool ended = false;
    while (!err && !ended && out->n < cap && !atomic_load(&r->cancel)) {
        size_t got = 0;
        size_t want = cap - out->n < VOICE_RATE / 10 ? cap - out->n : VOICE_RATE / 10;
        err = voice_mic_read(mic, out->samples + out->n, want, &got);
        if (!err) {
            voice_vad_feed(vad, out->samples + out->n, got, &ended);
            out->n += got;
            struct pollfd pfd = {.fd = fileno(in), .events = POLLIN};
            if (poll(&pfd, 1, 0) == 1) { /* Enter: the end */
                int c;
                while ((c = fgetc(in)) != EOF && c != '\n')
                    ;
                ended = true;
            }
        }
    }
    voice_vad_free(vad);
    voice_mic_close(mic);
    if (err)
        voice_audio_free(out);
    return err;
}

/* /voice [command] [FILE.wav] */
static void cmd_voice(repl *r, const char *args, bool *quit)
{
    voice_mode m = VOICE_DICTATION;
    if (strncmp(args, "command", 7) == 0 && (args[7] == 0 || args[7] == ' ')) {
        m = VOICE_GRAMMAR;
        args += 7;
        while (*args == ' ')
            args++;
    }
    voice_audio a = {0};
    llmos_err err = *args ? voice_wav_load(args, VOICE_RATE, &a) : voice_record(r, &a);
    if (!err)
        err = repl_voice(r, &a, m, NULL, quit);
    if (err)
        say(r, "error: %s\n", llmos_errmsg());
    voice_audio_free(&a);
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
 * ended the read (the caller shows a new prompt); *too_long when the line was longer than
 * REPL_MAX_LINE (it was read to its end and dropped). */
static char *read_line(repl *r, bool *interrupted, size_t *too_long)
{
    *interrupted = false;
    *too_long = 0;
    if (r->o.interactive) {
        repl_sigint = 0;
        char *s = readline("llmos> ");
        if (!s && repl_sigint) {
            *interrupted = true;
            repl_sigint = 0;
        }
        if (s && strlen(s) > REPL_MAX_LINE) {
            *too_long = strlen(s);
            s[0] = 0;
        }
        return s;
    }
    FILE *in = r->o.in ? r->o.in : stdin;
    llmos_buf b = {0};
    size_t seen = 0;
    for (;;) {
        int c = fgetc(in);
        if (c == EOF) {
            if (ferror(in) && errno == EINTR) {
                clearerr(in);
                *interrupted = true;
                buf_free(&b);
                return NULL;
            }
            if (seen == 0) {
                buf_free(&b);
                return NULL;
            }
            break;
        }
        if (c == '\n')
            break;
        seen++;
        if (seen > REPL_MAX_LINE) {
            buf_free(&b); /* keep reading to the end of the line, keeping nothing */
            continue;
        }
        if (buf_putc(&b, (char)c)) {
            buf_free(&b);
            return NULL;
        }
    }
    if (seen > REPL_MAX_LINE) {
        *too_long = seen;
        buf_clear(&b);
    }
    return buf_detach(&b, NULL);
}

/* ---- history, in the encrypted store ---------------------------------------------------- */

/* Give libedit the lines the store holds. */
static void history_load(repl *r)
{
    using_history();
    stifle_history(REPL_HISTORY);
    char *text = NULL;
    json_t *arr = NULL;
    if (ksession_device_get(r->o.session, "history", &text) == LLMOS_OK &&
        ljson_parse_text(text, strlen(text), "the shell's history", 2, &arr) == LLMOS_OK &&
        !json_is_array(arr)) {
        json_decref(arr);
        arr = NULL;
    }
    llmos_err_clear();
    free(text);
    r->history = arr ? arr : json_array();
    size_t i;
    json_t *v;
    json_array_foreach(r->history, i, v)
    {
        if (json_is_string(v))
            add_history(json_string_value(v));
    }
}

static void history_add(repl *r, const char *line)
{
    add_history(line);
    if (r->history && json_array_append_new(r->history, json_string(line)) == 0)
        while (json_array_size(r->history) > REPL_HISTORY)
            json_array_remove(r->history, 0);
}

static void history_save(repl *r)
{
    char *text = r->history ? json_dumps(r->history, JSON_COMPACT) : NULL;
    if (text && ksession_device_set(r->o.session, "history", text) != LLMOS_OK)
        say(r, "warning: the history could not be saved: %s\n", llmos_errmsg());
    free(text);
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
    if (r->o.interactive && r->o.history)
        history_load(r);
    kmodel_info m = ksession_model(r->o.session);
    say(r, "Model: %s. Type /help for commands, /quit or Ctrl-D to leave.\n", m.name);
    if (r->o.banner)
        say(r, "%s\n", r->o.banner);
    fflush(f);
    llmos_err err = LLMOS_OK;
    for (;;) {
        if (!r->o.interactive) {
            fprintf(f, "> ");
            fflush(f);
        }
        bool interrupted;
        size_t too_long;
        char *line = read_line(r, &interrupted, &too_long);
        if (interrupted) {
            fprintf(f, "\n");
            continue; /* Ctrl-C at the prompt: drop the line, prompt again */
        }
        if (!line) {
            fprintf(f, "\n");
            break; /* Ctrl-D */
        }
        if (too_long) {
            say(r,
                "error: that line is %zu bytes; the shell takes lines of up to %u bytes. "
                "Nothing was sent.\n",
                too_long, REPL_MAX_LINE);
            free(line);
            continue;
        }
        if (r->o.interactive && line[0])
            history_add(r, line);
        bool quit = false;
        err = repl_line(r, line, &quit);
        free(line);
        if (err || quit)
            break;
    }
    if (r->o.interactive && r->o.history)
        history_save(r);
    repl_active = NULL;
    if (r->o.handle_sigint)
        sigaction(SIGINT, &old, NULL);
    fflush(f);
    return err;
}

/* ---- secrets ------------------------------------------------------------------------------ */

llmos_err repl_read_secret(void *ctx, const char *prompt, char *out, size_t size)
{
    (void)ctx;
    if (size == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "repl_read_secret: no room");
    out[0] = 0;
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "no terminal to ask for the passphrase on; set LLMOS_PASSPHRASE");
    /* Echo off, and signals and line editing off too: Ctrl-C then arrives as a byte (0x03)
     * that this loop turns into a cancel after putting the terminal back, rather than as a
     * SIGINT that would end the program with echo still off. Erase (Backspace) and kill
     * (Ctrl-U) are done here, since the terminal's line editing is off. */
    struct termios old, quiet;
    bool have_tc = tcgetattr(fd, &old) == 0;
    if (have_tc) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ISIG | ICANON | IEXTEN);
        quiet.c_cc[VMIN] = 1;
        quiet.c_cc[VTIME] = 0;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        /* nothing to do: the read below still works */
    }
    size_t n = 0;
    char c;
    ssize_t got;
    bool cancelled = false;
    while ((got = read(fd, &c, 1)) == 1 && c != '\n' && c != '\r') {
        if (c == 0x03 || (c == 0x04 && n == 0)) { /* Ctrl-C, or Ctrl-D on an empty line */
            cancelled = true;
            break;
        }
        if (c == 0x7f || c == 0x08) { /* erase one character (a whole UTF-8 sequence) */
            while (n > 0 && (out[--n] & 0xC0) == 0x80)
                ;
            continue;
        }
        if (c == 0x15) { /* Ctrl-U: erase the line */
            n = 0;
            continue;
        }
        if (n + 1 < size)
            out[n++] = c;
    }
    int saved = errno;
    out[n] = 0;
    if (have_tc)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* ignore */
    }
    close(fd);
    if (cancelled) {
        llmos_secure_zero(out, size);
        return llmos_fail(LLMOS_ERR_CANCELLED, "no passphrase given (cancelled)");
    }
    if (got < 0)
        return llmos_fail(LLMOS_ERR_IO, "reading the passphrase: %s", strerror(saved));
    return LLMOS_OK;
}
