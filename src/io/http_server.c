/*
 * http_server.c - the HTTP device of the kernel (`llmos serve`), on libmicrohttpd: the
 * OpenAI-compatible API and llmos's own process, audit and memory API.
 *
 * Who asks. Every route but /health needs a principal: the entry of the keys file whose key
 * the client sends as "Authorization: Bearer KEY" (llmos/apikeys.h), or, on a server without
 * keys, the principal "local" for clients on loopback addresses only. Each principal gets one
 * kernel session, opened at its first request and kept until the server stops; everything a
 * request does goes through that session, which checks the principal's rights and limits,
 * puts model calls in the kernel's fair queue and audits them. A request that no session
 * function records (a read, a malformed body, a refusal by the limits) gets one "request"
 * record at its end, so each request is in the audit log once (docs/api.md, "Audit").
 *
 * Logins. With accounts (llmos/auth.h), a session cookie stands for a logged-in account: its
 * requests run through that account's own kernel session, on its own store, held (auth_ref)
 * until the request completes. A change (any method but GET and HEAD) made with a cookie needs
 * the session's CSRF token and this server's Origin. /auth/login and the passkey ceremonies
 * under /auth/passkey are open routes; so are / and /ui/ (the web UI, src/io/web.c).
 *
 * Transport. With a certificate and key the daemon speaks TLS (libmicrohttpd's GnuTLS), every
 * answer carries HSTS, and the cookie is __Host- and Secure. An address beyond loopback is
 * refused at bind without TLS and authentication, unless the caller insists (insecure_bind).
 *
 * Routes are one table (hs_routes): method, path pattern, handler. A path that exists with
 * another method is 405 with an Allow header; an unknown path 404, after authentication, so
 * that the routes are not probed without a key.
 *
 * Threads. libmicrohttpd runs one thread per connection, so a handler may block while its
 * request waits for the model (the kernel's scheduler) or generates. A streamed answer (OpenAI
 * chat and completions with "stream": true, a process message with "stream": true) runs on a
 * worker thread that writes server-sent events into a buffer that libmicrohttpd's
 * content-reader callback drains. The status line waits until the worker has either written
 * something or is waiting in the model's queue, or has failed: so a request refused by a right
 * or a limit is answered 403 or 429 with a JSON error, never a stream that fails.
 *
 * Cancellation. A request that may run long registers a flight: its connection's socket and
 * a cancel flag. A watcher thread looks at every flight each 100 ms and raises the flag when
 * the peer closed (recv(MSG_PEEK) returning 0) or the server stops. The flag is the one the
 * session functions watch (the request's cancel, the turn's cancel, the scheduler's probe),
 * so a client that goes away stops its generation or turn, or leaves the queue.
 *
 * Connections (slowloris). libmicrohttpd closes a connection that sends nothing for
 * idle_timeout_s (an unfinished request line or headers, or an idle keep-alive), refuses more
 * than max_per_address connections from one address and max_connections in all. While a
 * request is being answered its connection has no timeout (a long generation sends nothing
 * either); the timeout is restored when the request completes.
 *
 * Security: keys are matched in constant time (apikeys_match); the body is bounded (413 past
 * the limit, checked on Content-Length before anything is read and again while reading); a
 * 401 logs the client's address, never the key.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "io/web.h"
#include "llmos/auth.h"
#include "io/voice_http.h"
#include "llmos/json.h"
#include "llmos/server.h"

#define HS_COMPONENT  "serve"
#define HS_LOCAL      "local"                /* the principal of a server without keys */
#define HS_TICK_MS    100                    /* how often waiters look at their cancel flag */
#define HS_COOKIE     "llmos_session"        /* the login cookie over plain HTTP (loopback) */
#define HS_COOKIE_TLS "__Host-llmos_session" /* over HTTPS: Secure, Path=/, no Domain */
#define HS_HSTS       "max-age=31536000"

/* ---- types -------------------------------------------------------------------------------- */

/* A request in flight whose client may go away (see Cancellation above). */
typedef struct hs_flight {
    struct hs_flight *next;
    int fd;
    atomic_bool cancel;
} hs_flight;

struct http_server {
    struct MHD_Daemon *daemon;
    int listen_fd; /* ours until libmicrohttpd takes it in http_server_serve */
    kernel *k;
    voice_http *voice; /* the speech endpoints (src/io/voice_http.c) */
    const apikeys *keys;
    auth_server *accounts;           /* logins with a passphrase; NULL = none */
    char *tls_cert, *tls_key;        /* PEM, when serving HTTPS */
    char rp_id[256];                 /* the WebAuthn RP ID passkeys are bound to */
    json_t *(*apps_list)(void *ctx); /* the installed apps, from the program */
    void *apps_ctx;
    ksession **sessions; /* one per keys entry, or one for "local"; opened lazily */
    size_t n_sessions;
    size_t max_body;
    unsigned max_connections, max_per_address, idle_timeout_s;
    char host[256];
    char *model;
    size_t n_ctx;
    uint16_t port;
    int64_t started;

    pthread_mutex_t mu; /* sessions, flights, watcher_stop */
    pthread_cond_t cv;
    hs_flight *flights;
    pthread_t watcher;
    bool watcher_started, watcher_stop;
    atomic_bool stopping;

    atomic_uint_fast64_t n_requests, n_generations, n_cancelled, n_busy, n_limited, n_denied,
        n_unauthorized;
    atomic_uint_fast64_t id_counter;
};

/* The path parameters a route pattern names. */
typedef struct hs_args {
    int64_t pid;    /* {pid} */
    const char *id; /* {id}: the rest of the path */
} hs_args;

struct hs_req;
typedef enum MHD_Result (*hs_handler)(struct hs_req *r);

/* One line of the route table. */
typedef struct hs_route {
    const char *method;
    const char *pattern; /* "/v1/processes/{pid}/messages"; {id} takes the rest of the path */
    hs_handler fn;
    bool open; /* answered without a key */
} hs_route;

/* Per-connection state while a request's body arrives. */
typedef struct hs_conn {
    llmos_buf body;
    bool too_big;
    bool answered; /* a response was queued before the body was read */
    const hs_route *route;
    hs_args args;
    long slot;      /* the principal's session slot; -1 for open routes and logins */
    ksession *user; /* a logged-in account's session (held by ref) */
    auth_ref *ref;
    char token[AUTH_TOKEN_CHARS + 1]; /* the login cookie, when it was valid */
    char csrf[AUTH_TOKEN_CHARS + 1];  /* its CSRF token */
} hs_conn;

/* One request being answered. */
typedef struct hs_req {
    http_server *s;
    struct MHD_Connection *c;
    ksession *ses; /* NULL on open routes */
    const char *method, *url;
    const char *body;
    size_t len;
    hs_args args;
    const hs_conn *hc; /* the login session, if any (token, csrf) */
    bool recorded;     /* a session function audited it */
    unsigned status;   /* what was answered, for the request record */
    const char *code;  /* the error code answered, if any */
} hs_req;

/* An error to answer, captured on the thread of the failed session call (the message and the
 * rate-limit state are per thread). */
typedef struct hs_error {
    unsigned status;
    const char *type, *code;
    double retry_s; /* 429: the Retry-After seconds */
    char message[1024];
} hs_error;

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

/* Is the client on this machine (127.0.0.0/8, ::1, or ::ffff:127.x.y.z)? */
static bool hs_peer_loopback(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

static void hs_peer_name(struct MHD_Connection *c, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, size, "?");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

static void hs_make_id(http_server *s, const char *prefix, char *out, size_t size)
{
    unsigned char rnd[8];
    randombytes_buf(rnd, sizeof rnd);
    char hex[2 * sizeof rnd + 1];
    llmos_hex_encode(hex, sizeof hex, rnd, sizeof rnd);
    uint64_t n = atomic_fetch_add(&s->id_counter, 1);
    snprintf(out, size, "%s%s%06llx", prefix, hex, (unsigned long long)(n & 0xffffff));
}

/* What every answer carries: no sniffing, no framing, no referrer; HSTS over HTTPS. */
static void hs_common_headers(const http_server *s, struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    if (s->tls_cert)
        MHD_add_response_header(r, "Strict-Transport-Security", HS_HSTS);
}

/* Queue a JSON response (takes ownership of v), with one extra header when hname is set. */
static enum MHD_Result hs_send_json(const http_server *s, struct MHD_Connection *c, unsigned status,
                                    json_t *v, const char *hname, const char *hvalue)
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
    MHD_add_response_header(r, "Cache-Control", "no-store");
    hs_common_headers(s, r);
    if (hname)
        MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Count the refusals a client can cause, for http_server_get_stats. */
static void hs_count(http_server *s, unsigned status)
{
    switch (status) {
    case 401: atomic_fetch_add(&s->n_unauthorized, 1); break;
    case 403: atomic_fetch_add(&s->n_denied, 1); break;
    case 429: atomic_fetch_add(&s->n_limited, 1); break;
    case 503: atomic_fetch_add(&s->n_busy, 1); break;
    default: break;
    }
}

/* An error in the OpenAI shape, before a request has a session (authentication, routing). */
static enum MHD_Result hs_send_error(http_server *s, struct MHD_Connection *c, unsigned status,
                                     const char *type, const char *code, const char *message,
                                     const char *hname, const char *hvalue)
{
    hs_count(s, status);
    return hs_send_json(s, c, status, openai_error_json(message, type, NULL, code), hname, hvalue);
}

/* ---- answers of a request ----------------------------------------------------------------- */

static enum MHD_Result hs_reply(hs_req *r, unsigned status, json_t *v)
{
    assert(status >= 200 && status < 300);
    r->status = status;
    return hs_send_json(r->s, r->c, status, v, NULL, NULL);
}

static enum MHD_Result hs_reply_error(hs_req *r, unsigned status, const char *param,
                                      const char *code, const char *fmt, ...) LLMOS_PRINTF(5, 6);

/* A client's mistake in the OpenAI error shape ("invalid_request_error"). */
static enum MHD_Result hs_reply_error(hs_req *r, unsigned status, const char *param,
                                      const char *code, const char *fmt, ...)
{
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->status = status;
    r->code = code;
    hs_count(r->s, status);
    return hs_send_json(r->s, r->c, status,
                        openai_error_json(msg, "invalid_request_error", param, code), NULL, NULL);
}

/* What to answer for a session function's failure. Call it on the thread that made the call,
 * before anything else can set the thread's error. */
static void hs_error_capture(hs_error *e, llmos_err err)
{
    snprintf(e->message, sizeof e->message, "%s", llmos_errmsg());
    e->type = "server_error";
    e->code = NULL;
    e->retry_s = 0;
    switch (err) {
    case LLMOS_ERR_INVALID:
    case LLMOS_ERR_FORMAT:
        e->status = 400;
        e->type = "invalid_request_error";
        e->code = "invalid_value";
        break;
    case LLMOS_ERR_LIMIT:
        if (ksession_rate_limited(&e->retry_s)) {
            e->status = 429;
            e->type = "rate_limit_error";
            e->code = "rate_limit_exceeded";
        } else { /* a size or count limit of llmos's (a template's output, a schema's size) */
            e->status = 400;
            e->type = "invalid_request_error";
            e->code = "limit_exceeded";
        }
        break;
    case LLMOS_ERR_CONTEXT:
        e->status = 400;
        e->type = "invalid_request_error";
        e->code = "context_length_exceeded";
        break;
    case LLMOS_ERR_DENIED:
        e->status = 403;
        e->type = "permission_error";
        e->code = "permission_denied";
        break;
    case LLMOS_ERR_UNSUPPORTED: /* the request asks for what llmos does not do (a JSON Schema
                                   keyword, embeddings from a remote model that has none): the
                                   client's to change, so a 400 that clients do not retry */
        e->status = 400;
        e->type = "invalid_request_error";
        e->code = "unsupported";
        break;
    case LLMOS_ERR_NOT_FOUND:
        e->status = 404;
        e->type = "invalid_request_error";
        e->code = "not_found";
        break;
    case LLMOS_ERR_AUTH:
    case LLMOS_ERR_NETWORK:
        e->status = 502;
        e->code = "upstream_error";
        break;
    case LLMOS_ERR_BUSY:
        e->status = 503;
        e->code = "server_busy";
        break;
    case LLMOS_ERR_CANCELLED:
        e->status = 499;
        e->code = "cancelled";
        break;
    default: e->status = 500; break;
    }
}

static enum MHD_Result hs_reply_captured(hs_req *r, const hs_error *e)
{
    r->status = e->status;
    r->code = e->code;
    hs_count(r->s, e->status);
    char retry[32];
    /* Retry-After in whole seconds, rounded up, at least 1 */
    snprintf(retry, sizeof retry, "%lld", (long long)e->retry_s + 1);
    return hs_send_json(r->s, r->c, e->status,
                        openai_error_json(e->message, e->type, NULL, e->code),
                        e->status == 429 ? "Retry-After" : NULL, retry);
}

/* Answer a session function's failure; call right after it. */
static enum MHD_Result hs_reply_failure(hs_req *r, llmos_err err)
{
    hs_error e;
    hs_error_capture(&e, err);
    return hs_reply_captured(r, &e);
}

/* Did the session record this failure itself? (It records what it refused by a right, and
 * everything it admitted; a refusal by the limits is the device's to record.) */
static bool hs_session_recorded(llmos_err err)
{
    return err == LLMOS_ERR_DENIED || !(err == LLMOS_ERR_LIMIT && ksession_rate_limited(NULL));
}

/* ---- flights and their watcher ------------------------------------------------------------ */

static void hs_flight_begin(http_server *s, hs_flight *f, struct MHD_Connection *c)
{
    assert(s->k);
    f->fd = hs_conn_fd(c);
    atomic_init(&f->cancel, atomic_load(&s->stopping));
    pthread_mutex_lock(&s->mu);
    f->next = s->flights;
    s->flights = f;
    pthread_mutex_unlock(&s->mu);
}

static void hs_flight_end(http_server *s, hs_flight *f)
{
    pthread_mutex_lock(&s->mu);
    for (hs_flight **pp = &s->flights; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* Raise f's flag; counts each request once. */
static void hs_flight_cancel(http_server *s, hs_flight *f)
{
    if (!atomic_exchange(&f->cancel, true))
        atomic_fetch_add(&s->n_cancelled, 1);
}

static void *hs_watcher_main(void *arg)
{
    http_server *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->watcher_stop) {
        bool stopping = atomic_load(&s->stopping);
        for (hs_flight *f = s->flights; f; f = f->next)
            if (stopping || !hs_peer_alive(f->fd))
                hs_flight_cancel(s, f);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += HS_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- principals and their sessions -------------------------------------------------------- */

/* The session of slot (a keys entry, or the local principal), opened at its first use. */
static llmos_err hs_session(http_server *s, long slot, ksession **out)
{
    assert(slot >= 0 && (size_t)slot < s->n_sessions);
    llmos_err err = LLMOS_OK;
    pthread_mutex_lock(&s->mu);
    if (!s->sessions[slot]) {
        ksession_params p = {.device = "http"};
        if (s->keys) {
            const apikey *e = apikeys_get(s->keys, (size_t)slot);
            p.principal = e->principal;
            p.rights = e->rights;
            p.caps = e->caps;
            p.budget = e->budget;
            p.turn = e->turn;
            p.limits = e->limits;
            p.audit_content = e->audit_content;
        } else {
            p.principal = HS_LOCAL;
            p.rights = KRIGHT_CHAT | KRIGHT_EMBED;
            p.caps = KCAP_COMPUTE | KCAP_MESSAGE;
        }
        err = ksession_open(s->k, &p, &s->sessions[slot]);
    }
    *out = s->sessions[slot];
    pthread_mutex_unlock(&s->mu);
    return err;
}

/* Who is asking: the session slot of the key sent, or -1 with an answer queued in *ret. */
static long hs_authenticate(http_server *s, struct MHD_Connection *c, enum MHD_Result *ret)
{
    char peer[64];
    if (!s->keys) {
        if (hs_peer_loopback(c))
            return 0;
        hs_peer_name(c, peer, sizeof peer);
        LOG_INFO(HS_COMPONENT, "refused %s: a server without API keys serves this machine only",
                 peer);
        *ret = hs_send_error(s, c, 403, "permission_error", "local_only",
                             "This llmos server has no API keys, so it answers only clients on "
                             "its own machine; start it with --keys FILE (see `llmos key new`) "
                             "to let others in",
                             NULL, NULL);
        return -1;
    }
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    long slot = -1;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ')
            h++;
        slot = apikeys_match(s->keys, h, strlen(h));
    }
    if (slot >= 0)
        return slot;
    hs_peer_name(c, peer, sizeof peer);
    LOG_INFO(HS_COMPONENT, "refused %s: %s API key", peer, h ? "an unknown" : "no");
    *ret = hs_send_error(s, c, 401, "invalid_request_error", "invalid_api_key",
                         "Incorrect or missing API key: send the header 'Authorization: Bearer "
                         "<key>' with a key the server knows (llmos key new makes one)",
                         NULL, NULL);
    return -1;
}

/* ---- server-sent events ------------------------------------------------------------------- */

typedef enum hs_stream_kind { HS_STREAM_OPENAI, HS_STREAM_PROCESS } hs_stream_kind;

/* A streamed answer: a worker makes the session call and writes events into `out`, which
 * libmicrohttpd's reader drains. The status line waits for `ready` (something was written,
 * or the request waits in the model's queue) or `done`. */
typedef struct hs_stream {
    http_server *s;
    hs_stream_kind kind;
    ksession *ses;
    hs_flight flight;
    openai_request rq; /* HS_STREAM_OPENAI */
    char id[64];
    int64_t created;
    bool sent_role;
    int64_t pid; /* HS_STREAM_PROCESS */
    char *message;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;
    llmos_buf out;
    size_t out_pos;
    bool ready, done;
    bool failed;    /* failed before anything was written: `error` is the answer */
    bool recorded;  /* the session recorded the request */
    hs_error error; /* when failed */
} hs_stream;

/* Append bytes to the stream (st->mu not held). */
static bool hs_stream_put(hs_stream *st, const llmos_buf *ev)
{
    pthread_mutex_lock(&st->mu);
    bool ok = !buf_append(&st->out, ev->data, ev->len);
    st->ready = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return ok;
}

/* Append "event: <name>\n" (when name) "data: <json>\n\n" (takes v). */
static bool hs_sse_event(hs_stream *st, const char *name, json_t *v)
{
    if (!v)
        return false;
    llmos_buf ev = {0};
    bool ok = (!name || !buf_printf(&ev, "event: %s\n", name)) && !buf_puts(&ev, "data: ") &&
              !ljson_to_buf(v, 0, &ev) && !buf_puts(&ev, "\n\n");
    json_decref(v);
    ok = ok && hs_stream_put(st, &ev);
    buf_free(&ev);
    return ok;
}

/* The worker's end: a failure before anything was written becomes the JSON answer; after,
 * an error event. */
static void hs_stream_finish(hs_stream *st, llmos_err err, bool recorded)
{
    hs_error e = {0};
    if (err)
        hs_error_capture(&e, err);
    pthread_mutex_lock(&st->mu);
    bool ready = st->ready;
    pthread_mutex_unlock(&st->mu);
    if (err && ready)
        hs_sse_event(st, st->kind == HS_STREAM_PROCESS ? "error" : NULL,
                     openai_error_json(e.message, e.type, NULL, e.code));
    pthread_mutex_lock(&st->mu);
    if (err && !ready) {
        st->failed = true;
        st->error = e;
    }
    if (st->ready && st->kind == HS_STREAM_OPENAI && buf_puts(&st->out, "data: [DONE]\n\n"))
        LOG_WARN(HS_COMPONENT, "a stream lost its last event: out of memory");
    st->recorded = recorded;
    st->done = true;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* libmicrohttpd asks for the next bytes; this blocks (a thread per connection) until there
 * are some, the worker is done, or the client went away. */
static ssize_t hs_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    hs_stream *st = cls;
    pthread_mutex_lock(&st->mu);
    while (st->out_pos == st->out.len && !st->done) {
        if (atomic_load(&st->flight.cancel)) {
            pthread_mutex_unlock(&st->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += HS_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
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

/* Stop the worker (it sees the cancel flag), wait for it, free. Also libmicrohttpd's free
 * callback of a stream's response. */
static void hs_stream_free(void *cls)
{
    hs_stream *st = cls;
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    bool done = st->done;
    pthread_mutex_unlock(&st->mu);
    if (!done)
        hs_flight_cancel(st->s, &st->flight);
    if (st->thread_started)
        pthread_join(st->thread, NULL);
    hs_flight_end(st->s, &st->flight);
    openai_request_free(&st->rq);
    free(st->message);
    buf_free(&st->out);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

static hs_stream *hs_stream_new(hs_req *r, hs_stream_kind kind)
{
    hs_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->s = r->s;
    st->kind = kind;
    st->ses = r->ses;
    st->created = (int64_t)time(NULL);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    hs_flight_begin(r->s, &st->flight, r->c);
    return st;
}

/* Run worker on st and answer: the stream once it is ready, or the error it failed with.
 * Takes st. */
static enum MHD_Result hs_stream_start(hs_req *r, hs_stream *st, void *(*worker)(void *))
{
    assert(!st->thread_started && r->ses == st->ses);
    if (pthread_create(&st->thread, NULL, worker, st) != 0) {
        hs_stream_free(st);
        return hs_reply_error(r, 500, NULL, NULL, "could not start a thread for the stream");
    }
    st->thread_started = true;
    pthread_mutex_lock(&st->mu);
    while (!st->ready && !st->done)
        pthread_cond_wait(&st->cv, &st->mu);
    bool ready = st->ready, failed = st->failed;
    pthread_mutex_unlock(&st->mu);
    if (!ready) {
        /* failed before a byte was written (a right, a limit, a full queue), or cancelled */
        pthread_join(st->thread, NULL);
        st->thread_started = false;
        r->recorded = st->recorded;
        enum MHD_Result ret = failed ? hs_reply_captured(r, &st->error) : MHD_NO;
        hs_stream_free(st);
        return ret;
    }
    /* from here the session has admitted the request, so it records it */
    r->recorded = true;
    r->status = 200;
    struct MHD_Response *resp = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, hs_stream_read, st, hs_stream_free);
    if (!resp) {
        hs_stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    hs_common_headers(r->s, resp);
    enum MHD_Result ret = MHD_queue_response(r->c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- the OpenAI-compatible endpoints ------------------------------------------------------ */

/* Text from the model for a non-streamed answer (just the cancel check), or, with len 0, the
 * scheduler asking whether to go on waiting. */
static bool hs_on_text(void *ctx, const char *text, size_t len)
{
    (void)text, (void)len;
    hs_flight *f = ctx;
    return !atomic_load(&f->cancel);
}

/* Streamed text: one chunk per piece; len 0 means the request waits in the model's queue,
 * which starts the response. */
static bool hs_stream_text(void *ctx, const char *text, size_t len)
{
    hs_stream *st = ctx;
    if (atomic_load(&st->flight.cancel))
        return false;
    if (len == 0) {
        pthread_mutex_lock(&st->mu);
        st->ready = true;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        return true;
    }
    bool role = !st->sent_role && st->rq.endpoint == OPENAI_CHAT;
    st->sent_role = true;
    return hs_sse_event(st, NULL,
                        openai_chunk_json(st->rq.endpoint, st->id, st->created, st->s->model, role,
                                          text, len, NULL));
}

static void *hs_chat_worker(void *arg)
{
    hs_stream *st = arg;
    http_server *s = st->s;
    llm_response resp = {0};
    st->rq.req.cancel = &st->flight.cancel;
    llmos_err err = ksession_chat(st->ses, &st->rq.req, hs_stream_text, st, &resp);
    bool recorded = hs_session_recorded(err);
    if (!err)
        atomic_fetch_add(&s->n_generations, 1);
    if (!err && !atomic_load(&st->flight.cancel)) {
        openai_endpoint ep = st->rq.endpoint;
        if (!st->sent_role && ep == OPENAI_CHAT) { /* no text came: the role alone */
            st->sent_role = true;
            hs_sse_event(st, NULL,
                         openai_chunk_json(ep, st->id, st->created, s->model, true, "", 0, NULL));
        }
        if (resp.n_tool_calls > 0)
            hs_sse_event(st, NULL,
                         openai_tool_calls_chunk_json(st->id, st->created, s->model, &resp));
        hs_sse_event(st, NULL,
                     openai_chunk_json(ep, st->id, st->created, s->model, false, NULL, 0,
                                       openai_finish_reason(resp.finish_reason)));
        if (st->rq.include_usage)
            hs_sse_event(st, NULL,
                         openai_usage_chunk_json(ep, st->id, st->created, s->model, &resp));
    }
    llm_response_free(&resp);
    hs_stream_finish(st, err, recorded);
    return NULL;
}

static const char *hs_endpoint_path(openai_endpoint ep)
{
    return ep == OPENAI_CHAT         ? "/v1/chat/completions"
           : ep == OPENAI_COMPLETION ? "/v1/completions"
                                     : "/v1/embeddings";
}

/* Parse the body for ep and check its model; on failure the answer is queued in *ret. */
static bool hs_parse_openai(hs_req *r, openai_endpoint ep, openai_request *rq, enum MHD_Result *ret)
{
    llmos_err err = openai_request_parse(ep, r->body, r->len, r->s->n_ctx, rq);
    if (err) {
        *ret = hs_reply_error(r, 400, rq->error_param,
                              err == LLMOS_ERR_FORMAT        ? "invalid_json"
                              : err == LLMOS_ERR_UNSUPPORTED ? "unsupported_parameter"
                                                             : "invalid_value",
                              "POST %s: %s", hs_endpoint_path(ep), llmos_errmsg());
        return false;
    }
    if (rq->model && strcmp(rq->model, r->s->model) != 0) {
        *ret = hs_reply_error(r, 404, "model", "model_not_found",
                              "The model '%.200s' does not exist here; this server serves "
                              "'%.200s' (see GET /v1/models)",
                              rq->model, r->s->model);
        openai_request_free(rq);
        return false;
    }
    if (!rq->has_seed) {
        uint64_t seed;
        randombytes_buf(&seed, sizeof seed);
        rq->req.sampling.seed = seed;
    }
    return true;
}

static enum MHD_Result hs_generation(hs_req *r, openai_endpoint ep)
{
    http_server *s = r->s;
    openai_request rq;
    enum MHD_Result ret;
    if (!hs_parse_openai(r, ep, &rq, &ret))
        return ret;
    if (rq.stream) {
        hs_stream *st = hs_stream_new(r, HS_STREAM_OPENAI);
        if (!st) {
            openai_request_free(&rq);
            return hs_reply_error(r, 500, NULL, NULL, "out of memory");
        }
        st->rq = rq;
        hs_make_id(s, ep == OPENAI_CHAT ? "chatcmpl-" : "cmpl-", st->id, sizeof st->id);
        return hs_stream_start(r, st, hs_chat_worker);
    }
    hs_flight f;
    hs_flight_begin(s, &f, r->c);
    rq.req.cancel = &f.cancel;
    llm_response resp = {0};
    llmos_err err = ksession_chat(r->ses, &rq.req, hs_on_text, &f, &resp);
    hs_flight_end(s, &f);
    if (!err)
        atomic_fetch_add(&s->n_generations, 1);
    r->recorded = hs_session_recorded(err);
    if (err) {
        ret = hs_reply_failure(r, err);
    } else if (atomic_load(&f.cancel)) {
        r->status = 499;
        ret = MHD_NO; /* the client went away: close the connection */
    } else {
        char id[64];
        hs_make_id(s, ep == OPENAI_CHAT ? "chatcmpl-" : "cmpl-", id, sizeof id);
        ret = hs_reply(r, 200, openai_response_json(ep, id, (int64_t)time(NULL), s->model, &resp));
    }
    llm_response_free(&resp);
    openai_request_free(&rq);
    return ret;
}

static enum MHD_Result hs_chat(hs_req *r)
{
    return hs_generation(r, OPENAI_CHAT);
}

static enum MHD_Result hs_completion(hs_req *r)
{
    return hs_generation(r, OPENAI_COMPLETION);
}

static enum MHD_Result hs_embeddings(hs_req *r)
{
    openai_request rq;
    enum MHD_Result ret;
    if (!hs_parse_openai(r, OPENAI_EMBEDDING, &rq, &ret))
        return ret;
    json_t *data = json_array();
    size_t tokens = 0;
    llmos_err err = data ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; !err && i < rq.n_inputs; i++) {
        float *vec = NULL;
        size_t dim = 0, n = 0;
        const char *text = rq.inputs[i];
        err = ksession_embed(r->ses, text, strlen(text), &vec, &dim, &n);
        r->recorded = hs_session_recorded(err);
        if (!err) {
            tokens += n;
            json_t *arr = json_array();
            for (size_t k = 0; k < dim; k++)
                json_array_append_new(arr, json_real(vec[k]));
            json_array_append_new(data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index",
                                                  (json_int_t)i, "embedding", arr));
        }
        free(vec);
    }
    openai_request_free(&rq);
    if (err) {
        json_decref(data);
        hs_error e;
        hs_error_capture(&e, err);
        if (err == LLMOS_ERR_UNSUPPORTED)
            snprintf(e.message + strlen(e.message), sizeof e.message - strlen(e.message), "%s",
                     " (this model cannot make embeddings)");
        return hs_reply_captured(r, &e);
    }
    return hs_reply(r, 200,
                    json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data,
                              "model", r->s->model, "usage", "prompt_tokens", (json_int_t)tokens,
                              "total_tokens", (json_int_t)tokens));
}

static enum MHD_Result hs_models(hs_req *r)
{
    return hs_reply(r, 200, openai_models_json(r->s->model, r->s->started));
}

static enum MHD_Result hs_model(hs_req *r)
{
    http_server *s = r->s;
    if (strcmp(r->args.id, s->model) != 0)
        return hs_reply_error(r, 404, "model", "model_not_found",
                              "The model '%.200s' does not exist here; this server serves "
                              "'%.200s'",
                              r->args.id, s->model);
    return hs_reply(r, 200,
                    json_pack("{s:s, s:s, s:I, s:s}", "id", s->model, "object", "model", "created",
                              (json_int_t)s->started, "owned_by", "llmos"));
}

static enum MHD_Result hs_health(hs_req *r)
{
    ksched_stats st = kernel_sched_stats(r->s->k);
    return hs_reply(r, 200,
                    json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "status", "ok", "model",
                              r->s->model, "busy", st.busy, "running", (json_int_t)st.running,
                              "slots", (json_int_t)st.slots, "queued", (json_int_t)st.waiting,
                              "served", (json_int_t)st.served, "rejected",
                              (json_int_t)st.rejected));
}

/* One metric in the Prometheus text format (version 0.0.4): HELP, TYPE and the sample. */
static void hs_metric(llmos_buf *b, bool *ok, const char *name, const char *type, const char *help,
                      double value)
{
    if (buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name,
                   value))
        *ok = false;
}

/* GET /metrics: what the scheduler and the server are doing, for a Prometheus scraper. */
static enum MHD_Result hs_metrics(hs_req *r)
{
    ksched_stats k = kernel_sched_stats(r->s->k);
    http_server_stats h = http_server_get_stats(r->s);
    llmos_buf b = {0};
    bool ok = true;
    hs_metric(&b, &ok, "llmos_sched_waiting", "gauge", "Model calls waiting for a slot.",
              (double)k.waiting);
    hs_metric(&b, &ok, "llmos_sched_running", "gauge",
              "Model calls running now, batched together (the batch size).", (double)k.running);
    hs_metric(&b, &ok, "llmos_sched_slots", "gauge", "Model calls that may run at once.",
              (double)k.slots);
    hs_metric(&b, &ok, "llmos_sched_served_total", "counter", "Model calls that got a slot.",
              (double)k.served);
    hs_metric(&b, &ok, "llmos_sched_rejected_total", "counter",
              "Model calls refused because the queue was full.", (double)k.rejected);
    hs_metric(&b, &ok, "llmos_sched_throttled_total", "counter",
              "Model calls held back or refused by a tokens-per-minute limit.",
              (double)k.throttled);
    hs_metric(&b, &ok, "llmos_tokens_total", "counter",
              "Prompt and completion tokens of every finished model call.", (double)k.tokens);
    hs_metric(&b, &ok, "llmos_tokens_per_second", "gauge",
              "Prompt and completion tokens a second, over the last minute.", k.tokens_per_s);
    if (k.engine) {
        hs_metric(&b, &ok, "llmos_engine_batch_size", "gauge",
                  "Sequences in the engine's latest forward pass.", (double)k.batch);
        hs_metric(&b, &ok, "llmos_engine_steps_total", "counter", "Forward passes of the engine.",
                  (double)k.steps);
        hs_metric(&b, &ok, "llmos_engine_cached_tokens_total", "counter",
                  "Prompt tokens served from the prefix cache instead of evaluated.",
                  (double)k.cached_tokens);
        hs_metric(&b, &ok, "llmos_engine_swaps_out_total", "counter",
                  "Sequences swapped out of the KV pool.", (double)k.swaps_out);
        hs_metric(&b, &ok, "llmos_kv_pool_used_bytes", "gauge", "Bytes of the KV pool in use.",
                  (double)k.kv_used);
        hs_metric(&b, &ok, "llmos_kv_pool_budget_bytes", "gauge", "The KV pool's budget.",
                  (double)k.kv_budget);
    }
    hs_metric(&b, &ok, "llmos_http_requests_total", "counter", "HTTP requests received.",
              (double)h.requests);
    hs_metric(&b, &ok, "llmos_http_generations_total", "counter",
              "Chat and completion requests the model answered.", (double)h.generations);
    hs_metric(&b, &ok, "llmos_http_cancelled_total", "counter",
              "Requests stopped because the client went away or the server stopped.",
              (double)h.cancelled);
    if (buf_printf(&b,
                   "# HELP llmos_http_refused_total Requests refused, by HTTP status.\n"
                   "# TYPE llmos_http_refused_total counter\n"
                   "llmos_http_refused_total{code=\"401\"} %" PRIu64 "\n"
                   "llmos_http_refused_total{code=\"403\"} %" PRIu64 "\n"
                   "llmos_http_refused_total{code=\"429\"} %" PRIu64 "\n"
                   "llmos_http_refused_total{code=\"503\"} %" PRIu64 "\n",
                   h.unauthorized, h.denied, h.limited, h.rejected_busy))
        ok = false;
    hs_metric(&b, &ok, "llmos_uptime_seconds", "gauge", "Seconds since the server started.",
              (double)((int64_t)time(NULL) - r->s->started));
    if (!ok) {
        buf_free(&b);
        return hs_reply_error(r, 500, NULL, NULL, "out of memory");
    }
    size_t len;
    char *data = buf_detach(&b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    hs_common_headers(r->s, resp);
    r->status = 200;
    enum MHD_Result ret = MHD_queue_response(r->c, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---- processes ---------------------------------------------------------------------------- */

static json_t *hs_budget_json(const kbudget *b)
{
    return json_pack("{s:I, s:I, s:f}", "tokens", (json_int_t)b->tokens, "tool_calls",
                     (json_int_t)b->tool_calls, "wall_s", b->wall_s);
}

static json_t *hs_proc_json(const kproc_info *in)
{
    char caps[96];
    kcap_format(in->caps, caps, sizeof caps);
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:I}", "pid", (json_int_t)in->pid,
                     "state", kproc_state_name(in->state), "reason", in->reason, "principal",
                     in->principal, "model", in->model, "caps", caps, "budget",
                     hs_budget_json(&in->budget), "used", hs_budget_json(&in->used), "created_at",
                     (json_int_t)in->created_at);
}

/* One kernel event as the API shows it (docs/api.md, "Process events"). */
static json_t *hs_event_json(const kevent *ev)
{
    switch (ev->kind) {
    case KEVENT_TEXT:
        return json_pack("{s:I, s:s%}", "pid", (json_int_t)ev->pid, "text", ev->text, ev->len);
    case KEVENT_TOOL_CALL:
        return json_pack("{s:I, s:s, s:s, s:s}", "pid", (json_int_t)ev->pid, "name",
                         ev->name ? ev->name : "", "call_id", ev->call_id ? ev->call_id : "",
                         "arguments", ev->arguments ? ev->arguments : "{}");
    case KEVENT_TOOL_RESULT:
        return json_pack("{s:I, s:s, s:s, s:s%, s:s, s:b}", "pid", (json_int_t)ev->pid, "name",
                         ev->name ? ev->name : "", "call_id", ev->call_id ? ev->call_id : "",
                         "text", ev->text ? ev->text : "", ev->text ? ev->len : 0, "origin",
                         ev->origin ? ev->origin : "system", "is_error", ev->is_error);
    case KEVENT_MESSAGE:
        return json_pack("{s:I, s:s, s:s%}", "pid", (json_int_t)ev->pid, "recipient",
                         ev->name ? ev->name : "", "text", ev->text ? ev->text : "",
                         ev->text ? ev->len : 0);
    case KEVENT_NOTICE:
        return json_pack("{s:I, s:s%}", "pid", (json_int_t)ev->pid, "text",
                         ev->text ? ev->text : "", ev->text ? ev->len : 0);
    case KEVENT_END:
        return json_pack("{s:I, s:s, s:s%, s:o}", "pid", (json_int_t)ev->pid, "state",
                         kproc_state_name(ev->state), "reason", ev->text ? ev->text : "",
                         ev->text ? ev->len : 0, "used", hs_budget_json(&ev->used));
    }
    return NULL;
}

/* The body of a process route: a JSON object (an empty body is {} when allowed). */
static bool hs_body_object(hs_req *r, bool empty_ok, json_t **out, enum MHD_Result *ret)
{
    *out = NULL;
    if (r->len == 0 && empty_ok) {
        *out = json_object();
        return *out != NULL;
    }
    llmos_err err = ljson_parse_text(r->body, r->len, "request body", 32, out);
    if (!err && !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        *ret = hs_reply_error(r, 400, NULL, "invalid_value",
                              "%s %s: the body must be a JSON object", r->method, r->url);
        return false;
    }
    if (err)
        *ret = hs_reply_error(r, 400, NULL, "invalid_json", "%s %s: the body is not valid JSON: %s",
                              r->method, r->url, llmos_errmsg());
    return !err;
}

/* POST /v1/processes {"capabilities": ["compute", ...]} -> 201 the process. */
static enum MHD_Result hs_proc_create(hs_req *r)
{
    json_t *body;
    enum MHD_Result ret;
    if (!hs_body_object(r, true, &body, &ret))
        return ret;
    uint32_t caps = 0;
    json_t *list = json_object_get(body, "capabilities");
    if (list && !json_is_array(list)) {
        json_decref(body);
        return hs_reply_error(r, 400, "capabilities", "invalid_value",
                              "'capabilities' must be an array of names (compute, message, read, "
                              "quarantine, exec)");
    }
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        uint32_t bits;
        const char *name = json_string_value(v);
        if (!name || kcap_parse(name, &bits)) {
            ret = hs_reply_error(r, 400, "capabilities", "invalid_value", "'capabilities[%zu]': %s",
                                 i, name ? llmos_errmsg() : "must be a string");
            json_decref(body);
            return ret;
        }
        caps |= bits;
    }
    json_decref(body);
    if (list && !caps)
        return hs_reply_error(r, 400, "capabilities", "invalid_value",
                              "'capabilities' is empty; leave it out to get the key's "
                              "capabilities");
    int64_t pid = 0;
    llmos_err err = ksession_spawn(r->ses, caps, &pid);
    r->recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    kproc_info in;
    err = ksession_proc(r->ses, pid, &in);
    return err ? hs_reply_failure(r, err) : hs_reply(r, 201, hs_proc_json(&in));
}

/* GET /v1/processes: the principal's own (every principal's with the right admin). */
static enum MHD_Result hs_proc_list(hs_req *r)
{
    kproc_info *list = NULL;
    size_t n = 0;
    llmos_err err = ksession_ps(r->ses, &list, &n);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++)
        json_array_append_new(data, hs_proc_json(&list[i]));
    free(list);
    return hs_reply(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* GET /v1/processes/{pid}: the process and its context (the messages its model sees). */
static enum MHD_Result hs_proc_get(hs_req *r)
{
    kproc_info in;
    json_t *msgs = NULL;
    llmos_err err = ksession_proc(r->ses, r->args.pid, &in);
    if (!err)
        err = ksession_context(r->ses, r->args.pid, &msgs);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    json_t *j = hs_proc_json(&in);
    if (j)
        json_object_set_new(j, "messages", msgs);
    else
        json_decref(msgs);
    return hs_reply(r, 200, j);
}

/* Collects a non-streamed turn's events. */
typedef struct hs_events {
    json_t *list;
    hs_flight *flight;
} hs_events;

static bool hs_collect_event(void *ctx, const kevent *ev)
{
    hs_events *e = ctx;
    json_t *j = hs_event_json(ev);
    if (j)
        json_array_append_new(
            e->list, json_pack("{s:s, s:o}", "event", kevent_kind_name(ev->kind), "data", j));
    return !atomic_load(&e->flight->cancel);
}

static bool hs_stream_event(void *ctx, const kevent *ev)
{
    hs_stream *st = ctx;
    return hs_sse_event(st, kevent_kind_name(ev->kind), hs_event_json(ev)) &&
           !atomic_load(&st->flight.cancel);
}

static void *hs_turn_worker(void *arg)
{
    hs_stream *st = arg;
    kproc_state final;
    llmos_err err = ksession_send(st->ses, st->pid, st->message, hs_stream_event, st,
                                  &st->flight.cancel, &final);
    bool recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED;
    hs_stream_finish(st, err, recorded);
    return NULL;
}

/* POST /v1/processes/{pid}/messages {"content": "...", "stream": false}: one turn. */
static enum MHD_Result hs_proc_message(hs_req *r)
{
    json_t *body;
    enum MHD_Result ret;
    if (!hs_body_object(r, false, &body, &ret))
        return ret;
    const char *content = ljson_get_string(body, "content", NULL);
    json_t *stream = json_object_get(body, "stream");
    if (!content || !*content) {
        json_decref(body);
        return hs_reply_error(r, 400, "content", "invalid_value",
                              "'content' is required: the message, a non-empty string");
    }
    if (stream && !json_is_boolean(stream)) {
        json_decref(body);
        return hs_reply_error(r, 400, "stream", "invalid_value", "'stream' must be a boolean");
    }
    /* what can be refused is refused here, with its status, before a stream starts */
    kproc_info in;
    llmos_err err = ksession_proc(r->ses, r->args.pid, &in);
    if (err) {
        json_decref(body);
        r->recorded = err == LLMOS_ERR_DENIED;
        return hs_reply_failure(r, err);
    }
    if (kproc_state_final(in.state) && in.state != KPROC_DONE) {
        json_decref(body);
        return hs_reply_error(r, 409, NULL, "process_ended",
                              "process %" PRId64 " is %s (%s); it takes no more messages: start a "
                              "new one with POST /v1/processes",
                              in.pid, kproc_state_name(in.state), in.reason);
    }
    if (json_is_true(stream)) {
        hs_stream *st = hs_stream_new(r, HS_STREAM_PROCESS);
        if (st)
            st->message = strdup(content);
        json_decref(body);
        if (!st || !st->message) {
            hs_stream_free(st);
            return hs_reply_error(r, 500, NULL, NULL, "out of memory");
        }
        st->pid = r->args.pid;
        return hs_stream_start(r, st, hs_turn_worker);
    }
    hs_flight f;
    hs_flight_begin(r->s, &f, r->c);
    hs_events ev = {.list = json_array(), .flight = &f};
    kproc_state final = in.state;
    err = ev.list ? ksession_send(r->ses, r->args.pid, content, hs_collect_event, &ev, &f.cancel,
                                  &final)
                  : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    hs_flight_end(r->s, &f);
    json_decref(body);
    r->recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED;
    if (err) {
        json_decref(ev.list);
        hs_error e;
        hs_error_capture(&e, err);
        if (err == LLMOS_ERR_BUSY) { /* another message of this process is being answered */
            e.status = 409;
            e.type = "invalid_request_error";
            e.code = "process_busy";
        }
        return hs_reply_captured(r, &e);
    }
    if (atomic_load(&f.cancel)) {
        json_decref(ev.list);
        r->status = 499;
        return MHD_NO;
    }
    char *answer = NULL;
    if (ksession_answer(r->ses, r->args.pid, &answer))
        llmos_err_clear();
    kproc_info after;
    if (ksession_proc(r->ses, r->args.pid, &after)) {
        llmos_err_clear();
        after = in;
        after.state = final;
    }
    json_t *j =
        json_pack("{s:I, s:s, s:s, s:s, s:o, s:o}", "pid", (json_int_t)r->args.pid, "state",
                  kproc_state_name(final), "reason", after.reason, "answer", answer ? answer : "",
                  "used", hs_budget_json(&after.used), "events", ev.list);
    free(answer);
    return hs_reply(r, 200, j);
}

/* POST /v1/processes/{pid}/kill */
static enum MHD_Result hs_proc_kill(hs_req *r)
{
    llmos_err err = ksession_kill(r->ses, r->args.pid);
    r->recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED;
    if (err == LLMOS_ERR_INVALID)
        return hs_reply_error(r, 409, NULL, "process_ended", "%s", llmos_errmsg());
    if (err)
        return hs_reply_failure(r, err);
    kproc_info in;
    err = ksession_proc(r->ses, r->args.pid, &in);
    return err ? hs_reply_failure(r, err) : hs_reply(r, 200, hs_proc_json(&in));
}

/* ---- the audit log and memory ------------------------------------------------------------- */

/* A whole-number query parameter in [lo, hi]; absent: def. On failure the answer is queued. */
static bool hs_query_int(hs_req *r, const char *name, int64_t def, int64_t lo, int64_t hi,
                         int64_t *out, enum MHD_Result *ret)
{
    const char *v = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, name);
    *out = def;
    if (!v)
        return true;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) {
        *ret = hs_reply_error(r, 400, name, "invalid_value",
                              "'%s' must be a whole number from %lld to %lld, found '%.40s'", name,
                              (long long)lo, (long long)hi, v);
        return false;
    }
    *out = n;
    return true;
}

typedef struct hs_audit_page {
    json_t *records;
    size_t limit;
    int64_t next; /* the seq to go on from, 0 when the log ended */
} hs_audit_page;

static bool hs_audit_one(const store_audit_record *rec, void *ctx)
{
    hs_audit_page *pg = ctx;
    if (json_array_size(pg->records) == pg->limit) {
        pg->next = rec->seq;
        return false;
    }
    json_t *payload = json_loads(rec->payload ? rec->payload : "null", JSON_DECODE_ANY, NULL);
    json_array_append_new(pg->records,
                          json_pack("{s:I, s:I, s:s, s:o}", "seq", (json_int_t)rec->seq, "time",
                                    (json_int_t)rec->time, "kind", rec->kind, "payload",
                                    payload ? payload : json_string(rec->payload)));
    return true;
}

/* GET /v1/audit?from=N&limit=M */
static enum MHD_Result hs_audit(hs_req *r)
{
    int64_t from, limit;
    enum MHD_Result ret;
    if (!hs_query_int(r, "from", 1, 1, INT64_MAX, &from, &ret) ||
        !hs_query_int(r, "limit", 100, 1, 1000, &limit, &ret))
        return ret;
    hs_audit_page pg = {.records = json_array(), .limit = (size_t)limit};
    llmos_err err = pg.records ? ksession_audit(r->ses, from, hs_audit_one, &pg)
                               : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err) {
        json_decref(pg.records);
        return hs_reply_failure(r, err);
    }
    return hs_reply(r, 200,
                    json_pack("{s:o, s:o}", "records", pg.records, "next",
                              pg.next ? json_integer((json_int_t)pg.next) : json_null()));
}

/* GET /v1/audit/verify */
static enum MHD_Result hs_audit_verify(hs_req *r)
{
    audit_verdict v;
    llmos_err err = ksession_audit_verify(r->ses, &v);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    return hs_reply(r, 200,
                    json_pack("{s:b, s:I, s:I, s:s}", "ok", v.ok, "records", (json_int_t)v.records,
                              "bad_seq", (json_int_t)v.bad_seq, "reason", v.reason));
}

/* GET /v1/memory: what the store holds. */
static enum MHD_Result hs_memory_stats(hs_req *r)
{
    store_stats st;
    llmos_err err = ksession_memory_stats(r->ses, &st);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    return hs_reply(r, 200,
                    json_pack("{s:I, s:I, s:I, s:I, s:I, s:b, s:s}", "messages",
                              (json_int_t)st.messages, "archival", (json_int_t)st.archival,
                              "core_blocks", (json_int_t)st.core_blocks, "audit_records",
                              (json_int_t)st.audit_records, "db_bytes", (json_int_t)st.db_bytes,
                              "vector_index", st.vector_index, "embedder", st.embedder));
}

/* POST /v1/memory {"text": "..."} -> 201 {"id"} */
static enum MHD_Result hs_memory_add(hs_req *r)
{
    json_t *body;
    enum MHD_Result ret;
    if (!hs_body_object(r, false, &body, &ret))
        return ret;
    const char *text = ljson_get_string(body, "text", NULL);
    if (!text || !*text) {
        json_decref(body);
        return hs_reply_error(r, 400, "text", "invalid_value",
                              "'text' is required: what to remember, a non-empty string");
    }
    int64_t id = 0;
    llmos_err err = ksession_memory_add(r->ses, text, &id);
    json_decref(body);
    r->recorded = err == LLMOS_OK || err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    return hs_reply(r, 201, json_pack("{s:I}", "id", (json_int_t)id));
}

/* GET /v1/memory/search?q=...&k=N&page=P */
static enum MHD_Result hs_memory_search(hs_req *r)
{
    const char *q = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "q");
    int64_t k, page;
    enum MHD_Result ret;
    if (!q || !*q)
        return hs_reply_error(r, 400, "q", "invalid_value",
                              "'q' is required: the text to search for (?q=...)");
    if (!hs_query_int(r, "k", 5, 1, KMEMORY_PAGE_MAX, &k, &ret) ||
        !hs_query_int(r, "page", 0, 0, 1000, &page, &ret))
        return ret;
    store_archival *found = NULL;
    size_t n = 0;
    llmos_err err = ksession_memory_search(r->ses, q, (size_t)page, (size_t)k, &found, &n);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, json_pack("{s:I, s:s, s:f, s:I}", "id", (json_int_t)found[i].id,
                                              "text", found[i].text, "score", found[i].score,
                                              "created_at", (json_int_t)found[i].created_at));
    ksession_memories_free(found, n);
    return hs_reply(r, 200, json_pack("{s:o}", "results", list));
}

/* ---- logins (accounts) and the web UI ----------------------------------------------------- */

static const char *hs_cookie_name(const http_server *s)
{
    return s->tls_cert ? HS_COOKIE_TLS : HS_COOKIE;
}

/* The answer to a login: the session cookie and {"account", "csrf", "expires_at"}. */
static enum MHD_Result hs_send_login(hs_req *r, const char *account, auth_login_result *res)
{
    http_server *s = r->s;
    char cookie[256];
    snprintf(cookie, sizeof cookie, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s",
             hs_cookie_name(s), res->token, (long long)(res->expires_at - (int64_t)time(NULL)),
             s->tls_cert ? "; Secure" : "");
    json_t *j = json_pack("{s:s, s:s, s:I}", "account", account, "csrf", res->csrf, "expires_at",
                          (json_int_t)res->expires_at);
    sodium_memzero(res, sizeof *res);
    r->status = 200;
    enum MHD_Result ret = hs_send_json(s, r->c, 200, j, "Set-Cookie", cookie);
    sodium_memzero(cookie, sizeof cookie);
    return ret;
}

/* POST /auth/login {"account": "...", "passphrase": "..."} -> the session cookie and the CSRF
 * token. Open: it is how a client gets a session. The accounts' audit hook records it. */
static enum MHD_Result hs_login(hs_req *r)
{
    http_server *s = r->s;
    if (!s->accounts)
        return hs_reply_error(r, 404, NULL, "no_accounts",
                              "this server has no accounts: start it with --accounts (accounts "
                              "are made with `llmos user add NAME`)");
    json_t *body;
    enum MHD_Result ret;
    bool parsed = hs_body_object(r, false, &body, &ret);
    sodium_memzero((void *)r->body, r->len); /* the passphrase: not left in the buffer */
    if (!parsed)
        return ret;
    const char *name = ljson_get_string(body, "account", NULL);
    const char *pass = ljson_get_string(body, "passphrase", NULL);
    if (!name || !pass) {
        json_decref(body);
        return hs_reply_error(r, 400, !name ? "account" : "passphrase", "invalid_value",
                              "'account' and 'passphrase' are required strings");
    }
    char peer[64];
    hs_peer_name(r->c, peer, sizeof peer);
    auth_login_result res;
    double retry = 0;
    llmos_err err = auth_login(s->accounts, name, pass, peer, &res, &retry);
    char account[AUTH_NAME_MAX + 1];
    snprintf(account, sizeof account, "%s", name);
    json_decref(body);
    if (err) {
        hs_error e;
        hs_error_capture(&e, err);
        if (err == LLMOS_ERR_AUTH) {
            e.status = 401;
            e.type = "authentication_error";
            e.code = "invalid_credentials";
        } else if (err == LLMOS_ERR_DENIED) {
            e.code = "account_locked";
        } else if (err == LLMOS_ERR_LIMIT) {
            e.status = 429;
            e.type = "rate_limit_error";
            e.code = "rate_limit_exceeded";
            e.retry_s = retry;
        }
        return hs_reply_captured(r, &e);
    }
    return hs_send_login(r, account, &res);
}

/* POST /auth/logout: end the login session the cookie names. */
static enum MHD_Result hs_logout(hs_req *r)
{
    if (!r->hc->user)
        return hs_reply_error(r, 400, NULL, "not_logged_in",
                              "POST /auth/logout ends a login session; this request has none "
                              "(an API key is not a session)");
    char peer[64];
    hs_peer_name(r->c, peer, sizeof peer);
    llmos_err err = auth_logout(r->s->accounts, r->hc->token, peer);
    if (err)
        return hs_reply_failure(r, err);
    char cookie[128];
    snprintf(cookie, sizeof cookie, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s",
             hs_cookie_name(r->s), r->s->tls_cert ? "; Secure" : "");
    r->status = 200;
    return hs_send_json(r->s, r->c, 200, json_pack("{s:b}", "ok", 1), "Set-Cookie", cookie);
}

/* A base64url member of a JSON body, decoded into a new buffer (*n bytes); NULL when absent,
 * malformed or longer than max. */
static uint8_t *hs_b64url(const json_t *body, const char *key, size_t max, size_t *n)
{
    const char *v = ljson_get_string(body, key, NULL);
    uint8_t *bin = v ? malloc(max) : NULL;
    if (bin && sodium_base642bin(bin, max, v, strlen(v), NULL, n, NULL,
                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
        free(bin);
        bin = NULL;
    }
    return bin;
}

/* The origin a WebAuthn ceremony must come from: this server's scheme and the Host the
 * browser used, whose host name must be the RP ID (or under it). Else *ret is queued. */
static bool hs_webauthn_origin(hs_req *r, char *origin, size_t size, enum MHD_Result *ret)
{
    const char *host = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Host");
    const char *rp = r->s->rp_id;
    size_t hl = host ? strcspn(host, ":") : 0, rl = strlen(rp);
    if (host && host[0] == '[')
        hl = strcspn(host, "]") + 1;
    bool ok = host && (hl == rl || (hl > rl && host[hl - rl - 1] == '.')) &&
              strncasecmp(host + hl - rl, rp, rl) == 0;
    if (!ok) {
        *ret = hs_reply_error(r, 400, NULL, "wrong_host",
                              "passkeys belong to the name '%s' (the RP ID, --rp-id): open this "
                              "page at %s://%s:%u/ to use them",
                              rp, r->s->tls_cert ? "https" : "http", rp, (unsigned)r->s->port);
        return false;
    }
    snprintf(origin, size, "%s://%s", r->s->tls_cert ? "https" : "http", host);
    return true;
}

/* POST /auth/passkey/register/options: navigator.credentials.create's options for a new
 * passkey of the logged-in account. */
static enum MHD_Result hs_passkey_register_options(hs_req *r)
{
    char origin[300];
    enum MHD_Result ret;
    if (!r->hc->user)
        return hs_reply_error(r, 400, NULL, "not_logged_in",
                              "log in with the passphrase (a login session) to add a passkey");
    if (!hs_webauthn_origin(r, origin, sizeof origin, &ret))
        return ret;
    json_t *opt = NULL;
    llmos_err err = auth_passkey_options(r->s->accounts, r->hc->token, NULL, r->s->rp_id, &opt);
    return err ? hs_reply_failure(r, err) : hs_reply(r, 200, opt);
}

/* POST /auth/passkey/register {"passphrase", "clientDataJSON", "attestationObject", "prf"}:
 * binary members in base64url; prf is the authenticator's PRF output for the account's salt. */
static enum MHD_Result hs_passkey_register(hs_req *r)
{
    char origin[300], peer[64];
    enum MHD_Result ret;
    if (!r->hc->user)
        return hs_reply_error(r, 400, NULL, "not_logged_in",
                              "log in with the passphrase (a login session) to add a passkey");
    if (!hs_webauthn_origin(r, origin, sizeof origin, &ret))
        return ret;
    json_t *body;
    bool parsed = hs_body_object(r, false, &body, &ret);
    sodium_memzero((void *)r->body, r->len);
    if (!parsed)
        return ret;
    size_t cd_len = 0, att_len = 0, prf_len = 0;
    uint8_t *cd = hs_b64url(body, "clientDataJSON", 4096, &cd_len);
    uint8_t *att = hs_b64url(body, "attestationObject", 65536, &att_len);
    uint8_t *prf = hs_b64url(body, "prf", 64, &prf_len);
    const char *pass = ljson_get_string(body, "passphrase", NULL);
    if (!cd || !att || !prf || prf_len != AUTH_PRF_BYTES || !pass) {
        ret = hs_reply_error(r, 400, NULL, "invalid_value",
                             "a passkey registration needs 'passphrase', and 'clientDataJSON', "
                             "'attestationObject' and 'prf' (%d bytes, from the authenticator's "
                             "prf extension) in base64url",
                             AUTH_PRF_BYTES);
    } else {
        hs_peer_name(r->c, peer, sizeof peer);
        llmos_err err = auth_passkey_add(r->s->accounts, r->hc->token, pass, r->s->rp_id, origin,
                                         cd, cd_len, att, att_len, prf, peer);
        if (err == LLMOS_ERR_AUTH) {
            r->status = 401;
            ret = hs_send_error(r->s, r->c, 401, "authentication_error", "passkey_refused",
                                llmos_errmsg(), NULL, NULL);
        } else {
            ret = err ? hs_reply_failure(r, err) : hs_reply(r, 201, json_pack("{s:b}", "ok", 1));
        }
    }
    if (prf)
        sodium_memzero(prf, 64);
    free(cd);
    free(att);
    free(prf);
    json_decref(body);
    return ret;
}

/* POST /auth/passkey/login/options {"account"}: navigator.credentials.get's options. Open. */
static enum MHD_Result hs_passkey_login_options(hs_req *r)
{
    char origin[300];
    enum MHD_Result ret;
    if (!r->s->accounts)
        return hs_reply_error(r, 404, NULL, "no_accounts", "this server has no accounts");
    if (!hs_webauthn_origin(r, origin, sizeof origin, &ret))
        return ret;
    json_t *body;
    if (!hs_body_object(r, false, &body, &ret))
        return ret;
    json_t *opt = NULL;
    llmos_err err = auth_passkey_options(r->s->accounts, NULL,
                                         ljson_get_string(body, "account", ""), r->s->rp_id, &opt);
    json_decref(body);
    return err ? hs_reply_failure(r, err) : hs_reply(r, 200, opt);
}

/* POST /auth/passkey/login {"account", "id", "clientDataJSON", "authenticatorData",
 * "signature", "prf"}: log in with a passkey; answered like POST /auth/login. Open. */
static enum MHD_Result hs_passkey_login(hs_req *r)
{
    http_server *s = r->s;
    char origin[300], peer[64];
    enum MHD_Result ret;
    if (!s->accounts)
        return hs_reply_error(r, 404, NULL, "no_accounts", "this server has no accounts");
    if (!hs_webauthn_origin(r, origin, sizeof origin, &ret))
        return ret;
    json_t *body;
    if (!hs_body_object(r, false, &body, &ret))
        return ret;
    size_t id_len = 0, cd_len = 0, ad_len = 0, sig_len = 0, prf_len = 0;
    uint8_t *id = hs_b64url(body, "id", 1024, &id_len);
    uint8_t *cd = hs_b64url(body, "clientDataJSON", 4096, &cd_len);
    uint8_t *ad = hs_b64url(body, "authenticatorData", 4096, &ad_len);
    uint8_t *sig = hs_b64url(body, "signature", 512, &sig_len);
    uint8_t *prf = hs_b64url(body, "prf", 64, &prf_len);
    char account[AUTH_NAME_MAX + 1];
    snprintf(account, sizeof account, "%s", ljson_get_string(body, "account", ""));
    json_decref(body);
    if (!id || !cd || !ad || !sig || !prf || prf_len != AUTH_PRF_BYTES || !account[0]) {
        ret = hs_reply_error(r, 400, NULL, "invalid_value",
                             "a passkey login needs 'account', and 'id', 'clientDataJSON', "
                             "'authenticatorData', 'signature' and 'prf' in base64url");
    } else {
        hs_peer_name(r->c, peer, sizeof peer);
        auth_login_result res;
        double retry = 0;
        llmos_err err =
            auth_passkey_login(s->accounts, account, s->rp_id, origin, id, id_len, cd, cd_len, ad,
                               ad_len, sig, sig_len, prf, peer, &res, &retry);
        if (err) {
            hs_error e;
            hs_error_capture(&e, err);
            if (err == LLMOS_ERR_AUTH) {
                e.status = 401;
                e.type = "authentication_error";
                e.code = "invalid_credentials";
            } else if (err == LLMOS_ERR_DENIED) {
                e.code = "account_locked";
            } else if (err == LLMOS_ERR_LIMIT) {
                e.status = 429;
                e.type = "rate_limit_error";
                e.code = "rate_limit_exceeded";
                e.retry_s = retry;
            }
            ret = hs_reply_captured(r, &e);
        } else {
            ret = hs_send_login(r, account, &res);
        }
    }
    if (prf)
        sodium_memzero(prf, 64);
    free(id);
    free(cd);
    free(ad);
    free(sig);
    free(prf);
    return ret;
}

/* GET /auth/session: who is logged in, and the CSRF token to send with changes. */
static enum MHD_Result hs_whoami(hs_req *r)
{
    if (!r->hc->user)
        return hs_reply(r, 200,
                        json_pack("{s:s, s:n, s:b}", "account", ksession_principal(r->ses), "csrf",
                                  "login", 0));
    return hs_reply(r, 200,
                    json_pack("{s:s, s:s, s:b}", "account", ksession_principal(r->ses), "csrf",
                              r->hc->csrf, "login", 1));
}

/* GET /, /ui/...: the web UI, built into the program (src/io/web.c). */
static enum MHD_Result hs_ui(hs_req *r)
{
    const char *path = strcmp(r->url, "/") == 0 ? "index.html" : r->args.id;
    return web_serve(r->c, path, r->s->tls_cert != NULL, &r->status);
}

/* GET /v1/apps: the apps installed on this server, as the program's app store lists them. */
static enum MHD_Result hs_apps(hs_req *r)
{
    json_t *list = r->s->apps_list ? r->s->apps_list(r->s->apps_ctx) : json_array();
    if (!list)
        return hs_reply_failure(r, LLMOS_ERR_IO);
    return hs_reply(r, 200, json_pack("{s:o}", "data", list));
}

/* GET /v1/memory/core: the principal's core memory blocks. */
static enum MHD_Result hs_memory_core(hs_req *r)
{
    store_core_block *b = NULL;
    size_t n = 0;
    llmos_err err = ksession_core_list(r->ses, &b, &n);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:I}", "label", b[i].label, "value",
                                              b[i].value ? b[i].value : "", "limit",
                                              (json_int_t)b[i].limit));
    ksession_core_free(b, n);
    return hs_reply(r, 200, json_pack("{s:o}", "blocks", list));
}

/* GET /v1/memory/recall?q=...&page=P: what was said (newest first without q). */
static enum MHD_Result hs_memory_recall(hs_req *r)
{
    const char *q = MHD_lookup_connection_value(r->c, MHD_GET_ARGUMENT_KIND, "q");
    int64_t page;
    enum MHD_Result ret;
    if (!hs_query_int(r, "page", 0, 0, 1000, &page, &ret))
        return ret;
    store_message *m = NULL;
    size_t n = 0;
    llmos_err err = ksession_recall_search(r->ses, q ? q : "", 0, 0, (size_t)page, 20, &m, &n);
    r->recorded = err == LLMOS_ERR_DENIED;
    if (err)
        return hs_reply_failure(r, err);
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++)
        json_array_append_new(
            list, json_pack("{s:I, s:s, s:s, s:s, s:I}", "id", (json_int_t)m[i].id, "conversation",
                            m[i].conversation ? m[i].conversation : "", "role",
                            m[i].role ? m[i].role : "", "content", m[i].content ? m[i].content : "",
                            "created_at", (json_int_t)m[i].created_at));
    ksession_messages_free(m, n);
    return hs_reply(r, 200, json_pack("{s:o}", "messages", list));
}

/* ---- speech (src/io/voice_http.c) -------------------------------------------------------- */

static enum MHD_Result hs_audio_answer(hs_req *r, llmos_err err, voice_http_answer *a)
{
    r->recorded = a->recorded;
    if (err) {
        buf_free(&a->body);
        return hs_reply_failure(r, err);
    }
    r->status = a->status;
    r->code = a->code;
    hs_count(r->s, a->status);
    size_t len;
    char *data = buf_detach(&a->body, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, data ? data : (char *)"", data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", a->content_type);
    enum MHD_Result ret = MHD_queue_response(r->c, a->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* POST /v1/audio/transcriptions (multipart/form-data: file, response_format) */
static enum MHD_Result hs_transcription(hs_req *r)
{
    voice_http_answer a;
    const char *ct = MHD_lookup_connection_value(r->c, MHD_HEADER_KIND, "Content-Type");
    llmos_err err = voice_http_transcription(r->s->voice, r->ses, ct, r->body, r->len, &a);
    return hs_audio_answer(r, err, &a);
}

/* POST /v1/audio/speech {"model", "input", "voice", "response_format": "wav"} */
static enum MHD_Result hs_speech(hs_req *r)
{
    voice_http_answer a;
    llmos_err err = voice_http_speech(r->s->voice, r->ses, r->body, r->len, &a);
    return hs_audio_answer(r, err, &a);
}

/* ---- routes ------------------------------------------------------------------------------- */

static const hs_route hs_routes[] = {
    {"GET", "/health", hs_health, true},
    {"GET", "/metrics", hs_metrics, false},
    {"GET", "/v1/models", hs_models, false},
    {"GET", "/v1/models/{id}", hs_model, false},
    {"POST", "/v1/chat/completions", hs_chat, false},
    {"POST", "/v1/completions", hs_completion, false},
    {"POST", "/v1/embeddings", hs_embeddings, false},
    {"POST", "/v1/audio/transcriptions", hs_transcription, false},
    {"POST", "/v1/audio/speech", hs_speech, false},
    {"POST", "/v1/processes", hs_proc_create, false},
    {"GET", "/v1/processes", hs_proc_list, false},
    {"GET", "/v1/processes/{pid}", hs_proc_get, false},
    {"POST", "/v1/processes/{pid}/messages", hs_proc_message, false},
    {"POST", "/v1/processes/{pid}/kill", hs_proc_kill, false},
    {"GET", "/v1/audit", hs_audit, false},
    {"GET", "/v1/audit/verify", hs_audit_verify, false},
    {"GET", "/v1/memory", hs_memory_stats, false},
    {"POST", "/v1/memory", hs_memory_add, false},
    {"GET", "/v1/memory/search", hs_memory_search, false},
    {"GET", "/v1/memory/core", hs_memory_core, false},
    {"GET", "/v1/memory/recall", hs_memory_recall, false},
    {"GET", "/v1/apps", hs_apps, false},
    {"POST", "/auth/login", hs_login, true},
    {"POST", "/auth/logout", hs_logout, false},
    {"GET", "/auth/session", hs_whoami, false},
    {"POST", "/auth/passkey/register/options", hs_passkey_register_options, false},
    {"POST", "/auth/passkey/register", hs_passkey_register, false},
    {"POST", "/auth/passkey/login/options", hs_passkey_login_options, true},
    {"POST", "/auth/passkey/login", hs_passkey_login, true},
    {"GET", "/", hs_ui, true},
    {"GET", "/ui/{id}", hs_ui, true},
};

/* Does url fit pattern? {pid} takes a positive decimal number, {id} the rest of the path. */
static bool hs_match(const char *pattern, const char *url, hs_args *a)
{
    while (*pattern) {
        if (strncmp(pattern, "{pid}", 5) == 0) {
            int64_t v = 0;
            size_t n = 0;
            for (; url[n] >= '0' && url[n] <= '9'; n++) {
                if (n == 18)
                    return false;
                v = v * 10 + (url[n] - '0');
            }
            if (n == 0 || v == 0)
                return false;
            a->pid = v;
            url += n;
            pattern += 5;
        } else if (strcmp(pattern, "{id}") == 0) {
            if (!*url)
                return false;
            a->id = url;
            return true;
        } else if (*pattern++ != *url++) {
            return false;
        }
    }
    return *url == 0;
}

/* The route for method and url; NULL when there is none, with the methods the path does take
 * in allow ("" when the path is unknown). */
static const hs_route *hs_lookup(const char *method, const char *url, hs_args *a, char *allow,
                                 size_t size)
{
    allow[0] = 0;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(hs_routes); i++) {
        hs_args tmp = {0};
        if (!hs_match(hs_routes[i].pattern, url, &tmp))
            continue;
        if (strcmp(hs_routes[i].method, method) == 0) {
            *a = tmp;
            return &hs_routes[i];
        }
        size_t used = strlen(allow);
        snprintf(allow + used, size - used, "%s%s", used ? ", " : "", hs_routes[i].method);
    }
    return NULL;
}

/* A request that no session function recorded: one "request" record, with the status and
 * error code answered ("429 rate_limit_exceeded"). */
static void hs_record(ksession *ses, const char *method, const char *url, unsigned status,
                      const char *code)
{
    assert(ses && method && url);
    char request[300], outcome[64];
    snprintf(request, sizeof request, "%s %.280s", method, url);
    snprintf(outcome, sizeof outcome, "%u%s%s", status ? status : 499, code ? " " : "",
             code ? code : "");
    if (ksession_audit_request(ses, request, outcome))
        LOG_WARN(HS_COMPONENT, "a request could not be audited: %s", llmos_errmsg());
}

/* Run the request's handler, and record it in the audit log when no session function did. */
static enum MHD_Result hs_dispatch(http_server *s, struct MHD_Connection *c, hs_conn *hc,
                                   const char *method, const char *url)
{
    assert(hc->route && (hc->slot >= 0 || hc->user) == !hc->route->open);
    hs_req r = {.s = s,
                .hc = hc,
                .c = c,
                .method = method,
                .url = url,
                .body = hc->body.data ? hc->body.data : "",
                .len = hc->body.len,
                .args = hc->args};
    if (hc->user) {
        r.ses = hc->user;
    } else if (hc->slot >= 0) {
        llmos_err err = hs_session(s, hc->slot, &r.ses);
        if (err)
            return hs_reply_failure(&r, err);
    }
    /* a request being answered is not idle: no timeout until it completes (hs_completed) */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    enum MHD_Result ret = hc->route->fn(&r);
    if (r.ses && !r.recorded)
        hs_record(r.ses, method, url, r.status, r.code);
    return ret;
}

/* Refuse a principal's request before its body (an unknown path, a wrong method, a body too
 * large): answered, and recorded under the principal. */
static enum MHD_Result hs_refuse(http_server *s, struct MHD_Connection *c, const hs_conn *hc,
                                 const char *method, const char *url, unsigned status,
                                 const char *code, const char *message, const char *hname,
                                 const char *hvalue)
{
    ksession *ses = hc->user;
    if (ses || (hc->slot >= 0 && hs_session(s, hc->slot, &ses) == LLMOS_OK))
        hs_record(ses, method, url, status, code);
    return hs_send_error(s, c, status, "invalid_request_error", code, message, hname, hvalue);
}

/* A login session from the cookie: 1 when there is a valid one (hc->user set, held), 0 when
 * the request carries no cookie (API keys decide), -1 when it was refused (*ret queued). A
 * request that changes something (any method but GET and HEAD) must send the session's CSRF
 * token in X-CSRF-Token, and when it names its Origin, this server's own: a page elsewhere
 * cannot make the browser act for the user (SameSite=Strict stops most of that already). */
static int hs_cookie_session(http_server *s, struct MHD_Connection *c, hs_conn *hc,
                             const char *method, const char *url, enum MHD_Result *ret)
{
    if (!s->accounts)
        return 0;
    const char *token = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, hs_cookie_name(s));
    if (!token || !*token)
        return 0;
    char peer[64];
    if (auth_session(s->accounts, token, &hc->user, &hc->ref, NULL, hc->csrf)) {
        hs_peer_name(c, peer, sizeof peer);
        LOG_INFO(HS_COMPONENT, "refused %s: an unknown or expired login session", peer);
        char clear[128];
        snprintf(clear, sizeof clear, "%s=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s",
                 hs_cookie_name(s), s->tls_cert ? "; Secure" : "");
        *ret = hs_send_error(s, c, 401, "authentication_error", "session_expired",
                             "Your login session has expired or was ended: log in again",
                             "Set-Cookie", clear);
        return -1;
    }
    snprintf(hc->token, sizeof hc->token, "%s", token);
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return 1;
    const char *csrf = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-CSRF-Token");
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    bool origin_ok = true;
    if (origin) {
        char want[300];
        snprintf(want, sizeof want, "%s://%s", s->tls_cert ? "https" : "http", host ? host : "");
        origin_ok = strcmp(origin, want) == 0;
    }
    if (csrf && strlen(csrf) == AUTH_TOKEN_CHARS &&
        sodium_memcmp(csrf, hc->csrf, AUTH_TOKEN_CHARS) == 0 && origin_ok)
        return 1;
    hs_peer_name(c, peer, sizeof peer);
    LOG_INFO(HS_COMPONENT, "refused %s: %s", peer,
             origin_ok ? "a change without the session's CSRF token"
                       : "a change from another origin");
    hs_record(hc->user, method, url, 403, "csrf_failed");
    auth_release(s->accounts, hc->ref);
    hc->ref = NULL;
    hc->user = NULL;
    *ret = hs_send_error(s, c, 403, "permission_error", "csrf_failed",
                         origin_ok ? "This change needs the session's CSRF token in the header "
                                     "X-CSRF-Token (GET /auth/session gives it)"
                                   : "This change comes from a page of another origin",
                         NULL, NULL);
    return -1;
}

/* The request line and headers have arrived: route, authenticate, check the body's size. */
static enum MHD_Result hs_precheck(http_server *s, struct MHD_Connection *c, hs_conn *hc,
                                   const char *url, const char *method)
{
    char allow[64];
    hc->route = hs_lookup(method, url, &hc->args, allow, sizeof allow);
    hc->slot = -1;
    hc->answered = true;
    enum MHD_Result ret = MHD_YES;
    if (!hc->route || !hc->route->open) {
        int login = hs_cookie_session(s, c, hc, method, url, &ret);
        if (login < 0)
            return ret;
        if (login == 0 && (hc->slot = hs_authenticate(s, c, &ret)) < 0)
            return ret;
    }
    char msg[1024];
    if (!hc->route && !allow[0]) {
        snprintf(msg, sizeof msg,
                 "Unknown URL %.200s %.200s; llmos serves GET /health, the OpenAI API under "
                 "/v1 (models, chat/completions, completions, embeddings, audio) and "
                 "/v1/processes, /v1/audit and /v1/memory, logins under /auth and the web UI at "
                 "/ (docs/api.md)",
                 method, url);
        return hs_refuse(s, c, hc, method, url, 404, "unknown_url", msg, NULL, NULL);
    }
    if (!hc->route) {
        snprintf(msg, sizeof msg, "%.200s needs %s, not %.20s", url, allow, method);
        return hs_refuse(s, c, hc, method, url, 405, "method_not_allowed", msg, "Allow", allow);
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl && strcmp(method, "POST") == 0) {
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > s->max_body) {
            snprintf(msg, sizeof msg, "The request body is %llu bytes; the limit is %zu bytes", n,
                     s->max_body);
            return hs_refuse(s, c, hc, method, url, 413, "request_too_large", msg, NULL, NULL);
        }
    }
    hc->answered = false;
    return MHD_YES;
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
        return hs_precheck(s, c, hc, url, method);
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
        return hs_refuse(s, c, hc, method, url, 413, "request_too_large", msg, NULL, NULL);
    }
    return hs_dispatch(s, c, hc, method, url);
}

static void hs_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server *s = cls;
    (void)toe;
    /* the connection is idle again (keep-alive): the idle timeout applies */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, s->idle_timeout_s);
    hs_conn *hc = *con_cls;
    if (!hc)
        return;
    if (hc->ref)
        auth_release(s->accounts, hc->ref);
    sodium_memzero(hc->token, sizeof hc->token);
    if (hc->body.data)
        sodium_memzero(hc->body.data, hc->body.len);
    buf_free(&hc->body);
    free(hc);
    *con_cls = NULL;
}

/* libmicrohttpd's own messages (a client that hung up, a connection refused by a limit, ...)
 * go to the debug log. */
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
    p.max_connections = 256;
    p.max_per_address = 16;
    p.idle_timeout_s = 10;
    return p;
}

/* Is host a name for this machine only (localhost, 127.0.0.0/8, ::1)? */
static bool hs_host_loopback(const char *host)
{
    return strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "[::1]") == 0 || strncmp(host, "127.", 4) == 0;
}

/* A listening socket on host:port (port 0: any free one). */
static llmos_err hs_listen(const char *host, uint16_t port, int *fd_out, uint16_t *bound)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port_s[8];
    snprintf(port_s, sizeof port_s, "%u", (unsigned)port);
    int gai = getaddrinfo(host, port_s, &hints, &ai);
    if (gai != 0)
        return llmos_fail(LLMOS_ERR_INVALID, "serve: cannot resolve host '%s': %s", host,
                          gai_strerror(gai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, e = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0)
        e = errno;
    freeaddrinfo(ai);
    if (e) {
        if (fd >= 0)
            close(fd);
        return llmos_fail(LLMOS_ERR_IO,
                          "serve: cannot listen on %s port %u (%s); is another server using that "
                          "port? choose another with --port",
                          host, (unsigned)port, strerror(e));
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return LLMOS_OK;
}

llmos_err http_server_bind(const http_server_params *p, http_server **out)
{
    *out = NULL;
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libsodium could not be initialised");
    http_server_params d = http_server_default_params();
    if (!p)
        p = &d;
    http_server *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    s->listen_fd = -1;
    snprintf(s->host, sizeof s->host, "%s", p->host && *p->host ? p->host : "127.0.0.1");
    s->keys = p->keys;
    s->accounts = p->accounts;
    s->apps_list = p->apps_list;
    s->apps_ctx = p->apps_ctx;
    snprintf(s->rp_id, sizeof s->rp_id, "%s", p->rp_id && *p->rp_id ? p->rp_id : "localhost");
    s->max_body = p->max_body ? p->max_body : d.max_body;
    s->max_connections = p->max_connections ? p->max_connections : d.max_connections;
    s->max_per_address = p->max_per_address ? p->max_per_address : d.max_per_address;
    s->idle_timeout_s = p->idle_timeout_s ? p->idle_timeout_s : d.idle_timeout_s;
    s->n_sessions = s->keys ? apikeys_count(s->keys) : 1;
    s->sessions = calloc(s->n_sessions ? s->n_sessions : 1, sizeof *s->sessions);
    s->model = p->model_name ? strdup(p->model_name) : NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    atomic_init(&s->stopping, false);
    llmos_err err = !s->sessions || (p->model_name && !s->model)
                        ? llmos_fail(LLMOS_ERR_NOMEM, "out of memory")
                        : voice_http_new(&s->voice);
    if (!err && !p->tls_cert_pem != !p->tls_key_pem)
        err = llmos_fail(LLMOS_ERR_INVALID, "serve: TLS needs both a certificate and its key");
    if (!err && p->tls_cert_pem && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                         "serve: this libmicrohttpd was built without TLS; install one built with "
                         "GnuTLS (Debian's libmicrohttpd12 is)");
    if (!err && p->tls_cert_pem && p->tls_key_pem &&
        (!(s->tls_cert = strdup(p->tls_cert_pem)) || !(s->tls_key = strdup(p->tls_key_pem))))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    /* Others on the network would read everything said, keys and passphrases included, or
     * talk to the models as anyone: only loopback goes without TLS and authentication. */
    if (!err && !p->insecure_bind && !hs_host_loopback(s->host) &&
        (!s->tls_cert || (!p->keys && !p->accounts)))
        err = llmos_fail(LLMOS_ERR_DENIED,
                         "serve: refusing to listen on %s without %s: others on the network "
                         "could %s. Give %s, or --insecure to do it anyway",
                         s->host, !s->tls_cert ? "TLS" : "authentication",
                         !s->tls_cert ? "read every request and answer, keys and passphrases "
                                        "included"
                                      : "use the models and read the memory as anyone",
                         !s->tls_cert ? "--tls-cert FILE --tls-key FILE (or --tls-self-signed)"
                                      : "--keys FILE or --accounts");
    if (!err)
        err = hs_listen(s->host, p->port, &s->listen_fd, &s->port);
    if (err) {
        http_server_stop(s);
        return err;
    }
    *out = s;
    return LLMOS_OK;
}

llmos_err http_server_serve(http_server *s, kernel *k)
{
    if (!s || !k || s->daemon)
        return llmos_fail(LLMOS_ERR_INVALID, "http_server_serve needs a bound server (once) and a "
                                             "kernel");
    s->k = k;
    ksched_stats st = kernel_sched_stats(k);
    if (!s->model && !(s->model = strdup(st.model && *st.model ? st.model : "llmos")))
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    s->n_ctx = st.context_size;
    s->started = (int64_t)time(NULL);
    int rc = pthread_create(&s->watcher, NULL, hs_watcher_main, s);
    if (rc != 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "serve: could not start a thread: %s", strerror(rc));
    s->watcher_started = true;
    unsigned flags =
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (s->tls_cert)
        flags |= MHD_USE_TLS;
    struct MHD_OptionItem tls[] = {
        {s->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, s->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, hs_access, s, MHD_OPTION_EXTERNAL_LOGGER, hs_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_CONNECTION_LIMIT, s->max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, s->max_per_address, MHD_OPTION_CONNECTION_TIMEOUT,
        s->idle_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, hs_completed, s, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
    if (!s->daemon)
        return llmos_fail(LLMOS_ERR_IO, "serve: libmicrohttpd could not start on %s port %u",
                          s->host, (unsigned)s->port);
    s->listen_fd = -1; /* libmicrohttpd's now: MHD_stop_daemon closes it */
    return LLMOS_OK;
}

llmos_err http_server_start(kernel *k, const http_server_params *p, http_server **out)
{
    *out = NULL;
    if (!k)
        return llmos_fail(LLMOS_ERR_INVALID, "http_server_start: no kernel");
    http_server *s = NULL;
    llmos_err err = http_server_bind(p, &s);
    if (!err && (err = http_server_serve(s, k)) != LLMOS_OK) {
        http_server_stop(s);
        s = NULL;
    }
    *out = s;
    return err;
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
    st.rejected_busy = atomic_load(&s->n_busy);
    st.limited = atomic_load(&s->n_limited);
    st.denied = atomic_load(&s->n_denied);
    st.unauthorized = atomic_load(&s->n_unauthorized);
    return st;
}

void http_server_stop(http_server *s)
{
    if (!s)
        return;
    /* cancel what runs now; what starts from here on starts cancelled */
    atomic_store(&s->stopping, true);
    pthread_mutex_lock(&s->mu);
    for (hs_flight *f = s->flights; f; f = f->next)
        hs_flight_cancel(s, f);
    pthread_mutex_unlock(&s->mu);
    if (s->daemon)
        MHD_stop_daemon(s->daemon); /* waits for every connection's thread */
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->watcher_started) {
        pthread_mutex_lock(&s->mu);
        s->watcher_stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->watcher, NULL);
    }
    assert(!s->flights);
    for (size_t i = 0; s->sessions && i < s->n_sessions; i++)
        ksession_close(s->sessions[i]);
    free(s->sessions);
    if (s->tls_key)
        sodium_memzero(s->tls_key, strlen(s->tls_key));
    free(s->tls_key);
    free(s->tls_cert);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    voice_http_free(s->voice);
    free(s->model);
    free(s);
}
