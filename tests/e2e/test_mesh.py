"""The Istio pieces of envoy/istio/ in a real Envoy 1.40 (no cluster here): the
Wasm filter config of the EnvoyFilter, fed the WasmPlugin's pluginConfig the
way Istio passes it (JSON text) or the EnvoyFilter's own configuration, the
local rate limiter of the rate-limit EnvoyFilter, and the VirtualService's
routes. The filter runs in plugin mode: servers have no url."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

import subprocess

from harness import JSON, MCPX_BIN, ROOT, WASM, denied, free_port, jsonrpc, request
from test_snippets import UserEnvoy

ISTIO = ROOT / "envoy" / "istio"


def manifests(kind: str) -> list[dict]:
    out = []
    for f in sorted(ISTIO.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(f.read_text()) if d and d["kind"] == kind]
    return out


def patches(apply_to: str) -> list[dict]:
    return [p for ef in manifests("EnvoyFilter") for p in ef["spec"]["configPatches"] if p["applyTo"] == apply_to]


def cluster(name: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def mesh_bootstrap(plugin_config: str, backend_port: int) -> tuple[dict, int, int]:
    """What the ingress gateway's Envoy gets from these manifests, with the
    module loaded from the local build instead of the registry."""
    [ext] = patches("EXTENSION_CONFIG")
    wasm = copy.deepcopy(ext["patch"]["value"]["typed_config"])
    wasm["config"]["vm_config"]["code"] = {"local": {"filename": WASM}}
    wasm["config"]["configuration"]["value"] = plugin_config
    http_filters = [{"name": "mcpx", "typed_config": wasm}]
    # The other HTTP_FILTER patches that are inserted before the router (the
    # mcpx one is config_discovery: it is the extension config above).
    http_filters += [p["patch"]["value"] for p in patches("HTTP_FILTER") if "typed_config" in p["patch"]["value"]]
    http_filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    routes, clusters = [], []
    for vs in manifests("VirtualService"):
        for r in vs["spec"]["http"]:
            name = r["name"]
            routes.append({"match": {"path": r["match"][0]["uri"]["exact"]},
                           "request_headers_to_remove": r["headers"]["request"]["remove"],
                           "route": {"cluster": name, "prefix_rewrite": r["rewrite"]["uri"], "timeout": r["timeout"]}})
            clusters.append(cluster(name, backend_port))
    port, admin = free_port(), free_port()
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                    "HttpConnectionManager",
           "stat_prefix": "ingress", "route_config": {"virtual_hosts": [{"name": "mcp", "domains": ["*"],
                                                                         "routes": routes}]},
           "http_filters": http_filters}
    boot = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": [{
                "name": "ingress", "per_connection_buffer_limit_bytes": 8388608,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                "typed_config": hcm}]}]}],
                "clusters": clusters}}
    return boot, port, admin


def wasmplugin_config() -> str:
    # Istio passes a WasmPlugin's pluginConfig (a Struct) to the filter as JSON.
    [wp] = manifests("WasmPlugin")
    return json.dumps(wp["spec"]["pluginConfig"])


def envoyfilter_config() -> str:
    [ext] = patches("EXTENSION_CONFIG")
    return ext["patch"]["value"]["typed_config"]["config"]["configuration"]["value"]


@pytest.mark.parametrize("source", ["wasmplugin", "envoyfilter"])
def test_mesh_plugin_config_enforces_policy_in_envoy(demo, source):
    text = wasmplugin_config() if source == "wasmplugin" else envoyfilter_config()
    boot, port, admin = mesh_bootstrap(text, demo.port)
    envoy = UserEnvoy(boot, admin)
    try:
        # The WasmPlugin example names a client; send its credential (ignored
        # where auth is off).
        headers = {**JSON, "Authorization": "Bearer REPLACE-ME"}
        post = lambda server, msg: request(port, "POST", f"/mcp/{server}", json.dumps(msg), headers)

        r = post("filesystem", jsonrpc("tools/list"))
        assert r.status == 200, r.text
        assert [t["name"] for t in r.json()["result"]["tools"]] == ["read_file"]

        demo.reset()
        for name, args in [("dangerous_delete", {"path": "/"}), ("echo", {"text": "x"}),
                           ("read_file", {"path": "/etc/passwd"})]:
            r = post("filesystem", jsonrpc("tools/call", {"name": name, "arguments": args}))
            assert denied(r), (name, r.text)
        # read_only server: discovery passes, calls do not.
        assert post("github", jsonrpc("tools/list")).status == 200
        r = post("github", jsonrpc("tools/call", {"name": "echo", "arguments": {"text": "x"}}))
        assert denied(r) and "read_only" in r.json()["error"]["message"], r.text
        assert not any("tools/call" in b for b in demo.received_bodies())

        r = post("filesystem", jsonrpc("tools/call", {"name": "read_file", "arguments": {"path": "/data/a"}}))
        assert r.status == 200, r.text
        # The VirtualService rewrite restored the backend's own path.
        assert demo.received()[-1]["path"] == "/mcp"
        # Unknown server: the filter refuses it (no route needed).
        assert post("nope", jsonrpc("tools/list")).status == 404
    finally:
        envoy.stop()


def test_mcpx_check_plugin_accepts_the_plugin_configs(tmp_path):
    for i, text in enumerate([wasmplugin_config(), envoyfilter_config()]):
        f = tmp_path / f"plugin{i}.yaml"
        f.write_text(text)
        r = subprocess.run([MCPX_BIN, "check", "--plugin", "-c", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        # The standalone gateway needs a url per server: plugin mode really differs.
        r = subprocess.run([MCPX_BIN, "check", "-c", str(f)], capture_output=True, text=True)
        assert r.returncode == 1 and ".url" in r.stderr, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text('{"servers": [{"name": "a", "policy": {"allow_tool": ["x"]}}]}')
    r = subprocess.run([MCPX_BIN, "check", "--plugin", "-c", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and "allow_tool" in r.stderr


def descriptor(rl: dict, key: str) -> dict:
    """The rate-limit config's descriptor for `key` (mcpx_global or mcpx_tool)."""
    [d] = [d for d in rl["typed_config"]["descriptors"] if d["entries"][0]["key"] == key]
    return d


def limited_gateway(demo):
    """The rate-limit EnvoyFilter's config with its global buckets (the
    mcpx_global descriptor MCP requests are charged to, and the default one)
    shrunk to 2 tokens that never refill, so the third request is limited
    whatever the machine's speed."""
    boot, port, admin = mesh_bootstrap(envoyfilter_config(), demo.port)
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    [rl] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.local_ratelimit"]
    rl["typed_config"]["token_bucket"] = {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "3600s"}
    descriptor(rl, "mcpx_global")["token_bucket"] = {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "3600s"}
    return UserEnvoy(boot, admin), port


def test_mesh_per_tool_bucket_is_keyed_by_the_filter(demo):
    """The rate-limit EnvoyFilter's per-tool descriptor, with its bucket shrunk
    to 1 token that never refills, limits one (server, tool) and not others."""
    boot, port, admin = mesh_bootstrap(envoyfilter_config(), demo.port)
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    [rl] = [f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.local_ratelimit"]
    descriptor(rl, "mcpx_tool")["token_bucket"] = {"max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s"}
    envoy = UserEnvoy(boot, admin)
    try:
        def read(i):
            return request(port, "POST", "/mcp/filesystem", json.dumps(jsonrpc(
                "tools/call", {"name": "read_file", "arguments": {"path": "/data/a"}}, id=i)), JSON)
        assert read(1).status == 200
        limited = read(2)
        assert limited.status == 429 and limited.json()["id"] == 2, limited.text
        # Other traffic (no per-tool key, or another server) still passes.
        assert request(port, "POST", "/mcp/filesystem", json.dumps(jsonrpc("ping")), JSON).status == 200
        assert request(port, "POST", "/mcp/github", json.dumps(jsonrpc("tools/list")), JSON).status == 200
    finally:
        envoy.stop()


def test_mesh_rate_limit_filter_enforces_at_filter_level(demo):
    """Enforced as a filter-level config: no per-route config needed."""
    envoy, port = limited_gateway(demo)
    try:
        codes = [request(port, "POST", "/mcp/filesystem", json.dumps(jsonrpc("ping")), JSON).status
                 for _ in range(3)]
        assert codes == [200, 200, 429], codes
    finally:
        envoy.stop()


def test_rate_limited_tools_list_is_429_not_502(demo):
    # Envoy's own local replies (response.code_details != via_upstream) get the
    # JSON envelope with the request's id instead of tools/list inspection.
    envoy, port = limited_gateway(demo)
    try:
        replies = [request(port, "POST", "/mcp/filesystem", json.dumps(jsonrpc("tools/list", id=i)), JSON)
                   for i in range(3)]
        codes = [r.status for r in replies]
        assert codes == [200, 200, 429], codes
        assert replies[2].json()["id"] == 2 and replies[2].json()["error"]["code"] == -32029
    finally:
        envoy.stop()
