/*
 * llmos/quant.h - tensor element types and the kernels that read them.
 *
 * The type numbers are GGUF's (the ggml_type enum that GGUF tensor infos store), so a tensor's
 * type from a file indexes this table directly. Every type has a traits entry: block geometry,
 * a dequantizer, a quantizer, and a dot product against activations in the type's
 * `vec_dot_type` (F32 for F32, F16 for F16, BF16 for BF16, Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for
 * Q4_1/Q5_1, Q8_K for the K-quants: activations are quantized on the fly to 8 bits as the
 * formats intend). Block layouts are documented in docs/formats.md.
 *
 * This is the seam between the model code and the kernels: the forward pass only ever asks
 * quant_traits_of(type) for a vec_dot and a from_float, so adding a type is adding kernels.
 * Scalar versions are the reference; SIMD versions are chosen at run time from
 * llmos_cpu_features().
 */
#ifndef LLMOS_QUANT_H
#define LLMOS_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

/* GGUF / ggml tensor types (values fixed by the file format). */
typedef enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    /* 4 and 5 were Q4_2 / Q4_3, removed from the format */
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 40 /* upper bound for tables; not a type */
} ggml_type;

/* dst[0..n) = dequantized src (n a multiple of block_size). */
typedef void (*quant_to_float_fn)(const void *src, float *dst, size_t n);
/* dst = quantized src[0..n) (n a multiple of block_size). */
typedef void (*quant_from_float_fn)(const float *src, void *dst, size_t n);
/* *s = dot(x, y) over n elements, x in this type, y in vec_dot_type. SIMD kernels equal the
 * scalar reference up to float summation order (integer parts are exact); the AVX512-BF16
 * kernel also flushes denormal bf16 products to zero. Kernels hold no state: call them from
 * any number of threads. */
typedef void (*quant_vec_dot_fn)(size_t n, float *s, const void *x, const void *y);

typedef struct quant_traits {
    const char *name;       /* "Q4_K", as GGUF tools print it */
    size_t block_size;      /* elements per block (1 for F32/F16/BF16) */
    size_t type_size;       /* bytes per block */
    bool supported;         /* false for types llmos can name but not compute with */
    ggml_type vec_dot_type; /* format the activations must be in for vec_dot */
    quant_to_float_fn to_float;
    quant_from_float_fn from_float;
    quant_vec_dot_fn vec_dot;     /* best kernel for this CPU */
    quant_vec_dot_fn vec_dot_ref; /* the scalar reference */
    /* The scalar reference quantizer. `from_float` may be a SIMD version (for the activation
     * types Q8_0 and Q8_K, which are quantized every token); it writes the same bytes. */
    quant_from_float_fn from_float_ref;
} quant_traits;

/* Traits of a type; NULL for a number that is not a ggml type. Names and sizes are filled in
 * for every known type, kernels only where `supported`. */
LLMOS_API const quant_traits *quant_traits_of(ggml_type type);

/* The kernel set chosen for this CPU: "avx512" (AVX-512 VNNI for Q4_0, Q8_0, Q4_K, Q6_K,
 * AVX-512 for F16, AVX512-BF16 for BF16 where present, AVX2 for the rest), "avx2"
 * (AVX2+FMA+F16C for every type) or "scalar".
 * LLMOS_QUANT_ISA=ref|avx2|avx512 in the environment caps the choice (read once). */
LLMOS_API const char *quant_isa_name(void);

/*
 * Matrix times a batch of vectors, for prompt processing: for i < n_rows and t < n_tok,
 *   out[t * out_stride + i] = dot(row i of w, activation row t)
 * where row i of w starts at (const char *)w + i * w_stride and is k elements of `type`, and
 * activation row t starts at (const char *)act + t * act_stride and is k elements already
 * quantized to the type's vec_dot_type (with its from_float). The result equals calling
 * vec_dot per pair up to float summation order, but weight blocks are decoded once for four
 * tokens where the type has such a kernel (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), and tokens are taken
 * in tiles of 32 whose activations stay in cache while the weight rows pass over them. To use
 * threads, give each thread its own range of rows. Fails with LLMOS_ERR_UNSUPPORTED for a type
 * without kernels and LLMOS_ERR_INVALID when k is not a multiple of the block size or out_stride <
 * n_rows.
 */
LLMOS_API LLMOS_NODISCARD llmos_err quant_gemm(ggml_type type, size_t k, size_t n_rows,
                                               const void *w, size_t w_stride, size_t n_tok,
                                               const void *act, size_t act_stride, float *out,
                                               size_t out_stride);

/* Name of a type ("F16"), or "?" for an unknown number. */
LLMOS_API const char *quant_type_name(ggml_type type);

/* Bytes taken by n_elements of `type`; fails (returns false) when n_elements is not a multiple
 * of the block size, the type is unknown, or the result overflows. */
LLMOS_API bool quant_row_size(ggml_type type, uint64_t n_elements, uint64_t *bytes);

/* IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN). */
LLMOS_API float quant_fp16_to_fp32(uint16_t h);
LLMOS_API uint16_t quant_fp32_to_fp16(float f);
LLMOS_API float quant_bf16_to_fp32(uint16_t h);
LLMOS_API uint16_t quant_fp32_to_bf16(float f);

#endif
