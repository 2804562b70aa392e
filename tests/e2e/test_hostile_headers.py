"""Header bytes the filter cannot read as text, from a client or from a
backend, through the real Envoy and filter: a header the gateway reads that
is not UTF-8 is refused (400, JSON-RPC envelope) and never reaches the
backend; any other header passes untouched; nothing crashes the VM.

Python's http.client refuses non-UTF-8 header values, so requests are
written on raw sockets, and the hostile backend is a small http.server that
sends raw header bytes. The gateway runs one worker (`concurrency=1`): a
crash would take down the worker every request uses, so the legitimate
requests interleaved with the hostile ones would see it (503), and Envoy's
wasm crash/reload counters would move.
"""

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import free_port, jsonrpc

CONFIG = """
servers:
  - name: demo
    url: {url}
inspection: {{ tool_integrity: off }}
limits: {{ max_body_bytes: 65536 }}
"""

API_KEY = "key-hostile-0123456789"
AUTH_CONFIG = """
servers:
  - name: demo
    url: {url}
auth:
  enabled: true
  type: api_key
  header: X-Team-Key
  clients:
    - {{ name: team-a, token: {key} }}
inspection: {{ tool_integrity: off }}
"""

BAD = b"caf\xe9"  # Latin-1 e-acute: valid HTTP obs-text, not UTF-8.


def connect(where: int | str, timeout: float) -> socket.socket:
    """A TCP connection to a loopback port, or to a Unix socket path (the control listener)."""
    if isinstance(where, int):
        return socket.create_connection(("127.0.0.1", where), timeout=timeout)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(where)
    return s


def raw(port: int | str, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"",
        timeout: float = 15.0) -> tuple[int, dict[str, bytes], bytes]:
    """One HTTP/1.1 request with exactly these header bytes; (status, headers, body)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [n + b": " + v for n, v in headers]
    if body or method == "POST":
        lines.append(b"Content-Length: " + str(len(body)).encode())
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body
    chunks = []
    with connect(port, timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered (e.g. 413) before the whole body was sent
        try:
            while c := s.recv(65536):
                chunks.append(c)
        except ConnectionResetError:
            if not chunks:
                raise
    resp = b"".join(chunks)
    head, _, rest = resp.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = int(status_line.split()[1])
    hdrs: dict[str, bytes] = {}
    for line in header_lines:
        k, _, v = line.partition(b":")
        hdrs[k.decode("latin-1").strip().lower()] = v.strip()
    if hdrs.get("transfer-encoding", b"").lower() == b"chunked":
        out, pos = b"", 0
        while True:
            end = rest.index(b"\r\n", pos)
            size = int(rest[pos:end].split(b";")[0], 16)
            if size == 0:
                break
            out += rest[end + 2:end + 2 + size]
            pos = end + 2 + size + 2
        rest = out
    return status, hdrs, rest


def mcp_headers(extra: list[tuple[bytes, bytes]] = ()) -> list[tuple[bytes, bytes]]:
    return [(b"Content-Type", b"application/json"), (b"Accept", b"application/json, text/event-stream"), *extra]


def ping_body(i: int = 1) -> bytes:
    return json.dumps(jsonrpc("ping", id=i)).encode()


def crash_counters(gw) -> dict[str, str]:
    """Envoy's wasm failure counters (VM crashes, reloads): any change is a crash."""
    stats = gw.admin("/stats?filter=wasm").text
    lines = [l for l in stats.splitlines() if re.search(r"crash|reload|fail", l)]
    assert lines, f"no wasm crash/reload counters in the admin stats:\n{stats[:2000]}"
    return dict(l.split(": ", 1) for l in lines)


def legit(gw, i: int) -> None:
    """A normal call through the same worker: must always work."""
    status, _, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers(), ping_body(1000 + i))
    assert status == 200, (status, body[:300])
    assert json.loads(body)["id"] == 1000 + i


# Headers the gateway reads, each refused with a non-UTF-8 value.
READ_HEADERS = [b"Authorization", b"Content-Type", b"Accept", b"Origin", b"MCP-Protocol-Version",
                b"Mcp-Method", b"Mcp-Name", b"Mcp-Session-Id", b"Mcp-Param-region", b"X-Mcpx-Client",
                b"Last-Event-ID", b"Content-Encoding", b"X-Forwarded-Proto"]


def test_non_utf8_request_headers_never_crash_the_filter(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url), concurrency=1)
    before = crash_counters(gw)
    demo.reset()
    legit(gw, 0)
    arrived = len(demo.received())
    assert arrived == 1

    # Read headers: 400 with the envelope, nothing reaches the backend.
    for i, name in enumerate(READ_HEADERS):
        headers = [h for h in mcp_headers() if h[0].lower() != name.lower()] + [(name, BAD)]
        status, hdrs, body = raw(gw.port, "POST", "/mcp/demo", headers, ping_body(i))
        assert status == 400, (name, status, body[:300])
        assert hdrs.get("content-type") == b"application/json", (name, hdrs)
        err = json.loads(body)["error"]
        assert err["code"] == -32600 and name.decode().lower() in err["message"].lower(), (name, err)
        assert len(demo.received()) == arrived, f"{name!r}: a refused request reached the backend"
        legit(gw, i + 1)
        arrived += 1
        assert len(demo.received()) == arrived

    # Opaque headers pass: the call is answered by the backend.
    for i, extra in enumerate([[(b"X-A", BAD)], [(b"Cookie", b"s=\xff\xfe")], [(b"User-Agent", b"\x80\x81")],
                               [(b"X-Request-Id", BAD)], [(b"X-A", BAD), (b"X-B", b"\xc3\x28")]]):
        status, _, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers(extra), ping_body(100 + i))
        assert status == 200, (extra, status, body[:300])
        assert json.loads(body)["id"] == 100 + i
        arrived += 1
        assert len(demo.received()) == arrived
        legit(gw, 100 + i)
        arrived += 1

    # The gateway's own endpoints and the GET/DELETE paths, same rules.
    for method, path in [("GET", "/health"), ("GET", "/servers"), ("GET", "/metrics"), ("GET", "/mcp/demo"),
                         ("DELETE", "/mcp/demo"), ("GET", "/elsewhere")]:
        status, _, body = raw(gw.port, method, path, [(b"Origin", BAD)])
        assert status == 400, (method, path, status, body[:200])
        status, _, _ = raw(gw.port, method, path, [(b"X-A", BAD)])
        assert status != 503, (method, path)
    # The operator control listener too.
    status, _, body = raw(str(gw.control_path), "GET", "/baseline", [(b"Origin", BAD)])
    assert status == 400, (status, body[:200])

    legit(gw, 999)
    assert crash_counters(gw) == before


def test_oversized_and_odd_values_never_crash_the_filter(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url), concurrency=1)
    before = crash_counters(gw)
    demo.reset()
    big = b"\xe9" * 40_000
    cases = [
        ([(b"X-A", big)], {200}),                            # opaque and large: passes
        ([(b"Mcp-Name", big)], {400}),                       # read and not text
        ([(b"Mcp-Name", b"a" * 40_000)], {400}),             # read, text, disagrees with the body
        ([(b"X-A", b"v" * 200_000)], {431, 400}),            # over Envoy's header limit
        ([(b"X-A", b"")], {200}),
        ([(b"X-" + str(i).encode(), BAD) for i in range(90)], {200}),   # many opaque headers
        ([(b"Authorization", b"Bearer " + b"\xff" * 8000)], {400}),
    ]
    arrived = 0
    for i, (extra, expected) in enumerate(cases):
        status, _, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers(extra), ping_body(i))
        assert status in expected, (i, status, body[:200])
        if status == 200:
            arrived += 1
        assert len(demo.received()) == arrived, i
        legit(gw, i)
        arrived += 1
    # Values the filter copies into Envoy properties (filter state for the
    # audit line: method, tool): control characters, NUL, long, odd Unicode.
    for i, (method, tool) in enumerate([("tools/call", "a\u0000b\nc\r\u2028"), ("tools/call", "t" * 60_000),
                                        ("tools/call", "\uffff\ud7ff" * 1000), ("x\u0000\n" * 5000, None)]):
        msg = jsonrpc(method, {"name": tool, "arguments": {}} if tool else None, id=700 + i)
        status, _, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers(), json.dumps(msg).encode())
        assert status in {200, 400, 403, 413}, (i, status, body[:200])
        if status == 200:
            arrived += 1
        assert len(demo.received()) == arrived, i
        legit(gw, 700 + i)
        arrived += 1
    # Bodies: not UTF-8, truncated, oversized.
    for body, expected in [(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo\xff"}}', {400}),
                           (b'{"jsonrpc":"2.0","id":1,"method":"pi', {400}),
                           (b"\xff" * 70_000, {413})]:
        status, _, _ = raw(gw.port, "POST", "/mcp/demo", mcp_headers(), body, timeout=30)
        assert status in expected, status
        assert len(demo.received()) == arrived
        legit(gw, 500 + arrived)
        arrived += 1
    assert crash_counters(gw) == before


class Hostile(BaseHTTPRequestHandler):
    """An MCP backend whose answers carry header bytes that are not UTF-8."""

    protocol_version = "HTTP/1.1"
    received: list[str] = []
    content_type = b"application/json"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        Hostile.received.append(body.decode("utf-8", "replace"))
        msg = json.loads(body)
        if msg.get("method") == "tools/list":
            result = {"tools": [{"name": "echo", "description": "d", "inputSchema": {"type": "object"}}]}
        else:
            result = {}
        out = json.dumps({"jsonrpc": "2.0", "id": msg.get("id"), "result": result}).encode()
        self.send_response_only(200)
        self.flush_headers()
        # Raw bytes: http.server would encode str headers itself.
        self.wfile.write(b"Content-Type: " + Hostile.content_type + b"\r\n")
        self.wfile.write(b"X-Evil: " + BAD + b"\r\n")
        self.wfile.write(b"Set-Cookie: s=\xff\xfe\r\n")
        self.wfile.write(b"Content-Length: " + str(len(out)).encode() + b"\r\n\r\n")
        self.wfile.write(out)


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hostile)
    Hostile.received = []
    Hostile.content_type = b"application/json"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("content_type", [b"application/json", b"application/json; charset=\xe9"])
def test_non_utf8_response_headers_never_crash_the_filter(hostile, gateway_factory, content_type):
    Hostile.content_type = content_type
    url = f"http://127.0.0.1:{hostile.server_address[1]}/mcp"
    gw = gateway_factory(CONFIG.format(url=url), concurrency=1)
    before = crash_counters(gw)
    for i in range(3):
        # The inspected tools/list answer (its headers are read by the filter).
        status, hdrs, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers(),
                                 json.dumps(jsonrpc("tools/list", id=10 + i)).encode())
        assert status == 200, (status, body[:300])
        assert [t["name"] for t in json.loads(body)["result"]["tools"]] == ["echo"]
        assert hdrs.get("x-evil") == BAD  # passed through untouched
        # The /health probe (its answer's headers are read by the filter), unauthenticated.
        status, _, body = raw(gw.port, "GET", "/health", [], timeout=10)
        assert status == 200, (status, body[:300])
        assert json.loads(body)["servers"]["demo"]["healthy"] is True, body
        # Other calls pass with the header as sent.
        status, hdrs, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers(), ping_body(20 + i))
        assert status == 200 and hdrs.get("x-evil") == BAD, (status, body[:300])
    assert sum('"tools/list"' in b for b in Hostile.received) == 3
    assert crash_counters(gw) == before


def test_non_utf8_health_probe_answer_with_auth(hostile, gateway_factory):
    """The unauthenticated load-balancer /health over a hostile backend: answers, does not hang."""
    url = f"http://127.0.0.1:{hostile.server_address[1]}/mcp"
    gw = gateway_factory(AUTH_CONFIG.format(url=url, key=API_KEY), concurrency=1)
    before = crash_counters(gw)
    status, _, body = raw(gw.port, "GET", "/health", [], timeout=10)
    assert (status, json.loads(body)) == (200, {"status": "healthy"})
    # A credential header that is not text is refused, not guessed.
    status, _, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers([(b"X-Team-Key", BAD)]), ping_body())
    assert status == 400, (status, body[:200])
    status, _, body = raw(gw.port, "POST", "/mcp/demo", mcp_headers([(b"X-Team-Key", API_KEY.encode())]), ping_body())
    assert status == 200, (status, body[:200])
    assert crash_counters(gw) == before
