/*
 * sched.c - the scheduler: the model serves one request at a time, and the requests that wait
 * for it are served fairly between principals.
 *
 * A request (one model call of a turn, one chat completion, one embedding) waits in a queue of
 * bounded length; a full queue refuses at once (LLMOS_ERR_BUSY, which the HTTP API answers with
 * 503). When the model is free, the waiter whose principal was served longest ago goes next,
 * and among waiters of one principal the one that came first: a principal with ten requests
 * queued does not make another principal wait for all ten. A turn releases the model between
 * its model calls, so turns of different processes interleave step by step.
 *
 * A waiter gives up when its cancel flag is set or its probe says the client went away; both
 * are checked at least every 100 ms.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"

void ksched_init(ksched *q, size_t max_queue)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_queue = max_queue ? max_queue : 64;
}

void ksched_destroy(ksched *q)
{
    assert(!q->busy && !q->head);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q->seen);
}

/* When `principal` was last served (0 = never); q->mu held. */
static uint64_t last_served(const ksched *q, const char *principal)
{
    for (size_t i = 0; i < q->n_seen; i++)
        if (strcmp(q->seen[i].name, principal) == 0)
            return q->seen[i].last_served;
    return 0;
}

static void mark_served(ksched *q, const char *principal)
{
    q->served++;
    q->clock++;
    for (size_t i = 0; i < q->n_seen; i++) {
        if (strcmp(q->seen[i].name, principal) == 0) {
            q->seen[i].last_served = q->clock;
            return;
        }
    }
    if (q->n_seen == q->cap_seen) {
        size_t cap = q->cap_seen ? 2 * q->cap_seen : 8;
        ksched_principal *n = realloc(q->seen, cap * sizeof *n);
        if (!n)
            return; /* fairness degrades to first come, first served; nothing breaks */
        q->seen = n;
        q->cap_seen = cap;
    }
    ksched_principal *e = &q->seen[q->n_seen++];
    memset(e, 0, sizeof *e);
    strncpy(e->name, principal, sizeof e->name - 1);
    e->last_served = q->clock;
}

/* The waiter that goes next; q->mu held, q->head non-NULL. */
static const ksched_waiter *next_up(const ksched *q)
{
    const ksched_waiter *best = q->head;
    uint64_t best_served = last_served(q, best->principal);
    for (const ksched_waiter *w = best->next; w; w = w->next) {
        uint64_t ls = last_served(q, w->principal);
        if (ls < best_served || (ls == best_served && w->arrival < best->arrival)) {
            best = w;
            best_served = ls;
        }
    }
    return best;
}

static void unlink_waiter(ksched *q, ksched_waiter *w)
{
    for (ksched_waiter **pp = &q->head; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            q->n_waiting--;
            pthread_cond_broadcast(&q->cv);
            return;
        }
    }
}

llmos_err ksched_acquire(ksched *q, const char *principal, const atomic_bool *cancel,
                         ksched_probe probe, void *probe_ctx)
{
    assert(principal);
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return llmos_fail(LLMOS_ERR_BUSY, "llmos is shutting down");
    }
    if ((q->busy || q->head) && q->n_waiting >= q->max_queue) {
        size_t n = q->n_waiting;
        q->rejected++;
        pthread_mutex_unlock(&q->mu);
        return llmos_fail(LLMOS_ERR_BUSY,
                          "the model is busy: %zu requests are already waiting for it (the "
                          "queue limit); retry later",
                          n);
    }
    ksched_waiter w = {.principal = principal, .arrival = ++q->clock};
    w.next = q->head;
    q->head = &w;
    q->n_waiting++;
    for (;;) {
        /* a waiter cancelled while it waited never takes the model */
        if (!q->busy && next_up(q) == &w && !(cancel && atomic_load(cancel)))
            break;
        bool gone = q->stopping || (cancel && atomic_load(cancel));
        if (!gone && probe) {
            /* the probe may block on a socket: never call it with the lock held */
            pthread_mutex_unlock(&q->mu);
            gone = !probe(probe_ctx);
            pthread_mutex_lock(&q->mu);
        }
        if (gone) {
            unlink_waiter(q, &w);
            pthread_mutex_unlock(&q->mu);
            return llmos_fail(LLMOS_ERR_CANCELLED, "the request was cancelled while it waited "
                                                   "for the model");
        }
        if (!q->busy && next_up(q) == &w && !(cancel && atomic_load(cancel)))
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    unlink_waiter(q, &w);
    q->busy = true;
    mark_served(q, principal);
    pthread_mutex_unlock(&q->mu);
    return LLMOS_OK;
}

void ksched_release(ksched *q)
{
    pthread_mutex_lock(&q->mu);
    assert(q->busy);
    q->busy = false;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
