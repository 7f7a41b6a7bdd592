/*
 * fresh.c - the freshness record of a store, kept outside it, and the store's own MAC.
 *
 * Every page of a store is sealed, but nothing in a page says when it was written: an older
 * copy of the whole store directory, put back over the current one, opens and verifies (its
 * audit log is a whole, older chain). The freshness record remembers, outside the store, the
 * newest audit head this machine saw, so that an older store is noticed when it is opened:
 *
 *   <freshness dir>/<db id in hex>   (memory_open: <llmos home>/freshness/)
 *     0   8  magic "llmosFR1"
 *     8  24  XChaCha20-Poly1305 nonce, fresh for every write
 *    32  48  sealed: last audit seq (u64 LE), its hash (32 bytes), time written (i64 LE)
 *    80  16  tag
 *   associated data: the magic and the database id; key: crypto_kdf(data key, 1, "llmosfrs")
 *
 * Sealed, so that nobody without the store's key can write a record that lets an older store
 * pass (or make a newer one look rolled back); it is a file of the user's like the store, so
 * whoever can write the llmos home can still delete it, or put back an older copy of it along
 * with the older store (docs/storage.md says what that leaves).
 *
 * When: store_open checks the store against the record and brings the record up to the
 * store's head. After that the record is brought up to date after every commit that appended
 * an audit record (store_commit, or store_audit_append outside a transaction), not at close:
 * a record written only at close would stay behind whenever a process dies without closing
 * (killed, crashed, the power cut), which is when a long-running shell or server has written
 * the most since it last closed. One update is a small file replaced through a temporary (one
 * fsync, none with store_options.no_fsync) after a commit that has just fsynced the WAL itself,
 * and audit records come per request and per system call, not per token, so the cost stays
 * small (docs/storage.md has a measurement). The record is written only after the commit
 * returned, so it can fall behind the store (a crash between the two) but never run ahead of
 * it: a store is never refused for what it really has. Several processes
 * may append to one store; each update takes an exclusive lock on <record>.lock, and writes
 * the head it reads from the database only when it is newer than the record's, so the
 * record only ever moves forward.
 *
 * The store's MAC (store_mac) is keyed BLAKE2b-256 under crypto_kdf(data key, 1, "llmosckp"),
 * for statements about the store that must not be forged without its key (audit checkpoints).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "storage/store_internal.h"

#define FRESH_MAGIC       "llmosFR1"
#define FRESH_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define FRESH_PLAIN_BYTES (8 + STORE_AUDIT_HASH_BYTES + 8)
#define FRESH_FILE_BYTES                                                                           \
    (8 + FRESH_NONCE_BYTES + FRESH_PLAIN_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define FRESH_KEPT_SETTING "store.freshness_kept" /* a record was kept for this store */

_Static_assert(FRESH_FILE_BYTES == 96, "the freshness record is 96 bytes (file comment)");
_Static_assert(STORE_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(STORE_KEY_BYTES == crypto_generichash_KEYBYTES, "MAC key size");
_Static_assert(STORE_MAC_BYTES == crypto_generichash_BYTES, "MAC size");

static const char fresh_context[crypto_kdf_CONTEXTBYTES] = {'l', 'l', 'm', 'o', 's', 'f', 'r', 's'};
static const char mac_context[crypto_kdf_CONTEXTBYTES] = {'l', 'l', 'm', 'o', 's', 'c', 'k', 'p'};

/* An audit head: the last record's seq and hash (0 and zeros for an empty log), and when it
 * was written to the record. */
typedef struct fresh_head {
    int64_t seq;
    uint8_t hash[STORE_AUDIT_HASH_BYTES];
    int64_t time;
} fresh_head;

/* ---- keys ------------------------------------------------------------------------------- */

llmos_err store_keys_derive(store *s, const uint8_t *data_key, const uint8_t db_id[16])
{
    assert(s && data_key && db_id && !s->fresh_key && !s->mac_key);
    s->fresh_key = sodium_malloc(STORE_KEY_BYTES);
    s->mac_key = sodium_malloc(STORE_KEY_BYTES);
    if (!s->fresh_key || !s->mac_key)
        return llmos_fail(LLMOS_ERR_NOMEM, "no locked memory for the store's keys");
    crypto_kdf_derive_from_key(s->fresh_key, STORE_KEY_BYTES, 1, fresh_context, data_key);
    crypto_kdf_derive_from_key(s->mac_key, STORE_KEY_BYTES, 1, mac_context, data_key);
    sodium_mprotect_readonly(s->fresh_key);
    sodium_mprotect_readonly(s->mac_key);
    memcpy(s->db_id, db_id, sizeof s->db_id);
    s->has_keys = true;
    return LLMOS_OK;
}

void store_keys_wipe(store *s)
{
    assert(s);
    sodium_free(s->fresh_key); /* wipes before unmapping; NULL is fine */
    sodium_free(s->mac_key);
    s->fresh_key = s->mac_key = NULL;
    free(s->fresh_path);
    free(s->fresh_lock);
    s->fresh_path = s->fresh_lock = NULL;
}

llmos_err store_mac(store *s, const char *purpose, const void *msg, size_t len,
                    uint8_t tag[STORE_MAC_BYTES])
{
    assert(store_is_open(s) && purpose && (msg || len == 0) && tag);
    if (!s->has_keys)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "a store in memory only has no key to sign with; use a store on disk");
    /* the purpose, with its NUL, first: a MAC made for one use is never valid for another */
    crypto_generichash_state st;
    crypto_generichash_init(&st, s->mac_key, STORE_KEY_BYTES, STORE_MAC_BYTES);
    crypto_generichash_update(&st, (const unsigned char *)purpose, strlen(purpose) + 1);
    crypto_generichash_update(&st, msg, len);
    crypto_generichash_final(&st, tag, STORE_MAC_BYTES);
    sodium_memzero(&st, sizeof st);
    return LLMOS_OK;
}

llmos_err store_db_id(store *s, uint8_t id[16])
{
    assert(store_is_open(s) && id);
    if (!s->has_keys)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED, "a store in memory only has no database id");
    memcpy(id, s->db_id, sizeof s->db_id);
    return LLMOS_OK;
}

/* ---- the database's side ---------------------------------------------------------------- */

/* The hash of audit record `seq`; *found false when there is no such record. */
static llmos_err db_hash_at(store *s, int64_t seq, uint8_t hash[STORE_AUDIT_HASH_BYTES],
                            bool *found)
{
    assert(s && seq >= 0 && hash && found);
    *found = false;
    memset(hash, 0, STORE_AUDIT_HASH_BYTES);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s, "SELECT hash FROM audit WHERE seq = ?1", &st);
    if (err)
        return err;
    sqlite3_bind_int64(st, 1, seq);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found = true;
        const void *h = sqlite3_column_blob(st, 0);
        if (h && sqlite3_column_bytes(st, 0) == STORE_AUDIT_HASH_BYTES)
            memcpy(hash, h, STORE_AUDIT_HASH_BYTES);
    } else if (rc != SQLITE_DONE) {
        err = store_db_fail(s, rc, "reading the audit head");
    }
    sqlite3_finalize(st);
    return err;
}

/* The store's audit head: its last record (seq 0 when the log is empty). */
static llmos_err db_head(store *s, fresh_head *h)
{
    assert(s && h);
    memset(h, 0, sizeof *h);
    sqlite3_stmt *st = NULL;
    llmos_err err = store_prepare(s, "SELECT max(seq) FROM audit", &st);
    if (err)
        return err;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        h->seq = sqlite3_column_int64(st, 0); /* NULL (no record) reads as 0 */
    else
        err = store_db_fail(s, rc, "reading the audit head");
    sqlite3_finalize(st);
    bool found = false;
    if (!err && h->seq > 0)
        err = db_hash_at(s, h->seq, h->hash, &found);
    return err;
}

/* ---- the record file -------------------------------------------------------------------- */

static void record_ad(const store *s, uint8_t ad[8 + 16])
{
    memcpy(ad, FRESH_MAGIC, 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes, no NUL
    memcpy(ad + 8, s->db_id, 16);
}

/* Read and open the record: *exists false when there is none. LLMOS_ERR_CRYPTO when it does
 * not open (altered, cut, or sealed under another key). */
static llmos_err record_read(store *s, fresh_head *r, bool *exists)
{
    assert(s && s->fresh_path && r && exists);
    memset(r, 0, sizeof *r);
    *exists = false;
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(s->fresh_path, 4096, &b);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        buf_free(&b);
        return LLMOS_OK;
    }
    *exists = true;
    uint8_t plain[FRESH_PLAIN_BYTES], ad[24];
    unsigned long long plen = 0;
    record_ad(s, ad);
    if (!err && (b.len != FRESH_FILE_BYTES || memcmp(b.data, FRESH_MAGIC, 8) != 0 ||
                 crypto_aead_xchacha20poly1305_ietf_decrypt(
                     plain, &plen, NULL, (const uint8_t *)b.data + 8 + FRESH_NONCE_BYTES,
                     FRESH_FILE_BYTES - 8 - FRESH_NONCE_BYTES, ad, sizeof ad,
                     (const uint8_t *)b.data + 8, s->fresh_key) != 0))
        err = llmos_fail(LLMOS_ERR_CRYPTO,
                         "%s: this store's freshness record does not open (it was altered, cut, "
                         "or written under another key), so whether the store was rolled back "
                         "cannot be told",
                         s->fresh_path);
    buf_free(&b);
    if (err)
        return err;
    assert(plen == FRESH_PLAIN_BYTES);
    r->seq = (int64_t)llmos_load_le64(plain);
    memcpy(r->hash, plain + 8, STORE_AUDIT_HASH_BYTES);
    r->time = (int64_t)llmos_load_le64(plain + 8 + STORE_AUDIT_HASH_BYTES);
    sodium_memzero(plain, sizeof plain);
    return LLMOS_OK;
}

static llmos_err record_write(store *s, const fresh_head *h)
{
    assert(s && s->fresh_path && h && h->seq >= 0);
    uint8_t file[FRESH_FILE_BYTES], plain[FRESH_PLAIN_BYTES], ad[24];
    memcpy(file, FRESH_MAGIC, 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes
    randombytes_buf(file + 8, FRESH_NONCE_BYTES);
    llmos_store_le64(plain, (uint64_t)h->seq);
    memcpy(plain + 8, h->hash, STORE_AUDIT_HASH_BYTES);
    llmos_store_le64(plain + 8 + STORE_AUDIT_HASH_BYTES, (uint64_t)store_now());
    record_ad(s, ad);
    unsigned long long clen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(file + 8 + FRESH_NONCE_BYTES, &clen, plain,
                                               sizeof plain, ad, sizeof ad, NULL, file + 8,
                                               s->fresh_key);
    assert(clen == FRESH_FILE_BYTES - 8 - FRESH_NONCE_BYTES);
    /* Replaced through a fresh temporary like any file, but the directory is not synced: a
     * rename lost to a power cut leaves the older record, which lags the store (safe), and it
     * saves one of the two fsyncs every update would cost. The data itself is synced before
     * the rename, so that a record never comes back empty or cut, which would not open. */
    int fd = -1;
    char *tmp = NULL;
    llmos_err err = llmos_file_create_temp(s->fresh_path, 0600, &fd, &tmp);
    if (err)
        return err;
    ssize_t w;
    do
        w = write(fd, file, sizeof file);
    while (w < 0 && errno == EINTR);
    if (w != (ssize_t)sizeof file)
        err = llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", tmp,
                         w < 0 ? strerror(errno) : "short write");
    if (!err && !s->no_fsync && fsync(fd) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !err)
        err = llmos_fail(LLMOS_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!err && rename(tmp, s->fresh_path) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot replace: %s", s->fresh_path, strerror(errno));
    if (err)
        /* tmp is set when llmos_file_create_temp returned 0 */
        // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
        unlink(tmp);
    free(tmp);
    return err;
}

/* An exclusive lock on the record (released by closing *fd), so that read, compare and write
 * happen as one among processes. */
static llmos_err record_lock(store *s, int *fd)
{
    assert(s && s->fresh_lock && fd);
    *fd = open(s->fresh_lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (*fd < 0)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot open: %s", s->fresh_lock, strerror(errno));
    while (flock(*fd, LOCK_EX) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(*fd);
        *fd = -1;
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot lock: %s", s->fresh_lock, strerror(e));
    }
    return LLMOS_OK;
}

/* ---- checking and keeping ----------------------------------------------------------------- */

static void when(int64_t t, char *out, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, size, "%Y-%m-%d %H:%M UTC", &tm))
        snprintf(out, size, "(unknown time)");
}

/* Is the store at least as new as the record says, and on the same history? An error (naming
 * both sequence numbers) when not. */
static llmos_err compare(store *s, const fresh_head *rec, const fresh_head *now)
{
    assert(s && rec && now);
    char seen[48];
    when(rec->time, seen, sizeof seen);
    if (now->seq < rec->seq)
        return llmos_fail(LLMOS_ERR_CRYPTO,
                          "%s is older than this machine last saw it: its audit log ends at "
                          "record %" PRId64 ", but record %" PRId64 " was seen here (%s, freshness "
                          "record %s): an older copy of the store was put in its place, and what "
                          "was written after it is lost",
                          s->db_path, now->seq, rec->seq, seen, s->fresh_path);
    uint8_t there[STORE_AUDIT_HASH_BYTES];
    bool found = false;
    llmos_err err = rec->seq > 0 ? db_hash_at(s, rec->seq, there, &found) : LLMOS_OK;
    if (err)
        return err;
    if (rec->seq > 0 && (!found || sodium_memcmp(there, rec->hash, STORE_AUDIT_HASH_BYTES) != 0))
        return llmos_fail(LLMOS_ERR_CRYPTO,
                          "%s: audit record %" PRId64 " is not the one this machine saw (%s, "
                          "freshness record %s), and the log now ends at record %" PRId64
                          ": the store was replaced by a copy with another history (rolled back, "
                          "then written to)",
                          s->db_path, rec->seq, seen, s->fresh_path, now->seq);
    return LLMOS_OK;
}

llmos_err store_fresh_open(store *s, const char *dir, bool allow_rollback)
{
    assert(store_is_open(s) && s->has_keys && dir);
    llmos_err err = llmos_file_private_dir(dir);
    if (err)
        return llmos_fail_context(err, "the freshness records: ");
    char id[2 * sizeof s->db_id + 1];
    llmos_hex_encode(id, sizeof id, s->db_id, sizeof s->db_id);
    llmos_buf b = {0};
    if (buf_printf(&b, "%s/%s", dir, id) || !(s->fresh_path = buf_detach(&b, NULL)) ||
        buf_printf(&b, "%s/%s.lock", dir, id) || !(s->fresh_lock = buf_detach(&b, NULL))) {
        buf_free(&b);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a store");
    }
    int lock = -1;
    if ((err = record_lock(s, &lock)))
        return err;
    fresh_head rec = {0}, now = {0};
    bool exists = false, readable = false;
    err = db_head(s, &now);
    if (!err)
        err = record_read(s, &rec, &exists);
    readable = !err && exists;
    if (readable)
        err = compare(s, &rec, &now);
    if (err && err != LLMOS_ERR_CRYPTO) {
        close(lock);
        return err;
    }
    if (err) {
        char what[1024];
        snprintf(what, sizeof what, "%s", llmos_errmsg());
        if (!allow_rollback) {
            close(lock);
            return llmos_fail(err,
                              "%s. Put the newer copy back; or, if this copy is the one you "
                              "want (a backup restored on purpose), open it once with "
                              "LLMOS_ALLOW_ROLLBACK=1 (store_options.allow_rollback), which "
                              "is recorded in the audit log",
                              what);
        }
        /* the user said so: open, loudly, and leave the audit log a record of it */
        LOG_WARN("storage",
                 "ROLLBACK ACCEPTED: %s. Opened anyway, as LLMOS_ALLOW_ROLLBACK "
                 "(store_options.allow_rollback) asks, and recorded in the audit log",
                 what);
        llmos_err_clear();
        err = LLMOS_OK;
        s->rollback_pending = true;
        s->rollback.seen_seq = readable ? rec.seq : -1;
        s->rollback.found_seq = now.seq;
    } else if (!exists) {
        char *kept = NULL;
        if (store_setting_get(s, FRESH_KEPT_SETTING, &kept) == LLMOS_OK)
            LOG_WARN("storage",
                     "%s: no freshness record in %s, though one was kept for this store before: "
                     "if the store was moved here from another llmos home, that is expected; if "
                     "not, the record was deleted, and whether the store was rolled back cannot "
                     "be told",
                     s->db_path, dir);
        llmos_err_clear();
        free(kept);
        err = store_setting_set(s, FRESH_KEPT_SETTING, "1");
    }
    if (!err && (!readable || s->rollback_pending || now.seq != rec.seq))
        err = record_write(s, &now);
    close(lock);
    return err;
}

void store_fresh_update(store *s)
{
    assert(store_is_open(s));
    s->audit_appended = false;
    if (!s->fresh_path)
        return;
    int lock = -1;
    fresh_head rec = {0}, now = {0};
    bool exists = false;
    llmos_err err = record_lock(s, &lock);
    if (!err)
        err = db_head(s, &now);
    if (!err)
        err = record_read(s, &rec, &exists);
    if (!err && (!exists || now.seq > rec.seq))
        err = record_write(s, &now);
    if (lock >= 0)
        close(lock);
    /* The commit stands; only the record stays behind, which is the safe side (it is brought
     * up to date by the next update that works). */
    if (err)
        LOG_WARN("storage", "the freshness record of %s was not updated: %s", s->db_path,
                 llmos_errmsg());
}

bool store_take_rollback_notice(store *s, store_rollback_notice *out)
{
    assert(store_is_open(s) && out);
    if (!s->rollback_pending)
        return false;
    *out = s->rollback;
    s->rollback_pending = false;
    return true;
}
