"""Hostile input through the real Envoy: the filter must answer every body
with a clean JSON envelope (or forward it), never crash its VM, and keep
serving afterwards. A wasm panic would show up as an empty 503 and a
`vm_reload`/crash stat."""

import json
import os
import re
from pathlib import Path

from harness import ROOT, denied, jsonrpc

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      deny_tools: [dangerous_delete]
      tool_rules:
        read_file:
          args:
            path: {{ prefix: "/data/", regex: "[a-z/._]+" }}
"""

# Bodies chosen to hit every refusal path and the parser's limits.
HANDWRITTEN = [
    b"",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe\x00",
    b"null",
    b"[]",
    b"[[]]",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' + b"x" * 500_000 + b'"}}',
    b'{"jsonrpc":"2.0","id":1e999,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":-0,"method":"ping"}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"\\ud800"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/data/\\u0000"}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":{"a":[1,2,{}]}}}}',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","name":"echo"}}',
    b'[' + b','.join([b'{"jsonrpc":"2.0","id":%d,"method":"ping"}' % i for i in range(2000)]) + b']',
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}} trailing',
    b'{"jsonrpc":"2.0","id":"\\"},\\"x\\":{","method":"ping"}',
]


def corpus() -> list[bytes]:
    """The handwritten cases, the committed fuzz seeds, and (capped) whatever
    corpus a local `make fuzz` grew."""
    bodies = list(HANDWRITTEN)
    for d in [ROOT / "fuzz" / "seeds" / "request_body", ROOT / "target" / "fuzz-corpus" / "request_body"]:
        if d.is_dir():
            files = sorted(d.iterdir())[: int(os.environ.get("MCPX_CORPUS_CAP", "300"))]
            bodies += [f.read_bytes() for f in files if f.is_file()]
    return bodies


def forbidden(body: bytes) -> str | None:
    """Why a lenient (last-key-wins) reading of a body breaks CONFIG's
    policy, or None: what must never reach the backend."""
    try:
        msg = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    for m in msg if isinstance(msg, list) else [msg]:
        if not isinstance(m, dict) or m.get("method") != "tools/call":
            continue
        params = m.get("params") if isinstance(m.get("params"), dict) else {}
        name, args = params.get("name"), params.get("arguments")
        if name == "dangerous_delete":
            return "denied tool"
        if name == "read_file":
            path = args.get("path") if isinstance(args, dict) else None
            if not (isinstance(path, str) and path.startswith("/data/") and re.fullmatch(r"[a-z/._]+", path)):
                return f"read_file path {path!r}"
    return None


def test_hostile_bodies_never_crash_the_filter(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url))
    bodies = corpus()
    assert len(bodies) >= len(HANDWRITTEN)
    forwarded = 0
    for body in bodies:
        demo.reset()  # (keeps /_received small: some bodies are large)
        r = gw.post("demo", body)
        arrived = demo.count()
        # Each body either reached the backend once, byte for byte, or not at all.
        assert arrived in (0, 1), (arrived, body[:80])
        if arrived:
            forwarded += 1
            assert demo.received()[-1]["body"].encode() == body.decode("utf-8", "replace").encode(), body[:80]
            why = forbidden(body)
            assert why is None, f"forwarded a forbidden call ({why}): {body[:120]!r}"
        elif r.status >= 400 or denied(r):
            # Every refusal (a policy denial is 200 with -32003) is the
            # gateway's JSON envelope, never Envoy's empty 503 of a dead VM.
            assert r.body, f"empty {r.status} for {body[:80]!r}"
            envelope = r.json()
            assert "error" in envelope, (r.status, r.text[:200])
            assert r.status != 503, f"503 for {body[:80]!r}: {r.text[:200]}"
        else:
            raise AssertionError(f"{r.status} without reaching the backend for {body[:80]!r}")
        # What the policy forbids never arrives, whatever the parser made of it.
        if forbidden(body):
            assert not arrived, body[:120]
    assert forwarded, "no body was forwarded: the check above proved nothing"
    # The filter still decides afterwards, on every worker (several
    # connections: Envoy spreads them over its threads).
    before = demo.count()
    for _ in range(8):
        assert denied(gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete"})))
        assert gw.post("demo", jsonrpc("ping")).status == 200
    assert demo.count() == before + 8, "only the 8 pings reach the backend"
    stats = gw.admin("/stats?filter=wasm").text
    crashed = [line for line in stats.splitlines() if ("crash" in line or "vm_reload" in line) and not line.endswith(": 0")]
    assert not crashed, crashed
    assert "dangerous_delete" not in demo.tool_calls()
