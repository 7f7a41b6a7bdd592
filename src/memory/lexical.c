/*
 * lexical.c - the lexical embedder "lexical-v1": a bag of hashed words and word pairs.
 *
 * Each lower-cased word (a run of ASCII letters and digits, or of bytes >= 0x80, so that
 * UTF-8 letters stay inside words) adds +-1 to one of 512 slots, chosen by its FNV-1a hash
 * (the sign is the hash's top bit); each pair of neighbouring words adds +-0.5 the same way.
 * This is feature hashing: texts that share words land near each other, and nothing about
 * meaning is known. It needs no model, so archival memory works on any machine; a store made
 * with it records "lexical-v1 512" and refuses vectors of any other embedder.
 *
 * Stores written before this embedder had its name recorded it as "test-hash-v1": the same
 * function, accepted under both names (memory.c).
 */
#include <ctype.h>
#include <string.h>

#include "llmos/memory.h"

#define LEXICAL_DIM 512

static uint64_t fnv1a(const unsigned char *p, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull; /* FNV-1a 64-bit prime */
    }
    return h;
}

static void add_hashed(float *out, uint64_t h, float w)
{
    out[h % LEXICAL_DIM] += ((h >> 63) ? -w : w);
}

static bool word_byte(unsigned char c)
{
    return isalnum(c) || c >= 0x80;
}

static llmos_err lexical_embed(void *ctx, const char *text, float *out)
{
    (void)ctx;
    memset(out, 0, LEXICAL_DIM * sizeof *out);
    unsigned char word[64], prev[64];
    size_t prev_len = 0;
    const unsigned char *p = (const unsigned char *)text;
    const uint64_t basis = 0xcbf29ce484222325ull; /* FNV-1a 64-bit offset basis */
    while (*p) {
        while (*p && !word_byte(*p))
            p++;
        size_t len = 0;
        while (*p && word_byte(*p)) {
            if (len < sizeof word)
                word[len++] = (unsigned char)tolower(*p);
            p++;
        }
        if (len == 0)
            break;
        add_hashed(out, fnv1a(word, len, basis), 1.0f);
        if (prev_len) {
            uint64_t hb = fnv1a(prev, prev_len, basis);
            hb = fnv1a((const unsigned char *)" ", 1, hb);
            add_hashed(out, fnv1a(word, len, hb), 0.5f);
        }
        memcpy(prev, word, len);
        prev_len = len;
    }
    return LLMOS_OK;
}

static const store_embedder lexical = {"lexical-v1", LEXICAL_DIM, lexical_embed, NULL};

const store_embedder *memory_lexical_embedder(void)
{
    return &lexical;
}
