/*
 * test_vfs.c - the encrypting VFS: the page codec, and SQLite databases opened through it
 * (WAL and rollback-journal modes) leaving no plaintext in any file.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "storage/vfs.h"

static const char secret_text[] = "PLAINTEXT-CANARY the quick brown fox 8472";

static void make_tmpdir(char *out, size_t n)
{
    snprintf(out, n, "/tmp/llmos-test-vfs-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* True when any file in dir contains needle. Counts files scanned in *n_files. */
static bool dir_contains(const char *dir, const char *needle, int *n_files)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    bool found = false;
    *n_files = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *fp = fopen(path, "rb");
        if (!fp)
            continue;
        (*n_files)++;
        fseek(fp, 0, SEEK_END);
        long len = ftell(fp);
        fseek(fp, 0, SEEK_SET);
        char *buf = malloc((size_t)len + 1);
        assert_non_null(buf);
        size_t got = fread(buf, 1, (size_t)len, fp);
        fclose(fp);
        if (memmem(buf, got, needle, strlen(needle)))
            found = true;
        free(buf);
    }
    closedir(d);
    return found;
}

static void test_codec_roundtrip(void **state)
{
    (void)state;
    assert_int_equal(sodium_init() >= 0, 1);
    uint8_t key[VFS_KEY_BYTES], id[VFS_DBID_BYTES], ad[VFS_AD_BYTES], ad2[VFS_AD_BYTES];
    randombytes_buf(key, sizeof key);
    randombytes_buf(id, sizeof id);
    uint8_t plain[VFS_PAGE_SIZE] = {0}, sealed[VFS_PAGE_SIZE], sealed2[VFS_PAGE_SIZE],
            back[VFS_PAGE_SIZE];
    memcpy(plain + 100, secret_text, sizeof secret_text);
    vfs_page_ad(ad, VFS_KIND_DB, id, 7, 0, NULL);
    assert_int_equal(vfs_page_seal(key, ad, plain, sealed, VFS_PAGE_SIZE), LLMOS_OK);
    assert_null(memmem(sealed, sizeof sealed, secret_text, strlen(secret_text)));
    assert_true(vfs_page_open(key, ad, sealed, back, VFS_PAGE_SIZE));
    assert_memory_equal(plain, back, VFS_PAGE_SIZE);

    /* a fresh nonce per write: sealing the same page twice gives different bytes */
    assert_int_equal(vfs_page_seal(key, ad, plain, sealed2, VFS_PAGE_SIZE), LLMOS_OK);
    assert_memory_not_equal(sealed, sealed2, VFS_PAGE_SIZE);

    /* another page number, kind or database id does not open */
    vfs_page_ad(ad2, VFS_KIND_DB, id, 8, 0, NULL);
    assert_false(vfs_page_open(key, ad2, sealed, back, VFS_PAGE_SIZE));
    vfs_page_ad(ad2, VFS_KIND_WAL, id, 7, 0, NULL);
    assert_false(vfs_page_open(key, ad2, sealed, back, VFS_PAGE_SIZE));
    id[0] ^= 1;
    vfs_page_ad(ad2, VFS_KIND_DB, id, 7, 0, NULL);
    assert_false(vfs_page_open(key, ad2, sealed, back, VFS_PAGE_SIZE));
    /* every byte position is covered: ciphertext, nonce, tag */
    size_t spots[] = {0,
                      100,
                      VFS_PAGE_SIZE - VFS_RESERVE - 1,
                      VFS_PAGE_SIZE - VFS_RESERVE,
                      VFS_PAGE_SIZE - 17,
                      VFS_PAGE_SIZE - 1};
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        memcpy(sealed2, sealed, sizeof sealed);
        sealed2[spots[i]] ^= 0x20;
        assert_false(vfs_page_open(key, ad, sealed2, back, VFS_PAGE_SIZE));
    }
    /* another key */
    key[5] ^= 1;
    assert_false(vfs_page_open(key, ad, sealed, back, VFS_PAGE_SIZE));
}

static void test_codec_refuses_unreserved(void **state)
{
    (void)state;
    uint8_t key[VFS_KEY_BYTES] = {1}, id[VFS_DBID_BYTES] = {2}, ad[VFS_AD_BYTES];
    uint8_t plain[VFS_PAGE_SIZE] = {0}, sealed[VFS_PAGE_SIZE];
    plain[VFS_PAGE_SIZE - 3] = 9; /* SQLite data in the reserved area */
    vfs_page_ad(ad, VFS_KIND_DB, id, 1, 0, NULL);
    assert_int_equal(vfs_page_seal(key, ad, plain, sealed, VFS_PAGE_SIZE), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "reserved"));
}

/* Open dir/test.db through the VFS with a fresh key. */
static sqlite3 *open_db(const char *dir, uint64_t *token, const uint8_t *key, const uint8_t *id)
{
    assert_int_equal(vfs_register(), LLMOS_OK);
    assert_int_equal(vfs_key_add(key, id, token), LLMOS_OK);
    char uri[4200];
    snprintf(uri, sizeof uri, "file:%s/test.db?llmos_key=%llu", dir, (unsigned long long)*token);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
                             VFS_NAME);
    if (rc != SQLITE_OK)
        fail_msg("open %s: %s / %s", uri, sqlite3_errmsg(db), llmos_errmsg());
    int reserve = VFS_RESERVE;
    assert_int_equal(sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve),
                     SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA temp_store=MEMORY", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static void fill(sqlite3 *db, int rows)
{
    exec_ok(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)");
    exec_ok(db, "BEGIN");
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(body) VALUES (?1)", -1, &st, NULL),
                     SQLITE_OK);
    char body[600];
    for (int i = 0; i < rows; i++) {
        snprintf(body, sizeof body, "%s row %d %0400d", secret_text, i, i);
        sqlite3_bind_text(st, 1, body, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    exec_ok(db, "COMMIT");
}

static int count(sqlite3 *db)
{
    sqlite3_stmt *st;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE body LIKE '%CANARY%'", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void test_wal_no_plaintext(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    uint8_t key[32], id[16];
    randombytes_buf(key, 32);
    randombytes_buf(id, 16);
    uint64_t token = 0;
    sqlite3 *db = open_db(dir, &token, key, id);
    exec_ok(db, "PRAGMA journal_mode=WAL");
    fill(db, 300);
    /* while open: the database, -wal and -shm all exist */
    int n_files = 0;
    assert_false(dir_contains(dir, "PLAINTEXT-CANARY", &n_files));
    assert_int_equal(n_files, 3);
    assert_int_equal(count(db), 300);
    exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    fill(db, 50);
    assert_false(dir_contains(dir, "PLAINTEXT-CANARY", &n_files));
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    assert_false(dir_contains(dir, "PLAINTEXT-CANARY", &n_files));
    /* every page of the file authenticates, the header is not readable */
    uint64_t pages = 0;
    char path[128];
    snprintf(path, sizeof path, "%s/test.db", dir);
    assert_int_equal(vfs_verify_file(token, path, &pages), LLMOS_OK);
    assert_true(pages > 30);
    assert_false(dir_contains(dir, "SQLite format 3", &n_files));

    /* reopen: the data comes back */
    uint64_t token2 = 0;
    db = open_db(dir, &token2, key, id);
    assert_int_equal(count(db), 350);
    sqlite3_close(db);

    /* the wrong key cannot read it, and says which file and page */
    key[0] ^= 1;
    uint64_t token3 = 0;
    assert_int_equal(vfs_key_add(key, id, &token3), LLMOS_OK);
    char uri[200];
    snprintf(uri, sizeof uri, "file:%s?llmos_key=%llu", path, (unsigned long long)token3);
    (void)vfs_take_error();
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_URI, VFS_NAME);
    if (rc == SQLITE_OK) /* SQLite may open lazily: then the first statement fails */
        rc = sqlite3_exec(db, "SELECT count(*) FROM t", NULL, NULL, NULL);
    assert_int_not_equal(rc, SQLITE_OK);
    assert_int_equal(vfs_take_error(), LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "test.db: database page 1 "));
    sqlite3_close(db);
    vfs_key_remove(token);
    vfs_key_remove(token2);
    vfs_key_remove(token3);
    rm_tree(dir);
}

static void insert_rows(sqlite3 *db, int rows)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO t(body) VALUES (?1)", -1, &st, NULL),
                     SQLITE_OK);
    char body[600];
    for (int i = 0; i < rows; i++) {
        snprintf(body, sizeof body, "%s row %d %0400d", secret_text, i, i);
        sqlite3_bind_text(st, 1, body, -1, SQLITE_TRANSIENT);
        assert_int_equal(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
}

/* A transaction larger than the page cache spills pages into the WAL; when it changes a spilled
 * page again, SQLite rewrites that frame in place and writes the frames after it with zero
 * salts, which it fills in at commit. Every one of them reads back, before and after a
 * checkpoint and a reopen. (bench/memory found this at 60,000 archival passages.) */
static void test_wal_frames_rewritten_in_a_transaction(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    uint8_t key[32], id[16];
    randombytes_buf(key, 32);
    randombytes_buf(id, 16);
    uint64_t token = 0;
    sqlite3 *db = open_db(dir, &token, key, id);
    exec_ok(db, "PRAGMA journal_mode=WAL");
    exec_ok(db, "PRAGMA cache_size=10");
    exec_ok(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)");
    exec_ok(db, "BEGIN");
    insert_rows(db, 300);
    exec_ok(db, "UPDATE t SET body = body || ' again' WHERE id = 1");
    insert_rows(db, 300);
    exec_ok(db, "COMMIT");
    assert_int_equal(count(db), 600);
    exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    assert_int_equal(count(db), 600);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
    uint64_t token2 = 0;
    db = open_db(dir, &token2, key, id);
    assert_int_equal(count(db), 600);
    sqlite3_close(db);
    vfs_key_remove(token);
    vfs_key_remove(token2);
    rm_tree(dir);
}

static void test_journal_no_plaintext(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    uint8_t key[32], id[16];
    randombytes_buf(key, 32);
    randombytes_buf(id, 16);
    uint64_t token = 0;
    sqlite3 *db = open_db(dir, &token, key, id);
    /* PERSIST keeps the rollback journal's page records on disk after each commit */
    exec_ok(db, "PRAGMA journal_mode=PERSIST");
    fill(db, 200);
    exec_ok(db, "UPDATE t SET body = body || ' changed'");
    int n_files = 0;
    char jpath[128];
    snprintf(jpath, sizeof jpath, "%s/test.db-journal", dir);
    struct stat st;
    assert_int_equal(stat(jpath, &st), 0);
    assert_true(st.st_size > 8 * VFS_PAGE_SIZE); /* it really holds pages */
    assert_false(dir_contains(dir, "PLAINTEXT-CANARY", &n_files));
    assert_int_equal(n_files, 2);

    /* a rolled-back transaction restores pages from the encrypted journal */
    exec_ok(db, "BEGIN");
    exec_ok(db, "DELETE FROM t");
    assert_int_equal(count(db), 0);
    exec_ok(db, "ROLLBACK");
    assert_int_equal(count(db), 200);
    assert_false(dir_contains(dir, "PLAINTEXT-CANARY", &n_files));
    sqlite3_close(db);
    vfs_key_remove(token);
    rm_tree(dir);
}

static void test_open_without_key_fails(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    assert_int_equal(vfs_register(), LLMOS_OK);
    char uri[200];
    snprintf(uri, sizeof uri, "file:%s/x.db?llmos_key=12345", dir);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI,
                             VFS_NAME);
    if (rc == SQLITE_OK) /* SQLite opens lazily: the first statement fails */
        rc = sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL);
    assert_int_not_equal(rc, SQLITE_OK);
    sqlite3_close(db);
    rm_tree(dir);
}

static void test_temp_files_refused(void **state)
{
    (void)state;
    assert_int_equal(vfs_register(), LLMOS_OK);
    sqlite3_vfs *vfs = sqlite3_vfs_find(VFS_NAME);
    assert_non_null(vfs);
    sqlite3_file *f = calloc(1, (size_t)vfs->szOsFile);
    assert_non_null(f);
    int out = 0;
    /* a temporary database or statement journal on disk would be plaintext: refused */
    int kinds[] = {SQLITE_OPEN_TEMP_DB, SQLITE_OPEN_TEMP_JOURNAL, SQLITE_OPEN_SUBJOURNAL,
                   SQLITE_OPEN_TRANSIENT_DB, SQLITE_OPEN_SUPER_JOURNAL};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        (void)vfs_take_error();
        int rc = vfs->xOpen(vfs, NULL, f,
                            kinds[i] | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                SQLITE_OPEN_DELETEONCLOSE,
                            &out);
        assert_int_equal(rc, SQLITE_CANTOPEN);
        assert_int_equal(vfs_take_error(), LLMOS_ERR_UNSUPPORTED);
        assert_non_null(strstr(llmos_errmsg(), "temp_store=MEMORY"));
    }
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip),
        cmocka_unit_test(test_codec_refuses_unreserved),
        cmocka_unit_test(test_wal_no_plaintext),
        cmocka_unit_test(test_wal_frames_rewritten_in_a_transaction),
        cmocka_unit_test(test_journal_no_plaintext),
        cmocka_unit_test(test_open_without_key_fails),
        cmocka_unit_test(test_temp_files_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
