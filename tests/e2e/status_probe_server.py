"""A minimal handshake-era MCP server over Streamable HTTP whose tool
`refused` is answered with a chosen HTTP status and a JSON-RPC -32003 error
body, exactly as a gateway denial looks on the wire. Used to measure what
each official client does with each status (docs/clients.md, "What a denial
looks like to each client"):

    python status_probe_server.py PORT STATUS   # STATUS: 200, 400, 403 ...

`ok` answers normally, so a caller can check that its session survived.
`/_count` says how many tools/call requests arrived, per tool."""

import json
import sys
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATUS = int(sys.argv[2]) if len(sys.argv) > 2 else 403
CALLS: Counter = Counter()
TOOLS = [{"name": n, "description": n, "inputSchema": {"type": "object"}} for n in ("ok", "refused")]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status: int, body: dict | None, extra: dict | None = None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/_count":
            return self.send(200, dict(CALLS))
        self.send(405, None, {"Allow": "POST"})

    def do_DELETE(self):
        self.send(200, None)

    def do_POST(self):
        msg = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        method, mid = msg.get("method"), msg.get("id")
        if mid is None:
            return self.send(202, None)
        ok = lambda result: {"jsonrpc": "2.0", "id": mid, "result": result}  # noqa: E731
        if method == "initialize":
            version = msg["params"].get("protocolVersion", "2025-06-18")
            return self.send(200, ok({"protocolVersion": version, "capabilities": {"tools": {}},
                                      "serverInfo": {"name": "status-probe", "version": "1"}}),
                             {"Mcp-Session-Id": uuid.uuid4().hex})
        if method == "tools/list":
            return self.send(200, ok({"tools": TOOLS}))
        if method == "tools/call":
            name = msg["params"]["name"]
            CALLS[name] += 1
            if name == "refused":
                err = {"code": -32003, "message": 'tool "refused" is denied by policy (deny_tools)',
                       "data": {"reason": "deny_list"}}
                return self.send(STATUS, {"jsonrpc": "2.0", "id": mid, "error": err})
            return self.send(200, ok({"content": [{"type": "text", "text": "fine"}]}))
        if method == "ping":
            return self.send(200, ok({}))
        self.send(200, {"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
