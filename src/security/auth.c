/*
 * auth.c - accounts of one llmos server and their logins (llmos/auth.h).
 *
 * An account is a folder <dir>/<name> holding the account's encrypted store (store/) and its
 * lockout state (account.json). The passphrase is checked by unwrapping the store's key
 * (Argon2id, then XChaCha20-Poly1305: storage/keys.c), so nothing here stores a password hash
 * of its own, and the server can open an account's memory only while its user is logged in.
 *
 * account.json: {"format":"llmos-account","version":1,"name":"alice","created_at":T,
 *                "failures":N,"locked_until":T}
 * It holds no secret; it is written atomically with mode 0600. Tampering with it can only lift
 * a lockout of someone who can already write the account's folder, that is, its owner.
 *
 * The server side keeps, under one mutex:
 *   - the open accounts: the kernel session the opener made at the account's first login,
 *     with the number of live login sessions and of requests holding it (auth_ref); an account
 *     with neither is closed, which wipes its store's key from memory;
 *   - the login sessions: BLAKE2b-256 of the token (never the token), the CSRF token, the
 *     times; a token is found by comparing digests in constant time;
 *   - failed attempts per client address in the current minute.
 * Argon2id runs outside the mutex: a slow login does not hold up other requests.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "llmos/auth.h"
#include "llmos/json.h"
#include "llmos/passkey.h"
#include "llmos/security.h"

#define AUTH_FORMAT       "llmos-account"
#define AUTH_STATE_FILE   "account.json"
#define AUTH_STORE_DIR    "store"
#define AUTH_KEY_FILE     "store/store.key"
#define AUTH_PATH_MAX     4096
#define AUTH_PEERS_MAX    1024 /* addresses whose failures are remembered (oldest dropped) */
#define AUTH_WRONG        "wrong account name or passphrase"
#define AUTH_STATE_BYTES  65536
#define AUTH_CHALLENGE_S  120  /* a passkey ceremony's challenge is good this long */
#define AUTH_CHALLENGES   4096 /* challenges waiting at most (the oldest go first) */
#define AUTH_PASSKEYS_MAX 16   /* passkeys of one account */

/* ---- names, paths, state -------------------------------------------------------------------- */

llmos_err auth_check_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > AUTH_NAME_MAX)
        return llmos_fail(LLMOS_ERR_INVALID, "an account name has 1 to %d characters, not %zu",
                          AUTH_NAME_MAX, n);
    if (!(name[0] >= 'a' && name[0] <= 'z'))
        return llmos_fail(LLMOS_ERR_INVALID,
                          "account name '%s': it must start with a lower-case letter a-z", name);
    for (size_t i = 1; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return llmos_fail(LLMOS_ERR_INVALID,
                              "account name '%s': only a-z, 0-9, '_' and '-' may follow the first "
                              "letter",
                              name);
    }
    return LLMOS_OK;
}

static void auth_path(char *out, size_t size, const char *dir, const char *name, const char *rest)
{
    snprintf(out, size, "%s/%s%s%s", dir, name, rest ? "/" : "", rest ? rest : "");
}

static int64_t auth_now(void)
{
    return (int64_t)time(NULL);
}

typedef struct auth_state {
    int64_t created_at;
    unsigned failures;
    int64_t locked_until;
    json_t *doc; /* the whole file as read (its passkeys), or NULL; auth_state_clear frees */
} auth_state;

static void auth_state_clear(auth_state *st)
{
    json_decref(st->doc);
    st->doc = NULL;
}

static llmos_err auth_state_read(const char *dir, const char *name, auth_state *st)
{
    char path[AUTH_PATH_MAX];
    auth_path(path, sizeof path, dir, name, AUTH_STATE_FILE);
    memset(st, 0, sizeof *st);
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, AUTH_STATE_BYTES, &b);
    if (err) {
        buf_free(&b);
        if (err == LLMOS_ERR_NOT_FOUND || errno == ENOENT)
            return llmos_fail(LLMOS_ERR_NOT_FOUND, "there is no account '%s' (in %s)", name, dir);
        return err;
    }
    json_t *j = NULL;
    err = ljson_parse_text(b.data ? b.data : "", b.len, path, 4, &j);
    buf_free(&b);
    if (err)
        return err;
    const char *fmt = ljson_get_string(j, "format", "");
    if (strcmp(fmt, AUTH_FORMAT) != 0 || ljson_get_int(j, "version", 0) != 1) {
        json_decref(j);
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: not an llmos account file (format %s version 1)",
                          path, AUTH_FORMAT);
    }
    st->created_at = ljson_get_int(j, "created_at", 0);
    int64_t f = ljson_get_int(j, "failures", 0);
    st->failures = f < 0 ? 0 : f > 1000000 ? 1000000 : (unsigned)f;
    st->locked_until = ljson_get_int(j, "locked_until", 0);
    st->doc = j;
    return LLMOS_OK;
}

static llmos_err auth_state_write(const char *dir, const char *name, const auth_state *st)
{
    char path[AUTH_PATH_MAX];
    auth_path(path, sizeof path, dir, name, AUTH_STATE_FILE);
    json_t *j = st->doc ? json_deep_copy(st->doc) : json_object();
    json_t *fields =
        json_pack("{s:s, s:i, s:s, s:I, s:I, s:I}", "format", AUTH_FORMAT, "version", 1, "name",
                  name, "created_at", (json_int_t)st->created_at, "failures",
                  (json_int_t)st->failures, "locked_until", (json_int_t)st->locked_until);
    if (!j || !fields || json_object_update(j, fields) != 0) {
        json_decref(j);
        j = NULL;
    }
    json_decref(fields);
    llmos_buf b = {0};
    llmos_err err = !j || ljson_to_buf(j, 0, &b) || buf_putc(&b, '\n')
                        ? llmos_fail(LLMOS_ERR_NOMEM, "out of memory")
                        : llmos_file_write_atomic(path, b.data, b.len, 0600);
    json_decref(j);
    buf_free(&b);
    return err;
}

static keys_kdf auth_kdf(const auth_params *p)
{
    return p->kdf.opslimit ? p->kdf : keys_kdf_default();
}

static void auth_audit(const auth_params *p, const char *event, const char *account,
                       const char *peer, const char *detail)
{
    if (p->audit)
        p->audit(p->audit_ctx, event, account ? account : "", peer ? peer : "",
                 detail ? detail : "");
}

/* A record in the account's own audit log (its store is open). */
static llmos_err auth_audit_store(store *st, const char *event, const char *account,
                                  const char *peer)
{
    audit *a = NULL;
    llmos_err err = audit_open(st, &a);
    if (err)
        return err;
    json_t *pl = json_pack("{s:s, s:s, s:s}", "event", event, "account", account, "peer", peer);
    err = pl ? audit_append(a, "auth", pl) : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    json_decref(pl);
    audit_free(a);
    return err;
}

/* ---- accounts --------------------------------------------------------------------------- */

llmos_err auth_account_add(const auth_params *p, const char *name, const char *passphrase)
{
    assert(p && p->dir);
    llmos_err err = auth_check_name(name);
    if (err)
        return err;
    if (!passphrase || strlen(passphrase) < AUTH_PASS_MIN)
        return llmos_fail(LLMOS_ERR_INVALID, "a passphrase has at least %d characters",
                          AUTH_PASS_MIN);
    if ((err = llmos_file_private_dir(p->dir)) != LLMOS_OK)
        return err;
    char home[AUTH_PATH_MAX], sdir[AUTH_PATH_MAX];
    auth_path(home, sizeof home, p->dir, name, NULL);
    auth_path(sdir, sizeof sdir, p->dir, name, AUTH_STORE_DIR);
    if (mkdir(home, 0700) != 0)
        return errno == EEXIST
                   ? llmos_fail(LLMOS_ERR_EXISTS, "there is already an account '%s' (in %s)", name,
                                p->dir)
                   : llmos_fail(LLMOS_ERR_IO, "cannot create %s: %s", home, strerror(errno));
    store_options so = {.kdf = auth_kdf(p)};
    store *st = NULL;
    err = store_open(sdir, passphrase, &so, &st);
    if (!err)
        err = auth_audit_store(st, "account.create", name, "cli");
    store_close(st);
    auth_state s = {.created_at = auth_now()};
    if (!err)
        err = auth_state_write(p->dir, name, &s);
    if (err) {
        llmos_err keep = err;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", llmos_errmsg());
        if (auth_account_remove(&(auth_params){.dir = p->dir}, name))
            llmos_err_clear(); /* what could not be removed stays; the error says why */
        return llmos_fail(keep, "creating account '%s': %s", name, msg);
    }
    auth_audit(p, "account.create", name, "cli", "");
    return LLMOS_OK;
}

static int auth_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void auth_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

llmos_err auth_account_list(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT
                   ? LLMOS_OK
                   : llmos_fail(LLMOS_ERR_IO, "cannot read %s: %s", dir, strerror(errno));
    char **list = NULL;
    size_t len = 0, cap = 0;
    llmos_err err = LLMOS_OK;
    for (struct dirent *e; !err && (e = readdir(d));) {
        if (auth_check_name(e->d_name) != LLMOS_OK) {
            llmos_err_clear();
            continue;
        }
        char path[AUTH_PATH_MAX];
        struct stat sb;
        auth_path(path, sizeof path, dir, e->d_name, AUTH_STATE_FILE);
        if (stat(path, &sb) != 0)
            continue;
        if (len == cap) {
            cap = cap ? 2 * cap : 8;
            char **grown = realloc(list, cap * sizeof *list);
            if (!grown) {
                err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
                break;
            }
            list = grown;
        }
        if (!(list[len] = strdup(e->d_name)))
            err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        else
            len++;
    }
    closedir(d);
    if (err) {
        auth_names_free(list, len);
        return err;
    }
    if (len)
        qsort(list, len, sizeof *list, auth_name_cmp);
    *names = list;
    *n = len;
    return LLMOS_OK;
}

static int auth_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

llmos_err auth_account_remove(const auth_params *p, const char *name)
{
    assert(p && p->dir);
    llmos_err err = auth_check_name(name);
    if (err)
        return err;
    char home[AUTH_PATH_MAX];
    auth_path(home, sizeof home, p->dir, name, NULL);
    struct stat sb;
    if (lstat(home, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "there is no account '%s' (in %s)", name, p->dir);
    /* depth first, never following a symbolic link out of the account's folder */
    if (nftw(home, auth_rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return llmos_fail(LLMOS_ERR_IO, "cannot remove %s entirely: %s", home, strerror(errno));
    auth_audit(p, "account.remove", name, "cli", "");
    return LLMOS_OK;
}

llmos_err auth_account_passwd(const auth_params *p, const char *name, const char *old_passphrase,
                              const char *new_passphrase)
{
    assert(p && p->dir);
    llmos_err err = auth_check_name(name);
    if (err)
        return err;
    if (!new_passphrase || strlen(new_passphrase) < AUTH_PASS_MIN)
        return llmos_fail(LLMOS_ERR_INVALID, "a passphrase has at least %d characters",
                          AUTH_PASS_MIN);
    auth_state s;
    if ((err = auth_state_read(p->dir, name, &s)) != LLMOS_OK)
        return err;
    char sdir[AUTH_PATH_MAX];
    auth_path(sdir, sizeof sdir, p->dir, name, AUTH_STORE_DIR);
    store_options so = {.no_create = true};
    store *st = NULL;
    err = store_open(sdir, old_passphrase ? old_passphrase : "", &so, &st);
    if (err == LLMOS_ERR_AUTH) {
        auth_state_clear(&s);
        auth_audit(p, "account.passphrase", name, "cli", "refused: wrong old passphrase");
        return llmos_fail(LLMOS_ERR_AUTH, "account '%s': the old passphrase is wrong", name);
    }
    if (!err)
        err = store_change_passphrase(st, old_passphrase, new_passphrase, auth_kdf(p));
    if (!err)
        err = auth_audit_store(st, "account.passphrase", name, "cli");
    store_close(st);
    if (err) {
        auth_state_clear(&s);
        return err;
    }
    s.failures = 0;
    s.locked_until = 0;
    err = auth_state_write(p->dir, name, &s);
    auth_state_clear(&s);
    if (err)
        return err;
    auth_audit(p, "account.passphrase", name, "cli", "changed");
    return LLMOS_OK;
}

llmos_err auth_account_state(const auth_params *p, const char *name, unsigned *failures,
                             int64_t *locked_until)
{
    llmos_err err = auth_check_name(name);
    auth_state s;
    if (!err)
        err = auth_state_read(p->dir, name, &s);
    if (err)
        return err;
    *failures = s.failures;
    *locked_until = s.locked_until;
    auth_state_clear(&s);
    return LLMOS_OK;
}

/* ---- the server's logins and sessions ---------------------------------------------------- */

/* An account open in the server (its store unlocked); a request's auth_ref is one of these. */
typedef struct auth_ref auth_open;
struct auth_ref {
    auth_open *next;
    char name[AUTH_NAME_MAX + 1];
    void *handle;
    ksession *ses;
    size_t sessions; /* live login sessions */
    size_t refs;     /* requests holding it */
};

typedef struct auth_sess {
    struct auth_sess *next;
    unsigned char digest[crypto_generichash_BYTES]; /* BLAKE2b-256 of the token */
    char csrf[AUTH_TOKEN_CHARS + 1];
    auth_open *acct;
    int64_t created, used, expires;
} auth_sess;

/* A challenge issued for a passkey ceremony: used once, within AUTH_CHALLENGE_S. */
typedef struct auth_chal {
    struct auth_chal *next;
    uint8_t bytes[32];
    bool login; /* for navigator.credentials.get (else .create) */
    char account[AUTH_NAME_MAX + 1];
    int64_t expires;
} auth_chal;

typedef struct auth_peer {
    char addr[64];
    int64_t minute; /* the minute the count is for */
    unsigned failed;
} auth_peer;

struct auth_server {
    auth_params p;
    char *dir;
    pthread_mutex_t mu;
    auth_open *open;
    auth_sess *sessions;
    auth_peer *peers;
    size_t n_peers;
    auth_chal *challenges;
};

llmos_err auth_new(const auth_params *p, auth_server **out)
{
    *out = NULL;
    if (!p || !p->dir || !p->opener.open || !p->opener.close)
        return llmos_fail(LLMOS_ERR_INVALID, "auth_new needs the accounts folder and an opener");
    if (sodium_init() < 0)
        return llmos_fail(LLMOS_ERR_INTERNAL, "libsodium could not be initialised");
    llmos_err err = llmos_file_private_dir(p->dir);
    if (err)
        return err;
    auth_server *a = calloc(1, sizeof *a);
    if (!a || !(a->dir = strdup(p->dir)) ||
        !(a->peers = calloc(AUTH_PEERS_MAX, sizeof *a->peers))) {
        if (a)
            free(a->dir);
        free(a);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    a->p = *p;
    a->p.dir = a->dir;
    a->p.kdf = auth_kdf(p);
    if (!a->p.max_failures)
        a->p.max_failures = 5;
    if (!a->p.lockout_s)
        a->p.lockout_s = 300;
    if (!a->p.per_peer_per_minute)
        a->p.per_peer_per_minute = 10;
    if (!a->p.session_ttl_s)
        a->p.session_ttl_s = 12 * 3600;
    if (!a->p.idle_ttl_s)
        a->p.idle_ttl_s = 3600;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return LLMOS_OK;
}

/* Take o out of the list when nothing holds it; the caller closes what this returns (outside
 * the mutex: closing a kernel waits for its work). mu held. */
static auth_open *auth_unhold(auth_server *a, auth_open *o)
{
    if (o->sessions || o->refs)
        return NULL;
    for (auth_open **pp = &a->open; *pp; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            return o;
        }
    return NULL;
}

static void auth_close_open(auth_server *a, auth_open *o)
{
    if (!o)
        return;
    ksession_close(o->ses);
    a->p.opener.close(a->p.opener.ctx, o->handle);
    free(o);
}

/* Drop session *pp (mu held); returns an account to close, if that was its last hold. */
static auth_open *auth_drop(auth_server *a, auth_sess **pp)
{
    auth_sess *s = *pp;
    *pp = s->next;
    auth_open *o = s->acct;
    sodium_memzero(s, sizeof *s);
    free(s);
    assert(o->sessions > 0);
    o->sessions--;
    return auth_unhold(a, o);
}

/* Drop the expired sessions (mu held); the accounts to close go to *closing. */
static void auth_sweep(auth_server *a, int64_t now, auth_open **closing)
{
    for (auth_sess **pp = &a->sessions; *pp;) {
        auth_sess *s = *pp;
        if (now >= s->expires || now - s->used >= (int64_t)a->p.idle_ttl_s) {
            auth_open *o = auth_drop(a, pp);
            if (o) {
                o->next = *closing;
                *closing = o;
            }
        } else {
            pp = &s->next;
        }
    }
}

static void auth_close_list(auth_server *a, auth_open *list)
{
    while (list) {
        auth_open *next = list->next;
        auth_close_open(a, list);
        list = next;
    }
}

void auth_free(auth_server *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    auth_open *closing = NULL;
    while (a->sessions) {
        auth_open *o = auth_drop(a, &a->sessions);
        if (o) {
            o->next = closing;
            closing = o;
        }
    }
    /* accounts still held by a request: the server has stopped, so none should be */
    assert(!a->open);
    pthread_mutex_unlock(&a->mu);
    auth_close_list(a, closing);
    while (a->challenges) {
        auth_chal *c = a->challenges;
        a->challenges = c->next;
        free(c);
    }
    pthread_mutex_destroy(&a->mu);
    free(a->peers);
    free(a->dir);
    free(a);
}

/* The count of peer's failures this minute (mu held); creates the entry when asked. */
static auth_peer *auth_peer_find(auth_server *a, const char *peer, int64_t now, bool create)
{
    int64_t minute = now / 60;
    auth_peer *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < a->n_peers; i++) {
        auth_peer *e = &a->peers[i];
        if (e->minute != minute)
            e->failed = 0, e->minute = minute;
        if (strcmp(e->addr, peer) == 0)
            return e;
        if (!free_slot && e->failed == 0)
            free_slot = e;
        if (!oldest || e->failed < oldest->failed)
            oldest = e;
    }
    if (!create)
        return NULL;
    auth_peer *e = a->n_peers < AUTH_PEERS_MAX ? &a->peers[a->n_peers++]
                   : free_slot                 ? free_slot
                                               : oldest;
    snprintf(e->addr, sizeof e->addr, "%s", peer);
    e->minute = minute;
    e->failed = 0;
    return e;
}

static void auth_token(char out[AUTH_TOKEN_CHARS + 1])
{
    unsigned char rnd[32];
    randombytes_buf(rnd, sizeof rnd);
    sodium_bin2base64(out, AUTH_TOKEN_CHARS + 1, rnd, sizeof rnd,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(rnd, sizeof rnd);
}

static void auth_digest(unsigned char out[crypto_generichash_BYTES], const char *token)
{
    crypto_generichash(out, crypto_generichash_BYTES, (const unsigned char *)token, strlen(token),
                       NULL, 0);
}

/* The same Argon2id work as checking a real account, for names that are not one. */
static void auth_dummy_work(const auth_server *a, const char *passphrase)
{
    unsigned char out[32], salt[crypto_pwhash_SALTBYTES] = {0};
    if (crypto_pwhash(out, sizeof out, passphrase, strlen(passphrase), salt, a->p.kdf.opslimit,
                      (size_t)a->p.kdf.memlimit, crypto_pwhash_ALG_ARGON2ID13) == 0)
        sodium_memzero(out, sizeof out);
}

/* A failed attempt on account name (NULL: no such account): counted, perhaps a lockout. */
static void auth_failed(auth_server *a, const char *name, const char *peer, const char *why)
{
    int64_t now = auth_now();
    char detail[128] = "";
    pthread_mutex_lock(&a->mu);
    auth_peer *e = auth_peer_find(a, peer, now, true);
    e->failed++;
    auth_state st;
    bool locked = false;
    if (name && auth_state_read(a->dir, name, &st) == LLMOS_OK) {
        st.failures++;
        if (st.failures >= a->p.max_failures) {
            st.locked_until = now + a->p.lockout_s;
            locked = true;
            snprintf(detail, sizeof detail, "%u failures in a row: locked for %u s", st.failures,
                     a->p.lockout_s);
        }
        if (auth_state_write(a->dir, name, &st))
            LOG_WARN("auth", "account %s: the failure count could not be saved: %s", name,
                     llmos_errmsg());
        auth_state_clear(&st);
    }
    llmos_err_clear();
    pthread_mutex_unlock(&a->mu);
    auth_audit(&a->p, "login.failed", name ? name : "", peer, why);
    if (locked)
        auth_audit(&a->p, "lockout", name, peer, detail);
}

/* Before any secret is checked: the address's failures, the account's existence (an unknown
 * one costs the same Argon2id work as a known one, with dummy_pass) and its lockout. */
static llmos_err auth_precheck(auth_server *a, const char *name, const char *peer,
                               const char *dummy_pass, double *retry_s)
{
    int64_t now = auth_now();
    /* the address first: a client that guesses is stopped before any Argon2id work */
    pthread_mutex_lock(&a->mu);
    auth_peer *e = auth_peer_find(a, peer, now, false);
    bool limited = e && e->failed >= a->p.per_peer_per_minute;
    pthread_mutex_unlock(&a->mu);
    if (limited) {
        double wait = (double)(60 - now % 60);
        if (retry_s)
            *retry_s = wait;
        auth_audit(&a->p, "login.refused", name, peer, "too many failed logins from this address");
        return llmos_fail(LLMOS_ERR_LIMIT,
                          "too many failed logins from %s in the last minute; wait %.0f s", peer,
                          wait);
    }
    bool known = name && auth_check_name(name) == LLMOS_OK;
    llmos_err_clear();
    auth_state st = {0};
    if (known && auth_state_read(a->dir, name, &st) != LLMOS_OK) {
        llmos_err_clear();
        known = false;
    }
    if (!known) {
        if (dummy_pass)
            auth_dummy_work(a, dummy_pass);
        auth_failed(a, NULL, peer, name ? name : "");
        return llmos_fail(LLMOS_ERR_AUTH, AUTH_WRONG);
    }
    auth_state_clear(&st);
    if (st.locked_until > now) {
        char detail[96];
        snprintf(detail, sizeof detail, "locked for %lld s more",
                 (long long)(st.locked_until - now));
        auth_audit(&a->p, "login.refused", name, peer, detail);
        return llmos_fail(LLMOS_ERR_DENIED,
                          "account '%s' is locked after %u failed logins; try again in %lld s",
                          name, st.failures, (long long)(st.locked_until - now));
    }
    return LLMOS_OK;
}

/* Open a session of account name, whose secret is the passphrase (checked here: it unwraps the
 * store's key) or the store's data key (already proven by a passkey); the account's kernel is
 * opened with it when it is not open yet. `how` goes into the audit record. */
static llmos_err auth_enter(auth_server *a, const char *name, const char *peer,
                            const char *passphrase, const uint8_t *data_key, const char *how,
                            auth_login_result *out)
{
    int64_t now = auth_now();
    char home[AUTH_PATH_MAX], keyfile[AUTH_PATH_MAX];
    auth_path(home, sizeof home, a->dir, name, NULL);
    auth_path(keyfile, sizeof keyfile, a->dir, name, AUTH_KEY_FILE);
    pthread_mutex_lock(&a->mu);
    auth_open *o = a->open;
    while (o && strcmp(o->name, name) != 0)
        o = o->next;
    if (o)
        o->refs++; /* keep it while the secret is checked */
    pthread_mutex_unlock(&a->mu);
    llmos_err err = LLMOS_OK;
    auth_open *fresh = NULL;
    if (o) {
        if (!data_key) {
            keys_unlocked *k = NULL;
            err = keys_unlock(keyfile, passphrase, &k);
            keys_free(k);
        }
    } else {
        fresh = calloc(1, sizeof *fresh);
        err = fresh ? a->p.opener.open(a->p.opener.ctx, name, home, data_key ? NULL : passphrase,
                                       data_key, &fresh->handle, &fresh->ses)
                    : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
        if (!err)
            snprintf(fresh->name, sizeof fresh->name, "%s", name);
    }
    if (err) {
        free(fresh);
        if (o) {
            pthread_mutex_lock(&a->mu);
            o->refs--;
            auth_open *closing = auth_unhold(a, o);
            pthread_mutex_unlock(&a->mu);
            auth_close_open(a, closing);
        }
        if (err != LLMOS_ERR_AUTH || data_key) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", llmos_errmsg());
            auth_audit(&a->p, "login.failed", name, peer, msg);
            return llmos_fail(err, "account '%s' could not be opened: %s", name, msg);
        }
        auth_failed(a, name, peer, "wrong passphrase");
        return llmos_fail(LLMOS_ERR_AUTH, AUTH_WRONG);
    }

    auth_sess *s = calloc(1, sizeof *s);
    if (!s) {
        if (fresh)
            auth_close_open(a, fresh);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    auth_token(out->token);
    auth_token(out->csrf);
    auth_digest(s->digest, out->token);
    memcpy(s->csrf, out->csrf, sizeof s->csrf);
    s->created = s->used = now;
    s->expires = out->expires_at = now + a->p.session_ttl_s;

    auth_open *closing = NULL, *dup = NULL;
    pthread_mutex_lock(&a->mu);
    if (fresh) {
        /* another login of the same account may have opened it meanwhile: use that one */
        for (o = a->open; o && strcmp(o->name, name) != 0; o = o->next)
            ;
        if (o) {
            dup = fresh;
        } else {
            o = fresh;
            o->next = a->open;
            a->open = o;
        }
    } else {
        assert(o); /* held above while the secret was checked */
        o->refs--;
    }
    o->sessions++;
    s->acct = o;
    s->next = a->sessions;
    a->sessions = s;
    auth_sweep(a, now, &closing);
    unsigned failures = 0;
    auth_state st;
    if (auth_state_read(a->dir, name, &st) == LLMOS_OK) {
        if ((failures = st.failures) > 0) {
            st.failures = 0;
            st.locked_until = 0;
            if (auth_state_write(a->dir, name, &st))
                LOG_WARN("auth", "account %s: the failure count could not be reset: %s", name,
                         llmos_errmsg());
        }
        auth_state_clear(&st);
    }
    llmos_err_clear();
    pthread_mutex_unlock(&a->mu);
    auth_close_open(a, dup);
    auth_close_list(a, closing);
    char detail[128];
    snprintf(detail, sizeof detail, "%s; session for %u s%s", how, a->p.session_ttl_s,
             failures ? " (after failed attempts)" : "");
    auth_audit(&a->p, "login", name, peer, detail);
    return LLMOS_OK;
}

llmos_err auth_login(auth_server *a, const char *name, const char *passphrase, const char *peer,
                     auth_login_result *out, double *retry_s)
{
    assert(a && out);
    memset(out, 0, sizeof *out);
    if (retry_s)
        *retry_s = 0;
    peer = peer ? peer : "?";
    passphrase = passphrase ? passphrase : "";
    llmos_err err = auth_precheck(a, name, peer, passphrase, retry_s);
    return err ? err : auth_enter(a, name, peer, passphrase, NULL, "passphrase", out);
}

/* The session of token (mu held), or NULL. Compares every digest, in constant time each. */
static auth_sess **auth_find(auth_server *a, const char *token)
{
    if (!token || strlen(token) != AUTH_TOKEN_CHARS)
        return NULL;
    unsigned char d[crypto_generichash_BYTES];
    auth_digest(d, token);
    auth_sess **found = NULL;
    for (auth_sess **pp = &a->sessions; *pp; pp = &(*pp)->next)
        if (sodium_memcmp((*pp)->digest, d, sizeof d) == 0)
            found = pp;
    return found;
}

llmos_err auth_session(auth_server *a, const char *token, ksession **ses, auth_ref **ref,
                       char account[AUTH_NAME_MAX + 1], char csrf[AUTH_TOKEN_CHARS + 1])
{
    assert(a && ses && ref);
    *ses = NULL;
    *ref = NULL;
    int64_t now = auth_now();
    auth_open *closing = NULL;
    pthread_mutex_lock(&a->mu);
    auth_sweep(a, now, &closing);
    auth_sess **pp = auth_find(a, token);
    if (pp) {
        auth_sess *s = *pp;
        s->used = now;
        s->acct->refs++;
        *ses = s->acct->ses;
        *ref = s->acct;
        if (account)
            snprintf(account, AUTH_NAME_MAX + 1, "%s", s->acct->name);
        if (csrf)
            memcpy(csrf, s->csrf, AUTH_TOKEN_CHARS + 1);
    }
    pthread_mutex_unlock(&a->mu);
    auth_close_list(a, closing);
    if (!pp)
        return llmos_fail(LLMOS_ERR_AUTH,
                          "not logged in, or the session expired or was ended: log in again");
    return LLMOS_OK;
}

void auth_release(auth_server *a, auth_ref *ref)
{
    if (!a || !ref)
        return;
    auth_open *o = ref;
    pthread_mutex_lock(&a->mu);
    assert(o->refs > 0);
    o->refs--;
    auth_open *closing = auth_unhold(a, o);
    pthread_mutex_unlock(&a->mu);
    auth_close_open(a, closing);
}

bool auth_csrf_ok(auth_server *a, const char *token, const char *csrf)
{
    if (!csrf || strlen(csrf) != AUTH_TOKEN_CHARS)
        return false;
    pthread_mutex_lock(&a->mu);
    auth_sess **pp = auth_find(a, token);
    bool ok = pp && sodium_memcmp((*pp)->csrf, csrf, AUTH_TOKEN_CHARS) == 0;
    pthread_mutex_unlock(&a->mu);
    return ok;
}

llmos_err auth_logout(auth_server *a, const char *token, const char *peer)
{
    char name[AUTH_NAME_MAX + 1] = "";
    pthread_mutex_lock(&a->mu);
    auth_sess **pp = auth_find(a, token);
    auth_open *closing = NULL;
    if (pp) {
        snprintf(name, sizeof name, "%s", (*pp)->acct->name);
        closing = auth_drop(a, pp);
    }
    pthread_mutex_unlock(&a->mu);
    auth_close_open(a, closing);
    if (!name[0])
        return llmos_fail(LLMOS_ERR_AUTH, "no such session (it may have expired)");
    auth_audit(&a->p, "logout", name, peer ? peer : "?", "");
    return LLMOS_OK;
}

void auth_revoke_account(auth_server *a, const char *name, size_t *n)
{
    size_t count = 0;
    auth_open *closing = NULL;
    pthread_mutex_lock(&a->mu);
    for (auth_sess **pp = &a->sessions; *pp;) {
        if (strcmp((*pp)->acct->name, name) == 0) {
            auth_open *o = auth_drop(a, pp);
            count++;
            if (o) {
                o->next = closing;
                closing = o;
            }
        } else {
            pp = &(*pp)->next;
        }
    }
    pthread_mutex_unlock(&a->mu);
    auth_close_list(a, closing);
    if (count) {
        char detail[64];
        snprintf(detail, sizeof detail, "%zu session%s revoked", count, count == 1 ? "" : "s");
        auth_audit(&a->p, "logout", name, "server", detail);
    }
    if (n)
        *n = count;
}

size_t auth_sessions(auth_server *a)
{
    auth_open *closing = NULL;
    pthread_mutex_lock(&a->mu);
    auth_sweep(a, auth_now(), &closing);
    size_t n = 0;
    for (auth_sess *s = a->sessions; s; s = s->next)
        n++;
    pthread_mutex_unlock(&a->mu);
    auth_close_list(a, closing);
    return n;
}

/* ---- passkeys ------------------------------------------------------------------------------ */

static void auth_b64url(char *out, size_t size, const uint8_t *bin, size_t n)
{
    sodium_bin2base64(out, size, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Decode base64url member `key` of obj into bin (at most max bytes); false when absent or bad. */
static bool auth_unb64url(const json_t *obj, const char *key, uint8_t *bin, size_t max, size_t *n)
{
    const char *v = ljson_get_string(obj, key, NULL);
    return v && sodium_base642bin(bin, max, v, strlen(v), NULL, n, NULL,
                                  sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0;
}

/* The account's user handle and PRF salt, made at first use (mu held). */
static llmos_err auth_passkey_ids(auth_server *a, const char *name, char handle[32], char salt[48])
{
    auth_state st;
    llmos_err err = auth_state_read(a->dir, name, &st);
    if (err)
        return err;
    const char *h = ljson_get_string(st.doc, "user_handle", NULL);
    const char *sl = ljson_get_string(st.doc, "prf_salt", NULL);
    if (!h || !sl) {
        uint8_t hb[16], sb[32];
        randombytes_buf(hb, sizeof hb);
        randombytes_buf(sb, sizeof sb);
        auth_b64url(handle, 32, hb, sizeof hb);
        auth_b64url(salt, 48, sb, sizeof sb);
        json_object_set_new(st.doc, "user_handle", json_string(handle));
        json_object_set_new(st.doc, "prf_salt", json_string(salt));
        err = auth_state_write(a->dir, name, &st);
    } else {
        snprintf(handle, 32, "%s", h);
        snprintf(salt, 48, "%s", sl);
    }
    auth_state_clear(&st);
    return err;
}

/* A new challenge for account (mu held); its base64url in b64. */
static llmos_err auth_challenge_new(auth_server *a, const char *account, bool login, char b64[48])
{
    int64_t now = auth_now();
    /* drop the expired ones, and the oldest when there are too many */
    size_t n = 0;
    for (auth_chal **pp = &a->challenges; *pp;) {
        if ((*pp)->expires <= now || n >= AUTH_CHALLENGES - 1) {
            auth_chal *c = *pp;
            *pp = c->next;
            free(c);
        } else {
            pp = &(*pp)->next;
            n++;
        }
    }
    auth_chal *c = calloc(1, sizeof *c);
    if (!c)
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    randombytes_buf(c->bytes, sizeof c->bytes);
    c->login = login;
    snprintf(c->account, sizeof c->account, "%s", account);
    c->expires = now + AUTH_CHALLENGE_S;
    c->next = a->challenges;
    a->challenges = c;
    auth_b64url(b64, 48, c->bytes, sizeof c->bytes);
    return LLMOS_OK;
}

/* Take (remove) the challenge the client data names, issued for account and this ceremony;
 * false when there is none (unknown, used, expired). */
static bool auth_challenge_take(auth_server *a, const char *account, bool login,
                                const uint8_t *client_data, size_t cd_len, uint8_t out[32])
{
    json_t *j = NULL;
    if (!client_data ||
        ljson_parse_text((const char *)client_data, cd_len, "clientDataJSON", 8, &j)) {
        llmos_err_clear();
        return false;
    }
    uint8_t want[64];
    size_t n = 0;
    bool ok = auth_unb64url(j, "challenge", want, sizeof want, &n) && n == 32;
    json_decref(j);
    if (!ok)
        return false;
    int64_t now = auth_now();
    bool found = false;
    pthread_mutex_lock(&a->mu);
    for (auth_chal **pp = &a->challenges; *pp; pp = &(*pp)->next) {
        auth_chal *c = *pp;
        if (sodium_memcmp(c->bytes, want, 32) == 0) {
            found = c->login == login && strcmp(c->account, account) == 0 && c->expires > now;
            *pp = c->next;
            free(c);
            break;
        }
    }
    pthread_mutex_unlock(&a->mu);
    if (found)
        memcpy(out, want, 32);
    return found;
}

/* The key that wraps a passkey's copy of the store key: BLAKE2b-256 keyed by the PRF secret
 * over a label, the account and the credential id; the same bytes are the AEAD's associated
 * data, so a copy cannot be moved to another account or credential. */
static void auth_passkey_kek(uint8_t kek[32], llmos_buf *ad, const uint8_t prf[AUTH_PRF_BYTES],
                             const char *account, const uint8_t *id, size_t id_len)
{
    buf_clear(ad);
    if (buf_puts(ad, "llmos-passkey-v1") || buf_append(ad, account, strlen(account) + 1) ||
        buf_append(ad, id, id_len))
        buf_clear(ad);
    crypto_generichash(kek, 32, (const uint8_t *)ad->data, ad->len, prf, AUTH_PRF_BYTES);
}

llmos_err auth_passkey_options(auth_server *a, const char *token, const char *account,
                               const char *rp_id, json_t **out)
{
    assert(a && rp_id && out);
    *out = NULL;
    char name[AUTH_NAME_MAX + 1] = "";
    if (token) {
        pthread_mutex_lock(&a->mu);
        auth_sess **pp = auth_find(a, token);
        if (pp)
            snprintf(name, sizeof name, "%s", (*pp)->acct->name);
        pthread_mutex_unlock(&a->mu);
        if (!name[0])
            return llmos_fail(LLMOS_ERR_AUTH, "not logged in: log in to add a passkey");
    } else if (account && auth_check_name(account) == LLMOS_OK) {
        snprintf(name, sizeof name, "%s", account);
    }
    llmos_err_clear();
    char chal[48], handle[32] = "", salt[48] = "";
    json_t *creds = json_array();
    pthread_mutex_lock(&a->mu);
    llmos_err err = auth_challenge_new(a, name, !token, chal);
    auth_state st = {0};
    if (!err && name[0] && auth_state_read(a->dir, name, &st) == LLMOS_OK) {
        auth_state_clear(&st);
        err = auth_passkey_ids(a, name, handle, salt);
        if (!err && auth_state_read(a->dir, name, &st) == LLMOS_OK) {
            const json_t *list = ljson_get_array(st.doc, "passkeys");
            for (size_t i = 0; i < json_array_size(list); i++)
                json_array_append_new(
                    creds, json_pack("{s:s, s:s}", "type", "public-key", "id",
                                     ljson_get_string(json_array_get(list, i), "id", "")));
            auth_state_clear(&st);
        }
    }
    llmos_err_clear();
    pthread_mutex_unlock(&a->mu);
    if (!salt[0]) {
        /* no such account: options of the same shape, so that names cannot be probed */
        uint8_t r[32];
        randombytes_buf(r, sizeof r);
        auth_b64url(salt, sizeof salt, r, sizeof r);
        auth_b64url(handle, sizeof handle, r, 16);
        if (!token)
            json_array_append_new(creds,
                                  json_pack("{s:s, s:s}", "type", "public-key", "id", handle));
    }
    if (err || !creds) {
        json_decref(creds);
        return err ? err : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    json_t *prf = json_pack("{s:{s:{s:s}}}", "prf", "eval", "first", salt);
    json_t *pub;
    if (token)
        pub = json_pack("{s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:[{s:s, s:i}, {s:s, s:i}], s:i, "
                        "s:s, s:{s:s, s:s}, s:o, s:o}",
                        "challenge", chal, "rp", "id", rp_id, "name", "llmos", "user", "id", handle,
                        "name", name, "displayName", name, "pubKeyCredParams", "type", "public-key",
                        "alg", PASSKEY_ES256, "type", "public-key", "alg", PASSKEY_EDDSA, "timeout",
                        AUTH_CHALLENGE_S * 1000, "attestation", "none", "authenticatorSelection",
                        "residentKey", "preferred", "userVerification", "preferred",
                        "excludeCredentials", creds, "extensions", prf);
    else
        pub = json_pack("{s:s, s:s, s:o, s:s, s:i, s:o}", "challenge", chal, "rpId", rp_id,
                        "allowCredentials", creds, "userVerification", "preferred", "timeout",
                        AUTH_CHALLENGE_S * 1000, "extensions", prf);
    *out = pub ? json_pack("{s:o}", "publicKey", pub) : NULL;
    return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
}

llmos_err auth_passkey_add(auth_server *a, const char *token, const char *passphrase,
                           const char *rp_id, const char *origin, const uint8_t *client_data,
                           size_t cd_len, const uint8_t *attestation, size_t att_len,
                           const uint8_t prf[AUTH_PRF_BYTES], const char *peer)
{
    assert(a && rp_id && origin && prf);
    peer = peer ? peer : "?";
    char name[AUTH_NAME_MAX + 1] = "";
    pthread_mutex_lock(&a->mu);
    auth_sess **pp = auth_find(a, token);
    if (pp)
        snprintf(name, sizeof name, "%s", (*pp)->acct->name);
    pthread_mutex_unlock(&a->mu);
    if (!name[0])
        return llmos_fail(LLMOS_ERR_AUTH, "not logged in: log in to add a passkey");
    uint8_t chal[32];
    if (!auth_challenge_take(a, name, false, client_data, cd_len, chal)) {
        auth_audit(&a->p, "passkey.add", name, peer, "refused: unknown, used or expired challenge");
        return llmos_fail(LLMOS_ERR_AUTH,
                          "passkey: the challenge is unknown, used already or expired; start "
                          "again");
    }
    passkey_expect e = {
        .rp_id = rp_id, .origin = origin, .challenge = chal, .challenge_len = sizeof chal};
    passkey_cred c;
    llmos_err err = passkey_register(&e, client_data, cd_len, attestation, att_len, &c);
    if (err) {
        char msg[256];
        snprintf(msg, sizeof msg, "refused: %s", llmos_errmsg());
        auth_audit(&a->p, "passkey.add", name, peer, msg);
        return llmos_fail(err, "%s", msg + strlen("refused: "));
    }
    /* the passphrase again: it unwraps the store's key, a copy of which the passkey will hold */
    char keyfile[AUTH_PATH_MAX];
    auth_path(keyfile, sizeof keyfile, a->dir, name, AUTH_KEY_FILE);
    keys_unlocked *k = NULL;
    if ((err = keys_unlock(keyfile, passphrase ? passphrase : "", &k)) != LLMOS_OK) {
        keys_free(k);
        auth_audit(&a->p, "passkey.add", name, peer, "refused: wrong passphrase");
        return err == LLMOS_ERR_AUTH ? llmos_fail(err, "passkey: the passphrase is wrong") : err;
    }
    uint8_t kek[32], nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES], wrapped[48];
    llmos_buf ad = {0};
    auth_passkey_kek(kek, &ad, prf, name, c.id, c.id_len);
    randombytes_buf(nonce, sizeof nonce);
    crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, NULL, k->data_key, 32,
                                               (const uint8_t *)ad.data, ad.len, NULL, nonce, kek);
    sodium_memzero(kek, sizeof kek);
    keys_free(k);
    buf_free(&ad);

    char id64[400], pub64[100], nonce64[48], wrapped64[80];
    auth_b64url(id64, sizeof id64, c.id, c.id_len);
    auth_b64url(pub64, sizeof pub64, c.pub, c.pub_len);
    auth_b64url(nonce64, sizeof nonce64, nonce, sizeof nonce);
    auth_b64url(wrapped64, sizeof wrapped64, wrapped, sizeof wrapped);
    pthread_mutex_lock(&a->mu);
    auth_state st = {0};
    err = auth_state_read(a->dir, name, &st);
    json_t *list = err ? NULL : ljson_get_array(st.doc, "passkeys");
    if (!err && !list) {
        list = json_array();
        json_object_set_new(st.doc, "passkeys", list);
    }
    if (!err && json_array_size(list) >= AUTH_PASSKEYS_MAX)
        err = llmos_fail(LLMOS_ERR_LIMIT, "account '%s' has %d passkeys already, the most it may",
                         name, AUTH_PASSKEYS_MAX);
    for (size_t i = 0; !err && i < json_array_size(list); i++)
        if (strcmp(ljson_get_string(json_array_get(list, i), "id", ""), id64) == 0)
            err = llmos_fail(LLMOS_ERR_EXISTS, "passkey: this credential is registered already");
    if (!err) {
        json_array_append_new(
            list, json_pack("{s:s, s:i, s:s, s:I, s:I, s:s, s:s}", "id", id64, "alg", c.alg, "pub",
                            pub64, "sign_count", (json_int_t)c.sign_count, "created_at",
                            (json_int_t)auth_now(), "nonce", nonce64, "wrapped", wrapped64));
        err = auth_state_write(a->dir, name, &st);
    }
    auth_state_clear(&st);
    pthread_mutex_unlock(&a->mu);
    char detail[128];
    snprintf(detail, sizeof detail, "%s: %s credential %.12s", err ? "refused" : "added",
             c.alg == PASSKEY_ES256 ? "ES256" : "EdDSA", id64);
    auth_audit(&a->p, "passkey.add", name, peer, detail);
    return err;
}

llmos_err auth_passkey_login(auth_server *a, const char *account, const char *rp_id,
                             const char *origin, const uint8_t *cred_id, size_t id_len,
                             const uint8_t *client_data, size_t cd_len, const uint8_t *auth_data,
                             size_t ad_len, const uint8_t *sig, size_t sig_len,
                             const uint8_t prf[AUTH_PRF_BYTES], const char *peer,
                             auth_login_result *out, double *retry_s)
{
    assert(a && rp_id && origin && prf && out);
    memset(out, 0, sizeof *out);
    if (retry_s)
        *retry_s = 0;
    peer = peer ? peer : "?";
    llmos_err err = auth_precheck(a, account, peer, NULL, retry_s);
    if (err)
        return err;
    uint8_t chal[32];
    if (!auth_challenge_take(a, account, true, client_data, cd_len, chal)) {
        auth_failed(a, account, peer, "passkey: unknown, used or expired challenge (a replay?)");
        return llmos_fail(LLMOS_ERR_AUTH,
                          "passkey: the challenge is unknown, used already or expired; start "
                          "again");
    }
    passkey_expect e = {
        .rp_id = rp_id, .origin = origin, .challenge = chal, .challenge_len = sizeof chal};
    char id64[400] = "";
    if (cred_id && id_len > 0 && id_len <= PASSKEY_ID_MAX)
        auth_b64url(id64, sizeof id64, cred_id, id_len);
    uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES], wrapped[48];
    passkey_cred c = {0};
    char why[300] = "";

    /* find, verify and count under the mutex, so that two uses of one assertion cannot both
     * see the old counter */
    pthread_mutex_lock(&a->mu);
    auth_state st = {0};
    err = auth_state_read(a->dir, account, &st);
    json_t *found = NULL, *list = err ? NULL : ljson_get_array(st.doc, "passkeys");
    for (size_t i = 0; id64[0] && i < json_array_size(list); i++)
        if (strcmp(ljson_get_string(json_array_get(list, i), "id", ""), id64) == 0)
            found = json_array_get(list, i);
    if (!err && !found)
        snprintf(why, sizeof why, "passkey: not a credential of this account");
    if (found) {
        c.id_len = id_len;
        memcpy(c.id, cred_id, id_len);
        c.alg = (int)ljson_get_int(found, "alg", 0);
        int64_t count = ljson_get_int(found, "sign_count", 0);
        c.sign_count = count < 0 || count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
        size_t nn = 0, wn = 0;
        if (!auth_unb64url(found, "pub", c.pub, sizeof c.pub, &c.pub_len) ||
            !auth_unb64url(found, "nonce", nonce, sizeof nonce, &nn) || nn != sizeof nonce ||
            !auth_unb64url(found, "wrapped", wrapped, sizeof wrapped, &wn) || wn != sizeof wrapped)
            snprintf(why, sizeof why, "passkey: the stored credential is damaged");
        else if (passkey_verify_assertion(&e, &c, client_data, cd_len, auth_data, ad_len, sig,
                                          sig_len))
            snprintf(why, sizeof why, "%s", llmos_errmsg());
        else {
            json_object_set_new(found, "sign_count", json_integer((json_int_t)c.sign_count));
            json_object_set_new(found, "used_at", json_integer((json_int_t)auth_now()));
            if (auth_state_write(a->dir, account, &st))
                snprintf(why, sizeof why, "passkey: the counter could not be saved: %s",
                         llmos_errmsg());
        }
    }
    auth_state_clear(&st);
    pthread_mutex_unlock(&a->mu);
    llmos_err_clear();
    if (err || why[0]) {
        auth_failed(a, account, peer, why[0] ? why : "passkey: the account could not be read");
        return llmos_fail(LLMOS_ERR_AUTH, "%s", why[0] ? why : AUTH_WRONG);
    }

    /* the PRF secret unwraps the copy of the store's key */
    uint8_t kek[32];
    llmos_buf ad = {0};
    auth_passkey_kek(kek, &ad, prf, account, c.id, c.id_len);
    uint8_t *dk = sodium_malloc(32);
    unsigned long long dl = 0;
    int rc = dk ? crypto_aead_xchacha20poly1305_ietf_decrypt(dk, &dl, NULL, wrapped, sizeof wrapped,
                                                             (const uint8_t *)ad.data, ad.len,
                                                             nonce, kek)
                : -1;
    sodium_memzero(kek, sizeof kek);
    buf_free(&ad);
    if (rc != 0 || dl != 32) {
        sodium_free(dk);
        auth_failed(a, account, peer, "passkey: its PRF secret does not unwrap the store's key");
        return llmos_fail(LLMOS_ERR_AUTH,
                          "passkey: the authenticator's secret does not open this account's "
                          "store (was the passkey made with another salt?)");
    }
    err = auth_enter(a, account, peer, NULL, dk, "passkey", out);
    sodium_free(dk);
    return err;
}
