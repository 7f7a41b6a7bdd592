/*
 * ask_quarantined.c - the ask_quarantined tool: the dual-LLM call. The privileged model names
 * an untrusted value by its handle and asks a question; a separate, tool-less quarantined
 * model reads the value and answers; the answer is untrusted again and comes back as a new
 * handle.
 *
 * Its arguments are passed as written (takes_handles): the handle is a name for the kernel's
 * service to resolve, never substituted into text. Its output is llmos's own sentence naming the
 * new handle, so it is trusted; its errors are llmos's own too (the quarantined model's own
 * error message is kept as an untrusted value under a handle, see ktool_ask_quarantined).
 */
#include <assert.h>
#include "llmos/json.h"
#include "llmos/tools.h"

static llmos_err ask_quarantined_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    char handle[32];
    llmos_err err =
        ktool_ask_quarantined(env, ljson_get_string(env->args, "handle", ""),
                              ljson_get_string(env->args, "question", ""), handle, sizeof handle);
    if (err)
        return err;
    if (buf_printf(env->out, "the quarantined model's answer is stored as %s", handle))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return LLMOS_OK;
}

const ktool tool_ask_quarantined = {
    .name = "ask_quarantined",
    .description = "Ask a separate, tool-less model a question about an untrusted value you hold "
                   "as a handle ($VAR1, ...). The answer is stored as a new handle.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"handle\": {\"type\": \"string\"}, "
                  "\"question\": {\"type\": \"string\"}}, \"required\": [\"handle\", "
                  "\"question\"], \"additionalProperties\": false}",
    .capability = KCAP_QUARANTINE,
    .output_trusted = true,
    .takes_handles = true,
    .run = ask_quarantined_run,
};
