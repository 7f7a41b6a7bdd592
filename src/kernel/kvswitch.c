/*
 * kvswitch.c - context switches across restarts: a principal's KV cache kept in the store.
 *
 * A backend that batches keeps, per cache scope, the KV cache the latest finished chat left
 * (the prefix cache); the kernel's scope is the principal, so users never share. When a
 * session closes, kernel_kv_save asks the privileged backend for that cache as bytes (a KV
 * snapshot: format version, model digest, shapes, token ids, rows, checksum; llmos/infer.h)
 * and keeps it in the store as the principal's snapshot "kv" (store_snapshot_put: the pages
 * that hold it are sealed like every other). When a session opens, kernel_kv_restore hands it
 * back to the backend, so the first request of the conversation resumed tomorrow starts from
 * its prompt's cache instead of evaluating it again. A cache is saved only when a model call
 * of the principal was answered (not cancelled or killed) since the session opened.
 *
 * The backend checks what it is given: a snapshot of another model (its digest) or a corrupted
 * one is refused, audited ("kv.restore" with the reason), and forgotten, never used. Nothing
 * here is fatal: a session opens and closes whether or not its cache could be kept; the audit
 * log says what happened. Only with kernel_config.keep_kv (a store on disk).
 */
#include <stdlib.h>
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/storage.h"

#define KV_SNAPSHOT_NAME "kv"

static bool kv_switching(const kernel *k)
{
    return k->cfg.keep_kv && k->cfg.privileged && k->cfg.privileged->ops->kv_save &&
           k->cfg.privileged->ops->kv_restore;
}

void kernel_kv_save(kernel *k, const char *principal)
{
    /* only a cache that an answered model call changed: nothing new after a restore, and
     * nothing worth the write when the last call was killed (the shell exits at once) */
    if (!kv_switching(k) || !ksched_take_kv_dirty(&k->sched, principal))
        return;
    llmos_buf b = {0};
    double t0 = llmos_time_now();
    llmos_err err = llm_kv_save(k->cfg.privileged, principal, &b);
    if (err == LLMOS_ERR_NOT_FOUND) { /* nothing kept for this principal: nothing to save */
        llmos_err_clear();
        buf_free(&b);
        return;
    }
    model_kv_header h = {0};
    char digest[2 * MODEL_DIGEST_BYTES + 1] = "";
    if (!err)
        err = model_kv_peek((const uint8_t *)b.data, b.len, &h);
    if (!err) {
        llmos_hex_encode(digest, sizeof digest, h.digest, sizeof h.digest);
        kernel_lock(k);
        err = store_snapshot_put(k->cfg.st, principal, KV_SNAPSHOT_NAME, digest, (int64_t)h.n_pos,
                                 b.data, b.len);
        kernel_unlock(k);
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    if (err)
        LOG_WARN("kernel", "the KV cache of '%s' could not be kept: %s", principal, msg);
    (void)kernel_audit_rec(k, "kv.save",
                           json_pack("{s:s, s:s, s:I, s:I, s:s, s:f}", "principal", principal,
                                     "status", err ? llmos_strerror(err) : "ok", "tokens",
                                     (json_int_t)h.n_pos, "bytes", (json_int_t)b.len, "model",
                                     digest, "seconds", llmos_time_now() - t0));
    buf_free(&b);
}

void kernel_kv_restore(kernel *k, const char *principal)
{
    if (!kv_switching(k))
        return;
    store_snapshot sn;
    double t0 = llmos_time_now();
    kernel_lock(k);
    llmos_err err = store_snapshot_get(k->cfg.st, principal, KV_SNAPSHOT_NAME, &sn);
    kernel_unlock(k);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        return;
    }
    if (!err)
        err = llm_kv_restore(k->cfg.privileged, principal, sn.data, sn.len);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", err ? llmos_errmsg() : "");
    if (err) {
        LOG_WARN("kernel", "the kept KV cache of '%s' is not used: %s", principal, msg);
        /* a snapshot the backend refuses (another model, corrupted) is never tried again */
        kernel_lock(k);
        if (store_snapshot_delete(k->cfg.st, principal, KV_SNAPSHOT_NAME))
            llmos_err_clear();
        kernel_unlock(k);
    }
    (void)kernel_audit_rec(k, "kv.restore",
                           json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:f}", "principal", principal,
                                     "status", err ? llmos_strerror(err) : "ok", "reason", msg,
                                     "tokens", (json_int_t)sn.tokens, "bytes", (json_int_t)sn.len,
                                     "model", sn.model ? sn.model : "", "seconds",
                                     llmos_time_now() - t0));
    store_snapshot_clear(&sn);
}
