/*
 * embed.c - text embeddings: an encoder's own pooling (bert.c), or from a decoder model
 * mean-pooled final hidden states.
 *
 * model_embed runs the tokens through the model in a context of its own, batch by batch, and
 * after each forward pass reads the final hidden state of every token of the batch after the
 * output norm (model_ctx_hidden, the vector the output projection would read). The mean over
 * all positions, scaled to unit length, is the embedding. The sum is kept in double so that
 * the order of the batches does not change the result beyond the kernels' own rounding.
 *
 * A decoder LLM is not trained to embed: mean pooling its states groups texts that share words
 * and topic, but far less sharply than a dedicated embedding model (see docs/inference.md).
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>

#include "infer/model/arch.h"
#include "llmos/infer.h"

llmos_err model_embed(const llmos_model *m, const model_ctx_params *p, const int32_t *tokens,
                      size_t n, float *out, size_t dim)
{
    const model_hparams *hp = model_hparams_of(m);
    if (dim != hp->n_embd)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "model_embed: the output has room for %zu floats, the model's "
                          "embedding length is %u",
                          dim, hp->n_embd);
    if (n == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "model_embed: no tokens to embed");
    if (n > hp->n_ctx_train)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "model_embed: %zu tokens exceed the model's context length of %u "
                          "(truncate the text first)",
                          n, hp->n_ctx_train);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "model_embed: token %zu has id %d, outside the vocabulary of %u",
                              i, (int)tokens[i], hp->n_vocab);
    if (hp->encoder) { /* an embedding model: its own forward pass and pooling (bert.c) */
        size_t start[2] = {0, n};
        return bert_embed(model_bert(m), p, tokens, start, 1, out);
    }

    model_ctx_params cp = p ? *p : model_ctx_default_params();
    cp.n_ctx = (uint32_t)n;
    cp.kv_type = GGML_TYPE_F32;
    if (cp.n_batch == 0)
        cp.n_batch = 64;
    size_t batch = cp.n_batch < n ? cp.n_batch : n; /* model_ctx_new clamps n_batch to n_ctx */

    llmos_model_ctx *c = NULL;
    llmos_err err = model_ctx_new(m, &cp, &c);
    if (err)
        return llmos_fail_context(err, "model_embed: ");
    double *sum = calloc(dim, sizeof *sum);
    float *h = malloc(dim * sizeof *h);
    if (!sum || !h) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "model_embed: out of memory");
        goto done;
    }
    for (size_t done = 0; done < n;) {
        size_t nb = n - done < batch ? n - done : batch;
        if ((err = model_eval(c, tokens + done, nb, NULL)))
            goto done;
        for (size_t t = 0; t < nb; t++) {
            model_ctx_hidden(c, t, h);
            for (size_t i = 0; i < dim; i++)
                sum[i] += h[i];
        }
        done += nb;
    }
    double norm = 0;
    for (size_t i = 0; i < dim; i++) {
        sum[i] /= (double)n;
        norm += sum[i] * sum[i];
    }
    norm = sqrt(norm);
    if (!(norm > 0) || !isfinite(norm)) {
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "model_embed: the mean hidden state has norm %g; cannot normalise it "
                         "(is the model's output norm zero?)",
                         norm);
        goto done;
    }
    for (size_t i = 0; i < dim; i++)
        out[i] = (float)(sum[i] / norm);
done:
    free(h);
    free(sum);
    model_ctx_free(c);
    return err;
}

llmos_err model_embed_batch(const llmos_model *m, const model_ctx_params *p, const int32_t *tokens,
                            const size_t *start, size_t n_texts, float *out, size_t dim)
{
    const model_hparams *hp = model_hparams_of(m);
    if (n_texts == 0 || start[0] != 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "model_embed_batch: no texts, or start[0] is not 0");
    for (size_t i = 0; i < n_texts; i++) {
        if (start[i + 1] <= start[i])
            return llmos_fail(LLMOS_ERR_INVALID, "model_embed_batch: text %zu has no tokens", i);
        if (start[i + 1] - start[i] > hp->n_ctx_train)
            return llmos_fail(LLMOS_ERR_LIMIT,
                              "model_embed_batch: text %zu has %zu tokens, more than the "
                              "model's context length of %u (truncate it first)",
                              i, start[i + 1] - start[i], hp->n_ctx_train);
    }
    if (!hp->encoder || dim != hp->n_embd) {
        for (size_t i = 0; i < n_texts; i++) {
            llmos_err err = model_embed(m, p, tokens + start[i], start[i + 1] - start[i],
                                        out + i * dim, dim);
            if (err)
                return llmos_fail_context(err, "text %zu: ", i);
        }
        return LLMOS_OK;
    }
    for (size_t t = start[0]; t < start[n_texts]; t++)
        if (tokens[t] < 0 || (uint32_t)tokens[t] >= hp->n_vocab)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "model_embed_batch: token %zu has id %d, outside the vocabulary "
                              "of %u",
                              t, (int)tokens[t], hp->n_vocab);
    return bert_embed(model_bert(m), p, tokens, start, n_texts, out);
}
