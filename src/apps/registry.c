/*
 * registry.c - registries as static trees of signed manifests and blobs (llmos/apps.h;
 * docs/supply-chain.md, "Registries"): publishing into a folder, and a small HTTP server for
 * one (`llmos registry serve DIR`).
 *
 * A registry holds no secrets and is not trusted: any web server can serve the folder, and the
 * client checks every byte against signed manifests. The server here exists so that a user
 * (and the tests) can serve a folder on this machine without another program: GET and HEAD of
 * files under the folder, single byte ranges (for resumed pulls), nothing else. Request paths
 * are checked with the manifest path rules (no "..", no empty component), and files are
 * opened with O_NOFOLLOW, so nothing outside the folder is served.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>
#include <microhttpd.h>

#include "llmos/apps.h"

#define PATH_BYTES 4200

/* ---- publishing --------------------------------------------------------------------------- */

/* Copy src into <dir>/blobs/sha256/<hex>, hashing as it copies. */
static llmos_err copy_blob(const char *dir, const char *src, char hex[APPS_SHA256_HEX],
                           uint64_t *size)
{
    char p[PATH_BYTES];
    snprintf(p, sizeof p, "%s/blobs/sha256", dir);
    llmos_err err = llmos_file_mkdirs(p, 0755);
    if (err)
        return err;
    if ((err = apps_sha256_file(src, hex, size)))
        return err;
    snprintf(p, sizeof p, "%s/blobs/sha256/%s", dir, hex);
    struct stat sb;
    if (stat(p, &sb) == 0 && (uint64_t)sb.st_size == *size)
        return LLMOS_OK; /* the same bytes are there already */
    int in = open(src, O_RDONLY | O_CLOEXEC), fd = -1;
    char *tmp = NULL;
    if (in < 0)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    err = llmos_file_create_temp(p, 0644, &fd, &tmp);
    enum { BLOCK = 1 << 20 };
    char *block = err ? NULL : malloc(BLOCK);
    if (!err && !block)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    apps_hasher *h = apps_hasher_new();
    uint64_t total = 0;
    while (!err) {
        ssize_t r = read(in, block, BLOCK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: read failed: %s", src, strerror(errno));
        if (r <= 0)
            break;
        if (h)
            apps_hasher_update(h, block, (size_t)r);
        total += (uint64_t)r;
        if (write(fd, block, (size_t)r) != r)
            err = llmos_fail(LLMOS_ERR_IO, "%s: write failed: %s", p, strerror(errno));
    }
    char again[APPS_SHA256_HEX] = "";
    if (h)
        apps_hasher_final(h, again);
    /* the file changed while it was read twice: publish nothing rather than a wrong digest */
    if (!err && (total != *size || strcmp(again, hex) != 0))
        err = llmos_fail(LLMOS_ERR_IO, "%s changed while it was being published", src);
    if (!err && (fsync(fd) != 0 || rename(tmp, p) != 0))
        err = llmos_fail(LLMOS_ERR_IO, "%s: %s", p, strerror(errno));
    if (fd >= 0)
        close(fd);
    if (err && tmp)
        unlink(tmp);
    free(tmp);
    free(block);
    apps_hasher_free(h);
    close(in);
    return err;
}

llmos_err apps_publish(const char *registry_dir, const apps_manifest_params *mp,
                       const char *const *paths, const char *const *names, size_t n,
                       const apps_seckey *k, llmos_buf *manifest_out)
{
    if (n == 0 || n > APPS_MAX_FILES)
        return llmos_fail(LLMOS_ERR_INVALID, "an app has 1 to %d files", APPS_MAX_FILES);
    if (strlen(registry_dir) > PATH_BYTES - 300)
        return llmos_fail(LLMOS_ERR_INVALID, "the registry's path is too long");
    apps_file *files = calloc(n, sizeof *files);
    if (!files)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    llmos_err err = LLMOS_OK;
    for (size_t i = 0; !err && i < n; i++) {
        files[i].path = names[i];
        err = copy_blob(registry_dir, paths[i], files[i].sha256, &files[i].size);
    }
    apps_manifest_params p = *mp;
    p.files = files;
    p.n_files = n;
    llmos_buf man = {0}, sig = {0};
    if (!err)
        err = apps_manifest_build(&p, &man);
    char tc[256];
    snprintf(tc, sizeof tc, "llmos app %s %s by %s", mp->name, mp->version, mp->publisher);
    if (!err)
        err = apps_sign(k, man.data, man.len, "llmos app manifest signature", tc, false, &sig);
    char dir[PATH_BYTES - 200], path[PATH_BYTES];
    snprintf(dir, sizeof dir, "%s/manifests/%s", registry_dir, mp->name);
    if (!err)
        err = llmos_file_mkdirs(dir, 0755);
    snprintf(path, sizeof path, "%s/%s.json", dir, mp->version);
    if (!err)
        err = llmos_file_write_atomic(path, man.data, man.len, 0644);
    snprintf(path, sizeof path, "%s/%s.json.minisig", dir, mp->version);
    if (!err)
        err = llmos_file_write_atomic(path, sig.data, sig.len, 0644);
    /* latest: moved only forward */
    snprintf(path, sizeof path, "%s/latest", dir);
    llmos_buf latest = {0};
    bool newer = true;
    if (!err && llmos_file_read_all(path, 128, &latest) == LLMOS_OK) {
        while (latest.len && latest.data[latest.len - 1] == '\n')
            latest.data[--latest.len] = '\0';
        newer = apps_version_check(latest.data, "latest") != LLMOS_OK ||
                apps_version_cmp(mp->version, latest.data) >= 0;
    }
    llmos_err_clear();
    if (!err && newer) {
        char line[80];
        int len = snprintf(line, sizeof line, "%s\n", mp->version);
        err = llmos_file_write_atomic(path, line, (size_t)len, 0644);
    }
    if (!err && manifest_out)
        err = buf_append(manifest_out, man.data, man.len);
    buf_free(&latest);
    buf_free(&man);
    buf_free(&sig);
    free(files);
    return err;
}

/* ---- the server --------------------------------------------------------------------------- */

struct apps_registry_server {
    struct MHD_Daemon *daemon;
    char dir[PATH_BYTES - 300];
    int dirfd;
};

/* Open rel under the registry folder and never outside it: openat2 with RESOLVE_BENEATH and
 * no symbolic links at all where the kernel has it (Linux 5.6), else O_NOFOLLOW on the last
 * component (rel has already passed the path rules: no "..", no empty component). */
static int open_beneath(const apps_registry_server *s, const char *rel)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS};
    long fd = syscall(SYS_openat2, s->dirfd, rel, &how, sizeof how);
    if (fd < 0 && errno == ENOSYS)
        fd = openat(s->dirfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    return (int)fd;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* "bytes=FROM-" or "bytes=FROM-TO": false for anything else (then the whole file is sent). */
static bool parse_range(const char *h, uint64_t size, uint64_t *from, uint64_t *to)
{
    if (!h || strncmp(h, "bytes=", 6) != 0)
        return false;
    char *end;
    errno = 0;
    unsigned long long a = strtoull(h + 6, &end, 10);
    if (errno || end == h + 6 || *end != '-')
        return false;
    unsigned long long b = size ? size - 1 : 0;
    if (end[1]) {
        char *e2;
        b = strtoull(end + 1, &e2, 10);
        if (*e2 || b < a)
            return false;
        if (b >= size)
            b = size - 1;
    }
    *from = a;
    *to = b;
    return true;
}

static enum MHD_Result serve_file(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **ptr)
{
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)ptr;
    apps_registry_server *s = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_text(c, 405, "a registry answers GET and HEAD only\n");
    if (url[0] != '/' || apps_path_check(url + 1, "request") != LLMOS_OK) {
        llmos_err_clear();
        return reply_text(c, 404, "not found\n");
    }
    int fd = open_beneath(s, url + 1);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        return reply_text(c, 404, "not found\n");
    }
    uint64_t size = (uint64_t)sb.st_size, from = 0, to = 0;
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    bool ranged = parse_range(range, size, &from, &to);
    if (ranged && from >= size) {
        close(fd);
        struct MHD_Response *r = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        char cr[64];
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
        MHD_add_response_header(r, "Content-Range", cr);
        enum MHD_Result ret = MHD_queue_response(c, 416, r);
        MHD_destroy_response(r);
        return ret;
    }
    uint64_t len = ranged ? to - from + 1 : size;
    struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(len, fd, from);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    if (ranged) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, from, to, size);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    enum MHD_Result ret = MHD_queue_response(c, ranged ? 206 : 200, r);
    MHD_destroy_response(r);
    return ret;
}

llmos_err apps_registry_serve(const char *dir, const char *host, uint16_t port,
                              apps_registry_server **out, uint16_t *bound)
{
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "%s is not a folder", dir);
    apps_registry_server *s = calloc(1, sizeof *s);
    if (!s)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        free(s);
        return llmos_fail(LLMOS_ERR_IO, "%s: %s", dir, strerror(errno));
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    int fd = -1;
    if (getaddrinfo(host ? host : "127.0.0.1", ps, &hints, &ai) == 0) {
        for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
            int one = 1;
            if (fd >= 0)
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (fd >= 0 && (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0)) {
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(ai);
    }
    if (fd < 0) {
        close(s->dirfd);
        free(s);
        return llmos_fail(LLMOS_ERR_IO, "registry: cannot listen on %s port %u: %s",
                          host ? host : "127.0.0.1", (unsigned)port, strerror(errno));
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    uint16_t p = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                                 NULL, NULL, serve_file, s, MHD_OPTION_LISTEN_SOCKET, fd,
                                 MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT,
                                 64u, MHD_OPTION_END);
    if (!s->daemon) {
        close(fd);
        close(s->dirfd);
        free(s);
        return llmos_fail(LLMOS_ERR_IO, "registry: libmicrohttpd could not start");
    }
    if (bound)
        *bound = p;
    *out = s;
    return LLMOS_OK;
}

void apps_registry_stop(apps_registry_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->daemon);
    close(s->dirfd);
    free(s);
}
