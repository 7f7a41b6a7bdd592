/*
 * test_mcp_cli.c - `llmos mcp add/list/rm/tools` with a home of its own: a server is
 * remembered in <home>/mcp.json (mode 0600), listed, refused when added twice or with a bad
 * name, started by `tools` (scripted_mcp_server.py, a TEST DOUBLE, lists echo and fail; one
 * that breaks the protocol fails with its reason), and forgotten; a damaged mcp.json is an
 * error naming the file, not a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "testutil.h"

static void test_mcp_commands(void **state)
{
    (void)state;
    const char *src = getenv("LLMOS_SRC");
    if (!src || !getenv("LLMOS_BIN"))
        tu_skip("LLMOS_SRC and LLMOS_BIN are not set (run the tests through ctest)");
    char home[256], file[512];
    assert_true(tu_mkdtemp("mcpcli", home, sizeof home));
    snprintf(file, sizeof file, "%s/mcp.json", home);
    llmos_buf out = {0}, err = {0};

    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' mcp add fake -- python3 "
                                  "'%s/tests/tools/scripted_mcp_server.py' good",
                                  home, src),
                     0);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' mcp add broken -- python3 "
                                  "'%s/tests/tools/scripted_mcp_server.py' lies",
                                  home, src),
                     0);

    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp list", home), 0);
    assert_non_null(strstr(out.data, "fake\tpython3 "));
    assert_non_null(strstr(out.data, "scripted_mcp_server.py good"));
    assert_non_null(strstr(out.data, "broken\t"));

    buf_clear(&err);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp add fake -- true", home), 1);
    assert_non_null(strstr(err.data, "configured already"));
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp add 'a/b' -- true", home), 2);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp add x true", home), 2);

    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp tools fake", home), 0);
    assert_non_null(strstr(out.data, "scripted-mcp 0.0.1"));
    assert_non_null(strstr(out.data, "2 tools"));
    assert_non_null(strstr(out.data, "echo"));
    assert_non_null(strstr(out.data, "Echoes its message"));

    buf_clear(&err);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp tools broken", home), 1);
    assert_non_null(strstr(err.data, "inputSchema"));

    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp rm fake", home), 0);
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp list", home), 0);
    assert_null(strstr(out.data, "fake"));
    assert_non_null(strstr(out.data, "broken"));
    buf_clear(&err);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp rm fake", home), 1);
    assert_non_null(strstr(err.data, "no MCP server named fake"));

    /* a damaged file */
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("{\"servers\": {\"x\": {\"command\": [1]}}}", f);
    fclose(f);
    buf_clear(&err);
    assert_int_equal(tu_run_llmos(&out, &err, "LLMOS_HOME='%s' mcp list", home), 1);
    assert_non_null(strstr(err.data, "mcp.json"));

    buf_free(&out);
    buf_free(&err);
    tu_rmrf(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_mcp_commands)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
