/*
 * error.c - the llmos_err codes and the per-thread detail message.
 *
 * A code says what kind of failure happened; the detail message says what exactly, where, and
 * what to do about it. The message lives in thread-local storage so that concurrent requests
 * do not overwrite each other's errors and so that no allocation is needed on error paths.
 */
#include <stdio.h>
#include <string.h>

#include "llmos/base.h"

#define ERRMSG_MAX 1024

static _Thread_local char errmsg[ERRMSG_MAX];
static _Thread_local llmos_err errcode;

static const char *const names[LLMOS_ERR_COUNT_] = {
    [LLMOS_OK] = "success",
    [LLMOS_ERR_NOMEM] = "out of memory",
    [LLMOS_ERR_INVALID] = "invalid argument",
    [LLMOS_ERR_FORMAT] = "malformed input",
    [LLMOS_ERR_IO] = "input/output error",
    [LLMOS_ERR_NOT_FOUND] = "not found",
    [LLMOS_ERR_EXISTS] = "already exists",
    [LLMOS_ERR_UNSUPPORTED] = "not supported",
    [LLMOS_ERR_LIMIT] = "limit exceeded",
    [LLMOS_ERR_CRYPTO] = "authentication failed (data tampered or corrupt)",
    [LLMOS_ERR_AUTH] = "wrong credentials",
    [LLMOS_ERR_DENIED] = "permission denied",
    [LLMOS_ERR_NETWORK] = "network error",
    [LLMOS_ERR_CANCELLED] = "cancelled",
    [LLMOS_ERR_BUSY] = "busy",
    [LLMOS_ERR_CONTEXT] = "does not fit the context window",
    [LLMOS_ERR_INTERNAL] = "internal error",
};

const char *llmos_strerror(llmos_err err)
{
    if ((unsigned)err >= LLMOS_ERR_COUNT_)
        return "unknown error";
    return names[err];
}

llmos_err llmos_fail(llmos_err err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, sizeof errmsg, fmt, ap);
    va_end(ap);
    errcode = err;
    return err;
}

llmos_err llmos_fail_context(llmos_err err, const char *fmt, ...)
{
    char prefix[ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char inner[ERRMSG_MAX];
    snprintf(inner, sizeof inner, "%s", errmsg[0] ? errmsg : llmos_strerror(err));
    size_t pl = (size_t)n < ERRMSG_MAX - 1 ? (size_t)n : ERRMSG_MAX - 1;
    size_t il = strnlen(inner, ERRMSG_MAX - 1 - pl);
    memcpy(errmsg, prefix, pl);
    memcpy(errmsg + pl, inner, il);
    errmsg[pl + il] = '\0';
    errcode = err;
    return err;
}

const char *llmos_errmsg(void)
{
    if (errmsg[0])
        return errmsg;
    return llmos_strerror(errcode);
}

void llmos_err_clear(void)
{
    errmsg[0] = '\0';
    errcode = LLMOS_OK;
}
