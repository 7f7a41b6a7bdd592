/*
 * test_audit.c - the hash-chained audit log: a clean chain verifies, and each tampering done
 * directly in SQLite on the opened store (edit, remove, reorder, truncate, forged hash) is
 * found by audit_verify, which names the first bad record. The chain also survives reopening.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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
    assert_int_equal(audit_canonical(7, 1700000000, "login", "{\"a\":1}", &b), LLMOS_OK);
    const char want[] = "llmos-audit-v1\0"
                        "7\0"
                        "1700000000\0"
                        "login\0"
                        "{\"a\":1}";
    assert_int_equal(b.len, sizeof want - 1);
    assert_memory_equal(b.data, want, b.len);
    buf_free(&b);
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
        cmocka_unit_test(test_bad_append),
        cmocka_unit_test(test_two_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
