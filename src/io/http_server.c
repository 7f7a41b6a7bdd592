/*
 * http_server.c - the OpenAI-compatible HTTP server of `llmos serve`, on libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a
 * handler may block while its request waits for the backend or generates. A backend answers
 * one request at a time; requests wait for it in a FIFO queue of bounded length (a full queue
 * is answered 503 at once). A streamed answer is produced by a worker thread that writes
 * server-sent events into a buffer that libmicrohttpd's content-reader callback drains.
 *
 * Cancellation: a generation is cancelled when its client goes away. The server notices that
 * in three places: a peek at the socket while the request waits in the queue and after every
 * piece of text (recv(MSG_PEEK) returning 0 means the peer closed), and libmicrohttpd
 * freeing a stream's reader early (a failed write). Each sets the request's cancel flag,
 * which the backend checks between tokens.
 *
 * Security: the API key is compared in constant time (BLAKE2b digests of the presented and
 * the expected key compared with sodium_memcmp, so neither the content nor the length leaks
 * through timing). The body is bounded (413 past the limit, checked on Content-Length before
 * anything is read, and again while reading a chunked body).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "llmos/json.h"
#include "llmos/server.h"

#define HS_COMPONENT "serve"

/* One request waiting for the backend. */
typedef struct hs_waiter {
    struct hs_waiter *next;
} hs_waiter;

struct http_server {
    struct MHD_Daemon *daemon;
    llm_backend *backend;
    bool has_key;
    unsigned char key_hash[crypto_generichash_BYTES];
    size_t max_body, max_queue;
    char *model;
    size_t n_ctx;
    uint16_t port;
    int64_t started;

    pthread_mutex_t mu; /* guards the queue and `stopping` */
    pthread_cond_t cv;
    hs_waiter *head, *tail;
    size_t n_waiting;
    bool busy; /* a request holds the backend */
    bool stopping;

    atomic_uint_fast64_t n_requests, n_generations, n_cancelled, n_rejected, id_counter;
};

/* Per-connection state while a request body arrives. */
typedef struct hs_conn {
    llmos_buf body;
    bool too_big;
    bool answered; /* a response was queued before the body was read */
} hs_conn;

/* ---- small helpers ------------------------------------------------------------------------ */

/* Has the peer closed the connection? Peeking does not consume pipelined request bytes. */
static bool hs_peer_alive(int fd)
{
    if (fd < 0)
        return true;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0)
        return false;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return false;
    return true;
}

static int hs_conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static void hs_make_id(http_server *s, const char *prefix, char *out, size_t size)
{
    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof rnd);
    uint64_t n = atomic_fetch_add(&s->id_counter, 1);
    snprintf(out, size, "%s%02x%02x%02x%02x%02x%02x%02x%02x%06llx", prefix, rnd[0], rnd[1], rnd[2],
             rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], (unsigned long long)(n & 0xffffff));
}

/* Queue a JSON response (takes ownership of v). */
static enum MHD_Result hs_send_json(struct MHD_Connection *c, unsigned status, json_t *v)
{
    llmos_buf out = {0};
    if (!v || ljson_to_buf(v, 0, &out) || buf_putc(&out, '\n')) {
        json_decref(v);
        buf_free(&out);
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}\n";
        struct MHD_Response *r =
            MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
        MHD_add_response_header(r, "Content-Type", "application/json");
        enum MHD_Result ret = MHD_queue_response(c, 500, r);
        MHD_destroy_response(r);
        return ret;
    }
    json_decref(v);
    size_t len;
    char *data = buf_detach(&out, &len);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    if (status == 405)
        MHD_add_response_header(r, "Allow", "GET, POST");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result hs_send_error(struct MHD_Connection *c, unsigned status, const char *type,
                                     const char *param, const char *code, const char *message)
{
    return hs_send_json(c, status, openai_error_json(message, type, param, code));
}

/* The HTTP status, OpenAI error type and code for a backend's failure. */
static void hs_classify(llmos_err err, unsigned *status, const char **type, const char **code)
{
    *type = "server_error";
    *code = NULL;
    switch (err) {
    case LLMOS_ERR_INVALID:
    case LLMOS_ERR_FORMAT:
        *status = 400;
        *type = "invalid_request_error";
        break;
    case LLMOS_ERR_LIMIT:
        *status = 400;
        *type = "invalid_request_error";
        *code = "context_length_exceeded";
        break;
    case LLMOS_ERR_UNSUPPORTED:
        *status = 501;
        *type = "invalid_request_error";
        *code = "not_implemented";
        break;
    case LLMOS_ERR_NOT_FOUND:
        *status = 404;
        *type = "invalid_request_error";
        break;
    case LLMOS_ERR_AUTH:
    case LLMOS_ERR_NETWORK:
        *status = 502;
        *code = "upstream_error";
        break;
    case LLMOS_ERR_BUSY:
        *status = 503;
        *code = "server_busy";
        break;
    case LLMOS_ERR_CANCELLED:
        *status = 499;
        *code = "cancelled";
        break;
    default: *status = 500; break;
    }
}

/* ---- the queue in front of the backend ------------------------------------------------------ */

/* Take a place at the end of the queue, or fail when it is full (or the server stops). */
static llmos_err hs_queue_join(http_server *s, hs_waiter *w)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return llmos_fail(LLMOS_ERR_BUSY, "the server is shutting down");
    }
    if ((s->busy || s->head) && s->n_waiting >= s->max_queue) {
        size_t n = s->n_waiting;
        pthread_mutex_unlock(&s->mu);
        atomic_fetch_add(&s->n_rejected, 1);
        return llmos_fail(LLMOS_ERR_BUSY,
                          "the server is busy: %zu requests are already waiting for the model "
                          "(the queue limit); retry later",
                          n);
    }
    w->next = NULL;
    if (s->tail)
        s->tail->next = w;
    else
        s->head = w;
    s->tail = w;
    s->n_waiting++;
    pthread_mutex_unlock(&s->mu);
    return LLMOS_OK;
}

/* Unlink w (s->mu held). */
static void hs_queue_unlink(http_server *s, hs_waiter *w)
{
    hs_waiter **pp = &s->head, *prev = NULL;
    while (*pp && *pp != w) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (!*pp)
        return;
    *pp = w->next;
    if (s->tail == w)
        s->tail = prev;
    s->n_waiting--;
    pthread_cond_broadcast(&s->cv);
}

/* Wait until w is first and the backend is free, then hold the backend. Gives up (leaving the
 * queue) when *cancel is set, the peer on fd closed, or the server stops. */
static llmos_err hs_queue_wait(http_server *s, hs_waiter *w, atomic_bool *cancel, int fd)
{
    pthread_mutex_lock(&s->mu);
    for (;;) {
        /* checked before taking the backend too: a stopping server starts nothing new */
        if (s->stopping || atomic_load(cancel) || !hs_peer_alive(fd)) {
            hs_queue_unlink(s, w);
            pthread_mutex_unlock(&s->mu);
            atomic_store(cancel, true);
            return llmos_fail(LLMOS_ERR_CANCELLED, "the request was cancelled while queued");
        }
        if (!s->busy && s->head == w)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    hs_queue_unlink(s, w);
    s->busy = true;
    pthread_mutex_unlock(&s->mu);
    return LLMOS_OK;
}

static void hs_queue_leave(http_server *s)
{
    pthread_mutex_lock(&s->mu);
    assert(s->busy);
    s->busy = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static bool hs_stopping(http_server *s)
{
    pthread_mutex_lock(&s->mu);
    bool st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* ---- one generation ----------------------------------------------------------------------- */

/* What the backend's stream callback needs: where to write (NULL for a non-streamed answer,
 * which only checks that the client is still there). */
typedef struct hs_gen {
    http_server *s;
    int fd;
    atomic_bool *cancel;
    struct hs_stream *sse;
} hs_gen;

static bool hs_sse_emit_text(struct hs_stream *st, const char *text, size_t len);

static bool hs_on_text(void *ctx, const char *text, size_t len)
{
    hs_gen *g = ctx;
    if (atomic_load(g->cancel) || hs_stopping(g->s) || !hs_peer_alive(g->fd)) {
        atomic_store(g->cancel, true);
        return false;
    }
    if (g->sse && !hs_sse_emit_text(g->sse, text, len)) {
        atomic_store(g->cancel, true);
        return false;
    }
    return true;
}

/* Run the request on the backend (the caller holds the backend). */
static llmos_err hs_generate(http_server *s, openai_request *rq, hs_gen *g, llm_response *resp)
{
    if (!rq->has_seed) {
        uint64_t seed;
        randombytes_buf(&seed, sizeof seed);
        rq->req.sampling.seed = seed;
    }
    rq->req.cancel = g->cancel;
    atomic_fetch_add(&s->n_generations, 1);
    llmos_err err = llm_chat(s->backend, &rq->req, hs_on_text, g, resp);
    if (!err && atomic_load(g->cancel)) {
        atomic_fetch_add(&s->n_cancelled, 1);
        LOG_INFO(HS_COMPONENT, "generation cancelled: the client went away");
    } else if (err == LLMOS_ERR_CANCELLED) {
        atomic_fetch_add(&s->n_cancelled, 1);
    }
    return err;
}

/* ---- server-sent events ------------------------------------------------------------------- */

typedef struct hs_stream {
    http_server *s;
    openai_request rq;
    hs_waiter waiter;
    atomic_bool cancel;
    int fd;
    char id[64];
    int64_t created;
    bool sent_role;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards out, out_pos, done */
    pthread_cond_t cv;
    llmos_buf out;
    size_t out_pos;
    bool done;
} hs_stream;

/* Append one event "data: <json>\n\n" (takes v). */
static bool hs_sse_event(hs_stream *st, json_t *v)
{
    if (!v)
        return false;
    llmos_buf ev = {0};
    bool ok = !buf_puts(&ev, "data: ") && !ljson_to_buf(v, 0, &ev) && !buf_puts(&ev, "\n\n");
    json_decref(v);
    pthread_mutex_lock(&st->mu);
    ok = ok && !buf_append(&st->out, ev.data, ev.len);
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    buf_free(&ev);
    return ok;
}

static bool hs_sse_emit_text(hs_stream *st, const char *text, size_t len)
{
    bool role = !st->sent_role && st->rq.endpoint == OPENAI_CHAT;
    st->sent_role = true;
    return hs_sse_event(st, openai_chunk_json(st->rq.endpoint, st->id, st->created, st->s->model,
                                              role, text, len, NULL));
}

static void hs_sse_finish(hs_stream *st)
{
    pthread_mutex_lock(&st->mu);
    if (!buf_puts(&st->out, "data: [DONE]\n\n"))
        (void)0;
    st->done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

static void *hs_stream_worker(void *arg)
{
    hs_stream *st = arg;
    http_server *s = st->s;
    llmos_err err = hs_queue_wait(s, &st->waiter, &st->cancel, st->fd);
    if (err) {
        hs_sse_finish(st);
        return NULL;
    }
    llm_response resp = {0};
    hs_gen g = {.s = s, .fd = st->fd, .cancel = &st->cancel, .sse = st};
    err = hs_generate(s, &st->rq, &g, &resp);
    hs_queue_leave(s);
    if (err) {
        unsigned status;
        const char *type, *code;
        hs_classify(err, &status, &type, &code);
        hs_sse_event(st, openai_error_json(llmos_errmsg(), type, NULL, code));
    } else if (!atomic_load(&st->cancel)) {
        openai_endpoint ep = st->rq.endpoint;
        if (!st->sent_role && ep == OPENAI_CHAT)
            hs_sse_emit_text(st, "", 0);
        if (resp.n_tool_calls > 0)
            hs_sse_event(st, openai_tool_calls_chunk_json(st->id, st->created, s->model, &resp));
        hs_sse_event(st, openai_chunk_json(ep, st->id, st->created, s->model, false, NULL, 0,
                                           openai_finish_reason(resp.finish_reason)));
        if (st->rq.include_usage)
            hs_sse_event(st, openai_usage_chunk_json(ep, st->id, st->created, s->model, &resp));
    }
    llm_response_free(&resp);
    hs_sse_finish(st);
    return NULL;
}

/* libmicrohttpd asks for the next bytes of the stream; this may block (thread per
 * connection). */
static ssize_t hs_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    hs_stream *st = cls;
    pthread_mutex_lock(&st->mu);
    while (st->out_pos == st->out.len && !st->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        if (st->out_pos == st->out.len && !st->done && !hs_peer_alive(st->fd)) {
            atomic_store(&st->cancel, true);
            pthread_mutex_unlock(&st->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    if (st->out_pos == st->out.len) {
        pthread_mutex_unlock(&st->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = st->out.len - st->out_pos;
    if (n > max)
        n = max;
    memcpy(buf, st->out.data + st->out_pos, n);
    st->out_pos += n;
    if (st->out_pos == st->out.len) {
        buf_clear(&st->out);
        st->out_pos = 0;
    }
    pthread_mutex_unlock(&st->mu);
    return (ssize_t)n;
}

static void hs_stream_free(void *cls)
{
    hs_stream *st = cls;
    if (!st)
        return;
    /* freed early (the client went away): stop the generation, then wait for the worker */
    atomic_store(&st->cancel, true);
    pthread_mutex_lock(&st->s->mu);
    pthread_cond_broadcast(&st->s->cv);
    pthread_mutex_unlock(&st->s->mu);
    if (st->thread_started)
        pthread_join(st->thread, NULL);
    openai_request_free(&st->rq);
    buf_free(&st->out);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

/* Start a streamed answer; takes rq (already in the queue through `w`... see below). */
static enum MHD_Result hs_start_stream(http_server *s, struct MHD_Connection *c, openai_request *rq)
{
    hs_stream *st = calloc(1, sizeof *st);
    if (!st) {
        openai_request_free(rq);
        return hs_send_error(c, 500, "server_error", NULL, NULL, "out of memory");
    }
    st->s = s;
    st->rq = *rq;
    memset(rq, 0, sizeof *rq);
    st->fd = hs_conn_fd(c);
    st->created = (int64_t)time(NULL);
    hs_make_id(s, st->rq.endpoint == OPENAI_CHAT ? "chatcmpl-" : "cmpl-", st->id, sizeof st->id);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    atomic_init(&st->cancel, false);

    llmos_err err = hs_queue_join(s, &st->waiter);
    if (err) {
        enum MHD_Result r =
            hs_send_error(c, 503, "server_error", NULL, "server_busy", llmos_errmsg());
        hs_stream_free(st);
        return r;
    }
    if (pthread_create(&st->thread, NULL, hs_stream_worker, st) != 0) {
        pthread_mutex_lock(&s->mu);
        hs_queue_unlink(s, &st->waiter);
        pthread_mutex_unlock(&s->mu);
        hs_stream_free(st);
        return hs_send_error(c, 500, "server_error", NULL, NULL,
                             "could not start a thread for the stream");
    }
    st->thread_started = true;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
                                                               hs_stream_read, st, hs_stream_free);
    if (!r) {
        hs_stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- endpoints ---------------------------------------------------------------------------- */

static const char *hs_endpoint_path(openai_endpoint ep)
{
    return ep == OPENAI_CHAT         ? "/v1/chat/completions"
           : ep == OPENAI_COMPLETION ? "/v1/completions"
                                     : "/v1/embeddings";
}

static enum MHD_Result hs_embeddings(http_server *s, struct MHD_Connection *c, openai_request *rq)
{
    hs_waiter w;
    atomic_bool cancel;
    atomic_init(&cancel, false);
    int fd = hs_conn_fd(c);
    if (hs_queue_join(s, &w))
        return hs_send_error(c, 503, "server_error", NULL, "server_busy", llmos_errmsg());
    if (hs_queue_wait(s, &w, &cancel, fd))
        return MHD_NO; /* the client is gone */
    json_t *data = json_array();
    size_t tokens = 0;
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; !err && i < rq->n_inputs; i++) {
        float *vec = NULL;
        size_t dim = 0, n = 0;
        const char *text = rq->inputs[i];
        err = llm_embed(s->backend, text, strlen(text), &vec, &dim);
        if (!err && llm_count_tokens(s->backend, text, strlen(text), &n) == LLMOS_OK)
            tokens += n;
        if (!err) {
            json_t *arr = json_array();
            for (size_t k = 0; k < dim; k++)
                json_array_append_new(arr, json_real(vec[k]));
            json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
                                                  (json_int_t)i, "embedding", arr));
        }
        free(vec);
    }
    hs_queue_leave(s);
    if (err) {
        json_decref(data);
        unsigned status;
        const char *type, *code;
        hs_classify(err, &status, &type, &code);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s%s", llmos_errmsg(),
                 err == LLMOS_ERR_UNSUPPORTED ? " (this model cannot make embeddings)" : "");
        return hs_send_error(c, status, type, NULL, code, msg);
    }
    return hs_send_json(c, 200,
                        json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data,
                                  "model", s->model, "usage", "prompt_tokens", (json_int_t)tokens,
                                  "total_tokens", (json_int_t)tokens));
}

static enum MHD_Result hs_generation(http_server *s, struct MHD_Connection *c, openai_endpoint ep,
                                     const char *body, size_t len)
{
    openai_request rq;
    llmos_err err = openai_request_parse(ep, body, len, s->n_ctx, &rq);
    if (err) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s %s: %s", "POST", hs_endpoint_path(ep), llmos_errmsg());
        return hs_send_error(c, 400, "invalid_request_error", rq.error_param,
                             err == LLMOS_ERR_FORMAT        ? "invalid_json"
                             : err == LLMOS_ERR_UNSUPPORTED ? "unsupported_parameter"
                                                            : "invalid_value",
                             msg);
    }
    if (rq.model && strcmp(rq.model, s->model) != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg,
                 "The model '%.200s' does not exist here; this server serves '%.200s' "
                 "(see GET /v1/models)",
                 rq.model, s->model);
        openai_request_free(&rq);
        return hs_send_error(c, 404, "invalid_request_error", "model", "model_not_found", msg);
    }
    if (ep == OPENAI_EMBEDDING) {
        enum MHD_Result r = hs_embeddings(s, c, &rq);
        openai_request_free(&rq);
        return r;
    }
    if (rq.stream)
        return hs_start_stream(s, c, &rq);

    hs_waiter w;
    atomic_bool cancel;
    atomic_init(&cancel, false);
    int fd = hs_conn_fd(c);
    if (hs_queue_join(s, &w)) {
        openai_request_free(&rq);
        return hs_send_error(c, 503, "server_error", NULL, "server_busy", llmos_errmsg());
    }
    if (hs_queue_wait(s, &w, &cancel, fd)) {
        openai_request_free(&rq);
        return MHD_NO;
    }
    llm_response resp = {0};
    hs_gen g = {.s = s, .fd = fd, .cancel = &cancel, .sse = NULL};
    err = hs_generate(s, &rq, &g, &resp);
    hs_queue_leave(s);
    enum MHD_Result ret;
    if (err) {
        unsigned status;
        const char *type, *code;
        hs_classify(err, &status, &type, &code);
        ret = hs_send_error(c, status, type, NULL, code, llmos_errmsg());
    } else if (atomic_load(&cancel)) {
        ret = MHD_NO; /* the client went away: close the connection */
    } else {
        char id[64];
        hs_make_id(s, ep == OPENAI_CHAT ? "chatcmpl-" : "cmpl-", id, sizeof id);
        ret = hs_send_json(c, 200,
                           openai_response_json(ep, id, (int64_t)time(NULL), s->model, &resp));
    }
    llm_response_free(&resp);
    openai_request_free(&rq);
    return ret;
}

/* Is the Authorization header "Bearer <the key>"? Constant time in the key. */
static bool hs_authorized(http_server *s, struct MHD_Connection *c)
{
    if (!s->has_key)
        return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    unsigned char got[crypto_generichash_BYTES];
    crypto_generichash(got, sizeof got, (const unsigned char *)h, strlen(h), NULL, 0);
    return sodium_memcmp(got, s->key_hash, sizeof got) == 0;
}

/* The request line and headers have arrived: decide what can be decided before the body. */
static enum MHD_Result hs_precheck(http_server *s, struct MHD_Connection *c, const char *url,
                                   const char *method, bool *handled)
{
    *handled = true;
    if (strcmp(url, "/health") != 0 && !hs_authorized(s, c))
        return hs_send_error(c, 401, "invalid_request_error", NULL, "invalid_api_key",
                             "Incorrect or missing API key: send the header "
                             "'Authorization: Bearer <key>' with the key the server was "
                             "started with");
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strcmp(method, "POST") == 0) {
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > s->max_body) {
            char msg[1024];
            snprintf(msg, sizeof msg, "The request body is %llu bytes; the limit is %zu bytes", n,
                     s->max_body);
            return hs_send_error(c, 413, "invalid_request_error", NULL, "request_too_large", msg);
        }
    }
    *handled = false;
    return MHD_YES;
}

static enum MHD_Result hs_route(http_server *s, struct MHD_Connection *c, const char *url,
                                const char *method, const char *body, size_t len)
{
    bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
    static const struct {
        const char *path;
        bool post;
    } routes[] = {{"/health", false},
                  {"/v1/models", false},
                  {"/v1/chat/completions", true},
                  {"/v1/completions", true},
                  {"/v1/embeddings", true}};
    size_t k;
    for (k = 0; k < LLMOS_ARRAY_LEN(routes); k++)
        if (strcmp(url, routes[k].path) == 0)
            break;
    bool model_path = strncmp(url, "/v1/models/", 11) == 0;
    if (k == LLMOS_ARRAY_LEN(routes) && !model_path) {
        char msg[1024];
        snprintf(msg, sizeof msg,
                 "Unknown URL %.200s %.200s; llmos serves GET /health, GET /v1/models, POST "
                 "/v1/chat/completions, POST /v1/completions and POST /v1/embeddings",
                 method, url);
        return hs_send_error(c, 404, "invalid_request_error", NULL, "unknown_url", msg);
    }
    bool want_post = model_path ? false : routes[k].post;
    if ((want_post && !post) || (!want_post && !get)) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%.200s needs %s, not %.20s", url, want_post ? "POST" : "GET",
                 method);
        return hs_send_error(c, 405, "invalid_request_error", NULL, "method_not_allowed", msg);
    }
    if (model_path) {
        const char *id = url + 11;
        if (strcmp(id, s->model) != 0) {
            char msg[1024];
            snprintf(msg, sizeof msg,
                     "The model '%.200s' does not exist here; this server "
                     "serves '%.200s'",
                     id, s->model);
            return hs_send_error(c, 404, "invalid_request_error", "model", "model_not_found", msg);
        }
        return hs_send_json(c, 200,
                            json_pack("{s:s, s:s, s:I, s:s}", "id", s->model, "object", "model",
                                      "created", (json_int_t)s->started, "owned_by", "llmos"));
    }
    switch (k) {
    case 0: {
        pthread_mutex_lock(&s->mu);
        size_t q = s->n_waiting;
        bool busy = s->busy;
        pthread_mutex_unlock(&s->mu);
        return hs_send_json(c, 200,
                            json_pack("{s:s, s:s, s:b, s:I}", "status", "ok", "model", s->model,
                                      "busy", busy, "queued", (json_int_t)q));
    }
    case 1: return hs_send_json(c, 200, openai_models_json(s->model, s->started));
    case 2: return hs_generation(s, c, OPENAI_CHAT, body, len);
    case 3: return hs_generation(s, c, OPENAI_COMPLETION, body, len);
    default: return hs_generation(s, c, OPENAI_EMBEDDING, body, len);
    }
}

static enum MHD_Result hs_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    http_server *s = cls;
    hs_conn *hc = *con_cls;
    if (!hc) {
        hc = calloc(1, sizeof *hc);
        if (!hc)
            return MHD_NO;
        *con_cls = hc;
        atomic_fetch_add(&s->n_requests, 1);
        bool handled;
        enum MHD_Result r = hs_precheck(s, c, url, method, &handled);
        hc->answered = handled;
        return r;
    }
    if (*upload_data_size > 0) {
        if (!hc->answered && !hc->too_big) {
            if (hc->body.len + *upload_data_size > s->max_body) {
                hc->too_big = true;
                buf_free(&hc->body);
            } else if (buf_append(&hc->body, upload_data, *upload_data_size)) {
                return MHD_NO;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (hc->answered)
        return MHD_YES;
    hc->answered = true;
    if (hc->too_big) {
        char msg[1024];
        snprintf(msg, sizeof msg, "The request body is larger than the limit of %zu bytes",
                 s->max_body);
        return hs_send_error(c, 413, "invalid_request_error", NULL, "request_too_large", msg);
    }
    return hs_route(s, c, url, method, hc->body.data ? hc->body.data : "", hc->body.len);
}

static void hs_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    hs_conn *hc = *con_cls;
    if (!hc)
        return;
    buf_free(&hc->body);
    free(hc);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages (a client that hung up, ...) go to the debug log. */
static void hs_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = 0;
    LOG_DEBUG(HS_COMPONENT, "libmicrohttpd: %s", msg);
}

/* ---- start and stop ----------------------------------------------------------------------- */

http_server_params http_server_default_params(void)
{
    http_server_params p = {0};
    p.host = "127.0.0.1";
    p.max_body = 1u << 20;
    p.max_queue = 16;
    p.max_connections = 64;
    return p;
}

llmos_err http_server_start(llm_backend *backend, const http_server_params *p, http_server **out)
{
    *out = NULL;
    if (!backend)
        return llmos_fail(LLMOS_ERR_INVALID, "http_server_start: no backend");
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libsodium could not be initialised");
    http_server_params d = http_server_default_params();
    if (!p)
        p = &d;
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";

    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%u", (unsigned)p->port);
    int gai = getaddrinfo(host, port_s, &hints, &ai);
    if (gai != 0)
        return llmos_fail(LLMOS_ERR_INVALID, "serve: cannot resolve host '%s': %s", host,
                          gai_strerror(gai));

    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    s->backend = backend;
    s->max_body = p->max_body ? p->max_body : d.max_body;
    s->max_queue = p->max_queue ? p->max_queue : d.max_queue;
    const char *name = p->model_name ? p->model_name : llm_model_name(backend);
    s->model = strdup(name && *name ? name : "llmos");
    s->n_ctx = llm_context_size(backend);
    s->started = (int64_t)time(NULL);
    if (p->api_key && *p->api_key) {
        s->has_key = true;
        crypto_generichash(s->key_hash, sizeof s->key_hash, (const unsigned char *)p->api_key,
                           strlen(p->api_key), NULL, 0);
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->model) {
        freeaddrinfo(ai);
        http_server_stop(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }

    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned max_conn = p->max_connections ? p->max_connections : d.max_connections;
    s->daemon = MHD_start_daemon(flags, p->port, NULL, NULL, hs_access, s, MHD_OPTION_SOCK_ADDR,
                                 ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, max_conn,
                                 MHD_OPTION_NOTIFY_COMPLETED, hs_completed, s,
                                 MHD_OPTION_EXTERNAL_LOGGER, hs_mhd_log, NULL, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        int e = errno;
        http_server_stop(s);
        return llmos_fail(LLMOS_ERR_IO,
                          "serve: cannot listen on %s port %u (%s); is another server using "
                          "that port? choose another with --port",
                          host, (unsigned)p->port, e ? strerror(e) : "libmicrohttpd refused");
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : p->port;
    *out = s;
    return LLMOS_OK;
}

uint16_t http_server_port(const http_server *s)
{
    return s ? s->port : 0;
}

http_server_stats http_server_get_stats(http_server *s)
{
    http_server_stats st = {0};
    st.requests = atomic_load(&s->n_requests);
    st.generations = atomic_load(&s->n_generations);
    st.cancelled = atomic_load(&s->n_cancelled);
    st.rejected_busy = atomic_load(&s->n_rejected);
    pthread_mutex_lock(&s->mu);
    st.queued = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
    return st;
}

void http_server_stop(http_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->daemon)
        MHD_stop_daemon(s->daemon);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->model);
    sodium_memzero(s->key_hash, sizeof s->key_hash);
    free(s);
}
