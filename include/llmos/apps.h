/*
 * llmos/apps.h - the app store: a content-addressed store of models, tools, MCP servers,
 * prompt packs and specialists, signed manifests with provenance, a trust policy, and the
 * verification every load goes through (docs/supply-chain.md).
 *
 *   digests     SHA-256 of files and streams (OpenSSL's implementation: SHA-NI / AVX2)
 *   canonical   the canonical JSON form a manifest is signed and stored in
 *   manifests   name, version, publisher, kind, capabilities, files (path, sha256, size) and an
 *               in-toto statement with a SLSA provenance predicate; parsed strictly
 *   signatures  Ed25519 in minisign's formats (keys, .minisig files, "Ed" and prehashed "ED"),
 *               so that minisign verifies llmos's signatures and llmos verifies minisign's
 *   policy      trusted publisher keys and the kinds each may sign, revoked key ids, kinds that
 *               may be unsigned, whether plain local files load
 *   store       blobs/sha256/<hex>, manifests/<name>/<version>.json (+ .minisig), under
 *               $LLMOS_HOME/apps; every load re-checks signature, policy and digests
 *   registry    a static tree of signed manifests and blobs: pull (resumable, digest checked
 *               while streaming), publish, and a loopback server
 *
 * Everything a manifest, a signature, a key file, a policy file or a registry says is outside
 * input: parsed with bounds, and fuzzed (fuzz/fuzz_manifest.c).
 */
#ifndef LLMOS_APPS_H
#define LLMOS_APPS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "llmos/base.h"

/* ---- digests ----------------------------------------------------------------------------- */

#define APPS_SHA256_BYTES 32
#define APPS_SHA256_HEX   65 /* 64 lower-case hex digits and a NUL */

typedef struct apps_hasher apps_hasher;

/* A streaming SHA-256. NULL when out of memory. */
LLMOS_API apps_hasher *apps_hasher_new(void);
LLMOS_API void apps_hasher_update(apps_hasher *h, const void *data, size_t n);
/* The digest as lower-case hex in hex[APPS_SHA256_HEX]; the hasher may then be freed only. */
LLMOS_API void apps_hasher_final(apps_hasher *h, char hex[APPS_SHA256_HEX]);
LLMOS_API void apps_hasher_free(apps_hasher *h);

/* SHA-256 of a whole file (read in large blocks), and its size. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_sha256_file(const char *path, char hex[APPS_SHA256_HEX],
                                                     uint64_t *size);

/* ---- canonical JSON ---------------------------------------------------------------------- */

/* The canonical form of v (docs/supply-chain.md, "Canonical form"): object members sorted by
 * the bytes of their keys, no whitespace, integers only (a real is an error), strings with
 * only '"', '\\' and control characters escaped (\b \t \n \f \r, else \u00xx), UTF-8 kept.
 * Appended to out. For objects whose keys are ASCII this is RFC 8785 (JCS). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_canonical_json(const json_t *v, llmos_buf *out);

/* ---- manifests --------------------------------------------------------------------------- */

typedef enum apps_kind {
    APPS_KIND_MODEL,
    APPS_KIND_TOOL,
    APPS_KIND_MCP,
    APPS_KIND_PROMPTS,
    APPS_KIND_SPECIALIST,
    APPS_KIND_COUNT_
} apps_kind;

#define APPS_MANIFEST_MAX  (1u << 20) /* bytes of one manifest */
#define APPS_MAX_FILES     256
#define APPS_MAX_FILE_SIZE ((uint64_t)1 << 40) /* 1 TiB: a declared size past it is refused */
#define APPS_NAME_MAX      64
#define APPS_PATH_MAX      255

/* "model", "tool", "mcp", "prompts", "specialist"; parse returns false for anything else. */
LLMOS_API const char *apps_kind_name(apps_kind k);
LLMOS_API bool apps_kind_parse(const char *s, apps_kind *out);

typedef struct apps_file {
    const char *path; /* relative, checked by apps_path_check */
    char sha256[APPS_SHA256_HEX];
    uint64_t size;
} apps_file;

typedef struct apps_manifest {
    json_t *json; /* the whole manifest (owned) */
    const char *name, *version, *publisher, *description;
    apps_kind kind;
    size_t n_caps;
    const char **caps; /* capability names, e.g. "compute", "read" */
    size_t n_files;
    apps_file *files;
    json_t *provenance; /* borrowed from json: the in-toto statement */
} apps_manifest;

/* Parse a manifest's bytes. Strict: the bytes must be the canonical form of what they parse
 * to (so that what is signed, stored and shown is one byte string), every required member
 * present with its type, names, versions and paths valid (apps_name_check, apps_version_check,
 * apps_path_check), paths unique, sizes at most APPS_MAX_FILE_SIZE, the provenance an in-toto
 * v1 statement whose subjects are exactly the files. LLMOS_ERR_FORMAT naming what is wrong. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_manifest_parse(const char *bytes, size_t len,
                                                        apps_manifest **out);
LLMOS_API void apps_manifest_free(apps_manifest *m);

/* What a publisher fills in to make a manifest (llmos publish): its canonical bytes are
 * appended to out. files[i].path/sha256/size must be set; source and builder go into the
 * provenance (either may be NULL). */
typedef struct apps_manifest_params {
    const char *name, *version, *publisher, *description;
    apps_kind kind;
    const char *const *caps;
    size_t n_caps;
    const apps_file *files;
    size_t n_files;
    const char *source;     /* where it was built from (a URI), or NULL */
    const char *source_sha; /* digest of the source (e.g. a git commit), or NULL */
    const char *builder;    /* who built it (a URI), or NULL */
    json_t *extra;          /* a JSON object of kind-specific members (borrowed), or NULL */
} apps_manifest_params;
LLMOS_API LLMOS_NODISCARD llmos_err apps_manifest_build(const apps_manifest_params *p,
                                                        llmos_buf *out);

/* Names of apps: 1..64 bytes of [a-z0-9._-], starting with a letter or digit, no "..".
 * Versions: 1 to 4 dot-separated decimal numbers (no leading zeros), optionally "-" and a
 * pre-release of [0-9A-Za-z.]. Paths: relative, '/'-separated, no empty, "." or ".."
 * component, no '\\', control character or ':' , at most 255 bytes. Each fails with
 * LLMOS_ERR_FORMAT saying why (what names the thing checked). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_name_check(const char *name, const char *what);
LLMOS_API LLMOS_NODISCARD llmos_err apps_version_check(const char *version, const char *what);
LLMOS_API LLMOS_NODISCARD llmos_err apps_path_check(const char *path, const char *what);
/* <0, 0, >0 as version a is older than, the same as, newer than b (both valid): numbers
 * compared as numbers, missing ones as 0, a pre-release before its release. */
LLMOS_API int apps_version_cmp(const char *a, const char *b);

/* ---- signatures (minisign's formats) ----------------------------------------------------- */

#define APPS_KEYID_HEX 17 /* 16 upper-case hex digits, as minisign prints key ids */

typedef struct apps_pubkey {
    uint8_t id[8];
    uint8_t pk[32];
} apps_pubkey;

typedef struct apps_seckey apps_seckey; /* in sodium_malloc'd memory */

/* The key id as minisign prints it (the 8 bytes read as a little-endian number, in hex). */
LLMOS_API void apps_keyid_hex(const uint8_t id[8], char out[APPS_KEYID_HEX]);
/* A public key from a minisign public key file's text, or from its base64 line alone. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_pubkey_parse(const char *text, size_t len,
                                                      apps_pubkey *out);
/* The base64 line of a public key (no newline), appended to out. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_pubkey_base64(const apps_pubkey *k, llmos_buf *out);

/* Make a key pair: the secret key file (minisign's format, mode 0600, created, never
 * overwritten; encrypted with scrypt under `passphrase` as minisign does, or unencrypted when
 * passphrase is NULL, as `minisign -W`) and the public key file. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_key_generate(const char *seckey_path,
                                                      const char *pubkey_path,
                                                      const char *passphrase, apps_pubkey *out);
/* Read a secret key file of minisign's format (unencrypted, or scrypt-encrypted: then
 * passphrase is needed; a wrong one fails the key's checksum: LLMOS_ERR_AUTH). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_seckey_load(const char *path, const char *passphrase,
                                                     apps_seckey **out);
LLMOS_API void apps_seckey_free(apps_seckey *k);
LLMOS_API void apps_seckey_public(const apps_seckey *k, apps_pubkey *out);

/* Sign msg as minisign does: prehashed ("ED": Ed25519 over BLAKE2b-512(msg)) unless legacy
 * ("Ed": over msg itself), then the global signature over signature || trusted_comment. The
 * whole .minisig text is appended to out. Comments are single lines (no CR/LF). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_sign(const apps_seckey *k, const void *msg, size_t len,
                                              const char *untrusted_comment,
                                              const char *trusted_comment, bool legacy,
                                              llmos_buf *out);

typedef struct apps_sig {
    bool prehashed; /* "ED" */
    uint8_t keyid[8];
    uint8_t sig[64];
    char trusted_comment[1024];
    uint8_t global_sig[64];
} apps_sig;

/* Parse a .minisig file's text (at most 4 KiB). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_sig_parse(const char *text, size_t len, apps_sig *out);
/* Check sig over msg with key k: the key ids match, the signature, the global signature over
 * the trusted comment. LLMOS_ERR_CRYPTO naming the failed check. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_sig_verify(const apps_sig *sig, const apps_pubkey *k,
                                                    const void *msg, size_t len);

/* ---- trust policy ------------------------------------------------------------------------ */

/* The policy file ($LLMOS_HOME/apps/trust; docs/supply-chain.md, "Trust policy"), one rule
 * a line, '#' comments:
 *   trust PUBLISHER PUBKEY [KIND,KIND...]   a publisher's key, and the kinds it may sign
 *                                           (default: every kind)
 *   revoke KEYID [REASON...]                never accept this key again
 *   allow-unsigned KIND|all                 store entries of KIND may be unsigned
 *   local-files allow|refuse                plain local files given as --model (default allow,
 *                                           audited as unsigned; refuse: only with
 *                                           --allow-unsigned)
 *   grant APP CAP,CAP...                    capabilities the user grants specialist APP when it
 *                                           is delegated to (it gets those its manifest also
 *                                           asks for; compute always)
 */
typedef struct apps_trusted_key {
    char publisher[APPS_NAME_MAX + 1];
    apps_pubkey key;
    uint32_t kinds; /* bit per apps_kind */
} apps_trusted_key;

typedef struct apps_policy {
    size_t n_keys;
    apps_trusted_key *keys;
    size_t n_revoked;
    uint8_t (*revoked)[8];
    uint32_t unsigned_kinds; /* bit per apps_kind */
    bool local_files_refused;
    size_t n_grants;
    struct apps_grant {
        char app[APPS_NAME_MAX + 1];
        char caps[256]; /* comma-separated capability names */
    } * grants;
} apps_policy;

LLMOS_API LLMOS_NODISCARD llmos_err apps_policy_parse(const char *text, size_t len,
                                                      apps_policy **out);
/* The policy file at path; a missing file is the empty policy (nothing trusted). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_policy_load(const char *path, apps_policy **out);
LLMOS_API void apps_policy_free(apps_policy *p);
LLMOS_API bool apps_policy_revoked(const apps_policy *p, const uint8_t id[8]);
/* The capabilities an app runs with: those of its manifest that the policy grants it, as a
 * comma-separated list in out (empty when none). */
LLMOS_API void apps_policy_granted(const apps_policy *p, const apps_manifest *m, char *out,
                                   size_t size);

/* What verification found, for the audit log and `llmos verify`. */
typedef struct apps_verdict {
    bool signed_by_trusted; /* signature, key and policy all checked */
    bool unsigned_allowed;  /* no signature, allowed by policy or the user */
    char keyid[APPS_KEYID_HEX];
    char publisher[APPS_NAME_MAX + 1];
    char check[48]; /* the check that failed ("signature", "digest", ...), "" when none */
} apps_verdict;

/* Verify a manifest and its .minisig text against the policy: the signature parses, its key
 * is trusted and not revoked, the signature and the trusted comment's signature are good, the
 * manifest parses, its publisher is the key's publisher, the key may sign its kind. sig may be
 * NULL (no signature): refused unless the policy lets its kind be unsigned or allow_unsigned.
 * On success *out is the parsed manifest (caller frees). On failure v->check names the check
 * and the error message says what was wrong. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_verify_manifest(const apps_policy *pol, const char *bytes,
                                                         size_t len, const char *sig,
                                                         size_t sig_len, bool allow_unsigned,
                                                         apps_manifest **out, apps_verdict *v);

/* ---- the store --------------------------------------------------------------------------- */

typedef struct apps_store apps_store;

/* The store under home/apps (created, mode 0700). home is the llmos home (memory_home()). */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_open(const char *home, apps_store **out);
LLMOS_API void apps_store_free(apps_store *st);
LLMOS_API const char *apps_store_dir(const apps_store *st);
/* The store's policy (loaded from <dir>/trust at open; reloaded by apps_store_reload_policy). */
LLMOS_API const apps_policy *apps_store_policy(const apps_store *st);
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_reload_policy(apps_store *st);
/* Path of the blob with this digest (whether present or not) in out[size]. */
LLMOS_API void apps_store_blob_path(const apps_store *st, const char *sha256, char *out,
                                    size_t size);
/* Copy a local file into the blob store (hashing as it copies); its digest in hex. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_add_file(apps_store *st, const char *path,
                                                        char hex[APPS_SHA256_HEX], uint64_t *size);

/* Install a verified manifest: its bytes and signature (may be NULL) as
 * manifests/<name>/<version>.json(.minisig). Refuses a version older than the newest one of
 * that name ever installed (no downgrades; the store remembers it after rm). Every file's
 * blob must be present. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_install(apps_store *st, const apps_manifest *m,
                                                       const char *bytes, size_t len,
                                                       const char *sig, size_t sig_len);
/* The newest version of name ever installed, in out (empty when none). */
LLMOS_API void apps_store_seen_version(const apps_store *st, const char *name, char *out,
                                       size_t size);

/* NAME or NAME:TAG (TAG a version; "latest" or none: the newest installed) -> the installed
 * version in out. LLMOS_ERR_NOT_FOUND saying so, and how to pull it. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_resolve(const apps_store *st, const char *ref,
                                                       char *name, size_t name_size, char *version,
                                                       size_t version_size);

/* Verify an installed app as before every load: signature and policy (the store's, now: a key
 * revoked since the pull is refused), and, when check_digests, every file's size and SHA-256.
 * *out is the manifest (caller frees) when out is not NULL. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_verify(const apps_store *st, const char *name,
                                                      const char *version, bool check_digests,
                                                      bool allow_unsigned, apps_manifest **out,
                                                      apps_verdict *v);

typedef struct apps_entry {
    const char *name, *version;
    bool is_signed;
} apps_entry;
/* Each installed (name, version), sorted, to fn. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_list(const apps_store *st,
                                                    bool (*fn)(const apps_entry *e, void *ctx),
                                                    void *ctx);
/* Remove an installed version (all versions when version is NULL), then every blob no
 * installed manifest refers to. *freed: bytes of blobs removed. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_remove(apps_store *st, const char *name,
                                                      const char *version, uint64_t *freed);
/* Which installed app has a file with this blob (a path under blobs/): its name and version. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_store_owner(const apps_store *st, const char *sha256,
                                                     char *name, size_t name_size, char *version,
                                                     size_t version_size);

/* Append one JSON line to <dir>/verify.log: what was checked before a load and the outcome
 * (the log the CLI keeps where no encrypted store is open; see docs/supply-chain.md). */
LLMOS_API void apps_store_log(const apps_store *st, const char *event, const char *what,
                              const apps_verdict *v, const char *outcome);

/* ---- registries -------------------------------------------------------------------------- */

/* A registry is a static tree (docs/supply-chain.md, "Registry layout"):
 *   manifests/<name>/<version>.json          canonical manifest bytes
 *   manifests/<name>/<version>.json.minisig  its signature
 *   manifests/<name>/latest                  the newest version's string
 *   blobs/sha256/<hex>                       the files
 * served over HTTP(S) at a base URL, or read from a local folder (file:// or a path). */

typedef struct apps_progress {
    const char *label;
    uint64_t done, total; /* bytes */
    double seconds;       /* since the transfer started */
    bool finished;
} apps_progress;
typedef void (*apps_progress_fn)(const apps_progress *p, void *ctx);

typedef struct apps_pull_params {
    const char *registry;      /* base URL (http://, https://) */
    const char *ref;           /* NAME or NAME:TAG */
    bool allow_unsigned;       /* install an unsigned manifest (the user said so) */
    apps_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    const atomic_bool *cancel;     /* may be NULL */
    uint64_t max_bytes_per_second; /* 0: no limit (tests interrupt transfers with it) */
    uint64_t stop_after_bytes;     /* 0: none; else fail (as an interruption) after this many
                                      bytes of blobs are written: tests of resume */
    long connect_timeout_s;        /* 0: 30 s */
} apps_pull_params;

typedef struct apps_pull_result {
    char name[APPS_NAME_MAX + 1];
    char version[64];
    uint64_t bytes_fetched, bytes_total;
    double seconds;
    apps_verdict verdict;
} apps_pull_result;

/* Pull NAME[:TAG] from a registry into the store: the tag's version, the manifest and its
 * signature, verified (apps_verify_manifest) and checked to be the manifest asked for (name,
 * version), no downgrade, the free disk space checked against the declared sizes, then each
 * missing blob streamed to blobs/sha256/<hex>.partial with its SHA-256 computed as it comes,
 * never past its declared size, resumed from a partial file left by an interrupted pull (a
 * range request; the digest over the whole file catches a changed file), renamed into place
 * only when the digest matches, and the manifest installed last. Redirects are followed only
 * to the same scheme, host and port. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_pull(apps_store *st, const apps_pull_params *p,
                                              apps_pull_result *out);

/* What a registry offers as NAME[:TAG], without installing or trusting anything (for showing
 * the user what a pull would fetch): its version and the sum of its files' declared sizes.
 * p->registry and p->ref as for apps_pull; nothing else of p is used but the timeout. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_registry_peek(const apps_pull_params *p, char *version,
                                                       size_t version_size, uint64_t *bytes);

/* Add an app to a registry folder: each file copied into blobs/ (hashed), the manifest built
 * from mp (files filled in from paths: names as given by names[i]), signed with k, written, and
 * manifests/<name>/latest moved to it when it is the newest. The manifest's bytes are
 * appended to manifest_out when not NULL. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_publish(const char *registry_dir,
                                                 const apps_manifest_params *mp,
                                                 const char *const *paths, const char *const *names,
                                                 size_t n, const apps_seckey *k,
                                                 llmos_buf *manifest_out);

/* ---- specialists ------------------------------------------------------------------------- */

/* The delegate(app, task) system call, for the kernel's extra tools: offers the installed
 * specialists (kind specialist, signature good now) by name, and runs each call as its own
 * process, `program delegate APP` (the llmos program), the task on its standard input, which
 * verifies the app again and runs it with only the capabilities its manifest asks for and the
 * trust policy grants (docs/supply-chain.md, "Specialists"). Its output is untrusted. The
 * descriptor is static (one per program); LLMOS_ERR_NOT_FOUND when no specialist is installed. */
struct ktool;
LLMOS_API LLMOS_NODISCARD llmos_err apps_delegate_tool(const apps_store *st, const char *program,
                                                       const struct ktool **out);

typedef struct apps_registry_server apps_registry_server;
/* Serve registry folder dir over HTTP on host:port (port 0: any; the one bound in *bound):
 * GET and HEAD of files under it, with single byte ranges, nothing outside it. */
LLMOS_API LLMOS_NODISCARD llmos_err apps_registry_serve(const char *dir, const char *host,
                                                        uint16_t port, apps_registry_server **out,
                                                        uint16_t *bound);
LLMOS_API void apps_registry_stop(apps_registry_server *s);

#endif
