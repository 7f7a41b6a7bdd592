/*
 * bench/browser.c - what the browser's guard costs: N fetches of a local test page (an HTML page
 * of about 20 KiB served by libmicrohttpd on a loopback port put on the allow-list) through
 * browser_fetch (URL check, resolution and address check, the pinned connection, robots.txt
 * from its cache) and html_to_text, against N plain libcurl GETs of the same page in the same
 * run (the baseline). Wall time per fetch, median and p99.
 *
 *   build/bench/browser [N]        (N = 300 by default)
 *
 * Prints:
 *   RESULT  case  n  median_ms  p99_ms
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "llmos/browser.h"

static char page[20480];

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)cls, (void)method, (void)version, (void)data, (void)size, (void)con_cls;
    const char *body = strcmp(url, "/robots.txt") == 0 ? "User-agent: *\nDisallow: /no\n" : page;
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type",
                            strcmp(url, "/robots.txt") == 0 ? "text/plain" : "text/html");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

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
    printf("RESULT  %-34s n=%d  median %6.3f ms  p99 %6.3f ms\n", name, n, median,
           t[(int)(0.99 * (n - 1) + 0.5)]);
}

static size_t discard(char *p, size_t s, size_t n, void *ctx)
{
    (void)p;
    *(size_t *)ctx += s * n;
    return s * n;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 300;
    if (n < 10)
        n = 10;
    /* a page with headings, paragraphs, a list and links */
    size_t at = (size_t)snprintf(page, sizeof page, "<html><head><title>Bench</title></head><body>");
    for (int i = 0; at + 400 < sizeof page; i++)
        at += (size_t)snprintf(page + at, sizeof page - at,
                               "<h2>Section %d</h2><p>Some text of section %d, with a <a "
                               "href=\"/s/%d\">link</a> and <b>bold</b> words.</p><ul><li>one</"
                               "li><li>two</li></ul>",
                               i, i, i);
    snprintf(page + at, sizeof page - at, "</body></html>");

    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64) ||
        getsockname(s, (struct sockaddr *)&a, &len))
        return 1;
    int port = ntohs(a.sin_port);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            on_request, NULL, MHD_OPTION_LISTEN_SOCKET, s,
                                            MHD_OPTION_END);
    char allow[64], url[128];
    snprintf(allow, sizeof allow, "127.0.0.1:%d", port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/page", port);
    if (!d || browser_allow(allow))
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    double *tb = malloc((size_t)n * sizeof *tb), *tc = malloc((size_t)n * sizeof *tc),
           *th = malloc((size_t)n * sizeof *th);
    browser_page p;
    if (browser_fetch(url, &p)) { /* warm: robots.txt into its cache */
        fprintf(stderr, "fetch: %s\n", llmos_errmsg());
        return 1;
    }
    browser_page_free(&p);
    for (int i = 0; i < n; i++) {
        /* the baseline: a plain libcurl GET */
        CURL *c = curl_easy_init();
        size_t got = 0;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        double t0 = now_ms();
        if (curl_easy_perform(c) != CURLE_OK)
            return 1;
        tc[i] = now_ms() - t0;
        curl_easy_cleanup(c);
        /* the guarded fetch, then the text */
        t0 = now_ms();
        if (browser_fetch(url, &p))
            return 1;
        tb[i] = now_ms() - t0;
        llmos_buf text = {0};
        t0 = now_ms();
        if (html_to_text(p.body.data, p.body.len, p.url, &text))
            return 1;
        th[i] = now_ms() - t0;
        buf_free(&text);
        browser_page_free(&p);
    }
    printf("# %d fetches of a %zu-byte page on a loopback port, alternating\n", n, strlen(page));
    report("plain libcurl GET", tc, n);
    report("browser_fetch (guarded)", tb, n);
    report("html_to_text of the page", th, n);
    MHD_stop_daemon(d);
    free(tb);
    free(tc);
    free(th);
    return 0;
}
