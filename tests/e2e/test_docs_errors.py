"""docs/policy.md's table "Answers and error codes" is what clients get: every
row is read from the page and provoked through the real Envoy + wasm, and the
HTTP status, the JSON-RPC code and `data.reason` must be the ones the row
states. A row this test cannot provoke fails it, so the page cannot grow a
promise nobody checks; none of the refused requests may reach the backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness import ROOT, DemoServer, Gateway, jsonrpc

PAGE = ROOT / "docs" / "policy.md"

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      allow_tools: [echo, read_file, dangerous_delete]
      deny_tools: [dangerous_delete]
      tool_rules:
        read_file: {{ args: {{ path: {{ prefix: "/data/" }} }} }}
      allow_resources: ["file:///data/"]
  - name: ro
    url: {url}
    policy: {{ read_only: true }}
inspection: {{ tool_integrity: "off" }}
limits: {{ max_body_bytes: 4096 }}
"""


def call(name: str, args: dict | None = None, id: int = 1) -> dict:
    return jsonrpc("tools/call", {"name": name, "arguments": args or {}}, id=id)


# (JSON-RPC code, data.reason or "") -> (server, body, extra headers, what the
# policy message must name). One entry per kind of answer the page documents.
TRIGGERS: dict[tuple[str, str], tuple[str, object, dict, str | None]] = {
    ("-32003", "deny_list"): ("demo", call("dangerous_delete"), {}, "dangerous_delete"),
    ("-32003", "not_allowed"): ("demo", call("tool_0"), {}, "tool_0"),
    ("-32003", "read_only"): ("ro", call("echo", {"text": "hi"}), {}, "echo"),
    ("-32003", "argument_rule"): ("demo", call("read_file", {"path": "/etc/passwd"}), {}, "read_file"),
    ("-32003", "resource_uri"): ("demo", jsonrpc("resources/read", {"uri": "file:///data/%2e%2e/etc/passwd"}), {},
                                 None),
    ("-32020", ""): ("demo", jsonrpc("tools/list"), {"Mcp-Name": "dangerous_delete"}, None),
    ("-32022", ""): ("demo", jsonrpc("ping"), {"MCP-Protocol-Version": "2099-01-01"}, None),
    ("-32700", ""): ("demo", b'{"jsonrpc":"2.0","id":1,', {}, None),
    ("-32600", ""): ("demo", {"jsonrpc": "2.0", "id": 1}, {}, None),
    ("-32602", ""): ("demo", {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": {"name": "echo", "arguments": ["hi"]}}, {}, None),
    # http.client sends str header values as Latin-1: one byte 0xE9, not UTF-8.
    ("-32600", "header"): ("demo", call("echo", {"text": "hi"}), {"Mcp-Name": "caf\u00e9"}, "mcp-name"),
    ("-32013", ""): ("demo", call("echo", {"text": "x" * 5000}), {}, None),
    ("-32015", ""): ("demo", call("echo", {"text": "hi"}), {"Content-Type": "text/plain"}, None),
}


def documented_rows() -> list[tuple[int, str, str, str]]:
    """(HTTP status, JSON-RPC code, reason, when) for each code in each row of
    the table; a row naming several codes (`-32700 / -32600 / -32602`) is one
    entry per code."""
    text = PAGE.read_text()
    section = text.split("## Answers and error codes", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"\d{3}", cells[0]):
            continue
        status, codes, when, reason = cells
        for code in (c.strip() for c in codes.split("/")):
            rows.append((int(status), code, reason.strip("`"), when))
    assert len(rows) >= 10, f"the table in {PAGE} was not found or has changed shape"
    return rows


ROWS = documented_rows()


def key(code: str, reason: str, when: str) -> tuple[str, str]:
    """A row's trigger: by its code and data.reason; the row about headers
    that are not UTF-8 shares -32600 with "not JSON-RPC", so it is told apart
    by what it is about."""
    if not reason and "header" in when and "UTF-8" in when:
        return (code, "header")
    return (code, reason)


@pytest.fixture(scope="module")
def demo_module():
    server = DemoServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(demo_module):
    gateway = Gateway(CONFIG.format(url=demo_module.url))
    yield gateway
    gateway.stop()


def test_every_documented_row_can_be_provoked():
    missing = [(code, reason, when) for _, code, reason, when in ROWS if key(code, reason, when) not in TRIGGERS]
    assert not missing, f"rows of docs/policy.md no test provokes (add a trigger here): {missing}"


@pytest.mark.parametrize("status,code,reason,when", ROWS, ids=[f"{r[1]}-{r[2] or 'none'}" for r in ROWS])
def test_the_documented_answer_is_the_answer(gw, demo_module, status, code, reason, when):
    if key(code, reason, when) not in TRIGGERS:
        pytest.fail(f"no trigger for the row {code} {reason!r} ({when})")
    server, body, headers, names = TRIGGERS[key(code, reason, when)]
    demo_module.reset()
    r = gw.post(server, body, headers=headers)
    assert r.status == status, f"{when}: {r.status} {r.text}"
    err = r.json()["error"]
    assert err["code"] == int(code), f"{when}: {r.text}"
    if reason:
        assert err.get("data", {}).get("reason") == reason, f"{when}: {r.text}"
    if names:
        assert names in err["message"], f"the denial does not name {names!r}: {err['message']}"
    assert demo_module.count() == 0, f"{when}: the refused request reached the backend"
