/*
 * sampler.c - from logits to the next token: penalties, filters, temperature, a seeded draw.
 *
 * The chain (documented for users in infer.h and docs/inference.md):
 *   1. penalties over the last penalty_last_n accepted tokens: repetition (Keskar et al. 2019,
 *      CTRL: divide a positive logit by r, multiply a negative one), frequency (minus f per
 *      occurrence) and presence (minus p once);
 *   2. temperature <= 0: arg-max, lowest id on a tie;
 *   3. top-k, then top-p (nucleus, Holtzman et al. 2019) and min-p (keep p >= min_p * p_max)
 *      on the softmax at temperature 1. top-p and min-p both keep a prefix of the tokens in
 *      descending order, so they commute; min-p runs first because it needs no sort;
 *   4. softmax of logit / temperature over the survivors and one draw from a PCG32 stream.
 *
 * All state (window, generator) is in the sampler, so a seed reproduces a run exactly.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/infer.h"

/* ---- PCG32 ------------------------------------------------------------------------------- */

/* pcg32 XSH RR 64/32 (O'Neill 2014): a 64-bit LCG whose output is a xorshifted, randomly
 * rotated top half. Multiplier 6364136223846793005 (Knuth's MMIX LCG constant). */
void sampler_rng_seed(sampler_rng *r, uint64_t seed)
{
    r->state = 0;
    r->inc = (seed << 1) | 1u; /* the stream: any odd increment */
    (void)sampler_rng_u32(r);
    r->state += seed ^ 0x853c49e6748fea9bULL;
    (void)sampler_rng_u32(r);
}

uint32_t sampler_rng_u32(sampler_rng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
    uint32_t rot = (uint32_t)(old >> 59);
    return (xorshifted >> rot) | (xorshifted << ((32 - rot) & 31));
}

float sampler_rng_float(sampler_rng *r)
{
    return (float)(sampler_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* ---- the sampler ------------------------------------------------------------------------- */

typedef struct cand {
    float logit;
    int32_t id;
    float p;
} cand;

struct llmos_sampler {
    sampler_params params;
    uint32_t n_vocab;
    sampler_rng rng;
    int32_t *window; /* ring of the last penalty_last_n accepted tokens */
    size_t window_len, window_head;
    uint32_t *counts; /* scratch: occurrences per id while penalising (kept zeroed) */
    cand *cands;      /* scratch: n_vocab candidates */
};

sampler_params sampler_default_params(void)
{
    return (sampler_params){.temperature = 0.8f,
                            .top_k = 40,
                            .top_p = 0.95f,
                            .min_p = 0.05f,
                            .repeat_penalty = 1.0f,
                            .frequency_penalty = 0.0f,
                            .presence_penalty = 0.0f,
                            .penalty_last_n = 64,
                            .seed = 0};
}

llmos_err sampler_new(const sampler_params *p, uint32_t n_vocab, llmos_sampler **out)
{
    *out = NULL;
    if (n_vocab == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "sampler: the vocabulary is empty");
    if (!(p->top_p >= 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1))
        return llmos_fail(LLMOS_ERR_INVALID, "sampler: top_p %g and min_p %g must lie in [0, 1]",
                          (double)p->top_p, (double)p->min_p);
    if (!(p->repeat_penalty > 0) || !(p->frequency_penalty >= 0) || !(p->presence_penalty >= 0) ||
        p->penalty_last_n < 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "sampler: repeat penalty %g must be > 0, frequency/presence penalties "
                          "(%g, %g) and the window (%d) >= 0",
                          (double)p->repeat_penalty, (double)p->frequency_penalty,
                          (double)p->presence_penalty, (int)p->penalty_last_n);
    if (isnan(p->temperature))
        return llmos_fail(LLMOS_ERR_INVALID, "sampler: temperature is NaN");
    llmos_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "sampler: out of memory");
    s->params = *p;
    s->n_vocab = n_vocab;
    s->window = calloc((size_t)p->penalty_last_n + 1, sizeof *s->window);
    s->counts = calloc(n_vocab, sizeof *s->counts);
    s->cands = calloc(n_vocab, sizeof *s->cands);
    if (!s->window || !s->counts || !s->cands) {
        sampler_free(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "sampler: out of memory for %u candidates", n_vocab);
    }
    sampler_reset(s);
    *out = s;
    return LLMOS_OK;
}

void sampler_free(llmos_sampler *s)
{
    if (!s)
        return;
    free(s->window);
    free(s->counts);
    free(s->cands);
    free(s);
}

void sampler_reset(llmos_sampler *s)
{
    s->window_len = 0;
    s->window_head = 0;
    sampler_rng_seed(&s->rng, s->params.seed);
}

void sampler_accept(llmos_sampler *s, int32_t token)
{
    size_t cap = (size_t)s->params.penalty_last_n;
    if (cap == 0 || token < 0 || (uint32_t)token >= s->n_vocab)
        return;
    s->window[s->window_head] = token;
    s->window_head = (s->window_head + 1) % cap;
    if (s->window_len < cap)
        s->window_len++;
}

static void apply_penalties(llmos_sampler *s)
{
    const sampler_params *p = &s->params;
    if (s->window_len == 0 ||
        (p->repeat_penalty == 1.0f && p->frequency_penalty == 0 && p->presence_penalty == 0))
        return;
    for (size_t i = 0; i < s->window_len; i++)
        s->counts[s->window[i]]++;
    for (size_t i = 0; i < s->window_len; i++) {
        int32_t id = s->window[i];
        uint32_t c = s->counts[id];
        if (c == 0)
            continue; /* already penalised (a repeat within the window) */
        cand *x = &s->cands[id];
        if (x->logit > 0)
            x->logit /= p->repeat_penalty;
        else
            x->logit *= p->repeat_penalty;
        x->logit -= (float)c * p->frequency_penalty + p->presence_penalty;
        s->counts[id] = 0;
    }
}

/* Descending by logit, then ascending by id, so that ties are broken the same way always. */
static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static bool cand_before(const cand *x, const cand *y)
{
    return cand_cmp(x, y) < 0;
}

/* Move the k best of c[0..n) to the front, sorted: a min-heap of the best k seen so far
 * (worst at the root), O(n log k). */
static void select_top_k(cand *c, size_t n, size_t k)
{
    assert(k > 0 && k < n);
    for (size_t i = 1; i < k; i++) { /* heapify c[0..k) by sifting up */
        size_t j = i;
        while (j > 0 && cand_before(&c[(j - 1) / 2], &c[j])) {
            cand t = c[j];
            c[j] = c[(j - 1) / 2];
            c[(j - 1) / 2] = t;
            j = (j - 1) / 2;
        }
    }
    for (size_t i = k; i < n; i++) {
        if (!cand_before(&c[i], &c[0]))
            continue;
        c[0] = c[i];
        size_t j = 0;
        for (;;) { /* sift down: the root must be the worst */
            size_t l = 2 * j + 1, r = l + 1, w = j;
            if (l < k && cand_before(&c[w], &c[l]))
                w = l;
            if (r < k && cand_before(&c[w], &c[r]))
                w = r;
            if (w == j)
                break;
            cand t = c[j];
            c[j] = c[w];
            c[w] = t;
            j = w;
        }
    }
    qsort(c, k, sizeof *c, cand_cmp);
}

/* c[i].p = softmax(logit / temp) over c[0..n). */
static void softmax_cands(cand *c, size_t n, float temp)
{
    float max = c[0].logit;
    for (size_t i = 1; i < n; i++)
        if (c[i].logit > max)
            max = c[i].logit;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - max) / temp);
        sum += c[i].p;
    }
    for (size_t i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
}

int32_t sampler_sample(llmos_sampler *s, const float *logits)
{
    const sampler_params *p = &s->params;
    size_t n = s->n_vocab;
    cand *c = s->cands;
    for (size_t i = 0; i < n; i++)
        c[i] = (cand){.logit = logits[i], .id = (int32_t)i};
    apply_penalties(s);

    if (!(p->temperature > 0)) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit)
                best = i;
        return c[best].id;
    }

    bool sorted = false;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        select_top_k(c, n, (size_t)p->top_k);
        n = (size_t)p->top_k;
        sorted = true;
    }
    if (p->min_p > 0 || p->top_p < 1) {
        softmax_cands(c, n, 1.0f);
        if (p->min_p > 0) { /* keep p >= min_p * p_max; order kept, the best survives */
            float pmax = 0;
            for (size_t i = 0; i < n; i++)
                pmax = c[i].p > pmax ? c[i].p : pmax;
            size_t kept = 0;
            for (size_t i = 0; i < n; i++)
                if (c[i].p >= p->min_p * pmax)
                    c[kept++] = c[i];
            n = kept;
        }
        if (p->top_p < 1) {
            if (!sorted)
                qsort(c, n, sizeof *c, cand_cmp);
            sorted = true;
            /* probabilities are still those of the whole distribution, as top-p intends */
            double mass = 0;
            size_t keep = n;
            for (size_t i = 0; i < n; i++) {
                mass += c[i].p;
                if (mass >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
    }
    assert(n > 0);
    (void)sorted;

    softmax_cands(c, n, p->temperature);
    float r = sampler_rng_float(&s->rng);
    double acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc)
            return c[i].id;
    }
    return c[n - 1].id; /* r fell in the rounding gap at the top */
}
