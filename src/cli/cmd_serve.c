/*
 * cmd_serve.c - `llmos serve`: serve a model over the OpenAI-compatible HTTP API.
 *
 * Opens a backend (a local GGUF model, or a remote OpenAI-compatible server with --api, which
 * makes llmos a proxy), starts http_server on it, prints the address it listens on and waits
 * for SIGINT or SIGTERM, then shuts down cleanly (running generations are cancelled).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/backend.h"
#include "llmos/server.h"

static volatile sig_atomic_t serve_signal;

static void serve_on_signal(int sig)
{
    serve_signal = sig;
}

static bool serve_parse_ulong(const char *s, unsigned long lo, unsigned long hi, unsigned long *out)
{
    char *end;
    errno = 0;
    if (*s == '-')
        return false;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool serve_is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

/* Read the key file: its first line, trimmed. */
static llmos_err serve_read_key(const char *path, char **out)
{
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, 4096, &b);
    if (err) {
        buf_free(&b);
        return llmos_fail_context(err, "--api-key-file %s: ", path);
    }
    if (!b.data) { /* an empty file: nothing was allocated */
        return llmos_fail(LLMOS_ERR_INVALID, "--api-key-file %s: the file's first line is empty",
                          path);
    }
    size_t n = strcspn(b.data, "\r\n");
    while (n > 0 && (b.data[n - 1] == ' ' || b.data[n - 1] == '\t'))
        n--;
    if (n == 0) {
        buf_free(&b);
        return llmos_fail(LLMOS_ERR_INVALID, "--api-key-file %s: the file's first line is empty",
                          path);
    }
    b.data[n] = 0;
    *out = strdup(b.data);
    llmos_secure_zero(b.data, b.len);
    buf_free(&b);
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
}

int cmd_serve(int argc, char **argv)
{
    const char *model = NULL, *host = "127.0.0.1", *api = NULL, *api_model = NULL;
    const char *key_arg = NULL, *key_file = NULL, *name = NULL;
    unsigned long port = 8080, ctx = 0, threads = 0, max_body = 1u << 20, queue = 16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0)
            model = v;
        else if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--port") == 0) {
            if (!v || !serve_parse_ulong(v, 0, 65535, &port))
                return cli_usage_error("serve", "--port needs a number 0-65535 (0 = any free)");
        } else if (strcmp(a, "--api-key") == 0)
            key_arg = v;
        else if (strcmp(a, "--api-key-file") == 0)
            key_file = v;
        else if (strcmp(a, "--ctx") == 0) {
            if (!v || !serve_parse_ulong(v, 16, 1u << 20, &ctx))
                return cli_usage_error("serve", "--ctx needs a number of tokens (16-1048576)");
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (!v || !serve_parse_ulong(v, 1, 4096, &threads))
                return cli_usage_error("serve", "-t needs a thread count (1-4096)");
        } else if (strcmp(a, "--max-body") == 0) {
            if (!v || !serve_parse_ulong(v, 1024, 1ul << 30, &max_body))
                return cli_usage_error("serve", "--max-body needs bytes (1024-1073741824)");
        } else if (strcmp(a, "--queue") == 0) {
            if (!v || !serve_parse_ulong(v, 1, 100000, &queue))
                return cli_usage_error("serve", "--queue needs a number (1-100000)");
        } else if (strcmp(a, "--name") == 0)
            name = v;
        else if (strcmp(a, "--api") == 0)
            api = v;
        else if (strcmp(a, "--api-model") == 0)
            api_model = v;
        else
            return cli_usage_error("serve", "unknown option '%s'", a);
        if (!v)
            return cli_usage_error("serve", "%s needs a value", a);
        i++;
    }
    if (!model == !api)
        return cli_usage_error("serve", "give either --model FILE or --api URL --api-model NAME");
    if (api && !api_model)
        return cli_usage_error("serve", "--api needs --api-model NAME");
    if (key_arg && key_file)
        return cli_usage_error("serve", "give --api-key or --api-key-file, not both");

    char *key = NULL;
    if (key_file) {
        llmos_err err = serve_read_key(key_file, &key);
        if (err)
            return cli_report(err);
    } else if (key_arg) {
        fprintf(stderr, "llmos serve: warning: a key given with --api-key is visible to other "
                        "users of this machine (ps); prefer --api-key-file FILE\n");
        key = strdup(key_arg);
    }
    if (!key && !serve_is_loopback(host))
        fprintf(stderr,
                "llmos serve: warning: listening on %s without an API key: anyone who can "
                "reach this address can use the model; add --api-key-file FILE\n",
                host);

    llm_backend *b = NULL;
    llmos_err err;
    if (model) {
        local_backend_params lp = local_backend_default_params();
        lp.n_ctx = (uint32_t)ctx;
        lp.n_threads = (int)threads;
        err = local_backend_open(model, &lp, &b);
    } else {
        remote_backend_params rp = remote_backend_default_params();
        rp.api_key = getenv("LLMOS_API_KEY");
        if (ctx)
            rp.context_size = ctx;
        err = remote_backend_open(api, api_model, &rp, &b);
    }
    if (err) {
        free(key);
        return cli_report(err);
    }

    http_server_params sp = http_server_default_params();
    sp.host = host;
    sp.port = (uint16_t)port;
    sp.api_key = key;
    sp.max_body = max_body;
    sp.max_queue = queue;
    sp.model_name = name;
    bool has_key = key != NULL;
    http_server *srv = NULL;
    err = http_server_start(b, &sp, &srv);
    if (key) {
        llmos_secure_zero(key, strlen(key));
        free(key);
    }
    if (err) {
        llm_backend_free(b);
        return cli_report(err);
    }

    struct sigaction sa = {0};
    sa.sa_handler = serve_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool v6 = strchr(host, ':') != NULL;
    printf("llmos serve: %s (context %zu tokens) listening on http://%s%s%s:%u/v1%s\n",
           name ? name : llm_model_name(b), llm_context_size(b), v6 ? "[" : "", host, v6 ? "]" : "",
           (unsigned)http_server_port(srv), has_key ? " (API key required)" : "");
    fflush(stdout);
    while (!serve_signal)
        pause();
    fprintf(stderr, "llmos serve: %s, shutting down\n",
            serve_signal == SIGINT ? "interrupted" : "terminated");
    http_server_stop(srv);
    llm_backend_free(b);
    return serve_signal == SIGINT ? CLI_INTERRUPTED : CLI_OK;
}
