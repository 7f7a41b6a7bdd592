/*
 * test_kvpool.c - the KV pool: contexts made with a pool take their cache's bytes from its
 * budget and give them back when freed; a context that does not fit is refused with the
 * numbers (asked, free, budget) in the message, and nothing is lent for it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/infer.h"
#include "testutil.h"

static void test_budget(void **state)
{
    (void)state;
    char path[4200];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    llmos_model *m = NULL;
    assert_int_equal(model_load(path, &m), LLMOS_OK);
    /* stories260K: 5 layers, 4 kv heads of 8: 128 bytes a row in F32, 256 positions */
    size_t one = model_kv_bytes(m, 256, GGML_TYPE_F32);
    assert_int_equal(one, 2 * 5 * 256 * 128);
    assert_int_equal(model_kv_bytes(m, 256, GGML_TYPE_F16), one / 2);

    model_kvpool *pool = NULL;
    assert_int_equal(model_kvpool_new(0, &pool), LLMOS_ERR_INVALID);
    assert_int_equal(model_kvpool_new(2 * one + one / 2, &pool), LLMOS_OK);
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = 256;
    p.kv_pool = pool;
    llmos_model_ctx *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(model_ctx_new(m, &p, &a), LLMOS_OK);
    assert_int_equal(model_ctx_new(m, &p, &b), LLMOS_OK);
    assert_int_equal(model_kvpool_used(pool), 2 * one);
    assert_int_equal(model_ctx_new(m, &p, &c), LLMOS_ERR_LIMIT);
    assert_null(c);
    const char *msg = llmos_errmsg();
    assert_non_null(strstr(msg, "256 positions"));
    assert_non_null(strstr(msg, "needs 327680 bytes"));
    assert_non_null(strstr(msg, "only 163840 bytes"));
    assert_non_null(strstr(msg, "budget of 819200 bytes"));
    assert_int_equal(model_kvpool_used(pool), 2 * one);
    p.kv_type = GGML_TYPE_F16; /* half the bytes: fits what is left */
    assert_int_equal(model_ctx_new(m, &p, &c), LLMOS_OK);
    assert_int_equal(model_kvpool_used(pool), 2 * one + one / 2);
    model_ctx_free(a);
    assert_int_equal(model_kvpool_used(pool), one + one / 2);
    model_ctx_free(b);
    model_ctx_free(c);
    assert_int_equal(model_kvpool_used(pool), 0);
    assert_int_equal(model_kvpool_budget(pool), 2 * one + one / 2);
    model_kvpool_free(pool);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_budget)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
