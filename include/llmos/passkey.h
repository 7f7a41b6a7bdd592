/*
 * llmos/passkey.h - the relying party's side of WebAuthn (passkeys), src/security/passkey.c:
 * checking a registration (attestation "none", or "packed" self-attestation) and an
 * authentication (an assertion) for the web UI's logins.
 *
 * Every check the WebAuthn Level 2 specification asks of a relying party that does not verify
 * attestation certificates: the client data's type, challenge (the one this server issued, once)
 * and origin (exactly this server's; never cross-origin); the authenticator data's RP ID hash
 * (SHA-256 of this server's RP ID), user-present flag (and user-verified when asked), attested
 * credential data and COSE key (ES256 on P-256, checked through OpenSSL; EdDSA on Ed25519,
 * through libsodium); the signature over authenticatorData || SHA-256(clientDataJSON); and the
 * signature counter, which must grow when the authenticator keeps one (a counter that does not
 * grow is a cloned authenticator or a replayed assertion). CBOR is parsed with libcbor, every
 * length checked against the bytes there are; fuzz/fuzz_passkey.c fuzzes the parsers.
 */
#ifndef LLMOS_PASSKEY_H
#define LLMOS_PASSKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PASSKEY_ES256   (-7) /* COSE: ECDSA with SHA-256 on P-256 */
#define PASSKEY_EDDSA   (-8) /* COSE: EdDSA (Ed25519) */
#define PASSKEY_ID_MAX  255  /* credential ids llmos accepts (the spec allows 1023) */
#define PASSKEY_PUB_MAX 65   /* 0x04 || x || y for P-256; 32 bytes for Ed25519 */
#define PASSKEY_FLAG_UP 0x01 /* user present */
#define PASSKEY_FLAG_UV 0x04 /* user verified */
#define PASSKEY_FLAG_AT 0x40 /* attested credential data included */
#define PASSKEY_FLAG_ED 0x80 /* extension data included */

/* A credential as the server keeps it. */
typedef struct passkey_cred {
    uint8_t id[PASSKEY_ID_MAX];
    size_t id_len;
    int alg;                      /* PASSKEY_ES256 or PASSKEY_EDDSA */
    uint8_t pub[PASSKEY_PUB_MAX]; /* the public key, see PASSKEY_PUB_MAX */
    size_t pub_len;
    uint32_t sign_count; /* the last signature counter seen */
    uint8_t aaguid[16];
} passkey_cred;

/* Authenticator data, parsed. */
typedef struct passkey_auth_data {
    uint8_t rp_id_hash[32];
    uint8_t flags;
    uint32_t sign_count;
    bool has_cred;     /* attested credential data was present (flag AT) */
    passkey_cred cred; /* when has_cred: id, alg, pub, aaguid; sign_count as above */
} passkey_auth_data;

/* What this server expects of a ceremony. */
typedef struct passkey_expect {
    const char *rp_id;        /* the RP ID: this server's host name, e.g. "localhost" */
    const char *origin;       /* exactly the page's origin, e.g. "https://localhost:8080" */
    const uint8_t *challenge; /* the challenge this server issued for this ceremony */
    size_t challenge_len;
    bool require_uv; /* refuse an authenticator that did not verify the user */
} passkey_expect;

/* Parse authenticator data: rpIdHash (32) flags (1) signCount (4, big-endian), then with flag
 * AT the attested credential data (aaguid 16, id length 2, id, COSE key in CBOR), then with
 * flag ED a CBOR map of extensions, and nothing after. LLMOS_ERR_FORMAT naming what is wrong;
 * LLMOS_ERR_UNSUPPORTED for a key type other than ES256 and EdDSA. */
LLMOS_API LLMOS_NODISCARD llmos_err passkey_parse_auth_data(const uint8_t *data, size_t len,
                                                            passkey_auth_data *out);

/* Check clientDataJSON: its "type" is `type` ("webauthn.create" or "webauthn.get"), its
 * "challenge" (base64url) is e's, its "origin" is e's exactly, and "crossOrigin" is not true.
 * LLMOS_ERR_AUTH for a challenge, origin or type that is not the expected one; LLMOS_ERR_FORMAT
 * for JSON that is not client data. */
LLMOS_API LLMOS_NODISCARD llmos_err passkey_check_client_data(const uint8_t *json, size_t len,
                                                              const char *type,
                                                              const passkey_expect *e);

/* A registration (navigator.credentials.create's response): check the client data, parse the
 * attestation object {fmt, attStmt, authData}, check the authenticator data against e, and the
 * attestation: "none" (attStmt empty) or "packed" self-attestation (no certificate; its alg the
 * credential's, its signature by the credential's key over authData || SHA-256(clientData)).
 * Attestation with certificates ("packed" with x5c, "tpm", ...) is LLMOS_ERR_UNSUPPORTED: llmos
 * does not decide which authenticator models to trust. *out is the new credential. */
LLMOS_API LLMOS_NODISCARD llmos_err passkey_register(const passkey_expect *e,
                                                     const uint8_t *client_data, size_t cd_len,
                                                     const uint8_t *attestation, size_t att_len,
                                                     passkey_cred *out);

/* An authentication (navigator.credentials.get's response) with credential c: check the
 * client data and authenticator data against e, the signature with c's key, and the counter
 * (LLMOS_ERR_AUTH when the authenticator keeps one and it did not grow); on success c's
 * counter becomes the new one. LLMOS_ERR_AUTH for a bad signature. */
LLMOS_API LLMOS_NODISCARD llmos_err passkey_verify_assertion(
    const passkey_expect *e, passkey_cred *c, const uint8_t *client_data, size_t cd_len,
    const uint8_t *auth_data, size_t ad_len, const uint8_t *sig, size_t sig_len);

#ifdef __cplusplus
}
#endif

#endif
