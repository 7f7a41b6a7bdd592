/*
 * guardsvc.c - the output guard at the kernel's exits (llmos/guard.h, docs/security.md).
 *
 * What leaves the kernel is checked before it leaves:
 *   - an answer as it streams to the device (a turn's text, ksession_chat's answer): through a
 *     guard_stream, which holds back a window so that a secret split across pieces is seen
 *     whole, and redacts or stops what the policy says;
 *   - a whole answer handed out later (ksession_answer) and the content and tool calls of a
 *     ksession_chat response;
 *   - the arguments of a system call whose tool acts outside the kernel (any tool but those of
 *     pure computation, memory and the quarantine), after handles were substituted: redacted in
 *     place, or the call refused.
 * Every decision with a finding is audited ("guard": where, detector, kind, span, severity,
 * action), never the text of the finding. The kernel's guard is the config's, else guard.json
 * of the config folder, else the built-in policy; kernel_config.no_guard turns it off. When the
 * policy asks for the judge, the judge model is kernel_config.judge, else the quarantined one:
 * the text judged is untrusted and never goes near the privileged model.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"

llmos_err kguard_init(kernel *k)
{
    assert(k);
    const kernel_config *cfg = &k->cfg;
    if (cfg->no_guard)
        return LLMOS_OK;
    if (cfg->guard) {
        k->guard = cfg->guard;
        return LLMOS_OK;
    }
    llmos_err err =
        cfg->config_dir ? guard_load(cfg->config_dir, &k->own_guard) : guard_default(&k->own_guard);
    if (err)
        return err;
    if (guard_judge_requested(k->own_guard)) {
        llm_backend *judge = cfg->judge ? cfg->judge : cfg->quarantined;
        if (!judge)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "guard.json asks for the judge, but no judge or quarantined model "
                              "is configured; give one or turn the judge off");
        guard_set_judge(k->own_guard, judge);
    }
    k->guard = k->own_guard;
    return LLMOS_OK;
}

void kguard_free(kernel *k)
{
    guard_free(k->own_guard);
    k->own_guard = NULL;
    k->guard = NULL;
}

static void audit_finding(kernel *k, const char *principal, int64_t pid, const char *where,
                          const guard_finding *f, guard_action a)
{
    (void)kernel_audit_rec(
        k, "guard",
        json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "principal", principal, "pid",
                  (json_int_t)pid, "where", where, "detector", guard_detector_name(f->detector),
                  "kind", f->kind, "start", (json_int_t)f->start, "end", (json_int_t)f->end,
                  "severity", guard_severity_name(f->severity), "action", guard_action_name(a)));
}

llmos_err kguard_text(kernel *k, const char *principal, int64_t pid, const char *where,
                      const char *text, size_t len, guard_result *out)
{
    assert(k && principal && where && out);
    memset(out, 0, sizeof *out);
    if (!k->guard) {
        out->text = malloc(len + 1);
        if (!out->text)
            return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
        memcpy(out->text, text, len);
        out->text[len] = 0;
        out->len = len;
        return LLMOS_OK;
    }
    llmos_err err = guard_check(k->guard, principal, text, len, out);
    if (err)
        return err;
    for (size_t i = 0; i < out->findings.n; i++)
        audit_finding(k, principal, pid, where, &out->findings.v[i], out->actions[i]);
    return LLMOS_OK;
}

/* Check the string values of v (recursively), redacting in place; *blocked names the first
 * detector that blocks. */
static llmos_err check_json(kernel *k, const char *principal, int64_t pid, const char *where,
                            json_t *v, const char **blocked)
{
    if (json_is_string(v)) {
        guard_result r;
        llmos_err err =
            kguard_text(k, principal, pid, where, json_string_value(v), json_string_length(v), &r);
        if (err)
            return err;
        if (r.action == GUARD_BLOCK) {
            for (size_t i = 0; i < r.findings.n && !*blocked; i++)
                if (r.actions[i] == GUARD_BLOCK)
                    *blocked = guard_detector_name(r.findings.v[i].detector);
        } else if (r.action == GUARD_REDACT) {
            json_string_setn(v, r.text, r.len);
        }
        guard_result_free(&r);
        return LLMOS_OK;
    }
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            llmos_err err = check_json(k, principal, pid, where, x, blocked);
            if (err)
                return err;
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach(v, key, x)
        {
            char w[160];
            snprintf(w, sizeof w, "%s.%s", where, key);
            llmos_err err = check_json(k, principal, pid, w, x, blocked);
            if (err)
                return err;
        }
    }
    return LLMOS_OK;
}

llmos_err kguard_args(kernel *k, const kproc *p, const ktool *t, json_t *args, char *why,
                      size_t why_size)
{
    assert(k && p && t && args && why);
    why[0] = 0;
    /* tools that act only inside the kernel: pure computation, memory, the quarantine */
    if (!k->guard || (t->capability & (KCAP_COMPUTE | KCAP_MEMORY | KCAP_QUARANTINE)))
        return LLMOS_OK;
    char where[96];
    snprintf(where, sizeof where, "tool:%s", t->name);
    const char *blocked = NULL;
    llmos_err err = check_json(k, p->info.principal, p->info.pid, where, args, &blocked);
    if (err)
        return err;
    if (blocked) {
        snprintf(why, why_size,
                 "the output guard blocked the arguments of tool '%s': they hold what its "
                 "detector '%s' looks for",
                 t->name, blocked);
        return LLMOS_ERR_DENIED;
    }
    return LLMOS_OK;
}

/* ---- streams ----------------------------------------------------------------------------- */

static bool stream_emit(void *ctx, const char *text, size_t len)
{
    kguard_stream *gs = ctx;
    return gs->emit(gs->ctx, text, len);
}

static void stream_finding(void *ctx, const guard_finding *f, guard_action a)
{
    kguard_stream *gs = ctx;
    audit_finding(gs->k, gs->principal, gs->pid, gs->where, f, a);
    if (a == GUARD_BLOCK && !gs->blocked_by[0])
        snprintf(gs->blocked_by, sizeof gs->blocked_by, "%s", guard_detector_name(f->detector));
}

llmos_err kguard_stream_start(kernel *k, const char *principal, int64_t pid, const char *where,
                              guard_emit_fn emit, void *ctx, kguard_stream *gs)
{
    memset(gs, 0, sizeof *gs);
    gs->k = k;
    gs->pid = pid;
    gs->emit = emit;
    gs->ctx = ctx;
    snprintf(gs->principal, sizeof gs->principal, "%s", principal);
    snprintf(gs->where, sizeof gs->where, "%s", where);
    if (!k->guard)
        return LLMOS_OK;
    return guard_stream_new(k->guard, principal, stream_emit, stream_finding, gs, &gs->s);
}

bool kguard_stream_end(kguard_stream *gs)
{
    bool blocked = false;
    if (gs->s) {
        guard_stream_finish(gs->s, NULL);
        blocked = guard_stream_blocked(gs->s);
    }
    guard_stream_free(gs->s);
    gs->s = NULL;
    return blocked;
}
