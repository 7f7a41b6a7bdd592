/*
 * llmos/server.h - `llmos serve`: the HTTP device of the kernel. It serves the
 * OpenAI-compatible API and llmos's own process, audit and memory API to clients that present
 * an API key, each through a kernel session of the key's principal.
 *
 * Two parts:
 *   - openai_api.c turns request bodies into llm_requests (openai_request_parse, a pure
 *     function that is fuzzed) and answers into the OpenAI JSON shapes (chat.completion,
 *     chat.completion.chunk, text_completion, embeddings, models, errors);
 *   - http_server.c serves them over HTTP with libmicrohttpd: one table of routes, API keys
 *     to principals (llmos/apikeys.h) and their sessions, body and connection limits, SSE
 *     streaming, and cancellation of a request whose client went away. The model, the store
 *     and the tools are reached only through session functions (llmos/kernel.h), which
 *     authorize, schedule and audit every request.
 *
 * Every error a client can cause is answered in the OpenAI error shape
 *   {"error": {"message": "...", "type": "...", "param": "..."|null, "code": "..."|null}}
 * with a message that names the field and says what was wrong. docs/api.md has the details.
 */
#ifndef LLMOS_SERVER_H
#define LLMOS_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/apikeys.h"
#include "llmos/auth.h"
#include "llmos/base.h"
#include "llmos/kernel.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- request parsing and response shapes (openai_api.c) --------------------------------- */

typedef enum openai_endpoint {
    OPENAI_CHAT,       /* POST /v1/chat/completions */
    OPENAI_COMPLETION, /* POST /v1/completions */
    OPENAI_EMBEDDING   /* POST /v1/embeddings */
} openai_endpoint;

/* Inputs of one embeddings request: each holds the model for tens of milliseconds, so a request
 * of thousands would hold it for minutes while everyone else waits. */
enum { OPENAI_MAX_STOP = 16, OPENAI_MAX_INPUTS = 64 };

/* A parsed request body. `req` points into `body`, which the request owns. */
typedef struct openai_request {
    openai_endpoint endpoint;
    json_t *body;           /* the parsed JSON body (owned) */
    llm_request req;        /* what goes to the backend (chat and completion) */
    const char *model;      /* the "model" member, NULL when absent */
    bool stream;            /* "stream": true */
    bool include_usage;     /* "stream_options": {"include_usage": true} */
    bool has_seed;          /* "seed" was given (else the server picks one) */
    bool max_tokens_capped; /* max_tokens was larger than the context and was lowered */
    const char *stop[OPENAI_MAX_STOP];
    const char **inputs; /* embeddings: the texts (malloc'd array of borrowed strings) */
    size_t n_inputs;
    char error_param[64]; /* on failure: the member that was wrong ("" = the body) */
} openai_request;

/* Parse the body of a request to `ep`. `n_ctx` is the backend's context size: max_tokens
 * (or max_completion_tokens) above it is lowered to it. Checks every member llmos uses for
 * type and range (unknown members are ignored, as OpenAI's servers do). On failure returns
 * LLMOS_ERR_FORMAT (not JSON) or LLMOS_ERR_INVALID / LLMOS_ERR_UNSUPPORTED (a member is
 * wrong), sets the detail message, puts the member's name in out->error_param, and leaves
 * nothing to free. On success the caller frees with openai_request_free. Pure: no I/O, no
 * global state besides the thread's error message. */
LLMOS_API LLMOS_NODISCARD llmos_err openai_request_parse(openai_endpoint ep, const char *body,
                                                         size_t len, size_t n_ctx,
                                                         openai_request *out);
LLMOS_API void openai_request_free(openai_request *r);

/* {"error": {"message", "type", "param", "code"}} (param and code may be NULL -> null). */
LLMOS_API json_t *openai_error_json(const char *message, const char *type, const char *param,
                                    const char *code);
/* The finish reason as OpenAI clients know it ("cancelled" and unknown ones become "stop"). */
LLMOS_API const char *openai_finish_reason(const char *backend_reason);
/* A whole answer: chat.completion (OPENAI_CHAT) or text_completion (OPENAI_COMPLETION). */
LLMOS_API json_t *openai_response_json(openai_endpoint ep, const char *id, int64_t created,
                                       const char *model, const llm_response *r);
/* One streamed chunk. `content` may be NULL (no text in this chunk); `role` adds
 * "role":"assistant" to a chat delta; `finish` NULL = null. For OPENAI_COMPLETION the chunk
 * is a text_completion with "text". */
LLMOS_API json_t *openai_chunk_json(openai_endpoint ep, const char *id, int64_t created,
                                    const char *model, bool role, const char *content, size_t len,
                                    const char *finish);
/* The chat chunk that carries the tool calls of a finished answer (delta.tool_calls with
 * their index). */
LLMOS_API json_t *openai_tool_calls_chunk_json(const char *id, int64_t created, const char *model,
                                               const llm_response *r);
/* {"prompt_tokens", "completion_tokens", "total_tokens",
 *  "prompt_tokens_details": {"cached_tokens"}} (cached: prompt tokens the prefix cache served). */
LLMOS_API json_t *openai_usage_json(uint32_t prompt_tokens, uint32_t completion_tokens,
                                    uint32_t cached_tokens);
/* The final usage chunk of a stream (choices: [], usage). */
LLMOS_API json_t *openai_usage_chunk_json(openai_endpoint ep, const char *id, int64_t created,
                                          const char *model, const llm_response *r);
/* GET /v1/models. */
LLMOS_API json_t *openai_models_json(const char *model, int64_t created);

/* ---- the HTTP server (http_server.c) ---------------------------------------------------- */

typedef struct http_server_params {
    const char *host;         /* address to bind; NULL = "127.0.0.1" */
    uint16_t port;            /* 0 = an ephemeral port (see http_server_port) */
    const apikeys *keys;      /* who may connect (borrowed: must outlive the server); NULL = no
                                 keys: one principal "local" with rights chat and embed, for
                                 clients on this machine (loopback addresses) only */
    size_t max_body;          /* request body limit in bytes; 0 = 1 MiB (larger: 413) */
    const char *model_name;   /* the id clients use; NULL = the kernel's model's name */
    unsigned max_connections; /* connections at once, all addresses; 0 = 256 */
    unsigned max_per_address; /* connections at once from one client address; 0 = 16 */
    unsigned idle_timeout_s;  /* a connection that sends nothing (an unfinished request line or
                                 headers, or an idle keep-alive) is closed after this; a request
                                 being answered is not idle; 0 = 10 */
    auth_server *accounts;    /* logins with a passphrase (POST /auth/login; borrowed: must
                          outlive the server); NULL = none. A login's cookie stands for
                          the account's own kernel session */
    const char *tls_cert_pem; /* serve HTTPS with this certificate (chain) and key, both PEM */
    const char *tls_key_pem;  /*   text (copied); NULL = plain HTTP */
    /* The installed apps for GET /v1/apps (the web UI's Apps page): a JSON array of
     * {"name", "version", "signed"} (a new reference), or NULL on failure with the thread's
     * error set. The program supplies it from its app store; NULL: the route answers []. */
    json_t *(*apps_list)(void *ctx);
    void *apps_ctx;
    const char *rp_id;  /* the host name passkeys are bound to (WebAuthn's RP ID); the UI
                           must be opened under it; NULL = "localhost" */
    bool insecure_bind; /* listen on an address other than loopback without TLS or
                           without authentication (keys or accounts): refused otherwise */
} http_server_params;

LLMOS_API http_server_params http_server_default_params(void);

typedef struct http_server http_server;

/* Bind and listen on p's address now, without answering yet: connections wait in the
 * kernel's backlog until http_server_serve. So a busy port is reported at once, before a
 * model is loaded. LLMOS_ERR_IO naming host and port when the address cannot be bound;
 * LLMOS_ERR_DENIED for an address other than loopback without TLS and authentication (unless
 * p->insecure_bind); LLMOS_ERR_UNSUPPORTED for TLS when libmicrohttpd was built without it. The
 * params (and p->keys) are kept until http_server_stop. */
LLMOS_API LLMOS_NODISCARD llmos_err http_server_bind(const http_server_params *p,
                                                     http_server **out);
/* Start answering on a bound server, on libmicrohttpd's threads, through sessions on k
 * (borrowed: it must outlive the server; one session per principal, opened at its first
 * request and closed by http_server_stop). */
LLMOS_API LLMOS_NODISCARD llmos_err http_server_serve(http_server *s, kernel *k);
/* http_server_bind and http_server_serve in one. */
LLMOS_API LLMOS_NODISCARD llmos_err http_server_start(kernel *k, const http_server_params *p,
                                                      http_server **out);
/* The port actually bound (useful with port 0). */
LLMOS_API uint16_t http_server_port(const http_server *s);
/* Counters for tests and logs. */
typedef struct http_server_stats {
    uint64_t requests;      /* HTTP requests received */
    uint64_t generations;   /* chat and completion requests the model answered */
    uint64_t cancelled;     /* requests stopped because the client went away or the server
                               stopped */
    uint64_t rejected_busy; /* 503s: the kernel's queue for the model was full */
    uint64_t limited;       /* 429s: a principal's limits refused the request */
    uint64_t denied;        /* 403s: a principal lacked the right or capability */
    uint64_t unauthorized;  /* 401s: no key, or an unknown one */
} http_server_stats;
LLMOS_API http_server_stats http_server_get_stats(http_server *s);
/* Stop accepting, cancel running requests, wait for them, close the sessions, free.
 * NULL-safe. */
LLMOS_API void http_server_stop(http_server *s);

#ifdef __cplusplus
}
#endif

#endif
