/*
 * test_quant_pack_q5_0.c - the packed Q5_0 form (quant_pack_q5_0.c) beyond the random rows of
 * test_quant_pack.c: the bytes sit where the layout comment says (d's, nibbles, fifth-bit
 * masks), the extremes (q = 0 and 31, activations at +-127, large d) give exact sums in both
 * kernels, and rows past n_out produce exactly 0.
 *
 * GGUF blocks are built here by placing each 5-bit quant with this file's own setter (ggml's
 * block_q5_0: low nibble in qs, fifth bit in the little-endian qh), and the expected dot
 * products are computed in double from the GGUF definition value = d * (q - 16), so neither
 * the pack function nor to_float is trusted.
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

#define BLK_BYTES (QPACK_ROWS * sizeof(block_q5_0)) /* one packed block of 16 rows */

/* Element j < 16: low nibble of qs[j]; j >= 16: high nibble of qs[j - 16]; fifth bit: bit j of
 * the little-endian 32-bit qh. */
static void set_q(block_q5_0 *b, int j, int q)
{
    uint8_t *byte = &b->qs[j % 16];
    int sh = j < 16 ? 0 : 4;
    *byte = (uint8_t)((*byte & ~(0xF << sh)) | (q & 0xF) << sh);
    uint8_t *h = &b->qh[j / 8];
    *h = (uint8_t)((*h & ~(1 << (j % 8))) | (q >> 4) << (j % 8));
}

typedef int (*field_fn)(int row, int i);

static void make_row(block_q5_0 *row, size_t nb, int r, float d, field_fn qf)
{
    memset(row, 0, nb * sizeof *row);
    for (size_t b = 0; b < nb; b++) {
        row[b].d = quant_fp32_to_fp16(d * (float)(1 + (b + (size_t)r) % 3));
        for (int j = 0; j < QK5_0; j++)
            set_q(&row[b], j, qf(r, (int)b * QK5_0 + j));
    }
}

static double expect_dot(const block_q5_0 *row, size_t k, const void *act, double *mag, field_fn qf,
                         int r)
{
    const int8_t *y = qpack_act_q(act);
    const float *dx = qpack_act_d(act, k);
    double sum = 0, m = 0;
    for (size_t i = 0; i < k; i++) {
        double w = (double)quant_fp16_to_fp32(row[i / QK5_0].d) * (qf(r, (int)i) - 16);
        double t = w * dx[i / QPACK_BLOCK] * y[i];
        sum += t;
        m += fabs(t);
    }
    *mag = m;
    return sum;
}

static int q_pattern(int row, int i)
{
    return (i * 7 + row * 5) % 32;
}

/* ---- layout ------------------------------------------------------------------------------ */

static void test_layout_bytes(void **state)
{
    (void)state;
    const size_t k = 3 * QK5_0, nb = 3;
    block_q5_0 rows[5][3];
    for (int r = 0; r < 5; r++)
        make_row(rows[r], nb, r, 0.125f, q_pattern);
    uint8_t *g = malloc(nb * BLK_BYTES);
    assert_non_null(g);
    memset(g, 0xAA, nb * BLK_BYTES); /* pack must overwrite every byte */
    qpack_q5_0x16_pack(rows, sizeof rows[0], 5, k, g);
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *gb = g + b * BLK_BYTES;
        for (int r = 0; r < QPACK_ROWS; r++) {
            uint16_t d;
            memcpy(&d, gb + 2 * r, 2); /* d[16] at offset 0 */
            assert_int_equal(d, r < 5 ? rows[r][b].d : 0);
            for (int j = 0; j < QK5_0; j++) {
                int half = j / 16, c = (j % 16) / 4, n = 4 * r + j % 4;
                uint8_t byte = gb[32 + 64 * c + n]; /* nibbles at offset 32 */
                int nib = half ? byte >> 4 : byte & 0xF;
                uint64_t mask = 0; /* hb[c][half] at offset 288, little-endian */
                for (int i = 0; i < 8; i++)
                    mask |= (uint64_t)gb[288 + 16 * c + 8 * half + i] << (8 * i);
                int q = nib | (int)((mask >> n) & 1) << 4;
                assert_int_equal(q, r < 5 ? q_pattern(r, (int)b * QK5_0 + j) : 0);
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
    return 31;
}
static int q_alt(int row, int i)
{
    return ((i / 3 + row) & 1) ? 31 : 0;
}
static int q_fifth(int row, int i) /* only the fifth bit varies */
{
    return ((i * 3 + row) % 7 < 3) ? 16 : 15;
}

static void check_case(field_fn qf, float d, int act_kind)
{
    const size_t k = 4 * QK5_0, nb = 4, n_rows = 16;
    const qpack_traits *pt = qpack_traits_of(GGML_TYPE_Q5_0);
    assert_non_null(pt);
    block_q5_0 *rows = malloc(n_rows * nb * sizeof *rows);
    uint8_t *g = malloc(nb * BLK_BYTES);
    size_t ab = qpack_act_bytes(k);
    uint8_t *act = malloc(QPACK_TOK * ab);
    assert_true(rows && g && act);
    for (size_t r = 0; r < n_rows; r++)
        make_row(rows + r * nb, nb, (int)r, d, qf);
    qpack_q5_0x16_pack(rows, nb * sizeof *rows, n_rows, k, g);
    for (int t = 0; t < QPACK_TOK; t++)
        make_act((act_kind + t) % 3, k, act + t * ab);

    float ref[QPACK_TOK][QPACK_ROWS], simd[QPACK_TOK][QPACK_ROWS];
    qpack_q5_0x16_kernel_ref(k, g, act, ab, QPACK_TOK, ref);
    if (pt->kernel)
        pt->kernel(k, g, act, ab, QPACK_TOK, simd);
    for (int t = 0; t < QPACK_TOK; t++)
        for (size_t r = 0; r < n_rows; r++) {
            double mag, e = expect_dot(rows + r * nb, k, act + t * ab, &mag, qf, (int)r);
            if (fabs(ref[t][r] - e) > 1e-6 * mag)
                fail_msg("Q5_0 reference row %zu token %d: %.9g, expected %.9g", r, t,
                         (double)ref[t][r], e);
            if (pt->kernel && fabs(simd[t][r] - e) > 1e-6 * mag)
                fail_msg("Q5_0 SIMD row %zu token %d: %.9g, expected %.9g", r, t,
                         (double)simd[t][r], e);
        }
    free(rows);
    free(g);
    free(act);
}

static void test_extremes(void **state)
{
    (void)state;
    field_fn qs[] = {q_zero, q_max, q_alt, q_fifth, q_pattern};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(qs); i++) {
        check_case(qs[i], 1.0f, (int)i % 3);
        check_case(qs[i], 20000.0f, (int)(i + 1) % 3); /* near the top of F16 (x3 < 65504) */
    }
}

/* ---- rows past n_out --------------------------------------------------------------------- */

static void test_missing_rows_are_zero(void **state)
{
    (void)state;
    const size_t k = 2 * QK5_0;
    block_q5_0 row[2];
    make_row(row, 2, 0, 2.0f, q_max);
    qpt_check_missing_rows(GGML_TYPE_Q5_0, row, sizeof row, k);
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
