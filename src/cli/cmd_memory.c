/*
 * cmd_memory.c - `llmos memory`: add to, search and describe the user's encrypted store.
 *
 *   llmos memory add [--model FILE] TEXT...          store TEXT as an archival memory
 *   llmos memory search [--model FILE] QUERY [-k N]  the N memories nearest to QUERY (default 5)
 *   llmos memory stats                               counts, sizes and the store's embedder
 *
 * The store lives in <llmos home>/store (see cli_home). The passphrase comes from
 * LLMOS_PASSPHRASE (for scripts) or from a prompt on the terminal without echo; the first use
 * creates the store and asks twice. LLMOS_KDF picks the Argon2id strength of a new store.
 *
 * Embedders. With --model FILE (or LLMOS_EMBED_MODEL) memories are embedded by the engine:
 * the mean of the GGUF model's final hidden states (model_embed, through the local backend's
 * embed), named "engine:<model name>". Without, the deterministic TEST embedder (word
 * hashing), which finds shared words, not meaning. Vectors of different embedders cannot be
 * compared, so the store remembers in the setting "archival.embedder" ("NAME DIM") which one
 * made its memories, and a run with another is refused, naming the one to pass. Stores from
 * before that setting whose memories exist were filled by the TEST embedder (the only one the
 * command had).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli/cli.h"
#include "llmos/backend.h"
#include "llmos/storage.h"

#define PASS_MAX 1024

/* Read one line from /dev/tty with echo off into buf (sodium_malloc'd by the caller). */
static llmos_err prompt_secret(const char *prompt, char *buf, size_t size)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "no terminal to ask for the passphrase; set LLMOS_PASSPHRASE");
    struct termios old, quiet;
    bool have_tc = tcgetattr(fd, &old) == 0;
    if (have_tc) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        /* nothing to do: the read below still works */
    }
    size_t n = 0;
    char c;
    ssize_t r;
    while ((r = read(fd, &c, 1)) == 1 && c != '\n' && c != '\r') {
        if (n + 1 < size)
            buf[n++] = c;
    }
    buf[n] = 0;
    if (have_tc)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* ignore */
    }
    close(fd);
    if (r < 0)
        return llmos_fail(LLMOS_ERR_IO, "reading the passphrase: %s", strerror(errno));
    return LLMOS_OK;
}

/* The store directory: <home>/store, with home created mode 0700. */
static llmos_err store_dir(char *out, size_t size)
{
    const char *home = cli_home();
    llmos_err err = llmos_file_mkdirs(home, 0700);
    if (err)
        return err;
    snprintf(out, size, "%s/store", home);
    return LLMOS_OK;
}

/* ---- the engine embedder ---------------------------------------------------------------- */

#define EMBEDDER_SETTING "archival.embedder"

/* An embedder backed by the local engine: the backend and the name it is stored under. */
typedef struct engine_embedder {
    store_embedder se;
    llm_backend *b;
    char name[256];
} engine_embedder;

static llmos_err engine_embed(void *ctx, const char *text, float *out)
{
    engine_embedder *e = ctx;
    float *v = NULL;
    size_t dim = 0;
    llmos_err err = llm_embed(e->b, text, strlen(text), &v, &dim);
    if (!err && dim != e->se.dim)
        err = llmos_fail(LLMOS_ERR_INTERNAL, "the model gave %zu floats, expected %u", dim,
                         e->se.dim);
    if (!err)
        memcpy(out, v, dim * sizeof *v);
    free(v);
    return err;
}

/* Load the model at path as an embedder (probing its dimension with one embedding). */
static llmos_err engine_embedder_open(const char *path, engine_embedder *e)
{
    memset(e, 0, sizeof *e);
    local_backend_params p = local_backend_default_params();
    p.chat_template = "{{ '' }}"; /* never chats: spares the warning about a missing template */
    llmos_err err = local_backend_open(path, &p, &e->b);
    if (err)
        return err;
    float *v = NULL;
    size_t dim = 0;
    if ((err = llm_embed(e->b, "dimension", 9, &v, &dim))) {
        llm_backend_free(e->b);
        e->b = NULL;
        return llmos_fail_context(err, "embedding with %s: ", path);
    }
    free(v);
    snprintf(e->name, sizeof e->name, "engine:%s", llm_model_name(e->b));
    for (char *c = e->name; *c; c++)
        if (*c == ' ' || *c == '\t' || *c == '\n')
            *c = '_'; /* the setting is "NAME DIM" */
    e->se =
        (store_embedder){.name = e->name, .dim = (uint32_t)dim, .embed = engine_embed, .ctx = e};
    return LLMOS_OK;
}

/* --model FILE taken out of argv (argc shrinks), else LLMOS_EMBED_MODEL, else NULL. */
static const char *take_model_option(int *argc, char **argv, bool *bad)
{
    const char *model = NULL;
    *bad = false;
    for (int i = 2; i < *argc; i++) {
        if (strcmp(argv[i], "--model") != 0)
            continue;
        if (i + 1 >= *argc) {
            *bad = true;
            return NULL;
        }
        model = argv[i + 1];
        for (int j = i; j + 2 <= *argc; j++)
            argv[j] = argv[j + 2];
        *argc -= 2;
        i--;
    }
    if (!model) {
        const char *env = getenv("LLMOS_EMBED_MODEL");
        if (env && *env)
            model = env;
    }
    return model;
}

/* Refuse an embedder other than the one that made the store's memories; record it on the
 * first use. */
static llmos_err check_embedder(store *s, const store_embedder *emb)
{
    char want[300];
    snprintf(want, sizeof want, "%s %u", emb->name, emb->dim);
    char *have = NULL;
    llmos_err err = store_setting_get(s, EMBEDDER_SETTING, &have);
    if (err == LLMOS_ERR_NOT_FOUND) {
        store_stats st = {0};
        if ((err = store_get_stats(s, &st)))
            return err;
        if (st.archival > 0) { /* memories from before the setting: the TEST embedder's */
            const store_embedder *t = store_test_embedder();
            char buf[300];
            snprintf(buf, sizeof buf, "%s %u", t->name, t->dim);
            have = strdup(buf);
            if (!have)
                return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        } else {
            return store_setting_set(s, EMBEDDER_SETTING, want);
        }
    } else if (err) {
        return err;
    }
    if (strcmp(have, want) != 0) {
        bool test = strncmp(have, "test-hash-v1 ", 13) == 0;
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "this store's memories were embedded by '%s' and this run embeds with "
                         "'%s'; vectors of different embedders cannot be compared. %s, or to "
                         "re-embed, add the memories again to a new store (LLMOS_HOME set to "
                         "another directory) with the embedder you want",
                         have, want,
                         test ? "Run without --model (and without LLMOS_EMBED_MODEL)"
                              : "Pass --model with the GGUF file of that model (or set "
                                "LLMOS_EMBED_MODEL to it)");
    }
    free(have);
    return err;
}

/* Open the user's store, asking for the passphrase as needed. With `create`, a missing store
 * is created (the passphrase asked twice); without, it is an LLMOS_ERR_NOT_FOUND that says
 * so. With `check`, an embedder other than the store's is refused (check_embedder). */
static llmos_err open_store(const store_embedder *emb, bool create, bool check, store **out)
{
    char dir[4200], keyfile[4300];
    llmos_err err = store_dir(dir, sizeof dir);
    if (err)
        return err;
    snprintf(keyfile, sizeof keyfile, "%s/store.key", dir);
    bool exists = access(keyfile, F_OK) == 0;
    if (!exists && !create)
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "there is no llmos store in %s yet (`llmos memory add` or the shell "
                          "creates it)",
                          dir);
    store_options opt = {.embedder = emb, .no_create = !create};
    err = keys_kdf_from_env(&opt.kdf);
    if (err)
        return err;

    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    char *pass = sodium_malloc(PASS_MAX);
    char *again = sodium_malloc(PASS_MAX);
    if (!pass || !again) {
        sodium_free(pass);
        sodium_free(again);
        return llmos_fail(LLMOS_ERR_NOMEM, "no locked memory for the passphrase");
    }
    const char *env = getenv("LLMOS_PASSPHRASE");
    if (env) {
        snprintf(pass, PASS_MAX, "%s", env);
    } else if (exists) {
        err = prompt_secret("Passphrase for your llmos store: ", pass, PASS_MAX);
    } else {
        fprintf(stderr, "Creating your encrypted llmos store in %s.\n", dir);
        err = prompt_secret("New passphrase: ", pass, PASS_MAX);
        if (!err)
            err = prompt_secret("Same passphrase again: ", again, PASS_MAX);
        if (!err && strcmp(pass, again) != 0)
            err = llmos_fail(LLMOS_ERR_INVALID, "the two passphrases differ; nothing created");
    }
    if (!err && !*pass)
        err = llmos_fail(LLMOS_ERR_INVALID, "an empty passphrase is not allowed");
    if (!err)
        err = store_open(dir, pass, &opt, out);
    sodium_free(pass);
    sodium_free(again);
    if (!err && check && (err = check_embedder(*out, emb))) {
        store_close(*out);
        *out = NULL;
    }
    return err;
}

llmos_err open_user_store_with(const store_embedder *emb, bool check, store **out)
{
    return open_store(emb, true, check, out);
}

llmos_err open_user_store_existing(store **out)
{
    return open_store(NULL, false, false, out);
}

/* The store with the embedder the options ask for: the engine's with a model, else TEST. */
static llmos_err open_user_store(const char *model, engine_embedder *e, store **out)
{
    *out = NULL;
    if (!model)
        return open_user_store_with(store_test_embedder(), true, out);
    llmos_err err = engine_embedder_open(model, e);
    return err ? err : open_user_store_with(&e->se, true, out);
}

static int memory_add(int argc, char **argv)
{
    bool bad;
    const char *model = take_model_option(&argc, argv, &bad);
    if (bad)
        return cli_usage_error("memory", "--model needs a GGUF FILE");
    if (argc < 3)
        return cli_usage_error("memory", "add needs the TEXT to remember");
    llmos_buf text = {0};
    for (int i = 2; i < argc; i++) {
        if ((i > 2 && buf_putc(&text, ' ')) || buf_puts(&text, argv[i])) {
            buf_free(&text);
            return cli_report(LLMOS_ERR_NOMEM);
        }
    }
    store *s = NULL;
    engine_embedder e = {0};
    llmos_err err = open_user_store(model, &e, &s);
    int64_t id = 0;
    if (!err)
        err = store_archival_add(s, text.data, NULL, &id);
    buf_free(&text);
    store_close(s);
    llm_backend_free(e.b);
    if (err)
        return cli_report(err);
    printf("remembered as #%lld\n", (long long)id);
    return CLI_OK;
}

static int memory_search(int argc, char **argv)
{
    bool bad;
    const char *model = take_model_option(&argc, argv, &bad);
    if (bad)
        return cli_usage_error("memory", "--model needs a GGUF FILE");
    long k = 5;
    llmos_buf query = {0};
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "-k") == 0) {
            char *end = NULL;
            if (i + 1 >= argc || (k = strtol(argv[i + 1], &end, 10)) <= 0 || *end || k > 1000) {
                buf_free(&query);
                return cli_usage_error("memory", "-k needs a number from 1 to 1000");
            }
            i++;
            continue;
        }
        if ((query.len && buf_putc(&query, ' ')) || buf_puts(&query, argv[i])) {
            buf_free(&query);
            return cli_report(LLMOS_ERR_NOMEM);
        }
    }
    if (query.len == 0) {
        buf_free(&query);
        return cli_usage_error("memory", "search needs a QUERY");
    }
    store *s = NULL;
    store_archival *hits = NULL;
    size_t n = 0;
    engine_embedder e = {0};
    llmos_err err = open_user_store(model, &e, &s);
    if (!err)
        err = store_archival_search(s, query.data, (size_t)k, &hits, &n);
    buf_free(&query);
    store_close(s);
    llm_backend_free(e.b);
    if (err)
        return cli_report(err);
    if (n == 0)
        printf("no memories yet\n");
    for (size_t i = 0; i < n; i++)
        printf("%zu. #%lld (%.3f) %s\n", i + 1, (long long)hits[i].id, hits[i].score, hits[i].text);
    store_archivals_free(hits, n);
    return CLI_OK;
}

static int memory_stats(void)
{
    store *s = NULL;
    store_stats st = {0};
    char *emb = NULL;
    llmos_err err = open_user_store_with(store_test_embedder(), false, &s);
    if (!err)
        err = store_get_stats(s, &st);
    if (!err) {
        printf("store:            %s\n", store_db_path(s));
        printf("schema version:   %d\n", st.schema_version);
        printf("archival:         %lld memories\n", (long long)st.archival);
        printf("messages:         %lld\n", (long long)st.messages);
        printf("core blocks:      %lld\n", (long long)st.core_blocks);
        printf("audit records:    %lld\n", (long long)st.audit_records);
        printf("pages:            %lld x %lld bytes (encrypted)\n", (long long)st.page_count,
               (long long)st.page_size);
        printf("file sizes:       %lld bytes database, %lld bytes WAL\n", (long long)st.db_bytes,
               (long long)st.wal_bytes);
        printf("vector search:    %s\n", st.vector_index ? "HNSW index" : "exact");
        if (store_setting_get(s, EMBEDDER_SETTING, &emb) != LLMOS_OK)
            emb = NULL;
        printf("embedder:         %s%s\n", emb ? emb : "none recorded",
               !emb || strncmp(emb, "test-hash-v1 ", 13) == 0
                   ? " (TEST embedder unless --model: matches words, not meaning)"
                   : "");
    }
    free(emb);
    store_close(s);
    return err ? cli_report(err) : CLI_OK;
}

int cmd_memory(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("memory", "say what to do: add, search or stats");
    if (strcmp(argv[1], "add") == 0)
        return memory_add(argc, argv);
    if (strcmp(argv[1], "search") == 0)
        return memory_search(argc, argv);
    if (strcmp(argv[1], "stats") == 0) {
        if (argc > 2)
            return cli_usage_error("memory", "stats takes no arguments");
        return memory_stats();
    }
    return cli_usage_error("memory", "unknown action '%s' (add, search or stats)", argv[1]);
}
