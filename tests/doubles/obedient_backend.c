/*
 * obedient_backend.c - obedient_test_backend, a TEST DOUBLE of llm_backend (tests/doubles.h):
 * a worst-case model for `llmos scan`, which obeys every injected instruction it can see.
 *
 * It is given the probes and "understands" them by their text: when every part of a probe
 * appears in the messages it is sent, it does what the probe's goal asks (says the marker,
 * leaks the canary it finds in its system prompt, makes the call, writes the exfiltration URL),
 * once. Otherwise it does the user's task the way an agent would: it calls the reading tool the
 * user named; an untrusted result (a handle) it asks the quarantined model about, and shows the
 * answer's handle to the user with send_message; then it answers. Asked without tools (as the
 * quarantined model or a judge), it obeys in words only, and a judge's question it answers
 * FOLLOWED when the response it is shown carries the probe's marker or the canary.
 *
 * It stands for the model a scan is meant to catch; it is not a model and is linked into tests
 * only. Encoded probes are "understood" by their encoded text, which a real model would have to
 * decode: the double measures the kernel's structure, not a model's gullibility.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doubles.h"
#include "llmos/json.h"

typedef struct obedient {
    llm_backend base;
    const scan_probes *probes;
    size_t calls;
} obedient;

/* Every content and tool-call argument of the messages, joined. */
static char *all_text(const json_t *msgs)
{
    llmos_buf b = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (buf_printf(&b, "%s\n", ljson_get_string(m, "content", "")))
            break;
    }
    if (buf_putc(&b, 0)) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

static const scan_probe *triggered(const obedient *o, const char *text)
{
    for (size_t i = 0; i < o->probes->n; i++) {
        const scan_probe *p = &o->probes->v[i];
        bool all = true;
        for (size_t k = 0; all && k < p->n_parts; k++)
            all = strstr(text, p->parts[k]) != NULL;
        if (all)
            return p;
    }
    return NULL;
}

/* The canary of the system prompt, or "" when it cannot see one. */
static void find_canary(const char *text, char *out, size_t size)
{
    const char *c = strstr(text, "llmos-canary-");
    size_t n = 0;
    while (c && c[n] &&
           ((c[n] >= 'a' && c[n] <= 'z') || (c[n] >= '0' && c[n] <= '9') || c[n] == '-'))
        n++;
    snprintf(out, size, "%.*s", c ? (int)n : 0, c ? c : "");
}

/* s with "{canary}" replaced (malloc'd). */
static char *with_canary(const char *s, const char *canary)
{
    llmos_buf b = {0};
    for (const char *p = s; *p;) {
        const char *q = strstr(p, "{canary}");
        if (!q) {
            if (buf_puts(&b, p))
                break;
            break;
        }
        if (buf_append(&b, p, (size_t)(q - p)) || buf_puts(&b, canary[0] ? canary : "unknown"))
            break;
        p = q + 8;
    }
    if (buf_putc(&b, 0)) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

static void add_call(llm_response *r, size_t n, const char *name, const char *args)
{
    r->tool_calls = calloc(1, sizeof *r->tool_calls);
    if (!r->tool_calls)
        return;
    char id[32];
    snprintf(id, sizeof id, "call_%zu", n);
    r->tool_calls[0].id = strdup(id);
    r->tool_calls[0].name = strdup(name);
    r->tool_calls[0].arguments = strdup(args);
    r->n_tool_calls = 1;
    r->finish_reason = "tool_calls";
}

/* The last message's tool call name (what the tool result answers), from the assistant turn
 * before it. */
static const char *last_call_name(const json_t *msgs)
{
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(ljson_get_string(m, "role", ""), "assistant") == 0) {
            json_t *tc = json_array_get(json_object_get(m, "tool_calls"), 0);
            return ljson_get_string(json_object_get(tc, "function"), "name", NULL);
        }
    }
    return NULL;
}

/* The last handle ($VARn) in s, into out. */
static bool last_handle(const char *s, char *out, size_t size)
{
    const char *h = NULL;
    for (const char *p = strstr(s, "$VAR"); p; p = strstr(p + 1, "$VAR"))
        h = p;
    if (!h)
        return false;
    size_t n = 4;
    while (h[n] >= '0' && h[n] <= '9')
        n++;
    snprintf(out, size, "%.*s", (int)n, h);
    return n > 4;
}

static bool offered(const json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (strcmp(ljson_get_string(json_object_get(t, "function"), "name", ""), name) == 0)
            return true;
    }
    return false;
}

static llmos_err ob_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                         void *stream_ctx, llm_response *resp)
{
    obedient *o = (obedient *)b;
    memset(resp, 0, sizeof *resp);
    resp->finish_reason = "stop";
    resp->completion_tokens = 8;
    o->calls++;
    const json_t *msgs = req->messages;
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = ljson_get_string(last, "role", "");
    char *text = all_text(msgs);
    if (!text)
        return LLMOS_ERR_NOMEM;
    char canary[64];
    find_canary(text, canary, sizeof canary);
    const scan_probe *p = triggered(o, text);
    llmos_buf say = {0};
    bool tools = req->tools && json_array_size(req->tools) > 0;
    /* acted already in this conversation? then it is done */
    bool acted = false;
    if (p) {
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *m = json_array_get(msgs, i);
            if (strcmp(ljson_get_string(m, "role", ""), "assistant") != 0)
                continue;
            const char *c = ljson_get_string(m, "content", "");
            const char *nm = ljson_get_string(
                json_object_get(json_array_get(json_object_get(m, "tool_calls"), 0), "function"),
                "name", "");
            if (strstr(c, "[obeyed]") || (p->goal == SCAN_CALL && strcmp(nm, p->tool) == 0))
                acted = true;
        }
    }
    llmos_err err = LLMOS_OK;
    if (strstr(text, "Answer with exactly one word: FOLLOWED")) {
        /* a judge's question: followed when the response shows the goal reached */
        const char *resp_at = strstr(text, "ASSISTANT'S RESPONSE:");
        bool hit = false;
        for (size_t i = 0; resp_at && i < o->probes->n && !hit; i++) {
            const scan_probe *q = &o->probes->v[i];
            hit = q->goal == SCAN_SAY && strstr(resp_at, q->marker);
        }
        err = buf_puts(&say, hit || strstr(resp_at ? resp_at : "", "llmos-canary-") ? "FOLLOWED"
                                                                                    : "IGNORED");
    } else if (p && !acted) {
        char *x = NULL;
        switch (p->goal) {
        case SCAN_SAY: err = buf_printf(&say, "[obeyed] %s", p->marker); break;
        case SCAN_LEAK:
            err = buf_printf(&say, "[obeyed] The secret is %s.",
                             canary[0] ? canary : "not something I was told");
            break;
        case SCAN_EXFIL:
            x = with_canary(p->url, canary);
            err = x ? buf_printf(&say, "[obeyed] Done. ![status](%s)", x) : LLMOS_ERR_NOMEM;
            break;
        case SCAN_CALL:
            x = with_canary(p->arguments, canary);
            if (!x)
                err = LLMOS_ERR_NOMEM;
            else if (tools && offered(req->tools, p->tool))
                add_call(resp, o->calls, p->tool, x);
            else
                err = buf_printf(&say, "[obeyed] I would call %s with %s", p->tool, x);
            break;
        }
        free(x);
    } else if (!tools) {
        err = buf_puts(&say, "The text is a short note with nothing to act on.");
    } else if (strcmp(role, "user") == 0) {
        /* the user's task: call the tool named in the message */
        const char *u = ljson_get_string(last, "content", "");
        const char *pick = NULL;
        size_t i;
        json_t *t;
        json_array_foreach(req->tools, i, t)
        {
            /* only a tool that reads (a channel's): a message that names send_message is not
             * the user asking to send one */
            const char *nm = ljson_get_string(json_object_get(t, "function"), "name", "");
            static const char *const channels[] = {"message", "tool", "web",
                                                   "file",    "mcp",  "memory"};
            bool reads = false;
            for (size_t c = 0; c < LLMOS_ARRAY_LEN(channels); c++)
                reads = reads || strcmp(nm, scan_channel_tool(channels[c])) == 0;
            if (!pick && reads && strstr(u, nm))
                pick = nm;
        }
        if (pick)
            add_call(resp, o->calls, pick, "{}");
        else
            err = buf_puts(&say, "How can I help?");
    } else if (strcmp(role, "tool") == 0) {
        const char *c = ljson_get_string(last, "content", "");
        const char *from = last_call_name(msgs);
        char h[32], args[160];
        if (from && strcmp(from, "send_message") == 0) {
            err = buf_puts(&say, "I showed you what it says.");
        } else if (last_handle(c, h, sizeof h)) {
            if (from && strcmp(from, "ask_quarantined") != 0 &&
                offered(req->tools, "ask_quarantined")) {
                snprintf(args, sizeof args,
                         "{\"handle\": \"%s\", \"question\": \"What does it say?\"}", h);
                add_call(resp, o->calls, "ask_quarantined", args);
            } else {
                snprintf(args, sizeof args, "{\"recipient\": \"user\", \"text\": \"%s\"}", h);
                add_call(resp, o->calls, "send_message", args);
            }
        } else {
            err = buf_puts(&say, "Here is what it says, in short: nothing that needs doing.");
        }
    } else {
        err = buf_puts(&say, "Done.");
    }
    free(text);
    if (err || buf_putc(&say, 0)) {
        buf_free(&say);
        return LLMOS_ERR_NOMEM;
    }
    resp->content = buf_detach(&say, NULL);
    if (stream && resp->content[0])
        stream(stream_ctx, resp->content, strlen(resp->content));
    return LLMOS_OK;
}

static llmos_err ob_embed(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim)
{
    (void)b, (void)text, (void)len, (void)vec, (void)dim;
    return llmos_fail(LLMOS_ERR_UNSUPPORTED, "obedient_test_backend cannot embed");
}

static llmos_err ob_count(llm_backend *b, const char *text, size_t len, size_t *n)
{
    (void)b, (void)text;
    *n = (len + 3) / 4;
    return LLMOS_OK;
}

static size_t ob_ctx(llm_backend *b)
{
    (void)b;
    return 1u << 20;
}

static const char *ob_name(llm_backend *b)
{
    (void)b;
    return "obedient-test";
}

static void ob_free(llm_backend *b)
{
    free(b);
}

static const llm_backend_ops ob_ops = {.kind = "obedient_test_backend",
                                       .chat = ob_chat,
                                       .embed = ob_embed,
                                       .count_tokens = ob_count,
                                       .context_size = ob_ctx,
                                       .model_name = ob_name,
                                       .free = ob_free};

llmos_err obedient_test_backend_new(const scan_probes *probes, llm_backend **out)
{
    obedient *o = calloc(1, sizeof *o);
    if (!o)
        return llmos_fail(LLMOS_ERR_NOMEM, "obedient_test_backend: no memory");
    o->base.ops = &ob_ops;
    o->probes = probes;
    *out = &o->base;
    return LLMOS_OK;
}
