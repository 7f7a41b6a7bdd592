/*
 * kvsnap.c - a context's KV cache as bytes and back: the snapshot a swapped-out sequence
 * keeps, and what the kernel seals into the store for a context switch.
 *
 * The format is in llmos/infer.h (model_kv_save) and docs/inference.md. Restoring is where
 * outside bytes come in (a snapshot read back from the store, or from a file a user handed
 * over), so the parser checks every size against the length before it reads, and the
 * restore refuses a snapshot of another model (its identity digest, model_digest) or of
 * another shape before it writes anything into the context.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "infer/model/kv.h"
#include "llmos/infer.h"

static const uint8_t kv_magic[8] = {'L', 'L', 'M', 'O', 'S', 'K', 'V', 0};
#define KV_HEADER_BYTES 80
#define KV_SUM_BYTES    32

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Bytes of one cache row of h's shape, 0 when the type is not a cache type or it overflows. */
static uint64_t row_bytes_of(const model_kv_header *h)
{
    if (h->kv_type != GGML_TYPE_F32 && h->kv_type != GGML_TYPE_F16)
        return 0;
    uint64_t elts = (uint64_t)h->n_head_kv * h->head_dim, row = 0;
    if (!quant_row_size(h->kv_type, (size_t)elts, &row))
        return 0;
    return row;
}

llmos_err model_kv_save(const llmos_model_ctx *c, const int32_t *tokens, llmos_buf *out)
{
    const model_hparams *hp = model_hparams_of(model_ctx_model(c));
    size_t n_pos = model_ctx_pos(c), row = model_ctx_kv_row_bytes(c);
    size_t n_tok = tokens ? n_pos : 0;
    size_t total =
        KV_HEADER_BYTES + n_tok * 4 + 2 * (size_t)hp->n_layer * n_pos * row + KV_SUM_BYTES;
    size_t start = out->len;
    llmos_err err = buf_reserve(out, total);
    if (err)
        return err;
    uint8_t *p = (uint8_t *)out->data + start;
    memset(p, 0, KV_HEADER_BYTES);
    memcpy(p, kv_magic, 8);
    put32(p + 8, MODEL_KV_VERSION);
    put32(p + 12, (uint32_t)model_ctx_kv_type(c));
    memcpy(p + 16, model_digest(model_ctx_model(c)), MODEL_DIGEST_BYTES);
    put32(p + 48, hp->n_layer);
    put32(p + 52, hp->n_head_kv);
    put32(p + 56, hp->head_dim);
    put64(p + 64, n_pos);
    put64(p + 72, n_tok);
    uint8_t *q = p + KV_HEADER_BYTES;
    for (size_t i = 0; i < n_tok; i++, q += 4)
        put32(q, (uint32_t)tokens[i]);
    for (int values = 0; values < 2; values++)
        for (size_t l = 0; l < hp->n_layer; l++) {
            memcpy(q, model_ctx_kv_rows(c, values, l), n_pos * row);
            q += n_pos * row;
        }
    crypto_hash_sha256(q, p, (size_t)(q - p));
    out->len = start + total;
    return LLMOS_OK;
}

llmos_err model_kv_parse(const uint8_t *data, size_t len, model_kv_header *h)
{
    llmos_err err = model_kv_peek(data, len, h);
    if (err)
        return err;
    uint8_t sum[KV_SUM_BYTES];
    crypto_hash_sha256(sum, data, len - KV_SUM_BYTES);
    if (sodium_memcmp(sum, data + len - KV_SUM_BYTES, KV_SUM_BYTES) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "KV snapshot: checksum mismatch over %zu bytes: the snapshot is "
                          "corrupted",
                          len);
    return LLMOS_OK;
}

llmos_err model_kv_peek(const uint8_t *data, size_t len, model_kv_header *h)
{
    memset(h, 0, sizeof *h);
    if (len < KV_HEADER_BYTES + KV_SUM_BYTES || memcmp(data, kv_magic, 8) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "KV snapshot: %zu bytes that do not start with the snapshot magic "
                          "\"LLMOSKV\" (not a snapshot, or cut short)",
                          len);
    h->version = get32(data + 8);
    if (h->version != MODEL_KV_VERSION)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "KV snapshot: format version %" PRIu32 ", this build reads version %d",
                          h->version, MODEL_KV_VERSION);
    h->kv_type = (ggml_type)get32(data + 12);
    memcpy(h->digest, data + 16, MODEL_DIGEST_BYTES);
    h->n_layer = get32(data + 48);
    h->n_head_kv = get32(data + 52);
    h->head_dim = get32(data + 56);
    h->n_pos = get64(data + 64);
    h->n_tokens = get64(data + 72);
    uint64_t row = row_bytes_of(h);
    if (row == 0 || h->n_layer == 0 || get32(data + 60) != 0)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "KV snapshot: header names cache type %u, %" PRIu32 " layers, %" PRIu32
                          " heads of %" PRIu32 " (not a cache this build writes)",
                          (unsigned)h->kv_type, h->n_layer, h->n_head_kv, h->head_dim);
    if (h->n_tokens != 0 && h->n_tokens != h->n_pos)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "KV snapshot: %" PRIu64 " token ids for %" PRIu64 " positions",
                          h->n_tokens, h->n_pos);
    /* the sizes must add up to len exactly, computed without overflow */
    uint64_t body = len - KV_HEADER_BYTES - KV_SUM_BYTES, rows = 0, cache = 0;
    if (h->n_tokens > body / 4 ||
        __builtin_mul_overflow((uint64_t)2 * h->n_layer, h->n_pos, &rows) ||
        __builtin_mul_overflow(rows, row, &cache) || cache != body - h->n_tokens * 4)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "KV snapshot: %zu bytes, but its header describes %" PRIu64
                          " positions of %" PRIu32 " layers with rows of %" PRIu64
                          " bytes (cut short or corrupted)",
                          len, h->n_pos, h->n_layer, row);
    return LLMOS_OK;
}

llmos_err model_kv_check(const llmos_model *m, const model_kv_header *h, ggml_type kv_type,
                         size_t n_ctx)
{
    const model_hparams *hp = model_hparams_of(m);
    if (memcmp(h->digest, model_digest(m), MODEL_DIGEST_BYTES) != 0) {
        char theirs[2 * MODEL_DIGEST_BYTES + 1], ours[2 * MODEL_DIGEST_BYTES + 1];
        llmos_hex_encode(theirs, sizeof theirs, h->digest, 8);
        llmos_hex_encode(ours, sizeof ours, model_digest(m), 8);
        return llmos_fail(LLMOS_ERR_INVALID,
                          "KV snapshot: made by another model (digest %s..., this model is "
                          "%s...); a cache is only valid for the model that computed it",
                          theirs, ours);
    }
    if (h->n_layer != hp->n_layer || h->n_head_kv != hp->n_head_kv || h->head_dim != hp->head_dim ||
        h->kv_type != kv_type)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "KV snapshot: %" PRIu32 " layers x %" PRIu32 " heads x %" PRIu32
                          " in %s, this context holds %u x %u x %u in %s",
                          h->n_layer, h->n_head_kv, h->head_dim, quant_type_name(h->kv_type),
                          hp->n_layer, hp->n_head_kv, hp->head_dim, quant_type_name(kv_type));
    if (h->n_pos > n_ctx)
        return llmos_fail(LLMOS_ERR_CONTEXT,
                          "KV snapshot: %" PRIu64 " positions, the context holds %zu", h->n_pos,
                          n_ctx);
    return LLMOS_OK;
}

llmos_err model_kv_tokens(const llmos_model *m, const uint8_t *data, const model_kv_header *h,
                          int32_t *out)
{
    uint32_t n_vocab = model_hparams_of(m)->n_vocab;
    for (size_t i = 0; i < h->n_tokens; i++) {
        out[i] = (int32_t)get32(data + KV_HEADER_BYTES + 4 * i);
        if (out[i] < 0 || (uint32_t)out[i] >= n_vocab)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "KV snapshot: token %zu has id %" PRId32
                              ", outside the vocabulary of %u",
                              i, out[i], n_vocab);
    }
    return LLMOS_OK;
}

llmos_err model_kv_restore(llmos_model_ctx *c, const uint8_t *data, size_t len, int32_t **tokens,
                           size_t *n_tokens)
{
    if (tokens) {
        *tokens = NULL;
        *n_tokens = 0;
    }
    model_kv_header h;
    llmos_err err = model_kv_parse(data, len, &h);
    if (err)
        return err;
    const llmos_model *m = model_ctx_model(c);
    const model_hparams *hp = model_hparams_of(m);
    if ((err = model_kv_check(m, &h, model_ctx_kv_type(c), model_ctx_size(c))))
        return err;
    int32_t *ids = NULL;
    if (tokens && h.n_tokens) {
        ids = malloc((size_t)h.n_tokens * sizeof *ids);
        if (!ids)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory restoring a KV snapshot");
        if ((err = model_kv_tokens(m, data, &h, ids))) {
            free(ids);
            return err;
        }
    }
    size_t row = model_ctx_kv_row_bytes(c), n_pos = (size_t)h.n_pos;
    const uint8_t *q = data + KV_HEADER_BYTES + 4 * h.n_tokens;
    for (int values = 0; values < 2; values++)
        for (size_t l = 0; l < hp->n_layer; l++) {
            memcpy(model_ctx_kv_rows(c, values, l), q, n_pos * row);
            q += n_pos * row;
        }
    model_ctx_set_pos(c, n_pos);
    if (tokens) {
        *tokens = ids;
        *n_tokens = (size_t)h.n_tokens;
    }
    return LLMOS_OK;
}
