/*
 * vdb.c - the HNSW vector index behind archival memory (public API in llmos/vdb.h).
 *
 * The algorithm is Malkov & Yashunin's Hierarchical Navigable Small World graph (arXiv
 * 1603.09320, "Efficient and robust approximate nearest neighbor search using HNSW graphs"):
 *
 *   - a new node gets level l = floor(-ln(U) * mL), U uniform in (0,1], mL = 1/ln(M) (paper,
 *     section 4.1), and lives on layers 0..l;
 *   - INSERT (paper, algorithm 1) descends greedily from the entry point through the layers
 *     above l, then on each layer l..0 runs SEARCH-LAYER with ef_construction candidates
 *     (algorithm 2), picks M neighbours with the heuristic of algorithm 4 (a candidate is kept
 *     only if it is nearer to the new node than to every neighbour kept so far) and links both
 *     ways; a neighbour whose list overflows (Mmax = M on upper layers, Mmax0 = 2M on layer 0)
 *     is pruned with the same heuristic;
 *   - K-NN-SEARCH (algorithm 5) descends greedily to layer 1 and searches layer 0 with ef.
 *
 * Delete is not in the paper. Here it unlinks the node for good: every node that linked to it
 * gets a new list chosen by the heuristic from its remaining neighbours plus the removed node's
 * neighbours on that layer (so paths through the removed node survive), and the entry point
 * moves to a node of the highest remaining level. The slot is reused by a later insert.
 *
 * Memory layout, for speed: vectors are one contiguous 64-byte aligned array (slot * dim),
 * layer-0 links one flat array of (1 + 2M) uint32 per slot (count, then neighbour slots), upper
 * layers a small array per node that has them. A search marks visited slots with a 16-bit
 * epoch (no clearing per query: the array is wiped only when the epoch wraps) and prefetches
 * the vectors it is about to compare. Per-search scratch (visited marks, heaps) is pooled.
 *
 * Concurrency: a reader-writer lock lets many searches run beside nothing, or one writer run
 * alone. vdb_insert_batch holds the write lock and inserts with T threads at once; inside it
 * each node's link lists are guarded by a one-byte spinlock (hnswlib does the same with a
 * mutex per node), and slot allocation, the id map and the entry point by one mutex.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/vdb.h"
#include "storage/vdb_dist.h"

#define VDB_NONE      UINT32_MAX
#define VDB_MAX_LEVEL 63 /* levels are stored in a byte; P(level > 63) is negligible */
#define VDB_MAX_DIM   65536u
#define VDB_MAX_M     256u
#define VDB_MAX_EFC   65536u
#define VDB_MAX_SLOTS 0xFFFFFFF0u /* slot numbers are uint32 with VDB_NONE reserved */

/* ---- small helpers ----------------------------------------------------------------------- */

typedef struct vdb_pair {
    float d;
    uint32_t i;
} vdb_pair;

/* A binary max-heap on d. The candidate queue of a search stores -d to get a min-heap. */
typedef struct vdb_heap {
    vdb_pair *a;
    size_t n, cap;
} vdb_heap;

static bool heap_grow(vdb_heap *h, size_t need)
{
    if (need <= h->cap)
        return true;
    size_t cap = h->cap ? h->cap * 2 : 64;
    while (cap < need)
        cap *= 2;
    vdb_pair *a = realloc(h->a, cap * sizeof(*a));
    if (!a)
        return false;
    h->a = a;
    h->cap = cap;
    return true;
}

/* Push; false when out of memory (the heap is unchanged). */
static bool heap_push(vdb_heap *h, float d, uint32_t i)
{
    if (h->n == h->cap && !heap_grow(h, h->n + 1))
        return false;
    size_t k = h->n++;
    while (k > 0) {
        size_t p = (k - 1) / 2;
        if (h->a[p].d >= d)
            break;
        h->a[k] = h->a[p];
        k = p;
    }
    h->a[k] = (vdb_pair){d, i};
    return true;
}

static vdb_pair heap_pop(vdb_heap *h)
{
    assert(h->n > 0);
    vdb_pair top = h->a[0], last = h->a[--h->n];
    size_t k = 0, n = h->n;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h->a[c + 1].d > h->a[c].d)
            c++;
        if (h->a[c].d <= last.d)
            break;
        h->a[k] = h->a[c];
        k = c;
    }
    if (n > 0)
        h->a[k] = last;
    return top;
}

static int pair_cmp(const void *x, const void *y)
{
    const vdb_pair *a = x, *b = y;
    if (a->d < b->d)
        return -1;
    if (a->d > b->d)
        return 1;
    return (a->i > b->i) - (a->i < b->i);
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* ---- the index --------------------------------------------------------------------------- */

/* Per-search working memory, pooled in the index so that searches allocate nothing. */
typedef struct vdb_scratch {
    uint16_t *mark; /* visited[slot] == epoch */
    size_t mark_cap;
    uint16_t epoch;
    vdb_heap cand, res;
    uint32_t *nb;   /* copy of one link list (count + neighbours) */
    uint32_t *todo; /* unvisited neighbours of the node being expanded */
    vdb_pair *sel;  /* candidate pairs for the neighbour heuristic */
    size_t sel_cap;
    uint32_t *picked; /* heuristic output */
    float *qbuf;      /* normalised query or vector (cosine) */
    bool oom;
    struct vdb_scratch *next;
} vdb_scratch;

struct vdb {
    uint32_t dim;
    vdb_metric metric;
    vdb_params params;
    uint32_t M, M0; /* link caps: upper layers, layer 0 */
    double mL;      /* level multiplier 1/ln(M) */
    vdb_kernel_fn l2sq, dot;

    size_t cap;       /* slots allocated */
    size_t n_slots;   /* slots ever used (high-water mark) */
    size_t count;     /* live vectors */
    float *vecs;      /* cap * dim */
    uint32_t *links0; /* cap * (1 + M0) */
    uint32_t **upper; /* cap: NULL or level * (1 + M) */
    uint8_t *levels;
    uint8_t *live;
    uint64_t *ids;
    atomic_uchar *locks;
    uint32_t *free_slots;
    size_t n_free;

    /* id -> slot, open addressing with linear probing; val VDB_NONE marks an empty bucket */
    uint64_t *map_keys;
    uint32_t *map_vals;
    size_t map_cap; /* power of two, at least twice the slot capacity */

    uint32_t entry;
    int max_level; /* -1 when empty */
    uint64_t rng;

    pthread_rwlock_t rw;
    pthread_mutex_t glock; /* slot allocation, map, entry point, rng (during batch inserts) */
    pthread_mutex_t slock; /* scratch pool */
    vdb_scratch *scratch_free;
};

/* The bookkeeping every writer leaves behind (checked where the write lock is held, or no
 * writer can run): each slot ever used is live or on the free list, and a non-empty index has
 * its entry point at a live node of the top level. */
static bool vdb_consistent(const vdb *idx)
{
    if (idx->count + idx->n_free != idx->n_slots || idx->n_slots > idx->cap ||
        idx->n_free > idx->cap)
        return false;
    if (idx->count == 0)
        return idx->entry == VDB_NONE && idx->max_level == -1;
    return idx->entry < idx->n_slots && idx->live[idx->entry] &&
           (int)idx->levels[idx->entry] == idx->max_level;
}

vdb_params vdb_params_default(void)
{
    return (vdb_params){.M = 16, .ef_construction = 200, .seed = 0x5eed, .exact_below = 1024};
}

static inline const float *vec_of(const vdb *idx, uint32_t slot)
{
    return idx->vecs + (size_t)slot * idx->dim;
}

static inline float dist(const vdb *idx, const float *a, const float *b)
{
    if (idx->metric == VDB_L2)
        return idx->l2sq(a, b, idx->dim);
    return 1.0f - idx->dot(a, b, idx->dim);
}

static inline uint32_t *links_at(const vdb *idx, uint32_t slot, int level)
{
    if (level == 0)
        return idx->links0 + (size_t)slot * (1 + idx->M0);
    return idx->upper[slot] + (size_t)(level - 1) * (1 + idx->M);
}

static inline uint32_t cap_at(const vdb *idx, int level)
{
    return level == 0 ? idx->M0 : idx->M;
}

static void node_lock(vdb *idx, uint32_t slot)
{
    while (atomic_exchange_explicit(&idx->locks[slot], 1, memory_order_acquire))
        while (atomic_load_explicit(&idx->locks[slot], memory_order_relaxed))
            cpu_relax();
}

static void node_unlock(vdb *idx, uint32_t slot)
{
    atomic_store_explicit(&idx->locks[slot], 0, memory_order_release);
}

/* ---- id map ------------------------------------------------------------------------------ */

static uint32_t map_find(const vdb *idx, uint64_t id)
{
    size_t mask = idx->map_cap - 1;
    for (size_t b = hash64(id) & mask;; b = (b + 1) & mask) {
        if (idx->map_vals[b] == VDB_NONE)
            return VDB_NONE;
        if (idx->map_keys[b] == id)
            return idx->map_vals[b];
    }
}

/* Caller checked that id is absent and that the table has room (load <= 1/2). */
static void map_put(vdb *idx, uint64_t id, uint32_t slot)
{
    size_t mask = idx->map_cap - 1;
    size_t b = hash64(id) & mask;
    while (idx->map_vals[b] != VDB_NONE)
        b = (b + 1) & mask;
    idx->map_keys[b] = id;
    idx->map_vals[b] = slot;
}

/* Remove with backward shift, so that no tombstones are needed. */
static void map_del(vdb *idx, uint64_t id)
{
    size_t mask = idx->map_cap - 1;
    size_t b = hash64(id) & mask;
    while (idx->map_vals[b] != VDB_NONE && idx->map_keys[b] != id)
        b = (b + 1) & mask;
    if (idx->map_vals[b] == VDB_NONE)
        return;
    size_t hole = b;
    for (size_t j = (hole + 1) & mask; idx->map_vals[j] != VDB_NONE; j = (j + 1) & mask) {
        size_t home = hash64(idx->map_keys[j]) & mask;
        /* j may move into the hole if its home is not in the cyclic range (hole, j] */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            idx->map_keys[hole] = idx->map_keys[j];
            idx->map_vals[hole] = idx->map_vals[j];
            hole = j;
        }
    }
    idx->map_vals[hole] = VDB_NONE;
}

static llmos_err map_resize(vdb *idx, size_t new_cap)
{
    uint64_t *keys = malloc(new_cap * sizeof(*keys));
    uint32_t *vals = malloc(new_cap * sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb: no memory for an id map of %zu buckets", new_cap);
    }
    memset(vals, 0xff, new_cap * sizeof(*vals));
    uint64_t *old_keys = idx->map_keys;
    uint32_t *old_vals = idx->map_vals;
    size_t old_cap = idx->map_cap;
    idx->map_keys = keys;
    idx->map_vals = vals;
    idx->map_cap = new_cap;
    for (size_t b = 0; b < old_cap; b++)
        if (old_vals[b] != VDB_NONE)
            map_put(idx, old_keys[b], old_vals[b]);
    free(old_keys);
    free(old_vals);
    return LLMOS_OK;
}

/* ---- capacity ---------------------------------------------------------------------------- */

/* Grow every per-slot array to hold `want` slots. Caller holds the write lock. */
static llmos_err grow_to(vdb *idx, size_t want)
{
    if (want <= idx->cap) // NOLINT(clang-analyzer-core.NullDereference): callers pass an index
                          // vdb_new created; llmos_fail returns its nonzero code, so the analyzer
                          // path with a zero error cannot occur
        return LLMOS_OK;
    if (want > VDB_MAX_SLOTS)
        return llmos_fail(LLMOS_ERR_LIMIT, "vdb: %zu vectors asked for; an index holds at most %u",
                          want, VDB_MAX_SLOTS);
    size_t cap = idx->cap ? idx->cap : 64;
    while (cap < want)
        cap = cap < 1024 * 1024 ? cap * 2 : cap + cap / 2;
    if (cap > VDB_MAX_SLOTS)
        cap = VDB_MAX_SLOTS;

    /* vectors: aligned block, copied (realloc would lose the alignment) */
    size_t vbytes = cap * idx->dim * sizeof(float);
    void *vecs = NULL;
    if (posix_memalign(&vecs, 64, vbytes) != 0)
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb: no memory for %zu vectors of %u floats", cap,
                          idx->dim);
    if (idx->n_slots)
        memcpy(vecs, idx->vecs, idx->n_slots * idx->dim * sizeof(float));
    free(idx->vecs);
    idx->vecs = vecs;

#define VDB_GROW(field, elem)                                                                      \
    do {                                                                                           \
        void *p_ = realloc((void *)idx->field, cap * (elem));                                      \
        if (!p_)                                                                                   \
            return llmos_fail(LLMOS_ERR_NOMEM, "vdb: no memory to grow to %zu slots", cap);        \
        idx->field = p_;                                                                           \
    } while (0)
    VDB_GROW(links0, (1 + (size_t)idx->M0) * sizeof(uint32_t));
    VDB_GROW(upper, sizeof(uint32_t *));
    VDB_GROW(levels, 1);
    VDB_GROW(live, 1);
    VDB_GROW(ids, sizeof(uint64_t));
    VDB_GROW(locks, sizeof(atomic_uchar));
    VDB_GROW(free_slots, sizeof(uint32_t));
#undef VDB_GROW
    for (size_t s = idx->cap; s < cap; s++) {
        idx->upper[s] = NULL;
        idx->levels[s] = 0;
        idx->live[s] = 0;
        atomic_init(&idx->locks[s], 0);
    }
    idx->cap = cap;
    if (idx->map_cap < 2 * cap) {
        size_t mc = idx->map_cap ? idx->map_cap : 128;
        while (mc < 2 * cap)
            mc *= 2;
        llmos_err e = map_resize(idx, mc);
        if (e)
            return e;
    }
    return LLMOS_OK;
}

/* ---- scratch pool ------------------------------------------------------------------------ */

static void scratch_free(vdb_scratch *s)
{
    if (!s)
        return;
    free(s->mark);
    free(s->cand.a);
    free(s->res.a);
    free(s->nb);
    free(s->todo);
    free(s->sel);
    free(s->picked);
    free(s->qbuf);
    free(s);
}

/* Take a scratch sized for the current capacity. Caller holds the rw lock (either mode), so
 * the capacity cannot change under it. NULL when out of memory. */
static vdb_scratch *scratch_get(vdb *idx)
{
    pthread_mutex_lock(&idx->slock);
    vdb_scratch *s = idx->scratch_free;
    if (s)
        idx->scratch_free = s->next;
    pthread_mutex_unlock(&idx->slock);
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        size_t lcap = 1 + (size_t)idx->M0;
        s->nb = malloc(lcap * sizeof(uint32_t));
        s->todo = malloc(lcap * sizeof(uint32_t));
        s->picked = malloc(lcap * sizeof(uint32_t));
        s->qbuf = malloc(idx->dim * sizeof(float));
        if (!s->nb || !s->todo || !s->picked || !s->qbuf) {
            scratch_free(s);
            return NULL;
        }
    }
    if (s->mark_cap < idx->cap) {
        uint16_t *m = calloc(idx->cap, sizeof(uint16_t));
        if (!m) {
            scratch_free(s);
            return NULL;
        }
        free(s->mark);
        s->mark = m;
        s->mark_cap = idx->cap;
        s->epoch = 0;
    }
    s->oom = false;
    return s;
}

static void scratch_put(vdb *idx, vdb_scratch *s)
{
    pthread_mutex_lock(&idx->slock);
    s->next = idx->scratch_free;
    idx->scratch_free = s;
    pthread_mutex_unlock(&idx->slock);
}

static void scratch_new_epoch(vdb_scratch *s)
{
    if (++s->epoch == 0) {
        memset(s->mark, 0, s->mark_cap * sizeof(uint16_t));
        s->epoch = 1;
    }
}

static bool scratch_sel_room(vdb_scratch *s, size_t n)
{
    if (n <= s->sel_cap)
        return true;
    size_t cap = s->sel_cap ? s->sel_cap : 256;
    while (cap < n)
        cap *= 2;
    vdb_pair *p = realloc(s->sel, cap * sizeof(*p));
    if (!p)
        return false;
    s->sel = p;
    s->sel_cap = cap;
    return true;
}

/* ---- new / free -------------------------------------------------------------------------- */

static llmos_err check_params(uint32_t dim, vdb_metric metric, const vdb_params *p)
{
    if (dim == 0 || dim > VDB_MAX_DIM)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb: dimension %u out of range 1..%u", dim,
                          VDB_MAX_DIM);
    if (metric != VDB_L2 && metric != VDB_IP && metric != VDB_COSINE)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "vdb: unknown metric %d (use VDB_L2, VDB_IP or "
                          "VDB_COSINE)",
                          (int)metric);
    if (p->M < 2 || p->M > VDB_MAX_M)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb: M = %u out of range 2..%u", p->M, VDB_MAX_M);
    if (p->ef_construction < 1 || p->ef_construction > VDB_MAX_EFC)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb: ef_construction = %u out of range 1..%u",
                          p->ef_construction, VDB_MAX_EFC);
    return LLMOS_OK;
}

llmos_err vdb_new(uint32_t dim, vdb_metric metric, const vdb_params *params, vdb **out)
{
    if (!out)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_new: out is NULL");
    *out = NULL;
    vdb_params p = params ? *params : vdb_params_default();
    if (p.M == 0)
        p.M = 16;
    if (p.ef_construction == 0)
        p.ef_construction = 200;
    llmos_err e = check_params(dim, metric, &p);
    if (e)
        return e;
    vdb *idx = calloc(1, sizeof(*idx));
    if (!idx)
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb_new: out of memory");
    idx->dim = dim;
    idx->metric = metric;
    idx->params = p;
    idx->M = p.M;
    idx->M0 = 2 * p.M;
    idx->mL = 1.0 / log((double)p.M);
    vdb_kernels k = vdb_kernels_for(vdb_simd_best());
    idx->l2sq = k.l2sq;
    idx->dot = k.dot;
    idx->entry = VDB_NONE;
    idx->max_level = -1;
    idx->rng = p.seed;
    /* glibc's default rwlock prefers readers, so a steady stream of searches would starve a
     * writer forever; ask for writer preference (a GNU extension) where it exists */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    pthread_rwlock_init(&idx->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&idx->glock, NULL);
    pthread_mutex_init(&idx->slock, NULL);
    e = grow_to(idx, 64);
    if (e) {
        vdb_free(idx);
        return e;
    }
    assert(vdb_consistent(idx));
    *out = idx;
    return LLMOS_OK;
}

void vdb_free(vdb *idx)
{
    if (!idx)
        return;
    for (size_t s = 0; s < idx->cap && idx->upper; s++)
        free(idx->upper[s]);
    free(idx->vecs);
    free(idx->links0);
    free(idx->upper);
    free(idx->levels);
    free(idx->live);
    free(idx->ids);
    free((void *)idx->locks);
    free(idx->free_slots);
    free(idx->map_keys);
    free(idx->map_vals);
    while (idx->scratch_free) {
        vdb_scratch *s = idx->scratch_free;
        idx->scratch_free = s->next;
        scratch_free(s);
    }
    pthread_rwlock_destroy(&idx->rw);
    pthread_mutex_destroy(&idx->glock);
    pthread_mutex_destroy(&idx->slock);
    free(idx);
}

llmos_err vdb_reserve(vdb *idx, size_t n)
{
    if (!idx)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_reserve: index is NULL");
    pthread_rwlock_wrlock(&idx->rw);
    llmos_err e = grow_to(idx, n);
    assert(vdb_consistent(idx));
    pthread_rwlock_unlock(&idx->rw);
    return e;
}

/* ---- graph search ------------------------------------------------------------------------ */

/* Prefetch the first cache lines of a vector that is about to be compared. */
static inline void prefetch_vec(const vdb *idx, uint32_t slot)
{
    const char *p = (const char *)vec_of(idx, slot);
    size_t bytes = (size_t)idx->dim * sizeof(float);
    __builtin_prefetch(p);
    if (bytes > 64)
        __builtin_prefetch(p + 64);
    if (bytes > 128)
        __builtin_prefetch(p + 128);
    if (bytes > 192)
        __builtin_prefetch(p + 192);
}

/* The link list of slot on level, either in place or (when other threads may be writing,
 * `locked`) copied into s->nb under the node's lock. */
static const uint32_t *read_links(vdb *idx, vdb_scratch *s, uint32_t slot, int level, bool locked)
{
    const uint32_t *l = links_at(idx, slot, level);
    if (!locked)
        return l;
    node_lock(idx, slot);
    memcpy(s->nb, l, (1 + (size_t)l[0]) * sizeof(uint32_t));
    node_unlock(idx, slot);
    return s->nb;
}

/* Greedy walk on one upper layer (SEARCH-LAYER with ef = 1): move to the nearest neighbour
 * while that brings us nearer to q. */
static void greedy_layer(vdb *idx, vdb_scratch *s, const float *q, uint32_t *cur, float *cur_d,
                         int level, bool locked)
{
    bool changed = true;
    while (changed) {
        changed = false;
        const uint32_t *l = read_links(idx, s, *cur, level, locked);
        uint32_t n = l[0];
        for (uint32_t j = 1; j <= n; j++) {
            float d = dist(idx, q, vec_of(idx, l[j]));
            if (d < *cur_d) {
                *cur_d = d;
                *cur = l[j];
                changed = true;
            }
        }
    }
}

/* SEARCH-LAYER (paper, algorithm 2) from entry point ep: best-first expansion with a min-queue
 * of candidates and a max-heap s->res of the ef nearest found. With a filter, only allowed ids
 * enter s->res (others are still walked through), and the walk goes on until s->res is full or
 * the reachable graph is exhausted. */
static void search_layer(vdb *idx, vdb_scratch *s, const float *q, uint32_t ep, float ep_d,
                         int level, size_t ef, bool locked, vdb_filter_fn filter, void *ctx)
{
    vdb_heap *cand = &s->cand, *res = &s->res;
    cand->n = 0;
    res->n = 0;
    scratch_new_epoch(s);
    uint16_t *mark = s->mark;
    uint16_t epoch = s->epoch;

    mark[ep] = epoch;    // NOLINT(clang-analyzer-core.NullDereference): scratch_get returns NULL
                         // rather than a scratch without its mark array
    float lb = INFINITY; /* distance of the worst result kept */
    if (!filter || filter(idx->ids[ep], ctx)) {
        s->oom |= !heap_push(res, ep_d, ep);
        lb = ep_d;
    }
    s->oom |= !heap_push(cand, -ep_d, ep);

    while (cand->n > 0) {
        vdb_pair c = cand->a[0];
        /* stop when the nearest candidate is farther than the worst result (paper, algorithm
         * 2); with a filter, only once ef allowed results are in hand */
        if (-c.d > lb && (res->n >= ef || !filter))
            break;
        heap_pop(cand);
        const uint32_t *l = read_links(idx, s, c.i, level, locked);
        uint32_t n = l[0], nt = 0;
        for (uint32_t j = 1; j <= n; j++) {
            uint32_t v = l[j];
            if (mark[v] != epoch) {
                mark[v] = epoch;
                s->todo[nt++] = v;
            }
        }
        if (nt > 0)
            prefetch_vec(idx, s->todo[0]);
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t v = s->todo[j];
            if (j + 1 < nt)
                prefetch_vec(idx, s->todo[j + 1]);
            float d = dist(idx, q, vec_of(idx, v));
            if (res->n < ef || d < lb) {
                s->oom |= !heap_push(cand, -d, v);
                if (!filter || filter(idx->ids[v], ctx)) {
                    s->oom |= !heap_push(res, d, v);
                    if (res->n > ef)
                        heap_pop(res);
                    lb = res->a[0].d;
                }
            }
        }
        /* the next node to expand: fetch its link list while the heap work goes on */
        if (cand->n > 0)
            __builtin_prefetch(links_at(idx, cand->a[0].i, level));
    }
}

/* SELECT-NEIGHBORS-HEURISTIC (paper, algorithm 4, without extending or keeping pruned
 * candidates): walking candidates from nearest to farthest, keep one only if it is nearer to
 * the base than to every neighbour already kept. That spreads links in all directions instead
 * of piling them into the nearest cluster. cand[0..n) holds (distance to base, slot); the kept
 * slots go to out; returns how many (at most m). With n <= m all are kept. */
static size_t select_neighbours(vdb *idx, vdb_pair *cand, size_t n, size_t m, uint32_t *out)
{
    qsort(cand, n, sizeof(*cand), pair_cmp);
    size_t k = 0;
    if (n <= m) {
        for (size_t i = 0; i < n; i++)
            out[k++] = cand[i].i;
        return k;
    }
    for (size_t i = 0; i < n && k < m; i++) {
        const float *v = vec_of(idx, cand[i].i);
        bool keep = true;
        for (size_t j = 0; j < k; j++)
            if (dist(idx, v, vec_of(idx, out[j])) < cand[i].d) {
                keep = false;
                break;
            }
        if (keep)
            out[k++] = cand[i].i;
    }
    return k;
}

/* Add a link from slot `from` to slot `to` on `level`, pruning `from`'s list with the heuristic
 * when it is full. Caller holds from's node lock (or the write lock alone). */
static bool add_link(vdb *idx, vdb_scratch *s, uint32_t from, uint32_t to, int level)
{
    uint32_t *l = links_at(idx, from, level);
    uint32_t n = l[0], mmax = cap_at(idx, level);
    for (uint32_t j = 1; j <= n; j++)
        if (l[j] == to)
            return true;
    if (n < mmax) {
        l[1 + n] = to;
        l[0] = n + 1;
        return true;
    }
    if (!scratch_sel_room(s, n + 1))
        return false;
    const float *base = vec_of(idx, from);
    for (uint32_t j = 0; j < n; j++)
        s->sel[j] = (vdb_pair){dist(idx, base, vec_of(idx, l[1 + j])), l[1 + j]};
    s->sel[n] = (vdb_pair){dist(idx, base, vec_of(idx, to)), to};
    size_t k = select_neighbours(idx, s->sel, n + 1, mmax, s->picked);
    memcpy(l + 1, s->picked, k * sizeof(uint32_t));
    l[0] = (uint32_t)k;
    return true;
}

/* ---- insert ------------------------------------------------------------------------------ */

static int draw_level(vdb *idx)
{
    /* U in (0, 1]: 53 random bits plus one, scaled */
    double u = (double)((splitmix64(&idx->rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double l = floor(-log(u) * idx->mL);
    return l > VDB_MAX_LEVEL ? VDB_MAX_LEVEL : (int)l;
}

static llmos_err check_vector(const vdb *idx, const float *vec, const char *what)
{
    double norm = 0;
    for (uint32_t i = 0; i < idx->dim; i++) {
        if (!isfinite(vec[i]))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "vdb: %s component %u is %s; vectors must be "
                              "finite",
                              what, i, isnan(vec[i]) ? "NaN" : "infinite");
        norm += (double)vec[i] * vec[i];
    }
    if (idx->metric == VDB_COSINE && norm == 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "vdb: %s is all zero, which has no direction for the "
                          "cosine metric",
                          what);
    return LLMOS_OK;
}

static void normalise(const float *in, float *out, uint32_t dim)
{
    double norm = 0;
    for (uint32_t i = 0; i < dim; i++)
        norm += (double)in[i] * in[i];
    float inv = (float)(1.0 / sqrt(norm));
    for (uint32_t i = 0; i < dim; i++)
        out[i] = in[i] * inv;
}

/* INSERT (paper, algorithm 1). The caller holds the write lock and made room for one slot;
 * `locked` says whether other threads insert at the same time (then node locks are taken). */
static llmos_err insert_one(vdb *idx, vdb_scratch *s, uint64_t id, const float *vec, bool locked)
{
    llmos_err e = check_vector(idx, vec, "vector");
    if (e)
        return e;
    if (idx->metric == VDB_COSINE) {
        normalise(vec, s->qbuf, idx->dim); // NOLINT(clang-analyzer-core.NullDereference): callers
                                           // pass a scratch they checked for NULL
        vec = s->qbuf;
    }

    pthread_mutex_lock(&idx->glock);
    if (map_find(idx, id) != VDB_NONE) {
        pthread_mutex_unlock(&idx->glock);
        return llmos_fail(LLMOS_ERR_EXISTS,
                          "vdb: id %llu is already in the index (delete it "
                          "first to replace its vector)",
                          (unsigned long long)id);
    }
    uint32_t slot;
    if (idx->n_free > 0)
        slot = idx->free_slots[--idx->n_free];
    else {
        assert(idx->n_slots < idx->cap);
        slot = (uint32_t)idx->n_slots++;
    }
    int level = idx->params.flat ? 0 : draw_level(idx);
    if (level > 0) {
        uint32_t *up = calloc((size_t)level * (1 + idx->M), sizeof(uint32_t));
        if (!up) {
            if (slot + 1 == idx->n_slots)
                idx->n_slots--;
            else
                idx->free_slots[idx->n_free++] = slot;
            pthread_mutex_unlock(&idx->glock);
            return llmos_fail(LLMOS_ERR_NOMEM, "vdb: no memory for the links of a level-%d node",
                              level);
        }
        idx->upper[slot] = up;
    }
    map_put(idx, id, slot);
    idx->ids[slot] = id;
    idx->levels[slot] = (uint8_t)level;
    idx->live[slot] = 1;
    links_at(idx, slot, 0)[0] = 0;
    memcpy(idx->vecs + (size_t)slot * idx->dim, vec, idx->dim * sizeof(float));
    idx->count++;

    uint32_t ep = idx->entry;
    int top = idx->max_level;
    if (ep == VDB_NONE) {
        idx->entry = slot;
        idx->max_level = level;
        pthread_mutex_unlock(&idx->glock);
        return LLMOS_OK;
    }
    if (idx->params.flat) {
        pthread_mutex_unlock(&idx->glock);
        return LLMOS_OK;
    }
    /* A node that raises the top level keeps the global lock for its whole insertion, so that
     * no other insert uses an entry point whose upper layers are not linked yet. */
    bool hold = level > top;
    if (!hold)
        pthread_mutex_unlock(&idx->glock);

    vec = vec_of(idx, slot);
    uint32_t cur = ep;
    float cur_d = dist(idx, vec, vec_of(idx, cur));
    for (int l = top; l > level; l--)
        greedy_layer(idx, s, vec, &cur, &cur_d, l, locked);

    e = LLMOS_OK;
    for (int l = level < top ? level : top; l >= 0; l--) {
        search_layer(idx, s, vec, cur, cur_d, l, idx->params.ef_construction, locked, NULL, NULL);
        vdb_heap *res = &s->res;
        if (!scratch_sel_room(s, res->n)) { // NOLINT(clang-analyzer-core.NullDereference): res is
                                            // &s->res of a scratch callers checked for NULL
            e = llmos_fail(LLMOS_ERR_NOMEM, "vdb: out of memory while inserting");
            break;
        }
        /* the nearest result is the next layer's entry point; the node itself is skipped */
        size_t nres = 0;
        for (size_t j = 0; j < res->n; j++) {
            if (res->a[j].i == slot)
                continue;
            s->sel[nres++] = res->a[j];
            if (res->a[j].d < cur_d) {
                cur_d = res->a[j].d;
                cur = res->a[j].i;
            }
        }
        size_t k = select_neighbours(idx, s->sel, nres, idx->M, s->picked);
        uint32_t mine[VDB_MAX_M];
        memcpy(mine, s->picked, k * sizeof(uint32_t));

        if (locked)
            node_lock(idx, slot);
        uint32_t *own = links_at(idx, slot, l);
        memcpy(own + 1, mine, k * sizeof(uint32_t));
        own[0] = (uint32_t)k;
        if (locked)
            node_unlock(idx, slot);

        for (size_t j = 0; j < k; j++) {
            if (locked)
                node_lock(idx, mine[j]);
            bool ok = add_link(idx, s, mine[j], slot, l);
            if (locked)
                node_unlock(idx, mine[j]);
            if (!ok) {
                e = llmos_fail(LLMOS_ERR_NOMEM, "vdb: out of memory while linking");
                break;
            }
        }
        if (e)
            break;
    }
    if (s->oom && !e) // NOLINT(clang-analyzer-core.NullDereference): callers pass a scratch they
                      // checked for NULL
        e = llmos_fail(LLMOS_ERR_NOMEM, "vdb: out of memory in the insert search");
    if (hold) {
        idx->entry = slot;
        idx->max_level = level;
        pthread_mutex_unlock(&idx->glock);
    }
    return e;
}

llmos_err vdb_insert(vdb *idx, uint64_t id, const float *vec)
{
    if (!idx || !vec)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_insert: index or vector is NULL");
    pthread_rwlock_wrlock(&idx->rw);
    llmos_err e = LLMOS_OK;
    if (idx->n_free == 0)
        e = grow_to(idx, idx->n_slots + 1);
    if (!e) {
        vdb_scratch *s = scratch_get(idx);
        if (!s)
            e = llmos_fail(LLMOS_ERR_NOMEM, "vdb_insert: out of memory");
        else {
            e = insert_one(idx, s, id, vec, false);
            scratch_put(idx, s);
        }
    }
    assert(vdb_consistent(idx));
    pthread_rwlock_unlock(&idx->rw);
    return e;
}

typedef struct vdb_batch {
    vdb *idx;
    size_t n;
    const uint64_t *ids;
    const float *vecs;
    atomic_size_t next;
    pthread_mutex_t elock;
    llmos_err err;
    char msg[512];
} vdb_batch;

static void *batch_worker(void *arg)
{
    vdb_batch *b = arg;
    vdb *idx = b->idx;
    vdb_scratch *s = scratch_get(idx);
    llmos_err e = s ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "vdb: out of memory for a worker");
    for (;;) {
        if (e) {
            pthread_mutex_lock(&b->elock);
            if (!b->err) {
                b->err = e;
                snprintf(b->msg, sizeof b->msg, "%s", llmos_errmsg());
            }
            pthread_mutex_unlock(&b->elock);
            if (!s)
                break;
        }
        size_t i = atomic_fetch_add(&b->next, 1);
        if (i >= b->n)
            break;
        e = insert_one(idx, s, b->ids[i], b->vecs + i * idx->dim, true);
    }
    if (s)
        scratch_put(idx, s);
    return NULL;
}

llmos_err vdb_insert_batch(vdb *idx, size_t n, const uint64_t *ids, const float *vecs,
                           int n_threads)
{
    if (!idx || (n > 0 && (!ids || !vecs)))
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_insert_batch: index, ids or vectors is NULL");
    if (n_threads <= 0)
        n_threads = pool_default_threads();
    if ((size_t)n_threads > n)
        n_threads = n > 0 ? (int)n : 1;
    pthread_rwlock_wrlock(&idx->rw);
    llmos_err e = grow_to(idx, idx->n_slots + n);
    if (e) {
        pthread_rwlock_unlock(&idx->rw);
        return e;
    }
    vdb_batch b = {.idx = idx, .n = n, .ids = ids, .vecs = vecs};
    atomic_init(&b.next, 0);
    pthread_mutex_init(&b.elock, NULL);
    pthread_t th[256];
    int started = 0;
    if (n_threads > 256)
        n_threads = 256;
    for (int t = 1; t < n_threads; t++)
        if (pthread_create(&th[started], NULL, batch_worker, &b) == 0)
            started++;
    batch_worker(&b);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&b.elock);
    assert(vdb_consistent(idx));
    pthread_rwlock_unlock(&idx->rw);
    if (b.err)
        return llmos_fail(b.err, "%s", b.msg);
    return LLMOS_OK;
}

/* ---- delete ------------------------------------------------------------------------------ */

static bool contains(const uint32_t *a, size_t n, uint32_t v)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] == v)
            return true;
    return false;
}

/* Give node x, which linked to `gone` on `level`, a new list: its other neighbours plus gone's
 * neighbours, pruned by the heuristic to the layer's cap. */
static bool repair_node(vdb *idx, vdb_scratch *s, uint32_t x, uint32_t gone, int level,
                        const uint32_t *gone_nb, uint32_t gone_n)
{
    uint32_t *l = links_at(idx, x, level);
    uint32_t n = l[0], mmax = cap_at(idx, level);
    if (!scratch_sel_room(s, (size_t)n + gone_n))
        return false;
    uint32_t ids_seen[2 * 2 * VDB_MAX_M];
    size_t nc = 0;
    const float *base = vec_of(idx, x);
    for (uint32_t j = 1; j <= n; j++)
        if (l[j] != gone && !contains(ids_seen, nc, l[j])) {
            ids_seen[nc] = l[j];
            s->sel[nc++] = (vdb_pair){dist(idx, base, vec_of(idx, l[j])), l[j]};
        }
    for (uint32_t j = 0; j < gone_n; j++) {
        uint32_t v = gone_nb[j];
        if (v != x && v != gone && !contains(ids_seen, nc, v)) {
            ids_seen[nc] = v;
            s->sel[nc++] = (vdb_pair){dist(idx, base, vec_of(idx, v)), v};
        }
    }
    size_t k = select_neighbours(idx, s->sel, nc, mmax, s->picked);
    memcpy(l + 1, s->picked, k * sizeof(uint32_t));
    l[0] = (uint32_t)k;
    return true;
}

llmos_err vdb_delete(vdb *idx, uint64_t id)
{
    if (!idx)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_delete: index is NULL");
    pthread_rwlock_wrlock(&idx->rw);
    uint32_t slot = map_find(idx, id);
    if (slot == VDB_NONE) {
        pthread_rwlock_unlock(&idx->rw);
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "vdb_delete: id %llu is not in the index",
                          (unsigned long long)id);
    }
    vdb_scratch *s = scratch_get(idx);
    if (!s) {
        pthread_rwlock_unlock(&idx->rw);
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb_delete: out of memory");
    }
    int level = idx->levels[slot];
    llmos_err e = LLMOS_OK;
    uint32_t gone_nb[2 * VDB_MAX_M];
    for (int l = 0; l <= level && !e && !idx->params.flat; l++) {
        const uint32_t *gl = links_at(idx, slot, l);
        uint32_t gone_n = gl[0];
        memcpy(gone_nb, gl + 1, gone_n * sizeof(uint32_t));
        for (uint32_t x = 0; x < idx->n_slots; x++) {
            if (!idx->live[x] || x == slot || idx->levels[x] < l)
                continue;
            const uint32_t *xl = links_at(idx, x, l);
            if (!contains(xl + 1, xl[0], slot))
                continue;
            if (!repair_node(idx, s, x, slot, l, gone_nb, gone_n)) {
                e = llmos_fail(LLMOS_ERR_NOMEM, "vdb_delete: out of memory while re-linking");
                break;
            }
        }
    }
    scratch_put(idx, s);
    if (e) {
        /* The graph is consistent (every list was either rewritten or left alone) but the node
         * may still be linked; it stays in the index. */
        pthread_rwlock_unlock(&idx->rw);
        return e;
    }
    map_del(idx, id);
    idx->live[slot] = 0;
    free(idx->upper[slot]);
    idx->upper[slot] = NULL;
    idx->levels[slot] = 0;
    links_at(idx, slot, 0)[0] = 0;
    idx->free_slots[idx->n_free++] = slot;
    idx->count--;
    if (idx->entry == slot) {
        /* the new entry point: a node of the highest remaining level */
        idx->entry = VDB_NONE;
        idx->max_level = -1;
        for (uint32_t x = 0; x < idx->n_slots; x++)
            if (idx->live[x] && (int)idx->levels[x] > idx->max_level) {
                idx->max_level = idx->levels[x];
                idx->entry = x;
            }
    }
    assert(vdb_consistent(idx));
    pthread_rwlock_unlock(&idx->rw);
    return LLMOS_OK;
}

/* ---- search ------------------------------------------------------------------------------ */

/* Brute force over every live slot into hits (ascending). Caller holds the read lock. */
static size_t exact_locked(vdb *idx, vdb_scratch *s, const float *q, size_t k, vdb_filter_fn filter,
                           void *ctx, vdb_hit *hits)
{
    vdb_heap *h = &s->res;
    h->n = 0;
    if (!heap_grow(h, k + 1)) {
        s->oom = true;
        return 0;
    }
    float worst = INFINITY;
    const float *v = idx->vecs;
    for (uint32_t i = 0; i < idx->n_slots; i++, v += idx->dim) {
        if (!idx->live[i])
            continue;
        float d = dist(idx, q, v);
        if (h->n < k || d < worst) {
            if (filter && !filter(idx->ids[i], ctx))
                continue;
            heap_push(h, d, i);
            if (h->n > k)
                heap_pop(h);
            if (h->n == k)
                worst = h->a[0].d;
        }
    }
    size_t n = h->n;
    for (size_t j = n; j-- > 0;) {
        vdb_pair p = heap_pop(h);
        hits[j] = (vdb_hit){idx->ids[p.i], p.d};
    }
    return n;
}

static llmos_err check_query(vdb *idx, const float *query, size_t k, const vdb_hit *hits,
                             const size_t *n_hits, const char *fn)
{
    if (!idx || !query || !n_hits || (k > 0 && !hits))
        return llmos_fail(LLMOS_ERR_INVALID, "%s: index, query, hits or n_hits is NULL", fn);
    return check_vector(idx, query, "query");
}

static const float *prepare_query(vdb *idx, vdb_scratch *s, const float *query)
{
    if (idx->metric != VDB_COSINE)
        return query;
    normalise(query, s->qbuf, idx->dim);
    return s->qbuf;
}

llmos_err vdb_exact_search(vdb *idx, const float *query, size_t k, vdb_filter_fn filter, void *ctx,
                           vdb_hit *hits, size_t *n_hits)
{
    llmos_err e = check_query(idx, query, k, hits, n_hits, "vdb_exact_search");
    if (e)
        return e;
    *n_hits = 0;
    if (k == 0)
        return LLMOS_OK;
    pthread_rwlock_rdlock(&idx->rw);
    vdb_scratch *s = scratch_get(idx);
    if (!s) {
        pthread_rwlock_unlock(&idx->rw);
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb_exact_search: out of memory");
    }
    *n_hits = exact_locked(idx, s, prepare_query(idx, s, query), k, filter, ctx, hits);
    if (s->oom)
        e = llmos_fail(LLMOS_ERR_NOMEM, "vdb_exact_search: out of memory");
    scratch_put(idx, s);
    pthread_rwlock_unlock(&idx->rw);
    return e;
}

llmos_err vdb_search(vdb *idx, const float *query, size_t k, size_t ef, vdb_filter_fn filter,
                     void *ctx, vdb_hit *hits, size_t *n_hits)
{
    llmos_err e = check_query(idx, query, k, hits, n_hits, "vdb_search");
    if (e)
        return e;
    *n_hits = 0;
    if (k == 0)
        return LLMOS_OK;
    if (ef == 0)
        ef = k > 64 ? k : 64;
    if (ef < k)
        ef = k;
    pthread_rwlock_rdlock(&idx->rw);
    vdb_scratch *s = scratch_get(idx);
    if (!s) {
        pthread_rwlock_unlock(&idx->rw);
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb_search: out of memory");
    }
    const float *q = prepare_query(idx, s, query);
    size_t nh = 0;
    assert(vdb_consistent(idx));
    if (idx->count == 0) {
        nh = 0;
    } else if (idx->params.flat || idx->count < idx->params.exact_below) {
        nh = exact_locked(idx, s, q, k, filter, ctx, hits);
    } else {
        uint32_t cur = idx->entry;
        float cur_d = dist(idx, q, vec_of(idx, cur));
        for (int l = idx->max_level; l > 0; l--)
            greedy_layer(idx, s, q, &cur, &cur_d, l, false);
        search_layer(idx, s, q, cur, cur_d, 0, ef, false, filter, ctx);
        vdb_heap *res = &s->res;
        while (res->n > k)
            heap_pop(res);
        nh = res->n;
        for (size_t j = nh; j-- > 0;) {
            vdb_pair p = heap_pop(res);
            hits[j] = (vdb_hit){idx->ids[p.i], p.d};
        }
        if (filter && nh < k)
            nh = exact_locked(idx, s, q, k, filter, ctx, hits);
    }
    if (s->oom)
        e = llmos_fail(LLMOS_ERR_NOMEM, "vdb_search: out of memory");
    scratch_put(idx, s);
    pthread_rwlock_unlock(&idx->rw);
    *n_hits = e ? 0 : nh;
    return e;
}

/* ---- small queries ----------------------------------------------------------------------- */

size_t vdb_count(vdb *idx)
{
    if (!idx)
        return 0;
    pthread_rwlock_rdlock(&idx->rw);
    size_t n = idx->count;
    pthread_rwlock_unlock(&idx->rw);
    return n;
}

uint32_t vdb_dim(const vdb *idx)
{
    return idx ? idx->dim : 0;
}

vdb_metric vdb_get_metric(const vdb *idx)
{
    return idx ? idx->metric : VDB_L2;
}

bool vdb_contains(vdb *idx, uint64_t id)
{
    if (!idx)
        return false;
    pthread_rwlock_rdlock(&idx->rw);
    bool found = map_find(idx, id) != VDB_NONE;
    pthread_rwlock_unlock(&idx->rw);
    return found;
}

llmos_err vdb_get(vdb *idx, uint64_t id, float *out)
{
    if (!idx || !out)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_get: index or out is NULL");
    pthread_rwlock_rdlock(&idx->rw);
    uint32_t slot = map_find(idx, id);
    if (slot != VDB_NONE)
        memcpy(out, vec_of(idx, slot), idx->dim * sizeof(float));
    pthread_rwlock_unlock(&idx->rw);
    if (slot == VDB_NONE)
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "vdb_get: id %llu is not in the index",
                          (unsigned long long)id);
    return LLMOS_OK;
}

/* ---- save / load ------------------------------------------------------------------------- */

/*
 * Saved image, version 1. All integers little-endian; floats IEEE-754 binary32 little-endian.
 * Nodes are numbered 0..count-1 in the image (free slots are squeezed out).
 *
 *   off  size  field
 *     0     8  magic "LLMOSVDB"
 *     8     4  version (1)
 *    12     4  metric (0 L2, 1 IP, 2 cosine)
 *    16     4  dim
 *    20     4  M
 *    24     4  ef_construction
 *    28     4  exact_below
 *    32     8  seed
 *    40     8  count
 *    48     4  entry node (0xFFFFFFFF when count is 0)
 *    52     4  max level (0xFFFFFFFF when count is 0)
 *    56     4  flags: bit 0 = flat (no graph: every node on level 0 with no links);
 *              other bits must be 0
 *    60     4  reserved, 0
 *    64        ids:     count x u64
 *              levels:  count x u8
 *              vectors: count x dim x f32
 *              links:   for node 0..count-1, for layer 0..level: u32 n, then n x u32 node
 *   end-32 32  BLAKE2b-256 (unkeyed) of every byte before it
 */
#define VDB_MAGIC   "LLMOSVDB"
#define VDB_VERSION 1u
#define VDB_HEADER  64u
#define VDB_HASH    32u

static void put_floats(uint8_t *p, const float *f, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, f, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &f[i], 4);
        llmos_store_le32(p + 4 * i, u);
    }
#endif
}

static void get_floats(float *f, const uint8_t *p, size_t n)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(f, p, n * sizeof(float));
#else
    for (size_t i = 0; i < n; i++) {
        uint32_t u = llmos_load_le32(p + 4 * i);
        memcpy(&f[i], &u, 4);
    }
#endif
}

llmos_err vdb_save(vdb *idx, llmos_buf *out)
{
    if (!idx || !out)
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_save: index or out is NULL");
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "vdb_save: libsodium failed to initialise");
    pthread_rwlock_rdlock(&idx->rw);
    size_t count = idx->count;
    /* slot -> image node number */
    uint32_t *num = malloc((idx->n_slots + 1) * sizeof(uint32_t));
    if (!num) {
        pthread_rwlock_unlock(&idx->rw);
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb_save: out of memory");
    }
    size_t links_bytes = 0, k = 0;
    for (uint32_t s = 0; s < idx->n_slots; s++) {
        num[s] = VDB_NONE;
        if (!idx->live[s])
            continue;
        num[s] = (uint32_t)k++;
        for (int l = 0; l <= idx->levels[s]; l++)
            links_bytes += 4 * (1 + (size_t)links_at(idx, s, l)[0]);
    }
    assert(k == count);
    size_t total = VDB_HEADER + count * (8 + 1 + (size_t)idx->dim * 4) + links_bytes + VDB_HASH;
    size_t start = out->len;
    llmos_err e = buf_reserve(out, total);
    if (e) {
        free(num);
        pthread_rwlock_unlock(&idx->rw);
        return e;
    }
    uint8_t *p = (uint8_t *)out->data + start;
    /* 8-byte binary magic, no terminator */
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
    memcpy(p, VDB_MAGIC, 8);
    llmos_store_le32(p + 8, VDB_VERSION);
    llmos_store_le32(p + 12, (uint32_t)idx->metric);
    llmos_store_le32(p + 16, idx->dim);
    llmos_store_le32(p + 20, idx->M);
    llmos_store_le32(p + 24, idx->params.ef_construction);
    llmos_store_le32(p + 28, idx->params.exact_below);
    llmos_store_le64(p + 32, idx->params.seed);
    llmos_store_le64(p + 40, count);
    llmos_store_le32(p + 48, count ? num[idx->entry] : VDB_NONE);
    llmos_store_le32(p + 52, count ? (uint32_t)idx->max_level : VDB_NONE);
    llmos_store_le32(p + 56, idx->params.flat ? 1u : 0u);
    llmos_store_le32(p + 60, 0);
    uint8_t *ids = p + VDB_HEADER, *levels = ids + 8 * count, *vecs = levels + count;
    uint8_t *links = vecs + count * (size_t)idx->dim * 4;
    k = 0;
    for (uint32_t s = 0; s < idx->n_slots; s++) {
        if (!idx->live[s])
            continue;
        llmos_store_le64(ids + 8 * k, idx->ids[s]);
        levels[k] = idx->levels[s];
        put_floats(vecs + k * (size_t)idx->dim * 4, vec_of(idx, s), idx->dim);
        for (int l = 0; l <= idx->levels[s]; l++) {
            const uint32_t *ll = links_at(idx, s, l);
            llmos_store_le32(links, ll[0]);
            links += 4;
            for (uint32_t j = 1; j <= ll[0]; j++, links += 4)
                llmos_store_le32(links, num[ll[j]]);
        }
        k++;
    }
    pthread_rwlock_unlock(&idx->rw);
    free(num);
    assert((size_t)(links - p) == total - VDB_HASH);
    crypto_generichash(links, VDB_HASH, p, total - VDB_HASH, NULL, 0);
    out->len = start + total;
    out->data[out->len] = '\0';
    return LLMOS_OK;
}

/* Free the half-built index after the message (whose arguments may read it) is recorded. */
static llmos_err load_abort(vdb *idx, llmos_err e)
{
    vdb_free(idx);
    return e;
}
#define LOAD_FAIL(...) load_abort(idx, llmos_fail(LLMOS_ERR_FORMAT, __VA_ARGS__))

llmos_err vdb_load(const void *bytes, size_t len, vdb **out)
{
    if (!out || (!bytes && len))
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_load: bytes or out is NULL");
    *out = NULL;
    const uint8_t *p = bytes;
    if (len < VDB_HEADER + VDB_HASH)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "vdb_load: %zu bytes is too short for a vector index "
                          "(header and checksum alone take %u): truncated data?",
                          len, VDB_HEADER + VDB_HASH);
    if (memcmp(p, VDB_MAGIC, 8) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT, "vdb_load: offset 0: magic is not \"LLMOSVDB\"; "
                                            "these bytes are not a saved vector index");
    uint32_t version = llmos_load_le32(p + 8);
    if (version != VDB_VERSION)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "vdb_load: offset 8: format version %u, this "
                          "build reads version %u only; rebuild the index from its vectors",
                          version, VDB_VERSION);
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "vdb_load: libsodium failed to initialise");
    uint8_t hash[VDB_HASH];
    crypto_generichash(hash, VDB_HASH, p, len - VDB_HASH, NULL, 0);
    if (sodium_memcmp(hash, p + len - VDB_HASH, VDB_HASH) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "vdb_load: checksum at offset %zu does not match the "
                          "%zu bytes before it: the saved index is corrupt or truncated",
                          len - VDB_HASH, len - VDB_HASH);
    size_t body = len - VDB_HASH;

    vdb_params prm = {.M = llmos_load_le32(p + 20),
                      .ef_construction = llmos_load_le32(p + 24),
                      .exact_below = llmos_load_le32(p + 28),
                      .seed = llmos_load_le64(p + 32)};
    uint32_t metric = llmos_load_le32(p + 12), dim = llmos_load_le32(p + 16),
             flags = llmos_load_le32(p + 56);
    if ((flags & ~1u) != 0 || llmos_load_le32(p + 60) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "vdb_load: offset 56: flags 0x%x / reserved 0x%x "
                          "hold unknown bits",
                          flags, llmos_load_le32(p + 60));
    prm.flat = (flags & 1u) != 0;
    if (metric > VDB_COSINE)
        return llmos_fail(LLMOS_ERR_FORMAT, "vdb_load: offset 12: metric %u is not 0, 1 or 2",
                          metric);
    if (dim == 0 || dim > VDB_MAX_DIM || prm.M < 2 || prm.M > VDB_MAX_M ||
        prm.ef_construction < 1 || prm.ef_construction > VDB_MAX_EFC)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "vdb_load: offset 16: dim %u, M %u or "
                          "ef_construction %u out of range (1..%u, 2..%u, 1..%u)",
                          dim, prm.M, prm.ef_construction, VDB_MAX_DIM, VDB_MAX_M, VDB_MAX_EFC);
    uint64_t count = llmos_load_le64(p + 40);
    uint32_t entry = llmos_load_le32(p + 48), max_level = llmos_load_le32(p + 52);
    size_t per_node = 8 + 1 + (size_t)dim * 4 + 4; /* at least one u32 link count */
    if (count > (body - VDB_HEADER) / per_node || count > VDB_MAX_SLOTS)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "vdb_load: offset 40: count %llu does not fit in %zu "
                          "bytes of %u-dimensional nodes",
                          (unsigned long long)count, body, dim);
    if (count == 0 ? (entry != VDB_NONE || max_level != VDB_NONE)
                   : (entry >= count || max_level > VDB_MAX_LEVEL))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "vdb_load: offset 48: entry %u / max level %u invalid "
                          "for %llu nodes",
                          entry, max_level, (unsigned long long)count);

    vdb *idx = NULL;
    llmos_err e = vdb_new(dim, (vdb_metric)metric, &prm, &idx);
    if (e)
        return e;
    e = grow_to(idx, count ? count : 1);
    if (e) {
        vdb_free(idx);
        return e;
    }
    const uint8_t *ids = p + VDB_HEADER, *levels = ids + 8 * count, *vecs = levels + count;
    const uint8_t *lp = vecs + count * (size_t)dim * 4;
    size_t off_ids = VDB_HEADER, off_lv = off_ids + 8 * count;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t id = llmos_load_le64(ids + 8 * (size_t)i);
        if (levels[i] > max_level || (prm.flat && levels[i] > 0))
            return LOAD_FAIL("vdb_load: offset %zu: node %u has level %u above the max level %u",
                             off_lv + i, i, levels[i], max_level);
        if (map_find(idx, id) != VDB_NONE)
            return LOAD_FAIL("vdb_load: offset %zu: id %llu appears twice", off_ids + 8 * (size_t)i,
                             (unsigned long long)id);
        map_put(idx, id, i);
        idx->ids[i] = id; // NOLINT(clang-analyzer-core.NullDereference): vdb_new sets idx when it
                          // returns 0; llmos_fail returns its nonzero code, so the analyzer path
                          // with a zero error cannot occur
        idx->levels[i] = levels[i];
        idx->live[i] = 1;
        if (levels[i] > 0) {
            idx->upper[i] = calloc((size_t)levels[i] * (1 + idx->M), sizeof(uint32_t));
            if (!idx->upper[i]) {
                vdb_free(idx);
                return llmos_fail(LLMOS_ERR_NOMEM, "vdb_load: out of memory");
            }
        }
        idx->n_slots = i + 1;
    }
    if (count && levels[entry] != max_level)
        return LOAD_FAIL("vdb_load: offset 48: entry node %u has level %u, not the max level %u",
                         entry, levels[entry], max_level);
    /* vdb_new sets idx when it returns 0; llmos_fail returns its nonzero code, so the analyzer
     * path with a zero error cannot occur */
    // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
    get_floats(idx->vecs, vecs, count * (size_t)dim);
    for (size_t i = 0; i < count * (size_t)dim; i++)
        if (!isfinite(idx->vecs[i]))
            return LOAD_FAIL("vdb_load: offset %zu: vector component is not finite",
                             (size_t)(vecs - p) + 4 * i);
    for (uint32_t i = 0; i < count; i++) {
        for (int l = 0; l <= levels[i]; l++) {
            size_t off = (size_t)(lp - p);
            if (body - off < 4)
                return LOAD_FAIL("vdb_load: offset %zu: links of node %u layer %d run past the "
                                 "end",
                                 off, i, l);
            uint32_t n = llmos_load_le32(lp);
            if ((idx->params.flat && n > 0) || n > cap_at(idx, l) || (size_t)n * 4 > body - off - 4)
                return LOAD_FAIL("vdb_load: offset %zu: node %u layer %d has %u links (at most "
                                 "%u, and they must fit in the data)",
                                 off, i, l, n, cap_at(idx, l));
            uint32_t *dst = links_at(idx, i, l);
            dst[0] = n;
            for (uint32_t j = 0; j < n; j++) {
                uint32_t v = llmos_load_le32(lp + 4 + 4 * (size_t)j);
                if (v >= count || v == i || levels[v] < l)
                    return LOAD_FAIL("vdb_load: offset %zu: node %u layer %d links to node %u, "
                                     "which is %s",
                                     off + 4 + 4 * (size_t)j, i, l, v,
                                     v >= count ? "out of range"
                                     : v == i   ? "itself"
                                                : "not on that layer");
                dst[1 + j] = v;
            }
            lp += 4 + 4 * (size_t)n;
        }
    }
    if ((size_t)(lp - p) != body)
        return LOAD_FAIL("vdb_load: offset %zu: %zu bytes left over after the last node",
                         (size_t)(lp - p), body - (size_t)(lp - p));
    idx->count = count;
    idx->entry = count ? entry : VDB_NONE;
    idx->max_level = count ? (int)max_level : -1;
    assert(vdb_consistent(idx));
    *out = idx;
    return LLMOS_OK;
}

/* ---- reciprocal rank fusion -------------------------------------------------------------- */

static int fused_cmp(const void *x, const void *y)
{
    const vdb_fused *a = x, *b = y;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

llmos_err vdb_rrf_fuse(const uint64_t *const *lists, const size_t *lens, size_t n_lists, unsigned k,
                       vdb_fused *out, size_t max_out, size_t *n_out)
{
    if (!n_out || (n_lists && (!lists || !lens)) || (max_out && !out))
        return llmos_fail(LLMOS_ERR_INVALID, "vdb_rrf_fuse: lists, lens, out or n_out is NULL");
    *n_out = 0;
    if (k == 0)
        k = 60;
    size_t total = 0;
    for (size_t i = 0; i < n_lists; i++) {
        if (lens[i] && !lists[i])
            return llmos_fail(LLMOS_ERR_INVALID, "vdb_rrf_fuse: list %zu is NULL", i);
        total += lens[i];
    }
    if (total == 0)
        return LLMOS_OK;
    /* an open-addressing table id -> accumulated entry, plus a per-list "seen" stamp so that a
     * repeated id within one list counts once */
    size_t cap = 16;
    while (cap < 2 * total)
        cap *= 2;
    vdb_fused *acc = calloc(cap, sizeof(*acc));
    size_t *stamp = calloc(cap, sizeof(*stamp));
    bool *used = calloc(cap, sizeof(*used));
    if (!acc || !stamp || !used) {
        free(acc);
        free(stamp);
        free(used);
        return llmos_fail(LLMOS_ERR_NOMEM, "vdb_rrf_fuse: out of memory");
    }
    size_t distinct = 0;
    for (size_t i = 0; i < n_lists; i++) {
        for (size_t r = 0; r < lens[i]; r++) {
            uint64_t id = lists[i][r];
            size_t b = hash64(id) & (cap - 1);
            while (used[b] && acc[b].id != id)
                b = (b + 1) & (cap - 1);
            if (!used[b]) {
                used[b] = true;
                acc[b].id = id;
                distinct++;
            } else if (stamp[b] == i + 1) {
                continue; /* already counted at a better rank in this list */
            }
            stamp[b] = i + 1;
            acc[b].score += 1.0 / ((double)k + (double)(r + 1));
        }
    }
    size_t m = 0;
    for (size_t b = 0; b < cap; b++)
        if (used[b])
            acc[m++] = acc[b];
    assert(m == distinct);
    qsort(acc, m, sizeof(*acc), fused_cmp);
    size_t n = m < max_out ? m : max_out;
    memcpy(out, acc, n * sizeof(*acc));
    *n_out = n;
    free(acc);
    free(stamp);
    free(used);
    return LLMOS_OK;
}
