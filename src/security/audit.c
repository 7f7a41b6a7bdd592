/*
 * audit.c - the append-only audit log as a hash chain over the store's audit table.
 *
 * Record i holds prev_hash = hash of record i-1 (32 zero bytes for the first) and
 * hash = BLAKE2b-256(prev_hash || canonical bytes of record i) (libsodium crypto_generichash,
 * unkeyed, 32-byte output). The canonical bytes are
 *   "llmos-audit-v1" NUL <seq decimal> NUL <time decimal> NUL <kind> NUL <payload>
 * NUL cannot occur inside the fields (kind and payload are C strings), so the encoding is
 * unambiguous. The head (last seq and hash) is also kept in the setting "audit.head", so that
 * cutting records off the end is seen too (an attacker who can write the database can of
 * course rewrite head and chain together: the chain proves integrity against edits that do
 * not recompute every later hash, and the encrypted store keeps those without the key out).
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

#define AUDIT_HEAD_KEY "audit.head"

struct audit {
    store *st;
    int64_t last_seq; /* the head: 0 before the first record, never negative */
    uint8_t last_hash[AUDIT_HASH_BYTES];
};

llmos_err audit_canonical(int64_t seq, int64_t time_s, const char *kind, const char *payload,
                          llmos_buf *out)
{
    assert(seq > 0 && kind && payload && out);
    if (buf_printf(out, "llmos-audit-v1%c%" PRId64 "%c%" PRId64 "%c", 0, seq, 0, time_s, 0) ||
        buf_puts(out, kind) || buf_putc(out, 0) || buf_puts(out, payload))
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
    return LLMOS_OK;
}

static llmos_err record_hash(const uint8_t prev[AUDIT_HASH_BYTES], int64_t seq, int64_t time_s,
                             const char *kind, const char *payload, uint8_t out[AUDIT_HASH_BYTES])
{
    assert(prev && kind && payload && out);
    llmos_buf b = {0};
    if (buf_append(&b, prev, AUDIT_HASH_BYTES)) {
        buf_free(&b);
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory");
    }
    llmos_err err = audit_canonical(seq, time_s, kind, payload, &b);
    if (!err)
        crypto_generichash(out, AUDIT_HASH_BYTES, (const unsigned char *)b.data, b.len, NULL, 0);
    buf_free(&b);
    return err;
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
    if (!err)
        err = record_hash(prev, seq, now, kind, text.data, h);
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
    }
    return err;
}

typedef struct verify_ctx {
    audit_verdict *v;
    int64_t expect_seq;
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
    uint8_t h[AUDIT_HASH_BYTES];
    c->err = record_hash(c->prev, r->seq, r->time, r->kind ? r->kind : "",
                         r->payload ? r->payload : "", h);
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
    llmos_err err = store_audit_iterate(s, 1, verify_one, &c);
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
