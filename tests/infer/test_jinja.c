/*
 * test_jinja.c - the Jinja interpreter construct by construct: whitespace control, literals,
 * operators, tests, filters, methods, loops, scoping, macros, globals, error messages with
 * line and column, and the limits that stop runaway templates.
 *
 * Expected texts are what Python's Jinja2 prints for the same template in the environment chat
 * templates use (trim_blocks, lstrip_blocks, Hugging Face's tojson).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/chat.h"

static json_t *js(const char *text)
{
    json_t *v = NULL;
    if (ljson_parse_text(text, strlen(text), "test JSON", 0, &v) != LLMOS_OK)
        fail_msg("bad test JSON: %s", llmos_errmsg());
    return v;
}

/* Render `tmpl` with context `ctx` (JSON text or NULL) and limits `o` into `out`. */
static llmos_err render(const char *tmpl, const char *ctx, const jinja_options *o, llmos_buf *out)
{
    json_t *c = ctx ? js(ctx) : NULL;
    llmos_err err = jinja_render(tmpl, strlen(tmpl), c, o, out);
    json_decref(c);
    return err;
}

static void check_at(const char *tmpl, const char *ctx, const char *want, int line)
{
    llmos_buf out = {0};
    jinja_options o = {.now = 1735689600}; /* 2025-01-01 00:00:00 UTC */
    llmos_err err = render(tmpl, ctx, &o, &out);
    if (err != LLMOS_OK)
        fail_msg("line %d: %s: render failed: %s", line, tmpl, llmos_errmsg());
    if (strcmp(out.data ? out.data : "", want) != 0)
        fail_msg("line %d: %s\n  got:  [%s]\n  want: [%s]", line, tmpl, out.data ? out.data : "",
                 want);
    buf_free(&out);
}
#define CHECK(tmpl, ctx, want) check_at((tmpl), (ctx), (want), __LINE__)

static void fail_at(const char *tmpl, const char *ctx, const jinja_options *o, llmos_err code,
                    const char *needle, int line)
{
    llmos_buf out = {0};
    llmos_err err = render(tmpl, ctx, o, &out);
    if (err != code)
        fail_msg("line %d: %s: expected %s, got %s (%s)", line, tmpl, llmos_strerror(code),
                 llmos_strerror(err), err ? llmos_errmsg() : out.data);
    if (!strstr(llmos_errmsg(), needle))
        fail_msg("line %d: %s: message [%s] lacks [%s]", line, tmpl, llmos_errmsg(), needle);
    assert_int_equal(out.len, 0);
    buf_free(&out);
}
#define FAILS(tmpl, ctx, code, needle) fail_at((tmpl), (ctx), NULL, (code), (needle), __LINE__)
#define FAILS_LIMITED(tmpl, o, needle)                                                             \
    fail_at((tmpl), NULL, (o), LLMOS_ERR_LIMIT, (needle), __LINE__)

/* ---- whitespace ---------------------------------------------------------------------------- */

static void test_whitespace(void **state)
{
    (void)state;
    CHECK("plain text", NULL, "plain text");
    CHECK("a {{- ' b ' -}} c", NULL, "a b c");
    CHECK("a  \n {{- 'b' }}\n c", NULL, "ab\n c");
    /* trim_blocks: the newline after a block tag goes; lstrip_blocks: indentation before it */
    CHECK("{% if true %}\nx\n{% endif %}\ny", NULL, "x\ny");
    CHECK("a\n    {% if true %}b{% endif %}", NULL, "a\nb");
    CHECK("a\n  {%+ if true %}b{% endif %}", NULL, "a\n  b");
    CHECK("{% if true +%}\nx{% endif %}", NULL, "\nx");
    CHECK("a {% if true %}b{% endif %}", NULL, "a b"); /* not at a line start: kept */
    CHECK("{{ 'x' }}\ny", NULL, "x\ny");               /* not after {{ }} */
    CHECK("{%- if true -%}  \n x \n {%- endif %}", NULL, "x");
    /* comments, with the same whitespace rules as blocks */
    CHECK("a{# note #}b", NULL, "ab");
    CHECK("a\n  {# note #}\nb", NULL, "a\nb");
    CHECK("a  {#- note -#}  b", NULL, "ab");
    /* one trailing newline of the template is dropped; \r\n is a newline */
    CHECK("x\n", NULL, "x");
    CHECK("x\n\n", NULL, "x\n");
    CHECK("a\r\nb\r\n", NULL, "a\nb");
    CHECK("", NULL, "");
    CHECK("{", NULL, "{");
    CHECK("a } b %} c", NULL, "a } b %} c");
}

/* ---- literals and printing ----------------------------------------------------------------- */

static void test_literals(void **state)
{
    (void)state;
    CHECK("{{ 1 }}|{{ -3 }}|{{ 1.5 }}|{{ 1.0 }}|{{ 100.0 }}", NULL, "1|-3|1.5|1.0|100.0");
    CHECK("{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1.5e-7 }}|{{ 1e16 }}|{{ 1e15 }}|{{ 0.0001 }}", NULL,
          "0.30000000000000004|1e+20|1.5e-07|1e+16|1000000000000000.0|0.0001");
    CHECK("{{ 'a' \"b\" }}|{{ 'it''s' }}|{{ \"it's\" }}", NULL, "ab|its|it's");
    CHECK("{{ 'tab\\tnl\\nq\\'u\\u00e9' }}", NULL, "tab\tnl\nq'u\xc3\xa9");
    CHECK("{{ [1, 'a', none, true, false, 2.5] }}", NULL, "[1, 'a', None, True, False, 2.5]");
    CHECK("{{ {'k': 'v', 'n': [1]} }}", NULL, "{'k': 'v', 'n': [1]}");
    CHECK("{{ [\"it's\"] }}", NULL, "[\"it's\"]");
    CHECK("{{ none }}|{{ None }}|{{ True }}|{{ missing }}|{{ (1, 2)|length }}", NULL,
          "None|None|True||2");
    CHECK("{{ x }}|{{ y }}|{{ z }}", "{\"x\": 3, \"y\": 2.0, \"z\": null}", "3|2.0|None");
    CHECK("{{ {'a': {'b': 1}} }}", NULL, "{'a': {'b': 1}}"); /* }} inside braces */
    CHECK("{{ '}}' }}", NULL, "}}");
}

/* ---- access and slices --------------------------------------------------------------------- */

static void test_access(void **state)
{
    (void)state;
    const char *ctx = "{\"m\": {\"a\": [10, 20, 30], \"s\": \"h\\u00e9llo\"}}";
    CHECK("{{ m.a[1] }}|{{ m['a'][-1] }}|{{ m.a.0 }}|{{ m.a[5] }}|{{ m.zz }}", ctx, "20|30|10||");
    CHECK("{{ m.s[1] }}|{{ m.s|length }}|{{ m.s[1:3] }}|{{ m.s[::-1] }}", ctx,
          "\xc3\xa9|5|\xc3\xa9l|oll\xc3\xa9h");
    CHECK("{{ [1,2,3,4][1:3] }}|{{ [1,2,3][::-1] }}|{{ 'abc'[:-1] }}|{{ [1,2,3,4,5][::2] }}", NULL,
          "[2, 3]|[3, 2, 1]|ab|[1, 3, 5]");
    CHECK("{{ [1,2,3][-2:] }}|{{ [1,2,3][5:] }}|{{ 'abcdef'[4:1:-1] }}|{{ 'abc'[-10:10] }}", NULL,
          "[2, 3]|[]|edc|abc");
    CHECK("{{ 'abc'.x }}|{{ none.x }}", NULL, "|");
}

/* ---- operators ----------------------------------------------------------------------------- */

static void test_operators(void **state)
{
    (void)state;
    CHECK("{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}", NULL,
          "3|-4|1|2|3.5|1024");
    CHECK("{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 2 ** -1 }}|{{ 10 - 2 - 3 }}|{{ 1 + 0.5 }}", NULL,
          "7|9|0.5|5|1.5");
    CHECK("{{ 'a' ~ 1 ~ none }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ 'ab' * 3 }}", NULL,
          "a1None|ab|[1, 2]|ababab");
    CHECK("{{ 1 < 2 and 'x' or 'y' }}|{{ 0 or 'd' }}|{{ '' and 'z' }}|{{ not 1 == 2 }}", NULL,
          "x|d||True");
    CHECK("{{ 'a' in 'cat' }}|{{ 2 not in [1, 3] }}|{{ 'k' in {'k': 1} }}|{{ 'b' < 'a' }}", NULL,
          "True|True|True|False");
    CHECK("{{ 1 == 1.0 }}|{{ [1, {'a': 2}] == [1, {'a': 2}] }}|{{ 'a' != 'a' }}|{{ 3 >= 3 }}", NULL,
          "True|True|False|True");
    CHECK("{{ 'y' if x else 'n' }}|{{ 'y' if not x else 'n' }}|{{ 'only' if false }}", NULL,
          "n|y|");
    /* filters bind tighter than + and `not` looser than comparison */
    CHECK("{{ 'a' + ' b '|trim + 'c' }}|{{ not [1]|length == 1 }}", NULL, "abc|False");
    CHECK("{{ -x|abs }}", "{\"x\": 3}", "3");
}

/* ---- tests (is ...) ------------------------------------------------------------------------ */

static void test_tests(void **state)
{
    (void)state;
    const char *ctx = "{\"s\": \"x\", \"n\": null, \"d\": {}, \"l\": [], \"i\": 4, \"f\": 1.5,"
                      " \"b\": true}";
    CHECK("{{ s is defined }}{{ q is defined }}{{ q is undefined }}{{ n is none }}"
          "{{ n is not none }}",
          ctx, "TrueFalseTrueTrueFalse");
    CHECK("{{ s is string }}{{ d is mapping }}{{ l is mapping }}{{ s is iterable }}"
          "{{ i is iterable }}{{ l is sequence }}",
          ctx, "TrueTrueFalseTrueFalseTrue");
    CHECK("{{ i is number }}{{ f is number }}{{ i is integer }}{{ f is float }}{{ b is boolean }}"
          "{{ b is true }}{{ b is false }}",
          ctx, "TrueTrueTrueTrueTrueTrueFalse");
    CHECK("{{ i is odd }}{{ i is even }}{{ i is divisibleby(2) }}{{ i is divisibleby 3 }}"
          "{{ i is equalto 4 }}{{ i is eq(5) }}{{ s is in ['x'] }}",
          ctx, "FalseTrueTrueFalseTrueFalseTrue");
    CHECK("{{ range is callable }}{{ s is lower }}{{ 'X' is upper }}", ctx, "TrueTrueTrue");
}

/* ---- filters ------------------------------------------------------------------------------- */

static void test_filters(void **state)
{
    (void)state;
    const char *ctx =
        "{\"msgs\": [{\"role\": \"user\", \"n\": 2}, {\"role\": \"bot\", \"n\": 1},"
        " {\"role\": \"user\", \"n\": 3}], \"d\": {\"b\": 1, \"a\": [true, null, \"\\u00e9\\n\"]}}";
    CHECK("[{{ '  x y \\n'|trim }}]|{{ 'xxhixx'|trim('x') }}|{{ [1,2]|length }}|{{ 'ab'|count }}",
          NULL, "[x y]|hi|2|2");
    CHECK("{{ 'aBc'|upper }}|{{ 'aBc'|lower }}|{{ 'hello wORLD'|title }}|{{ 'hello "
          "World'|capitalize }}",
          NULL, "ABC|abc|Hello World|Hello world");
    CHECK("{{ q|default('dflt') }}|{{ ''|default('e') }}|{{ ''|default('e', true) }}|{{ q|d }}",
          NULL, "dflt||e|");
    CHECK("{{ [1, 'a']|join(', ') }}|{{ msgs|join('-', attribute='role') }}|{{ 'abc'|join('.') }}",
          ctx, "1, a|user-bot-user|a.b.c");
    CHECK("{{ [3, 4]|first }}|{{ [3, 4]|last }}|{{ 'xyz'|first }}|{{ []|first }}", NULL, "3|4|x|");
    CHECK("{{ 'ab'|list }}|{{ d|list }}|{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", ctx,
          "['a', 'b']|['b', 'a']|b=1;a=[True, None, '\xc3\xa9\\n'];");
    CHECK("{{ 5|string ~ 1 }}|{{ '42'|int + 1 }}|{{ '4.7'|int }}|{{ 'x'|int }}|{{ 'x'|int(7) }}"
          "|{{ 3.9|int }}|{{ '2.5'|float }}",
          NULL, "51|43|4|0|7|3|2.5");
    CHECK("{{ 'a-b-c'|replace('-', '+') }}|{{ 'a-b-c'|replace('-', '', 1) }}|{{ '<b>'|safe }}",
          NULL, "a+b+c|ab-c|<b>");
    CHECK("{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='n')|list }}|"
          "{{ msgs|rejectattr('role', 'equalto', 'user')|map(attribute='role')|join }}|"
          "{{ msgs|selectattr('n', 'gt', 1)|list|length }}",
          ctx, "[2, 3]|bot|2");
    CHECK("{{ [1, 2, 3, 4]|select('odd')|list }}|{{ [1, 2, 3]|reject('equalto', 2)|list }}|"
          "{{ ['a', 'b']|map('upper')|join }}",
          NULL, "[1, 3]|[1, 3]|AB");
    CHECK("{% for k, v in d|dictsort %}{{ k }}{% endfor %}|"
          "{% for k, v in {'b': 2, 'a': 3, 'c': 1}|dictsort(by='value') %}{{ k }}{% endfor %}",
          ctx, "ab|cba");
    CHECK("{{ [3, 1, 2]|sort }}|{{ [3, 1, 2]|sort(reverse=true) }}|{{ msgs|sort(attribute='n')|"
          "map(attribute='n')|list }}|{{ [1, 2, 1]|unique|list }}|{{ [1, 2]|reverse|list }}",
          ctx, "[1, 2, 3]|[3, 2, 1]|[1, 2, 3]|[1, 2]|[2, 1]");
    CHECK("{{ []|sort }}|{{ q|sort }}|{{ []|reverse|list }}|{{ []|unique|list }}", NULL,
          "[]|[]|[]|[]");
    CHECK("{{ [1, 2, 3]|sum }}|{{ [4, 2, 9]|min }}|{{ [4, 2, 9]|max }}|{{ -2|abs }}|"
          "{{ 2.567|round(2) }}|{{ 'a\\nb'|indent(2) }}|{{ '<&>'|e }}",
          NULL, "6|2|9|2|2.57|a\n  b|&lt;&amp;&gt;");
}

static void test_tojson(void **state)
{
    (void)state;
    const char *ctx = "{\"d\": {\"b\": 1, \"a\": [true, null, \"\\u00e9\\n\\\"\", 1.5, {}, []]}}";
    /* Hugging Face's tojson: keys unsorted, ", " and ": ", non-ASCII kept */
    CHECK("{{ d|tojson }}", ctx,
          "{\"b\": 1, \"a\": [true, null, \"\xc3\xa9\\n\\\"\", 1.5, {}, []]}");
    CHECK("{{ d|tojson(indent=2) }}", ctx,
          "{\n  \"b\": 1,\n  \"a\": [\n    true,\n    null,\n    \"\xc3\xa9\\n\\\"\",\n    1.5,\n"
          "    {},\n    []\n  ]\n}");
    CHECK("{{ 'x'|tojson }}|{{ none|tojson }}|{{ {'z': 1, 'a': 2}|tojson(sort_keys=true) }}", NULL,
          "\"x\"|null|{\"a\": 2, \"z\": 1}");
    CHECK("{{ d|tojson(separators=(',', ':')) }}|{{ "
          "'h\xc3\xa9\xf0\x9f\x98\x80'|tojson(ensure_ascii=true) }}",
          ctx,
          "{\"b\":1,\"a\":[true,null,\"\xc3\xa9\\n\\\"\",1.5,{},[]]}|\"h\\u00e9\\ud83d\\ude00\"");
    CHECK("{{ {'z': {'y': 1, 'x': 2}, 'a': 0}|tojson(sort_keys=true, indent=1) }}", NULL,
          "{\n \"a\": 0,\n \"z\": {\n  \"x\": 2,\n  \"y\": 1\n }\n}");
    FAILS("{{ q|tojson }}", NULL, LLMOS_ERR_FORMAT, "not JSON serializable");
    FAILS("{{ 1|tojson(separators=[1]) }}", NULL, LLMOS_ERR_FORMAT,
          "separators must be two strings");
}

/* ---- methods ------------------------------------------------------------------------------- */

static void test_methods(void **state)
{
    (void)state;
    CHECK("[{{ '  x  '.strip() }}][{{ '  x  '.lstrip() }}][{{ '  x  '.rstrip() }}]"
          "[{{ 'xxaxx'.strip('x') }}]",
          NULL, "[x][x  ][  x][a]");
    CHECK("{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|"
          "{{ 'x</think>y</think>z'.split('</think>')[-1] }}",
          NULL, "['a', 'b', '', 'c']|['a', 'b']|['a', 'b,c']|z");
    CHECK("{{ 'hello'.startswith('he') }}{{ 'hello'.endswith('lo') }}"
          "{{ 'hello'.startswith(('x', 'h')) }}{{ 'hello'.endswith('x') }}",
          NULL, "TrueTrueTrueFalse");
    CHECK("{{ 'aBc'.upper() }}|{{ 'aBc'.lower() }}|{{ 'ab ab'.replace('a', 'x') }}|"
          "{{ 'hello wORLD'.title() }}|{{ 'abc'.capitalize() }}",
          NULL, "ABC|abc|xb xb|Hello World|Abc");
    CHECK("{{ '{} and {}'.format(1, 'x') }}|{{ '{1}{0}'.format('a', 'b') }}|{{ ', '.join(['a', "
          "'b']) }}|{{ 'abcb'.find('b') }}|{{ 'abcb'.count('b') }}",
          NULL, "1 and x|ba|a, b|1|2");
    const char *ctx = "{\"d\": {\"k\": \"v\", \"n\": 1}}";
    CHECK("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys()|list }}|{{ "
          "d.values()|list }}"
          "|{{ d.get('k') }}|{{ d.get('q') }}|{{ d.get('q', 'z') }}",
          ctx, "k=v;n=1;|['k', 'n']|['v', 1]|v|None|z");
    /* printf-style formatting */
    CHECK(
        "{{ '%s is %d years, %.2f%%' % ('Ann', 30, 1.5) }}|{{ 'x=%r' % 'a' }}|"
        "{{ '[%5s|%-4s|%.1s]' % ('ab', 'c', 'xyz') }}|{{ '%05d|%x|%X|%+d' % (42, 255, -255, 7) }}|"
        "{{ '%s and %s'|format('a', none) }}|{{ '%c%c' % (104, 233) }}",
        NULL, "Ann is 30 years, 1.50%|x='a'|[   ab|c   |x]|00042|ff|-FF|+7|a and None|h\xc3\xa9");
    FAILS("{{ '%s %s' % 'a' }}", NULL, LLMOS_ERR_FORMAT, "not enough arguments for format string");
    FAILS("{{ '%s' % ('a', 'b') }}", NULL, LLMOS_ERR_FORMAT, "not all arguments converted");
    FAILS("{{ '%(name)s' % 'a' }}", NULL, LLMOS_ERR_UNSUPPORTED,
          "conversion '%(' is not supported");
    FAILS("{{ 'x'.nosuch() }}", NULL, LLMOS_ERR_FORMAT, "'str' object has no method 'nosuch'");
}

/* ---- statements ---------------------------------------------------------------------------- */

static void test_if(void **state)
{
    (void)state;
    const char *t = "{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three{% else %}many"
                    "{% endif %}";
    CHECK(t, "{\"x\": 1}", "one");
    CHECK(t, "{\"x\": 2}", "two");
    CHECK(t, "{\"x\": 3}", "three");
    CHECK(t, "{\"x\": 9}", "many");
    CHECK("{% if [] %}a{% endif %}{% if {} %}b{% endif %}{% if '' %}c{% endif %}"
          "{% if 0.0 %}d{% endif %}{% if q %}e{% endif %}{% if ' ' %}f{% endif %}",
          NULL, "f");
}

static void test_for(void **state)
{
    (void)state;
    CHECK(
        "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
        "{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ x }};{% endfor %}",
        NULL, "1032TrueFalse3a;2121FalseFalse3b;3210FalseTrue3c;");
    CHECK("{% for x in [1, 2, 3] %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}|{% endfor %}",
          NULL, "<1>2|1<2>3|2<3>|");
    CHECK("{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty");
    CHECK("{% for x in q %}x{% else %}undefined iterates as empty{% endfor %}", NULL,
          "undefined iterates as empty");
    CHECK("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}{{ v }}{% endfor %}", NULL, "a1b2");
    CHECK("{% for k in {'a': 1, 'b': 2} %}{{ k }}{% endfor %}", NULL, "ab");
    CHECK("{% for (a, b) in [[1, 2], [3, 4]] %}{{ a + b }},{% endfor %}", NULL, "3,7,");
    CHECK("{% for c in 'h\xc3\xa9' %}[{{ c }}]{% endfor %}", NULL, "[h][\xc3\xa9]");
    /* loop filter: loop.* count only the kept items */
    CHECK("{% for x in range(10) if x is odd %}{{ x }}{{ '/' if loop.last else ',' }}{% endfor %}",
          NULL, "1,3,5,7,9/");
    CHECK("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 5 %}"
          "{% break %}{% endif %}{{ x }}{% endfor %}",
          NULL, "0134");
    CHECK("{% for i in range(2) %}{% for j in range(2) %}{{ loop.index }}{% endfor %}"
          "{{ loop.index }}|{% endfor %}",
          NULL, "121|122|");
    CHECK("{{ range(3)|list }}|{{ range(1, 10, 3)|list }}|{{ range(3, 0, -1)|list }}|"
          "{{ range(0)|list }}",
          NULL, "[0, 1, 2]|[1, 4, 7]|[3, 2, 1]|[]");
    CHECK("{% for x in [1, 2] %}{{ loop.cycle('odd', 'even') }}{% endfor %}", NULL, "oddeven");
    FAILS("{% for a, b in [1] %}{% endfor %}", NULL, LLMOS_ERR_FORMAT,
          "cannot unpack int into 2 loop variables");
    FAILS("{% for x in 5 %}{% endfor %}", NULL, LLMOS_ERR_FORMAT, "'int' object is not iterable");
}

static void test_set_and_scope(void **state)
{
    (void)state;
    CHECK("{% set x = 1 %}{% set y = x + 1 %}{{ x }}{{ y }}", NULL, "12");
    /* set inside a loop stays in the loop; set inside if does not */
    CHECK("{% set x = 'out' %}{% for i in [1] %}{% set x = 'in' %}{{ x }}{% endfor %}{{ x }}", NULL,
          "inout");
    CHECK("{% if true %}{% set x = 'if' %}{% endif %}{{ x }}", NULL, "if");
    /* namespace objects carry values out of loops */
    CHECK("{% set ns = namespace(n=0, s='') %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
          "{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.n }} {{ ns.s }}",
          NULL, "6 0123");
    CHECK("{% set ns = namespace() %}{% set ns.found = true %}{{ ns.found }}", NULL, "True");
    CHECK("{% set b %}block {{ 1 + 1 }}{% endset %}[{{ b }}]", NULL, "[block 2]");
    /* variables passed in can be shadowed */
    CHECK("{% set messages = messages[1:] %}{{ messages|length }}", "{\"messages\": [1, 2, 3]}",
          "2");
    FAILS("{% set x = 1 %}{% set x.y = 2 %}", NULL, LLMOS_ERR_FORMAT, "not a namespace()");
}

static void test_macros(void **state)
{
    (void)state;
    CHECK("{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}"
          "{{ greet('Ann') }} {{ greet('Bob', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}",
          NULL, "Hello, Ann! Hi, Bob! Yo, Cy!");
    /* recursion, output captured as the call's value, whitespace control inside */
    CHECK("{%- macro fact(n) -%}\n  {%- if n <= 1 -%}1{%- else -%}{{ n * fact(n - 1)|int }}"
          "{%- endif -%}\n{%- endmacro -%}\n{{ fact(5) }}",
          NULL, "120");
    CHECK("{% macro m() %}[{{ caller_var }}]{% endmacro %}{% set caller_var = 'top' %}{{ m() }}",
          NULL, "[top]");
    CHECK("{% macro m(a) %}{{ a is defined }}{% endmacro %}{{ m() }}", NULL, "False");
    FAILS("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}", NULL, LLMOS_ERR_FORMAT,
          "macro 'm' takes at most 1 arguments, got 2");
    FAILS("{% macro m(a) %}{% endmacro %}{{ m(b=1) }}", NULL, LLMOS_ERR_FORMAT,
          "macro 'm' has no parameter 'b'");
}

static void test_globals(void **state)
{
    (void)state;
    CHECK("{{ strftime_now('%d %b %Y %H:%M') }}", NULL, "01 Jan 2025 00:00");
    CHECK("{{ strftime_now is defined }}{{ raise_exception is defined }}", NULL, "TrueTrue");
    CHECK("{{ dict(a=1, b='x') }}|{{ namespace(a=1).a }}", NULL, "{'a': 1, 'b': 'x'}|1");
    FAILS("line 1\n{% if true %}\n  {{ raise_exception('Bad role: ' ~ role) }}\n{% endif %}",
          "{\"role\": \"robot\"}", LLMOS_ERR_INVALID,
          "template line 3, column 6: raise_exception: Bad role: robot");
    /* the real clock when none is injected: some date in the right shape */
    llmos_buf out = {0};
    assert_int_equal(render("{{ strftime_now('%Y') }}", NULL, NULL, &out), LLMOS_OK);
    assert_int_equal(out.len, 4);
    assert_true(out.data[0] == '2');
    buf_free(&out);
}

/* ---- errors -------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    llmos_buf out = {0};
    assert_int_equal(render("line one\n{{ x | foo }}", NULL, NULL, &out), LLMOS_ERR_FORMAT);
    assert_string_equal(llmos_errmsg(), "template line 2, column 8: unknown filter 'foo'");
    assert_int_equal(render("{% if x is frob %}{% endif %}", NULL, NULL, &out), LLMOS_ERR_FORMAT);
    assert_string_equal(llmos_errmsg(), "template line 1, column 12: unknown test 'frob'");
    FAILS("a\nb\n{% if x %}never closed", NULL, LLMOS_ERR_FORMAT, "missing '{% endif %}'");
    FAILS("{{ x ", NULL, LLMOS_ERR_FORMAT,
          "template line 1, column 1: unclosed tag: expected '}}'");
    FAILS("{# open", NULL, LLMOS_ERR_FORMAT, "unclosed comment");
    FAILS("{% frobnicate %}", NULL, LLMOS_ERR_FORMAT, "unknown statement 'frobnicate'");
    FAILS("{% endfor %}", NULL, LLMOS_ERR_FORMAT, "unexpected 'endfor'");
    FAILS("{{ 'unterminated }}", NULL, LLMOS_ERR_FORMAT, "unterminated string literal");
    FAILS("{{ 1 + }}", NULL, LLMOS_ERR_FORMAT, "expected an expression, found '}}'");
    FAILS("{{ a $ b }}", NULL, LLMOS_ERR_FORMAT, "unexpected character '$'");
    FAILS("{{ a.b.c }}", NULL, LLMOS_ERR_FORMAT, "'a' is undefined");
    FAILS("{{ m.x.y }}", "{\"m\": {}}", LLMOS_ERR_FORMAT, "'x' is undefined");
    FAILS("{{ nosuch() }}", NULL, LLMOS_ERR_FORMAT, "'nosuch' is undefined");
    FAILS(
        "{{ messages[0]['role'] }}", "{\"messages\": []}", LLMOS_ERR_FORMAT,
        "template line 1, column 15: value is undefined (a missing key or an index out of range)");
    FAILS("{{ 'a' + 1 }}", NULL, LLMOS_ERR_FORMAT,
          "unsupported operand types for +: 'str' and 'int'");
    FAILS("{{ 1 / 0 }}", NULL, LLMOS_ERR_FORMAT, "division by zero");
    FAILS("{{ 9223372036854775807 + 1 }}", NULL, LLMOS_ERR_FORMAT, "integer overflow");
    FAILS("{{ 1 < 'a' }}", NULL, LLMOS_ERR_FORMAT, "cannot compare int with str");
    FAILS("{{ [1][::0] }}", NULL, LLMOS_ERR_FORMAT, "slice step cannot be zero");
    CHECK("{{ range(-9223372036854775807, 9223372036854775807, 9223372036854775807)|list }}|"
          "{{ [1, 2, 3][::-9223372036854775807 - 1] }}|{{ '' * 1000000000000000000 }}|"
          "{{ ([] * 1000000000000000000)|length }}",
          NULL, "[-9223372036854775807, 0]|[3]||0");
    FAILS("{% include 'x.html' %}", NULL, LLMOS_ERR_UNSUPPORTED, "'include' statements");
    FAILS("{% for x in y recursive %}{% endfor %}", NULL, LLMOS_ERR_UNSUPPORTED, "recursive");

    /* failure leaves earlier output alone; success appends */
    assert_int_equal(buf_puts(&out, "keep"), LLMOS_OK);
    assert_int_equal(render("{{ 1 / 0 }}", NULL, NULL, &out), LLMOS_ERR_FORMAT);
    assert_string_equal(out.data, "keep");
    assert_int_equal(render("+{{ 1 }}", NULL, NULL, &out), LLMOS_OK);
    assert_string_equal(out.data, "keep+1");
    buf_free(&out);

    /* bad arguments */
    json_t *arr = js("[]");
    assert_int_equal(jinja_render("x", 1, arr, NULL, &out), LLMOS_ERR_INVALID);
    assert_int_equal(jinja_render(NULL, 0, NULL, NULL, &out), LLMOS_ERR_INVALID);
    json_decref(arr);
}

/* ---- limits -------------------------------------------------------------------------------- */

static void test_limits(void **state)
{
    (void)state;
    jinja_options o = {.max_iterations = 1000};
    FAILS_LIMITED("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", &o,
                  "more than 1000 loop iterations");
    FAILS_LIMITED("{{ range(5000)|length }}", &o, "exceeds max_iterations");
    o = (jinja_options){.max_output = 100};
    FAILS_LIMITED("{% for i in range(1000) %}0123456789{% endfor %}", &o,
                  "output exceeds 100 bytes");
    o = (jinja_options){.max_depth = 10};
    FAILS_LIMITED("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", &o,
                  "macro calls nested deeper than 10");
    o = (jinja_options){.max_steps = 5000};
    FAILS_LIMITED("{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                  "{% endmacro %}{{ f(40) }}",
                  &o, "more than 5000 steps");
    o = (jinja_options){.max_memory = 1 << 20};
    FAILS_LIMITED("{% set ns = namespace(s='x') %}{% for i in range(40) %}"
                  "{% set ns.s = ns.s + ns.s %}{% endfor %}",
                  &o, "memory");
    /* deep nesting of the template text itself */
    char deep[2100];
    memset(deep, 0, sizeof deep);
    strcpy(deep, "{{ ");
    for (int i = 0; i < 1000; i++)
        strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 1000; i++)
        strcat(deep, ")");
    strcat(deep, " }}");
    FAILS_LIMITED(deep, NULL, "nested more than");
    /* a long left-deep chain does not overflow the C stack */
    size_t n = 20000;
    char *chain = malloc(n * 2 + 16);
    assert_non_null(chain);
    char *p = chain;
    memcpy(p, "{{ 1", 4);
    p += 4;
    for (size_t i = 0; i < n; i++, p += 2)
        memcpy(p, "+1", 2);
    strcpy(p, " }}");
    FAILS_LIMITED(chain, NULL, "nested deeper than");
    free(chain);
    /* defaults are generous enough for ordinary work */
    CHECK("{% for i in range(10000) %}{% endfor %}{{ 'ok' }}", NULL, "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitespace),
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_tests),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_tojson),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_if),
        cmocka_unit_test(test_for),
        cmocka_unit_test(test_set_and_scope),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_globals),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
