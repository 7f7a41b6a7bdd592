/*
 * calls.c - the memory calls: what the memory tools (core_memory_append, core_memory_replace,
 * conversation_search, archival_memory_insert, archival_memory_search) and the sessions do to a
 * principal's memory, MemGPT's three levels:
 *
 *   core      a few small blocks always in the context (persona: who the agent is; human: what
 *             it knows of the user; any the user adds), each with a size limit
 *   recall    every message ever said, searchable by words and dates (FTS5)
 *   archival  passages the model chose to keep, searchable by meaning (embeddings)
 *
 * Every function is per principal: the store keeps the principal with each row and never
 * returns another's. Archival passages that came from untrusted data are marked so (metadata
 * "origin": "untrusted"), and the kernel hands them back as handles, never as text.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/memory.h"

static const char *const default_blocks[][2] = {
    {"persona", "I am an agent of llmos. I keep what I learn about the user in core memory."},
    {"human", ""},
};

llmos_err memory_core_list(store *s, const char *principal, store_core_block **out, size_t *n)
{
    assert(s && principal && out && n);
    llmos_err err = store_core_list(s, principal, out, n);
    if (err || *n > 0)
        return err;
    for (size_t i = 0; !err && i < LLMOS_ARRAY_LEN(default_blocks); i++)
        err = store_core_set(s, principal, default_blocks[i][0], default_blocks[i][1],
                             MEMORY_CORE_DEFAULT_LIMIT);
    return err ? err : store_core_list(s, principal, out, n);
}

/* Check a label: a short name of letters, digits, '_' and '-'. */
static llmos_err check_label(const char *label)
{
    size_t n = label ? strlen(label) : 0;
    if (n == 0 || n > 64)
        return llmos_fail(LLMOS_ERR_INVALID, "a core memory label has 1 to 64 characters");
    for (size_t i = 0; i < n; i++) {
        char c = label[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "core memory label '%.64s': use letters, digits, '_' and '-'", label);
    }
    return LLMOS_OK;
}

/* Set block `label` to `value` within its limit, saying how far over when it is not. */
static llmos_err set_within(store *s, const char *principal, const char *label, const char *value,
                            size_t limit)
{
    size_t len = strlen(value);
    if (len > limit)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "core memory block '%s' holds at most %zu bytes; this would make it "
                          "%zu (%zu over): shorten it with core_memory_replace first",
                          label, limit, len, len - limit);
    return store_core_set(s, principal, label, value, limit);
}

llmos_err memory_core_append(store *s, const char *principal, const char *label, const char *text)
{
    assert(s && principal);
    llmos_err err = check_label(label);
    if (err)
        return err;
    if (!text || !*text)
        return llmos_fail(LLMOS_ERR_INVALID, "core_memory_append: nothing to append");
    char *old = NULL;
    size_t limit = MEMORY_CORE_DEFAULT_LIMIT;
    err = store_core_get(s, principal, label, &old, &limit);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        err = LLMOS_OK;
    }
    llmos_buf b = {0};
    if (!err && ((old && *old && (buf_puts(&b, old) || buf_putc(&b, '\n'))) || buf_puts(&b, text)))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    if (!err)
        err = set_within(s, principal, label, b.data, limit);
    free(old);
    buf_free(&b);
    return err;
}

llmos_err memory_core_replace(store *s, const char *principal, const char *label, const char *old,
                              const char *text)
{
    assert(s && principal);
    llmos_err err = check_label(label);
    if (err)
        return err;
    if (!old || !*old || !text)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "core_memory_replace needs the text to find and the text to put");
    char *value = NULL;
    size_t limit = 0;
    err = store_core_get(s, principal, label, &value, &limit);
    if (err)
        return err;
    const char *at = strstr(value, old);
    if (!at) {
        err = llmos_fail(LLMOS_ERR_NOT_FOUND,
                         "core memory block '%s' does not contain the text to replace", label);
        free(value);
        return err;
    }
    llmos_buf b = {0};
    if (buf_append(&b, value, (size_t)(at - value)) || buf_puts(&b, text) ||
        buf_puts(&b, at + strlen(old)))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    if (!err)
        err = set_within(s, principal, label, b.data ? b.data : "", limit);
    free(value);
    buf_free(&b);
    return err;
}

static llmos_err check_page(size_t page_size)
{
    if (page_size == 0 || page_size > MEMORY_PAGE_MAX)
        return llmos_fail(LLMOS_ERR_INVALID, "a page holds 1 to %d results, not %zu",
                          MEMORY_PAGE_MAX, page_size);
    return LLMOS_OK;
}

llmos_err memory_recall_search(store *s, const char *principal, const char *query, int64_t since,
                               int64_t until, size_t page, size_t page_size, store_message **out,
                               size_t *n)
{
    assert(s && principal && out && n);
    *out = NULL;
    *n = 0;
    llmos_err err = check_page(page_size);
    if (err)
        return err;
    if (since < 0 || until < 0 || (since && until && until < since))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "the date range ends (%lld) before it starts (%lld): give the earlier "
                          "date first",
                          (long long)until, (long long)since);
    if (page > 100000)
        return llmos_fail(LLMOS_ERR_INVALID, "page %zu is beyond any conversation", page);
    store_search_opts o = {.principal = principal,
                           .since = since,
                           .until = until,
                           .limit = page_size,
                           .offset = page * page_size};
    return store_message_search(s, query ? query : "", &o, out, n);
}

llmos_err memory_archival_insert(store *s, const char *principal, const char *text, bool untrusted,
                                 int64_t *id)
{
    assert(s && principal);
    if (!text || !*text)
        return llmos_fail(LLMOS_ERR_INVALID, "archival memory: nothing to remember");
    return store_archival_add(
        s, principal, text, untrusted ? "{\"origin\":\"untrusted\"}" : "{\"origin\":\"user\"}", id);
}

llmos_err memory_archival_search(store *s, const char *principal, const char *query, size_t page,
                                 size_t page_size, store_archival **out, size_t *n)
{
    assert(s && principal && out && n);
    *out = NULL;
    *n = 0;
    llmos_err err = check_page(page_size);
    if (err)
        return err;
    if (page > 1000)
        return llmos_fail(LLMOS_ERR_INVALID, "page %zu is beyond what archival search returns",
                          page);
    /* the search returns the best (page+1)*page_size; the page is their tail */
    store_archival *all = NULL;
    size_t got = 0;
    err =
        store_archival_search(s, principal, query ? query : "", (page + 1) * page_size, &all, &got);
    if (err || got <= page * page_size) {
        store_archivals_free(all, got);
        return err;
    }
    size_t first = page * page_size, cnt = got - first;
    store_archival *res = calloc(cnt, sizeof *res);
    if (!res) {
        store_archivals_free(all, got);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for search results");
    }
    memcpy(res, all + first, cnt * sizeof *res);
    for (size_t i = 0; i < first; i++)
        store_archival_clear(&all[i]);
    free(all);
    *out = res;
    *n = cnt;
    return LLMOS_OK;
}

bool memory_archival_untrusted(const store_archival *a)
{
    json_t *meta = NULL;
    bool untrusted = true; /* unreadable metadata: the safe answer */
    if (a->metadata &&
        ljson_parse_text(a->metadata, strlen(a->metadata), "metadata", 4, &meta) == LLMOS_OK)
        untrusted = strcmp(ljson_get_string(meta, "origin", "user"), "untrusted") == 0;
    llmos_err_clear();
    json_decref(meta);
    return untrusted;
}
