/*
 * test_model_info.c - `llmos model info` as a user runs it: the built program (LLMOS_BIN) on
 * the shared test model and vocabularies, on files made here with the GGUF writer, and on bad
 * command lines and damaged files, checking output, JSON and exit status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/gguf.h"
#include "llmos/json.h"
#include "testutil.h"

#define OK(x) assert_int_equal((x), LLMOS_OK)

static char tmpdir[] = "/tmp/llmos-test-model-info-XXXXXX";

/* Run `llmos ARGS` (args already shell-quoted); stdout into *out, stderr into *err. Returns
 * the exit status. */
static int run(llmos_buf *out, llmos_buf *err, const char *fmt, ...) LLMOS_PRINTF(3, 4);
static int run(llmos_buf *out, llmos_buf *err, const char *fmt, ...)
{
    const char *bin = getenv("LLMOS_BIN");
    assert_non_null(bin);
    char args[2048], cmd[4096], errpath[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(errpath, sizeof errpath, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' %s 2>'%s'", bin, args, errpath);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    buf_clear(out);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        OK(buf_append(out, chunk, n));
    int status = pclose(p);
    buf_clear(err);
    OK(llmos_file_read_all(errpath, 1 << 20, err));
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void assert_contains(const llmos_buf *b, const char *what)
{
    if (!b->data || !strstr(b->data, what))
        fail_msg("output lacks '%s':\n%s", what, b->data ? b->data : "");
}

static void test_stories_text(void **state)
{
    (void)state;
    char model[1024];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    assert_int_equal(run(&out, &err, "model info '%s'", model), 0);
    assert_contains(&out, "GGUF version:  3, alignment 32");
    assert_contains(&out, "architecture:  llama\n");
    assert_contains(&out, "name:          stories260K\n");
    assert_contains(&out, "  block_count                        5\n");
    assert_contains(&out, "  embedding_length                   64\n");
    assert_contains(&out, "  attention.head_count_kv            4\n");
    assert_contains(&out, "  attention.layer_norm_rms_epsilon   1e-05\n");
    assert_contains(&out, "  vocab size                         512\n");
    assert_contains(&out, "  tokens         512\n");
    assert_contains(&out, "  bos            1 '<s>'\n");
    assert_contains(&out, "  eos            2 '</s>'\n");
    assert_contains(&out, "  chat template  absent\n");
    assert_contains(&out, "parameters:    260.03K (260032)");
    assert_contains(&out, "tensors (47):");
    assert_contains(&out, "  token_embd.weight                        F32      [64, 512]");
    assert_int_equal(err.len, 0);
    buf_free(&out);
    buf_free(&err);
}

static void test_stories_json(void **state)
{
    (void)state;
    char model[1024];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    assert_int_equal(run(&out, &err, "model info --json '%s'", model), 0);
    json_t *j;
    OK(ljson_parse_text(out.data, out.len, "model info output", 0, &j));
    assert_int_equal(ljson_get_int(j, "version", 0), 3);
    assert_string_equal(ljson_get_string(j, "architecture", ""), "llama");
    json_t *hp = ljson_get_object(j, "hyperparameters");
    assert_int_equal(ljson_get_int(hp, "block_count", 0), 5);
    assert_int_equal(ljson_get_int(hp, "context_length", 0), 512);
    assert_int_equal(ljson_get_int(hp, "vocab_size", 0), 512);
    assert_true(ljson_get_number(hp, "attention.layer_norm_rms_epsilon", 0) == 1e-5);
    assert_true(ljson_get_number(hp, "rope.freq_base", 0) == 10000.0);
    json_t *tok = ljson_get_object(j, "tokenizer");
    assert_int_equal(ljson_get_int(tok, "tokens", 0), 512);
    assert_string_equal(ljson_get_string(tok, "bos_token", ""), "<s>");
    assert_true(json_is_null(json_object_get(tok, "chat_template_length")));
    assert_int_equal(ljson_get_int(j, "parameters", 0), 260032);
    json_t *f32 = ljson_get_object(ljson_get_object(j, "size_by_type"), "F32");
    assert_int_equal(ljson_get_int(f32, "tensors", 0), 47);
    assert_int_equal(ljson_get_int(f32, "bytes", 0), 260032 * 4);
    json_t *tensors = ljson_get_array(j, "tensors");
    assert_int_equal(json_array_size(tensors), 47);
    json_t *t0 = json_array_get(tensors, 0);
    assert_string_equal(ljson_get_string(t0, "name", ""), "token_embd.weight");
    assert_int_equal(json_integer_value(json_array_get(ljson_get_array(t0, "shape"), 1)), 512);
    json_t *meta = ljson_get_object(j, "metadata");
    assert_int_equal(ljson_get_int(meta, "llama.block_count", 0), 5);
    assert_true(ljson_get_bool(meta, "tokenizer.ggml.add_bos_token", false));
    assert_int_equal(ljson_get_int(ljson_get_object(meta, "tokenizer.ggml.tokens"), "length", 0),
                     512);
    json_decref(j);
    buf_free(&out);
    buf_free(&err);
}

static void test_vocab_json(void **state)
{
    (void)state;
    char vocab[1024];
    tu_testdata_path(vocab, sizeof vocab, "vocab/ggml-vocab-qwen2.gguf");
    llmos_buf out = {0}, err = {0};
    assert_int_equal(run(&out, &err, "model info --json '%s'", vocab), 0);
    json_t *j;
    OK(ljson_parse_text(out.data, out.len, "model info output", 0, &j));
    json_t *tok = ljson_get_object(j, "tokenizer");
    assert_string_equal(ljson_get_string(tok, "model", ""), "gpt2");
    assert_string_equal(ljson_get_string(tok, "pre", ""), "qwen2");
    assert_int_equal(ljson_get_int(tok, "tokens", 0), 151936);
    assert_int_equal(ljson_get_int(tok, "merges", 0), 151387);
    assert_int_equal(ljson_get_int(tok, "bos_token_id", 0), 151643);
    assert_string_equal(ljson_get_string(tok, "eos_token", ""), "<|endoftext|>");
    assert_int_equal(ljson_get_int(j, "parameters", -1), 0);
    assert_int_equal(json_array_size(ljson_get_array(j, "tensors")), 0);
    json_decref(j);
    buf_free(&out);
    buf_free(&err);
}

/* A file with odd bytes in names and tokens, a chat template, and a quantized tensor. */
static void test_written_file(void **state)
{
    (void)state;
    gguf_writer *w;
    OK(gguf_writer_new(&w));
    OK(gguf_set_str(w, "general.architecture", "qwen2"));
    OK(gguf_set_strn(w, "general.name", "bad\xff\nname", 9));
    OK(gguf_set_u32(w, "qwen2.block_count", 2));
    OK(gguf_set_f32(w, "qwen2.rope.freq_base", 1000000.0f));
    OK(gguf_set_str(w, "tokenizer.ggml.model", "gpt2"));
    const char *toks[] = {"a", "\xff\xfe", "<|im_end|>"};
    OK(gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, NULL, 3));
    OK(gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1));
    OK(gguf_set_i32(w, "tokenizer.ggml.eos_token_id", 2));
    OK(gguf_set_str(w, "tokenizer.chat_template", "{{ messages }}"));
    static uint8_t q[4 * 144];
    uint64_t ne[2] = {256, 4};
    OK(gguf_add_tensor(w, "blk.0.ffn_up.weight", GGML_TYPE_Q4_K, 2, ne, q));
    static float v[256];
    uint64_t ne1[1] = {256};
    OK(gguf_add_tensor(w, "output_norm.weight", GGML_TYPE_F32, 1, ne1, v));
    OK(gguf_add_tensor(w, "odd\nname", GGML_TYPE_F32, 1, ne1, v));
    char path[300];
    snprintf(path, sizeof path, "%s/odd.gguf", tmpdir);
    OK(gguf_writer_write(w, path));
    gguf_writer_free(w);

    llmos_buf out = {0}, err = {0};
    assert_int_equal(run(&out, &err, "model info '%s'", path), 0);
    assert_contains(&out, "name:          bad\\xff\\nname\n");
    assert_contains(&out, "  bos            1 '\\xff\\xfe'\n");
    assert_contains(&out, "  eos            2 '<|im_end|>'\n");
    assert_contains(&out, "  chat template  present (14 bytes)\n");
    assert_contains(&out, "  rope.freq_base                     1e+06\n");
    assert_contains(&out, "  vocab size                         3\n");
    assert_contains(&out, "  Q4_K         1 tensors           1024 params");
    assert_contains(&out, "parameters:    1.54K (1536)");
    assert_contains(&out, "  odd\\nname                                F32      [256]");
    assert_contains(&out, "[256, 4]");

    assert_int_equal(run(&out, &err, "model info --json '%s'", path), 0);
    json_t *j;
    OK(ljson_parse_text(out.data, out.len, "model info output", 0, &j));
    assert_string_equal(ljson_get_string(j, "name", ""), "bad\\xff\\x0aname");
    json_t *tok = ljson_get_object(j, "tokenizer");
    assert_string_equal(ljson_get_string(tok, "bos_token", ""), "\\xff\\xfe");
    assert_int_equal(ljson_get_int(tok, "chat_template_length", 0), 14);
    assert_int_equal(ljson_get_int(ljson_get_object(j, "hyperparameters"), "block_count", 0), 2);
    assert_true(
        json_is_null(json_object_get(ljson_get_object(j, "hyperparameters"), "context_length")));
    assert_int_equal(
        ljson_get_int(ljson_get_object(ljson_get_object(j, "size_by_type"), "Q4_K"), "bytes", 0),
        576);
    json_decref(j);
    buf_free(&out);
    buf_free(&err);
}

static void test_errors(void **state)
{
    (void)state;
    llmos_buf out = {0}, err = {0};
    assert_int_equal(run(&out, &err, "model"), 2);
    assert_contains(&err, "missing SUBCOMMAND");
    assert_int_equal(run(&out, &err, "model frobnicate x"), 2);
    assert_contains(&err, "unknown subcommand 'frobnicate'");
    assert_contains(&err, "info");
    assert_int_equal(run(&out, &err, "model info"), 2);
    assert_contains(&err, "missing FILE");
    assert_int_equal(run(&out, &err, "model info --yaml x.gguf"), 2);
    assert_contains(&err, "unknown option '--yaml'");
    assert_int_equal(run(&out, &err, "model info a.gguf b.gguf"), 2);
    assert_int_equal(run(&out, &err, "model info '%s/does-not-exist.gguf'", tmpdir), 1);
    assert_contains(&err, "does-not-exist.gguf: cannot open");
    assert_int_equal(out.len, 0);
    assert_int_equal(run(&out, &err, "model help info"), 0);
    assert_contains(&out, "usage: llmos model info FILE [--json]");

    /* a damaged file: the error names the offset and nothing goes to stdout */
    gguf_writer *w;
    OK(gguf_writer_new(&w));
    static float v[64];
    uint64_t ne[1] = {64};
    OK(gguf_add_tensor(w, "x", GGML_TYPE_F32, 1, ne, v));
    llmos_buf b = {0};
    OK(gguf_writer_to_buf(w, &b));
    gguf_writer_free(w);
    char path[300];
    snprintf(path, sizeof path, "%s/cut.gguf", tmpdir);
    OK(llmos_file_write_atomic(path, b.data, b.len - 100, 0644));
    assert_int_equal(run(&out, &err, "model info --json '%s'", path), 1);
    assert_contains(&err, "llmos: error: ");
    assert_contains(&err, "cut.gguf: offset ");
    assert_contains(&err, "tensor 0 'x': data runs past end of file");
    assert_int_equal(out.len, 0);
    buf_free(&b);
    buf_free(&out);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories_text), cmocka_unit_test(test_stories_json),
        cmocka_unit_test(test_vocab_json),   cmocka_unit_test(test_written_file),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
