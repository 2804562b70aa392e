"""Replays what the gateway delivered to a real MCP client.

The real TypeScript SDK `Client` connects to `/r/<case>`; the handshake is
answered plainly, and its `tools/list` (and, for the call-stream placement,
its `tools/call`) get the exact answers the gateway delivered for that case.
A GET stream is held until the client's `tools/list` has arrived, as a
hostile server would time it, so a list on it answers a pending request.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote, unquote
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up (a client closing its SSE stream) are normal here."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Replay:
    def __init__(self, streams: dict[str, list[dict]]):
        self.streams = streams
        self.listed = {cid: threading.Event() for cid in streams}
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, status: int, ct: str | None, body: bytes):
                self.send_response(status)
                if ct:
                    self.send_header("Content-Type", ct)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _stream(self, cid: str, label: str) -> dict | None:
                return next((s for s in replay.streams.get(cid, []) if s["label"] == label), None)

            def _play(self, s: dict):
                self._answer(s["status"], s["content_type"], bytes.fromhex(s["body_hex"]))

            def do_GET(self):
                cid = unquote(self.path.rsplit("/", 1)[-1])
                s = self._stream(cid, "get")
                if s is None:
                    return self._answer(405, None, b"")
                replay.listed[cid].wait(10)
                self._play(s)

            def do_DELETE(self):
                self._answer(200, None, b"")

            def do_POST(self):
                cid = unquote(self.path.rsplit("/", 1)[-1])
                msg = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                method = msg.get("method")
                if method == "initialize":
                    result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                              "serverInfo": {"name": "replay", "version": "1.0.0"}}
                    return self._answer(200, "application/json",
                                        json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode())
                if "id" not in msg:
                    return self._answer(202, None, b"")
                if method == "tools/list" and (s := self._stream(cid, "post-list")) is not None:
                    self._play(s)
                    replay.listed[cid].set()
                    return None
                if method == "tools/call" and (s := self._stream(cid, "post-call")) is not None:
                    return self._play(s)
                self._answer(200, "application/json",
                             json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": {"content": []}}).encode())

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, cid: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/r/{quote(cid, safe='')}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
