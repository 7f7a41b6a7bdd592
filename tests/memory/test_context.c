/*
 * test_context.c - the context manager and paging, on a deterministic counter (one token per
 * four bytes of the messages' JSON): a context that fits is sent whole; the pressure notice;
 * each step of degradation in its order for smaller and smaller windows, a tool result never
 * kept without its call, and the error that names the numbers; eviction plans that cut where
 * a queue may start; the fallback summary that keeps the newest lines and whole characters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llmos/json.h"
#include "llmos/memory.h"
#include "testutil.h"

static size_t counted; /* calls to the counter */

static llmos_err count_bytes(void *ctx, const json_t *messages, const json_t *tools, size_t *n)
{
    (void)ctx;
    counted++;
    char *m = json_dumps(messages, JSON_COMPACT),
         *t = tools ? json_dumps(tools, JSON_COMPACT) : NULL;
    *n = (strlen(m) + (t ? strlen(t) : 0)) / 4;
    free(m);
    free(t);
    return LLMOS_OK;
}

static const mctx_counter counter = {.count_prompt = count_bytes};

/* A conversation of `turns` user/assistant pairs, the middle one a tool call and its result. */
static json_t *conversation(int turns)
{
    json_t *q = json_array();
    for (int i = 0; i < turns; i++) {
        char text[128];
        snprintf(text, sizeof text, "question number %d about the weather in some city", i);
        json_array_append_new(q, json_pack("{s:s, s:s}", "role", "user", "content", text));
        if (i == turns / 2) {
            json_array_append_new(q, json_pack("{s:s, s:s, s:[{s:s, s:s, s:{s:s, s:s}}]}", "role",
                                               "assistant", "content", "", "tool_calls", "id", "c1",
                                               "type", "function", "function", "name", "calculator",
                                               "arguments", "{}"));
            json_array_append_new(q, json_pack("{s:s, s:s, s:s}", "role", "tool", "tool_call_id",
                                               "c1", "content", "42"));
        }
        snprintf(text, sizeof text, "answer number %d: it is sunny and mild today", i);
        json_array_append_new(q, json_pack("{s:s, s:s}", "role", "assistant", "content", text));
    }
    return q;
}

static json_t *tools(void)
{
    return json_pack("[{s:s, s:{s:s, s:s, s:{s:s}}}, {s:s, s:{s:s, s:s, s:{s:s}}}]", "type",
                     "function", "function", "name", "calculator", "description",
                     "Evaluate an arithmetic expression exactly, with many functions and exact "
                     "fractions of any size, and irrational results to fifty digits.",
                     "parameters", "type", "object", "type", "function", "function", "name",
                     "send_message", "description",
                     "Send a message to the user; handles in the text are replaced by their "
                     "values when the message is delivered.",
                     "parameters", "type", "object");
}

typedef struct rig {
    json_t *queue, *tools, *core;
    mctx_in in;
} rig;

static void rig_init(rig *r, int turns)
{
    r->queue = conversation(turns);
    r->tools = tools();
    r->core = json_pack("[{s:s, s:s}]", "label", "human", "value", "Lives in Lyon.");
    r->in = (mctx_in){.system = "You are a careful assistant of llmos, helpful and brief.",
                      .core = r->core,
                      .summary = "Earlier they spoke about trains.",
                      .evicted = 12,
                      .queue = r->queue,
                      .tools = r->tools,
                      .pressure_notice = "MEMORY PRESSURE"};
}

static void rig_free(rig *r)
{
    json_decref(r->queue);
    json_decref(r->tools);
    json_decref(r->core);
}

static mctx_out lay(rig *r, size_t window, size_t reserve, llmos_err want)
{
    mctx_params p = mctx_default_params();
    p.window = window;
    p.reserve = reserve;
    mctx_out out;
    assert_int_equal(mctx_layout(&p, &counter, &r->in, &out), want);
    return out;
}

static const char *system_of(const mctx_out *o)
{
    return ljson_get_string(json_array_get(o->messages, 0), "content", "");
}

static void test_fits_whole(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, 6);
    mctx_out o = lay(&r, 100000, 512, LLMOS_OK);
    assert_string_equal(o.notes, "");
    assert_false(o.pressure);
    assert_int_equal(json_array_size(o.messages), 1 + json_array_size(r.queue));
    assert_int_equal(json_array_size(o.tools), 2);
    assert_int_equal(o.tokens, o.full_tokens);
    assert_int_equal(o.reserve, 512);
    /* the system message holds the prompt, the core blocks, the summary */
    assert_non_null(strstr(system_of(&o), "careful assistant"));
    assert_non_null(strstr(system_of(&o), "<human>\nLives in Lyon.\n</human>"));
    assert_non_null(strstr(system_of(&o), "Earlier they spoke about trains."));
    assert_non_null(strstr(system_of(&o), "12 older messages"));
    assert_null(strstr(system_of(&o), "MEMORY PRESSURE"));
    mctx_out_free(&o);
    rig_free(&r);
}

static void test_pressure_notice(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, 6);
    mctx_out whole = lay(&r, 100000, 16, LLMOS_OK);
    size_t full = whole.full_tokens;
    mctx_out_free(&whole);
    /* 75% of the window: over the pressure threshold, still whole */
    mctx_out o = lay(&r, full * 4 / 3, 16, LLMOS_OK);
    assert_true(o.pressure);
    assert_non_null(strstr(system_of(&o), "MEMORY PRESSURE"));
    assert_int_equal(json_array_size(o.messages), 1 + json_array_size(r.queue));
    mctx_out_free(&o);
    rig_free(&r);
}

/* Smaller and smaller windows: each step of degradation comes in its order. */
static void test_degradation_order(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, 12);
    mctx_out whole = lay(&r, 1000000, 0, LLMOS_OK);
    size_t full = whole.full_tokens;
    mctx_out_free(&whole);
    size_t reserve = 40;
    bool saw_desc = false, saw_tools = false, saw_msgs = false, saw_short = false,
         saw_reserve = false;
    for (size_t window = full + reserve + 200; window > 20; window -= 7) {
        mctx_params p = mctx_default_params();
        p.window = window;
        p.reserve = reserve;
        mctx_out o;
        llmos_err err = mctx_layout(&p, &counter, &r.in, &o);
        if (err) {
            assert_int_equal(err, LLMOS_ERR_CONTEXT);
            assert_non_null(strstr(llmos_errmsg(), "cannot hold even the one-line system prompt"));
            assert_true(saw_desc && saw_tools && saw_msgs && saw_short);
            break;
        }
        assert_true(o.tokens + o.reserve <= window);
        bool desc = strstr(o.notes, "tool descriptions left out") != NULL;
        bool tl = strstr(o.notes, "tools left out") != NULL && strstr(o.notes, " of ") != NULL;
        bool msgs = strstr(o.notes, "older messages left out") != NULL;
        bool shrt = o.short_system;
        bool res = strstr(o.notes, "room for the answer cut") != NULL;
        /* a later step only after every earlier one */
        if (tl)
            assert_true(desc);
        if (msgs)
            assert_true(desc && json_array_size(o.tools) == 0);
        if (shrt)
            assert_true(msgs);
        if (res)
            assert_true(shrt);
        saw_desc |= desc, saw_tools |= tl, saw_msgs |= msgs, saw_short |= shrt, saw_reserve |= res;
        /* the newest message always stays, and no tool result without its call */
        const json_t *last = json_array_get(o.messages, json_array_size(o.messages) - 1);
        assert_true(
            json_equal((json_t *)last, json_array_get(r.queue, json_array_size(r.queue) - 1)));
        assert_string_not_equal(ljson_get_string(json_array_get(o.messages, 1), "role", "tool"),
                                "tool");
        mctx_out_free(&o);
    }
    assert_true(saw_reserve);
    rig_free(&r);
}

static void test_eviction_plan(void **state)
{
    (void)state;
    rig r;
    rig_init(&r, 12);
    json_t *sys = json_pack("{s:s, s:s}", "role", "system", "content", "S");
    size_t n = 99;
    /* a large target: nothing to evict */
    assert_int_equal(mpage_plan(&counter, sys, r.queue, 100000, &n), LLMOS_OK);
    assert_int_equal(n, 0);
    /* half of what the queue takes: about half of it goes, cut at a message a queue may start
     * with */
    size_t all = 0;
    assert_int_equal(count_bytes(NULL, r.queue, NULL, &all), LLMOS_OK);
    for (size_t target = all / 2; target > 10; target -= 9) {
        assert_int_equal(mpage_plan(&counter, sys, r.queue, target, &n), LLMOS_OK);
        assert_true(n > 0 && n < json_array_size(r.queue));
        assert_string_not_equal(ljson_get_string(json_array_get(r.queue, n), "role", ""), "tool");
    }
    json_decref(sys);
    rig_free(&r);
}

static void test_fallback_summary(void **state)
{
    (void)state;
    json_t *q = conversation(40);
    char *s = NULL;
    assert_int_equal(mpage_summary_fallback("OLD SUMMARY", q, 100000, &s), LLMOS_OK);
    assert_non_null(strstr(s, "OLD SUMMARY"));
    assert_non_null(strstr(s, "user: question number 0"));
    assert_non_null(strstr(s, "[called calculator]"));
    free(s);
    /* cut from the front, at a line start: the newest lines stay */
    assert_int_equal(mpage_summary_fallback("OLD SUMMARY", q, 300, &s), LLMOS_OK);
    assert_true(strlen(s) <= 300);
    assert_null(strstr(s, "OLD SUMMARY"));
    assert_non_null(strstr(s, "answer number 39"));
    assert_true(strncmp(s, "user: ", 6) == 0 || strncmp(s, "assistant: ", 11) == 0);
    free(s);
    json_decref(q);
    /* a long line is cut without splitting a character */
    llmos_buf long_text = {0};
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_puts(&long_text, "é"), LLMOS_OK);
    json_t *one = json_pack("[{s:s, s:s}]", "role", "user", "content", long_text.data);
    assert_int_equal(mpage_summary_fallback(NULL, one, 1000, &s), LLMOS_OK);
    assert_true(utf8_valid(s, strlen(s)));
    assert_non_null(strstr(s, "..."));
    free(s);
    json_decref(one);
    buf_free(&long_text);
    /* the request that asks the model: the old summary and the transcript, a word limit */
    json_t *few = conversation(2);
    json_t *req = mpage_summary_request("OLD", few, 50);
    assert_int_equal(json_array_size(req), 2);
    const char *ask = ljson_get_string(json_array_get(req, 1), "content", "");
    assert_non_null(strstr(ask, "at most 50 words"));
    assert_non_null(strstr(ask, "SUMMARY SO FAR:\nOLD"));
    assert_non_null(strstr(ask, "user: question number 1"));
    json_decref(req);
    json_decref(few);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fits_whole),        cmocka_unit_test(test_pressure_notice),
        cmocka_unit_test(test_degradation_order), cmocka_unit_test(test_eviction_plan),
        cmocka_unit_test(test_fallback_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
