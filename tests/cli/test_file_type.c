/* test_file_type.c - what a quantized file is called: `llmos model quantize` makes a real
 * Q4_K_M file of the shared tiny model, and `llmos model info` (text and JSON) and
 * `llmos bench` (table and JSON) must call it Q4_K_M. The tiny model's rows (64) are too short
 * for Q4_K's 256-blocks, so most of its matrices are Q5_0 and only general.file_type says
 * Q4_K_M: the case that made bench print "Q5_0". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/json.h"
#include "testutil.h"

static char dir[256], q4km[300];
static llmos_buf out, err;

static int setup(void **state)
{
    (void)state;
    char model[4096];
    if (!tu_testdata_path(model, sizeof model, "models/stories260K.gguf"))
        return 0;
    if (!tu_mkdtemp("file-type", dir, sizeof dir))
        return -1;
    snprintf(q4km, sizeof q4km, "%s/stories-q4_k_m.gguf", dir);
    return tu_run_llmos(NULL, NULL, "model quantize '%s' '%s' Q4_K_M", model, q4km) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (dir[0])
        tu_rmrf(dir);
    buf_free(&out);
    buf_free(&err);
    return 0;
}

static void need_file(void)
{
    if (!q4km[0])
        skip();
}

static void test_info_text(void **state)
{
    (void)state;
    need_file();
    assert_int_equal(tu_run_llmos(&out, &err, "model info '%s'", q4km), 0);
    const char *line = strstr(out.data, "general.file_type");
    assert_non_null(line);
    const char *eol = strchr(line, '\n');
    assert_non_null(eol);
    char text[200];
    snprintf(text, sizeof text, "%.*s", (int)(eol - line), line);
    assert_non_null(strstr(text, "uint32 = Q4_K_M (15)"));
    /* ... while the tensor types are what they are */
    assert_non_null(strstr(out.data, "Q5_0"));
}

static void test_info_json(void **state)
{
    (void)state;
    need_file();
    assert_int_equal(tu_run_llmos(&out, &err, "model info --json '%s'", q4km), 0);
    json_error_t je;
    json_t *j = json_loadb(out.data, out.len, 0, &je);
    assert_non_null(j);
    const char *name = json_string_value(json_object_get(j, "file_type_name"));
    assert_non_null(name);
    assert_string_equal(name, "Q4_K_M");
    json_t *meta = json_object_get(j, "metadata");
    assert_int_equal(json_integer_value(json_object_get(meta, "general.file_type")), 15);
    json_decref(j);
}

static void test_bench_label(void **state)
{
    (void)state;
    need_file();
    assert_int_equal(tu_run_llmos(&out, &err, "bench --model '%s' -p 8 -n 4 -r 1 -t 1", q4km), 0);
    assert_non_null(strstr(out.data, "| llama Q4_K_M "));
    assert_null(strstr(out.data, "Q5_0"));
    assert_int_equal(
        tu_run_llmos(&out, &err, "bench --model '%s' -p 8 -n 0 -r 1 -t 1 --json", q4km), 0);
    json_error_t je;
    json_t *j = json_loadb(out.data, out.len, JSON_DISABLE_EOF_CHECK, &je);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "Q4_K_M");
    json_decref(j);
}

/* The shared model says F32 (0); a file without general.file_type (make-random writes none) is
 * labelled by the type of its weights, and `model info` has no name to give. */
static void test_f32_and_no_file_type(void **state)
{
    (void)state;
    need_file();
    char model[4096], random[400];
    assert_true(tu_testdata_path(model, sizeof model, "models/stories260K.gguf"));
    assert_int_equal(tu_run_llmos(&out, &err, "model info '%s'", model), 0);
    assert_non_null(strstr(out.data, "uint32 = F32 (0)"));
    assert_int_equal(tu_run_llmos(&out, &err, "bench --model '%s' -p 8 -n 0 -r 1 -t 1", model), 0);
    assert_non_null(strstr(out.data, "| llama F32 "));

    snprintf(random, sizeof random, "%s/random-bf16.gguf", dir);
    assert_int_equal(tu_run_llmos(NULL, &err,
                                  "model make-random --dims 64,1,4,4,128 --type bf16 "
                                  "--vocab-from '%s' '%s'",
                                  model, random),
                     0);
    assert_int_equal(tu_run_llmos(&out, &err, "bench --model '%s' -p 8 -n 0 -r 1 -t 1", random), 0);
    assert_non_null(strstr(out.data, "| llama BF16 "));
    assert_int_equal(tu_run_llmos(&out, &err, "model info --json '%s'", random), 0);
    json_error_t je;
    json_t *j = json_loadb(out.data, out.len, 0, &je);
    assert_non_null(j);
    assert_true(json_is_null(json_object_get(j, "file_type_name")));
    assert_null(json_object_get(json_object_get(j, "metadata"), "general.file_type"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_info_text),
        cmocka_unit_test(test_info_json),
        cmocka_unit_test(test_bench_label),
        cmocka_unit_test(test_f32_and_no_file_type),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
