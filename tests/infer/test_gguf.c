/*
 * test_gguf.c - the GGUF reader and writer.
 *
 * Round trips of every value type and of tensors (from memory, from a file, streamed by a
 * callback), a write stopped by its cancel flag, the typed getters and their defaults, the
 * real files in the shared test data (a small trained model and the tokenizer vocabularies),
 * and malformed files: every truncation of a small file and hand-built headers with each kind
 * of corruption the reader must refuse, each with the error code and a message that names the
 * offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/gguf.h"
#include "testutil.h"

#define OK(x) assert_int_equal((x), LLMOS_OK)

/* ---- helpers ------------------------------------------------------------------------------ */

/* Little-endian pieces of hand-made GGUF files. */
static void put(llmos_buf *b, const void *p, size_t n)
{
    OK(buf_append(b, p, n));
}
static void put_u32(llmos_buf *b, uint32_t v)
{
    put(b, &v, 4);
}
static void put_u64(llmos_buf *b, uint64_t v)
{
    put(b, &v, 8);
}
static void put_str(llmos_buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_header(llmos_buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}
static void put_kv_u32(llmos_buf *b, const char *key, uint32_t v)
{
    put_str(b, key);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}
static void put_tinfo(llmos_buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                      uint32_t type, uint64_t offset)
{
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        put_u64(b, ne[d]);
    put_u32(b, type);
    put_u64(b, offset);
}
static void put_pad(llmos_buf *b, size_t a)
{
    while (b->len % a)
        OK(buf_putc(b, 0));
}
static void put_zeros(llmos_buf *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        OK(buf_putc(b, 0));
}

/* Open b's bytes; expect failure with `code` and a message holding each of the given
 * fragments (NULL-terminated list). */
static void expect_fail(const llmos_buf *b, llmos_err code, ...)
{
    gguf_file *f = (gguf_file *)1;
    llmos_err err = gguf_open_memory(b->data, b->len, "bad.gguf", &f);
    const char *msg = llmos_errmsg();
    if (err != code)
        fail_msg("expected error %d, got %d: %s", code, err, msg);
    assert_null(f);
    va_list ap;
    va_start(ap, code);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
        if (!strstr(msg, frag))
            fail_msg("message lacks '%s': %s", frag, msg);
    va_end(ap);
    assert_non_null(strstr(msg, "bad.gguf: "));
}

/* A writer holding one value of every type, nested arrays, and three tensors. */
static float tensor_a[4 * 3];
static uint8_t tensor_q[2 * 34];
static uint16_t tensor_h[64];

static gguf_writer *full_writer(void)
{
    gguf_writer *w;
    OK(gguf_writer_new(&w));
    OK(gguf_set_str(w, "general.architecture", "llama"));
    OK(gguf_set_str(w, "general.name", "round trip"));
    OK(gguf_set_u8(w, "t.u8", 250));
    OK(gguf_set_i8(w, "t.i8", -120));
    OK(gguf_set_u16(w, "t.u16", 65000));
    OK(gguf_set_i16(w, "t.i16", -32000));
    OK(gguf_set_u32(w, "llama.block_count", 4000000000u));
    OK(gguf_set_i32(w, "t.i32", -2000000000));
    OK(gguf_set_u64(w, "t.u64", UINT64_MAX));
    OK(gguf_set_i64(w, "t.i64", INT64_MIN));
    OK(gguf_set_f32(w, "t.f32", 1.5f));
    OK(gguf_set_f64(w, "t.f64", -2.25));
    OK(gguf_set_bool(w, "t.bool", true));
    OK(gguf_set_strn(w, "t.str_nul", "a\0b", 3));
    OK(gguf_set_str(w, "t.empty", ""));
    const char *strs[] = {"<s>", "", "h\xc3\xa9llo", "x y"};
    OK(gguf_set_arr_str(w, "t.strs", strs, NULL, 4));
    int32_t i32s[5] = {-1, 0, 1, INT32_MAX, INT32_MIN};
    OK(gguf_set_arr(w, "t.i32s", GGUF_TYPE_INT32, i32s, 5));
    float f32s[3] = {0.5f, -1e30f, 3.0f};
    OK(gguf_set_arr(w, "t.f32s", GGUF_TYPE_FLOAT32, f32s, 3));
    uint64_t u64s[2] = {7, UINT64_MAX};
    OK(gguf_set_arr(w, "t.u64s", GGUF_TYPE_UINT64, u64s, 2));
    uint8_t bools[3] = {1, 0, 1};
    OK(gguf_set_arr(w, "t.bools", GGUF_TYPE_BOOL, bools, 3));
    OK(gguf_set_arr(w, "t.empty_arr", GGUF_TYPE_UINT8, NULL, 0));
    /* [[1, 2] (uint16), ["hi"], [] (array of arrays)] */
    llmos_buf n = {0};
    put_u32(&n, GGUF_TYPE_ARRAY);
    put_u64(&n, 3);
    put_u32(&n, GGUF_TYPE_UINT16);
    put_u64(&n, 2);
    uint16_t two[2] = {1, 2};
    put(&n, two, 4);
    put_u32(&n, GGUF_TYPE_STRING);
    put_u64(&n, 1);
    put_str(&n, "hi");
    put_u32(&n, GGUF_TYPE_ARRAY);
    put_u64(&n, 0);
    OK(gguf_set_encoded(w, "t.nested", GGUF_TYPE_ARRAY, n.data, n.len));
    buf_free(&n);

    for (size_t i = 0; i < LLMOS_ARRAY_LEN(tensor_a); i++)
        tensor_a[i] = (float)i * 0.25f - 1;
    for (size_t i = 0; i < sizeof tensor_q; i++)
        tensor_q[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(tensor_h); i++)
        tensor_h[i] = quant_fp32_to_fp16((float)i);
    uint64_t ne_a[2] = {4, 3}, ne_q[1] = {64}, ne_h[4] = {2, 4, 2, 4};
    OK(gguf_add_tensor(w, "a.weight", GGML_TYPE_F32, 2, ne_a, tensor_a));
    OK(gguf_add_tensor(w, "q.weight", GGML_TYPE_Q8_0, 1, ne_q, tensor_q));
    OK(gguf_add_tensor(w, "h.weight", GGML_TYPE_F16, 4, ne_h, tensor_h));
    return w;
}

static void check_full(const gguf_file *f, uint32_t alignment, size_t n_tensors)
{
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), alignment);
    assert_int_equal(gguf_data_offset(f) % alignment, 0);
    assert_string_equal(gguf_architecture(f), "llama");
    assert_string_equal(gguf_get_str(f, "general.name", NULL), "round trip");
    assert_int_equal(gguf_key(f, 0)[0], 'g');
    assert_null(gguf_key(f, gguf_n_kv(f)));

    int64_t v;
    uint64_t u;
    double d;
    bool b;
    assert_true(gguf_val_i64(f, gguf_find_key(f, "t.u8"), &v) && v == 250);
    assert_true(gguf_val_i64(f, gguf_find_key(f, "t.i8"), &v) && v == -120);
    assert_true(gguf_val_i64(f, gguf_find_key(f, "t.u16"), &v) && v == 65000);
    assert_true(gguf_val_i64(f, gguf_find_key(f, "t.i16"), &v) && v == -32000);
    assert_true(gguf_val_i64(f, gguf_find_arch_key(f, "block_count"), &v) && v == 4000000000);
    assert_true(gguf_val_i64(f, gguf_find_key(f, "t.i32"), &v) && v == -2000000000);
    assert_false(gguf_val_i64(f, gguf_find_key(f, "t.u64"), &v)); /* above INT64_MAX */
    assert_true(gguf_val_u64(f, gguf_find_key(f, "t.u64"), &u) && u == UINT64_MAX);
    assert_true(gguf_val_i64(f, gguf_find_key(f, "t.i64"), &v) && v == INT64_MIN);
    assert_false(gguf_val_u64(f, gguf_find_key(f, "t.i64"), &u));
    assert_true(gguf_val_f64(f, gguf_find_key(f, "t.f32"), &d) && d == 1.5);
    assert_true(gguf_val_f64(f, gguf_find_key(f, "t.f64"), &d) && d == -2.25);
    assert_true(gguf_val_bool(f, gguf_find_key(f, "t.bool"), &b) && b);
    assert_false(gguf_val_bool(f, gguf_find_key(f, "t.u8"), &b));
    assert_int_equal(gguf_val_type(f, gguf_find_key(f, "t.i16")), GGUF_TYPE_INT16);
    assert_int_equal(gguf_val_type(f, -1), GGUF_TYPE_COUNT);
    size_t len;
    const char *s = gguf_val_str(f, gguf_find_key(f, "t.str_nul"), &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);
    assert_string_equal(gguf_val_str(f, gguf_find_key(f, "t.empty"), &len), "");
    assert_int_equal(len, 0);

    int64_t id = gguf_find_key(f, "t.strs");
    assert_int_equal(gguf_val_type(f, id), GGUF_TYPE_ARRAY);
    assert_int_equal(gguf_arr_type(f, id), GGUF_TYPE_STRING);
    assert_int_equal(gguf_arr_len(f, id), 4);
    s = gguf_arr_str(f, id, 2, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "h\xc3\xa9llo", 6);
    assert_non_null(gguf_arr_str(f, id, 1, &len));
    assert_int_equal(len, 0);
    assert_null(gguf_arr_str(f, id, 4, &len));
    assert_false(gguf_arr_i64(f, id, 0, &v));

    id = gguf_find_key(f, "t.i32s");
    assert_int_equal(gguf_arr_len(f, id), 5);
    assert_true(gguf_arr_i64(f, id, 3, &v) && v == INT32_MAX);
    assert_true(gguf_arr_i64(f, id, 4, &v) && v == INT32_MIN);
    assert_false(gguf_arr_i64(f, id, 5, &v));
    size_t nbytes;
    const uint8_t *raw = gguf_val_data(f, id, &nbytes);
    assert_int_equal(nbytes, 20);
    int32_t e0;
    memcpy(&e0, raw, 4);
    assert_int_equal(e0, -1);

    id = gguf_find_key(f, "t.f32s");
    assert_true(gguf_arr_f64(f, id, 1, &d) && d == (double)-1e30f);
    assert_false(gguf_arr_i64(f, id, 1, &v));
    id = gguf_find_key(f, "t.u64s");
    assert_false(gguf_arr_i64(f, id, 1, &v));
    assert_true(gguf_arr_i64(f, id, 0, &v) && v == 7);
    assert_true(gguf_arr_f64(f, id, 1, &d) && d == 18446744073709551615.0);
    id = gguf_find_key(f, "t.bools");
    raw = gguf_val_data(f, id, &nbytes);
    assert_int_equal(nbytes, 3);
    assert_memory_equal(raw, "\1\0\1", 3);
    assert_int_equal(gguf_arr_len(f, gguf_find_key(f, "t.empty_arr")), 0);
    assert_int_equal(gguf_arr_type(f, gguf_find_key(f, "t.empty_arr")), GGUF_TYPE_UINT8);

    id = gguf_find_key(f, "t.nested");
    assert_int_equal(gguf_arr_type(f, id), GGUF_TYPE_ARRAY);
    assert_int_equal(gguf_arr_len(f, id), 3);
    int64_t a0 = gguf_arr_sub(f, id, 0), a1 = gguf_arr_sub(f, id, 1), a2 = gguf_arr_sub(f, id, 2);
    assert_int_equal(gguf_arr_sub(f, id, 3), -1);
    assert_int_equal(gguf_arr_type(f, a0), GGUF_TYPE_UINT16);
    assert_true(gguf_arr_i64(f, a0, 1, &v) && v == 2);
    s = gguf_arr_str(f, a1, 0, &len);
    assert_int_equal(len, 2);
    assert_memory_equal(s, "hi", 2);
    assert_int_equal(gguf_arr_type(f, a2), GGUF_TYPE_ARRAY);
    assert_int_equal(gguf_arr_len(f, a2), 0);

    assert_int_equal(gguf_n_tensors(f), n_tensors);
    const gguf_tensor *t = gguf_find_tensor(f, "a.weight");
    assert_non_null(t);
    assert_ptr_equal(t, gguf_tensor_at(f, 0));
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 4);
    assert_int_equal(t->ne[1], 3);
    assert_int_equal(t->ne[2], 1);
    assert_int_equal(t->type, GGML_TYPE_F32);
    assert_int_equal(t->n_elements, 12);
    assert_int_equal(t->size, 48);
    assert_memory_equal(t->data, tensor_a, sizeof tensor_a);
    t = gguf_find_tensor(f, "q.weight");
    assert_int_equal(t->type, GGML_TYPE_Q8_0);
    assert_int_equal(t->size, 68);
    assert_memory_equal(t->data, tensor_q, sizeof tensor_q);
    t = gguf_tensor_at(f, 2);
    assert_string_equal(t->name, "h.weight");
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[3], 4);
    assert_int_equal(t->n_elements, 64);
    assert_memory_equal(t->data, tensor_h, sizeof tensor_h);
    for (size_t i = 0; i < 3; i++) {
        t = gguf_tensor_at(f, i);
        assert_int_equal(((const uint8_t *)t->data - gguf_bytes(f)) % alignment, 0);
        assert_int_equal(gguf_find_tensor_index(f, t->name), (int64_t)i);
    }
    assert_null(gguf_tensor_at(f, n_tensors));
    assert_null(gguf_find_tensor(f, "nope"));
}

/* ---- round trips -------------------------------------------------------------------------- */

static void test_round_trip_memory(void **state)
{
    (void)state;
    gguf_writer *w = full_writer();
    llmos_buf b = {0};
    OK(gguf_writer_to_buf(w, &b));
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "rt.gguf", &f));
    check_full(f, 32, 3);
    assert_string_equal(gguf_name(f), "rt.gguf");
    assert_int_equal(gguf_size(f), b.len);
    gguf_close(f);

    /* a larger alignment moves the data and every tensor to multiples of it */
    OK(gguf_set_u32(w, "general.alignment", 256));
    buf_clear(&b);
    OK(gguf_writer_to_buf(w, &b));
    OK(gguf_open_memory(b.data, b.len, "rt.gguf", &f));
    check_full(f, 256, 3);
    gguf_close(f);
    assert_int_equal(gguf_set_u32(w, "general.alignment", 48), LLMOS_ERR_INVALID);
    assert_int_equal(gguf_set_str(w, "general.alignment", "32"), LLMOS_ERR_INVALID);
    buf_free(&b);
    gguf_writer_free(w);
}

static void test_writer_replace_remove_and_copy(void **state)
{
    (void)state;
    gguf_writer *w = full_writer();
    OK(gguf_set_str(w, "general.name", "renamed")); /* replace in place */
    gguf_remove_key(w, "t.f64");
    gguf_remove_key(w, "not.there");
    uint64_t ne[1] = {4};
    assert_int_equal(gguf_add_tensor(w, "a.weight", GGML_TYPE_F32, 1, ne, tensor_a),
                     LLMOS_ERR_EXISTS);
    uint64_t ne_bad[1] = {33};
    assert_int_equal(gguf_add_tensor(w, "x", GGML_TYPE_Q8_0, 1, ne_bad, tensor_q),
                     LLMOS_ERR_INVALID);
    assert_int_equal(gguf_add_tensor(w, "x", (ggml_type)4, 1, ne, tensor_q), LLMOS_ERR_INVALID);
    assert_int_equal(gguf_add_tensor(w, "x", GGML_TYPE_F32, 5, ne, tensor_q), LLMOS_ERR_INVALID);
    assert_int_equal(gguf_set_arr(w, "x", GGUF_TYPE_STRING, tensor_q, 1), LLMOS_ERR_INVALID);
    llmos_buf b = {0};
    OK(gguf_writer_to_buf(w, &b));
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "rt.gguf", &f));
    assert_string_equal(gguf_get_str(f, "general.name", NULL), "renamed");
    assert_int_equal(gguf_find_key(f, "general.name"), 1);
    assert_int_equal(gguf_find_key(f, "t.f64"), -1);

    /* copy every value into a second writer: the bytes come out the same */
    gguf_writer *w2;
    OK(gguf_writer_new(&w2));
    for (size_t i = 0; i < gguf_n_kv(f); i++)
        OK(gguf_set_from(w2, gguf_key(f, i), f, (int64_t)i));
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        OK(gguf_add_tensor(w2, t->name, t->type, t->n_dims, t->ne, t->data));
    }
    llmos_buf b2 = {0};
    OK(gguf_writer_to_buf(w2, &b2));
    assert_int_equal(b2.len, b.len);
    assert_memory_equal(b2.data, b.data, b.len);
    gguf_close(f);
    buf_free(&b);
    buf_free(&b2);
    gguf_writer_free(w);
    gguf_writer_free(w2);
}

/* A callback that writes tensor i as bytes (i + k) in pieces of 7; `short_by` leaves some out. */
typedef struct stream_ctx {
    uint64_t sizes[4];
    uint64_t short_by;
    int calls;
} stream_ctx;

static llmos_err produce(void *ctx, size_t index, gguf_stream *out)
{
    stream_ctx *c = ctx;
    c->calls++;
    uint64_t n = c->sizes[index] - c->short_by;
    uint8_t piece[7];
    for (uint64_t k = 0; k < n; k += sizeof piece) {
        size_t m = n - k < sizeof piece ? (size_t)(n - k) : sizeof piece;
        for (size_t j = 0; j < m; j++)
            piece[j] = (uint8_t)(index + k + j);
        llmos_err err = gguf_stream_write(out, piece, m);
        if (err)
            return err;
    }
    return LLMOS_OK;
}

static void test_write_file_and_stream(void **state)
{
    (void)state;
    char dir[] = "/tmp/llmos-test-gguf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/model.gguf", dir);

    gguf_writer *w = full_writer();
    stream_ctx c = {.sizes = {0, 0, 0, 0}};
    uint64_t ne[2] = {256, 3};
    c.sizes[3] = 3 * 144; /* Q4_K: 256 elements in 144 bytes */
    OK(gguf_add_tensor_fn(w, "s.weight", GGML_TYPE_Q4_K, 2, ne, produce, &c));
    OK(gguf_writer_write(w, path));
    assert_int_equal(c.calls, 1);
    gguf_file *f;
    OK(gguf_open(path, &f));
    check_full(f, 32, 4);
    const gguf_tensor *t = gguf_find_tensor(f, "s.weight");
    assert_non_null(t);
    assert_int_equal(t->size, 432);
    for (uint64_t k = 0; k < t->size; k++)
        assert_int_equal(((const uint8_t *)t->data)[k], (uint8_t)(3 + k));
    assert_int_equal((uintptr_t)t->data % 32, 0); /* mapped: aligned in memory too */
    gguf_close(f);

    /* a callback that delivers too little fails the write and leaves the old file */
    struct stat before, after;
    assert_int_equal(stat(path, &before), 0);
    c.short_by = 5;
    assert_int_equal(gguf_writer_write(w, path), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "s.weight"));
    assert_int_equal(stat(path, &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    OK(gguf_open(path, &f));
    gguf_close(f);
    /* ... and one that delivers too much is stopped at the first excess byte */
    c.short_by = 0;
    c.sizes[3] += 1;
    assert_int_equal(gguf_writer_write(w, path), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "more than"));
    /* no temporary is left behind */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);

    unlink(path);
    rmdir(dir);
    gguf_writer_free(w);
    assert_int_equal(gguf_open(path, &f), LLMOS_ERR_NOT_FOUND);
}

/* A callback for one 8 MiB F32 tensor that asks the writer to stop (sets *flag) after its first
 * MiB, as a SIGINT handler would, and keeps writing. */
static llmos_err produce_then_cancel(void *ctx, size_t index, gguf_stream *out)
{
    (void)index;
    atomic_bool *flag = ctx;
    static uint8_t mib[1 << 20];
    for (int k = 0; k < 8; k++) {
        if (k == 1)
            atomic_store(flag, true);
        llmos_err err = gguf_stream_write(out, mib, sizeof mib);
        if (err)
            return err;
    }
    return LLMOS_OK;
}

/* A symbolic link planted at the writer's temporary name, pointing to a file of the victim's:
 * the model goes to its path, and the victim keeps its bytes. */
static void test_write_ignores_planted_symlink(void **state)
{
    (void)state;
    char dir[] = "/tmp/llmos-test-gguf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], victim[256], planted[300];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    snprintf(planted, sizeof planted, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(victim, "wb");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    assert_int_equal(symlink(victim, planted), 0);

    gguf_writer *w = full_writer();
    OK(gguf_writer_write(w, path));
    gguf_writer_free(w);
    gguf_file *g;
    OK(gguf_open(path, &g));
    check_full(g, 32, 3);
    gguf_close(g);
    struct stat st;
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_write_cancelled(void **state)
{
    (void)state;
    char dir[] = "/tmp/llmos-test-gguf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], cmd[300];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    OK(llmos_file_write_atomic(path, "old", 3, 0644));

    atomic_bool flag = false;
    gguf_writer *w = full_writer();
    uint64_t ne[2] = {1024, 2048};
    OK(gguf_add_tensor_fn(w, "big.weight", GGML_TYPE_F32, 2, ne, produce_then_cancel, &flag));
    gguf_writer_set_cancel(w, &flag);
    assert_int_equal(gguf_writer_write(w, path), LLMOS_ERR_CANCELLED);
    assert_true(atomic_load(&flag));
    assert_non_null(strstr(llmos_errmsg(), "model.gguf: writing stopped on request"));
    /* a flag already set stops before anything is written */
    assert_int_equal(gguf_writer_write(w, path), LLMOS_ERR_CANCELLED);
    /* the old file is kept and no temporary is left behind */
    llmos_buf b = {0};
    OK(llmos_file_read_all(path, 100, &b));
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "old", 3);
    buf_free(&b);
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    /* without the flag the same writer completes */
    atomic_store(&flag, false);
    gguf_writer_set_cancel(w, NULL);
    OK(gguf_writer_write(w, path));
    gguf_file *f;
    OK(gguf_open(path, &f));
    assert_non_null(gguf_find_tensor(f, "big.weight"));
    gguf_close(f);

    unlink(path);
    rmdir(dir);
    gguf_writer_free(w);
}

/* ---- getters ------------------------------------------------------------------------------ */

static void test_getters(void **state)
{
    (void)state;
    gguf_writer *w;
    OK(gguf_writer_new(&w));
    OK(gguf_set_u8(w, "small", 7));
    OK(gguf_set_i64(w, "big", 5000000000));
    OK(gguf_set_i32(w, "neg", -3));
    OK(gguf_set_f64(w, "eps", 1e-6));
    OK(gguf_set_str(w, "s", "text"));
    OK(gguf_set_bool(w, "yes", true));
    llmos_buf b = {0};
    OK(gguf_writer_to_buf(w, &b));
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "g.gguf", &f));

    assert_int_equal(gguf_get_u32(f, "small", 1), 7);
    assert_int_equal(gguf_get_u32(f, "big", 1), 1); /* does not fit */
    assert_int_equal(gguf_get_u32(f, "neg", 1), 1);
    assert_int_equal(gguf_get_u32(f, "s", 1), 1);
    assert_int_equal(gguf_get_u32(f, "missing", 9), 9);
    assert_int_equal(gguf_get_i64(f, "big", 0), 5000000000);
    assert_int_equal(gguf_get_i64(f, "neg", 0), -3);
    assert_int_equal(gguf_get_i64(f, "eps", 4), 4);
    assert_true(gguf_get_f32(f, "eps", 0) == 1e-6f);
    assert_true(gguf_get_f32(f, "small", 0) == 7.0f);
    assert_true(gguf_get_f32(f, "s", 2.5f) == 2.5f);
    assert_true(gguf_get_bool(f, "yes", false));
    assert_false(gguf_get_bool(f, "small", false));
    assert_string_equal(gguf_get_str(f, "s", "d"), "text");
    assert_string_equal(gguf_get_str(f, "small", "d"), "d");
    assert_null(gguf_architecture(f));
    assert_int_equal(gguf_find_arch_key(f, "block_count"), -1);

    uint32_t u;
    int64_t i;
    float x;
    const char *s;
    OK(gguf_require_u32(f, "small", &u));
    assert_int_equal(u, 7);
    assert_int_equal(gguf_require_u32(f, "missing", &u), LLMOS_ERR_FORMAT);
    assert_string_equal(llmos_errmsg(), "g.gguf: key 'missing' is missing");
    assert_int_equal(gguf_require_u32(f, "s", &u), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "key 's' has type string, expected an integer"));
    assert_int_equal(gguf_require_u32(f, "big", &u), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "value 5000000000 does not fit in uint32"));
    assert_int_equal(gguf_require_u32(f, "neg", &u), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "value -3 does not fit"));
    OK(gguf_require_i64(f, "neg", &i));
    assert_int_equal(i, -3);
    assert_int_equal(gguf_require_i64(f, "eps", &i), LLMOS_ERR_FORMAT);
    OK(gguf_require_f32(f, "eps", &x));
    assert_true(x == 1e-6f);
    assert_int_equal(gguf_require_f32(f, "yes", &x), LLMOS_ERR_FORMAT);
    OK(gguf_require_str(f, "s", &s));
    assert_string_equal(s, "text");
    assert_int_equal(gguf_require_str(f, "small", &s), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "offset "));
    gguf_close(f);
    gguf_close(NULL);
    gguf_writer_free(NULL);
    buf_free(&b);
    gguf_writer_free(w);
}

/* ---- malformed files ---------------------------------------------------------------------- */

/* Every prefix of a valid file shorter than its last tensor's end fails cleanly; the
 * trailing padding after the last tensor is not needed. */
static void test_truncation_at_every_offset(void **state)
{
    (void)state;
    gguf_writer *w = full_writer();
    llmos_buf b = {0};
    OK(gguf_writer_to_buf(w, &b));
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "t.gguf", &f));
    uint64_t end = 0;
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t e = gguf_data_offset(f) + t->offset + t->size;
        end = e > end ? e : end;
    }
    gguf_close(f);
    for (size_t n = 0; n < b.len; n++) {
        /* an exact-size heap copy, so ASan sees any read past the end */
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.data, n);
        llmos_err err = gguf_open_memory(copy, n, "t.gguf", &f);
        if (n >= end) {
            if (err)
                fail_msg("prefix %zu of %zu: %s", n, b.len, llmos_errmsg());
            gguf_close(f);
        } else {
            if (err != LLMOS_ERR_FORMAT)
                fail_msg("prefix %zu: error %d: %s", n, err, llmos_errmsg());
            if (!strstr(llmos_errmsg(), "t.gguf: offset "))
                fail_msg("prefix %zu: message without offset: %s", n, llmos_errmsg());
        }
        free(copy);
    }
    buf_free(&b);
    gguf_writer_free(w);
}

static void test_bad_header(void **state)
{
    (void)state;
    llmos_buf b = {0};
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 0", "not a GGUF file", NULL);
    put(&b, "GGML", 4);
    put_u32(&b, 3);
    expect_fail(&b, LLMOS_ERR_FORMAT, "magic 'GGML'", NULL);
    buf_clear(&b);
    put(&b, "GGUF", 4);
    put_u32(&b, 1);
    put_u32(&b, 0);
    put_u32(&b, 0);
    expect_fail(&b, LLMOS_ERR_UNSUPPORTED, "offset 4", "version 1", NULL);
    buf_clear(&b);
    put_header(&b, 4, 0, 0);
    expect_fail(&b, LLMOS_ERR_UNSUPPORTED, "version 4", NULL);
    buf_clear(&b);
    put_header(&b, 0x03000000, 0, 0);
    expect_fail(&b, LLMOS_ERR_UNSUPPORTED, "big-endian", NULL);
    buf_clear(&b);
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u32(&b, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 8", "tensor count", "needs 8 bytes, 4 left", NULL);

    /* counts no file of this size could hold */
    buf_clear(&b);
    put_header(&b, 3, 0, UINT64_MAX);
    put_zeros(&b, 100);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 16", "metadata count 18446744073709551615", NULL);
    buf_clear(&b);
    put_header(&b, 3, 1ull << 60, 1);
    put_kv_u32(&b, "a", 1);
    put_zeros(&b, 100);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 8", "tensor count 1152921504606846976", NULL);

    /* an empty, valid file: v2 works too */
    buf_clear(&b);
    put_header(&b, 2, 0, 0);
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "v2.gguf", &f));
    assert_int_equal(gguf_version(f), 2);
    assert_int_equal(gguf_n_kv(f), 0);
    assert_int_equal(gguf_n_tensors(f), 0);
    gguf_close(f);
    buf_free(&b);
}

static void test_bad_metadata(void **state)
{
    (void)state;
    llmos_buf b = {0};
    /* a key whose length runs past the end */
    put_header(&b, 3, 0, 1);
    put_u64(&b, 1000);
    put(&b, "abc", 3);
    put_zeros(&b, 20);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 24", "key 0", "string length 1000", NULL);
    /* an unknown value type */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, 13);
    put_u32(&b, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 33", "key 0 'k'", "value type 13", NULL);
    /* a bool that is neither 0 nor 1 */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "k");
    put_u32(&b, GGUF_TYPE_BOOL);
    OK(buf_putc(&b, 2));
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 37", "bool value is 2", NULL);
    /* duplicate keys */
    buf_clear(&b);
    put_header(&b, 3, 0, 2);
    put_kv_u32(&b, "same", 1);
    put_kv_u32(&b, "same", 2);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 44",
                "key 1 'same': duplicate key (also key 0 at offset 24)", NULL);
    /* a NUL inside a key */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_u64(&b, 3);
    put(&b, "a\0b", 3);
    put_u32(&b, GGUF_TYPE_UINT8);
    OK(buf_putc(&b, 0));
    expect_fail(&b, LLMOS_ERR_FORMAT, "key 0 'a\\x00b'", "NUL", NULL);
    /* an array with more elements than bytes */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_UINT32);
    put_u64(&b, 1ull << 62);
    put_zeros(&b, 64);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 39", "array of 4611686018427387904 uint32", NULL);
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, GGUF_TYPE_STRING);
    put_u64(&b, 100);
    put_zeros(&b, 64);
    expect_fail(&b, LLMOS_ERR_FORMAT, "array of 100 strings", NULL);
    /* an array element type that is not a type */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, GGUF_TYPE_ARRAY);
    put_u32(&b, 77);
    put_u64(&b, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "array element type 77", NULL);
    /* arrays nested too deeply */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "deep");
    put_u32(&b, GGUF_TYPE_ARRAY);
    for (int i = 0; i < 20; i++) {
        put_u32(&b, GGUF_TYPE_ARRAY);
        put_u64(&b, 1);
    }
    put_zeros(&b, 64);
    expect_fail(&b, LLMOS_ERR_FORMAT, "nested deeper than", NULL);
    /* general.alignment of the wrong type, or not a power of two */
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_str(&b, "general.alignment");
    put_u32(&b, GGUF_TYPE_STRING);
    put_str(&b, "32");
    expect_fail(&b, LLMOS_ERR_FORMAT, "'general.alignment'", "has type string", NULL);
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 48);
    expect_fail(&b, LLMOS_ERR_FORMAT, "alignment 48 is not a power of two", NULL);
    buf_clear(&b);
    put_header(&b, 3, 0, 1);
    put_kv_u32(&b, "general.alignment", 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "alignment 0", NULL);
    buf_free(&b);
}

/* A file with one tensor info and 64 bytes of data, with the info's fields given. */
static void one_tensor(llmos_buf *b, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                       uint64_t offset)
{
    buf_clear(b);
    put_header(b, 3, 1, 0);
    put_tinfo(b, "blk.0.attn_q.weight", n_dims, ne, type, offset);
    put_pad(b, 32);
    put_zeros(b, 64);
}

static void test_bad_tensors(void **state)
{
    (void)state;
    llmos_buf b = {0};
    uint64_t ne[5] = {4, 2, 1, 1, 1};
    one_tensor(&b, 2, ne, GGML_TYPE_F32, 0);
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "ok.gguf", &f)); /* the baseline is valid */
    assert_int_equal(gguf_tensor_at(f, 0)->size, 32);
    gguf_close(f);

    one_tensor(&b, 5, ne, GGML_TYPE_F32, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 51", "tensor 0 'blk.0.attn_q.weight'", "n_dims is 5",
                NULL);
    uint64_t zero[2] = {4, 0};
    one_tensor(&b, 2, zero, GGML_TYPE_F32, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 63", "dimension 1 is 0", NULL);
    uint64_t huge[3] = {1ull << 32, 1ull << 32, 4};
    one_tensor(&b, 3, huge, GGML_TYPE_F32, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "dimensions overflow", NULL);
    one_tensor(&b, 2, ne, 99, 0);
    expect_fail(&b, LLMOS_ERR_UNSUPPORTED, "unknown tensor type 99", NULL);
    one_tensor(&b, 2, ne, 4, 0); /* Q4_2, removed from the format */
    expect_fail(&b, LLMOS_ERR_UNSUPPORTED, "unknown tensor type 4", NULL);
    one_tensor(&b, 2, ne, GGML_TYPE_Q4_0, 0); /* rows of 4 in a type with 32-element blocks */
    expect_fail(&b, LLMOS_ERR_FORMAT, "row of 4 elements is not a multiple of Q4_0's block size 32",
                NULL);
    one_tensor(&b, 2, ne, GGML_TYPE_F32, 16);
    expect_fail(&b, LLMOS_ERR_FORMAT, "offset 24",
                "data offset 16 is not a multiple of the "
                "alignment 32",
                NULL);
    one_tensor(&b, 2, ne, GGML_TYPE_F32, 64);
    expect_fail(&b, LLMOS_ERR_FORMAT,
                "bad.gguf: offset 24: tensor 0 'blk.0.attn_q.weight': data runs past end of file "
                "(needs 32 bytes at 160, file has 160)",
                NULL);
    one_tensor(&b, 2, ne, GGML_TYPE_F32, UINT64_MAX - 31);
    expect_fail(&b, LLMOS_ERR_FORMAT, "data runs past end of file", NULL);
    uint64_t big[2] = {1ull << 40, 1};
    one_tensor(&b, 2, big, GGML_TYPE_F32, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "needs 4398046511104 bytes", NULL);

    /* overlapping tensors, and duplicate names */
    buf_clear(&b);
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "a", 1, ne, GGML_TYPE_F32, 0);
    uint64_t ne64[1] = {64};
    put_tinfo(&b, "b", 1, ne64, GGML_TYPE_F32, 0);
    put_pad(&b, 32);
    put_zeros(&b, 256);
    expect_fail(&b, LLMOS_ERR_FORMAT, "overlaps tensor", NULL);
    buf_clear(&b);
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "a", 1, ne64, GGML_TYPE_F32, 0);
    put_tinfo(&b, "b", 1, ne, GGML_TYPE_F32, 224); /* inside a's 256 bytes */
    put_pad(&b, 32);
    put_zeros(&b, 512);
    expect_fail(&b, LLMOS_ERR_FORMAT, "tensor 1 'b': data at", "overlaps tensor 0 'a'", NULL);
    buf_clear(&b);
    put_header(&b, 3, 2, 0);
    put_tinfo(&b, "a", 1, ne, GGML_TYPE_F32, 0);
    put_tinfo(&b, "a", 1, ne, GGML_TYPE_F32, 32);
    put_pad(&b, 32);
    put_zeros(&b, 64);
    expect_fail(&b, LLMOS_ERR_FORMAT, "tensor 1 'a': duplicate tensor name", NULL);
    /* the file ends inside the padding before the data */
    buf_clear(&b);
    put_header(&b, 3, 1, 0);
    put_tinfo(&b, "a", 1, ne, GGML_TYPE_F32, 0);
    expect_fail(&b, LLMOS_ERR_FORMAT, "padding before the tensor data", NULL);
    buf_free(&b);
}

/* ---- the shared test data ----------------------------------------------------------------- */

static void test_stories260k(void **state)
{
    (void)state;
    char path[1024];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    gguf_file *f;
    OK(gguf_open(path, &f));
    assert_int_equal(gguf_version(f), 3);
    assert_string_equal(gguf_architecture(f), "llama");
    assert_int_equal(gguf_get_u32(f, "llama.block_count", 0), 5);
    assert_int_equal(gguf_get_u32(f, "llama.embedding_length", 0), 64);
    assert_int_equal(gguf_get_u32(f, "llama.feed_forward_length", 0), 172);
    assert_int_equal(gguf_get_u32(f, "llama.attention.head_count", 0), 8);
    assert_int_equal(gguf_get_u32(f, "llama.attention.head_count_kv", 0), 4);
    assert_int_equal(gguf_get_u32(f, "llama.rope.dimension_count", 0), 8);
    assert_true(gguf_get_f32(f, "llama.rope.freq_base", 0) == 10000.0f);
    assert_true(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", 0) == 1e-5f);
    assert_string_equal(gguf_get_str(f, "tokenizer.ggml.model", NULL), "llama");
    assert_int_equal(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", 99), 1);
    assert_int_equal(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", 99), 2);
    assert_true(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", false));

    int64_t toks = gguf_find_key(f, "tokenizer.ggml.tokens");
    assert_int_equal(gguf_arr_len(f, toks), 512);
    size_t len;
    const char *s = gguf_arr_str(f, toks, 1, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "<s>", 3);
    s = gguf_arr_str(f, toks, 3, &len);
    assert_int_equal(len, 6);
    assert_memory_equal(s, "<0x00>", 6);
    s = gguf_arr_str(f, toks, 258, &len);
    assert_memory_equal(s, "<0xFF>", 6);
    int64_t types = gguf_find_key(f, "tokenizer.ggml.token_type");
    int64_t ty;
    assert_true(gguf_arr_i64(f, types, 3, &ty) && ty == 6); /* BYTE */
    assert_true(gguf_arr_i64(f, types, 1, &ty) && ty == 3); /* CONTROL */
    size_t nbytes;
    assert_non_null(gguf_val_data(f, gguf_find_key(f, "tokenizer.ggml.scores"), &nbytes));
    assert_int_equal(nbytes, 512 * 4);

    /* 1 embedding + 9 per layer + the final norm; the output is tied to the embedding */
    assert_int_equal(gguf_n_tensors(f), 1 + 5 * 9 + 1);
    assert_null(gguf_find_tensor(f, "output.weight"));
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGML_TYPE_F32);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    t = gguf_find_tensor(f, "blk.4.ffn_down.weight");
    assert_int_equal(t->ne[0], 172);
    assert_int_equal(t->ne[1], 64);
    t = gguf_find_tensor(f, "blk.0.attn_k.weight");
    assert_int_equal(t->ne[1], 32); /* 4 kv heads of 8 */
    uint64_t params = 0;
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        t = gguf_tensor_at(f, i);
        params += t->n_elements;
        assert_int_equal((uintptr_t)t->data % gguf_alignment(f), 0);
    }
    /* 512*64 + 5*(64 + 64*64 + 2*32*64 + 64*64 + 64 + 3*172*64) + 64 */
    assert_int_equal(params, 32768 + 5 * (64 + 4096 + 4096 + 4096 + 64 + 33024) + 64);
    /* the last tensor's data reaches the end of the file */
    t = gguf_tensor_at(f, gguf_n_tensors(f) - 1);
    assert_true(gguf_data_offset(f) + t->offset + t->size <= gguf_size(f));
    gguf_close(f);
}

/* Cuts of the real model: every offset through the header and tensor infos, then every
 * 997th byte of the data. All fail cleanly with the offset in the message. */
static void test_stories260k_truncated(void **state)
{
    (void)state;
    char path[1024];
    tu_testdata_path(path, sizeof path, "models/stories260K.gguf");
    llmos_buf b = {0};
    OK(llmos_file_read_all(path, 1 << 24, &b));
    gguf_file *f;
    OK(gguf_open_memory(b.data, b.len, "s.gguf", &f));
    size_t header_end = (size_t)gguf_data_offset(f);
    gguf_close(f);
    uint8_t *copy = malloc(b.len);
    for (size_t n = 0; n < b.len; n += n < header_end ? 1 : 997) {
        /* the cut copy ends exactly at the end of its allocation, so ASan sees overreads */
        uint8_t *p = copy + (b.len - n);
        memcpy(p, b.data, n);
        llmos_err err = gguf_open_memory(p, n, "s.gguf", &f);
        if (err != LLMOS_ERR_FORMAT)
            fail_msg("cut at %zu: error %d: %s", n, err, llmos_errmsg());
        if (!strstr(llmos_errmsg(), "s.gguf: offset "))
            fail_msg("cut at %zu: %s", n, llmos_errmsg());
    }
    free(copy);
    buf_free(&b);
}

static void test_vocab_files(void **state)
{
    (void)state;
    static const struct {
        const char *name, *model;
        uint64_t n_tokens, n_merges;
        int64_t bos;
        const char *bos_text;
    } files[] = {
        {"llama-spm", "llama", 32000, 0, 1, "<s>"},
        {"phi-3", "llama", 32064, 0, 1, "<s>"},
        {"gpt-2", "gpt2", 50257, 50000, 50256, "<|endoftext|>"},
        {"falcon", "gpt2", 65024, 64784, 11, "<|endoftext|>"},
        {"deepseek-llm", "gpt2", 102400, 99757, 100000,
         "<\xef\xbd\x9c"
         "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"},
        {"deepseek-coder", "gpt2", 32256, 31757, 32013,
         "<\xef\xbd\x9c"
         "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"},
        {"starcoder", "gpt2", 49152, 48872, 0, "<|endoftext|>"},
        {"mpt", "gpt2", 50432, 50009, 0, "<|endoftext|>"},
        {"refact", "gpt2", 49216, 48891, 0, "<|endoftext|>"},
        {"qwen2", "gpt2", 151936, 151387, 151643, "<|endoftext|>"},
        {"llama-bpe", "gpt2", 128256, 280147, 128000, "<|begin_of_text|>"},
    };
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(files); i++) {
        char rel[128], path[1024];
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", files[i].name);
        tu_testdata_path(path, sizeof path, rel);
        gguf_file *f;
        if (gguf_open(path, &f) != LLMOS_OK)
            fail_msg("%s", llmos_errmsg());
        assert_string_equal(gguf_get_str(f, "tokenizer.ggml.model", ""), files[i].model);
        int64_t toks = gguf_find_key(f, "tokenizer.ggml.tokens");
        if (gguf_arr_len(f, toks) != files[i].n_tokens)
            fail_msg("%s: %llu tokens, expected %llu", files[i].name,
                     (unsigned long long)gguf_arr_len(f, toks),
                     (unsigned long long)files[i].n_tokens);
        assert_int_equal(gguf_arr_len(f, gguf_find_key(f, "tokenizer.ggml.merges")),
                         files[i].n_merges);
        int64_t bos = gguf_get_i64(f, "tokenizer.ggml.bos_token_id", -1);
        assert_int_equal(bos, files[i].bos);
        size_t len;
        const char *s = gguf_arr_str(f, toks, (uint64_t)bos, &len);
        assert_non_null(s);
        if (len != strlen(files[i].bos_text) || memcmp(s, files[i].bos_text, len) != 0)
            fail_msg("%s: bos text '%.*s'", files[i].name, (int)len, s);
        /* every element is reachable and inside the file */
        for (uint64_t k = 0; k < files[i].n_tokens; k++) {
            s = gguf_arr_str(f, toks, k, &len);
            assert_true((const uint8_t *)s + len <= gguf_bytes(f) + gguf_size(f));
        }
        assert_int_equal(gguf_n_tensors(f), 0);
        gguf_close(f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_memory),
        cmocka_unit_test(test_writer_replace_remove_and_copy),
        cmocka_unit_test(test_write_file_and_stream),
        cmocka_unit_test(test_write_ignores_planted_symlink),
        cmocka_unit_test(test_write_cancelled),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_truncation_at_every_offset),
        cmocka_unit_test(test_bad_header),
        cmocka_unit_test(test_bad_metadata),
        cmocka_unit_test(test_bad_tensors),
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_stories260k_truncated),
        cmocka_unit_test(test_vocab_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
