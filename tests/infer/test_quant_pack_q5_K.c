/*
 * test_quant_pack_q5_K.c - the packed Q5_K form (quant_pack_q5_K.c) beyond the random rows of
 * test_quant_pack.c: the bytes sit where the layout comment says (d, dmin, scale words,
 * nibbles, fifth-bit masks), the extremes of every field (q 0, 15, 16 and 31, 6-bit scales and
 * mins 0 and 63, activations at +-127, large d and dmin) give the exact sums in both kernels,
 * and rows past n_out produce exactly 0.
 *
 * GGUF blocks are built here with this file's own setters (ggml's block_q5_K: sub-block j's
 * scale and min in the 12 scale bytes as get_scale_min_k4 reads them, the low four bits of
 * element 64p + 32h + l in nibble h of qs[32p + l], its fifth bit in bit 2p + h of qh[l]), and
 * the expected dot products are computed in double from the GGUF definition
 * value = d * sc_j * q - dmin * m_j with the values as set, so neither the pack function, nor
 * quant_k4_scale_min, nor to_float is trusted.
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
#include "llmos/base.h"
#include "llmos/quant.h"

#define SB_BYTES (QPACK_ROWS * sizeof(block_q5_K)) /* one packed super-block of 16 rows */

/* ---- building GGUF rows ------------------------------------------------------------------ */

/* Element e (0..255) of a block: low four bits in nibble e/32 % 2 of qs[32 * (e / 64) + e % 32],
 * fifth bit in bit e / 32 of qh[e % 32]. */
static void set_q(block_q5_K *b, int e, int q)
{
    uint8_t *byte = &b->qs[32 * (e / 64) + e % 32];
    int sh = (e / 32) % 2 ? 4 : 0;
    *byte = (uint8_t)((*byte & ~(0xF << sh)) | (q & 0xF) << sh);
    uint8_t *h = &b->qh[e % 32];
    *h = (uint8_t)((*h & ~(1 << (e / 32))) | (q >> 4) << (e / 32));
}

/* Scale sc and min m (6 bits each) of sub-block j: for j < 4 the low 6 bits of bytes j and
 * j + 4; for j >= 4 the low/high nibble of byte j + 4 with the top two bits in bits 6-7 of
 * bytes j - 4 (scale) and j (min). */
static void set_scale_min(block_q5_K *b, int j, int sc, int m)
{
    uint8_t *s = b->scales;
    if (j < 4) {
        s[j] = (uint8_t)((s[j] & 0xC0) | sc);
        s[j + 4] = (uint8_t)((s[j + 4] & 0xC0) | m);
    } else {
        s[j + 4] = (uint8_t)((sc & 0xF) | (m & 0xF) << 4);
        s[j - 4] = (uint8_t)((s[j - 4] & 0x3F) | (sc >> 4) << 6);
        s[j] = (uint8_t)((s[j] & 0x3F) | (m >> 4) << 6);
    }
}

/* field(row, i): a quant (i = element of the row) or a 6-bit scale/min (i = sub-block). */
typedef int (*field_fn)(int row, int i);

typedef struct row_spec {
    field_fn q, sc, m;
    float d, dmin;
} row_spec;

static float row_d(const row_spec *s, size_t b, int r)
{
    return s->d * (float)(1 + (b + (size_t)r) % 3);
}
static float row_dmin(const row_spec *s, size_t b, int r)
{
    return s->dmin * (float)(1 + (b + 2 * (size_t)r) % 4);
}

static void make_row(block_q5_K *row, size_t nb, int r, const row_spec *s)
{
    memset(row, 0, nb * sizeof *row);
    for (size_t b = 0; b < nb; b++) {
        row[b].d = quant_fp32_to_fp16(row_d(s, b, r));
        row[b].dmin = quant_fp32_to_fp16(row_dmin(s, b, r));
        for (int j = 0; j < 8; j++) {
            int sb = (int)b * 8 + j;
            set_scale_min(&row[b], j, s->sc(r, sb), s->m(r, sb));
        }
        for (int e = 0; e < QK_K; e++)
            set_q(&row[b], e, s->q(r, (int)b * QK_K + e));
    }
}

/* The dot of row r (as specified, not as stored) with one token; *mag gets the sum of the
 * magnitudes of the scale part and the min part, which the kernels sum separately. */
static double expect_dot(const block_q5_K *row, size_t k, const void *act, const row_spec *s, int r,
                         double *mag)
{
    const int8_t *y = qpack_act_q(act);
    const float *dx = qpack_act_d(act, k);
    double sum = 0, m = 0;
    for (size_t i = 0; i < k; i++) {
        size_t b = i / QK_K;
        int sb = (int)(i / 32);
        double x = (double)dx[i / QPACK_BLOCK] * y[i];
        double wq = (double)quant_fp16_to_fp32(row[b].d) * s->sc(r, sb) * s->q(r, (int)i);
        double wm = (double)quant_fp16_to_fp32(row[b].dmin) * s->m(r, sb);
        sum += (wq - wm) * x;
        m += fabs(wq * x) + fabs(wm * x);
    }
    *mag = m;
    return sum;
}

static int q_pattern(int row, int i)
{
    return (i * 7 + row * 5) % 32;
}
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
static int q_alt(int row, int i) /* runs of 3: low and high nibbles, 0 and 31 */
{
    return ((i / 3 + row) & 1) ? 31 : 0;
}
static int q_fifth(int row, int i) /* only the fifth bit varies: 16 and 15 */
{
    return ((i * 3 + row) % 7 < 3) ? 16 : 15;
}
static int q_sub(int row, int i) /* the fifth bit by sub-block: every qh bit position moves */
{
    return ((i / 32 + row) % 3) ? 31 : 15;
}
static int s_pattern(int row, int i)
{
    return (i * 11 + row * 3 + 1) % 64;
}
static int s_zero(int row, int i)
{
    (void)row, (void)i;
    return 0;
}
static int s_max(int row, int i)
{
    (void)row, (void)i;
    return 63;
}
static int s_alt(int row, int i) /* 63 and 0 by sub-block: every bit of the 12 bytes moves */
{
    return ((i + row) & 1) ? 63 : 0;
}
static int s_top(int row, int i) /* only the top two bits set: 48 */
{
    return ((i + row) % 3) ? 48 : 15;
}

/* ---- layout ------------------------------------------------------------------------------ */

static void test_layout_bytes(void **state)
{
    (void)state;
    const size_t nb = 2, k = nb * QK_K;
    const row_spec spec = {q_pattern, s_pattern, s_alt, 0.25f, 0.125f};
    block_q5_K rows[5][2];
    for (int r = 0; r < 5; r++)
        make_row(rows[r], nb, r, &spec);
    uint8_t *g = malloc(nb * SB_BYTES);
    assert_non_null(g);
    memset(g, 0xAA, nb * SB_BYTES); /* pack must overwrite every byte */
    qpack_q5_Kx16_pack(rows, sizeof rows[0], 5, k, g);
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *gb = g + b * SB_BYTES;
        for (int r = 0; r < QPACK_ROWS; r++) {
            uint16_t d, dmin;
            memcpy(&d, gb + 2 * r, 2);         /* d[16] at offset 0 */
            memcpy(&dmin, gb + 32 + 2 * r, 2); /* dmin[16] at offset 32 */
            assert_int_equal(d, r < 5 ? rows[r][b].d : 0);
            assert_int_equal(dmin, r < 5 ? rows[r][b].dmin : 0);
            uint8_t scales[12]; /* word w of row r at 64 + 64w + 4r */
            for (int w = 0; w < 3; w++)
                memcpy(scales + 4 * w, gb + 64 + 64 * w + 4 * r, 4);
            if (r < 5)
                assert_memory_equal(scales, rows[r][b].scales, 12);
            else
                for (int i = 0; i < 12; i++)
                    assert_int_equal(scales[i], 0);
            for (int e = 0; e < QK_K; e++) {
                int j = e / 32, l = e % 32, c = 8 * (j / 2) + l / 4; /* chunks at offset 256 */
                int k4 = l % 4;
                uint8_t byte = gb[256 + 64 * c + 4 * r + k4];
                int nib = j % 2 ? byte >> 4 : byte & 0xF;
                /* fifth bits at offset 2304, vector c / 4: the low nibble's at bit 4 + c % 4 of
                 * the same byte, the high nibble's at bit c % 4 of the next byte of the lane */
                const uint8_t *hb = gb + 2304 + 64 * (c / 4) + 4 * r;
                int bit = j % 2 ? (hb[(k4 + 1) % 4] >> (c % 4)) & 1 : (hb[k4] >> (4 + c % 4)) & 1;
                int q = nib | bit << 4;
                assert_int_equal(q, r < 5 ? q_pattern(r, (int)b * QK_K + e) : 0);
            }
        }
    }
    free(g);
}

/* ---- extremes ---------------------------------------------------------------------------- */

static void check_case(const row_spec *spec, int act_kind)
{
    const size_t nb = 3, k = nb * QK_K, n_rows = QPACK_ROWS;
    const qpack_traits *pt = qpack_traits_of(GGML_TYPE_Q5_K);
    assert_non_null(pt);
    block_q5_K *rows = malloc(n_rows * nb * sizeof *rows);
    uint8_t *g = malloc(nb * SB_BYTES);
    size_t ab = qpack_act_bytes(k);
    uint8_t *act = malloc(QPACK_TOK * ab);
    assert_true(rows && g && act);
    for (size_t r = 0; r < n_rows; r++)
        make_row(rows + r * nb, nb, (int)r, spec);
    qpack_q5_Kx16_pack(rows, nb * sizeof *rows, n_rows, k, g);
    for (int t = 0; t < QPACK_TOK; t++)
        make_act((act_kind + t) % 3, k, act + t * ab);

    for (size_t nt = 1; nt <= QPACK_TOK; nt++) {
        float ref[QPACK_TOK][QPACK_ROWS], simd[QPACK_TOK][QPACK_ROWS];
        qpack_q5_Kx16_kernel_ref(k, g, act, ab, nt, ref);
        if (pt->kernel)
            pt->kernel(k, g, act, ab, nt, simd);
        for (size_t t = 0; t < nt; t++)
            for (size_t r = 0; r < n_rows; r++) {
                double mag, e = expect_dot(rows + r * nb, k, act + t * ab, spec, (int)r, &mag);
                /* float sums of ~50 terms per row: a few 2^-24 of the magnitudes */
                double tol = 2e-6 * mag + 1e-30;
                if (fabs(ref[t][r] - e) > tol)
                    fail_msg("Q5_K reference row %zu token %zu: %.9g, expected %.9g", r, t,
                             (double)ref[t][r], e);
                if (pt->kernel && fabs(simd[t][r] - e) > tol)
                    fail_msg("Q5_K SIMD (%zu tokens) row %zu token %zu: %.9g, expected %.9g", nt, r,
                             t, (double)simd[t][r], e);
            }
    }
    free(rows);
    free(g);
    free(act);
}

static void test_extremes(void **state)
{
    (void)state;
    field_fn qs[] = {q_zero, q_max, q_alt, q_fifth, q_sub, q_pattern};
    field_fn ss[] = {s_zero, s_max, s_alt, s_top, s_pattern};
    int n = 0;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(qs); i++)
        for (size_t j = 0; j < LLMOS_ARRAY_LEN(ss); j++) {
            /* scales and mins from different patterns, so a swap of the two shows */
            row_spec spec = {qs[i], ss[j], ss[(j + 2) % LLMOS_ARRAY_LEN(ss)], 1.0f, 0.5f};
            check_case(&spec, n++ % 3);
        }
    /* large d and dmin (F16 near its top): the float sums must not overflow or lose bits */
    row_spec big = {q_max, s_max, s_alt, 16384.0f, 8192.0f};
    check_case(&big, 0);
    row_spec big_min = {q_zero, s_zero, s_max, 1.0f, 16384.0f};
    check_case(&big_min, 2);
}

/* ---- rows past n_out --------------------------------------------------------------------- */

static void test_missing_rows_are_zero(void **state)
{
    (void)state;
    const size_t k = QK_K;
    const row_spec spec = {q_max, s_max, s_max, 2.0f, 1.0f};
    block_q5_K row;
    make_row(&row, 1, 0, &spec);
    qpt_check_missing_rows(GGML_TYPE_Q5_K, &row, sizeof row, k);
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
