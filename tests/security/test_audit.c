/*
 * test_audit.c - the hash-chained audit log: a clean chain verifies, and each tampering done
 * directly in SQLite on the opened store (edit, remove, reorder, truncate, forged hash, bytes
 * hidden after a NUL) is found by audit_verify, which names the first bad record. The chain
 * also survives reopening, records of the old canonical form keep verifying, and payloads
 * holding a NUL are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "llmos/security.h"
#include "storage/store_internal.h"
#include "testutil.h"

static char dir[256];

static store *open_store(void)
{
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    store *s = NULL;
    assert_int_equal(store_open(dir, "pw", &o, &s), LLMOS_OK);
    return s;
}

/* A store with 5 chained records (seq 1..5). */
static store *five_records(void)
{
    assert_true(tu_mkdtemp("audit", dir, sizeof dir));
    store *s = open_store();
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    for (int i = 1; i <= 5; i++) {
        json_t *p = json_pack("{s:i, s:s}", "n", i, "what", i % 2 ? "syscall" : "policy");
        assert_int_equal(audit_append(a, i % 2 ? "syscall" : "policy", p), LLMOS_OK);
        json_decref(p);
    }
    audit_free(a);
    return s;
}

static void sql(store *s, const char *q)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, q, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", q, msg ? msg : "?");
    sqlite3_free(msg);
}

static void expect_bad(store *s, int64_t seq, const char *words)
{
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_false(v.ok);
    assert_int_equal(v.bad_seq, seq);
    if (!strstr(v.reason, words))
        fail_msg("reason '%s' lacks '%s'", v.reason, words);
}

static void finish(store *s)
{
    store_close(s);
    tu_rmrf(dir);
}

static void test_clean_chain_and_reopen(void **state)
{
    (void)state;
    store *s = five_records();
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 5);
    /* Reopen: appending continues the chain. */
    store_close(s);
    s = open_store();
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    json_t *p = json_pack("{s:s}", "event", "after reopen");
    assert_int_equal(audit_append(a, "login", p), LLMOS_OK);
    json_decref(p);
    audit_free(a);
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 6);
    finish(s);
}

static void test_edited_payload(void **state)
{
    (void)state;
    store *s = five_records();
    sql(s, "UPDATE audit SET payload = '{\"n\":3,\"what\":\"nothing happened\"}' WHERE seq = 3");
    expect_bad(s, 3, "altered");
    finish(s);
}

static void test_edited_kind_and_time(void **state)
{
    (void)state;
    store *s = five_records();
    sql(s, "UPDATE audit SET time = time + 3600 WHERE seq = 4");
    expect_bad(s, 4, "altered");
    finish(s);
    s = five_records();
    sql(s, "UPDATE audit SET kind = 'login' WHERE seq = 2");
    expect_bad(s, 2, "altered");
    finish(s);
}

static void test_removed_record(void **state)
{
    (void)state;
    store *s = five_records();
    sql(s, "DELETE FROM audit WHERE seq = 2");
    expect_bad(s, 2, "missing");
    finish(s);
    /* Removed and renumbered so the sequence has no gap: the link breaks instead. */
    s = five_records();
    sql(s, "DELETE FROM audit WHERE seq = 2; UPDATE audit SET seq = seq - 1 WHERE seq > 2");
    expect_bad(s, 2, "does not link");
    finish(s);
}

static void test_reordered_records(void **state)
{
    (void)state;
    store *s = five_records();
    sql(s, "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;"
           "UPDATE audit SET seq = 3 WHERE seq = -1");
    expect_bad(s, 2, "does not link");
    finish(s);
}

static void test_truncated_end(void **state)
{
    (void)state;
    store *s = five_records();
    sql(s, "DELETE FROM audit WHERE seq = 5");
    expect_bad(s, 5, "removed from the end");
    finish(s);
}

static void test_forged_hash(void **state)
{
    (void)state;
    store *s = five_records();
    /* Edit the payload and put in a made-up hash: the next record's prev_hash no longer
     * matches, and the forged record's own hash does not match its bytes. */
    sql(s, "UPDATE audit SET payload = '{}', hash = zeroblob(32) WHERE seq = 1");
    expect_bad(s, 1, "altered");
    finish(s);
}

static void test_canonical_bytes(void **state)
{
    (void)state;
    llmos_buf b = {0};
    /* form 1, as records were written before form 2 */
    assert_int_equal(audit_canonical(1, 7, 1700000000, "login", 5, "{\"a\":1}", 7, &b), LLMOS_OK);
    const char want1[] = "llmos-audit-v1\0"
                         "7\0"
                         "1700000000\0"
                         "login\0"
                         "{\"a\":1}";
    assert_int_equal(b.len, sizeof want1 - 1);
    assert_memory_equal(b.data, want1, b.len);
    /* form 2: lengths and bytes */
    buf_clear(&b);
    assert_int_equal(audit_canonical(2, 7, 1700000000, "login", 5, "{\"a\":1}", 7, &b), LLMOS_OK);
    const char want2[] = "llmos-audit-v2\0"
                         "\x07\0\0\0\0\0\0\0"           /* seq */
                         "\x00\xf1\x53\x65\0\0\0\0"     /* time 1700000000 = 0x6553f100 */
                         "\x05\0\0\0\0\0\0\0login"      /* kind */
                         "\x07\0\0\0\0\0\0\0{\"a\":1}"; /* payload */
    assert_int_equal(b.len, sizeof want2 - 1);
    assert_memory_equal(b.data, want2, b.len);
    /* a NUL inside is refused in both forms */
    assert_int_equal(audit_canonical(2, 7, 0, "lo\0gin", 6, "{}", 2, &b), LLMOS_ERR_INVALID);
    assert_int_equal(audit_canonical(1, 7, 0, "login", 5, "{}\0x", 4, &b), LLMOS_ERR_INVALID);
    buf_free(&b);
}

/* Bytes hidden after a NUL inside a stored kind or payload: form 1 hashed C strings, so they
 * were neither hashed nor shown and the log said "intact". Now the record is bad. */
static void test_nul_hidden_in_record(void **state)
{
    (void)state;
    store *s = five_records();
    sql(s, "UPDATE audit SET kind = kind || char(0) || ' and the money was sent' WHERE seq = 3");
    expect_bad(s, 3, "NUL");
    finish(s);
    s = five_records();
    sql(s, "PRAGMA ignore_check_constraints = ON;"
           "UPDATE audit SET payload = payload || char(0) || '{\"secret\":1}' WHERE seq = 2");
    expect_bad(s, 2, "payload holds a NUL");
    finish(s);
}

/* audit_append refuses a payload with a NUL in a string or a key (jansson keeps them when
 * asked), naming the member; nothing is appended. */
static void test_append_refuses_nul(void **state)
{
    (void)state;
    store *s = five_records();
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    json_t *p = json_pack("{s:s, s:{s:[s, o]}}", "tool", "send", "args", "to", "x",
                          json_stringn("user\0attacker@example.org", 26));
    assert_non_null(p);
    assert_int_equal(audit_append(a, "syscall", p), LLMOS_ERR_INVALID);
    if (!strstr(llmos_errmsg(), "\"to\"") || !strstr(llmos_errmsg(), "NUL"))
        fail_msg("the message does not name the member and the NUL: %s", llmos_errmsg());
    json_decref(p);
    p = json_object();
    assert_int_equal(json_object_setn_new(p, "ok\0hidden", 9, json_true()), 0);
    assert_int_equal(audit_append(a, "syscall", p), LLMOS_ERR_INVALID);
    json_decref(p);
    p = json_object();
    assert_int_equal(audit_append(a, "", p), LLMOS_ERR_INVALID);
    json_decref(p);
    audit_free(a);
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 5);
    finish(s);
}

/* Append a record in form 1, as llmos did before form 2. */
static void append_form1(store *s, int64_t seq, uint8_t prev[AUDIT_HASH_BYTES])
{
    char payload[64];
    snprintf(payload, sizeof payload, "{\"old\":%lld}", (long long)seq);
    llmos_buf b = {0};
    assert_int_equal(buf_append(&b, prev, AUDIT_HASH_BYTES), LLMOS_OK);
    assert_int_equal(
        audit_canonical(1, seq, 1600000000 + seq, "login", 5, payload, strlen(payload), &b),
        LLMOS_OK);
    uint8_t h[AUDIT_HASH_BYTES];
    crypto_generichash(h, sizeof h, (const unsigned char *)b.data, b.len, NULL, 0);
    buf_free(&b);
    store_audit_record r = {.time = 1600000000 + seq,
                            .kind = "login",
                            .payload = payload,
                            .prev_hash = prev,
                            .prev_hash_len = AUDIT_HASH_BYTES,
                            .hash = h,
                            .hash_len = AUDIT_HASH_BYTES};
    int64_t got = 0;
    assert_int_equal(store_audit_append(s, &r, &got), LLMOS_OK);
    assert_int_equal(got, seq);
    char head[128];
    int n = snprintf(head, sizeof head, "%lld:", (long long)seq);
    llmos_hex_encode(head + n, sizeof head - (size_t)n, h, sizeof h);
    assert_int_equal(store_setting_set(s, "audit.head", head), LLMOS_OK);
    memcpy(prev, h, AUDIT_HASH_BYTES);
}

/* A log begun in form 1 keeps verifying when form 2 records follow: the setting
 * audit.form2_from says where form 2 begins, and moving or removing it is seen. */
static void test_old_form_records_verify(void **state)
{
    (void)state;
    assert_true(tu_mkdtemp("audit", dir, sizeof dir));
    store *s = open_store();
    uint8_t prev[AUDIT_HASH_BYTES] = {0};
    for (int64_t seq = 1; seq <= 3; seq++)
        append_form1(s, seq, prev);
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    for (int i = 0; i < 2; i++) {
        json_t *p = json_pack("{s:i}", "new", i);
        assert_int_equal(audit_append(a, "syscall", p), LLMOS_OK);
        json_decref(p);
    }
    audit_free(a);
    char *from = NULL;
    assert_int_equal(store_setting_get(s, "audit.form2_from", &from), LLMOS_OK);
    assert_string_equal(from, "4");
    free(from);
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 5);
    sql(s, "UPDATE settings SET value = '5' WHERE key = 'audit.form2_from'");
    expect_bad(s, 4, "altered");
    sql(s, "UPDATE settings SET value = '3' WHERE key = 'audit.form2_from'");
    expect_bad(s, 3, "altered");
    sql(s, "DELETE FROM settings WHERE key = 'audit.form2_from'");
    expect_bad(s, 4, "altered");
    sql(s, "INSERT INTO settings(key, value) VALUES ('audit.form2_from', 'four')");
    expect_bad(s, 1, "not a record number");
    finish(s);
}

/* `llmos audit` shows every byte of a record, a NUL inside too, and `llmos audit verify`
 * names the record instead of saying "intact". */
static void test_cli_shows_hidden_bytes(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        skip();
    char home[256], sub[300];
    assert_true(tu_mkdtemp("audit", home, sizeof home));
    snprintf(sub, sizeof sub, "%s/store", home);
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    store *s = NULL;
    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_OK);
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    json_t *p = json_pack("{s:s}", "to", "user");
    assert_int_equal(audit_append(a, "syscall", p), LLMOS_OK);
    json_decref(p);
    audit_free(a);
    sql(s, "PRAGMA ignore_check_constraints = ON;"
           "UPDATE audit SET payload = payload || char(0) || 'HIDDEN' WHERE seq = 1");
    store_close(s);
    llmos_buf out = {0};
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw audit", home),
                     0);
    if (!strstr(out.data, "{\"to\":\"user\"}\\0HIDDEN"))
        fail_msg("the hidden bytes are not shown: %s", out.data);
    buf_clear(&out);
    assert_int_equal(
        tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw audit verify", home), 1);
    assert_non_null(strstr(out.data, "TAMPERED: first bad record 1"));
    buf_free(&out);
    tu_rmrf(home);
}

static void test_bad_append(void **state)
{
    (void)state;
    assert_true(tu_mkdtemp("audit", dir, sizeof dir));
    store *s = open_store();
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    json_t *arr = json_array();
    assert_int_equal(audit_append(a, "x", arr), LLMOS_ERR_INVALID);
    json_decref(arr);
    audit_free(a);
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 0);
    finish(s);
}

/* Two audit objects on one store (two llmos processes) interleave without breaking the chain. */
static void test_two_writers(void **state)
{
    (void)state;
    store *s = five_records();
    audit *a = NULL, *b = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    assert_int_equal(audit_open(s, &b), LLMOS_OK);
    for (int i = 0; i < 4; i++) {
        json_t *p = json_pack("{s:i}", "i", i);
        assert_int_equal(audit_append(i % 2 ? a : b, "syscall", p), LLMOS_OK);
        json_decref(p);
    }
    audit_free(a);
    audit_free(b);
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 9);
    finish(s);
}

/* ---- rollback and checkpoints ------------------------------------------------------------ */

typedef struct last_rec {
    int64_t seq;
    char kind[64], payload[256];
} last_rec;

static bool keep_last(const store_audit_record *r, void *ctx)
{
    last_rec *l = ctx;
    l->seq = r->seq;
    snprintf(l->kind, sizeof l->kind, "%s", r->kind);
    snprintf(l->payload, sizeof l->payload, "%s", r->payload);
    return true;
}

static void append_n(store *s, int n)
{
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    for (int i = 0; i < n; i++) {
        json_t *p = json_pack("{s:i}", "i", i);
        assert_int_equal(audit_append(a, "syscall", p), LLMOS_OK);
        json_decref(p);
    }
    audit_free(a);
}

/* Put a copy of directory `from` at `to` (whatever was there removed first). */
static void copy_dir(const char *from, const char *to)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
}

/* A rollback the user accepted (allow_rollback) is itself a record in the log, and the log
 * verifies. */
static void test_accepted_rollback_audited(void **state)
{
    (void)state;
    char sub[300], fresh[300], copy[300];
    assert_true(tu_mkdtemp("audit", dir, sizeof dir));
    snprintf(sub, sizeof sub, "%s/store", dir);
    snprintf(fresh, sizeof fresh, "%s/freshness", dir);
    snprintf(copy, sizeof copy, "%s/copy", dir);
    store_options o = {.no_fsync = true, .freshness_dir = fresh};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    store *s = NULL;
    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_OK);
    append_n(s, 2);
    store_close(s);
    copy_dir(sub, copy);
    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_OK);
    append_n(s, 3);
    store_close(s);
    copy_dir(copy, sub);

    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_ERR_CRYPTO);
    o.allow_rollback = true;
    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_OK);
    audit *a = NULL;
    assert_int_equal(audit_open(s, &a), LLMOS_OK);
    audit_free(a);
    last_rec l = {0};
    assert_int_equal(store_audit_iterate(s, 1, keep_last, &l), LLMOS_OK);
    assert_int_equal(l.seq, 3);
    assert_string_equal(l.kind, "store.rollback");
    assert_non_null(strstr(l.payload, "\"found_seq\":2"));
    assert_non_null(strstr(l.payload, "\"seen_seq\":5"));
    audit_verdict v;
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    store_close(s);
    tu_rmrf(dir);
}

/* A checkpoint catches what the chain cannot: a holder of the key who rewrites the log
 * consistently (records removed from the end with the head moved back, or a record replaced
 * and every later hash recomputed). */
static void test_checkpoint(void **state)
{
    (void)state;
    store *s = five_records();
    llmos_buf cp = {0};
    assert_int_equal(audit_checkpoint(s, &cp), LLMOS_OK);
    assert_non_null(strstr(cp.data, "\"seq\": 5"));
    audit_verdict v;
    assert_int_equal(audit_verify_checkpoint(s, cp.data, cp.len, &v), LLMOS_OK);
    assert_true(v.ok);
    append_n(s, 2); /* the log grows: still holds the checkpoint's head */
    assert_int_equal(audit_verify_checkpoint(s, cp.data, cp.len, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(v.records, 7);

    /* cut back to record 3, head moved with it: the chain is whole, the checkpoint is not */
    sql(s, "DELETE FROM audit WHERE seq > 3;"
           "UPDATE settings SET value = (SELECT '3:' || lower(hex(hash)) FROM audit WHERE seq = 3)"
           " WHERE key = 'audit.head'");
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(audit_verify_checkpoint(s, cp.data, cp.len, &v), LLMOS_OK);
    assert_false(v.ok);
    assert_int_equal(v.bad_seq, 5);
    if (!strstr(v.reason, "ends at record 3") || !strstr(v.reason, "record 5 was there"))
        fail_msg("reason: %s", v.reason);
    /* records 4 and 5 made again, differently: record 5 is not the checkpoint's */
    append_n(s, 2);
    assert_int_equal(audit_verify(s, &v), LLMOS_OK);
    assert_true(v.ok);
    assert_int_equal(audit_verify_checkpoint(s, cp.data, cp.len, &v), LLMOS_OK);
    assert_false(v.ok);
    assert_int_equal(v.bad_seq, 5);
    if (!strstr(v.reason, "record 5 differs from the checkpoint"))
        fail_msg("reason: %s", v.reason);

    /* a checkpoint edited after it was made fails its MAC */
    char *edit = strstr(cp.data, "\"seq\": 5");
    edit[7] = '4';
    assert_int_equal(audit_verify_checkpoint(s, cp.data, cp.len, &v), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "MAC"));
    edit[7] = '5';
    /* malformed ones are named */
    assert_int_equal(audit_verify_checkpoint(s, "{\"format\":\"x\"}", 14, &v), LLMOS_ERR_FORMAT);
    assert_int_equal(audit_verify_checkpoint(s, "not json", 8, &v), LLMOS_ERR_FORMAT);
    /* a log that does not verify gets no checkpoint */
    sql(s, "UPDATE audit SET payload = '{}' WHERE seq = 2");
    llmos_buf no = {0};
    assert_int_equal(audit_checkpoint(s, &no), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "record 2"));
    buf_free(&no);
    finish(s);

    /* another store's checkpoint is named as such */
    s = five_records();
    assert_int_equal(audit_verify_checkpoint(s, cp.data, cp.len, &v), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "another store"));
    finish(s);
    buf_free(&cp);
    /* a store in memory only has no key to make one */
    assert_int_equal(store_open_memory(NULL, &s), LLMOS_OK);
    assert_int_equal(audit_checkpoint(s, &cp), LLMOS_ERR_UNSUPPORTED);
    store_close(s);
    buf_free(&cp);
}

/* Run llmos on the store in `home` (args: a printf format); stdout and stderr together in
 * out. */
static int run_in(const char *home, llmos_buf *out, const char *fmt, ...) LLMOS_PRINTF(3, 4);
static int run_in(const char *home, llmos_buf *out, const char *fmt, ...)
{
    char args[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    llmos_buf err = {0};
    int rc = tu_run_llmos(out, &err, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak %s",
                          home, args);
    assert_int_equal(buf_puts(out, err.data ? err.data : ""), LLMOS_OK);
    buf_free(&err);
    return rc;
}

/* The command line: an older copy of store/ put back is refused by every command, 'llmos audit
 * verify' included (naming both record numbers), unless LLMOS_ALLOW_ROLLBACK=1; and a
 * checkpoint made before catches the rollback even when the freshness record is gone too. */
static void test_cli_rollback_and_checkpoint(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        skip();
    char home[256], sub[300], copy[300], fresh[300], cpf[300];
    assert_true(tu_mkdtemp("audit", home, sizeof home));
    snprintf(sub, sizeof sub, "%s/store", home);
    snprintf(copy, sizeof copy, "%s/copy", home);
    snprintf(fresh, sizeof fresh, "%s/freshness", home);
    snprintf(cpf, sizeof cpf, "%s/checkpoint.json", home);
    llmos_buf out = {0};
    assert_int_equal(run_in(home, &out, "memory add --embed-model lexical first thing"), 0);
    copy_dir(sub, copy);
    assert_int_equal(run_in(home, &out, "memory add second thing"), 0);
    assert_int_equal(run_in(home, &out, "audit checkpoint '%s'", cpf), 0);
    assert_int_equal(run_in(home, &out, "audit verify --checkpoint '%s'", cpf), 0);
    assert_non_null(strstr(out.data, "intact"));

    copy_dir(copy, sub);
    assert_int_equal(run_in(home, &out, "audit verify"), 1);
    assert_null(strstr(out.data, "intact"));
    if (!strstr(out.data, "older than this machine last saw it") ||
        !strstr(out.data, "ends at record 2") || !strstr(out.data, "LLMOS_ALLOW_ROLLBACK"))
        fail_msg("%s", out.data);

    /* the attacker put back an older freshness record as well (here: removed it): only the
     * checkpoint kept elsewhere still tells */
    tu_rmrf(fresh);
    assert_int_equal(run_in(home, &out, "audit verify --checkpoint '%s'", cpf), 1);
    if (!strstr(out.data, "TAMPERED") || !strstr(out.data, "was there"))
        fail_msg("%s", out.data);

    /* accepted on purpose: opens, warns, and the log says so */
    copy_dir(copy, sub);
    assert_int_equal(run_in(home, &out, "LLMOS_ALLOW_ROLLBACK=1 audit verify"), 0);
    assert_non_null(strstr(out.data, "ROLLBACK ACCEPTED"));
    assert_int_equal(run_in(home, &out, "audit"), 0);
    assert_non_null(strstr(out.data, "store.rollback"));
    buf_free(&out);
    tu_rmrf(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_chain_and_reopen),
        cmocka_unit_test(test_edited_payload),
        cmocka_unit_test(test_edited_kind_and_time),
        cmocka_unit_test(test_removed_record),
        cmocka_unit_test(test_reordered_records),
        cmocka_unit_test(test_truncated_end),
        cmocka_unit_test(test_forged_hash),
        cmocka_unit_test(test_canonical_bytes),
        cmocka_unit_test(test_nul_hidden_in_record),
        cmocka_unit_test(test_append_refuses_nul),
        cmocka_unit_test(test_old_form_records_verify),
        cmocka_unit_test(test_cli_shows_hidden_bytes),
        cmocka_unit_test(test_accepted_rollback_audited),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_cli_rollback_and_checkpoint),
        cmocka_unit_test(test_bad_append),
        cmocka_unit_test(test_two_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
