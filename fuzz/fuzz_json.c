/*
 * fuzz_json.c - fuzz the JSON helpers: parse arbitrary bytes with ljson_parse_text, and on
 * success walk the value with the typed getters and serialise it again. Whatever is accepted
 * must re-serialise and re-parse to an equal value.
 */
#include <stdint.h>
#include <stdlib.h>

#include "llmos/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = NULL;
    if (ljson_parse_text((const char *)data, size, "fuzz", 64, &v) != LLMOS_OK)
        return 0;
    (void)ljson_get_string(v, "a", NULL);
    (void)ljson_get_int(v, "b", 0);
    (void)ljson_get_number(v, "c", 0);
    (void)ljson_get_bool(v, "d", false);
    (void)ljson_get_object(v, "e");
    (void)ljson_get_array(v, "f");
    const char *s;
    int64_t i;
    if (ljson_require_string(v, "a", "fuzz", &s) == LLMOS_OK && !s)
        abort();
    if (ljson_require_int(v, "b", "fuzz", &i) != LLMOS_OK && ljson_get_int(v, "b", 1) != 1)
        abort(); /* the strict and lenient getters must agree */

    llmos_buf out = {0};
    if (ljson_to_buf(v, 0, &out) == LLMOS_OK) {
        json_t *again = NULL;
        if (ljson_parse_text(out.data, out.len, "fuzz round trip", 64, &again) != LLMOS_OK ||
            !json_equal(v, again))
            abort(); /* accepted input must survive a round trip */
        json_decref(again);
    }
    buf_free(&out);
    json_decref(v);
    return 0;
}
