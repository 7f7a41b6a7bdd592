/*
 * test_cli_apps.c - the app store end to end through the llmos program, as a user would:
 * keys new, publish into a registry folder, registry serve on loopback, pull (refused until
 * the publisher's key is trusted), list, show, verify, generate and run by name, a model file
 * changed in the store refused before the load, rm, sign (checked by minisign when it is
 * installed), --allow-unsigned, the policy's local-files rule, and the shell's audit record of
 * what was verified.
 *
 * Uses stories260K.gguf from the shared test data.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

static char dir[256], home[300], reg[300], url[64], model[600];
static pid_t server = -1;

/* llmos with this test's home and LLMOS_KDF weak enough for a test */
static int run(llmos_buf *out, llmos_buf *err, const char *fmt, ...) LLMOS_PRINTF(3, 4);
static int run(llmos_buf *out, llmos_buf *err, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    if (out)
        buf_clear(out);
    if (err)
        buf_clear(err);
    return tu_run_llmos(out, err, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak %s",
                        home, args);
}

static void start_registry(void)
{
    char out[400];
    snprintf(out, sizeof out, "%s/registry.out", dir);
    server = fork();
    assert_true(server >= 0);
    if (server == 0) {
        if (!freopen(out, "w", stdout))
            _exit(127);
        execl(getenv("LLMOS_BIN"), "llmos", "registry", "serve", reg, "--port", "0", NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !url[0]; i++) {
        usleep(50 * 1000);
        llmos_buf b = {0};
        if (llmos_file_read_all(out, 4096, &b) == LLMOS_OK && b.data) {
            const char *at = strstr(b.data, "at http://");
            unsigned port;
            if (at && sscanf(at, "at http://127.0.0.1:%u/", &port) == 1)
                snprintf(url, sizeof url, "http://127.0.0.1:%u", port);
        }
        llmos_err_clear();
        buf_free(&b);
    }
    assert_true(url[0]);
}

static int setup(void **state)
{
    (void)state;
    if (!tu_testdata_find(model, sizeof model, "models/stories260K.gguf"))
        return 0; /* the tests skip, saying so */
    if (!tu_mkdtemp("apps-cli", dir, sizeof dir))
        return -1;
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(reg, sizeof reg, "%s/registry", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (server > 0) {
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
    }
    if (dir[0])
        tu_rmrf(dir);
    return 0;
}

static void test_publish_pull_run(void **state)
{
    (void)state;
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    assert_int_equal(run(&out, &err, "keys new '%s/acme'", dir), 0);
    assert_non_null(strstr(out.data, "acme.key"));
    assert_int_equal(run(&out, &err,
                         "publish '%s' --key '%s/acme.key' --name stories --version 1.0.0 "
                         "--publisher acme --source git+https://example.invalid/stories "
                         "--source-rev 0123abc '%s=model.gguf'",
                         reg, dir, model),
                     0);
    start_registry();

    /* nobody trusted yet: refused, naming the check and how to trust */
    assert_int_equal(run(&out, &err, "pull stories --registry %s", url), 1);
    assert_non_null(strstr(err.data, "trusted key check failed"));
    assert_non_null(strstr(err.data, "llmos keys trust"));
    assert_int_equal(
        run(&out, &err, "keys trust '%s/acme.pub' --publisher acme --kinds model", dir), 0);
    assert_int_equal(run(&out, &err, "pull stories --registry %s", url), 0);
    assert_non_null(strstr(out.data, "pulled stories 1.0.0"));
    assert_non_null(strstr(out.data, "signed by acme"));
    assert_non_null(strstr(err.data, "100%")); /* the plain progress lines */

    assert_int_equal(run(&out, &err, "list"), 0);
    assert_non_null(strstr(out.data, "stories"));
    assert_non_null(strstr(out.data, "signed by acme"));
    assert_int_equal(run(&out, &err, "show stories"), 0);
    assert_non_null(strstr(out.data, "https://slsa.dev/provenance/v1"));
    assert_non_null(strstr(out.data, "0123abc"));
    assert_non_null(strstr(out.data, "context_length")); /* the model's hyperparameters */
    assert_int_equal(run(&out, &err, "verify"), 0);
    assert_non_null(strstr(out.data, "ok     stories 1.0.0: signed by acme"));

    /* by name wherever --model FILE works; the same text as the file itself */
    llmos_buf direct = {0};
    assert_int_equal(run(&direct, &err,
                         "generate --model '%s' --prompt 'Once upon' -n 8 "
                         "--temp 0",
                         model),
                     0);
    assert_int_equal(run(&out, &err,
                         "generate --model stories --prompt 'Once upon' -n 8 "
                         "--temp 0"),
                     0);
    assert_string_equal(out.data, direct.data);
    assert_non_null(strstr(err.data, "stories 1.0.0 verified: signed by acme"));
    buf_free(&direct);
    assert_int_equal(run(&out, &err, "bench --model stories:1.0.0 -p 8 -n 4"), 0);
    assert_int_equal(run(&out, &err, "tokenize --model stories hello"), 0);
    /* the shell, with the encrypted store: the check is in the audit log */
    assert_int_equal(run(&out, &err, "run stories -n 4 Once upon a time"), 0);
    assert_non_null(strstr(err.data, "verified"));
    assert_int_equal(run(&out, &err, "audit --json"), 0);
    assert_non_null(strstr(out.data, "model.verify"));
    assert_non_null(strstr(out.data, "signed by acme"));
    buf_free(&out);
    buf_free(&err);
}

static void test_refusals(void **state)
{
    (void)state;
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    /* a model file changed in the store after the pull: refused before the load */
    char blobs[400], cmd[1200];
    snprintf(blobs, sizeof blobs, "%s/apps/blobs/sha256", home);
    snprintf(cmd, sizeof cmd,
             "f=$(ls '%s'/* | head -1); chmod 600 \"$f\"; printf X | dd of=\"$f\" bs=1 "
             "seek=4000 conv=notrunc 2>/dev/null",
             blobs);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run(&out, &err, "generate --model stories --prompt x -n 2"), 1);
    assert_non_null(strstr(err.data, "digest check failed"));
    assert_int_equal(run(&out, &err, "verify stories"), 1);
    assert_non_null(strstr(out.data, "FAILED stories 1.0.0"));
    /* rm, and a pull again brings the right bytes */
    assert_int_equal(run(&out, &err, "rm stories"), 0);
    assert_int_equal(run(&out, &err, "list"), 0);
    assert_non_null(strstr(out.data, "empty"));
    assert_int_equal(run(&out, &err, "pull stories:1.0.0 --registry %s", url), 0);
    assert_int_equal(run(&out, &err, "verify"), 0);

    /* a revoked key: refused at the next load, though the files are intact */
    assert_int_equal(run(&out, &err, "keys list"), 0);
    char id[17] = "";
    const char *k = strstr(out.data, "key ");
    assert_non_null(k);
    memcpy(id, k + 4, 16);
    assert_int_equal(run(&out, &err, "keys revoke %s lost laptop", id), 0);
    assert_int_equal(run(&out, &err, "generate --model stories --prompt x -n 2"), 1);
    assert_non_null(strstr(err.data, "revocation check failed"));

    /* an unsigned app: only with --allow-unsigned, on pull and on load */
    assert_int_equal(run(&out, &err,
                         "publish '%s' --key '%s/acme.key' --name plain --version 1.0.0 "
                         "--publisher acme '%s=model.gguf'",
                         reg, dir, model),
                     0);
    char sig[500];
    snprintf(sig, sizeof sig, "%s/manifests/plain/1.0.0.json.minisig", reg);
    assert_int_equal(unlink(sig), 0);
    assert_int_equal(run(&out, &err, "pull plain --registry %s", url), 1);
    assert_non_null(strstr(err.data, "not signed"));
    assert_int_equal(run(&out, &err, "pull plain --registry %s --allow-unsigned", url), 0);
    assert_non_null(strstr(out.data, "UNSIGNED"));
    assert_int_equal(run(&out, &err, "generate --model plain --prompt x -n 2"), 1);
    assert_int_equal(run(&out, &err, "--allow-unsigned generate --model plain --prompt x -n 2"), 0);
    assert_non_null(strstr(err.data, "UNSIGNED"));

    /* local files: loaded as before, unless the policy refuses them */
    assert_int_equal(run(&out, &err, "generate --model '%s' --prompt x -n 2", model), 0);
    char trust[400];
    snprintf(trust, sizeof trust, "%s/apps/trust", home);
    FILE *f = fopen(trust, "a");
    assert_non_null(f);
    fputs("local-files refuse\n", f);
    fclose(f);
    assert_int_equal(run(&out, &err, "generate --model '%s' --prompt x -n 2", model), 1);
    assert_non_null(strstr(err.data, "local-files refuse"));
    assert_int_equal(
        run(&out, &err, "generate --model '%s' --prompt x -n 2 --allow-unsigned", model), 0);
    char log[400];
    snprintf(log, sizeof log, "%s/apps/verify.log", home);
    llmos_buf lb = {0};
    assert_int_equal(llmos_file_read_all(log, 1 << 20, &lb), LLMOS_OK);
    assert_non_null(strstr(lb.data, "\"outcome\":\"refused: local-files refuse\""));
    assert_non_null(strstr(lb.data, "\"outcome\":\"unsigned\""));
    buf_free(&lb);
    buf_free(&out);
    buf_free(&err);
}

static void test_sign(void **state)
{
    (void)state;
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    char file[400];
    snprintf(file, sizeof file, "%s/notes.txt", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("release notes\n", f);
    fclose(f);
    assert_int_equal(run(&out, &err, "sign --key '%s/acme.key' '%s'", dir, file), 0);
    assert_non_null(strstr(out.data, ".minisig"));
    if (system("minisign -v >/dev/null 2>&1") != 0)
        tu_skip("the minisign program is not installed (scripts/deps installs it)");
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "minisign -V -q -p '%s/acme.pub' -m '%s'", dir, file);
    assert_int_equal(system(cmd), 0);
    buf_free(&out);
    buf_free(&err);
}

/* A specialist runs apart with the capabilities its manifest asks for that the policy grants:
 * compute always, message only after 'grant storyteller message'. */
static void test_delegate_capabilities(void **state)
{
    (void)state;
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    /* a publisher of its own: acme's key was revoked above */
    assert_int_equal(run(&out, &err, "keys new '%s/tales'", dir), 0);
    assert_int_equal(run(&out, &err, "keys trust '%s/tales.pub' --publisher tales", dir), 0);
    assert_int_equal(run(&out, &err,
                         "publish '%s' --key '%s/tales.key' --name storyteller --version 1.0.0 "
                         "--publisher tales --kind specialist --caps compute,message "
                         "--system 'You tell stories.' '%s=model.gguf'",
                         reg, dir, model),
                     0);
    assert_int_equal(run(&out, &err, "pull storyteller --registry %s", url), 0);
    assert_int_equal(run(&out, &err, "delegate storyteller Once upon a time"), 0);
    assert_non_null(strstr(err.data, "capabilities compute\n"));
    assert_true(out.len > 0);
    char trust[400];
    snprintf(trust, sizeof trust, "%s/apps/trust", home);
    FILE *f = fopen(trust, "a");
    assert_non_null(f);
    fputs("grant storyteller message,exec\n", f); /* exec: granted, but not asked for */
    fclose(f);
    assert_int_equal(run(&out, &err, "delegate storyteller Once upon a time"), 0);
    assert_non_null(strstr(err.data, "capabilities compute,message\n"));
    /* a model is not a specialist */
    assert_int_equal(run(&out, &err, "--allow-unsigned delegate plain x"), 1);
    assert_non_null(strstr(err.data, "not a specialist"));
    buf_free(&out);
    buf_free(&err);
}

/* `llmos` (and `make run`) with no model names the default model with its size, and where no
 * registry is set or reachable says in one line what to do; it never reads a stdin that is
 * not a terminal. */
static void test_no_model_offer(void **state)
{
    (void)state;
    tu_testdata_path(model, sizeof model, "models/stories260K.gguf");
    llmos_buf out = {0}, err = {0};
    assert_int_equal(
        run(&out, &err, "LLMOS_MODEL= LLMOS_REGISTRY=%s LLMOS_DEFAULT_MODEL=stories ", url), 0);
    assert_non_null(strstr(out.data, "The default model is stories 1.0.0 (1.0 MiB)"));
    assert_non_null(strstr(out.data, "llmos pull stories"));
    assert_int_equal(run(&out, &err, "LLMOS_MODEL= LLMOS_REGISTRY=http://127.0.0.1:1 "), 0);
    assert_non_null(strstr(out.data, "cannot be reached"));
    assert_non_null(strstr(out.data, "--model FILE.gguf"));
    assert_int_equal(run(&out, &err, "LLMOS_MODEL= LLMOS_REGISTRY= "), 0);
    assert_non_null(strstr(out.data, "llmos pull qwen2.5-0.5b-instruct"));
    buf_free(&out);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_pull_run),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_delegate_capabilities),
        cmocka_unit_test(test_no_model_offer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
