/*
 * test_ps_cli.c - the kernel's commands: `llmos ps`, `llmos kill PID`, `llmos audit` and
 * `llmos audit verify`, on a store made here (processes spawned by a kernel over the scripted
 * TEST backend), including a tampered audit log that verify must name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/kernel.h"
#include "storage/store_internal.h"
#include "testutil.h"

static char home[256], storedir[300];

static store *open_store(void)
{
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    store *s = NULL;
    assert_int_equal(store_open(storedir, "pw", &o, &s), LLMOS_OK);
    return s;
}

static int run(llmos_buf *out, llmos_buf *err, const char *args)
{
    buf_clear(out);
    buf_clear(err);
    return tu_run_llmos(out, err, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw %s", home, args);
}

static void test_ps_kill_audit(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        skip();
    assert_true(tu_mkdtemp("pscli", home, sizeof home));
    snprintf(storedir, sizeof storedir, "%s/store", home);
    llmos_buf out = {0}, err = {0};
    /* No store yet: a clear error. */
    assert_int_equal(run(&out, &err, "ps"), 1);
    assert_non_null(strstr(err.data, "no llmos store"));

    store *st = open_store();
    const char *steps[] = {"{\"content\": \"hi\", \"tokens\": 7}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, false, &b), LLMOS_OK);
    kernel_config c = {.st = st, .privileged = b, .principal = "alice"};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&c, &k), LLMOS_OK);
    int64_t p1, p2;
    assert_int_equal(kernel_spawn(k, "one", KCAP_COMPUTE | KCAP_MESSAGE,
                                  (kbudget){.tokens = 100, .tool_calls = 4}, &p1),
                     LLMOS_OK);
    assert_int_equal(kernel_run(k, p1, NULL), LLMOS_OK);
    assert_int_equal(kernel_spawn(k, "two", KCAP_ALL, (kbudget){0}, &p2), LLMOS_OK);
    kernel_free(k);
    llm_backend_free(b);
    store_close(st);

    assert_int_equal(run(&out, &err, "ps"), 0);
    assert_non_null(strstr(out.data, "PID"));
    assert_non_null(strstr(out.data, "done"));
    assert_non_null(strstr(out.data, "waiting"));
    assert_non_null(strstr(out.data, "alice"));
    assert_non_null(strstr(out.data, "compute,message"));
    assert_non_null(strstr(out.data, "7/100"));
    assert_non_null(strstr(out.data, "0/4"));
    assert_int_equal(run(&out, &err, "ps --json"), 0);
    assert_non_null(strstr(out.data, "\"state\":\"waiting\""));

    assert_int_equal(run(&out, &err, "kill 2"), 0);
    assert_non_null(strstr(out.data, "process 2 killed"));
    assert_int_equal(run(&out, &err, "kill 2"), 1);
    assert_non_null(strstr(err.data, "already ended"));
    assert_int_equal(run(&out, &err, "kill 77"), 1);
    assert_non_null(strstr(err.data, "no process 77"));
    assert_int_equal(run(&out, &err, "kill abc"), 2);
    assert_int_equal(run(&out, &err, "ps"), 0);
    assert_non_null(strstr(out.data, "killed"));

    assert_int_equal(run(&out, &err, "audit"), 0);
    assert_non_null(strstr(out.data, "login"));
    assert_non_null(strstr(out.data, "model.load"));
    assert_non_null(strstr(out.data, "\"event\":\"killed\""));
    assert_int_equal(run(&out, &err, "audit verify"), 0);
    assert_non_null(strstr(out.data, "audit log intact"));

    /* Tamper: edit record 2 directly in SQLite. */
    st = open_store();
    assert_int_equal(
        sqlite3_exec(st->db, "UPDATE audit SET payload = '{}' WHERE seq = 2", NULL, NULL, NULL),
        SQLITE_OK);
    store_close(st);
    assert_int_equal(run(&out, &err, "audit verify"), 1);
    assert_non_null(strstr(out.data, "first bad record 2"));
    assert_int_equal(run(&out, &err, "audit --bogus"), 2);

    buf_free(&out);
    buf_free(&err);
    tu_rmrf(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ps_kill_audit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
