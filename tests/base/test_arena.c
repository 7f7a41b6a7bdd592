/* test_arena.c - arena allocation: alignment, zeroing, growth, reset, overflow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

static void test_alignment_and_zeroing(void **state)
{
    (void)state;
    llmos_arena *a = arena_new(128);
    assert_non_null(a);
    for (size_t n = 1; n < 300; n += 7) {
        unsigned char *p = arena_alloc(a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(p[i], 0);
        memset(p, 0xAB, n); /* writable, and must not disturb later allocations */
    }
    arena_free(a);
}

static void test_allocations_do_not_overlap(void **state)
{
    (void)state;
    llmos_arena *a = arena_new(64);
    char *ptrs[100];
    for (int i = 0; i < 100; i++) {
        ptrs[i] = arena_alloc(a, 40);
        memset(ptrs[i], i, 40);
    }
    for (int i = 0; i < 100; i++)
        for (int j = 0; j < 40; j++)
            assert_int_equal((unsigned char)ptrs[i][j], i);
    assert_true(arena_used(a) >= 100 * 40);
    arena_free(a);
}

static void test_large_request_and_reset(void **state)
{
    (void)state;
    llmos_arena *a = arena_new(64);
    char *big = arena_alloc(a, 1 << 20);
    assert_non_null(big);
    big[(1 << 20) - 1] = 1;
    arena_reset(a);
    assert_int_equal(arena_used(a), 0);
    char *p = arena_alloc(a, 16);
    assert_non_null(p);
    assert_int_equal(p[0], 0);
    arena_free(a);
}

static void test_strings(void **state)
{
    (void)state;
    llmos_arena *a = arena_new(0);
    assert_string_equal(arena_strdup(a, "hello"), "hello");
    assert_string_equal(arena_strndup(a, "hello", 3), "hel");
    assert_string_equal(arena_printf(a, "%d-%s", 42, "x"), "42-x");
    arena_free(a);
}

static void test_overflow_is_refused(void **state)
{
    (void)state;
    llmos_arena *a = arena_new(0);
    assert_null(arena_alloc(a, SIZE_MAX));
    assert_null(arena_alloc(a, SIZE_MAX - 8));
    assert_null(arena_calloc(a, SIZE_MAX / 2, 4));
    assert_non_null(arena_alloc(a, 8)); /* still usable */
    arena_free(a);
    arena_free(NULL);
    assert_null(arena_alloc(NULL, 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_zeroing),
        cmocka_unit_test(test_allocations_do_not_overlap),
        cmocka_unit_test(test_large_request_and_reset),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_overflow_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
