/*
 * fuzz_guard.c - fuzz the output guard: its rule detectors over any bytes (an answer is outside
 * text), the stream checker fed the same bytes in pieces, the judge's verdict parser, and the
 * guard policy parser.
 *
 * Input: bytes. Every finding must lie inside the text with start < end; a redacted or allowed
 * text must come back; streaming in pieces must not crash or leak. Nothing may crash, leak or
 * hang.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool drop(void *ctx, const char *t, size_t n)
{
    (void)ctx, (void)t, (void)n;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *hosts[] = {"example.com"};
    guard_findings f = {0};
    if (guard_scan(text, size, hosts, 1, &f) != LLMOS_OK)
        abort();
    for (size_t i = 0; i < f.n; i++)
        if (f.v[i].start >= f.v[i].end || f.v[i].end > size || !f.v[i].kind)
            abort();
    guard_findings_free(&f);

    guard *g = NULL;
    if (guard_default(&g) != LLMOS_OK)
        abort();
    guard_result r;
    if (guard_check(g, "fuzz", text, size, &r) != LLMOS_OK)
        abort();
    if (r.action != GUARD_BLOCK && !r.text)
        abort();
    guard_result_free(&r);
    guard_stream *s = NULL;
    if (guard_stream_new(g, "fuzz", drop, NULL, NULL, &s) != LLMOS_OK)
        abort();
    size_t piece = size ? (size_t)data[0] % 17 + 1 : 1;
    for (size_t i = 0; i < size; i += piece)
        guard_stream_push(s, text + i, i + piece <= size ? piece : size - i);
    guard_stream_finish(s, NULL);
    guard_stream_free(s);
    guard_free(g);

    guard_verdict v;
    if (guard_verdict_parse(text, size, &v) != LLMOS_OK)
        llmos_err_clear();
    if (guard_parse(text, size, "fuzz guard.json", &g) == LLMOS_OK)
        guard_free(g);
    return 0;
}
