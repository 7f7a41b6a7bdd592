/*
 * llmos/backend.h - one interface for every model llmos talks to.
 *
 * A backend answers chat requests in the OpenAI chat-completions shape, whether the model runs
 * here (the local engine: GGUF weights, tokenizer, chat template, grammar, sampler) or on a
 * server that speaks the OpenAI-compatible HTTP API (llama.cpp's server, vLLM, ollama, a
 * hosted API, or another llmos). The kernel, the shell and `llmos serve` only see this
 * interface, so they cannot tell a local model from a remote one.
 *
 * Messages, tools and response formats are jansson values in the OpenAI JSON shapes:
 *   messages: [{"role": "system"|"user"|"assistant"|"tool", "content": "...",
 *               "tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}],
 *               "tool_call_id": "..."}]
 *   tools:    [{"type": "function", "function": {"name", "description", "parameters"}}]
 *
 * Control tokens: a backend frames each message with the model's own role tokens and must
 * tokenize message text (anything not written by llmos itself) with special-token parsing
 * off, so that text spelling "<|im_start|>" can never become the control token.
 *
 * Threads: llm_max_concurrent(b) chats may run at once on one backend object, from as many
 * threads; more wait for a turn inside llm_chat. The local backend batches the concurrent
 * chats (one forward pass for the tokens of all of them, continuous batching: see
 * batcher.h); a remote one sends them concurrently; test doubles take one at a time.
 */
#ifndef LLMOS_BACKEND_H
#define LLMOS_BACKEND_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/infer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One chat request. Pointers are borrowed for the duration of the call. */
typedef struct llm_request {
    const json_t *messages;        /* array of messages (required unless prompt is set) */
    const char *prompt;            /* raw completion prompt (/v1/completions); no template */
    const json_t *tools;           /* NULL or array of tool definitions */
    const char *tool_choice;       /* NULL/"auto", "none", "required", or a function name */
    const json_t *response_format; /* NULL, {"type":"json_object"}, or
                                      {"type":"json_schema","json_schema":{"schema":{...}}} */
    int32_t max_tokens;            /* <= 0: until the context is full */
    sampler_params sampling;
    const char *const *stop; /* stop strings, n_stop of them */
    size_t n_stop;
    const atomic_bool *cancel; /* NULL, or set to true from another thread to stop early */
    const char *cache_scope;   /* who may share KV cache with this request: a request reuses
                                  the cache of the longest common token prefix of an earlier
                                  request in the same scope (the kernel passes the principal,
                                  so users never share); NULL = share with no one (but a local
                                  backend with max_seqs 1 keeps its one conversation's cache
                                  for the next NULL-scoped request, as it always did) */
} llm_request;

/* A request with no messages, default sampling, no limits. */
LLMOS_API llm_request llm_request_default(void);

typedef struct llm_tool_call {
    char *id;        /* "call_..." */
    char *name;      /* function name */
    char *arguments; /* JSON text of the arguments object */
} llm_tool_call;

typedef struct llm_response {
    char *content; /* text of the answer (NUL-terminated, may be empty) */
    llm_tool_call *tool_calls;
    size_t n_tool_calls;
    const char *finish_reason; /* "stop", "length", "tool_calls", "cancelled" (static) */
    uint32_t prompt_tokens;
    uint32_t completion_tokens;
    uint32_t cached_tokens; /* prompt tokens whose KV cache was reused, not evaluated */
    double prompt_seconds;  /* time to evaluate the prompt (0 when unknown) */
    double gen_seconds;    /* time spent generating */
} llm_response;

LLMOS_API void llm_response_free(llm_response *r);

/* Called with each piece of generated text as it is produced (valid UTF-8, never split
 * inside a character). Return false to cancel the generation. */
typedef bool (*llm_stream_fn)(void *ctx, const char *text, size_t len);

typedef struct llm_backend llm_backend;

/* What a batching backend is doing, for metrics (llm_get_stats). Counters since open. */
typedef struct llm_stats {
    uint64_t steps;         /* forward passes */
    uint64_t tokens;        /* tokens evaluated in them (prompt and generated) */
    uint64_t cached_tokens; /* prompt tokens reused from the prefix cache */
    uint64_t swaps_out;     /* sequences swapped out of the KV pool (snapshot kept in memory) */
    uint64_t swaps_in;      /* ... and restored */
    size_t running;         /* chats generating now */
    size_t waiting;         /* chats waiting for a turn (max_seqs reached) */
    size_t last_batch;      /* sequences in the latest forward pass */
    size_t kept;            /* finished sequences kept for their prefix, cache resident */
    size_t swapped;         /* ... kept as snapshots */
    size_t kv_used;         /* bytes of the KV pool in use */
    size_t kv_budget;       /* its budget (kv_mem) */
} llm_stats;

typedef struct llm_backend_ops {
    const char *kind; /* "local", "remote", or a test double's name */
    /* Answer a chat request; stream may be NULL. On success fills *resp (caller frees with
     * llm_response_free). */
    llmos_err (*chat)(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                      void *stream_ctx, llm_response *resp);
    /* Embedding of a text: *vec (malloc'd, caller frees) of *dim floats, L2-normalised.
     * LLMOS_ERR_UNSUPPORTED when the backend cannot embed. */
    llmos_err (*embed)(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim);
    /* Tokens `text` takes in this backend's model (for context budgeting); an estimate where
     * exact counts are unavailable (remote). */
    llmos_err (*count_tokens)(llm_backend *b, const char *text, size_t len, size_t *n);
    /* Context window of the model in tokens. */
    size_t (*context_size)(llm_backend *b);
    const char *(*model_name)(llm_backend *b);
    void (*free)(llm_backend *b);
    /* Tokens the model sees for `messages` (and `tools`, may be NULL) framed by its chat
     * template, with the generation prompt: what a chat request's prompt would take. NULL:
     * the dispatcher's estimate. */
    llmos_err (*count_prompt)(llm_backend *b, const json_t *messages, const json_t *tools,
                              size_t *n);
    /* How many chats may run at once (llm_max_concurrent). NULL: 1. */
    size_t (*max_concurrent)(llm_backend *b);
    /* What the scheduler is doing (llm_get_stats). NULL: LLMOS_ERR_UNSUPPORTED. */
    llmos_err (*stats)(llm_backend *b, struct llm_stats *st);
    /* Context switches (llm_kv_save, llm_kv_restore, llm_kv_forget). NULL: unsupported. */
    llmos_err (*kv_save)(llm_backend *b, const char *scope, llmos_buf *out);
    llmos_err (*kv_restore)(llm_backend *b, const char *scope, const void *data, size_t len);
    size_t (*kv_forget)(llm_backend *b, const char *scope);
} llm_backend_ops;

struct llm_backend {
    const llm_backend_ops *ops;
};

/* Dispatchers over ops (NULL-safe where it makes sense). */
LLMOS_API LLMOS_NODISCARD llmos_err llm_chat(llm_backend *b, const llm_request *req,
                                             llm_stream_fn stream, void *stream_ctx,
                                             llm_response *resp);
LLMOS_API LLMOS_NODISCARD llmos_err llm_embed(llm_backend *b, const char *text, size_t len,
                                              float **vec, size_t *dim);
LLMOS_API LLMOS_NODISCARD llmos_err llm_count_tokens(llm_backend *b, const char *text, size_t len,
                                                     size_t *n);
/* Tokens a chat request's prompt takes (see count_prompt): the backend's exact count where it
 * has one, else an estimate from the texts (about four bytes a token, plus a few tokens of
 * framing per message). */
LLMOS_API LLMOS_NODISCARD llmos_err llm_count_prompt(llm_backend *b, const json_t *messages,
                                                     const json_t *tools, size_t *n);
LLMOS_API size_t llm_context_size(llm_backend *b);
/* How many llm_chat calls may run at once on b, from different threads: a local backend's
 * max_seqs, a remote one's max_concurrent, 1 for others (NULL b: 0). */
LLMOS_API size_t llm_max_concurrent(llm_backend *b);
/* The scheduler's counters (see llm_stats); LLMOS_ERR_UNSUPPORTED for backends without. */
LLMOS_API LLMOS_NODISCARD llmos_err llm_get_stats(llm_backend *b, llm_stats *st);
LLMOS_API const char *llm_model_name(llm_backend *b);
LLMOS_API void llm_backend_free(llm_backend *b);

/* Context switch. The KV cache a backend keeps for a cache scope (the prefix cache: what the
 * latest finished chat of that scope left) as bytes, for the kernel to seal into the store
 * when it swaps a process out or ends a session; restored later, into this backend or another
 * over the same model, the next request of the scope that shares its prefix starts from it
 * instead of evaluating its prompt again. The bytes are a KV snapshot (llmos/infer.h,
 * model_kv_save: format version, model digest, shapes, token ids, cache rows, checksum).
 *
 * llm_kv_save appends to out; LLMOS_ERR_NOT_FOUND when the scope has no kept cache.
 * llm_kv_restore refuses a malformed or corrupted snapshot (LLMOS_ERR_FORMAT), one of another
 * model or shape (LLMOS_ERR_INVALID naming both digests) or one longer than the context
 * (LLMOS_ERR_CONTEXT). llm_kv_forget drops what the scope has kept (a user's cache when the
 * user's session ends) and says how many sequences that was. Backends without a local model:
 * LLMOS_ERR_UNSUPPORTED (forget: 0). */
LLMOS_API LLMOS_NODISCARD llmos_err llm_kv_save(llm_backend *b, const char *scope, llmos_buf *out);
LLMOS_API LLMOS_NODISCARD llmos_err llm_kv_restore(llm_backend *b, const char *scope,
                                                   const void *data, size_t len);
LLMOS_API size_t llm_kv_forget(llm_backend *b, const char *scope);

/* ---- the local engine --------------------------------------------------------------------- */

typedef struct local_backend_params {
    uint32_t n_ctx;            /* positions of each sequence's KV cache; 0 = the model's
                                  context length, capped at 8192 */
    int n_threads;             /* <= 0 = pool_default_threads() */
    const char *chat_template; /* NULL = the GGUF's tokenizer.chat_template, else ChatML */
    uint32_t max_seqs;         /* chats batched at once; 0 = 1 (more wait for a turn) */
    uint32_t n_batch;          /* tokens of all chats in one forward pass; 0 = 256 (at least
                                  max_seqs); a prompt goes in chunks of at most this */
    size_t kv_mem;             /* bytes of KV cache for all sequences (running, and kept for
                                  the prefix cache); 0 = max_seqs full contexts. Less than one
                                  context: local_backend_open fails naming the numbers */
} local_backend_params;

LLMOS_API local_backend_params local_backend_default_params(void);

/* Load a GGUF model with its tokenizer and chat template. */
LLMOS_API LLMOS_NODISCARD llmos_err local_backend_open(const char *model_path,
                                                       const local_backend_params *p,
                                                       llm_backend **out);

/* A second backend over the same loaded model: it shares the parent's weights and tokenizer
 * (no second copy in memory) and has a KV cache and thread pool of its own, so the two keep
 * separate conversations. This is the quarantined model's default: the same model in a
 * context that never sees the privileged one. The parent must outlive the fork. */
LLMOS_API LLMOS_NODISCARD llmos_err local_backend_fork(llm_backend *parent, llm_backend **out);

/* The prompt builder of the local backend, with the control-token guarantee: render `tmpl`
 * for `messages` (+ `tools`, may be NULL) and tokenize it so that the template's own text is
 * parsed for special tokens while every message content, text part, tool result and tool-call
 * argument is tokenized with special-token parsing OFF (backend_local.c says how). *ids
 * (malloc'd, caller frees) gets *n_ids ids, with BOS in front when the tokenizer adds one.
 * When `spans` is non-NULL, *spans (malloc'd, caller frees) gets *n_spans numbers: pairs
 * [begin, end) of the id ranges that came from outside text. Fails with the template's error,
 * or LLMOS_ERR_UNSUPPORTED when the template altered a content string beyond recognition. */
LLMOS_API LLMOS_NODISCARD llmos_err local_chat_tokenize(const tokenizer *t, const char *tmpl,
                                                        const json_t *messages, const json_t *tools,
                                                        bool add_generation_prompt, int32_t **ids,
                                                        size_t *n_ids, size_t **spans,
                                                        size_t *n_spans);

/* ---- a remote OpenAI-compatible server ---------------------------------------------------- */

typedef struct remote_backend_params {
    const char *api_key;      /* NULL = none (else sent as "Authorization: Bearer ...") */
    double timeout_s;         /* whole-request timeout; 0 = 600 */
    double connect_timeout_s; /* 0 = 10 */
    int max_retries;          /* retries on 429/5xx/connection errors with backoff; default 3 */
    size_t context_size;      /* what context_size() reports; 0 = 8192 */
    size_t max_concurrent;    /* chats sent at once; more wait for a turn; 0 = 4 */
    const char *ca_file;      /* https: trust only the authorities in this PEM file (copied);
                                 NULL = the system's. Certificates are always verified */
} remote_backend_params;

LLMOS_API remote_backend_params remote_backend_default_params(void);

/* base_url like "http://127.0.0.1:8080/v1"; model is the server's model name. */
LLMOS_API LLMOS_NODISCARD llmos_err remote_backend_open(const char *base_url, const char *model,
                                                        const remote_backend_params *p,
                                                        llm_backend **out);

/* Read a whole chat-completions server-sent-events body as the remote backend reads a stream
 * (for tests and fuzzing): deltas go to `stream` (may be NULL) and are assembled into *resp
 * (caller frees with llm_response_free). LLMOS_ERR_FORMAT for a malformed event, naming it;
 * LLMOS_ERR_NETWORK for a body that ends without [DONE] or a finish_reason. */
LLMOS_API LLMOS_NODISCARD llmos_err remote_parse_stream(const char *body, size_t len,
                                                        llm_stream_fn stream, void *stream_ctx,
                                                        llm_response *resp);

#ifdef __cplusplus
}
#endif

#endif
