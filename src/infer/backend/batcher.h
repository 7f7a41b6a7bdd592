/*
 * batcher.h - continuous batching for the local backend (private to src/infer/backend).
 *
 * Many chats run at once on one model, each on its own thread with its own generation loop
 * (sampling, grammar, stop strings, streaming: gen/generate.h), each in a sequence with its
 * own KV cache. Where the loop would evaluate tokens, it hands them to the batcher
 * (local_batcher_eval) and waits; at every step one of the waiting threads runs a single
 * forward pass (model_eval_batch) over the tokens of every sequence that is ready, so the
 * weights are read once for all of them. A sequence joins or leaves between steps; a prompt
 * goes in chunks that share each step with the others' decode tokens.
 *
 * The KV caches are drawn from one pool (model_kvpool). When a new chat needs a cache and the
 * pool is full, the least recently used sequence that is waiting (a finished chat kept for
 * its prefix) is swapped out: its KV snapshot (kvsnap.c) is kept in memory and restored when
 * a request that shares its prefix comes; without a scope it is dropped. When every cache is
 * held by a running chat, the newcomer waits for one to finish.
 *
 * Prefix cache: a finished chat's sequence is kept with its scope (llm_request.cache_scope);
 * a new request in the same scope starts from the sequence with which it shares the longest
 * token prefix, and only evaluates the rest.
 */
#ifndef LLMOS_INFER_BATCHER_H
#define LLMOS_INFER_BATCHER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/infer.h"

typedef struct local_batcher_params {
    const llmos_model *model; /* borrowed */
    llmos_pool *pool;         /* borrowed: the threads of every forward pass */
    uint32_t n_ctx;           /* positions of each sequence's KV cache */
    uint32_t n_batch;         /* tokens of all sequences in one pass (>= max_seqs) */
    uint32_t max_seqs;        /* chats generating at once; more wait for a turn */
    size_t kv_mem;            /* the KV pool's budget in bytes */
    ggml_type kv_type;
} local_batcher_params;

typedef struct local_batcher local_batcher;
typedef struct local_seq local_seq;

/* LLMOS_ERR_LIMIT, naming the numbers, when kv_mem cannot hold one sequence of n_ctx. */
LLMOS_NODISCARD llmos_err local_batcher_new(const local_batcher_params *p, local_batcher **out);
/* No chat may be running. NULL does nothing. */
void local_batcher_free(local_batcher *b);

/* Take a sequence for a chat whose prompt is prompt[0..n): the sequence of `scope` (NULL: no
 * sharing) with the longest common prefix, else a fresh one, with a KV cache; waits while
 * max_seqs chats run or the pool is held by running chats. *n_cached of the prompt's tokens
 * are already in the cache (at most n - 1, so that the last one is evaluated for logits).
 * LLMOS_ERR_CANCELLED when *cancel is set while waiting; the pool's LLMOS_ERR_LIMIT when one
 * sequence does not fit. */
LLMOS_NODISCARD llmos_err local_batcher_admit(local_batcher *b, const char *scope,
                                              const int32_t *prompt, size_t n,
                                              const atomic_bool *cancel, local_seq **out,
                                              size_t *n_cached);

/* The sequence's context (its KV cache), for the generation loop. */
llmos_model_ctx *local_seq_ctx(local_seq *s);
/* n_vocab floats of the sequence's own, for masking logits. */
float *local_seq_scratch(local_seq *s);

/* A gen_eval_fn (user = the local_seq): evaluate ids[0..n) in the next steps and wait for
 * them. LLMOS_ERR_CANCELLED when the chat's cancel flag is seen before all of them were
 * taken into a step (the cache keeps what was evaluated). */
LLMOS_NODISCARD llmos_err local_batcher_eval(void *seq, const int32_t *ids, size_t n,
                                             const float **logits);

/* The chat is over: keep the sequence for its prefix (when it has a scope and `keep`), or drop
 * it. */
void local_batcher_release(local_batcher *b, local_seq *s, bool keep);

/* Run fn(user) while no step runs (the pool and model are free for other work: embeddings).
 * This, the context-switch functions and the statistics take a NULL batcher (an encoder's
 * backend has none): fn runs at once, there is no cache to save or restore
 * (LLMOS_ERR_UNSUPPORTED), nothing to forget and all counters are 0. */
void local_batcher_exclusive(local_batcher *b, void (*fn)(void *user), void *user);

/* Context switch. Append a snapshot (model_kv_save's format, with token ids) of the kept
 * sequence of `scope` used last; LLMOS_ERR_NOT_FOUND when none is kept. */
LLMOS_NODISCARD llmos_err local_batcher_save(local_batcher *b, const char *scope, llmos_buf *out);
/* Keep the snapshot data[0..len) as a sequence of `scope` (swapped out: its cache is filled
 * when a request shares its prefix). Refuses a malformed or corrupted snapshot, one of another
 * model or shape, or without token ids, with model_kv_parse's and model_kv_check's errors. */
LLMOS_NODISCARD llmos_err local_batcher_restore(local_batcher *b, const char *scope,
                                                const uint8_t *data, size_t len);
/* Drop every kept sequence of `scope`; how many there were. */
size_t local_batcher_forget(local_batcher *b, const char *scope);

typedef struct local_batcher_stats {
    uint64_t steps, tokens;       /* forward passes and tokens evaluated in them */
    uint64_t swaps_out, swaps_in; /* sequences swapped out to snapshots, and restored */
    uint64_t cached_tokens;       /* prompt tokens reused from kept sequences */
    size_t running, waiting;      /* chats generating now, and waiting for a turn */
    size_t kept, swapped;         /* finished sequences kept with a cache, and as snapshots */
    size_t kv_used, kv_budget;    /* bytes of the KV pool */
    size_t last_batch;            /* sequences in the latest step */
} local_batcher_stats;

void local_batcher_get_stats(local_batcher *b, local_batcher_stats *st);

#endif
