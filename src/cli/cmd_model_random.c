/*
 * cmd_model_random.c - `llmos model make-random`: a model file with random weights and a real
 * model's shape and tokenizer.
 *
 * For measuring speed and memory at the size of a real model without downloading one, and
 * for tests that need a model of a given architecture. The tokenizer metadata (every
 * tokenizer.* key) is copied from a vocabulary GGUF, so prompts tokenize as they would for
 * the real model; the weights are random (normal, std 0.02, like the usual initialisation,
 * with norm weights 1, so activations stay finite through any number of layers). Tensors are
 * generated while the file is written (the GGUF writer's callback), so a model larger than
 * memory can be made. The same seed gives the same file. Ctrl-C stops the write, leaves no
 * temporary file behind and exits with status 130.
 *
 * The tensors and keys are those llama.cpp's converter writes for each architecture (names
 * from its llama-arch.cpp): llama (Llama 3.x with a rope_freqs tensor computed from the
 * rope_scaling of the model's config, as the converter does), qwen2, qwen3 (per-head Q/K norms,
 * key_length), gemma2 and gemma3 (post-norms, sliding window, soft-caps, Q/K norms), phi3
 * (fused attn_qkv and gate+up ffn_up) and bert (absolute positions, token types, LayerNorms
 * with biases, pooling type).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/gguf.h"
#include "llmos/infer.h"

typedef struct shape {
    const char *name;
    const char *arch;
    uint32_t dim, layers, heads, kv_heads, ffn, vocab, ctx;
    float rope_base, rms_eps;
    bool tied;
    uint32_t head_dim;     /* 0: dim / heads */
    uint32_t window;       /* sliding window of the local layers (Gemma), 0 none */
    float attn_cap, final_cap;
    float rope_factor;     /* Llama 3 rope_scaling.factor (0: none) ... */
    uint32_t rope_orig;    /* ... and its original_max_position_embeddings */
    uint32_t pooling;      /* bert: 1 mean, 2 [CLS] */
} shape;

/* From the models' published configurations (config.json of TinyLlama-1.1B-Chat-v1.0,
 * Qwen2.5-0.5B, Qwen3-0.6B, Llama-3.2-1B, gemma-2-2b, gemma-3-1b-pt, Phi-3-mini-4k-instruct
 * and bge-small-en-v1.5). */
static const shape shapes[] = {
    {"tinyllama-1.1b", "llama", 2048, 22, 32, 4, 5632, 32000, 2048, 10000.0f, 1e-5f, false,
     .head_dim = 0},
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 4864, 151936, 32768, 1000000.0f, 1e-6f, true,
     .head_dim = 0},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 3072, 151936, 40960, 1000000.0f, 1e-6f, true,
     .head_dim = 128},
    {"llama3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, 131072, 500000.0f, 1e-5f, true,
     .rope_factor = 32.0f, .rope_orig = 8192},
    {"gemma2-2b", "gemma2", 2304, 26, 8, 4, 9216, 256000, 8192, 10000.0f, 1e-6f, true,
     .head_dim = 256, .window = 4096, .attn_cap = 50.0f, .final_cap = 30.0f},
    {"gemma3-1b", "gemma3", 1152, 26, 4, 1, 6912, 262144, 32768, 1000000.0f, 1e-6f, true,
     .head_dim = 256, .window = 512},
    {"phi3-mini", "phi3", 3072, 32, 32, 32, 8192, 32064, 4096, 10000.0f, 1e-5f, false,
     .head_dim = 0},
    {"bge-small", "bert", 384, 12, 12, 12, 1536, 30522, 512, 0.0f, 1e-12f, false, .pooling = 2},
    {"nomic-embed-v1.5", "nomic-bert", 768, 12, 12, 12, 3072, 30522, 2048, 1000.0f, 1e-12f,
     false, .pooling = 1},
};

static const char *const known_archs[] = {"llama", "qwen2", "qwen3", "gemma2",
                                          "gemma3", "phi3",  "bert",  "nomic-bert"};

typedef struct tensor_plan {
    char name[64];
    uint64_t ne[2];
    uint32_t n_dims;
    ggml_type type;
    bool ones;           /* a norm weight */
    const float *values; /* fixed values (rope_freqs), else random */
} tensor_plan;

typedef struct gen_ctx {
    const tensor_plan *tensors;
    uint64_t seed;
    float std;
} gen_ctx;

/* N(0, 1) by Box-Muller from two uniforms of the PCG32 stream. */
static float normal(sampler_rng *r)
{
    float u1 = sampler_rng_float(r), u2 = sampler_rng_float(r);
    if (u1 < 1e-7f)
        u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* Write tensor i: values from a stream seeded by (seed, i), so each tensor is the same
 * whatever order they are produced in. */
static llmos_err write_tensor(void *ctx, size_t i, gguf_stream *out)
{
    const gen_ctx *g = ctx;
    const tensor_plan *t = &g->tensors[i];
    const quant_traits *tr = quant_traits_of(t->type);
    uint64_t n = t->ne[0] * t->ne[1];
    sampler_rng r;
    sampler_rng_seed(&r, g->seed * 1000003u + i);
    enum { CHUNK = 65536 };
    float *f = malloc(CHUNK * sizeof *f);
    void *q = malloc(CHUNK * tr->type_size);
    if (!f || !q) {
        free(f);
        free(q);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    llmos_err err = LLMOS_OK;
    for (uint64_t done = 0; !err && done < n;) {
        size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
        for (size_t j = 0; j < k; j++)
            f[j] = t->values ? t->values[done + j] : t->ones ? 1.0f : g->std * normal(&r);
        tr->from_float(f, q, k);
        err = gguf_stream_write(out, q, k * tr->type_size);
        done += k;
    }
    free(f);
    free(q);
    return err;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *s == '-' || v == 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return *end == '\0' || *end == ',';
}

/* "DIM,LAYERS,HEADS,KV_HEADS,FFN[,CTX]" */
static bool parse_dims(const char *s, shape *sh)
{
    uint32_t v[6] = {0, 0, 0, 0, 0, 2048};
    size_t n = 0;
    while (n < 6) {
        if (!parse_u32(s, &v[n]))
            return false;
        n++;
        s = strchr(s, ',');
        if (!s)
            break;
        s++;
    }
    if (n < 5 || s)
        return false;
    sh->dim = v[0];
    sh->layers = v[1];
    sh->heads = v[2];
    sh->kv_heads = v[3];
    sh->ffn = v[4];
    sh->ctx = v[5];
    return true;
}

int cmd_model_random(int argc, char **argv)
{
    const char *arch = NULL, *shape_name = NULL, *dims = NULL, *vocab_path = NULL;
    const char *out_path = NULL, *type_name = "f16";
    uint64_t seed = 1;
    bool tied_flag = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--tied") == 0) {
            tied_flag = true;
            continue;
        }
        if (a[0] != '-') {
            if (out_path)
                return cli_usage_error("model make-random", "one OUT file, got '%s' too", a);
            out_path = a;
            continue;
        }
        if (!v)
            return cli_usage_error("model make-random", "%s needs a value", a);
        i++;
        if (strcmp(a, "--arch") == 0)
            arch = v;
        else if (strcmp(a, "--shape") == 0)
            shape_name = v;
        else if (strcmp(a, "--dims") == 0)
            dims = v;
        else if (strcmp(a, "--vocab-from") == 0)
            vocab_path = v;
        else if (strcmp(a, "--type") == 0)
            type_name = v;
        else if (strcmp(a, "--seed") == 0) {
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || *end || *v == '-')
                return cli_usage_error("model make-random", "--seed takes an integer, not '%s'", v);
        } else
            return cli_usage_error("model make-random", "unknown option '%s'", a);
    }
    if (!out_path || !vocab_path || (!shape_name == !dims))
        return cli_usage_error("model make-random",
                               "give --shape NAME or --dims D,L,H,KV,FFN[,CTX], --vocab-from "
                               "FILE and the OUT file");

    shape sh = {0};
    if (shape_name) {
        size_t k = 0;
        while (k < LLMOS_ARRAY_LEN(shapes) && strcmp(shapes[k].name, shape_name) != 0)
            k++;
        if (k == LLMOS_ARRAY_LEN(shapes))
            return cli_usage_error("model make-random",
                                   "unknown shape '%s' (known: tinyllama-1.1b, qwen2.5-0.5b, "
                                   "qwen3-0.6b, llama3.2-1b, gemma2-2b, gemma3-1b, phi3-mini, "
                                   "bge-small, nomic-embed-v1.5)",
                                   shape_name);
        sh = shapes[k];
    } else {
        if (!parse_dims(dims, &sh))
            return cli_usage_error("model make-random",
                                   "--dims takes DIM,LAYERS,HEADS,KV_HEADS,FFN[,CTX] (positive "
                                   "integers), not '%s'",
                                   dims);
        sh.name = "custom";
        sh.arch = "llama";
        sh.rope_base = 10000.0f;
        sh.rms_eps = 1e-5f;
    }
    if (arch)
        sh.arch = arch;
    bool arch_ok = false;
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(known_archs); k++)
        arch_ok |= strcmp(sh.arch, known_archs[k]) == 0;
    if (!arch_ok)
        return cli_usage_error("model make-random",
                               "--arch is llama, qwen2, qwen3, gemma2, gemma3, phi3, bert or "
                               "nomic-bert, not '%s'",
                               sh.arch);
    bool nomic = strcmp(sh.arch, "nomic-bert") == 0;
    bool bert = strcmp(sh.arch, "bert") == 0 || nomic, phi3 = strcmp(sh.arch, "phi3") == 0;
    bool gemma = strncmp(sh.arch, "gemma", 5) == 0;
    bool qk_norm = strcmp(sh.arch, "qwen3") == 0 || strcmp(sh.arch, "gemma3") == 0;
    bool bias = strcmp(sh.arch, "qwen2") == 0 || (bert && !nomic);
    if (tied_flag)
        sh.tied = true;
    if (bert)
        sh.kv_heads = sh.heads;
    uint32_t head_dim = sh.head_dim ? sh.head_dim : sh.dim / sh.heads;
    if ((!sh.head_dim && sh.dim % sh.heads != 0) || sh.heads % sh.kv_heads != 0 || head_dim % 2)
        return cli_usage_error("model make-random",
                               "dims: %u must split into %u heads of even size, shared by %u "
                               "key/value heads",
                               sh.dim, sh.heads, sh.kv_heads);
    if (sh.window > sh.ctx)
        return cli_usage_error("model make-random",
                               "the sliding window %u is longer than the context %u", sh.window,
                               sh.ctx);
    ggml_type type;
    if (strcmp(type_name, "f32") == 0)
        type = GGML_TYPE_F32;
    else if (strcmp(type_name, "f16") == 0)
        type = GGML_TYPE_F16;
    else if (strcmp(type_name, "bf16") == 0)
        type = GGML_TYPE_BF16;
    else
        return cli_usage_error("model make-random", "--type is f32, f16 or bf16, not '%s'",
                               type_name);

    /* Ctrl-C stops the write and removes its temporary file (exit status 130) */
    const atomic_bool *cancel = cli_catch_sigint();
    gguf_file *vf = NULL;
    gguf_writer *w = NULL;
    tensor_plan *plan = NULL;
    float *rope_freqs = NULL;
    llmos_err err = gguf_open(vocab_path, &vf);
    if (err)
        return cli_report(err);
    uint64_t n_tokens = gguf_arr_len(vf, gguf_find_key(vf, "tokenizer.ggml.tokens"));
    if (n_tokens == 0 || n_tokens > INT32_MAX) {
        err =
            llmos_fail(LLMOS_ERR_FORMAT, "%s: no tokenizer.ggml.tokens array to copy", vocab_path);
        goto done;
    }
    if (sh.vocab == 0)
        sh.vocab = (uint32_t)n_tokens;
    if (n_tokens > sh.vocab) {
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "%s has %" PRIu64 " tokens but the shape '%s' has %u embedding rows",
                         vocab_path, n_tokens, sh.name, sh.vocab);
        goto done;
    }

    if ((err = gguf_writer_new(&w)))
        goto done;
    gguf_writer_set_cancel(w, cancel);
    char key[128], name[96];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", sh.arch, s), key)
    snprintf(name, sizeof name, "random %s (%s, seed %" PRIu64 ")", sh.name, type_name, seed);
    if ((err = gguf_set_str(w, "general.architecture", sh.arch)) ||
        (err = gguf_set_str(w, "general.name", name)) ||
        (err = gguf_set_u32(w, KEY("context_length"), sh.ctx)) ||
        (err = gguf_set_u32(w, KEY("embedding_length"), sh.dim)) ||
        (err = gguf_set_u32(w, KEY("block_count"), sh.layers)) ||
        (err = gguf_set_u32(w, KEY("feed_forward_length"), sh.ffn)) ||
        (err = gguf_set_u32(w, KEY("attention.head_count"), sh.heads)))
        goto done;
    if (bert) {
        if ((err = gguf_set_f32(w, KEY("attention.layer_norm_epsilon"), sh.rms_eps)) ||
            (err = gguf_set_bool(w, KEY("attention.causal"), false)) ||
            (err = gguf_set_u32(w, KEY("pooling_type"), sh.pooling ? sh.pooling : 1)) ||
            (err = gguf_set_u32(w, "tokenizer.ggml.token_type_count", 2)) ||
            (nomic && (err = gguf_set_f32(w, KEY("rope.freq_base"), sh.rope_base))))
            goto done;
    } else if ((err = gguf_set_u32(w, KEY("attention.head_count_kv"), sh.kv_heads)) ||
               (err = gguf_set_u32(w, KEY("attention.key_length"), head_dim)) ||
               (err = gguf_set_u32(w, KEY("attention.value_length"), head_dim)) ||
               (err = gguf_set_u32(w, KEY("rope.dimension_count"), head_dim)) ||
               (err = gguf_set_f32(w, KEY("rope.freq_base"), sh.rope_base)) ||
               (err = gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), sh.rms_eps))) {
        goto done;
    }
    if ((sh.window && (err = gguf_set_u32(w, KEY("attention.sliding_window"), sh.window))) ||
        (sh.attn_cap > 0 && (err = gguf_set_f32(w, KEY("attn_logit_softcapping"), sh.attn_cap))) ||
        (sh.final_cap > 0 &&
         (err = gguf_set_f32(w, KEY("final_logit_softcapping"), sh.final_cap))))
        goto done;
#undef KEY
    for (size_t i = 0; i < gguf_n_kv(vf); i++) {
        const char *k = gguf_key(vf, i);
        if (strncmp(k, "tokenizer.", 10) == 0 && strcmp(k, "tokenizer.ggml.token_type_count") &&
            (err = gguf_set_from(w, k, vf, (int64_t)i)))
            goto done;
    }

    /* Llama 3.x rope scaling as llama.cpp's converter computes it from the config's
     * rope_scaling {factor, low_freq_factor 1, high_freq_factor 4, original context}: a
     * divisor per frequency, 1 for short wavelengths, `factor` for long ones, smooth between. */
    if (sh.rope_factor > 0) {
        size_t half = head_dim / 2;
        rope_freqs = malloc(half * sizeof *rope_freqs);
        if (!rope_freqs) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            goto done;
        }
        double low = 1.0, high = 4.0, orig = sh.rope_orig;
        for (size_t i = 0; i < half; i++) {
            double freq = pow(sh.rope_base, -2.0 * (double)i / head_dim);
            double wavelen = 2 * M_PI / freq;
            double f = 1.0;
            if (wavelen > orig / low) {
                f = sh.rope_factor;
            } else if (wavelen >= orig / high) {
                double smooth = (orig / wavelen - low) / (high - low);
                f = 1.0 / ((1 - smooth) / sh.rope_factor + smooth);
            }
            rope_freqs[i] = (float)f;
        }
    }

    /* the tensors, in the order llama.cpp's converter writes them */
    size_t q_dim = (size_t)sh.heads * head_dim, kv_dim = (size_t)sh.kv_heads * head_dim;
    size_t n_plan = 8 + (size_t)sh.layers * 20, np = 0;
    plan = calloc(n_plan, sizeof *plan);
    if (!plan) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        goto done;
    }
#define PLAN(nm, n0, n1, ty, one)                                                                  \
    do {                                                                                           \
        tensor_plan *t_ = &plan[np++];                                                             \
        snprintf(t_->name, sizeof t_->name, "%s", nm);                                             \
        t_->ne[0] = (n0);                                                                          \
        t_->ne[1] = (n1);                                                                          \
        t_->n_dims = (n1) > 1 ? 2 : 1;                                                             \
        t_->type = (ty);                                                                           \
        t_->ones = (one);                                                                          \
    } while (0)
    PLAN("token_embd.weight", sh.dim, sh.vocab, type, false);
    if (bert) {
        PLAN("token_types.weight", sh.dim, 2, type, false);
        if (!nomic)
            PLAN("position_embd.weight", sh.dim, sh.ctx, type, false);
        PLAN("token_embd_norm.weight", sh.dim, 1, GGML_TYPE_F32, true);
        PLAN("token_embd_norm.bias", sh.dim, 1, GGML_TYPE_F32, false);
    }
    if (rope_freqs) {
        PLAN("rope_freqs.weight", head_dim / 2, 1, GGML_TYPE_F32, false);
        plan[np - 1].values = rope_freqs;
    }
    for (uint32_t l = 0; l < sh.layers; l++) {
        char n[64];
#define BLK(s) (snprintf(n, sizeof n, "blk.%u.%s", l, s), n)
        if (!bert)
            PLAN(BLK("attn_norm.weight"), sh.dim, 1, GGML_TYPE_F32, true);
        if (phi3 || nomic) {
            PLAN(BLK("attn_qkv.weight"), sh.dim, q_dim + 2 * kv_dim, type, false);
        } else {
            PLAN(BLK("attn_q.weight"), sh.dim, q_dim, type, false);
            PLAN(BLK("attn_k.weight"), sh.dim, kv_dim, type, false);
            PLAN(BLK("attn_v.weight"), sh.dim, kv_dim, type, false);
        }
        if (bias) {
            PLAN(BLK("attn_q.bias"), q_dim, 1, GGML_TYPE_F32, false);
            PLAN(BLK("attn_k.bias"), kv_dim, 1, GGML_TYPE_F32, false);
            PLAN(BLK("attn_v.bias"), kv_dim, 1, GGML_TYPE_F32, false);
        }
        if (qk_norm) {
            PLAN(BLK("attn_q_norm.weight"), head_dim, 1, GGML_TYPE_F32, true);
            PLAN(BLK("attn_k_norm.weight"), head_dim, 1, GGML_TYPE_F32, true);
        }
        PLAN(BLK("attn_output.weight"), q_dim, sh.dim, type, false);
        if (bert) {
            if (bias)
                PLAN(BLK("attn_output.bias"), sh.dim, 1, GGML_TYPE_F32, false);
            PLAN(BLK("attn_output_norm.weight"), sh.dim, 1, GGML_TYPE_F32, true);
            PLAN(BLK("attn_output_norm.bias"), sh.dim, 1, GGML_TYPE_F32, false);
            if (nomic)
                PLAN(BLK("ffn_gate.weight"), sh.dim, sh.ffn, type, false);
            PLAN(BLK("ffn_up.weight"), sh.dim, sh.ffn, type, false);
            if (bias)
                PLAN(BLK("ffn_up.bias"), sh.ffn, 1, GGML_TYPE_F32, false);
            PLAN(BLK("ffn_down.weight"), sh.ffn, sh.dim, type, false);
            if (bias)
                PLAN(BLK("ffn_down.bias"), sh.dim, 1, GGML_TYPE_F32, false);
            PLAN(BLK("layer_output_norm.weight"), sh.dim, 1, GGML_TYPE_F32, true);
            PLAN(BLK("layer_output_norm.bias"), sh.dim, 1, GGML_TYPE_F32, false);
            continue;
        }
        if (gemma)
            PLAN(BLK("post_attention_norm.weight"), sh.dim, 1, GGML_TYPE_F32, true);
        PLAN(BLK("ffn_norm.weight"), sh.dim, 1, GGML_TYPE_F32, true);
        if (phi3) {
            PLAN(BLK("ffn_up.weight"), sh.dim, 2 * (size_t)sh.ffn, type, false);
        } else {
            PLAN(BLK("ffn_gate.weight"), sh.dim, sh.ffn, type, false);
            PLAN(BLK("ffn_up.weight"), sh.dim, sh.ffn, type, false);
        }
        PLAN(BLK("ffn_down.weight"), sh.ffn, sh.dim, type, false);
        if (gemma)
            PLAN(BLK("post_ffw_norm.weight"), sh.dim, 1, GGML_TYPE_F32, true);
#undef BLK
    }
    if (!bert)
        PLAN("output_norm.weight", sh.dim, 1, GGML_TYPE_F32, true);
    if (!sh.tied && !bert)
        PLAN("output.weight", sh.dim, sh.vocab, type, false);
#undef PLAN
    gen_ctx g = {.tensors = plan, .seed = seed, .std = 0.02f};
    uint64_t n_params = 0;
    for (size_t i = 0; i < np && !err; i++) {
        err = gguf_add_tensor_fn(w, plan[i].name, plan[i].type, plan[i].n_dims, plan[i].ne,
                                 write_tensor, &g);
        n_params += plan[i].ne[0] * plan[i].ne[1];
    }
    double t0 = llmos_time_now();
    if (!err)
        err = gguf_writer_write(w, out_path);
    if (!err)
        fprintf(stderr,
                "llmos model make-random: wrote %s: %s shape %s, %u layers, dim %u, %u/%u heads, "
                "ffn %u, vocab %u, ctx %u, %" PRIu64 " parameters in %s, %.1f s\n",
                out_path, sh.arch, sh.name, sh.layers, sh.dim, sh.heads, sh.kv_heads, sh.ffn,
                sh.vocab, sh.ctx, n_params, type_name, llmos_time_now() - t0);
done:
    free(plan);
    free(rope_freqs);
    gguf_writer_free(w);
    gguf_close(vf);
    return err ? cli_report(err) : CLI_OK;
}
