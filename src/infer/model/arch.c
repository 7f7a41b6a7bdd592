/*
 * arch.c - the architecture descriptors: one table line per GGUF general.architecture.
 *
 * Tensor names and metadata keys are those llama.cpp's converter writes (its
 * llama-arch.cpp lists them per architecture); the semantics follow the reference model
 * definitions shipped with the models (Hugging Face transformers' modeling_<arch>.py):
 *
 *   llama   RMSNorm before attention and FFN; rotary on adjacent pairs (the converter permutes
 *           Q and K so this layout applies); SwiGLU; Q/K/V biases optional; Llama 3.1/3.2
 *           rope scaling through the rope_freqs tensor.
 *   qwen2   llama with Q/K/V biases, rotary on halves (NEOX).
 *   qwen3   qwen2 without biases, with an RMSNorm over each head of Q and of K before rope.
 *   gemma2  GeGLU (tanh GELU); RMSNorm before and after attention and the FFN; embeddings
 *           times sqrt(n_embd); attention and final logits soft-capped (tanh) by the file's
 *           caps; layers alternate local (sliding window) and global attention, local first.
 *           The converter stores Gemma's RMSNorm weight as 1 + w, so the norm is plain RMSNorm.
 *   gemma3  gemma2 with Q/K norms, five local layers to one global, the local layers on rope
 *           base 10000, and no soft-capping unless the file asks for it.
 *   phi3    fused QKV (rows Q, K, V) and gate/up (rows gate, up) projections; NEOX rotary;
 *           LongRoPE: per-frequency factors rope_factors_short / _long (long when the context
 *           exceeds the original training context) and the attention factor on cos and sin.
 *   bert    encoder (bert.c): absolute positions, token types, post-LayerNorm, GELU.
 *   nomic-bert  bert with rotary positions, fused QKV, SwiGLU and no matrix biases.
 */
#include <stddef.h>
#include <string.h>

#include "infer/model/arch.h"

#define F(field) offsetof(model_layer, field)
#define VEC(n, dim, req, f) {n, dim, ARCH_DIM_NONE, req, 1, {F(f), 0, 0}}
#define MAT(n, in, out, req, f) {n, in, out, req, 1, {F(f), 0, 0}}

static const arch_tensor llama_tensors[] = {
    VEC("attn_norm.weight", ARCH_DIM_EMBD, true, attn_norm),
    MAT("attn_q.weight", ARCH_DIM_EMBD, ARCH_DIM_Q, true, wq),
    MAT("attn_k.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wk),
    MAT("attn_v.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wv),
    MAT("attn_output.weight", ARCH_DIM_Q, ARCH_DIM_EMBD, true, wo),
    VEC("attn_q.bias", ARCH_DIM_Q, false, bq),
    VEC("attn_k.bias", ARCH_DIM_KV, false, bk),
    VEC("attn_v.bias", ARCH_DIM_KV, false, bv),
    VEC("ffn_norm.weight", ARCH_DIM_EMBD, true, ffn_norm),
    MAT("ffn_gate.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_gate),
    MAT("ffn_up.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_up),
    MAT("ffn_down.weight", ARCH_DIM_FF, ARCH_DIM_EMBD, true, ffn_down),
};

static const arch_tensor qwen2_tensors[] = {
    VEC("attn_norm.weight", ARCH_DIM_EMBD, true, attn_norm),
    MAT("attn_q.weight", ARCH_DIM_EMBD, ARCH_DIM_Q, true, wq),
    MAT("attn_k.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wk),
    MAT("attn_v.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wv),
    MAT("attn_output.weight", ARCH_DIM_Q, ARCH_DIM_EMBD, true, wo),
    VEC("attn_q.bias", ARCH_DIM_Q, true, bq),
    VEC("attn_k.bias", ARCH_DIM_KV, true, bk),
    VEC("attn_v.bias", ARCH_DIM_KV, true, bv),
    VEC("ffn_norm.weight", ARCH_DIM_EMBD, true, ffn_norm),
    MAT("ffn_gate.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_gate),
    MAT("ffn_up.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_up),
    MAT("ffn_down.weight", ARCH_DIM_FF, ARCH_DIM_EMBD, true, ffn_down),
};

static const arch_tensor qwen3_tensors[] = {
    VEC("attn_norm.weight", ARCH_DIM_EMBD, true, attn_norm),
    MAT("attn_q.weight", ARCH_DIM_EMBD, ARCH_DIM_Q, true, wq),
    MAT("attn_k.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wk),
    MAT("attn_v.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wv),
    MAT("attn_output.weight", ARCH_DIM_Q, ARCH_DIM_EMBD, true, wo),
    VEC("attn_q_norm.weight", ARCH_DIM_HEAD, true, q_norm),
    VEC("attn_k_norm.weight", ARCH_DIM_HEAD, true, k_norm),
    VEC("ffn_norm.weight", ARCH_DIM_EMBD, true, ffn_norm),
    MAT("ffn_gate.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_gate),
    MAT("ffn_up.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_up),
    MAT("ffn_down.weight", ARCH_DIM_FF, ARCH_DIM_EMBD, true, ffn_down),
};

static const arch_tensor gemma2_tensors[] = {
    VEC("attn_norm.weight", ARCH_DIM_EMBD, true, attn_norm),
    MAT("attn_q.weight", ARCH_DIM_EMBD, ARCH_DIM_Q, true, wq),
    MAT("attn_k.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wk),
    MAT("attn_v.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wv),
    MAT("attn_output.weight", ARCH_DIM_Q, ARCH_DIM_EMBD, true, wo),
    VEC("post_attention_norm.weight", ARCH_DIM_EMBD, true, attn_post_norm),
    VEC("ffn_norm.weight", ARCH_DIM_EMBD, true, ffn_norm),
    MAT("ffn_gate.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_gate),
    MAT("ffn_up.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_up),
    MAT("ffn_down.weight", ARCH_DIM_FF, ARCH_DIM_EMBD, true, ffn_down),
    VEC("post_ffw_norm.weight", ARCH_DIM_EMBD, true, ffn_post_norm),
};

static const arch_tensor gemma3_tensors[] = {
    VEC("attn_norm.weight", ARCH_DIM_EMBD, true, attn_norm),
    MAT("attn_q.weight", ARCH_DIM_EMBD, ARCH_DIM_Q, true, wq),
    MAT("attn_k.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wk),
    MAT("attn_v.weight", ARCH_DIM_EMBD, ARCH_DIM_KV, true, wv),
    MAT("attn_output.weight", ARCH_DIM_Q, ARCH_DIM_EMBD, true, wo),
    VEC("attn_q_norm.weight", ARCH_DIM_HEAD, true, q_norm),
    VEC("attn_k_norm.weight", ARCH_DIM_HEAD, true, k_norm),
    VEC("post_attention_norm.weight", ARCH_DIM_EMBD, true, attn_post_norm),
    VEC("ffn_norm.weight", ARCH_DIM_EMBD, true, ffn_norm),
    MAT("ffn_gate.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_gate),
    MAT("ffn_up.weight", ARCH_DIM_EMBD, ARCH_DIM_FF, true, ffn_up),
    MAT("ffn_down.weight", ARCH_DIM_FF, ARCH_DIM_EMBD, true, ffn_down),
    VEC("post_ffw_norm.weight", ARCH_DIM_EMBD, true, ffn_post_norm),
};

static const arch_tensor phi3_tensors[] = {
    VEC("attn_norm.weight", ARCH_DIM_EMBD, true, attn_norm),
    {"attn_qkv.weight", ARCH_DIM_EMBD, ARCH_DIM_QKV, true, 3, {F(wq), F(wk), F(wv)}},
    MAT("attn_output.weight", ARCH_DIM_Q, ARCH_DIM_EMBD, true, wo),
    VEC("ffn_norm.weight", ARCH_DIM_EMBD, true, ffn_norm),
    {"ffn_up.weight", ARCH_DIM_EMBD, ARCH_DIM_FF2, true, 2, {F(ffn_gate), F(ffn_up), 0}},
    MAT("ffn_down.weight", ARCH_DIM_FF, ARCH_DIM_EMBD, true, ffn_down),
};

#define TENSORS(t) t, sizeof t / sizeof t[0]

static const model_arch_desc descs[] = {
    {.name = "llama", .arch = MODEL_ARCH_LLAMA, .rope = OPS_ROPE_NORM, .act = ARCH_ACT_SILU,
     .tensors = TENSORS(llama_tensors)},
    {.name = "qwen2", .arch = MODEL_ARCH_QWEN2, .rope = OPS_ROPE_NEOX, .act = ARCH_ACT_SILU,
     .default_tied = true, .tensors = TENSORS(qwen2_tensors)},
    {.name = "qwen3", .arch = MODEL_ARCH_QWEN3, .rope = OPS_ROPE_NEOX, .act = ARCH_ACT_SILU,
     .default_tied = true, .tensors = TENSORS(qwen3_tensors)},
    {.name = "gemma2", .arch = MODEL_ARCH_GEMMA2, .rope = OPS_ROPE_NEOX, .act = ARCH_ACT_GELU,
     .embd_scale = true, .swa_pattern = 2, .default_tied = true,
     .tensors = TENSORS(gemma2_tensors)},
    {.name = "gemma3", .arch = MODEL_ARCH_GEMMA3, .rope = OPS_ROPE_NEOX, .act = ARCH_ACT_GELU,
     .embd_scale = true, .swa_pattern = 6, .swa_rope_base = 10000.0f, .default_tied = true,
     .tensors = TENSORS(gemma3_tensors)},
    {.name = "phi3", .arch = MODEL_ARCH_PHI3, .rope = OPS_ROPE_NEOX, .act = ARCH_ACT_SILU,
     .tensors = TENSORS(phi3_tensors)},
    {.name = "bert", .arch = MODEL_ARCH_BERT, .encoder = true, .act = ARCH_ACT_GELU},
    {.name = "nomic-bert", .arch = MODEL_ARCH_NOMIC_BERT, .encoder = true, .rope = OPS_ROPE_NEOX,
     .act = ARCH_ACT_SILU},
};

const model_arch_desc *arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++)
        if (strcmp(descs[i].name, name) == 0)
            return &descs[i];
    return NULL;
}

const char *arch_names(void)
{
    return "llama, qwen2, qwen3, gemma2, gemma3, phi3, bert, nomic-bert";
}
