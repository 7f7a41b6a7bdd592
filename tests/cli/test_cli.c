/* test_cli.c - the llmos program's front door: help, unknown commands, version, doctor, exit
 * codes, and the banner of the shell. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static llmos_buf out, err;

static void test_help_lists_every_command(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, &err, "--help"), 0);
    const char *names[] = {"help", "version", "doctor", "shell"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(names); i++)
        assert_non_null(strstr(out.data, names[i]));
    assert_non_null(strstr(out.data, "Exit status"));
    assert_non_null(strstr(out.data, "LLMOS_HOME"));
    llmos_buf again = {0};
    assert_int_equal(tu_run_llmos(&again, NULL, "help"), 0);
    assert_string_equal(again.data, out.data);
    buf_free(&again);
}

static void test_command_help_two_ways(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, NULL, "help doctor"), 0);
    assert_non_null(strstr(out.data, "usage: llmos doctor"));
    llmos_buf other = {0};
    assert_int_equal(tu_run_llmos(&other, NULL, "doctor --help"), 0);
    assert_string_equal(other.data, out.data);
    buf_free(&other);
}

static void test_unknown_command_suggests(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, &err, "docter"), 2);
    assert_non_null(strstr(err.data, "unknown command 'docter'"));
    assert_non_null(strstr(err.data, "Did you mean 'doctor'?"));
    assert_int_equal(tu_run_llmos(&out, &err, "zzzzzzzzzz"), 2);
    assert_null(strstr(err.data, "Did you mean"));
    assert_int_equal(tu_run_llmos(&out, &err, "help verison"), 2);
    assert_non_null(strstr(err.data, "did you mean 'version'?"));
}

static void test_usage_errors_exit_2(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, &err, "version extra"), 2);
    assert_non_null(strstr(err.data, "llmos version: takes no arguments"));
    assert_non_null(strstr(err.data, "llmos help version"));
}

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, NULL, "version"), 0);
    assert_non_null(strstr(out.data, "llmos " LLMOS_VERSION));
    assert_non_null(strstr(out.data, "build:"));
    assert_non_null(strstr(out.data, "compiler:"));
    assert_non_null(strstr(out.data, "features:"));
    llmos_buf alias = {0};
    assert_int_equal(tu_run_llmos(&alias, NULL, "--version"), 0);
    assert_string_equal(alias.data, out.data);
    buf_free(&alias);
}

static void test_doctor_reports_home(void **state)
{
    (void)state;
    char dir[256];
    assert_true(tu_mkdtemp("cli", dir, sizeof dir));
    /* a home that does not exist yet is created */
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s/new' doctor", dir), 0);
    assert_non_null(strstr(out.data, "(created)"));
    assert_non_null(strstr(out.data, "sqlite3"));
    assert_non_null(strstr(out.data, "with FTS5"));
    /* a home that is a file is a failure with advice */
    llmos_buf tmp = {0};
    char file[300];
    snprintf(file, sizeof file, "%s/afile", dir);
    assert_int_equal(llmos_file_write_atomic(file, "x", 1, 0600), LLMOS_OK);
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' doctor", file), 1);
    assert_non_null(strstr(out.data, "is not a directory"));
    assert_non_null(strstr(out.data, "must be fixed"));
    buf_free(&tmp);
    tu_rmrf(dir);
}

static void test_shell_banner(void **state)
{
    (void)state;
    char dir[256];
    assert_true(tu_mkdtemp("cli", dir, sizeof dir));
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' ", dir), 0);
    assert_non_null(strstr(out.data, "an operating system for language models"));
    assert_non_null(strstr(out.data, "llmos is ready"));
    assert_non_null(strstr(out.data, "Commands:"));
    tu_rmrf(dir);
}

static int teardown(void **state)
{
    (void)state;
    buf_free(&out);
    buf_free(&err);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_lists_every_command),
        cmocka_unit_test(test_command_help_two_ways),
        cmocka_unit_test(test_unknown_command_suggests),
        cmocka_unit_test(test_usage_errors_exit_2),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_doctor_reports_home),
        cmocka_unit_test(test_shell_banner),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
