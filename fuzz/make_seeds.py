#!/usr/bin/env python3
"""Writes the committed fuzz seeds (fuzz/seeds/<target>/) from the project's
own test data: every body and header set in tests/vectors/policy.yaml, the
hostile bodies of tests/e2e/test_bad_input.py, and a few hand-made answers,
streams and URIs. `FUZZ_SEED=1 scripts/fuzz.sh` replays exactly these.

    .venv/bin/python fuzz/make_seeds.py     # then commit fuzz/seeds
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "fuzz" / "seeds"
MAX = 65536  # scripts/fuzz.sh passes -max_len=65536

sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from test_bad_input import HANDWRITTEN  # noqa: E402

VECTORS = yaml.safe_load((ROOT / "tests" / "vectors" / "policy.yaml").read_text())["vectors"]


def body_bytes(v: dict) -> bytes:
    text = v.get("body", "")
    for marker, (unit, n) in (v.get("repeat") or {}).items():
        text = text.replace(marker, unit * n)
    return text.encode({"latin1": "latin-1", "utf-16le": "utf-16-le", None: "utf-8"}[v.get("encoding")])


def write(target: str, name: str, data: bytes) -> None:
    if len(data) > MAX:
        return
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def main() -> None:
    for v in VECTORS:
        body = body_bytes(v)
        write("request_body", f"vector-{v['name']}", body)
        headers = "".join(f"{k}: {val}\n" for k, val in v.get("headers") or [])
        head = f":method: {v.get('method', 'POST')}\n:path: {v.get('path', '/mcp/demo')}\n" + headers
        write("request_headers", f"vector-{v['name']}", head.encode())
        if headers:
            write("header_body", f"vector-{v['name']}", headers.encode() + b"\n" + body)
        try:
            msg = json.loads(body)
        except ValueError:
            continue
        for m in msg if isinstance(msg, list) else [msg]:
            uri = isinstance(m, dict) and isinstance(m.get("params"), dict) and m["params"].get("uri")
            if isinstance(uri, str):
                write("resource_uri", f"vector-{v['name']}", uri.encode())
    for body in HANDWRITTEN:
        write("request_body", f"hostile-{digest(body)}", body)

    tools = [{"name": n, "description": f"{n} tool", "inputSchema": {"type": "object"}}
             for n in ["echo", "read_file", "dangerous_delete", "x", "slow"]]
    lists = {
        "single": {"jsonrpc": "2.0", "id": 1, "result": {"tools": tools, "nextCursor": "c2", "ttlMs": 5000}},
        "string-id": {"jsonrpc": "2.0", "id": "a", "result": {"tools": tools[:2]}},
        "other-id": {"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}},
        "batch": [{"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}},
                  {"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}},
                  {"jsonrpc": "2.0", "id": "a", "error": {"code": -32000, "message": "no"}}],
        "unnamed": {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"description": "no name"}, {"name": 7}]}},
        "error": {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "method not found"}},
    }
    for name, doc in lists.items():
        write("tools_list", name, json.dumps(doc).encode())
    for i, tool in enumerate(tools[:3] + [{"name": "n", "inputSchema": {"type": "object", "properties": {
            "x": {"type": "number", "default": 1.5e300}, "y": {"enum": ["\u00e9", "e\u0301", None, True]}}}}]):
        write("canonical_hash", f"tool-{i}", json.dumps(tool, indent=i).encode())
    # RFC 8785's own examples (sections 3.2.2 and 3.2.3): number forms and
    # keys whose UTF-16 order differs from their code-point order.
    write("canonical_hash", "rfc8785-main",
          b'{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
          b' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}')
    write("canonical_hash", "rfc8785-sorting",
          b'{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",'
          b' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", "\\u00f6": "o"}')
    write("canonical_hash", "es-numbers",
          b'[1e21, 1e20, 1e-7, 1e-6, 18446744073709551615, -0.0, 1424953923781206.25, 5e-324, 9007199254740993]')
    configs = yaml.safe_load((ROOT / "tests" / "vectors" / "policy.yaml").read_text())["configs"]
    for name, text in configs.items():
        write("config", f"vector-{name}", text.encode())
    write("config", "example-demo", (ROOT / "examples" / "demo.yaml").read_bytes())
    write("tools_list", "duplicate-result",
          b'{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}]},"result":{"tools":[{"name":"x"}]}}')

    list_event = json.dumps(lists["single"]).encode()
    streams = {
        "lf": b"event: message\nid: 1\ndata: " + list_event + b"\n\n",
        "crlf-multiline": b": comment\r\nevent: message\r\nid: 7\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n",
        "cr-only": b"data: {\"x\":1}\r\rdata: plain\r\r",
        "no-final-blank-line": b"data: " + list_event + b"\n",
        "id-without-colon": b"id\ndata: {}\n\nretry: 10\n\n",
    }
    for name, s in streams.items():
        write("sse_chunks", name, b"\x80" + s)  # first byte: where the split falls

    # Mcp-Param: tool `t` has a known map in the header_body target (region, cfg.tenant).
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    param_calls = {
        "agree": ("Mcp-Param-Region: eu\nMcp-Param-Tenant: acme\n", {"region": "eu", "cfg": {"tenant": "acme"}}),
        "missing": ("Mcp-Param-Region: eu\n", {"region": "eu", "cfg": {"tenant": "acme"}}),
        "undeclared": ("Mcp-Param-Region: eu\nMcp-Param-Zone: x\n", {"region": "eu"}),
        "integer": ("Mcp-Param-Region: 42.0\n", {"region": 42}),
        "base64": ("Mcp-Param-Region: =?base64?IHBhZGRlZCA=?=\n", {"region": " padded "}),
        "null": ("Mcp-Param-Region: eu\n", {"region": None}),
    }
    for name, (hdrs, args) in param_calls.items():
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": args, "_meta": meta}}
        head = "MCP-Protocol-Version: 2026-07-28\nMcp-Method: tools/call\nMcp-Name: t\n" + hdrs
        write("header_body", f"param-{name}", head.encode() + b"\n" + json.dumps(body).encode())
    old_call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {"region": "eu"}}}
    write("header_body", "param-old-version",
          b"MCP-Protocol-Version: 2025-11-25\nMcp-Param-Region: eu\n\n" + json.dumps(old_call).encode())

    uris = ["file:///data/a.txt", "file:///data/../etc/passwd", "file:///data/%2e%2e/etc", "FILE:///data/x",
            "file:///data%2Fsecret", "https://Host.Example:8080/a/%7Euser?q=1#f", "file:///data/%41%e9",
            "file:///data/a\\b", "file:///data/%zz", "urn:x:y", "file:///data/./x", "file:///data/secret/x"]
    for i, u in enumerate(uris):
        write("resource_uri", f"hand-{i}", u.encode())

    # regex rules: pattern, NUL, value (the runs and regex-lite must agree).
    rules = [("^[a-z0-9 ]{1,200}$", "hello from the mcpx benchmark"), ("[a-z0-9-]+", "abc-1"),
             ("/data/[^/]+\\.txt", "/data/a.txt"), ("\\d{4}-\\d{2}-\\d{2}", "2026-11-30"),
             ("[a-c]{1,3}-\\d+", "ab-12"), ("a*a*b?a+", "aaba"), (".*\\.json", "x\n.json"),
             ("[^x]{2}x", "\nyx"), ("(a|b)+", "abab"), ("[[:alpha:]]+", "abc")]
    for i, (p, v) in enumerate(rules):
        write("regex_rule", f"hand-{i}", p.encode() + b"\0" + v.encode())


if __name__ == "__main__":
    main()
