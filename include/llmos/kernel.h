/*
 * llmos/kernel.h - the kernel: sessions (the one interface every device uses), processes
 * (agent runs), system calls (tool calls), the scheduler in front of the model and the agent
 * loop.
 *
 *   kernel    one per running llmos: the store, the model backends (a privileged one that
 *             calls tools and a quarantined one that reads untrusted text), the flow policy,
 *             the tool table, the audit log, and the scheduler that gives the model to one
 *             request at a time, fairly between principals.
 *   session   what a device (the shell, the HTTP API, later the web UI and voice) holds for an
 *             authenticated principal: its rights (which kernel services it may use), the
 *             capabilities of the processes it starts, budgets and rate limits. A device
 *             never calls a model, the store or a tool directly; every request goes through
 *             a session function, so it is authorized, scheduled and audited the same way.
 *   process   an agent run for a principal: pid, capability set, budgets, state and
 *             conversation, kept in the user's encrypted store (through llmos/memory.h) and
 *             resumed after a restart.
 *   syscall   a tool call: capability check -> argument schema validation -> handle
 *             substitution and flow-policy check -> execution -> result labelled with its
 *             origin. Every step that refuses, and every call, is audited.
 *   loop      the privileged context -> the model (tools offered) -> the calls -> their
 *             results as role "tool" messages -> until the model answers without a tool call
 *             or a budget ends. The device receives it all as a stream of events.
 *
 * The privileged context is a kctx: it only accepts trusted_text (llmos/security.h), so
 * untrusted tool output enters it as a handle. docs/kernel.md draws the pieces.
 *
 * Threads: a kernel and its sessions may be used from many threads at once (the HTTP server's
 * connections); the kernel serialises store access under one lock and model access through
 * its scheduler.
 */
#ifndef LLMOS_KERNEL_H
#define LLMOS_KERNEL_H
#include <jansson.h>
#include <stdatomic.h>
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
    KCAP_MEMORY = 1u << 5,     /* read and edit its principal's memory (core, recall, archival) */
} kcap;
#define KCAP_ALL 0x3Fu

/* "compute,message" -> bits; LLMOS_ERR_INVALID naming an unknown capability. */
LLMOS_API LLMOS_NODISCARD llmos_err kcap_parse(const char *list, uint32_t *out);
/* Bits -> "compute,message" into out ("-" for none). */
LLMOS_API void kcap_format(uint32_t caps, char *out, size_t size);

/* ---- rights: which kernel services a session may use ------------------------------------- */
typedef enum kright {
    KRIGHT_CHAT = 1u << 0,    /* answers from the model (the OpenAI-compatible endpoints) */
    KRIGHT_EMBED = 1u << 1,   /* embeddings */
    KRIGHT_PROCESS = 1u << 2, /* start, message, list, inspect and kill its own processes */
    KRIGHT_AUDIT = 1u << 3,   /* read and verify the audit log */
    KRIGHT_MEMORY = 1u << 4,  /* read and add to archival memory, store statistics */
    KRIGHT_ADMIN = 1u << 5,   /* see and kill every principal's processes */
} kright;
#define KRIGHT_ALL 0x3Fu

/* "chat,embed" -> bits ("all" for every one); LLMOS_ERR_INVALID naming an unknown right. */
LLMOS_API LLMOS_NODISCARD llmos_err kright_parse(const char *list, uint32_t *out);
/* Bits -> "chat,embed" into out ("-" for none). */
LLMOS_API void kright_format(uint32_t rights, char *out, size_t size);

/* ---- the privileged context ------------------------------------------------------------- */
/* The messages the privileged model sees (OpenAI shape). Only trusted_text goes in. */
typedef struct kctx {
    json_t *messages; /* array, owned */
} kctx;

LLMOS_API LLMOS_NODISCARD llmos_err kctx_init(kctx *c);
LLMOS_API void kctx_free(kctx *c);
/* Append a message of `role` ("system", "user", "assistant") with trusted content. */
LLMOS_API LLMOS_NODISCARD llmos_err kctx_append(kctx *c, const char *role, trusted_text content);
/* Append the result of tool call `call_id` (role "tool"). */
LLMOS_API LLMOS_NODISCARD llmos_err kctx_append_tool(kctx *c, const char *call_id,
                                                     trusted_text content);
/* Append an assistant turn with its tool calls (the model's own words: trusted, since the
 * model saw only trusted text). */
LLMOS_API LLMOS_NODISCARD llmos_err kctx_append_calls(kctx *c, trusted_text content,
                                                      const llm_tool_call *calls, size_t n);

/* ---- tools -------------------------------------------------------------------------------- */
/* What a tool sees when it runs: its arguments (validated against its schema, handles already
 * replaced by their values where the flow policy allowed it), who runs it, and where its result
 * goes. Nothing else of the kernel: the services it may use are the ktool_* functions below,
 * which take the env. */
typedef struct ktool_env {
    const json_t *args;    /* the arguments object */
    int64_t pid;           /* the calling process; 0 when the user called the tool directly */
    const char *principal; /* on whose behalf */
    llmos_buf *out;        /* the result text (a tool appends to it) */
    bool untrusted_args;   /* an argument carries an untrusted value (a handle replaced) */
    void *host;            /* the kernel's, for the ktool_* services; opaque to tools */
} ktool_env;

/* A tool: one descriptor per tool file (src/tools/), one line in the kernel's table. An error
 * return is reported to the model as the call's result ("error: ..."). */
typedef struct ktool {
    const char *name;
    const char *description;
    const char *parameters; /* JSON Schema text of the arguments object */
    uint32_t capability;    /* one KCAP_ bit */
    bool output_trusted;    /* true: origin TOOL; false: UNTRUSTED (quarantined as a handle) */
    bool takes_handles;     /* true: arguments are passed as written, handles unresolved
                               (ask_quarantined); false: handles are substituted first */
    llmos_err (*run)(const ktool_env *env);
    /* NULL: it can always run; else LLMOS_OK, or why it cannot run on this machine (python
     * and shell where the kernel refuses the sandbox its namespaces): such a tool is neither
     * offered to the model nor listed by ksession_tools, and a call of it is refused. */
    llmos_err (*available)(void);
} ktool;

/* Service for tools: deliver `text` to `recipient` (the device shows it; send_message). */
LLMOS_API void ktool_deliver(const ktool_env *env, const char *recipient, const char *text);
/* Service for tools: ask the quarantined model `question` about the value under `handle`;
 * the answer is kept under a new handle written to handle_out[0..size). A failure of the
 * quarantined model is itself an untrusted value (its message may quote the data it was sent):
 * it is kept under a handle too and the error returned names only that handle. */
LLMOS_API LLMOS_NODISCARD llmos_err ktool_ask_quarantined(const ktool_env *env, const char *handle,
                                                          const char *question, char *handle_out,
                                                          size_t size);

/* Services for the memory tools, on the calling principal's memory (llmos/memory.h's calls,
 * under the kernel's lock); each appends what the model should read to env->out. An archival
 * passage stored from untrusted arguments stays untrusted: a search gives it back as a new
 * handle of the calling process, never as text. */
LLMOS_API LLMOS_NODISCARD llmos_err ktool_core_append(const ktool_env *env, const char *label,
                                                      const char *text);
LLMOS_API LLMOS_NODISCARD llmos_err ktool_core_replace(const ktool_env *env, const char *label,
                                                       const char *old, const char *text);
LLMOS_API LLMOS_NODISCARD llmos_err ktool_recall_search(const ktool_env *env, const char *query,
                                                        int64_t since, int64_t until, size_t page);
LLMOS_API LLMOS_NODISCARD llmos_err ktool_archival_insert(const ktool_env *env, const char *text);
LLMOS_API LLMOS_NODISCARD llmos_err ktool_archival_search(const ktool_env *env, const char *query,
                                                          size_t page);

/* Services for the workspace tools (python, shell, files): the calling process's workspace,
 * <kernel_config.workspace_dir>/<principal>/<pid> ("user" for pid 0, a call by the user),
 * created mode 0700 with its parents when missing, its path written to out[0..size);
 * LLMOS_ERR_UNSUPPORTED when the kernel has no workspace_dir. Each process has its own, so one
 * process never sees another's files. */
LLMOS_API LLMOS_NODISCARD llmos_err ktool_workspace(const ktool_env *env, char *out, size_t size);
/* An audit record of `kind` ("sandbox", ...) for the calling process: pid and principal are
 * added to payload (stolen). */
LLMOS_API LLMOS_NODISCARD llmos_err ktool_audit(const ktool_env *env, const char *kind,
                                                json_t *payload_stolen);

/* Results of one page of a memory search shown to the model. */
#define KTOOL_MEMORY_PAGE 5

/* The kernel's own table (calculator, send_message, ask_quarantined, ...); *n gets its size. */
LLMOS_API const ktool *const *ktool_builtin(size_t *n);

/* ---- processes ---------------------------------------------------------------------------- */
typedef enum kproc_state {
    KPROC_RUNNING,
    KPROC_WAITING,       /* has a message it has not answered yet (or was paused in a turn) */
    KPROC_DONE,          /* answered its last message; takes more */
    KPROC_KILLED,        /* llmos kill */
    KPROC_FAILED,        /* the backend or the store failed */
    KPROC_OUT_OF_TOKENS, /* token budget spent */
    KPROC_OUT_OF_CALLS,  /* tool-call budget spent */
    KPROC_OUT_OF_TIME,   /* wall-time budget spent */
    KPROC_IDLE,          /* created, no message yet */
} kproc_state;
LLMOS_API const char *kproc_state_name(kproc_state s);
/* True for the states in which a process takes no more messages (killed, failed, out of a
 * budget) and for DONE (it has answered); false for RUNNING, WAITING, IDLE. */
LLMOS_API bool kproc_state_final(kproc_state s);

typedef struct kbudget {
    int64_t tokens;     /* prompt + completion tokens over all model calls; 0 = unlimited */
    int64_t tool_calls; /* system calls; 0 = unlimited */
    double wall_s;      /* seconds of running; 0 = unlimited */
} kbudget;

/* The defaults for one message (a turn) when a session names none: 16 tool calls, 8192 tokens,
 * 300 s. A turn that reaches one ends with a notice and the process takes the next message. */
#define KTURN_DEFAULT_TOOL_CALLS 16
#define KTURN_DEFAULT_TOKENS     8192
#define KTURN_DEFAULT_WALL_S     300.0

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
typedef struct kernel kernel;
typedef struct kproc kproc;

typedef struct kernel_config {
    store *st;                /* the user's store (borrowed; required) */
    llm_backend *privileged;  /* the model that calls tools (borrowed; may be NULL for a kernel
                                 that only lists, kills and audits: model calls then fail) */
    llm_backend *quarantined; /* the model that reads untrusted content (borrowed; may be
                                 NULL: ask_quarantined then fails with a clear error) */
    const policy *flow;       /* NULL = policy_load(config_dir) */
    const char *config_dir;   /* the user's config folder (policy.json); NULL = built-in policy */
    const ktool *extra_tools; /* more tools (tests, plug-ins), n_extra_tools of them; one
                                 named like a built-in tool takes its place (a test double) */
    size_t n_extra_tools;
    const char *system_prompt;      /* NULL = a short built-in one */
    int32_t max_tokens_per_turn;    /* per model call; 0 = 512 */
    const sampler_params *sampling; /* for the privileged model; NULL = llm_request_default's */
    size_t max_queue;          /* model requests that may wait; 0 = 64 (more: LLMOS_ERR_BUSY) */
    size_t model_slots;        /* model calls that run at once (batched); 0 = what the privileged
                                  backend can run concurrently (llm_max_concurrent) */
    const struct guard *guard; /* the output guard (llmos/guard.h); NULL = guard_load(config_dir),
                                  or the built-in policy without a config folder */
    bool no_guard;             /* true: no output guard at all */
    bool keep_kv;       /* a session's KV cache is kept in the store when it closes and given back
                           to the backend when a session of the same principal opens (a store on
                           disk; docs/kernel.md "Context switches") */
    llm_backend *judge; /* the guard's judge model when its policy asks for one (borrowed);
                           NULL = the quarantined model */
    const char *workspace_dir; /* where processes' workspaces are made (ktool_workspace);
                                  borrowed; NULL: the python, shell and files tools fail */
} kernel_config;

/* Make a kernel over a store and backends. Audits a "model.load" record for each backend. */
LLMOS_API LLMOS_NODISCARD llmos_err kernel_new(const kernel_config *cfg, kernel **out);
/* Stops the kill watcher; every session must be closed first. NULL is a no-op. */
LLMOS_API void kernel_free(kernel *k);

/* What the scheduler is doing (for /health and tests). */
typedef struct ksched_stats {
    bool busy;           /* every slot of the model is taken */
    size_t running;      /* model calls running now (one batch) */
    size_t slots;        /* model calls that may run at once */
    size_t waiting;      /* requests waiting for a slot */
    uint64_t served;     /* requests that got the model */
    uint64_t rejected;   /* refused because the queue was full */
    uint64_t throttled;  /* held back or refused by a tokens-per-minute limit */
    uint64_t tokens;     /* prompt and completion tokens of every finished model call */
    double tokens_per_s; /* of the last minute */
    /* the engine's own batching, when the privileged backend batches (engine true) */
    bool engine;
    size_t batch;           /* sequences in its latest forward pass */
    uint64_t steps;         /* forward passes */
    uint64_t cached_tokens; /* prompt tokens reused from the prefix cache */
    uint64_t swaps_out;     /* sequences swapped out of the KV pool */
    size_t kv_used;         /* bytes of the KV pool in use */
    size_t kv_budget;       /* and its budget */
    const char *model;      /* the privileged model's name, "" without one */
    size_t context_size;    /* its context window in tokens, 0 without one */
} ksched_stats;
LLMOS_API ksched_stats kernel_sched_stats(kernel *k);

/* ---- sessions ---------------------------------------------------------------------------- */
typedef struct ksession ksession;

#define KSCHED_PRIORITY_MAX 9 /* each step of priority doubles a principal's share */

typedef struct klimits {
    int concurrent;            /* requests and turns in flight at once; 0 = unlimited */
    int requests_per_minute;   /* 0 = unlimited */
    int32_t max_tokens;        /* largest answer a chat request may ask for; 0 = no cap */
    int64_t tokens_per_minute; /* prompt and completion tokens a minute; 0 = unlimited */
    int priority;              /* 0 (default) to KSCHED_PRIORITY_MAX */
} klimits;

typedef struct ksession_params {
    const char *principal; /* who (required): a user name or an API key's principal */
    const char *device;    /* "shell", "http", "cli", ...: in the audit's login record */
    uint32_t rights;       /* KRIGHT_ bits */
    uint32_t caps;         /* KCAP_ bits of the processes it starts (at most these) */
    kbudget budget;        /* per process, all turns; zero fields = unlimited */
    kbudget turn;          /* per message; zero fields = the KTURN_DEFAULT_* values */
    klimits limits;
    bool audit_content; /* chat audit records carry the messages' text (else metadata) */
} ksession_params;

/* Open a session on k for p->principal; audits a "login" record. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_open(kernel *k, const ksession_params *p,
                                                  ksession **out);
/* NULL is a no-op. Processes it started stay in the store. */
LLMOS_API void ksession_close(ksession *s);
LLMOS_API const char *ksession_principal(const ksession *s);

/* The model the session talks to. */
typedef struct kmodel_info {
    const char *name; /* "" without a model */
    const char *kind; /* "local", "remote", a test double's name, or "" */
    size_t context_size;
    bool has_quarantine; /* a quarantined model is configured */
} kmodel_info;
LLMOS_API kmodel_info ksession_model(ksession *s);

/* Events of a turn, in the order they happen. Pointers are valid during the callback only. */
typedef enum kevent_kind {
    KEVENT_TEXT,        /* a piece of the answer as it is generated (text, len) */
    KEVENT_TOOL_CALL,   /* the model called a tool (name, call_id, arguments) */
    KEVENT_TOOL_RESULT, /* what the model got back (name, call_id, text, origin, is_error) */
    KEVENT_MESSAGE,     /* a tool delivered a message to the user (name = recipient, text) */
    KEVENT_NOTICE,      /* the kernel says something about the turn (a budget, a kill) */
    KEVENT_END,         /* the turn is over (state, text = reason, used) */
} kevent_kind;

typedef struct kevent {
    kevent_kind kind;
    int64_t pid;
    const char *text; /* see the kinds; NUL-terminated, len bytes */
    size_t len;
    const char *name;      /* tool name, or the recipient of a message */
    const char *call_id;   /* tool call id */
    const char *arguments; /* JSON text of a call's arguments, as the model wrote them */
    const char *origin;    /* TOOL_RESULT: "tool" (trusted text), "untrusted" (the model got a
                              handle), "system" (the kernel refused or failed the call) */
    bool is_error;
    kproc_state state; /* END: the process's state after the turn */
    kbudget used;      /* END: what the process has used, all turns */
} kevent;

/* Receives a turn's events. Returning false cancels the turn (like the cancel flag). */
typedef bool (*kevent_fn)(void *ctx, const kevent *ev);

LLMOS_API const char *kevent_kind_name(kevent_kind k);

/* Start a process for the session's principal with capabilities caps (0 = the session's;
 * more than the session's is LLMOS_ERR_DENIED) in state IDLE. Needs KRIGHT_PROCESS. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_spawn(ksession *s, uint32_t caps, int64_t *pid);
/* Give process pid one message and run the turn: the model, its tool calls as system calls,
 * until it answers or a budget ends; events go to fn (may be NULL). cancel (may be NULL), when
 * set from another thread or a signal handler, stops the turn (the process ends the turn DONE
 * "cancelled by the user", keeping what was said). *final (may be NULL) receives the state.
 * LLMOS_ERR_INVALID when the process takes no more messages (killed, failed, out of budget);
 * the model's failures end the process FAILED with a reason, they are not errors of this call. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_send(ksession *s, int64_t pid, const char *message,
                                                  kevent_fn fn, void *ctx,
                                                  const atomic_bool *cancel, kproc_state *final);
/* Run (or resume after a restart) a process that is WAITING, as ksession_send does after
 * adding the message. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_resume(ksession *s, int64_t pid, kevent_fn fn,
                                                    void *ctx, const atomic_bool *cancel,
                                                    kproc_state *final);
/* Kill process pid: it is marked KILLED in the store (a loop running it in this or another
 * llmos process stops within 200 ms) and audited. Its own processes, or any with KRIGHT_ADMIN.
 * LLMOS_ERR_NOT_FOUND for an unknown pid (or another principal's); LLMOS_ERR_INVALID when it
 * has already ended. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_kill(ksession *s, int64_t pid);
/* Processes, oldest first: the session's own, or all with KRIGHT_ADMIN. *out malloc'd (caller
 * frees), NULL when none. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_ps(ksession *s, kproc_info **out, size_t *n);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_proc(ksession *s, int64_t pid, kproc_info *out);
/* The privileged context of a process (new reference; caller decrefs). */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_context(ksession *s, int64_t pid, json_t **out);
/* The last answer of a process (malloc'd, caller frees), "" when none. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_answer(ksession *s, int64_t pid, char **out);

/* Call a tool directly as the user (the shell's /calc): the same checks as a model's call
 * against the session's capabilities, audited with pid 0. *result (caller frees with
 * buf_free) gets the result text; *is_error says whether it is a refusal or failure. An
 * untrusted result is shown as its handle, never as text. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_tool(ksession *s, const char *tool,
                                                  const char *arguments, llmos_buf *result,
                                                  bool *is_error);
/* The tools the session's processes may call: their capability is the session's, and they can
 * run here (ktool.available); borrowed descriptors, *list malloc'd. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_tools(ksession *s, const ktool ***list, size_t *n);

/* One answer from the model for a request the device built (the OpenAI-compatible API): the
 * client's messages and tools, tool calls returned to the client, not run. Needs KRIGHT_CHAT;
 * counts against the session's limits; waits its turn for the model (while it waits, stream
 * is called every 100 ms with len 0: returning false gives up with LLMOS_ERR_CANCELLED);
 * audited ("chat": principal, tokens, finish; the messages only with audit_content). A full
 * queue is LLMOS_ERR_BUSY, a rate limit LLMOS_ERR_LIMIT naming when to retry. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_chat(ksession *s, const llm_request *req,
                                                  llm_stream_fn stream, void *stream_ctx,
                                                  llm_response *resp);
/* After a session function failed with LLMOS_ERR_LIMIT on this thread: true when the session's
 * own limits refused the request (requests at once, requests or tokens per minute), as opposed to a
 * limit of the model (a prompt longer than its context). *retry_after_s (may be NULL) gets the
 * seconds until a retry can succeed under the per-minute limit, 0 when it waits for a request in
 * flight to end. Refused requests are not audited by the session: the device records them
 * (ksession_audit_request). */
LLMOS_API bool ksession_rate_limited(double *retry_after_s);
/* A service the device performs itself, without the model (the HTTP API's speech recognition
 * and synthesis): it needs `right` (refused and audited like every session function) and
 * counts against the session's limits (requests at once and a minute); fn runs and writes a
 * line of what it did (sizes, durations; never content) to outcome[0..size); then one
 * "service" record is audited (principal, device, what, status, outcome, seconds). Returns
 * fn's error. */
typedef llmos_err (*ksession_service_fn)(void *ctx, char *outcome, size_t size);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_service(ksession *s, uint32_t right, const char *what,
                                                     ksession_service_fn fn, void *ctx);
/* The embedding of text (malloc'd *vec of *dim floats; caller frees) and its length in tokens.
 * Needs KRIGHT_EMBED; scheduled and audited like ksession_chat. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_embed(ksession *s, const char *text, size_t len,
                                                   float **vec, size_t *dim, size_t *tokens);

/* The audit log: records with seq >= from, in order, to fn (return false to stop); the check
 * of its hash chain; a checkpoint of its head (audit_checkpoint), and the check of the log
 * against one (audit_verify_checkpoint). Need KRIGHT_AUDIT. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_audit(
    ksession *s, int64_t from, bool (*fn)(const store_audit_record *rec, void *ctx), void *ctx);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_audit_verify(ksession *s, audit_verdict *v);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_audit_checkpoint(ksession *s, llmos_buf *out);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_audit_verify_checkpoint(ksession *s,
                                                                     const char *checkpoint,
                                                                     size_t len, audit_verdict *v);
/* A "request" record (principal, device, request, outcome) for a request of the device that
 * no other session function records: reads (listing processes, the audit log, memory
 * statistics), requests refused by the session's limits, malformed requests. Needs no right:
 * it only writes who asked for what. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_audit_request(ksession *s, const char *request,
                                                           const char *outcome);
/* An "auth" record (event, account, peer, detail, device) for what the accounts of a server
 * did (llmos/auth.h: logins, failures, lockouts, logouts, passphrase changes). Needs no right:
 * it is the server's own session that writes them. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_audit_auth(ksession *s, const char *event,
                                                        const char *account, const char *peer,
                                                        const char *detail);

/* Memory (KRIGHT_MEMORY), the session principal's own: what the store holds; remember a text
 * in archival memory; one page of the memories best matching a query (free with
 * ksession_memories_free) or of the newest ones; the core blocks (free with
 * store_core_blocks_free); one page of recall (what was said) matching a query, or the newest
 * messages when the query is empty, between two times (0: unbounded; free with
 * ksession_messages_free). Pages count from 0; a page holds 1 to KMEMORY_PAGE_MAX. */
#define KMEMORY_PAGE_MAX 50 /* memory.h's MEMORY_PAGE_MAX, for devices, which see no memory.h */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_memory_stats(ksession *s, store_stats *out);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_memory_add(ksession *s, const char *text, int64_t *id);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_memory_search(ksession *s, const char *query,
                                                           size_t page, size_t page_size,
                                                           store_archival **out, size_t *n);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_memory_list(ksession *s, size_t page, size_t page_size,
                                                         store_archival **out, size_t *n);
LLMOS_API void ksession_memories_free(store_archival *a, size_t n);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_core_list(ksession *s, store_core_block **out,
                                                       size_t *n);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_recall_search(ksession *s, const char *query,
                                                           int64_t since, int64_t until,
                                                           size_t page, size_t page_size,
                                                           store_message **out, size_t *n);
LLMOS_API void ksession_messages_free(store_message *m, size_t n);
/* Free what ksession_core_list gave (devices see no storage functions). */
LLMOS_API void ksession_core_free(store_core_block *b, size_t n);

/* What ksession_memory_verify checked, as far as it got. */
typedef struct kmemory_check {
    int64_t pages;                 /* pages of the database read and authenticated */
    bool pages_ok;                 /* ...and SQLite's integrity check and the word indexes */
    audit_verdict audit;           /* the audit chain */
    store_archival_check archival; /* vectors and the vector index against the table */
} kmemory_check;

/* Check the whole store (KRIGHT_ADMIN: every principal's data): every page, SQLite's integrity
 * check and the full-text indexes (store_verify), the audit chain (audit_verify), and archival
 * vectors and the vector index against the table (store_archival_verify). The first failure is
 * the error (LLMOS_ERR_CRYPTO or LLMOS_ERR_FORMAT naming the page, record or passage); *out
 * says what passed before it. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_memory_verify(ksession *s, kmemory_check *out);

/* State a device keeps for its user in the encrypted store (the shell's history): a text
 * under `key`, namespaced by the session's device and principal. *value malloc'd (caller
 * frees); LLMOS_ERR_NOT_FOUND when there is none. No right is needed: it is the device's own. */
LLMOS_API LLMOS_NODISCARD llmos_err ksession_device_get(ksession *s, const char *key, char **value);
LLMOS_API LLMOS_NODISCARD llmos_err ksession_device_set(ksession *s, const char *key,
                                                        const char *value);

/* ---- below the sessions (the kernel's own files and its tests) ---------------------------- */
/* Run one system call for process p as the loop does: result text and whether it is an error.
 * Exposed for tests. */
LLMOS_API LLMOS_NODISCARD llmos_err kernel_syscall(kernel *k, kproc *p, const llm_tool_call *call,
                                                   llmos_buf *result, bool *is_error);
/* Load process pid from the store (kproc_free it). Exposed for tests. */
LLMOS_API LLMOS_NODISCARD llmos_err kproc_load(kernel *k, int64_t pid, kproc **out);
LLMOS_API void kproc_free(kproc *p);

#endif
