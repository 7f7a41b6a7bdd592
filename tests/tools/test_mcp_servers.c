/*
 * test_mcp_servers.c - the MCP client (src/tools/mcp.c) against real MCP servers, the
 * reference ones published with the protocol: @modelcontextprotocol/server-everything and
 * @modelcontextprotocol/server-filesystem, installed into tests/io/node/node_modules from
 * its lock file by scripts/deps (nothing is downloaded here). Each is run with node: the
 * handshake, tools/list shows their tools, tools/call of everything's echo and get-sum and
 * of filesystem's read_text_file on a file in the folder it was given, and its refusal of a
 * file outside; everything's get-env shows that a passphrase in llmos's environment does not
 * reach the server. Skips, saying why, when node or node_modules is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/json.h"
#include "llmos/mcp.h"
#include "testutil.h"

/* The path of an installed server's entry point in out[size], or skip. */
static const char *server_js(char *out, size_t size, const char *package)
{
    const char *src = getenv("LLMOS_SRC");
    if (!src)
        tu_skip("LLMOS_SRC is not set (run the tests through ctest)");
    if (access("/usr/bin/node", X_OK) != 0 && system("command -v node >/dev/null 2>&1") != 0)
        tu_skip("node is not installed (scripts/deps installs it)");
    snprintf(out, size, "%s/tests/io/node/node_modules/@modelcontextprotocol/%s/dist/index.js",
             src, package);
    if (access(out, R_OK) != 0)
        tu_skip("%s is absent: run scripts/deps (npm ci in tests/io/node)", out);
    return out;
}

static bool has_tool(const mcp_tool *tools, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tools[i].name, name) == 0)
            return true;
    return false;
}

static void test_server_everything(void **state)
{
    (void)state;
    char js[4096];
    server_js(js, sizeof js, "server-everything");
    const char *argv[] = {"node", js, "stdio", NULL};
    assert_int_equal(setenv("LLMOS_PASSPHRASE", "not-for-mcp-servers", 1), 0);
    mcp_client *c = NULL;
    llmos_err err = mcp_connect(argv, NULL, &c);
    if (err != LLMOS_OK)
        print_message("%s\n", llmos_errmsg());
    assert_int_equal(err, LLMOS_OK);
    print_message("server %s %s, protocol %s\n", mcp_server_name(c), mcp_server_version(c),
                  mcp_protocol_version(c));
    assert_string_equal(mcp_protocol_version(c), MCP_PROTOCOL_VERSION);

    mcp_tool *tools = NULL;
    size_t n = 0;
    assert_int_equal(mcp_list_tools(c, &tools, &n), LLMOS_OK);
    print_message("%zu tools\n", n);
    assert_true(has_tool(tools, n, "echo"));
    assert_true(has_tool(tools, n, "get-sum"));
    mcp_tools_free(tools, n);

    llmos_buf text = {0};
    bool is_error = true;
    json_t *args = json_pack("{s:s}", "message", "hello from llmos");
    assert_int_equal(mcp_call_tool(c, "echo", args, &text, &is_error), LLMOS_OK);
    json_decref(args);
    assert_false(is_error);
    assert_string_equal(text.data, "Echo: hello from llmos");

    /* the server sees none of llmos's secrets: get-env shows what it got */
    buf_clear(&text);
    assert_int_equal(mcp_call_tool(c, "get-env", NULL, &text, &is_error), LLMOS_OK);
    assert_false(is_error);
    assert_non_null(strstr(text.data, "PATH"));
    assert_null(strstr(text.data, "LLMOS_PASSPHRASE"));
    assert_null(strstr(text.data, "not-for-mcp-servers"));

    buf_clear(&text);
    args = json_pack("{s:i, s:i}", "a", 20, "b", 22);
    assert_int_equal(mcp_call_tool(c, "get-sum", args, &text, &is_error), LLMOS_OK);
    json_decref(args);
    assert_false(is_error);
    print_message("get-sum: %s\n", text.data);
    assert_non_null(strstr(text.data, "42"));
    buf_free(&text);
    mcp_close(c);
}

static void test_server_filesystem(void **state)
{
    (void)state;
    char js[4096];
    server_js(js, sizeof js, "server-filesystem");
    char dir[256], note[512];
    assert_true(tu_mkdtemp("mcpfs", dir, sizeof dir));
    snprintf(note, sizeof note, "%s/note.txt", dir);
    static const char body[] = "a note for the filesystem server\n";
    assert_int_equal(llmos_file_write_atomic(note, body, sizeof body - 1, 0600), LLMOS_OK);

    const char *argv[] = {"node", js, dir, NULL};
    mcp_client *c = NULL;
    llmos_err err = mcp_connect(argv, NULL, &c);
    if (err != LLMOS_OK)
        print_message("%s\n", llmos_errmsg());
    assert_int_equal(err, LLMOS_OK);
    print_message("server %s %s, protocol %s\n", mcp_server_name(c), mcp_server_version(c),
                  mcp_protocol_version(c));

    mcp_tool *tools = NULL;
    size_t n = 0;
    assert_int_equal(mcp_list_tools(c, &tools, &n), LLMOS_OK);
    print_message("%zu tools\n", n);
    assert_true(has_tool(tools, n, "read_text_file"));
    assert_true(has_tool(tools, n, "list_directory"));
    mcp_tools_free(tools, n);

    llmos_buf text = {0};
    bool is_error = true;
    json_t *args = json_pack("{s:s}", "path", note);
    assert_int_equal(mcp_call_tool(c, "read_text_file", args, &text, &is_error), LLMOS_OK);
    json_decref(args);
    assert_false(is_error);
    assert_string_equal(text.data, body);

    buf_clear(&text);
    args = json_pack("{s:s}", "path", dir);
    assert_int_equal(mcp_call_tool(c, "list_directory", args, &text, &is_error), LLMOS_OK);
    json_decref(args);
    assert_false(is_error);
    assert_non_null(strstr(text.data, "note.txt"));

    /* outside the folder it was given: the tool fails (isError), the call does not */
    buf_clear(&text);
    args = json_pack("{s:s}", "path", "/etc/passwd");
    assert_int_equal(mcp_call_tool(c, "read_text_file", args, &text, &is_error), LLMOS_OK);
    json_decref(args);
    print_message("outside: %s\n", text.data);
    assert_true(is_error);
    assert_null(strstr(text.data, "root:"));
    buf_free(&text);
    mcp_close(c);
    tu_rmrf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_everything),
        cmocka_unit_test(test_server_filesystem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
