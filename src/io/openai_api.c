/*
 * openai_api.c - the OpenAI-compatible API's JSON shapes: request bodies in, answers out.
 *
 * openai_request_parse is the one place where a client's bytes become an llm_request, so it
 * checks every member llmos reads (type, range, which member) and says exactly what was wrong;
 * it is a pure function and fuzz/fuzz_request.c drives it. The builders below produce the
 * response objects of the OpenAI API reference: chat.completion, chat.completion.chunk,
 * text_completion, the embeddings list, the models list and the error object.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/server.h"

/* ---- parsing ------------------------------------------------------------------------------ */

static llmos_err bad(openai_request *out, llmos_err code, const char *param, const char *fmt, ...)
    LLMOS_PRINTF(4, 5);

/* Record the failing member and the message; the caller then frees what was built. */
static llmos_err bad(openai_request *out, llmos_err code, const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(out->error_param, sizeof out->error_param, "%s", param ? param : "");
    return llmos_fail(code, "%s", msg);
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a value";
}

/* A number member within [lo, hi]; absent or null leaves *out. */
static llmos_err get_range(openai_request *out, const char *key, double lo, double hi,
                           bool *present, double *val)
{
    json_t *v = json_object_get(out->body, key);
    *present = false;
    if (!v || json_is_null(v))
        return LLMOS_OK;
    if (!json_is_number(v))
        return bad(out, LLMOS_ERR_INVALID, key, "'%s' must be a number, found %s", key,
                   json_kind(v));
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return bad(out, LLMOS_ERR_INVALID, key, "'%s' must be between %g and %g, found %g", key, lo,
                   hi, d);
    *present = true;
    *val = d;
    return LLMOS_OK;
}

static llmos_err parse_messages(openai_request *out)
{
    json_t *msgs = json_object_get(out->body, "messages");
    if (!msgs)
        return bad(out, LLMOS_ERR_INVALID, "messages",
                   "'messages' is required: an array of {\"role\", \"content\"} objects");
    if (!json_is_array(msgs))
        return bad(out, LLMOS_ERR_INVALID, "messages", "'messages' must be an array, found %s",
                   json_kind(msgs));
    if (json_array_size(msgs) == 0)
        return bad(out, LLMOS_ERR_INVALID, "messages", "'messages' must not be empty");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m))
            return bad(out, LLMOS_ERR_INVALID, param, "'%s' must be an object, found %s", param,
                       json_kind(m));
        json_t *role = json_object_get(m, "role");
        snprintf(param, sizeof param, "messages[%zu].role", i);
        if (!json_is_string(role))
            return bad(out, LLMOS_ERR_INVALID, param,
                       "'%s' must be a string (system, user, assistant or tool), found %s", param,
                       role ? json_kind(role) : "nothing");
        const char *r = json_string_value(role);
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0 &&
            strcmp(r, "tool") != 0 && strcmp(r, "developer") != 0)
            return bad(out, LLMOS_ERR_INVALID, param,
                       "'%s' is '%.40s'; expected system, developer, user, assistant or tool",
                       param, r);
        json_t *content = json_object_get(m, "content");
        snprintf(param, sizeof param, "messages[%zu].content", i);
        if (content && !json_is_string(content) && !json_is_null(content) &&
            !json_is_array(content))
            return bad(out, LLMOS_ERR_INVALID, param,
                       "'%s' must be a string, an array of content parts or null, found %s", param,
                       json_kind(content));
        if (json_is_array(content)) {
            size_t j;
            json_t *part;
            json_array_foreach(content, j, part)
            {
                const char *type = ljson_get_string(part, "type", NULL);
                if (!type || strcmp(type, "text") != 0 ||
                    !json_is_string(json_object_get(part, "text")))
                    return bad(out, LLMOS_ERR_UNSUPPORTED, param,
                               "'%s[%zu]' must be {\"type\": \"text\", \"text\": \"...\"}; "
                               "other content parts (images, audio) are not supported",
                               param, j);
            }
        }
        if (!content && strcmp(r, "assistant") != 0)
            return bad(out, LLMOS_ERR_INVALID, param, "'%s' is required for role '%s'", param, r);
    }
    out->req.messages = msgs;
    return LLMOS_OK;
}

static llmos_err parse_tools(openai_request *out)
{
    json_t *tools = json_object_get(out->body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools))
            return bad(out, LLMOS_ERR_INVALID, "tools", "'tools' must be an array, found %s",
                       json_kind(tools));
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            char param[48];
            snprintf(param, sizeof param, "tools[%zu]", i);
            const char *type = ljson_get_string(t, "type", NULL);
            json_t *fn = ljson_get_object(t, "function");
            if (!type || strcmp(type, "function") != 0 || !fn)
                return bad(out, LLMOS_ERR_INVALID, param,
                           "'%s' must be {\"type\": \"function\", \"function\": {...}}", param);
            if (!json_is_string(json_object_get(fn, "name")))
                return bad(out, LLMOS_ERR_INVALID, param, "'%s.function.name' must be a string",
                           param);
            json_t *params = json_object_get(fn, "parameters");
            if (params && !json_is_object(params))
                return bad(out, LLMOS_ERR_INVALID, param,
                           "'%s.function.parameters' must be a JSON schema object", param);
        }
        if (json_array_size(tools) > 0)
            out->req.tools = tools;
    }
    json_t *tc = json_object_get(out->body, "tool_choice");
    if (!tc || json_is_null(tc))
        return LLMOS_OK;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "auto") != 0 && strcmp(s, "none") != 0 && strcmp(s, "required") != 0)
            return bad(out, LLMOS_ERR_INVALID, "tool_choice",
                       "'tool_choice' is '%.40s'; expected \"auto\", \"none\", \"required\" or "
                       "{\"type\": \"function\", \"function\": {\"name\": ...}}",
                       s);
        out->req.tool_choice = s;
    } else {
        const char *name = ljson_get_string(ljson_get_object(tc, "function"), "name", NULL);
        if (!json_is_object(tc) || !name)
            return bad(out, LLMOS_ERR_INVALID, "tool_choice",
                       "'tool_choice' must be a string or {\"type\": \"function\", "
                       "\"function\": {\"name\": ...}}, found %s",
                       json_kind(tc));
        out->req.tool_choice = name;
    }
    if (out->req.tool_choice && strcmp(out->req.tool_choice, "auto") != 0 &&
        strcmp(out->req.tool_choice, "none") != 0 && !out->req.tools)
        return bad(out, LLMOS_ERR_INVALID, "tool_choice",
                   "'tool_choice' is '%.40s' but no 'tools' were given", out->req.tool_choice);
    if (out->req.tool_choice && out->req.tools && strcmp(out->req.tool_choice, "auto") != 0 &&
        strcmp(out->req.tool_choice, "none") != 0 &&
        strcmp(out->req.tool_choice, "required") != 0) {
        bool found = false;
        size_t i;
        json_t *t;
        json_array_foreach(out->req.tools, i, t)
        {
            const char *n = ljson_get_string(ljson_get_object(t, "function"), "name", "");
            if (strcmp(n, out->req.tool_choice) == 0)
                found = true;
        }
        if (!found)
            return bad(out, LLMOS_ERR_INVALID, "tool_choice",
                       "'tool_choice' names function '%.60s', which is not among 'tools'",
                       out->req.tool_choice);
    }
    return LLMOS_OK;
}

static llmos_err parse_response_format(openai_request *out)
{
    json_t *rf = json_object_get(out->body, "response_format");
    if (!rf || json_is_null(rf))
        return LLMOS_OK;
    const char *type = ljson_get_string(rf, "type", NULL);
    if (!json_is_object(rf) || !type)
        return bad(out, LLMOS_ERR_INVALID, "response_format",
                   "'response_format' must be an object with a 'type' (text, json_object or "
                   "json_schema)");
    if (strcmp(type, "text") == 0)
        return LLMOS_OK;
    if (strcmp(type, "json_schema") == 0) {
        json_t *js = ljson_get_object(rf, "json_schema");
        if (!js || !json_is_object(json_object_get(js, "schema")))
            return bad(out, LLMOS_ERR_INVALID, "response_format",
                       "'response_format' of type json_schema needs "
                       "'json_schema': {\"name\": ..., \"schema\": {...}}");
    } else if (strcmp(type, "json_object") != 0) {
        return bad(out, LLMOS_ERR_INVALID, "response_format",
                   "'response_format.type' is '%.40s'; expected text, json_object or "
                   "json_schema",
                   type);
    }
    out->req.response_format = rf;
    return LLMOS_OK;
}

static llmos_err parse_stop(openai_request *out)
{
    json_t *stop = json_object_get(out->body, "stop");
    if (!stop || json_is_null(stop))
        return LLMOS_OK;
    if (json_is_string(stop)) {
        out->stop[0] = json_string_value(stop);
        out->req.n_stop = 1;
    } else if (json_is_array(stop)) {
        if (json_array_size(stop) > OPENAI_MAX_STOP)
            return bad(out, LLMOS_ERR_INVALID, "stop", "'stop' has %zu strings; at most %d",
                       json_array_size(stop), OPENAI_MAX_STOP);
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s))
                return bad(out, LLMOS_ERR_INVALID, "stop", "'stop[%zu]' must be a string, found %s",
                           i, json_kind(s));
            out->stop[i] = json_string_value(s);
        }
        out->req.n_stop = json_array_size(stop);
    } else {
        return bad(out, LLMOS_ERR_INVALID, "stop",
                   "'stop' must be a string or an array of strings, found %s", json_kind(stop));
    }
    for (size_t i = 0; i < out->req.n_stop; i++)
        if (!out->stop[i][0])
            return bad(out, LLMOS_ERR_INVALID, "stop", "'stop' strings must not be empty");
    out->req.stop = out->stop;
    return LLMOS_OK;
}

static llmos_err parse_generation(openai_request *out, size_t n_ctx)
{
    json_t *body = out->body;
    llmos_err err;
    /* max_completion_tokens is the newer name of max_tokens (OpenAI chat API reference) */
    const char *mt_key = json_object_get(body, "max_completion_tokens") &&
                                 !json_is_null(json_object_get(body, "max_completion_tokens"))
                             ? "max_completion_tokens"
                             : "max_tokens";
    json_t *mt = json_object_get(body, mt_key);
    if (mt && !json_is_null(mt)) {
        if (!json_is_integer(mt))
            return bad(out, LLMOS_ERR_INVALID, mt_key, "'%s' must be an integer, found %s", mt_key,
                       json_kind(mt));
        json_int_t v = json_integer_value(mt);
        if (v < 1)
            return bad(out, LLMOS_ERR_INVALID, mt_key, "'%s' must be at least 1, found %lld",
                       mt_key, (long long)v);
        if (n_ctx > 0 && (uint64_t)v > n_ctx) {
            v = (json_int_t)n_ctx;
            out->max_tokens_capped = true;
        }
        if (v > INT32_MAX)
            v = INT32_MAX;
        out->req.max_tokens = (int32_t)v;
    } else if (out->endpoint == OPENAI_COMPLETION) {
        out->req.max_tokens = 16; /* the completions API's documented default */
    }

    bool present;
    double d;
    if ((err = get_range(out, "temperature", 0, 2, &present, &d)))
        return err;
    if (present)
        out->req.sampling.temperature = (float)d;
    if ((err = get_range(out, "top_p", 0, 1, &present, &d)))
        return err;
    if (present) {
        if (d <= 0)
            return bad(out, LLMOS_ERR_INVALID, "top_p", "'top_p' must be above 0, found %g", d);
        out->req.sampling.top_p = (float)d;
    }
    if ((err = get_range(out, "frequency_penalty", 0, 2, &present, &d)))
        return err;
    if (present)
        out->req.sampling.frequency_penalty = (float)d;
    if ((err = get_range(out, "presence_penalty", 0, 2, &present, &d)))
        return err;
    if (present)
        out->req.sampling.presence_penalty = (float)d;
    json_t *seed = json_object_get(body, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed))
            return bad(out, LLMOS_ERR_INVALID, "seed", "'seed' must be an integer, found %s",
                       json_kind(seed));
        out->req.sampling.seed = (uint64_t)json_integer_value(seed);
        out->has_seed = true;
    }
    json_t *n = json_object_get(body, "n");
    if (n && !json_is_null(n) && (!json_is_integer(n) || json_integer_value(n) != 1))
        return bad(out, LLMOS_ERR_UNSUPPORTED, "n",
                   "'n' must be 1: llmos generates one choice per request");
    json_t *stream = json_object_get(body, "stream");
    if (stream && !json_is_null(stream)) {
        if (!json_is_boolean(stream))
            return bad(out, LLMOS_ERR_INVALID, "stream", "'stream' must be a boolean, found %s",
                       json_kind(stream));
        out->stream = json_is_true(stream);
    }
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return bad(out, LLMOS_ERR_INVALID, "stream_options",
                       "'stream_options' must be an object, found %s", json_kind(so));
        out->include_usage = ljson_get_bool(so, "include_usage", false);
    }
    return parse_stop(out);
}

static llmos_err parse_prompt(openai_request *out)
{
    json_t *p = json_object_get(out->body, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1)
        p = json_array_get(p, 0);
    if (!p)
        return bad(out, LLMOS_ERR_INVALID, "prompt", "'prompt' is required: a string");
    if (!json_is_string(p))
        return bad(out, LLMOS_ERR_INVALID, "prompt",
                   "'prompt' must be a string (or an array of one string), found %s", json_kind(p));
    out->req.prompt = json_string_value(p);
    return LLMOS_OK;
}

static llmos_err parse_input(openai_request *out)
{
    json_t *in = json_object_get(out->body, "input");
    if (!in)
        return bad(out, LLMOS_ERR_INVALID, "input",
                   "'input' is required: a string or an array of strings");
    size_t n = json_is_array(in) ? json_array_size(in) : 1;
    if (!json_is_string(in) && !json_is_array(in))
        return bad(out, LLMOS_ERR_INVALID, "input",
                   "'input' must be a string or an array of strings, found %s", json_kind(in));
    if (n == 0)
        return bad(out, LLMOS_ERR_INVALID, "input", "'input' must not be an empty array");
    if (n > OPENAI_MAX_INPUTS)
        return bad(out, LLMOS_ERR_LIMIT, "input", "'input' has %zu strings; at most %d", n,
                   OPENAI_MAX_INPUTS);
    out->inputs = calloc(n, sizeof *out->inputs);
    if (!out->inputs)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(in) ? json_array_get(in, i) : in;
        if (!json_is_string(s))
            return bad(out, LLMOS_ERR_UNSUPPORTED, "input",
                       "'input[%zu]' must be a string, found %s (token-id inputs are not "
                       "supported)",
                       i, json_kind(s));
        if (json_string_length(s) == 0)
            return bad(out, LLMOS_ERR_INVALID, "input", "'input[%zu]' must not be empty", i);
        out->inputs[i] = json_string_value(s);
    }
    out->n_inputs = n;
    return LLMOS_OK;
}

llmos_err openai_request_parse(openai_endpoint ep, const char *body, size_t len, size_t n_ctx,
                               openai_request *out)
{
    memset(out, 0, sizeof *out);
    out->endpoint = ep;
    out->req = llm_request_default();
    out->req.sampling.top_p = 1.0f; /* OpenAI's default: nucleus sampling off */
    llmos_err err = ljson_parse_text(body, len, "request body", 64, &out->body);
    if (err) {
        out->body = NULL;
        snprintf(out->error_param, sizeof out->error_param, "%s", "");
        return llmos_fail_context(err, "the body is not valid JSON: ");
    }
    if (!json_is_object(out->body)) {
        err = bad(out, LLMOS_ERR_INVALID, "", "the body must be a JSON object, found %s",
                  json_kind(out->body));
        goto fail;
    }
    json_t *model = json_object_get(out->body, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            err = bad(out, LLMOS_ERR_INVALID, "model", "'model' must be a string, found %s",
                      json_kind(model));
            goto fail;
        }
        out->model = json_string_value(model);
    }
    switch (ep) {
    case OPENAI_CHAT:
        if ((err = parse_messages(out)) || (err = parse_tools(out)) ||
            (err = parse_response_format(out)) || (err = parse_generation(out, n_ctx)))
            goto fail;
        break;
    case OPENAI_COMPLETION:
        if ((err = parse_prompt(out)) || (err = parse_generation(out, n_ctx)))
            goto fail;
        break;
    case OPENAI_EMBEDDING:
        if ((err = parse_input(out)))
            goto fail;
        break;
    default: err = bad(out, LLMOS_ERR_INTERNAL, "", "unknown endpoint %d", (int)ep); goto fail;
    }
    return LLMOS_OK;
fail:;
    char param[sizeof out->error_param];
    memcpy(param, out->error_param, sizeof param);
    openai_request_free(out);
    memcpy(out->error_param, param, sizeof param);
    return err;
}

void openai_request_free(openai_request *r)
{
    if (!r)
        return;
    free(r->inputs);
    json_decref(r->body);
    memset(r, 0, sizeof *r);
}

/* ---- responses ---------------------------------------------------------------------------- */

json_t *openai_error_json(const char *message, const char *type, const char *param,
                          const char *code)
{
    return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", message ? message : "", "type",
                     type ? type : "invalid_request_error", "param",
                     param && *param ? json_string(param) : json_null(), "code",
                     code ? json_string(code) : json_null());
}

const char *openai_finish_reason(const char *r)
{
    if (r && (strcmp(r, "length") == 0 || strcmp(r, "tool_calls") == 0))
        return r;
    return "stop";
}

json_t *openai_usage_json(uint32_t prompt_tokens, uint32_t completion_tokens,
                          uint32_t cached_tokens)
{
    return json_pack("{s:I, s:I, s:I, s:{s:I}}", "prompt_tokens", (json_int_t)prompt_tokens,
                     "completion_tokens", (json_int_t)completion_tokens, "total_tokens",
                     (json_int_t)prompt_tokens + completion_tokens, "prompt_tokens_details",
                     "cached_tokens", (json_int_t)cached_tokens);
}

static json_t *tool_calls_json(const llm_response *r, bool with_index)
{
    json_t *calls = json_array();
    for (size_t i = 0; calls && i < r->n_tool_calls; i++) {
        const llm_tool_call *c = &r->tool_calls[i];
        json_t *call = json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", c->id ? c->id : "", "type",
                                 "function", "function", "name", c->name ? c->name : "",
                                 "arguments", c->arguments ? c->arguments : "{}");
        if (call && with_index)
            json_object_set_new(call, "index", json_integer((json_int_t)i));
        json_array_append_new(calls, call);
    }
    return calls;
}

json_t *openai_response_json(openai_endpoint ep, const char *id, int64_t created, const char *model,
                             const llm_response *r)
{
    const char *content = r->content ? r->content : "";
    json_t *choice;
    if (ep == OPENAI_COMPLETION) {
        choice = json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", content, "logprobs",
                           "finish_reason", openai_finish_reason(r->finish_reason));
    } else {
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        if (r->n_tool_calls > 0) {
            json_object_set_new(msg, "content", *content ? json_string(content) : json_null());
            json_object_set_new(msg, "tool_calls", tool_calls_json(r, false));
        } else {
            json_object_set_new(msg, "content", json_string(content));
        }
        choice = json_pack("{s:i, s:o, s:n, s:s}", "index", 0, "message", msg, "logprobs",
                           "finish_reason", openai_finish_reason(r->finish_reason));
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", id, "object",
                     ep == OPENAI_COMPLETION ? "text_completion" : "chat.completion", "created",
                     (json_int_t)created, "model", model, "choices", choice, "usage",
                     openai_usage_json(r->prompt_tokens, r->completion_tokens, r->cached_tokens));
}

json_t *openai_chunk_json(openai_endpoint ep, const char *id, int64_t created, const char *model,
                          bool role, const char *content, size_t len, const char *finish)
{
    json_t *choice;
    if (ep == OPENAI_COMPLETION) {
        choice = json_pack("{s:i, s:s%, s:n}", "index", 0, "text", content ? content : "",
                           content ? len : 0, "logprobs");
    } else {
        json_t *delta = json_object();
        if (role)
            json_object_set_new(delta, "role", json_string("assistant"));
        if (content)
            json_object_set_new(delta, "content", json_stringn(content, len));
        choice = json_pack("{s:i, s:o, s:n}", "index", 0, "delta", delta, "logprobs");
    }
    if (!choice)
        return NULL;
    json_object_set_new(choice, "finish_reason", finish ? json_string(finish) : json_null());
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", id, "object",
                     ep == OPENAI_COMPLETION ? "text_completion" : "chat.completion.chunk",
                     "created", (json_int_t)created, "model", model, "choices", choice);
}

json_t *openai_tool_calls_chunk_json(const char *id, int64_t created, const char *model,
                                     const llm_response *r)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:o}, s:n, s:n}]}", "id", id, "object",
                     "chat.completion.chunk", "created", (json_int_t)created, "model", model,
                     "choices", "index", 0, "delta", "tool_calls", tool_calls_json(r, true),
                     "logprobs", "finish_reason");
}

json_t *openai_usage_chunk_json(openai_endpoint ep, const char *id, int64_t created,
                                const char *model, const llm_response *r)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", id, "object",
                     ep == OPENAI_COMPLETION ? "text_completion" : "chat.completion.chunk",
                     "created", (json_int_t)created, "model", model, "choices", "usage",
                     openai_usage_json(r->prompt_tokens, r->completion_tokens, r->cached_tokens));
}

json_t *openai_models_json(const char *model, int64_t created)
{
    return json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", model,
                     "object", "model", "created", (json_int_t)created, "owned_by", "llmos");
}
