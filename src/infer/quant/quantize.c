/*
 * quantize.c - convert a GGUF model's matrices to a quantized type (llmos/quantize.h).
 *
 * Two parts: the recipe (quantize_tensor_type: which type each tensor gets) and the
 * conversion (quantize_model: copy the metadata, plan every tensor, then stream each one
 * through the GGUF writer's callback, rows dequantized to F32 and quantized again on the
 * pool's threads, a chunk of rows at a time).
 *
 * The mixtures follow llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for the
 * architectures llmos runs, as documented in docs/inference.md:
 *   - output.weight (and token_embd.weight when it is also the output) is Q6_K for every
 *     quantized target except Q8_0 (kept) - the output projection is the most sensitive
 *     matrix;
 *   - Q4_K_M / Q5_K_M: attn_v and ffn_down of "more bits" layers are Q6_K, where a layer i of
 *     n uses more bits when i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2;
 *   - Q3_K_M: attn_v is Q5_K in layers 0-1 and Q4_K after; ffn_down is Q5_K in the first
 *     n/16 layers and Q4_K after; attn_output is Q4_K;
 *   - a K-quant for a tensor whose rows are not a multiple of 256 falls back to a 32-block
 *     type (Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0), and any type to
 *     F16 when rows are not a multiple of 32 either;
 *   - 1-D tensors (norms, biases) are F32.
 */
#include "llmos/quantize.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llmos/gguf.h"

typedef enum mix { MIX_PLAIN, MIX_Q3_K_M, MIX_Q4_K_M, MIX_Q5_K_M } mix;

typedef struct recipe {
    const char *name;
    ggml_type base;
    mix mix;
    uint32_t file_type; /* llama.cpp's enum llama_ftype (llama.h), stored as general.file_type */
} recipe;

/* file_type numbers as in file_type_names below. A plain K type is recorded as its "_S"
 * variant (all matrices of the base type). */
static const recipe recipes[] = {
    {"Q4_0", GGML_TYPE_Q4_0, MIX_PLAIN, 2},     {"Q4_1", GGML_TYPE_Q4_1, MIX_PLAIN, 3},
    {"Q5_0", GGML_TYPE_Q5_0, MIX_PLAIN, 8},     {"Q5_1", GGML_TYPE_Q5_1, MIX_PLAIN, 9},
    {"Q8_0", GGML_TYPE_Q8_0, MIX_PLAIN, 7},     {"Q2_K", GGML_TYPE_Q2_K, MIX_PLAIN, 10},
    {"Q3_K", GGML_TYPE_Q3_K, MIX_PLAIN, 11},    {"Q4_K", GGML_TYPE_Q4_K, MIX_PLAIN, 14},
    {"Q5_K", GGML_TYPE_Q5_K, MIX_PLAIN, 16},    {"Q6_K", GGML_TYPE_Q6_K, MIX_PLAIN, 18},
    {"F16", GGML_TYPE_F16, MIX_PLAIN, 1},       {"BF16", GGML_TYPE_BF16, MIX_PLAIN, 32},
    {"F32", GGML_TYPE_F32, MIX_PLAIN, 0},       {"Q3_K_M", GGML_TYPE_Q3_K, MIX_Q3_K_M, 12},
    {"Q4_K_M", GGML_TYPE_Q4_K, MIX_Q4_K_M, 15}, {"Q5_K_M", GGML_TYPE_Q5_K, MIX_Q5_K_M, 17},
};

/* general.file_type: llama.cpp's enum llama_ftype (include/llama.h, LLAMA_FTYPE_ALL_F32 = 0,
 * LLAMA_FTYPE_MOSTLY_<name> = value for the others), named without "MOSTLY_" as llama-quantize
 * and file names spell them. 4 (Q4_1 with F16 embeddings and output) is commented out in
 * llama.h but occurs in old files; 5 and 6 (Q4_2, Q4_3) and 33-35 (Q4_0_4_4, Q4_0_4_8,
 * Q4_0_8_8) were removed from llama.cpp and are not named. */
static const char *const file_type_names[] = {
    [0] = "F32",     [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",       [4] = "Q4_1_SOME_F16",
    [7] = "Q8_0",    [8] = "Q5_0",     [9] = "Q5_1",     [10] = "Q2_K",      [11] = "Q3_K_S",
    [12] = "Q3_K_M", [13] = "Q3_K_L",  [14] = "Q4_K_S",  [15] = "Q4_K_M",    [16] = "Q5_K_S",
    [17] = "Q5_K_M", [18] = "Q6_K",    [19] = "IQ2_XXS", [20] = "IQ2_XS",    [21] = "Q2_K_S",
    [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S",   [25] = "IQ4_NL",    [26] = "IQ3_S",
    [27] = "IQ3_M",  [28] = "IQ2_S",   [29] = "IQ2_M",   [30] = "IQ4_XS",    [31] = "IQ1_M",
    [32] = "BF16",   [36] = "TQ1_0",   [37] = "TQ2_0",   [38] = "MXFP4_MOE",
};

const char *quantize_file_type_name(uint32_t file_type)
{
    return file_type < LLMOS_ARRAY_LEN(file_type_names) ? file_type_names[file_type] : NULL;
}

const char *const *quantize_target_names(size_t *n)
{
    static const char *names[LLMOS_ARRAY_LEN(recipes)];
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(recipes); i++)
        names[i] = recipes[i].name;
    *n = LLMOS_ARRAY_LEN(recipes);
    return names;
}

static const recipe *find_recipe(const char *name)
{
    for (size_t i = 0; name && i < LLMOS_ARRAY_LEN(recipes); i++)
        if (strcasecmp(recipes[i].name, name) == 0)
            return &recipes[i];
    return NULL;
}

bool quantize_target_known(const char *name)
{
    return find_recipe(name) != NULL;
}

static bool is_quantized(ggml_type t)
{
    return t != GGML_TYPE_F32 && t != GGML_TYPE_F16 && t != GGML_TYPE_BF16;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third one
 * between get more bits. */
static bool use_more_bits(uint32_t i, uint32_t n)
{
    return i < n / 8 || i >= 7 * n / 8 || (i >= n / 8 && (i - n / 8) % 3 == 2);
}

/* "blk.<n>." at the start of a tensor name: the layer number n and the text after its dot.
 * False for other names and for numbers that do not fit (strtoul reports overflow, where
 * sscanf's %u would be undefined). */
static bool block_prefix(const char *name, uint32_t *layer, const char **rest)
{
    if (strncmp(name, "blk.", 4) != 0 || name[4] < '0' || name[4] > '9')
        return false;
    char *e;
    unsigned long l = strtoul(name + 4, &e, 10);
    if (*e != '.' || l >= UINT32_MAX)
        return false;
    *layer = (uint32_t)l;
    *rest = e + 1;
    return true;
}

/* "blk.12.ffn_down.weight" -> layer 12 and true when the name ends in ".<what>.weight". */
static bool block_tensor(const char *name, const char *what, uint32_t *layer)
{
    uint32_t l;
    const char *rest;
    if (!block_prefix(name, &l, &rest))
        return false;
    size_t n = strlen(what);
    if (strncmp(rest, what, n) != 0 || strcmp(rest + n, ".weight") != 0)
        return false;
    *layer = l;
    return true;
}

/* The type for a row length that the chosen type's blocks do not divide. */
static ggml_type fallback(ggml_type t, uint64_t ne0)
{
    if (ne0 % quant_traits_of(t)->block_size == 0)
        return t;
    switch (t) {
    case GGML_TYPE_Q2_K:
    case GGML_TYPE_Q3_K: t = GGML_TYPE_Q4_0; break;
    case GGML_TYPE_Q4_K: t = GGML_TYPE_Q5_0; break;
    case GGML_TYPE_Q5_K: t = GGML_TYPE_Q5_1; break;
    case GGML_TYPE_Q6_K: t = GGML_TYPE_Q8_0; break;
    default: break;
    }
    return ne0 % quant_traits_of(t)->block_size == 0 ? t : GGML_TYPE_F16;
}

llmos_err quantize_tensor_type(const char *target, const char *name, uint32_t n_dims, uint64_t ne0,
                               uint32_t n_layer, bool tied, ggml_type *out)
{
    const recipe *r = find_recipe(target);
    if (!r)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "unknown quantization type '%s' (known: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K "
                          "Q3_K Q4_K Q5_K Q6_K F16 BF16 F32 Q3_K_M Q4_K_M Q5_K_M)",
                          target ? target : "(null)");
    size_t len = strlen(name);
    bool weight = len >= 7 && strcmp(name + len - 7, ".weight") == 0;
    if (n_dims < 2 || !weight) {
        *out = GGML_TYPE_F32;
        return LLMOS_OK;
    }
    ggml_type t = r->base;
    uint32_t layer;
    bool output =
        strcmp(name, "output.weight") == 0 || (tied && strcmp(name, "token_embd.weight") == 0);
    if (output && is_quantized(t) && t != GGML_TYPE_Q8_0)
        t = GGML_TYPE_Q6_K;
    else if (block_tensor(name, "attn_v", &layer)) {
        if ((r->mix == MIX_Q4_K_M || r->mix == MIX_Q5_K_M) && use_more_bits(layer, n_layer))
            t = GGML_TYPE_Q6_K;
        else if (r->mix == MIX_Q3_K_M)
            t = layer < 2 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
    } else if (block_tensor(name, "ffn_down", &layer)) {
        if ((r->mix == MIX_Q4_K_M || r->mix == MIX_Q5_K_M) && use_more_bits(layer, n_layer))
            t = GGML_TYPE_Q6_K;
        else if (r->mix == MIX_Q3_K_M)
            t = layer < n_layer / 16 ? GGML_TYPE_Q5_K : GGML_TYPE_Q4_K;
    } else if (block_tensor(name, "attn_output", &layer) && r->mix == MIX_Q3_K_M) {
        t = GGML_TYPE_Q4_K;
    }
    *out = fallback(t, ne0);
    return LLMOS_OK;
}

/* ---- the conversion ----------------------------------------------------------------------- */

typedef struct plan_entry {
    const gguf_tensor *src;
    ggml_type type;
} plan_entry;

typedef struct job {
    const quantize_params *p;
    const plan_entry *plan;
    size_t n_plan;
    int n_workers;
    float *scratch; /* n_workers rows of F32 */
    size_t scratch_row;
    /* the chunk being converted */
    const uint8_t *src_rows;
    size_t src_row_bytes;
    uint8_t *dst_rows;
    size_t dst_row_bytes;
    uint64_t ne0;
    const quant_traits *from, *to;
} job;

/* Rows [begin, end) of the current chunk: source row to F32 in this worker's scratch, then
 * to the target type. Each worker writes its own rows of dst (whole rows: no sharing beyond
 * the one cache line at a range's edge). */
static void convert_rows(void *ctx, size_t begin, size_t end, int worker)
{
    job *j = ctx;
    float *row = j->scratch + (size_t)worker * j->scratch_row;
    for (size_t r = begin; r < end; r++) {
        const uint8_t *src = j->src_rows + r * j->src_row_bytes;
        uint8_t *dst = j->dst_rows + r * j->dst_row_bytes;
        if (j->from == j->to) {
            memcpy(dst, src, j->dst_row_bytes);
            continue;
        }
        if (j->from == quant_traits_of(GGML_TYPE_F32))
            memcpy(row, src, j->ne0 * sizeof(float));
        else
            j->from->to_float(src, row, j->ne0);
        j->to->from_float(row, dst, j->ne0);
    }
}

/* The writer's callback for tensor i: convert it a chunk of rows at a time (about 16 MiB of
 * output per chunk) and pass each chunk on. */
static llmos_err write_tensor(void *ctx, size_t i, gguf_stream *out)
{
    job *j = ctx;
    const plan_entry *e = &j->plan[i];
    double t0 = llmos_time_now();
    j->ne0 = e->src->ne[0];
    uint64_t n_rows = e->src->n_elements / j->ne0;
    j->from = quant_traits_of(e->src->type);
    j->to = quant_traits_of(e->type);
    j->src_row_bytes = (size_t)(j->ne0 / j->from->block_size * j->from->type_size);
    j->dst_row_bytes = (size_t)(j->ne0 / j->to->block_size * j->to->type_size);
    size_t chunk = (16u << 20) / j->dst_row_bytes;
    if (chunk == 0)
        chunk = 1;
    if (chunk > n_rows)
        chunk = n_rows > 0 ? (size_t)n_rows : 1; /* malloc(0) may return NULL */
    uint8_t *dst = malloc(chunk * j->dst_row_bytes);
    if (!dst)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory quantizing %s (%zu bytes)", e->src->name,
                          chunk * j->dst_row_bytes);
    llmos_err err = LLMOS_OK;
    for (uint64_t r = 0; r < n_rows && !err; r += chunk) {
        if (j->p->cancel && atomic_load(j->p->cancel)) {
            err = llmos_fail(LLMOS_ERR_CANCELLED, "quantizing %s stopped on request", e->src->name);
            break;
        }
        size_t n = n_rows - r < chunk ? (size_t)(n_rows - r) : chunk;
        j->src_rows = (const uint8_t *)e->src->data + r * j->src_row_bytes;
        j->dst_rows = dst;
        pool_parallel_for(j->p->pool, n, 1, convert_rows, j);
        err = gguf_stream_write(out, dst, n * j->dst_row_bytes);
    }
    free(dst);
    if (!err && j->p->progress)
        j->p->progress(j->p->user, i, j->n_plan, e->src->name, e->src->type, e->type,
                       llmos_time_now() - t0);
    return err;
}

llmos_err quantize_model(const char *in_path, const char *out_path, const quantize_params *p)
{
    assert(in_path && out_path && p);
    const recipe *r = find_recipe(p->target);
    if (!r) {
        ggml_type unused;
        return quantize_tensor_type(p->target, "x.weight", 2, 256, 1, false, &unused);
    }
    assert(quantize_file_type_name(r->file_type) != NULL);
    if (strcmp(in_path, out_path) == 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "%s: input and output are the same file; write the quantized model "
                          "to a new path",
                          in_path);
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    plan_entry *plan = NULL;
    job j = {.p = p};
    llmos_err err = gguf_open(in_path, &f);
    if (err)
        return err;
    size_t n_t = gguf_n_tensors(f);
    plan = calloc(n_t ? n_t : 1, sizeof *plan);
    if (!plan) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        goto done;
    }

    /* n_layer: the block count from the metadata, else one more than the highest blk.N */
    uint32_t n_layer = 0;
    int64_t bc = gguf_find_arch_key(f, "block_count");
    int64_t v;
    if (bc >= 0 && gguf_val_i64(f, bc, &v) && v > 0 && v <= UINT32_MAX)
        n_layer = (uint32_t)v;
    bool tied = gguf_find_tensor(f, "output.weight") == NULL;
    uint64_t max_ne0 = 1;
    for (size_t i = 0; i < n_t; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint32_t l;
        const char *rest;
        if (!n_layer && block_prefix(t->name, &l, &rest) && l + 1 > n_layer)
            n_layer = l + 1;
        if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 && t->type != GGML_TYPE_BF16) {
            err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                             "%s: tensor '%s' is %s; quantize reads F32, F16 or BF16 models "
                             "(quantizing a quantized model compounds the error: start from "
                             "the original)",
                             in_path, t->name, quant_type_name(t->type));
            goto done;
        }
        plan[i].src = t;
        max_ne0 = t->ne[0] > max_ne0 ? t->ne[0] : max_ne0;
    }
    for (size_t i = 0; i < n_t; i++) {
        const gguf_tensor *t = plan[i].src;
        uint32_t n_dims = 0;
        for (uint32_t d = 0; d < 4; d++)
            if (t->ne[d] > 1)
                n_dims = d + 1;
        if ((err = quantize_tensor_type(r->name, t->name, n_dims, t->ne[0], n_layer ? n_layer : 1,
                                        tied, &plan[i].type)))
            goto done;
    }

    /* metadata: every key, then the file type */
    if ((err = gguf_writer_new(&w)))
        goto done;
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        if ((err = gguf_set_from(w, gguf_key(f, i), f, (int64_t)i)))
            goto done;
    if ((err = gguf_set_u32(w, "general.file_type", r->file_type)) ||
        (err = gguf_set_u32(w, "general.quantization_version", 2)))
        goto done;

    j.plan = plan;
    j.n_plan = n_t;
    j.n_workers = p->pool ? pool_threads(p->pool) : 1;
    j.scratch_row = (size_t)max_ne0;
    j.scratch = malloc((size_t)j.n_workers * j.scratch_row * sizeof(float));
    if (!j.scratch) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_t && !err; i++) {
        const gguf_tensor *t = plan[i].src;
        uint32_t n_dims = t->n_dims ? t->n_dims : 1;
        err = gguf_add_tensor_fn(w, t->name, plan[i].type, n_dims, t->ne, write_tensor, &j);
    }
    gguf_writer_set_cancel(w, p->cancel);
    if (!err)
        err = gguf_writer_write(w, out_path);
done:
    free(j.scratch);
    free(plan);
    gguf_writer_free(w);
    gguf_close(f);
    return err;
}
