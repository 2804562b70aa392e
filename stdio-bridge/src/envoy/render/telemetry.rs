//! Metrics and tracing: the `stats_tags` that turn the filter's `mcpx_*`
//! stat names into Prometheus labels, and Envoy's OpenTelemetry tracer.

use super::access_log::filter_state;
use super::socket_address;
use crate::error::{Error, Result};
use mcpx_filter::config::{BackendUrl, Config};
use mcpx_filter::names;
use serde_json::{json, Value};

pub const OTEL_CLUSTER: &str = "mcpx_otel";

/// Label names for the filter's `mcpx_*` series: each `.key.value` pair of
/// the stat name becomes `key="value"` (group 1 is cut out of the name,
/// group 2 is the value; pairs are skipped lazily so a value can never be
/// mistaken for a key).
pub use names::METRIC_LABELS;

pub fn stats_config() -> Value {
    let tags: Vec<Value> = METRIC_LABELS
        .iter()
        .map(|k| {
            json!({
                "tag_name": k,
                "regex": format!(r"^wasmcustom\.{}[a-z_]+(?:\.[a-z_]+\.[^.]+)*?(\.{k}\.([^.]+))", names::METRIC_PREFIX),
            })
        })
        .collect();
    json!({ "stats_tags": tags })
}

/// The OTLP/HTTP endpoint split into (host, port, tls, path); the path
/// defaults to the OTLP traces path.
fn otlp_endpoint(endpoint: &str) -> Result<(String, u16, bool, String)> {
    let tls = endpoint.starts_with("https://");
    let rest = endpoint.trim_start_matches("https://").trim_start_matches("http://");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let u = BackendUrl::parse(&format!("{}://{authority}", if tls { "https" } else { "http" }))
        .map_err(|e| Error::config(format!("tracing.endpoint: {e}")))?;
    let path = if path.is_empty() || path == "/" { "/v1/traces".to_string() } else { path.to_string() };
    Ok((u.host, u.port, tls, path))
}

/// Envoy's OpenTelemetry tracer, with the MCP attributes on every span.
pub fn tracing(config: &Config) -> Value {
    let t = &config.tracing;
    let Some(endpoint) = t.endpoint.as_deref().filter(|_| t.enabled) else { return Value::Null };
    let Ok((host, port, tls, path)) = otlp_endpoint(endpoint) else { return Value::Null };
    let scheme = if tls { "https" } else { "http" };
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    let tags: Vec<Value> = ["server", "method", "tool", "client", "decision"]
        .iter()
        .map(|k| json!({ "tag": format!("mcp.{k}"), "value": filter_state(k) }))
        .collect();
    json!({
        "random_sampling": { "value": t.sample_ratio * 100.0 },
        "custom_tags": tags,
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "service_name": t.service_name,
                "http_service": {
                    "http_uri": { "uri": format!("{scheme}://{host}:{port}{path}"), "cluster": OTEL_CLUSTER, "timeout": "2s" },
                },
            },
        },
    })
}

pub(super) fn tracing_cluster(config: &Config) -> Result<Option<Value>> {
    let t = &config.tracing;
    let Some(endpoint) = t.endpoint.as_deref().filter(|_| t.enabled) else { return Ok(None) };
    let (host, port, tls, _) = otlp_endpoint(endpoint)?;
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    let mut c = json!({
        "name": OTEL_CLUSTER,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "connect_timeout": "2s",
        "load_assignment": { "cluster_name": OTEL_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&host, port) } }] }] },
    });
    if tls {
        c["transport_socket"] = json!({ "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": host } });
    }
    Ok(Some(c))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn otlp_endpoints_keep_a_given_path() {
        assert_eq!(otlp_endpoint("http://otel:4318").unwrap(), ("otel".into(), 4318, false, "/v1/traces".into()));
        assert_eq!(
            otlp_endpoint("https://collector.example.com/custom/traces").unwrap(),
            ("collector.example.com".into(), 443, true, "/custom/traces".into())
        );
        let c = Config::from_yaml(
            "servers:\n  - name: a\n    url: http://h:1\ntracing: { enabled: true, endpoint: \"http://[::1]:4318\" }\n",
            Mode::Gateway,
        )
        .unwrap();
        assert_eq!(
            tracing(&c)["provider"]["typed_config"]["http_service"]["http_uri"]["uri"],
            "http://[::1]:4318/v1/traces"
        );
    }
}
