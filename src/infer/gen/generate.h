/*
 * generate.h - the generation loop behind gen_run and the local backend's chat (private to
 * src/infer).
 *
 * There is one loop: evaluate the prompt, then repeat sample (through the grammar's mask when
 * there is one) -> stop tokens -> grammar -> detokenize -> stop strings -> emit, with a cancel
 * flag and a length limit, and evaluate the new token. gen_run (llmos/infer.h) runs it with
 * the model's own evaluation and nothing else; the local backend (backend/backend_local.c)
 * adds a grammar, a cancel flag and tool calls, and evaluates through its own function so
 * that it knows which tokens its KV cache holds.
 */
#ifndef LLMOS_INFER_GENERATE_H
#define LLMOS_INFER_GENERATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/grammar.h"
#include "llmos/infer.h"
#include "llmos/toolcall.h"

/* Prompt tokens evaluated between two looks at the cancel flag (the local backend's batch). */
#define GEN_PROMPT_CHUNK 256

/* Evaluate ids[0..n) after what the context holds; *logits gets the last one's logits. */
typedef llmos_err (*gen_eval_fn)(void *user, const int32_t *ids, size_t n, const float **logits);

typedef struct gen_loop {
    /* what to run, set by the caller */
    llmos_model_ctx *ctx;
    const tokenizer *tok;      /* NULL: ids only (no EOG, no text, no stop strings) */
    const gen_params *p;       /* sampling, n_predict, stop tokens and strings */
    grammar *gr;               /* NULL, or the grammar every sampled token must keep to */
    grammar_vocab *gv;         /* with gr: the tokenizer's vocabulary for it */
    float *scratch;            /* with gr: n_vocab floats for the masked logits */
    const atomic_bool *cancel; /* NULL, or set from another thread to stop before a token */
    bool tool_calls;           /* the reply may hold tool calls in `family`'s format: special
                                  tokens are rendered, and only text that cannot be part of a
                                  call is emitted (toolcall_answer_span); what is held back at
                                  the end is left to the caller, who parses the reply */
    toolcall_family family;
    gen_eval_fn eval; /* NULL: model_eval on ctx; LLMOS_ERR_CANCELLED from it while the
                         cancel flag is set is a cancel, not an error */
    void *eval_user;
    size_t prompt_chunk; /* with a cancel flag: prompt tokens per eval; 0 = GEN_PROMPT_CHUNK */
    gen_emit_fn emit; /* gets text as gen_run's callback does */
    void *user;

    /* what came out, filled by gen_loop_run */
    llmos_buf text;  /* everything generated, a stop string and what follows it excluded
                        (the caller frees it, also after an error) */
    size_t complete; /* with gr: the length text had when the grammar last accepted it as a
                        whole reply */
    gen_stats st;
} gen_loop;

/* Run the loop on g: prompt[0..n_cached) is already in g->ctx (and was evaluated with it),
 * prompt[n_cached..n_prompt) is evaluated first; every prompt token enters the sampler's
 * penalty window. Errors are the model's, the grammar's or the sampler's; every stop is a
 * normal end with its reason in g->st.stop. */
LLMOS_NODISCARD llmos_err gen_loop_run(gen_loop *g, const int32_t *prompt, size_t n_prompt,
                                       size_t n_cached);

#endif
