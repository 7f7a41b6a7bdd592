/*
 * send_message.c - the send_message tool: deliver a text to the user (or another recipient
 * the device knows) through the kernel's message service, which the device receives as a
 * KEVENT_MESSAGE.
 *
 * The flow policy guards the recipient: by default a value of untrusted origin may not become
 * it, so text injected into a web page cannot choose where the model's messages go. The text
 * may hold handles ($VAR1): the kernel has replaced them by their values before this runs,
 * which is how an untrusted value reaches the user without passing through the privileged
 * model.
 */
#include <assert.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/tools.h"

static llmos_err send_message_run(const ktool_env *env)
{
    assert(env && env->args && env->out);
    const char *to = ljson_get_string(env->args, "recipient", "user");
    const char *text = ljson_get_string(env->args, "text", "");
    ktool_deliver(env, to, text);
    if (buf_printf(env->out, "message delivered (%zu bytes)", strlen(text)))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return LLMOS_OK;
}

const ktool tool_send_message = {
    .name = "send_message",
    .description = "Send a message to the user (recipient \"user\"). Handles ($VAR1, ...) in the "
                   "text are replaced by their values when the message is delivered.",
    .parameters = "{\"type\": \"object\", \"properties\": {\"recipient\": {\"type\": \"string\"}, "
                  "\"text\": {\"type\": \"string\"}}, \"required\": [\"recipient\", \"text\"], "
                  "\"additionalProperties\": false}",
    .capability = KCAP_MESSAGE,
    .output_trusted = true,
    .run = send_message_run,
};
