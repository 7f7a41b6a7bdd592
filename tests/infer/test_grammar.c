/*
 * test_grammar.c - GBNF parsing, string acceptance, and token masks on a hand-made and on the
 * real Qwen2 vocabulary.
 *
 * Parsing: every construct of the notation, and bad grammars whose errors must name the line
 * and column (syntax, undefined rules, left recursion). Matching: sentences in and out of a
 * grammar, UTF-8 classes split across bytes. Masks: with a tiny vocabulary the allowed set is
 * checked token by token against brute force (a token is allowed iff the state after its
 * bytes is alive); with Qwen2's 151,936 tokens and Llama 3's 128,256, a JSON document's own
 * tokenization must be allowed at every step, every allowed token must keep the text a viable
 * prefix, and at a few states every token's verdict must equal brute force.
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
#include <math.h>

#include "llmos/grammar.h"
#include "llmos/tokenizer.h"
#include "testutil.h"

static const char *JSON_GBNF =
    "# JSON, as in the grammar docs\n"
    "root   ::= ws value ws\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\")\n"
    "object ::=\n"
    "  \"{\" ws ( string ws \":\" ws value ws (\",\" ws string ws \":\" ws value ws)* )? \"}\"\n"
    "array  ::= \"[\" ws ( value ws (\",\" ws value ws)* )? \"]\"\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) "
    ")* \"\\\"\"\n"
    "number ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15}) (\".\" [0-9]+)? ([eE] [-+]? [0-9]+)?\n"
    "ws     ::= [ \\t\\n]{0,20}\n";

static grammar *parse_ok(const char *text)
{
    grammar *g = NULL;
    if (grammar_parse(text, strlen(text), NULL, &g) != LLMOS_OK)
        fail_msg("grammar_parse failed: %s\n--- grammar:\n%s", llmos_errmsg(), text);
    assert_non_null(g);
    return g;
}

/* The grammar must fail to parse with a message containing `want`. */
static void parse_bad(const char *text, llmos_err code, const char *want)
{
    grammar *g = NULL;
    llmos_err err = grammar_parse(text, strlen(text), NULL, &g);
    if (err == LLMOS_OK)
        fail_msg("grammar parsed but should not:\n%s", text);
    assert_null(g);
    if (err != code)
        fail_msg("grammar:\n%s\nerror code %d, want %d (%s)", text, err, code, llmos_errmsg());
    if (!strstr(llmos_errmsg(), want))
        fail_msg("error \"%s\" does not contain \"%s\"", llmos_errmsg(), want);
}

static bool matches(grammar *g, const char *s)
{
    return grammar_matches(g, s, strlen(s));
}

static void expect_match(grammar *g, const char *s, bool want)
{
    if (matches(g, s) != want)
        fail_msg("\"%s\" should %s the grammar", s, want ? "match" : "not match");
}

/* ---- parsing --------------------------------------------------------------------------------- */

static void test_constructs(void **state)
{
    (void)state;
    grammar *g = parse_ok("root ::= \"a\" b* c+ d? e{2} f{1,3} g{2,} (\"x\" | \"y\")\n"
                          "b ::= \"b\"\nc ::= \"c\"\nd ::= \"d\"\ne ::= \"e\"\nf ::= \"f\"\n"
                          "g ::= \"g\"\n");
    expect_match(g, "acceeffggx", true);
    expect_match(g, "abbbcccdeefffgggggy", true);
    expect_match(g, "aceefggx", true);
    expect_match(g, "aeefggx", false);     /* c+ needs one */
    expect_match(g, "aceffggx", false);    /* e{2} */
    expect_match(g, "aceeffffggx", false); /* f{1,3} */
    expect_match(g, "aceefgx", false);     /* g{2,} */
    expect_match(g, "aceefggz", false);
    expect_match(g, "aceefgg", false); /* a prefix is not a sentence */
    grammar_free(g);

    g = parse_ok("root ::= [a-c] [^a-c] . [\\x41-\\x43] \"\\u00e9\" [\\n\\t] \"\\\"\\\\\" [\\]]\n");
    expect_match(g, "adZB\xc3\xa9\n\"\\]", true);
    expect_match(g, "aaZB\xc3\xa9\n\"\\]", false);
    expect_match(g,
                 "ad\xe2\x82\xac"
                 "C\xc3\xa9\t\"\\]",
                 true); /* '.' takes a 3-byte char */
    expect_match(g, "adZD\xc3\xa9\n\"\\]", false);
    grammar_free(g);

    /* comments, newlines inside groups, alternatives continued on the next line */
    g = parse_ok("# a comment\nroot ::= ( \"a\" # inside\n  | \"b\" )\n   | \"c\"  # end\n\n"
                 "unused ::= \"z\"\n");
    expect_match(g, "a", true);
    expect_match(g, "b", true);
    expect_match(g, "c", true);
    expect_match(g, "z", false);
    grammar_free(g);

    /* empty alternatives and a rule used before its definition */
    g = parse_ok("root ::= x \"!\"\nx ::= | \"x\" x\n");
    expect_match(g, "!", true);
    expect_match(g, "xxxx!", true);
    expect_match(g, "xx", false);
    grammar_free(g);

    /* a literal repeated as a whole */
    g = parse_ok("root ::= \"ab\"{2}\n");
    expect_match(g, "abab", true);
    expect_match(g, "abb", false);
    grammar_free(g);

    /* another start rule */
    grammar *g2 = NULL;
    const char *two = "root ::= \"r\"\nother ::= \"o\"\n";
    assert_int_equal(grammar_parse(two, strlen(two), "other", &g2), LLMOS_OK);
    expect_match(g2, "o", true);
    expect_match(g2, "r", false);
    grammar_free(g2);
    grammar_free(NULL);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_bad("root ::= \"a\"\nroot2 ::= \"b\" \"c\n", LLMOS_ERR_FORMAT,
              "line 2, column 15: string literal not closed");
    parse_bad("root ::= [a-z\n", LLMOS_ERR_FORMAT, "line 1, column 10: character class");
    parse_bad("root ::= \"a\"\n  x ::= \"b\" )\n", LLMOS_ERR_FORMAT,
              "line 2, column 13: unexpected ')'");
    parse_bad("root ::= foo\n", LLMOS_ERR_FORMAT,
              "line 1, column 10: rule 'foo' is used but never defined");
    parse_bad("root ::= \"a\"\nroot ::= \"b\"\n", LLMOS_ERR_FORMAT,
              "line 2, column 1: rule 'root' is defined twice");
    parse_bad("start ::= \"a\"\n", LLMOS_ERR_FORMAT, "no rule named 'root'");
    parse_bad("root ::= \"a\" \nexpr ::= expr \"+\" \"1\" | \"1\"\n", LLMOS_ERR_FORMAT,
              "line 2, column 1: left recursion: rule 'expr'");
    parse_bad("root ::= a\na ::= b? a \"x\"\nb ::= \"b\"\n", LLMOS_ERR_FORMAT, "left recursion");
    parse_bad("root ::= a\na ::= (c | \"q\") \"x\"\nc ::= d\nd ::= \"\" a\n", LLMOS_ERR_FORMAT,
              "left recursion");
    parse_bad("root ::= * \"a\"\n", LLMOS_ERR_FORMAT, "line 1, column 10: '*' has nothing");
    parse_bad("root ::= \"a\"{3,2}\n", LLMOS_ERR_FORMAT, "maximum is below the minimum");
    parse_bad("root ::= \"a\"{3\n", LLMOS_ERR_FORMAT, "expected '}'");
    parse_bad("root ::= \"a\"{99999}\n", LLMOS_ERR_LIMIT, "repetition count above");
    parse_bad("root = \"a\"\n", LLMOS_ERR_FORMAT, "line 1, column 6: expected '::='");
    parse_bad("root ::= (\"a\"\n", LLMOS_ERR_FORMAT, "expected ')'");
    parse_bad("root ::= \"\\q\"\n", LLMOS_ERR_FORMAT, "line 1, column 11: unknown escape");
    parse_bad("root ::= [z-a]\n", LLMOS_ERR_FORMAT, "backwards");
    parse_bad("root ::= \"\\u12\"\n", LLMOS_ERR_FORMAT, "expected 4 hex digits");
    parse_bad("root ::= \"a\" @\n", LLMOS_ERR_FORMAT, "unexpected '@'");
    parse_bad("root ::= (((\"a\")))))))\n", LLMOS_ERR_FORMAT, "unexpected ')'");
    char big[300];
    snprintf(big, sizeof big, "root ::= \"%0120d\"{10000}\n", 0);
    parse_bad(big, LLMOS_ERR_LIMIT, "grammar too large");
    /* nested repetition of a group copies a reference, not the group: this one is small */
    grammar *g = parse_ok("root ::= (((\"a\"{100}){100}){100})\n");
    grammar_free(g);
    parse_bad("root ::= \"\xff\"\n", LLMOS_ERR_FORMAT, "invalid UTF-8");
    char deep[1200];
    size_t n = 0;
    n += (size_t)sprintf(deep, "root ::= ");
    for (int k = 0; k < 300; k++)
        deep[n++] = '(';
    deep[n] = 0;
    parse_bad(deep, LLMOS_ERR_LIMIT, "nested more than");
}

/* ---- matching -------------------------------------------------------------------------------- */

static void test_json_strings(void **state)
{
    (void)state;
    grammar *g = parse_ok(JSON_GBNF);
    const char *good[] = {
        "{}",
        " [1, 2.5, -3e+7, true, false, null]\n",
        "{\"a\": {\"b\": [\"x\\n\\u00e9\", {}]}, \"c\": \"\xe4\xb8\xad\xf0\x9f\x98\x80\"}",
        "\"\"",
        "0",
        "-0.5E-3"};
    const char *bad[] = {"{",
                         "[1,]",
                         "{\"a\" 1}",
                         "01",
                         "\"\x01\"",
                         "\"\\x\"",
                         "tru",
                         "[1 2]",
                         "\"\xc3\"",
                         "\"\xc0\xaf\"",
                         "\"\xed\xa0\x80\"",
                         "\"\xf4\x90\x80\x80\"",
                         "{} {}",
                         "1                         "};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(good); k++)
        expect_match(g, good[k], true);
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(bad); k++)
        expect_match(g, bad[k], false);

    /* incremental acceptance, with a character split across calls */
    grammar_reset(g);
    assert_int_equal(grammar_accept_bytes(g, "{\"k\": \"\xe4", 8), LLMOS_OK);
    assert_false(grammar_accepting(g));
    assert_int_equal(grammar_accept_bytes(g, "\xb8", 1), LLMOS_OK);
    assert_int_equal(grammar_accept_bytes(g, "\xad\"", 2), LLMOS_OK);
    assert_int_equal(grammar_accept_bytes(g, "}", 1), LLMOS_OK);
    assert_true(grammar_accepting(g));
    assert_false(grammar_done(g)); /* trailing whitespace may follow */
    /* a wrong byte is refused and the state is kept */
    assert_int_equal(grammar_accept_bytes(g, " x", 2), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "byte 1"));
    assert_true(grammar_accepting(g));
    grammar_free(g);

    g = parse_ok("root ::= \"yes\" | \"no\"\n");
    assert_int_equal(grammar_accept_bytes(g, "no", 2), LLMOS_OK);
    assert_true(grammar_done(g));
    grammar_reset(g);
    assert_false(grammar_accepting(g));
    assert_false(grammar_done(g));
    grammar_free(g);
}

static void test_unicode_classes(void **state)
{
    (void)state;
    /* only Cyrillic and CJK letters; a lead byte must be refused as soon as no character
     * starting with it can match */
    grammar *g = parse_ok("root ::= [\\u0400-\\u04FF\\u4e00-\\u9fff]+\n");
    expect_match(g, "\xd0\x96\xe4\xb8\xad", true);
    expect_match(g, "a", false);
    assert_int_equal(grammar_accept_bytes(g, "\xc3", 1), LLMOS_ERR_INVALID); /* U+00C0.. */
    assert_int_equal(grammar_accept_bytes(g, "\xd0", 1), LLMOS_OK);
    assert_false(grammar_accepting(g)); /* in the middle of a character */
    assert_int_equal(grammar_accept_bytes(g, "\x96", 1), LLMOS_OK);
    assert_true(grammar_accepting(g));
    assert_int_equal(grammar_accept_bytes(g, "\xe4\xb8", 2), LLMOS_OK);
    assert_int_equal(grammar_accept_bytes(g, "\xe3", 1), LLMOS_ERR_INVALID); /* mid-char */
    grammar_free(g);

    g = parse_ok("root ::= [^a]*\n");
    expect_match(g, "\xf0\x9f\x98\x80z", true);
    expect_match(g, "\xf0\x9f\x98", false); /* incomplete at the end */
    expect_match(g, "\x80", false);
    expect_match(g, "\xe0\x80\x80", false); /* overlong */
    grammar_free(g);
}

static void test_ambiguity_and_nesting(void **state)
{
    (void)state;
    /* exponential ambiguity must stay cheap: the state is a set of distinct stacks */
    grammar *g = parse_ok("root ::= a a a a a a a a a a a a a a a a\n"
                          "a ::= (\"x\" | \"x\" | [x] | \"\")\n");
    expect_match(g, "xxxxxxxx", true);
    expect_match(g, "xxxxxxxxxxxxxxxx", true);
    expect_match(g, "xxxxxxxxxxxxxxxxx", false);
    grammar_free(g);

    /* deep nesting through right recursion and real recursion */
    g = parse_ok("root ::= v\nv ::= \"[\" v? \"]\"\n");
    char buf[4002];
    for (int k = 0; k < 2000; k++) {
        buf[k] = '[';
        buf[2000 + k] = ']';
    }
    buf[4000] = 0;
    expect_match(g, buf, true);
    buf[3999] = '[';
    expect_match(g, buf, false);
    grammar_free(g);

    /* a long run through a star keeps the matcher small (compaction is not needed) */
    g = parse_ok("root ::= [a-z]* \".\"\n");
    grammar_reset(g);
    for (int k = 0; k < 100000; k++)
        assert_int_equal(grammar_accept_bytes(g, "abc", 3), LLMOS_OK);
    assert_int_equal(grammar_accept_bytes(g, ".", 1), LLMOS_OK);
    assert_true(grammar_done(g));
    grammar_free(g);
}

/* Many distinct states (each nesting depth is one): the caches pass their limits and are
 * rebuilt from the current state, which must not change what is accepted. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Parsing is linear in the grammar's size. A chain of 50,000 rules, each defined before the
 * rule it uses, made the old parser quadratic twice over (rule names were found by a linear
 * scan, and nullable rules by a fixed point that learnt one rule per pass): 5.7 s of CPU here,
 * 0.03 s now. A request's JSON Schema or tools array becomes such a grammar. */
static void test_parse_is_linear(void **state)
{
    (void)state;
    enum { N = 50000 };
    llmos_buf b = {0};
    assert_int_equal(buf_puts(&b, "root ::= \"x\" r0\n"), LLMOS_OK);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(buf_printf(&b, "r%u ::= r%u\n", i, i + 1), LLMOS_OK);
    assert_int_equal(buf_printf(&b, "r%u ::= \"\"\n", (unsigned)N), LLMOS_OK);
    double t0 = cpu_seconds();
    grammar *g = NULL;
    assert_int_equal(grammar_parse(b.data, b.len, NULL, &g), LLMOS_OK);
    double dt = cpu_seconds() - t0;
    assert_int_equal(grammar_n_rules(g), N + 2);
    if (dt > 1.0)
        fail_msg("parsing %u rules took %.2f s of CPU (expected well under 1 s)", N + 2, dt);
    grammar_free(g);
    buf_free(&b);
}

static void test_cache_rebuild(void **state)
{
    (void)state;
    grammar *g = parse_ok("root ::= v\nv ::= \"[\" v? \"]\"\n");
    const char *pieces[] = {"[", "]", "[[", "]]"};
    size_t lens[] = {1, 1, 2, 2};
    grammar_vocab *v = NULL;
    assert_int_equal(grammar_vocab_from_pieces(4, pieces, lens, NULL, &v), LLMOS_OK);
    const int depth = 20000;
    for (int k = 0; k < depth; k++) {
        assert_int_equal(grammar_accept_bytes(g, "[", 1), LLMOS_OK);
        if (k % 4999 == 0) {
            uint8_t bits[1] = {0};
            assert_int_equal(grammar_allowed(g, v, bits, 4),
                             k == 0 ? 3 : 4); /* "]]" needs depth 2 */
        }
    }
    assert_true(grammar_n_states(g) < 20000); /* rebuilt on the way */
    assert_false(grammar_accepting(g));
    for (int k = 0; k < depth; k++) {
        assert_int_equal(grammar_accept_bytes(g, "]", 1), LLMOS_OK);
        assert_true(grammar_accepting(g) == (k == depth - 1));
    }
    assert_true(grammar_done(g));
    assert_int_equal(grammar_accept_bytes(g, "]", 1), LLMOS_ERR_INVALID);
    assert_int_equal(grammar_clear_caches(g), LLMOS_OK);
    assert_true(grammar_done(g));
    /* one call that would need more than the hard cap of new states stops cleanly */
    size_t big = 70000;
    char *open = malloc(big);
    assert_non_null(open);
    memset(open, '[', big);
    grammar_reset(g);
    assert_int_equal(grammar_accept_bytes(g, open, big), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "feed the text in pieces"));
    assert_false(grammar_accepting(g)); /* state kept: the start */
    assert_int_equal(grammar_accept_bytes(g, "[]", 2), LLMOS_OK);
    assert_true(grammar_done(g));
    free(open);
    grammar_vocab_free(v);
    grammar_free(g);
}

/* ---- masks on a tiny vocabulary ---------------------------------------------------------------
 */

/* Allowed by brute force: a token is allowed iff its bytes are accepted from the state. */
static bool brute_allowed(grammar *g, const char *prefix, const char *tok, size_t len)
{
    grammar_reset(g);
    if (grammar_accept_bytes(g, prefix, strlen(prefix)) != LLMOS_OK)
        return false;
    return grammar_accept_bytes(g, tok, len) == LLMOS_OK;
}

static void test_mask_tiny(void **state)
{
    (void)state;
    const char *pieces[] = {"{",     "}",   "\"",   "a",        "ab",           "\":", " ",
                            "1",     "12",  "\xe4", "\xb8\xad", "\xe4\xb8\xad", "\"}", "",
                            "<eos>", "tru", "true", ",",        "\xc3",         "x"};
    size_t n = LLMOS_ARRAY_LEN(pieces);
    size_t lens[LLMOS_ARRAY_LEN(pieces)];
    bool eog[LLMOS_ARRAY_LEN(pieces)] = {0};
    for (size_t k = 0; k < n; k++)
        lens[k] = strlen(pieces[k]);
    eog[14] = true;
    grammar_vocab *v = NULL;
    assert_int_equal(grammar_vocab_from_pieces(n, pieces, lens, eog, &v), LLMOS_OK);
    assert_int_equal(grammar_vocab_size(v), n);
    grammar *g = parse_ok(JSON_GBNF);

    const char *prefixes[] = {"",          "{", "{\"",     "{\"a",        "{\"a\"",      "{\"a\":",
                              "{\"a\": 1", "[", "{\"\xe4", "{\"a\": tru", "{\"a\": {}}", "1"};
    for (size_t p = 0; p < LLMOS_ARRAY_LEN(prefixes); p++) {
        grammar_reset(g);
        assert_int_equal(grammar_accept_bytes(g, prefixes[p], strlen(prefixes[p])), LLMOS_OK);
        bool acc = grammar_accepting(g);
        uint8_t bits[8] = {0};
        size_t count = grammar_allowed(g, v, bits, n);
        float logits[LLMOS_ARRAY_LEN(pieces)];
        for (size_t k = 0; k < n; k++)
            logits[k] = 1.0f;
        llmos_err merr = grammar_mask(g, v, logits, n);
        assert_int_equal(merr, count ? LLMOS_OK : LLMOS_ERR_INVALID);
        size_t seen = 0;
        for (size_t k = 0; k < n; k++) {
            bool want =
                k == 14 ? acc : (lens[k] > 0 && brute_allowed(g, prefixes[p], pieces[k], lens[k]));
            bool got = (bits[k / 8] >> (k % 8)) & 1;
            if (want != got)
                fail_msg("prefix \"%s\", token %zu \"%s\": mask says %d, brute force %d",
                         prefixes[p], k, pieces[k], got, want);
            if (count)
                assert_true((isinf(logits[k]) != 0) == !want);
            seen += want;
        }
        assert_int_equal(count, seen);
    }
    /* accept by id, EOG only when complete */
    grammar_reset(g);
    assert_int_equal(grammar_accept(g, v, 14), LLMOS_ERR_INVALID);
    assert_int_equal(grammar_accept(g, v, 0), LLMOS_OK);           /* { */
    assert_int_equal(grammar_accept(g, v, 19), LLMOS_ERR_INVALID); /* x */
    assert_non_null(strstr(llmos_errmsg(), "token 19"));
    assert_int_equal(grammar_accept(g, v, 13), LLMOS_ERR_INVALID); /* no bytes */
    assert_int_equal(grammar_accept(g, v, 1), LLMOS_OK);           /* } */
    assert_int_equal(grammar_accept(g, v, 14), LLMOS_OK);
    assert_int_equal(grammar_accept(g, v, 99), LLMOS_ERR_INVALID);
    float few[3];
    assert_int_equal(grammar_mask(g, v, few, 3), LLMOS_ERR_INVALID);
    grammar_free(g);

    /* a grammar no token can start */
    g = parse_ok("root ::= \"Q\"\n");
    float logits[LLMOS_ARRAY_LEN(pieces)] = {0};
    assert_int_equal(grammar_mask(g, v, logits, n), LLMOS_ERR_INVALID);
    assert_false(isinf(logits[0]));
    grammar_free(g);
    grammar_vocab_free(v);
    grammar_vocab_free(NULL);
}

/* ---- masks on the real Qwen2 vocabulary ---------------------------------------------------------
 */

static const char *DOC =
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\xc3\xbcrich\", \"days\": [1, 2, "
    "3],\n"
    "  \"units\": \"celsius\", \"note\": \"\xe5\x8c\x97\xe4\xba\xac \xf0\x9f\x98\x80\", "
    "\"ok\": true, \"x\": -1.5e3, \"empty\": {}}}";

static void mask_real(const char *rel)
{
    char path[1024];
    tu_testdata_path(path, sizeof path, rel);
    tokenizer *t = NULL;
    if (tok_load_file(path, &t) != LLMOS_OK)
        fail_msg("loading %s: %s", path, llmos_errmsg());
    grammar_vocab *v = NULL;
    assert_int_equal(grammar_vocab_new(t, &v), LLMOS_OK);
    size_t n = grammar_vocab_size(v);
    assert_int_equal(n, tok_n_vocab(t));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    assert_int_equal(tok_encode(t, DOC, strlen(DOC), 0, &ids, &n_ids), LLMOS_OK);
    assert_true(n_ids > 20);

    grammar *g = parse_ok(JSON_GBNF);
    grammar *check = parse_ok(JSON_GBNF);
    uint8_t *bits = malloc((n + 7) / 8);
    float *logits = malloc(n * sizeof *logits);
    assert_non_null(bits);
    assert_non_null(logits);
    llmos_buf prefix = {0};
    uint64_t rng = 12345;
    for (size_t step = 0; step <= n_ids; step++) {
        size_t count = grammar_allowed(g, v, bits, n);
        assert_true(count > 0);
        if (step < n_ids) {
            int32_t id = ids[step];
            if (!((bits[id / 8] >> (id % 8)) & 1))
                fail_msg("step %zu: the document's own token %d is masked out", step, id);
        } else {
            /* the document is complete: an end token is allowed */
            int32_t eos = tok_eos(t) >= 0 ? tok_eos(t) : tok_eot(t);
            if (eos >= 0 && tok_is_eog(t, eos))
                assert_true((bits[eos / 8] >> (eos % 8)) & 1);
        }
        /* sample allowed tokens: each must keep the text a viable prefix */
        for (int probe = 0; probe < 40; probe++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t id = (size_t)(rng >> 33) % n;
            for (size_t k = 0; k < n && !((bits[id / 8] >> (id % 8)) & 1); k++)
                id = (id + 1) % n;
            if (tok_is_eog(t, (int32_t)id))
                continue;
            llmos_buf tb = {0};
            assert_int_equal(tok_token_bytes(t, (int32_t)id, &tb), LLMOS_OK);
            grammar_reset(check);
            if (grammar_accept_bytes(check, prefix.data ? prefix.data : "", prefix.len) ||
                grammar_accept_bytes(check, tb.data, tb.len))
                fail_msg("step %zu: allowed token %zu ('%s') does not continue the text", step, id,
                         tb.data);
            buf_free(&tb);
        }
        /* and the mask agrees with grammar_mask */
        for (size_t i = 0; i < n; i++)
            logits[i] = 0.5f;
        assert_int_equal(grammar_mask(g, v, logits, n), LLMOS_OK);
        for (size_t i = 0; i < n; i += 97)
            assert_true((isinf(logits[i]) != 0) == !((bits[i / 8] >> (i % 8)) & 1));
        if (step < n_ids) {
            assert_int_equal(grammar_accept(g, v, ids[step]), LLMOS_OK);
            assert_int_equal(tok_token_bytes(t, ids[step], &prefix), LLMOS_OK);
        }
    }
    assert_true(grammar_accepting(g));
    /* in a string, almost everything is allowed; at a value start, very little */
    grammar_reset(g);
    assert_int_equal(grammar_accept_bytes(g, "{\"a\": \"", 7), LLMOS_OK);
    size_t in_string = grammar_allowed(g, v, bits, n);
    grammar_reset(g);
    assert_int_equal(grammar_accept_bytes(g, "{\"a\":", 5), LLMOS_OK);
    size_t at_value = grammar_allowed(g, v, bits, n);
    assert_true(in_string > n / 2);
    assert_true(at_value < n / 20);
    assert_true(at_value > 10);

    /* exhaustive: at a few states, every token's verdict equals brute force (this checks
     * the subtree skipping of the walk against plain byte-by-byte matching) */
    const char *states[] = {"{\"a\": \"", "{\"a\": \"\xe4", "{\"a\": [1, 2", "", "{\"a\": \"x\\"};
    llmos_buf tb = {0};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(states); k++) {
        grammar_reset(g);
        assert_int_equal(grammar_accept_bytes(g, states[k], strlen(states[k])), LLMOS_OK);
        size_t count = grammar_allowed(g, v, bits, n), brute = 0;
        for (size_t id = 0; id < n; id++) {
            bool want = false;
            if (tok_is_eog(t, (int32_t)id)) {
                want = grammar_accepting(g);
            } else {
                buf_clear(&tb);
                assert_int_equal(tok_token_bytes(t, (int32_t)id, &tb), LLMOS_OK);
                grammar_reset(check);
                want = tb.len > 0 &&
                       grammar_accept_bytes(check, states[k], strlen(states[k])) == LLMOS_OK &&
                       grammar_accept_bytes(check, tb.data, tb.len) == LLMOS_OK;
            }
            bool got = (bits[id / 8] >> (id % 8)) & 1;
            if (want != got)
                fail_msg("state \"%s\", token %zu ('%s'): mask %d, brute force %d", states[k], id,
                         tb.data ? tb.data : "", got, want);
            brute += want;
        }
        assert_int_equal(count, brute);
    }
    buf_free(&tb);

    /* a Hermes tool-call grammar: the added token <tool_call> is allowed by its text */
    const char *tool_g = "root ::= \"<tool_call>\" [ \\n]? \"{\" [^}]* \"}\"\n";
    grammar *tg = parse_ok(tool_g);
    int32_t tc = tok_find(t, "<tool_call>", 11);
    if (tc >= 0) {
        grammar_allowed(tg, v, bits, n);
        assert_true((bits[tc / 8] >> (tc % 8)) & 1);
        assert_int_equal(grammar_accept(tg, v, tc), LLMOS_OK);
    }
    grammar_free(tg);

    buf_free(&prefix);
    free(bits);
    free(logits);
    free(ids);
    grammar_free(g);
    grammar_free(check);
    grammar_vocab_free(v);
    tok_free(t);
}

static void test_mask_qwen2(void **state)
{
    (void)state;
    mask_real("vocab/ggml-vocab-qwen2.gguf");
}

static void test_mask_llama3(void **state)
{
    (void)state;
    mask_real("vocab/ggml-vocab-llama-bpe.gguf");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constructs),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_json_strings),
        cmocka_unit_test(test_unicode_classes),
        cmocka_unit_test(test_ambiguity_and_nesting),
        cmocka_unit_test(test_parse_is_linear),
        cmocka_unit_test(test_cache_rebuild),
        cmocka_unit_test(test_mask_tiny),
        cmocka_unit_test(test_mask_qwen2),
        cmocka_unit_test(test_mask_llama3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
