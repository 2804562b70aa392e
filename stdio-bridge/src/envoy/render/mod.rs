//! Renders the Envoy configuration for a validated `mcpx.yaml`.
//!
//! Built from typed `serde_json` values, never string templates, so every
//! value is escaped correctly and the output is always well-formed. Each
//! piece (listener, filters, routes, clusters) is its own function so the
//! pieces can also be printed alone for users with their own Envoy.
//!
//! One file per part of the bootstrap:
//!
//! - this file: [`RenderOptions`] and [`bootstrap`], which puts them together;
//! - `listener`: the main listener and its HTTP connection manager (the
//!   hostile-network defaults), the control listener, the connection cap;
//! - `filters`: the HTTP filter chain, the wasm filter and its plugin
//!   configuration, CORS;
//! - `routes`: `/mcp/{server}`, `/metrics` and the 404;
//! - `clusters`: one per server (with the circuit breaker), admin, JWKS;
//! - `local_ratelimit`: the local rate-limit filter and buckets;
//! - `access_log`: the audit log lines Envoy writes;
//! - `telemetry`: metric labels (`stats_tags`) and tracing;
//! - `affinity`: session affinity for servers with several endpoints.

mod access_log;
pub mod affinity;
mod clusters;
mod filters;
mod listener;
mod local_ratelimit;
mod routes;
mod telemetry;

pub use filters::plugin_configuration;

use crate::error::Result;
use clusters::clusters;
use listener::{check_header_names, listeners, overload_manager};
use mcpx_filter::config::Config;
use mcpx_filter::names;
use serde_json::{json, Value};
use std::net::SocketAddr;
use telemetry::stats_config;

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
    /// The operator control listener (integrity baseline): a Unix socket path.
    pub control: Option<String>,
}

/// The Envoy cluster name of a server (the filter's `/health` probes use it too).
pub fn cluster_name(server: &str) -> String {
    names::cluster_name(server)
}

/// The whole bootstrap `mcpx run` hands to Envoy.
pub fn bootstrap(config: &Config, opts: &RenderOptions) -> Result<Value> {
    check_header_names(config)?;
    Ok(json!({
        "node": { "id": "mcpx", "cluster": "mcpx" },
        "admin": {
            "address": socket_address(&opts.admin.ip().to_string(), opts.admin.port()),
            // Loopback only; readiness, reloads and /metrics must work while
            // clients hold every connection slot.
            "ignore_global_conn_limit": true,
        },
        "stats_config": stats_config(),
        "overload_manager": overload_manager(config),
        // Compiling the filter's module leaves ~12 MiB of freed heap that
        // tcmalloc keeps; releasing free pages in the background gives it
        // back (-3.6 MiB RSS measured, no CPU change: docs/performance.md).
        "memory_allocator_manager": {
            "bytes_to_release": 1u64 << 30,
            "memory_release_interval": "2s",
        },
        "static_resources": {
            "listeners": listeners(config, opts)?,
            "clusters": clusters(config, opts)?,
        },
    }))
}

pub fn socket_address(host: &str, port: u16) -> Value {
    json!({ "socket_address": { "address": host, "port_value": port } })
}

/// A protobuf JSON duration (`1.250s`).
fn proto_duration(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// What the tests of every part render with.
#[cfg(test)]
mod testing {
    pub use super::*;
    pub use mcpx_filter::config::Mode;

    pub fn opts() -> RenderOptions {
        RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x/mcpx_filter.wasm".into(),
            bridge: Some("127.0.0.1:7000".parse().unwrap()),
            control: Some("/run/mcpx/control.sock".into()),
        }
    }

    pub fn render(yaml: &str) -> Value {
        bootstrap(&Config::from_yaml(yaml, Mode::Gateway).unwrap(), &opts()).unwrap()
    }

    pub fn hcm(b: &Value) -> &Value {
        &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    pub const OPS: &str =
        "servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n    policy: { allow_tools: [echo] }\n\
        rate_limit: { enabled: true, rps: 7, burst: 9, per_tool: true, tool_rps: 2, tool_burst: 3 }\n\
        circuit_breaker: { enabled: true, failure_threshold: 4, cooldown: 1500ms }\n\
        cors: { allowed_origins: [\"https://app.example.com\"] }\n\
        tracing: { enabled: true, endpoint: \"http://otel:4318\", sample_ratio: 0.25 }\n\
        audit: { output: /var/log/mcpx-audit.log }\n";
}

#[cfg(test)]
mod tests {
    use super::clusters::ADMIN_CLUSTER;
    use super::telemetry::OTEL_CLUSTER;
    use super::testing::*;

    #[test]
    fn audit_metrics_cors_and_tracing() {
        let b = render(OPS);
        let log = &hcm(&b)["access_log"][0];
        assert_eq!(log["typed_config"]["path"], "/var/log/mcpx-audit.log");
        let fields = &log["typed_config"]["log_format"]["json_format"];
        for k in ["time", "request_id", "server", "method", "tool", "client", "client_ip", "decision", "reason"] {
            assert!(fields.get(k).is_some(), "{k}");
        }
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let admin = clusters.iter().find(|c| c["name"] == ADMIN_CLUSTER).unwrap();
        assert_eq!(
            admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            9901
        );
        let metrics = &hcm(&b)["route_config"]["virtual_hosts"][0]["routes"][0];
        assert_eq!(metrics["match"], json!({"path": "/metrics"}));
        assert_eq!(metrics["route"]["prefix_rewrite"], "/stats/prometheus");
        let cors = &hcm(&b)["route_config"]["virtual_hosts"][0]["typed_per_filter_config"]["envoy.filters.http.cors"];
        assert_eq!(cors["allow_origin_string_match"][0]["exact"], "https://app.example.com");
        assert!(cors["expose_headers"].as_str().unwrap().contains("mcp-session-id"));
        let t = &hcm(&b)["tracing"];
        assert_eq!(t["random_sampling"]["value"], 25.0);
        assert_eq!(t["provider"]["typed_config"]["http_service"]["http_uri"]["uri"], "http://otel:4318/v1/traces");
        assert!(clusters.iter().any(|c| c["name"] == OTEL_CLUSTER && c["type"] == "STRICT_DNS"));
        let tags = b["stats_config"]["stats_tags"].as_array().unwrap();
        assert!(tags.iter().any(|t| t["tag_name"] == "tool"));
    }
}
