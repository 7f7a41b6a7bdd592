/*
 * cmd_scan.c - `llmos scan`: attack a configuration with llmos's probes and report how often
 * each family of attacks succeeds (llmos/scan.h, docs/security.md "Scanning").
 *
 * Targets: an llmos kernel over the model (--model FILE or --api URL), with the quarantine (the
 * default; the quarantined model is a second context of the local model, or the server again,
 * unless --quarantine-model names another) or without it (--no-quarantine), the output guard on
 * unless --no-guard; or a bare OpenAI-compatible endpoint (--endpoint --api URL). Writes
 * report.jsonl, summary.json and report.html into --out DIR, prints the summary, and exits 3
 * when a family's success rate is above --fail-above.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "llmos/scan.h"

#ifndef LLMOS_DATA_DIR
#define LLMOS_DATA_DIR "data"
#endif

typedef struct scan_out {
    llmos_buf jsonl;
    size_t done;
} scan_out;

static void on_attempt(void *ctx, const scan_attempt *a)
{
    scan_out *o = ctx;
    if (scan_attempt_jsonl(a, &o->jsonl))
        llmos_err_clear(); /* an attempt that cannot be written is left out of the file */
    o->done++;
    fprintf(stderr, "\r%zu attempts", o->done);
}

static llmos_err write_file(const char *dir, const char *name, const llmos_buf *b)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return llmos_file_write_atomic(path, b->data ? b->data : "", b->len, 0644);
}

int cmd_scan(int argc, char **argv)
{
    const char *model = NULL, *api = NULL, *api_model = NULL, *quar = NULL, *quar_model = NULL;
    const char *judge = NULL, *judge_model = NULL, *probes_dir = getenv("LLMOS_PROBES");
    const char *out_dir = "scan-report", *families = NULL;
    bool endpoint = false, no_quarantine = false, no_guard = false, direct = false;
    double fail_above = -1;
    long limit = 0, max_tokens = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--endpoint") == 0) {
            endpoint = true;
            continue;
        }
        if (strcmp(a, "--no-quarantine") == 0) {
            no_quarantine = true;
            continue;
        }
        if (strcmp(a, "--no-guard") == 0) {
            no_guard = true;
            continue;
        }
        if (strcmp(a, "--direct") == 0) {
            direct = true;
            continue;
        }
        static const char *const takes[] = {"--model",
                                            "--api",
                                            "--api-model",
                                            "--quarantine-model",
                                            "--quarantine-api-model",
                                            "--judge-model",
                                            "--judge-api-model",
                                            "--probes",
                                            "--out",
                                            "--family",
                                            "--fail-above",
                                            "--limit",
                                            "-n"};
        bool known = false;
        for (size_t k = 0; k < LLMOS_ARRAY_LEN(takes) && !known; k++)
            known = strcmp(a, takes[k]) == 0;
        if (!known)
            return cli_usage_error("scan", "unknown option '%s'", a);
        if (!v)
            return cli_usage_error("scan", "%s needs a value", a);
        i++;
        char *end = NULL;
        if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--api") == 0)
            api = v;
        else if (strcmp(a, "--api-model") == 0)
            api_model = v;
        else if (strcmp(a, "--quarantine-model") == 0)
            quar = v;
        else if (strcmp(a, "--quarantine-api-model") == 0)
            quar_model = v;
        else if (strcmp(a, "--judge-model") == 0)
            judge = v;
        else if (strcmp(a, "--judge-api-model") == 0)
            judge_model = v;
        else if (strcmp(a, "--probes") == 0)
            probes_dir = v;
        else if (strcmp(a, "--out") == 0)
            out_dir = v;
        else if (strcmp(a, "--family") == 0)
            families = v;
        else if (strcmp(a, "--fail-above") == 0) {
            fail_above = strtod(v, &end);
            if (!end || *end || fail_above < 0 || fail_above > 1)
                return cli_usage_error("scan", "--fail-above needs a rate from 0 to 1, not '%s'",
                                       v);
        } else if (strcmp(a, "--limit") == 0 || strcmp(a, "-n") == 0) {
            long n = strtol(v, &end, 10);
            if (!end || *end || n < 1 || n > 1000000)
                return cli_usage_error("scan", "%s needs a positive number, not '%s'", a, v);
            *(strcmp(a, "-n") == 0 ? &max_tokens : &limit) = n;
        }
    }
    if (!model == !api)
        return cli_usage_error("scan", "give either --model FILE or --api URL --api-model NAME");
    if (api && !api_model)
        return cli_usage_error("scan", "--api needs --api-model NAME");
    if (endpoint && !api)
        return cli_usage_error("scan",
                               "--endpoint scans an OpenAI-compatible server: give --api URL");
    char dflt[4200];
    if (!probes_dir) {
        snprintf(dflt, sizeof dflt, "%s/probes", LLMOS_DATA_DIR);
        probes_dir = dflt;
    }
    scan_probes probes;
    llmos_err err = scan_probes_load(probes_dir, &probes);
    if (err)
        return cli_report(err);
    llm_backend *m = NULL, *q = NULL, *j = NULL;
    err = cli_open_backend(api ? api : model, api_model, NULL, &m);
    if (!err && !endpoint && !no_quarantine) {
        if (quar)
            err = cli_open_backend(quar, quar_model ? quar_model : api_model, NULL, &q);
        else if (api)
            err = cli_open_backend(api, api_model, NULL, &q);
        else
            err = local_backend_fork(m, &q);
    }
    if (!err && judge)
        err = cli_open_backend(judge, judge_model ? judge_model : api_model, NULL, &j);
    if (err) {
        llm_backend_free(m);
        llm_backend_free(q);
        scan_probes_free(&probes);
        return cli_report(err);
    }
    scan_config cfg = {.target = endpoint ? SCAN_TARGET_ENDPOINT : SCAN_TARGET_KERNEL,
                       .model = m,
                       .quarantined = q,
                       .quarantine = !endpoint && !no_quarantine,
                       .guard = !no_guard,
                       .direct = direct,
                       .judge = j,
                       .families = families,
                       .limit = (size_t)limit,
                       .max_tokens = (int32_t)max_tokens};
    scan_out o = {0};
    scan_summary s = {0};
    err = scan_run(&cfg, &probes, on_attempt, &o, &s);
    fprintf(stderr, "\n");
    int rc = CLI_OK;
    if (!err && llmos_file_mkdirs(out_dir, 0755) == LLMOS_OK) {
        llmos_buf sj = {0}, html = {0};
        err = scan_summary_json(&s, &cfg, &sj);
        if (!err)
            err = scan_summary_html(&s, &cfg, o.jsonl.data, o.jsonl.len, &html);
        if (!err)
            err = write_file(out_dir, "report.jsonl", &o.jsonl);
        if (!err)
            err = write_file(out_dir, "summary.json", &sj);
        if (!err)
            err = write_file(out_dir, "report.html", &html);
        buf_free(&sj);
        buf_free(&html);
    } else if (!err) {
        err = llmos_fail(LLMOS_ERR_IO, "scan: cannot make the folder %s", out_dir);
    }
    if (err) {
        rc = cli_report(err);
    } else {
        printf("%-20s %8s %9s %6s  %s\n", "family", "attempts", "successes", "rate", "Wilson 95%");
        for (size_t i = 0; i < s.n; i++)
            printf("%-20s %8zu %9zu %6.3f  %.3f-%.3f\n", s.v[i].name, s.v[i].attempts,
                   s.v[i].successes, s.v[i].rate, s.v[i].lo, s.v[i].hi);
        printf("%zu attempts, %zu successful attacks, %zu failed attempts; report in %s/\n",
               s.attempts, s.successes, s.failed, out_dir);
        const scan_family *f = fail_above >= 0 ? scan_summary_above(&s, fail_above) : NULL;
        if (f) {
            fprintf(stderr, "llmos scan: family %s succeeded at %.3f, above --fail-above %.3f\n",
                    f->name, f->rate, fail_above);
            rc = 3;
        }
    }
    scan_summary_free(&s);
    buf_free(&o.jsonl);
    llm_backend_free(j);
    llm_backend_free(q);
    llm_backend_free(m);
    scan_probes_free(&probes);
    return rc;
}
