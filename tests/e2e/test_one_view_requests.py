"""One view of every request (issue 13), through the real Envoy + wasm filter.

The gateway decides on exactly the bytes the backend executes, or refuses.
Most single-request forms are data in tests/vectors/policy.yaml (run by
test_policy_vectors.py); this file covers what needs more than one request or
a particular gateway: batches against Envoy's real rate limiter, internal
headers a client forges, and OAuth answers for unknown server names. Every
refusal is proven at the recording backend by counting what arrived.
"""

from __future__ import annotations

import json

import pytest

from harness import JSON, DemoServer, Gateway, free_port, jsonrpc


@pytest.fixture(scope="module")
def backend():
    server = DemoServer()
    yield server
    server.stop()


def count(backend) -> int:
    return len(backend.received())


def call(tool: str, id: int, **args) -> dict:
    return jsonrpc("tools/call", {"name": tool, "arguments": args}, id=id)


def batch(n: int, tool: str = "echo", start: int = 1) -> list[dict]:
    return [call(tool, start + i, text="hi") for i in range(n)]


# Tools named in the config get their own bucket (others share `_other`).
PER_TOOL = """
servers:
  - name: demo
    url: {url}
    policy:
      allow_tools: [echo, slow, other_tool, forged_tool, forged_single]
rate_limit: {{ enabled: true, rps: 1000, burst: 1000, per_tool: true, tool_rps: 1, tool_burst: 2 }}
inspection: {{ tool_integrity: "off", filter_tools_list: false }}
"""

GLOBAL = """
servers:
  - name: demo
    url: {url}
rate_limit: {{ enabled: true, rps: 1, burst: 3, per_tool: false }}
inspection: {{ tool_integrity: "off", filter_tools_list: false }}
"""


@pytest.fixture(scope="module")
def per_tool_gw(backend):
    gw = Gateway(PER_TOOL.format(url=backend.url))
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def global_gw(backend):
    gw = Gateway(GLOBAL.format(url=backend.url))
    yield gw
    gw.stop()


def assert_limited(r, backend, before: int):
    assert r.status == 429, (r.status, r.text)
    assert r.json()["error"]["code"] == -32029, r.text
    assert r.header("retry-after"), r.headers
    assert count(backend) == before, backend.received()[before:]


def test_batch_is_charged_one_tool_token_per_call(per_tool_gw, backend):
    """tool_burst 2: a batch of 2 calls fits the fresh bucket; 3 calls never
    fit (3 single requests would not either); 200 calls cost 200, not 1."""
    gw = per_tool_gw
    before = count(backend)
    r = gw.post("demo", batch(2, tool="echo"))
    assert r.status == 200, r.text
    assert count(backend) == before + 1
    assert [m["id"] for m in r.json()] == [1, 2]
    # A bucket of 2 can never pay 3 tokens, whatever the refill timing.
    for n in (3, 200):
        before = count(backend)
        assert_limited(gw.post("demo", batch(n, tool="other_tool")), backend, before)
        before = count(backend)
        assert_limited(gw.post("demo", batch(n, tool="echo")), backend, before)


def test_forged_cost_headers_do_not_make_a_batch_cheaper(per_tool_gw, backend):
    """Client copies of the internal cost headers are removed on entry: a
    batch that says it costs 0 (or 1) tokens still costs one per call."""
    forged = {"x-mcpx-hits": "0", "x-mcpx-tool-hits": "0", "X-MCPX-Tool": "demo/free", "x-mcpx-Hits": "1"}
    before = count(backend)
    assert_limited(per_tool_gw.post("demo", batch(3, tool="forged_tool"), forged), backend, before)
    # A single call with forged headers passes and carries none of them to the backend.
    r = per_tool_gw.post("demo", call("forged_single", 9, text="hi"), forged)
    assert r.status == 200, r.text
    sent = backend.received()[-1]["headers"]
    assert not [k for k in sent if k.startswith("x-mcpx-")], sent


def test_batch_calling_two_tools_is_refused_when_per_tool_limits_are_on(per_tool_gw, backend):
    before = count(backend)
    r = per_tool_gw.post("demo", [call("echo", 1, text="a"), call("slow", 2, ms=1)])
    assert r.status == 400, r.text
    err = r.json()["error"]
    assert err["code"] == -32600 and "slow" in err["message"], err
    assert count(backend) == before


def test_batch_is_charged_one_global_token_per_message(global_gw, backend):
    """Global bucket of 3: a batch of 4 messages (of any kind) is limited;
    200 pings cost 200 tokens, not 1."""
    for n in (4, 200):
        before = count(backend)
        pings = [jsonrpc("ping", id=i) for i in range(n)]
        assert_limited(global_gw.post("demo", pings), backend, before)


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25", "2026-07-28"])
def test_batches_are_refused_where_the_protocol_has_none(per_tool_gw, backend, version):
    before = count(backend)
    r = per_tool_gw.post("demo", [jsonrpc("ping", id=1)], {"MCP-Protocol-Version": version})
    assert r.status == 400, r.text
    assert r.json()["error"]["code"] == -32600
    assert version in r.json()["error"]["message"]
    assert count(backend) == before


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_body_on_get_or_delete_never_arrives(per_tool_gw, backend, method):
    body = json.dumps(call("dangerous_delete", 1))
    before = count(backend)
    r = per_tool_gw.request(method, "/mcp/demo", body, JSON)
    assert r.status == 400, r.text
    assert r.json()["error"]["code"] == -32600
    assert count(backend) == before
    # Without a body the same request passes (server stream / session end).
    r = per_tool_gw.request("DELETE", "/mcp/demo")
    assert count(backend) == before + 1, r.text


OAUTH = """
servers:
  - name: demo
    url: {url}
auth:
  enabled: true
  type: oauth
  oauth:
    resource: "https://gw.test/mcp"
    jwks_uri: "http://127.0.0.1:{dead}/jwks.json"
    issuer: "https://issuer.test"
inspection: {{ tool_integrity: "off" }}
"""


def test_oauth_answers_do_not_reveal_server_names(backend):
    """An unauthenticated caller gets, for an unknown name, exactly what it
    gets for a known one (with the name it sent): the same 401 challenge and
    a metadata document, never a 404."""
    gw = Gateway(OAUTH.format(url=backend.url, dead=free_port()))
    try:
        before = count(backend)

        def shape(r, name: str) -> tuple:
            www = (r.header("www-authenticate") or "").replace(f"/mcp/{name}", "/mcp/NAME")
            return r.status, www, r.text.replace(f"/{name}", "/NAME")

        for method, body in (("POST", json.dumps(jsonrpc("ping"))), ("GET", None), ("DELETE", None)):
            known = gw.request(method, "/mcp/demo", body, JSON)
            unknown = gw.request(method, "/mcp/nope", body, JSON)
            assert known.status == 401, known.text
            assert 'resource_metadata="' in (known.header("www-authenticate") or "")
            assert shape(unknown, "nope") == shape(known, "demo"), method
        known = gw.request("GET", "/.well-known/oauth-protected-resource/mcp/demo")
        unknown = gw.request("GET", "/.well-known/oauth-protected-resource/mcp/nope")
        assert (known.status, unknown.status) == (200, 200), unknown.text
        assert shape(unknown, "nope")[2] == shape(known, "demo")[2]
        assert count(backend) == before
    finally:
        gw.stop()
