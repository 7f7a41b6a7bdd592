/*
 * bench/sandbox.c - what a sandboxed run costs to start (llmos/sandbox.h): a trivial Python
 * program (`pass`) and a trivial shell command (`true`) run N times in the sandbox, and N
 * times as a plain fork and exec of the same interpreter, the baseline of the same run. Wall
 * time from the call to the program's exit, median and p99, and the sandbox's overhead over
 * the baseline.
 *
 *   build/bench/sandbox [N]        (N = 200 by default; run as root or as a user allowed user
 *                                   namespaces)
 *
 * Prints one line per case:
 *   RESULT  case  n  median_ms  p99_ms  (and the ratio of the medians, sandbox / plain)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmos/sandbox.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median and p99 of t[0..n) (sorted in place) */
static void stats(double *t, int n, double *median, double *p99)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    *median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    int i = (int)(0.99 * (n - 1) + 0.5);
    *p99 = t[i];
}

static double plain_run(const char *const *argv)
{
    double t0 = now_ms();
    pid_t p = fork();
    if (p == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    waitpid(p, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "plain %s failed\n", argv[0]);
        exit(1);
    }
    return now_ms() - t0;
}

static double sandbox_run(const char *const *argv, const char *ws)
{
    sandbox_spec s = {.argv = argv, .workspace = ws};
    sandbox_result r;
    double t0 = now_ms();
    llmos_err err = sandbox_exec(&s, &r);
    double t = now_ms() - t0;
    if (err || r.exit_code != 0) {
        fprintf(stderr, "sandbox %s failed: %s %s\n", argv[0], err ? llmos_errmsg() : "",
                r.err.data ? r.err.data : "");
        exit(1);
    }
    sandbox_result_free(&r);
    return t;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 200;
    if (n < 10)
        n = 10;
    if (sandbox_probe()) {
        fprintf(stderr, "no sandbox here: %s\n", llmos_errmsg());
        return 1;
    }
    char ws[] = "/tmp/llmos-bench-sandbox-XXXXXX";
    if (!mkdtemp(ws))
        return 1;
    uid_t u;
    gid_t g;
    sandbox_owner(&u, &g);
    if (chown(ws, u, g) != 0 && geteuid() == 0)
        return 1;
    const char *py_plain[] = {"/usr/bin/python3", "-I", "-c", "pass", NULL};
    const char *py_box[] = {SANDBOX_PYTHON, "-I", "-c", "pass", NULL};
    const char *sh_plain[] = {"/bin/sh", "-c", "true", NULL};
    const char *sh_box[] = {SANDBOX_SH, "-c", "true", NULL};
    struct {
        const char *name;
        const char *const *plain, *const *box;
    } cases[] = {{"python3 -c pass", py_plain, py_box}, {"sh -c true", sh_plain, sh_box}};
    double *tp = malloc((size_t)n * sizeof *tp), *tb = malloc((size_t)n * sizeof *tb);
    if (!tp || !tb)
        return 1;
    printf("# %d runs each, alternating plain and sandboxed; wall ms from start to exit\n", n);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        (void)plain_run(cases[c].plain); /* warm the page cache */
        (void)sandbox_run(cases[c].box, ws);
        for (int i = 0; i < n; i++) {
            tp[i] = plain_run(cases[c].plain);
            tb[i] = sandbox_run(cases[c].box, ws);
        }
        double pm, p99, bm, b99;
        stats(tp, n, &pm, &p99);
        stats(tb, n, &bm, &b99);
        printf("RESULT  %-16s plain    n=%d  median %7.2f ms  p99 %7.2f ms\n", cases[c].name, n,
               pm, p99);
        printf("RESULT  %-16s sandbox  n=%d  median %7.2f ms  p99 %7.2f ms  (%.2fx plain, +%.2f "
               "ms)\n",
               cases[c].name, n, bm, b99, bm / pm, bm - pm);
    }
    free(tp);
    free(tb);
    rmdir(ws);
    return 0;
}
