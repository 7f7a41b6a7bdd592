/*
 * fuzz_request.c - fuzz openai_request_parse, the function that turns an HTTP request body
 * from a client into an llm_request for `llmos serve`.
 *
 * The first byte picks the endpoint (chat, completion, embeddings) and the context size; the
 * rest is the body. Invariants checked on every input: a failure leaves nothing allocated and
 * names a member no longer than its buffer; a success yields a request whose pointers are
 * usable (messages an array for chat, a prompt for completions, non-empty strings for
 * embeddings, stop strings non-empty, max_tokens within the context), and the answer shapes
 * built from it serialise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    openai_endpoint ep = (openai_endpoint)(data[0] % 3);
    size_t n_ctx = (data[0] & 0x80) ? 64 : 4096;
    openai_request rq;
    llmos_err err = openai_request_parse(ep, (const char *)data + 1, size - 1, n_ctx, &rq);
    if (err) {
        if (rq.body || rq.inputs ||
            strnlen(rq.error_param, sizeof rq.error_param) == sizeof rq.error_param)
            abort();
        return 0;
    }
    if (!json_is_object(rq.body))
        abort();
    if (ep == OPENAI_CHAT &&
        (!json_is_array(rq.req.messages) || json_array_size(rq.req.messages) == 0 || rq.req.prompt))
        abort();
    if (ep == OPENAI_COMPLETION && !rq.req.prompt)
        abort();
    if (ep == OPENAI_EMBEDDING) {
        if (rq.n_inputs == 0)
            abort();
        for (size_t i = 0; i < rq.n_inputs; i++)
            if (!rq.inputs[i] || !rq.inputs[i][0])
                abort();
    }
    if (rq.req.max_tokens < 0 || (size_t)rq.req.max_tokens > n_ctx)
        abort();
    for (size_t i = 0; i < rq.req.n_stop; i++)
        if (!rq.req.stop[i] || !rq.req.stop[i][0])
            abort();

    /* the answer shapes for this request serialise */
    llm_response r = {0};
    r.content = (char *)(rq.req.prompt ? rq.req.prompt : "x");
    r.finish_reason = "stop";
    const char *model = rq.model ? rq.model : "m";
    json_t *v = ep == OPENAI_EMBEDDING ? openai_models_json(model, 0)
                                       : openai_response_json(ep, "id", 0, model, &r);
    llmos_buf out = {0};
    if (!v || ljson_to_buf(v, 0, &out))
        abort();
    json_decref(v);
    buf_free(&out);
    openai_request_free(&rq);
    return 0;
}
