/*
 * tok_wpm.c - BERT's WordPiece: normalise, split into words, cut each word into the longest
 * pieces the vocabulary has.
 *
 * The rules are those of the reference BERT tokenizer (BertNormalizer, BertPreTokenizer and
 * WordPiece of Hugging Face's tokenizers, which made the expected ids of the test data):
 *   1. clean: drop U+0000, U+FFFD and control/format/unassigned characters (category C*,
 *      except tab, LF and CR); white space (category Z*, tab, LF, CR) separates words;
 *   2. every CJK ideograph is a word of its own;
 *   3. strip accents and lowercase: NFD, drop the nonspacing marks (Mn), lowercase
 *      (tok_wpm_unicode.c holds the per-code-point result of the three);
 *   4. every punctuation character (category P*, or an ASCII symbol) is a word of its own;
 *   5. WordPiece: a word of more than 100 characters is [UNK]; otherwise take the longest
 *      vocabulary piece at its start, then the longest continuation piece after it, and so
 *      on; if some position has none, the whole word is [UNK].
 * llama.cpp's converter writes the vocabulary with word-initial pieces prefixed by U+2581 and
 * continuation pieces ("##ing") without their "##", so the first lookup of a word is of
 * "\u2581" + its start and the others are of the bare text.
 *
 * Bytes that are not well-formed UTF-8 are taken as U+FFFD (so dropped), as llama.cpp does.
 */
#include <stdlib.h>
#include <string.h>

#include "infer/tok/tok_internal.h"

enum { WPM_MAX_WORD_CHARS = 100 };

/* The class of a code point: 0 (a letter, digit, symbol ...) or TOK_WPM_*. */
static int wpm_class(uint32_t cp)
{
    if (cp < 0x80) { /* fast path, the same answers as the table */
        if (cp == 9 || cp == 10 || cp == 13 || cp == 32)
            return TOK_WPM_SPACE;
        if (cp < 32 || cp == 127)
            return TOK_WPM_DROP;
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9'))
            return 0;
        return TOK_WPM_PUNCT;
    }
    size_t lo = 0, hi = tok_wpm_n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tok_wpm_ranges[mid].hi < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < tok_wpm_n_ranges && tok_wpm_ranges[lo].lo <= cp)
        return tok_wpm_ranges[lo].cls;
    return 0;
}

/* CJK ideographs as BERT's tokenizer lists them (blocks of the CJK Unified Ideographs and
 * their extensions, and the compatibility ideographs). */
static bool wpm_is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
           (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Steps 3: cp's code points after NFD without nonspacing marks, lowercased; returns how many
 * (0: dropped). */
static size_t wpm_map(uint32_t cp, uint32_t out[3])
{
    if (cp < 0x80) {
        out[0] = cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
        return 1;
    }
    if (cp >= 0xAC00 && cp <= 0xD7A3) { /* Hangul syllable: leading, vowel, trailing jamo */
        uint32_t s = cp - 0xAC00, t = s % 28;
        out[0] = 0x1100 + s / (21 * 28);
        out[1] = 0x1161 + (s % (21 * 28)) / 28;
        out[2] = 0x11A7 + t;
        return t ? 3 : 2;
    }
    size_t lo = 0, hi = tok_wpm_n_maps;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tok_wpm_maps[mid].cp < cp)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < tok_wpm_n_maps && tok_wpm_maps[lo].cp == cp) {
        size_t n = 0;
        while (n < 3 && tok_wpm_maps[lo].to[n])
            out[n] = tok_wpm_maps[lo].to[n], n++;
        return n;
    }
    out[0] = cp;
    return 1;
}

/* A word being collected: "\u2581" + its normalised UTF-8, and its length in characters. */
typedef struct wpm_word {
    char *s;
    size_t n, cap, chars;
} wpm_word;

static llmos_err word_put(wpm_word *w, uint32_t cp)
{
    if (w->n + 4 > w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        char *p = realloc(w->s, cap);
        if (!p)
            return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for a word");
        w->s = p;
        w->cap = cap;
    }
    if (w->n == 0) {
        memcpy(w->s, "\xe2\x96\x81", 3);
        w->n = 3;
    }
    w->n += utf8_encode(cp, w->s + w->n);
    w->chars++;
    return LLMOS_OK;
}

static bool is_char_start(const char *s, size_t i)
{
    return ((unsigned char)s[i] & 0xC0) != 0x80;
}

/* Step 5 on the collected word; empties it. */
static llmos_err word_flush(const tokenizer *t, wpm_word *w, tok_ids *out)
{
    if (w->n == 0)
        return LLMOS_OK;
    size_t first = out->n, n = w->n;
    bool ok = w->chars <= WPM_MAX_WORD_CHARS;
    for (size_t start = 0; ok && start < n;) {
        size_t end = start + t->max_token_len < n ? start + t->max_token_len : n;
        int32_t id = -1;
        for (; end > start && (start > 0 || end > 3); end--) {
            if (end < n && !is_char_start(w->s, end))
                continue;
            id = tok_lookup(t, w->s + start, end - start);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            ok = false;
            break;
        }
        llmos_err err = tok_ids_push(out, id);
        if (err)
            return err;
        start = end;
    }
    w->n = 0;
    w->chars = 0;
    if (!ok) {
        out->n = first;
        return tok_ids_push(out, t->unk);
    }
    return LLMOS_OK;
}

llmos_err tok_wpm_encode(const tokenizer *t, const char *text, size_t len, tok_ids *out)
{
    wpm_word w = {0};
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; i < len && !err;) {
        uint32_t cp;
        size_t k = utf8_decode(text + i, len - i, &cp);
        if (k == 0) {
            cp = 0xFFFD;
            k = 1;
        }
        i += k;
        int c = wpm_class(cp);
        if (c == TOK_WPM_DROP)
            continue;
        if (c == TOK_WPM_SPACE) {
            err = word_flush(t, &w, out);
            continue;
        }
        uint32_t m[3];
        size_t nm = wpm_map(cp, m);
        if (wpm_is_cjk(cp)) { /* a word of its own */
            err = word_flush(t, &w, out);
            for (size_t j = 0; j < nm && !err; j++)
                err = word_put(&w, m[j]);
            if (!err)
                err = word_flush(t, &w, out);
            continue;
        }
        for (size_t j = 0; j < nm && !err; j++) {
            if (wpm_class(m[j]) == TOK_WPM_PUNCT) {
                err = word_flush(t, &w, out);
                if (!err)
                    err = word_put(&w, m[j]);
                if (!err)
                    err = word_flush(t, &w, out);
            } else {
                err = word_put(&w, m[j]);
            }
        }
    }
    if (!err)
        err = word_flush(t, &w, out);
    free(w.s);
    return err;
}
