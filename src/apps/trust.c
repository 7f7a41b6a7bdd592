/*
 * trust.c - the trust policy and the verification of a signed manifest against it
 * (llmos/apps.h; docs/supply-chain.md, "Trust model").
 *
 * The policy file is text, one rule a line, so that a user can read and edit it and a
 * `llmos keys` command can append to it:
 *   trust PUBLISHER PUBKEY [KINDS]   KINDS a comma-separated list of model, tool, mcp,
 *                                    prompts, specialist (default: all)
 *   revoke KEYID [REASON...]
 *   allow-unsigned KIND|all
 *   local-files allow|refuse
 *   grant APP CAP,CAP...
 * A line that does not parse is an error naming the line: a policy half-read is worse than
 * none.
 *
 * Verification order (apps_verify_manifest) matters: the signature is checked over the raw
 * bytes before the manifest is parsed, so only a trusted publisher's bytes ever reach the
 * parser on the load path.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/apps.h"

#define POLICY_MAX_BYTES (1u << 20)
#define ALL_KINDS        ((1u << APPS_KIND_COUNT_) - 1)

void apps_policy_free(apps_policy *p)
{
    if (!p)
        return;
    free(p->keys);
    free(p->revoked);
    free(p->grants);
    free(p);
}

static bool parse_keyid(const char *s, uint8_t id[8])
{
    if (strlen(s) != 16)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return false;
        v = v << 4 | (uint64_t)d;
    }
    llmos_store_le64(id, v);
    return true;
}

static bool parse_kinds(char *list, uint32_t *out)
{
    *out = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        apps_kind k;
        if (strcmp(t, "all") == 0)
            *out |= ALL_KINDS;
        else if (apps_kind_parse(t, &k))
            *out |= 1u << k;
        else
            return false;
    }
    return *out != 0;
}

static llmos_err add_rule(apps_policy *p, char *line, size_t lineno)
{
    char *save = NULL;
    char *verb = strtok_r(line, " \t", &save);
    if (!verb)
        return LLMOS_OK;
    char *a = strtok_r(NULL, " \t", &save);
    char *b = strtok_r(NULL, " \t", &save);
    char *c = strtok_r(NULL, " \t", &save);
    if (strcmp(verb, "trust") == 0 && a && b) {
        apps_trusted_key k = {.kinds = ALL_KINDS};
        if (apps_name_check(a, "publisher"))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "trust policy line %zu: '%.64s' is not a "
                              "publisher name",
                              lineno, a);
        snprintf(k.publisher, sizeof k.publisher, "%s", a);
        if (apps_pubkey_parse(b, strlen(b), &k.key))
            return llmos_fail(LLMOS_ERR_FORMAT, "trust policy line %zu: not a minisign public key",
                              lineno);
        if (c && !parse_kinds(c, &k.kinds))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "trust policy line %zu: kinds are a list of model, tool, mcp, "
                              "prompts, specialist, all",
                              lineno);
        if (c && strtok_r(NULL, " \t", &save))
            return llmos_fail(LLMOS_ERR_FORMAT, "trust policy line %zu: too many words", lineno);
        apps_trusted_key *keys = realloc(p->keys, (p->n_keys + 1) * sizeof *keys);
        if (!keys)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        p->keys = keys;
        p->keys[p->n_keys++] = k;
        return LLMOS_OK;
    }
    if (strcmp(verb, "revoke") == 0 && a) { /* the rest of the line is the reason */
        uint8_t id[8];
        if (!parse_keyid(a, id))
            return llmos_fail(LLMOS_ERR_FORMAT, "trust policy line %zu: a key id is 16 hex digits",
                              lineno);
        uint8_t(*r)[8] = realloc(p->revoked, (p->n_revoked + 1) * sizeof *r);
        if (!r)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        p->revoked = r;
        memcpy(p->revoked[p->n_revoked++], id, 8);
        return LLMOS_OK;
    }
    if (strcmp(verb, "allow-unsigned") == 0 && a && !b) {
        uint32_t kinds;
        if (!parse_kinds(a, &kinds))
            return llmos_fail(LLMOS_ERR_FORMAT, "trust policy line %zu: allow-unsigned KIND|all",
                              lineno);
        p->unsigned_kinds |= kinds;
        return LLMOS_OK;
    }
    if (strcmp(verb, "grant") == 0 && a && b && !c) {
        struct apps_grant g;
        bool ok = apps_name_check(a, "app") == LLMOS_OK && strlen(b) < sizeof g.caps;
        char list[256];
        snprintf(list, sizeof list, "%s", ok ? b : "");
        for (char *sv = NULL, *t = strtok_r(list, ",", &sv); ok && t; t = strtok_r(NULL, ",", &sv))
            ok = apps_name_check(t, "capability") == LLMOS_OK;
        if (!ok) {
            llmos_err_clear();
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "trust policy line %zu: grant APP CAP,CAP... (names of an app and "
                              "of capabilities)",
                              lineno);
        }
        snprintf(g.app, sizeof g.app, "%s", a);
        snprintf(g.caps, sizeof g.caps, "%s", b);
        struct apps_grant *gs = realloc(p->grants, (p->n_grants + 1) * sizeof *gs);
        if (!gs)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        p->grants = gs;
        p->grants[p->n_grants++] = g;
        return LLMOS_OK;
    }
    if (strcmp(verb, "local-files") == 0 && a && !b &&
        (strcmp(a, "allow") == 0 || strcmp(a, "refuse") == 0)) {
        p->local_files_refused = strcmp(a, "refuse") == 0;
        return LLMOS_OK;
    }
    return llmos_fail(LLMOS_ERR_FORMAT,
                      "trust policy line %zu: not a rule (trust PUBLISHER KEY [KINDS], revoke "
                      "KEYID, allow-unsigned KIND, local-files allow|refuse)",
                      lineno);
}

llmos_err apps_policy_parse(const char *text, size_t len, apps_policy **out)
{
    *out = NULL;
    if (len > POLICY_MAX_BYTES)
        return llmos_fail(LLMOS_ERR_LIMIT, "trust policy: %zu bytes, more than %u", len,
                          POLICY_MAX_BYTES);
    apps_policy *p = calloc(1, sizeof *p);
    char *line = malloc(len + 1);
    if (!p || !line) {
        free(p);
        free(line);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    llmos_err err = LLMOS_OK;
    size_t lineno = 0;
    for (size_t pos = 0; !err && pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + 1;
        lineno++;
        if (memchr(line, '\0', n) || !utf8_valid(line, n)) {
            err = llmos_fail(LLMOS_ERR_FORMAT, "trust policy line %zu: not UTF-8 text", lineno);
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        for (char *q = line; *q; q++)
            if (*q == '\r')
                *q = ' ';
        err = add_rule(p, line, lineno);
    }
    free(line);
    if (err) {
        apps_policy_free(p);
        return err;
    }
    *out = p;
    return LLMOS_OK;
}

llmos_err apps_policy_load(const char *path, apps_policy **out)
{
    llmos_buf text = {0};
    llmos_err err = llmos_file_read_all(path, POLICY_MAX_BYTES, &text);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        err = apps_policy_parse("", 0, out);
    } else if (!err) {
        err = apps_policy_parse(text.data, text.len, out);
        if (err)
            llmos_fail_context(err, "%s: ", path);
    }
    buf_free(&text);
    return err;
}

bool apps_policy_revoked(const apps_policy *p, const uint8_t id[8])
{
    for (size_t i = 0; i < p->n_revoked; i++)
        if (memcmp(p->revoked[i], id, 8) == 0)
            return true;
    return false;
}

void apps_policy_granted(const apps_policy *p, const apps_manifest *m, char *out, size_t size)
{
    assert(size > 0);
    out[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < m->n_caps; i++) {
        bool granted = false;
        for (size_t g = 0; g < p->n_grants && !granted; g++) {
            if (strcmp(p->grants[g].app, m->name) != 0)
                continue;
            char list[256];
            snprintf(list, sizeof list, "%s", p->grants[g].caps);
            for (char *save = NULL, *t = strtok_r(list, ",", &save); t && !granted;
                 t = strtok_r(NULL, ",", &save))
                granted = strcmp(t, m->caps[i]) == 0;
        }
        if (granted && used + strlen(m->caps[i]) + 2 < size)
            used += (size_t)snprintf(out + used, size - used, "%s%s", used ? "," : "", m->caps[i]);
    }
}

static llmos_err refuse(apps_verdict *v, const char *check, llmos_err err)
{
    snprintf(v->check, sizeof v->check, "%s", check);
    return llmos_fail_context(err, "%s check failed: ", check);
}

llmos_err apps_verify_manifest(const apps_policy *pol, const char *bytes, size_t len,
                               const char *sig_text, size_t sig_len, bool allow_unsigned,
                               apps_manifest **out, apps_verdict *v)
{
    assert(pol && out && v);
    *out = NULL;
    memset(v, 0, sizeof *v);
    const apps_trusted_key *tk = NULL;
    if (sig_text) {
        apps_sig sig;
        llmos_err err = apps_sig_parse(sig_text, sig_len, &sig);
        if (err)
            return refuse(v, "signature", err);
        apps_keyid_hex(sig.keyid, v->keyid);
        if (apps_policy_revoked(pol, sig.keyid))
            return refuse(v, "revocation",
                          llmos_fail(LLMOS_ERR_DENIED,
                                     "key %s is revoked in the trust policy; nothing it signed "
                                     "is loaded",
                                     v->keyid));
        for (size_t i = 0; i < pol->n_keys && !tk; i++)
            if (memcmp(pol->keys[i].key.id, sig.keyid, 8) == 0)
                tk = &pol->keys[i];
        if (!tk)
            return refuse(v, "trusted key",
                          llmos_fail(LLMOS_ERR_DENIED,
                                     "signed by key %s, which you do not trust (llmos keys "
                                     "trust FILE.pub --publisher NAME to trust it)",
                                     v->keyid));
        if ((err = apps_sig_verify(&sig, &tk->key, bytes, len)))
            return refuse(v, "signature", err);
    }
    apps_manifest *m = NULL;
    llmos_err err = apps_manifest_parse(bytes, len, &m);
    if (err)
        return refuse(v, "manifest", err);
    if (tk) {
        if (strcmp(m->publisher, tk->publisher) != 0)
            err = refuse(v, "publisher",
                         llmos_fail(LLMOS_ERR_DENIED,
                                    "the manifest names publisher '%s', but key %s is trusted "
                                    "for publisher '%s' only",
                                    m->publisher, v->keyid, tk->publisher));
        else if (!(tk->kinds & 1u << m->kind))
            err = refuse(v, "kind",
                         llmos_fail(LLMOS_ERR_DENIED,
                                    "key %s of '%s' is not trusted to sign apps of kind %s",
                                    v->keyid, tk->publisher, apps_kind_name(m->kind)));
        if (!err) {
            v->signed_by_trusted = true;
            snprintf(v->publisher, sizeof v->publisher, "%s", tk->publisher);
        }
    } else if (allow_unsigned || (pol->unsigned_kinds & 1u << m->kind)) {
        v->unsigned_allowed = true;
    } else {
        err = refuse(v, "signature",
                     llmos_fail(LLMOS_ERR_DENIED,
                                "%s %s is not signed; an unsigned app loads only with "
                                "--allow-unsigned or 'allow-unsigned %s' in the trust policy",
                                m->name, m->version, apps_kind_name(m->kind)));
    }
    if (err) {
        apps_manifest_free(m);
        return err;
    }
    *out = m;
    return LLMOS_OK;
}
