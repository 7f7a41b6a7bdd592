/* test_model_interrupt.c - Ctrl-C during `llmos model make-random` and `llmos model quantize`:
 * the program stops, exits with status 130 (interrupted) and leaves neither its output nor the
 * large temporary file it was writing. Each run is signalled as soon as its temporary file
 * (OUT.tmp.PID) appears, so the jobs only need to outlast the signal's delivery. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

/* True when `dir` holds an entry whose name contains ".tmp." (a writer's temporary file). */
static bool has_tmp_file(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d)) != NULL;)
        found = strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return found;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Run `llmos ARGS...` (args[0] is the first argument after the program name; NULL ends them)
 * with standard error in dir/stderr.txt, send it SIGINT once a temporary file shows up in dir,
 * and check that it exits with 130, saying so, and leaves no temporary file and no `out`. */
static void interrupt_when_writing(const char *dir, const char *out, const char *const *args)
{
    char err_path[400];
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", dir);
    const char *argv[16] = {"llmos"};
    size_t n = 1;
    while (args[n - 1] && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null = open("/dev/null", O_RDWR);
        if (fd < 0 || null < 0 || dup2(fd, 2) < 0 || dup2(null, 1) < 0 || dup2(null, 0) < 0)
            _exit(125);
        execv(getenv("LLMOS_BIN"), (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    bool seen = false;
    for (int i = 0; i < 6000 && !seen; i++) { /* up to 60 s for the writing to start */
        seen = has_tmp_file(dir);
        if (!seen && waitpid(pid, &status, WNOHANG) == pid)
            fail_msg("llmos %s exited (status %d) before its temporary file was seen", args[0],
                     status);
        if (!seen)
            sleep_ms(10);
    }
    assert_int_equal(kill(pid, SIGINT), 0);
    pid_t done = 0;
    for (int i = 0; i < 3000 && done == 0; i++) { /* it must stop within 30 s */
        done = waitpid(pid, &status, WNOHANG);
        if (done == 0)
            sleep_ms(10);
    }
    if (done == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("llmos %s did not stop within 30 s of SIGINT", args[0]);
    }
    assert_true(seen);
    assert_true(WIFEXITED(status)); /* not killed by the signal */
    assert_int_equal(WEXITSTATUS(status), 130);
    assert_false(has_tmp_file(dir));
    assert_int_equal(access(out, F_OK), -1);
    llmos_buf err = {0};
    assert_int_equal(llmos_file_read_all(err_path, 1 << 20, &err), LLMOS_OK);
    assert_int_equal(buf_putc(&err, '\0'), LLMOS_OK);
    assert_non_null(strstr(err.data, "llmos: interrupted:"));
    assert_non_null(strstr(err.data, "writing stopped on request"));
    buf_free(&err);
}

static void test_make_random_interrupted(void **state)
{
    (void)state;
    char vocab[4096], dir[256], out[300];
    if (!tu_testdata_path(vocab, sizeof vocab, "models/stories260K.gguf"))
        skip();
    assert_true(tu_mkdtemp("interrupt", dir, sizeof dir));
    snprintf(out, sizeof out, "%s/tinyllama.gguf", dir);
    /* 1.1 billion parameters in F16: 2.2 GB, many seconds of work if it were not stopped */
    const char *args[] = {"model",        "make-random", "--shape", "tinyllama-1.1b",
                          "--vocab-from", vocab,         out,       NULL};
    interrupt_when_writing(dir, out, args);
    tu_rmrf(dir);
}

static void test_quantize_interrupted(void **state)
{
    (void)state;
    char vocab[4096], dir[256], src[300], out[300];
    if (!tu_testdata_path(vocab, sizeof vocab, "models/stories260K.gguf"))
        skip();
    assert_true(tu_mkdtemp("interrupt", dir, sizeof dir));
    snprintf(src, sizeof src, "%s/src.gguf", dir);
    snprintf(out, sizeof out, "%s/q4_k_m.gguf", dir);
    /* 13 million F16 parameters: about a second of Q4_K_M work on one thread */
    assert_int_equal(tu_run_llmos(NULL, NULL,
                                  "model make-random --dims 512,4,8,8,1408 --vocab-from '%s' '%s'",
                                  vocab, src),
                     0);
    const char *args[] = {"model", "quantize", "-t", "1", src, out, "Q4_K_M", NULL};
    interrupt_when_writing(dir, out, args);
    assert_int_equal(access(src, F_OK), 0); /* the input is untouched */
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_make_random_interrupted),
        cmocka_unit_test(test_quantize_interrupted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
