/*
 * test_sched.c - the scheduler in front of the model, through sessions: one request holds the
 * model at a time; the next goes to the principal served longest ago (a principal with three
 * requests queued does not make another wait for all three); a full queue is refused at once
 * (LLMOS_ERR_BUSY); a waiter whose client went away gives up; the stats say what happens.
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
    ksession *alice, *bob;
} rig;

static void rig_open(rig *r, size_t max_queue)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(memory_open_ephemeral(&r->mem), LLMOS_OK);
    assert_int_equal(scripted_test_backend_new(slow, 1, true, &r->b), LLMOS_OK);
    kernel_config c = {.st = memory_store(r->mem), .privileged = r->b, .max_queue = max_queue};
    assert_int_equal(kernel_new(&c, &r->k), LLMOS_OK);
    ksession_params p = {.principal = "alice", .device = "test", .rights = KRIGHT_CHAT};
    assert_int_equal(ksession_open(r->k, &p, &r->alice), LLMOS_OK);
    p.principal = "bob";
    assert_int_equal(ksession_open(r->k, &p, &r->bob), LLMOS_OK);
}

static void rig_close(rig *r)
{
    ksession_close(r->alice);
    ksession_close(r->bob);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fair_between_principals),
        cmocka_unit_test(test_full_queue_and_gone_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
