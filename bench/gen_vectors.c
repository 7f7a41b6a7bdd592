/*
 * gen_vectors.c - synthetic vector datasets with exact ground truth for bench/vdb.
 *
 *   gen_vectors --kind l2|ip --n N --nq Q --dim D [--gt-k 100] [--seed S] [--threads T]
 *               --out PREFIX
 *
 * writes PREFIX_base.fvecs (N vectors), PREFIX_query.fvecs (Q vectors) and PREFIX_gt.ivecs
 * (for each query the 0-based base indices of its gt-k nearest neighbours, nearest first).
 * .fvecs/.ivecs are the customary TEXMEX layout: per vector an int32 dimension, then that many
 * float32 (or int32) values, little-endian.
 *
 * Data look like embeddings rather than uniform noise: each point lies near a low-dimensional
 * patch around one of many topic centres (centre + A_c z with z in R^16, plus small isotropic
 * noise). Kind "l2" keeps them raw (for L2); kind "ip" normalises them to unit length (for
 * inner product) and puts the topic centres closer together. Queries are not copies of base points:
 * each mixes two topics (mostly one) and has its own noise. Ground truth is computed by brute force
 * with T threads.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/vdb.h"

#define LATENT 16

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *s)
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

static float gauss(uint64_t *s)
{
    return (float)(sqrt(-2 * log(uniform(s))) * cos(6.283185307179586 * uniform(s)));
}

typedef struct model {
    int dim, n_topics;
    float *centre; /* n_topics x dim */
    float *basis;  /* n_topics x dim x LATENT */
} model;

static void make_point(const model *m, uint64_t *s, int topic, int topic2, float mix, float noise,
                       bool unit, float *out)
{
    float z[LATENT];
    for (int j = 0; j < LATENT; j++)
        z[j] = gauss(s);
    const float *c1 = m->centre + (size_t)topic * m->dim, *c2 = m->centre + (size_t)topic2 * m->dim;
    const float *b = m->basis + (size_t)topic * m->dim * LATENT;
    double norm = 0;
    for (int i = 0; i < m->dim; i++) {
        float x = (1 - mix) * c1[i] + mix * c2[i] + noise * gauss(s);
        for (int j = 0; j < LATENT; j++)
            x += b[(size_t)i * LATENT + j] * z[j];
        out[i] = x;
        norm += (double)x * x;
    }
    if (unit) {
        float inv = (float)(1 / sqrt(norm));
        for (int i = 0; i < m->dim; i++)
            out[i] *= inv;
    }
}

static int write_vecs(const char *path, const void *data, size_t n, int dim)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return -1;
    }
    const char *p = data;
    for (size_t i = 0; i < n; i++) {
        int32_t d = dim;
        if (fwrite(&d, 4, 1, f) != 1 ||
            fwrite(p + i * (size_t)dim * 4, 4, (size_t)dim, f) != (size_t)dim) {
            perror(path);
            fclose(f);
            return -1;
        }
    }
    if (fclose(f) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

typedef struct gt_job {
    const float *base, *query;
    size_t n, nq;
    int dim, k, ip;
    int32_t *gt;
    size_t next;
    pthread_mutex_t lock;
} gt_job;

typedef struct cand {
    float d;
    int32_t i;
} cand;

static void *gt_worker(void *arg)
{
    gt_job *j = arg;
    vdb_simd simd = vdb_simd_best();
    cand *top = malloc(((size_t)j->k + 1) * sizeof(cand));
    if (!top)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        size_t q = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (q >= j->nq)
            break;
        const float *qv = j->query + q * (size_t)j->dim;
        int nt = 0;
        for (size_t i = 0; i < j->n; i++) {
            const float *b = j->base + i * (size_t)j->dim;
            float d = j->ip ? 1 - vdb_dot_with(simd, qv, b, (size_t)j->dim)
                            : vdb_l2sq_with(simd, qv, b, (size_t)j->dim);
            if (nt == j->k && d >= top[nt - 1].d)
                continue;
            /* insertion into a sorted array of at most k */
            int p = nt < j->k ? nt++ : nt - 1;
            while (p > 0 && top[p - 1].d > d) {
                top[p] = top[p - 1];
                p--;
            }
            top[p] = (cand){d, (int32_t)i};
        }
        for (int r = 0; r < j->k; r++)
            j->gt[q * (size_t)j->k + r] = r < nt ? top[r].i : -1;
    }
    free(top);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: gen_vectors --kind l2|ip --n N --nq Q --dim D [--gt-k 100] "
                    "[--seed S] [--threads T] --out PREFIX\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *kind = NULL, *out = NULL;
    size_t n = 0, nq = 1000;
    int dim = 0, k = 100, threads = 2;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--kind"))
            kind = argv[++i];
        else if (!strcmp(argv[i], "--n"))
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--nq"))
            nq = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--dim"))
            dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gt-k"))
            k = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out"))
            out = argv[++i];
        else
            usage();
    }
    if (!kind || !out || n == 0 || nq == 0 || dim <= 0 || k <= 0 || threads <= 0 ||
        (strcmp(kind, "l2") && strcmp(kind, "ip")) || (size_t)k > n)
        usage();
    int ip = !strcmp(kind, "ip");

    /* topics: about one per 200 points; centres spread wider than the patches */
    model m = {.dim = dim, .n_topics = (int)(n / 200 > 10 ? n / 200 : 10)};
    m.centre = malloc((size_t)m.n_topics * dim * sizeof(float));
    m.basis = malloc((size_t)m.n_topics * dim * LATENT * sizeof(float));
    float *base = malloc(n * (size_t)dim * sizeof(float));
    float *query = malloc(nq * (size_t)dim * sizeof(float));
    int32_t *gt = malloc(nq * (size_t)k * sizeof(int32_t));
    if (!m.centre || !m.basis || !base || !query || !gt) {
        fprintf(stderr, "gen_vectors: out of memory\n");
        return 1;
    }
    uint64_t s = seed;
    /* for ip the topics sit closer together (relative to their patches): with unit vectors and
     * far-apart topics, queries mixing two topics have neighbours the graph can barely reach */
    float spread = ip ? 0.5f : 1.0f, patch = 0.35f / sqrtf(LATENT), noise = 0.12f;
    for (size_t i = 0; i < (size_t)m.n_topics * dim; i++)
        m.centre[i] = spread * gauss(&s);
    for (size_t i = 0; i < (size_t)m.n_topics * dim * LATENT; i++)
        m.basis[i] = patch * gauss(&s);
    for (size_t i = 0; i < n; i++) {
        int t = (int)(rng_next(&s) % (uint64_t)m.n_topics);
        make_point(&m, &s, t, t, 0, noise / sqrtf((float)dim) * 4, ip, base + i * (size_t)dim);
    }
    for (size_t i = 0; i < nq; i++) {
        int t = (int)(rng_next(&s) % (uint64_t)m.n_topics);
        int t2 = (int)(rng_next(&s) % (uint64_t)m.n_topics);
        float mix = (float)(0.3 * uniform(&s));
        make_point(&m, &s, t, t2, mix, noise / sqrtf((float)dim) * 6, ip, query + i * (size_t)dim);
    }

    gt_job job = {
        .base = base, .query = query, .n = n, .nq = nq, .dim = dim, .k = k, .ip = ip, .gt = gt};
    pthread_mutex_init(&job.lock, NULL);
    pthread_t th[64];
    if (threads > 64)
        threads = 64;
    double t0 = llmos_time_now();
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, gt_worker, &job);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    fprintf(stderr, "gen_vectors: ground truth for %zu queries over %zu x %d in %.1f s\n", nq, n,
            dim, llmos_time_now() - t0);

    char path[4096];
    snprintf(path, sizeof path, "%s_base.fvecs", out);
    if (write_vecs(path, base, n, dim))
        return 1;
    snprintf(path, sizeof path, "%s_query.fvecs", out);
    if (write_vecs(path, query, nq, dim))
        return 1;
    snprintf(path, sizeof path, "%s_gt.ivecs", out);
    if (write_vecs(path, gt, nq, k))
        return 1;
    fprintf(stderr, "gen_vectors: wrote %s_{base,query}.fvecs and %s_gt.ivecs\n", out, out);
    free(m.centre);
    free(m.basis);
    free(base);
    free(query);
    free(gt);
    return 0;
}
