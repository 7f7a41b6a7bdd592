/*
 * jinja.c - a Jinja interpreter for the subset chat templates use.
 *
 * Models ship their prompt format as a Jinja template; this file renders one. It reads in
 * three steps, top to bottom:
 *
 *   lexer   template text -> tokens. Text between tags is kept as TEXT tokens; inside {{ }}
 *           and {% %} the expression is tokenized. Whitespace control follows the
 *           environment chat templates are written for (Hugging Face's): trim_blocks (drop
 *           the first newline after a block or comment tag), lstrip_blocks (drop spaces and
 *           tabs before a block or comment tag that starts a line), "-" on a tag strips all
 *           whitespace on that side, "+" turns lstrip/trim off, newlines are normalised to
 *           \n and one trailing newline of the template is dropped.
 *   parser  tokens -> a tree of statements and expressions, with Jinja's operator
 *           precedence (filters and tests bind tighter than arithmetic; `not` looser than
 *           comparisons).
 *   eval    walk the tree against a chain of scopes (root = the caller's JSON context; a
 *           scope per for loop and per macro call, so `set` inside a loop does not leak out,
 *           as in Jinja; namespace() objects are the way out, as in Jinja).
 *
 * Values are this file's own small type (jv) allocated in one arena per render; JSON input is
 * converted once. Errors unwind with longjmp to jinja_render, which turns them into an
 * llmos_err with "template line L, column C: ..." - the arena and a list of open output
 * buffers make that unwinding leak-free. Limits (steps, loop iterations, macro depth, output
 * and memory) bound every render, so no template can hang or exhaust memory.
 *
 * Semantics follow Python's Jinja2 where templates depend on them: truthiness, `and`/`or`
 * returning an operand, str() of values (None, True, 1.0, ['a']), tojson as Hugging Face
 * defines it (json.dumps with ensure_ascii=False, unsorted keys, ", "/": " separators, or ","
 * with indent), undefined values that print as "" but fail when dereferenced or called.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmos/chat.h"

#define JX_DEF_OUTPUT     ((size_t)4 << 20)
#define JX_DEF_ITER       ((size_t)1000000)
#define JX_DEF_STEPS      ((size_t)20000000)
#define JX_DEF_DEPTH      ((size_t)64)
#define JX_DEF_MEMORY     ((size_t)256 << 20)
#define JX_MAX_NEST       200 /* nesting of template syntax (parser recursion) */
#define JX_MAX_JSON_DEPTH 128
#define JX_MAX_EVAL_DEPTH 1000     /* eval/exec recursion (left-deep a+b+c+... chains too) */
#define JX_HERE           SIZE_MAX /* "at the construct being evaluated" for jx_fail */

/* ==== values ================================================================================ */

typedef enum jv_type {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_NS,
    JV_MACRO,
    JV_FUNC,
    JV_LOOP
} jv_type;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct node node;

typedef struct jv {
    jv_type t;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *s; /* JV_STR: bytes; JV_UNDEF: the name, for messages (may be NULL) */
            size_t n;
        } s;
        jlist *l;
        jdict *d;      /* JV_DICT and JV_NS (a namespace is a mutable dict) */
        const node *m; /* JV_MACRO: its definition */
        int fn;        /* JV_FUNC: a builtin */
        jloop *loop;
    } u;
} jv;

struct jlist {
    size_t n, cap;
    jv *v;
};

struct jdict {
    size_t n, cap;
    jv *k; /* strings */
    jv *v;
};

struct jloop {
    jlist *items;
    size_t i;
};

enum { FN_RANGE, FN_NAMESPACE, FN_RAISE, FN_STRFTIME, FN_DICT };

/* ==== syntax tree =========================================================================== */

typedef enum node_kind {
    /* expressions */
    E_LIT,
    E_NAME,
    E_LIST,
    E_DICT,
    E_ATTR,
    E_INDEX,
    E_SLICE,
    E_CALL,
    E_FILTER,
    E_TEST,
    E_NOT,
    E_NEG,
    E_POS,
    E_BIN,
    E_AND,
    E_OR,
    E_COND,
    E_KW,
    /* statements */
    S_BLOCK,
    S_TEXT,
    S_OUT,
    S_IF,
    S_FOR,
    S_SET,
    S_SETBLOCK,
    S_MACRO,
    S_BREAK,
    S_CONTINUE
} node_kind;

typedef enum bin_op {
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN
} bin_op;

/* One node type for the whole tree; each kind uses the fields its comment in the parser
 * names. `off` is the byte offset in the (normalised) template for error messages. */
struct node {
    node_kind kind;
    int op; /* E_BIN: bin_op; E_TEST: 1 = negated */
    size_t off;
    const char *name; /* names of variables, attributes, filters, tests, macros, kwargs */
    size_t name_len;
    jv val; /* E_LIT */
    node *a, *b, *c, *d;
    node **list; /* children: block statements, call args, list items, if conditions */
    size_t n;
    node **list2; /* kwargs (E_KW nodes), if bodies, macro defaults */
    size_t n2;
    const char **names; /* for targets, macro parameters */
    size_t n_names;
};

/* ==== tokens ================================================================================ */

typedef enum tok_type {
    T_TEXT,
    T_VAR_BEGIN,
    T_VAR_END,
    T_BLOCK_BEGIN,
    T_BLOCK_END,
    T_NAME,
    T_STRING,
    T_INT,
    T_FLOAT,
    T_OP,
    T_EOF
} tok_type;

typedef struct token {
    tok_type t;
    size_t off;
    const char *s; /* TEXT, NAME, STRING (unescaped), OP */
    size_t n;
    int64_t i;
    double f;
} token;

/* ==== render context ======================================================================== */

typedef struct scope scope;
struct scope {
    scope *parent;
    jdict vars;
};

typedef struct jctx {
    llmos_arena *arena;
    const char *src; /* normalised template */
    size_t src_len;
    jinja_options opt;
    jmp_buf jmp;
    llmos_err err;
    char msg[512];

    token *toks;
    size_t n_toks, cap_toks, pos;
    int nest;

    scope *root;
    llmos_buf *out;   /* where output goes now */
    llmos_buf **bufs; /* capture buffers open (macro calls, block set) - freed on error */
    size_t n_bufs, cap_bufs;
    size_t steps, iterations, depth;
    size_t cur;       /* offset of the construct being evaluated, for errors without one */
    int eval_depth;   /* recursion of eval/exec, bounded to protect the C stack */
    size_t out_total; /* bytes written to the final output */
    llmos_buf *final_out;
} jctx;

/* Unwind to jinja_render with `code` and "template line L, column C: <message>". */
static _Noreturn LLMOS_PRINTF(4, 5) void jx_fail(jctx *c, size_t off, llmos_err code,
                                                 const char *fmt, ...)
{
    int line = 1, col = 1;
    if (off == JX_HERE)
        off = c->cur;
    for (size_t i = 0; i < off && i < c->src_len; i++) {
        if (c->src[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)c->src[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    int k = snprintf(c->msg, sizeof c->msg, "template line %d, column %d: ", line, col);
    if (k < 0)
        k = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg + k, sizeof c->msg - (size_t)k, fmt, ap);
    va_end(ap);
    c->err = code;
    longjmp(c->jmp, 1);
}

static void *jx_alloc(jctx *c, size_t n)
{
    if (n > c->opt.max_memory || arena_used(c->arena) > c->opt.max_memory - n)
        jx_fail(c, JX_HERE, LLMOS_ERR_LIMIT,
                "template needs more than %zu bytes of memory (limit max_memory)",
                c->opt.max_memory);
    void *p = arena_alloc(c->arena, n ? n : 1);
    if (!p)
        jx_fail(c, JX_HERE, LLMOS_ERR_NOMEM, "out of memory rendering template");
    return p;
}

static void *jx_calloc(jctx *c, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        jx_fail(c, JX_HERE, LLMOS_ERR_LIMIT, "allocation size overflows");
    return jx_alloc(c, n * size);
}

/* Grow an arena array (old storage is abandoned to the arena). */
static void *jx_grow(jctx *c, void *old, size_t elem, size_t n, size_t *cap)
{
    if (n < *cap)
        return old;
    size_t ncap = *cap ? *cap * 2 : 8;
    void *p = jx_calloc(c, ncap, elem);
    if (old && n)
        memcpy(p, old, n * elem);
    *cap = ncap;
    return p;
}

/* ---- value constructors and helpers -------------------------------------------------------- */

static jv jv_undef(const char *name)
{
    jv v = {.t = JV_UNDEF};
    v.u.s.s = name;
    return v;
}
static jv jv_none(void)
{
    return (jv){.t = JV_NONE};
}
static jv jv_bool(bool b)
{
    return (jv){.t = JV_BOOL, .u.b = b};
}
static jv jv_int(int64_t i)
{
    return (jv){.t = JV_INT, .u.i = i};
}
static jv jv_float(double f)
{
    return (jv){.t = JV_FLOAT, .u.f = f};
}
static jv jv_strn(const char *s, size_t n)
{
    jv v = {.t = JV_STR};
    v.u.s.s = s;
    v.u.s.n = n;
    return v;
}

static jv jv_str_copy(jctx *c, const char *s, size_t n)
{
    char *p = jx_alloc(c, n + 1);
    if (n)
        memcpy(p, s, n);
    return jv_strn(p, n);
}

static jlist *list_new(jctx *c, size_t cap)
{
    jlist *l = jx_alloc(c, sizeof *l);
    if (cap) {
        l->v = jx_calloc(c, cap, sizeof(jv));
        l->cap = cap;
    }
    return l;
}

static void list_push(jctx *c, jlist *l, jv v)
{
    l->v = jx_grow(c, l->v, sizeof(jv), l->n, &l->cap);
    l->v[l->n++] = v;
}

static jv jv_list(jlist *l)
{
    return (jv){.t = JV_LIST, .u.l = l};
}
static jv jv_dict(jdict *d)
{
    return (jv){.t = JV_DICT, .u.d = d};
}

static bool str_eq(jv a, const char *s, size_t n)
{
    return a.t == JV_STR && a.u.s.n == n && memcmp(a.u.s.s, s, n) == 0;
}

static jv *dict_find(const jdict *d, const char *k, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (str_eq(d->k[i], k, n))
            return &d->v[i];
    return NULL;
}

static void dict_set(jctx *c, jdict *d, jv key, jv v)
{
    assert(key.t == JV_STR);
    jv *slot = dict_find(d, key.u.s.s, key.u.s.n);
    if (slot) {
        *slot = v;
        return;
    }
    size_t cap = d->cap;
    d->k = jx_grow(c, d->k, sizeof(jv), d->n, &cap);
    cap = d->cap;
    d->v = jx_grow(c, d->v, sizeof(jv), d->n, &cap);
    d->cap = cap;
    d->k[d->n] = key;
    d->v[d->n] = v;
    d->n++;
}

static const char *type_name(jv v)
{
    switch (v.t) {
    case JV_UNDEF: return "undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "macro";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    }
    return "?";
}

static bool truthy(jv v)
{
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static bool is_num(jv v)
{
    return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
}
static double num_f(jv v)
{
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : v.t == JV_BOOL ? v.u.b : 0.0;
}
static bool is_intlike(jv v)
{
    return v.t == JV_INT || v.t == JV_BOOL;
}
static int64_t num_i(jv v)
{
    return v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? (int64_t)v.u.b : 0;
}

static _Noreturn void fail_undefined(jctx *c, size_t off, jv v)
{
    if (v.u.s.s)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "'%s' is undefined", v.u.s.s);
    jx_fail(c, off, LLMOS_ERR_FORMAT,
            "value is undefined (a missing key or an index out of range) and cannot be used here");
}

/* ---- UTF-8 code point helpers (Python strings count code points) --------------------------- */

static size_t cp_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* Byte offsets of each code point start, plus n at the end: offs[0..count]. */
static size_t *cp_offsets(jctx *c, const char *s, size_t n, size_t *count)
{
    size_t k = cp_count(s, n);
    size_t *offs = jx_calloc(c, k + 1, sizeof(size_t));
    size_t j = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            offs[j++] = i;
    assert(j == k);
    offs[k] = n;
    *count = k;
    return offs;
}

/* ---- output -------------------------------------------------------------------------------- */

static void out_append(jctx *c, size_t off, const char *s, size_t n)
{
    if (!n)
        return;
    if (c->out->len + n > c->opt.max_output)
        jx_fail(c, off, LLMOS_ERR_LIMIT, "template output exceeds %zu bytes (limit max_output)",
                c->opt.max_output);
    if (buf_append(c->out, s, n) != LLMOS_OK)
        jx_fail(c, off, LLMOS_ERR_NOMEM, "out of memory writing template output");
}

static void sb_add(jctx *c, llmos_buf *b, const char *s, size_t n)
{
    if (b->len + n > c->opt.max_output)
        jx_fail(c, JX_HERE, LLMOS_ERR_LIMIT, "template string exceeds %zu bytes (limit max_output)",
                c->opt.max_output);
    if (buf_append(b, s, n) != LLMOS_OK)
        jx_fail(c, JX_HERE, LLMOS_ERR_NOMEM, "out of memory rendering template");
}
static void sb_puts(jctx *c, llmos_buf *b, const char *s)
{
    sb_add(c, b, s, strlen(s));
}

/* Open a scratch buffer that is freed even if rendering fails. */
static llmos_buf *scratch_open(jctx *c)
{
    c->bufs = jx_grow(c, c->bufs, sizeof(llmos_buf *), c->n_bufs, &c->cap_bufs);
    llmos_buf *b = calloc(1, sizeof *b);
    if (!b)
        jx_fail(c, JX_HERE, LLMOS_ERR_NOMEM, "out of memory rendering template");
    c->bufs[c->n_bufs++] = b;
    return b;
}

/* Close the newest scratch buffer and return its text as an arena string. */
static jv scratch_close(jctx *c, llmos_buf *b)
{
    assert(c->n_bufs > 0 && c->bufs[c->n_bufs - 1] == b);
    jv s = jv_str_copy(c, b->data ? b->data : "", b->len);
    buf_free(b);
    free(b);
    c->n_bufs--;
    return s;
}

/* ==== Python-style formatting =============================================================== */

/* repr() of a float as Python writes it: shortest round-trip digits, "1.0", "1e-05". */
static void fmt_float(double d, char *out, size_t size)
{
    if (isnan(d)) {
        snprintf(out, size, "nan");
        return;
    }
    if (isinf(d)) {
        snprintf(out, size, d < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    /* tmp = [-]D[.DDD]e[+-]XX */
    char digits[24];
    size_t nd = 0;
    bool neg = tmp[0] == '-';
    const char *p = tmp + neg;
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p) && nd < sizeof digits - 1)
            digits[nd++] = *p;
    int exp = (int)strtol(p + 1, NULL, 10);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = 0;
    char *o = out;
    size_t left = size;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (left > 1) {                                                                            \
            *o++ = (ch);                                                                           \
            left--;                                                                                \
        }                                                                                          \
    } while (0)
    if (neg)
        PUT('-');
    if (exp < -4 || exp >= 16) {
        PUT(digits[0]);
        if (nd > 1) {
            PUT('.');
            for (size_t i = 1; i < nd; i++)
                PUT(digits[i]);
        }
        char e[16];
        snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
        for (char *q = e; *q; q++)
            PUT(*q);
    } else if (exp < 0) {
        PUT('0');
        PUT('.');
        for (int i = 0; i < -exp - 1; i++)
            PUT('0');
        for (size_t i = 0; i < nd; i++)
            PUT(digits[i]);
    } else {
        for (int i = 0; i <= exp; i++)
            PUT((size_t)i < nd ? digits[i] : '0');
        PUT('.');
        if ((size_t)exp + 1 < nd) {
            for (size_t i = (size_t)exp + 1; i < nd; i++)
                PUT(digits[i]);
        } else {
            PUT('0');
        }
    }
#undef PUT
    *o = 0;
}

static void repr_str(jctx *c, llmos_buf *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    sb_add(c, b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char e[8];
        if (ch == '\\' || ch == (unsigned char)q) {
            e[0] = '\\';
            e[1] = (char)ch;
            sb_add(c, b, e, 2);
        } else if (ch == '\n') {
            sb_puts(c, b, "\\n");
        } else if (ch == '\r') {
            sb_puts(c, b, "\\r");
        } else if (ch == '\t') {
            sb_puts(c, b, "\\t");
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(e, sizeof e, "\\x%02x", ch);
            sb_puts(c, b, e);
        } else {
            sb_add(c, b, (const char *)&s[i], 1);
        }
    }
    sb_add(c, b, &q, 1);
}

static void to_str_buf(jctx *c, llmos_buf *b, jv v, bool repr, int depth);

static void repr_items(jctx *c, llmos_buf *b, jv v, int depth)
{
    if (depth > JX_MAX_JSON_DEPTH)
        jx_fail(c, JX_HERE, LLMOS_ERR_LIMIT, "value nested too deeply to print");
    if (v.t == JV_LIST) {
        sb_puts(c, b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                sb_puts(c, b, ", ");
            to_str_buf(c, b, v.u.l->v[i], true, depth + 1);
        }
        sb_puts(c, b, "]");
    } else {
        sb_puts(c, b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                sb_puts(c, b, ", ");
            to_str_buf(c, b, v.u.d->k[i], true, depth + 1);
            sb_puts(c, b, ": ");
            to_str_buf(c, b, v.u.d->v[i], true, depth + 1);
        }
        sb_puts(c, b, "}");
    }
}

/* Python str() (repr=false) or repr() (repr=true) of a value. */
static void to_str_buf(jctx *c, llmos_buf *b, jv v, bool repr, int depth)
{
    char tmp[48];
    switch (v.t) {
    case JV_UNDEF: break;
    case JV_NONE: sb_puts(c, b, "None"); break;
    case JV_BOOL: sb_puts(c, b, v.u.b ? "True" : "False"); break;
    case JV_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        sb_puts(c, b, tmp);
        break;
    case JV_FLOAT:
        fmt_float(v.u.f, tmp, sizeof tmp);
        sb_puts(c, b, tmp);
        break;
    case JV_STR:
        if (repr)
            repr_str(c, b, v.u.s.s, v.u.s.n);
        else
            sb_add(c, b, v.u.s.s, v.u.s.n);
        break;
    case JV_LIST:
    case JV_DICT: repr_items(c, b, v, depth); break;
    case JV_NS:
        sb_puts(c, b, "<Namespace ");
        repr_items(c, b, jv_dict(v.u.d), depth);
        sb_puts(c, b, ">");
        break;
    case JV_MACRO: sb_puts(c, b, "<Macro>"); break;
    case JV_FUNC: sb_puts(c, b, "<function>"); break;
    case JV_LOOP: sb_puts(c, b, "<LoopContext>"); break;
    }
}

static jv to_str(jctx *c, jv v)
{
    if (v.t == JV_STR)
        return v;
    if (v.t == JV_UNDEF)
        return jv_strn("", 0);
    llmos_buf *b = scratch_open(c);
    to_str_buf(c, b, v, false, 0);
    return scratch_close(c, b);
}

/* How tojson writes: Python's json.dumps(v, ensure_ascii, indent, separators, sort_keys) with
 * Hugging Face's defaults (ensure_ascii=False, sort_keys=False; separators ", " and ": ", or
 * "," and ": " with an indent). */
typedef struct json_style {
    int indent;           /* -1 = all on one line */
    const char *item_sep; /* between items */
    size_t item_sep_len;
    const char *key_sep; /* between key and value */
    size_t key_sep_len;
    bool ascii;     /* escape non-ASCII as \uXXXX (surrogate pairs above U+FFFF) */
    bool sort_keys; /* objects in key order, at every level */
} json_style;

static void json_str(jctx *c, llmos_buf *b, const char *s, size_t n, bool ascii)
{
    sb_puts(c, b, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *e = NULL;
        char u[16];
        size_t skip = 1;
        switch (ch) {
        case '"': e = "\\\""; break;
        case '\\': e = "\\\\"; break;
        case '\n': e = "\\n"; break;
        case '\r': e = "\\r"; break;
        case '\t': e = "\\t"; break;
        case '\b': e = "\\b"; break;
        case '\f': e = "\\f"; break;
        default:
            if (ch < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                e = u;
            } else if (ch >= 0x80 && ascii) {
                uint32_t cp;
                size_t k = utf8_decode(s + i, n - i, &cp);
                if (k) { /* malformed bytes pass through unchanged */
                    if (cp >= 0x10000) {
                        cp -= 0x10000;
                        snprintf(u, sizeof u, "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                                 0xDC00 + (cp & 0x3FF));
                    } else {
                        snprintf(u, sizeof u, "\\u%04x", cp);
                    }
                    e = u;
                    skip = k;
                }
            }
        }
        if (e) {
            sb_add(c, b, s + run, i - run);
            sb_puts(c, b, e);
            i += skip - 1;
            run = i + 1;
        }
    }
    sb_add(c, b, s + run, n - run);
    sb_puts(c, b, "\"");
}

static void json_newline(jctx *c, llmos_buf *b, int indent, int level)
{
    sb_puts(c, b, "\n");
    for (int i = 0; i < indent * level; i++)
        sb_puts(c, b, " ");
}

static void sort_list(jctx *c, size_t off, jlist *l, jv attribute, bool reverse, bool by_value);
static jv dict_items(jctx *c, jdict *d);

static void to_json(jctx *c, size_t off, llmos_buf *b, jv v, const json_style *st, int level)
{
    char tmp[48];
    if (level > JX_MAX_JSON_DEPTH)
        jx_fail(c, off, LLMOS_ERR_LIMIT, "tojson: value nested too deeply");
    switch (v.t) {
    case JV_NONE: sb_puts(c, b, "null"); break;
    case JV_BOOL: sb_puts(c, b, v.u.b ? "true" : "false"); break;
    case JV_INT:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i);
        sb_puts(c, b, tmp);
        break;
    case JV_FLOAT:
        if (isnan(v.u.f))
            sb_puts(c, b, "NaN");
        else if (isinf(v.u.f))
            sb_puts(c, b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else {
            fmt_float(v.u.f, tmp, sizeof tmp);
            sb_puts(c, b, tmp);
        }
        break;
    case JV_STR: json_str(c, b, v.u.s.s, v.u.s.n, st->ascii); break;
    case JV_LIST:
        if (v.u.l->n == 0) {
            sb_puts(c, b, "[]");
            break;
        }
        sb_puts(c, b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                sb_add(c, b, st->item_sep, st->item_sep_len);
            if (st->indent >= 0)
                json_newline(c, b, st->indent, level + 1);
            to_json(c, off, b, v.u.l->v[i], st, level + 1);
        }
        if (st->indent >= 0)
            json_newline(c, b, st->indent, level);
        sb_puts(c, b, "]");
        break;
    case JV_DICT:
    case JV_NS: {
        if (v.u.d->n == 0) {
            sb_puts(c, b, "{}");
            break;
        }
        jlist *items = dict_items(c, v.u.d).u.l;
        if (st->sort_keys)
            sort_list(c, off, items, jv_undef(NULL), false, false);
        sb_puts(c, b, "{");
        for (size_t i = 0; i < items->n; i++) {
            jv key = items->v[i].u.l->v[0];
            if (i)
                sb_add(c, b, st->item_sep, st->item_sep_len);
            if (st->indent >= 0)
                json_newline(c, b, st->indent, level + 1);
            json_str(c, b, key.u.s.s, key.u.s.n, st->ascii);
            sb_add(c, b, st->key_sep, st->key_sep_len);
            to_json(c, off, b, items->v[i].u.l->v[1], st, level + 1);
        }
        if (st->indent >= 0)
            json_newline(c, b, st->indent, level);
        sb_puts(c, b, "}");
        break;
    }
    default:
        jx_fail(c, off, LLMOS_ERR_FORMAT, "tojson: object of type %s is not JSON serializable",
                type_name(v));
    }
}

/* ---- JSON input -> values ------------------------------------------------------------------ */

static jv from_json(jctx *c, const json_t *j, int depth)
{
    if (depth > JX_MAX_JSON_DEPTH)
        jx_fail(c, JX_HERE, LLMOS_ERR_LIMIT, "context JSON nested deeper than %d levels",
                JX_MAX_JSON_DEPTH);
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_str_copy(c, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jlist *l = list_new(c, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            l->v[l->n++] = from_json(c, json_array_get(j, i), depth + 1);
        return jv_list(l);
    }
    case JSON_OBJECT: {
        jdict *d = jx_alloc(c, sizeof *d);
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)j, k, val)
        {
            dict_set(c, d, jv_str_copy(c, k, strlen(k)), from_json(c, val, depth + 1));
        }
        return jv_dict(d);
    }
    }
    return jv_none();
}

/* ==== lexer ================================================================================= */

static void tok_push(jctx *c, token t)
{
    c->toks = jx_grow(c, c->toks, sizeof(token), c->n_toks, &c->cap_toks);
    c->toks[c->n_toks++] = t;
}

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* A string literal at src[p] (quote char there); returns the offset after it. Escapes follow
 * Python: \n \t \r \\ \' \" \0 \xHH \uHHHH; an unknown escape keeps its backslash. */
static size_t lex_string(jctx *c, size_t p)
{
    const char *s = c->src;
    char q = s[p];
    size_t start = p;
    llmos_buf *b = scratch_open(c);
    p++;
    for (;;) {
        if (p >= c->src_len)
            jx_fail(c, start, LLMOS_ERR_FORMAT, "unterminated string literal");
        char ch = s[p];
        if (ch == q)
            break;
        if (ch == '\\' && p + 1 < c->src_len) {
            char e = s[p + 1];
            char o = 0;
            switch (e) {
            case 'n': o = '\n'; break;
            case 't': o = '\t'; break;
            case 'r': o = '\r'; break;
            case '\\': o = '\\'; break;
            case '\'': o = '\''; break;
            case '"': o = '"'; break;
            case '0': o = '\0'; break;
            case 'x':
            case 'u':
            case 'U': {
                int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                int k;
                for (k = 0; k < nd && p + 2 + (size_t)k < c->src_len; k++) {
                    int h = hexval(s[p + 2 + k]);
                    if (h < 0)
                        break;
                    cp = cp * 16 + (uint32_t)h;
                }
                if (k != nd)
                    jx_fail(c, p, LLMOS_ERR_FORMAT, "bad \\%c escape in string literal", e);
                char u[4];
                size_t un = utf8_encode(cp, u);
                if (!un)
                    jx_fail(c, p, LLMOS_ERR_FORMAT, "escape \\%c names no valid character", e);
                sb_add(c, b, u, un);
                p += 2 + (size_t)nd;
                continue;
            }
            default:
                sb_add(c, b, s + p, 2);
                p += 2;
                continue;
            }
            sb_add(c, b, &o, 1);
            p += 2;
            continue;
        }
        sb_add(c, b, &ch, 1);
        p++;
    }
    jv v = scratch_close(c, b);
    tok_push(c, (token){.t = T_STRING, .off = start, .s = v.u.s.s, .n = v.u.s.n});
    return p + 1;
}

/* Tokens of one {{ }} or {% %} tag starting at p (after the opening delimiter). Returns the
 * offset after the closing delimiter, with trim rules applied. */
static size_t lex_tag(jctx *c, size_t p, bool block, size_t tag_off)
{
    const char *s = c->src;
    size_t n = c->src_len;
    int balance = 0;
    for (;;) {
        while (p < n && is_ws(s[p]))
            p++;
        if (p >= n)
            jx_fail(c, tag_off, LLMOS_ERR_FORMAT, "unclosed tag: expected '%s'",
                    block ? "%}" : "}}");
        char end = block ? '%' : '}';
        if (balance == 0) {
            bool minus = s[p] == '-' && p + 2 < n && s[p + 1] == end && s[p + 2] == '}';
            bool plus = block && s[p] == '+' && p + 2 < n && s[p + 1] == end && s[p + 2] == '}';
            bool plain = p + 1 < n && s[p] == end && s[p + 1] == '}';
            if (minus || plus || plain) {
                tok_push(c, (token){.t = block ? T_BLOCK_END : T_VAR_END, .off = p});
                p += plain ? 2 : 3;
                if (minus) {
                    while (p < n && is_ws(s[p]))
                        p++;
                } else if (block && plain && p < n && s[p] == '\n') {
                    p++; /* trim_blocks */
                }
                return p;
            }
        }
        char ch = s[p];
        if (isalpha((unsigned char)ch) || ch == '_') {
            size_t q = p;
            while (q < n && (isalnum((unsigned char)s[q]) || s[q] == '_'))
                q++;
            tok_push(c, (token){.t = T_NAME, .off = p, .s = s + p, .n = q - p});
            p = q;
        } else if (isdigit((unsigned char)ch)) {
            size_t q = p;
            bool is_float = false;
            while (q < n && isdigit((unsigned char)s[q]))
                q++;
            if (q + 1 < n && s[q] == '.' && isdigit((unsigned char)s[q + 1])) {
                is_float = true;
                q++;
                while (q < n && isdigit((unsigned char)s[q]))
                    q++;
            }
            if (q < n && (s[q] == 'e' || s[q] == 'E')) {
                size_t r = q + 1;
                if (r < n && (s[r] == '+' || s[r] == '-'))
                    r++;
                if (r < n && isdigit((unsigned char)s[r])) {
                    is_float = true;
                    q = r;
                    while (q < n && isdigit((unsigned char)s[q]))
                        q++;
                }
            }
            char num[64];
            size_t len = q - p < sizeof num - 1 ? q - p : sizeof num - 1;
            memcpy(num, s + p, len);
            num[len] = 0;
            token t = {.off = p};
            if (is_float) {
                t.t = T_FLOAT;
                t.f = strtod(num, NULL);
            } else {
                t.t = T_INT;
                char *endp;
                errno = 0;
                long long v = strtoll(num, &endp, 10);
                if (errno || q - p >= sizeof num - 1)
                    jx_fail(c, p, LLMOS_ERR_FORMAT, "integer literal too large");
                t.i = v;
            }
            tok_push(c, t);
            p = q;
        } else if (ch == '\'' || ch == '"') {
            p = lex_string(c, p);
        } else {
            static const char *const two[] = {"//", "**", "==", "!=", "<=", ">="};
            size_t len = 0;
            for (size_t k = 0; k < LLMOS_ARRAY_LEN(two); k++)
                if (p + 1 < n && s[p] == two[k][0] && s[p + 1] == two[k][1])
                    len = 2;
            if (!len) {
                if (!strchr("+-*/%~<>()[]{},.:|=", ch) || ch == 0)
                    jx_fail(c, p, LLMOS_ERR_FORMAT, "unexpected character '%c' in tag",
                            isprint((unsigned char)ch) ? ch : '?');
                len = 1;
                if (ch == '(' || ch == '[' || ch == '{')
                    balance++;
                else if ((ch == ')' || ch == ']' || ch == '}') && balance > 0)
                    balance--;
            }
            tok_push(c, (token){.t = T_OP, .off = p, .s = s + p, .n = len});
            p += len;
        }
    }
}

static void lex(jctx *c)
{
    const char *s = c->src;
    size_t n = c->src_len, p = 0;
    while (p < n) {
        /* next tag start */
        size_t i = p;
        while (i + 1 < n &&
               !(s[i] == '{' && (s[i + 1] == '{' || s[i + 1] == '%' || s[i + 1] == '#')))
            i++;
        if (i + 1 >= n)
            i = n;
        size_t text_end = i;
        char kind = i < n ? s[i + 1] : 0;
        char mod = i + 2 < n ? s[i + 2] : 0;
        if (kind && mod == '-') {
            while (text_end > p && is_ws(s[text_end - 1]))
                text_end--;
        } else if ((kind == '%' || kind == '#') && mod != '+') {
            /* lstrip_blocks: only spaces/tabs between the line start and the tag */
            size_t j = i;
            while (j > 0 && (s[j - 1] == ' ' || s[j - 1] == '\t'))
                j--;
            if (j == 0 || s[j - 1] == '\n')
                text_end = j > p ? j : p;
        }
        if (text_end > p)
            tok_push(c, (token){.t = T_TEXT, .off = p, .s = s + p, .n = text_end - p});
        if (i >= n)
            break;
        size_t after = i + 2 + (mod == '-' || mod == '+');
        if (kind == '#') {
            size_t q = after;
            while (q + 1 < n && !(s[q] == '#' && s[q + 1] == '}'))
                q++;
            if (q + 1 >= n)
                jx_fail(c, i, LLMOS_ERR_FORMAT, "unclosed comment: expected '#}'");
            bool minus = q > after && s[q - 1] == '-';
            bool plus = q > after && s[q - 1] == '+';
            p = q + 2;
            if (minus) {
                while (p < n && is_ws(s[p]))
                    p++;
            } else if (!plus && p < n && s[p] == '\n') {
                p++;
            }
        } else {
            tok_push(c, (token){.t = kind == '%' ? T_BLOCK_BEGIN : T_VAR_BEGIN, .off = i});
            p = lex_tag(c, after, kind == '%', i);
        }
    }
    tok_push(c, (token){.t = T_EOF, .off = n});
}

/* ==== parser ================================================================================ */

static token *peek(jctx *c)
{
    return &c->toks[c->pos];
}
static token *peek_at(jctx *c, size_t k)
{
    size_t i = c->pos + k < c->n_toks ? c->pos + k : c->n_toks - 1;
    return &c->toks[i];
}
static token *next(jctx *c)
{
    token *t = &c->toks[c->pos];
    if (t->t != T_EOF)
        c->pos++;
    return t;
}

static bool tok_is_op(const token *t, const char *op)
{
    return t->t == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static bool tok_is_name(const token *t, const char *name)
{
    return t->t == T_NAME && t->n == strlen(name) && memcmp(t->s, name, t->n) == 0;
}

static const char *tok_desc(jctx *c, const token *t)
{
    switch (t->t) {
    case T_TEXT: return "template text";
    case T_VAR_BEGIN: return "'{{'";
    case T_VAR_END: return "'}}'";
    case T_BLOCK_BEGIN: return "'{%'";
    case T_BLOCK_END: return "'%}'";
    case T_STRING: return "a string";
    case T_INT:
    case T_FLOAT: return "a number";
    case T_EOF: return "end of template";
    case T_NAME:
    case T_OP: return arena_printf(c->arena, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
    }
    return "?";
}

static void expect_op(jctx *c, const char *op)
{
    token *t = peek(c);
    if (!tok_is_op(t, op))
        jx_fail(c, t->off, LLMOS_ERR_FORMAT, "expected '%s', found %s", op, tok_desc(c, t));
    next(c);
}

static void expect_type(jctx *c, tok_type type, const char *what)
{
    token *t = peek(c);
    if (t->t != type)
        jx_fail(c, t->off, LLMOS_ERR_FORMAT, "expected %s, found %s", what, tok_desc(c, t));
    next(c);
}

static token *expect_name(jctx *c, const char *what)
{
    token *t = peek(c);
    if (t->t != T_NAME)
        jx_fail(c, t->off, LLMOS_ERR_FORMAT, "expected %s, found %s", what, tok_desc(c, t));
    return next(c);
}

static node *mk(jctx *c, node_kind k, size_t off)
{
    node *x = jx_alloc(c, sizeof *x);
    x->kind = k;
    x->off = off;
    return x;
}

static const char *tok_cstr(jctx *c, const token *t)
{
    return arena_strndup(c->arena, t->s, t->n);
}

typedef struct nvec {
    node **v;
    size_t n, cap;
} nvec;
static void nvec_push(jctx *c, nvec *v, node *x)
{
    v->v = jx_grow(c, v->v, sizeof(node *), v->n, &v->cap);
    v->v[v->n++] = x;
}

static void nest_enter(jctx *c, size_t off)
{
    if (++c->nest > JX_MAX_NEST)
        jx_fail(c, off, LLMOS_ERR_LIMIT, "template nested more than %d levels deep", JX_MAX_NEST);
}

static node *parse_expr(jctx *c);
static node *parse_or(jctx *c);
static node *parse_unary(jctx *c, bool with_filter);

static const char *const known_filters[] = {
    "trim",      "tojson",   "length",  "count", "upper",      "lower",      "title",  "capitalize",
    "default",   "d",        "join",    "first", "last",       "list",       "items",  "string",
    "int",       "float",    "replace", "safe",  "selectattr", "rejectattr", "select", "reject",
    "map",       "dictsort", "reverse", "sort",  "unique",     "abs",        "round",  "sum",
    "min",       "max",      "indent",  "e",     "escape",     "wordcount",  "center", "truncate",
    "striptags", "batch",    "bool",    "format"};
static const char *const known_tests[] = {
    "defined", "undefined", "none",        "string",  "number",   "integer",  "float",
    "boolean", "true",      "false",       "mapping", "iterable", "sequence", "callable",
    "odd",     "even",      "divisibleby", "equalto", "eq",       "==",       "ne",
    "!=",      "lt",        "<",           "le",      "<=",       "gt",       ">",
    "ge",      ">=",        "in",          "sameas",  "lower",    "upper"};

static bool name_in(const char *name, size_t n, const char *const *set, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(set[i]) == n && memcmp(set[i], name, n) == 0)
            return true;
    return false;
}

/* Call arguments after '(' up to and including ')': positional into x->list, name=value
 * into x->list2 as E_KW nodes. */
static void parse_args(jctx *c, node *x)
{
    nvec args = {0}, kws = {0};
    while (!tok_is_op(peek(c), ")")) {
        if (args.n + kws.n)
            expect_op(c, ",");
        if (tok_is_op(peek(c), ")"))
            break; /* trailing comma */
        token *t = peek(c);
        if (t->t == T_NAME && tok_is_op(peek_at(c, 1), "=")) {
            node *kw = mk(c, E_KW, t->off);
            kw->name = tok_cstr(c, t);
            kw->name_len = t->n;
            next(c);
            next(c);
            kw->a = parse_expr(c);
            nvec_push(c, &kws, kw);
        } else {
            if (kws.n)
                jx_fail(c, t->off, LLMOS_ERR_FORMAT, "positional argument after keyword argument");
            nvec_push(c, &args, parse_expr(c));
        }
    }
    expect_op(c, ")");
    x->list = args.v;
    x->n = args.n;
    x->list2 = kws.v;
    x->n2 = kws.n;
}

static node *parse_primary(jctx *c)
{
    token *t = peek(c);
    node *x;
    nest_enter(c, t->off);
    switch (t->t) {
    case T_NAME:
        next(c);
        x = mk(c, E_LIT, t->off);
        if (tok_is_name(t, "true") || tok_is_name(t, "True"))
            x->val = jv_bool(true);
        else if (tok_is_name(t, "false") || tok_is_name(t, "False"))
            x->val = jv_bool(false);
        else if (tok_is_name(t, "none") || tok_is_name(t, "None"))
            x->val = jv_none();
        else {
            x->kind = E_NAME;
            x->name = tok_cstr(c, t);
            x->name_len = t->n;
        }
        break;
    case T_STRING: {
        /* adjacent literals concatenate, as in Python */
        next(c);
        x = mk(c, E_LIT, t->off);
        if (peek(c)->t != T_STRING) {
            x->val = jv_strn(t->s, t->n);
            break;
        }
        llmos_buf *b = scratch_open(c);
        sb_add(c, b, t->s, t->n);
        while (peek(c)->t == T_STRING) {
            token *u = next(c);
            sb_add(c, b, u->s, u->n);
        }
        x->val = scratch_close(c, b);
        break;
    }
    case T_INT:
        next(c);
        x = mk(c, E_LIT, t->off);
        x->val = jv_int(t->i);
        break;
    case T_FLOAT:
        next(c);
        x = mk(c, E_LIT, t->off);
        x->val = jv_float(t->f);
        break;
    case T_OP:
        if (tok_is_op(t, "(")) {
            next(c);
            if (tok_is_op(peek(c), ")")) { /* empty tuple */
                next(c);
                x = mk(c, E_LIST, t->off);
                break;
            }
            node *first = parse_expr(c);
            if (!tok_is_op(peek(c), ",")) {
                expect_op(c, ")");
                x = first;
                break;
            }
            /* a tuple: evaluated as a list */
            nvec items = {0};
            nvec_push(c, &items, first);
            while (tok_is_op(peek(c), ",")) {
                next(c);
                if (tok_is_op(peek(c), ")"))
                    break;
                nvec_push(c, &items, parse_expr(c));
            }
            expect_op(c, ")");
            x = mk(c, E_LIST, t->off);
            x->list = items.v;
            x->n = items.n;
            break;
        }
        if (tok_is_op(t, "[")) {
            next(c);
            nvec items = {0};
            while (!tok_is_op(peek(c), "]")) {
                if (items.n)
                    expect_op(c, ",");
                if (tok_is_op(peek(c), "]"))
                    break;
                nvec_push(c, &items, parse_expr(c));
            }
            expect_op(c, "]");
            x = mk(c, E_LIST, t->off);
            x->list = items.v;
            x->n = items.n;
            break;
        }
        if (tok_is_op(t, "{")) {
            next(c);
            nvec items = {0};
            while (!tok_is_op(peek(c), "}")) {
                if (items.n)
                    expect_op(c, ",");
                if (tok_is_op(peek(c), "}"))
                    break;
                nvec_push(c, &items, parse_expr(c));
                expect_op(c, ":");
                nvec_push(c, &items, parse_expr(c));
            }
            expect_op(c, "}");
            x = mk(c, E_DICT, t->off);
            x->list = items.v;
            x->n = items.n;
            break;
        }
        /* fall through */
    default:
        jx_fail(c, t->off, LLMOS_ERR_FORMAT, "expected an expression, found %s", tok_desc(c, t));
    }
    c->nest--;
    return x;
}

static node *parse_postfix(jctx *c, node *x)
{
    for (;;) {
        token *t = peek(c);
        if (tok_is_op(t, ".")) {
            next(c);
            token *u = peek(c);
            if (u->t == T_INT) { /* x.0 means x[0] */
                next(c);
                node *idx = mk(c, E_LIT, u->off);
                idx->val = jv_int(u->i);
                node *y = mk(c, E_INDEX, t->off);
                y->a = x;
                y->b = idx;
                x = y;
                continue;
            }
            u = expect_name(c, "an attribute name after '.'");
            node *y = mk(c, E_ATTR, u->off);
            y->a = x;
            y->name = tok_cstr(c, u);
            y->name_len = u->n;
            x = y;
        } else if (tok_is_op(t, "[")) {
            next(c);
            node *start = NULL, *stop = NULL, *step = NULL;
            bool slice = false;
            if (!tok_is_op(peek(c), ":"))
                start = parse_expr(c);
            if (tok_is_op(peek(c), ":")) {
                slice = true;
                next(c);
                if (!tok_is_op(peek(c), ":") && !tok_is_op(peek(c), "]"))
                    stop = parse_expr(c);
                if (tok_is_op(peek(c), ":")) {
                    next(c);
                    if (!tok_is_op(peek(c), "]"))
                        step = parse_expr(c);
                }
            }
            expect_op(c, "]");
            node *y = mk(c, slice ? E_SLICE : E_INDEX, t->off);
            y->a = x;
            if (slice) {
                y->b = start;
                y->c = stop;
                y->d = step;
            } else {
                if (!start)
                    jx_fail(c, t->off, LLMOS_ERR_FORMAT, "empty subscript");
                y->b = start;
            }
            x = y;
        } else if (tok_is_op(t, "(")) {
            next(c);
            node *y = mk(c, E_CALL, x->off); /* errors point at the callee */
            y->a = x;
            parse_args(c, y);
            x = y;
        } else {
            return x;
        }
    }
}

static bool starts_test_arg(const token *t)
{
    if (t->t == T_STRING || t->t == T_INT || t->t == T_FLOAT)
        return true;
    if (t->t == T_OP)
        return tok_is_op(t, "[") || tok_is_op(t, "{");
    if (t->t == T_NAME) {
        static const char *const kw[] = {"and", "or", "else", "if", "not", "in", "is"};
        return !name_in(t->s, t->n, kw, LLMOS_ARRAY_LEN(kw));
    }
    return false;
}

static node *parse_filters(jctx *c, node *x)
{
    for (;;) {
        token *t = peek(c);
        if (tok_is_op(t, "|")) {
            next(c);
            token *f = expect_name(c, "a filter name after '|'");
            if (!name_in(f->s, f->n, known_filters, LLMOS_ARRAY_LEN(known_filters)))
                jx_fail(c, f->off, LLMOS_ERR_FORMAT, "unknown filter '%.*s'", (int)f->n, f->s);
            node *y = mk(c, E_FILTER, f->off);
            y->a = x;
            y->name = tok_cstr(c, f);
            y->name_len = f->n;
            if (tok_is_op(peek(c), "(")) {
                next(c);
                parse_args(c, y);
            }
            x = y;
        } else if (tok_is_name(t, "is")) {
            next(c);
            node *y = mk(c, E_TEST, t->off);
            if (tok_is_name(peek(c), "not")) {
                next(c);
                y->op = 1;
            }
            token *f = peek(c);
            if (f->t == T_NAME ||
                (f->t == T_OP && (tok_is_op(f, "==") || tok_is_op(f, "!=") || tok_is_op(f, "<") ||
                                  tok_is_op(f, "<=") || tok_is_op(f, ">") || tok_is_op(f, ">="))))
                next(c);
            else
                jx_fail(c, f->off, LLMOS_ERR_FORMAT, "expected a test name after 'is', found %s",
                        tok_desc(c, f));
            if (!name_in(f->s, f->n, known_tests, LLMOS_ARRAY_LEN(known_tests)))
                jx_fail(c, f->off, LLMOS_ERR_FORMAT, "unknown test '%.*s'", (int)f->n, f->s);
            y->a = x;
            y->name = tok_cstr(c, f);
            y->name_len = f->n;
            if (tok_is_op(peek(c), "(")) {
                next(c);
                parse_args(c, y);
            } else if (starts_test_arg(peek(c))) {
                node *arg = parse_postfix(c, parse_primary(c));
                y->list = jx_alloc(c, sizeof(node *));
                y->list[0] = arg;
                y->n = 1;
            }
            x = y;
        } else if (tok_is_op(t, "(")) {
            next(c);
            node *y = mk(c, E_CALL, x->off); /* errors point at the callee */
            y->a = x;
            parse_args(c, y);
            x = y;
        } else {
            return x;
        }
    }
}

static node *parse_unary(jctx *c, bool with_filter)
{
    token *t = peek(c);
    node *x;
    nest_enter(c, t->off);
    if (tok_is_op(t, "-") || tok_is_op(t, "+")) {
        next(c);
        x = mk(c, tok_is_op(t, "-") ? E_NEG : E_POS, t->off);
        x->a = parse_unary(c, false);
    } else {
        x = parse_postfix(c, parse_primary(c));
    }
    if (with_filter)
        x = parse_filters(c, x);
    c->nest--;
    return x;
}

static node *mk_bin(jctx *c, int op, size_t off, node *a, node *b)
{
    node *x = mk(c, E_BIN, off);
    x->op = op;
    x->a = a;
    x->b = b;
    return x;
}

static node *parse_pow(jctx *c)
{
    node *x = parse_unary(c, true);
    while (tok_is_op(peek(c), "**")) {
        size_t off = next(c)->off;
        x = mk_bin(c, OP_POW, off, x, parse_unary(c, true));
    }
    return x;
}

static node *parse_math2(jctx *c)
{
    node *x = parse_pow(c);
    for (;;) {
        token *t = peek(c);
        int op = tok_is_op(t, "*")    ? OP_MUL
                 : tok_is_op(t, "/")  ? OP_DIV
                 : tok_is_op(t, "//") ? OP_FLOORDIV
                 : tok_is_op(t, "%")  ? OP_MOD
                                      : -1;
        if (op < 0)
            return x;
        next(c);
        x = mk_bin(c, op, t->off, x, parse_pow(c));
    }
}

static node *parse_concat(jctx *c)
{
    node *x = parse_math2(c);
    while (tok_is_op(peek(c), "~")) {
        size_t off = next(c)->off;
        x = mk_bin(c, OP_CONCAT, off, x, parse_math2(c));
    }
    return x;
}

static node *parse_math1(jctx *c)
{
    node *x = parse_concat(c);
    for (;;) {
        token *t = peek(c);
        int op = tok_is_op(t, "+") ? OP_ADD : tok_is_op(t, "-") ? OP_SUB : -1;
        if (op < 0)
            return x;
        next(c);
        x = mk_bin(c, op, t->off, x, parse_concat(c));
    }
}

static node *parse_compare(jctx *c)
{
    node *x = parse_math1(c);
    for (;;) {
        token *t = peek(c);
        int op = tok_is_op(t, "==")     ? OP_EQ
                 : tok_is_op(t, "!=")   ? OP_NE
                 : tok_is_op(t, "<")    ? OP_LT
                 : tok_is_op(t, "<=")   ? OP_LE
                 : tok_is_op(t, ">")    ? OP_GT
                 : tok_is_op(t, ">=")   ? OP_GE
                 : tok_is_name(t, "in") ? OP_IN
                                        : -1;
        if (op < 0 && tok_is_name(t, "not") && tok_is_name(peek_at(c, 1), "in")) {
            next(c);
            op = OP_NOTIN;
        }
        if (op < 0)
            return x;
        next(c);
        x = mk_bin(c, op, t->off, x, parse_math1(c));
    }
}

static node *parse_not(jctx *c)
{
    token *t = peek(c);
    if (tok_is_name(t, "not")) {
        next(c);
        nest_enter(c, t->off);
        node *x = mk(c, E_NOT, t->off);
        x->a = parse_not(c);
        c->nest--;
        return x;
    }
    return parse_compare(c);
}

static node *parse_and(jctx *c)
{
    node *x = parse_not(c);
    while (tok_is_name(peek(c), "and")) {
        node *y = mk(c, E_AND, next(c)->off);
        y->a = x;
        y->b = parse_not(c);
        x = y;
    }
    return x;
}

static node *parse_or(jctx *c)
{
    node *x = parse_and(c);
    while (tok_is_name(peek(c), "or")) {
        node *y = mk(c, E_OR, next(c)->off);
        y->a = x;
        y->b = parse_and(c);
        x = y;
    }
    return x;
}

/* expr := or ['if' or ['else' expr]] */
static node *parse_expr(jctx *c)
{
    nest_enter(c, peek(c)->off);
    node *x = parse_or(c);
    if (tok_is_name(peek(c), "if")) {
        node *y = mk(c, E_COND, next(c)->off);
        y->b = x;
        y->a = parse_or(c);
        if (tok_is_name(peek(c), "else")) {
            next(c);
            y->c = parse_expr(c);
        }
        x = y;
    }
    c->nest--;
    return x;
}

/* ---- statements ---------------------------------------------------------------------------- */

static node *parse_body(jctx *c, const char *const *ends, size_t n_ends);

/* After a body: the '{%' name that ended it (consumed); returns the name token. */
static token *parse_end_tag(jctx *c)
{
    return expect_name(c, "a statement name");
}

static node *parse_if(jctx *c, size_t off)
{
    static const char *const ends[] = {"elif", "else", "endif"};
    node *x = mk(c, S_IF, off);
    nvec conds = {0}, bodies = {0};
    nvec_push(c, &conds, parse_expr(c));
    expect_type(c, T_BLOCK_END, "'%}'");
    for (;;) {
        nvec_push(c, &bodies, parse_body(c, ends, 3));
        token *t = parse_end_tag(c);
        if (tok_is_name(t, "elif")) {
            nvec_push(c, &conds, parse_expr(c));
            expect_type(c, T_BLOCK_END, "'%}'");
        } else if (tok_is_name(t, "else")) {
            expect_type(c, T_BLOCK_END, "'%}'");
            static const char *const endif[] = {"endif"};
            nvec_push(c, &bodies, parse_body(c, endif, 1));
            parse_end_tag(c);
            expect_type(c, T_BLOCK_END, "'%}'");
            break;
        } else {
            expect_type(c, T_BLOCK_END, "'%}'");
            break;
        }
    }
    x->list = conds.v;
    x->n = conds.n;
    x->list2 = bodies.v;
    x->n2 = bodies.n;
    return x;
}

/* for NAME[, NAME...] in ITER [if COND] %} body [{% else %} body] {% endfor %} */
static node *parse_for(jctx *c, size_t off)
{
    node *x = mk(c, S_FOR, off);
    const char *names[8];
    size_t nn = 0;
    bool paren = tok_is_op(peek(c), "(");
    if (paren)
        next(c);
    for (;;) {
        token *t = expect_name(c, "a loop variable name");
        if (nn == LLMOS_ARRAY_LEN(names))
            jx_fail(c, t->off, LLMOS_ERR_UNSUPPORTED, "too many loop variables");
        names[nn++] = tok_cstr(c, t);
        if (!tok_is_op(peek(c), ","))
            break;
        next(c);
    }
    if (paren)
        expect_op(c, ")");
    x->names = jx_calloc(c, nn, sizeof(char *));
    memcpy(x->names, names, nn * sizeof(char *));
    x->n_names = nn;
    token *t = peek(c);
    if (!tok_is_name(t, "in"))
        jx_fail(c, t->off, LLMOS_ERR_FORMAT, "expected 'in' in for loop, found %s", tok_desc(c, t));
    next(c);
    x->a = parse_or(c); /* no inline if here: 'if' starts the loop filter */
    if (tok_is_name(peek(c), "if")) {
        next(c);
        x->b = parse_expr(c);
    }
    if (tok_is_name(peek(c), "recursive"))
        jx_fail(c, peek(c)->off, LLMOS_ERR_UNSUPPORTED, "recursive for loops are not supported");
    expect_type(c, T_BLOCK_END, "'%}'");
    static const char *const ends[] = {"else", "endfor"};
    x->c = parse_body(c, ends, 2);
    token *e = parse_end_tag(c);
    expect_type(c, T_BLOCK_END, "'%}'");
    if (tok_is_name(e, "else")) {
        static const char *const endfor[] = {"endfor"};
        x->d = parse_body(c, endfor, 1);
        parse_end_tag(c);
        expect_type(c, T_BLOCK_END, "'%}'");
    }
    return x;
}

static node *parse_set(jctx *c, size_t off)
{
    token *t = expect_name(c, "a variable name after 'set'");
    node *x = mk(c, S_SET, off);
    x->name = tok_cstr(c, t);
    x->name_len = t->n;
    if (tok_is_op(peek(c), ".")) {
        next(c);
        token *a = expect_name(c, "an attribute name");
        x->a = mk(c, E_LIT, a->off);
        x->a->val = jv_strn(tok_cstr(c, a), a->n); /* namespace attribute */
    }
    if (tok_is_op(peek(c), ","))
        jx_fail(c, peek(c)->off, LLMOS_ERR_UNSUPPORTED,
                "set with several targets is not supported");
    if (tok_is_op(peek(c), "=")) {
        next(c);
        x->b = parse_expr(c);
        if (tok_is_op(peek(c), ","))
            jx_fail(c, peek(c)->off, LLMOS_ERR_UNSUPPORTED,
                    "set of a bare tuple is not supported; write a list [a, b]");
        expect_type(c, T_BLOCK_END, "'%}'");
        return x;
    }
    if (x->a)
        jx_fail(c, peek(c)->off, LLMOS_ERR_FORMAT, "expected '=' after set %s.%s", x->name,
                x->a->val.u.s.s);
    /* block set: {% set x %}...{% endset %} */
    expect_type(c, T_BLOCK_END, "'=' or '%}'");
    x->kind = S_SETBLOCK;
    static const char *const ends[] = {"endset"};
    x->c = parse_body(c, ends, 1);
    parse_end_tag(c);
    expect_type(c, T_BLOCK_END, "'%}'");
    return x;
}

static node *parse_macro(jctx *c, size_t off)
{
    token *t = expect_name(c, "a macro name");
    node *x = mk(c, S_MACRO, off);
    x->name = tok_cstr(c, t);
    x->name_len = t->n;
    expect_op(c, "(");
    const char *names[64];
    node *defs[64];
    size_t nn = 0;
    while (!tok_is_op(peek(c), ")")) {
        if (nn)
            expect_op(c, ",");
        token *p = expect_name(c, "a parameter name");
        if (nn == LLMOS_ARRAY_LEN(names))
            jx_fail(c, p->off, LLMOS_ERR_UNSUPPORTED, "too many macro parameters");
        names[nn] = tok_cstr(c, p);
        defs[nn] = NULL;
        if (tok_is_op(peek(c), "=")) {
            next(c);
            defs[nn] = parse_expr(c);
        }
        nn++;
    }
    next(c);
    expect_type(c, T_BLOCK_END, "'%}'");
    x->names = jx_calloc(c, nn, sizeof(char *));
    x->list2 = jx_calloc(c, nn, sizeof(node *));
    if (nn) {
        memcpy(x->names, names, nn * sizeof(char *));
        memcpy(x->list2, defs, nn * sizeof(node *));
    }
    x->n_names = nn;
    x->n2 = nn;
    static const char *const ends[] = {"endmacro"};
    x->c = parse_body(c, ends, 1);
    parse_end_tag(c);
    if (peek(c)->t == T_NAME)
        next(c); /* {% endmacro name %} */
    expect_type(c, T_BLOCK_END, "'%}'");
    return x;
}

static node *parse_statement(jctx *c)
{
    token *t = expect_name(c, "a statement name after '{%'");
    size_t off = t->off;
    if (tok_is_name(t, "if"))
        return parse_if(c, off);
    if (tok_is_name(t, "for"))
        return parse_for(c, off);
    if (tok_is_name(t, "set"))
        return parse_set(c, off);
    if (tok_is_name(t, "macro"))
        return parse_macro(c, off);
    if (tok_is_name(t, "break") || tok_is_name(t, "continue")) {
        node *x = mk(c, tok_is_name(t, "break") ? S_BREAK : S_CONTINUE, off);
        expect_type(c, T_BLOCK_END, "'%}'");
        return x;
    }
    if (tok_is_name(t, "generation")) { /* Hugging Face's assistant-mask marker: a plain block */
        expect_type(c, T_BLOCK_END, "'%}'");
        static const char *const ends[] = {"endgeneration"};
        node *x = parse_body(c, ends, 1);
        parse_end_tag(c);
        expect_type(c, T_BLOCK_END, "'%}'");
        return x;
    }
    static const char *const unsupported[] = {"extends", "include", "import", "from", "block",
                                              "call",    "filter",  "with",   "raw",  "autoescape"};
    if (name_in(t->s, t->n, unsupported, LLMOS_ARRAY_LEN(unsupported)))
        jx_fail(c, off, LLMOS_ERR_UNSUPPORTED, "'%.*s' statements are not supported", (int)t->n,
                t->s);
    static const char *const ends[] = {"elif",   "else",     "endif",        "endfor",
                                       "endset", "endmacro", "endgeneration"};
    if (name_in(t->s, t->n, ends, LLMOS_ARRAY_LEN(ends)))
        jx_fail(c, off, LLMOS_ERR_FORMAT, "unexpected '%.*s' (no open block it could close)",
                (int)t->n, t->s);
    jx_fail(c, off, LLMOS_ERR_FORMAT, "unknown statement '%.*s'", (int)t->n, t->s);
}

/* Statements until '{%' NAME with NAME in ends (the '{%' consumed, NAME not), or end of
 * template when ends is empty. */
static node *parse_body(jctx *c, const char *const *ends, size_t n_ends)
{
    size_t start = peek(c)->off;
    nest_enter(c, start);
    node *blk = mk(c, S_BLOCK, start);
    nvec items = {0};
    for (;;) {
        token *t = peek(c);
        if (t->t == T_EOF) {
            if (n_ends)
                jx_fail(c, t->off, LLMOS_ERR_FORMAT,
                        "unexpected end of template: missing '{%% %s %%}'", ends[n_ends - 1]);
            break;
        }
        if (t->t == T_TEXT) {
            next(c);
            node *x = mk(c, S_TEXT, t->off);
            x->name = t->s;
            x->name_len = t->n;
            nvec_push(c, &items, x);
        } else if (t->t == T_VAR_BEGIN) {
            next(c);
            node *x = mk(c, S_OUT, t->off);
            x->a = parse_expr(c);
            expect_type(c, T_VAR_END, "'}}'");
            nvec_push(c, &items, x);
        } else if (t->t == T_BLOCK_BEGIN) {
            token *name = peek_at(c, 1);
            if (name->t == T_NAME && name_in(name->s, name->n, ends, n_ends)) {
                next(c);
                break;
            }
            next(c);
            nvec_push(c, &items, parse_statement(c));
        } else {
            jx_fail(c, t->off, LLMOS_ERR_FORMAT, "unexpected %s", tok_desc(c, t));
        }
    }
    blk->list = items.v;
    blk->n = items.n;
    c->nest--;
    return blk;
}

/* ==== evaluation ============================================================================ */

static jv eval(jctx *c, scope *sc, const node *x);

static void step(jctx *c, size_t off)
{
    c->cur = off;
    if (++c->steps > c->opt.max_steps)
        jx_fail(c, off, LLMOS_ERR_LIMIT,
                "template ran more than %zu steps (limit max_steps): runaway loop or recursion?",
                c->opt.max_steps);
}

static scope *scope_new(jctx *c, scope *parent)
{
    scope *s = jx_alloc(c, sizeof *s);
    s->parent = parent;
    return s;
}

static void scope_set(jctx *c, scope *sc, const char *name, jv v)
{
    dict_set(c, &sc->vars, jv_strn(name, strlen(name)), v);
}

static jv lookup(jctx *c, scope *sc, const char *name, size_t n)
{
    (void)c;
    for (scope *s = sc; s; s = s->parent) {
        jv *v = dict_find(&s->vars, name, n);
        if (v)
            return *v;
    }
    static const struct {
        const char *name;
        int fn;
    } builtins[] = {{"range", FN_RANGE},
                    {"namespace", FN_NAMESPACE},
                    {"raise_exception", FN_RAISE},
                    {"strftime_now", FN_STRFTIME},
                    {"dict", FN_DICT}};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(builtins); i++)
        if (strlen(builtins[i].name) == n && memcmp(builtins[i].name, name, n) == 0)
            return (jv){.t = JV_FUNC, .u.fn = builtins[i].fn};
    return jv_undef(name);
}

static bool jv_equal(jv a, jv b, int depth)
{
    if (depth > JX_MAX_JSON_DEPTH)
        return false;
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b))
            return num_i(a) == num_i(b);
        return num_f(a) == num_f(b);
    }
    if (a.t != b.t)
        return false;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.s, b.u.s.s, a.u.s.n) == 0;
    case JV_LIST:
        if (a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_equal(a.u.l->v[i], b.u.l->v[i], depth + 1))
                return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = dict_find(b.u.d, a.u.d->k[i].u.s.s, a.u.d->k[i].u.s.n);
            if (!o || !jv_equal(a.u.d->v[i], *o, depth + 1))
                return false;
        }
        return true;
    case JV_NS: return a.u.d == b.u.d;
    case JV_MACRO: return a.u.m == b.u.m;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

/* <0, 0, >0 for numbers and strings; fails for other types. */
static int jv_compare(jctx *c, size_t off, jv a, jv b)
{
    if (is_num(a) && is_num(b)) {
        if (is_intlike(a) && is_intlike(b))
            return num_i(a) < num_i(b) ? -1 : num_i(a) > num_i(b);
        double x = num_f(a), y = num_f(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = n ? memcmp(a.u.s.s, b.u.s.s, n) : 0;
        if (r)
            return r;
        return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    }
    jx_fail(c, off, LLMOS_ERR_FORMAT, "cannot compare %s with %s", type_name(a), type_name(b));
}

static bool contains(jctx *c, size_t off, jv hay, jv needle)
{
    switch (hay.t) {
    case JV_STR:
        if (needle.t != JV_STR)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "'in <string>' requires a string, not %s",
                    type_name(needle));
        return needle.u.s.n == 0 ||
               memmem(hay.u.s.s, hay.u.s.n, needle.u.s.s, needle.u.s.n) != NULL;
    case JV_LIST:
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jv_equal(hay.u.l->v[i], needle, 0))
                return true;
        return false;
    case JV_DICT:
    case JV_NS: return needle.t == JV_STR && dict_find(hay.u.d, needle.u.s.s, needle.u.s.n) != NULL;
    case JV_UNDEF: return false;
    default:
        jx_fail(c, off, LLMOS_ERR_FORMAT, "argument of type %s is not iterable", type_name(hay));
    }
}

/* The items a for loop or a filter iterates: list items, dict keys, string characters. */
static jlist *iter_items(jctx *c, size_t off, jv v)
{
    switch (v.t) {
    case JV_LIST: return v.u.l;
    case JV_DICT:
    case JV_NS: {
        jlist *l = list_new(c, v.u.d->n);
        for (size_t i = 0; i < v.u.d->n; i++)
            l->v[l->n++] = v.u.d->k[i];
        return l;
    }
    case JV_STR: {
        size_t k;
        size_t *offs = cp_offsets(c, v.u.s.s, v.u.s.n, &k);
        jlist *l = list_new(c, k);
        for (size_t i = 0; i < k; i++)
            l->v[l->n++] = jv_strn(v.u.s.s + offs[i], offs[i + 1] - offs[i]);
        return l;
    }
    case JV_UNDEF: return list_new(c, 0);
    default: jx_fail(c, off, LLMOS_ERR_FORMAT, "'%s' object is not iterable", type_name(v));
    }
}

static jv dict_items(jctx *c, jdict *d)
{
    jlist *l = list_new(c, d->n);
    for (size_t i = 0; i < d->n; i++) {
        jlist *pair = list_new(c, 2);
        pair->v[0] = d->k[i];
        pair->v[1] = d->v[i];
        pair->n = 2;
        l->v[l->n++] = jv_list(pair);
    }
    return jv_list(l);
}

static jv loop_attr(jctx *c, jloop *lp, const char *name)
{
    size_t n = lp->items->n, i = lp->i;
    (void)c;
    if (!strcmp(name, "index"))
        return jv_int((int64_t)i + 1);
    if (!strcmp(name, "index0"))
        return jv_int((int64_t)i);
    if (!strcmp(name, "revindex"))
        return jv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0"))
        return jv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first"))
        return jv_bool(i == 0);
    if (!strcmp(name, "last"))
        return jv_bool(i + 1 == n);
    if (!strcmp(name, "length"))
        return jv_int((int64_t)n);
    if (!strcmp(name, "previtem"))
        return i > 0 ? lp->items->v[i - 1] : jv_undef("loop.previtem");
    if (!strcmp(name, "nextitem"))
        return i + 1 < n ? lp->items->v[i + 1] : jv_undef("loop.nextitem");
    if (!strcmp(name, "depth"))
        return jv_int(1);
    if (!strcmp(name, "depth0"))
        return jv_int(0);
    return jv_undef(name);
}

/* obj.name: dict member, namespace member, loop field; anything else is undefined. */
static jv get_attr(jctx *c, size_t off, jv obj, const char *name, size_t n)
{
    switch (obj.t) {
    case JV_UNDEF: fail_undefined(c, off, obj);
    case JV_DICT:
    case JV_NS: {
        jv *v = dict_find(obj.u.d, name, n);
        return v ? *v : jv_undef(name);
    }
    case JV_LOOP: return loop_attr(c, obj.u.loop, name);
    default: return jv_undef(name);
    }
}

/* Python index normalisation; false when out of range. */
static bool norm_index(int64_t i, size_t n, size_t *out)
{
    if (i < 0)
        i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n)
        return false;
    *out = (size_t)i;
    return true;
}

static jv get_item(jctx *c, size_t off, jv obj, jv key)
{
    size_t idx;
    switch (obj.t) {
    case JV_UNDEF: fail_undefined(c, off, obj);
    case JV_DICT:
    case JV_NS:
        if (key.t == JV_STR) {
            jv *v = dict_find(obj.u.d, key.u.s.s, key.u.s.n);
            if (v)
                return *v;
            return jv_undef(arena_strndup(c->arena, key.u.s.s, key.u.s.n));
        }
        return jv_undef(NULL);
    case JV_LIST:
        if (is_intlike(key) && norm_index(num_i(key), obj.u.l->n, &idx))
            return obj.u.l->v[idx];
        return jv_undef(NULL);
    case JV_STR:
        if (is_intlike(key)) {
            size_t k;
            size_t *offs = cp_offsets(c, obj.u.s.s, obj.u.s.n, &k);
            if (norm_index(num_i(key), k, &idx))
                return jv_strn(obj.u.s.s + offs[idx], offs[idx + 1] - offs[idx]);
        }
        return jv_undef(NULL);
    case JV_LOOP:
        if (key.t == JV_STR)
            return loop_attr(c, obj.u.loop, arena_strndup(c->arena, key.u.s.s, key.u.s.n));
        return jv_undef(NULL);
    default: return jv_undef(NULL);
    }
}

static int64_t slice_bound(jctx *c, size_t off, jv v, int64_t def)
{
    if (v.t == JV_UNDEF || v.t == JV_NONE)
        return def;
    if (!is_intlike(v))
        jx_fail(c, off, LLMOS_ERR_FORMAT, "slice indices must be integers, not %s", type_name(v));
    return num_i(v);
}

/* Python slice semantics over n elements: fills idx (caller-sized n) and returns the count. */
static size_t slice_indices(jctx *c, size_t off, size_t n, jv vstart, jv vstop, jv vstep,
                            size_t *idx)
{
    int64_t step = slice_bound(c, off, vstep, 1);
    if (step == 0)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "slice step cannot be zero");
    if (step < -INT64_MAX)
        step = -INT64_MAX; /* same slice for any length we can hold; keeps -step defined */
    int64_t len = (int64_t)n;
    int64_t start, stop;
    if (step > 0) {
        start = slice_bound(c, off, vstart, 0);
        stop = slice_bound(c, off, vstop, len);
        if (start < 0)
            start = start + len < 0 ? 0 : start + len;
        if (stop < 0)
            stop = stop + len < 0 ? 0 : stop + len;
        if (start > len)
            start = len;
        if (stop > len)
            stop = len;
    } else {
        start = slice_bound(c, off, vstart, len - 1);
        stop = slice_bound(c, off, vstop, INT64_MIN);
        if (start < 0)
            start = start + len < -1 ? -1 : start + len;
        if (start > len - 1)
            start = len - 1;
        if (stop == INT64_MIN)
            stop = -1;
        else if (stop < 0)
            stop = stop + len < -1 ? -1 : stop + len;
        if (stop > len - 1)
            stop = len - 1;
    }
    size_t k = 0;
    if (step > 0) {
        for (int64_t i = start; i < stop; i += step) {
            idx[k++] = (size_t)i;
            if (stop - i <= step)
                break;
        }
    } else {
        for (int64_t i = start; i > stop; i += step) {
            idx[k++] = (size_t)i;
            if (i - stop <= -step)
                break;
        }
    }
    return k;
}

static jv do_slice(jctx *c, size_t off, jv obj, jv start, jv stop, jv stepv)
{
    if (obj.t == JV_UNDEF)
        fail_undefined(c, off, obj);
    if (obj.t == JV_LIST) {
        size_t n = obj.u.l->n;
        size_t *idx = jx_calloc(c, n + 1, sizeof(size_t));
        size_t k = slice_indices(c, off, n, start, stop, stepv, idx);
        jlist *l = list_new(c, k);
        for (size_t i = 0; i < k; i++)
            l->v[l->n++] = obj.u.l->v[idx[i]];
        return jv_list(l);
    }
    if (obj.t == JV_STR) {
        size_t n;
        size_t *offs = cp_offsets(c, obj.u.s.s, obj.u.s.n, &n);
        size_t *idx = jx_calloc(c, n + 1, sizeof(size_t));
        size_t k = slice_indices(c, off, n, start, stop, stepv, idx);
        char *p = jx_alloc(c, obj.u.s.n + 1);
        size_t len = 0;
        for (size_t i = 0; i < k; i++) {
            size_t a = offs[idx[i]], b = offs[idx[i] + 1];
            memcpy(p + len, obj.u.s.s + a, b - a);
            len += b - a;
        }
        return jv_strn(p, len);
    }
    jx_fail(c, off, LLMOS_ERR_FORMAT, "'%s' object cannot be sliced", type_name(obj));
}

/* ---- arithmetic ---------------------------------------------------------------------------- */

static jv str_concat(jctx *c, jv a, jv b)
{
    size_t n = a.u.s.n + b.u.s.n;
    char *p = jx_alloc(c, n + 1);
    memcpy(p, a.u.s.s, a.u.s.n);
    memcpy(p + a.u.s.n, b.u.s.s, b.u.s.n);
    return jv_strn(p, n);
}

static jv repeat(jctx *c, size_t off, jv seq, int64_t times)
{
    if (times <= 0)
        return seq.t == JV_STR ? jv_strn("", 0) : jv_list(list_new(c, 0));
    size_t unit = seq.t == JV_STR ? seq.u.s.n : seq.u.l->n;
    if (unit == 0)
        return seq;
    if (unit && (uint64_t)times > c->opt.max_output / unit)
        jx_fail(c, off, LLMOS_ERR_LIMIT, "repetition result too large (limit max_output)");
    size_t total = unit * (size_t)times;
    if (seq.t == JV_STR) {
        char *p = jx_alloc(c, total + 1);
        for (int64_t i = 0; i < times; i++)
            memcpy(p + (size_t)i * unit, seq.u.s.s, unit);
        return jv_strn(p, total);
    }
    jlist *l = list_new(c, total);
    for (int64_t i = 0; i < times; i++)
        for (size_t j = 0; j < unit; j++)
            l->v[l->n++] = seq.u.l->v[j];
    return jv_list(l);
}

/* Python's printf-style formatting: fmt % args and the format filter. Conversions s r d i f
 * e g x X c and %%, with the flags - + 0 and space, a width and a precision. */
static jv percent_format(jctx *c, size_t off, jv fmt, const jv *args, size_t n_args)
{
    llmos_buf *b = scratch_open(c);
    size_t used = 0;
    const char *s = fmt.u.s.s;
    size_t n = fmt.u.s.n;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            sb_add(c, b, s + i, 1);
            continue;
        }
        char spec[32] = "%";
        size_t k = 1, j = i + 1;
        while (j < n && strchr("-+ 0#", s[j]) && s[j] && k < 8)
            spec[k++] = s[j++];
        for (int d = 0; j < n && isdigit((unsigned char)s[j]) && d < 3; d++) /* width <= 999 */
            spec[k++] = s[j++];
        if (j < n && s[j] == '.') {
            spec[k++] = s[j++];
            for (int d = 0; j < n && isdigit((unsigned char)s[j]) && d < 3; d++)
                spec[k++] = s[j++];
        }
        if (j >= n || (j < n && isdigit((unsigned char)s[j])))
            jx_fail(c, off, LLMOS_ERR_FORMAT,
                    "format: incomplete format spec, or width/precision over 999");
        char conv = s[j];
        i = j;
        if (conv == '%') {
            sb_puts(c, b, "%");
            continue;
        }
        if (!strchr("srdifeEgGxXc", conv) || !conv)
            jx_fail(c, off, LLMOS_ERR_UNSUPPORTED, "format: conversion '%%%c' is not supported",
                    isprint((unsigned char)conv) ? conv : '?');
        if (used >= n_args)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "not enough arguments for format string");
        jv v = args[used++];
        char out[1200]; /* width and precision are at most 999 */
        if (conv == 's' || conv == 'r') {
            llmos_buf *t = scratch_open(c);
            to_str_buf(c, t, v, conv == 'r', 0);
            jv str = scratch_close(c, t);
            /* width/precision by hand: they count characters, and text may hold NULs */
            int width = 0, prec = -1;
            bool left = strchr(spec, '-') != NULL;
            const char *w = spec + 1;
            while (*w && strchr("-+ 0#", *w))
                w++;
            width = (int)strtol(w, NULL, 10);
            const char *dot = strchr(spec, '.');
            if (dot)
                prec = (int)strtol(dot + 1, NULL, 10);
            size_t cps = cp_count(str.u.s.s, str.u.s.n), len = str.u.s.n;
            if (prec >= 0 && (size_t)prec < cps) {
                size_t cnt;
                size_t *offs = cp_offsets(c, str.u.s.s, str.u.s.n, &cnt);
                len = offs[prec];
                cps = (size_t)prec;
            }
            size_t pad = (size_t)width > cps ? (size_t)width - cps : 0;
            for (size_t p = 0; !left && p < pad; p++)
                sb_puts(c, b, " ");
            sb_add(c, b, str.u.s.s, len);
            for (size_t p = 0; left && p < pad; p++)
                sb_puts(c, b, " ");
            continue;
        }
        if (!is_num(v))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "format: %%%c needs a number, not %s", conv,
                    type_name(v));
        if (strchr("dixXc", conv)) {
            int64_t x = is_intlike(v) ? num_i(v) : 0;
            if (v.t == JV_FLOAT) {
                if (!(v.u.f > -9.2e18 && v.u.f < 9.2e18))
                    jx_fail(c, off, LLMOS_ERR_FORMAT, "format: number out of range");
                x = (int64_t)v.u.f;
            }
            if (conv == 'c') {
                char u[4];
                size_t un = x >= 0 && x <= 0x10FFFF ? utf8_encode((uint32_t)x, u) : 0;
                if (!un)
                    jx_fail(c, off, LLMOS_ERR_FORMAT, "format: %%c argument out of range");
                sb_add(c, b, u, un);
                continue;
            }
            strcpy(spec + k, conv == 'i'   ? "lld"
                             : conv == 'd' ? "lld"
                             : conv == 'x' ? "llx"
                                           : "llX");
            if (x < 0 && (conv == 'x' || conv == 'X')) { /* Python writes -ff, C would wrap */
                sb_puts(c, b, "-");
                x = x == INT64_MIN ? INT64_MAX : -x;
            }
            snprintf(out, sizeof out, spec, (long long)x);
        } else {
            spec[k] = conv;
            spec[k + 1] = 0;
            snprintf(out, sizeof out, spec, num_f(v));
        }
        sb_puts(c, b, out);
    }
    if (used < n_args)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "not all arguments converted during string formatting");
    return scratch_close(c, b);
}

static const char *const op_names[] = {"+",  "-",  "*", "/",  "//", "%",  "**", "~",
                                       "==", "!=", "<", "<=", ">",  ">=", "in", "not in"};

static _Noreturn void fail_operands(jctx *c, size_t off, int op, jv a, jv b)
{
    if (a.t == JV_UNDEF)
        fail_undefined(c, off, a);
    if (b.t == JV_UNDEF)
        fail_undefined(c, off, b);
    jx_fail(c, off, LLMOS_ERR_FORMAT, "unsupported operand types for %s: '%s' and '%s'",
            op_names[op], type_name(a), type_name(b));
}

static jv arith(jctx *c, size_t off, int op, jv a, jv b)
{
    int64_t r;
    switch (op) {
    case OP_ADD:
        if (a.t == JV_STR && b.t == JV_STR)
            return str_concat(c, a, b);
        if (a.t == JV_LIST && b.t == JV_LIST) {
            jlist *l = list_new(c, a.u.l->n + b.u.l->n);
            for (size_t i = 0; i < a.u.l->n; i++)
                l->v[l->n++] = a.u.l->v[i];
            for (size_t i = 0; i < b.u.l->n; i++)
                l->v[l->n++] = b.u.l->v[i];
            return jv_list(l);
        }
        break;
    case OP_MUL:
        if ((a.t == JV_STR || a.t == JV_LIST) && is_intlike(b))
            return repeat(c, off, a, num_i(b));
        if ((b.t == JV_STR || b.t == JV_LIST) && is_intlike(a))
            return repeat(c, off, b, num_i(a));
        break;
    case OP_CONCAT: return str_concat(c, to_str(c, a), to_str(c, b));
    case OP_MOD:
        if (a.t == JV_STR) { /* a list stands for Python's tuple of arguments */
            if (b.t == JV_LIST)
                return percent_format(c, off, a, b.u.l->v, b.u.l->n);
            return percent_format(c, off, a, &b, 1);
        }
        break;
    default: break;
    }
    if (!is_num(a) || !is_num(b))
        fail_operands(c, off, op, a, b);
    bool ints = is_intlike(a) && is_intlike(b);
    int64_t x = num_i(a), y = num_i(b);
    double fx = num_f(a), fy = num_f(b);
    switch (op) {
    case OP_ADD:
        if (!ints)
            return jv_float(fx + fy);
        if (__builtin_add_overflow(x, y, &r))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "integer overflow in +");
        return jv_int(r);
    case OP_SUB:
        if (!ints)
            return jv_float(fx - fy);
        if (__builtin_sub_overflow(x, y, &r))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "integer overflow in -");
        return jv_int(r);
    case OP_MUL:
        if (!ints)
            return jv_float(fx * fy);
        if (__builtin_mul_overflow(x, y, &r))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "integer overflow in *");
        return jv_int(r);
    case OP_DIV:
        if (fy == 0.0)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "division by zero");
        return jv_float(fx / fy);
    case OP_FLOORDIV:
    case OP_MOD:
        if (ints) {
            if (y == 0)
                jx_fail(c, off, LLMOS_ERR_FORMAT, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1)
                jx_fail(c, off, LLMOS_ERR_FORMAT, "integer overflow in %s", op_names[op]);
            int64_t q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { /* Python floors */
                q--;
                m += y;
            }
            return jv_int(op == OP_MOD ? m : q);
        }
        if (fy == 0.0)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "float division or modulo by zero");
        if (op == OP_FLOORDIV)
            return jv_float(floor(fx / fy));
        {
            double m = fmod(fx, fy);
            if (m != 0 && ((m < 0) != (fy < 0)))
                m += fy;
            return jv_float(m);
        }
    case OP_POW:
        if (ints && y >= 0) {
            if (x == 0 || x == 1)
                return jv_int(y == 0 ? 1 : x);
            if (x == -1)
                return jv_int(y % 2 ? -1 : 1);
            int64_t acc = 1; /* |x| >= 2 overflows within 63 rounds */
            for (int64_t i = 0; i < y; i++)
                if (__builtin_mul_overflow(acc, x, &acc))
                    jx_fail(c, off, LLMOS_ERR_FORMAT, "integer overflow in **");
            return jv_int(acc);
        }
        return jv_float(pow(fx, fy));
    default: break;
    }
    fail_operands(c, off, op, a, b);
}

/* ---- filters, tests, methods --------------------------------------------------------------- */

typedef struct args {
    jv pos[8];
    size_t n;
    const char *kw_name[8];
    jv kw[8];
    size_t n_kw;
} args;

static void eval_args(jctx *c, scope *sc, const node *x, args *a)
{
    if (x->n > LLMOS_ARRAY_LEN(a->pos) || x->n2 > LLMOS_ARRAY_LEN(a->kw))
        jx_fail(c, x->off, LLMOS_ERR_UNSUPPORTED, "too many arguments (at most 8)");
    a->n = x->n;
    for (size_t i = 0; i < x->n; i++)
        a->pos[i] = eval(c, sc, x->list[i]);
    a->n_kw = x->n2;
    for (size_t i = 0; i < x->n2; i++) {
        a->kw_name[i] = x->list2[i]->name;
        a->kw[i] = eval(c, sc, x->list2[i]->a);
    }
}

/* Argument `i` by position or `name` by keyword; undefined when absent. */
static jv arg(const args *a, size_t i, const char *name)
{
    if (i < a->n)
        return a->pos[i];
    for (size_t k = 0; k < a->n_kw; k++)
        if (name && !strcmp(a->kw_name[k], name))
            return a->kw[k];
    return jv_undef(NULL);
}

static jv need_str(jctx *c, size_t off, jv v, const char *what)
{
    if (v.t == JV_UNDEF)
        fail_undefined(c, off, v);
    if (v.t != JV_STR)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "%s expects a string, got %s", what, type_name(v));
    return v;
}

static bool py_space(char ch)
{
    return is_ws(ch) || ch == '\x1c' || ch == '\x1d' || ch == '\x1e' || ch == '\x1f';
}

/* strip(chars): which = 1 left, 2 right, 3 both */
static jv str_strip(jctx *c, size_t off, jv s, jv chars, int which)
{
    const char *p = s.u.s.s;
    size_t a = 0, b = s.u.s.n;
    bool ws = chars.t == JV_UNDEF || chars.t == JV_NONE;
    if (!ws)
        need_str(c, off, chars, "strip");
#define STRIPPABLE(ch) (ws ? py_space(ch) : memchr(chars.u.s.s, (ch), chars.u.s.n) != NULL)
    if (which & 1)
        while (a < b && STRIPPABLE(p[a]))
            a++;
    if (which & 2)
        while (b > a && STRIPPABLE(p[b - 1]))
            b--;
#undef STRIPPABLE
    return jv_strn(p + a, b - a);
}

static jv str_case(jctx *c, jv s, int mode) /* 0 lower 1 upper 2 capitalize 3 title 4 jinja-title */
{
    char *p = jx_alloc(c, s.u.s.n + 1);
    bool start = true;
    for (size_t i = 0; i < s.u.s.n; i++) {
        unsigned char ch = (unsigned char)s.u.s.s[i];
        char o;
        switch (mode) {
        case 0: o = (char)tolower(ch); break;
        case 1: o = (char)toupper(ch); break;
        case 2: o = (char)(i == 0 ? toupper(ch) : tolower(ch)); break;
        default:
            o = (char)(start ? toupper(ch) : tolower(ch));
            if (mode == 3)
                start = !isalpha(ch) && ch < 0x80;
            else
                start = is_ws((char)ch) || strchr("-({[<", ch) != NULL;
            if (ch >= 0x80) /* non-ASCII letters: keep as is, they continue a word */
                start = false;
        }
        p[i] = o;
    }
    return jv_strn(p, s.u.s.n);
}

static jv str_replace(jctx *c, size_t off, jv s, jv old, jv new, jv count)
{
    need_str(c, off, old, "replace");
    need_str(c, off, new, "replace");
    int64_t max = is_intlike(count) ? num_i(count) : -1;
    llmos_buf *b = scratch_open(c);
    size_t i = 0;
    int64_t done = 0;
    while (i <= s.u.s.n) {
        if (max >= 0 && done >= max)
            break;
        const char *hit;
        if (old.u.s.n == 0) {
            /* Python inserts `new` between characters and at both ends */
            sb_add(c, b, new.u.s.s, new.u.s.n);
            done++;
            if (i == s.u.s.n) {
                i++;
                break;
            }
            size_t len = 1;
            while (i + len < s.u.s.n && ((unsigned char)s.u.s.s[i + len] & 0xC0) == 0x80)
                len++;
            sb_add(c, b, s.u.s.s + i, len);
            i += len;
            continue;
        }
        hit = memmem(s.u.s.s + i, s.u.s.n - i, old.u.s.s, old.u.s.n);
        if (!hit)
            break;
        size_t h = (size_t)(hit - s.u.s.s);
        sb_add(c, b, s.u.s.s + i, h - i);
        sb_add(c, b, new.u.s.s, new.u.s.n);
        i = h + old.u.s.n;
        done++;
    }
    if (i < s.u.s.n)
        sb_add(c, b, s.u.s.s + i, s.u.s.n - i);
    return scratch_close(c, b);
}

static jv str_split(jctx *c, size_t off, jv s, jv sep, jv maxv)
{
    int64_t max = is_intlike(maxv) ? num_i(maxv) : -1;
    jlist *l = list_new(c, 0);
    const char *p = s.u.s.s;
    size_t n = s.u.s.n, i = 0;
    if (sep.t == JV_UNDEF || sep.t == JV_NONE) {
        while (i < n) {
            while (i < n && py_space(p[i]))
                i++;
            if (i >= n)
                break;
            if (max >= 0 && (int64_t)l->n >= max) {
                size_t e = n;
                while (e > i && py_space(p[e - 1]))
                    e--;
                list_push(c, l, jv_strn(p + i, e - i));
                break;
            }
            size_t j = i;
            while (j < n && !py_space(p[j]))
                j++;
            list_push(c, l, jv_strn(p + i, j - i));
            i = j;
        }
        return jv_list(l);
    }
    need_str(c, off, sep, "split");
    if (sep.u.s.n == 0)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "split: empty separator");
    for (;;) {
        const char *hit =
            (max < 0 || (int64_t)l->n < max) ? memmem(p + i, n - i, sep.u.s.s, sep.u.s.n) : NULL;
        if (!hit) {
            list_push(c, l, jv_strn(p + i, n - i));
            break;
        }
        size_t h = (size_t)(hit - p);
        list_push(c, l, jv_strn(p + i, h - i));
        i = h + sep.u.s.n;
    }
    return jv_list(l);
}

static bool str_affix(jctx *c, size_t off, jv s, jv fix, bool end)
{
    if (fix.t == JV_LIST) {
        for (size_t i = 0; i < fix.u.l->n; i++)
            if (str_affix(c, off, s, fix.u.l->v[i], end))
                return true;
        return false;
    }
    need_str(c, off, fix, end ? "endswith" : "startswith");
    if (fix.u.s.n > s.u.s.n)
        return false;
    const char *p = end ? s.u.s.s + s.u.s.n - fix.u.s.n : s.u.s.s;
    return memcmp(p, fix.u.s.s, fix.u.s.n) == 0;
}

static jv join(jctx *c, size_t off, jv seq, jv sep, jv attribute)
{
    jlist *l = iter_items(c, off, seq);
    llmos_buf *b = scratch_open(c);
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep.t == JV_STR)
            sb_add(c, b, sep.u.s.s, sep.u.s.n);
        jv v = l->v[i];
        if (attribute.t == JV_STR)
            v = get_attr(c, off, v, attribute.u.s.s, attribute.u.s.n);
        jv s = to_str(c, v);
        sb_add(c, b, s.u.s.s, s.u.s.n);
    }
    return scratch_close(c, b);
}

static bool apply_test(jctx *c, size_t off, const char *name, jv v, const args *a);
static jv apply_filter(jctx *c, size_t off, const char *name, jv v, const args *a);

/* selectattr/rejectattr/select/reject */
static jv select_items(jctx *c, size_t off, jv seq, const args *a, bool by_attr, bool keep)
{
    jlist *in = iter_items(c, off, seq);
    jlist *out = list_new(c, 0);
    size_t first = by_attr ? 1 : 0;
    jv attr = by_attr ? arg(a, 0, NULL) : jv_undef(NULL);
    if (by_attr && attr.t != JV_STR)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "selectattr/rejectattr need an attribute name");
    jv test = arg(a, first, NULL);
    args targs = {0};
    for (size_t i = first + 1; i < a->n; i++)
        targs.pos[targs.n++] = a->pos[i];
    const char *tname = NULL;
    if (test.t == JV_STR) {
        tname = arena_strndup(c->arena, test.u.s.s, test.u.s.n);
        if (!name_in(tname, strlen(tname), known_tests, LLMOS_ARRAY_LEN(known_tests)))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "unknown test '%s'", tname);
    }
    for (size_t i = 0; i < in->n; i++) {
        jv item = in->v[i];
        jv subject = by_attr ? get_attr(c, off, item, attr.u.s.s, attr.u.s.n) : item;
        bool ok = tname ? apply_test(c, off, tname, subject, &targs) : truthy(subject);
        if (ok == keep)
            list_push(c, out, item);
    }
    return jv_list(out);
}

static void sort_list(jctx *c, size_t off, jlist *l, jv attribute, bool reverse, bool by_value)
{
    /* insertion sort: stable, and lists in templates are short */
    for (size_t i = 1; i < l->n; i++) {
        jv x = l->v[i];
        size_t j = i;
        while (j > 0) {
            jv p = l->v[j - 1], kx = x, kp = p;
            if (attribute.t == JV_STR) {
                kx = get_attr(c, off, x, attribute.u.s.s, attribute.u.s.n);
                kp = get_attr(c, off, p, attribute.u.s.s, attribute.u.s.n);
            } else if (x.t == JV_LIST && p.t == JV_LIST && x.u.l->n == 2 && p.u.l->n == 2) {
                kx = x.u.l->v[by_value];
                kp = p.u.l->v[by_value];
            }
            int cmp = jv_compare(c, off, kp, kx);
            step(c, off);
            if (reverse ? cmp >= 0 : cmp <= 0)
                break;
            l->v[j] = p;
            j--;
        }
        l->v[j] = x;
    }
}

static jv filter_int(jctx *c, size_t off, jv v, jv def)
{
    int64_t d = is_intlike(def) ? num_i(def) : 0;
    switch (v.t) {
    case JV_INT: return v;
    case JV_BOOL: return jv_int(v.u.b);
    case JV_FLOAT:
        if (!(v.u.f > -9.2e18 && v.u.f < 9.2e18))
            return jv_int(d);
        return jv_int((int64_t)v.u.f);
    case JV_STR: {
        char tmp[64];
        jv t = str_strip(c, off, v, jv_undef(NULL), 3);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof tmp)
            return jv_int(d);
        memcpy(tmp, t.u.s.s, t.u.s.n);
        tmp[t.u.s.n] = 0;
        char *end;
        errno = 0;
        long long x = strtoll(tmp, &end, 10);
        if (!*end && !errno)
            return jv_int(x);
        double f = strtod(tmp, &end);
        if (!*end && f > -9.2e18 && f < 9.2e18)
            return jv_int((int64_t)f);
        return jv_int(d);
    }
    default: return jv_int(d);
    }
}

static jv filter_float(jctx *c, size_t off, jv v, jv def)
{
    double d = is_num(def) ? num_f(def) : 0.0;
    if (is_num(v))
        return jv_float(num_f(v));
    if (v.t == JV_STR) {
        char tmp[64];
        jv t = str_strip(c, off, v, jv_undef(NULL), 3);
        if (t.u.s.n == 0 || t.u.s.n >= sizeof tmp)
            return jv_float(d);
        memcpy(tmp, t.u.s.s, t.u.s.n);
        tmp[t.u.s.n] = 0;
        char *end;
        double f = strtod(tmp, &end);
        return jv_float(*end ? d : f);
    }
    return jv_float(d);
}

static int64_t length_of(jctx *c, size_t off, jv v)
{
    switch (v.t) {
    case JV_STR: return (int64_t)cp_count(v.u.s.s, v.u.s.n);
    case JV_LIST: return (int64_t)v.u.l->n;
    case JV_DICT:
    case JV_NS: return (int64_t)v.u.d->n;
    case JV_UNDEF: return 0;
    default: jx_fail(c, off, LLMOS_ERR_FORMAT, "object of type '%s' has no len()", type_name(v));
    }
}

static jv filter_indent(jctx *c, size_t off, jv s, jv width, jv first, jv blank)
{
    jv pad = width.t == JV_STR ? width : jv_undef(NULL);
    int64_t w = is_intlike(width) ? num_i(width) : 4;
    if (pad.t != JV_STR) {
        if (w < 0 || w > 256)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "indent: width out of range");
        char *p = jx_alloc(c, (size_t)w + 1);
        memset(p, ' ', (size_t)w);
        pad = jv_strn(p, (size_t)w);
    }
    llmos_buf *b = scratch_open(c);
    size_t i = 0, line = 0;
    while (i <= s.u.s.n) {
        const char *nl = i < s.u.s.n ? memchr(s.u.s.s + i, '\n', s.u.s.n - i) : NULL;
        size_t e = nl ? (size_t)(nl - s.u.s.s) : s.u.s.n;
        bool empty = e == i;
        if ((line > 0 || truthy(first)) && (!empty || truthy(blank)))
            sb_add(c, b, pad.u.s.s, pad.u.s.n);
        sb_add(c, b, s.u.s.s + i, e - i);
        if (!nl)
            break;
        sb_puts(c, b, "\n");
        i = e + 1;
        line++;
    }
    return scratch_close(c, b);
}

static jv apply_filter(jctx *c, size_t off, const char *name, jv v, const args *a)
{
#define IS(s) (!strcmp(name, (s)))
    if (IS("safe"))
        return v;
    if (IS("default") || IS("d")) {
        bool boolean = truthy(arg(a, 1, "boolean"));
        if (v.t == JV_UNDEF || (boolean && !truthy(v))) {
            jv d = arg(a, 0, "default_value");
            return d.t == JV_UNDEF ? jv_strn("", 0) : d;
        }
        return v;
    }
    if (IS("length") || IS("count"))
        return jv_int(length_of(c, off, v));
    if (IS("tojson")) {
        jv ind = arg(a, 0, "indent");
        json_style st = {.indent = -1,
                         .ascii = truthy(arg(a, 99, "ensure_ascii")),
                         .sort_keys = truthy(arg(a, 99, "sort_keys"))};
        if (is_intlike(ind)) {
            if (num_i(ind) < 0 || num_i(ind) > 64)
                jx_fail(c, off, LLMOS_ERR_FORMAT, "tojson: indent out of range");
            st.indent = (int)num_i(ind);
        }
        st.item_sep = st.indent >= 0 ? "," : ", ";
        st.key_sep = ": ";
        jv seps = arg(a, 99, "separators");
        if (seps.t == JV_LIST) {
            if (seps.u.l->n != 2 || seps.u.l->v[0].t != JV_STR || seps.u.l->v[1].t != JV_STR)
                jx_fail(c, off, LLMOS_ERR_FORMAT, "tojson: separators must be two strings");
            st.item_sep = seps.u.l->v[0].u.s.s;
            st.key_sep = seps.u.l->v[1].u.s.s;
            st.item_sep_len = seps.u.l->v[0].u.s.n;
            st.key_sep_len = seps.u.l->v[1].u.s.n;
        } else {
            st.item_sep_len = strlen(st.item_sep);
            st.key_sep_len = strlen(st.key_sep);
        }
        llmos_buf *b = scratch_open(c);
        to_json(c, off, b, v, &st, 0);
        return scratch_close(c, b);
    }
    if (IS("string"))
        return to_str(c, v);
    if (IS("int"))
        return filter_int(c, off, v, arg(a, 0, "default"));
    if (IS("float"))
        return filter_float(c, off, v, arg(a, 0, "default"));
    if (IS("bool"))
        return jv_bool(truthy(v));
    if (IS("list"))
        return jv_list(iter_items(c, off, v));
    if (IS("items")) {
        if (v.t == JV_UNDEF)
            return jv_list(list_new(c, 0));
        if (v.t != JV_DICT && v.t != JV_NS)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "items filter expects a mapping, got %s",
                    type_name(v));
        return dict_items(c, v.u.d);
    }
    if (IS("dictsort")) {
        if (v.t != JV_DICT && v.t != JV_NS)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "dictsort expects a mapping, got %s", type_name(v));
        jlist *items = dict_items(c, v.u.d).u.l;
        jv by = arg(a, 1, "by");
        sort_list(c, off, items, jv_undef(NULL), truthy(arg(a, 2, "reverse")),
                  str_eq(by, "value", 5));
        return jv_list(items);
    }
    if (IS("first") || IS("last")) {
        jlist *l = iter_items(c, off, v);
        if (!l->n)
            return jv_undef(name);
        return l->v[IS("first") ? 0 : l->n - 1];
    }
    if (IS("reverse")) {
        if (v.t == JV_STR)
            return do_slice(c, off, v, jv_none(), jv_none(), jv_int(-1));
        jlist *l = iter_items(c, off, v), *r = list_new(c, l->n);
        for (size_t i = l->n; i-- > 0;)
            r->v[r->n++] = l->v[i];
        return jv_list(r);
    }
    if (IS("sort")) {
        jlist *l = iter_items(c, off, v), *r = list_new(c, l->n);
        for (size_t i = 0; i < l->n; i++)
            r->v[r->n++] = l->v[i];
        sort_list(c, off, r, arg(a, 2, "attribute"), truthy(arg(a, 0, "reverse")), false);
        return jv_list(r);
    }
    if (IS("unique")) {
        jlist *l = iter_items(c, off, v), *r = list_new(c, 0);
        for (size_t i = 0; i < l->n; i++) {
            bool seen = false;
            for (size_t j = 0; j < r->n && !seen; j++)
                seen = jv_equal(r->v[j], l->v[i], 0);
            step(c, off);
            if (!seen)
                list_push(c, r, l->v[i]);
        }
        return jv_list(r);
    }
    if (IS("join"))
        return join(c, off, v, arg(a, 0, "d"), arg(a, 1, "attribute"));
    if (IS("selectattr") || IS("rejectattr"))
        return select_items(c, off, v, a, true, IS("selectattr"));
    if (IS("select") || IS("reject"))
        return select_items(c, off, v, a, false, IS("select"));
    if (IS("map")) {
        jlist *l = iter_items(c, off, v), *r = list_new(c, l->n);
        jv attr = arg(a, 99, "attribute");
        if (attr.t == JV_STR) {
            jv def = arg(a, 99, "default");
            for (size_t i = 0; i < l->n; i++) {
                jv x = get_attr(c, off, l->v[i], attr.u.s.s, attr.u.s.n);
                r->v[r->n++] = x.t == JV_UNDEF && def.t != JV_UNDEF ? def : x;
            }
            return jv_list(r);
        }
        jv f = arg(a, 0, NULL);
        if (f.t != JV_STR)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "map needs a filter name or attribute=");
        const char *fname = arena_strndup(c->arena, f.u.s.s, f.u.s.n);
        if (!name_in(fname, strlen(fname), known_filters, LLMOS_ARRAY_LEN(known_filters)))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "unknown filter '%s'", fname);
        args sub = {0};
        for (size_t i = 1; i < a->n; i++)
            sub.pos[sub.n++] = a->pos[i];
        for (size_t i = 0; i < l->n; i++)
            r->v[r->n++] = apply_filter(c, off, fname, l->v[i], &sub);
        return jv_list(r);
    }
    if (IS("abs")) {
        if (v.t == JV_FLOAT)
            return jv_float(fabs(v.u.f));
        if (is_intlike(v) && num_i(v) != INT64_MIN)
            return jv_int(num_i(v) < 0 ? -num_i(v) : num_i(v));
        jx_fail(c, off, LLMOS_ERR_FORMAT, "abs expects a number, got %s", type_name(v));
    }
    if (IS("round")) {
        if (!is_num(v))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "round expects a number, got %s", type_name(v));
        jv pv = arg(a, 0, "precision");
        int64_t prec = is_intlike(pv) ? num_i(pv) : 0;
        if (prec < 0 || prec > 15)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "round: precision out of range");
        jv mv = arg(a, 1, "method");
        double scale = pow(10.0, (double)prec), x = num_f(v) * scale;
        if (str_eq(mv, "floor", 5))
            x = floor(x);
        else if (str_eq(mv, "ceil", 4))
            x = ceil(x);
        else
            x = round(x);
        return jv_float(x / scale);
    }
    if (IS("sum") || IS("min") || IS("max")) {
        jlist *l = iter_items(c, off, v);
        jv attr = arg(a, 99, "attribute");
        if (IS("sum")) {
            jv acc = arg(a, 99, "start");
            if (acc.t == JV_UNDEF)
                acc = jv_int(0);
            for (size_t i = 0; i < l->n; i++) {
                jv x =
                    attr.t == JV_STR ? get_attr(c, off, l->v[i], attr.u.s.s, attr.u.s.n) : l->v[i];
                acc = arith(c, off, OP_ADD, acc, x);
            }
            return acc;
        }
        if (!l->n)
            return jv_undef(name);
        jv best = l->v[0];
        for (size_t i = 1; i < l->n; i++) {
            int cmp = jv_compare(c, off, l->v[i], best);
            if (IS("min") ? cmp < 0 : cmp > 0)
                best = l->v[i];
        }
        return best;
    }
    /* string filters */
    if (v.t == JV_UNDEF)
        v = jv_strn("", 0);
    jv s = to_str(c, v);
    if (IS("trim"))
        return str_strip(c, off, s, arg(a, 0, "chars"), 3);
    if (IS("upper"))
        return str_case(c, s, 1);
    if (IS("lower"))
        return str_case(c, s, 0);
    if (IS("capitalize"))
        return str_case(c, s, 2);
    if (IS("title"))
        return str_case(c, s, 4);
    if (IS("replace"))
        return str_replace(c, off, s, arg(a, 0, "old"), arg(a, 1, "new"), arg(a, 2, "count"));
    if (IS("format"))
        return percent_format(c, off, s, a->pos, a->n);
    if (IS("indent"))
        return filter_indent(c, off, s, arg(a, 0, "width"), arg(a, 1, "first"), arg(a, 2, "blank"));
    if (IS("wordcount"))
        return jv_int((int64_t)str_split(c, off, s, jv_undef(NULL), jv_undef(NULL)).u.l->n);
    if (IS("e") || IS("escape")) {
        llmos_buf *b = scratch_open(c);
        for (size_t i = 0; i < s.u.s.n; i++) {
            switch (s.u.s.s[i]) {
            case '&': sb_puts(c, b, "&amp;"); break;
            case '<': sb_puts(c, b, "&lt;"); break;
            case '>': sb_puts(c, b, "&gt;"); break;
            case '"': sb_puts(c, b, "&#34;"); break;
            case '\'': sb_puts(c, b, "&#39;"); break;
            default: sb_add(c, b, s.u.s.s + i, 1);
            }
        }
        return scratch_close(c, b);
    }
#undef IS
    jx_fail(c, off, LLMOS_ERR_UNSUPPORTED, "filter '%s' is not supported", name);
}

static bool apply_test(jctx *c, size_t off, const char *name, jv v, const args *a)
{
#define IS(s) (!strcmp(name, (s)))
    jv x = arg(a, 0, NULL);
    if (IS("defined"))
        return v.t != JV_UNDEF;
    if (IS("undefined"))
        return v.t == JV_UNDEF;
    if (IS("none"))
        return v.t == JV_NONE;
    if (IS("string"))
        return v.t == JV_STR;
    if (IS("number"))
        return is_num(v);
    if (IS("integer"))
        return v.t == JV_INT;
    if (IS("float"))
        return v.t == JV_FLOAT;
    if (IS("boolean"))
        return v.t == JV_BOOL;
    if (IS("true"))
        return v.t == JV_BOOL && v.u.b;
    if (IS("false"))
        return v.t == JV_BOOL && !v.u.b;
    if (IS("mapping"))
        return v.t == JV_DICT;
    if (IS("iterable")) /* Jinja's Undefined is iterable (as empty) */
        return v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
    if (IS("sequence"))
        return v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT;
    if (IS("callable"))
        return v.t == JV_MACRO || v.t == JV_FUNC;
    if (IS("lower") || IS("upper")) {
        if (v.t != JV_STR)
            return false;
        jv conv = str_case(c, v, IS("lower") ? 0 : 1);
        return memcmp(conv.u.s.s, v.u.s.s, v.u.s.n) == 0;
    }
    if (IS("odd") || IS("even") || IS("divisibleby")) {
        if (!is_intlike(v))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "test '%s' expects an integer, got %s", name,
                    type_name(v));
        int64_t d = IS("divisibleby") ? (is_intlike(x) ? num_i(x) : 0) : 2;
        if (d == 0)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "divisibleby needs a non-zero integer");
        int64_t m = d == -1 ? 0 : num_i(v) % d;
        return IS("odd") ? m != 0 : m == 0;
    }
    if (IS("equalto") || IS("eq") || IS("=="))
        return jv_equal(v, x, 0);
    if (IS("ne") || IS("!="))
        return !jv_equal(v, x, 0);
    if (IS("sameas"))
        return v.t == x.t && jv_equal(v, x, 0);
    if (IS("lt") || IS("<"))
        return jv_compare(c, off, v, x) < 0;
    if (IS("le") || IS("<="))
        return jv_compare(c, off, v, x) <= 0;
    if (IS("gt") || IS(">"))
        return jv_compare(c, off, v, x) > 0;
    if (IS("ge") || IS(">="))
        return jv_compare(c, off, v, x) >= 0;
    if (IS("in"))
        return contains(c, off, x, v);
#undef IS
    jx_fail(c, off, LLMOS_ERR_UNSUPPORTED, "test '%s' is not supported", name);
}

/* str.format with {} and {N} fields (no format specs). */
static jv str_format(jctx *c, size_t off, jv s, const args *a)
{
    llmos_buf *b = scratch_open(c);
    size_t auto_i = 0;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.s[i];
        if ((ch == '{' || ch == '}') && i + 1 < s.u.s.n && s.u.s.s[i + 1] == ch) {
            sb_add(c, b, &ch, 1);
            i++;
            continue;
        }
        if (ch != '{') {
            sb_add(c, b, &ch, 1);
            continue;
        }
        size_t j = i + 1;
        while (j < s.u.s.n && s.u.s.s[j] != '}')
            j++;
        if (j >= s.u.s.n)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "format: unmatched '{'");
        size_t idx = auto_i++;
        if (j > i + 1) {
            idx = 0;
            for (size_t k = i + 1; k < j; k++) {
                if (!isdigit((unsigned char)s.u.s.s[k]) || idx > 1000)
                    jx_fail(c, off, LLMOS_ERR_UNSUPPORTED,
                            "format: only {} and {N} fields are supported");
                idx = idx * 10 + (size_t)(s.u.s.s[k] - '0');
            }
        }
        if (idx >= a->n)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "format: replacement index %zu out of range", idx);
        jv v = to_str(c, a->pos[idx]);
        sb_add(c, b, v.u.s.s, v.u.s.n);
        i = j;
    }
    return scratch_close(c, b);
}

/* obj.method(args) for strings, dicts and the loop object. `found` false if no such method. */
static jv call_method(jctx *c, size_t off, jv obj, const char *name, const args *a, bool *found)
{
    *found = true;
#define IS(s) (!strcmp(name, (s)))
    if (obj.t == JV_STR) {
        if (IS("strip"))
            return str_strip(c, off, obj, arg(a, 0, NULL), 3);
        if (IS("lstrip"))
            return str_strip(c, off, obj, arg(a, 0, NULL), 1);
        if (IS("rstrip"))
            return str_strip(c, off, obj, arg(a, 0, NULL), 2);
        if (IS("split"))
            return str_split(c, off, obj, arg(a, 0, "sep"), arg(a, 1, "maxsplit"));
        if (IS("startswith") || IS("endswith"))
            return jv_bool(str_affix(c, off, obj, arg(a, 0, NULL), IS("endswith")));
        if (IS("upper"))
            return str_case(c, obj, 1);
        if (IS("lower"))
            return str_case(c, obj, 0);
        if (IS("capitalize"))
            return str_case(c, obj, 2);
        if (IS("title"))
            return str_case(c, obj, 3);
        if (IS("replace"))
            return str_replace(c, off, obj, arg(a, 0, NULL), arg(a, 1, NULL), arg(a, 2, NULL));
        if (IS("join"))
            return join(c, off, arg(a, 0, NULL), obj, jv_undef(NULL));
        if (IS("format"))
            return str_format(c, off, obj, a);
        if (IS("find")) {
            jv sub = need_str(c, off, arg(a, 0, NULL), "find");
            const char *h = memmem(obj.u.s.s, obj.u.s.n, sub.u.s.s, sub.u.s.n);
            return jv_int(h ? (int64_t)cp_count(obj.u.s.s, (size_t)(h - obj.u.s.s)) : -1);
        }
        if (IS("count")) {
            jv sub = need_str(c, off, arg(a, 0, NULL), "count");
            if (!sub.u.s.n)
                return jv_int((int64_t)cp_count(obj.u.s.s, obj.u.s.n) + 1);
            int64_t k = 0;
            const char *p = obj.u.s.s, *e = obj.u.s.s + obj.u.s.n;
            const char *h;
            while ((h = memmem(p, (size_t)(e - p), sub.u.s.s, sub.u.s.n))) {
                k++;
                p = h + sub.u.s.n;
            }
            return jv_int(k);
        }
    } else if (obj.t == JV_DICT || obj.t == JV_NS) {
        if (IS("items"))
            return dict_items(c, obj.u.d);
        if (IS("keys") || IS("values")) {
            jlist *l = list_new(c, obj.u.d->n);
            for (size_t i = 0; i < obj.u.d->n; i++)
                l->v[l->n++] = IS("keys") ? obj.u.d->k[i] : obj.u.d->v[i];
            return jv_list(l);
        }
        if (IS("get")) {
            jv key = arg(a, 0, NULL);
            jv *v = key.t == JV_STR ? dict_find(obj.u.d, key.u.s.s, key.u.s.n) : NULL;
            if (v)
                return *v;
            jv def = arg(a, 1, NULL);
            return def.t == JV_UNDEF ? jv_none() : def;
        }
    } else if (obj.t == JV_LOOP && IS("cycle")) {
        if (!a->n)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "loop.cycle needs at least one value");
        return a->pos[obj.u.loop->i % a->n];
    }
#undef IS
    *found = false;
    return jv_undef(NULL);
}

/* ---- builtin functions and macros ---------------------------------------------------------- */

static jv call_builtin(jctx *c, size_t off, int fn, const args *a)
{
    switch (fn) {
    case FN_RANGE: {
        int64_t start = 0, stop, stepv = 1;
        for (size_t i = 0; i < a->n; i++)
            if (!is_intlike(a->pos[i]))
                jx_fail(c, off, LLMOS_ERR_FORMAT, "range() takes integers, got %s",
                        type_name(a->pos[i]));
        if (a->n == 1) {
            stop = num_i(a->pos[0]);
        } else if (a->n == 2 || a->n == 3) {
            start = num_i(a->pos[0]);
            stop = num_i(a->pos[1]);
            if (a->n == 3)
                stepv = num_i(a->pos[2]);
        } else {
            jx_fail(c, off, LLMOS_ERR_FORMAT, "range() takes 1 to 3 arguments, got %zu", a->n);
        }
        if (stepv == 0)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "range() step must not be zero");
        /* count in unsigned arithmetic, where stop - start cannot overflow */
        uint64_t count = 0;
        if (stepv > 0 && start < stop)
            count = ((uint64_t)stop - (uint64_t)start - 1) / (uint64_t)stepv + 1;
        else if (stepv < 0 && start > stop)
            count = ((uint64_t)start - (uint64_t)stop - 1) / (0 - (uint64_t)stepv) + 1;
        if (count > c->opt.max_iterations)
            jx_fail(c, off, LLMOS_ERR_LIMIT, "range() of %llu items exceeds max_iterations (%zu)",
                    (unsigned long long)count, c->opt.max_iterations);
        jlist *l = list_new(c, (size_t)count);
        uint64_t val = (uint64_t)start; /* every value lies between start and stop */
        for (size_t i = 0; i < (size_t)count; i++, val += (uint64_t)stepv)
            l->v[l->n++] = jv_int((int64_t)val);
        return jv_list(l);
    }
    case FN_NAMESPACE:
    case FN_DICT: {
        jdict *d = jx_alloc(c, sizeof *d);
        for (size_t i = 0; i < a->n; i++) { /* namespace({...}) / dict({...}) */
            if (a->pos[i].t != JV_DICT)
                jx_fail(c, off, LLMOS_ERR_FORMAT, "%s() takes keyword arguments or a mapping",
                        fn == FN_DICT ? "dict" : "namespace");
            for (size_t k = 0; k < a->pos[i].u.d->n; k++)
                dict_set(c, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]);
        }
        for (size_t i = 0; i < a->n_kw; i++)
            dict_set(c, d, jv_strn(a->kw_name[i], strlen(a->kw_name[i])), a->kw[i]);
        return fn == FN_DICT ? jv_dict(d) : (jv){.t = JV_NS, .u.d = d};
    }
    case FN_RAISE: {
        jv m = to_str(c, arg(a, 0, "message"));
        jx_fail(c, off, LLMOS_ERR_INVALID, "raise_exception: %.*s",
                (int)(m.u.s.n > 400 ? 400 : m.u.s.n), m.u.s.s);
    }
    case FN_STRFTIME: {
        jv f = need_str(c, off, arg(a, 0, "format"), "strftime_now");
        if (f.u.s.n > 200 || memchr(f.u.s.s, 0, f.u.s.n))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "strftime_now: format too long");
        char fmt[208], outs[512];
        memcpy(fmt, f.u.s.s, f.u.s.n);
        fmt[f.u.s.n] = 0;
        struct tm tm;
        time_t t = c->opt.now ? (time_t)c->opt.now : time(NULL);
        if (c->opt.now ? !gmtime_r(&t, &tm) : !localtime_r(&t, &tm))
            jx_fail(c, off, LLMOS_ERR_FORMAT, "strftime_now: clock out of range");
        size_t n = strftime(outs, sizeof outs, fmt, &tm);
        return jv_str_copy(c, outs, n);
    }
    }
    jx_fail(c, off, LLMOS_ERR_INTERNAL, "unknown builtin %d", fn);
}

static void exec_block(jctx *c, scope *sc, const node *blk);
enum { FLOW_NORMAL = 0, FLOW_BREAK, FLOW_CONTINUE };

static jv call_macro(jctx *c, size_t off, const node *m, const args *a)
{
    if (a->n > m->n_names)
        jx_fail(c, off, LLMOS_ERR_FORMAT, "macro '%s' takes at most %zu arguments, got %zu",
                m->name, m->n_names, a->n);
    if (c->depth >= c->opt.max_depth)
        jx_fail(c, off, LLMOS_ERR_LIMIT, "macro calls nested deeper than %zu (limit max_depth)",
                c->opt.max_depth);
    scope *sc = scope_new(c, c->root);
    for (size_t k = 0; k < a->n_kw; k++) {
        bool ok = false;
        for (size_t i = 0; i < m->n_names && !ok; i++)
            ok = !strcmp(m->names[i], a->kw_name[k]);
        if (!ok)
            jx_fail(c, off, LLMOS_ERR_FORMAT, "macro '%s' has no parameter '%s'", m->name,
                    a->kw_name[k]);
    }
    for (size_t i = 0; i < m->n_names; i++) {
        jv v = jv_undef(m->names[i]);
        if (i < a->n)
            v = a->pos[i];
        else {
            bool got = false;
            for (size_t k = 0; k < a->n_kw; k++)
                if (!strcmp(m->names[i], a->kw_name[k])) {
                    v = a->kw[k];
                    got = true;
                }
            if (!got && m->list2[i])
                v = eval(c, sc, m->list2[i]);
        }
        scope_set(c, sc, m->names[i], v);
    }
    llmos_buf *saved = c->out;
    llmos_buf *b = scratch_open(c);
    c->out = b;
    c->depth++;
    exec_block(c, sc, m->c);
    c->depth--;
    c->out = saved;
    return scratch_close(c, b);
}

static jv eval_call(jctx *c, scope *sc, const node *x)
{
    args a = {0};
    const node *callee = x->a;
    if (callee->kind == E_ATTR) {
        jv obj = eval(c, sc, callee->a);
        if (obj.t == JV_UNDEF)
            fail_undefined(c, callee->off, obj);
        eval_args(c, sc, x, &a);
        bool found;
        jv r = call_method(c, x->off, obj, callee->name, &a, &found);
        if (found)
            return r;
        jv f = get_attr(c, callee->off, obj, callee->name, callee->name_len);
        if (f.t == JV_MACRO)
            return call_macro(c, x->off, f.u.m, &a);
        if (f.t == JV_FUNC)
            return call_builtin(c, x->off, f.u.fn, &a);
        jx_fail(c, callee->off, LLMOS_ERR_FORMAT, "'%s' object has no method '%s'", type_name(obj),
                callee->name);
    }
    jv f = eval(c, sc, callee);
    eval_args(c, sc, x, &a);
    if (f.t == JV_MACRO)
        return call_macro(c, x->off, f.u.m, &a);
    if (f.t == JV_FUNC)
        return call_builtin(c, x->off, f.u.fn, &a);
    if (f.t == JV_UNDEF)
        fail_undefined(c, callee->off, f);
    jx_fail(c, x->off, LLMOS_ERR_FORMAT, "'%s' object is not callable", type_name(f));
}

static jv eval_inner(jctx *c, scope *sc, const node *x);

static jv eval(jctx *c, scope *sc, const node *x)
{
    step(c, x->off);
    if (++c->eval_depth > JX_MAX_EVAL_DEPTH)
        jx_fail(c, x->off, LLMOS_ERR_LIMIT, "expression nested deeper than %d levels",
                JX_MAX_EVAL_DEPTH);
    jv v = eval_inner(c, sc, x);
    c->eval_depth--;
    return v;
}

static jv eval_inner(jctx *c, scope *sc, const node *x)
{
    switch (x->kind) {
    case E_LIT: return x->val;
    case E_NAME: return lookup(c, sc, x->name, x->name_len);
    case E_LIST: {
        jlist *l = list_new(c, x->n);
        for (size_t i = 0; i < x->n; i++)
            l->v[l->n++] = eval(c, sc, x->list[i]);
        return jv_list(l);
    }
    case E_DICT: {
        jdict *d = jx_alloc(c, sizeof *d);
        for (size_t i = 0; i + 1 < x->n; i += 2) {
            jv k = eval(c, sc, x->list[i]);
            if (k.t != JV_STR)
                jx_fail(c, x->list[i]->off, LLMOS_ERR_UNSUPPORTED,
                        "dict keys must be strings, got %s", type_name(k));
            dict_set(c, d, k, eval(c, sc, x->list[i + 1]));
        }
        return jv_dict(d);
    }
    case E_ATTR: return get_attr(c, x->off, eval(c, sc, x->a), x->name, x->name_len);
    case E_INDEX: {
        jv obj = eval(c, sc, x->a);
        return get_item(c, x->off, obj, eval(c, sc, x->b));
    }
    case E_SLICE: {
        jv obj = eval(c, sc, x->a);
        jv s0 = x->b ? eval(c, sc, x->b) : jv_none();
        jv s1 = x->c ? eval(c, sc, x->c) : jv_none();
        jv s2 = x->d ? eval(c, sc, x->d) : jv_none();
        return do_slice(c, x->off, obj, s0, s1, s2);
    }
    case E_CALL: return eval_call(c, sc, x);
    case E_FILTER: {
        jv v = eval(c, sc, x->a);
        args a = {0};
        eval_args(c, sc, x, &a);
        return apply_filter(c, x->off, x->name, v, &a);
    }
    case E_TEST: {
        jv v = eval(c, sc, x->a);
        args a = {0};
        eval_args(c, sc, x, &a);
        bool r = apply_test(c, x->off, x->name, v, &a);
        return jv_bool(x->op ? !r : r);
    }
    case E_NOT: return jv_bool(!truthy(eval(c, sc, x->a)));
    case E_NEG:
    case E_POS: {
        jv v = eval(c, sc, x->a);
        if (v.t == JV_FLOAT)
            return jv_float(x->kind == E_NEG ? -v.u.f : v.u.f);
        if (is_intlike(v)) {
            if (x->kind == E_POS)
                return jv_int(num_i(v));
            if (num_i(v) == INT64_MIN)
                jx_fail(c, x->off, LLMOS_ERR_FORMAT, "integer overflow in unary -");
            return jv_int(-num_i(v));
        }
        if (v.t == JV_UNDEF)
            fail_undefined(c, x->off, v);
        jx_fail(c, x->off, LLMOS_ERR_FORMAT, "bad operand type for unary %s: '%s'",
                x->kind == E_NEG ? "-" : "+", type_name(v));
    }
    case E_AND: {
        jv a = eval(c, sc, x->a);
        return truthy(a) ? eval(c, sc, x->b) : a;
    }
    case E_OR: {
        jv a = eval(c, sc, x->a);
        return truthy(a) ? a : eval(c, sc, x->b);
    }
    case E_COND:
        if (truthy(eval(c, sc, x->a)))
            return eval(c, sc, x->b);
        return x->c ? eval(c, sc, x->c) : jv_undef(NULL);
    case E_BIN: {
        jv a = eval(c, sc, x->a), b = eval(c, sc, x->b);
        switch (x->op) {
        case OP_EQ: return jv_bool(jv_equal(a, b, 0));
        case OP_NE: return jv_bool(!jv_equal(a, b, 0));
        case OP_LT: return jv_bool(jv_compare(c, x->off, a, b) < 0);
        case OP_LE: return jv_bool(jv_compare(c, x->off, a, b) <= 0);
        case OP_GT: return jv_bool(jv_compare(c, x->off, a, b) > 0);
        case OP_GE: return jv_bool(jv_compare(c, x->off, a, b) >= 0);
        case OP_IN: return jv_bool(contains(c, x->off, b, a));
        case OP_NOTIN: return jv_bool(!contains(c, x->off, b, a));
        default: return arith(c, x->off, x->op, a, b);
        }
    }
    default: break;
    }
    jx_fail(c, x->off, LLMOS_ERR_INTERNAL, "cannot evaluate node kind %d", (int)x->kind);
}

/* ---- statements ---------------------------------------------------------------------------- */

static int exec_node(jctx *c, scope *sc, const node *x);

static int exec_stmts(jctx *c, scope *sc, const node *blk)
{
    assert(blk->kind == S_BLOCK);
    for (size_t i = 0; i < blk->n; i++) {
        int flow = exec_node(c, sc, blk->list[i]);
        if (flow != FLOW_NORMAL)
            return flow;
    }
    return FLOW_NORMAL;
}

static void exec_block(jctx *c, scope *sc, const node *blk)
{
    (void)exec_stmts(c, sc, blk); /* break outside a loop just ends the block */
}

static void exec_for(jctx *c, scope *sc, const node *x)
{
    jv seq = eval(c, sc, x->a);
    jlist *all = iter_items(c, x->a->off, seq);
    scope *ls = scope_new(c, sc);

    /* bind the loop targets of one item */
#define BIND(item)                                                                                 \
    do {                                                                                           \
        jv it_ = (item);                                                                           \
        if (x->n_names == 1) {                                                                     \
            scope_set(c, ls, x->names[0], it_);                                                    \
        } else {                                                                                   \
            if (it_.t != JV_LIST || it_.u.l->n != x->n_names)                                      \
                jx_fail(c, x->off, LLMOS_ERR_FORMAT, "cannot unpack %s into %zu loop variables",   \
                        type_name(it_), x->n_names);                                               \
            for (size_t k_ = 0; k_ < x->n_names; k_++)                                             \
                scope_set(c, ls, x->names[k_], it_.u.l->v[k_]);                                    \
        }                                                                                          \
    } while (0)

    jlist *items = all;
    if (x->b) { /* loop filter: loop.* then counts only the kept items */
        items = list_new(c, 0);
        for (size_t i = 0; i < all->n; i++) {
            BIND(all->v[i]);
            if (truthy(eval(c, ls, x->b)))
                list_push(c, items, all->v[i]);
        }
    }
    if (items->n == 0) {
        if (x->d)
            exec_block(c, sc, x->d);
        return;
    }
    jloop *lp = jx_alloc(c, sizeof *lp);
    lp->items = items;
    for (size_t i = 0; i < items->n; i++) {
        if (++c->iterations > c->opt.max_iterations)
            jx_fail(c, x->off, LLMOS_ERR_LIMIT,
                    "more than %zu loop iterations (limit max_iterations)", c->opt.max_iterations);
        lp->i = i;
        BIND(items->v[i]);
        scope_set(c, ls, "loop", (jv){.t = JV_LOOP, .u.loop = lp});
        int flow = exec_stmts(c, ls, x->c);
        if (flow == FLOW_BREAK)
            break;
    }
#undef BIND
}

static int exec_inner(jctx *c, scope *sc, const node *x);

static int exec_node(jctx *c, scope *sc, const node *x)
{
    step(c, x->off);
    if (++c->eval_depth > JX_MAX_EVAL_DEPTH)
        jx_fail(c, x->off, LLMOS_ERR_LIMIT, "template nested deeper than %d levels",
                JX_MAX_EVAL_DEPTH);
    int flow = exec_inner(c, sc, x);
    c->eval_depth--;
    return flow;
}

static int exec_inner(jctx *c, scope *sc, const node *x)
{
    switch (x->kind) {
    case S_BLOCK: return exec_stmts(c, sc, x);
    case S_TEXT: out_append(c, x->off, x->name, x->name_len); return FLOW_NORMAL;
    case S_OUT: {
        jv v = eval(c, sc, x->a);
        if (v.t == JV_STR) {
            out_append(c, x->off, v.u.s.s, v.u.s.n);
        } else {
            jv s = to_str(c, v);
            out_append(c, x->off, s.u.s.s, s.u.s.n);
        }
        return FLOW_NORMAL;
    }
    case S_IF:
        for (size_t i = 0; i < x->n; i++)
            if (truthy(eval(c, sc, x->list[i])))
                return exec_stmts(c, sc, x->list2[i]);
        if (x->n2 > x->n)
            return exec_stmts(c, sc, x->list2[x->n]);
        return FLOW_NORMAL;
    case S_FOR: exec_for(c, sc, x); return FLOW_NORMAL;
    case S_SET: {
        jv v = eval(c, sc, x->b);
        if (x->a) {
            jv ns = lookup(c, sc, x->name, x->name_len);
            if (ns.t != JV_NS)
                jx_fail(c, x->off, LLMOS_ERR_FORMAT,
                        "cannot set attribute of '%s': it is %s, not a namespace()", x->name,
                        type_name(ns));
            dict_set(c, ns.u.d, x->a->val, v);
        } else {
            scope_set(c, sc, x->name, v);
        }
        return FLOW_NORMAL;
    }
    case S_SETBLOCK: {
        llmos_buf *saved = c->out;
        llmos_buf *b = scratch_open(c);
        c->out = b;
        exec_block(c, sc, x->c);
        c->out = saved;
        scope_set(c, sc, x->name, scratch_close(c, b));
        return FLOW_NORMAL;
    }
    case S_MACRO: scope_set(c, sc, x->name, (jv){.t = JV_MACRO, .u.m = x}); return FLOW_NORMAL;
    case S_BREAK: return FLOW_BREAK;
    case S_CONTINUE: return FLOW_CONTINUE;
    default: break;
    }
    jx_fail(c, x->off, LLMOS_ERR_INTERNAL, "cannot execute node kind %d", (int)x->kind);
}

/* ==== entry point =========================================================================== */

/* Normalise newlines to \n and drop one trailing newline (Jinja's keep_trailing_newline=False). */
static void load_source(jctx *c, const char *tmpl, size_t len)
{
    char *s = jx_alloc(c, len + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (tmpl[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && tmpl[i + 1] == '\n')
                i++;
        } else {
            s[n++] = tmpl[i];
        }
    }
    if (n && s[n - 1] == '\n')
        n--;
    s[n] = 0;
    c->src = s;
    c->src_len = n;
}

llmos_err jinja_render(const char *tmpl, size_t len, const json_t *context,
                       const jinja_options *opts, llmos_buf *out)
{
    if (!tmpl || !out)
        return llmos_fail(LLMOS_ERR_INVALID, "jinja_render: template and output are required");
    if (context && !json_is_object(context))
        return llmos_fail(LLMOS_ERR_INVALID, "jinja_render: context must be a JSON object");
    jctx *c = calloc(1, sizeof *c);
    if (!c)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory rendering template");
    if (opts)
        c->opt = *opts;
    if (!c->opt.max_output)
        c->opt.max_output = JX_DEF_OUTPUT;
    if (!c->opt.max_iterations)
        c->opt.max_iterations = JX_DEF_ITER;
    if (!c->opt.max_steps)
        c->opt.max_steps = JX_DEF_STEPS;
    if (!c->opt.max_depth)
        c->opt.max_depth = JX_DEF_DEPTH;
    if (!c->opt.max_memory)
        c->opt.max_memory = JX_DEF_MEMORY;
    c->arena = arena_new(0);
    size_t old_len = out->len;
    llmos_err err = LLMOS_OK;
    if (!c->arena) {
        free(c);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory rendering template");
    }
    /* The output limit counts only this render's bytes. */
    if (c->opt.max_output > SIZE_MAX - old_len)
        c->opt.max_output = SIZE_MAX - old_len;
    if (setjmp(c->jmp) == 0) {
        c->src = "";
        load_source(c, tmpl, len);
        lex(c);
        c->pos = 0;
        node *root = parse_body(c, NULL, 0);
        c->root = scope_new(c, NULL);
        if (context) {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)context, k, v)
            {
                scope_set(c, c->root, arena_strdup(c->arena, k), from_json(c, v, 0));
            }
        }
        c->out = out;
        /* max_output is relative to where this render started */
        c->opt.max_output += old_len;
        exec_block(c, c->root, root);
    } else {
        err = c->err;
        for (size_t i = 0; i < c->n_bufs; i++) {
            buf_free(c->bufs[i]);
            free(c->bufs[i]);
        }
        out->len = old_len;
        if (out->data)
            out->data[old_len] = 0;
        llmos_fail(err, "%s", c->msg);
    }
    arena_free(c->arena);
    free(c);
    return err;
}
