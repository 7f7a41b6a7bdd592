/*
 * test_vdb.c - the HNSW vector index: recall against exact search for every metric, filters,
 * delete with repair, save/load, rejection of corrupt images, readers beside a writer, the
 * multithreaded build, SIMD kernels against scalar, and reciprocal rank fusion.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/vdb.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t rng_state = 1;

static double rnd(void) /* uniform in [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static float gauss(void)
{
    double u = rnd() + 1e-12, v = rnd();
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* n vectors of dim around 20 random centres (clustered, like embeddings). */
static float *make_vectors(size_t n, uint32_t dim, uint64_t seed)
{
    rng_state = seed * 2654435761u + 1;
    float centres[20][64];
    assert_true(dim <= 64);
    for (int c = 0; c < 20; c++)
        for (uint32_t j = 0; j < dim; j++)
            centres[c][j] = 3 * gauss();
    float *v = malloc(n * dim * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        int c = (int)(rnd() * 20);
        for (uint32_t j = 0; j < dim; j++)
            v[i * dim + j] = centres[c][j] + gauss();
    }
    return v;
}

static vdb *build(uint32_t dim, vdb_metric metric, const float *v, size_t n, uint32_t exact_below)
{
    vdb_params p = vdb_params_default();
    p.ef_construction = 100;
    p.exact_below = exact_below;
    vdb *idx = NULL;
    assert_int_equal(vdb_new(dim, metric, &p, &idx), LLMOS_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(vdb_insert(idx, 1000 + i, v + i * dim), LLMOS_OK);
    assert_int_equal(vdb_count(idx), n);
    return idx;
}

/* Mean |graph top-k ∩ exact top-k| / k over the queries. */
static double recall(vdb *idx, const float *q, size_t nq, size_t k, size_t ef, vdb_filter_fn f,
                     void *ctx)
{
    uint32_t dim = vdb_dim(idx);
    size_t hit = 0, want = 0;
    vdb_hit a[64], b[64];
    for (size_t i = 0; i < nq; i++) {
        size_t na = 0, nb = 0;
        assert_int_equal(vdb_search(idx, q + i * dim, k, ef, f, ctx, a, &na), LLMOS_OK);
        assert_int_equal(vdb_exact_search(idx, q + i * dim, k, f, ctx, b, &nb), LLMOS_OK);
        assert_int_equal(na, nb);
        for (size_t x = 0; x + 1 < na; x++)
            assert_true(a[x].distance <= a[x + 1].distance);
        for (size_t x = 0; x < na; x++)
            for (size_t y = 0; y < nb; y++)
                if (a[x].id == b[y].id)
                    hit++;
        want += nb;
    }
    return want ? (double)hit / (double)want : 1.0;
}

/* ---- SIMD kernels ------------------------------------------------------------------------ */

static void test_simd_matches_scalar(void **state)
{
    (void)state;
    rng_state = 7;
    float a[400], b[400];
    for (int i = 0; i < 400; i++) {
        a[i] = gauss();
        b[i] = gauss();
    }
    size_t dims[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 100, 128, 384, 400};
    int checked = 0;
    for (int s = VDB_SIMD_AVX2; s <= VDB_SIMD_AVX512; s++) {
        if (!vdb_simd_available((vdb_simd)s)) {
            printf("  simd family %d not on this CPU: not checked here\n", s);
            continue;
        }
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
            size_t n = dims[d];
            double ref_l2 = 0, ref_dot = 0, mag = 0;
            for (size_t i = 0; i < n; i++) {
                ref_l2 += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
                ref_dot += (double)a[i] * b[i];
                mag += fabs((double)a[i] * b[i]);
            }
            float sl2 = vdb_l2sq_with(VDB_SIMD_SCALAR, a, b, n);
            float sdot = vdb_dot_with(VDB_SIMD_SCALAR, a, b, n);
            float vl2 = vdb_l2sq_with((vdb_simd)s, a, b, n);
            float vdot = vdb_dot_with((vdb_simd)s, a, b, n);
            assert_true(fabs(sl2 - ref_l2) <= 1e-5 * ref_l2 + 1e-6);
            assert_true(fabs(vl2 - sl2) <= 1e-5 * ref_l2 + 1e-6);
            assert_true(fabs(sdot - ref_dot) <= 1e-5 * mag + 1e-6);
            assert_true(fabs(vdot - sdot) <= 1e-5 * mag + 1e-6);
            checked++;
        }
    }
    printf("  %d SIMD kernel checks, best family here: %d\n", checked, (int)vdb_simd_best());
}

/* ---- recall per metric ------------------------------------------------------------------- */

static void check_metric_recall(vdb_metric metric)
{
    const uint32_t dim = 24;
    const size_t n = 2000, nq = 60;
    float *v = make_vectors(n + nq, dim, 11 + (uint64_t)metric);
    vdb *idx = build(dim, metric, v, n, 0);
    double r = recall(idx, v + n * dim, nq, 10, 64, NULL, NULL);
    double r10 = recall(idx, v + n * dim, nq, 10, 10, NULL, NULL);
    printf("  metric %d: recall@10 = %.3f at ef=64, %.3f at ef=10\n", (int)metric, r, r10);
    assert_true(r >= 0.95);
    assert_true(r10 >= 0.85); /* even a narrow search finds most: the graph is well linked */
    /* a larger ef never hurts much and reaches near-exact */
    assert_true(recall(idx, v + n * dim, nq, 10, 256, NULL, NULL) >= 0.98);
    vdb_free(idx);
    free(v);
}

static void test_recall_l2(void **state)
{
    (void)state;
    check_metric_recall(VDB_L2);
}

static void test_recall_ip(void **state)
{
    (void)state;
    check_metric_recall(VDB_IP);
}

static void test_recall_cosine(void **state)
{
    (void)state;
    check_metric_recall(VDB_COSINE);
}

static void test_distances_per_metric(void **state)
{
    (void)state;
    float a[2] = {3, 4}, b[2] = {6, 8}, c[2] = {-4, 3};
    vdb_hit h[2];
    size_t n = 0;
    vdb *idx = NULL;
    /* L2 reports the squared distance */
    assert_int_equal(vdb_new(2, VDB_L2, NULL, &idx), LLMOS_OK);
    assert_int_equal(vdb_insert(idx, 1, a), LLMOS_OK);
    assert_int_equal(vdb_search(idx, b, 1, 0, NULL, NULL, h, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    assert_float_equal(h[0].distance, 25.0f, 1e-5);
    vdb_free(idx);
    /* IP: 1 - dot */
    assert_int_equal(vdb_new(2, VDB_IP, NULL, &idx), LLMOS_OK);
    assert_int_equal(vdb_insert(idx, 1, a), LLMOS_OK);
    assert_int_equal(vdb_search(idx, b, 1, 0, NULL, NULL, h, &n), LLMOS_OK);
    assert_float_equal(h[0].distance, 1.0f - 50.0f, 1e-4);
    vdb_free(idx);
    /* cosine: scale does not matter; orthogonal vectors are at distance 1 */
    assert_int_equal(vdb_new(2, VDB_COSINE, NULL, &idx), LLMOS_OK);
    assert_int_equal(vdb_insert(idx, 1, a), LLMOS_OK);
    assert_int_equal(vdb_insert(idx, 2, c), LLMOS_OK);
    assert_int_equal(vdb_search(idx, b, 2, 0, NULL, NULL, h, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(h[0].id, 1);
    assert_float_equal(h[0].distance, 0.0f, 1e-6);
    assert_int_equal(h[1].id, 2);
    assert_float_equal(h[1].distance, 1.0f, 1e-6);
    float got[2];
    assert_int_equal(vdb_get(idx, 1, got), LLMOS_OK);
    assert_float_equal(got[0], 0.6f, 1e-6);
    assert_float_equal(got[1], 0.8f, 1e-6);
    vdb_free(idx);
}

/* Below exact_below the answers are exactly the brute-force ones. */
static void test_small_collection_is_exact(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    float *v = make_vectors(300, dim, 5);
    vdb *idx = build(dim, VDB_L2, v, 250, 1024);
    assert_true(recall(idx, v + 250 * dim, 50, 10, 10, NULL, NULL) == 1.0);
    vdb_free(idx);
    free(v);
}

/* A flat index keeps no graph: answers are exact, and it saves and loads as flat. */
static void test_flat_index(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    float *v = make_vectors(1600, dim, 6);
    vdb_params p = vdb_params_default();
    p.flat = true;
    p.exact_below = 0;
    vdb *idx = NULL;
    assert_int_equal(vdb_new(dim, VDB_L2, &p, &idx), LLMOS_OK);
    for (size_t i = 0; i < 1500; i++)
        assert_int_equal(vdb_insert(idx, i, v + i * dim), LLMOS_OK);
    assert_int_equal(vdb_delete(idx, 7), LLMOS_OK);
    assert_true(recall(idx, v + 1500 * dim, 50, 10, 10, NULL, NULL) == 1.0);
    llmos_buf b = {0};
    assert_int_equal(vdb_save(idx, &b), LLMOS_OK);
    vdb *back = NULL;
    assert_int_equal(vdb_load(b.data, b.len, &back), LLMOS_OK);
    assert_int_equal(vdb_count(back), 1499);
    assert_true(recall(back, v + 1500 * dim, 50, 10, 10, NULL, NULL) == 1.0);
    vdb_free(back);
    vdb_free(idx);
    buf_free(&b);
    free(v);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void test_bad_arguments(void **state)
{
    (void)state;
    vdb *idx = NULL;
    assert_int_equal(vdb_new(0, VDB_L2, NULL, &idx), LLMOS_ERR_INVALID);
    assert_null(idx);
    assert_non_null(strstr(llmos_errmsg(), "dimension"));
    vdb_params p = vdb_params_default();
    p.M = 1;
    assert_int_equal(vdb_new(8, VDB_L2, &p, &idx), LLMOS_ERR_INVALID);
    assert_int_equal(vdb_new(8, (vdb_metric)7, NULL, &idx), LLMOS_ERR_INVALID);
    vdb_free(NULL);

    assert_int_equal(vdb_new(4, VDB_COSINE, NULL, &idx), LLMOS_OK);
    float ok[4] = {1, 2, 3, 4}, nan_v[4] = {1, NAN, 3, 4}, zero[4] = {0};
    assert_int_equal(vdb_insert(idx, 9, nan_v), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "NaN"));
    assert_int_equal(vdb_insert(idx, 9, zero), LLMOS_ERR_INVALID);
    assert_int_equal(vdb_insert(idx, 9, ok), LLMOS_OK);
    assert_int_equal(vdb_insert(idx, 9, ok), LLMOS_ERR_EXISTS);
    assert_non_null(strstr(llmos_errmsg(), "9"));
    assert_int_equal(vdb_count(idx), 1);
    assert_int_equal(vdb_delete(idx, 10), LLMOS_ERR_NOT_FOUND);
    vdb_hit h[1];
    size_t n = 5;
    assert_int_equal(vdb_search(idx, nan_v, 1, 0, NULL, NULL, h, &n), LLMOS_ERR_INVALID);
    assert_int_equal(vdb_search(idx, ok, 0, 0, NULL, NULL, h, &n), LLMOS_OK);
    assert_int_equal(n, 0);
    vdb_free(idx);
}

/* ---- filter ------------------------------------------------------------------------------ */

static bool even_only(uint64_t id, void *ctx)
{
    (void)ctx;
    return id % 2 == 0;
}

static bool in_set(uint64_t id, void *ctx)
{
    const uint64_t *set = ctx;
    for (int i = 0; set[i]; i++)
        if (set[i] == id)
            return true;
    return false;
}

static void test_filter(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    const size_t n = 2000, nq = 40;
    float *v = make_vectors(n + nq, dim, 21);
    vdb *idx = build(dim, VDB_L2, v, n, 0);
    vdb_hit h[10];
    size_t nh = 0;
    for (size_t i = 0; i < nq; i++) {
        assert_int_equal(vdb_search(idx, v + (n + i) * dim, 10, 64, even_only, NULL, h, &nh),
                         LLMOS_OK);
        assert_int_equal(nh, 10);
        for (size_t j = 0; j < nh; j++)
            assert_int_equal(h[j].id % 2, 0);
    }
    assert_true(recall(idx, v + n * dim, nq, 10, 64, even_only, NULL) >= 0.95);
    /* a very selective filter still gets every match (and nothing else) */
    uint64_t allowed[] = {1003, 1500, 1999, 0};
    assert_int_equal(vdb_search(idx, v + n * dim, 10, 32, in_set, allowed, h, &nh), LLMOS_OK);
    assert_int_equal(nh, 3);
    for (size_t j = 0; j < nh; j++)
        assert_true(in_set(h[j].id, allowed));
    vdb_free(idx);
    free(v);
}

/* ---- delete ------------------------------------------------------------------------------ */

static void test_delete_repairs(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    const size_t n = 2000, nq = 50;
    float *v = make_vectors(n + nq, dim, 31);
    vdb *idx = build(dim, VDB_L2, v, n, 0);
    /* remove every third vector */
    size_t removed = 0;
    for (size_t i = 0; i < n; i += 3, removed++)
        assert_int_equal(vdb_delete(idx, 1000 + i), LLMOS_OK);
    assert_int_equal(vdb_count(idx), n - removed);
    assert_false(vdb_contains(idx, 1000));
    assert_true(vdb_contains(idx, 1001));
    assert_int_equal(vdb_delete(idx, 1000), LLMOS_ERR_NOT_FOUND);
    vdb_hit h[10];
    size_t nh = 0;
    for (size_t i = 0; i < nq; i++) {
        assert_int_equal(vdb_search(idx, v + (n + i) * dim, 10, 64, NULL, NULL, h, &nh), LLMOS_OK);
        assert_int_equal(nh, 10);
        for (size_t j = 0; j < nh; j++)
            assert_true((h[j].id - 1000) % 3 != 0);
    }
    double r = recall(idx, v + n * dim, nq, 10, 64, NULL, NULL);
    printf("  recall@10 after deleting a third: %.3f\n", r);
    assert_true(r >= 0.95);

    /* delete nearly everything: the entry point must move and the rest stay reachable */
    for (size_t i = 0; i < n; i++)
        if ((i % 3) != 0 && i >= 5)
            assert_int_equal(vdb_delete(idx, 1000 + i), LLMOS_OK);
    assert_int_equal(vdb_count(idx), 3); /* 1001, 1002, 1004 */
    assert_int_equal(vdb_search(idx, v, 10, 16, NULL, NULL, h, &nh), LLMOS_OK);
    assert_int_equal(nh, 3);
    for (size_t j = 0; j < nh; j++)
        assert_true(h[j].id == 1001 || h[j].id == 1002 || h[j].id == 1004);
    assert_int_equal(vdb_delete(idx, 1001), LLMOS_OK);
    assert_int_equal(vdb_delete(idx, 1002), LLMOS_OK);
    assert_int_equal(vdb_delete(idx, 1004), LLMOS_OK);
    assert_int_equal(vdb_search(idx, v, 10, 16, NULL, NULL, h, &nh), LLMOS_OK);
    assert_int_equal(nh, 0);
    /* freed slots are reused and the index works again */
    for (size_t i = 0; i < 500; i++)
        assert_int_equal(vdb_insert(idx, 5000 + i, v + i * dim), LLMOS_OK);
    assert_true(recall(idx, v + n * dim, nq, 10, 64, NULL, NULL) >= 0.95);
    vdb_free(idx);
    free(v);
}

/* ---- save / load ------------------------------------------------------------------------- */

static void test_save_load_round_trip(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    const size_t n = 1500, nq = 30;
    float *v = make_vectors(n + nq, dim, 41);
    vdb *idx = build(dim, VDB_COSINE, v, n, 0);
    for (size_t i = 0; i < n; i += 7)
        assert_int_equal(vdb_delete(idx, 1000 + i), LLMOS_OK); /* holes are squeezed out */
    llmos_buf a = {0}, b = {0};
    assert_int_equal(vdb_save(idx, &a), LLMOS_OK);
    vdb *back = NULL;
    assert_int_equal(vdb_load(a.data, a.len, &back), LLMOS_OK);
    assert_int_equal(vdb_count(back), vdb_count(idx));
    assert_int_equal(vdb_dim(back), dim);
    assert_int_equal(vdb_get_metric(back), VDB_COSINE);
    for (size_t i = 0; i < nq; i++) {
        vdb_hit h1[10], h2[10];
        size_t n1 = 0, n2 = 0;
        assert_int_equal(vdb_search(idx, v + (n + i) * dim, 10, 50, NULL, NULL, h1, &n1), LLMOS_OK);
        assert_int_equal(vdb_search(back, v + (n + i) * dim, 10, 50, NULL, NULL, h2, &n2),
                         LLMOS_OK);
        assert_int_equal(n1, n2);
        for (size_t j = 0; j < n1; j++) {
            assert_int_equal(h1[j].id, h2[j].id);
            assert_float_equal(h1[j].distance, h2[j].distance, 0);
        }
    }
    /* saving the loaded index gives the same bytes */
    assert_int_equal(vdb_save(back, &b), LLMOS_OK);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    /* the loaded index takes new vectors */
    assert_int_equal(vdb_insert(back, 99999, v), LLMOS_OK);
    assert_true(vdb_contains(back, 99999));
    vdb_free(back);
    vdb_free(idx);
    buf_free(&a);
    buf_free(&b);
    free(v);
}

static void rehash(uint8_t *p, size_t len)
{
    crypto_generichash(p + len - 32, 32, p, len - 32, NULL, 0);
}

static void expect_reject(const uint8_t *p, size_t len, llmos_err want, const char *needle)
{
    vdb *idx = (vdb *)(uintptr_t)1;
    llmos_err e = vdb_load(p, len, &idx);
    if (e != want || !strstr(llmos_errmsg(), needle))
        fail_msg("load of %zu bytes: got %d \"%s\", want %d with \"%s\"", len, (int)e,
                 llmos_errmsg(), (int)want, needle);
    assert_null(idx);
}

static void test_corrupt_images_rejected(void **state)
{
    (void)state;
    assert_true(sodium_init() >= 0);
    const uint32_t dim = 8;
    float *v = make_vectors(200, dim, 51);
    vdb *idx = build(dim, VDB_L2, v, 200, 0);
    llmos_buf good = {0};
    assert_int_equal(vdb_save(idx, &good), LLMOS_OK);
    vdb_free(idx);
    size_t len = good.len;
    uint8_t *p = malloc(len);
    assert_non_null(p);

    /* truncation at many points, and empty input */
    expect_reject((const uint8_t *)good.data, 0, LLMOS_ERR_FORMAT, "too short");
    expect_reject((const uint8_t *)good.data, 50, LLMOS_ERR_FORMAT, "too short");
    for (size_t cut = 100; cut < len; cut += len / 17)
        expect_reject((const uint8_t *)good.data, cut, LLMOS_ERR_FORMAT, "checksum");
    expect_reject((const uint8_t *)good.data, len - 1, LLMOS_ERR_FORMAT, "checksum");

    /* one flipped bit anywhere is caught by the checksum */
    for (size_t off = 60; off < len; off += len / 13) {
        memcpy(p, good.data, len);
        p[off] ^= 0x10;
        expect_reject(p, len, LLMOS_ERR_FORMAT, "corrupt");
    }
    /* wrong magic, other version */
    memcpy(p, good.data, len);
    p[0] = 'X';
    expect_reject(p, len, LLMOS_ERR_FORMAT, "magic");
    memcpy(p, good.data, len);
    p[8] = 2;
    expect_reject(p, len, LLMOS_ERR_UNSUPPORTED, "version 2");

    /* structurally wrong but with a valid checksum (as a hostile writer would make it) */
    memcpy(p, good.data, len);
    p[16] = 0, p[17] = 0; /* dim 0 */
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "dim 0");
    memcpy(p, good.data, len);
    p[40] = 0xff, p[41] = 0xff, p[42] = 0xff; /* huge count */
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "count");
    memcpy(p, good.data, len);
    p[48] = 0xfe, p[49] = 0x00; /* entry out of range */
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "entry");
    memcpy(p, good.data, len);
    memcpy(p + 64 + 8, p + 64, 8); /* id of node 1 = id of node 0 */
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "appears twice");
    /* first link of node 0 layer 0 -> out of range node */
    size_t links = 64 + 200 * (8 + 1 + dim * 4);
    memcpy(p, good.data, len);
    assert_true(p[links] > 0);
    p[links + 4] = 0xff, p[links + 5] = 0xff;
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "links to node");
    /* link count above 2M */
    memcpy(p, good.data, len);
    p[links] = 200;
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "links");
    /* NaN in a vector */
    memcpy(p, good.data, len);
    float nanf_v = NAN;
    memcpy(p + 64 + 200 * 9, &nanf_v, 4);
    rehash(p, len);
    expect_reject(p, len, LLMOS_ERR_FORMAT, "not finite");

    /* the good image still loads */
    idx = NULL;
    assert_int_equal(vdb_load(good.data, len, &idx), LLMOS_OK);
    assert_int_equal(vdb_count(idx), 200);
    vdb_free(idx);
    /* an empty index round-trips */
    assert_int_equal(vdb_new(3, VDB_IP, NULL, &idx), LLMOS_OK);
    buf_clear(&good);
    assert_int_equal(vdb_save(idx, &good), LLMOS_OK);
    vdb_free(idx);
    assert_int_equal(vdb_load(good.data, good.len, &idx), LLMOS_OK);
    assert_int_equal(vdb_count(idx), 0);
    vdb_free(idx);
    buf_free(&good);
    free(p);
    free(v);
}

/* ---- threads ----------------------------------------------------------------------------- */

typedef struct reader_arg {
    vdb *idx;
    const float *q;
    size_t nq;
    uint32_t dim;
    volatile int *stop;
    size_t searches;
    int bad;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    vdb_hit h[10];
    while (!*a->stop) {
        for (size_t i = 0; i < a->nq && !*a->stop; i++) {
            size_t nh = 0;
            llmos_err e = i % 5 == 0
                              ? vdb_exact_search(a->idx, a->q + i * a->dim, 10, NULL, NULL, h, &nh)
                              : vdb_search(a->idx, a->q + i * a->dim, 10, 32,
                                           i % 2 ? even_only : NULL, NULL, h, &nh);
            if (e != LLMOS_OK)
                a->bad++;
            for (size_t j = 0; j < nh; j++)
                if (!isfinite(h[j].distance) || (j && h[j].distance < h[j - 1].distance) ||
                    (i % 2 && i % 5 && h[j].id % 2))
                    a->bad++;
            a->searches++;
        }
    }
    return NULL;
}

static void test_readers_during_writes(void **state)
{
    (void)state;
    const uint32_t dim = 16;
    const size_t n = 1500, nq = 20;
    float *v = make_vectors(n + nq, dim, 61);
    vdb *idx = build(dim, VDB_L2, v, 300, 0);
    volatile int stop = 0;
    reader_arg args[3];
    pthread_t th[3];
    for (int t = 0; t < 3; t++) {
        args[t] = (reader_arg){idx, v + n * dim, nq, dim, &stop, 0, 0};
        assert_int_equal(pthread_create(&th[t], NULL, reader, &args[t]), 0);
    }
    for (size_t i = 300; i < 1000; i++)
        assert_int_equal(vdb_insert(idx, 1000 + i, v + i * dim), LLMOS_OK);
    for (size_t i = 0; i < 1000; i += 4)
        assert_int_equal(vdb_delete(idx, 1000 + i), LLMOS_OK);
    uint64_t ids[500];
    for (size_t i = 0; i < 500; i++)
        ids[i] = 1000 + 1000 + i;
    assert_int_equal(vdb_insert_batch(idx, 500, ids, v + 1000 * dim, 2), LLMOS_OK);
    llmos_buf b = {0};
    assert_int_equal(vdb_save(idx, &b), LLMOS_OK);
    stop = 1;
    size_t total = 0;
    for (int t = 0; t < 3; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(args[t].bad, 0);
        total += args[t].searches;
    }
    printf("  %zu searches ran beside the writer\n", total);
    assert_true(total > 0);
    assert_int_equal(vdb_count(idx), 1500 - 250);
    buf_free(&b);
    vdb_free(idx);
    free(v);
}

static void test_batch_build(void **state)
{
    (void)state;
    const uint32_t dim = 24;
    const size_t n = 3000, nq = 50;
    float *v = make_vectors(n + nq, dim, 71);
    uint64_t *ids = malloc(n * sizeof(uint64_t));
    assert_non_null(ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = 7 * i + 3;
    vdb_params p = vdb_params_default();
    p.ef_construction = 100;
    p.exact_below = 0;
    vdb *idx = NULL;
    assert_int_equal(vdb_new(dim, VDB_IP, &p, &idx), LLMOS_OK);
    assert_int_equal(vdb_insert_batch(idx, n, ids, v, 4), LLMOS_OK);
    assert_int_equal(vdb_count(idx), n);
    double r = recall(idx, v + n * dim, nq, 10, 64, NULL, NULL);
    printf("  recall@10 of a 4-thread build: %.3f\n", r);
    assert_true(r >= 0.95);
    /* a batch holding an id already present reports it, and inserts the rest */
    ids[0] = 3; /* present */
    ids[1] = 1000000;
    assert_int_equal(vdb_insert_batch(idx, 2, ids, v, 2), LLMOS_ERR_EXISTS);
    assert_true(vdb_contains(idx, 1000000));
    assert_int_equal(vdb_count(idx), n + 1);
    vdb_free(idx);
    free(ids);
    free(v);
}

/* ---- reciprocal rank fusion -------------------------------------------------------------- */

static void test_rrf_worked_example(void **state)
{
    (void)state;
    /* vector search ranked 1,2,3; BM25 ranked 3,1,4 (and repeated 1, which counts once) */
    uint64_t vec[] = {1, 2, 3}, bm25[] = {3, 1, 4, 1};
    const uint64_t *lists[] = {vec, bm25};
    size_t lens[] = {3, 4};
    vdb_fused out[8];
    size_t n = 0;
    assert_int_equal(vdb_rrf_fuse(lists, lens, 2, 0, out, 8, &n), LLMOS_OK);
    assert_int_equal(n, 4);
    /* k = 60: 1 -> 1/61 + 1/62, 3 -> 1/63 + 1/61, 2 -> 1/62, 4 -> 1/63 */
    assert_int_equal(out[0].id, 1);
    assert_float_equal(out[0].score, 1.0 / 61 + 1.0 / 62, 1e-12);
    assert_int_equal(out[1].id, 3);
    assert_float_equal(out[1].score, 1.0 / 63 + 1.0 / 61, 1e-12);
    assert_int_equal(out[2].id, 2);
    assert_float_equal(out[2].score, 1.0 / 62, 1e-12);
    assert_int_equal(out[3].id, 4);
    assert_float_equal(out[3].score, 1.0 / 63, 1e-12);
    /* a small k sharpens the head; max_out truncates */
    assert_int_equal(vdb_rrf_fuse(lists, lens, 2, 1, out, 2, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].id, 1); /* 1/2 + 1/3 */
    assert_int_equal(out[1].id, 3); /* 1/4 + 1/2, ties broken towards ... 0.75 < 0.833 */
    assert_float_equal(out[1].score, 0.75, 1e-12);
    /* ties go to the smaller id */
    uint64_t x[] = {9}, y[] = {5};
    const uint64_t *l2[] = {x, y};
    size_t len2[] = {1, 1};
    assert_int_equal(vdb_rrf_fuse(l2, len2, 2, 0, out, 8, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].id, 5);
    assert_int_equal(vdb_rrf_fuse(NULL, NULL, 0, 0, out, 8, &n), LLMOS_OK);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simd_matches_scalar),
        cmocka_unit_test(test_distances_per_metric),
        cmocka_unit_test(test_recall_l2),
        cmocka_unit_test(test_recall_ip),
        cmocka_unit_test(test_recall_cosine),
        cmocka_unit_test(test_small_collection_is_exact),
        cmocka_unit_test(test_flat_index),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_delete_repairs),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_corrupt_images_rejected),
        cmocka_unit_test(test_readers_during_writes),
        cmocka_unit_test(test_batch_build),
        cmocka_unit_test(test_rrf_worked_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
