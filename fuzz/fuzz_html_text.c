/*
 * fuzz_html_text.c - fuzz HTML to text (html_to_text) with pages from outside, the browser
 * tool's input. Whatever the bytes: it returns LLMOS_OK (libxml2 recovers from every error),
 * its text is the conversion's only output, the links it lists are numbered from 1 without a
 * gap, and it ends in bounded time and stack (HTML_MAX_DEPTH).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/browser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    llmos_buf out = {0};
    llmos_err err =
        html_to_text((const char *)data, size, "https://example.com/dir/page.html", &out);
    if (err != LLMOS_OK && err != LLMOS_ERR_NOMEM)
        abort();
    /* the list of links, when there is one, counts 1, 2, 3, ... */
    const char *links = out.data ? strstr(out.data, "\nLinks:\n") : NULL;
    if (links) {
        const char *at = links + 8;
        for (int want = 1; *at; want++) {
            char ref[32];
            int n = snprintf(ref, sizeof ref, "[%d] ", want);
            if (strncmp(at, ref, (size_t)n) != 0)
                break; /* "Links:" was page text: what follows is not ours */
            const char *nl = strchr(at, '\n');
            if (!nl)
                abort(); /* every entry ends its line */
            at = nl + 1;
        }
    }
    buf_free(&out);
    return 0;
}
