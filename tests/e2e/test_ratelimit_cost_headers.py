"""The per-tool bucket's cost without its own header, through the real Envoy
+ wasm filter + local rate limiter.

The tool bucket is charged `%REQ(x-mcpx-tool-hits?x-mcpx-hits)%`: the filter
sets `x-mcpx-tool-hits` only when a request's calls are fewer than its
messages, and otherwise Envoy falls back to `x-mcpx-hits` (one host call and
one header fewer per call). These tests pin both halves with batches whose
cost can never be paid by chance (no timing): a batch with more messages than
calls must be charged per call in the tool bucket, never per message. Single
calls falling back to `x-mcpx-hits` are proven by
`test_ops.py::test_per_tool_limit_gives_429_envelope_while_other_tools_pass`
and batches of calls only by
`test_one_view_requests.py::test_batch_is_charged_one_tool_token_per_call`.
Every refusal is proven at the recording backend by counting what arrived.
"""

from __future__ import annotations

import pytest

from harness import DemoServer, Gateway, jsonrpc

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      allow_tools: [mixed_fits, mixed_over]
rate_limit: {{ enabled: true, rps: 1000, burst: 1000, per_tool: true, tool_rps: 1, tool_burst: 2 }}
inspection: {{ tool_integrity: "off", filter_tools_list: false }}
"""


@pytest.fixture(scope="module")
def backend():
    server = DemoServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(backend):
    g = Gateway(CONFIG.format(url=backend.url))
    yield g
    g.stop()


def count(backend) -> int:
    return len(backend.received())


def call(tool: str, id: int) -> dict:
    return jsonrpc("tools/call", {"name": tool, "arguments": {"text": "hi"}}, id=id)


def pings(n: int, start: int = 100) -> list[dict]:
    return [jsonrpc("ping", id=start + i) for i in range(n)]


def test_a_batch_with_other_messages_costs_its_calls_in_the_tool_bucket(gw, backend):
    """Four messages, one call: the tool bucket (burst 2) pays 1. Charged per
    message (4 tokens) it could never pass, whatever the refill timing."""
    before = count(backend)
    r = gw.post("demo", pings(3) + [call("mixed_fits", 1)])
    assert r.status == 200, r.text
    assert sorted(m["id"] for m in r.json()) == [1, 100, 101, 102], r.text
    assert count(backend) == before + 1


def test_a_batch_with_other_messages_still_pays_every_call(gw, backend):
    """One ping and three calls: the tool bucket (burst 2) must pay 3, which it
    never holds, so the batch is refused before it reaches the backend."""
    before = count(backend)
    r = gw.post("demo", pings(1) + [call("mixed_over", i) for i in (1, 2, 3)])
    assert r.status == 429, r.text
    assert r.json()["error"]["code"] == -32029, r.text
    assert count(backend) == before
