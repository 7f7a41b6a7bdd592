/*
 * fuzz_mcp.c - fuzz the MCP client's message parser (mcp_parse_message) with lines an MCP
 * server could send. Whatever the bytes: it returns LLMOS_OK or LLMOS_ERR_FORMAT (or
 * NOMEM); on failure it leaves nothing to free; on success the message is what its kind
 * promises (a response has an integer or string id and exactly one of result and error, a
 * request has a method and an id, a notification a method and no id).
 */
#include <stdint.h>
#include <stdlib.h>

#include "llmos/mcp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mcp_message m;
    llmos_err err = mcp_parse_message((const char *)data, size, &m);
    if (err != LLMOS_OK) {
        if (err != LLMOS_ERR_FORMAT && err != LLMOS_ERR_NOMEM)
            abort();
        if (m.json || m.id || m.method || m.result)
            abort();
        return 0;
    }
    if (!json_is_object(m.json))
        abort();
    switch (m.kind) {
    case MCP_MSG_RESPONSE:
        if (!m.id || m.method || (m.result != NULL) == (m.error_message != NULL))
            abort();
        if (!json_is_integer(m.id) && !json_is_string(m.id))
            abort();
        break;
    case MCP_MSG_REQUEST:
        if (!m.id || !m.method || !m.method[0])
            abort();
        break;
    case MCP_MSG_NOTIFICATION:
        if (m.id || !m.method || !m.method[0])
            abort();
        break;
    default:
        abort();
    }
    mcp_message_free(&m);
    return 0;
}
