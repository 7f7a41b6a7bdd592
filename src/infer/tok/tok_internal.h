/*
 * tok_internal.h - what the tokenizer's source files share (not a public header).
 *
 * tokenizer.c owns the struct, the hash tables, the bigram heap, the word cache,
 * special-token handling and decoding; tok_spm.c holds the SentencePiece-style merge by
 * score; tok_bpe.c the pre-tokenizer regexes and the byte-level merge by rank; tok_wpm.c
 * BERT's WordPiece (with its Unicode tables in tok_wpm_unicode.c); tok_gguf.c reads the
 * vocabulary from GGUF metadata.
 */
#ifndef LLMOS_TOK_INTERNAL_H
#define LLMOS_TOK_INTERNAL_H

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include "llmos/tokenizer.h"

/* Open-addressing hash table of indices. Each slot is (hash << 32) | (index + 1), 0 = empty;
 * the keys live elsewhere (token texts, merge texts) and are compared by the caller. */
typedef struct tok_htab {
    uint64_t *slots;
    uint32_t mask;
} tok_htab;

/* A growable array of ids (the output of encoding). */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;

/* A candidate merge of two adjacent symbols, ordered by key (lower first: the negated
 * score for SPM, the merge rank for BPE), then by position (leftmost first). */
typedef struct tok_bigram {
    double key;
    int32_t left, right; /* symbol indices */
    uint32_t size;       /* bytes of both symbols when the bigram was made */
    int32_t id;          /* BPE by ids: the token the merge makes */
} tok_bigram;

/* BPE merges by token ids: (left id, right id) -> rank and the id of the merged token.
 * rank -1 marks a free slot. */
typedef struct tok_pair {
    uint64_t key;
    int32_t rank, result;
} tok_pair;

typedef struct tok_heap {
    tok_bigram *v;
    size_t n, cap;
} tok_heap;

LLMOS_NODISCARD llmos_err tok_heap_push(tok_heap *h, tok_bigram b);
/* Remove the best bigram into *b; false when empty. */
bool tok_heap_pop(tok_heap *h, tok_bigram *b);

/* A piece of the text being merged: text[off .. off + len); len 0 once merged into its left
 * neighbour. prev/next link the live symbols (-1 at the ends). */
typedef struct tok_symbol {
    int32_t prev, next;
    uint32_t off, len;
} tok_symbol;

/* A per-call cache of words (pre-tokens, SentencePiece segments) already merged: natural
 * text repeats its words, and a repeated word gives the same ids, so they are copied from
 * its earlier occurrence in the output instead of being merged again. Keys are ranges of
 * the text being encoded. Texts of fewer than TOK_WC_MIN_WORDS words get no cache. */
enum { TOK_WC_MIN_WORDS = 64, TOK_WC_MAX_WORD = 64, TOK_WC_MAX_SLOTS = 1 << 17 };
#define TOK_WC_EMPTY UINT32_MAX

typedef struct tok_wc_entry {
    uint32_t hash, off, len;  /* the word: base[off .. off + len) */
    uint32_t first_id, n_ids; /* its ids: out->v[first_id ..]; n_ids TOK_WC_EMPTY = free */
} tok_wc_entry;

typedef struct tok_word_cache {
    tok_wc_entry *slots; /* NULL: no cache */
    uint32_t mask;
    size_t used, max_used;
} tok_word_cache;

LLMOS_NODISCARD llmos_err tok_wc_init(tok_word_cache *c, size_t n_words);
void tok_wc_free(tok_word_cache *c);
/* The entry of base[off .. off + n): a filled one (n_ids set) or the free slot where it
 * would go; NULL when there is no cache or the word is too long to cache. */
tok_wc_entry *tok_wc_find(tok_word_cache *c, const char *base, size_t off, size_t n);
/* Append the cached ids again. */
LLMOS_NODISCARD llmos_err tok_wc_repeat(const tok_wc_entry *e, tok_ids *out);
/* Fill a free entry from tok_wc_find with the ids out->v[first .. end). */
void tok_wc_store(tok_word_cache *c, tok_wc_entry *e, size_t first, size_t end);

#define TOK_MAX_REGEX 8

struct tokenizer {
    tok_model model;
    size_t n_tokens;
    char *text;    /* all token texts, back to back */
    uint32_t *off; /* token i is text[off[i] .. off[i] + len[i]) */
    uint32_t *len;
    float *scores;
    uint8_t *types;   /* tok_type */
    bool *eog;        /* end-of-generation tokens */
    bool *typed;      /* special tokens typed text may produce whole (tokenizer.c, mark_typed) */
    tok_htab by_text; /* token text -> id (the last id wins for duplicate texts) */

    /* byte-level BPE merges: merge r is mtext[moff[r] .. + mlen[r]) = "left right", and
     * its left part is msplit[r] bytes long */
    size_t n_merges;
    char *mtext;
    uint32_t *moff, *mlen, *msplit;
    tok_htab merges; /* (left, right) -> rank; the first (best) wins for duplicates */
    /* the same by ids, when every merge's parts and result are tokens (then every symbol
     * is a token and merging can work on ids alone; see tok_bpe.c) */
    tok_pair *pairs;
    uint32_t pairs_mask;

    int32_t bos, eos, eot, eom, pad, unk;
    bool add_bos, add_eos, add_space_prefix;
    bool spm_split_words;         /* SPM: no token holds "X▁" (X not ▁), so words merge apart */
    bool ignore_merges;           /* Llama 3: a pre-token that is a whole token is taken as is */
    int32_t byte_token[256];      /* SPM byte fallback <0xNN>, or -1 */
    int32_t gpt2_byte_token[256]; /* BPE: the token of each single byte's character, or -1 */
    char gpt2_utf8[256][2];       /* BPE: each byte's character as UTF-8 ... */
    uint8_t gpt2_utf8_len[256];   /* ... and its length (1 or 2) */

    /* special tokens matched in text (CONTROL, UNKNOWN, USER_DEFINED), sorted by first byte
     * and then longest first; special_start[b] .. special_start[b + 1] are those starting
     * with byte b */
    int32_t *specials;
    uint32_t special_start[257];

    size_t max_token_len; /* WordPiece: the longest token text in bytes */

    /* pre-tokenizer (BPE only) */
    size_t n_regex;
    pcre2_code *regex[TOK_MAX_REGEX];
};

/* FNV-1a over bytes, continuing from `h` (start with TOK_HASH_INIT). */
#define TOK_HASH_INIT 2166136261u
static inline uint32_t tok_hash_bytes(uint32_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    return h;
}

/* Token text -> id, or -1. */
int32_t tok_lookup(const tokenizer *t, const char *s, size_t n);
/* Merge rank of (left, right), or -1. */
int32_t tok_merge_rank(const tokenizer *t, const char *l, size_t ln, const char *r, size_t rn);

LLMOS_NODISCARD llmos_err tok_ids_push(tok_ids *ids, int32_t id);

/* SentencePiece-style merge of one raw text fragment; the space prefix and U+2581 escaping
 * are done here (`prefix` says whether to add the space). */
LLMOS_NODISCARD llmos_err tok_spm_encode(const tokenizer *t, const char *text, size_t len,
                                         bool prefix, tok_ids *out);

/* Compile the regex list of pre-tokenizer `pre` into t (LLMOS_ERR_UNSUPPORTED for a name not
 * known). Sets t->ignore_merges where the reference does. */
LLMOS_NODISCARD llmos_err tok_bpe_init(tokenizer *t, const char *pre);
void tok_bpe_free(tokenizer *t);
/* Byte-level BPE of one raw text fragment: pre-tokenize, map bytes, merge by rank. */
LLMOS_NODISCARD llmos_err tok_bpe_encode(const tokenizer *t, const char *text, size_t len,
                                         tok_ids *out);
/* WordPiece (BERT) of one raw text fragment: normalise (drop control characters, isolate
 * CJK ideographs, strip accents, lowercase), split at white space and punctuation, and take
 * each word's longest known pieces from the left; a word with an unknown part is [UNK]. */
LLMOS_NODISCARD llmos_err tok_wpm_encode(const tokenizer *t, const char *text, size_t len,
                                         tok_ids *out);

/* tok_wpm_unicode.c (generated by scripts/gen_wpm_unicode.py). */
enum { TOK_WPM_DROP = 1, TOK_WPM_SPACE = 2, TOK_WPM_PUNCT = 3 };
typedef struct tok_wpm_range {
    uint32_t lo, hi;
    uint8_t cls; /* TOK_WPM_* */
} tok_wpm_range;
typedef struct tok_wpm_map {
    uint32_t cp;
    uint32_t to[3]; /* 0-terminated; all 0: the code point is dropped */
} tok_wpm_map;
extern const tok_wpm_range tok_wpm_ranges[];
extern const size_t tok_wpm_n_ranges;
extern const tok_wpm_map tok_wpm_maps[];
extern const size_t tok_wpm_n_maps;

/* The GPT-2 byte -> code point table, and its inverse (-1 for code points not in it). */
uint32_t tok_gpt2_byte_to_cp(uint8_t b);
int tok_gpt2_cp_to_byte(uint32_t cp);

#endif
