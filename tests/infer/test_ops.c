/*
 * test_ops.c - the forward pass's operations against plain reference math: matmul for F32,
 * F16 and BF16 weights (batched and threaded results must equal the single-token, single-
 * thread ones), the packed (16-row) path for every packed type, ops_matmul_multi, RMSNorm, both
 * RoPE layouts with partial rotary, softmax, SwiGLU and causal grouped-query attention over F32 and
 * F16 caches.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infer/model/ops.h"
#include "infer/pack/quant_pack.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand();
}

/* W in `type` from F32 values; also returns the dequantized values the kernel sees. */
static void *make_weight(ggml_type type, const float *w, size_t n, float *deq)
{
    const quant_traits *tr = quant_traits_of(type);
    uint64_t bytes;
    assert_true(quant_row_size(type, n, &bytes));
    void *data = malloc(bytes);
    tr->from_float(w, data, n);
    tr->to_float(data, deq, n);
    return data;
}

static void check_matmul(ggml_type type)
{
    enum { N_IN = 256, N_OUT = 77, N_TOK = 5 }; /* large enough to be split across threads */
    float w[N_IN * N_OUT], deq[N_IN * N_OUT], x[N_TOK * N_IN];
    fill(w, N_IN * N_OUT);
    fill(x, N_TOK * N_IN);
    void *data = make_weight(type, w, N_IN * N_OUT, deq);
    ops_matrix m;
    assert_true(ops_matrix_init(&m, data, type, N_IN, N_OUT));

    /* reference: dequantized weights times activations rounded to the kernel's input type */
    const quant_traits *vt = quant_traits_of(quant_traits_of(type)->vec_dot_type);
    float xr[N_TOK * N_IN];
    void *tmp = malloc(N_IN * 4);
    for (size_t t = 0; t < N_TOK; t++) {
        vt->from_float(x + t * N_IN, tmp, N_IN);
        vt->to_float(tmp, xr + t * N_IN, N_IN);
    }
    free(tmp);

    void *scratch = malloc(ops_matmul_scratch(type, N_IN, N_TOK) + 1);
    float y[N_TOK * N_OUT], y1[N_OUT], yp[N_TOK * N_OUT];
    ops_matmul(NULL, y, &m, x, N_TOK, scratch);
    for (size_t t = 0; t < N_TOK; t++)
        for (size_t r = 0; r < N_OUT; r++) {
            double ref = 0;
            for (size_t i = 0; i < N_IN; i++)
                ref += (double)deq[r * N_IN + i] * xr[t * N_IN + i];
            assert_float_equal(y[t * N_OUT + r], ref, 1e-4);
        }
    /* one token at a time gives the batch's results (quant_gemm may sum in another order) */
    for (size_t t = 0; t < N_TOK; t++) {
        ops_matmul(NULL, y1, &m, x + t * N_IN, 1, scratch);
        for (size_t r = 0; r < N_OUT; r++)
            assert_float_equal(y1[r], y[t * N_OUT + r], 1e-5);
    }
    /* so do three threads */
    llmos_pool *pool = NULL;
    assert_int_equal(pool_new(3, &pool), LLMOS_OK);
    ops_matmul(pool, yp, &m, x, N_TOK, scratch);
    assert_memory_equal(yp, y, sizeof y);
    pool_free(pool);
    free(scratch);
    free(data);
}

static void test_matmul_f32(void **state)
{
    (void)state;
    check_matmul(GGML_TYPE_F32);
}
static void test_matmul_f16(void **state)
{
    (void)state;
    check_matmul(GGML_TYPE_F16);
}
static void test_matmul_bf16(void **state)
{
    (void)state;
    check_matmul(GGML_TYPE_BF16);
}

/* The packed path: a partial last group (77 rows), 9 tokens (two full kernel calls and one of
 * one token), threads, and several matrices in one dispatch. Reference: the dequantized
 * weights times the activations as the packed kernels see them (qpack_act, dequantized). */
static void check_matmul_packed(ggml_type type)
{
    enum { N_IN = 512, N_OUT = 77, N_TOK = 9 };
    static float w[N_IN * N_OUT], deq[N_IN * N_OUT], x[N_TOK * N_IN], xr[N_TOK * N_IN];
    static float y[N_TOK * N_OUT], y1[N_OUT], yp[N_TOK * N_OUT], y2[N_TOK * N_OUT];
    fill(w, N_IN * N_OUT);
    fill(x, N_TOK * N_IN);
    void *data = make_weight(type, w, N_IN * N_OUT, deq);
    ops_matrix m;
    assert_true(ops_matrix_init(&m, data, type, N_IN, N_OUT));
    size_t bytes = ops_matrix_packed_bytes(&m);
    if (bytes == 0) {
        print_message("%s: no packed kernel on this CPU (or LLMOS_PACK=0), skipped\n",
                      quant_type_name(type));
        free(data);
        return;
    }
    void *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    assert_non_null(packed);
    ops_matrix_pack(NULL, &m, packed);
    assert_ptr_equal(m.packed, packed);

    void *act = malloc(qpack_act_bytes(N_IN));
    for (size_t t = 0; t < N_TOK; t++) {
        qpack_act_quantize_ref(x + t * N_IN, N_IN, act);
        for (size_t i = 0; i < N_IN; i++)
            xr[t * N_IN + i] = qpack_act_d(act, N_IN)[i / QPACK_BLOCK] * qpack_act_q(act)[i];
    }
    free(act);

    void *scratch = malloc(ops_matmul_scratch(type, N_IN, N_TOK) + 1);
    ops_matmul(NULL, y, &m, x, N_TOK, scratch);
    for (size_t t = 0; t < N_TOK; t++)
        for (size_t r = 0; r < N_OUT; r++) {
            double ref = 0;
            for (size_t i = 0; i < N_IN; i++)
                ref += (double)deq[r * N_IN + i] * xr[t * N_IN + i];
            if (fabs(y[t * N_OUT + r] - ref) > 1e-4)
                fail_msg("%s packed: token %zu row %zu: %.7g, expected %.7g", quant_type_name(type),
                         t, r, (double)y[t * N_OUT + r], ref);
        }
    /* each token's sum runs in the same order alone or in a batch */
    for (size_t t = 0; t < N_TOK; t++) {
        ops_matmul(NULL, y1, &m, x + t * N_IN, 1, scratch);
        assert_memory_equal(y1, y + t * N_OUT, sizeof y1);
    }
    /* threads, and the same matrix three times in one dispatch (quantizing the input once) */
    llmos_pool *pool = NULL;
    assert_int_equal(pool_new(3, &pool), LLMOS_OK);
    ops_matmul(pool, yp, &m, x, N_TOK, scratch);
    assert_memory_equal(yp, y, sizeof y);
    memset(yp, 0, sizeof yp);
    ops_matmul_multi(pool, 3, (float *const[]){yp, y2, y1}, (const ops_matrix *const[]){&m, &m, &m},
                     x, 1, scratch);
    assert_memory_equal(yp, y, N_OUT * sizeof(float));
    assert_memory_equal(y2, y, N_OUT * sizeof(float));
    assert_memory_equal(y1, y, N_OUT * sizeof(float));
    pool_free(pool);
    free(scratch);
    free(packed);
    free(data);
}

static void test_matmul_packed(void **state)
{
    (void)state;
    const ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q5_0, GGML_TYPE_Q4_K,
                               GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q5_1};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        check_matmul_packed(types[i]);
}

static void test_matrix_init_rejects(void **state)
{
    (void)state;
    ops_matrix m;
    float w[64] = {0};
    /* Q8_0 blocks are 32 wide: 48 columns do not fit */
    assert_false(ops_matrix_init(&m, w, GGML_TYPE_Q8_0, 48, 1));
    /* a type number that does not exist */
    assert_false(ops_matrix_init(&m, w, (ggml_type)4, 8, 1));
    assert_true(ops_matrix_init(&m, w, GGML_TYPE_F32, 8, 8));
    assert_int_equal(m.row_bytes, 32);
}

static void test_get_row(void **state)
{
    (void)state;
    float w[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, deq[12], out[4];
    void *data = make_weight(GGML_TYPE_F16, w, 12, deq);
    ops_matrix m;
    assert_true(ops_matrix_init(&m, data, GGML_TYPE_F16, 4, 3));
    ops_get_row(&m, 2, out);
    assert_float_equal(out[0], 9, 0);
    assert_float_equal(out[3], 12, 0);
    free(data);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    /* x = (3, 4): mean square 12.5, so y = x / sqrt(12.5) * w */
    float x[4] = {3, 4, 0, -2}, w[2] = {1, 2}, y[4];
    ops_rmsnorm(y, x, w, 2, 2, 0.0f);
    assert_float_equal(y[0], 3 / sqrt(12.5), 1e-6);
    assert_float_equal(y[1], 2 * 4 / sqrt(12.5), 1e-6);
    assert_float_equal(y[2], 0, 1e-6);
    assert_float_equal(y[3], 2 * -2 / sqrt(2.0), 1e-6); /* mean square of (0,-2) is 2 */
    /* eps keeps a zero row finite */
    float z[2] = {0, 0};
    ops_rmsnorm(z, z, w, 2, 1, 1e-5f);
    assert_float_equal(z[0], 0, 0);
}

static void test_rope_norm(void **state)
{
    (void)state;
    /* one head of 4, base 100: pair 0 turns by pos, pair 1 by pos / 100^(2/4) = pos / 10 */
    float x[4] = {1, 0, 0, 1};
    ops_rope(x, 1, 4, 4, 2, 100.0f, OPS_ROPE_NORM);
    assert_float_equal(x[0], cos(2.0), 1e-6);
    assert_float_equal(x[1], sin(2.0), 1e-6);
    assert_float_equal(x[2], -sin(0.2), 1e-6);
    assert_float_equal(x[3], cos(0.2), 1e-6);
    /* position 0 is the identity */
    float y[4] = {1, 2, 3, 4};
    ops_rope(y, 1, 4, 4, 0, 10000.0f, OPS_ROPE_NORM);
    assert_float_equal(y[1], 2, 0);
}

static void test_rope_neox_partial(void **state)
{
    (void)state;
    /* two heads of 6, rotary over the first 4 dims: pairs (0,2) and (1,3); dims 4,5 untouched */
    float x[12] = {1, 1, 0, 0, 7, 8, 1, 1, 0, 0, 7, 8};
    ops_rope(x, 2, 6, 4, 3, 100.0f, OPS_ROPE_NEOX);
    for (int h = 0; h < 2; h++) {
        float *v = x + 6 * h;
        assert_float_equal(v[0], cos(3.0), 1e-6);
        assert_float_equal(v[2], sin(3.0), 1e-6);
        assert_float_equal(v[1], cos(0.3), 1e-6);
        assert_float_equal(v[3], sin(0.3), 1e-6);
        assert_float_equal(v[4], 7, 0);
        assert_float_equal(v[5], 8, 0);
    }
    /* the two layouts differ on the same input */
    float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4};
    ops_rope(a, 1, 4, 4, 1, 10000.0f, OPS_ROPE_NORM);
    ops_rope(b, 1, 4, 4, 1, 10000.0f, OPS_ROPE_NEOX);
    assert_true(fabsf(a[1] - b[1]) > 1e-3f);
}

/* The AVX-512 exp and the ops built on it against libm, over the whole float range exp
 * covers: relative error within 4e-7 (about 3 ulp) where the result is a normal float, an
 * absolute error below the smallest normal where it is not, and saturation beyond. */
static void test_simd_exp(void **state)
{
    (void)state;
    if (!ops_simd_avx512()) {
        print_message("skipping: this CPU has no AVX-512F\n");
        return;
    }
    enum { N = 200003 };
    static float x[N];
    for (size_t i = 0; i < N; i++)
        x[i] = -103.0f + 192.0f * (float)i / (float)(N - 1);
    static float y[N];
    memcpy(y, x, sizeof y);
    ops_exp_avx512(y, N);
    double worst = 0;
    for (size_t i = 0; i < N; i++) {
        double e = exp((double)x[i]);
        if (e > 3.4e38) /* at the top of the range: the largest float or infinity */
            assert_true(isinf(y[i]) || y[i] >= 3.4e38f);
        else if (e < 1.17549435e-38)
            assert_true(fabs(y[i] - e) < 1.17549435e-38);
        else if (fabs(y[i] - e) / e > worst)
            worst = fabs(y[i] - e) / e;
    }
    print_message("exp: worst relative error %.2g\n", worst);
    assert_true(worst < 4e-7);
    float ext[3] = {-1000.0f, 1000.0f, 0.0f};
    ops_exp_avx512(ext, 3);
    assert_true(ext[0] >= 0 && ext[0] < 1e-44f);
    assert_true(isinf(ext[1]));
    assert_float_equal(ext[2], 1.0f, 0);

    float g[37], u[37], g0[37];
    fill(g, 37);
    fill(u, 37);
    for (int i = 0; i < 37; i++)
        g0[i] = g[i] *= 20.0f;
    ops_silu_mul_avx512(g, u, 37);
    for (int i = 0; i < 37; i++)
        assert_float_equal(g[i], g0[i] / (1 + exp(-(double)g0[i])) * u[i],
                           1e-6 * (1 + fabs(g0[i])));
    float p[37];
    fill(p, 37);
    double sum = 0, ref[37];
    for (int i = 0; i < 37; i++)
        sum += ref[i] = exp((double)(p[i] *= 30.0f));
    ops_softmax_avx512(p, 37);
    for (int i = 0; i < 37; i++)
        assert_float_equal(p[i], ref[i] / sum, 1e-6);
}

static void test_softmax_silu_add(void **state)
{
    (void)state;
    float x[3] = {1000, 1000, 999}; /* must not overflow */
    ops_softmax(x, 3);
    double e = exp(-1.0);
    assert_float_equal(x[0], 1 / (2 + e), 1e-6);
    assert_float_equal(x[2], e / (2 + e), 1e-6);

    float g[3] = {0, 1, -2}, u[3] = {5, 2, 1};
    ops_silu_mul(g, u, 3);
    assert_float_equal(g[0], 0, 0);
    assert_float_equal(g[1], 2 / (1 + exp(-1.0)), 1e-6);
    assert_float_equal(g[2], -2 / (1 + exp(2.0)), 1e-6);

    float r[4] = {1, 2, 3, 4}, b[2] = {10, 20};
    ops_add_rows(r, b, 2, 2);
    assert_float_equal(r[0], 11, 0);
    assert_float_equal(r[3], 24, 0);
}

/* Reference attention for one token at position p, query head h. */
static void ref_attention(const float *q, const float *k, const float *v, size_t p, size_t h,
                          size_t n_heads, size_t n_kv, size_t hd, float *out)
{
    size_t g = h / (n_heads / n_kv), kv_dim = n_kv * hd;
    double s[64], max = -1e30, sum = 0;
    for (size_t j = 0; j <= p; j++) {
        double dot = 0;
        for (size_t i = 0; i < hd; i++)
            dot += (double)q[h * hd + i] * k[j * kv_dim + g * hd + i];
        s[j] = dot / sqrt((double)hd);
        max = s[j] > max ? s[j] : max;
    }
    for (size_t j = 0; j <= p; j++)
        sum += s[j] = exp(s[j] - max);
    for (size_t i = 0; i < hd; i++) {
        double o = 0;
        for (size_t j = 0; j <= p; j++)
            o += s[j] / sum * v[j * kv_dim + g * hd + i];
        out[i] = (float)o;
    }
}

static void check_attention(ggml_type kv_type, double tol)
{
    enum { NH = 4, NKV = 2, HD = 32, NT = 40, QD = NH * HD, KVD = NKV * HD }; /* threaded size */
    float q[NT * QD], k[NT * KVD], v[NT * KVD];
    fill(q, NT * QD);
    fill(k, NT * KVD);
    fill(v, NT * KVD);
    const quant_traits *tr = quant_traits_of(kv_type);
    size_t row = KVD * tr->type_size;
    uint8_t *kc = malloc(NT * row), *vc = malloc(NT * row);
    for (size_t t = 0; t < NT; t++) {
        tr->from_float(k + t * KVD, kc + t * row, KVD);
        tr->from_float(v + t * KVD, vc + t * row, KVD);
    }
    llmos_pool *pool = NULL;
    assert_int_equal(pool_new(2, &pool), LLMOS_OK);
    size_t per = ops_attention_scratch(kv_type, HD, NT);
    void *scratch = aligned_alloc(64, per * 2);
    float out[NT * QD], out_seq[NT * QD];

    /* the whole sequence as one causal batch, threaded */
    ops_attention_args a = {.out = out,
                            .q = q,
                            .k = kc,
                            .v = vc,
                            .kv_type = kv_type,
                            .kv_stride = row,
                            .n_tok = NT,
                            .pos0 = 0,
                            .n_heads = NH,
                            .n_kv_heads = NKV,
                            .head_dim = HD,
                            .scale = 1 / sqrtf(HD),
                            .scratch = scratch,
                            .scratch_per_worker = per};
    ops_attention(pool, &a);
    /* token by token, unthreaded */
    for (size_t t = 0; t < NT; t++) {
        ops_attention_args b = a;
        b.out = out_seq + t * QD;
        b.q = q + t * QD;
        b.n_tok = 1;
        b.pos0 = t;
        ops_attention(NULL, &b);
    }
    assert_memory_equal(out, out_seq, sizeof out);
    for (size_t t = 0; t < NT; t++)
        for (size_t h = 0; h < NH; h++) {
            float ref[HD];
            ref_attention(q + t * QD, k, v, t, h, NH, NKV, HD, ref);
            for (size_t i = 0; i < HD; i++)
                assert_float_equal(out[t * QD + h * HD + i], ref[i], tol);
        }
    /* position 0 sees only itself: the output is its value row */
    for (size_t i = 0; i < HD; i++)
        assert_float_equal(out[i], v[i], tol); /* token 0, head 0 -> kv head 0 */
    free(scratch);
    free(kc);
    free(vc);
    pool_free(pool);
}

static void test_attention_f32(void **state)
{
    (void)state;
    check_attention(GGML_TYPE_F32, 1e-5);
}

static void test_attention_f16(void **state)
{
    (void)state;
    /* F16 keeps 11 significant bits: values of magnitude <= 1 are off by <= 2^-11 each */
    check_attention(GGML_TYPE_F16, 3e-3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_f32),
        cmocka_unit_test(test_matmul_f16),
        cmocka_unit_test(test_matmul_bf16),
        cmocka_unit_test(test_matmul_packed),
        cmocka_unit_test(test_matrix_init_rejects),
        cmocka_unit_test(test_get_row),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope_norm),
        cmocka_unit_test(test_rope_neox_partial),
        cmocka_unit_test(test_softmax_silu_add),
        cmocka_unit_test(test_simd_exp),
        cmocka_unit_test(test_attention_f32),
        cmocka_unit_test(test_attention_f16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
