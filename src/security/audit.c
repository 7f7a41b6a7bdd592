/*
 * audit.c - the append-only audit log as a hash chain over the store's audit table.
 *
 * Record i holds prev_hash = hash of record i-1 (32 zero bytes for the first) and
 * hash = BLAKE2b-256(prev_hash || canonical bytes of record i) (libsodium crypto_generichash,
 * unkeyed, 32-byte output). The canonical bytes have two forms (docs/security.md):
 *   form 1  "llmos-audit-v1" NUL <seq decimal> NUL <time decimal> NUL <kind> NUL <payload>
 *   form 2  "llmos-audit-v2" NUL seq (u64 LE) time (i64 LE) kind length (u64 LE) kind
 *           payload length (u64 LE) payload
 * Form 1 hashed kind and payload as C strings, so bytes put after a NUL inside them were
 * neither hashed nor shown. Form 2 hashes every byte with its length. Records carry no form:
 * the setting "audit.form2_from" holds the seq of the first record written in form 2 (the
 * append that finds it missing writes it, in its own transaction), so records before it are
 * checked in form 1 and the rest in form 2. Rewriting the setting (which needs the key)
 * changes the form records are checked in, and their hashes then fail. Whatever the form, a
 * kind or payload with a NUL inside is a bad record: text never holds one, and audit_append
 * refuses payloads that would.
 *
 * The head (last seq and hash) is also kept in the setting "audit.head", so that cutting
 * records off the end is seen too (an attacker who can write the database can of course
 * rewrite head and chain together: the chain proves integrity against edits that do not
 * recompute every later hash, and the encrypted store keeps those without the key out).
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "llmos/json.h"
#include "llmos/security.h"

#define AUDIT_HEAD_KEY  "audit.head"
#define AUDIT_FORM2_KEY "audit.form2_from" /* seq of the first record in form 2 */

struct audit {
    store *st;
    int64_t last_seq; /* the head: 0 before the first record, never negative */
    uint8_t last_hash[AUDIT_HASH_BYTES];
    bool form2_set; /* AUDIT_FORM2_KEY is known to be in the store (it never changes then) */
};

llmos_err audit_canonical(int form, int64_t seq, int64_t time_s, const char *kind, size_t kind_len,
                          const char *payload, size_t payload_len, llmos_buf *out)
{
    assert(seq > 0 && kind && payload && out);
    if (form != 1 && form != 2)
        return llmos_fail(LLMOS_ERR_INVALID, "audit: no canonical form %d (1 or 2)", form);
    if (memchr(kind, 0, kind_len) || memchr(payload, 0, payload_len))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "audit record %" PRId64 ": its %s holds a NUL byte, which text never "
                          "does",
                          seq, memchr(kind, 0, kind_len) ? "kind" : "payload");
    llmos_err err = LLMOS_OK;
    if (form == 1) {
        if (buf_printf(out, "llmos-audit-v1%c%" PRId64 "%c%" PRId64 "%c", 0, seq, 0, time_s, 0) ||
            buf_append(out, kind, kind_len) || buf_putc(out, 0) ||
            buf_append(out, payload, payload_len))
            err = LLMOS_ERR_NOMEM;
    } else {
        uint8_t num[8];
        if (buf_append(out, "llmos-audit-v2", 15)) /* with its NUL */
            err = LLMOS_ERR_NOMEM;
        llmos_store_le64(num, (uint64_t)seq);
        if (!err && buf_append(out, num, 8))
            err = LLMOS_ERR_NOMEM;
        llmos_store_le64(num, (uint64_t)time_s); /* two's complement: any time is encoded */
        if (!err && buf_append(out, num, 8))
            err = LLMOS_ERR_NOMEM;
        llmos_store_le64(num, (uint64_t)kind_len);
        if (!err && (buf_append(out, num, 8) || buf_append(out, kind, kind_len)))
            err = LLMOS_ERR_NOMEM;
        llmos_store_le64(num, (uint64_t)payload_len);
        if (!err && (buf_append(out, num, 8) || buf_append(out, payload, payload_len)))
            err = LLMOS_ERR_NOMEM;
    }
    if (err)
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
    return LLMOS_OK;
}

static llmos_err record_hash(const uint8_t prev[AUDIT_HASH_BYTES], int form, int64_t seq,
                             int64_t time_s, const char *kind, size_t kind_len, const char *payload,
                             size_t payload_len, uint8_t out[AUDIT_HASH_BYTES])
{
    assert(prev && kind && payload && out);
    llmos_buf b = {0};
    if (buf_append(&b, prev, AUDIT_HASH_BYTES)) {
        buf_free(&b);
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
    }
    llmos_err err = audit_canonical(form, seq, time_s, kind, kind_len, payload, payload_len, &b);
    if (!err)
        crypto_generichash(out, AUDIT_HASH_BYTES, (const unsigned char *)b.data, b.len, NULL, 0);
    buf_free(&b);
    return err;
}

/* The first record in form 2 (AUDIT_FORM2_KEY), or INT64_MAX when no record is: every record
 * is then in form 1. *bad when the setting is there but not a record number. */
static llmos_err form2_from(store *s, int64_t *from, bool *bad)
{
    assert(s && from && bad);
    *from = INT64_MAX;
    *bad = false;
    char *v = NULL;
    llmos_err err = store_setting_get(s, AUDIT_FORM2_KEY, &v);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        return LLMOS_OK;
    }
    if (err)
        return err;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || n < 1)
        *bad = true;
    else
        *from = n;
    free(v);
    return LLMOS_OK;
}

/* The length of the key at `iter`: since jansson 2.14 a key may hold a NUL (json_object_setn);
 * before, keys were C strings. */
static size_t key_length(void *iter)
{
#if JANSSON_VERSION_HEX >= 0x020e00
    return json_object_iter_key_len(iter);
#else
    return strlen(json_object_iter_key(iter));
#endif
}

/* Security: does `v` (a payload being appended) hide a NUL byte, in a string or a key (jansson
 * keeps them when asked: json_stringn, json_object_setn)? Its dump would write \u0000, but
 * whoever reads the record back gets C strings cut there, and text never holds a NUL, so such
 * a payload is refused. `path` receives the name of the member. */
static bool json_holds_nul(json_t *v, char *path, size_t size, int depth)
{
    assert(path && size > 0);
    if (depth > 64) /* deeper than any record llmos writes: look no further */
        return false;
    if (json_is_string(v))
        return memchr(json_string_value(v), 0, json_string_length(v)) != NULL;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (json_holds_nul(json_array_get(v, i), path, size, depth + 1))
                return true;
        return false;
    }
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
        const char *key = json_object_iter_key(it);
        bool in_key = memchr(key, 0, key_length(it)) != NULL;
        if (in_key || json_holds_nul(json_object_iter_value(it), path, size, depth + 1)) {
            if (in_key || !*path) /* the innermost member names the place */
                snprintf(path, size, "%s", key);
            return true;
        }
    }
    return false;
}

typedef struct last_ctx {
    int64_t seq;
    uint8_t hash[AUDIT_HASH_BYTES];
    bool bad;
} last_ctx;

static bool take_last(const store_audit_record *r, void *ctx)
{
    assert(r && ctx);
    last_ctx *l = ctx;
    l->seq = r->seq;
    if (r->hash_len == AUDIT_HASH_BYTES)
        memcpy(l->hash, r->hash, AUDIT_HASH_BYTES);
    else
        l->bad = true;
    return true;
}

/* Read the chain's head (last seq and hash) from the store: the setting says where it is, so
 * only the last record is read. */
static llmos_err find_head(store *s, int64_t *seq, uint8_t hash[AUDIT_HASH_BYTES])
{
    assert(s && seq && hash);
    int64_t from = 1;
    char *head = NULL;
    if (store_setting_get(s, AUDIT_HEAD_KEY, &head) == LLMOS_OK) {
        long long v = strtoll(head, NULL, 10);
        if (v > 0)
            from = v;
    }
    free(head);
    llmos_err_clear();
    last_ctx l = {0};
    llmos_err err = store_audit_iterate(s, from, take_last, &l);
    if (!err && l.seq == 0 && from > 1)
        err = store_audit_iterate(s, 1, take_last, &l); /* head setting ahead of the table */
    if (err)
        return err;
    if (l.bad)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "audit record %" PRId64 " has no valid hash; run 'llmos audit verify'",
                          l.seq);
    assert(l.seq >= 0); /* the store numbers records from 1; an empty log has head 0 */
    *seq = l.seq;
    memcpy(hash, l.hash, AUDIT_HASH_BYTES);
    return LLMOS_OK;
}

llmos_err audit_open(store *s, audit **out)
{
    assert(out);
    *out = NULL;
    if (!s)
        return llmos_fail(LLMOS_ERR_INVALID, "audit_open: no store");
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    audit *a = calloc(1, sizeof *a);
    if (!a)
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
    a->st = s;
    llmos_err err = find_head(s, &a->last_seq, a->last_hash);
    /* a rollback the user accepted when the store was opened goes into the log itself */
    store_rollback_notice n;
    if (!err && store_take_rollback_notice(s, &n)) {
        json_t *p = json_pack("{s:s, s:I, s:I}", "event", "rollback accepted", "seen_seq",
                              (json_int_t)n.seen_seq, "found_seq", (json_int_t)n.found_seq);
        err = p ? audit_append(a, "store.rollback", p)
                : llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
        json_decref(p);
    }
    if (err) {
        free(a);
        return err;
    }
    assert(a->last_seq >= 0);
    *out = a;
    return LLMOS_OK;
}

void audit_free(audit *a)
{
    free(a);
}

llmos_err audit_append(audit *a, const char *kind, const json_t *payload)
{
    if (!a || !kind || !json_is_object(payload))
        return llmos_fail(LLMOS_ERR_INVALID, "audit_append: needs a kind and a JSON object");
    /* audit_open found the chain's head: a record is only ever appended after a known one */
    assert(a->st && a->last_seq >= 0);
    char member[128] = "";
    if (strlen(kind) == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "audit_append: the kind of a record is empty");
    /* jansson's iterators do not change the object; they are just not declared const */
    if (json_holds_nul((json_t *)payload, member, sizeof member, 0))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "audit record '%s': payload member \"%s\" holds a NUL byte (U+0000); "
                          "audit records hold text, which never does: drop the byte or replace "
                          "it with U+FFFD",
                          kind, member);
    llmos_buf text = {0};
    llmos_err err = ljson_to_buf(payload, JSON_COMPACT | JSON_SORT_KEYS, &text);
    if (err) {
        buf_free(&text);
        return err;
    }
    /* Other llmos processes may append to the same store, so the head is read again inside
     * the transaction (BEGIN IMMEDIATE: no other writer until commit). */
    int64_t seq = 0, got = 0, now = (int64_t)time(NULL);
    uint8_t prev[AUDIT_HASH_BYTES], h[AUDIT_HASH_BYTES];
    err = store_begin(a->st);
    if (err) {
        buf_free(&text);
        return err;
    }
    err = find_head(a->st, &seq, prev);
    seq++;
    /* every record appended now is in form 2; the first one says where form 2 begins */
    bool set_form2 = false;
    if (!err && !a->form2_set) {
        int64_t from = 0;
        bool bad = false;
        err = form2_from(a->st, &from, &bad);
        set_form2 = !err && !bad && from == INT64_MAX;
        if (!err && bad)
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "audit: the setting %s is not a record number; run 'llmos audit "
                             "verify'",
                             AUDIT_FORM2_KEY);
    }
    if (!err && set_form2) {
        char v[32];
        snprintf(v, sizeof v, "%" PRId64, seq);
        err = store_setting_set(a->st, AUDIT_FORM2_KEY, v);
    }
    if (!err)
        err = record_hash(prev, 2, seq, now, kind, strlen(kind), text.data, text.len, h);
    store_audit_record rec = {.time = now,
                              .kind = kind,
                              .payload = text.data,
                              .prev_hash = prev,
                              .prev_hash_len = AUDIT_HASH_BYTES,
                              .hash = h,
                              .hash_len = AUDIT_HASH_BYTES};
    if (!err)
        err = store_audit_append(a->st, &rec, &got);
    if (!err && got != seq)
        err = llmos_fail(LLMOS_ERR_INTERNAL,
                         "audit: the store gave sequence %" PRId64 ", the chain expected %" PRId64
                         "; run 'llmos audit verify'",
                         got, seq);
    if (!err) {
        char headv[32 + 2 * AUDIT_HASH_BYTES];
        int n = snprintf(headv, sizeof headv, "%" PRId64 ":", seq);
        llmos_hex_encode(headv + n, sizeof headv - (size_t)n, h, AUDIT_HASH_BYTES);
        err = store_setting_set(a->st, AUDIT_HEAD_KEY, headv);
    }
    if (!err)
        err = store_commit(a->st);
    else {
        llmos_err keep = err;
        (void)store_rollback(a->st);
        err = keep;
    }
    buf_free(&text);
    if (!err) {
        a->last_seq = seq;
        memcpy(a->last_hash, h, AUDIT_HASH_BYTES);
        a->form2_set = true;
    }
    return err;
}

typedef struct verify_ctx {
    audit_verdict *v;
    int64_t expect_seq;
    int64_t form2_from; /* records from here on are in form 2 */
    uint8_t prev[AUDIT_HASH_BYTES];
    llmos_err err;
} verify_ctx;

static bool verify_one(const store_audit_record *r, void *ctx)
{
    assert(r && ctx);
    verify_ctx *c = ctx;
    assert(c->expect_seq >= 1);
    audit_verdict *v = c->v;
    v->records++;
    if (r->seq != c->expect_seq) {
        v->bad_seq = c->expect_seq;
        snprintf(v->reason, sizeof v->reason,
                 "record %" PRId64 " is missing (the next one is %" PRId64 ")", c->expect_seq,
                 r->seq);
        return false;
    }
    if (r->prev_hash_len != AUDIT_HASH_BYTES ||
        memcmp(r->prev_hash, c->prev, AUDIT_HASH_BYTES) != 0) {
        v->bad_seq = r->seq;
        snprintf(v->reason, sizeof v->reason,
                 "record %" PRId64 " does not link to the record before it (prev_hash differs: "
                 "a record was removed, reordered or altered)",
                 r->seq);
        return false;
    }
    const char *kind = r->kind ? r->kind : "", *payload = r->payload ? r->payload : "";
    size_t kind_len = r->kind ? r->kind_len : 0, payload_len = r->payload ? r->payload_len : 0;
    const char *nul_in = memchr(kind, 0, kind_len)         ? "kind"
                         : memchr(payload, 0, payload_len) ? "payload"
                                                           : NULL;
    if (nul_in) {
        v->bad_seq = r->seq;
        snprintf(v->reason, sizeof v->reason,
                 "record %" PRId64 " was altered: its %s holds a NUL byte, which text never does "
                 "(bytes were hidden after it)",
                 r->seq, nul_in);
        return false;
    }
    uint8_t h[AUDIT_HASH_BYTES];
    c->err = record_hash(c->prev, r->seq >= c->form2_from ? 2 : 1, r->seq, r->time, kind, kind_len,
                         payload, payload_len, h);
    if (c->err)
        return false;
    if (r->hash_len != AUDIT_HASH_BYTES || sodium_memcmp(r->hash, h, AUDIT_HASH_BYTES) != 0) {
        v->bad_seq = r->seq;
        snprintf(v->reason, sizeof v->reason,
                 "record %" PRId64 " (%s) was altered: its hash does not match its contents",
                 r->seq, r->kind ? r->kind : "?");
        return false;
    }
    memcpy(c->prev, r->hash, AUDIT_HASH_BYTES);
    c->expect_seq++;
    return true;
}

llmos_err audit_verify(store *s, audit_verdict *v)
{
    assert(s && v);
    memset(v, 0, sizeof *v);
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    verify_ctx c = {.v = v, .expect_seq = 1};
    bool bad_form = false;
    llmos_err err = form2_from(s, &c.form2_from, &bad_form);
    if (err)
        return err;
    if (bad_form) {
        v->bad_seq = 1;
        snprintf(v->reason, sizeof v->reason,
                 "the setting %s, which says where records of form 2 begin, is not a record "
                 "number",
                 AUDIT_FORM2_KEY);
        return LLMOS_OK;
    }
    err = store_audit_iterate(s, 1, verify_one, &c);
    if (err)
        return err;
    if (c.err)
        return c.err;
    if (v->bad_seq)
        return LLMOS_OK;
    /* The chain is whole; does it end where the head says? */
    int64_t last = c.expect_seq - 1;
    char *head = NULL;
    err = store_setting_get(s, AUDIT_HEAD_KEY, &head);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        if (last != 0) {
            v->bad_seq = last;
            snprintf(v->reason, sizeof v->reason, "the chain's head record is missing");
            return LLMOS_OK;
        }
        v->ok = true;
        return LLMOS_OK;
    }
    if (err)
        return err;
    char want[32 + 2 * AUDIT_HASH_BYTES];
    int n = snprintf(want, sizeof want, "%" PRId64 ":", last);
    llmos_hex_encode(want + n, sizeof want - (size_t)n, c.prev, AUDIT_HASH_BYTES);
    if (strcmp(head, want) != 0) {
        long long hs = strtoll(head, NULL, 10);
        v->bad_seq = hs > last ? last + 1 : (last ? last : 1);
        snprintf(v->reason, sizeof v->reason,
                 "the log ends at record %" PRId64 " but its head says %lld: records were "
                 "removed from the end or the last one was replaced",
                 last, hs);
    } else {
        v->ok = true;
    }
    free(head);
    return LLMOS_OK;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

/* A checkpoint is the log's head written down to be kept elsewhere (docs/security.md):
 *   {"format":"llmos-audit-checkpoint","version":1,"db_id":HEX(16),"seq":N,"hash":HEX(32),
 *    "time":T,"mac":HEX(32)}
 * mac = store_mac("llmos-audit-checkpoint-v1", db_id || seq (u64 LE) || hash || time (i64 LE)).
 *
 * Security: a MAC (keyed BLAKE2b under a key derived from the store's data key), not an
 * Ed25519 signature. Whoever checks a checkpoint must open the store to read its log, so
 * already holds the key: a public key that others could check with buys nothing, and a
 * signature key would be derived from the same data key anyway. Either way the MAC only
 * stops a checkpoint from being forged or edited by someone without the key; a key holder
 * can make one for any log, which is why the checkpoint must be kept where they cannot
 * reach it. */
#define CHECKPOINT_FORMAT  "llmos-audit-checkpoint"
#define CHECKPOINT_PURPOSE "llmos-audit-checkpoint-v1"
#define CHECKPOINT_MAX     4096
#define CHECKPOINT_MSG     (16 + 8 + AUDIT_HASH_BYTES + 8)

static llmos_err checkpoint_mac(store *s, const uint8_t id[16], int64_t seq,
                                const uint8_t hash[AUDIT_HASH_BYTES], int64_t time_s,
                                uint8_t mac[STORE_MAC_BYTES])
{
    uint8_t msg[CHECKPOINT_MSG];
    memcpy(msg, id, 16);
    llmos_store_le64(msg + 16, (uint64_t)seq);
    memcpy(msg + 24, hash, AUDIT_HASH_BYTES);
    llmos_store_le64(msg + 24 + AUDIT_HASH_BYTES, (uint64_t)time_s);
    return store_mac(s, CHECKPOINT_PURPOSE, msg, sizeof msg, mac);
}

llmos_err audit_checkpoint(store *s, llmos_buf *out)
{
    assert(s && out);
    audit_verdict v;
    llmos_err err = audit_verify(s, &v);
    if (err)
        return err;
    if (!v.ok)
        return llmos_fail(LLMOS_ERR_CRYPTO,
                          "the audit log does not verify (record %" PRId64 ": %s); a checkpoint "
                          "vouches for the log as it is, so none was made",
                          v.bad_seq, v.reason);
    int64_t seq = 0, now = (int64_t)time(NULL);
    uint8_t hash[AUDIT_HASH_BYTES], id[16], mac[STORE_MAC_BYTES];
    err = find_head(s, &seq, hash);
    if (!err)
        err = store_db_id(s, id);
    if (!err)
        err = checkpoint_mac(s, id, seq, hash, now, mac);
    if (err)
        return err;
    char id_hex[33], hash_hex[2 * AUDIT_HASH_BYTES + 1], mac_hex[2 * STORE_MAC_BYTES + 1];
    llmos_hex_encode(id_hex, sizeof id_hex, id, sizeof id);
    llmos_hex_encode(hash_hex, sizeof hash_hex, hash, sizeof hash);
    llmos_hex_encode(mac_hex, sizeof mac_hex, mac, sizeof mac);
    json_t *obj = json_pack("{s:s, s:i, s:s, s:I, s:s, s:I, s:s}", "format", CHECKPOINT_FORMAT,
                            "version", 1, "db_id", id_hex, "seq", (json_int_t)seq, "hash", hash_hex,
                            "time", (json_int_t)now, "mac", mac_hex);
    if (!obj)
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
    err = ljson_to_buf(obj, JSON_INDENT(2), out);
    json_decref(obj);
    if (!err)
        err = buf_putc(out, '\n');
    return err;
}

/* Member `key` of the checkpoint: hex of exactly n bytes. */
static llmos_err get_hex(const json_t *obj, const char *key, uint8_t *bin, size_t n)
{
    const char *hex = NULL;
    llmos_err err = ljson_require_string(obj, key, "audit checkpoint", &hex);
    if (err)
        return err;
    size_t got = 0;
    if (strlen(hex) != 2 * n || sodium_hex2bin(bin, n, hex, 2 * n, NULL, &got, NULL) != 0 ||
        got != n)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "audit checkpoint: member \"%s\" must be %zu hexadecimal digits", key,
                          2 * n);
    return LLMOS_OK;
}

typedef struct hash_at_ctx {
    int64_t seq;
    bool found;
    uint8_t hash[AUDIT_HASH_BYTES];
} hash_at_ctx;

static bool take_hash_at(const store_audit_record *r, void *ctx)
{
    hash_at_ctx *c = ctx;
    if (r->seq == c->seq && r->hash_len == AUDIT_HASH_BYTES) {
        c->found = true;
        memcpy(c->hash, r->hash, AUDIT_HASH_BYTES);
    }
    return false; /* the first record from seq on is the only one wanted */
}

llmos_err audit_verify_checkpoint(store *s, const char *text, size_t len, audit_verdict *v)
{
    assert(s && (text || len == 0) && v);
    memset(v, 0, sizeof *v);
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    if (len > CHECKPOINT_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "audit checkpoint: %zu bytes, more than a checkpoint ever is (%d)", len,
                          CHECKPOINT_MAX);
    json_t *obj = NULL;
    llmos_err err = ljson_parse_text(text, len, "audit checkpoint", 4, &obj);
    if (err)
        return err;
    uint8_t id[16], hash[AUDIT_HASH_BYTES], mac[STORE_MAC_BYTES], mine[16], want[STORE_MAC_BYTES];
    int64_t version = 0, seq = 0, when = 0;
    const char *format = ljson_get_string(obj, "format", "");
    if (strcmp(format, CHECKPOINT_FORMAT) != 0)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "audit checkpoint: member \"format\" is \"%s\", expected \"%s\"", format,
                         CHECKPOINT_FORMAT);
    if (!err)
        err = ljson_require_int(obj, "version", "audit checkpoint", &version);
    if (!err && version != 1)
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                         "audit checkpoint: version %lld; this llmos reads version 1",
                         (long long)version);
    if (!err)
        err = ljson_require_int(obj, "seq", "audit checkpoint", &seq);
    if (!err && seq < 0)
        err = llmos_fail(LLMOS_ERR_FORMAT, "audit checkpoint: member \"seq\" is negative");
    if (!err)
        err = ljson_require_int(obj, "time", "audit checkpoint", &when);
    if (!err)
        err = get_hex(obj, "db_id", id, sizeof id);
    if (!err)
        err = get_hex(obj, "hash", hash, sizeof hash);
    if (!err)
        err = get_hex(obj, "mac", mac, sizeof mac);
    json_decref(obj);
    if (!err)
        err = store_db_id(s, mine);
    if (err)
        return err;
    if (sodium_memcmp(id, mine, sizeof id) != 0) {
        char a[33], b[33];
        return llmos_fail(LLMOS_ERR_INVALID,
                          "this checkpoint is of another store (database id %s; this store's "
                          "is %s)",
                          llmos_hex_encode(a, sizeof a, id, sizeof id),
                          llmos_hex_encode(b, sizeof b, mine, sizeof mine));
    }
    if ((err = checkpoint_mac(s, id, seq, hash, when, want)))
        return err;
    if (sodium_memcmp(mac, want, sizeof mac) != 0)
        return llmos_fail(LLMOS_ERR_CRYPTO,
                          "the checkpoint's MAC does not match: it was altered after it was "
                          "made, or made under another key");
    /* the chain first: a log that does not verify is reported as such */
    if ((err = audit_verify(s, v)) || !v->ok || seq == 0)
        return err;
    hash_at_ctx at = {.seq = seq};
    if ((err = store_audit_iterate(s, seq, take_hash_at, &at)))
        return err;
    time_t t = (time_t)when;
    struct tm tm;
    char made[32] = "?";
    if (gmtime_r(&t, &tm))
        strftime(made, sizeof made, "%Y-%m-%d %H:%M UTC", &tm);
    if (!at.found) {
        v->ok = false;
        v->bad_seq = seq;
        snprintf(v->reason, sizeof v->reason,
                 "the log ends at record %" PRId64 ", but the checkpoint made %s says record "
                 "%" PRId64 " was there: records were removed, or an older copy of the store "
                 "was put back",
                 v->records, made, seq);
    } else if (sodium_memcmp(at.hash, hash, sizeof hash) != 0) {
        char now_hex[17], then_hex[17];
        v->ok = false;
        v->bad_seq = seq;
        snprintf(v->reason, sizeof v->reason,
                 "record %" PRId64 " differs from the checkpoint made %s (hash %s... now, %s... "
                 "then): the log was rewritten since",
                 seq, made, llmos_hex_encode(now_hex, sizeof now_hex, at.hash, 8),
                 llmos_hex_encode(then_hex, sizeof then_hex, hash, 8));
    }
    return LLMOS_OK;
}
