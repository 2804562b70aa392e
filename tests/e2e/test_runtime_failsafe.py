"""A runtime that fails safe, through the real `mcpx run` + Envoy:

- Envoy lives and dies with mcpx (parent-death signal, own process group):
  after `kill -9` of mcpx no Envoy keeps serving the old policy, and a restart
  with a tighter policy enforces it.
- "gateway ready" only when our own Envoy bound every listener; a taken listen,
  admin or control address is a refusal that names it, exit non-zero.
- A reload Envoy refuses changes nothing: neither the looser policy nor the
  removal of a stdio server that came with it.
- The control socket is the operator's alone (mode 0600 in a 0700 directory).
- No secret in Envoy's environment; mcpx itself is not dumpable.
- The default work directory is removed when mcpx exits.

Every wait is a bounded poll on a condition."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness import (ENVOY_BIN, JSON, MCPX_BIN, ROOT, WASM, Process, denied, free_port, jsonrpc, request,
                     unix_request, wait_until)
from test_bridge import stdio_server

POLICY = """
servers:
  - name: demo
    url: {url}
    policy:
      deny_tools: [{deny}]
{extra}inspection: {{ tool_integrity: {integrity}, filter_tools_list: true }}
"""


def config(demo, deny: str = "dangerous_delete", extra: str = "", integrity: str = "off", listen: str = "") -> str:
    text = POLICY.format(url=demo.url, deny=deny, extra=extra, integrity=integrity)
    return (f'listen: "{listen}"\n' if listen else "") + text


class Run:
    """`mcpx run` on addresses the test chooses (so a second run can reuse them)."""

    def __init__(self, text: str, dir: Path, port: int | None, admin: int, control: Path | None,
                 extra: list[str] | None = None, wait_ready: bool = True, prefix: list[str] | None = None,
                 env: dict[str, str] | None = None, workdir: bool = True):
        self.dir = dir
        self.config_path = dir / "mcpx.yaml"
        self.config_path.write_text(text)
        self.port, self.admin_port, self.control = port, admin, control
        argv = [*(prefix or []), MCPX_BIN, "run", "-c", str(self.config_path), "--admin", f"127.0.0.1:{admin}",
                "--wasm", WASM, "--envoy", ENVOY_BIN, "--concurrency", "1"]
        if port is not None:
            argv += ["--listen", f"127.0.0.1:{port}"]
        argv += ["--control", str(control)] if control else ["--no-control"]
        if workdir:
            argv += ["--workdir", str(dir / "run")]
        self.process = Process("gateway-failsafe", argv + (extra or []), env)
        if wait_ready:
            wait_until(lambda: "gateway ready" in self.process.log(), timeout=60, what="gateway ready",
                       proc=self.process.proc)

    def exit_code(self, timeout: float = 60) -> int:
        """Waits for mcpx to exit by itself."""
        return self.process.proc.wait(timeout)

    def envoy_pid(self) -> int:
        return envoy_child(self.process.proc.pid)

    def call(self, tool: str, args: dict | None = None, port: int | None = None):
        body = json.dumps(jsonrpc("tools/call", {"name": tool, "arguments": args or {"text": "hi"}}))
        return request(port or self.port, "POST", "/mcp/demo", body, JSON)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.process.log().splitlines()
                if line.startswith("{") and '"event":"reload"' in line]

    def stop(self) -> int:
        return self.process.stop()


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def envoy_child(pid: int) -> int:
    def find():
        for c in children(pid):
            try:
                if Path(f"/proc/{c}/exe").resolve().name == "envoy" or "envoy" in Path(f"/proc/{c}/comm").read_text():
                    return c
            except OSError:
                continue
        return None
    return wait_until(find, timeout=30, what="Envoy child of mcpx")


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts: it serves nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except OSError:
        return True


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def count_calls(demo, tool: str) -> int:
    """How many tools/call of `tool` the backend received (parsed, not searched)."""
    n = 0
    for body in demo.received_bodies():
        try:
            msg = json.loads(body)
        except ValueError:
            continue
        for m in msg if isinstance(msg, list) else [msg]:
            if isinstance(m, dict) and m.get("method") == "tools/call" and m.get("params", {}).get("name") == tool:
                n += 1
    return n


@pytest.fixture
def workspace():
    d = Path(tempfile.mkdtemp(prefix="mcpx-failsafe-"))
    runs: list[Run] = []
    yield d, runs
    for r in runs:
        r.stop()


# --- Envoy lives and dies with mcpx -------------------------------------------------------------


def test_envoy_dies_with_mcpx_and_a_restart_enforces_the_new_policy(demo, workspace):
    d, runs = workspace
    port, admin = free_port(), free_port()
    first = Run(config(demo, deny="dangerous_delete"), d, port, admin, d / "ctl" / "control.sock")
    runs.append(first)
    assert first.call("echo").status == 200
    mcpx, envoy = first.process.proc.pid, first.envoy_pid()
    # Envoy leads its own process group (so mcpx can end it and anything it starts).
    assert os.getpgid(envoy) == envoy != os.getpgid(mcpx)
    os.kill(mcpx, signal.SIGKILL)
    first.process.proc.wait(10)
    wait_until(lambda: gone(envoy), timeout=15, what="Envoy to die with mcpx")
    wait_until(lambda: refused(port), timeout=15, what="nothing serving the old policy")
    # Its threads may still be exiting under load: the ports come free with the last one.
    wait_until(lambda: bindable(port) and bindable(admin), timeout=30, what="the old Envoy's ports released")
    # A restart on the same addresses with a tighter policy: ready, and it enforces it.
    second_dir = d / "second"
    second_dir.mkdir()
    second = Run(config(demo, deny="echo"), second_dir, port, admin, d / "ctl" / "control.sock")
    runs.append(second)
    before = count_calls(demo, "echo")
    assert denied(second.call("echo"))
    assert count_calls(demo, "echo") == before


def test_envoy_is_stopped_when_mcpx_is_terminated(demo, workspace):
    d, runs = workspace
    run = Run(config(demo), d, free_port(), free_port(), None)
    runs.append(run)
    envoy = run.envoy_pid()
    os.kill(run.process.proc.pid, signal.SIGTERM)  # mcpx alone, not its group
    run.exit_code(30)
    assert gone(envoy)
    assert refused(run.port)


# --- readiness proven against our own Envoy ------------------------------------------------------


def hold(port: int, reuse_port: bool) -> socket.socket:
    s = socket.socket()
    if reuse_port:
        # As an Envoy left running would: Envoy sets SO_REUSEPORT by default,
        # and a second socket with it could share the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


@pytest.mark.parametrize("taken", ["listen", "admin"])
def test_a_taken_port_is_a_refusal_that_names_it(demo, workspace, taken):
    d, runs = workspace
    port, admin = free_port(), free_port()
    holder = hold(port if taken == "listen" else admin, reuse_port=True)
    try:
        run = Run(config(demo), d, port, admin, d / "ctl" / "control.sock", wait_ready=False)
        runs.append(run)
        code = run.exit_code()
        log = run.process.log()
        assert code != 0
        assert "gateway ready" not in log
        busy = port if taken == "listen" else admin
        flag = "--listen" if taken == "listen" else "--admin"
        assert re.search(rf"refusing to start: .*127\.0\.0\.1:{busy}.*{flag}", log), log[-2000:]
        # The other process still has its port; nothing of ours is left on the others.
        assert not refused(busy)
        assert refused(admin if taken == "listen" else port)
        assert not (d / "ctl" / "control.sock").exists()
    finally:
        holder.close()


def test_a_control_socket_in_use_is_a_refusal(demo, workspace):
    d, runs = workspace
    control = d / "ctl" / "control.sock"
    first = Run(config(demo), d, free_port(), free_port(), control)
    runs.append(first)
    other = d / "other"
    other.mkdir()
    second = Run(config(demo), other, free_port(), free_port(), control, wait_ready=False)
    runs.append(second)
    assert second.exit_code() != 0
    log = second.process.log()
    assert "gateway ready" not in log
    assert f"the socket {control} is in use" in log and "--control PATH" in log, log[-2000:]
    # The first gateway's socket was left alone and still answers.
    assert unix_request(str(control), "GET", "/baseline").status == 200


# --- reloads are all or nothing -----------------------------------------------------------------


def child_pid(port: int, server: str) -> int:
    body = json.dumps(jsonrpc("tools/call", {"name": "stats", "arguments": {}}))
    r = request(port, "POST", f"/mcp/{server}", body, JSON)
    assert r.status == 200, r.text
    return json.loads(r.json()["result"]["content"][0]["text"])["pid"]


def documented_reload_keys() -> set[str]:
    """The keys of the reload events shown in docs/reload-and-health.md."""
    text = (ROOT / "docs" / "reload-and-health.md").read_text()
    keys: set[str] = set()
    for line in text.splitlines():
        if line.startswith("{") and '"event":"reload"' in line:
            keys |= set(json.loads(line))
    return keys


def test_a_reload_envoy_refuses_changes_nothing(demo, workspace):
    d, runs = workspace
    port, admin = free_port(), free_port()
    stdio = stdio_server("t")
    # Without --listen: `listen:` in the file is what the reload changes.
    run = Run(config(demo, deny="dangerous_delete", extra=stdio, listen=f"127.0.0.1:{port}"), d, None, admin, None)
    runs.append(run)
    run.port = port
    pid = child_pid(port, "t")
    assert denied(run.call("dangerous_delete", {"path": "/x"}))
    holder = hold(free_port(), reuse_port=False)
    try:
        busy = holder.getsockname()[1]
        # Looser policy (nothing denied), the stdio server removed, and a listener Envoy cannot bind.
        run.config_path.write_text(config(demo, deny="", listen=f"127.0.0.1:{busy}"))
        os.kill(run.process.proc.pid, signal.SIGHUP)
        event = wait_until(run.events, timeout=30, what="reload event", proc=run.process.proc)[0]
    finally:
        holder.close()
    assert event["result"] == "rejected", event
    assert event["changed"] == ["clusters", "filter", "routes", "listener"], event
    assert event["applied"] == [], event
    assert "listener" in event["error"], event
    # The documented field names, and only those.
    assert set(event) <= documented_reload_keys(), event
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"]), event
    # The old policy still denies, and the call never reached the backend.
    before = count_calls(demo, "dangerous_delete")
    assert denied(run.call("dangerous_delete", {"path": "/x"}))
    assert count_calls(demo, "dangerous_delete") == before
    # The stdio server is still served by the very same child.
    assert child_pid(port, "t") == pid
    # A reload that Envoy accepts afterwards is applied in full.
    run.config_path.write_text(config(demo, deny="echo", extra=stdio, listen=f"127.0.0.1:{port}"))
    os.kill(run.process.proc.pid, signal.SIGHUP)
    second = wait_until(lambda: len(run.events()) >= 2 and run.events(), timeout=30, what="second reload")[1]
    assert second["result"] == "applied" and second["applied"] == ["filter"], second
    assert denied(run.call("echo"))


# --- the control socket is the operator's alone --------------------------------------------------

AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_the_control_socket_is_the_operators_alone(demo, workspace):
    d, runs = workspace
    control = d / "ctl" / "control.sock"
    run = Run(config(demo, integrity="enforce"), d, free_port(), free_port(), control)
    runs.append(run)
    r = request(run.port, "POST", "/mcp/demo", json.dumps(jsonrpc("tools/list")), JSON)
    assert r.status == 200
    pins = unix_request(str(control), "GET", "/baseline").json()
    assert "echo" in pins["servers"]["demo"]
    # Owner-only socket in an owner-only directory.
    assert stat.S_IMODE(control.stat().st_mode) == 0o600
    assert stat.S_IMODE(control.parent.stat().st_mode) == 0o700
    # No TCP listener but the main one: nothing for a local process to reach by port.
    listeners = request(run.admin_port, "GET", "/listeners?format=json").json()["listener_statuses"]
    tcp = [ls["name"] for ls in listeners if "socket_address" in ls["local_address"]]
    assert tcp == ["mcpx"], listeners
    # Another account (as a stdio server run under its own `user:` is) cannot reset the pins.
    assert os.geteuid() == 0, "this test needs root to act as another account"
    attack = ("import socket,sys\n"
              "s=socket.socket(socket.AF_UNIX)\n"
              "try:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('refused'); sys.exit(0)\n"
              "s.sendall(b'DELETE /baseline HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 0\\r\\n\\r\\n')\n"
              "print(s.recv(200))\n")
    # Even with the directories opened up, the socket's own mode refuses.
    os.chmod(d, 0o711)
    os.chmod(control.parent, 0o711)
    try:
        out = subprocess.run([*AS_NOBODY, "/usr/bin/python3", "-c", attack, str(control)], capture_output=True,
                             text=True, timeout=30)
    finally:
        os.chmod(control.parent, 0o700)
    assert out.stdout.strip() == "refused", out
    assert unix_request(str(control), "GET", "/baseline").json() == pins
    # The operator's CLI keeps working unchanged.
    shown = subprocess.run([MCPX_BIN, "baseline", "show", "--control", str(control)], capture_output=True,
                           text=True, timeout=30)
    assert shown.returncode == 0 and "echo" in json.loads(shown.stdout)["servers"]["demo"], shown.stderr
    # A TCP address is refused with the fix, not silently used.
    old = subprocess.run([MCPX_BIN, "baseline", "reset", "--control", "127.0.0.1:9902"], capture_output=True,
                         text=True, timeout=30)
    assert old.returncode != 0 and "Unix socket" in old.stderr, old.stderr


# --- secrets: not in Envoy's environment, mcpx not dumpable --------------------------------------


def test_no_secret_readable_from_proc(demo):
    """mcpx and Envoy run as an unprivileged account; a process of that same
    account (what a stdio child is) reads /proc/<pid>/environ of both."""
    assert os.geteuid() == 0, "this test needs root to run the gateway as another account"
    secret = "s3cr3t-" + os.urandom(8).hex()
    d = Path(tempfile.mkdtemp(prefix="mcpx-nobody-"))  # in /tmp, which that account can reach
    os.chown(d, 65534, 65534)
    text = config(demo) + "auth: { enabled: true, type: bearer, token: \"${FAILSAFE_TOKEN}\" }\n"
    run = Run(text, d, free_port(), free_port(), d / "ctl" / "control.sock", prefix=AS_NOBODY,
              env={"FAILSAFE_TOKEN": secret, "HOME": str(d), "TMPDIR": str(d)})
    try:
        mcpx, envoy = run.process.proc.pid, run.envoy_pid()
        # The secret works (so it was really in mcpx's environment).
        assert run.call("echo").status == 401
        body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}))
        ok = request(run.port, "POST", "/mcp/demo", body, {**JSON, "Authorization": f"Bearer {secret}"})
        assert ok.status == 200
        reader = ("import sys\n"
                  "secret = sys.argv[1].encode()\n"
                  "for pid in sys.argv[2:]:\n"
                  "  try:\n"
                  "    data = open(f'/proc/{pid}/environ', 'rb').read()\n"
                  "    print(pid, 'read', secret in data, b'FAILSAFE_TOKEN' in data)\n"
                  "  except PermissionError:\n"
                  "    print(pid, 'denied')\n")
        out = subprocess.run([*AS_NOBODY, "/usr/bin/python3", "-c", reader, secret, str(mcpx), str(envoy)],
                             capture_output=True, text=True, timeout=30)
        lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
        assert lines[str(mcpx)] == "denied", out
        # Envoy is readable by its own account (the kernel makes every exec'd
        # program dumpable again) but holds nothing: its environment was cleared.
        assert lines[str(envoy)] == "read False False", out
    finally:
        run.stop()


# --- the default work directory ------------------------------------------------------------------


def files_under(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if not p.is_dir()]


def test_the_default_work_directory_is_removed_on_exit(demo, tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    run = Run(config(demo), tmp_path, free_port(), free_port(), None, env={"TMPDIR": str(tmp)}, workdir=False)
    try:
        made = [p for p in tmp.iterdir() if p.name.startswith("mcpx-")]
        assert len(made) == 1 and (made[0] / "envoy.json").is_file(), made
        assert stat.S_IMODE(made[0].stat().st_mode) == 0o700
        assert run.call("echo").status == 200
    finally:
        code = run.stop()
    assert code == 0
    assert files_under(tmp) == [] and list(tmp.iterdir()) == []
    # Also when the start is refused.
    holder = hold(free_port(), reuse_port=False)
    try:
        refused_run = Run(config(demo), tmp_path, holder.getsockname()[1], free_port(), None,
                          env={"TMPDIR": str(tmp)}, workdir=False, wait_ready=False)
        assert refused_run.exit_code() != 0
        refused_run.stop()
    finally:
        holder.close()
    assert list(tmp.iterdir()) == []
