/*
 * quant.c - the table of tensor types and the float formats (F32, F16, BF16).
 *
 * Block geometry for every GGUF type is listed here (from ggml's type_traits: elements per
 * block and bytes per block), so that files holding any type can be sized and validated even
 * where llmos has no kernel for it. The quantized block formats and their kernels live in
 * quant_ref.c (scalar references), quant_avx2.c and quant_avx512.c; quant_traits_of() picks
 * the best set for the CPU once (pthread_once) and quant_gemm() runs matrix tiles.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "llmos/quant.h"

/* ---- half precision ---------------------------------------------------------------------- */

float quant_fp16_to_fp32(uint16_t h)
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

uint16_t quant_fp32_to_fp16(float f)
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

float quant_bf16_to_fp32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t quant_fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7FFFFFFF) > 0x7F800000) /* NaN: keep it a NaN */
        return (uint16_t)((x >> 16) | 0x40);
    x += 0x7FFF + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- float kernels (scalar references) --------------------------------------------------- */

static void quant_f32_to_float(const void *src, float *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

static void quant_f32_from_float(const float *src, void *dst, size_t n)
{
    memcpy(dst, src, n * sizeof(float));
}

void quant_f32_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    const float *a = x, *b = y;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)a[i] * b[i];
    *s = (float)sum;
}

static void quant_f16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = quant_fp16_to_fp32(h[i]);
}

static void quant_f16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++)
        h[i] = quant_fp32_to_fp16(src[i]);
}

void quant_f16_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)quant_fp16_to_fp32(a[i]) * quant_fp16_to_fp32(b[i]);
    *s = (float)sum;
}

static void quant_bf16_to_float(const void *src, float *dst, size_t n)
{
    const uint16_t *h = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = quant_bf16_to_fp32(h[i]);
}

static void quant_bf16_from_float(const float *src, void *dst, size_t n)
{
    uint16_t *h = dst;
    for (size_t i = 0; i < n; i++)
        h[i] = quant_fp32_to_bf16(src[i]);
}

void quant_bf16_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    const uint16_t *a = x, *b = y;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)quant_bf16_to_fp32(a[i]) * quant_bf16_to_fp32(b[i]);
    *s = (float)sum;
}

/* ---- the table --------------------------------------------------------------------------- */

#define GEOM(t, nm, bs, ts) [t] = {.name = nm, .block_size = bs, .type_size = ts}
/* clang-format off */
#define FLOAT(t, nm, ts, p)                                                                        \
    [t] = {.name = nm, .block_size = 1, .type_size = ts, .supported = true, .vec_dot_type = t,  \
           .to_float = quant_##p##_to_float, .from_float = quant_##p##_from_float, .vec_dot = quant_##p##_vec_dot_ref,  \
           .vec_dot_ref = quant_##p##_vec_dot_ref, .from_float_ref = quant_##p##_from_float}
/* A block type with its reference kernels; quant_select() upgrades vec_dot/from_float. */
#define BLOCK(t, nm, bs, ts, p, dot_type)                                                          \
    [t] = {.name = nm, .block_size = bs, .type_size = ts, .supported = true,                     \
           .vec_dot_type = dot_type, .to_float = quant_##p##_to_float, .from_float = quant_##p##_from_float_ref, \
           .vec_dot = quant_##p##_vec_dot_ref, .vec_dot_ref = quant_##p##_vec_dot_ref,                           \
           .from_float_ref = quant_##p##_from_float_ref}
/* clang-format on */

/* Sizes from ggml's type_traits (ggml.c); the pairing of weight types with activation types
 * (vec_dot_type) is ggml's: Q4_1 and Q5_1 need Q8_1 for its precomputed d*sum term, the
 * K-quants need Q8_K for its 16-element sums. */
static quant_traits traits[GGML_TYPE_COUNT] = {
    FLOAT(GGML_TYPE_F32, "F32", 4, f32),
    FLOAT(GGML_TYPE_F16, "F16", 2, f16),
    FLOAT(GGML_TYPE_BF16, "BF16", 2, bf16),
    BLOCK(GGML_TYPE_Q4_0, "Q4_0", 32, 18, q4_0, GGML_TYPE_Q8_0),
    BLOCK(GGML_TYPE_Q4_1, "Q4_1", 32, 20, q4_1, GGML_TYPE_Q8_1),
    BLOCK(GGML_TYPE_Q5_0, "Q5_0", 32, 22, q5_0, GGML_TYPE_Q8_0),
    BLOCK(GGML_TYPE_Q5_1, "Q5_1", 32, 24, q5_1, GGML_TYPE_Q8_1),
    BLOCK(GGML_TYPE_Q8_0, "Q8_0", 32, 34, q8_0, GGML_TYPE_Q8_0),
    BLOCK(GGML_TYPE_Q8_1, "Q8_1", 32, 36, q8_1, GGML_TYPE_Q8_1),
    BLOCK(GGML_TYPE_Q2_K, "Q2_K", 256, 84, q2_K, GGML_TYPE_Q8_K),
    BLOCK(GGML_TYPE_Q3_K, "Q3_K", 256, 110, q3_K, GGML_TYPE_Q8_K),
    BLOCK(GGML_TYPE_Q4_K, "Q4_K", 256, 144, q4_K, GGML_TYPE_Q8_K),
    BLOCK(GGML_TYPE_Q5_K, "Q5_K", 256, 176, q5_K, GGML_TYPE_Q8_K),
    BLOCK(GGML_TYPE_Q6_K, "Q6_K", 256, 210, q6_K, GGML_TYPE_Q8_K),
    BLOCK(GGML_TYPE_Q8_K, "Q8_K", 256, 292, q8_K, GGML_TYPE_Q8_K),
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

/* Multi-token kernels for quant_gemm, where a type has one (else vec_dot per token). */
static quant_vec_dot4_fn dot4[GGML_TYPE_COUNT];

static pthread_once_t select_once = PTHREAD_ONCE_INIT;
static quant_isa selected_isa = QUANT_ISA_REF;

#if defined(__x86_64__)
/* Parse LLMOS_QUANT_ISA (ref|avx2|avx512): a cap on the kernel set, for benchmarks and for
 * ruling out a kernel when hunting a bug. Unset or unknown: no cap. */
static quant_isa isa_cap(void)
{
    const char *e = getenv("LLMOS_QUANT_ISA");
    if (!e)
        return QUANT_ISA_AVX512;
    if (strcmp(e, "ref") == 0)
        return QUANT_ISA_REF;
    if (strcmp(e, "avx2") == 0)
        return QUANT_ISA_AVX2;
    return QUANT_ISA_AVX512;
}

#endif

/* Choose the best kernels for this CPU, once. Each level needs every feature its functions'
 * target attributes name. */
static void quant_select(void)
{
#if defined(__x86_64__)
    const llmos_cpu *cpu = llmos_cpu_features();
    quant_isa cap = isa_cap();
    bool avx2 = cap >= QUANT_ISA_AVX2 && cpu->avx2 && cpu->fma && cpu->f16c;
    bool vnni = cap >= QUANT_ISA_AVX512 && avx2 && cpu->avx512f && cpu->avx512bw && cpu->avx512vl &&
                cpu->avx512vnni;
    if (avx2) {
        selected_isa = QUANT_ISA_AVX2;
        traits[GGML_TYPE_Q4_0].vec_dot = quant_q4_0_vec_dot_avx2;
        traits[GGML_TYPE_Q4_1].vec_dot = quant_q4_1_vec_dot_avx2;
        traits[GGML_TYPE_Q5_0].vec_dot = quant_q5_0_vec_dot_avx2;
        traits[GGML_TYPE_Q5_1].vec_dot = quant_q5_1_vec_dot_avx2;
        traits[GGML_TYPE_Q8_0].vec_dot = quant_q8_0_vec_dot_avx2;
        traits[GGML_TYPE_Q2_K].vec_dot = quant_q2_K_vec_dot_avx2;
        traits[GGML_TYPE_Q3_K].vec_dot = quant_q3_K_vec_dot_avx2;
        traits[GGML_TYPE_Q4_K].vec_dot = quant_q4_K_vec_dot_avx2;
        traits[GGML_TYPE_Q5_K].vec_dot = quant_q5_K_vec_dot_avx2;
        traits[GGML_TYPE_Q6_K].vec_dot = quant_q6_K_vec_dot_avx2;
        traits[GGML_TYPE_F32].vec_dot = quant_f32_vec_dot_avx2;
        traits[GGML_TYPE_F16].vec_dot = quant_f16_vec_dot_avx2;
        traits[GGML_TYPE_BF16].vec_dot = quant_bf16_vec_dot_avx2;
        traits[GGML_TYPE_Q8_0].from_float = quant_q8_0_from_float_avx2;
        traits[GGML_TYPE_Q8_K].from_float = quant_q8_K_from_float_avx2;
        dot4[GGML_TYPE_Q8_0] = quant_q8_0_vec_dot4_avx2;
        dot4[GGML_TYPE_Q4_0] = quant_q4_0_vec_dot4_avx2;
        dot4[GGML_TYPE_Q4_K] = quant_q4_K_vec_dot4_avx2;
        dot4[GGML_TYPE_Q5_K] = quant_q5_K_vec_dot4_avx2;
        dot4[GGML_TYPE_Q6_K] = quant_q6_K_vec_dot4_avx2;
    }
    if (vnni) {
        selected_isa = QUANT_ISA_AVX512;
        traits[GGML_TYPE_Q4_0].vec_dot = quant_q4_0_vec_dot_avx512;
        traits[GGML_TYPE_Q8_0].vec_dot = quant_q8_0_vec_dot_avx512;
        traits[GGML_TYPE_Q4_K].vec_dot = quant_q4_K_vec_dot_avx512;
        traits[GGML_TYPE_Q6_K].vec_dot = quant_q6_K_vec_dot_avx512;
        traits[GGML_TYPE_F16].vec_dot = quant_f16_vec_dot_avx512;
        dot4[GGML_TYPE_Q8_0] = quant_q8_0_vec_dot4_avx512;
        dot4[GGML_TYPE_Q4_0] = quant_q4_0_vec_dot4_avx512;
        dot4[GGML_TYPE_Q4_K] = quant_q4_K_vec_dot4_avx512;
        dot4[GGML_TYPE_Q6_K] = quant_q6_K_vec_dot4_avx512;
        if (cpu->avx512bf16)
            traits[GGML_TYPE_BF16].vec_dot = quant_bf16_vec_dot_avx512;
    }
#endif
}

const quant_traits *quant_traits_of(ggml_type type)
{
    pthread_once(&select_once, quant_select);
    if ((unsigned)type >= GGML_TYPE_COUNT || !traits[type].name)
        return NULL;
    return &traits[type];
}

const char *quant_isa_name(void)
{
    pthread_once(&select_once, quant_select);
    switch (selected_isa) {
    case QUANT_ISA_AVX512: return "avx512";
    case QUANT_ISA_AVX2: return "avx2";
    default: return "scalar";
    }
}

/* ---- matrix-matrix ----------------------------------------------------------------------- */

/* Tokens per tile: the activations of 32 tokens of a 4096-wide row are 150 KiB (Q8_K), which
 * stay in L2 while every weight row passes over them; each weight row is read once per tile
 * and stays in L1 for the tile's calls. (A tile of rows instead would re-read all activations
 * from L3 for every few rows.) */
#define GEMM_TOK_TILE 32

llmos_err quant_gemm(ggml_type type, size_t k, size_t n_rows, const void *w, size_t w_stride,
                     size_t n_tok, const void *act, size_t act_stride, float *out,
                     size_t out_stride)
{
    const quant_traits *t = quant_traits_of(type);
    if (!t || !t->supported)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "quant_gemm: tensor type %d (%s) has no kernels in llmos", (int)type,
                          quant_type_name(type));
    if (k % t->block_size != 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "quant_gemm: row length %zu is not a multiple of the %s block size %zu",
                          k, t->name, t->block_size);
    if (n_rows == 0 || n_tok == 0)
        return LLMOS_OK;
    if (!w || !act || !out)
        return llmos_fail(LLMOS_ERR_INVALID, "quant_gemm: NULL weights, activations or output");
    if (n_tok > 1 && out_stride < n_rows)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "quant_gemm: output stride %zu is shorter than the %zu rows", out_stride,
                          n_rows);
    const uint8_t *wb = w, *ab = act;
    quant_vec_dot4_fn d4 = dot4[type];
    for (size_t t0 = 0; t0 < n_tok; t0 += GEMM_TOK_TILE) {
        size_t t1 = t0 + GEMM_TOK_TILE < n_tok ? t0 + GEMM_TOK_TILE : n_tok;
        for (size_t r = 0; r < n_rows; r++) {
            const uint8_t *row = wb + r * w_stride;
            size_t tk = t0;
            if (d4) {
                for (; tk + 4 <= t1; tk += 4) {
                    float s[4];
                    d4(k, s, row, ab + tk * act_stride, act_stride);
                    for (size_t q = 0; q < 4; q++)
                        out[(tk + q) * out_stride + r] = s[q];
                }
            }
            for (; tk < t1; tk++)
                t->vec_dot(k, &out[tk * out_stride + r], row, ab + tk * act_stride);
        }
    }
    return LLMOS_OK;
}

const char *quant_type_name(ggml_type type)
{
    const quant_traits *t = quant_traits_of(type);
    return t ? t->name : "?";
}

bool quant_row_size(ggml_type type, uint64_t n_elements, uint64_t *bytes)
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
