/*
 * core_memory_append.c - the core_memory_append tool: add a line to one of the principal's core
 * memory blocks (persona, human, or one of its own), which stay in the context of every process
 * of that principal. A block over its size limit is refused with the limit in the message.
 *
 * Core memory is always in view of the privileged model, so the flow policy keeps untrusted
 * values out of it (no rule allows them: the default denies).
 */
#include <assert.h>

#include "llmos/json.h"
#include "llmos/tools.h"

static llmos_err core_memory_append_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    return ktool_core_append(env, ljson_get_string(env->args, "label", ""),
                             ljson_get_string(env->args, "content", ""));
}

const ktool tool_core_memory_append = {
    .name = "core_memory_append",
    .description = "Add a line to a core memory block (\"persona\": who you are; \"human\": what "
                   "you know of the user; or a block of your own). Core memory stays in view in "
                   "every conversation.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"label\": {\"type\": \"string\"}, "
                  "\"content\": {\"type\": \"string\"}}, \"required\": [\"label\", \"content\"], "
                  "\"additionalProperties\": false}",
    .capability = KCAP_MEMORY,
    .output_trusted = true,
    .run = core_memory_append_run,
};
