/*
 * test_guard_samples.c - precision and recall of the output guard's rule detectors on llmos's
 * own labelled samples (tests/data/guard/samples.jsonl, written by gen_samples.py beside it:
 * findings in varied contexts and near misses such as card numbers that fail Luhn, IBANs with
 * wrong check digits, placeholders shaped like keys, public keys, words and identifiers).
 *
 * For each detector a sample is positive when its labels name the detector; the detector fires
 * when guard_scan reports a finding of it. Precision and recall are printed per detector (the
 * table in docs/security.md) and each must be at least 0.95. At least 200 samples with a
 * finding and 200 without are required, so the figures rest on enough of both. The samples that
 * a detector gets wrong are printed, to see why. heldout.jsonl has the same shapes with other
 * random values (gen_samples.py 1919 heldout.jsonl) and was never used to correct the
 * detectors; it must meet the same floor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/guard.h"
#include "llmos/json.h"
#include "testutil.h"

#define RULE_DETECTORS GUARD_JUDGE /* every detector before the judge is rule-based */

static void check_file(const char *name)
{
    const char *src = getenv("LLMOS_SRC");
    if (!src)
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/guard/%s", src, name);
    print_message("== %s\n", name);
    llmos_buf b = {0};
    assert_int_equal(llmos_file_read_all(path, 16u << 20, &b), LLMOS_OK);
    assert_int_equal(buf_putc(&b, 0), LLMOS_OK);
    int tp[RULE_DETECTORS] = {0}, fp[RULE_DETECTORS] = {0}, fn[RULE_DETECTORS] = {0},
        pos[RULE_DETECTORS] = {0};
    int with = 0, without = 0;
    for (char *line = b.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        json_t *s = json_loads(line, 0, NULL);
        assert_non_null(s);
        const char *text = ljson_get_string(s, "text", "");
        json_t *labels = json_object_get(s, "labels");
        bool want[RULE_DETECTORS] = {0}, got[RULE_DETECTORS] = {0};
        size_t i;
        json_t *l;
        json_array_foreach(labels, i, l)
        {
            guard_detector d;
            assert_true(guard_detector_parse(json_string_value(l), &d));
            assert_true(d < RULE_DETECTORS);
            want[d] = true;
        }
        if (json_array_size(labels))
            with++;
        else
            without++;
        guard_findings f = {0};
        assert_int_equal(guard_scan(text, strlen(text), NULL, 0, &f), LLMOS_OK);
        for (size_t k = 0; k < f.n; k++)
            got[f.v[k].detector] = true;
        guard_findings_free(&f);
        for (int d = 0; d < RULE_DETECTORS; d++) {
            pos[d] += want[d];
            tp[d] += want[d] && got[d];
            fp[d] += !want[d] && got[d];
            fn[d] += want[d] && !got[d];
            if (want[d] != got[d])
                print_message("%s %s: %s\n", want[d] ? "missed" : "false alarm",
                              guard_detector_name((guard_detector)d), text);
        }
        json_decref(s);
    }
    buf_free(&b);
    print_message("%d samples with a finding, %d without\n", with, without);
    print_message("| detector | positives | precision | recall |\n|---|---|---|---|\n");
    bool ok = with >= 200 && without >= 200;
    for (int d = 0; d < RULE_DETECTORS; d++) {
        double p = tp[d] + fp[d] ? (double)tp[d] / (tp[d] + fp[d]) : 0;
        double r = pos[d] ? (double)tp[d] / pos[d] : 0;
        print_message("| %s | %d | %.3f | %.3f |\n", guard_detector_name((guard_detector)d), pos[d],
                      p, r);
        if (pos[d] < 12 || p < 0.95 || r < 0.95)
            ok = false;
    }
    assert_true(ok);
}

/* The samples the detectors were corrected against. */
static void test_samples(void **state)
{
    (void)state;
    check_file("samples.jsonl");
}

/* The same shapes with other random values (another seed), never used to correct them. */
static void test_heldout(void **state)
{
    (void)state;
    check_file("heldout.jsonl");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samples),
        cmocka_unit_test(test_heldout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
