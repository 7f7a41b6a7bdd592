/*
 * sched.c - the scheduler: the model's slots, shared between principals by priority.
 *
 * A model call (one step of a turn, one chat completion, one embedding) takes one of the
 * model's slots for its duration. A backend that batches (the local engine with several
 * sequences, a remote server with concurrent requests) has several slots, and the calls that
 * hold them at the same time run as one batch; otherwise there is one. Calls that find every
 * slot taken wait in a queue of bounded length; a full queue refuses at once (LLMOS_ERR_BUSY,
 * which the HTTP API answers with 503).
 *
 * Who goes next is stride scheduling (Waldspurger and Weihl, 1995): each principal has a share
 * (2^priority) and a pass, a virtual time that advances by KSCHED_STRIDE1 / share each time it
 * is served; the waiter whose principal has the smallest pass goes first, first come first
 * served among equals. Two principals of equal priority alternate however many requests each
 * has queued; a principal of priority 1 gets twice the turns of one of priority 0 while both
 * wait, and nobody starves. A principal that was idle rejoins at the current virtual time, so
 * idleness is not saved up. A turn releases its slot between model calls, so turns of
 * different processes interleave step by step.
 *
 * Tokens per minute: every call charges its prompt and completion tokens to its principal in a
 * window of sixty one-second buckets. A principal at its limit is refused (a request: HTTP 429,
 * retry after the window frees) or held back in the queue (a process: it is throttled, not
 * failed) until the window has room.
 *
 * A waiter gives up when its cancel flag is set or its probe says the client went away; both
 * are checked at least every 100 ms.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"

#define KSCHED_STRIDE1 ((uint64_t)1 << 20)

void ksched_init(ksched *q, size_t max_queue, size_t slots)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_queue = max_queue ? max_queue : 64;
    q->slots = slots ? slots : 1;
}

void ksched_destroy(ksched *q)
{
    assert(!q->running && !q->head);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    for (size_t i = 0; i < q->n_seen; i++)
        free(q->seen[i]);
    free(q->seen);
}

/* The record of `principal`, made on first sight; NULL when out of memory. q->mu held. */
static ksched_principal *principal_of(ksched *q, const char *principal)
{
    for (size_t i = 0; i < q->n_seen; i++)
        if (strcmp(q->seen[i]->name, principal) == 0)
            return q->seen[i];
    if (q->n_seen == q->cap_seen) {
        size_t cap = q->cap_seen ? 2 * q->cap_seen : 8;
        ksched_principal **n = realloc(q->seen, cap * sizeof *n);
        if (!n)
            return NULL;
        q->seen = n;
        q->cap_seen = cap;
    }
    ksched_principal *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    strncpy(e->name, principal, sizeof e->name - 1);
    e->stride = KSCHED_STRIDE1;
    e->pass = q->vtime;
    q->seen[q->n_seen++] = e;
    return e;
}

void ksched_set_limits(ksched *q, const char *principal, int priority, int64_t tokens_per_minute)
{
    if (priority < 0)
        priority = 0;
    if (priority > KSCHED_PRIORITY_MAX)
        priority = KSCHED_PRIORITY_MAX;
    pthread_mutex_lock(&q->mu);
    ksched_principal *e = principal_of(q, principal);
    if (e) {
        e->priority = priority;
        e->stride = KSCHED_STRIDE1 >> priority;
        e->tokens_per_minute = tokens_per_minute > 0 ? tokens_per_minute : 0;
    }
    pthread_mutex_unlock(&q->mu);
}

static int64_t now_second(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* Tokens e spent in the window ending at second `now`. */
static int64_t minute_tokens(const ksched_principal *e, int64_t now)
{
    int64_t sum = 0;
    for (int i = 0; i < KSCHED_WINDOW_S; i++)
        if (e->second[i] > now - KSCHED_WINDOW_S)
            sum += e->tokens[i];
    return sum;
}

void ksched_kv_touch(ksched *q, const char *principal)
{
    pthread_mutex_lock(&q->mu);
    ksched_principal *e = principal_of(q, principal);
    if (e)
        e->kv_dirty = true;
    pthread_mutex_unlock(&q->mu);
}

bool ksched_take_kv_dirty(ksched *q, const char *principal)
{
    bool dirty = false;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->n_seen; i++) {
        if (strcmp(q->seen[i]->name, principal) == 0) {
            dirty = q->seen[i]->kv_dirty;
            q->seen[i]->kv_dirty = false;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return dirty;
}

int64_t ksched_minute_tokens(const ksched *q)
{
    return minute_tokens(&q->all, now_second());
}

static bool over_rate(const ksched_principal *e, int64_t now)
{
    return e->tokens_per_minute > 0 && minute_tokens(e, now) >= e->tokens_per_minute;
}

/* Seconds until enough buckets leave the window for e to be under its limit again. */
static double rate_wait(const ksched_principal *e, int64_t now)
{
    int64_t spent = minute_tokens(e, now);
    for (int64_t s = now - KSCHED_WINDOW_S + 1; s <= now && spent >= e->tokens_per_minute; s++) {
        int i = (int)(s % KSCHED_WINDOW_S);
        if (e->second[i] == s)
            spent -= e->tokens[i];
        if (spent < e->tokens_per_minute)
            return (double)(s + KSCHED_WINDOW_S - now);
    }
    return spent < e->tokens_per_minute ? 0 : KSCHED_WINDOW_S;
}

double ksched_retry_after(ksched *q, const char *principal)
{
    pthread_mutex_lock(&q->mu);
    double wait = 0;
    for (size_t i = 0; i < q->n_seen; i++)
        if (strcmp(q->seen[i]->name, principal) == 0 && over_rate(q->seen[i], now_second()))
            wait = rate_wait(q->seen[i], now_second());
    pthread_mutex_unlock(&q->mu);
    return wait;
}

/* A principal's pass as the queue sees it: an idle one rejoins at the current virtual time. */
static uint64_t pass_of(const ksched *q, const ksched_principal *e)
{
    return e->pass > q->vtime ? e->pass : q->vtime;
}

/* The waiter that goes next (NULL when every waiter is held back by its rate). q->mu held. */
static const ksched_waiter *next_up(const ksched *q, int64_t now)
{
    const ksched_waiter *best = NULL;
    uint64_t best_pass = 0;
    for (const ksched_waiter *w = q->head; w; w = w->next) {
        if (over_rate(w->who, now))
            continue;
        uint64_t p = pass_of(q, w->who);
        if (!best || p < best_pass || (p == best_pass && w->arrival < best->arrival)) {
            best = w;
            best_pass = p;
        }
    }
    return best;
}

static void mark_served(ksched *q, ksched_principal *e)
{
    q->served++;
    q->vtime = pass_of(q, e);
    e->pass = q->vtime + e->stride;
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

/* May w take a slot now? q->mu held. */
static bool my_turn(const ksched *q, const ksched_waiter *w, const atomic_bool *cancel)
{
    return q->running < q->slots && next_up(q, now_second()) == w &&
           !(cancel && atomic_load(cancel));
}

llmos_err ksched_acquire(ksched *q, const ksched_ask *a)
{
    assert(a && a->principal);
    pthread_mutex_lock(&q->mu);
    if (q->stopping) {
        pthread_mutex_unlock(&q->mu);
        return llmos_fail(LLMOS_ERR_BUSY, "llmos is shutting down");
    }
    ksched_principal *who = principal_of(q, a->principal);
    if (!who) {
        pthread_mutex_unlock(&q->mu);
        return llmos_fail(LLMOS_ERR_NOMEM, "scheduler: no memory");
    }
    if (over_rate(who, now_second())) {
        q->throttled++;
        if (!a->throttle) {
            int64_t limit = who->tokens_per_minute;
            double wait = rate_wait(who, now_second());
            pthread_mutex_unlock(&q->mu);
            return llmos_fail(LLMOS_ERR_LIMIT,
                              "rate limit: '%s' may use %" PRId64 " tokens a minute and has used "
                              "them; retry in %.0f s",
                              a->principal, limit, wait);
        }
    }
    if ((q->running >= q->slots || q->head) && q->n_waiting >= q->max_queue) {
        size_t n = q->n_waiting;
        q->rejected++;
        pthread_mutex_unlock(&q->mu);
        return llmos_fail(LLMOS_ERR_BUSY,
                          "the model is busy: %zu requests are already waiting for it (the "
                          "queue limit); retry later",
                          n);
    }
    ksched_waiter w = {.who = who, .arrival = ++q->clock, .throttle = a->throttle};
    w.next = q->head;
    q->head = &w;
    q->n_waiting++;
    while (!my_turn(q, &w, a->cancel)) {
        bool gone = q->stopping || (a->cancel && atomic_load(a->cancel));
        if (!gone && a->probe) {
            /* the probe may block on a socket: never call it with the lock held */
            pthread_mutex_unlock(&q->mu);
            gone = !a->probe(a->probe_ctx);
            pthread_mutex_lock(&q->mu);
        }
        if (gone) {
            unlink_waiter(q, &w);
            pthread_mutex_unlock(&q->mu);
            return llmos_fail(LLMOS_ERR_CANCELLED, "the request was cancelled while it waited "
                                                   "for the model");
        }
        if (my_turn(q, &w, a->cancel))
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
    q->running++;
    mark_served(q, who);
    pthread_mutex_unlock(&q->mu);
    return LLMOS_OK;
}

/* Count tokens in e's bucket for this second. */
static void charge(ksched_principal *e, uint64_t tokens)
{
    int64_t now = now_second();
    int i = (int)(now % KSCHED_WINDOW_S);
    if (e->second[i] != now) {
        e->second[i] = now;
        e->tokens[i] = 0;
    }
    e->tokens[i] += (int64_t)tokens;
}

void ksched_release(ksched *q, const char *principal, uint64_t tokens)
{
    pthread_mutex_lock(&q->mu);
    assert(q->running > 0);
    q->running--;
    q->tokens += tokens;
    if (tokens) {
        charge(&q->all, tokens);
        ksched_principal *e = principal_of(q, principal);
        if (e)
            charge(e, tokens);
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
