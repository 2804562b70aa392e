"""The backend behind the gateway: it records every request byte for byte
(the demo server's recorder keeps bodies as lossy UTF-8 text, which would
erase exactly the charset and BOM differences this suite is about) and, for
response cases, answers as a hostile server would.

Requests are matched to cases by the `x-request-id` the gateway forwards;
response cases by an `x-diff-case` header.
"""

from __future__ import annotations

import json
import threading
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up (a client closing its SSE stream) are normal here."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Backend:
    def __init__(self):
        self.received: dict[str, dict] = {}
        self.script: dict[str, object] = {}  # case id -> RespCase
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _answer(self, status: int, ct: str | None, body: bytes):
                self.send_response(status)
                if ct is not None:
                    self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                body = self._body() if self.command == "POST" else b""
                rid = self.headers.get("x-request-id", "")
                headers: dict[str, str] = {}
                for k, v in self.headers.items():
                    k = k.lower()
                    headers[k] = f"{headers[k]}, {v}" if k in headers else v
                with backend.lock:
                    backend.received[rid] = {"method": self.command, "path": self.path, "headers": headers,
                                             "body": body}
                case = backend.script.get(self.headers.get("x-diff-case", ""))
                if case is None:
                    self._answer(200, "application/json", b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}')
                    return
                self._respond(case, body)

            def _respond(self, case, body: bytes):
                try:
                    msg = json.loads(body) if body else None
                except ValueError:
                    msg = None
                method = msg.get("method") if isinstance(msg, dict) else ("batch" if isinstance(msg, list) else None)
                p = case.placement
                if self.command == "GET":
                    if p == "get-stream":
                        return self._answer(200, case.content_type, case.body)
                    return self._answer(405, None, b"")
                if method == "tools/list" and p in ("json", "sse"):
                    return self._answer(200, case.content_type, case.body)
                if method == "batch" and p == "batch":
                    return self._answer(200, case.content_type, case.body)
                if method == "tools/list" and p in ("get-stream", "call-stream"):
                    return self._answer(202, None, b"")
                if method == "tools/call" and p == "call-stream":
                    return self._answer(200, case.content_type, case.body)
                self._answer(200, "application/json", b'{"jsonrpc":"2.0","id":1,"result":{}}')

            do_POST = do_GET = do_DELETE = _handle

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def get(self, request_id: str) -> dict | None:
        with self.lock:
            return self.received.get(request_id)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
