/*
 * core_memory_replace.c - the core_memory_replace tool: replace a text in one of the principal's
 * core memory blocks ("" as the new text deletes it). The text must be there; the result must
 * stay within the block's limit.
 */
#include <assert.h>

#include "llmos/json.h"
#include "llmos/tools.h"

static llmos_err core_memory_replace_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    return ktool_core_replace(env, ljson_get_string(env->args, "label", ""),
                              ljson_get_string(env->args, "old_content", ""),
                              ljson_get_string(env->args, "new_content", ""));
}

const ktool tool_core_memory_replace = {
    .name = "core_memory_replace",
    .description = "Replace old_content by new_content in a core memory block (an empty "
                   "new_content deletes it).",
    .parameters = "{\"type\": \"object\", \"properties\": {\"label\": {\"type\": \"string\"}, "
                  "\"old_content\": {\"type\": \"string\"}, \"new_content\": {\"type\": "
                  "\"string\"}}, \"required\": [\"label\", \"old_content\", \"new_content\"], "
                  "\"additionalProperties\": false}",
    .capability = KCAP_MEMORY,
    .output_trusted = true,
    .run = core_memory_replace_run,
};
