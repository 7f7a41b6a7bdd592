/*
 * test_openai_node.c - ctest's entry to the interoperability test with the official `openai`
 * Node.js client: runs tests/io/node/run.sh, which starts `llmos serve --model
 * stories260K.gguf` on a free loopback port and runs `node --test` against it.
 *
 * A C driver (rather than a test registered in CMakeLists.txt) so that it is picked up like
 * every other test. It skips with run.sh's message when node, tests/io/node/node_modules
 * (installed by scripts/deps) or the test data are absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "llmos/base.h"

static void test_openai_client(void **state)
{
    (void)state;
    const char *src = getenv("LLMOS_SRC");
    if (!src || !getenv("LLMOS_BIN")) {
        fprintf(stderr, "skipping: run through ctest (LLMOS_SRC and LLMOS_BIN unset)\n");
        skip();
    }
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/io/node/run.sh' 2>&1", src);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    llmos_buf out = {0};
    char line[1024];
    while (fgets(line, sizeof line, p))
        assert_int_equal(buf_puts(&out, line), LLMOS_OK);
    int st = pclose(p);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 77) {
        fprintf(stderr, "skipping: %s", out.data ? out.data : "\n");
        buf_free(&out);
        skip();
    }
    if (rc != 0)
        fprintf(stderr, "%s\n", out.data ? out.data : "");
    else if (out.data && strstr(out.data, "# pass"))
        fprintf(stderr, "%s", strstr(out.data, "# tests"));
    buf_free(&out);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_openai_client)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
