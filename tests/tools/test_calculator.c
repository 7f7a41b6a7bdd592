/* test_calculator.c - the exact calculator: worked examples, every error kind, the limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"
#include "llmos/json.h"
#include "llmos/tools.h"

/* Evaluate and compare the printed result. */
static void check(const char *expr, const char *want)
{
    llmos_buf b = {0};
    llmos_err err = calc_eval(expr, &b);
    if (err != LLMOS_OK || !b.data || strcmp(b.data, want) != 0) {
        fprintf(stderr, "calc_eval(\"%s\") = %s [%s], want %s\n", expr, b.data ? b.data : "(null)",
                err ? llmos_errmsg() : "ok", want);
        fail();
    }
    buf_free(&b);
}

/* Evaluate, expect an error code and a detail message containing `needle`. */
static void check_err(const char *expr, llmos_err code, const char *needle)
{
    llmos_buf b = {0};
    llmos_err err = calc_eval(expr, &b);
    if (err != code || !strstr(llmos_errmsg(), needle)) {
        fprintf(stderr, "calc_eval(\"%s\") = %d [%s] out=%s, want error %d containing '%s'\n", expr,
                err, llmos_errmsg(), b.data ? b.data : "", code, needle);
        fail();
    }
    assert_true(b.len == 0); /* nothing appended on failure */
    buf_free(&b);
}

static void test_integers(void **state)
{
    (void)state;
    check("1+2*3", "7");
    check("(1+2)*3", "9");
    check("2^200", "1606938044258990275541962092341162602522202993782792835301376");
    check("50!", "30414093201713378043612608166064768844377641568960512000000000000");
    check("factorial(5)", "120");
    check("2^3^2", "512"); /* right associative */
    check("-2^2", "-4");
    check("2^-2", "1/4 = 0.25");
    check("(-2)^3", "-8");
    check("2**10", "1024");
    check("0x1F + 1", "32");
    check("7 // 2", "3");
    check("-7 // 2", "-4");
    check("7 % 3", "1");
    check("-7 % 3", "2");
    check("mod(10, 4)", "2");
    check("gcd(12, 18)", "6");
    check("lcm(4, 6)", "12");
    check("gcd(12, 18, 8)", "2");
    check("binomial(10, 3)", "120");
    check("choose(100, 50)", "100891344545564193334812497256");
    check("binomial(5, 7)", "0");
    check("abs(-5)", "5");
    check("0^0", "1");
    check("1^100000000000", "1");
    check("(-1)^100000000001", "-1");
    check("  3 \t+\n4 ", "7");
    check("12345678901234567890 * 98765432109876543210",
          "1219326311370217952237463801111263526900");
    check("min(3, 1, 2)", "1");
    check("max(3, 1/2, 7/2)", "7/2 = 3.5");
}

static void test_rationals(void **state)
{
    (void)state;
    check("1/3 + 1/6", "1/2 = 0.5");
    check("0.1 + 0.2", "3/10 = 0.3");
    check("0.1 + 0.2 - 0.3", "0");
    check("1/3", "1/3 \xe2\x89\x88 0.3333333333");
    check("2/3", "2/3 \xe2\x89\x88 0.6666666667");
    check("-1/2", "-1/2 = -0.5");
    check("1.5e3", "1500");
    check("2.5E-3", "1/400 = 0.0025");
    check(".5 * 4", "2");
    check("floor(7/2)", "3");
    check("ceil(7/2)", "4");
    check("round(5/2)", "3");
    check("round(-5/2)", "-3");
    check("round(2.4)", "2");
    check("floor(-0.5)", "-1");
    check("(2/3)^2", "4/9 \xe2\x89\x88 0.4444444444");
    check("4^(1/2)", "2"); /* exact roots stay exact */
    check("8^(2/3)", "4");
    check("(-8)^(1/3)", "-2");
    check("sqrt(9/4)", "3/2 = 1.5");
    check("cbrt(27)", "3");
}

static void test_reals(void **state)
{
    (void)state;
    check("sqrt(2)", "1.4142135623730950488016887242096980785696718753769");
    check("pi", "3.1415926535897932384626433832795028841971693993751");
    check("e", "2.7182818284590452353602874713526624977572470937");
    check("exp(1)", "2.7182818284590452353602874713526624977572470937");
    check("ln(10)", "2.3025850929940456840179914546843642076011014886288");
    check("sin(pi)", "0"); /* pi's rounding noise is snapped to 0 */
    check("cos(pi)", "-1");
    check("sin(pi/2)", "1");
    check("cos(pi/2)", "0");
    check("sin(1e-30)", "1e-30"); /* a small argument is not noise */
    /* an exact huge argument keeps all its bits: sin(10^22) is not rounding noise */
    check("sin(10^22)", "-0.85220084976718880177270589375302936826176215041004");
    check("sqrt(2)^2 - 2", "0");
    check("log10(1000)", "3");
    check("log2(1024)", "10");
    check("log(8, 2)", "3");
    check("ln(e)", "1");
    check("atan(1)*4", "3.1415926535897932384626433832795028841971693993751");
    check("2^0.5", "1.4142135623730950488016887242096980785696718753769");
    check("floor(pi * 1000)", "3141");
    check("exp(100)", "26881171418161354484126255515800135873611118.773742");
    check("exp(-20)", "2.0611536224385578279659403801558209763758072755991e-9");
    check("sqrt(1e-20)", "1/10000000000 = 0.0000000001");
    check("1/3 + sqrt(0)", "1/3 \xe2\x89\x88 0.3333333333");
    check("asin(1) * 2", "3.1415926535897932384626433832795028841971693993751");
    check("tanh(0)", "0");
    check("atan2(1, 1) * 4", "3.1415926535897932384626433832795028841971693993751");
}

static void test_errors(void **state)
{
    (void)state;
    check_err("1/0", LLMOS_ERR_INVALID, "division by zero at column 2");
    check_err("1 / (2 - 2)", LLMOS_ERR_INVALID, "division by zero at column 3");
    check_err("5 % 0", LLMOS_ERR_INVALID, "modulo by zero");
    check_err("5 // 0", LLMOS_ERR_INVALID, "division by zero");
    check_err("1/(sqrt(2)-sqrt(2))", LLMOS_ERR_INVALID, "division by zero");
    check_err("0^-1", LLMOS_ERR_INVALID, "division by zero");
    check_err("(1+2))", LLMOS_ERR_INVALID, "unexpected ')' without a matching '(' at column 6");
    check_err("1+2)*3", LLMOS_ERR_INVALID, "unexpected ')'");
    check_err("(1+2", LLMOS_ERR_INVALID, "unclosed '('");
    check_err("1 +", LLMOS_ERR_INVALID, "expression ends early");
    check_err("1 + * 2", LLMOS_ERR_INVALID, "unexpected '*' at column 5");
    check_err("", LLMOS_ERR_INVALID, "empty expression");
    check_err("   ", LLMOS_ERR_INVALID, "empty expression");
    check_err("2 3", LLMOS_ERR_INVALID, "unexpected '3' at column 3");
    check_err("2pi", LLMOS_ERR_INVALID, "unexpected 'pi'");
    check_err("sqr(4)", LLMOS_ERR_INVALID, "did you mean sqrt?");
    check_err("foo(1)", LLMOS_ERR_INVALID, "unknown function or name 'foo' at column 1");
    check_err("x + 1", LLMOS_ERR_INVALID, "unknown function or name 'x'");
    check_err("sqrt 4", LLMOS_ERR_INVALID, "write sqrt(x)");
    check_err("sqrt(1, 2)", LLMOS_ERR_INVALID, "sqrt takes 1 argument, got 2");
    check_err("sqrt(-1)", LLMOS_ERR_INVALID, "domain error: sqrt(-1)");
    check_err("ln(0)", LLMOS_ERR_INVALID, "domain error: ln(0)");
    check_err("ln(-1)", LLMOS_ERR_INVALID, "domain error");
    check_err("log10(0)", LLMOS_ERR_INVALID, "domain error");
    check_err("asin(2)", LLMOS_ERR_INVALID, "asin needs -1 <= x <= 1");
    check_err("acosh(0)", LLMOS_ERR_INVALID, "domain error");
    check_err("atanh(1)", LLMOS_ERR_INVALID, "domain error");
    check_err("log(8, 1)", LLMOS_ERR_INVALID, "base of log");
    check_err("(-2)^0.5", LLMOS_ERR_INVALID, "negative number to a fractional power");
    check_err("(-1)!", LLMOS_ERR_INVALID, "factorial needs a non-negative integer, got -1");
    check_err("2.5!", LLMOS_ERR_INVALID, "factorial needs a non-negative integer");
    check_err("gcd(1.5, 2)", LLMOS_ERR_INVALID, "gcd needs integer arguments, got 3/2");
    check_err("0x", LLMOS_ERR_INVALID, "hex number without digits");
    check_err("1 # 2", LLMOS_ERR_INVALID, "unexpected '#' at column 3");
    check_err("1 \xc3\x97 2", LLMOS_ERR_INVALID, "unexpected byte 0xc3 at column 3");
    check_err("3 != 4", LLMOS_ERR_INVALID, "not supported");
    check_err("sin(8^((64/31)^23))", LLMOS_ERR_INVALID, "angle is unknown");
    llmos_buf b = {0};
    assert_int_equal(calc_eval_n("1\0+2", 4, &b), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "0x00 at column 2"));
    assert_int_equal(calc_eval(NULL, &b), LLMOS_ERR_INVALID);
    buf_free(&b);
}

static void test_limits(void **state)
{
    (void)state;
    check_err("10^10^10", LLMOS_ERR_LIMIT, "result too large (more than 10000 digits)");
    check_err("100000!", LLMOS_ERR_LIMIT, "result too large");
    check_err("99999999999999999999!", LLMOS_ERR_LIMIT, "result too large");
    check_err("2^40000", LLMOS_ERR_LIMIT, "result too large");
    check_err("(1/2)^40000", LLMOS_ERR_LIMIT, "result too large");
    check_err("1e20000", LLMOS_ERR_LIMIT, "result too large");
    check_err("binomial(100000, 50000)", LLMOS_ERR_LIMIT, "result too large");
    check_err("exp(1e30)", LLMOS_ERR_LIMIT, "result too large");
    check_err("floor(exp(1e6))", LLMOS_ERR_LIMIT, "result too large");
    check_err("(2^30000) * (2^30000)", LLMOS_ERR_LIMIT, "result too large");
    check("0e99999999", "0");
    check("binomial(30000, 2)", "449985000");
    llmos_buf b = {0};
    assert_int_equal(calc_eval("3000!", &b), LLMOS_OK); /* 9131 digits: under the limit */
    assert_int_equal(b.len, 9131);
    buf_clear(&b);
    assert_int_equal(calc_eval("2^33000", &b), LLMOS_OK);
    buf_clear(&b);
    /* deep nesting and long input fail cleanly */
    char deep[400];
    memset(deep, '(', 200);
    deep[200] = '1';
    memset(deep + 201, ')', 198);
    deep[399] = 0;
    assert_int_equal(calc_eval(deep, &b), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "nested deeper than 64"));
    memset(deep, '-', 399);
    deep[398] = '1';
    assert_int_equal(calc_eval(deep, &b), LLMOS_ERR_LIMIT);
    char *longexpr = malloc(CALC_MAX_INPUT + 10);
    assert_non_null(longexpr);
    memset(longexpr, '1', CALC_MAX_INPUT + 9);
    longexpr[CALC_MAX_INPUT + 9] = 0;
    assert_int_equal(calc_eval(longexpr, &b), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "expression too long"));
    free(longexpr);
    assert_int_equal(b.len, 0);
    /* errors never disturb what the buffer held */
    assert_int_equal(buf_puts(&b, "x="), LLMOS_OK);
    assert_int_equal(calc_eval("1/0", &b), LLMOS_ERR_INVALID);
    assert_string_equal(b.data, "x=");
    assert_int_equal(calc_eval("6*7", &b), LLMOS_OK);
    assert_string_equal(b.data, "x=42");
    buf_free(&b);
}

/* Run the tool's descriptor on `args` as the kernel would (the calculator uses no service). */
static llmos_err run_tool(json_t *args, llmos_buf *out)
{
    ktool_env env = {.args = args, .pid = 1, .principal = "test", .out = out};
    return tool_calculator.run(&env);
}

static void test_tool_descriptor(void **state)
{
    (void)state;
    assert_string_equal(tool_calculator.name, "calculator");
    assert_int_equal(tool_calculator.capability, KCAP_COMPUTE);
    assert_true(tool_calculator.output_trusted);
    json_t *schema = json_loads(tool_calculator.parameters, 0, NULL);
    assert_non_null(schema);
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(schema, "properties"), "expression"), "type")),
        "string");
    json_decref(schema);
    assert_true(strlen(tool_calculator.description) > 20);

    llmos_buf b = {0};
    json_t *args = json_pack("{s:s}", "expression", "2^10 + 1/2");
    assert_int_equal(run_tool(args, &b), LLMOS_OK);
    assert_string_equal(b.data, "2049/2 = 1024.5");
    json_decref(args);
    buf_clear(&b);
    args = json_pack("{s:i}", "expression", 5);
    assert_int_equal(run_tool(args, &b), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "\"expression\""));
    json_decref(args);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_integers), cmocka_unit_test(test_rationals),
        cmocka_unit_test(test_reals),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_limits),   cmocka_unit_test(test_tool_descriptor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
