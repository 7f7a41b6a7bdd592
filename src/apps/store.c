/*
 * store.c - the app store on disk (llmos/apps.h; docs/supply-chain.md, "Store layout").
 *
 *   <home>/apps/trust                              the trust policy (trust.c)
 *   <home>/apps/blobs/sha256/<hex>                 file contents, named by their SHA-256
 *   <home>/apps/blobs/sha256/<hex>.partial         a download in progress (pull.c resumes it)
 *   <home>/apps/manifests/<name>/<version>.json    installed manifests, canonical bytes
 *   <home>/apps/manifests/<name>/<version>.json.minisig   and their signatures
 *   <home>/apps/seen/<name>                        the newest version ever installed
 *   <home>/apps/verify.log                         one JSON line per check before a load
 *
 * Nothing in the store is trusted because it is in the store: every load verifies the
 * signature against the policy as it is now (a key revoked after the pull is refused) and
 * every file's digest (apps_store_verify). Blobs are written to a temporary name and renamed
 * into place only once their digest is known, and made read-only.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "llmos/apps.h"
#include "llmos/json.h"

#define PATH_BYTES 4200

struct apps_store {
    char dir[PATH_BYTES - 400]; /* room for what the store adds to it */
    apps_policy *policy;
};

static llmos_err mkdirs(const char *dir, const char *sub)
{
    char p[PATH_BYTES];
    snprintf(p, sizeof p, "%s/%s", dir, sub);
    return llmos_file_mkdirs(p, 0700);
}

llmos_err apps_store_open(const char *home, apps_store **out)
{
    *out = NULL;
    if (!home || strlen(home) > PATH_BYTES - 500)
        return llmos_fail(LLMOS_ERR_INVALID, "the llmos home's path is missing or too long");
    apps_store *st = calloc(1, sizeof *st);
    if (!st)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    snprintf(st->dir, sizeof st->dir, "%s/apps", home);
    llmos_err err = llmos_file_private_dir(home);
    if (!err)
        err = llmos_file_private_dir(st->dir);
    if (!err)
        err = mkdirs(st->dir, "blobs/sha256");
    if (!err)
        err = mkdirs(st->dir, "manifests");
    if (!err)
        err = mkdirs(st->dir, "seen");
    if (!err)
        err = apps_store_reload_policy(st);
    if (err) {
        apps_store_free(st);
        return err;
    }
    *out = st;
    return LLMOS_OK;
}

void apps_store_free(apps_store *st)
{
    if (!st)
        return;
    apps_policy_free(st->policy);
    free(st);
}

const char *apps_store_dir(const apps_store *st)
{
    return st->dir;
}

const apps_policy *apps_store_policy(const apps_store *st)
{
    return st->policy;
}

llmos_err apps_store_reload_policy(apps_store *st)
{
    char p[PATH_BYTES];
    snprintf(p, sizeof p, "%s/trust", st->dir);
    apps_policy *pol = NULL;
    llmos_err err = apps_policy_load(p, &pol);
    if (err)
        return err;
    apps_policy_free(st->policy);
    st->policy = pol;
    return LLMOS_OK;
}

void apps_store_blob_path(const apps_store *st, const char *sha256, char *out, size_t size)
{
    snprintf(out, size, "%s/blobs/sha256/%s", st->dir, sha256);
}

llmos_err apps_store_add_file(apps_store *st, const char *path, char hex[APPS_SHA256_HEX],
                              uint64_t *size)
{
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return llmos_fail(errno == ENOENT ? LLMOS_ERR_NOT_FOUND : LLMOS_ERR_IO,
                          "%s: cannot open: %s", path, strerror(errno));
    char tmpl[PATH_BYTES];
    snprintf(tmpl, sizeof tmpl, "%s/blobs/sha256/import", st->dir);
    int fd = -1;
    char *tmp = NULL;
    llmos_err err = llmos_file_create_temp(tmpl, 0600, &fd, &tmp);
    enum { BLOCK = 1 << 20 };
    char *block = malloc(BLOCK);
    apps_hasher *h = apps_hasher_new();
    uint64_t total = 0;
    if (!err && (!block || !h))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    while (!err) {
        ssize_t r = read(in, block, BLOCK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r <= 0)
            break;
        apps_hasher_update(h, block, (size_t)r);
        total += (uint64_t)r;
        if (write(fd, block, (size_t)r) != r)
            err = llmos_fail(LLMOS_ERR_IO, "writing into the app store: %s", strerror(errno));
    }
    if (!err && fsync(fd) != 0)
        err = llmos_fail(LLMOS_ERR_IO, "fsync in the app store: %s", strerror(errno));
    if (!err) {
        apps_hasher_final(h, hex);
        char dst[PATH_BYTES];
        apps_store_blob_path(st, hex, dst, sizeof dst);
        fchmod(fd, 0444);
        if (rename(tmp, dst) != 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: rename failed: %s", dst, strerror(errno));
        if (size)
            *size = total;
    }
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

/* ---- installed manifests ------------------------------------------------------------------ */

static void manifest_path(const apps_store *st, const char *name, const char *version,
                          const char *suffix, char *out, size_t size)
{
    snprintf(out, size, "%s/manifests/%s/%s.json%s", st->dir, name, version, suffix);
}

void apps_store_seen_version(const apps_store *st, const char *name, char *out, size_t size)
{
    char p[PATH_BYTES];
    out[0] = '\0';
    if (apps_name_check(name, "app")) {
        llmos_err_clear();
        return;
    }
    snprintf(p, sizeof p, "%s/seen/%s", st->dir, name);
    llmos_buf b = {0};
    if (llmos_file_read_all(p, 256, &b) == LLMOS_OK) {
        while (b.len && (b.data[b.len - 1] == '\n'))
            b.data[--b.len] = '\0';
        if (apps_version_check(b.data, "seen") == LLMOS_OK)
            snprintf(out, size, "%s", b.data);
    }
    llmos_err_clear();
    buf_free(&b);
}

llmos_err apps_store_install(apps_store *st, const apps_manifest *m, const char *bytes, size_t len,
                             const char *sig, size_t sig_len)
{
    char seen[64];
    apps_store_seen_version(st, m->name, seen, sizeof seen);
    if (seen[0] && apps_version_cmp(m->version, seen) < 0)
        return llmos_fail(LLMOS_ERR_DENIED,
                          "downgrade check failed: %s %s is older than %s, which this store "
                          "has installed; llmos does not go back to older versions",
                          m->name, m->version, seen);
    char p[PATH_BYTES];
    for (size_t i = 0; i < m->n_files; i++) {
        struct stat sb;
        apps_store_blob_path(st, m->files[i].sha256, p, sizeof p);
        if (stat(p, &sb) != 0 || (uint64_t)sb.st_size != m->files[i].size)
            return llmos_fail(LLMOS_ERR_NOT_FOUND, "%s %s: file '%s' is not in the store", m->name,
                              m->version, m->files[i].path);
    }
    snprintf(p, sizeof p, "%s/manifests/%s", st->dir, m->name);
    llmos_err err = llmos_file_mkdirs(p, 0700);
    if (!err && sig) {
        manifest_path(st, m->name, m->version, ".minisig", p, sizeof p);
        err = llmos_file_write_atomic(p, sig, sig_len, 0600);
    } else if (!err) { /* an unsigned reinstall must not keep an old signature */
        manifest_path(st, m->name, m->version, ".minisig", p, sizeof p);
        unlink(p);
    }
    if (!err) {
        manifest_path(st, m->name, m->version, "", p, sizeof p);
        err = llmos_file_write_atomic(p, bytes, len, 0600);
    }
    if (!err && (!seen[0] || apps_version_cmp(m->version, seen) > 0)) {
        snprintf(p, sizeof p, "%s/seen/%s", st->dir, m->name);
        char line[80];
        int n = snprintf(line, sizeof line, "%s\n", m->version);
        err = llmos_file_write_atomic(p, line, (size_t)n, 0600);
    }
    return err;
}

/* The installed versions of name, newest first, to fn. */
static llmos_err each_version(const apps_store *st, const char *name,
                              bool (*fn)(const char *version, void *ctx), void *ctx)
{
    char p[PATH_BYTES];
    snprintf(p, sizeof p, "%s/manifests/%s", st->dir, name);
    DIR *d = opendir(p);
    if (!d)
        return LLMOS_OK;
    char **vs = NULL;
    size_t n = 0;
    llmos_err err = LLMOS_OK;
    for (struct dirent *e; !err && (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0 || l - 5 > 63)
            continue;
        char v[64];
        memcpy(v, e->d_name, l - 5);
        v[l - 5] = '\0';
        if (apps_version_check(v, "installed version")) {
            llmos_err_clear();
            continue;
        }
        char **nv = realloc(vs, (n + 1) * sizeof *nv);
        if (!nv || !(nv[n] = strdup(v))) {
            if (nv)
                vs = nv;
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            break;
        }
        vs = nv;
        n++;
    }
    closedir(d);
    /* newest first: a small insertion sort by version */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && apps_version_cmp(vs[j - 1], vs[j]) < 0; j--) {
            char *t = vs[j];
            vs[j] = vs[j - 1];
            vs[j - 1] = t;
        }
    bool go = true;
    for (size_t i = 0; i < n; i++) {
        if (!err && go)
            go = fn(vs[i], ctx);
        free(vs[i]);
    }
    free(vs);
    return err;
}

static bool take_first(const char *version, void *ctx)
{
    snprintf(ctx, 64, "%s", version);
    return false;
}

llmos_err apps_store_resolve(const apps_store *st, const char *ref, char *name, size_t name_size,
                             char *version, size_t version_size)
{
    char n[APPS_NAME_MAX + 1], tag[64] = "";
    const char *colon = strchr(ref, ':');
    size_t nl = colon ? (size_t)(colon - ref) : strlen(ref);
    if (nl > APPS_NAME_MAX || (colon && strlen(colon + 1) >= sizeof tag))
        return llmos_fail(LLMOS_ERR_INVALID, "'%.80s' is not NAME or NAME:TAG", ref);
    memcpy(n, ref, nl);
    n[nl] = '\0';
    if (colon)
        snprintf(tag, sizeof tag, "%s", colon + 1);
    llmos_err err = apps_name_check(n, "app name");
    if (err)
        return err;
    char v[64] = "";
    if (!tag[0] || strcmp(tag, "latest") == 0) {
        err = each_version(st, n, take_first, v);
    } else {
        if ((err = apps_version_check(tag, "tag")))
            return err;
        char p[PATH_BYTES];
        manifest_path(st, n, tag, "", p, sizeof p);
        if (access(p, F_OK) == 0)
            snprintf(v, sizeof v, "%s", tag);
    }
    if (!err && !v[0])
        err = llmos_fail(LLMOS_ERR_NOT_FOUND,
                         "%s is not installed (llmos list shows what is; llmos pull %s gets it)",
                         ref, ref);
    if (!err) {
        snprintf(name, name_size, "%s", n);
        snprintf(version, version_size, "%s", v);
    }
    return err;
}

llmos_err apps_store_verify(const apps_store *st, const char *name, const char *version,
                            bool check_digests, bool allow_unsigned, apps_manifest **out,
                            apps_verdict *v)
{
    memset(v, 0, sizeof *v);
    if (out)
        *out = NULL;
    llmos_err err = apps_name_check(name, "app name");
    if (!err)
        err = apps_version_check(version, "app version");
    if (err)
        return err;
    char p[PATH_BYTES];
    llmos_buf bytes = {0}, sig = {0};
    manifest_path(st, name, version, "", p, sizeof p);
    err = llmos_file_read_all(p, APPS_MANIFEST_MAX, &bytes);
    manifest_path(st, name, version, ".minisig", p, sizeof p);
    llmos_err serr = err ? LLMOS_OK : llmos_file_read_all(p, 4096, &sig);
    bool have_sig = !serr;
    if (!err && serr && serr != LLMOS_ERR_NOT_FOUND)
        err = serr;
    llmos_err_clear();
    apps_manifest *m = NULL;
    if (!err)
        err = apps_verify_manifest(st->policy, bytes.data, bytes.len, have_sig ? sig.data : NULL,
                                   sig.len, allow_unsigned, &m, v);
    if (!err && (strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0)) {
        snprintf(v->check, sizeof v->check, "name");
        err =
            llmos_fail(LLMOS_ERR_DENIED, "name check failed: the manifest stored as %s %s is %s %s",
                       name, version, m->name, m->version);
    }
    for (size_t i = 0; !err && check_digests && i < m->n_files; i++) {
        char hex[APPS_SHA256_HEX];
        uint64_t size = 0;
        apps_store_blob_path(st, m->files[i].sha256, p, sizeof p);
        err = apps_sha256_file(p, hex, &size);
        if (err) {
            snprintf(v->check, sizeof v->check, "file");
            llmos_fail_context(err, "file check failed: %s %s: file '%s': ", name, version,
                               m->files[i].path);
        } else if (size != m->files[i].size || strcmp(hex, m->files[i].sha256) != 0) {
            snprintf(v->check, sizeof v->check, "digest");
            err = llmos_fail(LLMOS_ERR_CRYPTO,
                             "digest check failed: %s %s: file '%s' is not the file signed "
                             "(sha256 %.16s..., %llu bytes; the manifest says %.16s..., %llu "
                             "bytes); llmos pull %s fetches it again",
                             name, version, m->files[i].path, hex, (unsigned long long)size,
                             m->files[i].sha256, (unsigned long long)m->files[i].size, name);
        }
    }
    buf_free(&bytes);
    buf_free(&sig);
    if (!err && out)
        *out = m;
    else
        apps_manifest_free(m);
    return err;
}

/* ---- listing, removing, owners ------------------------------------------------------------ */

typedef struct list_ctx {
    const apps_store *st;
    const char *name;
    bool (*fn)(const apps_entry *e, void *ctx);
    void *ctx;
    bool stop;
} list_ctx;

static bool list_version(const char *version, void *ctx)
{
    list_ctx *lc = ctx;
    char p[PATH_BYTES];
    manifest_path(lc->st, lc->name, version, ".minisig", p, sizeof p);
    apps_entry e = {.name = lc->name, .version = version, .is_signed = access(p, F_OK) == 0};
    lc->stop = !lc->fn(&e, lc->ctx);
    return !lc->stop;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

llmos_err apps_store_list(const apps_store *st, bool (*fn)(const apps_entry *e, void *ctx),
                          void *ctx)
{
    char p[PATH_BYTES];
    snprintf(p, sizeof p, "%s/manifests", st->dir);
    DIR *d = opendir(p);
    if (!d)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot read: %s", p, strerror(errno));
    char **names = NULL;
    size_t n = 0;
    llmos_err err = LLMOS_OK;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || apps_name_check(e->d_name, "app")) {
            llmos_err_clear();
            continue;
        }
        char **nn = realloc(names, (n + 1) * sizeof *nn);
        if (!nn || !(nn[n] = strdup(e->d_name))) {
            if (nn)
                names = nn;
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
            break;
        }
        names = nn;
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    list_ctx lc = {.st = st, .fn = fn, .ctx = ctx};
    for (size_t i = 0; i < n; i++) {
        lc.name = names[i];
        if (!err && !lc.stop)
            err = each_version(st, names[i], list_version, &lc);
        free(names[i]);
    }
    free(names);
    return err;
}

/* Every installed manifest, parsed (not verified: for owners and garbage collection). */
typedef struct walk_ctx {
    const apps_store *st;
    bool (*fn)(const apps_manifest *m, void *ctx);
    void *ctx;
    bool stop;
} walk_ctx;

static bool walk_one(const apps_entry *e, void *ctx)
{
    walk_ctx *w = ctx;
    char p[PATH_BYTES];
    manifest_path(w->st, e->name, e->version, "", p, sizeof p);
    llmos_buf b = {0};
    apps_manifest *m = NULL;
    if (llmos_file_read_all(p, APPS_MANIFEST_MAX, &b) == LLMOS_OK &&
        apps_manifest_parse(b.data, b.len, &m) == LLMOS_OK)
        w->stop = !w->fn(m, w->ctx);
    llmos_err_clear();
    apps_manifest_free(m);
    buf_free(&b);
    return !w->stop;
}

typedef struct owner_ctx {
    const char *sha256;
    char *name, *version;
    size_t name_size, version_size;
    bool found;
} owner_ctx;

static bool owner_of(const apps_manifest *m, void *ctx)
{
    owner_ctx *o = ctx;
    for (size_t i = 0; i < m->n_files; i++)
        if (strcmp(m->files[i].sha256, o->sha256) == 0) {
            snprintf(o->name, o->name_size, "%s", m->name);
            snprintf(o->version, o->version_size, "%s", m->version);
            o->found = true;
            return false;
        }
    return true;
}

llmos_err apps_store_owner(const apps_store *st, const char *sha256, char *name, size_t name_size,
                           char *version, size_t version_size)
{
    owner_ctx o = {sha256, name, version, name_size, version_size, false};
    walk_ctx w = {st, owner_of, &o, false};
    llmos_err err = apps_store_list(st, walk_one, &w);
    if (!err && !o.found)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no installed app has the blob %.16s...", sha256);
    return err;
}

typedef struct gc_ctx {
    char **live;
    size_t n, cap;
    bool oom;
} gc_ctx;

static bool gc_mark(const apps_manifest *m, void *ctx)
{
    gc_ctx *g = ctx;
    for (size_t i = 0; i < m->n_files; i++) {
        if (g->n == g->cap) {
            size_t cap = g->cap ? 2 * g->cap : 64;
            char **l = realloc(g->live, cap * sizeof *l);
            if (!l) {
                g->oom = true;
                return false;
            }
            g->live = l;
            g->cap = cap;
        }
        if (!(g->live[g->n] = strdup(m->files[i].sha256))) {
            g->oom = true;
            return false;
        }
        g->n++;
    }
    return true;
}

llmos_err apps_store_remove(apps_store *st, const char *name, const char *version, uint64_t *freed)
{
    *freed = 0;
    llmos_err err = apps_name_check(name, "app name");
    if (!err && version)
        err = apps_version_check(version, "version");
    if (err)
        return err;
    char p[PATH_BYTES], dir[PATH_BYTES - 300];
    snprintf(dir, sizeof dir, "%s/manifests/%s", st->dir, name);
    bool removed = false;
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.')
                continue;
            size_t vl = version ? strlen(version) : 0;
            if (version &&
                (strncmp(e->d_name, version, vl) != 0 || strncmp(e->d_name + vl, ".json", 5) != 0))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            removed |= unlink(p) == 0;
        }
        closedir(d);
        rmdir(dir); /* when empty */
    }
    if (!removed)
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "%s%s%s is not installed", name, version ? ":" : "",
                          version ? version : "");
    /* blobs no installed manifest refers to (downloads in progress are kept) */
    gc_ctx g = {0};
    walk_ctx w = {st, gc_mark, &g, false};
    err = apps_store_list(st, walk_one, &w);
    if (!err && g.oom)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    snprintf(dir, sizeof dir, "%s/blobs/sha256", st->dir);
    if (!err && (d = opendir(dir))) {
        for (struct dirent *e; (e = readdir(d));) {
            if (strlen(e->d_name) != 64)
                continue;
            bool live = false;
            for (size_t i = 0; i < g.n && !live; i++)
                live = strcmp(g.live[i], e->d_name) == 0;
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (!live && stat(p, &sb) == 0 && unlink(p) == 0)
                *freed += (uint64_t)sb.st_size;
        }
        closedir(d);
    }
    for (size_t i = 0; i < g.n; i++)
        free(g.live[i]);
    free(g.live);
    return err;
}

void apps_store_log(const apps_store *st, const char *event, const char *what,
                    const apps_verdict *v, const char *outcome)
{
    char p[PATH_BYTES];
    snprintf(p, sizeof p, "%s/verify.log", st->dir);
    json_t *j = json_pack("{s:I, s:s, s:s, s:s}", "time", (json_int_t)time(NULL), "event", event,
                          "what", what, "outcome", outcome);
    if (j && v) {
        json_object_set_new(j, "signed", json_boolean(v->signed_by_trusted));
        if (v->keyid[0])
            json_object_set_new(j, "key", json_string(v->keyid));
        if (v->publisher[0])
            json_object_set_new(j, "publisher", json_string(v->publisher));
        if (v->check[0])
            json_object_set_new(j, "failed_check", json_string(v->check));
    }
    llmos_buf line = {0};
    if (j && ljson_to_buf(j, 0, &line) == LLMOS_OK && buf_putc(&line, '\n') == LLMOS_OK) {
        int fd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (write(fd, line.data, line.len) != (ssize_t)line.len)
                LOG_WARN("apps", "%s: could not append to the verification log", p);
            close(fd);
        }
    }
    /* the caller's error message is kept: it is often what was just logged */
    buf_free(&line);
    json_decref(j);
}
