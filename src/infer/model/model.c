/*
 * model.c - the transformer: loading llama/qwen2 weights from GGUF, the KV cache, forward().
 *
 * Sections, top to bottom: the model (hyperparameters and weights, read in place from the
 * GGUF memory map), the context (KV cache and activation buffers of one sequence), and the
 * forward pass, which reads like the math and leaves every loop to ops.c.
 *
 * Architectures (tensor and key names as llama.cpp's converter writes them, see ggml's
 * docs/gguf.md "Standardized key-value pairs" and llama.cpp's llama-arch.cpp):
 *   llama  pre-norm decoder; RMSNorm; rotary embedding on adjacent pairs ("NORM"; the
 *          converter permutes the Q and K rows of Hugging Face checkpoints so that this layout
 *          applies); grouped-query attention; SwiGLU FFN; untied output unless output.weight
 *          is absent (the llama2.c models share it with token_embd).
 *   qwen2  the same plus biases on Q, K and V, rotary on halves ("NEOX"), and a tied output
 *          when output.weight is absent (Qwen2.5-0.5B).
 *
 * Batching: model_eval takes up to n_batch tokens per forward pass, so the weights of each
 * matmul are read from memory once per batch instead of once per token.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "infer/model/arch.h"
#include "infer/model/kv.h"
#include "infer/model/ops.h"
#include "llmos/infer.h"

/* ---- the model --------------------------------------------------------------------------- */

typedef model_layer layer;

struct llmos_model {
    gguf_file *file;
    model_hparams hp;
    const model_arch_desc *desc;
    ops_rope_mode rope_mode;
    ops_matrix tok_embd; /* [n_vocab] rows of n_embd */
    ops_matrix output;   /* [n_vocab] rows of n_embd; == tok_embd when tied */
    float *output_norm;
    layer *layers;
    float *vectors; /* one allocation behind every norm weight and bias (F32 copies) */
    size_t vectors_used, vectors_cap;
    void *weights; /* huge-page arena holding every matmul weight (see place_weights) */
    size_t weights_size;
    uint8_t digest[32]; /* the model's identity (model_digest) */

    /* the options of the forward pass that vary by architecture (arch.h) */
    float embd_scale;       /* token embeddings are multiplied by this (1, or sqrt(n_embd)) */
    float attn_scale;       /* of q . k: 1 / sqrt(head_dim) unless the architecture says */
    model_rope rope_global; /* frequencies of the global layers */
    model_rope rope_local;  /* of the sliding-window layers (Gemma 3 has its own base) */
    model_rope rope_long;   /* LongRoPE (phi3): used when a context exceeds n_ctx_orig */
    uint32_t n_ctx_orig;
    bert_model *bert; /* encoders: the whole model (bert.c) */
};

/* Reading helpers: each names the tensor or key and what was expected on failure. */

static llmos_err arch_u32(const gguf_file *f, const char *arch, const char *suffix, bool required,
                          uint32_t def, uint32_t *out)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (required)
        return gguf_require_u32(f, key, out);
    *out = gguf_get_u32(f, key, def);
    return LLMOS_OK;
}

static float arch_f32(const gguf_file *f, const char *arch, const char *suffix, float def)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_get_f32(f, key, def);
}

static llmos_err get_matrix(llmos_model *m, const char *name, size_t n_in, size_t n_out,
                            ops_matrix *out)
{
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    if (!t)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: tensor '%s' is missing", gguf_name(m->file), name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64
                          "] (%u dims), expected [%zu, %zu]",
                          gguf_name(m->file), name, t->ne[0], t->ne[1], t->ne[2], t->n_dims, n_in,
                          n_out);
    if (!ops_matrix_init(out, t->data, t->type, n_in, n_out))
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: tensor '%s' has type %s, which this build cannot compute with "
                          "(convert the model to F16, BF16 or a supported quantization)",
                          gguf_name(m->file), name, quant_type_name(t->type));
    return LLMOS_OK;
}

/* A 1-D tensor of n elements, converted to F32 into the model's vector block. A missing
 * optional tensor leaves *out NULL. */
static llmos_err get_vector(llmos_model *m, const char *name, size_t n, bool required, float **out)
{
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(m->file, name);
    if (!t) {
        if (!required)
            return LLMOS_OK;
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: tensor '%s' is missing", gguf_name(m->file), name);
    }
    if (t->n_elements != n || t->ne[0] != n)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: tensor '%s' has %" PRIu64 " elements (ne[0] = %" PRIu64
                          "), expected a vector of %zu",
                          gguf_name(m->file), name, t->n_elements, t->ne[0], n);
    const quant_traits *tr = quant_traits_of(t->type);
    if (!tr || !tr->to_float)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, not readable",
                          gguf_name(m->file), name, quant_type_name(t->type));
    assert(m->vectors_used + n <= m->vectors_cap);
    *out = m->vectors + m->vectors_used;
    m->vectors_used += n;
    tr->to_float(t->data, *out, n);
    return LLMOS_OK;
}

static llmos_err load_hparams(llmos_model *m)
{
    const gguf_file *f = m->file;
    model_hparams *hp = &m->hp;
    const char *arch = gguf_architecture(f);
    if (!arch)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: key 'general.architecture' is missing",
                          gguf_name(f));
    const model_arch_desc *desc = arch_find(arch);
    if (!desc)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: architecture '%.40s' is not supported (llmos runs %s)",
                          gguf_name(f), arch, arch_names());
    m->desc = desc;
    hp->arch = desc->arch;
    hp->arch_name = desc->name;
    hp->encoder = desc->encoder;
    m->rope_mode = desc->rope;
    if (desc->encoder)
        return LLMOS_OK; /* bert.c reads its own */
    llmos_err err;
    if ((err = arch_u32(f, arch, "block_count", true, 0, &hp->n_layer)) ||
        (err = arch_u32(f, arch, "embedding_length", true, 0, &hp->n_embd)) ||
        (err = arch_u32(f, arch, "feed_forward_length", true, 0, &hp->n_ff)) ||
        (err = arch_u32(f, arch, "attention.head_count", true, 0, &hp->n_head)) ||
        (err = arch_u32(f, arch, "context_length", true, 0, &hp->n_ctx_train)))
        return err;
    if (hp->n_layer == 0 || hp->n_embd == 0 || hp->n_ff == 0 || hp->n_head == 0 ||
        hp->n_ctx_train == 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: a hyperparameter is zero (layers %u, embedding %u, ffn %u, heads "
                          "%u, context %u)",
                          gguf_name(f), hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head,
                          hp->n_ctx_train);
    (void)arch_u32(f, arch, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv);
    if (hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: %u attention heads cannot be shared by %u key/value heads (need "
                          "a divisor)",
                          gguf_name(f), hp->n_head, hp->n_head_kv);
    (void)arch_u32(f, arch, "attention.key_length", false, hp->n_embd / hp->n_head, &hp->head_dim);
    if (hp->head_dim == 0 || hp->head_dim % 2 != 0)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: head size %u must be even and non-zero",
                          gguf_name(f), hp->head_dim);
    uint32_t v_len = 0;
    (void)arch_u32(f, arch, "attention.value_length", false, hp->head_dim, &v_len);
    if (v_len != hp->head_dim)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: %s.attention.value_length %u differs from the key length %u",
                          gguf_name(f), arch, v_len, hp->head_dim);
    (void)arch_u32(f, arch, "rope.dimension_count", false, hp->head_dim, &hp->rope_dim);
    if (hp->rope_dim == 0 || hp->rope_dim % 2 != 0 || hp->rope_dim > hp->head_dim)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: rope.dimension_count %u must be even and at most the head size %u",
                          gguf_name(f), hp->rope_dim, hp->head_dim);
    hp->rope_freq_base = arch_f32(f, arch, "rope.freq_base", 10000.0f);
    hp->rms_eps = arch_f32(f, arch, "attention.layer_norm_rms_epsilon", 1e-5f);
    if (!(hp->rope_freq_base > 0) || !(hp->rms_eps >= 0))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: rope.freq_base %g or rms epsilon %g invalid",
                          gguf_name(f), (double)hp->rope_freq_base, (double)hp->rms_eps);

    /* attention options: sliding window, soft-capping, the scale of q . k */
    if (desc->swa_pattern) {
        (void)arch_u32(f, arch, "attention.sliding_window", false, 0, &hp->n_swa);
        if (hp->n_swa > hp->n_ctx_train)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s: %s.attention.sliding_window %u is larger than the context "
                              "length %u",
                              gguf_name(f), arch, hp->n_swa, hp->n_ctx_train);
    }
    hp->attn_softcap = arch_f32(f, arch, "attn_logit_softcapping", 0.0f);
    hp->final_softcap = arch_f32(f, arch, "final_logit_softcapping", 0.0f);
    if (!(hp->attn_softcap >= 0) || !(hp->final_softcap >= 0))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: logit soft-capping %g / %g must be positive (or absent)",
                          gguf_name(f), (double)hp->attn_softcap, (double)hp->final_softcap);
    m->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    /* Gemma 2 27B (46 layers) and Gemma 3 27B (62 layers) scale queries by the width of a head
     * of the residual stream instead (query_pre_attn_scalar = n_embd / n_head), as llama.cpp
     * does for those sizes */
    if ((desc->arch == MODEL_ARCH_GEMMA2 && hp->n_layer == 46) ||
        (desc->arch == MODEL_ARCH_GEMMA3 && hp->n_layer == 62))
        m->attn_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
    m->attn_scale = arch_f32(f, arch, "attention.scale", m->attn_scale);
    m->embd_scale = desc->embd_scale ? sqrtf((float)hp->n_embd) : 1.0f;
    return LLMOS_OK;
}

/* The rotary frequencies base^(-2i/rope_dim) * scale / factor[i] (factor NULL: 1). */
static llmos_err make_rope(llmos_model *m, model_rope *r, float base, float scale,
                           const float *factors, float mscale)
{
    size_t half = m->hp.rope_dim / 2;
    r->inv_freq = malloc(half * sizeof *r->inv_freq);
    if (!r->inv_freq)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory for rope frequencies");
    for (size_t i = 0; i < half; i++) {
        /* the same expression as ops_rope, so unscaled models rotate exactly as before */
        double f = pow((double)base, -2.0 * (double)i / (double)m->hp.rope_dim);
        if (scale != 1.0f)
            f *= (double)scale;
        if (factors)
            f /= (double)factors[i];
        r->inv_freq[i] = f;
    }
    r->mscale = mscale;
    return LLMOS_OK;
}

/* Rope scaling from the metadata and the optional factor tensors (llama.cpp's layout):
 * <arch>.rope.scaling.type "none" or "linear" (positions divided by rope.scaling.factor);
 * rope_freqs.weight, frequency divisors per pair (Llama 3.1/3.2, computed by the converter
 * from rope_scaling {factor, low/high_freq_factor, original_max_position_embeddings});
 * rope_factors_short/long.weight (Phi-3 LongRoPE) with rope.scaling.attn_factor and
 * rope.scaling.original_context_length. */
static llmos_err load_rope(llmos_model *m)
{
    const gguf_file *f = m->file;
    model_hparams *hp = &m->hp;
    const char *arch = hp->arch_name;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *type = gguf_get_str(f, key, "none");
    float scale = 1.0f;
    if (strcmp(type, "linear") == 0) {
        float factor = arch_f32(f, arch, "rope.scaling.factor", 1.0f);
        if (!(factor >= 1.0f))
            return llmos_fail(LLMOS_ERR_FORMAT, "%s: %s.rope.scaling.factor %g must be >= 1",
                              gguf_name(f), arch, (double)factor);
        scale = 1.0f / factor;
    } else if (strcmp(type, "none") != 0 && strcmp(type, "longrope") != 0 &&
               strcmp(type, "llama3") != 0) {
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: %s is '%.20s'; llmos applies linear, llama3 (rope_freqs) and "
                          "LongRoPE scaling only",
                          gguf_name(f), key, type);
    }
    size_t half = hp->rope_dim / 2;
    float *freqs = NULL, *f_short = NULL, *f_long = NULL;
    llmos_err err;
    if ((err = get_vector(m, "rope_freqs.weight", half, false, &freqs)) ||
        (err = get_vector(m, "rope_factors_short.weight", half, false, &f_short)) ||
        (err = get_vector(m, "rope_factors_long.weight", half, false, &f_long)))
        return err;
    for (size_t i = 0; i < half; i++)
        if ((freqs && !(freqs[i] > 0)) || (f_short && !(f_short[i] > 0)) ||
            (f_long && !(f_long[i] > 0)))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s: rope frequency factor %zu is not positive", gguf_name(f), i);
    float mscale = arch_f32(f, arch, "rope.scaling.attn_factor", 1.0f);
    if ((err = make_rope(m, &m->rope_global, hp->rope_freq_base, scale,
                         freqs ? freqs : f_short, mscale)))
        return err;
    if (f_long) {
        (void)arch_u32(f, arch, "rope.scaling.original_context_length", false, hp->n_ctx_train,
                       &m->n_ctx_orig);
        if ((err = make_rope(m, &m->rope_long, hp->rope_freq_base, scale, f_long, mscale)))
            return err;
    }
    if (m->desc->swa_pattern && m->desc->swa_rope_base > 0 &&
        (err = make_rope(m, &m->rope_local, m->desc->swa_rope_base, 1.0f, NULL, 1.0f)))
        return err;
    return LLMOS_OK;
}

static size_t arch_dim_size(const model_hparams *hp, arch_dim d)
{
    size_t q = (size_t)hp->n_head * hp->head_dim, kv = (size_t)hp->n_head_kv * hp->head_dim;
    switch (d) {
    case ARCH_DIM_NONE: return 1;
    case ARCH_DIM_EMBD: return hp->n_embd;
    case ARCH_DIM_Q: return q;
    case ARCH_DIM_KV: return kv;
    case ARCH_DIM_QKV: return q + 2 * kv;
    case ARCH_DIM_FF: return hp->n_ff;
    case ARCH_DIM_FF2: return 2 * (size_t)hp->n_ff;
    case ARCH_DIM_HEAD: return hp->head_dim;
    }
    return 0;
}

/* One tensor of a layer as the descriptor says: a vector, a matrix, or a fused matrix split
 * into row ranges (Q, K, V or gate, up), each part a view of the same rows. */
static llmos_err load_layer_tensor(llmos_model *m, layer *L, const arch_tensor *at, const char *name)
{
    const model_hparams *hp = &m->hp;
    char *base = (char *)L;
    size_t n_in = arch_dim_size(hp, at->in);
    if (at->out == ARCH_DIM_NONE)
        return get_vector(m, name, n_in, at->required, (float **)(void *)(base + at->field[0]));
    if (!at->required && !gguf_find_tensor(m->file, name))
        return LLMOS_OK;
    ops_matrix whole;
    llmos_err err = get_matrix(m, name, n_in, arch_dim_size(hp, at->out), &whole);
    if (err || at->n_parts == 1) {
        if (!err)
            *(ops_matrix *)(void *)(base + at->field[0]) = whole;
        return err;
    }
    size_t q = (size_t)hp->n_head * hp->head_dim, kv = (size_t)hp->n_head_kv * hp->head_dim;
    size_t parts[3] = {q, kv, kv};
    if (at->n_parts == 2)
        parts[0] = parts[1] = hp->n_ff;
    size_t row = 0;
    for (size_t p = 0; p < at->n_parts; p++) {
        ops_matrix *part = (ops_matrix *)(void *)(base + at->field[p]);
        bool ok = ops_matrix_init(part, (const uint8_t *)whole.data + row * whole.row_bytes,
                                  whole.type, n_in, parts[p]);
        assert(ok); /* the whole one was accepted with the same type and rows */
        (void)ok;
        row += parts[p];
    }
    return LLMOS_OK;
}

static llmos_err load_weights(llmos_model *m)
{
    model_hparams *hp = &m->hp;
    const model_arch_desc *desc = m->desc;
    size_t d = hp->n_embd;

    const gguf_tensor *emb = gguf_find_tensor(m->file, "token_embd.weight");
    if (!emb)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing",
                          gguf_name(m->file));
    if (emb->ne[1] == 0 || emb->ne[1] > INT32_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: token_embd.weight has %" PRIu64 " rows",
                          gguf_name(m->file), emb->ne[1]);
    hp->n_vocab = (uint32_t)emb->ne[1];

    /* Sizes below come from the file's metadata; bound them by what the file holds before
     * allocating: every layer has the descriptor's required tensors. The norm weights and
     * biases copied to F32 are whole one-dimensional tensors, so their total is at most the
     * elements of all such tensors. */
    size_t n_tensors = gguf_n_tensors(m->file), per_layer = 0;
    for (size_t i = 0; i < desc->n_tensors; i++)
        per_layer += desc->tensors[i].required;
    if (hp->n_layer > n_tensors / per_layer)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: %s.block_count is %u but the file has only %zu tensors (each "
                          "layer has at least %zu)",
                          gguf_name(m->file), hp->arch_name, hp->n_layer, n_tensors, per_layer);
    for (size_t i = 0; i < n_tensors; i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        if (t->n_elements == t->ne[0])
            m->vectors_cap += (size_t)t->n_elements;
    }
    m->vectors = calloc(m->vectors_cap + 1, sizeof(float));
    /* n_layer >= 1 was checked with the other hyperparameters */
    // NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI)
    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->vectors || !m->layers)
        return llmos_fail(LLMOS_ERR_NOMEM, "%s: out of memory for the model's tables",
                          gguf_name(m->file));

    llmos_err err;
    if ((err = get_matrix(m, "token_embd.weight", d, hp->n_vocab, &m->tok_embd)))
        return err;
    if ((err = get_vector(m, "output_norm.weight", d, true, &m->output_norm)))
        return err;
    hp->tied_output = gguf_find_tensor(m->file, "output.weight") == NULL;
    if (hp->tied_output)
        m->output = m->tok_embd;
    else if ((err = get_matrix(m, "output.weight", d, hp->n_vocab, &m->output)))
        return err;
    if ((err = load_rope(m)))
        return err;

    for (uint32_t i = 0; i < hp->n_layer; i++) {
        layer *L = &m->layers[i];
        for (size_t k = 0; k < desc->n_tensors; k++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%u.%s", i, desc->tensors[k].name);
            if ((err = load_layer_tensor(m, L, &desc->tensors[k], name)))
                return err;
        }
        if ((L->bq != NULL) != (L->bk != NULL) || (L->bq != NULL) != (L->bv != NULL))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s: layer %u has some of the attn_q/k/v biases but not all",
                              gguf_name(m->file), i);
        /* local (sliding-window) layers: all but every swa_pattern-th, from the first */
        unsigned pat = desc->swa_pattern;
        bool local = pat && hp->n_swa && i % pat < pat - 1;
        L->window = local ? hp->n_swa : 0;
        if (i == 0) {
            hp->weight_type = L->wq.type;
            hp->qkv_bias = L->bq != NULL;
        }
    }
    for (size_t i = 0; i < gguf_n_tensors(m->file); i++)
        hp->n_params += gguf_tensor_at(m->file, i)->n_elements;
    return LLMOS_OK;
}

/* Move every matmul weight out of the file map into one arena of huge pages: packed into
 * 16-row groups where this CPU has a packed kernel for the type (pack/quant_pack.h), else copied as
 * it is. Streaming weights through 4 KiB pages of the page cache costs a TLB miss per page,
 * which under virtualisation is a two-level walk; measured here, generation from the map ran
 * at little more than half the speed of the same weights in huge pages (bench/roofline
 * --anon). The token embedding stays in the map: it is read a row per token. Memory: the
 * arena is the size of the weights; the file's pages stay in the page cache only as long as
 * the kernel wants them there. */
/* Matrix i of the model's 1 + 7 n_layer matmul weights: the output, then each layer's. */
static ops_matrix *matrix_at(llmos_model *m, size_t i)
{
    if (i == 0)
        return &m->output;
    layer *L = &m->layers[(i - 1) / 7];
    ops_matrix *lm[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    return lm[(i - 1) % 7];
}

/* Bytes matrix w takes in the arena: packed, else as it is; 64-byte aligned. */
static size_t arena_bytes(const ops_matrix *w)
{
    size_t bytes = ops_matrix_packed_bytes(w);
    if (bytes == 0)
        bytes = w->row_bytes * w->n_out;
    return (bytes + 63) / 64 * 64;
}

static llmos_err place_weights(llmos_model *m)
{
    size_t n_mats = 1 + 7 * (size_t)m->hp.n_layer, total = 0;
    for (size_t i = 0; i < n_mats; i++)
        total += arena_bytes(matrix_at(m, i));
    m->weights = llmos_huge_alloc(total);
    if (!m->weights) { /* not fatal: compute from the map */
        LOG_WARN("model", "%s: no memory for a %.0f MiB weight arena; reading weights in place",
                 gguf_name(m->file), (double)total / 1048576.0);
        return LLMOS_OK;
    }
    m->weights_size = total;
    llmos_pool *pool = NULL;
    if (pool_new(0, &pool))
        pool = NULL; /* pack on this thread */
    uint8_t *p = m->weights;
    for (size_t i = 0; i < n_mats; i++) {
        ops_matrix *w = matrix_at(m, i);
        size_t bytes = arena_bytes(w);
        assert(w->data);
        if (ops_matrix_packed_bytes(w)) {
            ops_matrix_pack(pool, w, p);
        } else {
            memcpy(p, w->data, w->row_bytes * w->n_out);
            w->data = p;
        }
        p += bytes;
    }
    pool_free(pool);
    return LLMOS_OK;
}

/* The model's identity, for KV snapshots (a cache computed by one model is meaningless to
 * another): SHA-256 over the GGUF's header (every metadata pair and every tensor's name,
 * shape, type and offset: the bytes before the data section) and over samples of every
 * tensor's data (its first, middle and last KiB), so that two files of one shape with
 * different weights differ too, without reading gigabytes at load. */
static void identify(llmos_model *m)
{
    crypto_hash_sha256_state st;
    if (sodium_init() < 0) {
        /* idempotent; SHA-256 needs nothing it sets up */
    }
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, gguf_bytes(m->file), gguf_data_offset(m->file));
    for (size_t i = 0; i < gguf_n_tensors(m->file); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->file, i);
        const uint8_t *d = t->data;
        size_t n = (size_t)t->size, k = n < 1024 ? n : 1024;
        crypto_hash_sha256_update(&st, d, k);
        crypto_hash_sha256_update(&st, d + n / 2 - (n / 2 < k / 2 ? n / 2 : k / 2), k);
        crypto_hash_sha256_update(&st, d + n - k, k);
    }
    crypto_hash_sha256_final(&st, m->digest);
}

const uint8_t *model_digest(const llmos_model *m)
{
    return m->digest;
}

llmos_err model_load_gguf(gguf_file *f, llmos_model **out)
{
    *out = NULL;
    llmos_model *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory loading a model");
    }
    m->file = f;
    llmos_err err = load_hparams(m);
    if (!err && m->hp.encoder)
        err = bert_load(m->file, &m->hp, &m->bert);
    else if (!err)
        err = load_weights(m);
    if (!err)
        identify(m);
    if (!err && !m->hp.encoder)
        err = place_weights(m);
    if (err) {
        model_free(m);
        return err;
    }
    *out = m;
    return LLMOS_OK;
}

llmos_err model_load(const char *path, llmos_model **out)
{
    *out = NULL;
    gguf_file *f = NULL;
    llmos_err err = gguf_open(path, &f);
    if (err)
        return err;
    return model_load_gguf(f, out);
}

void model_free(llmos_model *m)
{
    if (!m)
        return;
    free(m->layers);
    free(m->vectors);
    free(m->rope_global.inv_freq);
    free(m->rope_local.inv_freq);
    free(m->rope_long.inv_freq);
    bert_free(m->bert);
    llmos_huge_free(m->weights, m->weights_size);
    gguf_close(m->file);
    free(m);
}

const model_hparams *model_hparams_of(const llmos_model *m)
{
    return &m->hp;
}

const bert_model *model_bert(const llmos_model *m)
{
    return m->bert;
}

const gguf_file *model_gguf(const llmos_model *m)
{
    return m->file;
}

/* ---- the context ------------------------------------------------------------------------- */

/* The activations of one forward pass over up to n_tok token rows of up to n_seqs sequences
 * ([n_tok][width] each), the per-worker attention scratch for caches of up to n_ctx
 * positions, and the logits of each sequence's last token. A context owns one for its own
 * passes (n_seqs 1, the logits are the context's); a model_batch owns one for passes over
 * many contexts. */
typedef struct fwd_buf {
    size_t n_tok, n_seqs, n_ctx;
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2;
    float *logits; /* [n_seqs][n_vocab] */
    size_t *pos;   /* [n_tok]: the position of each row in its sequence */
    void *mm_scratch;
    uint8_t *att_scratch;
    size_t att_scratch_per_worker;
    ops_attention_args *att_args; /* [n_seqs] */
} fwd_buf;

struct llmos_model_ctx {
    const llmos_model *m;
    model_ctx_params p;
    size_t n_ctx, pos;
    size_t kv_row_bytes;        /* one position of one layer: n_head_kv * head_dim in kv_type */
    uint8_t *k_cache, *v_cache; /* [n_layer][n_ctx] rows */
    size_t kv_bytes;            /* of both caches together (what a KV pool lent) */
    fwd_buf w;                  /* activations of this context's own passes */
};

model_ctx_params model_ctx_default_params(void)
{
    return (model_ctx_params){.n_ctx = 0, .n_batch = 64, .kv_type = GGML_TYPE_F32, .pool = NULL};
}

static size_t max_size(size_t a, size_t b)
{
    return a > b ? a : b;
}

size_t model_kv_bytes(const llmos_model *m, size_t n_ctx, ggml_type kv_type)
{
    uint64_t row = 0;
    (void)quant_row_size(kv_type, (size_t)m->hp.n_head_kv * m->hp.head_dim, &row);
    return 2 * (size_t)m->hp.n_layer * n_ctx * (size_t)row;
}

/* n zeroed floats on a 64-byte boundary, so that the threads of a matmul, which write whole
 * 16-float chunks of a row, never share a cache line. NULL when out of memory. */
static float *floats64(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static void fwd_buf_free(fwd_buf *w)
{
    free(w->x);
    free(w->xb);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->att);
    free(w->hb);
    free(w->hb2);
    free(w->logits);
    free(w->pos);
    free(w->mm_scratch);
    free(w->att_scratch);
    free(w->att_args);
    memset(w, 0, sizeof *w);
}

/* Allocate w for passes of m; false when out of memory (w is then freed). */
static bool fwd_buf_init(fwd_buf *w, const llmos_model *m, size_t n_tok, size_t n_seqs,
                         size_t n_ctx, ggml_type kv_type, int workers)
{
    const model_hparams *hp = &m->hp;
    size_t d = hp->n_embd, q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff, nb = n_tok;
    *w = (fwd_buf){.n_tok = n_tok, .n_seqs = n_seqs, .n_ctx = n_ctx};
    w->x = floats64(nb * d);
    w->xb = floats64(max_size(nb, n_seqs) * max_size(d, q_dim));
    w->q = floats64(nb * q_dim);
    w->k = floats64(nb * kv_dim);
    w->v = floats64(nb * kv_dim);
    w->att = floats64(nb * q_dim);
    w->hb = floats64(nb * ff);
    w->hb2 = floats64(nb * ff);
    w->logits = floats64(n_seqs * hp->n_vocab);
    w->pos = calloc(nb, sizeof *w->pos);
    w->att_args = calloc(n_seqs, sizeof *w->att_args);

    /* the largest activation scratch any matmul of this model needs for a pass (the output
     * projection reads one row per sequence) */
    size_t mm = 0, rows = max_size(nb, n_seqs);
    const layer *L0 = &m->layers[0];
    const ops_matrix *mats[] = {&L0->wq,       &L0->wk,     &L0->wv,       &L0->wo,
                                &L0->ffn_gate, &L0->ffn_up, &L0->ffn_down, &m->output};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(mats); i++)
        mm = max_size(mm, ops_matmul_scratch(mats[i]->type, mats[i]->n_in, rows));
    for (uint32_t l = 1; l < hp->n_layer; l++) { /* layers may mix types (e.g. Q4_K_M) */
        const layer *L = &m->layers[l];
        const ops_matrix *lm[] = {&L->wq,       &L->wk,     &L->wv,      &L->wo,
                                  &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < LLMOS_ARRAY_LEN(lm); i++)
            mm = max_size(mm, ops_matmul_scratch(lm[i]->type, lm[i]->n_in, rows));
    }
    w->mm_scratch = mm ? malloc(mm) : NULL;

    w->att_scratch_per_worker = ops_attention_scratch(kv_type, hp->head_dim, n_ctx);
    w->att_scratch = aligned_alloc(64, w->att_scratch_per_worker * (size_t)workers);
    if (!w->x || !w->xb || !w->q || !w->k || !w->v || !w->att || !w->hb || !w->hb2 ||
        !w->logits || !w->pos || !w->att_args || (mm && !w->mm_scratch) || !w->att_scratch) {
        fwd_buf_free(w);
        return false;
    }
    return true;
}

llmos_err model_ctx_new(const llmos_model *m, const model_ctx_params *p, llmos_model_ctx **out)
{
    *out = NULL;
    const model_hparams *hp = &m->hp;
    model_ctx_params params = *p;
    if (params.n_ctx == 0)
        params.n_ctx = hp->n_ctx_train;
    if (params.n_batch == 0)
        params.n_batch = 64;
    if (hp->encoder)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s is an embedding model (%s): it embeds text but cannot generate",
                          gguf_name(m->file), hp->arch_name);
    if (params.n_ctx > hp->n_ctx_train)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "context of %u positions asked for, but the model's context length "
                          "(%s.context_length) is %u",
                          params.n_ctx, hp->arch_name, hp->n_ctx_train);
    if (params.kv_type != GGML_TYPE_F32 && params.kv_type != GGML_TYPE_F16)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "KV cache type %s: use F32 or F16",
                          quant_type_name(params.kv_type));
    if (params.n_batch > params.n_ctx)
        params.n_batch = params.n_ctx;

    llmos_model_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory for a model context");
    c->m = m;
    c->p = params;
    c->n_ctx = params.n_ctx;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    uint64_t row = 0;
    (void)quant_row_size(params.kv_type, kv_dim, &row);
    c->kv_row_bytes = (size_t)row;
    size_t cache_bytes = 0;
    if (__builtin_mul_overflow((size_t)hp->n_layer * c->n_ctx, c->kv_row_bytes, &cache_bytes))
        cache_bytes = SIZE_MAX; /* malloc fails below with a clear message */
    llmos_err err = LLMOS_OK;
    if (params.kv_pool) { /* the pool says what does not fit, naming the numbers */
        if (cache_bytes > SIZE_MAX / 2)
            cache_bytes = SIZE_MAX / 2;
        if ((err = model_kvpool_take(params.kv_pool, 2 * cache_bytes, c->n_ctx))) {
            free(c);
            return err;
        }
        c->kv_bytes = 2 * cache_bytes;
    }
    c->k_cache = malloc(cache_bytes);
    c->v_cache = malloc(cache_bytes);

    int workers = params.pool ? pool_threads(params.pool) : 1;
    bool bufs = fwd_buf_init(&c->w, m, params.n_batch, 1, c->n_ctx, params.kv_type, workers);
    if (!c->k_cache || !c->v_cache || !bufs) {
        model_ctx_free(c);
        return llmos_fail(LLMOS_ERR_NOMEM,
                          "out of memory for a context of %zu positions (KV cache %.1f MiB in "
                          "%s): ask for a smaller context",
                          (size_t)params.n_ctx, 2.0 * (double)cache_bytes / 1048576.0,
                          quant_type_name(params.kv_type));
    }
    *out = c;
    return LLMOS_OK;
}

void model_ctx_free(llmos_model_ctx *c)
{
    if (!c)
        return;
    free(c->k_cache);
    free(c->v_cache);
    if (c->p.kv_pool)
        model_kvpool_give(c->p.kv_pool, c->kv_bytes);
    fwd_buf_free(&c->w);
    free(c);
}

size_t model_ctx_pos(const llmos_model_ctx *c)
{
    return c->pos;
}
size_t model_ctx_size(const llmos_model_ctx *c)
{
    return c->n_ctx;
}
const llmos_model *model_ctx_model(const llmos_model_ctx *c)
{
    return c->m;
}

void model_ctx_truncate(llmos_model_ctx *c, size_t pos)
{
    assert(pos <= c->pos);
    if (pos < c->pos)
        c->pos = pos;
}

/* ---- the forward pass -------------------------------------------------------------------- */

/* Row `pos` of layer l's key or value cache. */
static uint8_t *kv_row(const llmos_model_ctx *c, uint8_t *cache, size_t l, size_t pos)
{
    return cache + (l * c->n_ctx + pos) * c->kv_row_bytes;
}

/* Store n rows of keys and values (F32, [n][kv_dim]) at positions pos0.. of layer l. */
static void kv_store(llmos_model_ctx *c, size_t l, const float *k, const float *v, size_t pos0,
                     size_t n)
{
    const model_hparams *hp = &c->m->hp;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    const quant_traits *tr = quant_traits_of(c->p.kv_type);
    for (size_t t = 0; t < n; t++) {
        tr->from_float(k + t * kv_dim, kv_row(c, c->k_cache, l, pos0 + t), kv_dim);
        tr->from_float(v + t * kv_dim, kv_row(c, c->v_cache, l, pos0 + t), kv_dim);
    }
}

/* The rotary frequencies of layer L in context c: LongRoPE's long factors once the context
 * is longer than the original training context, else the layer's own. */
static const model_rope *layer_rope(const llmos_model_ctx *c, const layer *L)
{
    const llmos_model *m = c->m;
    if (m->rope_long.inv_freq && c->n_ctx > m->n_ctx_orig)
        return &m->rope_long;
    return L->window && m->rope_local.inv_freq ? &m->rope_local : &m->rope_global;
}

/* One sequence's part of a forward pass: rows row0..row0+n-1 of the activations are its
 * tokens at positions pos0..pos0+n-1 of its context. */
typedef struct fwd_seq {
    llmos_model_ctx *c;
    size_t row0, n, pos0;
} fwd_seq;

/* One pass over tokens[0..n) of n_seqs sequences (seqs[] cut the rows in consecutive runs):
 * fills each context's KV cache at its positions and w->logits[s] for the last token of
 * sequence s. Every matmul reads its weights once for all the rows, whatever sequence they
 * belong to; only rotary positions, the cache and attention are per sequence. Vaswani et al.
 * 2017 with the Llama changes (Touvron et al. 2023): pre-normalisation with RMSNorm, rotary
 * embeddings, SwiGLU; the other architectures' options as their descriptors say (arch.c). */
static void forward(const llmos_model *m, llmos_pool *pool, fwd_buf *w, const fwd_seq *seqs,
                    size_t n_seqs, const int32_t *tokens, size_t n)
{
    const model_hparams *hp = &m->hp;
    size_t d = hp->n_embd, q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim, ff = hp->n_ff;
    float *x = w->x, *xb = w->xb, *q = w->q, *k = w->k, *v = w->v, *att = w->att;
    float *hb = w->hb, *hb2 = w->hb2;
    void *scr = w->mm_scratch;
    assert(n <= w->n_tok && n_seqs <= w->n_seqs);

    /* token embeddings, and where each row sits in its sequence */
    for (size_t t = 0; t < n; t++)
        ops_get_row(&m->tok_embd, (size_t)tokens[t], x + t * d);
    for (size_t s = 0; s < n_seqs; s++)
        for (size_t t = 0; t < seqs[s].n; t++)
            w->pos[seqs[s].row0 + t] = seqs[s].pos0 + t;
    if (m->embd_scale != 1.0f) /* Gemma: sqrt(n_embd) */
        ops_scale(x, m->embd_scale, n * d);

    for (size_t l = 0; l < hp->n_layer; l++) {
        const layer *L = &m->layers[l];

        /* attention: xb = rmsnorm(x); q, k, v = W xb (+ b); rotate q, k; cache k, v */
        ops_rmsnorm(xb, x, L->attn_norm, d, n, hp->rms_eps);
        ops_matmul_multi(pool, 3, (float *const[]){q, k, v},
                         (const ops_matrix *const[]){&L->wq, &L->wk, &L->wv}, xb, n, scr);
        if (L->bq) {
            ops_add_rows(q, L->bq, q_dim, n);
            ops_add_rows(k, L->bk, kv_dim, n);
            ops_add_rows(v, L->bv, kv_dim, n);
        }
        if (L->q_norm) { /* Qwen3, Gemma 3: RMSNorm over each head of q and k */
            ops_rmsnorm(q, q, L->q_norm, hp->head_dim, n * hp->n_head, hp->rms_eps);
            ops_rmsnorm(k, k, L->k_norm, hp->head_dim, n * hp->n_head_kv, hp->rms_eps);
        }
        for (size_t s = 0; s < n_seqs; s++) {
            const model_rope *rope = layer_rope(seqs[s].c, L);
            for (size_t t = seqs[s].row0; t < seqs[s].row0 + seqs[s].n; t++) {
                ops_rope_freqs(q + t * q_dim, hp->n_head, hp->head_dim, hp->rope_dim, w->pos[t],
                               rope->inv_freq, rope->mscale, m->rope_mode);
                ops_rope_freqs(k + t * kv_dim, hp->n_head_kv, hp->head_dim, hp->rope_dim,
                               w->pos[t], rope->inv_freq, rope->mscale, m->rope_mode);
            }
        }

        /* per sequence: att = softmax(q k^T * scale) v over its own cache, causally (within
         * the layer's window, soft-capped where the architecture says) */
        for (size_t s = 0; s < n_seqs; s++) {
            const fwd_seq *sq = &seqs[s];
            kv_store(sq->c, l, k + sq->row0 * kv_dim, v + sq->row0 * kv_dim, sq->pos0, sq->n);
            w->att_args[s] = (ops_attention_args){
                .out = att + sq->row0 * q_dim,
                .q = q + sq->row0 * q_dim,
                .k = kv_row(sq->c, sq->c->k_cache, l, 0),
                .v = kv_row(sq->c, sq->c->v_cache, l, 0),
                .kv_type = sq->c->p.kv_type,
                .kv_stride = sq->c->kv_row_bytes,
                .n_tok = sq->n,
                .pos0 = sq->pos0,
                .n_heads = hp->n_head,
                .n_kv_heads = hp->n_head_kv,
                .head_dim = hp->head_dim,
                .scale = m->attn_scale,
                .window = L->window,
                .softcap = hp->attn_softcap,
                .scratch = w->att_scratch,
                .scratch_per_worker = w->att_scratch_per_worker};
        }
        ops_attention_multi(pool, w->att_args, n_seqs);

        /* x = x + Wo att */
        ops_matmul(pool, xb, &L->wo, att, n, scr);
        if (L->attn_post_norm) /* Gemma */
            ops_rmsnorm(xb, xb, L->attn_post_norm, d, n, hp->rms_eps);
        ops_add(x, xb, n * d);

        /* x = x + down(silu(gate xb) * up xb), xb = rmsnorm(x) */
        ops_rmsnorm(xb, x, L->ffn_norm, d, n, hp->rms_eps);
        ops_matmul_multi(pool, 2, (float *const[]){hb, hb2},
                         (const ops_matrix *const[]){&L->ffn_gate, &L->ffn_up}, xb, n, scr);
        if (m->desc->act == ARCH_ACT_GELU) /* GeGLU */
            ops_gelu_mul(hb, hb2, n * ff);
        else
            ops_silu_mul(hb, hb2, n * ff);
        ops_matmul(pool, xb, &L->ffn_down, hb, n, scr);
        if (L->ffn_post_norm) /* Gemma */
            ops_rmsnorm(xb, xb, L->ffn_post_norm, d, n, hp->rms_eps);
        ops_add(x, xb, n * d);
    }

    /* logits of each sequence's last token only: output(rmsnorm(x)) */
    for (size_t s = 0; s < n_seqs; s++)
        ops_rmsnorm(xb + s * d, x + (seqs[s].row0 + seqs[s].n - 1) * d, m->output_norm, d, 1,
                    hp->rms_eps);
    ops_matmul(pool, w->logits, &m->output, xb, n_seqs, scr);
    if (hp->final_softcap > 0) /* Gemma 2 */
        ops_softcap(w->logits, hp->final_softcap, n_seqs * hp->n_vocab);
}

/* Whether n more tokens fit c and are all in the vocabulary; the error names the first that
 * does not. */
static llmos_err eval_check(const llmos_model_ctx *c, const int32_t *tokens, size_t n)
{
    if (n == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "model_eval: no tokens to evaluate");
    if (n > c->n_ctx - c->pos)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "context length %zu exceeded: %zu positions are used and %zu more "
                          "tokens were given (start a new context, shorten the prompt, or use a "
                          "larger context up to the model's %u)",
                          c->n_ctx, c->pos, n, c->m->hp.n_ctx_train);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= c->m->hp.n_vocab)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "token %zu of %zu has id %" PRId32
                              ", outside the vocabulary of %u tokens",
                              i, n, tokens[i], c->m->hp.n_vocab);
    return LLMOS_OK;
}

llmos_err model_eval(llmos_model_ctx *c, const int32_t *tokens, size_t n, const float **logits)
{
    if (logits)
        *logits = NULL;
    llmos_err err = eval_check(c, tokens, n);
    if (err)
        return err;
    for (size_t done = 0; done < n;) {
        size_t nb = n - done < c->p.n_batch ? n - done : c->p.n_batch;
        fwd_seq one = {.c = c, .row0 = 0, .n = nb, .pos0 = c->pos};
        forward(c->m, c->p.pool, &c->w, &one, 1, tokens + done, nb);
        c->pos += nb;
        done += nb;
    }
    if (logits)
        *logits = c->w.logits;
    return LLMOS_OK;
}

/* For embeddings (embed.c): row t of the last forward pass after the output norm. */
void model_ctx_hidden(const llmos_model_ctx *c, size_t t, float *out)
{
    const model_hparams *hp = &c->m->hp;
    assert(t < c->p.n_batch);
    ops_rmsnorm(out, c->w.x + t * hp->n_embd, c->m->output_norm, hp->n_embd, 1, hp->rms_eps);
}

/* ---- batches of sequences ---------------------------------------------------------------- */

struct model_batch {
    const llmos_model *m;
    model_batch_params p;
    fwd_buf w;
    fwd_seq *seqs;
    int32_t *tokens;
};

llmos_err model_batch_new(const llmos_model *m, const model_batch_params *p, model_batch **out)
{
    *out = NULL;
    if (p->n_tokens == 0 || p->n_seqs == 0 || p->n_seqs > p->n_tokens || p->n_ctx == 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "model_batch_new: %u tokens, %u sequences and %u positions: each must "
                          "be at least 1 and the sequences at most the tokens",
                          p->n_tokens, p->n_seqs, p->n_ctx);
    if (m->hp.encoder)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s is an embedding model (%s): it embeds text but cannot generate",
                          gguf_name(m->file), m->hp.arch_name);
    model_batch *b = calloc(1, sizeof *b);
    if (!b)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory for a batch");
    b->m = m;
    b->p = *p;
    int workers = p->pool ? pool_threads(p->pool) : 1;
    /* the attention scratch is sized for F32, the larger of the cache types */
    bool ok = fwd_buf_init(&b->w, m, p->n_tokens, p->n_seqs, p->n_ctx, GGML_TYPE_F32, workers);
    b->seqs = calloc(p->n_seqs, sizeof *b->seqs);
    b->tokens = malloc(p->n_tokens * sizeof *b->tokens);
    if (!ok || !b->seqs || !b->tokens) {
        model_batch_free(b);
        return llmos_fail(LLMOS_ERR_NOMEM,
                          "out of memory for a batch of %u tokens of %u sequences", p->n_tokens,
                          p->n_seqs);
    }
    *out = b;
    return LLMOS_OK;
}

void model_batch_free(model_batch *b)
{
    if (!b)
        return;
    fwd_buf_free(&b->w);
    free(b->seqs);
    free(b->tokens);
    free(b);
}

llmos_err model_eval_batch(model_batch *b, const model_batch_seq *seqs, size_t n_seqs)
{
    if (n_seqs == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "model_eval_batch: no sequences to evaluate");
    if (n_seqs > b->p.n_seqs)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "model_eval_batch: %zu sequences given, the batch holds %u", n_seqs,
                          b->p.n_seqs);
    size_t total = 0;
    for (size_t s = 0; s < n_seqs; s++) {
        llmos_model_ctx *c = seqs[s].ctx;
        if (!c || c->m != b->m)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "model_eval_batch: sequence %zu has no context of this model", s);
        for (size_t r = 0; r < s; r++)
            if (seqs[r].ctx == c)
                return llmos_fail(LLMOS_ERR_INVALID,
                                  "model_eval_batch: sequences %zu and %zu share a context", r,
                                  s);
        if (c->n_ctx > b->p.n_ctx)
            return llmos_fail(LLMOS_ERR_LIMIT,
                              "model_eval_batch: sequence %zu has a context of %zu positions, "
                              "the batch was made for at most %u",
                              s, c->n_ctx, b->p.n_ctx);
        llmos_err err = eval_check(c, seqs[s].tokens, seqs[s].n);
        if (err)
            return llmos_fail_context(err, "model_eval_batch: sequence %zu: ", s);
        total += seqs[s].n;
    }
    if (total > b->p.n_tokens)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "model_eval_batch: %zu tokens given, the batch holds %u per pass", total,
                          b->p.n_tokens);
    size_t row = 0;
    for (size_t s = 0; s < n_seqs; s++) {
        llmos_model_ctx *c = seqs[s].ctx;
        b->seqs[s] = (fwd_seq){.c = c, .row0 = row, .n = seqs[s].n, .pos0 = c->pos};
        memcpy(b->tokens + row, seqs[s].tokens, seqs[s].n * sizeof *b->tokens);
        row += seqs[s].n;
    }
    forward(b->m, b->p.pool, &b->w, b->seqs, n_seqs, b->tokens, total);
    size_t n_vocab = b->m->hp.n_vocab;
    for (size_t s = 0; s < n_seqs; s++) {
        llmos_model_ctx *c = seqs[s].ctx;
        memcpy(c->w.logits, b->w.logits + s * n_vocab, n_vocab * sizeof(float));
        c->pos += seqs[s].n;
    }
    return LLMOS_OK;
}

const float *model_ctx_logits(const llmos_model_ctx *c)
{
    return c->w.logits;
}

/* ---- what kvsnap.c reads and writes (kv.h) ----------------------------------------------- */

size_t model_ctx_kv_row_bytes(const llmos_model_ctx *c)
{
    return c->kv_row_bytes;
}

ggml_type model_ctx_kv_type(const llmos_model_ctx *c)
{
    return c->p.kv_type;
}

uint8_t *model_ctx_kv_rows(const llmos_model_ctx *c, bool values, size_t l)
{
    assert(l < c->m->hp.n_layer);
    return kv_row(c, values ? c->v_cache : c->k_cache, l, 0);
}

void model_ctx_set_pos(llmos_model_ctx *c, size_t pos)
{
    assert(pos <= c->n_ctx);
    c->pos = pos;
}
