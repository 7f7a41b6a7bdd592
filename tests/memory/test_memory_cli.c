/*
 * test_memory_cli.c - `llmos memory` level by level, and `llmos memory verify`, through the
 * program as a user runs it:
 *
 *   levels    core (the default blocks), archival (newest first, pages, --json, and a search
 *             that ranks "when is the dentist" first for the dentist passage: the words and
 *             the vectors together), recall (what the shell said, by words and dates; a date
 *             range backwards is refused)
 *   embedder  the shell embeds with its own model and the store records it; a store of the
 *             lexical embedder still chats, with archival memory off and a note saying why
 *   verify    passes on a sound store, and fails naming the page for a bit flipped in any
 *             page of the database, one page at a time
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/json.h"
#include "testutil.h"

static char home[256];

/* Run llmos with the test home and passphrase; stdout (and stderr, appended) in *out. */
static int run(llmos_buf *out, const char *fmt, ...) LLMOS_PRINTF(2, 3);
static int run(llmos_buf *out, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    buf_clear(out);
    llmos_buf err = {0};
    int rc = tu_run_llmos(out, &err,
                          "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak "
                          "LLMOS_EMBED_MODEL= LLMOS_MODEL= %s",
                          home, args);
    assert_int_equal(buf_puts(out, err.data ? err.data : ""), LLMOS_OK);
    buf_free(&err);
    return rc;
}

static void test_levels(void **state)
{
    (void)state;
    assert_true(tu_mkdtemp("memcli", home, sizeof home));
    llmos_buf out = {0};
    assert_int_equal(
        run(&out, "memory add --embed-model lexical the dentist appointment is on Tuesday at 3pm"),
        0);
    assert_int_equal(run(&out, "memory add buy milk and bread on the way home"), 0);
    assert_int_equal(run(&out, "memory add the car needs new tyres before winter"), 0);

    /* the query: the dentist first of three */
    assert_int_equal(run(&out, "memory search when is the dentist -k 3"), 0);
    assert_true(strncmp(out.data, "1. #1 ", 6) == 0);
    assert_int_equal(run(&out, "memory archival tyres for the car -k 1"), 0);
    assert_true(strncmp(out.data, "1. #3 ", 6) == 0);

    /* newest first, by pages */
    assert_int_equal(run(&out, "memory archival"), 0);
    char *p3 = strstr(out.data, "#3 "), *p1 = strstr(out.data, "#1 ");
    assert_non_null(p3);
    assert_non_null(p1);
    assert_true(p3 < p1);
    assert_int_equal(run(&out, "memory archival --page 1 -k 2"), 0);
    assert_non_null(strstr(out.data, "#1 "));
    assert_null(strstr(out.data, "#2 "));
    assert_int_equal(run(&out, "memory archival --page 9"), 0);
    assert_non_null(strstr(out.data, "no more memories"));
    assert_int_equal(run(&out, "memory archival --json"), 0);
    json_t *j = NULL;
    assert_int_equal(ljson_parse_text(out.data, out.len, "archival", 4, &j), LLMOS_OK);
    assert_int_equal(json_array_size(j), 3);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "id")), 3);
    assert_false(json_is_true(json_object_get(json_array_get(j, 0), "untrusted")));
    json_decref(j);

    /* core: the default blocks with their limits */
    assert_int_equal(run(&out, "memory core"), 0);
    assert_non_null(strstr(out.data, "persona ("));
    assert_non_null(strstr(out.data, "human (0 of"));
    assert_int_equal(run(&out, "memory core --json"), 0);
    assert_int_equal(ljson_parse_text(out.data, out.len, "core", 4, &j), LLMOS_OK);
    assert_int_equal(json_array_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(j, 0), "label")),
                        "persona");
    json_decref(j);

    /* recall: nothing said yet; bad ranges and options are clear errors */
    assert_int_equal(run(&out, "memory recall"), 0);
    assert_non_null(strstr(out.data, "nothing said yet"));
    assert_int_equal(run(&out, "memory recall --since 2026-03-02 --until 2026-03-01"), 1);
    assert_non_null(strstr(out.data, "before it starts"));
    assert_int_equal(run(&out, "memory recall --since yesterday"), 2);
    assert_non_null(strstr(out.data, "YYYY-MM-DD"));
    assert_int_equal(run(&out, "memory recall -k 51"), 2);
    assert_int_equal(run(&out, "memory core --page 2"), 2);
    assert_int_equal(run(&out, "memory stats extra"), 2);
    assert_int_equal(run(&out, "memory reembed"), 2);
    assert_non_null(strstr(out.data, "--embed-model"));
    buf_free(&out);
    tu_rmrf(home);
}

/* The shell on a new store embeds with its model and records it; its messages are in recall;
 * on a lexical store it still answers, with archival memory off and a note. */
static void test_shell_embedder_and_recall(void **state)
{
    (void)state;
    char model[4096];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    assert_true(tu_mkdtemp("memcli", home, sizeof home));
    llmos_buf out = {0};
    assert_int_equal(run(&out, "--model '%s' -n 8 --temp 0 'Lily liked the red kite'", model), 0);
    assert_null(strstr(out.data, "archival memory is off"));
    assert_int_equal(run(&out, "memory stats"), 0);
    assert_non_null(strstr(out.data, "engine:stories260K 64"));
    assert_int_equal(run(&out, "memory recall kite"), 0);
    assert_non_null(strstr(out.data, "user] Lily liked the red kite"));
    assert_int_equal(run(&out, "memory recall --since 2000-01-01 --json"), 0);
    json_t *j = NULL;
    assert_int_equal(ljson_parse_text(out.data, out.len, "recall", 4, &j), LLMOS_OK);
    assert_true(json_array_size(j) >= 2); /* the question and the answer */
    json_decref(j);
    assert_int_equal(run(&out, "memory recall --until 2000-01-01"), 0);
    assert_non_null(strstr(out.data, "nothing said"));
    /* the store is the model's: `memory add` takes the shell's model from LLMOS_MODEL */
    assert_int_equal(run(&out, "LLMOS_MODEL='%s' memory add the kite was red", model), 0);
    assert_int_equal(run(&out, "memory add the kite was red"), 1);
    assert_non_null(strstr(out.data, "engine:stories260K 64"));
    tu_rmrf(home);

    assert_true(tu_mkdtemp("memcli", home, sizeof home));
    assert_int_equal(run(&out, "memory add --embed-model lexical a lexical memory"), 0);
    assert_int_equal(run(&out, "--model '%s' -n 4 --temp 0 'hello'", model), 0);
    assert_non_null(strstr(out.data, "archival memory is off this run"));
    assert_non_null(strstr(out.data, "reembed"));
    buf_free(&out);
    tu_rmrf(home);
}

/* Parse "pages:            N x S bytes" from `memory stats`. */
static void store_pages(llmos_buf *out, long *n, long *size)
{
    assert_int_equal(run(out, "memory stats"), 0);
    const char *p = strstr(out->data, "pages:");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "pages: %ld x %ld bytes", n, size), 2);
}

static void flip_bit(const char *path, long offset, int bit)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    int c = fgetc(f);
    assert_true(c != EOF);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    assert_int_equal(fputc(c ^ (1 << bit), f), c ^ (1 << bit));
    assert_int_equal(fclose(f), 0);
}

static void test_verify_every_page(void **state)
{
    (void)state;
    assert_true(tu_mkdtemp("memcli", home, sizeof home));
    llmos_buf out = {0};
    assert_int_equal(run(&out, "memory add --embed-model lexical first memory"), 0);
    for (int i = 0; i < 40; i++)
        assert_int_equal(run(&out,
                             "memory add memory number %d with some words to fill pages "
                             "of the store with text and vectors",
                             i),
                         0);
    assert_int_equal(run(&out, "memory verify"), 0);
    assert_non_null(strstr(out.data, "verified: nothing wrong"));
    assert_non_null(strstr(out.data, "41 vectors of lexical-v1"));
    assert_non_null(strstr(out.data, "audit chain:"));
    long pages = 0, size = 0;
    store_pages(&out, &pages, &size);
    assert_true(pages >= 4);
    char db[512];
    snprintf(db, sizeof db, "%s/store/store.db", home);
    for (long pg = 0; pg < pages; pg++) {
        /* a different byte and bit of each page: ciphertext, nonce and tag all count */
        long offset = pg * size + (pg * 977) % size;
        int bit = (int)(pg % 8);
        flip_bit(db, offset, bit);
        assert_int_equal(run(&out, "memory verify"), 1);
        char want[64];
        snprintf(want, sizeof want, "page %ld", pg + 1);
        if (!strstr(out.data, want))
            fail_msg("a bit flipped in page %ld: the report does not name it:\n%s", pg + 1,
                     out.data);
        assert_null(strstr(out.data, "nothing wrong"));
        flip_bit(db, offset, bit); /* put it back */
    }
    assert_int_equal(run(&out, "memory verify"), 0);
    assert_non_null(strstr(out.data, "verified: nothing wrong"));
    buf_free(&out);
    tu_rmrf(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_shell_embedder_and_recall),
        cmocka_unit_test(test_verify_every_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
