/* test_bench.c - `llmos bench`'s command line: each mistake exits 2 with a message that says
 * what the option takes (and what it got), and the help lists every option. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static llmos_buf out, err;

static void test_usage_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args, *says;
    } cases[] = {
        {"bench", "no model given: name the GGUF file to measure with --model FILE"},
        {"bench model.gguf", "unexpected argument 'model.gguf' (give the model as --model FILE)"},
        {"bench --model", "--model takes a GGUF model FILE"},
        {"bench --model m.gguf -p", "-p takes a token count from 0 to 65536"},
        {"bench --model m.gguf -n -1", "-n takes a token count from 0 to 65536, not '-1'"},
        {"bench --model m.gguf -p 70000", "-p takes a token count from 0 to 65536, not '70000'"},
        {"bench --model m.gguf -t 0", "-t takes a thread count from 1 to 1024, not '0'"},
        {"bench --model m.gguf -r x", "-r takes a repetition count from 1 to 1000, not 'x'"},
        {"bench --model m.gguf --bogus", "unknown option '--bogus'"},
        {"bench --model m.gguf -p 0 -n 0", "nothing to measure (-p 0 and -n 0)"},
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(cases); i++) {
        assert_int_equal(tu_run_llmos(&out, &err, "%s", cases[i].args), 2);
        if (!strstr(err.data, cases[i].says))
            fail_msg("llmos %s: expected '%s' in: %s", cases[i].args, cases[i].says, err.data);
        assert_non_null(strstr(err.data, "Try 'llmos help bench' for usage."));
    }
}

static void test_help_lists_options(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, &err, "bench --help"), 0);
    const char *options[] = {"--model FILE", "-p N", "-n N", "-t THREADS", "-r REPS", "--json"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(options); i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", options[i]);
        if (!strstr(out.data, line))
            fail_msg("bench --help does not describe %s", options[i]);
    }
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
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_lists_options),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
