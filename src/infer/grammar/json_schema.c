/*
 * json_schema.c - JSON Schema to GBNF, and a validator for the same subset.
 *
 * The subset is what tool definitions use (JSON Schema draft 2020-12 keywords): type (one or
 * a list), properties, required, additionalProperties, enum, const, minLength, maxLength,
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum (validator only), items, minItems,
 * maxItems, anyOf, oneOf, allOf with one member, $ref to "#", "#/$defs/NAME" or
 * "#/definitions/NAME". Annotations (description, title, default, examples, format, pattern,
 * $schema, $id) are ignored.
 *
 * Decisions, documented in docs/grammar.md:
 *   - an object's properties are generated in the schema's order; a missing
 *     additionalProperties means false (tools want exactly their parameters), and extra
 *     properties are never generated even when allowed (the validator accepts them then);
 *   - whitespace between tokens is bounded (at most one newline and 20 blanks), digits of
 *     numbers too (16 before and after the point, 3 in the exponent): a model cannot loop
 *     forever inside a value;
 *   - minLength/maxLength and minItems/maxItems become repetition counts; bounds above 1000
 *     are left to the validator.
 */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/grammar/json_schema.h"
#include "llmos/json.h"

#define SCHEMA_MAX_COUNT 1000 /* repetition bounds the grammar spells out */

/* Append tpl with each "@" replaced by the primitives' prefix px and each "%" by arg. */
static llmos_err put_tpl(llmos_buf *out, const char *tpl, const char *px, const char *arg)
{
    llmos_err err = LLMOS_OK;
    for (const char *c = tpl; *c && !err; c++) {
        if (*c == '@')
            err = buf_puts(out, px);
        else if (*c == '%')
            err = buf_puts(out, arg ? arg : "");
        else
            err = buf_putc(out, *c);
    }
    return err;
}

/* ---- shared primitive rules -------------------------------------------------------------------
 */

/* JSON (RFC 8259): a string is quote, characters other than quote, backslash and U+0000 ..
 * U+001F or escapes, quote; numbers have no leading zeros. */
llmos_err jschema_primitives(const char *px, llmos_buf *out)
{
    return put_tpl(
        out,
        "@ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n"
        "@char ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})\n"
        "@string ::= \"\\\"\" @char* \"\\\"\"\n"
        "@integer ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n"
        "@number ::= @integer (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?\n"
        "@boolean ::= \"true\" | \"false\"\n"
        "@null ::= \"null\"\n"
        "@value ::= @object | @array | @string | @number | @boolean | "
        "@null\n"
        "@object ::= \"{\" @ws ( @string @ws \":\" @ws @value @ws "
        "(\",\" @ws @string @ws \":\" @ws @value @ws)* )? \"}\"\n"
        "@array ::= \"[\" @ws ( @value @ws (\",\" @ws @value @ws)* )? "
        "\"]\"\n",
        px, NULL);
}

llmos_err jschema_grammar_generic(llmos_buf *out)
{
    llmos_err err = buf_puts(out, "root ::= value\n");
    return err ? err : jschema_primitives("", out);
}

/* Append s as a GBNF string literal (quotes included). */
static llmos_err gbnf_literal(llmos_buf *out, const char *s, size_t n)
{
    llmos_err err = buf_putc(out, '"');
    for (size_t k = 0; k < n && !err; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\')
            err = buf_printf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            err = buf_printf(out, "\\x%02x", c);
        else
            err = buf_putc(out, (char)c);
    }
    return err ? err : buf_putc(out, '"');
}

/* A JSON value's compact text as a GBNF literal. */
static llmos_err json_literal(llmos_buf *out, const json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return llmos_fail(LLMOS_ERR_NOMEM, "json schema: out of memory");
    llmos_err err = gbnf_literal(out, text, strlen(text));
    free(text);
    return err;
}

/* ---- schema -> grammar ---------------------------------------------------------------------- */

typedef struct sgen {
    llmos_buf *out;
    const char *px; /* of the schema's own rules */
    const char *sh; /* of the primitives (ws, string, value, ...) */
    const json_t *root;
    json_t *refs; /* "$ref" string -> rule name already assigned */
    unsigned counter;
    /* references being generated, innermost last; those from open_from on were entered with
     * no character written since (only $ref, anyOf, oneOf, allOf on the way): reaching one of
     * them again would be left recursion, which no grammar can run */
    const char *open_refs[JSCHEMA_MAX_DEPTH + 2];
    size_t n_open, open_from;
} sgen;

static llmos_err gen(sgen *c, const json_t *schema, const char *path, unsigned depth,
                     char name[64]);

static void new_name(sgen *c, char name[64])
{
    snprintf(name, 64, "%ss%u", c->px, c->counter++);
}

static llmos_err put_rule(sgen *c, const char *name, const llmos_buf *body)
{
    return buf_printf(c->out, "%s ::= %s\n", name, body->data ? body->data : "");
}

/* Resolve a local reference; NULL when it points nowhere we know. */
static const json_t *resolve_ref(const json_t *root, const char *ref)
{
    if (strcmp(ref, "#") == 0)
        return root;
    const char *prefixes[] = {"#/$defs/", "#/definitions/"};
    for (size_t k = 0; k < 2; k++) {
        size_t n = strlen(prefixes[k]);
        if (strncmp(ref, prefixes[k], n) == 0) {
            const json_t *defs = json_object_get(root, k == 0 ? "$defs" : "definitions");
            return defs ? json_object_get(defs, ref + n) : NULL;
        }
    }
    return NULL;
}

static bool count_of(const json_t *schema, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(schema, key);
    if (!v || !json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

/* body += "{min,max}" repetition of `item`, where max < 0 means unbounded and bounds above
 * SCHEMA_MAX_COUNT are dropped. */
static llmos_err put_repeat(llmos_buf *b, const char *item, int64_t min, int64_t max)
{
    if (min < 0)
        min = 0;
    if (min > SCHEMA_MAX_COUNT)
        min = SCHEMA_MAX_COUNT;
    if (max > SCHEMA_MAX_COUNT)
        max = -1;
    if (max >= 0 && max < min)
        max = min;
    if (max < 0)
        return buf_printf(b, "%s{%lld,}", item, (long long)min);
    return buf_printf(b, "%s{%lld,%lld}", item, (long long)min, (long long)max);
}

static llmos_err gen_object(sgen *c, const json_t *schema, const char *path, unsigned depth,
                            llmos_buf *body)
{
    const json_t *props = json_object_get(schema, "properties");
    const json_t *req = json_object_get(schema, "required");
    const json_t *addl = json_object_get(schema, "additionalProperties");
    const char *px = c->px, *sh = c->sh;
    llmos_err err = LLMOS_OK;
    if (props && !json_is_object(props))
        return llmos_fail(LLMOS_ERR_FORMAT, "json schema: %s.properties: expected an object", path);
    if (req && !json_is_array(req))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "json schema: %s.required: expected an array of "
                          "names",
                          path);
    size_t n = props ? json_object_size(props) : 0;
    if (n == 0) {
        if (!addl || json_is_false(addl))
            return buf_printf(body, "\"{\" %sws \"}\"", sh);
        char v[64];
        if (json_is_object(addl)) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.additionalProperties", path);
            if ((err = gen(c, addl, sub, depth + 1, v)))
                return err;
        } else {
            snprintf(v, sizeof v, "%svalue", sh);
        }
        return put_tpl(body,
                       "\"{\" @ws ( @string @ws \":\" @ws % @ws "
                       "(\",\" @ws @string @ws \":\" @ws % @ws)* )? \"}\"",
                       sh, v);
    }
    /* the required names as a set (a hash table): one pass, not one per property */
    json_t *req_set = json_object();
    if (!req_set)
        return llmos_fail(LLMOS_ERR_NOMEM, "json schema: out of memory");
    for (size_t k = 0; req && k < json_array_size(req); k++) {
        const json_t *r = json_array_get(req, k);
        if (!json_is_string(r))
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "json schema: %s.required[%zu]: expected a "
                             "property name",
                             path, k);
        else if (!json_object_get(props, json_string_value(r)))
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "json schema: %s.required names '%s', which "
                             "is not among the properties",
                             path, json_string_value(r));
        else if (json_object_set(req_set, json_string_value(r), json_true()))
            err = llmos_fail(LLMOS_ERR_NOMEM, "json schema: out of memory");
        if (err) {
            json_decref(req_set);
            return err;
        }
    }
    /* K_j: one member; R_i: the members from i on, each after a comma; F_i: the members from
     * i on where the first present one has no comma. */
    char(*kname)[64] = calloc(n, sizeof *kname);
    bool *required = calloc(n, sizeof *required);
    if (!kname || !required) {
        free(kname);
        free(required);
        json_decref(req_set);
        return llmos_fail(LLMOS_ERR_NOMEM, "json schema: out of memory");
    }
    unsigned base = c->counter;
    c->counter += (unsigned)(2 * n + 1);
    const char *key;
    json_t *sub;
    size_t j = 0;
    llmos_buf kb = {0};
    json_object_foreach((json_t *)props, key, sub)
    {
        required[j] = json_object_get(req_set, key) != NULL;
        char vpath[512], vname[64];
        snprintf(vpath, sizeof vpath, "%s.%s", path, key);
        if ((err = gen(c, sub, vpath, depth + 1, vname)))
            break;
        new_name(c, kname[j]);
        buf_clear(&kb);
        json_t *ks = json_string(key);
        err = ks ? json_literal(&kb, ks) : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        json_decref(ks);
        if (err || (err = put_tpl(&kb, " @ws \":\" @ws % @ws", sh, vname)) ||
            (err = put_rule(c, kname[j], &kb)))
            break;
        j++;
    }
    for (size_t i = n + 1; i-- > 0 && !err;) {
        /* R_i = s<base+i>, F_i = s<base+n+1+i> (F_n is R_n: both empty) */
        buf_clear(&kb);
        unsigned next = base + (unsigned)i + 1;
        if (i == n)
            err = buf_puts(&kb, "\"\"");
        else if (required[i])
            err = buf_printf(&kb, "\",\" %sws %s %ss%u", sh, kname[i], px, next);
        else
            err = buf_printf(&kb, "(\",\" %sws %s)? %ss%u", sh, kname[i], px, next);
        char rn[64];
        snprintf(rn, sizeof rn, "%ss%u", px, base + (unsigned)i);
        if (!err)
            err = put_rule(c, rn, &kb);
        if (err || i == n)
            continue;
        buf_clear(&kb);
        err = buf_printf(&kb, "%s %ss%u", kname[i], px, base + (unsigned)i + 1);
        if (!err && !required[i])
            err = buf_printf(&kb, " | %ss%u", px,
                             i + 1 < n ? base + (unsigned)n + 1 + (unsigned)i + 1
                                       : base + (unsigned)n);
        snprintf(rn, sizeof rn, "%ss%u", px, base + (unsigned)n + 1 + (unsigned)i);
        if (!err)
            err = put_rule(c, rn, &kb);
    }
    buf_free(&kb);
    free(kname);
    free(required);
    json_decref(req_set);
    if (err)
        return err;
    return buf_printf(body, "\"{\" %sws %ss%u \"}\"", sh, px, base + (unsigned)n + 1);
}

static llmos_err gen_typed(sgen *c, const json_t *schema, const char *type, const char *path,
                           unsigned depth, llmos_buf *body)
{
    const char *sh = c->sh;
    int64_t min = 0, max = -1;
    if (strcmp(type, "string") == 0) {
        bool has_min = count_of(schema, "minLength", &min);
        bool has_max = count_of(schema, "maxLength", &max);
        if (!has_min && !has_max)
            return buf_printf(body, "%sstring", sh);
        char item[80];
        snprintf(item, sizeof item, "%schar", sh);
        llmos_err err = buf_puts(body, "\"\\\"\" ");
        if (!err)
            err = put_repeat(body, item, min, has_max ? max : -1);
        return err ? err : buf_puts(body, " \"\\\"\"");
    }
    if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0 ||
        strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0)
        return buf_printf(body, "%s%s", sh, type);
    if (strcmp(type, "object") == 0) {
        size_t from = c->open_from; /* "{" comes first: no left recursion through here */
        c->open_from = c->n_open;
        llmos_err err = gen_object(c, schema, path, depth, body);
        c->open_from = from;
        return err;
    }
    if (strcmp(type, "array") == 0) {
        const json_t *items = json_object_get(schema, "items");
        char iname[64];
        if (items && !json_is_boolean(items)) {
            char ipath[512];
            snprintf(ipath, sizeof ipath, "%s.items", path);
            size_t from = c->open_from; /* after "[" */
            c->open_from = c->n_open;
            llmos_err err = gen(c, items, ipath, depth + 1, iname);
            c->open_from = from;
            if (err)
                return err;
        } else {
            snprintf(iname, sizeof iname, "%svalue", sh);
        }
        if (!count_of(schema, "minItems", &min))
            min = 0;
        if (!count_of(schema, "maxItems", &max))
            max = -1;
        if (max == 0)
            return buf_printf(body, "\"[\" %sws \"]\"", sh);
        char more[200];
        llmos_buf mb = {0};
        llmos_err err = put_tpl(&mb, "(\",\" @ws % @ws)", sh, iname);
        snprintf(more, sizeof more, "%s", mb.data ? mb.data : "");
        buf_free(&mb);
        if (!err)
            err = put_tpl(body, "\"[\" @ws ( % @ws ", sh, iname);
        if (!err)
            err = put_repeat(body, more, min > 0 ? min - 1 : 0, max > 0 ? max - 1 : -1);
        if (!err)
            err = buf_printf(body, ")%s \"]\"", min > 0 ? "" : "?");
        return err;
    }
    return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                      "json schema: %s: type '%s' is not one of string, "
                      "number, integer, boolean, null, object, array",
                      path, type);
}

/* Generate a rule matching `schema`; its name goes to name[64]. */
static llmos_err gen(sgen *c, const json_t *schema, const char *path, unsigned depth, char name[64])
{
    if (depth > JSCHEMA_MAX_DEPTH)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "json schema: %s: nested more than %d deep (JSCHEMA_MAX_DEPTH)", path,
                          JSCHEMA_MAX_DEPTH);
    if (json_is_true(schema) || (json_is_object(schema) && json_object_size(schema) == 0)) {
        snprintf(name, 64, "%svalue", c->sh);
        return LLMOS_OK;
    }
    if (!json_is_object(schema))
        return llmos_fail(json_is_false(schema) ? LLMOS_ERR_UNSUPPORTED : LLMOS_ERR_FORMAT,
                          "json schema: %s: expected a schema object, found %s", path,
                          json_is_false(schema) ? "false (nothing would match)" : "another type");
    const json_t *ref = json_object_get(schema, "$ref");
    if (ref) {
        if (!json_is_string(ref))
            return llmos_fail(LLMOS_ERR_FORMAT, "json schema: %s.$ref: expected a string", path);
        const char *r = json_string_value(ref);
        const json_t *known = json_object_get(c->refs, r);
        for (size_t k = c->open_from; known && k < c->n_open; k++)
            if (strcmp(c->open_refs[k], r) == 0)
                return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                                  "json schema: %s.$ref: '%s' refers back to itself before any "
                                  "value is written (only through $ref, anyOf, oneOf or allOf); "
                                  "no grammar can match that",
                                  path, r);
        if (known) {
            snprintf(name, 64, "%s", json_string_value(known));
            return LLMOS_OK;
        }
        const json_t *target = resolve_ref(c->root, r);
        if (!target)
            return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                              "json schema: %s.$ref: '%s' is not a "
                              "local reference to #, #/$defs/NAME or #/definitions/NAME that "
                              "exists",
                              path, r);
        /* name it before generating, so that recursive references find it */
        char rn[64];
        new_name(c, rn);
        json_t *jn = json_string(rn);
        if (!jn || json_object_set_new(c->refs, r, jn))
            return llmos_fail(LLMOS_ERR_NOMEM, "json schema: out of memory");
        char sub[64];
        assert(c->n_open < LLMOS_ARRAY_LEN(c->open_refs)); /* one per level, depth is bounded */
        c->open_refs[c->n_open++] = r;
        llmos_err err = gen(c, target, r, depth + 1, sub);
        c->n_open--;
        llmos_buf b = {0};
        if (!err)
            err = buf_puts(&b, sub);
        if (!err)
            err = put_rule(c, rn, &b);
        buf_free(&b);
        snprintf(name, 64, "%s", rn);
        return err;
    }

    llmos_buf body = {0};
    llmos_err err = LLMOS_OK;
    const json_t *en = json_object_get(schema, "enum");
    const json_t *cn = json_object_get(schema, "const");
    const json_t *any = json_object_get(schema, "anyOf");
    if (!any)
        any = json_object_get(schema, "oneOf");
    const json_t *all = json_object_get(schema, "allOf");
    const json_t *type = json_object_get(schema, "type");
    if (cn) {
        err = json_literal(&body, cn);
    } else if (en) {
        if (!json_is_array(en) || json_array_size(en) == 0) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "json schema: %s.enum: expected a non-empty "
                             "array",
                             path);
        } else {
            for (size_t k = 0; k < json_array_size(en) && !err; k++) {
                if (k)
                    err = buf_puts(&body, " | ");
                if (!err)
                    err = json_literal(&body, json_array_get(en, k));
            }
        }
    } else if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "json schema: %s.anyOf/oneOf: expected a "
                             "non-empty array",
                             path);
        }
        for (size_t k = 0; !err && k < json_array_size(any); k++) {
            char sub[64], spath[512];
            snprintf(spath, sizeof spath, "%s.anyOf[%zu]", path, k);
            err = gen(c, json_array_get(any, k), spath, depth + 1, sub);
            if (!err)
                err = buf_printf(&body, "%s%s", k ? " | " : "", sub);
        }
    } else if (all) {
        if (!json_is_array(all) || json_array_size(all) != 1) {
            err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                             "json schema: %s.allOf: only a single "
                             "member is supported",
                             path);
        } else {
            char sub[64];
            err = gen(c, json_array_get(all, 0), path, depth + 1, sub);
            if (!err)
                err = buf_puts(&body, sub);
        }
    } else if (json_is_array(type)) {
        for (size_t k = 0; k < json_array_size(type) && !err; k++) {
            const json_t *t = json_array_get(type, k);
            if (!json_is_string(t)) {
                err = llmos_fail(LLMOS_ERR_FORMAT,
                                 "json schema: %s.type[%zu]: expected a "
                                 "type name",
                                 path, k);
                break;
            }
            /* names must be unique (JSON Schema says so), else ["object", "object", ...]
             * would generate the same properties once per entry */
            for (size_t e = 0; e < k && !err; e++)
                if (json_equal(json_array_get(type, e), t))
                    err = llmos_fail(LLMOS_ERR_FORMAT,
                                     "json schema: %s.type[%zu]: '%s' is listed twice", path, k,
                                     json_string_value(t));
            if (err)
                break;
            if (k)
                err = buf_puts(&body, " | ");
            if (!err)
                err = gen_typed(c, schema, json_string_value(t), path, depth, &body);
        }
    } else if (json_is_string(type)) {
        err = gen_typed(c, schema, json_string_value(type), path, depth, &body);
    } else if (type) {
        err = llmos_fail(LLMOS_ERR_FORMAT, "json schema: %s.type: expected a string or an array",
                         path);
    } else if (json_object_get(schema, "properties")) {
        err = gen_typed(c, schema, "object", path, depth, &body);
    } else if (json_object_get(schema, "items")) {
        err = gen_typed(c, schema, "array", path, depth, &body);
    } else {
        err = buf_printf(&body, "%svalue", c->sh);
    }
    if (!err) {
        new_name(c, name);
        err = put_rule(c, name, &body);
    }
    buf_free(&body);
    return err;
}

/* ---- size --------------------------------------------------------------------------------- */

/* Add what `s` holds to *z: itself, its enum and const values, and its subschemas (objects or
 * booleans) under the keywords the generator follows. A $ref target is counted once, where it
 * is defined: generation makes one rule per reference, so the count bounds its work. Stops
 * descending past JSCHEMA_MAX_DEPTH, where generation fails anyway. */
static void measure(const json_t *s, unsigned depth, jschema_size *z)
{
    if (!s || depth > JSCHEMA_MAX_DEPTH + 1)
        return;
    z->nodes++; /* also `true`: a property with that schema still costs rules */
    if (!json_is_object(s))
        return;
    const json_t *en = json_object_get(s, "enum");
    z->nodes += json_is_array(en) ? json_array_size(en) : 0;
    z->nodes += json_object_get(s, "const") != NULL;
    static const char *const single[] = {"additionalProperties", "items"};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(single); k++)
        measure(json_object_get(s, single[k]), depth + 1, z);
    static const char *const lists[] = {"anyOf", "oneOf", "allOf"};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(lists); k++) {
        const json_t *l = json_object_get(s, lists[k]);
        for (size_t i = 0; json_is_array(l) && i < json_array_size(l); i++)
            measure(json_array_get(l, i), depth + 1, z);
    }
    static const char *const maps[] = {"properties", "$defs", "definitions"};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(maps); k++) {
        const json_t *m = json_object_get(s, maps[k]);
        if (!json_is_object(m))
            continue;
        if (strcmp(maps[k], "properties") == 0)
            z->properties += json_object_size(m);
        const char *key;
        const json_t *sub;
        json_object_foreach((json_t *)m, key, sub)
        {
            (void)key;
            measure(sub, depth + 1, z);
        }
    }
}

void jschema_measure(const json_t *schema, jschema_size *z)
{
    measure(schema, 0, z);
}

/* LLMOS_ERR_LIMIT when `z` is more than one schema may hold. */
static llmos_err check_size(const jschema_size *z)
{
    if (z->properties > JSCHEMA_MAX_PROPERTIES)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "json schema: %zu object properties, more than JSCHEMA_MAX_PROPERTIES "
                          "(%d); use a smaller schema",
                          z->properties, JSCHEMA_MAX_PROPERTIES);
    if (z->nodes > JSCHEMA_MAX_NODES)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "json schema: %zu subschemas and enum/const values, more than "
                          "JSCHEMA_MAX_NODES (%d); use a smaller schema",
                          z->nodes, JSCHEMA_MAX_NODES);
    return LLMOS_OK;
}

llmos_err jschema_rules(const json_t *schema, const char *prefix, const char *shared,
                        llmos_buf *out)
{
    jschema_size z = {0};
    measure(schema, 0, &z);
    llmos_err err = check_size(&z);
    if (err)
        return err;
    sgen c = {.out = out,
              .px = prefix ? prefix : "",
              .sh = shared ? shared : "",
              .root = schema,
              .refs = json_object()};
    if (!c.refs)
        return llmos_fail(LLMOS_ERR_NOMEM, "json schema: out of memory");
    char name[64];
    err = gen(&c, schema, "$", 0, name);
    if (!err)
        err = buf_printf(out, "%sroot ::= %s\n", c.px, name);
    json_decref(c.refs);
    return err;
}

llmos_err jschema_to_grammar(const json_t *schema, const char *prefix, llmos_buf *out)
{
    llmos_err err = jschema_rules(schema, prefix, prefix, out);
    return err ? err : jschema_primitives(prefix ? prefix : "", out);
}

/* ---- validator ------------------------------------------------------------------------------ */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

static bool has_type(const json_t *v, const char *t)
{
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v) ||
               (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
                fabs(json_real_value(v)) < 9.007199254740992e15);
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    return strcmp(type_name(v), t) == 0;
}

typedef struct vctx {
    const json_t *root;
    const char *what;
    size_t steps; /* (subschema, value) pairs checked so far */
} vctx;

static llmos_err verr(const vctx *c, const char *path, const char *fmt, ...) LLMOS_PRINTF(3, 4);

static llmos_err verr(const vctx *c, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return llmos_fail(LLMOS_ERR_INVALID, "%s: %s: %s", c->what, path, msg);
}

static llmos_err validate(vctx *c, const json_t *s, const json_t *v, const char *path,
                          unsigned depth)
{
    /* anyOf alternatives that $ref the same definitions multiply: n levels of two are 2^n
     * checks from a schema of a few hundred bytes, so the checks are counted */
    if (++c->steps > JSCHEMA_MAX_CHECK_STEPS)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "%s: %s: more than JSCHEMA_MAX_CHECK_STEPS (%d) subschema checks; the "
                          "schema is too branchy to check",
                          c->what, path, JSCHEMA_MAX_CHECK_STEPS);
    if (depth > JSCHEMA_MAX_DEPTH)
        return verr(c, path, "schema nested more than %d deep (or a $ref loop)", JSCHEMA_MAX_DEPTH);
    if (json_is_true(s))
        return LLMOS_OK;
    if (!json_is_object(s))
        return verr(c, path, "no value is allowed here (schema false)");
    const json_t *ref = json_object_get(s, "$ref");
    if (json_is_string(ref)) {
        const json_t *target = resolve_ref(c->root, json_string_value(ref));
        if (!target)
            return verr(c, path, "unresolved $ref '%s'", json_string_value(ref));
        return validate(c, target, v, path, depth + 1);
    }
    const json_t *cn = json_object_get(s, "const");
    if (cn && !json_equal((json_t *)cn, (json_t *)v)) {
        char *want = json_dumps(cn, JSON_COMPACT | JSON_ENCODE_ANY);
        llmos_err e = verr(c, path, "expected the constant %s", want ? want : "?");
        free(want);
        return e;
    }
    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        bool found = false;
        for (size_t k = 0; k < json_array_size(en) && !found; k++)
            found = json_equal(json_array_get(en, k), (json_t *)v);
        if (!found) {
            char *want = json_dumps(en, JSON_COMPACT);
            char *got = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            llmos_err e =
                verr(c, path, "%.80s is not one of %.200s", got ? got : "?", want ? want : "?");
            free(want);
            free(got);
            return e;
        }
    }
    const json_t *any = json_object_get(s, "anyOf");
    const json_t *one = json_object_get(s, "oneOf");
    const json_t *alts = any ? any : one;
    if (json_is_array(alts)) {
        size_t ok = 0;
        char first[300] = "";
        /* anyOf stops at the first match; oneOf must try them all */
        for (size_t k = 0; k < json_array_size(alts) && !(any && ok); k++) {
            llmos_err e = validate(c, json_array_get(alts, k), v, path, depth + 1);
            if (e == LLMOS_ERR_LIMIT)
                return e;
            if (e == LLMOS_OK)
                ok++;
            else if (!first[0])
                snprintf(first, sizeof first, "%s", llmos_errmsg());
        }
        if (ok == 0)
            return verr(c, path, "matches none of the %s alternatives (first: %s)",
                        any ? "anyOf" : "oneOf", first);
        if (!any && ok > 1)
            return verr(c, path, "matches %zu of the oneOf alternatives (exactly one allowed)", ok);
        llmos_err_clear();
    }
    const json_t *all = json_object_get(s, "allOf");
    for (size_t k = 0; json_is_array(all) && k < json_array_size(all); k++) {
        llmos_err e = validate(c, json_array_get(all, k), v, path, depth + 1);
        if (e)
            return e;
    }
    const json_t *type = json_object_get(s, "type");
    if (json_is_string(type) && !has_type(v, json_string_value(type)))
        return verr(c, path, "expected %s, found %s", json_string_value(type), type_name(v));
    if (json_is_array(type)) {
        bool ok = false;
        for (size_t k = 0; k < json_array_size(type) && !ok; k++)
            ok = json_is_string(json_array_get(type, k)) &&
                 has_type(v, json_string_value(json_array_get(type, k)));
        if (!ok) {
            char *want = json_dumps(type, JSON_COMPACT);
            llmos_err e =
                verr(c, path, "expected one of %s, found %s", want ? want : "?", type_name(v));
            free(want);
            return e;
        }
    }
    int64_t n;
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        size_t bytes = json_string_length(v), chars = 0;
        for (size_t k = 0; k < bytes; k++)
            chars += ((unsigned char)str[k] & 0xC0) != 0x80;
        if (count_of(s, "minLength", &n) && (int64_t)chars < n)
            return verr(c, path, "string of %zu characters, shorter than minLength %lld", chars,
                        (long long)n);
        if (count_of(s, "maxLength", &n) && (int64_t)chars > n)
            return verr(c, path, "string of %zu characters, longer than maxLength %lld", chars,
                        (long long)n);
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        const json_t *b;
        if ((b = json_object_get(s, "minimum")) && json_is_number(b) && x < json_number_value(b))
            return verr(c, path, "%g is below the minimum %g", x, json_number_value(b));
        if ((b = json_object_get(s, "maximum")) && json_is_number(b) && x > json_number_value(b))
            return verr(c, path, "%g is above the maximum %g", x, json_number_value(b));
        if ((b = json_object_get(s, "exclusiveMinimum")) && json_is_number(b) &&
            x <= json_number_value(b))
            return verr(c, path, "%g is not above the exclusive minimum %g", x,
                        json_number_value(b));
        if ((b = json_object_get(s, "exclusiveMaximum")) && json_is_number(b) &&
            x >= json_number_value(b))
            return verr(c, path, "%g is not below the exclusive maximum %g", x,
                        json_number_value(b));
    }
    if (json_is_array(v)) {
        size_t len = json_array_size(v);
        if (count_of(s, "minItems", &n) && (int64_t)len < n)
            return verr(c, path, "%zu items, fewer than minItems %lld", len, (long long)n);
        if (count_of(s, "maxItems", &n) && (int64_t)len > n)
            return verr(c, path, "%zu items, more than maxItems %lld", len, (long long)n);
        const json_t *items = json_object_get(s, "items");
        for (size_t k = 0; items && k < len; k++) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s[%zu]", path, k);
            llmos_err e = validate(c, items, json_array_get(v, k), sub, depth + 1);
            if (e)
                return e;
        }
    }
    if (json_is_object(v)) {
        const json_t *props = json_object_get(s, "properties");
        const json_t *req = json_object_get(s, "required");
        const json_t *addl = json_object_get(s, "additionalProperties");
        for (size_t k = 0; json_is_array(req) && k < json_array_size(req); k++) {
            const char *name = json_string_value(json_array_get(req, k));
            if (name && !json_object_get(v, name))
                return verr(c, path, "missing required property '%s'", name);
        }
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member)
        {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            const json_t *ps = props ? json_object_get(props, key) : NULL;
            llmos_err e = LLMOS_OK;
            if (ps) {
                e = validate(c, ps, member, sub, depth + 1);
            } else if (json_is_object(addl)) {
                e = validate(c, addl, member, sub, depth + 1);
            } else if (!json_is_true(addl) && (props || json_is_false(addl))) {
                /* a missing additionalProperties means false when properties are listed */
                char names[200] = "";
                size_t used = 0;
                const char *pk;
                json_t *pv;
                json_object_foreach((json_t *)props, pk, pv)
                {
                    (void)pv;
                    if (used < sizeof names - 1)
                        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s",
                                                 used ? ", " : "", pk);
                }
                e = verr(c, path, "unknown property '%s' (allowed: %s)", key,
                         names[0] ? names : "none");
            }
            if (e)
                return e;
        }
    }
    return LLMOS_OK;
}

llmos_err jschema_validate(const json_t *schema, const json_t *instance, const char *what)
{
    vctx c = {schema, what ? what : "value", 0};
    return validate(&c, schema, instance, "$", 0);
}
