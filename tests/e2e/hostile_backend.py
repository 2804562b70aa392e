"""A hostile MCP backend whose every answer the test scripts, byte for byte.

It records every request it receives (method, path, headers, body), so a test
can count what arrived. An answer is `(status, headers, parts)`: each part is
bytes, written as its own HTTP chunk, or a `threading.Event` the backend waits
for before writing on (so a test, not a clock, decides when a stream goes on).
Answers are picked by JSON-RPC method (or "GET"/"DELETE"); `initialize` and
`notifications/*` have sensible defaults.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler

from harness import serve_http

JSON_TYPE = {"Content-Type": "application/json"}
SSE_TYPE = {"Content-Type": "text/event-stream"}


def result(id, res) -> dict:
    return {"jsonrpc": "2.0", "id": id, "result": res}


def json_answer(msg, status=200, headers=None) -> tuple:
    return status, {**JSON_TYPE, **(headers or {})}, [json.dumps(msg).encode()]


def sse_answer(*msgs, prefix=b"", status=200) -> tuple:
    events = [f"event: message\ndata: {json.dumps(m)}\n\n".encode() for m in msgs]
    if events:
        events[0] = prefix + events[0]
    return status, SSE_TYPE, events


class HostileBackend:
    def __init__(self):
        self.received: list[dict] = []
        self.answers: dict[str, tuple] = {}
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                key = self.command
                try:
                    msg = json.loads(body) if body else None
                    if isinstance(msg, dict) and isinstance(msg.get("method"), str):
                        key = msg["method"]
                except ValueError:
                    msg = None
                with backend.lock:
                    backend.received.append({"method": self.command, "path": self.path,
                                             "headers": dict(self.headers), "body": body.decode("utf-8", "replace"),
                                             "rpc": key})
                    answer = backend.answers.get(key)
                if answer is None:
                    answer = backend.default(key, msg)
                status, headers, parts = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for part in parts:
                    if isinstance(part, threading.Event):
                        part.wait(60)
                        continue
                    if part:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            do_POST = do_GET = do_DELETE = _handle

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    @staticmethod
    def default(key, msg) -> tuple:
        id = msg.get("id") if isinstance(msg, dict) else None
        if key == "initialize":
            return json_answer(result(id, {"protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                                           "serverInfo": {"name": "hostile", "version": "1"}}))
        if key == "ping":
            return json_answer(result(id, {}))
        if isinstance(key, str) and key.startswith("notifications/"):
            return 202, {}, []
        return json_answer(result(id, {"content": [{"type": "text", "text": "ok"}]}))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def answer(self, key: str, answer: tuple) -> None:
        with self.lock:
            self.answers[key] = answer

    def count(self, rpc: str) -> int:
        with self.lock:
            return sum(1 for r in self.received if r["rpc"] == rpc)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
