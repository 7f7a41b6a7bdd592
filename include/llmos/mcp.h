/*
 * llmos/mcp.h - a Model Context Protocol client over stdio (src/tools/mcp.c; docs/tools.md,
 * "MCP").
 *
 * An MCP server is a program llmos starts with pipes on its stdin, stdout and stderr. The two
 * speak JSON-RPC 2.0, one message per line (newline-delimited JSON, no embedded newlines):
 * llmos sends `initialize` (protocolVersion, capabilities, clientInfo), waits for the
 * server's answer, sends `notifications/initialized`, and may then ask `tools/list` and
 * `tools/call`.
 *
 * The server is outside code and everything it says is untrusted:
 *   - every request has a deadline; a server that does not answer in time is killed;
 *   - every line has a size limit; a longer one kills the server;
 *   - a line that is not JSON-RPC 2.0, a tool list whose entries do not have the shape the
 *     protocol gives them, or a call result without its content array is an error that
 *     kills the server (LLMOS_ERR_FORMAT), never a crash;
 *   - its stderr is read all the time (so it cannot block on a full pipe) and only the last
 *     few KiB are kept, for error messages;
 *   - requests the server sends us are answered: `ping` with an empty result, anything else
 *     with "method not found" (this client offers no roots, sampling or elicitation);
 *   - it runs in a process group of its own, and mcp_close kills the whole group;
 *   - it inherits no file descriptor of llmos's but its three pipes;
 *   - it gets only a few variables of llmos's environment (HOME, LOGNAME, PATH, SHELL, TERM,
 *     USER, LANG, LC_ALL, LC_CTYPE, TMPDIR, TZ), never a passphrase or key held there.
 * A client whose server was killed answers every later call with LLMOS_ERR_IO.
 *
 * A client is used by one thread at a time.
 */
#ifndef LLMOS_MCP_H
#define LLMOS_MCP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "llmos/base.h"

/* The protocol revision this client asks for, and the ones it accepts in the answer. */
#define MCP_PROTOCOL_VERSION "2025-06-18"

#define MCP_TOOL_NAME_MAX 128 /* a tool's name: 1..128 of [A-Za-z0-9_.-] */

/* Limits of one client; a zero field takes the default in brackets. */
typedef struct mcp_limits {
    double request_s;         /* a request's deadline, initialize included [30 s] */
    size_t message_bytes;     /* one line from the server, at most [4 MiB] */
    size_t stderr_bytes;      /* the tail of the server's stderr kept [8 KiB] */
    size_t max_tools;         /* entries a tools/list may return, over all pages [1024] */
} mcp_limits;

typedef struct mcp_client mcp_client;

/* One tool as tools/list describes it. */
typedef struct mcp_tool {
    char name[MCP_TOOL_NAME_MAX + 1];
    char *description;    /* "" when the server gave none; owned by the list */
    json_t *input_schema; /* a JSON Schema object whose "type" is "object"; owned */
} mcp_tool;

/* What a JSON-RPC 2.0 line is. */
typedef enum mcp_message_kind {
    MCP_MSG_RESPONSE,     /* "id" and exactly one of "result" / "error" */
    MCP_MSG_REQUEST,      /* "method" and "id" */
    MCP_MSG_NOTIFICATION, /* "method" and no "id" */
} mcp_message_kind;

/* One message from the server, parsed and checked by mcp_parse_message. */
typedef struct mcp_message {
    mcp_message_kind kind;
    json_t *json;       /* the whole message; owned (mcp_message_free) */
    json_t *id;         /* borrowed from json: an integer or a string; NULL for notifications */
    const char *method; /* requests and notifications; borrowed */
    json_t *result;     /* responses: the result (any JSON value), or NULL on error; borrowed */
    int64_t error_code; /* responses with "error" */
    const char *error_message;
} mcp_message;

/* Parse one line (without its newline) from a server: a JSON object with "jsonrpc": "2.0"
 * that is a response, a request or a notification as above. Batches (arrays) are refused,
 * as the protocol no longer has them. LLMOS_ERR_FORMAT names what is wrong. The caller
 * frees *out with mcp_message_free. */
LLMOS_API LLMOS_NODISCARD llmos_err mcp_parse_message(const char *line, size_t len,
                                                      mcp_message *out);
LLMOS_API void mcp_message_free(mcp_message *m);

/* Start argv (argv[0] looked up in PATH; NULL-terminated) as an MCP server and initialise it.
 * `limits` may be NULL for the defaults. On success *out is a client (mcp_close); on failure
 * the server, if it started, is killed, and the message carries the tail of its stderr.
 * LLMOS_ERR_NOT_FOUND: argv[0] could not be started; LLMOS_ERR_LIMIT: the deadline passed
 * or a line was too long; LLMOS_ERR_FORMAT: the server broke the protocol;
 * LLMOS_ERR_UNSUPPORTED: it answered with a protocol version this client does not speak;
 * LLMOS_ERR_IO: it exited or closed its stdout. */
LLMOS_API LLMOS_NODISCARD llmos_err mcp_connect(const char *const *argv, const mcp_limits *limits,
                                                mcp_client **out);

/* The server's name and version from its initialize answer ("" when it gave none), and the
 * protocol version agreed. Borrowed, valid until mcp_close. */
LLMOS_API const char *mcp_server_name(const mcp_client *c);
LLMOS_API const char *mcp_server_version(const mcp_client *c);
LLMOS_API const char *mcp_protocol_version(const mcp_client *c);
/* The server's process id (its process group has the same number); 0 once it was killed. */
LLMOS_API pid_t mcp_server_pid(const mcp_client *c);

/* tools/list, following nextCursor pages. *tools (free with mcp_tools_free) holds *n entries.
 * An entry without a valid name or whose inputSchema is not an object schema makes the whole
 * answer LLMOS_ERR_FORMAT, and the server is killed: a server that lies about its schema is
 * not one to keep talking to. */
LLMOS_API LLMOS_NODISCARD llmos_err mcp_list_tools(mcp_client *c, mcp_tool **tools, size_t *n);
LLMOS_API void mcp_tools_free(mcp_tool *tools, size_t n);

/* tools/call of `name` with `arguments` (a JSON object, or NULL for {}). The text of the
 * result's content goes to `text` (appended): text items as they are, each other item as a
 * one-line note of its type ("[image image/png, 1234 bytes of base64]"), items separated by
 * newlines. *is_error says whether the server marked the result isError (the tool ran and
 * failed: not an error of the call). A JSON-RPC error answer is LLMOS_ERR_INVALID carrying the
 * server's message. The text is the server's and untrusted. */
LLMOS_API LLMOS_NODISCARD llmos_err mcp_call_tool(mcp_client *c, const char *name,
                                                  const json_t *arguments, llmos_buf *text,
                                                  bool *is_error);

/* Close the server's stdin, give it a moment to exit, then kill its process group, and free
 * the client. NULL is fine. */
LLMOS_API void mcp_close(mcp_client *c);

/* ---- the user's servers, and the `mcp` system call (src/tools/mcp_tool.c) ------------------ */

#define MCP_SERVER_NAME_MAX 32 /* a configured server's name: 1..32 of [A-Za-z0-9_-] */

LLMOS_API bool mcp_server_name_ok(const char *name);

/* Read the servers file (<home>/mcp.json: {"servers": {"NAME": {"command": ["PROGRAM",
 * "ARG", ...]}}}); a missing file is an empty configuration. Strict: a bad name or a command
 * that is not a non-empty array of strings is LLMOS_ERR_FORMAT naming the file and server.
 * *out: json_decref. */
LLMOS_API LLMOS_NODISCARD llmos_err mcp_config_load(const char *path, json_t **out);

struct ktool;
/* The `mcp` system call over the servers of the file at config_path: arguments {"server",
 * "tool", "arguments"}; without "tool" it lists the server's tools with their argument
 * schemas. Each call starts the server, asks, and stops it. Capability exec (a server is a
 * program of the user's, run for the model); output untrusted. *out is a descriptor of this
 * module (one per program: a second call replaces the first), or NULL with
 * LLMOS_ERR_NOT_FOUND when no server is configured. */
LLMOS_API LLMOS_NODISCARD llmos_err mcp_syscall_tool(const char *config_path,
                                                     const struct ktool **out);

#endif
