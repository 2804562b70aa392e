"""The stdio bridge (docs/bridge.md) with real child processes: `mcpx bridge` alone,
and `mcpx run` with stdio servers behind the real Envoy and filter."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import JSON, MCPX_BIN, Process, denied, jsonrpc, optional_tool, request, wait_until

HERE = Path(__file__).resolve().parent
PY = sys.executable
TEST_SERVER = str(HERE / "stdio_server.py")
SDK_SERVER = str(HERE / "sdk_stdio_server.py")
INIT = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "1"}}


def stdio_server(name: str, *extra: str, timeout: str | None = None, env: dict | None = None,
                 workdir: str | None = None, command: str = PY, script: str = TEST_SERVER) -> str:
    lines = [f"  - name: {name}", "    transport: stdio", f"    command: {json.dumps(command)}",
             f"    args: {json.dumps([script, *extra] if script else list(extra))}"]
    if timeout:
        lines.append(f"    request_timeout: {timeout}")
    if env:
        lines.append(f"    env: {json.dumps(env)}")
    if workdir:
        lines.append(f"    workdir: {json.dumps(workdir)}")
    return "\n".join(lines) + "\n"


class Bridge:
    """`mcpx bridge -c FILE --listen 127.0.0.1:0`; the port comes from its ready line."""

    def __init__(self, servers: str, extra_config: str = "", env: dict | None = None):
        self.dir = Path(tempfile.mkdtemp(prefix="mcpx-bridge-"))
        self.config_path = self.dir / "mcpx.yaml"
        self.write(servers, extra_config)
        self.process = Process("bridge", [MCPX_BIN, "bridge", "-c", str(self.config_path), "--listen", "127.0.0.1:0"],
                               env)
        line = wait_until(lambda: re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.process.log()),
                          what="bridge ready", proc=self.process.proc)
        self.port = int(line.group(1))

    def write(self, servers: str, extra_config: str = "") -> None:
        self.config_path.write_text("servers:\n" + servers + extra_config)

    def post(self, server: str, message, headers=None, timeout: float = 30.0):
        body = message if isinstance(message, (bytes, str)) else json.dumps(message)
        return request(self.port, "POST", f"/mcp/{server}", body, {**JSON, **(headers or {})}, timeout)

    def call(self, server: str, tool: str, args: dict | None = None, id=1, headers=None, timeout: float = 30.0):
        return self.post(server, jsonrpc("tools/call", {"name": tool, "arguments": args or {}}, id=id), headers,
                         timeout)

    def stats(self, server: str) -> dict:
        r = self.call(server, "stats")
        assert r.status == 200, r.text
        return json.loads(r.json()["result"]["content"][0]["text"])

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def stop(self) -> int:
        return self.process.stop()


@pytest.fixture
def bridges():
    started: list[Bridge] = []

    def start(servers: str, extra_config: str = "", env: dict | None = None) -> Bridge:
        b = Bridge(servers, extra_config, env)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def tool_text(r) -> str:
    assert r.status == 200, r.text
    body = r.json()
    assert "result" in body, body
    return body["result"]["content"][0]["text"]


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


# --- concurrency and ids -------------------------------------------------------------------------


def test_32_concurrent_slow_calls_overlap_and_each_gets_its_own_answer(bridges):
    """32 calls, all with id 1, must be inside the child at the same time: each
    waits in the child until all 32 have arrived (the `gather` tool), so a
    bridge that serialised them (or dropped one) would leave them waiting and
    the answers would say `together: false`. No clocks are compared."""
    b = bridges(stdio_server("t"))
    assert b.post("t", jsonrpc("initialize", INIT)).status == 200
    results: dict[int, object] = {}

    def worker(i: int):
        # Every client uses id 1: the bridge must keep them apart.
        results[i] = b.call("t", "gather", {"n": 32, "group": "g", "tag": f"caller-{i}"}, id=1, timeout=90)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 32
    for i, r in results.items():
        body = r.json()
        assert r.status == 200 and body["id"] == 1, r.text
        answer = json.loads(body["result"]["content"][0]["text"])
        assert answer == {"tag": f"caller-{i}", "together": True}, answer
    assert b.stats("t")["initialize"] == 1


# --- handshake, sessions, notifications ---------------------------------------------------------


def test_initialize_is_cached_sessions_and_notifications(bridges):
    b = bridges(stdio_server("t"))
    first = b.post("t", jsonrpc("initialize", INIT, id="a"))
    second = b.post("t", jsonrpc("initialize", INIT, id=99))
    assert first.status == second.status == 200
    assert second.json()["id"] == 99
    assert first.json()["result"] == second.json()["result"]
    s1, s2 = first.header("mcp-session-id"), second.header("mcp-session-id")
    assert s1 and s2 and s1 != s2
    # Notifications: 202 and no body; the clients' `initialized` are absorbed.
    for s in (s1, s2):
        r = b.post("t", jsonrpc("notifications/initialized", id=None), {"Mcp-Session-Id": s})
        assert r.status == 202 and r.body == b""
    r = b.post("t", jsonrpc("notifications/roots/list_changed", id=None), {"Mcp-Session-Id": s1})
    assert r.status == 202
    st = b.stats("t")
    assert st["initialize"] == 1 and st["initialized"] == 1
    # DELETE ends a session; it is then unknown (404), the other one still works.
    assert request(b.port, "DELETE", "/mcp/t", headers={"Mcp-Session-Id": s1}).status == 204
    assert b.call("t", "echo", {"text": "x"}, headers={"Mcp-Session-Id": s1}).status == 404
    assert tool_text(b.call("t", "echo", {"text": "y"}, headers={"Mcp-Session-Id": s2})) == "y"
    assert request(b.port, "DELETE", "/mcp/t", headers={"Mcp-Session-Id": "nope"}).status == 404
    # GET (server stream) is not offered; unknown servers are 404.
    assert request(b.port, "GET", "/mcp/t").status == 405
    assert b.post("nope", jsonrpc("ping")).status == 404


def test_batch_is_split_and_reassembled_in_order(bridges):
    b = bridges(stdio_server("t"))
    batch = [jsonrpc("tools/call", {"name": "slow", "arguments": {"ms": 300, "tag": "first"}}, id="x"),
             jsonrpc("notifications/roots/list_changed", id=None),
             jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "second"}}, id=1),
             {"jsonrpc": "2.0", "id": {}, "method": "ping"}]
    r = b.post("t", batch)
    assert r.status == 200, r.text
    answers = r.json()
    assert [a["id"] for a in answers] == ["x", 1, None]
    assert json.loads(answers[0]["result"]["content"][0]["text"])["tag"] == "first"
    assert answers[1]["result"]["content"][0]["text"] == "second"
    assert answers[2]["error"]["code"] == -32600
    assert b.post("t", [jsonrpc("notifications/x", id=None)]).status == 202


# --- failures ---------------------------------------------------------------------------------


def test_kill_9_fails_only_in_flight_requests_and_sessions_survive(bridges):
    b = bridges(stdio_server("t"))
    init = b.post("t", jsonrpc("initialize", INIT))
    session = {"Mcp-Session-Id": init.header("mcp-session-id")}
    old = b.stats("t")
    outcomes = []

    def slow(i):
        outcomes.append(b.call("t", "slow", {"ms": 20000, "tag": str(i)}, id=i, headers=session))

    threads = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: b.stats("t")["in_flight"] >= 4, what="slow calls in flight")  # 3 + the stats call
    os.kill(old["pid"], signal.SIGKILL)
    for t in threads:
        t.join(30)
    assert len(outcomes) == 3
    for r in outcomes:
        body = r.json()
        assert r.status == 502 and body["id"] in (0, 1, 2), r.text
        assert "exited" in body["error"]["message"] and "SIGKILL" in body["error"]["message"]
    # The next request, on the same session without a new initialize, works on a new child
    # that the bridge opened with its own handshake.
    assert tool_text(b.call("t", "echo", {"text": "after"}, headers=session)) == "after"
    new = b.stats("t")
    assert new["pid"] != old["pid"]
    assert new["initialize"] == 1 and new["initialized"] == 1
    assert not pid_alive(old["pid"])
    assert b.log().count("opened in the handshake era") == 2


def test_request_timeout_fails_that_request_only(bridges):
    b = bridges(stdio_server("t", timeout="500ms"))
    b.post("t", jsonrpc("initialize", INIT))
    started = time.monotonic()
    r = b.call("t", "slow", {"ms": 5000}, id="late")
    assert r.status == 504, r.text
    assert time.monotonic() - started < 4.5
    body = r.json()
    assert body["id"] == "late" and body["error"]["code"] == -32054
    assert "request_timeout" in body["error"]["message"]
    # The child is fine and was told to stop working on it.
    assert tool_text(b.call("t", "echo", {"text": "ok"})) == "ok"
    wait_until(lambda: b.stats("t")["cancelled"] >= 1, what="notifications/cancelled reached the child")


def test_crash_loop_fails_fast_with_503(bridges):
    b = bridges(stdio_server("dead", "import sys; sys.exit(3)", script="-c", timeout="5s"))
    statuses = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        r = b.post("dead", jsonrpc("ping"), timeout=10)
        assert time.monotonic() - t0 < 5, "a request to a crash-looping server must not hang"
        statuses.append(r.status)
        body = r.json()
        assert "error" in body, r.text
        if r.status == 503 and "crash-looping" in body["error"]["message"]:
            assert int(r.header("retry-after")) >= 1
            break
    else:
        pytest.fail(f"never reported as crash-looping: {statuses}")


def test_unset_env_variable_is_a_clear_startup_error(tmp_path):
    cfg = tmp_path / "mcpx.yaml"
    cfg.write_text("servers:\n" + stdio_server("t", env={"TOKEN": "${MCPX_TEST_UNSET_VAR}"}))
    p = Process("bridge-unset", [MCPX_BIN, "bridge", "-c", str(cfg), "--listen", "127.0.0.1:0"])
    assert p.proc.wait(30) == 1
    log = p.log()
    p.stop()
    assert "servers.t.env.TOKEN" in log and "MCPX_TEST_UNSET_VAR is not set" in log, log


def test_missing_command_is_a_clear_503(bridges):
    b = bridges(stdio_server("gone", command="/nonexistent/mcp-server", script=""))
    r = b.post("gone", jsonrpc("ping", id=5))
    assert r.status == 503
    assert r.json()["id"] == 5
    assert "command not found" in r.json()["error"]["message"]


# --- the child's output ---------------------------------------------------------------------


def test_garbage_on_stdout_is_logged_and_skipped(bridges):
    b = bridges(stdio_server("t"))
    assert tool_text(b.call("t", "garbage", {"text": "still here"})) == "still here"
    assert tool_text(b.call("t", "echo", {"text": "next"})) == "next"
    assert "wrote non-JSON" in b.log()


def test_answers_pass_through_byte_for_byte(bridges):
    b = bridges(stdio_server("t"))
    r = b.post("t", jsonrpc("tools/list", id="L"))
    assert r.status == 200
    # Python's json.dumps spacing and key order (name before description) survive: the
    # bridge swaps the id back and never re-serialises the result.
    assert r.text.startswith('{"jsonrpc":"2.0","id":"L","result":{"tools": [{"name": "echo", "description": ')


def test_several_megabyte_messages_both_ways(bridges):
    b = bridges(stdio_server("t"))
    # 6 MB answer, written by the child in 50 partial pieces.
    r = b.call("t", "big", {"bytes": 6_000_000}, timeout=60)
    assert len(tool_text(r)) == 6_000_000
    data = "é" * 2_000_000  # 4 MB of UTF-8
    r = b.call("t", "size", {"data": data}, timeout=60)
    got = json.loads(tool_text(r))
    assert got == {"len": 4_000_000, "sha256": hashlib.sha256(data.encode()).hexdigest()}


def test_server_initiated_messages_are_dropped_and_requests_answered(bridges):
    b = bridges(stdio_server("t"))
    assert tool_text(b.call("t", "server_initiated")) == "sent"
    replies = wait_until(lambda: b.stats("t")["replies_to_server_requests"], what="the bridge answered roots/list")
    assert replies[0]["id"] == "srv-1" and replies[0]["error"]["code"] == -32601
    log = b.log()
    assert "notifications/message" in log and "roots/list" in log


# --- environment ---------------------------------------------------------------------------


def test_env_workdir_and_secrets(bridges, tmp_path):
    env = {"GW_SECRET": "gw-s3cret", "MCPX_ADMIN_THING": "x", "MY_FOO": "foo-value", "OTHER_TOKEN": "o-s3cret"}
    servers = (stdio_server("t", env={"FOO": "${MY_FOO}"}, workdir=str(tmp_path))
               + stdio_server("other", env={"TOKEN": "${OTHER_TOKEN}"}))
    b = bridges(servers, 'auth:\n  enabled: true\n  token: "${GW_SECRET}"\n', env=env)

    def getenv(name):
        return json.loads(tool_text(b.call("t", "env", {"name": name})))

    assert getenv("FOO") == "foo-value"
    assert getenv("PATH")  # inherited, so npx/uvx work
    assert getenv("GW_SECRET") is None  # the gateway's own secret
    assert getenv("MCPX_ADMIN_THING") is None
    assert getenv("OTHER_TOKEN") is None  # another server's secret
    assert tool_text(b.call("t", "cwd")) == str(tmp_path)


# --- reload and shutdown --------------------------------------------------------------------


def test_sighup_reload_keeps_unchanged_child_and_replaces_changed(bridges):
    b = bridges(stdio_server("keep") + stdio_server("change", "--tag", "v1") + stdio_server("drop"))
    keep, change, drop = (b.stats(n)["pid"] for n in ("keep", "change", "drop"))
    b.write(stdio_server("keep", timeout="9s") + stdio_server("change", "--tag", "v2") + stdio_server("added"))
    os.kill(b.process.proc.pid, signal.SIGHUP)
    wait_until(lambda: "reloaded" in b.log(), what="reload")
    assert "kept [keep], added [added], replaced [change], removed [drop]" in b.log()
    assert b.stats("keep")["pid"] == keep
    after = b.stats("change")
    assert after["tag"] == "v2" and after["pid"] != change
    wait_until(lambda: not pid_alive(change) and not pid_alive(drop), what="retired children exited")
    assert b.post("drop", jsonrpc("ping")).status == 404
    assert b.stats("added")["pid"] not in (keep, change, drop)
    # An invalid file is rejected and the running config stays.
    b.config_path.write_text("servers: [{name: BAD}]\n")
    os.kill(b.process.proc.pid, signal.SIGHUP)
    wait_until(lambda: "reload rejected" in b.log(), what="rejected reload")
    assert b.stats("keep")["pid"] == keep


@pytest.mark.parametrize("flags", [[], ["--ignore-eof"]], ids=["polite", "lingering"])
def test_no_orphans_after_shutdown(bridges, flags):
    b = bridges(stdio_server("t", *flags))
    pid = b.stats("t")["pid"]
    grandchild = int(tool_text(b.call("t", "spawn_grandchild")))
    assert pid_alive(grandchild) and set(group_members(pid)) >= {pid, grandchild}
    assert b.stop() == 0
    wait_until(lambda: not pid_alive(pid) and not pid_alive(grandchild) and not group_members(pid),
               timeout=15, what="child and grandchild gone")
    if flags:
        assert "ignored stdin closing" in b.log()


def test_kill_9_of_the_bridge_takes_the_child_with_it(bridges):
    # Not graceful, so no group teardown: PR_SET_PDEATHSIG makes the kernel kill the child.
    b = bridges(stdio_server("t"))
    pid = b.stats("t")["pid"]
    b.process.proc.kill()
    b.process.proc.wait(10)
    wait_until(lambda: not pid_alive(pid), timeout=15, what="child killed with its parent")


# --- real-world servers ----------------------------------------------------------------------


def run_sdk_client(url: str, mode: str) -> tuple[list[str], str]:
    import asyncio

    from mcp import Client

    async def go():
        async with Client(url, mode=mode) as c:
            tools = await c.list_tools()
            r = await c.call_tool("add", {"a": 2, "b": 40})
            return [t.name for t in tools.tools], r.content[0].text

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_official_sdk_stdio_server_through_the_bridge(bridges, mode):
    b = bridges(stdio_server("sdk", script=SDK_SERVER))
    names, answer = run_sdk_client(f"http://127.0.0.1:{b.port}/mcp/sdk", mode)
    assert {"add", "shout"} <= set(names) and answer == "42"
    # A second client (fresh session) works on the same child.
    assert run_sdk_client(f"http://127.0.0.1:{b.port}/mcp/sdk", mode) == (names, answer)
    assert b.log().count("started server `sdk`") == 1


# --- through the gateway (`mcpx run`) --------------------------------------------------------


GATEWAY_CONFIG = """
servers:
{servers}    policy:
      deny_tools: [crash]
inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""


def bridge_address(gw) -> tuple[int, str]:
    # `mcpx run` serves clusters by CDS (docs/reload-and-health.md).
    cds = json.loads((gw.dir / "run" / "dynamic" / "cds" / "resources.json").read_text())
    routes = json.loads((gw.dir / "run" / "dynamic" / "rds" / "resources.json").read_text())
    envoy = {"clusters": cds["resources"], "routes": routes["resources"]}
    cluster = next(c for c in envoy["clusters"] if c["name"] == "mcpx_server_t")
    port = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
        "port_value"]
    return port, json.dumps(envoy)


def test_gateway_serves_a_stdio_server_with_policy(gateway_factory):
    gw = gateway_factory(GATEWAY_CONFIG.format(servers=stdio_server("t")))
    init = gw.post("t", jsonrpc("initialize", INIT))
    assert init.status == 200, init.text
    session = {"Mcp-Session-Id": init.header("mcp-session-id")}
    assert session["Mcp-Session-Id"]
    assert gw.post("t", jsonrpc("notifications/initialized", id=None), session).status == 202
    r = gw.post("t", jsonrpc("tools/list"), session)
    names = [t["name"] for t in r.json()["result"]["tools"]]
    assert "echo" in names and "crash" not in names
    r = gw.post("t", jsonrpc("tools/call", {"name": "crash", "arguments": {}}, id=3), session)
    assert denied(r), r.text
    r = gw.post("t", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "via envoy"}}, id=4), session)
    assert r.status == 200 and r.json()["result"]["content"][0]["text"] == "via envoy"
    # Nobody but this Envoy may use the bridge: a local process going around the gateway is refused.
    port, _ = bridge_address(gw)
    direct = request(port, "POST", "/mcp/t", json.dumps(jsonrpc("tools/call", {"name": "crash"})), JSON)
    assert direct.status == 401
    forged = request(port, "POST", "/mcp/t", json.dumps(jsonrpc("tools/call", {"name": "crash"})),
                     {**JSON, "x-mcpx-bridge-token": "guess"})
    assert forged.status == 401
    # The child's own record: the denied and the refused calls never reached it.
    r = gw.post("t", jsonrpc("tools/call", {"name": "stats", "arguments": {}}, id=5), session)
    assert json.loads(r.json()["result"]["content"][0]["text"])["calls"] == ["echo", "stats"]


def test_gateway_run_leaves_no_orphans(gateway_factory):
    gw = gateway_factory(GATEWAY_CONFIG.format(servers=stdio_server("t")))
    r = gw.post("t", jsonrpc("tools/call", {"name": "stats", "arguments": {}}))
    pid = json.loads(r.json()["result"]["content"][0]["text"])["pid"]
    r = gw.post("t", jsonrpc("tools/call", {"name": "spawn_grandchild", "arguments": {}}))
    grandchild = int(r.json()["result"]["content"][0]["text"])
    assert pid_alive(pid) and pid_alive(grandchild)
    gw.stop()
    wait_until(lambda: not pid_alive(pid) and not pid_alive(grandchild) and not group_members(pid),
               timeout=20, what="stdio children gone after mcpx run stopped")


def test_server_everything_via_npx_through_the_gateway(gateway_factory):
    why = optional_tool("npx-everything")  # fetched before pytest by scripts/e2e-tools.sh
    if why:
        pytest.skip(why)
    import shutil

    servers = stdio_server("t", "-y", "@modelcontextprotocol/server-everything", "stdio",
                           command=shutil.which("npx"), script="", timeout="60s")
    gw = gateway_factory(GATEWAY_CONFIG.format(servers=servers))
    init = gw.post("t", jsonrpc("initialize", INIT), timeout=90)
    assert init.status == 200, init.text
    session = {"Mcp-Session-Id": init.header("mcp-session-id")}
    gw.post("t", jsonrpc("notifications/initialized", id=None), session)
    r = gw.post("t", jsonrpc("tools/call", {"name": "echo", "arguments": {"message": "hi"}}, id=2), session,
                timeout=60)
    assert r.status == 200, r.text
    assert "hi" in r.json()["result"]["content"][0]["text"]
    # npx runs node as a grandchild: the whole group must go when the gateway stops. The stdio
    # child is the child of mcpx that leads its own process group (Envoy shares mcpx's group).
    mcpx = gw.process.proc.pid
    groups = {p for p in _children(mcpx) if os.getpgid(p) == p}
    assert groups and all(group_members(g) for g in groups)
    gw.stop()
    wait_until(lambda: not any(group_members(g) for g in groups), timeout=20, what="npx and node gone")


def _children(parent: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == parent:
                        kids.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return kids


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_official_sdk_client_and_server_through_the_gateway(gateway_factory, mode):
    gw = gateway_factory(GATEWAY_CONFIG.format(servers=stdio_server("t", script=SDK_SERVER)))
    names, answer = run_sdk_client(f"http://127.0.0.1:{gw.port}/mcp/t", mode)
    assert {"add", "shout"} <= set(names) and answer == "42"


def test_gateway_kill_9_mid_request_then_session_continues(gateway_factory):
    gw = gateway_factory(GATEWAY_CONFIG.format(servers=stdio_server("t")))
    init = gw.post("t", jsonrpc("initialize", INIT))
    session = {"Mcp-Session-Id": init.header("mcp-session-id")}

    def stats():
        r = gw.post("t", jsonrpc("tools/call", {"name": "stats", "arguments": {}}), session)
        return json.loads(r.json()["result"]["content"][0]["text"])

    old = stats()
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(
        gw.post("t", jsonrpc("tools/call", {"name": "slow", "arguments": {"ms": 20000}}, id="s"), session,
                timeout=30)))
    t.start()
    wait_until(lambda: stats()["in_flight"] >= 2, what="slow call in flight")
    os.kill(old["pid"], signal.SIGKILL)
    t.join(30)
    r = outcome[0]
    assert r.status == 502 and r.json()["id"] == "s" and "exited" in r.json()["error"]["message"], r.text
    new = stats()
    assert new["pid"] != old["pid"] and new["initialize"] == 1
