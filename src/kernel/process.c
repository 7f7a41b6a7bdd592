/*
 * process.c - processes: capabilities, states, and their persistence in the user's store.
 *
 * A process is saved as one JSON object in the store's settings under "kernel.proc.<pid>"
 * (the store is encrypted, so conversations and quarantined values are too); the next pid is
 * "kernel.next_pid". Saving after every step of the agent loop is what makes a process resume
 * after a restart: kernel_run loads it and goes on from the last saved context.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"

static const char *const cap_names[] = {"compute", "message", "read", "quarantine", "exec"};

llmos_err kcap_parse(const char *list, uint32_t *out)
{
    *out = 0;
    if (!list)
        return LLMOS_OK;
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ", ");
        if (n) {
            bool found = false;
            if (n == 3 && strncmp(p, "all", 3) == 0) {
                *out |= KCAP_ALL;
                found = true;
            }
            for (size_t i = 0; i < LLMOS_ARRAY_LEN(cap_names) && !found; i++) {
                if (strlen(cap_names[i]) == n && strncmp(p, cap_names[i], n) == 0) {
                    *out |= 1u << i;
                    found = true;
                }
            }
            if (!found)
                return llmos_fail(LLMOS_ERR_INVALID,
                                  "unknown capability '%.*s'; known: compute, message, read, "
                                  "quarantine, exec, all",
                                  (int)n, p);
        }
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return LLMOS_OK;
}

void kcap_format(uint32_t caps, char *out, size_t size)
{
    size_t used = 0;
    out[0] = 0;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(cap_names); i++) {
        if (!(caps & (1u << i)))
            continue;
        int n = snprintf(out + used, size - used, "%s%s", used ? "," : "", cap_names[i]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (!used)
        snprintf(out, size, "-");
}

static const char *const state_names[] = {"running",      "waiting",    "done",
                                          "killed",       "failed",     "out-of-tokens",
                                          "out-of-calls", "out-of-time"};

const char *kproc_state_name(kproc_state s)
{
    return (unsigned)s < LLMOS_ARRAY_LEN(state_names) ? state_names[s] : "?";
}

bool kproc_state_final(kproc_state s)
{
    return s != KPROC_RUNNING && s != KPROC_WAITING;
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

static void proc_key(int64_t pid, char *out, size_t size)
{
    snprintf(out, size, "kernel.proc.%" PRId64, pid);
}

llmos_err kproc_new_pid(store *s, int64_t *pid)
{
    char *v = NULL;
    int64_t next = 1;
    llmos_err err = store_setting_get(s, "kernel.next_pid", &v);
    if (!err)
        next = strtoll(v, NULL, 10);
    else if (err != LLMOS_ERR_NOT_FOUND)
        return err;
    llmos_err_clear();
    free(v);
    if (next < 1)
        next = 1;
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, next + 1);
    err = store_setting_set(s, "kernel.next_pid", buf);
    if (!err)
        *pid = next;
    return err;
}

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

static llmos_err load_json(store *s, int64_t pid, json_t **out)
{
    char key[48];
    proc_key(pid, key, sizeof key);
    char *v = NULL;
    llmos_err err = store_setting_get(s, key, &v);
    if (err == LLMOS_ERR_NOT_FOUND)
        return llmos_fail(err, "no process %" PRId64 "; 'llmos ps' lists them", pid);
    if (err)
        return err;
    err = ljson_parse_text(v, strlen(v), key, 0, out);
    free(v);
    if (!err && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: expected a JSON object", key);
    }
    return err;
}

llmos_err kproc_load(store *s, int64_t pid, kproc **out)
{
    *out = NULL;
    json_t *j = NULL;
    llmos_err err = load_json(s, pid, &j);
    if (err)
        return err;
    kproc *p = calloc(1, sizeof *p);
    if (!p) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_NOMEM, "process: no memory");
    }
    info_read(j, &p->info);
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

llmos_err kproc_save(store *s, const kproc *p)
{
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
    if (!j)
        return llmos_fail(LLMOS_ERR_FORMAT, "process %" PRId64 " could not be serialised", in->pid);
    llmos_buf b = {0};
    err = ljson_to_buf(j, JSON_COMPACT, &b);
    json_decref(j);
    if (!err) {
        char key[48];
        proc_key(in->pid, key, sizeof key);
        err = store_setting_set(s, key, b.data);
    }
    buf_free(&b);
    return err;
}

void kproc_free(kproc *p)
{
    if (!p)
        return;
    kctx_free(&p->ctx);
    quarantine_free(p->q);
    free(p);
}

llmos_err kproc_get(store *s, int64_t pid, kproc_info *out)
{
    json_t *j = NULL;
    llmos_err err = load_json(s, pid, &j);
    if (err)
        return err;
    info_read(j, out);
    json_decref(j);
    return LLMOS_OK;
}

llmos_err kproc_list(store *s, kproc_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    char *v = NULL;
    llmos_err err = store_setting_get(s, "kernel.next_pid", &v);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        return LLMOS_OK;
    }
    if (err)
        return err;
    int64_t next = strtoll(v, NULL, 10);
    free(v);
    if (next <= 1)
        return LLMOS_OK;
    kproc_info *list = calloc((size_t)(next - 1), sizeof *list);
    if (!list)
        return llmos_fail(LLMOS_ERR_NOMEM, "ps: no memory");
    size_t count = 0;
    for (int64_t pid = 1; pid < next; pid++) {
        err = kproc_get(s, pid, &list[count]);
        if (err == LLMOS_ERR_NOT_FOUND) {
            llmos_err_clear();
            continue;
        }
        if (err) {
            free(list);
            return err;
        }
        count++;
    }
    if (!count) {
        free(list);
        return LLMOS_OK;
    }
    *out = list;
    *n = count;
    return LLMOS_OK;
}

llmos_err kproc_kill(store *s, audit *a, int64_t pid)
{
    json_t *j = NULL;
    llmos_err err = load_json(s, pid, &j);
    if (err)
        return err;
    kproc_state st;
    if (!state_parse(ljson_get_string(j, "state", ""), &st) || kproc_state_final(st)) {
        err = llmos_fail(LLMOS_ERR_INVALID, "process %" PRId64 " has already ended (%s)", pid,
                         ljson_get_string(j, "state", "?"));
        json_decref(j);
        return err;
    }
    json_object_set_new(j, "state", json_string(kproc_state_name(KPROC_KILLED)));
    json_object_set_new(j, "reason", json_string("killed by the user"));
    llmos_buf b = {0};
    err = ljson_to_buf(j, JSON_COMPACT, &b);
    json_decref(j);
    if (!err) {
        char key[48];
        proc_key(pid, key, sizeof key);
        err = store_setting_set(s, key, b.data);
    }
    buf_free(&b);
    if (!err && a) {
        json_t *rec = json_pack("{s:I, s:s}", "pid", (json_int_t)pid, "event", "killed");
        err = audit_append(a, "process", rec);
        json_decref(rec);
    }
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
