/* test_edit_distance.c - Levenshtein distance: the three edits, symmetry, bounds and strings
 * long enough to take the row from the heap, checked against a full-table reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

static size_t dist(const char *a, const char *b)
{
    size_t d = llmos_edit_distance(a, strlen(a), b, strlen(b));
    assert_int_equal(d, llmos_edit_distance(b, strlen(b), a, strlen(a)));
    return d;
}

static void test_small_cases(void **state)
{
    (void)state;
    assert_int_equal(dist("", ""), 0);
    assert_int_equal(dist("", "abc"), 3);
    assert_int_equal(dist("version", "version"), 0);
    assert_int_equal(dist("verison", "version"), 2);  /* a swap is two edits */
    assert_int_equal(dist("versio", "version"), 1);   /* insertion */
    assert_int_equal(dist("versionn", "version"), 1); /* deletion */
    assert_int_equal(dist("virsion", "version"), 1);  /* substitution */
    assert_int_equal(dist("kitten", "sitting"), 3);
    assert_int_equal(dist("flaw", "lawn"), 2);
    assert_int_equal(dist("abc", "xyz"), 3);
    /* bytes, not characters: é is two bytes in UTF-8 */
    assert_int_equal(dist("caf\xc3\xa9", "cafe"), 2);
}

/* Only the given lengths count: a prefix of a longer buffer, as a shell reads "/hlep args". */
static void test_lengths_not_terminators(void **state)
{
    (void)state;
    assert_int_equal(llmos_edit_distance("hlep args", 4, "help", 4), 2);
    assert_int_equal(llmos_edit_distance("help", 0, "help", 4), 4);
}

/* The whole (na+1) x (nb+1) table, the textbook way. */
static size_t reference(const char *a, size_t na, const char *b, size_t nb)
{
    size_t *t = malloc((na + 1) * (nb + 1) * sizeof *t);
    assert_non_null(t);
#define T(i, j) t[(i) * (nb + 1) + (j)]
    for (size_t i = 0; i <= na; i++)
        T(i, 0) = i;
    for (size_t j = 0; j <= nb; j++)
        T(0, j) = j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            size_t sub = T(i - 1, j - 1) + (a[i - 1] != b[j - 1]);
            size_t del = T(i - 1, j) + 1, ins = T(i, j - 1) + 1;
            T(i, j) = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    size_t d = T(na, nb);
#undef T
    free(t);
    return d;
}

/* Random strings over a small alphabet (so that matches happen), short and past the 128
 * bytes kept on the stack. */
static void test_against_reference(void **state)
{
    (void)state;
    static char a[400], b[400];
    uint32_t x = 12345;
    for (int round = 0; round < 300; round++) {
        size_t na = (x = x * 1103515245u + 12345u) >> 16 & (round < 200 ? 31 : 511);
        size_t nb = (x = x * 1103515245u + 12345u) >> 16 & (round < 200 ? 31 : 511);
        na %= sizeof a;
        nb %= sizeof b;
        for (size_t i = 0; i < na; i++)
            a[i] = (char)('a' + ((x = x * 1103515245u + 12345u) >> 16) % 3);
        for (size_t i = 0; i < nb; i++)
            b[i] = (char)('a' + ((x = x * 1103515245u + 12345u) >> 16) % 3);
        size_t want = reference(a, na, b, nb);
        if (llmos_edit_distance(a, na, b, nb) != want || llmos_edit_distance(b, nb, a, na) != want)
            fail_msg("round %d (%zu x %zu bytes): %zu, want %zu", round, na, nb,
                     llmos_edit_distance(a, na, b, nb), want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_cases),
        cmocka_unit_test(test_lengths_not_terminators),
        cmocka_unit_test(test_against_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
