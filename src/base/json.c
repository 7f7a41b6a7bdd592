/*
 * json.c - helpers over jansson: located parse errors, typed getters, serialisation.
 */
#include <string.h>

#include "llmos/json.h"

/* Depth of nesting of a parsed value; jansson itself caps at 2048 but we want a caller-chosen
 * bound before anything walks the tree recursively. */
static size_t json_depth(const json_t *v, size_t limit)
{
    if (limit == 0)
        return 1;
    size_t deepest = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *c;
        json_object_foreach((json_t *)v, k, c)
        {
            size_t d = json_depth(c, limit - 1);
            if (d > deepest)
                deepest = d;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *c;
        json_array_foreach(v, i, c)
        {
            size_t d = json_depth(c, limit - 1);
            if (d > deepest)
                deepest = d;
        }
    } else {
        return 0;
    }
    return deepest + 1;
}

llmos_err ljson_parse_text(const char *text, size_t len, const char *what, size_t max_depth,
                           json_t **out)
{
    *out = NULL;
    if (!what)
        what = "JSON";
    if (!text)
        return llmos_fail(LLMOS_ERR_INVALID, "%s: no text to parse", what);
    if (max_depth == 0)
        max_depth = 256;
    json_error_t e;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &e);
    if (!v)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: line %d, column %d: %s", what, e.line, e.column,
                          e.text);
    if (json_depth(v, max_depth + 1) > max_depth) {
        json_decref(v);
        return llmos_fail(LLMOS_ERR_LIMIT, "%s: nested deeper than %zu levels", what, max_depth);
    }
    *out = v;
    return LLMOS_OK;
}

static json_t *member(const json_t *obj, const char *key)
{
    return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

const char *ljson_get_string(const json_t *obj, const char *key, const char *def)
{
    json_t *v = member(obj, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

int64_t ljson_get_int(const json_t *obj, const char *key, int64_t def)
{
    json_t *v = member(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

double ljson_get_number(const json_t *obj, const char *key, double def)
{
    json_t *v = member(obj, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

bool ljson_get_bool(const json_t *obj, const char *key, bool def)
{
    json_t *v = member(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

json_t *ljson_get_object(const json_t *obj, const char *key)
{
    json_t *v = member(obj, key);
    return json_is_object(v) ? v : NULL;
}

json_t *ljson_get_array(const json_t *obj, const char *key)
{
    json_t *v = member(obj, key);
    return json_is_array(v) ? v : NULL;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

llmos_err ljson_require_string(const json_t *obj, const char *key, const char *what,
                               const char **out)
{
    json_t *v = member(obj, key);
    if (!v)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: missing required member \"%s\"", what, key);
    if (!json_is_string(v))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: member \"%s\" must be a string, found %s", what,
                          key, type_name(v));
    *out = json_string_value(v);
    return LLMOS_OK;
}

llmos_err ljson_require_int(const json_t *obj, const char *key, const char *what, int64_t *out)
{
    json_t *v = member(obj, key);
    if (!v)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: missing required member \"%s\"", what, key);
    if (!json_is_integer(v))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: member \"%s\" must be an integer, found %s", what,
                          key, type_name(v));
    *out = (int64_t)json_integer_value(v);
    return LLMOS_OK;
}

static int dump_cb(const char *data, size_t n, void *ctx)
{
    return buf_append(ctx, data, n) == LLMOS_OK ? 0 : -1;
}

llmos_err ljson_to_buf(const json_t *v, size_t flags, llmos_buf *out)
{
    if (!v)
        return llmos_fail(LLMOS_ERR_INVALID, "ljson_to_buf: no value");
    if (flags == 0)
        flags = JSON_COMPACT;
    if (json_dump_callback(v, dump_cb, out, flags | JSON_ENCODE_ANY) != 0)
        return llmos_fail(LLMOS_ERR_NOMEM, "json: cannot serialise value");
    return LLMOS_OK;
}
