/*
 * test_serve.c - the `llmos serve` and `llmos key` commands as a user runs them.
 *
 *   - a busy port is reported at once, naming the port, before any model is loaded (a
 *     nonexistent model path and a busy port: the port is what is reported);
 *   - a bad keys file is reported with its entry and member, a missing one with how to make
 *     it; without a passphrase serve stops and says how to give one (or --no-store);
 *   - `llmos key new` prints a key once and files only its digest; `key list` shows the
 *     principals; a second key for a principal needs --replace;
 *   - end to end with stories260K: serve on the user's store with a keys file, a principal's
 *     process answered over HTTP, refused rights, and after the server stops, `llmos ps` and
 *     `llmos audit` show the process and the requests under the key's principal;
 *   - batching: with --max-seqs 4, four chats at once all get the same greedy answer through
 *     the batching loop, a streaming client that hangs up mid-answer is dropped without harm,
 *     and /health and /metrics show the slots and the engine's passes.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "llmos/json.h"
#include "testutil.h"

static llmos_buf out, err;

/* A socket listening on a loopback port (the port goes to *port). */
static int busy_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 1), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void test_busy_port_first(void **state)
{
    (void)state;
    uint16_t port;
    int fd = busy_port(&port);
    double t0 = llmos_time_now();
    int rc = tu_run_llmos(&out, &err, "serve --model /nonexistent/model.gguf --port %u --no-store",
                          (unsigned)port);
    assert_int_equal(rc, 1);
    char want[64];
    snprintf(want, sizeof want, "port %u", (unsigned)port);
    if (!strstr(err.data, want))
        fprintf(stderr, "%s", err.data);
    assert_non_null(strstr(err.data, want));
    assert_non_null(strstr(err.data, "--port"));
    assert_null(strstr(err.data, "model.gguf")); /* the model was never touched */
    assert_true(llmos_time_now() - t0 < 5.0);
    close(fd);
}

static void test_keys_and_passphrase_errors(void **state)
{
    (void)state;
    char dir[256], path[512];
    assert_true(tu_mkdtemp("serve-keys", dir, sizeof dir));
    snprintf(path, sizeof path, "%s/keys.json", dir);
    static const char bad[] = "{\"keys\": [{\"principal\": \"alice\", \"key_hash\": \"blake2b-256:"
                              "0000000000000000000000000000000000000000000000000000000000000000\", "
                              "\"rights\": [\"chat\", \"sudo\"]}]}";
    assert_int_equal(llmos_file_write_atomic(path, bad, sizeof bad - 1, 0600), LLMOS_OK);
    assert_int_equal(tu_run_llmos(&out, &err, "serve --model /nonexistent.gguf --keys '%s'", path),
                     1);
    assert_non_null(strstr(err.data, "entry 1 (alice): 'rights[1]': unknown right 'sudo'"));
    assert_int_equal(
        tu_run_llmos(&out, &err, "serve --model /nonexistent.gguf --keys '%s/none'", dir), 1);
    assert_non_null(strstr(err.data, "does not exist; make one with `llmos key new"));
    static const char empty[] = "{\"keys\": []}";
    assert_int_equal(llmos_file_write_atomic(path, empty, sizeof empty - 1, 0600), LLMOS_OK);
    assert_int_equal(tu_run_llmos(&out, &err, "serve --model /nonexistent.gguf --keys '%s'", path),
                     1);
    assert_non_null(strstr(err.data, "has no entries"));
    assert_int_equal(tu_run_llmos(&out, &err, "serve --model x.gguf --keys a --api-key b"), 2);
    assert_non_null(strstr(err.data, "give one of --keys, --api-key-file and --api-key"));

    /* no passphrase and no terminal: serve says how to give one, before loading a model */
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "LLMOS_HOME='%s' LLMOS_PASSPHRASE= serve --model "
                                  "/nonexistent.gguf --port 0",
                                  dir),
                     1);
    assert_non_null(strstr(err.data, "LLMOS_PASSPHRASE"));
    assert_non_null(strstr(err.data, "--no-store"));
    assert_null(strstr(err.data, "nonexistent.gguf"));
    tu_rmrf(dir);
}

static void test_key_new_and_list(void **state)
{
    (void)state;
    char dir[256], path[512];
    assert_true(tu_mkdtemp("key-new", dir, sizeof dir));
    snprintf(path, sizeof path, "%s/keys.json", dir);
    assert_int_equal(tu_run_llmos(&out, &err,
                                  "key new alice --file '%s' --rights chat,process --caps compute "
                                  "--requests-per-minute 30",
                                  path),
                     0);
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)strcspn(out.data, "\n"), out.data);
    assert_int_equal(strncmp(key, "llmos-", 6), 0);
    assert_int_equal(strlen(key), 6 + 43);
    assert_non_null(strstr(err.data, "shown this once"));
    llmos_buf file = {0};
    assert_int_equal(llmos_file_read_all(path, 1 << 20, &file), LLMOS_OK);
    assert_null(strstr(file.data, key));
    assert_non_null(strstr(file.data, "blake2b-256:"));
    buf_free(&file);
    assert_int_equal(tu_run_llmos(&out, &err, "key list --file '%s'", path), 0);
    assert_non_null(strstr(out.data, "alice"));
    assert_non_null(strstr(out.data, "chat,process"));
    assert_non_null(strstr(out.data, "30 a minute"));
    assert_null(strstr(out.data, key));
    assert_int_equal(tu_run_llmos(&out, &err, "key new alice --file '%s'", path), 1);
    assert_non_null(strstr(err.data, "--replace"));
    assert_int_equal(tu_run_llmos(&out, &err, "key new alice --file '%s' --replace", path), 0);
    assert_string_not_equal(out.data, key);
    assert_int_equal(tu_run_llmos(&out, &err, "key new 'a b' --file '%s'", path), 2);
    assert_non_null(strstr(err.data, "not a principal name"));
    assert_int_equal(tu_run_llmos(&out, &err, "key new bob --file '%s' --rights root", path), 2);
    assert_non_null(strstr(err.data, "unknown right 'root'"));
    assert_int_equal(tu_run_llmos(&out, &err, "key new bob"), 2);
    assert_non_null(strstr(err.data, "--file FILE"));
    tu_rmrf(dir);
}

/* ---- end to end ------------------------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    int out; /* its standard output */
    char url[128];
} server;

/* Start `sh -c "exec llmos ARGS"` and wait for the line with its address. */
static void server_start(server *s, const char *env, const char *args, const char *errpath)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    s->pid = fork();
    assert_true(s->pid >= 0);
    if (s->pid == 0) {
        char cmd[16384];
        snprintf(cmd, sizeof cmd, "%s exec '%s' %s 2>'%s' </dev/null", env, getenv("LLMOS_BIN"),
                 args, errpath);
        dup2(p[1], STDOUT_FILENO);
        close(p[0]);
        close(p[1]);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    s->out = p[0];
    char line[1024];
    size_t n = 0;
    struct pollfd pfd = {.fd = s->out, .events = POLLIN};
    while (n < sizeof line - 1 && poll(&pfd, 1, 60000) > 0) {
        ssize_t got = read(s->out, line + n, 1);
        if (got <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = 0;
    const char *u = strstr(line, "http://");
    if (!u)
        fprintf(stderr, "llmos serve printed: '%s'\n", line);
    assert_non_null(u);
    snprintf(s->url, sizeof s->url, "%.*s", (int)strcspn(u, " "), u);
}

static int server_stop(server *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    close(s->out);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t collect(char *data, size_t size, size_t n, void *ctx)
{
    return buf_append(ctx, data, size * n) == LLMOS_OK ? size * n : 0;
}

/* A request to the server; returns the status, the body in *body. */
static long request(const server *s, const char *method, const char *path, const char *data,
                    const char *key, llmos_buf *body)
{
    CURL *c = curl_easy_init();
    char url[256], auth[256];
    snprintf(url, sizeof url, "%s%s", s->url, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    buf_clear(body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (data)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void test_serve_on_the_store(void **state)
{
    (void)state;
    char model[4096];
    if (!tu_testdata_path(model, sizeof model, "models/stories260K.gguf")) {
        fprintf(stderr, "skipping: test data (models/stories260K.gguf) is absent\n");
        skip();
    }
    char dir[256], keys[512], errpath[512], env[1024], args[8192 + 1024];
    assert_true(tu_mkdtemp("serve-e2e", dir, sizeof dir));
    snprintf(keys, sizeof keys, "%s/keys.json", dir);
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    snprintf(env, sizeof env, "LLMOS_HOME='%s' LLMOS_PASSPHRASE=pw LLMOS_KDF=test-weak", dir);
    assert_int_equal(tu_run_llmos(&out, &err, "key new bob --file '%s' --rights process", keys), 0);
    char bob[128];
    snprintf(bob, sizeof bob, "%.*s", (int)strcspn(out.data, "\n"), out.data);

    server s;
    snprintf(args, sizeof args, "serve --model '%s' --keys '%s' --port 0 -t 1 --ctx 256", model,
             keys);
    server_start(&s, env, args, errpath);
    llmos_buf body = {0};
    assert_int_equal(request(&s, "POST", "/processes", "", bob, &body), 201);
    json_t *j = json_loads(body.data, 0, NULL);
    int64_t pid = ljson_get_int(j, "pid", 0);
    json_decref(j);
    assert_true(pid > 0);
    char path[128];
    snprintf(path, sizeof path, "/processes/%lld/messages", (long long)pid);
    assert_int_equal(request(&s, "POST", path, "{\"content\":\"Once upon a time\"}", bob, &body),
                     200);
    j = json_loads(body.data, 0, NULL);
    assert_non_null(j);
    const char *state_name = ljson_get_string(j, "state", "");
    if (strcmp(state_name, "failed") == 0)
        fprintf(stderr, "the turn failed: %s\n", body.data);
    assert_string_not_equal(state_name, "failed");
    json_decref(j);
    assert_int_equal(request(&s, "POST", "/chat/completions",
                             "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", bob, &body),
                     403);
    assert_int_equal(request(&s, "GET", "/models", NULL, "llmos-wrong", &body), 401);
    assert_int_equal(server_stop(&s), 0);

    /* what it did is in the user's store */
    assert_int_equal(tu_run_llmos(&out, &err, "%s ps --json", env), 0);
    assert_non_null(strstr(out.data, "\"principal\":\"bob\""));
    assert_int_equal(tu_run_llmos(&out, &err, "%s audit --json", env), 0);
    assert_non_null(strstr(out.data, "\"device\":\"http\",\"principal\":\"bob\""));
    assert_non_null(strstr(out.data, "\"request\":\"a chat completion\"")); /* refused */
    assert_int_equal(tu_run_llmos(&out, &err, "%s audit verify", env), 0);
    buf_free(&body);
    tu_rmrf(dir);
}

typedef struct concurrent_chat {
    const server *s;
    long status;
    llmos_buf body;
} concurrent_chat;

static void *chat_thread(void *arg)
{
    concurrent_chat *c = arg;
    c->status = request(c->s, "POST", "/chat/completions",
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],"
                        "\"max_tokens\":24,\"temperature\":0}",
                        "", &c->body);
    return NULL;
}

/* Accept the first piece of a stream, then hang up. */
static size_t hang_up(char *data, size_t size, size_t n, void *ctx)
{
    (void)data, (void)ctx;
    return size * n > 0 ? 0 : 0;
}

/* The value of a metric's sample line "NAME VALUE" in Prometheus text. */
static double metric(const char *text, const char *name)
{
    char want[128];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *at = strstr(text, want);
    assert_non_null(at);
    return strtod(at + strlen(want), NULL);
}

static void test_serve_batches(void **state)
{
    (void)state;
    char model[4096];
    if (!tu_testdata_path(model, sizeof model, "models/stories260K.gguf")) {
        fprintf(stderr, "skipping: test data (models/stories260K.gguf) is absent\n");
        skip();
    }
    char dir[256], errpath[512], args[8192];
    assert_true(tu_mkdtemp("serve-batch", dir, sizeof dir));
    snprintf(errpath, sizeof errpath, "%s/stderr", dir);
    snprintf(args, sizeof args,
             "serve --model '%s' --no-store --port 0 -t 1 --ctx 256 --max-seqs 4", model);
    server s;
    server_start(&s, "", args, errpath);
    concurrent_chat c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (concurrent_chat){.s = &s};
        assert_int_equal(pthread_create(&th[i], NULL, chat_thread, &c[i]), 0);
    }
    char first[4096] = "";
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(c[i].status, 200);
        /* greedy and the same prompt: the same answer, batched or not */
        json_t *a = json_loads(c[i].body.data, 0, NULL);
        json_t *m = ljson_get_object(json_array_get(ljson_get_array(a, "choices"), 0), "message");
        const char *text = ljson_get_string(m, "content", "");
        assert_true(*text);
        if (i == 0)
            snprintf(first, sizeof first, "%s", text);
        assert_string_equal(text, first);
        json_decref(a);
        buf_free(&c[i].body);
    }

    /* a streaming client that hangs up at the first piece */
    CURL *h = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "%s/chat/completions", s.url);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS,
                     "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stream\":true,"
                     "\"max_tokens\":200}");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, hang_up);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    assert_int_equal(curl_easy_perform(h), CURLE_WRITE_ERROR);
    curl_easy_cleanup(h);

    /* the server goes on; /health and /metrics (at the root) show the slots and the batching */
    char root[128];
    snprintf(root, sizeof root, "%.*s", (int)(strlen(s.url) - 3), s.url);
    server base = s;
    snprintf(base.url, sizeof base.url, "%s", root);
    llmos_buf body = {0};
    assert_int_equal(request(&base, "GET", "/health", NULL, "", &body), 200);
    assert_non_null(strstr(body.data, "\"slots\":4"));
    assert_int_equal(request(&base, "GET", "/metrics", NULL, "", &body), 200);
    double steps = metric(body.data, "llmos_engine_steps_total");
    double slots = metric(body.data, "llmos_sched_slots");
    double served = metric(body.data, "llmos_sched_served_total");
    print_message("4 chats of 24 tokens and one hung-up stream: %.0f forward passes, %.0f model "
                  "calls served\n",
                  steps, served);
    assert_true(slots == 4);
    assert_true(served >= 5);
    assert_true(steps > 0); /* batching itself is timed deterministically in test_backend_batch */
    assert_true(metric(body.data, "llmos_kv_pool_budget_bytes") > 0);
    c[0] = (concurrent_chat){.s = &s};
    chat_thread(&c[0]);
    assert_int_equal(c[0].status, 200);
    buf_free(&c[0].body);
    buf_free(&body);
    assert_int_equal(server_stop(&s), 0);
    tu_rmrf(dir);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_busy_port_first),  cmocka_unit_test(test_keys_and_passphrase_errors),
        cmocka_unit_test(test_key_new_and_list), cmocka_unit_test(test_serve_on_the_store),
        cmocka_unit_test(test_serve_batches),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    buf_free(&out);
    buf_free(&err);
    curl_global_cleanup();
    return rc;
}
