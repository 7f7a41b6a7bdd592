/*
 * batcher.c - continuous batching, the KV pool's admission and swapping, and the prefix
 * cache of the local backend (batcher.h says what each does for a chat).
 *
 * There is no scheduler thread. Each chat's thread hands its tokens over and waits; the
 * first waiting thread that finds no step running and either every running chat waiting
 * (nothing more can join) or the gather window over (LOCAL_GATHER_SECONDS after the latest
 * step, so that a slow client's callback cannot hold the others for long) runs the next step
 * itself, with the lock released during the forward pass, then wakes everyone. A step takes
 * every decode token first (one per sequence), then prompt tokens in the order they were
 * handed over, up to n_batch tokens in all: a long prompt goes in over several steps, each
 * shared with everyone's decoding, and never stalls them.
 *
 * State, under `mu`: every sequence the batcher knows is in seqs[]: active (a chat holds
 * it), or kept (finished, with a scope: its KV resident or, after a swap, as a snapshot in
 * snap). A sequence's toks[] are the ids its cache holds; only the step leader appends to
 * them, and only while the sequence is pending in a step.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "infer/backend/batcher.h"

#define LOCAL_GATHER_SECONDS 0.002 /* how long a step waits for chats still sampling */
#define LOCAL_POLL_SECONDS   0.01  /* how often a waiting chat looks at its cancel flag */

struct local_seq {
    local_batcher *b;
    llmos_model_ctx *ctx; /* NULL while swapped out or before admission */
    int32_t *toks;        /* the ids the cache (or the snapshot) holds */
    size_t n_toks, cap;
    char *scope;    /* NULL: never shared */
    bool active;    /* a chat holds it */
    bool running;   /* ... and is in its generation loop */
    bool broken;    /* an evaluation failed: the cache may not match toks */
    llmos_buf snap; /* a swapped-out sequence's KV snapshot */
    uint64_t used;  /* LRU clock */
    float *scratch; /* n_vocab floats */
    const atomic_bool *cancel;

    /* the evaluation handed over and not yet done */
    const int32_t *pend;
    size_t pend_n;
    uint64_t order;
    bool pending, in_step;
    llmos_err err;
    char *errmsg;
};

struct local_batcher {
    local_batcher_params p;
    model_kvpool *kv;
    model_batch *batch;
    size_t n_vocab;
    pthread_mutex_t mu, compute;
    pthread_cond_t cv; /* on CLOCK_MONOTONIC */
    local_seq **seqs;
    size_t n_seqs, cap_seqs;
    size_t n_active, n_running, n_pending, n_waiting;
    bool running; /* a step is in progress */
    double last_end;
    uint64_t clock, order;
    size_t snap_bytes;
    model_batch_seq *step_in;
    local_seq **step_seqs;
    local_batcher_stats st;
};

/* ---- helpers (mu held) ------------------------------------------------------------------ */

static void wait_until(local_batcher *b, double t)
{
    double now = llmos_time_now();
    if (t <= now)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double dt = t - now;
    time_t sec = (time_t)dt;
    long nsec = ts.tv_nsec + (long)((dt - (double)sec) * 1e9);
    ts.tv_sec += sec + nsec / 1000000000L;
    ts.tv_nsec = nsec % 1000000000L;
    (void)pthread_cond_timedwait(&b->cv, &b->mu, &ts);
}

static bool cancelled(const atomic_bool *c)
{
    return c && atomic_load(c);
}

static void seq_free(local_seq *s)
{
    if (!s)
        return;
    model_ctx_free(s->ctx);
    free(s->toks);
    free(s->scope);
    buf_free(&s->snap);
    free(s->scratch);
    free(s->errmsg);
    free(s);
}

/* Forget s altogether. */
static void drop(local_batcher *b, local_seq *s)
{
    assert(!s->active && !s->pending);
    for (size_t i = 0; i < b->n_seqs; i++)
        if (b->seqs[i] == s) {
            b->seqs[i] = b->seqs[--b->n_seqs];
            break;
        }
    b->snap_bytes -= s->snap.len;
    seq_free(s);
}

/* Swap a kept sequence out: its cache becomes a snapshot in memory (kept while the snapshots
 * together stay within the KV budget, the oldest dropped first) and goes back to the pool. */
static void swap_out(local_batcher *b, local_seq *s)
{
    assert(!s->active && s->ctx);
    buf_clear(&s->snap);
    if (model_kv_save(s->ctx, s->toks, &s->snap) != LLMOS_OK) {
        llmos_err_clear();
        drop(b, s); /* no memory for it: the prefix is recomputed when needed */
        return;
    }
    model_ctx_free(s->ctx);
    s->ctx = NULL;
    b->snap_bytes += s->snap.len;
    b->st.swaps_out++;
    while (b->snap_bytes > b->p.kv_mem) {
        local_seq *old = NULL;
        for (size_t i = 0; i < b->n_seqs; i++) {
            local_seq *o = b->seqs[i];
            if (!o->active && !o->ctx && o->snap.len && (!old || o->used < old->used))
                old = o;
        }
        if (!old)
            break;
        drop(b, old);
    }
}

/* The least recently used kept sequence whose cache is resident, or NULL. */
static local_seq *lru_kept(local_batcher *b)
{
    local_seq *best = NULL;
    for (size_t i = 0; i < b->n_seqs; i++) {
        local_seq *s = b->seqs[i];
        if (!s->active && s->ctx && (!best || s->used < best->used))
            best = s;
    }
    return best;
}

static bool others_hold_caches(local_batcher *b, const local_seq *self)
{
    for (size_t i = 0; i < b->n_seqs; i++)
        if (b->seqs[i] != self && b->seqs[i]->active && b->seqs[i]->ctx)
            return true;
    return false;
}

/* Give s a cache from the pool, swapping out kept sequences or waiting for running ones as
 * needed, and restore its snapshot into it if it was swapped out. */
static llmos_err ensure_ctx(local_batcher *b, local_seq *s, const atomic_bool *cancel)
{
    if (s->ctx)
        return LLMOS_OK;
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = b->p.n_ctx;
    cp.n_batch = 1; /* passes run in the batch's buffers */
    cp.kv_type = b->p.kv_type;
    cp.kv_pool = b->kv;
    for (;;) {
        llmos_err err = model_ctx_new(b->p.model, &cp, &s->ctx);
        if (!err)
            break;
        if (err != LLMOS_ERR_LIMIT)
            return err;
        local_seq *victim = lru_kept(b);
        if (victim) {
            llmos_err_clear();
            swap_out(b, victim);
            continue;
        }
        if (!others_hold_caches(b, s))
            return err; /* one sequence does not fit the budget: the pool's message */
        llmos_err_clear();
        if (cancelled(cancel))
            return llmos_fail(LLMOS_ERR_CANCELLED, "cancelled while waiting for a KV cache");
        wait_until(b, llmos_time_now() + LOCAL_POLL_SECONDS);
    }
    if (s->snap.len) {
        llmos_err err =
            model_kv_restore(s->ctx, (const uint8_t *)s->snap.data, s->snap.len, NULL, NULL);
        b->snap_bytes -= s->snap.len;
        buf_free(&s->snap);
        if (err) { /* our own bytes: cannot happen unless memory was corrupted */
            llmos_err_clear();
            s->n_toks = 0;
        }
        b->st.swaps_in++;
    }
    if (model_ctx_pos(s->ctx) != s->n_toks) /* a fresh cache */
        s->n_toks = 0;
    return LLMOS_OK;
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t n = 0;
    while (n < na && n < nb && a[n] == b[n])
        n++;
    return n;
}

/* ---- the batcher ---------------------------------------------------------------------------- */

llmos_err local_batcher_new(const local_batcher_params *p, local_batcher **out)
{
    *out = NULL;
    assert(p->model && p->n_ctx > 0 && p->max_seqs > 0 && p->n_batch >= p->max_seqs);
    size_t one = model_kv_bytes(p->model, p->n_ctx, p->kv_type);
    if (p->kv_mem < one)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "local backend: a KV memory budget of %zu bytes (%.1f MiB) cannot hold "
                          "one sequence of %u positions, which needs %zu bytes (%.1f MiB) in "
                          "%s; raise the budget or lower the context",
                          p->kv_mem, (double)p->kv_mem / 1048576.0, p->n_ctx, one,
                          (double)one / 1048576.0, quant_type_name(p->kv_type));
    local_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    b->p = *p;
    b->n_vocab = model_hparams_of(p->model)->n_vocab;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->compute, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    model_batch_params bp = {
        .n_tokens = p->n_batch, .n_seqs = p->max_seqs, .n_ctx = p->n_ctx, .pool = p->pool};
    llmos_err err = model_kvpool_new(p->kv_mem, &b->kv);
    if (!err)
        err = model_batch_new(p->model, &bp, &b->batch);
    b->step_in = calloc(p->max_seqs, sizeof *b->step_in);
    b->step_seqs = calloc(p->max_seqs, sizeof *b->step_seqs);
    if (!err && (!b->step_in || !b->step_seqs))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (err) {
        local_batcher_free(b);
        return err;
    }
    *out = b;
    return LLMOS_OK;
}

void local_batcher_free(local_batcher *b)
{
    if (!b)
        return;
    assert(b->n_active == 0);
    for (size_t i = 0; i < b->n_seqs; i++)
        seq_free(b->seqs[i]);
    free(b->seqs);
    model_batch_free(b->batch);
    model_kvpool_free(b->kv);
    free(b->step_in);
    free(b->step_seqs);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->compute);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

llmos_err local_batcher_admit(local_batcher *b, const char *scope, const int32_t *prompt, size_t n,
                              const atomic_bool *cancel, local_seq **out, size_t *n_cached)
{
    *out = NULL;
    *n_cached = 0;
    assert(n > 0);
    pthread_mutex_lock(&b->mu);
    b->n_waiting++;
    while (b->n_active >= b->p.max_seqs && !cancelled(cancel))
        wait_until(b, llmos_time_now() + LOCAL_POLL_SECONDS);
    b->n_waiting--;
    if (cancelled(cancel)) {
        pthread_mutex_unlock(&b->mu);
        return llmos_fail(LLMOS_ERR_CANCELLED, "cancelled while waiting for a turn");
    }

    /* the kept sequence of this scope that shares the longest prefix */
    local_seq *s = NULL;
    size_t common = 0;
    for (size_t i = 0; scope && i < b->n_seqs; i++) {
        local_seq *o = b->seqs[i];
        if (o->active || !o->scope || strcmp(o->scope, scope) != 0)
            continue;
        size_t c = common_prefix(o->toks, o->n_toks, prompt, n);
        if (c > common || (c == common && c > 0 && o->used > s->used)) {
            s = o;
            common = c;
        }
    }
    llmos_err err = LLMOS_OK;
    bool fresh = s == NULL;
    if (fresh) {
        s = calloc(1, sizeof *s);
        if (s) {
            s->b = b;
            s->scratch = malloc(b->n_vocab * sizeof *s->scratch);
            s->scope = scope ? strdup(scope) : NULL;
        }
        local_seq **nv = NULL;
        if (s && b->n_seqs == b->cap_seqs) {
            size_t cap = b->cap_seqs ? 2 * b->cap_seqs : 16;
            nv = realloc(b->seqs, cap * sizeof *nv);
            if (nv) {
                b->seqs = nv;
                b->cap_seqs = cap;
            }
        }
        if (!s || !s->scratch || (scope && !s->scope) || b->n_seqs == b->cap_seqs) {
            seq_free(s);
            pthread_mutex_unlock(&b->mu);
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        }
        b->seqs[b->n_seqs++] = s;
    }
    s->active = true;
    b->n_active++;
    if (s->cap < n) {
        int32_t *nt = realloc(s->toks, n * sizeof *nt);
        if (!nt)
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        else {
            s->toks = nt;
            s->cap = n;
        }
    }
    if (!err)
        err = ensure_ctx(b, s, cancel);
    if (err) {
        s->active = false;
        b->n_active--;
        if (fresh || !s->ctx) /* a kept sequence stays kept (resident or as its snapshot) */
            drop(b, s);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        return err;
    }
    if (common > s->n_toks)
        common = s->n_toks; /* the snapshot could not be restored */
    if (common == n)
        common = n - 1; /* the last prompt token is evaluated again, for its logits */
    model_ctx_truncate(s->ctx, common);
    s->n_toks = common;
    s->running = true;
    s->broken = false;
    s->cancel = cancel;
    s->used = ++b->clock;
    b->n_running++;
    b->st.cached_tokens += common;
    pthread_mutex_unlock(&b->mu);
    *out = s;
    *n_cached = common;
    return LLMOS_OK;
}

llmos_model_ctx *local_seq_ctx(local_seq *s)
{
    return s->ctx;
}

float *local_seq_scratch(local_seq *s)
{
    return s->scratch;
}

void local_batcher_release(local_batcher *b, local_seq *s, bool keep)
{
    if (!s)
        return;
    pthread_mutex_lock(&b->mu);
    assert(s->active && s->running && !s->pending);
    s->running = false;
    b->n_running--;
    s->active = false;
    b->n_active--;
    s->cancel = NULL;
    s->used = ++b->clock;
    if (!keep || !s->scope || s->broken)
        drop(b, s);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int by_order(const void *a, const void *b)
{
    const local_seq *x = *(local_seq *const *)a, *y = *(local_seq *const *)b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* One step, led by the calling thread (mu held on entry and on return, released during the
 * forward pass): decode tokens first, then prompt chunks in the order they came. */
static void run_step(local_batcher *b)
{
    assert(!b->running && b->n_pending > 0);
    b->running = true;
    size_t k = 0, budget = b->p.n_batch, n_prompts = 0;
    local_seq **prompts = b->step_seqs; /* sorted here, then moved behind the decodes */
    local_seq *decodes[b->p.max_seqs];
    size_t n_decodes = 0;
    for (size_t i = 0; i < b->n_seqs; i++) {
        local_seq *s = b->seqs[i];
        if (!s->pending)
            continue;
        if (s->pend_n == 1)
            decodes[n_decodes++] = s;
        else
            prompts[n_prompts++] = s;
    }
    qsort(prompts, n_prompts, sizeof *prompts, by_order);
    local_seq *chosen[b->p.max_seqs];
    for (size_t i = 0; i < n_decodes && budget > 0; i++, budget--)
        chosen[k++] = decodes[i];
    for (size_t i = 0; i < n_prompts && budget > 0; i++) {
        chosen[k++] = prompts[i];
        budget -= prompts[i]->pend_n < budget ? prompts[i]->pend_n : budget;
    }
    size_t total = 0;
    for (size_t i = 0; i < k; i++) {
        local_seq *s = chosen[i];
        size_t take = s->pend_n < b->p.n_batch - total ? s->pend_n : b->p.n_batch - total;
        b->step_in[i] = (model_batch_seq){.ctx = s->ctx, .tokens = s->pend, .n = take};
        s->in_step = true;
        total += take;
    }
    pthread_mutex_unlock(&b->mu);

    pthread_mutex_lock(&b->compute);
    llmos_err err = model_eval_batch(b->batch, b->step_in, k);
    char *msg = err ? strdup(llmos_errmsg()) : NULL;
    pthread_mutex_unlock(&b->compute);

    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < k; i++) {
        local_seq *s = chosen[i];
        size_t take = b->step_in[i].n;
        s->in_step = false;
        if (err) {
            s->err = err;
            free(s->errmsg);
            s->errmsg = msg ? strdup(msg) : NULL;
            s->broken = true;
            s->pending = false;
            b->n_pending--;
            continue;
        }
        memcpy(s->toks + s->n_toks, s->pend, take * sizeof *s->toks);
        s->n_toks += take;
        s->pend += take;
        s->pend_n -= take;
        if (s->pend_n == 0) {
            s->pending = false;
            b->n_pending--;
        }
    }
    free(msg);
    b->st.steps++;
    b->st.tokens += total;
    b->st.last_batch = k;
    b->last_end = llmos_time_now();
    b->running = false;
    pthread_cond_broadcast(&b->cv);
}

llmos_err local_batcher_eval(void *user, const int32_t *ids, size_t n, const float **logits)
{
    local_seq *s = user;
    local_batcher *b = s->b;
    if (logits)
        *logits = NULL;
    size_t pos = model_ctx_pos(s->ctx), n_ctx = model_ctx_size(s->ctx);
    if (n == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "local backend: no tokens to evaluate");
    if (n > n_ctx - pos)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "context length %zu exceeded: %zu positions are used and %zu more "
                          "tokens were given",
                          n_ctx, pos, n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= b->n_vocab)
            return llmos_fail(LLMOS_ERR_INVALID, "token %zu of %zu is outside the vocabulary", i,
                              n);
    assert(pos == s->n_toks);
    if (s->cap < pos + n) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < pos + n)
            cap *= 2;
        int32_t *nt = realloc(s->toks, cap * sizeof *nt);
        if (!nt)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        s->toks = nt; /* only this thread touches toks while s is not pending */
        s->cap = cap;
    }

    pthread_mutex_lock(&b->mu);
    s->pend = ids;
    s->pend_n = n;
    s->pending = true;
    s->err = LLMOS_OK;
    s->order = ++b->order;
    b->n_pending++;
    double handed = llmos_time_now();
    while (s->pending) {
        if (!s->in_step && cancelled(s->cancel)) {
            s->pending = false; /* withdrawn: what was evaluated stays in the cache */
            b->n_pending--;
            pthread_cond_broadcast(&b->cv);
            pthread_mutex_unlock(&b->mu);
            return llmos_fail(LLMOS_ERR_CANCELLED, "cancelled");
        }
        double since = handed > b->last_end ? handed : b->last_end;
        double deadline = since + LOCAL_GATHER_SECONDS;
        if (!b->running && (b->n_pending >= b->n_running || llmos_time_now() >= deadline)) {
            run_step(b);
            continue;
        }
        double poll = llmos_time_now() + LOCAL_POLL_SECONDS;
        wait_until(b, b->running || deadline > poll ? poll : deadline);
    }
    llmos_err err = s->err;
    pthread_mutex_unlock(&b->mu);
    if (err)
        return llmos_fail(err, "%s", s->errmsg ? s->errmsg : "a batched evaluation failed");
    if (logits)
        *logits = model_ctx_logits(s->ctx);
    return LLMOS_OK;
}

void local_batcher_exclusive(local_batcher *b, void (*fn)(void *user), void *user)
{
    if (!b) { /* no batcher (an encoder backend): nothing else uses the pool */
        fn(user);
        return;
    }
    pthread_mutex_lock(&b->compute);
    fn(user);
    pthread_mutex_unlock(&b->compute);
}

void local_batcher_get_stats(local_batcher *b, local_batcher_stats *st)
{
    *st = (local_batcher_stats){0};
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    *st = b->st;
    st->running = b->n_running;
    st->waiting = b->n_waiting;
    st->kept = st->swapped = 0;
    for (size_t i = 0; i < b->n_seqs; i++) {
        const local_seq *s = b->seqs[i];
        if (!s->active && s->ctx)
            st->kept++;
        else if (!s->active)
            st->swapped++;
    }
    st->kv_used = model_kvpool_used(b->kv);
    st->kv_budget = b->p.kv_mem;
    pthread_mutex_unlock(&b->mu);
}

/* ---- context switches: a scope's cache as bytes and back ------------------------------------ */

/* The kept sequence of `scope` used last, or NULL. */
static local_seq *latest_of_scope(local_batcher *b, const char *scope)
{
    local_seq *best = NULL;
    for (size_t i = 0; i < b->n_seqs; i++) {
        local_seq *s = b->seqs[i];
        if (!s->active && s->scope && strcmp(s->scope, scope) == 0 &&
            (!best || s->used > best->used))
            best = s;
    }
    return best;
}

static llmos_err no_cache(void)
{
    return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                      "local backend: this model is an encoder, which keeps no KV cache");
}

llmos_err local_batcher_save(local_batcher *b, const char *scope, llmos_buf *out)
{
    if (!b)
        return no_cache();
    pthread_mutex_lock(&b->mu);
    local_seq *s = latest_of_scope(b, scope);
    llmos_err err;
    if (!s)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND,
                         "local backend: no finished conversation of this scope is kept (it "
                         "was never run, or was dropped to make room)");
    else if (s->ctx)
        err = model_kv_save(s->ctx, s->toks, out);
    else
        err = buf_append(out, s->snap.data, s->snap.len);
    pthread_mutex_unlock(&b->mu);
    return err;
}

llmos_err local_batcher_restore(local_batcher *b, const char *scope, const uint8_t *data,
                                size_t len)
{
    if (!b)
        return no_cache();
    model_kv_header h;
    llmos_err err = model_kv_parse(data, len, &h);
    if (!err)
        err = model_kv_check(b->p.model, &h, b->p.kv_type, b->p.n_ctx);
    if (!err && h.n_tokens != h.n_pos)
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "KV snapshot: it holds no token ids, so no request could be matched "
                         "to it (save it with its tokens)");
    if (err)
        return err;
    local_seq *s = calloc(1, sizeof *s);
    if (s) {
        s->b = b;
        s->scope = strdup(scope);
        s->scratch = malloc(b->n_vocab * sizeof *s->scratch);
        s->cap = h.n_pos ? (size_t)h.n_pos : 1;
        s->toks = malloc(s->cap * sizeof *s->toks);
    }
    if (!s || !s->scope || !s->scratch || !s->toks || buf_append(&s->snap, data, len)) {
        seq_free(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory restoring a KV snapshot");
    }
    if ((err = model_kv_tokens(b->p.model, data, &h, s->toks))) {
        seq_free(s);
        return err;
    }
    s->n_toks = (size_t)h.n_pos;
    pthread_mutex_lock(&b->mu);
    if (b->n_seqs == b->cap_seqs) {
        size_t cap = b->cap_seqs ? 2 * b->cap_seqs : 16;
        local_seq **nv = realloc(b->seqs, cap * sizeof *nv);
        if (!nv) {
            pthread_mutex_unlock(&b->mu);
            seq_free(s);
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        }
        b->seqs = nv;
        b->cap_seqs = cap;
    }
    /* kept as a swapped-out sequence: its cache is filled when a request matches it */
    s->used = ++b->clock;
    b->seqs[b->n_seqs++] = s;
    b->snap_bytes += s->snap.len;
    pthread_mutex_unlock(&b->mu);
    return LLMOS_OK;
}

size_t local_batcher_forget(local_batcher *b, const char *scope)
{
    size_t n = 0;
    if (!b)
        return 0;
    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < b->n_seqs;) {
        local_seq *s = b->seqs[i];
        if (!s->active && s->scope && strcmp(s->scope, scope) == 0) {
            drop(b, s); /* moves the last sequence to i */
            n++;
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&b->mu);
    return n;
}
