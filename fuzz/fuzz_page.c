/*
 * fuzz_page.c - fuzz the page decoder of the encrypting VFS (vfs_page_open), the code that
 * reads bytes an attacker may have written to the disk.
 *
 * Each input is used three ways:
 *   1. as a sealed page of its own length under a fixed key: it must be rejected (only pages
 *      sealed with the key open) and the output must come back zeroed;
 *   2. as the plaintext of a page (its first 4056 bytes; the reserve left zero): sealing and
 *      opening must give it back, and the same page must not open at another page number;
 *   3. that sealed page with one bit flipped (position chosen by the input): rejected.
 * A violated property aborts, so the corpus replay in ctest fails loudly.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "storage/vfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t fuzz_key[VFS_KEY_BYTES] = {
    0x6c, 0x6c, 0x6d, 0x6f, 0x73, 0x2d, 0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x6b, 0x65, 0x79, 0x00, 0x01,
    0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11};
static const uint8_t fuzz_id[VFS_DBID_BYTES] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    if (size > 65536)
        return 0;
    uint8_t ad[VFS_AD_BYTES];
    uint32_t pgno = size >= 4 ? (uint32_t)data[0] | (uint32_t)data[1] << 8 : 1;
    vfs_kind kind = (vfs_kind)(1 + (size ? data[size - 1] % 3 : 0));
    uint8_t hdr[16] = {0};
    if (size >= 16)
        memcpy(hdr, data, 16);
    vfs_page_ad(ad, kind, fuzz_id, pgno, size, kind == VFS_KIND_WAL ? hdr : NULL);

    /* 1. arbitrary bytes as a sealed page */
    uint8_t *out = malloc(size ? size : 1);
    if (!out)
        return 0;
    memset(out, 0xa5, size);
    if (vfs_page_open(fuzz_key, ad, data, out, size))
        abort(); /* forged without the key */
    for (size_t i = 0; i < size; i++)
        if (out[i] != 0)
            abort(); /* rejected pages leave no partial plaintext behind */
    free(out);

    /* 2. the input as plaintext: round trip */
    static uint8_t plain[VFS_PAGE_SIZE], sealed[VFS_PAGE_SIZE], back[VFS_PAGE_SIZE];
    memset(plain, 0, sizeof plain);
    size_t body = VFS_PAGE_SIZE - VFS_RESERVE;
    memcpy(plain, data, size < body ? size : body);
    if (vfs_page_seal(fuzz_key, ad, plain, sealed, VFS_PAGE_SIZE) != LLMOS_OK)
        abort();
    if (!vfs_page_open(fuzz_key, ad, sealed, back, VFS_PAGE_SIZE) ||
        memcmp(plain, back, VFS_PAGE_SIZE) != 0)
        abort();
    uint8_t ad2[VFS_AD_BYTES];
    vfs_page_ad(ad2, kind, fuzz_id, pgno + 1, size, kind == VFS_KIND_WAL ? hdr : NULL);
    if (vfs_page_open(fuzz_key, ad2, sealed, back, VFS_PAGE_SIZE))
        abort(); /* moved to another page number */

    /* 3. one flipped bit anywhere in the sealed page */
    size_t bit = size >= 3 ? ((size_t)data[1] << 8 | data[2]) % (VFS_PAGE_SIZE * 8) : size;
    sealed[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    if (vfs_page_open(fuzz_key, ad, sealed, back, VFS_PAGE_SIZE))
        abort();
    return 0;
}
