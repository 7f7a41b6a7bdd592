/*
 * tok_gguf.c - building a tokenizer from a GGUF file's tokenizer.ggml.* metadata.
 *
 * Keys read (names and meanings from the GGUF specification's tokenizer section):
 *   tokenizer.ggml.model        "llama" (SentencePiece-style BPE), "gpt2" (byte-level BPE) or
 *                               "bert" (WordPiece)
 *   tokenizer.ggml.pre          pre-tokenizer name for "gpt2" (absent: "default")
 *   tokenizer.ggml.tokens       array of strings, the vocabulary by id
 *   tokenizer.ggml.scores       array of float32 (needed by "llama")
 *   tokenizer.ggml.token_type   array of int32 (tok_type values)
 *   tokenizer.ggml.merges       array of strings "left right" (needed by "gpt2")
 *   tokenizer.ggml.{bos,eos,eot,padding,unknown}_token_id   integers
 *   tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix   booleans
 * Defaults when a key is absent follow llama.cpp's loader: "llama" vocabularies have BOS 1,
 * EOS 2, UNK 0, add BOS and a space prefix; "gpt2" ones add BOS only for the Llama 3 family;
 * "bert" ones take tokenizer.ggml.cls_token_id as BOS and seperator_token_id (sic, as
 * llama.cpp spells it) as EOS and add both ([CLS] text [SEP]).
 */
#include <stdlib.h>
#include <string.h>

#include "infer/tok/tok_internal.h"
#include "llmos/gguf.h"

/* An optional integer id key; `def` when absent; an error when present but not a valid
 * integer. */
static llmos_err get_id(const gguf_file *f, const char *what, const char *key, int32_t def,
                        int32_t *out)
{
    int64_t id = gguf_find_key(f, key);
    *out = def;
    if (id < 0)
        return LLMOS_OK;
    int64_t v;
    if (!gguf_val_i64(f, id, &v) || v < -1 || v > INT32_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: key '%s' at offset %llu has type %s or a value out of range "
                          "(expected a token id)",
                          what, key, (unsigned long long)gguf_val_offset(f, id),
                          gguf_type_name(gguf_val_type(f, id)));
    *out = (int32_t)v;
    return LLMOS_OK;
}

static llmos_err get_flag(const gguf_file *f, const char *what, const char *key, bool def,
                          bool *out)
{
    int64_t id = gguf_find_key(f, key);
    *out = def;
    if (id < 0)
        return LLMOS_OK;
    if (!gguf_val_bool(f, id, out))
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: key '%s' has type %s, expected bool", what, key,
                          gguf_type_name(gguf_val_type(f, id)));
    return LLMOS_OK;
}

/* An array of strings as pointer + length arrays (pointing into the file). */
static llmos_err get_strings(const gguf_file *f, const char *what, const char *key, bool required,
                             size_t *n, const char ***strs, size_t **lens)
{
    int64_t id = gguf_find_key(f, key);
    *n = 0;
    *strs = NULL;
    *lens = NULL;
    if (id < 0) {
        if (required)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "%s: key '%s' is missing (not a model file "
                              "with a vocabulary?)",
                              what, key);
        return LLMOS_OK;
    }
    if (gguf_arr_type(f, id) != GGUF_TYPE_STRING)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: key '%s' at offset %llu is not an array of "
                          "strings",
                          what, key, (unsigned long long)gguf_val_offset(f, id));
    uint64_t count = gguf_arr_len(f, id);
    if (count > INT32_MAX)
        return llmos_fail(LLMOS_ERR_LIMIT, "%s: '%s' has %llu entries (limit %d)", what, key,
                          (unsigned long long)count, INT32_MAX);
    *strs = malloc((count ? count : 1) * sizeof **strs);
    *lens = malloc((count ? count : 1) * sizeof **lens);
    if (!*strs || !*lens)
        return llmos_fail(LLMOS_ERR_NOMEM, "%s: no memory for %llu strings", what,
                          (unsigned long long)count);
    for (uint64_t i = 0; i < count; i++) {
        (*strs)[i] = gguf_arr_str(f, id, i, &(*lens)[i]);
        if (!(*strs)[i])
            return llmos_fail(LLMOS_ERR_FORMAT, "%s: '%s' element %llu is unreadable", what, key,
                              (unsigned long long)i);
    }
    *n = (size_t)count;
    return LLMOS_OK;
}

llmos_err tok_load_gguf(const gguf_file *f, const char *what, tokenizer **out)
{
    *out = NULL;
    if (!what)
        what = gguf_name(f);
    const char *model = gguf_get_str(f, "tokenizer.ggml.model", NULL);
    if (!model)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: key 'tokenizer.ggml.model' is missing or not a string (is this a "
                          "model file with a vocabulary?)",
                          what);
    tok_spec s;
    if (strcmp(model, "llama") == 0)
        s = tok_spec_default(TOK_MODEL_SPM);
    else if (strcmp(model, "gpt2") == 0)
        s = tok_spec_default(TOK_MODEL_BPE);
    else if (strcmp(model, "bert") == 0)
        s = tok_spec_default(TOK_MODEL_WPM);
    else
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: tokenizer model \"%.40s\" is not supported (llmos reads \"llama\", "
                          "\"gpt2\" and \"bert\" vocabularies)",
                          what, model);
    s.pre = gguf_get_str(f, "tokenizer.ggml.pre", "default");

    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    float *scores = NULL;
    int32_t *types = NULL;
    size_t n_tok = 0, n_merges = 0;
    llmos_err err =
        get_strings(f, what, "tokenizer.ggml.tokens", true, &n_tok, &tokens, &token_lens);
    if (!err && s.model == TOK_MODEL_BPE)
        err = get_strings(f, what, "tokenizer.ggml.merges", true, &n_merges, &merges, &merge_lens);
    if (err)
        goto done;

    int64_t id = gguf_find_key(f, "tokenizer.ggml.scores");
    if (id >= 0) {
        if (gguf_arr_len(f, id) != n_tok) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "%s: tokenizer.ggml.scores has %llu entries, "
                             "expected one per token (%zu)",
                             what, (unsigned long long)gguf_arr_len(f, id), n_tok);
            goto done;
        }
        scores = malloc((n_tok ? n_tok : 1) * sizeof *scores);
        if (!scores) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "%s: no memory for scores", what);
            goto done;
        }
        for (size_t i = 0; i < n_tok; i++) {
            double v;
            if (!gguf_arr_f64(f, id, i, &v)) {
                err = llmos_fail(LLMOS_ERR_FORMAT,
                                 "%s: tokenizer.ggml.scores is not an array "
                                 "of numbers (element %zu)",
                                 what, i);
                goto done;
            }
            scores[i] = (float)v;
        }
    } else if (s.model == TOK_MODEL_SPM) {
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "%s: key 'tokenizer.ggml.scores' is missing; a "
                         "\"llama\" vocabulary needs scores",
                         what);
        goto done;
    }

    id = gguf_find_key(f, "tokenizer.ggml.token_type");
    if (id >= 0) {
        if (gguf_arr_len(f, id) != n_tok) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "%s: tokenizer.ggml.token_type has %llu "
                             "entries, expected one per token (%zu)",
                             what, (unsigned long long)gguf_arr_len(f, id), n_tok);
            goto done;
        }
        types = malloc((n_tok ? n_tok : 1) * sizeof *types);
        if (!types) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "%s: no memory for token types", what);
            goto done;
        }
        for (size_t i = 0; i < n_tok; i++) {
            int64_t v;
            if (!gguf_arr_i64(f, id, i, &v) || v < 0 || v > TOK_TYPE_BYTE) {
                err = llmos_fail(LLMOS_ERR_FORMAT,
                                 "%s: tokenizer.ggml.token_type element %zu "
                                 "is not a token type (0..6)",
                                 what, i);
                goto done;
            }
            types[i] = (int32_t)v;
        }
    }

    bool spm = s.model == TOK_MODEL_SPM, wpm = s.model == TOK_MODEL_WPM;
    int32_t cls = -1, sep = -1;
    if (wpm && ((err = get_id(f, what, "tokenizer.ggml.cls_token_id", -1, &cls)) ||
                (err = get_id(f, what, "tokenizer.ggml.seperator_token_id", -1, &sep))))
        goto done;
    bool llama3 = !spm && (strcmp(s.pre, "llama3") == 0 || strcmp(s.pre, "llama-v3") == 0 ||
                           strcmp(s.pre, "llama-bpe") == 0 || strcmp(s.pre, "falcon3") == 0);
    err = get_id(f, what, "tokenizer.ggml.bos_token_id", spm && n_tok > 1 ? 1 : cls, &s.bos);
    if (!err)
        err = get_id(f, what, "tokenizer.ggml.eos_token_id", spm && n_tok > 2 ? 2 : sep, &s.eos);
    if (!err)
        err = get_id(f, what, "tokenizer.ggml.eot_token_id", -1, &s.eot);
    if (!err)
        err = get_id(f, what, "tokenizer.ggml.padding_token_id", -1, &s.pad);
    if (!err)
        err = get_id(f, what, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, &s.unk);
    if (!err)
        err = get_flag(f, what, "tokenizer.ggml.add_bos_token", spm || llama3 || wpm, &s.add_bos);
    if (!err)
        err = get_flag(f, what, "tokenizer.ggml.add_eos_token", wpm, &s.add_eos);
    if (!err)
        err = get_flag(f, what, "tokenizer.ggml.add_space_prefix", spm, &s.add_space_prefix);
    if (err)
        goto done;
    s.n_tokens = n_tok;
    s.tokens = tokens;
    s.token_lens = token_lens;
    s.scores = scores;
    s.types = types;
    s.n_merges = n_merges;
    s.merges = merges;
    s.merge_lens = merge_lens;
    err = tok_new(&s, out);
    if (err)
        err = llmos_fail_context(err, "%s: ", what);
done:
    free(tokens);
    free(token_lens);
    free(merges);
    free(merge_lens);
    free(scores);
    free(types);
    return err;
}

llmos_err tok_load_file(const char *path, tokenizer **out)
{
    *out = NULL;
    gguf_file *f = NULL;
    llmos_err err = gguf_open(path, &f);
    if (err)
        return err;
    err = tok_load_gguf(f, path, out);
    gguf_close(f);
    return err;
}
