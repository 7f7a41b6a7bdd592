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
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/grammar.h"
#include "llmos/json.h"
#include "llmos/tools.h"

/* ---- the table --------------------------------------------------------------------------- */

/* The built-in tools, one line each; a tool is one file in src/tools/ and one line here. */
static const ktool *const builtin[] = {
    &tool_calculator,
    &tool_send_message,
    &tool_ask_quarantined,
    &tool_core_memory_append,
    &tool_core_memory_replace,
    &tool_conversation_search,
    &tool_archival_memory_insert,
    &tool_archival_memory_search,
    &tool_python,
    &tool_shell,
    &tool_files,
    &tool_browser,
};

const ktool *const *ktool_builtin(size_t *n)
{
    *n = LLMOS_ARRAY_LEN(builtin);
    return builtin;
}

/* ---- one system call -------------------------------------------------------------------- */

/* Audit one call; `decision` is "ok", "error", "denied-capability", "denied-policy", ... */
static void audit_call(kernel *k, const kproc *p, const llm_tool_call *call, const char *decision,
                       const char *detail, const char *origin)
{
    /* with the output guard on, secrets and personal data in the arguments are masked: the
     * audit log keeps what was called, not the secret (the guard's own record has its span) */
    const char *args = call->arguments ? call->arguments : "";
    char *masked = NULL;
    if (k->guard && guard_mask_secrets(args, strlen(args), &masked) == LLMOS_OK)
        args = masked;
    json_t *rec =
        json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "pid", (json_int_t)p->info.pid, "tool",
                  call->name ? call->name : "", "arguments", args, "decision", decision, "detail",
                  detail ? detail : "", "origin", origin ? origin : "");
    free(masked);
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
    const char *origin;
    return ksyscall(k, NULL, p, call, result, is_error, &origin);
}

llmos_err ksyscall(kernel *k, kturn *turn, kproc *p, const llm_tool_call *call, llmos_buf *result,
                   bool *is_error, const char **origin)
{
    assert(k && p && call && result && is_error && origin);
    *is_error = false;
    *origin = "system";
    buf_clear(result);
    const ktool *t = kernel_find_tool(k, call->name);
    if (!t) {
        llmos_buf names = {0};
        for (size_t i = 0; i < k->n_tools; i++)
            if ((p->info.caps & k->tools[i]->capability) &&
                buf_printf(&names, "%s%s", names.len ? ", " : "", k->tools[i]->name))
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
    /* A tool this machine cannot run (no sandbox here) says why. */
    if (t->available && t->available() != LLMOS_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", llmos_errmsg());
        audit_call(k, p, call, "error", why, NULL);
        return refuse(result, is_error, "error: tool '%s' cannot run on this machine: %s", t->name,
                      why);
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
    /* The output guard: what a tool that acts outside receives leaves the kernel. */
    {
        char why[300];
        err = kguard_args(k, p, t, real, why, sizeof why);
        if (err == LLMOS_ERR_DENIED) {
            audit_call(k, p, call, "denied-guard", why, NULL);
            err = refuse(result, is_error, "error: refused: %s%s", why, "");
            goto done;
        }
        if (err)
            goto done;
    }
    /* Run. A tool fed an untrusted value may echo it (in output or in an error message), so
     * then its result is untrusted whatever the tool is. */
    llmos_buf out = {0};
    ktool_host host = {.k = k, .turn = turn, .p = p};
    ktool_env env = {.args = real,
                     .pid = p->info.pid,
                     .principal = p->info.principal,
                     .out = &out,
                     .untrusted_args = tainted,
                     .host = &host};
    llmos_err run_err = t->run(&env);
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
    *origin = trusted ? "tool" : "untrusted";
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
