/*
 * tokenizer.c - the tokenizer object: building it from arrays, hash lookups, special
 * tokens, encoding driver and decoding (whole and streaming).
 *
 * Encoding runs in three steps. (1) The text is partitioned at special tokens: USER_DEFINED
 * tokens that are plain text are always found, CONTROL/UNKNOWN ones and every other
 * USER_DEFINED one only with TOK_PARSE_SPECIAL (the guarantee that typed "<|im_start|>" or
 * "</s>" never becomes the token; see mark_typed). Matching is leftmost, longest
 * first. (2) Each raw fragment between them goes to the model's algorithm (tok_spm.c or
 * tok_bpe.c). (3) BOS/EOS are added when asked for and the metadata says so.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "infer/tok/tok_internal.h"

/* ---- hash tables ---------------------------------------------------------------------- */

static llmos_err htab_init(tok_htab *h, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    if (cap > ((size_t)1 << 31))
        return llmos_fail(LLMOS_ERR_LIMIT, "tokenizer: %zu entries is too many", n);
    h->slots = calloc(cap, sizeof *h->slots);
    if (!h->slots)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for a table of %zu", n);
    h->mask = (uint32_t)(cap - 1);
    return LLMOS_OK;
}

static void htab_free(tok_htab *h)
{
    free(h->slots);
    h->slots = NULL;
}

static bool token_eq(const tokenizer *t, uint32_t id, const char *s, size_t n)
{
    return t->len[id] == n && memcmp(t->text + t->off[id], s, n) == 0;
}

int32_t tok_lookup(const tokenizer *t, const char *s, size_t n)
{
    uint32_t h = tok_hash_bytes(TOK_HASH_INIT, s, n);
    for (uint32_t i = h & t->by_text.mask;; i = (i + 1) & t->by_text.mask) {
        uint64_t e = t->by_text.slots[i];
        if (e == 0)
            return -1;
        if ((uint32_t)(e >> 32) == h) {
            uint32_t id = (uint32_t)e - 1;
            if (token_eq(t, id, s, n))
                return (int32_t)id;
        }
    }
}

/* Insert token `id`; a later token with the same text replaces the earlier one. */
static void by_text_insert(tokenizer *t, uint32_t id)
{
    const char *s = t->text + t->off[id];
    size_t n = t->len[id];
    uint32_t h = tok_hash_bytes(TOK_HASH_INIT, s, n);
    for (uint32_t i = h & t->by_text.mask;; i = (i + 1) & t->by_text.mask) {
        uint64_t e = t->by_text.slots[i];
        if (e != 0 && (uint32_t)(e >> 32) == h && token_eq(t, (uint32_t)e - 1, s, n)) {
            t->by_text.slots[i] = ((uint64_t)h << 32) | (id + 1);
            return;
        }
        if (e == 0) {
            t->by_text.slots[i] = ((uint64_t)h << 32) | (id + 1);
            return;
        }
    }
}

static uint32_t merge_hash(const char *l, size_t ln, const char *r, size_t rn)
{
    uint32_t h = tok_hash_bytes(TOK_HASH_INIT, l, ln);
    h = tok_hash_bytes(h, " ", 1);
    return tok_hash_bytes(h, r, rn);
}

static bool merge_eq(const tokenizer *t, uint32_t r, const char *l, size_t ln, const char *rt,
                     size_t rn)
{
    const char *m = t->mtext + t->moff[r];
    return t->msplit[r] == ln && t->mlen[r] == ln + 1 + rn && memcmp(m, l, ln) == 0 &&
           memcmp(m + ln + 1, rt, rn) == 0;
}

int32_t tok_merge_rank(const tokenizer *t, const char *l, size_t ln, const char *r, size_t rn)
{
    if (t->n_merges == 0)
        return -1;
    uint32_t h = merge_hash(l, ln, r, rn);
    for (uint32_t i = h & t->merges.mask;; i = (i + 1) & t->merges.mask) {
        uint64_t e = t->merges.slots[i];
        if (e == 0)
            return -1;
        if ((uint32_t)(e >> 32) == h && merge_eq(t, (uint32_t)e - 1, l, ln, r, rn))
            return (int32_t)((uint32_t)e - 1);
    }
}

/* Insert merge `r` unless an earlier (better ranked) one has the same pair. */
static void merges_insert(tokenizer *t, uint32_t r)
{
    const char *m = t->mtext + t->moff[r];
    size_t ln = t->msplit[r], rn = t->mlen[r] - ln - 1;
    uint32_t h = merge_hash(m, ln, m + ln + 1, rn);
    for (uint32_t i = h & t->merges.mask;; i = (i + 1) & t->merges.mask) {
        uint64_t e = t->merges.slots[i];
        if (e == 0) {
            t->merges.slots[i] = ((uint64_t)h << 32) | (r + 1);
            return;
        }
        if ((uint32_t)(e >> 32) == h && merge_eq(t, (uint32_t)e - 1, m, ln, m + ln + 1, rn))
            return;
    }
}

llmos_err tok_ids_push(tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v)
            return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu ids", cap);
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id; // NOLINT(clang-analyzer-core.NullDereference): ids->v is allocated
                           // whenever n < cap (cap starts at 0)
    return LLMOS_OK;
}

/* ---- bigram heap ------------------------------------------------------------------------ */

static bool bigram_before(const tok_bigram *a, const tok_bigram *b)
{
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

llmos_err tok_heap_push(tok_heap *h, tok_bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        tok_bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu bigrams", cap);
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &h->v[parent]))
            break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = b;
    return LLMOS_OK;
}

bool tok_heap_pop(tok_heap *h, tok_bigram *b)
{
    if (h->n == 0)
        return false;
    *b = h->v[0];
    tok_bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!bigram_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n > 0)
        h->v[i] = last;
    return true;
}

/* ---- word cache -------------------------------------------------------------------------- */

llmos_err tok_wc_init(tok_word_cache *c, size_t n_words)
{
    memset(c, 0, sizeof *c);
    if (n_words < TOK_WC_MIN_WORDS)
        return LLMOS_OK; /* short texts: not worth it */
    size_t cap = 64;
    while (cap < 2 * n_words && cap < TOK_WC_MAX_SLOTS)
        cap <<= 1;
    c->slots = malloc(cap * sizeof *c->slots);
    if (!c->slots)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for a word cache");
    for (size_t i = 0; i < cap; i++)
        c->slots[i].n_ids = TOK_WC_EMPTY;
    c->mask = (uint32_t)(cap - 1);
    c->max_used = cap / 2;
    return LLMOS_OK;
}

void tok_wc_free(tok_word_cache *c)
{
    free(c->slots);
    c->slots = NULL;
}

tok_wc_entry *tok_wc_find(tok_word_cache *c, const char *base, size_t off, size_t n)
{
    if (!c->slots || n > TOK_WC_MAX_WORD)
        return NULL;
    const char *word = base + off;
    uint32_t h = tok_hash_bytes(TOK_HASH_INIT, word, n);
    for (uint32_t i = h & c->mask;; i = (i + 1) & c->mask) {
        tok_wc_entry *e = &c->slots[i];
        if (e->n_ids == TOK_WC_EMPTY) {
            /* where it would go: remember the key for tok_wc_store */
            e->hash = h;
            e->off = (uint32_t)off;
            e->len = (uint32_t)n;
            return e;
        }
        if (e->hash == h && e->len == n && memcmp(base + e->off, word, n) == 0)
            return e;
    }
}

llmos_err tok_wc_repeat(const tok_wc_entry *e, tok_ids *out)
{
    assert(e->n_ids != TOK_WC_EMPTY);
    for (uint32_t k = 0; k < e->n_ids; k++) {
        llmos_err err = tok_ids_push(out, out->v[e->first_id + k]);
        if (err)
            return err;
    }
    return LLMOS_OK;
}

void tok_wc_store(tok_word_cache *c, tok_wc_entry *e, size_t first, size_t end)
{
    if (!e || c->used >= c->max_used || end - first >= TOK_WC_EMPTY)
        return;
    e->first_id = (uint32_t)first;
    e->n_ids = (uint32_t)(end - first);
    c->used++;
}

/* ---- building --------------------------------------------------------------------------- */

tok_spec tok_spec_default(tok_model model)
{
    tok_spec s;
    memset(&s, 0, sizeof s);
    s.model = model;
    s.bos = s.eos = s.eot = s.pad = s.unk = -1;
    if (model == TOK_MODEL_SPM) {
        s.add_bos = true;
        s.add_space_prefix = true;
    }
    return s;
}

void tok_free(tokenizer *t)
{
    if (!t)
        return;
    tok_bpe_free(t);
    free(t->text);
    free(t->off);
    free(t->len);
    free(t->scores);
    free(t->types);
    free(t->eog);
    free(t->typed);
    htab_free(&t->by_text);
    free(t->mtext);
    free(t->moff);
    free(t->mlen);
    free(t->msplit);
    htab_free(&t->merges);
    free(t->specials);
    free(t);
}

static llmos_err check_special(const tokenizer *t, const char *name, int32_t id)
{
    if (id < -1 || (id >= 0 && (size_t)id >= t->n_tokens))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "tokenizer: %s token id %d is out of range (vocabulary has %zu tokens)",
                          name, (int)id, t->n_tokens);
    return LLMOS_OK;
}

/* Texts of control tokens that end a turn in the chat templates of the supported families
 * (the same list llama.cpp's vocabulary loader uses to find end-of-generation tokens). */
static const char *const eog_texts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>", /* DeepSeek (UTF-8 in octal)
                                                                        */
};

/* Sort key of a special token: first byte ascending, then longest first, then id. */
typedef struct special_key {
    uint32_t first, len;
    int32_t id;
} special_key;

static int special_cmp(const void *pa, const void *pb)
{
    const special_key *a = pa, *b = pb;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    if (a->len != b->len)
        return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

static llmos_err build_specials(tokenizer *t)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_tokens; i++) {
        uint8_t ty = t->types[i];
        if ((ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN) &&
            t->len[i] > 0)
            n++;
    }
    t->specials = malloc((n ? n : 1) * sizeof *t->specials);
    if (!t->specials)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for special tokens");
    size_t k = 0;
    for (size_t i = 0; i < t->n_tokens; i++) {
        uint8_t ty = t->types[i];
        if ((ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN) &&
            t->len[i] > 0)
            t->specials[k++] = (int32_t)i;
    }
    assert(k == n);
    special_key *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for special tokens");
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->specials[i];
        keys[i] = (special_key){(unsigned char)t->text[t->off[id]], t->len[id], id};
    }
    qsort(keys, n, sizeof *keys, special_cmp);
    for (size_t i = 0; i < n; i++)
        t->specials[i] = keys[i].id;
    free(keys);
    size_t j = 0;
    for (unsigned b = 0; b < 256; b++) {
        t->special_start[b] = (uint32_t)j;
        while (j < n && (unsigned char)t->text[t->off[t->specials[j]]] == b)
            j++;
    }
    t->special_start[256] = (uint32_t)n;
    return LLMOS_OK;
}

static llmos_err load_tokens(tokenizer *t, const tok_spec *s)
{
    size_t total = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        if (!s->tokens[i])
            return llmos_fail(LLMOS_ERR_INVALID, "tokenizer: token %zu has no text", i);
        size_t n = s->token_lens ? s->token_lens[i] : strlen(s->tokens[i]);
        total += n;
        if (total > UINT32_MAX)
            return llmos_fail(LLMOS_ERR_LIMIT, "tokenizer: token texts exceed 4 GiB");
    }
    t->n_tokens = s->n_tokens;
    t->text = malloc(total + 1);
    t->off = malloc(s->n_tokens * sizeof *t->off + 1);
    t->len = malloc(s->n_tokens * sizeof *t->len + 1);
    t->scores = calloc(s->n_tokens + 1, sizeof *t->scores);
    t->types = malloc(s->n_tokens + 1);
    t->eog = calloc(s->n_tokens + 1, sizeof *t->eog);
    if (!t->text || !t->off || !t->len || !t->scores || !t->types || !t->eog)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu tokens", s->n_tokens);
    size_t pos = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        size_t n = s->token_lens ? s->token_lens[i] : strlen(s->tokens[i]);
        memcpy(t->text + pos, s->tokens[i], n);
        t->off[i] = (uint32_t)pos;
        t->len[i] = (uint32_t)n;
        pos += n;
        if (s->scores)
            t->scores[i] = s->scores[i];
        int32_t ty = s->types ? s->types[i] : TOK_TYPE_NORMAL;
        if (ty < 0 || ty > TOK_TYPE_BYTE)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "tokenizer: token %zu has type %d (expected 0..6, see tok_type)", i,
                              (int)ty);
        t->types[i] = (uint8_t)ty;
    }
    t->text[total] = '\0';
    llmos_err err = htab_init(&t->by_text, s->n_tokens);
    if (err)
        return err;
    for (size_t i = 0; i < s->n_tokens; i++)
        by_text_insert(t, (uint32_t)i);
    return LLMOS_OK;
}

static llmos_err load_merges(tokenizer *t, const tok_spec *s)
{
    size_t total = 0;
    for (size_t i = 0; i < s->n_merges; i++) {
        if (!s->merges[i])
            return llmos_fail(LLMOS_ERR_INVALID, "tokenizer: merge %zu has no text", i);
        total += s->merge_lens ? s->merge_lens[i] : strlen(s->merges[i]);
        if (total > UINT32_MAX)
            return llmos_fail(LLMOS_ERR_LIMIT, "tokenizer: merge texts exceed 4 GiB");
    }
    t->n_merges = s->n_merges;
    t->mtext = malloc(total + 1);
    t->moff = malloc(s->n_merges * sizeof *t->moff + 1);
    t->mlen = malloc(s->n_merges * sizeof *t->mlen + 1);
    t->msplit = malloc(s->n_merges * sizeof *t->msplit + 1);
    if (!t->mtext || !t->moff || !t->mlen || !t->msplit)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu merges", s->n_merges);
    size_t pos = 0;
    for (size_t i = 0; i < s->n_merges; i++) {
        size_t n = s->merge_lens ? s->merge_lens[i] : strlen(s->merges[i]);
        const char *m = s->merges[i];
        /* "left right": the first space after the first byte separates the parts (a part
         * never holds a space in byte-level vocabularies, where space is the character
         * U+0120) */
        const char *sp = n > 1 ? memchr(m + 1, ' ', n - 1) : NULL;
        if (!sp)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "tokenizer: merge %zu (\"%.*s\") has no space between its two "
                              "parts (expected \"left right\")",
                              i, (int)(n > 40 ? 40 : n), m);
        memcpy(t->mtext + pos, m, n);
        t->moff[i] = (uint32_t)pos;
        t->mlen[i] = (uint32_t)n;
        t->msplit[i] = (uint32_t)(sp - m);
        pos += n;
    }
    t->mtext[total] = '\0';
    if (s->n_merges == 0)
        return LLMOS_OK;
    llmos_err err = htab_init(&t->merges, s->n_merges);
    if (err)
        return err;
    for (size_t i = 0; i < s->n_merges; i++)
        merges_insert(t, (uint32_t)i);
    return LLMOS_OK;
}

static void find_byte_tokens(tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char name[8];
        /* SentencePiece byte pieces are spelled "<0xNN>" with upper-case hex */
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_token[b] = tok_lookup(t, name, 6);
        char enc[4];
        size_t n = utf8_encode(tok_gpt2_byte_to_cp((uint8_t)b), enc);
        t->gpt2_byte_token[b] = tok_lookup(t, enc, n);
    }
}

/* True when no token contains U+2581 right after another character than U+2581: then no
 * merge can cross the start of a word, and tok_spm.c may merge word by word. */
static bool spm_words_independent(const tokenizer *t)
{
    for (size_t id = 0; id < t->n_tokens; id++) {
        const char *s = t->text + t->off[id];
        size_t n = t->len[id];
        const char *p = s;
        while (n >= 3 && (p = memmem(p, n - (size_t)(p - s), "\xe2\x96\x81", 3)) != NULL) {
            if (p > s && !(p - s >= 3 && memcmp(p - 3, "\xe2\x96\x81", 3) == 0))
                return false;
            p += 3;
            if ((size_t)(p - s) >= n)
                break;
        }
    }
    return true;
}

/* Is s[0..n) ordinary text: white space only (spaces written as U+2581 too), or a single
 * character? */
static bool plain_text(const char *s, size_t n)
{
    uint32_t cp;
    if (n > 0 && utf8_decode(s, n, &cp) == n)
        return true;
    for (size_t i = 0; i < n;) {
        if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == '\v' ||
            s[i] == '\f')
            i++;
        else if (n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0)
            i += 3;
        else
            return false;
    }
    return n > 0;
}

/* Which special tokens typed text may produce without TOK_PARSE_SPECIAL (t->typed): only
 * USER_DEFINED tokens that are plain text and have no structural role. The reference
 * tokenizers match every USER_DEFINED token in text, but converters give that type to
 * tokens the model reads as structure: Phi-3's "</s>" (Llama 2's end of sequence, typed
 * USER_DEFINED while the EOS is <|endoftext|>), Qwen2's "<tool_call>", DeepSeek Coder's
 * "<|User|>", "<|Assistant|>" and "<|EOT|>". So one that is not plain text is treated as a
 * control token, whatever its type says; what remains is the text the reference tokenizations
 * rely on (MPT's runs of spaces, DeepSeek's single Latin-1 letters). */
static llmos_err mark_typed(tokenizer *t)
{
    t->typed = calloc(t->n_tokens + 1, sizeof *t->typed);
    if (!t->typed)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu flags", t->n_tokens);
    for (size_t i = 0; i < t->n_tokens; i++) {
        int32_t id = (int32_t)i;
        t->typed[i] = t->types[i] == TOK_TYPE_USER_DEFINED && !t->eog[i] && id != t->bos &&
                      id != t->eos && id != t->eot && id != t->pad && id != t->unk &&
                      id != t->eom && plain_text(t->text + t->off[i], t->len[i]);
    }
    return LLMOS_OK;
}

llmos_err tok_new(const tok_spec *s, tokenizer **out)
{
    *out = NULL;
    if (!s || (s->model != TOK_MODEL_SPM && s->model != TOK_MODEL_BPE && s->model != TOK_MODEL_WPM))
        return llmos_fail(LLMOS_ERR_INVALID, "tok_new: no spec or unknown model");
    if (s->n_tokens == 0 || !s->tokens)
        return llmos_fail(LLMOS_ERR_FORMAT, "tokenizer: the vocabulary has no tokens");
    if (s->n_tokens > INT32_MAX)
        return llmos_fail(LLMOS_ERR_LIMIT, "tokenizer: %zu tokens is too many", s->n_tokens);
    if (s->n_merges && !s->merges)
        return llmos_fail(LLMOS_ERR_INVALID, "tok_new: n_merges without merges");
    tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory");
    t->model = s->model;
    t->bos = s->bos;
    t->eos = s->eos;
    t->eot = s->eot;
    t->eom = -1;
    t->pad = s->pad;
    t->unk = s->unk;
    t->add_bos = s->add_bos;
    t->add_eos = s->add_eos;
    /* WordPiece pieces that start a word carry U+2581 too, and decoding drops the first */
    t->add_space_prefix = (s->model == TOK_MODEL_SPM && s->add_space_prefix) ||
                          s->model == TOK_MODEL_WPM;

    llmos_err err = load_tokens(t, s);
    if (!err && s->model == TOK_MODEL_BPE)
        err = load_merges(t, s);
    if (!err)
        err = check_special(t, "BOS", t->bos);
    if (!err)
        err = check_special(t, "EOS", t->eos);
    if (!err)
        err = check_special(t, "EOT", t->eot);
    if (!err)
        err = check_special(t, "padding", t->pad);
    if (!err)
        err = check_special(t, "unknown", t->unk);
    if (!err && s->model == TOK_MODEL_WPM && t->unk < 0)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "tokenizer: a WordPiece vocabulary needs an unknown token "
                         "(tokenizer.ggml.unknown_token_id), for words it cannot spell");
    if (!err)
        err = build_specials(t);
    if (!err && s->model == TOK_MODEL_BPE)
        err = tok_bpe_init(t, s->pre ? s->pre : "default");
    if (err) {
        tok_free(t);
        return err;
    }
    find_byte_tokens(t);
    for (size_t i = 0; i < t->n_tokens; i++)
        if (t->len[i] > t->max_token_len)
            t->max_token_len = t->len[i];
    if (t->model == TOK_MODEL_SPM)
        t->spm_split_words = spm_words_independent(t);
    if (t->eos >= 0)
        t->eog[t->eos] = true;
    if (t->eot >= 0)
        t->eog[t->eot] = true;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(eog_texts); i++) {
        int32_t id = tok_lookup(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && t->types[id] == TOK_TYPE_CONTROL) {
            t->eog[id] = true;
            if (strcmp(eog_texts[i], "<|eom_id|>") == 0)
                t->eom = id;
            /* without tokenizer.ggml.eot_token_id, the first end-of-turn token in the list
             * order that is not EOS is the EOT (Qwen: EOS <|endoftext|>, EOT <|im_end|>) */
            else if (t->eot < 0 && id != t->eos)
                t->eot = id;
        }
    }
    err = mark_typed(t);
    if (err) {
        tok_free(t);
        return err;
    }
    *out = t;
    return LLMOS_OK;
}

/* ---- accessors -------------------------------------------------------------------------- */

size_t tok_n_vocab(const tokenizer *t)
{
    return t->n_tokens;
}
tok_model tok_get_model(const tokenizer *t)
{
    return t->model;
}
int32_t tok_bos(const tokenizer *t)
{
    return t->bos;
}
int32_t tok_eos(const tokenizer *t)
{
    return t->eos;
}
int32_t tok_eot(const tokenizer *t)
{
    return t->eot;
}
int32_t tok_pad(const tokenizer *t)
{
    return t->pad;
}
bool tok_adds_bos(const tokenizer *t)
{
    return t->add_bos && t->bos >= 0;
}
bool tok_adds_eos(const tokenizer *t)
{
    return t->add_eos && t->eos >= 0;
}

static bool valid_id(const tokenizer *t, int32_t id)
{
    return id >= 0 && (size_t)id < t->n_tokens;
}

bool tok_is_eog(const tokenizer *t, int32_t id)
{
    return valid_id(t, id) && t->eog[id];
}

tok_type tok_get_type(const tokenizer *t, int32_t id)
{
    return valid_id(t, id) ? (tok_type)t->types[id] : TOK_TYPE_UNDEFINED;
}

const char *tok_piece(const tokenizer *t, int32_t id, size_t *len)
{
    if (!valid_id(t, id)) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->len[id];
    return t->text + t->off[id];
}

int32_t tok_find(const tokenizer *t, const char *text, size_t len)
{
    return tok_lookup(t, text, len);
}

/* ---- encoding --------------------------------------------------------------------------- */

/* The special token starting at text[pos], longest first, or -1. */
static int32_t special_at(const tokenizer *t, const char *text, size_t len, size_t pos,
                          bool parse_special)
{
    unsigned char b = (unsigned char)text[pos];
    for (uint32_t k = t->special_start[b]; k < t->special_start[b + 1]; k++) {
        int32_t id = t->specials[k];
        if (!parse_special && !t->typed[id])
            continue;
        size_t n = t->len[id];
        if (n <= len - pos && memcmp(text + pos, t->text + t->off[id], n) == 0)
            return id;
    }
    return -1;
}

static llmos_err encode_fragment(const tokenizer *t, const char *text, size_t len, bool prefix,
                                 tok_ids *out)
{
    if (t->model == TOK_MODEL_SPM)
        return tok_spm_encode(t, text, len, prefix, out);
    if (t->model == TOK_MODEL_WPM)
        return tok_wpm_encode(t, text, len, out);
    return len ? tok_bpe_encode(t, text, len, out) : LLMOS_OK;
}

llmos_err tok_encode(const tokenizer *t, const char *text, size_t len, unsigned flags,
                     int32_t **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!text && len)
        return llmos_fail(LLMOS_ERR_INVALID, "tok_encode: NULL text of length %zu", len);
    if (len > (size_t)INT32_MAX)
        return llmos_fail(LLMOS_ERR_LIMIT, "tok_encode: %zu bytes is more than 2 GiB", len);
    tok_ids ids = {0};
    llmos_err err = LLMOS_OK;
    bool add = (flags & TOK_ADD_SPECIAL) != 0;
    bool parse = (flags & TOK_PARSE_SPECIAL) != 0;
    if (add && t->add_bos && t->bos >= 0)
        err = tok_ids_push(&ids, t->bos);

    /* The SPM space prefix goes in front of the first raw fragment, and again after any
     * special token (as the reference implementation does). */
    bool prev_special = true;
    size_t start = 0, pos = 0;
    while (!err && pos < len) {
        int32_t sp = -1;
        if (t->special_start[(unsigned char)text[pos]] !=
            t->special_start[(unsigned char)text[pos] + 1])
            sp = special_at(t, text, len, pos, parse);
        if (sp < 0) {
            pos++;
            continue;
        }
        if (pos > start) {
            err = encode_fragment(t, text + start, pos - start, t->add_space_prefix && prev_special,
                                  &ids);
            if (err)
                break;
        }
        err = tok_ids_push(&ids, sp);
        prev_special = true;
        pos += t->len[sp];
        start = pos;
    }
    if (!err && start < len)
        err = encode_fragment(t, text + start, len - start, t->add_space_prefix && prev_special,
                              &ids);
    if (!err && add && t->add_eos && t->eos >= 0)
        err = tok_ids_push(&ids, t->eos);
    if (!err && !ids.v)
        err = tok_ids_push(&ids, 0), ids.n = 0;
    if (err) {
        free(ids.v);
        return err;
    }
    *out = ids.v;
    *n_out = ids.n;
    return LLMOS_OK;
}

/* ---- decoding --------------------------------------------------------------------------- */

/* "<0xNN>" -> NN, or -1. */
static int parse_byte_piece(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

llmos_err tok_token_bytes(const tokenizer *t, int32_t id, llmos_buf *out)
{
    if (!valid_id(t, id))
        return llmos_fail(LLMOS_ERR_INVALID, "tokenizer: token id %d is out of range (0..%zu)",
                          (int)id, t->n_tokens - 1);
    const char *s = t->text + t->off[id];
    size_t n = t->len[id];
    uint8_t ty = t->types[id];
    if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN)
        return buf_append(out, s, n);
    if (t->model == TOK_MODEL_SPM || t->model == TOK_MODEL_WPM) {
        if (ty == TOK_TYPE_BYTE) {
            int b = parse_byte_piece(s, n);
            if (b >= 0)
                return buf_putc(out, (char)b);
            return buf_append(out, s, n);
        }
        /* U+2581 LOWER ONE EIGHTH BLOCK (E2 96 81) stands for a space */
        llmos_err err = buf_reserve(out, n);
        if (err)
            return err;
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                out->data[out->len++] = ' ';
                i += 3;
            } else {
                out->data[out->len++] = s[i++];
            }
        }
        out->data[out->len] = '\0';
        return LLMOS_OK;
    }
    if (ty != TOK_TYPE_NORMAL && ty != TOK_TYPE_UNDEFINED)
        return buf_append(out, s, n); /* added tokens are stored as plain text */
    /* byte-level BPE: each character of the token stands for one byte */
    llmos_err err = buf_reserve(out, n);
    if (err)
        return err;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(s + i, n - i, &cp);
        int b = k ? tok_gpt2_cp_to_byte(cp) : -1;
        if (b >= 0) {
            out->data[out->len++] = (char)b;
            i += k;
        } else {
            /* not a byte character: keep the text (a vocabulary oddity, not input) */
            size_t m = k ? k : 1;
            memcpy(out->data + out->len, s + i, m);
            out->len += m;
            i += m;
        }
    }
    out->data[out->len] = '\0';
    return LLMOS_OK;
}

/* Append one token's bytes as the decoders see them (control tokens skipped unless
 * `special`). */
static llmos_err decode_one(const tokenizer *t, int32_t id, bool special, llmos_buf *out)
{
    if (!valid_id(t, id))
        return llmos_fail(LLMOS_ERR_INVALID, "tokenizer: token id %d is out of range (0..%zu)",
                          (int)id, t->n_tokens - 1);
    if (!special && t->types[id] == TOK_TYPE_CONTROL)
        return LLMOS_OK;
    return tok_token_bytes(t, id, out);
}

llmos_err tok_decode(const tokenizer *t, const int32_t *ids, size_t n, bool special, llmos_buf *out)
{
    bool strip = t->model != TOK_MODEL_BPE && t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        llmos_err err = decode_one(t, ids[i], special, out);
        if (err)
            return err;
        if (strip && out->len > before) {
            if (out->data[before] == ' ') {
                memmove(out->data + before, out->data + before + 1, out->len - before - 1);
                out->len--;
                out->data[out->len] = '\0';
            }
            strip = false;
        }
    }
    return LLMOS_OK;
}

void tok_decoder_init(tok_decoder *d, const tokenizer *t, bool special, bool first_piece)
{
    memset(d, 0, sizeof *d);
    d->t = t;
    d->special = special;
    d->strip_space = first_piece && t->model != TOK_MODEL_BPE && t->add_space_prefix;
    buf_init(&d->pending);
}

void tok_decoder_free(tok_decoder *d)
{
    if (d)
        buf_free(&d->pending);
}

/* Move the complete part of d->pending to out: valid UTF-8 as is, bytes that cannot start
 * or continue a character as U+FFFD; an incomplete tail stays (unless `final`). */
static llmos_err decoder_drain(tok_decoder *d, llmos_buf *out, bool final)
{
    const char *s = d->pending.data;
    size_t n = d->pending.len, i = 0;
    llmos_err err = LLMOS_OK;
    while (i < n && !err) {
        size_t ok = utf8_valid_prefix(s + i, n - i);
        err = buf_append(out, s + i, ok);
        i += ok;
        if (err || i == n)
            break;
        if (!final && utf8_incomplete_tail(s + i, n - i) == n - i)
            break; /* wait for the rest of the character */
        /* U+FFFD REPLACEMENT CHARACTER for one byte that is not valid here */
        err = buf_append(out, "\xef\xbf\xbd", 3);
        i++;
    }
    if (err || i == 0)
        return err; /* (nothing consumed: pending may still be unallocated, data NULL) */
    memmove(d->pending.data, s + i, n - i);
    d->pending.len = n - i;
    d->pending.data[d->pending.len] = '\0';
    return LLMOS_OK;
}

llmos_err tok_decoder_feed(tok_decoder *d, int32_t id, llmos_buf *out)
{
    size_t before = d->pending.len;
    llmos_err err = decode_one(d->t, id, d->special, &d->pending);
    if (err)
        return err;
    if (d->pending.len > before && !d->started) {
        d->started = true;
        if (d->strip_space && d->pending.data[before] == ' ') {
            memmove(d->pending.data + before, d->pending.data + before + 1,
                    d->pending.len - before - 1);
            d->pending.len--;
            d->pending.data[d->pending.len] = '\0';
        }
    }
    return decoder_drain(d, out, false);
}

llmos_err tok_decoder_flush(tok_decoder *d, llmos_buf *out)
{
    llmos_err err = decoder_drain(d, out, true);
    buf_clear(&d->pending);
    d->started = false;
    return err;
}
