/*
 * generate.c - the generation loop: prompt in, sampled tokens out as streamed text.
 *
 * One loop ties the model, the sampler and the tokenizer together: evaluate the prompt as a
 * batch, then repeat sample -> check stop tokens -> detokenize -> check stop strings -> emit
 * -> evaluate the new token. Text is emitted as soon as it is final: the streaming decoder
 * holds back incomplete UTF-8, and this loop holds back the tail of the text that could still
 * become a stop string (so a stop string is never shown, even when it spans tokens).
 */
#include <assert.h>
#include <string.h>

#include "llmos/infer.h"

const char *gen_stop_name(gen_stop reason)
{
    switch (reason) {
    case GEN_STOP_LENGTH: return "length";
    case GEN_STOP_EOG: return "end of generation";
    case GEN_STOP_TOKEN: return "stop token";
    case GEN_STOP_STRING: return "stop string";
    case GEN_STOP_CONTEXT: return "context full";
    case GEN_STOP_CALLBACK: return "stopped by caller";
    }
    return "?";
}

gen_params gen_default_params(void)
{
    return (gen_params){.n_predict = 128, .sampling = sampler_default_params()};
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of a stop string: the text
 * that must wait for the next token before it can be shown. */
static size_t stop_prefix_tail(const char *s, size_t n, const gen_params *p)
{
    size_t keep = 0;
    for (size_t i = 0; i < p->n_stop_strings; i++) {
        size_t sl = strlen(p->stop_strings[i]);
        for (size_t k = sl > 0 ? sl - 1 : 0; k > keep; k--)
            /* k >= 1 and k <= n, so s has n >= 1 bytes and is not NULL */
            // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
            if (k <= n && memcmp(s + n - k, p->stop_strings[i], k) == 0) {
                keep = k;
                break;
            }
    }
    return keep;
}

/* Earliest occurrence of any stop string in s[0..n), or n when none. */
static size_t find_stop(const char *s, size_t n, const gen_params *p)
{
    size_t best = n;
    for (size_t i = 0; i < p->n_stop_strings; i++) {
        size_t sl = strlen(p->stop_strings[i]);
        if (sl == 0 || sl > n)
            continue;
        const char *hit = memmem(s, n, p->stop_strings[i], sl);
        if (hit && (size_t)(hit - s) < best)
            best = (size_t)(hit - s);
    }
    return best;
}

static bool is_stop_token(const gen_params *p, int32_t id)
{
    for (size_t i = 0; i < p->n_stop_tokens; i++)
        if (p->stop_tokens[i] == id)
            return true;
    return false;
}

llmos_err gen_run(llmos_model_ctx *c, const tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                  const gen_params *p, gen_emit_fn emit, void *user, gen_stats *stats)
{
    const model_hparams *hp = model_hparams_of(model_ctx_model(c));
    gen_stats st = {.n_prompt = n_prompt, .stop = GEN_STOP_LENGTH};
    llmos_sampler *smp = NULL;
    llmos_err err = sampler_new(&p->sampling, hp->n_vocab, &smp);
    if (err)
        return err;
    tok_decoder dec = {0};
    if (tok)
        tok_decoder_init(&dec, tok, false, false);
    llmos_buf held = {0}; /* decoded text not yet emitted */

    const float *logits = NULL;
    double t0 = llmos_time_now();
    if (n_prompt > 0 && (err = model_eval(c, prompt, n_prompt, &logits)))
        goto done;
    st.prompt_seconds = llmos_time_now() - t0;
    if (!logits) {
        err = llmos_fail(LLMOS_ERR_INVALID, "generate: the prompt is empty");
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++)
        sampler_accept(smp, prompt[i]);

    t0 = llmos_time_now();
    for (uint32_t i = 0; i < p->n_predict; i++) {
        int32_t id = sampler_sample(smp, logits);
        sampler_accept(smp, id);
        if (is_stop_token(p, id)) {
            st.stop = GEN_STOP_TOKEN;
            break;
        }
        if (tok && !p->ignore_eog && tok_is_eog(tok, id)) {
            st.stop = GEN_STOP_EOG;
            break;
        }
        st.n_generated++;

        bool go_on = true;
        if (!tok) {
            go_on = emit(user, id, NULL, 0);
        } else {
            if ((err = tok_decoder_feed(&dec, id, &held)))
                goto done;
            size_t cut = find_stop(held.data ? held.data : "", held.len, p);
            if (cut < held.len) { /* show the text before the stop string, then stop */
                if (!emit(user, id, held.data, cut))
                    st.stop = GEN_STOP_CALLBACK;
                else
                    st.stop = GEN_STOP_STRING;
                buf_clear(&held);
                break;
            }
            size_t ready = held.len ? held.len - stop_prefix_tail(held.data, held.len, p) : 0;
            go_on = emit(user, id, held.len ? held.data : "", ready);
            if (ready > 0) {
                /* ready > 0 implies held.len > 0, so held.data is allocated */
                // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
                memmove(held.data, held.data + ready, held.len - ready);
                held.len -= ready;
                held.data[held.len] = 0;
            }
        }
        if (!go_on) {
            st.stop = GEN_STOP_CALLBACK;
            break;
        }
        if (i + 1 == p->n_predict)
            break; /* the last token needs no evaluation */
        if (model_ctx_pos(c) == model_ctx_size(c)) {
            st.stop = GEN_STOP_CONTEXT;
            break;
        }
        if ((err = model_eval(c, &id, 1, &logits)))
            goto done;
    }
    st.gen_seconds = llmos_time_now() - t0;

    /* text held back for a stop string that never came, and incomplete UTF-8 */
    if (tok && st.stop != GEN_STOP_STRING && st.stop != GEN_STOP_CALLBACK) {
        if ((err = tok_decoder_flush(&dec, &held)))
            goto done;
        if (held.len > 0) {
            size_t cut = find_stop(held.data, held.len, p);
            if (cut < held.len)
                st.stop = GEN_STOP_STRING;
            (void)emit(user, -1, held.data, cut);
        }
    }
    if (stats)
        *stats = st;
done:
    tok_decoder_free(&dec);
    buf_free(&held);
    sampler_free(smp);
    return err;
}
