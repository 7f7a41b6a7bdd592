/*
 * cmd_mcp.c - `llmos mcp`: the user's MCP servers (docs/tools.md, "MCP").
 *
 *   llmos mcp add NAME -- COMMAND [ARGS...]   remember a stdio server
 *   llmos mcp list                            the servers remembered
 *   llmos mcp rm NAME                         forget one
 *   llmos mcp tools NAME                      start it, and list the tools it offers
 *
 * The servers live in <home>/mcp.json (mode 0600), {"servers": {"NAME": {"command":
 * ["COMMAND", "ARG", ...]}}}; the file is read strictly (a member of the wrong type is an
 * error naming it), since what it names is a program llmos will start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "llmos/json.h"
#include "llmos/kernel.h"
#include "llmos/mcp.h"

static void mcp_config_path(char *out, size_t size)
{
    snprintf(out, size, "%s/mcp.json", cli_home());
}

static llmos_err mcp_config_save(const char *path, const json_t *cfg)
{
    llmos_err err = llmos_file_mkdirs(cli_home(), 0700);
    llmos_buf b = {0};
    if (err == LLMOS_OK)
        err = ljson_to_buf(cfg, JSON_INDENT(2), &b);
    if (err == LLMOS_OK)
        err = buf_putc(&b, '\n');
    if (err == LLMOS_OK)
        err = llmos_file_write_atomic(path, b.data, b.len, 0600);
    buf_free(&b);
    return err;
}

static int mcp_add(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0)
        return cli_usage_error("mcp", "usage: llmos mcp add NAME -- COMMAND [ARGS...]");
    const char *name = argv[1];
    if (!mcp_server_name_ok(name))
        return cli_usage_error("mcp", "'%s' is not a server name (1..%d of A-Z a-z 0-9 _ -)",
                               name, MCP_SERVER_NAME_MAX);
    char path[4200];
    mcp_config_path(path, sizeof path);
    json_t *cfg = NULL;
    llmos_err err = mcp_config_load(path, &cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    json_t *servers = ljson_get_object(cfg, "servers");
    if (json_object_get(servers, name)) {
        json_decref(cfg);
        return cli_report(llmos_fail(LLMOS_ERR_EXISTS, "an MCP server named %s is configured "
                                                       "already (llmos mcp rm %s first)",
                                     name, name));
    }
    json_t *cmd = json_array();
    for (int i = 3; cmd && i < argc; i++)
        if (json_array_append_new(cmd, json_string(argv[i])) != 0) {
            json_decref(cmd);
            cmd = NULL;
        }
    if (!cmd || json_object_set_new(servers, name, json_pack("{s:o}", "command", cmd)) != 0) {
        json_decref(cfg);
        return cli_report(llmos_fail(LLMOS_ERR_INVALID, "mcp add: the command is not UTF-8"));
    }
    err = mcp_config_save(path, cfg);
    json_decref(cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    printf("added MCP server %s\n", name);
    return CLI_OK;
}

static int mcp_list(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("mcp", "list takes no arguments");
    char path[4200];
    mcp_config_path(path, sizeof path);
    json_t *cfg = NULL;
    llmos_err err = mcp_config_load(path, &cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    const char *name;
    json_t *srv;
    json_object_foreach(ljson_get_object(cfg, "servers"), name, srv) {
        printf("%s\t", name);
        json_t *cmd = ljson_get_array(srv, "command");
        for (size_t i = 0; i < json_array_size(cmd); i++)
            printf("%s%s", i ? " " : "", json_string_value(json_array_get(cmd, i)));
        printf("\n");
    }
    json_decref(cfg);
    return CLI_OK;
}

static int mcp_rm(int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error("mcp", "usage: llmos mcp rm NAME");
    char path[4200];
    mcp_config_path(path, sizeof path);
    json_t *cfg = NULL;
    llmos_err err = mcp_config_load(path, &cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    if (json_object_del(ljson_get_object(cfg, "servers"), argv[1]) != 0) {
        json_decref(cfg);
        return cli_report(llmos_fail(LLMOS_ERR_NOT_FOUND, "no MCP server named %.64s (llmos "
                                                          "mcp list shows them)", argv[1]));
    }
    err = mcp_config_save(path, cfg);
    json_decref(cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    printf("removed MCP server %s\n", argv[1]);
    return CLI_OK;
}

static int mcp_tools(int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error("mcp", "usage: llmos mcp tools NAME");
    char path[4200];
    mcp_config_path(path, sizeof path);
    json_t *cfg = NULL;
    llmos_err err = mcp_config_load(path, &cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    json_t *cmd = ljson_get_array(json_object_get(ljson_get_object(cfg, "servers"), argv[1]),
                                  "command");
    if (!cmd) {
        json_decref(cfg);
        return cli_report(llmos_fail(LLMOS_ERR_NOT_FOUND, "no MCP server named %.64s (llmos "
                                                          "mcp list shows them)", argv[1]));
    }
    size_t n_args = json_array_size(cmd);
    const char **args = calloc(n_args + 1, sizeof *args);
    if (!args) {
        json_decref(cfg);
        return cli_report(llmos_fail(LLMOS_ERR_NOMEM, "out of memory"));
    }
    for (size_t i = 0; i < n_args; i++)
        args[i] = json_string_value(json_array_get(cmd, i));
    mcp_client *c = NULL;
    err = mcp_connect(args, NULL, &c);
    free(args);
    json_decref(cfg);
    if (err != LLMOS_OK)
        return cli_report(err);
    mcp_tool *tools = NULL;
    size_t n = 0;
    err = mcp_list_tools(c, &tools, &n);
    if (err == LLMOS_OK) {
        printf("%s: %s %s, protocol %s, %zu tools\n", argv[1], mcp_server_name(c),
               mcp_server_version(c), mcp_protocol_version(c), n);
        for (size_t i = 0; i < n; i++) {
            /* the server's words: its first line only, control bytes dropped */
            char desc[121];
            size_t k = 0;
            for (const char *p = tools[i].description; *p && *p != '\n' && k + 1 < sizeof desc;
                 p++)
                if ((unsigned char)*p >= 0x20 && *p != 0x7f)
                    desc[k++] = *p;
            desc[k] = '\0';
            printf("  %-32s %s\n", tools[i].name, desc);
        }
    }
    mcp_tools_free(tools, n);
    mcp_close(c);
    return err == LLMOS_OK ? CLI_OK : cli_report(err);
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} mcp_subcommands[] = {
    {"add", mcp_add},
    {"list", mcp_list},
    {"rm", mcp_rm},
    {"tools", mcp_tools},
};

int cmd_mcp(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("mcp", "which? add, list, rm or tools");
    for (size_t i = 0; i < LLMOS_ARRAY_LEN(mcp_subcommands); i++)
        if (strcmp(argv[1], mcp_subcommands[i].name) == 0)
            return mcp_subcommands[i].run(argc - 1, argv + 1);
    return cli_usage_error("mcp", "no subcommand '%s' (add, list, rm, tools)", argv[1]);
}

/* The tools besides the kernel's own that the shell and serve offer: delegate (installed
 * specialists) and mcp (configured servers), each only when there is something to offer. A
 * servers file that cannot be read is said once on stderr, and the rest goes on without it. */
void cli_extra_tools(const struct ktool **out, size_t *n)
{
    static ktool extra[2];
    *n = 0;
    const ktool *t = NULL;
    cli_delegate_tool(&t);
    if (t)
        extra[(*n)++] = *t;
    char path[4200];
    mcp_config_path(path, sizeof path);
    t = NULL;
    llmos_err err = mcp_syscall_tool(path, &t);
    if (err == LLMOS_OK)
        extra[(*n)++] = *t;
    else if (err != LLMOS_ERR_NOT_FOUND)
        fprintf(stderr, "llmos: the MCP servers are not offered: %s\n", llmos_errmsg());
    llmos_err_clear();
    *out = *n ? extra : NULL;
}
