"""One stdio child shared by clients of both protocol eras (docs/bridge.md), through the real Envoy,
filter and bridge: the official Python SDK client in 2026-07-28 mode and in legacy mode, in either
order, interleaved, and across a child restart; progress and log notifications reach the client whose
request they belong to and nobody else; the child is opened with what the bridge can carry, never
with the first client's capabilities. What reached the child is read from its own record."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal

import pytest

from harness import jsonrpc, optional_tool, wait_until
from test_bridge import SDK_SERVER, bridges, pid_alive, stdio_server  # noqa: F401  (bridges: a fixture)

from mcp import Client  # noqa: E402  (a test dependency: tests/requirements.txt)

MODERN = "2026-07-28"
LEGACY = "legacy"
VERSION = {MODERN: "2026-07-28", LEGACY: "2025-11-25", "auto": "2026-07-28"}
PV = "io.modelcontextprotocol/protocolVersion"
CAPS = "io.modelcontextprotocol/clientCapabilities"

CONFIG = """
servers:
{servers}inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""


def run(coro, timeout: float = 120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def sdk_gateway(gateway_factory):
    gw = gateway_factory(CONFIG.format(servers=stdio_server("t", script=SDK_SERVER, timeout="20s")))
    return gw, f"http://127.0.0.1:{gw.port}/mcp/t"


async def record(c: Client) -> dict:
    return json.loads((await c.call_tool("record", {})).content[0].text)


async def use(url: str, mode: str, **client_args) -> dict:
    async with Client(url, mode=mode, **client_args) as c:
        return {
            "version": c.protocol_version,
            "tools": sorted(t.name for t in (await c.list_tools()).tools),
            "add": (await c.call_tool("add", {"a": 2, "b": 40})).content[0].text,
            "shout": (await c.call_tool("shout", {"text": "hi"})).content[0].text,
            # `auto` got them from its server/discover probe, `legacy` from initialize; a client in
            # 2026-07-28 mode does not probe, so it asks server/discover here.
            "instructions": c.instructions if mode != MODERN else (await c.session.send_discover(MODERN))[
                "instructions"],
        }


async def child_record(url: str) -> dict:
    async with Client(url, mode=LEGACY) as c:
        return await record(c)


async def interleaved(url: str, first: str, second: str) -> tuple[list[str], dict]:
    """Both clients connected at once, their calls alternating on the one child."""
    async with Client(url, mode=first) as a, Client(url, mode=second) as b:
        assert (a.protocol_version, b.protocol_version) == (VERSION[first], VERSION[second])
        out = []
        for i in range(3):
            for c in (a, b):
                out.append((await c.call_tool("add", {"a": i, "b": 10})).content[0].text)
        return out, await record(b)


async def declares_everything(**_):
    raise AssertionError("the bridge relays no server-to-client request")


# Callbacks make the SDK client declare sampling, elicitation and roots.
GREEDY = {"sampling_callback": declares_everything, "elicitation_callback": declares_everything,
          "list_roots_callback": declares_everything}


@pytest.mark.parametrize("order", [(LEGACY, MODERN), (MODERN, LEGACY)], ids=["legacy-first", "modern-first"])
def test_both_eras_share_one_child_in_either_order(gateway_factory, order):
    gw, url = sdk_gateway(gateway_factory)
    # The first client declares every capability: the child must not be opened with them.
    for mode in [*order, *order]:
        got = run(use(url, mode, **(GREEDY if mode == order[0] else {})))
        assert got["version"] == VERSION[mode], (mode, got)
        assert {"add", "shout", "work"} <= set(got["tools"]) and (got["add"], got["shout"]) == ("42", "HI"), got
    answers, rec = run(interleaved(url, *order))
    assert answers == ["10", "10", "11", "11", "12", "12"]
    # The child's own record: one process served all of it, every call arrived once, and its
    # connection was opened with the bridge's capabilities (none), not the first client's.
    assert rec["calls"] == ["add", "shout"] * 4 + ["add"] * 6, rec
    assert rec["client_capabilities"] == {}, rec
    assert gw.process.log().count("started server `t`") == 1


def test_child_restart_serves_both_eras_and_discover_is_not_stale(gateway_factory):
    gw, url = sdk_gateway(gateway_factory)
    before = {m: run(use(url, m)) for m in (MODERN, LEGACY)}
    pid = run(child_record(url))["pid"]
    assert f"pid {pid}" in before[MODERN]["instructions"] and f"pid {pid}" in before[LEGACY]["instructions"]

    async def across_restart():
        # Clients of both eras connected before the child dies keep working after.
        async with Client(url, mode=LEGACY) as old_legacy, Client(url, mode=MODERN) as old_modern:
            assert (await old_legacy.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"
            os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(wait_until, lambda: f"(pid {pid}) exited" in gw.process.log(),
                                    30, "the bridge saw the child exit")
            out = [(await c.call_tool("add", {"a": 3, "b": 4})).content[0].text for c in (old_modern, old_legacy)]
            return out, await record(old_modern)

    out, rec = run(across_restart())
    assert out == ["7", "7"] and rec["pid"] != pid and not pid_alive(pid)
    new = rec["pid"]
    # New clients of every mode; `auto` probes server/discover and must get the new child's answer.
    after = {m: run(use(url, m)) for m in (LEGACY, MODERN, "auto")}
    for mode, got in after.items():
        assert got["version"] == VERSION[mode] and got["add"] == "42", (mode, got)
        assert f"pid {new}" in got["instructions"], (mode, got["instructions"])
    assert run(child_record(url))["calls"] == ["add", "add"] + ["add", "shout"] * 3
    assert gw.process.log().count("started server `t`") == 2


@pytest.mark.parametrize("modes", [(MODERN, LEGACY), (LEGACY, MODERN)], ids=["modern-asks", "legacy-asks"])
def test_progress_and_logs_reach_only_the_client_that_asked(gateway_factory, modes):
    _, url = sdk_gateway(gateway_factory)
    got: dict[str, dict[str, list]] = {k: {"progress": [], "logs": []} for k in ("a", "b")}

    def on_log(who):
        async def cb(params):
            got[who]["logs"].append(params.data)
        return cb

    def on_progress(who):
        async def cb(progress, total, message):
            got[who]["progress"].append((progress, total, message))
        return cb

    async def go():
        async with Client(url, mode=modes[0], logging_callback=on_log("a"), log_level="debug") as a, \
                Client(url, mode=modes[1], logging_callback=on_log("b"), log_level="debug") as b:
            r = await a.call_tool("work", {"steps": 3}, progress_callback=on_progress("a"))
            assert r.content[0].text == "worked 3 steps"
            snapshot = json.loads(json.dumps(got))
            # b's request is in flight (it asked for progress too) while a works: progress still
            # finds a by its token; log messages, which name no request on stdio, go to nobody.
            held = asyncio.create_task(b.call_tool("hold", {}, progress_callback=on_progress("b")))
            while "hold" not in (await record(a))["calls"]:
                await asyncio.sleep(0.05)
            r = await a.call_tool("work", {"steps": 2}, progress_callback=on_progress("a"))
            assert r.content[0].text == "worked 2 steps"
            await a.call_tool("release", {})
            assert (await held).content[0].text == "released"
            return snapshot

    alone = run(go())
    steps = [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert alone["a"]["progress"] == [list(s) for s in steps], alone
    assert alone["a"]["logs"] == ["step 1", "step 2", "step 3"], alone
    assert got["a"]["progress"] == steps + [(1.0, 2.0, "step 1"), (2.0, 2.0, "step 2")], got
    assert got["a"]["logs"] == ["step 1", "step 2", "step 3"], got
    assert got["b"] == {"progress": [], "logs": []}, got


def test_a_version_the_bridge_does_not_serve_is_refused_before_the_child(bridges):  # noqa: F811
    b = bridges(stdio_server("t", script=SDK_SERVER))
    url = f"http://127.0.0.1:{b.port}/mcp/t"
    for version in ["2099-01-01", 7]:
        params = {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": {PV: version, CAPS: {}}}
        r = b.post("t", jsonrpc("tools/call", params, id="v"))
        assert r.status == 200, r.text
        error = r.json()["error"]
        assert error["code"] == -32022 and r.json()["id"] == "v", error
        assert "2026-07-28" in error["data"]["supported"] and "2025-11-25" in error["data"]["supported"], error
        assert error["data"]["requested"] == (version if isinstance(version, str) else None), error
        assert "unsupported protocol version" in error["message"], error
    # The child's record: neither call reached it; a good one does.
    assert run(child_record(url))["calls"] == []
    good = {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": {PV: "2026-07-28", CAPS: {}}}
    r = b.post("t", jsonrpc("tools/call", good))
    assert r.json()["result"]["content"][0]["text"] == "3" and r.json()["result"]["resultType"] == "complete"
    assert run(child_record(url))["calls"] == ["add"]


# --- server-everything, the reference server, as a second shared child -----------------------------


async def use_everything(url: str, mode: str, **client_args) -> tuple[str, list[str], str, str]:
    async with Client(url, mode=mode, **client_args) as c:
        tools = sorted(t.name for t in (await c.list_tools()).tools)
        echo = (await c.call_tool("echo", {"message": f"hi {mode}"})).content[0].text
        total = (await c.call_tool("get-sum", {"a": 2, "b": 3})).content[0].text
        return c.protocol_version, tools, echo, total


@pytest.mark.parametrize("order", [(LEGACY, MODERN), (MODERN, LEGACY)], ids=["legacy-first", "modern-first"])
def test_server_everything_shared_by_both_eras(gateway_factory, order):
    why = optional_tool("npx-everything")  # fetched before pytest by scripts/e2e-tools.sh
    if why:
        pytest.skip(why)
    servers = stdio_server("t", "-y", "@modelcontextprotocol/server-everything", "stdio",
                           command=shutil.which("npx"), script="", timeout="60s")
    gw = gateway_factory(CONFIG.format(servers=servers))
    url = f"http://127.0.0.1:{gw.port}/mcp/t"
    seen = []
    for mode in [*order, *order]:
        version, tools, echo, total = run(use_everything(url, mode, **(GREEDY if mode == order[0] else {})))
        assert version == VERSION[mode] and "echo" in tools, (mode, version, tools)
        assert echo == f"Echo: hi {mode}" and "5" in total, (echo, total)
        seen.append(tools)
    assert all(t == seen[0] for t in seen), "every client, of either era, sees the same tools"

    async def both():
        async with Client(url, mode=order[0]) as a, Client(url, mode=order[1]) as b:
            return [(await c.call_tool("echo", {"message": str(i)})).content[0].text for i in range(2) for c in (a, b)]

    assert run(both()) == ["Echo: 0", "Echo: 0", "Echo: 1", "Echo: 1"]
    log = gw.process.log()
    assert log.count("started server `t`") == 1, log[-3000:]
    # The first client declared roots, sampling and elicitation; the child was opened with none, so it
    # never asked for roots (it does at once when a client declares them; the bridge logs any request).
    assert "roots/list" not in log, log[-3000:]


# --- a 2026-only child ------------------------------------------------------------------------------


def test_a_2026_only_child_serves_handshake_clients_through_the_bridges_envelope(gateway_factory):
    gw = gateway_factory(CONFIG.format(servers=stdio_server("t", "--modern-only", timeout="20s")))
    url = f"http://127.0.0.1:{gw.port}/mcp/t"

    async def go(mode: str, **client_args):
        async with Client(url, mode=mode, **client_args) as c:
            tools = sorted(t.name for t in (await c.list_tools()).tools)
            echo = (await c.call_tool("echo", {"text": f"from {mode}"})).content[0].text
            stats = json.loads((await c.call_tool("stats", {})).content[0].text)
            return c.protocol_version, c.instructions, tools, echo, stats

    for mode in [LEGACY, MODERN, LEGACY]:
        version, instructions, tools, echo, stats = run(go(mode, **(GREEDY if mode == LEGACY else {})))
        assert version == VERSION[mode] and "echo" in tools and echo == f"from {mode}", (mode, version, echo)
        if mode == LEGACY:
            # initialize was answered from the child's server/discover (instructions, pid and all).
            assert instructions == f"modern-only, pid {stats['pid']}", instructions
    # The child's record: it refused the bridge's one initialize and saw no client's; every request
    # carried an envelope; the handshake clients' ones declared the bridge's capabilities, not theirs.
    assert stats["methods"]["initialize"] == 1 and stats["unenveloped"] == 0, stats
    assert stats["calls"] == ["echo", "stats"] * 3, stats
    legacy_caps = [caps for method, version, caps in stats["envelopes"] if method == "tools/list"]
    assert len(legacy_caps) == 3 and legacy_caps[0] == {} and legacy_caps[2] == {}, stats["envelopes"]
    assert all(v == "2026-07-28" for _, v, _ in stats["envelopes"]), stats["envelopes"]
    assert gw.process.log().count("opened in the 2026-07-28 era") == 1
