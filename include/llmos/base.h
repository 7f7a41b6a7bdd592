/*
 * llmos/base.h - the shared base every part of llmos stands on.
 *
 * Errors (one enum for the library, plus a per-thread detail message), an arena for
 * per-request data, a growable byte buffer, UTF-8 checks, logging, a thread pool with
 * parallel_for, file helpers (mmap, atomic replace, secure zeroing), CPU feature detection,
 * and the small helpers every part would otherwise write again: byte order, hex, edit
 * distance. JSON helpers over jansson are in llmos/json.h.
 *
 * Conventions: functions that can fail return llmos_err and write results through
 * out-parameters; on failure they set the detail message (llmos_errmsg) to say what was
 * wrong, where, and what to do. *_free(NULL) is always a no-op.
 */
#ifndef LLMOS_BASE_H
#define LLMOS_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* LLMOS_API marks the library's public functions and data: libllmos is compiled with
 * -fvisibility=hidden, so only these would be exported from a shared build, and a test checks
 * that every exported name carries its module's prefix. */
#if defined(__GNUC__)
#define LLMOS_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#define LLMOS_NODISCARD                __attribute__((warn_unused_result))
#define LLMOS_API                      __attribute__((visibility("default")))
#else
#define LLMOS_PRINTF(fmt_idx, arg_idx)
#define LLMOS_NODISCARD
#define LLMOS_API
#endif

/* ---- errors ------------------------------------------------------------------------------ */

typedef enum llmos_err {
    LLMOS_OK = 0,
    LLMOS_ERR_NOMEM,       /* out of memory */
    LLMOS_ERR_INVALID,     /* a bad argument from the caller */
    LLMOS_ERR_FORMAT,      /* outside bytes do not follow their format (file, JSON, request) */
    LLMOS_ERR_IO,          /* the operating system refused a read, write, open, ... */
    LLMOS_ERR_NOT_FOUND,   /* a named thing (file, key, model, tool) does not exist */
    LLMOS_ERR_EXISTS,      /* a thing to be created already exists */
    LLMOS_ERR_UNSUPPORTED, /* valid but not handled by this build (type, version, feature) */
    LLMOS_ERR_LIMIT,       /* a size, count or budget limit was exceeded */
    LLMOS_ERR_CRYPTO,      /* authentication failed: tampered or corrupt sealed data */
    LLMOS_ERR_AUTH,        /* wrong passphrase, key or credential */
    LLMOS_ERR_DENIED,      /* refused by a capability or policy check */
    LLMOS_ERR_NETWORK,     /* a network peer could not be reached or misbehaved */
    LLMOS_ERR_CANCELLED,   /* stopped on request */
    LLMOS_ERR_BUSY,        /* resource in use; try again */
    LLMOS_ERR_INTERNAL,    /* a bug in llmos: please report it */
    LLMOS_ERR_CONTEXT,     /* the input does not fit the model's context window */
    LLMOS_ERR_COUNT_
} llmos_err;

/* Short fixed name of an error code ("invalid argument", ...). Never NULL. */
LLMOS_API const char *llmos_strerror(llmos_err err);

/* Record a detail message for the calling thread and return `err`, so that error paths read
 * `return llmos_fail(LLMOS_ERR_FORMAT, "%s: offset %zu: ...", path, off);` */
LLMOS_API llmos_err llmos_fail(llmos_err err, const char *fmt, ...) LLMOS_PRINTF(2, 3);

/* Put context in front of the current detail message ("loading model.gguf: " + detail) and
 * return `err`. Used by callers that add where an inner failure happened. */
LLMOS_API llmos_err llmos_fail_context(llmos_err err, const char *fmt, ...) LLMOS_PRINTF(2, 3);

/* The calling thread's last detail message, or the code's name if none was recorded since the
 * last llmos_err_clear(). Valid until the next llmos_fail* on this thread. */
LLMOS_API const char *llmos_errmsg(void);

/* Forget the calling thread's detail message. */
LLMOS_API void llmos_err_clear(void);

/* ---- arena ------------------------------------------------------------------------------- */

/* A bump allocator for data that dies together (one request, one parse). Allocations are
 * 16-byte aligned and zeroed; nothing is freed one by one; arena_free releases everything. */
typedef struct llmos_arena llmos_arena;

/* New arena whose blocks are at least `block_size` bytes (0 = 64 KiB). NULL when out of memory. */
LLMOS_API llmos_arena *arena_new(size_t block_size);
LLMOS_API void arena_free(llmos_arena *a);
/* Drop all allocations but keep the first block for reuse. */
LLMOS_API void arena_reset(llmos_arena *a);
/* Zeroed, 16-byte aligned memory; NULL on overflow or out of memory. */
LLMOS_API void *arena_alloc(llmos_arena *a, size_t n);
/* n * size bytes with overflow check. */
LLMOS_API void *arena_calloc(llmos_arena *a, size_t n, size_t size);
LLMOS_API char *arena_strndup(llmos_arena *a, const char *s, size_t n);
LLMOS_API char *arena_strdup(llmos_arena *a, const char *s);
LLMOS_API char *arena_printf(llmos_arena *a, const char *fmt, ...) LLMOS_PRINTF(2, 3);
/* Total bytes handed out since creation or the last reset. */
LLMOS_API size_t arena_used(const llmos_arena *a);

/* ---- byte buffer ------------------------------------------------------------------------- */

/* A growable byte string. `data` is always NUL-terminated when non-NULL (the NUL is not
 * counted in len), so a buffer of text can be passed as a C string. Zero-initialise or call
 * buf_init. The buffer owns `data`; buf_free releases it, buf_detach hands it over. */
typedef struct llmos_buf {
    char *data;
    size_t len;
    size_t cap;
} llmos_buf;

LLMOS_API void buf_init(llmos_buf *b);
LLMOS_API void buf_free(llmos_buf *b);
/* Make room for `extra` more bytes. */
LLMOS_API LLMOS_NODISCARD llmos_err buf_reserve(llmos_buf *b, size_t extra);
LLMOS_API LLMOS_NODISCARD llmos_err buf_append(llmos_buf *b, const void *data, size_t n);
LLMOS_API LLMOS_NODISCARD llmos_err buf_puts(llmos_buf *b, const char *s);
LLMOS_API LLMOS_NODISCARD llmos_err buf_putc(llmos_buf *b, char c);
LLMOS_API LLMOS_NODISCARD llmos_err buf_printf(llmos_buf *b, const char *fmt, ...)
    LLMOS_PRINTF(2, 3);
LLMOS_API LLMOS_NODISCARD llmos_err buf_vprintf(llmos_buf *b, const char *fmt, va_list ap);
/* Length to 0, capacity kept. */
LLMOS_API void buf_clear(llmos_buf *b);
/* Hand the bytes to the caller (free() them); the buffer becomes empty. Never NULL unless
 * out of memory: an empty buffer yields "". */
LLMOS_API char *buf_detach(llmos_buf *b, size_t *len);

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Decode one code point from s[0..n). Returns its length in bytes (1-4) and stores the code
 * point, or 0 when the bytes there are not well-formed UTF-8 (overlongs, surrogates, values
 * above U+10FFFF and truncated sequences are all rejected). */
LLMOS_API size_t utf8_decode(const char *s, size_t n, uint32_t *cp);
/* Encode a code point (<= U+10FFFF, not a surrogate) into out[0..4); returns the length, or 0
 * for a value that cannot be encoded. */
LLMOS_API size_t utf8_encode(uint32_t cp, char out[4]);
/* Length of the longest prefix of s[0..n) that is well-formed UTF-8. */
LLMOS_API size_t utf8_valid_prefix(const char *s, size_t n);
static inline bool utf8_valid(const char *s, size_t n)
{
    return utf8_valid_prefix(s, n) == n;
}
/* Number of bytes at the end of s[0..n) that begin a well-formed sequence not yet complete
 * (0-3). A streaming decoder holds those back until the next token arrives. */
LLMOS_API size_t utf8_incomplete_tail(const char *s, size_t n);

/* ---- logging ----------------------------------------------------------------------------- */

/* Levels, from chatty to quiet. LLMOS_LOG=debug|info|warn|error|off sets the threshold
 * (default warn). Messages go to stderr as "llmos[component] level: text". Never pass secrets
 * (passphrases, keys, tokens, user content under protection) to these functions. */
typedef enum llmos_log_level {
    LLMOS_LOG_DEBUG,
    LLMOS_LOG_INFO,
    LLMOS_LOG_WARN,
    LLMOS_LOG_ERROR,
    LLMOS_LOG_OFF
} llmos_log_level;

LLMOS_API void llmos_log_set_level(llmos_log_level level);
LLMOS_API llmos_log_level llmos_log_get_level(void);
/* Parse "debug".."off"; false if unknown. */
LLMOS_API bool llmos_log_parse_level(const char *s, llmos_log_level *out);
/* Send lines to `fn` instead of stderr (NULL restores stderr). For tests and the shell. */
typedef void (*llmos_log_sink)(llmos_log_level level, const char *component, const char *msg,
                               void *ctx);
LLMOS_API void llmos_log_set_sink(llmos_log_sink fn, void *ctx);
LLMOS_API void llmos_log(llmos_log_level level, const char *component, const char *fmt, ...)
    LLMOS_PRINTF(3, 4);

#define LOG_DEBUG(comp, ...) llmos_log(LLMOS_LOG_DEBUG, comp, __VA_ARGS__)
#define LOG_INFO(comp, ...)  llmos_log(LLMOS_LOG_INFO, comp, __VA_ARGS__)
#define LOG_WARN(comp, ...)  llmos_log(LLMOS_LOG_WARN, comp, __VA_ARGS__)
#define LOG_ERROR(comp, ...) llmos_log(LLMOS_LOG_ERROR, comp, __VA_ARGS__)

/* ---- thread pool ------------------------------------------------------------------------- */

/* A fixed set of worker threads for data-parallel loops (the inference kernels). The calling
 * thread takes part as worker 0, so a pool of n threads starts n-1. Workers spin briefly
 * between jobs (dispatch costs microseconds, which matters at hundreds of jobs per token) and
 * then sleep. One parallel_for runs at a time per pool. */
typedef struct llmos_pool llmos_pool;

/* The thread count to use when the caller does not say: LLMOS_THREADS if set and valid,
 * else the number of CPUs this process may run on. */
LLMOS_API int pool_default_threads(void);
/* n_threads <= 0 means pool_default_threads(). */
LLMOS_API LLMOS_NODISCARD llmos_err pool_new(int n_threads, llmos_pool **out);
LLMOS_API void pool_free(llmos_pool *p);
LLMOS_API int pool_threads(const llmos_pool *p);

/* fn(ctx, begin, end, worker) over [0, n) split into one contiguous range per worker, each a
 * multiple of `grain` long (except the last), so workers write to disjoint cache lines when
 * grain covers one. Returns when all ranges are done. A NULL pool runs fn inline. */
typedef void (*pool_range_fn)(void *ctx, size_t begin, size_t end, int worker);
LLMOS_API void pool_parallel_for(llmos_pool *p, size_t n, size_t grain, pool_range_fn fn,
                                 void *ctx);
/* As pool_parallel_for, but [0, n) is cut into ranges of `chunk` (the last may be shorter)
 * that workers claim one at a time, so a worker slowed down (by another process, a page
 * fault) takes fewer of them instead of holding everyone up. A worker may call fn many times;
 * ranges are disjoint and cover [0, n) exactly once. */
LLMOS_API void pool_parallel_for_dynamic(llmos_pool *p, size_t n, size_t chunk, pool_range_fn fn,
                                         void *ctx);

/* ---- files ------------------------------------------------------------------------------- */

/* A read-only memory map of a whole file. */
typedef struct llmos_map {
    const uint8_t *data;
    size_t size;
} llmos_map;

LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_map(const char *path, llmos_map *out);
LLMOS_API void llmos_file_unmap(llmos_map *m);

/* Zeroed anonymous memory of `size` bytes, 2 MiB aligned and advised for transparent huge
 * pages: for large read-mostly data such as model weights, where 4 KiB pages would cost a TLB
 * miss (two-level under virtualisation) every 4 KiB. NULL when the system refuses. */
LLMOS_API void *llmos_huge_alloc(size_t size);
LLMOS_API void llmos_huge_free(void *p, size_t size);
/* Read a whole file into `out` (appended); fails with LLMOS_ERR_LIMIT past max_bytes. */
LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_read_all(const char *path, size_t max_bytes,
                                                        llmos_buf *out);
/* Replace `path` with `data` so that a crash leaves either the old or the new file: write a
 * temporary file beside it, fsync, rename over, fsync the directory. `mode` as for open(2). */
LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_write_atomic(const char *path, const void *data,
                                                            size_t n, unsigned mode);
/* Create a new file beside `path` for a write that will be renamed over it: named
 * "<path>.tmp.<pid>", or with a random suffix as well when that name is taken, opened write-only
 * with O_EXCL | O_NOFOLLOW, so that nothing already at the name (a file, a symbolic link
 * planted by someone else) is opened or written through. *fd is the open file; *tmp_path its
 * name (malloc'd: the caller frees it, and unlinks the file on failure). */
LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_create_temp(const char *path, unsigned mode, int *fd,
                                                           char **tmp_path);
/* fsync the directory that holds `path`, so that a rename into it survives a power cut. */
LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_sync_dir(const char *path);
/* Create a directory and its parents (like mkdir -p) with `mode`. */
LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_mkdirs(const char *path, unsigned mode);
/* A directory for secrets (the llmos home, a store): created with mode 0700 (parents too) when
 * missing; LLMOS_ERR_DENIED, with a message saying how to fix it, when it belongs to another
 * user or group or others may write to it. */
LLMOS_API LLMOS_NODISCARD llmos_err llmos_file_private_dir(const char *path);
/* Overwrite memory in a way the compiler may not remove (key material, passphrases). */
LLMOS_API void llmos_secure_zero(void *p, size_t n);

/* ---- CPU features ------------------------------------------------------------------------ */

typedef struct llmos_cpu {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16;
    bool avx_vnni;
    bool amx_tile, amx_int8, amx_bf16; /* only when the OS lets this process use the tiles */
    int n_cpus;                        /* CPUs this process may run on */
    char brand[49];
} llmos_cpu;

/* Detected once (thread-safe) and cached. Each flag is set only when the CPU has the feature
 * and the OS saves its registers (XCR0); AMX also asks Linux for permission to use tiles. */
LLMOS_API const llmos_cpu *llmos_cpu_features(void);
/* Space-separated names of the features present, e.g. "avx2 fma f16c avx512f ...". */
LLMOS_API void llmos_cpu_features_string(const llmos_cpu *cpu, char *out, size_t size);

/* ---- bytes ------------------------------------------------------------------------------- */

/* Fixed-width integers at any alignment in a stated byte order, whatever the host's: little
 * endian for llmos's own formats (sealed-page and key-file associated data, the vector index
 * file), big endian where SQLite's formats say so (WAL frame and journal headers). */
static inline uint16_t llmos_load_be16(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t llmos_load_be32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static inline uint32_t llmos_load_le32(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static inline uint64_t llmos_load_le64(const void *p)
{
    const uint8_t *b = (const uint8_t *)p;
    return (uint64_t)llmos_load_le32(b) | (uint64_t)llmos_load_le32(b + 4) << 32;
}

static inline void llmos_store_le32(void *p, uint32_t v)
{
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static inline void llmos_store_le64(void *p, uint64_t v)
{
    uint8_t *b = (uint8_t *)p;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

/* Lower-case hex of bin[0..n) in out, NUL-terminated, in time that does not depend on the
 * bytes (they may be hashes or keys). out_size must be at least 2n + 1. Returns out. */
LLMOS_API char *llmos_hex_encode(char *out, size_t out_size, const void *bin, size_t n);

/* ---- misc -------------------------------------------------------------------------------- */

/* Levenshtein distance between a[0..na) and b[0..nb): the fewest one-byte insertions,
 * deletions and substitutions that turn one into the other. For "did you mean" suggestions
 * among names. SIZE_MAX when out of memory (only strings over 128 bytes allocate). */
LLMOS_API size_t llmos_edit_distance(const char *a, size_t na, const char *b, size_t nb);

/* Monotonic time in seconds. */
LLMOS_API double llmos_time_now(void);

#define LLMOS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
