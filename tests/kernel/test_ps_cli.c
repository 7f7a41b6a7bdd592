/*
 * test_ps_cli.c - the kernel's commands: `llmos ps`, `llmos kill PID`, `llmos audit` and
 * `llmos audit verify`, on a store made here (processes spawned by a kernel over the scripted
 * TEST backend), including a tampered audit log that verify must name; and `llmos kill` from
 * another program stopping a shell's running answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "doubles.h"
#include "llmos/kernel.h"
#include "storage/store_internal.h"
#include "testutil.h"

static char home[256], storedir[300];

static store *open_store(void)
{
    store_options o = {0};
    assert_int_equal(keys_kdf_parse("test-weak", &o.kdf), LLMOS_OK);
    o.no_fsync = true;
    store *s = NULL;
    assert_int_equal(store_open(storedir, "pw", &o, &s), LLMOS_OK);
    return s;
}

static int run(llmos_buf *out, llmos_buf *err, const char *args)
{
    buf_clear(out);
    buf_clear(err);
    return tu_run_llmos(out, err, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak %s",
                        home, args);
}

static void test_ps_kill_audit(void **state)
{
    (void)state;
    if (!getenv("LLMOS_BIN"))
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    assert_true(tu_mkdtemp("pscli", home, sizeof home));
    snprintf(storedir, sizeof storedir, "%s/store", home);
    llmos_buf out = {0}, err = {0};
    /* No store yet: a clear error. */
    assert_int_equal(run(&out, &err, "ps"), 1);
    assert_non_null(strstr(err.data, "no llmos store"));

    store *st = open_store();
    const char *steps[] = {"{\"content\": \"hi\", \"tokens\": 7}"};
    llm_backend *b = NULL;
    assert_int_equal(scripted_test_backend_new(steps, 1, false, &b), LLMOS_OK);
    kernel_config c = {.st = st, .privileged = b};
    kernel *k = NULL;
    assert_int_equal(kernel_new(&c, &k), LLMOS_OK);
    ksession_params sp = {.principal = "alice",
                          .device = "test",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_ALL,
                          .budget = {.tokens = 100, .tool_calls = 4}};
    ksession *s = NULL;
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    int64_t p1, p2;
    assert_int_equal(ksession_spawn(s, KCAP_COMPUTE | KCAP_MESSAGE, &p1), LLMOS_OK);
    assert_int_equal(ksession_send(s, p1, "one", NULL, NULL, NULL, NULL), LLMOS_OK);
    assert_int_equal(ksession_spawn(s, KCAP_ALL, &p2), LLMOS_OK);
    ksession_close(s);
    kernel_free(k);
    llm_backend_free(b);
    store_close(st);

    assert_int_equal(run(&out, &err, "ps"), 0);
    assert_non_null(strstr(out.data, "PID"));
    assert_non_null(strstr(out.data, "done"));
    assert_non_null(strstr(out.data, "idle"));
    assert_non_null(strstr(out.data, "alice"));
    assert_non_null(strstr(out.data, "compute,message"));
    assert_non_null(strstr(out.data, "7/100"));
    assert_non_null(strstr(out.data, "0/4"));
    assert_int_equal(run(&out, &err, "ps --json"), 0);
    assert_non_null(strstr(out.data, "\"state\":\"idle\""));

    assert_int_equal(run(&out, &err, "kill 2"), 0);
    assert_non_null(strstr(out.data, "process 2 killed"));
    assert_int_equal(run(&out, &err, "kill 2"), 1);
    assert_non_null(strstr(err.data, "already ended"));
    assert_int_equal(run(&out, &err, "kill 77"), 1);
    assert_non_null(strstr(err.data, "no process 77"));
    assert_int_equal(run(&out, &err, "kill abc"), 2);
    assert_int_equal(run(&out, &err, "ps"), 0);
    assert_non_null(strstr(out.data, "killed"));

    assert_int_equal(run(&out, &err, "audit"), 0);
    assert_non_null(strstr(out.data, "login"));
    assert_non_null(strstr(out.data, "model.load"));
    assert_non_null(strstr(out.data, "\"event\":\"killed\""));
    assert_int_equal(run(&out, &err, "audit verify"), 0);
    assert_non_null(strstr(out.data, "audit log intact"));

    /* Tamper: edit record 2 directly in SQLite. */
    st = open_store();
    assert_int_equal(
        sqlite3_exec(st->db, "UPDATE audit SET payload = '{}' WHERE seq = 2", NULL, NULL, NULL),
        SQLITE_OK);
    store_close(st);
    assert_int_equal(run(&out, &err, "audit verify"), 1);
    assert_non_null(strstr(out.data, "first bad record 2"));
    assert_int_equal(run(&out, &err, "audit --bogus"), 2);

    buf_free(&out);
    buf_free(&err);
    tu_rmrf(home);
}

/* `llmos kill PID` from another terminal stops the answer a shell is generating. The shell
 * answers one message (`llmos --model M "text"`) with a random-weight model big enough to take
 * seconds; the kill comes once the answer streams, and the shell must report the process killed
 * soon after (the library test times the kernel's part: under 200 ms). */
static void test_kill_stops_a_running_shell(void **state)
{
    (void)state;
    const char *bin = getenv("LLMOS_BIN");
    char vocab[1024];
    if (!bin)
        tu_skip("LLMOS_BIN is not set (run the tests through ctest)");
    tu_testdata_path(vocab, sizeof vocab, "models/stories260K.gguf");
    assert_true(tu_mkdtemp("pskill", home, sizeof home));
    llmos_buf out = {0}, err = {0};
    char model[400];
    snprintf(model, sizeof model, "%s/slow.gguf", home);
    char args[2048];
    snprintf(args, sizeof args,
             "model make-random --dims 512,6,8,8,2048,4096 --vocab-from '%s' '%s'", vocab, model);
    assert_int_equal(tu_run_llmos(&out, &err, "%s", args), 0);

    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        dup2(fds[1], STDOUT_FILENO);
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        setenv("LLMOS_HOME", home, 1);
        setenv("LLMOS_PASSPHRASE", "pw", 1);
        setenv("LLMOS_KDF", "test-weak", 1);
        execl(bin, "llmos", "--model", model, "--ctx", "2048", "-n", "4000", "--temp", "0",
              "Once upon a time", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    /* wait until the answer streams: some output beyond the loading lines */
    llmos_buf got = {0};
    double give_up = llmos_time_now() + 60;
    size_t streamed = 0;
    while (llmos_time_now() < give_up) {
        char chunk[4096];
        ssize_t n = read(fds[0], chunk, sizeof chunk);
        if (n <= 0)
            break;
        assert_int_equal(buf_append(&got, chunk, (size_t)n), LLMOS_OK);
        /* the loading lines come first, then the answer streams */
        const char *loaded = strstr(got.data, "template\n");
        if (loaded && strlen(loaded) > 300 && (streamed = strlen(loaded)))
            break;
    }
    assert_true(streamed > 0);
    assert_int_equal(run(&out, &err, "kill 1"), 0);
    double killed = llmos_time_now();
    for (;;) {
        char chunk[4096];
        ssize_t n = read(fds[0], chunk, sizeof chunk);
        if (n <= 0)
            break;
        assert_int_equal(buf_append(&got, chunk, (size_t)n), LLMOS_OK);
    }
    double ended = llmos_time_now();
    int st = 0;
    assert_int_equal(waitpid(child, &st, 0), child);
    close(fds[0]);
    fprintf(stderr,
            "llmos kill: the shell's turn ended and the program exited %.0f ms after the "
            "kill command returned\n",
            (ended - killed) * 1000);
    assert_non_null(strstr(got.data, "ended: killed: killed by the user"));
    assert_true(ended - killed < 1.0); /* the program's exit included */
    assert_int_equal(run(&out, &err, "ps"), 0);
    assert_non_null(strstr(out.data, "killed"));
    buf_free(&got);
    buf_free(&out);
    buf_free(&err);
    tu_rmrf(home);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ps_kill_audit),
        cmocka_unit_test(test_kill_stops_a_running_shell),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
