/*
 * quant.c - the table of tensor types and the float formats (F32, F16, BF16).
 *
 * Block geometry for every GGUF type is listed here (from ggml's type_traits: elements per
 * block and bytes per block), so that files holding any type can be sized and validated even
 * where llmos has no kernel for it. The quantized block formats and their kernels live in
 * quant_*.c and register through quant_traits_of().
 */
#include <math.h>
#include <string.h>

#include "llmos/quant.h"

/* ---- half precision ---------------------------------------------------------------------- */

float fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000 | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xFF;
    uint32_t man = x & 0x7FFFFF;
    if (exp == 0xFF) /* inf or NaN (keep NaN quiet and non-zero) */
        return (uint16_t)(sign | 0x7C00 | (man ? 0x200 | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7C00);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1)))
        half++; /* may carry into the exponent, which is the correct rounding */
    return (uint16_t)half;
}

float bf16_to_fp32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7FFFFFFF) > 0x7F800000) /* NaN: keep it a NaN */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- float kernels (scalar references) --------------------------------------------------- */

static void f32_to_float(const void *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

static void f32_from_float(const float *src, void *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

static void f32_vec_dot(size_t n, float *s, const void *x, const void *y)
{
    const float *a = x, *b = y;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * b[i];
    *s = (float)sum;
}

static void f16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = fp16_to_fp32(h[i]);
}

static void f16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++)
        h[i] = fp32_to_fp16(src[i]);
}

static void f16_vec_dot(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)fp16_to_fp32(a[i]) * fp16_to_fp32(b[i]);
    *s = (float)sum;
}

static void bf16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = bf16_to_fp32(h[i]);
}

static void bf16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++)
        h[i] = fp32_to_bf16(src[i]);
}

static void bf16_vec_dot(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)bf16_to_fp32(a[i]) * bf16_to_fp32(b[i]);
    *s = (float)sum;
}

/* ---- the table --------------------------------------------------------------------------- */

#define GEOM(t, nm, bs, ts) [t] = {.name = nm, .block_size = bs, .type_size = ts}

static quant_traits traits[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"F32", 1, 4, true, GGML_TYPE_F32, f32_to_float, f32_from_float,
                       f32_vec_dot, f32_vec_dot},
    [GGML_TYPE_F16] = {"F16", 1, 2, true, GGML_TYPE_F16, f16_to_float, f16_from_float,
                       f16_vec_dot, f16_vec_dot},
    [GGML_TYPE_BF16] = {"BF16", 1, 2, true, GGML_TYPE_BF16, bf16_to_float, bf16_from_float,
                        bf16_vec_dot, bf16_vec_dot},
    GEOM(GGML_TYPE_Q4_0, "Q4_0", 32, 18),
    GEOM(GGML_TYPE_Q4_1, "Q4_1", 32, 20),
    GEOM(GGML_TYPE_Q5_0, "Q5_0", 32, 22),
    GEOM(GGML_TYPE_Q5_1, "Q5_1", 32, 24),
    GEOM(GGML_TYPE_Q8_0, "Q8_0", 32, 34),
    GEOM(GGML_TYPE_Q8_1, "Q8_1", 32, 36),
    GEOM(GGML_TYPE_Q2_K, "Q2_K", 256, 84),
    GEOM(GGML_TYPE_Q3_K, "Q3_K", 256, 110),
    GEOM(GGML_TYPE_Q4_K, "Q4_K", 256, 144),
    GEOM(GGML_TYPE_Q5_K, "Q5_K", 256, 176),
    GEOM(GGML_TYPE_Q6_K, "Q6_K", 256, 210),
    GEOM(GGML_TYPE_Q8_K, "Q8_K", 256, 292),
    GEOM(GGML_TYPE_IQ2_XXS, "IQ2_XXS", 256, 66),
    GEOM(GGML_TYPE_IQ2_XS, "IQ2_XS", 256, 74),
    GEOM(GGML_TYPE_IQ3_XXS, "IQ3_XXS", 256, 98),
    GEOM(GGML_TYPE_IQ1_S, "IQ1_S", 256, 50),
    GEOM(GGML_TYPE_IQ4_NL, "IQ4_NL", 32, 18),
    GEOM(GGML_TYPE_IQ3_S, "IQ3_S", 256, 110),
    GEOM(GGML_TYPE_IQ2_S, "IQ2_S", 256, 82),
    GEOM(GGML_TYPE_IQ4_XS, "IQ4_XS", 256, 136),
    GEOM(GGML_TYPE_I8, "I8", 1, 1),
    GEOM(GGML_TYPE_I16, "I16", 1, 2),
    GEOM(GGML_TYPE_I32, "I32", 1, 4),
    GEOM(GGML_TYPE_I64, "I64", 1, 8),
    GEOM(GGML_TYPE_F64, "F64", 1, 8),
    GEOM(GGML_TYPE_IQ1_M, "IQ1_M", 256, 56),
};

const quant_traits *quant_traits_of(ggml_type type)
{
    if ((unsigned)type >= GGML_TYPE_COUNT || !traits[type].name)
        return NULL;
    return &traits[type];
}

const char *ggml_type_name(ggml_type type)
{
    const quant_traits *t = quant_traits_of(type);
    return t ? t->name : "?";
}

bool ggml_row_size(ggml_type type, uint64_t n_elements, uint64_t *bytes)
{
    const quant_traits *t = quant_traits_of(type);
    if (!t || n_elements % t->block_size != 0)
        return false;
    uint64_t blocks = n_elements / t->block_size;
    if (blocks > UINT64_MAX / t->type_size)
        return false;
    *bytes = blocks * t->type_size;
    return true;
}
