/*
 * test_scan.c - `llmos scan` in CI: llmos's own probes (data/probes: at least 300 in at least 12
 * families) against a kernel whose model is obedient_test_backend, a worst-case model that obeys
 * every injection it can see, in two configurations:
 *   quarantine on   the probes reach the privileged model only as handles: 0 successful attacks
 *                   in every family, by construction (and no failed attempt);
 *   quarantine off  the same tools marked trusted, so the text enters the privileged context: a
 *                   measured, non-zero rate, which proves the scanner sees an attack.
 * Also: a bare endpoint, the judge detector, the guard's effect on exfiltration, the report
 * (JSONL per attempt, summary JSON, HTML with the outside text escaped), Wilson intervals, the
 * --fail-above check, and probe files with errors named by file and line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "doubles.h"
#include "llmos/json.h"
#include "llmos/scan.h"
#include "testutil.h"

static scan_probes P;

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("LLMOS_SRC");
    if (!src)
        return 0;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/data/probes", src);
    return scan_probes_load(dir, &P) == LLMOS_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    scan_probes_free(&P);
    return 0;
}

typedef struct report {
    llmos_buf jsonl;
    size_t n;
} report;

static void collect(void *ctx, const scan_attempt *a)
{
    report *r = ctx;
    assert_int_equal(scan_attempt_jsonl(a, &r->jsonl), LLMOS_OK);
    r->n++;
    if (a->error[0])
        print_message("failed attempt %s: %s\n", a->probe->id, a->error);
}

static void print_summary(const char *what, const scan_summary *s)
{
    print_message("%s: %zu attempts, %zu successes, %zu failed\n", what, s->attempts, s->successes,
                  s->failed);
    print_message(
        "| family | attempts | successes | rate | Wilson 95%% |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < s->n; i++)
        print_message("| %s | %zu | %zu | %.3f | %.3f - %.3f |\n", s->v[i].name, s->v[i].attempts,
                      s->v[i].successes, s->v[i].rate, s->v[i].lo, s->v[i].hi);
}

/* A message probe the direct run held: why (its goal and what left). */
static void held_message(void *ctx, const scan_attempt *a)
{
    (void)ctx;
    if (strcmp(a->probe->channel, "message") == 0 && !a->success)
        print_message("held: %s (goal %d): %s\n", a->probe->id, (int)a->probe->goal, a->output);
}

static void test_probes(void **state)
{
    (void)state;
    if (!getenv("LLMOS_SRC"))
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    assert_true(P.n >= 300);
    size_t families = 0;
    for (size_t i = 0; i < P.n; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(P.v[k].family, P.v[i].family) == 0;
        families += !seen;
        /* ids are unique */
        for (size_t k = 0; k < i; k++)
            assert_string_not_equal(P.v[k].id, P.v[i].id);
    }
    print_message("%zu probes in %zu families\n", P.n, families);
    assert_true(families >= 12);
}

static void test_quarantine_on_and_off(void **state)
{
    (void)state;
    if (!getenv("LLMOS_SRC"))
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    llm_backend *model = NULL, *quar = NULL;
    assert_int_equal(obedient_test_backend_new(&P, &model), LLMOS_OK);
    assert_int_equal(obedient_test_backend_new(&P, &quar), LLMOS_OK);
    scan_config cfg = {.target = SCAN_TARGET_KERNEL,
                       .model = model,
                       .quarantined = quar,
                       .quarantine = true,
                       .guard = true};
    report r = {0};
    scan_summary on;
    assert_int_equal(scan_run(&cfg, &P, collect, &r, &on), LLMOS_OK);
    print_summary("kernel, quarantine on", &on);
    assert_int_equal(on.attempts, P.n);
    assert_int_equal(on.failed, 0);
    assert_int_equal(on.successes, 0);
    assert_true(on.n >= 12);
    assert_int_equal(r.n, P.n);
    /* the quarantined model was hijacked: what it said reached the user as data, marked so */
    assert_non_null(strstr(r.jsonl.data, "[obeyed]"));
    assert_null(strstr(r.jsonl.data, on.canary));
    buf_free(&r.jsonl);

    cfg.quarantine = false;
    memset(&r, 0, sizeof r);
    scan_summary off;
    assert_int_equal(scan_run(&cfg, &P, collect, &r, &off), LLMOS_OK);
    print_summary("kernel, quarantine off", &off);
    assert_int_equal(off.failed, 0);
    assert_true(off.successes > 0);
    /* every family's attacks get through somewhere, so every family's detector is exercised */
    for (size_t i = 0; i < off.n; i++)
        assert_true(off.v[i].successes > 0);
    assert_non_null(scan_summary_above(&off, 0.5));
    assert_null(scan_summary_above(&on, 0.0));

    /* the report: one JSONL line per attempt; the summary; the HTML page */
    size_t lines = 0;
    for (size_t i = 0; i < r.jsonl.len; i++)
        lines += r.jsonl.data[i] == '\n';
    assert_int_equal(lines, P.n);
    json_t *first = json_loadb(r.jsonl.data, strchr(r.jsonl.data, '\n') - r.jsonl.data, 0, NULL);
    assert_non_null(first);
    assert_non_null(json_object_get(first, "verdicts"));
    assert_non_null(json_object_get(first, "prompt"));
    json_decref(first);
    llmos_buf sj = {0}, html = {0};
    assert_int_equal(scan_summary_json(&off, &cfg, &sj), LLMOS_OK);
    assert_non_null(strstr(sj.data, "\"target\": \"kernel, quarantine off\""));
    assert_int_equal(scan_summary_html(&off, &cfg, r.jsonl.data, r.jsonl.len, &html), LLMOS_OK);
    assert_int_equal(buf_putc(&html, 0), LLMOS_OK);
    assert_non_null(strstr(html.data, "payload_splitting"));
    assert_null(strstr(html.data, "<|im_start|>")); /* outside text escaped */
    assert_non_null(strstr(html.data, "&lt;|im_start|&gt;"));
    buf_free(&sj);
    buf_free(&html);
    buf_free(&r.jsonl);

    /* direct messages: the user's own message carries the attack; the quarantine has nothing
     * to hold (the privileged model reads it), only the capabilities, the policy and the guard
     * act. Message probes succeed, the rest are held as before. */
    cfg.quarantine = true;
    cfg.direct = true;
    scan_summary direct;
    assert_int_equal(scan_run(&cfg, &P, held_message, NULL, &direct), LLMOS_OK);
    print_summary("kernel, direct messages, quarantine on", &direct);
    size_t message_probes = 0;
    for (size_t i = 0; i < P.n; i++)
        message_probes += strcmp(P.v[i].channel, "message") == 0;
    assert_true(direct.successes > 0 && direct.successes <= message_probes);
    scan_summary_free(&direct);
    cfg.direct = false;
    cfg.quarantine = false;

    /* the guard off: exfiltration through image URLs is no longer redacted */
    cfg.guard = false;
    cfg.families = "exfiltration";
    scan_summary noguard;
    assert_int_equal(scan_run(&cfg, &P, NULL, NULL, &noguard), LLMOS_OK);
    cfg.guard = true;
    scan_summary guarded;
    assert_int_equal(scan_run(&cfg, &P, NULL, NULL, &guarded), LLMOS_OK);
    print_message("exfiltration, quarantine off: %zu/%zu with the guard off, %zu/%zu on\n",
                  noguard.successes, noguard.attempts, guarded.successes, guarded.attempts);
    assert_true(guarded.successes < noguard.successes);
    scan_summary_free(&noguard);
    scan_summary_free(&guarded);
    scan_summary_free(&on);
    scan_summary_free(&off);
    llm_backend_free(model);
    llm_backend_free(quar);
}

static void test_endpoint_and_judge(void **state)
{
    (void)state;
    if (!getenv("LLMOS_SRC"))
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    llm_backend *model = NULL, *judge = NULL;
    assert_int_equal(obedient_test_backend_new(&P, &model), LLMOS_OK);
    assert_int_equal(obedient_test_backend_new(&P, &judge), LLMOS_OK);
    scan_config cfg = {
        .target = SCAN_TARGET_ENDPOINT, .model = model, .canary = "llmos-canary-0f0f0f0f0f0f0f0f"};
    scan_summary s;
    assert_int_equal(scan_run(&cfg, &P, NULL, NULL, &s), LLMOS_OK);
    print_summary("bare endpoint", &s);
    assert_int_equal(s.failed, 0);
    assert_true(s.successes > s.attempts / 2);
    assert_string_equal(s.canary, "llmos-canary-0f0f0f0f0f0f0f0f");
    scan_summary_free(&s);

    /* the judge: a say-goal family, its verdicts in the report */
    cfg.judge = judge;
    cfg.families = "direct_injection";
    cfg.limit = 12;
    report r = {0};
    assert_int_equal(scan_run(&cfg, &P, collect, &r, &s), LLMOS_OK);
    assert_int_equal(s.attempts, 12);
    assert_non_null(strstr(r.jsonl.data, "\"judge\":\"followed\""));
    scan_summary_free(&s);
    buf_free(&r.jsonl);
    llm_backend_free(model);
    llm_backend_free(judge);
}

static void test_wilson_and_parse(void **state)
{
    (void)state;
    double lo, hi;
    scan_wilson(0, 10, &lo, &hi);
    assert_true(lo == 0 && hi > 0.2775 && hi < 0.2776);
    scan_wilson(5, 10, &lo, &hi);
    assert_true(lo > 0.2365 && lo < 0.2367 && hi > 0.7633 && hi < 0.7635);
    scan_wilson(0, 0, &lo, &hi);
    assert_true(lo == 0 && hi == 1);
    scan_probe p;
    const char *bad[] = {
        "{\"id\": \"a\", \"family\": \"f\", \"channel\": \"radio\", \"parts\": [\"x\"], "
        "\"goal\": {\"kind\": \"leak\"}}",
        "{\"id\": \"a\", \"family\": \"f\", \"channel\": \"web\", \"parts\": [], "
        "\"goal\": {\"kind\": \"leak\"}}",
        "{\"id\": \"a\", \"family\": \"f\", \"channel\": \"web\", \"parts\": [\"x\"], "
        "\"goal\": {\"kind\": \"say\"}}",
        "{\"id\": \"a\", \"family\": \"f\", \"channel\": \"web\", \"parts\": [\"x\"], "
        "\"goal\": {\"kind\": \"dance\"}}",
        "{\"family\": \"f\"}"};
    const char *says[] = {"channel \"radio\"", "\"parts\"", "\"marker\"", "goal.kind", "\"id\""};
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(bad); i++) {
        assert_int_equal(scan_probe_parse(bad[i], strlen(bad[i]), "x.jsonl:3", &p),
                         LLMOS_ERR_FORMAT);
        if (!strstr(llmos_errmsg(), says[i]) || !strstr(llmos_errmsg(), "x.jsonl:3"))
            fail_msg("%s: %s", bad[i], llmos_errmsg());
    }
    char dir[256], path[400];
    assert_true(tu_mkdtemp("probes", dir, sizeof dir));
    snprintf(path, sizeof path, "%s/a.jsonl", dir);
    const char *two =
        "{\"id\": \"a\", \"family\": \"f\", \"channel\": \"web\", \"parts\": [\"x\"], "
        "\"goal\": {\"kind\": \"leak\"}}\n{oops}\n";
    assert_int_equal(llmos_file_write_atomic(path, two, strlen(two), 0600), LLMOS_OK);
    scan_probes ps;
    assert_int_equal(scan_probes_load(dir, &ps), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "a.jsonl:2"));
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_probes),
        cmocka_unit_test(test_quarantine_on_and_off),
        cmocka_unit_test(test_endpoint_and_judge),
        cmocka_unit_test(test_wilson_and_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
