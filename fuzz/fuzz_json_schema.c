/*
 * fuzz_json_schema.c - fuzz the JSON Schema compiler and validator with schemas from outside
 * (a request's response_format or a tool's parameters).
 *
 * The input is a JSON document taken as a schema. Whatever it holds:
 *   - jschema_to_grammar either refuses it or writes a grammar that grammar_parse accepts
 *     (the only refusal allowed then is a size limit: the compiler must never write GBNF that
 *     does not parse);
 *   - the same schema as a tool's parameters gives a tool grammar with the same guarantee;
 *   - jschema_validate answers OK, INVALID or LIMIT for a set of instances of every type,
 *     never anything else;
 *   - all of it in bounded time (the JSCHEMA_MAX_* limits; libFuzzer's -timeout catches a
 *     schema that is slow to compile or to check).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/grammar.h"
#include "llmos/json.h"
#include "llmos/toolcall.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const INSTANCES[] = {
    "null",           "true", "0",         "-12",
    "1.5e3",          "\"\"", "\"abc\"",   "[]",
    "[1,\"a\",null]", "{}",   "{\"a\":1}", "{\"a\":\"x\",\"b\":[true],\"c\":{\"d\":null}}",
};

/* The grammar text in b must parse, or fail only for its size. */
static void check_parses(const llmos_buf *b)
{
    grammar *g = NULL;
    llmos_err err = grammar_parse(b->data, b->len, NULL, &g);
    if (err != LLMOS_OK && err != LLMOS_ERR_LIMIT && err != LLMOS_ERR_NOMEM)
        abort(); /* the compiler wrote GBNF that does not parse */
    grammar_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *schema = NULL;
    if (ljson_parse_text((const char *)data, size, "schema", 0, &schema) != LLMOS_OK)
        return 0;
    llmos_buf b = {0};
    if (buf_puts(&b, "root ::= s-root\n") == LLMOS_OK &&
        jschema_to_grammar(schema, "s-", &b) == LLMOS_OK)
        check_parses(&b);
    buf_free(&b);

    json_t *tools = json_pack("[{s:s,s:{s:s,s:O}}]", "type", "function", "function", "name", "f",
                              "parameters", schema);
    if (tools && toolcall_grammar(tools, TOOLCALL_HERMES, TOOLCALL_AUTO, NULL, &b) == LLMOS_OK)
        check_parses(&b);
    buf_free(&b);
    json_decref(tools);

    for (size_t k = 0; k < LLMOS_ARRAY_LEN(INSTANCES); k++) {
        json_t *v = NULL;
        if (ljson_parse_text(INSTANCES[k], strlen(INSTANCES[k]), "instance", 0, &v) != LLMOS_OK)
            abort();
        llmos_err err = jschema_validate(schema, v, "fuzz");
        if (err != LLMOS_OK && err != LLMOS_ERR_INVALID && err != LLMOS_ERR_LIMIT)
            abort();
        json_decref(v);
    }
    json_decref(schema);
    return 0;
}
