/*
 * guard_policy.c - the output guard's policy (guard.json: an action per detector and per
 * principal, the hosts URLs may carry data to, the judge), decisions over a whole text, and the
 * stream checker that holds back a window of an answer as it is generated.
 *
 * A decision never keeps the text of a finding: guard_result_json, which the kernel audits,
 * holds detector, kind, span, severity and action only.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/guard.h"
#include "llmos/json.h"

static const char *const action_names[] = {"allow", "warn", "redact", "block"};
static const char *const severity_names[] = {"low", "medium", "high", "critical"};

const char *guard_action_name(guard_action a)
{
    return (unsigned)a <= GUARD_BLOCK ? action_names[a] : "?";
}

bool guard_action_parse(const char *name, guard_action *out)
{
    for (int i = 0; name && i <= GUARD_BLOCK; i++)
        if (strcmp(name, action_names[i]) == 0) {
            *out = (guard_action)i;
            return true;
        }
    return false;
}

const char *guard_severity_name(guard_severity s)
{
    return (unsigned)s <= GUARD_CRITICAL ? severity_names[s] : "?";
}

/* The built-in actions, one per detector (docs/security.md, "The output guard"). */
static const guard_action default_actions[GUARD_DETECTOR_COUNT_] = {
    [GUARD_CREDIT_CARD] = GUARD_REDACT, [GUARD_IBAN] = GUARD_REDACT,
    [GUARD_API_KEY] = GUARD_REDACT,     [GUARD_PRIVATE_KEY] = GUARD_BLOCK,
    [GUARD_HIGH_ENTROPY] = GUARD_WARN,  [GUARD_EMAIL] = GUARD_WARN,
    [GUARD_PHONE] = GUARD_WARN,         [GUARD_EXFIL_URL] = GUARD_REDACT,
    [GUARD_VULN_C] = GUARD_WARN,        [GUARD_VULN_PYTHON] = GUARD_WARN,
    [GUARD_VULN_SQL] = GUARD_WARN,      [GUARD_VULN_SHELL] = GUARD_WARN,
    [GUARD_JUDGE] = GUARD_BLOCK,
};

typedef struct guard_principal {
    char *name;
    signed char action[GUARD_DETECTOR_COUNT_]; /* -1: as the defaults */
} guard_principal;

struct guard {
    guard_action action[GUARD_DETECTOR_COUNT_];
    guard_principal *principals;
    size_t n_principals;
    char **hosts;
    size_t n_hosts;
    bool judge_on;             /* the policy asks for the judge */
    llm_backend *judge;        /* borrowed; the judge runs when judge_on and this is set */
    uint32_t judge_categories; /* S-categories that count (0: all) */
    bool judge_fail_open;      /* a malformed verdict or failed call: allow (else the action) */
};

void guard_free(guard *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_principals; i++)
        free(g->principals[i].name);
    free(g->principals);
    for (size_t i = 0; i < g->n_hosts; i++)
        free(g->hosts[i]);
    free(g->hosts);
    free(g);
}

static llmos_err parse_actions(const json_t *obj, const char *what, signed char *out)
{
    if (!json_is_object(obj))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: expected an object of detector: action", what);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        guard_detector d;
        guard_action a;
        if (!guard_detector_parse(key, &d))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s: unknown detector \"%s\" (credit_card, iban, api_key, "
                              "private_key, high_entropy, email, phone, exfil_url, vuln_c, "
                              "vuln_python, vuln_sql, vuln_shell, judge)",
                              what, key);
        if (!guard_action_parse(json_string_value(v), &a))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s.%s: expected \"allow\", \"warn\", \"redact\" or \"block\"", what,
                              key);
        out[d] = (signed char)a;
    }
    return LLMOS_OK;
}

static llmos_err parse_categories(const json_t *v, uint32_t *out)
{
    *out = 0;
    if (!json_is_array(v))
        return llmos_fail(LLMOS_ERR_FORMAT, "guard: judge.categories: expected [\"S1\", ...]");
    size_t i;
    json_t *c;
    json_array_foreach(v, i, c)
    {
        const char *s = json_string_value(c);
        char *end = NULL;
        long n = s && s[0] == 'S' && s[1] >= '1' && s[1] <= '9' ? strtol(s + 1, &end, 10) : 0;
        if (!end || *end || n < 1 || n > 14)
            return llmos_fail(LLMOS_ERR_FORMAT, "guard: judge.categories[%zu]: expected S1 to S14",
                              i);
        *out |= 1u << (n - 1);
    }
    return LLMOS_OK;
}

llmos_err guard_parse(const char *text, size_t len, const char *what, guard **out)
{
    assert(out && what);
    *out = NULL;
    json_t *j = NULL;
    llmos_err err = ljson_parse_text(text, len, what, 16, &j);
    if (err)
        return err;
    guard *g = calloc(1, sizeof *g);
    if (!g) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
    }
    memcpy(g->action, default_actions, sizeof g->action);
    if (!json_is_object(j)) {
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: expected a JSON object", what);
        goto fail;
    }
    json_t *acts = json_object_get(j, "actions");
    if (acts) {
        signed char a[GUARD_DETECTOR_COUNT_];
        memset(a, -1, sizeof a);
        if ((err = parse_actions(acts, "guard \"actions\"", a)))
            goto fail;
        for (int d = 0; d < GUARD_DETECTOR_COUNT_; d++)
            if (a[d] >= 0)
                g->action[d] = (guard_action)a[d];
    }
    json_t *pr = json_object_get(j, "principals");
    if (pr && !json_is_object(pr)) {
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: \"principals\" must be an object", what);
        goto fail;
    }
    g->principals = calloc(json_object_size(pr) + 1, sizeof *g->principals);
    if (!g->principals) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
        goto fail;
    }
    const char *key;
    json_t *v;
    json_object_foreach(pr, key, v)
    {
        guard_principal *p = &g->principals[g->n_principals];
        memset(p->action, -1, sizeof p->action);
        char name[128];
        snprintf(name, sizeof name, "guard \"principals\".%s", key);
        if ((err = parse_actions(v, name, p->action)))
            goto fail;
        if (!(p->name = strdup(key))) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
            goto fail;
        }
        g->n_principals++;
    }
    json_t *hosts = json_object_get(j, "allow_hosts");
    if (hosts && !json_is_array(hosts)) {
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: \"allow_hosts\" must be an array of host names",
                         what);
        goto fail;
    }
    g->hosts = calloc(json_array_size(hosts) + 1, sizeof *g->hosts);
    if (!g->hosts) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
        goto fail;
    }
    size_t i;
    json_array_foreach(hosts, i, v)
    {
        const char *h = json_string_value(v);
        if (!h || !*h || strchr(h, '/') || strchr(h, ' ')) {
            err =
                llmos_fail(LLMOS_ERR_FORMAT, "%s: allow_hosts[%zu]: expected a host name", what, i);
            goto fail;
        }
        if (!(g->hosts[g->n_hosts] = strdup(h))) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
            goto fail;
        }
        g->n_hosts++;
    }
    json_t *judge = json_object_get(j, "judge");
    if (judge) {
        if (!json_is_object(judge)) {
            err = llmos_fail(LLMOS_ERR_FORMAT, "%s: \"judge\" must be an object", what);
            goto fail;
        }
        g->judge_on = json_is_true(json_object_get(judge, "enabled"));
        const char *a = ljson_get_string(judge, "action", NULL);
        if (a && !guard_action_parse(a, &g->action[GUARD_JUDGE])) {
            err = llmos_fail(LLMOS_ERR_FORMAT, "%s: judge.action: expected allow, warn or block",
                             what);
            goto fail;
        }
        if (g->action[GUARD_JUDGE] == GUARD_REDACT)
            g->action[GUARD_JUDGE] = GUARD_BLOCK; /* the span is the whole text */
        json_t *cats = json_object_get(judge, "categories");
        if (cats && (err = parse_categories(cats, &g->judge_categories)))
            goto fail;
        const char *fail = ljson_get_string(judge, "on_failure", "closed");
        if (strcmp(fail, "open") != 0 && strcmp(fail, "closed") != 0) {
            err =
                llmos_fail(LLMOS_ERR_FORMAT, "%s: judge.on_failure: expected open or closed", what);
            goto fail;
        }
        g->judge_fail_open = strcmp(fail, "open") == 0;
    }
    json_decref(j);
    *out = g;
    return LLMOS_OK;
fail:
    json_decref(j);
    guard_free(g);
    return err;
}

llmos_err guard_default(guard **out)
{
    return guard_parse("{}", 2, "built-in guard policy", out);
}

llmos_err guard_load(const char *config_dir, guard **out)
{
    assert(out);
    char path[4096];
    snprintf(path, sizeof path, "%s/guard.json", config_dir ? config_dir : ".");
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, 1 << 20, &b);
    if (err == LLMOS_ERR_NOT_FOUND || (err == LLMOS_ERR_IO && !b.len)) {
        buf_free(&b);
        llmos_err_clear();
        return guard_default(out);
    }
    if (!err)
        err = guard_parse(b.data, b.len, path, out);
    buf_free(&b);
    return err;
}

guard_action guard_action_for(const guard *g, const char *principal, guard_detector d)
{
    assert(g && (unsigned)d < GUARD_DETECTOR_COUNT_);
    for (size_t i = 0; principal && i < g->n_principals; i++)
        if (strcmp(g->principals[i].name, principal) == 0 && g->principals[i].action[d] >= 0)
            return (guard_action)g->principals[i].action[d];
    return g->action[d];
}

void guard_set_judge(guard *g, llm_backend *judge)
{
    assert(g);
    g->judge = judge;
    g->judge_on = judge != NULL;
}

bool guard_judge_requested(const guard *g)
{
    return g && g->judge_on;
}

bool guard_judge_enabled(const guard *g)
{
    return g && g->judge_on && g->judge;
}

void guard_result_free(guard_result *r)
{
    if (!r)
        return;
    guard_findings_free(&r->findings);
    free(r->actions);
    if (r->text)
        llmos_secure_zero(r->text, r->len);
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* text with the spans of redacted findings replaced by "[REDACTED:<detector>]" (overlapping
 * spans merged), malloc'd. */
static char *redact(const char *text, size_t len, const guard_findings *f, const guard_action *acts,
                    size_t *out_len)
{
    llmos_buf b = {0};
    size_t pos = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < f->n; i++) {
        if (acts[i] != GUARD_REDACT)
            continue;
        const guard_finding *x = &f->v[i];
        size_t s = x->start, e = x->end;
        if (e <= pos)
            continue;
        if (s < pos)
            s = pos;
        ok = !buf_append(&b, text + pos, s - pos) &&
             !buf_printf(&b, "[REDACTED:%s]", guard_detector_name(x->detector));
        pos = e;
    }
    if (ok)
        ok = !buf_append(&b, text + pos, len - pos) && !buf_reserve(&b, 1);
    if (!ok) {
        buf_free(&b);
        return NULL;
    }
    b.data[b.len] = 0;
    return buf_detach(&b, out_len);
}

static llmos_err decide(const guard *g, const char *principal, const char *text, size_t len,
                        guard_result *r)
{
    free(r->actions);
    r->actions = calloc(r->findings.n + 1, sizeof *r->actions);
    if (!r->actions)
        return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
    r->action = GUARD_ALLOW;
    for (size_t i = 0; i < r->findings.n; i++) {
        r->actions[i] = guard_action_for(g, principal, r->findings.v[i].detector);
        if (r->actions[i] > r->action)
            r->action = r->actions[i];
    }
    if (r->text)
        llmos_secure_zero(r->text, r->len);
    free(r->text);
    r->text = NULL;
    r->len = 0;
    if (r->action == GUARD_BLOCK)
        return LLMOS_OK;
    r->text = redact(text, len, &r->findings, r->actions, &r->len);
    return r->text ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
}

llmos_err guard_check(const guard *g, const char *principal, const char *text, size_t len,
                      guard_result *out)
{
    assert(g && out && (text || len == 0));
    memset(out, 0, sizeof *out);
    if (!text)
        text = "";
    llmos_err err =
        guard_scan(text, len, (const char *const *)g->hosts, g->n_hosts, &out->findings);
    if (!err)
        err = decide(g, principal, text, len, out);
    if (!err && out->action != GUARD_BLOCK && guard_judge_enabled(g) &&
        guard_action_for(g, principal, GUARD_JUDGE) != GUARD_ALLOW && len > 0) {
        guard_verdict v = {0};
        llmos_err jerr = guard_judge(g->judge, text, len, 64, &v);
        if (jerr == LLMOS_ERR_CANCELLED || jerr == LLMOS_ERR_NOMEM) {
            guard_result_free(out);
            return jerr;
        }
        bool counts = v.unsafe && (!g->judge_categories || (v.categories & g->judge_categories));
        if (jerr) {
            out->judge_failed = true;
            llmos_err_clear();
            counts = !g->judge_fail_open;
        }
        if (counts) {
            guard_finding f = {GUARD_JUDGE, 0, len, GUARD_HIGH,
                               jerr ? "the judge's verdict could not be read"
                                    : "the judge model found the text unsafe"};
            guard_findings *fs = &out->findings;
            if (fs->n == fs->cap) {
                guard_finding *nv = realloc(fs->v, (fs->cap * 2 + 1) * sizeof *nv);
                if (!nv) {
                    guard_result_free(out);
                    return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
                }
                fs->v = nv;
                fs->cap = fs->cap * 2 + 1;
            }
            fs->v[fs->n++] = f;
            err = decide(g, principal, text, len, out);
        }
    }
    if (err)
        guard_result_free(out);
    return err;
}

llmos_err guard_mask_secrets(const char *text, size_t len, char **out)
{
    assert(out && (text || len == 0));
    *out = NULL;
    guard_findings f = {0};
    llmos_err err = guard_scan(text ? text : "", len, NULL, 0, &f);
    if (err) {
        guard_findings_free(&f);
        return err;
    }
    guard_action *acts = calloc(f.n + 1, sizeof *acts);
    if (!acts) {
        guard_findings_free(&f);
        return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
    }
    for (size_t i = 0; i < f.n; i++)
        acts[i] = f.v[i].detector <= GUARD_PHONE ? GUARD_REDACT : GUARD_ALLOW;
    if (!err && !(*out = redact(text ? text : "", len, &f, acts, NULL)))
        err = llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
    free(acts);
    guard_findings_free(&f);
    return err;
}

json_t *guard_result_json(const guard_result *r)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < r->findings.n; i++) {
        const guard_finding *f = &r->findings.v[i];
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:I, s:I, s:s, s:s}", "detector",
                           guard_detector_name(f->detector), "kind", f->kind, "start",
                           (json_int_t)f->start, "end", (json_int_t)f->end, "severity",
                           guard_severity_name(f->severity), "action",
                           guard_action_name(r->actions ? r->actions[i] : GUARD_ALLOW)));
    }
    json_t *o = json_pack("{s:s, s:o}", "action", guard_action_name(r->action), "findings",
                          arr ? arr : json_array());
    if (o && r->judge_failed)
        json_object_set_new(o, "judge_failed", json_true());
    return o;
}

/* ---- streaming ---------------------------------------------------------------------------- */
/*
 * The stream keeps every byte it was given (an answer is small) and how far it has released.
 * After each piece it rescans what it has not released and releases up to a safe point:
 *   - at least GUARD_STREAM_WINDOW bytes behind the newest byte (no span a detector reports is
 *     longer than that, but for PEM blocks, which are held from their BEGIN line until their
 *     END line or the end of the stream);
 *   - never inside a finding, and never inside the last run of non-blank bytes (it may go on),
 *     unless that run is longer than GUARD_STREAM_MAX_RUN;
 *   - at a blank, so that the next scan starts at a word's beginning;
 *   - with the judge on, nothing before the end (the judge reads the whole text).
 * Findings that end before the safe point are settled: told to on_finding once, redacted as
 * the policy says; one that blocks stops the stream for good.
 */
struct guard_stream {
    const guard *g;
    char *principal;
    guard_emit_fn emit;
    guard_finding_fn on_finding;
    void *ctx;
    llmos_buf all;
    size_t released;
    bool blocked, stopped;
    guard_action worst;
};

llmos_err guard_stream_new(const guard *g, const char *principal, guard_emit_fn emit,
                           guard_finding_fn on_finding, void *ctx, guard_stream **out)
{
    assert(g && emit && out);
    guard_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->principal = strdup(principal ? principal : ""))) {
        free(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
    }
    s->g = g;
    s->emit = emit;
    s->on_finding = on_finding;
    s->ctx = ctx;
    *out = s;
    return LLMOS_OK;
}

void guard_stream_free(guard_stream *s)
{
    if (!s)
        return;
    if (s->all.data)
        llmos_secure_zero(s->all.data, s->all.len);
    buf_free(&s->all);
    free(s->principal);
    free(s);
}

bool guard_stream_blocked(const guard_stream *s)
{
    return s && s->blocked;
}

/* Release what is safe; at the end (final) everything. */
static bool release(guard_stream *s, bool final)
{
    if (s->blocked || s->stopped)
        return !s->stopped;
    const char *t = s->all.data ? s->all.data : "";
    size_t len = s->all.len;
    size_t safe = len;
    if (!final) {
        if (guard_judge_enabled(s->g))
            return true;
        safe = len > GUARD_STREAM_WINDOW ? len - GUARD_STREAM_WINDOW : 0;
        /* back to a blank, and before the last unfinished run */
        size_t want = safe;
        while (safe > s->released &&
               !(t[safe - 1] == ' ' || t[safe - 1] == '\n' || t[safe - 1] == '\t'))
            safe--;
        /* a run of non-blank bytes longer than GUARD_STREAM_MAX_RUN (no secret format is that
         * long in one word) is released behind the window anyway, at a UTF-8 boundary */
        if (safe == s->released && len - s->released > GUARD_STREAM_MAX_RUN) {
            safe = want;
            while (safe > s->released && ((unsigned char)t[safe] & 0xC0) == 0x80)
                safe--;
        }
    }
    /* release in pieces of at least 32 bytes: each release scans what is held, and a scan per
     * token of a few bytes would cost ten times as much (bench/guard.c) */
    if (!final && safe < s->released + 32)
        return true;
    guard_result r = {0};
    const char *part = t + s->released;
    size_t plen = len - s->released;
    llmos_err err =
        guard_scan(part, plen, (const char *const *)s->g->hosts, s->g->n_hosts, &r.findings);
    if (!err && final && guard_judge_enabled(s->g)) {
        /* the judge reads the whole held text: guard_check does both */
        guard_result_free(&r);
        err = guard_check(s->g, s->principal, part, plen, &r);
    }
    if (err) {
        /* cannot check: release nothing more (fail closed) */
        guard_result_free(&r);
        llmos_err_clear();
        s->blocked = true;
        s->worst = GUARD_BLOCK;
        return true;
    }
    size_t cut = safe - s->released;
    if (!final) {
        /* never inside a finding; a PEM block stays held until it ends */
        for (size_t i = 0; i < r.findings.n; i++) {
            const guard_finding *f = &r.findings.v[i];
            if (f->start < cut &&
                (f->end > cut || (f->detector == GUARD_PRIVATE_KEY && f->end == plen)))
                cut = f->start;
        }
    }
    /* keep the findings inside [0, cut) */
    size_t w = 0;
    for (size_t i = 0; i < r.findings.n; i++)
        if (r.findings.v[i].end <= cut || final)
            r.findings.v[w++] = r.findings.v[i];
    r.findings.n = w;
    err = decide(s->g, s->principal, part, cut, &r);
    if (err) {
        guard_result_free(&r);
        llmos_err_clear();
        s->blocked = true;
        s->worst = GUARD_BLOCK;
        return true;
    }
    for (size_t i = 0; i < r.findings.n; i++) {
        guard_finding f = r.findings.v[i];
        f.start += s->released;
        f.end += s->released;
        if (s->on_finding)
            s->on_finding(s->ctx, &f, r.actions[i]);
    }
    if (r.action > s->worst)
        s->worst = r.action;
    if (r.action == GUARD_BLOCK) {
        s->blocked = true;
    } else if (r.len > 0 && !s->emit(s->ctx, r.text, r.len)) {
        s->stopped = true;
    }
    s->released += cut;
    guard_result_free(&r);
    return !s->stopped;
}

bool guard_stream_push(guard_stream *s, const char *text, size_t len)
{
    assert(s && (text || len == 0));
    if (s->blocked)
        return true;
    if (s->stopped)
        return false;
    if (buf_append(&s->all, text, len)) {
        s->blocked = true; /* out of memory: release nothing more */
        return true;
    }
    return release(s, false);
}

bool guard_stream_finish(guard_stream *s, guard_action *action)
{
    assert(s);
    bool ok = release(s, true);
    if (action)
        *action = s->worst;
    return ok;
}
