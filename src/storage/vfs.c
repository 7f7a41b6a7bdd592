/*
 * vfs.c - an SQLite VFS that seals every page with XChaCha20-Poly1305 (encryption at rest).
 *
 * How it fits: SQLite talks to files only through a VFS. This one, named VFS_NAME, wraps the
 * default (unix) VFS and sits between SQLite's pager and the file: writes are sealed on the way
 * out, reads are authenticated and decrypted on the way in. SQLite itself never sees
 * ciphertext and the disk never sees plaintext.
 *
 * Page layout (all three file kinds): a page is VFS_PAGE_SIZE (4096) bytes. SQLite is told, via
 * the "reserved bytes" field of the database header (offset 20, see the SQLite file format,
 * section 1.3.4 "Reserved bytes per page"), to leave the last 40 bytes of every page unused.
 * On disk, bytes [0, 4056) are the ciphertext, [4056, 4080) the random 24-byte nonce and
 * [4080, 4096) the Poly1305 tag. The associated data binds each page to its place: file kind,
 * page number, position (WAL frame number or journal record offset), the database id and, in
 * the WAL, the frame header's page number, commit size and salts (vfs_page_ad).
 *
 * Page 1, header included, is sealed like any other page: SQLite's 100-byte header reads are
 * served by opening the whole first page. The page size is therefore fixed (VFS_PAGE_SIZE) and
 * known to the VFS without reading the file; a write of page 1 whose header says otherwise is
 * refused.
 *
 * Where pages are in each file (SQLite file format, sections 4.1 and 4.3 of "Database File
 * Format"):
 *   database   page n at offset (n-1)*P
 *   WAL        32-byte header, then frames of a 24-byte frame header + P page bytes; frame i
 *              (from 1) starts at 32 + (i-1)*(24+P). SQLite writes the frame header and the
 *              page as two writes; we seal the page with the header's first 16 bytes in the
 *              associated data. The WAL and frame headers stay in clear: they hold only page
 *              numbers, sizes, salts and checksums, no content.
 *   journal    records of 4-byte page number, P page bytes, 4-byte checksum, after a header;
 *              every P-byte read or write at an offset just after a page number is a page.
 * Other files (temporary databases, statement journals, super-journals) are refused: the store
 * keeps temporary data in memory (PRAGMA temp_store=MEMORY), so nothing else reaches the disk.
 *
 * Torn WAL frames: after a crash the last frames of the WAL may be half written. SQLite finds
 * the end of the valid log by the frame checksums while it rebuilds the WAL index, reading each
 * whole frame (header + page) in one call. When such a read meets a page that fails
 * authentication we hand SQLite random bytes, its checksum then fails and it treats the frame as
 * the end of the log, exactly as it would without encryption. (Zeros would not do: the
 * checksum of a new, empty page matches zeros, and SQLite would accept a torn frame.) When two
 * authenticated commit frames of the same WAL generation follow the bad frame, it cannot have
 * been torn by a crash, and the read is an error (wal_later_commits). A single page read (SQLite
 * fetching a page it believes committed) that fails authentication is always an error.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "storage/vfs.h"

/* SQLite file format constants (Database File Format, section 4.1 "WAL File Format"). */
#define WAL_HDR_BYTES       32
#define WAL_FRAME_HDR_BYTES 24
/* Database header offsets (section 1.3): page size (2 bytes BE) and reserved bytes. */
#define DBHDR_PAGE_SIZE_OFF 16
#define DBHDR_RESERVE_OFF   20

/* The sizes the page format writes down (docs/storage.md): a 4096-byte page ends in a 24-byte
 * XChaCha20 nonce and a 16-byte Poly1305 tag; the associated data is 56 bytes. */
_Static_assert(VFS_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(VFS_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(VFS_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES, "key size");
_Static_assert(VFS_PAGE_SIZE == 4096 && VFS_RESERVE == 40, "page and reserve sizes");
_Static_assert(VFS_AD_BYTES == 8 + 4 + 4 + 8 + VFS_DBID_BYTES + 16, "associated data size");

static const char vfs_kdf_context[crypto_kdf_CONTEXTBYTES] = {'l', 'l', 'm', 'o',
                                                              's', 'p', 'a', 'g'};

/* ---- statistics and per-thread error -------------------------------------------------- */

static _Atomic uint64_t stat_sealed, stat_opened, stat_authfail;
static _Thread_local llmos_err vfs_err;

llmos_err vfs_take_error(void)
{
    llmos_err e = vfs_err;
    vfs_err = LLMOS_OK;
    return e;
}

void vfs_get_stats(vfs_stats *out)
{
    assert(out);
    out->pages_sealed = stat_sealed;
    out->pages_opened = stat_opened;
    out->auth_failures = stat_authfail;
}

/* Record why the VFS refused an operation (detail message + code for store.c). */
static void vfs_fail(llmos_err code, const char *fmt, ...) LLMOS_PRINTF(2, 3);
static void vfs_fail(llmos_err code, const char *fmt, ...)
{
    assert(code != LLMOS_OK);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    vfs_err = code;
    llmos_fail(code, "%s", msg);
}

/* ---- the page codec ------------------------------------------------------------------- */

void vfs_page_ad(uint8_t ad[VFS_AD_BYTES], vfs_kind kind, const uint8_t db_id[VFS_DBID_BYTES],
                 uint32_t pgno, uint64_t pos, const uint8_t *frame_hdr16)
{
    assert(ad && db_id);
    assert(kind == VFS_KIND_DB || kind == VFS_KIND_WAL || kind == VFS_KIND_JOURNAL);
    assert(!frame_hdr16 || kind == VFS_KIND_WAL); /* only WAL pages have a frame header */
    memset(ad, 0, VFS_AD_BYTES);
    memcpy(ad, "llmosPG1", 8); // NOLINT(bugprone-not-null-terminated-result): 8 bytes of binary
                               // associated data, no terminator
    ad[8] = (uint8_t)kind;
    llmos_store_le32(ad + 12, pgno);
    llmos_store_le64(ad + 16, pos);
    memcpy(ad + 24, db_id, VFS_DBID_BYTES);
    if (frame_hdr16)
        memcpy(ad + 40, frame_hdr16, 16);
}

llmos_err vfs_page_seal(const uint8_t key[VFS_KEY_BYTES], const uint8_t ad[VFS_AD_BYTES],
                        const uint8_t *plain, uint8_t *out, size_t page_size)
{
    assert(key && ad && plain && out);
    assert(page_size == VFS_PAGE_SIZE); /* the format has one page size */
    size_t body = page_size - VFS_RESERVE;
    static const uint8_t zeros[VFS_RESERVE];
    if (memcmp(plain + body, zeros, VFS_RESERVE) != 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "page to seal uses its last %u bytes, which must be reserved for "
                          "nonce and tag (was the database created without reserved bytes?)",
                          VFS_RESERVE);
    uint8_t *nonce = out + body;
    uint8_t *tag = nonce + VFS_NONCE_BYTES;
    randombytes_buf(nonce, VFS_NONCE_BYTES);
    unsigned long long taglen = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(out, tag, &taglen, plain, body, ad,
                                                        VFS_AD_BYTES, NULL, nonce, key);
    assert(taglen == VFS_TAG_BYTES);
    stat_sealed++;
    return LLMOS_OK;
}

bool vfs_page_open(const uint8_t key[VFS_KEY_BYTES], const uint8_t ad[VFS_AD_BYTES],
                   const uint8_t *sealed, uint8_t *out, size_t page_size)
{
    assert(key && ad && (sealed || page_size == 0) && (out || page_size == 0));
    if (page_size <= VFS_RESERVE) {
        memset(out, 0, page_size);
        return false;
    }
    size_t body = page_size - VFS_RESERVE;
    /* copy nonce and tag first: out may alias sealed */
    uint8_t nt[VFS_RESERVE];
    memcpy(nt, sealed + body, VFS_RESERVE);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            out, NULL, sealed, body, nt + VFS_NONCE_BYTES, ad, VFS_AD_BYTES, nt, key) != 0) {
        memset(out, 0, page_size);
        stat_authfail++;
        return false;
    }
    memset(out + body, 0, VFS_RESERVE);
    stat_opened++;
    return true;
}

/* ---- key registry ----------------------------------------------------------------------- */

typedef struct vfs_keyslot {
    uint64_t token; /* 0 = free */
    uint8_t *key;   /* page key, sodium_malloc */
    uint8_t db_id[VFS_DBID_BYTES];
} vfs_keyslot;

#define VFS_MAX_KEYS 64
static vfs_keyslot key_slots[VFS_MAX_KEYS];
static pthread_mutex_t key_mu = PTHREAD_MUTEX_INITIALIZER;

llmos_err vfs_key_add(const uint8_t data_key[VFS_KEY_BYTES], const uint8_t db_id[VFS_DBID_BYTES],
                      uint64_t *token)
{
    assert(data_key && db_id && token);
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_CRYPTO, "libsodium failed to initialise");
    uint8_t *k = sodium_malloc(VFS_KEY_BYTES);
    if (!k)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory for a page key");
    crypto_kdf_derive_from_key(k, VFS_KEY_BYTES, 1, vfs_kdf_context, data_key);
    sodium_mprotect_readonly(k);
    pthread_mutex_lock(&key_mu);
    for (int i = 0; i < VFS_MAX_KEYS; i++) {
        if (key_slots[i].token == 0) {
            uint64_t t = 0;
            while (t == 0)
                randombytes_buf(&t, sizeof t);
            t &= 0x7fffffffffffffffull; /* fits sqlite3_uri_int64 */
            if (t == 0)
                t = 1;
            assert(t > 0 && t <= INT64_MAX); /* 0 marks a free slot; the URI reads an int64 */
            key_slots[i].token = t;
            key_slots[i].key = k;
            memcpy(key_slots[i].db_id, db_id, VFS_DBID_BYTES);
            pthread_mutex_unlock(&key_mu);
            *token = t;
            return LLMOS_OK;
        }
    }
    pthread_mutex_unlock(&key_mu);
    sodium_free(k);
    return llmos_fail(LLMOS_ERR_LIMIT, "more than %d encrypted databases open at once",
                      VFS_MAX_KEYS);
}

void vfs_key_remove(uint64_t token)
{
    if (token == 0)
        return;
    pthread_mutex_lock(&key_mu);
    for (int i = 0; i < VFS_MAX_KEYS; i++) {
        if (key_slots[i].token == token) {
            sodium_free(key_slots[i].key); /* sodium_free wipes it */
            memset(&key_slots[i], 0, sizeof key_slots[i]);
        }
    }
    pthread_mutex_unlock(&key_mu);
}

/* Copy the page key of `token` into key (locked memory owned by the caller). */
static bool key_lookup(uint64_t token, uint8_t *key, uint8_t db_id[VFS_DBID_BYTES])
{
    assert(key && db_id);
    bool found = false;
    pthread_mutex_lock(&key_mu);
    for (int i = 0; i < VFS_MAX_KEYS && token; i++) {
        if (key_slots[i].token == token) {
            memcpy(key, key_slots[i].key, VFS_KEY_BYTES);
            memcpy(db_id, key_slots[i].db_id, VFS_DBID_BYTES);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&key_mu);
    return found;
}

llmos_err vfs_verify_file(uint64_t token, const char *db_path, uint64_t *n_pages)
{
    assert(db_path);
    if (n_pages)
        *n_pages = 0;
    uint8_t *key = sodium_malloc(VFS_KEY_BYTES + 2 * (size_t)VFS_PAGE_SIZE);
    if (!key)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory to verify %s", db_path);
    uint8_t *sealed = key + VFS_KEY_BYTES, *plain = sealed + VFS_PAGE_SIZE;
    uint8_t db_id[VFS_DBID_BYTES];
    llmos_err err = LLMOS_OK;
    FILE *fp = NULL;
    if (!key_lookup(token, key, db_id)) {
        err = llmos_fail(LLMOS_ERR_INVALID, "no key registered for token %llu",
                         (unsigned long long)token);
        goto done;
    }
    fp = fopen(db_path, "rb");
    if (!fp) {
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot open to verify: %s", db_path, strerror(errno));
        goto done;
    }
    for (uint32_t pgno = 1;; pgno++) {
        size_t got = fread(sealed, 1, VFS_PAGE_SIZE, fp);
        if (got == 0)
            break;
        if (got != VFS_PAGE_SIZE) {
            err = llmos_fail(LLMOS_ERR_FORMAT,
                             "%s: database page %u is cut short (%zu of %u bytes): the file was "
                             "truncated",
                             db_path, pgno, got, VFS_PAGE_SIZE);
            goto done;
        }
        uint8_t ad[VFS_AD_BYTES];
        vfs_page_ad(ad, VFS_KIND_DB, db_id, pgno, 0, NULL);
        if (!vfs_page_open(key, ad, sealed, plain, VFS_PAGE_SIZE)) {
            err = llmos_fail(LLMOS_ERR_CRYPTO,
                             "%s: database page %u (offset %llu) fails authentication: it was "
                             "altered, moved from another position or file, or sealed with "
                             "another key",
                             db_path, pgno, (unsigned long long)(pgno - 1) * VFS_PAGE_SIZE);
            goto done;
        }
        if (n_pages)
            *n_pages = pgno;
    }
done:
    if (fp)
        fclose(fp);
    sodium_free(key);
    return err;
}

/* ---- the file object ---------------------------------------------------------------------- */

typedef struct vfs_file {
    sqlite3_file base;  /* must be first: SQLite sees this */
    sqlite3_file *real; /* the wrapped file, in the same allocation after this struct */
    vfs_kind kind;
    uint32_t psz;     /* page size P */
    const char *path; /* for messages; owned by SQLite, valid until xClose */
    uint8_t *key;     /* page key, sodium_malloc */
    uint8_t db_id[VFS_DBID_BYTES];
    uint8_t *buf; /* scratch: a sealed page, then (plain) an opened one */
    uint8_t *plain;
    /* WAL: the frame header most recently written, to seal the page that follows it */
    sqlite3_int64 hdr_off;
    uint8_t hdr[WAL_FRAME_HDR_BYTES];
    /* journal: the 4-byte page number most recently written */
    sqlite3_int64 pgno_off;
    uint8_t pgno_bytes[4];
} vfs_file;

static sqlite3_vfs *base_vfs; /* the wrapped default VFS */

static size_t real_offset(void)
{
    return (sizeof(vfs_file) + 15) & ~(size_t)15;
}

static const char *vfs_kind_name(vfs_kind k)
{
    return k == VFS_KIND_DB ? "database" : k == VFS_KIND_WAL ? "WAL" : "journal";
}

/* Read exactly n bytes at off from the real file; SHORT_READ (zero-filled) passes through. */
static int real_read(vfs_file *f, void *p, int n, sqlite3_int64 off)
{
    return f->real->pMethods->xRead(f->real, p, n, off);
}

static int real_write(vfs_file *f, const void *p, int n, sqlite3_int64 off)
{
    return f->real->pMethods->xWrite(f->real, p, n, off);
}

static sqlite3_int64 real_size(vfs_file *f)
{
    sqlite3_int64 sz = -1;
    if (f->real->pMethods->xFileSize(f->real, &sz) != SQLITE_OK)
        return -1;
    return sz;
}

/* Seal page_plain into f->buf with the given AD and write it at off. */
static int seal_and_write(vfs_file *f, const uint8_t *page_plain, const uint8_t *ad,
                          sqlite3_int64 off, uint32_t pgno)
{
    assert(f->key && f->buf && f->psz == VFS_PAGE_SIZE && off >= 0);
    if (vfs_page_seal(f->key, ad, page_plain, f->buf, f->psz) != LLMOS_OK) {
        vfs_fail(LLMOS_ERR_INVALID, "%s: %s page %u: refusing to write: %s", f->path,
                 vfs_kind_name(f->kind), pgno, llmos_errmsg());
        return SQLITE_IOERR_WRITE;
    }
    return real_write(f, f->buf, (int)f->psz, off);
}

/* ---- database file ---------------------------------------------------------------------- */

/* Read page pgno (1-based) of the database into out (plaintext). */
static int db_read_page(vfs_file *f, uint32_t pgno, uint8_t *out)
{
    assert(pgno >= 1 && f->psz == VFS_PAGE_SIZE && f->buf && out);
    sqlite3_int64 off = (sqlite3_int64)(pgno - 1) * f->psz;
    int rc = real_read(f, f->buf, (int)f->psz, off);
    if (rc == SQLITE_IOERR_SHORT_READ) {
        sqlite3_int64 size = real_size(f);
        if (pgno == 1 && size == 0) {
            memset(out, 0, f->psz); /* a new, empty database */
            return SQLITE_IOERR_SHORT_READ;
        }
        vfs_fail(LLMOS_ERR_FORMAT,
                 "%s: database page %u is cut short: the file is %lld bytes, the page needs "
                 "bytes %lld..%lld (the file was truncated; restore it from a backup)",
                 f->path, pgno, (long long)size, (long long)off, (long long)(off + f->psz));
        return SQLITE_IOERR_DATA;
    }
    if (rc != SQLITE_OK)
        return rc;
    uint8_t ad[VFS_AD_BYTES];
    vfs_page_ad(ad, VFS_KIND_DB, f->db_id, pgno, 0, NULL);
    if (!vfs_page_open(f->key, ad, f->buf, out, f->psz)) {
        vfs_fail(LLMOS_ERR_CRYPTO,
                 "%s: database page %u (offset %lld) fails authentication: it was altered, "
                 "moved from another position or file, or sealed with another key",
                 f->path, pgno, (long long)off);
        return SQLITE_IOERR_DATA;
    }
    return SQLITE_OK;
}

static int db_read(vfs_file *f, uint8_t *p, int n, sqlite3_int64 off)
{
    assert(n >= 0 && off >= 0);
    uint8_t *page = f->plain;
    int result = SQLITE_OK;
    while (n > 0) {
        uint32_t pgno = (uint32_t)(off / f->psz) + 1;
        size_t in = (size_t)(off % f->psz);
        size_t take = f->psz - in;
        if (take > (size_t)n)
            take = (size_t)n;
        int rc = db_read_page(f, pgno, page);
        if (rc == SQLITE_IOERR_SHORT_READ) {
            memset(p, 0, (size_t)n);
            result = rc;
            break;
        }
        if (rc != SQLITE_OK) {
            result = rc;
            break;
        }
        memcpy(p, page + in, take);
        p += take;
        n -= (int)take;
        off += (sqlite3_int64)take;
    }
    return result;
}

static int db_write(vfs_file *f, const uint8_t *p, int n, sqlite3_int64 off)
{
    if ((uint32_t)n != f->psz || off % f->psz != 0) {
        vfs_fail(LLMOS_ERR_INTERNAL,
                 "%s: unexpected database write of %d bytes at offset %lld (whole %u-byte "
                 "pages expected)",
                 f->path, n, (long long)off, f->psz);
        return SQLITE_IOERR_WRITE;
    }
    uint32_t pgno = (uint32_t)(off / f->psz) + 1;
    if (pgno == 1) {
        uint32_t psz = llmos_load_be16(p + DBHDR_PAGE_SIZE_OFF);
        if (psz == 1)
            psz = 65536;
        if (psz != f->psz || p[DBHDR_RESERVE_OFF] != VFS_RESERVE) {
            vfs_fail(LLMOS_ERR_INTERNAL,
                     "%s: database header says page size %u with %u reserved bytes; this VFS "
                     "needs %u and %u",
                     f->path, psz, p[DBHDR_RESERVE_OFF], f->psz, VFS_RESERVE);
            return SQLITE_IOERR_WRITE;
        }
    }
    uint8_t ad[VFS_AD_BYTES];
    vfs_page_ad(ad, VFS_KIND_DB, f->db_id, pgno, 0, NULL);
    return seal_and_write(f, p, ad, off, pgno);
}

/* ---- WAL file --------------------------------------------------------------------------- */

static sqlite3_int64 wal_frame_size(const vfs_file *f)
{
    return WAL_FRAME_HDR_BYTES + (sqlite3_int64)f->psz;
}

/* Frame number (from 1) whose page bytes start at off, or 0 if off is not such a place. */
static uint32_t wal_page_frame(const vfs_file *f, sqlite3_int64 off)
{
    sqlite3_int64 rel = off - WAL_HDR_BYTES - WAL_FRAME_HDR_BYTES;
    if (rel < 0 || rel % wal_frame_size(f) != 0)
        return 0;
    return (uint32_t)(rel / wal_frame_size(f)) + 1;
}

static sqlite3_int64 wal_frame_off(const vfs_file *f, uint32_t frame)
{
    assert(frame >= 1);
    return WAL_HDR_BYTES + (sqlite3_int64)(frame - 1) * wal_frame_size(f);
}

/* The 24-byte header of `frame`, from the cache of the last header written or from the file. */
static int wal_frame_header(vfs_file *f, uint32_t frame, uint8_t hdr[WAL_FRAME_HDR_BYTES])
{
    sqlite3_int64 hoff = wal_frame_off(f, frame);
    if (f->hdr_off == hoff) {
        memcpy(hdr, f->hdr, WAL_FRAME_HDR_BYTES);
        return SQLITE_OK;
    }
    return real_read(f, hdr, WAL_FRAME_HDR_BYTES, hoff);
}

/* The salts that bind a frame's page: the frame header's, or the WAL header's while the frame
 * header has zeros there. A transaction that rewrote one of its own frames in place writes its
 * later frames with zero salts and checksums and fills them in at commit (SQLite's wal.c:
 * walEncodeFrame with iReCksum set, then walRewriteChecksums), with the WAL header's salts. */
static int wal_ad_salts(vfs_file *f, uint8_t hdr[WAL_FRAME_HDR_BYTES])
{
    static const uint8_t zero[8];
    if (memcmp(hdr + 8, zero, 8) != 0)
        return SQLITE_OK;
    uint8_t whdr[WAL_HDR_BYTES];
    int rc = real_read(f, whdr, WAL_HDR_BYTES, 0);
    if (rc == SQLITE_OK)
        memcpy(hdr + 8, whdr + 16, 8);
    return rc;
}

/* After frame `bad` failed authentication while SQLite rebuilds its index: true when two
 * authenticated commit frames of the current WAL generation (salts equal to the WAL header's)
 * follow it. A crash can tear only frames not yet synced, i.e. of the last transaction, and
 * its own commit frame is at most one of those that follow; a second one was written after
 * that transaction's commit returned, so `bad` was altered, not torn. */
static bool wal_later_commits(vfs_file *f, uint32_t bad)
{
    uint8_t whdr[WAL_HDR_BYTES], hdr[WAL_FRAME_HDR_BYTES];
    if (real_read(f, whdr, WAL_HDR_BYTES, 0) != SQLITE_OK)
        return false;
    sqlite3_int64 size = real_size(f);
    int commits = 0;
    uint8_t *plain = sodium_malloc(f->psz);
    if (!plain)
        return false;
    for (uint32_t fr = bad + 1; commits < 2; fr++) {
        sqlite3_int64 off = wal_frame_off(f, fr);
        if (off + wal_frame_size(f) > size)
            break;
        if (real_read(f, hdr, WAL_FRAME_HDR_BYTES, off) != SQLITE_OK ||
            memcmp(hdr + 8, whdr + 16, 8) != 0 || llmos_load_be32(hdr + 4) == 0)
            continue;
        if (real_read(f, f->buf, (int)f->psz, off + WAL_FRAME_HDR_BYTES) != SQLITE_OK)
            break;
        uint8_t ad[VFS_AD_BYTES];
        vfs_page_ad(ad, VFS_KIND_WAL, f->db_id, llmos_load_be32(hdr), fr, hdr);
        if (vfs_page_open(f->key, ad, f->buf, plain, f->psz))
            commits++;
    }
    sodium_free(plain);
    return commits >= 2;
}

/* Open the page of `frame` into out. `whole_frame`: the caller is reading header and page
 * together (SQLite rebuilding its index after a crash), where a page that fails authentication
 * is a torn frame at the end of the log (see the file comment). */
static int wal_read_page(vfs_file *f, uint32_t frame, uint8_t *out, bool whole_frame)
{
    uint8_t hdr[WAL_FRAME_HDR_BYTES];
    int rc = wal_frame_header(f, frame, hdr);
    if (rc == SQLITE_OK)
        rc = wal_ad_salts(f, hdr);
    if (rc == SQLITE_OK)
        rc = real_read(f, f->buf, (int)f->psz, wal_frame_off(f, frame) + WAL_FRAME_HDR_BYTES);
    if (rc == SQLITE_IOERR_SHORT_READ) {
        if (whole_frame) {
            memset(out, 0, f->psz);
            return SQLITE_IOERR_SHORT_READ;
        }
        vfs_fail(LLMOS_ERR_FORMAT, "%s: WAL frame %u is cut short (the file was truncated)",
                 f->path, frame);
        return SQLITE_IOERR_DATA;
    }
    if (rc != SQLITE_OK)
        return rc;
    uint32_t pgno = llmos_load_be32(hdr);
    uint8_t ad[VFS_AD_BYTES];
    vfs_page_ad(ad, VFS_KIND_WAL, f->db_id, pgno, frame, hdr);
    if (vfs_page_open(f->key, ad, f->buf, out, f->psz))
        return SQLITE_OK;
    if (whole_frame && !wal_later_commits(f, frame)) {
        /* Random bytes make SQLite's frame checksum fail, so the log ends before this frame.
         * Not zeros: a page whose plaintext was all zeros (a new empty page) has a checksum
         * that zeros would match, and SQLite would accept a frame we cannot read back. */
        LOG_INFO("storage",
                 "%s: WAL frame %u (page %u) does not authenticate; treating it as "
                 "the torn end of the log",
                 f->path, frame, pgno);
        randombytes_buf(out, f->psz);
        return SQLITE_OK;
    }
    vfs_fail(LLMOS_ERR_CRYPTO,
             "%s: WAL frame %u (database page %u) fails authentication: it was altered, moved "
             "or sealed with another key",
             f->path, frame, pgno);
    return SQLITE_IOERR_DATA;
}

static int wal_read(vfs_file *f, uint8_t *p, int n, sqlite3_int64 off)
{
    sqlite3_int64 end = off + n;
    /* the WAL header and everything up to the first page bytes are plain */
    int rc = SQLITE_OK;
    uint8_t *page = f->plain;
    while (off < end) {
        if (off < WAL_HDR_BYTES) {
            sqlite3_int64 stop = end < WAL_HDR_BYTES ? end : WAL_HDR_BYTES;
            rc = real_read(f, p, (int)(stop - off), off);
            if (rc != SQLITE_OK)
                break;
            p += stop - off;
            off = stop;
            continue;
        }
        sqlite3_int64 rel = off - WAL_HDR_BYTES;
        uint32_t frame = (uint32_t)(rel / wal_frame_size(f)) + 1;
        sqlite3_int64 in = rel % wal_frame_size(f);
        sqlite3_int64 fstart = wal_frame_off(f, frame);
        if (in < WAL_FRAME_HDR_BYTES) {
            sqlite3_int64 stop = fstart + WAL_FRAME_HDR_BYTES;
            if (stop > end)
                stop = end;
            rc = real_read(f, p, (int)(stop - off), off);
            if (rc != SQLITE_OK)
                break;
            p += stop - off;
            off = stop;
            continue;
        }
        /* whole frame: this call also covers the frame's header */
        bool whole = fstart >= end - n && end >= fstart + wal_frame_size(f);
        rc = wal_read_page(f, frame, page, whole);
        if (rc != SQLITE_OK) {
            if (rc == SQLITE_IOERR_SHORT_READ)
                memset(p, 0, (size_t)(end - off));
            break;
        }
        sqlite3_int64 pin = in - WAL_FRAME_HDR_BYTES;
        sqlite3_int64 take = (sqlite3_int64)f->psz - pin;
        if (take > end - off)
            take = end - off;
        memcpy(p, page + pin, (size_t)take);
        p += take;
        off += take;
    }
    return rc;
}

static int wal_write(vfs_file *f, const uint8_t *p, int n, sqlite3_int64 off)
{
    if (off == 0 && n == WAL_HDR_BYTES)
        return real_write(f, p, n, off);
    if (n == WAL_FRAME_HDR_BYTES && off >= WAL_HDR_BYTES &&
        (off - WAL_HDR_BYTES) % wal_frame_size(f) == 0) {
        memcpy(f->hdr, p, WAL_FRAME_HDR_BYTES);
        f->hdr_off = off;
        return real_write(f, p, n, off);
    }
    uint32_t frame = wal_page_frame(f, off);
    if ((uint32_t)n != f->psz || frame == 0) {
        vfs_fail(LLMOS_ERR_INTERNAL,
                 "%s: unexpected WAL write of %d bytes at offset %lld (not a header, frame "
                 "header or page)",
                 f->path, n, (long long)off);
        return SQLITE_IOERR_WRITE;
    }
    uint8_t hdr[WAL_FRAME_HDR_BYTES];
    int rc = wal_frame_header(f, frame, hdr);
    if (rc == SQLITE_OK)
        rc = wal_ad_salts(f, hdr);
    if (rc != SQLITE_OK)
        return rc;
    uint32_t pgno = llmos_load_be32(hdr);
    uint8_t ad[VFS_AD_BYTES];
    vfs_page_ad(ad, VFS_KIND_WAL, f->db_id, pgno, frame, hdr);
    return seal_and_write(f, p, ad, off, pgno);
}

/* ---- rollback journal ------------------------------------------------------------------- */

/* The page number stored in the 4 bytes before a journal page record at off. */
static int journal_pgno(vfs_file *f, sqlite3_int64 off, uint32_t *pgno)
{
    uint8_t b[4];
    if (f->pgno_off == off - 4) {
        memcpy(b, f->pgno_bytes, 4);
    } else {
        int rc = real_read(f, b, 4, off - 4);
        if (rc != SQLITE_OK)
            return rc;
    }
    *pgno = llmos_load_be32(b);
    return SQLITE_OK;
}

static int journal_read(vfs_file *f, uint8_t *p, int n, sqlite3_int64 off)
{
    if ((uint32_t)n != f->psz || off < 4)
        return real_read(f, p, n, off); /* header fields, page numbers, checksums */
    uint32_t pgno = 0;
    int rc = journal_pgno(f, off, &pgno);
    if (rc == SQLITE_OK)
        rc = real_read(f, f->buf, n, off);
    if (rc == SQLITE_IOERR_SHORT_READ) {
        memset(p, 0, (size_t)n); /* a torn record: SQLite's checksum stops the playback */
        return rc;
    }
    if (rc != SQLITE_OK)
        return rc;
    uint8_t ad[VFS_AD_BYTES];
    vfs_page_ad(ad, VFS_KIND_JOURNAL, f->db_id, pgno, (uint64_t)off, NULL);
    if (!vfs_page_open(f->key, ad, f->buf, p, f->psz)) {
        /* random bytes: the record's checksum fails and SQLite ends the playback there, as
         * for a record torn by a crash (zeros could match the checksum of an empty page) */
        randombytes_buf(p, f->psz);
        LOG_WARN("storage",
                 "%s: journal record for page %u at offset %lld does not "
                 "authenticate; treating it as torn",
                 f->path, pgno, (long long)off);
    }
    return SQLITE_OK;
}

static int journal_write(vfs_file *f, const uint8_t *p, int n, sqlite3_int64 off)
{
    if (n == 4) {
        memcpy(f->pgno_bytes, p, 4);
        f->pgno_off = off;
        return real_write(f, p, n, off);
    }
    /* A journal header (at most one sector, which can be P bytes) starts with the journal
     * magic d9 d5 05 f9 20 a1 63 d7 (file format section 4.4); no database page starts so
     * (b-tree pages start with a flag byte, others with a page number below 2^30). */
    static const uint8_t journal_magic[8] = {0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7};
    bool header = n >= 8 && memcmp(p, journal_magic, 8) == 0;
    if (!header && (uint32_t)n == f->psz && off >= 4 && f->pgno_off == off - 4) {
        uint32_t pgno = llmos_load_be32(f->pgno_bytes);
        uint8_t ad[VFS_AD_BYTES];
        vfs_page_ad(ad, VFS_KIND_JOURNAL, f->db_id, pgno, (uint64_t)off, NULL);
        return seal_and_write(f, p, ad, off, pgno);
    }
    if (!header && (uint32_t)n >= f->psz && off >= 4) {
        vfs_fail(LLMOS_ERR_INTERNAL, "%s: unexpected journal write of %d bytes at offset %lld",
                 f->path, n, (long long)off);
        return SQLITE_IOERR_WRITE;
    }
    return real_write(f, p, n, off); /* headers, checksums, super-journal name */
}

/* ---- io methods ----------------------------------------------------------------------- */

static int x_close(sqlite3_file *pf)
{
    vfs_file *f = (vfs_file *)pf;
    int rc = SQLITE_OK;
    if (f->real->pMethods)
        rc = f->real->pMethods->xClose(f->real);
    sodium_free(f->key);
    sodium_free(f->buf);
    f->key = f->buf = f->plain = NULL;
    return rc;
}

static int x_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off)
{
    vfs_file *f = (vfs_file *)pf;
    switch (f->kind) {
    case VFS_KIND_DB: return db_read(f, p, n, off);
    case VFS_KIND_WAL: return wal_read(f, p, n, off);
    case VFS_KIND_JOURNAL: return journal_read(f, p, n, off);
    }
    return SQLITE_IOERR_READ;
}

static int x_write(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off)
{
    vfs_file *f = (vfs_file *)pf;
    switch (f->kind) {
    case VFS_KIND_DB: return db_write(f, p, n, off);
    case VFS_KIND_WAL: return wal_write(f, p, n, off);
    case VFS_KIND_JOURNAL: return journal_write(f, p, n, off);
    }
    return SQLITE_IOERR_WRITE;
}

static int x_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    vfs_file *f = (vfs_file *)pf;
    f->hdr_off = f->pgno_off = -1;
    return f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *pf, int flags)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xFileSize(f->real, size);
}

static int x_lock(sqlite3_file *pf, int lock)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xLock(f->real, lock);
}

static int x_unlock(sqlite3_file *pf, int lock)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xUnlock(f->real, lock);
}

static int x_check_reserved(sqlite3_file *pf, int *out)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int x_file_control(sqlite3_file *pf, int op, void *arg)
{
    vfs_file *f = (vfs_file *)pf;
    if (op == SQLITE_FCNTL_VFSNAME) {
        *(char **)arg = sqlite3_mprintf("%s", VFS_NAME);
        return SQLITE_OK;
    }
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int x_sector_size(sqlite3_file *pf)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xSectorSize(f->real);
}

static int x_device_characteristics(sqlite3_file *pf)
{
    vfs_file *f = (vfs_file *)pf;
    int c = f->real->pMethods->xDeviceCharacteristics(f->real);
    /* Batch-atomic writes would bypass the journal; power-safe overwrite keeps SQLite from
     * padding or splitting WAL writes, which must arrive as whole headers and pages. */
    c &= ~SQLITE_IOCAP_BATCH_ATOMIC;
    c |= SQLITE_IOCAP_POWERSAFE_OVERWRITE;
    return c;
}

static int x_shm_map(sqlite3_file *pf, int pg, int pgsz, int extend, void volatile **pp)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int x_shm_lock(sqlite3_file *pf, int offset, int n, int flags)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *pf)
{
    vfs_file *f = (vfs_file *)pf;
    f->real->pMethods->xShmBarrier(f->real);
}

static int x_shm_unmap(sqlite3_file *pf, int del)
{
    vfs_file *f = (vfs_file *)pf;
    return f->real->pMethods->xShmUnmap(f->real, del);
}

/* Memory-mapped reads would hand SQLite ciphertext: always decline, SQLite then uses xRead. */
static int x_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp)
{
    (void)pf;
    (void)off;
    (void)n;
    *pp = NULL;
    return SQLITE_OK;
}

static int x_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    (void)pf;
    (void)off;
    (void)p;
    return SQLITE_OK;
}

static const sqlite3_io_methods vfs_io = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

/* ---- vfs methods ---------------------------------------------------------------------- */

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *pf, int flags,
                  int *out_flags)
{
    (void)vfs;
    vfs_file *f = (vfs_file *)pf;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)((char *)pf + real_offset());
    f->hdr_off = f->pgno_off = -1;
    f->psz = VFS_PAGE_SIZE;
    f->path = name ? name : "(temporary)";

    if (flags & SQLITE_OPEN_MAIN_DB)
        f->kind = VFS_KIND_DB;
    else if (flags & SQLITE_OPEN_WAL)
        f->kind = VFS_KIND_WAL;
    else if (flags & SQLITE_OPEN_MAIN_JOURNAL)
        f->kind = VFS_KIND_JOURNAL;
    else {
        vfs_fail(LLMOS_ERR_UNSUPPORTED,
                 "%s: the encrypting VFS does not store temporary files (flags 0x%x); keep "
                 "temporary data in memory (PRAGMA temp_store=MEMORY)",
                 f->path, (unsigned)flags);
        return SQLITE_CANTOPEN;
    }
    if (!name) {
        vfs_fail(LLMOS_ERR_UNSUPPORTED, "the encrypting VFS needs a file name");
        return SQLITE_CANTOPEN;
    }
    f->key = sodium_malloc(VFS_KEY_BYTES);
    f->buf = sodium_malloc(2 * (size_t)f->psz);
    f->plain = f->buf ? f->buf + f->psz : NULL;
    if (!f->key || !f->buf) {
        sodium_free(f->key);
        sodium_free(f->buf);
        f->key = f->buf = NULL;
        return SQLITE_NOMEM;
    }
    bool have_key = false;
    if (f->kind == VFS_KIND_DB) {
        uint64_t token = (uint64_t)sqlite3_uri_int64(name, "llmos_key", 0);
        have_key = key_lookup(token, f->key, f->db_id);
    } else {
        sqlite3_file *main = sqlite3_database_file_object(name);
        if (main && main->pMethods == &vfs_io) {
            vfs_file *m = (vfs_file *)main;
            memcpy(f->key, m->key, VFS_KEY_BYTES);
            memcpy(f->db_id, m->db_id, VFS_DBID_BYTES);
            have_key = true;
        }
    }
    if (!have_key) {
        vfs_fail(LLMOS_ERR_INVALID,
                 "%s: no key: open encrypted databases with the URI parameter llmos_key=<token> "
                 "from vfs_key_add",
                 name);
        sodium_free(f->key);
        sodium_free(f->buf);
        f->key = f->buf = NULL;
        return SQLITE_CANTOPEN;
    }
    int rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        sodium_free(f->key);
        sodium_free(f->buf);
        f->key = f->buf = NULL;
        return rc;
    }
    assert(f->psz == VFS_PAGE_SIZE && f->key && f->buf && f->plain == f->buf + f->psz);
    f->base.pMethods = &vfs_io;
    return SQLITE_OK;
}

static int x_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    (void)vfs;
    return base_vfs->xDelete(base_vfs, name, sync_dir);
}

static int x_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    (void)vfs;
    return base_vfs->xAccess(base_vfs, name, flags, out);
}

static int x_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    (void)vfs;
    return base_vfs->xFullPathname(base_vfs, name, n, out);
}

static void *x_dlopen(sqlite3_vfs *vfs, const char *name)
{
    (void)vfs;
    return base_vfs->xDlOpen(base_vfs, name);
}

static void x_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
    (void)vfs;
    base_vfs->xDlError(base_vfs, n, msg);
}

static void (*x_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    (void)vfs;
    return base_vfs->xDlSym(base_vfs, h, sym);
}

static void x_dlclose(sqlite3_vfs *vfs, void *h)
{
    (void)vfs;
    base_vfs->xDlClose(base_vfs, h);
}

static int x_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    randombytes_buf(out, (size_t)n);
    return n;
}

static int x_sleep(sqlite3_vfs *vfs, int us)
{
    (void)vfs;
    return base_vfs->xSleep(base_vfs, us);
}

static int x_current_time(sqlite3_vfs *vfs, double *out)
{
    (void)vfs;
    return base_vfs->xCurrentTime(base_vfs, out);
}

static int x_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    (void)vfs;
    return base_vfs->xGetLastError ? base_vfs->xGetLastError(base_vfs, n, out) : 0;
}

static int x_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    (void)vfs;
    return base_vfs->xCurrentTimeInt64(base_vfs, out);
}

static sqlite3_vfs the_vfs;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_ERROR;

static void do_register(void)
{
    if (sodium_init() < 0 || sqlite3_initialize() != SQLITE_OK)
        return;
    base_vfs = sqlite3_vfs_find(NULL);
    if (!base_vfs || base_vfs->iVersion < 2)
        return;
    the_vfs.iVersion = 2;
    the_vfs.szOsFile = (int)(real_offset() + (size_t)base_vfs->szOsFile);
    the_vfs.mxPathname = base_vfs->mxPathname;
    the_vfs.zName = VFS_NAME;
    the_vfs.xOpen = x_open;
    the_vfs.xDelete = x_delete;
    the_vfs.xAccess = x_access;
    the_vfs.xFullPathname = x_full_pathname;
    the_vfs.xDlOpen = x_dlopen;
    the_vfs.xDlError = x_dlerror;
    the_vfs.xDlSym = x_dlsym;
    the_vfs.xDlClose = x_dlclose;
    the_vfs.xRandomness = x_randomness;
    the_vfs.xSleep = x_sleep;
    the_vfs.xCurrentTime = x_current_time;
    the_vfs.xGetLastError = x_get_last_error;
    the_vfs.xCurrentTimeInt64 = x_current_time64;
    register_rc = sqlite3_vfs_register(&the_vfs, 0);
}

llmos_err vfs_register(void)
{
    pthread_once(&register_once, do_register);
    if (register_rc != SQLITE_OK)
        return llmos_fail(LLMOS_ERR_INTERNAL,
                          "could not register the encrypting SQLite VFS (libsodium or SQLite "
                          "failed to initialise, or no default VFS)");
    return LLMOS_OK;
}
