/*
 * test_tamper.c - offline tampering with a closed store: a flipped byte, truncation, swapped
 * pages, altered WAL frames are errors naming file and page; replay of an older version of a
 * page is not detectable by per-page AEAD (the documented limit) and this test pins that down.
 */
#include <fcntl.h>
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

#include "llmos/memory.h"
#include "llmos/storage.h"

#define PAGE 4096

static char dir[64], sub[128], dbp[160], walp[170];

static store_options opts(void)
{
    store_options o = {.embedder = memory_lexical_embedder()};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    return o;
}

static store *open_store(llmos_err *err)
{
    store_options o = opts();
    store *s = NULL;
    *err = store_open(sub, "pw", &o, &s);
    return s;
}

static void fill(store *s, int n, const char *tag)
{
    char text[200];
    assert_int_equal(store_begin(s), LLMOS_OK); /* one commit: fast */
    for (int i = 0; i < n; i++) {
        snprintf(text, sizeof text, "%s message number %d about apples and pears", tag, i);
        assert_int_equal(store_message_add(s, "user", "c", "user", text, 0, NULL), LLMOS_OK);
    }
    assert_int_equal(store_commit(s), LLMOS_OK);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/llmos-test-tamper-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(sub, sizeof sub, "%s/s", dir);
    snprintf(dbp, sizeof dbp, "%s/store.db", sub);
    snprintf(walp, sizeof walp, "%s/store.db-wal", sub);
    llmos_err err;
    store *s = open_store(&err);
    assert_int_equal(err, LLMOS_OK);
    fill(s, 300, "base");
    store_close(s);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

static void rw_page(const char *path, uint32_t pgno, uint8_t *buf, bool write)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    off_t off = (off_t)(pgno - 1) * PAGE;
    ssize_t n = write ? pwrite(fd, buf, PAGE, off) : pread(fd, buf, PAGE, off);
    assert_int_equal(n, PAGE);
    close(fd);
}

static void flip(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

static off_t size_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

/* Open the store and read everything; returns the first error (LLMOS_OK if none). */
static llmos_err open_and_check(void)
{
    llmos_err err;
    store *s = open_store(&err);
    if (!err)
        err = store_verify(s);
    store_close(s);
    return err;
}

static void test_flipped_byte(void **state)
{
    (void)state;
    assert_true(size_of(dbp) >= 6 * PAGE);
    flip(dbp, 3 * PAGE + 700); /* page 4 */
    assert_int_equal(open_and_check(), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "store.db"));
    assert_non_null(strstr(llmos_errmsg(), "database page 4 "));
    /* a search that needs the page fails the same way, never returns wrong data */
    llmos_err err;
    store *s = open_store(&err);
    assert_int_equal(err, LLMOS_OK);
    store_message *m = NULL;
    size_t n = 0;
    store_search_opts o = {.limit = 1000};
    const char *queries[] = {"apples", "", "pears number", "c"};
    int failed = 0;
    for (size_t i = 0; i < sizeof queries / sizeof queries[0] && !failed; i++) {
        o.conversation = i == 3 ? "c" : NULL;
        err = store_message_search(s, i == 3 ? "" : queries[i], &o, &m, &n);
        if (err) {
            failed = 1;
            break;
        }
        assert_int_equal(n, 300); /* a query that did not touch page 4 is complete */
        store_messages_free(m, n);
    }
    if (!failed) { /* page 4 is in none of those paths: count every table */
        store_stats st;
        err = store_get_stats(s, &st);
    }
    assert_int_equal(err, LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "database page 4 "));
    store_close(s);
}

static void test_flipped_header_page(void **state)
{
    (void)state;
    flip(dbp, 20); /* page 1, inside the SQLite header */
    llmos_err err;
    store *s = open_store(&err);
    assert_null(s);
    assert_int_equal(err, LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "database page 1 "));
    flip(dbp, PAGE - 1); /* restore, then break the tag */
    flip(dbp, 20);
    assert_int_equal(open_and_check(), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "database page 1 "));
}

static void test_truncated(void **state)
{
    (void)state;
    off_t size = size_of(dbp);
    uint32_t last = (uint32_t)(size / PAGE);
    /* cut inside the last page */
    assert_int_equal(truncate(dbp, size - 100), 0);
    assert_int_not_equal(open_and_check(), LLMOS_OK);
    char want[64];
    snprintf(want, sizeof want, "page %u", last);
    assert_non_null(strstr(llmos_errmsg(), want));
    assert_non_null(strstr(llmos_errmsg(), "cut short"));
    /* cut whole pages off: SQLite's header still counts them; reading them is an error */
    assert_int_equal(truncate(dbp, size - 2 * PAGE), 0);
    llmos_err err = open_and_check();
    assert_int_not_equal(err, LLMOS_OK);
    assert_non_null(strstr(llmos_errmsg(), "store.db"));
}

static void test_swapped_pages(void **state)
{
    (void)state;
    uint8_t a[PAGE], b[PAGE];
    rw_page(dbp, 2, a, false);
    rw_page(dbp, 3, b, false);
    rw_page(dbp, 2, b, true);
    rw_page(dbp, 3, a, true);
    assert_int_equal(open_and_check(), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "database page 2 "));
    /* a page moved from another store (another key and database id) */
    char other[160];
    snprintf(other, sizeof other, "%s/other", dir);
    store_options o = opts();
    store *s2 = NULL;
    assert_int_equal(store_open(other, "pw", &o, &s2), LLMOS_OK);
    fill(s2, 50, "other");
    char other_db[200];
    snprintf(other_db, sizeof other_db, "%s/store.db", other);
    store_close(s2);
    rw_page(dbp, 2, a, true); /* undo the swap */
    rw_page(dbp, 3, b, true);
    assert_int_equal(open_and_check(), LLMOS_OK);
    rw_page(other_db, 3, a, false);
    rw_page(dbp, 3, a, true);
    assert_int_equal(open_and_check(), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "database page 3 "));
}

/* Replay: per-page AEAD accepts an older version of the same page at the same place, because
 * nonce, tag and associated data are all as they were. docs/storage.md states this limit. */
static void test_replayed_page_is_not_detected(void **state)
{
    (void)state;
    llmos_err err;
    store *s = open_store(&err);
    assert_int_equal(err, LLMOS_OK);
    assert_int_equal(store_setting_set(s, "balance", "100 coins"), LLMOS_OK);
    store_close(s);
    off_t size = size_of(dbp);
    uint8_t *old = malloc((size_t)size);
    int fd = open(dbp, O_RDONLY);
    assert_int_equal(pread(fd, old, (size_t)size, 0), size);
    close(fd);

    s = open_store(&err);
    assert_int_equal(store_setting_set(s, "balance", "999 coins"), LLMOS_OK);
    store_close(s);
    assert_int_equal(size_of(dbp), size);

    /* copy back every page whose bytes changed: the old versions of those pages */
    int replayed = 0;
    for (uint32_t p = 1; p <= size / PAGE; p++) {
        uint8_t cur[PAGE];
        rw_page(dbp, p, cur, false);
        if (memcmp(cur, old + (size_t)(p - 1) * PAGE, PAGE) != 0) {
            rw_page(dbp, p, old + (size_t)(p - 1) * PAGE, true);
            replayed++;
        }
    }
    assert_true(replayed >= 1);
    free(old);
    assert_int_equal(open_and_check(), LLMOS_OK); /* not detected ... */
    s = open_store(&err);
    char *v = NULL;
    assert_int_equal(store_setting_get(s, "balance", &v), LLMOS_OK);
    assert_string_equal(v, "100 coins"); /* ... and the old value is back */
    free(v);
    store_close(s);
}

/* Leave a WAL behind: a child writes `n` committed messages and exits without closing. */
static void crash_with_wal(int n)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        llmos_err err;
        store *s = open_store(&err);
        if (err)
            _exit(3);
        char text[100];
        for (int i = 0; i < n; i++) {
            snprintf(text, sizeof text, "wal message %d", i);
            if (store_message_add(s, "user", "w", "user", text, 0, NULL))
                _exit(4);
        }
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_true(size_of(walp) > 32 + 3 * (24 + PAGE));
}

static int64_t count_wal_messages(llmos_err *err)
{
    store *s = open_store(err);
    if (*err)
        return -1;
    store_message *m = NULL;
    size_t n = 0;
    store_search_opts o = {.conversation = "w", .limit = 100};
    *err = store_message_search(s, "", &o, &m, &n);
    store_messages_free(m, n);
    store_close(s);
    return *err ? -1 : (int64_t)n;
}

static void test_wal_frame_altered(void **state)
{
    (void)state;
    crash_with_wal(5);
    /* the page of frame 1: 32-byte WAL header, 24-byte frame header */
    flip(walp, 32 + 24 + 500);
    llmos_err err;
    int64_t n = count_wal_messages(&err);
    assert_int_equal(n, -1);
    assert_int_equal(err, LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "store.db-wal: WAL frame 1 "));
}

static void test_wal_torn_tail_is_dropped(void **state)
{
    (void)state;
    crash_with_wal(5);
    /* damage the last frame: indistinguishable from a write torn by a crash, so SQLite's
     * recovery ends the log before it and the last transaction is lost, not misread */
    off_t size = size_of(walp);
    flip(walp, size - 1000);
    llmos_err err;
    int64_t n = count_wal_messages(&err);
    assert_int_equal(err, LLMOS_OK);
    assert_int_equal(n, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flipped_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_header_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swapped_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replayed_page_is_not_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_frame_altered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_torn_tail_is_dropped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
