"""envoy/grafana/mcpx-dashboard.json and envoy/prometheus/prometheus.yml: the
dashboard queries only the metrics docs/operations.md names, with their labels, covers
all of them, and (once the gateway serves /metrics) matches what a real
gateway exports."""

from __future__ import annotations

import json
import re

import yaml

from harness import ROOT, denied, jsonrpc

DASHBOARD = ROOT / "envoy" / "grafana" / "mcpx-dashboard.json"
PROMETHEUS = ROOT / "envoy" / "prometheus" / "prometheus.yml"

# docs/operations.md: metric -> its labels.
METRICS = {
    "mcpx_requests_total": {"server", "method", "status_code"},
    "mcpx_tool_calls_total": {"server", "tool", "decision", "client"},
    "mcpx_request_duration_ms_bucket": {"server", "le"},
    "mcpx_auth_failures_total": set(),
    "mcpx_rate_limit_hits_total": set(),
    "mcpx_breaker_trips_total": set(),
    "mcpx_breaker_state": {"server"},
    "mcpx_integrity_violations_total": {"server", "tool", "kind"},
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_the_spec_metrics_with_their_labels():
    used = set()
    for e in exprs():
        names = set(re.findall(r"\b(mcpx_[a-z_]+)", e))
        assert names, f"query uses no mcpx metric: {e}"
        for n in names:
            assert n in METRICS, f"{n} is not a metric docs/operations.md names ({e})"
        used |= names
        allowed = set().union(*(METRICS[n] for n in names))
        for group in re.findall(r"\bby \(([^)]*)\)", e):
            for label in (x.strip() for x in group.split(",")):
                assert label in allowed, f"label {label} is not a label of {names} ({e})"
        for label in re.findall(r"([a-z_]+)=~?\"", e):
            assert label in allowed, f"label {label} is not a label of {names} ({e})"
    assert used == set(METRICS), f"metrics without a panel: {set(METRICS) - used}"


def test_dashboard_layout_is_well_formed():
    d = dashboard()
    assert d["uid"] and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']} overlaps another"
                cells.add((x, y))
    variables = {v["name"] for v in d["templating"]["list"]}
    for e in exprs():
        for v in re.findall(r"\$([a-z_]+)", e):
            assert v in variables or v.startswith("__"), f"${v} is not a dashboard variable"


def test_prometheus_scrapes_the_compose_gateway():
    cfg = yaml.safe_load(PROMETHEUS.read_text())
    [job] = [j for j in cfg["scrape_configs"] if j["job_name"] == "mcpx"]
    assert job["metrics_path"] == "/metrics"
    target = job["static_configs"][0]["targets"][0]
    host, port = target.split(":")
    compose = yaml.safe_load((ROOT / "envoy" / "docker-compose.yaml").read_text())
    assert host in compose["services"], f"{host} is not a compose service"
    assert any(str(p).split(":")[-1] == port for p in compose["services"][host]["ports"])


def test_dashboard_metrics_match_a_real_gateway(demo, gateway_factory):
    gw = gateway_factory(f"servers:\n  - name: demo\n    url: {demo.url}\n    policy:\n      deny_tools: [dangerous_delete]\n")
    assert gw.post("demo", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "x"}})).status == 200
    assert denied(gw.post("demo", jsonrpc("tools/call", {"name": "dangerous_delete", "arguments": {}})))
    r = gw.request("GET", "/metrics")
    assert r.status == 200, f"the gateway must serve /metrics (the dashboard reads it): {r.status} {r.text[:300]}"
    series = {}
    for line in r.text.splitlines():
        m = re.match(r"(mcpx_[a-z_]+)\{([^}]*)\}", line)
        if m:
            series.setdefault(m.group(1), set()).update(re.findall(r"([a-z_]+)=\"", m.group(2)))
    for name in ["mcpx_requests_total", "mcpx_tool_calls_total", "mcpx_request_duration_ms_bucket"]:
        assert name in series, f"{name} not exported; the dashboard depends on it"
        assert METRICS[name] <= series[name], f"{name} labels {series[name]}, dashboard expects {METRICS[name]}"
