/*
 * fuzz_jinja.c - fuzz the chat-template interpreter: arbitrary bytes as a template, rendered
 * against a conversation with tool calls and tools. If the input holds a NUL byte, the bytes
 * after it are parsed as a JSON object of extra variables (a context from outside).
 *
 * Whatever the bytes, rendering must return (tight limits keep every run short), never crash,
 * and on success produce output within max_output; on failure leave the output untouched.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/chat.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_messages[] =
    "[{\"role\": \"system\", \"content\": \"sys\"},"
    " {\"role\": \"user\", \"content\": \"hi \\u00e9\"},"
    " {\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"call12345\","
    "  \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, "
    "2.5]}}}]},"
    " {\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\": \"{\\\"r\\\": 1}\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>x</think>done\"}]";

static const char fuzz_tools[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"description\": \"d\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\","
    " \"description\": \"list\"}}}}}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    size_t tlen = size;
    const uint8_t *nul = memchr(data, 0, size);
    json_t *ctx = NULL;
    if (nul) {
        tlen = (size_t)(nul - data);
        size_t rest = size - tlen - 1;
        if (ljson_parse_text((const char *)nul + 1, rest, "fuzz context", 32, &ctx) != LLMOS_OK ||
            !json_is_object(ctx)) {
            json_decref(ctx);
            ctx = NULL;
        }
    }
    if (!ctx)
        ctx = json_object();
    json_t *messages = NULL, *tools = NULL;
    if (ljson_parse_text(fuzz_messages, strlen(fuzz_messages), "messages", 0, &messages) !=
            LLMOS_OK ||
        ljson_parse_text(fuzz_tools, strlen(fuzz_tools), "tools", 0, &tools) != LLMOS_OK)
        abort(); /* the fixed inputs are valid */
    json_object_set(ctx, "messages", messages);
    json_object_set(ctx, "tools", tools);
    json_object_set_new(ctx, "add_generation_prompt", json_true());
    json_object_set_new(ctx, "bos_token", json_string("<s>"));

    jinja_options o = {.now = 1735689600,
                       .max_output = 1 << 16,
                       .max_iterations = 10000,
                       .max_steps = 100000,
                       .max_depth = 16,
                       .max_memory = 16 << 20};
    llmos_buf out = {0};
    if (buf_puts(&out, "pre") != LLMOS_OK)
        abort();
    llmos_err err = jinja_render(text, tlen, ctx, &o, &out);
    if (err == LLMOS_OK) {
        if (out.len < 3 || out.len - 3 > o.max_output || memcmp(out.data, "pre", 3) != 0)
            abort(); /* output must be appended and bounded */
    } else if (out.len != 3 || memcmp(out.data, "pre", 3) != 0 || !llmos_errmsg()[0]) {
        abort(); /* a failed render leaves the output as it was and says why */
    }
    buf_free(&out);
    json_decref(messages);
    json_decref(tools);
    json_decref(ctx);
    return 0;
}
