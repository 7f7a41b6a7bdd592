/*
 * bench/mcp.c - what an MCP tool call costs: N tools/call of server-everything's echo through
 * mcp_call_tool (the request written, the answer read line by line, parsed and checked, its
 * content made text), against N round trips of a line of the same size through `cat` on the
 * same kind of pipes in the same run (the baseline: what the pipes and two context switches
 * cost). Also the start-up: mcp_connect (node starting the server, initialize) and
 * tools/list, K times.
 *
 *   build/bench/mcp [N] [K]        (N = 500, K = 5; run from the source tree, after
 *                                   scripts/deps installed tests/io/node/node_modules)
 *
 * Prints:
 *   RESULT  case  n  median_ms  p99_ms
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmos/json.h"
#include "llmos/mcp.h"

static const char server_js[] =
    "tests/io/node/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

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

static void report(const char *name, double *t, int n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    int i99 = (int)(0.99 * (n - 1) + 0.5);
    printf("RESULT  %-14s %5d  %8.3f  %8.3f\n", name, n, median, t[i99]);
}

/* The baseline: a line of `len` bytes to cat and back, n times. */
static int pipe_round_trips(int n, size_t len, double *t)
{
    int to[2], from[2];
    if (pipe(to) < 0 || pipe(from) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[1]);
        close(from[0]);
        execlp("cat", "cat", (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    char *line = malloc(len + 1), *back = malloc(len + 1);
    memset(line, 'x', len);
    line[len] = '\n';
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        if (write(to[1], line, len + 1) != (ssize_t)(len + 1))
            return -1;
        size_t got = 0;
        while (got < len + 1) {
            ssize_t r = read(from[0], back + got, len + 1 - got);
            if (r <= 0)
                return -1;
            got += (size_t)r;
        }
        t[i] = now_ms() - t0;
    }
    close(to[1]);
    close(from[0]);
    waitpid(pid, NULL, 0);
    free(line);
    free(back);
    return 0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 500, k = argc > 2 ? atoi(argv[2]) : 5;
    if (n < 1 || k < 1 || access(server_js, R_OK) != 0) {
        fprintf(stderr, "usage: build/bench/mcp [N] [K], from the source tree, with %s "
                        "installed (scripts/deps)\n", server_js);
        return 2;
    }
    const char *args[] = {"node", server_js, "stdio", NULL};
    double *t = calloc((size_t)(n > k ? n : k), sizeof *t);

    mcp_client *c = NULL;
    for (int i = 0; i < k; i++) {
        double t0 = now_ms();
        mcp_tool *tools = NULL;
        size_t nt = 0;
        if (mcp_connect(args, NULL, &c) != LLMOS_OK || mcp_list_tools(c, &tools, &nt) != LLMOS_OK) {
            fprintf(stderr, "mcp: %s\n", llmos_errmsg());
            return 1;
        }
        t[i] = now_ms() - t0;
        mcp_tools_free(tools, nt);
        if (i + 1 < k)
            mcp_close(c);
    }
    report("start+list", t, k);

    json_t *a = json_pack("{s:s}", "message", "the quick brown fox jumps over the lazy dog");
    llmos_buf text = {0};
    bool is_error = false;
    size_t request_len = 0;
    for (int i = 0; i < n; i++) {
        buf_clear(&text);
        double t0 = now_ms();
        if (mcp_call_tool(c, "echo", a, &text, &is_error) != LLMOS_OK || is_error) {
            fprintf(stderr, "mcp: %s\n", llmos_errmsg());
            return 1;
        }
        t[i] = now_ms() - t0;
        request_len = 110 + text.len; /* about the request's size */
    }
    report("echo call", t, n);
    mcp_close(c);

    if (pipe_round_trips(n, request_len, t) != 0) {
        fprintf(stderr, "mcp: the pipe baseline failed\n");
        return 1;
    }
    report("pipe via cat", t, n);
    json_decref(a);
    buf_free(&text);
    free(t);
    return 0;
}
