/*
 * test_json_schema.c - JSON Schema to grammar, and the validator, on the same schemas.
 *
 * For each schema, instances that are valid must be matched by the generated grammar and
 * accepted by the validator; invalid ones must be rejected by both (with a message that names
 * the path for the validator). Also: property order, bounded whitespace, the generic JSON
 * grammar, $ref recursion, and errors for unsupported schemas.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "llmos/grammar.h"
#include "llmos/json.h"

static json_t *js(const char *text)
{
    json_t *v = NULL;
    if (ljson_parse_text(text, strlen(text), "test", 0, &v) != LLMOS_OK)
        fail_msg("bad test JSON: %s", llmos_errmsg());
    return v;
}

static grammar *schema_grammar(const char *schema_text, json_t **schema_out)
{
    json_t *schema = js(schema_text);
    llmos_buf gb = {0};
    if (jschema_to_grammar(schema, NULL, &gb) != LLMOS_OK)
        fail_msg("jschema_to_grammar(%s): %s", schema_text, llmos_errmsg());
    grammar *g = NULL;
    if (grammar_parse(gb.data, gb.len, NULL, &g) != LLMOS_OK)
        fail_msg("generated grammar does not parse: %s\n%s", llmos_errmsg(), gb.data);
    buf_free(&gb);
    *schema_out = schema;
    return g;
}

typedef struct scase {
    const char *schema;
    const char *good[8];
    const char *bad[10];
} scase;

static const scase CASES[] = {
    {"{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
     "\"days\":{\"type\":\"integer\"},\"units\":{\"enum\":[\"c\",\"f\"]}},"
     "\"required\":[\"city\"]}",
     {"{\"city\":\"Paris\"}", "{\"city\": \"Paris\", \"days\": 3}",
      "{\"city\":\"Z\xc3\xbcrich\",\"days\":-2,\"units\":\"f\"}",
      "{\"city\":\"x\",\"units\":\"c\"}", "{\n  \"city\": \"a\\\"b\",\n  \"days\": 0\n}"},
     {"{}", "{\"days\":3}", "{\"city\":1}", "{\"city\":\"x\",\"units\":\"k\"}",
      "{\"city\":\"x\",\"extra\":1}", "{\"city\":\"x\",\"days\":1.5}", "[]", "{\"city\":\"x\",}"}},
    /* all optional, nested object and array with bounds */
    {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"array\","
     "\"items\":{\"type\":\"number\"},\"minItems\":1,\"maxItems\":3},\"c\":{\"type\":\"object\","
     "\"properties\":{\"d\":{\"type\":\"null\"}},\"required\":[\"d\"]}}}",
     {"{}", "{\"a\":true}", "{\"b\":[1]}", "{\"b\":[1, 2.5, -3e2]}", "{\"c\":{\"d\":null}}",
      "{\"a\":false,\"b\":[0],\"c\":{\"d\":null}}"},
     {"{\"b\":[]}", "{\"b\":[1,2,3,4]}", "{\"c\":{}}", "{\"a\":null}", "{\"b\":[\"x\"]}",
      "{\"a\":true \"b\":[1]}"}},
    /* strings with length bounds, const, anyOf, type lists */
    {"{\"type\":\"object\",\"properties\":{\"code\":{\"type\":\"string\",\"minLength\":2,"
     "\"maxLength\":3},\"v\":{\"const\":\"v1\"},\"x\":{\"anyOf\":[{\"type\":\"integer\"},"
     "{\"type\":\"string\",\"maxLength\":1}]},\"y\":{\"type\":[\"string\",\"null\"]}},"
     "\"required\":[\"code\",\"v\",\"x\",\"y\"]}",
     {"{\"code\":\"ab\",\"v\":\"v1\",\"x\":5,\"y\":null}",
      "{\"code\":\"\xe4\xb8\xad\xe6\x96\x87\",\"v\":\"v1\",\"x\":\"q\",\"y\":\"s\"}",
      "{\"code\":\"abc\",\"v\":\"v1\",\"x\":-1,\"y\":\"\"}"},
     {"{\"code\":\"a\",\"v\":\"v1\",\"x\":5,\"y\":null}",
      "{\"code\":\"abcd\",\"v\":\"v1\",\"x\":5,\"y\":null}",
      "{\"code\":\"ab\",\"v\":\"v2\",\"x\":5,\"y\":null}",
      "{\"code\":\"ab\",\"v\":\"v1\",\"x\":\"qq\",\"y\":null}",
      "{\"code\":\"ab\",\"v\":\"v1\",\"x\":5,\"y\":1}", "{\"code\":\"ab\",\"v\":\"v1\",\"x\":5}"}},
    /* $ref recursion: a tree */
    {"{\"$ref\":\"#/$defs/node\",\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":"
     "{\"name\":{\"type\":\"string\"},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":"
     "\"#/$defs/node\"}}},\"required\":[\"name\"]}}}",
     {"{\"name\":\"r\"}",
      "{\"name\":\"r\",\"kids\":[{\"name\":\"a\"},{\"name\":\"b\",\"kids\":[]}]}"},
     {"{\"kids\":[]}", "{\"name\":\"r\",\"kids\":[{}]}", "{\"name\":\"r\",\"kids\":[1]}"}},
    /* additionalProperties as a schema, no properties */
    {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}",
     {"{}", "{\"a\":1,\"b\":2}"},
     {"{\"a\":\"x\"}", "{\"a\":1,}"}},
    /* an empty schema: any JSON value */
    {"{}", {"1", "\"s\"", "[1,{\"a\":null}]", "{\"k\":[true,false]}"}, {"", "[1,", "tru"}},
};

static void test_schemas(void **state)
{
    (void)state;
    for (size_t c = 0; c < LLMOS_ARRAY_LEN(CASES); c++) {
        json_t *schema = NULL;
        grammar *g = schema_grammar(CASES[c].schema, &schema);
        for (size_t k = 0; k < 8 && CASES[c].good[k]; k++) {
            const char *s = CASES[c].good[k];
            if (!grammar_matches(g, s, strlen(s)))
                fail_msg("schema %zu: grammar rejects valid %s", c, s);
            json_t *v = js(s);
            if (jschema_validate(schema, v, "args") != LLMOS_OK)
                fail_msg("schema %zu: validator rejects valid %s: %s", c, s, llmos_errmsg());
            json_decref(v);
        }
        for (size_t k = 0; k < 10 && CASES[c].bad[k]; k++) {
            const char *s = CASES[c].bad[k];
            if (grammar_matches(g, s, strlen(s)))
                fail_msg("schema %zu: grammar accepts invalid %s", c, s);
            json_t *v = NULL;
            if (ljson_parse_text(s, strlen(s), "t", 0, &v) == LLMOS_OK) {
                if (jschema_validate(schema, v, "args") == LLMOS_OK)
                    fail_msg("schema %zu: validator accepts invalid %s", c, s);
                json_decref(v);
            }
        }
        grammar_free(g);
        json_decref(schema);
    }
}

static void test_order_and_whitespace(void **state)
{
    (void)state;
    json_t *schema = NULL;
    grammar *g = schema_grammar("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},"
                                "\"b\":{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}",
                                &schema);
    const char *swapped = "{\"b\":1,\"a\":2}";
    assert_false(grammar_matches(g, swapped, strlen(swapped))); /* schema order only */
    json_t *v = js(swapped);
    assert_int_equal(jschema_validate(schema, v, NULL), LLMOS_OK); /* valid JSON, though */
    json_decref(v);
    /* whitespace is bounded: a run of 100 blanks is refused, pretty printing is fine */
    char spaces[200];
    snprintf(spaces, sizeof spaces, "{%100s\"a\":1,\"b\":2}", "");
    assert_false(grammar_matches(g, spaces, strlen(spaces)));
    const char *pretty = "{\n    \"a\": 1,\n    \"b\": 2\n}";
    assert_true(grammar_matches(g, pretty, strlen(pretty)));
    /* numbers are bounded too */
    const char *longnum = "{\"a\":12345678901234567890,\"b\":2}";
    assert_false(grammar_matches(g, longnum, strlen(longnum)));
    grammar_free(g);
    json_decref(schema);
}

static void test_validator_messages(void **state)
{
    (void)state;
    json_t *schema = js("{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"array\","
                        "\"items\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
                        "\"string\"},\"q\":{\"type\":\"number\",\"minimum\":0}}}}},"
                        "\"required\":[\"items\"]}");
    struct {
        const char *inst, *want;
    } cases[] = {
        {"{\"items\":[{\"n\":\"a\"},{\"n\":\"b\"},{\"n\":3}]}",
         "args: $.items[2].n: expected string, found integer"},
        {"{}", "args: $: missing required property 'items'"},
        {"{\"items\":[],\"zz\":1}", "unknown property 'zz' (allowed: items)"},
        {"{\"items\":[{\"q\":-1}]}", "$.items[0].q: -1 is below the minimum 0"},
        {"{\"items\":{}}", "$.items: expected array, found object"},
    };
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(cases); k++) {
        json_t *v = js(cases[k].inst);
        assert_int_equal(jschema_validate(schema, v, "args"), LLMOS_ERR_INVALID);
        if (!strstr(llmos_errmsg(), cases[k].want))
            fail_msg("message \"%s\" lacks \"%s\"", llmos_errmsg(), cases[k].want);
        json_decref(v);
    }
    json_decref(schema);

    schema = js("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}");
    json_t *v = js("1");
    assert_int_equal(jschema_validate(schema, v, NULL), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "matches 2 of the oneOf"));
    json_decref(v);
    v = js("1.5");
    assert_int_equal(jschema_validate(schema, v, NULL), LLMOS_OK);
    json_decref(v);
    json_decref(schema);
}

static void test_unsupported(void **state)
{
    (void)state;
    const struct {
        const char *schema;
        llmos_err code;
        const char *want;
    } cases[] = {
        {"{\"type\":\"strin\"}", LLMOS_ERR_UNSUPPORTED, "$: type 'strin'"},
        {"{\"$ref\":\"http://x/y\"}", LLMOS_ERR_UNSUPPORTED, "not a local reference"},
        {"{\"properties\":{\"a\":{\"allOf\":[{},{}]}}}", LLMOS_ERR_UNSUPPORTED, "$.a.allOf"},
        {"{\"properties\":{\"a\":{}},\"required\":[\"b\"]}", LLMOS_ERR_FORMAT, "names 'b'"},
        {"{\"enum\":[]}", LLMOS_ERR_FORMAT, "enum"},
        {"{\"type\":3}", LLMOS_ERR_FORMAT, "$.type"},
        /* left recursion through $ref (found by fuzz_json_schema): refused by the compiler
         * with the path, not by the grammar parser with rule names the user never wrote */
        {"{\"anyOf\":[{\"$ref\":\"#\"},{\"type\":\"string\"}]}", LLMOS_ERR_UNSUPPORTED,
         "anyOf[0].$ref: '#' refers back to itself"},
        {"{\"$defs\":{\"a\":{\"allOf\":[{\"$ref\":\"#/$defs/b\"}]},\"b\":{\"oneOf\":[{\"$ref\":"
         "\"#/$defs/a\"}]}},\"$ref\":\"#/$defs/a\"}",
         LLMOS_ERR_UNSUPPORTED, "refers back to itself"},
    };
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(cases); k++) {
        json_t *s = js(cases[k].schema);
        llmos_buf b = {0};
        assert_int_equal(jschema_to_grammar(s, NULL, &b), cases[k].code);
        if (!strstr(llmos_errmsg(), cases[k].want))
            fail_msg("message \"%s\" lacks \"%s\"", llmos_errmsg(), cases[k].want);
        buf_free(&b);
        json_decref(s);
    }
}

static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* An object schema with n properties (strings and integers), all of them required or none. */
static json_t *wide_schema(size_t n, bool all_required)
{
    json_t *props = json_object(), *req = json_array();
    for (size_t k = 0; k < n; k++) {
        char name[32];
        snprintf(name, sizeof name, "p%zu", k);
        json_object_set_new(props, name, json_pack("{s:s}", "type", k % 2 ? "string" : "integer"));
        if (all_required)
            json_array_append_new(req, json_string(name));
    }
    return json_pack("{s:s,s:o,s:o}", "type", "object", "properties", props, "required", req);
}

static void expect_limit(json_t *schema, const char *bound, const char *value)
{
    llmos_buf b = {0};
    assert_int_equal(jschema_to_grammar(schema, NULL, &b), LLMOS_ERR_LIMIT);
    if (!strstr(llmos_errmsg(), bound) || !strstr(llmos_errmsg(), value))
        fail_msg("message \"%s\" should name %s and %s", llmos_errmsg(), bound, value);
    assert_int_equal(b.len, 0); /* refused before any rule is written */
    buf_free(&b);
    json_decref(schema);
}

/* A schema is bounded before it is compiled (a request's schema once took 5 s to compile at
 * 10,000 properties, holding the model), and one at the bounds compiles quickly. */
static void test_size_limits(void **state)
{
    (void)state;
    char value[32];
    snprintf(value, sizeof value, "%d", JSCHEMA_MAX_PROPERTIES + 1);
    expect_limit(wide_schema(JSCHEMA_MAX_PROPERTIES + 1, false), "JSCHEMA_MAX_PROPERTIES", value);
    expect_limit(wide_schema(20000, true), "JSCHEMA_MAX_PROPERTIES", "20000");

    json_t *en = json_array();
    for (int k = 0; k < JSCHEMA_MAX_NODES; k++)
        json_array_append_new(en, json_integer(k));
    snprintf(value, sizeof value, "%d", JSCHEMA_MAX_NODES + 1); /* the values and the schema */
    expect_limit(json_pack("{s:o}", "enum", en), "JSCHEMA_MAX_NODES", value);

    /* nodes hidden in $defs and anyOf count too */
    json_t *defs = json_object(), *any = json_array();
    for (int k = 0; k < JSCHEMA_MAX_NODES / 2; k++) {
        char name[32], ref[48];
        snprintf(name, sizeof name, "d%d", k);
        snprintf(ref, sizeof ref, "#/$defs/%s", name);
        json_object_set_new(defs, name, json_pack("{s:s}", "type", "integer"));
        json_array_append_new(any, json_pack("{s:s}", "$ref", ref));
    }
    expect_limit(json_pack("{s:o,s:o}", "$defs", defs, "anyOf", any), "JSCHEMA_MAX_NODES", "10001");

    /* a type listed twice would generate the same properties twice */
    json_t *twice = js("{\"type\":[\"object\",\"object\"],\"properties\":{\"a\":{}}}");
    llmos_buf b = {0};
    assert_int_equal(jschema_to_grammar(twice, NULL, &b), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "listed twice"));
    json_decref(twice);
    buf_free(&b);

    /* at the bound: all required (the required names were once looked up per property) */
    json_t *big = wide_schema(JSCHEMA_MAX_PROPERTIES, true);
    double t0 = cpu_seconds();
    assert_int_equal(jschema_to_grammar(big, NULL, &b), LLMOS_OK);
    grammar *g = NULL;
    assert_int_equal(grammar_parse(b.data, b.len, NULL, &g), LLMOS_OK);
    double dt = cpu_seconds() - t0;
    if (dt > 1.0)
        fail_msg("a schema of %d properties took %.2f s of CPU to compile", JSCHEMA_MAX_PROPERTIES,
                 dt);
    grammar_free(g);
    buf_free(&b);
    json_decref(big);
}

/* Levels of anyOf whose two alternatives refer to the next level: a schema of 2 KB whose check
 * of a mismatching value visits 2^24 branches (11 s of CPU before the check was bounded). */
static void test_check_is_bounded(void **state)
{
    (void)state;
    enum { LEVELS = 24 };
    json_t *defs = json_object();
    for (int k = 0; k < LEVELS; k++) {
        char name[16], next[32];
        snprintf(name, sizeof name, "a%d", k);
        snprintf(next, sizeof next, "#/$defs/a%d", k + 1);
        json_object_set_new(defs, name,
                            json_pack("{s:[{s:s},{s:s}]}", "anyOf", "$ref", next, "$ref", next));
    }
    json_object_set_new(defs, "a24", json_pack("{s:s}", "type", "string"));
    json_t *schema = json_pack("{s:o,s:s}", "$defs", defs, "$ref", "#/$defs/a0");
    json_t *v = json_integer(1);
    double t0 = cpu_seconds();
    assert_int_equal(jschema_validate(schema, v, "args"), LLMOS_ERR_LIMIT);
    double dt = cpu_seconds() - t0;
    assert_non_null(strstr(llmos_errmsg(), "JSCHEMA_MAX_CHECK_STEPS"));
    if (dt > 1.0)
        fail_msg("the bounded check took %.2f s of CPU", dt);
    json_decref(v);
    v = json_string("ok"); /* a matching value is found on the first path */
    assert_int_equal(jschema_validate(schema, v, "args"), LLMOS_OK);
    json_decref(v);
    json_decref(schema);
}

static void test_generic_and_prefix(void **state)
{
    (void)state;
    llmos_buf b = {0};
    assert_int_equal(jschema_grammar_generic(&b), LLMOS_OK);
    grammar *g = NULL;
    assert_int_equal(grammar_parse(b.data, b.len, NULL, &g), LLMOS_OK);
    const char *ok = "{\"a\":[1,2,{\"b\":null}],\"c\":\"\\u00e9\"}";
    assert_true(grammar_matches(g, ok, strlen(ok)));
    assert_false(grammar_matches(g, "{'a':1}", 7));
    grammar_free(g);
    /* "object" as the start rule: json_object mode */
    assert_int_equal(grammar_parse(b.data, b.len, "object", &g), LLMOS_OK);
    assert_false(grammar_matches(g, "[1]", 3));
    assert_true(grammar_matches(g, "{}", 2));
    grammar_free(g);
    buf_free(&b);

    /* two schemas with prefixes in one grammar */
    json_t *s1 = js("{\"type\":\"integer\"}"), *s2 = js("{\"type\":\"string\"}");
    assert_int_equal(buf_puts(&b, "root ::= a-root | b-root\n"), LLMOS_OK);
    assert_int_equal(jschema_to_grammar(s1, "a-", &b), LLMOS_OK);
    assert_int_equal(jschema_to_grammar(s2, "b-", &b), LLMOS_OK);
    assert_int_equal(grammar_parse(b.data, b.len, NULL, &g), LLMOS_OK);
    assert_true(grammar_matches(g, "12", 2));
    assert_true(grammar_matches(g, "\"x\"", 3));
    assert_false(grammar_matches(g, "true", 4));
    grammar_free(g);
    buf_free(&b);
    json_decref(s1);
    json_decref(s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schemas),
        cmocka_unit_test(test_order_and_whitespace),
        cmocka_unit_test(test_validator_messages),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_generic_and_prefix),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_check_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
