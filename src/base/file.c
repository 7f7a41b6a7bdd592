/*
 * file.c - whole-file helpers: read-only mmap, bounded read, crash-safe replace, mkdir -p,
 * secure zeroing.
 *
 * llmos_file_write_atomic follows the classic recipe: write a temporary in the same directory,
 * fsync it, rename it over the target (atomic on POSIX file systems), then fsync the directory so
 * the rename itself survives a power cut. A crash at any point leaves the old or the new content.
 * The temporary is created fresh (llmos_file_create_temp), never through a name someone else
 * put there. llmos_file_private_dir is the check for directories that hold keys and stores.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "llmos/base.h"

llmos_err llmos_file_map(const char *path, llmos_map *out)
{
    out->data = NULL;
    out->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return llmos_fail(errno == ENOENT ? LLMOS_ERR_NOT_FOUND : LLMOS_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return llmos_fail(LLMOS_ERR_INVALID, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        out->data = (const uint8_t *)"";
        return LLMOS_OK;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot map %lld bytes: %s", path,
                          (long long)st.st_size, strerror(e));
    out->data = p;
    out->size = (size_t)st.st_size;
    return LLMOS_OK;
}

void llmos_file_unmap(llmos_map *m)
{
    if (!m)
        return;
    if (m->data && m->size)
        munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

#define HUGE_PAGE ((size_t)2 << 20)

void *llmos_huge_alloc(size_t size)
{
    if (size == 0 || size > SIZE_MAX - 2 * HUGE_PAGE)
        return NULL;
    /* over-allocate by one huge page and trim, so the start is 2 MiB aligned */
    size_t len = (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    uint8_t *raw =
        mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (p > raw)
        munmap(raw, (size_t)(p - raw));
    if (p + len < raw + len + HUGE_PAGE)
        munmap(p + len, (size_t)(raw + len + HUGE_PAGE - (p + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(p, len, MADV_HUGEPAGE); /* advice only: without THP this is plain memory */
#endif
    return p;
}

void llmos_huge_free(void *p, size_t size)
{
    if (p && size)
        munmap(p, (size + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE);
}

llmos_err llmos_file_read_all(const char *path, size_t max_bytes, llmos_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return llmos_fail(errno == ENOENT ? LLMOS_ERR_NOT_FOUND : LLMOS_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    size_t total = 0;
    char chunk[65536];
    llmos_err err = LLMOS_OK;
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n == 0) {
            if (ferror(f))
                err = llmos_fail(LLMOS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (n > max_bytes - total) {
            err = llmos_fail(LLMOS_ERR_LIMIT, "%s: larger than the limit of %zu bytes", path,
                             max_bytes);
            break;
        }
        total += n;
        if ((err = buf_append(out, chunk, n)) != LLMOS_OK)
            break;
    }
    fclose(f);
    return err;
}

llmos_err llmos_file_sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    const char *dir = dirname(copy);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    llmos_err err = LLMOS_OK;
    if (fd < 0 || fsync(fd) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot sync directory: %s", dir, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return err;
}

/* Security: the temporary name is predictable, so someone who can write to the directory may
 * have put a symbolic link (to a file of ours they want overwritten) or a file of their own
 * there. O_CREAT | O_EXCL never opens an existing name and never follows a link at it (POSIX
 * open(2)); O_NOFOLLOW says the same once more. When the name is taken, a random one is tried
 * instead, so a planted name cannot stop the write either. */
#define TEMP_TRIES 8

llmos_err llmos_file_create_temp(const char *path, unsigned mode, int *fd, char **tmp_path)
{
    assert(path && fd && tmp_path);
    *fd = -1;
    *tmp_path = NULL;
    size_t size = strlen(path) + 64;
    char *tmp = malloc(size);
    if (!tmp)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    snprintf(tmp, size, "%s.tmp.%ld", path, (long)getpid());
    for (int i = 0; i < TEMP_TRIES; i++) {
        if (i > 0) {
            uint8_t rnd[8];
            char hex[2 * sizeof rnd + 1];
            randombytes_buf(rnd, sizeof rnd);
            snprintf(tmp, size, "%s.tmp.%ld.%s", path, (long)getpid(),
                     llmos_hex_encode(hex, sizeof hex, rnd, sizeof rnd));
        }
        int f = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
        if (f >= 0) {
            *fd = f;
            *tmp_path = tmp;
            return LLMOS_OK;
        }
        if (errno != EEXIST)
            break;
        if (i == 0)
            LOG_WARN("file",
                     "%s is in the way (left by an interrupted write, or put there by someone "
                     "else); writing through another name",
                     tmp);
    }
    llmos_err err = llmos_fail(LLMOS_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    free(tmp);
    return err;
}

llmos_err llmos_file_write_atomic(const char *path, const void *data, size_t n, unsigned mode)
{
    int fd = -1;
    char *tmp = NULL;
    llmos_err err = llmos_file_create_temp(path, mode, &fd, &tmp);
    if (err)
        return err;
    const unsigned char *p = data;
    size_t left = n;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            err = llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (!err && fsync(fd) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && !err)
        err = llmos_fail(LLMOS_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!err && rename(tmp, path) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "%s: cannot replace: %s", path, strerror(errno));
    if (err)
        /* tmp is set when llmos_file_create_temp returned 0 (llmos_fail returns its nonzero
         * code, so this is reached only on success) */
        // NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker)
        unlink(tmp);
    else
        err = llmos_file_sync_dir(path);
    free(tmp);
    return err;
}

llmos_err llmos_file_mkdirs(const char *path, unsigned mode)
{
    if (!path || !*path)
        return llmos_fail(LLMOS_ERR_INVALID, "llmos_file_mkdirs: empty path");
    char *p = strdup(path);
    if (!p)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err = LLMOS_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char saved = *s;
            *s = '\0';
            if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
                err =
                    llmos_fail(LLMOS_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
                break;
            }
            *s = saved;
            if (saved == '\0')
                break;
        }
    }
    if (!err) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            err = llmos_fail(LLMOS_ERR_IO, "%s: exists and is not a directory", path);
    }
    free(p);
    return err;
}

/* Security: whoever can write to a directory can delete, rename and plant files in it (a
 * symbolic link where llmos will write, an older copy of a store), and its owner can change
 * its mode. A directory that holds keys or a store must therefore belong to us and be
 * writable by nobody else; the check is on the directory itself (where the link leads, when
 * the path is a link), not on its parents. */
llmos_err llmos_file_private_dir(const char *path)
{
    llmos_err err = llmos_file_mkdirs(path, 0700);
    if (err)
        return err;
    struct stat st;
    if (stat(path, &st) != 0)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (st.st_uid != geteuid())
        return llmos_fail(LLMOS_ERR_DENIED,
                          "%s belongs to user id %u, not to you (user id %u): its owner could "
                          "replace or plant files in it; use a directory of your own",
                          path, (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return llmos_fail(LLMOS_ERR_DENIED,
                          "%s is writable by %s (mode %03o): anyone who can write there can "
                          "replace or plant files in it; make it private with 'chmod 700 %s'",
                          path, st.st_mode & S_IWOTH ? "every user" : "its group",
                          (unsigned)(st.st_mode & 0777), path);
    return LLMOS_OK;
}

void llmos_secure_zero(void *p, size_t n)
{
    if (p && n)
        sodium_memzero(p, n);
}
