/*
 * testutil.c - shared helpers for the tests (see testutil.h).
 */
#include <errno.h>
#include <fcntl.h>
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

int tu_run_llmos(llmos_buf *out, llmos_buf *err, const char *fmt, ...)
{
    const char *bin = getenv("LLMOS_BIN");
    if (!bin) {
        fprintf(stderr, "testutil: LLMOS_BIN is not set (run the tests through ctest)\n");
        return -1;
    }
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);

    /* env assignments at the front of args must precede the program name */
    size_t env_len = 0;
    for (const char *p = args;;) {
        const char *sp = strchr(p, ' ');
        const char *eq = strchr(p, '=');
        if (!sp || !eq || eq > sp || p[0] == '-' || p[0] == '\'')
            break;
        env_len = (size_t)(sp + 1 - args);
        p = sp + 1;
    }

    char errpath[] = "/tmp/llmos-test-stderr-XXXXXX";
    int fd = mkstemp(errpath);
    if (fd < 0)
        return -1;
    close(fd);
    size_t cmd_size = strlen(args) + strlen(bin) + sizeof errpath + 32;
    char *cmd = malloc(cmd_size);
    if (!cmd)
        return -1;
    snprintf(cmd, cmd_size, "%.*s'%s' %s 2>'%s' </dev/null", (int)env_len, args, bin,
             args + env_len, errpath);
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) {
        unlink(errpath);
        return -1;
    }
    if (out)
        buf_clear(out);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        if (out && buf_append(out, chunk, n) != LLMOS_OK)
            break;
    int status = pclose(p);
    if (err) {
        buf_clear(err);
        if (llmos_file_read_all(errpath, 1 << 24, err) != LLMOS_OK)
            buf_clear(err);
    }
    unlink(errpath);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool tu_testdata_find(char *out, size_t size, const char *relative)
{
    const char *dir = getenv("LLMOS_TESTDATA");
    if (!dir || !*dir)
        return false;
    int n = snprintf(out, size, "%s/%s", dir, relative);
    struct stat st;
    return n > 0 && (size_t)n < size && stat(out, &st) == 0;
}

/* One line "<program>: <reason>" at the end of $LLMOS_SKIP_LOG. One write() to a file opened
 * with O_APPEND keeps lines whole while ctest -j runs tests side by side. A skip that cannot
 * be recorded fails the test, so that CI cannot miss it. */
static void skip_log_append(const char *reason)
{
    const char *log = getenv("LLMOS_SKIP_LOG");
    if (!log || !*log)
        return;
    char line[2048];
    int n = snprintf(line, sizeof line, "%s: %s\n", program_invocation_short_name, reason);
    if (n < 0)
        fail_msg("testutil: cannot format the skip log line");
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        fail_msg("testutil: cannot open the skip log %s: %s", log, strerror(errno));
    ssize_t written = write(fd, line, (size_t)n);
    close(fd);
    if (written != n)
        fail_msg("testutil: cannot write to the skip log %s", log);
}

const char *tu_testdata_path(char *out, size_t size, const char *relative)
{
    if (tu_testdata_find(out, size, relative))
        return out;
    const char *dir = getenv("LLMOS_TESTDATA");
    struct stat st;
    char reason[1024];
    if (!dir || !*dir)
        snprintf(reason, sizeof reason, "%s: LLMOS_TESTDATA is not set", relative);
    else if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        snprintf(reason, sizeof reason, "%s: the test data folder %s is absent", relative, dir);
    else
        snprintf(reason, sizeof reason, "%s: not found in the test data folder %s", relative, dir);
    print_message("skipped: %s (the shared test data lives in ../shared/testdata beside the "
                  "source tree, or where the CMake cache variable LLMOS_TESTDATA says; ctest "
                  "passes it to tests as LLMOS_TESTDATA)\n",
                  reason);
    skip_log_append(reason);
    skip();
    return out;
}

void tu_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_message("skipped: ");
    vprint_message(fmt, ap);
    va_end(ap);
    print_message("\n");
    skip();
}

bool tu_mkdtemp(const char *tag, char *out, size_t size)
{
    snprintf(out, size, "/tmp/llmos-test-%s-XXXXXX", tag);
    return mkdtemp(out) != NULL;
}

void tu_rmrf(const char *path)
{
    if (strncmp(path, "/tmp/llmos-test-", 16) != 0 || strstr(path, "..") || strchr(path, '\''))
        return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "testutil: could not remove %s\n", path);
}
