/*
 * archival_memory_insert.c - the archival_memory_insert tool: keep a passage in the principal's
 * archival memory, searchable by meaning later. A passage written from untrusted values (a
 * handle in the content, allowed by the flow policy's rule for this argument) is stored as
 * untrusted and only ever comes back as a handle.
 */
#include <assert.h>

#include "llmos/json.h"
#include "llmos/tools.h"

static llmos_err archival_memory_insert_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    return ktool_archival_insert(env, ljson_get_string(env->args, "content", ""));
}

const ktool tool_archival_memory_insert = {
    .name = "archival_memory_insert",
    .description = "Keep a fact or passage in long-term archival memory, to find it later with "
                   "archival_memory_search (it does not stay in view).",
    .parameters = "{\"type\": \"object\", \"properties\": {\"content\": {\"type\": "
                  "\"string\"}}, \"required\": [\"content\"], \"additionalProperties\": false}",
    .capability = KCAP_MEMORY,
    .output_trusted = true,
    .run = archival_memory_insert_run,
};
