/*
 * process.c - processes: capability and right names, states, records in the store (through
 * llmos/memory.h), and the privileged context.
 *
 * A process is one JSON object (pid, principal, model, capabilities, budgets, state, reason,
 * messages, quarantined values) that memory keeps in the user's encrypted store. It is saved
 * after every step of the agent loop, which is what makes a process resume after a restart:
 * the loop loads it and goes on from the last saved context.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"
#include "llmos/memory.h"

/* ---- capability and right names ----------------------------------------------------------- */

static const char *const cap_names[] = {"compute",    "message", "read",
                                        "quarantine", "exec",    "memory"};
static const char *const right_names[] = {"chat", "embed", "process", "audit", "memory", "admin"};

/* "a,b" -> bits over `names`, "all" for every one; `what` names the kind in errors. */
static llmos_err names_parse(const char *list, const char *const *names, size_t n_names,
                             uint32_t all, const char *what, uint32_t *out)
{
    *out = 0;
    if (!list)
        return LLMOS_OK;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ", ");
        if (n) {
            bool found = n == 3 && strncmp(p, "all", 3) == 0;
            if (found)
                *out |= all;
            for (size_t i = 0; i < n_names && !found; i++) {
                if (strlen(names[i]) == n && strncmp(p, names[i], n) == 0) {
                    *out |= 1u << i;
                    found = true;
                }
            }
            if (!found) {
                char known[128] = "";
                for (size_t i = 0; i < n_names; i++)
                    snprintf(known + strlen(known), sizeof known - strlen(known), "%s, ", names[i]);
                return llmos_fail(LLMOS_ERR_INVALID, "unknown %s '%.*s'; known: %sall", what,
                                  (int)n, p, known);
            }
        }
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return LLMOS_OK;
}

static void names_format(uint32_t bits, const char *const *names, size_t n_names, char *out,
                         size_t size)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < n_names; i++) {
        if (!(bits & (1u << i)))
            continue;
        int n = snprintf(out + used, size - used, "%s%s", used ? "," : "", names[i]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (!used)
        snprintf(out, size, "-");
}

llmos_err kcap_parse(const char *list, uint32_t *out)
{
    return names_parse(list, cap_names, LLMOS_ARRAY_LEN(cap_names), KCAP_ALL, "capability", out);
}

void kcap_format(uint32_t caps, char *out, size_t size)
{
    names_format(caps, cap_names, LLMOS_ARRAY_LEN(cap_names), out, size);
}

llmos_err kright_parse(const char *list, uint32_t *out)
{
    return names_parse(list, right_names, LLMOS_ARRAY_LEN(right_names), KRIGHT_ALL, "right", out);
}

void kright_format(uint32_t rights, char *out, size_t size)
{
    names_format(rights, right_names, LLMOS_ARRAY_LEN(right_names), out, size);
}

/* ---- states ------------------------------------------------------------------------------- */

static const char *const state_names[] = {"running",      "waiting",     "done",
                                          "killed",       "failed",      "out-of-tokens",
                                          "out-of-calls", "out-of-time", "idle"};

const char *kproc_state_name(kproc_state s)
{
    return (unsigned)s < LLMOS_ARRAY_LEN(state_names) ? state_names[s] : "?";
}

bool kproc_state_final(kproc_state s)
{
    return s != KPROC_RUNNING && s != KPROC_WAITING && s != KPROC_IDLE;
}

static bool state_parse(const char *name, kproc_state *out)
{
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(state_names); i++) {
        if (name && strcmp(name, state_names[i]) == 0) {
            *out = (kproc_state)i;
            return true;
        }
    }
    return false;
}

/* ---- processes in the store --------------------------------------------------------------- */

static json_t *budget_json(const kbudget *b)
{
    return json_pack("{s:I, s:I, s:f}", "tokens", (json_int_t)b->tokens, "tool_calls",
                     (json_int_t)b->tool_calls, "wall_s", b->wall_s);
}

static void budget_read(const json_t *j, kbudget *b)
{
    b->tokens = ljson_get_int(j, "tokens", 0);
    b->tool_calls = ljson_get_int(j, "tool_calls", 0);
    b->wall_s = ljson_get_number(j, "wall_s", 0);
}

static void info_read(const json_t *j, kproc_info *in)
{
    memset(in, 0, sizeof *in);
    in->pid = ljson_get_int(j, "pid", 0);
    snprintf(in->principal, sizeof in->principal, "%s", ljson_get_string(j, "principal", "?"));
    snprintf(in->model, sizeof in->model, "%s", ljson_get_string(j, "model", "?"));
    in->caps = (uint32_t)ljson_get_int(j, "caps", 0);
    budget_read(json_object_get(j, "budget"), &in->budget);
    budget_read(json_object_get(j, "used"), &in->used);
    if (!state_parse(ljson_get_string(j, "state", ""), &in->state))
        in->state = KPROC_FAILED;
    snprintf(in->reason, sizeof in->reason, "%s", ljson_get_string(j, "reason", ""));
    in->created_at = ljson_get_int(j, "created_at", 0);
}

llmos_err kproc_load(kernel *k, int64_t pid, kproc **out)
{
    assert(k && pid > 0);
    *out = NULL;
    json_t *j = NULL;
    kernel_lock(k);
    llmos_err err = memory_proc_load(k->cfg.st, pid, &j);
    kernel_unlock(k);
    if (err)
        return err;
    kproc *p = calloc(1, sizeof *p);
    if (!p) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_NOMEM, "process: no memory");
    }
    info_read(j, &p->info);
    const char *summary = ljson_get_string(j, "summary", NULL);
    p->summary = summary ? strdup(summary) : NULL;
    p->evicted = ljson_get_int(j, "evicted", 0);
    json_t *msgs = ljson_get_array(j, "messages");
    p->ctx.messages = msgs ? json_incref(msgs) : json_array();
    err = quarantine_from_json(json_object_get(j, "quarantine"), &p->q);
    json_decref(j);
    if (err) {
        kproc_free(p);
        return err;
    }
    *out = p;
    return LLMOS_OK;
}

llmos_err kproc_save(kernel *k, const kproc *p)
{
    assert(p->info.pid > 0);
    json_t *q = NULL;
    llmos_err err = quarantine_to_json(p->q, &q);
    if (err)
        return err;
    const kproc_info *in = &p->info;
    json_t *j = json_pack("{s:I, s:s, s:s, s:I, s:o, s:o, s:s, s:s, s:I, s:O, s:o}", "pid",
                          (json_int_t)in->pid, "principal", in->principal, "model", in->model,
                          "caps", (json_int_t)in->caps, "budget", budget_json(&in->budget), "used",
                          budget_json(&in->used), "state", kproc_state_name(in->state), "reason",
                          in->reason, "created_at", (json_int_t)in->created_at, "messages",
                          p->ctx.messages, "quarantine", q);
    if (j && p->summary)
        json_object_set_new(j, "summary", json_string(p->summary));
    if (j && p->evicted)
        json_object_set_new(j, "evicted", json_integer(p->evicted));
    if (!j)
        return llmos_fail(LLMOS_ERR_FORMAT, "process %" PRId64 " could not be serialised", in->pid);
    kernel_lock(k);
    err = memory_proc_save(k->cfg.st, in->pid, j);
    kernel_unlock(k);
    json_decref(j);
    return err;
}

void kproc_free(kproc *p)
{
    if (!p)
        return;
    kctx_free(&p->ctx);
    quarantine_free(p->q);
    free(p->summary);
    free(p);
}

llmos_err kproc_get(kernel *k, int64_t pid, kproc_info *out)
{
    json_t *j = NULL;
    kernel_lock(k);
    llmos_err err = memory_proc_load(k->cfg.st, pid, &j);
    kernel_unlock(k);
    if (err)
        return err;
    info_read(j, out);
    json_decref(j);
    return LLMOS_OK;
}

llmos_err kproc_list(kernel *k, kproc_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int64_t last = 0;
    kernel_lock(k);
    llmos_err err = memory_proc_last_pid(k->cfg.st, &last);
    kproc_info *list = !err && last > 0 ? calloc((size_t)last, sizeof *list) : NULL;
    if (!err && last > 0 && !list)
        err = llmos_fail(LLMOS_ERR_NOMEM, "ps: no memory");
    size_t count = 0;
    for (int64_t pid = 1; !err && pid <= last; pid++) {
        err = kproc_get(k, pid, &list[count]);
        if (err == LLMOS_ERR_NOT_FOUND) {
            llmos_err_clear();
            err = LLMOS_OK;
            continue;
        }
        if (!err)
            count++;
    }
    kernel_unlock(k);
    if (err || !count) {
        free(list);
        return err;
    }
    *out = list;
    *n = count;
    return LLMOS_OK;
}

llmos_err kproc_mark_killed(kernel *k, int64_t pid, const char *by)
{
    kernel_lock(k);
    json_t *j = NULL;
    llmos_err err = memory_proc_load(k->cfg.st, pid, &j);
    kproc_state st = KPROC_FAILED;
    if (!err && (!state_parse(ljson_get_string(j, "state", ""), &st) || kproc_state_final(st)))
        err = llmos_fail(LLMOS_ERR_INVALID, "process %" PRId64 " has already ended (%s)", pid,
                         ljson_get_string(j, "state", "?"));
    if (!err) {
        json_object_set_new(j, "state", json_string(kproc_state_name(KPROC_KILLED)));
        json_object_set_new(j, "reason", json_string("killed by the user"));
        err = memory_proc_save(k->cfg.st, pid, j);
    }
    kernel_unlock(k);
    json_decref(j);
    if (!err)
        err = kernel_audit_rec(k, "process",
                               json_pack("{s:I, s:s, s:s, s:s}", "pid", (json_int_t)pid, "event",
                                         "killed", "by", by, "was", kproc_state_name(st)));
    return err;
}

llmos_err kproc_create(kernel *k, const char *principal, uint32_t caps, kbudget budget,
                       int64_t *pid)
{
    assert(k && principal && pid);
    kproc *p = calloc(1, sizeof *p);
    if (!p)
        return llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    llmos_err err = kctx_init(&p->ctx);
    p->q = quarantine_new();
    if (!err && !p->q)
        err = llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    if (!err) {
        kernel_lock(k);
        err = memory_proc_new_pid(k->cfg.st, &p->info.pid);
        kernel_unlock(k);
    }
    if (!err) {
        snprintf(p->info.principal, sizeof p->info.principal, "%s", principal);
        snprintf(p->info.model, sizeof p->info.model, "%s",
                 k->cfg.privileged ? llm_model_name(k->cfg.privileged) : "none");
        p->info.caps = caps;
        p->info.budget = budget;
        p->info.state = KPROC_IDLE;
        p->info.created_at = (int64_t)time(NULL);
        err = kctx_append(&p->ctx, "system",
                          trusted_system(k->cfg.system_prompt ? k->cfg.system_prompt
                                                              : kernel_default_system_prompt));
    }
    if (!err)
        err = kproc_save(k, p);
    if (!err) {
        char capstr[96];
        kcap_format(caps, capstr, sizeof capstr);
        err = kernel_audit_rec(
            k, "process",
            json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:f}", "pid", (json_int_t)p->info.pid,
                      "event", "spawn", "principal", principal, "caps", capstr, "budget_tokens",
                      (json_int_t)budget.tokens, "budget_tool_calls", (json_int_t)budget.tool_calls,
                      "budget_wall_s", budget.wall_s));
    }
    if (!err)
        *pid = p->info.pid;
    kproc_free(p);
    return err;
}

/* ---- the privileged context ------------------------------------------------------------- */

llmos_err kctx_init(kctx *c)
{
    c->messages = json_array();
    return c->messages ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "context: no memory");
}

void kctx_free(kctx *c)
{
    if (!c)
        return;
    json_decref(c->messages);
    c->messages = NULL;
}

static llmos_err kctx_push(kctx *c, json_t *m)
{
    if (!m)
        return llmos_fail(LLMOS_ERR_FORMAT, "context: a message is not valid UTF-8 text");
    if (json_array_append_new(c->messages, m))
        return llmos_fail(LLMOS_ERR_NOMEM, "context: no memory");
    return LLMOS_OK;
}

llmos_err kctx_append(kctx *c, const char *role, trusted_text content)
{
    /* The type is the guarantee: trusted_text never has origin UNTRUSTED. */
    if (content.origin == ORIGIN_UNTRUSTED)
        return llmos_fail(LLMOS_ERR_INTERNAL, "untrusted text offered to the privileged context");
    return kctx_push(c, json_pack("{s:s, s:s}", "role", role, "content", content.text));
}

llmos_err kctx_append_tool(kctx *c, const char *call_id, trusted_text content)
{
    if (content.origin == ORIGIN_UNTRUSTED)
        return llmos_fail(LLMOS_ERR_INTERNAL, "untrusted text offered to the privileged context");
    return kctx_push(c, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id", call_id,
                                  "content", content.text));
}

llmos_err kctx_append_calls(kctx *c, trusted_text content, const llm_tool_call *calls, size_t n)
{
    if (content.origin == ORIGIN_UNTRUSTED)
        return llmos_fail(LLMOS_ERR_INTERNAL, "untrusted text offered to the privileged context");
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *tc =
            json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", calls[i].id ? calls[i].id : "", "type",
                      "function", "function", "name", calls[i].name ? calls[i].name : "",
                      "arguments", calls[i].arguments ? calls[i].arguments : "{}");
        if (!tc) {
            json_decref(arr);
            return llmos_fail(LLMOS_ERR_FORMAT, "context: tool call %zu is not UTF-8 text", i);
        }
        json_array_append_new(arr, tc);
    }
    return kctx_push(c, json_pack("{s:s, s:s, s:o}", "role", "assistant", "content", content.text,
                                  "tool_calls", arr));
}
