/*
 * llmos/toolcall.h - tool calls in the formats of the main model families: parse them out of
 * generated text, build grammars that make a model write them correctly, validate arguments.
 *
 * Formats (docs/grammar.md has examples):
 *   HERMES   Hermes / Qwen2 / Qwen2.5: text, then one or more
 *            <tool_call>{"name": "...", "arguments": {...}}</tool_call>
 *   LLAMA3   Llama 3.1-3.3 JSON tool calling: the whole reply is
 *            {"name": "...", "parameters": {...}}, optionally after <|python_tag|>; several
 *            calls may be separated by ';'
 *   MISTRAL  [TOOL_CALLS][{"name": "...", "arguments": {...}, "id": "..."}, ...], or the newer
 *            [TOOL_CALLS]name[ARGS]{...} (repeated for several calls)
 *
 * The text must be decoded with special tokens rendered (tok_decode with special = true), so
 * that "<|python_tag|>" or "[TOOL_CALLS]" appear in it.
 */
#ifndef LLMOS_TOOLCALL_H
#define LLMOS_TOOLCALL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "llmos/base.h"

typedef enum toolcall_family { TOOLCALL_HERMES, TOOLCALL_LLAMA3, TOOLCALL_MISTRAL } toolcall_family;

/* "hermes" (also "qwen", "qwen2"), "llama3", "mistral" -> family; false if unknown. */
LLMOS_API bool toolcall_family_parse(const char *name, toolcall_family *out);
LLMOS_API const char *toolcall_family_name(toolcall_family f);

/* One call. All strings are owned by the toolcall_result they belong to. */
typedef struct toolcall {
    char *name;
    char *arguments; /* compact JSON text of an object */
    char *id;        /* the model's call id (Mistral), or NULL */
} toolcall;

typedef struct toolcall_result {
    char *content; /* the text outside the calls, trimmed; "" when none (never NULL) */
    toolcall *calls;
    size_t n_calls;
} toolcall_result;

/* Split text[0..len) into content and calls in the family's format. Text without calls gives
 * n_calls == 0 and the text as content. A call that is recognisable but broken (invalid JSON,
 * no "name", arguments not an object) fails with LLMOS_ERR_FORMAT naming the call's number,
 * the byte offset and what is wrong. Free with toolcall_result_free (also after a failure). */
LLMOS_API LLMOS_NODISCARD llmos_err toolcall_parse(toolcall_family f, const char *text, size_t len,
                                                   toolcall_result *out);
LLMOS_API void toolcall_result_free(toolcall_result *r);

/* The part of a reply that is answer text for certain while the reply is still being
 * generated: text[begin..end). */
typedef struct toolcall_span {
    size_t begin, end;
    bool call; /* a call has begun (a complete opener, or a LLAMA3 reply that opens with '{'):
                  nothing past `end` is answer text before the whole reply is parsed */
} toolcall_span;

/* For text[0..len), what a model that may call tools in family f's format has generated so
 * far: how much of it can be shown to the user now, before the reply is complete and parsed.
 * White space at the start is skipped and white space at the end held back (toolcall_parse
 * trims the content); so is a tail that may still grow into the family's opener
 * ("<tool_call>" anywhere for HERMES; "<|python_tag|>" anywhere, or '{' opening the reply, for
 * LLAMA3; "[TOOL_CALLS]" anywhere for MISTRAL), and from a complete opener on nothing is
 * answer text. Whatever the model writes next, text[begin..end) is a prefix of the content
 * toolcall_parse finds in the finished reply. */
LLMOS_API toolcall_span toolcall_answer_span(toolcall_family f, const char *text, size_t len);

/* Bounds on the tools of one request (beyond them toolcall_grammar fails with LLMOS_ERR_LIMIT
 * naming the bound and the value): how many tools, and the size of all their parameters
 * schemas together, in the nodes of JSCHEMA_MAX_NODES (llmos/grammar.h), so that a tools array
 * asks for no more work than one schema may. Each schema also keeps the JSCHEMA_MAX_* bounds.
 * 128 tools is OpenAI's limit too. */
#define TOOLCALL_MAX_TOOLS        128
#define TOOLCALL_MAX_SCHEMA_NODES 10000

typedef enum toolcall_mode {
    TOOLCALL_AUTO,    /* free text, or tool calls (tool_choice "auto") */
    TOOLCALL_REQUIRED /* at least one tool call, no text (tool_choice "required") */
} toolcall_mode;

/* Append to `out` a GBNF grammar (start rule "root") for replies in the family's format whose
 * calls name one of `tools` (OpenAI format: [{"type": "function", "function": {"name",
 * "description", "parameters"}}]) with arguments valid against that tool's parameters schema.
 * `only` non-NULL restricts the calls to that function (tool_choice naming a function).
 * More than TOOLCALL_MAX_TOOLS tools, or parameters above TOOLCALL_MAX_SCHEMA_NODES together,
 * fail with LLMOS_ERR_LIMIT.
 * In TOOLCALL_AUTO, free text may not begin with the character that opens a call in the
 * family's format ('<' for HERMES, '{' or '<' for LLAMA3, '[' for MISTRAL), so a reply that
 * starts a call must finish it correctly; after other text the rest is free. */
LLMOS_NODISCARD llmos_err toolcall_grammar(const json_t *tools, toolcall_family f,
                                           toolcall_mode mode, const char *only, llmos_buf *out);

/* Check a parsed call against `tools`: the name must be one of them (LLMOS_ERR_NOT_FOUND
 * listing the names otherwise) and the arguments valid against its parameters schema
 * (LLMOS_ERR_INVALID with the path, jschema_validate). */
LLMOS_NODISCARD llmos_err toolcall_validate(const json_t *tools, const toolcall *call);

#endif
