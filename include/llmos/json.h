/*
 * llmos/json.h - thin helpers over jansson, the one JSON library of llmos.
 *
 * jansson does the parsing and the data model (json_t); these helpers add what every caller
 * would otherwise repeat: parse errors that say which input, line and column; typed getters
 * that take a default instead of crashing on a missing or mistyped member; and serialisation
 * into an llmos_buf. Build values with jansson's own json_pack / json_object_set_new.
 */
#ifndef LLMOS_JSON_H
#define LLMOS_JSON_H

#include <jansson.h>

#include "llmos/base.h"

/* Parse text[0..len) (need not be NUL-terminated) as one JSON value. Duplicate object keys
 * and trailing bytes are errors; NUL bytes inside strings are rejected. On failure returns
 * LLMOS_ERR_FORMAT with a message "<what>: line L, column C: <reason>". The caller owns *out
 * (json_decref). `max_depth` bounds nesting (0 = 256). */
LLMOS_API LLMOS_NODISCARD llmos_err ljson_parse_text(const char *text, size_t len, const char *what,
                                                     size_t max_depth, json_t **out);

/* Typed member access on an object. A missing member, a non-object `obj`, or a member of
 * another type yields the default. ljson_get_int accepts integers only; ljson_get_number
 * accepts integers and reals. */
LLMOS_API const char *ljson_get_string(const json_t *obj, const char *key, const char *def);
LLMOS_API int64_t ljson_get_int(const json_t *obj, const char *key, int64_t def);
LLMOS_API double ljson_get_number(const json_t *obj, const char *key, double def);
LLMOS_API bool ljson_get_bool(const json_t *obj, const char *key, bool def);
/* Borrowed references (do not decref), NULL when missing or of another type. */
LLMOS_API json_t *ljson_get_object(const json_t *obj, const char *key);
LLMOS_API json_t *ljson_get_array(const json_t *obj, const char *key);

/* Strict variants for required members: fail with LLMOS_ERR_FORMAT naming `what` and the key
 * when the member is missing or has the wrong type. */
LLMOS_API LLMOS_NODISCARD llmos_err ljson_require_string(const json_t *obj, const char *key,
                                                         const char *what, const char **out);
LLMOS_API LLMOS_NODISCARD llmos_err ljson_require_int(const json_t *obj, const char *key,
                                                      const char *what, int64_t *out);

/* Serialise `v` (compact, keys in insertion order, UTF-8 kept as is) and append to `out`.
 * flags are jansson's JSON_* dump flags; 0 means compact. */
LLMOS_API LLMOS_NODISCARD llmos_err ljson_to_buf(const json_t *v, size_t flags, llmos_buf *out);

#endif
