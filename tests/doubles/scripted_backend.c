/*
 * scripted_backend.c - scripted_test_backend, a TEST DOUBLE of llm_backend (tests/doubles.h).
 *
 * It answers chat requests from a prepared script instead of a model, so that tests drive the
 * agent loop deterministically (tool-call chains, bad arguments, denials, budgets), and it
 * records every byte it is sent, so that tests can prove by instrumentation what reached a
 * model's context. It is not a model and is linked into tests only.
 *
 * A step may stream its content in pieces with a pause between them ("pieces", "delay_ms"),
 * checking the request's cancel flag between pieces as a real backend checks it between
 * tokens: that is what the kill and cancel tests time.
 *
 * Several threads may chat at once (the scheduler's slots): the record and the script's step
 * are taken under a lock, the pieces streamed outside it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "doubles.h"
#include "llmos/json.h"

typedef struct scripted {
    llm_backend base;
    json_t **steps;
    size_t n_steps, next;
    bool repeat;
    llmos_buf sent;
    size_t calls;
    size_t context; /* what context_size reports */
    pthread_mutex_t mu;
} scripted;

/* Record the request and take the script's next step (NULL: used up). s->mu held. */
static const json_t *take_step(scripted *s, const llm_request *req, llmos_err *err)
{
    *err = LLMOS_ERR_NOMEM;
    if (req->messages && ljson_to_buf(req->messages, JSON_COMPACT, &s->sent))
        return NULL;
    if (req->tools && ljson_to_buf(req->tools, JSON_COMPACT, &s->sent))
        return NULL;
    if (req->prompt && buf_puts(&s->sent, req->prompt))
        return NULL;
    if (buf_putc(&s->sent, '\n'))
        return NULL;
    s->calls++;
    if (s->next >= s->n_steps && !(s->repeat && s->n_steps)) {
        *err = llmos_fail(LLMOS_ERR_LIMIT,
                          "scripted_test_backend: the script's %zu steps are used up", s->n_steps);
        return NULL;
    }
    const json_t *st = s->steps[s->next < s->n_steps ? s->next : s->n_steps - 1];
    if (s->next < s->n_steps)
        s->next++;
    *err = LLMOS_OK;
    return st;
}

static llmos_err sc_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                         void *stream_ctx, llm_response *resp)
{
    scripted *s = (scripted *)b;
    memset(resp, 0, sizeof *resp);
    llmos_err err;
    pthread_mutex_lock(&s->mu);
    const json_t *st = take_step(s, req, &err);
    size_t call_no = s->calls;
    pthread_mutex_unlock(&s->mu);
    if (!st)
        return err;
    const char *content = ljson_get_string(st, "content", "");
    resp->content = strdup(content);
    json_t *calls = ljson_get_array(st, "tool_calls");
    size_t n = json_array_size(calls);
    if (n) {
        resp->tool_calls = calloc(n, sizeof *resp->tool_calls);
        if (!resp->tool_calls)
            return LLMOS_ERR_NOMEM;
        resp->n_tool_calls = n;
        for (size_t i = 0; i < n; i++) {
            json_t *c = json_array_get(calls, i);
            char id[32];
            snprintf(id, sizeof id, "call_%zu_%zu", call_no, i);
            resp->tool_calls[i].id = strdup(id);
            resp->tool_calls[i].name = strdup(ljson_get_string(c, "name", ""));
            json_t *a = json_object_get(c, "arguments");
            if (json_is_string(a)) {
                resp->tool_calls[i].arguments = strdup(json_string_value(a));
            } else if (!a) {
                resp->tool_calls[i].arguments = strdup("{}");
            } else {
                llmos_buf ab = {0};
                if (ljson_to_buf(a, JSON_COMPACT, &ab))
                    return LLMOS_ERR_NOMEM;
                resp->tool_calls[i].arguments = buf_detach(&ab, NULL);
            }
        }
    }
    resp->finish_reason = n ? "tool_calls" : "stop";
    resp->completion_tokens = (uint32_t)ljson_get_int(st, "tokens", 1);
    if (!resp->content)
        return LLMOS_ERR_NOMEM;
    /* stream the content in `pieces` parts, `delay_ms` apart, stopping on cancel */
    size_t len = strlen(content), pieces = (size_t)ljson_get_int(st, "pieces", 1);
    long delay_ms = (long)ljson_get_int(st, "delay_ms", 0);
    if (pieces < 1)
        pieces = 1;
    for (size_t i = 0; i < pieces; i++) {
        if (req->cancel && atomic_load(req->cancel)) {
            resp->content[len * i / pieces] = 0;
            resp->finish_reason = "cancelled";
            resp->n_tool_calls = 0;
            break;
        }
        if (delay_ms > 0) {
            struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        size_t from = len * i / pieces, to = len * (i + 1) / pieces;
        if (stream && to > from && !stream(stream_ctx, content + from, to - from)) {
            resp->content[to] = 0;
            resp->finish_reason = "cancelled";
            resp->n_tool_calls = 0;
            break;
        }
    }
    return LLMOS_OK;
}

static llmos_err sc_embed(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim)
{
    (void)b, (void)text, (void)len, (void)vec, (void)dim;
    return llmos_fail(LLMOS_ERR_UNSUPPORTED, "scripted_test_backend cannot embed");
}

static llmos_err sc_count(llm_backend *b, const char *text, size_t len, size_t *n)
{
    (void)b, (void)text;
    *n = (len + 3) / 4;
    return LLMOS_OK;
}

static size_t sc_ctx(llm_backend *b)
{
    return ((scripted *)b)->context;
}

static const char *sc_name(llm_backend *b)
{
    (void)b;
    return "scripted-test";
}

static void sc_free(llm_backend *b)
{
    scripted *s = (scripted *)b;
    if (!s)
        return;
    for (size_t i = 0; i < s->n_steps; i++)
        json_decref(s->steps[i]);
    free(s->steps);
    buf_free(&s->sent);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static const llm_backend_ops sc_ops = {.kind = "scripted_test_backend",
                                       .chat = sc_chat,
                                       .embed = sc_embed,
                                       .count_tokens = sc_count,
                                       .context_size = sc_ctx,
                                       .model_name = sc_name,
                                       .free = sc_free};

llmos_err scripted_test_backend_new(const char *const *steps, size_t n_steps, bool repeat,
                                    llm_backend **out)
{
    *out = NULL;
    scripted *s = calloc(1, sizeof *s);
    if (!s || !(s->steps = calloc(n_steps + 1, sizeof(json_t *)))) {
        free(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "scripted_test_backend: no memory");
    }
    s->base.ops = &sc_ops;
    pthread_mutex_init(&s->mu, NULL);
    s->repeat = repeat;
    s->context = 1u << 20;
    for (size_t i = 0; i < n_steps; i++) {
        llmos_err err =
            ljson_parse_text(steps[i], strlen(steps[i]), "script step", 0, &s->steps[i]);
        if (err) {
            sc_free(&s->base);
            return llmos_fail_context(err, "step %zu: ", i);
        }
        s->n_steps++;
    }
    *out = &s->base;
    return LLMOS_OK;
}

const char *scripted_test_backend_sent(llm_backend *b, size_t *len)
{
    scripted *s = (scripted *)b;
    if (len)
        *len = s->sent.len;
    return s->sent.data ? s->sent.data : "";
}

size_t scripted_test_backend_calls(llm_backend *b)
{
    return ((scripted *)b)->calls;
}

void scripted_test_backend_set_context(llm_backend *b, size_t tokens)
{
    ((scripted *)b)->context = tokens;
}
