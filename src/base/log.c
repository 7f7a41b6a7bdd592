/*
 * log.c - levelled logging to stderr with a component tag.
 *
 * The threshold comes from LLMOS_LOG on first use (default warn) and can be changed by the
 * program. Each line is formatted in one buffer and written with one call, so lines from
 * different threads do not interleave.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/base.h"

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

static atomic_int threshold = -1; /* -1: not yet read from the environment */
static llmos_log_sink sink_fn;
static void *sink_ctx;

bool llmos_log_parse_level(const char *s, llmos_log_level *out)
{
    for (int i = 0; i <= LLMOS_LOG_OFF; i++) {
        if (s && strcmp(s, level_names[i]) == 0) {
            *out = (llmos_log_level)i;
            return true;
        }
    }
    if (s && strcmp(s, "warning") == 0) {
        *out = LLMOS_LOG_WARN;
        return true;
    }
    return false;
}

llmos_log_level llmos_log_get_level(void)
{
    int t = atomic_load(&threshold);
    if (t < 0) {
        llmos_log_level lv = LLMOS_LOG_WARN;
        const char *env = getenv("LLMOS_LOG");
        if (env && *env && !llmos_log_parse_level(env, &lv))
            fprintf(stderr,
                    "llmos: LLMOS_LOG=%s is not one of debug, info, warn, error, off; "
                    "using warn\n",
                    env);
        int expected = -1;
        atomic_compare_exchange_strong(&threshold, &expected, (int)lv);
        t = atomic_load(&threshold);
    }
    return (llmos_log_level)t;
}

void llmos_log_set_level(llmos_log_level level)
{
    atomic_store(&threshold, (int)level);
}

void llmos_log_set_sink(llmos_log_sink fn, void *ctx)
{
    sink_fn = fn;
    sink_ctx = ctx;
}

void llmos_log(llmos_log_level level, const char *component, const char *fmt, ...)
{
    if (level >= LLMOS_LOG_OFF || level < llmos_log_get_level())
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (sink_fn) {
        sink_fn(level, component, msg, sink_ctx);
        return;
    }
    char line[2200];
    int n = snprintf(line, sizeof line, "llmos[%s] %s: %s\n", component ? component : "-",
                     level_names[level], msg);
    if (n > 0)
        fwrite(line, 1, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, stderr);
}
