/*
 * sandbox_tool.c - a run of python3 or sh for a tool call (tools/sandbox_tool.h): the calling
 * process's workspace, the sandbox (llmos/sandbox.h), the report the tool returns and the
 * audit record.
 *
 * What a run wrote is found by comparing the workspace before and after (size, modification
 * time and inode of each regular file, found without following symbolic links, at most
 * WS_MAX_ENTRIES entries WS_MAX_DEPTH levels deep): the report names each new or changed file
 * with its size. The report is the tool's output, which the kernel quarantines (the tools are
 * not trusted): stdout and stderr are whatever the program printed.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "llmos/sandbox.h"
#include "tools/sandbox_tool.h"

#define WS_MAX_ENTRIES 4096
#define WS_MAX_DEPTH   16
#define WS_MAX_REPORT  50 /* files named in a report */

typedef struct ws_entry {
    char *path; /* relative to the workspace */
    long long size, mtime_ns;
    unsigned long long ino;
} ws_entry;

typedef struct ws_snapshot {
    ws_entry *e;
    size_t n, cap;
    bool partial; /* stopped at WS_MAX_ENTRIES or WS_MAX_DEPTH */
} ws_snapshot;

static void ws_free(ws_snapshot *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->e[i].path);
    free(s->e);
    memset(s, 0, sizeof *s);
}

/* Add the regular files under directory fd (its path `rel`) to s; fd is closed. */
static void ws_walk(int fd, const char *rel, int depth, ws_snapshot *s)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (s->n >= WS_MAX_ENTRIES) {
            s->partial = true;
            break;
        }
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >=
            (int)sizeof path)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth >= WS_MAX_DEPTH) {
                s->partial = true;
                continue;
            }
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                ws_walk(sub, path, depth + 1, s);
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 64;
            ws_entry *e = realloc(s->e, cap * sizeof *e);
            if (!e)
                break;
            s->e = e;
            s->cap = cap;
        }
        char *p = strdup(path);
        if (!p)
            break;
        s->e[s->n++] =
            (ws_entry){.path = p,
                       .size = (long long)st.st_size,
                       .mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
                       .ino = (unsigned long long)st.st_ino};
    }
    closedir(d);
}

static void ws_take(const char *dir, ws_snapshot *s)
{
    memset(s, 0, sizeof *s);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        ws_walk(fd, "", 0, s);
}

static const ws_entry *ws_find(const ws_snapshot *s, const char *path)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->e[i].path, path) == 0)
            return &s->e[i];
    return NULL;
}

llmos_err sandbox_tool_workspace(const ktool_env *env, char *out, size_t size)
{
    llmos_err err = ktool_workspace(env, out, size);
    if (err)
        return err;
    /* the sandbox's user must be able to write there (nobody's, when llmos is root) */
    uid_t u;
    gid_t g;
    sandbox_owner(&u, &g);
    struct stat st;
    if (lstat(out, &st) != 0 || !S_ISDIR(st.st_mode))
        return llmos_fail(LLMOS_ERR_IO, "workspace: %s is not a directory", out);
    if ((st.st_uid != u || st.st_gid != g) && chown(out, u, g) != 0)
        return llmos_fail(LLMOS_ERR_IO, "workspace: cannot give %s to uid %u: %s", out, (unsigned)u,
                          strerror(errno));
    return LLMOS_OK;
}

/* "SIGSYS (a system call the sandbox forbids)" and the like. */
static const char *signal_text(int sig, char *buf, size_t size)
{
    const char *why = sig == SIGSYS    ? " (a system call the sandbox forbids)"
                      : sig == SIGXCPU ? " (its CPU time limit)"
                      : sig == SIGXFSZ ? " (its file size limit)"
                      : sig == SIGKILL ? " (killed)"
                      : sig == SIGSEGV ? " (a memory fault, or its memory limit)"
                                       : "";
    const char *abbrev = sigabbrev_np(sig);
    snprintf(buf, size, "SIG%s%s", abbrev ? abbrev : "?", why);
    return buf;
}

llmos_err sandbox_tool_run(const ktool_env *env, const char *tool, const char *const *argv,
                           const char *stdin_data, double timeout_s)
{
    assert(env && env->out && tool && argv);
    llmos_err err = sandbox_probe();
    if (err)
        return err;
    char ws[4096];
    if ((err = sandbox_tool_workspace(env, ws, sizeof ws)))
        return err;
    if (timeout_s <= 0)
        timeout_s = SANDBOX_TOOL_TIMEOUT;
    if (timeout_s > SANDBOX_TOOL_MAX_TIMEOUT)
        timeout_s = SANDBOX_TOOL_MAX_TIMEOUT;
    ws_snapshot before, after;
    ws_take(ws, &before);
    sandbox_spec spec = {.argv = argv,
                         .stdin_data = stdin_data,
                         .stdin_len = stdin_data ? strlen(stdin_data) : 0,
                         .workspace = ws,
                         .limits = {.wall_s = timeout_s, .cpu_s = (int)timeout_s + 1}};
    sandbox_result r;
    err = sandbox_exec(&spec, &r);
    if (err) {
        ws_free(&before);
        sandbox_result_free(&r);
        return err;
    }
    ws_take(ws, &after);

    llmos_buf *o = env->out;
    char sigbuf[96];
    bool bad = false;
    if (r.timed_out)
        bad |= buf_printf(o, "timed out after %g s: killed with everything it started\n",
                          timeout_s) != LLMOS_OK;
    else if (r.signal)
        bad |= buf_printf(o, "killed by %s\n", signal_text(r.signal, sigbuf, sizeof sigbuf)) !=
               LLMOS_OK;
    else
        bad |= buf_printf(o, "exit status %d\n", r.exit_code) != LLMOS_OK;
    bad |= buf_printf(o, "--- stdout%s ---\n", r.out_truncated ? " (cut at the limit)" : "") !=
           LLMOS_OK;
    bad |= buf_append(o, r.out.data ? r.out.data : "", r.out.len) != LLMOS_OK;
    if (r.out.data && r.out.len && r.out.data[r.out.len - 1] != '\n')
        bad |= buf_putc(o, '\n') != LLMOS_OK;
    bad |= buf_printf(o, "--- stderr%s ---\n", r.err_truncated ? " (cut at the limit)" : "") !=
           LLMOS_OK;
    bad |= buf_append(o, r.err.data ? r.err.data : "", r.err.len) != LLMOS_OK;
    if (r.err.data && r.err.len && r.err.data[r.err.len - 1] != '\n')
        bad |= buf_putc(o, '\n') != LLMOS_OK;
    size_t written = 0;
    for (size_t i = 0; i < after.n; i++) {
        const ws_entry *e = &after.e[i], *b = ws_find(&before, e->path);
        if (b && b->size == e->size && b->mtime_ns == e->mtime_ns && b->ino == e->ino)
            continue;
        if (written++ == 0)
            bad |= buf_puts(o, "--- files written in the workspace ---\n") != LLMOS_OK;
        if (written <= WS_MAX_REPORT)
            bad |= buf_printf(o, "%s (%lld bytes)\n", e->path, e->size) != LLMOS_OK;
    }
    if (written > WS_MAX_REPORT)
        bad |= buf_printf(o, "... and %zu more\n", written - WS_MAX_REPORT) != LLMOS_OK;
    if (after.partial)
        bad |= buf_printf(o,
                          "(the workspace has more than %d entries or %d levels; only those "
                          "were looked at)\n",
                          WS_MAX_ENTRIES, WS_MAX_DEPTH) != LLMOS_OK;

    /* the audit: what ran and how it ended, not what it printed */
    json_t *rec =
        json_pack("{s:s, s:i, s:i, s:b, s:f, s:I, s:I, s:I, s:s}", "tool", tool, "exit",
                  r.exit_code, "signal", r.signal, "timed_out", r.timed_out, "wall_s", r.wall_s,
                  "stdout_bytes", (json_int_t)r.out.len, "stderr_bytes", (json_int_t)r.err.len,
                  "files_written", (json_int_t)written, "confinement", r.notes);
    llmos_err aerr = ktool_audit(env, "sandbox", rec);
    ws_free(&before);
    ws_free(&after);
    sandbox_result_free(&r);
    if (bad)
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return aerr;
}
