/*
 * cmd_doctor.c - `llmos doctor`: check the installation and say what to fix.
 *
 * Each check prints one line: "ok", "warn" (works, but something is worse than it could be) or
 * "FAIL" (llmos cannot work until it is fixed), followed by what to do. The exit status is 1
 * when any check failed. A missing data directory is created (as first use would create it),
 * so that one that cannot be made is reported now rather than by the first command needing it.
 */
#include <curl/curl.h>
#include <errno.h>
#include <gmp.h>
#include <jansson.h>
#include <libxml/xmlversion.h>
#include <microhttpd.h>
#include <mpfr.h>
#include <openssl/crypto.h>
#include <seccomp.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "cli/cli.h"
#include "llmos/sandbox.h"

typedef struct doctor {
    int fails, warns;
} doctor;

static void report(doctor *d, int level, const char *what, const char *fmt, ...) LLMOS_PRINTF(4, 5);

/* level: 0 ok, 1 warn, 2 fail */
static void report(doctor *d, int level, const char *what, const char *fmt, ...)
{
    static const char *const tags[] = {"ok  ", "warn", "FAIL"};
    printf("  [%s] %-12s ", tags[level], what);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (level == 1)
        d->warns++;
    if (level == 2)
        d->fails++;
}

static void check_libraries(doctor *d)
{
    printf("libraries\n");
    if (sodium_init() < 0)
        report(d, 2, "libsodium",
               "%s: sodium_init failed (no entropy source?); "
               "check that /dev/urandom is readable",
               sodium_version_string());
    else
        report(d, 0, "libsodium", "%s", sodium_version_string());

    bool fts5 = sqlite3_compileoption_used("ENABLE_FTS5");
    if (sqlite3_libversion_number() < 3035000)
        report(d, 2, "sqlite3", "%s is older than 3.35; install Debian 12's libsqlite3-0",
               sqlite3_libversion());
    else if (!fts5)
        report(d, 2, "sqlite3",
               "%s lacks FTS5 (needed for recall search); install a build "
               "with FTS5 such as Debian's libsqlite3-0",
               sqlite3_libversion());
    else
        report(d, 0, "sqlite3", "%s with FTS5", sqlite3_libversion());

    report(d, 0, "jansson", "%s", jansson_version_str());

    char pcre_ver[64] = "";
    uint32_t unicode = 0;
    pcre2_config(PCRE2_CONFIG_VERSION, pcre_ver);
    pcre2_config(PCRE2_CONFIG_UNICODE, &unicode);
    report(d, unicode ? 0 : 2, "pcre2", "%s%s", pcre_ver,
           unicode ? " with Unicode" : " WITHOUT Unicode support; tokenizers need it");

    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    report(d, (cv->features & CURL_VERSION_SSL) ? 0 : 1, "libcurl", "%s%s", cv->version,
           (cv->features & CURL_VERSION_SSL) ? " with TLS"
                                             : " without TLS: https servers unreachable");
    report(d, 0, "microhttpd", "%s", MHD_get_version());
    report(d, 0, "libxml2", "%s", LIBXML_DOTTED_VERSION);
    const struct scmp_version *sv = seccomp_version();
    report(d, 0, "libseccomp", "%u.%u.%u", sv->major, sv->minor, sv->micro);
    report(d, 0, "openssl", "%s", OpenSSL_version(OPENSSL_VERSION));
    report(d, 0, "gmp/mpfr", "gmp %s, mpfr %s", gmp_version, mpfr_get_version());
}

/* The python and shell tools need the sandbox (user namespaces and the rest). */
static void check_sandbox(doctor *d)
{
    if (sandbox_probe() == LLMOS_OK)
        report(d, 0, "sandbox", "python3 and sh run confined (namespaces, seccomp, rlimits): "
                                "the python and shell tools can run");
    else
        report(d, 1, "sandbox", "the python and shell tools are off: %s", llmos_errmsg());
}

static void check_cpu(doctor *d)
{
    printf("cpu\n");
    const llmos_cpu *cpu = llmos_cpu_features();
    char feats[256];
    llmos_cpu_features_string(cpu, feats, sizeof feats);
    report(d, 0, "model", "%s (%d CPUs usable, %d threads by default)", cpu->brand, cpu->n_cpus,
           pool_default_threads());
    if (!cpu->avx2 || !cpu->fma)
        report(d, 1, "simd", "%s: no AVX2+FMA, inference uses the slow portable kernels", feats);
    else
        report(d, 0, "simd", "%s", feats);
}

/* The first ancestor of `path` that exists but is not a directory, in out[size]; false if none. */
static bool file_in_the_way(const char *path, char *out, size_t size)
{
    snprintf(out, size, "%s", path);
    for (char *s = out + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        struct stat st;
        if (stat(out, &st) == 0 && !S_ISDIR(st.st_mode))
            return true;
        *s = '/';
    }
    return false;
}

/* The data directory must be a directory this user can write, or one that can be made: it is
 * created here (mode 700, as on first use) so that what would stop llmos later shows now. */
static void check_home_dir(doctor *d, const char *home)
{
    struct stat st;
    bool created = false;
    if (stat(home, &st) != 0 && errno == ENOENT) {
        char target[4096];
        ssize_t n = lstat(home, &st) == 0 ? readlink(home, target, sizeof target - 1) : -1;
        if (n >= 0) {
            target[n] = '\0';
            report(d, 2, "home",
                   "%s is a symbolic link to %s, which does not exist (a disk not mounted?); "
                   "create it or set LLMOS_HOME to a directory you own",
                   home, target);
            return;
        }
        if (llmos_file_mkdirs(home, 0700) != LLMOS_OK) {
            report(d, 2, "home", "%s cannot be created (%s); set LLMOS_HOME to a directory you own",
                   home, llmos_errmsg());
            return;
        }
        created = true;
    }
    char in_way[4096];
    if (stat(home, &st) != 0) {
        if (errno == ENOTDIR && file_in_the_way(home, in_way, sizeof in_way))
            report(d, 2, "home",
                   "%s cannot be created: %s is a file, not a directory; move it away or set "
                   "LLMOS_HOME to a directory you own",
                   home, in_way);
        else
            report(d, 2, "home", "%s: %s; set LLMOS_HOME to a directory you own", home,
                   strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
        report(d, 2, "home", "%s is not a directory; move it away or set LLMOS_HOME", home);
    } else if (access(home, R_OK | W_OK | X_OK) != 0) {
        report(d, 2, "home",
               "%s is not writable by you (%s); fix its permissions or set LLMOS_HOME", home,
               strerror(errno));
    } else if (llmos_file_private_dir(home) != LLMOS_OK) {
        report(d, 2, "home", "%s", llmos_errmsg()); /* llmos refuses it: names the fix */
    } else if (st.st_mode & 077) {
        report(d, 1, "home", "%s is readable by other users (mode %03o); run: chmod 700 %s", home,
               (unsigned)(st.st_mode & 0777), home);
    } else {
        report(d, 0, "home", "%s%s", home, created ? " (created)" : "");
    }
}

static void check_home(doctor *d)
{
    printf("data\n");
    const char *home = cli_home();
    check_home_dir(d, home);

    /* free space where the data lives (or its nearest existing parent) */
    char probe[4096];
    snprintf(probe, sizeof probe, "%s", home);
    struct statvfs vfs;
    while (statvfs(probe, &vfs) != 0) {
        char *slash = strrchr(probe, '/');
        if (!slash || slash == probe) {
            snprintf(probe, sizeof probe, "/");
            if (statvfs(probe, &vfs) != 0) {
                report(d, 1, "disk", "cannot measure free space");
                return;
            }
            break;
        }
        *slash = '\0';
    }
    double free_gib = (double)vfs.f_bavail * (double)vfs.f_frsize / (1024.0 * 1024 * 1024);
    if (free_gib < 1.0)
        report(d, 2, "disk", "%.2f GiB free at %s; models need several GiB: free some space",
               free_gib, probe);
    else if (free_gib < 10.0)
        report(d, 1, "disk", "%.1f GiB free at %s; enough for small models only", free_gib, probe);
    else
        report(d, 0, "disk", "%.1f GiB free at %s", free_gib, probe);
}

int cmd_doctor(int argc, char **argv)
{
    if (argc > 1)
        return cli_usage_error("doctor", "takes no arguments (got '%s')", argv[1]);
    doctor d = {0};
    check_libraries(&d);
    check_sandbox(&d);
    check_cpu(&d);
    check_home(&d);
    if (d.fails)
        printf("%d problem(s) must be fixed, %d warning(s).\n", d.fails, d.warns);
    else
        printf("llmos is ready (%d warning(s)).\n", d.warns);
    return d.fails ? CLI_FAILED : CLI_OK;
}
