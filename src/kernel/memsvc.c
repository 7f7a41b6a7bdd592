/*
 * memsvc.c - the memory services the kernel lends to the memory tools (llmos/kernel.h,
 * ktool_core_*, ktool_recall_search, ktool_archival_*): each runs on the calling process's
 * principal, under the kernel lock, through memory's calls (llmos/memory.h), and writes what the
 * model reads.
 *
 * What a search returns goes into the privileged context, so the origin of every piece matters:
 * recall holds only what the privileged context held (trusted text and handles' notices, never
 * an untrusted value), so its results are trusted; archival passages stored from untrusted
 * arguments come back as new handles of the calling process, never as text.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"
#include "llmos/memory.h"

#define SHOWN_BYTES 600 /* of each search result */

static kernel *host_kernel(const ktool_env *env)
{
    ktool_host *h = env->host;
    assert(h && h->k && env->principal && env->out);
    return h->k;
}

static llmos_err nomem(void)
{
    return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
}

llmos_err ktool_core_append(const ktool_env *env, const char *label, const char *text)
{
    kernel *k = host_kernel(env);
    kernel_lock(k);
    llmos_err err = memory_core_append(k->cfg.st, env->principal, label, text);
    kernel_unlock(k);
    if (!err && buf_printf(env->out, "appended to core memory block '%s'", label))
        err = nomem();
    return err;
}

llmos_err ktool_core_replace(const ktool_env *env, const char *label, const char *old,
                             const char *text)
{
    kernel *k = host_kernel(env);
    kernel_lock(k);
    llmos_err err = memory_core_replace(k->cfg.st, env->principal, label, old, text);
    kernel_unlock(k);
    if (!err && buf_printf(env->out, "core memory block '%s' updated", label))
        err = nomem();
    return err;
}

/* text cut to SHOWN_BYTES at a character boundary, as "%.*s" arguments. */
static int shown_len(const char *text)
{
    size_t n = strlen(text);
    if (n <= SHOWN_BYTES)
        return (int)n;
    n = SHOWN_BYTES;
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

llmos_err ktool_recall_search(const ktool_env *env, const char *query, int64_t since, int64_t until,
                              size_t page)
{
    kernel *k = host_kernel(env);
    store_message *m = NULL;
    size_t n = 0;
    kernel_lock(k);
    llmos_err err = memory_recall_search(k->cfg.st, env->principal, query, since, until, page,
                                         KTOOL_MEMORY_PAGE, &m, &n);
    kernel_unlock(k);
    if (err)
        return err;
    if (buf_printf(env->out, "%zu messages on page %zu%s", n, page,
                   n == KTOOL_MEMORY_PAGE ? " (ask for the next page for more)" : ""))
        err = nomem();
    for (size_t i = 0; !err && i < n; i++) {
        char when[32] = "?";
        time_t t = (time_t)m[i].created_at;
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        int len = shown_len(m[i].content);
        if (buf_printf(env->out, "\n[%s UTC, %s, %s] %.*s%s", when, m[i].conversation, m[i].role,
                       len, m[i].content, (size_t)len < strlen(m[i].content) ? "..." : ""))
            err = nomem();
    }
    store_messages_free(m, n);
    return err;
}

llmos_err ktool_archival_insert(const ktool_env *env, const char *text)
{
    kernel *k = host_kernel(env);
    int64_t id = 0;
    kernel_lock(k);
    llmos_err err =
        memory_archival_insert(k->cfg.st, env->principal, text, env->untrusted_args, &id);
    kernel_unlock(k);
    if (!err &&
        buf_printf(env->out, "remembered in archival memory as #%" PRId64 "%s", id,
                   env->untrusted_args ? " (untrusted: searches return it as a handle)" : ""))
        err = nomem();
    return err;
}

llmos_err ktool_archival_search(const ktool_env *env, const char *query, size_t page)
{
    kernel *k = host_kernel(env);
    ktool_host *h = env->host;
    store_archival *a = NULL;
    size_t n = 0;
    kernel_lock(k);
    llmos_err err =
        memory_archival_search(k->cfg.st, env->principal, query, page, KTOOL_MEMORY_PAGE, &a, &n);
    kernel_unlock(k);
    if (err)
        return err;
    if (buf_printf(env->out, "%zu passages on page %zu%s", n, page,
                   n == KTOOL_MEMORY_PAGE ? " (ask for the next page for more)" : ""))
        err = nomem();
    for (size_t i = 0; !err && i < n; i++) {
        if (memory_archival_untrusted(&a[i])) {
            /* an untrusted passage: into the process's quarantine, its handle into the text */
            if (!h->p)
                err = buf_printf(env->out, "\n[#%" PRId64 " %.2f] (an untrusted passage)", a[i].id,
                                 a[i].score)
                          ? nomem()
                          : LLMOS_OK;
            else {
                char src[64];
                snprintf(src, sizeof src, "archival:%" PRId64, a[i].id);
                untrusted_text *u = untrusted_new(a[i].text, strlen(a[i].text), src);
                trusted_text handle;
                err = u ? quarantine_put(h->p->q, u, &handle) : nomem();
                if (!err && buf_printf(env->out, "\n[#%" PRId64 " %.2f] untrusted, stored as %s",
                                       a[i].id, a[i].score, handle.text))
                    err = nomem();
            }
            continue;
        }
        int len = shown_len(a[i].text);
        if (buf_printf(env->out, "\n[#%" PRId64 " %.2f] %.*s%s", a[i].id, a[i].score, len,
                       a[i].text, (size_t)len < strlen(a[i].text) ? "..." : ""))
            err = nomem();
    }
    store_archivals_free(a, n);
    return err;
}
