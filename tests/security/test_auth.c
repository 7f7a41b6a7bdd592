/*
 * test_auth.c - accounts and logins (src/security/auth.c): accounts with their own stores,
 * passphrase changes, wrong passphrases counted to a lockout, the per-address limit, sessions
 * (CSRF, logout, expiry, revocation), an account's kernel open only while someone is logged in,
 * and every event audited.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/auth.h"
#include "llmos/kernel.h"
#include "llmos/security.h"
#include "testutil.h"

static char dir[256];

/* What the audit hook saw, one "event account peer detail" line each. */
static char events[64][256];
static size_t n_events;

static void record(void *ctx, const char *event, const char *account, const char *peer,
                   const char *detail)
{
    (void)ctx;
    if (n_events < 64)
        snprintf(events[n_events++], sizeof events[0], "%s %s %s %s", event, account, peer, detail);
}

static size_t count_events(const char *prefix)
{
    size_t n = 0;
    for (size_t i = 0; i < n_events; i++)
        n += strncmp(events[i], prefix, strlen(prefix)) == 0;
    return n;
}

/* The test opener: the account's store, a kernel without models over it, a session of the
 * account's principal. Counts what is open. */
typedef struct opened {
    store *st;
    kernel *k;
} opened;
static int n_open;

static llmos_err test_open(void *ctx, const char *account, const char *home, const char *pass,
                           const uint8_t *data_key, void **handle, ksession **ses)
{
    (void)ctx;
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s/store", home);
    opened *o = calloc(1, sizeof *o);
    store_options so = {.no_create = true, .no_fsync = true, .data_key = data_key};
    llmos_err err = store_open(sdir, pass, &so, &o->st);
    kernel_config kc = {.st = o->st};
    if (!err)
        err = kernel_new(&kc, &o->k);
    ksession_params sp = {
        .principal = account, .device = "test", .rights = KRIGHT_ALL, .caps = KCAP_COMPUTE};
    if (!err)
        err = ksession_open(o->k, &sp, ses);
    if (err) {
        kernel_free(o->k);
        store_close(o->st);
        free(o);
        return err;
    }
    *handle = o;
    n_open++;
    return LLMOS_OK;
}

static void test_close(void *ctx, void *handle)
{
    (void)ctx;
    opened *o = handle;
    kernel_free(o->k);
    store_close(o->st);
    free(o);
    n_open--;
}

static auth_params params(void)
{
    auth_params p = {.dir = dir, .audit = record, .max_failures = 3, .per_peer_per_minute = 100};
    assert_int_equal(keys_kdf_parse("test-weak", &p.kdf), LLMOS_OK);
    p.opener = (auth_opener){.open = test_open, .close = test_close};
    return p;
}

static int setup(void **state)
{
    (void)state;
    n_events = 0;
    n_open = 0;
    return tu_mkdtemp("auth", dir, sizeof dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tu_rmrf(dir);
    return 0;
}

typedef struct log_query {
    char want[64];
    bool found;
} log_query;

static bool has_auth_record(const store_audit_record *rec, void *ctx)
{
    log_query *q = ctx;
    if (strcmp(rec->kind, "auth") == 0 && strstr(rec->payload, q->want)) {
        q->found = true;
        return false;
    }
    return true;
}

/* Does the account's own log hold an "auth" record naming `event`? */
static bool account_log_has(const char *name, const char *pass, const char *event)
{
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s/%s/store", dir, name);
    store *st = NULL;
    store_options so = {.no_create = true, .no_fsync = true};
    assert_int_equal(store_open(sdir, pass, &so, &st), LLMOS_OK);
    log_query q = {.found = false};
    snprintf(q.want, sizeof q.want, "\"%s\"", event);
    assert_int_equal(store_audit_iterate(st, 1, has_auth_record, &q), LLMOS_OK);
    audit_verdict v;
    assert_int_equal(audit_verify(st, &v), LLMOS_OK);
    assert_true(v.ok);
    store_close(st);
    return q.found;
}

static void test_accounts_are_added_listed_and_removed(void **state)
{
    (void)state;
    auth_params p = params();
    assert_int_equal(auth_account_add(&p, "bob", "bob's passphrase"), LLMOS_OK);
    assert_int_equal(auth_account_add(&p, "alice", "alice's passphrase"), LLMOS_OK);
    assert_int_equal(auth_account_add(&p, "alice", "another one here"), LLMOS_ERR_EXISTS);
    assert_int_equal(auth_account_add(&p, "Eve", "eve's passphrase"), LLMOS_ERR_INVALID);
    assert_int_equal(auth_account_add(&p, "../x", "eve's passphrase"), LLMOS_ERR_INVALID);
    assert_int_equal(auth_account_add(&p, "carol", "short"), LLMOS_ERR_INVALID);
    char **names;
    size_t n;
    assert_int_equal(auth_account_list(dir, &names, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "alice");
    assert_string_equal(names[1], "bob");
    auth_names_free(names, n);
    assert_true(account_log_has("alice", "alice's passphrase", "account.create"));
    assert_int_equal(auth_account_remove(&p, "bob"), LLMOS_OK);
    assert_int_equal(auth_account_remove(&p, "bob"), LLMOS_ERR_NOT_FOUND);
    assert_int_equal(auth_account_list(dir, &names, &n), LLMOS_OK);
    assert_int_equal(n, 1);
    auth_names_free(names, n);
    assert_int_equal(count_events("account.create alice"), 1);
    assert_int_equal(count_events("account.remove bob"), 1);
}

static void test_passwd_rewraps_the_store_key(void **state)
{
    (void)state;
    auth_params p = params();
    assert_int_equal(auth_account_add(&p, "alice", "first passphrase"), LLMOS_OK);
    assert_int_equal(auth_account_passwd(&p, "alice", "wrong passphrase", "second passphrase"),
                     LLMOS_ERR_AUTH);
    assert_int_equal(auth_account_passwd(&p, "alice", "first passphrase", "second passphrase"),
                     LLMOS_OK);
    assert_true(account_log_has("alice", "second passphrase", "account.passphrase"));
    auth_server *a = NULL;
    assert_int_equal(auth_new(&p, &a), LLMOS_OK);
    auth_login_result r;
    assert_int_equal(auth_login(a, "alice", "first passphrase", "10.0.0.1", &r, NULL),
                     LLMOS_ERR_AUTH);
    assert_int_equal(auth_login(a, "alice", "second passphrase", "10.0.0.1", &r, NULL), LLMOS_OK);
    auth_free(a);
    assert_int_equal(n_open, 0);
    assert_int_equal(count_events("account.passphrase alice cli refused"), 1);
    assert_int_equal(count_events("account.passphrase alice cli changed"), 1);
}

static void test_wrong_passphrases_lock_the_account(void **state)
{
    (void)state;
    auth_params p = params();
    assert_int_equal(auth_account_add(&p, "alice", "alice's passphrase"), LLMOS_OK);
    auth_server *a = NULL;
    assert_int_equal(auth_new(&p, &a), LLMOS_OK);
    auth_login_result r;
    for (int i = 0; i < 3; i++)
        assert_int_equal(auth_login(a, "alice", "guess", "10.0.0.2", &r, NULL), LLMOS_ERR_AUTH);
    assert_int_equal(n_open, 0);
    /* locked: even the right passphrase is refused now, and said so */
    assert_int_equal(auth_login(a, "alice", "alice's passphrase", "10.0.0.3", &r, NULL),
                     LLMOS_ERR_DENIED);
    assert_non_null(strstr(llmos_errmsg(), "locked"));
    assert_int_equal(r.token[0], 0);
    unsigned failures;
    int64_t until;
    assert_int_equal(auth_account_state(&p, "alice", &failures, &until), LLMOS_OK);
    assert_int_equal(failures, 3);
    assert_true(until > 0);
    assert_int_equal(count_events("login.failed alice 10.0.0.2"), 3);
    assert_int_equal(count_events("lockout alice"), 1);
    assert_int_equal(count_events("login.refused alice 10.0.0.3"), 1);
    /* a new passphrase clears the lockout */
    assert_int_equal(auth_account_passwd(&p, "alice", "alice's passphrase", "a new passphrase"),
                     LLMOS_OK);
    assert_int_equal(auth_login(a, "alice", "a new passphrase", "10.0.0.3", &r, NULL), LLMOS_OK);
    auth_free(a);
}

static void test_an_unknown_account_fails_like_a_wrong_passphrase(void **state)
{
    (void)state;
    auth_params p = params();
    assert_int_equal(auth_account_add(&p, "alice", "alice's passphrase"), LLMOS_OK);
    auth_server *a = NULL;
    assert_int_equal(auth_new(&p, &a), LLMOS_OK);
    auth_login_result r;
    assert_int_equal(auth_login(a, "alice", "wrong passphrase", "10.0.0.4", &r, NULL),
                     LLMOS_ERR_AUTH);
    char wrong[256];
    snprintf(wrong, sizeof wrong, "%s", llmos_errmsg());
    assert_int_equal(auth_login(a, "mallory", "wrong passphrase", "10.0.0.4", &r, NULL),
                     LLMOS_ERR_AUTH);
    assert_string_equal(llmos_errmsg(), wrong);
    assert_int_equal(auth_login(a, "../../etc", "x", "10.0.0.4", &r, NULL), LLMOS_ERR_AUTH);
    assert_string_equal(llmos_errmsg(), wrong);
    auth_free(a);
}

static void test_one_address_may_not_guess_on(void **state)
{
    (void)state;
    auth_params p = params();
    p.per_peer_per_minute = 4;
    p.max_failures = 100;
    assert_int_equal(auth_account_add(&p, "alice", "alice's passphrase"), LLMOS_OK);
    auth_server *a = NULL;
    assert_int_equal(auth_new(&p, &a), LLMOS_OK);
    auth_login_result r;
    for (int i = 0; i < 4; i++)
        assert_int_equal(auth_login(a, "alice", "guess", "10.0.0.5", &r, NULL), LLMOS_ERR_AUTH);
    double retry = 0;
    assert_int_equal(auth_login(a, "alice", "alice's passphrase", "10.0.0.5", &r, &retry),
                     LLMOS_ERR_LIMIT);
    assert_true(retry > 0 && retry <= 60);
    /* another address is not held back by this one */
    assert_int_equal(auth_login(a, "alice", "alice's passphrase", "10.0.0.6", &r, NULL), LLMOS_OK);
    assert_int_equal(count_events("login.refused alice 10.0.0.5"), 1);
    auth_free(a);
}

static void test_sessions_csrf_logout_and_the_open_account(void **state)
{
    (void)state;
    auth_params p = params();
    assert_int_equal(auth_account_add(&p, "alice", "alice's passphrase"), LLMOS_OK);
    assert_int_equal(auth_account_add(&p, "bob", "bob's passphrase"), LLMOS_OK);
    auth_server *a = NULL;
    assert_int_equal(auth_new(&p, &a), LLMOS_OK);
    auth_login_result r1, r2, rb;
    assert_int_equal(auth_login(a, "alice", "alice's passphrase", "127.0.0.1", &r1, NULL),
                     LLMOS_OK);
    assert_int_equal(strlen(r1.token), AUTH_TOKEN_CHARS);
    assert_int_equal(n_open, 1);
    assert_int_equal(auth_login(a, "alice", "alice's passphrase", "127.0.0.1", &r2, NULL),
                     LLMOS_OK);
    assert_int_equal(n_open, 1); /* the same kernel for both of alice's sessions */
    assert_string_not_equal(r1.token, r2.token);
    assert_int_equal(auth_login(a, "bob", "bob's passphrase", "127.0.0.1", &rb, NULL), LLMOS_OK);
    assert_int_equal(n_open, 2);

    ksession *sa = NULL, *sb = NULL;
    auth_ref *ra = NULL, *rb_ref = NULL;
    char who[AUTH_NAME_MAX + 1], csrf[AUTH_TOKEN_CHARS + 1];
    assert_int_equal(auth_session(a, r1.token, &sa, &ra, who, csrf), LLMOS_OK);
    assert_string_equal(who, "alice");
    assert_string_equal(csrf, r1.csrf);
    assert_string_equal(ksession_principal(sa), "alice");
    assert_int_equal(auth_session(a, rb.token, &sb, &rb_ref, who, NULL), LLMOS_OK);
    assert_string_equal(ksession_principal(sb), "bob");
    assert_ptr_not_equal(sa, sb);
    auth_release(a, rb_ref);

    assert_true(auth_csrf_ok(a, r1.token, r1.csrf));
    assert_false(auth_csrf_ok(a, r1.token, r2.csrf));
    assert_false(auth_csrf_ok(a, r1.token, ""));
    ksession *none;
    auth_ref *nref;
    assert_int_equal(auth_session(a, "not-a-token", &none, &nref, NULL, NULL), LLMOS_ERR_AUTH);
    char forged[AUTH_TOKEN_CHARS + 1];
    memcpy(forged, r1.token, sizeof forged);
    forged[0] = forged[0] == 'A' ? 'B' : 'A';
    assert_int_equal(auth_session(a, forged, &none, &nref, NULL, NULL), LLMOS_ERR_AUTH);

    /* alice logs out of both sessions while a request still holds her kernel: it stays open
     * until the request lets go */
    assert_int_equal(auth_logout(a, r1.token, "127.0.0.1"), LLMOS_OK);
    assert_int_equal(auth_logout(a, r1.token, "127.0.0.1"), LLMOS_ERR_AUTH);
    assert_int_equal(auth_session(a, r1.token, &none, &nref, NULL, NULL), LLMOS_ERR_AUTH);
    size_t revoked = 0;
    auth_revoke_account(a, "alice", &revoked);
    assert_int_equal(revoked, 1);
    assert_int_equal(auth_session(a, r2.token, &none, &nref, NULL, NULL), LLMOS_ERR_AUTH);
    assert_int_equal(n_open, 2);
    auth_release(a, ra);
    assert_int_equal(n_open, 1);
    assert_int_equal(auth_sessions(a), 1);
    auth_free(a);
    assert_int_equal(n_open, 0);
    assert_int_equal(count_events("login alice"), 2);
    assert_int_equal(count_events("logout alice"), 2);
}

static void test_sessions_expire(void **state)
{
    (void)state;
    auth_params p = params();
    p.session_ttl_s = 1;
    assert_int_equal(auth_account_add(&p, "alice", "alice's passphrase"), LLMOS_OK);
    auth_server *a = NULL;
    assert_int_equal(auth_new(&p, &a), LLMOS_OK);
    auth_login_result r;
    assert_int_equal(auth_login(a, "alice", "alice's passphrase", "127.0.0.1", &r, NULL), LLMOS_OK);
    ksession *s;
    auth_ref *ref;
    assert_int_equal(auth_session(a, r.token, &s, &ref, NULL, NULL), LLMOS_OK);
    auth_release(a, ref);
    sleep(2);
    assert_int_equal(auth_session(a, r.token, &s, &ref, NULL, NULL), LLMOS_ERR_AUTH);
    assert_int_equal(n_open, 0); /* the last session gone: the store's key is wiped */
    auth_free(a);
}

static void test_the_user_command(void **state)
{
    (void)state;
    llmos_buf out = {0}, err = {0};
    const char *env = "LLMOS_KDF=test-weak LLMOS_USER_PASSPHRASE=first-passphrase";
    assert_int_equal(tu_run_llmos(&out, &err, "%s user add dana --dir %s </dev/null", env, dir), 0);
    assert_int_not_equal(tu_run_llmos(NULL, &err, "%s user add dana --dir %s </dev/null", env, dir),
                         0);
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, NULL, "user list --dir %s", dir), 0);
    assert_non_null(out.data);
    assert_string_equal(out.data, "dana\n");
    assert_int_not_equal(tu_run_llmos(NULL, NULL,
                                      "LLMOS_KDF=test-weak LLMOS_USER_PASSPHRASE=wrong-one "
                                      "LLMOS_USER_NEW_PASSPHRASE=second-passphrase user passwd "
                                      "dana --dir %s </dev/null",
                                      dir),
                         0);
    assert_int_equal(tu_run_llmos(NULL, NULL,
                                  "%s LLMOS_USER_NEW_PASSPHRASE=second-passphrase user passwd "
                                  "dana --dir %s </dev/null",
                                  env, dir),
                     0);
    assert_true(account_log_has("dana", "second-passphrase", "account.passphrase"));
    assert_int_equal(tu_run_llmos(NULL, NULL, "user remove dana --dir %s", dir), 0);
    buf_clear(&out);
    assert_int_equal(tu_run_llmos(&out, NULL, "user list --dir %s", dir), 0);
    assert_true(out.len == 0);
    buf_free(&out);
    buf_free(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accounts_are_added_listed_and_removed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_passwd_rewraps_the_store_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_passphrases_lock_the_account, setup, teardown),
        cmocka_unit_test_setup_teardown(test_an_unknown_account_fails_like_a_wrong_passphrase,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_address_may_not_guess_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_csrf_logout_and_the_open_account, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sessions_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_user_command, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
