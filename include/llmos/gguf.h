/*
 * llmos/gguf.h - reading and writing GGUF model files.
 *
 * GGUF (the file format of ggml and llama.cpp, specified in ggml's docs/gguf.md) holds a
 * model in one file: a header, typed key/value metadata (hyperparameters, the tokenizer's
 * vocabulary, the chat template), a table of tensor infos, then the tensor data, each tensor
 * aligned to `general.alignment` bytes (32 when absent). llmos reads versions 2 and 3
 * (little-endian), the ones in use; version 1 and big-endian files are refused.
 *
 * Reading. gguf_open maps the file (nothing is copied but keys, scalar strings and index
 * tables) and validates every count, length and offset against the file size before anything
 * is handed out, so that a caller may use every pointer and length this API returns without
 * further checks. A truncated or hostile file fails with LLMOS_ERR_FORMAT (LLMOS_ERR_UNSUPPORTED
 * for a version or tensor type llmos does not know) and a message that names the byte offset
 * and the field.
 *
 * Values are addressed by a value id (int64_t): the id of the i-th key/value pair is i
 * (0 <= i < gguf_n_kv), gguf_find_key returns it, and the elements of an array of arrays have
 * ids of their own (gguf_arr_sub). Id -1 means "absent"; every function taking an id accepts
 * -1 and out-of-range ids and then answers as for a missing value.
 *
 * Alignment caveat: metadata is packed with no padding, so the bytes behind gguf_val_data
 * (a numeric array such as tokenizer.ggml.scores) are in general NOT aligned for their element
 * type. Read them with memcpy (which compilers turn into plain loads), never by casting the
 * pointer to float * or int32_t *. Tensor data is aligned relative to the file start, and so
 * in memory when the file is mapped (gguf_open); with gguf_open_memory it is aligned only as
 * far as the caller's buffer is.
 *
 * Writing. A gguf_writer collects metadata and tensors, then writes a version 3 file with
 * alignment padding, through a temporary file that replaces the target only once complete
 * and synced. Tensor bytes come from a caller's buffer or from a callback that streams them
 * when the file is written, so a model larger than memory can be produced.
 *
 * Thread safety: a gguf_file is immutable after opening; any number of threads may read it.
 */
#ifndef LLMOS_GGUF_H
#define LLMOS_GGUF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/quant.h"

/* Metadata value types (numbers fixed by the GGUF specification). */
typedef enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,   /* one byte, 0 or 1 */
    GGUF_TYPE_STRING = 8, /* uint64 length + bytes, no NUL */
    GGUF_TYPE_ARRAY = 9,  /* uint32 element type + uint64 count + elements */
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* "uint32", "string", "array", ...; "?" for a number that is not a type. */
LLMOS_API const char *gguf_type_name(gguf_type type);

/* Bytes one element of a fixed-size type takes (1..8); 0 for string, array and unknown. */
LLMOS_API size_t gguf_type_size(gguf_type type);

#define GGUF_DEFAULT_ALIGNMENT 32

/* ---- reading ----------------------------------------------------------------------------- */

typedef struct gguf_file gguf_file;

/* Open and validate the GGUF file at `path` (memory-mapped; it stays mapped until
 * gguf_close). On success *out owns the mapping; free it with gguf_close. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_open(const char *path, gguf_file **out);

/* The same over data[0..size), which the caller keeps alive and unchanged until gguf_close.
 * `name` (copied) stands for the file in error messages. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_open_memory(const void *data, size_t size,
                                                     const char *name, gguf_file **out);

/* Release everything the file holds. gguf_close(NULL) does nothing. */
LLMOS_API void gguf_close(gguf_file *f);

/* The path or name the file was opened with. */
LLMOS_API const char *gguf_name(const gguf_file *f);
/* Format version from the header (2 or 3). */
LLMOS_API uint32_t gguf_version(const gguf_file *f);
/* Alignment of tensor data (general.alignment, default 32; a power of two). */
LLMOS_API uint32_t gguf_alignment(const gguf_file *f);
/* Byte offset of the tensor data section from the file start (a multiple of the alignment). */
LLMOS_API uint64_t gguf_data_offset(const gguf_file *f);
/* The whole file's bytes and size. */
LLMOS_API const uint8_t *gguf_bytes(const gguf_file *f);
LLMOS_API size_t gguf_size(const gguf_file *f);

/* ---- metadata ---- */

/* Number of key/value pairs; their value ids are 0 .. n-1 in file order. */
LLMOS_API size_t gguf_n_kv(const gguf_file *f);
/* Key of pair i (NUL-terminated, owned by f), or NULL when i is out of range. */
LLMOS_API const char *gguf_key(const gguf_file *f, size_t i);
/* Value id of `key`, or -1 when the file has no such key. Keys are unique (checked on open). */
LLMOS_API int64_t gguf_find_key(const gguf_file *f, const char *key);
/* The model's architecture: general.architecture ("llama", "qwen2", ...), or NULL when the
 * key is missing or not a string. */
LLMOS_API const char *gguf_architecture(const gguf_file *f);
/* Value id of "<architecture>.<suffix>" (gguf_find_arch_key(f, "block_count") finds
 * "llama.block_count"), or -1. */
LLMOS_API int64_t gguf_find_arch_key(const gguf_file *f, const char *suffix);

/* Type of a value; GGUF_TYPE_COUNT for an absent id. */
LLMOS_API gguf_type gguf_val_type(const gguf_file *f, int64_t id);
/* Offset in the file where the value's bytes begin (for messages). */
LLMOS_API uint64_t gguf_val_offset(const gguf_file *f, int64_t id);

/* Scalar values by id. Each returns false (and leaves *out alone) when the id is absent or of
 * another type. gguf_val_i64 accepts every integer type (false for a uint64 above INT64_MAX);
 * gguf_val_f64 accepts float32, float64 and every integer type; gguf_val_bool only bool. */
LLMOS_API bool gguf_val_i64(const gguf_file *f, int64_t id, int64_t *out);
LLMOS_API bool gguf_val_u64(const gguf_file *f, int64_t id,
                            uint64_t *out); /* non-negative integers */
LLMOS_API bool gguf_val_f64(const gguf_file *f, int64_t id, double *out);
LLMOS_API bool gguf_val_bool(const gguf_file *f, int64_t id, bool *out);
/* A string value: NUL-terminated copy owned by f, its length (which excludes the NUL; the
 * string may contain NUL bytes of its own) in *len when len is not NULL. NULL when not a
 * string. */
LLMOS_API const char *gguf_val_str(const gguf_file *f, int64_t id, size_t *len);
/* Raw little-endian bytes of a fixed-size scalar or of an array of fixed-size elements (the
 * elements back to back; NOT aligned, see above: memcpy them), size in *nbytes. NULL for
 * strings, arrays of strings or arrays, and absent ids. */
LLMOS_API const void *gguf_val_data(const gguf_file *f, int64_t id, size_t *nbytes);

/* Typed getters by key with a default. The integer getters accept a value of any integer
 * type that fits the result; the float getter accepts float32, float64 and integers. A
 * missing key, another type or a value out of range yields `def`. */
LLMOS_API uint32_t gguf_get_u32(const gguf_file *f, const char *key, uint32_t def);
LLMOS_API int64_t gguf_get_i64(const gguf_file *f, const char *key, int64_t def);
LLMOS_API float gguf_get_f32(const gguf_file *f, const char *key, float def);
LLMOS_API bool gguf_get_bool(const gguf_file *f, const char *key, bool def);
/* String value (NUL-terminated, owned by f) or `def`. */
LLMOS_API const char *gguf_get_str(const gguf_file *f, const char *key, const char *def);

/* Required forms: fail with LLMOS_ERR_FORMAT ("model.gguf: key 'llama.block_count' is
 * missing" / "... has type string, expected an integer" / "... value 5000000000 does not fit
 * in uint32") when the key is missing, mistyped or out of range. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_require_u32(const gguf_file *f, const char *key,
                                                     uint32_t *out);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_require_i64(const gguf_file *f, const char *key,
                                                     int64_t *out);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_require_f32(const gguf_file *f, const char *key,
                                                     float *out);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_require_str(const gguf_file *f, const char *key,
                                                     const char **out);

/* ---- arrays ---- */

/* Number of elements of an array value (0 when the id is not an array). */
LLMOS_API uint64_t gguf_arr_len(const gguf_file *f, int64_t id);
/* Element type of an array value; GGUF_TYPE_COUNT when the id is not an array. */
LLMOS_API gguf_type gguf_arr_type(const gguf_file *f, int64_t id);
/* Element i of an array of strings: a pointer into the file (NOT NUL-terminated) and its
 * length in *len. NULL when id is not an array of strings or i is out of range. */
LLMOS_API const char *gguf_arr_str(const gguf_file *f, int64_t id, uint64_t i, size_t *len);
/* Element i of a numeric array as int64 (integer element types; false for a uint64 above
 * INT64_MAX) or as double (any numeric element type, bool excluded). False when id is not
 * such an array or i is out of range. */
LLMOS_API bool gguf_arr_i64(const gguf_file *f, int64_t id, uint64_t i, int64_t *out);
LLMOS_API bool gguf_arr_f64(const gguf_file *f, int64_t id, uint64_t i, double *out);
/* Value id of element i of an array of arrays (use it with the gguf_arr_* functions), or -1. */
LLMOS_API int64_t gguf_arr_sub(const gguf_file *f, int64_t id, uint64_t i);

/* ---- tensors ---- */

/* One tensor as the file describes it, checked on open: the type is known, ne[0] is a multiple
 * of the type's block size, the bytes lie inside the file and overlap no other tensor. */
typedef struct gguf_tensor {
    const char *name;     /* NUL-terminated, unique in the file */
    uint32_t n_dims;      /* 1..4 as stored (0 reads as a scalar) */
    uint64_t ne[4];       /* elements per dimension; ne[0] is contiguous; unused dims are 1 */
    ggml_type type;       /* element type (llmos/quant.h) */
    uint64_t n_elements;  /* ne[0] * ne[1] * ne[2] * ne[3] */
    uint64_t offset;      /* byte offset of the data from the data section's start */
    uint64_t size;        /* bytes of data */
    const void *data;     /* gguf_bytes(f) + gguf_data_offset(f) + offset */
    uint64_t info_offset; /* where the tensor's info begins in the file (for messages) */
} gguf_tensor;

LLMOS_API size_t gguf_n_tensors(const gguf_file *f);
/* Tensor i in file order, or NULL when i is out of range. */
LLMOS_API const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i);
/* Tensor by name, or NULL. */
LLMOS_API const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* Index of a tensor by name, or -1. */
LLMOS_API int64_t gguf_find_tensor_index(const gguf_file *f, const char *name);

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct gguf_writer gguf_writer;

/* An empty writer (version 3, alignment 32 unless general.alignment is set). Free with
 * gguf_writer_free. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_writer_new(gguf_writer **out);
/* gguf_writer_free(NULL) does nothing. */
LLMOS_API void gguf_writer_free(gguf_writer *w);

/* Set a key (copied). Setting a key again replaces its value in place (order is kept).
 * Setting general.alignment (any integer type) changes the alignment the writer uses; it must
 * be a power of two. Keys must be non-empty and contain no NUL. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_u8(gguf_writer *w, const char *key, uint8_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_i8(gguf_writer *w, const char *key, int8_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_u16(gguf_writer *w, const char *key, uint16_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_i16(gguf_writer *w, const char *key, int16_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_u32(gguf_writer *w, const char *key, uint32_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_i32(gguf_writer *w, const char *key, int32_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_u64(gguf_writer *w, const char *key, uint64_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_i64(gguf_writer *w, const char *key, int64_t v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_f32(gguf_writer *w, const char *key, float v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_f64(gguf_writer *w, const char *key, double v);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_bool(gguf_writer *w, const char *key, bool v);
/* A string value: NUL-terminated `s`, or s[0..len) with gguf_set_strn. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_str(gguf_writer *w, const char *key, const char *s);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_strn(gguf_writer *w, const char *key, const char *s,
                                                  size_t len);
/* An array of n fixed-size elements of `elem` type (not string or array), given as native
 * values back to back (uint8_t[], int32_t[], float[], bool as uint8_t 0/1, ...). */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_arr(gguf_writer *w, const char *key, gguf_type elem,
                                                 const void *data, size_t n);
/* An array of n strings: strs[i] NUL-terminated, or strs[i][0..lens[i]) when lens is given. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_arr_str(gguf_writer *w, const char *key,
                                                     const char *const *strs, const size_t *lens,
                                                     size_t n);
/* A value of `type` given in its GGUF encoding (the bytes that follow the type field in a
 * file: for an array its element type, count and elements). Not checked here; for nested
 * arrays and tests. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_encoded(gguf_writer *w, const char *key,
                                                     gguf_type type, const void *bytes, size_t n);
/* Copy value `id` of file `f` (any type, arrays included) under `key`, e.g. to carry a
 * model's metadata into a converted file. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_set_from(gguf_writer *w, const char *key,
                                                  const gguf_file *f, int64_t id);
/* Remove a key; absent keys are fine. */
LLMOS_API void gguf_remove_key(gguf_writer *w, const char *key);

/* Add a tensor: name (copied, unique, non-empty), type, n_dims (1..4) dims in ne[] with ne[0]
 * contiguous (each > 0, ne[0] a multiple of the type's block size). With gguf_add_tensor the
 * data (exactly the tensor's size) is borrowed: it must stay valid until the file is written.
 * Tensors are laid out in the order added. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_add_tensor(gguf_writer *w, const char *name,
                                                    ggml_type type, uint32_t n_dims,
                                                    const uint64_t *ne, const void *data);

/* Tensor bytes produced while the file is written: the callback is called once per tensor,
 * with the tensor's index among those added, and must pass exactly the tensor's size in
 * bytes to gguf_stream_write, in as many pieces as it likes. An error it returns stops the
 * write (the target file is left untouched). */
typedef struct gguf_stream gguf_stream;
typedef llmos_err (*gguf_tensor_fn)(void *ctx, size_t tensor_index, gguf_stream *out);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_stream_write(gguf_stream *s, const void *data, size_t n);
LLMOS_API LLMOS_NODISCARD llmos_err gguf_add_tensor_fn(gguf_writer *w, const char *name,
                                                       ggml_type type, uint32_t n_dims,
                                                       const uint64_t *ne, gguf_tensor_fn fn,
                                                       void *ctx);

/* Stop writing when *cancel becomes true (set from another thread or a signal handler: a
 * program's SIGINT handler, for one): gguf_writer_write then fails with LLMOS_ERR_CANCELLED
 * within about a megabyte of output or a tensor callback's next gguf_stream_write, leaving
 * `path` untouched and no temporary file. Borrowed; NULL (the default) never stops. */
LLMOS_API void gguf_writer_set_cancel(gguf_writer *w, const atomic_bool *cancel);

/* Write the file: a temporary beside `path`, fsync, rename over `path`, fsync the directory.
 * On failure (cancellation included) `path` is untouched and the temporary removed. */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_writer_write(gguf_writer *w, const char *path);
/* Append the whole file's bytes to `out` instead (tests, fuzz seeds, small files). */
LLMOS_API LLMOS_NODISCARD llmos_err gguf_writer_to_buf(gguf_writer *w, llmos_buf *out);

#endif
