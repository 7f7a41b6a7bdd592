/* test_file.c - mmap, bounded reads, atomic replace (and its temporary file, which must never be
 * one someone else put there), mkdir -p, private directories, secure zeroing. */
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

#include "llmos/base.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/llmos-test-file-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static void test_write_then_map_and_read(void **state)
{
    (void)state;
    char p[512];
    path_in(p, sizeof p, "a.bin");
    assert_int_equal(llmos_file_write_atomic(p, "hello\0world", 11, 0600), LLMOS_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    llmos_map m;
    assert_int_equal(llmos_file_map(p, &m), LLMOS_OK);
    assert_int_equal(m.size, 11);
    assert_memory_equal(m.data, "hello\0world", 11);
    llmos_file_unmap(&m);
    assert_null(m.data);
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(p, 100, &b), LLMOS_OK);
    assert_int_equal(b.len, 11);
    buf_clear(&b);
    assert_int_equal(llmos_file_read_all(p, 10, &b), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "a.bin"));
    buf_free(&b);
}

static void test_replace_keeps_no_temp_files(void **state)
{
    (void)state;
    char p[512];
    path_in(p, sizeof p, "b.txt");
    assert_int_equal(llmos_file_write_atomic(p, "old", 3, 0644), LLMOS_OK);
    assert_int_equal(llmos_file_write_atomic(p, "new content", 11, 0644), LLMOS_OK);
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(p, 100, &b), LLMOS_OK);
    assert_string_equal(b.data, "new content");
    buf_free(&b);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c tmp", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    assert_int_equal(n, 0);
}

static void test_replace_failure_leaves_old_file(void **state)
{
    (void)state;
    char sub[512], p[600];
    path_in(sub, sizeof sub, "ro");
    assert_int_equal(llmos_file_mkdirs(sub, 0700), LLMOS_OK);
    snprintf(p, sizeof p, "%s/c.txt", sub);
    assert_int_equal(llmos_file_write_atomic(p, "keep", 4, 0644), LLMOS_OK);
    if (geteuid() == 0) {
        /* root ignores directory permissions; use a target that is a directory instead */
        char d[700];
        snprintf(d, sizeof d, "%s/isdir", sub);
        assert_int_equal(llmos_file_mkdirs(d, 0700), LLMOS_OK);
        assert_int_equal(llmos_file_write_atomic(d, "x", 1, 0644), LLMOS_ERR_IO);
    } else {
        chmod(sub, 0500);
        assert_int_equal(llmos_file_write_atomic(p, "lost", 4, 0644), LLMOS_ERR_IO);
        chmod(sub, 0700);
    }
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(p, 100, &b), LLMOS_OK);
    assert_string_equal(b.data, "keep");
    buf_free(&b);
}

static void test_errors_name_the_path(void **state)
{
    (void)state;
    llmos_map m;
    assert_int_equal(llmos_file_map("/nonexistent/llmos/x.gguf", &m), LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "/nonexistent/llmos/x.gguf"));
    assert_int_equal(llmos_file_map(dir, &m), LLMOS_ERR_INVALID); /* a directory */
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all("/nonexistent/y", 10, &b), LLMOS_ERR_NOT_FOUND);
    char p[512];
    path_in(p, sizeof p, "empty");
    assert_int_equal(llmos_file_write_atomic(p, "", 0, 0600), LLMOS_OK);
    assert_int_equal(llmos_file_map(p, &m), LLMOS_OK);
    assert_int_equal(m.size, 0);
    llmos_file_unmap(&m);
}

static void test_mkdirs(void **state)
{
    (void)state;
    char p[512];
    path_in(p, sizeof p, "x/y/z");
    assert_int_equal(llmos_file_mkdirs(p, 0700), LLMOS_OK);
    assert_int_equal(llmos_file_mkdirs(p, 0700), LLMOS_OK); /* idempotent */
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    char f[512];
    path_in(f, sizeof f, "afile");
    assert_int_equal(llmos_file_write_atomic(f, "x", 1, 0600), LLMOS_OK);
    char under[600];
    snprintf(under, sizeof under, "%s/sub", f);
    assert_int_equal(llmos_file_mkdirs(under, 0700), LLMOS_ERR_IO);
    assert_int_equal(llmos_file_mkdirs("", 0700), LLMOS_ERR_INVALID);
}

static bool file_is(const char *path, const char *want)
{
    llmos_buf b = {0};
    bool same = llmos_file_read_all(path, 1000, &b) == LLMOS_OK && b.len == strlen(want) &&
                memcmp(b.data, want, b.len) == 0;
    buf_free(&b);
    return same;
}

/* Someone who can write to the directory plants a symbolic link at the temporary name the next
 * write will use, pointing to a file of the victim's: the write must go to the target, and the
 * victim must keep its bytes. */
static void test_planted_symlink_at_temp_name(void **state)
{
    (void)state;
    char target[512], victim[512], planted[600];
    path_in(target, sizeof target, "key.json");
    path_in(victim, sizeof victim, "victim.txt");
    assert_int_equal(llmos_file_write_atomic(victim, "precious", 8, 0600), LLMOS_OK);
    snprintf(planted, sizeof planted, "%s.tmp.%ld", target, (long)getpid());
    assert_int_equal(symlink(victim, planted), 0);

    assert_int_equal(llmos_file_write_atomic(target, "new key", 7, 0600), LLMOS_OK);
    assert_true(file_is(victim, "precious"));
    assert_true(file_is(target, "new key"));
    struct stat st;
    assert_int_equal(lstat(planted, &st), 0); /* the link was left alone, not followed */
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(lstat(target, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* the creator of temporaries itself: a fresh file, never the planted name */
    int fd = -1;
    char *tmp = NULL;
    assert_int_equal(llmos_file_create_temp(target, 0600, &fd, &tmp), LLMOS_OK);
    assert_true(fd >= 0);
    assert_string_not_equal(tmp, planted);
    assert_int_equal(strncmp(tmp, planted, strlen(planted)), 0);
    close(fd);
    unlink(tmp);
    free(tmp);
    unlink(planted);
}

static void chmod_ok(const char *p, mode_t m)
{
    assert_int_equal(chmod(p, m), 0);
}

/* A store or home directory that others may write to, or that belongs to someone else, is
 * refused with a message that says how to fix it. */
static void test_private_dir(void **state)
{
    (void)state;
    char p[512];
    path_in(p, sizeof p, "home/store");
    assert_int_equal(llmos_file_private_dir(p), LLMOS_OK); /* created, 0700 */
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(llmos_file_private_dir(p), LLMOS_OK); /* and accepted again */

    chmod_ok(p, 0777);
    assert_int_equal(llmos_file_private_dir(p), LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), p));
    assert_non_null(strstr(llmos_errmsg(), "every user"));
    assert_non_null(strstr(llmos_errmsg(), "chmod 700"));
    chmod_ok(p, 0770);
    assert_int_equal(llmos_file_private_dir(p), LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "its group"));
    chmod_ok(p, 0755); /* readable by others is their business; writable is not */
    assert_int_equal(llmos_file_private_dir(p), LLMOS_OK);
    chmod_ok(p, 0700);

    /* owned by another user (only root can give a directory away) */
    if (geteuid() == 0) {
        assert_int_equal(chown(p, 65534, 65534), 0);
        assert_int_equal(llmos_file_private_dir(p), LLMOS_ERR_DENIED);
        assert_non_null(strstr(llmos_errmsg(), "belongs to user id 65534"));
        assert_int_equal(chown(p, 0, 0), 0);
    }
    /* a file in the way */
    char f[512];
    path_in(f, sizeof f, "plain");
    assert_int_equal(llmos_file_write_atomic(f, "x", 1, 0600), LLMOS_OK);
    assert_int_equal(llmos_file_private_dir(f), LLMOS_ERR_IO);
}

static void test_secure_zero(void **state)
{
    (void)state;
    unsigned char key[32];
    memset(key, 0x5A, sizeof key);
    llmos_secure_zero(key, sizeof key);
    for (size_t i = 0; i < sizeof key; i++)
        assert_int_equal(key[i], 0);
    llmos_secure_zero(NULL, 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_then_map_and_read),
        cmocka_unit_test(test_replace_keeps_no_temp_files),
        cmocka_unit_test(test_replace_failure_leaves_old_file),
        cmocka_unit_test(test_errors_name_the_path),
        cmocka_unit_test(test_mkdirs),
        cmocka_unit_test(test_planted_symlink_at_temp_name),
        cmocka_unit_test(test_private_dir),
        cmocka_unit_test(test_secure_zero),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
