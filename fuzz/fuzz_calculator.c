/*
 * fuzz_calculator.c - fuzz the exact calculator: any bytes must give either a non-empty,
 * valid UTF-8 result or an error with a detail message that names a column, quickly (the size
 * limits are checked before computing) and without leaking or crashing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    llmos_buf out = {0};
    llmos_err err = calc_eval_n((const char *)data, size, &out);
    if (err == LLMOS_OK) {
        if (out.len == 0 || !utf8_valid(out.data, out.len))
            abort();
    } else {
        if (out.len != 0)
            abort(); /* nothing appended on failure */
        const char *msg = llmos_errmsg();
        if (!msg || !*msg)
            abort();
    }
    buf_free(&out);
    return 0;
}
