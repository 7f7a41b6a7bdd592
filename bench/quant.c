/*
 * bench/quant.c - how fast the vec_dot kernels stream weights, next to the machine's memory
 * bandwidth measured in the same run.
 *
 * Token generation is a matrix-vector product per weight matrix: every weight byte is read
 * once per token, so the figure that matters is GB/s of weight bytes, and the ceiling is the
 * memory bandwidth. For each type a matrix of k = 4096 columns and (by default) 1 GiB, far
 * beyond the last-level cache, is multiplied by one activation vector (quantized once to the
 * type's vec_dot_type), with 1 and 2 threads from the llmos pool, and with the scalar
 * reference on one thread (over the first 64 MiB only: it is compute-bound). The baseline is a
 * STREAM-style triad a[i] = b[i] + s*c[i] over three arrays of the same size, counted as 24 bytes
 * per element; a read-only pass over one array shows what pure streaming reaches. Every large
 * buffer is in huge pages (llmos_huge_alloc), as model weights are.
 *
 * A second table gives the compute ceiling of each kernel (a few rows that stay in cache), a
 * third times quant_gemm (64 tokens at once) against 64 separate vec_dot passes on a matrix
 * that fits in cache, the case of prompt processing.
 *
 * The packed section times the same three things for the 16-row interleaved kernels
 * (quant_pack.h) that inference uses where the CPU has them: streaming GB/s, GB/s in cache,
 * and 64 tokens at once against the old quant_gemm.
 *
 * usage: quant [--mib N] [--threads N]   (LLMOS_QUANT_ISA=ref|avx2 caps the kernels)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/pack/quant_pack.h"
#include "llmos/base.h"
#include "llmos/quant.h"

#define K_COLS 4096

/* ---- memory bandwidth baseline ------------------------------------------------------------ */

typedef struct triad_job {
    double *a, *b, *c;
    double s;
} triad_job;

static void triad_range(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    triad_job *j = ctx;
    for (size_t i = begin; i < end; i++)
        j->a[i] = j->b[i] + j->s * j->c[i];
}

/* Best of 5 triads over n doubles, in GB/s. */
static double triad_gbs(llmos_pool *pool, double *a, double *b, double *c, size_t n)
{
    triad_job j = {a, b, c, 3.0};
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = llmos_time_now();
        pool_parallel_for(pool, n, 4096, triad_range, &j);
        double dt = llmos_time_now() - t0;
        double gbs = 24.0 * (double)n / dt / 1e9;
        best = gbs > best ? gbs : best;
    }
    return best;
}

/* Read-only bandwidth: what streaming weights can reach at best (the triad also writes, and
 * a write costs a read for ownership too, so it sits below this). */
typedef struct read_job {
    const uint64_t *p;
    uint64_t sink[256];
} read_job;

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static uint64_t xor_avx2(const uint64_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
    }
    a = _mm256_xor_si256(a, b);
    uint64_t r[4];
    _mm256_storeu_si256((__m256i *)r, a);
    return r[0] ^ r[1] ^ r[2] ^ r[3];
}
#endif

static void read_range(void *ctx, size_t begin, size_t end, int worker)
{
    read_job *j = ctx;
    uint64_t x = 0;
#if defined(__x86_64__)
    if (llmos_cpu_features()->avx2)
        x = xor_avx2(j->p + begin, end - begin);
    else
#endif
        for (size_t i = begin; i < end; i++)
            x ^= j->p[i];
    j->sink[worker & 255] ^= x; /* keeps the loads */
}

/* Best of 5 passes reading n words, in GB/s. */
static double read_gbs(llmos_pool *pool, const uint64_t *p, size_t n)
{
    static read_job j;
    j.p = p;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = llmos_time_now();
        pool_parallel_for(pool, n, 4096, read_range, &j);
        double gbs = 8.0 * (double)n / (llmos_time_now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    return best;
}

/* ---- matrix-vector ------------------------------------------------------------------------ */

typedef struct mv_job {
    quant_vec_dot_fn dot;
    const uint8_t *w;
    size_t row_bytes;
    const void *x;
    float *y;
} mv_job;

static void mv_range(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    mv_job *j = ctx;
    for (size_t r = begin; r < end; r++)
        j->dot(K_COLS, &j->y[r], j->w + r * j->row_bytes, j->x);
}

/* GB/s of weight bytes: best of `reps` passes over all rows. */
static double mv_gbs(llmos_pool *pool, mv_job *j, size_t rows, int reps)
{
    double best = 0;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = llmos_time_now();
        pool_parallel_for(pool, rows, 16, mv_range, j);
        double dt = llmos_time_now() - t0;
        double gbs = (double)(rows * j->row_bytes) / dt / 1e9;
        best = gbs > best ? gbs : best;
    }
    return best;
}

/* ---- packed (16-row) kernels ------------------------------------------------------------- */

typedef struct pk_job {
    qpack_kernel_fn kernel;
    const uint8_t *w; /* groups of group_bytes */
    size_t group_bytes;
    const void *act; /* n_tok tokens of act_stride bytes */
    size_t act_stride, n_tok;
    float *y;
} pk_job;

static void pk_range(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    pk_job *j = ctx;
    float out[QPACK_TOK][QPACK_ROWS];
    for (size_t g = begin; g < end; g++)
        for (size_t t0 = 0; t0 < j->n_tok; t0 += QPACK_TOK) {
            size_t nt = j->n_tok - t0 < QPACK_TOK ? j->n_tok - t0 : QPACK_TOK;
            j->kernel(K_COLS, j->w + g * j->group_bytes,
                      (const uint8_t *)j->act + t0 * j->act_stride, j->act_stride, nt, out);
            for (size_t t = 0; t < nt; t++)
                j->y[g * QPACK_ROWS + t] = out[t][0] + out[t][QPACK_ROWS - 1];
        }
}

/* Best of `reps` passes over `groups` groups, in seconds. */
static double pk_time(llmos_pool *pool, pk_job *j, size_t groups, int reps)
{
    double best = 1e9;
    for (int rep = 0; rep < reps; rep++) {
        double t0 = llmos_time_now();
        size_t chunk = groups / (8 * (size_t)pool_threads(pool));
        pool_parallel_for_dynamic(pool, groups, chunk ? chunk : 1, pk_range, j);
        double dt = llmos_time_now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

static void fill_matrix(ggml_type type, uint8_t *w, size_t rows, size_t row_bytes, float *tmp);

static void packed_section(llmos_pool *p1, llmos_pool *pn, uint8_t *w, size_t bytes, float *tmp,
                           float *y, double bw1, double bwn)
{
    static const ggml_type pk_types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                         GGML_TYPE_Q6_K, GGML_TYPE_Q5_0, GGML_TYPE_Q5_K,
                                         GGML_TYPE_Q5_1};
    enum { TOK = 64, ROWS = 1024 };
    uint8_t *pk = llmos_huge_alloc(bytes);
    uint8_t *act = malloc(TOK * qpack_act_bytes(K_COLS));
    if (!pk || !act) {
        fprintf(stderr, "quant: no memory for the packed section\n");
        llmos_huge_free(pk, bytes);
        free(act);
        return;
    }
    printf("\npacked 16-row kernels: streaming %zu MiB (GB/s, %% of triad), in cache (64 rows, "
           "GB/s), %d tokens x %d rows (ms, vs quant_gemm)\n",
           bytes >> 20, TOK, ROWS);
    printf("%-6s %14s %16s %10s %10s %10s\n", "type", "1 thread", "threads", "in cache", "gemm ms",
           "old ms");
    for (int s = 0; s < TOK; s++) {
        for (size_t i = 0; i < K_COLS; i++)
            tmp[i] = (float)((double)rand() / RAND_MAX - 0.5);
        qpack_act_quantize(tmp, K_COLS, act + (size_t)s * qpack_act_bytes(K_COLS));
    }
    for (size_t ti = 0; ti < LLMOS_ARRAY_LEN(pk_types); ti++) {
        ggml_type type = pk_types[ti];
        const qpack_traits *pt = qpack_traits_of(type);
        const quant_traits *t = quant_traits_of(type);
        if (!pt || !pt->kernel || !qpack_usable(type, K_COLS))
            continue; /* no packed kernel for this type on this CPU */
        size_t row_bytes = K_COLS / t->block_size * t->type_size;
        size_t group_bytes = QPACK_ROWS * row_bytes, groups = bytes / group_bytes;
        fill_matrix(type, w, groups * QPACK_ROWS, row_bytes, tmp);
        for (size_t g = 0; g < groups; g++)
            pt->pack(w + g * group_bytes, row_bytes, QPACK_ROWS, K_COLS, pk + g * group_bytes);
        pk_job j = {pt->kernel, pk, group_bytes, act, qpack_act_bytes(K_COLS), 1, y};
        double total = (double)(groups * group_bytes);
        double g1 = total / pk_time(p1, &j, groups, 3) / 1e9;
        double gn = total / pk_time(pn, &j, groups, 3) / 1e9;
        double gc = (double)(4 * group_bytes) / pk_time(NULL, &j, 4, 200) / 1e9;
        /* 64 tokens x 1024 rows: packed kernels vs the old quant_gemm on the same rows */
        j.n_tok = TOK;
        double tp = pk_time(NULL, &j, ROWS / QPACK_ROWS, 5);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        size_t old_act = K_COLS / v->block_size * v->type_size;
        uint8_t *oact = malloc(TOK * old_act);
        float *out = malloc((size_t)TOK * ROWS * sizeof *out);
        double to = 0;
        if (oact && out) {
            for (int s = 0; s < TOK; s++) {
                for (size_t i = 0; i < K_COLS; i++)
                    tmp[i] = (float)((double)rand() / RAND_MAX - 0.5);
                v->from_float(tmp, oact + (size_t)s * old_act, K_COLS);
            }
            to = 1e9;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = llmos_time_now();
                if (quant_gemm(type, K_COLS, ROWS, w, row_bytes, TOK, oact, old_act, out, ROWS))
                    break;
                double dt = llmos_time_now() - t0;
                to = dt < to ? dt : to;
            }
        }
        free(oact);
        free(out);
        char c1[32], cn[32];
        snprintf(c1, sizeof c1, "%.1f (%3.0f%%)", g1, 100 * g1 / bw1);
        snprintf(cn, sizeof cn, "%.1f (%3.0f%%)", gn, 100 * gn / bwn);
        printf("%-6s %14s %16s %10.1f %10.2f %10.2f\n", t->name, c1, cn, gc, tp * 1e3, to * 1e3);
        fflush(stdout);
    }
    llmos_huge_free(pk, bytes);
    free(act);
}

static const ggml_type types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
    GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
};

/* Fill `bytes` of w with rows of `type`: quantize 64 rows of random data and repeat them
 * (quantizing a whole GiB with the reference K-quant searches would take minutes). */
static void fill_matrix(ggml_type type, uint8_t *w, size_t rows, size_t row_bytes, float *tmp)
{
    const quant_traits *t = quant_traits_of(type);
    size_t seed_rows = rows < 64 ? rows : 64;
    for (size_t r = 0; r < seed_rows; r++) {
        for (size_t i = 0; i < K_COLS; i++)
            tmp[i] = (float)((double)rand() / RAND_MAX - 0.5);
        t->from_float_ref(tmp, w + r * row_bytes, K_COLS);
    }
    for (size_t r = seed_rows; r < rows; r++)
        memcpy(w + r * row_bytes, w + (r % seed_rows) * row_bytes, row_bytes);
}

static int usage(void)
{
    fprintf(stderr, "usage: quant [--mib N] [--threads N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    size_t mib = 1024;
    int threads = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc)
            mib = (size_t)strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else
            return usage();
    }
    if (mib < 16 || threads < 2)
        return usage();
    size_t bytes = mib << 20;

    const llmos_cpu *cpu = llmos_cpu_features();
    char feats[256];
    llmos_cpu_features_string(cpu, feats, sizeof feats);
    printf("cpu: %s (%d CPUs)\nfeatures: %s\nkernels: %s\n", cpu->brand, cpu->n_cpus, feats,
           quant_isa_name());

    llmos_pool *p1 = NULL, *pn = NULL;
    if (pool_new(1, &p1) != LLMOS_OK || pool_new(threads, &pn) != LLMOS_OK) {
        fprintf(stderr, "quant: %s\n", llmos_errmsg());
        return 1;
    }

    /* baseline: triad over three arrays of `bytes` each */
    size_t n = bytes / sizeof(double);
    double *a = llmos_huge_alloc(bytes), *b = llmos_huge_alloc(bytes), *c = llmos_huge_alloc(bytes);
    if (!a || !b || !c) {
        fprintf(stderr, "quant: cannot allocate 3 x %zu MiB for the triad\n", mib);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        a[i] = 0;
        b[i] = (double)i;
        c[i] = 1.0 / (double)(i + 1);
    }
    double bw1 = triad_gbs(p1, a, b, c, n);
    double bwn = triad_gbs(pn, a, b, c, n);
    double rd1 = read_gbs(p1, (const uint64_t *)b, n), rdn = read_gbs(pn, (const uint64_t *)b, n);
    llmos_huge_free(a, bytes);
    llmos_huge_free(b, bytes);
    llmos_huge_free(c, bytes);
    printf("memory bandwidth (triad, 3 x %zu MiB): %.1f GB/s on 1 thread, %.1f GB/s on %d\n", mib,
           bw1, bwn, threads);
    printf("read-only bandwidth (%zu MiB): %.1f GB/s on 1 thread, %.1f GB/s on %d\n\n", mib, rd1,
           rdn, threads);

    uint8_t *w = llmos_huge_alloc(bytes);
    float *tmp = malloc(K_COLS * sizeof *tmp);
    float *y = malloc((bytes / 64) * sizeof *y);
    void *xq = malloc(K_COLS * 4);
    if (!w || !tmp || !y || !xq) {
        fprintf(stderr, "quant: cannot allocate the %zu MiB matrix\n", mib);
        return 1;
    }
    printf("vec_dot, %zu MiB matrix of %d columns, GB/s of weight bytes (%% of triad)\n", mib,
           K_COLS);
    printf("%-6s %9s %14s %16s %14s\n", "type", "bits/w", "1 thread", "threads", "scalar ref");
    for (size_t ti = 0; ti < LLMOS_ARRAY_LEN(types); ti++) {
        const quant_traits *t = quant_traits_of(types[ti]);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        size_t row_bytes = K_COLS / t->block_size * t->type_size;
        size_t rows = bytes / row_bytes;
        fill_matrix(types[ti], w, rows, row_bytes, tmp);
        for (size_t i = 0; i < K_COLS; i++)
            tmp[i] = (float)((double)rand() / RAND_MAX - 0.5);
        v->from_float(tmp, xq, K_COLS);
        mv_job j = {t->vec_dot, w, row_bytes, xq, y};
        double g1 = mv_gbs(p1, &j, rows, 3);
        double gn = mv_gbs(pn, &j, rows, 3);
        /* the scalar reference is compute-bound far below memory speed: 64 MiB of rows are
         * enough to time it */
        j.dot = t->vec_dot_ref;
        size_t ref_rows = ((size_t)64 << 20) / row_bytes;
        double gr = mv_gbs(p1, &j, ref_rows < rows ? ref_rows : rows, 1);
        char c1[32], cn[32];
        snprintf(c1, sizeof c1, "%.1f (%3.0f%%)", g1, 100 * g1 / bw1);
        snprintf(cn, sizeof cn, "%.1f (%3.0f%%)", gn, 100 * gn / bwn);
        printf("%-6s %9.3f %14s %16s %14.2f\n", t->name,
               8.0 * (double)t->type_size / (double)t->block_size, c1, cn, gr);
        fflush(stdout);
    }

    /* compute ceiling: 64 rows that stay in L2, best of 200 passes (robust to a busy machine) */
    printf("\nvec_dot in cache (64 rows of %d, best of 200 passes), 1 thread\n", K_COLS);
    printf("%-6s %14s %18s\n", "type", "GB/s weights", "ns per 256 values");
    for (size_t ti = 0; ti < LLMOS_ARRAY_LEN(types); ti++) {
        const quant_traits *t = quant_traits_of(types[ti]);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        size_t row_bytes = K_COLS / t->block_size * t->type_size;
        fill_matrix(types[ti], w, 64, row_bytes, tmp);
        for (size_t i = 0; i < K_COLS; i++)
            tmp[i] = (float)((double)rand() / RAND_MAX - 0.5);
        v->from_float(tmp, xq, K_COLS);
        mv_job j = {t->vec_dot, w, row_bytes, xq, y};
        double g = mv_gbs(NULL, &j, 64, 200);
        printf("%-6s %14.1f %18.2f\n", t->name, g,
               (double)row_bytes / g * 256.0 / K_COLS); /* bytes / (GB/s) = ns */
    }

    /* prompt processing: 64 tokens against 1024 rows (in cache), one thread */
    enum { TOK = 64, ROWS = 1024 };
    printf("\nquant_gemm vs vec_dot per token: %d tokens x %d rows x %d columns, 1 thread\n", TOK,
           ROWS, K_COLS);
    printf("%-6s %12s %12s %8s\n", "type", "vec_dot ms", "gemm ms", "speedup");
    static const ggml_type gemm_types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                           GGML_TYPE_Q6_K, GGML_TYPE_Q5_K};
    float *out = malloc((size_t)TOK * ROWS * sizeof *out);
    uint8_t *act = malloc((size_t)TOK * K_COLS * 2);
    for (size_t ti = 0; out && act && ti < LLMOS_ARRAY_LEN(gemm_types); ti++) {
        const quant_traits *t = quant_traits_of(gemm_types[ti]);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        size_t row_bytes = K_COLS / t->block_size * t->type_size;
        size_t act_bytes = K_COLS / v->block_size * v->type_size;
        fill_matrix(gemm_types[ti], w, ROWS, row_bytes, tmp);
        for (int s = 0; s < TOK; s++) {
            for (size_t i = 0; i < K_COLS; i++)
                tmp[i] = (float)((double)rand() / RAND_MAX - 0.5);
            v->from_float(tmp, act + (size_t)s * act_bytes, K_COLS);
        }
        double best_dot = 1e9, best_gemm = 1e9;
        for (int rep = 0; rep < 5; rep++) {
            double t0 = llmos_time_now();
            for (int s = 0; s < TOK; s++)
                for (int r = 0; r < ROWS; r++)
                    t->vec_dot(K_COLS, &out[(size_t)s * ROWS + (size_t)r],
                               w + (size_t)r * row_bytes, act + (size_t)s * act_bytes);
            double t1 = llmos_time_now();
            if (quant_gemm(gemm_types[ti], K_COLS, ROWS, w, row_bytes, TOK, act, act_bytes, out,
                           ROWS) != LLMOS_OK) {
                fprintf(stderr, "quant: %s\n", llmos_errmsg());
                return 1;
            }
            double t2 = llmos_time_now();
            best_dot = t1 - t0 < best_dot ? t1 - t0 : best_dot;
            best_gemm = t2 - t1 < best_gemm ? t2 - t1 : best_gemm;
        }
        printf("%-6s %12.1f %12.1f %7.2fx\n", t->name, best_dot * 1e3, best_gemm * 1e3,
               best_dot / best_gemm);
    }
    free(out);
    free(act);
    packed_section(p1, pn, w, bytes, tmp, y, bw1, bwn);
    llmos_huge_free(w, bytes);
    free(tmp);
    free(y);
    free(xq);
    pool_free(p1);
    pool_free(pn);
    return 0;
}
