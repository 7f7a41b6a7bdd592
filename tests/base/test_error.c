/* test_error.c - error codes, detail messages, context prefixes, per-thread isolation. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

static void test_strerror_names_every_code(void **state)
{
    (void)state;
    for (int e = 0; e < LLMOS_ERR_COUNT_; e++) {
        const char *s = llmos_strerror((llmos_err)e);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
    }
    assert_string_equal(llmos_strerror((llmos_err)999), "unknown error");
    assert_string_equal(llmos_strerror(LLMOS_ERR_NOT_FOUND), "not found");
}

static void test_fail_sets_message_and_returns_code(void **state)
{
    (void)state;
    llmos_err_clear();
    assert_string_equal(llmos_errmsg(), "success");
    llmos_err e = llmos_fail(LLMOS_ERR_FORMAT, "%s: offset %d: bad magic", "x.gguf", 0);
    assert_int_equal(e, LLMOS_ERR_FORMAT);
    assert_string_equal(llmos_errmsg(), "x.gguf: offset 0: bad magic");
    llmos_err_clear();
    assert_string_equal(llmos_errmsg(), "success");
}

static void test_context_prefixes(void **state)
{
    (void)state;
    llmos_fail(LLMOS_ERR_IO, "disk full");
    llmos_err e = llmos_fail_context(LLMOS_ERR_IO, "saving %s: ", "notes");
    assert_int_equal(e, LLMOS_ERR_IO);
    assert_string_equal(llmos_errmsg(), "saving notes: disk full");
    /* with no inner message the code's name is used */
    llmos_err_clear();
    llmos_fail_context(LLMOS_ERR_NOMEM, "loading: ");
    assert_string_equal(llmos_errmsg(), "loading: out of memory");
}

static void test_long_messages_truncate_safely(void **state)
{
    (void)state;
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    llmos_fail(LLMOS_ERR_INVALID, "%s", big);
    assert_true(strlen(llmos_errmsg()) < sizeof big);
    llmos_fail_context(LLMOS_ERR_INVALID, "%s", big);
    assert_true(strlen(llmos_errmsg()) <= 1023);
    assert_int_equal(llmos_errmsg()[0], 'a');
}

static void *other_thread(void *arg)
{
    (void)arg;
    llmos_fail(LLMOS_ERR_DENIED, "thread message");
    return NULL;
}

static void test_messages_are_per_thread(void **state)
{
    (void)state;
    llmos_fail(LLMOS_ERR_AUTH, "main message");
    pthread_t t;
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    assert_string_equal(llmos_errmsg(), "main message");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_names_every_code),
        cmocka_unit_test(test_fail_sets_message_and_returns_code),
        cmocka_unit_test(test_context_prefixes),
        cmocka_unit_test(test_long_messages_truncate_safely),
        cmocka_unit_test(test_messages_are_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
