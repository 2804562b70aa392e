"""Hostile input through the real Envoy: the filter must answer every body
with a clean JSON envelope (or forward it), never crash its VM, and keep
serving afterwards. A wasm panic would show up as an empty 503 and a
`vm_reload`/crash stat."""

import json
import os
from pathlib import Path

from harness import ROOT, jsonrpc

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


def test_hostile_bodies_never_crash_the_filter(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url))
    bodies = corpus()
    assert len(bodies) >= len(HANDWRITTEN)
    for body in bodies:
        r = gw.post("demo", body)
        if r.status >= 400:
            # Every refusal is the gateway's JSON envelope, never Envoy's
            # empty 503 of a dead VM.
            assert r.body, f"empty {r.status} for {body[:80]!r}"
            envelope = r.json()
            assert "error" in envelope, (r.status, r.text[:200])
            assert r.status != 503, f"503 for {body[:80]!r}: {r.text[:200]}"
    # The filter still decides afterwards, on every worker (several
    # connections: Envoy spreads them over its threads).
    for _ in range(8):
        assert gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete"})).status == 403
        assert gw.post("demo", jsonrpc("ping")).status == 200
    stats = gw.admin("/stats?filter=wasm").text
    crashed = [line for line in stats.splitlines() if ("crash" in line or "vm_reload" in line) and not line.endswith(": 0")]
    assert not crashed, crashed
    # Denied or malformed requests never reached the backend.
    assert not any("dangerous_delete" in json.dumps(r) for r in demo.received())
