/*
 * hex.c - bytes as hex text, for hashes and identifiers shown to people or kept in settings.
 *
 * libsodium's encoder does the work: it runs in time independent of the bytes, which matters
 * when they are a key or a hash an attacker would like to learn.
 */
#include <assert.h>

#include <sodium.h>

#include "llmos/base.h"

char *llmos_hex_encode(char *out, size_t out_size, const void *bin, size_t n)
{
    assert(out && (bin || n == 0));
    assert(n <= (SIZE_MAX - 1) / 2 && out_size >= 2 * n + 1);
    sodium_bin2hex(out, out_size, bin, n);
    return out;
}
