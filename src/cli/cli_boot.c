/*
 * cli_boot.c - how a command brings llmos up: the user's memory, a kernel over it and the
 * model backends, and a session for the local user (cli.h, cli_boot_open).
 *
 * The local user owns the store, so the session holds every right; its processes get the
 * capabilities the command asks for (by default compute, message and quarantine: the tools
 * that touch nothing outside). This is the only place the program makes kernel sessions; the
 * HTTP server makes its own per API key (src/io/http_server.c).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/guard.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "llmos/repl.h"

#define CLI_PRINCIPAL "user"

llmos_err cli_boot_open(const cli_boot_params *p, cli_boot *out)
{
    memset(out, 0, sizeof *out);
    out->privileged = p->privileged;
    out->quarantined = p->quarantined;
    out->embedder = p->embedder;
    memory_params mp = {.create = p->create,
                        .ephemeral = p->ephemeral,
                        .start_over = p->start_over,
                        .ask = repl_read_secret,
                        .embed = (memory_embed)p->embed,
                        .embed_model = p->embed_model,
                        .embed_fallback_model = p->embed_fallback_model,
                        .embed_backend = p->embedder,
                        .check_embedder = p->embed == MEMORY_EMBED_DEFAULT,
                        .archival_optional = p->archival_optional};
    llmos_err err = memory_open(&mp, &out->mem);
    snprintf(out->workspaces, sizeof out->workspaces, "%s/workspaces", memory_home());
    if (!err && p->guard_file && !p->no_guard) {
        /* the output guard's policy file; its judge, when asked for, is the quarantined model */
        llmos_buf gb = {0};
        err = llmos_file_read_all(p->guard_file, 1 << 20, &gb);
        if (!err)
            err = guard_parse(gb.data ? gb.data : "", gb.len, p->guard_file, &out->guard);
        buf_free(&gb);
        if (!err && guard_judge_requested(out->guard)) {
            if (!p->quarantined)
                err = llmos_fail(LLMOS_ERR_INVALID,
                                 "%s asks for the judge, but there is no quarantined model to "
                                 "judge with",
                                 p->guard_file);
            else
                guard_set_judge(out->guard, p->quarantined);
        }
    }
    if (!err) {
        kernel_config kc = {.st = memory_store(out->mem),
                            .workspace_dir = out->workspaces,
                            .privileged = p->privileged,
                            .quarantined = p->quarantined,
                            .system_prompt = p->system_prompt,
                            .max_tokens_per_turn = p->max_tokens,
                            .sampling = p->sampling,
                            .max_queue = p->max_queue,
                            .keep_kv = !p->ephemeral,
                            .guard = out->guard,
                            .no_guard = p->no_guard};
        kc.extra_tools = p->extra_tools;
        kc.n_extra_tools = p->n_extra_tools;
        err = kernel_new(&kc, &out->k);
    }
    if (!err) {
        ksession_params sp = {
            .principal = CLI_PRINCIPAL,
            .device = p->device ? p->device : "cli",
            .rights = KRIGHT_ALL,
            .caps =
                p->caps ? p->caps : (KCAP_COMPUTE | KCAP_MESSAGE | KCAP_QUARANTINE | KCAP_MEMORY)};
        err = ksession_open(out->k, &sp, &out->s);
    }
    /* what the models' checks found before they loaded (cli_apps.c): into the audit log */
    const char *const *checks = NULL;
    size_t n_checks = cli_model_checks(&checks);
    for (size_t i = 0; !err && i < n_checks; i++)
        err = ksession_audit_request(out->s, "model.verify", checks[i]);
    if (err)
        cli_boot_close(out);
    return err;
}

void cli_boot_close(cli_boot *b)
{
    ksession_close(b->s);
    kernel_free(b->k);
    memory_close(b->mem);
    llm_backend_free(b->embedder); /* forks of the privileged one: first */
    llm_backend_free(b->quarantined);
    guard_free(b->guard);
    b->guard = NULL;
    llm_backend_free(b->privileged);
    memset(b, 0, sizeof *b);
}
