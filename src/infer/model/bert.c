/*
 * bert.c - BERT-family encoders (BGE, all-MiniLM, E5): text in, one unit vector out.
 *
 * The model (Devlin et al. 2019; the layout of llama.cpp's converter for architecture
 * "bert"): x = LayerNorm(token_embd[id] + token_types[0] + position_embd[pos]); then per
 * layer, post-norm:
 *     q, k, v = W x + b                      attn_q/k/v .weight/.bias
 *     x = LayerNorm(x + Wo attention + bo)   attn_output, attn_output_norm
 *     x = LayerNorm(x + W2 gelu(W1 x + b1) + b2)   ffn_up, ffn_down, layer_output_norm
 * where attention is bidirectional (every token sees every token) over n_head heads. The
 * embedding pools the final states per bert.pooling_type (1 mean, 2 [CLS] = the first
 * token; llama.cpp's numbering) and scales the result to unit length, as the
 * sentence-transformers configurations of these models do.
 *
 * nomic-bert (nomic-embed-text) is the same encoder with rotary positions instead of the
 * position table (NEOX layout over whole heads, base nomic-bert.rope.freq_base), a fused
 * attn_qkv projection, a SwiGLU FFN (ffn_gate, ffn_up, ffn_down) and no biases in the
 * attention and FFN matrices; this file reads either layout, each bias optional there.
 *
 * One text is one forward pass with no cache; the texts of a batch are stacked so that each
 * weight matrix is read once per batch.
 */
#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/model/arch.h"

enum { BERT_POOL_NONE = 0, BERT_POOL_MEAN = 1, BERT_POOL_CLS = 2 };

typedef struct bert_layer {
    ops_matrix wq, wk, wv, wo, up, down, gate; /* gate: nomic-bert's SwiGLU, else unused */
    float *bq, *bk, *bv, *bo, *b_up, *b_down;
    float *attn_norm_w, *attn_norm_b, *out_norm_w, *out_norm_b;
} bert_layer;

struct bert_model {
    const gguf_file *f;
    model_hparams hp;
    const char *arch; /* "bert" or "nomic-bert": the prefix of the keys */
    bool rotary;      /* nomic-bert: rope on q and k, no position table */
    bool gated;       /* nomic-bert: SwiGLU FFN without biases */
    double *inv_freq; /* rotary frequencies [head_dim / 2] */
    float eps;
    uint32_t pooling;
    ops_matrix tok_embd, pos_embd, type_embd;
    float *embd_norm_w, *embd_norm_b;
    bert_layer *layers;
    float **vecs; /* every F32 copy, for freeing */
    size_t n_vecs, cap_vecs;
    void *weights; /* the layers' matrices, packed where this CPU has a packed kernel */
    size_t weights_size;
};

/* Copy the layers' matrices into one huge-page arena, packed into 16-row groups where the
 * type has a packed kernel here (as model.c's place_weights does for decoders: measured
 * there, streaming from the file map ran at about half speed). Not fatal when memory is
 * short: the matrices are then read in place. */
static void bert_place_weights(bert_model *b)
{
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *p = b->weights;
        for (uint32_t l = 0; l < b->hp.n_layer; l++) {
            bert_layer *L = &b->layers[l];
            ops_matrix *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->up, &L->down, &L->gate};
            for (size_t i = 0; i < (b->gated ? 7u : 6u); i++) {
                size_t packed = ops_matrix_packed_bytes(ms[i]);
                size_t bytes = packed ? packed : ms[i]->row_bytes * ms[i]->n_out;
                bytes = (bytes + 63) / 64 * 64;
                if (pass == 0) {
                    total += bytes;
                    continue;
                }
                if (packed) {
                    ops_matrix_pack(NULL, ms[i], p);
                } else {
                    memcpy(p, ms[i]->data, ms[i]->row_bytes * ms[i]->n_out);
                    ms[i]->data = p;
                }
                p += bytes;
            }
        }
        if (pass == 0) {
            b->weights = llmos_huge_alloc(total);
            if (!b->weights)
                return;
            b->weights_size = total;
        }
    }
}

static llmos_err bert_matrix(bert_model *b, const char *name, size_t n_in, size_t n_out,
                             ops_matrix *out)
{
    const gguf_tensor *t = gguf_find_tensor(b->f, name);
    if (!t)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: tensor '%s' is missing", gguf_name(b->f), name);
    if (t->n_dims != 2 || t->ne[0] != n_in || t->ne[1] != n_out)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: tensor '%s' has shape [%" PRIu64 ", %" PRIu64 "] (%u dims), "
                          "expected [%zu, %zu]",
                          gguf_name(b->f), name, t->ne[0], t->ne[1], t->n_dims, n_in, n_out);
    if (!ops_matrix_init(out, t->data, t->type, n_in, n_out))
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: tensor '%s' has type %s, which this build cannot compute with",
                          gguf_name(b->f), name, quant_type_name(t->type));
    return LLMOS_OK;
}

static llmos_err bert_vector_opt(bert_model *b, const char *name, size_t n, bool required,
                                 float **out)
{
    *out = NULL;
    const gguf_tensor *t = gguf_find_tensor(b->f, name);
    if (!t && !required)
        return LLMOS_OK;
    if (!t)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: tensor '%s' is missing", gguf_name(b->f), name);
    if (t->n_elements != n || t->ne[0] != n)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: tensor '%s' has %" PRIu64 " elements, expected a vector of %zu",
                          gguf_name(b->f), name, t->n_elements, n);
    const quant_traits *tr = quant_traits_of(t->type);
    if (!tr || !tr->to_float)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, not readable",
                          gguf_name(b->f), name, quant_type_name(t->type));
    if (b->n_vecs == b->cap_vecs) {
        size_t cap = b->cap_vecs ? 2 * b->cap_vecs : 64;
        float **v = realloc(b->vecs, cap * sizeof *v);
        if (!v)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory loading an encoder");
        b->vecs = v;
        b->cap_vecs = cap;
    }
    float *v = malloc(n * sizeof *v);
    if (!v)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory loading an encoder");
    tr->to_float(t->data, v, n);
    b->vecs[b->n_vecs++] = v;
    *out = v;
    return LLMOS_OK;
}

static llmos_err bert_vector(bert_model *b, const char *name, size_t n, float **out)
{
    return bert_vector_opt(b, name, n, true, out);
}

static llmos_err bert_u32(const bert_model *b, const char *suffix, bool required, uint32_t def,
                          uint32_t *out)
{
    const gguf_file *f = b->f;
    char key[96];
    snprintf(key, sizeof key, "%s.%s", b->arch, suffix);
    if (required)
        return gguf_require_u32(f, key, out);
    *out = gguf_get_u32(f, key, def);
    return LLMOS_OK;
}

llmos_err bert_load(const gguf_file *f, model_hparams *hp, bert_model **out)
{
    *out = NULL;
    bert_model *b = calloc(1, sizeof *b);
    if (!b)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory loading an encoder");
    b->f = f;
    b->arch = hp->arch == MODEL_ARCH_NOMIC_BERT ? "nomic-bert" : "bert";
    b->rotary = b->gated = hp->arch == MODEL_ARCH_NOMIC_BERT;
    llmos_err err;
    if ((err = bert_u32(b, "block_count", true, 0, &hp->n_layer)) ||
        (err = bert_u32(b, "embedding_length", true, 0, &hp->n_embd)) ||
        (err = bert_u32(b, "feed_forward_length", true, 0, &hp->n_ff)) ||
        (err = bert_u32(b, "attention.head_count", true, 0, &hp->n_head)) ||
        (err = bert_u32(b, "context_length", true, 0, &hp->n_ctx_train)))
        goto fail;
    if (hp->n_layer == 0 || hp->n_embd == 0 || hp->n_ff == 0 || hp->n_head == 0 ||
        hp->n_ctx_train == 0 || hp->n_embd % hp->n_head != 0) {
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "%s: encoder hyperparameters do not fit (layers %u, embedding %u, ffn "
                         "%u, heads %u, context %u; the heads must divide the embedding)",
                         gguf_name(f), hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head,
                         hp->n_ctx_train);
        goto fail;
    }
    hp->n_head_kv = hp->n_head;
    hp->head_dim = hp->n_embd / hp->n_head;
    hp->rope_dim = 0;
    char key[96];
    snprintf(key, sizeof key, "%s.attention.layer_norm_epsilon", b->arch);
    b->eps = gguf_get_f32(f, key, 1e-12f);
    (void)bert_u32(b, "pooling_type", false, BERT_POOL_MEAN, &b->pooling);
    if (b->pooling != BERT_POOL_MEAN && b->pooling != BERT_POOL_CLS) {
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                         "%s: %s.pooling_type %u: llmos pools by mean (1) or [CLS] (2)",
                         gguf_name(f), b->arch, b->pooling);
        goto fail;
    }
    if (b->rotary) {
        if (hp->head_dim % 2) {
            err = llmos_fail(LLMOS_ERR_FORMAT, "%s: rotary heads of odd size %u", gguf_name(f),
                             hp->head_dim);
            goto fail;
        }
        snprintf(key, sizeof key, "%s.rope.freq_base", b->arch);
        hp->rope_freq_base = gguf_get_f32(f, key, 1000.0f);
        hp->rope_dim = hp->head_dim;
        if (!(hp->rope_freq_base > 0)) {
            err = llmos_fail(LLMOS_ERR_FORMAT, "%s: %s %g is not positive", gguf_name(f), key,
                             (double)hp->rope_freq_base);
            goto fail;
        }
        b->inv_freq = malloc(hp->head_dim / 2 * sizeof *b->inv_freq);
        if (!b->inv_freq) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory loading an encoder");
            goto fail;
        }
        for (uint32_t i = 0; i < hp->head_dim / 2; i++)
            b->inv_freq[i] = pow((double)hp->rope_freq_base, -2.0 * i / (double)hp->head_dim);
    }
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->ne[1] == 0 || emb->ne[1] > INT32_MAX) {
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing or empty",
                         gguf_name(f));
        goto fail;
    }
    hp->n_vocab = (uint32_t)emb->ne[1];
    const gguf_tensor *types = gguf_find_tensor(f, "token_types.weight");
    size_t d = hp->n_embd, ff = hp->n_ff;
    size_t n_types = types ? (size_t)types->ne[1] : 0;
    size_t per_layer = b->gated ? 8 : 16;
    if (hp->n_layer > gguf_n_tensors(f) / per_layer) {
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "%s: %s.block_count is %u but the file has only %zu tensors (each "
                         "layer has %zu)",
                         gguf_name(f), b->arch, hp->n_layer, gguf_n_tensors(f), per_layer);
        goto fail;
    }
    b->layers = calloc(hp->n_layer, sizeof *b->layers);
    if (!b->layers) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory loading an encoder");
        goto fail;
    }
    if ((err = bert_matrix(b, "token_embd.weight", d, hp->n_vocab, &b->tok_embd)) ||
        (!b->rotary &&
         (err = bert_matrix(b, "position_embd.weight", d, hp->n_ctx_train, &b->pos_embd))) ||
        (err = bert_matrix(b, "token_types.weight", d, n_types ? n_types : 1, &b->type_embd)) ||
        (err = bert_vector(b, "token_embd_norm.weight", d, &b->embd_norm_w)) ||
        (err = bert_vector(b, "token_embd_norm.bias", d, &b->embd_norm_b)))
        goto fail;
    for (uint32_t i = 0; i < hp->n_layer; i++) {
        bert_layer *L = &b->layers[i];
        char name[96];
#define T(s) (snprintf(name, sizeof name, "blk.%u.%s", i, s), name)
        bool bias = !b->gated; /* nomic-bert's matrices have none */
        if (gguf_find_tensor(f, T("attn_qkv.weight"))) { /* fused: rows Q, K, V */
            ops_matrix qkv;
            if ((err = bert_matrix(b, name, d, 3 * d, &qkv)))
                goto fail;
            ops_matrix *parts[3] = {&L->wq, &L->wk, &L->wv};
            for (size_t k = 0; k < 3; k++) {
                bool ok = ops_matrix_init(parts[k], (const uint8_t *)qkv.data + k * d * qkv.row_bytes,
                                          qkv.type, d, d);
                assert(ok);
                (void)ok;
            }
        } else if ((err = bert_matrix(b, T("attn_q.weight"), d, d, &L->wq)) ||
                   (err = bert_matrix(b, T("attn_k.weight"), d, d, &L->wk)) ||
                   (err = bert_matrix(b, T("attn_v.weight"), d, d, &L->wv))) {
            goto fail;
        }
        if ((err = bert_matrix(b, T("attn_output.weight"), d, d, &L->wo)) ||
            (err = bert_matrix(b, T("ffn_up.weight"), d, ff, &L->up)) ||
            (err = bert_matrix(b, T("ffn_down.weight"), ff, d, &L->down)) ||
            (b->gated && (err = bert_matrix(b, T("ffn_gate.weight"), d, ff, &L->gate))) ||
            (err = bert_vector_opt(b, T("attn_q.bias"), d, bias, &L->bq)) ||
            (err = bert_vector_opt(b, T("attn_k.bias"), d, bias, &L->bk)) ||
            (err = bert_vector_opt(b, T("attn_v.bias"), d, bias, &L->bv)) ||
            (err = bert_vector_opt(b, T("attn_output.bias"), d, bias, &L->bo)) ||
            (err = bert_vector_opt(b, T("ffn_up.bias"), ff, bias, &L->b_up)) ||
            (err = bert_vector_opt(b, T("ffn_down.bias"), d, bias, &L->b_down)) ||
            (err = bert_vector(b, T("attn_output_norm.weight"), d, &L->attn_norm_w)) ||
            (err = bert_vector(b, T("attn_output_norm.bias"), d, &L->attn_norm_b)) ||
            (err = bert_vector(b, T("layer_output_norm.weight"), d, &L->out_norm_w)) ||
            (err = bert_vector(b, T("layer_output_norm.bias"), d, &L->out_norm_b)))
            goto fail;
#undef T
    }
    hp->weight_type = b->layers[0].wq.type;
    hp->qkv_bias = true;
    hp->tied_output = false;
    for (size_t i = 0; i < gguf_n_tensors(f); i++)
        hp->n_params += gguf_tensor_at(f, i)->n_elements;
    b->hp = *hp;
    bert_place_weights(b);
    *out = b;
    return LLMOS_OK;
fail:
    bert_free(b);
    return err;
}

void bert_free(bert_model *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n_vecs; i++)
        free(b->vecs[i]);
    free(b->vecs);
    free(b->layers);
    free(b->inv_freq);
    llmos_huge_free(b->weights, b->weights_size);
    free(b);
}

/* Activations of a pass over `rows` stacked token rows. */
typedef struct bert_buf {
    float *x, *q, *k, *v, *att, *tmp, *h, *h2;
    void *mm;
    uint8_t *att_scratch;
    size_t att_per_worker;
} bert_buf;

static void bert_buf_free(bert_buf *w)
{
    free(w->x);
    free(w->q);
    free(w->k);
    free(w->v);
    free(w->att);
    free(w->tmp);
    free(w->h);
    free(w->h2);
    free(w->mm);
    free(w->att_scratch);
}

static float *floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes ? bytes : 64);
}

static bool bert_buf_init(const bert_model *b, bert_buf *w, size_t rows, size_t longest,
                          int workers)
{
    size_t d = b->hp.n_embd, ff = b->hp.n_ff;
    memset(w, 0, sizeof *w);
    w->x = floats(rows * d);
    w->q = floats(rows * d);
    w->k = floats(rows * d);
    w->v = floats(rows * d);
    w->att = floats(rows * d);
    w->tmp = floats(rows * d);
    w->h = floats(rows * ff);
    w->h2 = b->gated ? floats(rows * ff) : NULL;
    size_t mm = 0;
    for (uint32_t l = 0; l < b->hp.n_layer; l++) {
        const bert_layer *L = &b->layers[l];
        const ops_matrix *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->up, &L->down, &L->gate};
        for (size_t i = 0; i < (b->gated ? 7u : 6u); i++) {
            size_t s = ops_matmul_scratch(ms[i]->type, ms[i]->n_in, rows);
            mm = s > mm ? s : mm;
        }
    }
    w->mm = mm ? malloc(mm) : NULL;
    w->att_per_worker = ops_attention_scratch(GGML_TYPE_F32, b->hp.head_dim, longest);
    w->att_scratch = aligned_alloc(64, w->att_per_worker * (size_t)workers);
    return w->x && w->q && w->k && w->v && w->att && w->tmp && w->h && (!b->gated || w->h2) &&
           (!mm || w->mm) &&
           w->att_scratch;
}

/* The encoder over n_seq texts stacked as rows (text s is rows start[s] .. start[s+1]);
 * out[s] gets the pooled, normalised vector of text s. */
static llmos_err bert_forward(const bert_model *b, llmos_pool *pool, const int32_t *tokens,
                              const size_t *start, size_t n_seq, float *out)
{
    const model_hparams *hp = &b->hp;
    size_t d = hp->n_embd, ff = hp->n_ff, rows = start[n_seq], longest = 0;
    for (size_t s = 0; s < n_seq; s++)
        longest = start[s + 1] - start[s] > longest ? start[s + 1] - start[s] : longest;
    bert_buf w;
    if (!bert_buf_init(b, &w, rows, longest, pool ? pool_threads(pool) : 1)) {
        bert_buf_free(&w);
        return llmos_fail(LLMOS_ERR_NOMEM, "model_embed: out of memory for %zu tokens", rows);
    }
    float *row = malloc(d * sizeof *row);
    if (!row) {
        bert_buf_free(&w);
        return llmos_fail(LLMOS_ERR_NOMEM, "model_embed: out of memory");
    }

    /* embeddings: token + type 0 + position, then LayerNorm */
    for (size_t s = 0; s < n_seq; s++)
        for (size_t r = start[s]; r < start[s + 1]; r++) {
            float *x = w.x + r * d;
            ops_get_row(&b->tok_embd, (size_t)tokens[r], x);
            ops_get_row(&b->type_embd, 0, row);
            ops_add(x, row, d);
            if (!b->rotary) {
                ops_get_row(&b->pos_embd, r - start[s], row);
                ops_add(x, row, d);
            }
        }
    ops_layernorm(w.x, w.x, b->embd_norm_w, b->embd_norm_b, d, rows, b->eps);

    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const bert_layer *L = &b->layers[l];
        ops_matmul_multi(pool, 3, (float *const[]){w.q, w.k, w.v},
                         (const ops_matrix *const[]){&L->wq, &L->wk, &L->wv}, w.x, rows, w.mm);
        if (L->bq) {
            ops_add_rows(w.q, L->bq, d, rows);
            ops_add_rows(w.k, L->bk, d, rows);
            ops_add_rows(w.v, L->bv, d, rows);
        }
        if (b->rotary) /* nomic-bert: positions are rotations of q and k, per text */
            for (size_t s = 0; s < n_seq; s++)
                for (size_t r = start[s]; r < start[s + 1]; r++) {
                    ops_rope_freqs(w.q + r * d, hp->n_head, hp->head_dim, hp->head_dim,
                                   r - start[s], b->inv_freq, 1.0f, OPS_ROPE_NEOX);
                    ops_rope_freqs(w.k + r * d, hp->n_head, hp->head_dim, hp->head_dim,
                                   r - start[s], b->inv_freq, 1.0f, OPS_ROPE_NEOX);
                }
        for (size_t s = 0; s < n_seq; s++) { /* each text attends to itself only */
            size_t r0 = start[s], n = start[s + 1] - start[s];
            ops_attention_args a = {.out = w.att + r0 * d,
                                    .q = w.q + r0 * d,
                                    .k = w.k + r0 * d,
                                    .v = w.v + r0 * d,
                                    .kv_type = GGML_TYPE_F32,
                                    .kv_stride = d * sizeof(float),
                                    .n_tok = n,
                                    .pos0 = 0,
                                    .n_heads = hp->n_head,
                                    .n_kv_heads = hp->n_head,
                                    .head_dim = hp->head_dim,
                                    .scale = 1.0f / sqrtf((float)hp->head_dim),
                                    .bidirectional = true,
                                    .scratch = w.att_scratch,
                                    .scratch_per_worker = w.att_per_worker};
            ops_attention(pool, &a);
        }
        /* x = LayerNorm(x + Wo att + bo) */
        ops_matmul(pool, w.tmp, &L->wo, w.att, rows, w.mm);
        if (L->bo)
            ops_add_rows(w.tmp, L->bo, d, rows);
        ops_add(w.x, w.tmp, rows * d);
        ops_layernorm(w.x, w.x, L->attn_norm_w, L->attn_norm_b, d, rows, b->eps);
        /* x = LayerNorm(x + W2 gelu(W1 x + b1) + b2) */
        if (b->gated) { /* nomic-bert: W2 (silu(Wg x) * W1 x) */
            ops_matmul_multi(pool, 2, (float *const[]){w.h, w.h2},
                             (const ops_matrix *const[]){&L->gate, &L->up}, w.x, rows, w.mm);
            ops_silu_mul(w.h, w.h2, rows * ff);
        } else {
            ops_matmul(pool, w.h, &L->up, w.x, rows, w.mm);
            if (L->b_up)
                ops_add_rows(w.h, L->b_up, ff, rows);
            ops_gelu(w.h, rows * ff);
        }
        ops_matmul(pool, w.tmp, &L->down, w.h, rows, w.mm);
        if (L->b_down)
            ops_add_rows(w.tmp, L->b_down, d, rows);
        ops_add(w.x, w.tmp, rows * d);
        ops_layernorm(w.x, w.x, L->out_norm_w, L->out_norm_b, d, rows, b->eps);
    }

    llmos_err err = LLMOS_OK;
    for (size_t s = 0; s < n_seq && !err; s++) {
        size_t r0 = start[s], n = start[s + 1] - start[s];
        double norm = 0;
        float *o = out + s * d;
        for (size_t i = 0; i < d; i++) {
            double v = 0;
            if (b->pooling == BERT_POOL_CLS) {
                v = w.x[r0 * d + i];
            } else {
                for (size_t r = 0; r < n; r++)
                    v += w.x[(r0 + r) * d + i];
                v /= (double)n;
            }
            o[i] = (float)v;
            norm += v * v;
        }
        norm = sqrt(norm);
        if (!(norm > 0) || !isfinite(norm))
            err = llmos_fail(LLMOS_ERR_INVALID,
                             "model_embed: the pooled state has norm %g; cannot normalise it",
                             norm);
        else
            ops_scale(o, (float)(1.0 / norm), d);
    }
    free(row);
    bert_buf_free(&w);
    return err;
}

/* Rows per forward pass: enough for the matmuls to reuse each weight many times, few enough
 * that the activations of a pass stay in cache (measured on bge-small: 32 texts of 128 tokens
 * in one pass of 4096 rows ran slower per text than one text alone). */
enum { BERT_PASS_ROWS = 512 };

llmos_err bert_embed(const bert_model *b, const model_ctx_params *p, const int32_t *tokens,
                     const size_t *start, size_t n_texts, float *out)
{
    llmos_pool *pool = p ? p->pool : NULL;
    size_t d = b->hp.n_embd;
    for (size_t first = 0; first < n_texts;) {
        size_t last = first + 1; /* texts first .. last-1 go together */
        while (last < n_texts && start[last + 1] - start[first] <= BERT_PASS_ROWS)
            last++;
        size_t local[BERT_PASS_ROWS + 1];
        size_t n = last - first;
        for (size_t i = 0; i <= n; i++)
            local[i] = start[first + i] - start[first];
        llmos_err err = bert_forward(b, pool, tokens + start[first], local, n, out + first * d);
        if (err)
            return err;
        first = last;
    }
    return LLMOS_OK;
}
