/*
 * test_sandbox.c - the sandbox (src/tools/sandbox.c) on its own: python3 and sh run and give
 * back stdout, stderr, exit status and signal; stdin reaches the program; the workspace is
 * /work and what is written there stays; the wall-clock timeout kills the program and what it
 * left running; output is capped; no network; the same as an unprivileged user (as root the
 * test runs one as nobody); a bad spec is refused.
 *
 * The hostile programs are in tests/security/test_escape.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <errno.h>
#include <sched.h>
#include <seccomp.h>

#include "llmos/sandbox.h"
#include "testutil.h"

static char ws[256];

static int setup(void **state)
{
    (void)state;
    if (!tu_mkdtemp("sandbox", ws, sizeof ws))
        return -1;
    uid_t u;
    gid_t g;
    sandbox_owner(&u, &g);
    if (chown(ws, u, g) != 0 && geteuid() == 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(ws);
    return 0;
}

/* The sandbox works here, or the test skips when the kernel refuses an unprivileged user its
 * namespaces (as root, where CI runs, it must work). */
static void need_sandbox(void)
{
    llmos_err err = sandbox_probe();
    if (err && geteuid() != 0 && err == LLMOS_ERR_UNSUPPORTED)
        tu_skip("%s", llmos_errmsg());
    if (err)
        fail_msg("sandbox_probe: %s", llmos_errmsg());
}

static void run(const char *const *argv, const char *in, double wall, sandbox_result *r)
{
    sandbox_spec s = {.argv = argv,
                      .stdin_data = in,
                      .stdin_len = in ? strlen(in) : 0,
                      .workspace = ws,
                      .limits = {.wall_s = wall}};
    llmos_err err = sandbox_exec(&s, r);
    if (err)
        fail_msg("sandbox_exec: %s", llmos_errmsg());
}

static void python(const char *code, double wall, sandbox_result *r)
{
    const char *argv[] = {SANDBOX_PYTHON, "-I", "-", NULL};
    run(argv, code, wall, r);
}

static void sh(const char *cmd, double wall, sandbox_result *r)
{
    const char *argv[] = {SANDBOX_SH, "-c", cmd, NULL};
    run(argv, NULL, wall, r);
}

static void test_python_runs(void **state)
{
    (void)state;
    need_sandbox();
    sandbox_result r;
    python("import sys, math\nprint(math.factorial(20))\nprint('oops', file=sys.stderr)\n"
           "sys.exit(3)\n",
           10, &r);
    assert_int_equal(r.exit_code, 3);
    assert_int_equal(r.signal, 0);
    assert_false(r.timed_out);
    assert_string_equal(r.out.data, "2432902008176640000\n");
    assert_string_equal(r.err.data, "oops\n");
    sandbox_result_free(&r);
}

static void test_stdin_and_workspace(void **state)
{
    (void)state;
    need_sandbox();
    sandbox_result r;
    /* the program gets stdin; /work is the workspace, and what it writes stays there */
    const char *argv[] = {SANDBOX_SH, "-c", "cat > /work/in.txt; pwd; echo $HOME; id -u", NULL};
    run(argv, "hello through stdin\n", 10, &r);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "/work\n/work\n1000\n");
    sandbox_result_free(&r);
    char path[300];
    snprintf(path, sizeof path, "%s/in.txt", ws);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "hello through stdin\n");
    /* a second run sees it; python's standard library and threads work */
    python("import json, threading, sqlite3, subprocess\n"
           "print(open('/work/in.txt').read().strip())\n"
           "t = threading.Thread(target=print, args=('thread',)); t.start(); t.join()\n"
           "print(subprocess.run(['ls', '/work'], capture_output=True, text=True).stdout)\n",
           10, &r);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "hello through stdin\nthread\nin.txt\n\n");
    sandbox_result_free(&r);
}

static void test_timeout_kills_everything(void **state)
{
    (void)state;
    need_sandbox();
    sandbox_result r;
    /* a child left behind would write /work/late after 2 s */
    sh("(sleep 2; echo late > /work/late) & while :; do :; done", 0.5, &r);
    assert_true(r.timed_out);
    assert_int_equal(r.signal, SIGKILL);
    assert_true(r.wall_s < 2.0);
    sandbox_result_free(&r);
    sleep(3);
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "%s/late", ws);
    assert_int_not_equal(stat(path, &st), 0);
}

static void test_output_capped(void **state)
{
    (void)state;
    need_sandbox();
    sandbox_result r;
    const char *argv[] = {SANDBOX_PYTHON, "-c", "import sys\nsys.stdout.write('x' * 3000000)\n",
                          NULL};
    sandbox_spec s = {.argv = argv, .workspace = ws, .limits = {.output_bytes = 1000}};
    assert_int_equal(sandbox_exec(&s, &r), LLMOS_OK);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.out.len, 1000);
    assert_true(r.out_truncated);
    assert_false(r.err_truncated);
    sandbox_result_free(&r);
}

static void test_no_network(void **state)
{
    (void)state;
    need_sandbox();
    sandbox_result r;
    /* an inet socket is a system call the filter kills on */
    python("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\nprint('made')\n",
           10, &r);
    assert_int_equal(r.signal, SIGSYS);
    assert_string_equal(r.out.data ? r.out.data : "", "");
    sandbox_result_free(&r);
    /* AF_UNIX is allowed, and the network namespace has no interface up */
    python("import socket, os\nsocket.socket(socket.AF_UNIX).close()\n"
           "print(sorted(os.listdir('/proc/self/net/dev_snmp6')) if False else 'unix ok')\n",
           10, &r);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out.data, "unix ok\n");
    sandbox_result_free(&r);
}

/* As an unprivileged user (nobody), in a child process. */
static void test_unprivileged(void **state)
{
    (void)state;
    need_sandbox();
    if (geteuid() != 0)
        return; /* every other test ran unprivileged already */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0)
            _exit(90);
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); /* as a program started by nobody would be */
        const char *argv[] = {SANDBOX_SH, "-c", "id -u; echo made > /work/nobody.txt", NULL};
        sandbox_spec s = {.argv = argv, .workspace = ws};
        sandbox_result r;
        if (sandbox_exec(&s, &r) != LLMOS_OK) {
            fprintf(stderr, "as nobody: %s\n", llmos_errmsg());
            _exit(91);
        }
        int ok = r.exit_code == 0 && r.out.data && strcmp(r.out.data, "1000\n") == 0;
        _exit(ok ? 0 : 92);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    char path[300];
    struct stat sb;
    snprintf(path, sizeof path, "%s/nobody.txt", ws);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_uid, 65534);
}

/* From a threaded program (the HTTP server is one): the child is a copy of one thread, and
 * must not wait for the others (as the C library's setresuid would). */
static void *idle_thread(void *arg)
{
    atomic_bool *stop = arg;
    while (!atomic_load(stop))
        usleep(1000);
    return NULL;
}

static void test_from_threads(void **state)
{
    (void)state;
    need_sandbox();
    atomic_bool stop = false;
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&t[i], NULL, idle_thread, &stop), 0);
    for (int i = 0; i < 8; i++) {
        sandbox_result r;
        python("print(6 * 7)\n", 5, &r);
        assert_false(r.timed_out);
        assert_string_equal(r.out.data, "42\n");
        sandbox_result_free(&r);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
}

/* Where the kernel refuses user namespaces (here: a seccomp filter of this test's child that
 * answers EPERM to clone with CLONE_NEWUSER, and ENOSYS to clone3, as a container runtime
 * might), the error says so and names the sysctls that decide it. */
static void test_refused_namespaces(void **state)
{
    (void)state;
    need_sandbox();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
        if (!f ||
            seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)) ||
            seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) || seccomp_load(f))
            _exit(90);
        const char *argv[] = {SANDBOX_SH, "-c", "true", NULL};
        sandbox_spec s = {.argv = argv, .workspace = ws};
        sandbox_result r;
        llmos_err err = sandbox_exec(&s, &r);
        sandbox_result_free(&r);
        if (err != LLMOS_ERR_UNSUPPORTED)
            _exit(91);
        const char *m = llmos_errmsg();
        fprintf(stderr, "refused as expected: %s\n", m);
        _exit(strstr(m, "refused to make namespaces") && strstr(m, "user.max_user_namespaces")
                  ? 0
                  : 92);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_bad_spec(void **state)
{
    (void)state;
    sandbox_result r;
    const char *rel[] = {"python3", NULL};
    sandbox_spec s = {.argv = rel, .workspace = ws};
    assert_int_equal(sandbox_exec(&s, &r), LLMOS_ERR_INVALID);
    const char *argv[] = {SANDBOX_SH, NULL};
    sandbox_spec s2 = {.argv = argv, .workspace = "/nonexistent/llmos-workspace"};
    assert_int_equal(sandbox_exec(&s2, &r), LLMOS_ERR_IO);
    assert_non_null(strstr(llmos_errmsg(), "/nonexistent/llmos-workspace"));
    sandbox_result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_python_runs),
        cmocka_unit_test(test_stdin_and_workspace),
        cmocka_unit_test(test_timeout_kills_everything),
        cmocka_unit_test(test_output_capped),
        cmocka_unit_test(test_no_network),
        cmocka_unit_test(test_unprivileged),
        cmocka_unit_test(test_from_threads),
        cmocka_unit_test(test_refused_namespaces),
        cmocka_unit_test(test_bad_spec),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
