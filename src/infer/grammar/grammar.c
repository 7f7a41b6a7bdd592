/*
 * grammar.c - GBNF grammars: the parser, the pushdown matcher and token masks.
 *
 * Parsing. GBNF text (llama.cpp's grammar notation, docs/grammar.md) becomes a flat array of
 * elements per rule: alternatives separated by G_ALT, the rule closed by G_END. An element is
 * a character set (one code point matches it) or a reference to a rule. Groups become
 * anonymous rules; repetitions are rewritten with right recursion:
 *     S*      -> R ::= S R | ()
 *     S{m,n}  -> S ... S (m times) O_{n-m}   with O_1 ::= S | (),  O_k ::= S O_{k-1} | ()
 * so the matcher only knows sets and references. Rules that can reach themselves without
 * consuming a character (left recursion) are rejected: a stack machine would loop on them.
 *
 * Matching. A stack is a chain of nodes (element position, parent node); the top is the next
 * element to match and is always a character set after expansion; node 0 is the empty stack
 * (the sentence may end here). Nodes are hash-consed, so equal stacks are the same id, and a
 * position that would only pop (the end of an alternative) is never stored: right recursion
 * runs in constant stack depth. A state is a sorted set of stacks plus a partial UTF-8
 * character (the lead bits seen so far and how many continuation bytes are missing), also
 * interned. Each state keeps a 256-entry table of its byte transitions, filled on demand: the
 * matcher is a lazily built DFA over bytes, and a state seen before costs one load per byte.
 *
 * UTF-8 (our choice, documented in docs/grammar.md): the grammar speaks code points and the
 * matcher bytes. A lead byte opens a partial character, which survives only if some stack
 * top can match a code point in the range its bits still allow; the last continuation byte
 * completes it and advances the stacks. Overlong forms, surrogates and values above U+10FFFF
 * never match (RFC 3629, section 3). Tokens may end inside a character.
 *
 * Masks. grammar_vocab sorts the tokens' byte strings and lays their trie out in preorder
 * (byte, depth, end of subtree, tokens ending there). grammar_allowed walks it once, keeping
 * one state per depth; a dead transition skips the whole subtree. The last few masks are
 * cached by state.
 */
#include <assert.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/grammar.h"
#include "llmos/tokenizer.h"

/* ---- compiled form ----------------------------------------------------------------------------
 */

enum { G_END = 0, G_ALT = 1, G_REF = 2, G_SET = 3 };

typedef struct gelem {
    uint8_t kind; /* G_* */
    uint32_t arg; /* G_REF: rule index; G_SET: set index */
} gelem;

typedef struct gset {
    bool neg;          /* matches code points NOT in the ranges */
    uint32_t off, n;   /* ranges[off .. off+n) as (lo, hi) pairs, sorted and merged */
    uint32_t ascii[4]; /* membership of 0..127 after negation, for the common case */
} gset;

typedef struct grule {
    uint32_t alt_off, n_alts; /* alts[alt_off ..): element index where each alternative starts */
} grule;

/* Limits that keep hostile or mistaken grammars from eating the machine. */
#define GRAMMAR_MAX_ELEMS  (1u << 20)
#define GRAMMAR_MAX_REPEAT 10000u
#define GRAMMAR_MAX_STACKS 4096u      /* stacks alive in one state */
#define GRAMMAR_MAX_NODES  (1u << 21) /* nodes before the caches are rebuilt */
#define GRAMMAR_MAX_STATES (1u << 14)
#define GRAMMAR_MASK_CACHE 4

/* ---- matcher state ------------------------------------------------------------------------------
 */

typedef struct gnode {
    uint32_t pos;    /* element index (a G_SET or G_REF, never the end of an alternative) */
    uint32_t parent; /* node below, 0 = bottom */
} gnode;

typedef struct gstate {
    uint32_t off, n; /* stack ids in g->stk[off .. off+n), sorted; id 0 = empty stack */
    uint32_t cp;     /* partial character: bits so far */
    uint8_t need;    /* continuation bytes still missing (0 = none) */
    uint8_t len;     /* total length of the partial character */
    uint8_t loops;   /* byte classes (byte_class) all of whose bytes lead back here */
    bool loops_known;
    int32_t *next; /* 256 transitions: -2 unknown, -1 dead, else a state id */
} gstate;

typedef struct gmask {
    int32_t state;
    uint64_t vocab; /* serial number of the vocabulary (addresses may be reused) */
    uint8_t *bits;
    size_t n_allowed;
} gmask;

struct grammar {
    gelem *elems;
    size_t n_elems;
    grule *rules;
    size_t n_rules;
    uint32_t *alts;
    gset *sets;
    size_t n_sets;
    uint32_t *ranges;
    uint32_t root;

    /* hash-consed nodes; index 0 unused (the empty stack) */
    gnode *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t *node_hash; /* open addressing, 0 = free */
    size_t node_hash_cap;

    /* interned states */
    gstate *states;
    size_t n_states, cap_states;
    uint32_t *stk;
    size_t n_stk, cap_stk;
    int32_t *state_hash; /* -1 = free */
    size_t state_hash_cap;

    int32_t start, cur;

    /* scratch for expansion */
    uint32_t *tmp;
    size_t n_tmp, cap_tmp;
    uint64_t *seen; /* (pos, parent) visited during one advance, with a stamp */
    uint32_t *seen_stamp;
    size_t seen_cap, n_seen;
    uint32_t stamp;
    bool overflow; /* an expansion exceeded GRAMMAR_MAX_STACKS or memory */

    gmask masks[GRAMMAR_MASK_CACHE];
    unsigned mask_next;
};

/* ---- small helpers ------------------------------------------------------------------------------
 */

/* Grow *p (of *cap elements of size sz) to hold at least `need` elements. */
static bool grow(void *pp, size_t *cap, size_t need, size_t sz)
{
    void **p = pp;
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * sz);
    if (!q)
        return false;
    *p = q;
    *cap = n;
    return true;
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* ================================================================================================
 * Parser
 * ============================================================================================== */

typedef struct pvec {
    gelem *v;
    size_t n, cap;
} pvec;

typedef struct prule {
    const char *name; /* into the text; NULL for anonymous rules */
    size_t name_len;
    uint32_t owner; /* named rule this anonymous rule was made for */
    bool defined;
    size_t at; /* offset of the definition, or of the first reference */
    pvec body; /* alternatives separated by G_ALT (no final G_END yet) */
} prule;

typedef struct parser {
    const char *s;
    size_t n, i;
    prule *rules;
    size_t n_rules, cap_rules;
    uint32_t *names; /* named rules by name, open addressing: rule index + 1, 0 = free */
    size_t names_cap, n_named;
    uint32_t *ranges; /* never NULL once parsing starts, so ranges + off is always defined */
    size_t n_ranges, cap_ranges;
    gset *sets;
    size_t n_sets, cap_sets;
    size_t n_elems; /* total, for the limit */
    unsigned depth; /* of nested groups */
    llmos_err err;
} parser;

static void where(const parser *p, size_t at, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t k = 0; k < at && k < p->n; k++) {
        if (p->s[k] == '\n') {
            (*line)++;
            *col = 1;
        } else if (((unsigned char)p->s[k] & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

static llmos_err perr(parser *p, size_t at, llmos_err code, const char *fmt, ...)
    LLMOS_PRINTF(4, 5);

static llmos_err perr(parser *p, size_t at, llmos_err code, const char *fmt, ...)
{
    if (p->err)
        return p->err;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line, col;
    where(p, at, &line, &col);
    p->err = llmos_fail(code, "grammar: line %zu, column %zu: %s", line, col, msg);
    return p->err;
}

static llmos_err nomem(parser *p)
{
    if (!p->err)
        p->err = llmos_fail(LLMOS_ERR_NOMEM, "grammar: out of memory");
    return p->err;
}

static bool is_name_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static int peek(const parser *p)
{
    return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

/* Skip blanks and # comments; newlines too when `newlines`. */
static void skip_space(parser *p, bool newlines)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
            p->i++;
        } else if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n')
                p->i++;
        } else {
            break;
        }
    }
}

static llmos_err push_elem(parser *p, pvec *v, uint8_t kind, uint32_t arg)
{
    if (++p->n_elems > GRAMMAR_MAX_ELEMS)
        return perr(p, p->i, LLMOS_ERR_LIMIT,
                    "grammar too large (over %u elements after expanding repetitions); "
                    "use smaller repetition counts",
                    GRAMMAR_MAX_ELEMS);
    if (!grow(&v->v, &v->cap, v->n + 1, sizeof *v->v))
        return nomem(p);
    v->v[v->n++] = (gelem){kind, arg};
    return LLMOS_OK;
}

static int64_t new_rule(parser *p, const char *name, size_t name_len, uint32_t owner, size_t at)
{
    if (!grow(&p->rules, &p->cap_rules, p->n_rules + 1, sizeof *p->rules)) {
        nomem(p);
        return -1;
    }
    prule *r = &p->rules[p->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name;
    r->name_len = name_len;
    r->owner = name ? (uint32_t)p->n_rules : owner;
    r->at = at;
    return (int64_t)p->n_rules++;
}

/* FNV-1a over a rule name, mixed so that the low bits index the table. */
static uint64_t name_hash(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t k = 0; k < len; k++)
        h = (h ^ (unsigned char)name[k]) * 0x100000001b3ULL;
    return mix64(h);
}

static bool names_grow(parser *p)
{
    size_t cap = p->names_cap ? 2 * p->names_cap : 256;
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h)
        return false;
    for (size_t r = 0; r < p->n_rules; r++) {
        if (!p->rules[r].name)
            continue;
        size_t k = name_hash(p->rules[r].name, p->rules[r].name_len) & (cap - 1);
        while (h[k])
            k = (k + 1) & (cap - 1);
        h[k] = (uint32_t)r + 1;
    }
    free(p->names);
    p->names = h;
    p->names_cap = cap;
    return true;
}

/* The slot of p->names holding the rule named name[0..len), or the free slot where it would
 * go. The table is never full (names_grow keeps it at most half full). */
static size_t name_slot(const parser *p, const char *name, size_t len)
{
    assert(p->names_cap > 0);
    size_t mask = p->names_cap - 1;
    for (size_t k = name_hash(name, len) & mask;; k = (k + 1) & mask) {
        uint32_t r = p->names[k];
        if (r == 0 ||
            (p->rules[r - 1].name_len == len && memcmp(p->rules[r - 1].name, name, len) == 0))
            return k;
    }
}

/* The rule named name[0..len), made (not yet defined, first used at `at`) when new. A hash
 * table keeps this constant-time: a linear scan made parsing quadratic in the number of
 * rules, which a large JSON Schema or tools array turns into seconds per request. */
static int64_t find_rule(parser *p, const char *name, size_t len, size_t at)
{
    if (2 * (p->n_named + 1) > p->names_cap && !names_grow(p)) {
        nomem(p);
        return -1;
    }
    size_t k = name_slot(p, name, len);
    if (p->names[k])
        return (int64_t)p->names[k] - 1;
    int64_t r = new_rule(p, name, len, 0, at);
    if (r >= 0) {
        p->names[k] = (uint32_t)r + 1;
        p->n_named++;
    }
    return r;
}

/* A set from ranges[first ..) (pairs), sorted and merged; returns its index. */
static int64_t finish_set(parser *p, size_t first, bool neg)
{
    uint32_t *r = p->ranges + first;
    size_t n = (p->n_ranges - first) / 2;
    /* insertion sort by lo: classes are short */
    for (size_t a = 1; a < n; a++) {
        uint32_t lo = r[2 * a], hi = r[2 * a + 1];
        size_t b = a;
        while (b > 0 && r[2 * (b - 1)] > lo) {
            r[2 * b] = r[2 * (b - 1)];
            r[2 * b + 1] = r[2 * (b - 1) + 1];
            b--;
        }
        r[2 * b] = lo;
        r[2 * b + 1] = hi;
    }
    size_t m = 0;
    for (size_t a = 0; a < n; a++) {
        if (m > 0 && r[2 * a] <= r[2 * (m - 1) + 1] + 1) {
            if (r[2 * a + 1] > r[2 * (m - 1) + 1])
                r[2 * (m - 1) + 1] = r[2 * a + 1];
        } else {
            r[2 * m] = r[2 * a];
            r[2 * m + 1] = r[2 * a + 1];
            m++;
        }
    }
    p->n_ranges = first + 2 * m;
    if (!grow(&p->sets, &p->cap_sets, p->n_sets + 1, sizeof *p->sets)) {
        nomem(p);
        return -1;
    }
    gset *s = &p->sets[p->n_sets];
    memset(s, 0, sizeof *s);
    s->neg = neg;
    s->off = (uint32_t)first;
    s->n = (uint32_t)m;
    for (size_t a = 0; a < m && r[2 * a] < 128; a++)
        for (uint32_t c = r[2 * a]; c <= r[2 * a + 1] && c < 128; c++)
            s->ascii[c / 32] |= 1u << (c % 32);
    for (unsigned k = 0; neg && k < 4; k++)
        s->ascii[k] = ~s->ascii[k];
    return (int64_t)p->n_sets++;
}

static bool add_range(parser *p, uint32_t lo, uint32_t hi)
{
    if (!grow(&p->ranges, &p->cap_ranges, p->n_ranges + 2, sizeof *p->ranges)) {
        nomem(p);
        return false;
    }
    p->ranges[p->n_ranges++] = lo;
    p->ranges[p->n_ranges++] = hi;
    return true;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class: an escape or a UTF-8 sequence. */
static bool parse_char(parser *p, uint32_t *cp)
{
    size_t at = p->i;
    if (p->i >= p->n) {
        perr(p, at, LLMOS_ERR_FORMAT, "unexpected end of grammar inside a literal or class");
        return false;
    }
    if (p->s[p->i] == '\\') {
        p->i++;
        int c = peek(p);
        p->i++;
        int digits = 0;
        switch (c) {
        case 'n': *cp = '\n'; return true;
        case 'r': *cp = '\r'; return true;
        case 't': *cp = '\t'; return true;
        case '0': *cp = 0; return true;
        case '\\':
        case '"':
        case '\'':
        case '[':
        case ']':
        case '-':
        case '^':
        case '/':
        case '.':
        case '|':
        case '(':
        case ')':
        case '*':
        case '+':
        case '?':
        case '{':
        case '}': *cp = (uint32_t)c; return true;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (c < 0)
                perr(p, at, LLMOS_ERR_FORMAT, "unexpected end of grammar after '\\'");
            else
                perr(p, at, LLMOS_ERR_FORMAT,
                     "unknown escape '\\%c' (use \\n \\r \\t \\\\ \\\" \\[ \\] \\xHH "
                     "\\uHHHH \\UHHHHHHHH)",
                     c >= 32 && c < 127 ? c : '?');
            return false;
        }
        uint32_t v = 0;
        for (int k = 0; k < digits; k++) {
            int h = hexval(peek(p));
            if (h < 0) {
                perr(p, p->i, LLMOS_ERR_FORMAT, "expected %d hex digits after '\\%c'", digits, c);
                return false;
            }
            v = v * 16 + (uint32_t)h;
            p->i++;
        }
        if (v > 0x10FFFF) {
            perr(p, at, LLMOS_ERR_FORMAT, "code point U+%X is beyond U+10FFFF", v);
            return false;
        }
        *cp = v;
        return true;
    }
    size_t len = utf8_decode(p->s + p->i, p->n - p->i, cp);
    if (len == 0) {
        perr(p, at, LLMOS_ERR_FORMAT, "invalid UTF-8 in the grammar text");
        return false;
    }
    p->i += len;
    return true;
}

static llmos_err parse_alternates(parser *p, uint32_t rule, bool nested);

static llmos_err emit_copy(parser *p, uint32_t rule, const gelem *sym, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        llmos_err e = push_elem(p, &p->rules[rule].body, sym[k].kind, sym[k].arg);
        if (e)
            return e;
    }
    return LLMOS_OK;
}

/* Replace sym (already removed from the rule's body) by its repetition {min,max}; max ==
 * UINT32_MAX means unbounded. */
static llmos_err emit_repeat(parser *p, uint32_t rule, const gelem *sym, size_t n, uint32_t min,
                             uint32_t max)
{
    llmos_err e;
    for (uint32_t k = 0; k < min; k++)
        if ((e = emit_copy(p, rule, sym, n)))
            return e;
    uint32_t owner = p->rules[rule].owner;
    if (max == UINT32_MAX) {
        int64_t r = new_rule(p, NULL, 0, owner, p->i);
        if (r < 0)
            return p->err;
        if ((e = emit_copy(p, (uint32_t)r, sym, n)) ||
            (e = push_elem(p, &p->rules[r].body, G_REF, (uint32_t)r)) ||
            (e = push_elem(p, &p->rules[r].body, G_ALT, 0)))
            return e;
        return push_elem(p, &p->rules[rule].body, G_REF, (uint32_t)r);
    }
    int64_t inner = -1;
    for (uint32_t k = min; k < max; k++) {
        int64_t r = new_rule(p, NULL, 0, owner, p->i);
        if (r < 0)
            return p->err;
        if ((e = emit_copy(p, (uint32_t)r, sym, n)))
            return e;
        if (inner >= 0 && (e = push_elem(p, &p->rules[r].body, G_REF, (uint32_t)inner)))
            return e;
        if ((e = push_elem(p, &p->rules[r].body, G_ALT, 0)))
            return e;
        inner = r;
    }
    if (inner >= 0)
        return push_elem(p, &p->rules[rule].body, G_REF, (uint32_t)inner);
    return LLMOS_OK;
}

static bool parse_count(parser *p, uint32_t *out)
{
    size_t at = p->i;
    uint64_t v = 0;
    if (peek(p) < '0' || peek(p) > '9') {
        perr(p, at, LLMOS_ERR_FORMAT, "expected a number in {m,n}");
        return false;
    }
    while (peek(p) >= '0' && peek(p) <= '9') {
        v = v * 10 + (uint64_t)(peek(p) - '0');
        if (v > GRAMMAR_MAX_REPEAT) {
            perr(p, at, LLMOS_ERR_LIMIT, "repetition count above %u", GRAMMAR_MAX_REPEAT);
            return false;
        }
        p->i++;
    }
    *out = (uint32_t)v;
    return true;
}

static llmos_err parse_sequence(parser *p, uint32_t rule, bool nested)
{
    int64_t last = -1; /* body index where the last symbol starts */
    for (;;) {
        skip_space(p, nested);
        int c = peek(p);
        size_t at = p->i;
        pvec *body = &p->rules[rule].body;
        if (c == '"') {
            p->i++;
            last = (int64_t)body->n;
            while (peek(p) != '"') {
                if (peek(p) < 0 || peek(p) == '\n')
                    return perr(p, at, LLMOS_ERR_FORMAT,
                                "string literal not closed (expected '\"' before the end of "
                                "the line)");
                uint32_t cp;
                if (!parse_char(p, &cp))
                    return p->err;
                size_t first = p->n_ranges;
                if (!add_range(p, cp, cp))
                    return p->err;
                int64_t s = finish_set(p, first, false);
                if (s < 0)
                    return p->err;
                llmos_err e = push_elem(p, &p->rules[rule].body, G_SET, (uint32_t)s);
                if (e)
                    return e;
            }
            p->i++;
            if ((size_t)last == p->rules[rule].body.n)
                last = -1; /* "" matches nothing: nothing to repeat */
        } else if (c == '[') {
            p->i++;
            bool neg = false;
            if (peek(p) == '^') {
                neg = true;
                p->i++;
            }
            size_t first = p->n_ranges;
            while (peek(p) != ']') {
                if (peek(p) < 0)
                    return perr(p, at, LLMOS_ERR_FORMAT,
                                "character class not closed (expected ']')");
                uint32_t lo, hi;
                if (!parse_char(p, &lo))
                    return p->err;
                hi = lo;
                if (peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
                    p->i++;
                    size_t at_hi = p->i;
                    if (!parse_char(p, &hi))
                        return p->err;
                    if (hi < lo)
                        return perr(p, at_hi, LLMOS_ERR_FORMAT, "range U+%04X-U+%04X is backwards",
                                    lo, hi);
                }
                if (!add_range(p, lo, hi))
                    return p->err;
            }
            p->i++;
            int64_t s = finish_set(p, first, neg);
            if (s < 0)
                return p->err;
            last = (int64_t)body->n;
            llmos_err e = push_elem(p, &p->rules[rule].body, G_SET, (uint32_t)s);
            if (e)
                return e;
        } else if (c == '.') {
            p->i++;
            int64_t s = finish_set(p, p->n_ranges, true);
            if (s < 0)
                return p->err;
            last = (int64_t)body->n;
            llmos_err e = push_elem(p, &p->rules[rule].body, G_SET, (uint32_t)s);
            if (e)
                return e;
        } else if (c >= 0 && is_name_char(c)) {
            size_t start = p->i;
            while (peek(p) >= 0 && is_name_char(peek(p)))
                p->i++;
            int64_t r = find_rule(p, p->s + start, p->i - start, start);
            if (r < 0)
                return p->err;
            last = (int64_t)p->rules[rule].body.n;
            llmos_err e = push_elem(p, &p->rules[rule].body, G_REF, (uint32_t)r);
            if (e)
                return e;
        } else if (c == '(') {
            p->i++;
            int64_t r = new_rule(p, NULL, 0, p->rules[rule].owner, at);
            if (r < 0)
                return p->err;
            llmos_err e = parse_alternates(p, (uint32_t)r, true);
            if (e)
                return e;
            skip_space(p, true);
            if (peek(p) != ')')
                return perr(p, p->i, LLMOS_ERR_FORMAT,
                            "expected ')' to close the group opened at offset %zu", at);
            p->i++;
            last = (int64_t)p->rules[rule].body.n;
            if ((e = push_elem(p, &p->rules[rule].body, G_REF, (uint32_t)r)))
                return e;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last < 0)
                return perr(p, at, LLMOS_ERR_FORMAT, "'%c' has nothing before it to repeat",
                            (char)c);
            uint32_t min = 0, max = UINT32_MAX;
            p->i++;
            if (c == '+') {
                min = 1;
            } else if (c == '?') {
                max = 1;
            } else if (c == '{') {
                skip_space(p, false);
                if (!parse_count(p, &min))
                    return p->err;
                skip_space(p, false);
                if (peek(p) == ',') {
                    p->i++;
                    skip_space(p, false);
                    if (peek(p) != '}' && !parse_count(p, &max))
                        return p->err;
                    skip_space(p, false);
                } else {
                    max = min;
                }
                if (peek(p) != '}')
                    return perr(p, p->i, LLMOS_ERR_FORMAT, "expected '}' to close {m,n}");
                p->i++;
                if (max < min)
                    return perr(p, at, LLMOS_ERR_FORMAT,
                                "{%u,%u}: the maximum is below the "
                                "minimum",
                                min, max);
            }
            pvec *b = &p->rules[rule].body;
            size_t n = b->n - (size_t)last;
            gelem *sym = malloc(n * sizeof *sym);
            if (!sym)
                return nomem(p);
            memcpy(sym, b->v + last, n * sizeof *sym);
            b->n = (size_t)last;
            p->n_elems -= n;
            llmos_err e = emit_repeat(p, rule, sym, n, min, max);
            free(sym);
            if (e)
                return e;
            last = -1; /* x** is not GBNF */
        } else {
            return LLMOS_OK;
        }
    }
}

static llmos_err parse_alternates(parser *p, uint32_t rule, bool nested)
{
    if (++p->depth > 200)
        return perr(p, p->i, LLMOS_ERR_LIMIT, "groups nested more than 200 deep");
    llmos_err e = parse_sequence(p, rule, nested);
    if (e)
        return e;
    for (;;) {
        size_t save = p->i;
        skip_space(p, true); /* an alternative may continue on the next line with '|' */
        if (peek(p) != '|') {
            p->i = save;
            break;
        }
        p->i++;
        if ((e = push_elem(p, &p->rules[rule].body, G_ALT, 0)))
            return e;
        skip_space(p, true);
        if ((e = parse_sequence(p, rule, nested)))
            return e;
    }
    p->depth--;
    return LLMOS_OK;
}

static llmos_err parse_rules(parser *p)
{
    skip_space(p, true);
    while (p->i < p->n) {
        size_t at = p->i;
        if (!is_name_char(peek(p)))
            return perr(p, at, LLMOS_ERR_FORMAT, "expected a rule name, found '%c'",
                        peek(p) >= 32 && peek(p) < 127 ? peek(p) : '?');
        while (peek(p) >= 0 && is_name_char(peek(p)))
            p->i++;
        int64_t r = find_rule(p, p->s + at, p->i - at, at);
        if (r < 0)
            return p->err;
        if (p->rules[r].defined) {
            size_t line, col;
            where(p, p->rules[r].at, &line, &col);
            return perr(p, at, LLMOS_ERR_FORMAT,
                        "rule '%.*s' is defined twice (first at line "
                        "%zu)",
                        (int)(p->i - at), p->s + at, line);
        }
        p->rules[r].defined = true;
        p->rules[r].at = at;
        skip_space(p, false);
        if (p->n - p->i < 3 || memcmp(p->s + p->i, "::=", 3) != 0)
            return perr(p, p->i, LLMOS_ERR_FORMAT, "expected '::=' after rule name '%.*s'",
                        (int)(p->i - at), p->s + at);
        p->i += 3;
        skip_space(p, true);
        llmos_err e = parse_alternates(p, (uint32_t)r, false);
        if (e)
            return e;
        skip_space(p, false);
        if (p->i < p->n && p->s[p->i] != '\n') {
            int c = peek(p);
            return perr(p, p->i, LLMOS_ERR_FORMAT,
                        "unexpected '%c' (expected a symbol, '|' "
                        "or the end of the line)",
                        c >= 32 && c < 127 ? c : '?');
        }
        skip_space(p, true);
    }
    return LLMOS_OK;
}

/* Left recursion: a rule reaching itself through references preceded only by nullable
 * symbols. Works on the parser's rules (bodies without the final G_END). */

/* nullable[r] = rule r matches the empty string. Each alternative without a character set
 * counts its references to rules not yet known to be nullable; a rule whose alternative
 * reaches 0 is nullable, and each of its uses lowers the count of the alternative it is in.
 * Linear in the size of the grammar (a fixed point over all rules, repeated until nothing
 * changes, is quadratic on a chain of rules defined in the wrong order). */
static llmos_err compute_nullable(parser *p, bool *nullable)
{
    size_t n = p->n_rules, n_alts = 0, n_refs = 0;
    for (size_t r = 0; r < n; r++) {
        n_alts++;
        for (size_t k = 0; k < p->rules[r].body.n; k++) {
            n_alts += p->rules[r].body.v[k].kind == G_ALT;
            n_refs += p->rules[r].body.v[k].kind == G_REF;
        }
    }
    uint32_t *alt_rule = malloc((n_alts + 1) * sizeof *alt_rule);
    uint32_t *missing = malloc((n_alts + 1) * sizeof *missing); /* UINT32_MAX: has a set */
    size_t *use_off = calloc(n + 2, sizeof *use_off);           /* uses of rule s: alternatives */
    uint32_t *use_alt = malloc((n_refs + 1) * sizeof *use_alt);
    uint32_t *work = malloc((n + 1) * sizeof *work);
    llmos_err err = LLMOS_OK;
    if (!alt_rule || !missing || !use_off || !use_alt || !work) {
        err = nomem(p);
        goto done;
    }
    /* alternatives, their counts, and how many uses each rule has */
    size_t a = 0;
    for (size_t r = 0; r < n; r++) {
        const pvec *b = &p->rules[r].body;
        alt_rule[a] = (uint32_t)r;
        missing[a] = 0;
        for (size_t k = 0; k < b->n; k++) {
            if (b->v[k].kind == G_ALT) {
                a++;
                alt_rule[a] = (uint32_t)r;
                missing[a] = 0;
            } else if (b->v[k].kind == G_SET) {
                missing[a] = UINT32_MAX;
            } else {
                use_off[b->v[k].arg + 1]++;
                if (missing[a] != UINT32_MAX)
                    missing[a]++;
            }
        }
        a++;
    }
    for (size_t r = 0; r < n; r++)
        use_off[r + 1] += use_off[r];
    a = 0;
    for (size_t r = 0; r < n; r++) {
        const pvec *b = &p->rules[r].body;
        for (size_t k = 0; k < b->n; k++) {
            if (b->v[k].kind == G_ALT)
                a++;
            else if (b->v[k].kind == G_REF)
                use_alt[use_off[b->v[k].arg]++] = (uint32_t)a;
        }
        a++;
    }
    for (size_t r = n; r > 0; r--) /* back to the start of each rule's uses */
        use_off[r] = use_off[r - 1];
    use_off[0] = 0;
    size_t top = 0;
    for (size_t k = 0; k < n_alts; k++)
        if (missing[k] == 0 && !nullable[alt_rule[k]]) {
            nullable[alt_rule[k]] = true;
            work[top++] = alt_rule[k];
        }
    while (top > 0) {
        uint32_t s = work[--top];
        for (size_t u = use_off[s]; u < use_off[s + 1]; u++) {
            uint32_t k = use_alt[u];
            if (missing[k] == UINT32_MAX || --missing[k] > 0 || nullable[alt_rule[k]])
                continue;
            nullable[alt_rule[k]] = true;
            work[top++] = alt_rule[k];
        }
    }
done:
    free(alt_rule);
    free(missing);
    free(use_off);
    free(use_alt);
    free(work);
    return err;
}

static llmos_err report_left_recursion(parser *p, const uint32_t *stack, size_t depth,
                                       uint32_t target)
{
    const prule *named = &p->rules[p->rules[target].owner];
    char path[200] = "";
    size_t used = 0;
    bool started = false;
    for (size_t d = 0; d <= depth && used < sizeof path - 40; d++) {
        if (!started && p->rules[stack[d]].owner != p->rules[target].owner)
            continue; /* the cycle starts at the target's rule */
        if (started && p->rules[stack[d]].owner == p->rules[stack[d - 1]].owner)
            continue;
        started = true;
        const prule *pr = &p->rules[p->rules[stack[d]].owner];
        used += (size_t)snprintf(path + used, sizeof path - used, "%.*s -> ",
                                 (int)(pr->name_len > 30 ? 30 : pr->name_len), pr->name);
    }
    snprintf(path + used, sizeof path - used, "%.*s",
             (int)(named->name_len > 30 ? 30 : named->name_len), named->name);
    return perr(p, named->at, LLMOS_ERR_FORMAT,
                "left recursion: rule '%.*s' can reach itself without consuming a character "
                "(%s); rewrite it with repetition, e.g. a ::= b (\"+\" b)*",
                (int)named->name_len, named->name, path);
}

static llmos_err check_left_recursion(parser *p)
{
    size_t n = p->n_rules, n_edges = 0;
    for (size_t r = 0; r < n; r++)
        n_edges += p->rules[r].body.n;
    bool *nullable = calloc(n + 1, sizeof *nullable);
    uint8_t *color = calloc(n + 1, 1);
    uint32_t *stack = malloc((n + 1) * sizeof *stack);
    size_t *iter = malloc((n + 1) * sizeof *iter);
    size_t *edge_off = malloc((n + 2) * sizeof *edge_off);
    uint32_t *edges = malloc((n_edges + 1) * sizeof *edges);
    llmos_err err = LLMOS_OK;
    if (!nullable || !color || !stack || !iter || !edge_off || !edges) {
        err = nomem(p);
        goto done;
    }
    if ((err = compute_nullable(p, nullable)))
        goto done;
    /* edges r -> s: s referenced where everything before it in the alternative is nullable */
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        edge_off[r] = w;
        const pvec *b = &p->rules[r].body;
        bool prefix_ok = true;
        for (size_t k = 0; k < b->n; k++) {
            if (b->v[k].kind == G_ALT) {
                prefix_ok = true;
            } else if (b->v[k].kind == G_SET) {
                prefix_ok = false;
            } else if (prefix_ok) {
                edges[w++] = b->v[k].arg;
                prefix_ok = nullable[b->v[k].arg];
            }
        }
    }
    edge_off[n] = w;
    /* iterative depth-first search; color 1 = on the path, 2 = finished */
    for (size_t root = 0; root < n && !err; root++) {
        if (color[root])
            continue;
        size_t depth = 0;
        stack[0] = (uint32_t)root;
        iter[0] = edge_off[root];
        color[root] = 1;
        for (;;) {
            uint32_t r = stack[depth];
            if (iter[depth] == edge_off[r + 1]) {
                color[r] = 2;
                if (depth == 0)
                    break;
                depth--;
                continue;
            }
            uint32_t next = edges[iter[depth]++];
            if (color[next] == 1) {
                err = report_left_recursion(p, stack, depth, next);
                break;
            }
            if (color[next] == 0) {
                color[next] = 1;
                stack[++depth] = next;
                iter[depth] = edge_off[next];
            }
        }
    }
done:
    free(nullable);
    free(color);
    free(stack);
    free(iter);
    free(edge_off);
    free(edges);
    return err;
}

/* ================================================================================================
 * Matcher
 * ============================================================================================== */

static bool set_has(const grammar *g, const gset *s, uint32_t cp)
{
    if (cp < 128)
        return (s->ascii[cp / 32] >> (cp % 32)) & 1u;
    const uint32_t *r = g->ranges + s->off;
    bool in = false;
    for (uint32_t k = 0; k < s->n; k++)
        if (cp >= r[2 * k] && cp <= r[2 * k + 1]) {
            in = true;
            break;
        }
    return in != s->neg;
}

/* Can some code point in [lo, hi] match? (Ranges are merged, so a negated set misses the
 * whole interval only when one range covers it.) */
static bool set_meets(const grammar *g, const gset *s, uint32_t lo, uint32_t hi)
{
    const uint32_t *r = g->ranges + s->off;
    for (uint32_t k = 0; k < s->n; k++) {
        if (s->neg) {
            if (r[2 * k] <= lo && r[2 * k + 1] >= hi)
                return false;
        } else if (r[2 * k] <= hi && r[2 * k + 1] >= lo) {
            return true;
        }
    }
    return s->neg;
}

static bool is_alt_end(const grammar *g, uint32_t pos)
{
    return g->elems[pos].kind == G_END || g->elems[pos].kind == G_ALT;
}

static bool node_hash_grow(grammar *g)
{
    size_t cap = g->node_hash_cap ? g->node_hash_cap * 2 : 1024;
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h)
        return false;
    for (size_t id = 1; id < g->n_nodes; id++) {
        size_t k = mix64(((uint64_t)g->nodes[id].pos << 32) | g->nodes[id].parent) & (cap - 1);
        while (h[k])
            k = (k + 1) & (cap - 1);
        h[k] = (uint32_t)id;
    }
    free(g->node_hash);
    g->node_hash = h;
    g->node_hash_cap = cap;
    return true;
}

/* The node (pos, parent), created if new; 0 when out of memory (sets g->overflow). */
static uint32_t node_intern(grammar *g, uint32_t pos, uint32_t parent)
{
    assert(!is_alt_end(g, pos));
    if (g->n_nodes >= 4 * GRAMMAR_MAX_NODES ||
        (2 * (g->n_nodes + 1) > g->node_hash_cap && !node_hash_grow(g))) {
        g->overflow = true;
        return 0;
    }
    size_t mask = g->node_hash_cap - 1;
    size_t k = mix64(((uint64_t)pos << 32) | parent) & mask;
    while (g->node_hash[k]) {
        const gnode *nd = &g->nodes[g->node_hash[k]];
        if (nd->pos == pos && nd->parent == parent)
            return g->node_hash[k];
        k = (k + 1) & mask;
    }
    if (!grow(&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes)) {
        g->overflow = true;
        return 0;
    }
    uint32_t id = (uint32_t)g->n_nodes++;
    g->nodes[id] = (gnode){pos, parent};
    g->node_hash[k] = id;
    return id;
}

static void tmp_add(grammar *g, uint32_t id)
{
    if (g->n_tmp >= GRAMMAR_MAX_STACKS) {
        g->overflow = true;
        return;
    }
    if (!grow(&g->tmp, &g->cap_tmp, g->n_tmp + 1, sizeof *g->tmp)) {
        g->overflow = true;
        return;
    }
    g->tmp[g->n_tmp++] = id;
}

static bool seen_grow(grammar *g)
{
    size_t cap = g->seen_cap ? g->seen_cap * 2 : 4096;
    uint64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *stamps = calloc(cap, sizeof *stamps);
    if (!keys || !stamps) {
        free(keys);
        free(stamps);
        return false;
    }
    for (size_t k = 0; k < g->seen_cap; k++) {
        if (g->seen_stamp[k] != g->stamp)
            continue;
        size_t j = mix64(g->seen[k]) & (cap - 1);
        while (stamps[j] == g->stamp)
            j = (j + 1) & (cap - 1);
        stamps[j] = g->stamp;
        keys[j] = g->seen[k];
    }
    free(g->seen);
    free(g->seen_stamp);
    g->seen = keys;
    g->seen_stamp = stamps;
    g->seen_cap = cap;
    return true;
}

/* First visit of (pos, parent) during this expansion? */
static bool first_visit(grammar *g, uint32_t pos, uint32_t parent)
{
    if (2 * (g->n_seen + 1) > g->seen_cap && !seen_grow(g)) {
        g->overflow = true;
        return false;
    }
    uint64_t key = ((uint64_t)pos << 32) | parent;
    size_t mask = g->seen_cap - 1;
    size_t k = mix64(key) & mask;
    while (g->seen_stamp[k] == g->stamp) {
        if (g->seen[k] == key)
            return false;
        k = (k + 1) & mask;
    }
    g->seen_stamp[k] = g->stamp;
    g->seen[k] = key;
    g->n_seen++;
    return true;
}

static void new_expansion(grammar *g)
{
    g->n_tmp = 0;
    g->n_seen = 0;
    if (++g->stamp == 0) {
        if (g->seen_stamp)
            memset(g->seen_stamp, 0, g->seen_cap * sizeof *g->seen_stamp);
        g->stamp = 1;
    }
}

static void expand_node(grammar *g, uint32_t id, unsigned depth);

/* Add to tmp the expanded stacks for "element pos on top of stack parent". */
static void expand_seq(grammar *g, uint32_t pos, uint32_t parent, unsigned depth)
{
    if (g->overflow || !first_visit(g, pos, parent))
        return;
    if (depth > 10000) {
        g->overflow = true;
        return;
    }
    const gelem *e = &g->elems[pos];
    if (e->kind == G_END || e->kind == G_ALT) {
        expand_node(g, parent, depth + 1);
    } else if (e->kind == G_SET) {
        uint32_t id = node_intern(g, pos, parent);
        if (id)
            tmp_add(g, id);
    } else {
        uint32_t cont = parent;
        if (!is_alt_end(g, pos + 1)) {
            cont = node_intern(g, pos + 1, parent);
            if (!cont)
                return;
        }
        const grule *r = &g->rules[e->arg];
        for (uint32_t a = 0; a < r->n_alts && !g->overflow; a++)
            expand_seq(g, g->alts[r->alt_off + a], cont, depth + 1);
    }
}

static void expand_node(grammar *g, uint32_t id, unsigned depth)
{
    if (id == 0) {
        tmp_add(g, 0);
        return;
    }
    const gnode nd = g->nodes[id];
    if (g->elems[nd.pos].kind == G_SET) {
        tmp_add(g, id);
        return;
    }
    expand_seq(g, nd.pos, nd.parent, depth);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t state_key_hash(const uint32_t *ids, size_t n, uint32_t cp, uint8_t need,
                               uint8_t len)
{
    uint64_t h = mix64(((uint64_t)cp << 16) | ((uint64_t)need << 8) | len) ^ n;
    for (size_t k = 0; k < n; k++)
        h = mix64(h ^ ids[k]) + k;
    return h;
}

static bool state_hash_grow(grammar *g)
{
    size_t cap = g->state_hash_cap ? g->state_hash_cap * 2 : 256;
    int32_t *h = malloc(cap * sizeof *h);
    if (!h)
        return false;
    for (size_t k = 0; k < cap; k++)
        h[k] = -1;
    for (size_t s = 0; s < g->n_states; s++) {
        const gstate *st = &g->states[s];
        size_t k = state_key_hash(g->stk + st->off, st->n, st->cp, st->need, st->len) & (cap - 1);
        while (h[k] >= 0)
            k = (k + 1) & (cap - 1);
        h[k] = (int32_t)s;
    }
    free(g->state_hash);
    g->state_hash = h;
    g->state_hash_cap = cap;
    return true;
}

/* Intern the state (sorted, deduplicated ids[0..n), partial character); -1 if out of memory. */
static int32_t state_intern(grammar *g, const uint32_t *ids, size_t n, uint32_t cp, uint8_t need,
                            uint8_t len)
{
    if (g->n_states >= 4 * GRAMMAR_MAX_STATES) {
        /* limits are enforced between calls; this caps one long call (a hard stop) */
        g->overflow = true;
        return -1;
    }
    if (2 * (g->n_states + 1) > g->state_hash_cap && !state_hash_grow(g))
        return -1;
    size_t mask = g->state_hash_cap - 1;
    size_t k = state_key_hash(ids, n, cp, need, len) & mask;
    while (g->state_hash[k] >= 0) {
        const gstate *st = &g->states[g->state_hash[k]];
        if (st->n == n && st->cp == cp && st->need == need && st->len == len &&
            memcmp(g->stk + st->off, ids, n * sizeof *ids) == 0)
            return g->state_hash[k];
        k = (k + 1) & mask;
    }
    if (!grow(&g->states, &g->cap_states, g->n_states + 1, sizeof *g->states) ||
        !grow(&g->stk, &g->cap_stk, g->n_stk + n, sizeof *g->stk))
        return -1;
    int32_t id = (int32_t)g->n_states++;
    gstate *st = &g->states[id];
    st->off = (uint32_t)g->n_stk;
    st->n = (uint32_t)n;
    st->cp = cp;
    st->need = need;
    st->len = len;
    st->next = NULL;
    st->loops = 0;
    st->loops_known = false;
    memcpy(g->stk + g->n_stk, ids, n * sizeof *ids);
    g->n_stk += n;
    g->state_hash[k] = id;
    return id;
}

/* Intern the stacks collected in tmp (sorted and deduplicated here). */
static int32_t intern_tmp(grammar *g, uint32_t cp, uint8_t need, uint8_t len)
{
    if (g->overflow || g->n_tmp == 0)
        return -1;
    qsort(g->tmp, g->n_tmp, sizeof *g->tmp, cmp_u32);
    size_t m = 0;
    for (size_t k = 0; k < g->n_tmp; k++)
        if (m == 0 || g->tmp[m - 1] != g->tmp[k])
            g->tmp[m++] = g->tmp[k];
    g->n_tmp = m;
    return state_intern(g, g->tmp, m, cp, need, len);
}

/* The stacks of `s` after matching code point cp, interned; -1 when none survives. */
static int32_t advance_cp(grammar *g, int32_t s, uint32_t cp)
{
    new_expansion(g);
    const gstate st = g->states[s];
    for (uint32_t k = 0; k < st.n; k++) {
        uint32_t id = g->stk[st.off + k];
        if (id == 0)
            continue;
        gnode nd = g->nodes[id];
        assert(g->elems[nd.pos].kind == G_SET);
        if (set_has(g, &g->sets[g->elems[nd.pos].arg], cp))
            expand_seq(g, nd.pos + 1, nd.parent, 0);
        if (g->overflow)
            return -1;
    }
    return intern_tmp(g, 0, 0, 0);
}

/* Compute the transition of state s on byte b (RFC 3629 UTF-8). */
static int32_t transition(grammar *g, int32_t s, uint8_t b)
{
    const gstate st = g->states[s];
    uint32_t cp;
    uint8_t need, len;
    if (st.need == 0) {
        if (b < 0x80)
            return advance_cp(g, s, b);
        if (b >= 0xC2 && b <= 0xDF) {
            cp = b & 0x1Fu, need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            cp = b & 0x0Fu, need = 2;
        } else if (b >= 0xF0 && b <= 0xF4) {
            cp = b & 0x07u, need = 3;
        } else {
            return -1; /* continuation byte without a lead, C0, C1, F5..FF */
        }
        len = (uint8_t)(need + 1);
    } else {
        if ((b & 0xC0) != 0x80)
            return -1;
        cp = (st.cp << 6) | (b & 0x3Fu);
        need = (uint8_t)(st.need - 1);
        len = st.len;
        if (need == 0) {
            static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
            if (cp < min_of_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return -1;
            return advance_cp(g, s, cp);
        }
    }
    /* Partial: the code points still possible are [lo, hi]. */
    static const uint32_t min_of_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t lo = cp << (6 * need), hi = lo | ((1u << (6 * need)) - 1);
    if (lo < min_of_len[len])
        lo = min_of_len[len];
    if (hi > 0x10FFFF)
        hi = 0x10FFFF;
    if (lo > hi)
        return -1;
    bool alive = false;
    for (uint32_t k = 0; k < st.n && !alive; k++) {
        uint32_t id = g->stk[st.off + k];
        if (id && set_meets(g, &g->sets[g->elems[g->nodes[id].pos].arg], lo, hi))
            alive = true;
    }
    if (!alive)
        return -1;
    new_expansion(g);
    for (uint32_t k = 0; k < st.n; k++)
        tmp_add(g, g->stk[st.off + k]); /* a copy: interning may move g->stk */
    return intern_tmp(g, cp, need, len);
}

/* Cached transition: the state after byte b, or -1. */
static inline int32_t step(grammar *g, int32_t s, uint8_t b)
{
    int32_t *nx = g->states[s].next;
    if (nx && nx[b] != -2)
        return nx[b];
    if (!nx) {
        nx = malloc(256 * sizeof *nx);
        if (!nx)
            return -1;
        for (int k = 0; k < 256; k++)
            nx[k] = -2;
        g->states[s].next = nx;
    }
    g->overflow = false;
    int32_t t = transition(g, s, b);
    /* an overflowed expansion is reported as dead but not cached: it may be memory */
    if (!g->overflow)
        g->states[s].next[b] = t; /* states may have moved: index again */
    return t;
}

static bool state_accepting(const grammar *g, int32_t s)
{
    const gstate *st = &g->states[s];
    return st->need == 0 && st->n > 0 && g->stk[st->off] == 0; /* sorted: 0 comes first */
}

static void free_matcher(grammar *g)
{
    for (size_t s = 0; s < g->n_states; s++)
        free(g->states[s].next);
    free(g->states);
    free(g->stk);
    free(g->state_hash);
    free(g->nodes);
    free(g->node_hash);
    g->states = NULL;
    g->stk = NULL;
    g->state_hash = NULL;
    g->nodes = NULL;
    g->node_hash = NULL;
    g->n_states = g->cap_states = g->n_stk = g->cap_stk = g->state_hash_cap = 0;
    g->n_nodes = g->cap_nodes = g->node_hash_cap = 0;
    for (unsigned k = 0; k < GRAMMAR_MASK_CACHE; k++) {
        free(g->masks[k].bits);
        g->masks[k] = (gmask){-1, 0, NULL, 0};
    }
}

/* Create the start state (and node 0) in an empty matcher. */
static llmos_err init_matcher(grammar *g)
{
    if (!grow(&g->nodes, &g->cap_nodes, 1, sizeof *g->nodes))
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar: out of memory");
    g->nodes[0] = (gnode){0, 0};
    g->n_nodes = 1;
    new_expansion(g);
    g->overflow = false;
    const grule *r = &g->rules[g->root];
    for (uint32_t a = 0; a < r->n_alts; a++)
        expand_seq(g, g->alts[r->alt_off + a], 0, 0);
    if (g->overflow)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "grammar: the start rule expands to more than %u "
                          "stacks; simplify the grammar",
                          GRAMMAR_MAX_STACKS);
    g->start = intern_tmp(g, 0, 0, 0);
    if (g->start < 0)
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar: out of memory");
    g->cur = g->start;
    return LLMOS_OK;
}

/* Drop all nodes, states, transitions and masks, keeping only the current state. */
static llmos_err rebuild(grammar *g)
{
    const gstate st = g->states[g->cur];
    /* Save each stack of the current state as its positions, top first. */
    size_t total = 0;
    for (uint32_t k = 0; k < st.n; k++)
        for (uint32_t id = g->stk[st.off + k]; id; id = g->nodes[id].parent)
            total++;
    uint32_t *pos = malloc((total + 1) * sizeof *pos);
    uint32_t *lens = malloc((st.n + 1) * sizeof *lens);
    if (!pos || !lens) {
        free(pos);
        free(lens);
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar: out of memory");
    }
    size_t w = 0;
    for (uint32_t k = 0; k < st.n; k++) {
        lens[k] = 0;
        for (uint32_t id = g->stk[st.off + k]; id; id = g->nodes[id].parent) {
            pos[w++] = g->nodes[id].pos;
            lens[k]++;
        }
    }
    uint32_t cp = st.cp;
    uint8_t need = st.need, len = st.len;
    uint32_t n = st.n;
    free_matcher(g);
    llmos_err err = init_matcher(g);
    if (!err) {
        new_expansion(g);
        size_t r = 0;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t id = 0;
            for (uint32_t d = lens[k]; d > 0; d--)
                id = node_intern(g, pos[r + d - 1], id);
            r += lens[k];
            tmp_add(g, id);
        }
        int32_t s = intern_tmp(g, cp, need, len);
        if (s < 0)
            err = llmos_fail(LLMOS_ERR_NOMEM, "grammar: out of memory");
        else
            g->cur = s;
    }
    free(pos);
    free(lens);
    return err;
}

/* When the caches have grown past their limits, rebuild them with only the current state. */
static llmos_err maybe_compact(grammar *g)
{
    if (g->n_nodes < GRAMMAR_MAX_NODES && g->n_states < GRAMMAR_MAX_STATES)
        return LLMOS_OK;
    return rebuild(g);
}

llmos_err grammar_clear_caches(grammar *g)
{
    return rebuild(g);
}

size_t grammar_n_states(const grammar *g)
{
    return g->n_states;
}

/* ---- public: grammars ----------------------------------------------------------------------- */

static void free_parser(parser *p)
{
    for (size_t k = 0; k < p->n_rules; k++)
        free(p->rules[k].body.v);
    free(p->rules);
    free(p->names);
    free(p->ranges);
    free(p->sets);
}

llmos_err grammar_parse(const char *text, size_t len, const char *root, grammar **out)
{
    *out = NULL;
    if (!text && len)
        return llmos_fail(LLMOS_ERR_INVALID, "grammar_parse: text is NULL");
    if (!root)
        root = "root";
    parser p = {.s = text ? text : "", .n = len};
    llmos_err err = grow(&p.ranges, &p.cap_ranges, 2, sizeof *p.ranges) ? LLMOS_OK : nomem(&p);
    if (!err)
        err = parse_rules(&p);
    if (!err) {
        for (size_t k = 0; k < p.n_rules; k++)
            if (p.rules[k].name && !p.rules[k].defined) {
                err = perr(&p, p.rules[k].at, LLMOS_ERR_FORMAT,
                           "rule '%.*s' is used but "
                           "never defined",
                           (int)p.rules[k].name_len, p.rules[k].name);
                break;
            }
    }
    int64_t root_idx = -1;
    if (!err) {
        if (p.names_cap > 0)
            root_idx = (int64_t)p.names[name_slot(&p, root, strlen(root))] - 1;
        if (root_idx < 0)
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "grammar: no rule named '%s' (the start rule); "
                             "define it as  %s ::= ...",
                             root, root);
    }
    if (!err)
        err = check_left_recursion(&p);
    grammar *g = NULL;
    if (!err) {
        g = calloc(1, sizeof *g);
        size_t n_el = 0, n_alts = 0;
        for (size_t k = 0; k < p.n_rules; k++) {
            n_el += p.rules[k].body.n + 1;
            n_alts += 1;
            for (size_t e = 0; e < p.rules[k].body.n; e++)
                n_alts += p.rules[k].body.v[e].kind == G_ALT;
        }
        if (g) {
            g->elems = malloc((n_el + 1) * sizeof *g->elems);
            g->rules = malloc((p.n_rules + 1) * sizeof *g->rules);
            g->alts = malloc((n_alts + 1) * sizeof *g->alts);
        }
        if (!g || !g->elems || !g->rules || !g->alts) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "grammar: out of memory");
        } else {
            size_t w = 0, wa = 0;
            for (size_t k = 0; k < p.n_rules; k++) {
                const pvec *b = &p.rules[k].body;
                g->rules[k].alt_off = (uint32_t)wa;
                g->alts[wa++] = (uint32_t)w;
                for (size_t e = 0; e < b->n; e++) {
                    g->elems[w++] = b->v[e];
                    if (b->v[e].kind == G_ALT)
                        g->alts[wa++] = (uint32_t)w;
                }
                g->elems[w++] = (gelem){G_END, 0};
                g->rules[k].n_alts = (uint32_t)wa - g->rules[k].alt_off;
            }
            g->n_elems = w;
            g->n_rules = p.n_rules;
            g->sets = p.sets;
            g->n_sets = p.n_sets;
            g->ranges = p.ranges;
            p.sets = NULL;
            p.ranges = NULL;
            g->root = (uint32_t)root_idx;
            for (unsigned k = 0; k < GRAMMAR_MASK_CACHE; k++)
                g->masks[k].state = -1;
            err = init_matcher(g);
        }
    }
    free_parser(&p);
    if (err) {
        grammar_free(g);
        return err;
    }
    *out = g;
    return LLMOS_OK;
}

void grammar_free(grammar *g)
{
    if (!g)
        return;
    free_matcher(g);
    free(g->elems);
    free(g->rules);
    free(g->alts);
    free(g->sets);
    free(g->ranges);
    free(g->tmp);
    free(g->seen);
    free(g->seen_stamp);
    free(g);
}

void grammar_reset(grammar *g)
{
    g->cur = g->start;
}

size_t grammar_n_rules(const grammar *g)
{
    return g->n_rules;
}

bool grammar_accepting(const grammar *g)
{
    return state_accepting(g, g->cur);
}

bool grammar_done(const grammar *g)
{
    const gstate *st = &g->states[g->cur];
    return st->need == 0 && st->n == 1 && g->stk[st->off] == 0;
}

/* Run s[0..n) from state `from`; *end gets the final state. No compaction. */
static llmos_err run_bytes(grammar *g, int32_t from, const char *s, size_t n, int32_t *end)
{
    int32_t cur = from;
    for (size_t k = 0; k < n; k++) {
        int32_t next = step(g, cur, (uint8_t)s[k]);
        if (next < 0) {
            if (g->overflow)
                return llmos_fail(LLMOS_ERR_LIMIT,
                                  "grammar: at byte %zu: more than %u parses "
                                  "alive at once (the grammar is too ambiguous), or more than "
                                  "%u new states in one call (feed the text in pieces), or out "
                                  "of memory",
                                  k, GRAMMAR_MAX_STACKS, 4 * GRAMMAR_MAX_STATES);
            unsigned char c = (unsigned char)s[k];
            return llmos_fail(LLMOS_ERR_INVALID,
                              "grammar: byte %zu (0x%02X '%c') cannot continue the text here", k, c,
                              c >= 32 && c < 127 ? c : '?');
        }
        cur = next;
    }
    *end = cur;
    return LLMOS_OK;
}

llmos_err grammar_accept_bytes(grammar *g, const char *s, size_t n)
{
    llmos_err err = maybe_compact(g);
    if (err)
        return err;
    int32_t end = g->cur;
    if ((err = run_bytes(g, g->cur, s, n, &end)))
        return err;
    g->cur = end;
    return LLMOS_OK;
}

bool grammar_matches(grammar *g, const char *s, size_t n)
{
    int32_t end;
    return run_bytes(g, g->start, s, n, &end) == LLMOS_OK && state_accepting(g, end);
}

/* ---- vocabularies ---------------------------------------------------------------------------- */

struct grammar_vocab {
    uint64_t serial; /* unique per vocabulary made in this process */
    size_t n_tokens;
    char *bytes;      /* all tokens' bytes */
    size_t *off;      /* token i is bytes[off[i] .. off[i+1]) */
    uint8_t *eog;     /* bitset */
    int32_t *eog_ids; /* the same as a list */
    size_t n_eog;
    /* trie in preorder */
    size_t n_nodes;
    uint8_t *node_byte;
    uint16_t *node_depth;
    uint32_t *node_end;    /* index past the node's subtree */
    int32_t *node_tok;     /* first token ending here, -1 none */
    int32_t *tok_next;     /* next token with the same bytes, -1 none */
    int32_t *order;        /* tokens in trie order: a subtree's tokens are contiguous */
    uint32_t *node_tok_lo; /* n_nodes + 1: subtree of i holds order[lo[i] .. lo[end[i]]) */
    uint8_t *node_below;   /* byte classes of the bytes below node i in its subtree */
    uint8_t *node_dirty;   /* some token's bytes below node i are not UTF-8 (truncation allowed) */
    size_t max_depth;
};

/* Byte classes for skipping subtrees: a state that loops on every byte of the classes found
 * below a trie node allows that whole subtree. UTF-8 bytes never loop (they open or continue
 * a partial character), so they get classes of their own. */
static unsigned byte_class(uint8_t b)
{
    if (b >= 0x80)
        return b >= 0xC0 ? 6 : 5;
    if (b < 0x20 || b == 0x7F)
        return 4;
    if (b == '"')
        return 2;
    if (b == '\\')
        return 3;
    if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9') || b == ' ')
        return 0;
    return 1;
}

/* Is s[d..n) well-formed UTF-8, allowing the last character to be cut short? */
static bool utf8_ok_from(const char *s, size_t n, size_t d)
{
    size_t m = utf8_valid_prefix(s + d, n - d);
    return m == n - d || utf8_incomplete_tail(s + d, n - d) == n - d - m;
}

static int cmp_tok(const void *a, const void *b, void *ctx)
{
    const grammar_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = v->off[x + 1] - v->off[x], ly = v->off[y + 1] - v->off[y];
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], lx < ly ? lx : ly);
    if (c)
        return c;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return (x > y) - (x < y);
}

static llmos_err vocab_build_trie(grammar_vocab *v)
{
    size_t n = v->n_tokens;
    int32_t *order = malloc((n + 1) * sizeof *order);
    v->tok_next = malloc((n + 1) * sizeof *v->tok_next);
    if (!order || !v->tok_next) {
        free(order);
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    size_t m = 0, total = 0;
    for (size_t i = 0; i < n; i++) {
        v->tok_next[i] = -1;
        size_t len = v->off[i + 1] - v->off[i];
        if (len == 0 || ((v->eog[i / 8] >> (i % 8)) & 1))
            continue; /* never allowed by bytes; EOG is decided by acceptance */
        if (len > 65535) {
            free(order);
            return llmos_fail(LLMOS_ERR_LIMIT,
                              "grammar vocabulary: token %zu is %zu bytes "
                              "long (at most 65535)",
                              i, len);
        }
        order[m++] = (int32_t)i;
        total += len;
    }
    qsort_r(order, m, sizeof *order, cmp_tok, v);
    /* nodes <= total bytes */
    v->node_byte = malloc(total + 1);
    v->node_depth = malloc((total + 1) * sizeof *v->node_depth);
    v->node_end = malloc((total + 1) * sizeof *v->node_end);
    v->node_tok = malloc((total + 1) * sizeof *v->node_tok);
    v->node_tok_lo = malloc((total + 2) * sizeof *v->node_tok_lo);
    v->node_below = calloc(total + 1, 1);
    v->node_dirty = calloc(total + 1, 1);
    size_t maxlen = 0;
    for (size_t k = 0; k < m; k++) {
        size_t len = v->off[order[k] + 1] - v->off[order[k]];
        maxlen = len > maxlen ? len : maxlen;
    }
    uint32_t *path = malloc((maxlen + 2) * sizeof *path); /* node at each depth on the path */
    if (!v->node_byte || !v->node_depth || !v->node_end || !v->node_tok || !path ||
        !v->node_tok_lo || !v->node_below || !v->node_dirty) {
        free(order);
        free(path);
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    size_t nn = 0, path_len = 0;
    const char *prev = NULL;
    size_t prev_len = 0;
    for (size_t k = 0; k < m; k++) {
        int32_t t = order[k];
        const char *s = v->bytes + v->off[t];
        size_t len = v->off[t + 1] - v->off[t];
        size_t lcp = 0;
        if (prev)
            while (lcp < len && lcp < prev_len && s[lcp] == prev[lcp])
                lcp++;
        /* close nodes deeper than the common prefix */
        while (path_len > lcp) {
            v->node_end[path[path_len - 1]] = (uint32_t)nn;
            path_len--;
        }
        for (size_t d = lcp; d < len; d++) {
            v->node_byte[nn] = (uint8_t)s[d];
            v->node_depth[nn] = (uint16_t)(d + 1);
            v->node_tok[nn] = -1;
            v->node_tok_lo[nn] = (uint32_t)k;
            path[path_len++] = (uint32_t)nn;
            nn++;
        }
        for (size_t d = 1; d < len; d++)
            if (!utf8_ok_from(s, len, d))
                v->node_dirty[path[d - 1]] = 1;
        uint32_t at = path[len - 1]; // NOLINT(clang-analyzer-core.uninitialized.Assign): len >= 1
                                     // (empty tokens are skipped) and path[0..len) was filled above
        if (v->node_tok[at] < 0) {
            v->node_tok[at] = t;
        } else {
            int32_t q = v->node_tok[at];
            while (v->tok_next[q] >= 0)
                q = v->tok_next[q];
            v->tok_next[q] = t;
        }
        prev = s;
        prev_len = len;
    }
    while (path_len > 0)
        v->node_end[path[--path_len]] = (uint32_t)nn;
    v->node_tok_lo[nn] = (uint32_t)m;
    v->n_nodes = nn;
    v->max_depth = maxlen;
    /* classes below each node, children before parents */
    for (size_t i = nn; i-- > 0;)
        for (size_t c = i + 1; c < v->node_end[i]; c = v->node_end[c])
            v->node_below[i] |= (uint8_t)(v->node_below[c] | (1u << byte_class(v->node_byte[c])));
    v->order = order;
    free(path);
    return LLMOS_OK;
}

void grammar_vocab_free(grammar_vocab *v)
{
    if (!v)
        return;
    free(v->bytes);
    free(v->off);
    free(v->eog);
    free(v->eog_ids);
    free(v->node_byte);
    free(v->node_depth);
    free(v->node_end);
    free(v->node_tok);
    free(v->tok_next);
    free(v->order);
    free(v->node_tok_lo);
    free(v->node_below);
    free(v->node_dirty);
    free(v);
}

size_t grammar_vocab_size(const grammar_vocab *v)
{
    return v->n_tokens;
}

llmos_err grammar_vocab_from_pieces(size_t n, const char *const *pieces, const size_t *lens,
                                    const bool *is_eog, grammar_vocab **out)
{
    *out = NULL;
    if (n == 0 || n > INT32_MAX)
        return llmos_fail(LLMOS_ERR_INVALID, "grammar vocabulary: %zu tokens (need 1 .. %d)", n,
                          INT32_MAX);
    grammar_vocab *v = calloc(1, sizeof *v);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += lens[i];
    if (v) {
        static _Atomic uint64_t serials;
        v->serial = atomic_fetch_add(&serials, 1) + 1;
        v->n_tokens = n;
        v->bytes = malloc(total + 1);
        v->off = malloc((n + 1) * sizeof *v->off);
        v->eog = calloc((n + 7) / 8, 1);
    }
    if (!v || !v->bytes || !v->off || !v->eog) {
        grammar_vocab_free(v);
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        v->off[i] = w;
        if (lens[i])
            memcpy(v->bytes + w, pieces[i], lens[i]);
        w += lens[i];
        if (is_eog && is_eog[i])
            v->eog[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    v->off[n] = w;
    for (size_t i = 0; i < n; i++)
        v->n_eog += is_eog && is_eog[i];
    v->eog_ids = malloc((v->n_eog + 1) * sizeof *v->eog_ids);
    if (!v->eog_ids) {
        grammar_vocab_free(v);
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    for (size_t i = 0, k = 0; i < n; i++)
        if (is_eog && is_eog[i])
            v->eog_ids[k++] = (int32_t)i;
    llmos_err err = vocab_build_trie(v);
    if (err) {
        grammar_vocab_free(v);
        return err;
    }
    *out = v;
    return LLMOS_OK;
}

llmos_err grammar_vocab_new(const tokenizer *t, grammar_vocab **out)
{
    *out = NULL;
    size_t n = tok_n_vocab(t);
    llmos_buf all = {0};
    size_t *lens = malloc((n + 1) * sizeof *lens);
    const char **pieces = malloc((n + 1) * sizeof *pieces);
    bool *eog = malloc(n + 1);
    if (!lens || !pieces || !eog) {
        free(lens);
        free(pieces);
        free(eog);
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar vocabulary: out of memory");
    }
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; i < n && !err; i++) {
        size_t before = all.len;
        err = tok_token_bytes(t, (int32_t)i, &all);
        lens[i] = all.len - before;
        eog[i] = tok_is_eog(t, (int32_t)i);
    }
    if (!err) {
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            pieces[i] = all.data + w;
            w += lens[i];
        }
        err = grammar_vocab_from_pieces(n, pieces, lens, eog, out);
    }
    buf_free(&all);
    free(lens);
    free(pieces);
    free(eog);
    return err;
}

/* ---- masks ----------------------------------------------------------------------------------- */

static bool is_eog(const grammar_vocab *v, size_t i)
{
    return (v->eog[i / 8] >> (i % 8)) & 1;
}

/* Does every code point >= U+0080 lead from s back to s? The result of advance_cp depends only
 * on which top sets hold the code point, so one code point per interval between the sets'
 * range boundaries decides it. */
static bool loops_non_ascii(grammar *g, int32_t s)
{
    if (g->states[s].need != 0)
        return false;
    uint32_t cand[64];
    size_t nc = 0;
    cand[nc++] = 0x80;
    cand[nc++] = 0xE000; /* after the surrogates */
    const gstate st = g->states[s];
    for (uint32_t k = 0; k < st.n; k++) {
        uint32_t id = g->stk[st.off + k];
        if (!id)
            continue;
        const gset *set = &g->sets[g->elems[g->nodes[id].pos].arg];
        for (uint32_t r = 0; r < set->n; r++) {
            uint32_t b[2] = {g->ranges[set->off + 2 * r], g->ranges[set->off + 2 * r + 1] + 1};
            for (int j = 0; j < 2; j++) {
                if (b[j] < 0x80 || b[j] > 0x10FFFF || (b[j] >= 0xD800 && b[j] <= 0xDFFF))
                    continue;
                if (nc == LLMOS_ARRAY_LEN(cand))
                    return false; /* too many boundaries to bother */
                cand[nc++] = b[j];
            }
        }
    }
    for (size_t k = 0; k < nc; k++) {
        g->overflow = false;
        if (advance_cp(g, s, cand[k]) != s)
            return false;
    }
    return true;
}

/* The byte classes on which state s loops (every byte of the class leads back to s); both
 * UTF-8 classes when every non-ASCII character does. */
static uint8_t state_loops(grammar *g, int32_t s)
{
    if (g->states[s].loops_known)
        return g->states[s].loops;
    uint8_t loops = 0;
    for (unsigned c = 0; c < 5; c++) {
        bool all = true;
        for (unsigned b = 0; b < 128 && all; b++)
            if (byte_class((uint8_t)b) == c && step(g, s, (uint8_t)b) != s)
                all = false;
        if (all)
            loops |= (uint8_t)(1u << c);
    }
    if (loops_non_ascii(g, s))
        loops |= (1u << 5) | (1u << 6);
    g->states[s].loops = loops; /* index again: step may have moved the states */
    g->states[s].loops_known = true;
    return loops;
}

/* Walk the trie from state `from`; set allowed bits. Returns the count. */
static size_t walk(grammar *g, const grammar_vocab *v, int32_t from, uint8_t *bits)
{
    size_t count = 0;
    int32_t stack_small[256];
    int32_t *st = v->max_depth + 1 <= 256 ? stack_small : malloc((v->max_depth + 1) * sizeof *st);
    if (!st)
        return 0;
    st[0] = from;
    size_t i = 0, n = v->n_nodes;
    while (i < n) {
        unsigned d = v->node_depth[i];
        int32_t s = step(g, st[d - 1], v->node_byte[i]);
        if (s < 0) {
            i = v->node_end[i];
            continue;
        }
        st[d] = s;
        size_t own = 0;
        for (int32_t t = v->node_tok[i]; t >= 0; t = v->tok_next[t]) {
            bits[t / 8] |= (uint8_t)(1u << (t % 8));
            own++;
        }
        count += own;
        size_t end = v->node_end[i];
        /* a state that loops on every byte below: the whole subtree is allowed */
        uint8_t below = v->node_below[i];
        if (end - i > 8 && (below & 0x60 ? !v->node_dirty[i] : true) &&
            (below & ~state_loops(g, s)) == 0) {
            for (size_t k = v->node_tok_lo[i] + own; k < v->node_tok_lo[end]; k++) {
                int32_t t = v->order[k];
                bits[t / 8] |= (uint8_t)(1u << (t % 8));
                count++;
            }
            i = end;
            continue;
        }
        i++;
    }
    if (st != stack_small)
        free(st);
    return count;
}

/* The cached or freshly computed mask of the current state. */
static const gmask *current_mask(grammar *g, const grammar_vocab *v)
{
    if (maybe_compact(g) != LLMOS_OK)
        return NULL;
    for (unsigned k = 0; k < GRAMMAR_MASK_CACHE; k++)
        if (g->masks[k].state == g->cur && g->masks[k].vocab == v->serial && g->masks[k].bits)
            return &g->masks[k];
    gmask *m = &g->masks[g->mask_next];
    g->mask_next = (g->mask_next + 1) % GRAMMAR_MASK_CACHE;
    size_t nbytes = (v->n_tokens + 7) / 8;
    if (!m->bits || m->vocab != v->serial) {
        free(m->bits);
        m->bits = malloc(nbytes);
        if (!m->bits) {
            m->state = -1;
            return NULL;
        }
    }
    memset(m->bits, 0, nbytes);
    m->vocab = v->serial;
    m->state = g->cur;
    m->n_allowed = walk(g, v, g->cur, m->bits);
    if (state_accepting(g, g->cur))
        for (size_t k = 0; k < v->n_eog; k++) {
            int32_t i = v->eog_ids[k];
            m->bits[i / 8] |= (uint8_t)(1u << (i % 8));
            m->n_allowed++;
        }
    return m;
}

size_t grammar_allowed(grammar *g, const grammar_vocab *v, uint8_t *allowed, size_t n_vocab)
{
    assert(n_vocab == v->n_tokens);
    const gmask *m = current_mask(g, v);
    if (!m) {
        memset(allowed, 0, (n_vocab + 7) / 8);
        return 0;
    }
    memcpy(allowed, m->bits, (n_vocab + 7) / 8);
    return m->n_allowed;
}

llmos_err grammar_mask(grammar *g, const grammar_vocab *v, float *logits, size_t n_vocab)
{
    if (n_vocab != v->n_tokens)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "grammar_mask: %zu logits for a vocabulary of "
                          "%zu tokens",
                          n_vocab, v->n_tokens);
    const gmask *m = current_mask(g, v);
    if (!m)
        return llmos_fail(LLMOS_ERR_NOMEM, "grammar_mask: out of memory");
    if (m->n_allowed == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "grammar_mask: no token of the vocabulary can "
                                             "continue the grammar here");
    const uint8_t *bits = m->bits;
    for (size_t b = 0; b < n_vocab / 8; b++) {
        uint8_t x = bits[b];
        if (x == 0xFF)
            continue;
        for (unsigned k = 0; k < 8; k++)
            if (!((x >> k) & 1))
                logits[8 * b + k] = -INFINITY;
    }
    for (size_t i = n_vocab / 8 * 8; i < n_vocab; i++)
        if (!((bits[i / 8] >> (i % 8)) & 1))
            logits[i] = -INFINITY;
    return LLMOS_OK;
}

llmos_err grammar_accept(grammar *g, const grammar_vocab *v, int32_t id)
{
    if (id < 0 || (size_t)id >= v->n_tokens)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "grammar_accept: token %d outside the vocabulary "
                          "of %zu",
                          id, v->n_tokens);
    if (is_eog(v, (size_t)id)) {
        if (!grammar_accepting(g))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "grammar_accept: end-of-generation token %d "
                              "before the grammar is complete",
                              id);
        return LLMOS_OK;
    }
    size_t len = v->off[id + 1] - v->off[id];
    if (len == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "grammar_accept: token %d has no bytes", id);
    llmos_err err = grammar_accept_bytes(g, v->bytes + v->off[id], len);
    if (err)
        return llmos_fail_context(err, "token %d: ", id);
    return LLMOS_OK;
}
