/*
 * cmd_model.c - `llmos model SUBCOMMAND`: tools for GGUF model files.
 *
 * A small dispatcher over the table of subcommands below. To add one, write its run function
 * (in this file, or in its own cmd_model_<name>.c declared in cli.h), add one line to the
 * table with its help text, and one line to the summary in the "model" entry of commands.c.
 *
 *   info FILE [--json]   what a model file holds: hyperparameters, tokenizer, tensors
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/gguf.h"
#include "llmos/json.h"
#include "llmos/quantize.h"

typedef struct model_subcommand {
    const char *name;
    const char *help;                  /* usage line first, then the description and options */
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
} model_subcommand;

static int model_info(int argc, char **argv);

static const model_subcommand subcommands[] = {
    {"info",
     "usage: llmos model info FILE [--json]\n\n"
     "Show what the GGUF model FILE holds: format version, architecture and name, the\n"
     "hyperparameters the forward pass reads, a tokenizer summary (model, pre-tokenizer,\n"
     "token and merge counts, BOS/EOS and their text, chat template), the parameter count,\n"
     "bytes per tensor type, every metadata key (general.file_type, what the file was\n"
     "quantized to, also by name: Q4_K_M (15)), and a table of tensors (name, type,\n"
     "shape with the contiguous dimension first, bytes). The file is checked completely\n"
     "while it is read; a damaged file is reported with the byte offset of the damage.\n\n"
     "  --json   print one JSON object instead of text (the file type's name as\n"
     "           file_type_name)\n",
     model_info},
    {"make-random",
     "usage: llmos model make-random [--arch ARCH]\n"
     "                               (--shape NAME | --dims D,L,H,KV,FFN[,CTX])\n"
     "                               --vocab-from FILE [--type f32|f16|bf16] [--seed S]\n"
     "                               [--tied] OUT\n\n"
     "Write OUT, a model with random weights (normal, std 0.02; norm weights 1) of a real\n"
     "model's shape, with the tokenizer metadata copied from the GGUF FILE (a model or a\n"
     "vocabulary-only file). For measuring speed and memory without a trained model.\n"
     "Tensors are generated while the file is written; the same seed gives the same file.\n"
     "Ctrl-C stops it without leaving a partial file (exit status 130).\n\n"
     "  --shape NAME   a real model's shape, in the GGUF layout llama.cpp writes for it:\n"
     "                 tinyllama-1.1b (llama: dim 2048, 22 layers, 32/4 heads, ffn 5632,\n"
     "                 vocab 32000), qwen2.5-0.5b (qwen2: dim 896, 24 layers, 14/2 heads,\n"
     "                 ffn 4864, vocab 151936, tied), qwen3-0.6b (qwen3: dim 1024, 28\n"
     "                 layers, 16/8 heads of 128, ffn 3072, Q/K norms, tied), llama3.2-1b\n"
     "                 (llama: dim 2048, 16 layers, 32/8 heads, ffn 8192, vocab 128256,\n"
     "                 rope_freqs for rope scaling 32, tied), gemma2-2b (gemma2: dim 2304,\n"
     "                 26 layers, 8/4 heads of 256, ffn 9216, vocab 256000, window 4096,\n"
     "                 soft-caps 50/30), gemma3-1b (gemma3: dim 1152, 26 layers, 4/1 heads\n"
     "                 of 256, ffn 6912, vocab 262144, window 512), phi3-mini (phi3: dim\n"
     "                 3072, 32 layers, 32 heads, ffn 8192, vocab 32064, fused QKV and\n"
     "                 gate/up), bge-small (bert: dim 384, 12 layers, 12 heads, ffn 1536,\n"
     "                 vocab 30522, ctx 512, [CLS] pooling), nomic-embed-v1.5\n"
     "                 (nomic-bert: dim 768, 12 layers, 12 heads, ffn 3072, ctx 2048, rotary,\n"
     "                 mean pooling)\n"
     "  --dims ...     dimension, layers, heads, key/value heads, FFN size, context\n"
     "                 (default 2048); the vocabulary size is FILE's token count\n"
     "  --arch A       llama, qwen2, qwen3, gemma2, gemma3, phi3, bert or nomic-bert;\n"
     "                 default from the shape (llama for --dims)\n"
     "  --type T       type of the weight matrices (default f16); norms and biases are F32\n"
     "  --tied         no output.weight: the output shares the token embedding\n"
     "  --seed S       random seed (default 1)\n",
     cmd_model_random},
    {"quantize",
     "usage: llmos model quantize [-t THREADS] IN OUT TYPE\n\n"
     "Write OUT, the F32/F16/BF16 model IN with its matrices converted to TYPE: Q4_0 Q4_1\n"
     "Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K F16 BF16 F32, or the mixtures Q3_K_M Q4_K_M\n"
     "Q5_K_M (more bits for attn_v, ffn_down and the output matrix, as llama.cpp does).\n"
     "output.weight is Q6_K for quantized types but Q8_0; norms and biases stay F32; rows\n"
     "not a multiple of 256 fall back to a 32-block type. Metadata is copied and\n"
     "general.file_type set. One progress line per tensor goes to standard error.\n"
     "Ctrl-C stops it without leaving a partial file (exit status 130).\n\n"
     "  -t THREADS   threads (default: LLMOS_THREADS or all CPUs)\n",
     cmd_model_quantize},
};

/* ---- helpers ------------------------------------------------------------------------------ */

/* Print s[0..n) with control bytes, quotes and bytes that are not UTF-8 escaped, at most
 * about `max` bytes of it. Outside bytes never reach the terminal raw. */
static void print_escaped(FILE *out, const char *s, size_t n, size_t max)
{
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        size_t len = c >= 0x80 ? utf8_decode(s + i, n - i, &cp) : 0;
        if (len > 1) {
            fwrite(s + i, 1, len, out);
            i += len - 1;
        } else if (c >= 0x80)
            fprintf(out, "\\x%02x", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c == '\'' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    if (n > max)
        fputs("...", out);
}

/* A NUL-terminated name from the file, escaped as above, padded to `width`, then a space. */
static void print_name(const char *s, int width)
{
    char *e = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&e, &len);
    if (m) {
        print_escaped(m, s, strlen(s), 200);
        fclose(m);
    }
    printf("%-*s ", width, e ? e : "?");
    free(e);
}

/* A JSON string of outside bytes: as is when valid UTF-8 without NULs, else with every byte
 * that is not printable ASCII written as \xNN. */
static json_t *json_bytes(const char *s, size_t n)
{
    if (utf8_valid(s, n) && !memchr(s, 0, n))
        return json_stringn(s, n);
    llmos_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        llmos_err err =
            (c >= 0x20 && c < 0x7f) ? buf_putc(&b, (char)c) : buf_printf(&b, "\\x%02x", c);
        if (err) {
            buf_free(&b);
            return NULL;
        }
    }
    json_t *j = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return j;
}

/* Human form of a count: 1234567 -> "1.23M". */
static void human_count(uint64_t n, char *out, size_t size)
{
    if (n >= 1000000000ull)
        snprintf(out, size, "%.2fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(out, size, "%.2fM", (double)n / 1e6);
    else if (n >= 1000ull)
        snprintf(out, size, "%.2fK", (double)n / 1e3);
    else
        snprintf(out, size, "%" PRIu64, n);
}

static void human_bytes(uint64_t n, char *out, size_t size)
{
    if (n >= (1ull << 30))
        snprintf(out, size, "%.2f GiB", (double)n / (double)(1ull << 30));
    else if (n >= (1ull << 20))
        snprintf(out, size, "%.2f MiB", (double)n / (double)(1ull << 20));
    else if (n >= (1ull << 10))
        snprintf(out, size, "%.2f KiB", (double)n / 1024.0);
    else
        snprintf(out, size, "%" PRIu64 " B", n);
}

/* The hyperparameters llmos's forward pass reads, as suffixes of "<arch>.". */
static const char *const hparams[] = {
    "context_length",      "embedding_length",     "block_count",
    "feed_forward_length", "attention.head_count", "attention.head_count_kv",
    "rope.freq_base",      "rope.dimension_count", "attention.layer_norm_rms_epsilon",
};

/* Number of vocabulary entries: <arch>.vocab_size, else the length of the token list. */
static bool vocab_size(const gguf_file *f, uint64_t *out)
{
    if (gguf_val_u64(f, gguf_find_arch_key(f, "vocab_size"), out))
        return true;
    int64_t toks = gguf_find_key(f, "tokenizer.ggml.tokens");
    if (gguf_arr_type(f, toks) != GGUF_TYPE_STRING)
        return false;
    *out = gguf_arr_len(f, toks);
    return true;
}

/* Token text for an id key such as tokenizer.ggml.bos_token_id: the id in *id and the text. */
static const char *special_token(const gguf_file *f, const char *key, int64_t *id, size_t *len)
{
    *id = -1;
    if (!gguf_val_i64(f, gguf_find_key(f, key), id) || *id < 0)
        return NULL;
    return gguf_arr_str(f, gguf_find_key(f, "tokenizer.ggml.tokens"), (uint64_t)*id, len);
}

typedef struct type_total {
    uint64_t tensors, params, bytes;
} type_total;

static uint64_t tally_types(const gguf_file *f, type_total totals[GGML_TYPE_COUNT])
{
    uint64_t params = 0;
    memset(totals, 0, GGML_TYPE_COUNT * sizeof *totals);
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        totals[t->type].tensors++;
        totals[t->type].params += t->n_elements;
        totals[t->type].bytes += t->size;
        params += t->n_elements;
    }
    return params;
}

/* The name of what the file was quantized to ("Q4_K_M") when value `id` is general.file_type
 * and its number is one llama.cpp defines, else NULL. */
static const char *file_type_name(const gguf_file *f, int64_t id)
{
    int64_t v;
    if (id < 0 || strcmp(gguf_key(f, (size_t)id), "general.file_type") != 0 ||
        !gguf_val_i64(f, id, &v) || v < 0 || v > UINT32_MAX)
        return NULL;
    return quantize_file_type_name((uint32_t)v);
}

/* One line for a value: "uint32 = 5", "string = 'llama'", "array of 512 string"; the file
 * type with its name: "uint32 = Q4_K_M (15)". */
static void print_value(const gguf_file *f, int64_t id)
{
    gguf_type t = gguf_val_type(f, id);
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    size_t len;
    printf("%s", gguf_type_name(t));
    if (t == GGUF_TYPE_STRING) {
        const char *s = gguf_val_str(f, id, &len);
        printf(" = '");
        print_escaped(stdout, s, len, 60);
        printf("'");
        if (len > 60)
            printf(" (%zu bytes)", len);
    } else if (t == GGUF_TYPE_BOOL && gguf_val_bool(f, id, &b)) {
        printf(" = %s", b ? "true" : "false");
    } else if (gguf_val_i64(f, id, &i)) {
        const char *ftype = file_type_name(f, id);
        if (ftype)
            printf(" = %s (%" PRId64 ")", ftype, i);
        else
            printf(" = %" PRId64, i);
    } else if (gguf_val_u64(f, id, &u)) {
        printf(" = %" PRIu64, u);
    } else if (gguf_val_f64(f, id, &d)) {
        printf(" = %g", d);
    } else if (t == GGUF_TYPE_ARRAY) {
        uint64_t n = gguf_arr_len(f, id);
        gguf_type et = gguf_arr_type(f, id);
        printf(" of %" PRIu64 " %s", n, gguf_type_name(et));
        if (n == 0)
            return;
        printf(": [");
        for (uint64_t k = 0; k < n && k < 4; k++) {
            if (k)
                printf(", ");
            if (et == GGUF_TYPE_STRING) {
                const char *s = gguf_arr_str(f, id, k, &len);
                printf("'");
                print_escaped(stdout, s, len, 24);
                printf("'");
            } else if (gguf_arr_i64(f, id, k, &i)) {
                printf("%" PRId64, i);
            } else if (gguf_arr_f64(f, id, k, &d)) {
                printf("%g", d);
            } else {
                printf("...");
            }
        }
        printf("%s]", n > 4 ? ", ..." : "");
    }
}

static void print_shape(const gguf_tensor *t, char *out, size_t size)
{
    size_t o = 0;
    o += (size_t)snprintf(out + o, size - o, "[");
    for (uint32_t d = 0; d < t->n_dims && o < size; d++)
        o += (size_t)snprintf(out + o, size - o, "%s%" PRIu64, d ? ", " : "", t->ne[d]);
    if (o < size)
        snprintf(out + o, size - o, "]");
}

/* ---- info as text ------------------------------------------------------------------------- */

/* A string value escaped, or "-", and a newline. */
static void print_str(const gguf_file *f, const char *key)
{
    size_t len;
    const char *s = gguf_val_str(f, gguf_find_key(f, key), &len);
    if (s)
        print_escaped(stdout, s, len, 200);
    else
        printf("-");
    printf("\n");
}

static void info_text(const gguf_file *f)
{
    char h1[32], h2[32];
    human_bytes(gguf_size(f), h1, sizeof h1);
    printf("file:          %s (%s)\n", gguf_name(f), h1);
    printf("GGUF version:  %u, alignment %u, tensor data at offset %" PRIu64 "\n", gguf_version(f),
           gguf_alignment(f), gguf_data_offset(f));
    printf("architecture:  ");
    print_str(f, "general.architecture");
    printf("name:          ");
    print_str(f, "general.name");

    printf("\nhyperparameters:\n");
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(hparams); k++) {
        int64_t id = gguf_find_arch_key(f, hparams[k]);
        int64_t i;
        double d;
        printf("  %-34s ", hparams[k]);
        if (gguf_val_i64(f, id, &i))
            printf("%" PRId64 "\n", i);
        else if (gguf_val_f64(f, id, &d))
            printf("%g\n", d);
        else
            printf("-\n");
    }
    uint64_t vs;
    if (vocab_size(f, &vs))
        printf("  %-34s %" PRIu64 "\n", "vocab size", vs);
    else
        printf("  %-34s -\n", "vocab size");

    printf("\ntokenizer:\n");
    printf("  model          ");
    print_str(f, "tokenizer.ggml.model");
    printf("  pre            ");
    print_str(f, "tokenizer.ggml.pre");
    printf("  tokens         %" PRIu64 "\n",
           gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.tokens")));
    printf("  merges         %" PRIu64 "\n",
           gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.merges")));
    static const char *const specials[][2] = {{"bos", "tokenizer.ggml.bos_token_id"},
                                              {"eos", "tokenizer.ggml.eos_token_id"}};
    for (size_t k = 0; k < 2; k++) {
        int64_t id;
        size_t len = 0;
        const char *s = special_token(f, specials[k][1], &id, &len);
        printf("  %s            ", specials[k][0]);
        if (id < 0) {
            printf("-\n");
            continue;
        }
        printf("%" PRId64, id);
        if (s) {
            printf(" '");
            print_escaped(stdout, s, len, 60);
            printf("'");
        }
        printf("\n");
    }
    size_t tlen;
    if (gguf_val_str(f, gguf_find_key(f, "tokenizer.chat_template"), &tlen))
        printf("  chat template  present (%zu bytes)\n", tlen);
    else
        printf("  chat template  absent\n");

    type_total totals[GGML_TYPE_COUNT];
    uint64_t params = tally_types(f, totals);
    uint64_t all_bytes = 0;
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        all_bytes += totals[t].bytes;
    human_count(params, h1, sizeof h1);
    human_bytes(all_bytes, h2, sizeof h2);
    printf("\nparameters:    %s (%" PRIu64 "), %s of tensor data\n", h1, params, h2);
    if (gguf_n_tensors(f)) {
        printf("size by type:\n");
        for (int t = 0; t < GGML_TYPE_COUNT; t++) {
            if (!totals[t].tensors)
                continue;
            human_bytes(totals[t].bytes, h2, sizeof h2);
            printf("  %-8s %5" PRIu64 " tensors %14" PRIu64 " params %12s  %5.1f%%\n",
                   quant_type_name((ggml_type)t), totals[t].tensors, totals[t].params, h2,
                   all_bytes ? 100.0 * (double)totals[t].bytes / (double)all_bytes : 0.0);
        }
    }

    printf("\nmetadata (%zu keys):\n", gguf_n_kv(f));
    for (size_t k = 0; k < gguf_n_kv(f); k++) {
        printf("  ");
        print_name(gguf_key(f, k), 40);
        print_value(f, (int64_t)k);
        printf("\n");
    }

    printf("\ntensors (%zu):\n", gguf_n_tensors(f));
    if (gguf_n_tensors(f))
        printf("  %-40s %-8s %-24s %12s\n", "name", "type", "shape", "bytes");
    for (size_t k = 0; k < gguf_n_tensors(f); k++) {
        const gguf_tensor *t = gguf_tensor_at(f, k);
        char shape[96];
        print_shape(t, shape, sizeof shape);
        printf("  ");
        print_name(t->name, 40);
        printf("%-8s %-24s %12" PRIu64 "\n", quant_type_name(t->type), shape, t->size);
    }
}

/* ---- info as JSON ------------------------------------------------------------------------- */

static double float32_for_json(double d);

/* A value as JSON: numbers, strings and bools as themselves; arrays summarised as
 * {"type":"array","element_type":...,"length":n}. NULL when out of memory. */
static json_t *json_value(const gguf_file *f, int64_t id)
{
    gguf_type t = gguf_val_type(f, id);
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    size_t len;
    if (t == GGUF_TYPE_STRING) {
        const char *s = gguf_val_str(f, id, &len);
        return json_bytes(s, len);
    }
    if (gguf_val_bool(f, id, &b))
        return json_boolean(b);
    if (gguf_val_i64(f, id, &i))
        return json_integer(i);
    if (gguf_val_u64(f, id, &u))
        return json_real((double)u); /* above INT64_MAX: jansson has no unsigned */
    if (gguf_val_f64(f, id, &d))
        return json_real(t == GGUF_TYPE_FLOAT32 ? float32_for_json(d) : d);
    return json_pack("{s:s, s:s, s:I}", "type", "array", "element_type",
                     gguf_type_name(gguf_arr_type(f, id)), "length",
                     (json_int_t)gguf_arr_len(f, id));
}

/* A float32 as the shortest decimal that reads back as the same float (1e-05, not
 * 9.999999747378752e-06), so JSON shows what the file's writer meant. */
static double float32_for_json(double d)
{
    float f = (float)d;
    char text[32];
    for (int prec = 6; prec < 9; prec++) {
        snprintf(text, sizeof text, "%.*g", prec, (double)f);
        if ((float)strtod(text, NULL) == f)
            return strtod(text, NULL);
    }
    return d;
}

static json_t *json_number_or_null(const gguf_file *f, int64_t id)
{
    int64_t i;
    double d;
    if (gguf_val_i64(f, id, &i))
        return json_integer(i);
    if (gguf_val_f64(f, id, &d))
        return json_real(gguf_val_type(f, id) == GGUF_TYPE_FLOAT32 ? float32_for_json(d) : d);
    return json_null();
}

static json_t *json_str_or_null(const char *s)
{
    return s ? json_bytes(s, strlen(s)) : json_null();
}

static json_t *info_json(const gguf_file *f)
{
    json_t *root = json_object();
    json_object_set_new(root, "file", json_bytes(gguf_name(f), strlen(gguf_name(f))));
    json_object_set_new(root, "size", json_integer((json_int_t)gguf_size(f)));
    json_object_set_new(root, "version", json_integer(gguf_version(f)));
    json_object_set_new(root, "alignment", json_integer(gguf_alignment(f)));
    json_object_set_new(root, "data_offset", json_integer((json_int_t)gguf_data_offset(f)));
    json_object_set_new(root, "architecture", json_str_or_null(gguf_architecture(f)));
    json_object_set_new(root, "name", json_str_or_null(gguf_get_str(f, "general.name", NULL)));
    /* the number stays in metadata["general.file_type"] */
    json_object_set_new(root, "file_type_name",
                        json_str_or_null(file_type_name(f, gguf_find_key(f, "general.file_type"))));

    json_t *hp = json_object();
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(hparams); k++)
        json_object_set_new(hp, hparams[k],
                            json_number_or_null(f, gguf_find_arch_key(f, hparams[k])));
    uint64_t vs;
    json_object_set_new(hp, "vocab_size",
                        vocab_size(f, &vs) ? json_integer((json_int_t)vs) : json_null());
    json_object_set_new(root, "hyperparameters", hp);

    json_t *tok = json_object();
    json_object_set_new(tok, "model",
                        json_str_or_null(gguf_get_str(f, "tokenizer.ggml.model", NULL)));
    json_object_set_new(tok, "pre", json_str_or_null(gguf_get_str(f, "tokenizer.ggml.pre", NULL)));
    json_object_set_new(
        tok, "tokens",
        json_integer((json_int_t)gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.tokens"))));
    json_object_set_new(
        tok, "merges",
        json_integer((json_int_t)gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.merges"))));
    static const char *const specials[][3] = {
        {"bos_token_id", "bos_token", "tokenizer.ggml.bos_token_id"},
        {"eos_token_id", "eos_token", "tokenizer.ggml.eos_token_id"}};
    for (size_t k = 0; k < 2; k++) {
        int64_t id;
        size_t len = 0;
        const char *s = special_token(f, specials[k][2], &id, &len);
        json_object_set_new(tok, specials[k][0], id >= 0 ? json_integer(id) : json_null());
        json_object_set_new(tok, specials[k][1], s ? json_bytes(s, len) : json_null());
    }
    size_t tlen;
    json_object_set_new(tok, "chat_template_length",
                        gguf_val_str(f, gguf_find_key(f, "tokenizer.chat_template"), &tlen)
                            ? json_integer((json_int_t)tlen)
                            : json_null());
    json_object_set_new(root, "tokenizer", tok);

    type_total totals[GGML_TYPE_COUNT];
    uint64_t params = tally_types(f, totals);
    json_object_set_new(root, "parameters", json_integer((json_int_t)params));
    json_t *by_type = json_object();
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (totals[t].tensors)
            json_object_set_new(
                by_type, quant_type_name((ggml_type)t),
                json_pack("{s:I, s:I, s:I}", "tensors", (json_int_t)totals[t].tensors, "parameters",
                          (json_int_t)totals[t].params, "bytes", (json_int_t)totals[t].bytes));
    json_object_set_new(root, "size_by_type", by_type);

    json_t *meta = json_object();
    for (size_t k = 0; k < gguf_n_kv(f); k++)
        json_object_set_new(meta, gguf_key(f, k), json_value(f, (int64_t)k));
    json_object_set_new(root, "metadata", meta);

    json_t *tensors = json_array();
    for (size_t k = 0; k < gguf_n_tensors(f); k++) {
        const gguf_tensor *t = gguf_tensor_at(f, k);
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
        json_array_append_new(tensors,
                              json_pack("{s:s, s:s, s:o, s:I, s:I}", "name", t->name, "type",
                                        quant_type_name(t->type), "shape", shape, "bytes",
                                        (json_int_t)t->size, "offset",
                                        (json_int_t)gguf_data_offset(f) + (json_int_t)t->offset));
    }
    json_object_set_new(root, "tensors", tensors);
    return root;
}

static int model_info(int argc, char **argv)
{
    const char *path = NULL;
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error("model info", "unknown option '%s'", argv[i]);
        else if (path)
            return cli_usage_error("model info", "one FILE only (got '%s' and '%s')", path,
                                   argv[i]);
        else
            path = argv[i];
    }
    if (!path)
        return cli_usage_error("model info", "missing FILE (a .gguf model)");
    gguf_file *f;
    llmos_err err = gguf_open(path, &f);
    if (err)
        return cli_report(err);
    int rc = CLI_OK;
    if (as_json) {
        json_t *j = info_json(f);
        llmos_buf out = {0};
        /* 16 digits: float32 values (made shortest above) print as 1e-5, not 1.0000000000000001e-5
         */
        size_t flags = JSON_INDENT(2) | JSON_REAL_PRECISION(16);
        if (!j || (err = ljson_to_buf(j, flags, &out)) != LLMOS_OK) {
            rc = cli_report(j ? err : llmos_fail(LLMOS_ERR_NOMEM, "out of memory"));
        } else {
            fwrite(out.data, 1, out.len, stdout);
            fputc('\n', stdout);
        }
        buf_free(&out);
        json_decref(j);
    } else {
        info_text(f);
    }
    gguf_close(f);
    if (fflush(stdout) != 0 && rc == CLI_OK)
        rc = cli_report(llmos_fail(LLMOS_ERR_IO, "cannot write the output"));
    return rc;
}

/* ---- the dispatcher ----------------------------------------------------------------------- */

static const model_subcommand *find_subcommand(const char *name)
{
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(subcommands); i++)
        if (strcmp(subcommands[i].name, name) == 0)
            return &subcommands[i];
    return NULL;
}

static void list_subcommands(FILE *out)
{
    fprintf(out, "subcommands:");
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(subcommands); i++)
        fprintf(out, " %s", subcommands[i].name);
    fprintf(out, "\n");
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("model", "missing SUBCOMMAND (try 'llmos model help')");
    const char *name = argv[1];
    if (strcmp(name, "help") == 0) {
        if (argc < 3) {
            printf("usage: llmos model SUBCOMMAND [ARGS...]\n\n");
            list_subcommands(stdout);
            for (size_t i = 0; i < LLMOS_ARRAY_LEN(subcommands); i++)
                printf("\n%s", subcommands[i].help);
            return CLI_OK;
        }
        const model_subcommand *s = find_subcommand(argv[2]);
        if (!s)
            return cli_usage_error("model", "unknown subcommand '%s'", argv[2]);
        printf("%s", s->help);
        return CLI_OK;
    }
    const model_subcommand *s = find_subcommand(name);
    if (!s) {
        fprintf(stderr, "llmos model: unknown subcommand '%s'\n", name);
        list_subcommands(stderr);
        return CLI_USAGE;
    }
    return s->run(argc - 1, argv + 1);
}
