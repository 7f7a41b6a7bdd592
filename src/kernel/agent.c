/*
 * agent.c - the kernel object and the agent loop.
 *
 *   load process -> [killed? budget spent?] -> llm_chat(privileged context, tools the process
 *   may use) -> no tool call: done | tool calls: each one through kernel_syscall, its result
 *   appended as a role "tool" message -> save -> repeat
 *
 * The privileged context holds only trusted text (kctx accepts only trusted_text): the user's
 * message, the system prompt, the model's own turns, trusted tool results and handles of
 * untrusted values. Each end of a process (answer, budget, kill, failure) is a final state,
 * saved and audited.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"

static const char *const default_system_prompt =
    "You are an agent of llmos. Use the tools offered when they help. Some tool results are "
    "untrusted and you receive them as handles like $VAR1: you cannot read them, but you can "
    "pass them to tools, show them to the user with send_message, or ask_quarantined a "
    "question about them. Answer the user without a tool call when you are done.";

llmos_err kernel_audit_rec(kernel *k, const char *kind, json_t *payload_stolen)
{
    if (!payload_stolen)
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory for the record");
    llmos_err err = audit_append(k->log, kind, payload_stolen);
    json_decref(payload_stolen);
    if (err)
        LOG_ERROR("kernel", "audit record '%s' could not be written: %s", kind, llmos_errmsg());
    return err;
}

void kernel_deliver(kernel *k, int64_t pid, const char *recipient, const char *text)
{
    if (k->cfg.on_message)
        k->cfg.on_message(k->cfg.message_ctx, pid, recipient, text);
    else
        printf("[message from process %" PRId64 " to %s]\n%s\n", pid, recipient, text);
}

audit *kernel_audit(kernel *k)
{
    return k ? k->log : NULL;
}

void kernel_free(kernel *k)
{
    if (!k)
        return;
    audit_free(k->log);
    policy_free(k->own_policy);
    free(k->tools);
    free(k);
}

llmos_err kernel_new(const kernel_config *cfg, kernel **out)
{
    *out = NULL;
    if (!cfg || !cfg->st || !cfg->privileged)
        return llmos_fail(LLMOS_ERR_INVALID, "kernel_new needs a store and a privileged model");
    kernel *k = calloc(1, sizeof *k);
    if (!k)
        return llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    k->cfg = *cfg;
    snprintf(k->principal, sizeof k->principal, "%s", cfg->principal ? cfg->principal : "user");
    llmos_err err = LLMOS_OK;
    if (cfg->flow) {
        k->flow = cfg->flow;
    } else {
        err = cfg->config_dir ? policy_load(cfg->config_dir, &k->own_policy)
                              : policy_default(&k->own_policy);
        k->flow = k->own_policy;
    }
    size_t nb = 0;
    const ktool *builtin = ktool_builtin(&nb);
    assert(builtin && nb > 0);
    if (!err && cfg->n_extra_tools && !cfg->extra_tools)
        err = llmos_fail(LLMOS_ERR_INVALID, "kernel_new: n_extra_tools without extra_tools");
    ktool *tools = err ? NULL : calloc(nb + cfg->n_extra_tools + 1, sizeof *tools);
    if (!err && !tools)
        err = llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    if (tools) {
        k->tools = tools;
        for (size_t i = 0; i < nb; i++)
            tools[k->n_tools++] = builtin[i];
        for (size_t i = 0; cfg->extra_tools && i < cfg->n_extra_tools; i++) {
            const ktool *x = &cfg->extra_tools[i];
            for (size_t j = 0; j < k->n_tools; j++)
                if (strcmp(tools[j].name, x->name) == 0)
                    err = llmos_fail(LLMOS_ERR_EXISTS, "tool '%s' is registered twice", x->name);
            tools[k->n_tools++] = *x;
        }
    }
    if (!err)
        err = audit_open(cfg->st, &k->log);
    if (!err)
        err = kernel_audit_rec(k, "login", json_pack("{s:s}", "principal", k->principal));
    if (!err)
        err = kernel_audit_rec(k, "model.load",
                               json_pack("{s:s, s:s, s:s}", "role", "privileged", "model",
                                         llm_model_name(cfg->privileged), "kind",
                                         cfg->privileged->ops->kind));
    if (!err && cfg->quarantined)
        err = kernel_audit_rec(k, "model.load",
                               json_pack("{s:s, s:s, s:s}", "role", "quarantined", "model",
                                         llm_model_name(cfg->quarantined), "kind",
                                         cfg->quarantined->ops->kind));
    if (err) {
        kernel_free(k);
        return err;
    }
    *out = k;
    return LLMOS_OK;
}

llmos_err kernel_spawn(kernel *k, const char *user_message, uint32_t caps, kbudget budget,
                       int64_t *pid)
{
    if (!k || !user_message)
        return llmos_fail(LLMOS_ERR_INVALID, "kernel_spawn: needs a user message");
    kproc *p = calloc(1, sizeof *p);
    if (!p)
        return llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    llmos_err err = kctx_init(&p->ctx);
    p->q = quarantine_new();
    if (!err && !p->q)
        err = llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    if (!err)
        err = kproc_new_pid(k->cfg.st, &p->info.pid);
    if (!err) {
        snprintf(p->info.principal, sizeof p->info.principal, "%s", k->principal);
        snprintf(p->info.model, sizeof p->info.model, "%s", llm_model_name(k->cfg.privileged));
        p->info.caps = caps;
        p->info.budget = budget;
        p->info.state = KPROC_WAITING;
        p->info.created_at = (int64_t)time(NULL);
        err = kctx_append(
            &p->ctx, "system",
            trusted_system(k->cfg.system_prompt ? k->cfg.system_prompt : default_system_prompt));
    }
    if (!err)
        err = kctx_append(&p->ctx, "user", trusted_user(user_message));
    if (!err)
        err = kproc_save(k->cfg.st, p);
    if (!err) {
        char capstr[96];
        kcap_format(caps, capstr, sizeof capstr);
        err = kernel_audit_rec(
            k, "process",
            json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:f}", "pid", (json_int_t)p->info.pid,
                      "event", "spawn", "principal", k->principal, "caps", capstr, "budget_tokens",
                      (json_int_t)budget.tokens, "budget_tool_calls", (json_int_t)budget.tool_calls,
                      "budget_wall_s", budget.wall_s));
    }
    if (!err && pid)
        *pid = p->info.pid;
    kproc_free(p);
    return err;
}

/* The tools this process may use, in the OpenAI shape. */
static json_t *offered_tools(kernel *k, const kproc *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < k->n_tools; i++) {
        const ktool *t = &k->tools[i];
        if (!(p->info.caps & t->capability))
            continue;
        json_t *schema = NULL;
        if (ljson_parse_text(t->parameters, strlen(t->parameters), t->name, 0, &schema)) {
            llmos_err_clear();
            continue;
        }
        json_array_append_new(arr, json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "function",
                                             "function", "name", t->name, "description",
                                             t->description, "parameters", schema));
    }
    return arr;
}

/* End process p in `state` with a reason; saved and audited. */
static llmos_err finish(kernel *k, kproc *p, kproc_state state, const char *fmt, ...)
    LLMOS_PRINTF(4, 5);

static llmos_err finish(kernel *k, kproc *p, kproc_state state, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->info.reason, sizeof p->info.reason, fmt, ap);
    va_end(ap);
    p->info.state = state;
    llmos_err err = kproc_save(k->cfg.st, p);
    llmos_err aerr = kernel_audit_rec(
        k, "process",
        json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:f}", "pid", (json_int_t)p->info.pid, "event",
                  "end", "state", kproc_state_name(state), "reason", p->info.reason, "tokens_used",
                  (json_int_t)p->info.used.tokens, "tool_calls_used",
                  (json_int_t)p->info.used.tool_calls, "wall_s_used", p->info.used.wall_s));
    return err ? err : aerr;
}

/* Was the process killed from outside (another llmos process) since we loaded it? */
static bool killed_outside(kernel *k, int64_t pid)
{
    kproc_info now;
    if (kproc_get(k->cfg.st, pid, &now) != LLMOS_OK) {
        llmos_err_clear();
        return false;
    }
    return now.state == KPROC_KILLED;
}

llmos_err kernel_run(kernel *k, int64_t pid, kproc_state *final)
{
    kproc *p = NULL;
    llmos_err err = kproc_load(k->cfg.st, pid, &p);
    if (err)
        return err;
    if (kproc_state_final(p->info.state)) {
        if (final)
            *final = p->info.state;
        kproc_free(p);
        return LLMOS_OK;
    }
    p->info.state = KPROC_RUNNING;
    err = kproc_save(k->cfg.st, p);
    json_t *tools = offered_tools(k, p);
    double start = llmos_time_now(), wall_before = p->info.used.wall_s;
    int32_t turn_max = k->cfg.max_tokens_per_turn > 0 ? k->cfg.max_tokens_per_turn : 512;
    llmos_buf result = {0};
    while (!err) {
        p->info.used.wall_s = wall_before + (llmos_time_now() - start);
        if (killed_outside(k, pid)) {
            p->info.state = KPROC_KILLED; /* already saved and audited by kproc_kill */
            break;
        }
        const kbudget *b = &p->info.budget, *u = &p->info.used;
        if (b->tokens > 0 && u->tokens >= b->tokens) {
            err = finish(k, p, KPROC_OUT_OF_TOKENS, "token budget spent: %" PRId64 " of %" PRId64,
                         u->tokens, b->tokens);
            break;
        }
        if (b->wall_s > 0 && u->wall_s >= b->wall_s) {
            err = finish(k, p, KPROC_OUT_OF_TIME, "wall-time budget spent: %.2f s of %.2f s",
                         u->wall_s, b->wall_s);
            break;
        }
        llm_request req = llm_request_default();
        req.messages = p->ctx.messages;
        req.tools = json_array_size(tools) ? tools : NULL;
        req.max_tokens = turn_max;
        if (b->tokens > 0 && b->tokens - u->tokens < turn_max)
            req.max_tokens = (int32_t)(b->tokens - u->tokens);
        llm_response resp = {0};
        req.cancel = k->cancel;
        llmos_err cerr = llm_chat(k->cfg.privileged, &req, k->out_fn, k->out_ctx, &resp);
        if (k->cancel && atomic_load(k->cancel) && (!cerr || cerr == LLMOS_ERR_CANCELLED)) {
            p->info.used.tokens += (int64_t)resp.prompt_tokens + resp.completion_tokens;
            err = kctx_append(&p->ctx, "assistant", trusted_user(resp.content ? resp.content : ""));
            if (!err)
                err = finish(k, p, KPROC_DONE, "cancelled by the user");
            llm_response_free(&resp);
            break;
        }
        if (cerr) {
            err = finish(k, p, KPROC_FAILED, "the model failed: %s", llmos_errmsg());
            llm_response_free(&resp);
            break;
        }
        p->info.used.tokens += (int64_t)resp.prompt_tokens + resp.completion_tokens;
        p->info.used.wall_s = wall_before + (llmos_time_now() - start);
        /* The model's own words: it saw only trusted text, so they are trusted (USER: written
         * for the user). */
        trusted_text said = trusted_user(resp.content ? resp.content : "");
        if (resp.n_tool_calls == 0) {
            err = kctx_append(&p->ctx, "assistant", said);
            if (!err)
                err = finish(k, p, KPROC_DONE, "answered");
            llm_response_free(&resp);
            break;
        }
        err = kctx_append_calls(&p->ctx, said, resp.tool_calls, resp.n_tool_calls);
        bool out_of_calls = false;
        for (size_t i = 0; !err && i < resp.n_tool_calls; i++) {
            const llm_tool_call *c = &resp.tool_calls[i];
            bool is_error = false;
            if (b->tool_calls > 0 && p->info.used.tool_calls >= b->tool_calls) {
                out_of_calls = true;
                buf_clear(&result);
                err = buf_puts(&result, "error: not run: the tool-call budget is spent")
                          ? LLMOS_ERR_NOMEM
                          : LLMOS_OK;
            } else {
                p->info.used.tool_calls++;
                err = kernel_syscall(k, p, c, &result, &is_error);
            }
            if (!err)
                err = kctx_append_tool(&p->ctx, c->id ? c->id : "",
                                       trusted_system(result.data ? result.data : ""));
        }
        llm_response_free(&resp);
        p->info.used.wall_s = wall_before + (llmos_time_now() - start);
        if (err)
            break;
        if (out_of_calls) {
            err = finish(k, p, KPROC_OUT_OF_CALLS, "tool-call budget spent: %" PRId64 " calls",
                         p->info.budget.tool_calls);
            break;
        }
        if (killed_outside(k, pid)) {
            p->info.state = KPROC_KILLED;
            break;
        }
        err = kproc_save(k->cfg.st, p);
    }
    buf_free(&result);
    json_decref(tools);
    if (final)
        *final = p->info.state;
    kproc_free(p);
    return err;
}

llmos_err kernel_answer(kernel *k, int64_t pid, char **out)
{
    *out = NULL;
    kproc *p = NULL;
    llmos_err err = kproc_load(k->cfg.st, pid, &p);
    if (err)
        return err;
    const char *ans = "";
    for (size_t i = json_array_size(p->ctx.messages); i-- > 0;) {
        json_t *m = json_array_get(p->ctx.messages, i);
        if (strcmp(ljson_get_string(m, "role", ""), "assistant") == 0) {
            ans = ljson_get_string(m, "content", "");
            break;
        }
    }
    *out = strdup(ans);
    kproc_free(p);
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "no memory");
}

llmos_err kernel_context(kernel *k, int64_t pid, json_t **out)
{
    kproc *p = NULL;
    llmos_err err = kproc_load(k->cfg.st, pid, &p);
    if (err)
        return err;
    *out = json_incref(p->ctx.messages);
    kproc_free(p);
    return LLMOS_OK;
}

llmos_err kernel_send(kernel *k, int64_t pid, const char *user_message)
{
    if (!k || !user_message)
        return llmos_fail(LLMOS_ERR_INVALID, "kernel_send: needs a user message");
    kproc *p = NULL;
    llmos_err err = kproc_load(k->cfg.st, pid, &p);
    if (err)
        return err;
    if (p->info.state != KPROC_DONE && p->info.state != KPROC_WAITING) {
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "process %" PRId64 " is %s (%s); it takes no more messages: start a "
                         "new one",
                         pid, kproc_state_name(p->info.state), p->info.reason);
        kproc_free(p);
        return err;
    }
    err = kctx_append(&p->ctx, "user", trusted_user(user_message));
    if (!err) {
        p->info.state = KPROC_WAITING;
        p->info.reason[0] = 0;
        err = kproc_save(k->cfg.st, p);
    }
    if (!err)
        err = kernel_audit_rec(k, "process",
                               json_pack("{s:I, s:s}", "pid", (json_int_t)pid, "event", "input"));
    kproc_free(p);
    return err;
}

void kernel_set_output(kernel *k, llm_stream_fn fn, void *ctx, const atomic_bool *cancel)
{
    k->out_fn = fn;
    k->out_ctx = ctx;
    k->cancel = cancel;
}
