/*
 * generate.c - the generation loop: prompt in, sampled tokens out as streamed text.
 *
 * One loop ties the model, the sampler and the tokenizer together, for `llmos generate`
 * (gen_run) and for the local backend's chat (gen_loop_run, generate.h): evaluate the prompt
 * as a batch, then repeat sample (masked by a grammar when there is one) -> check stop tokens
 * -> advance the grammar -> detokenize -> check stop strings -> emit -> evaluate the new
 * token, until a stop, the length limit, a full context, the cancel flag or the callback ends
 * it. Text is emitted as soon as it is final: the streaming decoder holds back incomplete
 * UTF-8, and this loop holds back the tail of the text that could still become a stop string
 * (so a stop string is never shown, even when it spans tokens).
 */
#include <assert.h>
#include <string.h>

#include "infer/gen/generate.h"
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
    case GEN_STOP_GRAMMAR: return "grammar complete";
    case GEN_STOP_CANCELLED: return "cancelled";
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

/* Evaluate through g->eval or model_eval. An evaluation that gave up because the cancel
 * flag was set (a batched one, handed over and withdrawn) is the stop GEN_STOP_CANCELLED:
 * *stopped is set and LLMOS_OK returned. */
static llmos_err gen_eval(gen_loop *g, const int32_t *ids, size_t n, const float **logits,
                          bool *stopped)
{
    llmos_err err =
        g->eval ? g->eval(g->eval_user, ids, n, logits) : model_eval(g->ctx, ids, n, logits);
    *stopped = false;
    if (err == LLMOS_ERR_CANCELLED && g->cancel && atomic_load(g->cancel)) {
        llmos_err_clear();
        g->st.stop = GEN_STOP_CANCELLED;
        *stopped = true;
        return LLMOS_OK;
    }
    return err;
}

/* Sample the next token from logits, through the grammar's mask when there is one, and put
 * it in the penalty window. */
static llmos_err gen_sample(gen_loop *g, llmos_sampler *smp, const float *logits, int32_t *id)
{
    if (g->gr) {
        size_t n_vocab = model_hparams_of(model_ctx_model(g->ctx))->n_vocab;
        memcpy(g->scratch, logits, n_vocab * sizeof *g->scratch);
        llmos_err err = grammar_mask(g->gr, g->gv, g->scratch, n_vocab);
        if (err)
            return err;
        logits = g->scratch;
    }
    *id = sampler_sample(smp, logits);
    sampler_accept(smp, *id);
    return LLMOS_OK;
}

/* After a token's text was appended to g->text, of which text[0..shown) was emitted: cut the
 * text at a stop string (GEN_STOP_STRING) and find what has become final, text[*from..*ready),
 * to be emitted now. */
static void gen_final_text(gen_loop *g, size_t shown, size_t *from, size_t *ready)
{
    llmos_buf *text = &g->text;
    const char *s = text->data ? text->data : "";
    /* a stop string can only begin in the held-back text */
    size_t cut = shown + find_stop(s + shown, text->len - shown, g->p);
    if (cut < text->len) {  /* show the text before the stop string, then stop */
        assert(text->data); /* not empty */
        text->len = cut;
        text->data[cut] = 0;
        g->st.stop = GEN_STOP_STRING;
        *ready = cut;
    } else {
        *ready = text->len - stop_prefix_tail(s, text->len, g->p);
        *ready -= utf8_incomplete_tail(s, *ready); /* never split a character */
    }
    *from = shown;
    if (g->tool_calls) { /* answer text streams, a tool call never does */
        toolcall_span sp = toolcall_answer_span(g->family, s, text->len);
        *from = sp.begin > shown ? sp.begin : shown;
        *ready = sp.end < *ready ? sp.end : *ready;
    }
    if (*ready < *from)
        *ready = *from;
}

llmos_err gen_loop_run(gen_loop *g, const int32_t *prompt, size_t n_prompt, size_t n_cached)
{
    assert(g->ctx && g->p && g->emit && n_cached <= n_prompt);
    assert(!g->gr || (g->gv && g->scratch));
    const gen_params *p = g->p;
    llmos_buf *text = &g->text;
    g->st = (gen_stats){.n_prompt = n_prompt, .stop = GEN_STOP_LENGTH};
    g->complete = 0;
    llmos_sampler *smp = NULL;
    llmos_err err =
        sampler_new(&p->sampling, model_hparams_of(model_ctx_model(g->ctx))->n_vocab, &smp);
    if (err)
        return err;
    tok_decoder dec = {0};
    if (g->tok)
        tok_decoder_init(&dec, g->tok, g->tool_calls, false);
    /* text[0..shown) has been emitted (with tool calls, white space at its start is skipped
     * rather than emitted); the rest is held back */
    size_t shown = 0;

    const float *logits = NULL;
    double t0 = llmos_time_now();
    /* With a cancel flag the prompt is evaluated GEN_PROMPT_CHUNK tokens at a time, so that a
     * cancel (a kill) reaches a long prompt too; the KV cache keeps what was evaluated. */
    size_t chunk = !g->cancel ? n_prompt : g->prompt_chunk ? g->prompt_chunk : GEN_PROMPT_CHUNK;
    bool stopped = false;
    for (size_t at = n_cached; at < n_prompt;) {
        if (g->cancel && atomic_load(g->cancel)) {
            g->st.stop = GEN_STOP_CANCELLED;
            goto done;
        }
        size_t k = n_prompt - at < chunk ? n_prompt - at : chunk;
        if ((err = gen_eval(g, prompt + at, k, &logits, &stopped)) || stopped)
            goto done;
        at += k;
    }
    g->st.prompt_seconds = llmos_time_now() - t0;
    if (!logits) {
        err = llmos_fail(LLMOS_ERR_INVALID, "generate: the prompt is empty");
        goto done;
    }
    for (size_t i = 0; i < n_prompt; i++)
        sampler_accept(smp, prompt[i]);

    t0 = llmos_time_now();
    for (uint32_t i = 0; i < p->n_predict; i++) {
        if (g->cancel && atomic_load(g->cancel)) {
            g->st.stop = GEN_STOP_CANCELLED;
            break;
        }
        int32_t id;
        if ((err = gen_sample(g, smp, logits, &id)))
            goto done;
        if (is_stop_token(p, id)) {
            g->st.stop = GEN_STOP_TOKEN;
            break;
        }
        if (g->tok && !p->ignore_eog && tok_is_eog(g->tok, id)) {
            g->st.stop = GEN_STOP_EOG;
            break;
        }
        if (g->gr && (err = grammar_accept(g->gr, g->gv, id)))
            goto done;
        g->st.n_generated++;

        bool go_on = true;
        if (!g->tok) {
            go_on = g->emit(g->user, id, NULL, 0);
        } else {
            if ((err = tok_decoder_feed(&dec, id, text)))
                goto done;
            if (g->gr && grammar_accepting(g->gr))
                g->complete = text->len;
            size_t from, ready;
            gen_final_text(g, shown, &from, &ready);
            go_on = g->emit(g->user, id, (text->data ? text->data : "") + from, ready - from);
            if (ready > from)
                shown = ready;
            if (g->st.stop == GEN_STOP_STRING) {
                if (!go_on)
                    g->st.stop = GEN_STOP_CALLBACK;
                break;
            }
        }
        if (!go_on) {
            g->st.stop = GEN_STOP_CALLBACK;
            break;
        }
        if (g->gr && grammar_done(g->gr)) {
            g->st.stop = GEN_STOP_GRAMMAR;
            break;
        }
        if (i + 1 == p->n_predict)
            break; /* the last token needs no evaluation */
        if (model_ctx_pos(g->ctx) == model_ctx_size(g->ctx)) {
            g->st.stop = GEN_STOP_CONTEXT;
            break;
        }
        if ((err = gen_eval(g, &id, 1, &logits, &stopped)))
            goto done;
        if (stopped)
            break;
    }
    g->st.gen_seconds = llmos_time_now() - t0;

    /* text held back for a stop string that never came, and incomplete UTF-8 */
    gen_stop why = g->st.stop;
    if (g->tok && why != GEN_STOP_STRING && why != GEN_STOP_CALLBACK && why != GEN_STOP_CANCELLED) {
        if ((err = tok_decoder_flush(&dec, text)))
            goto done;
        if (text->len > shown) {
            size_t cut = shown + find_stop(text->data + shown, text->len - shown, p);
            if (cut < text->len) {
                text->len = cut;
                text->data[cut] = 0;
                g->st.stop = GEN_STOP_STRING;
            }
            if (!g->tool_calls)
                (void)g->emit(g->user, -1, text->data + shown, cut - shown);
        }
    }
done:
    tok_decoder_free(&dec);
    sampler_free(smp);
    return err;
}

/* gen_run is the loop with nothing added: model_eval, no grammar, no cancel flag, no calls. */
llmos_err gen_run(llmos_model_ctx *c, const tokenizer *tok, const int32_t *prompt, size_t n_prompt,
                  const gen_params *p, gen_emit_fn emit, void *user, gen_stats *stats)
{
    gen_loop g = {.ctx = c, .tok = tok, .p = p, .emit = emit, .user = user};
    llmos_err err = gen_loop_run(&g, prompt, n_prompt, 0);
    if (!err && stats)
        *stats = g.st;
    buf_free(&g.text);
    return err;
}
