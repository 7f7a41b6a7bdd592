/* test_pool.c - the thread pool: coverage of ranges, grain alignment, reuse, stress. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "llmos/base.h"

typedef struct job {
    atomic_int *hits; /* per index */
    size_t grain;
    atomic_int bad; /* ranges not aligned to grain */
    atomic_int workers_seen[8];
} job;

static void mark(void *ctx, size_t begin, size_t end, int worker)
{
    job *j = ctx;
    if (begin % j->grain != 0)
        atomic_fetch_add(&j->bad, 1);
    if (worker >= 0 && worker < 8)
        atomic_fetch_add(&j->workers_seen[worker], 1);
    for (size_t i = begin; i < end; i++)
        atomic_fetch_add(&j->hits[i], 1);
}

static void run_case(llmos_pool *p, size_t n, size_t grain, bool dynamic)
{
    job j = {0};
    j.grain = grain ? grain : 1;
    j.hits = calloc(n ? n : 1, sizeof *j.hits);
    if (dynamic)
        pool_parallel_for_dynamic(p, n, grain, mark, &j);
    else
        pool_parallel_for(p, n, grain, mark, &j);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&j.hits[i]), 1);
    assert_int_equal(atomic_load(&j.bad), 0);
    free(j.hits);
}

static void test_every_index_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        llmos_pool *p;
        assert_int_equal(pool_new(threads, &p), LLMOS_OK);
        assert_int_equal(pool_threads(p), threads);
        size_t sizes[] = {0, 1, 2, 3, 7, 16, 63, 64, 65, 1000, 4099};
        size_t grains[] = {1, 4, 16, 64};
        for (size_t s = 0; s < LLMOS_ARRAY_LEN(sizes); s++)
            for (size_t g = 0; g < LLMOS_ARRAY_LEN(grains); g++)
                for (int dynamic = 0; dynamic < 2; dynamic++)
                    run_case(p, sizes[s], grains[g], dynamic);
        pool_free(p);
    }
    run_case(NULL, 100, 8, false); /* NULL pool runs inline */
    run_case(NULL, 100, 8, true);
}

static void test_uses_all_workers(void **state)
{
    (void)state;
    llmos_pool *p;
    assert_int_equal(pool_new(3, &p), LLMOS_OK);
    job j = {0};
    j.grain = 1;
    j.hits = calloc(300, sizeof *j.hits);
    pool_parallel_for(p, 300, 1, mark, &j);
    for (int w = 0; w < 3; w++)
        assert_int_equal(atomic_load(&j.workers_seen[w]), 1);
    free(j.hits);
    pool_free(p);
}

static void add_one(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    uint64_t *v = ctx;
    for (size_t i = begin; i < end; i++)
        v[i]++;
}

static void test_many_small_jobs(void **state)
{
    (void)state;
    /* the inference pattern: thousands of tiny jobs back to back, some after a pause long
     * enough for workers to fall asleep */
    llmos_pool *p;
    assert_int_equal(pool_new(2, &p), LLMOS_OK);
    uint64_t v[64] = {0};
    for (int round = 0; round < 20000; round++)
        pool_parallel_for(p, 64, 8, add_one, v);
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    pool_parallel_for(p, 64, 8, add_one, v);
    for (int i = 0; i < 64; i++)
        assert_int_equal(v[i], 20001);
    pool_free(p);
}

/* A dynamic job where one worker is slow: the others take over its share, so it runs far
 * fewer chunks than an even split would give it. */
static void slow_worker_one(void *ctx, size_t begin, size_t end, int worker)
{
    if (worker == 1) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    mark(ctx, begin, end, worker);
}

static void test_dynamic_balances(void **state)
{
    (void)state;
    llmos_pool *p;
    assert_int_equal(pool_new(2, &p), LLMOS_OK);
    job j = {0};
    j.grain = 1;
    j.hits = calloc(400, sizeof *j.hits);
    pool_parallel_for_dynamic(p, 400, 1, slow_worker_one, &j);
    for (size_t i = 0; i < 400; i++)
        assert_int_equal(atomic_load(&j.hits[i]), 1);
    /* an even split would give worker 1 200 chunks; 2 ms each would be 400 ms */
    assert_true(atomic_load(&j.workers_seen[1]) < 100);
    assert_true(atomic_load(&j.workers_seen[0]) > 300);
    free(j.hits);
    pool_free(p);
}

static void test_bad_thread_count(void **state)
{
    (void)state;
    llmos_pool *p = (llmos_pool *)1;
    assert_int_equal(pool_new(100000, &p), LLMOS_ERR_INVALID);
    assert_null(p);
    assert_true(pool_default_threads() >= 1);
    setenv("LLMOS_THREADS", "3", 1);
    assert_int_equal(pool_default_threads(), 3);
    setenv("LLMOS_THREADS", "zero", 1);
    assert_int_equal(pool_default_threads(), llmos_cpu_features()->n_cpus);
    unsetenv("LLMOS_THREADS");
    pool_free(NULL);
}

int main(void)
{
    llmos_log_set_level(LLMOS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_index_once), cmocka_unit_test(test_uses_all_workers),
        cmocka_unit_test(test_many_small_jobs),  cmocka_unit_test(test_dynamic_balances),
        cmocka_unit_test(test_bad_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
