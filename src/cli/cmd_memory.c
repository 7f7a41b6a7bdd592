/*
 * cmd_memory.c - `llmos memory`: look into, add to, check and move the user's encrypted store,
 * level by level (docs/memory.md):
 *
 *   llmos memory core [--json]                       the core blocks, always in the context
 *   llmos memory recall [QUERY] [--since D] [--until D] [--page N] [-k N] [--json]
 *                                                    what was said: the newest messages, or
 *                                                    those matching QUERY (words, BM25)
 *   llmos memory archival [QUERY] [--page N] [-k N] [--json]
 *                                                    archival passages: the newest, or those
 *                                                    best matching QUERY (meaning and words)
 *   llmos memory add [TEXT... | -]                   remember TEXT in archival memory (- or
 *                                                    nothing: from standard input)
 *   llmos memory search QUERY [-k N]                 = archival QUERY
 *   llmos memory stats                               counts, sizes and the store's embedder
 *   llmos memory verify                              read and check everything; exit 1 naming
 *                                                    the first failure
 *   llmos memory reembed --embed-model FILE|lexical  move every passage to another embedder
 *   llmos memory reset                               start over a store whose database is gone
 *
 * The store lives in <llmos home>/store (see memory_home). The passphrase comes from
 * LLMOS_PASSPHRASE (for scripts) or from a prompt on the terminal without echo; the first use
 * creates the store and asks twice. LLMOS_KDF picks the Argon2id strength of a new store.
 *
 * Embedders (llmos/memory.h): --embed-model FILE (or --model, or LLMOS_EMBED_MODEL) embeds with
 * the engine (the mean of the GGUF model's last hidden states, "engine:<model name>");
 * "lexical" names the lexical embedder (shared words, not meaning). With none named: the
 * lexical one if the store records it, else the model the shell chats with ($LLMOS_MODEL),
 * which is also what the shell embeds with. A store refuses an embedder other than the one
 * that made its memories, naming the one to pass; `reembed` changes it.
 *
 * Everything goes through a kernel session of the local user, so each addition is audited.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"

/* The options of a memory subcommand, parsed once for all of them. */
typedef struct mem_opts {
    const char *embed_model; /* --embed-model / --model */
    long k;                  /* -k: results per page */
    long page;               /* --page, from 0 */
    int64_t since, until;    /* --since / --until, Unix seconds (0: unbounded) */
    bool json;
    bool k_set, page_set, dates_set, model_set;
    llmos_buf words; /* the rest, space-joined */
    int n_words;
} mem_opts;

/* D as a time: Unix seconds, or YYYY-MM-DD (UTC; --until takes the end of that day). */
static bool parse_date(const char *v, bool end_of_day, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!errno && end && !*end && n >= 0) {
        *out = n;
        return true;
    }
    struct tm tm = {0};
    int y, m, d;
    char tail;
    if (sscanf(v, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 || d > 31 ||
        y < 1970)
        return false;
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    *out = (int64_t)t + (end_of_day ? 86399 : 0);
    return true;
}

/* Parse argv[2..] into *o; a usage error's exit status, or CLI_OK. */
static int parse_mem_opts(int argc, char **argv, mem_opts *o)
{
    memset(o, 0, sizeof *o);
    o->k = 5;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        bool takes = strcmp(a, "--model") == 0 || strcmp(a, "--embed-model") == 0 ||
                     strcmp(a, "-k") == 0 || strcmp(a, "--page") == 0 ||
                     strcmp(a, "--since") == 0 || strcmp(a, "--until") == 0;
        if (!takes && a[0] == '-' && a[1] != '\0')
            return cli_usage_error("memory", "unknown option '%s'", a);
        if (!takes) {
            if ((o->n_words++ && buf_putc(&o->words, ' ')) || buf_puts(&o->words, a))
                return cli_report(LLMOS_ERR_NOMEM);
            continue;
        }
        if (i + 1 >= argc)
            return cli_usage_error("memory", "%s needs a value", a);
        const char *v = argv[++i];
        char *end = NULL;
        if (strcmp(a, "--model") == 0 || strcmp(a, "--embed-model") == 0) {
            o->embed_model = v;
            o->model_set = true;
        } else if (strcmp(a, "-k") == 0) {
            o->k = strtol(v, &end, 10);
            if (*end || o->k < 1 || o->k > KMEMORY_PAGE_MAX)
                return cli_usage_error("memory", "-k needs a number from 1 to %d, not '%s'",
                                       KMEMORY_PAGE_MAX, v);
            o->k_set = true;
        } else if (strcmp(a, "--page") == 0) {
            o->page = strtol(v, &end, 10);
            if (*end || o->page < 0 || o->page > 100000)
                return cli_usage_error("memory", "--page needs a page number from 0, not '%s'", v);
            o->page_set = true;
        } else {
            bool until = strcmp(a, "--until") == 0;
            if (!parse_date(v, until, until ? &o->until : &o->since))
                return cli_usage_error(
                    "memory", "%s takes a date as YYYY-MM-DD or Unix seconds, not '%s'", a, v);
            o->dates_set = true;
        }
    }
    return CLI_OK;
}

/* Refuse the options a subcommand does not take. */
static int only(const char *what, const mem_opts *o, bool words, bool model, bool paging,
                bool dates, bool json)
{
    if (o->n_words && !words)
        return cli_usage_error("memory", "%s takes no text ('%s')", what, o->words.data);
    if (o->model_set && !model)
        return cli_usage_error("memory", "%s takes no --embed-model", what);
    if ((o->k_set || o->page_set) && !paging)
        return cli_usage_error("memory", "%s takes no -k or --page", what);
    if (o->dates_set && !dates)
        return cli_usage_error("memory", "%s takes no --since or --until", what);
    if (o->json && !json)
        return cli_usage_error("memory", "%s takes no --json", what);
    return CLI_OK;
}

/* The user's memory with the embedder the options ask for (created on first use). */
static llmos_err boot_memory(const char *model, cli_boot *b)
{
    cli_boot_params bp = {.device = "cli",
                          .create = true,
                          .embed = MEMORY_EMBED_DEFAULT,
                          .embed_model = model,
                          .embed_fallback_model = getenv("LLMOS_MODEL")};
    return cli_boot_open(&bp, b);
}

/* The user's memory without an embedder (listing, stats, verify: no model load). */
static llmos_err boot_plain(cli_boot *b)
{
    cli_boot_params bp = {.device = "cli", .embed = MEMORY_EMBED_NONE};
    return cli_boot_open(&bp, b);
}

/* Print a JSON value on a line of its own and free it. */
static int print_json(json_t *j)
{
    char *t = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    if (!t)
        return cli_report(llmos_fail(LLMOS_ERR_NOMEM, "no memory for the JSON output"));
    printf("%s\n", t);
    free(t);
    return CLI_OK;
}

static void print_time(int64_t t)
{
    char when[32] = "?";
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
    printf("%s", when);
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

static int memory_add(const mem_opts *o)
{
    int rc = only("add", o, true, true, false, false, false);
    if (rc)
        return rc;
    llmos_buf text = {0};
    bool from_stdin = o->n_words == 0 || strcmp(o->words.data, "-") == 0;
    llmos_err err = from_stdin ? read_stdin_text(&text) : LLMOS_OK;
    if (!err && !from_stdin && buf_puts(&text, o->words.data))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for the text");
    if (err || text.len == 0) {
        buf_free(&text);
        return err ? cli_report(err)
                   : cli_usage_error("memory", "add needs the TEXT to remember (as arguments, "
                                               "or on standard input)");
    }
    cli_boot b;
    err = boot_memory(o->embed_model, &b);
    int64_t id = 0;
    if (!err) {
        err = ksession_memory_add(b.s, text.data, &id);
        cli_boot_close(&b);
    }
    buf_free(&text);
    if (err)
        return cli_report(err);
    printf("remembered as #%lld\n", (long long)id);
    return CLI_OK;
}

/* archival [QUERY]: the newest passages, or those best matching QUERY (search: QUERY needed). */
static int memory_archival(const mem_opts *o, bool search)
{
    int rc = only(search ? "search" : "archival", o, true, true, true, false, true);
    if (rc)
        return rc;
    if (search && o->n_words == 0)
        return cli_usage_error("memory", "search needs a QUERY");
    cli_boot b;
    store_archival *hits = NULL;
    size_t n = 0;
    llmos_err err = o->n_words ? boot_memory(o->embed_model, &b) : boot_plain(&b);
    if (!err) {
        err = o->n_words ? ksession_memory_search(b.s, o->words.data, (size_t)o->page, (size_t)o->k,
                                                  &hits, &n)
                         : ksession_memory_list(b.s, (size_t)o->page, (size_t)o->k, &hits, &n);
        cli_boot_close(&b);
    }
    if (err)
        return cli_report(err);
    if (o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++) {
            json_t *e = json_pack("{s:I, s:s, s:I, s:b}", "id", (json_int_t)hits[i].id, "text",
                                  hits[i].text, "created_at", (json_int_t)hits[i].created_at,
                                  "untrusted", memory_archival_untrusted(&hits[i]));
            if (e && o->n_words)
                json_object_set_new(e, "score", json_real(hits[i].score));
            json_array_append_new(arr, e);
        }
        ksession_memories_free(hits, n);
        return print_json(arr);
    }
    if (n == 0)
        printf(o->page ? "no more memories\n"
                       : (o->n_words ? "no memories match\n" : "no memories yet\n"));
    size_t first = (size_t)o->page * (size_t)o->k;
    for (size_t i = 0; i < n; i++) {
        if (o->n_words)
            printf("%zu. #%lld (%.3f) %s\n", first + i + 1, (long long)hits[i].id, hits[i].score,
                   hits[i].text);
        else {
            printf("#%lld  ", (long long)hits[i].id);
            print_time(hits[i].created_at);
            printf("  %s\n", hits[i].text);
        }
    }
    ksession_memories_free(hits, n);
    return CLI_OK;
}

static int memory_core(const mem_opts *o)
{
    int rc = only("core", o, false, false, false, false, true);
    if (rc)
        return rc;
    cli_boot b;
    store_core_block *blocks = NULL;
    size_t n = 0;
    llmos_err err = boot_plain(&b);
    if (!err) {
        err = ksession_core_list(b.s, &blocks, &n);
        cli_boot_close(&b);
    }
    if (err)
        return cli_report(err);
    if (o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
            json_array_append_new(arr,
                                  json_pack("{s:s, s:s, s:I}", "label", blocks[i].label, "value",
                                            blocks[i].value, "limit", (json_int_t)blocks[i].limit));
        store_core_blocks_free(blocks, n);
        return print_json(arr);
    }
    for (size_t i = 0; i < n; i++)
        printf("%s (%zu of %lld characters)\n  %s\n", blocks[i].label, strlen(blocks[i].value),
               (long long)blocks[i].limit, blocks[i].value[0] ? blocks[i].value : "(empty)");
    store_core_blocks_free(blocks, n);
    return CLI_OK;
}

static int memory_recall(const mem_opts *o)
{
    int rc = only("recall", o, true, false, true, true, true);
    if (rc)
        return rc;
    cli_boot b;
    store_message *m = NULL;
    size_t n = 0;
    llmos_err err = boot_plain(&b);
    if (!err) {
        err = ksession_recall_search(b.s, o->n_words ? o->words.data : "", o->since, o->until,
                                     (size_t)o->page, (size_t)o->k, &m, &n);
        cli_boot_close(&b);
    }
    if (err)
        return cli_report(err);
    if (o->json) {
        json_t *arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
            json_array_append_new(
                arr, json_pack("{s:I, s:s, s:s, s:s, s:I}", "id", (json_int_t)m[i].id,
                               "conversation", m[i].conversation, "role", m[i].role, "content",
                               m[i].content, "created_at", (json_int_t)m[i].created_at));
        ksession_messages_free(m, n);
        return print_json(arr);
    }
    if (n == 0)
        printf(o->page ? "no more messages\n"
                       : (o->n_words ? "nothing said matches\n" : "nothing said yet\n"));
    for (size_t i = 0; i < n; i++) {
        print_time(m[i].created_at);
        printf("  [%s %s] %s\n", m[i].conversation, m[i].role, m[i].content);
    }
    ksession_messages_free(m, n);
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

static int memory_verify(const mem_opts *o)
{
    int rc = only("verify", o, false, false, false, false, false);
    if (rc)
        return rc;
    cli_boot b;
    kmemory_check c;
    llmos_err err = boot_plain(&b);
    if (err)
        return cli_report(err);
    printf("store: %s\n", store_db_path(memory_store(b.mem)));
    err = ksession_memory_verify(b.s, &c);
    cli_boot_close(&b);
    if (c.pages_ok)
        printf("pages:         %lld read and authenticated; SQLite's integrity check and the word "
               "indexes agree\n",
               (long long)c.pages);
    if (c.audit.ok)
        printf("audit chain:   %lld records, unbroken\n", (long long)c.audit.records);
    if (!err) {
        if (!c.archival.embedder[0])
            printf("archival:      no vectors\n");
        else
            printf("archival:      %lld vectors of %s, each of unit length\n",
                   (long long)c.archival.vectors, c.archival.embedder);
        if (c.archival.index_checked)
            printf("vector index:  holds exactly those vectors\n");
        else if (c.archival.index_signature[0])
            printf("vector index:  saved for an earlier state of the table (rebuilt when next "
                   "searched)\n");
        printf("verified: nothing wrong\n");
        return CLI_OK;
    }
    fprintf(stderr, "llmos memory verify: FAILED: %s\n", llmos_errmsg());
    return CLI_FAILED;
}

static int memory_reembed_cmd(const mem_opts *o)
{
    int rc = only("reembed", o, false, true, false, false, false);
    if (rc)
        return rc;
    const char *env = getenv("LLMOS_EMBED_MODEL");
    if (!o->embed_model && !(env && *env))
        return cli_usage_error("memory", "reembed needs the embedder to move to: --embed-model "
                                         "FILE (a GGUF model) or --embed-model lexical");
    cli_boot b;
    cli_boot_params bp = {.device = "cli",
                          .embed = MEMORY_EMBED_DEFAULT,
                          .embed_model = o->embed_model,
                          .archival_optional = true}; /* the store's old vectors: allowed */
    llmos_err err = cli_boot_open(&bp, &b);
    if (err)
        return cli_report(err);
    size_t n = 0;
    fprintf(stderr, "re-embedding every archival passage...\n");
    err = memory_reembed(b.mem, &n);
    char outcome[400];
    snprintf(outcome, sizeof outcome, "%s: %zu passages now by %s", err ? "failed" : "done", n,
             memory_embedder_name(b.mem));
    llmos_err aerr = ksession_audit_request(b.s, "memory reembed", outcome);
    if (!err)
        err = aerr;
    if (!err)
        printf("re-embedded %zu passages with %s\n", n, memory_embedder_name(b.mem));
    cli_boot_close(&b);
    return err ? cli_report(err) : CLI_OK;
}

int cmd_memory(int argc, char **argv)
{
    static const char *const actions =
        "core, recall, archival, add, search, stats, verify, reembed or reset";
    if (argc < 2)
        return cli_usage_error("memory", "say what to do: %s", actions);
    const char *act = argv[1];
    mem_opts o;
    int rc = parse_mem_opts(argc, argv, &o);
    if (rc == CLI_OK) {
        if (strcmp(act, "add") == 0)
            rc = memory_add(&o);
        else if (strcmp(act, "search") == 0 || strcmp(act, "archival") == 0)
            rc = memory_archival(&o, strcmp(act, "search") == 0);
        else if (strcmp(act, "core") == 0)
            rc = memory_core(&o);
        else if (strcmp(act, "recall") == 0)
            rc = memory_recall(&o);
        else if (strcmp(act, "verify") == 0)
            rc = memory_verify(&o);
        else if (strcmp(act, "reembed") == 0)
            rc = memory_reembed_cmd(&o);
        else if (strcmp(act, "stats") == 0 || strcmp(act, "reset") == 0) {
            rc = only(act, &o, false, false, false, false, false);
            if (!rc)
                rc = act[1] == 't' ? memory_stats() : memory_reset();
        } else
            rc = cli_usage_error("memory", "unknown action '%s' (%s)", act, actions);
    }
    buf_free(&o.words);
    return rc;
}
