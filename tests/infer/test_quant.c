/*
 * test_quant.c - the quantized block formats and their kernels.
 *
 * 1. Layouts: for every type a block is built byte by byte at the offsets GGUF files use, and
 *    its dequantization is compared exactly with values worked out by hand from the format
 *    (the arithmetic is in the comments next to each literal).
 * 2. Quantizers: quantize -> dequantize error on Gaussian data stays within each format's
 *    expected bound, and the SIMD activation quantizers write the same bytes as the reference.
 * 3. Dot products: the reference vec_dot equals the dot of the dequantized vectors; every SIMD
 *    kernel this CPU can run equals the reference on random blocks of many lengths.
 * 4. The four-token kernels equal four reference dots; quant_gemm equals vec_dot per pair and
 *    rejects what it cannot do.
 *
 * Tolerance of SIMD vs reference: the integer part of every kernel is exact, so the results
 * differ only in the order of float additions (and the float rounding of per-block scale
 * products). Each of the at most a few hundred block terms carries a relative rounding error
 * of order 2^-24 ~ 6e-8, so the difference is bounded by ~ n_blocks * 6e-8 * sum|terms|; we
 * require 1e-5 * sum_i |x_i y_i| (computed from the dequantized vectors), which a wrong
 * element, scale or sign would exceed by orders of magnitude.
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
#include "llmos/quant.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

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

static float rnd_gauss(void)
{
    float u = rnd_uniform(), v = rnd_uniform();
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}

static void put16(uint8_t *b, size_t off, uint16_t v)
{
    b[off] = (uint8_t)(v & 0xFF);
    b[off + 1] = (uint8_t)(v >> 8);
}

static void fill(float *x, size_t from, size_t to, float v)
{
    for (size_t i = from; i < to; i++)
        x[i] = v;
}

/* Dequantize one block of `type` and compare every element exactly. */
static void check_block(ggml_type type, const uint8_t *block, const float *expect)
{
    const quant_traits *t = quant_traits_of(type);
    assert_non_null(t);
    assert_true(t->supported);
    float got[256];
    t->to_float(block, got, t->block_size);
    for (size_t i = 0; i < t->block_size; i++) {
        if (got[i] != expect[i])
            fail_msg("%s element %zu: got %.9g, expected %.9g", t->name, i, (double)got[i],
                     (double)expect[i]);
    }
}

/* fp16 constants used below */
#define H_0_125 0x3000
#define H_0_25  0x3400
#define H_0_5   0x3800
#define H_1     0x3C00
#define H_2     0x4000
#define H_M1    0xBC00
#define H_M2    0xC000

/* ---- 1. layouts, by hand ----------------------------------------------------------------- */

static void test_layout_q4_0(void **state)
{
    (void)state;
    /* bytes 0-1 d (fp16), 2-17 qs; element j = low nibble of qs[j], j+16 = high nibble;
     * value (q - 8) * d */
    uint8_t b[18];
    memset(b, 0x88, sizeof b); /* every nibble 8: value 0 */
    put16(b, 0, H_0_5);
    b[2 + 0] = 0xF0;  /* e0 = (0-8)*0.5 = -4, e16 = (15-8)*0.5 = 3.5 */
    b[2 + 1] = 0x19;  /* e1 = (9-8)*0.5 = 0.5, e17 = (1-8)*0.5 = -3.5 */
    b[2 + 15] = 0x78; /* e15 = 0, e31 = (7-8)*0.5 = -0.5 */
    float e[32] = {[0] = -4.0f, [1] = 0.5f, [16] = 3.5f, [17] = -3.5f, [31] = -0.5f};
    check_block(GGML_TYPE_Q4_0, b, e);
}

static void test_layout_q4_1(void **state)
{
    (void)state;
    /* 0-1 d, 2-3 m, 4-19 qs; value q*d + m */
    uint8_t b[20];
    memset(b, 0x44, sizeof b); /* q = 4: 4*0.5 - 2 = 0 */
    put16(b, 0, H_0_5);
    put16(b, 2, H_M2);
    b[4 + 0] = 0xF0; /* e0 = 0*0.5-2 = -2, e16 = 15*0.5-2 = 5.5 */
    b[4 + 3] = 0x2A; /* e3 = 10*0.5-2 = 3, e19 = 2*0.5-2 = -1 */
    float e[32] = {[0] = -2.0f, [16] = 5.5f, [3] = 3.0f, [19] = -1.0f};
    check_block(GGML_TYPE_Q4_1, b, e);
}

static void test_layout_q5_0(void **state)
{
    (void)state;
    /* 0-1 d, 2-5 qh (little-endian, bit j = fifth bit of element j), 6-21 qs;
     * value ((nibble | bit<<4) - 16) * d */
    uint8_t b[22] = {0};
    put16(b, 0, H_0_25);
    memset(b + 2, 0xFF, 4); /* fifth bits set, nibbles 0: 16-16 = 0 */
    b[2 + 0] = 0xFD;        /* clear bit 1: e1 = (0-16)*0.25 = -4 */
    b[2 + 3] = 0x7F;        /* clear bit 31 */
    b[6 + 0] = 0x3F;        /* e0 = (15|16)-16 = 15 -> 3.75; e16 = (3|16)-16 = 3 -> 0.75 */
    b[6 + 15] = 0x57;       /* e15 = (7|16)-16 = 7 -> 1.75; e31 = 5-16 = -11 -> -2.75 */
    float e[32] = {[0] = 3.75f, [1] = -4.0f, [16] = 0.75f, [15] = 1.75f, [31] = -2.75f};
    check_block(GGML_TYPE_Q5_0, b, e);
}

static void test_layout_q5_1(void **state)
{
    (void)state;
    /* 0-1 d, 2-3 m, 4-7 qh, 8-23 qs; value (nibble | bit<<4) * d + m */
    uint8_t b[24];
    memset(b, 0x44, sizeof b);
    put16(b, 0, H_0_5);
    put16(b, 2, H_M2);
    memset(b + 4, 0, 4);
    b[4 + 2] = 0x04; /* bit 18 */
    b[4 + 1] = 0x02; /* bit 9 */
    b[8 + 2] = 0x4F; /* e2 = 15*0.5-2 = 5.5; e18 = (4|16)*0.5-2 = 8 */
    b[8 + 9] = 0x40; /* e9 = (0|16)*0.5-2 = 6; e25 = 4*0.5-2 = 0 */
    float e[32] = {[2] = 5.5f, [18] = 8.0f, [9] = 6.0f};
    check_block(GGML_TYPE_Q5_1, b, e);
}

static void test_layout_q8_0(void **state)
{
    (void)state;
    /* 0-1 d, 2-33 int8 qs; value q*d */
    uint8_t b[34] = {0};
    put16(b, 0, H_0_125);
    b[2 + 0] = 127;   /* 127/8 = 15.875 */
    b[2 + 5] = 0x80;  /* -128/8 = -16 */
    b[2 + 31] = 0xFD; /* -3/8 = -0.375 */
    float e[32] = {[0] = 15.875f, [5] = -16.0f, [31] = -0.375f};
    check_block(GGML_TYPE_Q8_0, b, e);
}

static void test_layout_q8_1(void **state)
{
    (void)state;
    /* 0-1 d, 2-3 s (= d * sum q, not used by dequantization), 4-35 qs */
    uint8_t b[36] = {0};
    put16(b, 0, H_2);
    put16(b, 2, 0x5A3C); /* arbitrary s */
    b[4 + 1] = 0xFF;     /* -1*2 = -2 */
    b[4 + 30] = 100;     /* 200 */
    float e[32] = {[1] = -2.0f, [30] = 200.0f};
    check_block(GGML_TYPE_Q8_1, b, e);
}

static void test_layout_q2_K(void **state)
{
    (void)state;
    /* 0-15 scales (low nibble scale, high nibble min, sub-blocks of 16), 16-79 qs, 80-81 d,
     * 82-83 dmin. Element 128h+32j+l = bits 2j..2j+1 of qs[32h+l];
     * value d*scale*q - dmin*min. d = 1, dmin = 0.5. */
    uint8_t b[84] = {0};
    put16(b, 80, H_1);
    put16(b, 82, H_0_5);
    b[0] = 0x21;       /* sub-block 0: scale 1, min 2: q - 1 */
    b[2] = 0x03;       /* sub-block 2: scale 3, min 0 */
    b[4] = 0x15;       /* sub-block 4: scale 5, min 1: 5q - 0.5 */
    b[15] = 0xF2;      /* sub-block 15: scale 2, min 15: 2q - 7.5 */
    b[16 + 0] = 0xE4;  /* q(e0)=0 -> -1, q(e32)=1 -> 3, q(e64)=2 -> 9.5, q(e96)=3 (scale 0) */
    b[16 + 48] = 0xC0; /* e240 = 128+96+16: q = 3 -> 6 - 7.5 = -1.5 */
    float e[256] = {0};
    fill(e, 0, 16, -1.0f);
    e[32] = 3.0f;
    fill(e, 64, 80, -0.5f);
    e[64] = 9.5f;
    fill(e, 240, 256, -7.5f);
    e[240] = -1.5f;
    check_block(GGML_TYPE_Q2_K, b, e);
}

static void test_layout_q3_K(void **state)
{
    (void)state;
    /* 0-31 hmask, 32-95 qs, 96-107 scales (16 six-bit values, stored +32), 108-109 d.
     * Element e: low bits 2j..2j+1 of qs[32h+l] (e = 128h+32j+l), third bit hmask[e%32] bit
     * e/32 (clear: minus 4); value d*(scale-32)*q. d = 0.5. */
    uint8_t b[110] = {0};
    put16(b, 108, H_0_5);
    /* all scales stored 32 (value 0): low nibbles 0, top bits 2 in every 2-bit field */
    memset(b + 96 + 8, 0xAA, 4);
    b[96 + 0] = 0x01; /* sub-block 0 stored 33: scale 1 */
    /* sub-block 9 stored 27 = 0b01_1011: low nibble 0xB in the high nibble of byte 1,
     * top bits 01 in byte 8+9%4 = 9 at bit 2*(9/4) = 4 */
    b[96 + 1] = 0xB0;
    b[96 + 9] = 0x9A;
    /* sub-block 0: q = -4 unless set: 0.5*1*-4 = -2 */
    b[0] = 0x01;      /* hmask[0] bit 0: e0 third bit set */
    b[32 + 0] = 0x03; /* e0 low bits 3: q = 3 -> 1.5 */
    b[1] = 0x01;      /* e1: q = 0 -> 0 */
    /* sub-block 9 (e 144..159): scale -5, q = -4 unless set: 10 */
    b[22] = 0x10;      /* e150 = 128 + 22: hmask[22] bit 4 */
    b[32 + 54] = 0x02; /* qs[32+22] bits 0-1 = 2: q = 2 -> 0.5*-5*2 = -5 */
    float e[256] = {0};
    e[0] = 1.5f;
    fill(e, 2, 16, -2.0f);
    fill(e, 144, 160, 10.0f);
    e[150] = -5.0f;
    check_block(GGML_TYPE_Q3_K, b, e);
}

static void test_layout_q4_K(void **state)
{
    (void)state;
    /* 0-1 d, 2-3 dmin, 4-15 scales (8 six-bit scales and mins), 16-143 qs.
     * Element 64c+32h+l = nibble h of qs[32c+l]; value d*scale*q - dmin*min.
     * d = 1, dmin = 0.25. */
    uint8_t b[144] = {0};
    put16(b, 0, H_1);
    put16(b, 2, H_0_25);
    b[4 + 0] = 2; /* scale 0 = 2 */
    b[4 + 4] = 4; /* min 0 = 4: sub-block 0 = 2q - 1 */
    /* sub-block 5: scale 35 = 0b10_0011, min 18 = 0b01_0010: low nibbles in byte 9
     * (scale | min << 4), top bits of the scale in bits 6-7 of byte 1, of the min in bits 6-7
     * of byte 5 */
    b[4 + 9] = 0x23;
    b[4 + 1] = 0x80;
    b[4 + 5] = 0x40;
    b[16 + 0] = 0x37;  /* e0 = 2*7 - 1 = 13; e32 (high nibble, sub-block 1, scale 0) = 0 */
    b[16 + 67] = 0xA0; /* e163 = 64*2+32+3: q = 10 -> 350 - 4.5 = 345.5 */
    float e[256] = {0};
    fill(e, 0, 32, -1.0f);
    e[0] = 13.0f;
    fill(e, 160, 192, -4.5f);
    e[163] = 345.5f;
    check_block(GGML_TYPE_Q4_K, b, e);
}

static void test_layout_q5_K(void **state)
{
    (void)state;
    /* 0-1 d, 2-3 dmin, 4-15 scales, 16-47 qh (element 32s+l has its fifth bit in qh[l] bit
     * s), 48-175 qs (as Q4_K). d = 0.5, dmin = 1. */
    uint8_t b[176] = {0};
    put16(b, 0, H_0_5);
    put16(b, 2, H_1);
    b[4 + 0] = 1; /* sub-block 0: scale 1, min 0: 0.5q */
    /* sub-block 7: scale 63, min 1: byte 11 = 0xF | 1<<4, scale top bits 3 in byte 3 */
    b[4 + 11] = 0x1F;
    b[4 + 3] = 0xC0;
    b[16 + 5] = 0x01;   /* e5 fifth bit */
    b[48 + 5] = 0x03;   /* e5 = (3|16)*0.5 = 9.5 */
    b[16 + 0] = 0x80;   /* e224 fifth bit: q = 16 -> 31.5*16 - 1 = 503 */
    b[16 + 31] = 0x80;  /* e255 fifth bit */
    b[48 + 127] = 0xF0; /* e255 = 192+32+31 high nibble 15: q = 31 -> 976.5 - 1 = 975.5 */
    float e[256] = {0};
    e[5] = 9.5f;
    fill(e, 224, 256, -1.0f);
    e[224] = 503.0f;
    e[255] = 975.5f;
    check_block(GGML_TYPE_Q5_K, b, e);
}

static void test_layout_q6_K(void **state)
{
    (void)state;
    /* 0-127 ql, 128-191 qh, 192-207 int8 scales, 208-209 d. Element 128h+32k+l: low 4 bits
     * nibble k/2 of ql[64h+32(k%2)+l], high 2 bits bits 2k..2k+1 of qh[32h+l]; value
     * d*scale*(q-32). d = 0.5. */
    uint8_t b[210] = {0};
    put16(b, 208, H_0_5);
    memset(b + 128, 0xAA, 64); /* high bits 2, low 0: q = 32, value 0 */
    b[192 + 0] = 3;
    b[192 + 13] = 0xFE; /* -2 */
    b[0] = 0x0F;        /* e0 low 15 */
    b[128 + 0] = 0xAB;  /* e0 high 3: q = 63 -> 0.5*3*31 = 46.5 */
    b[128 + 1] = 0xA8;  /* e1 high 0, low 0: q = 0 -> 0.5*3*-32 = -48 */
    b[82] = 0x50;       /* e210 = 128+64+18: high nibble of ql[64+18] = 5 */
    b[128 + 50] = 0x9A; /* qh[32+18] bits 4-5 = 1: q = 21 -> 0.5*-2*-11 = 11 */
    float e[256] = {[0] = 46.5f, [1] = -48.0f, [210] = 11.0f};
    check_block(GGML_TYPE_Q6_K, b, e);
}

static void test_layout_q8_K(void **state)
{
    (void)state;
    /* 0-3 float d, 4-259 int8 qs, 260-291 int16 bsums */
    uint8_t b[292] = {0};
    float d = 0.25f;
    memcpy(b, &d, 4);
    b[4 + 7] = (uint8_t)-100; /* -25 */
    b[4 + 255] = 127;         /* 31.75 */
    float e[256] = {[7] = -25.0f, [255] = 31.75f};
    check_block(GGML_TYPE_Q8_K, b, e);
}

static void test_layout_floats(void **state)
{
    (void)state;
    uint8_t h[4] = {0x00, 0x3C, 0x00, 0xC0}; /* F16 1.0, -2.0 */
    float out[2];
    quant_traits_of(GGML_TYPE_F16)->to_float(h, out, 2);
    assert_true(out[0] == 1.0f && out[1] == -2.0f);
    uint8_t bf[4] = {0x80, 0x3F, 0x40, 0xC0}; /* BF16 1.0, -3.0 */
    quant_traits_of(GGML_TYPE_BF16)->to_float(bf, out, 2);
    assert_true(out[0] == 1.0f && out[1] == -3.0f);
}

/* ---- the table --------------------------------------------------------------------------- */

static const ggml_type block_types[] = {
    GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q8_1,
    GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_K,
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(block_types); i++) {
        const quant_traits *t = quant_traits_of(block_types[i]);
        assert_non_null(t);
        assert_true(t->supported);
        assert_non_null(t->to_float);
        assert_non_null(t->from_float);
        assert_non_null(t->from_float_ref);
        assert_non_null(t->vec_dot);
        assert_non_null(t->vec_dot_ref);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        assert_non_null(v);
        assert_true(v->supported);
    }
    assert_int_equal(quant_traits_of(GGML_TYPE_Q4_0)->vec_dot_type, GGML_TYPE_Q8_0);
    assert_int_equal(quant_traits_of(GGML_TYPE_Q4_1)->vec_dot_type, GGML_TYPE_Q8_1);
    assert_int_equal(quant_traits_of(GGML_TYPE_Q5_1)->vec_dot_type, GGML_TYPE_Q8_1);
    assert_int_equal(quant_traits_of(GGML_TYPE_Q6_K)->vec_dot_type, GGML_TYPE_Q8_K);
    assert_null(quant_traits_of((ggml_type)4));
    assert_null(quant_traits_of((ggml_type)200));
    assert_false(quant_traits_of(GGML_TYPE_IQ2_XXS)->supported);
    uint64_t bytes;
    assert_true(quant_row_size(GGML_TYPE_Q4_K, 4096, &bytes));
    assert_int_equal(bytes, 16 * 144);
    assert_false(quant_row_size(GGML_TYPE_Q4_K, 4000, &bytes));

    /* the chosen kernel set follows the CPU */
    const llmos_cpu *cpu = llmos_cpu_features();
    const char *isa = quant_isa_name();
    bool avx2 = cpu->avx2 && cpu->fma && cpu->f16c;
    bool vnni = avx2 && cpu->avx512f && cpu->avx512bw && cpu->avx512vl && cpu->avx512vnni;
    const char *env = getenv("LLMOS_QUANT_ISA");
    if (!env) {
        assert_string_equal(isa, vnni ? "avx512" : avx2 ? "avx2" : "scalar");
#if defined(__x86_64__)
        if (vnni)
            assert_ptr_equal(quant_traits_of(GGML_TYPE_Q4_K)->vec_dot, quant_q4_K_vec_dot_avx512);
        else if (avx2)
            assert_ptr_equal(quant_traits_of(GGML_TYPE_Q4_K)->vec_dot, quant_q4_K_vec_dot_avx2);
#endif
    }
}

/* The word-at-a-time scale decoders of the SIMD kernels agree with the per-scale ones. */
static void test_scale_unpacking(void **state)
{
    (void)state;
    for (int rep = 0; rep < 2000; rep++) {
        uint8_t q[12];
        for (int i = 0; i < 12; i++)
            q[i] = (uint8_t)rnd32();
        uint8_t sc[8], m[8];
        quant_k4_scales_all(q, sc, m);
        for (int j = 0; j < 8; j++) {
            uint8_t s1, m1;
            quant_k4_scale_min(j, q, &s1, &m1);
            assert_int_equal(sc[j], s1);
            assert_int_equal(m[j], m1);
        }
        int8_t s3[16];
        quant_q3k_scales_all(q, s3);
        for (int j = 0; j < 16; j++)
            assert_int_equal(s3[j], quant_q3k_scale(j, q) - 32);
    }
}

/* ---- 2. quantizers ----------------------------------------------------------------------- */

/* Relative RMS error bounds of quantize -> dequantize on N(0,1) data, a little above what
 * the formats reach (bits per weight in brackets): they fail if a quantizer loses a bit or a
 * scale. */
static const struct {
    ggml_type type;
    double max_rel_rmse;
} rmse_bounds[] = {
    {GGML_TYPE_Q4_0, 0.12},  /* 4.5 */
    {GGML_TYPE_Q4_1, 0.10},  /* 5.0 */
    {GGML_TYPE_Q5_0, 0.06},  /* 5.5 */
    {GGML_TYPE_Q5_1, 0.05},  /* 6.0 */
    {GGML_TYPE_Q8_0, 0.008}, /* 8.5 */
    {GGML_TYPE_Q8_1, 0.008}, /* 9.0 */
    {GGML_TYPE_Q2_K, 0.40},  /* 2.625 */
    {GGML_TYPE_Q3_K, 0.20},  /* 3.4375 */
    {GGML_TYPE_Q4_K, 0.10},  /* 4.5 */
    {GGML_TYPE_Q5_K, 0.05},  /* 5.5 */
    {GGML_TYPE_Q6_K, 0.025}, /* 6.5625 */
    {GGML_TYPE_Q8_K, 0.008}, /* 9.125 */
};

static double rel_rmse(ggml_type type, const float *x, size_t n, bool print)
{
    const quant_traits *t = quant_traits_of(type);
    size_t bytes = n / t->block_size * t->type_size;
    uint8_t *q = malloc(bytes);
    float *y = malloc(n * sizeof *y);
    assert_non_null(q);
    assert_non_null(y);
    t->from_float_ref(x, q, n);
    t->to_float(q, y, n);
    double err = 0, ref = 0;
    for (size_t i = 0; i < n; i++) {
        err += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        ref += (double)x[i] * x[i];
    }
    free(q);
    free(y);
    double r = sqrt(err / ref);
    if (print)
        printf("# %-5s relative rmse %.5f\n", t->name, r);
    return r;
}

static void test_quantize_error(void **state)
{
    (void)state;
    size_t n = 8192;
    float *x = malloc(n * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = rnd_gauss();
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(rmse_bounds); k++) {
        double r = rel_rmse(rmse_bounds[k].type, x, n, true);
        if (!(r <= rmse_bounds[k].max_rel_rmse))
            fail_msg("%s: relative rmse %.4f above %.4f", quant_type_name(rmse_bounds[k].type), r,
                     rmse_bounds[k].max_rel_rmse);
    }
    free(x);
}

/* Per element, the max-abs formats stay within half a step of the input. */
static void test_quantize_half_step(void **state)
{
    (void)state;
    float x[256], y[256];
    uint8_t q[292];
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < 256; i++)
            x[i] = rnd_gauss() * (float)(rep + 1);
        quant_q8_K_from_float_ref(x, q, 256);
        quant_q8_K_to_float(q, y, 256);
        float d = fabsf(((block_q8_K *)(void *)q)->d);
        for (int i = 0; i < 256; i++)
            assert_true(fabsf(x[i] - y[i]) <= 0.5f * d * 1.0001f);
        quant_q8_0_from_float_ref(x, q, 32);
        quant_q8_0_to_float(q, y, 32);
        /* d is stored as fp16: the levels move by up to 2^-11 relative, 127 levels away */
        d = quant_fp16_to_fp32(((block_q8_0 *)(void *)q)->d);
        for (int i = 0; i < 32; i++)
            assert_true(fabsf(x[i] - y[i]) <= 0.5f * d + 127 * d / 2048);
    }
    /* all-zero input quantizes to zeros (no division by zero) */
    memset(x, 0, sizeof x);
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(block_types); k++) {
        const quant_traits *t = quant_traits_of(block_types[k]);
        t->from_float_ref(x, q, t->block_size);
        t->to_float(q, y, t->block_size);
        for (size_t i = 0; i < t->block_size; i++)
            if (y[i] != 0)
                fail_msg("%s: zero input dequantizes to %g at %zu", t->name, (double)y[i], i);
    }
}

static bool can_run_avx2(void)
{
    const llmos_cpu *c = llmos_cpu_features();
    return c->avx2 && c->fma && c->f16c;
}

static void test_simd_quantizers_bit_exact(void **state)
{
    (void)state;
#if defined(__x86_64__)
    const llmos_cpu *cpu = llmos_cpu_features();
    if (!(cpu->avx2 && cpu->fma && cpu->f16c))
        skip();
    size_t n = 4096;
    float *x = malloc(n * sizeof *x);
    uint8_t *a = malloc(n / 256 * 292 + n / 32 * 34), *b = malloc(n / 256 * 292 + n / 32 * 34);
    assert_true(x && a && b);
    for (int rep = 0; rep < 20; rep++) {
        for (size_t i = 0; i < n; i++)
            x[i] = rnd_gauss() * (rep % 3 ? 1.0f : 1e-3f);
        if (rep == 1)
            memset(x + 256, 0, 256 * sizeof *x); /* zero blocks */
        if (rep == 2)
            for (size_t i = 0; i < n; i++) /* ties: values on half steps */
                x[i] = (float)((int)(rnd32() % 255) - 127) * 0.5f;
        if (rep == 3)
            for (size_t i = 0; i < n; i++) /* equal magnitudes of both signs */
                x[i] = (rnd32() & 1) ? 2.0f : -2.0f;
        memset(a, 0xAB, n / 32 * 34);
        memset(b, 0xCD, n / 32 * 34);
        quant_q8_0_from_float_ref(x, a, n);
        quant_q8_0_from_float_avx2(x, b, n);
        assert_memory_equal(a, b, n / 32 * 34);
        memset(a, 0xAB, n / 256 * 292);
        memset(b, 0xCD, n / 256 * 292);
        quant_q8_K_from_float_ref(x, a, n);
        quant_q8_K_from_float_avx2(x, b, n);
        assert_memory_equal(a, b, n / 256 * 292);
    }
    /* the table's activation quantizers are these */
    assert_ptr_equal(quant_traits_of(GGML_TYPE_Q8_K)->from_float_ref, quant_q8_K_from_float_ref);
    free(x);
    free(a);
    free(b);
#else
    skip();
#endif
}

/* Extreme activations (huge, tiny, infinite, NaN) quantize without crashing; finite ones give
 * the same bytes from the SIMD and the reference quantizers. */
static void test_quantize_extremes(void **state)
{
    (void)state;
    float x[512];
    uint8_t a[2 * 292], b[2 * 292];
    for (int i = 0; i < 512; i++)
        x[i] = (i % 3 ? 1e30f : -3e-40f) * (i % 2 ? 1 : -1);
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(block_types); k++) {
        const quant_traits *t = quant_traits_of(block_types[k]);
        t->from_float_ref(x, a, 256);
        float y[256];
        t->to_float(a, y, 256);
    }
#if defined(__x86_64__)
    if (can_run_avx2()) {
        quant_q8_0_from_float_ref(x, a, 512);
        quant_q8_0_from_float_avx2(x, b, 512);
        assert_memory_equal(a, b, 512 / 32 * 34);
        quant_q8_K_from_float_ref(x, a, 512);
        quant_q8_K_from_float_avx2(x, b, 512);
        assert_memory_equal(a, b, 2 * 292);
    }
#endif
    x[5] = INFINITY;
    x[300] = NAN;
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(block_types); k++) {
        const quant_traits *t = quant_traits_of(block_types[k]);
        t->from_float_ref(x, a, 256);
        t->from_float(x + 256, b, 256);
    }
}

/* ---- 3. dot products --------------------------------------------------------------------- */

/* Random weight blocks: random bytes (every bit pattern of the quants and packed scales)
 * with the float scales replaced by sane values (random bytes there would be Inf/NaN). */
static void random_weights(ggml_type type, void *dst, size_t n)
{
    const quant_traits *t = quant_traits_of(type);
    size_t nb = n / t->block_size;
    uint8_t *p = dst;
    for (size_t i = 0; i < nb * t->type_size; i++)
        p[i] = (uint8_t)rnd32();
    for (size_t i = 0; i < nb; i++) {
        uint16_t d = quant_fp32_to_fp16(0.001f + rnd_uniform() * 0.01f);
        uint16_t m = quant_fp32_to_fp16((rnd_uniform() - 0.5f) * 0.02f);
        switch (type) {
        case GGML_TYPE_Q4_0: ((block_q4_0 *)dst)[i].d = d; break;
        case GGML_TYPE_Q4_1:
            ((block_q4_1 *)dst)[i].d = d;
            ((block_q4_1 *)dst)[i].m = m;
            break;
        case GGML_TYPE_Q5_0: ((block_q5_0 *)dst)[i].d = d; break;
        case GGML_TYPE_Q5_1:
            ((block_q5_1 *)dst)[i].d = d;
            ((block_q5_1 *)dst)[i].m = m;
            break;
        case GGML_TYPE_Q8_0: ((block_q8_0 *)dst)[i].d = d; break;
        case GGML_TYPE_Q2_K:
            ((block_q2_K *)dst)[i].d = d;
            ((block_q2_K *)dst)[i].dmin = d;
            break;
        case GGML_TYPE_Q3_K: ((block_q3_K *)dst)[i].d = d; break;
        case GGML_TYPE_Q4_K:
            ((block_q4_K *)dst)[i].d = d;
            ((block_q4_K *)dst)[i].dmin = d;
            break;
        case GGML_TYPE_Q5_K:
            ((block_q5_K *)dst)[i].d = d;
            ((block_q5_K *)dst)[i].dmin = d;
            break;
        case GGML_TYPE_Q6_K: ((block_q6_K *)dst)[i].d = d; break;
        default: fail_msg("random_weights: no case for %s", t->name);
        }
    }
}

typedef struct dot_case {
    ggml_type type;
    quant_vec_dot_fn fn;
    const char *name;
    int need; /* 0 ref, 1 avx2, 2 avx512 vnni, 3 avx512f, 4 avx512 bf16 */
} dot_case;

static bool can_run(int need)
{
    const llmos_cpu *c = llmos_cpu_features();
    bool avx2 = c->avx2 && c->fma && c->f16c;
    switch (need) {
    case 0: return true;
    case 1: return avx2;
    case 2: return avx2 && c->avx512f && c->avx512bw && c->avx512vl && c->avx512vnni;
    case 3: return avx2 && c->avx512f;
    case 4: return avx2 && c->avx512f && c->avx512bw && c->avx512bf16;
    default: return false;
    }
}

#if defined(__x86_64__)
#define DC(t, f, need)                                                                             \
    {                                                                                              \
        GGML_TYPE_##t, f, #f, need                                                                 \
    }
static const dot_case dot_cases[] = {
    DC(Q4_0, quant_q4_0_vec_dot_avx2, 1),   DC(Q4_1, quant_q4_1_vec_dot_avx2, 1),
    DC(Q5_0, quant_q5_0_vec_dot_avx2, 1),   DC(Q5_1, quant_q5_1_vec_dot_avx2, 1),
    DC(Q8_0, quant_q8_0_vec_dot_avx2, 1),   DC(Q2_K, quant_q2_K_vec_dot_avx2, 1),
    DC(Q3_K, quant_q3_K_vec_dot_avx2, 1),   DC(Q4_K, quant_q4_K_vec_dot_avx2, 1),
    DC(Q5_K, quant_q5_K_vec_dot_avx2, 1),   DC(Q6_K, quant_q6_K_vec_dot_avx2, 1),
    DC(F16, quant_f16_vec_dot_avx2, 1),     DC(BF16, quant_bf16_vec_dot_avx2, 1),
    DC(F32, quant_f32_vec_dot_avx2, 1),     DC(Q4_0, quant_q4_0_vec_dot_avx512, 2),
    DC(Q8_0, quant_q8_0_vec_dot_avx512, 2), DC(Q4_K, quant_q4_K_vec_dot_avx512, 2),
    DC(Q6_K, quant_q6_K_vec_dot_avx512, 2), DC(F16, quant_f16_vec_dot_avx512, 3),
    DC(BF16, quant_bf16_vec_dot_avx512, 4),
};
#endif

/* Fill x (weights) and y (activations in vec_dot_type) for n elements; return
 * sum |x_i y_i| of the dequantized values (the scale of the tolerance). */
static double make_pair(ggml_type type, size_t n, void *x, void *y, bool realistic)
{
    const quant_traits *t = quant_traits_of(type);
    const quant_traits *v = quant_traits_of(t->vec_dot_type);
    float *f = malloc(n * sizeof *f), *g = malloc(n * sizeof *g);
    assert_true(f && g);
    for (size_t i = 0; i < n; i++)
        f[i] = rnd_gauss();
    if (realistic || t->block_size == 1)
        t->from_float_ref(f, x, n);
    else
        random_weights(type, x, n);
    for (size_t i = 0; i < n; i++)
        f[i] = rnd_gauss();
    v->from_float_ref(f, y, n);
    t->to_float(x, f, n);
    v->to_float(y, g, n);
    double mag = 0;
    for (size_t i = 0; i < n; i++)
        mag += fabs((double)f[i] * g[i]);
    free(f);
    free(g);
    return mag;
}

/* sum |x_i y_i| of the dequantized vectors, the scale of the tolerances. */
static double abs_dot(ggml_type type, size_t n, const void *x, const void *y)
{
    const quant_traits *t = quant_traits_of(type);
    const quant_traits *v = quant_traits_of(t->vec_dot_type);
    float *f = malloc(n * sizeof *f), *g = malloc(n * sizeof *g);
    assert_true(f && g);
    t->to_float(x, f, n);
    v->to_float(y, g, n);
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += fabs((double)f[i] * g[i]);
    free(f);
    free(g);
    return s;
}

static double dequant_dot(ggml_type type, size_t n, const void *x, const void *y)
{
    const quant_traits *t = quant_traits_of(type);
    const quant_traits *v = quant_traits_of(t->vec_dot_type);
    float *f = malloc(n * sizeof *f), *g = malloc(n * sizeof *g);
    assert_true(f && g);
    t->to_float(x, f, n);
    v->to_float(y, g, n);
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)f[i] * g[i];
    free(f);
    free(g);
    return s;
}

static const size_t block_counts[] = {1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 64, 129};

/* The reference dot is the dot of the dequantized vectors. Q4_1/Q5_1 use the activation's
 * stored s = d*sum(q) in fp16, which carries a relative error up to 2^-11: 1e-3. */
static void test_ref_dot_matches_dequantized(void **state)
{
    (void)state;
    static const ggml_type types[] = {
        GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
        GGML_TYPE_Q8_1, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K,
        GGML_TYPE_Q6_K, GGML_TYPE_Q8_K, GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_F32};
    void *x = malloc(64 * 292), *y = malloc(64 * 292);
    assert_true(x && y);
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(types); k++) {
        const quant_traits *t = quant_traits_of(types[k]);
        size_t n = t->block_size == 1 ? 1000 : 16 * t->block_size;
        for (int real = 0; real < 2; real++) {
            bool realistic = real || types[k] == GGML_TYPE_Q8_1 || types[k] == GGML_TYPE_Q8_K;
            double mag = make_pair(types[k], n, x, y, realistic);
            float got;
            t->vec_dot_ref(n, &got, x, y);
            double want = dequant_dot(types[k], n, x, y);
            double tol =
                (types[k] == GGML_TYPE_Q4_1 || types[k] == GGML_TYPE_Q5_1 ? 1e-3 : 1e-5) * mag;
            if (!(fabs(got - want) <= tol))
                fail_msg("%s: vec_dot_ref %.9g, dequantized dot %.9g (tolerance %.3g)", t->name,
                         (double)got, want, tol);
        }
    }
    free(x);
    free(y);
}

static void test_simd_dots_match_reference(void **state)
{
    (void)state;
#if defined(__x86_64__)
    int ran = 0;
    void *x = malloc(129 * 256 * 2 + 64), *y = malloc(129 * 292 + 64);
    assert_true(x && y);
    for (size_t c = 0; c < LLMOS_ARRAY_LEN(dot_cases); c++) {
        const dot_case *dc = &dot_cases[c];
        if (!can_run(dc->need))
            continue;
        const quant_traits *t = quant_traits_of(dc->type);
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(block_counts); k++) {
            for (int real = 0; real < 2; real++) {
                size_t n = block_counts[k] * (t->block_size == 1 ? 32 : t->block_size);
                if (t->block_size == 1)
                    n += (size_t)(rnd32() % 32); /* float types: any length */
                double mag = make_pair(dc->type, n, x, y, real);
                float want, got;
                t->vec_dot_ref(n, &want, x, y);
                dc->fn(n, &got, x, y);
                double tol = 1e-5 * mag;
                if (!(fabs((double)got - want) <= tol))
                    fail_msg("%s n=%zu: %.9g, reference %.9g (tolerance %.3g)", dc->name, n,
                             (double)got, (double)want, tol);
                ran++;
            }
        }
    }
    printf("# %d SIMD dot comparisons\n", ran);
    free(x);
    free(y);
    if (ran == 0)
        skip();
#else
    skip();
#endif
}

/* The kernels the table hands out agree with the reference too (whatever the CPU). */
static void test_table_dots_match_reference(void **state)
{
    (void)state;
    void *x = malloc(40 * 292), *y = malloc(40 * 292);
    assert_true(x && y);
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(block_types); k++) {
        const quant_traits *t = quant_traits_of(block_types[k]);
        size_t n = 40 * t->block_size / (t->block_size == 256 ? 8 : 1);
        double mag = make_pair(block_types[k], n, x, y, true);
        float want, got;
        t->vec_dot_ref(n, &want, x, y);
        t->vec_dot(n, &got, x, y);
        assert_true(fabs((double)got - want) <= 1e-5 * mag);
    }
    free(x);
    free(y);
}

/* Every four-token kernel this CPU can run against four reference dots. */
static void test_dot4_kernels(void **state)
{
    (void)state;
#if defined(__x86_64__)
    static const struct {
        ggml_type type;
        quant_vec_dot4_fn fn;
        const char *name;
        int need;
    } cases[] = {
        {GGML_TYPE_Q8_0, quant_q8_0_vec_dot4_avx2, "quant_q8_0_vec_dot4_avx2", 1},
        {GGML_TYPE_Q4_0, quant_q4_0_vec_dot4_avx2, "quant_q4_0_vec_dot4_avx2", 1},
        {GGML_TYPE_Q4_K, quant_q4_K_vec_dot4_avx2, "quant_q4_K_vec_dot4_avx2", 1},
        {GGML_TYPE_Q5_K, quant_q5_K_vec_dot4_avx2, "quant_q5_K_vec_dot4_avx2", 1},
        {GGML_TYPE_Q6_K, quant_q6_K_vec_dot4_avx2, "quant_q6_K_vec_dot4_avx2", 1},
        {GGML_TYPE_Q8_0, quant_q8_0_vec_dot4_avx512, "quant_q8_0_vec_dot4_avx512", 2},
        {GGML_TYPE_Q4_0, quant_q4_0_vec_dot4_avx512, "quant_q4_0_vec_dot4_avx512", 2},
        {GGML_TYPE_Q4_K, quant_q4_K_vec_dot4_avx512, "quant_q4_K_vec_dot4_avx512", 2},
        {GGML_TYPE_Q6_K, quant_q6_K_vec_dot4_avx512, "quant_q6_K_vec_dot4_avx512", 2},
    };
    int ran = 0;
    for (size_t c = 0; c < LLMOS_ARRAY_LEN(cases); c++) {
        if (!can_run(cases[c].need))
            continue;
        const quant_traits *t = quant_traits_of(cases[c].type);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        for (size_t nb = 1; nb <= 9; nb++) {
            size_t n = nb * t->block_size;
            size_t y_stride = nb * v->type_size + 8; /* rows not packed */
            uint8_t *x = malloc(nb * t->type_size), *y = malloc(4 * y_stride);
            assert_true(x && y);
            double mag[4];
            mag[0] = make_pair(cases[c].type, n, x, y, nb % 2 == 0);
            float *f = malloc(n * sizeof *f);
            assert_non_null(f);
            for (int r = 1; r < 4; r++) {
                for (size_t i = 0; i < n; i++)
                    f[i] = rnd_gauss();
                v->from_float_ref(f, y + r * y_stride, n);
                mag[r] = abs_dot(cases[c].type, n, x, y + r * y_stride);
            }
            free(f);
            float got[4];
            cases[c].fn(n, got, x, y, y_stride);
            for (int r = 0; r < 4; r++) {
                float want;
                t->vec_dot_ref(n, &want, x, y + r * y_stride);
                double tol = 1e-5 * mag[r];
                if (!(fabs((double)got[r] - want) <= tol))
                    fail_msg("%s n=%zu row %d: %.9g, reference %.9g", cases[c].name, n, r,
                             (double)got[r], (double)want);
            }
            free(x);
            free(y);
            ran++;
        }
    }
    if (ran == 0)
        skip();
#else
    skip();
#endif
}

/* ---- 4. quant_gemm ----------------------------------------------------------------------- */

static void test_gemm_matches_vec_dot(void **state)
{
    (void)state;
    static const ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                      GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q4_1,
                                      GGML_TYPE_F16};
    const size_t k = 512, rows = 37, pad = 16;
    for (size_t ti = 0; ti < LLMOS_ARRAY_LEN(types); ti++) {
        const quant_traits *t = quant_traits_of(types[ti]);
        const quant_traits *v = quant_traits_of(t->vec_dot_type);
        size_t w_stride = k / t->block_size * t->type_size + pad;
        size_t a_stride = k / v->block_size * v->type_size + pad;
        static const size_t tok_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 37, 70};
        for (size_t nt = 0; nt < LLMOS_ARRAY_LEN(tok_counts); nt++) {
            size_t n_tok = tok_counts[nt]; /* 37, 70: several tiles of 32 tokens */
            uint8_t *w = calloc(rows, w_stride), *act = calloc(n_tok, a_stride);
            size_t out_stride = rows + 3;
            float *out = malloc(n_tok * out_stride * sizeof *out);
            float *f = malloc(k * sizeof *f);
            assert_true(w && act && out && f);
            for (size_t r = 0; r < rows; r++) {
                for (size_t i = 0; i < k; i++)
                    f[i] = rnd_gauss();
                t->from_float_ref(f, w + r * w_stride, k);
            }
            for (size_t s = 0; s < n_tok; s++) {
                for (size_t i = 0; i < k; i++)
                    f[i] = rnd_gauss();
                v->from_float(f, act + s * a_stride, k);
            }
            for (size_t i = 0; i < n_tok * out_stride; i++)
                out[i] = -12345.0f;
            assert_int_equal(
                quant_gemm(types[ti], k, rows, w, w_stride, n_tok, act, a_stride, out, out_stride),
                LLMOS_OK);
            for (size_t s = 0; s < n_tok; s++) {
                for (size_t r = 0; r < rows; r++) {
                    float want;
                    t->vec_dot(k, &want, w + r * w_stride, act + s * a_stride);
                    float got = out[s * out_stride + r];
                    /* |dot| of N(0,1) vectors of 512 is ~ 22; their sum |x y| ~ 330 */
                    if (!(fabsf(got - want) <= 1e-5f * 512))
                        fail_msg("%s gemm tok %zu row %zu: %.9g, vec_dot %.9g", t->name, s, r,
                                 (double)got, (double)want);
                }
                for (size_t r = rows; r < out_stride; r++) /* padding untouched */
                    assert_true(out[s * out_stride + r] == -12345.0f);
            }
            free(w);
            free(act);
            free(out);
            free(f);
        }
    }
}

static void test_gemm_errors(void **state)
{
    (void)state;
    uint8_t w[144] = {0}, a[292] = {0};
    float out[4];
    llmos_err_clear();
    assert_int_equal(quant_gemm(GGML_TYPE_IQ2_XXS, 256, 1, w, 66, 1, a, 292, out, 1),
                     LLMOS_ERR_UNSUPPORTED);
    assert_non_null(strstr(llmos_errmsg(), "IQ2_XXS"));
    assert_int_equal(quant_gemm(GGML_TYPE_Q4_K, 100, 1, w, 144, 1, a, 292, out, 1),
                     LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "block size 256"));
    assert_int_equal(quant_gemm(GGML_TYPE_Q4_K, 256, 2, w, 0, 2, a, 0, out, 1), LLMOS_ERR_INVALID);
    assert_int_equal(quant_gemm((ggml_type)77, 256, 1, w, 0, 1, a, 0, out, 1),
                     LLMOS_ERR_UNSUPPORTED);
    /* nothing to do is fine */
    assert_int_equal(quant_gemm(GGML_TYPE_Q4_K, 256, 0, w, 144, 1, a, 292, out, 1), LLMOS_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_q4_0),
        cmocka_unit_test(test_layout_q4_1),
        cmocka_unit_test(test_layout_q5_0),
        cmocka_unit_test(test_layout_q5_1),
        cmocka_unit_test(test_layout_q8_0),
        cmocka_unit_test(test_layout_q8_1),
        cmocka_unit_test(test_layout_q2_K),
        cmocka_unit_test(test_layout_q3_K),
        cmocka_unit_test(test_layout_q4_K),
        cmocka_unit_test(test_layout_q5_K),
        cmocka_unit_test(test_layout_q6_K),
        cmocka_unit_test(test_layout_q8_K),
        cmocka_unit_test(test_layout_floats),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_scale_unpacking),
        cmocka_unit_test(test_quantize_error),
        cmocka_unit_test(test_quantize_half_step),
        cmocka_unit_test(test_simd_quantizers_bit_exact),
        cmocka_unit_test(test_quantize_extremes),
        cmocka_unit_test(test_ref_dot_matches_dequantized),
        cmocka_unit_test(test_simd_dots_match_reference),
        cmocka_unit_test(test_table_dots_match_reference),
        cmocka_unit_test(test_dot4_kernels),
        cmocka_unit_test(test_gemm_matches_vec_dot),
        cmocka_unit_test(test_gemm_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
