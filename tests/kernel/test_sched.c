/*
 * test_sched.c - the scheduler in front of the model, through sessions: with one slot one
 * request holds the model at a time and the next goes to the principal served longest ago (a
 * principal with three requests queued does not make another wait for all three); with two
 * slots two run at once and never more; a principal of higher priority gets its share (twice
 * the turns per step of priority); a tokens-per-minute limit refuses a request and throttles a
 * process; a full queue is refused at once (LLMOS_ERR_BUSY); a waiter whose client went away
 * gives up; the stats say what happens.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "doubles.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"
#include "testutil.h"

/* Every answer takes about 150 ms (3 pieces, 50 ms apart). */
static const char *const slow[] = {"{\"content\": \"abc\", \"pieces\": 3, \"delay_ms\": 50}"};

typedef struct rig {
    memory *mem;
    llm_backend *b;
    kernel *k;
    ksession *alice, *bob, *carol;
} rig;

/* A kernel over the slow script with `slots` model slots; alice gets `alice_limits`. */
static void rig_open_with(rig *r, size_t max_queue, size_t slots, const char *const *script,
                          klimits alice_limits)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(memory_open_ephemeral(&r->mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(script, 1, true, &r->b), LLMOS_OK);
    kernel_config c = {.st = memory_store(r->mem),
                       .privileged = r->b,
                       .max_queue = max_queue,
                       .model_slots = slots};
    assert_int_equal(kernel_new(&c, &r->k), LLMOS_OK);
    ksession_params p = {.principal = "alice",
                         .device = "test",
                         .rights = KRIGHT_CHAT | KRIGHT_PROCESS,
                         .caps = KCAP_COMPUTE | KCAP_MESSAGE,
                         .limits = alice_limits};
    assert_int_equal(ksession_open(r->k, &p, &r->alice), LLMOS_OK);
    p.limits = (klimits){0};
    p.principal = "bob";
    assert_int_equal(ksession_open(r->k, &p, &r->bob), LLMOS_OK);
    p.principal = "carol";
    assert_int_equal(ksession_open(r->k, &p, &r->carol), LLMOS_OK);
}

static void rig_open(rig *r, size_t max_queue)
{
    rig_open_with(r, max_queue, 1, slow, (klimits){0});
}

static void rig_close(rig *r)
{
    ksession_close(r->alice);
    ksession_close(r->bob);
    ksession_close(r->carol);
    kernel_free(r->k);
    llm_backend_free(r->b);
    memory_close(r->mem);
}

typedef struct job {
    ksession *s;
    double t0;
    llmos_err err;
    double done;
    atomic_bool *cancel;
    bool gone; /* the probe says the client went away */
} job;

static bool probe(void *ctx, const char *text, size_t len)
{
    job *j = ctx;
    (void)text;
    return len > 0 || !j->gone;
}

static void *chat(void *arg)
{
    job *j = arg;
    json_t *msgs = json_pack("[{s:s, s:s}]", "role", "user", "content", "hi");
    llm_request rq = llm_request_default();
    rq.messages = msgs;
    rq.cancel = j->cancel;
    llm_response resp = {0};
    j->err = ksession_chat(j->s, &rq, probe, j, &resp);
    j->done = llmos_time_now() - j->t0;
    llm_response_free(&resp);
    json_decref(msgs);
    return NULL;
}

/* Wait until the scheduler shows `busy` and `waiting` (the threads have taken their places). */
static void wait_for(kernel *k, size_t waiting)
{
    for (int i = 0; i < 2000; i++) {
        ksched_stats st = kernel_sched_stats(k);
        if (st.busy && st.waiting == waiting)
            return;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    fail_msg("the scheduler never had %zu waiting", waiting);
}

static void test_fair_between_principals(void **state)
{
    (void)state;
    rig r;
    rig_open(&r, 0);
    double t0 = llmos_time_now();
    /* alice's first holds the model; her second and third wait; then bob's comes */
    job jobs[4] = {{.s = r.alice, .t0 = t0},
                   {.s = r.alice, .t0 = t0},
                   {.s = r.alice, .t0 = t0},
                   {.s = r.bob, .t0 = t0}};
    pthread_t th[4];
    assert_int_equal(pthread_create(&th[0], NULL, chat, &jobs[0]), 0);
    wait_for(r.k, 0);
    assert_int_equal(pthread_create(&th[1], NULL, chat, &jobs[1]), 0);
    assert_int_equal(pthread_create(&th[2], NULL, chat, &jobs[2]), 0);
    wait_for(r.k, 2);
    assert_int_equal(pthread_create(&th[3], NULL, chat, &jobs[3]), 0);
    wait_for(r.k, 3);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(jobs[i].err, LLMOS_OK);
    /* bob's request is served second: before alice's second and third */
    print_message("done at: alice %.2f %.2f %.2f, bob %.2f s\n", jobs[0].done, jobs[1].done,
                  jobs[2].done, jobs[3].done);
    assert_true(jobs[3].done > jobs[0].done);
    assert_true(jobs[3].done < jobs[1].done);
    assert_true(jobs[3].done < jobs[2].done);
    /* one at a time: four answers of 150 ms take at least 600 ms */
    double last = jobs[0].done;
    for (int i = 1; i < 4; i++)
        last = jobs[i].done > last ? jobs[i].done : last;
    assert_true(last >= 0.55);
    ksched_stats st = kernel_sched_stats(r.k);
    assert_int_equal(st.served, 4);
    assert_int_equal(st.waiting, 0);
    assert_false(st.busy);
    assert_string_equal(st.model, "scripted-test");
    rig_close(&r);
}

static void test_full_queue_and_gone_clients(void **state)
{
    (void)state;
    rig r;
    rig_open(&r, 1);
    double t0 = llmos_time_now();
    /* one holds the model, one waits, the third finds the queue full */
    job jobs[3] = {{.s = r.alice, .t0 = t0}, {.s = r.alice, .t0 = t0}, {.s = r.bob, .t0 = t0}};
    pthread_t th[3];
    assert_int_equal(pthread_create(&th[0], NULL, chat, &jobs[0]), 0);
    wait_for(r.k, 0);
    assert_int_equal(pthread_create(&th[1], NULL, chat, &jobs[1]), 0);
    wait_for(r.k, 1);
    double asked = llmos_time_now();
    assert_int_equal(pthread_create(&th[2], NULL, chat, &jobs[2]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(jobs[0].err, LLMOS_OK);
    assert_int_equal(jobs[1].err, LLMOS_OK);
    assert_int_equal(jobs[2].err, LLMOS_ERR_BUSY);
    assert_true(jobs[2].done - (asked - t0) < 0.1); /* refused at once */
    assert_int_equal(kernel_sched_stats(r.k).rejected, 1);
    /* a waiter whose client goes away (the probe says so) gives up without the model */
    size_t before = kernel_sched_stats(r.k).served;
    job hold = {.s = r.alice, .t0 = llmos_time_now()};
    job gone = {.s = r.bob, .t0 = hold.t0, .gone = true};
    pthread_create(&th[0], NULL, chat, &hold);
    wait_for(r.k, 0);
    pthread_create(&th[1], NULL, chat, &gone);
    pthread_join(th[1], NULL);
    pthread_join(th[0], NULL);
    assert_int_equal(gone.err, LLMOS_ERR_CANCELLED);
    assert_true(gone.done < hold.done); /* gave up while the model was still held */
    assert_int_equal(kernel_sched_stats(r.k).served, before + 1);
    rig_close(&r);
}

/* Most calls running at once, sampled every millisecond until *stop. */
typedef struct watch {
    kernel *k;
    atomic_bool stop;
    size_t most;
} watch;

static void *watcher(void *arg)
{
    watch *w = arg;
    while (!atomic_load(&w->stop)) {
        ksched_stats st = kernel_sched_stats(w->k);
        if (st.running > w->most)
            w->most = st.running;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void test_two_slots_run_together(void **state)
{
    (void)state;
    rig r;
    rig_open_with(&r, 0, 2, slow, (klimits){0});
    assert_int_equal(kernel_sched_stats(r.k).slots, 2);
    watch w = {.k = r.k};
    atomic_init(&w.stop, false);
    pthread_t wt;
    assert_int_equal(pthread_create(&wt, NULL, watcher, &w), 0);
    double t0 = llmos_time_now();
    job jobs[4] = {{.s = r.alice, .t0 = t0},
                   {.s = r.bob, .t0 = t0},
                   {.s = r.alice, .t0 = t0},
                   {.s = r.bob, .t0 = t0}};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, chat, &jobs[i]), 0);
    double last = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].err, LLMOS_OK);
        last = jobs[i].done > last ? jobs[i].done : last;
    }
    atomic_store(&w.stop, true);
    pthread_join(wt, NULL);
    print_message("four 150 ms answers on two slots: all done at %.2f s; at most %zu at once\n",
                  last, w.most);
    /* two rounds of 150 ms, not four; and never a third call beside two */
    assert_true(last >= 0.28);
    assert_true(last < 0.55);
    assert_int_equal(w.most, 2);
    ksched_stats st = kernel_sched_stats(r.k);
    assert_int_equal(st.served, 4);
    assert_int_equal(st.running, 0);
    assert_false(st.busy);
    rig_close(&r);
}

/* Order of service: each chat takes a ticket when it ends (one slot: the order it was served). */
static atomic_int ticket;
typedef struct ordered {
    job j;
    int served_as;
} ordered;

static void *chat_ordered(void *arg)
{
    ordered *o = arg;
    chat(&o->j);
    o->served_as = atomic_fetch_add(&ticket, 1);
    return NULL;
}

static void test_priority_share(void **state)
{
    (void)state;
    rig r;
    rig_open_with(&r, 0, 1, slow, (klimits){.priority = 1});
    atomic_store(&ticket, 0);
    double t0 = llmos_time_now();
    /* carol holds the model while alice (priority 1) and bob (0) queue six requests each,
     * alternately, so arrival favours nobody */
    ordered hold = {.j = {.s = r.carol, .t0 = t0}};
    pthread_t ht, th[12];
    assert_int_equal(pthread_create(&ht, NULL, chat_ordered, &hold), 0);
    wait_for(r.k, 0);
    ordered o[12];
    for (int i = 0; i < 12; i++) {
        o[i] = (ordered){.j = {.s = i % 2 ? r.alice : r.bob, .t0 = t0}};
        assert_int_equal(pthread_create(&th[i], NULL, chat_ordered, &o[i]), 0);
        wait_for(r.k, (size_t)i + 1);
    }
    pthread_join(ht, NULL);
    int alice_first6 = 0;
    for (int i = 0; i < 12; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(o[i].j.err, LLMOS_OK);
        if (o[i].j.s == r.alice && o[i].served_as <= 6)
            alice_first6++;
    }
    print_message("of the first six served after carol, alice (priority 1) had %d\n", alice_first6);
    /* twice bob's share while both wait: four of the first six */
    assert_int_equal(alice_first6, 4);
    rig_close(&r);
}

typedef struct sender {
    ksession *s;
    int64_t pid;
    atomic_bool cancel;
    llmos_err err;
    kproc_state final;
} sender;

static void *send_one(void *arg)
{
    sender *x = arg;
    x->err = ksession_send(x->s, x->pid, "hello", NULL, NULL, &x->cancel, &x->final);
    return NULL;
}

static void test_tokens_per_minute(void **state)
{
    (void)state;
    static const char *const costly[] = {"{\"content\": \"ten tokens\", \"tokens\": 10}"};
    rig r;
    rig_open_with(&r, 0, 1, costly, (klimits){.tokens_per_minute = 5});
    job first = {.s = r.alice, .t0 = llmos_time_now()};
    chat(&first);
    assert_int_equal(first.err, LLMOS_OK);
    /* alice spent 10 of her 5 tokens: a request is refused, naming the limit and when */
    job second = {.s = r.alice, .t0 = llmos_time_now()};
    chat(&second);
    assert_int_equal(second.err, LLMOS_ERR_LIMIT);
    assert_non_null(strstr(llmos_errmsg(), "5 tokens a minute"));
    double retry = 0;
    assert_true(ksession_rate_limited(&retry));
    assert_true(retry > 50 && retry <= 60);
    /* bob is not alice */
    job other = {.s = r.bob, .t0 = llmos_time_now()};
    chat(&other);
    assert_int_equal(other.err, LLMOS_OK);
    /* alice's process is throttled, not failed: it waits in the queue until cancelled */
    sender x = {.s = r.alice};
    atomic_init(&x.cancel, false);
    assert_int_equal(ksession_spawn(r.alice, 0, &x.pid), LLMOS_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_one, &x), 0);
    for (int i = 0; i < 2000 && kernel_sched_stats(r.k).waiting == 0; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    struct timespec pause = {0, 300 * 1000000L};
    nanosleep(&pause, NULL);
    ksched_stats st = kernel_sched_stats(r.k);
    assert_int_equal(st.waiting, 1);
    assert_int_equal(st.running, 0);
    assert_true(st.throttled >= 2);
    atomic_store(&x.cancel, true);
    pthread_join(t, NULL);
    assert_int_equal(x.err, LLMOS_OK);
    assert_int_equal(x.final, KPROC_DONE);
    assert_int_equal(kernel_sched_stats(r.k).served, 2);
    assert_int_equal(kernel_sched_stats(r.k).tokens, 20);
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fair_between_principals),
        cmocka_unit_test(test_full_queue_and_gone_clients),
        cmocka_unit_test(test_two_slots_run_together),
        cmocka_unit_test(test_priority_share),
        cmocka_unit_test(test_tokens_per_minute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
