/*
 * calculator.c - the exact calculator: its engine (calc_eval) and its tool descriptor
 * (tool_calculator). llmos/tools.h says what it accepts and prints.
 *
 * A recursive-descent parser evaluates as it reads. A value is either exact (a GMP rational,
 * mpq) or real (an MPFR float of CALC_PRECISION_BITS bits). Arithmetic on exact values stays
 * exact; an irrational function or a real operand makes the result real. Every exact value is
 * kept below CALC_MAX_BITS bits (numerator and denominator each), so a binary operation on two
 * values is always cheap; the operations that can grow without bound (^, !, binomial, decimal
 * exponents) estimate the size of their result before computing it.
 */
#include <assert.h>
#include <ctype.h>
#include <gmp.h>
#include <math.h>
#include <mpfr.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "llmos/json.h"
#include "llmos/tools.h"

/* CALC_MAX_DIGITS decimal digits in bits: 10000 * log2(10) = 33219.3 */
#define CALC_MAX_BITS ((size_t)(CALC_MAX_DIGITS * 3.3219280948873623) + 1)
#define CALC_MAX_ARGS 8
#define PREC          CALC_PRECISION_BITS
#define RND           MPFR_RNDN

typedef struct cval {
    bool real;
    mpq_t q;
    mpfr_t r;
} cval;

typedef struct parser {
    const char *s;
    size_t len, pos;
    int depth;
    llmos_err err;
} parser;

static void cv_init(cval *v)
{
    v->real = false;
    mpq_init(v->q);
    mpfr_init2(v->r, PREC);
}

static void cv_clear(cval *v)
{
    mpq_clear(v->q);
    mpfr_clear(v->r);
}

static void cv_set(cval *dst, const cval *src)
{
    dst->real = src->real;
    if (src->real)
        mpfr_set(dst->r, src->r, RND);
    else
        mpq_set(dst->q, src->q);
}

static void cv_to_real(cval *v)
{
    if (!v->real) {
        mpfr_set_q(v->r, v->q, RND);
        v->real = true;
    }
}

static bool cv_is_int(const cval *v)
{
    return !v->real && mpz_cmp_ui(mpq_denref(v->q), 1) == 0;
}

static int cv_sgn(const cval *v)
{
    return v->real ? mpfr_sgn(v->r) : mpq_sgn(v->q);
}

static size_t q_bits(const mpq_t q)
{
    size_t a = mpz_sizeinbase(mpq_numref(q), 2), b = mpz_sizeinbase(mpq_denref(q), 2);
    return a > b ? a : b;
}

/* ---- errors ------------------------------------------------------------------------------ */

/* Record an error at byte offset `pos` (reported as a 1-based column); returns false. */
static bool fail_at(parser *p, size_t pos, llmos_err code, const char *fmt, ...) LLMOS_PRINTF(4, 5);

static bool fail_at(parser *p, size_t pos, llmos_err code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->err = llmos_fail(code, "%s at column %zu", msg, pos + 1);
    return false;
}

/* Record "<what> at column N: <hint>"; returns false. */
static bool fail_hint(parser *p, size_t pos, const char *what, const char *hint)
{
    p->err = llmos_fail(LLMOS_ERR_INVALID, "%s at column %zu: %s", what, pos + 1, hint);
    return false;
}

static bool too_large(parser *p, size_t pos)
{
    return fail_at(p, pos, LLMOS_ERR_LIMIT,
                   "result too large (more than %d digits); the calculator keeps exact values "
                   "below that size",
                   CALC_MAX_DIGITS);
}

/* After an operation: exact values must stay below the size limit, reals must be finite. */
static bool check_result(parser *p, size_t pos, const cval *v)
{
    if (v->real) {
        if (mpfr_inf_p(v->r))
            return fail_at(p, pos, LLMOS_ERR_LIMIT,
                           "result too large (beyond the floating-point range)");
        if (mpfr_nan_p(v->r))
            return fail_at(p, pos, LLMOS_ERR_INVALID, "result is not a real number");
        return true;
    }
    if (q_bits(v->q) > CALC_MAX_BITS)
        return too_large(p, pos);
    return true;
}

/* ---- formatting -------------------------------------------------------------------------- */

/* Append a decimal of x with at most `digits` significant digits, trailing zeros trimmed:
 * positional for moderate exponents, else d.ddde+N. */
static llmos_err fmt_real(llmos_buf *out, mpfr_srcptr x, int digits)
{
    if (mpfr_zero_p(x))
        return buf_puts(out, "0");
    mpfr_exp_t e;
    char *s = mpfr_get_str(NULL, &e, 10, (size_t)digits, x, RND);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory to format a number");
    llmos_err err = LLMOS_OK;
    const char *d = s;
    if (*d == '-') {
        err = buf_putc(out, '-');
        d++;
    }
    size_t n = strlen(d);
    while (n > 1 && d[n - 1] == '0')
        n--;
    /* the value is 0.d * 10^e */
    if (err) {
    } else if (e > 0 && e <= digits) {
        if ((size_t)e >= n) {
            err = buf_append(out, d, n);
            for (mpfr_exp_t i = (mpfr_exp_t)n; i < e && !err; i++)
                err = buf_putc(out, '0');
        } else {
            err = buf_printf(out, "%.*s.%.*s", (int)e, d, (int)(n - (size_t)e), d + e);
        }
    } else if (e <= 0 && e > -6) {
        err = buf_puts(out, "0.");
        for (mpfr_exp_t i = 0; i < -e && !err; i++)
            err = buf_putc(out, '0');
        if (!err)
            err = buf_append(out, d, n);
    } else {
        err = buf_putc(out, d[0]);
        if (!err && n > 1)
            err = buf_printf(out, ".%.*s", (int)(n - 1), d + 1);
        if (!err)
            err = buf_printf(out, "e%+ld", (long)(e - 1));
    }
    mpfr_free_str(s);
    return err;
}

static llmos_err fmt_mpz(llmos_buf *out, const mpz_t z)
{
    char *s = mpz_get_str(NULL, 10, z);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory to format a number");
    llmos_err err = buf_puts(out, s);
    void (*freefn)(void *, size_t);
    mp_get_memory_functions(NULL, NULL, &freefn);
    freefn(s, strlen(s) + 1);
    return err;
}

/* Append "p/q = 0.25" when the fraction's decimal is exact and short, else "p/q ≈ d". */
static llmos_err fmt_rational(llmos_buf *out, const mpq_t q)
{
    llmos_err err = fmt_mpz(out, mpq_numref(q));
    if (err)
        return err;
    if (mpz_cmp_ui(mpq_denref(q), 1) == 0)
        return LLMOS_OK;
    if ((err = buf_putc(out, '/')) || (err = fmt_mpz(out, mpq_denref(q))))
        return err;
    /* a decimal terminates when the denominator has no prime factors but 2 and 5 */
    mpz_t d, f;
    mpz_init_set(d, mpq_denref(q));
    mpz_init_set_ui(f, 2);
    unsigned long k2 = mpz_remove(d, d, f);
    mpz_set_ui(f, 5);
    unsigned long k5 = mpz_remove(d, d, f);
    bool terminating = mpz_cmp_ui(d, 1) == 0;
    unsigned long places = k2 > k5 ? k2 : k5;
    size_t num_digits = mpz_sizeinbase(mpq_numref(q), 10);
    if (terminating && places <= 30 && num_digits + places <= 40) {
        /* exact: q * 10^places is an integer */
        mpz_ui_pow_ui(f, 10, places);
        mpz_mul(d, mpq_numref(q), f);
        mpz_divexact(d, d, mpq_denref(q));
        bool neg = mpz_sgn(d) < 0;
        mpz_abs(d, d);
        char *s = mpz_get_str(NULL, 10, d);
        size_t n = strlen(s);
        err = buf_printf(out, " = %s", neg ? "-" : "");
        if (!err && n <= places) {
            err = buf_puts(out, "0.");
            for (size_t i = n; i < places && !err; i++)
                err = buf_putc(out, '0');
            if (!err)
                err = buf_puts(out, s);
        } else if (!err) {
            err = buf_printf(out, "%.*s.%s", (int)(n - places), s, s + (n - places));
        }
        void (*freefn)(void *, size_t);
        mp_get_memory_functions(NULL, NULL, &freefn);
        freefn(s, n + 1);
    } else {
        mpfr_t r;
        mpfr_init2(r, PREC);
        mpfr_set_q(r, q, RND);
        err = buf_puts(out, " \xe2\x89\x88 "); /* U+2248 ALMOST EQUAL TO */
        if (!err)
            err = fmt_real(out, r, 10);
        mpfr_clear(r);
    }
    mpz_clear(d);
    mpz_clear(f);
    return err;
}

static llmos_err fmt_value(llmos_buf *out, const cval *v)
{
    return v->real ? fmt_real(out, v->r, CALC_REAL_DIGITS) : fmt_rational(out, v->q);
}

/* A short text of a value for error messages. */
static void describe(const cval *v, char *out, size_t size)
{
    llmos_buf b = {0};
    if (v->real ? fmt_real(&b, v->r, 10) : fmt_mpz(&b, mpq_numref(v->q)) != LLMOS_OK) {
        snprintf(out, size, "?");
    } else if (!v->real && mpz_cmp_ui(mpq_denref(v->q), 1) != 0 &&
               (buf_putc(&b, '/') || fmt_mpz(&b, mpq_denref(v->q)))) {
        snprintf(out, size, "?");
    } else if (b.len >= size) {
        snprintf(out, size, "%.*s...", (int)(size > 4 ? size - 4 : 0), b.data);
    } else {
        snprintf(out, size, "%s", b.data);
    }
    buf_free(&b);
}

/* ---- arithmetic -------------------------------------------------------------------------- */

/* Set a real result of a difference or sum whose magnitude fell below the precision of its
 * operands (cancellation noise, e.g. sqrt(2)^2 - 2) to zero. */
static void snap_cancellation(mpfr_ptr res, mpfr_srcptr a, mpfr_srcptr b)
{
    if (mpfr_zero_p(res) || !mpfr_number_p(res))
        return;
    mpfr_exp_t ea = mpfr_zero_p(a) ? mpfr_get_emin() : mpfr_get_exp(a);
    mpfr_exp_t eb = mpfr_zero_p(b) ? mpfr_get_emin() : mpfr_get_exp(b);
    mpfr_exp_t top = ea > eb ? ea : eb;
    if (mpfr_get_exp(res) < top - (PREC - 16))
        mpfr_set_zero(res, 1);
}

/* Exact k-th root of a rational into out; false when it is not a rational. */
static bool exact_root(mpq_t out, const mpq_t a, unsigned long k)
{
    if (mpq_sgn(a) < 0 && k % 2 == 0)
        return false;
    mpz_t n, d;
    mpz_init(n);
    mpz_init(d);
    mpz_abs(n, mpq_numref(a));
    bool ok = mpz_root(n, n, k) != 0 && mpz_root(d, mpq_denref(a), k) != 0;
    if (ok) {
        if (mpq_sgn(a) < 0)
            mpz_neg(n, n);
        mpz_set(mpq_numref(out), n);
        mpz_set(mpq_denref(out), d);
        mpq_canonicalize(out);
    }
    mpz_clear(n);
    mpz_clear(d);
    return ok;
}

/* Floor of a value as an exact integer into out (a real must be small enough). */
static bool to_floor_int(parser *p, size_t pos, const cval *v, mpz_t out, int mode)
{
    if (!v->real) {
        if (mode < 0)
            mpz_fdiv_q(out, mpq_numref(v->q), mpq_denref(v->q));
        else if (mode > 0)
            mpz_cdiv_q(out, mpq_numref(v->q), mpq_denref(v->q));
        else
            mpz_tdiv_q(out, mpq_numref(v->q), mpq_denref(v->q));
        return true;
    }
    if (!mpfr_number_p(v->r))
        return fail_at(p, pos, LLMOS_ERR_INVALID, "result is not a real number");
    if (!mpfr_zero_p(v->r) && mpfr_get_exp(v->r) > (mpfr_exp_t)CALC_MAX_BITS)
        return too_large(p, pos);
    mpfr_get_z(out, v->r, mode < 0 ? MPFR_RNDD : mode > 0 ? MPFR_RNDU : MPFR_RNDZ);
    return true;
}

static void set_int(cval *v, const mpz_t z)
{
    v->real = false;
    mpq_set_z(v->q, z);
}

/* a = a ^ b, with b an exact integer. */
static bool pow_int(parser *p, size_t pos, cval *a, const mpz_t n)
{
    if (a->real) {
        mpfr_pow_z(a->r, a->r, n, RND);
        if (mpfr_zero_p(a->r) && mpz_sgn(n) < 0)
            return fail_at(p, pos, LLMOS_ERR_INVALID, "division by zero (0 to a negative power)");
        return check_result(p, pos, a);
    }
    if (mpq_sgn(a->q) == 0) {
        if (mpz_sgn(n) < 0)
            return fail_at(p, pos, LLMOS_ERR_INVALID, "division by zero (0 to a negative power)");
        if (mpz_sgn(n) == 0)
            mpq_set_ui(a->q, 1, 1); /* 0^0 = 1, as in combinatorics and most languages */
        return true;
    }
    if (mpz_cmp_ui(mpq_denref(a->q), 1) == 0 && mpz_cmpabs_ui(mpq_numref(a->q), 1) == 0) {
        if (mpz_even_p(n))
            mpq_set_ui(a->q, 1, 1);
        return true; /* (+-1)^n */
    }
    /* |base| is at least 2 or at most 1/2, so the result has at least |n| bits */
    if (!mpz_fits_slong_p(n) || labs(mpz_get_si(n)) > (long)CALC_MAX_BITS)
        return too_large(p, pos);
    long e = mpz_get_si(n);
    unsigned long ue = (unsigned long)labs(e);
    size_t b = q_bits(a->q);
    if ((double)(b - 1) * (double)ue > (double)CALC_MAX_BITS)
        return too_large(p, pos);
    mpz_pow_ui(mpq_numref(a->q), mpq_numref(a->q), ue);
    mpz_pow_ui(mpq_denref(a->q), mpq_denref(a->q), ue);
    if (e < 0)
        mpq_inv(a->q, a->q);
    return check_result(p, pos, a);
}

/* a = a ^ b */
static bool do_pow(parser *p, size_t pos, cval *a, cval *b)
{
    if (cv_is_int(b))
        return pow_int(p, pos, a, mpq_numref(b->q));
    if (!a->real && !b->real && mpz_fits_ulong_p(mpq_denref(b->q)) &&
        mpz_cmp_ui(mpq_denref(b->q), 1000) <= 0) {
        /* rational exponent p/q: exact when the q-th root of the base is rational */
        mpq_t r;
        mpq_init(r);
        bool exact = exact_root(r, a->q, mpz_get_ui(mpq_denref(b->q)));
        if (exact) {
            mpq_set(a->q, r);
            mpq_clear(r);
            return pow_int(p, pos, a, mpq_numref(b->q));
        }
        mpq_clear(r);
    }
    if (cv_sgn(a) < 0)
        return fail_at(p, pos, LLMOS_ERR_INVALID,
                       "domain error: a negative number to a fractional power is not real");
    if (cv_sgn(a) == 0 && cv_sgn(b) < 0)
        return fail_at(p, pos, LLMOS_ERR_INVALID, "division by zero (0 to a negative power)");
    cv_to_real(a);
    cv_to_real(b);
    mpfr_pow(a->r, a->r, b->r, RND);
    return check_result(p, pos, a);
}

/* a = a op b for op in + - * / // % ^ */
static bool binop(parser *p, size_t pos, char op, cval *a, cval *b)
{
    if (op == '^')
        return do_pow(p, pos, a, b);
    if ((op == '/' || op == 'd' || op == '%') && cv_sgn(b) == 0)
        return fail_at(p, pos, LLMOS_ERR_INVALID, "%s by zero", op == '%' ? "modulo" : "division");
    if (op == 'd' || op == '%') {
        /* floor division and modulo: a - b * floor(a / b), the sign of the divisor */
        cval t;
        cv_init(&t);
        cv_set(&t, a);
        bool ok = binop(p, pos, '/', &t, b);
        mpz_t f;
        mpz_init(f);
        ok = ok && to_floor_int(p, pos, &t, f, -1);
        if (ok && op == 'd') {
            set_int(a, f);
        } else if (ok) {
            set_int(&t, f);
            ok = binop(p, pos, '*', &t, b) && binop(p, pos, '-', a, &t);
        }
        mpz_clear(f);
        cv_clear(&t);
        return ok;
    }
    if (!a->real && !b->real) {
        switch (op) {
        case '+': mpq_add(a->q, a->q, b->q); break;
        case '-': mpq_sub(a->q, a->q, b->q); break;
        case '*': mpq_mul(a->q, a->q, b->q); break;
        default: mpq_div(a->q, a->q, b->q); break;
        }
        return check_result(p, pos, a);
    }
    cv_to_real(a);
    cv_to_real(b);
    mpfr_t res;
    mpfr_init2(res, PREC);
    switch (op) {
    case '+': mpfr_add(res, a->r, b->r, RND); break;
    case '-': mpfr_sub(res, a->r, b->r, RND); break;
    case '*': mpfr_mul(res, a->r, b->r, RND); break;
    default: mpfr_div(res, a->r, b->r, RND); break;
    }
    if (op == '+' || op == '-')
        snap_cancellation(res, a->r, b->r);
    mpfr_swap(a->r, res);
    mpfr_clear(res);
    return check_result(p, pos, a);
}

/* ---- functions --------------------------------------------------------------------------- */

typedef int (*mpfr_fn1)(mpfr_ptr, mpfr_srcptr, mpfr_rnd_t);

enum fkind {
    F_REAL, /* one argument through an MPFR function */
    F_SQRT,
    F_CBRT,
    F_LOG,
    F_ATAN2,
    F_POW,
    F_ABS,
    F_FLOOR,
    F_CEIL,
    F_ROUND,
    F_GCD,
    F_LCM,
    F_MOD,
    F_FACT,
    F_BINOM,
    F_MIN,
    F_MAX,
};

typedef struct cfunc {
    const char *name;
    enum fkind kind;
    int min_args, max_args;
    mpfr_fn1 fn;
    const char *domain; /* where the function is real, for domain errors */
    bool periodic;      /* sin/cos/tan: results far below the argument's precision are 0 */
    bool inf_is_domain; /* an infinite result means a pole (ln(0)), not an overflow */
} cfunc;

static const cfunc calc_funcs[] = {
    {"sqrt", F_SQRT, 1, 1, mpfr_sqrt, "x >= 0", false, false},
    {"cbrt", F_CBRT, 1, 1, mpfr_cbrt, "all x", false, false},
    {"exp", F_REAL, 1, 1, mpfr_exp, "all x", false, false},
    {"ln", F_LOG, 1, 1, mpfr_log, "x > 0", false, true},
    {"log", F_LOG, 1, 2, mpfr_log, "x > 0", false, true},
    {"log2", F_REAL, 1, 1, mpfr_log2, "x > 0", false, true},
    {"log10", F_REAL, 1, 1, mpfr_log10, "x > 0", false, true},
    {"sin", F_REAL, 1, 1, mpfr_sin, "all x", true, false},
    {"cos", F_REAL, 1, 1, mpfr_cos, "all x", true, false},
    {"tan", F_REAL, 1, 1, mpfr_tan, "x not at a pole", true, false},
    {"asin", F_REAL, 1, 1, mpfr_asin, "-1 <= x <= 1", false, false},
    {"acos", F_REAL, 1, 1, mpfr_acos, "-1 <= x <= 1", false, false},
    {"atan", F_REAL, 1, 1, mpfr_atan, "all x", false, false},
    {"sinh", F_REAL, 1, 1, mpfr_sinh, "all x", false, false},
    {"cosh", F_REAL, 1, 1, mpfr_cosh, "all x", false, false},
    {"tanh", F_REAL, 1, 1, mpfr_tanh, "all x", false, false},
    {"asinh", F_REAL, 1, 1, mpfr_asinh, "all x", false, false},
    {"acosh", F_REAL, 1, 1, mpfr_acosh, "x >= 1", false, false},
    {"atanh", F_REAL, 1, 1, mpfr_atanh, "-1 < x < 1", false, true},
    {"atan2", F_ATAN2, 2, 2, NULL, "", false, false},
    {"pow", F_POW, 2, 2, NULL, "", false, false},
    {"abs", F_ABS, 1, 1, NULL, "", false, false},
    {"floor", F_FLOOR, 1, 1, NULL, "", false, false},
    {"ceil", F_CEIL, 1, 1, NULL, "", false, false},
    {"round", F_ROUND, 1, 1, NULL, "", false, false},
    {"gcd", F_GCD, 2, CALC_MAX_ARGS, NULL, "", false, false},
    {"lcm", F_LCM, 2, CALC_MAX_ARGS, NULL, "", false, false},
    {"mod", F_MOD, 2, 2, NULL, "", false, false},
    {"factorial", F_FACT, 1, 1, NULL, "", false, false},
    {"binomial", F_BINOM, 2, 2, NULL, "", false, false},
    {"choose", F_BINOM, 2, 2, NULL, "", false, false},
    {"min", F_MIN, 1, CALC_MAX_ARGS, NULL, "", false, false},
    {"max", F_MAX, 1, CALC_MAX_ARGS, NULL, "", false, false},
};

static const cfunc *find_func(const char *name, size_t n)
{
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(calc_funcs); i++)
        if (strlen(calc_funcs[i].name) == n && strncasecmp(calc_funcs[i].name, name, n) == 0)
            return &calc_funcs[i];
    return NULL;
}

static bool need_integer(parser *p, size_t pos, const cfunc *f, const cval *v)
{
    if (cv_is_int(v))
        return true;
    char d[64];
    describe(v, d, sizeof d);
    return fail_at(p, pos, LLMOS_ERR_INVALID, "%s needs integer arguments, got %s", f->name, d);
}

/* Factorial of v (an exact non-negative integer) into v. */
static bool do_factorial(parser *p, size_t pos, cval *v)
{
    if (!cv_is_int(v) || mpq_sgn(v->q) < 0) {
        char d[64];
        describe(v, d, sizeof d);
        return fail_at(p, pos, LLMOS_ERR_INVALID, "factorial needs a non-negative integer, got %s",
                       d);
    }
    if (!mpz_fits_ulong_p(mpq_numref(v->q)) || mpz_cmp_ui(mpq_numref(v->q), 1000000) > 0)
        return too_large(p, pos);
    unsigned long n = mpz_get_ui(mpq_numref(v->q));
    /* log2(n!) = lgamma(n + 1) / ln 2 */
    if (lgamma((double)n + 1.0) / M_LN2 > (double)CALC_MAX_BITS)
        return too_large(p, pos);
    mpz_t r;
    mpz_init(r);
    mpz_fac_ui(r, n);
    set_int(v, r);
    mpz_clear(r);
    return check_result(p, pos, v);
}

static bool do_binomial(parser *p, size_t pos, cval *n, const cval *k)
{
    if (mpq_sgn(n->q) < 0)
        return fail_at(p, pos, LLMOS_ERR_INVALID, "binomial needs n >= 0");
    mpz_t nn, kk;
    mpz_init_set(nn, mpq_numref(n->q));
    mpz_init_set(kk, mpq_numref(k->q));
    bool ok = true;
    if (mpz_sgn(kk) < 0 || mpz_cmp(kk, nn) > 0) {
        mpz_set_ui(nn, 0);
    } else {
        mpz_t nk;
        mpz_init(nk);
        mpz_sub(nk, nn, kk);
        if (mpz_cmp(nk, kk) < 0)
            mpz_swap(nk, kk); /* C(n, k) = C(n, n - k): take the smaller k */
        mpz_clear(nk);
        if (!mpz_fits_ulong_p(kk)) {
            ok = too_large(p, pos);
        } else {
            double dn = mpz_get_d(nn), dk = mpz_get_d(kk), bits;
            if (dn < 1e12)
                bits = (lgamma(dn + 1) - lgamma(dk + 1) - lgamma(dn - dk + 1)) / M_LN2;
            else
                bits = dk * log2(dn); /* C(n, k) <= n^k */
            if (bits > (double)CALC_MAX_BITS + 64)
                ok = too_large(p, pos);
            else
                mpz_bin_ui(nn, nn, mpz_get_ui(kk));
        }
    }
    if (ok) {
        set_int(n, nn);
        ok = check_result(p, pos, n);
    }
    mpz_clear(nn);
    mpz_clear(kk);
    return ok;
}

static int cv_cmp(const cval *a, const cval *b)
{
    if (!a->real && !b->real)
        return mpq_cmp(a->q, b->q);
    cval x, y;
    cv_init(&x);
    cv_init(&y);
    cv_set(&x, a);
    cv_set(&y, b);
    cv_to_real(&x);
    cv_to_real(&y);
    int c = mpfr_cmp(x.r, y.r);
    cv_clear(&x);
    cv_clear(&y);
    return c;
}

/* Apply f to args[0..n); the result goes to args[0]. */
static bool call_func(parser *p, size_t pos, const cfunc *f, cval *args, int n)
{
    cval *a = &args[0];
    mpz_t z;
    bool ok = true;
    switch (f->kind) {
    case F_SQRT:
    case F_CBRT:
        if (!a->real && exact_root(a->q, a->q, f->kind == F_SQRT ? 2 : 3))
            return true;
        /* fall through */
    case F_REAL:
    case F_LOG: {
        char d[64];
        describe(a, d, sizeof d);
        /* an exact argument is converted with all its bits (sin(10^100) needs them all) */
        bool exact_arg = !a->real;
        if (f->periodic && !exact_arg && mpfr_number_p(a->r) && !mpfr_zero_p(a->r) &&
            mpfr_get_exp(a->r) > PREC)
            /* its last bit is worth more than a full turn: no angle is left to compute, and
             * reducing it would take time proportional to its exponent */
            return fail_at(p, pos, LLMOS_ERR_INVALID,
                           "%s(%s): the argument is an approximation larger than 2^%d, so its "
                           "angle is unknown; use exact numbers (integers, fractions)",
                           f->name, d, PREC);
        mpfr_t arg;
        mpfr_init2(arg, exact_arg ? (mpfr_prec_t)(PREC + q_bits(a->q)) : PREC);
        if (exact_arg)
            mpfr_set_q(arg, a->q, RND);
        else
            mpfr_set(arg, a->r, RND);
        a->real = true;
        f->fn(a->r, arg, RND);
        if (mpfr_nan_p(a->r) || (mpfr_inf_p(a->r) && f->inf_is_domain)) {
            mpfr_clear(arg);
            return fail_at(p, pos, LLMOS_ERR_INVALID,
                           "domain error: %s(%s) is not a real number (%s needs %s)", f->name, d,
                           f->name, f->domain);
        }
        if (f->periodic && !exact_arg && !mpfr_zero_p(a->r) && !mpfr_zero_p(arg) &&
            mpfr_get_exp(a->r) < mpfr_get_exp(arg) - (PREC - 16))
            mpfr_set_zero(a->r, 1); /* sin(pi): the rest is rounding noise of pi */
        mpfr_clear(arg);
        if (f->kind == F_LOG && n == 2) {
            /* log(x, base) = ln x / ln base */
            cval *b = &args[1];
            if (cv_sgn(b) <= 0 || (!b->real && mpq_cmp_ui(b->q, 1, 1) == 0))
                return fail_at(p, pos, LLMOS_ERR_INVALID,
                               "domain error: the base of log must be positive and not 1");
            cv_to_real(b);
            mpfr_log(b->r, b->r, RND);
            if (mpfr_zero_p(b->r))
                return fail_at(p, pos, LLMOS_ERR_INVALID,
                               "domain error: the base of log must not be 1");
            mpfr_div(a->r, a->r, b->r, RND);
        }
        return check_result(p, pos, a);
    }
    case F_ATAN2:
        cv_to_real(a);
        cv_to_real(&args[1]);
        mpfr_atan2(a->r, a->r, args[1].r, RND);
        return check_result(p, pos, a);
    case F_POW: return do_pow(p, pos, a, &args[1]);
    case F_ABS:
        if (a->real)
            mpfr_abs(a->r, a->r, RND);
        else
            mpq_abs(a->q, a->q);
        return true;
    case F_FLOOR:
    case F_CEIL:
        mpz_init(z);
        ok = to_floor_int(p, pos, a, z, f->kind == F_FLOOR ? -1 : 1);
        if (ok)
            set_int(a, z);
        mpz_clear(z);
        return ok;
    case F_ROUND: {
        /* half away from zero: sign(x) * floor(|x| + 1/2) */
        int sign = cv_sgn(a);
        cval half;
        cv_init(&half);
        mpq_set_ui(half.q, 1, 2);
        if (a->real)
            mpfr_abs(a->r, a->r, RND);
        else
            mpq_abs(a->q, a->q);
        ok = binop(p, pos, '+', a, &half);
        cv_clear(&half);
        mpz_init(z);
        ok = ok && to_floor_int(p, pos, a, z, -1);
        if (ok) {
            if (sign < 0)
                mpz_neg(z, z);
            set_int(a, z);
        }
        mpz_clear(z);
        return ok;
    }
    case F_GCD:
    case F_LCM:
        for (int i = 0; i < n; i++)
            if (!need_integer(p, pos, f, &args[i]))
                return false;
        for (int i = 1; i < n && ok; i++) {
            if (f->kind == F_GCD)
                mpz_gcd(mpq_numref(a->q), mpq_numref(a->q), mpq_numref(args[i].q));
            else
                mpz_lcm(mpq_numref(a->q), mpq_numref(a->q), mpq_numref(args[i].q));
            ok = check_result(p, pos, a);
        }
        return ok;
    case F_MOD: return binop(p, pos, '%', a, &args[1]);
    case F_FACT: return do_factorial(p, pos, a);
    case F_BINOM:
        return need_integer(p, pos, f, a) && need_integer(p, pos, f, &args[1]) &&
               do_binomial(p, pos, a, &args[1]);
    case F_MIN:
    case F_MAX:
        for (int i = 1; i < n; i++) {
            int c = cv_cmp(&args[i], a);
            if ((f->kind == F_MIN && c < 0) || (f->kind == F_MAX && c > 0))
                cv_set(a, &args[i]);
        }
        return true;
    }
    return fail_at(p, pos, LLMOS_ERR_INTERNAL, "unhandled function %s", f->name);
}

/* ---- the parser -------------------------------------------------------------------------- */

static void skip_ws(parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(parser *p)
{
    skip_ws(p);
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static bool is_ident_start(int c)
{
    return c == '_' || (c >= 0 && c < 128 && isalpha(c));
}
static bool is_ident_char(int c)
{
    return c == '_' || (c >= 0 && c < 128 && isalnum(c));
}

/* "unexpected X at column N" for whatever is at the current position. */
static bool unexpected(parser *p, const char *expected)
{
    skip_ws(p);
    char what[96], hint[96];
    snprintf(hint, sizeof hint, "expected %s", expected);
    if (p->pos >= p->len)
        return fail_hint(p, p->pos, "expression ends early", hint);
    unsigned char c = (unsigned char)p->s[p->pos];
    if (is_ident_start(c)) {
        size_t e = p->pos;
        while (e < p->len && is_ident_char((unsigned char)p->s[e]) && e - p->pos < 32)
            e++;
        snprintf(what, sizeof what, "unexpected '%.*s'", (int)(e - p->pos), p->s + p->pos);
        return fail_hint(p, p->pos, what, "write an operator between values, e.g. 2*pi");
    }
    if (c >= 0x21 && c < 0x7f)
        snprintf(what, sizeof what, "unexpected '%c'", c);
    else
        snprintf(what, sizeof what, "unexpected byte 0x%02x", c);
    return fail_hint(p, p->pos, what, hint);
}

static bool parse_expr(parser *p, cval *out);
static bool parse_unary(parser *p, cval *out);

static bool parse_number(parser *p, cval *out)
{
    size_t start = p->pos;
    const char *s = p->s;
    char tmp[CALC_MAX_INPUT + 1];
    size_t nt = 0;
    if (s[p->pos] == '0' && p->pos + 1 < p->len && (s[p->pos + 1] == 'x' || s[p->pos + 1] == 'X')) {
        p->pos += 2;
        while (p->pos < p->len && isxdigit((unsigned char)s[p->pos]))
            tmp[nt++] = s[p->pos++];
        if (!nt)
            return fail_at(p, start, LLMOS_ERR_INVALID, "hex number without digits");
        tmp[nt] = 0;
        mpz_set_str(mpq_numref(out->q), tmp, 16);
        mpz_set_ui(mpq_denref(out->q), 1);
        out->real = false;
        return check_result(p, start, out);
    }
    long frac = 0;
    bool dot = false;
    while (p->pos < p->len && (isdigit((unsigned char)s[p->pos]) || (s[p->pos] == '.' && !dot))) {
        if (s[p->pos] == '.') {
            dot = true;
        } else {
            tmp[nt++] = s[p->pos];
            frac += dot;
        }
        p->pos++;
    }
    if (!nt)
        return fail_at(p, start, LLMOS_ERR_INVALID, "a lone '.' is not a number");
    tmp[nt] = 0;
    long exp10 = 0;
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        size_t q = p->pos + 1;
        int sign = 1;
        if (q < p->len && (s[q] == '+' || s[q] == '-'))
            sign = s[q++] == '-' ? -1 : 1;
        if (q < p->len && isdigit((unsigned char)s[q])) {
            while (q < p->len && isdigit((unsigned char)s[q])) {
                if (exp10 < 1000000)
                    exp10 = exp10 * 10 + (s[q] - '0');
                q++;
            }
            exp10 *= sign;
            p->pos = q;
        } /* else: "2e" is 2 followed by the name e, reported by the caller */
    }
    mpz_set_str(mpq_numref(out->q), tmp, 10);
    mpz_set_ui(mpq_denref(out->q), 1);
    out->real = false;
    long scale = exp10 - frac;
    if (mpz_sgn(mpq_numref(out->q)) != 0) {
        if (scale > CALC_MAX_DIGITS || scale < -CALC_MAX_DIGITS)
            return too_large(p, start);
        mpz_t t;
        mpz_init(t);
        mpz_ui_pow_ui(t, 10, (unsigned long)labs(scale));
        if (scale >= 0)
            mpz_mul(mpq_numref(out->q), mpq_numref(out->q), t);
        else
            mpz_set(mpq_denref(out->q), t);
        mpz_clear(t);
        mpq_canonicalize(out->q);
    }
    return check_result(p, start, out);
}

static bool parse_call(parser *p, size_t name_pos, const cfunc *f, cval *out)
{
    cval args[CALC_MAX_ARGS];
    int n = 0;
    bool ok = true;
    p->pos++; /* '(' */
    if (peek(p) == ')') {
        p->pos++;
    } else {
        for (;;) {
            if (n == CALC_MAX_ARGS) {
                ok = fail_at(p, p->pos, LLMOS_ERR_LIMIT, "%s takes at most %d arguments", f->name,
                             f->max_args);
                break;
            }
            cv_init(&args[n]);
            n++;
            if (!(ok = parse_expr(p, &args[n - 1])))
                break;
            int c = peek(p);
            if (c == ',') {
                p->pos++;
                continue;
            }
            if (c == ')') {
                p->pos++;
                break;
            }
            ok = unexpected(p, "',' or ')'");
            break;
        }
    }
    if (ok && (n < f->min_args || n > f->max_args)) {
        if (f->min_args == f->max_args)
            ok = fail_at(p, name_pos, LLMOS_ERR_INVALID, "%s takes %d argument%s, got %d", f->name,
                         f->min_args, f->min_args == 1 ? "" : "s", n);
        else
            ok = fail_at(p, name_pos, LLMOS_ERR_INVALID, "%s takes %d to %d arguments, got %d",
                         f->name, f->min_args, f->max_args, n);
    }
    if (ok)
        ok = call_func(p, name_pos, f, args, n);
    if (ok)
        cv_set(out, &args[0]);
    for (int i = 0; i < n; i++)
        cv_clear(&args[i]);
    return ok;
}

static bool parse_primary(parser *p, cval *out)
{
    int c = peek(p);
    size_t start = p->pos;
    if (c == '(') {
        p->pos++;
        if (!parse_expr(p, out))
            return false;
        if (peek(p) != ')')
            return p->pos >= p->len
                       ? fail_at(p, start, LLMOS_ERR_INVALID, "unclosed '(': add a ')'")
                       : unexpected(p, "')'");
        p->pos++;
        return true;
    }
    if ((c >= '0' && c <= '9') || c == '.')
        return parse_number(p, out);
    if (is_ident_start(c)) {
        size_t e = p->pos;
        while (e < p->len && is_ident_char((unsigned char)p->s[e]))
            e++;
        const char *name = p->s + p->pos;
        size_t n = e - p->pos;
        p->pos = e;
        if (n == 2 && strncasecmp(name, "pi", 2) == 0) {
            out->real = true;
            mpfr_const_pi(out->r, RND);
            return true;
        }
        if (n == 1 && (name[0] == 'e' || name[0] == 'E')) {
            out->real = true;
            mpfr_set_ui(out->r, 1, RND);
            mpfr_exp(out->r, out->r, RND);
            return true;
        }
        const cfunc *f = find_func(name, n);
        if (f && peek(p) == '(')
            return parse_call(p, start, f, out);
        if (f)
            return fail_at(p, start, LLMOS_ERR_INVALID,
                           "%s is a function: write %s(x) with parentheses", f->name, f->name);
        const char *best = NULL;
        size_t bestd = n >= 5 ? 3 : 2; /* suggest only names within 1 (2 for long) edits */
        for (size_t i = 0; i < LLMOS_ARRAY_LEN(calc_funcs); i++) {
            char lower[32];
            size_t ln = n < sizeof lower ? n : sizeof lower; /* names are matched in lower case */
            for (size_t j = 0; j < ln; j++)
                lower[j] = (char)tolower((unsigned char)name[j]);
            size_t d =
                llmos_edit_distance(lower, ln, calc_funcs[i].name, strlen(calc_funcs[i].name));
            if (d < bestd) {
                bestd = d;
                best = calc_funcs[i].name;
            }
        }
        char what[96], hint[96];
        snprintf(what, sizeof what, "unknown function or name '%.*s'", (int)(n > 40 ? 40 : n),
                 name);
        if (best)
            snprintf(hint, sizeof hint, "did you mean %s?", best);
        else
            snprintf(hint, sizeof hint, "known are pi, e, sqrt, exp, ln, log, sin, cos, ...");
        return fail_hint(p, start, what, hint);
    }
    return unexpected(p, "a number, a name or '('");
}

/* postfix := primary '!'* */
static bool parse_postfix(parser *p, cval *out)
{
    if (!parse_primary(p, out))
        return false;
    while (peek(p) == '!') {
        size_t pos = p->pos++;
        if (p->pos < p->len && p->s[p->pos] == '=')
            return fail_at(p, pos, LLMOS_ERR_INVALID, "comparisons (!=) are not supported");
        if (!do_factorial(p, pos, out))
            return false;
    }
    return true;
}

/* power := postfix [('^' | '**') unary], right associative: 2^3^2 = 2^9, 2^-1 = 1/2 */
static bool parse_power(parser *p, cval *out)
{
    if (!parse_postfix(p, out))
        return false;
    int c = peek(p);
    bool star2 = c == '*' && p->pos + 1 < p->len && p->s[p->pos + 1] == '*';
    if (c != '^' && !star2)
        return true;
    size_t pos = p->pos;
    p->pos += star2 ? 2 : 1;
    cval e;
    cv_init(&e);
    bool ok = parse_unary(p, &e) && binop(p, pos, '^', out, &e);
    cv_clear(&e);
    return ok;
}

/* unary := ('-' | '+') unary | power; so -2^2 = -(2^2) */
static bool parse_unary(parser *p, cval *out)
{
    if (++p->depth > CALC_MAX_DEPTH)
        return fail_at(p, p->pos, LLMOS_ERR_LIMIT, "expression nested deeper than %d levels",
                       CALC_MAX_DEPTH);
    int c = peek(p);
    bool ok;
    if (c == '-' || c == '+') {
        p->pos++;
        ok = parse_unary(p, out);
        if (ok && c == '-') {
            if (out->real)
                mpfr_neg(out->r, out->r, RND);
            else
                mpq_neg(out->q, out->q);
        }
    } else {
        ok = parse_power(p, out);
    }
    p->depth--;
    return ok;
}

/* term := unary (('*' | '/' | '//' | '%') unary)* */
static bool parse_term(parser *p, cval *out)
{
    if (!parse_unary(p, out))
        return false;
    for (;;) {
        int c = peek(p);
        char op;
        size_t pos = p->pos;
        if (c == '*' && !(p->pos + 1 < p->len && p->s[p->pos + 1] == '*')) {
            op = '*';
            p->pos++;
        } else if (c == '/' && p->pos + 1 < p->len && p->s[p->pos + 1] == '/') {
            op = 'd';
            p->pos += 2;
        } else if (c == '/' || c == '%') {
            op = (char)c;
            p->pos++;
        } else {
            return true;
        }
        cval b;
        cv_init(&b);
        bool ok = parse_unary(p, &b) && binop(p, pos, op, out, &b);
        cv_clear(&b);
        if (!ok)
            return false;
    }
}

/* expr := term (('+' | '-') term)* */
static bool parse_expr(parser *p, cval *out)
{
    if (!parse_term(p, out))
        return false;
    for (;;) {
        int c = peek(p);
        if (c != '+' && c != '-')
            return true;
        size_t pos = p->pos++;
        cval b;
        cv_init(&b);
        bool ok = parse_term(p, &b) && binop(p, pos, (char)c, out, &b);
        cv_clear(&b);
        if (!ok)
            return false;
    }
}

/* ---- public API -------------------------------------------------------------------------- */

llmos_err calc_eval_n(const char *expr, size_t len, llmos_buf *out)
{
    if (!expr || !out)
        return llmos_fail(LLMOS_ERR_INVALID, "calc_eval: expression and output are required");
    if (len > CALC_MAX_INPUT)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "expression too long (%zu bytes; the calculator takes at most %d)", len,
                          CALC_MAX_INPUT);
    parser p = {expr, len, 0, 0, LLMOS_OK};
    if (peek(&p) < 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "empty expression: write one such as 2*(3+4) or sqrt(2)");
    cval v;
    cv_init(&v);
    bool ok = parse_expr(&p, &v);
    if (ok && peek(&p) >= 0) {
        if (peek(&p) == ')')
            ok = fail_at(&p, p.pos, LLMOS_ERR_INVALID, "unexpected ')' without a matching '('");
        else
            ok = unexpected(&p, "an operator or the end");
    }
    llmos_err err = ok ? LLMOS_OK : p.err;
    if (ok) {
        size_t mark = out->len;
        err = fmt_value(out, &v);
        if (err) {
            out->len = mark;
            if (out->data)
                out->data[mark] = 0;
        }
    }
    cv_clear(&v);
    mpfr_free_cache();
    return err;
}

llmos_err calc_eval(const char *expr, llmos_buf *out)
{
    if (!expr)
        return llmos_fail(LLMOS_ERR_INVALID, "calc_eval: expression is required");
    return calc_eval_n(expr, strlen(expr), out);
}

/* The tool: "expression" is evaluated into the result. */
static llmos_err calculator_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const json_t *e = json_object_get(env->args, "expression");
    if (!json_is_string(e))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "calculator: the arguments need \"expression\": a string such as "
                          "\"2*(3+4)\"");
    return calc_eval_n(json_string_value(e), json_string_length(e), env->out);
}

const ktool tool_calculator = {
    .name = "calculator",
    .description =
        "Evaluate an arithmetic expression exactly: integers and fractions of any size "
        "(0.1+0.2 = 3/10), + - * / ^ // % !, parentheses, pi, e, sqrt, exp, ln, log, log2, "
        "log10, sin, cos, tan and inverses, sinh.., abs, floor, ceil, round, gcd, lcm, mod, "
        "factorial, binomial, min, max. Irrational results have 50 significant digits.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"expression\": {\"type\": "
                  "\"string\"}}, \"required\": [\"expression\"], \"additionalProperties\": false}",
    .capability = KCAP_COMPUTE,
    .output_trusted = true,
    .run = calculator_run,
};
