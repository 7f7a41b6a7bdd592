/*
 * bench/guard.c - what the output guard costs per answer of 1,000 tokens, without the judge.
 *
 * The answer is ~4,000 bytes (about four bytes a token in English) of prose, a Python and a C
 * snippet, a markdown link and image, and two findings (an e-mail address and a key), the kind
 * of text the kernel checks. Timed, each many times (median and p99 of the runs):
 *
 *   check    guard_check on the whole answer (ksession_answer, a tool's arguments, a chat
 *            response's content): every detector, the decision, the redaction
 *   stream   the same answer pushed through a guard_stream four bytes at a time, as a model
 *            streams it, then finished: what a streamed answer pays in all
 *   baseline one pass of utf8_valid over the answer, which the kernel does to outside text
 *            anyway: the cheapest look at every byte
 *
 * Times are the thread's CPU time (the machine may be shared).
 *
 * usage: guard [RUNS]   (default 2000)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llmos/base.h"
#include "llmos/guard.h"

static const char *const parts[] = {
    "Here is a summary of what the report says, section by section, with the numbers you asked "
    "for. Revenue grew by 12 percent in the third quarter, mostly from the new subscription "
    "plans, while costs stayed flat. The team expects the same trend next year. ",
    "To read the file in Python without loading it all at once:\n\n```python\nwith open(path, "
    "encoding=\"utf-8\") as f:\n    for line in f:\n        total += len(line.split())\n"
    "print(total)\n```\n\n",
    "In C, copy with a bound:\n\n```c\nsnprintf(dst, sizeof dst, \"%s/%s\", dir, name);\n```\n\n",
    "See [the guide](https://example.com/docs/getting-started) and the chart "
    "![sales](https://cdn.example.com/charts/sales-q3.svg). ",
    "You can reach the maintainer at maintainer@example.org if anything is unclear. ",
    "The old key AKIAIOSFODNN7EXAMPLE was revoked last week. ",
};

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static bool drop(void *ctx, const char *t, size_t n)
{
    (void)t;
    *(size_t *)ctx += n;
    return true;
}

static void report(const char *what, double *v, int n, double base_median)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    double med = v[n / 2], p99 = v[(size_t)((double)n * 0.99)];
    printf("%-9s median %8.1f us   p99 %8.1f us   %6.0fx baseline\n", what, med * 1e6, p99 * 1e6,
           base_median > 0 ? med / base_median : 0);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 2000;
    if (runs < 10)
        runs = 10;
    llmos_buf text = {0};
    while (text.len < 4000)
        for (size_t i = 0; i < sizeof parts / sizeof parts[0] && text.len < 4000; i++)
            if (buf_puts(&text, parts[i]))
                return 1;
    guard *g = NULL;
    if (guard_default(&g)) {
        fprintf(stderr, "guard: %s\n", llmos_errmsg());
        return 1;
    }
    double *base = calloc((size_t)runs, sizeof *base), *check = calloc((size_t)runs, sizeof *check),
           *stream = calloc((size_t)runs, sizeof *stream);
    if (!base || !check || !stream)
        return 1;
    size_t findings = 0, released = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = cpu_now();
        volatile bool ok = utf8_valid(text.data, text.len);
        (void)ok;
        base[r] = cpu_now() - t0;

        guard_result res;
        t0 = cpu_now();
        if (guard_check(g, "bench", text.data, text.len, &res))
            return 1;
        check[r] = cpu_now() - t0;
        findings = res.findings.n;
        guard_result_free(&res);

        guard_stream *s = NULL;
        released = 0;
        t0 = cpu_now();
        if (guard_stream_new(g, "bench", drop, NULL, &released, &s))
            return 1;
        for (size_t i = 0; i < text.len; i += 4)
            guard_stream_push(s, text.data + i, i + 4 <= text.len ? 4 : text.len - i);
        guard_stream_finish(s, NULL);
        guard_stream_free(s);
        stream[r] = cpu_now() - t0;
    }
    printf("answer: %zu bytes (~1,000 tokens), %zu findings, %d runs, %zu bytes released by "
           "the stream\n",
           text.len, findings, runs, released);
    qsort(base, (size_t)runs, sizeof *base, cmp);
    double bm = base[runs / 2];
    printf("baseline  median %8.2f us (utf8_valid)\n", bm * 1e6);
    report("check", check, runs, bm);
    report("stream", stream, runs, bm);
    free(base);
    free(check);
    free(stream);
    buf_free(&text);
    guard_free(g);
    return 0;
}
