/*
 * test_store.c - the store API (messages with FTS5 recall search, archival memory, core
 * memory, settings, audit records, passphrase change, schema) and `llmos memory`.
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
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <sqlite3.h>

#include "llmos/memory.h"
#include "llmos/storage.h"
#include "storage/store_internal.h"

static char dir[64];

static void rm_tree(const char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/llmos-test-store-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(dir);
    return 0;
}

static store_options opts(void)
{
    store_options o = {.embedder = memory_lexical_embedder()};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    return o;
}

static store *open_ok(const char *sub, const char *pass)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    store_options o = opts();
    store *s = NULL;
    llmos_err err = store_open(path, pass, &o, &s);
    if (err)
        fail_msg("store_open: %s", llmos_errmsg());
    return s;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, fp);
    fclose(fp);
    bool found = memmem(buf, got, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

/* Scan every file under d for needle; counts files. */
static bool any_file_has(const char *d, const char *needle, int *files)
{
    DIR *dd = opendir(d);
    assert_non_null(dd);
    struct dirent *e;
    bool found = false;
    while ((e = readdir(dd))) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        (*files)++;
        found |= file_has(p, needle);
    }
    closedir(dd);
    return found;
}

static void test_open_create_reopen(void **state)
{
    (void)state;
    store *s = open_ok("u1", "pw one");
    assert_int_equal(store_schema_version(s), 5);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/u1", dir);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(store_setting_set(s, "theme", "dark"), LLMOS_OK);
    store_close(s);
    store_close(NULL);

    /* wrong passphrase: AUTH with a clear message */
    store_options o = opts();
    store *bad = NULL;
    assert_int_equal(store_open(sub, "pw two", &o, &bad), LLMOS_ERR_AUTH);
    assert_null(bad);
    assert_non_null(strstr(llmos_errmsg(), "wrong passphrase"));
    /* no_create on an empty place */
    o.no_create = true;
    char other[128];
    snprintf(other, sizeof other, "%s/nobody", dir);
    assert_int_equal(store_open(other, "x", &o, &bad), LLMOS_ERR_NOT_FOUND);

    s = open_ok("u1", "pw one");
    char *v = NULL;
    assert_int_equal(store_setting_get(s, "theme", &v), LLMOS_OK);
    assert_string_equal(v, "dark");
    free(v);
    assert_int_equal(store_setting_get(s, "nope", &v), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(store_setting_set(s, "theme", "light"), LLMOS_OK);
    assert_int_equal(store_setting_get(s, "theme", &v), LLMOS_OK);
    assert_string_equal(v, "light");
    free(v);
    store_close(s);
}

/* A store directory that others may write to (they could plant or replace files in it) or that
 * belongs to another user is refused, naming the directory and the fix; nothing is created. */
static void test_open_dir_refused(void **state)
{
    (void)state;
    store *s = open_ok("u1", "pw");
    store_close(s);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/u1", dir);
    assert_int_equal(chmod(sub, 0777), 0);
    store_options o = opts();
    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_ERR_DENIED);
    assert_null(s);
    assert_non_null(strstr(llmos_errmsg(), sub));
    assert_non_null(strstr(llmos_errmsg(), "chmod 700"));
    assert_int_equal(chmod(sub, 0700), 0);
    s = open_ok("u1", "pw");
    store_close(s);
    /* a new store in an open directory is not created either */
    char open_dir[128], key[160];
    snprintf(open_dir, sizeof open_dir, "%s/shared", dir);
    assert_int_equal(mkdir(open_dir, 0777), 0);
    assert_int_equal(chmod(open_dir, 01777), 0);
    assert_int_equal(store_open(open_dir, "pw", &o, &s), LLMOS_ERR_DENIED);
    snprintf(key, sizeof key, "%s/store.key", open_dir);
    assert_int_not_equal(access(key, F_OK), 0);
}

static void path_of(char *out, size_t size, const char *sub, const char *file)
{
    snprintf(out, size, "%s/%s%s%s", dir, sub, *file ? "/" : "", file);
}

/* A store with one setting, closed. */
static void make_store(const char *sub)
{
    store *s = open_ok(sub, "pw");
    assert_int_equal(store_setting_set(s, "kept", "yes"), LLMOS_OK);
    store_close(s);
}

static void expect_refused(const char *sub, llmos_err code, const char *what)
{
    char d[160], db[160];
    path_of(d, sizeof d, sub, "");
    path_of(db, sizeof db, sub, "store.db");
    store_options o = opts();
    store *s = NULL;
    assert_int_equal(store_open(d, "pw", &o, &s), code);
    assert_null(s);
    const char *msg = llmos_errmsg();
    if (!strstr(msg, db) || !strstr(msg, what) || !strstr(msg, "store.key") ||
        !strstr(msg, "backup") || !strstr(msg, "llmos memory reset"))
        fail_msg("message lacks the file, '%s', or what to do: %s", what, msg);
}

/* Deleting or truncating store.db must not give an empty store under the old key: the open is
 * refused, naming the file, what happened and what to do, and creates nothing; start_over
 * makes a new store with a new key and keeps the old key file aside. */
static void test_database_gone_refused(void **state)
{
    (void)state;
    char d[160], db[160], key[160];
    struct stat st;

    make_store("deleted");
    path_of(db, sizeof db, "deleted", "store.db");
    assert_int_equal(unlink(db), 0);
    expect_refused("deleted", LLMOS_ERR_NOT_FOUND, "missing");
    assert_int_not_equal(stat(db, &st), 0); /* nothing was created in its place */
    expect_refused("deleted", LLMOS_ERR_NOT_FOUND, "missing"); /* and stays refused */

    make_store("truncated");
    path_of(db, sizeof db, "truncated", "store.db");
    assert_int_equal(truncate(db, 0), 0);
    expect_refused("truncated", LLMOS_ERR_FORMAT, "empty");
    assert_int_equal(stat(db, &st), 0);
    assert_int_equal(st.st_size, 0);

    /* a wrong passphrase is still that, first */
    path_of(d, sizeof d, "deleted", "");
    store_options o = opts();
    store *s = NULL;
    assert_int_equal(store_open(d, "not it", &o, &s), LLMOS_ERR_AUTH);

    /* start over: a new, empty store under a new key; the old key file kept aside */
    path_of(key, sizeof key, "truncated", "store.key");
    llmos_buf old_key = {0}, new_key = {0};
    assert_int_equal(llmos_file_read_all(key, 4096, &old_key), LLMOS_OK);
    path_of(d, sizeof d, "truncated", "");
    o.start_over = true;
    assert_int_equal(store_open(d, "pw", &o, &s), LLMOS_OK);
    char *v = NULL;
    assert_int_equal(store_setting_get(s, "kept", &v), LLMOS_ERR_NOT_FOUND);
    const char *aside = store_set_aside_key(s);
    assert_non_null(aside);
    assert_non_null(strstr(aside, "store.key.old-"));
    llmos_buf kept = {0};
    assert_int_equal(llmos_file_read_all(aside, 4096, &kept), LLMOS_OK);
    assert_int_equal(kept.len, old_key.len);
    assert_memory_equal(kept.data, old_key.data, kept.len);
    assert_int_equal(llmos_file_read_all(key, 4096, &new_key), LLMOS_OK);
    assert_false(new_key.len == old_key.len &&
                 memcmp(new_key.data, old_key.data, old_key.len) == 0);
    buf_free(&kept);
    buf_free(&old_key);
    buf_free(&new_key);
    store_close(s);
    o.start_over = false;
    assert_int_equal(store_open(d, "pw", &o, &s), LLMOS_OK); /* a store like any other now */
    assert_null(store_set_aside_key(s));
    store_close(s);

    /* start_over leaves a store whose database is there as it is */
    make_store("healthy");
    path_of(d, sizeof d, "healthy", "");
    o.start_over = true;
    assert_int_equal(store_open(d, "pw", &o, &s), LLMOS_OK);
    assert_null(store_set_aside_key(s));
    assert_int_equal(store_setting_get(s, "kept", &v), LLMOS_OK);
    assert_string_equal(v, "yes");
    free(v);
    store_close(s);
}

/* A process that dies right after creating a store (never closing it) leaves one that opens:
 * the refusal above must not catch a store that was merely never closed. */
static void test_new_store_killed_reopens(void **state)
{
    (void)state;
    char d[160];
    path_of(d, sizeof d, "killed", "");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        store_options o = opts();
        store *s = NULL;
        _exit(store_open(d, "pw", &o, &s) == LLMOS_OK ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    store *s = open_ok("killed", "pw");
    store_close(s);
}

static void test_messages_search(void **state)
{
    (void)state;
    store *s = open_ok("m", "pw");
    int64_t id = 0;
    assert_int_equal(
        store_message_add(s, "user", "c1", "user", "I like green tea in the morning", 1000, &id),
        LLMOS_OK);
    assert_true(id > 0);
    assert_int_equal(
        store_message_add(s, "user", "c1", "assistant", "Green tea has less caffeine", 2000, NULL),
        LLMOS_OK);
    assert_int_equal(
        store_message_add(s, "user", "c2", "user", "Coffee or tea? tea tea tea", 3000, NULL),
        LLMOS_OK);
    assert_int_equal(store_message_add(s, "user", "c2", "user", "The weather is nice", 4000, NULL),
                     LLMOS_OK);

    store_message *m = NULL;
    size_t n = 0;
    assert_int_equal(store_message_search(s, "green tea", NULL, &m, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    /* both words beat one word (BM25) */
    assert_non_null(strstr(m[0].content, "reen tea"));
    assert_non_null(strstr(m[1].content, "reen tea"));
    assert_string_equal(m[2].content, "Coffee or tea? tea tea tea");
    assert_true(m[0].score >= m[1].score && m[1].score > m[2].score && m[2].score > 0);
    store_messages_free(m, n);

    /* conversation and date filters, limit */
    store_search_opts o = {.conversation = "c2"};
    assert_int_equal(store_message_search(s, "tea", &o, &m, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].role, "user");
    assert_int_equal(m[0].created_at, 3000);
    store_messages_free(m, n);
    o = (store_search_opts){.since = 1500, .until = 3500};
    assert_int_equal(store_message_search(s, "tea", &o, &m, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    store_messages_free(m, n);
    o = (store_search_opts){.limit = 1};
    assert_int_equal(store_message_search(s, "tea", &o, &m, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    store_messages_free(m, n);

    /* FTS5 syntax in the query is just text, never an error */
    assert_int_equal(store_message_search(s, "tea\" OR (NEAR AND * -", NULL, &m, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    store_messages_free(m, n);
    assert_int_equal(store_message_search(s, "?!", NULL, &m, &n), LLMOS_OK);
    assert_int_equal(n, 0);
    assert_int_equal(store_message_search(s, "volcano", NULL, &m, &n), LLMOS_OK);
    assert_int_equal(n, 0);
    /* empty query: newest first */
    assert_int_equal(store_message_search(s, "", NULL, &m, &n), LLMOS_OK);
    assert_int_equal(n, 4);
    assert_string_equal(m[0].content, "The weather is nice");
    store_messages_free(m, n);
    assert_int_equal(store_message_add(s, "user", NULL, "user", "x", 0, NULL), LLMOS_ERR_INVALID);
    store_close(s);
}

static void test_archival(void **state)
{
    (void)state;
    store *s = open_ok("a", "pw");
    int64_t cat = 0, rust = 0, tom = 0;
    assert_int_equal(
        store_archival_add(s, "user", "The cat sat on the mat", "{\"src\":\"book\"}", &cat),
        LLMOS_OK);
    assert_int_equal(
        store_archival_add(s, "user", "Rust and C are systems programming languages", NULL, &rust),
        LLMOS_OK);
    assert_int_equal(
        store_archival_add(s, "user", "My cat is called Tom and he likes the mat", NULL, &tom),
        LLMOS_OK);
    assert_int_equal(store_archival_add(s, "user", "bad", "not json", NULL), LLMOS_ERR_INVALID);

    store_archival *hits = NULL;
    size_t n = 0;
    assert_int_equal(store_archival_search(s, "user", "programming languages", 2, &hits, &n),
                     LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(hits[0].id, rust);
    assert_true(hits[0].score > hits[1].score);
    store_archivals_free(hits, n);
    assert_int_equal(store_archival_search(s, "user", "cat on the mat", 3, &hits, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(hits[0].id, cat);
    assert_int_equal(hits[1].id, tom);
    assert_string_equal(hits[0].metadata, "{\"src\":\"book\"}");
    store_archivals_free(hits, n);

    store_archival a;
    assert_int_equal(store_archival_get(s, "user", tom, &a), LLMOS_OK);
    assert_string_equal(a.text, "My cat is called Tom and he likes the mat");
    assert_string_equal(a.metadata, "{}");
    assert_true(a.created_at > 0 && a.updated_at == a.created_at);
    store_archival_clear(&a);
    assert_int_equal(store_archival_delete(s, "user", cat), LLMOS_OK);
    assert_int_equal(store_archival_delete(s, "user", cat), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(store_archival_get(s, "user", cat, &a), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(store_archival_search(s, "user", "cat on the mat", 3, &hits, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(hits[0].id, tom);
    store_archivals_free(hits, n);

    /* the TEST embedder is deterministic and unit length */
    const store_embedder *e = memory_lexical_embedder();
    float *v1 = calloc(e->dim, sizeof *v1), *v2 = calloc(e->dim, sizeof *v2);
    assert_int_equal(e->embed(e->ctx, "Hello world", v1), LLMOS_OK);
    assert_int_equal(e->embed(e->ctx, "hello, WORLD!", v2), LLMOS_OK);
    assert_memory_equal(v1, v2, e->dim * sizeof *v1);
    free(v1);
    free(v2);
    store_close(s);

    /* without an embedder, archival memory says what is missing */
    char sub[128];
    snprintf(sub, sizeof sub, "%s/a", dir);
    store_options o = opts();
    o.embedder = NULL;
    assert_int_equal(store_open(sub, "pw", &o, &s), LLMOS_OK);
    assert_int_equal(store_archival_add(s, "user", "x", NULL, NULL), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "embedder"));
    store_close(s);
}

/* Enough passages for vdb to leave brute force (exact_below = 1024) and search its graph; the
 * index is saved at close, loaded at open, and follows adds, deletes and rollbacks. */
static void test_archival_index(void **state)
{
    (void)state;
    store *s = open_ok("ix", "pw");
    char text[200];
    int64_t id_of_777 = 0;
    assert_int_equal(store_begin(s), LLMOS_OK);
    for (int i = 0; i < 1100; i++) {
        snprintf(text, sizeof text, "passage %d about topic%d and subject%d with word%d", i, i % 37,
                 i % 101, i);
        int64_t id = 0;
        assert_int_equal(store_archival_add(s, "user", text, NULL, &id), LLMOS_OK);
        if (i == 777)
            id_of_777 = id;
    }
    assert_int_equal(store_commit(s), LLMOS_OK);
    store_stats st;
    assert_int_equal(store_get_stats(s, &st), LLMOS_OK);
    assert_true(st.vector_index);
    store_archival *hits = NULL;
    size_t n = 0;
    const char *q = "passage 777 about topic0 and subject70 with word777";
    assert_int_equal(store_archival_search(s, "user", q, 5, &hits, &n), LLMOS_OK);
    assert_int_equal(n, 5);
    assert_int_equal(hits[0].id, id_of_777);
    assert_true(hits[0].score > 0.99);
    store_archivals_free(hits, n);
    store_close(s);

    s = open_ok("ix", "pw"); /* loads the saved index */
    assert_int_equal(store_archival_search(s, "user", q, 3, &hits, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(hits[0].id, id_of_777);
    store_archivals_free(hits, n);
    assert_int_equal(store_archival_delete(s, "user", id_of_777), LLMOS_OK);
    assert_int_equal(store_archival_search(s, "user", q, 3, &hits, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    assert_int_not_equal(hits[0].id, id_of_777);
    assert_true(hits[0].score < 0.99);
    store_archivals_free(hits, n);
    /* a rolled-back add must not leave a ghost in the index */
    assert_int_equal(store_begin(s), LLMOS_OK);
    assert_int_equal(store_archival_add(s, "user", "ghost passage zzz", NULL, NULL), LLMOS_OK);
    assert_int_equal(store_rollback(s), LLMOS_OK);
    assert_int_equal(store_archival_search(s, "user", "ghost passage zzz", 2, &hits, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_null(strstr(hits[0].text, "ghost"));
    store_archivals_free(hits, n);
    store_close(s);
}

/* Raw SQL on an open store, as a tamperer with the key would write it. */
static void sql(store *s, const char *q)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, q, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", q, msg);
}

/* store_archival_verify: sound vectors and a current saved index pass; a vector changed behind
 * the index, a vector not of unit length, a vector of the wrong size and a second embedder are
 * each named; a saved index that is merely stale is not an error. Listing goes newest first. */
static void test_archival_verify(void **state)
{
    (void)state;
    store *s = open_ok("ver", "pw");
    store_archival_check c;
    assert_int_equal(store_archival_verify(s, &c), LLMOS_OK);
    assert_string_equal(c.embedder, "");
    char text[100];
    assert_int_equal(store_begin(s), LLMOS_OK);
    for (int i = 0; i < 50; i++) {
        snprintf(text, sizeof text, "passage %d on topic %d", i, i % 7);
        assert_int_equal(store_archival_add(s, "user", text, NULL, NULL), LLMOS_OK);
    }
    assert_int_equal(store_commit(s), LLMOS_OK);
    store_archival *a = NULL;
    size_t n = 0;
    assert_int_equal(store_archival_list(s, "user", 0, 3, &a, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(a[0].id, 50);
    assert_int_equal(a[2].id, 48);
    store_archivals_free(a, n);
    assert_int_equal(store_archival_list(s, "user", 49, 3, &a, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(a[0].id, 1);
    store_archivals_free(a, n);
    assert_int_equal(store_archival_list(s, "bob", 0, 3, &a, &n), LLMOS_OK);
    assert_int_equal(n, 0);
    store_close(s); /* saves the index */

    s = open_ok("ver", "pw");
    assert_int_equal(store_archival_verify(s, &c), LLMOS_OK);
    assert_string_equal(c.embedder, "lexical-v1");
    assert_int_equal(c.vectors, 50);
    assert_true(c.index_current);
    assert_true(c.index_checked);
    /* passage 7 gets passage 8's vector: same ids, so the saved index still claims the rows */
    sql(s, "UPDATE archival SET embedding = (SELECT embedding FROM archival WHERE id = 8)"
           " WHERE id = 7");
    assert_int_equal(store_archival_verify(s, &c), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "#7"));
    assert_non_null(strstr(llmos_errmsg(), "another vector"));
    sql(s, "UPDATE archival SET embedding = x'00000040' || zeroblob(2044) WHERE id = 7");
    assert_int_equal(store_archival_verify(s, &c), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "#7"));
    assert_non_null(strstr(llmos_errmsg(), "unit length"));
    sql(s, "UPDATE archival SET embedding = zeroblob(2044) WHERE id = 7");
    assert_int_equal(store_archival_verify(s, &c), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "#7"));
    assert_non_null(strstr(llmos_errmsg(), "2044 bytes"));
    sql(s, "DELETE FROM archival WHERE id IN (7, 9)");
    /* now stale: not an error, the vectors are still checked */
    assert_int_equal(store_archival_verify(s, &c), LLMOS_OK);
    assert_false(c.index_current);
    assert_int_equal(c.vectors, 48);
    sql(s, "UPDATE archival SET embedding = (SELECT embedding FROM archival WHERE id = 8) || "
           "x'00000040' WHERE id = 10");
    assert_int_equal(store_archival_verify(s, &c), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "#10"));
    sql(s, "DELETE FROM archival WHERE id = 10");
    sql(s, "UPDATE archival SET embedder = 'engine:other' WHERE id = 11");
    assert_int_equal(store_archival_verify(s, &c), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "mixes embedders"));
    store_close(s);
}

/* Hybrid search: a rare word the lexical vectors blur still finds its passage first. */
static void test_archival_hybrid(void **state)
{
    (void)state;
    store *s = open_ok("hy", "pw");
    const char *texts[] = {"the dentist appointment is on Tuesday at 3pm",
                           "when the rain stops we go to the park", "the cat is on the mat",
                           "is it time to go home"};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(store_archival_add(s, "user", texts[i], NULL, NULL), LLMOS_OK);
    store_archival *hits = NULL;
    size_t n = 0;
    assert_int_equal(store_archival_search(s, "user", "when is the dentist", 4, &hits, &n),
                     LLMOS_OK);
    assert_int_equal(n, 4);
    assert_int_equal(hits[0].id, 1);
    for (size_t i = 0; i < n; i++)
        assert_true(hits[i].score >= -1.0 && hits[i].score <= 1.0);
    store_archivals_free(hits, n);
    /* another principal's passage with the word is not a candidate */
    assert_int_equal(store_archival_add(s, "bob", "dentist dentist dentist", NULL, NULL), LLMOS_OK);
    assert_int_equal(store_archival_search(s, "user", "dentist", 10, &hits, &n), LLMOS_OK);
    for (size_t i = 0; i < n; i++)
        assert_null(strstr(hits[i].text, "dentist dentist"));
    store_archivals_free(hits, n);
    store_close(s);
}

static void test_core_memory(void **state)
{
    (void)state;
    store *s = open_ok("c", "pw");
    char *v = NULL;
    size_t limit = 0;
    assert_int_equal(store_core_get(s, "user", "persona", &v, &limit), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(store_core_set(s, "user", "persona", "I am helpful.", 0), LLMOS_OK);
    assert_int_equal(store_core_get(s, "user", "persona", &v, &limit), LLMOS_OK);
    assert_string_equal(v, "I am helpful.");
    assert_int_equal(limit, 2000);
    free(v);
    assert_int_equal(store_core_set(s, "user", "human", "Name: Ada", 20), LLMOS_OK);
    assert_int_equal(store_core_set(s, "user", "human", "Name: Ada. Likes: maths and tea", 0),
                     LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "limit of 20"));
    assert_int_equal(store_core_get(s, "user", "human", &v, &limit), LLMOS_OK);
    assert_string_equal(v, "Name: Ada"); /* unchanged */
    assert_int_equal(limit, 20);
    free(v);
    store_close(s);
}

typedef struct audit_seen {
    int n;
    int64_t last_seq;
    bool chained;
} audit_seen;

static bool on_audit(const store_audit_record *r, void *ctx)
{
    audit_seen *a = ctx;
    a->n++;
    if (a->last_seq && r->seq != a->last_seq + 1)
        a->chained = false;
    a->last_seq = r->seq;
    if (r->seq == 2 && !(r->prev_hash_len == 4 && memcmp(r->prev_hash, "\1\2\3\4", 4) == 0))
        a->chained = false;
    return r->seq < 3;
}

static void test_audit(void **state)
{
    (void)state;
    store *s = open_ok("au", "pw");
    int64_t seq = 0;
    store_audit_record r = {.kind = "syscall",
                            .payload = "{\"tool\":\"calc\"}",
                            .hash = (const uint8_t *)"\1\2\3\4",
                            .hash_len = 4};
    assert_int_equal(store_audit_append(s, &r, &seq), LLMOS_OK);
    assert_int_equal(seq, 1);
    r.prev_hash = (const uint8_t *)"\1\2\3\4";
    r.prev_hash_len = 4;
    for (int i = 0; i < 3; i++)
        assert_int_equal(store_audit_append(s, &r, &seq), LLMOS_OK);
    assert_int_equal(seq, 4);
    r.payload = "not json";
    assert_int_equal(store_audit_append(s, &r, NULL), LLMOS_ERR_INVALID);
    audit_seen a = {.chained = true};
    assert_int_equal(store_audit_iterate(s, 1, on_audit, &a), LLMOS_OK);
    assert_int_equal(a.n, 3); /* stopped by the callback */
    assert_true(a.chained);
    a = (audit_seen){.chained = true};
    assert_int_equal(store_audit_iterate(s, 3, on_audit, &a), LLMOS_OK);
    assert_int_equal(a.n, 1); /* starts at 3, where the callback stops */
    assert_int_equal(a.last_seq, 3);
    store_close(s);
}

static void test_change_passphrase_keeps_data(void **state)
{
    (void)state;
    store *s = open_ok("p", "first");
    assert_int_equal(store_message_add(s, "user", "c", "user", "remember the milk", 0, NULL),
                     LLMOS_OK);
    char dbp[160];
    snprintf(dbp, sizeof dbp, "%s", store_db_path(s));
    store_close(s);
    struct stat before, after;
    assert_int_equal(stat(dbp, &before), 0);
    s = open_ok("p", "first");
    keys_kdf weak = opts().kdf;
    assert_int_equal(store_change_passphrase(s, "wrong", "second", weak), LLMOS_ERR_AUTH);
    assert_int_equal(store_change_passphrase(s, "first", "second", weak), LLMOS_OK);
    store_close(s);
    assert_int_equal(stat(dbp, &after), 0);
    store_options o = opts();
    char sub[128];
    snprintf(sub, sizeof sub, "%s/p", dir);
    assert_int_equal(store_open(sub, "first", &o, &s), LLMOS_ERR_AUTH);
    s = open_ok("p", "second");
    store_message *m = NULL;
    size_t n = 0;
    assert_int_equal(store_message_search(s, "milk", NULL, &m, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    store_messages_free(m, n);
    store_close(s);
}

static void test_nothing_readable_on_disk(void **state)
{
    (void)state;
    static const char canary[] = "zebra-canary-7731";
    store *s = open_ok("d", "pw");
    char text[300];
    assert_int_equal(store_begin(s), LLMOS_OK);
    for (int i = 0; i < 200; i++) {
        snprintf(text, sizeof text, "%s message %d with enough words to fill pages", canary, i);
        assert_int_equal(store_message_add(s, "user", "conv", "user", text, 0, NULL), LLMOS_OK);
    }
    assert_int_equal(store_commit(s), LLMOS_OK);
    assert_int_equal(store_commit(s), LLMOS_ERR_INVALID); /* no transaction open */
    assert_int_equal(store_archival_add(s, "user", canary, "{\"k\":\"zebra-canary-7731\"}", NULL),
                     LLMOS_OK);
    assert_int_equal(store_core_set(s, "user", "human", canary, 0), LLMOS_OK);
    assert_int_equal(store_setting_set(s, canary, canary), LLMOS_OK);
    assert_int_equal(store_snapshot_put(s, "user", "proc:1", canary, 3, canary, sizeof canary),
                     LLMOS_OK);
    char sub[128];
    snprintf(sub, sizeof sub, "%s/d", dir);
    int files = 0;
    /* open: store.db, -wal, -shm and the key file */
    assert_false(any_file_has(sub, canary, &files));
    assert_true(files >= 4);
    assert_false(any_file_has(sub, "SQLite format 3", &files));
    store_stats st;
    assert_int_equal(store_get_stats(s, &st), LLMOS_OK);
    assert_int_equal(st.messages, 200);
    assert_int_equal(st.archival, 1);
    assert_true(st.wal_bytes > 0);
    assert_int_equal(st.page_size, 4096);
    assert_int_equal(store_verify(s), LLMOS_OK);
    store_close(s);
    files = 0;
    assert_false(any_file_has(sub, canary, &files));
}

/* KV snapshots: kept per principal and name, replaced, read back byte for byte, forgotten. */
static void test_snapshots(void **state)
{
    (void)state;
    store *s = open_ok("snap", "pw");
    uint8_t bytes[70000];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(i * 131 + 7);
    assert_int_equal(store_snapshot_put(s, "alice", "proc:1", "sha256:aa", 12, bytes, sizeof bytes),
                     LLMOS_OK);
    assert_int_equal(store_snapshot_put(s, "bob", "proc:1", "sha256:bb", 5, bytes, 10), LLMOS_OK);
    store_snapshot sn;
    assert_int_equal(store_snapshot_get(s, "alice", "proc:1", &sn), LLMOS_OK);
    assert_string_equal(sn.model, "sha256:aa");
    assert_int_equal(sn.tokens, 12);
    assert_int_equal(sn.len, sizeof bytes);
    assert_memory_equal(sn.data, bytes, sizeof bytes);
    assert_true(sn.created_at > 0);
    store_snapshot_clear(&sn);
    /* a second put replaces the first */
    assert_int_equal(store_snapshot_put(s, "alice", "proc:1", "sha256:cc", 13, bytes + 1, 100),
                     LLMOS_OK);
    assert_int_equal(store_snapshot_get(s, "alice", "proc:1", &sn), LLMOS_OK);
    assert_string_equal(sn.model, "sha256:cc");
    assert_int_equal(sn.len, 100);
    assert_memory_equal(sn.data, bytes + 1, 100);
    store_snapshot_clear(&sn);
    /* bob's is his: another principal's name is not found */
    assert_int_equal(store_snapshot_get(s, "carol", "proc:1", &sn), LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "no KV snapshot 'proc:1' of 'carol'"));
    assert_int_equal(store_snapshot_put(s, "alice", "proc:2", "m", 0, bytes, 0), LLMOS_ERR_LIMIT);
    assert_int_equal(store_snapshot_delete(s, "alice", "proc:1"), LLMOS_OK);
    assert_int_equal(store_snapshot_delete(s, "alice", "proc:1"), LLMOS_OK);
    assert_int_equal(store_snapshot_get(s, "alice", "proc:1", &sn), LLMOS_ERR_NOT_FOUND);
    /* it survives a reopen */
    store_close(s);
    s = open_ok("snap", "pw");
    assert_int_equal(store_snapshot_get(s, "bob", "proc:1", &sn), LLMOS_OK);
    assert_int_equal(sn.len, 10);
    assert_memory_equal(sn.data, bytes, 10);
    store_snapshot_clear(&sn);
    store_close(s);
}

/* Run the llmos program with a shell command line; returns its exit status, output in out. */
static int run_cli(const char *args, char *out, size_t size)
{
    const char *bin = getenv("LLMOS_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The same with `input` on standard input. */
static int run_cli_in(const char *input, const char *args, char *out, size_t size)
{
    char in_path[160];
    snprintf(in_path, sizeof in_path, "%s/stdin.txt", dir);
    FILE *f = fopen(in_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(input, 1, strlen(input), f), strlen(input));
    fclose(f);
    char with_in[400];
    snprintf(with_in, sizeof with_in, "%s < '%s'", args, in_path);
    return run_cli(with_in, out, size);
}

static void test_cli_memory(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        skip();
    char home[128], out[8192];
    snprintf(home, sizeof home, "%s/home", dir);
    setenv("LLMOS_HOME", home, 1);
    setenv("LLMOS_PASSPHRASE", "cli secret", 1);
    setenv("LLMOS_KDF", "test-weak", 1);
    /* a new store has no embedder until one is named; the lexical one only by name */
    assert_int_equal(run_cli("memory add the quick brown fox jumps", out, sizeof out), 1);
    assert_non_null(strstr(out, "--embed-model lexical"));
    assert_int_equal(
        run_cli("memory add --embed-model lexical the quick brown fox jumps", out, sizeof out), 0);
    assert_non_null(strstr(out, "remembered as #1"));
    assert_int_equal(run_cli("memory add 'compilers turn C into machine code'", out, sizeof out),
                     0);
    assert_int_equal(run_cli("memory add lazy dogs sleep all day", out, sizeof out), 0);
    assert_int_equal(run_cli("memory search brown fox -k 1", out, sizeof out), 0);
    assert_non_null(strstr(out, "1. #1 "));
    assert_non_null(strstr(out, "quick brown fox"));
    assert_null(strstr(out, "2. "));
    assert_int_equal(run_cli("memory search machine code", out, sizeof out), 0);
    assert_non_null(strstr(out, "1. #2 "));
    /* from standard input (with no TEXT, or -), where ps cannot see it */
    assert_int_equal(
        run_cli_in("a secret kept out of\nthe process list\n", "memory add", out, sizeof out), 0);
    assert_non_null(strstr(out, "remembered as #4"));
    assert_int_equal(run_cli_in("another piped note", "memory add -", out, sizeof out), 0);
    assert_non_null(strstr(out, "remembered as #5"));
    assert_int_equal(run_cli("memory search process list -k 1", out, sizeof out), 0);
    assert_non_null(strstr(out, "1. #4 "));
    assert_non_null(strstr(out, "a secret kept out of\nthe process list\n"));
    assert_int_equal(run_cli_in("\n", "memory add", out, sizeof out), 2);
    assert_int_equal(run_cli("memory stats", out, sizeof out), 0);
    assert_non_null(strstr(out, "5 memories"));
    assert_non_null(strstr(out, "schema version:   5"));
    struct stat st;
    assert_int_equal(stat(home, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* errors: usage 2, wrong passphrase 1 with the reason */
    assert_int_equal(run_cli("memory search -k 0 x", out, sizeof out), 2);
    assert_int_equal(run_cli("memory frobnicate", out, sizeof out), 2);
    assert_int_equal(run_cli("memory", out, sizeof out), 2);
    setenv("LLMOS_PASSPHRASE", "not it", 1);
    assert_int_equal(run_cli("memory stats", out, sizeof out), 1);
    assert_non_null(strstr(out, "wrong passphrase"));
    setenv("LLMOS_KDF", "bogus", 1);
    assert_int_equal(run_cli("memory stats", out, sizeof out), 1);
    assert_non_null(strstr(out, "LLMOS_KDF"));
    unsetenv("LLMOS_KDF");
    unsetenv("LLMOS_PASSPHRASE");
    unsetenv("LLMOS_HOME");
}

/* `llmos memory`: a deleted store.db is refused by every command, naming the file and `llmos
 * memory reset`, which starts over; reset on a store whose database is there does nothing. */
static void test_cli_memory_reset(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        skip();
    char home[128], db[160], out[8192];
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(db, sizeof db, "%s/store/store.db", home);
    setenv("LLMOS_HOME", home, 1);
    setenv("LLMOS_PASSPHRASE", "cli secret", 1);
    setenv("LLMOS_KDF", "test-weak", 1);
    assert_int_equal(run_cli("memory add --embed-model lexical remember the milk", out, sizeof out),
                     0);
    assert_int_equal(run_cli("memory reset", out, sizeof out), 1);
    assert_non_null(strstr(out, "nothing to start over"));
    assert_int_equal(run_cli("memory stats", out, sizeof out), 0);
    assert_non_null(strstr(out, "1 memories"));

    assert_int_equal(unlink(db), 0);
    assert_int_equal(run_cli("memory stats", out, sizeof out), 1);
    assert_non_null(strstr(out, db));
    assert_non_null(strstr(out, "missing"));
    assert_non_null(strstr(out, "llmos memory reset"));
    assert_int_equal(run_cli("memory add something new", out, sizeof out), 1);
    assert_non_null(strstr(out, "missing"));
    assert_int_equal(run_cli("audit verify", out, sizeof out), 1);
    assert_null(strstr(out, "intact"));

    assert_int_equal(run_cli("memory reset", out, sizeof out), 0);
    assert_non_null(strstr(out, "started over"));
    assert_non_null(strstr(out, "store.key.old-"));
    assert_int_equal(run_cli("memory stats", out, sizeof out), 0);
    assert_non_null(strstr(out, "0 memories"));
    unsetenv("LLMOS_KDF");
    unsetenv("LLMOS_PASSPHRASE");
    unsetenv("LLMOS_HOME");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_create_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_dir_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_gone_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_store_killed_reopens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archival, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archival_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archival_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archival_hybrid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_passphrase_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_readable_on_disk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli_memory_reset, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
