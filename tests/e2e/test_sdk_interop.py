"""Interop: the official Python SDK's client, in both connection modes, against
the SDK's own MCPServer (Streamable HTTP) behind the gateway. Hardening must
not break legitimate traffic, and a denied call must still surface as an error."""

import asyncio
import sys
from pathlib import Path

import pytest

from harness import Process, free_port, wait_until
from harness import request as http_request

mcp = pytest.importorskip("mcp")
from mcp import Client  # noqa: E402
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

    wait_until(up, timeout=30, what="SDK server", proc=proc.proc)
    yield request_mode, f"http://127.0.0.1:{port}/mcp"
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
def test_sdk_client_through_gateway(mode, sdk_server, gateway_factory, request):
    kind, url = sdk_server
    if kind == "sse":
        # The gateway pins `Accept: application/json` on tools/list so it can
        # inspect the answer; an SSE-mode SDK server refuses that with 406
        # (Streamable HTTP clients must accept both). Lifting the pin needs
        # SSE-aware list inspection (issue 4's sse.rs); this then passes.
        request.applymarker(pytest.mark.xfail(reason="tools/list Accept pin vs SSE-mode server: 406", strict=False))
    gw = gateway_factory(CONFIG.format(url=url))
    got = asyncio.run(asyncio.wait_for(session(f"http://127.0.0.1:{gw.port}/mcp/sdk", mode), 60))
    assert got["version"] == ("2026-07-28" if mode == "auto" else "2025-11-25"), got
    assert got["tools"] == ["echo", "weather"], "the denied tool is filtered out of tools/list"
    assert got["echo"] == "héllo"
    assert got["weather"] == "sunny in eu-west for 2 days"
    for name in ["secret_delete", "weather"]:
        kind, code, message = got[f"denied:{name}"]
        assert (kind, code) == ("error", -32003), got
    assert "secret_delete" in got["denied:secret_delete"][2] and "deny_tools" in got["denied:secret_delete"][2]
    assert "one_of" in got["denied:weather"][2]
