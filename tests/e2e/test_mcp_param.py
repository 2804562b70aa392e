"""Schema-aware `Mcp-Param-*` checks through the real Envoy + wasm (docs/policy.md
"Header rules"): the official Python SDK client in 2026-07-28 mode and raw
requests, against an SDK server whose tools declare `x-mcp-header`
(param_server.py). Every refusal is proven at the backend's record: the
number of requests that arrived does not move."""

import asyncio
import base64
import http.client
import json
import sys
from pathlib import Path

import httpx2
import pytest

from harness import Process, free_port, wait_until
from harness import request as http_request

from mcp import Client  # noqa: E402  (a test dependency: tests/requirements.txt)
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

SERVER = Path(__file__).with_name("param_server.py")
MODERN = "2026-07-28"
VALID = ["count", "plain", "route", "tenant", "toggle"]
INVALID = ["bad_duplicate", "bad_empty", "bad_items", "bad_number", "bad_object", "bad_token"]

CONFIG = """
servers:
  - name: p
    url: {url}
inspection: {{ tool_integrity: enforce, filter_tools_list: true }}
"""


class Backend:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc = Process("param-server", [sys.executable, str(SERVER), str(self.port)])
        wait_until(self._up, timeout=30, what="param server", proc=self.proc.proc)

    def _up(self) -> bool:
        try:
            return http_request(self.port, "GET", "/_received", timeout=1).status == 200
        except OSError:
            return False

    def received(self) -> list[dict]:
        return http_request(self.port, "GET", "/_received").json()

    def calls(self) -> list[dict]:
        """The tools/call requests that arrived (headers, parsed body)."""
        out = []
        for r in self.received():
            body = json.loads(r["body"])
            if isinstance(body, dict) and body.get("method") == "tools/call":
                out.append({"headers": r["headers"], "body": body})
        return out


@pytest.fixture(scope="module")
def backend():
    b = Backend()
    yield b
    b.proc.stop()


def meta() -> dict:
    return {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}


def post(port: int, body: dict, headers: list[tuple[str, str | bytes]]):
    """A raw POST with headers exactly as given (repeats and bytes allowed)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    data = json.dumps(body).encode()
    conn.putrequest("POST", "/mcp/p", skip_accept_encoding=True)
    for k, v in [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"),
                 ("Content-Length", str(len(data))), *headers]:
        conn.putheader(k, v)
    conn.endheaders(data)
    r = conn.getresponse()
    out = (r.status, r.read())
    conn.close()
    return out


def modern_list(port: int) -> list[dict]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}
    status, raw = post(port, body, [("MCP-Protocol-Version", MODERN), ("Mcp-Method", "tools/list")])
    assert status == 200, raw[:500]
    return json.loads(raw)["result"]["tools"]


def call(port: int, tool: str, args: dict, params: list[tuple[str, str | bytes]], version: str | None = MODERN,
         with_meta: bool = True):
    p = {"name": tool, "arguments": args}
    if with_meta:
        p["_meta"] = meta()
    headers = [("Mcp-Method", "tools/call"), ("Mcp-Name", tool), *params]
    if version:
        headers.append(("MCP-Protocol-Version", version))
    return post(port, {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": p}, headers)


@pytest.fixture(scope="module")
def gw(backend):
    """One gateway for the module, taught every tool's map by one list."""
    from harness import Gateway
    g = Gateway(CONFIG.format(url=backend.url))
    modern_list(g.port)
    yield g
    g.stop()


def refused(backend, port: int, tool: str, args: dict, params, **kw) -> str:
    """Asserts 400 / -32020 and that nothing arrived; returns the message."""
    before = len(backend.calls())
    status, raw = call(port, tool, args, params, **kw)
    assert status == 400, (status, raw[:300])
    err = json.loads(raw)["error"]
    assert err["code"] == -32020, err
    assert len(backend.calls()) == before, "a refused call reached the backend"
    return err["message"]


def passed(backend, port: int, tool: str, args: dict, params, **kw) -> dict:
    """Asserts the call arrived at the backend exactly once; returns what arrived."""
    before = len(backend.calls())
    status, raw = call(port, tool, args, params, **kw)
    assert status == 200, (status, raw[:300])
    calls = backend.calls()
    assert len(calls) == before + 1
    return calls[-1]


def b64(s: str) -> str:
    return "=?base64?" + base64.b64encode(s.encode()).decode() + "?="


# -- tools/list -------------------------------------------------------------------------------

def test_tools_with_invalid_annotations_are_removed_and_audited(backend, gw):
    # The backend offers them all ...
    direct = json.loads(http_request(backend.port, "POST", "/mcp", json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta()}}),
        {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
         "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}).body)
    assert sorted(t["name"] for t in direct["result"]["tools"]) == sorted(VALID + INVALID)
    # ... the gateway passes only the valid ones, and says why for each other.
    assert sorted(t["name"] for t in modern_list(gw.port)) == VALID
    reasons = {"bad_empty": "is empty", "bad_token": "not an HTTP header token", "bad_duplicate": "duplicates",
               "bad_object": "string, integer or boolean", "bad_number": "string, integer or boolean",
               "bad_items": "not reachable"}
    def logged():
        log = gw.process.log()
        return all(f'kind=invalid_x_mcp_header server=p tool="{t}"' in log for t in INVALID) and log
    log = wait_until(logged, timeout=10, what="a warn line per removed tool")
    for tool, why in reasons.items():
        line = next(l for l in log.splitlines() if f'tool="{tool}"' in l and "invalid_x_mcp_header" in l)
        assert why in line, line
    wait_until(lambda: '"event":"integrity_violation"' in gw.process.log().replace(" ", "")
               and "invalid_x_mcp_header:bad_token" in gw.process.log(), timeout=10, what="the audit event")
    stats = gw.admin("/stats?filter=mcpx_integrity_violations_total").text
    assert "mcpx_integrity_violations_total.server.p.tool.bad_token.kind.invalid_x_mcp_header: " in stats, stats


def test_calls_to_a_tool_with_invalid_annotations_are_refused(backend, gw):
    refused(backend, gw.port, "bad_token", {"a": "x"}, [])
    refused(backend, gw.port, "bad_empty", {"a": "x"}, [("Mcp-Param-", "x")])


# -- the official SDK client in 2026-07-28 mode -------------------------------------------------

async def sdk_session(url: str, stray: tuple[str, str] | None = None) -> dict:
    """Lists and calls each tool; `stray` is one more header added to every tools/call."""
    out: dict = {}

    async def add_stray(request):
        if stray and request.headers.get("mcp-method") == "tools/call":
            request.headers[stray[0]] = stray[1]

    client = httpx2.AsyncClient(timeout=30, event_hooks={"request": [add_stray]})
    transport = streamable_http_client(url, http_client=client)
    async with Client(transport, mode=MODERN) as c:
        out["version"] = c.protocol_version
        out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
        for tool, args in [("route", {"region": "eu-west", "query": "select 1"}), ("route", {"region": "Zürich "}),
                           ("count", {"n": 42}), ("toggle", {"dry_run": True}), ("tenant", {"cfg": {"tenant": "acme"}}),
                           ("plain", {"text": "hi"})]:
            try:
                r = await c.call_tool(tool, args)
                out.setdefault("results", []).append(r.content[0].text)
            except MCPError as e:
                out.setdefault("errors", []).append((tool, e.code, str(e)))
    return out


def test_sdk_client_mirrors_every_type_and_the_gateway_passes_it(backend, gw):
    before = len(backend.calls())
    got = asyncio.run(asyncio.wait_for(sdk_session(f"http://127.0.0.1:{gw.port}/mcp/p"), 60))
    assert got["version"] == MODERN and got["tools"] == VALID, got
    assert "errors" not in got, got["errors"]
    assert got["results"][2:] == ["n=42", "dry_run=True", "tenant=acme", "hi"], got["results"]
    arrived = backend.calls()[before:]
    assert len(arrived) == 6
    headers = [{k: v for k, v in a["headers"].items() if k.startswith("mcp-param-")} for a in arrived]
    assert headers == [{"mcp-param-region": "eu-west"}, {"mcp-param-region": b64("Zürich ")},
                       {"mcp-param-n": "42"}, {"mcp-param-dry-run": "true"}, {"mcp-param-tenant": "acme"}, {}], headers


def test_sdk_client_with_a_stray_param_header_gets_32020(backend, gw):
    before = len(backend.calls())
    got = asyncio.run(asyncio.wait_for(
        sdk_session(f"http://127.0.0.1:{gw.port}/mcp/p", ("Mcp-Param-Text", "hi")), 60))
    # Every call carries a header no tool declares (not even `plain`, whose
    # argument `text` has the header's name): each is refused, none arrives.
    assert [e[0] for e in got["errors"]] == ["route", "route", "count", "toggle", "tenant", "plain"], got
    assert all(e[1] == -32020 for e in got["errors"]), got["errors"]
    assert len(backend.calls()) == before


# -- raw requests: each rule -----------------------------------------------------------------

REFUSALS = [
    # (why, tool, arguments, Mcp-Param headers, what the refusal must say)
    ("value differs", "route", {"region": "eu"}, [("Mcp-Param-Region", "us")], "does not match the body's argument"),
    ("header without a body value", "route", {"query": "q"}, [("Mcp-Param-Region", "eu")], "is present but the argument"),
    ("header for a null value", "route", {"region": None}, [("Mcp-Param-Region", "eu")], "is present but the argument"),
    ("body value without its header", "route", {"region": "eu"}, [], "is missing but the argument"),
    ("nested value without its header", "tenant", {"cfg": {"tenant": "acme"}}, [], "Mcp-Param-Tenant header is missing"),
    ("nested value differs", "tenant", {"cfg": {"tenant": "acme"}}, [("Mcp-Param-Tenant", "evil")], "does not match the body's argument \"cfg.tenant\""),
    ("undeclared header", "route", {"region": "eu"}, [("Mcp-Param-Region", "eu"), ("Mcp-Param-Zone", "eu")], "Mcp-Param-Zone header is not declared by the tool"),
    ("same-name argument but not declared", "plain", {"text": "hi"}, [("Mcp-Param-Text", "hi")], "Mcp-Param-Text header is not declared by the tool"),
    ("integer with a leading zero", "count", {"n": 42}, [("Mcp-Param-N", "042")], "does not match"),
    ("integer differs", "count", {"n": 42}, [("Mcp-Param-N", "43")], "does not match"),
    ("integer as exponent", "count", {"n": 42}, [("Mcp-Param-N", "4.2e1")], "does not match"),
    ("boolean spelt True", "toggle", {"dry_run": True}, [("Mcp-Param-Dry-Run", "True")], "does not match"),
    ("boolean as 1", "toggle", {"dry_run": True}, [("Mcp-Param-Dry-Run", "1")], "does not match"),
    ("malformed base64", "route", {"region": "eu"}, [("Mcp-Param-Region", "=?base64?ZXU?=")], "malformed"),
    ("non-canonical base64", "route", {"region": "eu"}, [("Mcp-Param-Region", "=?base64?ZXV=?=")], "malformed"),
    ("base64 of another value", "route", {"region": "eu"}, [("Mcp-Param-Region", b64("us"))], "does not match"),
    ("non-ASCII without base64", "route", {"region": "é"}, [("Mcp-Param-Region", "é".encode())], "characters a header value may not"),
    ("repeated header", "route", {"region": "eu"}, [("Mcp-Param-Region", "eu"), ("mcp-param-region", "eu")], "more than once"),
]


@pytest.mark.parametrize("why,tool,args,params,says", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refused_with_400_and_32020_before_the_backend(backend, gw, why, tool, args, params, says):
    message = refused(backend, gw.port, tool, args, params)
    assert says.lower() in message.lower(), message  # Envoy lowercases header names


PASSES = [
    ("plain value", "route", {"region": "eu"}, [("Mcp-Param-Region", "eu")]),
    ("header name case ignored", "route", {"region": "eu"}, [("mcp-param-REGION", "eu")]),
    ("null value, no header", "route", {"region": None, "query": "q"}, []),
    ("absent value, no header", "toggle", {}, []),
    ("integer 42 as 42.0", "count", {"n": 42}, [("Mcp-Param-N", "42.0")]),
    ("integer 42.0 as 42", "count", {"n": 42.0}, [("Mcp-Param-N", "42")]),
    ("negative integer", "count", {"n": -7}, [("Mcp-Param-N", "-7")]),
    ("boolean false", "toggle", {"dry_run": False}, [("Mcp-Param-Dry-Run", "false")]),
    ("leading and trailing spaces in base64", "route", {"region": " padded "}, [("Mcp-Param-Region", b64(" padded "))]),
    ("a literal that looks like the sentinel", "route", {"region": "=?base64?literal?="},
     [("Mcp-Param-Region", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=")]),
    ("no header for a tool that declares none", "plain", {"text": "hi"}, []),
]


@pytest.mark.parametrize("why,tool,args,params", PASSES, ids=[p[0] for p in PASSES])
def test_agreeing_calls_reach_the_backend(backend, gw, why, tool, args, params):
    arrived = passed(backend, gw.port, tool, args, params)
    assert arrived["body"]["params"]["arguments"] == args


# -- protocol versions ------------------------------------------------------------------------

@pytest.mark.parametrize("version", [None, "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_param_headers_are_refused_on_older_protocol_versions(backend, gw, version):
    msg = refused(backend, gw.port, "route", {"region": "eu"}, [("Mcp-Param-Region", "eu")],
                  version=version, with_meta=False)
    assert "2026-07-28" in msg
    # The same request without the header is that era's ordinary call: it is forwarded.
    before = len(backend.calls())
    call(gw.port, "route", {"region": "eu"}, [], version=version, with_meta=False)
    assert len(backend.calls()) == before + 1


# -- a tool never listed through this gateway ---------------------------------------------------

def test_without_a_known_map_headers_must_name_a_same_name_argument(backend, gateway_factory):
    fresh = gateway_factory(CONFIG.format(url=backend.url))
    # Unknown map: the header must agree with the argument of the same name.
    passed(backend, fresh.port, "route", {"region": "eu"}, [("Mcp-Param-Region", "eu")])
    refused(backend, fresh.port, "route", {"region": "eu"}, [("Mcp-Param-Region", "us")])
    refused(backend, fresh.port, "route", {"region": "eu"}, [("Mcp-Param-Zone", "eu")])
    # ... and a missing header cannot be noticed yet: it reaches the backend
    # (which, being an SDK server that validates, refuses it itself).
    before = len(backend.calls())
    call(fresh.port, "route", {"region": "eu"}, [])
    assert len(backend.calls()) == before + 1
    # Once the tool is listed through the gateway, its map decides.
    modern_list(fresh.port)
    refused(backend, fresh.port, "route", {"region": "eu"}, [])
    refused(backend, fresh.port, "plain", {"text": "hi"}, [("Mcp-Param-Text", "hi")])
