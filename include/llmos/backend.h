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
 * Threads: one request at a time per backend object unless its kind says otherwise; the
 * server queues requests in front of a backend.
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
    double prompt_seconds; /* time to evaluate the prompt (0 when unknown) */
    double gen_seconds;    /* time spent generating */
} llm_response;

LLMOS_API void llm_response_free(llm_response *r);

/* Called with each piece of generated text as it is produced (valid UTF-8, never split
 * inside a character). Return false to cancel the generation. */
typedef bool (*llm_stream_fn)(void *ctx, const char *text, size_t len);

typedef struct llm_backend llm_backend;

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
LLMOS_API const char *llm_model_name(llm_backend *b);
LLMOS_API void llm_backend_free(llm_backend *b);

/* ---- the local engine --------------------------------------------------------------------- */

typedef struct local_backend_params {
    uint32_t n_ctx;            /* 0 = the model's context length, capped at 8192 */
    int n_threads;             /* <= 0 = pool_default_threads() */
    const char *chat_template; /* NULL = the GGUF's tokenizer.chat_template, else ChatML */
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
