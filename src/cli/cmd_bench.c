/*
 * cmd_bench.c - `llmos bench`: a model's prompt-processing and generation speed.
 *
 * Measures what llama-bench measures, so the figures compare directly:
 *   ppN  one batch of N tokens evaluated on an empty KV cache (prompt processing);
 *   tgN  N tokens evaluated one at a time (generation), after a 4-token prompt that is not
 *        timed.
 * Tokens are random but valid ids (a fixed seed), so no tokenizer is needed and the work is
 * the same as for text. Each test runs once untimed (warm-up: page-in of the mapping, caches)
 * and then REPS times; tokens/s is reported as mean and sample standard deviation.
 *
 * An embedding model (bert) has no generation; for it the tests are
 *   embLxB  B texts of L tokens (L = -p, at most the model's context) embedded in one call,
 *           batch 1 and batch 32, reported in texts (embeddings) per second.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "llmos/infer.h"
#include "llmos/json.h"
#include "llmos/quantize.h"

typedef struct bench_result {
    double mean, sd;
} bench_result;

static llmos_err run_pp(llmos_model_ctx *c, const int32_t *toks, size_t n, double *sec)
{
    model_ctx_truncate(c, 0);
    double t0 = llmos_time_now();
    llmos_err err = model_eval(c, toks, n, NULL);
    *sec = llmos_time_now() - t0;
    return err;
}

static llmos_err run_tg(llmos_model_ctx *c, const int32_t *toks, size_t n, double *sec)
{
    model_ctx_truncate(c, 0);
    llmos_err err = model_eval(c, toks, 4, NULL);
    double t0 = llmos_time_now();
    for (size_t i = 0; i < n && !err; i++)
        err = model_eval(c, &toks[4 + i], 1, NULL);
    *sec = llmos_time_now() - t0;
    return err;
}

typedef llmos_err (*bench_fn)(llmos_model_ctx *c, const int32_t *toks, size_t n, double *sec);

/* Warm-up once, then reps timed runs: tokens/s mean and sample standard deviation. */
static llmos_err measure(bench_fn fn, llmos_model_ctx *c, const int32_t *toks, size_t n, int reps,
                         bench_result *out)
{
    double sec, sum = 0, sum2 = 0;
    llmos_err err = fn(c, toks, n, &sec);
    for (int r = 0; r < reps && !err; r++) {
        err = fn(c, toks, n, &sec);
        double tps = (double)n / (sec > 0 ? sec : 1e-9);
        sum += tps;
        sum2 += tps * tps;
    }
    out->mean = sum / reps;
    double var = reps > 1 ? (sum2 - sum * sum / reps) / (reps - 1) : 0;
    out->sd = var > 0 ? sqrt(var) : 0;
    return err;
}

/* Embed `batch` texts of `len` tokens (from toks) in one model_embed_batch call. */
static llmos_err run_embed(const llmos_model *m, llmos_pool *pool, const int32_t *toks, size_t len,
                           size_t batch, double *sec)
{
    size_t d = model_hparams_of(m)->n_embd;
    size_t *start = malloc((batch + 1) * sizeof *start);
    float *out = malloc(batch * d * sizeof *out);
    int32_t *all = malloc(batch * len * sizeof *all);
    if (!start || !out || !all) {
        free(start), free(out), free(all);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i <= batch; i++)
        start[i] = i * len;
    for (size_t i = 0; i < batch; i++) /* the same text would be as much work; rotate anyway */
        for (size_t j = 0; j < len; j++)
            all[i * len + j] = toks[(i + j) % len];
    model_ctx_params cp = model_ctx_default_params();
    cp.pool = pool;
    double t0 = llmos_time_now();
    llmos_err err = model_embed_batch(m, &cp, all, start, batch, out, d);
    *sec = llmos_time_now() - t0;
    free(start), free(out), free(all);
    return err;
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void print_json(const char *model, const char *type, uint64_t size, const char *test,
                       int threads, int reps, const bench_result *r)
{
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:i, s:i, s:f, s:f}", "model", model, "type", type,
                          "size_bytes", (json_int_t)size, "test", test, "threads", threads, "reps",
                          reps, "tokens_per_s", r->mean, "tokens_per_s_sd", r->sd);
    llmos_buf b = {0};
    if (j && ljson_to_buf(j, 0, &b) == LLMOS_OK)
        printf("%.*s\n", (int)b.len, (const char *)b.data);
    buf_free(&b);
    json_decref(j);
}

static void print_header(void)
{
    printf("| %-28s | %9s | %8s | %7s | %9s | %18s |\n", "model", "size", "params", "threads",
           "test", "t/s");
    printf("| %.28s | %.9s | %.8s | %.7s | %.9s | %.18s |\n", "-----------------------------------",
           "----------", "---------", "--------", "----------", "-------------------");
}

/* An embedding model: texts of len tokens at batch 1 and 32, embeddings per second. */
static llmos_err bench_encoder(const llmos_model *m, llmos_pool *pool, const char *path,
                               size_t len, int reps, bool as_json)
{
    const model_hparams *hp = model_hparams_of(m);
    if (len > hp->n_ctx_train)
        len = hp->n_ctx_train;
    int32_t *toks = malloc(len * sizeof *toks);
    if (!toks)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    sampler_rng rng;
    sampler_rng_seed(&rng, 42);
    for (size_t i = 0; i < len; i++)
        toks[i] = (int32_t)(sampler_rng_u32(&rng) % hp->n_vocab);
    struct stat st;
    uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    const char *name = gguf_get_str(model_gguf(m), "general.name", path);
    const char *type =
        quantize_file_type_name(gguf_get_u32(model_gguf(m), "general.file_type", UINT32_MAX));
    if (!type)
        type = quant_type_name(hp->weight_type);
    if (!as_json)
        print_header();
    llmos_err err = LLMOS_OK;
    const size_t batches[2] = {1, 32};
    for (int k = 0; k < 2 && !err; k++) {
        double sec, sum = 0, sum2 = 0;
        err = run_embed(m, pool, toks, len, batches[k], &sec); /* warm-up */
        for (int r = 0; r < reps && !err; r++) {
            err = run_embed(m, pool, toks, len, batches[k], &sec);
            double eps = (double)batches[k] / (sec > 0 ? sec : 1e-9);
            sum += eps;
            sum2 += eps * eps;
        }
        if (err)
            break;
        bench_result res = {.mean = sum / reps};
        double var = reps > 1 ? (sum2 - sum * sum / reps) / (reps - 1) : 0;
        res.sd = var > 0 ? sqrt(var) : 0;
        char test[32];
        snprintf(test, sizeof test, "emb%zux%zu", len, batches[k]);
        if (as_json) {
            print_json(name, type, size, test, pool_threads(pool), reps, &res);
        } else {
            char label[64], sz[16], params[16];
            snprintf(label, sizeof label, "%s %s", hp->arch_name, type);
            snprintf(sz, sizeof sz, "%.2f MiB", (double)size / (1u << 20));
            snprintf(params, sizeof params, "%.1f M", (double)hp->n_params / 1e6);
            printf("| %-28s | %9s | %8s | %7d | %9s | %8.2f ± %6.2f |\n", label, sz, params,
                   pool_threads(pool), test, res.mean, res.sd);
        }
        fflush(stdout);
    }
    if (!err && !as_json)
        printf("(embLxB: B texts of L tokens per call; t/s is embeddings per second)\n");
    free(toks);
    return err;
}

int cmd_bench(int argc, char **argv)
{
    const char *path = NULL;
    long n_pp = 512, n_tg = 128, threads = 0, reps = 5;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            as_json = true;
            continue;
        }
        if (a[0] != '-')
            return cli_usage_error("bench",
                                   "unexpected argument '%s' (give the model as --model FILE)", a);
        bool ok;
        const char *takes; /* for the message when the value is missing or wrong */
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0) {
            ok = (path = v) != NULL;
            takes = "a GGUF model FILE";
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "-n") == 0) {
            ok = parse_int(v, 0, 1 << 16, a[1] == 'p' ? &n_pp : &n_tg);
            takes = "a token count from 0 to 65536";
        } else if (strcmp(a, "-t") == 0) {
            ok = parse_int(v, 1, 1024, &threads);
            takes = "a thread count from 1 to 1024";
        } else if (strcmp(a, "-r") == 0) {
            ok = parse_int(v, 1, 1000, &reps);
            takes = "a repetition count from 1 to 1000";
        } else {
            return cli_usage_error("bench", "unknown option '%s'", a);
        }
        if (!ok && v)
            return cli_usage_error("bench", "%s takes %s, not '%s'", a, takes, v);
        if (!ok)
            return cli_usage_error("bench", "%s takes %s", a, takes);
        i++;
    }
    if (!path)
        return cli_usage_error("bench", "no model given: name the GGUF file to measure with "
                                        "--model FILE");
    if (n_pp == 0 && n_tg == 0)
        return cli_usage_error("bench", "nothing to measure (-p 0 and -n 0)");

    llmos_model *m = NULL;
    llmos_pool *pool = NULL;
    llmos_model_ctx *c = NULL;
    int32_t *toks = NULL;
    llmos_err err = cli_resolve_model(&path); /* a store name: verified first */
    if (!err)
        err = model_load(path, &m);
    if (!err)
        err = pool_new((int)threads, &pool);
    if (err)
        goto done;
    const model_hparams *hp = model_hparams_of(m);
    if (hp->encoder) {
        err = bench_encoder(m, pool, path, n_pp ? (size_t)n_pp : 128, (int)reps, as_json);
        goto done;
    }
    size_t need = (size_t)(n_pp > n_tg + 4 ? n_pp : n_tg + 4);
    model_ctx_params cp = model_ctx_default_params();
    cp.n_ctx = (uint32_t)(need < hp->n_ctx_train ? need : hp->n_ctx_train);
    cp.n_batch = (uint32_t)(n_pp > 0 ? n_pp : 64);
    cp.pool = pool;
    if (need > cp.n_ctx) {
        err = llmos_fail(LLMOS_ERR_LIMIT, "%s: %zu positions asked, the model's context is %u",
                         path, need, hp->n_ctx_train);
        goto done;
    }
    if ((err = model_ctx_new(m, &cp, &c)))
        goto done;
    toks = malloc(need * sizeof *toks);
    if (!toks) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        goto done;
    }
    sampler_rng rng;
    sampler_rng_seed(&rng, 42);
    for (size_t i = 0; i < need; i++)
        toks[i] = (int32_t)(sampler_rng_u32(&rng) % hp->n_vocab);

    struct stat st;
    uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    const char *name = gguf_get_str(model_gguf(m), "general.name", path);
    /* what the file was quantized to: a mixture such as Q4_K_M holds several tensor types (its
     * attn_q may well be Q5_0), so the label is general.file_type's name, and the weights' type
     * only for files without one */
    const char *type =
        quantize_file_type_name(gguf_get_u32(model_gguf(m), "general.file_type", UINT32_MAX));
    if (!type)
        type = quant_type_name(hp->weight_type);
    int nt = pool_threads(pool);
    if (!as_json)
        print_header();
    for (int k = 0; k < 2 && !err; k++) {
        long n = k == 0 ? n_pp : n_tg;
        if (n == 0)
            continue;
        char test[32];
        snprintf(test, sizeof test, "%s%ld", k == 0 ? "pp" : "tg", n);
        bench_result r;
        err = measure(k == 0 ? run_pp : run_tg, c, toks, (size_t)n, (int)reps, &r);
        if (err)
            break;
        if (as_json) {
            print_json(name, type, size, test, nt, (int)reps, &r);
        } else {
            char label[64], sz[16], params[16];
            snprintf(label, sizeof label, "%s %s", hp->arch_name, type);
            snprintf(sz, sizeof sz, "%.2f GiB", (double)size / (1u << 30));
            snprintf(params, sizeof params, "%.2f B", (double)hp->n_params / 1e9);
            printf("| %-28s | %9s | %8s | %7d | %9s | %8.2f ± %6.2f |\n", label, sz, params, nt,
                   test, r.mean, r.sd);
        }
        fflush(stdout);
    }
done:
    free(toks);
    model_ctx_free(c);
    pool_free(pool);
    model_free(m);
    return err ? cli_report(err) : CLI_OK;
}
