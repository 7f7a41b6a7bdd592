/*
 * pool.c - a thread pool for data-parallel loops.
 *
 * Dispatch is a generation counter: the caller publishes a job and bumps `generation`;
 * workers that see a new generation run their slice and decrement `pending`; the caller runs
 * slice 0 itself and then waits for `pending` to reach zero. Workers spin on the counter for a
 * short while after each job (inference issues hundreds of jobs per token, microseconds apart,
 * and a futex wake-up per job would cost more than the work), then sleep on a condition
 * variable. The caller always takes the mutex before broadcasting and a worker re-checks the
 * generation under the mutex before it sleeps, so no wake-up is lost.
 *
 * A static job gives worker i the i-th contiguous slice; a dynamic job (parallel_for_dynamic)
 * hands out chunks from an atomic counter, so on a busy machine a thread that lost its CPU for
 * a while does less of the work instead of making everyone wait for its fixed share.
 *
 * parallel_for calls on one pool are serialised by `dispatch`; a job must not call
 * parallel_for on the same pool (it would deadlock).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmos/base.h"

#define POOL_MAX_THREADS  256
#define POOL_SPIN_SECONDS 0.0002 /* how long an idle worker spins before sleeping */

typedef struct pool_worker {
    struct llmos_pool *pool;
    pthread_t thread;
    int index;
} pool_worker;

struct llmos_pool {
    int n_threads;
    pool_worker *workers; /* n_threads - 1 of them; the caller is worker 0 */

    pthread_mutex_t dispatch; /* one parallel_for at a time */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int sleepers; /* guarded by lock */

    _Alignas(64) atomic_uint_fast64_t generation;
    _Alignas(64) atomic_int pending;
    atomic_bool stop;

    /* the current job, written before generation is bumped */
    pool_range_fn fn;
    void *ctx;
    size_t n, chunk;
    bool dynamic; /* chunks go to whoever asks next (pool_parallel_for_dynamic) */
    _Alignas(64) atomic_size_t next; /* the next unclaimed index of a dynamic job */
};

double llmos_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

int pool_default_threads(void)
{
    const char *env = getenv("LLMOS_THREADS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v > 0 && v <= POOL_MAX_THREADS)
            return (int)v;
        LOG_WARN("pool", "LLMOS_THREADS=%s is not a thread count (1..%d); using the CPU count", env,
                 POOL_MAX_THREADS);
    }
    int n = llmos_cpu_features()->n_cpus;
    return n > 0 ? n : 1;
}

static void run_slice(llmos_pool *p, int worker)
{
    if (p->dynamic) {
        for (;;) {
            size_t begin = atomic_fetch_add_explicit(&p->next, p->chunk, memory_order_relaxed);
            if (begin >= p->n)
                return;
            size_t end = p->n - begin < p->chunk ? p->n : begin + p->chunk;
            p->fn(p->ctx, begin, end, worker);
        }
    }
    size_t begin = (size_t)worker * p->chunk;
    if (begin < p->n) {
        size_t end = begin + p->chunk;
        if (end > p->n || end < begin)
            end = p->n;
        p->fn(p->ctx, begin, end, worker);
    }
}

static void *worker_main(void *arg)
{
    pool_worker *w = arg;
    llmos_pool *p = w->pool;
    /* Generation 0 is the pool's state before any job. Reading the counter here instead would
     * lose a job published before this thread first ran. */
    uint_fast64_t seen = 0;
    for (;;) {
        /* spin, then sleep, until a new generation or stop */
        uint_fast64_t g;
        double spin_until = llmos_time_now() + POOL_SPIN_SECONDS;
        unsigned spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen &&
               !atomic_load_explicit(&p->stop, memory_order_relaxed)) {
            cpu_relax();
            if ((++spins & 255) == 0 && llmos_time_now() > spin_until) {
                pthread_mutex_lock(&p->lock);
                p->sleepers++;
                while (atomic_load(&p->generation) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->wake, &p->lock);
                p->sleepers--;
                pthread_mutex_unlock(&p->lock);
                spin_until = llmos_time_now() + POOL_SPIN_SECONDS;
            }
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        run_slice(p, w->index);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
}

llmos_err pool_new(int n_threads, llmos_pool **out)
{
    *out = NULL;
    if (n_threads <= 0)
        n_threads = pool_default_threads();
    if (n_threads > POOL_MAX_THREADS)
        return llmos_fail(LLMOS_ERR_INVALID, "thread pool: %d threads requested, at most %d",
                          n_threads, POOL_MAX_THREADS);
    llmos_pool *p = calloc(1, sizeof *p);
    if (!p)
        return llmos_fail(LLMOS_ERR_NOMEM, "thread pool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->dispatch, NULL);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    atomic_init(&p->generation, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->stop, false);
    if (n_threads > 1) {
        p->workers = calloc((size_t)n_threads - 1, sizeof *p->workers);
        if (!p->workers) {
            pool_free(p);
            return llmos_fail(LLMOS_ERR_NOMEM, "thread pool: out of memory");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        pool_worker *w = &p->workers[i - 1];
        w->pool = p;
        w->index = i;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            p->n_threads = i; /* only join the ones that started */
            pool_free(p);
            return llmos_fail(LLMOS_ERR_INTERNAL, "thread pool: cannot start thread %d", i);
        }
    }
    *out = p;
    return LLMOS_OK;
}

void pool_free(llmos_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->workers[i - 1].thread, NULL);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->dispatch);
    free(p);
}

int pool_threads(const llmos_pool *p)
{
    return p ? p->n_threads : 1;
}

/* Publish a job, run the caller's share, wait for the workers. */
static void dispatch(llmos_pool *p, size_t n, size_t chunk, bool dynamic, pool_range_fn fn,
                     void *ctx)
{
    pthread_mutex_lock(&p->dispatch);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    p->dynamic = dynamic;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_mutex_lock(&p->lock);
    if (p->sleepers)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);

    run_slice(p, 0);

    unsigned spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        cpu_relax();
        if ((++spins & 1023) == 0)
            sched_yield();
    }
    pthread_mutex_unlock(&p->dispatch);
}

void pool_parallel_for(llmos_pool *p, size_t n, size_t grain, pool_range_fn fn, void *ctx)
{
    if (n == 0)
        return;
    if (grain == 0)
        grain = 1;
    if (!p || p->n_threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    size_t nt = (size_t)p->n_threads;
    size_t chunk = (n + nt - 1) / nt;
    dispatch(p, n, (chunk + grain - 1) / grain * grain, false, fn, ctx);
}

void pool_parallel_for_dynamic(llmos_pool *p, size_t n, size_t chunk, pool_range_fn fn, void *ctx)
{
    if (n == 0)
        return;
    if (chunk == 0)
        chunk = 1;
    if (!p || p->n_threads == 1 || n <= chunk) {
        fn(ctx, 0, n, 0);
        return;
    }
    dispatch(p, n, chunk, true, fn, ctx);
}
