"""Policy behaviours the vector table cannot express: a chunked upload is
buffered whole and forwarded byte for byte, and a header/body mismatch answer
carries the request id."""

import http.client
import json

from harness import jsonrpc

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      deny_tools: [dangerous_delete]
inspection: {{ tool_integrity: "off", filter_tools_list: true }}
"""


def chunked_post(port: int, path: str, pieces: list[bytes]) -> tuple[int, bytes]:
    """POST with Transfer-Encoding: chunked, one socket write per piece."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for p in pieces:
            conn.send(b"%x\r\n%s\r\n" % (len(p), p))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_chunked_upload_is_decided_whole_and_forwarded_intact(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url))
    text = "x" * 3000 + " end"
    body = json.dumps(jsonrpc("tools/call", {"name": "echo", "arguments": {"text": text}}, id=7)).encode()
    pieces = [body[i:i + 500] for i in range(0, len(body), 500)]
    assert len(pieces) > 5
    demo.reset()
    status, resp = chunked_post(gw.port, "/mcp/demo", pieces)
    assert status == 200, resp
    assert json.loads(resp)["result"]["content"][0]["text"] == text
    assert demo.received()[-1]["body"] == body.decode()

    # The denied tool name split across writes is still seen and refused.
    bad = json.dumps(jsonrpc("tools/call", {"name": "dangerous_delete"}, id=8)).encode()
    cut = bad.index(b"dangerous") + 4
    demo.reset()
    status, resp = chunked_post(gw.port, "/mcp/demo", [bad[:cut], bad[cut:cut + 3], bad[cut + 3:]])
    assert status == 200 and json.loads(resp)["id"] == 8 and json.loads(resp)["error"]["code"] == -32003, resp
    assert demo.received() == []


def test_header_mismatch_answer_names_header_and_keeps_id(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url))
    demo.reset()
    msg = jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/"}}, id="m-1")
    r = gw.post("demo", msg, headers={"Mcp-Method": "tools/call", "Mcp-Name": "echo"})
    assert r.status == 400
    body = r.json()
    assert body["id"] == "m-1" and body["error"]["code"] == -32020
    assert "Mcp-Name" in body["error"]["message"]
    assert demo.received() == []


def test_internal_headers_are_stripped_and_agreeing_mcp_headers_pass(demo, gateway_factory):
    gw = gateway_factory(CONFIG.format(url=demo.url))
    demo.reset()
    msg = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, id=1)
    spoofed = {"X-MCPX-Tool": "ping", "x-mcpx-client": "admin", "X-Mcpx-Server": "other", "x-mcpx-anything": "1"}
    # Mcp-Param-* exists only in 2026-07-28 (older versions refuse it: test_mcp_param.py).
    modern = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo",
              "Mcp-Param-Text": "hi"}
    r = gw.post("demo", msg, headers={**spoofed, **modern})
    assert r.status == 200, r.text
    got = demo.received()[-1]["headers"]
    assert not [h for h in got if h.startswith("x-mcpx-")], got
    assert (got.get("mcp-method"), got.get("mcp-name"), got.get("mcp-param-text")) == ("tools/call", "echo", "hi")
