//! Renders the Envoy configuration for a validated `mcpx.yaml`.
//!
//! Built from typed `serde_json` values, never string templates, so every
//! value is escaped correctly and the output is always well-formed. Each
//! piece (listener, filters, routes, clusters) is its own function so the
//! pieces can also be printed alone for users with their own Envoy.

use mcpx_filter::config::{BackendUrl, Config, Transport};
use mcpx_filter::control::CONTROL_ROOT_ID;
use mcpx_filter::gateway::INTERNAL_HEADERS;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Where things are on this machine: everything `mcpx.yaml` does not say.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The main listener (from `listen`, or `--listen`).
    pub listen: (String, u16),
    /// Envoy's admin interface; always loopback.
    pub admin: SocketAddr,
    /// The filter's `.wasm`.
    pub wasm_path: String,
    /// The stdio bridge, when the config has stdio servers.
    pub bridge: Option<SocketAddr>,
    /// The operator control listener (integrity baseline); always loopback.
    pub control: Option<SocketAddr>,
}

/// The Envoy cluster name of a server.
pub fn cluster_name(server: &str) -> String {
    format!("mcpx_server_{server}")
}

/// Per-connection buffer limit: the body limit plus headroom for large
/// `tools/list` responses the filter must buffer (ENVOY-FACTS §0.3).
fn buffer_limit(config: &Config) -> u64 {
    (config.limits.max_body_bytes * 2).max(8 * 1024 * 1024)
}

/// The whole bootstrap `mcpx run` hands to Envoy.
pub fn bootstrap(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    Ok(json!({
        "node": { "id": "mcpx", "cluster": "mcpx" },
        "admin": {
            "address": socket_address(&opts.admin.ip().to_string(), opts.admin.port()),
        },
        "static_resources": {
            "listeners": listeners(config, opts)?,
            "clusters": clusters(config, opts)?,
        },
    }))
}

fn socket_address(host: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": host, "port_value": port } })
}

fn listeners(config: &Config, opts: &RenderOptions) -> Result<Vec<Value>, String> {
    let mut all = vec![listener(config, opts)?];
    if let Some(addr) = opts.control {
        all.push(control_listener(config, &opts.wasm_path, addr)?);
    }
    Ok(all)
}

/// The operator listener: the same filter in the same VM (`vm_id`), so it
/// sees the same shared-data baseline, but with the control root id, which
/// serves only `/baseline` (docs/integrity.md). Loopback only; the main
/// listener never serves these endpoints.
pub fn control_listener(config: &Config, wasm_path: &str, addr: SocketAddr) -> Result<Value, String> {
    if !addr.ip().is_loopback() {
        return Err(format!("the control address {addr} is not a loopback address; keep it on 127.0.0.1"));
    }
    Ok(json!({
        "name": "mcpx_control",
        "address": socket_address(&addr.ip().to_string(), addr.port()),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "mcpx_control",
                    "codec_type": "AUTO",
                    "route_config": {
                        "name": "mcpx_control",
                        "virtual_hosts": [{ "name": "mcpx_control", "domains": ["*"], "routes": [{
                            "match": { "prefix": "/" },
                            "direct_response": { "status": 404 },
                        }] }],
                    },
                    "http_filters": [
                        wasm_filter_for(config, wasm_path, CONTROL_ROOT_ID)?,
                        { "name": "envoy.filters.http.router",
                          "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                    ],
                },
            }],
        }],
    }))
}

pub fn listener(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    let (host, port) = &opts.listen;
    Ok(json!({
        "name": "mcpx",
        "address": socket_address(host, *port),
        "per_connection_buffer_limit_bytes": buffer_limit(config),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": http_connection_manager(config, opts)?,
            }],
        }],
    }))
}

fn http_connection_manager(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    Ok(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "mcpx",
        "codec_type": "AUTO",
        // Every response carries X-Request-ID: the caller's, else a new one.
        "generate_request_id": true,
        "preserve_external_request_id": true,
        "always_set_request_id_in_response": true,
        "route_config": route_config(config)?,
        "http_filters": http_filters(config, opts)?,
    }))
}

pub fn http_filters(config: &Config, opts: &RenderOptions) -> Result<Value, String> {
    Ok(json!([
        wasm_filter(config, &opts.wasm_path)?,
        { "name": "envoy.filters.http.router",
          "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
    ]))
}

/// The plugin configuration: the config the filter reads, as JSON text.
pub fn plugin_configuration(config: &Config) -> Result<String, String> {
    serde_json::to_string(config).map_err(|e| format!("cannot serialise the filter configuration: {e}"))
}

pub fn wasm_filter(config: &Config, wasm_path: &str) -> Result<Value, String> {
    wasm_filter_for(config, wasm_path, "mcpx")
}

/// The filter with a given root id; everything in `vm_config` is the same
/// for every root id so they all share one VM and its shared data.
fn wasm_filter_for(config: &Config, wasm_path: &str, root_id: &str) -> Result<Value, String> {
    Ok(json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": root_id,
                "root_id": root_id,
                // Required to hold the headers while the body is read (ENVOY-FACTS §0.1).
                "allow_on_headers_stop_iteration": true,
                // Never FAIL_OPEN: that would skip auth and policy.
                "failure_policy": "FAIL_RELOAD",
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_configuration(config)?,
                },
                "vm_config": {
                    "vm_id": "mcpx",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm_path } },
                },
            },
        },
    }))
}

pub fn route_config(config: &Config) -> Result<Value, String> {
    let mut routes = Vec::new();
    for s in &config.servers {
        routes.push(server_route(config, &s.name)?);
    }
    // Anything else is not ours: a 404 in the same envelope the filter uses.
    routes.push(json!({
        "match": { "prefix": "/" },
        "direct_response": {
            "status": 404,
            "body": { "inline_string": r#"{"error":{"code":-32004,"message":"not found: MCP servers are at /mcp/{server}"}}"# },
        },
        "response_headers_to_add": [{ "header": { "key": "content-type", "value": "application/json" }, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD" }],
    }));
    Ok(json!({
        "name": "mcpx",
        "virtual_hosts": [{ "name": "mcpx", "domains": ["*"], "routes": routes }],
    }))
}

fn server_route(config: &Config, name: &str) -> Result<Value, String> {
    let server = config.server(name).ok_or_else(|| format!("unknown server {name}"))?;
    let (authority, path) = match server.transport {
        Transport::Http => {
            let url = server.url.as_deref().ok_or_else(|| format!("servers.{name}.url is missing"))?;
            let u = BackendUrl::parse(url).map_err(|e| format!("servers.{name}.url: {e}"))?;
            let default_port = if u.tls { 443 } else { 80 };
            let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
            let authority = if u.port == default_port { host } else { format!("{host}:{}", u.port) };
            (authority, u.path)
        }
        Transport::Stdio => ("127.0.0.1".to_string(), format!("/mcp/{name}")),
    };
    Ok(json!({
        "match": { "path": format!("/mcp/{name}") },
        "route": {
            "cluster": cluster_name(name),
            // Keep the backend's own path: /mcp/demo -> http://h:3001/mcp.
            "prefix_rewrite": path,
            // Backends that check Host (DNS-rebinding defences) see their own.
            "host_rewrite_literal": authority,
            // Streams (SSE) may outlive ordinary timeouts; idleness still ends them.
            "timeout": "0s",
            "idle_timeout": "3600s",
        },
        "request_headers_to_remove": INTERNAL_HEADERS,
    }))
}

pub fn clusters(config: &Config, opts: &RenderOptions) -> Result<Vec<Value>, String> {
    config.servers.iter().map(|s| server_cluster(config, &s.name, opts)).collect()
}

fn server_cluster(config: &Config, name: &str, opts: &RenderOptions) -> Result<Value, String> {
    let server = config.server(name).ok_or_else(|| format!("unknown server {name}"))?;
    let (host, port, tls) = match server.transport {
        Transport::Http => {
            let url = server.url.as_deref().ok_or_else(|| format!("servers.{name}.url is missing"))?;
            let u = BackendUrl::parse(url).map_err(|e| format!("servers.{name}.url: {e}"))?;
            (u.host, u.port, u.tls)
        }
        Transport::Stdio => {
            let b = opts
                .bridge
                .ok_or_else(|| format!("servers.{name} is a stdio server but no bridge address was given"))?;
            (b.ip().to_string(), b.port(), false)
        }
    };
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": cluster_name(name),
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": cluster_name(name),
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&host, port) } }] }],
        },
    });
    if tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
            },
        });
    }
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpx_filter::config::Mode;

    fn opts() -> RenderOptions {
        RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x/mcpx_filter.wasm".into(),
            bridge: Some("127.0.0.1:7000".parse().unwrap()),
            control: Some("127.0.0.1:9902".parse().unwrap()),
        }
    }

    fn render(yaml: &str) -> Value {
        bootstrap(&Config::from_yaml(yaml, Mode::Gateway).unwrap(), &opts()).unwrap()
    }

    #[test]
    fn routes_keep_the_backend_path() {
        let b = render("servers:\n  - name: demo\n    url: http://localhost:3001\n  - name: api\n    url: https://api.example.com/v1/mcp\n");
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"], "/mcp/demo");
        assert_eq!(routes[0]["route"]["prefix_rewrite"], "/mcp");
        assert_eq!(routes[0]["route"]["host_rewrite_literal"], "localhost:3001");
        assert_eq!(routes[1]["route"]["prefix_rewrite"], "/v1/mcp");
        assert_eq!(routes[1]["route"]["host_rewrite_literal"], "api.example.com");
        assert_eq!(routes[2]["direct_response"]["status"], 404);
        let clusters = &b["static_resources"]["clusters"];
        assert_eq!(clusters[0]["type"], "STRICT_DNS");
        assert_eq!(clusters[1]["transport_socket"]["typed_config"]["sni"], "api.example.com");
    }

    #[test]
    fn wasm_filter_is_fail_closed_and_can_pause() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n");
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let wasm = &hcm["http_filters"][0]["typed_config"]["config"];
        assert_eq!(wasm["allow_on_headers_stop_iteration"], true);
        assert_eq!(wasm["failure_policy"], "FAIL_RELOAD");
        assert_eq!(hcm["always_set_request_id_in_response"], true);
        // The plugin configuration is what the filter accepts.
        let text = wasm["configuration"]["value"].as_str().unwrap();
        mcpx_filter::gateway::Gateway::from_plugin_config(text).unwrap();
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STATIC");
    }

    #[test]
    fn stdio_servers_go_to_the_bridge() {
        let b = render("servers:\n  - name: gh\n    transport: stdio\n    command: npx\n");
        let c = &b["static_resources"]["clusters"][0];
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            7000
        );
    }

    #[test]
    fn control_listener_shares_the_vm_and_stays_on_loopback() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n");
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        assert_eq!(listeners.len(), 2);
        let wasm = |l: &Value| {
            l["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"].clone()
        };
        let (main, control) = (wasm(&listeners[0]), wasm(&listeners[1]));
        assert_eq!(main["root_id"], "mcpx");
        assert_eq!(control["root_id"], CONTROL_ROOT_ID);
        assert_eq!(main["vm_config"], control["vm_config"]);
        assert_eq!(listeners[1]["address"]["socket_address"]["address"], "127.0.0.1");
        let config =
            Config::from_yaml("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n", Mode::Gateway).unwrap();
        assert!(control_listener(&config, "/x.wasm", "0.0.0.0:9902".parse().unwrap()).is_err());
    }
}
