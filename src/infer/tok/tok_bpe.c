/*
 * tok_bpe.c - byte-level BPE ("gpt2" tokenizer model: GPT-2, Llama 3, Qwen2, Falcon,
 * DeepSeek, StarCoder, MPT, Refact) and its regex pre-tokenizers.
 *
 * Encoding one raw fragment:
 *   1. Pre-tokenize: the fragment is split by a list of regular expressions, applied one
 *      after the other; each one splits every piece from the previous step into its matches
 *      AND the gaps between them (nothing is dropped). A match never reaches past its piece.
 *      The lists per `tokenizer.ggml.pre` are the ones the GGUF convention names (llama.cpp's
 *      llama-vocab.cpp, which follows each model's tokenizer.json pre_tokenizer).
 *   2. Each piece's bytes are written as characters through the GPT-2 byte<->unicode table.
 *   3. Inside a piece, adjacent symbols are merged by merge rank (lowest first, ties
 *      leftmost), starting from single characters.
 *   4. Each final symbol is its token; should one not be in the vocabulary, its characters
 *      are looked up one by one (and dropped if missing).
 *
 * Regexes are PCRE2 with UTF, UCP (so \s \d \w and \p{..} are Unicode-aware, as in the
 * reference tokenizers) and MATCH_INVALID_UTF, so input that is not valid UTF-8 is still
 * tokenized: invalid bytes never match and end up as gap pieces, which the byte mapping
 * turns into ordinary byte tokens.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "infer/tok/tok_internal.h"

/* ---- the GPT-2 byte <-> unicode table ----------------------------------------------------
 * From GPT-2's encoder.py bytes_to_unicode(): the printable bytes '!'..'~', 0xA1..0xAC and
 * 0xAE..0xFF stand for themselves; the other 68 bytes (0x00-0x20, 0x7F-0xA0, 0xAD), in
 * increasing order, become U+0100, U+0101, ... so every byte is a visible character. */

static bool gpt2_self(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The 68 remapped bytes are three runs: 0x00-0x20 (U+0100..U+0120), 0x7F-0xA0
 * (U+0121..U+0142) and 0xAD (U+0143). */
uint32_t tok_gpt2_byte_to_cp(uint8_t b)
{
    if (gpt2_self(b))
        return b;
    if (b <= 0x20)
        return 0x100u + b;
    if (b >= 0x7F && b <= 0xA0)
        return 0x121u + (b - 0x7Fu);
    assert(b == 0xAD);
    return 0x143;
}

int tok_gpt2_cp_to_byte(uint32_t cp)
{
    if (cp < 0x100)
        return gpt2_self(cp) ? (int)cp : -1;
    if (cp <= 0x120)
        return (int)(cp - 0x100);
    if (cp <= 0x142)
        return (int)(0x7F + (cp - 0x121));
    if (cp == 0x143)
        return 0xAD;
    return -1;
}

/* ---- pre-tokenizer regex lists -------------------------------------------------------- */

/* GPT-2's pattern as llama.cpp writes it (without the final "|\s+": a run of spaces the
 * lookahead leaves behind is a gap piece, which gives the same split). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
/* Llama 3 (tokenizer.json has (?i:'s|...); spelled out case by case) */
#define RE_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Qwen2: as Llama 3 but digits one at a time */
#define RE_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* CJK ranges DeepSeek splits out: CJK ideographs U+4E00-U+9FA5, U+0800-U+4E00, Hangul
 * U+AC00-U+D7FF */
#define RE_DEEPSEEK_CJK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

typedef struct pre_def {
    const char *names; /* '|'-separated tokenizer.ggml.pre values */
    bool ignore_merges;
    const char *regex[TOK_MAX_REGEX];
} pre_def;

static const pre_def pre_defs[] = {
    {"llama3|llama-v3|llama-bpe|falcon3|dbrx|smaug-bpe", true, {RE_LLAMA3}},
    {"qwen2|stablelm2|deepseek-r1-qwen|megrez", false, {RE_QWEN2}},
    {"gpt-2|gpt2|mpt|olmo|jais|phi-2|roberta-bpe", false, {RE_GPT2}},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b", false, {"\\p{N}", RE_GPT2}},
    {"falcon", false, {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"}},
    {"deepseek-coder",
     false,
     {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_DEEPSEEK_CJK, "\\p{N}"}},
    {"deepseek-llm",
     false,
     {"[\\r\\n]",
      /* DeepSeek LLM's letter class: ASCII letters and a list of Latin, Greek, Cyrillic,
       * Armenian, Georgian, Cherokee, ... letter ranges, as in its tokenizer.json */
      "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
      "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
      "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
      "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
      "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
      "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
      "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"
      "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}"
      "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
      "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
      "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"
      "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
      "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
      "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
      "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
      "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
      "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
      "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
      /* ASCII punctuation, full-width forms, general punctuation quotes, CJK punctuation */
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
      "\\s+$", RE_DEEPSEEK_CJK, "\\p{N}+"}},
    {"default", false, {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}},
};

static bool name_in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list;;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && memcmp(p, name, n) == 0)
            return true;
        if (!bar)
            return false;
        p = bar + 1;
    }
}

static llmos_err build_pairs(tokenizer *t);

llmos_err tok_bpe_init(tokenizer *t, const char *pre)
{
    const pre_def *def = NULL;
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(pre_defs) && !def; i++)
        if (name_in_list(pre_defs[i].names, pre))
            def = &pre_defs[i];
    if (!def)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "tokenizer: pre-tokenizer \"%.40s\" (tokenizer.ggml.pre) is not known; "
                          "known: llama-bpe, qwen2, gpt-2, mpt, starcoder, refact, falcon, "
                          "deepseek-llm, deepseek-coder, default and their aliases",
                          pre);
    for (unsigned b = 0; b < 256; b++) {
        char enc[4];
        size_t n = utf8_encode(tok_gpt2_byte_to_cp((uint8_t)b), enc);
        assert(n == 1 || n == 2);
        memcpy(t->gpt2_utf8[b], enc, n);
        t->gpt2_utf8_len[b] = (uint8_t)n;
    }
    t->ignore_merges = def->ignore_merges;
    for (size_t i = 0; i < TOK_MAX_REGEX && def->regex[i]; i++) {
        int code;
        PCRE2_SIZE where;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)def->regex[i], PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &where, NULL);
        if (!re) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code, msg, sizeof msg);
            return llmos_fail(LLMOS_ERR_INTERNAL,
                              "tokenizer: regex %zu of pre-tokenizer %s does not compile at "
                              "offset %zu: %s",
                              i, pre, (size_t)where, (const char *)msg);
        }
        /* JIT makes splitting several times faster; without it the interpreter is used */
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
        t->regex[t->n_regex++] = re;
    }
    return build_pairs(t);
}

static uint32_t pair_hash(uint64_t key)
{
    /* Fibonacci hashing: the high bits of key * 2^64/phi */
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static uint64_t pair_key(int32_t l, int32_t r)
{
    return ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
}

/* The rank of merging tokens l and r (and the token it makes in *result), or -1. */
static int32_t pair_rank(const tokenizer *t, int32_t l, int32_t r, int32_t *result)
{
    uint64_t key = pair_key(l, r);
    for (uint32_t i = pair_hash(key) & t->pairs_mask;; i = (i + 1) & t->pairs_mask) {
        const tok_pair *p = &t->pairs[i];
        if (p->rank < 0)
            return -1;
        if (p->key == key) {
            *result = p->result;
            return p->rank;
        }
    }
}

/* Build t->pairs when every merge joins two tokens into a token (true of the vocabularies
 * in use); otherwise leave it NULL and merge by text. */
static llmos_err build_pairs(tokenizer *t)
{
    if (t->n_merges == 0 || t->n_merges > (1u << 29))
        return LLMOS_OK;
    size_t cap = 16;
    while (cap < t->n_merges + t->n_merges / 2)
        cap <<= 1;
    tok_pair *pairs = malloc(cap * sizeof *pairs);
    char *joined = NULL;
    size_t joined_cap = 0;
    if (!pairs)
        return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu merges", t->n_merges);
    for (size_t i = 0; i < cap; i++)
        pairs[i].rank = -1;
    uint32_t mask = (uint32_t)(cap - 1);
    bool ok = true;
    for (size_t r = 0; r < t->n_merges && ok; r++) {
        const char *m = t->mtext + t->moff[r];
        size_t ln = t->msplit[r], rn = t->mlen[r] - ln - 1;
        int32_t l = tok_lookup(t, m, ln), rt = tok_lookup(t, m + ln + 1, rn);
        if (ln + rn > joined_cap) {
            joined_cap = 2 * (ln + rn);
            char *j = realloc(joined, joined_cap);
            if (!j) {
                free(joined);
                free(pairs);
                return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory");
            }
            joined = j;
        }
        memcpy(joined, m, ln);
        memcpy(joined + ln, m + ln + 1, rn);
        int32_t res = tok_lookup(t, joined, ln + rn);
        if (l < 0 || rt < 0 || res < 0) {
            ok = false;
            break;
        }
        uint64_t key = pair_key(l, rt);
        for (uint32_t i = pair_hash(key) & mask;; i = (i + 1) & mask) {
            if (pairs[i].rank < 0) {
                pairs[i] = (tok_pair){key, (int32_t)r, res};
                break;
            }
            if (pairs[i].key == key)
                break; /* an earlier merge of the same pair ranks first */
        }
    }
    free(joined);
    if (!ok) {
        free(pairs);
        return LLMOS_OK;
    }
    t->pairs = pairs;
    t->pairs_mask = mask;
    return LLMOS_OK;
}

void tok_bpe_free(tokenizer *t)
{
    free(t->pairs);
    t->pairs = NULL;
    for (size_t i = 0; i < t->n_regex; i++)
        pcre2_code_free(t->regex[i]);
    t->n_regex = 0;
}

/* ---- encoding ------------------------------------------------------------------------- */

typedef struct span {
    uint32_t off, len;
} span;

typedef struct span_list {
    span *v;
    size_t n, cap;
} span_list;

static llmos_err span_push(span_list *l, size_t off, size_t len)
{
    if (len == 0)
        return LLMOS_OK;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        span *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for %zu pieces", cap);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (span){(uint32_t)off, (uint32_t)len};
    return LLMOS_OK;
}

/* Split every piece of `in` by `re` into matches and gaps, appending to `out`. */
static llmos_err split_by(const pcre2_code *re, pcre2_match_data *md, const char *text,
                          const span_list *in, span_list *out)
{
    for (size_t k = 0; k < in->n; k++) {
        const char *s = text + in->v[k].off;
        size_t n = in->v[k].len, pos = 0, gap = 0;
        while (pos < n) {
            int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, 0, md, NULL);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* the interpreter keeps its state on the heap */
                rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_JIT, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH)
                break;
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return llmos_fail(LLMOS_ERR_LIMIT, "tokenizer: pre-tokenizer regex failed: %s",
                                  (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t ms = ov[0], me = ov[1];
            if (me == ms) {
                /* an empty match splits nothing; step past one byte and look again */
                pos = ms + 1;
                continue;
            }
            llmos_err err = span_push(out, in->v[k].off + gap, ms - gap);
            if (!err)
                err = span_push(out, in->v[k].off + ms, me - ms);
            if (err)
                return err;
            pos = gap = me;
        }
        llmos_err err = span_push(out, in->v[k].off + gap, n - gap);
        if (err)
            return err;
    }
    return LLMOS_OK;
}

typedef struct bpe_state {
    const tokenizer *t;
    const char *word; /* the byte-mapped piece */
    tok_symbol *sym;
    int32_t *ids; /* merging by ids: each symbol's token */
    tok_heap heap;
} bpe_state;

static llmos_err bpe_try_pair(bpe_state *st, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return LLMOS_OK;
    int32_t result;
    int32_t rank = pair_rank(st->t, st->ids[left], st->ids[right], &result);
    if (rank < 0)
        return LLMOS_OK;
    tok_bigram b = {(double)rank, left, right, st->sym[left].len + st->sym[right].len, result};
    return tok_heap_push(&st->heap, b);
}

/* Merge the raw piece p[0..n) by token ids: symbol i starts as the token of byte i, a merge
 * replaces the left symbol's token by the merged one. The same merges in the same order as
 * merging by text, since every symbol text is then a token (build_pairs checked it). Returns
 * false (nothing written) when some byte has no token; the caller then merges by text. */
static bool bpe_word_ids(bpe_state *st, const unsigned char *p, size_t n, tok_ids *out,
                         llmos_err *err)
{
    const tokenizer *t = st->t;
    *err = LLMOS_OK;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->gpt2_byte_token[p[i]];
        if (id < 0)
            return false;
        st->ids[i] = id;
        st->sym[i] = (tok_symbol){(int32_t)i - 1, (int32_t)i + 1, (uint32_t)i, 1};
    }
    if (n == 0)
        return true;
    st->sym[n - 1].next = -1;
    st->heap.n = 0;
    for (size_t i = 1; i < n && !*err; i++)
        *err = bpe_try_pair(st, (int32_t)i - 1, (int32_t)i);
    tok_bigram b;
    while (!*err && tok_heap_pop(&st->heap, &b)) {
        tok_symbol *l = &st->sym[b.left], *r = &st->sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue; /* stale candidate */
        l->len += r->len;
        r->len = 0;
        st->ids[b.left] = b.id;
        l->next = r->next;
        if (r->next >= 0)
            st->sym[r->next].prev = b.left;
        *err = bpe_try_pair(st, l->prev, b.left);
        if (!*err)
            *err = bpe_try_pair(st, b.left, l->next);
    }
    for (int32_t i = 0; i >= 0 && !*err; i = st->sym[i].next)
        *err = tok_ids_push(out, st->ids[i]);
    return true;
}

static llmos_err bpe_try_bigram(bpe_state *st, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return LLMOS_OK;
    const tok_symbol *l = &st->sym[left], *r = &st->sym[right];
    int32_t rank = tok_merge_rank(st->t, st->word + l->off, l->len, st->word + r->off, r->len);
    if (rank < 0)
        return LLMOS_OK;
    tok_bigram b = {(double)rank, left, right, l->len + r->len, -1};
    return tok_heap_push(&st->heap, b);
}

/* Merge one piece: raw[0..raw_n) as bytes, word[0..n) as byte characters; append its
 * tokens. */
static llmos_err bpe_word(bpe_state *st, const unsigned char *raw, size_t raw_n, const char *word,
                          size_t n, tok_ids *out)
{
    const tokenizer *t = st->t;
    if (t->ignore_merges) {
        int32_t id = tok_lookup(t, word, n);
        if (id >= 0)
            return tok_ids_push(out, id);
    }
    llmos_err err = LLMOS_OK;
    if (t->pairs && bpe_word_ids(st, raw, raw_n, out, &err))
        return err;
    st->word = word;
    st->heap.n = 0;
    int32_t n_sym = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_decode(word + i, n - i, &cp);
        assert(k > 0); /* the byte mapping only writes valid UTF-8 */
        if (k == 0)
            k = 1;
        st->sym[n_sym] = (tok_symbol){n_sym - 1, n_sym + 1, (uint32_t)i, (uint32_t)k};
        n_sym++;
        i += k;
    }
    if (n_sym == 0)
        return LLMOS_OK;
    st->sym[n_sym - 1].next = -1;
    for (int32_t i = 1; i < n_sym && !err; i++)
        err = bpe_try_bigram(st, i - 1, i);
    tok_bigram b;
    while (!err && tok_heap_pop(&st->heap, &b)) {
        tok_symbol *l = &st->sym[b.left], *r = &st->sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size)
            continue; /* stale candidate */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0)
            st->sym[r->next].prev = b.left;
        err = bpe_try_bigram(st, l->prev, b.left);
        if (!err)
            err = bpe_try_bigram(st, b.left, l->next);
    }
    for (int32_t i = 0; i >= 0 && !err; i = st->sym[i].next) {
        const char *s = word + st->sym[i].off;
        size_t len = st->sym[i].len;
        int32_t id = tok_lookup(t, s, len);
        if (id >= 0) {
            err = tok_ids_push(out, id);
            continue;
        }
        /* Not a token (a merge whose result the vocabulary lacks, or a character it has no
         * token for): its characters one by one. The reference looks up single bytes, which
         * finds the same tokens for ASCII and nothing for the others; characters missing
         * from the vocabulary are dropped there and here (Falcon has no token for the byte
         * 0xFF, which valid UTF-8 never holds). */
        for (size_t j = 0; j < len && !err;) {
            uint32_t cp;
            size_t k = utf8_decode(s + j, len - j, &cp);
            if (k == 0)
                k = 1;
            id = tok_lookup(t, s + j, k);
            if (id >= 0)
                err = tok_ids_push(out, id);
            j += k;
        }
    }
    return err;
}

llmos_err tok_bpe_encode(const tokenizer *t, const char *text, size_t len, tok_ids *out)
{
    span_list a = {0}, b = {0};
    pcre2_match_data *md = NULL;
    char *word = NULL;
    bpe_state st = {t, NULL, NULL, NULL, {0}};
    llmos_err err = span_push(&a, 0, len);
    if (!err && t->n_regex) {
        md = pcre2_match_data_create(4, NULL);
        if (!md)
            err = llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for regex matching");
    }
    for (size_t r = 0; r < t->n_regex && !err; r++) {
        b.n = 0;
        err = split_by(t->regex[r], md, text, &a, &b);
        span_list tmp = a;
        a = b;
        b = tmp;
    }
    size_t longest = 0;
    for (size_t i = 0; i < a.n && !err; i++)
        if (a.v[i].len > longest)
            longest = a.v[i].len;
    if (!err) {
        /* a mapped byte is at most 2 bytes of UTF-8 (code points below U+0144) */
        word = malloc(2 * longest + 1);
        st.sym = malloc((2 * longest + 1) * sizeof *st.sym);
        st.ids = malloc((longest + 1) * sizeof *st.ids);
        if (!word || !st.sym || !st.ids)
            err = llmos_fail(LLMOS_ERR_NOMEM, "tokenizer: no memory for a %zu-byte piece", longest);
    }
    tok_word_cache cache = {0};
    if (!err)
        err = tok_wc_init(&cache, a.n);
    for (size_t i = 0; i < a.n && !err; i++) {
        const char *piece = text + a.v[i].off;
        size_t plen = a.v[i].len;
        tok_wc_entry *e = tok_wc_find(&cache, text, a.v[i].off, plen);
        if (e && e->n_ids != TOK_WC_EMPTY) {
            err = tok_wc_repeat(e, out); /* seen before in this call */
            continue;
        }
        const unsigned char *p = (const unsigned char *)piece;
        size_t wn = 0;
        for (size_t j = 0; j < plen; j++) {
            /* word is allocated when err is 0 (llmos_fail returns its nonzero code) */
            // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
            memcpy(word + wn, t->gpt2_utf8[p[j]], 2);
            wn += t->gpt2_utf8_len[p[j]];
        }
        size_t before = out->n;
        err = bpe_word(&st, p, plen, word, wn, out);
        if (!err)
            tok_wc_store(&cache, e, before, out->n);
    }
    tok_wc_free(&cache);
    pcre2_match_data_free(md);
    free(a.v);
    free(b.v);
    free(word);
    free(st.sym);
    free(st.ids);
    free(st.heap.v);
    return err;
}
