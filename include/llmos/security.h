/*
 * llmos/security.h - origins of values, the dual-LLM quarantine, the flow policy and the
 * hash-chained audit log.
 *
 * Origins. Every value the kernel handles carries where it came from: SYSTEM (written by
 * llmos), USER (typed by the user), TOOL (output of a tool whose output is trusted) or
 * UNTRUSTED (web pages, mail, files, any tool output not marked trusted, and everything a
 * quarantined model says). The privileged model, which may call tools, only ever sees the
 * first three.
 *
 * The rule is carried by the TYPES:
 *   trusted_text     a borrowed string with a trusted origin; the privileged context builder
 *                    (kernel.h, kctx_append) accepts only this type.
 *   untrusted_text   an OPAQUE object: no code outside src/security/quarantine.c can read
 *                    its bytes. It cannot be turned into trusted_text; the one way to put it
 *                    into a context is quarantine_put(), which keeps the value and yields a
 *                    handle ("$VAR1") as trusted_text. tests/security/test_quarantine.c
 *                    runs the compiler on code that tries otherwise and expects it to fail.
 *
 * A handle may be passed by the privileged model as a tool argument; the kernel replaces it
 * with the real value when the tool runs, if the flow policy allows that origin to flow into
 * that argument. quarantine_ask() lets a quarantined model (no tools, a context of its own)
 * read an untrusted value and answer a question about it; the answer is untrusted again.
 *
 * Audit. Every system call, policy decision, model load and login is appended to the store's
 * audit table. Each record holds hash = BLAKE2b-256(prev_hash || canonical record), so that
 * audit_verify finds any edited, removed or reordered record (docs/security.md).
 */
#ifndef LLMOS_SECURITY_H
#define LLMOS_SECURITY_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "llmos/backend.h"
#include "llmos/base.h"
#include "llmos/storage.h"

/* ---- origins ------------------------------------------------------------------------------ */
typedef enum llmos_origin {
    ORIGIN_SYSTEM = 0, /* written by llmos itself (prompts, handles, error messages) */
    ORIGIN_USER,       /* typed by the user, or written by the privileged model for the user */
    ORIGIN_TOOL,       /* output of a tool marked trusted (the calculator) */
    ORIGIN_UNTRUSTED,  /* anything else: outside content, quarantined model output */
    ORIGIN_COUNT_
} llmos_origin;

/* "system", "user", "tool", "untrusted". */
LLMOS_API const char *origin_name(llmos_origin o);
/* The reverse; false for another name. */
LLMOS_API bool origin_parse(const char *name, llmos_origin *out);

/* Text with a trusted origin, borrowed (the bytes stay the caller's). Only the constructors
 * below make one, and none of them accepts untrusted_text. */
typedef struct trusted_text {
    llmos_origin origin; /* never ORIGIN_UNTRUSTED (asserted by the constructors) */
    const char *text;    /* NUL-terminated */
} trusted_text;

LLMOS_API trusted_text trusted_system(const char *text);
LLMOS_API trusted_text trusted_user(const char *text);
LLMOS_API trusted_text trusted_tool(const char *text);

/* An untrusted value (opaque). Made by untrusted_new, owned by whoever holds the pointer
 * until it is given to quarantine_put. */
typedef struct untrusted_text untrusted_text;

/* Copy text[0..len) into a new untrusted value; `source` (e.g. "tool:fetch_page") says where
 * it came from, for the audit log. NULL when out of memory. */
LLMOS_API untrusted_text *untrusted_new(const char *text, size_t len, const char *source);
LLMOS_API void untrusted_free(untrusted_text *u);
/* Its length in bytes (not its content). */
LLMOS_API size_t untrusted_len(const untrusted_text *u);

/* ---- the quarantine ----------------------------------------------------------------------- */
/* The untrusted values of one process, each under a handle $VAR1, $VAR2, ... */
typedef struct quarantine quarantine;

LLMOS_API quarantine *quarantine_new(void);
LLMOS_API void quarantine_free(quarantine *q);
LLMOS_API size_t quarantine_count(const quarantine *q);

/* Keep `u` (ownership passes to q, also on failure) and return its handle as trusted_text
 * (origin SYSTEM; the string lives as long as q). This is the only way an untrusted value
 * reaches a privileged context: as its name. */
LLMOS_API LLMOS_NODISCARD llmos_err quarantine_put(quarantine *q, untrusted_text *u,
                                                   trusted_text *handle);

/* Does `text` name a handle of q anywhere in it ("$VAR3")? */
LLMOS_API bool quarantine_mentions(const quarantine *q, const char *text);

/* Replace every handle of q in the string values of `args` (recursively) by the values they
 * name. *out (caller decrefs) is the substituted copy; origins[i] (ORIGIN_COUNT_ entries) is
 * set true for each origin found under each top-level member: `members` receives a new JSON
 * object {"member": ["user", "untrusted"], ...} (caller decrefs) naming, for each top-level
 * argument, the origins that flowed into it. Strings without handles count as `author`.
 * An unknown handle ($VAR99) is LLMOS_ERR_NOT_FOUND naming it. */
LLMOS_API LLMOS_NODISCARD llmos_err quarantine_substitute(const quarantine *q, const json_t *args,
                                                          llmos_origin author, json_t **out,
                                                          json_t **members);

/* Ask a quarantined model `question` about the value under `handle`. The model gets a context
 * of its own (a fixed system prompt, the question, the value), no tools; its answer is
 * untrusted and kept under a new handle, returned in *answer_handle. When the model fails, its
 * error message is untrusted too (a server may echo the request, value included): it is kept
 * under the new handle the same way and *model_err receives the failure's code (LLMOS_OK when
 * the model answered). So the return value carries only llmos's own errors: LLMOS_ERR_NOT_FOUND
 * for a handle q does not have, LLMOS_ERR_UNSUPPORTED without a model, LLMOS_ERR_CANCELLED
 * when *cancel (may be NULL) was raised, LLMOS_ERR_FORMAT / NOMEM. */
LLMOS_API LLMOS_NODISCARD llmos_err quarantine_ask(quarantine *q, llm_backend *quarantined,
                                                   const char *handle, const char *question,
                                                   int32_t max_tokens, const atomic_bool *cancel,
                                                   trusted_text *answer_handle,
                                                   llmos_err *model_err);

/* Serialise q for persistence ({"vars": [{"value", "source"}...]}) and back. */
LLMOS_API LLMOS_NODISCARD llmos_err quarantine_to_json(const quarantine *q, json_t **out);
LLMOS_API LLMOS_NODISCARD llmos_err quarantine_from_json(const json_t *j, quarantine **out);

/* ---- the flow policy ---------------------------------------------------------------------- */
/* Which origins may flow into which tool arguments. JSON form:
 *   {"rules": [{"tool": "send_message", "argument": "recipient",
 *               "allow": ["system", "user", "tool"]}, ...],
 *    "default": ["system", "user", "tool", "untrusted"]}
 * "tool" and "argument" may be "*". The first rule whose tool and argument match decides;
 * without one, "default" does. */
typedef struct policy policy;

/* The built-in default denies untrusted values by default: they may flow only into
 * send_message.text (to show outside content to the user) and calculator.expression (its
 * result is tainted in turn); never into a recipient, a command, or any argument of a tool
 * without a rule. System, user and tool values flow everywhere except into shell and
 * run_command (system and user only). */
LLMOS_API LLMOS_NODISCARD llmos_err policy_default(policy **out);
/* Parse a policy from JSON text; LLMOS_ERR_FORMAT naming the bad member. */
LLMOS_API LLMOS_NODISCARD llmos_err policy_parse(const char *text, size_t len, const char *what,
                                                 policy **out);
/* Load <config_dir>/policy.json if it exists, else the default. */
LLMOS_API LLMOS_NODISCARD llmos_err policy_load(const char *config_dir, policy **out);
LLMOS_API void policy_free(policy *p);

/* May the origins in `members` (as quarantine_substitute makes it) flow into `tool`'s
 * arguments? LLMOS_ERR_DENIED with a message naming tool, argument and origin otherwise. */
LLMOS_API LLMOS_NODISCARD llmos_err policy_check(const policy *p, const char *tool,
                                                 const json_t *members);

/* ---- the audit log ------------------------------------------------------------------------ */
#define AUDIT_HASH_BYTES 32 /* BLAKE2b-256 (crypto_generichash with outlen 32) */

typedef struct audit audit;

/* Open the audit log of store s (borrowed; must outlive the audit object). Finds the chain's
 * head (the last record). */
LLMOS_API LLMOS_NODISCARD llmos_err audit_open(store *s, audit **out);
LLMOS_API void audit_free(audit *a);

/* Append a record of `kind` ("syscall", "policy", "model.load", "login", "process", ...) with
 * `payload` (a JSON object, borrowed) at the head of the chain. A payload with a NUL byte in
 * a string or key is LLMOS_ERR_INVALID, naming the member. */
LLMOS_API LLMOS_NODISCARD llmos_err audit_append(audit *a, const char *kind, const json_t *payload);

/* The canonical bytes a record's hash covers (docs/security.md), appended to out. Form 2, in
 * which every record is now written:
 *   "llmos-audit-v2" 0x00 seq (u64 LE) time (i64 LE) kind_len (u64 LE) kind
 *   payload_len (u64 LE) payload
 * Form 1, kept to verify records written before (the setting "audit.form2_from" says where
 * form 2 begins): "llmos-audit-v1" 0x00 seq 0x00 time 0x00 kind 0x00 payload, seq and time in
 * decimal. A kind or payload with a NUL inside is LLMOS_ERR_INVALID in both. */
LLMOS_API LLMOS_NODISCARD llmos_err audit_canonical(int form, int64_t seq, int64_t time,
                                                    const char *kind, size_t kind_len,
                                                    const char *payload, size_t payload_len,
                                                    llmos_buf *out);

typedef struct audit_verdict {
    bool ok;
    int64_t records;  /* records checked */
    int64_t bad_seq;  /* the first bad record (or where one is missing); 0 when ok */
    char reason[256]; /* what is wrong with it */
} audit_verdict;

/* Check the whole chain of store s: sequence numbers without gaps from 1, each prev_hash equal
 * to the previous record's hash, each hash equal to the hash of its canonical bytes, and the
 * head remembered in the settings equal to the last record. Returns LLMOS_OK when the check
 * ran (see v->ok), an error only when the store could not be read. */
LLMOS_API LLMOS_NODISCARD llmos_err audit_verify(store *s, audit_verdict *v);

/* A checkpoint of the log of store s, appended to out: its head (seq, hash) and the time, as
 * JSON with a MAC under a key derived from the store's key, to be kept somewhere a holder of
 * that key cannot reach (docs/security.md). Refused (LLMOS_ERR_CRYPTO) when the log does not
 * verify. LLMOS_ERR_UNSUPPORTED for a store in memory only. */
LLMOS_API LLMOS_NODISCARD llmos_err audit_checkpoint(store *s, llmos_buf *out);
/* Check the log of store s against a checkpoint (text[0..len) as audit_checkpoint wrote it):
 * the chain as audit_verify does, then that the log still holds the checkpoint's record with
 * the same hash; v says what differs (v->ok false, v->bad_seq the checkpoint's record). An
 * error when the checkpoint itself is malformed (LLMOS_ERR_FORMAT), of another store
 * (LLMOS_ERR_INVALID) or fails its MAC (LLMOS_ERR_CRYPTO). */
LLMOS_API LLMOS_NODISCARD llmos_err audit_verify_checkpoint(store *s, const char *text, size_t len,
                                                            audit_verdict *v);

#endif
