"""The ablation table's setup (`make bench`) stays honest: the benchmark-only
switches never work in the shipped .wasm, the Envoy mcp + RBAC variant really
refuses the tool it claims to deny, and the table's arithmetic is right. No
timing here: `make test` must not depend on the machine's speed."""

import json
import sys
from pathlib import Path

from harness import ENVOY_BIN, JSON, WASM, Process, free_port, jsonrpc, request, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench  # noqa: E402
import report  # noqa: E402

TOKEN = "bench-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ACCEPT = {"Accept": "application/json, text/event-stream"}
ECHO = jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "hello from the mcpx benchmark"}})
DENIED = jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {"path": "/etc"}})


def start_envoy(name: str, bootstrap: dict, tmp_path, admin: int) -> Process:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(bootstrap))
    envoy = Process(name, [ENVOY_BIN, "-c", str(path), "--concurrency", "1", "--disable-hot-restart",
                           "--log-level", "warn"])
    wait_until(lambda: bench.http(admin, "GET", "/ready")[0] == 200, timeout=60, what=f"{name} ready",
               proc=envoy.proc)
    return envoy


def rendered(demo, tmp_path, port: int, admin: int) -> dict:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(bench.gateway_yaml(demo.port, {}, TOKEN, tmp_path / "audit.log"))
    return bench.render(cfg, port, admin)


def test_the_shipped_filter_ignores_the_benchmark_switches(demo, tmp_path):
    """The marker that turns every check off in the bench-ablation build is a
    plain comment to the shipped filter: the denied call is still refused and
    never reaches the backend."""
    port, admin = free_port(), free_port()
    b = bench.with_skips(rendered(demo, tmp_path, port, admin), "all,after_headers,after_body,after_parse")
    for plugin in bench._wasm_plugins(b):
        assert plugin["configuration"]["value"].startswith("# mcpx-bench-skip: all,")
        plugin["vm_config"]["code"]["local"]["filename"] = WASM  # the shipped build
    envoy = start_envoy("bench-skip-shipped", b, tmp_path, admin)
    try:
        r = request(port, "POST", "/mcp/demo", json.dumps(ECHO), {**JSON, **ACCEPT, **AUTH})
        assert r.status == 200, r.text
        before = len(demo.received_bodies())
        r = request(port, "POST", "/mcp/demo", json.dumps(DENIED), {**JSON, **ACCEPT, **AUTH})
        # A denial is HTTP 200 with the JSON-RPC error -32003 by default.
        assert r.status == 200 and json.loads(r.text)["error"]["code"] == -32003, r.text
        assert len(demo.received_bodies()) == before
    finally:
        envoy.stop()


def test_envoy_mcp_rbac_variant_denies_the_tool(demo, tmp_path):
    port, admin = free_port(), free_port()
    b = bench.with_mcp_rbac(bench.strip_to_plain_envoy(rendered(demo, tmp_path, port, admin)))
    names = [f["name"] for h in bench.hcms(b) for f in h["http_filters"]]
    assert names == ["envoy.filters.http.mcp", "envoy.filters.http.rbac", "envoy.filters.http.router"]
    envoy = start_envoy("bench-mcp-rbac", b, tmp_path, admin)
    try:
        r = request(port, "POST", "/mcp/demo", json.dumps(ECHO), {**JSON, **ACCEPT})
        assert r.status == 200 and "hello from the mcpx benchmark" in r.text, r.text
        before = len(demo.received_bodies())
        r = request(port, "POST", "/mcp/demo", json.dumps(DENIED), {**JSON, **ACCEPT})
        assert r.status == 403, r.text
        assert len(demo.received_bodies()) == before
    finally:
        envoy.stop()


def test_ablation_arithmetic():
    variants = [{"key": k, "label": k, "how": h, "arg": None}
                for k, h in [("plain", "plain"), ("noop", "skip"), ("headers", "skip"), ("body", "skip"),
                             ("parse", "skip"), ("full_ablation_build", "skip"), ("full", "config"),
                             ("no_metrics", "skip"), ("no_auth", "config")]]
    cpu = {"plain": 50, "noop": 60, "headers": 61, "body": 70, "parse": 72, "full_ablation_build": 100,
           "full": 101, "no_metrics": 90, "no_auth": 95}
    runs = [{"variant": k, "round": rnd, "cpu_us_envoy": v + rnd, "rps": 1000.0 * 50 / v, "errors": 0}
            for rnd in (0, 1) for k, v in cpu.items()]
    s = report.summarise_ablation({"variants": variants, "runs": runs})
    assert s["noop"]["part"] == 10 and s["body"]["part"] == 9 and s["full_ablation_build"]["part"] == 28
    assert s["no_metrics"]["part"] == 10  # against the build it shares
    assert s["no_auth"]["part"] == 6  # against the shipped full gateway
    assert abs(s["full"]["rps_vs_plain"] - 50 / 101) < 1e-9
