/*
 * sched.c - the local backend serving many chats at once: continuous batching, time to first
 * token under load, and the prefix cache (issue 14's measurements).
 *
 * Everything goes through the public backend API (llm_chat from several threads on one local
 * backend), so the figures include the batcher's own costs: the hand-over of tokens between
 * threads, sampling, detokenizing and streaming.
 *
 *   throughput  for each count N in --npl: N threads chat at once on a backend of max_seqs N,
 *               each a raw prompt of --npp tokens and --ntg generated (greedy). Reported like
 *               llama.cpp's llama-batched-bench: S_PP is prompt tokens per second of the time
 *               until every prompt was evaluated, S_TG generated tokens per second from then
 *               to the end, and the ratio of S_TG to that of N = 1.
 *   ttft        time to first token of a short chat (--short tokens, 1 generated) on an idle
 *               backend, then while --load long generations run (max_seqs load + 1); medians
 *               of --reps tries each.
 *   prefix      the second turn of a conversation with a --system token system prompt: time
 *               to first token with the first turn's cache (same scope) and without (another
 *               scope on the same backend, and a backend of its own).
 *
 * --ref DIR runs DIR/llama-batched-bench on the same file with the same sizes and threads and
 * prints its S_TG beside ours. Results go to stdout as table rows; the load average is printed
 * at the start and the end (the machine may be shared).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "llmos/backend.h"
#include "llmos/infer.h"

#define MAX_NPL 64

typedef struct opts {
    const char *models[8];
    size_t n_models;
    int threads;
    size_t npp, ntg, short_len, load, reps, system_len;
    size_t npl[16], n_npl;
    size_t rounds;
    bool do_tp, do_ttft, do_prefix, do_engine;
    const char *ref;
} opts;

static void load_average(const char *when)
{
    double l[3] = {0};
    if (getloadavg(l, 3) == 3)
        printf("# load average %s: %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

static void die(const char *what)
{
    fprintf(stderr, "sched: %s: %s\n", what, llmos_errmsg());
    exit(1);
}

static llm_backend *open_backend(const char *path, const opts *o, uint32_t max_seqs, uint32_t n_ctx)
{
    local_backend_params p = local_backend_default_params();
    p.n_ctx = n_ctx;
    p.n_threads = o->threads;
    p.max_seqs = max_seqs;
    llm_backend *b = NULL;
    if (local_backend_open(path, &p, &b))
        die(path);
    return b;
}

/* Text that the backend's tokenizer turns into exactly n tokens as a raw prompt (BOS
 * included when the model adds one), as near as words allow; *got says how many. The words
 * come from a fixed pseudo-random draw, so each `seed` gives a different text. */
static char *text_of_tokens(llm_backend *b, size_t n, unsigned seed, size_t *got)
{
    static const char *const words[] = {
        "river",  "stone",  "light",  "quiet",  "market",  "garden", "winter", "engine", "paper",
        "signal", "forest", "silver", "window", "thunder", "orange", "basket", "mirror", "planet",
        "candle", "bridge", "harbor", "meadow", "ladder",  "copper", "violet"};
    llmos_buf t = {0};
    uint32_t x = 2463534242u ^ seed;
    size_t have = 0, step = 16; /* words per look at the count: 16 while far, then 1 */
    for (;;) {
        size_t mark = t.len;
        for (size_t w = 0; w < step; w++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if (buf_puts(&t, t.len ? " " : "") || buf_puts(&t, words[x % 25]))
                die("out of memory");
        }
        size_t c = 0;
        if (llm_count_tokens(b, t.data, t.len, &c))
            die("count tokens");
        c += 1; /* BOS */
        if (c > n || (step > 1 && c + 48 > n)) {
            t.len = mark;
            t.data[mark] = 0;
            if (step == 1)
                break;
            step = 1;
            continue;
        }
        have = c;
        if (c == n)
            break;
    }
    *got = have;
    return buf_detach(&t, NULL);
}

/* ---- one chat on its own thread ------------------------------------------------------------- */

typedef struct job {
    llm_backend *b;
    const char *prompt; /* raw prompt, or NULL for messages */
    json_t *messages;
    const char *scope;
    int32_t max_tokens;
    atomic_bool cancel;
    double t_start, t_end;
    _Atomic double t_first; /* read by the main thread while the chat runs */
    llm_response r;
    llmos_err err;
} job;

static bool on_text(void *ctx, const char *text, size_t len)
{
    job *j = ctx;
    (void)text;
    (void)len;
    if (atomic_load(&j->t_first) == 0)
        atomic_store(&j->t_first, llmos_time_now());
    return true;
}

static void *run_job(void *arg)
{
    job *j = arg;
    llm_request rq = llm_request_default();
    rq.prompt = j->prompt;
    rq.messages = j->messages;
    rq.max_tokens = j->max_tokens;
    rq.sampling.temperature = 0;
    rq.cancel = &j->cancel;
    rq.cache_scope = j->scope;
    j->t_start = llmos_time_now();
    j->err = llm_chat(j->b, &rq, on_text, j, &j->r);
    j->t_end = llmos_time_now();
    if (atomic_load(&j->t_first) == 0) /* no text streamed (held back, or an error) */
        atomic_store(&j->t_first, j->t_end);
    if (j->err)
        fprintf(stderr, "sched: chat: %s\n", llmos_errmsg());
    return NULL;
}

/* ---- throughput ------------------------------------------------------------------------------ */

typedef struct tp_row {
    size_t npl, pp, tg;
    double t_pp;       /* until every chat had its first token */
    double t_tg;       /* from then to the end */
    uint64_t tg_evals; /* tokens evaluated in that time (one per running chat per step) */
    double cpu_tg;     /* CPU seconds of this process in that time */
} tp_row;

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static tp_row throughput(const char *path, const opts *o, size_t npl)
{
    llm_backend *b = open_backend(path, o, (uint32_t)npl, (uint32_t)(o->npp + o->ntg + 16));
    job *jobs = calloc(npl, sizeof *jobs);
    char **texts = calloc(npl, sizeof *texts);
    pthread_t th[MAX_NPL];
    for (size_t i = 0; i < npl; i++) {
        size_t got = 0;
        texts[i] = text_of_tokens(b, o->npp, (unsigned)i + 1, &got);
        jobs[i] = (job){.b = b, .prompt = texts[i], .max_tokens = (int32_t)o->ntg};
    }
    double t0 = llmos_time_now();
    for (size_t i = 0; i < npl; i++)
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    /* the generation phase starts when every chat has its first token */
    for (;;) {
        size_t first = 0;
        for (size_t i = 0; i < npl; i++)
            first += atomic_load(&jobs[i].t_first) != 0;
        if (first == npl)
            break;
        usleep(200);
    }
    double t_pd = llmos_time_now(), cpu_pd = cpu_seconds();
    llm_stats st0, st1;
    if (llm_get_stats(b, &st0))
        die("stats");
    for (size_t i = 0; i < npl; i++)
        pthread_join(th[i], NULL);
    double t_end = llmos_time_now(), cpu_end = cpu_seconds();
    if (llm_get_stats(b, &st1))
        die("stats");
    tp_row row = {.npl = npl,
                  .t_pp = t_pd - t0,
                  .t_tg = t_end - t_pd,
                  .tg_evals = st1.tokens - st0.tokens,
                  .cpu_tg = cpu_end - cpu_pd};
    for (size_t i = 0; i < npl; i++) {
        if (jobs[i].err)
            die("throughput chat");
        row.pp += jobs[i].r.prompt_tokens;
        row.tg += jobs[i].r.completion_tokens;
        llm_response_free(&jobs[i].r);
        free(texts[i]);
    }
    free(jobs);
    free(texts);
    llm_backend_free(b);
    return row;
}

/* S_TG of llama-batched-bench for each npl, from its table ("| PP | TG | B | N_KV | T_PP s |
 * S_PP t/s | T_TG s | S_TG t/s | T s | S t/s |"); 0 where it gave none. */
static void reference(const char *dir, const char *path, const opts *o, double *s_tg)
{
    char npl[128] = "", cmd[8192];
    for (size_t i = 0; i < o->n_npl; i++)
        snprintf(npl + strlen(npl), sizeof npl - strlen(npl), "%s%zu", i ? "," : "", o->npl[i]);
    snprintf(cmd, sizeof cmd,
             "'%s/llama-batched-bench' -m '%s' -c %zu -b 2048 -ub 512 -npp %zu -ntg %zu -npl %s "
             "-t %d 2>/dev/null",
             dir, path, (o->npp + o->ntg) * o->npl[o->n_npl - 1] + 64, o->npp, o->ntg, npl,
             o->threads);
    FILE *f = popen(cmd, "r");
    if (!f) {
        fprintf(stderr, "sched: cannot run %s\n", cmd);
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        size_t pp, tg, bb, kv;
        double t_pp, s_pp, t_tg, stg;
        if (sscanf(line, " | %zu | %zu | %zu | %zu | %lf | %lf | %lf | %lf |", &pp, &tg, &bb, &kv,
                   &t_pp, &s_pp, &t_tg, &stg) == 8)
            for (size_t i = 0; i < o->n_npl; i++)
                if (o->npl[i] == bb)
                    s_tg[i] = stg;
    }
    pclose(f);
}

/* Each count o->rounds times, the counts interleaved so that a change in the machine's load
 * falls on all of them; the best round of each is kept (the least disturbed). */
static void run_throughput(const char *path, const opts *o)
{
    double ref[16] = {0};
    if (o->ref)
        reference(o->ref, path, o, ref);
    tp_row best[16] = {0};
    double best_s[16] = {0};
    for (size_t r = 0; r < o->rounds; r++)
        for (size_t i = 0; i < o->n_npl; i++) {
            tp_row row = throughput(path, o, o->npl[i]);
            double s_tg = (double)row.tg_evals / row.t_tg;
            fprintf(stderr, "sched: round %zu, N %zu: S_TG %.2f t/s\n", r + 1, o->npl[i], s_tg);
            if (s_tg > best_s[i]) {
                best_s[i] = s_tg;
                best[i] = row;
            }
        }
    printf("\n## throughput: %s, prompt %zu, %zu generated each, %d threads, best of %zu\n\n", path,
           o->npp, o->ntg, o->threads, o->rounds);
    printf("| N | T_PP s | S_PP t/s | T_TG s | S_TG t/s | vs N=1 | S_TG per CPU-s | vs N=1 |%s\n",
           o->ref ? " llama.cpp S_TG |" : "");
    printf("|---|---|---|---|---|---|---|---|%s\n", o->ref ? "---|" : "");
    double base = best_s[0], base_cpu = (double)best[0].tg_evals / best[0].cpu_tg;
    for (size_t i = 0; i < o->n_npl; i++) {
        tp_row *r = &best[i];
        double s_pp = (double)r->pp / r->t_pp, s_cpu = (double)r->tg_evals / r->cpu_tg;
        printf("| %zu | %.2f | %.1f | %.2f | %.2f | %.2fx | %.2f | %.2fx |", r->npl, r->t_pp, s_pp,
               r->t_tg, best_s[i], best_s[i] / base, s_cpu, s_cpu / base_cpu);
        if (o->ref)
            printf(" %.2f |", ref[i]);
        printf("\n");
    }
    fflush(stdout);
}

/* ---- time to first token -----------------------------------------------------------------------
 */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ttft_once(llm_backend *b, const char *text)
{
    job j = {.b = b, .prompt = text, .max_tokens = 1};
    run_job(&j);
    if (j.err)
        die("short chat");
    double t = atomic_load(&j.t_first) - j.t_start;
    llm_response_free(&j.r);
    return t;
}

static void run_ttft(const char *path, const opts *o)
{
    size_t n_load = o->load;
    llm_backend *b = open_backend(path, o, (uint32_t)n_load + 1, 1024);
    size_t got = 0;
    char *shrt = text_of_tokens(b, o->short_len, 1000, &got);
    double idle[32], busy[32];
    size_t reps = o->reps < 32 ? o->reps : 32;
    (void)ttft_once(b, shrt); /* warm up */
    for (size_t i = 0; i < reps; i++)
        idle[i] = ttft_once(b, shrt);

    job *jobs = calloc(n_load, sizeof *jobs);
    char **texts = calloc(n_load, sizeof *texts);
    pthread_t th[MAX_NPL];
    for (size_t i = 0; i < n_load; i++) {
        size_t g = 0;
        texts[i] = text_of_tokens(b, o->npp, 2000 + (unsigned)i, &g);
        jobs[i] = (job){.b = b, .prompt = texts[i], .max_tokens = 1024 - (int32_t)o->npp - 8};
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    for (;;) { /* wait until every long chat is generating */
        size_t generating = 0;
        for (size_t i = 0; i < n_load; i++)
            generating += atomic_load(&jobs[i].t_first) != 0;
        if (generating == n_load)
            break;
        usleep(2000);
    }
    llm_stats st;
    for (size_t i = 0; i < reps; i++)
        busy[i] = ttft_once(b, shrt);
    if (llm_get_stats(b, &st))
        die("stats");
    size_t still = st.running; /* the long chats still generating when the tries ended */
    for (size_t i = 0; i < n_load; i++)
        atomic_store(&jobs[i].cancel, true);
    for (size_t i = 0; i < n_load; i++) {
        pthread_join(th[i], NULL);
        llm_response_free(&jobs[i].r);
        free(texts[i]);
    }
    double mi = median(idle, reps), mb = median(busy, reps);
    printf("\n## time to first token: %s, short prompt %zu tokens, %d threads\n\n", path, got,
           o->threads);
    printf("| idle s | under %zu generations s | ratio | long chats still running at the end |\n",
           n_load);
    printf("|---|---|---|---|\n| %.3f | %.3f | %.2fx | %zu of %zu |\n", mi, mb, mb / mi, still,
           n_load);
    fflush(stdout);
    free(shrt);
    free(jobs);
    free(texts);
    llm_backend_free(b);
}

/* ---- prefix cache ------------------------------------------------------------------------------
 */

static double second_turn(llm_backend *b, json_t *turn2, const char *scope, uint32_t *cached)
{
    job j = {.b = b, .messages = turn2, .scope = scope, .max_tokens = 1};
    run_job(&j);
    if (j.err)
        die("second turn");
    double t = atomic_load(&j.t_first) - j.t_start;
    *cached = j.r.cached_tokens;
    llm_response_free(&j.r);
    return t;
}

static void run_prefix(const char *path, const opts *o)
{
    /* the model's own context (TinyLlama's 2048 just holds a 2,000-token system prompt and
     * two short turns) */
    llm_backend *b = open_backend(path, o, 2, 0);
    size_t got = 0;
    char *sys = text_of_tokens(b, o->system_len, 77, &got);
    json_t *turn1 = json_pack("[{ss ss}]", "role", "system", "content", sys);
    json_array_append_new(turn1, json_pack("{ss ss}", "role", "user", "content", "Summarise."));
    job j = {.b = b, .messages = turn1, .scope = "alice", .max_tokens = 8};
    run_job(&j);
    if (j.err)
        die("first turn");
    json_t *turn2 = json_deep_copy(turn1);
    json_array_append_new(turn2, json_pack("{ss ss}", "role", "assistant", "content", j.r.content));
    json_array_append_new(turn2, json_pack("{ss ss}", "role", "user", "content", "Shorter?"));
    uint32_t prompt1 = j.r.prompt_tokens, cached = 0, none = 0;
    llm_response_free(&j.r);
    double with = second_turn(b, turn2, "alice", &cached);
    double without = second_turn(b, turn2, "bob", &none); /* another scope: no reuse */
    llm_backend_free(b);
    printf("\n## prefix cache: %s, system prompt %zu tokens (first turn %u), %d threads\n\n", path,
           got, prompt1, o->threads);
    printf("| second turn TTFT with cache s | cached tokens | without s | speed-up |\n");
    printf("|---|---|---|---|\n| %.3f | %u | %.3f | %.1fx |\n", with, cached, without,
           without / with);
    fflush(stdout);
    json_decref(turn1);
    json_decref(turn2);
    free(sys);
}

/* ---- the engine alone: what one step costs -------------------------------------------------- */

/* Below the backend: one decode step of N sequences (model_eval_batch, each sequence 128
 * positions in) against the same N tokens as one prompt chunk of one sequence (model_eval:
 * the same matmuls, attention over a few positions), in CPU and wall milliseconds per step,
 * 16 steps each. The difference is what batching costs beyond the matmuls; the ratio of N
 * rows to one row is what the CPU's arithmetic allows. */
static void run_engine(const char *path, const opts *o)
{
    llmos_model *m = NULL;
    llmos_pool *pool = NULL;
    if (model_load(path, &m) || pool_new(o->threads, &pool))
        die(path);
    uint32_t n_vocab = model_hparams_of(m)->n_vocab;
    int32_t toks[256];
    for (int i = 0; i < 256; i++)
        toks[i] = (int32_t)((1000u + 7919u * (unsigned)i) % n_vocab);
    printf("\n## one step of the engine: %s, %d threads, %zu-token contexts\n\n", path, o->threads,
           o->npp);
    printf("| N | batched decode step ms CPU | wall | one N-token chunk ms CPU | wall | CPU vs "
           "N=1 step |\n|---|---|---|---|---|---|\n");
    double base = 0;
    for (size_t i = 0; i < o->n_npl; i++) {
        size_t n = o->npl[i];
        model_batch_params bp = {
            .n_tokens = 256, .n_seqs = (uint32_t)n, .n_ctx = 512, .pool = pool};
        model_batch *b = NULL;
        if (model_batch_new(m, &bp, &b))
            die("batch");
        model_ctx_params cp = model_ctx_default_params();
        cp.n_ctx = 512;
        cp.n_batch = 1;
        llmos_model_ctx *c[MAX_NPL];
        model_batch_seq seqs[MAX_NPL];
        for (size_t k = 0; k < n; k++) {
            if (model_ctx_new(m, &cp, &c[k]))
                die("context");
            seqs[k] = (model_batch_seq){c[k], toks + k, o->npp < 200 ? o->npp : 200};
            if (model_eval_batch(b, &seqs[k], 1))
                die("prompt");
            seqs[k].n = 1;
        }
        double t0 = llmos_time_now(), c0 = cpu_seconds();
        for (int it = 0; it < 16; it++)
            if (model_eval_batch(b, seqs, n))
                die("step");
        double step_wall = (llmos_time_now() - t0) / 16, step_cpu = (cpu_seconds() - c0) / 16;
        cp.n_batch = 256;
        cp.pool = pool;
        llmos_model_ctx *one = NULL;
        if (model_ctx_new(m, &cp, &one))
            die("context");
        t0 = llmos_time_now();
        c0 = cpu_seconds();
        for (int it = 0; it < 16; it++) {
            model_ctx_truncate(one, 0);
            if (model_eval(one, toks, n, NULL))
                die("chunk");
        }
        double chunk_wall = (llmos_time_now() - t0) / 16, chunk_cpu = (cpu_seconds() - c0) / 16;
        if (i == 0)
            base = step_cpu;
        printf("| %zu | %.1f | %.1f | %.1f | %.1f | %.2fx |\n", n, step_cpu * 1e3, step_wall * 1e3,
               chunk_cpu * 1e3, chunk_wall * 1e3, step_cpu / base);
        fflush(stdout);
        model_ctx_free(one);
        for (size_t k = 0; k < n; k++)
            model_ctx_free(c[k]);
        model_batch_free(b);
    }
    pool_free(pool);
    model_free(m);
}

/* ---- main --------------------------------------------------------------------------------------
 */

static void parse_list(const char *s, opts *o)
{
    o->n_npl = 0;
    while (*s && o->n_npl < 16) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > MAX_NPL) {
            fprintf(stderr, "sched: --npl takes counts 1..%d separated by commas\n", MAX_NPL);
            exit(2);
        }
        o->npl[o->n_npl++] = v;
        s = *end == ',' ? end + 1 : end;
    }
}

int main(int argc, char **argv)
{
    opts o = {.threads = 2,
              .npp = 128,
              .ntg = 64,
              .short_len = 32,
              .load = 8,
              .reps = 5,
              .system_len = 2000,
              .rounds = 3};
    parse_list("1,2,4,8,16", &o);
    bool any = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 && v && o.n_models < 8)
            o.models[o.n_models++] = argv[++i];
        else if (strcmp(a, "--threads") == 0 && v)
            o.threads = atoi(argv[++i]);
        else if (strcmp(a, "--npp") == 0 && v)
            o.npp = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--ntg") == 0 && v)
            o.ntg = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--npl") == 0 && v)
            parse_list(argv[++i], &o);
        else if (strcmp(a, "--short") == 0 && v)
            o.short_len = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--load") == 0 && v)
            o.load = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--rounds") == 0 && v)
            o.rounds = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--reps") == 0 && v)
            o.reps = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--system") == 0 && v)
            o.system_len = strtoul(argv[++i], NULL, 10);
        else if (strcmp(a, "--ref") == 0 && v)
            o.ref = argv[++i];
        else if (strcmp(a, "--throughput") == 0)
            o.do_tp = any = true;
        else if (strcmp(a, "--ttft") == 0)
            o.do_ttft = any = true;
        else if (strcmp(a, "--prefix") == 0)
            o.do_prefix = any = true;
        else if (strcmp(a, "--engine") == 0)
            o.do_engine = any = true;
        else {
            fprintf(stderr,
                    "usage: sched --model FILE [--model FILE...] [--throughput] [--ttft] "
                    "[--prefix] [--engine]\n"
                    "             [--threads 2] [--npp 128] [--ntg 64] [--npl 1,2,4,8,16]\n"
                    "             [--rounds 3] [--short 32] [--load 8] [--reps 5] [--system "
                    "2000]\n             [--ref LLAMA_CPP_BIN_DIR]\n"
                    "(no --throughput/--ttft/--prefix: all three)\n");
            return 2;
        }
    }
    if (o.n_models == 0 || o.npp == 0 || o.ntg == 0 || o.load == 0 || o.load >= MAX_NPL ||
        o.reps == 0 || o.rounds == 0) {
        fprintf(stderr, "sched: give --model FILE (and sizes above 0); --help for usage\n");
        return 2;
    }
    if (!any)
        o.do_tp = o.do_ttft = o.do_prefix = true;
    load_average("at the start");
    for (size_t m = 0; m < o.n_models; m++) {
        if (o.do_tp)
            run_throughput(o.models[m], &o);
        if (o.do_ttft)
            run_ttft(o.models[m], &o);
        if (o.do_prefix)
            run_prefix(o.models[m], &o);
        if (o.do_engine)
            run_engine(o.models[m], &o);
    }
    load_average("at the end");
    return 0;
}
