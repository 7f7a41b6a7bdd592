/*
 * qpack_test.h - what the per-type packed-kernel tests (test_quant_pack_<type>.c) share:
 * activations of a known shape, and the check that rows missing from a group read as zero.
 * Header-only (static functions), included after cmocka.h by each of those tests.
 */
#ifndef LLMOS_QPACK_TEST_H
#define LLMOS_QPACK_TEST_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "infer/pack/quant_pack.h"

/* Activations of k values: kind 0 all +1, kind 1 all -1, kind 2 a +-1 pattern; each 32-block
 * then quantizes to q = +-127 with d = 1/127. */
static void make_act(int kind, size_t k, void *act)
{
    float *x = malloc(k * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < k; i++)
        x[i] = kind == 0 ? 1.0f : kind == 1 ? -1.0f : ((i % 5) & 1) ? 1.0f : -1.0f;
    qpack_act_quantize_ref(x, k, act);
    free(x);
}

/* Pack one GGUF row (`row`, k values, non-zero result) as a group of 16 into a buffer full
 * of junk: for 1..QPACK_TOK tokens, the reference and the SIMD kernel (if this CPU runs it)
 * must give a non-zero row 0 and exactly 0 for the 15 missing rows. */
static void qpt_check_missing_rows(ggml_type type, const void *row, size_t row_bytes, size_t k)
{
    const qpack_traits *pt = qpack_traits_of(type);
    assert_non_null(pt);
    size_t group_bytes = QPACK_ROWS * row_bytes;
    uint8_t *g = malloc(group_bytes), *act = malloc(QPACK_TOK * qpack_act_bytes(k));
    assert_true(g && act);
    memset(g, 0x5A, group_bytes);
    pt->pack(row, row_bytes, 1, k, g);
    for (int t = 0; t < QPACK_TOK; t++)
        make_act(t % 3, k, act + t * qpack_act_bytes(k));
    for (size_t nt = 1; nt <= QPACK_TOK; nt++) {
        for (int which = 0; which < 2; which++) {
            qpack_kernel_fn kern = which ? pt->kernel : pt->kernel_ref;
            if (!kern)
                continue;
            float out[QPACK_TOK][QPACK_ROWS];
            memset(out, 0x7F, sizeof out);
            kern(k, g, act, qpack_act_bytes(k), nt, out);
            for (size_t t = 0; t < nt; t++) {
                assert_true(out[t][0] != 0.0f);
                for (int r = 1; r < QPACK_ROWS; r++)
                    if (out[t][r] != 0.0f)
                        fail_msg("%s %s kernel, %zu tokens: padding row %d gave %g, not 0",
                                 quant_type_name(type), which ? "SIMD" : "reference", nt, r,
                                 (double)out[t][r]);
            }
        }
    }
    free(g);
    free(act);
}

#endif
