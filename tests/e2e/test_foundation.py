"""The quickstart slice through a real Envoy: routing, list filtering, denial,
the error envelope and request ids."""

from harness import JSON, denied, jsonrpc

CONFIG = """
servers:
  - name: demo
    url: {url}
    policy:
      allow_tools: [echo, read_file]
      deny_tools: [dangerous_delete]
inspection: {{ tool_integrity: off, filter_tools_list: true }}
"""


def start(demo, gateway_factory):
    return gateway_factory(CONFIG.format(url=demo.url))


def test_tools_list_is_filtered(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    r = gw.post("demo", jsonrpc("tools/list"))
    assert r.status == 200, r.text
    names = [t["name"] for t in r.json()["result"]["tools"]]
    assert names == ["echo", "read_file"]
    assert int(r.header("content-length")) == len(r.body)
    # The backend really had more: the gateway removed them.
    direct = demo.received()[-1]
    assert "tools/list" in direct["body"]


def test_denied_call_is_a_jsonrpc_error_and_never_reaches_backend(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    demo.reset()
    r = gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/"}}, id=42))
    assert denied(r), r.text  # HTTP 200 + -32003: what every official client reads (docs/clients.md)
    body = r.json()
    assert body["id"] == 42 and body["jsonrpc"] == "2.0"
    assert "dangerous_delete" in body["error"]["message"]
    assert demo.count() == 0, demo.received()


def test_tool_outside_allow_list_is_denied(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    demo.reset()
    r = gw.post("demo", jsonrpc("tools/call", {"name": "slow", "arguments": {"ms": 1}}))
    assert denied(r), r.text
    assert "allow_tools" in r.json()["error"]["message"]
    assert demo.count() == 0, demo.received()


def test_allowed_call_passes_intact(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    r = gw.post("demo", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "héllo \u2603"}}, id="a-1"))
    assert r.status == 200, r.text
    body = r.json()
    assert body["id"] == "a-1"
    assert body["result"]["content"][0]["text"] == "héllo \u2603"
    # The backend's own path was kept (/mcp/demo -> /mcp).
    assert demo.received()[-1]["path"] == "/mcp"


def test_every_response_has_a_request_id(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    responses = [
        gw.post("demo", jsonrpc("ping")),
        gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete"})),
        gw.post("nope", jsonrpc("ping")),
        gw.request("GET", "/elsewhere"),
        gw.request("POST", "/mcp/demo", "{}", {"Content-Type": "text/plain"}),
    ]
    for r in responses:
        assert r.header("x-request-id"), (r.status, r.headers)
    mine = gw.post("demo", jsonrpc("ping"), headers={"X-Request-ID": "trace-me-123"})
    assert mine.header("x-request-id") == "trace-me-123"


def test_unknown_server_and_paths_are_404_in_the_envelope(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    demo.reset()
    r = gw.post("nope", jsonrpc("ping"))
    assert r.status == 404
    assert r.json()["error"]["code"] == -32004
    assert "demo" in r.json()["error"]["message"]
    r = gw.request("GET", "/nothing/here")
    assert r.status == 404 and "error" in r.json()
    assert demo.count() == 0, demo.received()


def test_bad_bodies_get_the_envelope(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    demo.reset()
    r = gw.post("demo", "{not json")
    assert r.status == 400
    assert r.json() == {"jsonrpc": "2.0", "id": None, "error": r.json()["error"]}
    assert r.json()["error"]["code"] == -32700
    r = gw.request("POST", "/mcp/demo", '{"jsonrpc":"2.0","id":1,"method":"ping"}', {"Content-Type": "text/plain"})
    assert r.status == 415 and r.json()["error"]["code"] == -32015
    assert demo.count() == 0, demo.received()


def test_notifications_and_session_headers_pass(demo, gateway_factory):
    gw = start(demo, gateway_factory)
    r = gw.post("demo", jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                               "clientInfo": {"name": "t", "version": "1"}}))
    assert r.status == 200
    session = r.header("mcp-session-id")
    assert session
    r = gw.post("demo", jsonrpc("notifications/initialized", id=None),
                headers={"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"})
    assert r.status == 202
    last = demo.received()[-1]
    assert last["headers"].get("mcp-session-id") == session
    assert last["headers"].get("mcp-protocol-version") == "2025-11-25"
