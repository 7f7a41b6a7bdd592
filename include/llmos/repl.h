/*
 * llmos/repl.h - the llmos shell, a device: a read-eval-print loop over a kernel session.
 *
 * Each line is either a slash command (/help, /quit, /tools, /calc, /model, /clear, /ps,
 * /kill, /memory, /audit, /voice) or a message. /voice is push-to-talk: speech from the
 * microphone (or a WAV file) becomes a message (dictation) or a slash command (its grammar). A conversation is one kernel process: the first
 * message starts it (ksession_spawn), each message is a turn (ksession_send), so the model's
 * tool calls are checked, audited system calls, and /calc is one too (ksession_tool). The turn
 * is shown as it happens: the answer streamed as it is generated, each tool call and its result
 * in order, messages the tools deliver, notices (a budget reached), and how the process ended
 * when it did not simply answer. Ctrl-C during a turn cancels it and returns to the prompt; at
 * the prompt it clears the line; Ctrl-D (end of input) quits.
 *
 * Interactive mode (a terminal) edits lines with libedit and keeps the last REPL_HISTORY lines
 * typed as history in the user's encrypted store (through the session: never in a plaintext
 * file); otherwise lines are read plainly from the input stream, which is how tests and pipes
 * drive the shell. A line may be up to REPL_MAX_LINE bytes; a longer one is refused whole, with a
 * message, never cut.
 */
#ifndef LLMOS_REPL_H
#define LLMOS_REPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "llmos/base.h"
#include "llmos/kernel.h"
#include "llmos/voice.h"

#define REPL_MAX_LINE (8u << 20) /* 8 MiB */
#define REPL_HISTORY  1000       /* lines of history kept */

typedef struct repl_options {
    ksession *session;  /* the kernel session (borrowed; required) */
    FILE *in;           /* NULL = stdin */
    FILE *out;          /* NULL = stdout */
    bool interactive;   /* libedit line editing and history (needs a terminal) */
    bool history;       /* interactive mode: keep the history in the session's store */
    bool handle_sigint; /* install the SIGINT handler for the run (the program does) */
    const char *banner; /* a line shown under the model's name (e.g. which store); NULL */
    /* voice (/voice, and `llmos voice`, which drives the shell by speech) */
    voice_recognizer *recognizer; /* borrowed; NULL = the shell loads one at the first /voice */
    const char *mic;              /* the ALSA capture device of /voice; NULL = "default" */
    /* the answer's text as it is generated (and what tools deliver to the user), for a device
     * that speaks it; called with NULL, 0 when a turn ends. NULL = none */
    void (*on_text)(void *ctx, const char *text, size_t len);
    void *text_ctx;
} repl_options;

/* Defaults: stdin/stdout, not interactive, no handler. */
LLMOS_API repl_options repl_default_options(void);

typedef struct repl repl;

/* A shell over opts->session (options copied; the strings and session are borrowed). */
LLMOS_API LLMOS_NODISCARD llmos_err repl_new(const repl_options *opts, repl **out);
LLMOS_API void repl_free(repl *r);

/* Handle one input line (without its newline): run a slash command, or send it to the
 * conversation's process and show the turn. *quit becomes true after /quit. Failures of the
 * model or the kernel are shown and the shell goes on; an error is returned only when the
 * shell itself cannot continue (memory). */
LLMOS_API LLMOS_NODISCARD llmos_err repl_line(repl *r, const char *line, bool *quit);

/* The kernel process of the conversation, 0 before the first message. */
LLMOS_API int64_t repl_pid(const repl *r);

/* Ask the current turn to stop (what the SIGINT handler does); safe from a signal handler or
 * another thread. */
LLMOS_API void repl_cancel(repl *r);

/* The shell's command grammar for speech: its slash commands with the ways each may be said,
 * the names of the tools the session's processes may call, numbers (voice_grammar_free it). */
LLMOS_API LLMOS_NODISCARD llmos_err repl_voice_grammar(repl *r, voice_grammar **out);

/* Hear audio a in mode m (VOICE_DICTATION: a message; VOICE_GRAMMAR: a slash command, or
 * nothing when no command was heard), show what was heard, and handle it as repl_line does a
 * typed line. Silence is shown as such and does nothing. *heard (may be NULL) gets the line
 * (malloc'd; "" when nothing). Errors as repl_line's, and a recognizer that cannot load. */
LLMOS_API LLMOS_NODISCARD llmos_err repl_voice(repl *r, const voice_audio *a, voice_mode m,
                                               char **heard, bool *quit);

/* Read lines until /quit or end of input, handling each with repl_line. */
LLMOS_API LLMOS_NODISCARD llmos_err repl_run(repl *r);

/* Ask for a secret on the terminal (/dev/tty): write `prompt`, read one line without echo into
 * out[0..size). Ctrl-C gives LLMOS_ERR_CANCELLED, and the terminal is always left as it was
 * found. No terminal: LLMOS_ERR_INVALID saying to set LLMOS_PASSPHRASE. A memory_ask_fn. */
LLMOS_API LLMOS_NODISCARD llmos_err repl_read_secret(void *ctx, const char *prompt, char *out,
                                                     size_t size);

#endif
