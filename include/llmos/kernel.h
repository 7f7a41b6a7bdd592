/*
 * llmos/kernel.h - the kernel: processes (agent runs), system calls (tool calls) and the
 * agent loop.
 *
 *   process   an agent run for a principal: pid, model name, capability set, budgets
 *             (tokens, tool calls, wall time), state and conversation. Kept in the user's
 *             encrypted store (settings "kernel.proc.<pid>" as JSON) and resumed after a
 *             restart.
 *   syscall   a tool call from the model: capability check -> argument schema validation ->
 *             handle substitution and flow-policy check -> execution -> result labelled with
 *             its origin. Every step that refuses, and every call, is audited.
 *   loop      assemble the privileged context -> llm_chat (tools offered) -> run the calls ->
 *             feed back results as role "tool" messages -> until the model answers without a
 *             tool call or a budget ends.
 *
 * The privileged context is a kctx: it only accepts trusted_text (llmos/security.h), so
 * untrusted tool output enters it as a handle. docs/kernel.md draws the pieces.
 */
#ifndef LLMOS_KERNEL_H
#define LLMOS_KERNEL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "llmos/backend.h"
#include "llmos/base.h"
#include "llmos/security.h"
#include "llmos/storage.h"

/* ---- capabilities ------------------------------------------------------------------------- */
/* A process may only make system calls whose capability is in its set. */
typedef enum kcap {
    KCAP_COMPUTE = 1u << 0,    /* pure computation (calculator) */
    KCAP_MESSAGE = 1u << 1,    /* send a message to the user or someone else */
    KCAP_READ = 1u << 2,       /* read outside content (web, mail, files): untrusted output */
    KCAP_QUARANTINE = 1u << 3, /* ask the quarantined model about a handle */
    KCAP_EXEC = 1u << 4,       /* run commands */
} kcap;
#define KCAP_ALL 0x1Fu

/* "compute,message" -> bits; LLMOS_ERR_INVALID naming an unknown capability. */
LLMOS_NODISCARD llmos_err kcap_parse(const char *list, uint32_t *out);
/* Bits -> "compute,message" into out. */
void kcap_format(uint32_t caps, char *out, size_t size);

/* ---- the privileged context ------------------------------------------------------------- */
/* The messages the privileged model sees (OpenAI shape). Only trusted_text goes in. */
typedef struct kctx {
    json_t *messages; /* array, owned */
} kctx;

LLMOS_NODISCARD llmos_err kctx_init(kctx *c);
void kctx_free(kctx *c);
/* Append a message of `role` ("system", "user", "assistant") with trusted content. */
LLMOS_NODISCARD llmos_err kctx_append(kctx *c, const char *role, trusted_text content);
/* Append the result of tool call `call_id` (role "tool"). */
LLMOS_NODISCARD llmos_err kctx_append_tool(kctx *c, const char *call_id, trusted_text content);
/* Append an assistant turn with its tool calls (the model's own words: trusted, since the
 * model saw only trusted text). */
LLMOS_NODISCARD llmos_err kctx_append_calls(kctx *c, trusted_text content,
                                            const llm_tool_call *calls, size_t n);

/* ---- tools -------------------------------------------------------------------------------- */
typedef struct kernel kernel;
typedef struct kproc kproc;

/* Run a tool with validated, substituted arguments; append the result text to out. An error
 * return is reported to the model as the call's result ("error: ..."). */
typedef llmos_err (*ktool_fn)(kernel *k, kproc *p, const json_t *args, llmos_buf *out);

typedef struct ktool {
    const char *name;
    const char *description;
    const char *parameters; /* JSON Schema text of the arguments object */
    uint32_t capability;    /* one KCAP_ bit */
    bool output_trusted;    /* true: origin TOOL; false: UNTRUSTED (quarantined as a handle) */
    ktool_fn run;
    bool takes_handles; /* true: arguments are passed as written, handles unresolved
                           (ask_quarantined); false: handles are substituted first */
} ktool;

/* The built-in table: calculator (when its engine is built in), send_message, ask_quarantined. */
const ktool *ktool_builtin(size_t *n);

/* ---- processes ---------------------------------------------------------------------------- */
typedef enum kproc_state {
    KPROC_RUNNING,
    KPROC_WAITING,       /* created or paused between runs */
    KPROC_DONE,          /* the model answered without a tool call */
    KPROC_KILLED,        /* llmos kill */
    KPROC_FAILED,        /* the backend or the store failed */
    KPROC_OUT_OF_TOKENS, /* token budget spent */
    KPROC_OUT_OF_CALLS,  /* tool-call budget spent */
    KPROC_OUT_OF_TIME,   /* wall-time budget spent */
} kproc_state;
const char *kproc_state_name(kproc_state s);
bool kproc_state_final(kproc_state s);

typedef struct kbudget {
    int64_t tokens;     /* prompt + completion tokens over all model calls; 0 = unlimited */
    int64_t tool_calls; /* system calls; 0 = unlimited */
    double wall_s;      /* seconds of running; 0 = unlimited */
} kbudget;

/* A process as the store keeps it (what `llmos ps` shows). */
typedef struct kproc_info {
    int64_t pid;
    char principal[64];
    char model[128];
    uint32_t caps;
    kbudget budget, used;
    kproc_state state;
    char reason[256]; /* why it ended, for final states */
    int64_t created_at;
} kproc_info;

/* ---- the kernel --------------------------------------------------------------------------- */
typedef void (*kernel_message_fn)(void *ctx, int64_t pid, const char *recipient, const char *text);

typedef struct kernel_config {
    store *st;                /* the user's store (borrowed; required) */
    llm_backend *privileged;  /* the model that calls tools (borrowed; required) */
    llm_backend *quarantined; /* the model that reads untrusted content (borrowed; may be
                                 NULL: ask_quarantined then fails with a clear error) */
    const policy *flow;       /* NULL = policy_load(config_dir) */
    const char *config_dir;   /* the user's config folder (policy.json); NULL = built-in policy */
    const char *principal;    /* who is logged in; NULL = "user" */
    const ktool *extra_tools; /* more tools (tests, plug-ins), n_extra_tools of them */
    size_t n_extra_tools;
    kernel_message_fn on_message; /* where send_message delivers; NULL = stdout */
    void *message_ctx;
    const char *system_prompt;   /* NULL = a short built-in one */
    int32_t max_tokens_per_turn; /* 0 = 512 */
} kernel_config;

/* Make a kernel over a store and backends. Audits a "login" record for the principal and a
 * "model.load" record for each backend. */
LLMOS_NODISCARD llmos_err kernel_new(const kernel_config *cfg, kernel **out);
void kernel_free(kernel *k);
audit *kernel_audit(kernel *k);

/* Start a process for the kernel's principal with a first user message; saved to the store
 * in state WAITING. */
LLMOS_NODISCARD llmos_err kernel_spawn(kernel *k, const char *user_message, uint32_t caps,
                                       kbudget budget, int64_t *pid);
/* Run (or resume) process `pid` until it reaches a final state or the backend fails. The
 * process is saved after every step, so a crash resumes from the last one. *final (may be
 * NULL) receives the state it ended in. Returns an error only when the kernel itself could
 * not go on (store failure); model mistakes and budgets end the process with a state. */
LLMOS_NODISCARD llmos_err kernel_run(kernel *k, int64_t pid, kproc_state *final);
/* Give process `pid`, which has answered (DONE) or waits, one more user message and set it
 * WAITING, so that the next kernel_run continues the same conversation (the shell's turns).
 * LLMOS_ERR_INVALID when it ended otherwise (killed, failed, out of budget). Audited. */
LLMOS_NODISCARD llmos_err kernel_send(kernel *k, int64_t pid, const char *user_message);
/* Where the model's words go as they are generated (fn may be NULL: nowhere), and a flag
 * that, once true, stops the model's current generation: the process then ends DONE with
 * reason "cancelled by the user", keeping what was said (the shell's Ctrl-C). Borrowed. */
void kernel_set_output(kernel *k, llm_stream_fn fn, void *ctx, const atomic_bool *cancel);
/* The last assistant answer of a process (malloc'd, caller frees), "" when none. */
LLMOS_NODISCARD llmos_err kernel_answer(kernel *k, int64_t pid, char **out);
/* The privileged context of a process (new reference; caller decrefs). */
LLMOS_NODISCARD llmos_err kernel_context(kernel *k, int64_t pid, json_t **out);
/* Run one system call for process p as the loop does (exposed for tests): result text and its
 * origin. */
LLMOS_NODISCARD llmos_err kernel_syscall(kernel *k, kproc *p, const llm_tool_call *call,
                                         llmos_buf *result, bool *is_error);

/* ---- processes in the store (no kernel needed: `llmos ps`, `llmos kill`) ----------------- */
/* All processes, oldest first; *out malloc'd (caller frees), NULL when none. */
LLMOS_NODISCARD llmos_err kproc_list(store *s, kproc_info **out, size_t *n);
LLMOS_NODISCARD llmos_err kproc_get(store *s, int64_t pid, kproc_info *out);
/* Mark process pid KILLED (a running loop stops before its next step). LLMOS_ERR_NOT_FOUND
 * for an unknown pid; LLMOS_ERR_INVALID when it has already ended. Audited when a is non-NULL. */
LLMOS_NODISCARD llmos_err kproc_kill(store *s, audit *a, int64_t pid);

/* ---- the scripted TEST backend ------------------------------------------------------------ */
/* A TEST DOUBLE of llm_backend: it answers from a script instead of a model, so that tests
 * drive the agent loop deterministically. Each step is JSON text:
 *   {"content": "...", "tool_calls": [{"name": "...", "arguments": {...}}], "tokens": N}
 * (tool_calls and tokens optional; tokens is what it reports as completion_tokens, default 1;
 * prompt_tokens is always 0). When the script runs out it repeats the last step if `repeat`,
 * else fails with LLMOS_ERR_LIMIT. Every request it receives is recorded byte for byte. */
LLMOS_NODISCARD llmos_err scripted_test_backend_new(const char *const *steps, size_t n_steps,
                                                    bool repeat, llm_backend **out);
/* Everything it was sent, all requests concatenated: the messages and tools JSON as dumped. */
const char *scripted_test_backend_sent(llm_backend *b, size_t *len);
/* Requests answered so far. */
size_t scripted_test_backend_calls(llm_backend *b);

#endif
