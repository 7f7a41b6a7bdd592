/*
 * storage/vfs.h - llmos's encrypting SQLite VFS (private to src/storage/, tests and fuzz).
 *
 * The VFS wraps the default unix VFS. Every page of the main database, of its WAL and of its
 * rollback journal is sealed with XChaCha20-Poly1305 before it reaches the file, and opened
 * (authenticated, then decrypted) when SQLite reads it. The nonce and tag live in the last
 * VFS_RESERVE bytes of each page, which SQLite is told to leave alone (the "reserved bytes" of
 * the database header, offset 20). docs/storage.md describes the layout.
 *
 * Keys never travel in file names: a caller registers its data key with vfs_key_add and gets a
 * token, and opens the database with the URI parameter `llmos_key=<token>` on the VFS named
 * VFS_NAME. Each open file derives and keeps its own copy of the page key in locked memory.
 */
#ifndef LLMOS_STORAGE_VFS_H
#define LLMOS_STORAGE_VFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llmos/base.h"

#define VFS_NAME "llmos-aead"
/* The page size every llmos database uses (SQLite's default). */
#define VFS_PAGE_SIZE 4096u
/* Reserved bytes at the end of every page: 24-byte XChaCha20 nonce + 16-byte Poly1305 tag. */
#define VFS_NONCE_BYTES 24u
#define VFS_TAG_BYTES   16u
#define VFS_RESERVE     (VFS_NONCE_BYTES + VFS_TAG_BYTES)
#define VFS_KEY_BYTES   32u
#define VFS_DBID_BYTES  16u
/* Associated data length (layout in vfs_page_ad). */
#define VFS_AD_BYTES 56u

/* Which file a page belongs to; part of the associated data, so a page sealed for one kind
 * never opens as another. */
typedef enum vfs_kind { VFS_KIND_DB = 1, VFS_KIND_WAL = 2, VFS_KIND_JOURNAL = 3 } vfs_kind;

/* Register the VFS with SQLite (idempotent, thread-safe). It does not become the default. */
LLMOS_NODISCARD llmos_err vfs_register(void);

/* Make a data key available to files opened with `llmos_key=<*token>`. The page key is derived
 * from data_key (crypto_kdf, context "llmospag", subkey 1) and copied into locked memory; the
 * caller may wipe its copy. db_id identifies the database (associated data of every page). */
LLMOS_NODISCARD llmos_err vfs_key_add(const uint8_t data_key[VFS_KEY_BYTES],
                                      const uint8_t db_id[VFS_DBID_BYTES], uint64_t *token);
/* Forget a token (files already open keep their own key copy until closed). */
void vfs_key_remove(uint64_t token);

/* The associated data of one page: "llmosPG1" | kind (1) | 0 0 0 | pgno (u32 LE) |
 * pos (u64 LE: WAL frame number, journal record offset, 0 in the database) | db_id (16) |
 * WAL frame header bytes 0..15 (pgno, commit size, salts) or zeros. Writes VFS_AD_BYTES. */
void vfs_page_ad(uint8_t ad[VFS_AD_BYTES], vfs_kind kind, const uint8_t db_id[VFS_DBID_BYTES],
                 uint32_t pgno, uint64_t pos, const uint8_t *frame_hdr16);

/* Seal one page: plain[0..page_size) whose last VFS_RESERVE bytes must be zero (else
 * LLMOS_ERR_INVALID: SQLite was not told to reserve them). out gets the ciphertext of the first
 * page_size - VFS_RESERVE bytes, then a fresh random nonce, then the tag. */
LLMOS_NODISCARD llmos_err vfs_page_seal(const uint8_t key[VFS_KEY_BYTES],
                                        const uint8_t ad[VFS_AD_BYTES], const uint8_t *plain,
                                        uint8_t *out, size_t page_size);
/* Open one sealed page. Returns true and the plaintext (reserve zeroed) in out, or false when
 * the tag does not verify (out is then zeroed). Never reads outside sealed[0..page_size). */
bool vfs_page_open(const uint8_t key[VFS_KEY_BYTES], const uint8_t ad[VFS_AD_BYTES],
                   const uint8_t *sealed, uint8_t *out, size_t page_size);

/* Authenticate every page of the database file at db_path (not through SQLite: this also
 * covers free pages) with the key of `token`. *n_pages (may be NULL) receives the page count.
 * LLMOS_ERR_CRYPTO naming the first page that fails, LLMOS_ERR_FORMAT when the size is not a
 * whole number of pages. */
LLMOS_NODISCARD llmos_err vfs_verify_file(uint64_t token, const char *db_path, uint64_t *n_pages);

/* The llmos_err of the last page the VFS refused on this thread (LLMOS_ERR_CRYPTO for a page
 * that failed authentication, LLMOS_ERR_FORMAT for a truncated file, ...), or LLMOS_OK. The
 * detail message (llmos_errmsg) names the file and page. Reading clears it. */
llmos_err vfs_take_error(void);

/* Statistics for tests and `llmos memory stats`: pages sealed and opened by this process. */
typedef struct vfs_stats {
    uint64_t pages_sealed, pages_opened, auth_failures;
} vfs_stats;
void vfs_get_stats(vfs_stats *out);

#endif
