/*
 * remote.c - the backend that talks to an OpenAI-compatible HTTP server (llama.cpp's server,
 * vLLM, ollama, a hosted API, another llmos) with libcurl.
 *
 * Endpoints (the OpenAI REST API shapes):
 *   GET  {base}/models            at open: the model must be listed (data[].id)
 *   POST {base}/chat/completions  chat; with a stream callback "stream": true and the answer
 *                                 comes as server-sent events
 *   POST {base}/completions       raw prompts (llm_request.prompt)
 *   POST {base}/embeddings        embed()
 *
 * Streaming (server-sent events, WHATWG HTML "9.2 Server-sent events"): the body is lines;
 * "data: ..." lines accumulate into an event, a blank line dispatches it, lines starting with
 * ':' are comments. Each event is a JSON chunk {"choices":[{"delta":{"content": "...",
 * "tool_calls": [{"index": i, "id", "function": {"name", "arguments"}}]},
 * "finish_reason": ...}]}; tool-call fragments are appended by index; "data: [DONE]" ends.
 *
 * Failures: every error names the endpoint and says what happened: HTTP status with the
 * server's message from the OpenAI error shape {"error": {"message": ...}}, curl's reason for
 * connection failures and timeouts, or what was malformed in the body. Requests that fail
 * with 429, 5xx or a connection error are retried (max_retries) after an exponential backoff
 * with jitter, or after the server's Retry-After; never once any text has been streamed to
 * the caller (it would see the beginning twice). Cancellation (the request's cancel flag or a
 * stream callback returning false) aborts the transfer from curl's progress callback.
 */
#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#include "llmos/backend.h"
#include "llmos/json.h"

#define REMOTE_LOG             "remote"
#define REMOTE_MAX_BODY        (64u << 20) /* bytes of a non-streamed answer we accept */
#define REMOTE_MAX_BACKOFF     30.0        /* seconds between two tries, at most */
#define REMOTE_MAX_RETRY_AFTER 120.0

typedef struct remote_backend {
    llm_backend base;
    char *base_url; /* without a trailing '/' */
    char *model;
    char *auth_header; /* "Authorization: Bearer ..." or NULL */
    char *ca_file;     /* the only authority an https:// server's certificate may chain to */
    remote_backend_params p;
    pthread_mutex_t mu; /* chats in flight, at most p.max_concurrent */
    pthread_cond_t cv;
    size_t in_flight;
} remote_backend;

static pthread_once_t rm_once = PTHREAD_ONCE_INIT;
static CURLcode rm_init_code;
static void rm_global_init(void)
{
    rm_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- one transfer ---------------------------------------------------------------------------- */

/* A tool call being assembled from stream fragments. */
typedef struct rm_call {
    llmos_buf id, name, args;
} rm_call;

typedef struct rm_xfer {
    const llm_request *req;
    llm_stream_fn stream;
    void *stream_ctx;
    bool sse;         /* parse the body as server-sent events when the status is 200 */
    bool completions; /* /completions: text is choices[0].text */
    long status;
    CURL *curl;      /* the handle of the transfer in progress */
    llmos_buf body;  /* non-SSE body (or an error body) */
    llmos_buf line;  /* SSE: the current line */
    llmos_buf event; /* SSE: data of the current event */
    bool done;       /* [DONE] seen */
    bool streamed;   /* text was passed to the caller: no retry from here on */
    bool cancelled;
    llmos_err perr; /* a malformed event, recorded to fail the transfer */
    double retry_after;
    /* the answer assembled from events */
    llmos_buf content;
    rm_call *calls;
    size_t n_calls;
    char finish[32];
    uint32_t prompt_tokens, completion_tokens;
} rm_xfer;

static void rm_xfer_free(rm_xfer *x)
{
    buf_free(&x->body);
    buf_free(&x->line);
    buf_free(&x->event);
    buf_free(&x->content);
    for (size_t i = 0; i < x->n_calls; i++) {
        buf_free(&x->calls[i].id);
        buf_free(&x->calls[i].name);
        buf_free(&x->calls[i].args);
    }
    free(x->calls);
}

/* Start afresh before a retry. */
static void rm_xfer_reset(rm_xfer *x)
{
    const llm_request *req = x->req;
    llm_stream_fn stream = x->stream;
    void *sc = x->stream_ctx;
    bool sse = x->sse, completions = x->completions;
    rm_xfer_free(x);
    *x = (rm_xfer){
        .req = req, .stream = stream, .stream_ctx = sc, .sse = sse, .completions = completions};
}

static void rm_usage(rm_xfer *x, const json_t *root)
{
    json_t *u = ljson_get_object(root, "usage");
    if (u) {
        x->prompt_tokens = (uint32_t)ljson_get_int(u, "prompt_tokens", x->prompt_tokens);
        x->completion_tokens =
            (uint32_t)ljson_get_int(u, "completion_tokens", x->completion_tokens);
    }
}

static llmos_err rm_append_str(llmos_buf *b, const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return LLMOS_OK;
    return buf_append(b, json_string_value(v), json_string_length(v));
}

/* One SSE event's data: a chat.completion.chunk. */
static llmos_err rm_event(rm_xfer *x, const char *data, size_t len)
{
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        x->done = true;
        return LLMOS_OK;
    }
    json_t *root = NULL;
    llmos_err err = ljson_parse_text(data, len, "stream event", 0, &root);
    if (err)
        return err;
    json_t *e = json_object_get(root, "error");
    if (e) {
        const char *msg = json_is_string(e) ? json_string_value(e)
                                            : ljson_get_string(e, "message", "(no message)");
        err = llmos_fail(LLMOS_ERR_NETWORK, "the server reported an error in the stream: %s", msg);
        json_decref(root);
        return err;
    }
    rm_usage(x, root);
    json_t *ch = json_array_get(json_object_get(root, "choices"), 0);
    if (!ch) {
        json_decref(root);
        return LLMOS_OK; /* a usage-only chunk */
    }
    const char *fr = ljson_get_string(ch, "finish_reason", NULL);
    if (fr)
        snprintf(x->finish, sizeof x->finish, "%s", fr);
    const char *piece = NULL;
    size_t plen = 0;
    json_t *delta = x->completions ? ch : json_object_get(ch, "delta");
    json_t *t = json_object_get(delta, x->completions ? "text" : "content");
    if (json_is_string(t)) {
        piece = json_string_value(t);
        plen = json_string_length(t);
    }
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(delta, "tool_calls"), i, tc)
    {
        json_int_t idx = json_integer_value(json_object_get(tc, "index"));
        if (!json_is_integer(json_object_get(tc, "index")))
            idx = (json_int_t)i;
        if (idx < 0 || idx > 255) {
            json_decref(root);
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "stream event: tool call index %lld is out "
                              "of range (0..255)",
                              (long long)idx);
        }
        if ((size_t)idx >= x->n_calls) {
            rm_call *nv = realloc(x->calls, ((size_t)idx + 1) * sizeof *nv);
            if (!nv) {
                json_decref(root);
                return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            }
            memset(nv + x->n_calls, 0, ((size_t)idx + 1 - x->n_calls) * sizeof *nv);
            x->calls = nv;
            x->n_calls = (size_t)idx + 1;
        }
        rm_call *c = &x->calls[idx];
        json_t *fn = json_object_get(tc, "function");
        if ((err = rm_append_str(&c->id, tc, "id")) ||
            (err = rm_append_str(&c->name, fn, "name")) ||
            (err = rm_append_str(&c->args, fn, "arguments")))
            break;
    }
    if (!err && plen > 0) {
        err = buf_append(&x->content, piece, plen);
        if (!err && x->stream) {
            x->streamed = true;
            if (!x->stream(x->stream_ctx, piece, plen))
                x->cancelled = true;
        }
    }
    json_decref(root);
    return err;
}

/* Feed one line of the SSE body. */
static llmos_err rm_sse_line(rm_xfer *x, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n == 0) { /* blank line: dispatch the event */
        llmos_err err = LLMOS_OK;
        if (x->event.len > 0)
            err = rm_event(x, x->event.data, x->event.len);
        buf_clear(&x->event);
        return err;
    }
    if (s[0] == ':')
        return LLMOS_OK;
    if (n >= 5 && memcmp(s, "data:", 5) == 0) {
        size_t k = 5;
        if (k < n && s[k] == ' ')
            k++;
        llmos_err err = LLMOS_OK;
        if (x->event.len > 0)
            err = buf_putc(&x->event, '\n');
        return err ? err : buf_append(&x->event, s + k, n - k);
    }
    return LLMOS_OK; /* event:, id:, retry: are not used by the OpenAI API */
}

static size_t rm_on_write(char *data, size_t size, size_t nmemb, void *user)
{
    rm_xfer *x = user;
    size_t n = size * nmemb;
    if (x->cancelled || x->perr)
        return 0;
    if (x->status == 0 && x->curl) /* the status line has been read by now */
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &x->status);
    if (!(x->sse && x->status == 200)) {
        if (x->body.len + n > REMOTE_MAX_BODY) {
            x->perr = llmos_fail(LLMOS_ERR_LIMIT, "the answer is larger than %u MiB",
                                 REMOTE_MAX_BODY >> 20);
            return 0;
        }
        return buf_append(&x->body, data, n) ? 0 : n;
    }
    for (size_t i = 0; i < n; i++) {
        if (data[i] != '\n') {
            if (x->line.len > REMOTE_MAX_BODY || buf_putc(&x->line, data[i])) {
                x->perr = llmos_fail(LLMOS_ERR_LIMIT, "a stream line is too long");
                return 0;
            }
            continue;
        }
        llmos_err err = rm_sse_line(x, x->line.data ? x->line.data : "", x->line.len);
        buf_clear(&x->line);
        if (err) {
            x->perr = err;
            return 0;
        }
        if (x->cancelled)
            return 0;
    }
    return n;
}

static size_t rm_on_header(char *data, size_t size, size_t nmemb, void *user)
{
    rm_xfer *x = user;
    size_t n = size * nmemb;
    if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
        char tmp[64];
        size_t k = n - 12 < sizeof tmp - 1 ? n - 12 : sizeof tmp - 1;
        memcpy(tmp, data + 12, k);
        tmp[k] = 0;
        char *end;
        double v = strtod(tmp, &end);
        if (end != tmp && v >= 0) /* delay-seconds form (RFC 9110 10.2.3); dates ignored */
            x->retry_after = v;
    }
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0)
        x->retry_after = 0; /* a new response (after redirects or 100 Continue) */
    return n;
}

static int rm_on_progress(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    rm_xfer *x = user;
    if (x->req && x->req->cancel && atomic_load(x->req->cancel))
        x->cancelled = true;
    return x->cancelled ? 1 : 0;
}

/* The server's message from an error body: {"error": {"message": ...}} or {"error": "..."}
 * or {"message": ...}; else the start of the body as text. Writes into out[size]. */
/* The message of an OpenAI-shaped error body into out; *context when its code says the input
 * did not fit the model's context ("context_length_exceeded"). */
static void rm_error_message(const llmos_buf *body, char *out, size_t size, bool *context)
{
    json_t *root = NULL;
    out[0] = 0;
    *context = false;
    if (body->len && !ljson_parse_text(body->data, body->len, "error body", 0, &root)) {
        json_t *e = json_object_get(root, "error");
        *context = strcmp(ljson_get_string(e, "code", ""), "context_length_exceeded") == 0;
        const char *msg =
            json_is_string(e) ? json_string_value(e) : ljson_get_string(e, "message", NULL);
        if (!msg)
            msg = ljson_get_string(root, "message", NULL);
        if (msg)
            snprintf(out, size, "%s", msg);
        json_decref(root);
    }
    llmos_err_clear();
    if (!out[0]) {
        size_t k = body->len < 200 ? body->len : 200;
        snprintf(out, size, "%.*s", (int)k, body->data ? body->data : "");
        for (char *p = out; *p; p++)
            if ((unsigned char)*p < 0x20)
                *p = ' ';
        if (!out[0])
            snprintf(out, size, "(empty body)");
    }
}

static bool rm_sleep(double seconds, const llm_request *req)
{
    while (seconds > 0) {
        if (req && req->cancel && atomic_load(req->cancel))
            return false;
        double s = seconds < 0.05 ? seconds : 0.05;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
        seconds -= s;
    }
    return true;
}

static double rm_jitter(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = (uint32_t)rand();
    return 0.5 + 0.5 * (double)r / 4294967296.0; /* [0.5, 1) */
}

/* Perform method (GET when body is NULL, else POST of JSON `body`) on base + path, with
 * retries. On success the status is 200 and the body (or the assembled stream) is in x. */
static llmos_err rm_perform(remote_backend *rb, const char *path, const char *body, rm_xfer *x)
{
    char url[2048];
    if (snprintf(url, sizeof url, "%s%s", rb->base_url, path) >= (int)sizeof url)
        return llmos_fail(LLMOS_ERR_LIMIT, "remote: the URL is longer than %zu bytes", sizeof url);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    if (hdrs && x->sse)
        hdrs = curl_slist_append(hdrs, "Accept: text/event-stream");
    if (hdrs && rb->auth_header)
        hdrs = curl_slist_append(hdrs, rb->auth_header);
    CURL *h = curl_easy_init();
    if (!h || !hdrs) {
        curl_slist_free_all(hdrs);
        curl_easy_cleanup(h);
        return llmos_fail(LLMOS_ERR_NOMEM, "remote: cannot set up an HTTP request");
    }
    llmos_err err = LLMOS_OK;
    int tries = 1 + (rb->p.max_retries > 0 ? rb->p.max_retries : 0);
    for (int attempt = 0; attempt < tries; attempt++) {
        rm_xfer_reset(x);
        x->curl = h;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(rb->p.timeout_s * 1000));
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(rb->p.connect_timeout_s * 1000));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, rm_on_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, rm_on_header);
        curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, rm_on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        /* https: the server's certificate must verify (the system's authorities, or only
         * ca_file) and name the host; never turned off */
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
        if (rb->ca_file)
            curl_easy_setopt(h, CURLOPT_CAINFO, rb->ca_file);
        if (body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        }
        CURLcode rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->status);
        x->curl = NULL;
        bool retryable = false;
        if (x->cancelled) {
            err = LLMOS_OK; /* the caller sees finish_reason "cancelled" */
            break;
        }
        if (x->perr) {
            err = llmos_fail_context(x->perr, "remote %s%s: ", rb->base_url, path);
            break;
        }
        if (rc != CURLE_OK) {
            if (rc == CURLE_OPERATION_TIMEDOUT)
                err = llmos_fail(LLMOS_ERR_NETWORK,
                                 "remote %s%s: no complete answer within %.1f s (%s); raise the "
                                 "timeout or check the server",
                                 rb->base_url, path, rb->p.timeout_s, curl_easy_strerror(rc));
            else
                err = llmos_fail(LLMOS_ERR_NETWORK, "remote %s%s: %s", rb->base_url, path,
                                 curl_easy_strerror(rc));
            retryable = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                        rc == CURLE_SEND_ERROR || rc == CURLE_RECV_ERROR ||
                        rc == CURLE_GOT_NOTHING; /* not a timeout: it would cost the whole
                                                    timeout again */
        } else if (x->status != 200) {
            char msg[512];
            bool context;
            rm_error_message(&x->body, msg, sizeof msg, &context);
            llmos_err code = x->status == 401 || x->status == 403 ? LLMOS_ERR_AUTH
                             : x->status == 404                   ? LLMOS_ERR_NOT_FOUND
                             : x->status == 429                   ? LLMOS_ERR_BUSY
                             : x->status >= 500                   ? LLMOS_ERR_NETWORK
                             : context                            ? LLMOS_ERR_CONTEXT
                                                                  : LLMOS_ERR_INVALID;
            err = llmos_fail(code, "remote %s%s: HTTP %ld: %s", rb->base_url, path, x->status, msg);
            retryable = x->status == 429 || x->status >= 500;
        } else {
            err = LLMOS_OK;
            break;
        }
        if (!retryable || x->streamed || attempt + 1 == tries)
            break;
        double wait = x->retry_after > 0
                          ? x->retry_after
                          : fmin(REMOTE_MAX_BACKOFF, 0.5 * ldexp(1.0, attempt)) * rm_jitter();
        if (wait > REMOTE_MAX_RETRY_AFTER)
            wait = REMOTE_MAX_RETRY_AFTER;
        LOG_INFO(REMOTE_LOG, "%s; try %d of %d in %.2f s", llmos_errmsg(), attempt + 2, tries,
                 wait);
        if (!rm_sleep(wait, x->req)) {
            x->cancelled = true;
            err = LLMOS_OK;
            break;
        }
    }
    if (err && tries > 1 && (x->status == 429 || x->status >= 500 || x->status == 0) &&
        !x->streamed && !x->perr)
        err = llmos_fail_context(err, "after %d tries: ", tries);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return err;
}

/* ---- chat -------------------------------------------------------------------------------- */

static llmos_err rm_build_body(remote_backend *rb, const llm_request *req, bool stream, char **out)
{
    json_t *b = json_object();
    if (!b)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    int bad = json_object_set_new(b, "model", json_string(rb->model));
    if (req->prompt)
        bad |= json_object_set_new(b, "prompt", json_string(req->prompt));
    else
        bad |= json_object_set(b, "messages", (json_t *)req->messages);
    bad |= json_object_set_new(b, "stream", json_boolean(stream));
    if (stream)
        bad |= json_object_set_new(b, "stream_options", json_pack("{sb}", "include_usage", 1));
    if (req->max_tokens > 0)
        bad |= json_object_set_new(b, "max_tokens", json_integer(req->max_tokens));
    const sampler_params *sp = &req->sampling;
    bad |= json_object_set_new(b, "temperature",
                               json_real(sp->temperature > 0 ? sp->temperature : 0.0));
    if (sp->top_p > 0 && sp->top_p < 1)
        bad |= json_object_set_new(b, "top_p", json_real(sp->top_p));
    if (sp->frequency_penalty != 0)
        bad |= json_object_set_new(b, "frequency_penalty", json_real(sp->frequency_penalty));
    if (sp->presence_penalty != 0)
        bad |= json_object_set_new(b, "presence_penalty", json_real(sp->presence_penalty));
    bad |= json_object_set_new(b, "seed", json_integer((json_int_t)(sp->seed & INT64_MAX)));
    if (req->n_stop > 0) {
        json_t *st = json_array();
        for (size_t i = 0; st && i < req->n_stop; i++)
            bad |= json_array_append_new(st, json_string(req->stop[i]));
        bad |= json_object_set_new(b, "stop", st);
    }
    if (req->tools && json_array_size(req->tools) > 0) {
        bad |= json_object_set(b, "tools", (json_t *)req->tools);
        const char *tc = req->tool_choice;
        if (tc &&
            (strcmp(tc, "auto") == 0 || strcmp(tc, "none") == 0 || strcmp(tc, "required") == 0))
            bad |= json_object_set_new(b, "tool_choice", json_string(tc));
        else if (tc)
            bad |= json_object_set_new(
                b, "tool_choice",
                json_pack("{ss s{ss}}", "type", "function", "function", "name", tc));
    }
    if (req->response_format)
        bad |= json_object_set(b, "response_format", (json_t *)req->response_format);
    *out = bad ? NULL : json_dumps(b, JSON_COMPACT);
    json_decref(b);
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory building the request");
}

/* A non-streamed answer: {"choices":[{"message":{"content","tool_calls"},"finish_reason"}]}. */
static llmos_err rm_parse_answer(rm_xfer *x, const char *what)
{
    json_t *root = NULL;
    llmos_err err = ljson_parse_text(x->body.data ? x->body.data : "", x->body.len, what, 0, &root);
    if (err)
        return err;
    json_t *ch = json_array_get(json_object_get(root, "choices"), 0);
    if (!json_is_object(ch)) {
        json_decref(root);
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: no choices[0] object in the answer", what);
    }
    rm_usage(x, root);
    const char *fr = ljson_get_string(ch, "finish_reason", NULL);
    if (fr)
        snprintf(x->finish, sizeof x->finish, "%s", fr);
    json_t *msg = x->completions ? ch : json_object_get(ch, "message");
    err = rm_append_str(&x->content, msg, x->completions ? "text" : "content");
    size_t i;
    json_t *tc;
    json_t *calls = json_object_get(msg, "tool_calls");
    if (!err && json_array_size(calls) > 0) {
        x->calls = calloc(json_array_size(calls), sizeof *x->calls);
        if (!x->calls)
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        json_array_foreach(calls, i, tc)
        {
            if (err)
                break;
            rm_call *c = &x->calls[x->n_calls++];
            json_t *fn = json_object_get(tc, "function");
            json_t *args = json_object_get(fn, "arguments");
            if ((err = rm_append_str(&c->id, tc, "id")) ||
                (err = rm_append_str(&c->name, fn, "name")))
                break;
            if (json_is_string(args))
                err = rm_append_str(&c->args, fn, "arguments");
            else if (args) /* some servers send the object itself */
                err = ljson_to_buf(args, JSON_COMPACT, &c->args);
        }
    }
    json_decref(root);
    return err;
}

static char *rm_take(llmos_buf *b)
{
    char *s = buf_detach(b, NULL);
    return s;
}

/* Turn a finished transfer into the response: the end of a stream is checked (a stream
 * without [DONE] or a finish reason was cut), a plain body is parsed. `where` names the
 * endpoint in messages. On failure *resp is left empty. */
static llmos_err rm_finish(rm_xfer *x, const char *where, llm_response *resp)
{
    llmos_err err = LLMOS_OK;
    if (!x->cancelled && !x->sse) {
        char what[2100];
        snprintf(what, sizeof what, "%s: answer", where);
        err = rm_parse_answer(x, what);
    } else if (!x->cancelled) {
        if (x->line.len > 0 && !(err = rm_sse_line(x, x->line.data, x->line.len)))
            buf_clear(&x->line);
        if (!err && x->event.len > 0)
            err = rm_event(x, x->event.data, x->event.len);
        if (!err && !x->done && !x->finish[0])
            err = llmos_fail(LLMOS_ERR_NETWORK,
                             "%s: the stream ended without [DONE] or a finish_reason "
                             "(connection cut?)",
                             where);
        else if (err)
            err = llmos_fail_context(err, "%s: ", where);
    }
    if (err)
        return err;
    resp->prompt_tokens = x->prompt_tokens;
    resp->completion_tokens = x->completion_tokens;
    if (x->cancelled)
        resp->finish_reason = "cancelled";
    else if (strcmp(x->finish, "length") == 0)
        resp->finish_reason = "length";
    else if (strcmp(x->finish, "tool_calls") == 0 || x->n_calls > 0)
        resp->finish_reason = "tool_calls";
    else
        resp->finish_reason = "stop";
    resp->content = rm_take(&x->content);
    if (!resp->content)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err && x->n_calls > 0 && !x->cancelled) {
        resp->tool_calls = calloc(x->n_calls, sizeof *resp->tool_calls);
        if (!resp->tool_calls)
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        for (size_t i = 0; resp->tool_calls && !err && i < x->n_calls; i++) {
            llm_tool_call *c = &resp->tool_calls[resp->n_tool_calls++];
            c->id = rm_take(&x->calls[i].id);
            c->name = rm_take(&x->calls[i].name);
            c->arguments = rm_take(&x->calls[i].args);
            if (!c->id || !c->name || !c->arguments)
                err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            else if (!c->name[0])
                err = llmos_fail(LLMOS_ERR_FORMAT, "%s: tool call %zu has no function name", where,
                                 i);
        }
    }
    if (err)
        llm_response_free(resp);
    return err;
}

static llmos_err rm_chat_one(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                             void *stream_ctx, llm_response *resp);

/* A chat when fewer than max_concurrent are in flight; else wait for one to end. Each chat is
 * a transfer of its own, so they run side by side. */
static llmos_err rm_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                         void *stream_ctx, llm_response *resp)
{
    remote_backend *rb = (remote_backend *)b;
    pthread_mutex_lock(&rb->mu);
    while (rb->in_flight >= rb->p.max_concurrent)
        pthread_cond_wait(&rb->cv, &rb->mu);
    rb->in_flight++;
    pthread_mutex_unlock(&rb->mu);
    llmos_err err = rm_chat_one(b, req, stream, stream_ctx, resp);
    pthread_mutex_lock(&rb->mu);
    rb->in_flight--;
    pthread_cond_signal(&rb->cv);
    pthread_mutex_unlock(&rb->mu);
    return err;
}

static size_t rm_max_concurrent(llm_backend *b)
{
    return ((remote_backend *)b)->p.max_concurrent;
}

static llmos_err rm_chat_one(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                             void *stream_ctx, llm_response *resp)
{
    remote_backend *rb = (remote_backend *)b;
    const char *path = req->prompt ? "/completions" : "/chat/completions";
    char *body = NULL;
    llmos_err err = rm_build_body(rb, req, stream != NULL, &body);
    if (err)
        return err;
    rm_xfer x = {.req = req,
                 .stream = stream,
                 .stream_ctx = stream_ctx,
                 .sse = stream != NULL,
                 .completions = req->prompt != NULL};
    double t0 = llmos_time_now();
    err = rm_perform(rb, path, body, &x);
    free(body);
    if (!err) {
        char where[2100];
        snprintf(where, sizeof where, "remote %s%s", rb->base_url, path);
        err = rm_finish(&x, where, resp);
        resp->gen_seconds = llmos_time_now() - t0;
    }
    rm_xfer_free(&x);
    return err;
}

llmos_err remote_parse_stream(const char *body, size_t len, llm_stream_fn stream, void *stream_ctx,
                              llm_response *resp)
{
    *resp = (llm_response){0};
    rm_xfer x = {.stream = stream, .stream_ctx = stream_ctx, .sse = true, .status = 200};
    size_t taken = rm_on_write((char *)body, 1, len, &x);
    llmos_err err = LLMOS_OK;
    if (x.perr)
        err = llmos_fail_context(x.perr, "stream: ");
    else if (taken == len || x.cancelled)
        err = rm_finish(&x, "stream", resp);
    else
        err = llmos_fail(LLMOS_ERR_NOMEM, "stream: out of memory");
    rm_xfer_free(&x);
    return err;
}

/* ---- embeddings, the rest ------------------------------------------------------------------ */

static llmos_err rm_embed(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim)
{
    remote_backend *rb = (remote_backend *)b;
    json_t *req = json_pack("{ss ss#}", "model", rb->model, "input", text, len);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!body)
        return llmos_fail(LLMOS_ERR_INVALID, "remote embed: the text is not valid UTF-8 (or "
                                             "out of memory)");
    rm_xfer x = {0};
    llmos_err err = rm_perform(rb, "/embeddings", body, &x);
    free(body);
    json_t *root = NULL;
    if (!err)
        err = ljson_parse_text(x.body.data ? x.body.data : "", x.body.len,
                               "remote embeddings answer", 0, &root);
    json_t *emb = ljson_get_array(json_array_get(json_object_get(root, "data"), 0), "embedding");
    size_t n = json_array_size(emb);
    if (!err && n == 0)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "remote %s/embeddings: no data[0].embedding array in the answer",
                         rb->base_url);
    float *v = err ? NULL : malloc(n * sizeof *v);
    if (!err && !v)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    double norm = 0;
    for (size_t i = 0; !err && i < n; i++) {
        json_t *e = json_array_get(emb, i);
        if (!json_is_number(e)) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "remote %s/embeddings: element %zu of the embedding is not a number",
                             rb->base_url, i);
            break;
        }
        v[i] = (float)json_number_value(e);
        norm += (double)v[i] * v[i];
    }
    if (!err) {
        /* L2-normalise, as the interface promises (servers differ in whether they do) */
        double s = norm > 0 ? 1.0 / sqrt(norm) : 0.0;
        for (size_t i = 0; i < n; i++)
            v[i] = (float)(v[i] * s);
        *vec = v;
        *dim = n;
    } else {
        free(v);
    }
    json_decref(root);
    rm_xfer_free(&x);
    return err;
}

static size_t rm_context_size(llm_backend *b)
{
    return ((remote_backend *)b)->p.context_size;
}

static const char *rm_model_name(llm_backend *b)
{
    return ((remote_backend *)b)->model;
}

static void rm_free(llm_backend *b)
{
    remote_backend *rb = (remote_backend *)b;
    if (!rb)
        return;
    free(rb->base_url);
    free(rb->model);
    free(rb->ca_file);
    if (rb->auth_header) {
        llmos_secure_zero(rb->auth_header, strlen(rb->auth_header));
        free(rb->auth_header);
    }
    pthread_cond_destroy(&rb->cv);
    pthread_mutex_destroy(&rb->mu);
    free(rb);
}

static const llm_backend_ops remote_ops = {
    .kind = "remote",
    .chat = rm_chat,
    .embed = rm_embed,
    .count_tokens = NULL, /* the dispatcher's estimate: the server's tokenizer is not here */
    .context_size = rm_context_size,
    .model_name = rm_model_name,
    .free = rm_free,
    .max_concurrent = rm_max_concurrent,
};

remote_backend_params remote_backend_default_params(void)
{
    return (remote_backend_params){
        .timeout_s = 600, .connect_timeout_s = 10, .max_retries = 3, .context_size = 8192,
        .max_concurrent = 4};
}

/* GET /models and check that `model` is among data[].id. A server without the endpoint (404)
 * is accepted with a warning: some OpenAI-compatible servers do not list models. */
static llmos_err rm_check_model(remote_backend *rb)
{
    rm_xfer x = {0};
    llmos_err err = rm_perform(rb, "/models", NULL, &x);
    if (err == LLMOS_ERR_NOT_FOUND && x.status == 404) {
        LOG_WARN(REMOTE_LOG, "%s/models is not served; cannot check that model '%s' exists",
                 rb->base_url, rb->model);
        rm_xfer_free(&x);
        return LLMOS_OK;
    }
    json_t *root = NULL;
    if (!err)
        err = ljson_parse_text(x.body.data ? x.body.data : "", x.body.len, "remote models list", 0,
                               &root);
    json_t *data = json_object_get(root, "data");
    if (!err && !json_is_array(data))
        err = llmos_fail(LLMOS_ERR_FORMAT, "remote %s/models: no \"data\" array in the answer",
                         rb->base_url);
    if (!err) {
        llmos_buf names = {0};
        size_t i;
        json_t *m;
        bool found = false;
        json_array_foreach(data, i, m)
        {
            const char *id = ljson_get_string(m, "id", NULL);
            if (!id)
                continue;
            if (strcmp(id, rb->model) == 0)
                found = true;
            llmos_err pe = LLMOS_OK; /* a shorter list is all that out of memory costs */
            if (i < 20)
                pe = buf_printf(&names, "%s'%s'", names.len ? ", " : "", id);
            else if (i == 20)
                pe = buf_printf(&names, ", ... (%zu in all)", json_array_size(data));
            (void)pe;
        }
        if (!found)
            err = llmos_fail(LLMOS_ERR_NOT_FOUND,
                             "remote %s: the server has no model '%s'; it offers %s", rb->base_url,
                             rb->model, names.len ? names.data : "none");
        buf_free(&names);
    }
    json_decref(root);
    rm_xfer_free(&x);
    return err;
}

llmos_err remote_backend_open(const char *base_url, const char *model,
                              const remote_backend_params *p, llm_backend **out)
{
    *out = NULL;
    if (!base_url || !model || !model[0])
        return llmos_fail(LLMOS_ERR_INVALID, "remote backend: a base URL and a model name are "
                                             "required");
    if (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "remote backend: '%s' is not an http:// or https:// URL (e.g. "
                          "http://127.0.0.1:8080/v1)",
                          base_url);
    pthread_once(&rm_once, rm_global_init);
    if (rm_init_code != CURLE_OK)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libcurl failed to initialise: %s",
                          curl_easy_strerror(rm_init_code));
    remote_backend *rb = calloc(1, sizeof *rb);
    if (!rb)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    rb->base.ops = &remote_ops;
    pthread_mutex_init(&rb->mu, NULL);
    pthread_cond_init(&rb->cv, NULL);
    rb->p = p ? *p : remote_backend_default_params();
    if (rb->p.max_concurrent == 0)
        rb->p.max_concurrent = 4;
    if (rb->p.timeout_s <= 0)
        rb->p.timeout_s = 600;
    if (rb->p.connect_timeout_s <= 0)
        rb->p.connect_timeout_s = 10;
    if (rb->p.context_size == 0)
        rb->p.context_size = 8192;
    if (rb->p.max_retries < 0)
        rb->p.max_retries = 0;
    rb->base_url = strdup(base_url);
    rb->model = strdup(model);
    if (rb->base_url) {
        size_t n = strlen(rb->base_url);
        while (n > 0 && rb->base_url[n - 1] == '/')
            rb->base_url[--n] = 0;
    }
    if (p && p->api_key && p->api_key[0]) {
        size_t n = strlen(p->api_key) + 32;
        rb->auth_header = malloc(n);
        if (rb->auth_header)
            snprintf(rb->auth_header, n, "Authorization: Bearer %s", p->api_key);
    }
    rb->p.api_key = NULL; /* not kept: the header holds it */
    if (p && p->ca_file)
        rb->ca_file = strdup(p->ca_file);
    rb->p.ca_file = NULL;
    if (!rb->base_url || !rb->model || (p && p->api_key && p->api_key[0] && !rb->auth_header) ||
        (p && p->ca_file && !rb->ca_file)) {
        rm_free(&rb->base);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    llmos_err err = rm_check_model(rb);
    if (err) {
        rm_free(&rb->base);
        return err;
    }
    *out = &rb->base;
    return LLMOS_OK;
}
