/*
 * cmd_user.c - `llmos user`: the accounts of `llmos serve --accounts` (llmos/auth.h).
 *
 *   llmos user add NAME       a new account with its own encrypted store
 *   llmos user list           the accounts, with their lockout state
 *   llmos user remove NAME    delete an account and everything in its store
 *   llmos user passwd NAME    change its passphrase (rewraps the store's key)
 *
 * The accounts live in <llmos home>/users (--dir DIR chooses another folder). Passphrases come
 * from $LLMOS_USER_PASSPHRASE (and $LLMOS_USER_NEW_PASSPHRASE for passwd's new one), else they
 * are asked on the terminal without echo, a new one twice. The key derivation follows $LLMOS_KDF
 * as for every store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/auth.h"
#include "llmos/memory.h"
#include "llmos/repl.h"

#define USER_PASS_MAX 1024

/* A passphrase from env, else the terminal (twice when `confirm`). */
static llmos_err user_passphrase(const char *env, const char *prompt, bool confirm, char *out,
                                 size_t size)
{
    const char *v = getenv(env);
    if (v && *v) {
        snprintf(out, size, "%s", v);
        return LLMOS_OK;
    }
    if (!isatty(STDIN_FILENO))
        return llmos_fail(LLMOS_ERR_AUTH, "no passphrase: set %s or run on a terminal to be asked",
                          env);
    llmos_err err = repl_read_secret(NULL, prompt, out, size);
    if (err || !confirm)
        return err;
    char again[USER_PASS_MAX];
    err = repl_read_secret(NULL, "Again: ", again, sizeof again);
    if (!err && strcmp(again, out) != 0)
        err = llmos_fail(LLMOS_ERR_INVALID, "the two passphrases differ; nothing was changed");
    llmos_secure_zero(again, sizeof again);
    return err;
}

int cmd_user(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("user", "say what to do: add, list, remove or passwd");
    const char *verb = argv[1], *name = NULL, *dir = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (argv[i][0] == '-')
            return cli_usage_error("user", "unknown option '%s'", argv[i]);
        else if (!name)
            name = argv[i];
        else
            return cli_usage_error("user", "one account at a time, not '%s' too", argv[i]);
    }
    char users[4096];
    if (!dir) {
        snprintf(users, sizeof users, "%s/users", memory_home());
        dir = users;
    }
    auth_params p = {.dir = dir};
    llmos_err err = keys_kdf_from_env(&p.kdf);
    if (err)
        return cli_report(err);

    if (strcmp(verb, "list") == 0) {
        if (name)
            return cli_usage_error("user", "list takes no name");
        char **names = NULL;
        size_t n = 0;
        if ((err = auth_account_list(dir, &names, &n)) != LLMOS_OK)
            return cli_report(err);
        int64_t now = (int64_t)time(NULL);
        for (size_t i = 0; i < n; i++) {
            unsigned failures = 0;
            int64_t until = 0;
            if (auth_account_state(&p, names[i], &failures, &until)) {
                printf("%s\t(unreadable: %s)\n", names[i], llmos_errmsg());
                continue;
            }
            if (until > now)
                printf("%s\tlocked for %lld s more\n", names[i], (long long)(until - now));
            else if (failures)
                printf("%s\t%u failed login%s since the last one\n", names[i], failures,
                       failures == 1 ? "" : "s");
            else
                printf("%s\n", names[i]);
        }
        if (n == 0)
            fprintf(stderr, "llmos user: no accounts in %s; add one with `llmos user add NAME`\n",
                    dir);
        auth_names_free(names, n);
        return CLI_OK;
    }
    if (!name)
        return cli_usage_error("user", "%s needs an account NAME", verb);

    char pass[USER_PASS_MAX] = "", fresh[USER_PASS_MAX] = "";
    if (strcmp(verb, "add") == 0) {
        err = user_passphrase("LLMOS_USER_PASSPHRASE", "Passphrase for the new account: ", true,
                              pass, sizeof pass);
        if (!err)
            err = auth_account_add(&p, name, pass);
        if (!err)
            printf("llmos user: account '%s' created in %s\n", name, dir);
    } else if (strcmp(verb, "remove") == 0) {
        err = auth_account_remove(&p, name);
        if (!err)
            printf("llmos user: account '%s' and its store removed\n", name);
    } else if (strcmp(verb, "passwd") == 0) {
        err = user_passphrase("LLMOS_USER_PASSPHRASE", "Current passphrase: ", false, pass,
                              sizeof pass);
        if (!err)
            err = user_passphrase("LLMOS_USER_NEW_PASSPHRASE", "New passphrase: ", true, fresh,
                                  sizeof fresh);
        if (!err)
            err = auth_account_passwd(&p, name, pass, fresh);
        if (!err)
            printf("llmos user: the passphrase of '%s' is changed\n", name);
    } else {
        return cli_usage_error("user", "unknown action '%s': add, list, remove or passwd", verb);
    }
    llmos_secure_zero(pass, sizeof pass);
    llmos_secure_zero(fresh, sizeof fresh);
    return err ? cli_report(err) : CLI_OK;
}
