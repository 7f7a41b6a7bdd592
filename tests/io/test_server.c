/*
 * test_server.c - `llmos serve`'s HTTP server, driven by a real HTTP client (libcurl).
 *
 * The server runs in-process on an ephemeral loopback port in front of
 * scripted_test_backend, a test double that answers with prepared text (one piece per "token",
 * with a configurable pause), records what it was asked and whether it saw the cancel flag,
 * and counts how many calls run at once. Covered: /health, /v1/models, chat (whole and
 * streamed as server-sent events, with usage), completions, embeddings (and 501 from a
 * backend that cannot embed), API keys, every kind of malformed request (each answered in the
 * OpenAI error shape, the server serving normally afterwards), the body limit, max_tokens
 * capped by the context, concurrent requests queued one at a time, a full queue (503), and a
 * client that disconnects mid-stream (the backend sees cancel). The parser is also tested
 * directly. Last, end to end with the real stories260K model when the test data is present.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "llmos/backend.h"
#include "doubles.h"
#include "llmos/json.h"
#include "llmos/server.h"
#include "testutil.h"

/* ---- scripted_test_backend --------------------------------------------------------------- */

typedef struct scripted_test_backend {
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
} scripted_test_backend;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static llmos_err stb_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream, void *ctx,
                          llm_response *resp)
{
    scripted_test_backend *t = (scripted_test_backend *)b;
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
    scripted_test_backend *t = (scripted_test_backend *)b;
    (void)text;
    if (!t->can_embed)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "scripted_test_backend cannot embed");
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

static const llm_backend_ops stb_ops = {
    "scripted_test_backend", stb_chat, stb_embed, stb_count, stb_ctx, stb_name, stb_free};

static const char *const hello_pieces[] = {"Hello", ",", " world", "!"};

static void stb_init(scripted_test_backend *t)
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
} http_reply;

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    http_reply *r = ctx;
    assert_int_equal(buf_append(&r->body, data, size * n), LLMOS_OK);
    if (r->abort_after && r->body.len >= r->abort_after)
        return 0; /* makes curl close the connection */
    return size * n;
}

/* method + path on the server at port; body may be NULL; key NULL = no Authorization. */
static void http(uint16_t port, const char *method, const char *path, const char *body,
                 size_t body_len, const char *key, http_reply *r)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
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

/* ---- fixture ----------------------------------------------------------------------------- */

typedef struct fixture {
    scripted_test_backend backend;
    http_server *srv;
    uint16_t port;
} fixture;

static fixture *start(const char *key, size_t max_queue, int delay_ms)
{
    fixture *f = calloc(1, sizeof *f);
    stb_init(&f->backend);
    f->backend.delay_ms = delay_ms;
    http_server_params p = http_server_default_params();
    p.port = 0;
    p.api_key = key;
    p.max_queue = max_queue;
    assert_int_equal(http_server_start(&f->backend.base, &p, &f->srv), LLMOS_OK);
    f->port = http_server_port(f->srv);
    assert_true(f->port > 0);
    return f;
}

static void stop(fixture *f)
{
    http_server_stop(f->srv);
    free(f);
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

/* ---- tests ------------------------------------------------------------------------------- */

static void test_health_and_models(void **state)
{
    (void)state;
    fixture *f = start(NULL, 0, 0);
    http_reply r = {0};
    http(f->port, "GET", "/health", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "status", ""), "ok");
    reply_free(&r);
    http(f->port, "GET", "/v1/models", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "object", ""), "list");
    json_t *m = json_array_get(ljson_get_array(r.json, "data"), 0);
    assert_string_equal(ljson_get_string(m, "id", ""), "scripted");
    assert_string_equal(ljson_get_string(m, "object", ""), "model");
    reply_free(&r);
    http(f->port, "GET", "/v1/models/scripted", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    http(f->port, "GET", "/v1/models/gpt-4", NULL, 0, NULL, &r);
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

    /* tool calls come back in the tool_calls shape with content null */
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
    stop(f);
}

/* Split an SSE body into its data payloads; returns how many, checks the framing. */
static size_t sse_events(const char *body, char events[][1024], size_t max)
{
    size_t n = 0;
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        assert_non_null(end);
        assert_true(strncmp(p, "data: ", 6) == 0);
        assert_true(n < max);
        size_t len = (size_t)(end - p - 6);
        assert_true(len < 1024);
        memcpy(events[n], p + 6, len);
        events[n][len] = 0;
        n++;
        p = end + 2;
    }
    return n;
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
    size_t n = sse_events(r.body.data, ev, 32);
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
    assert_error(&r, 501, NULL, "not_implemented", "cannot embed");
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
    http(f->port, "GET", "/v1/models", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 401);
    reply_free(&r);
    http(f->port, "GET", "/health", NULL, 0, NULL, &r);
    assert_int_equal(r.status, 200); /* health needs no key */
    reply_free(&r);
    assert_int_equal(atomic_load(&f->backend.calls), 0);
    assert_chat_works(f->port, "s3cret-key");
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
    http(f->port, "GET", "/v1/nothing", NULL, 0, NULL, &r);
    assert_error(&r, 404, NULL, "unknown_url", "/v1/nothing");
    reply_free(&r);
    http(f->port, "GET", chat, NULL, 0, NULL, &r);
    assert_error(&r, 405, NULL, "method_not_allowed", "needs POST");
    reply_free(&r);
    http(f->port, "DELETE", "/v1/models", NULL, 0, NULL, &r);
    assert_error(&r, 405, NULL, "method_not_allowed", "needs GET");
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
    assert_int_equal(atomic_load(&f->backend.max_in_flight), 1); /* one at a time */
    assert_int_equal(http_server_get_stats(f->srv).queued, 0);
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
    for (int i = 0; i < 200 && http_server_get_stats(f->srv).queued == 0; i++)
        sleep_ms(5);
    assert_int_equal(http_server_get_stats(f->srv).queued, 1);
    sleep_ms(100); /* the first stream has sent some pieces */
    double t0 = llmos_time_now();
    http_server_stop(f->srv);
    assert_true(llmos_time_now() - t0 < 2.0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    assert_true(atomic_load(&f->backend.saw_cancel));
    assert_int_equal(atomic_load(&f->backend.calls), 1); /* the queued one never ran */
    assert_true(a.got > 0);
    free(f);
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
    http_server_params p = http_server_default_params();
    p.port = 0;
    http_server *srv = NULL;
    assert_int_equal(http_server_start(b, &p, &srv), LLMOS_OK);
    uint16_t port = http_server_port(srv);

    http_reply r = {0};
    http(port, "GET", "/v1/models", NULL, 0, NULL, &r);
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
    size_t n = sse_events(r.body.data, ev, 64);
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
    assert_true(r.status == 200 || r.status == 501);
    reply_free(&r);

    http_server_stop(srv);
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
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_concurrent_requests_queue),
        cmocka_unit_test(test_full_queue_is_503),
        cmocka_unit_test(test_disconnect_cancels),
        cmocka_unit_test(test_stop_during_stream),
        cmocka_unit_test(test_real_model),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
