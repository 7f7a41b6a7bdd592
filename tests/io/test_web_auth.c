/*
 * test_web_auth.c - logins, sessions and TLS of `llmos serve` over real HTTP(S) with libcurl:
 * the web UI's page and its Content-Security-Policy, HSTS, login cookies (HttpOnly,
 * SameSite=Strict, Secure over TLS), CSRF refusals, each account on its own store (a second
 * user sees nothing of the first's), logout, the refusal to listen beyond loopback without TLS
 * and authentication, and the remote backend verifying a server's certificate against the CA
 * file it is given (and refusing it without).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "doubles.h"
#include "llmos/auth.h"
#include "llmos/backend.h"
#include "llmos/json.h"
#include "llmos/memory.h"
#include "llmos/server.h"
#include "llmos/tlscert.h"
#include "testutil.h"

#define SCRIPT_ANSWER "Hello from the script"

static const char *const steps[] = {"{\"content\": \"" SCRIPT_ANSWER "\", \"pieces\": 3}"};

/* What an account's kernel holds in the test: its store, a scripted model, the kernel. */
typedef struct opened {
    memory *mem;
    llm_backend *model;
    kernel *k;
} opened;

static llmos_err test_open(void *ctx, const char *account, const char *home, const char *pass,
                           const uint8_t *data_key, void **handle, ksession **ses)
{
    (void)ctx;
    opened *o = calloc(1, sizeof *o);
    memory_params mp = {
        .home = home, .passphrase = pass, .data_key = data_key, .embed = MEMORY_EMBED_NONE};
    llmos_err err = memory_open(&mp, &o->mem);
    if (!err)
        err = scripted_test_backend_new(steps, 1, true, &o->model);
    kernel_config kc = {.privileged = o->model};
    if (!err) {
        kc.st = memory_store(o->mem);
        err = kernel_new(&kc, &o->k);
    }
    ksession_params sp = {.principal = account,
                          .device = "http",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_COMPUTE | KCAP_MESSAGE};
    if (!err)
        err = ksession_open(o->k, &sp, ses);
    if (err) {
        kernel_free(o->k);
        memory_close(o->mem);
        llm_backend_free(o->model);
        free(o);
        return err;
    }
    *handle = o;
    return LLMOS_OK;
}

static void test_close(void *ctx, void *handle)
{
    (void)ctx;
    opened *o = handle;
    kernel_free(o->k);
    memory_close(o->mem);
    llm_backend_free(o->model);
    free(o);
}

typedef struct fixture {
    char dir[256], cert[300], key[300];
    memory *mem;
    llm_backend *model;
    kernel *k;
    ksession *admin; /* the server's own session: the accounts' audit goes here */
    auth_server *accounts;
    http_server *srv;
    uint16_t port;
} fixture;

static void audit_to_server(void *ctx, const char *event, const char *account, const char *peer,
                            const char *detail)
{
    fixture *f = ctx;
    assert_int_equal(ksession_audit_auth(f->admin, event, account, peer, detail), LLMOS_OK);
}

static char *read_text(const char *path)
{
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(path, 1 << 20, &b), LLMOS_OK);
    return buf_detach(&b, NULL);
}

/* The program's app store, stood in for. */
static json_t *two_apps(void *ctx)
{
    (void)ctx;
    return json_loads("[{\"name\":\"summarizer\",\"version\":\"1.2.0\",\"signed\":true},"
                      "{\"name\":\"qwen-tiny\",\"version\":\"0.1.0\",\"signed\":false}]",
                      0, NULL);
}

/* A server over TLS (tls) or plain HTTP on loopback, with accounts alice and bob. */
static fixture *start(bool tls)
{
    fixture *f = calloc(1, sizeof *f);
    assert_true(tu_mkdtemp("webauth", f->dir, sizeof f->dir));
    snprintf(f->cert, sizeof f->cert, "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof f->key, "%s/key.pem", f->dir);
    assert_int_equal(tlscert_self_signed(f->cert, f->key, 1), LLMOS_OK);
    assert_int_equal(memory_open_ephemeral(&f->mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(steps, 1, true, &f->model), LLMOS_OK);
    kernel_config kc = {.st = memory_store(f->mem), .privileged = f->model};
    assert_int_equal(kernel_new(&kc, &f->k), LLMOS_OK);
    ksession_params sp = {.principal = "operator", .device = "test", .rights = KRIGHT_ALL};
    assert_int_equal(ksession_open(f->k, &sp, &f->admin), LLMOS_OK);
    char users[300];
    snprintf(users, sizeof users, "%s/users", f->dir);
    auth_params ap = {.dir = users, .audit = audit_to_server, .audit_ctx = f};
    assert_int_equal(keys_kdf_parse("test-weak", &ap.kdf), LLMOS_OK);
    ap.opener = (auth_opener){.open = test_open, .close = test_close};
    assert_int_equal(auth_account_add(&ap, "alice", "alice-passphrase"), LLMOS_OK);
    assert_int_equal(auth_account_add(&ap, "bob", "bob-passphrase"), LLMOS_OK);
    assert_int_equal(auth_new(&ap, &f->accounts), LLMOS_OK);

    http_server_params p = http_server_default_params();
    p.port = 0;
    p.accounts = f->accounts;
    p.apps_list = two_apps;
    char *cert = read_text(f->cert), *key = read_text(f->key);
    if (tls) {
        p.tls_cert_pem = cert;
        p.tls_key_pem = key;
    }
    assert_int_equal(http_server_start(f->k, &p, &f->srv), LLMOS_OK);
    free(cert);
    free(key);
    f->port = http_server_port(f->srv);
    return f;
}

static void stop(fixture *f)
{
    http_server_stop(f->srv);
    auth_free(f->accounts);
    ksession_close(f->admin);
    kernel_free(f->k);
    memory_close(f->mem);
    llm_backend_free(f->model);
    tu_rmrf(f->dir);
    free(f);
}

/* ---- a small HTTP client that keeps a cookie ---------------------------------------------- */

typedef struct client {
    const fixture *f;
    bool tls;
    char cookie[256]; /* "name=value" of the login cookie, "" when none */
    char csrf[64];
} client;

typedef struct reply {
    long status;
    llmos_buf body, headers;
    json_t *json;
} reply;

static size_t on_body(char *p, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    return buf_append(&r->body, p, size * n) ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    return buf_append(&r->headers, p, size * n) ? 0 : size * n;
}

static void reply_free(reply *r)
{
    buf_free(&r->body);
    buf_free(&r->headers);
    json_decref(r->json);
    memset(r, 0, sizeof *r);
}

/* The value of header `name` in r (lower-case match), copied to out; false when absent. */
static bool header(const reply *r, const char *name, char *out, size_t size)
{
    size_t n = strlen(name);
    for (const char *l = r->headers.data; l && *l;) {
        const char *end = strstr(l, "\r\n");
        if (!end)
            break;
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(end - v), v);
            return true;
        }
        l = end + 2;
    }
    return false;
}

/* method path (body may be NULL); with_csrf sends the client's CSRF token; extra is one more
 * header line or NULL. Learns the cookie a response sets. */
static void call(client *c, const char *method, const char *path, const char *body, bool with_csrf,
                 const char *extra, reply *r)
{
    memset(r, 0, sizeof *r);
    CURL *h = curl_easy_init();
    char url[512];
    snprintf(url, sizeof url, "%s://127.0.0.1:%u%s", c->tls ? "https" : "http",
             (unsigned)c->f->port, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    if (c->tls)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->f->cert);
    if (body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    char line[300];
    if (c->cookie[0]) {
        snprintf(line, sizeof line, "Cookie: %s", c->cookie);
        hs = curl_slist_append(hs, line);
    }
    if (with_csrf) {
        snprintf(line, sizeof line, "X-CSRF-Token: %s", c->csrf);
        hs = curl_slist_append(hs, line);
    }
    if (extra)
        hs = curl_slist_append(hs, extra);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    if (buf_putc(&r->body, 0) == LLMOS_OK)
        r->body.len--;
    r->json = json_loads(r->body.data, 0, NULL);
    char set[512];
    if (header(r, "Set-Cookie", set, sizeof set))
        snprintf(c->cookie, sizeof c->cookie, "%.*s", (int)strcspn(set, ";"), set);
}

static void login(client *c, const char *account, const char *pass, long want)
{
    char body[256];
    snprintf(body, sizeof body, "{\"account\":\"%s\",\"passphrase\":\"%s\"}", account, pass);
    reply r;
    call(c, "POST", "/auth/login", body, false, NULL, &r);
    assert_int_equal(r.status, want);
    if (want == 200)
        snprintf(c->csrf, sizeof c->csrf, "%s", ljson_get_string(r.json, "csrf", ""));
    reply_free(&r);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_the_ui_page_and_its_headers(void **state)
{
    (void)state;
    fixture *f = start(true);
    client c = {.f = f, .tls = true};
    reply r;
    call(&c, "GET", "/", NULL, false, NULL, &r);
    assert_int_equal(r.status, 200);
    char v[512];
    assert_true(header(&r, "Content-Security-Policy", v, sizeof v));
    assert_non_null(strstr(v, "default-src 'none'"));
    assert_non_null(strstr(v, "script-src 'self'"));
    assert_null(strstr(v, "unsafe-inline"));
    assert_true(header(&r, "Strict-Transport-Security", v, sizeof v));
    assert_true(header(&r, "Content-Type", v, sizeof v));
    assert_string_equal(v, "text/html; charset=utf-8");
    assert_non_null(strstr(r.body.data, "/ui/app.js"));
    reply_free(&r);
    call(&c, "GET", "/ui/app.js", NULL, false, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    call(&c, "GET", "/ui/../../etc/passwd", NULL, false, NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    stop(f);
}

static void test_login_csrf_isolation_and_logout(void **state)
{
    (void)state;
    fixture *f = start(true);
    client a = {.f = f, .tls = true}, b = {.f = f, .tls = true};
    reply r;

    /* without a session the API is closed to this client (no keys, but it is loopback: the
     * "local" principal); a wrong passphrase is refused, and audited */
    login(&a, "alice", "not-her-passphrase", 401);
    assert_string_equal(a.cookie, "");
    login(&a, "alice", "alice-passphrase", 200);
    assert_non_null(strstr(a.cookie, "__Host-llmos_session="));

    call(&a, "GET", "/auth/session", NULL, false, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(ljson_get_string(r.json, "account", ""), "alice");
    reply_free(&r);
    call(&a, "GET", "/v1/apps", NULL, false, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "data")), 2);
    assert_string_equal(
        ljson_get_string(json_array_get(ljson_get_array(r.json, "data"), 0), "name", ""),
        "summarizer");
    reply_free(&r);

    /* a change needs the CSRF token, and from this origin */
    call(&a, "POST", "/v1/processes", "{}", false, NULL, &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(ljson_get_string(ljson_get_object(r.json, "error"), "code", ""),
                        "csrf_failed");
    reply_free(&r);
    call(&a, "POST", "/v1/processes", "{}", true, "Origin: https://evil.example", &r);
    assert_int_equal(r.status, 403);
    reply_free(&r);
    call(&a, "POST", "/v1/processes", "{}", true, NULL, &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(ljson_get_string(r.json, "principal", ""), "alice");
    int64_t pid = ljson_get_int(r.json, "pid", 0);
    reply_free(&r);
    char path[128];
    snprintf(path, sizeof path, "/v1/processes/%lld/messages", (long long)pid);
    call(&a, "POST", path, "{\"content\":\"my secret is 4711\",\"stream\":true}", true, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "event: text"));
    assert_non_null(strstr(r.body.data, "event: end"));
    reply_free(&r);

    /* bob, on his own store, sees none of it */
    login(&b, "bob", "bob-passphrase", 200);
    snprintf(path, sizeof path, "/v1/processes/%lld", (long long)pid);
    call(&b, "GET", path, NULL, false, NULL, &r);
    assert_int_equal(r.status, 404);
    reply_free(&r);
    call(&b, "GET", "/v1/memory/recall?q=secret", NULL, false, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "messages")), 0);
    reply_free(&r);
    call(&a, "GET", "/v1/memory/recall?q=secret", NULL, false, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(ljson_get_array(r.json, "messages")), 1);
    reply_free(&r);
    /* ...nor can he use alice's CSRF token with his cookie */
    char bob_csrf[64];
    snprintf(bob_csrf, sizeof bob_csrf, "%s", b.csrf);
    snprintf(b.csrf, sizeof b.csrf, "%s", a.csrf);
    call(&b, "POST", "/v1/processes", "{}", true, NULL, &r);
    assert_int_equal(r.status, 403);
    reply_free(&r);
    snprintf(b.csrf, sizeof b.csrf, "%s", bob_csrf);

    /* logout ends the session; the cookie no longer works */
    char old[256];
    snprintf(old, sizeof old, "%s", a.cookie);
    call(&a, "POST", "/auth/logout", NULL, true, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    snprintf(a.cookie, sizeof a.cookie, "%s", old);
    call(&a, "GET", "/auth/session", NULL, false, NULL, &r);
    assert_int_equal(r.status, 401);
    reply_free(&r);

    /* the server's audit log has the logins, the failure and the logout */
    stop(f);
}

static bool find_auth(const store_audit_record *rec, void *ctx)
{
    size_t *n = ctx;
    if (strcmp(rec->kind, "auth") == 0)
        n[0]++, n[1] += strstr(rec->payload, "\"login.failed\"") != NULL,
            n[2] += strstr(rec->payload, "\"logout\"") != NULL;
    return true;
}

static void test_logins_are_audited_in_the_servers_log(void **state)
{
    (void)state;
    fixture *f = start(false);
    client a = {.f = f, .tls = false};
    login(&a, "alice", "wrong-passphrase", 401);
    login(&a, "mallory", "any-passphrase", 401);
    login(&a, "alice", "alice-passphrase", 200);
    /* over plain HTTP (loopback) the cookie has no __Host- prefix and no Secure */
    assert_non_null(strstr(a.cookie, "llmos_session="));
    assert_null(strstr(a.cookie, "__Host-"));
    reply r;
    call(&a, "POST", "/auth/logout", NULL, true, NULL, &r);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    size_t n[3] = {0};
    assert_int_equal(ksession_audit(f->admin, 1, find_auth, n), LLMOS_OK);
    assert_int_equal(n[0], 6); /* two accounts made, two failures, a login, a logout */
    assert_int_equal(n[1], 2);
    assert_int_equal(n[2], 1);
    audit_verdict v;
    assert_int_equal(ksession_audit_verify(f->admin, &v), LLMOS_OK);
    assert_true(v.ok);
    stop(f);
}

static void test_remote_backend_verifies_the_certificate(void **state)
{
    (void)state;
    fixture *f = start(true);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/v1", (unsigned)f->port);
    remote_backend_params rp = remote_backend_default_params();
    rp.max_retries = 0;
    llm_backend *b = NULL;
    /* the system's authorities do not know this certificate: refused */
    assert_int_equal(remote_backend_open(url, "scripted-test", &rp, &b), LLMOS_ERR_NETWORK);
    assert_null(b);
    /* trusting exactly it: accepted, and a chat goes through */
    rp.ca_file = f->cert;
    llmos_err err = remote_backend_open(url, "scripted-test", &rp, &b);
    if (err)
        print_message("remote_backend_open: %s\n", llmos_errmsg());
    assert_int_equal(err, LLMOS_OK);
    llm_request req = llm_request_default();
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"hi\"}]", 0, NULL);
    req.messages = msgs;
    llm_response resp = {0};
    assert_int_equal(llm_chat(b, &req, NULL, NULL, &resp), LLMOS_OK);
    assert_string_equal(resp.content, SCRIPT_ANSWER);
    llm_response_free(&resp);
    json_decref(msgs);
    llm_backend_free(b);
    /* another certificate as the authority: refused */
    char other_c[300], other_k[300];
    snprintf(other_c, sizeof other_c, "%s/other.pem", f->dir);
    snprintf(other_k, sizeof other_k, "%s/other.key", f->dir);
    assert_int_equal(tlscert_self_signed(other_c, other_k, 1), LLMOS_OK);
    rp.ca_file = other_c;
    assert_int_equal(remote_backend_open(url, "scripted-test", &rp, &b), LLMOS_ERR_NETWORK);
    stop(f);
}

static void test_no_open_bind_beyond_loopback(void **state)
{
    (void)state;
    fixture *f = start(false);
    char *cert = read_text(f->cert), *key = read_text(f->key);
    http_server_params p = http_server_default_params();
    p.host = "0.0.0.0";
    p.port = 0;
    http_server *s = NULL;
    assert_int_equal(http_server_bind(&p, &s), LLMOS_ERR_DENIED); /* no TLS, no auth */
    assert_non_null(strstr(llmos_errmsg(), "TLS"));
    p.tls_cert_pem = cert;
    p.tls_key_pem = key;
    assert_int_equal(http_server_bind(&p, &s), LLMOS_ERR_DENIED); /* TLS, no auth */
    assert_non_null(strstr(llmos_errmsg(), "authentication"));
    p.accounts = f->accounts;
    assert_int_equal(http_server_bind(&p, &s), LLMOS_OK);
    http_server_stop(s);
    p.tls_cert_pem = p.tls_key_pem = NULL;
    assert_int_equal(http_server_bind(&p, &s), LLMOS_ERR_DENIED); /* auth, no TLS */
    p.insecure_bind = true;
    assert_int_equal(http_server_bind(&p, &s), LLMOS_OK);
    http_server_stop(s);
    free(cert);
    free(key);
    stop(f);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_ui_page_and_its_headers),
        cmocka_unit_test(test_login_csrf_isolation_and_logout),
        cmocka_unit_test(test_logins_are_audited_in_the_servers_log),
        cmocka_unit_test(test_remote_backend_verifies_the_certificate),
        cmocka_unit_test(test_no_open_bind_beyond_loopback),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
