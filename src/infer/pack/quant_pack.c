/*
 * quant_pack.c - packed (16-row interleaved) weights: the layouts, the pack functions, the
 * scalar reference kernels and the choice of SIMD kernels. See quant_pack.h for why.
 *
 * Each type's block layout is described at its pack function. The reference kernels read the
 * packed bytes element by element, exactly as the layout comment says, and accumulate in the
 * same order as the SIMD kernels up to float summation order: integer sums per 32-value block,
 * then d_w * (d_x * isum - offset * s_x) in float.
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

/* ---- Q4_0 -------------------------------------------------------------------------------- */

/* Block b of a group (288 bytes = 16 Q4_0 blocks):
 *   uint16_t d[16]          the 16 rows' scales (F16)
 *   uint8_t  qs[4][16][4]   chunk c, row r: bytes 4c..4c+3 of that row's qs
 * so 32-bit lane r of chunk c holds elements 4c..4c+3 (low nibbles) and 16+4c..19+4c (high
 * nibbles) of row r. */
#define Q4_0X16_BLOCK (QPACK_ROWS * sizeof(block_q4_0))

void qpack_q4_0x16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    size_t nb = k / QK4_0;
    uint8_t *g = group;
    memset(g, 0, nb * Q4_0X16_BLOCK);
    for (size_t r = 0; r < n_rows; r++) {
        const block_q4_0 *row = (const block_q4_0 *)((const uint8_t *)rows + r * row_bytes);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *gb = g + b * Q4_0X16_BLOCK;
            memcpy(gb + 2 * r, &row[b].d, 2);
            for (int c = 0; c < 4; c++)
                memcpy(gb + 32 + 64 * c + 4 * r, row[b].qs + 4 * c, 4);
        }
    }
}

void qpack_q4_0x16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    size_t nb = k / QK4_0;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *q = qpack_act_q(a);
        const float *d = qpack_act_d(a, k), *s = qpack_act_s(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *gb = (const uint8_t *)group + b * Q4_0X16_BLOCK;
                uint16_t h;
                memcpy(&h, gb + 2 * r, 2);
                int isum = 0;
                for (int j = 0; j < QK4_0; j++) {
                    int c = (j % 16) / 4;
                    uint8_t byte = gb[32 + 64 * c + 4 * r + j % 4];
                    int nib = j < 16 ? byte & 0xF : byte >> 4;
                    isum += nib * q[b * QK4_0 + j];
                }
                sum += quant_fp16_to_fp32(h) * (d[b] * (float)isum - 8.0f * s[b]);
            }
            out[t][r] = sum;
        }
    }
}

/* ---- Q8_0 -------------------------------------------------------------------------------- */

/* Block b of a group (544 bytes = 16 Q8_0 blocks):
 *   uint16_t d[16]          the 16 rows' scales (F16)
 *   uint8_t  qs[8][16][4]   chunk c, row r: bytes 4c..4c+3 of that row's qs, each XOR 0x80
 * The XOR stores q + 128 as an unsigned byte (what vpdpbusd multiplies), so
 * sum q y = sum (q + 128) y - 128 sum y. */
#define Q8_0X16_BLOCK (QPACK_ROWS * sizeof(block_q8_0))

void qpack_q8_0x16_pack(const void *rows, size_t row_bytes, size_t n_rows, size_t k, void *group)
{
    size_t nb = k / QK8_0;
    uint8_t *g = group;
    memset(g, 0, nb * Q8_0X16_BLOCK);
    for (size_t b = 0; b < nb; b++) /* zero rows must read as q = 0, stored as 0x80 */
        memset(g + b * Q8_0X16_BLOCK + 32, 0x80, Q8_0X16_BLOCK - 32);
    for (size_t r = 0; r < n_rows; r++) {
        const block_q8_0 *row = (const block_q8_0 *)((const uint8_t *)rows + r * row_bytes);
        for (size_t b = 0; b < nb; b++) {
            uint8_t *gb = g + b * Q8_0X16_BLOCK;
            memcpy(gb + 2 * r, &row[b].d, 2);
            for (int c = 0; c < 8; c++) { /* 4 bytes at a time, each XOR 0x80 */
                uint32_t w;
                memcpy(&w, row[b].qs + 4 * c, 4);
                w ^= 0x80808080u;
                memcpy(gb + 32 + 64 * c + 4 * r, &w, 4);
            }
        }
    }
}

void qpack_q8_0x16_kernel_ref(size_t k, const void *group, const void *act, size_t act_stride,
                              size_t n_tok, float out[QPACK_TOK][QPACK_ROWS])
{
    size_t nb = k / QK8_0;
    for (size_t t = 0; t < n_tok; t++) {
        const void *a = (const uint8_t *)act + t * act_stride;
        const int8_t *q = qpack_act_q(a);
        const float *d = qpack_act_d(a, k), *s = qpack_act_s(a, k);
        for (int r = 0; r < QPACK_ROWS; r++) {
            float sum = 0;
            for (size_t b = 0; b < nb; b++) {
                const uint8_t *gb = (const uint8_t *)group + b * Q8_0X16_BLOCK;
                uint16_t h;
                memcpy(&h, gb + 2 * r, 2);
                int isum = 0;
                for (int j = 0; j < QK8_0; j++)
                    isum += gb[32 + 64 * (j / 4) + 4 * r + j % 4] * q[b * QK8_0 + j];
                sum += quant_fp16_to_fp32(h) * (d[b] * (float)isum - 128.0f * s[b]);
            }
            out[t][r] = sum;
        }
    }
}

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
