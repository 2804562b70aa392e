"""Envoy defaults for a hostile network, through the real `mcpx run`:
header names with underscores never reach a backend, a client that trickles
its request is cut off while a long SSE response keeps streaming, and the
connection cap refuses connections beyond it (docs/deployment.md#hostile-network-defaults).

Timing: nothing here depends on how fast the machine is. Slow clients would
need minutes to finish their requests while the bound is seconds; the SSE
backend streams until the test tells it to stop; every wait is a bounded poll
on a condition."""

from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest

from harness import JSON, jsonrpc, request, serve_http, wait_until


class StreamingBackend:
    """A Streamable HTTP backend the test controls. It records every request
    it receives; `tools/call stream` (POST) and GET answer with an SSE stream
    of one event every 50 ms until `stop_streams()`, then the POST's result."""

    def __init__(self):
        self.received: list[dict] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def record(self, body: bytes):
                with backend.lock:
                    backend.received.append({"method": self.command, "path": self.path,
                                             "headers": {k.lower(): v for k, v in self.headers.items()},
                                             "body": body.decode("utf-8", "replace")})

            def chunk(self, data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def stream(self, final: dict | None):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                n = 0
                try:
                    while not backend.stop.wait(0.05):
                        note = {"jsonrpc": "2.0", "method": "notifications/message",
                                "params": {"level": "info", "data": n}}
                        self.chunk(f"event: message\ndata: {json.dumps(note)}\n\n".encode())
                        n += 1
                    if final is not None:
                        self.chunk(f"event: message\ndata: {json.dumps(final)}\n\n".encode())
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass

            def do_GET(self):
                self.record(b"")
                self.stream(None)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                self.record(body)
                msg = json.loads(body)
                if msg.get("method") == "tools/call" and msg["params"]["name"] == "stream":
                    return self.stream({"jsonrpc": "2.0", "id": msg["id"],
                                        "result": {"content": [{"type": "text", "text": "done"}]}})
                out = json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": {}}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = serve_http(Handler)
        self.port = self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def requests(self) -> list[dict]:
        with self.lock:
            return list(self.received)

    def stop_streams(self):
        self.stop.set()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    b = StreamingBackend()
    yield b
    b.close()


class SseClient(threading.Thread):
    """Reads an SSE response and timestamps every `data:` line."""

    def __init__(self, port: int, method: str, body: bytes | None):
        super().__init__(daemon=True)
        self.events: list[tuple[float, str]] = []
        self.ended: float | None = None
        self.status_line = b""
        self.sock = socket.create_connection(("127.0.0.1", port))
        head = f"{method} /mcp/s HTTP/1.1\r\nHost: gw\r\nAccept: application/json, text/event-stream\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.sock.sendall(head.encode() + b"\r\n" + (body or b""))
        self.started = time.monotonic()

    def run(self):
        buf = b""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if not self.status_line:
                        self.status_line = line.strip()
                    if line.startswith(b"data:"):
                        self.events.append((time.monotonic(), line[5:].strip().decode()))
        except OSError:
            pass
        self.ended = time.monotonic()
        self.sock.close()

    def events_after(self, t: float) -> int:
        return sum(1 for at, _ in list(self.events) if at > t)


class Trickler(threading.Thread):
    """A client that sends its request one byte every 200 ms: the headers
    (`part="headers"`) or, after complete headers, the body (`part="body"`).
    It would need minutes to finish; it stops sending once the gateway
    answers and records when the gateway closed the connection."""

    def __init__(self, port: int, part: str, marker: str):
        super().__init__(daemon=True)
        body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": marker + "x" * 2000}})).encode()
        head = (f"POST /mcp/s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n").encode()
        if part == "headers":
            self.upfront, self.slow = b"", head + b"X-Padding: " + b"p" * 2000 + b"\r\n\r\n" + body
        else:
            self.upfront, self.slow = head + b"\r\n", body
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(self.upfront)
        self.started = time.monotonic()
        self.answer = b""
        self.closed: float | None = None
        self.sent_everything = False

    def run(self):
        try:
            for i in range(len(self.slow)):
                readable, _, _ = select.select([self.sock], [], [], 0.2)
                if readable:
                    break
                self.sock.sendall(self.slow[i:i + 1])
            else:
                self.sent_everything = True
            # Read the answer until the gateway closes the connection.
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.answer += data
        except OSError:
            pass
        self.closed = time.monotonic()
        self.sock.close()

    def status(self) -> int | None:
        first = self.answer.split(b"\r\n", 1)[0].split()
        return int(first[1]) if len(first) > 1 and first[1].isdigit() else None

    def body(self) -> dict:
        return json.loads(self.answer.split(b"\r\n\r\n", 1)[1])


def limits_config(url: str, limits: str) -> str:
    return f"""
servers:
  - name: s
    url: {url}
inspection: {{ tool_integrity: off }}
limits: {limits}
"""


def test_underscore_headers_never_reach_the_backend(demo, gateway_factory):
    gw = gateway_factory(f"servers:\n  - name: demo\n    url: {demo.url}\n")
    demo.reset()
    sneaky = {"x_mcpx_client": "admin", "Mcp_Method": "tools/list", "mcp_name": "other_tool",
              "X_Forwarded_For": "10.0.0.1", "x_mcpx_tool": "demo/_other"}
    call = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, id=11)
    r = gw.post("demo", call, headers=sneaky)
    # Dropped, not refused: the call itself is fine and goes through.
    assert r.status == 200, r.text
    r = gw.request("GET", "/mcp/demo", headers={"Accept": "text/event-stream", **sneaky}, timeout=5)
    received = demo.received()
    assert len(received) == 2, received
    for rec in received:
        names = list(rec["headers"])
        # Whatever a WSGI/CGI server would turn into X-Mcpx-Client or Mcp-Method is absent.
        assert [n for n in names if "_" in n] == [], names
        cgi = {n.replace("_", "-") for n in names}
        assert not cgi & {"x-mcpx-client", "mcp-method", "mcp-name", "x-mcpx-tool"}, names
    stats = gw.admin("/stats?filter=dropped_headers_with_underscores").text
    assert any(int(line.rsplit(":", 1)[1]) >= 10 for line in stats.splitlines() if line.strip()), stats


def test_underscore_headers_are_dropped_over_http2_too(demo, gateway_factory):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl (for an h2c client) is not installed")
    gw = gateway_factory(f"servers:\n  - name: demo\n    url: {demo.url}\n")
    demo.reset()
    body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, id=12))
    out = subprocess.run([curl, "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                          f"http://127.0.0.1:{gw.port}/mcp/demo", "-H", "content-type: application/json",
                          "-H", "x_mcpx_client: admin", "-H", "Mcp_Method: tools/list", "-d", body],
                         capture_output=True, text=True, timeout=60).stdout
    assert out == "2 200", out
    received = demo.received()
    assert len(received) == 1, received
    assert [n for n in received[0]["headers"] if "_" in n] == [], received[0]["headers"]


def test_trickling_clients_are_cut_off_while_sse_streams_outlive_the_bound(backend, gateway_factory):
    request_timeout = 2.0
    gw = gateway_factory(limits_config(backend.url, "{ request_headers_timeout: 1s, request_timeout: 2s }"))

    # Two long streams: a POST answered with SSE and a GET stream.
    post = SseClient(gw.port, "POST", json.dumps(jsonrpc("tools/call", {"name": "stream", "arguments": {}}, 7)).encode())
    get = SseClient(gw.port, "GET", None)
    for s in (post, get):
        s.start()
    wait_until(lambda: post.events and get.events, timeout=30, what="both streams flowing")

    slow = [Trickler(gw.port, "body", f"slowbody{i}-") for i in range(8)]
    slow += [Trickler(gw.port, "headers", f"slowhead{i}-") for i in range(4)]
    for t in slow:
        t.start()
    wait_until(lambda: all(t.closed for t in slow), timeout=90, what="every trickling client cut off")
    last_cut = max(t.closed for t in slow)

    for t in slow:
        assert not t.sent_everything, "a trickler finished its request: the bound did not apply"
        assert t.closed - t.started >= 0.9, "cut before any timeout could have fired"
        assert t.status() == 408, t.answer[:300]
        # Envoy's 408 in the gateway's JSON envelope, naming which bound fired.
        assert t.body()["error"]["code"] == -32600, t.answer
    messages = {t.body()["error"]["message"].split(":")[0] for t in slow}
    assert messages == {"request timeout", "request header timeout"}, messages

    # The streams started before every trickler and are still streaming after
    # the last one was cut: they outlived the request timeout.
    wait_until(lambda: post.events_after(last_cut) >= 3 and get.events_after(last_cut) >= 3, timeout=30,
               what="events after the last cut-off")
    for s in (post, get):
        assert s.ended is None, "the stream ended"
        assert s.events[-1][0] - s.started > request_timeout
        assert s.status_line.startswith(b"HTTP/1.1 200"), s.status_line

    # Nothing of any trickled request reached the backend: exactly the two streams did.
    got = backend.requests()
    assert sorted(r["method"] for r in got) == ["GET", "POST"], [(r["method"], r["body"][:60]) for r in got]
    assert not any("slow" in r["body"] for r in got)

    # The POST stream ends normally with its result once the backend finishes.
    backend.stop_streams()
    result = {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "done"}]}}
    wait_until(lambda: post.events and json.loads(post.events[-1][1]) == result, timeout=30,
               what="the POST stream's result")


def listener_stat(gw, name: str) -> int:
    """A stat of the main listener (0 while Envoy has not created it)."""
    wanted = f"listener.127.0.0.1_{gw.port}.{name}"
    for line in gw.admin(f"/stats?filter={name}").text.splitlines():
        key, _, value = line.partition(": ")
        if key == wanted:
            return int(value)
    return 0


def refused(port: int) -> bool:
    """Whether a new connection is closed without an answer to its request."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"GET /mcp/s HTTP/1.1\r\nHost: gw\r\n\r\n")
        return s.recv(100) == b""
    except socket.timeout:
        return False  # held open without an answer: not refused
    except OSError:
        return True  # reset by the gateway
    finally:
        s.close()


def test_connection_cap_refuses_connections_beyond_it(backend, gateway_factory):
    cap = 6
    gw = gateway_factory(limits_config(backend.url, f"{{ max_connections: {cap} }}"))

    held = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(cap)]
    try:
        wait_until(lambda: listener_stat(gw, "downstream_cx_active") == cap, timeout=30,
                   what=f"{cap} connections accepted")
        before = listener_stat(gw, "downstream_global_cx_overflow")
        assert refused(gw.port)
        assert refused(gw.port)
        assert listener_stat(gw, "downstream_global_cx_overflow") >= before + 2
        # The refused requests never reached the backend.
        assert backend.requests() == []
        # The operator's loopback listeners are exempt: admin still answers.
        assert gw.admin("/ready").status == 200
        # A held connection under the cap is served normally.
        held[0].sendall(b"POST /mcp/s HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: "
                        + str(len(json.dumps(jsonrpc("ping")))).encode() + b"\r\n\r\n"
                        + json.dumps(jsonrpc("ping")).encode())
        assert held[0].recv(100).startswith(b"HTTP/1.1 200"), "a connection under the cap was not served"
        assert len(backend.requests()) == 1
    finally:
        for s in held:
            s.close()
    # Slots free again: new connections are served.
    wait_until(lambda: listener_stat(gw, "downstream_cx_active") < cap, timeout=30, what="held connections closed")
    r = request(gw.port, "POST", "/mcp/s", json.dumps(jsonrpc("ping")), JSON)
    assert r.status == 200, r.text
    # Envoy no longer warns that no connection limit is configured.
    assert "no configured limit to the number of allowed active downstream connections" not in gw.process.log()
