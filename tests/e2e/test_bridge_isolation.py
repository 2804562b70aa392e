"""Shared stdio children through the real mcpx + Envoy + filter + real child processes:
identities kept apart on one child (tasks, logging level, sessions), a compromised child
(forged log lines, unbounded method names, a child that stops reading its stdin), the
gateway's secrets out of the children's reach (non-dumpable mcpx, `user:`), and the bridge's
documented lifecycle guarantees (401 message, shutdown drain, one shared child start).

Every refusal is proven at the child: the test server counts every method it received."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness import JSON, MCPX_BIN, Process, denied, jsonrpc, request, wait_until
from test_bridge import INIT, Bridge, bridges, pid_alive, stdio_server, tool_text  # noqa: F401

HERE = Path(__file__).resolve().parent
TEST_SERVER = str(HERE / "stdio_server.py")
SYSTEM_PY = "/usr/bin/python3"  # readable by other accounts (the venv's lives under /root)

ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
AUTH = f"""
auth:
  enabled: true
  type: bearer
  clients:
    - {{ name: alice, token: "{ALICE}" }}
    - {{ name: bob, token: "{BOB}" }}
clients:
  bob:
    servers:
      t: {{ allow_tools: [stats] }}
inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""


def as_(token: str, session: str | None = None) -> dict:
    h = {"Authorization": f"Bearer {token}"}
    if session:
        h["Mcp-Session-Id"] = session
    return h


def stats(gw, token: str = ALICE) -> dict:
    r = gw.post("t", jsonrpc("tools/call", {"name": "stats", "arguments": {}}, id="st"), as_(token))
    return json.loads(tool_text(r))


def received(gw, method: str) -> int:
    """How many `method` messages the child has received (its own count)."""
    return stats(gw)["methods"].get(method, 0)


def call(gw, token, tool, args=None, id=1, headers=None, timeout=30.0):
    return gw.post("t", jsonrpc("tools/call", {"name": tool, "arguments": args or {}}, id=id),
                   {**as_(token), **(headers or {})}, timeout=timeout)


# --- identities on one shared child ----------------------------------------------------------


def test_tasks_belong_to_the_identity_that_created_them(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t")) + AUTH)
    # alice starts a task; bob may not even call `echo`.
    r = gw.post("t", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "alice's secret"},
                                            "task": {"ttl": 60000}}, id=1), as_(ALICE))
    assert r.status == 200, r.text
    task = r.json()["result"]["task"]["taskId"]
    assert denied(call(gw, BOB, "echo", {"text": "x"}))
    before = {m: received(gw, m) for m in ("tasks/get", "tasks/result", "tasks/cancel", "tasks/list")}

    # bob, even claiming to be alice in the internal header, gets "task not found" from the
    # bridge for every per-task method; the child never sees these requests.
    forged = {"x-mcpx-identity": "alice", "X-Mcpx-Identity": "alice"}
    for method in ("tasks/get", "tasks/result", "tasks/cancel"):
        for extra in ({}, forged):
            r = gw.post("t", jsonrpc(method, {"taskId": task}, id=7), {**as_(BOB), **extra})
            assert r.status == 200, r.text
            assert r.json()["error"]["code"] == -32602 and r.json()["id"] == 7, r.text
            assert "alice's secret" not in r.text
    # bob's list reaches the child but comes back without alice's task.
    r = gw.post("t", jsonrpc("tasks/list", {}, id=8), {**as_(BOB), **forged})
    assert r.status == 200 and r.json()["result"]["tasks"] == [], r.text
    after = {m: received(gw, m) for m in before}
    assert after == {**before, "tasks/list": before["tasks/list"] + 1}, (before, after)

    # alice still has all of it.
    r = gw.post("t", jsonrpc("tasks/result", {"taskId": task}, id=9), as_(ALICE))
    assert r.json()["result"]["content"][0]["text"] == "alice's secret", r.text
    r = gw.post("t", jsonrpc("tasks/list", {}, id=10), as_(ALICE))
    assert [t["taskId"] for t in r.json()["result"]["tasks"]] == [task]
    r = gw.post("t", jsonrpc("tasks/cancel", {"taskId": task}, id=11), as_(ALICE))
    assert r.json()["result"]["status"] == "cancelled", r.text
    assert received(gw, "tasks/result") == before["tasks/result"] + 1
    assert received(gw, "tasks/cancel") == before["tasks/cancel"] + 1


def test_logging_set_level_is_refused_and_never_reaches_the_shared_child(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t")) + AUTH)
    r = gw.post("t", jsonrpc("logging/setLevel", {"level": "debug"}, id="lv"), as_(ALICE))
    assert r.status == 200 and r.json()["id"] == "lv", r.text
    assert r.json()["error"]["code"] == -32601
    assert "every" in r.json()["error"]["message"]
    s = stats(gw)
    assert s["methods"].get("logging/setLevel", 0) == 0 and s["log_level"] is None


def test_a_session_is_usable_only_by_the_identity_that_opened_it(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t")) + AUTH)
    init = gw.post("t", jsonrpc("initialize", INIT), as_(ALICE))
    session = init.header("mcp-session-id")
    assert init.status == 200 and session
    calls = received(gw, "tools/call")
    r = call(gw, BOB, "stats", headers={"Mcp-Session-Id": session})
    assert r.status == 404, r.text
    r = gw.request("DELETE", "/mcp/t", headers=as_(BOB, session))
    assert r.status == 404
    # Still alice's, and the refused call never reached the child (only the 2 stats calls did).
    assert tool_text(call(gw, ALICE, "echo", {"text": "mine"}, headers={"Mcp-Session-Id": session})) == "mine"
    assert received(gw, "tools/call") == calls + 2
    assert gw.request("DELETE", "/mcp/t", headers=as_(ALICE, session)).status == 204


# --- a compromised child ----------------------------------------------------------------------


def test_child_output_cannot_forge_log_lines(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t")) + AUTH + "audit: { enabled: true, output: stdout }\n")
    marker = "FORGED-7f3a9c"
    assert tool_text(call(gw, ALICE, "forge_log", {"marker": marker})) == "forged"
    # The stderr line and both log lines about the dropped messages arrive...
    wait_until(lambda: gw.process.log().count(marker) >= 3, what="the child's messages logged")
    lines = [line for line in gw.process.log().splitlines() if marker in line]
    # ...each as one line that is plainly the bridge's (never a line of its own, never JSON).
    forged = [line for line in lines if not line.startswith(("mcpx bridge: ", "[stdio:t] "))]
    assert forged == [], forged
    assert not any("\r" in line or "\x1b" in line for line in lines), lines


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def test_ever_new_method_names_do_not_grow_the_bridge(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t", timeout="120s")) + AUTH)
    mcpx = gw.process.proc.pid
    assert tool_text(call(gw, ALICE, "spam_methods", {"count": 1000, "width": 10}, timeout=60)) == "spammed"
    base = rss_kb(mcpx)
    log_before = len(gw.process.log().splitlines())
    # 60,000 distinct method names of 2 KB: about 120 MB if each were remembered.
    assert tool_text(call(gw, ALICE, "spam_methods", {"count": 60000, "width": 2000}, timeout=120)) == "spammed"
    # The answer comes after the spam on the same pipe, so all of it has been read.
    grown = rss_kb(mcpx) - base
    assert grown < 40_000, f"the bridge grew by {grown} kB"
    logged = len(gw.process.log().splitlines()) - log_before
    assert logged < 100, f"{logged} log lines for 60,000 dropped notifications"


class Notifier:
    """Posts notifications one after another in the background, as a client would."""

    def __init__(self, gw, count: int):
        self.outcomes: list[tuple[int, float]] = []
        self.last = time.monotonic()
        pad = "p" * 1024
        self.thread = threading.Thread(target=self.run, args=(gw, count, pad), daemon=True)
        self.thread.start()

    def run(self, gw, count, pad):
        for i in range(count):
            t0 = time.monotonic()
            try:
                r = gw.post("t", jsonrpc("notifications/progress", {"pad": pad, "i": i}, id=None), as_(ALICE),
                            timeout=90)
                status = r.status
            except OSError:
                status = 0
            self.last = time.monotonic()
            self.outcomes.append((status, self.last - t0))

    def stalled(self, at_least: int) -> bool:
        """True once `at_least` were sent and the next one has waited for a second."""
        return len(self.outcomes) >= at_least and time.monotonic() - self.last > 1.0


def test_a_child_that_stops_reading_cannot_hang_clients(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t", timeout="2s")) + AUTH)
    old = stats(gw)["pid"]
    assert tool_text(call(gw, ALICE, "stop_reading")) == "stopping"
    # 1,500 notifications of 1 KB: more than the pipe holds and more than the bridge queues
    # (1,024), so without write deadlines they would wait forever behind the first stuck write.
    n = Notifier(gw, 1500)
    n.thread.join(120)
    assert not n.thread.is_alive() and len(n.outcomes) == 1500, f"stuck after {len(n.outcomes)}"
    # Each was accepted or failed within a bound (request_timeout 2 s, plus slack for a busy machine).
    slow = [o for o in n.outcomes if o[0] not in (202, 502, 503) or o[1] > 20]
    assert slow == [], slow[:5]
    # The child was killed (its whole group) and a new one serves the next request.
    wait_until(lambda: not pid_alive(old), timeout=30, what="the hung child killed")
    assert "stopped reading its input" in gw.process.log()
    assert stats(gw)["pid"] != old


def test_shutdown_is_bounded_with_a_child_that_stops_reading_and_ignores_sigterm(gateway_factory):
    gw = gateway_factory(stdio_config(stdio_server("t", "--ignore-sigterm", timeout="60s")) + AUTH)
    pid = stats(gw)["pid"]
    assert tool_text(call(gw, ALICE, "stop_reading")) == "stopping"
    # A request in flight, then notifications until the bridge's queue is full and they wait.
    def in_flight():
        try:
            call(gw, ALICE, "echo", {"text": "never"}, timeout=90)
        except OSError:
            pass  # Envoy went away with mcpx

    threading.Thread(target=in_flight, daemon=True).start()
    n = Notifier(gw, 5000)
    wait_until(lambda: n.stalled(1000), timeout=120, what="notifications waiting on the stuck child")
    started = time.monotonic()
    os.kill(gw.process.proc.pid, signal.SIGTERM)
    try:
        gw.process.proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail("mcpx still running 60 s after SIGTERM")
    took = time.monotonic() - started
    # Drain (at most 10 s) + stdin closed and 3 s grace + SIGTERM and 2 s + SIGKILL: about 15 s.
    assert took < 22, f"mcpx took {took:.1f} s to stop"
    wait_until(lambda: not pid_alive(pid), timeout=5, what="the child gone")


# --- the gateway's secrets ----------------------------------------------------------------------


def envoy_pid(mcpx_pid: int) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if int(fields[1]) == mcpx_pid and comm.startswith("envoy"):
                return int(entry)
    raise AssertionError("no Envoy child of mcpx")


def test_user_runs_the_child_as_another_account_that_cannot_read_the_gateways_secrets(gateway_factory):
    servers = stdio_server("t", "--ignore-eof", env={"MINE": "x"}, command=SYSTEM_PY) + "    user: nobody\n"
    env = {"MCPX_GW_SECRET": "s3cret-in-mcpx-env"}
    gw = gateway_factory(stdio_config(servers) + AUTH, env=env)
    who = json.loads(tool_text(call(gw, ALICE, "whoami")))
    assert who["uid"] == 65534 and who["gid"] == 65534 and who["ppid"] == gw.process.proc.pid
    env_of = lambda name: json.loads(tool_text(call(gw, ALICE, "env", {"name": name})))  # noqa: E731
    assert env_of("HOME") == "/nonexistent" and env_of("USER") == "nobody"
    assert env_of("MCPX_GW_SECRET") is None
    for pid in (gw.process.proc.pid, envoy_pid(gw.process.proc.pid)):
        got = json.loads(tool_text(call(gw, ALICE, "read_environ", {"pid": pid})))
        assert got == {"ok": False, "bytes": 0, "error": "PermissionError"}, (pid, got)
    # The parent-death signal survives the switch of account: kill -9 of mcpx ends the child.
    child = stats(gw)["pid"]
    gw.process.proc.kill()
    gw.process.proc.wait(10)
    try:
        wait_until(lambda: not pid_alive(child), timeout=15, what="the child killed with mcpx")
    finally:
        if pid_alive(child):  # the test failed: leave no orphan behind
            os.kill(child, signal.SIGKILL)


def config_for_nobody(text: str) -> Path:
    """A config file another account can read (pytest's tmp_path is root-only)."""
    d = Path(tempfile.mkdtemp(prefix="mcpx-nobody-"))
    d.chmod(0o755)
    cfg = d / "mcpx.yaml"
    cfg.write_text(text)
    cfg.chmod(0o644)
    return cfg


def nobody_can_run_mcpx() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start mcpx as another account"
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", MCPX_BIN, "--version"],
                       capture_output=True)
    return None if r.returncode == 0 else f"nobody cannot run {MCPX_BIN}: {r.stderr[-200:]!r}"


def test_children_of_the_same_account_cannot_read_mcpx_memory_or_environment():
    """mcpx is not dumpable: a child running as the same (non-root) user cannot read
    /proc/<mcpx>/environ, where the gateway's secrets are."""
    why = nobody_can_run_mcpx()
    if why:
        pytest.skip(why)
    cfg = config_for_nobody("servers:\n" + stdio_server("t", command=SYSTEM_PY))
    p = Process("bridge-nobody", ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                  MCPX_BIN, "bridge", "-c", str(cfg), "--listen", "127.0.0.1:0"],
                {"MCPX_BRIDGE_SECRET_FOR_TEST": "s3cret"})
    try:
        line = wait_until(lambda: re.search(r"listening on http://127\.0\.0\.1:(\d+)", p.log()),
                          what="bridge ready", proc=p.proc)
        port = int(line.group(1))

        def tool(name, args=None):
            r = request(port, "POST", "/mcp/t", json.dumps(jsonrpc("tools/call", {"name": name,
                                                                                  "arguments": args or {}})), JSON)
            return json.loads(tool_text(r))

        me = tool("whoami")
        assert me["uid"] == 65534 and me["ppid"] == p.proc.pid
        # The child can read its own environ (same account, dumpable), not mcpx's.
        assert tool("read_environ", {"pid": me["ppid"]}) == {"ok": False, "bytes": 0, "error": "PermissionError"}
    finally:
        p.stop()


def test_user_needs_mcpx_to_run_as_root():
    why = nobody_can_run_mcpx()
    if why:
        pytest.skip(why)
    cfg = config_for_nobody("servers:\n" + stdio_server("t", command=SYSTEM_PY) + "    user: root\n")
    p = Process("bridge-user", ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                MCPX_BIN, "bridge", "-c", str(cfg), "--listen", "127.0.0.1:0"])
    assert p.proc.wait(30) == 1
    log = p.log()
    p.stop()
    assert "servers.t.user" in log and "needs mcpx to run as root" in log, log


# --- documented lifecycle guarantees -------------------------------------------------------------


def test_bridge_401_names_the_header_and_the_variable(bridges):
    b = bridges(stdio_server("t"), env={"MCPX_BRIDGE_TOKEN": "sidecar-token-123"})
    r = b.post("t", jsonrpc("ping"))
    assert r.status == 401
    msg = r.json()["error"]["message"]
    assert "x-mcpx-bridge-token" in msg and "MCPX_BRIDGE_TOKEN" in msg, msg
    assert b.post("t", jsonrpc("ping"), {"x-mcpx-bridge-token": "sidecar-token-123"}).status == 200
    # Only the good token reached the child: its one ping (after the bridge's own handshake).
    st = b.call("t", "stats", headers={"x-mcpx-bridge-token": "sidecar-token-123"})
    assert json.loads(tool_text(st))["methods"] == {"initialize": 1, "notifications/initialized": 1, "ping": 1,
                                                    "tools/call": 1}


def test_shutdown_lets_in_flight_requests_finish(bridges, tmp_path):
    b = bridges(stdio_server("t", timeout="30s"))
    release = tmp_path / "release"
    outcome = []
    t = threading.Thread(target=lambda: outcome.append(b.call("t", "hold", {"path": str(release)}, timeout=60)))
    t.start()
    wait_until(lambda: b.stats("t")["in_flight"] >= 2, what="the held call in the child")  # it + stats
    os.kill(b.process.proc.pid, signal.SIGTERM)
    wait_until(lambda: "shutting down" in b.log(), what="the bridge shutting down")
    release.touch()
    t.join(30)
    assert outcome and outcome[0].status == 200, outcome and outcome[0].text
    assert tool_text(outcome[0]) == "released"
    assert b.process.proc.wait(30) == 0


def test_concurrent_first_requests_share_one_child_start(gateway_factory, tmp_path):
    starts, hold = tmp_path / "starts", tmp_path / "go"
    gw = gateway_factory(stdio_config(stdio_server("t", "--starts", str(starts), "--hold-start", str(hold)))
                         + AUTH)
    answers: list = []
    sent = threading.Semaphore(0)

    def first(i):
        method = "initialize" if i % 2 else "tools/call"
        params = INIT if i % 2 else {"name": "stats", "arguments": {}}
        sent.release()
        answers.append((method, gw.post("t", jsonrpc(method, params, id=i), as_(ALICE), timeout=60)))

    threads = [threading.Thread(target=first, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for _ in threads:
        sent.acquire()
    # The child is started but reads nothing until released: every request is waiting on it.
    wait_until(lambda: starts.exists() and starts.read_text().strip(), what="the child started")
    hold.touch()
    for t in threads:
        t.join(60)
    assert len(answers) == 16 and all(r.status == 200 for _, r in answers), [r.text for _, r in answers]
    pids = {json.loads(r.json()["result"]["content"][0]["text"])["pid"] for m, r in answers if m == "tools/call"}
    assert len(starts.read_text().split()) == 1 and len(pids) == 1, (starts.read_text(), pids)
    assert gw.process.log().count("started server `t`") == 1
    # One initialize reached the child for all eight.
    assert stats(gw)["initialize"] == 1


def stdio_config(servers: str) -> str:
    return "servers:\n" + servers
