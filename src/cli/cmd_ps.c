/*
 * cmd_ps.c - `llmos ps` and `llmos kill PID`: the processes (agent runs) kept in the user's
 * encrypted store.
 *
 *   llmos ps [--json]   pid, state, principal, model, capabilities, budgets used / given
 *   llmos kill PID      mark a process killed; a loop running it stops before its next step
 *
 * Both go through a kernel session of the local user, so a kill is audited and a turn running
 * the process (in this or another llmos program) stops within 200 ms. The passphrase comes
 * from LLMOS_PASSPHRASE or a prompt on the terminal (no echo). The store must exist
 * (processes are made by the kernel, not here).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"

int cmd_ps(int argc, char **argv)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else
            return cli_usage_error("ps", "unknown argument '%s'", argv[i]);
    }
    cli_boot b;
    cli_boot_params bp = {.device = "cli", .embed = MEMORY_EMBED_NONE};
    llmos_err err = cli_boot_open(&bp, &b);
    if (err)
        return cli_report(err);
    kproc_info *list = NULL;
    size_t n = 0;
    err = ksession_ps(b.s, &list, &n);
    cli_boot_close(&b);
    if (err)
        return cli_report(err);
    if (as_json) {
        printf("[");
        for (size_t i = 0; i < n; i++) {
            char caps[96];
            kcap_format(list[i].caps, caps, sizeof caps);
            json_t *j = json_pack(
                "{s:I, s:s, s:s, s:s, s:s, s:s, s:{s:I, s:I, s:f}, s:{s:I, s:I, s:f}}", "pid",
                (json_int_t)list[i].pid, "state", kproc_state_name(list[i].state), "principal",
                list[i].principal, "model", list[i].model, "caps", caps, "reason", list[i].reason,
                "used", "tokens", (json_int_t)list[i].used.tokens, "tool_calls",
                (json_int_t)list[i].used.tool_calls, "wall_s", list[i].used.wall_s, "budget",
                "tokens", (json_int_t)list[i].budget.tokens, "tool_calls",
                (json_int_t)list[i].budget.tool_calls, "wall_s", list[i].budget.wall_s);
            char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
            printf("%s%s", i ? ",\n " : "", t ? t : "null");
            free(t);
            json_decref(j);
        }
        printf("]\n");
        free(list);
        return CLI_OK;
    }
    if (!n) {
        printf("no processes\n");
        return CLI_OK;
    }
    printf("%6s  %-13s  %-10s  %-20s  %-24s  %-16s  %s\n", "PID", "STATE", "PRINCIPAL", "MODEL",
           "CAPS", "TOKENS", "CALLS");
    for (size_t i = 0; i < n; i++) {
        const kproc_info *p = &list[i];
        char caps[96], tok[40], calls[40];
        if (p->caps == KCAP_ALL)
            snprintf(caps, sizeof caps, "all");
        else
            kcap_format(p->caps, caps, sizeof caps);
        if (p->budget.tokens)
            snprintf(tok, sizeof tok, "%" PRId64 "/%" PRId64, p->used.tokens, p->budget.tokens);
        else
            snprintf(tok, sizeof tok, "%" PRId64, p->used.tokens);
        if (p->budget.tool_calls)
            snprintf(calls, sizeof calls, "%" PRId64 "/%" PRId64, p->used.tool_calls,
                     p->budget.tool_calls);
        else
            snprintf(calls, sizeof calls, "%" PRId64, p->used.tool_calls);
        printf("%6" PRId64 "  %-13s  %-10.10s  %-20.20s  %-24.24s  %-16s  %s\n", p->pid,
               kproc_state_name(p->state), p->principal, p->model, caps, tok, calls);
    }
    free(list);
    return CLI_OK;
}

int cmd_kill(int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error("kill", "expected one PID");
    char *end = NULL;
    errno = 0;
    long long pid = strtoll(argv[1], &end, 10);
    if (errno || !end || *end || pid <= 0)
        return cli_usage_error("kill", "'%s' is not a process id (a positive number)", argv[1]);
    cli_boot b;
    cli_boot_params bp = {.device = "cli", .embed = MEMORY_EMBED_NONE};
    llmos_err err = cli_boot_open(&bp, &b);
    if (err)
        return cli_report(err);
    err = ksession_kill(b.s, (int64_t)pid);
    cli_boot_close(&b);
    if (err)
        return cli_report(err);
    printf("process %lld killed\n", pid);
    return CLI_OK;
}
