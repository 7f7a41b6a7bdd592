/*
 * cmd_memory.c - `llmos memory`: add to, search and describe the user's encrypted store.
 *
 *   llmos memory add [--model FILE] [TEXT... | -]    store TEXT as an archival memory; with
 *                                                    no TEXT, or -, read it from standard input
 *   llmos memory search [--model FILE] QUERY [-k N]  the N memories nearest to QUERY (default 5)
 *   llmos memory stats                               counts, sizes and the store's embedder
 *   llmos memory reset                               start over a store whose database is gone
 *
 * The store lives in <llmos home>/store (see memory_home). The passphrase comes from
 * LLMOS_PASSPHRASE (for scripts) or from a prompt on the terminal without echo; the first use
 * creates the store and asks twice. LLMOS_KDF picks the Argon2id strength of a new store.
 *
 * Embedders (llmos/memory.h). With --model FILE (or LLMOS_EMBED_MODEL) memories are embedded
 * by the engine (the mean of the GGUF model's last hidden states, "engine:<model name>");
 * without, by the lexical embedder, which finds shared words, not meaning. A store refuses an
 * embedder other than the one that made its memories, naming the one to pass.
 *
 * Everything goes through a kernel session of the local user, so each addition is audited.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"

/* --model FILE taken out of argv (argc shrinks); *bad when it has no value. */
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
    return model;
}

/* The user's memory with the embedder --model asks for (created on first use). */
static llmos_err boot_memory(const char *model, cli_boot *b)
{
    cli_boot_params bp = {
        .device = "cli", .create = true, .embed = MEMORY_EMBED_DEFAULT, .embed_model = model};
    return cli_boot_open(&bp, b);
}

#define STDIN_TEXT_MAX (1u << 20)

/* The text to remember from standard input (all of it, without the final line ends): the
 * command line is visible to every user of the machine (ps, /proc/PID/cmdline), standard
 * input is not. */
static llmos_err read_stdin_text(llmos_buf *text)
{
    if (isatty(STDIN_FILENO))
        fprintf(stderr, "Type the text to remember, then Ctrl-D on a line of its own:\n");
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        if (text->len + n > STDIN_TEXT_MAX)
            return llmos_fail(LLMOS_ERR_LIMIT,
                              "the text on standard input is longer than %u bytes; remember it "
                              "in smaller pieces",
                              STDIN_TEXT_MAX);
        if (buf_append(text, chunk, n))
            return llmos_fail(LLMOS_ERR_NOMEM, "no memory for the text");
    }
    if (ferror(stdin))
        return llmos_fail(LLMOS_ERR_IO, "reading standard input: %s", strerror(errno));
    if (memchr(text->data ? text->data : "", 0, text->len))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "standard input holds a NUL byte: memory add takes text, not binary "
                          "data");
    while (text->data && text->len &&
           (text->data[text->len - 1] == '\n' || text->data[text->len - 1] == '\r'))
        text->data[--text->len] = '\0';
    return LLMOS_OK;
}

static int memory_add(int argc, char **argv)
{
    bool bad;
    const char *model = take_model_option(&argc, argv, &bad);
    if (bad)
        return cli_usage_error("memory", "--model needs a GGUF FILE");
    llmos_buf text = {0};
    bool from_stdin = argc < 3 || (argc == 3 && strcmp(argv[2], "-") == 0);
    llmos_err err = from_stdin ? read_stdin_text(&text) : LLMOS_OK;
    for (int i = 2; !err && !from_stdin && i < argc; i++)
        if ((i > 2 && buf_putc(&text, ' ')) || buf_puts(&text, argv[i]))
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for the text");
    if (err || text.len == 0) {
        buf_free(&text);
        return err ? cli_report(err)
                   : cli_usage_error("memory", "add needs the TEXT to remember (as arguments, "
                                               "or on standard input)");
    }
    cli_boot b;
    err = boot_memory(model, &b);
    int64_t id = 0;
    if (!err)
        err = ksession_memory_add(b.s, text.data, &id);
    buf_free(&text);
    cli_boot_close(&b);
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
    cli_boot b;
    store_archival *hits = NULL;
    size_t n = 0;
    llmos_err err = boot_memory(model, &b);
    if (!err) {
        err = ksession_memory_search(b.s, query.data, (size_t)k, &hits, &n);
        cli_boot_close(&b);
    }
    buf_free(&query);
    if (err)
        return cli_report(err);
    if (n == 0)
        printf("no memories yet\n");
    for (size_t i = 0; i < n; i++)
        printf("%zu. #%lld (%.3f) %s\n", i + 1, (long long)hits[i].id, hits[i].score, hits[i].text);
    ksession_memories_free(hits, n);
    return CLI_OK;
}

static int memory_stats(void)
{
    cli_boot b;
    store_stats st = {0};
    cli_boot_params bp = {.device = "cli", .embed = MEMORY_EMBED_NONE};
    llmos_err err = cli_boot_open(&bp, &b);
    if (!err) {
        err = ksession_memory_stats(b.s, &st);
        if (!err) {
            printf("store:            %s\n", store_db_path(memory_store(b.mem)));
            printf("schema version:   %d\n", st.schema_version);
            printf("archival:         %lld memories\n", (long long)st.archival);
            printf("messages:         %lld\n", (long long)st.messages);
            printf("core blocks:      %lld\n", (long long)st.core_blocks);
            printf("audit records:    %lld\n", (long long)st.audit_records);
            printf("pages:            %lld x %lld bytes (encrypted)\n", (long long)st.page_count,
                   (long long)st.page_size);
            printf("file sizes:       %lld bytes database, %lld bytes WAL\n",
                   (long long)st.db_bytes, (long long)st.wal_bytes);
            printf("vector search:    %s\n", st.vector_index ? "HNSW index" : "exact");
            printf("embedder:         %s\n", st.embedder[0] ? st.embedder : "none recorded");
        }
        cli_boot_close(&b);
    }
    return err ? cli_report(err) : CLI_OK;
}

/* A store whose key file is there but whose database is missing or empty is refused by every
 * other command; this one makes a new, empty store in its place (store_options.start_over),
 * after the old passphrase unlocked the old key file, which is kept aside. */
static int memory_reset(void)
{
    cli_boot b;
    cli_boot_params bp = {.device = "cli", .start_over = true, .embed = MEMORY_EMBED_NONE};
    llmos_err err = cli_boot_open(&bp, &b);
    if (err)
        return cli_report(err);
    store *st = memory_store(b.mem);
    const char *aside = store_set_aside_key(st);
    if (aside)
        printf("started over: %s is a new, empty store under a new key; the old key file is "
               "kept as %s\n",
               store_db_path(st), aside);
    else
        printf("nothing to start over: %s is there (reset only replaces a store whose database "
               "is gone; to discard a store, move its folder away)\n",
               store_db_path(st));
    cli_boot_close(&b);
    return aside ? CLI_OK : CLI_FAILED;
}

int cmd_memory(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("memory", "say what to do: add, search, stats or reset");
    if (strcmp(argv[1], "add") == 0)
        return memory_add(argc, argv);
    if (strcmp(argv[1], "search") == 0)
        return memory_search(argc, argv);
    if (strcmp(argv[1], "stats") == 0) {
        if (argc > 2)
            return cli_usage_error("memory", "stats takes no arguments");
        return memory_stats();
    }
    if (strcmp(argv[1], "reset") == 0) {
        if (argc > 2)
            return cli_usage_error("memory", "reset takes no arguments");
        return memory_reset();
    }
    return cli_usage_error("memory", "unknown action '%s' (add, search, stats or reset)", argv[1]);
}
