/*
 * snapshot.c - KV-cache snapshots in the store: the bytes of a process's context as the model
 * computed it, kept so that a process swapped out, or a conversation resumed tomorrow, goes on
 * without evaluating its prompt again (docs/kernel.md, "Context switches").
 *
 * One row per (principal, name) in kv_snapshots (schema 5): the model's identity, the tokens
 * it holds and the bytes. The store does not read the bytes: the backend that wrote them
 * checks them on restore (format, model digest, shapes). They live in SQLite pages that the
 * VFS seals, so a snapshot is encrypted and authenticated at rest like a message is.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "storage/store_internal.h"

llmos_err store_snapshot_put(store *s, const char *principal, const char *name, const char *model,
                             int64_t tokens, const void *data, size_t len)
{
    assert(store_is_open(s));
    if (!principal || !*principal || !name || !*name || !model || !data || tokens < 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "a snapshot needs a principal, a name, a model, bytes and a token count");
    if (len == 0 || len > STORE_SNAPSHOT_MAX)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "a snapshot of %zu bytes cannot be kept (1 byte to %zu MiB)", len,
                          STORE_SNAPSHOT_MAX >> 20);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "INSERT OR REPLACE INTO kv_snapshots(principal, name, model,"
                                  " tokens, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, tokens);
    sqlite3_bind_blob64(st, 5, data, (sqlite3_uint64)len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, store_now());
    return store_step_done(s, st, "keeping a KV snapshot");
}

void store_snapshot_clear(store_snapshot *sn)
{
    if (!sn)
        return;
    free(sn->model);
    free(sn->data);
    memset(sn, 0, sizeof *sn);
}

llmos_err store_snapshot_get(store *s, const char *principal, const char *name, store_snapshot *out)
{
    assert(store_is_open(s) && principal && name && out);
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT model, tokens, data, created_at FROM kv_snapshots"
                                  " WHERE principal = ?1 AND name = ?2",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *model = sqlite3_column_text(st, 0);
        const void *blob = sqlite3_column_blob(st, 2);
        int n = sqlite3_column_bytes(st, 2);
        out->model = strdup(model ? (const char *)model : "");
        out->tokens = sqlite3_column_int64(st, 1);
        out->created_at = sqlite3_column_int64(st, 3);
        out->len = n > 0 ? (size_t)n : 0;
        out->data = malloc(out->len ? out->len : 1);
        if (!out->model || !out->data) {
            store_snapshot_clear(out);
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for a KV snapshot");
        } else if (out->len) {
            memcpy(out->data, blob, out->len);
        }
    } else if (rc == SQLITE_DONE) {
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no KV snapshot '%s' of '%s'", name, principal);
    } else {
        err = store_db_fail(s, rc, "reading a KV snapshot");
    }
    sqlite3_finalize(st);
    return err;
}

llmos_err store_snapshot_delete(store *s, const char *principal, const char *name)
{
    assert(store_is_open(s) && principal && name);
    sqlite3_stmt *st = NULL;
    llmos_err err =
        store_prepare(s, "DELETE FROM kv_snapshots WHERE principal = ?1 AND name = ?2", &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    return store_step_done(s, st, "forgetting a KV snapshot");
}
