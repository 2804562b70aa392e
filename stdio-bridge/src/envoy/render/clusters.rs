//! The clusters: one per server (its endpoints, TLS, circuit breaker), the
//! admin cluster for `/metrics`, the JWKS cluster for OAuth.

use super::telemetry::tracing_cluster;
use super::{cluster_name, proto_duration, socket_address, RenderOptions};
use crate::error::{Error, Result};
use crate::ratelimit::render as global_rl;
use mcpx_filter::auth::oauth::{JwksSource, DEFAULT_JWKS_CLUSTER};
use mcpx_filter::config::{AuthType, BackendUrl, Config, ServerConfig, Transport, DEFAULT_MAX_IN_FLIGHT};
use serde_json::{json, Value};

pub fn clusters(config: &Config, opts: &RenderOptions) -> Result<Vec<Value>> {
    let mut out: Vec<Value> =
        config.servers.iter().map(|s| server_cluster(config, &s.name, opts)).collect::<Result<_, _>>()?;
    out.push(admin_cluster(opts));
    if let Some(c) = tracing_cluster(config)? {
        out.push(c);
    }
    out.extend(jwks_cluster(config)?);
    out.extend(global_rl::cluster(config)?);
    Ok(out)
}

/// OAuth: the cluster the filter fetches the JWKS through. Over https the
/// authorization server's certificate is verified (system CA bundle, or
/// SSL_CERT_FILE) against its host name: forged keys would forge identities.
pub fn jwks_cluster(config: &Config) -> Result<Option<Value>> {
    let a = &config.auth;
    let Some(o) = a.oauth.as_ref().filter(|_| a.enabled && a.kind == AuthType::Oauth) else {
        return Ok(None);
    };
    let cluster = o.jwks_cluster.as_deref().unwrap_or(DEFAULT_JWKS_CLUSTER);
    let src =
        JwksSource::parse(&o.jwks_uri, cluster).map_err(|e| Error::config(format!("auth.oauth.jwks_uri: {e}")))?;
    let u = BackendUrl::parse(&o.jwks_uri).map_err(|e| Error::config(format!("auth.oauth.jwks_uri: {e}")))?;
    let is_ip = u.host.parse::<std::net::IpAddr>().is_ok();
    let mut cluster = json!({
        "name": src.cluster,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": src.cluster,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&u.host, u.port) } }] }],
        },
    });
    if u.tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": u.host,
                "common_tls_context": {
                    "validation_context": {
                        "trusted_ca": { "filename": system_ca_bundle() },
                        "match_typed_subject_alt_names": [{ "san_type": "DNS", "matcher": { "exact": u.host } }],
                    },
                },
            },
        });
    }
    Ok(Some(cluster))
}

/// The CA bundle Envoy verifies the authorization server with.
fn system_ca_bundle() -> String {
    if let Ok(f) = std::env::var("SSL_CERT_FILE") {
        return f;
    }
    const CANDIDATES: [&str; 4] = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
        "/etc/ssl/ca-bundle.pem",
    ];
    CANDIDATES.iter().find(|p| std::path::Path::new(p).exists()).unwrap_or(&CANDIDATES[0]).to_string()
}

/// `host[:port]` as a Host header names it (the port only when not the default).
pub(super) fn authority_of(u: &BackendUrl) -> String {
    let default_port = if u.tls { 443 } else { 80 };
    let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
    if u.port == default_port {
        host
    } else {
        format!("{host}:{}", u.port)
    }
}

fn server_cluster(config: &Config, name: &str, opts: &RenderOptions) -> Result<Value> {
    let server = config.server(name).ok_or_else(|| Error::internal(format!("unknown server {name}")))?;
    let backends: Vec<BackendUrl> = match server.transport {
        Transport::Http => {
            let urls = server.backend_urls();
            if urls.is_empty() {
                return Err(Error::config(format!("servers.{name}.url is missing")));
            }
            urls.iter()
                .map(|u| BackendUrl::parse(u).map_err(|e| Error::config(format!("servers.{name}.url: {e}"))))
                .collect::<Result<_, _>>()?
        }
        Transport::Stdio => {
            let b = opts.bridge.ok_or_else(|| {
                Error::internal(format!("servers.{name} is a stdio server but no bridge address was given"))
            })?;
            vec![BackendUrl { tls: false, host: b.ip().to_string(), port: b.port(), path: String::new() }]
        }
    };
    let several = backends.len() > 1;
    let lb_endpoints: Vec<Value> = backends
        .iter()
        .map(|u| {
            let mut e = json!({ "endpoint": { "address": socket_address(&u.host, u.port) } });
            if several {
                // Read by the route's `auto_host_rewrite`: each replica gets its own Host.
                e["endpoint"]["hostname"] = json!(authority_of(u));
            }
            e
        })
        .collect();
    let all_ip = backends.iter().all(|u| u.host.parse::<std::net::IpAddr>().is_ok());
    let (host, tls) = backends.first().map(|u| (u.host.clone(), u.tls)).unwrap_or_default();
    let mut cluster = json!({
        "name": cluster_name(name),
        // STRICT_DNS: every address a name resolves to is a host (a Kubernetes Service's pods).
        "type": if all_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "5s",
        "load_assignment": { "cluster_name": cluster_name(name), "endpoints": [{ "lb_endpoints": lb_endpoints }] },
    });
    circuit_breaker(config, server, &mut cluster);
    if tls {
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": host,
            },
        });
        if several {
            // One SNI per replica: the Host header each one gets.
            cluster["typed_extension_protocol_options"] = json!({
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "upstream_http_protocol_options": { "auto_sni": true },
                    "explicit_http_config": { "http_protocol_options": {} },
                },
            });
        }
    }
    Ok(cluster)
}

/// The Envoy cluster for the admin interface: only `GET /metrics` is routed
/// to it (rewritten to `/stats/prometheus`), never other admin paths.
pub const ADMIN_CLUSTER: &str = "mcpx_admin";

fn admin_cluster(opts: &RenderOptions) -> Value {
    json!({
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address":
                socket_address(&opts.admin.ip().to_string(), opts.admin.port()) } }] }],
        },
    })
}

/// Outlier detection as the circuit breaker (docs/operations.md): `failure_threshold`
/// consecutive 5xx or transport errors eject the failing host (one replica
/// of several, or the only one) for `cooldown`; with panic threshold 0 an
/// ejected host gets no traffic, so the other replicas serve alone, and when
/// every host is ejected Envoy answers 503 at once. After `cooldown` the host is un-ejected and
/// traffic flows again (Envoy has no half-open request cap: see
/// docs/operations.md for how `half_open_max` maps).
fn circuit_breaker(config: &Config, server: &ServerConfig, cluster: &mut Value) {
    let cb = &config.circuit_breaker;
    // `max_in_flight` bounds requests in flight and those queued for a
    // connection alike (HTTP/1 upstreams queue when every connection is
    // busy); Envoy's defaults otherwise. `track_remaining` exposes headroom.
    let n = server.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    cluster["circuit_breakers"] = json!({ "thresholds": [{
        "priority": "DEFAULT", "max_connections": n, "max_pending_requests": n,
        "max_requests": n, "max_retries": 3, "track_remaining": true }] });
    if !cb.enabled {
        return;
    }
    let cooldown_ms = cb.cooldown.as_millis();
    // Un-ejection happens on the interval tick: keep it well below the cooldown.
    let interval_ms = (cooldown_ms / 4).clamp(100, 10_000);
    cluster["outlier_detection"] = json!({
        "consecutive_5xx": cb.failure_threshold,
        "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": cb.failure_threshold,
        "enforcing_consecutive_gateway_failure": 100,
        // Connect failures and resets count as 5xx (transport errors).
        "split_external_local_origin_errors": false,
        "interval": proto_duration(interval_ms),
        "base_ejection_time": proto_duration(cooldown_ms),
        // Envoy multiplies the ejection time by the number of ejections;
        // capping it keeps every open period at `cooldown`.
        "max_ejection_time": proto_duration(cooldown_ms),
        "max_ejection_percent": 100,
        "enforcing_success_rate": 0,
        "enforcing_failure_percentage": 0,
    });
    // Without this a single ejected host puts the LB in panic mode and it
    // keeps getting traffic (panic mode ignores host health).
    cluster["common_lb_config"] = json!({ "healthy_panic_threshold": { "value": 0.0 } });
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
    fn breaker_is_outlier_detection_with_panic_threshold_zero() {
        let b = render(OPS);
        let c = &b["static_resources"]["clusters"][0];
        let od = &c["outlier_detection"];
        assert_eq!(od["consecutive_5xx"], 4);
        assert_eq!(od["base_ejection_time"], "1.500s");
        assert_eq!(od["max_ejection_time"], "1.500s");
        assert_eq!(od["max_ejection_percent"], 100);
        assert_eq!(c["common_lb_config"]["healthy_panic_threshold"]["value"], 0.0);
    }
}
