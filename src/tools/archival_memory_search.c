/*
 * archival_memory_search.c - the archival_memory_search tool: the principal's archival passages
 * nearest to a query by meaning, a page at a time. Untrusted passages come back as handles.
 */
#include <assert.h>

#include "llmos/json.h"
#include "llmos/tools.h"

static llmos_err archival_memory_search_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    int64_t page = ljson_get_int(env->args, "page", 0);
    if (page < 0)
        return llmos_fail(LLMOS_ERR_INVALID, "page: %lld is not a page number (0, 1, ...)",
                          (long long)page);
    return ktool_archival_search(env, ljson_get_string(env->args, "query", ""), (size_t)page);
}

const ktool tool_archival_memory_search = {
    .name = "archival_memory_search",
    .description = "Search long-term archival memory by meaning and by words. Results come a page "
                   "of 5 at a time, best first.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"query\": {\"type\": \"string\"}, "
                  "\"page\": {\"type\": \"integer\", \"minimum\": 0}}, \"required\": "
                  "[\"query\"], \"additionalProperties\": false}",
    .capability = KCAP_MEMORY,
    .output_trusted = true,
    .run = archival_memory_search_run,
};
