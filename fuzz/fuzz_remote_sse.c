/*
 * fuzz_remote_sse.c - fuzz the remote backend's reader of server-sent-event streams (the
 * bytes an OpenAI-compatible server sends back to `stream: true`) with arbitrary bodies.
 *
 * Properties checked (abort on violation):
 *   - every input is accepted or refused with an error code and a message, never a crash;
 *   - on success the content is exactly the concatenation of the pieces passed to the stream
 *     callback, and every piece is valid UTF-8;
 *   - tool calls have a name, an id and arguments (possibly empty strings, never NULL).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/backend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool collect(void *ctx, const char *text, size_t len)
{
    if (!utf8_valid(text, len))
        abort();
    if (buf_append(ctx, text, len))
        abort();
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    llmos_buf seen = {0};
    llm_response r;
    llmos_err err = remote_parse_stream((const char *)data, size, collect, &seen, &r);
    if (err == LLMOS_OK) {
        if (!r.content || strlen(r.content) != seen.len ||
            memcmp(r.content, seen.data ? seen.data : "", seen.len) != 0)
            abort();
        for (size_t i = 0; i < r.n_tool_calls; i++)
            if (!r.tool_calls[i].name || !r.tool_calls[i].name[0] || !r.tool_calls[i].id ||
                !r.tool_calls[i].arguments)
                abort();
        llm_response_free(&r);
    } else if (!llmos_errmsg()[0]) {
        abort();
    }
    buf_free(&seen);
    return 0;
}
