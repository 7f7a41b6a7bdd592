/* test_generate.c - how `llmos generate` finds its model: --model FILE, else $LLMOS_MODEL (as
 * the shell does), never the environment's model when --api names a server; without any, an
 * error that lists the ways to give one. Runs the built program on the shared tiny model,
 * whose greedy continuation of an empty prompt is known. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static llmos_buf out, err;
static char model[4096];

/* the first three greedy tokens of stories260K after BOS, as text */
#define GREEDY3 "tok_461tok_461tok_401\n"

static void need_model(void)
{
    if (!tu_testdata_path(model, sizeof model, "models/stories260K.gguf"))
        skip();
}

static void test_model_from_environment(void **state)
{
    (void)state;
    need_model();
    assert_int_equal(
        tu_run_llmos(&out, &err, "LLMOS_MODEL='%s' generate --prompt '' -n 3 --temp 0", model), 0);
    assert_string_equal(out.data, GREEDY3);
    /* the environment's model is the one loaded: a missing one is named */
    assert_int_equal(
        tu_run_llmos(&out, &err, "LLMOS_MODEL=/nonexistent/env-model.gguf generate --prompt x"), 1);
    assert_non_null(strstr(err.data, "/nonexistent/env-model.gguf"));
}

static void test_model_option_wins(void **state)
{
    (void)state;
    need_model();
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_MODEL=/nonexistent/env-model.gguf generate --model '%s' "
                                  "--prompt '' -n 3 --temp 0",
                                  model),
                     0);
    assert_string_equal(out.data, GREEDY3);
}

static void test_api_ignores_environment_model(void **state)
{
    (void)state;
    need_model();
    /* with --api the environment's model is not a second model: the missing --api-model is
     * what is wrong, not "--model and --api together" */
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_MODEL='%s' generate --api http://127.0.0.1:9/v1 "
                                  "--prompt x",
                                  model),
                     2);
    assert_non_null(strstr(err.data, "--api-model"));
    assert_null(strstr(err.data, "not both"));
}

/* Without any model the error says exactly how to give one, as the shell does, exit 2. */
static void test_no_model_says_how(void **state)
{
    (void)state;
    const char *runs[] = {"LLMOS_MODEL= generate --prompt hi", "LLMOS_MODEL= generate"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(runs); i++) {
        assert_int_equal(tu_run_llmos(&out, &err, "%s", runs[i]), 2);
        assert_non_null(strstr(err.data, "llmos generate: no model given. Give one of:"));
        assert_non_null(strstr(err.data, "\n  --model FILE "));
        assert_non_null(strstr(err.data, "\n  LLMOS_MODEL=FILE "));
        assert_non_null(strstr(err.data, "\n  --api URL --api-model NAME "));
        assert_non_null(strstr(err.data, "Try 'llmos help generate'"));
        assert_string_equal(out.data, "");
    }
}

static void test_help_names_environment(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, &err, "generate --help"), 0);
    assert_non_null(strstr(out.data, "--model FILE"));
    assert_non_null(strstr(out.data, "$LLMOS_MODEL"));
    assert_int_equal(tu_run_llmos(&out, &err, "--help"), 0);
    assert_non_null(strstr(out.data, "LLMOS_MODEL"));
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
        cmocka_unit_test(test_model_from_environment),
        cmocka_unit_test(test_model_option_wins),
        cmocka_unit_test(test_api_ignores_environment_model),
        cmocka_unit_test(test_no_model_says_how),
        cmocka_unit_test(test_help_names_environment),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
