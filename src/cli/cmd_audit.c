/*
 * cmd_audit.c - `llmos audit`: show the audit log of the user's store, and verify its hash
 * chain.
 *
 *   llmos audit [--from SEQ] [--json]         the records: seq, time, kind, payload
 *   llmos audit verify [--checkpoint FILE]    check the chain (and that the log still holds
 *                                             the checkpoint's head); exit 1 naming the first
 *                                             bad record or the difference
 *   llmos audit checkpoint FILE               write the head (seq, hash, time) with a MAC to
 *                                             FILE, to be kept away from the store
 *
 * Through a kernel session of the local user (reading the log is itself a login record). The
 * passphrase comes from LLMOS_PASSPHRASE or a prompt on the terminal (no echo).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"

typedef struct show_ctx {
    bool json;
    int64_t count;
} show_ctx;

/* Every byte of a stored text, a NUL inside too (written as `nul`): text never holds one, so
 * one there was put to hide what follows it, which must then be seen. */
static void show_text(const char *s, size_t n, const char *nul)
{
    for (const char *end = s + n; s < end;) {
        const char *z = memchr(s, 0, (size_t)(end - s));
        size_t run = z ? (size_t)(z - s) : (size_t)(end - s);
        fwrite(s, 1, run, stdout);
        s += run;
        if (z) {
            fputs(nul, stdout);
            s++;
        }
    }
}

static bool show_one(const store_audit_record *r, void *ctx)
{
    show_ctx *c = ctx;
    const char *kind = r->kind ? r->kind : "", *payload = r->payload ? r->payload : "";
    size_t kind_len = r->kind ? r->kind_len : 0, payload_len = r->payload ? r->payload_len : 0;
    if (c->json) {
        printf("%s{\"seq\":%" PRId64 ",\"time\":%" PRId64 ",\"kind\":\"", c->count ? ",\n " : "",
               r->seq, r->time);
        show_text(kind, kind_len, "\\u0000");
        printf("\",\"payload\":");
        show_text(payload, payload_len, "\\u0000");
        printf("}");
    } else {
        time_t t = (time_t)r->time;
        struct tm tm;
        char when[32] = "?";
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf("%6" PRId64 "  %s  ", r->seq, when);
        show_text(kind, kind_len, "\\0");
        printf("%*s  ", kind_len < 10 ? (int)(10 - kind_len) : 0, "");
        show_text(payload, payload_len, "\\0");
        printf("\n");
    }
    c->count++;
    return true;
}

/* `llmos audit checkpoint FILE`: the head of the log, MACed, into FILE. */
static int audit_checkpoint_to(const char *path)
{
    cli_boot b;
    cli_boot_params bp = {.device = "cli", .embed = MEMORY_EMBED_NONE};
    llmos_err err = cli_boot_open(&bp, &b);
    if (err)
        return cli_report(err);
    llmos_buf text = {0};
    err = ksession_audit_checkpoint(b.s, &text);
    cli_boot_close(&b);
    /* not secret (a sequence number, a hash and a MAC): readable, to be copied elsewhere */
    if (!err)
        err = llmos_file_write_atomic(path, text.data, text.len, 0644);
    buf_free(&text);
    if (err)
        return cli_report(err);
    printf("checkpoint written to %s; keep a copy where whoever holds the store's key cannot "
           "change it, and check with 'llmos audit verify --checkpoint %s'\n",
           path, path);
    return CLI_OK;
}

int cmd_audit(int argc, char **argv)
{
    bool verify = false, as_json = false;
    const char *checkpoint = NULL;
    int64_t from = 1;
    if (argc >= 2 && strcmp(argv[1], "checkpoint") == 0) {
        if (argc != 3)
            return cli_usage_error("audit", "checkpoint needs the FILE to write, and nothing else");
        return audit_checkpoint_to(argv[2]);
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "verify") == 0 && i == 1)
            verify = true;
        else if (strcmp(argv[i], "--checkpoint") == 0 && verify) {
            if (i + 1 >= argc)
                return cli_usage_error("audit", "--checkpoint needs the checkpoint FILE");
            checkpoint = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            char *end = NULL;
            from = strtoll(argv[++i], &end, 10);
            if (!end || *end || from < 1)
                return cli_usage_error("audit", "--from needs a record number >= 1");
        } else
            return cli_usage_error("audit", "unknown argument '%s'", argv[i]);
    }
    llmos_buf cp = {0};
    if (checkpoint) {
        llmos_err err = llmos_file_read_all(checkpoint, 65536, &cp);
        if (err) {
            buf_free(&cp);
            return cli_report(err);
        }
    }
    cli_boot b;
    cli_boot_params bp = {.device = "cli", .embed = MEMORY_EMBED_NONE};
    llmos_err err = cli_boot_open(&bp, &b);
    if (err) {
        buf_free(&cp);
        return cli_report(err);
    }
    if (verify) {
        audit_verdict v;
        err = checkpoint ? ksession_audit_verify_checkpoint(b.s, cp.data, cp.len, &v)
                         : ksession_audit_verify(b.s, &v);
        cli_boot_close(&b);
        buf_free(&cp);
        if (err)
            return cli_report(checkpoint ? llmos_fail_context(err, "%s: ", checkpoint) : err);
        if (v.ok) {
            printf("audit log intact: %" PRId64 " records, hash chain verified%s\n", v.records,
                   checkpoint ? ", the checkpoint's head still in it" : "");
            return CLI_OK;
        }
        printf("audit log TAMPERED: first bad record %" PRId64 ": %s\n", v.bad_seq, v.reason);
        return CLI_FAILED;
    }
    show_ctx c = {.json = as_json};
    if (as_json)
        printf("[");
    else
        printf("%6s  %-19s  %-10s  %s\n", "SEQ", "TIME (UTC)", "KIND", "PAYLOAD");
    err = ksession_audit(b.s, from, show_one, &c);
    if (as_json)
        printf("]\n");
    cli_boot_close(&b);
    return err ? cli_report(err) : CLI_OK;
}
