/*
 * ops.c - the neural-network operations of the forward pass: matmul through the kernel
 * table, RMSNorm, RoPE, softmax, SwiGLU, residual adds and causal attention over a KV cache.
 *
 * The arithmetic of the dot products lives in quant.h's kernels (scalar reference plus SIMD
 * chosen at run time); this file decides what is dotted with what and which thread does it.
 * Elementwise ops are cheap next to the matmuls and run on the calling thread.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "infer/model/ops.h"
#include "infer/pack/quant_pack.h"

/* Jobs smaller than this many multiply-adds run on the calling thread: handing them to the
 * pool's workers costs more (microseconds when they spin, much more when they sleep). */
#define OPS_MIN_PARALLEL_WORK 65536.0

/* ---- matmul ------------------------------------------------------------------------------ */

bool ops_matrix_init(ops_matrix *m, const void *data, ggml_type type, size_t n_in, size_t n_out)
{
    const quant_traits *tr = quant_traits_of(type);
    uint64_t row = 0;
    if (!tr || !tr->supported || !tr->vec_dot || !quant_row_size(type, n_in, &row))
        return false;
    const quant_traits *vt = quant_traits_of(tr->vec_dot_type);
    if (!vt || !vt->from_float || n_in % vt->block_size != 0)
        return false;
    m->data = data;
    m->type = type;
    m->n_in = n_in;
    m->n_out = n_out;
    m->row_bytes = (size_t)row;
    m->packed = NULL;
    return true;
}

size_t ops_matrix_packed_bytes(const ops_matrix *m)
{
    if (!qpack_usable(m->type, m->n_in))
        return 0;
    return (m->n_out + QPACK_ROWS - 1) / QPACK_ROWS * QPACK_ROWS * m->row_bytes;
}

typedef struct pack_job {
    const ops_matrix *m;
    uint8_t *dst;
    qpack_pack_fn pack;
} pack_job;

static void pack_groups(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    const pack_job *j = ctx;
    const ops_matrix *m = j->m;
    size_t group_bytes = QPACK_ROWS * m->row_bytes;
    for (size_t g = begin; g < end; g++) {
        size_t r0 = g * QPACK_ROWS, n = m->n_out - r0 < QPACK_ROWS ? m->n_out - r0 : QPACK_ROWS;
        j->pack((const uint8_t *)m->data + r0 * m->row_bytes, m->row_bytes, n, m->n_in,
                j->dst + g * group_bytes);
    }
}

void ops_matrix_pack(llmos_pool *pool, ops_matrix *m, void *dst)
{
    const qpack_traits *pt = qpack_traits_of(m->type);
    assert(pt && ops_matrix_packed_bytes(m) > 0);
    pack_job j = {.m = m, .dst = dst, .pack = pt->pack};
    pool_parallel_for(pool, (m->n_out + QPACK_ROWS - 1) / QPACK_ROWS, 1, pack_groups, &j);
    m->packed = dst;
}

/* Bytes of one activation row of n_in elements once converted for a weight of `type`. */
static size_t act_row_bytes(ggml_type type, size_t n_in)
{
    const quant_traits *tr = quant_traits_of(type);
    uint64_t bytes = 0;
    if (!tr || !quant_row_size(tr->vec_dot_type, n_in, &bytes))
        return 0;
    return (size_t)bytes;
}

size_t ops_matmul_scratch(ggml_type type, size_t n_in, size_t n_tok)
{
    const quant_traits *tr = quant_traits_of(type);
    size_t row = 0;
    if (tr && tr->vec_dot_type != GGML_TYPE_F32)
        row = act_row_bytes(type, n_in);
    if (qpack_usable(type, n_in) && qpack_act_bytes(n_in) > row)
        row = qpack_act_bytes(n_in);
    return row * n_tok;
}

typedef struct matmul_job {
    float *y;
    const ops_matrix *w;
    const uint8_t *act; /* n_tok rows of act_stride bytes in vec_dot_type */
    size_t act_stride;
    size_t n_tok;
    quant_vec_dot_fn dot;
} matmul_job;

/* Rows [begin, end) of W against every token. One token: a dot product per row. A batch:
 * quant_gemm, which keeps tiles of rows in cache while the tokens pass over them (and decodes
 * quantized blocks once for several tokens), so the weights are read from memory once per
 * batch rather than once per token. */
static void matmul_rows(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    const matmul_job *j = ctx;
    const ops_matrix *w = j->w;
    const uint8_t *base = w->data;
    if (j->n_tok == 1) {
        for (size_t r = begin; r < end; r++)
            j->dot(w->n_in, &j->y[r], base + r * w->row_bytes, j->act);
        return;
    }
    llmos_err err =
        quant_gemm(w->type, w->n_in, end - begin, base + begin * w->row_bytes, w->row_bytes,
                   j->n_tok, j->act, j->act_stride, j->y + begin, w->n_out);
    assert(err == LLMOS_OK); /* the type and shape were checked by ops_matrix_init */
    (void)err;
}

/* One dispatch over the groups of up to OPS_MAX_FUSED packed matrices that share an input. */
typedef struct packed_job {
    size_t count;
    float *y[OPS_MAX_FUSED];
    const ops_matrix *w[OPS_MAX_FUSED];
    qpack_kernel_fn kernel[OPS_MAX_FUSED];
    size_t first[OPS_MAX_FUSED + 1]; /* index of each matrix's first group in the job */
    const uint8_t *act;              /* n_tok rows of act_stride bytes (qpack_act) */
    size_t act_stride;
    size_t n_tok;
} packed_job;

/* Groups [begin, end) of the job against every token, QPACK_TOK tokens per kernel call. The
 * group (16 rows) stays in cache while all the tokens pass over it, so a batch reads each
 * weight from memory once. */
static void matmul_groups(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    const packed_job *j = ctx;
    size_t m = 0;
    for (size_t g = begin; g < end; g++) {
        while (g >= j->first[m + 1])
            m++;
        const ops_matrix *w = j->w[m];
        size_t local = g - j->first[m], r0 = local * QPACK_ROWS;
        size_t n = w->n_out - r0 < QPACK_ROWS ? w->n_out - r0 : QPACK_ROWS;
        const uint8_t *group = (const uint8_t *)w->packed + local * QPACK_ROWS * w->row_bytes;
        for (size_t t0 = 0; t0 < j->n_tok; t0 += QPACK_TOK) {
            size_t nt = j->n_tok - t0 < QPACK_TOK ? j->n_tok - t0 : QPACK_TOK;
            float out[QPACK_TOK][QPACK_ROWS];
            j->kernel[m](w->n_in, group, j->act + t0 * j->act_stride, j->act_stride, nt, out);
            for (size_t t = 0; t < nt; t++)
                memcpy(j->y[m] + (t0 + t) * w->n_out + r0, out[t], n * sizeof(float));
        }
    }
}

static void matmul_packed(llmos_pool *pool, size_t count, float *const y[],
                          const ops_matrix *const w[], const float *x, size_t n_tok, void *scratch)
{
    assert(count >= 1 && count <= OPS_MAX_FUSED && scratch);
    size_t k = w[0]->n_in;
    packed_job j = {.count = count, .n_tok = n_tok, .act = scratch};
    double work = 0;
    for (size_t i = 0; i < count; i++) {
        const qpack_traits *pt = qpack_traits_of(w[i]->type);
        assert(pt && pt->kernel && w[i]->packed && w[i]->n_in == k);
        j.y[i] = y[i];
        j.w[i] = w[i];
        j.kernel[i] = pt->kernel;
        j.first[i + 1] = j.first[i] + (w[i]->n_out + QPACK_ROWS - 1) / QPACK_ROWS;
        work += (double)w[i]->n_out * (double)k * (double)n_tok;
    }
    j.act_stride = qpack_act_bytes(k);
    for (size_t t = 0; t < n_tok; t++)
        qpack_act_quantize(x + t * k, k, (uint8_t *)scratch + t * j.act_stride);
    if (work < OPS_MIN_PARALLEL_WORK)
        pool = NULL;
    /* about 8 chunks per thread: few enough to keep each thread's weight stream long, enough
     * to even out a thread that falls behind */
    size_t n_groups = j.first[count];
    size_t chunk = n_groups / (8 * (size_t)pool_threads(pool));
    pool_parallel_for_dynamic(pool, n_groups, chunk ? chunk : 1, matmul_groups, &j);
}

void ops_matmul_multi(llmos_pool *pool, size_t count, float *const y[], const ops_matrix *const w[],
                      const float *x, size_t n_tok, void *scratch)
{
    bool packed = count >= 1 && count <= OPS_MAX_FUSED;
    for (size_t i = 0; i < count && packed; i++)
        packed = w[i]->packed && w[i]->n_in == w[0]->n_in;
    if (packed) {
        matmul_packed(pool, count, y, w, x, n_tok, scratch);
        return;
    }
    for (size_t i = 0; i < count; i++)
        ops_matmul(pool, y[i], w[i], x, n_tok, scratch);
}

void ops_matmul(llmos_pool *pool, float *y, const ops_matrix *w, const float *x, size_t n_tok,
                void *scratch)
{
    if (w->packed) {
        matmul_packed(pool, 1, &y, &w, x, n_tok, scratch);
        return;
    }
    const quant_traits *tr = quant_traits_of(w->type);
    assert(tr && tr->supported && tr->vec_dot);
    matmul_job j = {.y = y, .w = w, .n_tok = n_tok, .dot = tr->vec_dot};
    if (tr->vec_dot_type == GGML_TYPE_F32) {
        j.act = (const uint8_t *)x;
        j.act_stride = w->n_in * sizeof(float);
    } else {
        /* quantize each token's activations once, as the kernel's format requires */
        const quant_traits *vt = quant_traits_of(tr->vec_dot_type);
        assert(vt && vt->from_float && scratch);
        j.act_stride = act_row_bytes(w->type, w->n_in);
        for (size_t t = 0; t < n_tok; t++)
            vt->from_float(x + t * w->n_in, (uint8_t *)scratch + t * j.act_stride, w->n_in);
        j.act = scratch;
    }
    /* below ~64K multiply-adds a job costs less than waking the workers */
    if ((double)w->n_out * (double)w->n_in * (double)n_tok < OPS_MIN_PARALLEL_WORK)
        pool = NULL;
    pool_parallel_for(pool, w->n_out, OPS_ROW_GRAIN, matmul_rows, &j);
}

void ops_get_row(const ops_matrix *w, size_t row, float *out)
{
    const quant_traits *tr = quant_traits_of(w->type);
    assert(tr && tr->to_float && row < w->n_out);
    tr->to_float((const uint8_t *)w->data + row * w->row_bytes, out, w->n_in);
}

/* ---- elementwise ------------------------------------------------------------------------- */

void ops_rmsnorm(float *y, const float *x, const float *weight, size_t n, size_t n_tok, float eps)
{
    /* RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x^2) + eps) * g */
    for (size_t t = 0; t < n_tok; t++) {
        const float *xr = x + t * n;
        float *yr = y + t * n;
        double ss = 0;
        for (size_t i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / (double)n + eps));
        for (size_t i = 0; i < n; i++)
            yr[i] = xr[i] * inv * weight[i];
    }
}

void ops_add_rows(float *x, const float *b, size_t n, size_t n_tok)
{
    for (size_t t = 0; t < n_tok; t++)
        ops_add(x + t * n, b, n);
}

void ops_add(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static pthread_once_t simd_once = PTHREAD_ONCE_INIT;
static bool simd_avx512;

static void simd_select(void)
{
#if defined(__x86_64__)
    const llmos_cpu *cpu = llmos_cpu_features();
    const char *isa = getenv("LLMOS_QUANT_ISA");
    bool capped = isa && (strcmp(isa, "ref") == 0 || strcmp(isa, "avx2") == 0);
    simd_avx512 = !capped && cpu->avx2 && cpu->fma && cpu->f16c && cpu->avx512f;
#endif
}

bool ops_simd_avx512(void)
{
    pthread_once(&simd_once, simd_select);
    return simd_avx512;
}

void ops_softmax(float *x, size_t n)
{
    assert(n > 0);
    if (ops_simd_avx512()) {
        ops_softmax_avx512(x, n);
        return;
    }
    float max = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > max)
            max = x[i];
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++)
        x[i] *= inv;
}

void ops_silu_mul(float *gate, const float *up, size_t n)
{
    if (ops_simd_avx512()) {
        ops_silu_mul_avx512(gate, up, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ops_rope(float *x, size_t n_heads, size_t head_dim, size_t rope_dim, size_t pos,
              float freq_base, ops_rope_mode mode)
{
    assert(rope_dim <= head_dim && rope_dim % 2 == 0);
    size_t half = rope_dim / 2;
    for (size_t i = 0; i < half; i++) {
        /* theta_i = pos * base^(-2i/d); computed in double so the angle is exact enough at
         * long positions */
        double theta = (double)pos * pow((double)freq_base, -2.0 * (double)i / (double)rope_dim);
        float c = (float)cos(theta), s = (float)sin(theta);
        for (size_t h = 0; h < n_heads; h++) {
            float *v = x + h * head_dim;
            size_t a = mode == OPS_ROPE_NORM ? 2 * i : i;
            size_t b = mode == OPS_ROPE_NORM ? 2 * i + 1 : i + half;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

/* ---- attention --------------------------------------------------------------------------- */

/* Per-worker scratch: scores for every cached position, the query converted for the cache's
 * dot product, and one value row in F32. Rounded to whole cache lines. */
static size_t round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

size_t ops_attention_scratch(ggml_type kv_type, size_t head_dim, size_t n_ctx)
{
    (void)kv_type;
    return round64(n_ctx * sizeof(float)) + round64(head_dim * sizeof(float)) * 2;
}

static void attention_items(void *ctx, size_t begin, size_t end, int worker)
{
    const ops_attention_args *a = ctx;
    const quant_traits *kt = quant_traits_of(a->kv_type);
    const quant_traits *qt = quant_traits_of(kt->vec_dot_type);
    size_t elt = kt->type_size; /* F32/F16/BF16: one element per block */
    size_t group = a->n_heads / a->n_kv_heads;
    size_t q_dim = a->n_heads * a->head_dim;

    uint8_t *scratch = (uint8_t *)a->scratch + (size_t)worker * a->scratch_per_worker;
    float *att = (float *)scratch;
    size_t n_ctx = a->pos0 + a->n_tok;
    void *qconv = scratch + round64(n_ctx * sizeof(float));
    float *vrow =
        (float *)(scratch + round64(n_ctx * sizeof(float)) + round64(a->head_dim * sizeof(float)));

    bool simd = ops_simd_avx512() && a->head_dim % 16 == 0;
    for (size_t item = begin; item < end; item++) {
        size_t t = item / a->n_heads, h = item % a->n_heads, g = h / group;
        const float *q = a->q + t * q_dim + h * a->head_dim;
        float *out = a->out + t * q_dim + h * a->head_dim;
        size_t n_keys = a->pos0 + t + 1; /* causal: this token and everything before it */
        if (a->bidirectional)
            n_keys = a->n_tok;
        /* a local layer sees the last `window` positions: keys first .. n_keys-1 */
        size_t first = a->window && n_keys > a->window ? n_keys - a->window : 0;
        size_t head_off = g * a->head_dim * elt + first * a->kv_stride;
        n_keys -= first;
        if (simd) {
            ops_attn_scores_avx512(att, q, (const uint8_t *)a->k + head_off, a->kv_stride,
                                   a->kv_type, n_keys, a->head_dim, a->scale);
            if (a->softcap > 0)
                ops_softcap(att, a->softcap, n_keys);
            ops_softmax_avx512(att, n_keys);
            ops_attn_values_avx512(out, att, (const uint8_t *)a->v + head_off, a->kv_stride,
                                   a->kv_type, n_keys, a->head_dim);
            continue;
        }

        const void *qd = q;
        if (kt->vec_dot_type != GGML_TYPE_F32) {
            qt->from_float(q, qconv, a->head_dim);
            qd = qconv;
        }
        for (size_t j = 0; j < n_keys; j++) {
            const uint8_t *k = (const uint8_t *)a->k + j * a->kv_stride + head_off;
            float s;
            kt->vec_dot(a->head_dim, &s, k, qd);
            att[j] = s * a->scale;
        }
        if (a->softcap > 0)
            ops_softcap(att, a->softcap, n_keys);
        ops_softmax(att, n_keys);

        memset(out, 0, a->head_dim * sizeof(float));
        for (size_t j = 0; j < n_keys; j++) {
            const uint8_t *v = (const uint8_t *)a->v + j * a->kv_stride + head_off;
            const float *vf = (const float *)v;
            if (a->kv_type != GGML_TYPE_F32) {
                kt->to_float(v, vrow, a->head_dim);
                vf = vrow;
            }
            float p = att[j];
            for (size_t d = 0; d < a->head_dim; d++)
                out[d] += p * vf[d];
        }
    }
}

void ops_attention(llmos_pool *pool, const ops_attention_args *a)
{
    assert(a->n_kv_heads > 0 && a->n_heads % a->n_kv_heads == 0);
    assert(a->scratch_per_worker >=
           ops_attention_scratch(a->kv_type, a->head_dim, a->pos0 + a->n_tok));
    const quant_traits *kt = quant_traits_of(a->kv_type);
    assert(kt && kt->block_size == 1 && kt->vec_dot);
    (void)kt;
    /* each item writes head_dim floats; group items so a chunk covers a cache line */
    size_t grain = a->head_dim >= 16 ? 1 : 16 / a->head_dim;
    double work =
        (double)a->n_tok * (double)a->n_heads * (double)a->head_dim * (double)(a->pos0 + a->n_tok);
    if (work < OPS_MIN_PARALLEL_WORK)
        pool = NULL;
    /* dynamic: with a causal mask later tokens have more keys, so equal slices are unequal
     * work */
    pool_parallel_for_dynamic(pool, a->n_tok * a->n_heads, grain, attention_items, (void *)a);
}

/* Several sequences' attention in one dispatch: the items (token, head) of every a[i] are
 * numbered one after the other and the pool's workers take ranges of them, so a step of many
 * decoding sequences costs one wait per layer rather than one per sequence. */
typedef struct attention_multi_job {
    const ops_attention_args *a;
    size_t n;
    size_t *first; /* [n + 1]: index of a[i]'s first item */
} attention_multi_job;

static void attention_multi_items(void *ctx, size_t begin, size_t end, int worker)
{
    const attention_multi_job *j = ctx;
    size_t i = 0;
    while (i + 1 < j->n && begin >= j->first[i + 1])
        i++;
    for (; i < j->n && begin < end; i++) {
        size_t stop = end < j->first[i + 1] ? end : j->first[i + 1];
        if (begin < stop)
            attention_items((void *)&j->a[i], begin - j->first[i], stop - j->first[i], worker);
        begin = stop;
    }
}

void ops_attention_multi(llmos_pool *pool, const ops_attention_args *a, size_t n)
{
    if (n == 1) {
        ops_attention(pool, &a[0]);
        return;
    }
    size_t first_small[17], *first = n < 17 ? first_small : malloc((n + 1) * sizeof *first);
    if (!first) { /* no memory for the index: one dispatch per sequence */
        for (size_t i = 0; i < n; i++)
            ops_attention(pool, &a[i]);
        return;
    }
    double work = 0;
    first[0] = 0;
    for (size_t i = 0; i < n; i++) {
        assert(a[i].n_kv_heads > 0 && a[i].n_heads % a[i].n_kv_heads == 0);
        assert(a[i].scratch_per_worker >=
               ops_attention_scratch(a[i].kv_type, a[i].head_dim, a[i].pos0 + a[i].n_tok));
        assert(a[i].head_dim == a[0].head_dim);
        first[i + 1] = first[i] + a[i].n_tok * a[i].n_heads;
        work += (double)a[i].n_tok * (double)a[i].n_heads * (double)a[i].head_dim *
                (double)(a[i].pos0 + a[i].n_tok);
    }
    if (work < OPS_MIN_PARALLEL_WORK)
        pool = NULL;
    size_t grain = a[0].head_dim >= 16 ? 1 : 16 / a[0].head_dim;
    attention_multi_job j = {.a = a, .n = n, .first = first};
    pool_parallel_for_dynamic(pool, first[n], grain, attention_multi_items, &j);
    if (first != first_small)
        free(first);
}
