/*
 * llmos/apikeys.h - API keys of the HTTP server: which principal a key stands for, and what
 * that principal may do (the kernel session it gets).
 *
 * A keys file is JSON that an administrator writes with `llmos key new` (or by hand):
 *
 *   {"version": 1,
 *    "keys": [{"principal": "alice",
 *              "key_hash": "blake2b-256:<64 hex digits>",
 *              "rights": ["chat", "embed", "process"],
 *              "caps": ["compute", "message"],
 *              "limits": {"concurrent": 4, "requests_per_minute": 60, "max_tokens": 1024},
 *              "budget": {"tokens": 100000, "tool_calls": 50, "wall_s": 600},
 *              "turn": {"tokens": 8192, "tool_calls": 16, "wall_s": 300},
 *              "audit_content": false,
 *              "comment": "free text"}]}
 *
 * Only principal, key_hash and rights are required. The file never holds a key: only its
 * BLAKE2b-256 digest. Keys are 256 random bits (apikeys_generate), so a fast hash is the right
 * one: there is nothing to guess that a slow hash would protect. A presented key is hashed once
 * and compared with every entry's digest in constant time (sodium_memcmp), so timing tells
 * neither which bytes matched nor which entry did.
 *
 * The parser is strict, since this file decides who may do what: unknown members, wrong types,
 * unknown rights or capabilities, duplicate principals or digests are errors that name the
 * entry and the member. docs/api.md describes the format for users; fuzz/fuzz_apikeys.c fuzzes
 * the parser.
 */
#ifndef LLMOS_APIKEYS_H
#define LLMOS_APIKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"
#include "llmos/kernel.h"

#define APIKEY_HASH_BYTES 32       /* BLAKE2b-256 */
#define APIKEY_KEY_MAX    256      /* the longest key a client may present, in bytes */
#define APIKEY_PREFIX     "llmos-" /* of the keys apikeys_generate makes */

/* One entry: a principal and the session it gets. */
typedef struct apikey {
    char principal[64]; /* letters, digits and . _ - @ ; 1-63 bytes */
    unsigned char hash[APIKEY_HASH_BYTES];
    uint32_t rights;    /* KRIGHT_ bits (at least one) */
    uint32_t caps;      /* KCAP_ bits of the processes it starts; absent = compute,message */
    klimits limits;     /* absent members = unlimited */
    kbudget budget;     /* per process; absent = unlimited */
    kbudget turn;       /* per message; absent = the kernel's KTURN_DEFAULT_* */
    bool audit_content; /* chat audit records carry the text */
} apikey;

/* A parsed keys file (opaque). */
typedef struct apikeys apikeys;

/* Parse a keys file's text; `what` (the path) starts every error message, which names the
 * entry ("entry 2 (alice)") and the member. LLMOS_ERR_FORMAT for every fault of the text. */
LLMOS_API LLMOS_NODISCARD llmos_err apikeys_parse(const char *text, size_t len, const char *what,
                                                  apikeys **out);
/* Read and parse the file at path; LLMOS_ERR_NOT_FOUND naming it when it does not exist. */
LLMOS_API LLMOS_NODISCARD llmos_err apikeys_load(const char *path, apikeys **out);
/* A set of one entry for `key` (the key itself, hashed here and not kept) standing for
 * `principal` with `rights` and the default capabilities: `llmos serve --api-key`. */
LLMOS_API LLMOS_NODISCARD llmos_err apikeys_single(const char *key, const char *principal,
                                                   uint32_t rights, apikeys **out);
LLMOS_API void apikeys_free(apikeys *ks);

LLMOS_API size_t apikeys_count(const apikeys *ks);
LLMOS_API const apikey *apikeys_get(const apikeys *ks, size_t i);

/* The index of the entry whose key is key[0..len), or -1. Constant time in the key and in
 * which entry matches (every entry is compared). */
LLMOS_API long apikeys_match(const apikeys *ks, const char *key, size_t len);

/* The BLAKE2b-256 digest of key[0..len) (the file writes it as "blake2b-256:" and 64 lower-case
 * hex digits). */
LLMOS_API void apikeys_hash(const char *key, size_t len, unsigned char out[APIKEY_HASH_BYTES]);

/* A new key: APIKEY_PREFIX followed by 43 base64url characters (256 random bits) in out;
 * size must be at least 64. */
LLMOS_API LLMOS_NODISCARD llmos_err apikeys_generate(char *out, size_t size);

/* Add entry e to the keys file at path (created, mode 0600, when missing), written atomically
 * (a crash leaves the old or the new file). An entry for the same principal is an error
 * (LLMOS_ERR_EXISTS) unless `replace`, which puts e in its place. The file is parsed first, so
 * a broken file is reported, never overwritten. */
LLMOS_API LLMOS_NODISCARD llmos_err apikeys_add(const char *path, const apikey *e, bool replace);

/* A principal name's fault ("" when it is a valid one), for the command line's checks. */
LLMOS_API const char *apikeys_principal_fault(const char *name);

#endif
