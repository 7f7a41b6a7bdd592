/*
 * test_toolcall.c - tool calls: parsing each family's format (good, several, sloppy, broken),
 * the grammars built from a tools array (what they accept and refuse in auto, required and
 * named modes), argument validation, and how much of a reply may be shown while it is being
 * generated (each family, openers split across tokens, openers ruled out, text before a call:
 * what is shown only grows and is always a prefix of the parsed content).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/grammar.h"
#include "llmos/json.h"
#include "llmos/tokenizer.h"
#include "llmos/toolcall.h"
#include "testutil.h"

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"unit\":{\"enum\":[\"c\",\"f\"]}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"}},"
    "\"required\":[\"a\",\"b\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";

static json_t *tools_json(void)
{
    json_t *v = NULL;
    assert_int_equal(ljson_parse_text(TOOLS, strlen(TOOLS), "tools", 0, &v), LLMOS_OK);
    return v;
}

static toolcall_result parse(toolcall_family f, const char *text)
{
    toolcall_result r;
    if (toolcall_parse(f, text, strlen(text), &r) != LLMOS_OK)
        fail_msg("toolcall_parse(%s, %s): %s", toolcall_family_name(f), text, llmos_errmsg());
    assert_non_null(r.content);
    return r;
}

static void parse_bad(toolcall_family f, const char *text, const char *want)
{
    toolcall_result r;
    assert_int_equal(toolcall_parse(f, text, strlen(text), &r), LLMOS_ERR_FORMAT);
    if (!strstr(llmos_errmsg(), want))
        fail_msg("%s: message \"%s\" lacks \"%s\"", text, llmos_errmsg(), want);
    toolcall_result_free(&r);
}

static void test_family_names(void **state)
{
    (void)state;
    toolcall_family f;
    assert_true(toolcall_family_parse("qwen", &f));
    assert_int_equal(f, TOOLCALL_HERMES);
    assert_true(toolcall_family_parse("llama3", &f));
    assert_int_equal(f, TOOLCALL_LLAMA3);
    assert_true(toolcall_family_parse("mistral", &f));
    assert_string_equal(toolcall_family_name(f), "mistral");
    assert_false(toolcall_family_parse("gpt", &f));
}

static void test_parse_hermes(void **state)
{
    (void)state;
    toolcall_result r =
        parse(TOOLCALL_HERMES, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", "
                               "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
                               "<tool_call>\n{\"name\": \"add\", \"arguments\": \"{\\\"a\\\": 1, "
                               "\\\"b\\\": 2}\"}\n</tool_call>");
    assert_string_equal(r.content, "Let me check.");
    assert_int_equal(r.n_calls, 2);
    assert_string_equal(r.calls[0].name, "get_weather");
    assert_string_equal(r.calls[0].arguments, "{\"city\":\"Paris\"}");
    assert_null(r.calls[0].id);
    assert_string_equal(r.calls[1].name, "add");
    assert_string_equal(r.calls[1].arguments, "{\"a\":1,\"b\":2}"); /* string arguments parsed */
    toolcall_result_free(&r);

    r = parse(TOOLCALL_HERMES, "<tool_call>{\"name\":\"now\"}"); /* no close, no arguments */
    assert_int_equal(r.n_calls, 1);
    assert_string_equal(r.calls[0].arguments, "{}");
    assert_string_equal(r.content, "");
    toolcall_result_free(&r);

    r = parse(TOOLCALL_HERMES, "  Just text, {\"name\": \"x\"}  ");
    assert_int_equal(r.n_calls, 0);
    assert_string_equal(r.content, "Just text, {\"name\": \"x\"}");
    toolcall_result_free(&r);

    parse_bad(TOOLCALL_HERMES, "<tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>",
              "tool call 1: invalid JSON");
    parse_bad(TOOLCALL_HERMES, "<tool_call>{\"arguments\": {}}</tool_call>", "missing \"name\"");
    parse_bad(TOOLCALL_HERMES, "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>",
              "\"arguments\" must be an object");
    parse_bad(TOOLCALL_HERMES, "<tool_call>{\"name\": \"a\"} junk</tool_call>",
              "unexpected text at byte 25");
    parse_bad(TOOLCALL_HERMES, "<tool_call>{\"name\":\"a\"}</tool_call><tool_call></tool_call>",
              "tool call 2 (byte 35): empty <tool_call>");
    parse_bad(TOOLCALL_HERMES, "<tool_call>[1]</tool_call>", "expected a JSON object");
}

static void test_parse_llama3(void **state)
{
    (void)state;
    toolcall_result r = parse(TOOLCALL_LLAMA3, "{\"name\": \"add\", \"parameters\": {\"a\": 1, "
                                               "\"b\": 2}}");
    assert_int_equal(r.n_calls, 1);
    assert_string_equal(r.calls[0].name, "add");
    assert_string_equal(r.calls[0].arguments, "{\"a\":1,\"b\":2}");
    assert_string_equal(r.content, "");
    toolcall_result_free(&r);

    r = parse(TOOLCALL_LLAMA3, "<|python_tag|>{\"name\": \"now\", \"parameters\": {}}; "
                               "{\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}");
    assert_int_equal(r.n_calls, 2);
    assert_string_equal(r.calls[1].arguments, "{\"a\":3,\"b\":4}");
    toolcall_result_free(&r);

    /* JSON that is not a call, and plain text, are content */
    r = parse(TOOLCALL_LLAMA3, "{\"answer\": 42}");
    assert_int_equal(r.n_calls, 0);
    assert_string_equal(r.content, "{\"answer\": 42}");
    toolcall_result_free(&r);
    r = parse(TOOLCALL_LLAMA3, "The answer is 42.");
    assert_int_equal(r.n_calls, 0);
    toolcall_result_free(&r);

    parse_bad(TOOLCALL_LLAMA3, "<|python_tag|>{\"name\": \"add\", \"parameters\": {",
              "tool call 1: invalid JSON");
    parse_bad(TOOLCALL_LLAMA3, "{\"name\": \"add\", \"parameters\": {}} and more",
              "unexpected text at byte 34");
    parse_bad(TOOLCALL_LLAMA3, "<|python_tag|>{\"parameters\": {}}", "missing \"name\"");
}

static void test_parse_mistral(void **state)
{
    (void)state;
    toolcall_result r = parse(TOOLCALL_MISTRAL,
                              "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                              "\"Oslo\"}, \"id\": \"abc123XYZ\"}, {\"name\": \"now\", "
                              "\"arguments\": {}}]");
    assert_int_equal(r.n_calls, 2);
    assert_string_equal(r.calls[0].id, "abc123XYZ");
    assert_string_equal(r.calls[0].arguments, "{\"city\":\"Oslo\"}");
    assert_null(r.calls[1].id);
    toolcall_result_free(&r);

    r = parse(TOOLCALL_MISTRAL, "Sure.[TOOL_CALLS]add[ARGS]{\"a\": 1, \"b\": 2}"
                                "[TOOL_CALLS]get_weather[CALL_ID]k9[ARGS]{\"city\": \"Rome\"}");
    assert_string_equal(r.content, "Sure.");
    assert_int_equal(r.n_calls, 2);
    assert_string_equal(r.calls[0].name, "add");
    assert_string_equal(r.calls[0].arguments, "{\"a\":1,\"b\":2}");
    assert_string_equal(r.calls[1].name, "get_weather");
    assert_string_equal(r.calls[1].id, "k9");
    toolcall_result_free(&r);

    r = parse(TOOLCALL_MISTRAL, "No tools needed.");
    assert_int_equal(r.n_calls, 0);
    assert_string_equal(r.content, "No tools needed.");
    toolcall_result_free(&r);

    parse_bad(TOOLCALL_MISTRAL, "[TOOL_CALLS][]", "non-empty array");
    parse_bad(TOOLCALL_MISTRAL, "[TOOL_CALLS][{\"name\":\"a\"}] x", "unexpected text");
    parse_bad(TOOLCALL_MISTRAL, "[TOOL_CALLS]add{\"a\":1}", "expected [{...}] or name[ARGS]");
    parse_bad(TOOLCALL_MISTRAL, "[TOOL_CALLS]a b[ARGS]{}", "is not a function name");
    parse_bad(TOOLCALL_MISTRAL, "[TOOL_CALLS]add[ARGS]{\"a\":", "invalid JSON");
}

/* ---- grammars ---------------------------------------------------------------------------- */

static grammar *tool_grammar(toolcall_family f, toolcall_mode mode, const char *only)
{
    json_t *tools = tools_json();
    llmos_buf b = {0};
    if (toolcall_grammar(tools, f, mode, only, &b) != LLMOS_OK)
        fail_msg("toolcall_grammar: %s", llmos_errmsg());
    grammar *g = NULL;
    if (grammar_parse(b.data, b.len, NULL, &g) != LLMOS_OK)
        fail_msg("tool grammar does not parse: %s\n%s", llmos_errmsg(), b.data);
    buf_free(&b);
    json_decref(tools);
    return g;
}

static void expect(grammar *g, const char *s, bool want)
{
    if (grammar_matches(g, s, strlen(s)) != want)
        fail_msg("\"%s\" should %s", s, want ? "match" : "not match");
}

static void test_grammars(void **state)
{
    (void)state;
    grammar *g = tool_grammar(TOOLCALL_HERMES, TOOLCALL_AUTO, NULL);
    expect(g,
           "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
           "</tool_call>",
           true);
    expect(g,
           "<tool_call>{\"name\":\"add\",\"arguments\":{\"a\":1,\"b\":2}}</tool_call>\n"
           "<tool_call>{\"name\":\"now\",\"arguments\":{}}</tool_call>",
           true);
    expect(g, "Hello there!", true);
    expect(g, "", true);
    expect(g, "<tool_call>{\"name\":\"add\",\"arguments\":{\"a\":1}}</tool_call>", false);
    expect(g, "<tool_call>{\"name\":\"sub\",\"arguments\":{}}</tool_call>", false);
    expect(g,
           "<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"x\","
           "\"unit\":\"k\"}}</tool_call>",
           false);
    expect(g, "<b>bold</b>", false); /* a reply starting with '<' must be a call */
    grammar_free(g);

    g = tool_grammar(TOOLCALL_HERMES, TOOLCALL_REQUIRED, NULL);
    expect(g, "Hello there!", false);
    expect(g, "", false);
    expect(g, "<tool_call>{\"name\":\"now\",\"arguments\":{}}</tool_call>", true);
    grammar_free(g);

    g = tool_grammar(TOOLCALL_LLAMA3, TOOLCALL_REQUIRED, "add");
    expect(g, "{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": -2}}", true);
    expect(g, "<|python_tag|>{\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": 2}}", true);
    expect(g, "{\"name\": \"now\", \"parameters\": {}}", false); /* only "add" */
    expect(g, "{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}", false);
    grammar_free(g);

    g = tool_grammar(TOOLCALL_MISTRAL, TOOLCALL_AUTO, NULL);
    expect(g,
           "[TOOL_CALLS][{\"name\": \"now\", \"arguments\": {}}, {\"name\": \"add\", "
           "\"arguments\": {\"a\": 1, \"b\": 2}}]",
           true);
    expect(g, "Plain answer.", true);
    expect(g, "[TOOL_CALLS][]", false);
    expect(g, "[1, 2]", false);
    grammar_free(g);

    /* errors */
    json_t *tools = tools_json();
    llmos_buf b = {0};
    assert_int_equal(toolcall_grammar(tools, TOOLCALL_HERMES, TOOLCALL_REQUIRED, "nope", &b),
                     LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "'nope'"));
    json_t *empty = json_array();
    assert_int_equal(toolcall_grammar(empty, TOOLCALL_HERMES, TOOLCALL_AUTO, NULL, &b),
                     LLMOS_ERR_INVALID);
    json_t *bad = NULL;
    const char *bad_text = "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                           "{\"type\":\"tuple\"}}}]";
    assert_int_equal(ljson_parse_text(bad_text, strlen(bad_text), "t", 0, &bad), LLMOS_OK);
    assert_int_equal(toolcall_grammar(bad, TOOLCALL_HERMES, TOOLCALL_AUTO, NULL, &b),
                     LLMOS_ERR_UNSUPPORTED);
    assert_non_null(strstr(llmos_errmsg(), "tools[0] (f) parameters"));
    json_decref(bad);
    json_decref(empty);
    json_decref(tools);
    buf_free(&b);
}

/* n tools tool_0 .. tool_{n-1}, each with `props` string parameters. */
static json_t *many_tools(size_t n, size_t props)
{
    json_t *tools = json_array();
    for (size_t k = 0; k < n; k++) {
        json_t *p = json_object();
        for (size_t j = 0; j < props; j++) {
            char name[32];
            snprintf(name, sizeof name, "a%zu", j);
            json_object_set_new(p, name, json_pack("{s:s}", "type", "string"));
        }
        char name[32];
        snprintf(name, sizeof name, "tool_%zu", k);
        json_array_append_new(tools, json_pack("{s:s,s:{s:s,s:{s:s,s:o}}}", "type", "function",
                                               "function", "name", name, "parameters", "type",
                                               "object", "properties", p));
    }
    return tools;
}

static void expect_tools_limit(json_t *tools, const char *bound, const char *value)
{
    llmos_buf b = {0};
    assert_int_equal(toolcall_grammar(tools, TOOLCALL_HERMES, TOOLCALL_AUTO, NULL, &b),
                     LLMOS_ERR_LIMIT);
    if (!strstr(llmos_errmsg(), bound) || !strstr(llmos_errmsg(), value))
        fail_msg("message \"%s\" should name %s and %s", llmos_errmsg(), bound, value);
    buf_free(&b);
    json_decref(tools);
}

/* The tools of a request are bounded before their grammar is built (3,000 tools once took
 * 13-17 s to compile, holding the model), and the JSON primitives (ws, string, number, ...)
 * appear once in the grammar, not once per tool. */
static void test_tool_limits(void **state)
{
    (void)state;
    char value[32];
    snprintf(value, sizeof value, "%d", TOOLCALL_MAX_TOOLS + 1);
    expect_tools_limit(many_tools(TOOLCALL_MAX_TOOLS + 1, 1), "TOOLCALL_MAX_TOOLS", value);
    expect_tools_limit(many_tools(3000, 1), "TOOLCALL_MAX_TOOLS", "3000");
    /* 100 tools of 100 parameters: 100 x (1 + 100) nodes */
    expect_tools_limit(many_tools(100, 100), "TOOLCALL_MAX_SCHEMA_NODES", "10100");

    json_t *tools = many_tools(TOOLCALL_MAX_TOOLS, 2);
    llmos_buf b = {0};
    assert_int_equal(toolcall_grammar(tools, TOOLCALL_HERMES, TOOLCALL_AUTO, NULL, &b), LLMOS_OK);
    grammar *g = NULL;
    assert_int_equal(grammar_parse(b.data, b.len, NULL, &g), LLMOS_OK);
    if (grammar_n_rules(g) > 20 * TOOLCALL_MAX_TOOLS)
        fail_msg("%zu rules for %d tools of 2 parameters: are the primitives repeated per tool?",
                 grammar_n_rules(g), TOOLCALL_MAX_TOOLS);
    const char *call = "<tool_call>{\"name\": \"tool_127\", \"arguments\": {\"a0\": \"x\", "
                       "\"a1\": \"y\"}}</tool_call>";
    expect(g, call, true);
    grammar_free(g);
    buf_free(&b);
    json_decref(tools);
}

static void test_validate(void **state)
{
    (void)state;
    json_t *tools = tools_json();
    toolcall c = {"get_weather", "{\"city\": \"Oslo\", \"unit\": \"c\"}", NULL};
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_OK);
    c.arguments = "{\"city\": 5}";
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "tool 'get_weather' arguments: $.city: expected "
                                           "string, found integer"));
    c.arguments = "{\"unit\": \"c\"}";
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "missing required property 'city'"));
    c.arguments = "{\"city\": \"x\", \"when\": 1}";
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "unknown property 'when'"));
    c.arguments = "{not json";
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_ERR_INVALID);
    c = (toolcall){"delete_everything", "{}", NULL};
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "(get_weather, add, now)"));
    c = (toolcall){"now", "{}", NULL};
    assert_int_equal(toolcall_validate(tools, &c), LLMOS_OK);
    json_decref(tools);
}

/* Generation simulated with the real Qwen2 tokenizer: a Hermes reply's own tokens are allowed
 * at every step by the tool grammar, the end token only at the end, and the parsed calls
 * validate. A wrong argument type is refused at the token that introduces it. */
static void test_grammar_walk_qwen2(void **state)
{
    (void)state;
    char path[1024];
    tu_testdata_path(path, sizeof path, "vocab/ggml-vocab-qwen2.gguf");
    tokenizer *t = NULL;
    assert_int_equal(tok_load_file(path, &t), LLMOS_OK);
    grammar_vocab *v = NULL;
    assert_int_equal(grammar_vocab_new(t, &v), LLMOS_OK);
    grammar *g = tool_grammar(TOOLCALL_HERMES, TOOLCALL_AUTO, NULL);
    const char *reply = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                        "\"S\xc3\xa3o Paulo\", \"unit\": \"c\"}}\n</tool_call>\n<tool_call>\n"
                        "{\"name\": \"add\", \"arguments\": {\"a\": 12, \"b\": -7}}\n</tool_call>";
    int32_t *ids = NULL;
    size_t n_ids = 0;
    assert_int_equal(tok_encode(t, reply, strlen(reply), TOK_PARSE_SPECIAL, &ids, &n_ids),
                     LLMOS_OK);
    size_t n = grammar_vocab_size(v);
    uint8_t *bits = malloc((n + 7) / 8);
    assert_non_null(bits);
    int32_t eos = tok_find(t, "<|im_end|>", 10);
    assert_true(eos >= 0 && tok_is_eog(t, eos));
    for (size_t k = 0; k <= n_ids; k++) {
        assert_true(grammar_allowed(g, v, bits, n) > 0);
        bool eos_ok = (bits[eos / 8] >> (eos % 8)) & 1;
        assert_true(eos_ok == grammar_accepting(g));
        if (k == 1 || k == n_ids - 1)
            assert_false(eos_ok); /* inside a call */
        if (k == n_ids)
            assert_true(eos_ok);
        if (k == n_ids)
            break;
        if (!((bits[ids[k] / 8] >> (ids[k] % 8)) & 1))
            fail_msg("token %zu (id %d) of the reply is masked out", k, ids[k]);
        assert_int_equal(grammar_accept(g, v, ids[k]), LLMOS_OK);
    }
    toolcall_result r;
    assert_int_equal(toolcall_parse(TOOLCALL_HERMES, reply, strlen(reply), &r), LLMOS_OK);
    assert_int_equal(r.n_calls, 2);
    json_t *tools = tools_json();
    for (size_t k = 0; k < r.n_calls; k++)
        assert_int_equal(toolcall_validate(tools, &r.calls[k]), LLMOS_OK);
    toolcall_result_free(&r);

    /* a string where the schema wants an integer: the quote is refused */
    grammar_reset(g);
    const char *bad = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": ";
    assert_int_equal(grammar_accept_bytes(g, bad, strlen(bad)), LLMOS_OK);
    int32_t quote = tok_find(t, "\"", 1);
    assert_true(quote >= 0);
    grammar_allowed(g, v, bits, n);
    assert_false((bits[quote / 8] >> (quote % 8)) & 1);
    int32_t one = tok_find(t, "1", 1);
    assert_true((bits[one / 8] >> (one % 8)) & 1);

    json_decref(tools);
    free(bits);
    free(ids);
    grammar_free(g);
    grammar_vocab_free(v);
    tok_free(t);
}

/* ---- what may be shown while a reply is generated -------------------------------------- */

/* The span of text[0..len) must be begin..end, with `call` as given. */
static void span_is(toolcall_family f, const char *text, size_t begin, size_t end, bool call)
{
    toolcall_span sp = toolcall_answer_span(f, text, strlen(text));
    if (sp.begin != begin || sp.end != end || sp.call != call)
        fail_msg("%s \"%s\": span [%zu, %zu) call %d, expected [%zu, %zu) call %d",
                 toolcall_family_name(f), text, sp.begin, sp.end, (int)sp.call, begin, end,
                 (int)call);
}

/* Generate `reply` one piece at a time (the pieces are its tokens, "~" between them), showing
 * what toolcall_answer_span allows after each piece as a streaming loop does; check that
 * what is shown only grows, never holds an opener, and is a prefix of the content the
 * finished reply parses to; return what was shown (to free). */
static char *stream_reply(toolcall_family f, const char *pieces, const char *opener)
{
    llmos_buf text = {0}, shown = {0};
    size_t last_end = 0;
    for (const char *p = pieces; *p;) {
        const char *bar = strchr(p, '~');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        assert_int_equal(buf_append(&text, p, n), LLMOS_OK);
        p += n + (bar != NULL);
        toolcall_span sp = toolcall_answer_span(f, text.data, text.len);
        assert_true(sp.begin <= sp.end && sp.end <= text.len);
        if (sp.end > sp.begin) {
            assert_true(sp.end >= last_end);
            size_t from = shown.len ? last_end : sp.begin;
            assert_int_equal(buf_append(&shown, text.data + from, sp.end - from), LLMOS_OK);
            last_end = sp.end;
        }
    }
    toolcall_result r = parse(f, text.data);
    const char *sh = shown.data ? shown.data : "";
    if (shown.len > strlen(r.content) || memcmp(r.content, sh, shown.len) != 0)
        fail_msg("%s: shown \"%s\" is not a prefix of the content \"%s\"", pieces, sh, r.content);
    assert_null(strstr(sh, opener));
    toolcall_result_free(&r);
    buf_free(&text);
    if (!shown.data)
        return strdup("");
    return buf_detach(&shown, NULL);
}

static void expect_stream(toolcall_family f, const char *pieces, const char *opener,
                          const char *want)
{
    char *got = stream_reply(f, pieces, opener);
    assert_string_equal(got, want);
    free(got);
}

static void test_span_hermes(void **state)
{
    (void)state;
    const toolcall_family H = TOOLCALL_HERMES;
    span_is(H, "", 0, 0, false);
    span_is(H, "Hello", 0, 5, false);
    span_is(H, "  \n Hi there \n", 4, 12, false); /* white space at both ends waits */
    span_is(H, "Hello <tool", 0, 5, false);       /* may become a call */
    span_is(H, "Hello <tool_call>\n{\"name\"", 0, 5, true);
    span_is(H, "<tool_call>{\"name\": \"now\"}", 0, 0, true);
    span_is(H, "\n<tool_c", 1, 1, false);
    span_is(H, "a < b", 0, 5, false);        /* '<' followed by text is no opener */
    span_is(H, "x <tool_call", 0, 1, false); /* one character short */

    /* an opener split across tokens: nothing of it shows, and neither does the call */
    expect_stream(H, "<~tool~_c~all~>~\n{\"name\": ~\"now\"}~\n</tool_call>", "<tool_call>", "");
    /* a '<' that turns out not to open a call is shown once that is clear */
    expect_stream(H, "<~b~>~ bold~ text", "<tool_call>", "<b> bold text");
    expect_stream(H, "1 <~ 2", "<tool_call>", "1 < 2");
    /* text before a call streams; the call does not; neither does the space before it */
    expect_stream(H,
                  "Let~ me~ check~.~\n~<tool_call>~\n{\"name\": \"get_weather\", "
                  "\"arguments\": {\"city\": \"Paris\"}}~\n</tool_call>",
                  "<tool_call>", "Let me check.");
    expect_stream(H, " ~\n~Hi~  ~there~ ", "<tool_call>", "Hi  there");
}

static void test_span_llama3(void **state)
{
    (void)state;
    const toolcall_family L = TOOLCALL_LLAMA3;
    span_is(L, "{", 0, 0, true); /* a reply that opens with an object is held to the end */
    span_is(L, "  {\"name\": \"now\"", 2, 2, true);
    span_is(L, "<|python", 0, 0, false);
    span_is(L, "<|python_tag|>{\"name\"", 0, 0, true);
    span_is(L, "Sure {x}", 0, 8, false); /* a brace later in text is text */
    span_is(L, "Hi <|python_t", 0, 2, false);
    span_is(L, "Hi <|python_tag|>{", 0, 2, true);

    expect_stream(L, "{\"name\": ~\"now\", ~\"parameters\": {}}", "<|python_tag|>", "");
    expect_stream(L, "<|python_tag|>~{\"name\": \"now\", \"parameters\": {}}", "<|python_tag|>",
                  "");
    expect_stream(L, "<|~py~thon_~tag|>~{\"name\": \"now\", \"parameters\": {}}", "<|python_tag|>",
                  "");
    expect_stream(L, "<~b>~ is~ bold", "<|python_tag|>", "<b> is bold");
    expect_stream(L, "The~ answer~ is~ 4~.", "<|python_tag|>", "The answer is 4.");
}

static void test_span_mistral(void **state)
{
    (void)state;
    const toolcall_family M = TOOLCALL_MISTRAL;
    span_is(M, "[TOOL", 0, 0, false);
    span_is(M, "[TOOL_CALLS][{\"name\"", 0, 0, true);
    span_is(M, "[1] item", 0, 8, false);
    span_is(M, "Hi [TOOL_CALLS]now[ARGS]{}", 0, 2, true);

    expect_stream(M, "[TOOL_CALLS]~[{\"name\": \"now\", ~\"arguments\": {}}]", "[TOOL_CALLS]", "");
    expect_stream(M, "[~TOOL~_CALLS~]~now~[ARGS]~{}", "[TOOL_CALLS]", "");
    expect_stream(M, "[~1~]~ first", "[TOOL_CALLS]", "[1] first");
    expect_stream(M, "Calling~.~ ~[TOOL_CALLS]~[{\"name\": \"now\", \"arguments\": {}}]",
                  "[TOOL_CALLS]", "Calling.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_names), cmocka_unit_test(test_parse_hermes),
        cmocka_unit_test(test_parse_llama3), cmocka_unit_test(test_parse_mistral),
        cmocka_unit_test(test_grammars),     cmocka_unit_test(test_tool_limits),
        cmocka_unit_test(test_validate),     cmocka_unit_test(test_grammar_walk_qwen2),
        cmocka_unit_test(test_span_hermes),  cmocka_unit_test(test_span_llama3),
        cmocka_unit_test(test_span_mistral),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
