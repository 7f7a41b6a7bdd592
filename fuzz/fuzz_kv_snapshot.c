/*
 * fuzz_kv_snapshot.c - libFuzzer target for the KV snapshot parser (model_kv_parse).
 *
 * A snapshot comes back from the store or from a user's file: whatever the bytes, the parser
 * must accept them only when every size in the header adds up to the length and the checksum
 * matches, and must never read outside them; model_kv_peek (the same without the checksum)
 * must agree with it on every snapshot that parses.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "llmos/infer.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    model_kv_header h, peeked;
    bool peek_ok = model_kv_peek(data, size, &peeked) == LLMOS_OK;
    if (model_kv_parse(data, size, &h) == LLMOS_OK) {
        if (!peek_ok || memcmp(&h, &peeked, sizeof h) != 0)
            __builtin_trap(); /* what parses must peek the same */
        sink += h.n_pos + h.n_tokens + h.n_layer;
    }
    llmos_err_clear();
    return 0;
}
