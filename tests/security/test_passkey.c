/*
 * test_passkey.c - WebAuthn checks (src/security/passkey.c) with authenticators made here: an
 * ES256 key (OpenSSL) and an Ed25519 key (libsodium) that sign what a real authenticator signs,
 * in CBOR built with libcbor. Registrations with attestation "none" and "packed"
 * self-attestation are accepted; a wrong challenge, origin, type or RP ID, a missing user
 * presence, a bad signature, trailing bytes, certificates and a counter that does not grow
 * (a replayed assertion) are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "llmos/passkey.h"

#define RP     "localhost"
#define ORIGIN "https://localhost:8443"

static const uint8_t challenge[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

/* A test authenticator: one key, a counter. */
typedef struct authr {
    int alg;
    EVP_PKEY *ec;
    uint8_t ed_pk[32], ed_sk[64];
    uint8_t id[16];
    uint32_t counter;
} authr;

static void authr_new(authr *a, int alg)
{
    memset(a, 0, sizeof *a);
    a->alg = alg;
    randombytes_buf(a->id, sizeof a->id);
    if (alg == PASSKEY_ES256)
        assert_non_null(a->ec = EVP_EC_gen("P-256"));
    else
        crypto_sign_keypair(a->ed_pk, a->ed_sk);
}

static void authr_free(authr *a)
{
    EVP_PKEY_free(a->ec);
}

static void add(cbor_item_t *map, cbor_item_t *k, cbor_item_t *v)
{
    assert_true(cbor_map_add(map, (struct cbor_pair){.key = cbor_move(k), .value = cbor_move(v)}));
}

static cbor_item_t *cose_key(const authr *a)
{
    cbor_item_t *m = cbor_new_definite_map(5);
    if (a->alg == PASSKEY_ES256) {
        uint8_t pt[65];
        size_t n = 0;
        assert_int_equal(
            EVP_PKEY_get_octet_string_param(a->ec, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &n), 1);
        assert_int_equal(n, 65);
        add(m, cbor_build_uint8(1), cbor_build_uint8(2));
        add(m, cbor_build_uint8(3), cbor_build_negint8(6)); /* -7 */
        add(m, cbor_build_negint8(0), cbor_build_uint8(1));
        add(m, cbor_build_negint8(1), cbor_build_bytestring(pt + 1, 32));
        add(m, cbor_build_negint8(2), cbor_build_bytestring(pt + 33, 32));
    } else {
        add(m, cbor_build_uint8(1), cbor_build_uint8(1));
        add(m, cbor_build_uint8(3), cbor_build_negint8(7)); /* -8 */
        add(m, cbor_build_negint8(0), cbor_build_uint8(6));
        add(m, cbor_build_negint8(1), cbor_build_bytestring(a->ed_pk, 32));
    }
    return m;
}

/* Authenticator data for rp with flags; with the credential when `cred`. */
static size_t auth_data(authr *a, const char *rp, uint8_t flags, bool cred, uint8_t *out)
{
    crypto_hash_sha256(out, (const uint8_t *)rp, strlen(rp));
    out[32] = flags | (cred ? PASSKEY_FLAG_AT : 0);
    uint32_t c = a->counter;
    out[33] = (uint8_t)(c >> 24), out[34] = (uint8_t)(c >> 16), out[35] = (uint8_t)(c >> 8),
    out[36] = (uint8_t)c;
    size_t n = 37;
    if (cred) {
        memset(out + n, 0xaa, 16);
        n += 16;
        out[n++] = 0;
        out[n++] = sizeof a->id;
        memcpy(out + n, a->id, sizeof a->id);
        n += sizeof a->id;
        cbor_item_t *k = cose_key(a);
        unsigned char *buf = NULL;
        size_t size = 0, len = cbor_serialize_alloc(k, &buf, &size);
        memcpy(out + n, buf, len);
        n += len;
        free(buf);
        cbor_decref(&k);
    }
    return n;
}

static size_t client_data(const char *type, const uint8_t *ch, const char *origin, char *out)
{
    char b64[64];
    sodium_bin2base64(b64, sizeof b64, ch, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return (size_t)sprintf(out,
                           "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"%s\","
                           "\"crossOrigin\":false}",
                           type, b64, origin);
}

/* a's signature over ad || SHA-256(cd). */
static size_t sign(const authr *a, const uint8_t *ad, size_t ad_len, const char *cd, uint8_t *sig)
{
    uint8_t msg[1024];
    memcpy(msg, ad, ad_len);
    crypto_hash_sha256(msg + ad_len, (const uint8_t *)cd, strlen(cd));
    if (a->alg == PASSKEY_EDDSA) {
        crypto_sign_detached(sig, NULL, msg, ad_len + 32, a->ed_sk);
        return 64;
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = 128;
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->ec), 1);
    assert_int_equal(EVP_DigestSign(md, sig, &n, msg, ad_len + 32), 1);
    EVP_MD_CTX_free(md);
    return n;
}

/* An attestation object of format fmt ("none", "packed" self, "packed-x5c"). */
static size_t attestation(authr *a, const char *fmt, const char *rp, uint8_t flags, const char *cd,
                          uint8_t *out)
{
    uint8_t ad[512];
    size_t ad_len = auth_data(a, rp, flags, true, ad);
    cbor_item_t *stmt = cbor_new_definite_map(3);
    if (strncmp(fmt, "packed", 6) == 0) {
        uint8_t sig[128];
        size_t sl = sign(a, ad, ad_len, cd, sig);
        add(stmt, cbor_build_string("alg"),
            a->alg == PASSKEY_ES256 ? cbor_build_negint8(6) : cbor_build_negint8(7));
        add(stmt, cbor_build_string("sig"), cbor_build_bytestring(sig, sl));
        if (strcmp(fmt, "packed-x5c") == 0) {
            cbor_item_t *chain = cbor_new_definite_array(1);
            assert_true(cbor_array_push(chain, cbor_move(cbor_build_bytestring(sig, 8))));
            add(stmt, cbor_build_string("x5c"), chain);
        }
    }
    cbor_item_t *obj = cbor_new_definite_map(3);
    add(obj, cbor_build_string("fmt"),
        cbor_build_string(strncmp(fmt, "packed", 6) == 0 ? "packed" : fmt));
    add(obj, cbor_build_string("attStmt"), stmt);
    add(obj, cbor_build_string("authData"), cbor_build_bytestring(ad, ad_len));
    unsigned char *buf = NULL;
    size_t size = 0, len = cbor_serialize_alloc(obj, &buf, &size);
    memcpy(out, buf, len);
    free(buf);
    cbor_decref(&obj);
    return len;
}

static passkey_expect expect(void)
{
    return (passkey_expect){
        .rp_id = RP, .origin = ORIGIN, .challenge = challenge, .challenge_len = sizeof challenge};
}

static llmos_err do_register(authr *a, const char *fmt, const char *type, const uint8_t *ch,
                             const char *origin, const char *rp, uint8_t flags, passkey_cred *c)
{
    char cd[512];
    size_t cd_len = client_data(type, ch, origin, cd);
    uint8_t att[2048];
    size_t att_len = attestation(a, fmt, rp, flags, cd, att);
    passkey_expect e = expect();
    return passkey_register(&e, (const uint8_t *)cd, cd_len, att, att_len, c);
}

static llmos_err do_assert(authr *a, passkey_cred *c, const uint8_t *ch, uint8_t flags,
                           bool corrupt)
{
    char cd[512];
    size_t cd_len = client_data("webauthn.get", ch, ORIGIN, cd);
    uint8_t ad[64], sig[128];
    size_t ad_len = auth_data(a, RP, flags, false, ad);
    size_t sl = sign(a, ad, ad_len, cd, sig);
    if (corrupt)
        sig[sl / 2] ^= 1;
    passkey_expect e = expect();
    return passkey_verify_assertion(&e, c, (const uint8_t *)cd, cd_len, ad, ad_len, sig, sl);
}

static void both_algorithms(const char *fmt)
{
    const int algs[] = {PASSKEY_ES256, PASSKEY_EDDSA};
    for (size_t i = 0; i < 2; i++) {
        authr a;
        authr_new(&a, algs[i]);
        passkey_cred c;
        assert_int_equal(do_register(&a, fmt, "webauthn.create", challenge, ORIGIN, RP,
                                     PASSKEY_FLAG_UP | PASSKEY_FLAG_UV, &c),
                         LLMOS_OK);
        assert_int_equal(c.alg, algs[i]);
        assert_memory_equal(c.id, a.id, sizeof a.id);
        a.counter = 1;
        assert_int_equal(do_assert(&a, &c, challenge, PASSKEY_FLAG_UP, false), LLMOS_OK);
        assert_int_equal(c.sign_count, 1);
        /* the same assertion again: the counter did not grow */
        assert_int_equal(do_assert(&a, &c, challenge, PASSKEY_FLAG_UP, false), LLMOS_ERR_AUTH);
        a.counter = 2;
        assert_int_equal(do_assert(&a, &c, challenge, PASSKEY_FLAG_UP, true), LLMOS_ERR_AUTH);
        assert_int_equal(c.sign_count, 1);
        assert_int_equal(do_assert(&a, &c, challenge, 0, false), LLMOS_ERR_AUTH); /* no UP */
        assert_int_equal(do_assert(&a, &c, challenge, PASSKEY_FLAG_UP, false), LLMOS_OK);
        /* another authenticator's signature */
        authr b;
        authr_new(&b, algs[i]);
        b.counter = 9;
        assert_int_equal(do_assert(&b, &c, challenge, PASSKEY_FLAG_UP, false), LLMOS_ERR_AUTH);
        authr_free(&b);
        authr_free(&a);
    }
}

static void test_none_attestation_and_assertions(void **state)
{
    (void)state;
    both_algorithms("none");
}

static void test_packed_self_attestation(void **state)
{
    (void)state;
    both_algorithms("packed");
}

static void test_registration_refusals(void **state)
{
    (void)state;
    authr a;
    authr_new(&a, PASSKEY_ES256);
    passkey_cred c;
    uint8_t other[32] = {9};
    const uint8_t f = PASSKEY_FLAG_UP;
    assert_int_equal(do_register(&a, "none", "webauthn.get", challenge, ORIGIN, RP, f, &c),
                     LLMOS_ERR_AUTH);
    assert_int_equal(do_register(&a, "none", "webauthn.create", other, ORIGIN, RP, f, &c),
                     LLMOS_ERR_AUTH);
    assert_int_equal(
        do_register(&a, "none", "webauthn.create", challenge, "https://evil.example", RP, f, &c),
        LLMOS_ERR_AUTH);
    assert_int_equal(
        do_register(&a, "none", "webauthn.create", challenge, ORIGIN, "evil.example", f, &c),
        LLMOS_ERR_AUTH);
    assert_int_equal(do_register(&a, "none", "webauthn.create", challenge, ORIGIN, RP, 0, &c),
                     LLMOS_ERR_AUTH);
    assert_int_equal(do_register(&a, "packed-x5c", "webauthn.create", challenge, ORIGIN, RP, f, &c),
                     LLMOS_ERR_UNSUPPORTED);
    assert_int_equal(do_register(&a, "tpm", "webauthn.create", challenge, ORIGIN, RP, f, &c),
                     LLMOS_ERR_UNSUPPORTED);
    /* require_uv refuses an authenticator that did not verify the user */
    char cd[512];
    size_t cd_len = client_data("webauthn.create", challenge, ORIGIN, cd);
    uint8_t att[2048];
    size_t att_len = attestation(&a, "none", RP, f, cd, att);
    passkey_expect e = expect();
    e.require_uv = true;
    assert_int_equal(passkey_register(&e, (const uint8_t *)cd, cd_len, att, att_len, &c),
                     LLMOS_ERR_AUTH);
    e.require_uv = false;
    /* a byte more, a byte less */
    att[att_len] = 0;
    assert_int_equal(passkey_register(&e, (const uint8_t *)cd, cd_len, att, att_len + 1, &c),
                     LLMOS_ERR_FORMAT);
    for (size_t cut = 0; cut < att_len; cut += 7)
        assert_int_not_equal(passkey_register(&e, (const uint8_t *)cd, cd_len, att, cut, &c),
                             LLMOS_OK);
    authr_free(&a);
}

static void test_auth_data_parser(void **state)
{
    (void)state;
    authr a;
    authr_new(&a, PASSKEY_EDDSA);
    a.counter = 0x01020304;
    uint8_t ad[512];
    size_t n = auth_data(&a, RP, PASSKEY_FLAG_UP, true, ad);
    passkey_auth_data out;
    assert_int_equal(passkey_parse_auth_data(ad, n, &out), LLMOS_OK);
    assert_int_equal(out.sign_count, 0x01020304);
    assert_true(out.has_cred);
    assert_int_equal(out.cred.pub_len, 32);
    assert_memory_equal(out.cred.pub, a.ed_pk, 32);
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(passkey_parse_auth_data(ad, cut, &out), LLMOS_ERR_FORMAT);
    ad[32] |= PASSKEY_FLAG_ED; /* extensions announced, none there */
    assert_int_equal(passkey_parse_auth_data(ad, n, &out), LLMOS_ERR_FORMAT);
    authr_free(&a);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_attestation_and_assertions),
        cmocka_unit_test(test_packed_self_attestation),
        cmocka_unit_test(test_registration_refusals),
        cmocka_unit_test(test_auth_data_parser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
