"""The benchmark's variants stay what docs/performance.md says they are, as the
rendered config grows: (c) is the real gateway (it refuses what its policy
denies), (b) is derived from the same render and is plain Envoy on the same
route (nothing refused), and the report's arithmetic is right. The benchmark
itself (`make bench`) is never part of `make test`; this only guards its setup.
"""

import json
import sys
from pathlib import Path

from harness import ENVOY_BIN, JSON, Process, denied, free_port, jsonrpc, request, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench  # noqa: E402
import report  # noqa: E402

TOKEN = "bench-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ECHO = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hello from the mcpx benchmark"}})
DENIED = jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/etc"}})
BAD_ARG = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "Hello; rm -rf /"}})


def bench_config(demo, tmp_path) -> str:
    return bench.gateway_yaml(demo.port, {10: demo.port}, TOKEN, tmp_path / "audit.log")


def main_routes(bootstrap: dict) -> list:
    """The route matches of the main listener (`mcpx`)."""
    (listener,) = [x for x in bootstrap["static_resources"]["listeners"] if x["name"] == "mcpx"]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return [r["match"] for r in hcm["route_config"]["virtual_hosts"][0]["routes"]]


def test_full_variant_is_the_gateway(demo, gateway_factory, tmp_path):
    gw = gateway_factory(bench_config(demo, tmp_path))
    assert gw.post("demo", ECHO, AUTH).status == 200
    # The policy the benchmark claims to exercise really applies.
    r = gw.post("demo", DENIED, AUTH)
    assert denied(r), r.text
    r = gw.post("demo", BAD_ARG, AUTH)
    assert denied(r) and "text" in r.json()["error"]["message"], r.text
    r = gw.post("list10", jsonrpc("tools/list"), AUTH)
    assert r.status == 200
    assert "dangerous_delete" not in [t["name"] for t in r.json()["result"]["tools"]]
    assert not any("dangerous_delete" in b for b in demo.received_bodies())


def test_plain_variant_is_the_same_route_without_any_filter(demo, tmp_path):
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(bench_config(demo, tmp_path))
    port, admin = free_port(), free_port()
    full = bench.render(cfg, port, admin)
    assert bench.has_wasm(full)
    plain = bench.strip_to_plain_envoy(full)
    assert not bench.has_wasm(plain)
    assert [f["name"] for h in bench.hcms(plain) for f in h["http_filters"]] == ["envoy.filters.http.router"]
    assert all("access_log" not in h for h in bench.hcms(plain))
    # Same main listener, routes and clusters as the gateway: only the filters differ.
    assert main_routes(plain) == main_routes(full)
    assert plain["static_resources"]["clusters"] == full["static_resources"]["clusters"]

    path = tmp_path / "plain.json"
    path.write_text(json.dumps(plain))
    envoy = Process("bench-plain-envoy", [ENVOY_BIN, "-c", str(path), "--concurrency", "1",
                                          "--disable-hot-restart", "--log-level", "warn"])
    try:
        wait_until(lambda: bench.http(admin, "GET", "/ready")[0] == 200, timeout=60, what="plain Envoy ready",
                   proc=envoy.proc)
        r = request(port, "POST", "/mcp/demo", json.dumps(ECHO), {**JSON, **AUTH})
        assert r.status == 200 and "hello from the mcpx benchmark" in r.text, r.text
        # Nothing in (b) inspects MCP: the call the gateway refuses goes through.
        r = request(port, "POST", "/mcp/demo", json.dumps(DENIED), JSON)
        assert r.status == 200, r.text
        assert any("dangerous_delete" in b for b in demo.received_bodies())
    finally:
        envoy.stop()


def test_report_arithmetic():
    a, b, dev = report.linear_fit([10, 100, 1000, 5000], [30 + 2 * n for n in (10, 100, 1000, 5000)])
    assert abs(a - 30) < 1e-6 and abs(b - 2) < 1e-9 and dev < 1e-9

    def run(v, conns, rnd, rps, p99):
        return {"variant": v, "conns": conns, "round": rnd, "rps": rps, "p50_us": 100, "p99_us": p99,
                "cpu_us_envoy": 50 if v == "b" else 80, "errors": 0}

    runs = [run("a", 16, 0, 30000, 300), run("b", 16, 0, 10000, 900), run("c", 16, 0, 8000, 1200),
            run("a", 16, 1, 30000, 300), run("b", 16, 1, 12000, 800), run("c", 16, 1, 6000, 1000)]
    s = report.summarise_overhead(runs)[16]
    assert s["ratio"] == (0.8 + 0.5) / 2  # median of the per-round ratios
    assert s["ratio_range"] == (0.5, 0.8)
    assert s["p99_added"] == 250
    assert s["cpu_added"] == 30
