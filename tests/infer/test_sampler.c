/*
 * test_sampler.c - the sampler chain: greedy and its tie rule, seeded reproducibility, the
 * drawn distribution matching softmax(logits / T), top-k / top-p / min-p cut-offs, the three
 * penalties and their window, and the parameter checks.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/infer.h"

static llmos_sampler *make(sampler_params p, uint32_t n_vocab)
{
    llmos_sampler *s = NULL;
    assert_int_equal(sampler_new(&p, n_vocab, &s), LLMOS_OK);
    return s;
}

static sampler_params plain(float temp)
{
    sampler_params p = sampler_default_params();
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1;
    p.min_p = 0;
    return p;
}

static void test_greedy(void **state)
{
    (void)state;
    llmos_sampler *s = make(plain(0), 5);
    float logits[5] = {0.1f, 3.0f, -2.0f, 3.0f, 2.9f};
    assert_int_equal(sampler_sample(s, logits), 1); /* tie between 1 and 3: lowest id */
    logits[3] = 3.5f;
    assert_int_equal(sampler_sample(s, logits), 3);
    assert_float_equal(logits[3], 3.5f, 0); /* input untouched */
    sampler_free(s);
}

static void test_seed_reproducible(void **state)
{
    (void)state;
    float logits[64];
    for (int i = 0; i < 64; i++)
        logits[i] = (float)(i % 7) * 0.3f;
    sampler_params p = plain(1.0f);
    p.seed = 1234;
    llmos_sampler *a = make(p, 64), *b = make(p, 64);
    p.seed = 1235;
    llmos_sampler *c = make(p, 64);
    int32_t first[100];
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        first[i] = sampler_sample(a, logits);
        assert_int_equal(first[i], sampler_sample(b, logits));
        differ += first[i] != sampler_sample(c, logits);
    }
    assert_true(differ > 50); /* another seed is another stream */
    sampler_reset(a);         /* reset replays the stream from the seed */
    for (int i = 0; i < 100; i++)
        assert_int_equal(sampler_sample(a, logits), first[i]);
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

static void test_distribution(void **state)
{
    (void)state;
    /* logits log(0.5), log(0.3), log(0.2): at T=1 the draws follow those probabilities; at
     * T=2 they follow sqrt of them, renormalised */
    float logits[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
    for (int pass = 0; pass < 2; pass++) {
        float temp = pass ? 2.0f : 1.0f;
        sampler_params p = plain(temp);
        p.seed = 7;
        llmos_sampler *s = make(p, 3);
        int counts[3] = {0};
        enum { N = 30000 };
        for (int i = 0; i < N; i++)
            counts[sampler_sample(s, logits)]++;
        double w[3], sum = 0;
        for (int i = 0; i < 3; i++)
            sum += w[i] = pow(exp(logits[i]), 1.0 / temp);
        for (int i = 0; i < 3; i++)
            assert_float_equal((double)counts[i] / N, w[i] / sum, 0.015);
        sampler_free(s);
    }
}

static void test_top_k(void **state)
{
    (void)state;
    float logits[6] = {1.0f, 5.0f, 4.9f, 0.0f, 4.8f, -1.0f};
    sampler_params p = plain(100.0f); /* near-uniform among survivors */
    p.top_k = 2;
    llmos_sampler *s = make(p, 6);
    int seen[6] = {0};
    for (int i = 0; i < 2000; i++)
        seen[sampler_sample(s, logits)]++;
    assert_true(seen[1] > 0 && seen[2] > 0);
    assert_int_equal(seen[0] + seen[3] + seen[4] + seen[5], 0);
    sampler_free(s);
}

static void test_top_p(void **state)
{
    (void)state;
    /* probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 keeps {0, 1} (0.5 < 0.75 <= 0.8) */
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    sampler_params p = plain(1.0f);
    p.top_p = 0.75f;
    llmos_sampler *s = make(p, 4);
    int seen[4] = {0};
    for (int i = 0; i < 4000; i++)
        seen[sampler_sample(s, logits)]++;
    assert_true(seen[0] > 0 && seen[1] > 0);
    assert_int_equal(seen[2] + seen[3], 0);
    /* the survivors are renormalised: 0.5 / 0.8 of the draws are token 0 */
    assert_float_equal(seen[0] / 4000.0, 0.625, 0.03);
    sampler_free(s);
}

static void test_min_p(void **state)
{
    (void)state;
    /* min_p 0.5 of p_max 0.5 keeps p >= 0.25: tokens 0 and 1 only */
    float logits[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    sampler_params p = plain(1.0f);
    p.min_p = 0.5f;
    llmos_sampler *s = make(p, 4);
    int seen[4] = {0};
    for (int i = 0; i < 4000; i++)
        seen[sampler_sample(s, logits)]++;
    assert_true(seen[0] > 0 && seen[1] > 0);
    assert_int_equal(seen[2] + seen[3], 0);
    sampler_free(s);
}

static void test_repeat_penalty(void **state)
{
    (void)state;
    sampler_params p = plain(0);
    p.repeat_penalty = 1.25f;
    p.penalty_last_n = 2;
    llmos_sampler *s = make(p, 3);
    float logits[3] = {2.0f, 1.8f, -1.0f};
    assert_int_equal(sampler_sample(s, logits), 0);
    sampler_accept(s, 0); /* 2.0 / 1.25 = 1.6 < 1.8 */
    assert_int_equal(sampler_sample(s, logits), 1);
    /* negative logits are multiplied: -0.1 * 1.25 = -0.125 < -0.11 */
    float neg[3] = {-0.1f, -0.11f, -5.0f};
    assert_int_equal(sampler_sample(s, neg), 1);
    /* the window forgets: after two other tokens, 0 is no longer penalised */
    sampler_accept(s, 2);
    sampler_accept(s, 2);
    assert_int_equal(sampler_sample(s, logits), 0);
    sampler_free(s);
}

static void test_frequency_presence(void **state)
{
    (void)state;
    sampler_params p = plain(0);
    p.frequency_penalty = 0.3f;
    llmos_sampler *s = make(p, 2);
    float logits[2] = {1.0f, 0.5f};
    sampler_accept(s, 0);
    assert_int_equal(sampler_sample(s, logits), 0); /* 1.0 - 0.3 = 0.7 > 0.5 */
    sampler_accept(s, 0);
    assert_int_equal(sampler_sample(s, logits), 1); /* 1.0 - 0.6 = 0.4 < 0.5 */
    sampler_free(s);

    p = plain(0);
    p.presence_penalty = 0.4f;
    s = make(p, 2);
    for (int i = 0; i < 5; i++)
        sampler_accept(s, 0); /* presence counts once: 1.0 - 0.4 = 0.6 > 0.5 */
    assert_int_equal(sampler_sample(s, logits), 0);
    sampler_free(s);
}

static void test_invalid_params(void **state)
{
    (void)state;
    llmos_sampler *s = (llmos_sampler *)&s;
    sampler_params p = sampler_default_params();
    p.top_p = 1.5f;
    assert_int_equal(sampler_new(&p, 10, &s), LLMOS_ERR_INVALID);
    assert_null(s);
    assert_non_null(strstr(llmos_errmsg(), "top_p"));
    p = sampler_default_params();
    p.repeat_penalty = 0;
    assert_int_equal(sampler_new(&p, 10, &s), LLMOS_ERR_INVALID);
    p = sampler_default_params();
    assert_int_equal(sampler_new(&p, 0, &s), LLMOS_ERR_INVALID);
    sampler_free(NULL);
}

static void test_rng(void **state)
{
    (void)state;
    sampler_rng a, b;
    sampler_rng_seed(&a, 42);
    sampler_rng_seed(&b, 42);
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        float f = sampler_rng_float(&a);
        assert_true(f >= 0 && f < 1);
        assert_true(f == sampler_rng_float(&b));
        sum += f;
    }
    assert_float_equal(sum / 10000, 0.5, 0.02);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),         cmocka_unit_test(test_seed_reproducible),
        cmocka_unit_test(test_distribution),   cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),          cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_repeat_penalty), cmocka_unit_test(test_frequency_presence),
        cmocka_unit_test(test_invalid_params), cmocka_unit_test(test_rng),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
