/*
 * llmos/auth.h - accounts of one llmos server: several users, each with their own encrypted
 * store, who log in with a passphrase and get a session token (src/security/auth.c).
 *
 *   accounts   a folder (<llmos home>/users) with one folder per account: <name>/store is the
 *              account's encrypted store (its key file wraps the store's key under the account's
 *              passphrase with Argon2id, llmos/storage.h "Keys"), <name>/account.json its
 *              lockout state. The passphrase is never stored anywhere: checking it is unwrapping
 *              the store's key, so the server can read an account's memory only while that
 *              user is logged in.
 *   failures   each wrong passphrase counts against the account: after max_failures in a row
 *              it is locked for lockout_s (kept in account.json, so a restart does not reset
 *              it); and against the client's address: more than per_peer_per_minute failed
 *              attempts from one address in a minute are refused before any passphrase is
 *              checked (LLMOS_ERR_LIMIT). An unknown account costs the same Argon2id work as a
 *              known one and fails with the same message, so names cannot be probed.
 *   sessions   a login gives a token of 256 random bits; the server keeps only its BLAKE2b-256
 *              digest, with an absolute expiry (session_ttl_s), an idle expiry (idle_ttl_s) and a
 *              CSRF token of its own. auth_logout revokes one, auth_revoke_account all of an
 *              account's. Sessions live in the server's memory: a restart logs everyone out.
 *   audit      every login, failed login, lockout, logout, account creation, removal and
 *              passphrase change goes to the audit hook (the server's audit log), and account
 *              creation and passphrase changes also to the account's own log.
 *
 * docs/security.md ("Accounts and sessions") describes the design and what it does not cover.
 */
#ifndef LLMOS_AUTH_H
#define LLMOS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "llmos/base.h"
#include "llmos/kernel.h"
#include "llmos/storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AUTH_NAME_MAX    32 /* an account name: [a-z][a-z0-9_-]{0,31} */
#define AUTH_TOKEN_CHARS 43 /* a session or CSRF token: 256 bits in base64url, no padding */
#define AUTH_PASS_MIN    8  /* the shortest passphrase an account may have */

/* Is name a valid account name? LLMOS_ERR_INVALID saying what is wrong otherwise. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_check_name(const char *name);

/* Where audit records of accounts go: event is "login", "login.failed", "login.refused",
 * "lockout", "logout", "account.create", "account.remove", "account.passphrase"; peer the
 * client's address or "cli"; detail a short text (never a secret). */
typedef void (*auth_audit_fn)(void *ctx, const char *event, const char *account, const char *peer,
                              const char *detail);

/* Open an account's kernel with its passphrase, or (passphrase NULL) the store's data key (32
 * bytes) a passkey unwrapped: `home` is the account's folder
 * (its store is home/store); on success *ses is a session for the account's principal (its
 * name) and *handle whatever close needs. The server's hook opens memory, a kernel with its
 * models, and a session holding every right on the account's own store. */
typedef struct auth_opener {
    llmos_err (*open)(void *ctx, const char *account, const char *home, const char *passphrase,
                      const uint8_t *data_key, void **handle, ksession **ses);
    void (*close)(void *ctx, void *handle);
    void *ctx;
} auth_opener;

typedef struct auth_params {
    const char *dir;              /* the accounts folder (required) */
    keys_kdf kdf;                 /* for new accounts and new passphrases; zero = the default */
    unsigned max_failures;        /* wrong passphrases in a row before a lockout; 0 = 5 */
    unsigned lockout_s;           /* how long a lockout lasts; 0 = 300 */
    unsigned per_peer_per_minute; /* failed logins one address may make a minute; 0 = 10 */
    unsigned session_ttl_s;       /* a session's whole life; 0 = 12 hours */
    unsigned idle_ttl_s;          /* a session unused this long ends; 0 = 1 hour */
    auth_audit_fn audit;          /* may be NULL */
    void *audit_ctx;
    auth_opener opener; /* the server's (auth_new); unused by the account functions */
} auth_params;

/* ---- accounts (usable without a server: `llmos user`) ------------------------------------ */

/* Create account `name` with `passphrase` (at least AUTH_PASS_MIN bytes): its folder, its store
 * (a new random key wrapped under the passphrase) and its lockout state. LLMOS_ERR_EXISTS when
 * there is one of that name. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_account_add(const auth_params *p, const char *name,
                                                     const char *passphrase);
/* The account names, sorted (*names malloc'd, each name too: free with auth_names_free). */
LLMOS_API LLMOS_NODISCARD llmos_err auth_account_list(const char *dir, char ***names, size_t *n);
LLMOS_API void auth_names_free(char **names, size_t n);
/* Remove account `name` and everything in its store. LLMOS_ERR_NOT_FOUND when there is none. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_account_remove(const auth_params *p, const char *name);
/* Change the passphrase of `name` (the old one must be right: the store's key is rewrapped,
 * no page is rewritten). Clears a lockout. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_account_passwd(const auth_params *p, const char *name,
                                                        const char *old_passphrase,
                                                        const char *new_passphrase);
/* The account's lockout state: failures in a row, and until when it is locked (0: it is not). */
LLMOS_API LLMOS_NODISCARD llmos_err auth_account_state(const auth_params *p, const char *name,
                                                       unsigned *failures, int64_t *locked_until);

/* ---- the server's logins and sessions ----------------------------------------------------- */

typedef struct auth_server auth_server;
typedef struct auth_ref auth_ref; /* a request's hold on a logged-in account */

/* The server's accounts (p is copied; p->dir must exist or be creatable). */
LLMOS_API LLMOS_NODISCARD llmos_err auth_new(const auth_params *p, auth_server **out);
/* Revoke every session, close every account's kernel (after the requests holding them have
 * released them: call when the server has stopped). NULL is a no-op. */
LLMOS_API void auth_free(auth_server *a);

/* What a login gives the client. */
typedef struct auth_login_result {
    char token[AUTH_TOKEN_CHARS + 1]; /* the session token (the cookie); shown once */
    char csrf[AUTH_TOKEN_CHARS + 1];  /* to send back in X-CSRF-Token with each change */
    int64_t expires_at;
} auth_login_result;

/* Check name's passphrase and open a session; peer is the client's address (for the per-address
 * limit and the audit). LLMOS_ERR_AUTH for a wrong passphrase or an unknown account (one
 * message for both), LLMOS_ERR_DENIED for a locked account (saying until when), LLMOS_ERR_LIMIT
 * when peer made too many failed attempts (*retry_s, may be NULL, gets the seconds to wait). */
LLMOS_API LLMOS_NODISCARD llmos_err auth_login(auth_server *a, const char *name,
                                               const char *passphrase, const char *peer,
                                               auth_login_result *out, double *retry_s);
/* The session of token: *ses the account's kernel session, *ref a hold to give back with
 * auth_release (the account stays open while held), account (may be NULL) its name and csrf
 * (may be NULL) its CSRF token. LLMOS_ERR_AUTH for an unknown, expired or revoked token. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_session(auth_server *a, const char *token, ksession **ses,
                                                 auth_ref **ref, char account[AUTH_NAME_MAX + 1],
                                                 char csrf[AUTH_TOKEN_CHARS + 1]);
LLMOS_API void auth_release(auth_server *a, auth_ref *ref);
/* Is csrf the CSRF token of token's session? (constant time) */
LLMOS_API bool auth_csrf_ok(auth_server *a, const char *token, const char *csrf);
/* Revoke the session of token (audited "logout"). LLMOS_ERR_AUTH when there is none. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_logout(auth_server *a, const char *token,
                                                const char *peer);
/* Revoke every session of an account; *n (may be NULL) how many. */
LLMOS_API void auth_revoke_account(auth_server *a, const char *name, size_t *n);
/* Sessions alive now (expired ones are dropped first). */
LLMOS_API size_t auth_sessions(auth_server *a);

/* ---- passkeys (WebAuthn, llmos/passkey.h) -------------------------------------------------
 * A passkey logs in without the passphrase and still opens the account's encrypted store: at
 * registration the authenticator's PRF extension (hmac-secret) gives a 32-byte secret for the
 * account's salt, which the server turns (BLAKE2b, bound to the account and the credential)
 * into a key that wraps a copy of the store's key (XChaCha20-Poly1305); the server keeps the
 * wrapped copy and never the secret. At login the authenticator signs the server's challenge
 * and gives the secret again: the signature proves the credential, the secret unwraps the key.
 * So the server can open the store only while the user's authenticator takes part. */
#define AUTH_PRF_BYTES 32

/* The options for navigator.credentials.create (token names a logged-in session: a new passkey
 * for its account) or navigator.credentials.get (token NULL: logging in to `account`), as
 * {"publicKey": {...}} with binary members in base64url: a new challenge (good for 2 minutes,
 * once), the RP ID, the account's user handle or its credentials, and the PRF salt. *out is a
 * new reference. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_passkey_options(auth_server *a, const char *token,
                                                         const char *account, const char *rp_id,
                                                         json_t **out);
/* Register a passkey for token's account: the passphrase again (it unwraps the store's key to
 * wrap a copy), the browser's answer (clientDataJSON, attestationObject) checked against the
 * challenge of auth_passkey_options, rp_id and origin, and the PRF secret. Audited
 * "passkey.add". */
LLMOS_API LLMOS_NODISCARD llmos_err auth_passkey_add(
    auth_server *a, const char *token, const char *passphrase, const char *rp_id,
    const char *origin, const uint8_t *client_data, size_t cd_len, const uint8_t *attestation,
    size_t att_len, const uint8_t prf[AUTH_PRF_BYTES], const char *peer);
/* Log in to account with passkey cred_id: the assertion checked (challenge once, origin, RP ID,
 * signature, a growing counter: a replayed assertion is refused), then the PRF secret unwraps
 * the store's key, which opens the account. Failures count toward the lockout and the
 * per-address limit like wrong passphrases, and are audited. */
LLMOS_API LLMOS_NODISCARD llmos_err auth_passkey_login(
    auth_server *a, const char *account, const char *rp_id, const char *origin,
    const uint8_t *cred_id, size_t id_len, const uint8_t *client_data, size_t cd_len,
    const uint8_t *auth_data, size_t ad_len, const uint8_t *sig, size_t sig_len,
    const uint8_t prf[AUTH_PRF_BYTES], const char *peer, auth_login_result *out, double *retry_s);

#ifdef __cplusplus
}
#endif

#endif
