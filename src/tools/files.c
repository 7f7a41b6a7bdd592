/*
 * files.c - the files tool: list, read, write and patch files in the calling process's
 * workspace (the directory the python and shell tools see as /work).
 *
 * The workspace is written by sandboxed programs, so it may hold anything they could make:
 * symbolic links to /etc/shadow or to "../../store", deep trees, links swapped while llmos
 * looks. Every path is therefore resolved by the kernel, in one step, with openat2 and
 *   RESOLVE_BENEATH        no absolute path, no ".." and no symbolic link (at any component,
 *                          at any moment of the lookup) may lead out of the workspace
 *   RESOLVE_NO_MAGICLINKS  no /proc/self/fd/N-style link
 *   RESOLVE_NO_XDEV        no crossing into another mount
 * and there is no check-then-use window: what is opened is what was checked. Writes go to a
 * new file created beside the target with O_EXCL | O_NOFOLLOW and renamed over it, so a write
 * never goes through a link planted at the name (symbolic or hard: the name is replaced, the
 * file it pointed to is untouched). Reads take regular files only (not a FIFO that would
 * block, not a device).
 *
 * Output is untrusted (the files' contents and names come from programs and from outside).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "llmos/json.h"
#include "llmos/sandbox.h"
#include "llmos/tools.h"
#include "tools/sandbox_tool.h"

#define FILES_MAX_READ  (256 * 1024) /* bytes a read returns */
#define FILES_MAX_WRITE (1 << 20)    /* bytes a write or patch may leave in a file */
#define FILES_MAX_LIST  1000         /* entries a list shows */

static atomic_uint files_counter;

/* openat2 beneath `dirfd` (see above); -1 with errno set on failure. */
static int ws_open(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how = {.flags = (unsigned long long)(flags | O_CLOEXEC),
                           .mode = mode,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/* The error for a failed path operation on `path`. */
static llmos_err path_error(const char *path, int e)
{
    if (e == EXDEV || e == ELOOP)
        return llmos_fail(LLMOS_ERR_DENIED,
                          "'%.200s' leads out of the workspace (an absolute path, '..' above it, "
                          "or a link pointing outside); paths are relative to the workspace",
                          path);
    if (e == ENOENT)
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "'%.200s' does not exist in the workspace", path);
    if (e == ENOSYS)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "this kernel has no openat2 (Linux 5.6 or newer is needed)");
    return llmos_fail(LLMOS_ERR_IO, "'%.200s': %s", path, strerror(e));
}

static void give_to_sandbox(int fd)
{
    uid_t u;
    gid_t g;
    sandbox_owner(&u, &g);
    if (u != geteuid() && fchown(fd, u, g) != 0) {
        /* the run can still read it; it only cannot change it */
    }
}

/* The directory `dir` beneath root, created (with its parents) when missing, as an O_PATH
 * descriptor; -1 and an llmos error. */
static int ws_dir(int root, const char *dir, bool create, llmos_err *err)
{
    int fd = ws_open(root, dir, O_PATH | O_DIRECTORY, 0);
    if (fd >= 0 || errno != ENOENT || !create) {
        if (fd < 0)
            *err = path_error(dir, errno);
        return fd;
    }
    /* component by component, each beneath the last */
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    int cur = dup(root);
    for (char *save = NULL, *c = strtok_r(buf, "/", &save); c && cur >= 0;
         c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0)
            continue;
        if (strcmp(c, "..") == 0) {
            close(cur);
            *err = llmos_fail(LLMOS_ERR_INVALID, "'%.200s': no '..' in a directory to create", dir);
            return -1;
        }
        int next = ws_open(cur, c, O_PATH | O_DIRECTORY, 0);
        if (next < 0 && errno == ENOENT) {
            if (mkdirat(cur, c, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                close(cur);
                *err = path_error(dir, e);
                return -1;
            }
            next = ws_open(cur, c, O_RDONLY | O_DIRECTORY, 0);
            if (next >= 0) {
                give_to_sandbox(next);
                close(next);
                next = ws_open(cur, c, O_PATH | O_DIRECTORY, 0);
            }
        }
        int e = errno;
        close(cur);
        cur = next;
        if (cur < 0) {
            *err = path_error(dir, e);
            return -1;
        }
    }
    return cur;
}

/* Write content to path beneath root: a new file beside it, renamed over it. */
static llmos_err ws_write(int root, const char *path, const char *content, size_t len)
{
    if (len > FILES_MAX_WRITE)
        return llmos_fail(LLMOS_ERR_LIMIT, "content: more than %d bytes", FILES_MAX_WRITE);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : dir;
    char namebuf[256];
    if (strlen(name) >= sizeof namebuf)
        return llmos_fail(LLMOS_ERR_INVALID, "'%.200s': the file name is too long", path);
    memcpy(namebuf, name, strlen(name) + 1);
    if (!*namebuf || strcmp(namebuf, ".") == 0 || strcmp(namebuf, "..") == 0)
        return llmos_fail(LLMOS_ERR_INVALID, "'%.200s' does not name a file", path);
    if (slash)
        *slash = 0;
    llmos_err err = LLMOS_OK;
    int dfd = ws_dir(root, slash ? (*dir ? dir : "/") : ".", true, &err);
    if (dfd < 0)
        return err;
    char tmp[96];
    int fd = -1;
    for (int i = 0; i < 16 && fd < 0; i++) {
        snprintf(tmp, sizeof tmp, ".llmos-write-%d-%u-%d", (int)getpid(),
                 atomic_fetch_add(&files_counter, 1), i);
        fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        err = path_error(path, errno);
        close(dfd);
        return err;
    }
    give_to_sandbox(fd);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, content + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int e = off == len ? 0 : errno ? errno : EIO;
    if (close(fd) != 0 && !e)
        e = errno;
    if (!e && renameat(dfd, tmp, dfd, namebuf) != 0)
        e = errno;
    if (e) {
        unlinkat(dfd, tmp, 0);
        err = e == EISDIR ? llmos_fail(LLMOS_ERR_INVALID, "'%.200s' is a directory", path)
                          : path_error(path, e);
    }
    close(dfd);
    return err;
}

/* The whole regular file at path beneath root, at most max bytes from offset, into b;
 * *size gets its size. */
static llmos_err ws_read(int root, const char *path, size_t offset, size_t max, llmos_buf *b,
                         size_t *size)
{
    int fd = ws_open(root, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
    if (fd < 0)
        return path_error(path, errno);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return llmos_fail(LLMOS_ERR_INVALID, "'%.200s' is not a regular file%s", path,
                          S_ISDIR(st.st_mode) ? " (a directory: list it)" : "");
    }
    if (st.st_nlink > 1) {
        /* a second name for the file, which could be outside the workspace (a sandboxed run
         * cannot make one across its mounts; someone else might have) */
        close(fd);
        return llmos_fail(LLMOS_ERR_DENIED,
                          "'%.200s' has %ju names (hard links); refused, since another name could "
                          "be outside the workspace: copy it (cp) and read the copy",
                          path, (uintmax_t)st.st_nlink);
    }
    *size = (size_t)st.st_size;
    llmos_err err = LLMOS_OK;
    char chunk[16384];
    size_t at = offset;
    while (b->len < max) {
        size_t want = max - b->len < sizeof chunk ? max - b->len : sizeof chunk;
        ssize_t n = pread(fd, chunk, want, (off_t)at);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = path_error(path, errno);
            break;
        }
        if (n == 0)
            break;
        if (buf_append(b, chunk, (size_t)n)) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
            break;
        }
        at += (size_t)n;
    }
    close(fd);
    return err;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static llmos_err ws_list(int root, const char *path, llmos_buf *out)
{
    int fd = ws_open(root, path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0)
        return path_error(path, errno);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    char **names = NULL;
    size_t n = 0, cap = 0, more = 0;
    struct dirent *de;
    llmos_err err = LLMOS_OK;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == FILES_MAX_LIST) {
            more++;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
            break;
        }
        n++;
    }
    if (!err && n)
        qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; !err && i < n; i++) {
        struct stat st;
        if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        int w = S_ISDIR(st.st_mode) ? buf_printf(out, "%s/\n", names[i])
                : S_ISREG(st.st_mode)
                    ? buf_printf(out, "%s (%lld bytes)\n", names[i], (long long)st.st_size)
                : S_ISLNK(st.st_mode) ? buf_printf(out, "%s (symbolic link)\n", names[i])
                                      : buf_printf(out, "%s (special file)\n", names[i]);
        if (w)
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    }
    if (!err && n == 0 && buf_puts(out, "(empty)\n"))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    if (!err && more && buf_printf(out, "... and %zu more\n", more))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return err;
}

static llmos_err ws_patch(int root, const char *path, const char *old, const char *new_text,
                          llmos_buf *out)
{
    size_t olen = strlen(old), nlen = strlen(new_text);
    if (!olen)
        return llmos_fail(LLMOS_ERR_INVALID, "old: empty; say which text to replace");
    llmos_buf b = {0};
    size_t size = 0;
    llmos_err err = ws_read(root, path, 0, FILES_MAX_WRITE + 1, &b, &size);
    if (!err && (b.len > FILES_MAX_WRITE || size > FILES_MAX_WRITE))
        err =
            llmos_fail(LLMOS_ERR_LIMIT, "'%.200s' is larger than %d bytes", path, FILES_MAX_WRITE);
    const char *hit = NULL;
    size_t count = 0;
    for (const char *p = b.data;
         !err && p && (p = memmem(p, b.len - (size_t)(p - b.data), old, olen)); p += olen)
        if (count++ == 0)
            hit = p;
    if (!err && count != 1)
        err = llmos_fail(LLMOS_ERR_INVALID,
                         "old: found %zu times in '%.200s'; it must be found exactly once "
                         "(give more context)",
                         count, path);
    llmos_buf nb = {0};
    if (!err &&
        (buf_append(&nb, b.data, (size_t)(hit - b.data)) || buf_append(&nb, new_text, nlen) ||
         buf_append(&nb, hit + olen, b.len - (size_t)(hit - b.data) - olen)))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    if (!err)
        err = ws_write(root, path, nb.data ? nb.data : "", nb.len);
    if (!err && buf_printf(out, "patched '%s': %zu bytes replaced by %zu (now %zu bytes)", path,
                           olen, nlen, nb.len))
        err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    buf_free(&b);
    buf_free(&nb);
    return err;
}

static llmos_err files_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const char *op = ljson_get_string(env->args, "op", "");
    const char *path = ljson_get_string(env->args, "path", ".");
    if (!*path)
        path = ".";
    if (strlen(path) >= 4096)
        return llmos_fail(LLMOS_ERR_LIMIT, "path: longer than 4095 bytes");
    char ws[4096];
    llmos_err err = sandbox_tool_workspace(env, ws, sizeof ws);
    if (err)
        return err;
    int root = open(ws, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return llmos_fail(LLMOS_ERR_IO, "workspace %s: %s", ws, strerror(errno));
    if (strcmp(op, "list") == 0) {
        err = ws_list(root, path, env->out);
    } else if (strcmp(op, "read") == 0) {
        int64_t offset = ljson_get_int(env->args, "offset", 0);
        size_t size = 0;
        err = offset < 0 ? llmos_fail(LLMOS_ERR_INVALID, "offset: negative")
                         : ws_read(root, path, (size_t)offset, FILES_MAX_READ, env->out, &size);
        size_t end = (size_t)offset + env->out->len;
        if (!err && end < size &&
            buf_printf(env->out, "\n[... %zu more bytes: read again with offset %zu]", size - end,
                       end))
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    } else if (strcmp(op, "write") == 0) {
        const char *content = ljson_get_string(env->args, "content", "");
        size_t len = strlen(content);
        err = ws_write(root, path, content, len);
        if (!err && buf_printf(env->out, "wrote %zu bytes to '%s'", len, path))
            err = llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    } else if (strcmp(op, "patch") == 0) {
        err = ws_patch(root, path, ljson_get_string(env->args, "old", ""),
                       ljson_get_string(env->args, "new", ""), env->out);
    } else {
        err = llmos_fail(LLMOS_ERR_INVALID, "op: '%.40s' is not list, read, write or patch", op);
    }
    close(root);
    return err;
}

const ktool tool_files = {
    .name = "files",
    .description = "Files in your workspace (what python and shell see as /work): op \"list\" a "
                   "directory, \"read\" a file (from offset), \"write\" content to a file "
                   "(directories are made), \"patch\" a file by replacing the text old, which "
                   "must occur once, with new. Paths are relative to the workspace.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"op\": {\"type\": \"string\", "
                  "\"enum\": [\"list\", \"read\", \"write\", \"patch\"]}, \"path\": {\"type\": "
                  "\"string\"}, \"content\": {\"type\": \"string\"}, \"old\": {\"type\": "
                  "\"string\"}, \"new\": {\"type\": \"string\"}, \"offset\": {\"type\": "
                  "\"integer\", \"minimum\": 0}}, \"required\": [\"op\", \"path\"], "
                  "\"additionalProperties\": false}",
    .capability = KCAP_READ,
    .output_trusted = false,
    .run = files_run,
};
