/*
 * quant_ref.c - portable scalar reference kernels for the quantized block formats.
 *
 * For every block type: a dequantizer (<t>_to_float), a reference quantizer
 * (<t>_from_float_ref) and a dot product against the activation type it pairs with
 * (<t>_vec_dot_ref). These define what the formats mean in llmos; the SIMD kernels are tested
 * against them.
 *
 * Layouts and dequantization follow ggml (ggml-common.h for the block structs, ggml-quants.c
 * dequantize_row_* for the element order); see docs/formats.md "Quantized block formats".
 * The quantizers follow the same ideas as ggml's reference quantizers (max-abs scaling for the
 * 32-blocks; for the K-quants a search over candidate scales that minimises a weighted squared
 * error, then the sub-block scales quantized against one super-block scale) but are written
 * for this project.
 *
 * Dot products: integer products are summed exactly per block (or per sub-block with its
 * integer scale), and only then multiplied by the float scales, as the SIMD kernels do, so that
 * the two differ only by float summation order.
 */
#include <math.h>
#include <string.h>

#include "infer/quant/quant_internal.h"

#define F16(h) quant_fp16_to_fp32(h)

/* Round to nearest, ties to even (the default rounding mode), as an int. The SIMD quantizers
 * round the same way so that they produce the same bytes. Every caller clamps the result to a
 * few bits, so out-of-range values only need to stay out of range: they are limited to
 * +-2^20 first, and NaN (a diverged activation) becomes 0, so that no input is undefined
 * behaviour. */
static inline int quant_round(float x)
{
    if (!(x == x))
        return 0;
    x = x > 1048576.0f ? 1048576.0f : x < -1048576.0f ? -1048576.0f : x;
    return (int)nearbyintf(x);
}

static inline int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- Q4_0 -------------------------------------------------------------------------------- */

void quant_q4_0_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK4_0 == 0);
    const block_q4_0 *b = src;
    for (size_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        float d = F16(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            dst[j + QK4_0 / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* The value of largest magnitude (with its sign) in x[0..n). */
static float signed_absmax(const float *x, int n, float *amax_out)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    if (amax_out)
        *amax_out = amax;
    return max;
}

void quant_q4_0_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK4_0 == 0);
    block_q4_0 *b = dst;
    for (size_t i = 0; i < n / QK4_0; i++, src += QK4_0) {
        /* The extreme value maps to -8 exactly, so the asymmetric range [-8, 7] is used. */
        float max = signed_absmax(src, QK4_0, NULL);
        float d = max / -8.0f;
        float id = d != 0 ? 1.0f / d : 0;
        b[i].d = quant_fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = clampi(quant_round(src[j] * id) + 8, 0, 15);
            int q1 = clampi(quant_round(src[j + QK4_0 / 2] * id) + 8, 0, 15);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void quant_q4_0_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK4_0 == 0);
    const block_q4_0 *a = x;
    const block_q8_0 *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((a[i].qs[j] & 0xF) - 8) * b[i].qs[j];
            sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + QK4_0 / 2];
        }
        sum += (float)sumi * (F16(a[i].d) * F16(b[i].d));
    }
    *s = sum;
}

/* ---- Q4_1 -------------------------------------------------------------------------------- */

void quant_q4_1_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK4_1 == 0);
    const block_q4_1 *b = src;
    for (size_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        float d = F16(b[i].d), m = F16(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            dst[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            dst[j + QK4_1 / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void minmax(const float *x, int n, float *mn, float *mx)
{
    float lo = x[0], hi = x[0];
    for (int j = 1; j < n; j++) {
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    *mn = lo;
    *mx = hi;
}

void quant_q4_1_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK4_1 == 0);
    block_q4_1 *b = dst;
    for (size_t i = 0; i < n / QK4_1; i++, src += QK4_1) {
        float mn, mx;
        minmax(src, QK4_1, &mn, &mx);
        float d = (mx - mn) / 15;
        float id = d != 0 ? 1.0f / d : 0;
        b[i].d = quant_fp32_to_fp16(d);
        b[i].m = quant_fp32_to_fp16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = clampi(quant_round((src[j] - mn) * id), 0, 15);
            int q1 = clampi(quant_round((src[j + QK4_1 / 2] - mn) * id), 0, 15);
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* sum_j (d_x q_j + m_x) d_y p_j = d_x d_y sum q_j p_j + m_x s_y, with s_y = d_y sum p_j. */
void quant_q4_1_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK4_1 == 0);
    const block_q4_1 *a = x;
    const block_q8_1 *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (a[i].qs[j] & 0xF) * b[i].qs[j];
            sumi += (a[i].qs[j] >> 4) * b[i].qs[j + QK4_1 / 2];
        }
        sum += (float)sumi * (F16(a[i].d) * F16(b[i].d)) + F16(a[i].m) * F16(b[i].s);
    }
    *s = sum;
}

/* ---- Q5_0 -------------------------------------------------------------------------------- */

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void store_u32le(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

/* The 5-bit unsigned quant of element j (0..31) of a Q5_0/Q5_1 block. */
static inline int q5_get(const uint8_t *qs, uint32_t qh, int j)
{
    int lo = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
    return lo | (int)((qh >> j) & 1) << 4;
}

void quant_q5_0_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK5_0 == 0);
    const block_q5_0 *b = src;
    for (size_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        float d = F16(b[i].d);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QK5_0; j++)
            dst[j] = (float)(q5_get(b[i].qs, qh, j) - 16) * d;
    }
}

void quant_q5_0_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK5_0 == 0);
    block_q5_0 *b = dst;
    for (size_t i = 0; i < n / QK5_0; i++, src += QK5_0) {
        float max = signed_absmax(src, QK5_0, NULL);
        float d = max / -16.0f;
        float id = d != 0 ? 1.0f / d : 0;
        b[i].d = quant_fp32_to_fp16(d);
        uint32_t qh = 0;
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK5_0; j++) {
            int q = clampi(quant_round(src[j] * id) + 16, 0, 31);
            b[i].qs[j % 16] |= (uint8_t)((q & 0xF) << (j < 16 ? 0 : 4));
            qh |= (uint32_t)(q >> 4) << j;
        }
        store_u32le(b[i].qh, qh);
    }
}

void quant_q5_0_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK5_0 == 0);
    const block_q5_0 *a = x;
    const block_q8_0 *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK5_0; i++) {
        uint32_t qh = load_u32le(a[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0; j++)
            sumi += (q5_get(a[i].qs, qh, j) - 16) * b[i].qs[j];
        sum += (float)sumi * (F16(a[i].d) * F16(b[i].d));
    }
    *s = sum;
}

/* ---- Q5_1 -------------------------------------------------------------------------------- */

void quant_q5_1_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK5_1 == 0);
    const block_q5_1 *b = src;
    for (size_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        float d = F16(b[i].d), m = F16(b[i].m);
        uint32_t qh = load_u32le(b[i].qh);
        for (int j = 0; j < QK5_1; j++)
            dst[j] = (float)q5_get(b[i].qs, qh, j) * d + m;
    }
}

void quant_q5_1_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK5_1 == 0);
    block_q5_1 *b = dst;
    for (size_t i = 0; i < n / QK5_1; i++, src += QK5_1) {
        float mn, mx;
        minmax(src, QK5_1, &mn, &mx);
        float d = (mx - mn) / 31;
        float id = d != 0 ? 1.0f / d : 0;
        b[i].d = quant_fp32_to_fp16(d);
        b[i].m = quant_fp32_to_fp16(mn);
        uint32_t qh = 0;
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK5_1; j++) {
            int q = clampi(quant_round((src[j] - mn) * id), 0, 31);
            b[i].qs[j % 16] |= (uint8_t)((q & 0xF) << (j < 16 ? 0 : 4));
            qh |= (uint32_t)(q >> 4) << j;
        }
        store_u32le(b[i].qh, qh);
    }
}

void quant_q5_1_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK5_1 == 0);
    const block_q5_1 *a = x;
    const block_q8_1 *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK5_1; i++) {
        uint32_t qh = load_u32le(a[i].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1; j++)
            sumi += q5_get(a[i].qs, qh, j) * b[i].qs[j];
        sum += (float)sumi * (F16(a[i].d) * F16(b[i].d)) + F16(a[i].m) * F16(b[i].s);
    }
    *s = sum;
}

/* ---- Q8_0 -------------------------------------------------------------------------------- */

void quant_q8_0_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK8_0 == 0);
    const block_q8_0 *b = src;
    for (size_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        float d = F16(b[i].d);
        for (int j = 0; j < QK8_0; j++)
            dst[j] = (float)b[i].qs[j] * d;
    }
}

/* d = amax/127, q = round(x/d). The integers are computed from the float d (not its fp16
 * rounding), as ggml does; quant_q8_0_from_float_avx2 repeats exactly these operations. */
void quant_q8_0_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK8_0 == 0);
    block_q8_0 *b = dst;
    for (size_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(src[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0;
        b[i].d = quant_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)quant_round(src[j] * id);
    }
}

void quant_q8_0_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK8_0 == 0);
    const block_q8_0 *a = x, *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++)
            sumi += a[i].qs[j] * b[i].qs[j];
        sum += (float)sumi * (F16(a[i].d) * F16(b[i].d));
    }
    *s = sum;
}

/* ---- Q8_1 -------------------------------------------------------------------------------- */

void quant_q8_1_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK8_1 == 0);
    const block_q8_1 *b = src;
    for (size_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        float d = F16(b[i].d);
        for (int j = 0; j < QK8_1; j++)
            dst[j] = (float)b[i].qs[j] * d;
    }
}

void quant_q8_1_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK8_1 == 0);
    block_q8_1 *b = dst;
    for (size_t i = 0; i < n / QK8_1; i++, src += QK8_1) {
        float amax = 0;
        for (int j = 0; j < QK8_1; j++)
            amax = fmaxf(amax, fabsf(src[j]));
        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0;
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            b[i].qs[j] = (int8_t)quant_round(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = quant_fp32_to_fp16(d);
        b[i].s = quant_fp32_to_fp16((float)sum * d);
    }
}

void quant_q8_1_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK8_1 == 0);
    const block_q8_1 *a = x, *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK8_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_1; j++)
            sumi += a[i].qs[j] * b[i].qs[j];
        sum += (float)sumi * (F16(a[i].d) * F16(b[i].d));
    }
    *s = sum;
}

/* ---- scale searches for the K-quants ----------------------------------------------------- */

/*
 * Affine fit x ~ scale*L - mn with L in [0, nmax] and mn >= 0 (a min that is never positive
 * as an offset, as the formats store -min): start from the min/max grid, then try nstep
 * slightly stretched grids and, for each rounding they produce, the weighted least-squares
 * scale and offset. Keeps the candidate with the smallest weighted squared error (or absolute
 * error when use_abs). Returns the scale; *the_min receives mn (>= 0); L the levels.
 */
static float fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min,
                        float rmin, float rdelta, int nstep, bool use_abs)
{
    float lo = x[0], hi = x[0], sum_w = 0, sum_x = 0;
    for (int i = 0; i < n; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0)
        lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *the_min = -lo;
        return 0;
    }
    float iscale = (float)nmax / (hi - lo);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(quant_round(iscale * (x[i] - lo)), 0, nmax);
        L[i] = (uint8_t)l;
        float diff = scale * (float)l + lo - x[i];
        best += w[i] * (use_abs ? fabsf(diff) : diff * diff);
    }
    uint8_t Lc[32];
    assert(n <= 32);
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(quant_round(iscale * (x[i] - lo)), 0, nmax);
            Lc[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        float det = sum_w * sum_l2 - sum_l * sum_l;
        if (det <= 0)
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) { /* the offset must not be positive: refit the scale alone */
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * (float)Lc[i] + this_min - x[i];
            err += w[i] * (use_abs ? fabsf(diff) : diff * diff);
        }
        if (err < best) {
            best = err;
            memcpy(L, Lc, (size_t)n);
            scale = this_scale;
            lo = this_min;
        }
    }
    *the_min = -lo;
    return scale;
}

/*
 * Symmetric fit x ~ scale*L with L in [-nmax, nmax-1]: try grids around the one that maps
 * the extreme value to -nmax, refit the scale by weighted least squares (weights x^2, which
 * favours the large values that matter most in a dot product) and keep the best. L receives
 * the levels offset by +nmax (0 .. 2*nmax-1). Returns the scale (may be negative).
 */
static float fit_symmetric(int n, int nmax, const float *x, uint8_t *L)
{
    float amax;
    float max = signed_absmax(x, n, &amax);
    if (amax < 1e-30f) {
        memset(L, 0, (size_t)n);
        for (int i = 0; i < n; i++)
            L[i] = (uint8_t)nmax;
        return 0;
    }
    float best_scale = 0, best_err = INFINITY;
    uint8_t Lc[16];
    assert(n <= 16);
    for (int is = -9; is <= 9; is++) {
        float iscale = -((float)nmax + 0.1f * (float)is) / max;
        float sum_xl = 0, sum_l2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(quant_round(iscale * x[i]), -nmax, nmax - 1);
            Lc[i] = (uint8_t)(l + nmax);
            float w = x[i] * x[i];
            sum_xl += w * x[i] * (float)l;
            sum_l2 += w * (float)l * (float)l;
        }
        if (sum_l2 <= 0)
            continue;
        float scale = sum_xl / sum_l2;
        float err = 0;
        for (int i = 0; i < n; i++) {
            float diff = x[i] - scale * (float)(Lc[i] - nmax);
            err += x[i] * x[i] * diff * diff;
        }
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            memcpy(L, Lc, (size_t)n);
        }
    }
    return best_scale;
}

/* ---- Q2_K -------------------------------------------------------------------------------- */

/* Element e = 128h + 32j + l (h < 2, j < 4, l < 32) is bits 2j..2j+1 of qs[32h + l], in
 * sub-block e / 16 (ggml-quants.c dequantize_row_q2_K). */
void quant_q2_K_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK_K == 0);
    const block_q2_K *b = src;
    for (size_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int e = 0; e < QK_K; e++) {
            int q = (b[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            uint8_t sc = b[i].scales[e / 16];
            dst[e] = d * (float)(sc & 0xF) * (float)q - dmin * (float)(sc >> 4);
        }
    }
}

/* Quantize scales or mins (all >= 0) of nsub sub-blocks to nbits against one float. */
static float quantize_sub_scales(const float *v, int nsub, int nmax, uint8_t *out)
{
    float vmax = 0;
    for (int j = 0; j < nsub; j++)
        vmax = v[j] > vmax ? v[j] : vmax;
    if (vmax <= 0) {
        memset(out, 0, (size_t)nsub);
        return 0;
    }
    float iscale = (float)nmax / vmax;
    for (int j = 0; j < nsub; j++)
        out[j] = (uint8_t)clampi(quant_round(iscale * v[j]), 0, nmax);
    return vmax / (float)nmax;
}

void quant_q2_K_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q2_K *b = dst;
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint8_t L[QK_K];
        float scales[16], mins[16], w[16];
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = fabsf(src[16 * j + l]);
            scales[j] =
                fit_affine(16, 3, src + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
        }
        uint8_t qsc[16], qmin[16];
        float d = quantize_sub_scales(scales, 16, 15, qsc);
        float dmin = quantize_sub_scales(mins, 16, 15, qmin);
        b[i].d = quant_fp32_to_fp16(d);
        b[i].dmin = quant_fp32_to_fp16(dmin);
        d = F16(b[i].d);
        dmin = F16(b[i].dmin);
        for (int j = 0; j < 16; j++) {
            b[i].scales[j] = (uint8_t)(qsc[j] | (qmin[j] << 4));
            float dl = d * qsc[j], ml = dmin * qmin[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    dl == 0 ? 0 : (uint8_t)clampi(quant_round((src[16 * j + l] + ml) / dl), 0, 3);
        }
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < QK_K; e++)
            b[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)(L[e] << (2 * ((e / 32) % 4)));
    }
}

void quant_q2_K_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q2_K *a = x;
    const block_q8_K *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int e = 0; e < QK_K; e++) {
            int q = (a[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            sumi += (a[i].scales[e / 16] & 0xF) * q * b[i].qs[e];
        }
        for (int j = 0; j < 16; j++)
            summ += (a[i].scales[j] >> 4) * b[i].bsums[j];
        sum += b[i].d * (F16(a[i].d) * (float)sumi - F16(a[i].dmin) * (float)summ);
    }
    *s = sum;
}

/* ---- Q3_K -------------------------------------------------------------------------------- */

/* Element e = 128h + 32j + l: low bits 2j..2j+1 of qs[32h + l], third bit hmask[l] bit e/32
 * (set: value as is, clear: minus 4), sub-block e / 16 (dequantize_row_q3_K). */
static inline int q3k_get(const block_q3_K *b, int e)
{
    int lo = (b->qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
    int hi = (b->hmask[e % 32] >> (e / 32)) & 1;
    return lo - (hi ? 0 : 4);
}

void quant_q3_K_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK_K == 0);
    const block_q3_K *b = src;
    for (size_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = F16(b[i].d);
        for (int e = 0; e < QK_K; e++)
            dst[e] =
                d * (float)(quant_q3k_scale(e / 16, b[i].scales) - 32) * (float)q3k_get(&b[i], e);
    }
}

void quant_q3_K_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q3_K *b = dst;
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint8_t L[QK_K];
        float scales[16];
        float amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric(16, 4, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max = scales[j];
            }
        }
        memset(b[i].scales, 0, sizeof b[i].scales);
        float d = 0;
        if (amax > 0) {
            float iscale = -32 / max;
            d = 1 / iscale;
            for (int j = 0; j < 16; j++) {
                int l = clampi(quant_round(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    b[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    b[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                b[i].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
        }
        b[i].d = quant_fp32_to_fp16(d);
        d = F16(b[i].d);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)(quant_q3k_scale(j, b[i].scales) - 32);
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    dl == 0 ? 4 : (uint8_t)(clampi(quant_round(src[16 * j + l] / dl), -4, 3) + 4);
        }
        memset(b[i].hmask, 0, sizeof b[i].hmask);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < QK_K; e++) {
            int l = L[e];
            if (l > 3) {
                b[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
                l -= 4;
            }
            b[i].qs[32 * (e / 128) + e % 32] |= (uint8_t)(l << (2 * ((e / 32) % 4)));
        }
    }
}

void quant_q3_K_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q3_K *a = x;
    const block_q8_K *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int sg = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++)
                sg += q3k_get(&a[i], e) * b[i].qs[e];
            sumi += (quant_q3k_scale(g, a[i].scales) - 32) * sg;
        }
        sum += b[i].d * F16(a[i].d) * (float)sumi;
    }
    *s = sum;
}

/* ---- Q4_K -------------------------------------------------------------------------------- */

/* Element e = 64c + 32h + l: nibble h (0 low, 1 high) of qs[32c + l], sub-block e / 32
 * (dequantize_row_q4_K). */
static inline int q4k_get(const uint8_t *qs, int e)
{
    return (qs[32 * (e / 64) + e % 32] >> (4 * ((e / 32) % 2))) & 0xF;
}

void quant_q4_K_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK_K == 0);
    const block_q4_K *b = src;
    for (size_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int e = 0; e < QK_K; e++) {
            uint8_t sc, m;
            quant_k4_scale_min(e / 32, b[i].scales, &sc, &m);
            dst[e] = d * (float)sc * (float)q4k_get(b[i].qs, e) - dmin * (float)m;
        }
    }
}

/* Pack 8 six-bit scales and mins into the 12 bytes of Q4_K/Q5_K (inverse of
 * quant_k4_scale_min). */
static void pack_k4_scales(const uint8_t *ls, const uint8_t *lm, uint8_t *q)
{
    memset(q, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): per sub-block affine fits, 6-bit scales and
 * mins, then the final levels from the stored (rounded) scales. */
static void quantize_k_affine(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out,
                              uint8_t *scales12, uint8_t *L)
{
    float scales[8], mins[8], w[32];
    float sum_x2 = 0;
    for (int e = 0; e < QK_K; e++)
        sum_x2 += x[e] * x[e];
    float av_x = sqrtf(sum_x2 / QK_K);
    for (int j = 0; j < 8; j++) {
        for (int l = 0; l < 32; l++)
            w[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j],
                               nmax == 15 ? -1.0f : -0.5f, 0.1f, nmax == 15 ? 20 : 15, false);
    }
    uint8_t ls[8], lm[8];
    float d = quantize_sub_scales(scales, 8, 63, ls);
    float dmin = quantize_sub_scales(mins, 8, 63, lm);
    pack_k4_scales(ls, lm, scales12);
    *d_out = quant_fp32_to_fp16(d);
    *dmin_out = quant_fp32_to_fp16(dmin);
    d = F16(*d_out);
    dmin = F16(*dmin_out);
    for (int j = 0; j < 8; j++) {
        float dl = d * ls[j], ml = dmin * lm[j];
        for (int l = 0; l < 32; l++)
            L[32 * j + l] =
                dl == 0 ? 0 : (uint8_t)clampi(quant_round((x[32 * j + l] + ml) / dl), 0, nmax);
    }
}

void quant_q4_K_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q4_K *b = dst;
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint8_t L[QK_K];
        quantize_k_affine(src, 15, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int e = 0; e < QK_K; e++)
            b[i].qs[32 * (e / 64) + e % 32] |= (uint8_t)(L[e] << (4 * ((e / 32) % 2)));
    }
}

/* d*dmin terms: sum_e (d sc q - dmin m) y_d p = y_d (d sum_s sc_s sum q p - dmin sum_s m_s
 * (bsums[2s] + bsums[2s+1])). */
void quant_q4_K_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q4_K *a = x;
    const block_q8_K *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_k4_scale_min(j, a[i].scales, &sc, &m);
            int sj = 0;
            for (int e = 32 * j; e < 32 * j + 32; e++)
                sj += q4k_get(a[i].qs, e) * b[i].qs[e];
            sumi += sc * sj;
            summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        }
        sum += b[i].d * (F16(a[i].d) * (float)sumi - F16(a[i].dmin) * (float)summ);
    }
    *s = sum;
}

/* ---- Q5_K -------------------------------------------------------------------------------- */

/* As Q4_K, with the fifth bit of element e = 32s + l in qh[l] bit s (dequantize_row_q5_K). */
static inline int q5k_get(const block_q5_K *b, int e)
{
    return q4k_get(b->qs, e) | (((b->qh[e % 32] >> (e / 32)) & 1) << 4);
}

void quant_q5_K_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK_K == 0);
    const block_q5_K *b = src;
    for (size_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = F16(b[i].d), dmin = F16(b[i].dmin);
        for (int e = 0; e < QK_K; e++) {
            uint8_t sc, m;
            quant_k4_scale_min(e / 32, b[i].scales, &sc, &m);
            dst[e] = d * (float)sc * (float)q5k_get(&b[i], e) - dmin * (float)m;
        }
    }
}

void quant_q5_K_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q5_K *b = dst;
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint8_t L[QK_K];
        quantize_k_affine(src, 31, &b[i].d, &b[i].dmin, b[i].scales, L);
        memset(b[i].qs, 0, sizeof b[i].qs);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < QK_K; e++) {
            b[i].qs[32 * (e / 64) + e % 32] |= (uint8_t)((L[e] & 0xF) << (4 * ((e / 32) % 2)));
            b[i].qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        }
    }
}

void quant_q5_K_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q5_K *a = x;
    const block_q8_K *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            quant_k4_scale_min(j, a[i].scales, &sc, &m);
            int sj = 0;
            for (int e = 32 * j; e < 32 * j + 32; e++)
                sj += q5k_get(&a[i], e) * b[i].qs[e];
            sumi += sc * sj;
            summ += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
        }
        sum += b[i].d * (F16(a[i].d) * (float)sumi - F16(a[i].dmin) * (float)summ);
    }
    *s = sum;
}

/* ---- Q6_K -------------------------------------------------------------------------------- */

/* Element e = 128h + 32k + l (k < 4, l < 32): low 4 bits are nibble (k / 2) of
 * ql[64h + 32(k % 2) + l], high 2 bits are bits 2k..2k+1 of qh[32h + l]; value q - 32 in
 * sub-block e / 16 (dequantize_row_q6_K). */
static inline int q6k_get(const block_q6_K *b, int e)
{
    int h = e / 128, k = (e / 32) % 4, l = e % 32;
    int lo = (b->ql[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
    int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
    return (lo | (hi << 4)) - 32;
}

void quant_q6_K_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK_K == 0);
    const block_q6_K *b = src;
    for (size_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        float d = F16(b[i].d);
        for (int e = 0; e < QK_K; e++)
            dst[e] =
                /* e / 16 is an array index (16 weights per scale), not a float value */
                // NOLINTNEXTLINE(bugprone-integer-division)
                d * (float)b[i].scales[e / 16] * (float)q6k_get(&b[i], e);
    }
}

void quant_q6_K_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q6_K *b = dst;
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        uint8_t L[QK_K];
        float scales[16];
        float amax = 0, max = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_symmetric(16, 32, src + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max = scales[j];
            }
        }
        float d = 0;
        memset(b[i].scales, 0, sizeof b[i].scales);
        if (amax > 0) {
            float iscale = -128 / max;
            d = 1 / iscale;
            for (int j = 0; j < 16; j++)
                b[i].scales[j] = (int8_t)clampi(quant_round(iscale * scales[j]), -128, 127);
        }
        b[i].d = quant_fp32_to_fp16(d);
        d = F16(b[i].d);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)b[i].scales[j];
            for (int l = 0; l < 16; l++)
                L[16 * j + l] =
                    dl == 0 ? 32
                            : (uint8_t)(clampi(quant_round(src[16 * j + l] / dl), -32, 31) + 32);
        }
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int e = 0; e < QK_K; e++) {
            int h = e / 128, k = (e / 32) % 4, l = e % 32;
            b[i].ql[64 * h + 32 * (k % 2) + l] |= (uint8_t)((L[e] & 0xF) << (4 * (k / 2)));
            b[i].qh[32 * h + l] |= (uint8_t)((L[e] >> 4) << (2 * k));
        }
    }
}

void quant_q6_K_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q6_K *a = x;
    const block_q8_K *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int g = 0; g < 16; g++) {
            int sg = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++)
                sg += q6k_get(&a[i], e) * b[i].qs[e];
            sumi += a[i].scales[g] * sg;
        }
        sum += b[i].d * F16(a[i].d) * (float)sumi;
    }
    *s = sum;
}

/* ---- Q8_K -------------------------------------------------------------------------------- */

void quant_q8_K_to_float(const void *src, float *dst, size_t n)
{
    assert(n % QK_K == 0);
    const block_q8_K *b = src;
    for (size_t i = 0; i < n / QK_K; i++, dst += QK_K)
        for (int e = 0; e < QK_K; e++)
            dst[e] = b[i].d * (float)b[i].qs[e];
}

/* The extreme value (first of largest magnitude) maps to -127: iscale = -127/max, q =
 * round(iscale x) (at most 127), d = 1/iscale; bsums[j] = sum of qs[16j .. 16j+15].
 * quant_q8_K_from_float_avx2 repeats exactly these operations. */
void quant_q8_K_from_float_ref(const float *src, void *dst, size_t n)
{
    assert(n % QK_K == 0);
    block_q8_K *b = dst;
    for (size_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax;
        float max = signed_absmax(src, QK_K, &amax);
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.0f / max;
        for (int e = 0; e < QK_K; e++) {
            int q = quant_round(iscale * src[e]);
            b[i].qs[e] = (int8_t)(q > 127 ? 127 : q);
        }
        for (int j = 0; j < 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}

void quant_q8_K_vec_dot_ref(size_t n, float *s, const void *x, const void *y)
{
    assert(n % QK_K == 0);
    const block_q8_K *a = x, *b = y;
    float sum = 0;
    for (size_t i = 0; i < n / QK_K; i++) {
        int sumi = 0;
        for (int e = 0; e < QK_K; e++)
            sumi += a[i].qs[e] * b[i].qs[e];
        sum += a[i].d * b[i].d * (float)sumi;
    }
    *s = sum;
}
