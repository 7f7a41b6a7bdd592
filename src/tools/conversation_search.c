/*
 * conversation_search.c - the conversation_search tool: find what was said, in every
 * conversation of the principal, long after it left the context (recall memory, FTS5), by
 * words and a date range ("YYYY-MM-DD", UTC, inclusive), a page at a time.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "llmos/json.h"
#include "llmos/tools.h"

/* "YYYY-MM-DD" -> Unix seconds at 00:00 UTC (end_of_day: 23:59:59); "" -> 0 (open). */
static llmos_err parse_date(const char *what, const char *s, bool end_of_day, int64_t *out)
{
    *out = 0;
    if (!s || !*s)
        return LLMOS_OK;
    int y, m, d;
    char tail;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || y < 1970 || m < 1 || m > 12 ||
        d < 1 || d > 31)
        return llmos_fail(LLMOS_ERR_INVALID, "%s: '%.40s' is not a date like 2026-12-07", what, s);
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    *out = (int64_t)timegm(&tm) + (end_of_day ? 86399 : 0);
    return LLMOS_OK;
}

static llmos_err conversation_search_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    int64_t since, until;
    llmos_err err =
        parse_date("start_date", ljson_get_string(env->args, "start_date", ""), false, &since);
    if (!err)
        err = parse_date("end_date", ljson_get_string(env->args, "end_date", ""), true, &until);
    int64_t page = ljson_get_int(env->args, "page", 0);
    if (!err && page < 0)
        err = llmos_fail(LLMOS_ERR_INVALID, "page: %lld is not a page number (0, 1, ...)",
                         (long long)page);
    if (!err)
        err = ktool_recall_search(env, ljson_get_string(env->args, "query", ""), since, until,
                                  (size_t)page);
    return err;
}

const ktool tool_conversation_search = {
    .name = "conversation_search",
    .description = "Search everything said in past conversations with the user, also what is no "
                   "longer in view, by words (and optionally dates). Results come a page of 5 "
                   "at a time, newest or best first.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"query\": {\"type\": \"string\"}, "
                  "\"start_date\": {\"type\": \"string\"}, \"end_date\": {\"type\": "
                  "\"string\"}, \"page\": {\"type\": \"integer\", \"minimum\": 0}}, "
                  "\"required\": [\"query\"], \"additionalProperties\": false}",
    .capability = KCAP_MEMORY,
    .output_trusted = true,
    .run = conversation_search_run,
};
