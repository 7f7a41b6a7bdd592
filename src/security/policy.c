/*
 * policy.c - the flow policy: which origins may flow into which tool arguments.
 *
 * A policy is a list of rules {tool, argument, allow[origins]} and a default set. The first
 * rule whose tool and argument match ("*" matches any) decides for an argument; otherwise the
 * default does. The built-in policy denies by default: an untrusted value may flow only into
 * arguments a rule names, and the rules name the flows that are safe by design (the text of a
 * message to the user, which is how the user sees outside content; a calculator's expression,
 * whose result is tainted in turn). So a tool llmos does not know (an `http_post(url=$VAR1)`
 * from a plug-in) never receives untrusted data unless the user's policy says it may, and
 * message recipients and commands stay out of reach of injected text: the two ways it turns
 * into an action with effect outside (exfiltration to an address the attacker chose; code
 * execution).
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/security.h"

/* A bit per origin; no other bit is ever set in an allow set. */
#define ORIGIN_BITS ((1u << ORIGIN_COUNT_) - 1)

typedef struct policy_rule {
    char *tool, *argument;
    unsigned allow; /* bit per origin */
} policy_rule;

struct policy {
    policy_rule *rules;
    size_t n;
    unsigned deflt;
};

static const char default_policy_json[] =
    "{\"rules\": ["
    "{\"tool\": \"send_message\", \"argument\": \"recipient\","
    " \"allow\": [\"system\", \"user\", \"tool\"]},"
    "{\"tool\": \"send_message\", \"argument\": \"text\","
    " \"allow\": [\"system\", \"user\", \"tool\", \"untrusted\"]},"
    "{\"tool\": \"calculator\", \"argument\": \"expression\","
    " \"allow\": [\"system\", \"user\", \"tool\", \"untrusted\"]},"
    "{\"tool\": \"archival_memory_insert\", \"argument\": \"content\","
    " \"allow\": [\"system\", \"user\", \"tool\", \"untrusted\"]},"
    "{\"tool\": \"python\", \"argument\": \"*\", \"allow\": [\"system\", \"user\"]},"
    "{\"tool\": \"shell\", \"argument\": \"*\", \"allow\": [\"system\", \"user\"]},"
    "{\"tool\": \"files\", \"argument\": \"content\","
    " \"allow\": [\"system\", \"user\", \"tool\", \"untrusted\"]},"
    "{\"tool\": \"files\", \"argument\": \"new\","
    " \"allow\": [\"system\", \"user\", \"tool\", \"untrusted\"]},"
    "{\"tool\": \"run_command\", \"argument\": \"*\", \"allow\": [\"system\", \"user\"]}"
    "], \"default\": [\"system\", \"user\", \"tool\"]}";

void policy_free(policy *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->rules[i].tool);
        free(p->rules[i].argument);
    }
    free(p->rules);
    free(p);
}

static llmos_err parse_origins(const json_t *arr, const char *what, unsigned *out)
{
    assert(what && out);
    if (!json_is_array(arr))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: expected an array of origins", what);
    *out = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        llmos_origin o;
        if (!origin_parse(json_string_value(v), &o))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s[%zu]: expected one of system, user, tool, untrusted", what, i);
        assert((unsigned)o < ORIGIN_COUNT_);
        *out |= 1u << o;
    }
    return LLMOS_OK;
}

llmos_err policy_parse(const char *text, size_t len, const char *what, policy **out)
{
    assert((text || len == 0) && what && out);
    *out = NULL;
    json_t *j = NULL;
    llmos_err err = ljson_parse_text(text, len, what, 32, &j);
    if (err)
        return err;
    policy *p = calloc(1, sizeof *p);
    if (!p) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_NOMEM, "policy: no memory");
    }
    p->deflt = ORIGIN_BITS;
    json_t *d = json_object_get(j, "default");
    if (d && (err = parse_origins(d, "policy \"default\"", &p->deflt)))
        goto fail;
    json_t *rules = json_object_get(j, "rules");
    if (rules && !json_is_array(rules)) {
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: \"rules\" must be an array", what);
        goto fail;
    }
    p->rules = calloc(json_array_size(rules) + 1, sizeof *p->rules);
    if (!p->rules) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "policy: no memory");
        goto fail;
    }
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        const char *tool = ljson_get_string(r, "tool", NULL);
        const char *arg = ljson_get_string(r, "argument", NULL);
        if (!tool || !arg) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "%s: rules[%zu] needs \"tool\" and \"argument\" strings", what, i);
            goto fail;
        }
        char name[64];
        snprintf(name, sizeof name, "rules[%zu].allow", i);
        assert(p->n == i); /* one rule per array element, in room for all of them */
        policy_rule *pr = &p->rules[p->n];
        if ((err = parse_origins(json_object_get(r, "allow"), name, &pr->allow)))
            goto fail;
        pr->tool = strdup(tool);
        pr->argument = strdup(arg);
        p->n++;
        if (!pr->tool || !pr->argument) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "policy: no memory");
            goto fail;
        }
    }
    json_decref(j);
    assert((p->deflt & ~ORIGIN_BITS) == 0);
    *out = p;
    return LLMOS_OK;
fail:
    json_decref(j);
    policy_free(p);
    return err;
}

llmos_err policy_default(policy **out)
{
    return policy_parse(default_policy_json, sizeof default_policy_json - 1, "built-in policy",
                        out);
}

llmos_err policy_load(const char *config_dir, policy **out)
{
    assert(out);
    char path[4096];
    snprintf(path, sizeof path, "%s/policy.json", config_dir ? config_dir : ".");
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, 1 << 20, &b);
    if (err == LLMOS_ERR_NOT_FOUND || (err == LLMOS_ERR_IO && !b.len)) {
        buf_free(&b);
        llmos_err_clear();
        return policy_default(out);
    }
    if (!err)
        err = policy_parse(b.data, b.len, path, out);
    buf_free(&b);
    return err;
}

static unsigned allowed_for(const policy *p, const char *tool, const char *arg)
{
    assert(p && tool && arg);
    for (size_t i = 0; i < p->n; i++) {
        const policy_rule *r = &p->rules[i];
        assert(r->tool && r->argument && (r->allow & ~ORIGIN_BITS) == 0);
        if ((strcmp(r->tool, "*") == 0 || strcmp(r->tool, tool) == 0) &&
            (strcmp(r->argument, "*") == 0 || strcmp(r->argument, arg) == 0))
            return r->allow;
    }
    return p->deflt;
}

llmos_err policy_check(const policy *p, const char *tool, const json_t *members)
{
    if (!p || !tool || !json_is_object(members))
        return llmos_fail(LLMOS_ERR_INVALID, "policy_check: bad arguments");
    const char *key;
    json_t *origins;
    json_object_foreach((json_t *)members, key, origins)
    {
        unsigned allow = allowed_for(p, tool, key);
        size_t i;
        json_t *o;
        json_array_foreach(origins, i, o)
        {
            llmos_origin org;
            if (!origin_parse(json_string_value(o), &org))
                return llmos_fail(LLMOS_ERR_INVALID, "policy_check: unknown origin");
            if (!(allow & (1u << org)))
                return llmos_fail(LLMOS_ERR_DENIED,
                                  "flow policy: a value of origin '%s' may not flow into "
                                  "argument '%s' of tool '%s'; write that argument yourself "
                                  "or ask the user",
                                  origin_name(org), key, tool);
        }
    }
    return LLMOS_OK;
}
