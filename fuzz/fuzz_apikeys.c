/*
 * fuzz_apikeys.c - fuzz the parser of the HTTP server's keys file (src/security/apikeys.c),
 * which an administrator writes and which decides who may do what.
 *
 * Input: keys file text, optionally followed by a NUL byte and a key to present. An accepted
 * file must hold only entries the server can trust: a valid principal name, at least one
 * right, rights and capabilities within the known bits, no negative limit or budget; the key
 * is matched against it. Nothing may crash, leak or hang; a broken invariant aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/apikeys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t len = nul ? (size_t)(nul - text) : size;
    apikeys *ks = NULL;
    if (apikeys_parse(text, len, "fuzz keys", &ks) != LLMOS_OK)
        return 0;
    for (size_t i = 0; i < apikeys_count(ks); i++) {
        const apikey *e = apikeys_get(ks, i);
        if (*apikeys_principal_fault(e->principal) || !e->rights || (e->rights & ~KRIGHT_ALL) ||
            (e->caps & ~KCAP_ALL) || e->limits.concurrent < 0 ||
            e->limits.requests_per_minute < 0 || e->limits.max_tokens < 0 || e->budget.tokens < 0 ||
            e->budget.tool_calls < 0 || !(e->budget.wall_s >= 0) || e->turn.tokens < 0 ||
            e->turn.tool_calls < 0 || !(e->turn.wall_s >= 0))
            abort();
    }
    if (nul) {
        long m = apikeys_match(ks, nul + 1, size - len - 1);
        if (m < -1 || m >= (long)apikeys_count(ks))
            abort();
    }
    apikeys_free(ks);
    return 0;
}
