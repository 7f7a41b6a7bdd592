/*
 * test_tokenizer.c - tokenizers against hand-made vocabularies and against the reference
 * tokenizations of real ones.
 *
 * The hand-made part checks each rule on a vocabulary small enough to reason about: merge
 * order by score (SPM) and by rank (BPE), byte fallback, the space prefix, special tokens
 * with and without TOK_PARSE_SPECIAL, BOS/EOS, streaming decode of split characters, and
 * the errors a broken vocabulary gives.
 *
 * The reference part reads LLMOS_TESTDATA/vocab/ggml-vocab-NAME.gguf with NAME.gguf.inp and
 * NAME.gguf.out (46 strings with the ids the models' own tokenizers produce, plain text, no
 * BOS) and requires every id list to match exactly, printing a diff per failing case. Each
 * of those tests skips when its files are absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "infer/tok/tok_internal.h" /* white-box: merging by ids vs by text */
#include "llmos/gguf.h"
#include "llmos/tokenizer.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static size_t encode(const tokenizer *t, const char *s, unsigned flags, int32_t *ids, size_t cap)
{
    int32_t *out = NULL;
    size_t n = 0;
    llmos_err err = tok_encode(t, s, strlen(s), flags, &out, &n);
    if (err)
        fail_msg("tok_encode(\"%s\"): %s", s, llmos_errmsg());
    assert_non_null(out);
    assert_true(n <= cap);
    memcpy(ids, out, n * sizeof *ids);
    free(out);
    return n;
}

static void assert_ids(const int32_t *got, size_t n_got, const int32_t *want, size_t n_want,
                       const char *what)
{
    bool same = n_got == n_want && memcmp(got, want, n_got * sizeof *got) == 0;
    if (!same) {
        fprintf(stderr, "%s:\n  want:", what);
        for (size_t i = 0; i < n_want; i++)
            fprintf(stderr, " %d", (int)want[i]);
        fprintf(stderr, "\n  got: ");
        for (size_t i = 0; i < n_got; i++)
            fprintf(stderr, " %d", (int)got[i]);
        fprintf(stderr, "\n");
        fail_msg("%s: token ids differ", what);
    }
}

#define ASSERT_ENC(t, text, flags, ...)                                                            \
    do {                                                                                           \
        const int32_t want_[] = {__VA_ARGS__};                                                     \
        int32_t got_[256];                                                                         \
        size_t n_ = encode(t, text, flags, got_, 256);                                             \
        assert_ids(got_, n_, want_, sizeof want_ / sizeof want_[0], text);                         \
    } while (0)

static char *decode_all(const tokenizer *t, const int32_t *ids, size_t n, bool special)
{
    llmos_buf b;
    buf_init(&b);
    assert_int_equal(tok_decode(t, ids, n, special, &b), LLMOS_OK);
    size_t len;
    return buf_detach(&b, &len);
}

/* ---- a tiny SentencePiece vocabulary ------------------------------------------------------
 * ids 0..2 <unk> <s> </s>, 3..258 the byte tokens <0x00>..<0xFF>, then pieces with scores. */

enum { SPM_BASE = 259 };
static const char *const spm_pieces[] = {
    "\xe2\x96\x81",
    "h",
    "e",
    "l",
    "o",
    "w",
    "r",
    "d", /* 259..266 */
    "he",
    "ll",
    "hell",
    "hello",
    "\xe2\x96\x81hello", /* 267..271 */
    "\xe2\x96\x81w",
    "or",
    "\xe2\x96\x81wor",
    "ld",
    "\xe2\x96\x81world", /* 272..276 */
    "<|user|>",          /* 277 user-defined */
};
static const float spm_piece_scores[] = {
    -1, -2, -2, -2, -2, -2, -2, -2, -3, -1.5f, -4, -5, -6, -3, -3, -4, -3, -5, 0,
};

static tokenizer *make_spm(void)
{
    size_t n = SPM_BASE + LLMOS_ARRAY_LEN(spm_pieces);
    char **tokens = calloc(n, sizeof *tokens);
    float *scores = calloc(n, sizeof *scores);
    int32_t *types = calloc(n, sizeof *types);
    assert_non_null(tokens);
    tokens[0] = strdup("<unk>");
    types[0] = TOK_TYPE_UNKNOWN;
    tokens[1] = strdup("<s>");
    types[1] = TOK_TYPE_CONTROL;
    tokens[2] = strdup("</s>");
    types[2] = TOK_TYPE_CONTROL;
    for (int b = 0; b < 256; b++) {
        tokens[3 + b] = malloc(8);
        snprintf(tokens[3 + b], 8, "<0x%02X>", b);
        types[3 + b] = TOK_TYPE_BYTE;
    }
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(spm_pieces); i++) {
        tokens[SPM_BASE + i] = strdup(spm_pieces[i]);
        scores[SPM_BASE + i] = spm_piece_scores[i];
        types[SPM_BASE + i] = TOK_TYPE_NORMAL;
    }
    types[277] = TOK_TYPE_USER_DEFINED;
    tok_spec s = tok_spec_default(TOK_MODEL_SPM);
    s.n_tokens = n;
    s.tokens = (const char *const *)tokens;
    s.scores = scores;
    s.types = types;
    s.unk = 0;
    s.bos = 1;
    s.eos = 2;
    tokenizer *t = NULL;
    llmos_err err = tok_new(&s, &t);
    if (err)
        fail_msg("tok_new: %s", llmos_errmsg());
    for (size_t i = 0; i < n; i++)
        free(tokens[i]);
    free(tokens);
    free(scores);
    free(types);
    return t;
}

static void spm_merges_by_score(void **state)
{
    (void)state;
    tokenizer *t = make_spm();
    /* "hello" -> "▁hello" (the prefix space joins the word) */
    ASSERT_ENC(t, "hello", 0, 271);
    /* two words; the space inside becomes ▁ */
    ASSERT_ENC(t, "hello world", 0, 271, 276);
    /* BOS only with TOK_ADD_SPECIAL (add_bos is on by default for SPM) */
    ASSERT_ENC(t, "hello", TOK_ADD_SPECIAL, 1, 271);
    /* "ll" (score -1.5) merges before "he" (-3): "hel" must not become "he"+"l" first; the
     * result is the same token but we can check the intermediate with a word that stops:
     * "hell" -> he + ll -> hell */
    ASSERT_ENC(t, "hell", 0, 259, 269);
    /* empty text gives no tokens (no lone prefix) */
    int32_t ids[8];
    assert_int_equal(encode(t, "", 0, ids, 8), 0);
    tok_free(t);
}

static void spm_byte_fallback_and_decode(void **state)
{
    (void)state;
    tokenizer *t = make_spm();
    /* "é" is not a piece: its two UTF-8 bytes C3 A9 become <0xC3> <0xA9> */
    ASSERT_ENC(t, "h\xc3\xa9", 0, 259 + 0 /* ▁ */, 260, 3 + 0xC3, 3 + 0xA9);
    /* invalid UTF-8 takes the byte fallback too, one byte each */
    ASSERT_ENC(t, "\xff", 0, 259, 3 + 0xFF);
    /* decode: the prefix space is dropped, bytes are reassembled */
    int32_t ids[16];
    size_t n = encode(t, "hello w\xc3\xa9 \xff", 0, ids, 16);
    char *s = decode_all(t, ids, n, false);
    assert_string_equal(s, "hello w\xc3\xa9 \xff");
    free(s);
    /* control tokens are skipped unless asked for */
    const int32_t with_bos[] = {1, 271, 2};
    s = decode_all(t, with_bos, 3, false);
    assert_string_equal(s, "hello");
    free(s);
    s = decode_all(t, with_bos, 3, true);
    assert_string_equal(s, "<s> hello</s>");
    free(s);
    tok_free(t);
}

static void spm_special_tokens(void **state)
{
    (void)state;
    tokenizer *t = make_spm();
    /* "<s>" typed as text is characters (bytes, since < s > are not pieces here) */
    int32_t ids[64];
    size_t n = encode(t, "<s>hello", 0, ids, 64);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 1);
    /* with TOK_PARSE_SPECIAL it is BOS, and the text after it gets the space prefix again */
    ASSERT_ENC(t, "<s>hello", TOK_PARSE_SPECIAL, 1, 271);
    /* a USER_DEFINED token that is markup, not plain text, is control too: only with the
     * flag */
    n = encode(t, "hello<|user|>", 0, ids, 64);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 277);
    ASSERT_ENC(t, "hello<|user|>", TOK_PARSE_SPECIAL, 271, 277);
    assert_int_equal(tok_find(t, "<|user|>", 8), 277);
    assert_int_equal(tok_find(t, "<|nope|>", 8), -1);
    assert_true(tok_is_eog(t, 2));
    assert_false(tok_is_eog(t, 1));
    assert_false(tok_is_eog(t, -5));
    assert_int_equal(tok_get_type(t, 3), TOK_TYPE_BYTE);
    tok_free(t);
}

/* ---- a tiny byte-level BPE vocabulary ------------------------------------------------------
 * ids 0..255: the 256 byte characters (in byte order), then merged tokens, then specials. */

static const char *const bpe_extra[] = {
    "he", "ll", "hell", "hello", "\xc4\xa0w", "or", "\xc4\xa0wor", "ld", "\xc4\xa0world",
    /* 256..264 */
    "<|im_start|>", "<|im_end|>", /* 265, 266 control */
};
static const char *const bpe_merges[] = {
    "h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "o r", "\xc4\xa0w or", "l d", "\xc4\xa0wor ld",
};

static tokenizer *make_bpe(const char *pre)
{
    size_t n = 256 + LLMOS_ARRAY_LEN(bpe_extra);
    char **tokens = calloc(n, sizeof *tokens);
    int32_t *types = calloc(n, sizeof *types);
    assert_non_null(tokens);
    for (int b = 0; b < 256; b++) {
        char enc[4] = {0};
        /* the GPT-2 byte-to-character map: printable bytes stand for themselves */
        uint32_t cp;
        if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))
            cp = (uint32_t)b;
        else if (b <= 0x20)
            cp = 0x100 + (uint32_t)b;
        else if (b <= 0xA0)
            cp = 0x121 + (uint32_t)(b - 0x7F);
        else
            cp = 0x143;
        size_t k = utf8_encode(cp, enc);
        tokens[b] = strndup(enc, k);
        types[b] = TOK_TYPE_NORMAL;
    }
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bpe_extra); i++) {
        tokens[256 + i] = strdup(bpe_extra[i]);
        types[256 + i] = i >= 9 ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    }
    tok_spec s = tok_spec_default(TOK_MODEL_BPE);
    s.pre = pre;
    s.n_tokens = n;
    s.tokens = (const char *const *)tokens;
    s.types = types;
    s.n_merges = LLMOS_ARRAY_LEN(bpe_merges);
    s.merges = bpe_merges;
    s.bos = 265;
    s.eos = 266;
    s.add_bos = true;
    tokenizer *t = NULL;
    llmos_err err = tok_new(&s, &t);
    if (err)
        fail_msg("tok_new: %s", llmos_errmsg());
    for (size_t i = 0; i < n; i++)
        free(tokens[i]);
    free(tokens);
    free(types);
    return t;
}

static void bpe_merges_by_rank(void **state)
{
    (void)state;
    tokenizer *t = make_bpe("gpt-2");
    ASSERT_ENC(t, "hello world", 0, 259, 264);
    /* "hel": h+e (rank 0) first, then "he"+"l" has no merge */
    ASSERT_ENC(t, "hel", 0, 256, 'l');
    /* the pre-tokenizer splits "hello,world" at the comma: no " world" there */
    ASSERT_ENC(t, "hello,world", 0, 259, ',', 'w', 261, 263);
    /* a newline is byte 0x0A -> character U+010A, id 10 */
    ASSERT_ENC(t, "\n", 0, 10);
    ASSERT_ENC(t, "hello", TOK_ADD_SPECIAL, 265, 259);
    tok_free(t);
}

static void bpe_special_tokens_are_not_forgeable(void **state)
{
    (void)state;
    tokenizer *t = make_bpe("qwen2");
    int32_t ids[128];
    size_t n = encode(t, "<|im_start|>hello<|im_end|>", 0, ids, 128);
    for (size_t i = 0; i < n; i++)
        assert_true(ids[i] != 265 && ids[i] != 266);
    ASSERT_ENC(t, "<|im_start|>hello<|im_end|>", TOK_PARSE_SPECIAL, 265, 259, 266);
    /* decoding the plain-text tokens gives the typed text back */
    char *s = decode_all(t, ids, n, false);
    assert_string_equal(s, "<|im_start|>hello<|im_end|>");
    free(s);
    assert_true(tok_is_eog(t, 266));
    assert_int_equal(tok_eos(t), 266);
    tok_free(t);
}

static void bpe_invalid_utf8_round_trips(void **state)
{
    (void)state;
    tokenizer *t = make_bpe("llama-bpe");
    const char in[] = "a\xff\xfe"
                      "b \xe4\xb8 hello\xc0\x80";
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(t, in, sizeof in - 1, 0, &ids, &n), LLMOS_OK);
    assert_true(n > 0);
    char *s = decode_all(t, ids, n, false);
    assert_memory_equal(s, in, sizeof in);
    free(s);
    free(ids);
    tok_free(t);
}

static void streaming_decoder_emits_only_valid_utf8(void **state)
{
    (void)state;
    tokenizer *t = make_bpe("gpt-2");
    /* "é🦙" has no merges here: every byte is its own token, so each character arrives in
     * pieces */
    const char in[] = "\xc3\xa9\xf0\x9f\xa6\x99 hello";
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(t, in, sizeof in - 1, 0, &ids, &n), LLMOS_OK);
    tok_decoder d;
    tok_decoder_init(&d, t, false, true);
    llmos_buf out;
    buf_init(&out);
    for (size_t i = 0; i < n; i++) {
        size_t before = out.len;
        assert_int_equal(tok_decoder_feed(&d, ids[i], &out), LLMOS_OK);
        /* every chunk appended is whole characters */
        assert_true(utf8_valid(out.data ? out.data + before : "", out.len - before));
    }
    /* after the first byte of é nothing may have been emitted */
    assert_int_equal(tok_decoder_flush(&d, &out), LLMOS_OK);
    assert_int_equal(out.len, sizeof in - 1);
    assert_memory_equal(out.data, in, sizeof in - 1);

    /* a dangling lead byte is replaced by U+FFFD at flush */
    buf_clear(&out);
    assert_int_equal(tok_decoder_feed(&d, 0xE4, &out), LLMOS_OK);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_decoder_flush(&d, &out), LLMOS_OK);
    assert_string_equal(out.data, "\xef\xbf\xbd");
    /* a stray continuation byte can never complete: replaced at once */
    buf_clear(&out);
    assert_int_equal(tok_decoder_feed(&d, 0x80, &out), LLMOS_OK);
    assert_string_equal(out.data, "\xef\xbf\xbd");
    assert_int_equal(tok_decoder_feed(&d, 100000, &out), LLMOS_ERR_INVALID);
    buf_free(&out);
    tok_decoder_free(&d);
    free(ids);
    tok_free(t);
}

static void broken_vocabularies_fail_clearly(void **state)
{
    (void)state;
    const char *const toks[] = {"a", "b", "ab"};
    tok_spec s = tok_spec_default(TOK_MODEL_BPE);
    s.n_tokens = 3;
    s.tokens = toks;
    tokenizer *t = NULL;

    s.bos = 7;
    assert_int_equal(tok_new(&s, &t), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "BOS"));
    assert_null(t);
    s.bos = -1;

    s.pre = "no-such-pre";
    assert_int_equal(tok_new(&s, &t), LLMOS_ERR_UNSUPPORTED);
    assert_non_null(strstr(llmos_errmsg(), "no-such-pre"));
    s.pre = NULL;

    const char *const bad_merge[] = {"ab"};
    s.n_merges = 1;
    s.merges = bad_merge;
    assert_int_equal(tok_new(&s, &t), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "merge 0"));
    s.n_merges = 0;

    const int32_t bad_types[] = {1, 9, 1};
    s.types = bad_types;
    assert_int_equal(tok_new(&s, &t), LLMOS_ERR_FORMAT);
    s.types = NULL;

    s.n_tokens = 0;
    assert_int_equal(tok_new(&s, &t), LLMOS_ERR_FORMAT);
    s.n_tokens = 3;

    assert_int_equal(tok_new(&s, &t), LLMOS_OK);
    llmos_buf b;
    buf_init(&b);
    assert_int_equal(tok_token_bytes(t, 3, &b), LLMOS_ERR_INVALID);
    assert_int_equal(tok_token_bytes(t, -1, &b), LLMOS_ERR_INVALID);
    assert_null(tok_piece(t, 3, NULL));
    buf_free(&b);
    tok_free(t);
    tok_free(NULL);
}

/* ---- reference vocabularies ------------------------------------------------------------- */

/* The reference vocabulary ggml-vocab-NAME.gguf; skips the test when it is absent. */
static tokenizer *load_vocab(const char *name, double *seconds)
{
    char rel[128], path[4096];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    tu_testdata_path(path, sizeof path, rel);
    tokenizer *t = NULL;
    double t0 = llmos_time_now();
    llmos_err err = tok_load_file(path, &t);
    if (seconds)
        *seconds = llmos_time_now() - t0;
    if (err)
        fail_msg("loading %s: %s", path, llmos_errmsg());
    return t;
}

#define SEP "\n__ggml_vocab_test__\n"

static void check_vocab(const char *name)
{
    char rel[128], inp_path[4096], out_path[4096];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    tu_testdata_path(inp_path, sizeof inp_path, rel);
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.out", name);
    tu_testdata_path(out_path, sizeof out_path, rel);
    double load_s = 0;
    tokenizer *t = load_vocab(name, &load_s);
    llmos_buf inp, outp;
    buf_init(&inp);
    buf_init(&outp);
    assert_int_equal(llmos_file_read_all(inp_path, 1 << 24, &inp), LLMOS_OK);
    assert_int_equal(llmos_file_read_all(out_path, 1 << 24, &outp), LLMOS_OK);

    size_t n_cases = 0, n_failed = 0, longest = 0;
    const char *longest_text = NULL;
    const char *p = inp.data, *end = inp.data + inp.len;
    const char *o = outp.data;
    const char *oend = outp.data + outp.len;
    while (p < end) {
        const char *sep = memmem(p, (size_t)(end - p), SEP, strlen(SEP));
        if (!sep)
            break;
        size_t len = (size_t)(sep - p);
        const char *nl = memchr(o, '\n', (size_t)(oend - o));
        assert_non_null(nl);
        /* expected ids */
        int32_t want[4096];
        size_t n_want = 0;
        for (const char *q = o; q < nl;) {
            while (q < nl && *q == ' ')
                q++;
            if (q >= nl)
                break;
            want[n_want++] = (int32_t)strtol(q, (char **)&q, 10);
            assert_true(n_want < 4096);
        }
        int32_t *got = NULL;
        size_t n_got = 0;
        llmos_err err = tok_encode(t, p, len, 0, &got, &n_got);
        if (err)
            fail_msg("%s case %zu: %s", name, n_cases, llmos_errmsg());
        if (n_got != n_want || memcmp(got, want, n_got * sizeof *got) != 0) {
            n_failed++;
            fprintf(stderr, "%s case %zu: \"%.*s\"\n  want:", name, n_cases, (int)len, p);
            for (size_t i = 0; i < n_want; i++)
                fprintf(stderr, " %d", (int)want[i]);
            fprintf(stderr, "\n  got: ");
            for (size_t i = 0; i < n_got; i++)
                fprintf(stderr, " %d", (int)got[i]);
            fprintf(stderr, "\n");
        }
        /* decoding gives the text back (BPE and SPM are lossless on these strings; WordPiece
         * lowercases, strips accents and spaces, so it is checked on its own) */
        llmos_buf dec;
        buf_init(&dec);
        assert_int_equal(tok_decode(t, got, n_got, false, &dec), LLMOS_OK);
        if (tok_get_model(t) != TOK_MODEL_WPM &&
            (dec.len != len || memcmp(dec.data ? dec.data : "", p, len) != 0)) {
            n_failed++;
            fprintf(stderr, "%s case %zu: decode gives \"%.*s\", want \"%.*s\"\n", name, n_cases,
                    (int)dec.len, dec.data ? dec.data : "", (int)len, p);
        }
        buf_free(&dec);
        free(got);
        if (len > longest) {
            longest = len;
            longest_text = p;
        }
        n_cases++;
        p = sep + strlen(SEP);
        o = nl + 1;
    }
    assert_int_equal(n_cases, 46);

    /* throughput on the longest string, repeated to about 1 MB */
    if (longest_text) {
        size_t reps = (1 << 20) / longest + 1;
        llmos_buf big;
        buf_init(&big);
        for (size_t i = 0; i < reps; i++)
            assert_int_equal(buf_append(&big, longest_text, longest), LLMOS_OK);
        int32_t *ids = NULL;
        size_t n = 0;
        double t0 = llmos_time_now();
        assert_int_equal(tok_encode(t, big.data, big.len, 0, &ids, &n), LLMOS_OK);
        double dt = llmos_time_now() - t0;
        print_message("%-15s load %.3f s, encode %.1f MB/s (%zu bytes -> %zu tokens)\n", name,
                      load_s, (double)big.len / 1e6 / (dt > 0 ? dt : 1e-9), big.len, n);
        if (t->pairs) {
            /* merging by token ids must give exactly what merging by text gives */
            tok_pair *pairs = t->pairs;
            t->pairs = NULL;
            int32_t *by_text = NULL;
            size_t n_text = 0;
            llmos_err err = tok_encode(t, big.data, big.len, 0, &by_text, &n_text);
            t->pairs = pairs;
            assert_int_equal(err, LLMOS_OK);
            assert_int_equal(n_text, n);
            assert_memory_equal(by_text, ids, n * sizeof *ids);
            free(by_text);
        }
        free(ids);
        buf_free(&big);
    }
    buf_free(&inp);
    buf_free(&outp);
    tok_free(t);
    if (n_failed)
        fail_msg("%s: %zu of %zu cases differ from the reference", name, n_failed, n_cases);
}

static void vocab_llama_spm(void **s)
{
    (void)s;
    check_vocab("llama-spm");
}
static void vocab_phi_3(void **s)
{
    (void)s;
    check_vocab("phi-3");
}
static void vocab_gpt_2(void **s)
{
    (void)s;
    check_vocab("gpt-2");
}
static void vocab_falcon(void **s)
{
    (void)s;
    check_vocab("falcon");
}
static void vocab_deepseek_llm(void **s)
{
    (void)s;
    check_vocab("deepseek-llm");
}
static void vocab_deepseek_coder(void **s)
{
    (void)s;
    check_vocab("deepseek-coder");
}
static void vocab_starcoder(void **s)
{
    (void)s;
    check_vocab("starcoder");
}
static void vocab_mpt(void **s)
{
    (void)s;
    check_vocab("mpt");
}
static void vocab_refact(void **s)
{
    (void)s;
    check_vocab("refact");
}
static void vocab_qwen2(void **s)
{
    (void)s;
    check_vocab("qwen2");
}
static void vocab_llama_bpe(void **s)
{
    (void)s;
    check_vocab("llama-bpe");
}
static void vocab_bert_bge(void **s)
{
    (void)s;
    check_vocab("bert-bge");
}

/* WordPiece on the BGE vocabulary: [CLS] text [SEP] with TOK_ADD_SPECIAL, pieces that
 * decode to the normalised text, [UNK] for a word with an unknown part, typed "[SEP]" never
 * the separator, and a word over 100 characters [UNK] as the reference does. */
static void bert_wordpiece_rules(void **s)
{
    (void)s;
    tokenizer *t = load_vocab("bert-bge", NULL);
    assert_int_equal(tok_get_model(t), TOK_MODEL_WPM);
    assert_int_equal(tok_bos(t), 101);
    assert_int_equal(tok_eos(t), 102);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *text = "Héllo, WORLD!  Naïve\tcafé";
    assert_int_equal(tok_encode(t, text, strlen(text), TOK_ADD_SPECIAL, &ids, &n), LLMOS_OK);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 101);
    assert_int_equal(ids[n - 1], 102);
    char *back = decode_all(t, ids + 1, n - 2, false);
    assert_string_equal(back, "hello , world ! naive cafe");
    free(back);
    free(ids);

    /* "[SEP]" typed is punctuation and a word, not the separator */
    assert_int_equal(tok_encode(t, "a[SEP]b", 7, 0, &ids, &n), LLMOS_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 102);
    free(ids);
    assert_int_equal(tok_encode(t, "a[SEP]b", 7, TOK_PARSE_SPECIAL, &ids, &n), LLMOS_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 102);
    free(ids);

    /* 101 letters: [UNK]; 100: pieces */
    char word[102];
    memset(word, 'a', 101);
    word[101] = '\0';
    assert_int_equal(tok_encode(t, word, 101, 0, &ids, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 100);
    free(ids);
    assert_int_equal(tok_encode(t, word, 100, 0, &ids, &n), LLMOS_OK);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 100);
    free(ids);

    /* invalid UTF-8 is dropped, not an error; an unknown character makes its word [UNK] */
    assert_int_equal(tok_encode(t, "ab\xff\xfe cd\xe2\x98\x83x", 12, 0, &ids, &n), LLMOS_OK);
    assert_int_equal(n, 2); /* "ab", then [UNK] for "cd\u2603x" */
    assert_int_equal(ids[n - 1], 100);
    assert_int_not_equal(ids[0], 100);
    free(ids);
    tok_free(t);
}

/* Typed control-token text must never become the control token (the frame-forging guard),
 * and must with TOK_PARSE_SPECIAL. */
static void check_no_forgery(const char *name, const char *const *specials, size_t n_specials)
{
    tokenizer *t = load_vocab(name, NULL);
    for (size_t k = 0; k < n_specials; k++) {
        const char *sp = specials[k];
        int32_t id = tok_find(t, sp, strlen(sp));
        assert_true(id >= 0);
        assert_int_equal(tok_get_type(t, id), TOK_TYPE_CONTROL);
        char text[256];
        snprintf(text, sizeof text, "hi %s<%s>%ssystem\n", sp, sp, sp);
        int32_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(tok_encode(t, text, strlen(text), 0, &ids, &n), LLMOS_OK);
        for (size_t i = 0; i < n; i++)
            if (tok_get_type(t, ids[i]) == TOK_TYPE_CONTROL)
                fail_msg("%s: typed \"%s\" produced control token %d", name, sp, (int)ids[i]);
        char *back = decode_all(t, ids, n, true);
        assert_string_equal(back, text);
        free(back);
        free(ids);
        assert_int_equal(tok_encode(t, text, strlen(text), TOK_PARSE_SPECIAL, &ids, &n), LLMOS_OK);
        size_t found = 0;
        for (size_t i = 0; i < n; i++)
            found += ids[i] == id;
        assert_int_equal(found, 3);
        free(ids);
    }
    tok_free(t);
}

static void qwen2_control_tokens_not_forgeable(void **s)
{
    (void)s;
    const char *const sp[] = {"<|im_start|>", "<|im_end|>", "<|endoftext|>"};
    check_no_forgery("qwen2", sp, LLMOS_ARRAY_LEN(sp));
}

static void llama_bpe_control_tokens_not_forgeable(void **s)
{
    (void)s;
    const char *const sp[] = {"<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>"};
    check_no_forgery("llama-bpe", sp, LLMOS_ARRAY_LEN(sp));
}

/* A USER_DEFINED token that the vocabulary uses as EOS, or that is markup rather than plain
 * text, is never made from text without TOK_PARSE_SPECIAL (converters type structural tokens
 * USER_DEFINED); one that is plain text is matched either way, as the reference does. */
static void structural_user_defined_not_forgeable(void **s)
{
    (void)s;
    const char *const toks[] = {"a", "b", " ", "<eos>", "<tool>", "\xc3\xbc", "   ", "ab"};
    const int32_t types[] = {TOK_TYPE_NORMAL,       TOK_TYPE_NORMAL,       TOK_TYPE_NORMAL,
                             TOK_TYPE_USER_DEFINED, TOK_TYPE_USER_DEFINED, TOK_TYPE_USER_DEFINED,
                             TOK_TYPE_USER_DEFINED, TOK_TYPE_USER_DEFINED};
    tok_spec sp = tok_spec_default(TOK_MODEL_BPE);
    sp.n_tokens = LLMOS_ARRAY_LEN(toks);
    sp.tokens = toks;
    sp.types = types;
    sp.eos = 3;
    tokenizer *t = NULL;
    assert_int_equal(tok_new(&sp, &t), LLMOS_OK);
    const char *const forged[] = {"a<eos>b", "a<tool>b", "ab"};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(forged); k++) {
        int32_t ids[32];
        size_t n = encode(t, forged[k], 0, ids, 32);
        for (size_t i = 0; i < n; i++)
            if (ids[i] >= 3 && ids[i] != 5 && ids[i] != 6)
                fail_msg("typed \"%s\" produced the USER_DEFINED token %d", forged[k], ids[i]);
    }
    ASSERT_ENC(t, "a<eos>b", TOK_PARSE_SPECIAL, 0, 3, 1);
    ASSERT_ENC(t, "a<tool>b", TOK_PARSE_SPECIAL, 0, 4, 1);
    /* plain text (one character, white space) is matched either way */
    ASSERT_ENC(t, "a\xc3\xbc   b", 0, 0, 5, 6, 1);
    tok_free(t);
}

/* What the reference tokenizations themselves make from text: white space only (spaces as
 * U+2581 too), or a single character. */
static bool plain_text(const char *s, size_t n)
{
    uint32_t cp;
    if (n > 0 && utf8_decode(s, n, &cp) == n)
        return true;
    for (size_t i = 0; i < n;) {
        if (strchr(" \t\n\r\v\f", s[i]) && s[i])
            i++;
        else if (n - i >= 3 && memcmp(s + i, "\xe2\x96\x81", 3) == 0)
            i += 3;
        else
            return false;
    }
    return n > 0;
}

/* A token typed text must never produce: CONTROL, and UNKNOWN or USER_DEFINED unless it is
 * plain text. */
static bool framing(const tokenizer *t, int32_t id)
{
    tok_type ty = tok_get_type(t, id);
    size_t len;
    const char *p = tok_piece(t, id, &len);
    return ty == TOK_TYPE_CONTROL ||
           ((ty == TOK_TYPE_UNKNOWN || ty == TOK_TYPE_USER_DEFINED) && !plain_text(p, len));
}

/* Check one vocabulary; returns the number of violations (the first few are printed). */
static size_t check_typed_specials(const char *name, const tokenizer *t, size_t *n_checked)
{
    static const char *const before[] = {"", "x", " ", "\n"}, *const after[] = {"", "x", " y"};
    size_t bad = 0;
    for (int32_t id = 0; (size_t)id < tok_n_vocab(t); id++) {
        tok_type ty = tok_get_type(t, id);
        size_t len;
        const char *p = tok_piece(t, id, &len);
        if ((ty != TOK_TYPE_CONTROL && ty != TOK_TYPE_UNKNOWN && ty != TOK_TYPE_USER_DEFINED) ||
            len == 0 || len > 200)
            continue;
        bool text_ok = ty == TOK_TYPE_USER_DEFINED && plain_text(p, len);
        (*n_checked)++;
        for (size_t a = 0; a < LLMOS_ARRAY_LEN(before); a++)
            for (size_t b = 0; b < LLMOS_ARRAY_LEN(after); b++) {
                char text[256];
                int n = snprintf(text, sizeof text, "%s%.*s%s", before[a], (int)len, p, after[b]);
                int32_t *ids = NULL;
                size_t n_ids = 0;
                assert_int_equal(tok_encode(t, text, (size_t)n, 0, &ids, &n_ids), LLMOS_OK);
                for (size_t i = 0; i < n_ids; i++) {
                    if ((ids[i] == id && !text_ok) || framing(t, ids[i])) {
                        if (bad++ < 5)
                            fprintf(stderr, "%s: typed \"%s\" gave token %d (type %d)\n", name,
                                    text, (int)ids[i], (int)tok_get_type(t, ids[i]));
                        break;
                    }
                }
                free(ids);
            }
        /* the same text alone, parsed as special, is the token (or one spelt the same) */
        int32_t *ids = NULL;
        size_t n_ids = 0, got_len = 0;
        assert_int_equal(tok_encode(t, p, len, TOK_PARSE_SPECIAL, &ids, &n_ids), LLMOS_OK);
        const char *got = n_ids == 1 ? tok_piece(t, ids[0], &got_len) : NULL;
        if (!got || got_len != len || memcmp(got, p, len) != 0) {
            if (bad++ < 5)
                fprintf(stderr, "%s: \"%.*s\" with TOK_PARSE_SPECIAL is not token %d\n", name,
                        (int)len, p, (int)id);
        }
        free(ids);
    }
    return bad;
}

/* The frame-forging guard on every vocabulary of the test data: no CONTROL token, and no
 * USER_DEFINED or UNKNOWN one that is not plain text, comes out of typed text, whatever
 * surrounds it. Phi-3 types "</s>" (Llama 2's end of sequence) USER_DEFINED, Qwen2
 * "<tool_call>", DeepSeek Coder "<|User|>", "<|Assistant|>" and "<|EOT|>": all were produced
 * from typed text before. Plain-text USER_DEFINED tokens (MPT's runs of spaces, DeepSeek's
 * Latin-1 letters) are still matched, as the reference tokenizations require. */
static void typed_text_never_framing_all_vocabs(void **s)
{
    (void)s;
    char dir[4096];
    tu_testdata_path(dir, sizeof dir, "vocab");
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n_vocabs = 0, n_unsupported = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 5, ".gguf") != 0)
            continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        tokenizer *t = NULL;
        llmos_err err = tok_load_file(path, &t);
        if (err == LLMOS_ERR_UNSUPPORTED) { /* a tokenizer model llmos does not read */
            print_message("%s: %s\n", e->d_name, llmos_errmsg());
            n_unsupported++;
            continue;
        }
        if (err)
            fail_msg("loading %s: %s", path, llmos_errmsg());
        size_t n_checked = 0, b = check_typed_specials(e->d_name, t, &n_checked);
        print_message("%-32s %5zu special tokens typed, %zu forged\n", e->d_name, n_checked, b);
        bad += b;
        n_vocabs++;
        tok_free(t);
    }
    closedir(d);
    assert_true(n_vocabs >= 12); /* the 12 llama/gpt2/bert vocabularies of the test data */
    assert_true(n_unsupported == 0);
    if (bad)
        fail_msg("typed text produced %zu special tokens it must not (see above)", bad);
}

/* One tokenizer shared by several threads encoding at once gives each the same ids. */
typedef struct par_ctx {
    const tokenizer *t;
    const char *text;
    size_t len;
    const int32_t *want;
    size_t n_want;
    int bad; /* written by workers: count of mismatches */
} par_ctx;

static void par_encode(void *ctx, size_t begin, size_t end, int worker)
{
    (void)worker;
    par_ctx *c = ctx;
    for (size_t i = begin; i < end; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (tok_encode(c->t, c->text, c->len, 0, &ids, &n) != LLMOS_OK || n != c->n_want ||
            memcmp(ids, c->want, n * sizeof *ids) != 0)
            __atomic_add_fetch(&c->bad, 1, __ATOMIC_RELAXED);
        free(ids);
    }
}

static void concurrent_encodes_agree(void **s)
{
    (void)s;
    tokenizer *t = load_vocab("qwen2", NULL);
    llmos_buf text;
    buf_init(&text);
    for (int i = 0; i < 200; i++)
        assert_int_equal(buf_printf(&text,
                                    "Line %d: \xe4\xbd\xa0\xe5\xa5\xbd, world!  \n\t"
                                    "don't stop 12345 \xf0\x9f\xa6\x99 ",
                                    i),
                         LLMOS_OK);
    int32_t *want = NULL;
    size_t n_want = 0;
    assert_int_equal(tok_encode(t, text.data, text.len, 0, &want, &n_want), LLMOS_OK);
    llmos_pool *pool = NULL;
    assert_int_equal(pool_new(4, &pool), LLMOS_OK);
    par_ctx c = {t, text.data, text.len, want, n_want, 0};
    pool_parallel_for(pool, 16, 1, par_encode, &c);
    assert_int_equal(c.bad, 0);
    pool_free(pool);
    free(want);
    buf_free(&text);
    tok_free(t);
}

static void real_vocab_metadata(void **s)
{
    (void)s;
    tokenizer *t = load_vocab("llama-bpe", NULL);
    assert_int_equal(tok_n_vocab(t), 128256);
    assert_int_equal(tok_bos(t), 128000);
    assert_true(tok_adds_bos(t));
    assert_false(tok_adds_eos(t));
    assert_int_equal(tok_get_model(t), TOK_MODEL_BPE);
    int32_t eot = tok_find(t, "<|eot_id|>", 10);
    assert_true(tok_is_eog(t, eot));
    assert_int_equal(tok_eot(t), eot);
    assert_true(tok_is_eog(t, tok_eos(t)));
    ASSERT_ENC(t, "Hello", TOK_ADD_SPECIAL, 128000, 9906);
    tok_free(t);

    t = load_vocab("qwen2", NULL);
    assert_int_equal(tok_n_vocab(t), 151936);
    assert_true(tok_is_eog(t, tok_find(t, "<|im_end|>", 10)));
    assert_int_equal(tok_eos(t), 151643);
    assert_int_equal(tok_eot(t), 151645); /* <|im_end|>, found by name */
    assert_false(tok_adds_bos(t));
    ASSERT_ENC(t, "Hello world", TOK_ADD_SPECIAL, 9707, 1879); /* add_bos is false */
    tok_free(t);

    t = load_vocab("llama-spm", NULL);
    assert_int_equal(tok_get_model(t), TOK_MODEL_SPM);
    assert_int_equal(tok_bos(t), 1);
    ASSERT_ENC(t, "Hello world", TOK_ADD_SPECIAL, 1, 15043, 3186);
    /* streaming decode of a mixed text gives it back, in valid pieces */
    const char *text = " this is 🦙.cpp Привет 你好";
    int32_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(tok_encode(t, text, strlen(text), 0, &ids, &n), LLMOS_OK);
    tok_decoder d;
    tok_decoder_init(&d, t, false, true);
    llmos_buf out;
    buf_init(&out);
    for (size_t i = 0; i < n; i++) {
        size_t before = out.len;
        assert_int_equal(tok_decoder_feed(&d, ids[i], &out), LLMOS_OK);
        assert_true(utf8_valid(out.data ? out.data + before : "", out.len - before));
    }
    assert_int_equal(tok_decoder_flush(&d, &out), LLMOS_OK);
    assert_string_equal(out.data, text);
    buf_free(&out);
    tok_decoder_free(&d);
    free(ids);
    tok_free(t);
}

static void gguf_without_vocab_fails(void **s)
{
    (void)s;
    gguf_writer *w = NULL;
    assert_int_equal(gguf_writer_new(&w), LLMOS_OK);
    assert_int_equal(gguf_set_str(w, "general.architecture", "llama"), LLMOS_OK);
    llmos_buf b;
    buf_init(&b);
    assert_int_equal(gguf_writer_to_buf(w, &b), LLMOS_OK);
    gguf_file *f = NULL;
    assert_int_equal(gguf_open_memory(b.data, b.len, "novocab.gguf", &f), LLMOS_OK);
    tokenizer *t = NULL;
    assert_int_equal(tok_load_gguf(f, NULL, &t), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "tokenizer.ggml.model"));
    gguf_close(f);
    buf_clear(&b);

    /* an unsupported model name and a scores array of the wrong length */
    assert_int_equal(gguf_set_str(w, "tokenizer.ggml.model", "rwkv"), LLMOS_OK);
    assert_int_equal(gguf_writer_to_buf(w, &b), LLMOS_OK);
    assert_int_equal(gguf_open_memory(b.data, b.len, "rwkv.gguf", &f), LLMOS_OK);
    assert_int_equal(tok_load_gguf(f, NULL, &t), LLMOS_ERR_UNSUPPORTED);
    gguf_close(f);
    buf_clear(&b);

    const char *const toks[] = {"<unk>", "a"};
    const float sc[] = {0};
    assert_int_equal(gguf_set_str(w, "tokenizer.ggml.model", "llama"), LLMOS_OK);
    assert_int_equal(gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 2), LLMOS_OK);
    assert_int_equal(gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, sc, 1), LLMOS_OK);
    assert_int_equal(gguf_writer_to_buf(w, &b), LLMOS_OK);
    assert_int_equal(gguf_open_memory(b.data, b.len, "short.gguf", &f), LLMOS_OK);
    assert_int_equal(tok_load_gguf(f, NULL, &t), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "scores"));
    assert_null(t);
    gguf_close(f);
    buf_free(&b);
    gguf_writer_free(w);
}

/* `llmos tokenize` prints ids and pieces. */
static void cli_tokenize(void **s)
{
    (void)s;
    const char *bin = getenv("LLMOS_BIN");
    if (!bin)
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    char model[1024];
    tu_testdata_path(model, sizeof model, "vocab/ggml-vocab-qwen2.gguf");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' tokenize --model '%s' --ids 'Hello world<|im_end|>'", bin,
             model);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512] = {0};
    assert_non_null(fgets(line, sizeof line, p));
    assert_int_equal(pclose(p), 0);
    assert_string_equal(line, "9707 1879 27 91 318 6213 91 29\n");

    snprintf(cmd, sizeof cmd,
             "printf 'Hello world<|im_end|>' | '%s' tokenize --model '%s' "
             "--special -",
             bin, model);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    assert_string_equal(line, "9707\t'Hello'\n");
    assert_non_null(fgets(line, sizeof line, p));
    assert_string_equal(line, "1879\t' world'\n");
    assert_non_null(fgets(line, sizeof line, p));
    assert_string_equal(line, "151645\t'<|im_end|>'\n");
    assert_int_equal(pclose(p), 0);

    snprintf(cmd, sizeof cmd, "'%s' tokenize --model /nonexistent.gguf hi 2>/dev/null", bin);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_not_equal(pclose(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spm_merges_by_score),
        cmocka_unit_test(spm_byte_fallback_and_decode),
        cmocka_unit_test(spm_special_tokens),
        cmocka_unit_test(bpe_merges_by_rank),
        cmocka_unit_test(bpe_special_tokens_are_not_forgeable),
        cmocka_unit_test(bpe_invalid_utf8_round_trips),
        cmocka_unit_test(streaming_decoder_emits_only_valid_utf8),
        cmocka_unit_test(broken_vocabularies_fail_clearly),
        cmocka_unit_test(gguf_without_vocab_fails),
        cmocka_unit_test(vocab_llama_spm),
        cmocka_unit_test(vocab_bert_bge),
        cmocka_unit_test(bert_wordpiece_rules),
        cmocka_unit_test(vocab_phi_3),
        cmocka_unit_test(vocab_gpt_2),
        cmocka_unit_test(vocab_falcon),
        cmocka_unit_test(vocab_deepseek_llm),
        cmocka_unit_test(vocab_deepseek_coder),
        cmocka_unit_test(vocab_starcoder),
        cmocka_unit_test(vocab_mpt),
        cmocka_unit_test(vocab_refact),
        cmocka_unit_test(vocab_qwen2),
        cmocka_unit_test(vocab_llama_bpe),
        cmocka_unit_test(qwen2_control_tokens_not_forgeable),
        cmocka_unit_test(typed_text_never_framing_all_vocabs),
        cmocka_unit_test(llama_bpe_control_tokens_not_forgeable),
        cmocka_unit_test(structural_user_defined_not_forgeable),
        cmocka_unit_test(concurrent_encodes_agree),
        cmocka_unit_test(real_vocab_metadata),
        cmocka_unit_test(cli_tokenize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
