"""Interop: the official Python SDK's client, in both connection modes, against
the SDK's own MCPServer (Streamable HTTP) behind the gateway. Hardening must
not break legitimate traffic, and a denied call must still surface as an error."""

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import Process, free_port, optional_tool, wait_until
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

    def up():
        try:
            return http_request(port, "GET", "/", timeout=1).status > 0
        except OSError:
            return False

    try:
        wait_until(up, timeout=30, what="SDK server", proc=proc.proc)
        yield request_mode, f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.stop()


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
    return out


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_through_gateway(mode, sdk_server, gateway_factory):
    kind, url = sdk_server
    gw = gateway_factory(CONFIG.format(url=url))
    got = asyncio.run(asyncio.wait_for(session(f"http://127.0.0.1:{gw.port}/mcp/sdk", mode), 60))
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


def conformance_command() -> list[str]:
    """The official conformance runner, installed before pytest by
    scripts/e2e-tools.sh (scripts/conformance.sh: Node 22 and the runner from
    npm). Once installed, any error here fails the test."""
    script = Path(__file__).resolve().parents[2] / "scripts" / "conformance.sh"
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"scripts/conformance.sh failed after e2e-tools installed it:\n{out.stderr[-2000:]}"
    cmd = out.stdout.split()
    assert cmd, "scripts/conformance.sh printed no command"
    return cmd


def conformance_results(cmd: list[str], url: str) -> dict[str, bool]:
    """Scenario -> passed, from the runner's summary lines (`✓ name: …` / `✗ name: …`)."""
    out = subprocess.run([*cmd, "server", "--url", url], capture_output=True, text=True, timeout=240).stdout
    results = {}
    for line in out.splitlines():
        m = re.match(r"^([✓✗]) ([\w.-]+): \d+ passed, \d+ failed", line)
        if m:
            results[m.group(2)] = m.group(1) == "✓"
    assert results, f"no scenario summary in the runner output:\n{out[-3000:]}"
    return results


@pytest.mark.timeout(540)  # two runs of the runner, 240 s each at most
def test_conformance_runner_direct_vs_gateway(sdk_server, gateway_factory):
    """Every conformance scenario that passes against the server addressed
    directly also passes through the gateway."""
    kind, url = sdk_server
    why = optional_tool("conformance")
    if why:
        pytest.skip(why)
    cmd = conformance_command()
    gw = gateway_factory(CONFIG.format(url=url))
    direct = conformance_results(cmd, url)
    via = conformance_results(cmd, f"http://127.0.0.1:{gw.port}/mcp/sdk")
    passed_direct = sorted(s for s, ok in direct.items() if ok)
    assert len(passed_direct) >= 5, direct
    print(f"conformance: {len(passed_direct)}/{len(direct)} pass directly, "
          f"{sum(via.values())}/{len(via)} through the gateway")
    lost = [s for s in passed_direct if not via.get(s)]
    assert not lost, f"pass directly but fail through the gateway: {lost}"
