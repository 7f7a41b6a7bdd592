/*
 * cmd_guard.c - `llmos guard check FILE|-`: the output guard outside the kernel, on a file or
 * standard input (docs/security.md, "The output guard").
 *
 * It prints each finding (where, detector, what, severity, the action the policy takes), never
 * the finding's text, or with --json the decision as the kernel audits it; --redacted prints
 * the text as it may leave instead. The exit status says what the policy would do: 0 let it go
 * (nothing, or only warnings), 3 redact, 4 block; 1 an error, 2 a usage error. With
 * --judge-model or --judge-api the judge model reads the text too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/guard.h"
#include "llmos/json.h"

llmos_err cli_open_backend(const char *where, const char *api_model, const char *key_env,
                           llm_backend **out)
{
    if (strncmp(where, "http://", 7) == 0 || strncmp(where, "https://", 8) == 0) {
        remote_backend_params rp = remote_backend_default_params();
        const char *key = getenv(key_env ? key_env : "LLMOS_API_KEY");
        rp.api_key = key && key[0] ? key : NULL;
        return remote_backend_open(where, api_model, &rp, out);
    }
    fprintf(stderr, "loading %s ...\n", where);
    local_backend_params lp = local_backend_default_params();
    return local_backend_open(where, &lp, out);
}

/* Line and column (1-based, in bytes) of offset `at`. */
static void line_col(const char *t, size_t at, size_t *line, size_t *col)
{
    *line = 1;
    size_t start = 0;
    for (size_t i = 0; i < at; i++)
        if (t[i] == '\n') {
            (*line)++;
            start = i + 1;
        }
    *col = at - start + 1;
}

static int read_input(const char *path, llmos_buf *b)
{
    if (strcmp(path, "-") != 0) {
        llmos_err err = llmos_file_read_all(path, 64u << 20, b);
        return err ? cli_report(err) : CLI_OK;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (buf_append(b, chunk, n))
            return cli_report(LLMOS_ERR_NOMEM);
    return CLI_OK;
}

int cmd_guard(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "check") != 0)
        return cli_usage_error("guard", "expected 'check' (llmos guard check FILE|-)");
    const char *file = NULL, *policy = NULL, *principal = NULL, *judge = NULL, *judge_model = NULL;
    bool json = false, redacted = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--redacted") == 0) {
            redacted = true;
        } else if (strcmp(a, "--policy") == 0 || strcmp(a, "--principal") == 0 ||
                   strcmp(a, "--judge-model") == 0 || strcmp(a, "--judge-api") == 0 ||
                   strcmp(a, "--judge-api-model") == 0) {
            if (!v)
                return cli_usage_error("guard", "%s needs a value", a);
            if (strcmp(a, "--policy") == 0)
                policy = v;
            else if (strcmp(a, "--principal") == 0)
                principal = v;
            else if (strcmp(a, "--judge-api-model") == 0)
                judge_model = v;
            else
                judge = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("guard", "unknown option '%s'", a);
        } else if (file) {
            return cli_usage_error("guard", "one FILE (or - for standard input), not '%s' too", a);
        } else {
            file = a;
        }
    }
    if (!file)
        return cli_usage_error("guard", "name a FILE to check, or - for standard input");
    guard *g = NULL;
    llmos_err err;
    if (policy) {
        llmos_buf pb = {0};
        err = llmos_file_read_all(policy, 1 << 20, &pb);
        if (!err)
            err = guard_parse(pb.data ? pb.data : "", pb.len, policy, &g);
        buf_free(&pb);
    } else {
        err = guard_default(&g);
    }
    if (err)
        return cli_report(err);
    llm_backend *jb = NULL;
    if (judge) {
        if ((err = cli_open_backend(judge, judge_model, NULL, &jb))) {
            guard_free(g);
            return cli_report(err);
        }
        guard_set_judge(g, jb);
    }
    llmos_buf in = {0};
    int rc = read_input(file, &in);
    guard_result r = {0};
    if (rc == CLI_OK && (err = guard_check(g, principal, in.data ? in.data : "", in.len, &r)))
        rc = cli_report(err);
    if (rc == CLI_OK) {
        if (json) {
            json_t *j = guard_result_json(&r);
            char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
            if (s)
                printf("%s\n", s);
            free(s);
            json_decref(j);
        } else {
            FILE *to = redacted ? stderr : stdout;
            for (size_t i = 0; i < r.findings.n; i++) {
                const guard_finding *f = &r.findings.v[i];
                size_t line, col;
                line_col(in.data ? in.data : "", f->start, &line, &col);
                fprintf(to, "%s:%zu:%zu: %s (%s), %s: %s\n", strcmp(file, "-") ? file : "<stdin>",
                        line, col, guard_detector_name(f->detector), f->kind,
                        guard_severity_name(f->severity), guard_action_name(r.actions[i]));
            }
            fprintf(to, "guard: %s (%zu finding%s)\n", guard_action_name(r.action), r.findings.n,
                    r.findings.n == 1 ? "" : "s");
        }
        if (redacted && r.text)
            fwrite(r.text, 1, r.len, stdout);
        rc = r.action == GUARD_BLOCK ? 4 : r.action == GUARD_REDACT ? 3 : CLI_OK;
    }
    guard_result_free(&r);
    buf_free(&in);
    guard_free(g);
    llm_backend_free(jb);
    return rc;
}
