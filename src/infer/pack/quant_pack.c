/*
 * quant_pack.c - what every packed (16-row interleaved) type shares: the activation format
 * (qpack_act) and its quantizers, scalar and AVX-512, the table of packed types and the choice
 * of their SIMD kernels. See quant_pack.h for why packing pays.
 *
 * Each type has a file of its own, quant_pack_<type>.c, with the same four parts: the layout
 * of a packed group, the pack function, the scalar reference kernel (which reads the packed
 * bytes element by element, exactly as the layout comment says) and the AVX-512 VNNI kernel.
 * Kernels accumulate in the same order up to float summation order: integer sums per 32-value
 * block, then d_w * (d_x * isum - offset * s_x) in float.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "infer/quant/quant_internal.h"
#include "infer/pack/quant_pack.h"
#include "llmos/base.h"

/* ---- activations ------------------------------------------------------------------------- */

size_t qpack_act_bytes(size_t n)
{
    return n + 2 * (n / QPACK_BLOCK) * sizeof(float);
}

void qpack_act_quantize_ref(const float *x, size_t n, void *dst)
{
    int8_t *q = dst;
    float *d = (float *)((uint8_t *)dst + n), *s = d + n / QPACK_BLOCK;
    for (size_t b = 0; b < n / QPACK_BLOCK; b++) {
        const float *xb = x + b * QPACK_BLOCK;
        float amax = 0;
        for (int i = 0; i < QPACK_BLOCK; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        float db = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int i = 0; i < QPACK_BLOCK; i++) {
            int v = (int)nearbyintf(xb[i] * id);
            q[b * QPACK_BLOCK + i] = (int8_t)v;
            sum += v;
        }
        d[b] = db;
        s[b] = db * (float)sum;
    }
}

#if defined(__x86_64__)
#include "infer/pack/quant_pack_simd.h"

/* The reference's quantization, one 32-value block per step in two vectors. */
VNNI void qpack_act_quantize_avx512(const float *x, size_t n, void *dst)
{
    int8_t *q = dst;
    float *d = (float *)((uint8_t *)dst + n), *s = d + n / QPACK_BLOCK;
    for (size_t b = 0; b < n / QPACK_BLOCK; b++) {
        __m512 v0 = _mm512_loadu_ps(x + b * QPACK_BLOCK);
        __m512 v1 = _mm512_loadu_ps(x + b * QPACK_BLOCK + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        /* cvtps rounds to nearest even under the default MXCSR, as nearbyintf does */
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        _mm_storeu_si128((__m128i *)(q + b * QPACK_BLOCK), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(q + b * QPACK_BLOCK + 16), _mm512_cvtsepi32_epi8(i1));
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    }
}
#endif /* __x86_64__ */

/* ---- the table and the choice of kernels ------------------------------------------------- */

static qpack_traits traits[] = {
    {GGML_TYPE_Q4_0, QK4_0, qpack_q4_0x16_pack, qpack_q4_0x16_kernel_ref, NULL},
    {GGML_TYPE_Q8_0, QK8_0, qpack_q8_0x16_pack, qpack_q8_0x16_kernel_ref, NULL},
    {GGML_TYPE_Q4_K, QK_K, qpack_q4_Kx16_pack, qpack_q4_Kx16_kernel_ref, NULL},
    {GGML_TYPE_Q6_K, QK_K, qpack_q6_Kx16_pack, qpack_q6_Kx16_kernel_ref, NULL},
    {GGML_TYPE_Q5_0, QK5_0, qpack_q5_0x16_pack, qpack_q5_0x16_kernel_ref, NULL},
    {GGML_TYPE_Q5_K, QK_K, qpack_q5_Kx16_pack, qpack_q5_Kx16_kernel_ref, NULL},
    {GGML_TYPE_Q5_1, QK5_1, qpack_q5_1x16_pack, qpack_q5_1x16_kernel_ref, NULL},
};

static void (*act_quantize)(const float *, size_t, void *) = qpack_act_quantize_ref;
static bool pack_enabled = true;
static pthread_once_t select_once = PTHREAD_ONCE_INIT;

static void qpack_select(void)
{
    const char *env = getenv("LLMOS_PACK");
    pack_enabled = !(env && strcmp(env, "0") == 0);
#if defined(__x86_64__)
    const llmos_cpu *cpu = llmos_cpu_features();
    const char *isa = getenv("LLMOS_QUANT_ISA"); /* a cap below avx512 rules these out */
    bool capped = isa && (strcmp(isa, "ref") == 0 || strcmp(isa, "avx2") == 0);
    if (!capped && cpu->avx2 && cpu->fma && cpu->f16c && cpu->avx512f && cpu->avx512bw &&
        cpu->avx512vl && cpu->avx512vnni) {
        act_quantize = qpack_act_quantize_avx512;
        for (size_t i = 0; i < sizeof traits / sizeof traits[0]; i++) {
            switch (traits[i].type) {
            case GGML_TYPE_Q4_0: traits[i].kernel = qpack_q4_0x16_kernel_avx512; break;
            case GGML_TYPE_Q8_0: traits[i].kernel = qpack_q8_0x16_kernel_avx512; break;
            case GGML_TYPE_Q4_K: traits[i].kernel = qpack_q4_Kx16_kernel_avx512; break;
            case GGML_TYPE_Q6_K: traits[i].kernel = qpack_q6_Kx16_kernel_avx512; break;
            case GGML_TYPE_Q5_0: traits[i].kernel = qpack_q5_0x16_kernel_avx512; break;
            case GGML_TYPE_Q5_K: traits[i].kernel = qpack_q5_Kx16_kernel_avx512; break;
            case GGML_TYPE_Q5_1: traits[i].kernel = qpack_q5_1x16_kernel_avx512; break;
            default: break;
            }
        }
    }
#endif
}

const qpack_traits *qpack_traits_of(ggml_type type)
{
    pthread_once(&select_once, qpack_select);
    for (size_t i = 0; i < sizeof traits / sizeof traits[0]; i++)
        if (traits[i].type == type)
            return &traits[i];
    return NULL;
}

bool qpack_usable(ggml_type type, size_t k)
{
    const qpack_traits *t = qpack_traits_of(type);
    return t && pack_enabled && t->kernel && k > 0 && k % t->k_multiple == 0 &&
           k % QPACK_BLOCK == 0;
}

void qpack_act_quantize(const float *x, size_t n, void *dst)
{
    pthread_once(&select_once, qpack_select);
    act_quantize(x, n, dst);
}
