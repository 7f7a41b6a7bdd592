/*
 * test_store.c - the app store's pieces without a network: canonical JSON, manifests (strict
 * parsing: canonical bytes, path traversal, absolute paths, huge sizes, provenance that does
 * not speak of the files), versions, the trust policy and the verification of a signed
 * manifest against it (untrusted, revoked, wrong publisher, wrong kind, unsigned), and the
 * store on disk (install, resolve, verify before a load, a tampered blob, no downgrade, rm).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/apps.h"
#include "llmos/json.h"
#include "testutil.h"

static const char *const ZERO64 =
    "0000000000000000000000000000000000000000000000000000000000000000";

static void test_canonical(void **state)
{
    (void)state;
    json_t *j = json_loads("{\"b\":[1,true,null,\"x\\u0001\\n\\\"\"],\"a\":{\"z\":-5,\"é\":\"ü\"}}",
                           0, NULL);
    assert_non_null(j);
    llmos_buf b = {0};
    assert_int_equal(apps_canonical_json(j, &b), LLMOS_OK);
    assert_string_equal(b.data,
                        "{\"a\":{\"z\":-5,\"é\":\"ü\"},\"b\":[1,true,null,\"x\\u0001\\n\\\"\"]}");
    json_decref(j);
    j = json_pack("{s:f}", "x", 1.5);
    buf_clear(&b);
    assert_int_equal(apps_canonical_json(j, &b), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "integers only"));
    json_decref(j);
    buf_free(&b);
}

static void test_versions_names_paths(void **state)
{
    (void)state;
    assert_true(apps_version_cmp("1.2.0", "1.10.0") < 0);
    assert_true(apps_version_cmp("2", "1.99.99") > 0);
    assert_int_equal(apps_version_cmp("1.0", "1.0.0"), 0);
    assert_true(apps_version_cmp("1.0.0-rc1", "1.0.0") < 0);
    assert_true(apps_version_cmp("1.0.0-rc2", "1.0.0-rc1") > 0);
    assert_int_equal(apps_version_check("01.2", "v"), LLMOS_ERR_FORMAT);
    assert_int_equal(apps_version_check("1.2.3.4.5", "v"), LLMOS_ERR_FORMAT);
    assert_int_equal(apps_version_check("1.x", "v"), LLMOS_ERR_FORMAT);
    assert_int_equal(apps_name_check("tiny-stories_1.0", "n"), LLMOS_OK);
    assert_int_equal(apps_name_check("Tiny", "n"), LLMOS_ERR_FORMAT);
    assert_int_equal(apps_name_check("a/b", "n"), LLMOS_ERR_FORMAT);
    assert_int_equal(apps_name_check("a..b", "n"), LLMOS_ERR_FORMAT);
    assert_int_equal(apps_path_check("weights/model.gguf", "p"), LLMOS_OK);
    const char *bad[] = {"../x", "a/../../etc/passwd", "/etc/passwd", "a//b", "./a",
                         "a/",   "a\\..\\b",           "c:x",         "a\nb", ""};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++)
        assert_int_equal(apps_path_check(bad[i], "p"), LLMOS_ERR_FORMAT);
}

/* A manifest of one file with these digests and size. */
static void build(llmos_buf *out, const char *name, const char *version, const char *publisher,
                  apps_kind kind, const char *path, const char *sha, uint64_t size)
{
    apps_file f = {.path = path, .size = size};
    memcpy(f.sha256, sha, APPS_SHA256_HEX);
    const char *caps[] = {"compute"};
    apps_manifest_params mp = {.name = name,
                               .version = version,
                               .publisher = publisher,
                               .kind = kind,
                               .caps = caps,
                               .n_caps = 1,
                               .files = &f,
                               .n_files = 1,
                               .source = "git+https://example.invalid/tiny",
                               .source_sha = "abc123",
                               .builder = "https://example.invalid/ci"};
    buf_clear(out);
    assert_int_equal(apps_manifest_build(&mp, out), LLMOS_OK);
}

/* Parse text as JSON, apply a change, write it canonically: a manifest someone edited. */
static void edit(llmos_buf *b, const char *key, json_t *value)
{
    json_t *j = json_loadb(b->data, b->len, 0, NULL);
    assert_non_null(j);
    json_object_set_new(j, key, value);
    buf_clear(b);
    assert_int_equal(apps_canonical_json(j, b), LLMOS_OK);
    json_decref(j);
}

static void test_manifest_parse(void **state)
{
    (void)state;
    llmos_buf b = {0};
    build(&b, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", ZERO64, 123);
    apps_manifest *m = NULL;
    assert_int_equal(apps_manifest_parse(b.data, b.len, &m), LLMOS_OK);
    assert_string_equal(m->name, "tiny");
    assert_string_equal(m->publisher, "acme");
    assert_int_equal(m->kind, APPS_KIND_MODEL);
    assert_int_equal(m->n_files, 1);
    assert_int_equal(m->files[0].size, 123);
    assert_int_equal(m->n_caps, 1);
    assert_string_equal(ljson_get_string(m->provenance, "predicateType", ""),
                        "https://slsa.dev/provenance/v1");
    apps_manifest_free(m);

    /* the same value with whitespace: not the bytes signed */
    llmos_buf spaced = {0};
    assert_int_equal(buf_append(&spaced, b.data, b.len), LLMOS_OK);
    assert_int_equal(buf_putc(&spaced, '\n'), LLMOS_OK);
    assert_int_equal(apps_manifest_parse(spaced.data, spaced.len, &m), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "canonical"));
    buf_free(&spaced);

    /* path traversal and absolute paths in file names */
    const char *bad_paths[] = {"../../.bashrc", "/etc/passwd", "a/./b"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad_paths); i++) {
        llmos_buf e = {0};
        build(&e, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", ZERO64, 1);
        edit(&e, "files",
             json_pack("[{s:s, s:s, s:i}]", "path", bad_paths[i], "sha256", ZERO64, "size", 1));
        assert_int_equal(apps_manifest_parse(e.data, e.len, &m), LLMOS_ERR_FORMAT);
        assert_non_null(strstr(llmos_errmsg(), "path"));
        buf_free(&e);
    }
    /* a huge declared size */
    llmos_buf e = {0};
    build(&e, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", ZERO64, 1);
    edit(&e, "files",
         json_pack("[{s:s, s:s, s:I}]", "path", "model.gguf", "sha256", ZERO64, "size",
                   (json_int_t)1 << 60));
    assert_int_equal(apps_manifest_parse(e.data, e.len, &m), LLMOS_ERR_LIMIT);
    /* a provenance statement about other bytes than the files */
    build(&e, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", ZERO64, 1);
    edit(&e, "files",
         json_pack("[{s:s, s:s, s:i}]", "path", "model.gguf", "sha256",
                   "1111111111111111111111111111111111111111111111111111111111111111", "size", 1));
    assert_int_equal(apps_manifest_parse(e.data, e.len, &m), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "provenance subject"));
    /* an unknown member */
    build(&e, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", ZERO64, 1);
    edit(&e, "install_script", json_string("curl | sh"));
    assert_int_equal(apps_manifest_parse(e.data, e.len, &m), LLMOS_ERR_FORMAT);
    buf_free(&e);
    buf_free(&b);
}

typedef struct keys {
    char dir[256];
    char sec[300], pub[300];
    apps_seckey *sk;
    apps_pubkey pk;
    char pk_b64[64];
} keys;

static void make_key(keys *k, const char *dir, const char *tag)
{
    snprintf(k->sec, sizeof k->sec, "%s/%s.key", dir, tag);
    snprintf(k->pub, sizeof k->pub, "%s/%s.pub", dir, tag);
    assert_int_equal(apps_key_generate(k->sec, k->pub, NULL, &k->pk), LLMOS_OK);
    assert_int_equal(apps_seckey_load(k->sec, NULL, &k->sk), LLMOS_OK);
    llmos_buf b = {0};
    assert_int_equal(apps_pubkey_base64(&k->pk, &b), LLMOS_OK);
    snprintf(k->pk_b64, sizeof k->pk_b64, "%s", b.data);
    buf_free(&b);
}

static void sign(const keys *k, const llmos_buf *msg, llmos_buf *sig)
{
    buf_clear(sig);
    assert_int_equal(apps_sign(k->sk, msg->data, msg->len, "llmos test", "manifest", false, sig),
                     LLMOS_OK);
}

static apps_policy *policy(const char *fmt, ...) LLMOS_PRINTF(1, 2);
static apps_policy *policy(const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    apps_policy *p = NULL;
    assert_int_equal(apps_policy_parse(text, strlen(text), &p), LLMOS_OK);
    return p;
}

static void test_trust(void **state)
{
    (void)state;
    char dir[256];
    assert_true(tu_mkdtemp("apps-trust", dir, sizeof dir));
    keys a, b;
    make_key(&a, dir, "a");
    make_key(&b, dir, "b");
    char aid[APPS_KEYID_HEX], bid[APPS_KEYID_HEX];
    apps_keyid_hex(a.pk.id, aid);
    apps_keyid_hex(b.pk.id, bid);
    llmos_buf man = {0}, sig = {0};
    build(&man, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", ZERO64, 5);
    sign(&a, &man, &sig);
    apps_manifest *m = NULL;
    apps_verdict v;

    apps_policy *p = policy("# the publishers I trust\ntrust acme %s model,tool\n", a.pk_b64);
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sig.data, sig.len, false, &m, &v),
                     LLMOS_OK);
    assert_true(v.signed_by_trusted);
    assert_string_equal(v.publisher, "acme");
    assert_string_equal(v.keyid, aid);
    apps_manifest_free(m);

    /* a tampered manifest: the signature no longer matches */
    man.data[man.len - 3] ^= 1;
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sig.data, sig.len, false, &m, &v),
                     LLMOS_ERR_CRYPTO);
    assert_string_equal(v.check, "signature");
    man.data[man.len - 3] ^= 1;
    /* a changed trusted comment */
    llmos_buf sig2 = {0};
    assert_int_equal(buf_puts(&sig2, sig.data), LLMOS_OK);
    char *tc = strstr(sig2.data, "trusted comment: manifest");
    assert_non_null(tc);
    tc[strlen("trusted comment: ")] = 'M';
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sig2.data, sig2.len, false, &m, &v),
                     LLMOS_ERR_CRYPTO);
    assert_non_null(strstr(llmos_errmsg(), "trusted comment"));
    buf_free(&sig2);
    /* unsigned: refused, unless allowed by the user or the policy */
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, NULL, 0, false, &m, &v),
                     LLMOS_ERR_DENIED);
    assert_string_equal(v.check, "signature");
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, NULL, 0, true, &m, &v), LLMOS_OK);
    assert_true(v.unsigned_allowed && !v.signed_by_trusted);
    apps_manifest_free(m);
    apps_policy_free(p);
    p = policy("allow-unsigned model\n");
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, NULL, 0, false, &m, &v), LLMOS_OK);
    apps_manifest_free(m);
    apps_policy_free(p);

    /* signed by a key nobody trusts */
    p = policy("trust acme %s\n", a.pk_b64);
    llmos_buf sigb = {0};
    sign(&b, &man, &sigb);
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sigb.data, sigb.len, false, &m, &v),
                     LLMOS_ERR_DENIED);
    assert_string_equal(v.check, "trusted key");
    assert_non_null(strstr(llmos_errmsg(), bid));
    apps_policy_free(p);
    /* revoked */
    p = policy("trust acme %s\nrevoke %s leaked on a laptop\n", a.pk_b64, aid);
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sig.data, sig.len, false, &m, &v),
                     LLMOS_ERR_DENIED);
    assert_string_equal(v.check, "revocation");
    apps_policy_free(p);
    /* trusted for another publisher */
    p = policy("trust other %s\n", a.pk_b64);
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sig.data, sig.len, false, &m, &v),
                     LLMOS_ERR_DENIED);
    assert_string_equal(v.check, "publisher");
    apps_policy_free(p);
    /* trusted for prompts only: a model is refused */
    p = policy("trust acme %s prompts\n", a.pk_b64);
    assert_int_equal(apps_verify_manifest(p, man.data, man.len, sig.data, sig.len, false, &m, &v),
                     LLMOS_ERR_DENIED);
    assert_string_equal(v.check, "kind");
    apps_policy_free(p);

    /* policies that do not parse name their line */
    const char *bad[] = {"trust acme notakey\n", "revoke 123\n", "frobnicate\n",
                         "allow-unsigned planets\n", "local-files maybe\n"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++) {
        assert_int_equal(apps_policy_parse(bad[i], strlen(bad[i]), &p), LLMOS_ERR_FORMAT);
        assert_non_null(strstr(llmos_errmsg(), "line 1"));
    }
    buf_free(&sigb);
    buf_free(&man);
    buf_free(&sig);
    apps_seckey_free(a.sk);
    apps_seckey_free(b.sk);
    tu_rmrf(dir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_store_on_disk(void **state)
{
    (void)state;
    char dir[256], home[300], path[600];
    assert_true(tu_mkdtemp("apps-store", dir, sizeof dir));
    snprintf(home, sizeof home, "%s/home", dir);
    keys a;
    make_key(&a, dir, "a");
    apps_store *st = NULL;
    assert_int_equal(apps_store_open(home, &st), LLMOS_OK);
    snprintf(path, sizeof path, "%s/apps/trust", home);
    char rule[256];
    snprintf(rule, sizeof rule, "trust acme %s\n", a.pk_b64);
    write_file(path, rule);
    assert_int_equal(apps_store_reload_policy(st), LLMOS_OK);

    snprintf(path, sizeof path, "%s/weights.bin", dir);
    write_file(path, "the weights of a very small model");
    char hex[APPS_SHA256_HEX];
    uint64_t size = 0;
    assert_int_equal(apps_store_add_file(st, path, hex, &size), LLMOS_OK);
    assert_int_equal(size, strlen("the weights of a very small model"));
    /* the digest is the file's SHA-256, as sha256sum computes it */
    char want[APPS_SHA256_HEX];
    assert_int_equal(apps_sha256_file(path, want, NULL), LLMOS_OK);
    assert_string_equal(hex, want);

    llmos_buf man = {0}, sig = {0};
    build(&man, "tiny", "1.1.0", "acme", APPS_KIND_MODEL, "model.gguf", hex, size);
    sign(&a, &man, &sig);
    apps_manifest *m = NULL;
    apps_verdict v;
    assert_int_equal(apps_verify_manifest(apps_store_policy(st), man.data, man.len, sig.data,
                                          sig.len, false, &m, &v),
                     LLMOS_OK);
    assert_int_equal(apps_store_install(st, m, man.data, man.len, sig.data, sig.len), LLMOS_OK);
    apps_manifest_free(m);

    char name[80], version[80];
    assert_int_equal(apps_store_resolve(st, "tiny", name, sizeof name, version, sizeof version),
                     LLMOS_OK);
    assert_string_equal(version, "1.1.0");
    assert_int_equal(
        apps_store_resolve(st, "tiny:1.1.0", name, sizeof name, version, sizeof version), LLMOS_OK);
    assert_int_equal(apps_store_resolve(st, "tiny:9.0", name, sizeof name, version, sizeof version),
                     LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "llmos pull"));
    assert_int_equal(apps_store_verify(st, "tiny", "1.1.0", true, false, &m, &v), LLMOS_OK);
    assert_true(v.signed_by_trusted);
    assert_string_equal(m->files[0].sha256, hex);
    apps_manifest_free(m);
    char on[80], ov[80];
    assert_int_equal(apps_store_owner(st, hex, on, sizeof on, ov, sizeof ov), LLMOS_OK);
    assert_string_equal(on, "tiny");

    /* a blob changed on disk after the pull: refused before the load */
    char blob[600];
    apps_store_blob_path(st, hex, blob, sizeof blob);
    chmod(blob, 0600);
    write_file(blob, "the weights of a very evil model!");
    assert_int_equal(apps_store_verify(st, "tiny", "1.1.0", true, false, &m, &v), LLMOS_ERR_CRYPTO);
    assert_string_equal(v.check, "digest");
    assert_non_null(strstr(llmos_errmsg(), "digest check failed"));
    /* a key revoked after the pull: refused at the next load */
    char id[APPS_KEYID_HEX];
    apps_keyid_hex(a.pk.id, id);
    snprintf(path, sizeof path, "%s/apps/trust", home);
    snprintf(rule, sizeof rule, "trust acme %s\nrevoke %s\n", a.pk_b64, id);
    write_file(path, rule);
    assert_int_equal(apps_store_reload_policy(st), LLMOS_OK);
    assert_int_equal(apps_store_verify(st, "tiny", "1.1.0", false, false, &m, &v),
                     LLMOS_ERR_DENIED);
    assert_string_equal(v.check, "revocation");
    snprintf(rule, sizeof rule, "trust acme %s\n", a.pk_b64);
    write_file(path, rule);
    assert_int_equal(apps_store_reload_policy(st), LLMOS_OK);

    /* no downgrade: 1.0.0 after 1.1.0 is refused, even after rm */
    snprintf(path, sizeof path, "%s/weights.bin", dir);
    assert_int_equal(apps_store_add_file(st, path, hex, &size), LLMOS_OK);
    build(&man, "tiny", "1.0.0", "acme", APPS_KIND_MODEL, "model.gguf", hex, size);
    sign(&a, &man, &sig);
    assert_int_equal(apps_verify_manifest(apps_store_policy(st), man.data, man.len, sig.data,
                                          sig.len, false, &m, &v),
                     LLMOS_OK);
    assert_int_equal(apps_store_install(st, m, man.data, man.len, sig.data, sig.len),
                     LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "downgrade"));
    uint64_t freed = 0;
    assert_int_equal(apps_store_remove(st, "tiny", NULL, &freed), LLMOS_OK);
    assert_int_equal(freed, size);
    assert_int_equal(access(blob, F_OK), -1); /* the blob went with its last manifest */
    assert_int_equal(apps_store_resolve(st, "tiny", name, sizeof name, version, sizeof version),
                     LLMOS_ERR_NOT_FOUND);
    assert_int_equal(apps_store_add_file(st, path, hex, &size), LLMOS_OK);
    assert_int_equal(apps_store_install(st, m, man.data, man.len, sig.data, sig.len),
                     LLMOS_ERR_DENIED);
    apps_manifest_free(m);

    buf_free(&man);
    buf_free(&sig);
    apps_seckey_free(a.sk);
    apps_store_free(st);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical),      cmocka_unit_test(test_versions_names_paths),
        cmocka_unit_test(test_manifest_parse), cmocka_unit_test(test_trust),
        cmocka_unit_test(test_store_on_disk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
