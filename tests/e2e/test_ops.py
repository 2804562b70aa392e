"""Operations through the real Envoy + filter (issue 6A): rate limits, the
circuit breaker, audit lines, /metrics, CORS / Origin, tracing.

Timing-robust by construction: limits are checked as "allowed <= burst +
rate * elapsed" over a run that stops at the first 429, never as a fixed
count that a slow machine could break; the breaker is polled, not slept on.
"""

from __future__ import annotations

import http.server
import json
import math
import re
import tempfile
import threading
import time
from pathlib import Path

from harness import JSON, denied, jsonrpc, wait_until

BASE = """
servers:
  - name: demo
    url: {url}
    policy:
      allow_tools: [echo, read_file, slow]
      deny_tools: [dangerous_delete]
inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""


def call(tool: str, id: int | str = 1, **args) -> dict:
    return jsonrpc("tools/call", {"name": tool, "arguments": args or {"text": "x"}}, id=id)


def until_limited(gw, message_for, limit: int = 60):
    """Sends calls back to back until one is refused with 429. Returns
    (number allowed, the 429 response, elapsed seconds)."""
    start = time.monotonic()
    for i in range(limit):
        r = gw.post("demo", message_for(i))
        if r.status == 429:
            return i, r, time.monotonic() - start
        assert r.status == 200, (r.status, r.text)
    raise AssertionError(f"no 429 after {limit} calls")


def audit_lines(path: Path, event: str | None = "request") -> list[dict]:
    """The audit file's JSON lines (only `event` ones; None: all)."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [l for l in lines if event is None or l.get("event") == event]


def audit_path() -> Path:
    return Path(tempfile.mkdtemp(prefix="mcpx-audit-")) / "audit.log"


def test_per_tool_limit_gives_429_envelope_while_other_tools_pass(demo, gateway_factory):
    audit = audit_path()
    gw = gateway_factory(BASE.format(url=demo.url) + f"""
rate_limit: {{ enabled: true, rps: 1000, burst: 1000, per_tool: true, tool_rps: 1, tool_burst: 3 }}
audit: {{ output: {audit} }}
""")
    allowed, r, elapsed = until_limited(gw, lambda i: call("echo", id=100 + i))
    # Never more than the bucket plus what refilled meanwhile.
    assert 3 <= allowed <= 3 + math.ceil(elapsed * 1) + 1, (allowed, elapsed)
    body = r.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 100 + allowed, body
    assert body["error"]["code"] == -32029
    assert r.header("retry-after") == "1"
    assert r.header("content-type") == "application/json"
    assert r.header("x-request-id")
    # Another tool has its own bucket.
    other = gw.post("demo", call("read_file", path="/a"))
    assert other.status == 200, other.text
    # Exactly the allowed calls reached the backend; the limited one did not
    # (ids read from the parsed bodies, not searched for as text).
    arrived = [json.loads(b)["id"] for b in demo.received_bodies() if json.loads(b).get("method") == "tools/call"]
    assert arrived[:allowed] == list(range(100, 100 + allowed)), arrived
    assert 100 + allowed not in arrived, arrived
    # Counted as rate_limited, not allow.
    lines = wait_until(lambda: [l for l in audit_lines(audit) if l["decision"] == "rate_limited"],
                       what="rate_limited audit line")
    assert lines[0]["tool"] == "echo" and lines[0]["status"] == 429 and lines[0]["server"] == "demo"
    m = gw.request("GET", "/metrics").text
    assert re.search(r'mcpx_tool_calls_total\{[^}]*tool="echo"[^}]*decision="rate_limited"', m) or \
        re.search(r'mcpx_tool_calls_total\{[^}]*decision="rate_limited"[^}]*tool="echo"', m), m[-3000:]
    assert re.search(r"^mcpx_rate_limit_hits_total(\{\})? [1-9]", m, re.M), m[-3000:]


def test_client_cannot_pick_its_bucket_with_an_internal_header(demo, gateway_factory):
    gw = gateway_factory(BASE.format(url=demo.url) + """
rate_limit: { enabled: true, rps: 1000, burst: 1000, per_tool: true, tool_rps: 1, tool_burst: 2 }
""")
    allowed, _, _ = until_limited(gw, lambda i: call("echo", id=i))
    assert allowed >= 2
    # Claiming another bucket (or none) through the internal header does not help.
    before = demo.count()
    for forged in ("demo/read_file", "", "demo/_other"):
        r = gw.post("demo", call("echo"), headers={"X-MCPX-Tool": forged})
        assert r.status == 429, (forged, r.status, r.text)
    assert demo.count() == before, "a rate-limited call reached the backend"
    demo.reset()
    assert gw.post("demo", call("read_file", path="/x"), headers={"x-mcpx-tool": "demo/echo"}).status == 200
    seen = demo.received()[-1]["headers"]
    assert not [h for h in seen if h.startswith("x-mcpx-")], seen


def test_global_limit_applies_to_every_mcp_request(demo, gateway_factory):
    gw = gateway_factory(BASE.format(url=demo.url) + """
rate_limit: { enabled: true, rps: 1, burst: 4 }
""")
    demo.reset()
    allowed, r, elapsed = until_limited(gw, lambda i: jsonrpc("ping", id=i))
    assert 4 <= allowed <= 4 + math.ceil(elapsed) + 1, (allowed, elapsed)
    # The allowed pings reached the backend, the refused one did not.
    assert [json.loads(b)["id"] for b in demo.received_bodies()] == list(range(allowed))
    assert r.json()["error"]["code"] == -32029 and r.header("retry-after")
    # /metrics has its own budget: scraping is not blocked by MCP traffic.
    assert gw.request("GET", "/metrics").status == 200


def test_failing_backend_trips_the_breaker_then_recovers(demo, gateway_factory):
    audit = audit_path()
    gw = gateway_factory(BASE.format(url=demo.url) + f"""
circuit_breaker: {{ enabled: true, failure_threshold: 3, cooldown: 2s }}
audit: {{ output: {audit} }}
""")
    demo.mode(fail=True)
    fails = 0

    def tripped():
        nonlocal fails
        r = gw.post("demo", call("echo", id=7))
        if r.status == 500:
            fails += 1
            return None
        return r

    r = wait_until(tripped, timeout=20, what="circuit open")
    assert fails >= 3
    assert r.status == 503, r.text
    body = r.json()
    assert body["id"] == 7 and body["error"]["code"] == -32050, body
    assert body["error"]["data"]["details"] == "no_healthy_upstream"
    assert r.header("retry-after") == "2"
    # While open, a 503 never touches the backend.
    before = len(demo.received())
    statuses = [gw.post("demo", call("echo")).status for _ in range(3)]
    after = len(demo.received())
    assert after - before == sum(1 for s in statuses if s != 503), (statuses, before, after)
    # Audit: the fail-fast is an error with reason circuit_open.
    wait_until(lambda: any(l["reason"] == "circuit_open" and l["decision"] == "error" for l in audit_lines(audit)),
               what="circuit_open audit line")
    m = gw.request("GET", "/metrics").text
    assert re.search(r'^mcpx_breaker_trips_total\{server="demo"\} [1-9]', m, re.M), m[-2000:]
    assert re.search(r'^mcpx_breaker_state\{server="demo"\} 1', m, re.M) or \
        gw.post("demo", call("echo")).status != 503, m[-2000:]  # (unless the cooldown already ended)
    # After the cooldown a probe reaches the healed backend again.
    demo.mode(fail=False)
    ok = wait_until(lambda: (lambda x: x if x.status == 200 else None)(gw.post("demo", call("echo"))),
                    timeout=20, what="circuit closed again")
    assert ok.json()["result"]["content"][0]["text"] == "x"
    m = gw.request("GET", "/metrics").text
    assert re.search(r'^mcpx_breaker_state\{server="demo"\} 0', m, re.M), m[-2000:]


def test_dead_backend_gets_the_envelope_not_envoy_text(gateway_factory):
    from harness import free_port
    audit = audit_path()
    gw = gateway_factory(f"""
servers:
  - name: gone
    url: http://127.0.0.1:{free_port()}/mcp
audit: {{ output: {audit} }}
""")
    r = gw.post("gone", jsonrpc("ping", id="p-9"))
    assert r.status == 503 and r.header("content-type") == "application/json"
    body = r.json()
    assert body["id"] == "p-9" and body["error"]["code"] == -32050, body
    line = wait_until(lambda: audit_lines(audit), what="audit line")[0]
    assert (line["decision"], line["reason"], line["status"]) == ("error", "upstream_unavailable", 503)


def test_audit_lines_are_json_with_the_decision(demo, gateway_factory):
    audit = audit_path()
    gw = gateway_factory(BASE.format(url=demo.url) + f"""
audit: {{ output: {audit} }}
""")
    assert gw.post("demo", call("echo", id=1), headers={"X-Request-ID": "rid-allow"}).status == 200
    before = demo.count()
    assert denied(gw.post("demo", call("dangerous_delete", id=2, path="/"),
                          headers={"X-Request-ID": "rid-deny"}))
    assert gw.post("demo", "{broken", headers={"X-Request-ID": "rid-error"}).status == 400
    assert demo.count() == before, "a refused request reached the backend"
    gw.request("GET", "/metrics")  # not an MCP request: no audit line
    def requests():
        ls = audit_lines(audit)
        return ls if len(ls) >= 3 else None

    lines = wait_until(requests, what="3 audit lines")
    by_id = {l["request_id"]: l for l in lines}
    assert set(by_id) == {"rid-allow", "rid-deny", "rid-error"}, lines
    a = by_id["rid-allow"]
    assert (a["decision"], a["server"], a["method"], a["tool"], a["status"]) == \
        ("allow", "demo", "tools/call", "echo", 200)
    assert a["client_ip"] == "127.0.0.1" and isinstance(a["latency_ms"], int)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", a["time"])
    d = by_id["rid-deny"]
    # The status is what was sent (200 by default); the decision says "deny".
    assert (d["decision"], d["tool"], d["status"]) == ("deny", "dangerous_delete", 200)
    assert d["reason"]
    e = by_id["rid-error"]
    assert (e["decision"], e["reason"], e["status"]) == ("error", "parse_error", 400)
    # The gateway's own events share the stream.
    start = audit_lines(audit, "start")
    assert start and start[0]["servers"] == ["demo"] and start[0]["time"].endswith("Z")


def test_default_audit_goes_to_stdout_as_json_lines(demo, gateway_factory):
    gw = gateway_factory(BASE.format(url=demo.url))  # audit defaults: enabled, stdout
    assert gw.post("demo", call("echo"), headers={"X-Request-ID": "rid-stdout"}).status == 200

    def line():
        for text in gw.process.log().splitlines():
            if text.startswith("{") and "rid-stdout" in text:
                return json.loads(text)
        return None

    entry = wait_until(line, what="audit line on stdout")
    assert (entry["event"], entry["decision"], entry["tool"]) == ("request", "allow", "echo")


def test_metrics_series_with_labels(demo, gateway_factory):
    gw = gateway_factory(BASE.format(url=demo.url) + """
circuit_breaker: { enabled: true, failure_threshold: 5, cooldown: 30s }
""")
    assert gw.post("demo", call("echo")).status == 200
    before = demo.count()
    assert denied(gw.post("demo", call("dangerous_delete", path="/")))
    assert denied(gw.post("demo", call("invented_tool_name")))
    assert demo.count() == before, "a denied call reached the backend"
    assert gw.post("demo", jsonrpc("tools/list")).status == 200
    r = gw.request("GET", "/metrics")
    assert r.status == 200 and "text/plain" in (r.header("content-type") or "")
    m = r.text

    def series(name: str, **labels) -> bool:
        for line in m.splitlines():
            if not line.startswith(name + "{"):
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return True
        return False

    assert series("mcpx_requests_total", server="demo", method="tools_call", status_code="200"), m[-3000:]
    assert series("mcpx_requests_total", server="demo", method="tools_list", status_code="200")
    assert series("mcpx_tool_calls_total", server="demo", tool="echo", decision="allow", client="anonymous")
    assert series("mcpx_tool_calls_total", server="demo", tool="dangerous_delete", decision="deny")
    # An unknown tool name never becomes a series of its own.
    assert "invented_tool_name" not in m
    assert series("mcpx_tool_calls_total", server="demo", tool="_other", decision="deny")
    assert series("mcpx_request_duration_ms_bucket", server="demo", le="+Inf") or \
        series("mcpx_request_duration_ms_bucket", server="demo")
    assert re.search(r"^mcpx_auth_failures_total(\{\})? \d", m, re.M)
    assert re.search(r"^mcpx_rate_limit_hits_total(\{\})? \d", m, re.M)
    assert series("mcpx_breaker_state", server="demo")
    assert series("mcpx_breaker_trips_total", server="demo")
    # Envoy's own stats are there too.
    assert "envoy_cluster_upstream_rq_total" in m
    # Only GET /metrics reaches admin; no other admin path is exposed.
    assert gw.request("POST", "/metrics", "").status == 405
    for path in ("/stats", "/stats/prometheus", "/metrics/x", "/quitquitquit", "/config_dump"):
        assert gw.request("GET", path).status == 404, path
    assert gw.admin("/ready").status == 200  # Envoy is still up


def test_tools_advertised_by_the_backend_get_their_own_label(demo, gateway_factory):
    gw = gateway_factory(f"""
servers:
  - name: demo
    url: {demo.url}
""")
    assert gw.post("demo", call("slow", ms=0)).status == 200  # not known yet
    assert gw.post("demo", jsonrpc("tools/list")).status == 200  # the backend advertises it
    for _ in range(4):  # whichever worker serves it, the label is the same (shared data)
        assert gw.post("demo", call("slow", ms=0)).status == 200
    m = gw.request("GET", "/metrics").text
    assert re.search(r'^mcpx_tool_calls_total\{server="demo",tool="_other",decision="allow",client="anonymous"\} 1$',
                     m, re.M), m[-1500:]
    assert re.search(r'^mcpx_tool_calls_total\{server="demo",tool="slow",decision="allow",client="anonymous"\} 4$',
                     m, re.M), m[-1500:]


def test_label_values_that_look_like_label_names(demo, gateway_factory):
    # Stat names are dotted key.value pairs; a server called "tool" calling a
    # tool called "server" must still come out with the right labels.
    gw = gateway_factory(f"""
servers:
  - name: tool
    url: {demo.url}
    policy: {{ allow_tools: [server, decision] }}
""")
    for name in ("server", "decision"):
        assert gw.post("tool", call(name)).status == 200  # the backend answers "unknown tool"
    m = gw.request("GET", "/metrics").text
    for name in ("server", "decision"):
        pat = rf'^mcpx_tool_calls_total\{{server="tool",tool="{name}",decision="allow",client="anonymous"\}} 1$'
        assert re.search(pat, m, re.M), (name, [l for l in m.splitlines() if l.startswith("mcpx_tool")])


def test_cors_preflight_and_origin_check(demo, gateway_factory):
    gw = gateway_factory(BASE.format(url=demo.url) + """
cors: { allowed_origins: ["https://app.example.com"] }
""")
    demo.reset()
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type, mcp-session-id"}
    r = gw.request("OPTIONS", "/mcp/demo", headers=pre)
    assert r.status == 200, (r.status, r.text)
    assert r.header("access-control-allow-origin") == "https://app.example.com"
    assert "mcp-session-id" in (r.header("access-control-allow-headers") or "").lower()
    r = gw.post("demo", call("echo"), headers={"Origin": "https://app.example.com"})
    assert r.status == 200
    assert r.header("access-control-allow-origin") == "https://app.example.com"
    exposed = (r.header("access-control-expose-headers") or "").lower()
    for h in ("mcp-session-id", "mcp-protocol-version", "x-request-id"):
        assert h in exposed, exposed
    # A disallowed origin: refused, preflight included, and the backend sees nothing.
    demo.reset()
    bad = {**pre, "Origin": "https://evil.example"}
    r = gw.request("OPTIONS", "/mcp/demo", headers=bad)
    assert r.status == 403 and r.json()["error"]["code"] == -32003
    r = gw.post("demo", call("echo"), headers={"Origin": "https://evil.example"})
    assert r.status == 403 and "allowed_origins" in r.json()["error"]["message"]
    assert gw.request("GET", "/metrics", headers={"Origin": "https://evil.example"}).status == 403
    assert demo.received() == []


def test_without_cors_block_cross_origin_requests_are_refused(demo, gateway_factory):
    gw = gateway_factory(BASE.format(url=demo.url))
    demo.reset()
    own = f"127.0.0.1:{gw.port}"
    refused = [
        {"Origin": "http://localhost"},                        # another local page
        {"Origin": f"http://localhost:{gw.port + 1}"},
        {"Origin": "null"},
        # DNS rebinding: the page's origin and Host are both the attacker's name.
        {"Origin": f"http://evil.example:{gw.port}", "Host": f"evil.example:{gw.port}"},
        # A loopback Origin with a foreign Host is not "same origin" either.
        {"Origin": f"http://{own}", "Host": f"evil.example:{gw.port}"},
    ]
    for headers in refused:
        r = gw.post("demo", call("echo"), headers=headers)
        assert r.status == 403, headers
    assert demo.received() == []
    # The gateway's own loopback origin is what a local MCP server accepts
    # (MCP conformance: dns-rebinding-protection).
    assert gw.post("demo", call("echo"), headers={"Origin": f"http://{own}"}).status == 200
    assert gw.post("demo", call("echo")).status == 200  # no Origin: not a browser


class _Collector(http.server.BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self):  # noqa: N802 (http.server API)
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                chunk = self.rfile.read(size)
                self.rfile.readline()
                if size == 0:
                    break
                body += chunk
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        _Collector.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_tracing_exports_spans_with_mcp_attributes(demo, gateway_factory):
    _Collector.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        gw = gateway_factory(BASE.format(url=demo.url) + f"""
tracing: {{ enabled: true, endpoint: "http://127.0.0.1:{server.server_address[1]}", service_name: mcpx-test, sample_ratio: 1.0 }}
""")
        assert gw.post("demo", call("read_file", path="/t")).status == 200

        def exported():
            # Keep traffic flowing so a batch fills / the flush timer fires.
            return [b for p, b in _Collector.bodies if p == "/v1/traces" and b"read_file" in b]

        spans = wait_until(exported, timeout=30, what="an OTLP export with the span")
        blob = spans[0]
        for needle in (b"mcp.server", b"demo", b"mcp.tool", b"mcp.method", b"tools/call", b"mcpx-test"):
            assert needle in blob, needle
    finally:
        server.shutdown()
