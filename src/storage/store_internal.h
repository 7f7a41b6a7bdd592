/*
 * storage/store_internal.h - what store.c and archival.c share (private to src/storage/).
 */
#ifndef LLMOS_STORAGE_STORE_INTERNAL_H
#define LLMOS_STORAGE_STORE_INTERNAL_H

#include <sqlite3.h>

#include "llmos/storage.h"

struct store {
    sqlite3 *db;
    char *dir, *db_path, *key_path;
    char *set_aside_key;       /* where open_keys put the old key file on start_over, or NULL */
    uint64_t token;            /* the VFS key token of this store */
    const store_embedder *emb; /* may be NULL */
    void *vindex;              /* archival vector index (archival.c), or NULL */
};

/* What every store_* function may assume of the handle it is given (asserted on entry: a NULL
 * or closed handle is the caller's bug): store_open made it, so its database is open, and a
 * vector index exists only beside an embedder. */
static inline bool store_is_open(const store *s)
{
    return s && s->db && s->db_path && s->key_path && (!s->vindex || s->emb);
}

/* Turn an SQLite result code into an llmos_err with a message; when the VFS refused a page,
 * its message (file and page) is used. */
llmos_err store_db_fail(store *s, int rc, const char *what);
LLMOS_NODISCARD llmos_err store_exec(store *s, const char *sql, const char *what);
LLMOS_NODISCARD llmos_err store_prepare(store *s, const char *sql, sqlite3_stmt **st);
int64_t store_now(void);

/* The archival vector index (archival.c): loaded at open, saved at close. */
LLMOS_NODISCARD llmos_err store_vindex_open(store *s);
void store_vindex_close(store *s);
bool store_vindex_active(store *s);

#endif
