/*
 * test_scan_cli.c - `llmos scan` as a user runs it: a real (tiny) local model through the
 * kernel with the quarantine, a few probes, the three report files; usage errors; a probe folder
 * that is missing or broken named in the error.
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

static void test_scan_cli(void **state)
{
    (void)state;
    char model[1024], dir[256], path[400];
    llmos_buf out = {0}, err = {0};
    assert_int_equal(tu_run_llmos(&out, &err, "scan"), 2);
    assert_int_equal(tu_run_llmos(&out, &err, "scan --api http://127.0.0.1:9 "), 2);
    assert_int_equal(tu_run_llmos(&out, &err, "scan --model x --fail-above 2"), 2);
    assert_int_equal(tu_run_llmos(&out, &err, "scan --model x --endpoint"), 2);
    assert_true(tu_mkdtemp("scancli", dir, sizeof dir));
    assert_int_equal(tu_run_llmos(&out, &err, "scan --model x --probes '%s/none'", dir), 1);
    assert_non_null(strstr(err.data, "none"));
    snprintf(path, sizeof path, "%s/bad.jsonl", dir);
    assert_int_equal(llmos_file_write_atomic(path, "{}\n", 3, 0600), LLMOS_OK);
    assert_int_equal(tu_run_llmos(&out, &err, "scan --model x --probes '%s'", dir), 1);
    assert_non_null(strstr(err.data, "bad.jsonl:1"));

    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    int rc = tu_run_llmos(&out, &err,
                          "scan --model '%s' --family tool_misuse,encoding --limit 3 -n 8 "
                          "--out '%s/r' --fail-above 1",
                          model, dir);
    if (rc != 0)
        fail_msg("%s", err.data);
    assert_non_null(strstr(out.data, "encoding")); /* the first 3 in file order */
    assert_non_null(strstr(out.data, "3 attempts"));
    llmos_buf f = {0};
    snprintf(path, sizeof path, "%s/r/report.jsonl", dir);
    assert_int_equal(llmos_file_read_all(path, 1 << 24, &f), LLMOS_OK);
    size_t lines = 0;
    for (size_t i = 0; i < f.len; i++)
        lines += f.data[i] == '\n';
    assert_int_equal(lines, 3);
    buf_free(&f);
    snprintf(path, sizeof path, "%s/r/summary.json", dir);
    assert_int_equal(llmos_file_read_all(path, 1 << 24, &f), LLMOS_OK);
    assert_int_equal(buf_putc(&f, 0), LLMOS_OK);
    assert_non_null(strstr(f.data, "kernel, quarantine on"));
    buf_free(&f);
    snprintf(path, sizeof path, "%s/r/report.html", dir);
    assert_int_equal(llmos_file_read_all(path, 1 << 24, &f), LLMOS_OK);
    buf_free(&f);
    buf_free(&out);
    buf_free(&err);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
