/*
 * delegate.c - the delegate(app, task) system call: the orchestrator hands a task to an
 * installed specialist (llmos/apps.h, apps_delegate_tool; docs/supply-chain.md, "Specialists").
 *
 * A specialist is an app of kind "specialist": a model, its system prompt (the manifest's
 * app.system_prompt) and the capabilities it asks for. Each call runs it as its own operating
 * system process (`llmos delegate APP`, the program given at setup), never inside the caller:
 * that process verifies the app again (signature, trust policy, every file's SHA-256), boots a
 * kernel of its own on a store in memory only (it sees none of the user's memory), gives its
 * processes only the capabilities its manifest asks for that the trust policy grants it
 * (`grant APP CAPS`; compute always), runs the task as one turn and prints the answer.
 *
 * The task goes to the child on its standard input (a command line is visible to every user
 * of the machine); the answer comes back on its standard output, at most 64 KiB, within
 * DELEGATE_TIMEOUT_S. The answer is another model's words about a task: the tool's output is
 * untrusted, so the orchestrator sees it only as a handle.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "llmos/apps.h"
#include "llmos/json.h"
#include "llmos/kernel.h"

#define DELEGATE_TIMEOUT_S  300
#define DELEGATE_MAX_ANSWER (64u << 10)
#define DELEGATE_MAX_APPS   32

static struct {
    char program[4096];
    char description[4096];
    char parameters[4096];
    ktool tool;
} D;

/* Run program "delegate" app, task on stdin; stdout to out, the last of stderr to err. */
static llmos_err run_child(const char *app, const char *task, llmos_buf *out, llmos_buf *err)
{
    int in[2], o[2], e[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC))
        return llmos_fail(LLMOS_ERR_IO, "delegate: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        return llmos_fail(LLMOS_ERR_IO, "delegate: fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(o[1], 1);
        dup2(e[1], 2);
        execl(D.program, "llmos", "delegate", app, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    close(e[1]);
    /* a child that exits before reading must not kill us with SIGPIPE: blocked on this thread
     * for the write, and a pending one taken away, so that nothing else changes */
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    size_t tl = strlen(task);
    bool wrote = write(in[1], task, tl) == (ssize_t)tl;
    close(in[1]);
    if (!wrote && errno == EPIPE)
        sigtimedwait(&pipe_set, NULL, &(struct timespec){0, 0});
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    double deadline = llmos_time_now() + DELEGATE_TIMEOUT_S;
    struct pollfd pf[2] = {{.fd = o[0], .events = POLLIN}, {.fd = e[0], .events = POLLIN}};
    llmos_err rc = LLMOS_OK;
    char chunk[4096];
    while ((pf[0].fd >= 0 || pf[1].fd >= 0) && !rc) {
        double left = deadline - llmos_time_now();
        if (left <= 0) {
            rc = llmos_fail(LLMOS_ERR_LIMIT, "delegate: %s took more than %d s; stopped", app,
                            DELEGATE_TIMEOUT_S);
            break;
        }
        if (poll(pf, 2, (int)(left * 1000) + 1) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(pf[i].fd, chunk, sizeof chunk);
            if (r <= 0) {
                close(pf[i].fd);
                pf[i].fd = -1;
                continue;
            }
            llmos_buf *b = i == 0 ? out : err;
            if (b->len + (size_t)r > DELEGATE_MAX_ANSWER) {
                if (i == 0)
                    rc = llmos_fail(LLMOS_ERR_LIMIT, "delegate: %s answered more than %u bytes",
                                    app, DELEGATE_MAX_ANSWER);
                continue;
            }
            if (buf_append(b, chunk, (size_t)r))
                rc = LLMOS_ERR_NOMEM;
        }
    }
    for (int i = 0; i < 2; i++)
        if (pf[i].fd >= 0)
            close(pf[i].fd);
    if (rc)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!rc && (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !wrote)) {
        /* the child's last line says why (a failed check, a missing app) */
        while (err->len && err->data[err->len - 1] == '\n')
            err->data[--err->len] = '\0';
        const char *last = err->data ? strrchr(err->data, '\n') : NULL;
        rc = llmos_fail(LLMOS_ERR_DENIED, "delegate: %s failed: %s", app,
                        last        ? last + 1
                        : err->data ? err->data
                                    : "no output");
    }
    return rc;
}

static llmos_err delegate_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const char *app = ljson_get_string(env->args, "app", "");
    const char *task = ljson_get_string(env->args, "task", "");
    llmos_err err = apps_name_check(app, "app");
    if (err)
        return err;
    llmos_buf out = {0}, errtext = {0};
    err = run_child(app, task, &out, &errtext);
    if (!err && buf_append(env->out, out.data ? out.data : "", out.len))
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    buf_free(&out);
    buf_free(&errtext);
    return err;
}

typedef struct offer_ctx {
    const apps_store *st;
    json_t *names;
    llmos_buf *desc;
} offer_ctx;

static bool offer(const apps_entry *e, void *ctx)
{
    offer_ctx *oc = ctx;
    apps_manifest *m = NULL;
    apps_verdict v;
    if (apps_store_verify(oc->st, e->name, e->version, false, false, &m, &v) == LLMOS_OK &&
        m->kind == APPS_KIND_SPECIALIST && json_array_size(oc->names) < DELEGATE_MAX_APPS) {
        bool seen = false; /* one line per app, its newest version (listed first) */
        for (size_t i = 0; i < json_array_size(oc->names); i++)
            seen |= strcmp(json_string_value(json_array_get(oc->names, i)), e->name) == 0;
        if (!seen) {
            json_array_append_new(oc->names, json_string(e->name));
            if (buf_printf(oc->desc, " %s: %.200s.", e->name,
                           m->description[0] ? m->description : "(no description)"))
                llmos_err_clear();
        }
    }
    llmos_err_clear();
    apps_manifest_free(m);
    return true;
}

llmos_err apps_delegate_tool(const apps_store *st, const char *program, const ktool **out)
{
    *out = NULL;
    if (!program || strlen(program) >= sizeof D.program)
        return llmos_fail(LLMOS_ERR_INVALID, "delegate: the program path is missing or too long");
    json_t *names = json_array();
    llmos_buf desc = {0};
    llmos_err err = buf_puts(&desc, "Give a task to an installed specialist model, which runs "
                                    "apart with only the capabilities granted to it; its answer "
                                    "comes back as a handle. Specialists:");
    offer_ctx oc = {st, names, &desc};
    if (!err)
        err = apps_store_list(st, offer, &oc);
    json_t *schema = json_pack("{s:s, s:{s:{s:s, s:O}, s:{s:s}}, s:[s,s], s:b}", "type", "object",
                               "properties", "app", "type", "string", "enum", names, "task", "type",
                               "string", "required", "app", "task", "additionalProperties", 0);
    llmos_buf params = {0};
    if (!err && json_array_size(names) == 0)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no specialist is installed");
    if (!err && !schema)
        err = llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    if (!err)
        err = ljson_to_buf(schema, 0, &params);
    if (!err && (desc.len >= sizeof D.description || params.len >= sizeof D.parameters))
        err = llmos_fail(LLMOS_ERR_LIMIT, "delegate: too many specialists to describe");
    if (!err) {
        snprintf(D.program, sizeof D.program, "%s", program);
        memcpy(D.description, desc.data, desc.len + 1);
        memcpy(D.parameters, params.data, params.len + 1);
        D.tool = (ktool){.name = "delegate",
                         .description = D.description,
                         .parameters = D.parameters,
                         .capability = KCAP_COMPUTE,
                         .output_trusted = false,
                         .run = delegate_run};
        *out = &D.tool;
    }
    json_decref(schema);
    json_decref(names);
    buf_free(&desc);
    buf_free(&params);
    return err;
}
