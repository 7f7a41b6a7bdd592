/*
 * tools/sandbox_tool.h - what the python, shell and files tools share (sandbox_tool.c): a run
 * of a program in the calling process's workspace, reported as the tool's output, and the
 * bookkeeping of the workspace (who owns it, what a run wrote there).
 */
#ifndef LLMOS_TOOLS_SANDBOX_TOOL_H
#define LLMOS_TOOLS_SANDBOX_TOOL_H

#include <stddef.h>

#include "llmos/kernel.h"

#define SANDBOX_TOOL_MAX_TIMEOUT 60           /* seconds a call may ask for */
#define SANDBOX_TOOL_TIMEOUT     10           /* seconds when it asks for none */
#define SANDBOX_TOOL_MAX_INPUT   (256 * 1024) /* bytes of code or command */

/* The calling process's workspace (ktool_workspace), made writable for the sandbox's user. */
LLMOS_NODISCARD llmos_err sandbox_tool_workspace(const ktool_env *env, char *out, size_t size);

/* Run argv (stdin_data fed to it, may be NULL) in the calling process's workspace for at most
 * timeout_s, and append to env->out its exit status (or signal, or the timeout), stdout,
 * stderr and the files it wrote or changed in the workspace. Audited as a "sandbox" record
 * naming `tool`. The program's failure is its output, not an error; errors are llmos's (no
 * sandbox here, no workspace). */
LLMOS_NODISCARD llmos_err sandbox_tool_run(const ktool_env *env, const char *tool,
                                           const char *const *argv, const char *stdin_data,
                                           double timeout_s);

#endif
