/*
 * test_fresh.c - the freshness record kept outside a store: an older copy of the store put
 * back over the current one is refused (naming both audit sequence numbers), or opened with a
 * notice when the caller allows it; a copy with another history, an altered record and a
 * deleted one are each noticed; the record follows every commit that appended an audit record,
 * not just closes. And the store's MAC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/storage.h"
#include "testutil.h"

static char base[256], sdir[300], fdir[300], backup[300];

static int setup(void **state)
{
    (void)state;
    if (!tu_mkdtemp("fresh", base, sizeof base))
        return -1;
    snprintf(sdir, sizeof sdir, "%s/store", base);
    snprintf(fdir, sizeof fdir, "%s/freshness", base);
    snprintf(backup, sizeof backup, "%s/backup", base);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(base);
    return 0;
}

static store_options opts(bool allow)
{
    store_options o = {.no_fsync = true, .freshness_dir = fdir, .allow_rollback = allow};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    return o;
}

static store *open_ok(bool allow)
{
    store_options o = opts(allow);
    store *s = NULL;
    if (store_open(sdir, "pw", &o, &s))
        fail_msg("store_open: %s", llmos_errmsg());
    return s;
}

/* Append audit records up to seq `to` (the store only keeps the bytes: the hash is made up,
 * distinct per seq and per `variant`). */
static void append_to(store *s, int64_t to, int variant)
{
    for (;;) {
        uint8_t h[32];
        memset(h, variant, sizeof h);
        store_audit_record r = {.kind = "test", .payload = "{}", .hash = h, .hash_len = 32};
        int64_t seq = 0;
        assert_int_equal(store_audit_append(s, &r, &seq), LLMOS_OK);
        if (seq >= to)
            return;
    }
}

static void sh(const char *cmd)
{
    if (system(cmd) != 0)
        fail_msg("%s failed", cmd);
}

/* Copy directory `from` over `to` (removed first). */
static void copy_dir(const char *from, const char *to)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -a '%s' '%s'", to, from, to);
    sh(cmd);
}

static void save_copy(void)
{
    copy_dir(sdir, backup);
}

/* Put the saved copy back over the store, as an attacker (or a careless restore) would. */
static void put_copy_back(void)
{
    copy_dir(backup, sdir);
}

static void expect_refused(const char *w1, const char *w2)
{
    store_options o = opts(false);
    store *s = NULL;
    assert_int_equal(store_open(sdir, "pw", &o, &s), LLMOS_ERR_CRYPTO);
    assert_null(s);
    const char *msg = llmos_errmsg();
    if (!strstr(msg, w1) || (w2 && !strstr(msg, w2)) || !strstr(msg, "LLMOS_ALLOW_ROLLBACK"))
        fail_msg("message lacks '%s' / '%s' / how to go on: %s", w1, w2 ? w2 : "", msg);
}

static void test_older_copy_refused(void **state)
{
    (void)state;
    store *s = open_ok(false);
    append_to(s, 3, 1);
    store_close(s);
    save_copy();
    s = open_ok(false);
    append_to(s, 5, 1);
    store_close(s);

    put_copy_back();
    expect_refused("ends at record 3", "record 5 was seen here");
    expect_refused("ends at record 3", NULL); /* and stays refused */

    /* allowed: opens, once, with a notice for the audit log; the record now says 3 */
    s = open_ok(true);
    store_rollback_notice n;
    assert_true(store_take_rollback_notice(s, &n));
    assert_int_equal(n.seen_seq, 5);
    assert_int_equal(n.found_seq, 3);
    assert_false(store_take_rollback_notice(s, &n));
    store_close(s);
    s = open_ok(false);
    assert_false(store_take_rollback_notice(s, &n));
    store_close(s);
}

/* An older copy that was then written to elsewhere (so that its log is as long as, or longer
 * than, what this machine saw) has another history: refused too. */
static void test_other_history_refused(void **state)
{
    (void)state;
    store *s = open_ok(false);
    append_to(s, 3, 1);
    store_close(s);
    save_copy();
    s = open_ok(false);
    append_to(s, 5, 1);
    store_close(s);

    put_copy_back();
    store_options o = opts(false);
    o.freshness_dir = NULL; /* written on another machine, which kept no record */
    assert_int_equal(store_open(sdir, "pw", &o, &s), LLMOS_OK);
    append_to(s, 7, 2);
    store_close(s);
    expect_refused("audit record 5 is not the one this machine saw", "ends at record 7");
}

/* The record is sealed: altered, it does not open, and the store is refused until the user
 * says otherwise. Deleted, the store opens with a warning, since it had a record before. */
static llmos_log_level last_level;
static char last_log[2048];
static void sink(llmos_log_level level, const char *component, const char *msg, void *ctx)
{
    (void)component;
    (void)ctx;
    last_level = level;
    snprintf(last_log, sizeof last_log, "%s", msg);
}

static void test_record_altered_or_deleted(void **state)
{
    (void)state;
    store *s = open_ok(false);
    append_to(s, 2, 1);
    uint8_t id[16];
    assert_int_equal(store_db_id(s, id), LLMOS_OK);
    store_close(s);
    char hex[33], rec[400];
    snprintf(rec, sizeof rec, "%s/%s", fdir, llmos_hex_encode(hex, sizeof hex, id, sizeof id));
    struct stat st;
    assert_int_equal(stat(rec, &st), 0);
    assert_int_equal(st.st_size, 96);
    assert_int_equal(st.st_mode & 0777, 0600);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "printf '\\377' | dd of='%s' bs=1 seek=50 conv=notrunc status=none",
             rec);
    sh(cmd);
    expect_refused("does not open", rec);
    s = open_ok(true); /* allowed: opens, and a new record is written */
    store_rollback_notice n;
    assert_true(store_take_rollback_notice(s, &n));
    assert_int_equal(n.seen_seq, -1);
    assert_int_equal(n.found_seq, 2);
    store_close(s);

    assert_int_equal(unlink(rec), 0);
    llmos_log_set_sink(sink, NULL);
    last_log[0] = 0;
    s = open_ok(false);
    llmos_log_set_sink(NULL, NULL);
    assert_int_equal(last_level, LLMOS_LOG_WARN);
    assert_non_null(strstr(last_log, "no freshness record"));
    store_close(s);
    assert_int_equal(stat(rec, &st), 0); /* written again */
}

/* The record follows each commit that appended an audit record, not the close: a process that
 * dies after appending (never closing) still leaves the older copy refused. Nothing appended
 * in a transaction that is rolled back counts. */
static void test_record_follows_commits(void **state)
{
    (void)state;
    store *s = open_ok(false);
    append_to(s, 2, 1);
    store_close(s);
    save_copy();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store_options o = opts(false);
        store *c = NULL;
        if (store_open(sdir, "pw", &o, &c) || store_begin(c))
            _exit(1);
        uint8_t h[32] = {7};
        store_audit_record r = {.kind = "test", .payload = "{}", .hash = h, .hash_len = 32};
        if (store_audit_append(c, &r, NULL) || store_commit(c))
            _exit(2);
        _exit(0); /* dies without store_close */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    put_copy_back();
    expect_refused("ends at record 2", "record 3 was seen here");

    /* a rolled-back append moves nothing */
    s = open_ok(true);
    store_close(s);
    s = open_ok(false);
    assert_int_equal(store_begin(s), LLMOS_OK);
    append_to(s, 3, 3);
    assert_int_equal(store_rollback(s), LLMOS_OK);
    store_close(s);
    s = open_ok(false); /* the record did not run ahead to 3 */
    store_close(s);
}

static void test_mac(void **state)
{
    (void)state;
    store *s = open_ok(false);
    uint8_t a[STORE_MAC_BYTES], b[STORE_MAC_BYTES], c[STORE_MAC_BYTES];
    assert_int_equal(store_mac(s, "test-purpose", "hello", 5, a), LLMOS_OK);
    assert_int_equal(store_mac(s, "test-purpose", "hello", 5, b), LLMOS_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(store_mac(s, "other-purpose", "hello", 5, c), LLMOS_OK);
    assert_memory_not_equal(a, c, sizeof a);
    assert_int_equal(store_mac(s, "test-purpose", "hellp", 5, c), LLMOS_OK);
    assert_memory_not_equal(a, c, sizeof a);
    store_close(s);
    s = open_ok(false); /* the same key after reopening */
    assert_int_equal(store_mac(s, "test-purpose", "hello", 5, c), LLMOS_OK);
    assert_memory_equal(a, c, sizeof a);
    store_close(s);
    assert_int_equal(store_open_memory(NULL, &s), LLMOS_OK);
    assert_int_equal(store_mac(s, "test-purpose", "hello", 5, c), LLMOS_ERR_UNSUPPORTED);
    uint8_t id[16];
    assert_int_equal(store_db_id(s, id), LLMOS_ERR_UNSUPPORTED);
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_older_copy_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_history_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_altered_or_deleted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_follows_commits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mac, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
