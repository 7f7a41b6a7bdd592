/*
 * digest.c - SHA-256 of streams and files for the app store (llmos/apps.h).
 *
 * OpenSSL's EVP implementation: it picks SHA-NI or AVX2 code at run time, so verifying a model
 * before a load runs at the speed of `sha256sum` (bench: docs/supply-chain.md). libsodium's
 * SHA-256 is portable C, several times slower on large files.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "llmos/apps.h"

struct apps_hasher {
    EVP_MD_CTX *ctx;
};

apps_hasher *apps_hasher_new(void)
{
    apps_hasher *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        apps_hasher_free(h);
        return NULL;
    }
    return h;
}

void apps_hasher_update(apps_hasher *h, const void *data, size_t n)
{
    assert(h && (data || !n));
    if (n)
        EVP_DigestUpdate(h->ctx, data, n);
}

void apps_hasher_final(apps_hasher *h, char hex[APPS_SHA256_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(h->ctx, md, &len);
    assert(len == APPS_SHA256_BYTES);
    llmos_hex_encode(hex, APPS_SHA256_HEX, md, APPS_SHA256_BYTES);
}

void apps_hasher_free(apps_hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

llmos_err apps_sha256_file(const char *path, char hex[APPS_SHA256_HEX], uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return llmos_fail(errno == ENOENT ? LLMOS_ERR_NOT_FOUND : LLMOS_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    enum { BLOCK = 1 << 20 };
    unsigned char *block = malloc(BLOCK);
    apps_hasher *h = apps_hasher_new();
    llmos_err err = LLMOS_OK;
    uint64_t total = 0;
    if (!block || !h)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory hashing %s", path);
    while (!err) {
        ssize_t r = read(fd, block, BLOCK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r <= 0)
            break;
        apps_hasher_update(h, block, (size_t)r);
        total += (uint64_t)r;
    }
    if (!err) {
        apps_hasher_final(h, hex);
        if (size)
            *size = total;
    }
    apps_hasher_free(h);
    free(block);
    close(fd);
    return err;
}
