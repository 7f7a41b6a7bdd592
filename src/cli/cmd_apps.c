/*
 * cmd_apps.c - the app store's commands: pull, list, show, rm, verify, sign, keys, publish,
 * registry serve, run (llmos/apps.h; docs/supply-chain.md).
 *
 * Each is a thin user of src/apps: it parses its options, opens the store under the llmos
 * home, calls one library function and prints what happened. The help texts live here, beside
 * the code they describe, and commands.c's table points at them.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/apps.h"
#include "llmos/backend.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/memory.h"

/* ---- shared helpers ----------------------------------------------------------------------- */

static llmos_err open_store(apps_store **st)
{
    return apps_store_open(cli_home(), st);
}

static void human(char *out, size_t size, double bytes)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) {
        bytes /= 1024;
        u++;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

/* Split NAME[:TAG] into the store's name and version, resolving against what is installed. */
static llmos_err resolve(apps_store *st, const char *ref, char *n, size_t ns, char *v, size_t vs)
{
    return apps_store_resolve(st, ref, n, ns, v, vs);
}

static const char *sign_passphrase(void)
{
    const char *p = getenv("LLMOS_SIGN_PASSPHRASE");
    return p && *p ? p : NULL;
}

/* ---- pull --------------------------------------------------------------------------------- */

const char cmd_pull_help[] =
    "usage: llmos pull NAME[:TAG] [--registry URL] [--allow-unsigned]\n\n"
    "Fetch an app (a model, tool, MCP server, prompt pack or specialist) from a registry\n"
    "into the store under $LLMOS_HOME/apps. TAG is a version (1.2.0) or latest (the\n"
    "default). The manifest's signature is checked against your trust policy before\n"
    "any file is fetched (llmos keys trust adds a publisher's key); the disk space the\n"
    "files need is checked next; each file's SHA-256 is computed as it arrives and\n"
    "must match the signed manifest, or the file is discarded. An interrupted pull\n"
    "(Ctrl-C, a broken connection) resumes where it stopped when run again. A version\n"
    "older than one installed before is refused (no downgrades). Progress goes to\n"
    "standard error: a line with bytes, rate and time left on a terminal, plain lines\n"
    "otherwise. docs/supply-chain.md explains the checks.\n\n"
    "  --registry URL     the registry (http:// or https://; default $LLMOS_REGISTRY,\n"
    "                     else the one llmos was built with, if any)\n"
    "  --allow-unsigned   install a manifest that has no signature (loading it later\n"
    "                     needs --allow-unsigned again)\n";

int cmd_pull(int argc, char **argv)
{
    const char *ref = NULL, *registry = cli_registry();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--registry") == 0 && i + 1 < argc)
            registry = argv[++i];
        else if (argv[i][0] == '-')
            return cli_usage_error("pull", "unknown option '%s'", argv[i]);
        else if (ref)
            return cli_usage_error("pull", "give one NAME[:TAG]");
        else
            ref = argv[i];
    }
    if (!ref)
        return cli_usage_error("pull", "which app? give NAME[:TAG]");
    if (!registry || !*registry)
        return cli_usage_error("pull", "no registry: give --registry URL or set LLMOS_REGISTRY");
    apps_store *st = NULL;
    llmos_err err = open_store(&st);
    if (err)
        return cli_report(err);
    cli_progress_state ps = {.tty = isatty(STDERR_FILENO) != 0, .next_pct = 10};
    apps_pull_params p = {.registry = registry,
                          .ref = ref,
                          .allow_unsigned = cli_allow_unsigned,
                          .progress = cli_progress,
                          .progress_ctx = &ps,
                          .cancel = cli_catch_sigint()};
    apps_pull_result r;
    err = apps_pull(st, &p, &r);
    char label[160];
    snprintf(label, sizeof label, "%s", ref);
    apps_store_log(st, "pull", label, &r.verdict, err ? llmos_errmsg() : "installed");
    apps_store_free(st);
    if (err)
        return cli_report(err);
    char got[32], total[32], rate[32];
    human(got, sizeof got, (double)r.bytes_fetched);
    human(total, sizeof total, (double)r.bytes_total);
    human(rate, sizeof rate, r.seconds > 0 ? (double)r.bytes_fetched / r.seconds : 0);
    printf("pulled %s %s (%s", r.name, r.version, total);
    if (r.verdict.signed_by_trusted)
        printf(", signed by %s, key %s)", r.verdict.publisher, r.verdict.keyid);
    else
        printf(", UNSIGNED)");
    printf(": fetched %s in %.2f s (%s/s)\n", got, r.seconds, rate);
    return CLI_OK;
}

/* ---- list --------------------------------------------------------------------------------- */

const char cmd_list_help[] =
    "usage: llmos list [--json]\n\n"
    "The apps in the store: name, version, size, kind, and whether the manifest's\n"
    "signature is good under the trust policy now (llmos verify also checks every\n"
    "file's digest).\n\n"
    "  --json   a JSON array instead of the table\n";

typedef struct list_ctx {
    apps_store *st;
    bool json;
    json_t *arr;
    size_t n;
} list_ctx;

static bool list_one(const apps_entry *e, void *ctx)
{
    list_ctx *lc = ctx;
    apps_manifest *m = NULL;
    apps_verdict v;
    llmos_err err = apps_store_verify(lc->st, e->name, e->version, false, false, &m, &v);
    char status[160];
    if (!err)
        snprintf(status, sizeof status, "signed by %s", v.publisher);
    else if (err && !e->is_signed && strcmp(v.check, "signature") == 0)
        snprintf(status, sizeof status, "unsigned");
    else
        snprintf(status, sizeof status, "REFUSED (%s check)", v.check[0] ? v.check : "read");
    llmos_err_clear();
    if (!m) { /* not loadable as is: still show what it says, read without trust */
        apps_store_verify(lc->st, e->name, e->version, false, true, &m, &v) == LLMOS_OK
            ? (void)0
            : llmos_err_clear();
    }
    uint64_t size = 0;
    for (size_t i = 0; m && i < m->n_files; i++)
        size += m->files[i].size;
    const char *kind = m ? apps_kind_name(m->kind) : "?";
    if (lc->json) {
        json_array_append_new(lc->arr, json_pack("{s:s, s:s, s:I, s:s, s:s}", "name", e->name,
                                                 "version", e->version, "size", (json_int_t)size,
                                                 "kind", kind, "status", status));
    } else {
        if (lc->n == 0)
            printf("%-28s %-12s %10s  %-10s  %s\n", "NAME", "VERSION", "SIZE", "KIND", "SIGNATURE");
        char hs[32];
        human(hs, sizeof hs, (double)size);
        printf("%-28s %-12s %10s  %-10s  %s\n", e->name, e->version, hs, kind, status);
    }
    lc->n++;
    apps_manifest_free(m);
    return true;
}

int cmd_list(int argc, char **argv)
{
    list_ctx lc = {0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            lc.json = true;
        else
            return cli_usage_error("list", "unknown argument '%s'", argv[i]);
    }
    llmos_err err = open_store(&lc.st);
    if (err)
        return cli_report(err);
    lc.arr = json_array();
    err = apps_store_list(lc.st, list_one, &lc);
    if (!err && lc.json) {
        llmos_buf b = {0};
        if (!(err = ljson_to_buf(lc.arr, JSON_INDENT(2), &b)))
            printf("%s\n", b.data);
        buf_free(&b);
    } else if (!err && lc.n == 0) {
        printf("The store is empty. llmos pull NAME gets an app from a registry.\n");
    }
    json_decref(lc.arr);
    apps_store_free(lc.st);
    return err ? cli_report(err) : CLI_OK;
}

/* ---- show --------------------------------------------------------------------------------- */

const char cmd_show_help[] =
    "usage: llmos show NAME[:TAG] [--json]\n\n"
    "Show an installed app: its manifest (publisher, kind, capabilities, files with\n"
    "sizes and SHA-256), the provenance statement (where it was built from and by\n"
    "whom), whether its signature is good under the trust policy, and for a model its\n"
    "hyperparameters (as llmos model info shows them).\n\n"
    "  --json   the manifest itself, as stored (canonical JSON, pretty-printed)\n";

int cmd_show(int argc, char **argv)
{
    const char *ref = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (argv[i][0] == '-' || ref)
            return cli_usage_error("show", "unexpected argument '%s'", argv[i]);
        else
            ref = argv[i];
    }
    if (!ref)
        return cli_usage_error("show", "which app? give NAME[:TAG]");
    apps_store *st = NULL;
    char n[APPS_NAME_MAX + 1], v[64];
    llmos_err err = open_store(&st);
    if (!err)
        err = resolve(st, ref, n, sizeof n, v, sizeof v);
    if (err) {
        apps_store_free(st);
        return cli_report(err);
    }
    apps_manifest *m = NULL;
    apps_verdict vd;
    llmos_err verr = apps_store_verify(st, n, v, false, false, &m, &vd);
    char why[512];
    snprintf(why, sizeof why, "%s", verr ? llmos_errmsg() : "");
    if (verr && apps_store_verify(st, n, v, false, true, &m, &vd) != LLMOS_OK) {
        apps_store_free(st);
        return cli_report(verr);
    }
    if (json) {
        llmos_buf b = {0};
        if (!(err = ljson_to_buf(m->json, JSON_INDENT(2) | JSON_SORT_KEYS, &b)))
            printf("%s\n", b.data);
        buf_free(&b);
    } else {
        printf("%s %s  (%s, publisher %s)\n", m->name, m->version, apps_kind_name(m->kind),
               m->publisher);
        if (m->description[0])
            printf("  %s\n", m->description);
        printf("signature:    %s\n", verr ? why : "good");
        if (!verr)
            printf("              signed by %s with key %s\n", vd.publisher, vd.keyid);
        printf("capabilities:");
        for (size_t i = 0; i < m->n_caps; i++)
            printf(" %s", m->caps[i]);
        printf("%s\nfiles:\n", m->n_caps ? "" : " (none)");
        for (size_t i = 0; i < m->n_files; i++) {
            char hs[32];
            human(hs, sizeof hs, (double)m->files[i].size);
            printf("  %-30s %10s  sha256:%s\n", m->files[i].path, hs, m->files[i].sha256);
        }
        const json_t *pred = json_object_get(m->provenance, "predicate");
        const json_t *bd = json_object_get(pred, "buildDefinition");
        printf("provenance:   %s\n", ljson_get_string(m->provenance, "predicateType", "?"));
        printf("  build type: %s\n", ljson_get_string(bd, "buildType", "?"));
        printf("  builder:    %s\n",
               ljson_get_string(json_object_get(json_object_get(pred, "runDetails"), "builder"),
                                "id", "?"));
        const json_t *deps = json_object_get(bd, "resolvedDependencies");
        for (size_t i = 0; i < json_array_size(deps); i++) {
            const json_t *d = json_array_get(deps, i);
            printf("  source:     %s", ljson_get_string(d, "uri", "?"));
            const char *rev = ljson_get_string(json_object_get(d, "digest"), "gitCommit", NULL);
            printf(rev ? " at %s\n" : "\n", rev);
        }
        fflush(stdout);
        for (size_t i = 0; m->kind == APPS_KIND_MODEL && i < m->n_files; i++) {
            size_t l = strlen(m->files[i].path);
            if (l > 5 && strcmp(m->files[i].path + l - 5, ".gguf") == 0) {
                char path[4400];
                apps_store_blob_path(st, m->files[i].sha256, path, sizeof path);
                printf("\n");
                fflush(stdout);
                (void)cmd_model(3, (char *[]){"model", "info", path, NULL});
                break;
            }
        }
    }
    apps_manifest_free(m);
    apps_store_free(st);
    return err ? cli_report(err) : CLI_OK;
}

/* ---- rm ----------------------------------------------------------------------------------- */

const char cmd_rm_help[] =
    "usage: llmos rm NAME[:VERSION]\n\n"
    "Remove an app from the store (one version, or all of them), then every file no\n"
    "installed app still uses. The store remembers the newest version it had, so a\n"
    "later pull still refuses an older one.\n";

int cmd_rm(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-')
        return cli_usage_error("rm", "give one NAME[:VERSION]");
    char name[APPS_NAME_MAX + 1];
    const char *colon = strchr(argv[1], ':');
    size_t nl = colon ? (size_t)(colon - argv[1]) : strlen(argv[1]);
    if (nl > APPS_NAME_MAX)
        return cli_usage_error("rm", "'%s' is not an app name", argv[1]);
    snprintf(name, sizeof name, "%.*s", (int)nl, argv[1]);
    const char *version = colon && strcmp(colon + 1, "latest") != 0 ? colon + 1 : NULL;
    apps_store *st = NULL;
    uint64_t freed = 0;
    llmos_err err = open_store(&st);
    if (!err)
        err = apps_store_remove(st, name, version, &freed);
    apps_store_free(st);
    if (err)
        return cli_report(err);
    char hs[32];
    human(hs, sizeof hs, (double)freed);
    printf("removed %s%s%s; freed %s\n", name, version ? " " : " (all versions)",
           version ? version : "", hs);
    return CLI_OK;
}

/* ---- verify ------------------------------------------------------------------------------- */

const char cmd_verify_help[] =
    "usage: llmos verify [NAME[:TAG]]\n\n"
    "Check installed apps as a load does: the manifest's signature against the trust\n"
    "policy as it is now (keys revoked since the pull are refused), then every file's\n"
    "size and SHA-256. With no NAME, every app in the store. Exit status 1 when any\n"
    "check fails, naming it.\n";

typedef struct verify_ctx {
    apps_store *st;
    int failed, ok;
} verify_ctx;

static bool verify_one(const apps_entry *e, void *ctx)
{
    verify_ctx *vc = ctx;
    apps_manifest *m = NULL;
    apps_verdict v;
    double t0 = llmos_time_now();
    llmos_err err =
        apps_store_verify(vc->st, e->name, e->version, true, cli_allow_unsigned, &m, &v);
    char label[160];
    snprintf(label, sizeof label, "%s %s", e->name, e->version);
    apps_store_log(vc->st, "verify", label, &v, err ? llmos_errmsg() : "verified");
    if (err) {
        printf("FAILED %s: %s\n", label, llmos_errmsg());
        vc->failed++;
    } else {
        uint64_t size = 0;
        for (size_t i = 0; i < m->n_files; i++)
            size += m->files[i].size;
        double s = llmos_time_now() - t0;
        char hs[32], rate[32];
        human(hs, sizeof hs, (double)size);
        human(rate, sizeof rate, s > 0 ? (double)size / s : 0);
        if (v.signed_by_trusted)
            printf("ok     %s: signed by %s (key %s); %zu file(s), %s, SHA-256 at %s/s\n", label,
                   v.publisher, v.keyid, m->n_files, hs, rate);
        else
            printf("ok     %s: UNSIGNED (allowed); %zu file(s), %s\n", label, m->n_files, hs);
        vc->ok++;
    }
    apps_manifest_free(m);
    return true;
}

int cmd_verify(int argc, char **argv)
{
    if (argc > 2)
        return cli_usage_error("verify", "give at most one NAME[:TAG]");
    verify_ctx vc = {0};
    llmos_err err = open_store(&vc.st);
    if (err)
        return cli_report(err);
    if (argc == 2) {
        char n[APPS_NAME_MAX + 1], v[64];
        err = resolve(vc.st, argv[1], n, sizeof n, v, sizeof v);
        if (!err)
            verify_one(&(apps_entry){.name = n, .version = v}, &vc);
    } else {
        err = apps_store_list(vc.st, verify_one, &vc);
        if (!err && vc.ok + vc.failed == 0)
            printf("The store is empty: nothing to verify.\n");
    }
    apps_store_free(vc.st);
    if (err)
        return cli_report(err);
    return vc.failed ? CLI_FAILED : CLI_OK;
}

/* ---- sign --------------------------------------------------------------------------------- */

const char cmd_sign_help[] =
    "usage: llmos sign --key SECKEY [--legacy] [--trusted-comment TEXT] FILE...\n\n"
    "Sign each FILE with the secret key SECKEY (minisign's format: made by llmos keys\n"
    "new or by minisign -G), writing FILE.minisig. The signature is minisign's, so\n"
    "minisign -V -p KEY.pub -m FILE verifies it. An encrypted key's passphrase comes\n"
    "from LLMOS_SIGN_PASSPHRASE.\n\n"
    "  --legacy                 minisign's legacy form (\"Ed\": over the file itself)\n"
    "                           instead of the prehashed one (\"ED\": over its BLAKE2b-512)\n"
    "  --trusted-comment TEXT   the signed comment (default: timestamp and file name)\n";

int cmd_sign(int argc, char **argv)
{
    const char *key = NULL, *tc_arg = NULL;
    bool legacy = false;
    int first = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--trusted-comment") == 0 && i + 1 < argc)
            tc_arg = argv[++i];
        else if (strcmp(argv[i], "--legacy") == 0)
            legacy = true;
        else if (argv[i][0] == '-')
            return cli_usage_error("sign", "unknown option '%s'", argv[i]);
        else {
            first = i;
            break;
        }
    }
    if (!key)
        return cli_usage_error("sign", "--key SECKEY is required");
    if (!first)
        return cli_usage_error("sign", "which files? give FILE...");
    apps_seckey *k = NULL;
    llmos_err err = apps_seckey_load(key, sign_passphrase(), &k);
    for (int i = first; !err && i < argc; i++) {
        llmos_buf data = {0}, sig = {0};
        err = llmos_file_read_all(argv[i], (size_t)1 << 34, &data);
        char tc[1024], path[4200];
        const char *base = strrchr(argv[i], '/');
        snprintf(tc, sizeof tc, "timestamp:%lld\tfile:%s", (long long)time(NULL),
                 base ? base + 1 : argv[i]);
        if (!err)
            err = apps_sign(k, data.data, data.len, "signature from llmos secret key",
                            tc_arg ? tc_arg : tc, legacy, &sig);
        snprintf(path, sizeof path, "%s.minisig", argv[i]);
        if (!err)
            err = llmos_file_write_atomic(path, sig.data, sig.len, 0644);
        if (!err)
            printf("signed %s -> %s\n", argv[i], path);
        buf_free(&data);
        buf_free(&sig);
    }
    apps_seckey_free(k);
    return err ? cli_report(err) : CLI_OK;
}

/* ---- keys --------------------------------------------------------------------------------- */

const char cmd_keys_help[] =
    "usage: llmos keys new PREFIX [--encrypt]\n"
    "       llmos keys trust FILE.pub --publisher NAME [--kinds LIST]\n"
    "       llmos keys list\n"
    "       llmos keys revoke KEYID [REASON...]\n\n"
    "Signing keys and the trust policy ($LLMOS_HOME/apps/trust, docs/supply-chain.md).\n\n"
    "  new      make a key pair in minisign's format: PREFIX.key (secret, mode 0600;\n"
    "           encrypted with scrypt under LLMOS_SIGN_PASSPHRASE with --encrypt) and\n"
    "           PREFIX.pub (public); minisign uses either\n"
    "  trust    trust the publisher NAME's public key (a minisign .pub file) for apps\n"
    "           of the kinds in LIST (model,tool,mcp,prompts,specialist; default all)\n"
    "  list     the trusted keys, what each may sign, and the revoked key ids\n"
    "  revoke   never accept KEYID again (16 hex digits, as list shows it): every app\n"
    "           it signed is refused from the next load on\n";

static llmos_err append_rule(apps_store *st, const char *rule)
{
    /* the rule alone must parse before it joins the policy */
    apps_policy *p = NULL;
    llmos_err err = apps_policy_parse(rule, strlen(rule), &p);
    apps_policy_free(p);
    if (err)
        return err;
    char path[4400];
    snprintf(path, sizeof path, "%s/trust", apps_store_dir(st));
    llmos_buf b = {0};
    err = llmos_file_read_all(path, 1 << 20, &b);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        err = buf_puts(&b, "# llmos trust policy (docs/supply-chain.md): trust, revoke, "
                           "allow-unsigned, local-files\n");
    }
    if (!err && b.len && b.data[b.len - 1] != '\n')
        err = buf_putc(&b, '\n');
    if (!err)
        err = buf_printf(&b, "%s\n", rule);
    if (!err)
        err = llmos_file_write_atomic(path, b.data, b.len, 0600);
    buf_free(&b);
    if (!err)
        err = apps_store_reload_policy(st);
    return err;
}

static int keys_list(apps_store *st)
{
    const apps_policy *p = apps_store_policy(st);
    if (!p->n_keys)
        printf("No publisher is trusted yet: llmos keys trust FILE.pub --publisher NAME.\n");
    for (size_t i = 0; i < p->n_keys; i++) {
        char id[APPS_KEYID_HEX], kinds[128] = "";
        apps_keyid_hex(p->keys[i].key.id, id);
        for (int k = 0; k < APPS_KIND_COUNT_; k++)
            if (p->keys[i].kinds & 1u << k)
                snprintf(kinds + strlen(kinds), sizeof kinds - strlen(kinds), "%s%s",
                         kinds[0] ? "," : "", apps_kind_name((apps_kind)k));
        printf("trusted  %-20s key %s  kinds %s%s\n", p->keys[i].publisher, id, kinds,
               apps_policy_revoked(p, p->keys[i].key.id) ? "  (REVOKED)" : "");
    }
    for (size_t i = 0; i < p->n_revoked; i++) {
        char id[APPS_KEYID_HEX];
        apps_keyid_hex(p->revoked[i], id);
        printf("revoked  key %s\n", id);
    }
    if (p->unsigned_kinds)
        printf("unsigned apps allowed for some kinds (allow-unsigned in the policy)\n");
    if (p->local_files_refused)
        printf("local files: refused unless --allow-unsigned\n");
    return CLI_OK;
}

int cmd_keys(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("keys", "give new, trust, list or revoke");
    const char *sub = argv[1];
    if (strcmp(sub, "new") == 0) {
        if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "--encrypt") != 0))
            return cli_usage_error("keys", "usage: llmos keys new PREFIX [--encrypt]");
        const char *pass = argc == 4 ? sign_passphrase() : NULL;
        if (argc == 4 && !pass)
            return cli_usage_error("keys", "--encrypt takes the passphrase from "
                                           "LLMOS_SIGN_PASSPHRASE, which is not set");
        char sec[4200], pub[4200];
        snprintf(sec, sizeof sec, "%s.key", argv[2]);
        snprintf(pub, sizeof pub, "%s.pub", argv[2]);
        apps_pubkey pk;
        llmos_err err = apps_key_generate(sec, pub, pass, &pk);
        if (err)
            return cli_report(err);
        char id[APPS_KEYID_HEX];
        apps_keyid_hex(pk.id, id);
        printf("key %s: secret %s (keep it), public %s (give it out)\n", id, sec, pub);
        return CLI_OK;
    }
    apps_store *st = NULL;
    llmos_err err = open_store(&st);
    if (err)
        return cli_report(err);
    int rc = CLI_OK;
    if (strcmp(sub, "list") == 0 && argc == 2) {
        rc = keys_list(st);
    } else if (strcmp(sub, "trust") == 0 && argc >= 3) {
        const char *file = argv[2], *publisher = NULL, *kinds = NULL;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--publisher") == 0 && i + 1 < argc)
                publisher = argv[++i];
            else if (strcmp(argv[i], "--kinds") == 0 && i + 1 < argc)
                kinds = argv[++i];
            else
                rc = cli_usage_error("keys", "unknown argument '%s'", argv[i]);
        }
        if (!rc && !publisher)
            rc = cli_usage_error("keys", "trust needs --publisher NAME");
        llmos_buf text = {0}, b64 = {0};
        apps_pubkey pk;
        if (!rc && !(err = llmos_file_read_all(file, 4096, &text)) &&
            !(err = apps_pubkey_parse(text.data, text.len, &pk)) &&
            !(err = apps_pubkey_base64(&pk, &b64))) {
            char rule[512], id[APPS_KEYID_HEX];
            snprintf(rule, sizeof rule, "trust %s %s%s%s", publisher, b64.data, kinds ? " " : "",
                     kinds ? kinds : "");
            apps_keyid_hex(pk.id, id);
            if (!(err = append_rule(st, rule)))
                printf("trusted %s's key %s for %s\n", publisher, id, kinds ? kinds : "all kinds");
        }
        buf_free(&text);
        buf_free(&b64);
    } else if (strcmp(sub, "revoke") == 0 && argc >= 3) {
        llmos_buf rule = {0};
        err = buf_printf(&rule, "revoke %s", argv[2]);
        for (int i = 3; !err && i < argc; i++)
            err = buf_printf(&rule, " %s", argv[i]);
        if (!err && strpbrk(rule.data, "\n#"))
            err = llmos_fail(LLMOS_ERR_INVALID, "a reason is one line without '#'");
        if (!err && !(err = append_rule(st, rule.data)))
            printf("revoked key %s: nothing it signed loads any more\n", argv[2]);
        buf_free(&rule);
    } else {
        rc = cli_usage_error("keys", "give new, trust, list or revoke (see llmos help keys)");
    }
    apps_store_free(st);
    if (!rc && err)
        rc = cli_report(err);
    return rc;
}

/* ---- publish ------------------------------------------------------------------------------ */

const char cmd_publish_help[] =
    "usage: llmos publish REGISTRY_DIR --key SECKEY --name NAME --version V\n"
    "                     --publisher P [--kind KIND] [--caps LIST] [--description TEXT]\n"
    "                     [--source URI] [--source-rev REV] [--builder URI] [--system TEXT]\n"
    "                     FILE[=PATH]...\n\n"
    "Add an app to the registry folder REGISTRY_DIR (created when missing): each FILE\n"
    "is copied to blobs/sha256/<its SHA-256>, a manifest listing them (as PATH in the\n"
    "app, default the file's name) with a provenance statement (in-toto, SLSA\n"
    "provenance: --source, --source-rev, --builder) is written in canonical JSON and\n"
    "signed with SECKEY (minisign's format), and the app's latest tag moves to V when V\n"
    "is the newest. Serve the folder with llmos registry serve, or any web server.\n\n"
    "  --kind KIND   model (default), tool, mcp, prompts or specialist\n"
    "  --caps LIST   capabilities the app needs, comma-separated (default compute)\n"
    "  --system TEXT a specialist's system prompt\n";

int cmd_publish(int argc, char **argv)
{
    apps_manifest_params mp = {.kind = APPS_KIND_MODEL};
    const char *dir = NULL, *key = NULL, *caps_arg = "compute", *kind = NULL, *system = NULL;
    const char *paths[APPS_MAX_FILES], *names[APPS_MAX_FILES];
    char *owned[APPS_MAX_FILES];
    size_t n = 0;
    int rc = CLI_OK;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = strcmp(a, "--key") == 0           ? &key
                            : strcmp(a, "--name") == 0        ? &mp.name
                            : strcmp(a, "--version") == 0     ? &mp.version
                            : strcmp(a, "--publisher") == 0   ? &mp.publisher
                            : strcmp(a, "--kind") == 0        ? &kind
                            : strcmp(a, "--caps") == 0        ? &caps_arg
                            : strcmp(a, "--description") == 0 ? &mp.description
                            : strcmp(a, "--source") == 0      ? &mp.source
                            : strcmp(a, "--source-rev") == 0  ? &mp.source_sha
                            : strcmp(a, "--builder") == 0     ? &mp.builder
                            : strcmp(a, "--system") == 0      ? &system
                                                              : NULL;
        if (slot) {
            if (!v)
                rc = cli_usage_error("publish", "%s needs a value", a);
            else
                *slot = v;
            i++;
        } else if (a[0] == '-') {
            rc = cli_usage_error("publish", "unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else if (n == APPS_MAX_FILES) {
            rc = cli_usage_error("publish", "at most %d files", APPS_MAX_FILES);
        } else {
            owned[n] = strdup(a);
            if (!owned[n])
                return cli_report(LLMOS_ERR_NOMEM);
            char *eq = strchr(owned[n], '=');
            if (eq)
                *eq = '\0';
            const char *base = strrchr(owned[n], '/');
            paths[n] = owned[n];
            names[n] = eq ? eq + 1 : base ? base + 1 : owned[n];
            n++;
        }
    }
    if (!rc && (!dir || !key || !mp.name || !mp.version || !mp.publisher || !n))
        rc = cli_usage_error("publish", "needs REGISTRY_DIR, --key, --name, --version, "
                                        "--publisher and at least one FILE");
    if (!rc && kind && !apps_kind_parse(kind, &mp.kind))
        rc = cli_usage_error("publish", "--kind is model, tool, mcp, prompts or specialist");
    char capbuf[512];
    const char *caps[32];
    snprintf(capbuf, sizeof capbuf, "%s", caps_arg);
    for (char *save = NULL, *t = strtok_r(capbuf, ",", &save); t && mp.n_caps < 32;
         t = strtok_r(NULL, ",", &save))
        caps[mp.n_caps++] = t;
    mp.caps = caps;
    if (system) /* a specialist's system prompt: the manifest's app object */
        mp.extra = json_pack("{s:s}", "system_prompt", system);
    llmos_err err = LLMOS_OK;
    if (!rc) {
        apps_seckey *k = NULL;
        llmos_buf man = {0};
        err = llmos_file_mkdirs(dir, 0755);
        if (!err)
            err = apps_seckey_load(key, sign_passphrase(), &k);
        if (!err)
            err = apps_publish(dir, &mp, paths, names, n, k, &man);
        if (!err) {
            apps_pubkey pk;
            char id[APPS_KEYID_HEX];
            apps_seckey_public(k, &pk);
            apps_keyid_hex(pk.id, id);
            printf("published %s %s to %s (%zu file(s), signed with key %s)\n", mp.name, mp.version,
                   dir, n, id);
        }
        apps_seckey_free(k);
        buf_free(&man);
    }
    for (size_t i = 0; i < n; i++)
        free(owned[i]);
    json_decref(mp.extra);
    if (!rc && err)
        rc = cli_report(err);
    return rc;
}

/* ---- registry serve ----------------------------------------------------------------------- */

const char cmd_registry_help[] =
    "usage: llmos registry serve DIR [--host H] [--port P]\n\n"
    "Serve the registry folder DIR (as llmos publish writes it) over HTTP, read-only:\n"
    "GET and HEAD of its files, with byte ranges so that pulls resume. Serves until\n"
    "Ctrl-C. A registry needs no trust: every client checks signatures and digests.\n\n"
    "  --host H   address to listen on (default 127.0.0.1, this machine only)\n"
    "  --port P   port (default 8700; 0 = any free port, printed at start)\n";

int cmd_registry(int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "serve") != 0)
        return cli_usage_error("registry", "usage: llmos registry serve DIR [--host H] [--port P]");
    const char *dir = argv[2], *host = "127.0.0.1";
    unsigned long port = 8700;
    for (int i = 3; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = strtoul(argv[++i], &end, 10);
            if (*end || port > 65535)
                return cli_usage_error("registry", "--port takes 0..65535");
        } else {
            return cli_usage_error("registry", "unknown argument '%s'", argv[i]);
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the server's threads start */
    apps_registry_server *s = NULL;
    uint16_t bound = 0;
    llmos_err err = apps_registry_serve(dir, host, (uint16_t)port, &s, &bound);
    if (err)
        return cli_report(err);
    printf("llmos registry: serving %s at http://%s:%u/ (Ctrl-C stops)\n", dir, host,
           (unsigned)bound);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    apps_registry_stop(s);
    fprintf(stderr, "llmos registry: stopped\n");
    return CLI_OK;
}

/* ---- run ---------------------------------------------------------------------------------- */

const char cmd_run_help[] =
    "usage: llmos run NAME[:TAG] [PROMPT...]\n\n"
    "Chat with an app from the store (verified first: signature, trust policy, every\n"
    "file's SHA-256). With PROMPT, answer it once and exit; without, start the shell.\n"
    "The same as llmos shell --model NAME; other shell options go before NAME.\n";

int cmd_run(int argc, char **argv)
{
    int first = 1;
    while (first < argc && argv[first][0] == '-') /* shell options, passed through */
        first += strcmp(argv[first], "--no-store") == 0 ? 1 : 2;
    if (first >= argc)
        return cli_usage_error("run", "which app? give NAME[:TAG]");
    char **av = calloc((size_t)argc + 3, sizeof *av);
    if (!av)
        return cli_report(LLMOS_ERR_NOMEM);
    int k = 0;
    av[k++] = "shell";
    for (int i = 1; i < first; i++)
        av[k++] = argv[i];
    av[k++] = "--model";
    av[k++] = argv[first];
    if (first + 1 < argc)
        av[k++] = "--";
    for (int i = first + 1; i < argc; i++)
        av[k++] = argv[i];
    int rc = cmd_shell(k, av);
    free(av);
    return rc;
}

/* ---- delegate ----------------------------------------------------------------------------- */

const char cmd_delegate_help[] =
    "usage: llmos delegate APP[:TAG] [TASK...]\n\n"
    "Run the installed specialist APP on TASK (else the task read from standard input)\n"
    "and print its answer: what the delegate(app, task) system call runs, as a process\n"
    "of its own, for the shell's model (which passes the task on standard input). APP is verified "
    "first (signature, trust policy, every\n"
    "file's SHA-256) and must be of kind specialist; it runs on a store in memory only\n"
    "(none of your memory), with its manifest's system prompt, and its processes get\n"
    "only the capabilities its manifest asks for that your trust policy grants it\n"
    "('grant APP CAP,CAP' in $LLMOS_HOME/apps/trust), and compute.\n";

int cmd_delegate(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-')
        return cli_usage_error("delegate", "give APP[:TAG], then the task (or it on standard "
                                           "input)");
    apps_store *st = NULL;
    char n[APPS_NAME_MAX + 1], v[64];
    apps_manifest *m = NULL;
    apps_verdict vd;
    llmos_err err = open_store(&st);
    if (!err)
        err = resolve(st, argv[1], n, sizeof n, v, sizeof v);
    if (!err)
        err = apps_store_verify(st, n, v, true, cli_allow_unsigned, &m, &vd);
    if (!err && m->kind != APPS_KIND_SPECIALIST)
        err = llmos_fail(LLMOS_ERR_INVALID, "%s is a %s, not a specialist", n,
                         apps_kind_name(m->kind));
    const char *gguf = NULL;
    for (size_t i = 0; !err && m && i < m->n_files && !gguf; i++) {
        size_t l = strlen(m->files[i].path);
        if (l > 5 && strcmp(m->files[i].path + l - 5, ".gguf") == 0)
            gguf = m->files[i].sha256;
    }
    if (!err && !gguf)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "%s has no .gguf model file", n);
    char label[160], caps_text[300] = "compute", granted[256], path[4400];
    snprintf(label, sizeof label, "%s %s", n, v);
    if (!err) {
        apps_policy_granted(apps_store_policy(st), m, granted, sizeof granted);
        if (granted[0] && strcmp(granted, "compute") != 0)
            snprintf(caps_text, sizeof caps_text, "compute,%s", granted);
        apps_store_blob_path(st, gguf, path, sizeof path);
    }
    uint32_t caps = 0;
    if (!err && (err = kcap_parse(caps_text, &caps)))
        llmos_fail_context(err, "%s: capabilities %s: ", label, caps_text);
    apps_store_log(st, "delegate", label, &vd, err ? llmos_errmsg() : "verified");
    llmos_buf task = {0};
    char chunk[4096];
    size_t got;
    for (int i = 2; !err && i < argc; i++)
        err = buf_printf(&task, "%s%s", i > 2 ? " " : "", argv[i]);
    while (!err && argc == 2 && (got = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (task.len + got > (64u << 10))
            err = llmos_fail(LLMOS_ERR_LIMIT, "the task is longer than 64 KiB");
        else
            err = buf_append(&task, chunk, got);
    if (!err && !task.len)
        err = llmos_fail(LLMOS_ERR_INVALID, "no task on standard input");
    const json_t *app = json_object_get(m ? m->json : NULL, "app");
    cli_boot_params bp = {.device = "delegate",
                          .ephemeral = true,
                          .embed = MEMORY_EMBED_NONE,
                          .system_prompt = ljson_get_string(app, "system_prompt", NULL),
                          .max_tokens = (int32_t)ljson_get_int(app, "max_tokens", 256),
                          .caps = caps};
    local_backend_params lp = local_backend_default_params();
    if (!err)
        err = local_backend_open(path, &lp, &bp.privileged);
    if (!err)
        err = local_backend_fork(bp.privileged, &bp.quarantined);
    if (!err)
        fprintf(stderr, "llmos delegate: %s verified (%s); capabilities %s\n", label,
                vd.signed_by_trusted ? vd.publisher : "unsigned", caps_text);
    cli_boot b = {0};
    bool booted = false;
    if (!err) {
        err = cli_boot_open(&bp, &b); /* owns the backends from here on, also on failure */
        booted = !err;
        bp.privileged = bp.quarantined = NULL;
    }
    int64_t pid = 0;
    char *answer = NULL;
    kproc_state final;
    if (!err)
        err = ksession_spawn(b.s, 0, &pid);
    if (!err)
        err = ksession_send(b.s, pid, task.data, NULL, NULL, NULL, &final);
    if (!err)
        err = ksession_answer(b.s, pid, &answer);
    if (!err)
        printf("%s\n", answer);
    free(answer);
    if (booted)
        cli_boot_close(&b);
    llm_backend_free(bp.quarantined);
    llm_backend_free(bp.privileged);
    buf_free(&task);
    apps_manifest_free(m);
    apps_store_free(st);
    return err ? cli_report(err) : CLI_OK;
}
