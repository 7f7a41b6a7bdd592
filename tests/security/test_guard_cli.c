/*
 * test_guard_cli.c - `llmos guard check`: findings printed with where and what (never the
 * finding's text), --json as the kernel audits it, --redacted, a policy file and a principal,
 * the exit status that says allow (0), redact (3) or block (4), and usage errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static char dir[256];

static void write_file(const char *name, const char *text)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(llmos_file_write_atomic(path, text, strlen(text), 0600), LLMOS_OK);
}

static void test_check(void **state)
{
    (void)state;
    assert_true(tu_mkdtemp("guardcli", dir, sizeof dir));
    write_file("a.txt", "Hello.\nThe key: AKIAIOSFODNN7EXAMPLE\nmail bob@example.org\n");
    write_file("clean.txt", "Nothing to see here.\n");
    write_file("pem.txt", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIIrYSSNQFaA\n"
                          "-----END EC PRIVATE KEY-----\n");
    write_file("policy.json", "{\"principals\": {\"ops\": {\"api_key\": \"warn\"}}}");
    llmos_buf out = {0}, err = {0};
    int rc = tu_run_llmos(&out, &err, "guard check '%s/a.txt'", dir);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(out.data, "a.txt:2:10: api_key (AWS access key id), critical: redact"));
    assert_non_null(strstr(out.data, "a.txt:3:6: email (e-mail address), medium: warn"));
    assert_null(strstr(out.data, "AKIA"));
    buf_free(&out);
    rc = tu_run_llmos(&out, &err, "guard check --json '%s/a.txt'", dir);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(out.data, "\"detector\":\"api_key\""));
    assert_null(strstr(out.data, "AKIA"));
    assert_null(strstr(out.data, "bob@"));
    buf_free(&out);
    rc = tu_run_llmos(&out, &err, "guard check --redacted '%s/a.txt'", dir);
    assert_int_equal(rc, 3);
    assert_string_equal(out.data, "Hello.\nThe key: [REDACTED:api_key]\nmail bob@example.org\n");
    buf_free(&out);
    rc = tu_run_llmos(&out, &err,
                      "guard check --policy '%s/policy.json' --principal ops '%s/a.txt'", dir, dir);
    assert_int_equal(rc, 0); /* ops may see keys: only warnings */
    buf_free(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "guard check '%s/clean.txt'", dir), 0);
    assert_non_null(strstr(out.data, "guard: allow (0 findings)"));
    buf_free(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "guard check '%s/pem.txt'", dir), 4);
    buf_free(&out);
    /* standard input (the test runs the program with it empty) */
    assert_int_equal(tu_run_llmos(&out, &err, "guard check -"), 0);
    assert_non_null(strstr(out.data, "guard: allow (0 findings)"));
    buf_free(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "guard check"), 2);
    assert_int_equal(tu_run_llmos(&out, &err, "guard check --bogus x"), 2);
    assert_int_equal(tu_run_llmos(&out, &err, "guard check '%s/missing.txt'", dir), 1);
    buf_free(&out);
    buf_free(&err);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
