/*
 * test_delegate.c - the delegate(app, task) system call: an installed specialist is offered to
 * the orchestrator by name, a call runs it as its own process (the llmos program, `llmos
 * delegate`) and its answer comes back as an untrusted handle; a name that is not an installed
 * specialist is refused by the tool's schema; a specialist whose model file changed after the
 * pull is refused by the child's verification (recorded with the check that failed), and the
 * orchestrator gets an error.
 *
 * The orchestrator is the scripted TEST backend (tests/doubles.h) calling the tool; the
 * specialist is the tiny trained model of the shared test data, run for real.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "doubles.h"
#include "llmos/apps.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/storage.h"
#include "testutil.h"

static char dir[256], home[300], blob[600];

/* A specialist "storyteller" installed in the store under home, signed by a trusted key. */
static void install_specialist(const char *model)
{
    char sec[400], pub[400];
    snprintf(sec, sizeof sec, "%s/k.key", dir);
    snprintf(pub, sizeof pub, "%s/k.pub", dir);
    apps_pubkey pk;
    apps_seckey *k = NULL;
    assert_int_equal(apps_key_generate(sec, pub, NULL, &pk), LLMOS_OK);
    assert_int_equal(apps_seckey_load(sec, NULL, &k), LLMOS_OK);
    apps_store *st = NULL;
    assert_int_equal(apps_store_open(home, &st), LLMOS_OK);
    llmos_buf b64 = {0}, man = {0}, sig = {0};
    assert_int_equal(apps_pubkey_base64(&pk, &b64), LLMOS_OK);
    char path[400], rule[256];
    snprintf(path, sizeof path, "%s/apps/trust", home);
    snprintf(rule, sizeof rule, "trust acme %s\n", b64.data);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(rule, f);
    fclose(f);
    assert_int_equal(apps_store_reload_policy(st), LLMOS_OK);
    apps_file file = {.path = "model.gguf"};
    assert_int_equal(apps_store_add_file(st, model, file.sha256, &file.size), LLMOS_OK);
    apps_store_blob_path(st, file.sha256, blob, sizeof blob);
    const char *caps[] = {"compute"};
    json_t *app = json_pack("{s:s, s:i}", "system_prompt", "You tell stories.", "max_tokens", 8);
    apps_manifest_params mp = {.name = "storyteller",
                               .version = "1.0.0",
                               .publisher = "acme",
                               .description = "tells a short story",
                               .kind = APPS_KIND_SPECIALIST,
                               .caps = caps,
                               .n_caps = 1,
                               .files = &file,
                               .n_files = 1,
                               .extra = app};
    assert_int_equal(apps_manifest_build(&mp, &man), LLMOS_OK);
    json_decref(app);
    assert_int_equal(apps_sign(k, man.data, man.len, "t", "t", false, &sig), LLMOS_OK);
    apps_manifest *m = NULL;
    apps_verdict v;
    assert_int_equal(apps_verify_manifest(apps_store_policy(st), man.data, man.len, sig.data,
                                          sig.len, false, &m, &v),
                     LLMOS_OK);
    assert_int_equal(apps_store_install(st, m, man.data, man.len, sig.data, sig.len), LLMOS_OK);
    apps_manifest_free(m);
    buf_free(&b64);
    buf_free(&man);
    buf_free(&sig);
    apps_seckey_free(k);
    apps_store_free(st);
}

typedef struct fixture {
    store *st;
    llm_backend *priv, *quar;
    kernel *k;
    ksession *s;
} fixture;

static void start(fixture *F, const char *const *steps, size_t n)
{
    apps_store *ast = NULL;
    const ktool *delegate = NULL;
    assert_int_equal(apps_store_open(home, &ast), LLMOS_OK);
    assert_int_equal(apps_delegate_tool(ast, getenv("LLMOS_BIN"), &delegate), LLMOS_OK);
    assert_non_null(strstr(delegate->description, "storyteller: tells a short story"));
    assert_non_null(strstr(delegate->parameters, "\"enum\":[\"storyteller\"]"));
    apps_store_free(ast);
    char sdir[400];
    snprintf(sdir, sizeof sdir, "%s/store", dir);
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    assert_int_equal(store_open(sdir, "pw", &o, &F->st), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(steps, n, false, &F->priv), LLMOS_OK);
    const char *q[] = {"{\"content\":\"a story\"}"};
    assert_int_equal(scripted_test_backend_new(q, 1, true, &F->quar), LLMOS_OK);
    kernel_config c = {.st = F->st,
                       .privileged = F->priv,
                       .quarantined = F->quar,
                       .extra_tools = delegate,
                       .n_extra_tools = 1};
    assert_int_equal(kernel_new(&c, &F->k), LLMOS_OK);
    ksession_params p = {.principal = "alice",
                         .device = "test",
                         .rights = KRIGHT_ALL,
                         .caps = KCAP_COMPUTE | KCAP_MESSAGE | KCAP_QUARANTINE};
    assert_int_equal(ksession_open(F->k, &p, &F->s), LLMOS_OK);
}

static void stop(fixture *F)
{
    ksession_close(F->s);
    kernel_free(F->k);
    llm_backend_free(F->priv);
    llm_backend_free(F->quar);
    store_close(F->st);
    char sdir[400];
    snprintf(sdir, sizeof sdir, "%s/store", dir);
    tu_rmrf(sdir);
}

/* The content of process pid's first tool message. */
static void first_tool_result(fixture *F, int64_t pid, char *out, size_t size)
{
    json_t *ctx = NULL;
    assert_int_equal(ksession_context(F->s, pid, &ctx), LLMOS_OK);
    snprintf(out, size, "(none)");
    for (size_t i = 0; i < json_array_size(ctx); i++) {
        json_t *m = json_array_get(ctx, i);
        if (strcmp(ljson_get_string(m, "role", ""), "tool") == 0) {
            snprintf(out, size, "%s", ljson_get_string(m, "content", ""));
            break;
        }
    }
    json_decref(ctx);
}

static void run_turn(fixture *F, const char *const *steps, size_t n, char *result, size_t size)
{
    start(F, steps, n);
    int64_t pid = 0;
    kproc_state st;
    assert_int_equal(ksession_spawn(F->s, 0, &pid), LLMOS_OK);
    assert_int_equal(ksession_send(F->s, pid, "Tell me a story.", NULL, NULL, NULL, &st), LLMOS_OK);
    first_tool_result(F, pid, result, size);
    stop(F);
}

static void test_delegate(void **state)
{
    (void)state;
    char model[600];
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    install_specialist(model);
    setenv("LLMOS_HOME", home, 1); /* the child finds the store there */
    const char *steps[] = {
        "{\"tool_calls\":[{\"name\":\"delegate\",\"arguments\":{\"app\":\"storyteller\","
        "\"task\":\"Once upon a time\"}}]}",
        "{\"content\":\"Here is your story: $VAR1\"}"};
    fixture F = {0};
    char result[4096];
    run_turn(&F, steps, 2, result, sizeof result);
    /* the specialist's words are untrusted: the orchestrator holds a handle, not the text */
    assert_non_null(strstr(result, "$VAR"));
    assert_null(strstr(result, "error"));

    /* not an installed specialist: the schema refuses it before anything runs */
    const char *other[] = {
        "{\"tool_calls\":[{\"name\":\"delegate\",\"arguments\":{\"app\":\"rootkit\","
        "\"task\":\"x\"}}]}",
        "{\"content\":\"ok\"}"};
    run_turn(&F, other, 2, result, sizeof result);
    assert_non_null(strstr(result, "error"));

    /* the specialist's model changed after its pull: the child's verification refuses it */
    chmod(blob, 0600);
    FILE *f = fopen(blob, "r+b");
    assert_non_null(f);
    fseek(f, 4000, SEEK_SET);
    fputc('X', f);
    fclose(f);
    run_turn(&F, steps, 2, result, sizeof result);
    /* the failure is reported (as an untrusted error: the child's words) and the child's
     * refusal, with the check that failed, is in the verification log */
    assert_non_null(strstr(result, "error"));
    char log[400];
    snprintf(log, sizeof log, "%s/apps/verify.log", home);
    llmos_buf lb = {0};
    assert_int_equal(llmos_file_read_all(log, 1 << 20, &lb), LLMOS_OK);
    assert_non_null(strstr(lb.data, "\"event\":\"delegate\",\"what\":\"storyteller 1.0.0\","
                                    "\"outcome\":\"digest check failed"));
    buf_free(&lb);
}

static int setup(void **state)
{
    (void)state;
    if (!tu_mkdtemp("apps-delegate", dir, sizeof dir))
        return -1;
    snprintf(home, sizeof home, "%s/home", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_delegate)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
