/*
 * roofline.c - how close generation comes to this machine's memory-bandwidth ceiling.
 *
 * Generating one token reads every weight matrix once (the KV cache and activations are small
 * next to it at short contexts), so tokens/s cannot exceed bandwidth / bytes-per-token. This
 * program
 *   1. measures the bandwidth with a STREAM-like triad a[i] = b[i] + s * c[i] (McCalpin's
 *      STREAM benchmark; bytes counted as STREAM does: two reads and one write per element)
 *      over three arrays of 128 MiB, far larger than any cache, split across the same thread
 *      pool the model uses, best of 10 runs;
 *   2. counts the bytes of weights one token reads: every tensor of the file, except that the
 *      input embedding contributes one row (a lookup) unless it is also the output matrix;
 *   3. runs generation (tgN, as `llmos bench`: after a 4-token prompt, N tokens one at a time,
 *      one untimed warm-up, REPS timed runs) and prints the achieved fraction of the ceiling.
 *
 * With --anon the file is read into anonymous memory advised for transparent huge pages
 * (MADV_HUGEPAGE) instead of being used in place from the page cache's 4 KiB pages: on a
 * virtual machine a TLB miss costs a two-level page walk, and the weight stream takes one
 * every 4 KiB.
 *
 * usage: roofline --model FILE [-t THREADS] [-n N] [-r REPS] [--anon]
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "llmos/infer.h"

enum { TRIAD_N = 16 << 20 }; /* doubles per array: 128 MiB */

typedef struct triad {
    double *a, *b, *c;
    double s;
} triad;

static void triad_range(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    triad *t = ctx;
    double *restrict a = t->a;
    const double *restrict b = t->b, *restrict c = t->c;
    for (size_t i = begin; i < end; i++)
        a[i] = b[i] + t->s * c[i];
}

static void init_range(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    triad *t = ctx;
    for (size_t i = begin; i < end; i++) {
        t->a[i] = 0;
        t->b[i] = 1;
        t->c[i] = 2;
    }
}

/* Best triad bandwidth in bytes/s over `runs` runs. Pages are first touched by the threads
 * that later use them (so they are local on a NUMA machine). */
static double measure_bandwidth(llmos_pool *pool, int runs)
{
    triad t = {.s = 3.0};
    t.a = aligned_alloc(64, TRIAD_N * sizeof(double));
    t.b = aligned_alloc(64, TRIAD_N * sizeof(double));
    t.c = aligned_alloc(64, TRIAD_N * sizeof(double));
    if (!t.a || !t.b || !t.c) {
        fprintf(stderr, "roofline: out of memory for the triad arrays\n");
        exit(1);
    }
    pool_parallel_for(pool, TRIAD_N, 1024, init_range, &t);
    double best = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = llmos_time_now();
        pool_parallel_for(pool, TRIAD_N, 1024, triad_range, &t);
        double sec = llmos_time_now() - t0;
        double bw = 3.0 * sizeof(double) * TRIAD_N / sec;
        best = bw > best ? bw : best;
    }
    volatile double sink = t.a[TRIAD_N / 2]; /* keep the stores */
    (void)sink;
    free(t.a);
    free(t.b);
    free(t.c);
    return best;
}

/* The model read into anonymous memory with huge pages advised; the buffer is leaked (it
 * lives as long as the program). */
static llmos_err load_anon(const char *path, llmos_model **out)
{
    llmos_map map;
    llmos_err err = llmos_file_map(path, &map);
    if (err)
        return err;
    size_t huge = 2u << 20, size = (map.size + huge - 1) / huge * huge;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        llmos_file_unmap(&map);
        return llmos_fail(LLMOS_ERR_NOMEM, "cannot allocate %zu bytes", size);
    }
    madvise(p, size, MADV_HUGEPAGE);
    size_t n = map.size;
    memcpy(p, map.data, n);
    llmos_file_unmap(&map);
    gguf_file *f;
    if ((err = gguf_open_memory(p, n, path, &f)))
        return err;
    return model_load_gguf(f, out);
}

/* Bytes of weights one generated token reads. */
static uint64_t bytes_per_token(const gguf_file *f)
{
    bool tied = gguf_find_tensor(f, "output.weight") == NULL;
    uint64_t sum = 0;
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (strcmp(t->name, "token_embd.weight") == 0 && !tied)
            sum += t->size / t->ne[1]; /* one row */
        else
            sum += t->size;
    }
    return sum;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int threads = 0, n = 64, reps = 3;
    bool anon = false;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--anon") == 0) {
            anon = true;
            continue;
        }
        if (strcmp(argv[i], "--model") == 0 && v)
            path = v;
        else if (strcmp(argv[i], "-t") == 0 && v)
            threads = atoi(v);
        else if (strcmp(argv[i], "-n") == 0 && v)
            n = atoi(v);
        else if (strcmp(argv[i], "-r") == 0 && v)
            reps = atoi(v);
        else {
            fprintf(stderr,
                    "usage: roofline --model FILE [-t THREADS] [-n N] [-r REPS] [--anon]\n");
            return 2;
        }
        i++;
    }
    if (!path || n < 1 || reps < 1) {
        fprintf(stderr, "usage: roofline --model FILE [-t THREADS] [-n N] [-r REPS] [--anon]\n");
        return 2;
    }
    llmos_pool *pool = NULL;
    llmos_model *m = NULL;
    llmos_model_ctx *c = NULL;
    if (pool_new(threads, &pool) || (anon ? load_anon(path, &m) : model_load(path, &m))) {
        fprintf(stderr, "roofline: %s\n", llmos_errmsg());
        return 1;
    }
    int nt = pool_threads(pool);
    double bw = measure_bandwidth(pool, 10);
    uint64_t bytes = bytes_per_token(model_gguf(m));
    double ceiling = bw / (double)bytes;

    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = (uint32_t)n + 4;
    cp.pool = pool;
    if (model_ctx_new(m, &cp, &c)) {
        fprintf(stderr, "roofline: %s\n", llmos_errmsg());
        return 1;
    }
    const model_hparams *hp = model_hparams_of(m);
    int32_t *toks = malloc(((size_t)n + 4) * sizeof *toks);
    if (!toks)
        return 1;
    sampler_rng rng;
    sampler_rng_seed(&rng, 42);
    for (int i = 0; i < n + 4; i++)
        toks[i] = (int32_t)(sampler_rng_u32(&rng) % hp->n_vocab);
    double sum = 0, sum2 = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        model_ctx_truncate(c, 0);
        if (model_eval(c, toks, 4, NULL)) {
            fprintf(stderr, "roofline: %s\n", llmos_errmsg());
            return 1;
        }
        double t0 = llmos_time_now();
        for (int i = 0; i < n; i++)
            if (model_eval(c, &toks[4 + i], 1, NULL)) {
                fprintf(stderr, "roofline: %s\n", llmos_errmsg());
                return 1;
            }
        double tps = n / (llmos_time_now() - t0);
        if (r >= 0) {
            sum += tps;
            sum2 += tps * tps;
        }
    }
    double mean = sum / reps;
    double var = reps > 1 ? (sum2 - sum * sum / reps) / (reps - 1) : 0;
    printf("model            %s (%s, %s)\n", path, hp->arch_name, quant_type_name(hp->weight_type));
    printf("threads          %d\n", nt);
    printf("triad bandwidth  %.2f GB/s (best of 10, 3 x 128 MiB arrays)\n", bw / 1e9);
    printf("bytes per token  %.1f MB (weights read per generated token)\n", bytes / 1e6);
    printf("ceiling          %.2f tokens/s\n", ceiling);
    printf("tg%-4d           %.2f ± %.2f tokens/s (%d reps)\n", n, mean, var > 0 ? sqrt(var) : 0.0,
           reps);
    printf("fraction         %.1f%% of the ceiling\n", 100.0 * mean / ceiling);
    free(toks);
    model_ctx_free(c);
    model_free(m);
    pool_free(pool);
    return 0;
}
