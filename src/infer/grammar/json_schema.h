/*
 * json_schema.h - JSON Schema to grammar rules for grammars that hold several schemas (private
 * to src/infer; toolcall.c builds one grammar from every tool's parameters).
 *
 * jschema_to_grammar (llmos/grammar.h) writes a schema's rules and its own copy of the JSON
 * primitives (ws, char, string, integer, number, boolean, null, value, object, array). Here the
 * two are apart, so that many schemas share one copy of the primitives, and a schema's size
 * can be measured before any rule is written, so that a caller can bound the total.
 */
#ifndef LLMOS_INFER_JSON_SCHEMA_H
#define LLMOS_INFER_JSON_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

#include "llmos/grammar.h"

/* The work a schema asks of the generator: its subschemas plus enum and const values (nodes),
 * and its object properties. */
typedef struct jschema_size {
    size_t nodes, properties;
} jschema_size;

/* Add the size of `schema` to *z (counting stops below JSCHEMA_MAX_DEPTH). */
void jschema_measure(const json_t *schema, jschema_size *z);

/* Append the rules of `schema` (start rule <prefix>root) that refer to primitives named with
 * the prefix `shared`, without writing those. Fails as jschema_to_grammar does, and with
 * LLMOS_ERR_LIMIT naming JSCHEMA_MAX_NODES or JSCHEMA_MAX_PROPERTIES for a schema above them. */
LLMOS_NODISCARD llmos_err jschema_rules(const json_t *schema, const char *prefix,
                                        const char *shared, llmos_buf *out);

/* Append the primitive rules, their names prefixed with `prefix`. */
LLMOS_NODISCARD llmos_err jschema_primitives(const char *prefix, llmos_buf *out);

#endif
