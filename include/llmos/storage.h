/*
 * llmos/storage.h - the encrypted per-user store: keys, recall/archival/core memory, settings
 * and audit records in one SQLite database behind an encrypting VFS.
 *
 * A store is a directory holding two files:
 *   store.db   the SQLite database (WAL mode); every page of it, of store.db-wal and of any
 *              journal is sealed with XChaCha20-Poly1305 under the store's data key
 *   store.key  the data key, wrapped by a key derived from the user's passphrase (Argon2id)
 * docs/storage.md describes both formats, the schema and the threat model.
 *
 * Keys:     keys_*   create, unlock and rewrap the key file (usable on their own)
 * Store:    store_*  open/close, messages (FTS5 recall search), archival memories (embedding
 *                    search), core memory blocks, settings, audit records
 *
 * Threads: a store handle is used by one thread at a time. Several processes may open the same
 * store (SQLite locking); writers wait up to 5 s for each other.
 */
#ifndef LLMOS_STORAGE_H
#define LLMOS_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- keys --------------------------------------------------------------------------------- */

/* Argon2id cost parameters (crypto_pwhash, ALG_ARGON2ID13). */
typedef struct keys_kdf {
    uint64_t opslimit; /* passes */
    size_t memlimit;   /* bytes */
} keys_kdf;

/* The default for new stores: libsodium's MODERATE (3 passes, 256 MiB; about 1 s). */
LLMOS_API keys_kdf keys_kdf_default(void);
/* By name: "moderate" (default), "interactive" (2 passes, 64 MiB), "sensitive" (4 passes,
 * 1 GiB), or "test-weak" (1 pass, 8 KiB: for tests only, offers no protection against guessing).
 * LLMOS_ERR_INVALID for another name. */
LLMOS_API LLMOS_NODISCARD llmos_err keys_kdf_parse(const char *name, keys_kdf *out);
/* The KDF the environment asks for: LLMOS_KDF=<name> as for keys_kdf_parse, else the default.
 * An unknown name is an error. */
LLMOS_API LLMOS_NODISCARD llmos_err keys_kdf_from_env(keys_kdf *out);

/* The unlocked key material of a store. data_key lives in locked memory (sodium_malloc) and
 * is wiped by keys_free. */
typedef struct keys_unlocked {
    uint8_t *data_key; /* 32 bytes */
    uint8_t db_id[16]; /* random id of the database, bound into every page */
    keys_kdf kdf;      /* the parameters the key file uses */
} keys_unlocked;

/* Create a key file at `path` (must not exist: LLMOS_ERR_EXISTS) with a fresh random data key
 * and database id, wrapped under `passphrase` with `kdf`. Written atomically, mode 0600. On
 * success *out (may be NULL) receives the unlocked keys; free with keys_free. */
LLMOS_API LLMOS_NODISCARD llmos_err keys_create(const char *path, const char *passphrase,
                                                keys_kdf kdf, keys_unlocked **out);
/* Unwrap the data key of the key file at `path`. A wrong passphrase (or an altered key file)
 * is LLMOS_ERR_AUTH; a malformed file LLMOS_ERR_FORMAT; a missing one LLMOS_ERR_NOT_FOUND. */
LLMOS_API LLMOS_NODISCARD llmos_err keys_unlock(const char *path, const char *passphrase,
                                                keys_unlocked **out);
/* The same with the data key itself (32 bytes, copied) instead of the passphrase: for a key
 * kept wrapped elsewhere (a passkey's copy, llmos/auth.h). The key file gives the database id;
 * the key is not checked here (a wrong one fails at the first page: LLMOS_ERR_CRYPTO). */
LLMOS_API LLMOS_NODISCARD llmos_err keys_unlock_with_key(const char *path, const uint8_t *data_key,
                                                         keys_unlocked **out);
/* Rewrap the same data key under `new_passphrase` with `kdf` (the data is not rewritten).
 * The old passphrase must be right (LLMOS_ERR_AUTH otherwise). Atomic: a crash leaves the old
 * or the new key file. */
LLMOS_API LLMOS_NODISCARD llmos_err keys_change_passphrase(const char *path,
                                                           const char *old_passphrase,
                                                           const char *new_passphrase,
                                                           keys_kdf kdf);
LLMOS_API void keys_free(keys_unlocked *k);

/* ---- embedders ---------------------------------------------------------------------------- */

/* Something that turns text into a vector of `dim` floats (archival memory). llmos/memory.h
 * has the two llmos uses: the engine's (model_embed through the local backend, named
 * "engine:<model name>") and the lexical one (hashed words, no model). */
typedef struct store_embedder {
    const char *name; /* stored with the vectors: a store refuses to mix embedders */
    uint32_t dim;
    llmos_err (*embed)(void *ctx, const char *text, float *out); /* out: dim floats */
    void *ctx;
} store_embedder;

/* ---- the store ---------------------------------------------------------------------------- */

typedef struct store store;

typedef struct store_options {
    keys_kdf kdf;                   /* for a new store; zero means keys_kdf_default() */
    bool no_create;                 /* fail with LLMOS_ERR_NOT_FOUND instead of creating */
    const store_embedder *embedder; /* for archival memory; NULL: archival add/search fail */
    int wal_autocheckpoint;         /* WAL pages before an automatic checkpoint; 0 = 1000 */
    bool no_fsync;                  /* tests only: never fsync (PRAGMA synchronous=OFF); still
                                       safe when a process dies, not when the power fails */
    bool start_over;                /* when the key file is there but the database is missing or
                                       empty: set the old key file aside (store.key.old-<db id>)
                                       and make a new, empty store with a new key, instead of
                                       failing. No effect on a store whose database is there. */
    const char *freshness_dir;      /* where this machine keeps the store's freshness record
                                       (<dir>/<db id in hex>: the newest audit head seen, sealed);
                                       NULL keeps none. memory_open: <llmos home>/freshness */
    bool allow_rollback;            /* open a store older than its freshness record (or whose
                                       record does not open) with a warning, and leave a
                                       "store.rollback" audit record, instead of failing */
    const uint8_t *data_key;        /* open an existing store with its data key (32 bytes)
                                       instead of the passphrase (keys_unlock_with_key); the
                                       passphrase may then be NULL */
} store_options;

/* Open (or create) the store in directory `dir` (created with mode 0700), unlocking it with
 * `passphrase`. `opt` may be NULL for defaults. Migrates the schema to the current version.
 * Wrong passphrase: LLMOS_ERR_AUTH. A tampered database: LLMOS_ERR_CRYPTO naming file and page.
 * A directory of another user, or one its group or others may write to: LLMOS_ERR_DENIED. A key
 * file whose database is missing (LLMOS_ERR_NOT_FOUND) or empty (LLMOS_ERR_FORMAT) is refused
 * with a message saying so, unless opt->start_over. With opt->freshness_dir, a store older
 * than its freshness record (an older copy put back) is LLMOS_ERR_CRYPTO naming both audit
 * sequence numbers, unless opt->allow_rollback. Close with store_close. */
LLMOS_API LLMOS_NODISCARD llmos_err store_open(const char *dir, const char *passphrase,
                                               const store_options *opt, store **out);
/* A store in memory only (SQLite's ":memory:" database): the same schema and functions, no
 * files, no keys, gone at store_close. store_db_path says ":memory:". */
LLMOS_API LLMOS_NODISCARD llmos_err store_open_memory(const store_options *opt, store **out);
/* Close the store (checkpointing the WAL) and wipe its keys. NULL is a no-op. */
LLMOS_API void store_close(store *s);
/* Rewrap the store's data key under a new passphrase (see keys_change_passphrase). */
LLMOS_API LLMOS_NODISCARD llmos_err store_change_passphrase(store *s, const char *old_passphrase,
                                                            const char *new_passphrase,
                                                            keys_kdf kdf);
/* The schema version the store is at (PRAGMA user_version). */
LLMOS_API int store_schema_version(store *s);
/* Paths of the database and key file (owned by the store). */
LLMOS_API const char *store_db_path(const store *s);
LLMOS_API const char *store_key_path(const store *s);
/* Where the old key file was set aside when store_open started over (opt->start_over), or NULL
 * when it did not (owned by the store). */
LLMOS_API const char *store_set_aside_key(const store *s);

/* A rollback accepted at open (store_options.allow_rollback): the newest audit record the
 * freshness record had seen (-1 when the record did not open) and where the store's log ended.
 * True once, the first time it is asked (audit_open asks, and records it in the log). */
typedef struct store_rollback_notice {
    int64_t seen_seq, found_seq;
} store_rollback_notice;
LLMOS_API LLMOS_NODISCARD bool store_take_rollback_notice(store *s, store_rollback_notice *out);

/* A MAC (keyed BLAKE2b-256) of `purpose` (a C string naming what is signed, with its NUL) and
 * msg[0..len) under a key derived from the store's data key: for statements about the store
 * that must not be forged without its key (audit checkpoints). And the store's database id.
 * LLMOS_ERR_UNSUPPORTED for a store in memory only, which has no key. */
#define STORE_MAC_BYTES 32
LLMOS_API LLMOS_NODISCARD llmos_err store_mac(store *s, const char *purpose, const void *msg,
                                              size_t len, uint8_t tag[STORE_MAC_BYTES]);
LLMOS_API LLMOS_NODISCARD llmos_err store_db_id(store *s, uint8_t id[16]);

/* Explicit transactions, so that several writes commit together. Writes outside them commit
 * one by one. store_rollback's result may be ignored (it is usually called on an error path,
 * and SQLite rolls back by itself when a rollback fails). */
LLMOS_API LLMOS_NODISCARD llmos_err store_begin(store *s);
LLMOS_API LLMOS_NODISCARD llmos_err store_commit(store *s);
LLMOS_API llmos_err store_rollback(store *s);

/* Check the whole store: every page of the database file opened with the key, SQLite's PRAGMA
 * integrity_check, and the full-text indexes against their tables. LLMOS_ERR_CRYPTO (naming
 * the page) or LLMOS_ERR_FORMAT on a problem. */
LLMOS_API LLMOS_NODISCARD llmos_err store_verify(store *s);

/* A number that changes whenever another connection (another llmos process) committed a change
 * to the store since the last call; SQLite's PRAGMA data_version. Cheap: no page is read. */
LLMOS_API LLMOS_NODISCARD llmos_err store_data_version(store *s, int64_t *version);

typedef struct store_stats {
    int64_t messages, archival, core_blocks, settings, audit_records;
    int64_t db_bytes, wal_bytes; /* sizes of the files on disk */
    int64_t page_count, page_size;
    int schema_version;
    bool vector_index;  /* an HNSW index is in use for archival search */
    char embedder[128]; /* "NAME DIM" of the embedder that made the archival vectors (the
                           setting STORE_EMBEDDER_SETTING), "" when none is recorded */
} store_stats;
LLMOS_API LLMOS_NODISCARD llmos_err store_get_stats(store *s, store_stats *out);

/* ---- memory per principal -----------------------------------------------------------------
 * Messages, archival passages and core blocks belong to a principal (the user who owns the
 * store, or an API key's principal on a shared server): each function takes it, and a search
 * never returns another principal's data. */

/* ---- recall memory: messages ---------------------------------------------------------------- */

typedef struct store_message {
    int64_t id;
    char *conversation; /* process or conversation id */
    char *role;         /* "user", "assistant", "system", "tool", ... */
    char *content;
    int64_t created_at; /* Unix time, seconds */
    double score;       /* search: BM25 relevance (higher is better); 0 otherwise */
} store_message;

/* Append a message of `principal`. created_at 0 means now. *id (may be NULL) receives its id. */
LLMOS_API LLMOS_NODISCARD llmos_err store_message_add(store *s, const char *principal,
                                                      const char *conversation, const char *role,
                                                      const char *content, int64_t created_at,
                                                      int64_t *id);

typedef struct store_search_opts {
    const char *principal;    /* only this principal's messages; NULL = all (the owner's tools) */
    const char *conversation; /* only this conversation; NULL = all */
    int64_t since, until;     /* created_at range, inclusive; 0 = open */
    size_t limit;             /* most results; 0 = 10 */
    size_t offset;            /* results to skip (pages) */
} store_search_opts;

/* Full-text search of messages (FTS5, ranked by BM25). The query is plain words: each word is
 * matched as a term (no FTS5 syntax is interpreted), messages with more and rarer matching
 * words rank higher. An empty query lists the newest messages. `opts` may be NULL. The caller
 * frees the array with store_messages_free (*out is NULL when nothing matched). */
LLMOS_API LLMOS_NODISCARD llmos_err store_message_search(store *s, const char *query,
                                                         const store_search_opts *opts,
                                                         store_message **out, size_t *n);
LLMOS_API void store_messages_free(store_message *m, size_t n);

/* ---- archival memory ---------------------------------------------------------------------- */

typedef struct store_archival {
    int64_t id;
    char *text;
    char *metadata; /* JSON object text, "{}" when none */
    int64_t created_at, updated_at;
    double score; /* search: cosine similarity to the query (higher is better) */
} store_archival;

/* Store a passage of `principal` with its embedding (computed with the store's embedder) and
 * metadata (a JSON object as text, or NULL). *id (may be NULL) receives its id. */
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_add(store *s, const char *principal,
                                                       const char *text, const char *metadata,
                                                       int64_t *id);
/* Fetch one passage of `principal`; LLMOS_ERR_NOT_FOUND when absent (or another's). Clear *out
 * with store_archival_clear. */
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_get(store *s, const char *principal, int64_t id,
                                                       store_archival *out);
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_delete(store *s, const char *principal,
                                                          int64_t id);
/* The k passages of `principal` that best match `query`, best first: the nearest by embedding
 * (the HNSW index once the collection is large, filtered to the principal's passages; exact
 * search below that) and the best by words (BM25) merged by reciprocal rank fusion. Each hit's
 * score is its cosine similarity to the query. Free with store_archivals_free. */
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_search(store *s, const char *principal,
                                                          const char *query, size_t k,
                                                          store_archival **out, size_t *n);
/* Compute every passage's embedding again with `emb` (all principals) and make it the store's
 * embedder (the vector index is rebuilt); *n passages. One transaction: a failure leaves the
 * store as it was. */
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_reembed(store *s, const store_embedder *emb,
                                                           size_t *n);
/* Use `emb` (may be NULL: archival add and search then fail saying so) from now on. */
LLMOS_API LLMOS_NODISCARD llmos_err store_set_embedder(store *s, const store_embedder *emb);
/* One page of `principal`'s passages, newest first: `limit` of them after skipping `offset`.
 * Needs no embedder. Free with store_archivals_free. */
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_list(store *s, const char *principal,
                                                        size_t offset, size_t limit,
                                                        store_archival **out, size_t *n);

/* What store_archival_verify found. */
typedef struct store_archival_check {
    char embedder[256];       /* the embedder of the stored vectors, "" when there are none */
    int64_t vectors;          /* vectors checked (right size, finite, unit length or zero) */
    char index_signature[96]; /* of the saved HNSW index, "" when none is saved */
    bool index_current;       /* the saved index is for the rows the table holds now */
    bool index_checked;       /* ...and holds exactly their ids with their vectors */
} store_archival_check;

/* Check archival memory against itself: every vector from one embedder, of its size, finite and
 * of unit length; and the saved vector index, when it is for the current rows, holding exactly
 * the table's vectors (a stale one is not an error: it is rebuilt when next used).
 * LLMOS_ERR_FORMAT naming the first passage that is wrong. Needs no embedder. */
LLMOS_API LLMOS_NODISCARD llmos_err store_archival_verify(store *s, store_archival_check *out);
LLMOS_API void store_archival_clear(store_archival *a);
LLMOS_API void store_archivals_free(store_archival *a, size_t n);

/* ---- core memory blocks ------------------------------------------------------------------- */

/* Set block `label` of `principal` to `value`, at most `limit` bytes (limit 0 keeps the block's
 * current limit, or 2000 for a new block). A value over the limit is LLMOS_ERR_LIMIT. */
LLMOS_API LLMOS_NODISCARD llmos_err store_core_set(store *s, const char *principal,
                                                   const char *label, const char *value,
                                                   size_t limit);
/* *value (malloc'd, caller frees) and *limit (may be NULL) of block `label` of `principal`;
 * LLMOS_ERR_NOT_FOUND when absent. */
LLMOS_API LLMOS_NODISCARD llmos_err store_core_get(store *s, const char *principal,
                                                   const char *label, char **value, size_t *limit);

typedef struct store_core_block {
    char *label, *value;
    size_t limit;
} store_core_block;

/* The blocks of `principal`, oldest first; *out malloc'd (free with store_core_blocks_free),
 * NULL when none. */
LLMOS_API LLMOS_NODISCARD llmos_err store_core_list(store *s, const char *principal,
                                                    store_core_block **out, size_t *n);
LLMOS_API void store_core_blocks_free(store_core_block *b, size_t n);

/* The setting that records which embedder made a store's archival vectors ("NAME DIM"). */
#define STORE_EMBEDDER_SETTING "archival.embedder"

/* ---- settings ------------------------------------------------------------------------------- */

LLMOS_API LLMOS_NODISCARD llmos_err store_setting_set(store *s, const char *key, const char *value);
/* *value malloc'd (caller frees); LLMOS_ERR_NOT_FOUND when absent. */
LLMOS_API LLMOS_NODISCARD llmos_err store_setting_get(store *s, const char *key, char **value);

/* ---- KV-cache snapshots (context switches) ------------------------------------------------ */

#define STORE_SNAPSHOT_MAX ((size_t)1 << 30) /* the largest snapshot kept, bytes */

/* A snapshot of a process's KV cache as the backend wrote it (llm_kv_save): the kernel keeps
 * it per principal under a name ("proc:<pid>"), with the identity of the model that made it
 * and the tokens it holds. The bytes are opaque here; the pages holding them are sealed like
 * every other page of the store. */
typedef struct store_snapshot {
    char *model;    /* the model's identity (malloc'd) */
    int64_t tokens; /* tokens of context it holds */
    uint8_t *data;  /* malloc'd */
    size_t len;
    int64_t created_at;
} store_snapshot;

/* Keep (replace) principal's snapshot `name`. LLMOS_ERR_LIMIT past STORE_SNAPSHOT_MAX. */
LLMOS_API LLMOS_NODISCARD llmos_err store_snapshot_put(store *s, const char *principal,
                                                       const char *name, const char *model,
                                                       int64_t tokens, const void *data,
                                                       size_t len);
/* Read it into *out (free with store_snapshot_clear); LLMOS_ERR_NOT_FOUND when absent. */
LLMOS_API LLMOS_NODISCARD llmos_err store_snapshot_get(store *s, const char *principal,
                                                       const char *name, store_snapshot *out);
/* Forget it (absent: no error). */
LLMOS_API LLMOS_NODISCARD llmos_err store_snapshot_delete(store *s, const char *principal,
                                                          const char *name);
LLMOS_API void store_snapshot_clear(store_snapshot *sn);

/* ---- audit records ------------------------------------------------------------------------ */

/* One audit record. The hash chain (what prev_hash and hash cover) is the kernel's business;
 * the store keeps the bytes. */
typedef struct store_audit_record {
    int64_t seq;  /* assigned by store_audit_append, increasing from 1 */
    int64_t time; /* Unix time, seconds (0 on append = now) */
    const char *kind;
    const char *payload;          /* JSON text */
    size_t kind_len, payload_len; /* iterate: their lengths in bytes as stored, which are
                                     more than strlen() when a NUL was put inside; append
                                     ignores them (kind and payload are C strings) */
    const uint8_t *prev_hash;
    size_t prev_hash_len;
    const uint8_t *hash;
    size_t hash_len;
} store_audit_record;

/* Append a record; *seq (may be NULL) receives its sequence number. */
LLMOS_API LLMOS_NODISCARD llmos_err store_audit_append(store *s, const store_audit_record *rec,
                                                       int64_t *seq);
/* Call fn for each record with seq >= from_seq, in order; fn returns false to stop. The record's
 * pointers are valid during the call only. */
LLMOS_API LLMOS_NODISCARD llmos_err store_audit_iterate(
    store *s, int64_t from_seq, bool (*fn)(const store_audit_record *rec, void *ctx), void *ctx);

#ifdef __cplusplus
}
#endif

#endif
