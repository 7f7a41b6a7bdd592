/* test_json.c - JSON helpers: located errors, typed getters, strict getters, serialisation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/json.h"

static void test_parse_error_names_line_and_column(void **state)
{
    (void)state;
    const char *text = "{\n  \"a\": 1,\n  \"b\": ]\n}";
    json_t *v = (json_t *)1;
    assert_int_equal(ljson_parse_text(text, strlen(text), "request body", 0, &v), LLMOS_ERR_FORMAT);
    assert_null(v);
    const char *msg = llmos_errmsg();
    assert_non_null(strstr(msg, "request body: line 3, column"));
}

static void test_parse_rejects_duplicates_trailing_and_nul(void **state)
{
    (void)state;
    json_t *v;
    assert_int_equal(ljson_parse_text("{\"a\":1,\"a\":2}", 13, "x", 0, &v), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "duplicate"));
    assert_int_equal(ljson_parse_text("{} {}", 5, "x", 0, &v), LLMOS_ERR_FORMAT);
    assert_int_equal(ljson_parse_text("\"a\\u0000b\"", 10, "x", 0, &v), LLMOS_ERR_FORMAT);
    /* not NUL-terminated input: only len bytes count */
    assert_int_equal(ljson_parse_text("[1]xxxx", 3, "x", 0, &v), LLMOS_OK);
    json_decref(v);
}

static void test_depth_limit(void **state)
{
    (void)state;
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    json_t *v;
    assert_int_equal(ljson_parse_text(deep, 200, "deep", 10, &v), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "deeper than 10"));
    assert_int_equal(ljson_parse_text(deep, 200, "deep", 100, &v), LLMOS_OK);
    json_decref(v);
}

static void test_typed_getters_with_defaults(void **state)
{
    (void)state;
    const char *text = "{\"s\":\"str\",\"i\":42,\"r\":2.5,\"b\":true,\"o\":{},\"a\":[1]}";
    json_t *v;
    assert_int_equal(ljson_parse_text(text, strlen(text), "t", 0, &v), LLMOS_OK);
    assert_string_equal(ljson_get_string(v, "s", "d"), "str");
    assert_string_equal(ljson_get_string(v, "i", "d"), "d"); /* wrong type */
    assert_string_equal(ljson_get_string(v, "missing", "d"), "d");
    assert_int_equal(ljson_get_int(v, "i", -1), 42);
    assert_int_equal(ljson_get_int(v, "r", -1), -1); /* reals are not integers */
    assert_true(ljson_get_number(v, "r", 0) == 2.5);
    assert_true(ljson_get_number(v, "i", 0) == 42.0);
    assert_true(ljson_get_bool(v, "b", false));
    assert_false(ljson_get_bool(v, "s", false));
    assert_non_null(ljson_get_object(v, "o"));
    assert_null(ljson_get_object(v, "a"));
    assert_non_null(ljson_get_array(v, "a"));
    assert_null(ljson_get_array(NULL, "a"));
    /* non-object receiver */
    json_t *arr = ljson_get_array(v, "a");
    assert_int_equal(ljson_get_int(arr, "i", 7), 7);
    json_decref(v);
}

static void test_required_members(void **state)
{
    (void)state;
    json_t *v;
    assert_int_equal(ljson_parse_text("{\"model\":3}", 11, "t", 0, &v), LLMOS_OK);
    const char *s;
    assert_int_equal(ljson_require_string(v, "model", "chat request", &s), LLMOS_ERR_FORMAT);
    assert_string_equal(llmos_errmsg(),
                        "chat request: member \"model\" must be a string, found an integer");
    assert_int_equal(ljson_require_string(v, "messages", "chat request", &s), LLMOS_ERR_FORMAT);
    assert_string_equal(llmos_errmsg(), "chat request: missing required member \"messages\"");
    int64_t i;
    assert_int_equal(ljson_require_int(v, "model", "t", &i), LLMOS_OK);
    assert_int_equal(i, 3);
    json_decref(v);
}

static void test_serialise(void **state)
{
    (void)state;
    json_t *v = json_pack("{s:s, s:i, s:[b]}", "name", "caf\xc3\xa9", "n", 7, "list", 1);
    llmos_buf b = {0};
    assert_int_equal(ljson_to_buf(v, 0, &b), LLMOS_OK);
    assert_string_equal(b.data, "{\"name\":\"caf\xc3\xa9\",\"n\":7,\"list\":[true]}");
    json_t *five = json_integer(5);
    assert_int_equal(ljson_to_buf(five, 0, &b), LLMOS_OK); /* appends to what is there */
    assert_string_equal(b.data + b.len - 1, "5");
    json_decref(five);
    buf_free(&b);
    json_decref(v);
    assert_int_equal(ljson_to_buf(NULL, 0, &b), LLMOS_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_error_names_line_and_column),
        cmocka_unit_test(test_parse_rejects_duplicates_trailing_and_nul),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_typed_getters_with_defaults),
        cmocka_unit_test(test_required_members),
        cmocka_unit_test(test_serialise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
