/* test_bench.c - `llmos bench`'s command line: each mistake exits 2 with a message that says
 * what the option takes (and what it got), and the help lists every option; and for every
 * architecture, a random model made by `llmos model make-random` benches (an encoder in
 * embeddings per second) and a decoder generates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

static llmos_buf out, err;

static void test_usage_errors(void **state)
{
    (void)state;
    static const struct {
        const char *args, *says;
    } cases[] = {
        {"bench", "no model given: name the GGUF file to measure with --model FILE"},
        {"bench model.gguf", "unexpected argument 'model.gguf' (give the model as --model FILE)"},
        {"bench --model", "--model takes a GGUF model FILE"},
        {"bench --model m.gguf -p", "-p takes a token count from 0 to 65536"},
        {"bench --model m.gguf -n -1", "-n takes a token count from 0 to 65536, not '-1'"},
        {"bench --model m.gguf -p 70000", "-p takes a token count from 0 to 65536, not '70000'"},
        {"bench --model m.gguf -t 0", "-t takes a thread count from 1 to 1024, not '0'"},
        {"bench --model m.gguf -r x", "-r takes a repetition count from 1 to 1000, not 'x'"},
        {"bench --model m.gguf --bogus", "unknown option '--bogus'"},
        {"bench --model m.gguf -p 0 -n 0", "nothing to measure (-p 0 and -n 0)"},
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(cases); i++) {
        assert_int_equal(tu_run_llmos(&out, &err, "%s", cases[i].args), 2);
        if (!strstr(err.data, cases[i].says))
            fail_msg("llmos %s: expected '%s' in: %s", cases[i].args, cases[i].says, err.data);
        assert_non_null(strstr(err.data, "Try 'llmos help bench' for usage."));
    }
}

static void test_help_lists_options(void **state)
{
    (void)state;
    assert_int_equal(tu_run_llmos(&out, &err, "bench --help"), 0);
    const char *options[] = {"--model FILE", "-p N", "-n N", "-t THREADS", "-r REPS", "--json"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(options); i++) {
        char line[64];
        snprintf(line, sizeof line, "\n  %s ", options[i]);
        if (!strstr(out.data, line))
            fail_msg("bench --help does not describe %s", options[i]);
    }
}

static void test_every_architecture_benches(void **state)
{
    (void)state;
    char spm[4096], bert[4096];
    tu_testdata_path(spm, sizeof spm, "vocab/ggml-vocab-llama-spm.gguf");
    tu_testdata_path(bert, sizeof bert, "vocab/ggml-vocab-bert-bge.gguf");
    const char *archs[] = {"llama",  "qwen2", "qwen3", "gemma2",
                           "gemma3", "phi3",  "bert",  "nomic-bert"};
    char path[64];
    snprintf(path, sizeof path, "/tmp/llmos-bench-arch-%d.gguf", (int)getpid());
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(archs); i++) {
        bool enc = strstr(archs[i], "bert") != NULL;
        int rc = tu_run_llmos(&out, &err,
                              "model make-random --dims 64,2,4,2,128,64 --arch %s --vocab-from "
                              "'%s' --type f32 %s",
                              archs[i], enc ? bert : spm, path);
        if (rc != 0)
            fail_msg("make-random --arch %s: %s", archs[i], err.data);
        rc = tu_run_llmos(&out, &err, "bench --model %s -p 16 -n 8 -r 1 -t 1 --json", path);
        if (rc != 0)
            fail_msg("bench %s: %s", archs[i], err.data);
        const char *tests[2] = {enc ? "\"emb16x1\"" : "\"pp16\"", enc ? "\"emb16x32\"" : "\"tg8\""};
        for (int k = 0; k < 2; k++)
            if (!strstr(out.data, tests[k]))
                fail_msg("bench %s: no %s in %s", archs[i], tests[k], out.data);
        rc = tu_run_llmos(&out, &err, "generate --model %s -n 4 --temp 0 --prompt hello", path);
        if (enc ? rc == 0 || !strstr(err.data, "embedding model") : rc != 0)
            fail_msg("generate with %s: exit %d, %s", archs[i], rc, err.data);
    }
    unlink(path);
}

static int teardown(void **state)
{
    (void)state;
    buf_free(&out);
    buf_free(&err);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_lists_options),
        cmocka_unit_test(test_every_architecture_benches),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
