/*
 * cmd_serve.c - `llmos serve`: the kernel over HTTP (the OpenAI-compatible API and llmos's
 * process, audit and memory API).
 *
 * The order of the start is chosen for the user: first what is quick to check and likely to be
 * wrong (the options, the keys file, the port: bound and held at once, so that a busy port is
 * reported in a second, not after a long model load), then whether the store's passphrase is at
 * hand, then the models (the privileged one and the quarantined one: by default a second
 * context on the same local model, or a second connection to the same server; --quarantine-model
 * chooses another), then the user's store and a kernel over it (cli_boot_open, device "serve"),
 * and last the server starts answering. It prints the address and waits for SIGINT or SIGTERM,
 * then shuts down cleanly (running requests are cancelled).
 *
 * The store. Processes, memories and the audit log live in the user's encrypted store, so the
 * server needs its passphrase: $LLMOS_PASSPHRASE, or a prompt when standard input is a terminal.
 * Without either it stops and says so; --no-store runs on a store in memory only, with a
 * warning that nothing (the audit log included) outlives the server. A server that loses its
 * audit log without being told to would be a surprise, which is why this is not the default as
 * it is for the shell.
 *
 * Who may connect: the keys file (--keys FILE, made with `llmos key new`), or one key
 * (--api-key-file FILE or --api-key KEY) standing for the principal "api" with rights chat and
 * embed, or no key: then only clients on this machine, as the principal "local" with rights
 * chat and embed.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/apikeys.h"
#include "llmos/backend.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/server.h"

#define SERVE_KEY_PRINCIPAL "api" /* the principal of --api-key / --api-key-file */

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
    return strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
           strncmp(host, "127.", 4) == 0;
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
    if (!b.data) /* an empty file: nothing was allocated */
        return llmos_fail(LLMOS_ERR_INVALID, "--api-key-file %s: the file's first line is empty",
                          path);
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

/* Who may connect, from --keys, --api-key-file or --api-key (NULL: no keys). */
static llmos_err serve_keys(const char *keys_file, const char *key_file, const char *key_arg,
                            apikeys **out)
{
    *out = NULL;
    if (keys_file) {
        llmos_err err = apikeys_load(keys_file, out);
        if (!err && apikeys_count(*out) == 0) {
            apikeys_free(*out);
            *out = NULL;
            err = llmos_fail(LLMOS_ERR_INVALID,
                             "--keys %s has no entries, so nobody could connect; add one with "
                             "`llmos key new PRINCIPAL --file %s`",
                             keys_file, keys_file);
        }
        return err;
    }
    char *key = NULL;
    if (key_file) {
        llmos_err err = serve_read_key(key_file, &key);
        if (err)
            return err;
    } else if (key_arg) {
        fprintf(stderr, "llmos serve: warning: a key given with --api-key is visible to other "
                        "users of this machine (ps); prefer --keys FILE or --api-key-file FILE\n");
        key = strdup(key_arg);
        if (!key)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    } else {
        return LLMOS_OK;
    }
    llmos_err err = apikeys_single(key, SERVE_KEY_PRINCIPAL, KRIGHT_CHAT | KRIGHT_EMBED, out);
    llmos_secure_zero(key, strlen(key));
    free(key);
    return err;
}

/* The model at `where`: a URL opens a remote backend (api_model names the model there), a
 * file a local one. */
static llmos_err serve_open_model(const char *where, const char *api_model,
                                  const local_backend_params *lp, llm_backend **out)
{
    if (strncmp(where, "http://", 7) == 0 || strncmp(where, "https://", 8) == 0) {
        remote_backend_params rp = remote_backend_default_params();
        rp.api_key = getenv("LLMOS_API_KEY");
        if (lp->n_ctx)
            rp.context_size = lp->n_ctx;
        return remote_backend_open(where, api_model, &rp, out);
    }
    fprintf(stderr, "llmos serve: loading %s ...\n", where);
    return local_backend_open(where, lp, out);
}

typedef struct serve_options {
    const char *model, *api, *api_model, *quar, *quar_model, *embed_model;
    const char *host, *keys_file, *key_file, *key_arg, *name;
    unsigned long port, ctx, threads, max_body, queue, max_conn, per_address, idle_timeout;
    bool no_store;
} serve_options;

/* One numeric option: its name, range, what to say when it is wrong, where it goes. */
typedef struct serve_num {
    const char *name;
    unsigned long lo, hi;
    const char *want;
    size_t offset; /* in serve_options */
} serve_num;

static const serve_num serve_nums[] = {
    {"--port", 0, 65535, "a number 0-65535 (0 = any free)", offsetof(serve_options, port)},
    {"--ctx", 16, 1u << 20, "a number of tokens (16-1048576)", offsetof(serve_options, ctx)},
    {"-t", 1, 4096, "a thread count (1-4096)", offsetof(serve_options, threads)},
    {"--threads", 1, 4096, "a thread count (1-4096)", offsetof(serve_options, threads)},
    {"--max-body", 1024, 1ul << 30, "bytes (1024-1073741824)", offsetof(serve_options, max_body)},
    {"--queue", 1, 100000, "a number (1-100000)", offsetof(serve_options, queue)},
    {"--max-connections", 1, 100000, "a number (1-100000)", offsetof(serve_options, max_conn)},
    {"--max-per-address", 1, 100000, "a number (1-100000)", offsetof(serve_options, per_address)},
    {"--idle-timeout", 1, 3600, "seconds (1-3600)", offsetof(serve_options, idle_timeout)},
};

/* One text option and where it goes. */
typedef struct serve_text {
    const char *name, *alias;
    size_t offset;
} serve_text;

static const serve_text serve_texts[] = {
    {"--model", "-m", offsetof(serve_options, model)},
    {"--api", NULL, offsetof(serve_options, api)},
    {"--api-model", NULL, offsetof(serve_options, api_model)},
    {"--quarantine-model", NULL, offsetof(serve_options, quar)},
    {"--quarantine-api-model", NULL, offsetof(serve_options, quar_model)},
    {"--embed-model", NULL, offsetof(serve_options, embed_model)},
    {"--host", NULL, offsetof(serve_options, host)},
    {"--keys", NULL, offsetof(serve_options, keys_file)},
    {"--api-key-file", NULL, offsetof(serve_options, key_file)},
    {"--api-key", NULL, offsetof(serve_options, key_arg)},
    {"--name", NULL, offsetof(serve_options, name)},
};

/* Parse argv into o; returns CLI_OK or the usage error's status. */
static int serve_parse(int argc, char **argv, serve_options *o)
{
    http_server_params d = http_server_default_params();
    *o = (serve_options){.host = "127.0.0.1",
                         .port = 8080,
                         .max_body = d.max_body,
                         .queue = 16,
                         .max_conn = d.max_connections,
                         .per_address = d.max_per_address,
                         .idle_timeout = d.idle_timeout_s};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-store") == 0) {
            o->no_store = true;
            continue;
        }
        bool known = false;
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(serve_texts) && !known; k++) {
            const serve_text *t = &serve_texts[k];
            if (strcmp(a, t->name) == 0 || (t->alias && strcmp(a, t->alias) == 0)) {
                *(const char **)((char *)o + t->offset) = v;
                known = true;
            }
        }
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(serve_nums) && !known; k++) {
            const serve_num *nm = &serve_nums[k];
            if (strcmp(a, nm->name) != 0)
                continue;
            if (v &&
                !serve_parse_ulong(v, nm->lo, nm->hi, (unsigned long *)((char *)o + nm->offset)))
                return cli_usage_error("serve", "%s needs %s, not '%s'", a, nm->want, v);
            known = true;
        }
        if (!known)
            return cli_usage_error("serve", "unknown option '%s'", a);
        if (!v)
            return cli_usage_error("serve", "%s needs a value", a);
        i++;
    }
    if (!o->model == !o->api)
        return cli_usage_error("serve", "give either --model FILE or --api URL --api-model NAME");
    if (o->api && !o->api_model)
        return cli_usage_error("serve", "--api needs --api-model NAME");
    if (o->quar_model && !o->quar)
        return cli_usage_error("serve", "--quarantine-api-model NAME needs --quarantine-model URL");
    if ((o->keys_file != NULL) + (o->key_file != NULL) + (o->key_arg != NULL) > 1)
        return cli_usage_error("serve", "give one of --keys, --api-key-file and --api-key");
    return CLI_OK;
}

/* The privileged and quarantined models and archival memory's embedder (all owned by the
 * caller on success; the embedder NULL when --embed-model or LLMOS_EMBED_MODEL names one). */
static llmos_err serve_models(const serve_options *o, llm_backend **priv, llm_backend **quar,
                              llm_backend **embedder)
{
    local_backend_params lp = local_backend_default_params();
    lp.n_ctx = (uint32_t)o->ctx;
    lp.n_threads = (int)o->threads;
    *priv = *quar = NULL;
    llmos_err err = o->api ? serve_open_model(o->api, o->api_model, &lp, priv)
                           : serve_open_model(o->model, NULL, &lp, priv);
    if (!err && o->quar)
        err = serve_open_model(o->quar, o->quar_model ? o->quar_model : o->api_model, &lp, quar);
    else if (!err && o->api)
        err = serve_open_model(o->api, o->api_model, &lp, quar);
    else if (!err)
        err = local_backend_fork(*priv, quar);
    const char *env = getenv("LLMOS_EMBED_MODEL");
    *embedder = NULL;
    if (!err && !o->embed_model && !(env && *env))
        err = o->api ? serve_open_model(o->api, o->api_model, &lp, embedder)
                     : local_backend_fork(*priv, embedder);
    if (err) {
        llm_backend_free(*embedder);
        llm_backend_free(*quar);
        llm_backend_free(*priv);
        *priv = *quar = *embedder = NULL;
    }
    return err;
}

int cmd_serve(int argc, char **argv)
{
    serve_options o;
    int rc = serve_parse(argc, argv, &o);
    if (rc)
        return rc;
    apikeys *keys = NULL;
    llmos_err err = o.model ? cli_resolve_model(&o.model) : LLMOS_OK; /* verified first */
    if (!err && o.quar && strncmp(o.quar, "http", 4) != 0)
        err = cli_resolve_model(&o.quar);
    if (!err)
        err = serve_keys(o.keys_file, o.key_file, o.key_arg, &keys);
    if (err)
        return cli_report(err);

    /* the port first: held from here on, so a busy one is reported before any model load */
    http_server_params sp = http_server_default_params();
    sp.host = o.host;
    sp.port = (uint16_t)o.port;
    sp.keys = keys;
    sp.max_body = o.max_body;
    sp.model_name = o.name;
    sp.max_connections = (unsigned)o.max_conn;
    sp.max_per_address = (unsigned)o.per_address;
    sp.idle_timeout_s = (unsigned)o.idle_timeout;
    http_server *srv = NULL;
    err = http_server_bind(&sp, &srv);
    if (err) {
        apikeys_free(keys);
        return cli_report(err);
    }
    if (!keys && !serve_is_loopback(o.host))
        fprintf(stderr,
                "llmos serve: warning: listening on %s without API keys: only clients on this "
                "machine are answered; give --keys FILE to let others in\n",
                o.host);

    cli_boot_params bp = {.device = "serve",
                          .max_queue = o.queue,
                          .embed = MEMORY_EMBED_DEFAULT,
                          .embed_model = o.embed_model,
                          .archival_optional = true};
    const char *pass = getenv("LLMOS_PASSPHRASE");
    if (o.no_store) {
        bp.ephemeral = true;
        fprintf(stderr, "llmos serve: warning: --no-store: processes, memories and the audit log "
                        "live in memory only and are lost when the server stops\n");
    } else if ((!pass || !pass[0]) && !isatty(STDIN_FILENO)) {
        http_server_stop(srv);
        apikeys_free(keys);
        return cli_report(llmos_fail(
            LLMOS_ERR_AUTH,
            "llmos serve keeps processes, memories and the audit log in your encrypted store "
            "and needs its passphrase: set LLMOS_PASSPHRASE, or start it on a terminal to be "
            "asked, or give --no-store to keep them in memory only (lost when it stops)"));
    } else {
        bp.create = true;
    }
    err = serve_models(&o, &bp.privileged, &bp.quarantined, &bp.embedder);
    cli_delegate_tool(&bp.extra_tools); /* installed specialists, as delegate(app, task) */
    bp.n_extra_tools = bp.extra_tools ? 1 : 0;
    cli_boot b;
    if (!err)
        err = cli_boot_open(&bp, &b); /* owns the models from here, also on failure */
    if (!err && *memory_note(b.mem))
        fprintf(stderr, "llmos serve: note: %s\n", memory_note(b.mem));
    if (!err && (err = http_server_serve(srv, b.k)) != LLMOS_OK)
        cli_boot_close(&b);
    if (err) {
        http_server_stop(srv);
        apikeys_free(keys);
        return cli_report(err);
    }

    struct sigaction sa = {0};
    sa.sa_handler = serve_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool v6 = strchr(o.host, ':') != NULL;
    kmodel_info m = ksession_model(b.s);
    char who[96];
    if (keys)
        snprintf(who, sizeof who, "%zu API key%s", apikeys_count(keys),
                 apikeys_count(keys) == 1 ? "" : "s");
    else
        snprintf(who, sizeof who, "no API keys: this machine only");
    printf("llmos serve: %s (context %zu tokens) listening on http://%s%s%s:%u/v1 (%s)\n",
           o.name ? o.name : m.name, m.context_size, v6 ? "[" : "", o.host, v6 ? "]" : "",
           (unsigned)http_server_port(srv), who);
    fflush(stdout);
    while (!serve_signal)
        pause();
    fprintf(stderr, "llmos serve: %s, shutting down\n",
            serve_signal == SIGINT ? "interrupted" : "terminated");
    http_server_stop(srv);
    cli_boot_close(&b);
    apikeys_free(keys);
    return serve_signal == SIGINT ? CLI_INTERRUPTED : CLI_OK;
}
