/*
 * bench/grammar.c - what grammar-constrained sampling costs per token, next to one plain pass
 * over the logits measured in the same run.
 *
 * For each vocabulary (Qwen2: 151,936 tokens; Llama 3: 128,256) and each grammar, (a) the
 * generic JSON grammar and (b) a Hermes tool-call grammar built from a tools array, a valid
 * document is tokenized with the real tokenizer and walked token by token, as generation
 * would: at each position grammar_mask is timed on a logits array, then the token accepted.
 *
 *   cold   the matcher's caches are cleared before each mask: the full cost of walking the
 *          vocabulary trie from a state never seen (the worst case, e.g. the first token)
 *   first  one pass with a fresh grammar: what a single generation pays (states met before
 *          reuse their transitions; repeated states reuse their mask)
 *   warm   a second pass over the same document with the same grammar (a server that keeps
 *          the grammar of a tool set between requests)
 *
 * The baseline is the arg-max over the same logits (best of 20), i.e. the cheapest thing a
 * sampler does per token. Times are the thread's CPU time (the machine may be shared).
 *
 * usage: grammar [DIR]   DIR holds ggml-vocab-qwen2.gguf and ggml-vocab-llama-bpe.gguf
 *        (default: $LLMOS_TESTDATA/vocab)
 */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/grammar.h"
#include "llmos/json.h"
#include "llmos/tokenizer.h"
#include "llmos/toolcall.h"

static const char *JSON_DOC =
    "{\"id\": 4217, \"name\": \"Weather report\", \"tags\": [\"rain\", \"wind\", \"cold\"],\n"
    " \"location\": {\"city\": \"Z\xc3\xbcrich\", \"lat\": 47.3769, \"lon\": 8.5417},\n"
    " \"days\": [{\"date\": \"2026-11-28\", \"high\": 6.5, \"low\": -1.25, \"summary\": "
    "\"Cloudy with light rain in the afternoon, clearing overnight.\"},\n"
    "  {\"date\": \"2026-11-29\", \"high\": 4, \"low\": -3, \"summary\": \"Snow showers; "
    "\xe5\xa4\xa7\xe9\x9b\xaa warning until noon.\"}],\n"
    " \"ok\": true, \"source\": null}";

static const char *TOOLS =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Forecast\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"days\":{\"type\":\"integer\"},\"unit\":{\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"fields\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8}},"
    "\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"send_email\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"to\":{\"type\":\"string\"},\"subject\":{\"type\":\"string\","
    "\"maxLength\":120},\"body\":{\"type\":\"string\"}},\"required\":[\"to\",\"subject\","
    "\"body\"]}}}]";

static const char *TOOL_DOC =
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"San Francisco\", "
    "\"days\": 3, \"unit\": \"celsius\", \"fields\": [\"high\", \"low\", \"wind\"]}}\n"
    "</tool_call>\n<tool_call>\n{\"name\": \"send_email\", \"arguments\": {\"to\": "
    "\"ops@example.com\", \"subject\": \"Forecast\", \"body\": \"Rain expected; bring "
    "umbrellas.\"}}\n</tool_call>";

/* CPU time of this thread in seconds: the machine may be shared, and wall time would count
 * the other programs' time slices. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int)best;
}

static double baseline_us(const float *logits, size_t n)
{
    double best = 1e9;
    volatile int sink = 0;
    for (int rep = 0; rep < 20; rep++) {
        double t0 = cpu_now();
        sink += argmax(logits, n);
        double dt = cpu_now() - t0;
        best = dt < best ? dt : best;
    }
    (void)sink;
    return best * 1e6;
}

typedef struct pass_stats {
    double sum, max;
    size_t n;
} pass_stats;

static void add(pass_stats *s, double us)
{
    s->sum += us;
    s->max = us > s->max ? us : s->max;
    s->n++;
}

/* Walk the document's tokens; time each mask. mode 0 cold, 1 first/warm. Rows printed for
 * `show` evenly spread positions when show > 0. */
static int walk(grammar *g, const grammar_vocab *v, const tokenizer *t, const int32_t *ids,
                size_t n_ids, float *logits, const float *orig, bool cold, pass_stats *st, int show)
{
    size_t n = grammar_vocab_size(v);
    uint8_t *bits = malloc((n + 7) / 8);
    grammar_reset(g);
    for (size_t k = 0; k <= n_ids; k++) {
        if (cold && grammar_clear_caches(g) != LLMOS_OK)
            return -1;
        memcpy(logits, orig, n * sizeof *logits);
        double t0 = cpu_now();
        if (grammar_mask(g, v, logits, n) != LLMOS_OK) {
            fprintf(stderr, "grammar: mask at token %zu: %s\n", k, llmos_errmsg());
            free(bits);
            return -1;
        }
        double us = (cpu_now() - t0) * 1e6;
        add(st, us);
        if (show > 0 && (k % (n_ids / (size_t)show + 1) == 0 || k == n_ids)) {
            size_t allowed = grammar_allowed(g, v, bits, n);
            llmos_buf piece = {0};
            if (k < n_ids && tok_token_bytes(t, ids[k], &piece) == LLMOS_OK) {
                for (size_t j = 0; j < piece.len; j++)
                    if ((unsigned char)piece.data[j] < 32)
                        piece.data[j] = ' ';
            }
            printf("    pos %4zu  next %-16.16s  allowed %7zu  cold mask %9.1f us\n", k,
                   k < n_ids ? (piece.data ? piece.data : "") : "<end>", allowed, us);
            buf_free(&piece);
        }
        if (k < n_ids && grammar_accept(g, v, ids[k]) != LLMOS_OK) {
            fprintf(stderr, "grammar: token %zu refused: %s\n", k, llmos_errmsg());
            free(bits);
            return -1;
        }
    }
    free(bits);
    return 0;
}

static int bench_one(const char *label, const char *gbnf, const char *doc, const tokenizer *t,
                     const grammar_vocab *v, const float *orig, float *logits, double base)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (tok_encode(t, doc, strlen(doc), 0, &ids, &n_ids) != LLMOS_OK)
        return -1;
    grammar *g = NULL;
    if (grammar_parse(gbnf, strlen(gbnf), NULL, &g) != LLMOS_OK) {
        fprintf(stderr, "grammar: %s\n", llmos_errmsg());
        free(ids);
        return -1;
    }
    printf("  %s: %zu tokens\n", label, n_ids);
    pass_stats cold = {0}, first = {0}, warm = {0};
    int rc = walk(g, v, t, ids, n_ids, logits, orig, true, &cold, 8);
    grammar_free(g);
    g = NULL;
    if (!rc && grammar_parse(gbnf, strlen(gbnf), NULL, &g) != LLMOS_OK)
        rc = -1;
    if (!rc)
        rc = walk(g, v, t, ids, n_ids, logits, orig, false, &first, 0);
    if (!rc)
        rc = walk(g, v, t, ids, n_ids, logits, orig, false, &warm, 0);
    if (!rc) {
        printf("    per token  cold mean %8.1f us max %8.1f | first pass mean %8.1f us max "
               "%8.1f | warm mean %7.1f us | baseline argmax %6.1f us\n",
               cold.sum / (double)cold.n, cold.max, first.sum / (double)first.n, first.max,
               warm.sum / (double)warm.n, base);
        printf(
            "    ratio to baseline  cold %.0fx  first %.0fx  warm %.1fx  (%zu states memoised)\n",
            cold.sum / (double)cold.n / base, first.sum / (double)first.n / base,
            warm.sum / (double)warm.n / base, grammar_n_states(g));
    }
    grammar_free(g);
    free(ids);
    return rc;
}

int main(int argc, char **argv)
{
    char dir[1024];
    if (argc > 1)
        snprintf(dir, sizeof dir, "%s", argv[1]);
    else if (getenv("LLMOS_TESTDATA"))
        snprintf(dir, sizeof dir, "%s/vocab", getenv("LLMOS_TESTDATA"));
    else
        snprintf(dir, sizeof dir, "../shared/testdata/vocab");

    llmos_buf json_g = {0}, tool_g = {0};
    json_t *tools = NULL;
    if (jschema_grammar_generic(&json_g) ||
        ljson_parse_text(TOOLS, strlen(TOOLS), "tools", 0, &tools) ||
        toolcall_grammar(tools, TOOLCALL_HERMES, TOOLCALL_REQUIRED, NULL, &tool_g)) {
        fprintf(stderr, "grammar: %s\n", llmos_errmsg());
        return 1;
    }
    const char *vocabs[] = {"ggml-vocab-qwen2.gguf", "ggml-vocab-llama-bpe.gguf"};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(vocabs); k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, vocabs[k]);
        tokenizer *t = NULL;
        if (tok_load_file(path, &t) != LLMOS_OK) {
            fprintf(stderr, "grammar: %s (pass the folder of the vocabularies)\n", llmos_errmsg());
            return 1;
        }
        double t0 = llmos_time_now();
        grammar_vocab *v = NULL;
        if (grammar_vocab_new(t, &v) != LLMOS_OK) {
            fprintf(stderr, "grammar: %s\n", llmos_errmsg());
            return 1;
        }
        double build_ms = (llmos_time_now() - t0) * 1e3;
        size_t n = grammar_vocab_size(v);
        float *orig = malloc(n * sizeof *orig), *logits = malloc(n * sizeof *logits);
        uint64_t r = 42;
        for (size_t i = 0; i < n; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            orig[i] = (float)(r >> 40) / (float)(1 << 24) * 20.0f - 10.0f;
        }
        double base = baseline_us(orig, n);
        printf("%s: %zu tokens, vocabulary trie built in %.1f ms; baseline argmax %.1f us\n",
               vocabs[k], n, build_ms, base);
        if (bench_one("(a) JSON grammar", json_g.data, JSON_DOC, t, v, orig, logits, base) ||
            bench_one("(b) tool-call grammar (Hermes, 2 tools)", tool_g.data, TOOL_DOC, t, v, orig,
                      logits, base))
            return 1;
        free(orig);
        free(logits);
        grammar_vocab_free(v);
        tok_free(t);
    }
    buf_free(&json_g);
    buf_free(&tool_g);
    json_decref(tools);
    return 0;
}
