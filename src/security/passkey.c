/*
 * passkey.c - WebAuthn for the relying party (llmos/passkey.h): registrations with attestation
 * "none" or "packed" self-attestation, and assertions, with ES256 (OpenSSL) and EdDSA
 * (libsodium) keys.
 *
 * Formats (WebAuthn Level 2, section 6):
 *   authenticator data  rpIdHash[32] flags[1] signCount[4 BE]
 *                       [AT: aaguid[16] credIdLen[2 BE] credId[credIdLen] COSE_Key (CBOR)]
 *                       [ED: extensions (CBOR map)]
 *   attestation object  CBOR map {"fmt": text, "attStmt": map, "authData": bytes}
 *   COSE_Key            CBOR map {1: kty, 3: alg, -1: crv, -2: x, -3: y}: EC2 (kty 2) P-256
 *                       (crv 1) with alg -7, x and y 32 bytes each; OKP (kty 1) Ed25519 (crv 6)
 *                       with alg -8, x 32 bytes
 *   signed bytes        authenticatorData || SHA-256(clientDataJSON); ES256 signatures are
 *                       DER-encoded ECDSA, EdDSA ones 64 raw bytes
 *
 * All of it comes from the browser, that is from whoever sends the request: every length is
 * checked against what is there, CBOR items are typed before use, nothing is read past the
 * end (fuzz/fuzz_passkey.c).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sodium.h>

#include "llmos/json.h"
#include "llmos/passkey.h"

#define PK_CBOR_MAX   (64u * 1024) /* an attestation object, at most */
#define PK_CBOR_DEPTH 8            /* nesting of CBOR items, at most */

/* ---- CBOR helpers ---------------------------------------------------------------------- */

/* The integer value of a CBOR uint or negint item; false for anything else or out of range. */
static bool pk_int(const cbor_item_t *it, int64_t *out)
{
    if (!it || !cbor_is_int(it))
        return false;
    uint64_t v = cbor_get_int(it);
    if (v > INT64_MAX)
        return false;
    *out = cbor_isa_uint(it) ? (int64_t)v : -1 - (int64_t)v;
    return true;
}

/* The value of key `want` (an integer key) in map m, or NULL. */
static cbor_item_t *pk_map_int(const cbor_item_t *m, int64_t want)
{
    size_t n = cbor_map_size(m);
    struct cbor_pair *p = cbor_map_handle(m);
    for (size_t i = 0; i < n; i++) {
        int64_t k;
        if (pk_int(p[i].key, &k) && k == want)
            return p[i].value;
    }
    return NULL;
}

/* The value of key `want` (a text key) in map m, or NULL. */
static cbor_item_t *pk_map_str(const cbor_item_t *m, const char *want)
{
    size_t n = cbor_map_size(m), wl = strlen(want);
    struct cbor_pair *p = cbor_map_handle(m);
    for (size_t i = 0; i < n; i++) {
        const cbor_item_t *k = p[i].key;
        if (k && cbor_isa_string(k) && cbor_string_is_definite(k) && cbor_string_length(k) == wl &&
            memcmp(cbor_string_handle(k), want, wl) == 0)
            return p[i].value;
    }
    return NULL;
}

/* A definite byte string's bytes, or NULL. */
static const uint8_t *pk_bytes(const cbor_item_t *it, size_t *len)
{
    if (!it || !cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
        return NULL;
    *len = cbor_bytestring_length(it);
    return cbor_bytestring_handle(it);
}

/* Walk one CBOR item of d[0..len) before libcbor sees it, and say how many bytes it takes
 * (*used). libcbor allocates what a header declares (a map "of 2^57 entries" in nine bytes), so
 * every count is checked against the bytes left first (each item takes at least one), and
 * nesting is bounded. Only definite lengths: CTAP2's canonical CBOR has no others. */
static bool pk_cbor_check(const uint8_t *d, size_t len, int depth, size_t *used)
{
    if (len == 0 || depth > PK_CBOR_DEPTH)
        return false;
    uint8_t mt = d[0] >> 5, ai = d[0] & 0x1f;
    size_t pos = 1;
    uint64_t v = ai;
    if (ai >= 24 && ai <= 27) {
        size_t n = (size_t)1 << (ai - 24);
        if (len - pos < n)
            return false;
        v = 0;
        for (size_t i = 0; i < n; i++)
            v = v << 8 | d[pos + i];
        pos += n;
    } else if (ai > 27) {
        return false; /* reserved, or an indefinite length */
    }
    switch (mt) {
    case 0:
    case 1:
    case 7: break;
    case 2:
    case 3:
        if (v > len - pos)
            return false;
        pos += (size_t)v;
        break;
    case 4:
    case 5: {
        uint64_t items = mt == 5 ? 2 * v : v;
        if (v > len - pos || items > len - pos)
            return false;
        for (uint64_t i = 0; i < items; i++) {
            size_t n = 0;
            if (!pk_cbor_check(d + pos, len - pos, depth + 1, &n))
                return false;
            pos += n;
        }
        break;
    }
    case 6: {
        size_t n = 0;
        if (!pk_cbor_check(d + pos, len - pos, depth + 1, &n))
            return false;
        pos += n;
        break;
    }
    default: return false;
    }
    *used = pos;
    return true;
}

/* Load one CBOR item from data[0..len): *read how many bytes it took. */
static cbor_item_t *pk_load(const uint8_t *data, size_t len, size_t *read)
{
    size_t used = 0;
    if (!pk_cbor_check(data, len, 0, &used))
        return NULL;
    struct cbor_load_result res;
    cbor_item_t *it = cbor_load(data, used, &res);
    if (!it || res.error.code != CBOR_ERR_NONE) {
        if (it)
            cbor_decref(&it);
        return NULL;
    }
    *read = res.read;
    return it;
}

/* ---- keys and signatures -------------------------------------------------------------------- */

/* The COSE key in map m into c (alg, pub). */
static llmos_err pk_cose_key(const cbor_item_t *m, passkey_cred *c)
{
    if (!cbor_isa_map(m) || !cbor_map_is_definite(m))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "passkey: the credential's public key is not a COSE map");
    int64_t kty, alg, crv;
    if (!pk_int(pk_map_int(m, 1), &kty) || !pk_int(pk_map_int(m, 3), &alg) ||
        !pk_int(pk_map_int(m, -1), &crv))
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "passkey: the COSE key lacks its key type, algorithm or curve");
    size_t xl = 0, yl = 0;
    const uint8_t *x = pk_bytes(pk_map_int(m, -2), &xl);
    if (kty == 2 && alg == PASSKEY_ES256 && crv == 1) {
        const uint8_t *y = pk_bytes(pk_map_int(m, -3), &yl);
        if (!x || !y || xl != 32 || yl != 32)
            return llmos_fail(LLMOS_ERR_FORMAT, "passkey: a P-256 key needs x and y of 32 bytes");
        c->pub[0] = 0x04;
        memcpy(c->pub + 1, x, 32);
        memcpy(c->pub + 33, y, 32);
        c->pub_len = 65;
    } else if (kty == 1 && alg == PASSKEY_EDDSA && crv == 6) {
        if (!x || xl != 32)
            return llmos_fail(LLMOS_ERR_FORMAT, "passkey: an Ed25519 key needs x of 32 bytes");
        memcpy(c->pub, x, 32);
        c->pub_len = 32;
    } else {
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "passkey: key type %lld with algorithm %lld on curve %lld; llmos takes "
                          "ES256 (P-256) and EdDSA (Ed25519)",
                          (long long)kty, (long long)alg, (long long)crv);
    }
    c->alg = (int)alg;
    return LLMOS_OK;
}

/* The P-256 key of an uncompressed point (OpenSSL checks it is on the curve), or NULL. */
static EVP_PKEY *pk_p256(const uint8_t *pub, size_t len)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0),
        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, len),
        OSSL_PARAM_END,
    };
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    return key;
}

/* Is sig c's signature over authData || SHA-256(clientData)? */
static bool pk_signed(const passkey_cred *c, const uint8_t *auth_data, size_t ad_len,
                      const uint8_t *client_data, size_t cd_len, const uint8_t *sig, size_t sig_len)
{
    size_t n = ad_len + 32;
    uint8_t *msg = malloc(n);
    if (!msg)
        return false;
    memcpy(msg, auth_data, ad_len);
    crypto_hash_sha256(msg + ad_len, client_data, cd_len);
    bool ok = false;
    if (c->alg == PASSKEY_EDDSA && c->pub_len == 32) {
        ok = sig_len == crypto_sign_BYTES && crypto_sign_verify_detached(sig, msg, n, c->pub) == 0;
    } else if (c->alg == PASSKEY_ES256 && c->pub_len == 65) {
        EVP_PKEY *key = pk_p256(c->pub, c->pub_len);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        ok = key && md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, msg, n) == 1;
        EVP_MD_CTX_free(md);
        EVP_PKEY_free(key);
    }
    free(msg);
    return ok;
}

/* ---- authenticator data and client data --------------------------------------------------- */

llmos_err passkey_parse_auth_data(const uint8_t *d, size_t len, passkey_auth_data *out)
{
    assert(out);
    memset(out, 0, sizeof *out);
    if (!d || len < 37)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "passkey: authenticator data of %zu bytes; it has at least 37", len);
    memcpy(out->rp_id_hash, d, 32);
    out->flags = d[32];
    out->sign_count = (uint32_t)d[33] << 24 | (uint32_t)d[34] << 16 | (uint32_t)d[35] << 8 | d[36];
    size_t pos = 37;
    if (out->flags & PASSKEY_FLAG_AT) {
        if (len - pos < 18)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "passkey: the attested credential data is cut short");
        memcpy(out->cred.aaguid, d + pos, 16);
        size_t id_len = (size_t)d[pos + 16] << 8 | d[pos + 17];
        pos += 18;
        if (id_len == 0 || id_len > PASSKEY_ID_MAX)
            return llmos_fail(LLMOS_ERR_FORMAT,
                              "passkey: a credential id of %zu bytes (llmos takes 1 to %d)", id_len,
                              PASSKEY_ID_MAX);
        if (len - pos < id_len)
            return llmos_fail(LLMOS_ERR_FORMAT, "passkey: the credential id is cut short");
        memcpy(out->cred.id, d + pos, id_len);
        out->cred.id_len = id_len;
        pos += id_len;
        size_t read = 0;
        cbor_item_t *key = pk_load(d + pos, len - pos, &read);
        if (!key)
            return llmos_fail(LLMOS_ERR_FORMAT, "passkey: the credential's public key is not CBOR");
        llmos_err err = pk_cose_key(key, &out->cred);
        cbor_decref(&key);
        if (err)
            return err;
        pos += read;
        out->has_cred = true;
        out->cred.sign_count = out->sign_count;
    }
    if (out->flags & PASSKEY_FLAG_ED) {
        size_t read = 0;
        cbor_item_t *ext = pos < len ? pk_load(d + pos, len - pos, &read) : NULL;
        bool map = ext && cbor_isa_map(ext);
        if (ext)
            cbor_decref(&ext);
        if (!map)
            return llmos_fail(LLMOS_ERR_FORMAT, "passkey: the extensions are not a CBOR map");
        pos += read;
    }
    if (pos != len)
        return llmos_fail(LLMOS_ERR_FORMAT,
                          "passkey: %zu bytes after the end of the authenticator data", len - pos);
    return LLMOS_OK;
}

llmos_err passkey_check_client_data(const uint8_t *json, size_t len, const char *type,
                                    const passkey_expect *e)
{
    assert(type && e && e->origin && e->challenge);
    json_t *j = NULL;
    llmos_err err = ljson_parse_text((const char *)json, len, "clientDataJSON", 8, &j);
    if (err)
        return err;
    const char *t = ljson_get_string(j, "type", NULL), *ch = ljson_get_string(j, "challenge", NULL),
               *origin = ljson_get_string(j, "origin", NULL);
    uint8_t got[128];
    size_t got_len = 0;
    if (!json_is_object(j) || !t || !ch || !origin)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "passkey: the client data lacks its type, challenge or origin");
    else if (strcmp(t, type) != 0)
        err = llmos_fail(LLMOS_ERR_AUTH, "passkey: client data of type '%.40s', not '%s'", t, type);
    else if (sodium_base642bin(got, sizeof got, ch, strlen(ch), NULL, &got_len, NULL,
                               sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
             got_len != e->challenge_len || sodium_memcmp(got, e->challenge, got_len) != 0)
        err = llmos_fail(LLMOS_ERR_AUTH,
                         "passkey: the challenge is not the one this server issued (or it was "
                         "used already)");
    else if (strcmp(origin, e->origin) != 0)
        err = llmos_fail(LLMOS_ERR_AUTH, "passkey: origin '%.100s', this server is '%s'", origin,
                         e->origin);
    else if (json_is_true(json_object_get(j, "crossOrigin")))
        err = llmos_fail(LLMOS_ERR_AUTH, "passkey: a ceremony from a cross-origin frame");
    json_decref(j);
    return err;
}

/* The checks of authenticator data shared by both ceremonies. */
static llmos_err pk_check_auth_data(const passkey_auth_data *ad, const passkey_expect *e)
{
    uint8_t want[32];
    crypto_hash_sha256(want, (const uint8_t *)e->rp_id, strlen(e->rp_id));
    if (sodium_memcmp(want, ad->rp_id_hash, 32) != 0)
        return llmos_fail(LLMOS_ERR_AUTH, "passkey: the credential is for another RP ID than '%s'",
                          e->rp_id);
    if (!(ad->flags & PASSKEY_FLAG_UP))
        return llmos_fail(LLMOS_ERR_AUTH, "passkey: the authenticator saw no user present");
    if (e->require_uv && !(ad->flags & PASSKEY_FLAG_UV))
        return llmos_fail(LLMOS_ERR_AUTH, "passkey: the authenticator did not verify the user");
    return LLMOS_OK;
}

/* ---- the ceremonies ----------------------------------------------------------------------- */

llmos_err passkey_register(const passkey_expect *e, const uint8_t *client_data, size_t cd_len,
                           const uint8_t *attestation, size_t att_len, passkey_cred *out)
{
    assert(e && out);
    memset(out, 0, sizeof *out);
    llmos_err err = passkey_check_client_data(client_data, cd_len, "webauthn.create", e);
    if (err)
        return err;
    if (!attestation || att_len > PK_CBOR_MAX)
        return llmos_fail(LLMOS_ERR_FORMAT, "passkey: an attestation object of %zu bytes", att_len);
    size_t read = 0;
    cbor_item_t *obj = pk_load(attestation, att_len, &read);
    if (!obj || read != att_len || !cbor_isa_map(obj) || !cbor_map_is_definite(obj)) {
        if (obj)
            cbor_decref(&obj);
        return llmos_fail(LLMOS_ERR_FORMAT, "passkey: the attestation object is not one CBOR map");
    }
    const cbor_item_t *fmt = pk_map_str(obj, "fmt"), *stmt = pk_map_str(obj, "attStmt");
    size_t ad_len = 0;
    const uint8_t *ad = pk_bytes(pk_map_str(obj, "authData"), &ad_len);
    passkey_auth_data pad;
    if (!fmt || !cbor_isa_string(fmt) || !cbor_string_is_definite(fmt) || !stmt ||
        !cbor_isa_map(stmt) || !cbor_map_is_definite(stmt) || !ad)
        err = llmos_fail(LLMOS_ERR_FORMAT,
                         "passkey: the attestation object lacks fmt, attStmt or authData");
    if (!err)
        err = passkey_parse_auth_data(ad, ad_len, &pad);
    if (!err && !pad.has_cred)
        err = llmos_fail(LLMOS_ERR_FORMAT, "passkey: a registration without the new credential");
    if (!err)
        err = pk_check_auth_data(&pad, e);
    if (!err) {
        size_t fl = cbor_string_length(fmt);
        const char *f = (const char *)cbor_string_handle(fmt);
        if (fl == 4 && memcmp(f, "none", 4) == 0) {
            if (cbor_map_size(stmt) != 0)
                err = llmos_fail(LLMOS_ERR_FORMAT, "passkey: attestation 'none' with a statement");
        } else if (fl == 6 && memcmp(f, "packed", 6) == 0) {
            int64_t alg;
            size_t sl = 0;
            const uint8_t *sig = pk_bytes(pk_map_str(stmt, "sig"), &sl);
            if (pk_map_str(stmt, "x5c") || pk_map_str(stmt, "ecdaaKeyId"))
                err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                                 "passkey: 'packed' attestation with a certificate; llmos takes "
                                 "self-attestation or none (ask the browser for attestation "
                                 "'none')");
            else if (!pk_int(pk_map_str(stmt, "alg"), &alg) || !sig)
                err = llmos_fail(LLMOS_ERR_FORMAT, "passkey: 'packed' attestation without alg "
                                                   "and sig");
            else if (alg != pad.cred.alg)
                err = llmos_fail(LLMOS_ERR_AUTH,
                                 "passkey: self-attestation with algorithm %lld "
                                 "for a key of algorithm %d",
                                 (long long)alg, pad.cred.alg);
            else if (!pk_signed(&pad.cred, ad, ad_len, client_data, cd_len, sig, sl))
                err = llmos_fail(LLMOS_ERR_AUTH, "passkey: the self-attestation signature does "
                                                 "not verify");
        } else {
            err = llmos_fail(LLMOS_ERR_UNSUPPORTED,
                             "passkey: attestation format '%.*s'; llmos takes 'none' and 'packed' "
                             "self-attestation",
                             (int)(fl > 40 ? 40 : fl), f);
        }
    }
    /* a P-256 key must be a point of the curve: OpenSSL checks when it builds the key */
    if (!err && pad.cred.alg == PASSKEY_ES256) {
        EVP_PKEY *k = pk_p256(pad.cred.pub, pad.cred.pub_len);
        if (!k)
            err =
                llmos_fail(LLMOS_ERR_FORMAT, "passkey: the P-256 key is not a point of the curve");
        EVP_PKEY_free(k);
    }
    cbor_decref(&obj);
    if (!err)
        *out = pad.cred;
    return err;
}

llmos_err passkey_verify_assertion(const passkey_expect *e, passkey_cred *c,
                                   const uint8_t *client_data, size_t cd_len,
                                   const uint8_t *auth_data, size_t ad_len, const uint8_t *sig,
                                   size_t sig_len)
{
    assert(e && c);
    llmos_err err = passkey_check_client_data(client_data, cd_len, "webauthn.get", e);
    passkey_auth_data ad = {0};
    if (!err)
        err = passkey_parse_auth_data(auth_data, ad_len, &ad);
    if (!err)
        err = pk_check_auth_data(&ad, e);
    if (!err && (!sig || !pk_signed(c, auth_data, ad_len, client_data, cd_len, sig, sig_len)))
        err = llmos_fail(LLMOS_ERR_AUTH, "passkey: the assertion's signature does not verify");
    /* the counter: an authenticator that keeps one (either value nonzero) must show a larger
     * one each time; the same or a smaller one means a clone or a replay */
    if (!err && (ad.sign_count || c->sign_count) && ad.sign_count <= c->sign_count)
        err = llmos_fail(LLMOS_ERR_AUTH,
                         "passkey: the signature counter went from %u to %u: a replayed "
                         "assertion or a cloned authenticator",
                         c->sign_count, ad.sign_count);
    if (!err)
        c->sign_count = ad.sign_count;
    return err;
}
