/*
 * cmd_key.c - `llmos key`: the API keys of `llmos serve`.
 *
 *   llmos key new PRINCIPAL --file FILE [--rights LIST] [--caps LIST] [limits] [--replace]
 *       make a key (256 random bits), add its digest to FILE as PRINCIPAL's entry (the file is
 *       created with mode 0600 when missing) and print the key once on standard output: the
 *       file holds only its BLAKE2b-256 digest, so it cannot be shown again
 *   llmos key list --file FILE
 *       the principals of FILE with their rights, capabilities and limits (no keys: there are
 *       none to show)
 *
 * The format and its checks are in src/security/apikeys.c (llmos/apikeys.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/apikeys.h"
#include "llmos/kernel.h"

/* The numeric options of `key new`: a name, the largest value, whether it must be whole, and
 * the field it sets. */
static void key_set_concurrent(apikey *e, double d)
{
    e->limits.concurrent = (int)d;
}
static void key_set_rpm(apikey *e, double d)
{
    e->limits.requests_per_minute = (int)d;
}
static void key_set_max_tokens(apikey *e, double d)
{
    e->limits.max_tokens = (int32_t)d;
}
static void key_set_tpm(apikey *e, double d)
{
    e->limits.tokens_per_minute = (int64_t)d;
}
static void key_set_priority(apikey *e, double d)
{
    e->limits.priority = (int)d;
}
static void key_set_budget_tokens(apikey *e, double d)
{
    e->budget.tokens = (int64_t)d;
}
static void key_set_budget_calls(apikey *e, double d)
{
    e->budget.tool_calls = (int64_t)d;
}
static void key_set_budget_seconds(apikey *e, double d)
{
    e->budget.wall_s = d;
}

typedef struct key_num {
    const char *name;
    double hi;
    bool whole;
    void (*set)(apikey *e, double d);
} key_num;

static const key_num key_nums[] = {
    {"--concurrent", 1e6, true, key_set_concurrent},
    {"--requests-per-minute", 1e5, true, key_set_rpm},
    {"--max-tokens", 2147483647.0, true, key_set_max_tokens},
    {"--tokens-per-minute", 1e15, true, key_set_tpm},
    {"--priority", KSCHED_PRIORITY_MAX, true, key_set_priority},
    {"--budget-tokens", 1e15, true, key_set_budget_tokens},
    {"--budget-tool-calls", 1e15, true, key_set_budget_calls},
    {"--budget-seconds", 1e9, false, key_set_budget_seconds},
};

/* Set the field of e that nm names from text v; false when v is not a number in range. */
static bool key_set_num(apikey *e, const key_num *nm, const char *v)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= 0 && d <= nm->hi) ||
        (nm->whole && d != (double)(int64_t)d))
        return false;
    nm->set(e, d);
    return true;
}

static int key_new(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return cli_usage_error("key", "key new needs a PRINCIPAL (a name: letters, digits, "
                                      ". _ - @)");
    apikey e = {.rights = KRIGHT_CHAT | KRIGHT_EMBED, .caps = KCAP_COMPUTE | KCAP_MESSAGE};
    const char *principal = argv[1], *file = NULL;
    if (*apikeys_principal_fault(principal))
        return cli_usage_error("key", "'%s' is not a principal name: %s", principal,
                               apikeys_principal_fault(principal));
    snprintf(e.principal, sizeof e.principal, "%s", principal);
    bool replace = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--replace") == 0) {
            replace = true;
            continue;
        }
        if (strcmp(a, "--audit-content") == 0) {
            e.audit_content = true;
            continue;
        }
        if (!v)
            return cli_usage_error("key", "%s needs a value", a);
        i++;
        if (strcmp(a, "--file") == 0) {
            file = v;
        } else if (strcmp(a, "--rights") == 0) {
            if (kright_parse(v, &e.rights))
                return cli_usage_error("key", "--rights: %s", llmos_errmsg());
            if (!e.rights)
                return cli_usage_error("key", "--rights: give at least one right");
        } else if (strcmp(a, "--caps") == 0) {
            if (kcap_parse(v, &e.caps))
                return cli_usage_error("key", "--caps: %s", llmos_errmsg());
        } else {
            const key_num *nm = NULL;
            for (size_t k = 0; k < LLMOS_ARRAY_LEN(key_nums) && !nm; k++)
                if (strcmp(a, key_nums[k].name) == 0)
                    nm = &key_nums[k];
            if (!nm)
                return cli_usage_error("key", "unknown option '%s'", a);
            if (!key_set_num(&e, nm, v))
                return cli_usage_error("key", "%s needs a number from 0 to %.0f, not '%s'", a,
                                       nm->hi, v);
        }
    }
    if (!file)
        return cli_usage_error("key", "key new needs --file FILE (the keys file of `llmos "
                                      "serve --keys FILE`)");
    char key[64];
    llmos_err err = apikeys_generate(key, sizeof key);
    if (!err) {
        apikeys_hash(key, strlen(key), e.hash);
        err = apikeys_add(file, &e, replace);
    }
    if (err) {
        llmos_secure_zero(key, sizeof key);
        return cli_report(err);
    }
    char rights[96], caps[96];
    kright_format(e.rights, rights, sizeof rights);
    kcap_format(e.caps, caps, sizeof caps);
    printf("%s\n", key);
    fflush(stdout);
    llmos_secure_zero(key, sizeof key);
    fprintf(stderr,
            "llmos key: %s '%s' %s %s (rights %s; capabilities %s). The key above is shown "
            "this once: the file keeps only its digest. Clients send it as 'Authorization: "
            "Bearer KEY'; the server reads the file at start (llmos serve --keys %s).\n",
            replace ? "a new key for" : "added", e.principal, replace ? "in" : "to", file, rights,
            caps, file);
    return CLI_OK;
}

static int key_list(int argc, char **argv)
{
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            file = argv[++i];
        else
            return cli_usage_error("key", "key list takes --file FILE, not '%s'", argv[i]);
    }
    if (!file)
        return cli_usage_error("key", "key list needs --file FILE");
    apikeys *ks = NULL;
    llmos_err err = apikeys_load(file, &ks);
    if (err)
        return cli_report(err);
    printf("%-24s %-32s %-28s %s\n", "PRINCIPAL", "RIGHTS", "CAPABILITIES", "LIMITS");
    for (size_t i = 0; i < apikeys_count(ks); i++) {
        const apikey *e = apikeys_get(ks, i);
        char rights[96], caps[96], limits[160] = "";
        kright_format(e->rights, rights, sizeof rights);
        kcap_format(e->caps, caps, sizeof caps);
        size_t n = 0;
        if (e->limits.concurrent)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "%d at once, ",
                                  e->limits.concurrent);
        if (e->limits.requests_per_minute && n < sizeof limits)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "%d a minute, ",
                                  e->limits.requests_per_minute);
        if (e->limits.max_tokens && n < sizeof limits)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "max_tokens %d, ",
                                  e->limits.max_tokens);
        if (e->limits.tokens_per_minute && n < sizeof limits)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "%" PRId64 " tokens a minute, ",
                                  e->limits.tokens_per_minute);
        if (e->limits.priority && n < sizeof limits)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "priority %d, ",
                                  e->limits.priority);
        if (e->audit_content && n < sizeof limits)
            n += (size_t)snprintf(limits + n, sizeof limits - n, "audit content, ");
        if (n >= 2 && n < sizeof limits)
            limits[n - 2] = 0; /* the last ", " */
        printf("%-24s %-32s %-28s %s\n", e->principal, rights, caps, *limits ? limits : "-");
    }
    apikeys_free(ks);
    return CLI_OK;
}

int cmd_key(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("key", "give a subcommand: new or list");
    if (strcmp(argv[1], "new") == 0)
        return key_new(argc - 1, argv + 1);
    if (strcmp(argv[1], "list") == 0)
        return key_list(argc - 1, argv + 1);
    return cli_usage_error("key", "unknown subcommand '%s' (new or list)", argv[1]);
}
