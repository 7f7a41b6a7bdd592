/*
 * syscall.c - system calls: the tool table and the path of one tool call from the model.
 *
 *   find the tool -> capability check -> parse arguments -> schema validation -> substitute
 *   handles (noting the origin of each argument) -> flow-policy check -> run -> label the
 *   result: trusted tools with clean inputs give TOOL text; untrusted tools, and any tool fed
 *   an untrusted value, give a new handle. Every refusal goes back to the model as the call's
 *   result with a clear error, and every call (allowed or not) is audited.
 *
 * The audit records hold the arguments as the model wrote them (with handles), never the
 * substituted untrusted values.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/grammar.h"
#include "llmos/json.h"

#if defined(__has_include)
#if __has_include("llmos/tools.h")
#include "llmos/tools.h"
#define KERNEL_HAVE_CALCULATOR 1
#endif
#endif

/* ---- built-in tools -------------------------------------------------------------------- */

static llmos_err ask_quarantined_run(kernel *k, kproc *p, const json_t *args, llmos_buf *out)
{
    trusted_text h;
    llmos_err err = quarantine_ask(p->q, k->cfg.quarantined, ljson_get_string(args, "handle", ""),
                                   ljson_get_string(args, "question", ""), 256, &h);
    /* This tool's result goes to the privileged model as trusted text, and the quarantined
     * backend's own error message could quote the untrusted data it was sent (a server echoing
     * the request): only llmos's own messages (bad handle, no model) are passed on. */
    if (err && err != LLMOS_ERR_NOT_FOUND && err != LLMOS_ERR_UNSUPPORTED) {
        LOG_DEBUG("kernel", "quarantined model failed: %s", llmos_errmsg());
        return llmos_fail(err,
                          "the quarantined model failed (%s); details are withheld since they "
                          "may quote untrusted data",
                          llmos_strerror(err));
    }
    if (err)
        return err;
    if (buf_printf(out, "the quarantined model's answer is stored as %s", h.text))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return LLMOS_OK;
}

/* Its arguments are passed as written: the handle is a name for quarantine_ask to resolve, and
 * the answer comes back as a new handle, so its output is trusted (it is llmos's own text). */
static const ktool ktool_ask_quarantined = {
    "ask_quarantined",
    "Ask a separate, tool-less model a question about an untrusted value you hold as a handle "
    "($VAR1, ...). The answer is stored as a new handle.",
    "{\"type\": \"object\", \"properties\": {\"handle\": {\"type\": \"string\"}, "
    "\"question\": {\"type\": \"string\"}}, \"required\": [\"handle\", \"question\"], "
    "\"additionalProperties\": false}",
    KCAP_QUARANTINE,
    true,
    ask_quarantined_run,
    true,
};

#ifdef KERNEL_HAVE_CALCULATOR
static llmos_err calculator_run(kernel *k, kproc *p, const json_t *args, llmos_buf *out)
{
    (void)k;
    (void)p;
    return calc_eval(ljson_get_string(args, "expression", ""), out);
}

static const ktool ktool_calculator = {
    "calculator",
    "Evaluate an arithmetic expression exactly (numbers, + - * / ^, parentheses, functions).",
    "{\"type\": \"object\", \"properties\": {\"expression\": {\"type\": \"string\"}}, "
    "\"required\": [\"expression\"], \"additionalProperties\": false}",
    KCAP_COMPUTE,
    true,
    calculator_run,
    false,
};
#endif

const ktool *ktool_builtin(size_t *n)
{
    static ktool table[3];
    static size_t count;
    if (!count) {
        size_t i = 0;
#ifdef KERNEL_HAVE_CALCULATOR
        table[i++] = ktool_calculator;
#endif
        table[i++] = ktool_send_message;
        table[i++] = ktool_ask_quarantined;
        count = i;
    }
    *n = count;
    return table;
}

/* ---- one system call -------------------------------------------------------------------- */

static const ktool *find_tool(kernel *k, const char *name)
{
    for (size_t i = 0; i < k->n_tools; i++)
        if (name && strcmp(k->tools[i].name, name) == 0)
            return &k->tools[i];
    return NULL;
}

/* Audit one call; `decision` is "ok", "error", "denied-capability", "denied-policy", ... */
static void audit_call(kernel *k, const kproc *p, const llm_tool_call *call, const char *decision,
                       const char *detail, const char *origin)
{
    json_t *rec = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "pid", (json_int_t)p->info.pid,
                            "tool", call->name ? call->name : "", "arguments",
                            call->arguments ? call->arguments : "", "decision", decision, "detail",
                            detail ? detail : "", "origin", origin ? origin : "");
    if (!rec) /* arguments not valid UTF-8: record without them */
        rec = json_pack("{s:I, s:s, s:s}", "pid", (json_int_t)p->info.pid, "decision", decision,
                        "detail", "arguments were not UTF-8 text");
    (void)kernel_audit_rec(k, strncmp(decision, "denied-policy", 13) == 0 ? "policy" : "syscall",
                           rec);
}

static llmos_err refuse(llmos_buf *result, bool *is_error, const char *fmt, const char *a,
                        const char *b)
{
    *is_error = true;
    buf_clear(result);
    if (buf_printf(result, fmt, a, b))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return LLMOS_OK;
}

llmos_err kernel_syscall(kernel *k, kproc *p, const llm_tool_call *call, llmos_buf *result,
                         bool *is_error)
{
    *is_error = false;
    buf_clear(result);
    const ktool *t = find_tool(k, call->name);
    if (!t) {
        llmos_buf names = {0};
        for (size_t i = 0; i < k->n_tools; i++)
            if ((p->info.caps & k->tools[i].capability) &&
                buf_printf(&names, "%s%s", names.len ? ", " : "", k->tools[i].name))
                break;
        audit_call(k, p, call, "error", "unknown tool", NULL);
        llmos_err err = refuse(result, is_error, "error: there is no tool '%s'; available: %s",
                               call->name ? call->name : "", names.len ? names.data : "none");
        buf_free(&names);
        return err;
    }
    /* Capability: the process must hold the tool's. */
    if (!(p->info.caps & t->capability)) {
        char need[64];
        kcap_format(t->capability, need, sizeof need);
        audit_call(k, p, call, "denied-capability", need, NULL);
        return refuse(result, is_error,
                      "error: permission denied: tool '%s' needs the capability '%s', which this "
                      "process does not have",
                      t->name, need);
    }
    /* Arguments: JSON object, valid against the tool's schema (as the model wrote them). */
    json_t *args = NULL, *schema = NULL, *real = NULL, *members = NULL;
    llmos_err err =
        ljson_parse_text(call->arguments ? call->arguments : "",
                         call->arguments ? strlen(call->arguments) : 0, "arguments", 64, &args);
    if (!err && !json_is_object(args))
        err = llmos_fail(LLMOS_ERR_INVALID, "arguments: expected a JSON object");
    if (!err) {
        err = ljson_parse_text(t->parameters, strlen(t->parameters), t->name, 0, &schema);
        if (err) {
            err = llmos_fail_context(LLMOS_ERR_INTERNAL, "tool %s has a bad schema: ", t->name);
            goto done;
        }
        err = jschema_validate(schema, args, "arguments");
    }
    if (err) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", llmos_errmsg());
        audit_call(k, p, call, "invalid-arguments", msg, NULL);
        err = refuse(result, is_error, "error: bad arguments for tool '%s': %s", t->name, msg);
        goto done;
    }
    /* Handles -> values, with the origin of each argument; then the flow policy. */
    bool tainted = false;
    if (t->takes_handles) {
        real = json_incref(args);
    } else {
        err = quarantine_substitute(p->q, args, ORIGIN_USER, &real, &members);
        if (err) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", llmos_errmsg());
            audit_call(k, p, call, "invalid-arguments", msg, NULL);
            err = refuse(result, is_error, "error: tool '%s': %s", t->name, msg);
            goto done;
        }
        err = policy_check(k->flow, t->name, members);
        if (err == LLMOS_ERR_DENIED) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", llmos_errmsg());
            audit_call(k, p, call, "denied-policy", msg, NULL);
            err = refuse(result, is_error, "error: refused: %s%s", msg, "");
            goto done;
        }
        if (err)
            goto done;
        const char *key;
        json_t *list;
        json_object_foreach(members, key, list)
        {
            size_t i;
            json_t *o;
            json_array_foreach(list, i, o) if (strcmp(json_string_value(o), "untrusted") == 0)
                tainted = true;
        }
    }
    /* Run. A tool fed an untrusted value may echo it (in output or in an error message), so
     * then its result is untrusted whatever the tool is. */
    llmos_buf out = {0};
    llmos_err run_err = t->run(k, p, real, &out);
    bool trusted = t->output_trusted && !tainted;
    if (run_err) {
        buf_clear(&out);
        if (buf_printf(&out, "error: tool '%s' failed: %s", t->name, llmos_errmsg())) {
            buf_free(&out);
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
            goto done;
        }
        *is_error = true;
    }
    const char *od = out.data ? out.data : "";
    if (trusted && (!utf8_valid(od, out.len) || memchr(od, 0, out.len))) {
        buf_clear(&out);
        *is_error = true;
        if (buf_printf(&out, "error: tool '%s' returned bytes that are not UTF-8 text", t->name)) {
            buf_free(&out);
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
            goto done;
        }
    }
    if (trusted) {
        err = buf_append(result, out.data ? out.data : "", out.len) ? LLMOS_ERR_NOMEM : LLMOS_OK;
    } else {
        char src[96];
        snprintf(src, sizeof src, "tool:%s", t->name);
        untrusted_text *u = untrusted_new(out.data ? out.data : "", out.len, src);
        trusted_text h = trusted_system("");
        err = u ? quarantine_put(p->q, u, &h) : llmos_fail(LLMOS_ERR_NOMEM, "no memory");
        if (!err && buf_printf(result,
                               "%s: the %s of tool '%s' is untrusted and stored as %s. You "
                               "cannot read it; you may pass %s to tools or show it to the "
                               "user, or ask_quarantined a question about it.",
                               run_err ? "error" : "ok", run_err ? "error message" : "output",
                               t->name, h.text, h.text))
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    buf_free(&out);
    audit_call(k, p, call, run_err ? "error" : "ok", NULL, trusted ? "tool" : "untrusted");
done:
    json_decref(args);
    json_decref(schema);
    json_decref(real);
    json_decref(members);
    return err;
}
