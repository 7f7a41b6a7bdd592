/*
 * store.c - the per-user store: one SQLite database (WAL mode) behind the encrypting VFS,
 * holding recall memory (messages, FTS5), archival memory (passages with embeddings), core
 * memory blocks, settings and audit records.
 *
 * Opening: unlock the key file (keys.c), hand the data key to the VFS (vfs.c) under a token,
 * open "file:<dir>/store.db?llmos_key=<token>" on the VFS, reserve 40 bytes per page for nonce
 * and tag before the first page is written, switch to WAL, then migrate the schema. A key file
 * whose database is gone is refused (open_keys), and so, when the caller keeps freshness
 * records, is a store older than its record (fresh.c).
 *
 * Schema versions live in PRAGMA user_version; migrations[i] takes the schema from version i to
 * i+1 and each runs in its own transaction together with the version bump, so a crash leaves
 * the old or the new schema, never half of one.
 *
 * Errors from SQLite are translated to llmos_err; when the VFS refused a page (tampering,
 * truncation) its message, which names file and page, is the one reported.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "llmos/storage.h"
#include "storage/store_internal.h"
#include "storage/vfs.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "embeddings are stored as little-endian float32; add byte swapping for this host"
#endif

#define STORE_DB_NAME            "store.db"
#define STORE_KEY_NAME           "store.key"
#define STORE_CORE_DEFAULT_LIMIT 2000

/* ---- schema ------------------------------------------------------------------------------- */

static const char *const migrations[] = {
    /* 0 -> 1: the tables of the five kinds of data */
    "CREATE TABLE messages("
    "  id INTEGER PRIMARY KEY,"
    "  conversation TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  content TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL);"
    "CREATE INDEX messages_by_conversation ON messages(conversation, created_at);"
    "CREATE INDEX messages_by_time ON messages(created_at);"
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages',"
    "  content_rowid='id', tokenize='unicode61 remove_diacritics 2');"
    "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
    "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
    "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, content)"
    "    VALUES ('delete', old.id, old.content); END;"
    "CREATE TRIGGER messages_au AFTER UPDATE ON messages BEGIN"
    "  INSERT INTO messages_fts(messages_fts, rowid, content)"
    "    VALUES ('delete', old.id, old.content);"
    "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
    "CREATE TABLE archival("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT," /* ids never reused: see archival.c */
    "  text TEXT NOT NULL,"
    "  embedding BLOB,"
    "  embedder TEXT,"
    "  metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL);"
    "CREATE TABLE core_blocks("
    "  label TEXT PRIMARY KEY,"
    "  value TEXT NOT NULL,"
    "  char_limit INTEGER NOT NULL CHECK (char_limit > 0));"
    "CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE audit("
    "  seq INTEGER PRIMARY KEY,"
    "  time INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  payload TEXT NOT NULL CHECK (json_valid(payload)),"
    "  prev_hash BLOB,"
    "  hash BLOB);",
    /* 1 -> 2: persisted vector indexes (HNSW images from vdb_save), and an index that makes
     * the archival signature (count, sum, max of ids per embedder) cheap */
    "CREATE INDEX archival_by_embedder ON archival(embedder, id);"
    "CREATE TABLE vector_index("
    "  name TEXT PRIMARY KEY,"
    "  embedder TEXT NOT NULL,"
    "  dim INTEGER NOT NULL,"
    "  count INTEGER NOT NULL,"
    "  signature TEXT NOT NULL,"
    "  data BLOB NOT NULL,"
    "  updated_at INTEGER NOT NULL);",
    /* 2 -> 3: memory per principal. Messages and archival passages get their principal (the
     * store's owner, "user", for what was there); core blocks are keyed by principal and label
     * (SQLite cannot change a primary key, so the table is rebuilt). */
    "ALTER TABLE messages ADD COLUMN principal TEXT NOT NULL DEFAULT 'user';"
    "CREATE INDEX messages_by_principal ON messages(principal, created_at);"
    "ALTER TABLE archival ADD COLUMN principal TEXT NOT NULL DEFAULT 'user';"
    "CREATE INDEX archival_by_principal ON archival(principal, id);"
    "CREATE TABLE core_blocks_v3("
    "  principal TEXT NOT NULL,"
    "  label TEXT NOT NULL,"
    "  value TEXT NOT NULL,"
    "  char_limit INTEGER NOT NULL CHECK (char_limit > 0),"
    "  PRIMARY KEY (principal, label));"
    "INSERT INTO core_blocks_v3(principal, label, value, char_limit)"
    "  SELECT 'user', label, value, char_limit FROM core_blocks;"
    "DROP TABLE core_blocks;"
    "ALTER TABLE core_blocks_v3 RENAME TO core_blocks;",
    /* 3 -> 4: archival passages searchable by words too (BM25), beside their vectors */
    "CREATE VIRTUAL TABLE archival_fts USING fts5(text, content='archival',"
    "  content_rowid='id', tokenize='unicode61 remove_diacritics 2');"
    "CREATE TRIGGER archival_ai AFTER INSERT ON archival BEGIN"
    "  INSERT INTO archival_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER archival_ad AFTER DELETE ON archival BEGIN"
    "  INSERT INTO archival_fts(archival_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  END;"
    "CREATE TRIGGER archival_au AFTER UPDATE OF text ON archival BEGIN"
    "  INSERT INTO archival_fts(archival_fts, rowid, text) VALUES ('delete', old.id, old.text);"
    "  INSERT INTO archival_fts(rowid, text) VALUES (new.id, new.text); END;"
    "INSERT INTO archival_fts(archival_fts) VALUES ('rebuild');",
    /* 4 -> 5: KV-cache snapshots of processes (snapshot.c), sealed like every other page */
    "CREATE TABLE kv_snapshots("
    "  principal TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  model TEXT NOT NULL,"
    "  tokens INTEGER NOT NULL CHECK (tokens >= 0),"
    "  data BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (principal, name));",
};
#define STORE_SCHEMA_VERSION ((int)LLMOS_ARRAY_LEN(migrations))

/* ---- errors ------------------------------------------------------------------------------- */

llmos_err store_db_fail(store *s, int rc, const char *what)
{
    assert(s && s->db_path && what);
    llmos_err v = vfs_take_error();
    if (v != LLMOS_OK)
        return llmos_fail_context(v, "%s: ", what);
    llmos_err code;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = LLMOS_ERR_BUSY; break;
    case SQLITE_NOMEM: code = LLMOS_ERR_NOMEM; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = LLMOS_ERR_FORMAT; break;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: code = LLMOS_ERR_IO; break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG: code = LLMOS_ERR_INVALID; break;
    default: code = LLMOS_ERR_INTERNAL; break;
    }
    return llmos_fail(code, "%s: %s: %s (SQLite code %d)", s->db_path, what,
                      s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), rc);
}

llmos_err store_exec(store *s, const char *sql, const char *what)
{
    assert(s && s->db && sql && what);
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return store_db_fail(s, rc, what);
    return LLMOS_OK;
}

llmos_err store_prepare(store *s, const char *sql, sqlite3_stmt **st)
{
    assert(s && s->db && sql && st);
    int rc = sqlite3_prepare_v2(s->db, sql, -1, st, NULL);
    if (rc != SQLITE_OK)
        return store_db_fail(s, rc, "preparing a statement");
    return LLMOS_OK;
}

/* Run a statement that returns no rows, then finalize it. */
llmos_err store_step_done(store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    llmos_err err = LLMOS_OK;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = store_db_fail(s, rc, what);
    sqlite3_finalize(st);
    return err;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return strdup(t ? (const char *)t : "");
}

int64_t store_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- open / close ----------------------------------------------------------------------- */

/* Append `path` to `out` as the path part of an SQLite URI: unreserved bytes and '/' as they
 * are, everything else %XX (RFC 3986). */
static llmos_err uri_escape(llmos_buf *out, const char *path)
{
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        llmos_err err;
        if (isalnum(*p) || strchr("/-._~", *p))
            err = buf_putc(out, (char)*p);
        else
            err = buf_printf(out, "%%%02X", *p);
        if (err)
            return err;
    }
    return LLMOS_OK;
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int user_version(store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static llmos_err migrate(store *s)
{
    for (;;) {
        llmos_err err = store_exec(s, "BEGIN IMMEDIATE", "starting a schema migration");
        if (err)
            return err;
        int v = user_version(s);
        if (v < 0) {
            err = store_db_fail(s, sqlite3_errcode(s->db), "reading the schema version");
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return err;
        }
        if (v > STORE_SCHEMA_VERSION) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                              "%s: schema version %d is newer than this llmos knows (%d); "
                              "upgrade llmos",
                              s->db_path, v, STORE_SCHEMA_VERSION);
        }
        if (v == STORE_SCHEMA_VERSION) {
            return store_exec(s, "COMMIT", "ending the schema check");
        }
        assert(v >= 0 && v < STORE_SCHEMA_VERSION);
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        err = store_exec(s, migrations[v], "migrating the schema");
        if (!err)
            err = store_exec(s, bump, "recording the schema version");
        if (!err)
            err = store_exec(s, "COMMIT", "committing a schema migration");
        if (err) {
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return llmos_fail_context(err, "migration %d -> %d: ", v, v + 1);
        }
        LOG_INFO("storage", "%s: schema migrated to version %d", s->db_path, v + 1);
    }
}

/* Set the old key file of a store whose database is gone aside as store.key.old-<db id>, with
 * what is left of the database (an empty store.db is removed, a WAL renamed like the key, the
 * shared-memory index removed), so that a new store can be made in its place. The key file
 * goes last, so that an interruption leaves a key file without a database, which is refused
 * and reset again. */
static llmos_err set_aside(store *s, const keys_unlocked *keys)
{
    assert(s && keys);
    char id[2 * sizeof keys->db_id + 1];
    llmos_hex_encode(id, sizeof id, keys->db_id, sizeof keys->db_id);
    llmos_buf b = {0};
    char *old_key = NULL, *wal = NULL, *old_wal = NULL, *shm = NULL;
    if (buf_printf(&b, "%s.old-%s", s->key_path, id) || !(old_key = buf_detach(&b, NULL)) ||
        buf_printf(&b, "%s-wal", s->db_path) || !(wal = buf_detach(&b, NULL)) ||
        buf_printf(&b, "%s-wal.old-%s", s->db_path, id) || !(old_wal = buf_detach(&b, NULL)) ||
        buf_printf(&b, "%s-shm", s->db_path) || !(shm = buf_detach(&b, NULL))) {
        buf_free(&b);
        free(old_key);
        free(wal);
        free(old_wal);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    }
    llmos_err err = LLMOS_OK;
    if (unlink(s->db_path) != 0 && errno != ENOENT)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot remove: %s", s->db_path, strerror(errno));
    else if (rename(wal, old_wal) != 0 && errno != ENOENT)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot rename: %s", wal, strerror(errno));
    else if (unlink(shm) != 0 && errno != ENOENT)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot remove: %s", shm, strerror(errno));
    else if (rename(s->key_path, old_key) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot rename: %s", s->key_path, strerror(errno));
    else
        err = llmos_file_sync_dir(s->key_path);
    if (!err) {
        LOG_WARN("storage",
                 "%s: started over with an empty store under a new key; the old key file is kept "
                 "as %s (with it, a backup of the old database can still be opened)",
                 s->dir, old_key);
        s->set_aside_key = old_key;
        old_key = NULL;
    }
    free(old_key);
    free(wal);
    free(old_wal);
    free(shm);
    return err;
}

/* The keys of the store in s->dir: unwrapped from its key file, or made for a new store.
 *
 * Security: a key file whose database is missing or empty is refused. SQLite would happily
 * make a new database there, so a deleted or truncated store.db would come back as an empty
 * store under the old key and database id, with nothing to say that the user's memories, and
 * the audit log of everything done, are gone. Only opt->start_over makes a new store then,
 * with a new key (set_aside). */
static llmos_err open_keys(store *s, const char *passphrase, const store_options *opt,
                           keys_unlocked **keys)
{
    assert(s && s->dir && (passphrase || opt->data_key) && opt && keys);
    *keys = NULL;
    struct stat db;
    bool have_key = file_exists(s->key_path), have_db = stat(s->db_path, &db) == 0;
    /* a store directory that others may write to could hold anything they put there */
    llmos_err err = LLMOS_OK;
    if ((have_key || have_db || !opt->no_create) && (err = llmos_file_private_dir(s->dir)))
        return err;
    if (have_key) {
        err = opt->data_key ? keys_unlock_with_key(s->key_path, opt->data_key, keys)
                            : keys_unlock(s->key_path, passphrase, keys);
        if (err || (have_db && db.st_size > 0))
            return err;
        if (!opt->start_over) {
            keys_free(*keys);
            *keys = NULL;
            return llmos_fail(have_db ? LLMOS_ERR_FORMAT : LLMOS_ERR_NOT_FOUND,
                              "%s is %s, but its key file %s is there: the database was %s, and "
                              "opening it would give an empty store in its place. Put store.db "
                              "back from a backup; or, to start over with an empty store, run "
                              "'llmos memory reset' (store_options.start_over), which keeps the "
                              "old key file aside",
                              s->db_path, have_db ? "empty (0 bytes)" : "missing", s->key_path,
                              have_db ? "truncated (or its creation was cut short)"
                                      : "deleted or moved away");
        }
        err = set_aside(s, *keys);
        keys_free(*keys);
        *keys = NULL;
        if (err)
            return err;
    } else if (have_db) {
        return llmos_fail(LLMOS_ERR_NOT_FOUND,
                          "%s exists but its key file %s does not: without it the store cannot "
                          "be decrypted (restore the key file from a backup)",
                          s->db_path, s->key_path);
    } else if (opt->no_create) {
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "%s: no store here", s->dir);
    }
    if (!passphrase)
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "%s: no store here to open with a data key", s->dir);
    keys_kdf kdf = opt->kdf;
    if (kdf.opslimit == 0 && kdf.memlimit == 0)
        kdf = keys_kdf_default();
    return keys_create(s->key_path, passphrase, kdf, keys);
}

llmos_err store_open(const char *dir, const char *passphrase, const store_options *opt, store **out)
{
    assert(out);
    *out = NULL;
    store_options defaults = {0};
    if (!opt)
        opt = &defaults;
    if (!dir || !*dir || (!passphrase && !opt->data_key))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "store_open needs a directory and a passphrase (or the data key)");
    llmos_err err = vfs_register();
    if (err)
        return err;
    (void)vfs_take_error();

    store *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    s->emb = opt->embedder;
    llmos_buf b = {0};
    if (buf_printf(&b, "%s/%s", dir, STORE_DB_NAME) || !(s->db_path = buf_detach(&b, NULL)) ||
        buf_printf(&b, "%s/%s", dir, STORE_KEY_NAME) || !(s->key_path = buf_detach(&b, NULL)) ||
        !(s->dir = strdup(dir))) {
        buf_free(&b);
        store_close(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    }

    keys_unlocked *keys = NULL;
    err = open_keys(s, passphrase, opt, &keys);
    if (!err) {
        /* keys is set when keys_create/keys_unlock return 0 (llmos_fail returns its nonzero
         * code, so this is reached only on success) */
        // NOLINTNEXTLINE(clang-analyzer-core.NullDereference)
        err = vfs_key_add(keys->data_key, keys->db_id, &s->token);
        if (!err)
            err = store_keys_derive(s, keys->data_key, keys->db_id);
    }
    keys_free(keys);
    if (err) {
        store_close(s);
        return err;
    }

    if (buf_puts(&b, "file:") || uri_escape(&b, s->db_path) ||
        buf_printf(&b, "?llmos_key=%llu", (unsigned long long)s->token)) {
        buf_free(&b);
        store_close(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    }
    int rc = sqlite3_open_v2(b.data, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
                                 SQLITE_OPEN_NOMUTEX,
                             VFS_NAME);
    buf_free(&b);
    if (rc != SQLITE_OK) {
        err = store_db_fail(s, rc, "opening the database");
        store_close(s);
        return err;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    /* 40 reserved bytes per page for nonce and tag; takes effect when the database is created
     * and is ignored (harmlessly) for an existing one, whose header already says 40. */
    int reserve = VFS_RESERVE;
    sqlite3_file_control(s->db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
    err = store_exec(s,
                     "PRAGMA temp_store = MEMORY;"
                     "PRAGMA mmap_size = 0;"
                     "PRAGMA page_size = 4096;"
                     "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = FULL;"
                     "PRAGMA foreign_keys = ON;",
                     "configuring the database");
    if (!err) {
        sqlite3_stmt *st = NULL;
        err = store_prepare(s, "PRAGMA journal_mode", &st);
        if (!err && sqlite3_step(st) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: could not switch to WAL mode (journal mode %s)",
                             s->db_path, sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    s->no_fsync = opt->no_fsync;
    if (!err && opt->no_fsync)
        err = store_exec(s, "PRAGMA synchronous = OFF", "configuring the database");
    if (!err && opt->wal_autocheckpoint > 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA wal_autocheckpoint = %d", opt->wal_autocheckpoint);
        err = store_exec(s, sql, "configuring checkpoints");
    }
    if (!err)
        chmod(s->db_path, 0600); /* the directory is 0700 already; belt and braces */
    if (!err)
        err = migrate(s);
    if (!err && opt->freshness_dir)
        err = store_fresh_open(s, opt->freshness_dir, opt->allow_rollback);
    if (!err)
        err = store_vindex_open(s);
    if (err) {
        store_close(s);
        return err;
    }
    assert(store_is_open(s) && s->token != 0);
    *out = s;
    return LLMOS_OK;
}

llmos_err store_open_memory(const store_options *opt, store **out)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    s->emb = opt ? opt->embedder : NULL;
    s->dir = strdup(":memory:");
    s->db_path = strdup(":memory:");
    s->key_path = strdup("");
    if (!s->dir || !s->db_path || !s->key_path) {
        store_close(s);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    }
    /* SQLite's own in-memory database: its pages never reach a file, so they need no sealing
     * (and the default VFS never sees them). */
    int rc = sqlite3_open_v2(
        ":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    llmos_err err = rc == SQLITE_OK ? LLMOS_OK : store_db_fail(s, rc, "opening a memory database");
    if (!err) {
        sqlite3_extended_result_codes(s->db, 1);
        err = store_exec(s, "PRAGMA temp_store = MEMORY; PRAGMA foreign_keys = ON;",
                         "configuring the database");
    }
    if (!err)
        err = migrate(s);
    if (!err)
        err = store_vindex_open(s);
    if (err) {
        store_close(s);
        return err;
    }
    *out = s;
    return LLMOS_OK;
}

void store_close(store *s)
{
    if (!s)
        return;
    store_vindex_close(s);
    if (s->db)
        sqlite3_close_v2(s->db);
    vfs_key_remove(s->token);
    store_keys_wipe(s);
    free(s->dir);
    free(s->db_path);
    free(s->key_path);
    free(s->set_aside_key);
    free(s);
}

llmos_err store_change_passphrase(store *s, const char *old_passphrase, const char *new_passphrase,
                                  keys_kdf kdf)
{
    assert(store_is_open(s));
    if (kdf.opslimit == 0 && kdf.memlimit == 0)
        kdf = keys_kdf_default();
    return keys_change_passphrase(s->key_path, old_passphrase, new_passphrase, kdf);
}

llmos_err store_data_version(store *s, int64_t *version)
{
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s, "PRAGMA data_version", &st);
    if (err)
        return err;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *version = sqlite3_column_int64(st, 0);
    else
        err = store_db_fail(s, rc, "reading the data version");
    sqlite3_finalize(st);
    return err;
}

int store_schema_version(store *s)
{
    assert(store_is_open(s));
    return user_version(s);
}
const char *store_db_path(const store *s)
{
    assert(store_is_open(s));
    return s->db_path;
}

const char *store_key_path(const store *s)
{
    assert(store_is_open(s));
    return s->key_path;
}

const char *store_set_aside_key(const store *s)
{
    assert(store_is_open(s));
    return s->set_aside_key;
}

llmos_err store_begin(store *s)
{
    assert(store_is_open(s));
    /* SQLite has no nested BEGIN: a caller that already holds a transaction has lost track */
    assert(sqlite3_get_autocommit(s->db));
    return store_exec(s, "BEGIN IMMEDIATE", "begin");
}
llmos_err store_commit(store *s)
{
    assert(store_is_open(s));
    if (sqlite3_get_autocommit(s->db))
        return llmos_fail(LLMOS_ERR_INVALID, "store_commit: no transaction is open");
    llmos_err err = store_exec(s, "COMMIT", "commit");
    if (!err && s->audit_appended)
        store_fresh_update(s); /* after the commit: the record never runs ahead (fresh.c) */
    return err;
}

llmos_err store_rollback(store *s)
{
    assert(store_is_open(s));
    s->audit_appended = false;
    if (sqlite3_get_autocommit(s->db))
        return LLMOS_OK; /* none open, or SQLite rolled it back itself after an I/O error: the
                            error being handled keeps its message */
    return store_exec(s, "ROLLBACK", "rollback");
}

llmos_err store_verify(store *s)
{
    assert(store_is_open(s) && s->token != 0);
    /* our own check first: it reads every page of the file and names the first bad one */
    llmos_err err = vfs_verify_file(s->token, s->db_path, NULL);
    if (err)
        return err;
    sqlite3_stmt *st = NULL;
    err = store_prepare(s, "PRAGMA integrity_check", &st);
    if (err)
        return err;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        err = store_db_fail(s, rc, "integrity check");
    } else {
        const char *res = (const char *)sqlite3_column_text(st, 0);
        llmos_err v = vfs_take_error(); /* integrity_check reports read errors as rows */
        if (v != LLMOS_OK)
            err = llmos_fail_context(v, "integrity check: ");
        else if (!res || strcmp(res, "ok") != 0)
            err = llmos_fail(LLMOS_ERR_FORMAT, "%s: integrity check failed: %s", s->db_path,
                             res ? res : "(no result)");
    }
    sqlite3_finalize(st);
    /* the full-text indexes hold exactly what their tables do */
    if (!err)
        err = store_exec(s, "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')",
                         "checking the recall word index against the messages");
    if (!err)
        err = store_exec(s, "INSERT INTO archival_fts(archival_fts) VALUES ('integrity-check')",
                         "checking the archival word index against the passages");
    return err;
}

static int64_t count_rows(store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

llmos_err store_get_stats(store *s, store_stats *out)
{
    assert(store_is_open(s) && out);
    memset(out, 0, sizeof *out);
    out->messages = count_rows(s, "SELECT count(*) FROM messages");
    out->archival = count_rows(s, "SELECT count(*) FROM archival");
    out->core_blocks = count_rows(s, "SELECT count(*) FROM core_blocks");
    out->settings = count_rows(s, "SELECT count(*) FROM settings");
    out->audit_records = count_rows(s, "SELECT count(*) FROM audit");
    out->page_count = count_rows(s, "PRAGMA page_count");
    out->page_size = count_rows(s, "PRAGMA page_size");
    out->schema_version = user_version(s);
    out->db_bytes = file_size(s->db_path);
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", s->db_path);
    out->wal_bytes = file_size(wal);
    out->vector_index = store_vindex_active(s);
    if (out->messages < 0 || out->archival < 0 || out->page_count < 0)
        return store_db_fail(s, sqlite3_errcode(s->db), "reading statistics");
    char *emb = NULL;
    llmos_err err = store_setting_get(s, STORE_EMBEDDER_SETTING, &emb);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        return LLMOS_OK;
    }
    if (!err)
        snprintf(out->embedder, sizeof out->embedder, "%s", emb);
    free(emb);
    return err;
}

/* ---- messages ----------------------------------------------------------------------------- */

llmos_err store_message_add(store *s, const char *principal, const char *conversation,
                            const char *role, const char *content, int64_t created_at, int64_t *id)
{
    assert(store_is_open(s));
    if (!principal || !*principal || !conversation || !role || !content)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "a message needs a principal, a conversation, a role and content");
    sqlite3_stmt *st = NULL;
    llmos_err err =
        store_prepare(s,
                      "INSERT INTO messages(conversation, role, content, created_at, principal)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
                      &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, conversation, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, content, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, created_at ? created_at : store_now());
    sqlite3_bind_text(st, 5, principal, -1, SQLITE_STATIC);
    err = store_step_done(s, st, "adding a message");
    if (!err && id)
        *id = sqlite3_last_insert_rowid(s->db);
    return err;
}

/* Turn free text into an FTS5 query that interprets no syntax: every run of letters and digits
 * (bytes >= 0x80 count as letters, so UTF-8 words stay whole) becomes a quoted term, joined by
 * OR so that BM25 ranks messages with more and rarer terms first. Returns false if the text has
 * no term at all. */
bool store_fts_query(const char *text, llmos_buf *out)
{
    bool any = false;
    const unsigned char *p = (const unsigned char *)text;
    while (*p) {
        while (*p && !(isalnum(*p) || *p >= 0x80))
            p++;
        if (!*p)
            break;
        const unsigned char *start = p;
        while (*p && (isalnum(*p) || *p >= 0x80))
            p++;
        if ((any && buf_puts(out, " OR ")) || buf_putc(out, '"') ||
            buf_append(out, start, (size_t)(p - start)) || buf_putc(out, '"'))
            return false;
        any = true;
    }
    return any;
}

llmos_err store_message_search(store *s, const char *query, const store_search_opts *opts,
                               store_message **out, size_t *n)
{
    assert(store_is_open(s) && out && n);
    *out = NULL;
    *n = 0;
    store_search_opts o = {0};
    if (opts)
        o = *opts;
    if (o.limit == 0)
        o.limit = 10;
    llmos_buf q = {0};
    bool empty = !query || !*query;
    if (!empty && !store_fts_query(query, &q)) {
        bool nomem = q.len > 0;
        buf_free(&q);
        if (nomem)
            return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a search");
        return LLMOS_OK; /* punctuation only: nothing can match */
    }
    static const char *const sql_fts =
        "SELECT m.id, m.conversation, m.role, m.content, m.created_at, bm25(messages_fts)"
        " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
        " WHERE messages_fts MATCH ?1 AND (?2 IS NULL OR m.conversation = ?2)"
        "   AND (?3 = 0 OR m.created_at >= ?3) AND (?4 = 0 OR m.created_at <= ?4)"
        "   AND (?6 IS NULL OR m.principal = ?6)"
        " ORDER BY bm25(messages_fts), m.id DESC LIMIT ?5 OFFSET ?7";
    static const char *const sql_recent =
        "SELECT id, conversation, role, content, created_at, 0.0 FROM messages"
        " WHERE ?1 IS NULL AND (?2 IS NULL OR conversation = ?2)"
        "   AND (?3 = 0 OR created_at >= ?3) AND (?4 = 0 OR created_at <= ?4)"
        "   AND (?6 IS NULL OR principal = ?6)"
        " ORDER BY created_at DESC, id DESC LIMIT ?5 OFFSET ?7";
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s, empty ? sql_recent : sql_fts, &st);
    if (err) {
        buf_free(&q);
        return err;
    }
    if (!empty)
        sqlite3_bind_text(st, 1, q.data, (int)q.len, SQLITE_STATIC);
    if (o.conversation)
        sqlite3_bind_text(st, 2, o.conversation, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, o.since);
    sqlite3_bind_int64(st, 4, o.until);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)o.limit);
    if (o.principal)
        sqlite3_bind_text(st, 6, o.principal, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)o.offset);
    store_message *res = NULL;
    size_t cnt = 0, cap = 0;
    int rc = SQLITE_OK;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW && cnt < o.limit) {
        assert(cnt <= cap);
        if (cnt == cap) { /* grow as rows come: a large limit costs nothing up front */
            size_t ncap = cap ? 2 * cap : 16;
            store_message *nres = realloc(res, ncap * sizeof *nres);
            if (!nres) {
                err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for search results");
                break;
            }
            res = nres;
            cap = ncap;
        }
        store_message *m = &res[cnt++];
        memset(m, 0, sizeof *m);
        m->id = sqlite3_column_int64(st, 0);
        m->conversation = dup_col(st, 1);
        m->role = dup_col(st, 2);
        m->content = dup_col(st, 3);
        m->created_at = sqlite3_column_int64(st, 4);
        m->score = -sqlite3_column_double(st, 5); /* bm25(): more negative is better */
        if (!m->conversation || !m->role || !m->content)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for search results");
    }
    if (!err && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = store_db_fail(s, rc, "searching messages");
    sqlite3_finalize(st);
    buf_free(&q);
    if (err) {
        store_messages_free(res, cnt);
        return err;
    }
    if (cnt == 0) {
        free(res);
        res = NULL;
    }
    *out = res;
    *n = cnt;
    return LLMOS_OK;
}

void store_messages_free(store_message *m, size_t n)
{
    if (!m)
        return;
    for (size_t i = 0; i < n; i++) {
        free(m[i].conversation);
        free(m[i].role);
        free(m[i].content);
    }
    free(m);
}

/* ---- core memory ------------------------------------------------------------------------ */

llmos_err store_core_set(store *s, const char *principal, const char *label, const char *value,
                         size_t limit)
{
    assert(store_is_open(s));
    if (!principal || !*principal || !label || !*label || !value)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "a core memory block needs a principal, a label and a value");
    if (limit == 0) {
        char *old = NULL;
        size_t old_limit = 0;
        llmos_err err = store_core_get(s, principal, label, &old, &old_limit);
        free(old);
        if (err && err != LLMOS_ERR_NOT_FOUND)
            return err;
        limit = err ? STORE_CORE_DEFAULT_LIMIT : old_limit;
    }
    size_t len = strlen(value);
    if (len > limit)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "core memory block '%s': value of %zu bytes exceeds its limit of %zu; "
                          "shorten it or raise the limit",
                          label, len, limit);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "INSERT INTO core_blocks(principal, label, value, char_limit) "
                                  "VALUES (?4, ?1, ?2, ?3) ON CONFLICT(principal, label) DO "
                                  "UPDATE SET value = excluded.value, "
                                  "char_limit = excluded.char_limit",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    sqlite3_bind_text(st, 4, principal, -1, SQLITE_STATIC);
    return store_step_done(s, st, "setting a core memory block");
}

llmos_err store_core_get(store *s, const char *principal, const char *label, char **value,
                         size_t *limit)
{
    assert(store_is_open(s) && principal && label && value);
    *value = NULL;
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(
        s, "SELECT value, char_limit FROM core_blocks WHERE principal = ?2 AND label = ?1", &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, principal, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *value = dup_col(st, 0);
        if (limit)
            *limit = (size_t)sqlite3_column_int64(st, 1);
        if (!*value)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for a core memory block");
    } else if (rc == SQLITE_DONE) {
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no core memory block '%s'", label);
    } else {
        err = store_db_fail(s, rc, "reading a core memory block");
    }
    sqlite3_finalize(st);
    return err;
}

llmos_err store_core_list(store *s, const char *principal, store_core_block **out, size_t *n)
{
    assert(store_is_open(s) && principal && out && n);
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT label, value, char_limit FROM core_blocks"
                                  " WHERE principal = ?1 ORDER BY rowid",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, principal, -1, SQLITE_STATIC);
    store_core_block *res = NULL;
    size_t cnt = 0;
    int rc;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_core_block *nres = realloc(res, (cnt + 1) * sizeof *nres);
        if (!nres) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for core memory blocks");
            break;
        }
        res = nres;
        store_core_block *b = &res[cnt++];
        b->label = dup_col(st, 0);
        b->value = dup_col(st, 1);
        b->limit = (size_t)sqlite3_column_int64(st, 2);
        if (!b->label || !b->value)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for core memory blocks");
    }
    if (!err && rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "listing core memory blocks");
    sqlite3_finalize(st);
    if (err) {
        store_core_blocks_free(res, cnt);
        return err;
    }
    *out = res;
    *n = cnt;
    return LLMOS_OK;
}

void store_core_blocks_free(store_core_block *b, size_t n)
{
    for (size_t i = 0; b && i < n; i++) {
        free(b[i].label);
        free(b[i].value);
    }
    free(b);
}

/* ---- settings ----------------------------------------------------------------------------- */

llmos_err store_setting_set(store *s, const char *key, const char *value)
{
    assert(store_is_open(s));
    if (!key || !*key || !value)
        return llmos_fail(LLMOS_ERR_INVALID, "a setting needs a key and a value");
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "INSERT INTO settings(key, value) VALUES (?1, ?2) "
                                  "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return store_step_done(s, st, "writing a setting");
}

llmos_err store_setting_get(store *s, const char *key, char **value)
{
    assert(store_is_open(s) && key && value);
    *value = NULL;
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s, "SELECT value FROM settings WHERE key = ?1", &st);
    if (err)
        return err;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (!(*value = dup_col(st, 0)))
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory for a setting");
    } else if (rc == SQLITE_DONE) {
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no setting '%s'", key);
    } else {
        err = store_db_fail(s, rc, "reading a setting");
    }
    sqlite3_finalize(st);
    return err;
}

/* ---- audit records ------------------------------------------------------------------------ */

llmos_err store_audit_append(store *s, const store_audit_record *rec, int64_t *seq)
{
    assert(store_is_open(s));
    if (!rec || !rec->kind || !rec->payload)
        return llmos_fail(LLMOS_ERR_INVALID, "an audit record needs a kind and a payload");
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "INSERT INTO audit(time, kind, payload, prev_hash, hash) "
                                  "VALUES (?1, ?2, ?3, ?4, ?5)",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_int64(st, 1, rec->time ? rec->time : store_now());
    sqlite3_bind_text(st, 2, rec->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, rec->payload, -1, SQLITE_STATIC);
    if (rec->prev_hash)
        sqlite3_bind_blob(st, 4, rec->prev_hash, (int)rec->prev_hash_len, SQLITE_STATIC);
    if (rec->hash)
        sqlite3_bind_blob(st, 5, rec->hash, (int)rec->hash_len, SQLITE_STATIC);
    err = store_step_done(s, st, "appending an audit record");
    if (!err && seq)
        *seq = sqlite3_last_insert_rowid(s->db);
    if (!err)
        s->audit_appended = true;
    if (!err && sqlite3_get_autocommit(s->db))
        store_fresh_update(s); /* committed already: no transaction was open */
    return err;
}

llmos_err store_audit_iterate(store *s, int64_t from_seq,
                              bool (*fn)(const store_audit_record *rec, void *ctx), void *ctx)
{
    assert(store_is_open(s) && fn);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s,
                                  "SELECT seq, time, kind, payload, prev_hash, hash FROM audit "
                                  "WHERE seq >= ?1 ORDER BY seq",
                                  &st);
    if (err)
        return err;
    sqlite3_bind_int64(st, 1, from_seq);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* Each length is asked after its pointer, as SQLite wants; an initializer list would
         * not fix that order. A text's length counts every byte stored, a NUL inside too. */
        store_audit_record r = {.seq = sqlite3_column_int64(st, 0),
                                .time = sqlite3_column_int64(st, 1)};
        r.kind = (const char *)sqlite3_column_text(st, 2);
        r.kind_len = (size_t)sqlite3_column_bytes(st, 2);
        r.payload = (const char *)sqlite3_column_text(st, 3);
        r.payload_len = (size_t)sqlite3_column_bytes(st, 3);
        r.prev_hash = sqlite3_column_blob(st, 4);
        r.prev_hash_len = (size_t)sqlite3_column_bytes(st, 4);
        r.hash = sqlite3_column_blob(st, 5);
        r.hash_len = (size_t)sqlite3_column_bytes(st, 5);
        if (!fn(&r, ctx)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        err = store_db_fail(s, rc, "reading audit records");
    sqlite3_finalize(st);
    return err;
}
