/*
 * kv.h - what the KV pool (kvpool.c) and the KV snapshots (kvsnap.c) need of a context, and
 * what model.c asks of a pool (private to src/infer/model).
 *
 * A context made with a pool takes its cache's bytes when it is made and gives them back when
 * it is freed; the pool only counts (the caches themselves are ordinary allocations), so that
 * many sequences share one budget set by the user (--kv-mem).
 */
#ifndef LLMOS_INFER_KV_H
#define LLMOS_INFER_KV_H

#include <stdbool.h>
#include <stdint.h>

#include <stddef.h>

#include "llmos/infer.h"

/* Take `bytes` for a context of n_ctx positions, or fail with LLMOS_ERR_LIMIT naming the
 * bytes asked for, free and budgeted. */
LLMOS_NODISCARD llmos_err model_kvpool_take(model_kvpool *p, size_t bytes, size_t n_ctx);
/* Give back what a take lent. */
void model_kvpool_give(model_kvpool *p, size_t bytes);

/* The cache of a context, for snapshots: layer l's keys (values when `values`) are
 * model_ctx_size(c) rows of model_ctx_kv_row_bytes(c) bytes from model_ctx_kv_rows(c, values,
 * l), one per position, in model_ctx_kv_type(c). */
size_t model_ctx_kv_row_bytes(const llmos_model_ctx *c);
ggml_type model_ctx_kv_type(const llmos_model_ctx *c);
uint8_t *model_ctx_kv_rows(const llmos_model_ctx *c, bool values, size_t l);
/* Say that positions 0..pos-1 hold what a snapshot restored (pos <= model_ctx_size). */
void model_ctx_set_pos(llmos_model_ctx *c, size_t pos);

#endif
