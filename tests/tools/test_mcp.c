/*
 * test_mcp.c - the MCP stdio client (src/tools/mcp.c) against scripted_mcp_server.py, a TEST
 * DOUBLE of a server that speaks the protocol well or badly: the handshake, tools/list over
 * two pages while the server pings us and sends a notification, tools/call (text, other
 * content, isError, a JSON-RPC error), and a server that sends malformed JSON, a huge line,
 * a line without end, never answers, lies about its tools' schema or the shape of a result,
 * speaks another protocol version, or dies at once. Each misbehaviour is an error that names
 * it, and the server is killed (its process gone, not a zombie).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "llmos/json.h"
#include "llmos/mcp.h"
#include "testutil.h"

static char script[1024];

static const char *python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static int find_script(void **state)
{
    (void)state;
    /* ctest sets LLMOS_SRC; run by hand, the script sits beside this file */
    const char *src = getenv("LLMOS_SRC");
    if (src)
        snprintf(script, sizeof script, "%s/tests/tools/scripted_mcp_server.py", src);
    else
        snprintf(script, sizeof script, "%.*sscripted_mcp_server.py",
                 (int)(strrchr(__FILE__, '/') ? strrchr(__FILE__, '/') - __FILE__ + 1 : 0),
                 __FILE__);
    return 0;
}

static llmos_err start(const char *mode, const mcp_limits *limits, mcp_client **c)
{
    const char *argv[] = {python(), script, mode, NULL};
    return mcp_connect(argv, limits, c);
}

static bool gone(pid_t pid)
{
    return kill(pid, 0) < 0 && errno == ESRCH;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_good_server(void **state)
{
    (void)state;
    /* an fd of ours without close-on-exec must not reach the server */
    int leak = open("/dev/null", O_RDONLY);
    assert_true(leak >= 0);
    assert_int_equal(dup2(leak, 100), 100);
    mcp_client *c = NULL;
    assert_int_equal(start("good", NULL, &c), LLMOS_OK);
    assert_string_equal(mcp_server_name(c), "scripted-mcp");
    assert_string_equal(mcp_server_version(c), "0.0.1");
    assert_string_equal(mcp_protocol_version(c), MCP_PROTOCOL_VERSION);
    pid_t pid = mcp_server_pid(c);
    assert_true(pid > 0);

    mcp_tool *tools = NULL;
    size_t n = 0;
    assert_int_equal(mcp_list_tools(c, &tools, &n), LLMOS_OK);
    assert_int_equal(n, 2);
    assert_string_equal(tools[0].name, "echo");
    assert_string_equal(tools[0].description, "Echoes its message");
    assert_string_equal(ljson_get_string(tools[0].input_schema, "type", ""), "object");
    assert_non_null(ljson_get_object(tools[0].input_schema, "properties"));
    assert_string_equal(tools[1].name, "fail");
    assert_string_equal(tools[1].description, "");
    mcp_tools_free(tools, n);

    llmos_buf text = {0};
    bool is_error = true;
    json_t *args = json_pack("{s:s}", "message", "hello\nworld");
    assert_int_equal(mcp_call_tool(c, "echo", args, &text, &is_error), LLMOS_OK);
    json_decref(args);
    assert_false(is_error);
    assert_string_equal(text.data, "Echo: hello\nworld\n[image image/png, 4 bytes of base64]");

    buf_clear(&text);
    assert_int_equal(mcp_call_tool(c, "fds", NULL, &text, &is_error), LLMOS_OK);
    print_message("the server's fds: %s\n", text.data);
    assert_non_null(strstr(text.data, "0 1 2"));
    assert_null(strstr(text.data, "100"));
    close(100);
    close(leak);

    buf_clear(&text);
    assert_int_equal(mcp_call_tool(c, "fail", NULL, &text, &is_error), LLMOS_OK);
    assert_true(is_error);
    assert_string_equal(text.data, "it failed");

    /* a JSON-RPC error is the call's error, and the server lives on */
    buf_clear(&text);
    assert_int_equal(mcp_call_tool(c, "nosuch", NULL, &text, &is_error), LLMOS_ERR_INVALID);
    assert_non_null(strstr(llmos_errmsg(), "Unknown tool: nosuch"));
    assert_int_equal(mcp_server_pid(c), pid);
    buf_clear(&text);
    assert_int_equal(mcp_call_tool(c, "fail", NULL, &text, &is_error), LLMOS_OK);

    /* what the caller passes is checked before it reaches the server */
    assert_int_equal(mcp_call_tool(c, "bad name", NULL, &text, &is_error), LLMOS_ERR_INVALID);
    json_t *arr = json_array();
    assert_int_equal(mcp_call_tool(c, "echo", arr, &text, &is_error), LLMOS_ERR_INVALID);
    json_decref(arr);
    buf_free(&text);

    mcp_close(c);
    assert_true(gone(pid));
}

/* connect must fail with `want`, the message must contain `says`, within `limit_s` */
static void expect_connect_fails(const char *mode, const mcp_limits *limits, llmos_err want,
                                 const char *says, double limit_s)
{
    mcp_client *c = NULL;
    double t0 = now_s();
    llmos_err err = start(mode, limits, &c);
    double took = now_s() - t0;
    print_message("%s: %s (%.2f s): %s\n", mode, llmos_strerror(err), took, llmos_errmsg());
    assert_int_equal(err, want);
    assert_null(c);
    assert_non_null(strstr(llmos_errmsg(), says));
    assert_true(took < limit_s);
}

static void test_malformed_json(void **state)
{
    (void)state;
    expect_connect_fails("malformed", NULL, LLMOS_ERR_FORMAT, "MCP server message", 10);
}

static void test_huge_line(void **state)
{
    (void)state;
    mcp_limits lim = {.message_bytes = 64 << 10};
    expect_connect_fails("huge", &lim, LLMOS_ERR_LIMIT, "limit", 10);
}

static void test_line_without_end(void **state)
{
    (void)state;
    mcp_limits lim = {.message_bytes = 64 << 10};
    expect_connect_fails("endless", &lim, LLMOS_ERR_LIMIT, "longer than the limit", 10);
}

static void test_never_answers(void **state)
{
    (void)state;
    mcp_limits lim = {.request_s = 0.5};
    expect_connect_fails("silent", &lim, LLMOS_ERR_LIMIT, "deadline", 5);
}

static void test_other_protocol_version(void **state)
{
    (void)state;
    expect_connect_fails("oldversion", NULL, LLMOS_ERR_UNSUPPORTED, "1999-01-01", 10);
}

static void test_dies_at_once(void **state)
{
    (void)state;
    /* its last words reach the message */
    expect_connect_fails("exits", NULL, LLMOS_ERR_IO, "boom", 10);
}

static void test_no_such_program(void **state)
{
    (void)state;
    const char *argv[] = {"/nonexistent/mcp-server", NULL};
    mcp_client *c = NULL;
    assert_int_equal(mcp_connect(argv, NULL, &c), LLMOS_ERR_NOT_FOUND);
    assert_null(c);
    assert_non_null(strstr(llmos_errmsg(), "no such program"));
    const char *bare[] = {"llmos-no-such-mcp-server", NULL};
    assert_int_equal(mcp_connect(bare, NULL, &c), LLMOS_ERR_NOT_FOUND);
    assert_non_null(strstr(llmos_errmsg(), "in PATH"));
    const char *empty[] = {NULL};
    assert_int_equal(mcp_connect(empty, NULL, &c), LLMOS_ERR_INVALID);
}

/* a server that breaks the protocol after the handshake is killed, and stays so */
static void expect_list_kills(const char *mode, const char *says)
{
    mcp_client *c = NULL;
    assert_int_equal(start(mode, NULL, &c), LLMOS_OK);
    pid_t pid = mcp_server_pid(c);
    mcp_tool *tools = NULL;
    size_t n = 99;
    assert_int_equal(mcp_list_tools(c, &tools, &n), LLMOS_ERR_FORMAT);
    print_message("%s: %s\n", mode, llmos_errmsg());
    assert_non_null(strstr(llmos_errmsg(), says));
    assert_null(tools);
    assert_int_equal(n, 0);
    assert_int_equal(mcp_server_pid(c), 0);
    assert_true(gone(pid));
    assert_int_equal(mcp_list_tools(c, &tools, &n), LLMOS_ERR_IO);
    assert_non_null(strstr(llmos_errmsg(), "stopped earlier"));
    mcp_close(c);
}

static void test_lies_about_schema(void **state)
{
    (void)state;
    expect_list_kills("lies", "inputSchema");
    expect_list_kills("badname", "\"name\"");
}

static void test_bad_call_result(void **state)
{
    (void)state;
    mcp_client *c = NULL;
    assert_int_equal(start("badcall", NULL, &c), LLMOS_OK);
    pid_t pid = mcp_server_pid(c);
    llmos_buf text = {0};
    bool is_error = false;
    assert_int_equal(mcp_call_tool(c, "echo", NULL, &text, &is_error), LLMOS_ERR_FORMAT);
    assert_non_null(strstr(llmos_errmsg(), "content"));
    assert_true(gone(pid));
    buf_free(&text);
    mcp_close(c);
}

/* the parser alone: what is and is not a JSON-RPC 2.0 message */
static void test_parse_message(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        llmos_err want;
        mcp_message_kind kind;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", LLMOS_OK, MCP_MSG_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":-1,\"message\":\"m\"}}", LLMOS_OK,
         MCP_MSG_RESPONSE},
        {"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}", LLMOS_OK, MCP_MSG_REQUEST},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{}}", LLMOS_OK,
         MCP_MSG_NOTIFICATION},
        {"[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":{}}", LLMOS_ERR_FORMAT, 0},
        {"{\"id\":1,\"result\":{}}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"result\":{}}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"id\":1}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1,\"error\":{\"code\":1,\"message\":\"\"}}",
         LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\",\"message\":\"m\"}}",
         LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"method\":7}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":3}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"m\",\"result\":{}}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"result\":{}}", LLMOS_ERR_FORMAT, 0},
        {"{\"jsonrpc\":\"2.0\"", LLMOS_ERR_FORMAT, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mcp_message m;
        llmos_err err = mcp_parse_message(cases[i].line, strlen(cases[i].line), &m);
        if (err != cases[i].want)
            print_message("case %zu: %s: %s\n", i, cases[i].line, llmos_errmsg());
        assert_int_equal(err, cases[i].want);
        if (err == LLMOS_OK)
            assert_int_equal(m.kind, cases[i].kind);
        else
            assert_null(m.json);
        mcp_message_free(&m);
    }
    mcp_message m;
    const char *e = "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32601,\"message\":\"no\"}}";
    assert_int_equal(mcp_parse_message(e, strlen(e), &m), LLMOS_OK);
    assert_null(m.result);
    assert_int_equal(m.error_code, -32601);
    assert_string_equal(m.error_message, "no");
    mcp_message_free(&m);
    mcp_message_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_message),
        cmocka_unit_test(test_good_server),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_huge_line),
        cmocka_unit_test(test_line_without_end),
        cmocka_unit_test(test_never_answers),
        cmocka_unit_test(test_other_protocol_version),
        cmocka_unit_test(test_dies_at_once),
        cmocka_unit_test(test_no_such_program),
        cmocka_unit_test(test_lies_about_schema),
        cmocka_unit_test(test_bad_call_result),
    };
    return cmocka_run_group_tests(tests, find_script, NULL);
}
