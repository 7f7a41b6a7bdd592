/* test_log.c - log levels, parsing, filtering, the sink, and the LLMOS_LOG variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

typedef struct captured {
    int count;
    llmos_log_level level;
    char component[32];
    char msg[256];
} captured;

static void sink(llmos_log_level level, const char *component, const char *msg, void *ctx)
{
    captured *c = ctx;
    c->count++;
    c->level = level;
    snprintf(c->component, sizeof c->component, "%s", component);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
}

static void test_parse_levels(void **state)
{
    (void)state;
    llmos_log_level lv;
    assert_true(llmos_log_parse_level("debug", &lv));
    assert_int_equal(lv, LLMOS_LOG_DEBUG);
    assert_true(llmos_log_parse_level("warning", &lv));
    assert_int_equal(lv, LLMOS_LOG_WARN);
    assert_true(llmos_log_parse_level("off", &lv));
    assert_int_equal(lv, LLMOS_LOG_OFF);
    assert_false(llmos_log_parse_level("loud", &lv));
    assert_false(llmos_log_parse_level(NULL, &lv));
}

static void test_threshold_filters(void **state)
{
    (void)state;
    captured c = {0};
    llmos_log_set_sink(sink, &c);
    llmos_log_set_level(LLMOS_LOG_WARN);
    LOG_INFO("gguf", "hidden %d", 1);
    assert_int_equal(c.count, 0);
    LOG_ERROR("gguf", "shown %d", 2);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.level, LLMOS_LOG_ERROR);
    assert_string_equal(c.component, "gguf");
    assert_string_equal(c.msg, "shown 2");
    llmos_log_set_level(LLMOS_LOG_OFF);
    LOG_ERROR("gguf", "silenced");
    assert_int_equal(c.count, 1);
    llmos_log_set_level(LLMOS_LOG_DEBUG);
    LOG_DEBUG("pool", "now visible");
    assert_int_equal(c.count, 2);
    llmos_log_set_sink(NULL, NULL);
}

static const char *self_path;

/* A fresh process reads LLMOS_LOG on first use: run this program again with --child under
 * several settings and read back the level it chose. */
static void test_env_sets_initial_level(void **state)
{
    (void)state;
    const struct {
        const char *env;
        int level;
    } cases[] = {
        {"debug", LLMOS_LOG_DEBUG}, {"error", LLMOS_LOG_ERROR}, {"nonsense", LLMOS_LOG_WARN}};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(cases); i++) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "LLMOS_LOG=%s '%s' --child 2>/dev/null", cases[i].env, self_path);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        int got = -1;
        assert_int_equal(fscanf(p, "%d", &got), 1);
        pclose(p);
        assert_int_equal(got, cases[i].level);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        printf("%d\n", (int)llmos_log_get_level());
        return 0;
    }
    self_path = argv[0];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_levels),
        cmocka_unit_test(test_threshold_filters),
        cmocka_unit_test(test_env_sets_initial_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
