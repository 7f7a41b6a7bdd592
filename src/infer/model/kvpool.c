/*
 * kvpool.c - one memory budget for the KV caches of many sequences.
 *
 * The local backend serves several chats at once, each in a context with a KV cache of its
 * own. The pool bounds their sum: a context is admitted only while the budget has room for
 * its whole cache (so that a running sequence never runs out of cache halfway through), and
 * the backend, told no, swaps out a sequence that is waiting (its KV snapshot kept in
 * ordinary memory, kvsnap.c) or makes the newcomer wait. The pool counts bytes under a
 * mutex; the caches are allocated by model.c as before.
 */
#include <assert.h>
#include <pthread.h>
#include <stdlib.h>

#include "infer/model/kv.h"

struct model_kvpool {
    pthread_mutex_t mu;
    size_t budget, used;
};

llmos_err model_kvpool_new(size_t budget_bytes, model_kvpool **out)
{
    *out = NULL;
    if (budget_bytes == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "KV pool: a budget of 0 bytes holds no sequence");
    model_kvpool *p = calloc(1, sizeof *p);
    if (!p)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory for a KV pool");
    pthread_mutex_init(&p->mu, NULL);
    p->budget = budget_bytes;
    *out = p;
    return LLMOS_OK;
}

void model_kvpool_free(model_kvpool *p)
{
    if (!p)
        return;
    assert(p->used == 0); /* every context drawing on it was freed */
    pthread_mutex_destroy(&p->mu);
    free(p);
}

size_t model_kvpool_budget(const model_kvpool *p)
{
    return p->budget;
}

size_t model_kvpool_used(const model_kvpool *p)
{
    model_kvpool *mp = (model_kvpool *)p;
    pthread_mutex_lock(&mp->mu);
    size_t used = mp->used;
    pthread_mutex_unlock(&mp->mu);
    return used;
}

llmos_err model_kvpool_take(model_kvpool *p, size_t bytes, size_t n_ctx)
{
    pthread_mutex_lock(&p->mu);
    size_t free_bytes = p->budget - p->used;
    bool fits = bytes <= free_bytes;
    if (fits)
        p->used += bytes;
    pthread_mutex_unlock(&p->mu);
    if (!fits)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "KV pool: a sequence of %zu positions needs %zu bytes (%.1f MiB) of KV "
                          "cache, but only %zu bytes (%.1f MiB) of the pool's budget of %zu "
                          "bytes (%.1f MiB) are free (raise the KV memory budget or use a "
                          "smaller context)",
                          n_ctx, bytes, (double)bytes / 1048576.0, free_bytes,
                          (double)free_bytes / 1048576.0, p->budget, (double)p->budget / 1048576.0);
    return LLMOS_OK;
}

void model_kvpool_give(model_kvpool *p, size_t bytes)
{
    pthread_mutex_lock(&p->mu);
    assert(bytes <= p->used);
    p->used -= bytes;
    pthread_mutex_unlock(&p->mu);
}
