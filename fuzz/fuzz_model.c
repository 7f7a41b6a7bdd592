/*
 * fuzz_model.c - libFuzzer target for loading a model and running it.
 *
 * The input is a GGUF file. When the reader accepts it, model_load_gguf must either refuse it
 * with an error or produce a model whose forward pass runs over a few tokens without reading
 * outside the file or the buffers it sized from the file's hyperparameters. The context is
 * kept to 8 positions so that a claimed context length cannot make the run slow. An encoder
 * (bert) embeds a few tokens instead, alone and as a batch of two texts. The seed corpus has a
 * tiny file of every architecture (llama, qwen2, qwen3, gemma2, gemma3, phi3, bert).
 */
#include <stdint.h>
#include <string.h>

#include "llmos/gguf.h"
#include "llmos/infer.h"

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f) != LLMOS_OK)
        return 0;
    llmos_model *m = NULL;
    if (model_load_gguf(f, &m) != LLMOS_OK) /* takes f */
        return 0;
    const model_hparams *hp = model_hparams_of(m);
    if (hp->encoder) {
        int32_t toks[4] = {0, 1, 2, 3};
        for (size_t i = 0; i < 4; i++)
            toks[i] %= (int32_t)hp->n_vocab;
        size_t n = hp->n_ctx_train < 2 ? hp->n_ctx_train : 2, start[3] = {0, n, 2 * n};
        float v[2 * 4096];
        if (hp->n_embd <= 4096 && model_embed(m, NULL, toks, n, v, hp->n_embd) == LLMOS_OK &&
            model_embed_batch(m, NULL, toks, start, 2, v, hp->n_embd) == LLMOS_OK)
            sink += v[0];
        model_free(m);
        return 0;
    }
    model_ctx_params p = model_ctx_default_params();
    p.n_ctx = hp->n_ctx_train < 8 ? hp->n_ctx_train : 8;
    p.n_batch = 3;
    llmos_model_ctx *c = NULL;
    if (model_ctx_new(m, &p, &c) == LLMOS_OK) {
        int32_t toks[5] = {0, 1, 2, 3, 4};
        for (size_t i = 0; i < 5; i++)
            toks[i] %= (int32_t)hp->n_vocab;
        const float *logits = NULL;
        if (model_eval(c, toks, 5 < p.n_ctx ? 5 : p.n_ctx, &logits) == LLMOS_OK)
            sink += logits[0] + logits[hp->n_vocab - 1];
        model_ctx_free(c);
    }
    model_free(m);
    return 0;
}
