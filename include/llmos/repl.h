/*
 * llmos/repl.h - the llmos shell: a read-eval-print loop that chats with a model.
 *
 * Each line is either a slash command (/help, /quit, /tools, /calc, /model, /clear, /ps,
 * /memory, /audit) or a message to the model; the answer is streamed as it is generated and the
 * conversation is kept as OpenAI-shaped messages JSON, so the next turn sees it. Ctrl-C during
 * an answer cancels the generation and returns to the prompt; at the prompt it clears the line;
 * Ctrl-D (end of input) quits.
 *
 * With a kernel (repl_options.kern and .st) the conversation is one kernel process: the model
 * may call tools, each call a checked, audited system call; /ps, /audit and /memory read the
 * store. Without one the shell chats with the backend directly.
 *
 * Interactive mode (a terminal) edits lines with libedit and keeps a history file (mode 0600);
 * otherwise lines are read plainly from the input stream, which is how tests and pipes drive
 * the shell.
 */
#ifndef LLMOS_REPL_H
#define LLMOS_REPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "llmos/backend.h"
#include "llmos/base.h"
#include "llmos/kernel.h"

typedef struct repl_options {
    llm_backend *backend;      /* the model (borrowed; required) */
    FILE *in;                  /* NULL = stdin */
    FILE *out;                 /* NULL = stdout */
    bool interactive;          /* libedit line editing and history (needs a terminal) */
    const char *history_path;  /* history file for interactive mode; NULL = none */
    const char *system_prompt; /* first message of the conversation; NULL = none */
    int32_t max_tokens;        /* per answer; 0 = 512 */
    sampler_params sampling;
    bool handle_sigint; /* install the SIGINT handler for the run (the program does) */
    /* Kernel mode (both set): each turn runs through the kernel as one process per
     * conversation (kernel_spawn, then kernel_send), so the model can call tools as checked,
     * audited system calls; /ps, /audit and /memory show the store. The kernel must be over
     * `backend` and `store`. NULL: the shell chats with the backend directly. */
    kernel *kern;   /* borrowed */
    store *st;      /* borrowed */
    uint32_t caps;  /* capabilities of the shell's processes; 0 = compute,message */
    kbudget budget; /* per process; zero = unlimited */
} repl_options;

/* Defaults: stdin/stdout, not interactive, greedy-ish sampling, 512 tokens, no handler. */
repl_options repl_default_options(void);

typedef struct repl repl;

/* A shell over opts->backend (options copied; the strings and backend are borrowed). */
LLMOS_NODISCARD llmos_err repl_new(const repl_options *opts, repl **out);
void repl_free(repl *r);

/* Handle one input line (without its newline): run a slash command, or send it to the model
 * and stream the answer. *quit becomes true after /quit. Model failures are printed and the
 * shell goes on; an error is returned only when the shell itself cannot continue (memory). */
LLMOS_NODISCARD llmos_err repl_line(repl *r, const char *line, bool *quit);

/* The kernel process of the conversation (kernel mode), 0 before the first turn. */
int64_t repl_pid(const repl *r);

/* The conversation so far (borrowed; valid until the next repl_line or repl_free). In kernel
 * mode the conversation lives in the process (kernel_context); this array stays empty. */
const json_t *repl_messages(const repl *r);

/* Ask the current generation to stop (what the SIGINT handler does); safe from a signal
 * handler or another thread. */
void repl_cancel(repl *r);

/* Read lines until /quit or end of input, handling each with repl_line. */
LLMOS_NODISCARD llmos_err repl_run(repl *r);

#endif
