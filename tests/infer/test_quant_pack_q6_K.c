/*
 * test_quant_pack_q6_K.c - the packed Q6_K form (quant_pack_q6_K.c) beyond the random rows of
 * test_quant_pack.c: the bytes sit where the layout comment says, the extremes of every field
 * (q = 0 and 63, scales -128 and 127, activations at +-127) give exact sums in both kernels,
 * and rows past n_out produce exactly 0.
 *
 * GGUF blocks are built here by placing each 6-bit quant with this file's own setter (ggml's
 * block_q6_K bit positions), and the expected dot products are computed in double straight
 * from the GGUF definition value = d * scale_j * (q - 32), so neither the pack function nor
 * to_float is trusted.
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

#include "qpack_test.h"

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"
#include "llmos/quant.h"

#define SB_BYTES (QPACK_ROWS * sizeof(block_q6_K)) /* one packed super-block of 16 rows */

/* Element e = 128h + 32k + l: low 4 bits in nibble k / 2 of ql[64h + 32(k % 2) + l], high 2
 * bits at bits 2k of qh[32h + l] (ggml's dequantize_row_q6_K). */
static void set_q(block_q6_K *b, int e, int q)
{
    int h = e / 128, k = (e / 32) % 4, l = e % 32;
    uint8_t *lo = &b->ql[64 * h + 32 * (k % 2) + l];
    int sh = 4 * (k / 2);
    *lo = (uint8_t)((*lo & ~(0xF << sh)) | (q & 0xF) << sh);
    uint8_t *hi = &b->qh[32 * h + l];
    *hi = (uint8_t)((*hi & ~(3 << (2 * k))) | (q >> 4) << (2 * k));
}

/* One row of nsb super-blocks: quant of element e is qf(row, e), scale j is sf(row, j). */
typedef int (*field_fn)(int row, int i);

static void make_row(block_q6_K *row, size_t nsb, int r, float d, field_fn qf, field_fn sf)
{
    memset(row, 0, nsb * sizeof *row);
    for (size_t s = 0; s < nsb; s++) {
        row[s].d = quant_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++)
            row[s].scales[j] = (int8_t)sf(r, (int)s * 16 + j);
        for (int e = 0; e < QK_K; e++)
            set_q(&row[s], e, qf(r, (int)s * QK_K + e));
    }
}

/* sum over k of row (GGUF definition) times the token's dequantized activations, in double,
 * with the sum of |terms| in *mag. */
static double expect_dot(const block_q6_K *row, size_t k, const void *act, double *mag, field_fn qf,
                         int r)
{
    const int8_t *y = qpack_act_q(act);
    const float *dx = qpack_act_d(act, k);
    double sum = 0, m = 0;
    for (size_t i = 0; i < k; i++) {
        const block_q6_K *b = &row[i / QK_K];
        double w =
            (double)quant_fp16_to_fp32(b->d) * b->scales[(i % QK_K) / 16] * (qf(r, (int)i) - 32);
        double t = w * dx[i / QPACK_BLOCK] * y[i];
        sum += t;
        m += fabs(t);
    }
    *mag = m;
    return sum;
}

static int q_pattern(int row, int i)
{
    return (i * 7 + row * 13) % 64;
}
static int s_pattern(int row, int j)
{
    return (j * 37 + row * 11) % 256 - 128;
}

/* ---- layout ------------------------------------------------------------------------------ */

static void test_layout_bytes(void **state)
{
    (void)state;
    const size_t k = 2 * QK_K, nsb = 2;
    block_q6_K rows[3][2];
    for (int r = 0; r < 3; r++)
        make_row(rows[r], nsb, r, 0.25f * (float)(r + 1), q_pattern, s_pattern);
    uint8_t *g = malloc(nsb * SB_BYTES);
    assert_non_null(g);
    memset(g, 0xAA, nsb * SB_BYTES); /* pack must overwrite every byte */
    qpack_q6_Kx16_pack(rows, sizeof rows[0], 3, k, g);
    for (size_t s = 0; s < nsb; s++) {
        const uint8_t *gs = g + s * SB_BYTES;
        for (int r = 0; r < QPACK_ROWS; r++) {
            uint16_t d;
            memcpy(&d, gs + 2 * r, 2); /* d[16] at offset 0 */
            assert_int_equal(d, r < 3 ? rows[r][s].d : 0);
            for (int j = 0; j < 16; j++) { /* sc[j][r] at offset 32 */
                int8_t sc = (int8_t)gs[32 + 16 * j + r];
                assert_int_equal(sc, r < 3 ? s_pattern(r, (int)s * 16 + j) : 0);
            }
            for (int e = 0; e < QK_K; e++) { /* A, B, C of sub-block j at 288 + 192 j */
                int j = e / 16, c = (e % 16) / 4, i = e % 4;
                const uint8_t *abc = gs + 288 + 192 * j + 4 * r + i;
                int q = c < 3 ? abc[64 * c] & 0x3F
                              : (abc[0] >> 6) | (abc[64] >> 6) << 2 | (abc[128] >> 6) << 4;
                assert_int_equal(q, r < 3 ? q_pattern(r, (int)s * QK_K + e) : 0);
            }
        }
    }
    free(g);
}

/* ---- extremes ---------------------------------------------------------------------------- */

static int q_zero(int row, int i)
{
    (void)row, (void)i;
    return 0;
}
static int q_max(int row, int i)
{
    (void)row, (void)i;
    return 63;
}
static int q_alt(int row, int i)
{
    return ((i / 3 + row) & 1) ? 63 : 0;
}
static int s_min(int row, int j)
{
    (void)row, (void)j;
    return -128;
}
static int s_max(int row, int j)
{
    (void)row, (void)j;
    return 127;
}
static int s_alt(int row, int j)
{
    return ((j + row) & 1) ? 127 : -128;
}

static void check_case(field_fn qf, field_fn sf, int act_kind)
{
    const size_t k = 3 * QK_K, nsb = 3, n_rows = 16;
    const qpack_traits *pt = qpack_traits_of(GGML_TYPE_Q6_K);
    assert_non_null(pt);
    block_q6_K *rows = malloc(n_rows * nsb * sizeof *rows);
    uint8_t *g = malloc(nsb * SB_BYTES);
    size_t ab = qpack_act_bytes(k);
    uint8_t *act = malloc(QPACK_TOK * ab);
    assert_true(rows && g && act);
    for (size_t r = 0; r < n_rows; r++)
        make_row(rows + r * nsb, nsb, (int)r, 1.0f, qf, sf);
    qpack_q6_Kx16_pack(rows, nsb * sizeof *rows, n_rows, k, g);
    for (int t = 0; t < QPACK_TOK; t++)
        make_act((act_kind + t) % 3, k, act + t * ab);

    float ref[QPACK_TOK][QPACK_ROWS], simd[QPACK_TOK][QPACK_ROWS];
    qpack_q6_Kx16_kernel_ref(k, g, act, ab, QPACK_TOK, ref);
    if (pt->kernel)
        pt->kernel(k, g, act, ab, QPACK_TOK, simd);
    for (int t = 0; t < QPACK_TOK; t++)
        for (size_t r = 0; r < n_rows; r++) {
            double mag, e = expect_dot(rows + r * nsb, k, act + t * ab, &mag, qf, (int)r);
            if (fabs(ref[t][r] - e) > 1e-6 * mag)
                fail_msg("Q6_K reference row %zu token %d: %.9g, expected %.9g", r, t,
                         (double)ref[t][r], e);
            if (pt->kernel && fabs(simd[t][r] - e) > 1e-6 * mag)
                fail_msg("Q6_K SIMD row %zu token %d: %.9g, expected %.9g", r, t,
                         (double)simd[t][r], e);
        }
    free(rows);
    free(g);
    free(act);
}

static void test_extremes(void **state)
{
    (void)state;
    field_fn qs[] = {q_zero, q_max, q_alt, q_pattern};
    field_fn ss[] = {s_min, s_max, s_alt};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(qs); i++)
        for (size_t j = 0; j < LLMOS_ARRAY_LEN(ss); j++)
            check_case(qs[i], ss[j], (int)(i + j) % 3);
}

/* ---- rows past n_out --------------------------------------------------------------------- */

static void test_missing_rows_are_zero(void **state)
{
    (void)state;
    const size_t k = QK_K;
    block_q6_K row;
    make_row(&row, 1, 0, 2.0f, q_max, s_min);
    qpt_check_missing_rows(GGML_TYPE_Q6_K, &row, sizeof row, k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_bytes),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_missing_rows_are_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
