/*
 * apikeys.c - the HTTP server's API keys: the keys file parsed into principals with their
 * rights, capabilities, limits and budgets, a presented key matched to its entry, and new keys
 * made and added to a file (llmos/apikeys.h has the format).
 *
 * Security decisions, each where it is made below:
 *   - the file holds BLAKE2b-256 digests, never keys; a key is 256 random bits, so nothing is
 *     gained from a slow password hash;
 *   - a presented key is hashed once and compared with every entry in constant time
 *     (sodium_memcmp), without stopping at a match;
 *   - the parser refuses anything it does not understand (an unknown member may be a misspelt
 *     limit that an administrator believes is in force) and names entry and member;
 *   - key material (a new key, a presented key's digest) is wiped after use.
 */
#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmos/apikeys.h"
#include "llmos/json.h"

#define HASH_TAG "blake2b-256:"

struct apikeys {
    apikey *v;
    size_t n;
};

/* ---- names and digests -------------------------------------------------------------------- */

const char *apikeys_principal_fault(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "it is empty";
    if (n >= sizeof((apikey *)0)->principal)
        return "it is longer than 63 bytes";
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '@';
        if (!ok)
            return "it may hold only letters, digits and . _ - @";
    }
    return "";
}

void apikeys_hash(const char *key, size_t len, unsigned char out[APIKEY_HASH_BYTES])
{
    crypto_generichash(out, APIKEY_HASH_BYTES, (const unsigned char *)key, len, NULL, 0);
}

/* "blake2b-256:<64 hex>" -> digest; false for any other text. */
static bool hash_parse(const char *text, unsigned char out[APIKEY_HASH_BYTES])
{
    size_t tag = strlen(HASH_TAG);
    if (strncmp(text, HASH_TAG, tag) != 0 || strlen(text + tag) != 2 * APIKEY_HASH_BYTES)
        return false;
    for (size_t i = 0; i < 2 * APIKEY_HASH_BYTES; i++) {
        char c = text[tag + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    size_t got = 0;
    return sodium_hex2bin(out, APIKEY_HASH_BYTES, text + tag, 2 * APIKEY_HASH_BYTES, NULL, &got,
                          NULL) == 0 &&
           got == APIKEY_HASH_BYTES;
}

llmos_err apikeys_generate(char *out, size_t size)
{
    unsigned char raw[32];
    size_t prefix = strlen(APIKEY_PREFIX);
    size_t b64 = sodium_base64_ENCODED_LEN(sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (size < prefix + b64)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "apikeys_generate: a buffer of %zu bytes is too "
                          "small",
                          size);
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libsodium could not be initialised");
    randombytes_buf(raw, sizeof raw);
    memcpy(out, APIKEY_PREFIX, prefix);
    sodium_bin2base64(out + prefix, size - prefix, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    return LLMOS_OK;
}

/* ---- parsing ------------------------------------------------------------------------------ */

/* Where an error is: "<what>: entry 2 (alice): " (the principal once it is known). */
typedef struct where {
    const char *what;
    size_t entry; /* 1-based; 0 = the file itself */
    const char *principal;
} where;

static llmos_err bad(const where *w, const char *fmt, ...) LLMOS_PRINTF(2, 3);

static llmos_err bad(const where *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!w->entry)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: %s", w->what, msg);
    if (w->principal)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: entry %zu (%s): %s", w->what, w->entry,
                          w->principal, msg);
    return llmos_fail(LLMOS_ERR_FORMAT, "%s: entry %zu: %s", w->what, w->entry, msg);
}

static const char *kind_name(const json_t *v)
{
    if (!v)
        return "nothing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* Refuse members of obj that are not in `known` (a NULL-terminated list). */
static llmos_err only_known(const where *w, const json_t *obj, const char *field,
                            const char *const *known, const char *expected)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = strcmp(key, known[i]) == 0;
        if (!ok)
            return bad(w, "unknown member '%s%s%.60s' (expected %s)", field, *field ? "." : "", key,
                       expected);
    }
    return LLMOS_OK;
}

/* An array of names (rights or capabilities) -> bits, each through `parse`. */
static llmos_err names_member(const where *w, const json_t *e, const char *field,
                              llmos_err (*parse)(const char *, uint32_t *), uint32_t *out)
{
    json_t *a = json_object_get(e, field);
    *out = 0;
    if (!json_is_array(a))
        return bad(w, "'%s' must be an array of names, found %s", field, kind_name(a));
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        const char *name = json_string_value(v);
        if (!name || !*name || strcspn(name, ", ") != strlen(name))
            return bad(w, "'%s[%zu]' must be one name (a string without commas or spaces)", field,
                       i);
        uint32_t bits;
        if (parse(name, &bits))
            return bad(w, "'%s[%zu]': %s", field, i, llmos_errmsg());
        *out |= bits;
    }
    return LLMOS_OK;
}

/* A whole number in [0, max] from member key of obj (absent: *out unchanged). */
static llmos_err count_member(const where *w, const json_t *obj, const char *field, const char *key,
                              int64_t max, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return LLMOS_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
        return bad(w, "'%s.%s' must be a whole number from 0 to %lld, found %s", field, key,
                   (long long)max, kind_name(v));
    *out = json_integer_value(v);
    return LLMOS_OK;
}

/* {"tokens", "tool_calls", "wall_s"} (each optional; 0 = unlimited or the default). */
static llmos_err budget_member(const where *w, const json_t *e, const char *field, kbudget *out)
{
    json_t *b = json_object_get(e, field);
    memset(out, 0, sizeof *out);
    if (!b)
        return LLMOS_OK;
    if (!json_is_object(b))
        return bad(w, "'%s' must be an object, found %s", field, kind_name(b));
    static const char *const known[] = {"tokens", "tool_calls", "wall_s", NULL};
    llmos_err err = only_known(w, b, field, known, "tokens, tool_calls, wall_s");
    if (!err)
        err = count_member(w, b, field, "tokens", INT64_MAX / 2, &out->tokens);
    if (!err)
        err = count_member(w, b, field, "tool_calls", INT64_MAX / 2, &out->tool_calls);
    if (err)
        return err;
    json_t *ws = json_object_get(b, "wall_s");
    if (ws) {
        double d = json_is_number(ws) ? json_number_value(ws) : -1;
        if (!(d >= 0 && d <= 1e9))
            return bad(w, "'%s.wall_s' must be a number of seconds from 0 to 1e9", field);
        out->wall_s = d;
    }
    return LLMOS_OK;
}

static llmos_err limits_member(const where *w, const json_t *e, klimits *out)
{
    json_t *l = json_object_get(e, "limits");
    memset(out, 0, sizeof *out);
    if (!l)
        return LLMOS_OK;
    if (!json_is_object(l))
        return bad(w, "'limits' must be an object, found %s", kind_name(l));
    static const char *const known[] = {
        "concurrent", "requests_per_minute", "max_tokens", "tokens_per_minute", "priority", NULL};
    llmos_err err = only_known(w, l, "limits", known,
                               "concurrent, requests_per_minute, max_tokens, "
                               "tokens_per_minute, priority");
    int64_t c = 0, rpm = 0, mt = 0, tpm = 0, prio = 0;
    /* requests_per_minute sizes the session's ring of request times: bounded */
    if (!err)
        err = count_member(w, l, "limits", "concurrent", 1000000, &c);
    if (!err)
        err = count_member(w, l, "limits", "requests_per_minute", 100000, &rpm);
    if (!err)
        err = count_member(w, l, "limits", "max_tokens", INT32_MAX, &mt);
    if (!err)
        err = count_member(w, l, "limits", "tokens_per_minute", INT64_MAX / 2, &tpm);
    if (!err)
        err = count_member(w, l, "limits", "priority", KSCHED_PRIORITY_MAX, &prio);
    out->concurrent = (int)c;
    out->tokens_per_minute = tpm;
    out->priority = (int)prio;
    out->requests_per_minute = (int)rpm;
    out->max_tokens = (int32_t)mt;
    return err;
}

static llmos_err parse_entry(const where *w0, const json_t *e, apikey *out)
{
    where w = *w0;
    memset(out, 0, sizeof *out);
    if (!json_is_object(e))
        return bad(&w, "must be an object, found %s", kind_name(e));
    json_t *p = json_object_get(e, "principal");
    if (!json_is_string(p))
        return bad(&w, "'principal' is required: a name (letters, digits, . _ - @)");
    const char *fault = apikeys_principal_fault(json_string_value(p));
    if (*fault)
        return bad(&w, "'principal' '%.64s' is not a valid name: %s", json_string_value(p), fault);
    snprintf(out->principal, sizeof out->principal, "%s", json_string_value(p));
    w.principal = out->principal;

    static const char *const known[] = {"principal", "key_hash", "rights", "caps",
                                        "limits",    "budget",   "turn",   "audit_content",
                                        "comment",   "created",  NULL};
    llmos_err err = only_known(&w, e, "", known,
                               "principal, key_hash, rights, caps, limits, budget, turn, "
                               "audit_content, comment, created");
    if (err)
        return err;
    json_t *h = json_object_get(e, "key_hash");
    if (!json_is_string(h) || !hash_parse(json_string_value(h), out->hash))
        return bad(&w,
                   "'key_hash' must be \"" HASH_TAG "\" followed by 64 lower-case hex digits "
                   "(the digest `llmos key new` writes), found %s",
                   kind_name(h));
    if ((err = names_member(&w, e, "rights", kright_parse, &out->rights)))
        return err;
    if (!out->rights)
        return bad(&w, "'rights' is empty: give at least one of chat, embed, process, audit, "
                       "memory, admin (or all)");
    out->caps = KCAP_COMPUTE | KCAP_MESSAGE;
    if (json_object_get(e, "caps") && (err = names_member(&w, e, "caps", kcap_parse, &out->caps)))
        return err;
    if ((err = limits_member(&w, e, &out->limits)) ||
        (err = budget_member(&w, e, "budget", &out->budget)) ||
        (err = budget_member(&w, e, "turn", &out->turn)))
        return err;
    json_t *ac = json_object_get(e, "audit_content");
    if (ac && !json_is_boolean(ac))
        return bad(&w, "'audit_content' must be true or false, found %s", kind_name(ac));
    out->audit_content = json_is_true(ac);
    static const char *const texts[] = {"comment", "created"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(texts); i++) {
        json_t *t = json_object_get(e, texts[i]);
        if (t && !json_is_string(t))
            return bad(&w, "'%s' must be a string, found %s", texts[i], kind_name(t));
    }
    return LLMOS_OK;
}

llmos_err apikeys_parse(const char *text, size_t len, const char *what, apikeys **out)
{
    *out = NULL;
    where w = {.what = what ? what : "keys file"};
    json_t *root = NULL;
    llmos_err err = ljson_parse_text(text, len, w.what, 16, &root);
    if (err)
        return err; /* the message names the file, line and column */
    apikeys *ks = calloc(1, sizeof *ks);
    if (!ks) {
        json_decref(root);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    json_t *keys = json_object_get(root, "keys"), *version = json_object_get(root, "version");
    static const char *const known[] = {"version", "keys", NULL};
    if (!json_is_object(root))
        err = bad(&w, "must be a JSON object {\"version\": 1, \"keys\": [...]}, found %s",
                  kind_name(root));
    else if ((err = only_known(&w, root, "", known, "version, keys")))
        ;
    else if (version && (!json_is_integer(version) || json_integer_value(version) != 1))
        err = bad(&w, "'version' must be 1 (the only version this llmos reads)");
    else if (!json_is_array(keys))
        err = bad(&w, "'keys' is required: an array of entries, found %s", kind_name(keys));
    size_t n = err ? 0 : json_array_size(keys);
    if (n) {
        ks->v = calloc(n, sizeof *ks->v);
        if (!ks->v)
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; !err && i < n; i++) {
        where we = {.what = w.what, .entry = i + 1};
        err = parse_entry(&we, json_array_get(keys, i), &ks->v[i]);
        we.principal = ks->v[i].principal;
        for (size_t j = 0; !err && j < i; j++) {
            if (strcmp(ks->v[j].principal, ks->v[i].principal) == 0)
                err = bad(&we,
                          "principal '%s' already has entry %zu; one entry per principal "
                          "(`llmos key new --replace` gives it a new key)",
                          ks->v[i].principal, j + 1);
            else if (sodium_memcmp(ks->v[j].hash, ks->v[i].hash, APIKEY_HASH_BYTES) == 0)
                err = bad(&we,
                          "'key_hash' is the same as entry %zu's (%s): one key would stand "
                          "for two principals",
                          j + 1, ks->v[j].principal);
        }
        if (!err)
            ks->n++;
    }
    json_decref(root);
    if (err) {
        apikeys_free(ks);
        return err;
    }
    *out = ks;
    return LLMOS_OK;
}

llmos_err apikeys_load(const char *path, apikeys **out)
{
    *out = NULL;
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, 16u << 20, &b);
    if (err == LLMOS_ERR_NOT_FOUND) {
        buf_free(&b);
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "keys file %s does not exist; make one with `llmos key new PRINCIPAL "
                          "--file %s`",
                          path, path);
    }
    if (!err)
        err = apikeys_parse(b.data ? b.data : "", b.len, path, out);
    else
        err = llmos_fail_context(err, "keys file %s: ", path);
    buf_free(&b);
    return err;
}

llmos_err apikeys_single(const char *key, const char *principal, uint32_t rights, apikeys **out)
{
    *out = NULL;
    if (!key || !*key || strlen(key) > APIKEY_KEY_MAX)
        return llmos_fail(LLMOS_ERR_INVALID, "an API key must be 1 to %d bytes", APIKEY_KEY_MAX);
    if (*apikeys_principal_fault(principal))
        return llmos_fail(LLMOS_ERR_INVALID, "principal '%.64s': %s", principal,
                          apikeys_principal_fault(principal));
    apikeys *ks = calloc(1, sizeof *ks);
    if (ks)
        ks->v = calloc(1, sizeof *ks->v);
    if (!ks || !ks->v) {
        apikeys_free(ks);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    apikey *e = &ks->v[0];
    snprintf(e->principal, sizeof e->principal, "%s", principal);
    apikeys_hash(key, strlen(key), e->hash);
    e->rights = rights;
    e->caps = KCAP_COMPUTE | KCAP_MESSAGE;
    ks->n = 1;
    *out = ks;
    return LLMOS_OK;
}

void apikeys_free(apikeys *ks)
{
    if (!ks)
        return;
    if (ks->v)
        sodium_memzero(ks->v, ks->n * sizeof *ks->v);
    free(ks->v);
    free(ks);
}

size_t apikeys_count(const apikeys *ks)
{
    return ks ? ks->n : 0;
}

const apikey *apikeys_get(const apikeys *ks, size_t i)
{
    assert(ks && i < ks->n);
    return &ks->v[i];
}

long apikeys_match(const apikeys *ks, const char *key, size_t len)
{
    if (!ks || len == 0 || len > APIKEY_KEY_MAX)
        return -1;
    unsigned char h[APIKEY_HASH_BYTES];
    apikeys_hash(key, len, h);
    /* every entry is compared, and the index is chosen without a branch on the comparison */
    long found = -1;
    for (size_t i = 0; i < ks->n; i++) {
        long same = sodium_memcmp(h, ks->v[i].hash, sizeof h) == 0;
        found = same * (long)i + (1 - same) * found;
    }
    sodium_memzero(h, sizeof h);
    return found;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* "chat,embed" (from kright_format / kcap_format) -> ["chat", "embed"]. */
static json_t *names_json(const char *list)
{
    json_t *a = json_array();
    const char *p = list;
    while (a && *p && strcmp(p, "-") != 0) {
        size_t n = strcspn(p, ",");
        json_array_append_new(a, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return a;
}

static json_t *budget_json(const kbudget *b)
{
    json_t *o = json_object();
    if (b->tokens)
        json_object_set_new(o, "tokens", json_integer((json_int_t)b->tokens));
    if (b->tool_calls)
        json_object_set_new(o, "tool_calls", json_integer((json_int_t)b->tool_calls));
    if (b->wall_s > 0)
        json_object_set_new(o, "wall_s", json_real(b->wall_s));
    return o;
}

/* The entry as the file holds it (the digest, never a key). */
static json_t *entry_json(const apikey *e)
{
    char hex[2 * APIKEY_HASH_BYTES + 1], rights[128], caps[128], hash[sizeof HASH_TAG + sizeof hex];
    sodium_bin2hex(hex, sizeof hex, e->hash, APIKEY_HASH_BYTES);
    snprintf(hash, sizeof hash, "%s%s", HASH_TAG, hex);
    kright_format(e->rights, rights, sizeof rights);
    kcap_format(e->caps, caps, sizeof caps);
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    json_t *o =
        json_pack("{s:s, s:s, s:o, s:o, s:s}", "principal", e->principal, "key_hash", hash,
                  "rights", names_json(rights), "caps", names_json(caps), "created", created);
    if (!o)
        return NULL;
    json_t *l = json_object();
    if (e->limits.concurrent)
        json_object_set_new(l, "concurrent", json_integer(e->limits.concurrent));
    if (e->limits.requests_per_minute)
        json_object_set_new(l, "requests_per_minute", json_integer(e->limits.requests_per_minute));
    if (e->limits.max_tokens)
        json_object_set_new(l, "max_tokens", json_integer(e->limits.max_tokens));
    if (json_object_size(l))
        json_object_set(o, "limits", l);
    json_decref(l);
    static const char *const names[] = {"budget", "turn"};
    const kbudget *budgets[] = {&e->budget, &e->turn};
    for (size_t i = 0; i < 2; i++) {
        json_t *b = budget_json(budgets[i]);
        if (json_object_size(b))
            json_object_set(o, names[i], b);
        json_decref(b);
    }
    if (e->audit_content)
        json_object_set_new(o, "audit_content", json_true());
    return o;
}

llmos_err apikeys_add(const char *path, const apikey *e, bool replace)
{
    assert(path && e);
    json_t *root = NULL;
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, 16u << 20, &b);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        err = LLMOS_OK;
        root = json_pack("{s:i, s:[]}", "version", 1, "keys");
    } else if (!err) {
        /* the whole file must be valid before it is touched */
        apikeys *ks = NULL;
        err = apikeys_parse(b.data ? b.data : "", b.len, path, &ks);
        apikeys_free(ks);
        if (!err)
            err = ljson_parse_text(b.data, b.len, path, 16, &root);
    } else {
        err = llmos_fail_context(err, "keys file %s: ", path);
    }
    buf_free(&b);
    if (!err && !root)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    json_t *keys = err ? NULL : json_object_get(root, "keys");
    json_t *entry = err ? NULL : entry_json(e);
    if (!err && !entry)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    size_t at = json_array_size(keys);
    for (size_t i = 0; !err && i < json_array_size(keys); i++) {
        const char *p = ljson_get_string(json_array_get(keys, i), "principal", "");
        if (strcmp(p, e->principal) != 0)
            continue;
        if (!replace)
            err = llmos_fail(LLMOS_ERR_EXISTS,
                             "%s: principal '%s' already has a key (entry %zu); give --replace "
                             "to make it a new one (the old key then stops working)",
                             path, e->principal, i + 1);
        at = i;
    }
    if (!err && (at < json_array_size(keys) ? json_array_set(keys, at, entry)
                                            : json_array_append(keys, entry)) != 0)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_buf out = {0};
    if (!err && (ljson_to_buf(root, JSON_INDENT(2), &out) || buf_putc(&out, '\n')))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err)
        err = llmos_file_write_atomic(path, out.data, out.len, 0600);
    buf_free(&out);
    json_decref(entry);
    json_decref(root);
    return err;
}
