/*
 * session.c - kernel sessions: the one interface every device uses.
 *
 * A session stands for one authenticated principal on one device. Each of its functions first
 * checks the session's rights (an API key that may chat may not read the audit log), then its
 * limits (requests at once, requests per minute, the largest answer), then does the work
 * through the kernel: model calls wait their turn in the scheduler, store access takes the
 * kernel lock, tool calls are system calls. Every request that uses the model, changes a
 * process or adds a memory leaves an audit record; chat records hold metadata (principal,
 * tokens, finish) and the text only when the session was opened with audit_content. A refusal
 * by a right or a capability is audited too ("denied"). Reads, and requests the limits refused,
 * are recorded by the device with ksession_audit_request, so that none is recorded twice.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"
#include "llmos/memory.h"

static const char *const event_names[] = {"text",    "tool_call", "tool_result",
                                          "message", "notice",    "end"};

const char *kevent_kind_name(kevent_kind k)
{
    return (unsigned)k < LLMOS_ARRAY_LEN(event_names) ? event_names[k] : "?";
}

/* ---- open and close ---------------------------------------------------------------------- */

llmos_err ksession_open(kernel *k, const ksession_params *p, ksession **out)
{
    *out = NULL;
    if (!k || !p || !p->principal || !*p->principal)
        return llmos_fail(LLMOS_ERR_INVALID, "ksession_open needs a kernel and a principal");
    if (strlen(p->principal) >= sizeof((ksession *)0)->principal)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "principal name '%.40s...' is too long (at most 63 "
                          "bytes)",
                          p->principal);
    if (p->limits.priority < 0 || p->limits.priority > KSCHED_PRIORITY_MAX ||
        p->limits.tokens_per_minute < 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "session for '%s': priority %d is not in 0-%d or tokens per minute "
                          "%" PRId64 " is negative",
                          p->principal, p->limits.priority, KSCHED_PRIORITY_MAX,
                          p->limits.tokens_per_minute);
    ksession *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "session: no memory");
    s->k = k;
    s->p = *p;
    snprintf(s->principal, sizeof s->principal, "%s", p->principal);
    snprintf(s->device, sizeof s->device, "%s", p->device ? p->device : "unknown");
    s->p.principal = s->principal;
    s->p.device = s->device;
    atomic_init(&s->in_flight, 0);
    pthread_mutex_init(&s->rate_mu, NULL);
    if (p->limits.requests_per_minute > 0) {
        s->recent = calloc((size_t)p->limits.requests_per_minute, sizeof *s->recent);
        if (!s->recent) {
            ksession_close(s);
            return llmos_fail(LLMOS_ERR_NOMEM, "session: no memory");
        }
    }
    ksched_set_limits(&k->sched, s->principal, p->limits.priority, p->limits.tokens_per_minute);
    char rights[96], caps[96];
    kright_format(p->rights, rights, sizeof rights);
    kcap_format(p->caps, caps, sizeof caps);
    llmos_err err =
        kernel_audit_rec(k, "login",
                         json_pack("{s:s, s:s, s:s, s:s}", "principal", s->principal, "device",
                                   s->device, "rights", rights, "caps", caps));
    if (err) {
        ksession_close(s);
        return err;
    }
    s->opened = true;
    kernel_kv_restore(k, s->principal);
    *out = s;
    return LLMOS_OK;
}

void ksession_close(ksession *s)
{
    if (!s)
        return;
    assert(atomic_load(&s->in_flight) == 0);
    if (s->opened)
        kernel_kv_save(s->k, s->principal);
    pthread_mutex_destroy(&s->rate_mu);
    free(s->recent);
    free(s);
}

const char *ksession_principal(const ksession *s)
{
    return s->principal;
}

kmodel_info ksession_model(ksession *s)
{
    assert(s && s->k);
    llm_backend *b = s->k->cfg.privileged;
    kmodel_info m = {.name = b ? llm_model_name(b) : "",
                     .kind = b ? b->ops->kind : "",
                     .context_size = b ? llm_context_size(b) : 0,
                     .has_quarantine = s->k->cfg.quarantined != NULL};
    return m;
}

/* ---- rights and limits ------------------------------------------------------------------- */

/* Whether the calling thread's last session call was refused by the session's limits, and when
 * a retry may succeed (ksession_rate_limited). Per thread, as the error message is: a device
 * serves each request on one thread. Cleared by every call that checks rights or limits. */
static _Thread_local struct {
    bool refused;
    double retry_s;
} last_refusal;

bool ksession_rate_limited(double *retry_after_s)
{
    if (retry_after_s)
        *retry_after_s = last_refusal.refused ? last_refusal.retry_s : 0;
    return last_refusal.refused;
}

/* Audit a refusal: `what` was asked for and needs `needs` (a right or capabilities). */
static void audit_denied(ksession *s, const char *what, const char *needs)
{
    (void)kernel_audit_rec(s->k, "denied",
                           json_pack("{s:s, s:s, s:s, s:s}", "principal", s->principal, "device",
                                     s->device, "request", what, "needs", needs));
}

/* Does the session hold `right`? A refusal is audited and says what was asked for. */
static llmos_err need(ksession *s, uint32_t right, const char *what)
{
    assert(s && s->k);
    last_refusal.refused = false;
    if (s->p.rights & right)
        return LLMOS_OK;
    char want[32], have[96];
    kright_format(right, want, sizeof want);
    kright_format(s->p.rights, have, sizeof have);
    audit_denied(s, what, want);
    return llmos_fail(LLMOS_ERR_DENIED,
                      "permission denied: %s needs the right '%s', and '%s' has %s", what, want,
                      s->principal, have);
}

/* Take a place among the session's requests in flight and in its per-minute window. */
static llmos_err admit(ksession *s, const char *what)
{
    assert(s && s->k);
    const klimits *l = &s->p.limits;
    last_refusal.refused = false;
    int now_in = atomic_fetch_add(&s->in_flight, 1) + 1;
    if (l->concurrent > 0 && now_in > l->concurrent) {
        atomic_fetch_sub(&s->in_flight, 1);
        last_refusal.refused = true;
        last_refusal.retry_s = 0;
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "rate limit: '%s' may have %d requests at once and has that many "
                          "running; retry when one ends",
                          s->principal, l->concurrent);
    }
    if (l->requests_per_minute > 0) {
        double now = llmos_time_now();
        pthread_mutex_lock(&s->rate_mu);
        /* the ring holds the last requests_per_minute request times; the slot about to be
         * overwritten is the oldest */
        double oldest = s->recent[s->recent_pos];
        bool full = oldest > 0 && now - oldest < 60.0;
        if (!full) {
            s->recent[s->recent_pos] = now;
            s->recent_pos = (s->recent_pos + 1) % (size_t)l->requests_per_minute;
        }
        pthread_mutex_unlock(&s->rate_mu);
        if (full) {
            atomic_fetch_sub(&s->in_flight, 1);
            last_refusal.refused = true;
            last_refusal.retry_s = 60.0 - (now - oldest);
            return llmos_fail(LLMOS_ERR_LIMIT,
                              "rate limit: '%s' may make %d requests a minute; retry in %.0f s",
                              s->principal, l->requests_per_minute, last_refusal.retry_s + 0.5);
        }
    }
    (void)what;
    return LLMOS_OK;
}

static void leave(ksession *s)
{
    assert(s && s->k);
    int before = atomic_fetch_sub(&s->in_flight, 1);
    assert(before > 0);
    (void)before;
}

/* May the session see process pid (its own, or any with KRIGHT_ADMIN)? An unknown pid and
 * another principal's pid read the same, so that pids of others cannot be probed. */
static llmos_err own(ksession *s, int64_t pid, kproc_info *info)
{
    assert(s && s->k);
    kproc_info tmp;
    if (!info)
        info = &tmp;
    llmos_err err = kproc_get(s->k, pid, info);
    if (err)
        return err;
    if ((s->p.rights & KRIGHT_ADMIN) || strcmp(info->principal, s->principal) == 0)
        return LLMOS_OK;
    return llmos_fail(LLMOS_ERR_NOT_FOUND, "no process %" PRId64 " of '%s'", pid, s->principal);
}

/* ---- processes ---------------------------------------------------------------------------- */

llmos_err ksession_spawn(ksession *s, uint32_t caps, int64_t *pid)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_PROCESS, "starting a process");
    if (err)
        return err;
    if (!caps)
        caps = s->p.caps;
    if (caps & ~s->p.caps) {
        char want[96], have[96];
        kcap_format(caps & ~s->p.caps, want, sizeof want);
        kcap_format(s->p.caps, have, sizeof have);
        audit_denied(s, "starting a process", want);
        return llmos_fail(LLMOS_ERR_DENIED,
                          "permission denied: '%s' may give its processes the capabilities %s, "
                          "not %s",
                          s->principal, have, want);
    }
    return kproc_create(s->k, s->principal, caps, s->p.budget, pid);
}

static llmos_err run(ksession *s, int64_t pid, const char *message, kevent_fn fn, void *ctx,
                     const atomic_bool *cancel, kproc_state *final)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_PROCESS, "running a process");
    if (!err)
        err = own(s, pid, NULL);
    if (!err)
        err = admit(s, "a turn");
    if (err)
        return err;
    kturn t = {.s = s, .fn = fn, .ctx = ctx, .message = message, .limit = s->p.turn};
    t.run.user = cancel;
    if (t.limit.tool_calls <= 0)
        t.limit.tool_calls = KTURN_DEFAULT_TOOL_CALLS;
    if (t.limit.tokens <= 0)
        t.limit.tokens = KTURN_DEFAULT_TOKENS;
    if (t.limit.wall_s <= 0)
        t.limit.wall_s = KTURN_DEFAULT_WALL_S;
    err = kernel_run_turn(&t, pid, final);
    leave(s);
    return err;
}

llmos_err ksession_send(ksession *s, int64_t pid, const char *message, kevent_fn fn, void *ctx,
                        const atomic_bool *cancel, kproc_state *final)
{
    assert(s && s->k);
    if (!message)
        return llmos_fail(LLMOS_ERR_INVALID, "ksession_send needs a message");
    return run(s, pid, message, fn, ctx, cancel, final);
}

llmos_err ksession_resume(ksession *s, int64_t pid, kevent_fn fn, void *ctx,
                          const atomic_bool *cancel, kproc_state *final)
{
    assert(s && s->k);
    return run(s, pid, NULL, fn, ctx, cancel, final);
}

llmos_err ksession_kill(ksession *s, int64_t pid)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_PROCESS, "killing a process");
    if (!err)
        err = own(s, pid, NULL);
    if (!err)
        err = kproc_mark_killed(s->k, pid, s->principal);
    if (!err)
        kernel_running_kill(s->k, pid);
    return err;
}

llmos_err ksession_ps(ksession *s, kproc_info **out, size_t *n)
{
    assert(s && s->k);
    *out = NULL;
    *n = 0;
    llmos_err err = need(s, KRIGHT_PROCESS, "listing processes");
    if (!err)
        err = kproc_list(s->k, out, n);
    if (err || (s->p.rights & KRIGHT_ADMIN))
        return err;
    size_t kept = 0;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*out)[i].principal, s->principal) == 0)
            (*out)[kept++] = (*out)[i];
    *n = kept;
    if (!kept) {
        free(*out);
        *out = NULL;
    }
    return LLMOS_OK;
}

llmos_err ksession_proc(ksession *s, int64_t pid, kproc_info *out)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_PROCESS, "reading a process");
    return err ? err : own(s, pid, out);
}

llmos_err ksession_context(ksession *s, int64_t pid, json_t **out)
{
    assert(s && s->k);
    *out = NULL;
    llmos_err err = need(s, KRIGHT_PROCESS, "reading a process");
    if (!err)
        err = own(s, pid, NULL);
    kproc *p = NULL;
    if (!err)
        err = kproc_load(s->k, pid, &p);
    if (!err)
        *out = json_incref(p->ctx.messages);
    kproc_free(p);
    return err;
}

llmos_err ksession_answer(ksession *s, int64_t pid, char **out)
{
    assert(s && s->k);
    *out = NULL;
    json_t *msgs = NULL;
    llmos_err err = ksession_context(s, pid, &msgs);
    if (err)
        return err;
    const char *ans = "";
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(ljson_get_string(m, "role", ""), "assistant") == 0) {
            ans = ljson_get_string(m, "content", "");
            break;
        }
    }
    /* the answer leaves the kernel: through the output guard */
    guard_result r;
    err = kguard_text(s->k, s->principal, pid, "answer", ans, strlen(ans), &r);
    json_decref(msgs);
    if (err)
        return err;
    *out = r.action == GUARD_BLOCK ? strdup("[withheld by the output guard]") : r.text;
    if (r.action != GUARD_BLOCK)
        r.text = NULL;
    guard_result_free(&r);
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "no memory");
}

/* ---- tools -------------------------------------------------------------------------------- */

llmos_err ksession_tool(ksession *s, const char *tool, const char *arguments, llmos_buf *result,
                        bool *is_error)
{
    assert(s && s->k);
    *is_error = false;
    kproc p = {0};
    p.info.caps = s->p.caps;
    snprintf(p.info.principal, sizeof p.info.principal, "%s", s->principal);
    p.q = quarantine_new();
    if (!p.q)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    llmos_err err = admit(s, "a tool call");
    if (!err) {
        llm_tool_call call = {.id = "user", .name = (char *)tool, .arguments = (char *)arguments};
        const char *origin;
        err = ksyscall(s->k, NULL, &p, &call, result, is_error, &origin);
        leave(s);
    }
    quarantine_free(p.q);
    return err;
}

llmos_err ksession_tools(ksession *s, const ktool ***list, size_t *n)
{
    assert(s && s->k);
    *list = calloc(s->k->n_tools ? s->k->n_tools : 1, sizeof **list);
    *n = 0;
    if (!*list)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    for (size_t i = 0; i < s->k->n_tools; i++)
        if ((s->p.caps & s->k->tools[i]->capability) && ktool_can_run(s->k->tools[i]))
            (*list)[(*n)++] = s->k->tools[i];
    return LLMOS_OK;
}

/* ---- the model directly ------------------------------------------------------------------ */

typedef struct chat_probe {
    llm_stream_fn stream;
    void *ctx;
} chat_probe;

static bool probe_stream(void *ctx)
{
    chat_probe *cp = ctx;
    return !cp->stream || cp->stream(cp->ctx, "", 0);
}

/* A chat answer's stream through the output guard: pieces go in, what it releases goes out to
 * the device's stream; keep-alive calls (len 0) pass straight through. */
typedef struct chat_guard {
    llm_stream_fn stream;
    void *ctx;
    kguard_stream *gs;
} chat_guard;

static bool chat_emit(void *ctx, const char *text, size_t len)
{
    chat_guard *cg = ctx;
    return !cg->stream || cg->stream(cg->ctx, text, len);
}

static bool chat_stream(void *ctx, const char *text, size_t len)
{
    chat_guard *cg = ctx;
    if (len == 0)
        return chat_emit(cg, text, 0);
    return kguard_stream_push(cg->gs, text, len);
}

/* The content and tool calls of a response as the client may see them: redacted, or withheld
 * (content emptied, the call dropped) where the guard blocks. */
static llmos_err guard_response(ksession *s, llm_response *resp, bool *withheld)
{
    if (!s->k->guard)
        return LLMOS_OK;
    const char *c = resp->content ? resp->content : "";
    guard_result g;
    llmos_err err = kguard_text(s->k, s->principal, 0, "chat", c, strlen(c), &g);
    if (err)
        return err;
    char *now = g.action == GUARD_BLOCK ? strdup("") : g.text;
    if (g.action != GUARD_BLOCK)
        g.text = NULL;
    *withheld = *withheld || g.action == GUARD_BLOCK;
    guard_result_free(&g);
    if (!now)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    free(resp->content);
    resp->content = now;
    size_t w = 0;
    for (size_t i = 0; i < resp->n_tool_calls; i++) {
        llm_tool_call *tc = &resp->tool_calls[i];
        const char *a = tc->arguments ? tc->arguments : "";
        char where[96];
        snprintf(where, sizeof where, "chat:tool:%s", tc->name ? tc->name : "");
        err = kguard_text(s->k, s->principal, 0, where, a, strlen(a), &g);
        if (err)
            return err;
        bool keep = g.action != GUARD_BLOCK;
        /* a redaction inside a JSON string keeps it JSON; one that does not is withheld */
        json_t *parsed = keep && g.action == GUARD_REDACT ? json_loads(g.text, 0, NULL) : NULL;
        if (keep && g.action == GUARD_REDACT && !parsed)
            keep = false;
        json_decref(parsed);
        if (keep && g.action == GUARD_REDACT) {
            free(tc->arguments);
            tc->arguments = g.text;
            g.text = NULL;
        }
        guard_result_free(&g);
        if (keep) {
            resp->tool_calls[w++] = *tc;
        } else {
            *withheld = true;
            free(tc->id);
            free(tc->name);
            free(tc->arguments);
        }
    }
    resp->n_tool_calls = w;
    return LLMOS_OK;
}

static llm_backend *model_or_fail(ksession *s, llmos_err *err)
{
    if (!s->k->cfg.privileged)
        *err = llmos_fail(LLMOS_ERR_UNSUPPORTED, "this llmos has no model loaded");
    return s->k->cfg.privileged;
}

llmos_err ksession_chat(ksession *s, const llm_request *req, llm_stream_fn stream, void *stream_ctx,
                        llm_response *resp)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_CHAT, "a chat completion");
    llm_backend *b = err ? NULL : model_or_fail(s, &err);
    if (!err)
        err = admit(s, "a chat completion");
    if (err)
        return err;
    llm_request r = *req;
    r.cache_scope = s->principal; /* a device never chooses whose KV cache it shares */
    int32_t cap = s->p.limits.max_tokens;
    if (cap > 0 && (r.max_tokens <= 0 || r.max_tokens > cap))
        r.max_tokens = cap;
    chat_probe cp = {stream, stream_ctx};
    double t0 = llmos_time_now();
    err = ksched_acquire(&s->k->sched, &(ksched_ask){.principal = s->principal,
                                                     .cancel = r.cancel,
                                                     .probe = probe_stream,
                                                     .probe_ctx = &cp});
    bool withheld = false;
    if (!err) {
        /* the answer streams through the output guard; the content and the tool calls the
         * client gets are checked as a whole */
        kguard_stream gs;
        chat_guard cg = {stream, stream_ctx, &gs};
        err = kguard_stream_start(s->k, s->principal, 0, "chat", chat_emit, &cg, &gs);
        if (!err)
            err = llm_chat(b, &r, stream ? chat_stream : NULL, &cg, resp);
        withheld = kguard_stream_end(&gs);
        if (!err)
            err = guard_response(s, resp, &withheld);
        if (!err && resp->finish_reason && strcmp(resp->finish_reason, "cancelled") != 0)
            ksched_kv_touch(&s->k->sched, s->principal);
        ksched_release(&s->k->sched, s->principal,
                       err ? 0 : resp->prompt_tokens + resp->completion_tokens);
    } else if (err == LLMOS_ERR_LIMIT) {
        last_refusal.refused = true;
        last_refusal.retry_s = ksched_retry_after(&s->k->sched, s->principal);
    }
    if (!err && withheld)
        resp->finish_reason = "content_filter";
    leave(s);
    json_t *rec =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:f}", "principal", s->principal, "device",
                  s->device, "status", err ? llmos_strerror(err) : "ok", "finish",
                  !err && resp->finish_reason ? resp->finish_reason : "", "prompt_tokens",
                  (json_int_t)(err ? 0 : resp->prompt_tokens), "completion_tokens",
                  (json_int_t)(err ? 0 : resp->completion_tokens), "tool_calls",
                  (json_int_t)(err ? 0 : resp->n_tool_calls), "seconds", llmos_time_now() - t0);
    if (rec && s->p.audit_content) {
        if (req->messages)
            json_object_set(rec, "messages", (json_t *)req->messages);
        if (req->prompt)
            json_object_set_new(rec, "prompt", json_string(req->prompt));
        if (!err && resp->content)
            json_object_set_new(rec, "answer", json_string(resp->content));
    }
    /* the request's own error message survives the audit write */
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    (void)kernel_audit_rec(s->k, "chat", rec);
    if (err)
        llmos_fail(err, "%s", msg);
    return err;
}

llmos_err ksession_service(ksession *s, uint32_t right, const char *what, ksession_service_fn fn,
                           void *ctx)
{
    assert(s && s->k);
    assert(what && fn);
    llmos_err err = need(s, right, what);
    if (!err)
        err = admit(s, what);
    if (err)
        return err;
    char outcome[256] = "";
    double t0 = llmos_time_now();
    err = fn(ctx, outcome, sizeof outcome);
    leave(s);
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:f}", "principal", s->principal, "device",
                            s->device, "service", what, "status", err ? llmos_strerror(err) : "ok",
                            "outcome", outcome, "seconds", llmos_time_now() - t0);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    (void)kernel_audit_rec(s->k, "service", rec);
    if (err)
        llmos_fail(err, "%s", msg);
    return err;
}

llmos_err ksession_embed(ksession *s, const char *text, size_t len, float **vec, size_t *dim,
                         size_t *tokens)
{
    assert(s && s->k);
    *vec = NULL;
    *dim = 0;
    *tokens = 0;
    llmos_err err = need(s, KRIGHT_EMBED, "an embedding");
    llm_backend *b = err ? NULL : model_or_fail(s, &err);
    if (!err)
        err = admit(s, "an embedding");
    if (err)
        return err;
    err = ksched_acquire(&s->k->sched, &(ksched_ask){.principal = s->principal});
    if (err == LLMOS_ERR_LIMIT) {
        last_refusal.refused = true;
        last_refusal.retry_s = ksched_retry_after(&s->k->sched, s->principal);
    }
    if (!err) {
        err = llm_embed(b, text, len, vec, dim);
        if (!err && llm_count_tokens(b, text, len, tokens) != LLMOS_OK) {
            llmos_err_clear();
            *tokens = 0;
        }
        ksched_release(&s->k->sched, s->principal, *tokens);
    }
    leave(s);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    (void)kernel_audit_rec(s->k, "embed",
                           json_pack("{s:s, s:s, s:s, s:I}", "principal", s->principal, "device",
                                     s->device, "status", err ? llmos_strerror(err) : "ok",
                                     "tokens", (json_int_t)*tokens));
    if (err)
        llmos_fail(err, "%s", msg);
    return err;
}

/* ---- the audit log ------------------------------------------------------------------------ */

llmos_err ksession_audit_request(ksession *s, const char *request, const char *outcome)
{
    assert(s && s->k);
    assert(request && outcome);
    return kernel_audit_rec(s->k, "request",
                            json_pack("{s:s, s:s, s:s, s:s}", "principal", s->principal, "device",
                                      s->device, "request", request, "outcome", outcome));
}

llmos_err ksession_audit_auth(ksession *s, const char *event, const char *account, const char *peer,
                              const char *detail)
{
    assert(s && s->k);
    assert(event && account && peer && detail);
    return kernel_audit_rec(s->k, "auth",
                            json_pack("{s:s, s:s, s:s, s:s, s:s}", "event", event, "account",
                                      account, "peer", peer, "detail", detail, "device",
                                      s->device));
}

llmos_err ksession_audit(ksession *s, int64_t from,
                         bool (*fn)(const store_audit_record *rec, void *ctx), void *ctx)
{
    llmos_err err = need(s, KRIGHT_AUDIT, "reading the audit log");
    if (err)
        return err;
    kernel_lock(s->k);
    err = store_audit_iterate(s->k->cfg.st, from > 0 ? from : 1, fn, ctx);
    kernel_unlock(s->k);
    return err;
}

llmos_err ksession_audit_verify(ksession *s, audit_verdict *v)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_AUDIT, "verifying the audit log");
    if (err)
        return err;
    kernel_lock(s->k);
    err = audit_verify(s->k->cfg.st, v);
    kernel_unlock(s->k);
    return err;
}

llmos_err ksession_audit_checkpoint(ksession *s, llmos_buf *out)
{
    llmos_err err = need(s, KRIGHT_AUDIT, "making an audit checkpoint");
    if (err)
        return err;
    kernel_lock(s->k);
    err = audit_checkpoint(s->k->cfg.st, out);
    kernel_unlock(s->k);
    return err;
}

llmos_err ksession_audit_verify_checkpoint(ksession *s, const char *checkpoint, size_t len,
                                           audit_verdict *v)
{
    llmos_err err = need(s, KRIGHT_AUDIT, "verifying the audit log");
    if (err)
        return err;
    kernel_lock(s->k);
    err = audit_verify_checkpoint(s->k->cfg.st, checkpoint, len, v);
    kernel_unlock(s->k);
    return err;
}

/* ---- memory ------------------------------------------------------------------------------- */

llmos_err ksession_memory_stats(ksession *s, store_stats *out)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_MEMORY, "memory statistics");
    if (err)
        return err;
    kernel_lock(s->k);
    err = store_get_stats(s->k->cfg.st, out);
    kernel_unlock(s->k);
    return err;
}

llmos_err ksession_memory_add(ksession *s, const char *text, int64_t *id)
{
    assert(s && s->k);
    llmos_err err = need(s, KRIGHT_MEMORY, "adding a memory");
    if (err)
        return err;
    kernel_lock(s->k);
    err = memory_archival_insert(s->k->cfg.st, s->principal, text, false, id);
    kernel_unlock(s->k);
    if (!err)
        err = kernel_audit_rec(s->k, "memory",
                               json_pack("{s:s, s:s, s:I, s:I}", "principal", s->principal, "event",
                                         "add", "id", (json_int_t)*id, "bytes",
                                         (json_int_t)strlen(text)));
    return err;
}

llmos_err ksession_memory_search(ksession *s, const char *query, size_t page, size_t page_size,
                                 store_archival **out, size_t *n)
{
    assert(s && s->k);
    *out = NULL;
    *n = 0;
    llmos_err err = need(s, KRIGHT_MEMORY, "searching memory");
    if (err)
        return err;
    kernel_lock(s->k);
    err = memory_archival_search(s->k->cfg.st, s->principal, query, page, page_size, out, n);
    kernel_unlock(s->k);
    return err;
}

_Static_assert(KMEMORY_PAGE_MAX == MEMORY_PAGE_MAX, "the devices' page limit is memory's");

llmos_err ksession_memory_list(ksession *s, size_t page, size_t page_size, store_archival **out,
                               size_t *n)
{
    assert(s && s->k);
    *out = NULL;
    *n = 0;
    llmos_err err = need(s, KRIGHT_MEMORY, "listing memories");
    if (!err && (page_size == 0 || page_size > MEMORY_PAGE_MAX))
        err = llmos_fail(LLMOS_ERR_INVALID, "a page holds 1 to %d entries, not %zu",
                         MEMORY_PAGE_MAX, page_size);
    if (!err && page > 100000)
        err = llmos_fail(LLMOS_ERR_INVALID, "page %zu is beyond any archival memory", page);
    if (err)
        return err;
    kernel_lock(s->k);
    err = store_archival_list(s->k->cfg.st, s->principal, page * page_size, page_size, out, n);
    kernel_unlock(s->k);
    return err;
}

void ksession_memories_free(store_archival *a, size_t n)
{
    store_archivals_free(a, n);
}

llmos_err ksession_core_list(ksession *s, store_core_block **out, size_t *n)
{
    assert(s && s->k);
    *out = NULL;
    *n = 0;
    llmos_err err = need(s, KRIGHT_MEMORY, "reading core memory");
    if (err)
        return err;
    kernel_lock(s->k);
    err = memory_core_list(s->k->cfg.st, s->principal, out, n);
    kernel_unlock(s->k);
    return err;
}

llmos_err ksession_recall_search(ksession *s, const char *query, int64_t since, int64_t until,
                                 size_t page, size_t page_size, store_message **out, size_t *n)
{
    assert(s && s->k);
    *out = NULL;
    *n = 0;
    llmos_err err = need(s, KRIGHT_MEMORY, "searching recall memory");
    if (err)
        return err;
    kernel_lock(s->k);
    err = memory_recall_search(s->k->cfg.st, s->principal, query, since, until, page, page_size,
                               out, n);
    kernel_unlock(s->k);
    return err;
}

void ksession_messages_free(store_message *m, size_t n)
{
    store_messages_free(m, n);
}

void ksession_core_free(store_core_block *b, size_t n)
{
    store_core_blocks_free(b, n);
}

llmos_err ksession_memory_verify(ksession *s, kmemory_check *out)
{
    assert(s && s->k && out);
    memset(out, 0, sizeof *out);
    llmos_err err = need(s, KRIGHT_ADMIN, "verifying the whole store");
    if (err)
        return err;
    store *st = s->k->cfg.st;
    kernel_lock(s->k);
    store_stats stats = {0};
    err = store_get_stats(st, &stats);
    if (!err)
        err = store_verify(st);
    if (!err) {
        out->pages = stats.page_count;
        out->pages_ok = true;
        err = audit_verify(st, &out->audit);
    }
    if (!err && !out->audit.ok)
        err = llmos_fail(LLMOS_ERR_FORMAT, "the audit chain breaks at record %lld: %s",
                         (long long)out->audit.bad_seq, out->audit.reason);
    if (!err)
        err = store_archival_verify(st, &out->archival);
    kernel_unlock(s->k);
    return err;
}

/* ---- device state --------------------------------------------------------------------- */

static void device_key(const ksession *s, const char *key, char *out, size_t size)
{
    assert(s && s->k);
    snprintf(out, size, "device.%s.%s.%s", s->device, s->principal, key);
}

llmos_err ksession_device_get(ksession *s, const char *key, char **value)
{
    assert(s && s->k);
    char k[256];
    device_key(s, key, k, sizeof k);
    kernel_lock(s->k);
    llmos_err err = store_setting_get(s->k->cfg.st, k, value);
    kernel_unlock(s->k);
    return err;
}

llmos_err ksession_device_set(ksession *s, const char *key, const char *value)
{
    assert(s && s->k);
    char k[256];
    device_key(s, key, k, sizeof k);
    kernel_lock(s->k);
    llmos_err err = store_setting_set(s->k->cfg.st, k, value);
    kernel_unlock(s->k);
    return err;
}
