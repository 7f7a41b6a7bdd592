/*
 * canonical.c - the canonical JSON form of manifests (llmos/apps.h, docs/supply-chain.md).
 *
 * A signature covers bytes, not a JSON value: two writers of the same manifest must produce
 * the same bytes, and a reader must not accept two byte strings for one value (a signed
 * manifest with a second "name" member, or with whitespace that hides a difference). The form:
 *   - objects: members sorted by the bytes of their keys (UTF-8, unsigned), no duplicates;
 *   - no whitespace anywhere;
 *   - numbers: integers only, in decimal without leading zeros or '+'; reals are refused
 *     (they have no single spelling);
 *   - strings: UTF-8 as is, escaping only '"' and '\\' and the control characters U+0000..U+001F
 *     (\b \t \n \f \r by name, the others as \u00xx in lower-case hex);
 *   - true, false, null as themselves.
 * For ASCII keys this is RFC 8785 (JCS) without its number rules, which integers never reach.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/apps.h"

static llmos_err put_string(llmos_buf *out, const char *s, size_t n)
{
    if (!utf8_valid(s, n))
        return llmos_fail(LLMOS_ERR_FORMAT, "canonical JSON: a string is not valid UTF-8");
    llmos_err err = buf_putc(out, '"');
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; !err && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        err = buf_append(out, s + run, i - run);
        run = i + 1;
        if (err)
            break;
        switch (c) {
        case '"': err = buf_puts(out, "\\\""); break;
        case '\\': err = buf_puts(out, "\\\\"); break;
        case '\b': err = buf_puts(out, "\\b"); break;
        case '\t': err = buf_puts(out, "\\t"); break;
        case '\n': err = buf_puts(out, "\\n"); break;
        case '\f': err = buf_puts(out, "\\f"); break;
        case '\r': err = buf_puts(out, "\\r"); break;
        default: err = buf_printf(out, "\\u%04x", c); break;
        }
    }
    if (!err)
        err = buf_append(out, s + run, n - run);
    if (!err)
        err = buf_putc(out, '"');
    return err;
}

static int cmp_keys(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return strcmp(x, y); /* strcmp compares as unsigned char: the bytes' order */
}

static llmos_err put_value(llmos_buf *out, const json_t *v, int depth)
{
    if (depth > 64)
        return llmos_fail(LLMOS_ERR_LIMIT, "canonical JSON: nested deeper than 64 levels");
    switch (json_typeof(v)) {
    case JSON_NULL: return buf_puts(out, "null");
    case JSON_TRUE: return buf_puts(out, "true");
    case JSON_FALSE: return buf_puts(out, "false");
    case JSON_INTEGER: return buf_printf(out, "%" PRId64, (int64_t)json_integer_value(v));
    case JSON_REAL:
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "canonical JSON: a real number (%g); manifests hold integers only",
                          json_real_value(v));
    case JSON_STRING: return put_string(out, json_string_value(v), json_string_length(v));
    case JSON_ARRAY: {
        llmos_err err = buf_putc(out, '[');
        for (size_t i = 0; !err && i < json_array_size(v); i++) {
            if (i)
                err = buf_putc(out, ',');
            if (!err)
                err = put_value(out, json_array_get(v, i), depth + 1);
        }
        return err ? err : buf_putc(out, ']');
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        const char **keys = malloc((n ? n : 1) * sizeof *keys);
        if (!keys)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        size_t k = 0;
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member) keys[k++] = key;
        qsort(keys, k, sizeof *keys, cmp_keys);
        llmos_err err = buf_putc(out, '{');
        for (size_t i = 0; !err && i < k; i++) {
            if (i)
                err = buf_putc(out, ',');
            if (!err)
                err = put_string(out, keys[i], strlen(keys[i]));
            if (!err)
                err = buf_putc(out, ':');
            if (!err)
                err = put_value(out, json_object_get(v, keys[i]), depth + 1);
        }
        free(keys);
        return err ? err : buf_putc(out, '}');
    }
    }
    return llmos_fail(LLMOS_ERR_INTERNAL, "canonical JSON: unknown value type");
}

llmos_err apps_canonical_json(const json_t *v, llmos_buf *out)
{
    if (!v)
        return llmos_fail(LLMOS_ERR_INVALID, "canonical JSON of nothing");
    size_t mark = out->len;
    llmos_err err = put_value(out, v, 0);
    if (err && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return err;
}
