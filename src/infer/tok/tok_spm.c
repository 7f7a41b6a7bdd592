/*
 * tok_spm.c - SentencePiece-style BPE ("llama" tokenizer model: Llama 1/2, Mistral,
 * TinyLlama, Phi-3).
 *
 * The algorithm, as SentencePiece's BPE model and llama.cpp's llm_tokenizer_spm apply it:
 *   1. Spaces become U+2581 ("▁"); with add_space_prefix one "▁" is put in front.
 *   2. The text is cut into single characters (symbols).
 *   3. Every adjacent pair whose concatenation is a token is a candidate; repeatedly the
 *      candidate with the highest token score is merged (ties: leftmost first), and the new
 *      symbol's pairs with its neighbours become candidates.
 *   4. Each final symbol is its token; a character that is not in the vocabulary becomes
 *      its UTF-8 bytes as byte tokens <0xNN> (byte fallback), else the unknown token.
 * Bytes that are not well-formed UTF-8 are single symbols, so they take the byte fallback.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "infer/tok/tok_internal.h"

/* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space */
static const char spm_space[3] = {'\xe2', '\x96', '\x81'};

typedef struct spm_state {
    const tokenizer *t;
    const char *text;
    tok_symbol *sym;
    tok_heap heap;
} spm_state;

static llmos_err spm_try_bigram(spm_state *st, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return LLMOS_OK;
    const tok_symbol *l = &st->sym[left], *r = &st->sym[right];
    assert(l->off + l->len == r->off);
    uint32_t size = l->len + r->len;
    int32_t id = tok_lookup(st->t, st->text + l->off, size);
    if (id < 0)
        return LLMOS_OK;
    tok_bigram b = {-(double)st->t->scores[id], left, right, size, id};
    return tok_heap_push(&st->heap, b);
}

/* Emit the tokens of one final symbol. */
static llmos_err spm_emit(const tokenizer *t, const char *s, size_t n, tok_ids *out)
{
    int32_t id = tok_lookup(t, s, n);
    if (id >= 0)
        return tok_ids_push(out, id);
    bool have_bytes = true;
    for (size_t i = 0; i < n; i++)
        have_bytes = have_bytes && t->byte_token[(unsigned char)s[i]] >= 0;
    if (!have_bytes) {
        /* no byte fallback: the whole character is unknown */
        if (t->unk < 0)
            return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                              "tokenizer: character \"%.*s\" is not in the vocabulary, which "
                              "has neither byte tokens <0xNN> nor an unknown token",
                              (int)n, s);
        return tok_ids_push(out, t->unk);
    }
    for (size_t i = 0; i < n; i++) {
        llmos_err err = tok_ids_push(out, t->byte_token[(unsigned char)s[i]]);
        if (err)
            return err;
    }
    return LLMOS_OK;
}

/* Where the segment starting at `start` ends: at the next U+2581 that follows a character
 * other than U+2581. When no token contains "X▁" with X not ▁ (checked at load and true of
 * SentencePiece vocabularies trained with whitespace splitting), no token can span such a
 * point, so no merge crosses it and the segments can be merged independently. */
static size_t spm_segment_end(const char *s, size_t n, size_t start)
{
    bool prev_space = false;
    for (size_t i = start; i < n;) {
        bool space = i + 3 <= n && memcmp(s + i, spm_space, 3) == 0;
        if (space && i > start && !prev_space)
            return i;
        prev_space = space;
        i += space ? 3 : 1;
    }
    return n;
}

/* Merge esc[off .. off + n) and emit its tokens. */
static llmos_err spm_merge(spm_state *st, size_t off, size_t n, tok_ids *out)
{
    const char *esc = st->text;
    tok_symbol *sym = st->sym;
    llmos_err err = LLMOS_OK;
    st->heap.n = 0;
    /* one symbol per character; an ill-formed byte is a symbol of its own */
    int32_t n_sym = 0;
    for (size_t i = off; i < off + n;) {
        uint32_t cp;
        size_t k = utf8_decode(esc + i, off + n - i, &cp);
        if (k == 0)
            k = 1;
        sym[n_sym] = (tok_symbol){n_sym - 1, n_sym + 1, (uint32_t)i, (uint32_t)k};
        n_sym++;
        i += k;
    }
    if (n_sym == 0)
        return LLMOS_OK;
    sym[n_sym - 1].next = -1;

    for (int32_t i = 1; i < n_sym && !err; i++)
        err = spm_try_bigram(st, i - 1, i);

    tok_bigram b;
    while (!err && tok_heap_pop(&st->heap, &b)) {
        tok_symbol *l = &sym[b.left], *r = &sym[b.right];
        /* stale: one side was merged away or grew since this candidate was made */
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            sym[r->next].prev = b.left;
        err = spm_try_bigram(st, l->prev, b.left);
        if (!err)
            err = spm_try_bigram(st, b.left, l->next);
    }

    for (int32_t i = 0; i >= 0 && !err; i = sym[i].next)
        err = spm_emit(st->t, esc + sym[i].off, sym[i].len, out);
    return err;
}

llmos_err tok_spm_encode(const tokenizer *t, const char *text, size_t len, bool prefix,
                         tok_ids *out)
{
    /* escaped text: every ' ' is 3 bytes, plus the prefix */
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++)
        spaces += text[i] == ' ';
    size_t elen = len + 2 * spaces + (prefix ? 3 : 0);
    if (elen == 0)
        return LLMOS_OK;
    char *esc = malloc(elen);
    tok_symbol *sym = malloc(elen * sizeof *sym);
    spm_state st = {t, esc, sym, {0}};
    llmos_err err = LLMOS_OK;
    if (!esc || !sym) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu bytes of text", elen);
        goto done;
    }
    size_t p = 0;
    if (prefix) {
        memcpy(esc, spm_space, 3);
        p = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + p, spm_space, 3);
            p += 3;
        } else {
            esc[p++] = text[i];
        }
    }
    assert(p == elen);

    /* Merge segment by segment when the vocabulary allows it (see spm_segment_end); the
     * result is the same as merging the whole text at once, with small heaps. */
    tok_word_cache cache = {0};
    if (t->spm_split_words)
        err = tok_wc_init(&cache, spaces + 1);
    for (size_t seg = 0; seg < elen && !err;) {
        size_t seg_end = t->spm_split_words ? spm_segment_end(esc, elen, seg) : elen;
        tok_wc_entry *e = tok_wc_find(&cache, esc, seg, seg_end - seg);
        if (e && e->n_ids != TOK_WC_EMPTY) {
            err = tok_wc_repeat(e, out); /* the same word earlier in this text */
        } else {
            size_t before = out->n;
            err = spm_merge(&st, seg, seg_end - seg, out);
            if (!err)
                tok_wc_store(&cache, e, before, out->n);
        }
        seg = seg_end;
    }
    tok_wc_free(&cache);
done:
    free(st.heap.v);
    free(esc);
    free(sym);
    return err;
}
