/*
 * kernel/kernel_internal.h - what the kernel's own files share: the kernel and session objects,
 * processes, the scheduler, the table of running processes and the audit helper. Private to
 * src/kernel/; tools see only llmos/kernel.h's ktool_env.
 *
 *   kernel.c   the kernel object, the running table and the kill watcher, the tool services
 *   sched.c    the scheduler: the model's slots shared fairly between principals, by priority
 *   session.c  sessions: rights, limits, and every device-facing function
 *   agent.c    the agent loop of one turn
 *   syscall.c  one system call
 *   process.c  processes in the store, capabilities and rights, the privileged context
 */
#ifndef LLMOS_KERNEL_INTERNAL_H
#define LLMOS_KERNEL_INTERNAL_H

#include <pthread.h>

#include "llmos/guard.h"
#include "llmos/kernel.h"

struct kproc {
    kproc_info info;
    kctx ctx;        /* the privileged context: the system prompt, then the queue of recent
                        messages (trusted text and handles only) */
    quarantine *q;   /* the process's untrusted values */
    char *summary;   /* the recursive summary of evicted messages (malloc'd), NULL when none */
    int64_t evicted; /* messages moved out of the context into recall memory */
};

/* ---- the scheduler (sched.c) -------------------------------------------------------------- */

/* A request waiting for the model. */
typedef struct ksched_waiter {
    struct ksched_waiter *next;
    struct ksched_principal *who;
    uint64_t arrival;
    bool throttle; /* over its tokens-per-minute: wait (true) or refuse (false) */
} ksched_waiter;

#define KSCHED_WINDOW_S 60 /* the tokens-per-minute window, one-second buckets */

/* What the scheduler knows of a principal: its share (from its priority), its stride-scheduling
 * pass, and the tokens it spent in the last minute. */
typedef struct ksched_principal {
    char name[64];
    uint64_t pass;   /* virtual time: advances by stride each time it is served */
    uint64_t stride; /* KSCHED_STRIDE1 >> priority */
    int priority;
    int64_t tokens_per_minute; /* 0 = unlimited */
    int64_t tokens[KSCHED_WINDOW_S];
    int64_t second[KSCHED_WINDOW_S]; /* which second each bucket counts */
    bool kv_dirty; /* a model call finished since its KV cache was last kept (kvswitch.c) */
} ksched_principal;

typedef struct ksched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ksched_waiter *head;
    size_t n_waiting, max_queue;
    size_t slots, running; /* model calls that may run at once, and that do */
    bool stopping;
    uint64_t clock, vtime, served, rejected, throttled;
    uint64_t tokens;      /* prompt and completion tokens of every finished call */
    ksched_principal all; /* the last minute's tokens of everyone together */
    ksched_principal **seen;
    size_t n_seen, cap_seen;
} ksched;

/* Should a waiter go on waiting? Called about every 100 ms while it waits. */
typedef bool (*ksched_probe)(void *ctx);

/* A request for the model. */
typedef struct ksched_ask {
    const char *principal;
    const atomic_bool *cancel; /* NULL, or set to give up */
    ksched_probe probe;        /* NULL, or asked while waiting */
    void *probe_ctx;
    bool throttle; /* over the principal's tokens per minute: wait (a process) instead of
                      refusing (a request whose client can retry) */
} ksched_ask;

void ksched_init(ksched *q, size_t max_queue, size_t slots);
void ksched_destroy(ksched *q);
/* A principal's priority (0-KSCHED_PRIORITY_MAX; each step doubles its share of the model) and
 * tokens per minute (0 = unlimited), from its keys entry; the latest call wins. */
void ksched_set_limits(ksched *q, const char *principal, int priority, int64_t tokens_per_minute);
/* Wait for one of the model's slots. LLMOS_ERR_BUSY when max_queue requests already wait;
 * LLMOS_ERR_CANCELLED when *cancel was set or probe said no while waiting; LLMOS_ERR_LIMIT when
 * the principal spent its tokens for this minute and a->throttle is false. On success the
 * caller holds a slot until ksched_release. */
LLMOS_NODISCARD llmos_err ksched_acquire(ksched *q, const ksched_ask *a);
/* Give the slot back, charging `tokens` (prompt and completion) to principal's minute. */
void ksched_release(ksched *q, const char *principal, uint64_t tokens);
/* A model call of principal finished with an answer (not cancelled): the backend's cache for
 * it changed, so it is worth keeping at the session's end. ksched_take_kv_dirty says whether
 * that happened since the last take, and clears it. */
void ksched_kv_touch(ksched *q, const char *principal);
bool ksched_take_kv_dirty(ksched *q, const char *principal);
/* Tokens of every principal in the last minute. q->mu held. */
int64_t ksched_minute_tokens(const ksched *q);
/* Seconds until principal may spend tokens again (0 when it may now). */
double ksched_retry_after(ksched *q, const char *principal);

/* ---- processes running in this llmos process (kernel.c) ----------------------------------- */

/* One running turn: the flag its model calls watch, and why it was raised. */
typedef struct krunning {
    struct krunning *next;
    int64_t pid;
    atomic_bool stop;        /* the backend's cancel flag for this turn */
    atomic_bool killed;      /* raised by a kill (here or from another llmos process) */
    const atomic_bool *user; /* the device's cancel flag (may be NULL) */
} krunning;

struct kernel {
    kernel_config cfg;
    policy *own_policy; /* when cfg.flow was NULL */
    const policy *flow;
    audit *log;
    const ktool **tools; /* builtin + extra, n_tools */
    size_t n_tools;
    pthread_mutex_t mu; /* the store, the audit chain, the running table (recursive) */
    ksched sched;
    krunning *running;
    /* the kill watcher: a thread that, while turns run, notices kills from other llmos
     * processes (the store's data version moves) and the devices' cancel flags */
    pthread_t watcher;
    bool watcher_started, watcher_stop;
    pthread_cond_t watcher_cv;
    int64_t data_version;
    guard *own_guard;   /* when cfg.guard was NULL (and the guard is on) */
    const guard *guard; /* the output guard; NULL when off (guardsvc.c) */
};

struct ksession {
    kernel *k;
    ksession_params p;
    char principal[64];
    char device[32];
    atomic_int in_flight;
    pthread_mutex_t rate_mu; /* guards the request times */
    double *recent;          /* times of the last requests_per_minute requests (a ring) */
    size_t recent_pos;
    bool opened; /* logged in: its KV cache is kept when it closes */
};

/* Context switches across restarts (kvswitch.c): keep principal's KV cache in the store when
 * its session closes, and give it back to the backend when one opens (kernel_config.keep_kv).
 * Never fail: what happened is audited ("kv.save", "kv.restore"). */
void kernel_kv_save(kernel *k, const char *principal);
void kernel_kv_restore(kernel *k, const char *principal);

/* Store access under the kernel lock. */
void kernel_lock(kernel *k);
void kernel_unlock(kernel *k);

/* Register / unregister a running turn (the watcher runs while any is registered);
 * LLMOS_ERR_BUSY when a turn of the same pid is registered already. */
LLMOS_NODISCARD llmos_err kernel_running_add(kernel *k, krunning *r);
void kernel_running_remove(kernel *k, krunning *r);
/* Raise the kill flag of pid's running turn here, if there is one. */
void kernel_running_kill(kernel *k, int64_t pid);

/* An audit record of `kind` with payload (stolen, may be NULL: then an out-of-memory error);
 * a failure to write it is logged and returned. Takes the kernel lock. */
llmos_err kernel_audit_rec(kernel *k, const char *kind, json_t *payload_stolen);

/* Processes in the store (process.c); callers hold the kernel lock. */
LLMOS_NODISCARD llmos_err kproc_save(kernel *k, const kproc *p);
LLMOS_NODISCARD llmos_err kproc_get(kernel *k, int64_t pid, kproc_info *out);
LLMOS_NODISCARD llmos_err kproc_list(kernel *k, kproc_info **out, size_t *n);
/* Mark pid KILLED in the store and audit it. */
LLMOS_NODISCARD llmos_err kproc_mark_killed(kernel *k, int64_t pid, const char *by);
/* A new process in state IDLE with the system prompt (saved). */
LLMOS_NODISCARD llmos_err kproc_create(kernel *k, const char *principal, uint32_t caps,
                                       kbudget budget, int64_t *pid);

/* Can tool t run on this machine (ktool.available)? Clears the error state when not. */
bool ktool_can_run(const ktool *t);

/* The tool named `name` in the kernel's table, or NULL. */
const ktool *kernel_find_tool(kernel *k, const char *name);

/* What a turn needs besides the process: who runs it, its limits, where events go. */
typedef struct kturn {
    ksession *s;
    kevent_fn fn;
    void *ctx;
    krunning run;
    const char *message;         /* the user message that starts the turn; NULL to resume */
    kbudget limit;               /* this turn's budget (from the session, defaults filled in) */
    kbudget used;                /* spent in this turn */
    bool events_stopped;         /* fn returned false */
    struct kguard_stream *guard; /* the answer's checked stream while the model writes */
} kturn;

/* What ktool_env.host points to: the kernel, the turn (NULL for a direct call by the user)
 * and the calling process. */
typedef struct ktool_host {
    kernel *k;
    kturn *turn;
    kproc *p;
} ktool_host;

/* One system call of process p (syscall.c); t is NULL for a call the user makes directly.
 * *origin: "tool" (trusted text), "untrusted" (a handle notice) or "system" (the kernel refused
 * the call). */
LLMOS_NODISCARD llmos_err ksyscall(kernel *k, kturn *t, kproc *p, const llm_tool_call *call,
                                   llmos_buf *result, bool *is_error, const char **origin);

/* The system prompt of a process when the kernel's config names none (agent.c). */
extern const char *const kernel_default_system_prompt;

/* Run a turn of process pid (agent.c): with t->message, the process must take messages (IDLE,
 * DONE or WAITING) and gets it first; without, it must be WAITING (or RUNNING after a crash).
 * LLMOS_ERR_BUSY when a turn of pid runs already; LLMOS_ERR_INVALID when the process takes no
 * more messages. */
LLMOS_NODISCARD llmos_err kernel_run_turn(kturn *t, int64_t pid, kproc_state *final);

/* ---- the output guard at the kernel's exits (guardsvc.c) ---------------------------------- */

/* A checked stream of answer text; where its findings are audited. */
typedef struct kguard_stream {
    kernel *k;
    guard_stream *s; /* NULL when the guard is off: kguard_stream_push passes text through */
    guard_emit_fn emit;
    void *ctx;
    int64_t pid;
    char principal[64];
    char where[48];
    char blocked_by[32]; /* the detector that blocked, "" when none */
} kguard_stream;

/* Set up k->guard from the config (kernel_new); free it (kernel_free). */
LLMOS_NODISCARD llmos_err kguard_init(kernel *k);
void kguard_free(kernel *k);
/* Check a whole text leaving at `where` ("answer", "chat"); findings audited. With the guard
 * off, out->text is a copy and out->action ALLOW. */
LLMOS_NODISCARD llmos_err kguard_text(kernel *k, const char *principal, int64_t pid,
                                      const char *where, const char *text, size_t len,
                                      guard_result *out);
/* Check the (substituted) arguments of a call to t before it runs, redacting string values in
 * place; LLMOS_ERR_DENIED with why[] when the guard blocks them. Tools of pure computation,
 * memory and the quarantine act inside the kernel and are not checked. */
LLMOS_NODISCARD llmos_err kguard_args(kernel *k, const kproc *p, const ktool *t, json_t *args,
                                      char *why, size_t why_size);
LLMOS_NODISCARD llmos_err kguard_stream_start(kernel *k, const char *principal, int64_t pid,
                                              const char *where, guard_emit_fn emit, void *ctx,
                                              kguard_stream *gs);
/* Push a piece: through the guard when on, straight to emit when off. */
static inline bool kguard_stream_push(kguard_stream *gs, const char *text, size_t len)
{
    return gs->s ? guard_stream_push(gs->s, text, len) : gs->emit(gs->ctx, text, len);
}
/* The end: release the rest; true when the guard blocked some of the text. */
bool kguard_stream_end(kguard_stream *gs);

/* Emit an event to the turn's device (agent.c). */
void kturn_emit(kturn *t, const kevent *ev);

#endif
