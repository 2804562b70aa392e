//! envoy/istio/*.yaml: the manifests parse, the plugin configuration they
//! embed is accepted by the filter (plugin mode: servers without url), the
//! filter is fail-closed and early in the chain, and the routes and rate
//! limits agree with the filter's server names and internal headers.
//! (tests/e2e/test_mesh.py runs the same pieces in a real Envoy.)

use mcpx_filter::config::{Config, Mode};
use mcpx_filter::gateway::{Gateway, INTERNAL_HEADERS};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn manifests() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../envoy/istio");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("envoy/istio exists").flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let v: Value = serde_json::to_value(v).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(v["apiVersion"].is_string() && v["kind"].is_string(), "{name}: not a Kubernetes object");
            out.push((name, v));
        }
    }
    out
}

fn of_kind(kind: &str) -> Vec<(String, Value)> {
    manifests().into_iter().filter(|(_, v)| v["kind"] == kind).collect()
}

/// The plugin configurations: WasmPlugin pluginConfig (Istio hands it to the
/// filter as JSON) and the EnvoyFilter's Wasm `configuration` string.
fn plugin_configs() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, wp) in of_kind("WasmPlugin") {
        out.push((name, serde_json::to_string(&wp["spec"]["pluginConfig"]).unwrap()));
    }
    for (name, ef) in of_kind("EnvoyFilter") {
        for p in ef["spec"]["configPatches"].as_array().unwrap() {
            let cfg = &p["patch"]["value"]["typed_config"]["config"];
            if let Some(text) = cfg["configuration"]["value"].as_str() {
                out.push((name.clone(), text.to_string()));
            }
        }
    }
    out
}

#[test]
fn embedded_plugin_configurations_are_accepted_in_plugin_mode() {
    let configs = plugin_configs();
    assert!(configs.len() >= 2, "expected a WasmPlugin and an EnvoyFilter config: {configs:?}");
    for (name, text) in configs {
        Gateway::from_plugin_config(&text).unwrap_or_else(|e| panic!("{name}: the filter refuses its config: {e}"));
        let c = Config::from_yaml(&text, Mode::Plugin).unwrap();
        // Plugin mode: the mesh routes, so servers carry no url or command.
        assert!(c.servers.iter().all(|s| s.url.is_none() && s.command.is_none()), "{name}");
        // ...which the standalone gateway would refuse: the modes really differ.
        assert!(Config::from_yaml(&text, Mode::Gateway).is_err(), "{name}");
    }
}

#[test]
fn the_wasm_plugin_is_fail_closed_and_runs_first() {
    let plugins = of_kind("WasmPlugin");
    assert_eq!(plugins.len(), 1);
    let spec = &plugins[0].1["spec"];
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["phase"], "AUTHN");
    assert!(spec["url"].as_str().unwrap().starts_with("oci://"));
    assert!(spec["sha256"].is_string(), "the module must be pinned by digest");
    // The EnvoyFilter alternative: can pause for the body, never fails open.
    let wasm: Vec<Value> = of_kind("EnvoyFilter")
        .into_iter()
        .flat_map(|(_, ef)| ef["spec"]["configPatches"].as_array().unwrap().clone())
        .filter(|p| p["applyTo"] == "EXTENSION_CONFIG")
        .map(|p| p["patch"]["value"]["typed_config"]["config"].clone())
        .collect();
    assert_eq!(wasm.len(), 1);
    assert_eq!(wasm[0]["allow_on_headers_stop_iteration"], true);
    assert_eq!(wasm[0]["failure_policy"], "FAIL_RELOAD");
    assert!(wasm[0]["vm_config"]["code"]["remote"]["sha256"].is_string());
}

#[test]
fn routes_cover_the_plugin_servers_and_strip_internal_headers() {
    let (_, wp) = &of_kind("WasmPlugin")[0];
    let servers: BTreeSet<String> = wp["spec"]["pluginConfig"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    let mut routed = BTreeSet::new();
    for (_, vs) in of_kind("VirtualService") {
        for route in vs["spec"]["http"].as_array().unwrap() {
            let path = route["match"][0]["uri"]["exact"].as_str().unwrap();
            routed.insert(path.strip_prefix("/mcp/").expect("routes are /mcp/{server}").to_string());
            let removed: BTreeSet<&str> = route["headers"]["request"]["remove"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for h in INTERNAL_HEADERS {
                assert!(removed.contains(h), "route {path} forwards the internal header {h}");
            }
        }
    }
    assert_eq!(routed, servers);
}

#[test]
fn rate_limits_key_on_the_filters_internal_headers() {
    let mut keyed = 0;
    for (name, ef) in of_kind("EnvoyFilter") {
        for p in ef["spec"]["configPatches"].as_array().unwrap() {
            let value = &p["patch"]["value"];
            if value["name"] != "envoy.filters.http.local_ratelimit" {
                continue;
            }
            assert_eq!(p["patch"]["operation"], "INSERT_BEFORE", "{name}");
            assert_eq!(
                p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
                "envoy.filters.http.router"
            );
            for rl in value["typed_config"]["rate_limits"].as_array().unwrap() {
                // Costs (hits_addend) come from the filter's headers too.
                if let Some(f) = rl["hits_addend"]["format"].as_str() {
                    // `a?b`: header a, else b (the tool cost falls back to x-mcpx-hits).
                    let hs = f.trim_start_matches("%REQ(").trim_end_matches(")%");
                    for h in hs.split('?') {
                        assert!(INTERNAL_HEADERS.contains(&h), "{name}: {h} is not a header the filter sets");
                    }
                }
                for a in rl["actions"].as_array().unwrap() {
                    if a.get("generic_key").is_some() {
                        continue; // the global bucket: a constant key
                    }
                    let h = a["request_headers"]["header_name"].as_str().unwrap();
                    assert!(INTERNAL_HEADERS.contains(&h), "{name}: {h} is not a header the filter sets");
                    keyed += 1;
                }
            }
        }
    }
    // One combined key, x-mcpx-tool: server/tool (one header, one route re-match).
    assert!(keyed >= 1);
    let dr = of_kind("DestinationRule");
    assert!(!dr.is_empty());
    for (name, d) in dr {
        assert!(d["spec"]["trafficPolicy"]["outlierDetection"]["consecutive5xxErrors"].is_u64(), "{name}");
    }
}

#[test]
fn session_affinity_wraps_mcp_session_id_before_the_router() {
    let mut found = 0;
    for (name, ef) in of_kind("EnvoyFilter") {
        for p in ef["spec"]["configPatches"].as_array().unwrap() {
            let value = &p["patch"]["value"];
            if value["name"] != "envoy.filters.http.stateful_session" {
                continue;
            }
            assert_eq!(p["patch"]["operation"], "INSERT_BEFORE", "{name}");
            assert_eq!(
                p["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"],
                "envoy.filters.http.router"
            );
            let state = &value["typed_config"]["session_state"];
            assert_eq!(state["name"], "envoy.http.stateful_session.envelope", "{name}");
            assert_eq!(state["typed_config"]["header"]["name"], "mcp-session-id", "{name}");
            assert_eq!(value["typed_config"]["strict"], false, "{name}");
            found += 1;
        }
    }
    assert_eq!(found, 1);
}
