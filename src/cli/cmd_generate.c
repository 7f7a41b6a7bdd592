/*
 * cmd_generate.c - `llmos generate`: run a local model on a prompt and stream what it writes.
 *
 * A thin user of llmos/infer.h: load the model (--model, else $LLMOS_MODEL as for the shell)
 * and its tokenizer, tokenize the prompt (user text: special tokens are NOT parsed from it),
 * run gen_run with a callback that writes each piece of text to stdout as soon as it is
 * final, and report timings on stderr.
 * With --api URL --api-model NAME the prompt goes to a remote OpenAI-compatible server through
 * the remote backend instead (generate_remote).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/backend.h"
#include "llmos/infer.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct gen_out {
    bool ids;       /* print ids instead of text */
    size_t n_shown; /* tokens printed so far (for the separator in --ids mode) */
    bool printed;   /* anything written to stdout */
} gen_out;

static bool emit(void *user, int32_t token, const char *text, size_t len)
{
    gen_out *o = user;
    if (o->ids) {
        if (token >= 0)
            printf("%s%" PRId32, o->n_shown++ ? " " : "", token);
        o->printed |= token >= 0;
    } else if (text && len) {
        fwrite(text, 1, len, stdout);
        o->printed = true;
    }
    fflush(stdout);
    return !interrupted;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v > hi)
        return false;
    *out = v;
    return true;
}

/* "1 461 401" or "1,461,401" -> ids. */
static llmos_err parse_ids(const char *s, int32_t **out, size_t *n)
{
    size_t cap = strlen(s) / 2 + 1, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t' || *s == '\n')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || k == cap) {
            free(ids);
            return llmos_fail(LLMOS_ERR_INVALID,
                              "--ids: the prompt must be token ids separated by spaces or "
                              "commas; cannot read '%.20s'",
                              s);
        }
        ids[k++] = (int32_t)v;
        s = end;
    }
    *out = ids;
    *n = k;
    return LLMOS_OK;
}

/* ---- --api: the same command over a remote OpenAI-compatible server (backend.h) ---------- */

static atomic_bool api_cancel;

static void api_on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
    atomic_store(&api_cancel, true);
}

static bool api_emit(void *user, const char *text, size_t len)
{
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return !interrupted;
}

/* `llmos generate --api URL --api-model NAME`: the prompt goes as one user message to
 * {URL}/chat/completions and the answer is streamed. The API key comes from the environment
 * (LLMOS_API_KEY, or the variable --api-key-env names), never from the command line, where
 * other users of the machine could read it in the process list. */
static int generate_remote(const char *url, const char *model, const char *key_env,
                           const char *model_path, const char *prompt, bool ids,
                           const gen_params *gp)
{
    if (!url || !model)
        return cli_usage_error("generate", "--api URL and --api-model NAME go together");
    if (model_path)
        return cli_usage_error("generate", "give either --model FILE or --api URL, not both");
    if (ids)
        return cli_usage_error("generate", "--ids works only with a local --model");
    if (!prompt)
        return cli_usage_error("generate", "--prompt TEXT is required");
    const char *key = getenv(key_env ? key_env : "LLMOS_API_KEY");
    if (key_env && (!key || !key[0]))
        return cli_usage_error("generate",
                               "--api-key-env %s: that environment variable is not "
                               "set",
                               key_env);
    remote_backend_params rp = remote_backend_default_params();
    rp.api_key = key && key[0] ? key : NULL;
    llm_backend *b = NULL;
    llmos_err err = remote_backend_open(url, model, &rp, &b);
    if (err)
        return cli_report(err);
    json_t *msgs = json_pack("[{ss ss}]", "role", "user", "content", prompt);
    if (!msgs) {
        llm_backend_free(b);
        return cli_report(llmos_fail(LLMOS_ERR_INVALID, "the prompt is not valid UTF-8"));
    }
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    rq.max_tokens = (int32_t)(gp->n_predict > INT32_MAX ? INT32_MAX : gp->n_predict);
    rq.sampling = gp->sampling;
    rq.cancel = &api_cancel;
    llm_response r = {0};
    void (*old)(int) = signal(SIGINT, api_on_sigint);
    err = llm_chat(b, &rq, api_emit, NULL, &r);
    signal(SIGINT, old);
    printf("\n");
    fflush(stdout);
    if (!err)
        fprintf(stderr,
                "llmos generate: %s at %s: prompt %u tokens; generated %u tokens in %.3f s; "
                "stop: %s\n",
                model, url, r.prompt_tokens, r.completion_tokens, r.gen_seconds, r.finish_reason);
    llm_response_free(&r);
    json_decref(msgs);
    llm_backend_free(b);
    if (err)
        return cli_report(err);
    return interrupted ? CLI_INTERRUPTED : CLI_OK;
}

int cmd_generate(int argc, char **argv)
{
    const char *model_path = NULL, *prompt = NULL;
    gen_params gp = gen_default_params();
    sampler_params *sp = &gp.sampling;
    bool ids = false, seed_given = false;
    int threads = 0;
    const char *api_url = NULL, *api_model = NULL, *api_key_env = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d;
        uint64_t u;
        if (strcmp(a, "--ids") == 0) {
            ids = true;
            continue;
        }
        if (a[0] != '-' || a[1] == '\0')
            return cli_usage_error("generate",
                                   "unexpected argument '%s' (quote the prompt and "
                                   "give it with --prompt)",
                                   a);
        if (!v)
            return cli_usage_error("generate", "%s needs a value", a);
        i++;
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0)
            model_path = v;
        else if (strcmp(a, "--prompt") == 0 || strcmp(a, "-p") == 0)
            prompt = v;
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-predict") == 0) {
            if (!parse_u64(v, 1000000, &u))
                return cli_usage_error("generate",
                                       "-n takes a token count (0..1000000), not "
                                       "'%s'",
                                       v);
            gp.n_predict = (uint32_t)u;
        } else if (strcmp(a, "--temp") == 0) {
            if (!parse_double(v, 0, 100, &d))
                return cli_usage_error("generate",
                                       "--temp takes a number in [0, 100], not "
                                       "'%s'",
                                       v);
            sp->temperature = (float)d;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(v, UINT64_MAX, &u))
                return cli_usage_error("generate",
                                       "--seed takes a non-negative integer, not "
                                       "'%s'",
                                       v);
            sp->seed = u;
            seed_given = true;
        } else if (strcmp(a, "--top-k") == 0) {
            if (!parse_u64(v, INT32_MAX, &u))
                return cli_usage_error("generate", "--top-k takes a count (0 = off), not '%s'", v);
            sp->top_k = (int32_t)u;
        } else if (strcmp(a, "--top-p") == 0) {
            if (!parse_double(v, 0, 1, &d))
                return cli_usage_error("generate",
                                       "--top-p takes a number in [0, 1], not "
                                       "'%s'",
                                       v);
            sp->top_p = (float)d;
        } else if (strcmp(a, "--min-p") == 0) {
            if (!parse_double(v, 0, 1, &d))
                return cli_usage_error("generate",
                                       "--min-p takes a number in [0, 1], not "
                                       "'%s'",
                                       v);
            sp->min_p = (float)d;
        } else if (strcmp(a, "--repeat-penalty") == 0) {
            if (!parse_double(v, 0.01, 100, &d))
                return cli_usage_error("generate",
                                       "--repeat-penalty takes a number in "
                                       "[0.01, 100] (1 = off), not '%s'",
                                       v);
            sp->repeat_penalty = (float)d;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (!parse_u64(v, 256, &u) || u == 0)
                return cli_usage_error("generate",
                                       "-t takes a thread count (1..256), not "
                                       "'%s'",
                                       v);
            threads = (int)u;
        } else if (strcmp(a, "--api") == 0) { /* remote backend (see generate_remote) */
            api_url = v;
        } else if (strcmp(a, "--api-model") == 0) {
            api_model = v;
        } else if (strcmp(a, "--api-key-env") == 0) {
            api_key_env = v;
        } else {
            return cli_usage_error("generate", "unknown option '%s'", a);
        }
    }
    if (api_url || api_model || api_key_env)
        return generate_remote(api_url, api_model, api_key_env, model_path, prompt, ids, &gp);
    if (!model_path) { /* as for the shell: the model set once in the environment */
        const char *env = getenv("LLMOS_MODEL");
        model_path = env && env[0] ? env : NULL;
    }
    if (!model_path)
        return cli_usage_error(
            "generate",
            "no model given. Give one of:\n"
            "  --model FILE                a local GGUF model (llama or qwen2 architecture)\n"
            "  LLMOS_MODEL=FILE            the same, set once in the environment\n"
            "  --api URL --api-model NAME  an OpenAI-compatible server (its key from "
            "$LLMOS_API_KEY)\n"
            "Without a model yet, run 'llmos' (no arguments): it says where to get one.");
    if (!prompt)
        return cli_usage_error("generate", "--prompt TEXT is required");
    llmos_err rerr = cli_resolve_model(&model_path); /* a store name: verified first */
    if (rerr)
        return cli_report(rerr);
    if (!seed_given)
        sp->seed = (uint64_t)llmos_time_now() * 1000003u ^ (uint64_t)getpid();

    llmos_model *m = NULL;
    tokenizer *tok = NULL;
    llmos_pool *pool = NULL;
    llmos_model_ctx *c = NULL;
    int32_t *prompt_ids = NULL;
    size_t n_prompt = 0;
    llmos_err err = model_load(model_path, &m);
    if (!err && !ids)
        err = tok_load_gguf(model_gguf(m), model_path, &tok);
    if (!err)
        err =
            ids ? parse_ids(prompt, &prompt_ids, &n_prompt)
                : tok_encode(tok, prompt, strlen(prompt), TOK_ADD_SPECIAL, &prompt_ids, &n_prompt);
    if (!err && n_prompt == 0)
        err = llmos_fail(LLMOS_ERR_INVALID, "the prompt gives no tokens");
    if (!err)
        err = pool_new(threads, &pool);
    if (!err) {
        /* a cache just large enough for this run, within the model's context length */
        const model_hparams *hp = model_hparams_of(m);
        model_ctx_params cp = model_ctx_default_params();
        uint64_t want = (uint64_t)n_prompt + gp.n_predict;
        cp.n_ctx = want < hp->n_ctx_train ? (uint32_t)want : hp->n_ctx_train;
        cp.n_batch = 256;
        cp.pool = pool;
        if (n_prompt > hp->n_ctx_train)
            err = llmos_fail(LLMOS_ERR_LIMIT,
                             "the prompt has %zu tokens but the model's context length is %u",
                             n_prompt, hp->n_ctx_train);
        else
            err = model_ctx_new(m, &cp, &c);
    }
    gen_stats st = {0};
    if (!err) {
        gen_out out = {.ids = ids};
        void (*old)(int) = signal(SIGINT, on_sigint);
        err = gen_run(c, tok, prompt_ids, n_prompt, &gp, emit, &out, &st);
        signal(SIGINT, old);
        if (!err || out.printed)
            printf("\n"); /* end the generated line */
        fflush(stdout);
    }
    if (!err) {
        fprintf(stderr,
                "llmos generate: prompt %zu tokens in %.3f s (%.1f tokens/s); generated %zu "
                "tokens in %.3f s (%.1f tokens/s); %d threads; seed %" PRIu64 "; stop: %s\n",
                st.n_prompt, st.prompt_seconds,
                st.prompt_seconds > 0 ? (double)st.n_prompt / st.prompt_seconds : 0.0,
                st.n_generated, st.gen_seconds,
                st.gen_seconds > 0 ? (double)st.n_generated / st.gen_seconds : 0.0,
                pool_threads(pool), sp->seed, gen_stop_name(st.stop));
        if (st.stop == GEN_STOP_CONTEXT)
            fprintf(stderr,
                    "llmos generate: stopped at the model's context length (%zu "
                    "positions)\n",
                    model_ctx_size(c));
    }
    free(prompt_ids);
    model_ctx_free(c);
    pool_free(pool);
    tok_free(tok);
    model_free(m);
    if (err)
        return cli_report(err);
    return interrupted ? CLI_INTERRUPTED : CLI_OK;
}
