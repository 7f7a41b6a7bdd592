/*
 * guard.c - the output guard's rule detectors: secrets and personal data, exfiltration URLs and
 * vulnerable code, found as spans of a text (llmos/guard.h).
 *
 * Every detector is a scanner over bytes, written for this purpose (no regular-expression
 * engine): each walks the text once and tests candidates with the check that makes them what
 * they are (Luhn for card numbers, mod-97 for IBANs, the provider's exact alphabet and length
 * for API keys, entropy for unknown secrets). They are tuned on the labelled samples in
 * tests/data/guard/ (precision and recall per detector: tests/security/test_guard_samples.c).
 * Policy, decisions and streaming are in guard_policy.c; the judge in guard_judge.c.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/guard.h"

static const char *const detector_names[GUARD_DETECTOR_COUNT_] = {
    "credit_card", "iban",   "api_key",     "private_key", "high_entropy", "email", "phone",
    "exfil_url",   "vuln_c", "vuln_python", "vuln_sql",    "vuln_shell",   "judge",
};

const char *guard_detector_name(guard_detector d)
{
    return (unsigned)d < GUARD_DETECTOR_COUNT_ ? detector_names[d] : NULL;
}

bool guard_detector_parse(const char *name, guard_detector *out)
{
    for (int i = 0; name && i < GUARD_DETECTOR_COUNT_; i++)
        if (strcmp(name, detector_names[i]) == 0) {
            *out = (guard_detector)i;
            return true;
        }
    return false;
}

void guard_findings_free(guard_findings *f)
{
    if (!f)
        return;
    free(f->v);
    f->v = NULL;
    f->n = f->cap = 0;
}

static llmos_err add(guard_findings *f, guard_detector d, size_t start, size_t end,
                     guard_severity sev, const char *kind)
{
    assert(start < end && kind);
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        guard_finding *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory for a finding");
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (guard_finding){d, start, end, sev, kind};
    return LLMOS_OK;
}

/* ---- character classes (ASCII; other bytes are never part of what we look for) ---------- */
static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}
static bool is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}
static bool is_lower(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}
static bool is_alpha(unsigned char c)
{
    return is_upper(c) || is_lower(c);
}
static bool is_alnum(unsigned char c)
{
    return is_alpha(c) || is_digit(c);
}
static bool is_ident(unsigned char c)
{
    return is_alnum(c) || c == '_';
}
static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
/* The alphabet of tokens: base64, base64url, hex, key formats. */
static bool is_token(unsigned char c)
{
    return is_alnum(c) || c == '_' || c == '-' || c == '+' || c == '/' || c == '=';
}

/* Does t[i..] start with s (case sensitive)? */
static bool at(const char *t, size_t len, size_t i, const char *s)
{
    size_t n = strlen(s);
    return i <= len && len - i >= n && memcmp(t + i, s, n) == 0;
}

static bool at_nocase(const char *t, size_t len, size_t i, const char *s)
{
    size_t n = strlen(s);
    if (i > len || len - i < n)
        return false;
    for (size_t k = 0; k < n; k++) {
        unsigned char a = (unsigned char)t[i + k], b = (unsigned char)s[k];
        if (is_upper(a))
            a = (unsigned char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

/* ---- check digits -------------------------------------------------------------------------- */

bool guard_luhn_ok(const char *s, size_t len)
{
    /* From the rightmost digit: every second digit doubled (9 subtracted past 9); the sum of all
     * is a multiple of 10. */
    int sum = 0, n = 0;
    for (size_t i = len; i-- > 0;) {
        if (!is_digit((unsigned char)s[i]))
            continue;
        int d = s[i] - '0';
        if (n++ % 2 == 1) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return n > 1 && sum % 10 == 0;
}

bool guard_iban_ok(const char *s, size_t len)
{
    /* ISO 13616: move the first four characters to the end, letters to 10..35, and the number
     * mod 97 must be 1. Computed digit by digit, never as a big number. */
    char c[40];
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == ' ')
            continue;
        if (!is_alnum(ch) || n == sizeof c)
            return false;
        c[n++] = (char)(is_lower(ch) ? ch - 'a' + 'A' : ch);
    }
    if (n < 15 || n > 34 || !is_upper((unsigned char)c[0]) || !is_upper((unsigned char)c[1]) ||
        !is_digit((unsigned char)c[2]) || !is_digit((unsigned char)c[3]))
        return false;
    unsigned rem = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned char ch = (unsigned char)c[(k + 4) % n];
        if (is_digit(ch))
            rem = (rem * 10 + (unsigned)(ch - '0')) % 97;
        else
            rem = (rem * 100 + (unsigned)(ch - 'A' + 10)) % 97;
    }
    return rem == 1;
}

double guard_entropy(const char *s, size_t len)
{
    if (len == 0)
        return 0;
    unsigned count[256] = {0};
    for (size_t i = 0; i < len; i++)
        count[(unsigned char)s[i]]++;
    double h = 0;
    for (int c = 0; c < 256; c++)
        if (count[c]) {
            double p = (double)count[c] / (double)len;
            h -= p * log2(p);
        }
    return h;
}

/* ---- payment cards ------------------------------------------------------------------------ */

/* The brand of a card number by its leading digits (IIN ranges) and length; NULL for none. */
static const char *card_brand(const char *d, size_t n)
{
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p3 = p2 * 10 + (d[2] - '0');
    int p4 = p3 * 10 + (d[3] - '0');
    if (d[0] == '4' && (n == 13 || n == 16 || n == 19))
        return "Visa card number";
    if (((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)) && n == 16)
        return "Mastercard number";
    if ((p2 == 34 || p2 == 37) && n == 15)
        return "American Express card number";
    if ((p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) && n >= 16 && n <= 19)
        return "Discover card number";
    if (p4 >= 3528 && p4 <= 3589 && n >= 16 && n <= 19)
        return "JCB card number";
    if ((p2 == 36 || p2 == 38 || p2 == 39 || (p3 >= 300 && p3 <= 305)) && n >= 14 && n <= 19)
        return "Diners Club card number";
    if (p2 == 62 && n >= 16 && n <= 19)
        return "UnionPay card number";
    return NULL;
}

/* Digit runs separated by single spaces or dashes (one kind of separator), not touching other
 * digits or letters, 13 to 19 digits. */
static llmos_err scan_cards(const char *t, size_t len, guard_findings *out)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_digit((unsigned char)t[i]) ||
            (i > 0 && (is_alnum((unsigned char)t[i - 1]) || t[i - 1] == '.' || t[i - 1] == '-')))
            continue;
        char d[20];
        size_t n = 0, j = i;
        char sep = 0;
        while (j < len) {
            unsigned char c = (unsigned char)t[j];
            if (is_digit(c)) {
                if (n == sizeof d)
                    break;
                d[n++] = (char)c;
                j++;
            } else if ((c == ' ' || c == '-') && j + 1 < len && is_digit((unsigned char)t[j + 1]) &&
                       (sep == 0 || sep == (char)c)) {
                sep = (char)c;
                j++;
            } else {
                break;
            }
        }
        size_t end = j;
        bool bounded = end >= len || !is_alnum((unsigned char)t[end]);
        if (end < len && is_digit((unsigned char)t[end]))
            bounded = false;
        if (bounded && n >= 13 && n <= 19 && guard_luhn_ok(d, n)) {
            const char *brand = card_brand(d, n);
            if (brand) {
                llmos_err err = add(out, GUARD_CREDIT_CARD, i, end, GUARD_HIGH, brand);
                if (err)
                    return err;
            }
        }
        i = end > i ? end - 1 : i;
    }
    return LLMOS_OK;
}

/* ---- IBANs --------------------------------------------------------------------------------- */

/* IBAN lengths by country (ISO 13616 registry, the countries most often seen). */
static const struct {
    char cc[3];
    unsigned char len;
} iban_lengths[] = {
    {"AD", 24}, {"AE", 23}, {"AT", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22}, {"BR", 29}, {"CH", 21},
    {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"EE", 20}, {"ES", 24}, {"FI", 18}, {"FR", 27},
    {"GB", 22}, {"GI", 23}, {"GR", 27}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IS", 26},
    {"IT", 27}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21},
    {"MC", 27}, {"MT", 31}, {"NL", 18}, {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PT", 25}, {"QA", 29},
    {"RO", 24}, {"RS", 22}, {"SA", 24}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"TN", 24},
    {"TR", 26}, {"UA", 29},
};

static int iban_length(const char *cc)
{
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(iban_lengths); i++)
        if (cc[0] == iban_lengths[i].cc[0] && cc[1] == iban_lengths[i].cc[1])
            return iban_lengths[i].len;
    return 0;
}

static llmos_err scan_ibans(const char *t, size_t len, guard_findings *out)
{
    for (size_t i = 0; i + 15 <= len; i++) {
        if (!is_upper((unsigned char)t[i]) || !is_upper((unsigned char)t[i + 1]) ||
            !is_digit((unsigned char)t[i + 2]) || !is_digit((unsigned char)t[i + 3]) ||
            (i > 0 && is_alnum((unsigned char)t[i - 1])))
            continue;
        int want = iban_length(t + i);
        if (!want)
            continue;
        /* collect want characters, allowing single spaces between groups */
        size_t j = i, n = 0;
        while (j < len && n < (size_t)want) {
            unsigned char c = (unsigned char)t[j];
            if (is_upper(c) || is_digit(c)) {
                n++;
                j++;
            } else if (c == ' ' && n % 4 == 0 && n > 0 && j + 1 < len &&
                       is_alnum((unsigned char)t[j + 1])) {
                j++;
            } else {
                break;
            }
        }
        if (n != (size_t)want || (j < len && is_alnum((unsigned char)t[j])))
            continue;
        if (guard_iban_ok(t + i, j - i)) {
            llmos_err err = add(out, GUARD_IBAN, i, j, GUARD_HIGH, "IBAN");
            if (err)
                return err;
            i = j - 1;
        }
    }
    return LLMOS_OK;
}

/* ---- API keys ------------------------------------------------------------------------------ */

/* Alphabets of key bodies. */
enum { A_ALNUM, A_UPNUM, A_URL, A_HEX, A_ALPHA };

static bool in_alphabet(int a, unsigned char c)
{
    switch (a) {
    case A_ALNUM: return is_alnum(c);
    case A_UPNUM: return is_upper(c) || is_digit(c);
    case A_URL: return is_alnum(c) || c == '_' || c == '-';
    case A_HEX: return is_hex(c);
    default: return is_alpha(c);
    }
}

/* One provider's format: a fixed prefix, then min..max characters of an alphabet. */
static const struct key_format {
    const char *prefix;
    int alphabet;
    unsigned short min, max;
    const char *kind;
} key_formats[] = {
    {"AKIA", A_UPNUM, 16, 16, "AWS access key id"},
    {"ASIA", A_UPNUM, 16, 16, "AWS temporary access key id"},
    {"ghp_", A_ALNUM, 36, 36, "GitHub personal access token"},
    {"gho_", A_ALNUM, 36, 36, "GitHub OAuth token"},
    {"ghu_", A_ALNUM, 36, 36, "GitHub user-to-server token"},
    {"ghs_", A_ALNUM, 36, 36, "GitHub server-to-server token"},
    {"ghr_", A_ALNUM, 36, 36, "GitHub refresh token"},
    {"github_pat_", A_URL, 82, 82, "GitHub fine-grained token"},
    {"glpat-", A_URL, 20, 20, "GitLab personal access token"},
    {"sk-ant-", A_URL, 80, 120, "Anthropic API key"},
    {"sk-proj-", A_URL, 40, 200, "OpenAI project key"},
    {"sk-", A_ALNUM, 48, 48, "OpenAI API key"},
    {"xoxb-", A_URL, 20, 120, "Slack bot token"},
    {"xoxp-", A_URL, 20, 120, "Slack user token"},
    {"xoxa-", A_URL, 20, 120, "Slack app token"},
    {"xoxs-", A_URL, 20, 120, "Slack session token"},
    {"sk_live_", A_ALNUM, 24, 99, "Stripe secret key"},
    {"rk_live_", A_ALNUM, 24, 99, "Stripe restricted key"},
    {"sk_test_", A_ALNUM, 24, 99, "Stripe test secret key"},
    {"AIza", A_URL, 35, 35, "Google API key"},
    {"hf_", A_ALPHA, 34, 34, "Hugging Face token"},
    {"SG.", A_URL, 22, 22, "SendGrid key (first part)"},
    {"npm_", A_ALNUM, 36, 36, "npm token"},
    {"llmos-", A_URL, 43, 43, "llmos API key"},
};

/* A JWT: three base64url parts, the first two starting with eyJ ('{"'). */
static size_t jwt_at(const char *t, size_t len, size_t i)
{
    size_t j = i;
    for (int part = 0; part < 3; part++) {
        if (part < 2 && !at(t, len, j, "eyJ"))
            return 0;
        size_t s = j;
        while (j < len && in_alphabet(A_URL, (unsigned char)t[j]))
            j++;
        if (j - s < (part == 2 ? 16 : 10))
            return 0;
        if (part < 2) {
            if (j >= len || t[j] != '.')
                return 0;
            j++;
        }
    }
    return j - i;
}

static llmos_err scan_keys(const char *t, size_t len, guard_findings *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c0 = (unsigned char)t[i];
        if (!is_alpha(c0) ||
            (i > 0 && (is_alnum((unsigned char)t[i - 1]) || t[i - 1] == '_' || t[i - 1] == '-')))
            continue;
        size_t jwt = c0 == 'e' ? jwt_at(t, len, i) : 0;
        if (jwt) {
            llmos_err err = add(out, GUARD_API_KEY, i, i + jwt, GUARD_HIGH, "JSON Web Token");
            if (err)
                return err;
            i += jwt - 1;
            continue;
        }
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(key_formats); k++) {
            const struct key_format *f = &key_formats[k];
            if (t[i] != f->prefix[0] || !at(t, len, i, f->prefix))
                continue;
            size_t s = i + strlen(f->prefix), j = s;
            while (j < len && in_alphabet(f->alphabet, (unsigned char)t[j]) && j - s <= f->max)
                j++;
            size_t n = j - s;
            /* the key must end there: not followed by more of a token */
            bool ended = j >= len || !(is_alnum((unsigned char)t[j]) || t[j] == '_' || t[j] == '-');
            if (n < f->min || n > f->max || !ended)
                continue;
            /* a real key mixes letters and digits (a body of one letter repeated is an example) */
            int digits = 0, letters = 0;
            for (size_t q = s; q < j; q++)
                digits += is_digit((unsigned char)t[q]), letters += is_alpha((unsigned char)t[q]);
            if (f->alphabet != A_ALPHA && (digits == 0 || letters == 0))
                continue;
            if (guard_entropy(t + s, n) < 3.0)
                continue;
            llmos_err err = add(out, GUARD_API_KEY, i, j, GUARD_CRITICAL, f->kind);
            if (err)
                return err;
            i = j - 1;
            break;
        }
    }
    return LLMOS_OK;
}

/* ---- PEM private keys ----------------------------------------------------------------------- */

static llmos_err scan_pem(const char *t, size_t len, guard_findings *out)
{
    static const char begin[] = "-----BEGIN ";
    for (size_t i = 0; i + sizeof begin < len; i++) {
        if (t[i] != '-' || !at(t, len, i, begin))
            continue;
        /* "-----BEGIN [RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP ]PRIVATE KEY[ BLOCK]-----" */
        size_t j = i + sizeof begin - 1, e = j;
        while (e < len && e - j < 40 && (is_upper((unsigned char)t[e]) || t[e] == ' '))
            e++;
        /* "... PRIVATE KEY-----", or PGP's "... PRIVATE KEY BLOCK-----" */
        bool label = e - j >= 11 && memcmp(t + e - 11, "PRIVATE KEY", 11) == 0;
        bool pgp = e - j >= 17 && memcmp(t + e - 17, "PRIVATE KEY BLOCK", 17) == 0;
        if (!at(t, len, e, "-----") || !(label || pgp))
            continue;
        /* the block runs to its END line, or to the end of the text when cut */
        size_t end = len;
        for (size_t k = e + 5; k + 9 <= len; k++)
            if (at(t, len, k, "-----END ")) {
                size_t m = k + 9;
                while (m < len && m - k < 60 && t[m] != '\n')
                    m++;
                end = m;
                while (end > k && is_space((unsigned char)t[end - 1]))
                    end--;
                break;
            }
        llmos_err err = add(out, GUARD_PRIVATE_KEY, i, end, GUARD_CRITICAL, "PEM private key");
        if (err)
            return err;
        i = end - 1;
    }
    return LLMOS_OK;
}

/* ---- high-entropy tokens ------------------------------------------------------------------- */

/* Does a token look random? Long enough, letters and digits mixed, and an empirical entropy
 * near what a random string of its length and alphabet would show. Words, identifiers and
 * paths fall below: their letters repeat and their case follows words. */
static bool looks_random(const char *s, size_t n)
{
    if (n < 20)
        return false;
    int up = 0, lo = 0, dg = 0, other = 0, hexonly = 1, runs = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        up += is_upper(c), lo += is_lower(c), dg += is_digit(c);
        other += !is_alnum(c);
        if (!is_digit(c) && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F'))
            hexonly = 0;
        /* case and class changes: identifiers change rarely, random strings often */
        if (i > 0) {
            unsigned char p = (unsigned char)s[i - 1];
            int cp = is_upper(p) ? 0 : is_lower(p) ? 1 : is_digit(p) ? 2 : 3;
            int cc = is_upper(c) ? 0 : is_lower(c) ? 1 : is_digit(c) ? 2 : 3;
            runs += cp != cc;
        }
    }
    if (dg < 2 || (up + lo) < 2)
        return false;
    /* words joined by '-' or '_' ("ISO-8859-1-compatible", "x86_64-linux-gnu"): each part all
     * letters or all digits, three parts or more */
    int parts = 1, pure = 1;
    bool alpha_part = true, digit_part = true;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = i < n ? (unsigned char)s[i] : '-';
        if (c == '-' || c == '_') {
            pure &= alpha_part || digit_part;
            if (i < n)
                parts++;
            alpha_part = digit_part = true;
        } else {
            alpha_part = alpha_part && is_alpha(c);
            digit_part = digit_part && is_digit(c);
        }
    }
    if (parts >= 3 && pure)
        return false;
    if ((size_t)other * 4 > n)
        return false;
    double h = guard_entropy(s, n);
    double cap = log2((double)(n < 62 ? n : 62));
    if (hexonly && n >= 32)
        return h >= 3.3;
    if (hexonly)
        return false;
    int classes = (up > 0) + (lo > 0) + (dg > 0);
    if (classes < 3 && n < 32)
        return false;
    return h >= 0.82 * cap && (double)runs >= 0.25 * (double)n;
}

static llmos_err scan_entropy(const char *t, size_t len, guard_findings *out)
{
    for (size_t i = 0; i < len;) {
        if (!is_token((unsigned char)t[i])) {
            i++;
            continue;
        }
        /* a token: the alphabet of keys, '=' only as base64's padding at its end (so that
         * "NAME=value" is two tokens) */
        size_t j = i;
        while (j < len && is_token((unsigned char)t[j]) && t[j] != '=')
            j++;
        if (j == i) {
            i++;
            continue;
        }
        while (j < len && t[j] == '=' && (j + 1 >= len || !is_alnum((unsigned char)t[j + 1])))
            j++;
        /* trim what surrounds tokens in prose and URLs */
        size_t s = i, e = j;
        while (s < e && (t[s] == '/' || t[s] == '-' || t[s] == '+' || t[s] == '='))
            s++;
        while (e > s && (t[e - 1] == '/' || t[e - 1] == '-' || t[e - 1] == '+'))
            e--;
        /* not part of a URL's host or an e-mail address, not a path */
        bool in_url = (s >= 3 && memcmp(t + s - 3, "://", 3) == 0) || (j < len && t[j] == '@');
        bool path = memchr(t + s, '/', e - s) != NULL && guard_entropy(t + s, e - s) < 4.5;
        if (!in_url && !path && e - s <= 512 && looks_random(t + s, e - s)) {
            llmos_err err = add(out, GUARD_HIGH_ENTROPY, s, e, GUARD_MEDIUM, "high-entropy token");
            if (err)
                return err;
        }
        i = j;
    }
    return LLMOS_OK;
}

/* ---- e-mail --------------------------------------------------------------------------------- */

static bool email_local(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}

static bool email_domain(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '-';
}

/* local@domain.tld: a local part of the usual characters (not starting or ending with a dot), a
 * domain of at least two labels, the last all letters, 2 to 24 of them. */
static size_t email_span(const char *t, size_t len, size_t at_pos, size_t *start)
{
    size_t s = at_pos;
    while (s > 0 && email_local((unsigned char)t[s - 1]) && at_pos - s < 64)
        s--;
    while (s < at_pos && (t[s] == '.' || t[s] == '-'))
        s++;
    if (s == at_pos || t[at_pos - 1] == '.' || (s > 0 && t[s - 1] == '@'))
        return 0;
    size_t e = at_pos + 1;
    while (e < len && email_domain((unsigned char)t[e]) && e - at_pos < 255)
        e++;
    while (e > at_pos + 1 && (t[e - 1] == '.' || t[e - 1] == '-'))
        e--;
    /* labels: nonempty, no leading or trailing hyphen; at least two; the last all letters */
    size_t labels = 0, lab = at_pos + 1, tld_len = 0;
    bool tld_alpha = true;
    for (size_t k = at_pos + 1; k <= e; k++) {
        if (k == e || t[k] == '.') {
            if (k == lab || t[lab] == '-' || t[k - 1] == '-')
                return 0;
            labels++;
            tld_len = k - lab;
            tld_alpha = true;
            for (size_t q = lab; q < k; q++)
                tld_alpha = tld_alpha && is_alpha((unsigned char)t[q]);
            lab = k + 1;
        }
    }
    if (labels < 2 || !tld_alpha || tld_len < 2 || tld_len > 24)
        return 0;
    *start = s;
    return e;
}

static llmos_err scan_emails(const char *t, size_t len, guard_findings *out)
{
    for (const char *p = memchr(t, '@', len); p;
         p = memchr(p + 1, '@', len - (size_t)(p + 1 - t))) {
        size_t a = (size_t)(p - t), s = 0;
        if (a == 0 || a + 1 >= len)
            continue;
        size_t e = email_span(t, len, a, &s);
        if (e) {
            llmos_err err = add(out, GUARD_EMAIL, s, e, GUARD_MEDIUM, "e-mail address");
            if (err)
                return err;
        }
        if (a + 1 >= len)
            break;
    }
    return LLMOS_OK;
}

/* ---- phone numbers -------------------------------------------------------------------------- */

/* A phone number is either international (+, then 8 to 15 digits in groups separated by single
 * spaces, dashes, dots or a parenthesised area code) or a national number in a grouping phones
 * are written in: (ddd) ddd-dddd, ddd-ddd-dddd, ddd.ddd.dddd, ddd ddd dddd, or a trunk prefix 0
 * followed by 9 or 10 more digits in groups. Dates, versions, IP addresses and long plain runs
 * of digits do not fit. */
static llmos_err scan_phones(const char *t, size_t len, guard_findings *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!(c == '+' || c == '(' || is_digit(c)))
            continue;
        if (i > 0 && (is_alnum((unsigned char)t[i - 1]) || t[i - 1] == '+' || t[i - 1] == '.' ||
                      t[i - 1] == '-' || t[i - 1] == '/' || t[i - 1] == ':' || t[i - 1] == '$' ||
                      t[i - 1] == '#'))
            continue;
        /* '+' or the international call prefix 00 followed by a space-separated country code */
        bool intl = c == '+' || (c == '0' && i + 2 < len && t[i + 1] == '0' &&
                                 is_digit((unsigned char)t[i + 2]) && t[i + 2] != '0');
        size_t j = i + (c == '+' ? 1 : intl ? 2 : 0);
        int digits = 0, groups = 0, glen[8] = {0};
        char sep = 0;
        bool paren = false, mixed = false;
        while (j < len && groups < 8) {
            unsigned char d = (unsigned char)t[j];
            if (d == '(' && !paren && (glen[groups] == 0)) {
                size_t k = j + 1, n = 0;
                while (k < len && is_digit((unsigned char)t[k]))
                    k++, n++;
                if (k >= len || t[k] != ')' || n < 1 || n > 4)
                    break;
                paren = true;
                digits += (int)n;
                glen[groups++] = (int)n;
                j = k + 1;
                if (j < len && t[j] == ' ')
                    j++;
                continue;
            }
            if (is_digit(d)) {
                size_t k = j;
                while (k < len && is_digit((unsigned char)t[k]))
                    k++;
                glen[groups++] = (int)(k - j);
                digits += (int)(k - j);
                j = k;
                if (j + 1 < len && (t[j] == ' ' || t[j] == '-' || t[j] == '.') &&
                    (is_digit((unsigned char)t[j + 1]) || t[j + 1] == '(')) {
                    if (sep && sep != t[j])
                        mixed = true;
                    sep = t[j];
                    j++;
                    continue;
                }
                break;
            }
            break;
        }
        size_t end = j;
        while (end > i && !is_digit((unsigned char)t[end - 1]))
            end--;
        if (end <= i || (end < len && (is_alnum((unsigned char)t[end]) || t[end] == '@')))
            continue;
        bool ok = false;
        if (intl) {
            ok = digits >= 8 && digits <= 15 && glen[0] <= 4 &&
                 !(sep == '.' && !paren && groups == 4);
            if (groups == 1)
                ok = ok && digits >= 10;
        } else if (paren && groups >= 3 && glen[0] == 3 && digits == 10) {
            ok = glen[1] == 3 && glen[2] == 4 && groups == 3;
        } else if (!paren && groups == 3 && glen[0] == 3 && glen[1] == 3 && glen[2] == 4 &&
                   sep != 0 && !mixed) {
            ok = true;
        } else if (!paren && t[i] == '0' && groups >= 2 && groups <= 4 &&
                   (digits == 10 || digits == 11) && sep != 0 && sep != '.' && !mixed &&
                   glen[0] >= 3 && glen[0] <= 5) {
            ok = true;
        }
        if (ok) {
            llmos_err err = add(out, GUARD_PHONE, i, end, GUARD_MEDIUM, "phone number");
            if (err)
                return err;
            i = end - 1;
        } else if (j > i + 1) {
            i = j - 1;
        }
    }
    return LLMOS_OK;
}

/* ---- exfiltration URLs --------------------------------------------------------------------- */

static bool host_allowed(const char *h, size_t n, const char *const *allow, size_t n_allow)
{
    for (size_t k = 0; k < n_allow; k++) {
        size_t m = strlen(allow[k]);
        if (m == 0 || m > n)
            continue;
        /* the host itself or a subdomain of it, case-insensitively */
        bool tail = true;
        for (size_t q = 0; q < m && tail; q++) {
            unsigned char a = (unsigned char)h[n - m + q], b = (unsigned char)allow[k][q];
            if (is_upper(a))
                a = (unsigned char)(a - 'A' + 'a');
            if (is_upper(b))
                b = (unsigned char)(b - 'A' + 'a');
            tail = a == b;
        }
        if (tail && (m == n || h[n - m - 1] == '.'))
            return true;
    }
    return false;
}

static bool url_char(unsigned char c)
{
    return c > 0x20 && c < 0x7F && c != '"' && c != '<' && c != '>' && c != ')' && c != ']' &&
           c != '`' && c != '\'';
}

/* Does one part of a URL (a query value, a path segment) carry data? Long and random-looking,
 * encoded (base64, hex, percent-escapes), or a secret or personal datum by another detector. */
static bool carries_data(const char *s, size_t n)
{
    if (n < 12)
        return false;
    int pct = 0, alnum = 0, dg = 0, words = 0;
    for (size_t i = 0; i < n; i++) {
        pct += s[i] == '%';
        alnum += is_alnum((unsigned char)s[i]);
        dg += is_digit((unsigned char)s[i]);
        words += s[i] == '-' || s[i] == '_' || s[i] == '+';
    }
    if (pct >= 3)
        return true;
    /* words joined by hyphens or underscores read as a slug, not data */
    if (words > 0 && (double)n / (double)(words + 1) < 10.0 && dg * 4 < (int)n)
        return false;
    if (n >= 16 && (double)alnum >= 0.8 * (double)n &&
        (guard_entropy(s, n) >= 3.6 || (dg >= 4 && n >= 20)))
        return true;
    /* percent-escapes decoded ("bob%40corp.com"), then the other detectors */
    char d[512] = {0};
    size_t m = 0;
    for (size_t i = 0; i < n && m < sizeof d; i++) {
        if (s[i] == '%' && i + 2 < n && is_hex((unsigned char)s[i + 1]) &&
            is_hex((unsigned char)s[i + 2])) {
            unsigned v = 0;
            for (int k = 1; k <= 2; k++) {
                unsigned char c = (unsigned char)s[i + k];
                v = v * 16 + (unsigned)(is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10);
            }
            d[m++] = (char)v;
            i += 2;
        } else {
            d[m++] = s[i] == '+' ? ' ' : s[i];
        }
    }
    guard_findings f = {0};
    bool hit = false;
    if (scan_emails(d, m, &f) == LLMOS_OK && scan_cards(d, m, &f) == LLMOS_OK &&
        scan_keys(d, m, &f) == LLMOS_OK && scan_ibans(d, m, &f) == LLMOS_OK &&
        scan_phones(d, m, &f) == LLMOS_OK)
        hit = f.n > 0;
    guard_findings_free(&f);
    return hit;
}

static llmos_err scan_urls(const char *t, size_t len, const char *const *allow, size_t n_allow,
                           guard_findings *out)
{
    for (size_t i = 0; i + 8 < len; i++) {
        size_t skip;
        if ((t[i] | 0x20) != 'h')
            continue;
        if (at_nocase(t, len, i, "https://"))
            skip = 8;
        else if (at_nocase(t, len, i, "http://"))
            skip = 7;
        else
            continue;
        /* how the URL is written: a markdown image ![..](URL), a link [..](URL), an HTML src= or
         * href=, or bare */
        bool image = false, link = false;
        if (i >= 2 && t[i - 1] == '(' && t[i - 2] == ']') {
            size_t k = i - 2;
            while (k > 0 && t[k] != '[' && i - k < 2000)
                k--;
            link = t[k] == '[';
            image = link && k > 0 && t[k - 1] == '!';
        } else if (i >= 5 &&
                   (at_nocase(t, len, i - 5, "src=\"") || at_nocase(t, len, i - 5, "src='"))) {
            image = true;
        }
        size_t h = i + skip, he = h;
        while (he < len && (is_alnum((unsigned char)t[he]) || t[he] == '.' || t[he] == '-'))
            he++;
        size_t e = he;
        while (e < len && url_char((unsigned char)t[e]))
            e++;
        while (e > he && (t[e - 1] == '.' || t[e - 1] == ',' || t[e - 1] == ';' || t[e - 1] == ':'))
            e--;
        if (he == h || host_allowed(t + h, he - h, allow, n_allow)) {
            i = e > i ? e - 1 : i;
            continue;
        }
        /* the parts after the host: path segments, then query values and the fragment */
        bool data = false;
        bool query = false;
        for (size_t p = he; p < e && !data;) {
            unsigned char c = (unsigned char)t[p];
            if (c == '?' || c == '#')
                query = true;
            if (c == '/' || c == '?' || c == '&' || c == '=' || c == '#' || c == ';') {
                p++;
                continue;
            }
            size_t q = p;
            while (q < e && t[q] != '/' && t[q] != '?' && t[q] != '&' && t[q] != '=' &&
                   t[q] != '#' && t[q] != ';')
                q++;
            data = carries_data(t + p, q - p);
            p = q;
        }
        /* an image fetched automatically with any query at all is the classic channel */
        if (image && query)
            data = true;
        if (data) {
            llmos_err err = add(out, GUARD_EXFIL_URL, i, e,
                                image ? GUARD_HIGH : GUARD_MEDIUM,
                                image  ? "image URL carrying data to a host not allowed"
                                : link ? "link carrying data to a host not allowed"
                                       : "URL carrying data to a host not allowed");
            if (err)
                return err;
        }
        i = e > i ? e - 1 : i;
    }
    return LLMOS_OK;
}

/* ---- vulnerable code ---------------------------------------------------------------------- */

/* The call name at t[i] as a whole identifier followed by optional spaces and '(' : the index
 * just after '(' or 0. */
static size_t call_at(const char *t, size_t len, size_t i, const char *name)
{
    if (t[i] != name[0] || !at(t, len, i, name) ||
        (i > 0 && (is_ident((unsigned char)t[i - 1]) || t[i - 1] == '.')))
        return 0;
    size_t j = i + strlen(name);
    if (j < len && is_ident((unsigned char)t[j]))
        return 0;
    if (j < len && t[j] == '(')
        return j + 1;
    return 0;
}

/* The same for a method or module call ("os.system(", "subprocess.run("): the name may follow
 * a dot. */
static size_t dotted_call_at(const char *t, size_t len, size_t i, const char *name)
{
    if (t[i] != name[0] || !at(t, len, i, name) || (i > 0 && is_ident((unsigned char)t[i - 1])))
        return 0;
    size_t j = i + strlen(name);
    return j < len && t[j] == '(' ? j + 1 : 0;
}

/* The end of the argument list that starts at t[i] (just after '('): the index of the matching
 * ')' (strings skipped), or len. */
static size_t args_end(const char *t, size_t len, size_t i)
{
    int depth = 1;
    char quote = 0;
    for (size_t j = i; j < len; j++) {
        char c = t[j];
        if (quote) {
            if (c == '\\')
                j++;
            else if (c == quote)
                quote = 0;
            continue;
        }
        if (c == '"' || c == '\'')
            quote = c;
        else if (c == '(')
            depth++;
        else if (c == ')' && --depth == 0)
            return j;
        else if (c == '\n' && j + 1 < len && t[j + 1] == '\n')
            return j;
    }
    return len;
}

/* Is the first argument in t[s..e) a plain string literal with nothing joined to it (no f-string,
 * no +, no % or .format)? Then it carries no input. */
static bool first_arg_literal(const char *t, size_t s, size_t e)
{
    while (s < e && is_space((unsigned char)t[s]))
        s++;
    if (s >= e)
        return true;
    if (t[s] == 'r' || t[s] == 'b')
        s++;
    if (s >= e || (t[s] != '"' && t[s] != '\''))
        return false;
    char q = t[s];
    size_t j = s + 1;
    while (j < e && t[j] != q) {
        if (t[j] == '\\')
            j++;
        j++;
    }
    if (j >= e)
        return false;
    j++;
    while (j < e && is_space((unsigned char)t[j]))
        j++;
    return j >= e || t[j] == ',' || t[j] == ')';
}

static bool contains(const char *t, size_t s, size_t e, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t k = s; k + n <= e; k++)
        if (memcmp(t + k, needle, n) == 0)
            return true;
    return false;
}

static bool contains_nocase(const char *t, size_t s, size_t e, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t k = s; k + n <= e; k++)
        if (at_nocase(t, e, k, needle))
            return true;
    return false;
}

/* SQL statement words, at the start of a string. */
static bool sql_start(const char *t, size_t len, size_t i)
{
    static const char *const words[] = {"select ",      "insert into ", "update ",
                                        "delete from ", "drop table ",  "replace into "};
    for (size_t k = 0; k < LLMOS_ARRAY_LEN(words); k++)
        if (at_nocase(t, len, i, words[k]))
            return true;
    return false;
}

/* A string literal holding SQL that is built from input: "SELECT ... '" + x, f"SELECT {x}",
 * "SELECT ... %s" % x, "SELECT ... {}".format(x), `SELECT ${x}`. Parameterised queries
 * (execute("... ?", (x,)) or "... %s", (x,)) are not. */
static llmos_err scan_sql(const char *t, size_t len, guard_findings *out)
{
    for (size_t i = 0; i < len; i++) {
        char q = t[i];
        if (q != '"' && q != '\'' && q != '`')
            continue;
        bool fstr = i > 0 && (t[i - 1] == 'f' || t[i - 1] == 'F') &&
                    (i < 2 || !is_ident((unsigned char)t[i - 2]));
        size_t s = i + 1;
        while (s < len && t[s] == ' ')
            s++;
        if (!sql_start(t, len, s)) {
            continue;
        }
        size_t j = s;
        while (j < len && t[j] != q && t[j] != '\n')
            j++;
        if (j >= len || t[j] != q)
            continue;
        /* a statement, not prose: SELECT ... FROM, UPDATE ... SET */
        bool structured = true;
        if (at_nocase(t, len, s, "select "))
            structured = contains_nocase(t, s, j, " from ");
        else if (at_nocase(t, len, s, "update "))
            structured = contains_nocase(t, s, j, " set ");
        if (!structured) {
            i = j;
            continue;
        }
        size_t after = j + 1;
        while (after < len && t[after] == ' ')
            after++;
        bool built = false;
        if (fstr && contains(t, s, j, "{"))
            built = true;
        if (q == '`' && contains(t, s, j, "${"))
            built = true;
        if (after < len &&
            (t[after] == '+' || (t[after] == '%' && after + 1 < len && t[after + 1] != '%')))
            built = true;
        if (at(t, len, j + 1, ".format("))
            built = true;
        /* PHP and Perl join strings with '.' */
        if (after < len && t[after] == '.' && after + 1 < len &&
            (t[after + 1] == ' ' || t[after + 1] == '$'))
            built = true;
        /* ... + "SELECT": the string is the tail of a concatenation */
        size_t b = i;
        while (b > 0 && t[b - 1] == ' ')
            b--;
        if (b > 0 && t[b - 1] == '+' && !fstr)
            built = true;
        if (built) {
            size_t e = after < len && t[after] == '+' ? after + 1 : j + 1;
            while (e < len && t[e] != '\n' && t[e] != ';' && t[e] != ')')
                e++;
            llmos_err err = add(out, GUARD_VULN_SQL, i, e, GUARD_HIGH,
                                "SQL built from input by concatenation or formatting");
            if (err)
                return err;
        }
        i = j;
    }
    return LLMOS_OK;
}

static llmos_err scan_code(const char *t, size_t len, guard_findings *out)
{
    static const struct {
        const char *name;
        const char *kind;
    } c_calls[] = {
        {"strcpy", "strcpy: unbounded copy"},       {"strcat", "strcat: unbounded append"},
        {"gets", "gets: unbounded read"},           {"sprintf", "sprintf: unbounded format"},
        {"vsprintf", "vsprintf: unbounded format"}, {"wcscpy", "wcscpy: unbounded copy"},
    };
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; i < len && !err; i++) {
        unsigned char c = (unsigned char)t[i];
        /* every pattern starts an identifier */
        if ((!is_alpha(c) && c != '$') || (i > 0 && is_ident((unsigned char)t[i - 1])))
            continue;
        size_t a;
        /* C */
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(c_calls); k++) {
            if ((a = call_at(t, len, i, c_calls[k].name))) {
                size_t e = args_end(t, len, a);
                /* a call with an argument, not the name in prose ("gets()" alone is code too) */
                if (e < len && (e > a || strcmp(c_calls[k].name, "gets") != 0))
                    err = add(out, GUARD_VULN_C, i, e + 1, GUARD_HIGH, c_calls[k].kind);
                break;
            }
        }
        if ((a = call_at(t, len, i, "scanf")) && at(t, len, a, "\"%s")) {
            size_t e = args_end(t, len, a);
            err = add(out, GUARD_VULN_C, i, e < len ? e + 1 : len, GUARD_HIGH,
                      "scanf %s: unbounded read");
        }
        /* Python */
        static const char *const sub[] = {"subprocess.run",        "subprocess.call",
                                          "subprocess.Popen",      "subprocess.check_output",
                                          "subprocess.check_call", "subprocess.getoutput"};
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(sub) && !err; k++) {
            if ((a = dotted_call_at(t, len, i, sub[k]))) {
                size_t e = args_end(t, len, a);
                bool shell = contains(t, a, e, "shell=True") || contains(t, a, e, "shell = True") ||
                             strcmp(sub[k], "subprocess.getoutput") == 0;
                if (shell && !first_arg_literal(t, a, e))
                    err = add(out, GUARD_VULN_PYTHON, i, e < len ? e + 1 : len, GUARD_HIGH,
                              "subprocess with shell=True on input");
            }
        }
        if (!err && ((a = dotted_call_at(t, len, i, "os.system")) ||
                     (a = dotted_call_at(t, len, i, "os.popen")))) {
            size_t e = args_end(t, len, a);
            if (!first_arg_literal(t, a, e))
                err = add(out, GUARD_VULN_PYTHON, i, e < len ? e + 1 : len, GUARD_HIGH,
                          "os.system on input");
        }
        if (!err && ((a = call_at(t, len, i, "eval")) || (a = call_at(t, len, i, "exec")))) {
            size_t e = args_end(t, len, a);
            if (e < len && e > a && !first_arg_literal(t, a, e))
                err = add(out, GUARD_VULN_PYTHON, i, e + 1, GUARD_HIGH, "eval/exec of input");
        }
        if (!err && ((a = dotted_call_at(t, len, i, "pickle.loads")) ||
                     (a = dotted_call_at(t, len, i, "pickle.load")))) {
            size_t e = args_end(t, len, a);
            err = add(out, GUARD_VULN_PYTHON, i, e < len ? e + 1 : len, GUARD_MEDIUM,
                      "pickle of untrusted bytes");
        }
        if (!err && (a = dotted_call_at(t, len, i, "yaml.load"))) {
            size_t e = args_end(t, len, a);
            if (!contains(t, a, e, "Loader=yaml.SafeLoader") && !contains(t, a, e, "SafeLoader"))
                err = add(out, GUARD_VULN_PYTHON, i, e < len ? e + 1 : len, GUARD_MEDIUM,
                          "yaml.load without SafeLoader");
        }
        /* shell: eval of a variable, sh -c of a variable */
        if (!err && at(t, len, i, "eval ") && (i == 0 || !is_ident((unsigned char)t[i - 1]))) {
            size_t j = i + 5;
            while (j < len && t[j] == ' ')
                j++;
            if (j < len &&
                (t[j] == '$' || (t[j] == '"' && j + 1 < len && t[j + 1] == '$') || t[j] == '`')) {
                size_t e = j;
                while (e < len && t[e] != '\n')
                    e++;
                err = add(out, GUARD_VULN_SHELL, i, e, GUARD_HIGH, "shell eval of a variable");
            }
        }
        if (!err && (at(t, len, i, "sh -c ") || at(t, len, i, "bash -c ")) &&
            (i == 0 || !is_ident((unsigned char)t[i - 1]))) {
            size_t j = i + (t[i] == 'b' ? 8 : 6);
            if (j < len && (t[j] == '$' || (t[j] == '"' && j + 1 < len && t[j + 1] == '$'))) {
                size_t e = j;
                while (e < len && t[e] != '\n')
                    e++;
                err = add(out, GUARD_VULN_SHELL, i, e, GUARD_HIGH, "sh -c of a variable");
            }
        }
    }
    return err ? err : scan_sql(t, len, out);
}

/* ---- all together -------------------------------------------------------------------------- */

/* Is offset `at` inside a PEM block (after a "-----BEGIN " line, before its "-----END ")? */
static bool in_pem_block(const char *t, size_t len, size_t at)
{
    size_t begin = 0;
    bool found = false;
    for (size_t i = at; i-- > 0 && at - i < 16384;)
        if (t[i] == '-' && at_nocase(t, len, i, "-----begin ")) {
            begin = i;
            found = true;
            break;
        } else if (t[i] == '-' && at_nocase(t, len, i, "-----end ")) {
            return false;
        }
    return found && begin < at;
}

static int by_start(const void *a, const void *b)
{
    const guard_finding *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    if (x->end != y->end)
        return x->end > y->end ? -1 : 1;
    return (int)x->detector - (int)y->detector;
}

/* Is x inside a finding of a more specific detector (a key is high-entropy too; a card number
 * may sit inside an IBAN, an e-mail inside an exfiltration URL is reported as the URL too)? Then
 * it is not reported twice. */
static bool covered(const guard_finding *v, size_t n, const guard_finding *x)
{
    if (x->detector != GUARD_HIGH_ENTROPY && x->detector != GUARD_PHONE &&
        x->detector != GUARD_CREDIT_CARD)
        return false;
    for (size_t k = 0; k < n; k++) {
        const guard_finding *y = &v[k];
        if (y == x || y->detector == x->detector || y->detector == GUARD_HIGH_ENTROPY ||
            y->detector == GUARD_PHONE ||
            (y->detector == GUARD_EXFIL_URL && x->detector != GUARD_HIGH_ENTROPY))
            continue;
        if (y->start <= x->start && y->end >= x->end)
            return true;
    }
    return false;
}

llmos_err guard_scan(const char *text, size_t len, const char *const *allow_hosts, size_t n_hosts,
                     guard_findings *out)
{
    assert(out && (text || len == 0));
    size_t first = out->n;
    llmos_err err = scan_pem(text, len, out);
    if (!err)
        err = scan_keys(text, len, out);
    if (!err)
        err = scan_cards(text, len, out);
    if (!err)
        err = scan_ibans(text, len, out);
    if (!err)
        err = scan_entropy(text, len, out);
    if (!err)
        err = scan_emails(text, len, out);
    if (!err)
        err = scan_phones(text, len, out);
    if (!err)
        err = scan_urls(text, len, allow_hosts, n_hosts, out);
    if (!err)
        err = scan_code(text, len, out);
    if (err)
        return err;
    /* drop findings covered by a more specific one (decided first, then compacted), and
     * high-entropy tokens inside any PEM block (certificates and public keys are base64 too;
     * private keys are the private_key detector's) */
    size_t n = out->n - first;
    bool *drop = calloc(n + 1, sizeof *drop);
    if (!drop)
        return llmos_fail(LLMOS_ERR_NOMEM, "guard: no memory");
    for (size_t k = 0; k < n; k++) {
        const guard_finding *x = &out->v[first + k];
        drop[k] = covered(out->v + first, n, x) ||
                  (x->detector == GUARD_HIGH_ENTROPY && in_pem_block(text, len, x->start));
    }
    size_t w = first;
    for (size_t k = 0; k < n; k++)
        if (!drop[k])
            out->v[w++] = out->v[first + k];
    free(drop);
    out->n = w;
    if (out->n > first)
        qsort(out->v + first, out->n - first, sizeof *out->v, by_start);
    return LLMOS_OK;
}
