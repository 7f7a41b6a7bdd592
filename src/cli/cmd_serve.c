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
 * chat and embed. With --accounts, the accounts of `llmos user add` log in too (the web UI, or
 * POST /auth/login): each gets its own store, opened with the passphrase the user logs in
 * with, and a kernel over it with its own contexts of the models (forks of the local model,
 * or connections of their own to the remote one). Logins, failures, lockouts and logouts are
 * audited in the server's store.
 *
 * Transport: --tls-cert FILE --tls-key FILE serve HTTPS; --tls-self-signed makes (once, and
 * again when it is about to expire) a certificate for localhost in <llmos home>/tls. An address
 * other than loopback is refused without TLS and authentication unless --insecure says so.
 * --api-ca FILE makes the remote model's https:// certificate verify against FILE only.
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
#include "llmos/apps.h"
#include "llmos/backend.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/server.h"
#include "llmos/tlscert.h"

#define SERVE_KEY_PRINCIPAL "api" /* the principal of --api-key / --api-key-file */
#define SERVE_DEFAULT_SEQS  4     /* chats batched at once by a local model (--max-seqs) */

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
static llmos_err serve_open_model(const char *where, const char *api_model, const char *ca_file,
                                  const local_backend_params *lp, size_t api_concurrency,
                                  llm_backend **out)
{
    if (strncmp(where, "http://", 7) == 0 || strncmp(where, "https://", 8) == 0) {
        remote_backend_params rp = remote_backend_default_params();
        rp.api_key = getenv("LLMOS_API_KEY");
        rp.ca_file = ca_file;
        if (lp->n_ctx)
            rp.context_size = lp->n_ctx;
        if (api_concurrency)
            rp.max_concurrent = api_concurrency;
        return remote_backend_open(where, api_model, &rp, out);
    }
    fprintf(stderr, "llmos serve: loading %s ...\n", where);
    return local_backend_open(where, lp, out);
}

typedef struct serve_options {
    const char *model, *api, *api_model, *quar, *quar_model, *embed_model;
    const char *host, *keys_file, *key_file, *key_arg, *name, *guard_file;
    const char *tls_cert, *tls_key, *api_ca, *accounts_dir, *rp_id, *kv_mem;
    unsigned long port, ctx, threads, max_body, queue, max_conn, per_address, idle_timeout;
    unsigned long max_seqs, n_batch, api_concurrency;
    bool no_store, no_guard, accounts, tls_self_signed, insecure;
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
    {"--max-seqs", 1, 256, "a number of sequences (1-256)", offsetof(serve_options, max_seqs)},
    {"--batch", 1, 65536, "a number of tokens (1-65536)", offsetof(serve_options, n_batch)},
    {"--api-concurrency", 1, 1024, "a number of requests (1-1024)",
     offsetof(serve_options, api_concurrency)},
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
    {"--kv-mem", NULL, offsetof(serve_options, kv_mem)},
    {"--guard", NULL, offsetof(serve_options, guard_file)},
    {"--tls-cert", NULL, offsetof(serve_options, tls_cert)},
    {"--tls-key", NULL, offsetof(serve_options, tls_key)},
    {"--api-ca", NULL, offsetof(serve_options, api_ca)},
    {"--accounts-dir", NULL, offsetof(serve_options, accounts_dir)},
    {"--rp-id", NULL, offsetof(serve_options, rp_id)},
};

/* The options without a value, and where they go. */
static const struct {
    const char *name;
    size_t offset;
} serve_flags[] = {
    {"--no-store", offsetof(serve_options, no_store)},
    {"--no-guard", offsetof(serve_options, no_guard)},
    {"--accounts", offsetof(serve_options, accounts)},
    {"--tls-self-signed", offsetof(serve_options, tls_self_signed)},
    {"--insecure", offsetof(serve_options, insecure)},
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
                         .idle_timeout = d.idle_timeout_s,
                         .max_seqs = SERVE_DEFAULT_SEQS};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool known = false;
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(serve_flags) && !known; k++)
            if (strcmp(a, serve_flags[k].name) == 0)
                *(bool *)((char *)o + serve_flags[k].offset) = known = true;
        if (known)
            continue;
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
    if (!o->tls_cert != !o->tls_key)
        return cli_usage_error("serve", "--tls-cert FILE and --tls-key FILE go together");
    if (o->tls_cert && o->tls_self_signed)
        return cli_usage_error("serve", "give --tls-cert/--tls-key or --tls-self-signed, not both");
    if (o->accounts_dir)
        o->accounts = true;
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
    lp.max_seqs = (uint32_t)o->max_seqs;
    lp.n_batch = (uint32_t)o->n_batch;
    *priv = *quar = NULL;
    llmos_err err = LLMOS_OK;
    if (o->kv_mem && (err = cli_parse_size(o->kv_mem, &lp.kv_mem)) != LLMOS_OK)
        return llmos_fail_context(err, "--kv-mem: ");
    size_t conc = o->api_concurrency;
    const char *ca = o->api_ca;
    err = o->api ? serve_open_model(o->api, o->api_model, ca, &lp, conc, priv)
                 : serve_open_model(o->model, NULL, NULL, &lp, conc, priv);
    if (!err && o->quar)
        err = serve_open_model(o->quar, o->quar_model ? o->quar_model : o->api_model, ca, &lp, conc,
                               quar);
    else if (!err && o->api)
        err = serve_open_model(o->api, o->api_model, ca, &lp, conc, quar);
    else if (!err)
        err = local_backend_fork(*priv, quar);
    const char *env = getenv("LLMOS_EMBED_MODEL");
    *embedder = NULL;
    if (!err && !o->embed_model && !(env && *env))
        err = o->api ? serve_open_model(o->api, o->api_model, ca, &lp, conc, embedder)
                     : local_backend_fork(*priv, embedder);
    if (err) {
        llm_backend_free(*embedder);
        llm_backend_free(*quar);
        llm_backend_free(*priv);
        *priv = *quar = *embedder = NULL;
    }
    return err;
}

/* ---- accounts: each logged-in user's own store and kernel -------------------------------- */

typedef struct serve_ctx {
    const serve_options *o;
    cli_boot *b;    /* the server's own kernel (its session writes the accounts' audit) */
    uint32_t n_ctx; /* --ctx */
} serve_ctx;

/* What an open account holds: its memory, a kernel over it, and its contexts of the models. */
typedef struct serve_account {
    memory *mem;
    kernel *k;
    llm_backend *priv, *quar, *emb;
} serve_account;

static void serve_account_close(void *ctx, void *handle)
{
    (void)ctx;
    serve_account *a = handle;
    if (!a)
        return;
    kernel_free(a->k);
    memory_close(a->mem);
    llm_backend_free(a->emb);
    llm_backend_free(a->quar);
    llm_backend_free(a->priv);
    free(a);
}

/* An account's model: a context of its own on the local model, or its own connection. */
static llmos_err serve_account_model(serve_ctx *c, const char *where, const char *api_model,
                                     llm_backend **out)
{
    local_backend_params lp = local_backend_default_params();
    lp.n_ctx = c->n_ctx;
    if (where)
        return serve_open_model(where, api_model, c->o->api_ca, &lp, c->o->api_concurrency, out);
    return local_backend_fork(c->b->privileged, out);
}

/* auth_opener.open: the account's store (the passphrase unwraps its key: a wrong one is
 * LLMOS_ERR_AUTH), its models, a kernel over them and a session holding every right on the
 * account's own store. */
static llmos_err serve_account_open(void *ctx, const char *account, const char *home,
                                    const char *passphrase, const uint8_t *data_key, void **handle,
                                    ksession **ses)
{
    serve_ctx *c = ctx;
    const serve_options *o = c->o;
    serve_account *a = calloc(1, sizeof *a);
    if (!a)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    const char *env = getenv("LLMOS_EMBED_MODEL");
    bool own_embedder = !o->embed_model && !(env && *env);
    memory_params mp = {.home = home,
                        .passphrase = passphrase,
                        .data_key = data_key,
                        .embed = MEMORY_EMBED_DEFAULT,
                        .embed_model = o->embed_model,
                        .check_embedder = true,
                        .archival_optional = true};
    /* the store first: a wrong passphrase costs no model context */
    memory_params probe = mp;
    probe.embed = MEMORY_EMBED_NONE;
    llmos_err err = memory_open(&probe, &a->mem);
    memory_close(a->mem);
    a->mem = NULL;
    if (!err)
        err = serve_account_model(c, o->api, o->api_model, &a->priv);
    if (!err)
        err = o->quar ? serve_account_model(c, o->quar,
                                            o->quar_model ? o->quar_model : o->api_model, &a->quar)
                      : serve_account_model(c, o->api, o->api_model, &a->quar);
    if (!err && own_embedder)
        err = serve_account_model(c, o->api, o->api_model, &a->emb);
    mp.embed_backend = a->emb;
    if (!err)
        err = memory_open(&mp, &a->mem);
    kernel_config kc = {.privileged = a->priv, .quarantined = a->quar, .max_queue = o->queue};
    if (!err) {
        kc.st = memory_store(a->mem);
        err = kernel_new(&kc, &a->k);
    }
    ksession_params sp = {.principal = account,
                          .device = "http",
                          .rights = KRIGHT_ALL,
                          .caps = KCAP_COMPUTE | KCAP_MESSAGE | KCAP_QUARANTINE | KCAP_MEMORY};
    if (!err)
        err = ksession_open(a->k, &sp, ses);
    if (err) {
        serve_account_close(c, a);
        return err;
    }
    *handle = a;
    return LLMOS_OK;
}

/* auth_params.audit: into the server's own audit log. */
static void serve_account_audit(void *ctx, const char *event, const char *account, const char *peer,
                                const char *detail)
{
    serve_ctx *c = ctx;
    if (!c->b || !c->b->s)
        return;
    if (ksession_audit_auth(c->b->s, event, account, peer, detail))
        fprintf(stderr, "llmos serve: warning: an account event could not be audited: %s\n",
                llmos_errmsg());
}

/* http_server_params.apps_list: what `llmos apps list` shows, for the web UI. */
static bool serve_app_one(const apps_entry *e, void *ctx)
{
    json_array_append_new(ctx, json_pack("{s:s, s:s, s:b}", "name", e->name, "version", e->version,
                                         "signed", e->is_signed));
    return true;
}

static json_t *serve_apps_list(void *ctx)
{
    (void)ctx;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/apps", memory_home());
    json_t *list = json_array();
    if (!list || access(dir, F_OK) != 0)
        return list; /* no app store yet: none installed */
    apps_store *st = NULL;
    llmos_err err = apps_store_open(memory_home(), &st);
    if (!err)
        err = apps_store_list(st, serve_app_one, list);
    apps_store_free(st);
    if (err) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* ---- TLS ------------------------------------------------------------------------------------ */

/* The PEM texts of the certificate and key: the files given, or the self-signed certificate
 * for localhost in <llmos home>/tls (made when missing or within a week of its end). */
static llmos_err serve_tls(const serve_options *o, char **cert, char **key)
{
    *cert = *key = NULL;
    char cpath[4096], kpath[4096];
    const char *cf = o->tls_cert, *kf = o->tls_key;
    if (o->tls_self_signed) {
        char dir[4000];
        snprintf(dir, sizeof dir, "%s/tls", memory_home());
        llmos_err err = llmos_file_private_dir(dir);
        if (err)
            return err;
        snprintf(cpath, sizeof cpath, "%s/localhost.crt", dir);
        snprintf(kpath, sizeof kpath, "%s/localhost.key", dir);
        int days = 0;
        if (tlscert_days_left(cpath, &days) || days < 7 || access(kpath, R_OK) != 0) {
            llmos_err_clear();
            if ((err = tlscert_self_signed(cpath, kpath, 365)) != LLMOS_OK)
                return err;
            fprintf(stderr, "llmos serve: made a self-signed certificate for localhost: %s\n",
                    cpath);
        }
        cf = cpath;
        kf = kpath;
    }
    if (!cf)
        return LLMOS_OK;
    llmos_buf cb = {0}, kb = {0};
    llmos_err err = llmos_file_read_all(cf, 1 << 20, &cb);
    if (err)
        err = llmos_fail_context(err, "--tls-cert %s: ", cf);
    if (!err && (err = llmos_file_read_all(kf, 1 << 20, &kb)) != LLMOS_OK)
        err = llmos_fail_context(err, "--tls-key %s: ", kf);
    if (!err && (!cb.data || !kb.data))
        err = llmos_fail(LLMOS_ERR_INVALID, "--tls-cert %s / --tls-key %s: an empty file", cf, kf);
    if (err) {
        buf_free(&cb);
        if (kb.data)
            llmos_secure_zero(kb.data, kb.len);
        buf_free(&kb);
        return err;
    }
    *cert = buf_detach(&cb, NULL);
    *key = buf_detach(&kb, NULL);
    return LLMOS_OK;
}

static void serve_free_pem(char *cert, char *key)
{
    if (key)
        llmos_secure_zero(key, strlen(key));
    free(key);
    free(cert);
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
    char *cert = NULL, *tkey = NULL;
    if ((err = serve_tls(&o, &cert, &tkey)) != LLMOS_OK) {
        apikeys_free(keys);
        return cli_report(err);
    }

    /* the accounts: their stores open at each user's login, through the server's kernel's
     * models once they are loaded (ctx.b is set below, before the first request) */
    serve_ctx ctx = {.o = &o, .n_ctx = (uint32_t)o.ctx};
    auth_server *accounts = NULL;
    if (o.accounts) {
        char users[4096];
        snprintf(users, sizeof users, "%s/users", memory_home());
        auth_params ap = {.dir = o.accounts_dir ? o.accounts_dir : users,
                          .audit = serve_account_audit,
                          .audit_ctx = &ctx,
                          .opener = {serve_account_open, serve_account_close, &ctx}};
        if ((err = keys_kdf_from_env(&ap.kdf)) == LLMOS_OK)
            err = auth_new(&ap, &accounts);
        if (err) {
            serve_free_pem(cert, tkey);
            apikeys_free(keys);
            return cli_report(err);
        }
    }

    /* the port first: held from here on, so a busy one is reported before any model load */
    http_server_params sp = http_server_default_params();
    sp.host = o.host;
    sp.port = (uint16_t)o.port;
    sp.keys = keys;
    sp.accounts = accounts;
    sp.tls_cert_pem = cert;
    sp.tls_key_pem = tkey;
    sp.insecure_bind = o.insecure;
    sp.rp_id = o.rp_id;
    sp.apps_list = serve_apps_list;
    sp.max_body = o.max_body;
    sp.model_name = o.name;
    sp.max_connections = (unsigned)o.max_conn;
    sp.max_per_address = (unsigned)o.per_address;
    sp.idle_timeout_s = (unsigned)o.idle_timeout;
    http_server *srv = NULL;
    err = http_server_bind(&sp, &srv);
    serve_free_pem(cert, tkey); /* the server has its copy */
    if (err) {
        auth_free(accounts);
        apikeys_free(keys);
        return cli_report(err);
    }
    if (!keys && !accounts && !serve_is_loopback(o.host))
        fprintf(stderr,
                "llmos serve: warning: listening on %s without API keys: only clients on this "
                "machine are answered; give --keys FILE to let others in\n",
                o.host);

    cli_boot_params bp = {.device = "serve",
                          .max_queue = o.queue,
                          .embed = MEMORY_EMBED_DEFAULT,
                          .embed_model = o.embed_model,
                          .archival_optional = true,
                          .guard_file = o.guard_file,
                          .no_guard = o.no_guard};
    const char *pass = getenv("LLMOS_PASSPHRASE");
    if (o.no_store) {
        bp.ephemeral = true;
        fprintf(stderr,
                "llmos serve: warning: --no-store: processes, memories and the audit log "
                "live in memory only and are lost when the server stops%s\n",
                accounts ? " (the accounts' stores are kept; their logins are audited in memory "
                           "only)"
                         : "");
    } else if ((!pass || !pass[0]) && !isatty(STDIN_FILENO)) {
        http_server_stop(srv);
        auth_free(accounts);
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
    /* installed specialists, as delegate(app, task); configured MCP servers, as mcp(...) */
    cli_extra_tools(&bp.extra_tools, &bp.n_extra_tools);
    cli_boot b;
    if (!err)
        err = cli_boot_open(&bp, &b); /* owns the models from here, also on failure */
    if (!err && *memory_note(b.mem))
        fprintf(stderr, "llmos serve: note: %s\n", memory_note(b.mem));
    ctx.b = err ? NULL : &b;
    if (!err && (err = http_server_serve(srv, b.k)) != LLMOS_OK)
        cli_boot_close(&b);
    if (err) {
        http_server_stop(srv);
        auth_free(accounts);
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
    const char *scheme = o.tls_cert || o.tls_self_signed ? "https" : "http";
    kmodel_info m = ksession_model(b.s);
    char who[160];
    int used = keys       ? snprintf(who, sizeof who, "%zu API key%s", apikeys_count(keys),
                               apikeys_count(keys) == 1 ? "" : "s")
               : accounts ? 0
                          : snprintf(who, sizeof who, "no API keys: this machine only");
    if (accounts)
        snprintf(who + used, sizeof who - (size_t)used, "%saccounts: log in at /",
                 used ? ", " : "");
    printf("llmos serve: %s (context %zu tokens) listening on %s://%s%s%s:%u/v1 (%s); web UI "
           "%s://%s%s%s:%u/\n",
           o.name ? o.name : m.name, m.context_size, scheme, v6 ? "[" : "", o.host, v6 ? "]" : "",
           (unsigned)http_server_port(srv), who, scheme, v6 ? "[" : "", o.host, v6 ? "]" : "",
           (unsigned)http_server_port(srv));
    fflush(stdout);
    while (!serve_signal)
        pause();
    fprintf(stderr, "llmos serve: %s, shutting down\n",
            serve_signal == SIGINT ? "interrupted" : "terminated");
    http_server_stop(srv);
    auth_free(accounts); /* the accounts' models are forks of the server's: closed first */
    cli_boot_close(&b);
    apikeys_free(keys);
    return serve_signal == SIGINT ? CLI_INTERRUPTED : CLI_OK;
}
