/* test_utf8.c - strict UTF-8 decoding, encoding, validation and stream tails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

static void test_decode_valid(void **state)
{
    (void)state;
    uint32_t cp;
    assert_int_equal(utf8_decode("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(utf8_decode("\xC3\xA9", 2, &cp), 2);
    assert_int_equal(cp, 0xE9);
    assert_int_equal(utf8_decode("\xE2\x82\xAC", 3, &cp), 3);
    assert_int_equal(cp, 0x20AC);
    assert_int_equal(utf8_decode("\xF0\x9F\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1F600);
    assert_int_equal(utf8_decode("\xF4\x8F\xBF\xBF", 4, &cp), 4);
    assert_int_equal(cp, 0x10FFFF);
}

static void test_decode_rejects_ill_formed(void **state)
{
    (void)state;
    uint32_t cp;
    const char *bad[] = {
        "\x80",             /* stray continuation */
        "\xC0\xAF",         /* overlong '/' */
        "\xC1\xBF",         /* overlong */
        "\xE0\x80\xAF",     /* overlong 3-byte */
        "\xED\xA0\x80",     /* surrogate U+D800 */
        "\xF0\x80\x80\xAF", /* overlong 4-byte */
        "\xF4\x90\x80\x80", /* above U+10FFFF */
        "\xF5\x80\x80\x80", /* invalid lead */
        "\xFF",
        "\xC3",         /* truncated */
        "\xE2\x82",     /* truncated */
        "\xE2\x28\xA1", /* bad continuation */
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++)
        assert_int_equal(utf8_decode(bad[i], strlen(bad[i]), &cp), 0);
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp += (cp < 0x1000 ? 1 : 97)) {
        char out[4];
        size_t n = utf8_encode(cp, out);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_true(n >= 1 && n <= 4);
        uint32_t back;
        assert_int_equal(utf8_decode(out, n, &back), n);
        assert_int_equal(back, cp);
    }
    char out[4];
    assert_int_equal(utf8_encode(0x110000, out), 0);
}

static void test_valid_prefix(void **state)
{
    (void)state;
    const char *s = "ok \xC3\xA9 then \xFF bad";
    assert_int_equal(utf8_valid_prefix(s, strlen(s)), 11);
    assert_true(utf8_valid("plain", 5));
    assert_false(utf8_valid("\xED\xA0\x80", 3));
    assert_true(utf8_valid("", 0));
}

static void test_incomplete_tail(void **state)
{
    (void)state;
    assert_int_equal(utf8_incomplete_tail("abc", 3), 0);
    assert_int_equal(utf8_incomplete_tail("a\xC3", 2), 1);
    assert_int_equal(utf8_incomplete_tail("a\xE2\x82", 3), 2);
    assert_int_equal(utf8_incomplete_tail("\xF0\x9F\x98", 3), 3);
    assert_int_equal(utf8_incomplete_tail("\xF0\x9F\x98\x80", 4), 0); /* complete */
    assert_int_equal(utf8_incomplete_tail("a\xFF", 2), 0);            /* invalid, not pending */
    assert_int_equal(utf8_incomplete_tail("\xE0\xA0", 2), 2);         /* E0 needs A0..BF */
    assert_int_equal(utf8_incomplete_tail("\xE0\x80", 2), 0);         /* overlong start */
    assert_int_equal(utf8_incomplete_tail("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_valid),      cmocka_unit_test(test_decode_rejects_ill_formed),
        cmocka_unit_test(test_encode_round_trip), cmocka_unit_test(test_valid_prefix),
        cmocka_unit_test(test_incomplete_tail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
