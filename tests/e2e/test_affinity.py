"""One backend as two replicas behind one server name (`servers[].endpoints`), through the real
Envoy, filter and `mcpx run` (docs/operations.md#several-replicas-of-one-backend):

- every request of a 2025-era session from the official Python SDK client (legacy mode), from the
  `initialize` that created it to the closing DELETE, reaches the replica that created it, and the
  replica sees its own session id (Envoy unwraps the one the client holds);
- several sessions spread over both replicas;
- a refusal in such a session reaches neither replica;
- a killed replica is ejected by the circuit breaker, the session on the live replica keeps working,
  new sessions go to the live replica and /health still reports the server up;
- 2026-07-28 requests (no session) are balanced over both replicas.

What arrived is read from each replica's own record (`/_received`), never from the client side.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from harness import JSON, DemoServer, jsonrpc, tool_calls_in, wait_until

from mcp import Client  # noqa: E402  (a test dependency: tests/requirements.txt)
from mcp.shared.exceptions import MCPError  # noqa: E402

LEGACY = "legacy"
MODERN = "2026-07-28"
BACKEND_ID = re.compile(r"^[0-9a-f]{32}$")  # the demo server's own session ids

CONFIG = """
servers:
  - name: demo
    endpoints: ["{a}", "{b}"]
    policy: {{ deny_tools: [dangerous_delete] }}
inspection: {{ tool_integrity: off }}
circuit_breaker: {{ enabled: true, failure_threshold: 2, cooldown: 120s }}
"""


def run(coro, timeout: float = 60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def replicas():
    a, b = DemoServer("a"), DemoServer("b")
    yield a, b
    for r in (a, b):
        r.stop()


@pytest.fixture
def gateway(gateway_factory, replicas):
    a, b = replicas
    gw = gateway_factory(CONFIG.format(a=a.url, b=b.url))
    gw.url = f"http://127.0.0.1:{gw.port}/mcp/demo"
    return gw


def records(replica: DemoServer) -> list[dict]:
    return replica.received()


async def session(url: str, texts: list[str]) -> list[str]:
    """One legacy session calling echo once per text; what the caller got back."""
    async with Client(url, mode=LEGACY) as c:
        return [(await c.call_tool("echo", {"text": t})).content[0].text for t in texts]


def one_session(gw, replicas, tag: str, calls: int = 3) -> tuple[int, list[dict]]:
    """Runs one legacy session alone and returns (index of the replica that got its requests, what
    that replica recorded). Fails if any of its requests reached the other replica."""
    before = [len(records(r)) for r in replicas]
    texts = [f"{tag}-{i}" for i in range(calls)]
    assert run(session(gw.url, texts)) == texts
    new = [records(r)[n:] for r, n in zip(replicas, before)]
    got = [i for i, rs in enumerate(new) if rs]
    assert len(got) == 1, f"session {tag} reached both replicas: {[len(rs) for rs in new]}"
    return got[0], new[got[0]]


def test_every_request_of_a_legacy_session_reaches_the_replica_that_created_it(gateway, replicas):
    created = {0: 0, 1: 0}
    for n in range(20):
        which, recs = one_session(gateway, replicas, f"s{n}")
        created[which] += 1
        # The replica got the initialize that created the session, then every later request.
        methods = [json.loads(r["body"])["method"] for r in recs if r["method"] == "POST"]
        assert methods[0] == "initialize" and methods.count("tools/call") == 3, methods
        assert recs[-1]["method"] == "DELETE"
        # Every later request carries the replica's own id, unwrapped by Envoy: one id per session.
        ids = {r["headers"].get("mcp-session-id") for r in recs[1:]}
        assert len(ids) == 1 and BACKEND_ID.match(ids.pop() or ""), recs
        if n >= 5 and min(created.values()) > 0:
            break
    # Sessions spread over both replicas (new sessions are balanced round robin).
    assert min(created.values()) > 0, created


def test_the_client_holds_a_wrapped_id_the_replica_sees_its_own(gateway, replicas):
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "t", "version": "1"}})
    r = gateway.post("demo", init, {"Accept": "application/json, text/event-stream"})
    assert r.status == 200
    client_id = r.header("mcp-session-id")
    assert client_id and not BACKEND_ID.match(client_id), client_id
    hdrs = {"Accept": "application/json, text/event-stream", "Mcp-Session-Id": client_id,
            "MCP-Protocol-Version": "2025-11-25"}
    for i in range(4):
        call = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": f"w{i}"}}, id=10 + i)
        assert gateway.post("demo", call, hdrs).status == 200
    counts = [tool_calls_in([x.get("body", "") for x in records(rep)]).count("echo") for rep in replicas]
    assert sorted(counts) == [0, 4], counts
    owner = replicas[counts.index(4)]
    seen = {x["headers"].get("mcp-session-id") for x in records(owner) if "tools/call" in x.get("body", "")}
    assert len(seen) == 1 and BACKEND_ID.match(seen.pop() or "")


def test_a_refusal_in_a_pinned_session_reaches_neither_replica(gateway, replicas):
    async def go():
        async with Client(gateway.url, mode=LEGACY) as c:
            ok = await c.call_tool("echo", {"text": "before"})
            try:
                await c.call_tool("dangerous_delete", {"path": "/etc"})
                denied = None
            except MCPError as e:
                denied = e.code
            after = await c.call_tool("echo", {"text": "after"})
            return ok.content[0].text, denied, after.content[0].text

    before, denied, after = run(go())
    assert (before, after) == ("before", "after") and denied is not None
    # The whole session (initialize to DELETE) on one replica, the refused call on neither.
    per = [records(r) for r in replicas]
    assert sorted(len(p) > 0 for p in per) == [False, True], [len(p) for p in per]
    calls = [tool_calls_in([x.get("body", "") for x in p]) for p in per]
    assert sum(c.count("dangerous_delete") for c in calls) == 0, calls
    assert sorted(c.count("echo") for c in calls) == [0, 2], calls


def ejected(gw) -> int:
    stats = gw.admin("/stats?filter=^cluster\\.mcpx_server_demo\\.outlier_detection\\.ejections_active$").text
    m = re.search(r"ejections_active: (\d+)", stats)
    return int(m.group(1)) if m else 0


def test_a_killed_replica_is_ejected_and_new_sessions_go_to_the_other(gateway, replicas):
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "t", "version": "1"}})

    def dead_is_ejected():
        # Round robin still picks the dead replica now and then until the breaker has counted
        # its failures: poll with new sessions' first requests until it is ejected.
        gateway.post("demo", init, {"Accept": "application/json, text/event-stream"})
        return ejected(gateway) == 1

    async def across_the_kill():
        async with Client(gateway.url, mode=LEGACY) as c:
            for i in range(4):
                assert (await c.call_tool("echo", {"text": f"open{i}"})).content[0].text == f"open{i}"
            # The session so far, initialize included, is on one replica: the other one is killed.
            per = [records(r) for r in replicas]
            assert sorted(len(p) > 0 for p in per) == [False, True], [len(p) for p in per]
            live = replicas[0] if per[0] else replicas[1]
            dead = replicas[1] if per[0] else replicas[0]
            assert tool_calls_in([x.get("body", "") for x in records(live)]).count("echo") == 4
            dead.stop()
            wait_until(dead_is_ejected, timeout=30, what="the killed replica to be ejected")
            # The open session keeps working on its replica.
            kept = [(await c.call_tool("echo", {"text": f"kept{i}"})).content[0].text for i in range(3)]
            return live, kept

    live, kept = run(across_the_kill())
    assert kept == ["kept0", "kept1", "kept2"]
    before = len(records(live))
    # New sessions all go to the live replica, every request of each.
    for n in range(4):
        assert run(session(gateway.url, [f"new{n}-{i}" for i in range(3)])) == [f"new{n}-{i}" for i in range(3)]
    new = records(live)[before:]
    assert tool_calls_in([x.get("body", "") for x in new]).count("echo") == 12
    assert len({x["headers"].get("mcp-session-id") for x in new if x["headers"].get("mcp-session-id")}) == 4
    # One ejection: the live replica was never ejected with it; /health still reports the server.
    assert ejected(gateway) == 1
    health = gateway.request("GET", "/health")
    assert health.status == 200, health.text


def test_stateless_2026_requests_reach_both_replicas(gateway, replicas):
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    hdrs = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
    for i in range(8):
        call = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": f"m{i}"}, "_meta": meta}, id=i)
        r = gateway.post("demo", call, hdrs)
        assert r.status == 200 and f"m{i}" in r.text, r.text
    per = []
    for rep in replicas:
        calls = [x for x in records(rep) if "tools/call" in x.get("body", "")]
        assert all("mcp-session-id" not in x["headers"] for x in calls)
        per.append(len(calls))
    assert sum(per) == 8 and min(per) > 0, per


def test_one_fixed_host_keeps_its_session_ids_unwrapped(gateway_factory, demo):
    gw = gateway_factory(f"servers:\n  - name: demo\n    url: {demo.url}\ninspection: {{ tool_integrity: off }}\n")
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "t", "version": "1"}})
    r = gw.post("demo", init, {"Accept": "application/json, text/event-stream", **JSON})
    assert r.status == 200 and BACKEND_ID.match(r.header("mcp-session-id") or ""), r.header("mcp-session-id")


def test_a_forged_session_host_cannot_steer_outside_the_servers_replicas(gateway, replicas):
    """The host inside a client's session id is only a preference among this server's own replicas:
    one naming any other address (here a live MCP server that is not a replica) is ignored."""
    import base64

    outsider = DemoServer("outsider")
    try:
        def b64(s: str) -> str:
            return base64.b64encode(s.encode()).decode()

        forged = f"{b64(f'127.0.0.1:{outsider.port}')};UV:{b64('0' * 32)}"
        hdrs = {"Accept": "application/json, text/event-stream", "Mcp-Session-Id": forged,
                "MCP-Protocol-Version": "2025-11-25"}
        call = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "steer"}}, id=7)
        assert gateway.post("demo", call, hdrs).status == 200
        assert outsider.count() == 0
        assert sum(tool_calls_in([x.get("body", "") for x in records(r)]).count("echo") for r in replicas) == 1
    finally:
        outsider.stop()


def test_a_replica_added_by_reload_gets_traffic(gateway_factory, replicas):
    """From `url` (one fixed host) to `endpoints` (two) is a hot reload: the new replica serves
    without a restart and sessions are pinned from then on."""
    import os
    import signal

    from test_reload import wait_for_event

    a, b = replicas
    gw = gateway_factory(f"servers:\n  - name: demo\n    url: {a.url}\ninspection: {{ tool_integrity: off }}\n")
    gw.url = f"http://127.0.0.1:{gw.port}/mcp/demo"
    gw.config_path.write_text(CONFIG.format(a=a.url, b=b.url))
    os.kill(gw.process.proc.pid, signal.SIGHUP)
    event = wait_for_event(gw, 1)
    assert event["result"] == "applied", event
    assert "clusters" in event["changed"] and "restart_required" not in event, event
    created = {0: 0, 1: 0}
    for n in range(20):
        which, _ = one_session(gw, replicas, f"r{n}")
        created[which] += 1
        if min(created.values()) > 0:
            break
    assert min(created.values()) > 0, created
