/*
 * paging.c - virtual memory for the context window, MemGPT style (llmos/memory.h, mpage_*).
 *
 * The queue of recent messages grows with every turn. When the context passes the flush
 * threshold (90% of the window by default), the oldest messages are evicted: every message is
 * in recall memory already (the kernel stores each one as it is said), so evicting is only
 * taking them out of the context and folding them into the recursive summary, which the model
 * writes from the old summary and the evicted messages. When the model's summary would not fit
 * (or the model fails) the deterministic fallback keeps one line per message instead. What was
 * evicted stays searchable (conversation_search), so nothing said is ever lost, only paged out.
 *
 * Eviction brings the queue down to about half of the window, so that it happens once in a
 * while rather than at every turn; it cuts where the kept queue may start: never between an
 * assistant turn that called tools and the results of those calls.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/memory.h"

#define SUMMARY_LINE_BYTES 160 /* of each evicted message, in the fallback summary */

llmos_err mpage_plan(const mctx_counter *c, const json_t *fixed, const json_t *queue, size_t target,
                     size_t *n)
{
    assert(c && c->count_prompt && json_is_array(queue) && n);
    *n = 0;
    size_t nq = json_array_size(queue);
    json_t *msgs = json_array();
    if (!msgs)
        return llmos_fail(LLMOS_ERR_NOMEM, "paging: no memory");
    llmos_err err = LLMOS_OK;
    /* binary search over the first kept index: counts fall as more is evicted */
    size_t lo = 0, hi = nq > 0 ? nq - 1 : 0; /* the newest message always stays */
    while (!err && lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        json_array_clear(msgs);
        if (fixed)
            json_array_append(msgs, (json_t *)fixed);
        for (size_t i = mid; i < nq; i++)
            json_array_append(msgs, json_array_get(queue, i));
        size_t tokens = 0;
        err = c->count_prompt(c->ctx, msgs, NULL, &tokens);
        if (!err && tokens <= target)
            hi = mid;
        else
            lo = mid + 1;
    }
    json_decref(msgs);
    if (err)
        return err;
    /* move forward to a message the kept queue may start with */
    while (lo + 1 < nq &&
           strcmp(ljson_get_string(json_array_get(queue, lo), "role", ""), "tool") == 0)
        lo++;
    *n = lo;
    return LLMOS_OK;
}

/* One line of a transcript for message m: "role: text", tool calls named. */
static llmos_err transcript_line(const json_t *m, size_t max, llmos_buf *out)
{
    const char *role = ljson_get_string(m, "role", "?");
    const char *text = ljson_get_string(m, "content", "");
    size_t len = strlen(text);
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80)
            len--; /* do not cut a UTF-8 character */
    }
    llmos_err err =
        buf_printf(out, "%s: %.*s%s", role, (int)len, text, len < strlen(text) ? "..." : "");
    const json_t *calls = ljson_get_array(m, "tool_calls");
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        if (!err)
            err =
                buf_printf(out, " [called %s]",
                           ljson_get_string(ljson_get_object(call, "function"), "name", "a tool"));
    }
    if (!err)
        err = buf_putc(out, '\n');
    return err ? llmos_fail(LLMOS_ERR_NOMEM, "paging: no memory") : LLMOS_OK;
}

json_t *mpage_summary_request(const char *summary, const json_t *evicted, size_t max_words)
{
    llmos_buf user = {0};
    llmos_err err = buf_printf(&user,
                               "Here is the summary of a conversation so far, then the messages "
                               "that followed it. Write one new summary of all of it in at most "
                               "%zu words: keep facts about the user, decisions, names, dates "
                               "and open questions; drop small talk. Answer with the summary "
                               "only.\n\nSUMMARY SO FAR:\n%s\n\nMESSAGES:\n",
                               max_words, summary && summary[0] ? summary : "(none)");
    size_t i;
    json_t *m;
    json_array_foreach(evicted, i, m)
    {
        if (!err)
            err = transcript_line(m, 2000, &user);
    }
    json_t *req = err ? NULL
                      : json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content",
                                  "You summarise conversations faithfully and briefly.", "role",
                                  "user", "content", user.data);
    llmos_err_clear();
    buf_free(&user);
    return req;
}

llmos_err mpage_summary_fallback(const char *summary, const json_t *evicted, size_t max_bytes,
                                 char **out)
{
    assert(out && max_bytes > 0);
    *out = NULL;
    llmos_buf b = {0};
    llmos_err err = LLMOS_OK;
    if (summary && summary[0])
        err = buf_printf(&b, "%s\n", summary) ? llmos_fail(LLMOS_ERR_NOMEM, "no memory") : LLMOS_OK;
    size_t i;
    json_t *m;
    json_array_foreach(evicted, i, m)
    {
        if (!err)
            err = transcript_line(m, SUMMARY_LINE_BYTES, &b);
    }
    if (err) {
        buf_free(&b);
        return err;
    }
    /* the newest lines matter most: cut from the front, at a line start */
    size_t start = 0;
    if (b.len > max_bytes) {
        start = b.len - max_bytes;
        const char *nl = memchr(b.data + start, '\n', b.len - start);
        start = nl ? (size_t)(nl - b.data) + 1 : b.len;
    }
    while (b.len > start && b.data[b.len - 1] == '\n')
        b.data[--b.len] = 0;
    *out = strdup(b.data ? b.data + start : "");
    buf_free(&b);
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "paging: no memory");
}
