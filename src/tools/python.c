/*
 * python.c - the python tool: run Python 3 code (Debian's python3, its standard library) in
 * the sandbox (llmos/sandbox.h), in the calling process's workspace at /work. Returns the exit
 * status, stdout, stderr and the files the code wrote in the workspace.
 *
 * The code goes in on stdin (`python3 -I -`: isolated mode, no user site, no PYTHON*
 * variables), so its length is not bound by the argument limit and it leaves no file behind.
 * The output is untrusted: the program may print anything, including what it read from files
 * that came from outside, so the kernel quarantines it.
 */
#include <assert.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/sandbox.h"
#include "llmos/tools.h"
#include "tools/sandbox_tool.h"

static llmos_err python_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const char *code = ljson_get_string(env->args, "code", "");
    if (strlen(code) > SANDBOX_TOOL_MAX_INPUT)
        return llmos_fail(LLMOS_ERR_LIMIT, "code: longer than %d bytes", SANDBOX_TOOL_MAX_INPUT);
    json_t *t = json_object_get(env->args, "timeout_s");
    double timeout = json_is_number(t) ? json_number_value(t) : SANDBOX_TOOL_TIMEOUT;
    const char *argv[] = {SANDBOX_PYTHON, "-I", "-", NULL};
    return sandbox_tool_run(env, "python", argv, code, timeout);
}

const ktool tool_python = {
    .name = "python",
    .description = "Run Python 3 code in a sandbox without network, with the standard library "
                   "only; the working directory /work is your workspace and keeps its files "
                   "between calls. Returns the exit status, stdout, stderr and the files "
                   "written. Print what you want to see.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"code\": {\"type\": \"string\"}, "
                  "\"timeout_s\": {\"type\": \"number\", \"minimum\": 1, \"maximum\": 60}}, "
                  "\"required\": [\"code\"], \"additionalProperties\": false}",
    .capability = KCAP_EXEC,
    .output_trusted = false,
    .run = python_run,
    .available = sandbox_probe,
};
