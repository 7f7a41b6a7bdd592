#!/usr/bin/env python3
"""scripted_mcp_server.py - a TEST DOUBLE of an MCP server for tests/tools/test_mcp.c.

It speaks MCP over stdio (newline-delimited JSON-RPC 2.0) well or badly, as argv[1] says:
  good        initialize, tools/list in two pages (with a notification and a ping request of
              its own before the answer), tools/call of echo / fail / fds (its open file
              descriptors) / unknown; it writes 1 MiB
              to stderr before its first answer, to show that stderr is drained
  malformed   answers initialize with bytes that are not JSON
  huge        answers initialize with a 2 MiB line
  endless     writes 2 MiB without any newline
  silent      reads everything and never answers
  lies        a good initialize, then a tools/list whose entry has no object schema
  badname     a good initialize, then a tool named with spaces and a shell quote
  badcall     a good initialize, then a tools/call result without a content array
  oldversion  answers with a protocol version no client speaks
  exits       says "boom" on stderr and exits before answering
"""
import json
import sys

mode = sys.argv[1]
out = sys.stdout


def send(obj):
    out.write(json.dumps(obj) + "\n")
    out.flush()


def result(req, res):
    send({"jsonrpc": "2.0", "id": req["id"], "result": res})


def init_result(req):
    result(req, {"protocolVersion": req["params"]["protocolVersion"],
                 "capabilities": {"tools": {}},
                 "serverInfo": {"name": "scripted-mcp", "version": "0.0.1"}})


if mode == "exits":
    sys.stderr.write("boom\n")
    sys.exit(3)
if mode == "endless":
    out.write("x" * (2 << 20))
    out.flush()
    sys.stdin.read()
    sys.exit(0)

initialized = False
for line in sys.stdin:
    req = json.loads(line)
    method = req.get("method")
    if method == "initialize":
        if mode == "malformed":
            out.write('{"jsonrpc": "2.0", "id": 1, "result": {oops\n')
            out.flush()
            continue
        if mode == "huge":
            send({"jsonrpc": "2.0", "id": req["id"], "result": {"pad": "y" * (2 << 20)}})
            continue
        if mode == "silent":
            continue
        if mode == "oldversion":
            result(req, {"protocolVersion": "1999-01-01", "capabilities": {}})
            continue
        if mode == "good":
            sys.stderr.write("e" * (1 << 20))
            sys.stderr.flush()
        init_result(req)
    elif method == "notifications/initialized":
        initialized = True
    elif method == "tools/list":
        if not initialized:
            send({"jsonrpc": "2.0", "id": req["id"],
                  "error": {"code": -32600, "message": "not initialized"}})
            continue
        if mode == "lies":
            result(req, {"tools": [{"name": "echo", "inputSchema": "anything goes"}]})
            continue
        if mode == "badname":
            result(req, {"tools": [{"name": "rm -rf '/", "inputSchema": {"type": "object"}}]})
            continue
        cursor = (req.get("params") or {}).get("cursor")
        if cursor is None:
            send({"jsonrpc": "2.0", "method": "notifications/message",
                  "params": {"level": "info", "data": "listing"}})
            send({"jsonrpc": "2.0", "id": "srv-1", "method": "ping"})
            reply = json.loads(sys.stdin.readline())
            if reply.get("id") != "srv-1" or reply.get("result") != {}:
                sys.exit("bad ping reply: %r" % reply)
            result(req, {"tools": [{"name": "echo", "description": "Echoes its message",
                                    "inputSchema": {"type": "object", "properties": {
                                        "message": {"type": "string"}},
                                        "required": ["message"]}}],
                         "nextCursor": "page2"})
        elif cursor == "page2":
            result(req, {"tools": [{"name": "fail", "inputSchema": {"type": "object"}}]})
        else:
            sys.exit("bad cursor %r" % cursor)
    elif method == "tools/call":
        name = req["params"]["name"]
        args = req["params"].get("arguments")
        if mode == "badcall":
            result(req, {"content": "not an array"})
        elif name == "echo":
            result(req, {"content": [{"type": "text", "text": "Echo: " + args["message"]},
                                     {"type": "image", "mimeType": "image/png", "data": "AAAA"}]})
        elif name == "fds":
            import os
            result(req, {"content": [{"type": "text",
                                      "text": " ".join(sorted(os.listdir("/proc/self/fd")))}]})
        elif name == "fail":
            result(req, {"content": [{"type": "text", "text": "it failed"}], "isError": True})
        else:
            send({"jsonrpc": "2.0", "id": req["id"],
                  "error": {"code": -32602, "message": "Unknown tool: " + name}})
