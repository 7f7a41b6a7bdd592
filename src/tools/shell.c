/*
 * shell.c - the shell tool: run a POSIX sh command line (Debian's dash, with a few utilities:
 * cat, ls, grep, sed, awk, sort, find, ...) in the sandbox (llmos/sandbox.h), in the calling
 * process's workspace at /work. Returns the exit status, stdout, stderr and the files the
 * command wrote in the workspace.
 *
 * The default flow policy lets only the user's and llmos's own words be a command: text from a
 * web page or a file ($VAR1) cannot become one. The output is untrusted.
 */
#include <assert.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/sandbox.h"
#include "llmos/tools.h"
#include "tools/sandbox_tool.h"

static llmos_err shell_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const char *command = ljson_get_string(env->args, "command", "");
    if (strlen(command) > 65536)
        return llmos_fail(LLMOS_ERR_LIMIT, "command: longer than 65536 bytes");
    json_t *t = json_object_get(env->args, "timeout_s");
    double timeout = json_is_number(t) ? json_number_value(t) : SANDBOX_TOOL_TIMEOUT;
    const char *argv[] = {SANDBOX_SH, "-c", command, NULL};
    return sandbox_tool_run(env, "shell", argv, NULL, timeout);
}

const ktool tool_shell = {
    .name = "shell",
    .description = "Run a POSIX shell command in a sandbox without network (sh with cat, ls, "
                   "grep, sed, awk, sort, find and a few more); the working directory /work is "
                   "your workspace. Returns the exit status, stdout, stderr and the files "
                   "written.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"command\": {\"type\": \"string\"}, "
                  "\"timeout_s\": {\"type\": \"number\", \"minimum\": 1, \"maximum\": 60}}, "
                  "\"required\": [\"command\"], \"additionalProperties\": false}",
    .capability = KCAP_EXEC,
    .output_trusted = false,
    .run = shell_run,
    .available = sandbox_probe,
};
