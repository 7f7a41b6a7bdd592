/*
 * kernel.c - the kernel object: its lock, the table of turns running in this llmos process, the
 * kill watcher, the audit helper and the services the kernel lends to tools.
 *
 * Kill. `llmos kill PID` may come from another llmos process (another terminal) or from this
 * one (the HTTP API). Either way the process is marked KILLED in the store. A kill from here
 * also raises the running turn's flag at once. One from elsewhere is noticed by the watcher: a
 * thread that runs while any turn runs and, every 50 ms, asks the store whether another
 * connection committed (PRAGMA data_version, which reads no page); when one did, it re-reads
 * the state of each running process and raises the flag of those killed. The flag is the
 * backend's cancel flag, which it checks between tokens, so generation stops within one token
 * plus 50 ms. The watcher also forwards each device's cancel flag (the shell's Ctrl-C) to the
 * backend, so that a cancel reaches a model call the device cannot see into.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel/kernel_internal.h"
#include "llmos/memory.h"

#define WATCH_PERIOD_MS 50

void kernel_lock(kernel *k)
{
    pthread_mutex_lock(&k->mu);
}

void kernel_unlock(kernel *k)
{
    pthread_mutex_unlock(&k->mu);
}

llmos_err kernel_audit_rec(kernel *k, const char *kind, json_t *payload_stolen)
{
    if (!payload_stolen)
        return llmos_fail(LLMOS_ERR_NOMEM, "audit: no memory for the record");
    kernel_lock(k);
    llmos_err err = audit_append(k->log, kind, payload_stolen);
    kernel_unlock(k);
    json_decref(payload_stolen);
    if (err)
        LOG_ERROR("kernel", "audit record '%s' could not be written: %s", kind, llmos_errmsg());
    return err;
}

/* ---- the kill watcher ------------------------------------------------------------------- */

/* One look: forward device cancels, and when the store moved, kills from elsewhere. Called
 * with the lock held. */
static void watch_once(kernel *k)
{
    for (krunning *r = k->running; r; r = r->next)
        if (r->user && atomic_load(r->user))
            atomic_store(&r->stop, true);
    int64_t v = 0;
    if (store_data_version(k->cfg.st, &v) != LLMOS_OK) {
        llmos_err_clear();
        return;
    }
    if (v == k->data_version)
        return;
    k->data_version = v;
    for (krunning *r = k->running; r; r = r->next) {
        kproc_info in;
        if (kproc_get(k, r->pid, &in) != LLMOS_OK) {
            llmos_err_clear();
            continue;
        }
        if (in.state == KPROC_KILLED) {
            atomic_store(&r->killed, true);
            atomic_store(&r->stop, true);
        }
    }
}

static void *watcher_main(void *arg)
{
    kernel *k = arg;
    kernel_lock(k);
    while (!k->watcher_stop) {
        if (k->running)
            watch_once(k);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        /* with nothing running, sleep until a turn starts */
        if (k->running)
            pthread_cond_timedwait(&k->watcher_cv, &k->mu, &ts);
        else
            pthread_cond_wait(&k->watcher_cv, &k->mu);
    }
    kernel_unlock(k);
    return NULL;
}

llmos_err kernel_running_add(kernel *k, krunning *r)
{
    assert(r->pid > 0);
    kernel_lock(k);
    llmos_err err = LLMOS_OK;
    if (!k->watcher_started) {
        if (store_data_version(k->cfg.st, &k->data_version) != LLMOS_OK)
            llmos_err_clear();
        int rc = pthread_create(&k->watcher, NULL, watcher_main, k);
        if (rc != 0)
            err = llmos_fail(LLMOS_ERR_INTERNAL, "could not start the kill watcher: %s",
                             strerror(rc));
        else
            k->watcher_started = true;
    }
    for (krunning *o = k->running; !err && o; o = o->next)
        if (o->pid == r->pid)
            err =
                llmos_fail(LLMOS_ERR_BUSY,
                           "process %" PRId64 " is answering another message; wait for it", r->pid);
    if (!err) {
        r->next = k->running;
        k->running = r;
        pthread_cond_broadcast(&k->watcher_cv);
    }
    kernel_unlock(k);
    return err;
}

void kernel_running_remove(kernel *k, krunning *r)
{
    kernel_lock(k);
    for (krunning **pp = &k->running; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    kernel_unlock(k);
}

void kernel_running_kill(kernel *k, int64_t pid)
{
    kernel_lock(k);
    for (krunning *r = k->running; r; r = r->next) {
        if (r->pid == pid) {
            atomic_store(&r->killed, true);
            atomic_store(&r->stop, true);
        }
    }
    kernel_unlock(k);
}

/* ---- services for tools ------------------------------------------------------------------- */

void ktool_deliver(const ktool_env *env, const char *recipient, const char *text)
{
    ktool_host *h = env->host;
    assert(h && h->k);
    if (h->turn) {
        kevent ev = {.kind = KEVENT_MESSAGE,
                     .pid = env->pid,
                     .name = recipient,
                     .text = text,
                     .len = strlen(text)};
        kturn_emit(h->turn, &ev);
    } else if (buf_printf(env->out, "[message to %s] %s\n", recipient, text)) {
        LOG_WARN("kernel", "a message could not be shown: out of memory");
    }
}

llmos_err ktool_ask_quarantined(const ktool_env *env, const char *handle, const char *question,
                                char *handle_out, size_t size)
{
    ktool_host *h = env->host;
    assert(h && h->k && h->p);
    kernel *k = h->k;
    if (!k->cfg.quarantined)
        return llmos_fail(LLMOS_ERR_UNSUPPORTED,
                          "no quarantined model is configured, so untrusted data cannot be "
                          "read; show the handle to the user instead");
    const atomic_bool *stop = h->turn ? &h->turn->run.stop : NULL;
    llmos_err err = ksched_acquire(
        &k->sched, &(ksched_ask){.principal = env->principal, .cancel = stop, .throttle = true});
    if (err)
        return err;
    trusted_text answer;
    llmos_err model_err = LLMOS_OK;
    err = quarantine_ask(h->p->q, k->cfg.quarantined, handle, question, 256, stop, &answer,
                         &model_err);
    ksched_release(&k->sched, env->principal, 0);
    if (err)
        return err; /* llmos's own words: a bad handle, no model, a stop */
    snprintf(handle_out, size, "%s", answer.text);
    if (model_err)
        return llmos_fail(model_err,
                          "the quarantined model failed (%s); its message is untrusted and "
                          "stored as %s",
                          llmos_strerror(model_err), answer.text);
    return LLMOS_OK;
}

/* ---- the kernel object -------------------------------------------------------------------- */

static llmos_err audit_model(kernel *k, const char *role, llm_backend *b)
{
    return kernel_audit_rec(k, "model.load",
                            json_pack("{s:s, s:s, s:s}", "role", role, "model", llm_model_name(b),
                                      "kind", b->ops->kind));
}

void kernel_free(kernel *k)
{
    if (!k)
        return;
    if (k->watcher_started) {
        kernel_lock(k);
        k->watcher_stop = true;
        pthread_cond_broadcast(&k->watcher_cv);
        kernel_unlock(k);
        pthread_join(k->watcher, NULL);
    }
    assert(!k->running);
    audit_free(k->log);
    policy_free(k->own_policy);
    kguard_free(k);
    free(k->tools);
    ksched_destroy(&k->sched);
    pthread_cond_destroy(&k->watcher_cv);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

/* An extra tool named like one of the nb built-in ones (k->tools[0..nb)) takes its place, once;
 * true if it did. */
static bool replace_builtin(kernel *k, const ktool *const *builtin, size_t nb, const ktool *x)
{
    assert(k->n_tools >= nb);
    for (size_t i = 0; i < nb; i++)
        if (k->tools[i] == builtin[i] && strcmp(builtin[i]->name, x->name) == 0) {
            k->tools[i] = x;
            return true;
        }
    return false;
}

llmos_err kernel_new(const kernel_config *cfg, kernel **out)
{
    *out = NULL;
    if (!cfg || !cfg->st)
        return llmos_fail(LLMOS_ERR_INVALID, "kernel_new needs a store");
    if (cfg->n_extra_tools && !cfg->extra_tools)
        return llmos_fail(LLMOS_ERR_INVALID, "kernel_new: n_extra_tools without extra_tools");
    kernel *k = calloc(1, sizeof *k);
    if (!k)
        return llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    k->cfg = *cfg;
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&k->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&k->watcher_cv, NULL);
    size_t slots = cfg->model_slots ? cfg->model_slots : llm_max_concurrent(cfg->privileged);
    ksched_init(&k->sched, cfg->max_queue, slots ? slots : 1);

    llmos_err err = LLMOS_OK;
    if (cfg->flow) {
        k->flow = cfg->flow;
    } else {
        err = cfg->config_dir ? policy_load(cfg->config_dir, &k->own_policy)
                              : policy_default(&k->own_policy);
        k->flow = k->own_policy;
    }
    if (!err)
        err = kguard_init(k);
    size_t nb = 0;
    const ktool *const *builtin = ktool_builtin(&nb);
    k->tools = err ? NULL : calloc(nb + cfg->n_extra_tools, sizeof *k->tools);
    if (!err && !k->tools)
        err = llmos_fail(LLMOS_ERR_NOMEM, "kernel: no memory");
    for (size_t i = 0; !err && i < nb; i++)
        k->tools[k->n_tools++] = builtin[i];
    for (size_t i = 0; !err && i < cfg->n_extra_tools; i++) {
        const ktool *x = &cfg->extra_tools[i];
        if (!x->name || !x->run || !x->parameters || !x->description)
            err = llmos_fail(LLMOS_ERR_INVALID,
                             "extra tool %zu lacks a name, description, "
                             "schema or function",
                             i);
        else if (replace_builtin(k, builtin, nb, x))
            continue;
        else if (kernel_find_tool(k, x->name))
            err = llmos_fail(LLMOS_ERR_EXISTS, "tool '%s' is registered twice", x->name);
        else
            k->tools[k->n_tools++] = x;
    }
    if (!err)
        err = audit_open(cfg->st, &k->log);
    if (!err && cfg->privileged)
        err = audit_model(k, "privileged", cfg->privileged);
    if (!err && cfg->quarantined)
        err = audit_model(k, "quarantined", cfg->quarantined);
    if (err) {
        kernel_free(k);
        return err;
    }
    *out = k;
    return LLMOS_OK;
}

const ktool *kernel_find_tool(kernel *k, const char *name)
{
    for (size_t i = 0; name && i < k->n_tools; i++)
        if (strcmp(k->tools[i]->name, name) == 0)
            return k->tools[i];
    return NULL;
}

ksched_stats kernel_sched_stats(kernel *k)
{
    ksched_stats st = {0};
    pthread_mutex_lock(&k->sched.mu);
    st.running = k->sched.running;
    st.slots = k->sched.slots;
    st.busy = st.running >= st.slots;
    st.waiting = k->sched.n_waiting;
    st.served = k->sched.served;
    st.rejected = k->sched.rejected;
    st.throttled = k->sched.throttled;
    st.tokens = k->sched.tokens;
    st.tokens_per_s = (double)ksched_minute_tokens(&k->sched) / KSCHED_WINDOW_S;
    pthread_mutex_unlock(&k->sched.mu);
    llm_stats es;
    if (k->cfg.privileged && llm_get_stats(k->cfg.privileged, &es) == LLMOS_OK) {
        st.engine = true;
        st.batch = es.last_batch;
        st.steps = es.steps;
        st.cached_tokens = es.cached_tokens;
        st.swaps_out = es.swaps_out;
        st.kv_used = es.kv_used;
        st.kv_budget = es.kv_budget;
    } else {
        llmos_err_clear();
    }
    st.model = k->cfg.privileged ? llm_model_name(k->cfg.privileged) : "";
    st.context_size = k->cfg.privileged ? llm_context_size(k->cfg.privileged) : 0;
    return st;
}
