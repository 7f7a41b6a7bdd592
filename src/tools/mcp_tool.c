/*
 * mcp_tool.c - the user's MCP servers (<home>/mcp.json) and the `mcp` system call over them
 * (include/llmos/mcp.h; docs/tools.md, "MCP").
 *
 * The call takes a server's name, and a tool name with its arguments, or no tool to list the
 * server's tools. Each call starts the server, initialises it, asks, and stops it: no server
 * outlives the call that needed it, and one that misbehaved cannot spoil the next call. What
 * a server says is untrusted (the kernel quarantines it as a handle); the capability is exec,
 * since a server is a program of the user's run on the model's behalf.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/mcp.h"

#define MCP_CONFIG_MAX (1u << 20)

bool mcp_server_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MCP_SERVER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

llmos_err mcp_config_load(const char *path, json_t **out)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        *out = json_pack("{s:{}}", "servers");
        return *out ? LLMOS_OK : llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    fclose(f);
    llmos_buf b = {0};
    llmos_err err = llmos_file_read_all(path, MCP_CONFIG_MAX, &b);
    json_t *cfg = NULL;
    if (err == LLMOS_OK)
        err = ljson_parse_text(b.data ? b.data : "", b.len, path, 16, &cfg);
    buf_free(&b);
    if (err != LLMOS_OK)
        return err;
    json_t *servers = ljson_get_object(cfg, "servers");
    if (!servers) {
        json_decref(cfg);
        return llmos_fail(LLMOS_ERR_FORMAT, "%s: no \"servers\" object", path);
    }
    const char *name;
    json_t *srv;
    json_object_foreach(servers, name, srv) {
        json_t *cmd = ljson_get_array(srv, "command");
        bool ok = mcp_server_name_ok(name) && cmd && json_array_size(cmd) > 0;
        for (size_t i = 0; ok && i < json_array_size(cmd); i++)
            ok = json_is_string(json_array_get(cmd, i)) &&
                 json_string_length(json_array_get(cmd, i)) ==
                     strlen(json_string_value(json_array_get(cmd, i)));
        if (!ok) {
            llmos_err e = llmos_fail(LLMOS_ERR_FORMAT, "%s: server \"%.64s\": a name of 1..%d "
                                                       "of [A-Za-z0-9_-] and a \"command\" array "
                                                       "of strings are needed", path, name,
                                     MCP_SERVER_NAME_MAX);
            json_decref(cfg);
            return e;
        }
    }
    *out = cfg;
    return LLMOS_OK;
}

/* The module's one descriptor and what it points at. */
static struct {
    char config[4096];
    char description[2048];
    ktool tool;
} M;

static const char mcp_parameters[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"server\":{\"type\":\"string\"},"
    "\"tool\":{\"type\":\"string\"},"
    "\"arguments\":{\"type\":\"object\"}},"
    "\"required\":[\"server\"],\"additionalProperties\":false}";

/* Append a tool list, as the model reads it: name, description, schema. */
static llmos_err mcp_put_tools(const mcp_tool *tools, size_t n, llmos_buf *out)
{
    llmos_err err = buf_printf(out, "%zu tools\n", n);
    for (size_t i = 0; err == LLMOS_OK && i < n; i++) {
        err = buf_printf(out, "- %s: %s\n  arguments: ", tools[i].name, tools[i].description);
        if (err == LLMOS_OK)
            err = ljson_to_buf(tools[i].input_schema, JSON_COMPACT, out);
        if (err == LLMOS_OK)
            err = buf_putc(out, '\n');
    }
    return err;
}

static llmos_err mcp_run(const ktool_env *env)
{
    const char *server = ljson_get_string(env->args, "server", "");
    const char *tool = ljson_get_string(env->args, "tool", NULL);
    json_t *cfg = NULL;
    llmos_err err = mcp_config_load(M.config, &cfg);
    if (err != LLMOS_OK)
        return err;
    json_t *cmd = ljson_get_array(json_object_get(ljson_get_object(cfg, "servers"), server),
                                  "command");
    if (!cmd) {
        json_decref(cfg);
        return llmos_fail(LLMOS_ERR_NOT_FOUND, "mcp: no server named %.64s", server);
    }
    size_t argc = json_array_size(cmd);
    const char **argv = calloc(argc + 1, sizeof *argv);
    if (!argv) {
        json_decref(cfg);
        return llmos_fail(LLMOS_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < argc; i++)
        argv[i] = json_string_value(json_array_get(cmd, i));
    mcp_client *c = NULL;
    err = mcp_connect(argv, NULL, &c);
    free(argv);
    json_decref(cfg);
    if (err != LLMOS_OK)
        return err;
    if (!tool) {
        mcp_tool *tools = NULL;
        size_t n = 0;
        err = mcp_list_tools(c, &tools, &n);
        if (err == LLMOS_OK)
            err = mcp_put_tools(tools, n, env->out);
        mcp_tools_free(tools, n);
    } else {
        bool is_error = false;
        llmos_buf text = {0};
        err = mcp_call_tool(c, tool, ljson_get_object(env->args, "arguments"), &text, &is_error);
        if (err == LLMOS_OK && is_error)
            err = buf_puts(env->out, "the tool reported an error:\n");
        if (err == LLMOS_OK)
            err = buf_append(env->out, text.data ? text.data : "", text.len);
        buf_free(&text);
    }
    mcp_close(c);
    return err;
}

llmos_err mcp_syscall_tool(const char *config_path, const ktool **out)
{
    *out = NULL;
    if (!config_path || strlen(config_path) >= sizeof M.config)
        return llmos_fail(LLMOS_ERR_INVALID, "mcp: the servers file's path is missing or too long");
    json_t *cfg = NULL;
    llmos_err err = mcp_config_load(config_path, &cfg);
    if (err != LLMOS_OK)
        return err;
    llmos_buf desc = {0};
    err = buf_puts(&desc, "Call a tool of one of the user's MCP servers, or leave out \"tool\" "
                          "to list the server's tools and their arguments. Servers:");
    const char *name;
    json_t *srv;
    size_t n = 0;
    json_object_foreach(ljson_get_object(cfg, "servers"), name, srv) {
        if (err == LLMOS_OK)
            err = buf_printf(&desc, "%s %s", n ? "," : "", name);
        n++;
    }
    json_decref(cfg);
    if (err == LLMOS_OK && n == 0)
        err = llmos_fail(LLMOS_ERR_NOT_FOUND, "no MCP server is configured in %s", config_path);
    if (err == LLMOS_OK && desc.len >= sizeof M.description)
        err = llmos_fail(LLMOS_ERR_LIMIT, "mcp: too many servers to describe");
    if (err == LLMOS_OK) {
        snprintf(M.config, sizeof M.config, "%s", config_path);
        memcpy(M.description, desc.data, desc.len + 1);
        M.tool = (ktool){.name = "mcp",
                         .description = M.description,
                         .parameters = mcp_parameters,
                         .capability = KCAP_EXEC,
                         .output_trusted = false,
                         .run = mcp_run};
        *out = &M.tool;
    }
    buf_free(&desc);
    return err;
}
