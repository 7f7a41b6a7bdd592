/*
 * workspace.c - services for the workspace tools (python, shell, files): each process's own
 * directory under kernel_config.workspace_dir, audit records of what a tool did, and whether
 * a tool can run on this machine at all (ktool.available).
 *
 * The layout is <workspace_dir>/<principal>/<pid>, every level mode 0700. A principal's name
 * is written byte for byte where it is a safe file name character ([A-Za-z0-9._-], no leading
 * dot) and as %XX otherwise, so that two principals never share a directory and no name leaves
 * the tree ("../x" is "%2e.%2fx").
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "kernel/kernel_internal.h"

/* principal -> a file name (see above) in out[size]; false when it does not fit. */
static bool principal_dir(const char *principal, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)principal; *c; c++) {
        bool safe = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                    (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' ||
                    (*c == '.' && c != (const unsigned char *)principal);
        if (n + 4 > size)
            return false;
        if (safe) {
            out[n++] = (char)*c;
        } else {
            out[n++] = '%';
            out[n++] = hex[*c >> 4];
            out[n++] = hex[*c & 15];
        }
    }
    out[n] = 0;
    return n > 0;
}

static llmos_err mkdir_private(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return LLMOS_OK;
        return llmos_fail(LLMOS_ERR_IO, "workspace: %s is not a directory", path);
    }
    return llmos_fail(LLMOS_ERR_IO, "workspace: cannot create %s: %s", path, strerror(errno));
}

llmos_err ktool_workspace(const ktool_env *env, char *out, size_t size)
{
    assert(env && out && size);
    ktool_host *h = env->host;
    assert(h && h->k);
    const char *root = h->k->cfg.workspace_dir;
    if (!root || !*root)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "this llmos has no workspace directory, so the python, shell and "
                          "files tools cannot run (kernel_config.workspace_dir)");
    char who[200];
    if (!principal_dir(env->principal ? env->principal : "", who, sizeof who))
        return llmos_fail(LLMOS_ERR_INVALID, "workspace: the principal's name is empty or long");
    llmos_err err = llmos_file_mkdirs(root, 0700);
    if (err)
        return err;
    if (snprintf(out, size, "%s/%s", root, who) >= (int)size)
        return llmos_fail(LLMOS_ERR_LIMIT, "workspace: the path is too long");
    if ((err = mkdir_private(out)))
        return err;
    int w = env->pid > 0 ? snprintf(out, size, "%s/%s/%" PRId64, root, who, env->pid)
                         : snprintf(out, size, "%s/%s/user", root, who);
    if (w >= (int)size)
        return llmos_fail(LLMOS_ERR_LIMIT, "workspace: the path is too long");
    return mkdir_private(out);
}

llmos_err ktool_audit(const ktool_env *env, const char *kind, json_t *payload_stolen)
{
    assert(env && kind);
    ktool_host *h = env->host;
    assert(h && h->k);
    if (payload_stolen) {
        json_object_set_new(payload_stolen, "pid", json_integer((json_int_t)env->pid));
        json_object_set_new(payload_stolen, "principal",
                            json_string(env->principal ? env->principal : ""));
    }
    return kernel_audit_rec(h->k, kind, payload_stolen);
}

bool ktool_can_run(const ktool *t)
{
    assert(t);
    if (!t->available || t->available() == LLMOS_OK)
        return true;
    llmos_err_clear();
    return false;
}
