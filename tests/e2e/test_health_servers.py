"""GET /health and GET /servers through the real Envoy and filter: the filter
probes every backend with an MCP ping through its Envoy cluster."""

from harness import free_port, jsonrpc

ONE = """
servers:
  - name: demo
    url: {url}
inspection: {{ tool_integrity: off }}
"""

TWO = """
servers:
  - name: demo
    url: {url}
  - name: other
    url: {other}
inspection: {{ tool_integrity: off }}
"""


def dead_url() -> str:
    # A port nothing listens on: Envoy's connection is refused.
    return f"http://127.0.0.1:{free_port()}/mcp"


def test_health_is_healthy_with_fields(demo, gateway_factory):
    gw = gateway_factory(ONE.format(url=demo.url))
    demo.reset()
    r = gw.request("GET", "/health")
    assert r.status == 200, r.text
    assert r.header("content-type") == "application/json"
    body = r.json()
    assert body["status"] == "healthy"
    demo_health = body["servers"]["demo"]
    assert demo_health["healthy"] is True
    assert demo_health["error"] is None
    assert isinstance(demo_health["latency_ms"], int) and demo_health["latency_ms"] >= 0
    # The probe was a real MCP ping on the backend's own path.
    pings = [r for r in demo.received() if '"ping"' in r["body"]]
    assert pings and pings[-1]["path"] == "/mcp"


def test_health_is_degraded_with_one_backend_down(demo, gateway_factory):
    gw = gateway_factory(TWO.format(url=demo.url, other=dead_url()))
    r = gw.request("GET", "/health")
    assert r.status == 200, r.text
    body = r.json()
    assert body["status"] == "degraded"
    assert body["servers"]["demo"]["healthy"] is True
    other = body["servers"]["other"]
    assert other["healthy"] is False
    assert other["error"].startswith("HTTP 503"), other
    assert "latency_ms" in other


def test_health_is_unhealthy_and_503_with_all_down(demo, gateway_factory):
    gw = gateway_factory(TWO.format(url=demo.url, other=dead_url()))
    # The demo was up at start; it dies while the gateway runs.
    demo.stop()
    r = gw.request("GET", "/health")
    assert r.status == 503, r.text
    body = r.json()
    assert body["status"] == "unhealthy"
    assert all(not s["healthy"] and s["error"] for s in body["servers"].values()), body


def test_health_probe_times_out(demo, gateway_factory):
    gw = gateway_factory(TWO.format(url=demo.url, other=demo.url))
    demo.mode(delay_ms=10_000)
    r = gw.request("GET", "/health", timeout=15)
    assert r.status == 503, r.text
    for s in r.json()["servers"].values():
        assert s["error"] == "HTTP 504: no answer within 2000 ms", s
    demo.mode(reset=True)


def test_health_and_servers_answer_get_only(demo, gateway_factory):
    gw = gateway_factory(ONE.format(url=demo.url))
    r = gw.request("POST", "/health", "{}", {"Content-Type": "application/json"})
    assert r.status == 405 and r.header("allow") == "GET"
    assert r.json()["error"]["code"] == -32005
    assert gw.request("DELETE", "/servers").status == 405


def test_servers_lists_policy_without_secrets(demo, gateway_factory):
    config = f"""
servers:
  - name: demo
    url: {demo.url}
    policy:
      allow_tools: [echo, read_file]
      deny_tools: [dangerous_delete]
      tool_rules:
        read_file:
          args:
            path: {{ prefix: "/rule-value-secret/" }}
  - name: other
    url: {demo.url}
    policy: {{ read_only: true }}
auth:
  enabled: false
  token: "token-secret-xyz"
  clients: [{{ name: bot, token: "client-secret-xyz" }}]
clients:
  bot:
    servers:
      demo: {{ allow_tools: [echo] }}
"""
    gw = gateway_factory(config)
    r = gw.request("GET", "/servers")
    assert r.status == 200, r.text
    for secret in ("token-secret-xyz", "client-secret-xyz", "/rule-value-secret/"):
        assert secret not in r.text
    servers = {s["name"]: s for s in r.json()["servers"]}
    assert set(servers) == {"demo", "other"}
    demo_s = servers["demo"]
    assert demo_s["transport"] == "http" and demo_s["path"] == "/mcp/demo"
    assert demo_s["policy"]["allow_tools"] == ["echo", "read_file"]
    assert demo_s["policy"]["deny_tools"] == ["dangerous_delete"]
    assert demo_s["policy"]["tool_rules"] == ["read_file"]
    assert demo_s["client_overrides"] == ["bot"]
    assert servers["other"]["policy"]["read_only"] is True


def test_with_auth_on_anonymous_callers_get_only_the_summary(demo, gateway_factory):
    config = f"""
servers:
  - name: demo
    url: {demo.url}
auth:
  enabled: true
  token: "s3cret-token"
"""
    gw = gateway_factory(config)
    r = gw.request("GET", "/health")
    assert r.status == 200, r.text
    assert r.json() == {"status": "healthy"}
    r = gw.request("GET", "/servers")
    assert r.status == 401
    assert "s3cret-token" not in r.text
    assert r.header("www-authenticate") == "Bearer"


def test_mcp_traffic_is_unaffected(demo, gateway_factory):
    gw = gateway_factory(ONE.format(url=demo.url))
    assert gw.post("demo", jsonrpc("ping")).status == 200
    # Paths near the endpoints are not taken by them.
    assert gw.request("GET", "/health/x").status == 404
    assert gw.request("GET", "/serversx").status == 404
