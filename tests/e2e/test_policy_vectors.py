"""tests/vectors/policy.yaml through the real Envoy + wasm filter, with the demo
server's /_received proving whether each request reached the backend. The
native twin is filter/tests/policy_vectors.rs; the data is the test."""

import http.client
import json
from pathlib import Path

import pytest
import yaml

from harness import ROOT, DemoServer, Gateway

VECTORS = yaml.safe_load((ROOT / "tests" / "vectors" / "policy.yaml").read_text())


@pytest.fixture(scope="module")
def backend():
    server = DemoServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(backend):
    """One gateway per named config, started on first use."""
    started: dict[str, Gateway] = {}

    def get(name: str) -> Gateway:
        if name not in started:
            cfg = yaml.safe_load(VECTORS["configs"][name])
            for s in cfg["servers"]:
                s["url"] = backend.url
            started[name] = Gateway(json.dumps(cfg))
        return started[name]

    yield get
    for gw in started.values():
        gw.stop()


def body_bytes(v: dict) -> bytes:
    text = v["body"]
    for marker, (unit, n) in (v.get("repeat") or {}).items():
        text = text.replace(marker, unit * n)
    return text.encode({"latin1": "latin-1", "utf-16le": "utf-16-le", None: "utf-8"}[v.get("encoding")])


def send(port: int, v: dict) -> tuple[int, bytes]:
    """Sends the vector's request exactly: headers in order (repeats kept), and
    with `chunks`, the body as that many separate chunked writes."""
    body = body_bytes(v)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(v.get("method", "POST"), v.get("path", "/mcp/demo"), skip_accept_encoding=True)
        headers = [tuple(h) for h in v.get("headers", [])]
        if not any(k.lower() == "content-type" for k, _ in headers):
            headers.insert(0, ("Content-Type", "application/json"))
        for k, val in headers:
            if val != "":
                conn.putheader(k, val)
        chunks = v.get("chunks")
        if chunks:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            size = -(-len(body) // chunks)
            for i in range(0, len(body), size):
                piece = body[i:i + size]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.send(b"0\r\n\r\n")
        else:
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=[v["name"] for v in VECTORS["vectors"]])
def test_policy_vector(v, backend, gateways):
    gw = gateways(v.get("config", "base"))
    before = len(backend.received())
    status, body = send(gw.port, v)
    expect = v["expect"]
    assert status == expect["status"], body
    if "code" in expect:
        assert json.loads(body)["error"]["code"] == expect["code"], body
    reached = len(backend.received()) > before
    assert reached == expect["reached"], f"backend reached={reached}: {backend.received()[before:]}"
