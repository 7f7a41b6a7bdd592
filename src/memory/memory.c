/*
 * memory.c - opening a user's store for llmos's parts: where it lives, the passphrase, the
 * embedder archival memory uses, and the check that a store's vectors all come from one
 * embedder.
 *
 * Every device reaches memory through a kernel session, and every session stands on a store:
 * the user's encrypted one (memory_open), or one in memory only (memory_open_ephemeral) for the
 * shell's --no-store, so that even then tool calls are checked and audited system calls.
 *
 * The passphrase is held in locked memory (sodium_malloc) only while the key file is unwrapped
 * and is wiped after; it never goes to a log.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sodium.h>

#include "llmos/backend.h"
#include "llmos/memory.h"

#define PASS_MAX 1024
#define LEGACY_LEXICAL                                                                             \
    "test-hash-v1" /* what stores recorded before the lexical one had its name                     \
                    */

struct memory {
    store *st;
    bool ephemeral;
    /* the engine embedder, when one was asked for */
    llm_backend *embed_backend;
    bool borrowed_backend; /* the caller's (memory_params.embed_backend): not freed here */
    store_embedder engine;
    char engine_name[256];
    char embedder[300]; /* "NAME DIM" or "none" */
    char note[600];     /* why archival memory is off, "" when it is on */
};

const char *memory_home(void)
{
    static char path[4096];
    const char *env = getenv("LLMOS_HOME");
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    if (env && *env)
        snprintf(path, sizeof path, "%s", env);
    else if (xdg && *xdg)
        snprintf(path, sizeof path, "%s/llmos", xdg);
    else
        snprintf(path, sizeof path, "%s/.local/share/llmos", home && *home ? home : ".");
    return path;
}

/* ---- the engine embedder ---------------------------------------------------------------- */

static llmos_err engine_embed(void *ctx, const char *text, float *out)
{
    memory *m = ctx;
    assert(m && m->embed_backend && text && out);
    float *v = NULL;
    size_t dim = 0;
    llmos_err err = llm_embed(m->embed_backend, text, strlen(text), &v, &dim);
    if (!err && dim != m->engine.dim)
        err = llmos_fail(LLMOS_ERR_INTERNAL, "the model gave %zu floats, expected %u", dim,
                         m->engine.dim);
    if (!err)
        memcpy(out, v, dim * sizeof *v);
    free(v);
    return err;
}

/* m->embed_backend as m's embedder, its dimension probed with one embedding; `what` names the
 * model in errors. */
static llmos_err engine_attach(memory *m, const char *what)
{
    llmos_err err;
    float *v = NULL;
    size_t dim = 0;
    err = llm_embed(m->embed_backend, "dimension", 9, &v, &dim);
    free(v);
    if (err)
        return llmos_fail_context(err, "embedding with %s: ", what);
    snprintf(m->engine_name, sizeof m->engine_name, "engine:%s", llm_model_name(m->embed_backend));
    for (char *c = m->engine_name; *c; c++)
        if (*c == ' ' || *c == '\t' || *c == '\n')
            *c = '_'; /* the setting is "NAME DIM" */
    m->engine = (store_embedder){
        .name = m->engine_name, .dim = (uint32_t)dim, .embed = engine_embed, .ctx = m};
    return LLMOS_OK;
}

/* Load the GGUF model at path as m's embedder. */
static llmos_err engine_open(memory *m, const char *path)
{
    local_backend_params p = local_backend_default_params();
    p.chat_template = "{{ '' }}"; /* never chats: spares the warning about a missing template */
    llmos_err err = local_backend_open(path, &p, &m->embed_backend);
    if (err)
        return llmos_fail_context(err, "loading the embedding model: ");
    return engine_attach(m, path);
}

/* The embedder p asks for: a model named (or "lexical"), else the caller's backend; NULL when
 * there is none (MEMORY_EMBED_NONE) or the store's record is to decide (*from_store). */
static llmos_err pick_embedder(memory *m, const memory_params *p, const store_embedder **out,
                               bool *from_store)
{
    *out = NULL;
    *from_store = false;
    if (p->embed == MEMORY_EMBED_NONE)
        return LLMOS_OK;
    const char *model = p->embed_model;
    const char *env = getenv("LLMOS_EMBED_MODEL");
    if (!model && env && *env)
        model = env;
    llmos_err err = LLMOS_OK;
    if (model && strcmp(model, "lexical") == 0) {
        *out = memory_lexical_embedder(); /* asked for by name */
    } else if (model) {
        err = engine_open(m, model);
        if (!err)
            *out = &m->engine;
    } else if (p->embed_backend) {
        m->embed_backend = p->embed_backend;
        m->borrowed_backend = true;
        err = engine_attach(m, llm_model_name(p->embed_backend));
        if (!err)
            *out = &m->engine;
    } else {
        *from_store = true;
    }
    return err;
}

/* "NAME DIM" as a store records it, with the legacy name of the lexical embedder mapped. */
static void embedder_id(const char *name, uint32_t dim, char *out, size_t size)
{
    if (strcmp(name, LEGACY_LEXICAL) == 0)
        name = memory_lexical_embedder()->name;
    snprintf(out, size, "%s %u", name, dim);
}

/* The embedder the store records in have_id ("NAME DIM"); LLMOS_ERR_NOT_FOUND (not an error
 * message) for a store with no record and no memories. Memories from before the record existed
 * were made by the lexical embedder under its old name. */
static llmos_err recorded_embedder(store *s, char *have_id, size_t size)
{
    char *have = NULL;
    llmos_err err = store_setting_get(s, STORE_EMBEDDER_SETTING, &have);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        store_stats st = {0};
        if ((err = store_get_stats(s, &st)))
            return err;
        if (st.archival == 0)
            return LLMOS_ERR_NOT_FOUND;
        embedder_id(LEGACY_LEXICAL, memory_lexical_embedder()->dim, have_id, size);
        return LLMOS_OK;
    }
    if (err)
        return err;
    char name[256] = "";
    unsigned dim = 0;
    if (sscanf(have, "%255s %u", name, &dim) != 2)
        snprintf(name, sizeof name, "%s", have);
    embedder_id(name, dim, have_id, size);
    free(have);
    return LLMOS_OK;
}

/* Neither named nor recorded: say how to choose. */
static llmos_err no_embedder(void)
{
    return llmos_fail(
        LLMOS_ERR_INVALID,
        "archival memory needs an embedder and this store has none yet: pass "
        "--embed-model FILE (the GGUF model you chat with, so that the shell finds these "
        "memories; or set LLMOS_EMBED_MODEL or LLMOS_MODEL), or --embed-model lexical "
        "for word matching without a model");
}

/* No embedder named: the lexical one when the store records it, else the fallback model (to be
 * checked against the record by the caller), else a refusal that says how to choose. */
static llmos_err stored_embedder(memory *m, const char *fallback, const store_embedder **out)
{
    char have_id[300];
    llmos_err err = recorded_embedder(m->st, have_id, sizeof have_id);
    if (err && err != LLMOS_ERR_NOT_FOUND)
        return err;
    if (!err && strncmp(have_id, "lexical-v1 ", 11) == 0) {
        *out = memory_lexical_embedder();
        return store_set_embedder(m->st, *out);
    }
    if (fallback && *fallback) {
        if ((err = engine_open(m, fallback)))
            return err;
        *out = &m->engine;
        return store_set_embedder(m->st, *out);
    }
    if (err == LLMOS_ERR_NOT_FOUND)
        return no_embedder();
    return llmos_fail(
        LLMOS_ERR_INVALID,
        "this store's memories were embedded by '%s': pass --embed-model with the GGUF "
        "file of that model (or set LLMOS_EMBED_MODEL to it)",
        have_id);
}

/* Refuse an embedder other than the one that made the store's memories; record it on the first
 * use. */
static llmos_err check_embedder(store *s, const store_embedder *emb)
{
    assert(s && emb && emb->name && emb->dim > 0);
    char want[300], have_id[300];
    embedder_id(emb->name, emb->dim, want, sizeof want);
    llmos_err err = recorded_embedder(s, have_id, sizeof have_id);
    if (err == LLMOS_ERR_NOT_FOUND)
        return store_setting_set(s, STORE_EMBEDDER_SETTING, want);
    if (err)
        return err;
    if (strcmp(have_id, want) == 0)
        return LLMOS_OK;
    bool lexical = strncmp(have_id, "lexical-v1 ", 11) == 0;
    return llmos_fail(LLMOS_ERR_INVALID,
                      "this store's memories were embedded by '%s' and this run embeds with "
                      "'%s'; vectors of different embedders cannot be compared. %s, or move "
                      "every memory to the new embedder with `llmos memory reembed --embed-model "
                      "FILE|lexical`",
                      have_id, want,
                      lexical ? "Pass --embed-model lexical (or set LLMOS_EMBED_MODEL=lexical)"
                              : "Pass --embed-model with the GGUF file of that model (or set "
                                "LLMOS_EMBED_MODEL to it)");
}

/* Passphrases people choose most often (from published lists of leaked passwords, lower case);
 * a new store refuses them whatever their length. */
static const char *const common_passphrases[] = {
    "password",
    "password1",
    "password123",
    "passw0rd",
    "123456789",
    "1234567890",
    "12345678",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "starwars",
    "trustno1",
    "letmein1",
    "welcome1",
    "whatever",
    "11111111",
    "00000000",
    "abcdefgh",
    "abcd1234",
    "qwertyui",
    "asdfghjk",
    "zaq12wsx",
    "1q2w3e4r",
    "changeme",
    "opensesame",
    "correcthorsebatterystaple",
    "llmosllmos",
    "passphrase",
};

#define PASS_MIN_CHARS 8

/* Is `pass` strong enough for a new store? Not when shorter than PASS_MIN_CHARS characters,
 * one character repeated, or one of the most common passwords. */
static llmos_err check_new_passphrase(const char *pass)
{
    size_t chars = 0;
    bool repeated = true;
    for (const unsigned char *c = (const unsigned char *)pass; *c; c++) {
        chars += (*c & 0xC0) != 0x80; /* count code points, not bytes */
        repeated = repeated && *c == (unsigned char)pass[0];
    }
    if (chars < PASS_MIN_CHARS)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "the passphrase has %zu characters; a new store needs at least %d (a "
                          "few unrelated words make a good one); nothing created",
                          chars, PASS_MIN_CHARS);
    if (repeated)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "the passphrase is one character repeated; choose another (a few "
                          "unrelated words make a good one); nothing created");
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(common_passphrases); i++)
        if (strcasecmp(pass, common_passphrases[i]) == 0)
            return llmos_fail(LLMOS_ERR_INVALID,
                              "that passphrase is among the most common passwords and would be "
                              "guessed first; choose another; nothing created");
    return LLMOS_OK;
}

/* The passphrase into pass[0..PASS_MAX): the caller's, $LLMOS_PASSPHRASE, or asked (twice for
 * a new store). */
static llmos_err get_passphrase(const memory_params *p, const char *dir, bool exists, char *pass,
                                char *again)
{
    const char *env = getenv("LLMOS_PASSPHRASE");
    const char *given = p->passphrase ? p->passphrase : env;
    if (given) {
        if (strlen(given) >= PASS_MAX)
            return llmos_fail(LLMOS_ERR_LIMIT, "the passphrase is longer than %d bytes",
                              PASS_MAX - 1);
        snprintf(pass, PASS_MAX, "%s", given);
    } else if (!p->ask) {
        return llmos_fail(LLMOS_ERR_AUTH,
                          "the store in %s needs a passphrase: set LLMOS_PASSPHRASE, or run on a "
                          "terminal to be asked",
                          dir);
    } else if (exists) {
        llmos_err err = p->ask(p->ask_ctx, "Passphrase for your llmos store: ", pass, PASS_MAX);
        if (err)
            return err;
    } else {
        char prompt[4300];
        snprintf(prompt, sizeof prompt,
                 "Creating your encrypted llmos store in %s.\nNew passphrase: ", dir);
        llmos_err err = p->ask(p->ask_ctx, prompt, pass, PASS_MAX);
        if (!err)
            err = p->ask(p->ask_ctx, "Same passphrase again: ", again, PASS_MAX);
        if (err)
            return err;
        if (strcmp(pass, again) != 0)
            return llmos_fail(LLMOS_ERR_INVALID, "the two passphrases differ; nothing created");
    }
    if (!*pass)
        return llmos_fail(LLMOS_ERR_INVALID, "an empty passphrase is not allowed");
    return LLMOS_OK;
}

/* Is kdf the test-only one ("test-weak")? Its stores offer no protection against guessing,
 * so the strength of their passphrase is not checked either (tests use short ones). */
static bool test_kdf(keys_kdf kdf)
{
    keys_kdf weak;
    return keys_kdf_parse("test-weak", &weak) == LLMOS_OK && kdf.opslimit == weak.opslimit &&
           kdf.memlimit == weak.memlimit;
}

static void memory_free(memory *m)
{
    store_close(m->st);
    if (!m->borrowed_backend)
        llm_backend_free(m->embed_backend);
    free(m);
}

/* Unlock (or create) the user's store as p says into m->st, with opt->embedder; a new store
 * is not made when the embedder is to come from its (absent) record. */
static llmos_err open_user_store(memory *m, const memory_params *p, bool from_store,
                                 store_options *opt)
{
    const char *home = p->home ? p->home : memory_home();
    llmos_err err = llmos_file_private_dir(home);
    if (err)
        return llmos_fail_context(err, "the llmos home %s: ", home);
    char dir[4200], keyfile[4300], fresh[4200];
    snprintf(dir, sizeof dir, "%s/store", home);
    snprintf(fresh, sizeof fresh, "%s/freshness", home);
    snprintf(keyfile, sizeof keyfile, "%s/store.key", dir);
    bool exists = access(keyfile, F_OK) == 0;
    if (!exists && !p->create)
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "there is no llmos store in %s yet (`llmos memory add` or the shell "
                          "creates it)",
                          dir);
    if (!exists && from_store && !p->archival_optional &&
        !(p->embed_fallback_model && *p->embed_fallback_model))
        return no_embedder();
    const char *allow = getenv("LLMOS_ALLOW_ROLLBACK");
    opt->no_create = !p->create;
    opt->start_over = p->start_over;
    opt->freshness_dir = fresh;
    opt->allow_rollback = p->allow_rollback || (allow && strcmp(allow, "1") == 0);
    if ((err = keys_kdf_from_env(&opt->kdf)))
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
    if (p->data_key) {
        /* a key kept wrapped elsewhere (a passkey's copy): no passphrase, no new store */
        opt->data_key = p->data_key;
        opt->no_create = true;
        err = store_open(dir, NULL, opt, &m->st);
    } else {
        pass[0] = again[0] = 0;
        err = get_passphrase(p, dir, exists, pass, again);
        if (!err && !exists && !test_kdf(opt->kdf))
            err = check_new_passphrase(pass);
        if (!err)
            err = store_open(dir, pass, opt, &m->st);
    }
    sodium_free(pass);
    sodium_free(again);
    return err;
}

/* Archival memory off for this run, memory_note saying why (the error being handled). */
static llmos_err archival_off(memory *m, const store_embedder **emb)
{
    snprintf(m->note, sizeof m->note, "archival memory is off this run: %s", llmos_errmsg());
    llmos_err_clear();
    *emb = NULL;
    return m->st ? store_set_embedder(m->st, NULL) : LLMOS_OK;
}

llmos_err memory_open(const memory_params *p, memory **out)
{
    *out = NULL;
    memory_params defaults = {0};
    if (!p)
        p = &defaults;
    memory *m = calloc(1, sizeof *m);
    if (!m)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    m->ephemeral = p->ephemeral;
    store_options opt = {0};
    bool from_store = false;
    llmos_err err = pick_embedder(m, p, &opt.embedder, &from_store);
    if (err && p->archival_optional)
        err = archival_off(m, &opt.embedder); /* the backend cannot embed */
    if (!err)
        err = p->ephemeral ? store_open_memory(&opt, &m->st)
                           : open_user_store(m, p, from_store, &opt);
    if (!err && from_store) {
        err = stored_embedder(m, p->embed_fallback_model, &opt.embedder);
        if (err == LLMOS_ERR_INVALID && p->archival_optional)
            err = archival_off(m, &opt.embedder);
    }
    if (!err && p->check_embedder && opt.embedder) {
        err = check_embedder(m->st, opt.embedder);
        if (err == LLMOS_ERR_INVALID && p->archival_optional)
            err = archival_off(m, &opt.embedder); /* another embedder's vectors */
    }
    if (err) {
        memory_free(m);
        return err;
    }
    if (opt.embedder)
        embedder_id(opt.embedder->name, opt.embedder->dim, m->embedder, sizeof m->embedder);
    else
        snprintf(m->embedder, sizeof m->embedder, "none");
    *out = m;
    return LLMOS_OK;
}

llmos_err memory_open_ephemeral(memory **out)
{
    memory_params p = {.ephemeral = true, .embed_model = "lexical"};
    return memory_open(&p, out);
}

store *memory_store(memory *m)
{
    assert(!m || m->st);
    return m ? m->st : NULL;
}

const char *memory_embedder_name(const memory *m)
{
    return m ? m->embedder : "none";
}

bool memory_is_ephemeral(const memory *m)
{
    return m && m->ephemeral;
}

void memory_close(memory *m)
{
    if (m)
        memory_free(m);
}

const char *memory_note(const memory *m)
{
    return m ? m->note : "";
}

llmos_err memory_reembed(memory *m, size_t *n)
{
    assert(m && m->st && n);
    const store_embedder *emb = m->embed_backend ? &m->engine : memory_lexical_embedder();
    llmos_err err = store_archival_reembed(m->st, emb, n);
    if (!err) {
        char id[300];
        embedder_id(emb->name, emb->dim, id, sizeof id);
        err = store_setting_set(m->st, STORE_EMBEDDER_SETTING, id);
        snprintf(m->embedder, sizeof m->embedder, "%s", id);
    }
    return err;
}
