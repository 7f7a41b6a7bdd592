/*
 * kvpool.h - what model.c asks of a KV pool (private to src/infer/model).
 *
 * A context made with a pool takes its cache's bytes when it is made and gives them back when
 * it is freed; the pool only counts (the caches themselves are ordinary allocations), so that
 * many sequences share one budget set by the user (--kv-mem).
 */
#ifndef LLMOS_INFER_KVPOOL_H
#define LLMOS_INFER_KVPOOL_H

#include <stddef.h>

#include "llmos/infer.h"

/* Take `bytes` for a context of n_ctx positions, or fail with LLMOS_ERR_LIMIT naming the
 * bytes asked for, free and budgeted. */
LLMOS_NODISCARD llmos_err model_kvpool_take(model_kvpool *p, size_t bytes, size_t n_ctx);
/* Give back what a take lent. */
void model_kvpool_give(model_kvpool *p, size_t bytes);

#endif
