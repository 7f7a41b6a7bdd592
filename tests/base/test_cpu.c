/* test_cpu.c - CPU feature detection agrees with the kernel's view and is self-consistent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/base.h"

/* Does /proc/cpuinfo's flags line list `flag`? -1 when it cannot be read. */
static int proc_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return -1;
    char line[8192];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0)
            continue;
        found = 0;
        char pat[64];
        snprintf(pat, sizeof pat, " %s", flag);
        for (char *p = strstr(line, pat); p; p = strstr(p + 1, pat)) {
            char end = p[strlen(pat)];
            if (end == ' ' || end == '\n' || end == '\0') {
                found = 1;
                break;
            }
        }
        break;
    }
    fclose(f);
    return found;
}

static void test_matches_proc_cpuinfo(void **state)
{
    (void)state;
    const llmos_cpu *c = llmos_cpu_features();
    if (proc_has("avx2") < 0)
        skip();
    /* the kernel only lists features it enables, which is what we check too */
    assert_int_equal(c->avx2, proc_has("avx2") == 1);
    assert_int_equal(c->fma, proc_has("fma") == 1);
    assert_int_equal(c->f16c, proc_has("f16c") == 1);
    assert_int_equal(c->avx512f, proc_has("avx512f") == 1);
    assert_int_equal(c->avx512bw, proc_has("avx512bw") == 1);
    assert_int_equal(c->avx512vnni, proc_has("avx512_vnni") == 1);
    assert_int_equal(c->avx512bf16, proc_has("avx512_bf16") == 1);
    if (c->amx_tile)
        assert_int_equal(proc_has("amx_tile"), 1);
}

static void test_consistent(void **state)
{
    (void)state;
    const llmos_cpu *c = llmos_cpu_features();
    assert_ptr_equal(c, llmos_cpu_features()); /* cached */
    assert_true(c->n_cpus >= 1);
    assert_true(strlen(c->brand) > 0);
    if (c->avx512bw || c->avx512vnni)
        assert_true(c->avx512f);
    if (c->amx_int8 || c->amx_bf16)
        assert_true(c->amx_tile);
    char s[256];
    llmos_cpu_features_string(c, s, sizeof s);
    assert_true(strlen(s) > 0);
    if (c->avx2)
        assert_non_null(strstr(s, "avx2"));
    char tiny[6];
    llmos_cpu_features_string(c, tiny, sizeof tiny); /* truncates without overflow */
    assert_true(strlen(tiny) < sizeof tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_proc_cpuinfo),
        cmocka_unit_test(test_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
