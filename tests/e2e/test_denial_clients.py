"""What a policy denial looks like to the official MCP clients, through the real
Envoy + wasm gateway in front of a real SDK server (denial_backend.py, which
records every message that reaches it).

A denied call must reach the caller as a JSON-RPC error whose code and message
it can read, the session must survive (the next call on the same client
works), and the denied call must never arrive at the backend. Clients: the
TypeScript SDK (what Claude Desktop and VS Code are built on), the Python SDK
in both protocol eras, and the Inspector CLI. `denial_http_status: 403` keeps
the old status. Also: an unknown MCP-Protocol-Version is answered with the
backend's versions, not the gateway's; an era-removed method is the backend's
to answer (docs/clients.md, docs/policy.md)."""

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness import JSON, ROOT, Process, free_port, wait_until
from harness import request as http_request

HERE = Path(__file__).resolve().parent
BACKEND = HERE / "denial_backend.py"
PY_CLIENT = HERE / "py_client.py"
TS_CLIENT = HERE / "ts_client.mjs"
CLIENTS = ROOT / "tests" / ".clients" / "node_modules"
SDK_DIR = CLIENTS / "@modelcontextprotocol" / "sdk"
INSPECTOR = CLIENTS / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"

CONFIG = """
servers:
  - name: sdk
    url: {url}
    policy:
      deny_tools: [secret_delete]
      tool_rules:
        echo:
          args:
            text: {{ regex: "[a-z ]+" }}
inspection: {{ tool_integrity: "off", filter_tools_list: true }}
{extra}
"""

DENIED = 'secret_delete={"path": "/"}'
ALLOWED = 'echo={"text": "still here"}'
GATEWAY_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]


@pytest.fixture(scope="module")
def node() -> str:
    """Node 22 with the TypeScript SDK and the Inspector (scripts/clients.sh)."""
    if shutil.which("npm") is None:
        reason = "npm is not installed, so the TypeScript SDK and the Inspector cannot be installed"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    out = subprocess.run([str(ROOT / "scripts" / "clients.sh")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"scripts/clients.sh failed:\n{out.stderr[-2000:]}"
    return out.stdout.strip()


class Backend:
    def __init__(self):
        self.port = free_port()
        self.proc = Process("denial-backend", [sys.executable, str(BACKEND), str(self.port)])

        def up():
            try:
                return http_request(self.port, "GET", "/_received", timeout=1).status == 200
            except OSError:
                return False

        wait_until(up, timeout=60, what="SDK backend", proc=self.proc.proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def arrivals(self) -> Counter:
        """(method, tool) -> how many such messages reached the backend."""
        got = http_request(self.port, "GET", "/_received").json()
        return Counter((m["method"], m["tool"]) for m in got)


@pytest.fixture(scope="module")
def backend():
    b = Backend()
    yield b
    b.proc.stop()


def gateway(gateway_factory, backend, extra: str = ""):
    gw = gateway_factory(CONFIG.format(url=backend.url, extra=extra))
    return gw, f"http://127.0.0.1:{gw.port}/mcp/sdk"


def lines(out: subprocess.CompletedProcess) -> list[dict]:
    assert out.returncode == 0, f"client failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}"
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def calls(backend: Backend, before: Counter) -> Counter:
    return Counter({k: v for k, v in (backend.arrivals() - before).items() if k[0] == "tools/call"})


def assert_denied_then_next_call_works(seen: list[dict], backend: Backend, before: Counter):
    denied, allowed = [s for s in seen if "tool" in s]
    assert denied["outcome"] == "error" and denied["code"] == -32003, seen
    assert "secret_delete" in denied["message"] and "deny_tools" in denied["message"], seen
    assert allowed == {"tool": "echo", "outcome": "result", "isError": False, "text": "still here"}, seen
    assert seen[-1] == {"session": "closed"}, seen
    # At the backend: the allowed call arrived, the denied one never did.
    assert calls(backend, before) == Counter({("tools/call", "echo"): 1}), backend.arrivals()


def test_typescript_sdk_reads_the_denial_and_keeps_its_session(node, backend, gateway_factory):
    _, url = gateway(gateway_factory, backend)
    before = backend.arrivals()
    out = subprocess.run([node, str(TS_CLIENT), str(SDK_DIR), url, DENIED, ALLOWED],
                         capture_output=True, text=True, timeout=90)
    seen = lines(out)
    assert seen[0]["class"] == "McpError", f"the SDK must see a JSON-RPC error, not an HTTP one: {seen}"
    assert_denied_then_next_call_works(seen, backend, before)


@pytest.mark.parametrize("mode,version", [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
def test_python_sdk_reads_the_denial_and_keeps_its_session(mode, version, backend, gateway_factory):
    _, url = gateway(gateway_factory, backend)
    before = backend.arrivals()
    out = subprocess.run([sys.executable, str(PY_CLIENT), mode, url, DENIED, ALLOWED],
                         capture_output=True, text=True, timeout=90)
    seen = lines(out)
    assert seen[0] == {"version": version}, seen
    assert seen[1]["class"] == "MCPError", seen
    assert_denied_then_next_call_works(seen, backend, before)


def inspector(node: str, url: str, *args: str) -> subprocess.CompletedProcess:
    # HOME: the Inspector keeps a catalog under ~/.mcp-inspector; keep it out of the user's.
    home = ROOT / "tests" / ".artifacts" / "inspector-home"
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([node, str(INSPECTOR), "--cli", url, *args], capture_output=True, text=True,
                          timeout=90, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})


def test_inspector_cli_shows_the_denial_and_the_next_call_works(node, backend, gateway_factory):
    _, url = gateway(gateway_factory, backend)
    before = backend.arrivals()
    # The Inspector calls only tools the (filtered) list shows, so the denial
    # here is an argument rule on a listed tool.
    denied = inspector(node, url, "--transport", "http", "--method", "tools/call",
                       "--tool-name", "echo", "--tool-arg", "text=NOPE!")
    # The CLI prints {"error": {...}} and exits 1 (3 would be "auth_required": what a 403 gives).
    assert denied.returncode == 1, (denied.returncode, denied.stdout, denied.stderr[-2000:])
    error = json.loads(denied.stdout or denied.stderr)["error"]
    assert error["message"].startswith('tool "echo": argument "text" violates rule regex'), error
    assert "status" not in error, f"an HTTP error, not the JSON-RPC one: {error}"
    allowed = inspector(node, url, "--transport", "http", "--method", "tools/call",
                        "--tool-name", "echo", "--tool-arg", "text=still here")
    assert allowed.returncode == 0, (allowed.stdout, allowed.stderr[-2000:])
    assert json.loads(allowed.stdout)["content"][0]["text"] == "still here"
    assert calls(backend, before) == Counter({("tools/call", "echo"): 1}), backend.arrivals()


def test_inspector_cli_needs_transport_http_for_gateway_urls(node, backend, gateway_factory):
    """docs/clients.md: /mcp/{name} does not end in /mcp, so the Inspector
    cannot guess the transport; `--transport http` is required."""
    _, url = gateway(gateway_factory, backend)
    out = inspector(node, url, "--method", "tools/list")
    assert out.returncode != 0 and "could not be determined from URL" in out.stdout + out.stderr, out
    out = inspector(node, url, "--transport", "http", "--method", "tools/list")
    assert out.returncode == 0, (out.stdout, out.stderr[-2000:])
    assert {t["name"] for t in json.loads(out.stdout)["tools"]} == {"echo"}, out.stdout


def test_denial_http_status_403_keeps_the_old_status(node, backend, gateway_factory):
    gw, url = gateway(gateway_factory, backend, "denial_http_status: 403")
    before = backend.arrivals()
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "secret_delete", "arguments": {"path": "/"}}}
    r = gw.post("sdk", call, {"Accept": "application/json, text/event-stream"})
    assert r.status == 403, r.text
    assert r.json()["id"] == 7 and r.json()["error"]["code"] == -32003, r.text
    # What the TypeScript SDK then sees: an HTTP error with the body as text.
    seen = lines(subprocess.run([node, str(TS_CLIENT), str(SDK_DIR), url, DENIED, ALLOWED],
                                capture_output=True, text=True, timeout=90))
    assert (seen[0]["class"], seen[0]["code"]) == ("StreamableHTTPError", 403), seen
    assert calls(backend, before) == Counter({("tools/call", "echo"): 1}), backend.arrivals()


def test_default_denial_status_is_200_with_the_jsonrpc_error(backend, gateway_factory):
    gw, _ = gateway(gateway_factory, backend)
    before = backend.arrivals()
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "secret_delete", "arguments": {"path": "/"}}}
    r = gw.post("sdk", call, {"Accept": "application/json, text/event-stream"})
    assert r.status == 200, r.text
    body = r.json()
    assert body["id"] == 7 and body["error"]["code"] == -32003 and "result" not in body, body
    assert body["error"]["data"] == {"reason": "deny_list"}, body
    assert calls(backend, before) == Counter(), backend.arrivals()


def modern(method: str, version: str, rpc_id: int, params: dict | None = None) -> tuple[dict, dict]:
    meta = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {**JSON, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": version,
               "Mcp-Method": method}
    return {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": {"_meta": meta, **(params or {})}}, headers


def test_unsupported_version_names_the_backends_versions(backend, gateway_factory):
    """The backend (Python SDK) serves 2026-07-28 only in the modern era, a
    subset of what the gateway knows: a client must be told the backend's
    list (conformance: sep-2575-server-unsupported-version-error)."""
    gw, _ = gateway(gateway_factory, backend)
    probe, headers = modern("server/discover", "v999.0.0", 301)
    direct = http_request(backend.port, "POST", "/mcp", json.dumps(probe), headers)
    via = gw.request("POST", "/mcp/sdk", json.dumps(probe), headers)
    assert direct.status == 400 and direct.json()["error"]["code"] == -32022, direct.text
    assert (via.status, via.json()) == (direct.status, direct.json()), via.text
    supported = via.json()["error"]["data"]["supported"]
    assert supported == ["2026-07-28"] and supported != GATEWAY_VERSIONS, supported
    assert via.json()["error"]["data"]["requested"] == "v999.0.0"
    # A call with that version acts on something the gateway cannot read in
    # that version: refused before the backend, and without the gateway's list.
    before = backend.arrivals()
    call, headers = modern("tools/call", "v999.0.0", 302, {"name": "echo", "arguments": {"text": "x"}})
    headers["Mcp-Name"] = "echo"
    r = gw.request("POST", "/mcp/sdk", json.dumps(call), headers)
    assert r.status == 400 and r.json()["error"]["code"] == -32022, r.text
    assert r.json()["error"]["data"] == {"requested": "v999.0.0"}, r.text
    assert backend.arrivals() - before == Counter(), backend.arrivals()


def test_era_removed_subscribe_is_the_backends_to_answer(backend, gateway_factory):
    gw, _ = gateway(gateway_factory, backend)
    msg, headers = modern("resources/subscribe", "2026-07-28", 500)
    direct = http_request(backend.port, "POST", "/mcp", json.dumps(msg), headers)
    before = backend.arrivals()
    via = gw.request("POST", "/mcp/sdk", json.dumps(msg), headers)
    assert direct.status == 404 and direct.json()["error"]["code"] == -32601, direct.text
    assert (via.status, via.json()) == (direct.status, direct.json()), via.text
    assert backend.arrivals() - before == Counter({("resources/subscribe", None): 1})
    # A case variant of `uri` (what a case-insensitive server reads) is still
    # refused before the backend.
    msg, headers = modern("resources/subscribe", "2026-07-28", 501, {"URI": "file:///secret"})
    before = backend.arrivals()
    r = gw.request("POST", "/mcp/sdk", json.dumps(msg), headers)
    assert r.status == 400 and r.json()["error"]["code"] == -32602, r.text
    assert backend.arrivals() - before == Counter()


def documented_inspector_commands() -> list[str]:
    """The Inspector CLI commands docs/clients.md shows (continuation lines joined)."""
    text = (ROOT / "docs" / "clients.md").read_text()
    cmds = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if cmd.startswith("npx @modelcontextprotocol/inspector --cli"):
                cmds.append(cmd)
    return cmds


def test_documented_inspector_commands_work(node, backend, gateway_factory):
    """docs/clients.md's Inspector commands, run as written against a gateway
    with bearer auth (npx replaced by the installed Inspector)."""
    cmds = documented_inspector_commands()
    assert len(cmds) == 2, cmds
    gw = gateway_factory(f"""
servers:
  - name: demo
    url: {backend.url}
auth: {{ enabled: true, type: bearer, token: doc-token }}
""")
    for cmd in cmds:
        argv = shlex.split(cmd.replace("$MCPX_TOKEN", "doc-token")
                           .replace("http://localhost:8080/", f"http://127.0.0.1:{gw.port}/"))
        assert argv[:3] == ["npx", "@modelcontextprotocol/inspector", "--cli"], argv
        out = inspector(node, argv[3], *argv[4:])
        assert out.returncode == 0, (cmd, out.stdout, out.stderr[-2000:])
        answer = json.loads(out.stdout)
        assert "tools" in answer or answer["content"][0]["text"] == "hello", answer
