/*
 * cli_apps.c - the one place a command turns --model ARG into a file to load (cli.h,
 * cli_resolve_model), and the progress line of downloads.
 *
 * ARG is either a name from the app store (NAME or NAME:TAG) or a path:
 *   - a name of an installed app: its manifest's signature is checked against the trust
 *     policy as it is now, then every file's SHA-256; only then is the model file's path in
 *     the store handed to the loader. A failure refuses, naming the check.
 *   - a path into the store's blobs: the app that owns that blob is verified the same way.
 *   - any other path: a local file the user chose explicitly. It loads as before (unless the
 *     trust policy says `local-files refuse` and --allow-unsigned is not given) and is
 *     recorded as unsigned.
 * Every outcome is appended to $LLMOS_HOME/apps/verify.log (when the store exists), and kept
 * for the kernel's audit log: cli_boot_open records each as a "model.verify" request once the
 * encrypted store is open (the shell, serve). Commands that open no store (generate, bench,
 * tokenize) have verify.log only.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "llmos/apps.h"

bool cli_allow_unsigned;

#define MAX_CHECKS 4
static char resolved[MAX_CHECKS][PATH_MAX + 64];
static char checks[MAX_CHECKS][512];
static size_t n_checks;

size_t cli_model_checks(const char *const **out)
{
    static const char *list[MAX_CHECKS];
    for (size_t i = 0; i < n_checks; i++)
        list[i] = checks[i];
    *out = list;
    return n_checks;
}

static bool looks_like_name(const char *arg)
{
    if (strchr(arg, '/') || strlen(arg) > APPS_NAME_MAX + 64)
        return false;
    char name[APPS_NAME_MAX + 65];
    snprintf(name, sizeof name, "%s", arg);
    char *colon = strchr(name, ':');
    if (colon)
        *colon = '\0';
    bool ok = apps_name_check(name, "name") == LLMOS_OK &&
              (!colon || strcmp(colon + 1, "latest") == 0 ||
               apps_version_check(colon + 1, "tag") == LLMOS_OK);
    llmos_err_clear();
    return ok;
}

/* Is NAME (of NAME[:TAG]) installed? Looked up without creating the store. */
static bool is_installed(const char *arg)
{
    char p[PATH_MAX];
    const char *colon = strchr(arg, ':');
    int nl = colon ? (int)(colon - arg) : (int)strlen(arg);
    snprintf(p, sizeof p, "%s/apps/manifests/%.*s", cli_home(), nl, arg);
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Verify name@version in the store and put its model file's path in out. */
static llmos_err verify_app(apps_store *st, const char *name, const char *version, const char *what,
                            char *out, size_t size, char *check, size_t check_size)
{
    apps_manifest *m = NULL;
    apps_verdict v;
    char label[160];
    snprintf(label, sizeof label, "%s %s", name, version);
    llmos_err err = apps_store_verify(st, name, version, true, cli_allow_unsigned, &m, &v);
    if (!err && m->kind != APPS_KIND_MODEL && m->kind != APPS_KIND_SPECIALIST)
        err = llmos_fail(LLMOS_ERR_INVALID, "%s is a %s, not a model", label,
                         apps_kind_name(m->kind));
    const apps_file *f = NULL;
    for (size_t i = 0; !err && i < m->n_files && !f; i++) {
        size_t l = strlen(m->files[i].path);
        if (l > 5 && strcmp(m->files[i].path + l - 5, ".gguf") == 0)
            f = &m->files[i];
    }
    if (!err && !f)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "%s has no .gguf file", label);
    if (err) {
        char msg[400];
        snprintf(msg, sizeof msg, "refused: %s", llmos_errmsg());
        apps_store_log(st, "load", label, &v, msg);
        snprintf(check, check_size, "%s %s", what, msg);
        apps_manifest_free(m);
        return llmos_fail_context(err, "%s not loaded: ", label);
    }
    apps_store_blob_path(st, f->sha256, out, size);
    if (v.signed_by_trusted)
        snprintf(check, check_size,
                 "%s: %s verified: signed by %s (key %s), %zu file(s) match their SHA-256", what,
                 label, v.publisher, v.keyid, m->n_files);
    else
        snprintf(check, check_size,
                 "%s: %s UNSIGNED, loaded with --allow-unsigned or policy; "
                 "%zu file(s) match their SHA-256",
                 what, label, m->n_files);
    apps_store_log(st, "load", label, &v, v.signed_by_trusted ? "verified" : "unsigned");
    fprintf(stderr, "llmos: %s\n", check + strlen(what) + 2);
    apps_manifest_free(m);
    return LLMOS_OK;
}

llmos_err cli_resolve_model(const char **arg)
{
    const char *a = *arg;
    if (!a || !*a)
        return LLMOS_OK;
    if (n_checks == MAX_CHECKS)
        return llmos_fail(LLMOS_ERR_LIMIT, "more models than one command loads");
    char *out = resolved[n_checks], *check = checks[n_checks];
    size_t out_size = sizeof resolved[0], check_size = sizeof checks[0];
    struct stat sb;
    bool exists = stat(a, &sb) == 0;
    bool name = looks_like_name(a) && (is_installed(a) || !exists);
    apps_store *st = NULL;
    llmos_err err = LLMOS_OK;
    if (name) {
        char n[APPS_NAME_MAX + 1], v[64];
        err = apps_store_open(cli_home(), &st);
        if (!err)
            err = apps_store_resolve(st, a, n, sizeof n, v, sizeof v);
        if (!err)
            err = verify_app(st, n, v, "model", out, out_size, check, check_size);
        apps_store_free(st);
        if (!err) {
            n_checks++;
            *arg = out;
        }
        return err;
    }
    if (!exists)
        return LLMOS_OK; /* not a name, not a file: the loader says the file is missing */
    /* a path into the store's blobs: verified as the app that owns it */
    char real[PATH_MAX], blobs[PATH_MAX + 32], home_real[PATH_MAX];
    if (realpath(a, real) && realpath(cli_home(), home_real)) {
        snprintf(blobs, sizeof blobs, "%s/apps/blobs/sha256/", home_real);
        if (strncmp(real, blobs, strlen(blobs)) == 0) {
            char n[APPS_NAME_MAX + 1], v[64];
            err = apps_store_open(cli_home(), &st);
            if (!err)
                err = apps_store_owner(st, real + strlen(blobs), n, sizeof n, v, sizeof v);
            if (!err)
                err = verify_app(st, n, v, "model", out, out_size, check, check_size);
            apps_store_free(st);
            if (!err) {
                n_checks++;
                *arg = out;
            }
            return err;
        }
    }
    /* a local file: the user's explicit choice, unless the policy refuses local files */
    char apps_dir[PATH_MAX], trust[PATH_MAX + 8];
    snprintf(apps_dir, sizeof apps_dir, "%s/apps", cli_home());
    snprintf(trust, sizeof trust, "%s/trust", apps_dir);
    apps_policy *pol = NULL;
    if ((err = apps_policy_load(trust, &pol)))
        return err;
    bool refused = pol->local_files_refused && !cli_allow_unsigned;
    apps_policy_free(pol);
    snprintf(check, check_size, "model: %s: unsigned local file%s", a,
             refused ? " refused by the trust policy (local-files refuse)" : ", the user's choice");
    if (stat(apps_dir, &sb) == 0 && apps_store_open(cli_home(), &st) == LLMOS_OK) {
        apps_store_log(st, "load", a, NULL, refused ? "refused: local-files refuse" : "unsigned");
        apps_store_free(st);
    }
    llmos_err_clear();
    if (refused)
        return llmos_fail(LLMOS_ERR_DENIED,
                          "%s: a local file that no signed manifest covers, and the trust "
                          "policy says 'local-files refuse'; give --allow-unsigned to load it "
                          "anyway, or pull a signed app by name",
                          a);
    n_checks++;
    return LLMOS_OK;
}

/* ---- progress ----------------------------------------------------------------------------- */

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

void cli_progress(const apps_progress *p, void *ctx)
{
    cli_progress_state *s = ctx;
    char done[32], total[32], rate[32];
    human(done, sizeof done, (double)p->done);
    human(total, sizeof total, (double)p->total);
    double bps = p->seconds > 0 ? (double)(p->done - s->start_done) / p->seconds : 0;
    if (!s->started) {
        s->started = true;
        s->start_done = p->done; /* resumed bytes are not part of the rate */
        bps = 0;
    }
    human(rate, sizeof rate, bps);
    int pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 100;
    if (s->tty) {
        char eta[32] = "";
        if (bps > 0 && p->total > p->done && !p->finished)
            snprintf(eta, sizeof eta, "  ETA %.0f s", (double)(p->total - p->done) / bps);
        fprintf(stderr, "\r\033[K%s  %3d%%  %s / %s  %s/s%s", p->label, pct, done, total, rate,
                eta);
        if (p->finished)
            fputc('\n', stderr);
    } else if (p->finished || pct >= s->next_pct) {
        fprintf(stderr, "%s: %d%% (%s of %s, %s/s)\n", p->label, pct, done, total, rate);
        while (s->next_pct <= pct)
            s->next_pct += 10;
    }
    fflush(stderr);
}

/* ---- a first model for a new user ---------------------------------------------------------- */

#define DEFAULT_MODEL      "qwen2.5-0.5b-instruct"
#define DEFAULT_MODEL_SIZE "about 400 MB" /* Q4_K_M; what a registry declares is shown instead */

const char *cli_registry(void)
{
    const char *r = getenv("LLMOS_REGISTRY");
    if (r && *r)
        return r;
    return LLMOS_DEFAULT_REGISTRY[0] ? LLMOS_DEFAULT_REGISTRY : NULL;
}

const char *cli_offer_default_model(void)
{
    static char name[APPS_NAME_MAX + 1];
    const char *env = getenv("LLMOS_DEFAULT_MODEL");
    snprintf(name, sizeof name, "%s", env && *env ? env : DEFAULT_MODEL);
    const char *registry = cli_registry();
    printf("\n");
    if (!registry) {
        printf("No model registry is set: set LLMOS_REGISTRY=URL and run 'llmos pull %s' "
               "(%s), or give --model FILE.gguf.\n",
               name, DEFAULT_MODEL_SIZE);
        return NULL;
    }
    apps_pull_params p = {.registry = registry, .ref = name, .connect_timeout_s = 5};
    char version[64];
    uint64_t bytes = 0;
    if (apps_registry_peek(&p, version, sizeof version, &bytes)) {
        printf("The registry %s cannot be reached (%s): give --model FILE.gguf, or set "
               "LLMOS_REGISTRY to a registry this machine reaches and run 'llmos pull %s'.\n",
               registry, llmos_errmsg(), name);
        llmos_err_clear();
        return NULL;
    }
    char size[32];
    human(size, sizeof size, (double)bytes);
    printf("The default model is %s %s (%s) from %s.\n", name, version, size, registry);
    char trust[PATH_MAX];
    snprintf(trust, sizeof trust, "%s/apps/trust", cli_home());
    apps_policy *pol = NULL;
    bool trusts_none = apps_policy_load(trust, &pol) != LLMOS_OK || pol->n_keys == 0;
    apps_policy_free(pol);
    llmos_err_clear();
    if (trusts_none) {
        printf("You trust no publisher yet: get the publisher's public key file, run 'llmos "
               "keys trust FILE.pub --publisher NAME', then 'llmos pull %s'.\n",
               name);
        return NULL;
    }
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        printf("Get it with 'llmos pull %s', then chat with 'llmos run %s'.\n", name, name);
        return NULL;
    }
    printf("Pull it now (%s; its signature is checked against your trust policy)? [y/N] ", size);
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin) || (line[0] != 'y' && line[0] != 'Y'))
        return NULL;
    char *av[] = {"pull", name, "--registry", (char *)registry, NULL};
    if (cmd_pull(4, av) != CLI_OK)
        return NULL;
    return name;
}

/* ---- specialists -------------------------------------------------------------------------- */

void cli_delegate_tool(const struct ktool **out)
{
    *out = NULL;
    char apps_dir[PATH_MAX], self[PATH_MAX];
    snprintf(apps_dir, sizeof apps_dir, "%s/apps/manifests", cli_home());
    struct stat sb;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (stat(apps_dir, &sb) != 0 || n <= 0)
        return; /* no store yet: nothing to offer */
    self[n] = '\0';
    apps_store *st = NULL;
    if (apps_store_open(cli_home(), &st) == LLMOS_OK &&
        apps_delegate_tool(st, self, out) != LLMOS_OK)
        *out = NULL;
    llmos_err_clear();
    apps_store_free(st);
}
