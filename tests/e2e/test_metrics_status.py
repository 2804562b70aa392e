"""The `status_code` label of `mcpx_requests_total` is the status the client
got, through the real Envoy: the filter keeps the `:status` it read on an
answer it let through (no `response.code` read when the request ends), and
asks Envoy again whenever it or Envoy made or changed the answer — a
refused redirect (302 -> 502), Envoy's own 429, a filter denial."""

from __future__ import annotations

import re

import pytest

from harness import JSON, denied, jsonrpc
from hostile_backend import HostileBackend

CONFIG = """
servers:
  - name: h
    url: {url}
    policy:
      deny_tools: [hidden]
inspection: {{ tool_integrity: "off", filter_tools_list: true }}
rate_limit: {{ enabled: true, rps: 1000, burst: 1000, per_tool: true, tool_rps: 1, tool_burst: 3 }}
"""

ANSWER = b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}'


@pytest.fixture
def backend():
    b = HostileBackend()
    yield b
    b.stop()


def requests_by_status(gw) -> dict[str, int]:
    """`mcpx_requests_total{server="h",method="tools_call"}` per status_code."""
    r = gw.request("GET", "/metrics")
    assert r.status == 200, r.text
    out = {}
    for line in r.text.splitlines():
        if not line.startswith("mcpx_requests_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.get("server") == "h" and labels.get("method") == "tools_call":
            out[labels["status_code"]] = int(float(line.rsplit(" ", 1)[1]))
    return out


def call(tool: str) -> dict:
    return jsonrpc("tools/call", {"name": tool, "arguments": {}})


def test_each_request_counts_the_status_the_client_got(backend, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=backend.url))
    backend.answer("tools/call", (500, JSON, [ANSWER]))
    assert gw.post("h", call("echo")).status == 500
    backend.answer("tools/call", (302, {"Location": "http://127.0.0.1:9/mcp", **JSON}, [ANSWER]))
    assert gw.post("h", call("other")).status == 502
    before = backend.count("tools/call")
    assert denied(gw.post("h", call("hidden")))
    assert backend.count("tools/call") == before, "a denied call reached the backend"
    backend.answer("tools/call", (200, JSON, [ANSWER]))
    statuses = [gw.post("h", call("echo")).status for _ in range(6)]
    assert 429 in statuses and statuses[0] == 200, statuses
    ok, limited = statuses.count(200), statuses.count(429)
    # Unlisted tools share the `_other` bucket (3): the 500 and the 302 took two.
    # echo: 500 then `ok` 200s and `limited` 429s; other: 502; hidden: 200 (a denial's status).
    assert requests_by_status(gw) == {"500": 1, "502": 1, "200": ok + 1, "429": limited}
