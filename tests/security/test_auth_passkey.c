/*
 * test_auth_passkey.c - passkeys of accounts (auth_passkey_*, src/security/auth.c) with a
 * software authenticator made here (an Ed25519 key and a PRF secret, as a CTAP2 authenticator
 * with hmac-secret has): adding one needs the passphrase; logging in with it opens the account's
 * store with the unwrapped copy of its key; a replayed assertion (its challenge spent), an old
 * counter, a wrong PRF secret, another origin and an unknown credential are refused, counted
 * toward the lockout and audited.
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
#include <sodium.h>

#include "llmos/auth.h"
#include "llmos/json.h"
#include "llmos/passkey.h"
#include "testutil.h"

#define RP     "localhost"
#define ORIGIN "https://localhost:8443"

static char dir[256];
static char events[64][300];
static size_t n_events;
static int n_open;

static void record(void *ctx, const char *event, const char *account, const char *peer,
                   const char *detail)
{
    (void)ctx;
    if (n_events < 64)
        snprintf(events[n_events++], sizeof events[0], "%s %s %s %s", event, account, peer, detail);
}

static size_t count_events(const char *prefix, const char *part)
{
    size_t n = 0;
    for (size_t i = 0; i < n_events; i++)
        n += strncmp(events[i], prefix, strlen(prefix)) == 0 && (!part || strstr(events[i], part));
    return n;
}

/* The opener: the account's store, opened with the passphrase or the data key (a wrong key
 * fails there), and a kernel session over it. */
typedef struct opened {
    store *st;
    kernel *k;
} opened;

static llmos_err test_open(void *ctx, const char *account, const char *home, const char *pass,
                           const uint8_t *data_key, void **handle, ksession **ses)
{
    (void)ctx;
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s/store", home);
    opened *o = calloc(1, sizeof *o);
    store_options so = {.no_create = true, .no_fsync = true, .data_key = data_key};
    llmos_err err = store_open(sdir, pass, &so, &o->st);
    store_stats stats;
    if (!err)
        err = store_get_stats(o->st, &stats); /* reads pages: a wrong key fails here */
    kernel_config kc = {.st = o->st};
    if (!err)
        err = kernel_new(&kc, &o->k);
    ksession_params sp = {.principal = account, .device = "test", .rights = KRIGHT_ALL};
    if (!err)
        err = ksession_open(o->k, &sp, ses);
    if (err) {
        kernel_free(o->k);
        store_close(o->st);
        free(o);
        return err;
    }
    *handle = o;
    n_open++;
    return LLMOS_OK;
}

static void test_close(void *ctx, void *handle)
{
    (void)ctx;
    opened *o = handle;
    kernel_free(o->k);
    store_close(o->st);
    free(o);
    n_open--;
}

/* ---- a software authenticator (TEST DOUBLE): Ed25519, a counter, a PRF secret ------------ */

typedef struct soft_authenticator_double {
    uint8_t pk[32], sk[64], id[16], prf_key[32];
    uint32_t counter;
} soft_authenticator_double;

static void add(cbor_item_t *m, cbor_item_t *k, cbor_item_t *v)
{
    assert_true(cbor_map_add(m, (struct cbor_pair){.key = cbor_move(k), .value = cbor_move(v)}));
}

static size_t b64url_decode(const char *s, uint8_t *out, size_t max)
{
    size_t n = 0;
    assert_int_equal(sodium_base642bin(out, max, s, strlen(s), NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    return n;
}

/* What the authenticator's PRF gives for salt (HMAC of the salt under its own key). */
static void prf_eval(const soft_authenticator_double *a, const char *salt64, uint8_t out[32])
{
    uint8_t salt[64];
    size_t n = b64url_decode(salt64, salt, sizeof salt);
    crypto_auth_hmacsha256(out, salt, n, a->prf_key);
}

static size_t client_data(const char *type, const char *challenge64, const char *origin, char *out)
{
    return (size_t)sprintf(out, "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"%s\"}", type,
                           challenge64, origin);
}

static size_t auth_data(soft_authenticator_double *a, bool cred, uint8_t *out)
{
    crypto_hash_sha256(out, (const uint8_t *)RP, strlen(RP));
    out[32] = PASSKEY_FLAG_UP | PASSKEY_FLAG_UV | (cred ? PASSKEY_FLAG_AT : 0);
    uint32_t c = a->counter;
    out[33] = (uint8_t)(c >> 24), out[34] = (uint8_t)(c >> 16), out[35] = (uint8_t)(c >> 8);
    out[36] = (uint8_t)c;
    size_t n = 37;
    if (cred) {
        memset(out + n, 0, 16);
        n += 16;
        out[n++] = 0;
        out[n++] = sizeof a->id;
        memcpy(out + n, a->id, sizeof a->id);
        n += sizeof a->id;
        cbor_item_t *k = cbor_new_definite_map(4);
        add(k, cbor_build_uint8(1), cbor_build_uint8(1));
        add(k, cbor_build_uint8(3), cbor_build_negint8(7));
        add(k, cbor_build_negint8(0), cbor_build_uint8(6));
        add(k, cbor_build_negint8(1), cbor_build_bytestring(a->pk, 32));
        unsigned char *buf = NULL;
        size_t size = 0, len = cbor_serialize_alloc(k, &buf, &size);
        memcpy(out + n, buf, len);
        n += len;
        free(buf);
        cbor_decref(&k);
    }
    return n;
}

static const char *options_get(const json_t *opt, const char *key)
{
    return ljson_get_string(ljson_get_object(opt, "publicKey"), key, "");
}

static const char *options_salt(const json_t *opt)
{
    json_t *pk = ljson_get_object(opt, "publicKey");
    return ljson_get_string(
        ljson_get_object(ljson_get_object(ljson_get_object(pk, "extensions"), "prf"), "eval"),
        "first", "");
}

/* ---- the fixture ------------------------------------------------------------------------- */

static auth_server *a;
static soft_authenticator_double dev;
static char token[AUTH_TOKEN_CHARS + 1];

static int setup(void **state)
{
    (void)state;
    n_events = 0;
    n_open = 0;
    if (!tu_mkdtemp("authpk", dir, sizeof dir))
        return -1;
    auth_params p = {.dir = dir, .audit = record, .max_failures = 4, .per_peer_per_minute = 100};
    if (keys_kdf_parse("test-weak", &p.kdf))
        return -1;
    p.opener = (auth_opener){.open = test_open, .close = test_close};
    if (auth_account_add(&p, "alice", "alice-passphrase") || auth_new(&p, &a))
        return -1;
    crypto_sign_keypair(dev.pk, dev.sk);
    randombytes_buf(dev.id, sizeof dev.id);
    randombytes_buf(dev.prf_key, sizeof dev.prf_key);
    dev.counter = 0;
    auth_login_result r;
    if (auth_login(a, "alice", "alice-passphrase", "127.0.0.1", &r, NULL))
        return -1;
    memcpy(token, r.token, sizeof token);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    auth_free(a);
    a = NULL;
    tu_rmrf(dir);
    return 0;
}

/* Register dev for alice with passphrase; the result of auth_passkey_add. */
static llmos_err register_dev(const char *passphrase)
{
    json_t *opt = NULL;
    assert_int_equal(auth_passkey_options(a, token, NULL, RP, &opt), LLMOS_OK);
    char cd[512];
    size_t cd_len = client_data("webauthn.create", options_get(opt, "challenge"), ORIGIN, cd);
    uint8_t ad[512];
    size_t ad_len = auth_data(&dev, true, ad);
    cbor_item_t *obj = cbor_new_definite_map(3);
    add(obj, cbor_build_string("fmt"), cbor_build_string("none"));
    add(obj, cbor_build_string("attStmt"), cbor_new_definite_map(0));
    add(obj, cbor_build_string("authData"), cbor_build_bytestring(ad, ad_len));
    unsigned char *att = NULL;
    size_t size = 0, att_len = cbor_serialize_alloc(obj, &att, &size);
    cbor_decref(&obj);
    uint8_t prf[32];
    prf_eval(&dev, options_salt(opt), prf);
    llmos_err err = auth_passkey_add(a, token, passphrase, RP, ORIGIN, (const uint8_t *)cd, cd_len,
                                     att, att_len, prf, "127.0.0.1");
    free(att);
    json_decref(opt);
    return err;
}

/* One assertion as the browser would send it. */
typedef struct assertion {
    char cd[512];
    size_t cd_len;
    uint8_t ad[64];
    size_t ad_len;
    uint8_t sig[64];
    uint8_t prf[32];
} assertion;

static void make_assertion(const char *origin, assertion *x)
{
    json_t *opt = NULL;
    assert_int_equal(auth_passkey_options(a, NULL, "alice", RP, &opt), LLMOS_OK);
    x->cd_len = client_data("webauthn.get", options_get(opt, "challenge"), origin, x->cd);
    dev.counter++;
    x->ad_len = auth_data(&dev, false, x->ad);
    uint8_t msg[128];
    memcpy(msg, x->ad, x->ad_len);
    crypto_hash_sha256(msg + x->ad_len, (const uint8_t *)x->cd, x->cd_len);
    crypto_sign_detached(x->sig, NULL, msg, x->ad_len + 32, dev.sk);
    prf_eval(&dev, options_salt(opt), x->prf);
    json_decref(opt);
}

static llmos_err send_assertion(const assertion *x, auth_login_result *r)
{
    return auth_passkey_login(a, "alice", RP, ORIGIN, dev.id, sizeof dev.id, (const uint8_t *)x->cd,
                              x->cd_len, x->ad, x->ad_len, x->sig, 64, x->prf, "10.1.1.1", r, NULL);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_a_passkey_opens_the_store(void **state)
{
    (void)state;
    assert_int_equal(register_dev("not-the-passphrase"), LLMOS_ERR_AUTH);
    assert_int_equal(register_dev("alice-passphrase"), LLMOS_OK);
    assert_int_equal(count_events("passkey.add alice", "added: EdDSA"), 1);
    /* everyone logs out: the store's key is gone from memory */
    size_t n = 0;
    auth_revoke_account(a, "alice", &n);
    assert_int_equal(n_open, 0);

    assertion x;
    make_assertion(ORIGIN, &x);
    auth_login_result r;
    assert_int_equal(send_assertion(&x, &r), LLMOS_OK);
    assert_int_equal(n_open, 1); /* opened with the key the passkey unwrapped */
    ksession *ses;
    auth_ref *ref;
    assert_int_equal(auth_session(a, r.token, &ses, &ref, NULL, NULL), LLMOS_OK);
    assert_string_equal(ksession_principal(ses), "alice");
    auth_release(a, ref);
    assert_int_equal(count_events("login alice 10.1.1.1 passkey", NULL), 1);

    /* the same assertion again: its challenge is spent */
    assert_int_equal(send_assertion(&x, &r), LLMOS_ERR_AUTH);
    assert_int_equal(count_events("login.failed alice", "challenge"), 1);

    /* a fresh challenge, an authenticator whose counter went back (a clone) */
    dev.counter -= 1;
    make_assertion(ORIGIN, &x);
    assert_int_equal(send_assertion(&x, &r), LLMOS_ERR_AUTH);
    assert_int_equal(count_events("login.failed alice", "counter"), 1);
}

static void test_passkey_refusals(void **state)
{
    (void)state;
    assert_int_equal(register_dev("alice-passphrase"), LLMOS_OK);
    auth_login_result r;
    assertion x;

    make_assertion("https://evil.example", &x); /* another origin */
    assert_int_equal(send_assertion(&x, &r), LLMOS_ERR_AUTH);
    assert_int_equal(count_events("login.failed alice", "origin"), 1);

    make_assertion(ORIGIN, &x); /* a wrong PRF secret: the copy does not unwrap */
    x.prf[0] ^= 1;
    assert_int_equal(send_assertion(&x, &r), LLMOS_ERR_AUTH);
    assert_int_equal(count_events("login.failed alice", "unwrap"), 1);

    make_assertion(ORIGIN, &x); /* a credential alice does not have */
    uint8_t other[16] = {1};
    assert_int_equal(auth_passkey_login(a, "alice", RP, ORIGIN, other, sizeof other,
                                        (const uint8_t *)x.cd, x.cd_len, x.ad, x.ad_len, x.sig, 64,
                                        x.prf, "10.1.1.1", &r, NULL),
                     LLMOS_ERR_AUTH);

    /* four failures in a row: locked, passkey or not */
    make_assertion(ORIGIN, &x);
    x.sig[3] ^= 1;
    assert_int_equal(send_assertion(&x, &r), LLMOS_ERR_AUTH);
    make_assertion(ORIGIN, &x);
    assert_int_equal(send_assertion(&x, &r), LLMOS_ERR_DENIED);
    assert_int_equal(count_events("lockout alice", NULL), 1);

    /* options for an unknown account look the same */
    json_t *opt = NULL;
    assert_int_equal(auth_passkey_options(a, NULL, "nobody", RP, &opt), LLMOS_OK);
    assert_int_equal(
        json_array_size(ljson_get_array(ljson_get_object(opt, "publicKey"), "allowCredentials")),
        1);
    json_decref(opt);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_passkey_opens_the_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passkey_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
