/*
 * test_ssrf.c - the browser's guard against server-side request forgery (src/tools/browser.c):
 * a page server on a loopback port is put on the allow-list, a "secret" server listens on
 * another loopback port that is not, and every attempt to reach the secret server, loopback
 * or any private, link-local or metadata address (in every spelling: decimal, octal and hex
 * IPv4, 127.1, IPv4-mapped, NAT64 and 6to4 IPv6, a name that resolves to loopback), directly
 * or through a redirect of the allowed server, must be refused, and the secret server must
 * see no connection. Also: schemes other than http and https, credentials in a URL, a
 * redirect loop, robots.txt, a body past the size limit, and the address table itself. The
 * output lists each attempt with its result and the count of escapes (0).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <microhttpd.h>

#include "doubles.h"
#include "llmos/browser.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"

static struct MHD_Daemon *daemon_a;
static int port_a, port_b, secret_fd = -1;
static atomic_int private_hits, page_hits;
static int attempts, escapes;

/* ---- the page server (allowed) ----------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len, const char *location)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (type)
        MHD_add_response_header(r, "Content-Type", type);
    if (location)
        MHD_add_response_header(r, "Location", location);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)method, (void)version, (void)upload_data, (void)upload_data_size,
        (void)con_cls;
    if (strcmp(url, "/robots.txt") == 0) {
        const char *r = "User-agent: *\nDisallow: /private\nAllow: /private/ok\n";
        return reply(c, 200, "text/plain", r, strlen(r), NULL);
    }
    if (strcmp(url, "/page") == 0) {
        atomic_fetch_add(&page_hits, 1);
        const char *p = "<html><head><title>Test page</title></head><body><h1>Hello</h1>"
                        "<p>A <a href=\"/next\">link</a>.</p><script>x()</script></body></html>";
        return reply(c, 200, "text/html; charset=utf-8", p, strlen(p), NULL);
    }
    if (strncmp(url, "/private", 8) == 0) {
        if (strcmp(url, "/private/ok") != 0)
            atomic_fetch_add(&private_hits, 1);
        return reply(c, 200, "text/plain", "private", 7, NULL);
    }
    if (strcmp(url, "/redir") == 0) {
        const char *to = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "to");
        return reply(c, 302, "text/plain", "", 0, to ? to : "/page");
    }
    if (strcmp(url, "/loop") == 0)
        return reply(c, 302, "text/plain", "", 0, "/loop");
    if (strcmp(url, "/huge") == 0) {
        size_t n = (size_t)BROWSER_MAX_BYTES * 2;
        char *big = malloc(n);
        memset(big, 'z', n);
        struct MHD_Response *r = MHD_create_response_from_buffer(n, big, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Type", "text/plain");
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    return reply(c, 404, "text/plain", "no", 2, NULL);
}

static int listen_loopback(int *port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0 ||
        getsockname(s, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return s;
}

static int setup(void **state)
{
    (void)state;
    int la = listen_loopback(&port_a);
    secret_fd = listen_loopback(&port_b);
    if (la < 0 || secret_fd < 0)
        return -1;
    fcntl(secret_fd, F_SETFL, O_NONBLOCK);
    daemon_a = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_request, NULL,
                                MHD_OPTION_LISTEN_SOCKET, la, MHD_OPTION_END);
    if (!daemon_a)
        return -1;
    char allow[64];
    snprintf(allow, sizeof allow, "127.0.0.1:%d", port_a);
    return browser_allow(allow) == LLMOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    MHD_stop_daemon(daemon_a);
    close(secret_fd);
    return 0;
}

/* Connections the secret server got (accepted and counted, cumulatively). */
static int secret_connections(void)
{
    static int seen;
    int fd;
    while ((fd = accept4(secret_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
        seen++;
        close(fd);
    }
    return seen;
}

/* A fetch that must be refused; `expect` is a piece of the error message. */
static void refused(const char *what, const char *url, const char *expect)
{
    browser_page p;
    int before = secret_connections();
    llmos_err err = browser_fetch(url, &p);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    browser_page_free(&p);
    int after = secret_connections();
    bool escaped = err == LLMOS_OK || after != before || (expect && !strstr(msg, expect));
    attempts++;
    escapes += escaped;
    print_message("attempt %2d  %-44s %s: %.110s\n", attempts, what,
                  escaped ? "ESCAPED" : "refused", err ? msg : "fetched");
    if (escaped && err && expect && !strstr(msg, expect))
        print_message("            (expected the message to say '%s')\n", expect);
}

static void test_refused(void **state)
{
    (void)state;
    char u[256];
    const struct {
        const char *what, *fmt, *expect;
    } direct[] = {
        {"the secret port on 127.0.0.1", "http://127.0.0.1:%d/", "loopback"},
        {"localhost (a name resolving to loopback)", "http://localhost:%d/", "loopback"},
        {"[::1]", "http://[::1]:%d/", "loopback"},
        {"decimal 2130706433", "http://2130706433:%d/", "loopback"},
        {"octal 0177.0.0.1", "http://0177.0.0.1:%d/", "loopback"},
        {"hex 0x7f000001", "http://0x7f000001:%d/", "loopback"},
        {"short 127.1", "http://127.1:%d/", "loopback"},
        {"IPv4-mapped [::ffff:127.0.0.1]", "http://[::ffff:127.0.0.1]:%d/", "loopback"},
        {"NAT64 [64:ff9b::7f00:1]", "http://[64:ff9b::7f00:1]:%d/", "loopback"},
        {"6to4 [2002:7f00:1::1]", "http://[2002:7f00:1::1]:%d/", "loopback"},
        {"0.0.0.0", "http://0.0.0.0:%d/", "this network"},
        {"cloud metadata 169.254.169.254", "http://169.254.169.254:%d/latest/meta-data/",
         "link-local"},
        {"cloud metadata [fd00:ec2::254]", "http://[fd00:ec2::254]:%d/", "unique local"},
        {"cloud metadata 100.100.100.200", "http://100.100.100.200:%d/", "carrier-grade"},
        {"private 10.0.0.1", "http://10.0.0.1:%d/", "private"},
        {"private 172.16.0.1", "http://172.16.0.1:%d/", "private"},
        {"private 192.168.1.1", "http://192.168.1.1:%d/", "private"},
        {"link-local [fe80::1]", "http://[fe80::1]:%d/", "link-local"},
        {"multicast 224.0.0.1", "http://224.0.0.1:%d/", "multicast"},
        {"broadcast 255.255.255.255", "http://255.255.255.255:%d/", "broadcast"},
        {"the allowed address on another port", "http://127.0.0.1:%d/page", "loopback"},
    };
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        snprintf(u, sizeof u, direct[i].fmt, port_b);
        refused(direct[i].what, u, direct[i].expect);
    }
    /* the same targets through a redirect of the allowed server */
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++) {
        char target[200], what[96];
        snprintf(target, sizeof target, direct[i].fmt, port_b);
        snprintf(u, sizeof u, "http://127.0.0.1:%d/redir?to=%s", port_a, target);
        snprintf(what, sizeof what, "redirect to %s", direct[i].what);
        refused(what, u, direct[i].expect);
    }
    /* schemes and credentials */
    refused("file:///etc/passwd", "file:///etc/passwd", "only http and https");
    snprintf(u, sizeof u, "gopher://127.0.0.1:%d/", port_b);
    refused("gopher to the secret port", u, "only http and https");
    snprintf(u, sizeof u, "dict://127.0.0.1:%d/", port_b);
    refused("dict to the secret port", u, "only http and https");
    refused("ftp", "ftp://127.0.0.1/", "only http and https");
    snprintf(u, sizeof u, "http://127.0.0.1:%d/redir?to=file:///etc/passwd", port_a);
    refused("redirect to file:///etc/passwd", u, "only http and https");
    snprintf(u, sizeof u, "http://user:pw@127.0.0.1:%d/page", port_a);
    refused("credentials in the URL", u, "user name or password");
    snprintf(u, sizeof u, "http://127.0.0.1:%d/loop", port_a);
    refused("a redirect loop", u, "redirects");
    snprintf(u, sizeof u, "http://127.0.0.1:%d/private", port_a);
    refused("a page robots.txt disallows", u, "robots.txt");
    assert_int_equal(atomic_load(&private_hits), 0);
    print_message("escapes: %d of %d attempts; the secret server saw %d connections\n", escapes,
                  attempts, secret_connections());
    assert_int_equal(escapes, 0);
    assert_int_equal(secret_connections(), 0);
    assert_true(attempts >= 40);
}

static void test_allowed_fetch(void **state)
{
    (void)state;
    char u[128];
    browser_page p;
    snprintf(u, sizeof u, "http://127.0.0.1:%d/redir?to=/page", port_a);
    assert_int_equal(browser_fetch(u, &p), LLMOS_OK);
    assert_int_equal(p.status, 200);
    assert_int_equal(p.redirects, 1);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/page", port_a);
    assert_string_equal(p.url, u);
    llmos_buf t = {0};
    assert_int_equal(html_to_text(p.body.data, p.body.len, p.url, &t), LLMOS_OK);
    char want[256];
    snprintf(want, sizeof want,
             "Title: Test page\n\n# Hello\n\nA link [1].\n\nLinks:\n[1] http://127.0.0.1:%d/next\n",
             port_a);
    assert_string_equal(t.data, want);
    buf_free(&t);
    browser_page_free(&p);
    /* allowed by robots.txt's Allow line */
    snprintf(u, sizeof u, "http://127.0.0.1:%d/private/ok", port_a);
    assert_int_equal(browser_fetch(u, &p), LLMOS_OK);
    browser_page_free(&p);
    /* a body past the limit is cut */
    snprintf(u, sizeof u, "http://127.0.0.1:%d/huge", port_a);
    assert_int_equal(browser_fetch(u, &p), LLMOS_OK);
    assert_true(p.truncated);
    assert_int_equal(p.body.len, BROWSER_MAX_BYTES);
    browser_page_free(&p);
}

/* The tool through a kernel session with the scripted TEST backend: the page reaches the user
 * (send_message of the handle), never the privileged model. */
static llmos_buf delivered;
static bool on_event(void *ctx, const kevent *ev)
{
    (void)ctx;
    if (ev->kind == KEVENT_MESSAGE)
        assert_int_equal(buf_append(&delivered, ev->text, ev->len), LLMOS_OK);
    return true;
}

static void test_through_the_kernel(void **state)
{
    (void)state;
    char step0[256];
    snprintf(step0, sizeof step0,
             "{\"tool_calls\": [{\"name\": \"browser\", \"arguments\": {\"url\": "
             "\"http://127.0.0.1:%d/page\"}}]}",
             port_a);
    const char *steps[] = {step0,
                           "{\"tool_calls\": [{\"name\": \"send_message\", \"arguments\": "
                           "{\"recipient\": \"user\", \"text\": \"$VAR1\"}}]}",
                           "{\"content\": \"done\"}"};
    memory *mem = NULL;
    llm_backend *b = NULL;
    kernel *k = NULL;
    ksession *s = NULL;
    assert_int_equal(memory_open_ephemeral(&mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(steps, 3, false, &b), LLMOS_OK);
    kernel_config kc = {.st = memory_store(mem), .privileged = b};
    assert_int_equal(kernel_new(&kc, &k), LLMOS_OK);
    ksession_params sp = {.principal = "alice",
                          .device = "test",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_READ | KCAP_MESSAGE};
    assert_int_equal(ksession_open(k, &sp, &s), LLMOS_OK);
    int64_t pid;
    assert_int_equal(ksession_spawn(s, 0, &pid), LLMOS_OK);
    kproc_state st;
    assert_int_equal(ksession_send(s, pid, "Read the page.", on_event, NULL, NULL, &st), LLMOS_OK);
    assert_int_equal(st, KPROC_DONE);
    assert_non_null(delivered.data);
    assert_non_null(strstr(delivered.data, "Status: 200\n"));
    assert_non_null(strstr(delivered.data, "# Hello\n\nA link [1]."));
    assert_null(strstr(scripted_test_backend_sent(b, NULL), "# Hello"));
    buf_free(&delivered);
    ksession_close(s);
    kernel_free(k);
    llm_backend_free(b);
    memory_close(mem);
}

static void test_address_table(void **state)
{
    (void)state;
    const char *bad[] = {"127.0.0.1",
                         "127.255.0.3",
                         "10.1.2.3",
                         "172.31.255.255",
                         "192.168.0.1",
                         "169.254.169.254",
                         "100.64.0.1",
                         "0.0.0.0",
                         "224.0.0.251",
                         "255.255.255.255",
                         "::1",
                         "::",
                         "fe80::1",
                         "fc00::1",
                         "fd00:ec2::254",
                         "ff02::1",
                         "::ffff:10.0.0.1",
                         "64:ff9b::a00:1",
                         "2002:c0a8:101::1",
                         "198.18.0.1"};
    const char *good[] = {"8.8.8.8",    "1.1.1.1",     "93.184.216.34", "2606:4700:4700::1111",
                          "172.32.0.1", "100.128.0.1", "::ffff:8.8.8.8"};
    char why[160];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (browser_address_allowed(bad[i], 80, why, sizeof why))
            fail_msg("%s was allowed", bad[i]);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (!browser_address_allowed(good[i], 80, why, sizeof why))
            fail_msg("%s was refused: %s", good[i], why);
    assert_int_equal(browser_allow("not-an-address"), LLMOS_ERR_INVALID);
    char allow[64];
    snprintf(allow, sizeof allow, "127.0.0.1:%d", port_a);
    assert_int_equal(browser_allow(allow), LLMOS_OK);
    assert_true(browser_address_allowed("127.0.0.1", port_a, NULL, 0));
    assert_false(browser_address_allowed("127.0.0.1", port_b, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_table),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_allowed_fetch),
        cmocka_unit_test(test_through_the_kernel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
