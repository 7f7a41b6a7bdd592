/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Opens the input with gguf_open_memory and, when it is accepted, walks everything the API
 * hands out: every key and value, every element of every array (recursing into arrays of
 * arrays), every tensor and the first and last byte of its data. The reader promises that
 * everything it returns lies inside the input, so any read ASan flags here is a reader bug.
 */
#include <stdint.h>
#include <string.h>

#include "llmos/gguf.h"

static volatile uint64_t sink; /* keeps the reads from being optimised away */

static void touch(const void *p, size_t n)
{
    if (n == 0)
        return;
    const uint8_t *b = p;
    sink += b[0] + b[n - 1];
}

static void walk_value(const gguf_file *f, int64_t id, int depth)
{
    gguf_type t = gguf_val_type(f, id);
    int64_t i64;
    uint64_t u64;
    double d;
    bool b;
    size_t n;
    sink += gguf_val_offset(f, id);
    sink += gguf_val_i64(f, id, &i64) ? (uint64_t)i64 : 0;
    sink += gguf_val_u64(f, id, &u64) ? u64 : 0;
    sink += gguf_val_f64(f, id, &d) ? (uint64_t)(d != d) : 0;
    sink += gguf_val_bool(f, id, &b) ? b : 0;
    const char *s = gguf_val_str(f, id, &n);
    if (s)
        touch(s, n + 1); /* the NUL is promised too */
    const void *raw = gguf_val_data(f, id, &n);
    if (raw)
        touch(raw, n);
    if (t != GGUF_TYPE_ARRAY)
        return;
    uint64_t len = gguf_arr_len(f, id);
    gguf_type et = gguf_arr_type(f, id);
    for (uint64_t i = 0; i < len; i++) {
        if (et == GGUF_TYPE_STRING) {
            const char *e = gguf_arr_str(f, id, i, &n);
            if (e)
                touch(e, n);
        } else if (et == GGUF_TYPE_ARRAY) {
            int64_t sub = gguf_arr_sub(f, id, i);
            if (sub >= 0 && depth < 16)
                walk_value(f, sub, depth + 1);
        } else {
            sink += gguf_arr_i64(f, id, i, &i64) ? (uint64_t)i64 : 0;
            sink += gguf_arr_f64(f, id, i, &d) ? (uint64_t)(d != d) : 0;
        }
    }
    /* out of range must answer "absent", not read */
    sink += gguf_arr_str(f, id, len, &n) != NULL;
    sink += gguf_arr_sub(f, id, len) >= 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    if (gguf_open_memory(data, size, "fuzz.gguf", &f) != LLMOS_OK) {
        sink += strlen(llmos_errmsg());
        return 0;
    }
    for (size_t i = 0; i < gguf_n_kv(f); i++) {
        const char *key = gguf_key(f, i);
        if (gguf_find_key(f, key) != (int64_t)i)
            __builtin_trap(); /* keys are unique and found again */
        walk_value(f, (int64_t)i, 0);
    }
    sink += gguf_get_u32(f, "general.alignment", 0);
    sink += (uint64_t)gguf_get_i64(f, "tokenizer.ggml.bos_token_id", 0);
    sink += gguf_get_f32(f, "llama.rope.freq_base", 0) > 1.0f;
    const char *arch = gguf_architecture(f);
    if (arch)
        sink += strlen(arch) + (uint64_t)gguf_find_arch_key(f, "block_count");
    for (size_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (gguf_find_tensor(f, t->name) != t)
            __builtin_trap();
        if ((const uint8_t *)t->data < data || t->size > size ||
            (const uint8_t *)t->data + t->size > data + size)
            __builtin_trap();
        touch(t->data, (size_t)t->size);
    }
    gguf_close(f);
    return 0;
}
