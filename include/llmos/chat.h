/*
 * llmos/chat.h - chat templates: turn a conversation into the exact prompt text a model was
 * trained on.
 *
 * Models publish their prompt format as a Jinja template (`tokenizer.chat_template` in GGUF
 * metadata). llmos renders it with its own interpreter for the subset of Jinja that real chat
 * templates use (docs/chat.md lists it and how it differs from Python's Jinja2). The
 * interpreter behaves like the environment model publishers test with: trim_blocks and
 * lstrip_blocks on, a single trailing newline of the template dropped, loop controls
 * (break/continue) on, and the globals raise_exception(), strftime_now(), namespace(),
 * range() and dict().
 *
 * Data comes in as jansson values (messages and tools are JSON arrays in the OpenAI / Hugging
 * Face shape) and is read only. Every render is bounded: output size, loop iterations,
 * evaluation steps, macro depth and memory all have limits, and passing one fails with
 * LLMOS_ERR_LIMIT instead of hanging or exhausting memory.
 *
 * Errors name the template line and column and the construct:
 *   "template line 12, column 8: unknown filter 'foo'".
 * A template's own raise_exception("...") fails with LLMOS_ERR_INVALID and a message that
 * carries the template's text: "template line 1, column 59: raise_exception: System role not
 * supported".
 */
#ifndef LLMOS_CHAT_H
#define LLMOS_CHAT_H

#include <stdbool.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/json.h"

/* Limits and clock for one render. Zero-initialise for the defaults; every 0 means "default". */
typedef struct jinja_options {
    /* Clock for strftime_now(): Unix seconds, formatted in UTC. 0 = the real clock, formatted
     * in local time (as Python's datetime.now() does). Tests set it for stable output. */
    int64_t now;
    size_t max_output;     /* bytes of rendered text (default 4 MiB) */
    size_t max_iterations; /* for-loop iterations in the whole render; also the longest
                            * list range() may build (default 1,000,000) */
    size_t max_steps;      /* evaluation steps: statements + expressions (default 20,000,000) */
    size_t max_depth;      /* macro call depth (default 64); nesting of the template text is
                            * bounded separately at 200 */
    size_t max_memory;     /* bytes for parsed template and values (default 256 MiB) */
} jinja_options;

/* Render template text tmpl[0..len) with the variables of the JSON object `context` (NULL =
 * none) and append the result to `out`. `opts` may be NULL for the defaults. On failure `out`
 * is left as it was and the detail message says what went wrong and where:
 *   LLMOS_ERR_FORMAT   syntax errors and runtime errors of the template (type errors,
 *                      undefined names called or dereferenced, unknown filters, ...)
 *   LLMOS_ERR_INVALID  the template called raise_exception(msg); msg is in the detail
 *   LLMOS_ERR_LIMIT    a limit of `opts` was reached
 *   LLMOS_ERR_UNSUPPORTED  a Jinja construct outside the supported subset (extends, include,
 *                      call blocks, ...) */
LLMOS_API LLMOS_NODISCARD llmos_err jinja_render(const char *tmpl, size_t len,
                                                 const json_t *context, const jinja_options *opts,
                                                 llmos_buf *out);

/* Render a chat template for a conversation and append the prompt text to `out`.
 *   tmpl          the template (tokenizer.chat_template), NUL-terminated
 *   messages      JSON array of {"role": ..., "content": ..., "tool_calls": [...], ...}
 *   tools         JSON array of tool definitions, or NULL / JSON null for "no tools" (the
 *                 variable `tools` is then undefined, as when a caller passes None)
 *   add_generation_prompt  end with the header that opens the assistant's turn
 *   bos_token, eos_token   the model's special token texts (NULL = "")
 *   extra         JSON object of further variables (e.g. date_string, builtin_tools), or NULL;
 *                 the named parameters above take precedence over members of the same name
 * Messages are passed to the template unchanged: a template that concatenates
 * tool_call.function.arguments expects a string there, one that applies |tojson expects an
 * object. Errors as for jinja_render; LLMOS_ERR_INVALID also for arguments of the wrong type. */
LLMOS_API LLMOS_NODISCARD llmos_err chat_render(const char *tmpl, const json_t *messages,
                                                const json_t *tools, bool add_generation_prompt,
                                                const char *bos_token, const char *eos_token,
                                                const json_t *extra, llmos_buf *out);

/* chat_render with explicit limits and clock (`opts` may be NULL). */
LLMOS_API LLMOS_NODISCARD llmos_err chat_render_opts(const char *tmpl, const json_t *messages,
                                                     const json_t *tools,
                                                     bool add_generation_prompt,
                                                     const char *bos_token, const char *eos_token,
                                                     const json_t *extra, const jinja_options *opts,
                                                     llmos_buf *out);

/* Name reported by chat_template_for when it falls back to ChatML. */
#define CHAT_FALLBACK_NAME "chatml (built-in fallback)"

/* The template to use for a model: `model_template` itself when it is non-NULL and not empty
 * (then *used_name = "model"), otherwise llmos's built-in ChatML template (<|im_start|>role
 * ... <|im_end|>) with *used_name = CHAT_FALLBACK_NAME. A fallback changes what the model
 * sees, so callers should show the user a notice naming *used_name. Never NULL; the strings
 * are static. `used_name` may be NULL. */
LLMOS_API const char *chat_template_for(const char *model_template, const char **used_name);

#endif
