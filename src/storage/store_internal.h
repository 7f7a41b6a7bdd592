/*
 * storage/store_internal.h - what store.c, archival.c and snapshot.c share (private to
 * src/storage/).
 */
#ifndef LLMOS_STORAGE_STORE_INTERNAL_H
#define LLMOS_STORAGE_STORE_INTERNAL_H

#include <sqlite3.h>

#include "llmos/storage.h"

#define STORE_KEY_BYTES        32 /* the keys derived from the data key (fresh.c) */
#define STORE_AUDIT_HASH_BYTES 32 /* an audit record's hash (security.h: AUDIT_HASH_BYTES) */

struct store {
    sqlite3 *db;
    char *dir, *db_path, *key_path;
    char *set_aside_key;       /* where open_keys put the old key file on start_over, or NULL */
    uint64_t token;            /* the VFS key token of this store */
    const store_embedder *emb; /* may be NULL */
    void *vindex;              /* archival vector index (archival.c), or NULL */
    /* fresh.c: keys derived from the data key (locked memory; none for a store in memory) */
    bool has_keys;
    uint8_t db_id[16];
    uint8_t *fresh_key, *mac_key;
    char *fresh_path, *fresh_lock; /* the freshness record and its lock; NULL: none kept */
    bool no_fsync;                 /* store_options.no_fsync: the record is not synced either */
    bool audit_appended;           /* an audit record was appended since the record's update */
    bool rollback_pending;         /* a rollback was accepted; audit_open records it */
    store_rollback_notice rollback;
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
/* Step st to its end and finalize it; an error names `what`. */
LLMOS_NODISCARD llmos_err store_step_done(store *s, sqlite3_stmt *st, const char *what);
/* An FTS5 query for the words of free text (each quoted, joined by OR) into *out; false when
 * the text has no word (or on no memory: then out->len > 0). */
bool store_fts_query(const char *text, llmos_buf *out);

/* Keys and the freshness record (fresh.c). store_keys_derive keeps, in locked memory, the
 * keys store_mac and the freshness record use (derived from the data key, which the caller
 * wipes); store_keys_wipe forgets them. store_fresh_open checks the store against its record
 * in `dir` (refusing one older than the record unless allow_rollback) and brings the record
 * up to date; store_fresh_update does so after a commit that appended audit records. */
LLMOS_NODISCARD llmos_err store_keys_derive(store *s, const uint8_t *data_key,
                                            const uint8_t db_id[16]);
void store_keys_wipe(store *s);
LLMOS_NODISCARD llmos_err store_fresh_open(store *s, const char *dir, bool allow_rollback);
void store_fresh_update(store *s);

/* The archival vector index (archival.c): loaded at open, saved at close. */
LLMOS_NODISCARD llmos_err store_vindex_open(store *s);
void store_vindex_close(store *s);
bool store_vindex_active(store *s);

#endif
