/*
 * llmos/quantize.h - converting a model file's weights to a smaller type.
 *
 * quantize_model reads a GGUF model whose matrices are F32, F16 or BF16 and writes a copy
 * (all metadata kept, general.file_type set) whose matrices are in a target type chosen by a
 * recipe: a plain type ("Q4_0", "Q8_0", "Q4_K", "F16", ...) or one of llama.cpp's mixtures
 * ("Q4_K_M", "Q5_K_M", "Q3_K_M") that spend more bits where quantization hurts most. The
 * rules (which tensor gets which type) are quantize_tensor_type's and are documented in
 * docs/inference.md, "Quantization and speed". Tensors are streamed to the output one at a
 * time (memory stays near one tensor), rows quantized in parallel on a pool.
 */
#ifndef LLMOS_QUANTIZE_H
#define LLMOS_QUANTIZE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/quant.h"

/* The target names quantize_model accepts, in a fixed order: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K
 * Q3_K Q4_K Q5_K Q6_K F16 BF16 F32 Q3_K_M Q4_K_M Q5_K_M. *n receives the count. */
LLMOS_API const char *const *quantize_target_names(size_t *n);

/* True when `name` (case-insensitive) is one of quantize_target_names. */
LLMOS_API bool quantize_target_known(const char *name);

/* The usual name of a general.file_type value (llama.cpp's enum llama_ftype: what a file was
 * quantized to, e.g. "Q4_K_M" for 15, "F16" for 1), or NULL for a value llama.cpp does not
 * define. Files name their type this way because a mixture such as Q4_K_M holds tensors of
 * several types (Q4_K, Q6_K, and Q5_0 for rows that Q4_K's blocks do not divide). */
LLMOS_API const char *quantize_file_type_name(uint32_t file_type);

/* The type the recipe `target` gives one tensor: `name` as in the file ("blk.3.attn_v.weight"),
 * n_dims and ne0 (row length) of its shape, n_layer the model's block count, tied whether
 * token_embd.weight is also the output matrix. Fails with LLMOS_ERR_INVALID for an unknown
 * target. */
LLMOS_API LLMOS_NODISCARD llmos_err quantize_tensor_type(const char *target, const char *name,
                                                         uint32_t n_dims, uint64_t ne0,
                                                         uint32_t n_layer, bool tied,
                                                         ggml_type *out);

/* Called after each tensor is written: its index among n, name, source and chosen type, and
 * the seconds it took. */
typedef void (*quantize_progress_fn)(void *user, size_t index, size_t n, const char *name,
                                     ggml_type from, ggml_type to, double seconds);

typedef struct quantize_params {
    const char *target;            /* "Q4_K_M", ... (quantize_target_names) */
    llmos_pool *pool;              /* borrowed; NULL = quantize on the calling thread */
    quantize_progress_fn progress; /* may be NULL */
    void *user;
    const atomic_bool *cancel; /* NULL, or set to true (a SIGINT handler may) to stop early */
} quantize_params;

/* Write `out_path`, the model at `in_path` with its tensors converted as the recipe says.
 * Fails with LLMOS_ERR_INVALID for an unknown target or in_path == out_path,
 * LLMOS_ERR_UNSUPPORTED when a matrix of the input is not F32, F16 or BF16 (re-quantizing a
 * quantized model compounds the error: start from the original), the reader's errors for a
 * damaged input, LLMOS_ERR_IO when the output cannot be written, LLMOS_ERR_CANCELLED when
 * *p->cancel became true (within one chunk of rows); on failure the output is left untouched
 * and no temporary file remains. */
LLMOS_API LLMOS_NODISCARD llmos_err quantize_model(const char *in_path, const char *out_path,
                                                   const quantize_params *p);

#endif
