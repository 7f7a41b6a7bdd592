/*
 * test_policy.c - the flow policy: the built-in default, rules from JSON (first match wins,
 * "*" wildcards, the default set), loading from a config folder, and clear errors for bad
 * policies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/security.h"
#include "testutil.h"

static llmos_err check(const policy *p, const char *tool, const char *members_json)
{
    json_t *m = json_loads(members_json, 0, NULL);
    assert_non_null(m);
    llmos_err err = policy_check(p, tool, m);
    json_decref(m);
    return err;
}

static void test_default(void **state)
{
    (void)state;
    policy *p = NULL;
    assert_int_equal(policy_default(&p), LLMOS_OK);
    assert_int_equal(
        check(p, "send_message", "{\"recipient\":[\"user\"],\"text\":[\"untrusted\"]}"), LLMOS_OK);
    assert_int_equal(check(p, "send_message", "{\"recipient\":[\"user\",\"untrusted\"]}"),
                     LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "origin 'untrusted' may not flow into argument "
                                           "'recipient' of tool 'send_message'"));
    assert_int_equal(check(p, "shell", "{\"command\":[\"untrusted\"]}"), LLMOS_ERR_DENIED);
    assert_int_equal(check(p, "shell", "{\"cwd\":[\"tool\"]}"), LLMOS_ERR_DENIED);
    assert_int_equal(check(p, "shell", "{\"command\":[\"user\"]}"), LLMOS_OK);
    assert_int_equal(check(p, "run_command", "{\"argv\":[\"untrusted\"]}"), LLMOS_ERR_DENIED);
    assert_int_equal(check(p, "calculator", "{\"expression\":[\"untrusted\"]}"), LLMOS_OK);
    /* a tool without a rule gets no untrusted value (an http_post(url=$VAR1) from a plug-in) */
    assert_int_equal(check(p, "http_post", "{\"url\":[\"untrusted\"]}"), LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "argument 'url' of tool 'http_post'"));
    assert_int_equal(check(p, "http_post", "{\"url\":[\"user\"],\"body\":[\"tool\"]}"),
                     LLMOS_OK);
    policy_free(p);
    policy_free(NULL);
}

static void test_custom_rules(void **state)
{
    (void)state;
    const char *text = "{\"rules\": [{\"tool\": \"calculator\", \"argument\": \"expression\", "
                       "\"allow\": [\"user\"]}, {\"tool\": \"*\", \"argument\": \"url\", "
                       "\"allow\": [\"user\", \"system\"]}], \"default\": [\"system\", \"user\"]}";
    policy *p = NULL;
    assert_int_equal(policy_parse(text, strlen(text), "test", &p), LLMOS_OK);
    assert_int_equal(check(p, "calculator", "{\"expression\":[\"tool\"]}"), LLMOS_ERR_DENIED);
    assert_int_equal(check(p, "fetch", "{\"url\":[\"system\"]}"), LLMOS_OK);
    assert_int_equal(check(p, "fetch", "{\"url\":[\"tool\"]}"), LLMOS_ERR_DENIED);
    /* No rule: the default set, which here excludes tool output too. */
    assert_int_equal(check(p, "send_message", "{\"text\":[\"tool\"]}"), LLMOS_ERR_DENIED);
    assert_int_equal(check(p, "send_message", "{\"text\":[\"user\"]}"), LLMOS_OK);
    policy_free(p);
}

static void test_bad_policies(void **state)
{
    (void)state;
    policy *p = NULL;
    const char *bad[] = {
        "{\"rules\": [{\"tool\": \"x\", \"allow\": [\"user\"]}]}",
        "{\"rules\": [{\"tool\": \"x\", \"argument\": \"y\", \"allow\": [\"root\"]}]}",
        "{\"rules\": {}}",
        "{\"default\": \"user\"}",
        "{\"rules\": [",
    };
    const char *words[] = {"needs \"tool\" and \"argument\"", "rules[0].allow[0]",
                           "\"rules\" must be an array", "expected an array", "line 1"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++) {
        assert_int_equal(policy_parse(bad[i], strlen(bad[i]), "bad.json", &p), LLMOS_ERR_FORMAT);
        assert_null(p);
        if (!strstr(llmos_errmsg(), words[i]))
            fail_msg("policy %zu: message '%s' lacks '%s'", i, llmos_errmsg(), words[i]);
    }
}

static void test_load(void **state)
{
    (void)state;
    char dir[256], path[512];
    assert_true(tu_mkdtemp("policy", dir, sizeof dir));
    policy *p = NULL;
    /* No file: the built-in default. */
    assert_int_equal(policy_load(dir, &p), LLMOS_OK);
    assert_int_equal(check(p, "send_message", "{\"recipient\":[\"untrusted\"]}"), LLMOS_ERR_DENIED);
    policy_free(p);
    snprintf(path, sizeof path, "%s/policy.json", dir);
    const char *text = "{\"rules\": [], \"default\": [\"user\"]}";
    assert_int_equal(llmos_file_write_atomic(path, text, strlen(text), 0600), LLMOS_OK);
    assert_int_equal(policy_load(dir, &p), LLMOS_OK);
    assert_int_equal(check(p, "anything", "{\"a\":[\"system\"]}"), LLMOS_ERR_DENIED);
    policy_free(p);
    assert_int_equal(llmos_file_write_atomic(path, "{oops", 5, 0600), LLMOS_OK);
    assert_int_equal(policy_load(dir, &p), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "policy.json"));
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),
        cmocka_unit_test(test_custom_rules),
        cmocka_unit_test(test_bad_policies),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
