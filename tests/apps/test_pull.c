/*
 * test_pull.c - pulling from a loopback registry, and the attacks a registry (or whoever sits
 * in front of it) can try, each of which must be refused with the check that caught it:
 * a tampered blob, a tampered manifest, no signature, a key not trusted or revoked, a
 * downgrade, more bytes than declared arriving mid-download, a manifest other than the one
 * asked for (validly signed, for another app), a signature of another manifest, path
 * traversal and absolute paths in file names, huge declared sizes, a truncated download
 * resumed against a changed file, and a redirect to another host (a TEST DOUBLE server,
 * redirect_test_server, answers every request with a redirect).
 *
 * The registry is llmos's own (apps_registry_serve) on 127.0.0.1, over a folder filled by
 * apps_publish; the attacks edit that folder as a hostile registry would.
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
#include <microhttpd.h>

#include "llmos/apps.h"
#include "llmos/json.h"
#include "testutil.h"

typedef struct world {
    char dir[256], reg[300], home[300], url[64];
    char file1[300], file2[300];
    apps_seckey *a, *b; /* a: trusted as acme; b: nobody's */
    apps_pubkey apk, bpk;
    char a_b64[64];
    apps_registry_server *srv;
    apps_store *st;
} world;

static void write_bytes(const char *path, const void *data, size_t n)
{
    chmod(path, 0600);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void random_file(const char *path, size_t n, unsigned seed)
{
    char *d = malloc(n);
    assert_non_null(d);
    srand(seed);
    for (size_t i = 0; i < n; i++)
        d[i] = (char)(rand() >> 7);
    write_bytes(path, d, n);
    free(d);
}

static void trust(world *w, const char *extra)
{
    char path[400], text[512];
    snprintf(path, sizeof path, "%s/apps/trust", w->home);
    snprintf(text, sizeof text, "trust acme %s\n%s", w->a_b64, extra ? extra : "");
    write_bytes(path, text, strlen(text));
    assert_int_equal(apps_store_reload_policy(w->st), LLMOS_OK);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    if (!w || !tu_mkdtemp("apps-pull", w->dir, sizeof w->dir))
        return -1;
    snprintf(w->reg, sizeof w->reg, "%s/registry", w->dir);
    snprintf(w->home, sizeof w->home, "%s/home", w->dir);
    snprintf(w->file1, sizeof w->file1, "%s/model-a.gguf", w->dir);
    snprintf(w->file2, sizeof w->file2, "%s/model-b.gguf", w->dir);
    char sec[400], pub[400];
    snprintf(sec, sizeof sec, "%s/a.key", w->dir);
    snprintf(pub, sizeof pub, "%s/a.pub", w->dir);
    if (apps_key_generate(sec, pub, NULL, &w->apk) || apps_seckey_load(sec, NULL, &w->a))
        return -1;
    snprintf(sec, sizeof sec, "%s/b.key", w->dir);
    snprintf(pub, sizeof pub, "%s/b.pub", w->dir);
    if (apps_key_generate(sec, pub, NULL, &w->bpk) || apps_seckey_load(sec, NULL, &w->b))
        return -1;
    llmos_buf b = {0};
    if (apps_pubkey_base64(&w->apk, &b))
        return -1;
    snprintf(w->a_b64, sizeof w->a_b64, "%s", b.data);
    buf_free(&b);
    if (llmos_file_mkdirs(w->reg, 0755))
        return -1;
    uint16_t port = 0;
    if (apps_registry_serve(w->reg, "127.0.0.1", 0, &w->srv, &port))
        return -1;
    snprintf(w->url, sizeof w->url, "http://127.0.0.1:%u", (unsigned)port);
    if (apps_store_open(w->home, &w->st))
        return -1;
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    apps_registry_stop(w->srv);
    apps_store_free(w->st);
    apps_seckey_free(w->a);
    apps_seckey_free(w->b);
    tu_rmrf(w->dir);
    free(w);
    return 0;
}

/* Publish name@version (one file) signed by k into the registry. */
static void publish(world *w, const char *name, const char *version, const char *file,
                    const apps_seckey *k)
{
    const char *caps[] = {"compute"};
    apps_manifest_params mp = {.name = name,
                               .version = version,
                               .publisher = "acme",
                               .kind = APPS_KIND_MODEL,
                               .caps = caps,
                               .n_caps = 1,
                               .source = "git+https://example.invalid/acme/tiny",
                               .builder = "https://example.invalid/ci/1"};
    const char *names[] = {"model.gguf"};
    assert_int_equal(apps_publish(w->reg, &mp, &file, names, 1, k, NULL), LLMOS_OK);
}

static llmos_err pull(world *w, const char *ref, apps_pull_result *r, bool allow_unsigned,
                      uint64_t stop_after)
{
    apps_pull_params p = {.registry = w->url,
                          .ref = ref,
                          .allow_unsigned = allow_unsigned,
                          .stop_after_bytes = stop_after};
    return apps_pull(w->st, &p, r);
}

static void reg_path(const world *w, char *out, size_t size, const char *fmt, ...)
    LLMOS_PRINTF(4, 5);
static void reg_path(const world *w, char *out, size_t size, const char *fmt, ...)
{
    char rel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(out, size, "%s/%s", w->reg, rel);
}

static void blob_of(const world *w, const char *file, char hex[APPS_SHA256_HEX])
{
    (void)w;
    assert_int_equal(apps_sha256_file(file, hex, NULL), LLMOS_OK);
}

static bool installed(world *w, const char *ref)
{
    char n[80], v[80];
    bool ok = apps_store_resolve(w->st, ref, n, sizeof n, v, sizeof v) == LLMOS_OK;
    llmos_err_clear();
    return ok;
}

/* ---- the good path ------------------------------------------------------------------------ */

static void test_pull_and_resume(void **state)
{
    world *w = *state;
    trust(w, NULL);
    const size_t size = 3 << 20;
    random_file(w->file1, size, 1);
    publish(w, "tiny", "1.0.0", w->file1, w->a);
    apps_pull_result r;
    /* an interruption half-way leaves a partial file ... */
    assert_int_equal(pull(w, "tiny", &r, false, size / 2), LLMOS_ERR_NETWORK);
    assert_false(installed(w, "tiny"));
    char hex[APPS_SHA256_HEX], partial[600];
    blob_of(w, w->file1, hex);
    apps_store_blob_path(w->st, hex, partial, sizeof partial);
    strcat(partial, ".partial");
    struct stat sb;
    assert_int_equal(stat(partial, &sb), 0);
    assert_int_equal(sb.st_size, size / 2);
    /* ... which the next pull resumes: only the rest is fetched */
    assert_int_equal(pull(w, "tiny", &r, false, 0), LLMOS_OK);
    assert_string_equal(r.name, "tiny");
    assert_string_equal(r.version, "1.0.0");
    assert_int_equal(r.bytes_fetched, size - size / 2);
    assert_true(r.verdict.signed_by_trusted);
    assert_int_equal(stat(partial, &sb), -1);
    apps_manifest *m = NULL;
    apps_verdict v;
    assert_int_equal(apps_store_verify(w->st, "tiny", "1.0.0", true, false, &m, &v), LLMOS_OK);
    assert_int_equal(m->files[0].size, size);
    apps_manifest_free(m);
    /* again: nothing to fetch */
    assert_int_equal(pull(w, "tiny:1.0.0", &r, false, 0), LLMOS_OK);
    assert_int_equal(r.bytes_fetched, 0);
}

/* ---- attacks ------------------------------------------------------------------------------ */

static void test_tampered_blob(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 100000, 2);
    publish(w, "tblob", "1.0.0", w->file2, w->a);
    char hex[APPS_SHA256_HEX], path[600];
    blob_of(w, w->file2, hex);
    reg_path(w, path, sizeof path, "blobs/sha256/%s", hex);
    random_file(path, 100000, 3); /* same size, other bytes */
    apps_pull_result r;
    assert_int_equal(pull(w, "tblob", &r, false, 0), LLMOS_ERR_CRYPTO);
    assert_string_equal(r.verdict.check, "digest");
    assert_non_null(strstr(llmos_errmsg(), "digest check failed"));
    assert_false(installed(w, "tblob"));
    apps_store_blob_path(w->st, hex, path, sizeof path);
    strcat(path, ".partial");
    assert_int_equal(access(path, F_OK), -1); /* discarded, not kept to resume */
}

static void test_longer_than_declared(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 200000, 4);
    publish(w, "tlong", "1.0.0", w->file2, w->a);
    char hex[APPS_SHA256_HEX], path[600];
    blob_of(w, w->file2, hex);
    reg_path(w, path, sizeof path, "blobs/sha256/%s", hex);
    random_file(path, 5 << 20, 4); /* starts with the right bytes, then goes on */
    apps_pull_result r;
    assert_int_equal(pull(w, "tlong", &r, false, 0), LLMOS_ERR_LIMIT);
    assert_string_equal(r.verdict.check, "size");
    assert_non_null(strstr(llmos_errmsg(), "more bytes than the manifest declares"));
    assert_true(r.bytes_fetched <= 200000);
    assert_false(installed(w, "tlong"));
}

static void test_tampered_manifest(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 1000, 5);
    publish(w, "tman", "1.0.0", w->file2, w->a);
    char path[600];
    reg_path(w, path, sizeof path, "manifests/tman/1.0.0.json");
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(path, 1 << 20, &b), LLMOS_OK);
    char *desc = strstr(b.data, "\"compute\"");
    assert_non_null(desc);
    memcpy(desc, "\"network\"", 9); /* grant itself another capability */
    write_bytes(path, b.data, b.len);
    buf_free(&b);
    apps_pull_result r;
    assert_int_equal(pull(w, "tman", &r, false, 0), LLMOS_ERR_CRYPTO);
    assert_string_equal(r.verdict.check, "signature");
    assert_false(installed(w, "tman"));
    /* the signature of another manifest (the same app's other version) */
    publish(w, "tman", "1.0.1", w->file2, w->a);
    publish(w, "tman", "1.0.2", w->file2, w->a);
    char other[600];
    reg_path(w, other, sizeof other, "manifests/tman/1.0.1.json.minisig");
    reg_path(w, path, sizeof path, "manifests/tman/1.0.2.json.minisig");
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(pull(w, "tman:1.0.2", &r, false, 0), LLMOS_ERR_CRYPTO);
    assert_string_equal(r.verdict.check, "signature");
}

static void test_unsigned_untrusted_revoked(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 1000, 6);
    publish(w, "tuns", "1.0.0", w->file2, w->a);
    char path[600];
    reg_path(w, path, sizeof path, "manifests/tuns/1.0.0.json.minisig");
    unlink(path);
    apps_pull_result r;
    assert_int_equal(pull(w, "tuns", &r, false, 0), LLMOS_ERR_DENIED);
    assert_string_equal(r.verdict.check, "signature");
    assert_non_null(strstr(llmos_errmsg(), "not signed"));
    /* the user says so explicitly: installed, and its load needs the same word again */
    assert_int_equal(pull(w, "tuns", &r, true, 0), LLMOS_OK);
    assert_true(r.verdict.unsigned_allowed);
    apps_verdict v;
    assert_int_equal(apps_store_verify(w->st, "tuns", "1.0.0", true, false, NULL, &v),
                     LLMOS_ERR_DENIED);
    assert_int_equal(apps_store_verify(w->st, "tuns", "1.0.0", true, true, NULL, &v), LLMOS_OK);

    publish(w, "tkey", "1.0.0", w->file2, w->b); /* signed by a key nobody trusts */
    assert_int_equal(pull(w, "tkey", &r, false, 0), LLMOS_ERR_DENIED);
    assert_string_equal(r.verdict.check, "trusted key");
    publish(w, "trev", "1.0.0", w->file2, w->a);
    char id[APPS_KEYID_HEX], rule[64];
    apps_keyid_hex(w->apk.id, id);
    snprintf(rule, sizeof rule, "revoke %s\n", id);
    trust(w, rule);
    assert_int_equal(pull(w, "trev", &r, false, 0), LLMOS_ERR_DENIED);
    assert_string_equal(r.verdict.check, "revocation");
    trust(w, NULL);
}

static void test_downgrade(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 1000, 7);
    publish(w, "tdown", "1.0.0", w->file2, w->a);
    publish(w, "tdown", "2.0.0", w->file2, w->a);
    apps_pull_result r;
    assert_int_equal(pull(w, "tdown", &r, false, 0), LLMOS_OK);
    assert_string_equal(r.version, "2.0.0");
    /* the registry rolls "latest" back to a validly signed older version */
    char path[600];
    reg_path(w, path, sizeof path, "manifests/tdown/latest");
    write_bytes(path, "1.0.0\n", 6);
    assert_int_equal(pull(w, "tdown", &r, false, 0), LLMOS_ERR_DENIED);
    assert_string_equal(r.verdict.check, "downgrade");
    assert_int_equal(pull(w, "tdown:1.0.0", &r, false, 0), LLMOS_ERR_DENIED);
}

static void test_other_manifest(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 1000, 8);
    publish(w, "tgood", "1.0.0", w->file2, w->a);
    publish(w, "tevil", "1.0.0", w->file2, w->a);
    /* asked for tgood, the registry serves tevil's manifest and signature (both genuine) */
    char from[600], to[600];
    reg_path(w, from, sizeof from, "manifests/tevil/1.0.0.json");
    reg_path(w, to, sizeof to, "manifests/tgood/1.0.0.json");
    assert_int_equal(rename(from, to), 0);
    strcat(from, ".minisig");
    strcat(to, ".minisig");
    assert_int_equal(rename(from, to), 0);
    apps_pull_result r;
    assert_int_equal(pull(w, "tgood", &r, false, 0), LLMOS_ERR_DENIED);
    assert_string_equal(r.verdict.check, "name");
    assert_non_null(strstr(llmos_errmsg(), "served the manifest of tevil"));
}

/* A manifest with these files, written canonically and signed by a: what a trusted but
 * careless (or compromised-build) publisher could sign. */
static void publish_raw(world *w, const char *name, json_t *files, json_t *subjects)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:[], s:o, s:{s:s, s:o, s:s, s:{s:{s:s}, s:{s:{s:s}}}}}",
        "schema", "llmos.app/v1", "name", name, "version", "1.0.0", "publisher", "acme", "kind",
        "model", "capabilities", "files", files, "provenance", "_type",
        "https://in-toto.io/Statement/v1", "subject", subjects, "predicateType",
        "https://slsa.dev/provenance/v1", "predicate", "buildDefinition", "buildType", "x",
        "runDetails", "builder", "id", "y");
    assert_non_null(j);
    llmos_buf man = {0}, sig = {0};
    assert_int_equal(apps_canonical_json(j, &man), LLMOS_OK);
    json_decref(j);
    assert_int_equal(apps_sign(w->a, man.data, man.len, "t", "t", false, &sig), LLMOS_OK);
    char path[600];
    reg_path(w, path, sizeof path, "manifests/%s", name);
    assert_int_equal(llmos_file_mkdirs(path, 0755), LLMOS_OK);
    reg_path(w, path, sizeof path, "manifests/%s/1.0.0.json", name);
    write_bytes(path, man.data, man.len);
    strcat(path, ".minisig");
    write_bytes(path, sig.data, sig.len);
    reg_path(w, path, sizeof path, "manifests/%s/latest", name);
    write_bytes(path, "1.0.0\n", 6);
    buf_free(&man);
    buf_free(&sig);
}

static void raw_one(world *w, const char *name, const char *path, const char *hex, json_int_t size)
{
    publish_raw(w, name, json_pack("[{s:s, s:s, s:I}]", "path", path, "sha256", hex, "size", size),
                json_pack("[{s:s, s:{s:s}}]", "name", path, "digest", "sha256", hex));
}

static void test_bad_paths_and_sizes(void **state)
{
    world *w = *state;
    trust(w, NULL);
    random_file(w->file2, 1000, 9);
    char hex[APPS_SHA256_HEX];
    blob_of(w, w->file2, hex);
    apps_pull_result r;
    const char *paths[] = {"../../../.bashrc", "/etc/cron.d/evil", "a/../../b"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(paths); i++) {
        raw_one(w, "tpath", paths[i], hex, 1000);
        assert_int_equal(pull(w, "tpath", &r, false, 0), LLMOS_ERR_FORMAT);
        assert_string_equal(r.verdict.check, "manifest");
        assert_non_null(strstr(llmos_errmsg(), "path"));
    }
    /* past what llmos accepts at all */
    raw_one(w, "thuge", "model.gguf", hex, (json_int_t)1 << 50);
    assert_int_equal(pull(w, "thuge", &r, false, 0), LLMOS_ERR_LIMIT);
    assert_string_equal(r.verdict.check, "manifest");
    /* within the format's bound, but more than the disk has: refused before any byte */
    raw_one(w, "tbig", "model.gguf", hex, (json_int_t)1 << 39);
    assert_int_equal(pull(w, "tbig", &r, false, 0), LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "disk space check failed"));
    assert_int_equal(r.bytes_fetched, 0);
}

static void test_resume_against_changed_file(void **state)
{
    world *w = *state;
    trust(w, NULL);
    const size_t size = 1 << 20;
    random_file(w->file2, size, 10);
    publish(w, "tres", "1.0.0", w->file2, w->a);
    apps_pull_result r;
    assert_int_equal(pull(w, "tres", &r, false, size / 3), LLMOS_ERR_NETWORK);
    /* the registry's file changes under the same name before the resume */
    char hex[APPS_SHA256_HEX], path[600];
    blob_of(w, w->file2, hex);
    reg_path(w, path, sizeof path, "blobs/sha256/%s", hex);
    random_file(path, size, 11);
    assert_int_equal(pull(w, "tres", &r, false, 0), LLMOS_ERR_CRYPTO);
    assert_string_equal(r.verdict.check, "digest");
    assert_false(installed(w, "tres"));
    apps_store_blob_path(w->st, hex, path, sizeof path);
    strcat(path, ".partial");
    assert_int_equal(access(path, F_OK), -1);
}

/* TEST DOUBLE: a server that redirects every request to the same path on 127.0.0.2 (another
 * host on the loopback range), or, for paths under /same/, to the path without it (the same
 * origin, which llmos follows). */
static char redirect_port[8];
static enum MHD_Result redirect_test_server(void *cls, struct MHD_Connection *c, const char *url,
                                            const char *method, const char *version,
                                            const char *data, size_t *size, void **ptr)
{
    (void)cls, (void)method, (void)version, (void)data, (void)size, (void)ptr;
    char loc[512];
    if (strncmp(url, "/same/", 6) == 0)
        snprintf(loc, sizeof loc, "http://127.0.0.1:%s/%s", (const char *)cls, url + 6);
    else
        snprintf(loc, sizeof loc, "http://127.0.0.2:%s%s", redirect_port, url);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Location", loc);
    enum MHD_Result ret = MHD_queue_response(c, 302, r);
    MHD_destroy_response(r);
    return ret;
}

static void test_redirect_to_another_host(void **state)
{
    world *w = *state;
    trust(w, NULL);
    const char *port = strrchr(w->url, ':') + 1;
    snprintf(redirect_port, sizeof redirect_port, "%s", port);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            redirect_test_server, (void *)port, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u", (unsigned)info->port);
    random_file(w->file2, 1000, 12);
    publish(w, "tredir", "1.0.0", w->file2, w->a);
    apps_pull_params p = {.registry = url, .ref = "tredir"};
    apps_pull_result r;
    assert_int_equal(apps_pull(w->st, &p, &r), LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "another host"));
    assert_false(installed(w, "tredir"));
    MHD_stop_daemon(d);
}

/* The registry server serves the files under its folder and nothing else: no "..", no
 * symbolic link out of it, no other method than GET and HEAD; byte ranges for resumes. */
static void test_server_stays_in_its_folder(void **state)
{
    world *w = *state;
    char secret[400], link[600], cmd[1600];
    snprintf(secret, sizeof secret, "%s/secret.txt", w->dir);
    write_bytes(secret, "not for the registry", 20);
    snprintf(link, sizeof link, "%s/leak", w->reg);
    assert_int_equal(symlink(secret, link), 0);
    snprintf(cmd, sizeof cmd, "%s/manifests/tdir", w->reg);
    assert_int_equal(llmos_file_mkdirs(cmd, 0755), LLMOS_OK);
    snprintf(cmd, sizeof cmd, "%s/manifests/tdir/latest", w->reg);
    write_bytes(cmd, "1.2.3\n", 6);
    const char *bad[] = {"leak", "../secret.txt", "%2e%2e/secret.txt",
                         "manifests/../../secret.txt"};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++) {
        snprintf(cmd, sizeof cmd,
                 "test \"$(curl -s -o /dev/null -w '%%{http_code}' --path-as-is "
                 "'%s/%s')\" = 404",
                 w->url, bad[i]);
        assert_int_equal(system(cmd), 0);
    }
    snprintf(cmd, sizeof cmd,
             "test \"$(curl -s -r 2-4 '%s/manifests/tdir/latest')\" = '2.3' && "
             "test \"$(curl -s -o /dev/null -w '%%{http_code}' -X DELETE "
             "'%s/manifests/tdir/latest')\" = 405",
             w->url, w->url);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pull_and_resume),
        cmocka_unit_test(test_tampered_blob),
        cmocka_unit_test(test_longer_than_declared),
        cmocka_unit_test(test_tampered_manifest),
        cmocka_unit_test(test_unsigned_untrusted_revoked),
        cmocka_unit_test(test_downgrade),
        cmocka_unit_test(test_other_manifest),
        cmocka_unit_test(test_bad_paths_and_sizes),
        cmocka_unit_test(test_resume_against_changed_file),
        cmocka_unit_test(test_redirect_to_another_host),
        cmocka_unit_test(test_server_stays_in_its_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
