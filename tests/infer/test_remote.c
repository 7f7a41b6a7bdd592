/*
 * test_remote.c - the remote backend against a real HTTP server on loopback.
 *
 * fake_openai, the test double: a thread with a listening socket on 127.0.0.1 that answers
 * each connection with the next reply of a script (status, extra headers, a body or
 * server-sent-event chunks written with pauses, an optional delay) and records every request.
 * Covered: the model check at open (with the list of models on a miss), the request body
 * (sampling, stop, tools, tool_choice, response_format), Authorization, non-streamed and
 * streamed answers, tool-call fragments split across chunks and TCP writes, 429 then success
 * (Retry-After), 500 until the retries run out, 401 without retry, a slow server (timeout),
 * malformed JSON (body and stream), a stream cut short (no retry after text was streamed),
 * cancellation from the stream callback and the flag, embeddings (L2-normalised), refused
 * connections.
 */
#include <arpa/inet.h>
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/backend.h"
#include "llmos/json.h"
#include "testutil.h"

/* ---- fake_openai ------------------------------------------------------------------------- */

typedef struct fake_reply {
    int status;
    const char *headers;       /* extra header lines, each ending in \r\n (may be NULL) */
    const char *body;          /* whole body, or NULL when chunks are given */
    const char *const *chunks; /* SSE: NULL-terminated list written one by one */
    int chunk_delay_ms;
    int delay_ms; /* before the status line */
} fake_reply;

#define FAKE_MAX_REQ 16

typedef struct fake_openai {
    int listen_fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    const fake_reply *script;
    size_t n_script;
    char *requests[FAKE_MAX_REQ]; /* request line + headers + body */
    atomic_size_t n_requests;
} fake_openai;

static const char models_body[] =
    "{\"object\":\"list\",\"data\":[{\"id\":\"m1\",\"object\":\"model\"},"
    "{\"id\":\"m2\",\"object\":\"model\"}]}";
static const fake_reply models_ok = {200, NULL, models_body, NULL, 0, 0};

static void fake_sleep_ms(fake_openai *f, int ms)
{
    for (int i = 0; i < ms && !atomic_load(&f->stop); i += 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void fake_send(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        s += k;
        n -= (size_t)k;
    }
}

static void fake_serve_one(fake_openai *f, int fd)
{
    llmos_buf req = {0};
    char tmp[4096];
    size_t need = SIZE_MAX;
    while (req.len < need) {
        ssize_t k = recv(fd, tmp, sizeof tmp, 0);
        if (k <= 0)
            break;
        if (buf_append(&req, tmp, (size_t)k))
            break;
        char *end = strstr(req.data, "\r\n\r\n");
        if (end && need == SIZE_MAX) {
            size_t cl = 0;
            char *h = strcasestr(req.data, "Content-Length:");
            if (h && h < end)
                cl = strtoul(h + 15, NULL, 10);
            need = (size_t)(end - req.data) + 4 + cl;
        }
    }
    size_t idx = atomic_fetch_add(&f->n_requests, 1);
    if (idx < FAKE_MAX_REQ)
        f->requests[idx] = buf_detach(&req, NULL);
    buf_free(&req);
    const fake_reply *r = &f->script[idx < f->n_script ? idx : f->n_script - 1];
    fake_sleep_ms(f, r->delay_ms);
    char head[1024];
    int hl =
        snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: %s\r\nConnection: close\r\n%s",
                 r->status, r->chunks ? "text/event-stream" : "application/json",
                 r->headers ? r->headers : "");
    if (r->body)
        hl += snprintf(head + hl, sizeof head - (size_t)hl, "Content-Length: %zu\r\n",
                       strlen(r->body));
    hl += snprintf(head + hl, sizeof head - (size_t)hl, "\r\n");
    fake_send(fd, head, (size_t)hl);
    if (r->body)
        fake_send(fd, r->body, strlen(r->body));
    for (size_t i = 0; r->chunks && r->chunks[i] && !atomic_load(&f->stop); i++) {
        fake_send(fd, r->chunks[i], strlen(r->chunks[i]));
        fake_sleep_ms(f, r->chunk_delay_ms);
    }
    shutdown(fd, SHUT_RDWR);
    close(fd);
}

static void *fake_main(void *arg)
{
    fake_openai *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {f->listen_fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(f->listen_fd, NULL, NULL);
        if (fd >= 0)
            fake_serve_one(f, fd);
    }
    return NULL;
}

static fake_openai *fake_start(const fake_reply *script, size_t n)
{
    fake_openai *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->script = script;
    f->n_script = n;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->listen_fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->listen_fd, 16), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(f->listen_fd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(fake_openai *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->listen_fd);
    for (size_t i = 0; i < FAKE_MAX_REQ; i++)
        free(f->requests[i]);
    free(f);
}

static void fake_url(const fake_openai *f, char *out, size_t n)
{
    snprintf(out, n, "http://127.0.0.1:%d/v1", f->port);
}

/* The JSON body of request i. */
static json_t *fake_body(const fake_openai *f, size_t i)
{
    assert_true(i < atomic_load(&f->n_requests));
    const char *b = strstr(f->requests[i], "\r\n\r\n");
    assert_non_null(b);
    json_t *v = NULL;
    assert_int_equal(ljson_parse_text(b + 4, strlen(b + 4), "request", 0, &v), LLMOS_OK);
    return v;
}

static remote_backend_params fast_params(void)
{
    remote_backend_params p = remote_backend_default_params();
    p.timeout_s = 10;
    p.connect_timeout_s = 2;
    p.max_retries = 2;
    return p;
}

static llm_backend *open_ok(fake_openai *f, const remote_backend_params *p)
{
    char url[128];
    fake_url(f, url, sizeof url);
    llm_backend *b = NULL;
    llmos_err e = remote_backend_open(url, "m1", p, &b);
    if (e)
        fail_msg("open: %s", llmos_errmsg());
    return b;
}

static json_t *one_message(void)
{
    return json_pack("[{ss ss}]", "role", "user", "content", "Hi");
}

typedef struct sink {
    llmos_buf text;
    size_t calls, stop_after;
} sink;

static bool on_text(void *ctx, const char *text, size_t len)
{
    sink *s = ctx;
    assert_int_equal(buf_append(&s->text, text, len), LLMOS_OK);
    s->calls++;
    return s->stop_after == 0 || s->calls < s->stop_after;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_open_checks_model(void **state)
{
    (void)state;
    fake_reply script[] = {models_ok};
    fake_openai *f = fake_start(script, 1);
    char url[128];
    fake_url(f, url, sizeof url);
    remote_backend_params p = fast_params();
    p.api_key = "sk-test-123";
    llm_backend *b = NULL;
    assert_int_equal(remote_backend_open(url, "gpt-nope", &p, &b), LLMOS_ERR_NOT_FOUND);
    assert_null(b);
    const char *msg = llmos_errmsg();
    assert_non_null(strstr(msg, "gpt-nope"));
    assert_non_null(strstr(msg, "'m1', 'm2'"));
    assert_non_null(strstr(f->requests[0], "GET /v1/models "));
    assert_non_null(strstr(f->requests[0], "Authorization: Bearer sk-test-123\r\n"));

    strcat(url, "/"); /* a trailing slash is fine */
    assert_int_equal(remote_backend_open(url, "m2", &p, &b), LLMOS_OK);
    assert_string_equal(b->ops->kind, "remote");
    assert_string_equal(llm_model_name(b), "m2");
    assert_int_equal(llm_context_size(b), 8192);
    assert_non_null(strstr(f->requests[1], "GET /v1/models "));
    size_t n = 0;
    assert_int_equal(llm_count_tokens(b, "abcdefgh", 8, &n), LLMOS_OK);
    assert_int_equal(n, 3); /* an estimate */
    llm_backend_free(b);

    assert_int_equal(remote_backend_open("ftp://x/v1", "m1", &p, &b), LLMOS_ERR_INVALID);
    fake_stop(f);
}

static void test_chat_request_and_answer(void **state)
{
    (void)state;
    fake_reply script[] = {
        models_ok,
        {200, NULL,
         "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
         "\"content\":\"Hello there\"},\"finish_reason\":\"stop\"}],\"usage\":{"
         "\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}",
         NULL, 0, 0},
        {200, NULL,
         "{\"choices\":[{\"message\":{\"content\":null,\"tool_calls\":[{\"id\":\"call_9\","
         "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
         "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}",
         NULL, 0, 0},
    };
    fake_openai *f = fake_start(script, 3);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    json_t *tools = json_pack("[{ss s{ss s{ss}}}]", "type", "function", "function", "name",
                              "get_weather", "parameters", "type", "object");
    json_t *rf = json_pack("{ss}", "type", "json_object");
    const char *stops[] = {"END", "\n\n"};
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    rq.max_tokens = 50;
    rq.sampling.temperature = 0.5f;
    rq.sampling.top_p = 0.9f;
    rq.sampling.seed = 42;
    rq.stop = stops;
    rq.n_stop = 2;
    rq.response_format = rf;
    llm_response r;
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_OK);
    assert_string_equal(r.content, "Hello there");
    assert_string_equal(r.finish_reason, "stop");
    assert_int_equal(r.prompt_tokens, 9);
    assert_int_equal(r.completion_tokens, 2);
    assert_int_equal(r.n_tool_calls, 0);
    llm_response_free(&r);

    assert_non_null(strstr(f->requests[1], "POST /v1/chat/completions "));
    assert_null(strstr(f->requests[1], "Authorization:")); /* no key given */
    json_t *body = fake_body(f, 1);
    assert_string_equal(ljson_get_string(body, "model", ""), "m1");
    assert_false(ljson_get_bool(body, "stream", true));
    assert_int_equal(ljson_get_int(body, "max_tokens", 0), 50);
    assert_float_equal(ljson_get_number(body, "temperature", 0), 0.5, 1e-6);
    assert_float_equal(ljson_get_number(body, "top_p", 0), 0.9, 1e-6);
    assert_int_equal(ljson_get_int(body, "seed", 0), 42);
    assert_true(json_equal(json_object_get(body, "messages"), msgs));
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "stop"), 1)),
                        "\n\n");
    assert_string_equal(ljson_get_string(ljson_get_object(body, "response_format"), "type", ""),
                        "json_object");
    assert_null(json_object_get(body, "tools"));
    json_decref(body);

    rq.response_format = NULL;
    rq.tools = tools;
    rq.tool_choice = "get_weather";
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_OK);
    assert_string_equal(r.finish_reason, "tool_calls");
    assert_int_equal(r.n_tool_calls, 1);
    assert_string_equal(r.tool_calls[0].id, "call_9");
    assert_string_equal(r.tool_calls[0].name, "get_weather");
    assert_string_equal(r.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    assert_string_equal(r.content, "");
    llm_response_free(&r);
    body = fake_body(f, 2);
    assert_true(json_equal(json_object_get(body, "tools"), tools));
    assert_string_equal(
        ljson_get_string(ljson_get_object(ljson_get_object(body, "tool_choice"), "function"),
                         "name", ""),
        "get_weather");
    json_decref(body);

    json_decref(tools);
    json_decref(rf);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_stream_and_tool_deltas(void **state)
{
    (void)state;
    static const char *const text_chunks[] = {
        ": keep-alive comment\n\n",
        "data: "
        "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \xc3", /* split mid-event */
        "\xa9t\xc3\xa9\"}}]}\r\n\r\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n",
        NULL};
    static const char *const tool_chunks[] = {
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":"
        "\"weather\",\"arguments\":\"{\\\"ci\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{"
        "\"arguments\":\"ty\\\":\\\"Par",
        "is\\\"}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","
        "\"function\":{\"name\":\"now\",\"arguments\":\"{}\"}}]}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
        NULL};
    fake_reply script[] = {
        models_ok,
        {200, NULL, NULL, text_chunks, 30, 0},
        {200, NULL, NULL, tool_chunks, 30, 0},
    };
    fake_openai *f = fake_start(script, 3);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    sink s = {0};
    llm_response r;
    assert_int_equal(llm_chat(b, &rq, on_text, &s, &r), LLMOS_OK);
    assert_string_equal(r.content, "Hello \xc3\xa9t\xc3\xa9");
    assert_string_equal(s.text.data, r.content);
    assert_int_equal(s.calls, 2);
    assert_string_equal(r.finish_reason, "length");
    assert_int_equal(r.prompt_tokens, 5);
    assert_int_equal(r.completion_tokens, 3);
    llm_response_free(&r);
    json_t *body = fake_body(f, 1);
    assert_true(ljson_get_bool(body, "stream", false));
    json_decref(body);
    assert_non_null(strstr(f->requests[1], "Accept: text/event-stream"));

    buf_free(&s.text);
    s = (sink){0};
    assert_int_equal(llm_chat(b, &rq, on_text, &s, &r), LLMOS_OK);
    assert_string_equal(r.finish_reason, "tool_calls");
    assert_int_equal(r.n_tool_calls, 2);
    assert_string_equal(r.tool_calls[0].id, "call_a");
    assert_string_equal(r.tool_calls[0].name, "get_weather");
    assert_string_equal(r.tool_calls[0].arguments, "{\"city\":\"Paris\"}");
    assert_string_equal(r.tool_calls[1].id, "call_b");
    assert_string_equal(r.tool_calls[1].name, "now");
    assert_string_equal(r.tool_calls[1].arguments, "{}");
    assert_int_equal(s.calls, 0);
    llm_response_free(&r);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_retry_429_then_success(void **state)
{
    (void)state;
    fake_reply script[] = {
        models_ok,
        {429, "Retry-After: 0\r\n",
         "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\"}}", NULL, 0, 0},
        {503, NULL, "{\"error\":{\"message\":\"warming up\"}}", NULL, 0, 0},
        {200, NULL, "{\"choices\":[{\"message\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}",
         NULL, 0, 0},
    };
    fake_openai *f = fake_start(script, 4);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    llm_response r;
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_OK);
    assert_string_equal(r.content, "ok");
    assert_int_equal(atomic_load(&f->n_requests), 4);
    llm_response_free(&r);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_500_gives_up(void **state)
{
    (void)state;
    fake_reply script[] = {
        models_ok,
        {500, NULL, "{\"error\":{\"message\":\"model overloaded\",\"code\":500}}", NULL, 0, 0},
    };
    fake_openai *f = fake_start(script, 2);
    remote_backend_params p = fast_params();
    p.max_retries = 2;
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    llm_response r;
    double t0 = llmos_time_now();
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_ERR_NETWORK);
    double dt = llmos_time_now() - t0;
    const char *msg = llmos_errmsg();
    assert_non_null(strstr(msg, "HTTP 500"));
    assert_non_null(strstr(msg, "model overloaded"));
    assert_non_null(strstr(msg, "after 3 tries"));
    assert_int_equal(atomic_load(&f->n_requests), 1 + 3);
    assert_true(dt >= 0.5 && dt < 5); /* backoff 0.25-0.5 s then 0.5-1 s */
    assert_null(r.content);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_401_no_retry(void **state)
{
    (void)state;
    fake_reply script[] = {
        models_ok,
        {401, NULL, "{\"error\":{\"message\":\"Incorrect API key provided\"}}", NULL, 0, 0},
    };
    fake_openai *f = fake_start(script, 2);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    llm_response r;
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_ERR_AUTH);
    assert_non_null(strstr(llmos_errmsg(), "HTTP 401: Incorrect API key provided"));
    assert_int_equal(atomic_load(&f->n_requests), 2);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_timeout(void **state)
{
    (void)state;
    fake_reply script[] = {
        models_ok,
        {200, NULL, "{\"choices\":[{\"message\":{\"content\":\"late\"}}]}", NULL, 0, 3000},
    };
    fake_openai *f = fake_start(script, 2);
    remote_backend_params p = fast_params();
    p.timeout_s = 0.5;
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    llm_response r;
    double t0 = llmos_time_now();
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_ERR_NETWORK);
    double dt = llmos_time_now() - t0;
    assert_non_null(strstr(llmos_errmsg(), "within 0.5 s"));
    assert_true(dt < 2.0); /* not retried: a timeout would cost the whole timeout again */
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad_stream[] = {
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", "data: {oops\n\n", NULL};
    static const char *const cut_stream[] = {
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", NULL};
    fake_reply script[] = {
        models_ok,
        {200, NULL, "{\"choices\": [", NULL, 0, 0},
        {200, NULL, "{\"choices\": []}", NULL, 0, 0},
        {200, NULL, NULL, bad_stream, 0, 0},
        {200, NULL, NULL, cut_stream, 0, 0},
    };
    fake_openai *f = fake_start(script, 5);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    llm_response r;
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "/chat/completions: answer: line 1"));
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "no choices[0]"));
    sink s = {0};
    assert_int_equal(llm_chat(b, &rq, on_text, &s, &r), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "stream event"));
    assert_int_equal(atomic_load(&f->n_requests), 4);
    assert_int_equal(llm_chat(b, &rq, on_text, &s, &r), LLMOS_ERR_NETWORK);
    assert_non_null(strstr(llmos_errmsg(), "without [DONE]"));
    assert_int_equal(atomic_load(&f->n_requests), 5); /* text was streamed: no retry */
    buf_free(&s.text);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_cancel(void **state)
{
    (void)state;
    static const char *const slow[] = {"data: {\"choices\":[{\"delta\":{\"content\":\"1\"}}]}\n\n",
                                       "data: {\"choices\":[{\"delta\":{\"content\":\"2\"}}]}\n\n",
                                       "data: {\"choices\":[{\"delta\":{\"content\":\"3\"}}]}\n\n",
                                       "data: {\"choices\":[{\"delta\":{\"content\":\"4\"}}]}\n\n",
                                       "data: {\"choices\":[{\"delta\":{\"content\":\"5\"}}]}\n\n",
                                       "data: [DONE]\n\n",
                                       NULL};
    fake_reply script[] = {models_ok, {200, NULL, NULL, slow, 300, 0}};
    fake_openai *f = fake_start(script, 2);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    json_t *msgs = one_message();
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    sink s = {.stop_after = 2};
    llm_response r;
    double t0 = llmos_time_now();
    assert_int_equal(llm_chat(b, &rq, on_text, &s, &r), LLMOS_OK);
    assert_string_equal(r.finish_reason, "cancelled");
    assert_string_equal(r.content, "12");
    assert_true(llmos_time_now() - t0 < 1.2);
    llm_response_free(&r);
    buf_free(&s.text);

    atomic_bool cancel = true;
    rq.cancel = &cancel;
    assert_int_equal(llm_chat(b, &rq, NULL, NULL, &r), LLMOS_OK);
    assert_string_equal(r.finish_reason, "cancelled");
    llm_response_free(&r);
    json_decref(msgs);
    llm_backend_free(b);
    fake_stop(f);
}

static void test_embed(void **state)
{
    (void)state;
    fake_reply script[] = {
        models_ok,
        {200, NULL,
         "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
         "\"embedding\":[3,4.0,0]}]}",
         NULL, 0, 0},
        {200, NULL, "{\"data\":[{\"embedding\":[1,\"x\"]}]}", NULL, 0, 0},
        {404, NULL, "{\"error\":{\"message\":\"embeddings are not enabled\"}}", NULL, 0, 0},
    };
    fake_openai *f = fake_start(script, 4);
    remote_backend_params p = fast_params();
    llm_backend *b = open_ok(f, &p);
    float *v = NULL;
    size_t dim = 0;
    assert_int_equal(llm_embed(b, "hello", 5, &v, &dim), LLMOS_OK);
    assert_int_equal(dim, 3);
    assert_float_equal(v[0], 0.6, 1e-6);
    assert_float_equal(v[1], 0.8, 1e-6);
    assert_float_equal(v[2], 0.0, 1e-6);
    free(v);
    json_t *body = fake_body(f, 1);
    assert_string_equal(ljson_get_string(body, "input", ""), "hello");
    json_decref(body);
    assert_non_null(strstr(f->requests[1], "POST /v1/embeddings "));
    assert_int_equal(llm_embed(b, "hello", 5, &v, &dim), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "element 1"));
    assert_int_equal(llm_embed(b, "hello", 5, &v, &dim), LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "embeddings are not enabled"));
    llm_backend_free(b);
    fake_stop(f);
}

static void test_connection_refused(void **state)
{
    (void)state;
    /* a port that was just free: bind, note, close */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", ntohs(a.sin_port));
    remote_backend_params p = fast_params();
    p.max_retries = 1;
    llm_backend *b = NULL;
    assert_int_equal(remote_backend_open(url, "m1", &p, &b), LLMOS_ERR_NETWORK);
    assert_null(b);
    assert_non_null(strstr(llmos_errmsg(), "after 2 tries"));
    assert_non_null(strstr(llmos_errmsg(), "/models"));
}

/* `llmos generate --api`: the key from the environment, the prompt as a user message, the
 * answer streamed to stdout; usage errors for missing pieces. */
static void test_cli_generate_api(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN")) {
        print_message("skipped: LLMOS_BIN is not set\n");
        skip();
    }
    static const char *const chunks[] = {
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hello \"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"from afar\"},\"finish_reason\":"
        "\"stop\"}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":3}}\n\n",
        "data: [DONE]\n\n", NULL};
    fake_reply script[] = {models_ok, {200, NULL, NULL, chunks, 0, 0}, models_ok};
    fake_openai *f = fake_start(script, 3);
    char url[128];
    fake_url(f, url, sizeof url);
    llmos_buf out = {0}, err = {0};
    int rc = tu_run_llmos(&out, &err,
                          "MY_KEY=sk-cli-7 generate --api '%s' --api-model m1 --api-key-env "
                          "MY_KEY --prompt 'Say hi' -n 5 --temp 0",
                          url);
    assert_int_equal(rc, 0);
    assert_string_equal(out.data, "Hello from afar\n");
    assert_non_null(strstr(err.data, "generated 3 tokens"));
    assert_non_null(strstr(f->requests[1], "Authorization: Bearer sk-cli-7\r\n"));
    json_t *body = fake_body(f, 1);
    assert_int_equal(ljson_get_int(body, "max_tokens", 0), 5);
    assert_string_equal(
        ljson_get_string(json_array_get(json_object_get(body, "messages"), 0), "content", ""),
        "Say hi");
    json_decref(body);

    buf_clear(&err);
    rc = tu_run_llmos(NULL, &err, "generate --api '%s' --api-model nope --prompt x", url);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(err.data, "'m1', 'm2'"));
    buf_clear(&err);
    rc = tu_run_llmos(NULL, &err, "generate --api '%s' --prompt x", url);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err.data, "--api-model"));
    buf_clear(&err);
    rc = tu_run_llmos(NULL, &err,
                      "generate --api '%s' --api-model m1 --api-key-env LLMOS_NO_SUCH_VAR_X "
                      "--prompt x",
                      url);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(err.data, "LLMOS_NO_SUCH_VAR_X"));
    buf_free(&out);
    buf_free(&err);
    fake_stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_checks_model),
        cmocka_unit_test(test_chat_request_and_answer),
        cmocka_unit_test(test_stream_and_tool_deltas),
        cmocka_unit_test(test_retry_429_then_success),
        cmocka_unit_test(test_500_gives_up),
        cmocka_unit_test(test_401_no_retry),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_embed),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_cli_generate_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
