/*
 * utf8.c - strict UTF-8 decoding and validation (RFC 3629, Unicode 15 section 3.9 table 3-7).
 *
 * Well-formed means: no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no stray continuation bytes, no truncated sequence. Everything that reaches a
 * tokenizer, a JSON encoder or a terminal from outside goes through these checks.
 */
#include "llmos/base.h"

size_t utf8_decode(const char *s, size_t n, uint32_t *cp)
{
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0)
        return 0;
    unsigned char c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F; /* <= U+10FFFF */
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    if (u[1] < lo || u[1] > hi)
        return 0;
    v = (v << 6) | (u[1] & 0x3F);
    for (size_t i = 2; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (u[i] & 0x3F);
    }
    *cp = v;
    return len;
}

size_t utf8_encode(uint32_t cp, char out[4])
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
        return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

size_t utf8_valid_prefix(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        if (!k)
            break;
        i += k;
    }
    return i;
}

size_t utf8_incomplete_tail(const char *s, size_t n)
{
    /* Look back at most 3 bytes for a lead byte whose sequence runs past the end. */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation: keep looking for the lead */
        size_t len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
        if (len <= back)
            return 0; /* complete (or not a multi-byte lead) */
        /* Check that what is there is a valid start of that sequence: pad with a plausible
         * continuation and decode. */
        char tmp[4];
        for (size_t i = 0; i < back; i++)
            tmp[i] = s[n - back + i];
        for (size_t i = back; i < len; i++)
            tmp[i] = (char)0x80;
        uint32_t cp;
        if (utf8_decode(tmp, len, &cp) == len)
            return back;
        /* 0xF4 0x8F.., 0xED 0x9F.. etc: try the highest continuation too */
        for (size_t i = back; i < len; i++)
            tmp[i] = (char)0xBF;
        return utf8_decode(tmp, len, &cp) == len ? back : 0;
    }
    return 0;
}
