/*
 * toolcall.c - tool calls of the Hermes/Qwen, Llama 3 and Mistral formats: parsing generated
 * text into calls, grammars that constrain a model to well-formed calls, argument validation.
 *
 * The formats follow the models' own chat templates (tokenizer_config.json of Qwen2.5,
 * Hermes-2-Pro, Llama-3.1-Instruct, Mistral-7B-Instruct-v0.3 and Mistral-Small-3.x):
 *   Qwen2.5:   <tool_call>\n{"name": <name>, "arguments": <args>}\n</tool_call>
 *   Llama 3.1: {"name": <name>, "parameters": <args>}  (JSON tool calling, no tag), or after
 *              <|python_tag|>
 *   Mistral:   [TOOL_CALLS][{"name": <name>, "arguments": <args>, "id": <9 chars>}]
 *              [TOOL_CALLS]<name>[ARGS]<args>   (v11 tokenizers; [CALL_ID]<id> may come first)
 * Parsing is lenient where models are sloppy (a missing </tool_call> at the end, arguments
 * given as a JSON string, "arguments" for "parameters") and strict where the text is clearly
 * meant as a call but broken. While a reply is still being generated, toolcall_answer_span
 * says how much of it is answer text for certain, so that text can stream while a call is
 * never shown.
 */
#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar/json_schema.h"
#include "llmos/json.h"
#include "llmos/toolcall.h"

bool toolcall_family_parse(const char *name, toolcall_family *out)
{
    if (!strcmp(name, "hermes") || !strcmp(name, "qwen") || !strcmp(name, "qwen2"))
        *out = TOOLCALL_HERMES;
    else if (!strcmp(name, "llama3"))
        *out = TOOLCALL_LLAMA3;
    else if (!strcmp(name, "mistral"))
        *out = TOOLCALL_MISTRAL;
    else
        return false;
    return true;
}

const char *toolcall_family_name(toolcall_family f)
{
    switch (f) {
    case TOOLCALL_HERMES: return "hermes";
    case TOOLCALL_LLAMA3: return "llama3";
    case TOOLCALL_MISTRAL: return "mistral";
    }
    return "unknown";
}

void toolcall_result_free(toolcall_result *r)
{
    if (!r)
        return;
    for (size_t k = 0; k < r->n_calls; k++) {
        free(r->calls[k].name);
        free(r->calls[k].arguments);
        free(r->calls[k].id);
    }
    free(r->calls);
    free(r->content);
    memset(r, 0, sizeof *r);
}

/* ---- parsing helpers ----------------------------------------------------------------------- */

static const char *find(const char *s, size_t n, size_t from, const char *needle)
{
    size_t m = strlen(needle);
    if (from > n)
        return NULL;
    return memmem(s + from, n - from, needle, m);
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && isspace((unsigned char)s[i]))
        i++;
    return i;
}

static bool starts(const char *s, size_t n, size_t i, const char *lit)
{
    size_t m = strlen(lit);
    return n - i >= m && memcmp(s + i, lit, m) == 0;
}

/* Parse one JSON value at s[i..n); *end gets the offset after it. */
static llmos_err json_at(const char *s, size_t n, size_t i, size_t call_no, json_t **out,
                         size_t *end)
{
    json_error_t e;
    *out = json_loadb(s + i, n - i, JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &e);
    if (!*out)
        return llmos_fail(LLMOS_ERR_FORMAT, "tool call %zu: invalid JSON at byte %zu: %s", call_no,
                          i + (size_t)(e.position > 0 ? e.position : 0), e.text);
    *end = i + (size_t)e.position;
    return LLMOS_OK;
}

static llmos_err add_call(toolcall_result *r, const json_t *obj, size_t call_no, size_t at)
{
    if (!json_is_object(obj))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "tool call %zu (byte %zu): expected a JSON object "
                          "{\"name\": ..., \"arguments\": {...}}",
                          call_no, at);
    const json_t *name = json_object_get(obj, "name");
    if (!json_is_string(name) || json_string_length(name) == 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "tool call %zu (byte %zu): missing \"name\" (a "
                          "non-empty string)",
                          call_no, at);
    const json_t *args = json_object_get(obj, "arguments");
    if (!args)
        args = json_object_get(obj, "parameters");
    json_t *parsed = NULL;
    if (json_is_string(args)) { /* some models write the arguments as a JSON string */
        if (ljson_parse_text(json_string_value(args), json_string_length(args), "arguments", 0,
                             &parsed) != LLMOS_OK)
            return llmos_fail_context(LLMOS_ERR_FORMAT, "tool call %zu (byte %zu): ", call_no, at);
        args = parsed;
    }
    if (args && !json_is_object(args)) {
        json_decref(parsed);
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "tool call %zu (byte %zu): \"arguments\" must be an "
                          "object",
                          call_no, at);
    }
    char *text = args ? json_dumps(args, JSON_COMPACT) : strdup("{}");
    json_decref(parsed);
    const json_t *id = json_object_get(obj, "id");
    toolcall c = {strdup(json_string_value(name)), text,
                  json_is_string(id) ? strdup(json_string_value(id)) : NULL};
    toolcall *grown = realloc(r->calls, (r->n_calls + 1) * sizeof *grown);
    if (!c.name || !c.arguments || (json_is_string(id) && !c.id) || !grown) {
        free(c.name);
        free(c.arguments);
        free(c.id);
        if (grown)
            r->calls = grown;
        return llmos_fail(LLMOS_ERR_NOMEM, "tool calls: out of memory");
    }
    r->calls = grown;
    r->calls[r->n_calls++] = c;
    return LLMOS_OK;
}

/* ---- the three formats --------------------------------------------------------------------- */

static llmos_err parse_hermes(const char *s, size_t n, toolcall_result *r, llmos_buf *content)
{
    static const char open[] = "<tool_call>", close[] = "</tool_call>";
    size_t pos = 0;
    llmos_err err = LLMOS_OK;
    const char *at;
    while (!err && (at = find(s, n, pos, open))) {
        size_t start = (size_t)(at - s);
        if ((err = buf_append(content, s + pos, start - pos)))
            break;
        size_t body = start + strlen(open);
        const char *cl = find(s, n, body, close);
        size_t body_end = cl ? (size_t)(cl - s) : n; /* a missing close at the end is forgiven */
        size_t call_no = r->n_calls + 1, end = 0;
        json_t *obj = NULL;
        size_t j = skip_ws(s, body_end, body);
        if (j == body_end) {
            err = llmos_fail(LLMOS_ERR_FORMAT, "tool call %zu (byte %zu): empty <tool_call>",
                             call_no, start);
            break;
        }
        if ((err = json_at(s, body_end, j, call_no, &obj, &end)))
            break;
        if (skip_ws(s, body_end, end) != body_end) {
            json_decref(obj);
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "tool call %zu: unexpected text at byte %zu after "
                             "the JSON object (expected </tool_call>)",
                             call_no, skip_ws(s, body_end, end));
            break;
        }
        err = add_call(r, obj, call_no, start);
        json_decref(obj);
        pos = cl ? body_end + strlen(close) : n;
    }
    if (!err && pos < n)
        err = buf_append(content, s + pos, n - pos);
    return err;
}

static bool looks_like_call(const json_t *obj)
{
    return json_is_object(obj) && json_is_string(json_object_get(obj, "name")) &&
           (json_object_get(obj, "parameters") || json_object_get(obj, "arguments"));
}

static llmos_err parse_llama3(const char *s, size_t n, toolcall_result *r, llmos_buf *content)
{
    static const char tag[] = "<|python_tag|>";
    const char *at = find(s, n, 0, tag);
    size_t i;
    if (at) {
        llmos_err err = buf_append(content, s, (size_t)(at - s));
        if (err)
            return err;
        i = (size_t)(at - s) + strlen(tag);
    } else {
        i = skip_ws(s, n, 0);
        json_t *first = NULL;
        size_t end;
        bool is_call = i < n && s[i] == '{' && json_at(s, n, i, 1, &first, &end) == LLMOS_OK &&
                       looks_like_call(first);
        json_decref(first);
        llmos_err_clear();
        if (!is_call)
            return buf_append(content, s, n); /* ordinary text (or JSON that is no call) */
    }
    for (;;) {
        size_t call_no = r->n_calls + 1, end = 0;
        i = skip_ws(s, n, i);
        json_t *obj = NULL;
        llmos_err err = json_at(s, n, i, call_no, &obj, &end);
        if (err)
            return err;
        err = add_call(r, obj, call_no, i);
        json_decref(obj);
        if (err)
            return err;
        i = skip_ws(s, n, end);
        if (i == n)
            return LLMOS_OK;
        if (s[i] != ';')
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "tool call %zu: unexpected text at byte %zu "
                              "after the call (expected ';' and another call, or the end)",
                              call_no, i);
        i++;
    }
}

static llmos_err parse_mistral(const char *s, size_t n, toolcall_result *r, llmos_buf *content)
{
    static const char tag[] = "[TOOL_CALLS]";
    const char *at = find(s, n, 0, tag);
    if (!at)
        return buf_append(content, s, n);
    llmos_err err = buf_append(content, s, (size_t)(at - s));
    size_t i = skip_ws(s, n, (size_t)(at - s) + strlen(tag));
    if (err)
        return err;
    if (i < n && s[i] == '[') { /* v3: a JSON array of calls */
        json_t *arr = NULL;
        size_t end;
        if ((err = json_at(s, n, i, 1, &arr, &end)))
            return err;
        if (!json_is_array(arr) || json_array_size(arr) == 0) {
            json_decref(arr);
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "tool call 1 (byte %zu): expected a non-empty "
                              "array of calls after [TOOL_CALLS]",
                              i);
        }
        for (size_t k = 0; k < json_array_size(arr) && !err; k++)
            err = add_call(r, json_array_get(arr, k), k + 1, i);
        json_decref(arr);
        if (!err && skip_ws(s, n, end) != n)
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "tool calls: unexpected text at byte %zu after "
                             "the array of calls",
                             skip_ws(s, n, end));
        return err;
    }
    /* v11: name[ARGS]{...}, or name[CALL_ID]id[ARGS]{...}, each call after [TOOL_CALLS] */
    for (;;) {
        size_t call_no = r->n_calls + 1;
        const char *args_at = find(s, n, i, "[ARGS]");
        if (!args_at)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "tool call %zu (byte %zu): expected "
                              "[{...}] or name[ARGS]{...} after [TOOL_CALLS]",
                              call_no, i);
        size_t name_end = (size_t)(args_at - s);
        const char *id_at = find(s, name_end, i, "[CALL_ID]");
        size_t id_start = 0;
        if (id_at) {
            id_start = (size_t)(id_at - s) + strlen("[CALL_ID]");
            name_end = (size_t)(id_at - s);
        }
        json_t *obj = json_object();
        json_t *name = json_stringn(s + i, name_end - i);
        if (!obj || !name || json_object_set_new(obj, "name", name)) {
            json_decref(obj);
            return llmos_fail(LLMOS_ERR_NOMEM, "tool calls: out of memory");
        }
        if (id_at && json_object_set_new(
                         obj, "id", json_stringn(s + id_start, (size_t)(args_at - s) - id_start))) {
            json_decref(obj);
            return llmos_fail(LLMOS_ERR_NOMEM, "tool calls: out of memory");
        }
        for (size_t k = i; k < name_end; k++)
            if (!isalnum((unsigned char)s[k]) && s[k] != '_' && s[k] != '-' && s[k] != '.') {
                json_decref(obj);
                return llmos_fail(LLMOS_ERR_FORMAT,
                                  "tool call %zu (byte %zu): '%.*s' is not a "
                                  "function name",
                                  call_no, i, (int)(name_end - i > 40 ? 40 : name_end - i), s + i);
            }
        size_t j = skip_ws(s, n, (size_t)(args_at - s) + strlen("[ARGS]")), end;
        json_t *args = NULL;
        if ((err = json_at(s, n, j, call_no, &args, &end))) {
            json_decref(obj);
            return err;
        }
        json_object_set_new(obj, "arguments", args);
        err = add_call(r, obj, call_no, i);
        json_decref(obj);
        if (err)
            return err;
        i = skip_ws(s, n, end);
        if (i == n)
            return LLMOS_OK;
        if (!starts(s, n, i, tag))
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "tool call %zu: unexpected text at byte %zu "
                              "after the arguments (expected [TOOL_CALLS] or the end)",
                              call_no, i);
        i = skip_ws(s, n, i + strlen(tag));
    }
}

llmos_err toolcall_parse(toolcall_family f, const char *text, size_t len, toolcall_result *out)
{
    memset(out, 0, sizeof *out);
    llmos_buf content = {0};
    llmos_err err;
    switch (f) {
    case TOOLCALL_HERMES: err = parse_hermes(text, len, out, &content); break;
    case TOOLCALL_LLAMA3: err = parse_llama3(text, len, out, &content); break;
    case TOOLCALL_MISTRAL: err = parse_mistral(text, len, out, &content); break;
    default: err = llmos_fail(LLMOS_ERR_INVALID, "toolcall_parse: unknown family %d", (int)f);
    }
    /* trim the content */
    size_t a = 0, b = content.len;
    while (a < b && isspace((unsigned char)content.data[a]))
        a++;
    while (b > a && isspace((unsigned char)content.data[b - 1]))
        b--;
    out->content = strndup(content.len ? content.data + a : "", b - a);
    buf_free(&content);
    if (!err && !out->content)
        err = llmos_fail(LLMOS_ERR_NOMEM, "tool calls: out of memory");
    return err;
}

/* ---- what can be shown while a reply is generated ------------------------------------------ */

/* Length of the longest suffix of s[0..n) that is a proper prefix of `opener`. */
static size_t partial_opener(const char *s, size_t n, const char *opener)
{
    size_t ol = strlen(opener);
    for (size_t k = ol - 1 < n ? ol - 1 : n; k > 0; k--)
        if (memcmp(s + n - k, opener, k) == 0)
            return k;
    return 0;
}

toolcall_span toolcall_answer_span(toolcall_family f, const char *text, size_t len)
{
    /* what toolcall_parse takes for the start of a call, wherever it appears */
    static const char *const opener[] = {
        [TOOLCALL_HERMES] = "<tool_call>",
        [TOOLCALL_LLAMA3] = "<|python_tag|>",
        [TOOLCALL_MISTRAL] = "[TOOL_CALLS]",
    };
    assert((size_t)f < sizeof opener / sizeof opener[0]);
    toolcall_span sp = {0};
    if (len == 0)
        return sp;
    sp.begin = skip_ws(text, len, 0);
    if (f == TOOLCALL_LLAMA3 && sp.begin < len && text[sp.begin] == '{') {
        /* a reply that opens with an object is a call if the object is one (parse_llama3) */
        sp.end = sp.begin;
        sp.call = true;
        return sp;
    }
    const char *at = find(text, len, 0, opener[f]);
    if (at) {
        sp.end = (size_t)(at - text);
        sp.call = true;
    } else {
        sp.end = len - partial_opener(text, len, opener[f]);
    }
    assert(sp.end >= sp.begin); /* every opener begins with a character that is not space */
    while (sp.end > sp.begin && isspace((unsigned char)text[sp.end - 1]))
        sp.end--;
    return sp;
}

/* ---- grammars ------------------------------------------------------------------------------ */

/* The function object of tools[k] (OpenAI {"type":"function","function":{...}} or bare). */
static llmos_err tool_fn(const json_t *tools, size_t k, const char **name, const json_t **params)
{
    const json_t *t = json_array_get(tools, k);
    const json_t *fn = json_object_get(t, "function");
    if (!fn)
        fn = t;
    const json_t *nm = json_object_get(fn, "name");
    if (!json_is_string(nm) || json_string_length(nm) == 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "tools[%zu]: missing function.name (a non-empty "
                          "string)",
                          k);
    *name = json_string_value(nm);
    *params = json_object_get(fn, "parameters");
    return LLMOS_OK;
}

static llmos_err literal(llmos_buf *out, const char *s)
{
    llmos_err err = buf_putc(out, '"');
    for (; *s && !err; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            err = buf_printf(out, "\\%c", c);
        else if (c < 0x20)
            err = buf_printf(out, "\\x%02x", c);
        else
            err = buf_putc(out, (char)c);
    }
    return err ? err : buf_putc(out, '"');
}

llmos_err toolcall_grammar(const json_t *tools, toolcall_family f, toolcall_mode mode,
                           const char *only, llmos_buf *out)
{
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "tools: expected a non-empty array of tools");
    /* Bound the work before doing any: each tool's schema is compiled into the grammar. */
    if (json_array_size(tools) > TOOLCALL_MAX_TOOLS)
        return llmos_fail(LLMOS_ERR_LIMIT, "tools: %zu tools, more than TOOLCALL_MAX_TOOLS (%d)",
                          json_array_size(tools), TOOLCALL_MAX_TOOLS);
    jschema_size size = {0};
    for (size_t k = 0; k < json_array_size(tools); k++) {
        const json_t *fn = json_object_get(json_array_get(tools, k), "function");
        jschema_measure(json_object_get(fn ? fn : json_array_get(tools, k), "parameters"), &size);
    }
    if (size.nodes > TOOLCALL_MAX_SCHEMA_NODES)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "tools: the parameters of the %zu tools hold %zu subschemas and "
                          "enum/const values together, more than TOOLCALL_MAX_SCHEMA_NODES (%d)",
                          json_array_size(tools), size.nodes, TOOLCALL_MAX_SCHEMA_NODES);
    const char *args_key = f == TOOLCALL_LLAMA3 ? "parameters" : "arguments";
    llmos_buf fns = {0}, rules = {0};
    llmos_err err = LLMOS_OK;
    size_t used = 0;
    for (size_t k = 0; k < json_array_size(tools) && !err; k++) {
        const char *name = ""; /* set by tool_fn when it succeeds */
        const json_t *params = NULL;
        if ((err = tool_fn(tools, k, &name, &params)))
            break;
        if (only && strcmp(only, name) != 0)
            continue;
        char px[32];
        snprintf(px, sizeof px, "t%zu-", k);
        json_t *empty = NULL;
        if (!params)
            params = empty = json_pack("{s:s}", "type", "object");
        err = jschema_rules(params, px, "tc-", &rules); /* primitives shared, below */
        json_decref(empty);
        if (err) {
            err = llmos_fail_context(err, "tools[%zu] (%s) parameters: ", k, name);
            break;
        }
        json_t *js = json_string(name);
        char *quoted = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL;
        json_decref(js);
        if (!quoted) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "tools: out of memory");
            break;
        }
        err = buf_printf(&rules, "tc-fn%zu ::= \"{\" tc-ws \"\\\"name\\\"\" tc-ws \":\" tc-ws ", k);
        if (!err)
            err = literal(&rules, quoted);
        free(quoted);
        if (!err)
            err = buf_printf(&rules,
                             " tc-ws \",\" tc-ws \"\\\"%s\\\"\" tc-ws \":\" tc-ws "
                             "t%zu-root tc-ws \"}\"\n",
                             args_key, k);
        if (!err)
            err = buf_printf(&fns, "%stc-fn%zu", used ? " | " : "", k);
        used++;
    }
    if (!err && used == 0)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "tools: no function named '%s' among the tools",
                         only ? only : "");
    if (!err) {
        const char *calls = "", *text_start = "";
        switch (f) {
        case TOOLCALL_HERMES:
            calls = "tc-calls ::= tc-one (tc-ws tc-one){0,15}\n"
                    "tc-one ::= \"<tool_call>\" tc-ws tc-fn tc-ws \"</tool_call>\"\n";
            text_start = "[^<]";
            break;
        case TOOLCALL_LLAMA3:
            calls = "tc-calls ::= \"<|python_tag|>\"? tc-fn\n";
            text_start = "[^{<]";
            break;
        case TOOLCALL_MISTRAL:
            calls = "tc-calls ::= \"[TOOL_CALLS]\" tc-ws \"[\" tc-ws tc-fn "
                    "(tc-ws \",\" tc-ws tc-fn){0,15} tc-ws \"]\"\n";
            text_start = "[^[]";
            break;
        }
        if (mode == TOOLCALL_AUTO)
            err =
                buf_printf(out, "root ::= tc-calls | tc-text\ntc-text ::= (%s .*)?\n", text_start);
        else
            err = buf_puts(out, "root ::= tc-calls\n");
        if (!err)
            err = buf_printf(out, "%stc-fn ::= %s\n%s", calls, fns.data,
                             rules.data ? rules.data : "");
        if (!err)
            err = jschema_primitives("tc-", out); /* tc-ws, tc-string, ... */
    }
    buf_free(&fns);
    buf_free(&rules);
    return err;
}

llmos_err toolcall_validate(const json_t *tools, const toolcall *call)
{
    if (!json_is_array(tools))
        return llmos_fail(LLMOS_ERR_INVALID, "tools: expected an array of tools");
    char names[256] = "";
    size_t used = 0;
    for (size_t k = 0; k < json_array_size(tools); k++) {
        const char *name = ""; /* set by tool_fn when it succeeds */
        const json_t *params = NULL;
        llmos_err err = tool_fn(tools, k, &name, &params);
        if (err)
            return err;
        if (strcmp(name, call->name) != 0) {
            if (used < sizeof names - 1)
                used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
                                         used ? ", " : "", name);
            continue;
        }
        json_t *args = NULL;
        err = ljson_parse_text(call->arguments, strlen(call->arguments), "arguments", 0, &args);
        if (err)
            return llmos_fail_context(LLMOS_ERR_INVALID, "tool '%s': ", name);
        char what[160];
        snprintf(what, sizeof what, "tool '%s' arguments", name);
        err = params ? jschema_validate(params, args, what) : LLMOS_OK;
        json_decref(args);
        return err;
    }
    return llmos_fail(LLMOS_ERR_NOT_FOUND,
                      "tool call names '%s', which is not among the tools "
                      "(%s)",
                      call->name, names);
}
