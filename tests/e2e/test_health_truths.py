"""What docs/reload-and-health.md and the audit/metrics sections of
docs/operations.md say about /health, the audit trail and metric labels,
checked against the real Envoy and filter."""

import json
import re
from pathlib import Path

from harness import free_port, jsonrpc, wait_until
from test_ops import audit_lines, audit_path

DOCS = Path(__file__).resolve().parents[2] / "docs"
KEY = "key-truths-0123456789ab"

AUTH = """
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

POLICY = """
servers:
  - name: demo
    url: {url}
    policy:
      allow_tools: [echo, read_file]
      deny_tools: [dangerous_delete]
      tool_rules:
        read_file:
          args:
            path: {{ prefix: "/data/" }}
  - name: ro
    url: {url}
    policy: {{ read_only: true }}
inspection: {{ tool_integrity: off }}
audit: {{ output: {audit} }}
"""


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/mcp"


def call(tool: str, args: dict | None = None, id: int = 1) -> dict:
    return jsonrpc("tools/call", {"name": tool, "arguments": args or {}}, id=id)


def test_open_breaker_shows_as_no_healthy_upstream(demo, gateway_factory):
    gw = gateway_factory(f"""
servers:
  - name: demo
    url: {demo.url}
inspection: {{ tool_integrity: off }}
circuit_breaker: {{ enabled: true, failure_threshold: 3, cooldown: 60s }}
""", concurrency=1)
    demo.mode(fail=True)
    wait_until(lambda: gw.post("demo", call("echo", {"text": "x"})).status == 503, timeout=30, what="circuit open")

    def open_in_health():
        r = gw.request("GET", "/health")
        err = r.json()["servers"]["demo"]["error"] or ""
        return (r, err) if err.startswith("no healthy upstream") else None

    r, err = wait_until(open_in_health, timeout=20, what="/health reporting the open breaker")
    assert r.status == 503 and r.json()["status"] == "unhealthy", r.text
    assert err == ("no healthy upstream: circuit open (Envoy cluster mcpx_server_demo has no host "
                   "that can take the probe)"), err
    # The page documents this message.
    assert "no healthy upstream: circuit open" in (DOCS / "reload-and-health.md").read_text()
    demo.mode(fail=False)


def test_anonymous_health_is_503_when_all_backends_are_down(gateway_factory):
    gw = gateway_factory(AUTH.format(url=dead_url(), key=KEY))
    r = gw.request("GET", "/health")
    assert r.status == 503, r.text
    assert r.json() == {"status": "unhealthy"}, r.text  # no detail without a credential
    r = gw.request("GET", "/health", headers={"X-Team-Key": KEY})
    assert r.status == 503 and r.json()["servers"]["demo"]["healthy"] is False, r.text


def test_anonymous_health_is_200_when_the_backend_is_up(demo, gateway_factory):
    gw = gateway_factory(AUTH.format(url=demo.url, key=KEY))
    r = gw.request("GET", "/health")
    assert (r.status, r.json()) == (200, {"status": "healthy"}), r.text


def test_only_mcp_requests_and_refusals_are_audited(demo, gateway_factory):
    audit = audit_path()
    gw = gateway_factory(AUTH.format(url=demo.url, key=KEY) + f"audit: {{ output: {audit} }}\n", concurrency=1)
    key = {"X-Team-Key": KEY}
    assert gw.request("GET", "/health").status == 200
    assert gw.request("GET", "/health", headers=key).status == 200
    assert gw.request("GET", "/servers", headers=key).status == 200
    assert gw.request("GET", "/metrics", headers=key).status == 200
    assert gw.request("GET", "/servers").status == 401
    assert gw.request("POST", "/health", body="{}", headers=key).status == 405
    # The last request: once its line is written, every earlier one was (one worker).
    assert gw.post("demo", jsonrpc("ping", id=42), key).status == 200
    lines = wait_until(lambda: (lambda ls: ls if any(l["path"] == "/mcp/demo" for l in ls) else None)(
        audit_lines(audit)), what="the MCP request's audit line")
    got = [(l["http_method"], l["path"], l["status"], l["decision"], l["reason"]) for l in lines]
    assert got == [
        ("GET", "/servers", 401, "auth_failed", "credential_required"),
        ("POST", "/health", 405, "error", "method_not_allowed"),
        ("POST", "/mcp/demo", 200, "allow", None),
    ], got
    # ...and the answered endpoints are not counted as MCP requests either.
    m = gw.request("GET", "/metrics", headers=key).text
    assert not re.search(r'^mcpx_requests_total\{[^}]*method="GET"[^}]*status_code="200"', m, re.M), \
        [l for l in m.splitlines() if l.startswith("mcpx_requests_total")]


def documented_reasons() -> set[str]:
    row = next(l for l in (DOCS / "operations.md").read_text().splitlines() if l.startswith("| `reason` |"))
    return set(re.findall(r"`([a-z_]+)`", row)) - {"reason", "null"}


def test_audit_reasons_are_the_documented_names(demo, gateway_factory):
    audit = audit_path()
    gw = gateway_factory(POLICY.format(url=demo.url, audit=audit), concurrency=1)
    demo.reset()
    cases = [("demo", call("dangerous_delete", id=1), "deny_list"),
             ("demo", call("other_tool", id=2), "not_allowed"),
             ("demo", call("read_file", {"path": "/etc/passwd"}, id=3), "argument_rule"),
             ("ro", call("echo", {"text": "x"}, id=4), "read_only")]
    for server, msg, _ in cases:
        r = gw.post(server, msg)
        assert r.status == 403 or "error" in r.json(), (msg, r.status, r.text)
    assert len(demo.received()) == 0, "a denied call reached the backend"
    assert gw.post("demo", jsonrpc("ping", id=99)).status == 200  # marker, audited last
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= 5 else None)(audit_lines(audit)), what="5 audit lines")
    reasons = [l["reason"] for l in lines[:4]]
    assert reasons == [c[2] for c in cases], reasons
    documented = documented_reasons()
    assert set(reasons) <= documented, (reasons, documented)


# The metric `method` values docs/operations.md lists besides the MCP methods.
EXTRA_METHOD_LABELS = {"batch", "GET", "DELETE", "response", "other", "none"}


def test_metric_method_labels_are_bounded_and_documented(demo, gateway_factory):
    gw = gateway_factory(AUTH.format(url=demo.url, key=KEY), concurrency=1)
    key = {"X-Team-Key": KEY}
    gw.post("demo", jsonrpc("ping", id=1), key)
    gw.post("demo", [jsonrpc("ping", id=2), jsonrpc("ping", id=3)], key)
    gw.post("demo", jsonrpc("made/up/" + "x" * 50, id=4), key)
    gw.post("demo", jsonrpc("ping", id=5))  # auth failure: refused before the body
    gw.request("DELETE", "/mcp/demo", headers=key)
    gw.request("GET", "/health")
    doc = (DOCS / "operations.md").read_text()
    para = doc[doc.index("Label values are bounded"):]
    para = para[:para.index("\n\n")]
    for word in EXTRA_METHOD_LABELS:
        assert f"`{word}`" in para, f"docs/operations.md does not document method label {word!r}"

    def labels():
        m = gw.request("GET", "/metrics?filter=mcpx_requests_total", headers=key).text
        found = set(re.findall(r'^mcpx_requests_total\{[^}]*method="([^"]*)"', m, re.M))
        return found if {"ping", "batch", "other", "none", "DELETE"} <= found else None

    found = wait_until(labels, what="the request metrics")
    mcp = {m for m in found if re.fullmatch(r"[a-z]+(_[a-zA-Z]+)*", m)}
    assert found - mcp <= EXTRA_METHOD_LABELS, found
    assert "GET" not in found, "an answered /health was counted as an MCP request"
