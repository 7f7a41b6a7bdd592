/* test_bytes.c - byte order loads and stores against hand-written bytes, at odd alignment, and
 * hex encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

static void test_little_endian(void **state)
{
    (void)state;
    uint8_t buf[17] = {0};
    uint8_t *p = buf + 1; /* not aligned for either width */
    llmos_store_le32(p, 0x11223344u);
    const uint8_t want32[] = {0x44, 0x33, 0x22, 0x11};
    assert_memory_equal(p, want32, 4);
    assert_int_equal(llmos_load_le32(p), 0x11223344u);

    llmos_store_le64(p, 0x0102030405060708ull);
    const uint8_t want64[] = {8, 7, 6, 5, 4, 3, 2, 1};
    assert_memory_equal(p, want64, 8);
    assert_true(llmos_load_le64(p) == 0x0102030405060708ull);
    assert_int_equal(buf[0], 0);
    assert_int_equal(buf[9], 0);

    /* high bits survive (no sign extension through int promotion) */
    llmos_store_le64(p, UINT64_MAX - 1);
    assert_true(llmos_load_le64(p) == UINT64_MAX - 1);
    llmos_store_le32(p, 0xFFFFFFFEu);
    assert_int_equal(llmos_load_le32(p), 0xFFFFFFFEu);
}

static void test_big_endian(void **state)
{
    (void)state;
    const uint8_t b[] = {0, 0x80, 0x01, 0xFE, 0xFF};
    assert_int_equal(llmos_load_be16(b + 1), 0x8001);
    assert_int_equal(llmos_load_be16(b + 3), 0xFEFF);
    assert_int_equal(llmos_load_be32(b + 1), 0x8001FEFFu);
    /* SQLite writes a 65536-byte page size as 1 */
    const uint8_t one[] = {0x00, 0x01};
    assert_int_equal(llmos_load_be16(one), 1);
}

static void test_hex(void **state)
{
    (void)state;
    const uint8_t bin[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof bin + 1];
    memset(out, 'x', sizeof out);
    assert_ptr_equal(llmos_hex_encode(out, sizeof out, bin, sizeof bin), out);
    assert_string_equal(out, "00017f80abff");
    char empty[1] = {'x'};
    assert_string_equal(llmos_hex_encode(empty, sizeof empty, NULL, 0), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_little_endian),
        cmocka_unit_test(test_big_endian),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
