/*
 * llmos/guard.h - the output guard: what an answer or a tool call's arguments say, checked
 * before it leaves the kernel.
 *
 * Detectors find spans of a text: secrets and personal data (payment card numbers that pass
 * Luhn, IBANs whose check digits hold, API keys of common providers, PEM private keys,
 * high-entropy tokens, e-mail addresses, phone numbers), exfiltration (markdown images and links,
 * HTML and bare URLs to hosts not on the allow list that carry data in the URL), vulnerable code
 * (C unbounded copies, Python shell=True or eval of non-literal input, SQL built by
 * concatenation or formatting, shell eval of variables), and an LLM-as-judge check that asks a
 * judge model with a Llama-Guard-style rubric. Each finding has a detector, a span (byte
 * offsets) and a severity.
 *
 * A guard policy says, per detector and per principal, what happens to a text with a finding:
 * allow (nothing), warn (audited, the text goes out), redact (the span is replaced by
 * "[REDACTED:<detector>]"), block (the text does not go out). The strongest action of all
 * findings decides. Every decision is audited by the kernel with the detector, the span and the
 * action, never the text of the finding (guard_result_json).
 *
 * Policy file: <config_dir>/guard.json beside policy.json; docs/security.md lists the defaults:
 *   {"actions": {"private_key": "block", "email": "warn", ...},
 *    "principals": {"alice": {"email": "allow"}},
 *    "allow_hosts": ["example.com"],
 *    "judge": {"enabled": false, "action": "block", "categories": "S1,S2,..."}}
 */
#ifndef LLMOS_GUARD_H
#define LLMOS_GUARD_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "llmos/backend.h"
#include "llmos/base.h"

typedef enum guard_detector {
    GUARD_CREDIT_CARD = 0, /* 13-19 digits of a known brand that pass Luhn */
    GUARD_IBAN,            /* an IBAN whose length fits its country and whose mod-97 is 1 */
    GUARD_API_KEY,         /* an API key or token of a known provider's format */
    GUARD_PRIVATE_KEY,     /* a PEM private key block */
    GUARD_HIGH_ENTROPY,    /* a long token that looks random (a secret of unknown format) */
    GUARD_EMAIL,           /* an e-mail address */
    GUARD_PHONE,           /* a phone number (international, or a grouped national one) */
    GUARD_EXFIL_URL,       /* a URL to a host not allowed, carrying data (images above all) */
    GUARD_VULN_C,          /* strcpy, strcat, gets, sprintf, vsprintf, scanf("%s") */
    GUARD_VULN_PYTHON,     /* shell=True / os.system with input, eval/exec of input, pickle */
    GUARD_VULN_SQL,        /* SQL built by concatenation or string formatting */
    GUARD_VULN_SHELL,      /* eval of a variable, sh -c of a variable */
    GUARD_JUDGE,           /* the judge model said "unsafe" (span: the whole text) */
    GUARD_DETECTOR_COUNT_
} guard_detector;

typedef enum guard_action {
    GUARD_ALLOW = 0,
    GUARD_WARN,
    GUARD_REDACT,
    GUARD_BLOCK,
} guard_action;

typedef enum guard_severity {
    GUARD_LOW = 0,
    GUARD_MEDIUM,
    GUARD_HIGH,
    GUARD_CRITICAL,
} guard_severity;

/* "credit_card", "iban", ...; NULL for a value out of range. */
LLMOS_API const char *guard_detector_name(guard_detector d);
LLMOS_API bool guard_detector_parse(const char *name, guard_detector *out);
/* "allow", "warn", "redact", "block". */
LLMOS_API const char *guard_action_name(guard_action a);
LLMOS_API bool guard_action_parse(const char *name, guard_action *out);
/* "low", "medium", "high", "critical". */
LLMOS_API const char *guard_severity_name(guard_severity s);

typedef struct guard_finding {
    guard_detector detector;
    size_t start, end; /* the span, bytes [start, end) of the text checked */
    guard_severity severity;
    const char *kind; /* what was found, static text ("Visa card number", "AWS access
                         key id", "strcpy"); never the finding's bytes */
} guard_finding;

typedef struct guard_findings {
    guard_finding *v; /* malloc'd, sorted by start */
    size_t n, cap;
} guard_findings;

LLMOS_API void guard_findings_free(guard_findings *f);

/* Run the rule detectors on text[0..len) (any bytes; spans never split a UTF-8 sequence of a
 * valid text). `allow_hosts` (n_hosts of them, may be NULL) are hosts a URL may carry data to;
 * a host matches itself and its subdomains. Findings are appended to out, sorted by start.
 * LLMOS_ERR_NOMEM only. */
LLMOS_API LLMOS_NODISCARD llmos_err guard_scan(const char *text, size_t len,
                                               const char *const *allow_hosts, size_t n_hosts,
                                               guard_findings *out);

/* Check digits, exposed for tests and the samples: Luhn over the digits of s (other bytes
 * skipped); ISO 13616 mod-97 over an IBAN's letters and digits (spaces skipped). */
LLMOS_API bool guard_luhn_ok(const char *s, size_t len);
LLMOS_API bool guard_iban_ok(const char *s, size_t len);
/* Shannon entropy of s[0..len) in bits per byte. */
LLMOS_API double guard_entropy(const char *s, size_t len);

/* ---- the judge ---------------------------------------------------------------------------- */
/* A Llama-Guard-style verdict: "safe", or "unsafe" and a line of categories "S1,S2". */
typedef struct guard_verdict {
    bool unsafe;
    uint32_t categories; /* bit i-1 for Si (S1..S14) */
} guard_verdict;

/* Parse a judge's answer strictly: "safe" or "unsafe\nS<n>(,S<n>)*", surrounding white space
 * allowed, nothing else (LLMOS_ERR_FORMAT saying what was found instead, never quoting more
 * than a few bytes of it). */
LLMOS_API LLMOS_NODISCARD llmos_err guard_verdict_parse(const char *text, size_t len,
                                                        guard_verdict *out);

/* The rubric: the categories S1..S14 a judge is asked about (Llama Guard 3's taxonomy). */
LLMOS_API const char *guard_judge_category(int i);

/* Ask `judge` (a quarantined backend: no tools, a context of its own) whether text is safe. The
 * text is untrusted: it goes into the judge's own context as the content to classify, framed by
 * the rubric, and nothing of it flows back but the parsed verdict. `categories` limits which
 * S-categories count (0 = all). A malformed verdict is LLMOS_ERR_FORMAT (the caller decides
 * whether that fails open or closed; the kernel treats it as unsafe). */
LLMOS_API LLMOS_NODISCARD llmos_err guard_judge(llm_backend *judge, const char *text, size_t len,
                                                int32_t max_tokens, guard_verdict *out);

/* ---- policy and decisions ----------------------------------------------------------------- */
typedef struct guard guard;

/* The built-in policy (docs/security.md): block private keys; redact card numbers, IBANs, API
 * keys and exfiltration URLs; warn for high-entropy tokens, e-mail, phone numbers and
 * vulnerable code; the judge off. */
LLMOS_API LLMOS_NODISCARD llmos_err guard_default(guard **out);
/* Parse a guard policy (JSON text); LLMOS_ERR_FORMAT naming the bad member. Detectors not named
 * keep the built-in action. */
LLMOS_API LLMOS_NODISCARD llmos_err guard_parse(const char *text, size_t len, const char *what,
                                                guard **out);
/* <config_dir>/guard.json when it exists, else the built-in policy. */
LLMOS_API LLMOS_NODISCARD llmos_err guard_load(const char *config_dir, guard **out);
LLMOS_API void guard_free(guard *g);
/* The action for detector d and principal (NULL: the defaults). */
LLMOS_API guard_action guard_action_for(const guard *g, const char *principal, guard_detector d);
/* Turn the judge on (with that backend, borrowed) or off (NULL). */
LLMOS_API void guard_set_judge(guard *g, llm_backend *judge);
/* Does the policy ask for the judge ("judge": {"enabled": true})? */
LLMOS_API bool guard_judge_requested(const guard *g);
LLMOS_API bool guard_judge_enabled(const guard *g);

typedef struct guard_result {
    guard_action action;     /* the strongest action of all findings (ALLOW when none) */
    guard_findings findings; /* every finding, with its action in actions[i] */
    guard_action *actions;   /* malloc'd, findings.n entries */
    char *text;              /* malloc'd: the text as it may leave (redacted spans replaced);
                                NULL when action is BLOCK */
    size_t len;
    bool judge_failed; /* the judge's verdict was malformed or its call failed */
} guard_result;

LLMOS_API void guard_result_free(guard_result *r);

/* Check text[0..len) for principal under g: rule detectors, then the judge when it is on and no
 * finding blocks already. LLMOS_ERR_NOMEM, or LLMOS_ERR_CANCELLED from the judge. */
LLMOS_API LLMOS_NODISCARD llmos_err guard_check(const guard *g, const char *principal,
                                                const char *text, size_t len, guard_result *out);

/* text[0..len) with the spans of every secret and personal-data finding (cards, IBANs, keys,
 * private keys, high-entropy tokens, e-mail, phone numbers) replaced by "[REDACTED:<detector>]",
 * whatever the policy's action: for records that must not keep them (the audit log). *out
 * malloc'd; LLMOS_ERR_NOMEM only. */
LLMOS_API LLMOS_NODISCARD llmos_err guard_mask_secrets(const char *text, size_t len, char **out);

/* The decision as JSON for the audit log and `llmos guard check --json`: {"action", "findings":
 * [{"detector", "kind", "start", "end", "severity", "action"}]}; never the text. New reference. */
LLMOS_API json_t *guard_result_json(const guard_result *r);

/* ---- streaming ---------------------------------------------------------------------------- */
/* A stream of text (an answer as it is generated) checked as it goes. Text is held back until
 * it is at least GUARD_STREAM_WINDOW bytes behind the newest byte, not inside a finding and not
 * in the last run of non-blank bytes (which may go on), so a secret split across pieces is
 * still seen whole; what is released is redacted as the policy says. Once a finding blocks,
 * nothing more is released. The window covers the longest span made of several words that a
 * redacting or blocking detector reports (an IBAN in groups: 42 bytes; a PEM BEGIN line: 40);
 * a secret of one word is held whole by the run rule, however long. */
#define GUARD_STREAM_WINDOW  64
#define GUARD_STREAM_MAX_RUN 1024

typedef struct guard_stream guard_stream;
/* emit receives text that may leave; it returns false to stop (the stream then says so). */
typedef bool (*guard_emit_fn)(void *ctx, const char *text, size_t len);
/* `on_finding` (may be NULL) is told each new finding once, with its action (for the audit). */
typedef void (*guard_finding_fn)(void *ctx, const guard_finding *f, guard_action a);

LLMOS_API LLMOS_NODISCARD llmos_err guard_stream_new(const guard *g, const char *principal,
                                                     guard_emit_fn emit,
                                                     guard_finding_fn on_finding, void *ctx,
                                                     guard_stream **out);
/* Add a piece; releases what is safe to release. false when emit asked to stop. */
LLMOS_API bool guard_stream_push(guard_stream *s, const char *text, size_t len);
/* The end: checks and releases the rest. *action (may be NULL) gets the strongest action. */
LLMOS_API bool guard_stream_finish(guard_stream *s, guard_action *action);
LLMOS_API bool guard_stream_blocked(const guard_stream *s);
LLMOS_API void guard_stream_free(guard_stream *s);

#endif
