/*
 * send_message.c - the send_message system call: deliver a text to the user (or another
 * recipient the host knows) through the kernel's message callback.
 *
 * The flow policy guards the recipient: by default a value of untrusted origin may not become
 * it, so text injected into a web page cannot choose where the model's messages go.
 */
#include <string.h>

#include "kernel/kernel_internal.h"
#include "llmos/json.h"

static llmos_err send_message_run(kernel *k, kproc *p, const json_t *args, llmos_buf *out)
{
    const char *to = ljson_get_string(args, "recipient", "user");
    const char *text = ljson_get_string(args, "text", "");
    kernel_deliver(k, p->info.pid, to, text);
    if (buf_printf(out, "message delivered (%zu bytes)", strlen(text)))
        return llmos_fail(LLMOS_ERR_NOMEM, "no memory");
    return LLMOS_OK;
}

const ktool ktool_send_message = {
    "send_message",
    "Send a message to the user (recipient \"user\"). Handles ($VAR1, ...) in the text are "
    "replaced by their values when the message is delivered.",
    "{\"type\": \"object\", \"properties\": {\"recipient\": {\"type\": \"string\"}, "
    "\"text\": {\"type\": \"string\"}}, \"required\": [\"recipient\", \"text\"], "
    "\"additionalProperties\": false}",
    KCAP_MESSAGE,
    true,
    send_message_run,
    false,
};
