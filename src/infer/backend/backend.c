/*
 * backend.c - the dispatchers of the backend interface and the request/response helpers.
 *
 * The implementations live in backend_local.c (the engine in this process) and remote.c (an
 * OpenAI-compatible server); this file only routes calls through the ops table and owns the
 * shapes every backend shares.
 */
#include <stdlib.h>
#include <string.h>

#include "llmos/backend.h"

llm_request llm_request_default(void)
{
    llm_request r = {0};
    r.sampling = sampler_default_params();
    return r;
}

void llm_response_free(llm_response *r)
{
    if (!r)
        return;
    free(r->content);
    for (size_t i = 0; i < r->n_tool_calls; i++) {
        free(r->tool_calls[i].id);
        free(r->tool_calls[i].name);
        free(r->tool_calls[i].arguments);
    }
    free(r->tool_calls);
    *r = (llm_response){0};
}

llmos_err llm_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream, void *stream_ctx,
                   llm_response *resp)
{
    *resp = (llm_response){0};
    if (!b || !b->ops->chat)
        return llmos_fail(LLMOS_ERR_INVALID, "llm_chat: no backend");
    if (!req || (!req->messages && !req->prompt))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "llm_chat: the request has neither messages nor a prompt");
    return b->ops->chat(b, req, stream, stream_ctx, resp);
}

llmos_err llm_embed(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim)
{
    *vec = NULL;
    *dim = 0;
    if (!b || !b->ops->embed)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "%s backend cannot compute embeddings",
                          b ? b->ops->kind : "no");
    return b->ops->embed(b, text, len, vec, dim);
}

llmos_err llm_count_tokens(llm_backend *b, const char *text, size_t len, size_t *n)
{
    if (!b || !b->ops->count_tokens) {
        *n = len / 4 + 1; /* the usual rough estimate: about four bytes per token */
        return LLMOS_OK;
    }
    return b->ops->count_tokens(b, text, len, n);
}

llmos_err llm_count_prompt(llm_backend *b, const json_t *messages, const json_t *tools, size_t *n)
{
    *n = 0;
    if (b && b->ops->count_prompt)
        return b->ops->count_prompt(b, messages, tools, n);
    /* the estimate: each message's texts, about four bytes a token, and 4 tokens of framing */
    size_t bytes = 0, count = 0;
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        char *text = json_dumps(m, JSON_COMPACT);
        bytes += text ? strlen(text) : 0;
        free(text);
        count++;
    }
    if (tools) {
        char *text = json_dumps(tools, JSON_COMPACT);
        bytes += text ? strlen(text) : 0;
        free(text);
    }
    *n = bytes / 4 + 4 * count + 8;
    return LLMOS_OK;
}

size_t llm_context_size(llm_backend *b)
{
    return b && b->ops->context_size ? b->ops->context_size(b) : 0;
}

size_t llm_max_concurrent(llm_backend *b)
{
    if (!b)
        return 0;
    return b->ops->max_concurrent ? b->ops->max_concurrent(b) : 1;
}

llmos_err llm_get_stats(llm_backend *b, llm_stats *st)
{
    *st = (llm_stats){0};
    if (!b || !b->ops->stats)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "the %s backend keeps no scheduler statistics",
                          b ? b->ops->kind : "no");
    return b->ops->stats(b, st);
}

llmos_err llm_kv_save(llm_backend *b, const char *scope, llmos_buf *out)
{
    if (!b || !b->ops->kv_save)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "the %s backend keeps no KV cache to save",
                          b ? b->ops->kind : "no");
    if (!scope)
        return llmos_fail(LLMOS_ERR_INVALID, "llm_kv_save: a cache scope is required");
    return b->ops->kv_save(b, scope, out);
}

llmos_err llm_kv_restore(llm_backend *b, const char *scope, const void *data, size_t len)
{
    if (!b || !b->ops->kv_restore)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "the %s backend keeps no KV cache to restore",
                          b ? b->ops->kind : "no");
    if (!scope || !data)
        return llmos_fail(LLMOS_ERR_INVALID, "llm_kv_restore: a cache scope and bytes are "
                                             "required");
    return b->ops->kv_restore(b, scope, data, len);
}

size_t llm_kv_forget(llm_backend *b, const char *scope)
{
    return b && scope && b->ops->kv_forget ? b->ops->kv_forget(b, scope) : 0;
}

const char *llm_model_name(llm_backend *b)
{
    return b && b->ops->model_name ? b->ops->model_name(b) : "none";
}

void llm_backend_free(llm_backend *b)
{
    if (b && b->ops->free)
        b->ops->free(b);
}
