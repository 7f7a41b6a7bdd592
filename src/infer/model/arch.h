/*
 * arch.h - what model.c, arch.c and bert.c share about a loaded model (private).
 *
 * An architecture is one descriptor (model_arch_desc, the table in arch.c): the tensors of a
 * layer with their shapes and whether they are required, the norm, the activation, the rope
 * layout, and the options of attention (QK norm, soft-capping, sliding window). model.c's
 * loader reads whatever tensors the descriptor lists into the layer struct below, and its
 * forward pass applies each option where the layer or the model has it (a NULL norm weight,
 * a zero cap or window, means "not this architecture"). Adding an architecture that is a
 * llama-style decoder is one table line plus its layer tensor list.
 */
#ifndef LLMOS_INFER_ARCH_H
#define LLMOS_INFER_ARCH_H

#include <stddef.h>

#include "infer/model/ops.h"
#include "llmos/infer.h"

/* ---- descriptors -------------------------------------------------------------------------- */

/* A dimension of a tensor, resolved from the hyperparameters. */
typedef enum arch_dim {
    ARCH_DIM_NONE, /* (a vector has no second dimension) */
    ARCH_DIM_EMBD, /* n_embd */
    ARCH_DIM_Q,    /* n_head * head_dim */
    ARCH_DIM_KV,   /* n_head_kv * head_dim */
    ARCH_DIM_QKV,  /* Q + 2 KV: a fused query/key/value projection */
    ARCH_DIM_FF,   /* n_ff */
    ARCH_DIM_FF2,  /* 2 n_ff: a fused gate/up projection */
    ARCH_DIM_HEAD, /* head_dim (per-head Q/K norms) */
} arch_dim;

/* One tensor of every layer, "blk.N.<name>". A vector has out = ARCH_DIM_NONE and goes to a
 * float * field; a matrix goes to an ops_matrix field; a fused matrix (QKV, gate+up) is split
 * into row ranges, one per field. field[] are offsetof(model_layer, ...). */
typedef struct arch_tensor {
    const char *name;
    arch_dim in, out;
    bool required;
    size_t n_parts; /* 1, or 2 (gate, up) / 3 (q, k, v) for a fused matrix */
    size_t field[3];
} arch_tensor;

typedef enum arch_act { ARCH_ACT_SILU, ARCH_ACT_GELU } arch_act;

typedef struct model_arch_desc {
    const char *name; /* general.architecture */
    model_arch arch;
    bool encoder;          /* bidirectional embedding model (bert.c), not a decoder */
    ops_rope_mode rope;    /* layout of the rotary pairs */
    arch_act act;          /* of the gated FFN: SwiGLU or GeGLU (tanh GELU) */
    bool embd_scale;       /* token embeddings times sqrt(n_embd) (Gemma) */
    unsigned swa_pattern;  /* 0: no sliding window; n: layer l is local unless l % n == n - 1 */
    float swa_rope_base;   /* rope base of the local layers (Gemma 3: 10000); 0 = the global */
    bool default_tied;     /* output.weight is usually absent (a missing one is not remarked) */
    const arch_tensor *tensors; /* the layer's tensors */
    size_t n_tensors;
} model_arch_desc;

/* The descriptor for general.architecture `name`, or NULL. */
const model_arch_desc *arch_find(const char *name);
/* "llama, qwen2, ..." for error messages. */
const char *arch_names(void);

/* ---- the loaded model --------------------------------------------------------------------- */

typedef struct model_layer {
    float *attn_norm, *ffn_norm;           /* [n_embd] */
    ops_matrix wq, wk, wv, wo;             /* attention projections */
    float *bq, *bk, *bv;                   /* qwen2 biases, else NULL */
    float *q_norm, *k_norm;                /* [head_dim]: qwen3, gemma3 per-head RMSNorm */
    float *attn_post_norm, *ffn_post_norm; /* [n_embd]: gemma2/3 norms after each block */
    ops_matrix ffn_gate, ffn_up, ffn_down; /* gated FFN */
    uint32_t window;                       /* sliding-window width of this layer, 0 = global */
} model_layer;

/* Rotary frequencies: theta_i(pos) = pos * inv_freq[i], cos and sin times mscale. */
typedef struct model_rope {
    double *inv_freq; /* [rope_dim / 2] */
    float mscale;
} model_rope;

/* ---- encoders (bert.c) ------------------------------------------------------------------- */

typedef struct bert_model bert_model;

/* Read a BERT encoder's hyperparameters (into *hp) and weights from f (which stays owned by
 * the caller and must outlive *out). Errors name the key or tensor, expected vs found. */
LLMOS_NODISCARD llmos_err bert_load(const gguf_file *f, model_hparams *hp, bert_model **out);
void bert_free(bert_model *b);
/* The encoder of an encoder model (hp->encoder), else NULL. */
const bert_model *model_bert(const llmos_model *m);
/* model_embed_batch for an encoder: [CLS]-or-mean pooled, L2-normalised final hidden states
 * of text i = tokens[start[i] .. start[i + 1]) into out[i * n_embd ..]. */
LLMOS_NODISCARD llmos_err bert_embed(const bert_model *b, const model_ctx_params *p,
                                     const int32_t *tokens, const size_t *start, size_t n_texts,
                                     float *out);

#endif
