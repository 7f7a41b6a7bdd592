/*
 * fuzz_multipart.c - fuzz the multipart/form-data reader (voice_form_parse), which reads the
 * bodies of POST /v1/audio/transcriptions.
 *
 * Input: a Content-Type header line, a NUL byte, then the body. Every part an accepted body
 * gives must lie inside the body; nothing may crash, leak, hang or read outside the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/voice_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nul = memchr(data, 0, size);
    if (!nul)
        return 0;
    const char *type = (const char *)data;
    const char *body = nul + 1;
    size_t len = size - (size_t)(body - type);
    /* the body in its own allocation, so that a read past it is caught */
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return 0;
    memcpy(copy, body, len);
    voice_form_part parts[VOICE_FORM_MAX_PARTS];
    size_t n = 0;
    if (voice_form_parse(type, copy, len, parts, &n) == LLMOS_OK) {
        if (n > VOICE_FORM_MAX_PARTS)
            abort();
        for (size_t i = 0; i < n; i++)
            if (parts[i].data < copy || parts[i].data + parts[i].len > copy + len ||
                !memchr(parts[i].name, 0, sizeof parts[i].name))
                abort();
    }
    free(copy);
    return 0;
}
