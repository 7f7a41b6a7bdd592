/*
 * llmos/tokenizer.h - text <-> token ids for the models llmos runs.
 *
 * Three tokenizer families, all read from a GGUF file's `tokenizer.ggml.*` metadata:
 *
 *   - "llama": SentencePiece-style BPE (Llama 1/2, Mistral, TinyLlama, Phi-3). Pieces are
 *     merged by score, spaces are written as U+2581, a space is put in front of the text
 *     (add_space_prefix), and characters missing from the vocabulary fall back to the
 *     byte tokens <0xNN>.
 *   - "gpt2": byte-level BPE with ranked merges (Llama 3, Qwen2, GPT-2, Falcon, DeepSeek,
 *     StarCoder, MPT, Refact). The text is first split into pre-tokens by a list of regular
 *     expressions chosen by `tokenizer.ggml.pre` (PCRE2, UTF + Unicode properties), each
 *     pre-token's bytes are mapped through the GPT-2 byte<->unicode table and merged by rank.
 *   - "bert": WordPiece (BERT, BGE, MiniLM, nomic-embed). The text is normalised as BERT's
 *     uncased tokenizer does (control characters dropped, accents stripped, lowercased, CJK
 *     ideographs and punctuation made words of their own), split at white space, and each
 *     word is cut into the longest pieces the vocabulary has, left to right; a word with a
 *     part the vocabulary lacks becomes [UNK]. The GGUF vocabulary writes word-initial pieces
 *     with a U+2581 prefix and continuation pieces ("##ing" in BERT's vocab.txt) bare.
 *     Encoding is lossy (case, accents), so decoding gives the normalised text.
 *
 * Security: special (CONTROL) tokens such as "<|im_start|>" are produced from text only when
 * the caller passes TOK_PARSE_SPECIAL. Without it, text that spells a control token is
 * tokenized as ordinary characters, so input from users, tools or the web can never forge a
 * frame of the chat template. USER_DEFINED tokens (added vocabulary that is not control) are
 * matched as text, as the reference tokenizers do, only when they are plain text (white space,
 * or a single character) and not the vocabulary's BOS, EOS, EOT, padding, unknown or end of
 * generation; every other one (Phi-3's "</s>", Qwen2's "<tool_call>") is treated as control,
 * since converters give that type to markup the model reads as structure.
 *
 * Invalid UTF-8: tok_encode accepts arbitrary bytes. Bytes that are not well-formed UTF-8
 * never match a regex or a multi-byte piece; they become byte tokens (byte-level BPE maps
 * every byte; SentencePiece vocabularies use their <0xNN> byte fallback, or the unknown token
 * when the vocabulary has no byte tokens). So decoding gives the input bytes back whenever the
 * vocabulary can represent them.
 *
 * A tokenizer is immutable after loading and may be shared between threads.
 */
#ifndef LLMOS_TOKENIZER_H
#define LLMOS_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

typedef struct tokenizer tokenizer;
typedef struct gguf_file gguf_file;

/* Which algorithm (tokenizer.ggml.model). */
typedef enum tok_model {
    TOK_MODEL_SPM, /* "llama": SentencePiece-style BPE by scores */
    TOK_MODEL_BPE, /* "gpt2": byte-level BPE by merge ranks */
    TOK_MODEL_WPM  /* "bert": WordPiece, longest piece first */
} tok_model;

/* Token types as stored in tokenizer.ggml.token_type (the values of llama.cpp's
 * llama_token_type, which GGUF writers use). */
typedef enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6
} tok_type;

/* Everything a tokenizer is built from, as plain arrays. The tokenizer copies what it needs;
 * the caller keeps ownership of the arrays. */
typedef struct tok_spec {
    tok_model model;
    const char *pre; /* pre-tokenizer name for TOK_MODEL_BPE; NULL = "default" */
    size_t n_tokens;
    const char *const *tokens; /* n_tokens token texts */
    const size_t *token_lens;  /* their lengths; NULL = NUL-terminated strings */
    const float *scores;       /* n_tokens scores (needed by TOK_MODEL_SPM); may be NULL */
    const int32_t *types;      /* n_tokens tok_type values; NULL = all NORMAL */
    size_t n_merges;           /* TOK_MODEL_BPE: merges "left right", best first */
    const char *const *merges;
    const size_t *merge_lens;        /* NULL = NUL-terminated */
    int32_t bos, eos, eot, pad, unk; /* -1 when absent */
    bool add_bos, add_eos;           /* what TOK_ADD_SPECIAL adds */
    bool add_space_prefix;           /* TOK_MODEL_SPM: put a space in front of the text */
} tok_spec;

/* A spec with no tokens, all special ids -1 and the defaults of the given model (SPM:
 * add_bos and add_space_prefix on; BPE: everything off). */
LLMOS_API tok_spec tok_spec_default(tok_model model);

/* Build a tokenizer from arrays. Fails with LLMOS_ERR_INVALID or LLMOS_ERR_FORMAT saying what
 * is inconsistent (a special id out of range, a merge without a space, an unknown `pre`
 * name gives LLMOS_ERR_UNSUPPORTED). The caller frees *out with tok_free. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_new(const tok_spec *spec, tokenizer **out);

/* Build the tokenizer described by a GGUF file's tokenizer.ggml.* metadata. The file may be
 * closed afterwards. `what` names the file in error messages (may be NULL). */
LLMOS_API LLMOS_NODISCARD llmos_err tok_load_gguf(const gguf_file *f, const char *what,
                                                  tokenizer **out);

/* Open a GGUF file, read its tokenizer and close it. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_load_file(const char *path, tokenizer **out);

LLMOS_API void tok_free(tokenizer *t);

/* Flags of tok_encode. */
enum {
    TOK_ADD_SPECIAL = 1u << 0,  /* add BOS / EOS as the metadata says (add_bos, add_eos) */
    TOK_PARSE_SPECIAL = 1u << 1 /* text spelling a CONTROL token (or a USER_DEFINED one that is
                                   not plain text) becomes that token; OFF by default: never
                                   pass it for text you do not control */
};

/* Tokenize text[0..len) (any bytes; see the header comment on invalid UTF-8). *out is a new
 * array of *n_out ids the caller frees with free(); it is non-NULL even when empty. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_encode(const tokenizer *t, const char *text, size_t len,
                                               unsigned flags, int32_t **out, size_t *n_out);

/* Number of tokens in the vocabulary (valid ids are 0 .. n-1). */
LLMOS_API size_t tok_n_vocab(const tokenizer *t);
LLMOS_API tok_model tok_get_model(const tokenizer *t);
/* Special ids, -1 when the vocabulary has none. tok_eot is tokenizer.ggml.eot_token_id, or
 * when that is absent the vocabulary's end-of-turn control token other than EOS
 * ("<|eot_id|>", "<|im_end|>", "<|end|>", ... in that order of preference). */
LLMOS_API int32_t tok_bos(const tokenizer *t);
LLMOS_API int32_t tok_eos(const tokenizer *t);
LLMOS_API int32_t tok_eot(const tokenizer *t);
LLMOS_API int32_t tok_pad(const tokenizer *t);
/* Whether TOK_ADD_SPECIAL adds BOS at the start / EOS at the end (tokenizer.ggml.add_bos_token
 * and add_eos_token, and there is such a token). */
LLMOS_API bool tok_adds_bos(const tokenizer *t);
LLMOS_API bool tok_adds_eos(const tokenizer *t);
/* True for tokens that end a generation: EOS, EOT, and control tokens the chat templates use
 * as end of turn ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>",
 * "<|eom_id|>", ...). */
LLMOS_API bool tok_is_eog(const tokenizer *t, int32_t id);
/* The token's type (TOK_TYPE_UNDEFINED for an id out of range). */
LLMOS_API tok_type tok_get_type(const tokenizer *t, int32_t id);

/* The raw token text as stored in the vocabulary (U+2581 for spaces in SPM, GPT-2 byte
 * characters in byte-level BPE); NULL for an id out of range. *len gets its length when
 * len is non-NULL. Valid as long as the tokenizer. */
LLMOS_API const char *tok_piece(const tokenizer *t, int32_t id, size_t *len);

/* Append the bytes token `id` stands for to `out`: byte-level BPE maps the text back through
 * the GPT-2 table, SPM turns U+2581 into spaces and <0xNN> into the byte. CONTROL tokens give
 * their text. LLMOS_ERR_INVALID for an id out of range. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_token_bytes(const tokenizer *t, int32_t id, llmos_buf *out);

/* The id of the token whose text is exactly text[0..len), or -1. For looking up special
 * tokens ("<|im_start|>") by name. */
LLMOS_API int32_t tok_find(const tokenizer *t, const char *text, size_t len);

/* Decode a whole id sequence into `out` (appended): the tokens' bytes back to back, control
 * tokens skipped unless `special`, and for SPM vocabularies with add_space_prefix the space
 * in front of the first piece removed. Bytes are passed through exactly, so
 * tok_decode(tok_encode(x)) == x for byte-level BPE (even for invalid UTF-8); use a
 * tok_decoder for text that must be valid UTF-8. LLMOS_ERR_INVALID for an id out of range. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_decode(const tokenizer *t, const int32_t *ids, size_t n,
                                               bool special, llmos_buf *out);

/* ---- streaming detokenizer ---------------------------------------------------------------- */

/* Turns ids into text as they are generated, appending only complete, valid UTF-8 to the
 * output: when a token ends in the middle of a character (byte-level BPE does this for most
 * CJK and emoji), the incomplete tail is held back until the next token completes it.
 * Bytes that can never become valid UTF-8 are replaced by U+FFFD. */
typedef struct tok_decoder {
    const tokenizer *t;
    bool special;      /* render CONTROL tokens as their text */
    bool strip_space;  /* drop a leading space of the first piece (SPM prompt prefix) */
    bool started;      /* some text has been emitted or held */
    llmos_buf pending; /* bytes waiting to complete a character */
} tok_decoder;

/* Start decoding. `special`: render control tokens. `first_piece` true when the ids begin a
 * text (so the SPM space prefix is removed), false when continuing after a prompt. */
LLMOS_API void tok_decoder_init(tok_decoder *d, const tokenizer *t, bool special, bool first_piece);
/* Feed one id; appends the newly complete text to `out`. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_decoder_feed(tok_decoder *d, int32_t id, llmos_buf *out);
/* Emit whatever is held back (incomplete characters become U+FFFD) and reset. */
LLMOS_API LLMOS_NODISCARD llmos_err tok_decoder_flush(tok_decoder *d, llmos_buf *out);
/* Release the decoder's memory (no output). Safe on a zeroed or finished decoder. */
LLMOS_API void tok_decoder_free(tok_decoder *d);

#endif
