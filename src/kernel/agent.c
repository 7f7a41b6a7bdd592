/*
 * agent.c - the agent loop of one turn: from a user message to an answer.
 *
 *   load the process -> [killed? a budget spent? cancelled?] -> wait for the model (the
 *   scheduler) -> the model, with the tools the process may use -> no tool call: the answer,
 *   done | tool calls: each one through the system-call path, its result appended as a role
 *   "tool" message -> save -> repeat
 *
 * The privileged context holds only trusted text (kctx accepts only trusted_text): the user's
 * messages, the system prompt, the model's own turns, trusted tool results and handles of
 * untrusted values. The device sees the turn as events in the order they happen: answer text
 * as it is generated, each tool call before it runs and its result after, messages tools
 * deliver, notices, the end.
 *
 * Budgets. A process may have budgets over its whole life (tokens, tool calls, wall time):
 * spending one ends it for good (out-of-tokens, out-of-calls, out-of-time). Every turn also has
 * a budget (the session's, else KTURN_DEFAULT_*): reaching it ends the turn with a notice that
 * says which limit, and the process takes the next message; a model that keeps calling tools
 * can therefore never loop for ever.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"
#include "llmos/memory.h"

const char *const kernel_default_system_prompt =
    "You are an agent of llmos. Use the tools offered when they help. Some tool results are "
    "untrusted and you receive them as handles like $VAR1: you cannot read them, but you can "
    "pass them to tools, show them to the user with send_message, or ask_quarantined a "
    "question about them. Your memory: the core memory blocks below stay in view; everything "
    "said before is in recall memory (conversation_search); keep facts for later with "
    "archival_memory_insert. Answer the user without a tool call when you are done.";

void kturn_emit(kturn *t, const kevent *ev)
{
    assert(t && ev && ev->pid >= 0);
    /* a device that asked to stop still learns how the turn ended */
    if (!t->fn || (t->events_stopped && ev->kind != KEVENT_END))
        return;
    if (!t->fn(t->ctx, ev)) {
        t->events_stopped = true;
        atomic_store(&t->run.stop, true);
    }
}

static void emit_notice(kturn *t, int64_t pid, const char *text)
{
    kevent ev = {.kind = KEVENT_NOTICE, .pid = pid, .text = text, .len = strlen(text)};
    kturn_emit(t, &ev);
}

/* The tools process p may use, in the OpenAI shape. */
static json_t *offered_tools(kernel *k, const kproc *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < k->n_tools; i++) {
        const ktool *t = k->tools[i];
        if (!(p->info.caps & t->capability) || !ktool_can_run(t))
            continue;
        json_t *schema = NULL;
        if (ljson_parse_text(t->parameters, strlen(t->parameters), t->name, 0, &schema)) {
            LOG_ERROR("kernel", "tool %s has a bad schema, not offered: %s", t->name,
                      llmos_errmsg());
            continue;
        }
        json_array_append_new(arr, json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function",
                                             "function", "name", t->name, "description",
                                             t->description, "parameters", schema));
    }
    return arr;
}

/* ---- the context: laid out by memory's context manager, paged MemGPT style ------------- */

static llmos_err count_for(void *ctx, const json_t *messages, const json_t *tools, size_t *n)
{
    return llm_count_prompt(ctx, messages, tools, n);
}

/* The queue of p: its messages after the system prompt (a new array sharing them). */
static json_t *queue_of(const kproc *p)
{
    json_t *q = json_array();
    for (size_t i = 1; q && i < json_array_size(p->ctx.messages); i++)
        json_array_append(q, json_array_get(p->ctx.messages, i));
    return q;
}

static const char *const pressure_notice =
    "Memory pressure: this conversation fills most of your context window. Older messages will "
    "soon move out of it, into recall memory and a summary; what must stay in view belongs in "
    "core memory (core_memory_append), and facts to keep for later in archival memory "
    "(archival_memory_insert).";

/* Move the oldest messages of p out of its context: they are in recall memory already, and are
 * folded into the recursive summary, which the model writes (or the deterministic fallback
 * when the model's would not fit or the model fails). Brings the queue to `target` tokens. */
static llmos_err evict(kturn *t, kproc *p, const mctx_counter *c, size_t window, size_t target)
{
    kernel *k = t->s->k;
    json_t *queue = queue_of(p);
    size_t n = 0;
    llmos_err err =
        queue ? mpage_plan(c, NULL, queue, target, &n) : llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    json_decref(queue);
    if (err || n == 0)
        return err;
    json_t *gone = json_array();
    for (size_t i = 1; gone && i <= n; i++)
        json_array_append(gone, json_array_get(p->ctx.messages, i));
    /* the summary may take an eighth of the window */
    size_t budget = window / 8 > 16 ? window / 8 : 16;
    char *summary = NULL;
    const char *how = "model";
    json_t *req_msgs = gone ? mpage_summary_request(p->summary, gone, budget / 2) : NULL;
    llm_response resp = {0};
    llmos_err serr = req_msgs
                         ? ksched_acquire(&k->sched, &(ksched_ask){.principal = p->info.principal,
                                                                   .cancel = &t->run.stop,
                                                                   .throttle = true})
                         : LLMOS_ERR_NOMEM;
    if (!serr) {
        llm_request req = llm_request_default();
        req.cache_scope = p->info.principal; /* its prefix cache is its principal's alone */
        req.messages = req_msgs;
        req.max_tokens = (int32_t)budget;
        req.cancel = &t->run.stop;
        serr = llm_chat(k->cfg.privileged, &req, NULL, NULL, &resp);
        ksched_release(&k->sched, p->info.principal, resp.prompt_tokens + resp.completion_tokens);
        p->info.used.tokens += resp.prompt_tokens + resp.completion_tokens;
        t->used.tokens += resp.prompt_tokens + resp.completion_tokens;
    }
    json_decref(req_msgs);
    size_t summary_tokens = 0;
    if (!serr && resp.content && resp.content[0] && strcmp(resp.finish_reason, "length") != 0 &&
        llm_count_tokens(k->cfg.privileged, resp.content, strlen(resp.content), &summary_tokens) ==
            LLMOS_OK &&
        summary_tokens <= budget)
        summary = strdup(resp.content);
    llm_response_free(&resp);
    llmos_err_clear();
    if (!summary) {
        how = "fallback";
        err = gone ? mpage_summary_fallback(p->summary, gone, budget * 4, &summary)
                   : llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    json_decref(gone);
    if (err)
        return err;
    /* The summary is the privileged model's (or llmos's) words about trusted text: trusted. */
    free(p->summary);
    p->summary = summary;
    for (size_t i = 0; i < n; i++)
        json_array_remove(p->ctx.messages, 1);
    p->evicted += (int64_t)n;
    err = kproc_save(k, p);
    if (!err)
        err =
            kernel_audit_rec(k, "memory",
                             json_pack("{s:I, s:s, s:I, s:I, s:s}", "pid", (json_int_t)p->info.pid,
                                       "event", "evict", "messages", (json_int_t)n, "evicted",
                                       (json_int_t)p->evicted, "summary", how));
    char msg[200];
    snprintf(msg, sizeof msg, "%zu older messages moved to recall memory and into the summary (%s)",
             n, strcmp(how, "model") == 0 ? "written by the model" : "kept line by line");
    emit_notice(t, p->info.pid, msg);
    return err;
}

/* The principal's core memory blocks (created on first use), as [{"label", "value"}]; an empty
 * array when they cannot be read (the turn goes on; the failure is logged). */
static json_t *core_blocks(kernel *k, const kproc *p)
{
    json_t *arr = json_array();
    store_core_block *b = NULL;
    size_t n = 0;
    kernel_lock(k);
    llmos_err err = memory_core_list(k->cfg.st, p->info.principal, &b, &n);
    kernel_unlock(k);
    if (err)
        LOG_WARN("kernel", "core memory of %s could not be read: %s", p->info.principal,
                 llmos_errmsg());
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s}", "label", b[i].label, "value",
                                             b[i].value[0] ? b[i].value : "(empty)"));
    store_core_blocks_free(b, n);
    return arr;
}

/* The context for the next model call, within the window: evicted first when over the flush
 * threshold; what the manager left out told to the device once per turn. */
static llmos_err layout(kturn *t, kproc *p, const json_t *tools, int32_t want, mctx_out *out,
                        char *told, size_t told_size)
{
    kernel *k = t->s->k;
    llm_backend *b = k->cfg.privileged;
    mctx_params mp = mctx_default_params();
    mp.window = llm_context_size(b);
    mp.reserve = want > 0 ? (size_t)want : mp.reserve;
    mctx_counter c = {.count_prompt = count_for, .ctx = b};
    llmos_err err = LLMOS_OK;
    json_t *core = core_blocks(k, p);
    for (int round = 0; round < 2 && !err; round++) {
        json_t *queue = queue_of(p);
        mctx_in in = {.system = ljson_get_string(json_array_get(p->ctx.messages, 0), "content", ""),
                      .core = core,
                      .summary = p->summary,
                      .evicted = (size_t)p->evicted,
                      .queue = queue,
                      .tools = tools,
                      .pressure_notice = pressure_notice};
        err = queue ? mctx_layout(&mp, &c, &in, out) : llmos_fail(LLMOS_ERR_NOMEM, "no memory");
        size_t nq = json_array_size(queue);
        json_decref(queue);
        /* Evict when the context is over the flush threshold and the queue is a good part of
         * it (a quarter of the window): when the fixed part alone fills a small window, the
         * manager's degradation copes and eviction would only churn. The queue comes down to
         * half of what the fixed part and the answer leave. */
        size_t queue_tokens = err ? 0 : out->full_tokens - out->fixed_tokens;
        if (err || round == 1 || (double)out->full_tokens < mp.flush * (double)mp.window ||
            nq < 2 || queue_tokens < mp.window / 4)
            break;
        size_t room = mp.window > out->fixed_tokens + mp.reserve
                          ? mp.window - out->fixed_tokens - mp.reserve
                          : 0;
        size_t target = room / 2 > mp.window / 8 ? room / 2 : mp.window / 8;
        mctx_out_free(out);
        err = evict(t, p, &c, mp.window, target);
    }
    json_decref(core);
    if (!err && out->notes[0] && strcmp(out->notes, told) != 0) {
        char msg[600];
        snprintf(msg, sizeof msg, "the model's context (%zu tokens) is small: %s", mp.window,
                 out->notes);
        emit_notice(t, p->info.pid, msg);
        snprintf(told, told_size, "%s", out->notes);
    }
    return err;
}

/* End the turn of p in `state` with a reason: saved, audited when the process ended for good
 * (or answered), and told to the device. */
static llmos_err finish(kturn *t, kproc *p, kproc_state state, const char *fmt, ...)
    LLMOS_PRINTF(4, 5);

static llmos_err finish(kturn *t, kproc *p, kproc_state state, const char *fmt, ...)
{
    assert(t && p && state != KPROC_RUNNING && state != KPROC_IDLE);
    kernel *k = t->s->k;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->info.reason, sizeof p->info.reason, fmt, ap);
    va_end(ap);
    p->info.state = state;
    llmos_err err = kproc_save(k, p);
    llmos_err aerr = kernel_audit_rec(
        k, "process",
        json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:f}", "pid", (json_int_t)p->info.pid, "event",
                  "end", "state", kproc_state_name(state), "reason", p->info.reason, "tokens_used",
                  (json_int_t)p->info.used.tokens, "tool_calls_used",
                  (json_int_t)p->info.used.tool_calls, "wall_s_used", p->info.used.wall_s));
    kevent ev = {.kind = KEVENT_END,
                 .pid = p->info.pid,
                 .text = p->info.reason,
                 .len = strlen(p->info.reason),
                 .state = state,
                 .used = p->info.used};
    kturn_emit(t, &ev);
    return err ? err : aerr;
}

/* A turn's budget reached: the turn ends, the process takes the next message. */
static llmos_err turn_limit(kturn *t, kproc *p, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg,
             "stopped: %s; the model had not answered yet. Send another message to go on "
             "(the limits of one message are set with the session's turn budget).",
             what);
    emit_notice(t, p->info.pid, msg);
    return finish(t, p, KPROC_DONE, "%s", msg);
}

/* The model's words to the device, as the output guard releases them. */
static bool turn_text(void *ctx, const char *text, size_t len)
{
    kturn *t = ctx;
    if (len > 0) {
        kevent ev = {.kind = KEVENT_TEXT, .pid = t->run.pid, .text = text, .len = len};
        kturn_emit(t, &ev);
    }
    return !atomic_load(&t->run.stop);
}

/* The stream of the model's words: through the output guard (guardsvc.c). */
static bool turn_stream(void *ctx, const char *text, size_t len)
{
    kturn *t = ctx;
    if (len > 0 && t->guard)
        kguard_stream_push(t->guard, text, len);
    return !atomic_load(&t->run.stop);
}

static void recall(kernel *k, const kproc *p, const char *role, const char *text)
{
    int64_t pid = p->info.pid;
    kernel_lock(k);
    if (memory_recall_add(k->cfg.st, p->info.principal, pid, role, text) != LLMOS_OK)
        LOG_WARN("kernel",
                 "process %" PRId64 ": the %s message could not be added to recall "
                 "memory: %s",
                 pid, role, llmos_errmsg());
    kernel_unlock(k);
}

/* Was the turn stopped by a kill (here or elsewhere), as opposed to the device's cancel? */
static bool was_killed(kturn *t)
{
    return atomic_load(&t->run.killed);
}

static bool was_cancelled(kturn *t)
{
    return (t->run.user && atomic_load(t->run.user)) || t->events_stopped;
}

/* What the budgets allow for the next model call; 0 when one is spent (and the turn ended). */
static llmos_err check_budgets(kturn *t, kproc *p, bool *ended)
{
    const kbudget *b = &p->info.budget, *u = &p->info.used;
    *ended = true;
    if (b->tokens > 0 && u->tokens >= b->tokens)
        return finish(t, p, KPROC_OUT_OF_TOKENS, "token budget spent: %" PRId64 " of %" PRId64,
                      u->tokens, b->tokens);
    if (b->wall_s > 0 && u->wall_s >= b->wall_s)
        return finish(t, p, KPROC_OUT_OF_TIME, "wall-time budget spent: %.2f s of %.2f s",
                      u->wall_s, b->wall_s);
    char what[160];
    if (t->limit.tokens > 0 && t->used.tokens >= t->limit.tokens) {
        snprintf(what, sizeof what,
                 "this message's token budget is spent (%" PRId64 " of %" PRId64 ")",
                 t->used.tokens, t->limit.tokens);
        return turn_limit(t, p, what);
    }
    if (t->limit.wall_s > 0 && t->used.wall_s >= t->limit.wall_s) {
        snprintf(what, sizeof what, "this message's time budget is spent (%.1f s of %.1f s)",
                 t->used.wall_s, t->limit.wall_s);
        return turn_limit(t, p, what);
    }
    *ended = false;
    return LLMOS_OK;
}

/* Run the tool calls of one model answer; *limit_hit when a budget stopped some of them. */
static llmos_err run_calls(kturn *t, kproc *p, const llm_response *resp, bool *out_of_calls,
                           bool *turn_calls_spent)
{
    assert(p->info.state == KPROC_RUNNING && resp->n_tool_calls > 0);
    kernel *k = t->s->k;
    llmos_buf result = {0};
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; !err && i < resp->n_tool_calls; i++) {
        const llm_tool_call *c = &resp->tool_calls[i];
        kevent call = {.kind = KEVENT_TOOL_CALL,
                       .pid = p->info.pid,
                       .name = c->name ? c->name : "",
                       .call_id = c->id ? c->id : "",
                       .arguments = c->arguments ? c->arguments : ""};
        kturn_emit(t, &call);
        bool is_error = false;
        const char *origin = "system";
        buf_clear(&result);
        if (p->info.budget.tool_calls > 0 && p->info.used.tool_calls >= p->info.budget.tool_calls) {
            *out_of_calls = true;
            is_error = true;
            err = buf_puts(&result, "error: not run: the tool-call budget is spent");
        } else if (t->limit.tool_calls > 0 && t->used.tool_calls >= t->limit.tool_calls) {
            *turn_calls_spent = true;
            is_error = true;
            err = buf_puts(&result, "error: not run: this message's tool-call budget is spent");
        } else {
            p->info.used.tool_calls++;
            t->used.tool_calls++;
            err = ksyscall(k, t, p, c, &result, &is_error, &origin);
        }
        if (!err)
            err = kctx_append_tool(&p->ctx, c->id ? c->id : "",
                                   trusted_system(result.data ? result.data : ""));
        if (!err) /* what the model got: trusted text, or a handle's notice, never the value */
            recall(k, p, "tool", result.data ? result.data : "");
        if (!err) {
            kevent res = {.kind = KEVENT_TOOL_RESULT,
                          .pid = p->info.pid,
                          .name = call.name,
                          .call_id = call.call_id,
                          .text = result.data ? result.data : "",
                          .len = result.len,
                          .origin = origin,
                          .is_error = is_error};
            kturn_emit(t, &res);
        }
    }
    buf_free(&result);
    return err;
}

/* Give p the turn's message (saved, audited, and kept in recall memory). */
static llmos_err take_message(kturn *t, kproc *p)
{
    kernel *k = t->s->k;
    kproc_state st = p->info.state;
    if (st != KPROC_IDLE && st != KPROC_DONE && st != KPROC_WAITING)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "process %" PRId64 " is %s (%s); it takes no more messages: start a "
                          "new one",
                          p->info.pid, kproc_state_name(st), p->info.reason);
    llmos_err err = kctx_append(&p->ctx, "user", trusted_user(t->message));
    if (err)
        return err;
    p->info.state = KPROC_WAITING;
    p->info.reason[0] = 0;
    if ((err = kproc_save(k, p)))
        return err;
    recall(k, p, "user", t->message);
    json_t *rec = json_pack("{s:I, s:s, s:I}", "pid", (json_int_t)p->info.pid, "event", "input",
                            "bytes", (json_int_t)strlen(t->message));
    if (rec && t->s->p.audit_content)
        json_object_set_new(rec, "content", json_string(t->message));
    return kernel_audit_rec(k, "process", rec);
}

llmos_err kernel_run_turn(kturn *t, int64_t pid, kproc_state *final)
{
    assert(t && t->s && t->s->k && pid > 0);
    kernel *k = t->s->k;
    t->run.pid = pid;
    atomic_init(&t->run.stop, false);
    atomic_init(&t->run.killed, false);
    llmos_err err = kernel_running_add(k, &t->run);
    if (err)
        return err;
    kproc *p = NULL;
    err = kproc_load(k, pid, &p);
    if (!err && t->message)
        err = take_message(t, p);
    if (err || (p->info.state != KPROC_WAITING && p->info.state != KPROC_RUNNING)) {
        if (!err && final)
            *final = p->info.state;
        kernel_running_remove(k, &t->run);
        kproc_free(p);
        return err;
    }
    p->info.state = KPROC_RUNNING;
    err = kproc_save(k, p);
    json_t *tools = offered_tools(k, p);
    char told[512] = ""; /* the context manager's notes already shown this turn */
    double start = llmos_time_now(), wall_before = p->info.used.wall_s;
    int32_t turn_max = k->cfg.max_tokens_per_turn > 0 ? k->cfg.max_tokens_per_turn : 512;
    while (!err) {
        double now = llmos_time_now();
        p->info.used.wall_s = wall_before + (now - start);
        t->used.wall_s = now - start;
        kproc_info seen;
        if (was_killed(t) || (kproc_get(k, pid, &seen) == LLMOS_OK && seen.state == KPROC_KILLED)) {
            err = finish(t, p, KPROC_KILLED, "killed by the user");
            break;
        }
        llmos_err_clear();
        if (was_cancelled(t)) {
            err = finish(t, p, KPROC_DONE, "cancelled by the user");
            break;
        }
        bool ended;
        if ((err = check_budgets(t, p, &ended)) || ended)
            break;
        if (!k->cfg.privileged) {
            err = finish(t, p, KPROC_FAILED, "the model failed: this llmos has no model loaded");
            break;
        }
        mctx_out ctx = {0};
        if ((err = layout(t, p, tools, turn_max, &ctx, told, sizeof told))) {
            mctx_out_free(&ctx);
            if (err == LLMOS_ERR_CONTEXT) /* the message itself does not fit: say so */
                err = finish(t, p, KPROC_FAILED, "%s", llmos_errmsg());
            break;
        }
        llm_request req = llm_request_default();
        req.cache_scope = p->info.principal; /* its prefix cache is its principal's alone */
        req.messages = ctx.messages;
        req.tools = json_array_size(ctx.tools) ? ctx.tools : NULL;
        req.max_tokens = turn_max < (int32_t)ctx.reserve ? turn_max : (int32_t)ctx.reserve;
        if (k->cfg.sampling)
            req.sampling = *k->cfg.sampling;
        const kbudget *b = &p->info.budget;
        if (b->tokens > 0 && b->tokens - p->info.used.tokens < req.max_tokens)
            req.max_tokens = (int32_t)(b->tokens - p->info.used.tokens);
        if (t->limit.tokens > 0 && t->limit.tokens - t->used.tokens < req.max_tokens)
            req.max_tokens = (int32_t)(t->limit.tokens - t->used.tokens);
        req.cancel = &t->run.stop;
        llm_response resp = {0};
        llmos_err cerr = ksched_acquire(&k->sched, &(ksched_ask){.principal = p->info.principal,
                                                                 .cancel = &t->run.stop,
                                                                 .throttle = true});
        if (!cerr) {
            kguard_stream gs;
            cerr =
                kguard_stream_start(k, p->info.principal, p->info.pid, "answer", turn_text, t, &gs);
            t->guard = &gs;
            if (!cerr)
                cerr = llm_chat(k->cfg.privileged, &req, turn_stream, t, &resp);
            bool withheld = kguard_stream_end(&gs);
            t->guard = NULL;
            if (!cerr && resp.finish_reason && strcmp(resp.finish_reason, "cancelled") != 0)
                ksched_kv_touch(&k->sched, p->info.principal);
            ksched_release(&k->sched, p->info.principal,
                           resp.prompt_tokens + resp.completion_tokens);
            if (withheld) {
                char msg[160];
                snprintf(msg, sizeof msg,
                         "the output guard withheld the rest of this answer (detector '%s')",
                         gs.blocked_by[0] ? gs.blocked_by : "?");
                emit_notice(t, p->info.pid, msg);
            }
        }
        mctx_out_free(&ctx);
        uint32_t spent = resp.prompt_tokens + resp.completion_tokens;
        p->info.used.tokens += spent;
        t->used.tokens += spent;
        p->info.used.wall_s = wall_before + (llmos_time_now() - start);
        if (atomic_load(&t->run.stop) && (!cerr || cerr == LLMOS_ERR_CANCELLED)) {
            /* keep what was said, even a cut-off answer */
            err = kctx_append(&p->ctx, "assistant", trusted_user(resp.content ? resp.content : ""));
            llm_response_free(&resp);
            if (err)
                break;
            if (was_killed(t))
                err = finish(t, p, KPROC_KILLED, "killed by the user");
            else
                err = finish(t, p, KPROC_DONE, "cancelled by the user");
            break;
        }
        if (cerr == LLMOS_ERR_BUSY) {
            llm_response_free(&resp);
            char what[600];
            snprintf(what, sizeof what, "%s", llmos_errmsg());
            err = turn_limit(t, p, what);
            break;
        }
        if (cerr) {
            /* the privileged backend's message: llmos's own, or the privileged model server's
             * (which saw only trusted text) */
            err = finish(t, p, KPROC_FAILED, "the model failed: %s", llmos_errmsg());
            llm_response_free(&resp);
            break;
        }
        /* The model's own words: it saw only trusted text, so they are trusted (USER: written
         * for the user). */
        trusted_text said = trusted_user(resp.content ? resp.content : "");
        if (resp.n_tool_calls == 0) {
            err = kctx_append(&p->ctx, "assistant", said);
            if (!err) {
                recall(k, p, "assistant", said.text);
                err = finish(t, p, KPROC_DONE, "%s",
                             strcmp(resp.finish_reason ? resp.finish_reason : "", "length") == 0
                                 ? "answered (cut at the length limit)"
                                 : "answered");
            }
            llm_response_free(&resp);
            break;
        }
        err = kctx_append_calls(&p->ctx, said, resp.tool_calls, resp.n_tool_calls);
        if (!err) {
            /* recall keeps the turn as text: what the model said, and which tools it called */
            llmos_buf line = {0};
            bool ok = !buf_puts(&line, said.text);
            for (size_t i = 0; ok && i < resp.n_tool_calls; i++)
                ok = !buf_printf(&line, "%s[called %s %s]", line.len ? " " : "",
                                 resp.tool_calls[i].name ? resp.tool_calls[i].name : "",
                                 resp.tool_calls[i].arguments ? resp.tool_calls[i].arguments : "");
            if (ok)
                recall(k, p, "assistant", line.data ? line.data : "");
            buf_free(&line);
        }
        bool out_of_calls = false, turn_calls_spent = false;
        if (!err)
            err = run_calls(t, p, &resp, &out_of_calls, &turn_calls_spent);
        llm_response_free(&resp);
        p->info.used.wall_s = wall_before + (llmos_time_now() - start);
        if (err)
            break;
        if (out_of_calls) {
            err = finish(t, p, KPROC_OUT_OF_CALLS, "tool-call budget spent: %" PRId64 " calls",
                         p->info.budget.tool_calls);
            break;
        }
        if (turn_calls_spent) {
            char what[160];
            snprintf(what, sizeof what,
                     "this message's tool-call budget is spent (%" PRId64 " calls)",
                     t->limit.tool_calls);
            err = turn_limit(t, p, what);
            break;
        }
        err = kproc_save(k, p);
    }
    kernel_running_remove(k, &t->run);
    json_decref(tools);
    if (final)
        *final = p->info.state;
    kproc_free(p);
    return err;
}
