/*
 * test_server.c - `llmos serve`'s HTTP server, driven by a real HTTP client (libcurl) over
 * loopback, in front of a kernel on a store in memory.
 *
 * The server runs in-process on an ephemeral port. The OpenAI-compatible endpoints are driven
 * with serve_test_backend, a double local to this file that answers with prepared text (one
 * piece per "token", with a configurable pause), can embed, records max_tokens and whether it
 * saw the cancel flag, and counts how many calls run at once; the process API with the shared
 * scripted_test_backend (tests/doubles.h), whose steps call tools. Covered:
 *   - every OpenAI endpoint through the kernel (whole and streamed, tools, usage, errors in the
 *     OpenAI shape, body limit, max_tokens capped, the queue one at a time, a full queue 503,
 *     a client that disconnects cancels, stopping the server mid-stream);
 *   - keys -> principals: each endpoint family's request is in the audit log once, naming the
 *     key's principal; a missing right is 403 and audited; a rate limit is 429 with
 *     Retry-After; a server without keys refuses clients that are not on loopback;
 *   - processes: created, messaged with SSE (events in order), messaged without a stream,
 *     listed, read, killed from another connection while streaming (the stream ends within
 *     200 ms);
 *   - connections: idle connections past the per-address limit, or past the old global limit
 *     from several loopback addresses, do not keep /health from answering; an idle connection
 *     is closed after the timeout, a long generation is not;
 *   - the request parser directly, and the real stories260K model end to end.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <sodium.h>

#include "doubles.h"
#include "llmos/apikeys.h"
#include "llmos/backend.h"
#include "doubles.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/server.h"
#include "testutil.h"

/* ---- serve_test_backend ------------------------------------------------------------------ */

/* Not the shared scripted double: this one embeds, and records what the OpenAI tests check
 * (max_tokens, the prompt, concurrency, the cancel flag). */
typedef struct serve_test_backend {
    llm_backend base;
    const char *const *pieces; /* the answer, one piece per token */
    size_t n_pieces;
    int delay_ms; /* pause before each piece */
    bool can_embed;
    bool tool_call; /* answer with a tool call when tools are offered */
    atomic_int in_flight, max_in_flight, calls;
    atomic_bool saw_cancel;
    int32_t last_max_tokens;
    char last_prompt[128];
} serve_test_backend;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static llmos_err stb_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream, void *ctx,
                          llm_response *resp)
{
    serve_test_backend *t = (serve_test_backend *)b;
    int now = atomic_fetch_add(&t->in_flight, 1) + 1;
    int prev = atomic_load(&t->max_in_flight);
    while (now > prev && !atomic_compare_exchange_weak(&t->max_in_flight, &prev, now))
        ;
    atomic_fetch_add(&t->calls, 1);
    t->last_max_tokens = req->max_tokens;
    snprintf(t->last_prompt, sizeof t->last_prompt, "%s", req->prompt ? req->prompt : "");
    memset(resp, 0, sizeof *resp);
    llmos_buf text = {0};
    const char *finish = "stop";
    size_t n = t->n_pieces;
    if (req->max_tokens > 0 && (size_t)req->max_tokens < n) {
        n = (size_t)req->max_tokens;
        finish = "length";
    }
    size_t i;
    for (i = 0; i < n; i++) {
        if (t->delay_ms)
            sleep_ms(t->delay_ms);
        if (req->cancel && atomic_load(req->cancel)) {
            atomic_store(&t->saw_cancel, true);
            finish = "cancelled";
            break;
        }
        assert_int_equal(buf_puts(&text, t->pieces[i]), LLMOS_OK);
        if (stream && !stream(ctx, t->pieces[i], strlen(t->pieces[i]))) {
            atomic_store(&t->saw_cancel, true);
            finish = "cancelled";
            break;
        }
    }
    if (t->tool_call && req->tools) {
        resp->tool_calls = calloc(1, sizeof *resp->tool_calls);
        resp->n_tool_calls = 1;
        resp->tool_calls[0].id = strdup("call_1");
        resp->tool_calls[0].name = strdup("get_weather");
        resp->tool_calls[0].arguments = strdup("{\"city\":\"Paris\"}");
        finish = "tool_calls";
        buf_clear(&text);
    }
    resp->content = buf_detach(&text, NULL);
    resp->finish_reason = finish;
    resp->prompt_tokens = 7;
    resp->completion_tokens = (uint32_t)i;
    atomic_fetch_sub(&t->in_flight, 1);
    return LLMOS_OK;
}

static llmos_err stb_embed(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim)
{
    serve_test_backend *t = (serve_test_backend *)b;
    (void)text;
    if (!t->can_embed)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "serve_test_backend cannot embed");
    *vec = calloc(4, sizeof **vec);
    (*vec)[len % 4] = 1.0f;
    *dim = 4;
    return LLMOS_OK;
}

static llmos_err stb_count(llm_backend *b, const char *text, size_t len, size_t *n)
{
    (void)b;
    (void)text;
    *n = len / 4 + 1;
    return LLMOS_OK;
}

static size_t stb_ctx(llm_backend *b)
{
    (void)b;
    return 256;
}

static const char *stb_name(llm_backend *b)
{
    (void)b;
    return "scripted";
}

static void stb_free(llm_backend *b)
{
    (void)b;
}

static const llm_backend_ops stb_ops = {.kind = "serve_test_backend",
                                        .chat = stb_chat,
                                        .embed = stb_embed,
                                        .count_tokens = stb_count,
                                        .context_size = stb_ctx,
                                        .model_name = stb_name,
                                        .free = stb_free};

static const char *const hello_pieces[] = {"Hello", ",", " world", "!"};

static void stb_init(serve_test_backend *t)
{
    memset(t, 0, sizeof *t);
    t->base.ops = &stb_ops;
    t->pieces = hello_pieces;
    t->n_pieces = 4;
    t->can_embed = true;
}

/* ---- an HTTP client ---------------------------------------------------------------------- */

typedef struct http_reply {
    long status;
    llmos_buf body;
    json_t *json;       /* parsed body when it is JSON */
    size_t abort_after; /* stop reading (disconnect) after this many bytes; 0 = never */
    char retry_after[32];
    /* streams: when "event: end" arrived, and a flag raised at the first "event: text" */
    double end_at;
    atomic_bool *saw_text;
} http_reply;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    http_reply *r = ctx;
    assert_int_equal(buf_append(&r->body, data, size * n), LLMOS_OK);
    if (r->saw_text && strstr(r->body.data, "event: text"))
        atomic_store(r->saw_text, true);
    if (!r->end_at && strstr(r->body.data, "event: end"))
        r->end_at = llmos_time_now();
    if (r->abort_after && r->body.len >= r->abort_after)
        return 0; /* makes curl close the connection */
    return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    http_reply *r = ctx;
    size_t len = size * n;
    if (len > 13 && strncasecmp(data, "Retry-After:", 12) == 0)
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)strcspn(data + 13, "\r\n"),
                 data + 13);
    return len;
}

/* method + path on the server at port; body may be NULL; key NULL = no Authorization. */
static void http(uint16_t port, const char *method, const char *path, const char *body,
                 size_t body_len, const char *key, http_reply *r)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[256];
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode rc = curl_easy_perform(c);
    if (!r->abort_after)
        assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body.len && r->body.data[0] == '{')
        r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
}

static void reply_free(http_reply *r)
{
    buf_free(&r->body);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

static void post(uint16_t port, const char *path, const char *body, const char *key, http_reply *r)
{
    http(port, "POST", path, body, strlen(body), key, r);
}

static void get(uint16_t port, const char *path, const char *key, http_reply *r)
{
    http(port, "GET", path, NULL, 0, key, r);
}

/* The reply is an OpenAI error with this status, param and code; its message contains
 * `needle`. */
static void assert_error(const http_reply *r, long status, const char *param, const char *code,
                         const char *needle)
{
    if (r->status != status)
        fprintf(stderr, "got %ld: %s\n", r->status, r->body.data ? r->body.data : "");
    assert_int_equal(r->status, status);
    assert_non_null(r->json);
    json_t *e = ljson_get_object(r->json, "error");
    assert_non_null(e);
    const char *msg = ljson_get_string(e, "message", NULL);
    assert_non_null(msg);
    if (!strstr(msg, needle))
        fprintf(stderr, "message '%s' lacks '%s'\n", msg, needle);
    assert_non_null(strstr(msg, needle));
    assert_non_null(ljson_get_string(e, "type", NULL));
    json_t *p = json_object_get(e, "param");
    assert_non_null(p);
    if (param)
        assert_string_equal(json_string_value(p), param);
    else
        assert_true(json_is_null(p));
    if (code)
        assert_string_equal(ljson_get_string(e, "code", ""), code);
}

/* ---- fixture: a kernel on a store in memory, a server in front ---------------------------- */

typedef struct fixture {
    serve_test_backend backend;
    llm_backend *scripted; /* the shared double, when the test gave steps */
    memory *mem;
    kernel *k;
    apikeys *keys;
    ksession *auditor; /* reads the audit log for the assertions */
    http_server *srv;
    uint16_t port;
} fixture;

typedef struct fixture_opts {
    const char *key;       /* one key (principal "api", chat and embed) */
    const char *keys_json; /* or a keys file's text */
    size_t max_queue;
    int delay_ms;
    const char *const *steps; /* a scripted_test_backend instead of serve_test_backend */
    size_t n_steps;
    const http_server_params *params;
    bool guard; /* the output guard on (the tests of the transport count pieces: off) */
} fixture_opts;

static fixture *start_with(const fixture_opts *o)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    stb_init(&f->backend);
    f->backend.delay_ms = o->delay_ms;
    llm_backend *model = &f->backend.base;
    if (o->steps) {
        assert_int_equal(scripted_test_backend_new(o->steps, o->n_steps, true, &f->scripted),
                         LLMOS_OK);
        model = f->scripted;
    }
    assert_int_equal(memory_open_ephemeral(&f->mem), LLMOS_OK);
    kernel_config kc = {.st = memory_store(f->mem),
                        .privileged = model,
                        .max_queue = o->max_queue,
                        .no_guard = !o->guard};
    assert_int_equal(kernel_new(&kc, &f->k), LLMOS_OK);
    ksession_params ap = {.principal = "test-auditor", .device = "test", .rights = KRIGHT_AUDIT};
    assert_int_equal(ksession_open(f->k, &ap, &f->auditor), LLMOS_OK);
    if (o->key)
        assert_int_equal(apikeys_single(o->key, "api", KRIGHT_CHAT | KRIGHT_EMBED, &f->keys),
                         LLMOS_OK);
    if (o->keys_json) {
        llmos_err err = apikeys_parse(o->keys_json, strlen(o->keys_json), "test keys", &f->keys);
        if (err)
            fprintf(stderr, "%s\n", llmos_errmsg());
        assert_int_equal(err, LLMOS_OK);
    }
    http_server_params p = o->params ? *o->params : http_server_default_params();
    p.port = 0;
    p.keys = f->keys;
    assert_int_equal(http_server_start(f->k, &p, &f->srv), LLMOS_OK);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    return f;
}

static fixture *start(const char *key, size_t max_queue, int delay_ms)
{
    fixture_opts o = {.key = key, .max_queue = max_queue, .delay_ms = delay_ms};
    return start_with(&o);
}

static void stop(fixture *f)
{
    http_server_stop(f->srv);
    ksession_close(f->auditor);
    kernel_free(f->k);
    memory_close(f->mem);
    llm_backend_free(f->scripted);
    apikeys_free(f->keys);
    free(f);
}

/* An entry of a keys file for `key`, with `rest` (more members, or "") after the hash. */
static void key_entry(llmos_buf *out, const char *principal, const char *key, const char *rest)
{
    unsigned char h[APIKEY_HASH_BYTES];
    char hex[2 * APIKEY_HASH_BYTES + 1];
    apikeys_hash(key, strlen(key), h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    bool first = out->len && out->data[out->len - 1] == '[';
    assert_int_equal(buf_printf(out, "%s{\"principal\":\"%s\",\"key_hash\":\"blake2b-256:%s\"%s%s}",
                                first ? "" : ",", principal, hex, *rest ? "," : "", rest),
                     LLMOS_OK);
}

/* The audit records since seq `from`: how many of `kind` name `principal` and, when field is
 * set, have that field equal to `value` (a string). */
typedef struct audit_query {
    const char *kind, *principal, *field, *value;
    int count;
    int64_t last;
} audit_query;

static bool audit_visit(const store_audit_record *rec, void *ctx)
{
    audit_query *q = ctx;
    q->last = rec->seq;
    if (!q->kind || strcmp(rec->kind, q->kind) != 0)
        return true;
    json_t *p = json_loads(rec->payload, 0, NULL);
    bool match = p && strcmp(ljson_get_string(p, "principal", ""), q->principal) == 0 &&
                 (!q->field || strcmp(ljson_get_string(p, q->field, ""), q->value) == 0);
    json_decref(p);
    q->count += match;
    return true;
}

static int audit_count(fixture *f, int64_t from, const char *kind, const char *principal,
                       const char *field, const char *value)
{
    audit_query q = {kind, principal, field, value, 0, 0};
    assert_int_equal(ksession_audit(f->auditor, from, audit_visit, &q), LLMOS_OK);
    return q.count;
}

/* The seq the next audit record will get. */
static int64_t audit_next(fixture *f)
{
    audit_query q = {0};
    assert_int_equal(ksession_audit(f->auditor, 1, audit_visit, &q), LLMOS_OK);
    return q.last + 1;
}

static const char *chat_body =
    "{\"model\":\"scripted\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* A normal chat works: used after error cases to show the server still serves. */
static void assert_chat_works(uint16_t port, const char *key)
{
    http_reply r = {0};
    post(port, "/v1/chat/completions", chat_body, key, &r);
    assert_int_equal(r.status, 200);
    json_t *msg =
        ljson_get_object(json_array_get(ljson_get_array(r.json, "choices"), 0), "message");
    assert_string_equal(ljson_get_string(msg, "content", ""), "Hello, world!");
    reply_free(&r);
}

/* ---- the OpenAI-compatible endpoints ------------------------------------------------------ */

static void test_health_and_models(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    get(f->port, "/health", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "status", ""), "ok");
    assert_string_equal(ljson_get_string(r.json, "model", ""), "scripted");
    assert_false(json_is_true(json_object_get(r.json, "busy")));
    assert_int_equal(ljson_get_int(r.json, "queued", -1), 0);
    assert_int_equal(ljson_get_int(r.json, "running", -1), 0);
    assert_int_equal(ljson_get_int(r.json, "slots", -1), 1);
    reply_free(&r);
    /* the Prometheus text: every sample has its HELP and TYPE lines */
    get(f->port, "/metrics", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(r.body.data);
    const char *want[] = {"# TYPE llmos_sched_slots gauge\nllmos_sched_slots 1\n",
                          "\nllmos_sched_waiting 0\n",
                          "# TYPE llmos_tokens_total counter\n",
                          "\nllmos_http_refused_total{code=\"429\"} 0\n",
                          "# HELP llmos_tokens_per_second "};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(r.body.data, want[i]))
            fail_msg("/metrics lacks \"%s\":\n%s", want[i], r.body.data);
    reply_free(&r);
    get(f->port, "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "object", ""), "list");
    json_t *m = json_array_get(ljson_get_array(r.json, "data"), 0);
    assert_string_equal(ljson_get_string(m, "id", ""), "scripted");
    assert_string_equal(ljson_get_string(m, "object", ""), "model");
    reply_free(&r);
    get(f->port, "/v1/models/scripted", NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    get(f->port, "/v1/models/gpt-4", NULL, &r);
    assert_error(&r, 404, "model", "model_not_found", "gpt-4");
    reply_free(&r);
    stop(f);
}

static void test_chat(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    post(f->port, "/v1/chat/completions", chat_body, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "object", ""), "chat.completion");
    assert_string_equal(ljson_get_string(r.json, "model", ""), "scripted");
    assert_non_null(strstr(ljson_get_string(r.json, "id", ""), "chatcmpl-"));
    json_t *ch = json_array_get(ljson_get_array(r.json, "choices"), 0);
    assert_string_equal(ljson_get_string(ch, "finish_reason", ""), "stop");
    json_t *msg = ljson_get_object(ch, "message");
    assert_string_equal(ljson_get_string(msg, "role", ""), "assistant");
    assert_string_equal(ljson_get_string(msg, "content", ""), "Hello, world!");
    json_t *u = ljson_get_object(r.json, "usage");
    assert_int_equal(ljson_get_int(u, "prompt_tokens", 0), 7);
    assert_int_equal(ljson_get_int(u, "completion_tokens", 0), 4);
    assert_int_equal(ljson_get_int(u, "total_tokens", 0), 11);
    assert_int_equal(
        ljson_get_int(ljson_get_object(u, "prompt_tokens_details"), "cached_tokens", -1), 0);
    reply_free(&r);

    /* max_tokens reaches the backend; finish_reason length */
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":2}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(f->backend.last_max_tokens, 2);
    ch = json_array_get(ljson_get_array(r.json, "choices"), 0);
    assert_string_equal(ljson_get_string(ch, "finish_reason", ""), "length");
    assert_string_equal(ljson_get_string(ljson_get_object(ch, "message"), "content", ""), "Hello,");
    reply_free(&r);

    /* max_completion_tokens above the context is capped to it */
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
         "\"max_completion_tokens\":100000}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(f->backend.last_max_tokens, 256);
    reply_free(&r);

    /* client tools come back to the client as tool_calls, content null: never run here */
    f->backend.tool_call = true;
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"tools\":[{\"type\":"
         "\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
         "\"object\"}}}],\"tool_choice\":\"required\"}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    ch = json_array_get(ljson_get_array(r.json, "choices"), 0);
    assert_string_equal(ljson_get_string(ch, "finish_reason", ""), "tool_calls");
    msg = ljson_get_object(ch, "message");
    assert_true(json_is_null(json_object_get(msg, "content")));
    json_t *call = json_array_get(ljson_get_array(msg, "tool_calls"), 0);
    assert_string_equal(ljson_get_string(call, "type", ""), "function");
    assert_string_equal(ljson_get_string(ljson_get_object(call, "function"), "name", ""),
                        "get_weather");
    reply_free(&r);
    /* the kernel ran no tool: its audit log has no system call */
    assert_int_equal(audit_count(f, 1, "syscall", "local", NULL, NULL), 0);
    stop(f);
}

/* Split an SSE body into its data payloads (and event names, when names is not NULL);
 * returns how many, checks the framing. */
static size_t sse_events(const char *body, char events[][1024], char names[][32], size_t max)
{
    size_t n = 0;
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        assert_true(n < max);
        if (names) {
            assert_true(strncmp(p, "event: ", 7) == 0);
            size_t nl = strcspn(p + 7, "\n");
            assert_true(nl < 32);
            memcpy(names[n], p + 7, nl);
            names[n][nl] = 0;
            p += 7 + nl + 1;
        }
        assert_true(strncmp(p, "data: ", 6) == 0);
        size_t len = (size_t)(end - p - 6);
        assert_true(len < 1024);
        memcpy(events[n], p + 6, len);
        events[n][len] = 0;
        n++;
        p = end + 2;
    }
    return n;
}

/* The output guard is on in the server: a key in an answer is redacted in a whole answer and
 * in a stream (cut in pieces through the key), and the decision is audited without the key. */
static bool count_guard(const store_audit_record *rec, void *ctx)
{
    int *n = ctx;
    assert_null(strstr(rec->payload, "AKIAIOSFODNN7EXAMPLE"));
    *n += strcmp(rec->kind, "guard") == 0;
    return true;
}

static void test_guarded_chat(void **state)
{
    (void)state;
    static const char *const steps[] = {
        "{\"content\": \"Your key is AKIAIOSFODNN7EXAMPLE, keep it safe.\", \"pieces\": 9}"};
    fixture_opts o = {.steps = steps, .n_steps = 1, .guard = true};
    fixture *f = start_with(&o);
    http_reply r = {0};
    post(f->port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *msg =
        ljson_get_object(json_array_get(ljson_get_array(r.json, "choices"), 0), "message");
    assert_string_equal(ljson_get_string(msg, "content", ""),
                        "Your key is [REDACTED:api_key], keep it safe.");
    reply_free(&r);
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}", NULL, &r);
    if (r.status != 200)
        fail_msg("%d %s", r.status, r.body.data);
    assert_null(strstr(r.body.data, "AKIA"));
    assert_non_null(strstr(r.body.data, "[REDACTED:api_key]"));
    reply_free(&r);
    int guards = 0;
    assert_int_equal(ksession_audit(f->auditor, 1, count_guard, &guards), LLMOS_OK);
    assert_true(guards >= 2);
    stop(f);
}

static void test_chat_stream(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
         "\"stream_options\":{\"include_usage\":true}}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    static char ev[32][1024];
    size_t n = sse_events(r.body.data, ev, NULL, 32);
    /* 4 text chunks, the finish chunk, the usage chunk, [DONE] */
    assert_int_equal(n, 7);
    assert_string_equal(ev[n - 1], "[DONE]");
    llmos_buf text = {0};
    for (size_t i = 0; i < 4; i++) {
        json_t *c = json_loads(ev[i], 0, NULL);
        assert_non_null(c);
        assert_string_equal(ljson_get_string(c, "object", ""), "chat.completion.chunk");
        json_t *ch = json_array_get(ljson_get_array(c, "choices"), 0);
        assert_true(json_is_null(json_object_get(ch, "finish_reason")));
        json_t *d = ljson_get_object(ch, "delta");
        if (i == 0)
            assert_string_equal(ljson_get_string(d, "role", ""), "assistant");
        assert_int_equal(buf_puts(&text, ljson_get_string(d, "content", "")), LLMOS_OK);
        json_decref(c);
    }
    assert_string_equal(text.data, "Hello, world!");
    buf_free(&text);
    json_t *fin = json_loads(ev[4], 0, NULL);
    assert_string_equal(
        ljson_get_string(json_array_get(ljson_get_array(fin, "choices"), 0), "finish_reason", ""),
        "stop");
    json_decref(fin);
    json_t *usage = json_loads(ev[5], 0, NULL);
    assert_int_equal(json_array_size(ljson_get_array(usage, "choices")), 0);
    assert_int_equal(ljson_get_int(ljson_get_object(usage, "usage"), "completion_tokens", 0), 4);
    json_decref(usage);
    reply_free(&r);
    assert_chat_works(f->port, NULL);
    stop(f);
}

static void test_completions(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    post(f->port, "/v1/completions", "{\"prompt\":\"Once upon\",\"max_tokens\":3}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(f->backend.last_prompt, "Once upon");
    assert_string_equal(ljson_get_string(r.json, "object", ""), "text_completion");
    json_t *ch = json_array_get(ljson_get_array(r.json, "choices"), 0);
    assert_string_equal(ljson_get_string(ch, "text", ""), "Hello, world");
    assert_string_equal(ljson_get_string(ch, "finish_reason", ""), "length");
    reply_free(&r);
    post(f->port, "/v1/completions", "{\"max_tokens\":3}", NULL, &r);
    assert_error(&r, 400, "prompt", NULL, "'prompt' is required");
    reply_free(&r);
    stop(f);
}

static void test_embeddings(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    post(f->port, "/v1/embeddings", "{\"input\":[\"a\",\"bb\"]}", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *data = ljson_get_array(r.json, "data");
    assert_int_equal(json_array_size(data), 2);
    json_t *e1 = json_array_get(data, 1);
    assert_int_equal(ljson_get_int(e1, "index", -1), 1);
    json_t *v = ljson_get_array(e1, "embedding");
    assert_int_equal(json_array_size(v), 4);
    assert_true(json_number_value(json_array_get(v, 2)) == 1.0);
    reply_free(&r);
    post(f->port, "/v1/embeddings", "{\"input\":[1,2,3]}", NULL, &r);
    assert_error(&r, 400, "input", NULL, "token-id inputs are not supported");
    reply_free(&r);
    f->backend.can_embed = false;
    post(f->port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, &r);
    assert_error(&r, 400, NULL, "unsupported", "cannot embed");
    reply_free(&r);
    stop(f);
}

static void test_auth(void **state)
{
    (void)state;
    fixture *f = start("s3cret-key", 0, 0);
    http_reply r = {0};
    post(f->port, "/v1/chat/completions", chat_body, NULL, &r);
    assert_error(&r, 401, NULL, "invalid_api_key", "Authorization: Bearer");
    reply_free(&r);
    post(f->port, "/v1/chat/completions", chat_body, "s3cret-kez", &r);
    assert_error(&r, 401, NULL, "invalid_api_key", "API key");
    reply_free(&r);
    post(f->port, "/v1/chat/completions", chat_body, "s3cret-key-longer", &r);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    get(f->port, "/v1/models", NULL, &r);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    get(f->port, "/v1/nothing", NULL, &r); /* routes are not probed without a key */
    assert_int_equal(r.status, 401);
    reply_free(&r);
    get(f->port, "/health", NULL, &r);
    assert_int_equal(r.status, 200); /* health needs no key */
    reply_free(&r);
    assert_int_equal(atomic_load(&f->backend.calls), 0);
    assert_int_equal(http_server_get_stats(f->srv).unauthorized, 5);
    assert_chat_works(f->port, "s3cret-key");
    /* the key's principal is "api", with chat and embed only */
    get(f->port, "/v1/processes", "s3cret-key", &r);
    assert_error(&r, 403, NULL, "permission_denied", "'api'");
    reply_free(&r);
    stop(f);
}

static void test_malformed(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    const char *chat = "/v1/chat/completions";
    post(f->port, chat, "{\"messages\": [", NULL, &r);
    assert_error(&r, 400, NULL, "invalid_json", "not valid JSON");
    reply_free(&r);
    post(f->port, chat, "[1,2]", NULL, &r);
    assert_error(&r, 400, NULL, NULL, "must be a JSON object");
    reply_free(&r);
    post(f->port, chat, "{\"model\":\"scripted\"}", NULL, &r);
    assert_error(&r, 400, "messages", NULL, "'messages' is required");
    reply_free(&r);
    post(f->port, chat, "{\"messages\":\"hi\"}", NULL, &r);
    assert_error(&r, 400, "messages", NULL, "must be an array, found a string");
    reply_free(&r);
    post(f->port, chat, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", NULL, &r);
    assert_error(&r, 400, "messages[0].role", NULL, "wizard");
    reply_free(&r);
    post(f->port, chat,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", NULL,
         &r);
    assert_error(&r, 400, "temperature", NULL, "must be a number, found a string");
    reply_free(&r);
    post(f->port, chat, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":3}", NULL,
         &r);
    assert_error(&r, 400, "top_p", NULL, "between 0 and 1");
    reply_free(&r);
    post(f->port, chat, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}",
         NULL, &r);
    assert_error(&r, 400, "max_tokens", NULL, "at least 1");
    reply_free(&r);
    post(f->port, chat, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", NULL,
         &r);
    assert_error(&r, 400, "stop", NULL, "'stop[0]' must be a string");
    reply_free(&r);
    post(f->port, chat,
         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":"
         "{\"type\":\"yaml\"}}",
         NULL, &r);
    assert_error(&r, 400, "response_format", NULL, "yaml");
    reply_free(&r);
    post(f->port, chat,
         "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL, &r);
    assert_error(&r, 404, "model", "model_not_found", "'gpt-4o' does not exist");
    reply_free(&r);
    get(f->port, "/v1/nothing", NULL, &r);
    assert_error(&r, 404, NULL, "unknown_url", "/v1/nothing");
    reply_free(&r);
    get(f->port, chat, NULL, &r);
    assert_error(&r, 405, NULL, "method_not_allowed", "needs POST");
    reply_free(&r);
    http(f->port, "DELETE", "/v1/models", NULL, 0, NULL, &r);
    assert_error(&r, 405, NULL, "method_not_allowed", "needs GET");
    reply_free(&r);
    http(f->port, "PUT", "/v1/processes", NULL, 0, NULL, &r);
    assert_error(&r, 405, NULL, "method_not_allowed", "needs POST, GET");
    reply_free(&r);

    /* a body over the 1 MiB limit: 413, and nothing reached the backend */
    size_t big = (1u << 20) + 100;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"messages\":\"", 13);
    huge[big - 2] = '"';
    huge[big - 1] = '}';
    huge[big] = 0;
    http(f->port, "POST", chat, huge, big, NULL, &r);
    assert_error(&r, 413, NULL, "request_too_large", "limit");
    reply_free(&r);
    free(huge);

    assert_int_equal(atomic_load(&f->backend.calls), 0);
    /* a malformed request reached no session function, so the server recorded it */
    assert_true(audit_count(f, 1, "request", "local", "outcome", "400 invalid_json") == 1);
    assert_chat_works(f->port, NULL);
    stop(f);
}

typedef struct client_arg {
    uint16_t port;
    long status;
    char content[64];
    char code[32];
} client_arg;

static void *client_thread(void *p)
{
    client_arg *a = p;
    http_reply r = {0};
    post(a->port, "/v1/chat/completions", chat_body, NULL, &r);
    a->status = r.status;
    json_t *msg =
        ljson_get_object(json_array_get(ljson_get_array(r.json, "choices"), 0), "message");
    snprintf(a->content, sizeof a->content, "%s", ljson_get_string(msg, "content", ""));
    snprintf(a->code, sizeof a->code, "%s",
             ljson_get_string(ljson_get_object(r.json, "error"), "code", ""));
    reply_free(&r);
    return NULL;
}

/* The kernel's scheduler gives the model to one request at a time. */
static void test_concurrent_requests_queue(void **state)
{
    (void)state;
    fixture *f = start(NULL, 16, 5); /* 4 pieces x 5 ms per request */
    enum { N = 8 };
    pthread_t th[N];
    client_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (client_arg){.port = f->port};
        assert_int_equal(pthread_create(&th[i], NULL, client_thread, &args[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].status, 200);
        assert_string_equal(args[i].content, "Hello, world!");
    }
    assert_int_equal(atomic_load(&f->backend.calls), N);
    assert_int_equal(http_server_get_stats(f->srv).generations, N);
    assert_int_equal(atomic_load(&f->backend.max_in_flight), 1); /* one at a time */
    ksched_stats st = kernel_sched_stats(f->k);
    assert_int_equal(st.waiting, 0);
    assert_true(st.served >= N);
    stop(f);
}

static void test_full_queue_is_503(void **state)
{
    (void)state;
    fixture *f = start(NULL, 1, 50); /* one may wait; each request takes 200 ms */
    enum { N = 5 };
    pthread_t th[N];
    client_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (client_arg){.port = f->port};
        assert_int_equal(pthread_create(&th[i], NULL, client_thread, &args[i]), 0);
        sleep_ms(20);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (args[i].status == 200) {
            ok++;
        } else {
            assert_int_equal(args[i].status, 503);
            assert_string_equal(args[i].code, "server_busy");
            busy++;
        }
    }
    assert_true(ok >= 2); /* the one running and the one waiting */
    assert_true(busy >= 1);
    assert_true(http_server_get_stats(f->srv).rejected_busy >= 1);
    assert_true(kernel_sched_stats(f->k).rejected >= 1);
    assert_chat_works(f->port, NULL);
    stop(f);
}

static void test_disconnect_cancels(void **state)
{
    (void)state;
    static const char *many[200];
    for (size_t i = 0; i < 200; i++)
        many[i] = "tok ";
    fixture *f = start(NULL, 0, 10); /* 200 pieces x 10 ms = 2 s if never cancelled */
    f->backend.pieces = many;
    f->backend.n_pieces = 200;
    http_reply r = {.abort_after = 300}; /* hang up after the first chunk or two */
    double t0 = llmos_time_now();
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}", NULL, &r);
    reply_free(&r);
    for (int i = 0; i < 200 && !atomic_load(&f->backend.saw_cancel); i++)
        sleep_ms(10);
    assert_true(atomic_load(&f->backend.saw_cancel));
    assert_true(llmos_time_now() - t0 < 1.8);
    assert_true(http_server_get_stats(f->srv).cancelled >= 1);

    /* the same for a non-streamed request whose client times out */
    atomic_store(&f->backend.saw_cancel, false);
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/chat/completions", (unsigned)f->port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, chat_body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 200L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    http_reply r2 = {0};
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r2);
    assert_int_equal(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(c);
    reply_free(&r2);
    for (int i = 0; i < 200 && !atomic_load(&f->backend.saw_cancel); i++)
        sleep_ms(10);
    assert_true(atomic_load(&f->backend.saw_cancel));

    f->backend.pieces = hello_pieces;
    f->backend.n_pieces = 4;
    assert_chat_works(f->port, NULL);
    stop(f);
}

typedef struct stream_arg {
    uint16_t port;
    size_t got;
} stream_arg;

static void *stream_thread(void *p)
{
    stream_arg *a = p;
    http_reply r = {.abort_after = (size_t)1 << 30}; /* tolerate the server going away */
    post(a->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}", NULL, &r);
    a->got = r.body.len;
    reply_free(&r);
    return NULL;
}

/* Stopping the server while a stream runs and another request waits cancels both and
 * returns promptly. */
static void test_stop_during_stream(void **state)
{
    (void)state;
    static const char *many[500];
    for (size_t i = 0; i < 500; i++)
        many[i] = "tok ";
    fixture *f = start(NULL, 0, 10); /* 5 s per request if never cancelled */
    f->backend.pieces = many;
    f->backend.n_pieces = 500;
    stream_arg a = {.port = f->port}, b = {.port = f->port};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, stream_thread, &a), 0);
    for (int i = 0; i < 200 && atomic_load(&f->backend.calls) == 0; i++)
        sleep_ms(5);
    assert_int_equal(pthread_create(&tb, NULL, stream_thread, &b), 0);
    for (int i = 0; i < 200 && kernel_sched_stats(f->k).waiting == 0; i++)
        sleep_ms(5);
    assert_int_equal(kernel_sched_stats(f->k).waiting, 1);
    sleep_ms(100); /* the first stream has sent some pieces */
    double t0 = llmos_time_now();
    http_server_stop(f->srv);
    f->srv = NULL;
    assert_true(llmos_time_now() - t0 < 2.0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(atomic_load(&f->backend.saw_cancel));
    assert_int_equal(atomic_load(&f->backend.calls), 1); /* the queued one never ran */
    assert_true(a.got > 0);
    stop(f);
}

static void test_parser(void **state)
{
    (void)state;
    openai_request rq;
    const char *b =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},{\"role\":"
        "\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],\"stop\":[\"a\",\"bb\"],"
        "\"seed\":42,\"temperature\":0.5,\"top_p\":0.9,\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"f\"}}],\"tool_choice\":{\"type\":\"function\",\"function\":"
        "{\"name\":\"f\"}},\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
        "{\"name\":\"x\",\"schema\":{\"type\":\"object\"}}},\"unknown_field\":1}";
    assert_int_equal(openai_request_parse(OPENAI_CHAT, b, strlen(b), 512, &rq), LLMOS_OK);
    assert_string_equal(rq.model, "m");
    assert_int_equal(rq.req.n_stop, 2);
    assert_string_equal(rq.req.stop[1], "bb");
    assert_true(rq.has_seed);
    assert_int_equal(rq.req.sampling.seed, 42);
    assert_true(rq.req.sampling.temperature == 0.5f);
    assert_true(rq.req.sampling.top_p == 0.9f);
    assert_string_equal(rq.req.tool_choice, "f");
    assert_non_null(rq.req.response_format);
    assert_int_equal(json_array_size(rq.req.messages), 2);
    assert_false(rq.stream);
    openai_request_free(&rq);

    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"g\","
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}";
    assert_int_equal(openai_request_parse(OPENAI_CHAT, b, strlen(b), 512, &rq), LLMOS_ERR_INVALID);
    assert_string_equal(rq.error_param, "tool_choice");
    assert_non_null(strstr(llmos_errmsg(), "'g'"));
    openai_request_free(&rq); /* nothing to free, but safe */

    b = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}";
    assert_int_equal(openai_request_parse(OPENAI_CHAT, b, strlen(b), 512, &rq),
                     LLMOS_ERR_UNSUPPORTED);
    assert_string_equal(rq.error_param, "n");

    b = "{\"prompt\":[\"only\"],\"stop\":\"\\n\"}";
    assert_int_equal(openai_request_parse(OPENAI_COMPLETION, b, strlen(b), 512, &rq), LLMOS_OK);
    assert_string_equal(rq.req.prompt, "only");
    assert_int_equal(rq.req.max_tokens, 16); /* the completions default */
    assert_int_equal(rq.req.n_stop, 1);
    openai_request_free(&rq);

    b = "{\"input\":\"a\"} x";
    assert_int_equal(openai_request_parse(OPENAI_EMBEDDING, b, strlen(b), 512, &rq),
                     LLMOS_ERR_FORMAT);
    assert_string_equal(rq.error_param, "");
}

/* ---- keys, principals, rights, limits, audit --------------------------------------------- */

/* Three principals: alice may chat and embed, bob may run processes, carol reads the audit
 * log and memory. */
static char *three_keys(void)
{
    llmos_buf b = {0};
    assert_int_equal(buf_puts(&b, "{\"version\":1,\"keys\":["), LLMOS_OK);
    key_entry(&b, "alice", "key-alice-0123456789", "\"rights\":[\"chat\",\"embed\"]");
    key_entry(&b, "bob", "key-bob-0123456789",
              "\"rights\":[\"process\"],\"caps\":[\"compute\",\"message\"]");
    key_entry(&b, "carol", "key-carol-0123456789", "\"rights\":[\"audit\",\"memory\"]");
    assert_int_equal(buf_puts(&b, "]}"), LLMOS_OK);
    return buf_detach(&b, NULL);
}

/* Each endpoint family: the request is answered for the key's principal and is in the audit
 * log exactly once, under that principal. */
static void test_keys_principals_audited(void **state)
{
    (void)state;
    char *keys = three_keys();
    fixture_opts o = {.keys_json = keys};
    fixture *f = start_with(&o);
    free(keys);
    http_reply r = {0};
    const char *alice = "key-alice-0123456789", *bob = "key-bob-0123456789",
               *carol = "key-carol-0123456789";

    int64_t from = audit_next(f);
    post(f->port, "/v1/chat/completions", chat_body, alice, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "login", "alice", "device", "http"), 1);
    assert_int_equal(audit_count(f, from, "chat", "alice", "status", "ok"), 1);
    assert_int_equal(audit_count(f, from, "request", "alice", NULL, NULL), 0); /* not twice */

    from = audit_next(f);
    post(f->port, "/v1/completions", "{\"prompt\":\"Once\"}", alice, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "chat", "alice", NULL, NULL), 1);

    from = audit_next(f);
    post(f->port, "/v1/embeddings", "{\"input\":\"abc\"}", alice, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "embed", "alice", "status", "ok"), 1);
    assert_int_equal(audit_count(f, from, "request", "alice", NULL, NULL), 0);

    from = audit_next(f);
    get(f->port, "/v1/models", alice, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "request", "alice", "request", "GET /v1/models"), 1);
    get(f->port, "/v1/nope", alice, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "request", "alice", "outcome", "404 unknown_url"), 1);

    from = audit_next(f);
    post(f->port, "/v1/processes", "", bob, &r);
    assert_int_equal(r.status, 201);
    int64_t pid = ljson_get_int(r.json, "pid", 0);
    assert_true(pid > 0);
    assert_string_equal(ljson_get_string(r.json, "principal", ""), "bob");
    assert_string_equal(ljson_get_string(r.json, "caps", ""), "compute,message");
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "process", "bob", "event", "spawn"), 1);
    assert_int_equal(audit_count(f, from, "request", "bob", NULL, NULL), 0);
    from = audit_next(f);
    get(f->port, "/v1/processes", bob, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "data")), 1);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "request", "bob", "request", "GET /v1/processes"), 1);

    from = audit_next(f);
    get(f->port, "/v1/audit?from=1&limit=3", carol, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "records")), 3);
    assert_int_equal(ljson_get_int(r.json, "next", 0), 4);
    assert_int_equal(ljson_get_int(json_array_get(ljson_get_array(r.json, "records"), 0), "seq", 0),
                     1);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "request", "carol", "request", "GET /v1/audit"), 1);
    get(f->port, "/v1/audit/verify", carol, &r);
    assert_int_equal(r.status, 200);
    assert_true(json_is_true(json_object_get(r.json, "ok")));
    assert_true(ljson_get_int(r.json, "records", 0) > 5);
    reply_free(&r);

    from = audit_next(f);
    post(f->port, "/v1/memory", "{\"text\":\"the cat sat on the mat\"}", carol, &r);
    assert_int_equal(r.status, 201);
    assert_true(ljson_get_int(r.json, "id", 0) > 0);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "memory", "carol", "event", "add"), 1);
    assert_int_equal(audit_count(f, from, "request", "carol", NULL, NULL), 0);
    from = audit_next(f);
    get(f->port, "/v1/memory/search?q=cat+mat&k=2", carol, &r);
    assert_int_equal(r.status, 200);
    json_t *hit = json_array_get(ljson_get_array(r.json, "results"), 0);
    assert_string_equal(ljson_get_string(hit, "text", ""), "the cat sat on the mat");
    reply_free(&r);
    /* a page past the results is empty; a page size over the limit names it */
    get(f->port, "/v1/memory/search?q=cat+mat&k=2&page=1", carol, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "results")), 0);
    reply_free(&r);
    get(f->port, "/v1/memory/search?q=cat&k=51", carol, &r);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    get(f->port, "/v1/memory", carol, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(ljson_get_int(r.json, "archival", 0), 1);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "request", "carol", NULL, NULL), 4);

    /* one session per principal, opened once */
    assert_int_equal(audit_count(f, 1, "login", "alice", NULL, NULL), 1);
    assert_int_equal(audit_count(f, 1, "login", "bob", NULL, NULL), 1);
    stop(f);
}

/* A principal without the right is refused 403 with the session's message, and the refusal
 * is audited (by the session, once). */
static void test_rights_denied_403(void **state)
{
    (void)state;
    char *keys = three_keys();
    fixture_opts o = {.keys_json = keys};
    fixture *f = start_with(&o);
    free(keys);
    http_reply r = {0};
    const char *alice = "key-alice-0123456789", *bob = "key-bob-0123456789";

    int64_t from = audit_next(f);
    get(f->port, "/v1/processes", alice, &r);
    assert_error(&r, 403, NULL, "permission_denied", "needs the right 'process'");
    reply_free(&r);
    post(f->port, "/v1/chat/completions", chat_body, bob, &r);
    assert_error(&r, 403, NULL, "permission_denied", "needs the right 'chat'");
    reply_free(&r);
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}", bob, &r);
    assert_error(&r, 403, NULL, "permission_denied", "needs the right 'chat'"); /* not a stream */
    reply_free(&r);
    get(f->port, "/v1/audit", bob, &r);
    assert_error(&r, 403, NULL, "permission_denied", "'audit'");
    reply_free(&r);
    /* capabilities beyond the key's */
    post(f->port, "/v1/processes", "{\"capabilities\":[\"exec\"]}", bob, &r);
    assert_error(&r, 403, NULL, "permission_denied", "not exec");
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "denied", "alice", "request", "listing processes"), 1);
    assert_int_equal(audit_count(f, from, "denied", "bob", "request", "a chat completion"), 2);
    assert_int_equal(audit_count(f, from, "denied", "bob", "request", "reading the audit log"), 1);
    assert_int_equal(audit_count(f, from, "denied", "bob", "request", "starting a process"), 1);
    assert_int_equal(audit_count(f, from, "request", "alice", NULL, NULL), 0);
    assert_int_equal(audit_count(f, from, "request", "bob", NULL, NULL), 0);
    assert_int_equal(http_server_get_stats(f->srv).denied, 5);
    assert_int_equal(atomic_load(&f->backend.calls), 0);
    stop(f);
}

/* Past the key's requests per minute: 429 with Retry-After, recorded by the server; other
 * principals are not affected. */
static void test_rate_limit_429(void **state)
{
    (void)state;
    llmos_buf b = {0};
    assert_int_equal(buf_puts(&b, "{\"keys\":["), LLMOS_OK);
    key_entry(&b, "dave", "key-dave-0123456789",
              "\"rights\":[\"chat\",\"embed\"],\"limits\":{\"requests_per_minute\":2}");
    key_entry(&b, "erin", "key-erin-0123456789", "\"rights\":[\"chat\"]");
    key_entry(&b, "frank", "key-frank-0123456789",
              "\"rights\":[\"process\"],\"limits\":{\"requests_per_minute\":1}");
    assert_int_equal(buf_puts(&b, "]}"), LLMOS_OK);
    fixture_opts o = {.keys_json = b.data};
    fixture *f = start_with(&o);
    buf_free(&b);
    http_reply r = {0};
    const char *dave = "key-dave-0123456789";
    assert_chat_works(f->port, dave);
    assert_chat_works(f->port, dave);
    int64_t from = audit_next(f);
    post(f->port, "/v1/chat/completions", chat_body, dave, &r);
    assert_error(&r, 429, NULL, "rate_limit_exceeded", "2 requests a minute");
    int retry = atoi(r.retry_after);
    assert_true(retry >= 1 && retry <= 61);
    reply_free(&r);
    post(f->port, "/v1/embeddings", "{\"input\":\"x\"}", dave, &r);
    assert_int_equal(r.status, 429);
    assert_true(r.retry_after[0] != 0);
    reply_free(&r);
    assert_int_equal(audit_count(f, from, "request", "dave", "outcome", "429 rate_limit_exceeded"),
                     2);
    assert_int_equal(audit_count(f, from, "chat", "dave", NULL, NULL), 0);
    assert_int_equal(http_server_get_stats(f->srv).limited, 2);
    assert_chat_works(f->port, "key-erin-0123456789");

    /* a process message over its limit: 429 as JSON, not a stream that fails */
    const char *frank = "key-frank-0123456789";
    post(f->port, "/v1/processes", "", frank, &r);
    assert_int_equal(r.status, 201);
    char path[128];
    snprintf(path, sizeof path, "/v1/processes/%lld/messages",
             (long long)ljson_get_int(r.json, "pid", 0));
    reply_free(&r);
    post(f->port, path, "{\"content\":\"hi\"}", frank, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "answer", ""), "Hello, world!");
    reply_free(&r);
    post(f->port, path, "{\"content\":\"again\",\"stream\":true}", frank, &r);
    assert_error(&r, 429, NULL, "rate_limit_exceeded", "1 requests a minute");
    assert_true(atoi(r.retry_after) >= 1);
    reply_free(&r);
    stop(f);
}

/* A server without keys answers loopback clients only (as "local"); another address of this
 * machine is refused. */
static void test_no_keys_local_only(void **state)
{
    (void)state;
    http_server_params p = http_server_default_params();
    p.host = "0.0.0.0";
    p.insecure_bind = true; /* no TLS, no keys: only allowed when asked for */
    fixture_opts o = {.params = &p};
    fixture *f = start_with(&o);
    assert_chat_works(f->port, NULL);
    assert_int_equal(audit_count(f, 1, "chat", "local", NULL, NULL), 1);
    struct ifaddrs *ifs = NULL, *it;
    char addr[INET_ADDRSTRLEN] = "";
    assert_int_equal(getifaddrs(&ifs), 0);
    for (it = ifs; it && !addr[0]; it = it->ifa_next)
        if (it->ifa_addr && it->ifa_addr->sa_family == AF_INET &&
            (ntohl(((struct sockaddr_in *)it->ifa_addr)->sin_addr.s_addr) >> 24) != 127)
            inet_ntop(AF_INET, &((struct sockaddr_in *)it->ifa_addr)->sin_addr, addr, sizeof addr);
    freeifaddrs(ifs);
    if (!addr[0]) {
        stop(f);
        fprintf(stderr, "skipping the remote part: this machine has no non-loopback address\n");
        return;
    }
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://%s:%u/v1/models", addr, (unsigned)f->port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    http_reply r = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    r.json = json_loadb(r.body.data, r.body.len, 0, NULL);
    assert_error(&r, 403, NULL, "local_only", "--keys FILE");
    reply_free(&r);
    stop(f);
}

/* ---- processes ---------------------------------------------------------------------------- */

static const char *const calc_steps[] = {
    "{\"content\": \"Let me compute.\", \"tool_calls\": [{\"name\": \"calculator\", "
    "\"arguments\": {\"expression\": \"2+3\"}}]}",
    "{\"content\": \"The answer is 5.\", \"pieces\": 4}"};

static char *process_keys(void)
{
    llmos_buf b = {0};
    assert_int_equal(buf_puts(&b, "{\"keys\":["), LLMOS_OK);
    key_entry(&b, "bob", "key-bob-0123456789",
              "\"rights\":[\"process\"],\"caps\":[\"compute\",\"message\"]");
    key_entry(&b, "mallory", "key-mallory-0123456789", "\"rights\":[\"process\"]");
    key_entry(&b, "root", "key-root-0123456789", "\"rights\":[\"all\"]");
    assert_int_equal(buf_puts(&b, "]}"), LLMOS_OK);
    return buf_detach(&b, NULL);
}

static int64_t spawn(fixture *f, const char *key)
{
    http_reply r = {0};
    post(f->port, "/v1/processes", "{\"capabilities\":[\"compute\"]}", key, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(ljson_get_string(r.json, "state", ""), "idle");
    assert_string_equal(ljson_get_string(r.json, "caps", ""), "compute");
    int64_t pid = ljson_get_int(r.json, "pid", 0);
    reply_free(&r);
    assert_true(pid > 0);
    return pid;
}

/* A process created, messaged with SSE (text, then the call and its result, then the answer,
 * then end), messaged again without a stream, read, and refused to another principal. */
static void test_process_sse(void **state)
{
    (void)state;
    char *keys = process_keys();
    fixture_opts o = {.keys_json = keys, .steps = calc_steps, .n_steps = 2};
    fixture *f = start_with(&o);
    free(keys);
    const char *bob = "key-bob-0123456789";
    int64_t pid = spawn(f, bob);
    char path[128];
    snprintf(path, sizeof path, "/v1/processes/%lld/messages", (long long)pid);

    http_reply r = {0};
    post(f->port, path, "{\"content\":\"What is 2+3?\",\"stream\":true}", bob, &r);
    assert_int_equal(r.status, 200);
    static char data[64][1024], names[64][32];
    size_t n = sse_events(r.body.data, data, names, 64);
    long text = -1, call = -1, result = -1, answer = -1, end = -1;
    llmos_buf said = {0};
    for (size_t i = 0; i < n; i++) {
        json_t *j = json_loads(data[i], 0, NULL);
        assert_non_null(j);
        assert_int_equal(ljson_get_int(j, "pid", 0), pid);
        if (strcmp(names[i], "text") == 0) {
            if (text < 0)
                text = (long)i;
            if (call >= 0)
                answer = answer < 0 ? (long)i : answer;
            if (call >= 0)
                assert_int_equal(buf_puts(&said, ljson_get_string(j, "text", "")), LLMOS_OK);
        } else if (strcmp(names[i], "tool_call") == 0) {
            call = (long)i;
            assert_string_equal(ljson_get_string(j, "name", ""), "calculator");
            assert_non_null(strstr(ljson_get_string(j, "arguments", ""), "2+3"));
        } else if (strcmp(names[i], "tool_result") == 0) {
            result = (long)i;
            assert_string_equal(ljson_get_string(j, "text", ""), "5");
            assert_string_equal(ljson_get_string(j, "origin", ""), "tool");
            assert_false(json_is_true(json_object_get(j, "is_error")));
        } else if (strcmp(names[i], "end") == 0) {
            end = (long)i;
            assert_string_equal(ljson_get_string(j, "state", ""), "done");
            assert_true(ljson_get_int(ljson_get_object(j, "used"), "tool_calls", 0) == 1);
        }
        json_decref(j);
    }
    assert_true(text == 0);
    assert_true(text < call && call < result && result < answer && answer < end);
    assert_int_equal(end, (long)n - 1);
    assert_string_equal(said.data, "The answer is 5.");
    buf_free(&said);
    reply_free(&r);

    /* without a stream: one JSON answer with the events and the final state */
    post(f->port, path, "{\"content\":\"And again?\"}", bob, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "state", ""), "done");
    assert_string_equal(ljson_get_string(r.json, "answer", ""), "The answer is 5.");
    json_t *evs = ljson_get_array(r.json, "events");
    assert_string_equal(
        ljson_get_string(json_array_get(evs, json_array_size(evs) - 1), "event", ""), "end");
    reply_free(&r);

    /* the process and its context */
    char info[128];
    snprintf(info, sizeof info, "/v1/processes/%lld", (long long)pid);
    get(f->port, info, bob, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "state", ""), "done");
    json_t *msgs = ljson_get_array(r.json, "messages");
    assert_true(json_array_size(msgs) >= 5); /* system, user, call, tool, answer, ... */
    assert_string_equal(ljson_get_string(json_array_get(msgs, 1), "content", ""), "What is 2+3?");
    reply_free(&r);

    /* another principal sees no such process; root (admin) does */
    const char *mallory = "key-mallory-0123456789";
    get(f->port, info, mallory, &r);
    assert_error(&r, 404, NULL, "not_found", "no process");
    reply_free(&r);
    post(f->port, path, "{\"content\":\"hi\",\"stream\":true}", mallory, &r);
    assert_error(&r, 404, NULL, "not_found", "no process");
    reply_free(&r);
    get(f->port, "/v1/processes", mallory, &r);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "data")), 0);
    reply_free(&r);
    get(f->port, "/v1/processes", "key-root-0123456789", &r);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "data")), 1);
    reply_free(&r);
    post(f->port, path, "{\"stream\":true}", bob, &r);
    assert_error(&r, 400, "content", "invalid_value", "'content' is required");
    reply_free(&r);
    get(f->port, "/v1/processes/0", bob, &r);
    assert_error(&r, 404, NULL, "unknown_url", "/v1/processes/0");
    reply_free(&r);
    stop(f);
}

typedef struct sse_arg {
    uint16_t port;
    const char *path, *key;
    atomic_bool saw_text;
    http_reply r;
} sse_arg;

static void *sse_thread(void *p)
{
    sse_arg *a = p;
    a->r.saw_text = &a->saw_text;
    post(a->port, a->path, "{\"content\":\"Tell me a long story\",\"stream\":true}", a->key, &a->r);
    return NULL;
}

/* A turn streaming over one connection is killed from another: its stream ends with an end
 * event in state killed within 200 ms. */
static void test_process_killed_while_streaming(void **state)
{
    (void)state;
    static const char *const slow[] = {"{\"content\": \"" /* 100 pieces x 20 ms = 2 s */
                                       "once upon a time there was a process that would not stop "
                                       "talking about itself and its many many tokens, one after "
                                       "another, for as long as anyone would listen to it.\", "
                                       "\"pieces\": 100, \"delay_ms\": 20}"};
    char *keys = process_keys();
    fixture_opts o = {.keys_json = keys, .steps = slow, .n_steps = 1};
    fixture *f = start_with(&o);
    free(keys);
    const char *bob = "key-bob-0123456789";
    int64_t pid = spawn(f, bob);
    char path[128], kill_path[128];
    snprintf(path, sizeof path, "/v1/processes/%lld/messages", (long long)pid);
    snprintf(kill_path, sizeof kill_path, "/v1/processes/%lld/kill", (long long)pid);
    sse_arg a = {.port = f->port, .path = path, .key = bob};
    atomic_init(&a.saw_text, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sse_thread, &a), 0);
    for (int i = 0; i < 300 && !atomic_load(&a.saw_text); i++)
        sleep_ms(5);
    assert_true(atomic_load(&a.saw_text));
    /* a second message to the running process is refused while the first is answered */
    http_reply r = {0};
    post(f->port, path, "{\"content\":\"hello?\"}", bob, &r);
    assert_error(&r, 409, NULL, "process_busy", "answering another message");
    reply_free(&r);

    double t0 = llmos_time_now();
    post(f->port, kill_path, "", bob, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "state", ""), "killed");
    reply_free(&r);
    pthread_join(th, NULL);
    assert_int_equal(a.r.status, 200);
    assert_true(a.r.end_at > 0);
    double took = a.r.end_at - t0;
    if (took >= 0.2)
        fprintf(stderr, "the stream ended %.3f s after the kill\n", took);
    assert_true(took < 0.2);
    static char data[128][1024], names[128][32];
    size_t n = sse_events(a.r.body.data, data, names, 128);
    assert_string_equal(names[n - 1], "end");
    json_t *end = json_loads(data[n - 1], 0, NULL);
    assert_string_equal(ljson_get_string(end, "state", ""), "killed");
    json_decref(end);
    assert_true(n < 100); /* it did not run to the end */
    reply_free(&a.r);

    /* killed: no more messages, no second kill */
    post(f->port, path, "{\"content\":\"hello?\"}", bob, &r);
    assert_error(&r, 409, NULL, "process_ended", "killed");
    reply_free(&r);
    post(f->port, kill_path, "", bob, &r);
    assert_error(&r, 409, NULL, "process_ended", "already ended");
    reply_free(&r);
    assert_int_equal(audit_count(f, 1, "process", "bob", "event", "spawn"), 1);
    stop(f);
}

/* ---- connections -------------------------------------------------------------------------- */

/* A connection from loopback address src that starts a request and never finishes its
 * headers (slowloris). */
static int idle_connection(const char *src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct sockaddr_in d = {.sin_family = AF_INET, .sin_port = htons(port)};
    d.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&d, sizeof d), 0);
    static const char part[] = "GET /health HTTP/1.1\r\nHost: x\r\n";
    assert_int_equal(send(fd, part, sizeof part - 1, MSG_NOSIGNAL), (ssize_t)(sizeof part - 1));
    return fd;
}

/* Is fd still open on the server's side (nothing to read, no end of file)? */
static bool still_open(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* GET /health answers 200 within a second. */
static void assert_health_fast(uint16_t port)
{
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/health", (unsigned)port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    http_reply r = {0};
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 1000L);
    double t0 = llmos_time_now();
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fprintf(stderr, "GET /health: %s\n", curl_easy_strerror(rc));
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_cleanup(c);
    assert_int_equal(r.status, 200);
    assert_true(llmos_time_now() - t0 < 1.0);
    reply_free(&r);
}

/* 70 idle connections from one address (more than the per-address limit, and more than the
 * 64 connections the server once allowed in all) do not keep others out. */
static void test_slowloris_one_address(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    enum { N = 70 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = idle_connection("127.0.0.2", f->port);
    sleep_ms(200);
    int open = 0;
    for (int i = 0; i < N; i++)
        open += still_open(fds[i]);
    assert_true(open <= (int)http_server_default_params().max_per_address);
    assert_true(open >= 1); /* the server does hold some: the attack is real */
    assert_health_fast(f->port);
    assert_chat_works(f->port, NULL);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    stop(f);
}

/* 75 idle connections from five addresses, each within the per-address limit, more than the
 * old global limit of 64: /health still answers. */
static void test_slowloris_many_addresses(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    enum { ADDRS = 5, PER = 15 };
    int fds[ADDRS * PER];
    for (int a = 0; a < ADDRS; a++) {
        char src[32];
        snprintf(src, sizeof src, "127.0.0.%d", 2 + a);
        for (int i = 0; i < PER; i++)
            fds[a * PER + i] = idle_connection(src, f->port);
    }
    sleep_ms(200);
    int open = 0;
    for (int i = 0; i < ADDRS * PER; i++)
        open += still_open(fds[i]);
    assert_int_equal(open, ADDRS * PER); /* all held: only the global limit could help */
    assert_health_fast(f->port);
    for (int i = 0; i < ADDRS * PER; i++)
        close(fds[i]);
    stop(f);
}

/* An idle connection is closed after the timeout; a request that takes longer than the
 * timeout to answer is not cut, nor a stream that pauses longer than the timeout. */
static void test_idle_timeout(void **state)
{
    (void)state;
    http_server_params p = http_server_default_params();
    p.idle_timeout_s = 1;
    fixture_opts o = {.params = &p, .delay_ms = 400}; /* 4 pieces: 1.6 s per answer */
    fixture *f = start_with(&o);
    int fd = idle_connection("127.0.0.2", f->port);
    double t0 = llmos_time_now();
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    bool closed = false;
    while (!closed && llmos_time_now() - t0 < 5.0) {
        if (poll(&pfd, 1, 100) > 0) {
            char buf[256];
            closed = recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0;
        }
    }
    double took = llmos_time_now() - t0;
    assert_true(closed);
    assert_true(took >= 0.8 && took < 3.5);
    close(fd);
    assert_chat_works(f->port, NULL); /* 1.6 s of generation > 1 s of timeout */
    f->backend.delay_ms = 1300;       /* a stream silent for longer than the timeout */
    f->backend.n_pieces = 2;
    http_reply r = {0};
    post(f->port, "/v1/chat/completions",
         "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"content\":\",\""));
    assert_non_null(strstr(r.body.data, "data: [DONE]"));
    reply_free(&r);
    stop(f);
}

/* ---- end to end with the real model ------------------------------------------------------ */

static void test_real_model(void **state)
{
    (void)state;
    char path[4096];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    local_backend_params lp = local_backend_default_params();
    lp.n_threads = 1;
    llm_backend *b = NULL;
    assert_int_equal(local_backend_open(path, &lp, &b), LLMOS_OK);
    memory *mem = NULL;
    assert_int_equal(memory_open_ephemeral(&mem), LLMOS_OK);
    kernel_config kc = {.st = memory_store(mem), .privileged = b};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    http_server_params p = http_server_default_params();
    p.port = 0;
    http_server *srv = NULL;
    assert_int_equal(http_server_start(k, &p, &srv), LLMOS_OK);
    uint16_t port = http_server_port(srv);

    http_reply r = {0};
    get(port, "/v1/models", NULL, &r);
    assert_int_equal(r.status, 200);
    const char *id = ljson_get_string(json_array_get(ljson_get_array(r.json, "data"), 0), "id", "");
    assert_string_equal(id, llm_model_name(b));
    reply_free(&r);

    /* greedy, non-streamed and streamed: the same text */
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],"
                       "\"max_tokens\":12,\"temperature\":0}";
    post(port, "/v1/chat/completions", body, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *ch = json_array_get(ljson_get_array(r.json, "choices"), 0);
    char whole[4096];
    snprintf(whole, sizeof whole, "%s",
             ljson_get_string(ljson_get_object(ch, "message"), "content", ""));
    assert_true(strlen(whole) > 0);
    assert_int_equal(ljson_get_int(ljson_get_object(r.json, "usage"), "completion_tokens", 0), 12);
    assert_string_equal(ljson_get_string(ch, "finish_reason", ""), "length");
    reply_free(&r);

    const char *sbody = "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],"
                        "\"max_tokens\":12,\"temperature\":0,\"stream\":true}";
    post(port, "/v1/chat/completions", sbody, NULL, &r);
    assert_int_equal(r.status, 200);
    static char ev[64][1024];
    size_t n = sse_events(r.body.data, ev, NULL, 64);
    assert_string_equal(ev[n - 1], "[DONE]");
    llmos_buf text = {0};
    for (size_t i = 0; i + 1 < n; i++) {
        json_t *c = json_loads(ev[i], 0, NULL);
        assert_non_null(c);
        json_t *d = ljson_get_object(json_array_get(ljson_get_array(c, "choices"), 0), "delta");
        assert_int_equal(buf_puts(&text, ljson_get_string(d, "content", "")), LLMOS_OK);
        json_decref(c);
    }
    assert_string_equal(text.data, whole);
    buf_free(&text);
    reply_free(&r);

    post(port, "/v1/completions", "{\"prompt\":\"Once\",\"max_tokens\":5,\"temperature\":0}", NULL,
         &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(ljson_get_int(ljson_get_object(r.json, "usage"), "completion_tokens", 0), 5);
    reply_free(&r);

    post(port, "/v1/embeddings", "{\"input\":\"x\"}", NULL, &r);
    assert_int_equal(r.status, 200); /* the local engine embeds */
    reply_free(&r);

    /* errors a client must not retry are 400s, each with its own code: a prompt beyond the
     * context, a schema llmos cannot follow */
    llmos_buf big = {0};
    assert_int_equal(buf_puts(&big, "{\"prompt\":\""), LLMOS_OK);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(buf_puts(&big, "cat "), LLMOS_OK);
    assert_int_equal(buf_puts(&big, "\",\"max_tokens\":1}"), LLMOS_OK);
    post(port, "/v1/completions", big.data, NULL, &r);
    assert_error(&r, 400, NULL, "context_length_exceeded", "context holds");
    reply_free(&r);
    buf_free(&big);
    const char *unsupported = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                              "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":"
                              "{\"name\":\"x\",\"schema\":{\"type\":\"object\",\"properties\":"
                              "{\"a\":{\"$ref\":\"#/nowhere\"}}}}}}";
    post(port, "/v1/chat/completions", unsupported, NULL, &r);
    assert_int_equal(r.status, 400);
    reply_free(&r);
    /* a schema or a tools array past llmos's bounds: refused before any work, naming the bound */
    llmos_buf wide = {0};
    assert_int_equal(buf_puts(&wide, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                     "\"response_format\":{\"type\":\"json_schema\","
                                     "\"json_schema\":{\"name\":\"x\",\"schema\":{\"type\":"
                                     "\"object\",\"properties\":{"),
                     LLMOS_OK);
    for (int i = 0; i < 2001; i++)
        assert_int_equal(buf_printf(&wide, "%s\"p%d\":{\"type\":\"integer\"}", i ? "," : "", i),
                         LLMOS_OK);
    assert_int_equal(buf_puts(&wide, "}}}}}"), LLMOS_OK);
    post(port, "/v1/chat/completions", wide.data, NULL, &r);
    assert_error(&r, 400, NULL, "limit_exceeded", "JSCHEMA_MAX_PROPERTIES");
    reply_free(&r);
    buf_clear(&wide);
    assert_int_equal(buf_puts(&wide, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                                     "\"tools\":["),
                     LLMOS_OK);
    for (int i = 0; i < 129; i++)
        assert_int_equal(buf_printf(&wide,
                                    "%s{\"type\":\"function\",\"function\":{\"name\":\"f%d\","
                                    "\"parameters\":{\"type\":\"object\"}}}",
                                    i ? "," : "", i),
                         LLMOS_OK);
    assert_int_equal(buf_puts(&wide, "]}"), LLMOS_OK);
    post(port, "/v1/chat/completions", wide.data, NULL, &r);
    assert_error(&r, 400, NULL, "limit_exceeded", "TOOLCALL_MAX_TOOLS");
    reply_free(&r);
    buf_free(&wide);

    http_server_stop(srv);
    kernel_free(k);
    memory_close(mem);
    llm_backend_free(b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    llmos_log_set_level(LLMOS_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser),
        cmocka_unit_test(test_health_and_models),
        cmocka_unit_test(test_chat),
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_guarded_chat),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_concurrent_requests_queue),
        cmocka_unit_test(test_full_queue_is_503),
        cmocka_unit_test(test_disconnect_cancels),
        cmocka_unit_test(test_stop_during_stream),
        cmocka_unit_test(test_keys_principals_audited),
        cmocka_unit_test(test_rights_denied_403),
        cmocka_unit_test(test_rate_limit_429),
        cmocka_unit_test(test_no_keys_local_only),
        cmocka_unit_test(test_process_sse),
        cmocka_unit_test(test_process_killed_while_streaming),
        cmocka_unit_test(test_slowloris_one_address),
        cmocka_unit_test(test_slowloris_many_addresses),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_real_model),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
