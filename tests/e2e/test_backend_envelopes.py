"""Envoy-made failures on the way to a backend reach the client in the
gateway's JSON envelope, with the request's id, the documented reason in the
audit line, and nothing sent on to the backend that the reply says was not
(docs/operations.md, "Other Envoy-made failures get the same envelope"):

- overflow: more requests in flight than `servers[].max_in_flight` -> 503,
  reason `overflow`, `Retry-After: 1`;
- upstream timeout: an HTTP backend silent for `servers[].request_timeout`
  -> 504, reason `upstream_timeout`.

Each condition is made by the test itself (a stream it holds open, a backend
that never answers until released), never by a clock race.
"""

from __future__ import annotations

import http.client
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from harness import JSON, StreamBackend, jsonrpc, read_sse_event, serve_http, wait_until

UNAVAILABLE = -32050

CONFIG = """
servers:
  - name: s
    url: {url}
    {extra}
circuit_breaker: {{ enabled: false }}
audit: {{ output: {audit} }}
"""


def audit_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def audited(path: Path, rpc_id: int) -> dict:
    """The audit line of the request whose JSON-RPC id was `rpc_id` (the
    filter writes it when the response completes)."""
    def find():
        for line in audit_lines(path):
            if line.get("event") == "request" and line.get("status") in (503, 504) and line.get("reason"):
                return line
        return None
    return wait_until(find, timeout=20, what=f"the audit line of request {rpc_id}")


@pytest.fixture
def stream_backend():
    backend = StreamBackend()
    yield backend
    backend.finish()
    backend.stop()


class SilentBackend:
    """A backend that reads each request and then says nothing at all (no
    status line) until `release()`: the gateway must give up on it first."""

    def __init__(self):
        self.arrivals: list[dict] = []
        self.released = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                owner.arrivals.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
                owner.released.wait(120)

            def log_message(self, *args):
                pass

        self.server = serve_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mcp"

    def release(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def open_stream(gw, rpc_id: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Starts the backend's `stream` tool and returns once it is in flight
    (its response headers arrived)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    body = json.dumps(jsonrpc("tools/call", {"name": "stream", "arguments": {}}, id=rpc_id))
    conn.request("POST", "/mcp/s", body, {**JSON, "Accept": "application/json, text/event-stream"})
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    return conn, resp


def test_a_request_past_max_in_flight_gets_the_overflow_envelope(gateway_factory, stream_backend):
    audit = Path(tempfile.mkdtemp(prefix="mcpx-audit-")) / "audit.log"
    gw = gateway_factory(CONFIG.format(url=stream_backend.url, extra="max_in_flight: 1", audit=audit))
    conn, resp = open_stream(gw, 1)
    stream_backend.send()
    assert read_sse_event(resp)["params"]["progress"] == 1  # the one slot is taken, provably

    r = gw.post("s", jsonrpc("tools/call", {"name": "other", "arguments": {}}, id=2))
    assert r.status == 503, r.text
    assert r.header("retry-after") == "1"
    err = r.json()
    assert err["id"] == 2 and err["error"]["code"] == UNAVAILABLE
    assert "too many requests in flight" in err["error"]["message"]
    line = audited(audit, 2)
    assert (line["decision"], line["reason"], line["tool"]) == ("error", "overflow", "other")
    # Envoy refused it: the backend saw the stream call and nothing else.
    assert [m["params"]["name"] for m in stream_backend.arrivals] == ["stream"]

    # The cap is on requests in flight, not a refusal that stays: once the
    # stream ends, the same call goes through.
    stream_backend.finish()
    assert read_sse_event(resp)["result"]["content"][0]["text"] == "streamed 1 events"
    conn.close()
    r = gw.post("s", jsonrpc("tools/call", {"name": "other", "arguments": {}}, id=3))
    assert r.status == 200, r.text
    assert [m["params"]["name"] for m in stream_backend.arrivals] == ["stream", "other"]


def test_without_max_in_flight_a_second_call_is_not_refused(gateway_factory, stream_backend):
    """The control: the same two calls with the default cap (1024)."""
    audit = Path(tempfile.mkdtemp(prefix="mcpx-audit-")) / "audit.log"
    gw = gateway_factory(CONFIG.format(url=stream_backend.url, extra="", audit=audit))
    conn, resp = open_stream(gw, 1)
    stream_backend.send()
    assert read_sse_event(resp)["params"]["progress"] == 1
    r = gw.post("s", jsonrpc("tools/call", {"name": "other", "arguments": {}}, id=2))
    assert r.status == 200, r.text
    conn.close()


def test_a_silent_backend_gets_the_upstream_timeout_envelope(gateway_factory):
    backend = SilentBackend()
    try:
        audit = Path(tempfile.mkdtemp(prefix="mcpx-audit-")) / "audit.log"
        gw = gateway_factory(CONFIG.format(url=backend.url, extra="request_timeout: 1s", audit=audit))
        r = gw.post("s", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, id=7), timeout=60)
        assert r.status == 504, r.text
        err = r.json()
        assert err["id"] == 7 and err["error"]["code"] == UNAVAILABLE
        assert "did not answer in time" in err["error"]["message"]
        line = audited(audit, 7)
        assert (line["decision"], line["reason"], line["tool"]) == ("error", "upstream_timeout", "echo")
        # It was sent once (the backend got it and stayed silent), not retried.
        assert [m["params"]["name"] for m in backend.arrivals] == ["echo"]
    finally:
        backend.release()
