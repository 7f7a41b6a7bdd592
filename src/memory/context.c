/*
 * context.c - the context manager: what the model sees, laid out to the token within its
 * window (llmos/memory.h, mctx_layout).
 *
 * The context is one system message, then the queue of recent messages, then room for the
 * answer:
 *
 *   system   the system prompt, the core memory blocks (<persona>, <human>, the user's own),
 *            the recursive summary of what was evicted, and the kernel's notices
 *   queue    the newest messages that fit, oldest first; a tool result is never kept without
 *            the assistant turn that called it
 *   reserve  tokens kept for the answer
 *
 * Counting is the model's own (the backend renders its chat template and tokenizes), done
 * once for the whole layout and again after each step of degradation. A window too small for
 * everything degrades in a fixed order, each step noted for the caller to tell the model and
 * the user: (1) tool descriptions dropped (names and parameters stay), (2) tools dropped from the
 * end of the list, (3) older queued messages dropped, (4) the one-line system prompt instead of
 * the full one (core memory, summary and notices go with it), (5) the answer's reserve down to an
 * eighth of the window. Only a window that cannot hold the one-line system prompt, the newest
 * message and that reserve is an error, naming the numbers.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/memory.h"

#define MCTX_SHORT_SYSTEM "You are an agent of llmos."

mctx_params mctx_default_params(void)
{
    mctx_params p = {.pressure = 0.70, .flush = 0.90, .reserve = 512};
    return p;
}

/* The system message: the prompt, the core blocks, the summary, the notices. */
static llmos_err system_text(const mctx_in *in, bool short_form, const char *notice, llmos_buf *out)
{
    buf_clear(out);
    llmos_err err = buf_puts(out, short_form ? MCTX_SHORT_SYSTEM : in->system);
    size_t i;
    json_t *b;
    if (!short_form && json_array_size(in->core) > 0) {
        if (!err)
            err = buf_puts(out, "\n\nCore memory (edit it with core_memory_append and "
                                "core_memory_replace):");
        json_array_foreach(in->core, i, b)
        {
            const char *label = ljson_get_string(b, "label", "");
            if (!err)
                err = buf_printf(out, "\n<%s>\n%s\n</%s>", label, ljson_get_string(b, "value", ""),
                                 label);
        }
    }
    if (!short_form && in->summary && in->summary[0] && !err)
        err = buf_printf(out,
                         "\n\nSummary of the earlier conversation (%zu older messages are in "
                         "recall memory: conversation_search finds them):\n%s",
                         in->evicted, in->summary);
    if (!short_form && notice && notice[0] && !err)
        err = buf_printf(out, "\n\n%s", notice);
    return err ? llmos_fail(LLMOS_ERR_NOMEM, "context: no memory") : LLMOS_OK;
}

/* The tools without their descriptions (names and parameters stay). */
static json_t *tools_without_descriptions(const json_t *tools)
{
    json_t *copy = json_deep_copy(tools);
    size_t i;
    json_t *t;
    json_array_foreach(copy, i, t) json_object_del(json_object_get(t, "function"), "description");
    return copy;
}

/* The messages for a layout: the system message, then queue[from..]. */
static json_t *assemble(const char *system, const json_t *queue, size_t from)
{
    json_t *msgs = json_array();
    json_t *sys = json_pack("{s:s, s:s}", "role", "system", "content", system);
    if (!msgs || !sys || json_array_append_new(msgs, sys)) {
        json_decref(msgs);
        return NULL;
    }
    for (size_t i = from; i < json_array_size(queue); i++)
        if (json_array_append(msgs, json_array_get(queue, i))) {
            json_decref(msgs);
            return NULL;
        }
    return msgs;
}

/* May the kept queue start at index i? Not at a tool result (its call would be gone). */
static bool can_start_at(const json_t *queue, size_t i)
{
    return strcmp(ljson_get_string(json_array_get(queue, i), "role", ""), "tool") != 0;
}

static void note(mctx_out *out, const char *fmt, ...) LLMOS_PRINTF(2, 3);

static void note(mctx_out *out, const char *fmt, ...)
{
    size_t used = strlen(out->notes);
    if (used + 3 >= sizeof out->notes)
        return;
    if (used)
        used += (size_t)snprintf(out->notes + used, sizeof out->notes - used, "; ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->notes + used, sizeof out->notes - used, fmt, ap);
    va_end(ap);
}

/* The first place at or after i where the queue may start (never past its newest message). */
static size_t queue_start(const json_t *queue, size_t i)
{
    size_t nq = json_array_size(queue);
    while (i + 1 < nq && !can_start_at(queue, i))
        i++;
    return i;
}

/* Count the layout (system, queue from `from`, tools) into *n. */
static llmos_err count_layout(const mctx_counter *c, const char *system, const json_t *queue,
                              size_t from, const json_t *tools, size_t *n)
{
    json_t *msgs = assemble(system, queue, from);
    if (!msgs)
        return llmos_fail(LLMOS_ERR_NOMEM, "context: no memory");
    llmos_err err = c->count_prompt(c->ctx, msgs, json_array_size(tools) ? tools : NULL, n);
    json_decref(msgs);
    return err;
}

void mctx_out_free(mctx_out *out)
{
    if (!out)
        return;
    json_decref(out->messages);
    json_decref(out->tools);
    memset(out, 0, sizeof *out);
}

llmos_err mctx_layout(const mctx_params *p, const mctx_counter *c, const mctx_in *in, mctx_out *out)
{
    assert(p && c && c->count_prompt && in && in->system && out);
    memset(out, 0, sizeof *out);
    size_t window = p->window, nq = json_array_size(in->queue);
    if (window == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "context: the model's window is unknown (0 tokens)");
    size_t reserve = p->reserve < window / 2 ? p->reserve : window / 2;
    llmos_buf sys = {0};
    json_t *tools = in->tools ? json_incref((json_t *)in->tools) : json_array();
    bool short_system = false;
    size_t from = 0, n = 0;
    /* the pressure notice is decided on the full layout, before any degradation */
    llmos_err err = system_text(in, false, NULL, &sys);
    if (!err)
        err = count_layout(c, sys.data, in->queue, 0, tools, &n);
    out->full_tokens = n;
    if (!err && (double)n >= p->pressure * (double)window)
        out->pressure = true;
    if (!err)
        err = count_layout(c, sys.data, in->queue, nq, tools, &out->fixed_tokens);
    const char *notice = out->pressure ? in->pressure_notice : NULL;
    if (!err && notice)
        err = system_text(in, false, notice, &sys);
    if (!err)
        err = count_layout(c, sys.data, in->queue, 0, tools, &n);

    /* (1) tool descriptions, (2) tools from the end */
    if (!err && n + reserve > window && json_array_size(tools) > 0) {
        json_t *bare = tools_without_descriptions(tools);
        json_decref(tools);
        tools = bare;
        note(out, "tool descriptions left out");
        err = count_layout(c, sys.data, in->queue, from, tools, &n);
    }
    size_t dropped_tools = 0;
    while (!err && n + reserve > window && json_array_size(tools) > 0) {
        json_array_remove(tools, json_array_size(tools) - 1);
        dropped_tools++;
        err = count_layout(c, sys.data, in->queue, from, tools, &n);
    }
    if (dropped_tools)
        note(out, "%zu of %zu tools left out", dropped_tools, json_array_size(in->tools));
    /* (3) older messages: the fewest of the oldest that make it fit (the count falls as more
     * are left out, so a binary search over where the queue starts); the newest always stays */
    if (!err && n + reserve > window && nq > 1) {
        size_t lo = 1, hi = nq - 1;
        while (!err && lo < hi) {
            size_t mid = lo + (hi - lo) / 2, m = 0;
            err = count_layout(c, sys.data, in->queue, queue_start(in->queue, mid), tools, &m);
            if (m + reserve <= window)
                hi = mid;
            else
                lo = mid + 1;
        }
        from = queue_start(in->queue, lo);
        if (!err)
            err = count_layout(c, sys.data, in->queue, from, tools, &n);
        note(out, "%zu older messages left out of this turn", from);
    }
    /* (4) the one-line system prompt */
    if (!err && n + reserve > window) {
        short_system = true;
        err = system_text(in, true, notice, &sys);
        if (!err)
            err = count_layout(c, sys.data, in->queue, from, tools, &n);
        note(out, "the one-line system prompt used (core memory, summary and notices left out)");
    }
    /* (5) the answer's reserve, down to an eighth of the window */
    if (!err && n + reserve > window && n + window / 8 <= window) {
        reserve = window - n;
        note(out, "room for the answer cut to %zu tokens", reserve);
    }
    if (!err && n + reserve > window)
        err = llmos_fail(LLMOS_ERR_CONTEXT,
                         "the model's context (%zu tokens) cannot hold even the one-line "
                         "system prompt and the newest message (%zu tokens) with room for an "
                         "answer (%zu tokens); use a model with a larger context or a shorter "
                         "message",
                         window, n, window / 8);
    if (!err) {
        out->messages = assemble(sys.data, in->queue, from);
        if (!out->messages)
            err = llmos_fail(LLMOS_ERR_NOMEM, "context: no memory");
    }
    buf_free(&sys);
    if (err) {
        json_decref(tools);
        return err;
    }
    out->tools = tools;
    out->tokens = n;
    out->reserve = reserve;
    out->first_kept = from;
    out->short_system = short_system;
    return LLMOS_OK;
}
