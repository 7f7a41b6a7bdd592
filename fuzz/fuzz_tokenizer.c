/*
 * fuzz_tokenizer.c - fuzz tok_encode / tok_decode / the streaming decoder with arbitrary
 * bytes (valid UTF-8 or not).
 *
 * The first input byte picks the vocabulary and flags: bit 0 TOK_PARSE_SPECIAL, bit 1
 * TOK_ADD_SPECIAL, bits 2-3 the vocabulary (a built-in SentencePiece one, a built-in byte-level
 * BPE one whose pre-tokenizer is chosen by bits 4-6, or a real vocabulary when
 * LLMOS_FUZZ_VOCAB names a GGUF file, loaded once); bit 7 instead picks a built-in WordPiece
 * (BERT) vocabulary. The rest is the text.
 *
 * Properties checked (abort on violation):
 *   - encode accepts every input (the built-in vocabularies can represent every byte);
 *   - every id is in range;
 *   - byte-level BPE (built-in, or a real vocabulary with a token for every byte): decoding
 *     with special tokens rendered gives the input back exactly;
 *     SentencePiece: the same when no special token was produced and the text holds no
 *     U+2581 (which SentencePiece uses for spaces, so it decodes as a space);
 *   - WordPiece: every id is a piece of the vocabulary or [UNK] (no control token without
 *     TOK_PARSE_SPECIAL), decoding gives valid UTF-8 with no upper-case ASCII letter;
 *   - the streaming decoder only ever appends valid UTF-8, and for valid UTF-8 input its
 *     output equals the whole decode.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tokenizer *spm_vocab, *bpe_vocab[5], *wpm_vocab, *real_vocab;
static bool initialised;
static bool real_all_bytes; /* the real vocabulary is byte-level BPE with all 256 bytes */

static const char *const bpe_pres[5] = {"gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "falcon"};

static tokenizer *build_spm(void)
{
    static const char *const pieces[] = {
        "\xe2\x96\x81",
        "h",
        "e",
        "l",
        "o",
        "he",
        "ll",
        "hell",
        "hello",
        "\xe2\x96\x81hello",
        "\xe2\x96\x81\xe2\x96\x81",
        "<|user|>",
    };
    enum { N = 3 + 256 + sizeof pieces / sizeof pieces[0] };
    static char bytes[256][8];
    const char *tokens[N];
    float scores[N];
    int32_t types[N];
    tokens[0] = "<unk>";
    tokens[1] = "<s>";
    tokens[2] = "</s>";
    types[0] = TOK_TYPE_UNKNOWN;
    types[1] = types[2] = TOK_TYPE_CONTROL;
    scores[0] = scores[1] = scores[2] = 0;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        tokens[3 + b] = bytes[b];
        types[3 + b] = TOK_TYPE_BYTE;
        scores[3 + b] = 0;
    }
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        tokens[259 + i] = pieces[i];
        types[259 + i] = TOK_TYPE_NORMAL;
        scores[259 + i] = -(float)i;
    }
    types[N - 1] = TOK_TYPE_USER_DEFINED;
    tok_spec s = tok_spec_default(TOK_MODEL_SPM);
    s.n_tokens = N;
    s.tokens = tokens;
    s.scores = scores;
    s.types = types;
    s.unk = 0;
    s.bos = 1;
    s.eos = 2;
    tokenizer *t = NULL;
    if (tok_new(&s, &t) != LLMOS_OK)
        abort();
    return t;
}

/* by_text: include a merge whose result is not a token, which makes the tokenizer merge by
 * text instead of by token ids */
static tokenizer *build_bpe(const char *pre, bool by_text)
{
    static const char *const extra[] = {
        "he", "ll", "hell", "hello", "\xc4\xa0h", "\xc4\xa0hello", "<|im_start|>", "<|im_end|>"};
    static const char *const merges[] = {"h e",           "l l",        "he ll",
                                         "hell o",        "\xc4\xa0 h", "\xc4\xa0 hello",
                                         "\xc4\xa0h ello" /* "Ġhello" via "ello": no token */};
    enum { N = 256 + sizeof extra / sizeof extra[0] };
    static char chars[256][4];
    const char *tokens[N];
    size_t lens[N];
    int32_t types[N];
    for (int b = 0; b < 256; b++) {
        /* the GPT-2 byte-to-character map */
        uint32_t cp = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE
                          ? (uint32_t)b
                      : b <= 0x20 ? 0x100u + (uint32_t)b
                      : b <= 0xA0 ? 0x121u + (uint32_t)(b - 0x7F)
                                  : 0x143u;
        lens[b] = utf8_encode(cp, chars[b]);
        tokens[b] = chars[b];
        types[b] = TOK_TYPE_NORMAL;
    }
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
        tokens[256 + i] = extra[i];
        lens[256 + i] = strlen(extra[i]);
        types[256 + i] = extra[i][0] == '<' ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    }
    tok_spec s = tok_spec_default(TOK_MODEL_BPE);
    s.pre = pre;
    s.n_tokens = N;
    s.tokens = tokens;
    s.token_lens = lens;
    s.types = types;
    s.n_merges = sizeof merges / sizeof merges[0] - (by_text ? 0 : 1);
    s.merges = merges;
    s.bos = N - 2;
    s.eos = N - 1;
    s.add_bos = true;
    tokenizer *t = NULL;
    if (tok_new(&s, &t) != LLMOS_OK)
        abort();
    return t;
}

/* A WordPiece vocabulary: specials, every ASCII letter, digit and symbol alone and as a
 * continuation, a few longer pieces and some non-ASCII ones. */
static tokenizer *build_wpm(void)
{
    static const char *const extra[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                        "\xe2\x96\x81hello", "llo", "\xe2\x96\x81he", "ing",
                                        "\xe2\x96\x81\xe4\xb8\xad", "\xc3\xa9", "\xe2\x96\x81\xc3\xa9"};
    enum { N_EXTRA = sizeof extra / sizeof extra[0], N = N_EXTRA + 2 * 95 };
    static char pieces[2 * 95][8];
    const char *tokens[N];
    int32_t types[N];
    for (size_t i = 0; i < N_EXTRA; i++) {
        tokens[i] = extra[i];
        types[i] = extra[i][0] == '[' ? TOK_TYPE_CONTROL : TOK_TYPE_NORMAL;
    }
    for (int c = 32; c < 127; c++) {
        snprintf(pieces[c - 32], sizeof pieces[0], "\xe2\x96\x81%c", c);
        snprintf(pieces[95 + c - 32], sizeof pieces[0], "%c", c);
    }
    for (int i = 0; i < 2 * 95; i++) {
        tokens[N_EXTRA + i] = pieces[i];
        types[N_EXTRA + i] = TOK_TYPE_NORMAL;
    }
    tok_spec s = tok_spec_default(TOK_MODEL_WPM);
    s.n_tokens = N;
    s.tokens = tokens;
    s.types = types;
    s.pad = 0;
    s.unk = 1;
    s.bos = 2;
    s.eos = 3;
    s.add_bos = s.add_eos = true;
    tokenizer *t = NULL;
    if (tok_new(&s, &t) != LLMOS_OK)
        abort();
    return t;
}

static void init(void)
{
    initialised = true;
    spm_vocab = build_spm();
    wpm_vocab = build_wpm();
    for (int i = 0; i < 5; i++)
        bpe_vocab[i] = build_bpe(bpe_pres[i], i % 2 == 1);
    const char *path = getenv("LLMOS_FUZZ_VOCAB");
    if (path && *path && tok_load_file(path, &real_vocab) != LLMOS_OK) {
        fprintf(stderr, "fuzz_tokenizer: LLMOS_FUZZ_VOCAB: %s\n", llmos_errmsg());
        abort();
    }
    if (real_vocab && tok_get_model(real_vocab) == TOK_MODEL_BPE) {
        /* every byte has a token: then encoding is lossless and must round-trip */
        real_all_bytes = true;
        for (int b = 0; b < 256; b++) {
            int32_t *ids = NULL;
            size_t n = 0;
            char c = (char)b;
            if (tok_encode(real_vocab, &c, 1, 0, &ids, &n) != LLMOS_OK || n == 0)
                real_all_bytes = false;
            free(ids);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!initialised)
        init();
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    unsigned flags = ((mode & 1) ? TOK_PARSE_SPECIAL : 0u) | ((mode & 2) ? TOK_ADD_SPECIAL : 0u);
    const tokenizer *t;
    switch ((mode >> 2) & 3) {
    case 0: t = spm_vocab; break;
    case 3: t = real_vocab ? real_vocab : spm_vocab; break;
    default: t = bpe_vocab[((mode >> 4) & 7) % 5]; break;
    }
    if (mode & 0x80)
        t = wpm_vocab;

    int32_t *ids = NULL;
    size_t n = 0;
    if (tok_encode(t, text, len, flags, &ids, &n) != LLMOS_OK) {
        if (t != real_vocab)
            abort(); /* the built-in vocabularies represent every byte */
        return 0;
    }
    bool any_special = false;
    for (size_t i = 0; i < n; i++) {
        tok_type ty = tok_get_type(t, ids[i]);
        if (ty == TOK_TYPE_UNDEFINED && (ids[i] < 0 || (size_t)ids[i] >= tok_n_vocab(t)))
            abort();
        any_special |=
            ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED || ty == TOK_TYPE_UNKNOWN;
    }

    /* whole decode, control tokens rendered, an added BOS / EOS excluded from the
     * comparison */
    size_t first = 0, last = n;
    if ((flags & TOK_ADD_SPECIAL) && tok_adds_bos(t)) {
        if (n == 0 || ids[0] != tok_bos(t))
            abort();
        first = 1;
    }
    if ((flags & TOK_ADD_SPECIAL) && tok_adds_eos(t)) {
        if (last <= first || ids[last - 1] != tok_eos(t))
            abort();
        last--;
    }
    llmos_buf whole = {0};
    if (tok_decode(t, ids + first, last - first, true, &whole) != LLMOS_OK)
        abort();
    if (t == wpm_vocab) {
        for (size_t i = first; i < last; i++) {
            if (tok_get_type(t, ids[i]) == TOK_TYPE_CONTROL) {
                if (!(flags & TOK_PARSE_SPECIAL) && ids[i] != 1)
                    abort(); /* typed text never makes a control token but [UNK] */
                continue;
            }
            size_t n_piece = 0;
            const char *piece = tok_piece(t, ids[i], &n_piece);
            for (size_t k = 0; ids[i] != 1 && k < n_piece; k++)
                if (piece[k] >= 'A' && piece[k] <= 'Z')
                    abort(); /* the text was lowercased */
        }
    }
    /* SentencePiece writes spaces as U+2581, so a typed U+2581 decodes as a space */
    bool typed_2581 = memmem(text, len, "\xe2\x96\x81", 3) != NULL;
    bool must_round_trip = (t != real_vocab || real_all_bytes) && t != wpm_vocab &&
                           (tok_get_model(t) == TOK_MODEL_BPE || (!any_special && !typed_2581));
    if (must_round_trip && (whole.len != len || (len && memcmp(whole.data, text, len) != 0)))
        abort();

    /* streaming decode: only valid UTF-8, and the same text for valid input */
    tok_decoder d;
    tok_decoder_init(&d, t, true, true);
    llmos_buf stream = {0};
    for (size_t i = first; i < last; i++) {
        size_t before = stream.len;
        if (tok_decoder_feed(&d, ids[i], &stream) != LLMOS_OK)
            abort();
        if (!utf8_valid(stream.data ? stream.data + before : "", stream.len - before))
            abort();
    }
    if (tok_decoder_flush(&d, &stream) != LLMOS_OK)
        abort();
    if (!utf8_valid(stream.data ? stream.data : "", stream.len))
        abort();
    if (utf8_valid(whole.data ? whole.data : "", whole.len) &&
        (stream.len != whole.len || (whole.len && memcmp(stream.data, whole.data, whole.len))))
        abort();
    tok_decoder_free(&d);
    buf_free(&stream);
    buf_free(&whole);
    free(ids);
    return 0;
}
