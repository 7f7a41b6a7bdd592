/* test_doctor.c - `llmos doctor` and the data directory ($LLMOS_HOME): a missing one is
 * created, and one that cannot be created (under a file, under a read-only directory, through
 * a dangling symbolic link) is a problem that names the path and the reason, exit status 1. */
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
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

static llmos_buf out;

static void test_missing_home_is_created(void **state)
{
    (void)state;
    char dir[256], home[300];
    assert_true(tu_mkdtemp("doctor", dir, sizeof dir));
    snprintf(home, sizeof home, "%s/data/llmos", dir);
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' doctor", home), 0);
    assert_non_null(strstr(out.data, "(created)"));
    assert_non_null(strstr(out.data, "llmos is ready"));
    struct stat st;
    assert_int_equal(stat(home, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0700);
    tu_rmrf(dir);
}

static void test_home_under_a_file(void **state)
{
    (void)state;
    char dir[256], file[300], want[1024];
    assert_true(tu_mkdtemp("doctor", dir, sizeof dir));
    snprintf(file, sizeof file, "%s/afile", dir);
    assert_int_equal(llmos_file_write_atomic(file, "x", 1, 0600), LLMOS_OK);

    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s/llmos' doctor", file), 1);
    snprintf(want, sizeof want, "%s/llmos cannot be created: %s is a file, not a directory", file,
             file);
    assert_non_null(strstr(out.data, want));
    assert_non_null(strstr(out.data, "must be fixed"));
    assert_null(strstr(out.data, "llmos is ready"));

    /* the same through the default place, $XDG_DATA_HOME/llmos */
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME= XDG_DATA_HOME='%s' doctor", file), 1);
    assert_non_null(strstr(out.data, want));
    tu_rmrf(dir);
}

static void test_home_through_dangling_link(void **state)
{
    (void)state;
    char dir[256], link[300], target[300], want[1024];
    assert_true(tu_mkdtemp("doctor", dir, sizeof dir));
    snprintf(link, sizeof link, "%s/llmos", dir);
    snprintf(target, sizeof target, "%s/unmounted-disk/llmos", dir);
    assert_int_equal(symlink(target, link), 0);
    assert_int_equal(tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' doctor", link), 1);
    snprintf(want, sizeof want, "%s is a symbolic link to %s, which does not exist", link, target);
    assert_non_null(strstr(out.data, want));
    assert_non_null(strstr(out.data, "must be fixed"));
    tu_rmrf(dir);
}

/* `llmos doctor` with LLMOS_HOME=home as the user nobody (uid and gid 65534), since root may
 * write into any directory. Its standard output goes to *o. Returns its exit status, or -1
 * when it could not be run that way (then the caller skips). */
static int doctor_as_nobody(const char *home, llmos_buf *o)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (dup2(fds[1], 1) < 0 || null < 0 || dup2(null, 2) < 0)
            _exit(125);
        close(fds[0]);
        close(fds[1]);
        if (setenv("LLMOS_HOME", home, 1) != 0 || setgroups(0, NULL) != 0 || setgid(65534) != 0 ||
            setuid(65534) != 0)
            _exit(126);
        execl(getenv("LLMOS_BIN"), "llmos", "doctor", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    buf_clear(o);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0)
        assert_int_equal(buf_append(o, chunk, (size_t)n), LLMOS_OK);
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) >= 125)
        return -1;
    return WEXITSTATUS(status);
}

static void test_home_under_read_only_dir(void **state)
{
    (void)state;
    char dir[256], ro[300], home[320], want[1024];
    assert_true(tu_mkdtemp("doctor", dir, sizeof dir));
    snprintf(ro, sizeof ro, "%s/read-only", dir);
    snprintf(home, sizeof home, "%s/llmos", ro);
    assert_int_equal(mkdir(ro, 0555), 0);
    assert_int_equal(chmod(ro, 0555), 0); /* whatever the umask */
    int rc;
    if (geteuid() == 0) {
        assert_int_equal(chmod(dir, 0755), 0); /* nobody must reach ro */
        rc = doctor_as_nobody(home, &out);
        if (rc < 0) {
            tu_rmrf(dir);
            skip(); /* running as root, and the program cannot be run as nobody here */
        }
    } else {
        rc = tu_run_llmos(&out, NULL, "LLMOS_HOME='%s' doctor", home);
    }
    assert_int_equal(rc, 1);
    snprintf(want, sizeof want,
             "%s cannot be created (%s: cannot create directory: Permission "
             "denied)",
             home, home);
    assert_non_null(strstr(out.data, want));
    assert_non_null(strstr(out.data, "must be fixed"));
    struct stat st;
    assert_int_not_equal(stat(home, &st), 0);
    tu_rmrf(dir);
}

static int teardown(void **state)
{
    (void)state;
    buf_free(&out);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_home_is_created),
        cmocka_unit_test(test_home_under_a_file),
        cmocka_unit_test(test_home_through_dangling_link),
        cmocka_unit_test(test_home_under_read_only_dir),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
