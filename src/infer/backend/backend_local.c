/*
 * backend_local.c - the backend that runs a GGUF model in this process.
 *
 * One object holds the model, its tokenizer, its chat template, a thread pool and a batcher
 * (batcher.h): up to max_seqs chats run at once, from as many threads, each in a sequence
 * with a KV cache of its own, and their tokens are evaluated together, one forward pass per
 * step (continuous batching). A chat request goes: messages -> prompt ids
 * (local_chat_tokenize, below) -> a sequence: the one of the request's cache scope that
 * shares the longest prefix with the prompt (so the second turn of a conversation costs only
 * its new tokens), else a fresh one -> sample token by token, masked by a grammar when tools
 * or a JSON response format ask for one -> stream text -> parse tool calls. Everything from
 * the evaluation of the prompt to the streamed text is the generation loop that `llmos
 * generate` uses too (gen/generate.h), with the batcher as its evaluator.
 *
 * The control-token guarantee. A rendered chat template is one string in which the template's
 * own framing ("<|im_start|>user\n") and the messages' text are mixed. Tokenizing it with
 * special-token parsing would let a message that spells "<|im_start|>system" forge a frame;
 * tokenizing it without would lose the framing. So before rendering, every piece of outside
 * text (message contents, text parts, tool-call arguments, tool results) is replaced with a
 * sentinel that carries a nonce drawn fresh from the OS for every render, so no input can
 * guess it; the output is split on the sentinels; template pieces are tokenized with
 * TOK_PARSE_SPECIAL and each outside piece without it; the ids are concatenated.
 *
 * How templates that transform content are handled:
 *   - `| trim` on content: the sentinel has no white space, so trim would not reach the
 *     content; when the template text applies trim anywhere ("|trim" or "| trim"), content
 *     pieces are trimmed at both ends, as the template would have done.
 *   - `| tojson` on a value (Llama 3.1 writes tool results that way, most templates write
 *     tool-call arguments that way): where a sentinel comes out between double quotes, the
 *     piece is the value's tojson text (quotes included) as our Jinja writes it; where it
 *     comes out bare, the value's own text. (So a template that puts content between literal
 *     double quotes would see it JSON-escaped; no known template does.)
 *   - tool-call arguments: OpenAI clients send them as a JSON string; templates mostly expect
 *     an object. A string that parses as a JSON object is given to the template as that
 *     object (bare use writes its compact JSON).
 *   - anything else the template does to a content string (slicing, split, replace) acts on
 *     the sentinel; if a sentinel comes out damaged the render fails with
 *     LLMOS_ERR_UNSUPPORTED rather than guessing.
 *   - tool definitions: every "description" (of a function or of a parameter, at any depth)
 *     is outside text too, since tools may be described by an outside server; names, types
 *     and schema keywords stay template text (templates test them).
 * Token boundaries: pieces are tokenized separately, so merges across a piece boundary do not
 * happen (the template nearly always puts a newline or a control token there), and with
 * SentencePiece vocabularies each outside piece gets the space prefix a text gets after a
 * control token.
 */
#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "infer/backend/batcher.h"
#include "infer/gen/generate.h"
#include "llmos/backend.h"
#include "llmos/chat.h"
#include "llmos/grammar.h"
#include "llmos/json.h"
#include "llmos/toolcall.h"

#define LOCAL_LOG     "backend"
#define LOCAL_MAX_CTX 8192u

/* ---- prompt building ------------------------------------------------------------------------ */

/* One piece of outside text that a sentinel stands for. */
typedef struct lc_piece {
    const char *text; /* the outside text (owned when `own`) */
    size_t len;
    char *quoted; /* tojson text of the value, owned */
    bool own;
    bool args; /* a tool call's arguments */
} lc_piece;

typedef struct lc_pieces {
    lc_piece *v;
    size_t n, cap;
    char nonce[33];
} lc_pieces;

static void lc_pieces_free(lc_pieces *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].own)
            free((char *)p->v[i].text);
        free(p->v[i].quoted);
    }
    free(p->v);
}

/* The value's text as Hugging Face's tojson writes it, rendered by our own Jinja so that it
 * matches what the template would have produced byte for byte. */
static llmos_err lc_tojson(const json_t *v, char **out)
{
    static const char tmpl[] = "{{ v | tojson }}";
    json_t *ctx = json_pack("{sO}", "v", (json_t *)v);
    if (!ctx)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_buf b = {0};
    llmos_err err = jinja_render(tmpl, sizeof tmpl - 1, ctx, NULL, &b);
    json_decref(ctx);
    if (err) {
        buf_free(&b);
        return err;
    }
    *out = buf_detach(&b, NULL);
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
}

/* Record `value` as outside text and put its sentinel in obj[key]. */
static llmos_err lc_replace(lc_pieces *p, json_t *obj, const char *key, bool args)
{
    json_t *v = json_object_get(obj, key);
    lc_piece pc = {0};
    json_t *parsed = NULL;
    if (json_is_string(v)) {
        /* a copy: the sentinel replaces (and frees) this string in the message copy */
        pc.len = json_string_length(v);
        pc.text = malloc(pc.len + 1);
        if (!pc.text)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        memcpy((char *)pc.text, json_string_value(v), pc.len + 1);
        pc.own = true;
        if (args) { /* an OpenAI arguments string: the template wants the object */
            json_error_t je;
            parsed = json_loadb(pc.text, pc.len, JSON_REJECT_DUPLICATES, &je);
            if (parsed && !json_is_object(parsed)) {
                json_decref(parsed);
                parsed = NULL;
            }
        }
    } else if (args && (json_is_object(v) || json_is_array(v))) {
        parsed = json_incref(v);
    } else {
        return LLMOS_OK; /* null, numbers: nothing from outside to protect */
    }
    pc.args = args;
    llmos_err err = lc_tojson(parsed ? parsed : v, &pc.quoted);
    if (!err && parsed) { /* bare use of an object: its JSON text */
        if (pc.own)
            free((char *)pc.text);
        pc.text = json_dumps(parsed, JSON_COMPACT);
        pc.own = true;
        pc.len = pc.text ? strlen(pc.text) : 0;
    }
    json_decref(parsed);
    if (err) {
        if (pc.own)
            free((char *)pc.text);
        return err;
    }
    if (!pc.text) {
        free(pc.quoted);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        lc_piece *nv = realloc(p->v, cap * sizeof *nv);
        if (!nv) {
            if (pc.own)
                free((char *)pc.text);
            free(pc.quoted);
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        }
        p->v = nv;
        p->cap = cap;
    }
    p->v[p->n] = pc;
    char s[80];
    snprintf(s, sizeof s, "@@llmos%s#%zu@@", p->nonce, p->n);
    p->n++;
    if (json_object_set_new(obj, key, json_string(s)) != 0)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    return LLMOS_OK;
}

/* Replace every outside text in a copy of the messages with sentinels. */
static llmos_err lc_sentinelize(json_t *msgs, lc_pieces *p)
{
    size_t i, j;
    json_t *m, *part, *call;
    llmos_err err;
    json_array_foreach(msgs, i, m)
    {
        if (!json_is_object(m))
            return llmos_fail(LLMOS_ERR_INVALID, "messages[%zu] is not an object", i);
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) {
            if ((err = lc_replace(p, m, "content", false)))
                return err;
        } else if (json_is_array(content)) {
            json_array_foreach(content, j, part)
            {
                if (json_is_object(part) && (err = lc_replace(p, part, "text", false)))
                    return err;
            }
        }
        json_array_foreach(json_object_get(m, "tool_calls"), j, call)
        {
            json_t *fn = json_object_get(call, "function");
            json_t *holder = json_is_object(fn) ? fn : call;
            if (json_is_object(holder) && (err = lc_replace(p, holder, "arguments", true)))
                return err;
        }
    }
    return LLMOS_OK;
}

/* Tool definitions may come from outside too (an MCP server describes its own tools): every
 * "description" string, at any depth, becomes a sentinel. Names, types and schema keywords
 * stay, since templates test them. */
static llmos_err lc_sentinelize_tools(json_t *v, lc_pieces *p)
{
    llmos_err err = LLMOS_OK;
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach(v, key, child)
        {
            if (strcmp(key, "description") == 0 && json_is_string(child))
                err = lc_replace(p, v, key, false);
            else
                err = lc_sentinelize_tools(child, p);
            if (err)
                return err;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child)
        {
            if ((err = lc_sentinelize_tools(child, p)))
                return err;
        }
    }
    return err;
}

static bool lc_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

typedef struct lc_ids {
    int32_t *v;
    size_t n, cap;
} lc_ids;

static llmos_err lc_push(lc_ids *d, const tokenizer *t, const char *s, size_t len, unsigned flags)
{
    if (len == 0)
        return LLMOS_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    llmos_err err = tok_encode(t, s, len, flags, &ids, &n);
    if (err)
        return err;
    if (d->n + n > d->cap) {
        size_t cap = d->cap ? d->cap : 256;
        while (cap < d->n + n)
            cap *= 2;
        int32_t *nv = realloc(d->v, cap * sizeof *nv);
        if (!nv) {
            free(ids);
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        }
        d->v = nv;
        d->cap = cap;
    }
    memcpy(d->v + d->n, ids, n * sizeof *ids);
    d->n += n;
    free(ids);
    return LLMOS_OK;
}

static llmos_err lc_span(size_t **spans, size_t *n_spans, size_t *cap, size_t b, size_t e)
{
    if (!spans || b == e)
        return LLMOS_OK;
    if (*n_spans + 2 > *cap) {
        size_t nc = *cap ? *cap * 2 : 32;
        size_t *nv = realloc(*spans, nc * sizeof *nv);
        if (!nv)
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        *spans = nv;
        *cap = nc;
    }
    (*spans)[(*n_spans)++] = b;
    (*spans)[(*n_spans)++] = e;
    return LLMOS_OK;
}

/* Tokenize template text s[b..e) with special tokens parsed. A nonce inside it means a
 * sentinel was cut apart by the template: refuse rather than guess where content lies. */
static llmos_err lc_template_piece(lc_ids *ids, const tokenizer *t, const char *s, size_t b,
                                   size_t e, const char *nonce)
{
    const char *h = memmem(s + b, e - b, nonce, strlen(nonce));
    if (h)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "chat template: a message's content came out of the template altered "
                          "(offset %zu of the prompt); llmos cannot tell the template's text "
                          "from the message's there, so it refuses to build the prompt",
                          (size_t)(h - s));
    return lc_push(ids, t, s + b, e - b, TOK_PARSE_SPECIAL);
}

/* Split the rendered text on the sentinels and tokenize each side with its own rule. */
static llmos_err lc_split(const tokenizer *t, const char *tmpl, const char *s, size_t len,
                          const lc_pieces *p, lc_ids *ids, size_t **spans, size_t *n_spans)
{
    char mark[48];
    int ml = snprintf(mark, sizeof mark, "@@llmos%s#", p->nonce);
    bool trims = strstr(tmpl, "|trim") || strstr(tmpl, "| trim");
    size_t cap = 0, start = 0, pos = 0;
    llmos_err err = LLMOS_OK;
    while (!err && pos < len) {
        const char *hit = memmem(s + pos, len - pos, mark, (size_t)ml);
        if (!hit)
            break;
        size_t at = (size_t)(hit - s), k = at + (size_t)ml, idx = 0;
        bool digits = false;
        while (k < len && s[k] >= '0' && s[k] <= '9' && idx < p->n) {
            idx = idx * 10 + (size_t)(s[k++] - '0');
            digits = true;
        }
        if (!digits || idx >= p->n || k + 2 > len || s[k] != '@' || s[k + 1] != '@')
            return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                              "chat template: a message's content came out of the template "
                              "altered (offset %zu of the prompt); llmos cannot tell the "
                              "template's text from the message's, so it refuses to build "
                              "the prompt",
                              at);
        size_t end = k + 2;
        const lc_piece *pc = &p->v[idx];
        const char *text = pc->text;
        size_t tl = pc->len;
        if (at > start && s[at - 1] == '"' && end < len && s[end] == '"') {
            at--; /* the template wrote it through tojson: use the value's tojson text */
            end++;
            text = pc->quoted;
            tl = strlen(pc->quoted);
        }
        if (!pc->args && trims) {
            while (tl > 0 && lc_space(text[0]))
                text++, tl--;
            while (tl > 0 && lc_space(text[tl - 1]))
                tl--;
        }
        if ((err = lc_template_piece(ids, t, s, start, at, p->nonce)))
            break;
        size_t b = ids->n;
        if ((err = lc_push(ids, t, text, tl, 0)))
            break;
        err = lc_span(spans, n_spans, &cap, b, ids->n);
        start = pos = end;
    }
    if (!err)
        err = lc_template_piece(ids, t, s, start, len, p->nonce);
    return err;
}

/* The text of a special token as a C string ("" when the vocabulary has none); malloc'd. */
static char *lc_special_text(const tokenizer *t, int32_t id)
{
    size_t len = 0;
    const char *p = id >= 0 ? tok_piece(t, id, &len) : NULL;
    return p ? strndup(p, len) : strdup("");
}

llmos_err local_chat_tokenize(const tokenizer *t, const char *tmpl, const json_t *messages,
                              const json_t *tools, bool add_generation_prompt, int32_t **ids,
                              size_t *n_ids, size_t **spans, size_t *n_spans)
{
    *ids = NULL;
    *n_ids = 0;
    if (spans) {
        *spans = NULL;
        *n_spans = 0;
    }
    if (!t || !tmpl || !json_is_array(messages))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "local_chat_tokenize: a tokenizer, a template and a messages array "
                          "are required");
    lc_pieces p = {0};
    uint8_t rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return llmos_fail(LLMOS_ERR_IO, "local_chat_tokenize: the OS gave no random bytes");
    llmos_hex_encode(p.nonce, sizeof p.nonce, rnd, sizeof rnd);

    json_t *copy = json_deep_copy(messages);
    llmos_buf out = {0};
    lc_ids d = {0};
    llmos_err err = copy ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err)
        err = lc_sentinelize(copy, &p);
    json_t *tools_copy = json_is_array(tools) ? json_deep_copy(tools) : NULL;
    if (!err && json_is_array(tools) && !tools_copy)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err && tools_copy)
        err = lc_sentinelize_tools(tools_copy, &p);
    char *bos = lc_special_text(t, tok_bos(t)), *eos = lc_special_text(t, tok_eos(t));
    if (!err && (!bos || !eos))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err)
        err = chat_render(tmpl, copy, tools_copy, add_generation_prompt, bos, eos, NULL, &out);
    free(bos);
    free(eos);
    if (!err)
        err = lc_split(t, tmpl, out.data ? out.data : "", out.len, &p, &d, spans, n_spans);
    /* A model that wants BOS gets it once, whether or not its template writes bos_token. */
    if (!err && tok_bos(t) >= 0) {
        int32_t *probe = NULL;
        size_t np = 0;
        if (!tok_encode(t, "", 0, TOK_ADD_SPECIAL, &probe, &np) && np >= 1 &&
            probe[0] == tok_bos(t) && (d.n == 0 || d.v[0] != tok_bos(t))) {
            int32_t *nv = realloc(d.v, (d.n + 1) * sizeof *nv);
            if (!nv) {
                err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            } else {
                memmove(nv + 1, nv, d.n * sizeof *nv);
                nv[0] = tok_bos(t);
                d.v = nv;
                d.n++;
                for (size_t i = 0; spans && i < *n_spans; i++)
                    (*spans)[i]++;
            }
        }
        free(probe);
    }
    if (!err && !d.v && !(d.v = malloc(sizeof *d.v)))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    json_decref(copy);
    json_decref(tools_copy);
    buf_free(&out);
    lc_pieces_free(&p);
    if (err) {
        free(d.v);
        if (spans) {
            free(*spans);
            *spans = NULL;
            *n_spans = 0;
        }
        return err;
    }
    *ids = d.v;
    *n_ids = d.n;
    return LLMOS_OK;
}

/* ---- the backend ------------------------------------------------------------------------- */

typedef struct local_backend {
    llm_backend base;
    llmos_model *model;
    tokenizer *tok;
    llmos_pool *pool;
    local_batcher *batcher; /* every chat's sequence and forward pass (batcher.h); NULL for an
                               encoder, which only embeds */
    pthread_mutex_t embed_mu; /* an encoder's embeddings, one at a time on the pool */
    uint32_t n_ctx, max_seqs;
    char *tmpl;
    char *name;
    toolcall_family family;
    pthread_mutex_t gv_mu;
    grammar_vocab *gv;      /* built on the first constrained request, under gv_mu */
    bool borrowed;          /* a fork: model and tokenizer are its parent's */
} local_backend;

/* Which tool-call format the model's template speaks. */
static toolcall_family lb_family(const char *tmpl)
{
    if (strstr(tmpl, "[TOOL_CALLS]"))
        return TOOLCALL_MISTRAL;
    if (strstr(tmpl, "<tool_call>"))
        return TOOLCALL_HERMES;
    if (strstr(tmpl, "<|python_tag|>") || strstr(tmpl, "ipython"))
        return TOOLCALL_LLAMA3;
    return TOOLCALL_HERMES;
}

/* The grammar a request asks for, or NULL (no constraint). */
static llmos_err lb_grammar_for(local_backend *lb, const llm_request *req, bool *tools_on,
                                grammar **out)
{
    *out = NULL;
    *tools_on = false;
    llmos_buf g = {0};
    const char *start = NULL; /* start rule; NULL = "root" */
    llmos_err err = LLMOS_OK;
    const char *tc = req->tool_choice;
    bool have_tools = json_is_array(req->tools) && json_array_size(req->tools) > 0;
    if (have_tools && !(tc && strcmp(tc, "none") == 0)) {
        *tools_on = true;
        toolcall_mode mode = TOOLCALL_AUTO;
        const char *only = NULL;
        if (tc && strcmp(tc, "required") == 0)
            mode = TOOLCALL_REQUIRED;
        else if (tc && strcmp(tc, "auto") != 0) {
            mode = TOOLCALL_REQUIRED;
            only = tc;
        }
        err = toolcall_grammar(req->tools, lb->family, mode, only, &g);
    } else if (req->response_format) {
        const char *type = ljson_get_string(req->response_format, "type", "text");
        if (strcmp(type, "json_object") == 0) {
            /* the generic grammar's `object` rule: json_object promises an object, not any
             * JSON value */
            err = jschema_grammar_generic(&g);
            start = "object";
        } else if (strcmp(type, "json_schema") == 0) {
            json_t *js = ljson_get_object(req->response_format, "json_schema");
            json_t *schema = ljson_get_object(js, "schema");
            if (!schema)
                err = llmos_fail(LLMOS_ERR_INVALID, "response_format json_schema has no "
                                                    "json_schema.schema object");
            else
                err = jschema_to_grammar(schema, NULL, &g);
        } else if (strcmp(type, "text") != 0) {
            err = llmos_fail(LLMOS_ERR_INVALID,
                             "response_format type '%s' is unknown (text, json_object or "
                             "json_schema)",
                             type);
        }
    }
    if (!err && g.len > 0) {
        err = grammar_parse(g.data, g.len, start, out);
        pthread_mutex_lock(&lb->gv_mu);
        if (!err && !lb->gv)
            err = grammar_vocab_new(lb->tok, &lb->gv);
        pthread_mutex_unlock(&lb->gv_mu);
        if (err) {
            grammar_free(*out);
            *out = NULL;
        }
    }
    buf_free(&g);
    return err;
}

static char *lb_call_id(void)
{
    uint8_t r[12];
    char *s = malloc(5 + 2 * sizeof r + 1);
    if (!s)
        return NULL;
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        memset(r, 0, sizeof r);
    memcpy(s, "call_", 5);
    llmos_hex_encode(s + 5, 2 * sizeof r + 1, r, sizeof r);
    return s;
}

/* The finish reason a client sees for a stop of the generation loop. */
static const char *lb_finish_reason(gen_stop stop)
{
    switch (stop) {
    case GEN_STOP_LENGTH:
    case GEN_STOP_CONTEXT: return "length";
    case GEN_STOP_EOG:
    case GEN_STOP_TOKEN:
    case GEN_STOP_STRING:
    case GEN_STOP_GRAMMAR: return "stop";
    case GEN_STOP_CALLBACK:
    case GEN_STOP_CANCELLED: return "cancelled";
    }
    return "stop";
}

/* What the generation loop's emit callback passes on to the client's stream. */
typedef struct lb_stream {
    llm_stream_fn fn; /* NULL: nothing is streamed */
    void *ctx;
    size_t sent; /* bytes streamed so far */
} lb_stream;

static bool lb_emit(void *user, int32_t token, const char *text, size_t len)
{
    lb_stream *st = user;
    (void)token;
    if (!st->fn || len == 0)
        return true;
    st->sent += len;
    return st->fn(st->ctx, text, len);
}

/* Whether the generation ended before the model finished its reply. */
static bool lb_cut_short(gen_stop stop)
{
    return stop == GEN_STOP_LENGTH || stop == GEN_STOP_CONTEXT || stop == GEN_STOP_CALLBACK ||
           stop == GEN_STOP_CANCELLED;
}

/* Parse the tool calls out of the reply in g->text into resp; g->text becomes the content,
 * the text outside them. */
static llmos_err lb_tool_calls(const local_backend *lb, gen_loop *g, llm_response *resp,
                               const char **finish)
{
    llmos_buf *text = &g->text;
    /* cut short in the middle of a further call: keep the calls that were complete */
    if (g->gr && !grammar_accepting(g->gr) && g->complete > 0 && g->complete < text->len) {
        text->len = g->complete;
        text->data[g->complete] = 0;
    }
    toolcall_result tr = {0};
    llmos_err err = toolcall_parse(lb->family, text->data ? text->data : "", text->len, &tr);
    if (err && lb_cut_short(g->st.stop)) {
        /* The limit (or a cancel) cut the first call off, which is not the model's error: the
         * answer is the text generated so far, with no calls, trimmed as content always is.
         * (Reporting the parse error made a server answer 400 to a request that was fine.) */
        llmos_err_clear();
        assert(text->data); /* empty text parses */
        size_t a = 0, e = text->len;
        while (a < e && isspace((unsigned char)text->data[a]))
            a++;
        while (e > a && isspace((unsigned char)text->data[e - 1]))
            e--;
        memmove(text->data, text->data + a, e - a);
        text->len = e - a;
        text->data[text->len] = 0;
        toolcall_result_free(&tr);
        return LLMOS_OK;
    }
    if (!err && tr.n_calls > 0) {
        resp->tool_calls = calloc(tr.n_calls, sizeof *resp->tool_calls);
        if (!resp->tool_calls) {
            toolcall_result_free(&tr);
            return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; !err && i < tr.n_calls; i++) {
            llm_tool_call *c = &resp->tool_calls[i];
            resp->n_tool_calls++;
            c->id = tr.calls[i].id ? strdup(tr.calls[i].id) : lb_call_id();
            c->name = strdup(tr.calls[i].name);
            c->arguments = strdup(tr.calls[i].arguments);
            if (!c->id || !c->name || !c->arguments)
                err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        }
        if (strcmp(*finish, "cancelled") != 0)
            *finish = "tool_calls";
    }
    if (!err) {
        buf_clear(text);
        err = buf_puts(text, tr.content);
    }
    toolcall_result_free(&tr);
    return err;
}

static llmos_err lb_chat(llm_backend *b, const llm_request *req, llm_stream_fn stream,
                         void *stream_ctx, llm_response *resp)
{
    local_backend *lb = (local_backend *)b;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    grammar *gr = NULL;
    bool tools_on = false;
    gen_loop g = {0};
    local_seq *seq = NULL;
    llmos_err err;

    if (!lb->batcher) /* an encoder (BGE, MiniLM) embeds but does not generate */
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "local backend: %s is an embedding model; it cannot chat or complete",
                          lb->name);
    if (req->prompt)
        err = tok_encode(lb->tok, req->prompt, strlen(req->prompt), TOK_ADD_SPECIAL, &prompt,
                         &n_prompt);
    else
        err = local_chat_tokenize(
            lb->tok, lb->tmpl, req->messages,
            req->tool_choice && strcmp(req->tool_choice, "none") == 0 ? NULL : req->tools, true,
            &prompt, &n_prompt, NULL, NULL);
    if (err)
        goto done;
    if (n_prompt == 0) {
        err = llmos_fail(LLMOS_ERR_INVALID, "local backend: the prompt gives no tokens");
        goto done;
    }
    size_t n_ctx = lb->n_ctx;
    if (n_prompt >= n_ctx) {
        err = llmos_fail(LLMOS_ERR_CONTEXT,
                         "local backend: the prompt has %zu tokens but the context holds %zu; "
                         "shorten the conversation or open the backend with a larger n_ctx",
                         n_prompt, n_ctx);
        goto done;
    }
    if (!req->prompt && (err = lb_grammar_for(lb, req, &tools_on, &gr)))
        goto done;

    /* A sequence (KV cache) for this chat: the one of its scope that shares the longest
     * prefix with the prompt, so that only the rest is evaluated. Without a scope nothing is
     * shared, except that a backend of one sequence keeps its one conversation as before. */
    const char *scope = req->cache_scope ? req->cache_scope : lb->max_seqs == 1 ? "" : NULL;
    size_t common = 0;
    err = local_batcher_admit(lb->batcher, scope, prompt, n_prompt, req->cancel, &seq, &common);
    if (err == LLMOS_ERR_CANCELLED && req->cancel && atomic_load(req->cancel)) {
        llmos_err_clear(); /* cancelled before its turn: an empty answer */
        resp->prompt_tokens = (uint32_t)n_prompt;
        resp->finish_reason = "cancelled";
        resp->content = strdup("");
        err = resp->content ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (err)
        goto done;
    LOG_DEBUG(LOCAL_LOG, "prompt %zu tokens, %zu reused from the KV cache", n_prompt, common);

    /* With tools the reply is parsed at the end, so special tokens are kept in the text, and
     * the loop streams only what cannot be part of a call (a tool call must not reach the user
     * as text); the rest of the content follows the parse. */
    gen_params gp = gen_default_params();
    gp.n_predict = req->max_tokens > 0 ? (uint32_t)req->max_tokens : UINT32_MAX;
    gp.sampling = req->sampling;
    gp.stop_strings = req->stop;
    gp.n_stop_strings = req->n_stop;
    lb_stream st = {.fn = stream, .ctx = stream_ctx};
    g = (gen_loop){.ctx = local_seq_ctx(seq),
                   .tok = lb->tok,
                   .p = &gp,
                   .gr = gr,
                   .gv = lb->gv,
                   .scratch = local_seq_scratch(seq),
                   .cancel = req->cancel,
                   .tool_calls = tools_on,
                   .family = lb->family,
                   .eval = local_batcher_eval,
                   .eval_user = seq,
                   .prompt_chunk = GEN_PROMPT_CHUNK,
                   .emit = lb_emit,
                   .user = &st};
    if ((err = gen_loop_run(&g, prompt, n_prompt, common)))
        goto done;
    resp->prompt_tokens = (uint32_t)n_prompt;
    resp->cached_tokens = (uint32_t)common;
    resp->prompt_seconds = g.st.prompt_seconds;
    resp->completion_tokens = (uint32_t)g.st.n_generated;
    resp->gen_seconds = g.st.gen_seconds;
    const char *finish = lb_finish_reason(g.st.stop);
    bool cancelled = strcmp(finish, "cancelled") == 0;

    if (tools_on) {
        if ((err = lb_tool_calls(lb, &g, resp, &finish)))
            goto done;
        /* what was streamed is the start of the content (toolcall_answer_span): send the rest */
        if (stream && g.text.len > st.sent && !cancelled)
            (void)stream(stream_ctx, g.text.data + st.sent, g.text.len - st.sent);
    }
    resp->finish_reason = finish;
    resp->content = buf_detach(&g.text, NULL);
    if (!resp->content)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
done:
    local_batcher_release(lb->batcher, seq, !err);
    if (err)
        llm_response_free(resp);
    buf_free(&g.text);
    grammar_free(gr);
    free(prompt);
    return err;
}

static llmos_err lb_count_tokens(llm_backend *b, const char *text, size_t len, size_t *n)
{
    local_backend *lb = (local_backend *)b;
    int32_t *ids = NULL;
    llmos_err err = tok_encode(lb->tok, text, len, 0, &ids, n);
    free(ids);
    return err;
}

/* The prompt a chat request would evaluate, counted exactly: the template rendered and
 * tokenized as lb_chat does. */
static llmos_err lb_count_prompt(llm_backend *b, const json_t *messages, const json_t *tools,
                                 size_t *n)
{
    local_backend *lb = (local_backend *)b;
    int32_t *ids = NULL;
    llmos_err err =
        local_chat_tokenize(lb->tok, lb->tmpl, messages, tools, true, &ids, n, NULL, NULL);
    free(ids);
    return err;
}

/* ---- embeddings (see model/embed.c) ---------------------------------------------------------- */

typedef struct lb_embed_job {
    local_backend *lb;
    const int32_t *ids;
    size_t n;
    float *out;
    size_t dim;
    llmos_err err;
} lb_embed_job;

static void lb_embed_run(void *user)
{
    lb_embed_job *j = user;
    model_ctx_params cp = model_ctx_default_params();
    cp.n_batch = 256;
    cp.pool = j->lb->pool;
    j->err = model_embed(j->lb->model, &cp, j->ids, j->n, j->out, j->dim);
}

/* The text as plain text (special-token parsing off, BOS as the tokenizer says), truncated to
 * the backend's context with a warning, embedded by model_embed in a context of its own (the
 * chat's KV cache is left as it was). */
static size_t lb_context_size(llm_backend *b);

static llmos_err lb_embed(llm_backend *b, const char *text, size_t len, float **vec, size_t *dim)
{
    local_backend *lb = (local_backend *)b;
    *vec = NULL;
    *dim = 0;
    int32_t *ids = NULL;
    size_t n = 0;
    llmos_err err = tok_encode(lb->tok, text, len, TOK_ADD_SPECIAL, &ids, &n);
    if (err)
        return llmos_fail_context(err, "local backend embed: ");
    bool encoder = model_hparams_of(lb->model)->encoder;
    if (!encoder && tok_adds_eos(lb->tok) && n > 0 && ids[n - 1] == tok_eos(lb->tok))
        n--; /* only BOS is wanted: an appended EOS is not part of the text */
    if (n == 0) {
        free(ids);
        return llmos_fail(LLMOS_ERR_INVALID, "local backend embed: the text gives no tokens to "
                                             "embed (pass a non-empty text)");
    }
    size_t limit = lb->n_ctx;
    if (n > limit) {
        LOG_WARN(LOCAL_LOG,
                 "embed: the text is %zu tokens, more than the context of %zu; only the first "
                 "%zu are embedded",
                 n, limit, limit);
        if (encoder && tok_adds_eos(lb->tok))
            ids[limit - 1] = tok_eos(lb->tok); /* BERT reads [CLS] text [SEP] */
        n = limit;
    }
    size_t d = model_hparams_of(lb->model)->n_embd;
    float *v = malloc(d * sizeof *v);
    if (!v) {
        free(ids);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    lb_embed_job job = {.lb = lb, .ids = ids, .n = n, .out = v, .dim = d};
    if (lb->batcher) {
        local_batcher_exclusive(lb->batcher, lb_embed_run, &job); /* the pool is the chats' too */
    } else {
        pthread_mutex_lock(&lb->embed_mu);
        lb_embed_run(&job);
        pthread_mutex_unlock(&lb->embed_mu);
    }
    err = job.err;
    free(ids);
    if (err) {
        free(v);
        return err;
    }
    *vec = v;
    *dim = d;
    return LLMOS_OK;
}

/* ---- end of embeddings ---------------------------------------------------------------- */

static size_t lb_context_size(llm_backend *b)
{
    return ((local_backend *)b)->n_ctx;
}

static size_t lb_max_concurrent(llm_backend *b)
{
    local_backend *lb = (local_backend *)b;
    return lb->max_seqs ? lb->max_seqs : 1; /* an encoder: one embedding at a time */
}

/* An encoder has no KV cache to save or restore. */
static llmos_err lb_no_cache(const local_backend *lb)
{
    return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                      "local backend: %s is an embedding model; it keeps no KV cache", lb->name);
}

static llmos_err lb_kv_save(llm_backend *b, const char *scope, llmos_buf *out)
{
    local_backend *lb = (local_backend *)b;
    return lb->batcher ? local_batcher_save(lb->batcher, scope, out) : lb_no_cache(lb);
}

static llmos_err lb_kv_restore(llm_backend *b, const char *scope, const void *data, size_t len)
{
    local_backend *lb = (local_backend *)b;
    return lb->batcher ? local_batcher_restore(lb->batcher, scope, data, len) : lb_no_cache(lb);
}

static size_t lb_kv_forget(llm_backend *b, const char *scope)
{
    local_backend *lb = (local_backend *)b;
    return lb->batcher ? local_batcher_forget(lb->batcher, scope) : 0;
}

static llmos_err lb_stats(llm_backend *b, llm_stats *st)
{
    local_batcher_stats bs = {0};
    if (((local_backend *)b)->batcher)
        local_batcher_get_stats(((local_backend *)b)->batcher, &bs);
    *st = (llm_stats){.steps = bs.steps,
                      .tokens = bs.tokens,
                      .cached_tokens = bs.cached_tokens,
                      .swaps_out = bs.swaps_out,
                      .swaps_in = bs.swaps_in,
                      .running = bs.running,
                      .waiting = bs.waiting,
                      .last_batch = bs.last_batch,
                      .kept = bs.kept,
                      .swapped = bs.swapped,
                      .kv_used = bs.kv_used,
                      .kv_budget = bs.kv_budget};
    return LLMOS_OK;
}

static const char *lb_model_name(llm_backend *b)
{
    return ((local_backend *)b)->name;
}

static void lb_free(llm_backend *b)
{
    local_backend *lb = (local_backend *)b;
    if (!lb)
        return;
    grammar_vocab_free(lb->gv);
    local_batcher_free(lb->batcher);
    pool_free(lb->pool);
    pthread_mutex_destroy(&lb->gv_mu);
    pthread_mutex_destroy(&lb->embed_mu);
    if (!lb->borrowed) {
        tok_free(lb->tok);
        model_free(lb->model);
    }
    free(lb->tmpl);
    free(lb->name);
    free(lb);
}

static const llm_backend_ops local_ops = {
    .kind = "local",
    .chat = lb_chat,
    .embed = lb_embed,
    .count_tokens = lb_count_tokens,
    .context_size = lb_context_size,
    .model_name = lb_model_name,
    .free = lb_free,
    .count_prompt = lb_count_prompt,
    .max_concurrent = lb_max_concurrent,
    .stats = lb_stats,
    .kv_save = lb_kv_save,
    .kv_restore = lb_kv_restore,
    .kv_forget = lb_kv_forget,
};

/* The batcher of a backend over `lb->model`, sized by p (see local_backend_params). */
static llmos_err lb_start(local_backend *lb, const local_backend_params *p)
{
    lb->max_seqs = p->max_seqs ? p->max_seqs : 1;
    uint32_t n_batch = p->n_batch ? p->n_batch : 256;
    if (n_batch < lb->max_seqs)
        n_batch = lb->max_seqs;
    if (n_batch > lb->n_ctx * lb->max_seqs)
        n_batch = lb->n_ctx * lb->max_seqs;
    local_batcher_params bp = {
        .model = lb->model,
        .pool = lb->pool,
        .n_ctx = lb->n_ctx,
        .n_batch = n_batch,
        .max_seqs = lb->max_seqs,
        .kv_mem = p->kv_mem ? p->kv_mem
                            : lb->max_seqs * model_kv_bytes(lb->model, lb->n_ctx, GGML_TYPE_F32),
        .kv_type = GGML_TYPE_F32,
    };
    return local_batcher_new(&bp, &lb->batcher);
}

local_backend_params local_backend_default_params(void)
{
    return (local_backend_params){0};
}

llmos_err local_backend_open(const char *model_path, const local_backend_params *p,
                             llm_backend **out)
{
    *out = NULL;
    local_backend_params dp = local_backend_default_params();
    if (!p)
        p = &dp;
    local_backend *lb = calloc(1, sizeof *lb);
    if (!lb)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    lb->base.ops = &local_ops;
    pthread_mutex_init(&lb->gv_mu, NULL);
    pthread_mutex_init(&lb->embed_mu, NULL);
    llmos_err err = model_load(model_path, &lb->model);
    if (!err)
        err = tok_load_gguf(model_gguf(lb->model), model_path, &lb->tok);
    if (err)
        goto fail;
    const model_hparams *hp = model_hparams_of(lb->model);
    const gguf_file *f = model_gguf(lb->model);
    const char *used = NULL;
    const char *tmpl =
        p->chat_template
            ? p->chat_template
            : chat_template_for(gguf_get_str(f, "tokenizer.chat_template", NULL), &used);
    if (used && strcmp(used, CHAT_FALLBACK_NAME) == 0)
        LOG_WARN(LOCAL_LOG, "%s has no tokenizer.chat_template; using the %s template", model_path,
                 CHAT_FALLBACK_NAME);
    lb->tmpl = strdup(tmpl);
    const char *name = gguf_get_str(f, "general.name", NULL);
    if (!name) {
        const char *slash = strrchr(model_path, '/');
        name = slash ? slash + 1 : model_path;
    }
    lb->name = strdup(name);
    if (!lb->tmpl || !lb->name) {
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        goto fail;
    }
    lb->family = lb_family(lb->tmpl);
    if ((err = pool_new(p->n_threads, &lb->pool)))
        goto fail;
    uint32_t n_ctx = p->n_ctx ? p->n_ctx : hp->n_ctx_train;
    if (!p->n_ctx && n_ctx > LOCAL_MAX_CTX)
        n_ctx = LOCAL_MAX_CTX;
    if (n_ctx > hp->n_ctx_train) {
        err = llmos_fail(LLMOS_ERR_LIMIT,
                         "context of %u positions asked for, but the model's context length "
                         "(%s.context_length) is %u",
                         n_ctx, hp->arch_name, hp->n_ctx_train);
        goto fail;
    }
    lb->n_ctx = n_ctx;
    if (!hp->encoder && (err = lb_start(lb, p)))
        goto fail; /* (an encoder has no KV cache: it only embeds) */
    *out = &lb->base;
    return LLMOS_OK;
fail:
    lb_free(&lb->base);
    return llmos_fail_context(err, "opening %s as a local backend: ", model_path);
}

llmos_err local_backend_fork(llm_backend *parent, llm_backend **out)
{
    *out = NULL;
    if (!parent || parent->ops != &local_ops)
        return llmos_fail(LLMOS_ERR_INVALID, "local_backend_fork needs a local backend");
    const local_backend *pb = (const local_backend *)parent;
    local_backend *lb = calloc(1, sizeof *lb);
    if (!lb)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    lb->base.ops = &local_ops;
    lb->borrowed = true;
    lb->model = pb->model;
    lb->tok = pb->tok;
    lb->family = pb->family;
    lb->tmpl = strdup(pb->tmpl);
    lb->name = strdup(pb->name);
    pthread_mutex_init(&lb->gv_mu, NULL);
    pthread_mutex_init(&lb->embed_mu, NULL);
    llmos_err err = LLMOS_OK;
    if (!lb->tmpl || !lb->name)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err)
        err = pool_new(pool_threads(pb->pool), &lb->pool);
    lb->n_ctx = pb->n_ctx;
    if (!err && pb->batcher) { /* one sequence of the parent's context: a fork is one
                                  conversation; an encoder's fork only embeds */
        local_backend_params fp = {.max_seqs = 1};
        err = lb_start(lb, &fp);
    }
    if (err) {
        lb_free(&lb->base);
        return err;
    }
    *out = &lb->base;
    return LLMOS_OK;
}
