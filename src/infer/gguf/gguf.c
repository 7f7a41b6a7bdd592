/*
 * gguf.c - the GGUF reader and writer (API and format notes in llmos/gguf.h).
 *
 * Layout, from the GGUF specification (ggml docs/gguf.md), all little-endian:
 *
 *   uint32 magic "GGUF" | uint32 version | uint64 tensor_count | uint64 metadata_kv_count
 *   metadata_kv_count x { string key | uint32 value_type | value }
 *   tensor_count x { string name | uint32 n_dims | uint64 ne[n_dims] | uint32 ggml_type |
 *                    uint64 offset (from the data section's start, multiple of alignment) }
 *   padding to general.alignment (default 32)
 *   tensor data
 *
 * where string = uint64 length + bytes (no NUL) and an array value = uint32 element type +
 * uint64 count + the elements (each a value of that type without its own type field).
 * Version 1 used 32-bit counts and lengths; version 3 only added big-endian files.
 *
 * The reader makes one pass over the header with a cursor that checks every read against the
 * bytes left before it happens, so no count or length from the file is trusted before it is
 * known to fit: counts are first compared with what the remaining bytes could hold at the
 * least size per item, which also bounds every allocation by a small multiple of the file size.
 * The pass builds a table of values (one per key, plus one per element of an array of arrays),
 * an offset table for the elements of string arrays (random access into 150k-token
 * vocabularies), hash tables for keys and tensor names (which also catch duplicates), and the
 * tensor table. Tensor data is then checked as a whole: sizes from the type table in quant/quant.c,
 * alignment, bounds, and no two tensors overlapping.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "llmos/gguf.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads and writes little-endian GGUF by memcpy: port it for big-endian hosts"
#endif

/* Nesting limit for arrays of arrays: the format sets none; real files nest not at all. */
#define GGUF_MAX_DEPTH 8
/* Least bytes one metadata pair takes: key length (8) + type (4) + a one-byte value. */
#define GGUF_MIN_KV_BYTES 13
/* Least bytes one tensor info takes: name length (8) + n_dims (4) + type (4) + offset (8). */
#define GGUF_MIN_TENSOR_BYTES 24
/* Least bytes of one element of an array of arrays: element type (4) + count (8). */
#define GGUF_MIN_ARRAY_BYTES 12

typedef unsigned long long ull; /* for printf of uint64_t without PRIu64 noise */

/* ---- value types ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} type_info[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = {"uint8", 1},     [GGUF_TYPE_INT8] = {"int8", 1},
    [GGUF_TYPE_UINT16] = {"uint16", 2},   [GGUF_TYPE_INT16] = {"int16", 2},
    [GGUF_TYPE_UINT32] = {"uint32", 4},   [GGUF_TYPE_INT32] = {"int32", 4},
    [GGUF_TYPE_FLOAT32] = {"float32", 4}, [GGUF_TYPE_BOOL] = {"bool", 1},
    [GGUF_TYPE_STRING] = {"string", 0},   [GGUF_TYPE_ARRAY] = {"array", 0},
    [GGUF_TYPE_UINT64] = {"uint64", 8},   [GGUF_TYPE_INT64] = {"int64", 8},
    [GGUF_TYPE_FLOAT64] = {"float64", 8},
};

const char *gguf_type_name(gguf_type type)
{
    return (unsigned)type < GGUF_TYPE_COUNT ? type_info[type].name : "?";
}

size_t gguf_type_size(gguf_type type)
{
    return (unsigned)type < GGUF_TYPE_COUNT ? type_info[type].size : 0;
}

static bool type_is_int(gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64: return true;
    default: return false;
    }
}

/* An integer of any GGUF integer type, widened without loss. */
typedef struct wide_int {
    bool neg;   /* the value is negative: it is `s` */
    int64_t s;  /* valid when neg */
    uint64_t u; /* valid when !neg */
} wide_int;

static wide_int decode_int(gguf_type t, const uint8_t *p)
{
    wide_int w = {0};
    int64_t s = 0;
    switch (t) {
    /* NOLINTBEGIN(clang-analyzer-core.NonNullParamChecker,bugprone-signed-char-misuse): p points
     * into the mapped file (never NULL); int8_t is sign-extended on purpose (a GGUF INT8). */
    case GGUF_TYPE_UINT8: {
        uint8_t v;
        memcpy(&v, p, 1);
        w.u = v;
        return w;
    }
    case GGUF_TYPE_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        w.u = v;
        return w;
    }
    case GGUF_TYPE_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        w.u = v;
        return w;
    }
    case GGUF_TYPE_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        w.u = v;
        return w;
    }
    case GGUF_TYPE_INT8: {
        int8_t v;
        memcpy(&v, p, 1);
        s = v;
        break;
    }
    case GGUF_TYPE_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        s = v;
        break;
    }
    case GGUF_TYPE_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        s = v;
        break;
    }
    case GGUF_TYPE_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        s = v;
        break;
    }
    /* NOLINTEND(clang-analyzer-core.NonNullParamChecker,bugprone-signed-char-misuse) */
    default: assert(!"not an integer type"); return w;
    }
    if (s < 0) {
        w.neg = true;
        w.s = s;
    } else {
        w.u = (uint64_t)s;
    }
    return w;
}

static double decode_f64(gguf_type t, const uint8_t *p)
{
    if (t == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        return v;
    }
    if (t == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, p, 8);
        return v;
    }
    wide_int w = decode_int(t, p);
    return w.neg ? (double)w.s : (double)w.u;
}

/* ---- the file ---------------------------------------------------------------------------- */

typedef struct gguf_val {
    gguf_type type;
    gguf_type elem_type; /* arrays */
    uint64_t n;          /* array count, or string length */
    uint64_t offset;     /* file offset of the value's encoding (after its type field) */
    uint64_t size;       /* bytes of the encoding */
    uint64_t first;      /* string arrays: index in str_off; arrays of arrays: first child id */
    const char *str;     /* scalar strings: NUL-terminated copy */
} gguf_val;

/* Open-addressing hash set of indices (stored + 1; 0 is an empty slot). */
typedef struct name_set {
    size_t *slots;
    size_t cap; /* a power of two */
} name_set;

struct gguf_file {
    char *name;
    llmos_map map; /* when opened from a path */
    const uint8_t *data;
    size_t size;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    llmos_arena *arena; /* keys, tensor names, scalar strings */
    size_t n_kv;
    const char **keys;
    uint64_t *key_off; /* where each pair begins, for messages */
    gguf_val *vals;
    size_t n_vals, cap_vals;
    uint64_t *str_off; /* file offset of each string-array element's length field */
    size_t n_str, cap_str;
    gguf_tensor *tensors;
    size_t n_tensors;
    name_set key_set, tensor_set;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static llmos_err set_init(name_set *s, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    s->slots = calloc(cap, sizeof *s->slots);
    s->cap = cap;
    return s->slots ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
}

/* Find `name` among names[] through the set: its index, or -1 (and the free slot in *slot). */
static int64_t set_find(const name_set *s, const char *const *names, const char *name, size_t *slot)
{
    if (!s->cap)
        return -1;
    size_t mask = s->cap - 1;
    size_t i = (size_t)hash_bytes(name, strlen(name)) & mask;
    while (s->slots[i]) {
        size_t idx = s->slots[i] - 1;
        if (strcmp(names[idx], name) == 0)
            return (int64_t)idx;
        i = (i + 1) & mask;
    }
    if (slot)
        *slot = i;
    return -1;
}

/* Printable, shortened form of outside bytes for messages. */
static const char *show(const char *s, size_t n, char *out, size_t out_size)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < out_size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, out_size - o, "\\x%02x", c);
            o += 4;
        }
        if (i + 1 < n && o + 5 >= out_size) {
            out[o - 1] = '.'; /* mark the cut */
            break;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- the cursor -------------------------------------------------------------------------- */

typedef struct cursor {
    gguf_file *f;
    uint64_t pos;
    char what[200]; /* the item being read, for messages: "key 3 'llama.block_count'" */
} cursor;

static uint64_t left(const cursor *c)
{
    return (uint64_t)c->f->size - c->pos;
}

static llmos_err need(cursor *c, uint64_t n, const char *field)
{
    if (n <= left(c))
        return LLMOS_OK;
    return llmos_fail(LLMOS_ERR_FORMAT,
                      "%s: offset %llu: %s%s%s: file ends inside it (needs %llu bytes, %llu "
                      "left); the file is truncated or corrupt",
                      c->f->name, (ull)c->pos, c->what, *c->what ? ": " : "", field, (ull)n,
                      (ull)left(c));
}

static llmos_err rd_u32(cursor *c, const char *field, uint32_t *v)
{
    llmos_err err = need(c, 4, field);
    if (err)
        return err;
    memcpy(v, c->f->data + c->pos, 4);
    c->pos += 4;
    return LLMOS_OK;
}

static llmos_err rd_u64(cursor *c, const char *field, uint64_t *v)
{
    llmos_err err = need(c, 8, field);
    if (err)
        return err;
    memcpy(v, c->f->data + c->pos, 8);
    c->pos += 8;
    return LLMOS_OK;
}

/* A string: its bytes' offset and length; the cursor moves past it. */
static llmos_err rd_str(cursor *c, const char *field, uint64_t *off, uint64_t *len)
{
    uint64_t at = c->pos;
    llmos_err err = rd_u64(c, field, len);
    if (err)
        return err;
    if (*len > left(c)) {
        c->pos = at;
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset %llu: %s%s%s: string length %llu is longer than the %llu "
                          "bytes left in the file",
                          c->f->name, (ull)at, c->what, *c->what ? ": " : "", field, (ull)*len,
                          (ull)left(c));
    }
    *off = c->pos;
    c->pos += *len;
    return LLMOS_OK;
}

static llmos_err fail_at(cursor *c, uint64_t at, llmos_err code, const char *fmt, ...)
    LLMOS_PRINTF(4, 5);
static llmos_err fail_at(cursor *c, uint64_t at, llmos_err code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return llmos_fail(code, "%s: offset %llu: %s%s%s", c->f->name, (ull)at, c->what,
                      *c->what ? ": " : "", msg);
}

/* ---- parsing ----------------------------------------------------------------------------- */

static llmos_err grow(void **p, size_t *cap, size_t need_n, size_t elem)
{
    if (need_n <= *cap)
        return LLMOS_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need_n)
        n *= 2;
    if (n > SIZE_MAX / elem)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    void *q = realloc(*p, n * elem);
    if (!q)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    *p = q;
    *cap = n;
    return LLMOS_OK;
}

/* Reserve `n` consecutive value slots; their first id in *first. */
static llmos_err add_vals(gguf_file *f, uint64_t n, size_t *first)
{
    llmos_err err = grow((void **)&f->vals, &f->cap_vals, f->n_vals + (size_t)n, sizeof *f->vals);
    if (err)
        return err;
    *first = f->n_vals;
    if (n)
        memset(f->vals + f->n_vals, 0, (size_t)n * sizeof *f->vals);
    f->n_vals += (size_t)n;
    return LLMOS_OK;
}

static llmos_err parse_value(cursor *c, gguf_type type, size_t id, int depth, bool scalar);

/* The elements of an array value whose element type and count have been read. */
static llmos_err parse_array_body(cursor *c, size_t id, uint32_t et, uint64_t n, uint64_t at,
                                  int depth)
{
    gguf_file *f = c->f;
    if (et >= GGUF_TYPE_COUNT)
        return fail_at(c, at, LLMOS_ERR_FORMAT,
                       "array element type %u is not a GGUF value type (0..%d)", et,
                       GGUF_TYPE_COUNT - 1);
    f->vals[id].elem_type = (gguf_type)et;
    f->vals[id].n = n;
    size_t esz = type_info[et].size;
    if (esz) {
        if (n > left(c) / esz)
            return fail_at(c, at, LLMOS_ERR_FORMAT,
                           "array of %llu %s needs %llu bytes or more but only %llu are left",
                           (ull)n, type_info[et].name,
                           (ull)(n > UINT64_MAX / esz ? UINT64_MAX : n * esz), (ull)left(c));
        if (et == GGUF_TYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (f->data[c->pos + i] > 1)
                    return fail_at(c, c->pos + i, LLMOS_ERR_FORMAT,
                                   "bool element %llu is %u, expected 0 or 1", (ull)i,
                                   f->data[c->pos + i]);
        c->pos += n * esz;
        return LLMOS_OK;
    }
    if (et == GGUF_TYPE_STRING) {
        if (n > left(c) / 8)
            return fail_at(c, at, LLMOS_ERR_FORMAT,
                           "array of %llu strings cannot fit in the %llu bytes left", (ull)n,
                           (ull)left(c));
        llmos_err err =
            grow((void **)&f->str_off, &f->cap_str, f->n_str + (size_t)n, sizeof *f->str_off);
        if (err)
            return err;
        f->vals[id].first = f->n_str;
        for (uint64_t i = 0; i < n; i++) {
            f->str_off[f->n_str++] = c->pos;
            /* the common case inline (vocabularies hold 100k+ strings); rd_str words errors */
            uint64_t len;
            if (left(c) >= 8) {
                memcpy(&len, f->data + c->pos, 8);
                if (len <= left(c) - 8) {
                    c->pos += 8 + len;
                    continue;
                }
            }
            char field[48];
            snprintf(field, sizeof field, "string element %llu", (ull)i);
            uint64_t off;
            err = rd_str(c, field, &off, &len);
            assert(err);
            return err;
        }
        return LLMOS_OK;
    }
    /* an array of arrays: each element is an array value of its own */
    if (depth >= GGUF_MAX_DEPTH)
        return fail_at(c, at, LLMOS_ERR_FORMAT, "arrays nested deeper than %d levels",
                       GGUF_MAX_DEPTH);
    if (n > left(c) / GGUF_MIN_ARRAY_BYTES)
        return fail_at(c, at, LLMOS_ERR_FORMAT,
                       "array of %llu arrays cannot fit in the %llu bytes left", (ull)n,
                       (ull)left(c));
    size_t first;
    llmos_err err = add_vals(f, n, &first);
    if (err)
        return err;
    f->vals[id].first = first;
    for (uint64_t i = 0; i < n; i++)
        if ((err = parse_value(c, GGUF_TYPE_ARRAY, first + (size_t)i, depth + 1, false)))
            return err;
    return LLMOS_OK;
}

/* Parse one value of `type` at the cursor into vals[id]. `scalar` strings are copied. */
static llmos_err parse_value(cursor *c, gguf_type type, size_t id, int depth, bool scalar)
{
    gguf_file *f = c->f;
    uint64_t at = c->pos;
    llmos_err err;
    f->vals[id].type = type;
    f->vals[id].offset = at;
    f->vals[id].elem_type = GGUF_TYPE_COUNT;
    size_t esz = type_info[type].size;
    if (esz) {
        if ((err = need(c, esz, "value")))
            return err;
        if (type == GGUF_TYPE_BOOL && f->data[at] > 1)
            return fail_at(c, at, LLMOS_ERR_FORMAT, "bool value is %u, expected 0 or 1",
                           f->data[at]);
        c->pos += esz;
    } else if (type == GGUF_TYPE_STRING) {
        uint64_t off, len;
        if ((err = rd_str(c, "string value", &off, &len)))
            return err;
        f->vals[id].n = len;
        if (scalar) {
            char *s = arena_strndup(f->arena, (const char *)f->data + off, (size_t)len);
            if (!s)
                return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            f->vals[id].str = s;
        }
    } else {
        uint32_t et;
        uint64_t n;
        if ((err = rd_u32(c, "array element type", &et)) || (err = rd_u64(c, "array count", &n)))
            return err;
        if ((err = parse_array_body(c, id, et, n, at, depth)))
            return err;
    }
    f->vals[id].size = c->pos - at;
    return LLMOS_OK;
}

static llmos_err parse_kvs(cursor *c, uint64_t n_kv)
{
    gguf_file *f = c->f;
    size_t first;
    llmos_err err = add_vals(f, n_kv, &first);
    if (err)
        return err;
    assert(first == 0);
    f->n_kv = (size_t)n_kv;
    f->keys = arena_calloc(f->arena, f->n_kv ? f->n_kv : 1, sizeof *f->keys);
    f->key_off = arena_calloc(f->arena, f->n_kv ? f->n_kv : 1, sizeof *f->key_off);
    if (!f->keys || !f->key_off)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if ((err = set_init(&f->key_set, f->n_kv)))
        return err;
    for (size_t i = 0; i < f->n_kv; i++) {
        uint64_t at = c->pos, off = 0, len = 0;
        snprintf(c->what, sizeof c->what, "key %zu", i);
        if ((err = rd_str(c, "name", &off, &len)))
            return err;
        const char *raw = (const char *)f->data + off;
        char shown[96];
        show(raw, (size_t)len, shown, sizeof shown);
        snprintf(c->what, sizeof c->what, "key %zu '%s'", i, shown);
        if (memchr(raw, 0, (size_t)len))
            return fail_at(c, at, LLMOS_ERR_FORMAT, "key name contains a NUL byte");
        char *key = arena_strndup(f->arena, raw, (size_t)len);
        if (!key)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        size_t slot = 0;
        int64_t dup = set_find(&f->key_set, f->keys, key, &slot);
        if (dup >= 0)
            return fail_at(c, at, LLMOS_ERR_FORMAT, "duplicate key (also key %lld at offset %llu)",
                           (long long)dup, (ull)f->key_off[dup]);
        f->keys[i] = key;
        f->key_off[i] = at;
        f->key_set.slots[slot] = i + 1;
        uint64_t tat = c->pos;
        uint32_t type;
        if ((err = rd_u32(c, "value type", &type)))
            return err;
        if (type >= GGUF_TYPE_COUNT)
            return fail_at(c, tat, LLMOS_ERR_FORMAT,
                           "value type %u is not a GGUF value type "
                           "(0..%d)",
                           type, GGUF_TYPE_COUNT - 1);
        if ((err = parse_value(c, (gguf_type)type, i, 0, true)))
            return err;
    }
    c->what[0] = '\0';
    return LLMOS_OK;
}

static llmos_err parse_tensor_infos(cursor *c, uint64_t n)
{
    gguf_file *f = c->f;
    f->n_tensors = (size_t)n;
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->tensors)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err = set_init(&f->tensor_set, f->n_tensors);
    if (err)
        return err;
    /* set_find compares against names[]; tensor names are reached through this view */
    const char **names = arena_calloc(f->arena, f->n_tensors ? f->n_tensors : 1, sizeof *names);
    if (!names)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t at = c->pos, off = 0, len = 0;
        t->info_offset = at;
        snprintf(c->what, sizeof c->what, "tensor %zu", i);
        if ((err = rd_str(c, "name", &off, &len)))
            return err;
        const char *raw = (const char *)f->data + off;
        char shown[96];
        show(raw, (size_t)len, shown, sizeof shown);
        snprintf(c->what, sizeof c->what, "tensor %zu '%s'", i, shown);
        if (memchr(raw, 0, (size_t)len))
            return fail_at(c, at, LLMOS_ERR_FORMAT, "tensor name contains a NUL byte");
        char *name = arena_strndup(f->arena, raw, (size_t)len);
        if (!name)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        size_t slot = 0;
        int64_t dup = set_find(&f->tensor_set, names, name, &slot);
        if (dup >= 0)
            return fail_at(c, at, LLMOS_ERR_FORMAT,
                           "duplicate tensor name (also tensor %lld at offset %llu)",
                           (long long)dup, (ull)f->tensors[dup].info_offset);
        names[i] = name;
        t->name = name;
        f->tensor_set.slots[slot] = i + 1;

        uint64_t dat = c->pos;
        if ((err = rd_u32(c, "n_dims", &t->n_dims)))
            return err;
        if (t->n_dims > 4)
            return fail_at(c, dat, LLMOS_ERR_FORMAT, "n_dims is %u, at most 4 are allowed",
                           t->n_dims);
        t->n_elements = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims)
                continue;
            uint64_t nat = c->pos;
            char field[16];
            snprintf(field, sizeof field, "ne[%u]", d);
            if ((err = rd_u64(c, field, &t->ne[d])))
                return err;
            if (t->ne[d] == 0)
                return fail_at(c, nat, LLMOS_ERR_FORMAT, "dimension %u is 0", d);
            if (t->ne[d] > (uint64_t)INT64_MAX / t->n_elements)
                return fail_at(c, nat, LLMOS_ERR_FORMAT,
                               "dimensions overflow: %llu elements times ne[%u]=%llu exceeds "
                               "2^63",
                               (ull)t->n_elements, d, (ull)t->ne[d]);
            t->n_elements *= t->ne[d];
        }
        uint64_t tat = c->pos;
        uint32_t type;
        if ((err = rd_u32(c, "type", &type)))
            return err;
        const quant_traits *qt = quant_traits_of((ggml_type)type);
        if (!qt)
            return fail_at(c, tat, LLMOS_ERR_UNSUPPORTED,
                           "unknown tensor type %u (not a ggml type this build knows)", type);
        t->type = (ggml_type)type;
        if (t->ne[0] % qt->block_size != 0)
            return fail_at(c, tat, LLMOS_ERR_FORMAT,
                           "row of %llu elements is not a multiple of %s's block size %zu",
                           (ull)t->ne[0], qt->name, qt->block_size);
        if (!quant_row_size(t->type, t->n_elements, &t->size))
            return fail_at(c, tat, LLMOS_ERR_FORMAT, "size of %llu %s elements overflows",
                           (ull)t->n_elements, qt->name);
        if ((err = rd_u64(c, "data offset", &t->offset)))
            return err;
    }
    c->what[0] = '\0';
    return LLMOS_OK;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Alignment, data section, and every tensor's bytes. */
static llmos_err check_layout(cursor *c)
{
    gguf_file *f = c->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t id = gguf_find_key(f, "general.alignment");
    if (id >= 0) {
        const gguf_val *v = &f->vals[id];
        snprintf(c->what, sizeof c->what, "key %lld 'general.alignment'", (long long)id);
        if (!type_is_int(v->type))
            return fail_at(c, v->offset, LLMOS_ERR_FORMAT, "has type %s, expected uint32",
                           type_info[v->type].name);
        wide_int w = decode_int(v->type, f->data + v->offset);
        if (w.neg || w.u == 0 || w.u > UINT32_MAX || (w.u & (w.u - 1)) != 0)
            return fail_at(c, v->offset, LLMOS_ERR_FORMAT,
                           "alignment %s%llu is not a power of two between 1 and 2^31",
                           w.neg ? "-" : "", w.neg ? (ull)(-(w.s + 1)) + 1 : (ull)w.u);
        f->alignment = (uint32_t)w.u;
        c->what[0] = '\0';
    }
    /* The data section starts at the next multiple of the alignment. A file without tensors
     * may end before it (writers differ on that padding). */
    uint64_t a = f->alignment;
    f->data_offset = (c->pos + a - 1) / a * a;
    if (f->n_tensors == 0)
        return LLMOS_OK;
    if (f->data_offset > f->size)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset %llu: the file ends in the padding before the tensor data "
                          "(data would start at %llu, file has %zu bytes)",
                          f->name, (ull)c->pos, (ull)f->data_offset, f->size);
    uint64_t room = f->size - f->data_offset;
    gguf_tensor **order =
        malloc(f->n_tensors * sizeof *order); // NOLINT(bugprone-sizeof-expression): order is an
                                              // array of pointers; sizeof *order is one pointer
    if (!order)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; i < f->n_tensors && !err; i++) {
        gguf_tensor *t = &f->tensors[i];
        order[i] = t;
        if (t->offset % a != 0)
            err =
                llmos_fail(LLMOS_ERR_FORMAT,
                           "%s: offset %llu: tensor %zu '%s': data offset %llu is not a "
                           "multiple of the alignment %u",
                           f->name, (ull)t->info_offset, i, t->name, (ull)t->offset, f->alignment);
        else if (t->offset > room || t->size > room - t->offset)
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "%s: offset %llu: tensor %zu '%s': data runs past end of file "
                             "(needs %llu bytes at %llu, file has %zu)",
                             f->name, (ull)t->info_offset, i, t->name, (ull)t->size,
                             (ull)f->data_offset + (ull)t->offset, f->size);
        else
            t->data = f->data + f->data_offset + t->offset;
    }
    if (!err) {
        /* order is an array of pointers; sizeof *order is one pointer */
        // NOLINTNEXTLINE(bugprone-sizeof-expression)
        qsort(order, f->n_tensors, sizeof *order, cmp_by_offset);
        for (size_t i = 1; i < f->n_tensors; i++) {
            const gguf_tensor *p = order[i - 1], *t = order[i];
            if (p->offset + p->size > t->offset) {
                err = llmos_fail(LLMOS_ERR_FORMAT,
                                 "%s: offset %llu: tensor %zu '%s': data at %llu overlaps "
                                 "tensor %zu '%s' (bytes %llu..%llu)",
                                 f->name, (ull)t->info_offset, (size_t)(t - f->tensors), t->name,
                                 (ull)(f->data_offset + t->offset), (size_t)(p - f->tensors),
                                 p->name, (ull)(f->data_offset + p->offset),
                                 (ull)(f->data_offset + p->offset + p->size));
                break;
            }
        }
    }
    free(order);
    return err;
}

static llmos_err parse(gguf_file *f)
{
    cursor c = {.f = f};
    if (f->size < 4 || memcmp(f->data, "GGUF", 4) != 0) {
        char shown[32];
        show((const char *)f->data, f->size < 4 ? f->size : 4, shown, sizeof shown);
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset 0: not a GGUF file (magic '%s', expected 'GGUF')", f->name,
                          shown);
    }
    c.pos = 4;
    uint32_t version;
    llmos_err err = rd_u32(&c, "version", &version);
    if (err)
        return err;
    f->version = version;
    if (version == 1)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: offset 4: GGUF version 1 is not supported (llmos reads versions "
                          "2 and 3); convert the model again with a current converter",
                          f->name);
    if (version == 0x02000000u || version == 0x03000000u)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: offset 4: big-endian GGUF is not supported; use a little-endian "
                          "copy of the model",
                          f->name);
    if (version != 2 && version != 3)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "%s: offset 4: unknown GGUF version %u (llmos reads versions 2 and 3)",
                          f->name, version);
    uint64_t n_tensors, n_kv;
    if ((err = rd_u64(&c, "tensor count", &n_tensors)) ||
        (err = rd_u64(&c, "metadata count", &n_kv)))
        return err;
    if (n_kv > left(&c) / GGUF_MIN_KV_BYTES)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset 16: metadata count %llu is more than the %llu bytes left "
                          "could hold (%d bytes per key at least)",
                          f->name, (ull)n_kv, (ull)left(&c), GGUF_MIN_KV_BYTES);
    if (n_tensors > (left(&c) - n_kv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TENSOR_BYTES)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset 8: tensor count %llu is more than the %llu bytes left "
                          "could hold (%d bytes per tensor info at least)",
                          f->name, (ull)n_tensors, (ull)left(&c), GGUF_MIN_TENSOR_BYTES);
    if ((err = parse_kvs(&c, n_kv)) || (err = parse_tensor_infos(&c, n_tensors)))
        return err;
    return check_layout(&c);
}

static llmos_err open_common(gguf_file *f, const char *name, gguf_file **out)
{
    f->name = strdup(name ? name : "(memory)");
    f->arena = arena_new(0);
    llmos_err err;
    if (!f->name || !f->arena)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    else
        err = parse(f);
    if (err) {
        gguf_close(f);
        return err;
    }
    *out = f;
    return LLMOS_OK;
}

llmos_err gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out)
{
    *out = NULL;
    if (!data && size)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf_open_memory: NULL data of %zu bytes", size);
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    f->data = data ? data : (const uint8_t *)"";
    f->size = size;
    return open_common(f, name, out);
}

llmos_err gguf_open(const char *path, gguf_file **out)
{
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err = llmos_file_map(path, &f->map);
    if (err) {
        free(f);
        return err;
    }
    f->data = f->map.data;
    f->size = f->map.size;
    return open_common(f, path, out);
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    llmos_file_unmap(&f->map);
    arena_free(f->arena);
    free(f->vals);
    free(f->str_off);
    free(f->tensors);
    free(f->key_set.slots);
    free(f->tensor_set.slots);
    free(f->name);
    free(f);
}

/* ---- reading: accessors ------------------------------------------------------------------ */

const char *gguf_name(const gguf_file *f)
{
    return f->name;
}
uint32_t gguf_version(const gguf_file *f)
{
    return f->version;
}
uint32_t gguf_alignment(const gguf_file *f)
{
    return f->alignment;
}
uint64_t gguf_data_offset(const gguf_file *f)
{
    return f->data_offset;
}
const uint8_t *gguf_bytes(const gguf_file *f)
{
    return f->data;
}
size_t gguf_size(const gguf_file *f)
{
    return f->size;
}
size_t gguf_n_kv(const gguf_file *f)
{
    return f->n_kv;
}

const char *gguf_key(const gguf_file *f, size_t i)
{
    return i < f->n_kv ? f->keys[i] : NULL;
}

int64_t gguf_find_key(const gguf_file *f, const char *key)
{
    return key ? set_find(&f->key_set, f->keys, key, NULL) : -1;
}

const char *gguf_architecture(const gguf_file *f)
{
    return gguf_get_str(f, "general.architecture", NULL);
}

int64_t gguf_find_arch_key(const gguf_file *f, const char *suffix)
{
    const char *arch = gguf_architecture(f);
    if (!arch || !suffix)
        return -1;
    size_t la = strlen(arch), ls = strlen(suffix);
    char stack[256];
    char *key = la + ls + 2 <= sizeof stack ? stack : malloc(la + ls + 2);
    if (!key)
        return -1;
    /* the suffix's copy below ends it */
    // NOLINTNEXTLINE(bugprone-not-null-terminated-result)
    memcpy(key, arch, la);
    key[la] = '.';
    memcpy(key + la + 1, suffix, ls + 1);
    int64_t id = gguf_find_key(f, key);
    if (key != stack)
        free(key);
    return id;
}

static const gguf_val *val(const gguf_file *f, int64_t id)
{
    return id >= 0 && (uint64_t)id < f->n_vals ? &f->vals[id] : NULL;
}

gguf_type gguf_val_type(const gguf_file *f, int64_t id)
{
    const gguf_val *v = val(f, id);
    return v ? v->type : GGUF_TYPE_COUNT;
}

uint64_t gguf_val_offset(const gguf_file *f, int64_t id)
{
    const gguf_val *v = val(f, id);
    return v ? v->offset : 0;
}

bool gguf_val_i64(const gguf_file *f, int64_t id, int64_t *out)
{
    const gguf_val *v = val(f, id);
    if (!v || !type_is_int(v->type))
        return false;
    wide_int w = decode_int(v->type, f->data + v->offset);
    if (!w.neg && w.u > (uint64_t)INT64_MAX)
        return false;
    *out = w.neg ? w.s : (int64_t)w.u;
    return true;
}

bool gguf_val_u64(const gguf_file *f, int64_t id, uint64_t *out)
{
    const gguf_val *v = val(f, id);
    if (!v || !type_is_int(v->type))
        return false;
    wide_int w = decode_int(v->type, f->data + v->offset);
    if (w.neg)
        return false;
    *out = w.u;
    return true;
}

static bool is_number(gguf_type t)
{
    return type_is_int(t) || t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64;
}

bool gguf_val_f64(const gguf_file *f, int64_t id, double *out)
{
    const gguf_val *v = val(f, id);
    if (!v || !is_number(v->type))
        return false;
    *out = decode_f64(v->type, f->data + v->offset);
    return true;
}

bool gguf_val_bool(const gguf_file *f, int64_t id, bool *out)
{
    const gguf_val *v = val(f, id);
    if (!v || v->type != GGUF_TYPE_BOOL)
        return false;
    *out = f->data[v->offset] != 0;
    return true;
}

const char *gguf_val_str(const gguf_file *f, int64_t id, size_t *len)
{
    const gguf_val *v = val(f, id);
    if (!v || v->type != GGUF_TYPE_STRING || !v->str)
        return NULL;
    if (len)
        *len = (size_t)v->n;
    return v->str;
}

const void *gguf_val_data(const gguf_file *f, int64_t id, size_t *nbytes)
{
    const gguf_val *v = val(f, id);
    if (!v)
        return NULL;
    if (type_info[v->type].size) {
        *nbytes = type_info[v->type].size;
        return f->data + v->offset;
    }
    if (v->type == GGUF_TYPE_ARRAY && v->elem_type < GGUF_TYPE_COUNT &&
        type_info[v->elem_type].size) {
        *nbytes = (size_t)(v->size - 12);
        return f->data + v->offset + 12; /* past element type and count */
    }
    return NULL;
}

uint32_t gguf_get_u32(const gguf_file *f, const char *key, uint32_t def)
{
    uint64_t v;
    return gguf_val_u64(f, gguf_find_key(f, key), &v) && v <= UINT32_MAX ? (uint32_t)v : def;
}

int64_t gguf_get_i64(const gguf_file *f, const char *key, int64_t def)
{
    int64_t v;
    return gguf_val_i64(f, gguf_find_key(f, key), &v) ? v : def;
}

float gguf_get_f32(const gguf_file *f, const char *key, float def)
{
    double v;
    return gguf_val_f64(f, gguf_find_key(f, key), &v) ? (float)v : def;
}

bool gguf_get_bool(const gguf_file *f, const char *key, bool def)
{
    bool v;
    return gguf_val_bool(f, gguf_find_key(f, key), &v) ? v : def;
}

const char *gguf_get_str(const gguf_file *f, const char *key, const char *def)
{
    const char *s = gguf_val_str(f, gguf_find_key(f, key), NULL);
    return s ? s : def;
}

/* The value of a required key, or a message saying it is missing. */
static llmos_err require(const gguf_file *f, const char *key, const gguf_val **out)
{
    int64_t id = gguf_find_key(f, key);
    if (id < 0)
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: key '%s' is missing", f->name, key);
    *out = &f->vals[id];
    return LLMOS_OK;
}

static llmos_err mistyped(const gguf_file *f, const char *key, const gguf_val *v,
                          const char *expected)
{
    return llmos_fail(LLMOS_ERR_FORMAT, "%s: offset %llu: key '%s' has type %s, expected %s",
                      f->name, (ull)v->offset, key, type_info[v->type].name, expected);
}

llmos_err gguf_require_u32(const gguf_file *f, const char *key, uint32_t *out)
{
    const gguf_val *v = NULL;
    llmos_err err = require(f, key, &v);
    if (err)
        return err;
    if (!type_is_int(v->type)) // NOLINT(clang-analyzer-core.NullDereference): v is set when
                               // require() returns 0 (llmos_fail returns its nonzero code)
        return mistyped(f, key, v, "an integer");
    wide_int w = decode_int(v->type, f->data + v->offset);
    if (w.neg || w.u > UINT32_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset %llu: key '%s': value %s%llu does not fit in uint32", f->name,
                          (ull)v->offset, key, w.neg ? "-" : "",
                          w.neg ? (ull)(-(w.s + 1)) + 1 : (ull)w.u);
    *out = (uint32_t)w.u;
    return LLMOS_OK;
}

llmos_err gguf_require_i64(const gguf_file *f, const char *key, int64_t *out)
{
    const gguf_val *v = NULL;
    llmos_err err = require(f, key, &v);
    if (err)
        return err;
    if (!type_is_int(v->type)) // NOLINT(clang-analyzer-core.NullDereference): v is set when
                               // require() returns 0 (llmos_fail returns its nonzero code)
        return mistyped(f, key, v, "an integer");
    if (!gguf_val_i64(f, v - f->vals, out))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "%s: offset %llu: key '%s': value does not fit in int64", f->name,
                          (ull)v->offset, key);
    return LLMOS_OK;
}

llmos_err gguf_require_f32(const gguf_file *f, const char *key, float *out)
{
    const gguf_val *v = NULL;
    llmos_err err = require(f, key, &v);
    if (err)
        return err;
    if (!is_number(v->type)) // NOLINT(clang-analyzer-core.NullDereference): v is set when require()
                             // returns 0 (llmos_fail returns its nonzero code)
        return mistyped(f, key, v, "a number");
    *out = (float)decode_f64(v->type, f->data + v->offset);
    return LLMOS_OK;
}

llmos_err gguf_require_str(const gguf_file *f, const char *key, const char **out)
{
    const gguf_val *v = NULL;
    llmos_err err = require(f, key, &v);
    if (err)
        return err;
    if (v->type != GGUF_TYPE_STRING) // NOLINT(clang-analyzer-core.NullDereference): v is set when
                                     // require() returns 0 (llmos_fail returns its nonzero code)
        return mistyped(f, key, v, "string");
    *out = v->str;
    return LLMOS_OK;
}

/* ---- reading: arrays --------------------------------------------------------------------- */

static const gguf_val *arr(const gguf_file *f, int64_t id)
{
    const gguf_val *v = val(f, id);
    return v && v->type == GGUF_TYPE_ARRAY ? v : NULL;
}

uint64_t gguf_arr_len(const gguf_file *f, int64_t id)
{
    const gguf_val *v = arr(f, id);
    return v ? v->n : 0;
}

gguf_type gguf_arr_type(const gguf_file *f, int64_t id)
{
    const gguf_val *v = arr(f, id);
    return v ? v->elem_type : GGUF_TYPE_COUNT;
}

const char *gguf_arr_str(const gguf_file *f, int64_t id, uint64_t i, size_t *len)
{
    const gguf_val *v = arr(f, id);
    if (!v || v->elem_type != GGUF_TYPE_STRING || i >= v->n)
        return NULL;
    uint64_t at = f->str_off[v->first + i], n;
    memcpy(&n, f->data + at, 8);
    if (len)
        *len = (size_t)n;
    return (const char *)f->data + at + 8;
}

/* Pointer to fixed-size element i, or NULL. */
static const uint8_t *arr_elem(const gguf_file *f, int64_t id, uint64_t i, gguf_type *t)
{
    const gguf_val *v = arr(f, id);
    if (!v || !type_info[v->elem_type].size || i >= v->n)
        return NULL;
    *t = v->elem_type;
    return f->data + v->offset + 12 + i * type_info[v->elem_type].size;
}

bool gguf_arr_i64(const gguf_file *f, int64_t id, uint64_t i, int64_t *out)
{
    gguf_type t;
    const uint8_t *p = arr_elem(f, id, i, &t);
    if (!p || !type_is_int(t))
        return false;
    wide_int w = decode_int(t, p);
    if (!w.neg && w.u > (uint64_t)INT64_MAX)
        return false;
    *out = w.neg ? w.s : (int64_t)w.u;
    return true;
}

bool gguf_arr_f64(const gguf_file *f, int64_t id, uint64_t i, double *out)
{
    gguf_type t;
    const uint8_t *p = arr_elem(f, id, i, &t);
    if (!p || !is_number(t))
        return false;
    *out = decode_f64(t, p);
    return true;
}

int64_t gguf_arr_sub(const gguf_file *f, int64_t id, uint64_t i)
{
    const gguf_val *v = arr(f, id);
    if (!v || v->elem_type != GGUF_TYPE_ARRAY || i >= v->n)
        return -1;
    return (int64_t)(v->first + i);
}

/* ---- reading: tensors -------------------------------------------------------------------- */

size_t gguf_n_tensors(const gguf_file *f)
{
    return f->n_tensors;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, size_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

int64_t gguf_find_tensor_index(const gguf_file *f, const char *name)
{
    if (!name || !f->tensor_set.cap)
        return -1;
    size_t mask = f->tensor_set.cap - 1;
    size_t i = (size_t)hash_bytes(name, strlen(name)) & mask;
    while (f->tensor_set.slots[i]) {
        size_t idx = f->tensor_set.slots[i] - 1;
        if (strcmp(f->tensors[idx].name, name) == 0)
            return (int64_t)idx;
        i = (i + 1) & mask;
    }
    return -1;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    int64_t i = gguf_find_tensor_index(f, name);
    return i >= 0 ? &f->tensors[i] : NULL;
}

/* ---- writing ----------------------------------------------------------------------------- */

typedef struct wkv {
    char *key;
    gguf_type type;
    uint8_t *bytes; /* the value's encoding (after its type field) */
    size_t n;
} wkv;

typedef struct wtensor {
    char *name;
    ggml_type type;
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t size;
    const void *data;  /* or: */
    gguf_tensor_fn fn; /* ... called with ctx when writing */
    void *ctx;
} wtensor;

struct gguf_writer {
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    const atomic_bool *cancel; /* gguf_writer_set_cancel */
};

llmos_err gguf_writer_new(gguf_writer **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    (*out)->alignment = GGUF_DEFAULT_ALIGNMENT;
    return LLMOS_OK;
}

void gguf_writer_set_cancel(gguf_writer *w, const atomic_bool *cancel)
{
    w->cancel = cancel;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].bytes);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

static int64_t writer_find(const gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kvs[i].key, key) == 0)
            return (int64_t)i;
    return -1;
}

/* Set `key` to a value of `type` whose encoding is bytes[0..n) (copied). */
static llmos_err set_value(gguf_writer *w, const char *key, gguf_type type, const void *bytes,
                           size_t n)
{
    if (!key || !*key)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: empty key");
    if ((unsigned)type >= GGUF_TYPE_COUNT)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': bad value type %d", key,
                          (int)type);
    if (strcmp(key, "general.alignment") == 0) {
        if (!type_is_int(type) || n != type_info[type].size)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "gguf writer: general.alignment must be an integer (uint32)");
        wide_int a = decode_int(type, bytes);
        if (a.neg || a.u == 0 || a.u > ((uint64_t)1 << 31) || (a.u & (a.u - 1)))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "gguf writer: general.alignment must be a power of two up to 2^31");
        w->alignment = (uint32_t)a.u;
    }
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (n)
        memcpy(copy, bytes, n);
    int64_t at = writer_find(w, key);
    if (at >= 0) {
        wkv *kv = &w->kvs[at];
        free(kv->bytes);
        kv->type = type;
        kv->bytes = copy;
        kv->n = n;
        return LLMOS_OK;
    }
    char *k = strdup(key);
    llmos_err err = k ? grow((void **)&w->kvs, &w->cap_kv, w->n_kv + 1, sizeof *w->kvs)
                      : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (err) {
        free(k);
        free(copy);
        return err;
    }
    /* the writer owns k and copy from here on (freed by gguf_writer_free) */
    w->kvs[w->n_kv++] = (wkv){k, type, copy, n};
    return LLMOS_OK; // cppcheck-suppress memleak
}

llmos_err gguf_set_u8(gguf_writer *w, const char *key, uint8_t v)
{
    return set_value(w, key, GGUF_TYPE_UINT8, &v, 1);
}
llmos_err gguf_set_i8(gguf_writer *w, const char *key, int8_t v)
{
    return set_value(w, key, GGUF_TYPE_INT8, &v, 1);
}
llmos_err gguf_set_u16(gguf_writer *w, const char *key, uint16_t v)
{
    return set_value(w, key, GGUF_TYPE_UINT16, &v, 2);
}
llmos_err gguf_set_i16(gguf_writer *w, const char *key, int16_t v)
{
    return set_value(w, key, GGUF_TYPE_INT16, &v, 2);
}
llmos_err gguf_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    return set_value(w, key, GGUF_TYPE_UINT32, &v, 4);
}
llmos_err gguf_set_i32(gguf_writer *w, const char *key, int32_t v)
{
    return set_value(w, key, GGUF_TYPE_INT32, &v, 4);
}
llmos_err gguf_set_u64(gguf_writer *w, const char *key, uint64_t v)
{
    return set_value(w, key, GGUF_TYPE_UINT64, &v, 8);
}
llmos_err gguf_set_i64(gguf_writer *w, const char *key, int64_t v)
{
    return set_value(w, key, GGUF_TYPE_INT64, &v, 8);
}
llmos_err gguf_set_f32(gguf_writer *w, const char *key, float v)
{
    return set_value(w, key, GGUF_TYPE_FLOAT32, &v, 4);
}
llmos_err gguf_set_f64(gguf_writer *w, const char *key, double v)
{
    return set_value(w, key, GGUF_TYPE_FLOAT64, &v, 8);
}
llmos_err gguf_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return set_value(w, key, GGUF_TYPE_BOOL, &b, 1);
}

llmos_err gguf_set_strn(gguf_writer *w, const char *key, const char *s, size_t len)
{
    if (!s && len)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': NULL string", key);
    if (len > SIZE_MAX - 8)
        return llmos_fail(LLMOS_ERR_LIMIT, "gguf writer: key '%s': string too long", key);
    uint8_t *enc = malloc(8 + len);
    if (!enc)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    uint64_t n = len;
    memcpy(enc, &n, 8);
    if (len)
        memcpy(enc + 8, s, len);
    llmos_err err = set_value(w, key, GGUF_TYPE_STRING, enc, 8 + len);
    free(enc);
    return err;
}

llmos_err gguf_set_str(gguf_writer *w, const char *key, const char *s)
{
    if (!s)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': NULL string", key);
    return gguf_set_strn(w, key, s, strlen(s));
}

llmos_err gguf_set_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data, size_t n)
{
    size_t esz = gguf_type_size(elem);
    if (!esz)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "gguf writer: key '%s': gguf_set_arr takes fixed-size elements, not %s",
                          key, gguf_type_name(elem));
    if (n > (SIZE_MAX - 12) / esz)
        return llmos_fail(LLMOS_ERR_LIMIT, "gguf writer: key '%s': array too long", key);
    if (!data && n)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': NULL array", key);
    if (elem == GGUF_TYPE_BOOL)
        for (size_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1)
                return llmos_fail(LLMOS_ERR_INVALID,
                                  "gguf writer: key '%s': bool element %zu is not 0 or 1", key, i);
    uint8_t *enc = malloc(12 + n * esz);
    if (!enc)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    uint32_t t = (uint32_t)elem;
    uint64_t count = n;
    memcpy(enc, &t, 4);
    memcpy(enc + 4, &count, 8);
    if (n)
        memcpy(enc + 12, data, n * esz);
    llmos_err err = set_value(w, key, GGUF_TYPE_ARRAY, enc, 12 + n * esz);
    free(enc);
    return err;
}

llmos_err gguf_set_arr_str(gguf_writer *w, const char *key, const char *const *strs,
                           const size_t *lens, size_t n)
{
    if (!strs && n)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': NULL array", key);
    size_t total = 12;
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(strs[i]);
        if (len > SIZE_MAX - 8 - total)
            return llmos_fail(LLMOS_ERR_LIMIT, "gguf writer: key '%s': array too long", key);
        total += 8 + len;
    }
    uint8_t *enc = malloc(total);
    if (!enc)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    uint32_t t = GGUF_TYPE_STRING;
    uint64_t count = n;
    memcpy(enc, &t, 4);
    memcpy(enc + 4, &count, 8);
    size_t at = 12;
    for (size_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        memcpy(enc + at, &len, 8);
        if (len)
            memcpy(enc + at + 8, strs[i], (size_t)len);
        at += 8 + (size_t)len;
    }
    llmos_err err = set_value(w, key, GGUF_TYPE_ARRAY, enc, total);
    free(enc);
    return err;
}

llmos_err gguf_set_encoded(gguf_writer *w, const char *key, gguf_type type, const void *bytes,
                           size_t n)
{
    if (!bytes && n)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': NULL value", key);
    return set_value(w, key, type, bytes, n);
}

llmos_err gguf_set_from(gguf_writer *w, const char *key, const gguf_file *f, int64_t id)
{
    const gguf_val *v = val(f, id);
    if (!v)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: key '%s': no value %lld in %s", key,
                          (long long)id, f->name);
    return set_value(w, key, v->type, f->data + v->offset, (size_t)v->size);
}

void gguf_remove_key(gguf_writer *w, const char *key)
{
    int64_t at = writer_find(w, key);
    if (at < 0)
        return;
    free(w->kvs[at].key);
    free(w->kvs[at].bytes);
    memmove(w->kvs + at, w->kvs + at + 1, (w->n_kv - (size_t)at - 1) * sizeof *w->kvs);
    w->n_kv--;
    if (strcmp(key, "general.alignment") == 0)
        w->alignment = GGUF_DEFAULT_ALIGNMENT;
}

static llmos_err add_tensor(gguf_writer *w, const char *name, ggml_type type, uint32_t n_dims,
                            const uint64_t *ne, const void *data, gguf_tensor_fn fn, void *ctx)
{
    if (!name || !*name)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: empty tensor name");
    const quant_traits *qt = quant_traits_of(type);
    if (!qt)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: tensor '%s': unknown type %d", name,
                          (int)type);
    if (n_dims < 1 || n_dims > 4 || !ne)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: tensor '%s': n_dims %u (expected 1..4)",
                          name, n_dims);
    wtensor t = {.type = type, .n_dims = n_dims, .data = data, .fn = fn, .ctx = ctx};
    uint64_t n = 1;
    for (uint32_t d = 0; d < 4; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || t.ne[d] > (uint64_t)INT64_MAX / n)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "gguf writer: tensor '%s': dimension %u is 0 or too large", name, d);
        n *= t.ne[d];
    }
    if (t.ne[0] % qt->block_size != 0 || !quant_row_size(type, n, &t.size))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "gguf writer: tensor '%s': ne[0]=%llu is not a multiple of %s's block "
                          "size %zu",
                          name, (ull)t.ne[0], qt->name, qt->block_size);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return llmos_fail(LLMOS_ERR_EXISTS, "gguf writer: tensor '%s' added twice", name);
    t.name = strdup(name);
    if (!t.name)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err =
        grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors + 1, sizeof *w->tensors);
    if (err) {
        free(t.name);
        return err;
    }
    w->tensors[w->n_tensors++] = t;
    return LLMOS_OK;
}

llmos_err gguf_add_tensor(gguf_writer *w, const char *name, ggml_type type, uint32_t n_dims,
                          const uint64_t *ne, const void *data)
{
    if (!data)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: tensor '%s': NULL data",
                          name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

llmos_err gguf_add_tensor_fn(gguf_writer *w, const char *name, ggml_type type, uint32_t n_dims,
                             const uint64_t *ne, gguf_tensor_fn fn, void *ctx)
{
    if (!fn)
        return llmos_fail(LLMOS_ERR_INVALID, "gguf writer: tensor '%s': NULL callback",
                          name ? name : "");
    return add_tensor(w, name, type, n_dims, ne, NULL, fn, ctx);
}

/* Where the bytes go: a file descriptor (through a buffer) or a memory buffer. */
typedef struct sink {
    int fd;
    const char *path; /* for messages */
    const atomic_bool *cancel;
    llmos_buf *mem;
    uint8_t *buf;
    size_t used, cap;
    uint64_t total;
} sink;

struct gguf_stream {
    sink *out;
    const char *name;
    uint64_t left; /* bytes the tensor still expects */
};

/* Checked before each buffer goes to the file and before each tensor. */
static llmos_err sink_check_cancel(const sink *s)
{
    if (s->cancel && atomic_load(s->cancel))
        return llmos_fail(LLMOS_ERR_CANCELLED, "%s: writing stopped on request", s->path);
    return LLMOS_OK;
}

static llmos_err sink_flush(sink *s)
{
    llmos_err err = sink_check_cancel(s);
    if (err)
        return err;
    size_t done = 0;
    while (done < s->used) {
        ssize_t n = write(s->fd, s->buf + done, s->used - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", s->path, strerror(errno));
        }
        done += (size_t)n;
    }
    s->used = 0;
    return LLMOS_OK;
}

static llmos_err sink_put(sink *s, const void *data, size_t n)
{
    s->total += n;
    if (s->mem)
        return buf_append(s->mem, data, n);
    const uint8_t *p = data;
    while (n > 0) {
        if (s->used == s->cap) {
            llmos_err err = sink_flush(s);
            if (err)
                return err;
        }
        size_t k = s->cap - s->used < n ? s->cap - s->used : n;
        memcpy(s->buf + s->used, p, k);
        s->used += k;
        p += k;
        n -= k;
    }
    return LLMOS_OK;
}

static llmos_err sink_u32(sink *s, uint32_t v)
{
    return sink_put(s, &v, 4);
}
static llmos_err sink_u64(sink *s, uint64_t v)
{
    return sink_put(s, &v, 8);
}

static llmos_err sink_str(sink *s, const char *str)
{
    size_t n = strlen(str);
    llmos_err err = sink_u64(s, n);
    return err ? err : sink_put(s, str, n);
}

static llmos_err sink_pad(sink *s, uint32_t alignment)
{
    static const uint8_t zeros[64];
    uint64_t pad = (alignment - s->total % alignment) % alignment;
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        llmos_err err = sink_put(s, zeros, k);
        if (err)
            return err;
        pad -= k;
    }
    return LLMOS_OK;
}

llmos_err gguf_stream_write(gguf_stream *s, const void *data, size_t n)
{
    if (n > s->left)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "gguf writer: tensor '%s': callback wrote %llu bytes more than the "
                          "tensor's size",
                          s->name, (ull)(n - s->left));
    s->left -= n;
    return sink_put(s->out, data, n);
}

static llmos_err emit(gguf_writer *w, sink *s)
{
    llmos_err err;
    uint32_t version = 3;
    if ((err = sink_put(s, "GGUF", 4)) || (err = sink_u32(s, version)) ||
        (err = sink_u64(s, w->n_tensors)) || (err = sink_u64(s, w->n_kv)))
        return err;
    for (size_t i = 0; i < w->n_kv; i++) {
        const wkv *kv = &w->kvs[i];
        if ((err = sink_str(s, kv->key)) || (err = sink_u32(s, (uint32_t)kv->type)) ||
            (err = sink_put(s, kv->bytes, kv->n)))
            return err;
    }
    uint64_t offset = 0, a = w->alignment;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if ((err = sink_str(s, t->name)) || (err = sink_u32(s, t->n_dims)))
            return err;
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((err = sink_u64(s, t->ne[d])))
                return err;
        if ((err = sink_u32(s, (uint32_t)t->type)) || (err = sink_u64(s, offset)))
            return err;
        if (t->size > UINT64_MAX - offset - a)
            return llmos_fail(LLMOS_ERR_LIMIT, "gguf writer: tensors too large");
        offset += (t->size + a - 1) / a * a;
    }
    if ((err = sink_pad(s, w->alignment)))
        return err;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if ((err = sink_check_cancel(s)))
            return err;
        if (t->data) {
            err = sink_put(s, t->data, (size_t)t->size);
        } else {
            gguf_stream st = {s, t->name, t->size};
            err = t->fn(t->ctx, i, &st);
            if (!err && st.left)
                err = llmos_fail(LLMOS_ERR_INVALID,
                                 "gguf writer: tensor '%s': callback wrote %llu of %llu bytes",
                                 t->name, (ull)(t->size - st.left), (ull)t->size);
        }
        if (err || (err = sink_pad(s, w->alignment)))
            return err;
    }
    return LLMOS_OK;
}

llmos_err gguf_writer_to_buf(gguf_writer *w, llmos_buf *out)
{
    sink s = {.fd = -1, .path = "(memory)", .cancel = w->cancel, .mem = out};
    return emit(w, &s);
}

llmos_err gguf_writer_write(gguf_writer *w, const char *path)
{
    char *tmp = NULL;
    sink s = {.fd = -1, .path = path, .cancel = w->cancel, .cap = (size_t)1 << 20};
    s.buf = malloc(s.cap);
    llmos_err err = sink_check_cancel(&s);
    if (!err && !s.buf)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    /* a fresh temporary beside the target, never one someone else put there (file.c) */
    if (!err)
        err = llmos_file_create_temp(path, 0644, &s.fd, &tmp);
    if (err)
        goto done;
    s.path = tmp;
    if (!(err = emit(w, &s)) && !(err = sink_flush(&s)) && fsync(s.fd) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(s.fd) != 0 && !err)
        err = llmos_fail(LLMOS_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!err && rename(tmp, path) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot replace: %s", path, strerror(errno));
    if (err) {
        unlink(tmp);
        if (err == LLMOS_ERR_CANCELLED)
            err = llmos_fail(err, "%s: writing stopped on request; the file was left as it was",
                             path);
        goto done;
    }
    err = llmos_file_sync_dir(path); /* make the rename itself durable */
done:
    free(s.buf);
    free(tmp);
    return err;
}
