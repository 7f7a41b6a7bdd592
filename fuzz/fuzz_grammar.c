/*
 * fuzz_grammar.c - fuzz the grammar engine and the tool-call parser.
 *
 * The first byte picks what the rest is:
 *   0  GBNF text: parse it; when it parses, match the text itself and a few fixed strings,
 *      byte by byte and at once (the two must agree), and mask a small vocabulary (every
 *      allowed token must be accepted, every refused one refused);
 *   1  a string matched against a fixed JSON grammar, whole and split at every third byte
 *      (the verdicts must agree);
 *   2  model output parsed as tool calls of each family; calls found are validated against a
 *      fixed tools array, and what toolcall_answer_span lets a stream show of every prefix of
 *      the output must only grow and be the start of the parsed content.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/grammar.h"
#include "llmos/json.h"
#include "llmos/toolcall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *PIECES[] = {"a", "b", "ab",   "{",    "}",           "\"",
                               " ", "1", "\xc3", "\xa9", "\xc3\xa9",    "[",
                               "]", ",", ":",    "x\n",  "<tool_call>", "null"};

static void check_grammar(grammar *g, const char *s, size_t n)
{
    grammar_reset(g);
    llmos_err whole = grammar_accept_bytes(g, s, n);
    bool whole_ok = whole == LLMOS_OK && grammar_accepting(g);
    if (grammar_matches(g, s, n) != whole_ok && whole != LLMOS_ERR_LIMIT)
        abort(); /* grammar_matches and grammar_accept_bytes disagree */
    grammar_reset(g);
    llmos_err err = LLMOS_OK;
    for (size_t k = 0; k < n && !err; k += 3)
        err = grammar_accept_bytes(g, s + k, n - k < 3 ? n - k : 3);
    if (whole == LLMOS_ERR_LIMIT || err == LLMOS_ERR_LIMIT || whole == LLMOS_ERR_NOMEM ||
        err == LLMOS_ERR_NOMEM)
        return; /* too ambiguous: both may stop at different points */
    if ((err == LLMOS_OK) != (whole == LLMOS_OK) || (!err && grammar_accepting(g) != whole_ok))
        abort(); /* incremental and whole matching disagree */
}

static void mode_gbnf(const char *s, size_t n)
{
    grammar *g = NULL;
    if (grammar_parse(s, n, NULL, &g) != LLMOS_OK)
        return;
    check_grammar(g, s, n);
    const char *probes[] = {"", "a", "ab", "{\"a\":1}", "\xc3\xa9", "xyz"};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(probes); k++)
        check_grammar(g, probes[k], strlen(probes[k]));
    size_t lens[LLMOS_ARRAY_LEN(PIECES)];
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(PIECES); k++)
        lens[k] = strlen(PIECES[k]);
    grammar_vocab *v = NULL;
    if (grammar_vocab_from_pieces(LLMOS_ARRAY_LEN(PIECES), PIECES, lens, NULL, &v) == LLMOS_OK) {
        grammar_reset(g);
        uint8_t bits[8] = {0};
        grammar_allowed(g, v, bits, LLMOS_ARRAY_LEN(PIECES));
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(PIECES); k++) {
            grammar_reset(g);
            llmos_err err = grammar_accept_bytes(g, PIECES[k], lens[k]);
            if (err != LLMOS_ERR_LIMIT && err != LLMOS_ERR_NOMEM &&
                (err == LLMOS_OK) != (bool)((bits[k / 8] >> (k % 8)) & 1))
                abort(); /* the mask disagrees with matching */
        }
        grammar_vocab_free(v);
    }
    grammar_free(g);
}

static void mode_json(const char *s, size_t n)
{
    static grammar *g;
    if (!g) {
        llmos_buf b = {0};
        if (jschema_grammar_generic(&b) || grammar_parse(b.data, b.len, NULL, &g))
            abort();
        buf_free(&b);
    }
    check_grammar(g, s, n);
}

/* As the reply s[0..n) grows byte by byte, the answer span may only grow, and what it shows
 * must be the start of the content the whole reply parses to. */
static void check_answer_spans(toolcall_family f, const char *s, size_t n, const char *content)
{
    size_t shown_end = 0, content_len = strlen(content);
    for (size_t k = 0; k <= n; k++) {
        toolcall_span sp = toolcall_answer_span(f, s, k);
        if (sp.begin > sp.end || sp.end > k)
            abort();
        if (sp.end == sp.begin)
            continue;
        if (sp.end < shown_end || sp.end - sp.begin > content_len ||
            memcmp(content, s + sp.begin, sp.end - sp.begin) != 0)
            abort(); /* a stream would have shown text that is not the content */
        shown_end = sp.end;
    }
}

static void mode_tools(const char *s, size_t n)
{
    static const char *tools_text =
        "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"array\","
        "\"items\":{\"type\":\"string\",\"maxLength\":3}}},\"required\":[\"a\"]}}}]";
    json_t *tools = NULL;
    if (ljson_parse_text(tools_text, strlen(tools_text), "tools", 0, &tools))
        abort();
    for (int f = TOOLCALL_HERMES; f <= TOOLCALL_MISTRAL; f++) {
        toolcall_result r;
        if (toolcall_parse((toolcall_family)f, s, n, &r) == LLMOS_OK) {
            if (!r.content)
                abort();
            for (size_t k = 0; k < r.n_calls; k++)
                if (toolcall_validate(tools, &r.calls[k]) != LLMOS_OK)
                    llmos_err_clear();
            if (!memchr(s, 0, n)) /* (content is a C string) */
                check_answer_spans((toolcall_family)f, s, n, r.content);
        }
        toolcall_result_free(&r);
    }
    json_decref(tools);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: mode_gbnf(s, n); break;
    case 1: mode_json(s, n); break;
    default: mode_tools(s, n); break;
    }
    return 0;
}
