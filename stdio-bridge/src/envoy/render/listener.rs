//! The listeners: the main one (its HTTP connection manager and the
//! settings for a hostile network) and the operator's control listener on
//! a Unix socket; the process-wide connection cap.

use super::access_log::access_log;
use super::filters::{http_filters, wasm_filter_for};
use super::routes::route_config;
use super::telemetry::tracing;
use super::{proto_duration, socket_address, RenderOptions};
use crate::error::{Error, Result};
use crate::ratelimit::render as global_rl;
use mcpx_filter::config::{AuthType, Config, Mode};
use mcpx_filter::endpoints::control::CONTROL_ROOT_ID;
use serde_json::{json, Value};

/// Per-connection buffer limit: the body limit plus headroom for large
/// `tools/list` responses the filter must buffer (Envoy buffers a paused body only up to this
/// limit, 1 MiB by default: a bigger request gets 413, a bigger paused response 500).
fn buffer_limit(config: &Config) -> u64 {
    (config.limits.max_body_bytes * 2).max(8 * 1024 * 1024)
}

pub(super) fn listeners(config: &Config, opts: &RenderOptions) -> Result<Vec<Value>> {
    let mut all = vec![listener(config, opts)?];
    if let Some(path) = &opts.control {
        all.push(control_listener(&opts.wasm_path, path)?);
    }
    Ok(all)
}

/// The operator listener: the same filter in the same VM (`vm_id`), so it
/// sees the same shared-data baseline, but with the control root id, which
/// serves only `/baseline` (docs/integrity.md); the main listener never
/// serves these endpoints. It listens on a Unix socket with mode 0600, not on
/// a TCP port: a port on loopback is open to every local process, and these
/// endpoints can reset the integrity pins.
pub fn control_listener(wasm_path: &str, path: &str) -> Result<Value> {
    // The control root reads no policy: a fixed configuration keeps this
    // listener unchanged across reloads, so a policy change stays ECDS-only.
    let control_config = Config::from_yaml("servers: [{name: mcpx-control}]", Mode::Plugin)
        .map_err(|e| Error::internal(e.to_string()))?;
    if !path.starts_with('/') {
        return Err(Error::usage(format!(
            "the control socket {path} is not an absolute path; pass --control /path/to/control.sock"
        )));
    }
    Ok(json!({
        "name": "mcpx_control",
        // 0600: only the operator's account may connect.
        "address": { "pipe": { "path": path, "mode": 0o600 } },
        // The operator keeps access when clients hold every connection slot.
        "ignore_global_conn_limit": true,
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
                        wasm_filter_for(&control_config, wasm_path, CONTROL_ROOT_ID)?,
                        { "name": "envoy.filters.http.router",
                          "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } },
                    ],
                },
            }],
        }],
    }))
}

pub fn listener(config: &Config, opts: &RenderOptions) -> Result<Value> {
    let (host, port) = &opts.listen;
    Ok(json!({
        "name": "mcpx",
        "address": socket_address(host, *port),
        // Envoy shares a port with any same-user socket that also set
        // SO_REUSEPORT (an Envoy left running, say), and clients would reach
        // either: a taken port must fail to bind instead.
        "enable_reuse_port": false,
        // With one shared socket the kernel no longer spreads connections
        // over the workers; Envoy's exact balancer does.
        "connection_balance_config": { "exact_balance": {} },
        "per_connection_buffer_limit_bytes": buffer_limit(config),
        "filter_chains": [{
            "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": http_connection_manager(config, opts)?,
            }],
        }],
    }))
}

fn http_connection_manager(config: &Config, opts: &RenderOptions) -> Result<Value> {
    let mut hcm = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "mcpx",
        "codec_type": "AUTO",
        // Every response carries X-Request-ID: the caller's, else a new one.
        "generate_request_id": true,
        "preserve_external_request_id": true,
        "always_set_request_id_in_response": true,
        "route_config": route_config(config)?,
        "http_filters": http_filters(config, opts)?,
        "access_log": access_log(config),
    });
    if let Some(h) = hcm.as_object_mut() {
        h.extend(hostile_network_defaults(config));
    }
    if global_rl::is_global(config) {
        if let Some(m) = hcm["local_reply_config"]["mappers"].as_array_mut() {
            m.extend(global_rl::local_reply_mappers());
        }
    }
    let tracing = tracing(config);
    if !tracing.is_null() {
        hcm["tracing"] = tracing;
    }
    Ok(hcm)
}

/// HCM settings for a hostile network (docs/deployment.md#hostile-network-defaults):
/// how long a client may take to send a request, what happens to header
/// names with underscores, and the JSON envelope for the timeout reply.
///
/// `request_timeout` runs from the first byte of the request until its last
/// byte has passed the filters, so a client trickling its body is cut off;
/// it is disarmed once the request is complete, so a long SSE response is
/// never bounded by it. Streams are bounded only by idleness (the route's
/// `idle_timeout`).
///
/// Underscores: `x_mcpx_client` or `Mcp_Method` are different header names to
/// Envoy and the filter, but WSGI/CGI backends read them as `X-Mcpx-Client`
/// and `Mcp-Method`. They are dropped (not refused): then neither the filter
/// nor the backend sees them, so the backend executes exactly what the
/// filter decided on. Refusing would happen in Envoy's codec, before the
/// filter, as a bare 400 (HTTP/1) or a stream reset (HTTP/2) with no
/// envelope and no audit line, and would break clients whose proxies add
/// such headers.
pub fn hostile_network_defaults(config: &Config) -> serde_json::Map<String, Value> {
    let l = &config.limits;
    let mut m = serde_json::Map::new();
    m.insert("request_headers_timeout".into(), json!(proto_duration(l.request_headers_timeout.as_millis())));
    m.insert("request_timeout".into(), json!(proto_duration(l.request_timeout.as_millis())));
    m.insert(
        "common_http_protocol_options".into(),
        json!({
            "headers_with_underscores_action": "DROP_HEADER",
            // A connection with no request in flight (e.g. opened and left
            // silent) is closed after this; open streams are not idle.
            "idle_timeout": "300s",
        }),
    );
    // HTTP/2 (h2c): Envoy's default allows 2^31 streams on one connection,
    // which would sidestep the connection cap.
    m.insert("http2_protocol_options".into(), json!({ "max_concurrent_streams": 100 }));
    // Envoy's 408 is plain text; the filter has not decided anything yet, so
    // it cannot envelope it. The filter itself never answers 408.
    m.insert(
        "local_reply_config".into(),
        json!({ "mappers": [{
            "filter": { "status_code_filter": { "comparison": { "op": "EQ",
                "value": { "default_value": 408, "runtime_key": "mcpx.local_reply.408" } } } },
            "body_format_override": { "json_format": { "error": {
                "code": REQUEST_TIMEOUT_CODE,
                "message": "%LOCAL_REPLY_BODY%: the request did not arrive in time (limits.request_headers_timeout / limits.request_timeout)",
            } } },
        }] }),
    );
    m
}

/// The rendered listener drops header names with underscores, so a
/// credential header named that way would never arrive: every request would
/// be refused as unauthenticated. Say so at render (and `mcpx check`) time.
pub(super) fn check_header_names(config: &Config) -> Result<()> {
    match &config.auth.header {
        Some(h) if config.auth.enabled && config.auth.kind == AuthType::ApiKey && h.contains('_') => {
            Err(Error::config(format!(
                "auth.header: {h:?} has an underscore; the gateway drops header names with underscores \
             (backends may read them as other headers), so clients could never send it: use {:?}",
                h.replace('_', "-")
            )))
        }
        _ => Ok(()),
    }
}

/// JSON-RPC code of the 408 envelope (an invalid request: it never arrived whole).
pub const REQUEST_TIMEOUT_CODE: i64 = -32600;

/// The downstream connection cap for the whole Envoy process (the main
/// listener; admin and the control listener are exempt).
pub fn overload_manager(config: &Config) -> Value {
    json!({ "resource_monitors": [{
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
            "max_active_downstream_connections": config.limits.max_connections,
        },
    }] })
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn control_listener_shares_the_vm_on_an_owner_only_socket() {
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
        assert_eq!(listeners[1]["address"]["pipe"], json!({"path": "/run/mcpx/control.sock", "mode": 0o600}));
        assert_eq!(listeners[0]["enable_reuse_port"], false, "a taken port must fail to bind");
        assert!(control_listener("/x.wasm", "control.sock").is_err());
    }

    #[test]
    fn hostile_network_defaults_are_rendered() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n");
        let h = hcm(&b);
        assert_eq!(h["request_headers_timeout"], "10.000s");
        assert_eq!(h["request_timeout"], "30.000s");
        assert_eq!(h["common_http_protocol_options"]["headers_with_underscores_action"], "DROP_HEADER");
        assert_eq!(h["http2_protocol_options"]["max_concurrent_streams"], 100);
        let mapper = &h["local_reply_config"]["mappers"][0];
        assert_eq!(mapper["filter"]["status_code_filter"]["comparison"]["value"]["default_value"], 408);
        assert_eq!(mapper["body_format_override"]["json_format"]["error"]["code"], REQUEST_TIMEOUT_CODE);
        let om = &b["overload_manager"]["resource_monitors"][0];
        assert_eq!(om["name"], "envoy.resource_monitors.global_downstream_max_connections");
        assert_eq!(om["typed_config"]["max_active_downstream_connections"], 10_000);
        // Operator access survives a connection flood; the main listener is limited.
        assert_eq!(b["admin"]["ignore_global_conn_limit"], true);
        let listeners = b["static_resources"]["listeners"].as_array().unwrap();
        assert!(listeners[0].get("ignore_global_conn_limit").is_none());
        assert_eq!(listeners[1]["ignore_global_conn_limit"], true);
        // Streams stay unbounded by the request timeout: routes keep no deadline.
        let route = &h["route_config"]["virtual_hosts"][0]["routes"][1];
        assert_eq!(route["route"]["timeout"], "0s");
        assert_eq!(route["route"]["idle_timeout"], "3600s");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["circuit_breakers"]["thresholds"][0]["max_requests"], 1024);

        // Per server: a silent HTTP backend is cut off after its
        // request_timeout; max_in_flight caps requests in flight and queued.
        let b = render(
            "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n    request_timeout: 1500ms\n    max_in_flight: 8\n",
        );
        let route = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"][1];
        assert_eq!(route["route"]["idle_timeout"], "1.500s");
        let t = &b["static_resources"]["clusters"][0]["circuit_breakers"]["thresholds"][0];
        assert_eq!(
            (&t["max_requests"], &t["max_pending_requests"], &t["max_connections"]),
            (&json!(8), &json!(8), &json!(8))
        );

        // An API-key header with an underscore could never arrive.
        let c = Config::from_yaml(
            "servers:\n  - name: demo\n    url: http://h:1\nauth: { enabled: true, type: api_key, header: X_Api_Key, token: t }\n",
            Mode::Gateway,
        )
        .unwrap();
        let e = bootstrap(&c, &opts()).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Config);
        let e = e.to_string();
        assert!(e.starts_with("auth.header:") && e.contains("\"X-Api-Key\""), "{e}");

        let b = render(
            "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n\
             limits: { request_headers_timeout: 1500ms, request_timeout: 2m, max_connections: 64 }\n",
        );
        assert_eq!(hcm(&b)["request_headers_timeout"], "1.500s");
        assert_eq!(hcm(&b)["request_timeout"], "120.000s");
        assert_eq!(
            b["overload_manager"]["resource_monitors"][0]["typed_config"]["max_active_downstream_connections"],
            64
        );
    }
}
