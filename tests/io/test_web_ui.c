/*
 * test_web_ui.c - ctest's entry to the web UI test in a real browser: runs
 * tests/io/node/run_web.sh, which makes two accounts, starts `llmos serve --accounts
 * --tls-self-signed` on stories260K and drives Debian's chromium headless through
 * playwright-core (tests/io/node/web_ui.browser.mjs). Screenshots of each page are left in
 * web-ui-screenshots/ of the build folder (CI keeps them as artifacts).
 *
 * It skips when the test data is absent (recorded in LLMOS_SKIP_LOG, as every test that needs
 * it), and with run_web.sh's message when node, chromium or playwright-core (scripts/deps
 * installs them) are absent: those are tools, not test data, so not recorded.
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
#include "testutil.h"

static void test_web_ui_in_chromium(void **state)
{
    (void)state;
    const char *src = getenv("LLMOS_SRC");
    if (!src || !getenv("LLMOS_BIN"))
        tu_skip("LLMOS_SRC and LLMOS_BIN are not set (run the tests through ctest)");
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "bash '%s/tests/io/node/run_web.sh' 2>&1", src);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    llmos_buf out = {0};
    char line[1024];
    while (fgets(line, sizeof line, p))
        assert_int_equal(buf_puts(&out, line), LLMOS_OK);
    int st = pclose(p);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 77) {
        char why[1024];
        snprintf(why, sizeof why, "%s", out.data ? out.data : "");
        why[strcspn(why, "\n")] = 0;
        buf_free(&out);
        tu_skip("%s", why);
    }
    if (rc != 0)
        fprintf(stderr, "%s\n", out.data ? out.data : "");
    else if (out.data && strstr(out.data, "# tests"))
        fprintf(stderr, "%s", strstr(out.data, "# tests"));
    buf_free(&out);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_web_ui_in_chromium)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
