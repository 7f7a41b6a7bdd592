/*
 * procs.c - what the kernel keeps in the store: its process records and the recall log.
 *
 * A process record is one JSON object in the store's settings table under
 * "kernel.proc.<pid>"; the next pid is the setting "kernel.next_pid". The store is encrypted,
 * so conversations and the quarantine's untrusted values are too, and no schema change was
 * needed. The recall log is the messages table (FTS5-indexed): each user message and answer of
 * a process, under the conversation "proc:<pid>", so that `llmos memory` and, next, the context
 * manager can search what was said long after it left the context window.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/memory.h"

#define NEXT_PID_KEY "kernel.next_pid"

static void proc_key(int64_t pid, char *out, size_t size)
{
    snprintf(out, size, "kernel.proc.%" PRId64, pid);
}

/* The next pid to hand out (1 when none was). */
static llmos_err next_pid(store *s, int64_t *next)
{
    assert(s && next);
    char *v = NULL;
    *next = 1;
    llmos_err err = store_setting_get(s, NEXT_PID_KEY, &v);
    if (err == LLMOS_ERR_NOT_FOUND) {
        llmos_err_clear();
        return LLMOS_OK;
    }
    if (err)
        return err;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end || n < 1)
        err = llmos_fail(LLMOS_ERR_FORMAT, "the setting %s is '%.40s', not a process id",
                         NEXT_PID_KEY, v);
    else
        *next = n;
    free(v);
    return err;
}

llmos_err memory_proc_new_pid(store *s, int64_t *pid)
{
    if (!s || !pid)
        return llmos_fail(LLMOS_ERR_INVALID, "memory_proc_new_pid: NULL argument");
    int64_t next;
    llmos_err err = next_pid(s, &next);
    if (err)
        return err;
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, next + 1);
    err = store_setting_set(s, NEXT_PID_KEY, buf);
    if (!err)
        *pid = next;
    return err;
}

llmos_err memory_proc_last_pid(store *s, int64_t *pid)
{
    int64_t next;
    llmos_err err = next_pid(s, &next);
    if (!err)
        *pid = next - 1;
    return err;
}

llmos_err memory_proc_save(store *s, int64_t pid, const json_t *record)
{
    assert(s && pid > 0 && json_is_object(record));
    llmos_buf b = {0};
    llmos_err err = ljson_to_buf(record, JSON_COMPACT, &b);
    if (!err) {
        char key[48];
        proc_key(pid, key, sizeof key);
        err = store_setting_set(s, key, b.data);
    }
    buf_free(&b);
    return err;
}

llmos_err memory_proc_load(store *s, int64_t pid, json_t **record)
{
    assert(s && record);
    *record = NULL;
    char key[48];
    proc_key(pid, key, sizeof key);
    char *v = NULL;
    llmos_err err = store_setting_get(s, key, &v);
    if (err == LLMOS_ERR_NOT_FOUND)
        return llmos_fail(err, "no process %" PRId64 "; 'llmos ps' lists them", pid);
    if (err)
        return err;
    err = ljson_parse_text(v, strlen(v), key, 0, record);
    free(v);
    if (!err && !json_is_object(*record)) {
        json_decref(*record);
        *record = NULL;
        err = llmos_fail(LLMOS_ERR_FORMAT, "%s: expected a JSON object", key);
    }
    return err;
}

llmos_err memory_recall_add(store *s, const char *principal, int64_t pid, const char *role,
                            const char *content)
{
    assert(s && principal && pid >= 0 && role && content);
    char conv[48];
    snprintf(conv, sizeof conv, "proc:%" PRId64, pid);
    return store_message_add(s, principal, conv, role, content, 0, NULL);
}
