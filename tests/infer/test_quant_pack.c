/*
 * test_quant_pack.c - packed (16-row interleaved) weights: layouts, reference kernels, SIMD
 * kernels and the activation quantizer.
 *
 * 1. The activation quantizer: the SIMD version writes the same bytes as the reference, and
 *    the reference's values are what its contract says (round half to even, d = amax / 127).
 * 2. For every packed type: random GGUF rows (random bytes with sane scales, so every bit
 *    pattern of the quants occurs) are packed; the reference kernel must equal, for every row
 *    and token, the dot of the dequantized GGUF row with the dequantized activations. This
 *    ties the packed layout to the GGUF format through the independent to_float.
 * 3. Every SIMD kernel this CPU runs equals the reference kernel for 1..QPACK_TOK tokens.
 *
 * Tolerances: integer sums are exact; what differs is float rounding of a few terms per
 * 32-value block, bounded by ~ n_blocks * 2^-24 * sum |terms|. We allow 1e-5 * sum |w x|,
 * which a wrong nibble, scale or offset would exceed by orders of magnitude.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"
#include "llmos/quant.h"

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

static uint32_t rnd32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static float rnd_uniform(void)
{
    return (float)((rnd32() >> 8) + 0.5) / 16777216.0f;
}

/* Random bytes for n values of `type`, with every block's scale fields set to small positive
 * halves (random bytes there would make infinities and NaNs). */
static void random_rows(ggml_type type, void *dst, size_t n)
{
    const quant_traits *t = quant_traits_of(type);
    size_t nb = n / t->block_size;
    uint8_t *p = dst;
    for (size_t i = 0; i < nb * t->type_size; i++)
        p[i] = (uint8_t)rnd32();
    for (size_t i = 0; i < nb; i++) {
        uint16_t d = quant_fp32_to_fp16(0.001f + rnd_uniform() * 0.01f);
        uint16_t m = quant_fp32_to_fp16(0.001f + rnd_uniform() * 0.01f);
        switch (type) {
        case GGML_TYPE_Q4_0: ((block_q4_0 *)dst)[i].d = d; break;
        case GGML_TYPE_Q5_0: ((block_q5_0 *)dst)[i].d = d; break;
        case GGML_TYPE_Q8_0: ((block_q8_0 *)dst)[i].d = d; break;
        case GGML_TYPE_Q4_K:
            ((block_q4_K *)dst)[i].d = d;
            ((block_q4_K *)dst)[i].dmin = m;
            break;
        case GGML_TYPE_Q6_K: ((block_q6_K *)dst)[i].d = d; break;
        case GGML_TYPE_Q5_K:
            ((block_q5_K *)dst)[i].d = d;
            ((block_q5_K *)dst)[i].dmin = m;
            break;
        case GGML_TYPE_Q5_1:
            ((block_q5_1 *)dst)[i].d = d;
            ((block_q5_1 *)dst)[i].m = m;
            break;
        default: fail_msg("random_rows: no case for %s", t->name);
        }
    }
}

/* ---- activations ------------------------------------------------------------------------- */

static void test_act_reference_values(void **state)
{
    (void)state;
    float x[64];
    for (int i = 0; i < 32; i++)
        x[i] = (float)(i - 16) * 0.5f;     /* amax 8 (i = 0): d = 8/127, q = round(x * 127/8) */
    x[5] = 2.5f * 8.0f / 127.0f;           /* exactly q = 2.5: half to even gives 2 */
    memset(x + 32, 0, 32 * sizeof(float)); /* an all-zero block: d = 0, q = 0 */
    uint8_t buf[64 + 2 * 2 * sizeof(float)];
    assert_int_equal(qpack_act_bytes(64), sizeof buf);
    qpack_act_quantize_ref(x, 64, buf);
    const int8_t *q = qpack_act_q(buf);
    const float *d = qpack_act_d(buf, 64), *s = qpack_act_s(buf, 64);
    assert_float_equal(d[0], 8.0f / 127.0f, 1e-9);
    assert_int_equal(q[0], -127);
    assert_int_equal(q[5], 2);
    assert_int_equal(q[16], 0);
    assert_int_equal(q[31], (int)nearbyintf(7.5f * 127.0f / 8.0f));
    int sum = 0;
    for (int i = 0; i < 32; i++)
        sum += q[i];
    assert_float_equal(s[0], d[0] * (float)sum, 1e-6);
    assert_true(d[1] == 0.0f && s[1] == 0.0f);
    for (int i = 32; i < 64; i++)
        assert_int_equal(q[i], 0);
}

static void test_act_simd_matches_reference(void **state)
{
    (void)state;
    const llmos_cpu *cpu = llmos_cpu_features();
    if (!(cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512vnni)) {
        print_message("skipping: this CPU has no AVX-512 VNNI\n");
        return;
    }
    size_t n = 4096;
    float *x = malloc(n * sizeof *x);
    uint8_t *a = malloc(qpack_act_bytes(n)), *b = malloc(qpack_act_bytes(n));
    assert_non_null(x);
    assert_non_null(a);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        x[i] = (rnd_uniform() - 0.5f) * (float)(1 + (i / 32) % 7); /* blocks of different scale */
    for (size_t i = 96; i < 128; i++)
        x[i] = 0;
    x[200] = 1e30f; /* one huge value: the rest of its block rounds to 0 */
    qpack_act_quantize_ref(x, n, a);
    qpack_act_quantize_avx512(x, n, b);
    assert_memory_equal(a, b, qpack_act_bytes(n));
    free(x);
    free(a);
    free(b);
}

/* ---- packed kernels ---------------------------------------------------------------------- */

static const ggml_type packed_types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                         GGML_TYPE_Q6_K, GGML_TYPE_Q5_0, GGML_TYPE_Q5_K,
                                         GGML_TYPE_Q5_1};

/* n_out rows (a partial last group) of k columns, QPACK_TOK tokens. */
static void check_type(ggml_type type, size_t k, size_t n_out)
{
    const qpack_traits *pt = qpack_traits_of(type);
    const quant_traits *qt = quant_traits_of(type);
    assert_non_null(pt);
    assert_int_equal(k % pt->k_multiple, 0);
    size_t row_bytes = k / qt->block_size * qt->type_size;
    size_t n_groups = (n_out + QPACK_ROWS - 1) / QPACK_ROWS;
    size_t group_bytes = QPACK_ROWS * row_bytes;
    size_t act_bytes = qpack_act_bytes(k);
    uint8_t *rows = malloc(n_out * row_bytes), *packed = malloc(n_groups * group_bytes);
    uint8_t *act = malloc(QPACK_TOK * act_bytes);
    float *wf = malloc(k * sizeof(float)), *xf = malloc(QPACK_TOK * k * sizeof(float));
    float *xq = malloc(QPACK_TOK * k * sizeof(float));
    assert_true(rows && packed && act && wf && xf && xq);

    random_rows(type, rows, n_out * k);
    for (size_t g = 0; g < n_groups; g++) {
        size_t n = n_out - g * QPACK_ROWS < QPACK_ROWS ? n_out - g * QPACK_ROWS : QPACK_ROWS;
        pt->pack(rows + g * QPACK_ROWS * row_bytes, row_bytes, n, k, packed + g * group_bytes);
    }
    for (size_t t = 0; t < QPACK_TOK; t++) {
        for (size_t i = 0; i < k; i++)
            xf[t * k + i] = rnd_uniform() * 2 - 1;
        qpack_act_quantize_ref(xf + t * k, k, act + t * act_bytes);
        const int8_t *q = qpack_act_q(act + t * act_bytes);
        const float *d = qpack_act_d(act + t * act_bytes, k);
        for (size_t i = 0; i < k; i++)
            xq[t * k + i] = d[i / QPACK_BLOCK] * (float)q[i];
    }

    float ref[QPACK_TOK][QPACK_ROWS], simd[QPACK_TOK][QPACK_ROWS];
    for (size_t g = 0; g < n_groups; g++) {
        const uint8_t *group = packed + g * group_bytes;
        pt->kernel_ref(k, group, act, act_bytes, QPACK_TOK, ref);
        for (size_t r = 0; r < QPACK_ROWS; r++) {
            size_t row = g * QPACK_ROWS + r;
            if (row >= n_out) { /* padding rows are zero */
                for (size_t t = 0; t < QPACK_TOK; t++)
                    assert_float_equal(ref[t][r], 0.0f, 0.0);
                continue;
            }
            qt->to_float(rows + row * row_bytes, wf, k);
            for (size_t t = 0; t < QPACK_TOK; t++) {
                double expect = 0, mag = 0;
                for (size_t i = 0; i < k; i++) {
                    expect += (double)wf[i] * xq[t * k + i];
                    mag += fabs((double)wf[i] * xq[t * k + i]);
                }
                if (fabs(ref[t][r] - expect) > 1e-5 * mag)
                    fail_msg("%s k=%zu row %zu token %zu: packed reference %.9g, dequantized "
                             "dot %.9g",
                             qt->name, k, row, t, (double)ref[t][r], expect);
            }
        }
        if (!pt->kernel)
            continue;
        for (size_t nt = 1; nt <= QPACK_TOK; nt++) {
            float one[QPACK_TOK][QPACK_ROWS];
            pt->kernel_ref(k, group, act, act_bytes, nt, one);
            memset(simd, 0, sizeof simd);
            pt->kernel(k, group, act, act_bytes, nt, simd);
            for (size_t t = 0; t < nt; t++)
                for (size_t r = 0; r < QPACK_ROWS; r++) {
                    double mag = 1e-3 + fabs(one[t][r]) * 4;
                    if (fabs(simd[t][r] - one[t][r]) > 1e-5 * mag * sqrt((double)k))
                        fail_msg("%s k=%zu tokens=%zu group %zu row %zu token %zu: SIMD %.9g, "
                                 "reference %.9g",
                                 qt->name, k, nt, g, r, t, (double)simd[t][r], (double)one[t][r]);
                }
        }
    }
    free(rows);
    free(packed);
    free(act);
    free(wf);
    free(xf);
    free(xq);
}

static void test_packed_kernels(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof packed_types / sizeof packed_types[0]; i++) {
        const qpack_traits *pt = qpack_traits_of(packed_types[i]);
        assert_non_null(pt);
        if (!pt->kernel)
            print_message("%s: no SIMD kernel on this CPU, reference only\n",
                          quant_type_name(packed_types[i]));
        check_type(packed_types[i], 256, 37);
        check_type(packed_types[i], 2048, 16);
        check_type(packed_types[i], 1280, 5);
    }
}

static void test_usable(void **state)
{
    (void)state;
    assert_false(qpack_usable(GGML_TYPE_F32, 256));
    assert_false(qpack_usable(GGML_TYPE_Q4_0, 48)); /* not a whole number of blocks */
    assert_null(qpack_traits_of(GGML_TYPE_IQ2_XXS));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_act_reference_values),
        cmocka_unit_test(test_act_simd_matches_reference),
        cmocka_unit_test(test_packed_kernels),
        cmocka_unit_test(test_usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
