/*
 * pull.c - `llmos pull`: fetch an app from a registry into the store (llmos/apps.h,
 * apps_pull; docs/supply-chain.md, "Pulling").
 *
 * The order is what makes it safe:
 *   1. the tag's version, the manifest and its signature (small, bounded reads);
 *   2. verification against the trust policy before anything large is fetched, then the
 *      manifest must be the one asked for (its name and version), and no downgrade;
 *   3. the disk space the declared sizes need, checked before the first blob byte;
 *   4. each blob streamed to <hex>.partial, SHA-256 computed as the bytes arrive, never past
 *      the declared size; an interrupted transfer leaves the partial file, and the next pull
 *      resumes it with a range request, hashing what is there first; the digest over the whole
 *      file is compared at the end, so a partial file resumed against a changed file on the
 *      server fails and is removed; renamed into place only when it matches;
 *   5. the manifest installed last, so that the store never lists an app whose files are not
 *      all there and checked.
 * Redirects are followed by hand, and only to the same scheme, host and port as the registry:
 * a registry cannot send llmos to fetch from (or reveal it is pulling to) another host.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <curl/curl.h>

#include "llmos/apps.h"

#define PATH_BYTES    4200
#define URL_BYTES     4400
#define MAX_REDIRECTS 5
#define SPACE_MARGIN  ((uint64_t)64 << 20) /* left free on the disk after a pull */
#define SIG_MAX_BYTES 4096
#define TAG_MAX_BYTES 128

/* ---- hashing beside the transfer ----------------------------------------------------------
 * SHA-256 costs about as much CPU as receiving and writing the bytes, so a second thread
 * hashes while the first receives and writes: the bytes are copied into a ring of slots, which
 * the hashing thread consumes in order. The writer waits only when the ring is full. */

#define HP_SLOTS     4
#define HP_SLOT_SIZE (1u << 20)

typedef struct hpipe {
    apps_hasher *h;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *slot[HP_SLOTS];
    size_t len[HP_SLOTS];
    bool full[HP_SLOTS];
    unsigned head, tail; /* head: the slot being filled; tail: the next to hash */
    bool closing, started;
} hpipe;

static void *hpipe_main(void *arg)
{
    hpipe *hp = arg;
    pthread_mutex_lock(&hp->mu);
    for (;;) {
        while (!hp->full[hp->tail] && !hp->closing)
            pthread_cond_wait(&hp->cv, &hp->mu);
        if (!hp->full[hp->tail])
            break; /* closing, and nothing left */
        unsigned t = hp->tail;
        pthread_mutex_unlock(&hp->mu);
        apps_hasher_update(hp->h, hp->slot[t], hp->len[t]);
        pthread_mutex_lock(&hp->mu);
        hp->full[t] = false;
        hp->len[t] = 0;
        hp->tail = (t + 1) % HP_SLOTS;
        pthread_cond_broadcast(&hp->cv);
    }
    pthread_mutex_unlock(&hp->mu);
    return NULL;
}

/* Start hashing into h; false (and nothing started) when out of memory or threads. */
static bool hpipe_start(hpipe *hp, apps_hasher *h)
{
    memset(hp, 0, sizeof *hp);
    hp->h = h;
    for (int i = 0; i < HP_SLOTS; i++)
        if (!(hp->slot[i] = malloc(HP_SLOT_SIZE))) {
            for (int j = 0; j < i; j++)
                free(hp->slot[j]);
            return false;
        }
    pthread_mutex_init(&hp->mu, NULL);
    pthread_cond_init(&hp->cv, NULL);
    hp->started = pthread_create(&hp->th, NULL, hpipe_main, hp) == 0;
    if (!hp->started) {
        pthread_mutex_destroy(&hp->mu);
        pthread_cond_destroy(&hp->cv);
        for (int i = 0; i < HP_SLOTS; i++)
            free(hp->slot[i]);
    }
    return hp->started;
}

/* Hand the current slot to the hashing thread (the caller holds mu). */
static void hpipe_push(hpipe *hp)
{
    hp->full[hp->head] = true;
    hp->head = (hp->head + 1) % HP_SLOTS;
    pthread_cond_broadcast(&hp->cv);
    while (hp->full[hp->head])
        pthread_cond_wait(&hp->cv, &hp->mu);
}

static void hpipe_feed(hpipe *hp, const char *data, size_t n)
{
    pthread_mutex_lock(&hp->mu);
    while (n) {
        size_t room = HP_SLOT_SIZE - hp->len[hp->head];
        size_t k = n < room ? n : room;
        memcpy(hp->slot[hp->head] + hp->len[hp->head], data, k);
        hp->len[hp->head] += k;
        data += k;
        n -= k;
        if (hp->len[hp->head] == HP_SLOT_SIZE)
            hpipe_push(hp);
    }
    pthread_mutex_unlock(&hp->mu);
}

/* Hash what is left and stop the thread: then hp->h holds every byte fed, in order. */
static void hpipe_finish(hpipe *hp)
{
    if (!hp->started)
        return;
    pthread_mutex_lock(&hp->mu);
    if (hp->len[hp->head]) {
        hp->full[hp->head] = true;
        hp->head = (hp->head + 1) % HP_SLOTS;
    }
    hp->closing = true;
    pthread_cond_broadcast(&hp->cv);
    pthread_mutex_unlock(&hp->mu);
    pthread_join(hp->th, NULL);
    pthread_mutex_destroy(&hp->mu);
    pthread_cond_destroy(&hp->cv);
    for (int i = 0; i < HP_SLOTS; i++)
        free(hp->slot[i]);
    hp->started = false;
}

/* ---- one transfer ------------------------------------------------------------------------- */

typedef struct xfer {
    /* small reads: into mem, at most max bytes */
    llmos_buf *mem;
    size_t max;
    /* blobs: into fd, hashed, at most limit bytes in all (have + new) */
    int fd;
    hpipe *hp;
    uint64_t have, limit;
    bool too_long;
    /* the pull as a whole: progress, cancel, test interruption */
    const apps_pull_params *p;
    uint64_t *pulled, total, *all_done;
    double t0, last_report;
    const char *label;
    bool stopped;
    bool write_failed;
} xfer;

static size_t on_data(char *data, size_t size, size_t n, void *ctx)
{
    xfer *x = ctx;
    size_t len = size * n;
    if (x->mem) {
        if (x->mem->len + len > x->max) {
            x->too_long = true;
            return 0;
        }
        return buf_append(x->mem, data, len) ? 0 : len;
    }
    if (x->have + len > x->limit) {
        x->too_long = true; /* more bytes than the manifest declares: stop at once */
        return 0;
    }
    if (x->p->stop_after_bytes && *x->pulled + len > x->p->stop_after_bytes) {
        /* a test's interruption: write what fits, then fail as a broken connection would */
        len = (size_t)(x->p->stop_after_bytes - *x->pulled);
        x->stopped = true;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(x->fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            x->write_failed = true;
            return 0;
        }
        off += (size_t)w;
    }
    hpipe_feed(x->hp, data, len);
    x->have += len;
    *x->pulled += len;
    *x->all_done += len;
    return x->stopped ? 0 : size * n;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    xfer *x = ctx;
    if (x->p->cancel && atomic_load(x->p->cancel))
        return 1;
    double now = llmos_time_now();
    if (x->p->progress && x->label && now - x->last_report >= 0.2) {
        x->last_report = now;
        apps_progress pr = {
            .label = x->label, .done = *x->all_done, .total = x->total, .seconds = now - x->t0};
        x->p->progress(&pr, x->p->progress_ctx);
    }
    return 0;
}

/* scheme://host:port of a URL, for the same-origin rule. */
static bool origin_of(const char *url, char *out, size_t size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    if (ok)
        snprintf(out, size, "%s://%s:%s", scheme, host, port);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

/* GET url into x, from byte `from` (0: all). Follows redirects within the registry's origin
 * only. *status is the final HTTP status (0 for file://). */
static llmos_err get(const char *registry, const char *url, uint64_t from, xfer *x, long *status)
{
    char origin[512], here[URL_BYTES], next_origin[512];
    if (!origin_of(registry, origin, sizeof origin))
        return llmos_fail(LLMOS_ERR_INVALID, "'%.200s' is not a registry URL", registry);
    snprintf(here, sizeof here, "%s", url);
    CURL *c = curl_easy_init();
    if (!c)
        return llmos_fail(LLMOS_ERR_NOMEM, "libcurl could not start");
    llmos_err err = LLMOS_OK;
    for (int hop = 0;; hop++) {
        curl_easy_reset(c);
        curl_easy_setopt(c, CURLOPT_URL, here);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                         x->p->connect_timeout_s > 0 ? x->p->connect_timeout_s : 30L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* stalled for 60 s: give up */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "llmos/" LLMOS_VERSION);
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
        if (x->p->max_bytes_per_second)
            curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE,
                             (curl_off_t)x->p->max_bytes_per_second);
        if (from)
            curl_easy_setopt(c, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)from);
        CURLcode rc = curl_easy_perform(c);
        *status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        if (x->too_long) {
            err = llmos_fail(LLMOS_ERR_LIMIT,
                             "%s: the registry sent more bytes than the manifest declares; "
                             "stopped",
                             here);
            break;
        }
        if (x->write_failed) {
            err = llmos_fail(LLMOS_ERR_IO, "writing into the app store: %s", strerror(errno));
            break;
        }
        if (x->stopped) {
            err = llmos_fail(LLMOS_ERR_NETWORK, "%s: transfer interrupted (test stop)", here);
            break;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK) {
            err = llmos_fail(LLMOS_ERR_CANCELLED, "pull stopped; run it again to resume");
            break;
        }
        if (rc != CURLE_OK) {
            err = llmos_fail(rc == CURLE_RANGE_ERROR ? LLMOS_ERR_UNSUPPORTED : LLMOS_ERR_NETWORK,
                             "%s: %s", here, curl_easy_strerror(rc));
            break;
        }
        if (*status >= 300 && *status < 400) {
            char *loc = NULL;
            curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
            if (!loc || !origin_of(loc, next_origin, sizeof next_origin) ||
                strcmp(next_origin, origin) != 0) {
                err = llmos_fail(LLMOS_ERR_DENIED,
                                 "%s: the registry redirects to %.200s, another host; llmos "
                                 "fetches only from the registry's own origin (%s)",
                                 here, loc ? loc : "(nowhere)", origin);
                break;
            }
            if (hop == MAX_REDIRECTS) {
                err =
                    llmos_fail(LLMOS_ERR_NETWORK, "%s: more than %d redirects", url, MAX_REDIRECTS);
                break;
            }
            snprintf(here, sizeof here, "%s", loc);
            if (x->mem)
                buf_clear(x->mem);
            continue;
        }
        if (*status == 404)
            err = llmos_fail(LLMOS_ERR_NOT_FOUND, "%s: not in the registry (HTTP 404)", here);
        else if (*status != 200 && *status != 206)
            err = llmos_fail(LLMOS_ERR_NETWORK, "%s: HTTP %ld", here, *status);
        break;
    }
    curl_easy_cleanup(c);
    return err;
}

static llmos_err get_small(const apps_pull_params *p, const char *path, size_t max, llmos_buf *out)
{
    char url[URL_BYTES];
    size_t bl = strlen(p->registry);
    snprintf(url, sizeof url, "%s%s%s", p->registry, bl && p->registry[bl - 1] == '/' ? "" : "/",
             path);
    uint64_t pulled = 0, done = 0;
    xfer x = {.mem = out, .max = max, .fd = -1, .p = p, .pulled = &pulled, .all_done = &done};
    long status;
    llmos_err err = get(p->registry, url, 0, &x, &status);
    if (err == LLMOS_ERR_LIMIT || x.too_long)
        err =
            llmos_fail(LLMOS_ERR_LIMIT, "%s: larger than %zu bytes; not a registry file", url, max);
    return err;
}

/* ---- one blob ----------------------------------------------------------------------------- */

/* Hash what a partial file holds (the start of an earlier transfer). */
static llmos_err hash_existing(int fd, apps_hasher *h, uint64_t *have)
{
    enum { BLOCK = 1 << 20 };
    char *block = malloc(BLOCK);
    if (!block)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    *have = 0;
    llmos_err err = LLMOS_OK;
    for (;;) {
        ssize_t r = pread(fd, block, BLOCK, (off_t)*have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            err = llmos_fail(LLMOS_ERR_IO, "reading a partial download: %s", strerror(errno));
        if (r <= 0)
            break;
        apps_hasher_update(h, block, (size_t)r);
        *have += (uint64_t)r;
    }
    free(block);
    return err;
}

static llmos_err fetch_blob(apps_store *st, const apps_pull_params *p, const apps_file *f,
                            xfer *base)
{
    char final[PATH_BYTES], partial[PATH_BYTES + 16], url[URL_BYTES];
    apps_store_blob_path(st, f->sha256, final, sizeof final);
    snprintf(partial, sizeof partial, "%s.partial", final);
    size_t bl = strlen(p->registry);
    snprintf(url, sizeof url, "%s%sblobs/sha256/%s", p->registry,
             bl && p->registry[bl - 1] == '/' ? "" : "/", f->sha256);
    int fd = open(partial, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot open: %s", partial, strerror(errno));
    apps_hasher *h = apps_hasher_new();
    uint64_t have = 0;
    llmos_err err = h ? hash_existing(fd, h, &have) : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err && have > f->size) { /* longer than it can be: start over */
        apps_hasher_free(h);
        h = apps_hasher_new();
        have = 0;
        if (!h || ftruncate(fd, 0) != 0)
            err = llmos_fail(LLMOS_ERR_IO, "%s: cannot start over", partial);
    }
    if (!err && have)
        LOG_INFO("apps", "resuming %s at byte %" PRIu64, f->path, have);
    *base->all_done += have;
    hpipe hp = {0};
    if (!err && !hpipe_start(&hp, h))
        err = llmos_fail(LLMOS_ERR_NOMEM, "cannot start the hashing thread");
    xfer x = *base;
    x.fd = fd;
    x.hp = &hp;
    x.have = have;
    x.limit = f->size;
    x.label = f->path;
    long status = 0;
    if (!err && have < f->size) {
        lseek(fd, (off_t)have, SEEK_SET);
        err = get(p->registry, url, have, &x, &status);
        if (err == LLMOS_ERR_UNSUPPORTED && have) {
            /* the server cannot resume: fetch the whole file again */
            llmos_err_clear();
            hpipe_finish(&hp);
            apps_hasher_free(h);
            h = apps_hasher_new();
            *x.all_done -= x.have;
            x.have = 0;
            if (!h || !hpipe_start(&hp, h) || ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0)
                err = llmos_fail(LLMOS_ERR_IO, "%s: cannot start over", partial);
            else
                err = get(p->registry, url, 0, &x, &status);
        }
        if (!err && have && status == 200) /* a server that ignored the range sent it all */
            err = llmos_fail(LLMOS_ERR_NETWORK, "%s: the registry ignored the resume request", url);
    }
    hpipe_finish(&hp); /* from here on h holds every byte written */
    bool discard = false;
    if (err == LLMOS_ERR_LIMIT) {
        discard = true;
        llmos_fail_context(err, "size check failed: ");
    }
    if (!err && x.have != f->size)
        err = llmos_fail(LLMOS_ERR_NETWORK,
                         "%s: the registry sent %" PRIu64 " of %" PRIu64
                         " bytes; run pull again to resume",
                         f->path, x.have, f->size);
    if (!err) {
        char hex[APPS_SHA256_HEX];
        apps_hasher_final(h, hex);
        if (strcmp(hex, f->sha256) != 0) {
            discard = true;
            err = llmos_fail(LLMOS_ERR_CRYPTO,
                             "digest check failed: %s from the registry has sha256 %.16s..., "
                             "the signed manifest says %.16s...; the download is discarded",
                             f->path, hex, f->sha256);
        }
    }
    if (!err && (fsync(fd) != 0 || fchmod(fd, 0444) != 0 || rename(partial, final) != 0))
        err = llmos_fail(LLMOS_ERR_IO, "%s: %s", final, strerror(errno));
    close(fd);
    if (discard)
        unlink(partial);
    apps_hasher_free(h);
    return err;
}

/* ---- the pull ----------------------------------------------------------------------------- */

static void split_ref(const char *ref, char *name, size_t nsize, char *tag, size_t tsize)
{
    const char *colon = strchr(ref, ':');
    size_t nl = colon ? (size_t)(colon - ref) : strlen(ref);
    snprintf(name, nsize, "%.*s", (int)(nl < nsize ? nl : nsize - 1), ref);
    snprintf(tag, tsize, "%s", colon ? colon + 1 : "latest");
}

static llmos_err check_space(apps_store *st, const apps_manifest *m, uint64_t *need_out)
{
    uint64_t need = 0;
    char p[PATH_BYTES], partial[PATH_BYTES + 16];
    for (size_t i = 0; i < m->n_files; i++) {
        struct stat sb;
        apps_store_blob_path(st, m->files[i].sha256, p, sizeof p);
        if (stat(p, &sb) == 0)
            continue;
        snprintf(partial, sizeof partial, "%s.partial", p);
        uint64_t have = stat(partial, &sb) == 0 ? (uint64_t)sb.st_size : 0;
        if (have < m->files[i].size)
            need += m->files[i].size - have;
    }
    *need_out = need;
    struct statvfs vfs;
    snprintf(p, sizeof p, "%s/blobs", apps_store_dir(st));
    if (statvfs(p, &vfs) != 0)
        return llmos_fail(LLMOS_ERR_IO, "%s: cannot see the free space: %s", p, strerror(errno));
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (need > free_bytes || free_bytes - need < SPACE_MARGIN)
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "disk space check failed: %s %s needs %.1f GiB, %s has %.1f GiB free "
                          "(and llmos leaves 64 MiB); free some space or set LLMOS_HOME",
                          m->name, m->version, (double)need / (1 << 30), p,
                          (double)free_bytes / (1 << 30));
    return LLMOS_OK;
}

llmos_err apps_pull(apps_store *st, const apps_pull_params *p, apps_pull_result *out)
{
    memset(out, 0, sizeof *out);
    char name[APPS_NAME_MAX + 16], tag[80];
    split_ref(p->ref, name, sizeof name, tag, sizeof tag);
    llmos_err err = apps_name_check(name, "app name");
    if (err)
        return err;
    if (strncmp(p->registry, "http://", 7) != 0 && strncmp(p->registry, "https://", 8) != 0)
        return llmos_fail(LLMOS_ERR_INVALID,
                          "registry '%.200s': llmos pulls over http:// or https:// (serve a "
                          "folder with llmos registry serve DIR)",
                          p->registry);
    double t0 = llmos_time_now();
    char path[512], version[80];
    llmos_buf b = {0}, man = {0}, sig = {0};
    /* 1. the version the tag names */
    if (strcmp(tag, "latest") == 0) {
        snprintf(path, sizeof path, "manifests/%s/latest", name);
        err = get_small(p, path, TAG_MAX_BYTES, &b);
        while (!err && b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
            b.data[--b.len] = '\0';
        if (!err)
            err = apps_version_check(b.data, "the registry's latest tag");
        if (!err)
            snprintf(version, sizeof version, "%s", b.data);
    } else {
        err = apps_version_check(tag, "tag");
        snprintf(version, sizeof version, "%s", tag);
    }
    /* 2. manifest and signature, verified */
    if (!err) {
        snprintf(path, sizeof path, "manifests/%s/%s.json", name, version);
        err = get_small(p, path, APPS_MANIFEST_MAX, &man);
    }
    bool have_sig = false;
    if (!err) {
        snprintf(path, sizeof path, "manifests/%s/%s.json.minisig", name, version);
        llmos_err serr = get_small(p, path, SIG_MAX_BYTES, &sig);
        have_sig = !serr;
        if (serr && serr != LLMOS_ERR_NOT_FOUND)
            err = serr;
        llmos_err_clear();
    }
    apps_manifest *m = NULL;
    if (!err)
        err = apps_verify_manifest(apps_store_policy(st), man.data, man.len,
                                   have_sig ? sig.data : NULL, sig.len, p->allow_unsigned, &m,
                                   &out->verdict);
    if (!err && (strcmp(m->name, name) != 0 || strcmp(m->version, version) != 0)) {
        snprintf(out->verdict.check, sizeof out->verdict.check, "name");
        err = llmos_fail(LLMOS_ERR_DENIED,
                         "name check failed: asked for %s %s, the registry served the "
                         "manifest of %s %s",
                         name, version, m->name, m->version);
    }
    char seen[80];
    if (!err) {
        apps_store_seen_version(st, name, seen, sizeof seen);
        if (seen[0] && apps_version_cmp(version, seen) < 0) {
            snprintf(out->verdict.check, sizeof out->verdict.check, "downgrade");
            err = llmos_fail(LLMOS_ERR_DENIED,
                             "downgrade check failed: the registry offers %s %s, older than "
                             "%s, which this store has installed",
                             name, version, seen);
        }
    }
    if (!err) {
        snprintf(out->name, sizeof out->name, "%s", m->name);
        snprintf(out->version, sizeof out->version, "%s", m->version);
        for (size_t i = 0; i < m->n_files; i++)
            out->bytes_total += m->files[i].size;
    }
    /* 3. disk space; 4. the blobs */
    uint64_t need = 0;
    if (!err)
        err = check_space(st, m, &need);
    uint64_t pulled = 0, done = 0;
    xfer base = {.fd = -1,
                 .p = p,
                 .pulled = &pulled,
                 .all_done = &done,
                 .total = out->bytes_total,
                 .t0 = t0};
    for (size_t i = 0; !err && i < m->n_files; i++) {
        char blob[PATH_BYTES];
        struct stat sb;
        apps_store_blob_path(st, m->files[i].sha256, blob, sizeof blob);
        if (stat(blob, &sb) == 0) {
            /* there already (another app's, or an earlier pull): checked, not trusted */
            char hex[APPS_SHA256_HEX];
            uint64_t size;
            err = apps_sha256_file(blob, hex, &size);
            if (!err && (size != m->files[i].size || strcmp(hex, m->files[i].sha256) != 0)) {
                chmod(blob, 0600);
                unlink(blob); /* a damaged copy: fetch it again */
            } else {
                done += m->files[i].size;
                continue;
            }
        }
        if (!err)
            err = fetch_blob(st, p, &m->files[i], &base);
        if (err) {
            snprintf(out->verdict.check, sizeof out->verdict.check, "%s",
                     err == LLMOS_ERR_CRYPTO  ? "digest"
                     : err == LLMOS_ERR_LIMIT ? "size"
                                              : "transfer");
        }
    }
    /* 5. the manifest, last */
    if (!err)
        err = apps_store_install(st, m, man.data, man.len, have_sig ? sig.data : NULL,
                                 have_sig ? sig.len : 0);
    out->bytes_fetched = pulled;
    out->seconds = llmos_time_now() - t0;
    if (p->progress && !err) {
        apps_progress pr = {.label = out->name,
                            .done = out->bytes_total,
                            .total = out->bytes_total,
                            .seconds = out->seconds,
                            .finished = true};
        p->progress(&pr, p->progress_ctx);
    }
    apps_manifest_free(m);
    buf_free(&b);
    buf_free(&man);
    buf_free(&sig);
    return err;
}

llmos_err apps_registry_peek(const apps_pull_params *p, char *version, size_t version_size,
                             uint64_t *bytes)
{
    char name[APPS_NAME_MAX + 16], tag[80], path[512];
    split_ref(p->ref, name, sizeof name, tag, sizeof tag);
    llmos_err err = apps_name_check(name, "app name");
    if (err)
        return err;
    llmos_buf b = {0}, man = {0};
    if (strcmp(tag, "latest") == 0) {
        snprintf(path, sizeof path, "manifests/%s/latest", name);
        err = get_small(p, path, TAG_MAX_BYTES, &b);
        while (!err && b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
            b.data[--b.len] = '\0';
        if (!err)
            err = apps_version_check(b.data, "the registry's latest tag");
        if (!err)
            snprintf(tag, sizeof tag, "%s", b.data);
    }
    if (!err) {
        snprintf(path, sizeof path, "manifests/%s/%s.json", name, tag);
        err = get_small(p, path, APPS_MANIFEST_MAX, &man);
    }
    apps_manifest *m = NULL;
    if (!err)
        err = apps_manifest_parse(man.data, man.len, &m);
    if (!err) {
        snprintf(version, version_size, "%s", m->version);
        *bytes = 0;
        for (size_t i = 0; i < m->n_files; i++)
            *bytes += m->files[i].size;
    }
    apps_manifest_free(m);
    buf_free(&b);
    buf_free(&man);
    return err;
}
