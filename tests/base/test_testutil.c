/*
 * test_testutil.c - the tests' own rule for the shared test data: a test whose file is absent
 * is reported by cmocka as skipped (never as passed) and recorded in LLMOS_SKIP_LOG, which CI
 * requires to stay empty; a file that is there is found without either.
 *
 * The skipping test runs in a child: this program started again with the argument "child",
 * under a data folder and a skip log of the parent's choosing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

/* ---- the child ------------------------------------------------------------------------------ */

static void child_needs_absent_file(void **state)
{
    (void)state;
    char path[4096];
    tu_testdata_path(path, sizeof path, "vocab/no-such-vocab.gguf");
    fail_msg("tu_testdata_path returned for an absent file: %s", path);
}

/* ---- the parent ----------------------------------------------------------------------------- */

static char dir[256];

static int setup(void **state)
{
    (void)state;
    return tu_mkdtemp("testutil", dir, sizeof dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(dir);
    return 0;
}

/* Run the child with LLMOS_TESTDATA=data and LLMOS_SKIP_LOG=log ("" leaves it unset); its
 * stdout and stderr go to *out. Returns its exit status. */
static int run_child(const char *data, const char *log, llmos_buf *out)
{
    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "env -u LLMOS_SKIP_LOG LLMOS_TESTDATA='%s' %s%s%s '%s' child 2>&1",
             data, *log ? "LLMOS_SKIP_LOG='" : "", log, *log ? "'" : "", self);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    buf_clear(out);
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0)
        assert_int_equal(buf_append(out, chunk, got), LLMOS_OK);
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void assert_contains(const llmos_buf *b, const char *what)
{
    if (!b->data || !strstr(b->data, what))
        fail_msg("lacks '%s':\n%s", what, b->data ? b->data : "");
}

/* An absent file, then an absent folder: each run reports the test as skipped, says which file
 * and where the data lives, and adds one line naming the program to the skip log. */
static void test_absent_data_skips_and_is_logged(void **state)
{
    (void)state;
    char log[512], absent[512], want[4096];
    snprintf(log, sizeof log, "%s/skipped.log", dir);
    snprintf(absent, sizeof absent, "%s/absent", dir);
    llmos_buf out = {0}, text = {0};

    assert_int_equal(run_child(dir, log, &out), 0);
    assert_contains(&out, "[  SKIPPED ] child_needs_absent_file");
    assert_contains(&out, "vocab/no-such-vocab.gguf");
    assert_contains(&out, "../shared/testdata");
    assert_contains(&out, "LLMOS_TESTDATA");

    assert_int_equal(run_child(absent, log, &out), 0);
    assert_contains(&out, "[  SKIPPED ] child_needs_absent_file");

    assert_int_equal(llmos_file_read_all(log, 1 << 16, &text), LLMOS_OK);
    snprintf(want, sizeof want,
             "test_base_testutil: vocab/no-such-vocab.gguf: not found in the test data folder "
             "%s\n"
             "test_base_testutil: vocab/no-such-vocab.gguf: the test data folder %s is absent\n",
             dir, absent);
    assert_string_equal(text.data, want);

    /* without LLMOS_SKIP_LOG the test still skips; the log is not touched */
    assert_int_equal(run_child(absent, "", &out), 0);
    assert_contains(&out, "[  SKIPPED ] child_needs_absent_file");
    buf_clear(&text);
    assert_int_equal(llmos_file_read_all(log, 1 << 16, &text), LLMOS_OK);
    assert_string_equal(text.data, want);
    buf_free(&out);
    buf_free(&text);
}

/* A file that is there: its path, no skip, nothing logged. */
static void test_present_data_is_found(void **state)
{
    (void)state;
    char sub[512], file[1024], log[1024], path[1024];
    snprintf(sub, sizeof sub, "%s/models", dir);
    snprintf(file, sizeof file, "%s/here.gguf", sub);
    snprintf(log, sizeof log, "%s/found.log", dir);
    assert_int_equal(llmos_file_mkdirs(sub, 0700), LLMOS_OK);
    assert_int_equal(llmos_file_write_atomic(file, "x", 1, 0600), LLMOS_OK);
    assert_int_equal(setenv("LLMOS_TESTDATA", dir, 1), 0);
    assert_int_equal(setenv("LLMOS_SKIP_LOG", log, 1), 0);

    assert_ptr_equal(tu_testdata_path(path, sizeof path, "models/here.gguf"), path);
    assert_string_equal(path, file);
    assert_true(tu_testdata_find(path, sizeof path, "models"));
    assert_string_equal(path, sub);
    assert_false(tu_testdata_find(path, sizeof path, "models/gone.gguf"));
    assert_int_equal(access(log, F_OK), -1);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "child") == 0) {
        const struct CMUnitTest child[] = {cmocka_unit_test(child_needs_absent_file)};
        return cmocka_run_group_tests(child, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent_data_skips_and_is_logged),
        cmocka_unit_test(test_present_data_is_found),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
