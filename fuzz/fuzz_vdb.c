/*
 * fuzz_vdb.c - fuzz vdb_load, the parser of saved vector indexes (untrusted bytes: they come
 * from disk or from the encrypted database, and a bug there must be an error, never a crash).
 *
 * Each input is loaded twice: as given (mostly stopped by the checksum), and with its trailing
 * BLAKE2b-256 checksum recomputed, so that the structural checks behind it (counts, levels,
 * links, vectors) are reached as a hostile writer would reach them. Whatever loads must answer
 * searches (graph and exact, with and without a filter), take a delete and an insert, and save
 * to bytes that load again to the same count.
 */
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/vdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool odd_ids(uint64_t id, void *ctx)
{
    (void)ctx;
    return id & 1;
}

static void exercise(vdb *idx)
{
    uint32_t dim = vdb_dim(idx);
    if (dim > 4096)
        return;
    float *q = malloc(dim * sizeof(float));
    if (!q)
        return;
    for (uint32_t i = 0; i < dim; i++)
        q[i] = (float)(i % 7) - 3.0f + 0.25f;
    vdb_hit hits[8];
    size_t n = 0;
    if (vdb_search(idx, q, 8, 16, NULL, NULL, hits, &n) == LLMOS_OK) {
        for (size_t i = 0; i + 1 < n; i++)
            if (hits[i].distance > hits[i + 1].distance)
                abort(); /* results must come sorted */
        if (n > 0 && vdb_delete(idx, hits[0].id) != LLMOS_OK)
            abort(); /* a returned id must be deletable */
    }
    if (vdb_search(idx, q, 8, 16, odd_ids, NULL, hits, &n) == LLMOS_OK)
        for (size_t i = 0; i < n; i++)
            if (!(hits[i].id & 1))
                abort(); /* the filter must hold */
    if (vdb_exact_search(idx, q, 3, NULL, NULL, hits, &n) == LLMOS_OK && n > 3)
        abort();
    if (vdb_insert(idx, 0xfeedface, q) != LLMOS_OK)
        llmos_err_clear(); /* may exist already, or the query may be unusable (cosine) */
    size_t count = vdb_count(idx);
    llmos_buf b = {0};
    if (vdb_save(idx, &b) == LLMOS_OK) {
        vdb *again = NULL;
        if (vdb_load(b.data, b.len, &again) != LLMOS_OK || vdb_count(again) != count)
            abort(); /* what we save must load */
        vdb_free(again);
    }
    buf_free(&b);
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    vdb *idx = NULL;
    if (vdb_load(data, size, &idx) == LLMOS_OK) {
        exercise(idx);
        vdb_free(idx);
    }
    if (size < 96 || size > (1u << 20) || sodium_init() < 0)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    crypto_generichash(copy + size - 32, 32, copy, size - 32, NULL, 0);
    idx = NULL;
    if (vdb_load(copy, size, &idx) == LLMOS_OK) {
        exercise(idx);
        vdb_free(idx);
    }
    free(copy);
    return 0;
}
