/*
 * llmos/infer.h - the local inference engine: load a model, evaluate tokens, sample, generate.
 *
 * Three layers, each usable on its own:
 *
 *   model       weights of a GGUF file (llama, qwen2, qwen3, gemma2, gemma3, phi3; bert for
 *               embeddings), read in place
 *               from the memory map, and a context per sequence: the KV cache plus the
 *               scratch of the forward pass. model_eval appends tokens to a context (a
 *               whole prompt at once is evaluated as a batch) and returns the logits of the
 *               last one.
 *   sampler     turns logits into a token: penalties, top-k, top-p, min-p, temperature and a
 *               seeded random draw (greedy when the temperature is 0).
 *   generation  the loop that ties them together with a tokenizer: prompt in, streamed text
 *               out, stop tokens and stop strings, timings.
 *
 * Threads: a context borrows an llmos_pool for its kernels; one context is used by one thread
 * at a time; several contexts may share one model (the model is read-only after loading).
 */
#ifndef LLMOS_INFER_H
#define LLMOS_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/gguf.h"
#include "llmos/quant.h"
#include "llmos/tokenizer.h"

/* ---- model ------------------------------------------------------------------------------- */

/* The architectures (general.architecture); docs/inference.md has the descriptor table. */
typedef enum model_arch {
    MODEL_ARCH_LLAMA,  /* Llama 1/2/3.x, TinyLlama, Mistral, SmolLM2, llama2.c models */
    MODEL_ARCH_QWEN2,  /* Qwen2 / Qwen2.5: q/k/v biases, NEOX rope, often tied output */
    MODEL_ARCH_QWEN3,  /* Qwen3: per-head Q/K RMSNorm, no biases */
    MODEL_ARCH_GEMMA2, /* Gemma 2: GeGLU, post-norms, soft-capping, sliding-window layers */
    MODEL_ARCH_GEMMA3, /* Gemma 3: Gemma 2 with Q/K norms, 5 local : 1 global layers */
    MODEL_ARCH_PHI3,   /* Phi-3 / Phi-3.5 / Phi-4-mini: fused QKV and gate/up, LongRoPE */
    MODEL_ARCH_BERT,   /* BERT encoders (BGE, MiniLM): embeddings only */
    MODEL_ARCH_NOMIC_BERT /* nomic-embed-text: rotary BERT with SwiGLU, embeddings only */
} model_arch;

/* Hyperparameters, read from "<arch>.*" metadata and the tensor shapes. */
typedef struct model_hparams {
    model_arch arch;
    const char *arch_name; /* "llama", "qwen2", ... */
    uint32_t n_vocab;      /* rows of token_embd.weight */
    uint32_t n_embd;       /* <arch>.embedding_length */
    uint32_t n_layer;      /* <arch>.block_count */
    uint32_t n_head;       /* <arch>.attention.head_count */
    uint32_t n_head_kv;    /* <arch>.attention.head_count_kv (default n_head) */
    uint32_t head_dim;     /* n_embd / n_head */
    uint32_t n_ff;         /* <arch>.feed_forward_length */
    uint32_t n_ctx_train;  /* <arch>.context_length */
    uint32_t rope_dim;     /* <arch>.rope.dimension_count (default head_dim) */
    float rope_freq_base;  /* <arch>.rope.freq_base (default 10000) */
    float rms_eps;         /* <arch>.attention.layer_norm_rms_epsilon (default 1e-5) */
    bool tied_output;      /* no output.weight: the output projection is token_embd */
    bool qkv_bias;         /* attn_q/k/v have .bias tensors */
    uint32_t n_swa;        /* <arch>.attention.sliding_window of the local layers, 0 = none */
    float attn_softcap;    /* <arch>.attn_logit_softcapping, 0 = none */
    float final_softcap;   /* <arch>.final_logit_softcapping, 0 = none */
    bool encoder;          /* an embedding model (bert): model_embed only, no generation */
    ggml_type weight_type; /* type of blk.0.attn_q.weight (for display) */
    uint64_t n_params;     /* elements in all tensors */
} model_hparams;

typedef struct llmos_model llmos_model;

/* Load the model in the GGUF file at `path`. Tensors stay in the file's memory map (nothing
 * is copied). Fails with LLMOS_ERR_UNSUPPORTED for other architectures or tensor types
 * without kernels, LLMOS_ERR_FORMAT for missing or misshapen tensors and metadata (the
 * message names the tensor or key, expected vs found). The caller frees *out with
 * model_free. */
LLMOS_API LLMOS_NODISCARD llmos_err model_load(const char *path, llmos_model **out);

/* The same over an already opened file; the model takes ownership of `f` (also on failure). */
LLMOS_API LLMOS_NODISCARD llmos_err model_load_gguf(gguf_file *f, llmos_model **out);

/* model_free(NULL) does nothing. Contexts must be freed first. */
LLMOS_API void model_free(llmos_model *m);

LLMOS_API const model_hparams *model_hparams_of(const llmos_model *m);

/* The GGUF file behind the model (for the tokenizer and the chat template); owned by m. */
LLMOS_API const gguf_file *model_gguf(const llmos_model *m);

/* The model's identity: 32 bytes of SHA-256 over the GGUF header (metadata and tensor infos)
 * and samples of every tensor's data, computed at load. Two files with the same digest are
 * the same model for the purpose of reusing a KV cache (snapshots carry it). */
#define MODEL_DIGEST_BYTES 32
LLMOS_API const uint8_t *model_digest(const llmos_model *m);

/* ---- context (KV cache) ------------------------------------------------------------------ */

typedef struct llmos_model_ctx llmos_model_ctx;

/* ---- KV pool (kvpool.c) ---- */

/* A memory budget that the KV caches of many contexts are drawn from: a context made with a
 * pool takes its cache's bytes from the budget when it is made and gives them back when it
 * is freed. Thread-safe. */
typedef struct model_kvpool model_kvpool;

/* A pool of budget_bytes (> 0). */
LLMOS_API LLMOS_NODISCARD llmos_err model_kvpool_new(size_t budget_bytes, model_kvpool **out);
/* Every context drawing on p must be freed first. model_kvpool_free(NULL) does nothing. */
LLMOS_API void model_kvpool_free(model_kvpool *p);
LLMOS_API size_t model_kvpool_budget(const model_kvpool *p);
/* Bytes lent out now. */
LLMOS_API size_t model_kvpool_used(const model_kvpool *p);

typedef struct model_ctx_params {
    uint32_t n_ctx;         /* positions the KV cache holds; 0 = the model's context length */
    uint32_t n_batch;       /* tokens per forward pass when a prompt is evaluated; 0 = 64 */
    ggml_type kv_type;      /* GGML_TYPE_F32 or GGML_TYPE_F16 */
    llmos_pool *pool;       /* borrowed; NULL = run on the calling thread */
    model_kvpool *kv_pool;  /* borrowed; NULL = the cache is allocated outside any budget */
} model_ctx_params;

/* Bytes of the KV cache (keys and values) of a context of n_ctx positions of m in kv_type. */
LLMOS_API size_t model_kv_bytes(const llmos_model *m, size_t n_ctx, ggml_type kv_type);

/* Defaults: n_ctx from the model, n_batch 64, F32 KV cache, no pool. */
LLMOS_API model_ctx_params model_ctx_default_params(void);

/* A new empty context for `m` (which must outlive it). LLMOS_ERR_LIMIT when n_ctx exceeds
 * the model's training context, or when p->kv_pool has not the cache's bytes left (the
 * message names the bytes asked for, free and budgeted); LLMOS_ERR_NOMEM when the cache does
 * not fit in memory. */
LLMOS_API LLMOS_NODISCARD llmos_err model_ctx_new(const llmos_model *m, const model_ctx_params *p,
                                                  llmos_model_ctx **out);
LLMOS_API void model_ctx_free(llmos_model_ctx *c);

/* Run the model over tokens[0..n) at positions pos .. pos+n-1 (pos = model_ctx_pos before the
 * call), adding them to the KV cache, in batches of n_batch tokens. On success *logits (may
 * be NULL) points at n_vocab logits for the last token, valid until the next call on c.
 * Fails with LLMOS_ERR_LIMIT ("context length N exceeded") when pos + n > n_ctx and with
 * LLMOS_ERR_INVALID for a token id outside the vocabulary; the context is unchanged then. */
LLMOS_API LLMOS_NODISCARD llmos_err model_eval(llmos_model_ctx *c, const int32_t *tokens, size_t n,
                                               const float **logits);

/* Positions filled in the KV cache. */
LLMOS_API size_t model_ctx_pos(const llmos_model_ctx *c);
/* Capacity of the KV cache in positions. */
LLMOS_API size_t model_ctx_size(const llmos_model_ctx *c);
/* Forget positions pos.. (keep the first pos): rewinds the sequence. pos <= model_ctx_pos. */
LLMOS_API void model_ctx_truncate(llmos_model_ctx *c, size_t pos);
LLMOS_API const llmos_model *model_ctx_model(const llmos_model_ctx *c);

/* The logits of the last token the latest model_eval or model_eval_batch gave c. */
LLMOS_API const float *model_ctx_logits(const llmos_model_ctx *c);

/* ---- batches of sequences ---------------------------------------------------------------- */

/* One forward pass over the tokens of several sequences, each in its own context (KV cache):
 * every matmul reads the weights once for all of them, and attention runs per sequence over
 * its own cache. Any mix is allowed: a chunk of one sequence's prompt next to single decode
 * tokens of others, sequences at different positions. The batch object holds the activations
 * of such a pass; it is used by one thread at a time. */
typedef struct model_batch model_batch;

typedef struct model_batch_params {
    uint32_t n_tokens; /* the most tokens of all sequences together in one pass */
    uint32_t n_seqs;   /* the most sequences in one pass (<= n_tokens) */
    uint32_t n_ctx;    /* the largest context (in positions) a sequence may have */
    llmos_pool *pool;  /* borrowed; NULL = run on the calling thread */
} model_batch_params;

LLMOS_API LLMOS_NODISCARD llmos_err model_batch_new(const llmos_model *m,
                                                    const model_batch_params *p,
                                                    model_batch **out);
LLMOS_API void model_batch_free(model_batch *b);

typedef struct model_batch_seq {
    llmos_model_ctx *ctx;  /* a context of the batch's model; at most once per pass */
    const int32_t *tokens; /* appended at model_ctx_pos(ctx) .. */
    size_t n;              /* >= 1 */
} model_batch_seq;

/* Evaluate seqs[0..n_seqs) in one pass: each context gets its tokens added to its KV cache
 * and its logits (model_ctx_logits) set to those of its last token, exactly as model_eval of
 * the same tokens would (up to float rounding of the kernels). Everything is checked before
 * anything is computed; on failure no context changes: LLMOS_ERR_LIMIT for more tokens or
 * sequences than the batch holds, a context larger than its n_ctx or one that would
 * overflow, LLMOS_ERR_INVALID for a token outside the vocabulary, a context of another model
 * or the same context twice. The contexts' own pools are not used; the batch's is. */
LLMOS_API LLMOS_NODISCARD llmos_err model_eval_batch(model_batch *b, const model_batch_seq *seqs,
                                                     size_t n_seqs);

/* ---- KV snapshots (kvsnap.c) ------------------------------------------------------------- */

/* A context's KV cache as bytes, to keep while the context is freed (a swapped-out sequence)
 * or to seal into the store (a conversation resumed tomorrow), and to restore into a fresh
 * context of the same model so that its prompt need not be evaluated again. The format
 * (little-endian; docs/inference.md "KV snapshots"):
 *
 *   0   8  magic "LLMOSKV" NUL          48  4 n_layer
 *   8   4  version (1)                  52  4 n_head_kv
 *   12  4  kv_type (ggml type: F32/F16) 56  4 head_dim
 *   16 32  model digest (model_digest)  60  4 zero
 *   64  8  n_pos: positions held        72  8 n_tokens: 0 or n_pos
 *   80     n_tokens int32 token ids (what filled the positions, when the saver knew them)
 *          keys: for each layer, n_pos rows; then values likewise; a row is
 *          n_head_kv * head_dim elements of kv_type
 *   end 32 SHA-256 of every byte before it
 *
 * The checksum finds corruption, not tampering: a snapshot that leaves this process is sealed
 * by the store (authenticated encryption) like every other page. */
#define MODEL_KV_VERSION 1

typedef struct model_kv_header {
    uint32_t version;
    ggml_type kv_type;
    uint8_t digest[MODEL_DIGEST_BYTES];
    uint32_t n_layer, n_head_kv, head_dim;
    uint64_t n_pos, n_tokens;
} model_kv_header;

/* Append the snapshot of c's positions 0..model_ctx_pos(c)-1 to out. tokens (may be NULL)
 * holds the model_ctx_pos(c) ids that filled them, stored with the cache. */
LLMOS_API LLMOS_NODISCARD llmos_err model_kv_save(const llmos_model_ctx *c, const int32_t *tokens,
                                                  llmos_buf *out);

/* Check data[0..len) as a snapshot (magic, version, sizes that add up to len, checksum)
 * without a model, and fill *h. LLMOS_ERR_FORMAT, naming what is wrong, for anything else
 * (a corrupted snapshot fails its checksum); LLMOS_ERR_UNSUPPORTED for another version. */
LLMOS_API LLMOS_NODISCARD llmos_err model_kv_parse(const uint8_t *data, size_t len,
                                                   model_kv_header *h);
/* model_kv_parse without the checksum: the header and the sizes only, in constant time, for
 * a caller that wants to know what a snapshot it just made holds (its model, its positions)
 * without hashing megabytes again. Restoring always verifies the checksum. */
LLMOS_API LLMOS_NODISCARD llmos_err model_kv_peek(const uint8_t *data, size_t len,
                                                  model_kv_header *h);

/* Whether a parsed snapshot fits m and a context of kv_type and n_ctx positions: refuses one
 * of another model (LLMOS_ERR_INVALID naming both digests), of another shape or cache type
 * (LLMOS_ERR_INVALID), or longer than n_ctx (LLMOS_ERR_CONTEXT). */
LLMOS_API LLMOS_NODISCARD llmos_err model_kv_check(const llmos_model *m, const model_kv_header *h,
                                                   ggml_type kv_type, size_t n_ctx);

/* The h->n_tokens token ids of the snapshot data (parsed into h) into out; LLMOS_ERR_FORMAT
 * for an id outside m's vocabulary. */
LLMOS_API LLMOS_NODISCARD llmos_err model_kv_tokens(const llmos_model *m, const uint8_t *data,
                                                    const model_kv_header *h, int32_t *out);

/* Replace what c holds with the snapshot: afterwards model_ctx_pos(c) is its n_pos. When
 * tokens is non-NULL, *tokens (malloc'd, caller frees; NULL when the snapshot has none) gets
 * its *n_tokens ids. Refuses, leaving c as it was: a malformed or corrupted snapshot
 * (model_kv_parse's errors), one of another model (LLMOS_ERR_INVALID naming both digests),
 * of another shape or cache type (LLMOS_ERR_INVALID), or longer than c
 * (LLMOS_ERR_CONTEXT). */
LLMOS_API LLMOS_NODISCARD llmos_err model_kv_restore(llmos_model_ctx *c, const uint8_t *data,
                                                     size_t len, int32_t **tokens,
                                                     size_t *n_tokens);

/* ---- embeddings (embed.c) ---------------------------------------------------------------- */

/* The final hidden state of token t of the LAST forward pass, after the output norm (the
 * vector the output projection reads): n_embd floats into out. A forward pass is one batch,
 * so after model_eval(c, tokens, n, ...) with n <= the context's n_batch, t < n is token t of
 * that call. t must be below n_batch (asserted). */
LLMOS_API void model_ctx_hidden(const llmos_model_ctx *c, size_t t, float *out);

/* An embedding of tokens[0..n). An encoder model (hp->encoder: BERT, BGE, MiniLM) pools its
 * final states as its file says (bert.pooling_type: mean, or the [CLS] token) and scales to
 * unit length. A decoder gives the mean over positions of the final hidden state after the
 * output norm (before the output projection), scaled to unit length (L2), into out[0..dim),
 * dim == n_embd. It runs in a context of its own (sized to n) that is freed before returning,
 * so no chat context is disturbed. p (may be NULL for defaults) gives n_batch and the pool;
 * its n_ctx and kv_type are ignored. The result does not depend on n_batch beyond float
 * rounding of the kernels. A decoder LLM is not a trained embedder: the vectors group texts
 * that share words and topic, modestly (docs/inference.md, "Embeddings").
 * Fails with LLMOS_ERR_INVALID for n == 0, dim != n_embd or a token outside the vocabulary,
 * LLMOS_ERR_LIMIT when n exceeds the model's training context (truncate first). */
LLMOS_API LLMOS_NODISCARD llmos_err model_embed(const llmos_model *m, const model_ctx_params *p,
                                                const int32_t *tokens, size_t n, float *out,
                                                size_t dim);

/* Embeddings of n_texts texts at once: text i is tokens[start[i] .. start[i + 1]) (start has
 * n_texts + 1 entries, start[0] = 0, increasing), its vector goes to out[i * dim ..]. An encoder (bert)
 * stacks the texts into one forward pass, so each weight is read once for the whole batch;
 * a decoder embeds them one after another. Errors as model_embed's, naming the text. */
LLMOS_API LLMOS_NODISCARD llmos_err model_embed_batch(const llmos_model *m,
                                                      const model_ctx_params *p,
                                                      const int32_t *tokens, const size_t *start,
                                                      size_t n_texts, float *out, size_t dim);

/* ---- sampler ----------------------------------------------------------------------------- */

/* How a token is drawn from logits. The chain, in order: repetition, frequency and presence
 * penalties over the last penalty_last_n accepted tokens; then, when temperature <= 0, the
 * arg-max (the lowest id wins a tie); otherwise top-k, top-p and min-p filters on the
 * softmax at temperature 1, then the temperature on the survivors and a draw. */
typedef struct sampler_params {
    float temperature;       /* <= 0: greedy */
    int32_t top_k;           /* keep the k most likely tokens; <= 0: all */
    float top_p;             /* keep the smallest set whose mass reaches p; >= 1: off */
    float min_p;             /* drop tokens below min_p * p(most likely); <= 0: off */
    float repeat_penalty;    /* logit / r if positive, * r if negative (CTRL); 1: off */
    float frequency_penalty; /* minus f * count in the window; 0: off */
    float presence_penalty;  /* minus p once if present in the window; 0: off */
    int32_t penalty_last_n;  /* window of accepted tokens the penalties look at */
    uint64_t seed;           /* the same seed and inputs give the same tokens */
} sampler_params;

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties (window 64), seed 0. */
LLMOS_API sampler_params sampler_default_params(void);

typedef struct llmos_sampler llmos_sampler;

/* A sampler for a vocabulary of n_vocab. LLMOS_ERR_INVALID for out-of-range parameters
 * (negative temperature is read as 0; top_p, min_p outside [0,1], penalties < 0). */
LLMOS_API LLMOS_NODISCARD llmos_err sampler_new(const sampler_params *p, uint32_t n_vocab,
                                                llmos_sampler **out);
LLMOS_API void sampler_free(llmos_sampler *s);

/* Choose the next token from logits[0..n_vocab); logits are left as they were. The chosen
 * token is NOT added to the penalty window: call sampler_accept (so that prompt tokens can be
 * accepted too). */
LLMOS_API int32_t sampler_sample(llmos_sampler *s, const float *logits);
/* Add a token to the penalty window. */
LLMOS_API void sampler_accept(llmos_sampler *s, int32_t token);
/* Empty the penalty window and reseed the generator with the parameters' seed. */
LLMOS_API void sampler_reset(llmos_sampler *s);

/* The PRNG behind the draw: PCG32 (O'Neill 2014, "PCG: A Family of Simple Fast
 * Space-Efficient Statistically Good Algorithms", pcg32 XSH RR 64/32). Exposed for tests. */
typedef struct sampler_rng {
    uint64_t state, inc;
} sampler_rng;
LLMOS_API void sampler_rng_seed(sampler_rng *r, uint64_t seed);
LLMOS_API uint32_t sampler_rng_u32(sampler_rng *r);
/* Uniform in [0, 1) with 24 bits. */
LLMOS_API float sampler_rng_float(sampler_rng *r);

/* ---- generation ------------------------------------------------------------------------- */

/* Why a generation ended. */
typedef enum gen_stop {
    GEN_STOP_LENGTH,   /* n_predict tokens were generated */
    GEN_STOP_EOG,      /* the model produced an end-of-generation token (tok_is_eog) */
    GEN_STOP_TOKEN,    /* one of the caller's stop tokens */
    GEN_STOP_STRING,   /* one of the stop strings appeared in the text */
    GEN_STOP_CONTEXT,  /* the context (KV cache) is full */
    GEN_STOP_CALLBACK, /* the emit callback asked to stop */
    GEN_STOP_GRAMMAR,  /* the grammar admits nothing more (constrained chat, the local backend) */
    GEN_STOP_CANCELLED /* the request's cancel flag was set (the local backend) */
} gen_stop;

/* Short name of a stop reason ("length", "eog", ...). */
LLMOS_API const char *gen_stop_name(gen_stop reason);

typedef struct gen_params {
    uint32_t n_predict; /* the most tokens to generate */
    sampler_params sampling;
    const int32_t *stop_tokens; /* ids that end the generation (besides EOG); not shown */
    size_t n_stop_tokens;
    const char *const *stop_strings; /* texts that end the generation; not shown */
    size_t n_stop_strings;
    bool ignore_eog; /* keep going past EOG tokens */
} gen_params;

/* n_predict 128, sampler_default_params(), no stop tokens or strings. */
LLMOS_API gen_params gen_default_params(void);

typedef struct gen_stats {
    size_t n_prompt, n_generated; /* n_generated counts sampled tokens, stop tokens excluded */
    double prompt_seconds;        /* evaluating the prompt */
    double gen_seconds;           /* sampling and evaluating the generated tokens */
    gen_stop stop;
} gen_stats;

/* Called for every generated token with the text that became final with it (complete UTF-8,
 * and none of a stop string; may be empty when the text is held back), or with text NULL
 * when there is no tokenizer. At the end, held-back text is passed with token -1. Return
 * false to stop. */
typedef bool (*gen_emit_fn)(void *user, int32_t token, const char *text, size_t len);

/* Evaluate prompt[0..n_prompt) in c (appended to what c holds), then sample and evaluate up
 * to p->n_predict tokens, streaming them to `emit`. `tok` may be NULL (ids only: no EOG and
 * no stop strings). Fails with the model's error (LLMOS_ERR_LIMIT when the prompt does not
 * fit the context); running out of context during generation is a normal stop
 * (GEN_STOP_CONTEXT). *stats (may be NULL) is filled on success. */
LLMOS_API LLMOS_NODISCARD llmos_err gen_run(llmos_model_ctx *c, const tokenizer *tok,
                                            const int32_t *prompt, size_t n_prompt,
                                            const gen_params *p, gen_emit_fn emit, void *user,
                                            gen_stats *stats);

#endif
