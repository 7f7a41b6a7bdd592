/* test_buf.c - the growable byte buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

static void test_append_and_terminate(void **state)
{
    (void)state;
    llmos_buf b = {0};
    assert_int_equal(buf_puts(&b, "abc"), LLMOS_OK);
    assert_int_equal(buf_putc(&b, 'd'), LLMOS_OK);
    assert_int_equal(buf_append(&b, "\0e", 2), LLMOS_OK);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "abcd\0e", 6);
    assert_int_equal(b.data[6], '\0');
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_growth_keeps_content(void **state)
{
    (void)state;
    llmos_buf b;
    buf_init(&b);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_printf(&b, "%04d", i % 10000), LLMOS_OK);
    assert_int_equal(b.len, 40000);
    assert_memory_equal(b.data + 4 * 1234, "1234", 4);
    assert_true(b.cap > b.len);
    buf_clear(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
}

static void test_detach(void **state)
{
    (void)state;
    llmos_buf b = {0};
    size_t n = 99;
    char *s = buf_detach(&b, &n); /* empty buffer gives "" */
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(n, 0);
    free(s);
    assert_int_equal(buf_puts(&b, "xyz"), LLMOS_OK);
    s = buf_detach(&b, &n);
    assert_string_equal(s, "xyz");
    assert_int_equal(n, 3);
    assert_null(b.data);
    free(s);
}

static void test_overflow_is_an_error(void **state)
{
    (void)state;
    llmos_buf b = {0};
    assert_int_equal(buf_puts(&b, "x"), LLMOS_OK);
    assert_int_equal(buf_reserve(&b, SIZE_MAX - 1), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "overflows"));
    assert_string_equal(b.data, "x"); /* untouched */
    buf_free(&b);
    buf_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_terminate),
        cmocka_unit_test(test_growth_keeps_content),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_overflow_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
