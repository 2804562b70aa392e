//! Backends with several endpoints: which server's cluster may hold more than
//! one host, and how Envoy keeps a 2025-era session on the host that created it.
//!
//! A server's cluster has several hosts when `endpoints:` lists several URLs,
//! or when its `url` names a DNS host (STRICT_DNS makes one host per address,
//! as for a Kubernetes Service). New sessions and stateless (2026-07-28)
//! requests are balanced round robin. A session must stay on its replica: the
//! others do not know its `Mcp-Session-Id`. Hashing that header cannot do it
//! (a session's first request, `initialize`, carries no id), so Envoy's
//! `stateful_session` filter with the envelope state is used: on the answer
//! that sets `Mcp-Session-Id`, Envoy appends the chosen host to the value;
//! on a later request it strips the host off, prefers that host (if it is
//! still healthy; else it balances) and forwards the backend's own id.
//!
//! The filter runs after the mcpx filter, so the mcpx filter sees the id the
//! client sees (opaque to it either way) and has already decided on the
//! request before any host is picked. Servers with one fixed host (an IP
//! `url`, a stdio server behind the bridge) have it switched off per route:
//! their session ids reach the client unchanged.

use mcpx_filter::config::{BackendUrl, Config, ServerConfig, Transport};
use serde_json::{json, Value};

/// The filter's name in the chain, and the key of its per-route config.
pub const FILTER: &str = "envoy.filters.http.stateful_session";
/// The header that carries a 2025-era session (case-insensitive in HTTP).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Whether this server's cluster may hold several hosts, so its sessions
/// need pinning to the host that created them.
pub fn may_have_several_hosts(server: &ServerConfig) -> bool {
    if server.transport != Transport::Http {
        return false;
    }
    let urls = server.backend_urls();
    urls.len() > 1
        || urls.iter().any(|u| BackendUrl::parse(u).is_ok_and(|u| u.host.parse::<std::net::IpAddr>().is_err()))
}

/// Whether any server needs the filter at all.
pub fn needed(config: &Config) -> bool {
    config.servers.iter().any(may_have_several_hosts)
}

/// The `stateful_session` filter with the envelope state on `mcp-session-id`.
/// Not strict: when the session's host is gone or ejected, the request is
/// balanced to a healthy one (which answers 404 for the unknown session, and
/// the client starts a new one) rather than failing with 503.
pub fn filter() -> Value {
    json!({
        "name": FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSession",
            "session_state": {
                "name": "envoy.http.stateful_session.envelope",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.http.stateful_session.envelope.v3.EnvelopeSessionState",
                    "header": { "name": SESSION_HEADER },
                },
            },
            "strict": false,
        },
    })
}

/// The per-route config that switches the filter off for a server with one
/// fixed host; `None` when the server's route keeps the filter on.
pub fn route_config(server: &ServerConfig) -> Option<Value> {
    (!may_have_several_hosts(server)).then(|| {
        json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.http.stateful_session.v3.StatefulSessionPerRoute",
            "disabled": true,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(yaml: &str) -> ServerConfig {
        let c =
            Config::from_yaml(&format!("servers:\n  - name: s\n{yaml}"), mcpx_filter::config::Mode::Gateway).unwrap();
        c.servers[0].clone()
    }

    #[test]
    fn several_hosts_when_endpoints_or_a_dns_name() {
        assert!(may_have_several_hosts(&server(
            "    endpoints: [\"http://127.0.0.1:1/mcp\", \"http://127.0.0.1:2/mcp\"]\n"
        )));
        assert!(may_have_several_hosts(&server("    url: http://backend.ns.svc:8080/mcp\n")));
        assert!(!may_have_several_hosts(&server("    url: http://127.0.0.1:1/mcp\n")));
        assert!(!may_have_several_hosts(&server("    url: \"http://[::1]:1/mcp\"\n")));
        assert!(!may_have_several_hosts(&server("    transport: stdio\n    command: x\n")));
        assert!(route_config(&server("    url: http://127.0.0.1:1/mcp\n")).is_some());
        assert!(route_config(&server("    url: http://backend:1/mcp\n")).is_none());
    }

    fn render(yaml: &str) -> Value {
        let opts = crate::envoy::render::RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x/mcpx_filter.wasm".into(),
            bridge: Some("127.0.0.1:7000".parse().unwrap()),
            control: None,
        };
        crate::envoy::render::bootstrap(&Config::from_yaml(yaml, mcpx_filter::config::Mode::Gateway).unwrap(), &opts)
            .unwrap()
    }

    const REPLICAS: &str =
        "servers:\n  - name: r\n    endpoints: [\"http://10.0.0.1:3001/mcp\", \"http://10.0.0.2/mcp\"]\n  \
        - name: one\n    url: http://127.0.0.1:3002/mcp\n  - name: io\n    transport: stdio\n    command: x\n\
        circuit_breaker: { enabled: true, failure_threshold: 2, cooldown: 30s }\n";

    #[test]
    fn replicas_render_one_cluster_each_host_its_own_host_header() {
        let b = render(REPLICAS);
        let c = &b["static_resources"]["clusters"][0];
        assert_eq!(c["name"], "mcpx_server_r");
        assert_eq!(c["type"], "STATIC");
        let eps = c["load_assignment"]["endpoints"][0]["lb_endpoints"].as_array().unwrap();
        let hosts: Vec<(&str, &str)> = eps
            .iter()
            .map(|e| {
                (
                    e["endpoint"]["address"]["socket_address"]["address"].as_str().unwrap(),
                    e["endpoint"]["hostname"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(hosts, [("10.0.0.1", "10.0.0.1:3001"), ("10.0.0.2", "10.0.0.2")]);
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        let routes = hcm["route_config"]["virtual_hosts"][0]["routes"].as_array().unwrap();
        let route = |p: &str| routes.iter().find(|r| r["match"]["path"] == p).unwrap().clone();
        assert_eq!(route("/mcp/r")["route"]["auto_host_rewrite"], true);
        assert!(route("/mcp/r")["route"].get("host_rewrite_literal").is_none());
        assert_eq!(route("/mcp/one")["route"]["host_rewrite_literal"], "127.0.0.1:3002");
        // Affinity on for the replicas; off for a fixed host and for the bridge.
        assert!(route("/mcp/r").get("typed_per_filter_config").is_none());
        for p in ["/mcp/one", "/mcp/io"] {
            assert_eq!(route(p)["typed_per_filter_config"][FILTER]["disabled"], true, "{p}");
        }
        // The breaker ejects one host and never lets an ejected host serve
        // (panic threshold 0); every host may be ejected (then the server is 503).
        assert_eq!(c["common_lb_config"]["healthy_panic_threshold"]["value"], 0.0);
        assert_eq!(c["outlier_detection"]["max_ejection_percent"], 100);
        assert_eq!(c["outlier_detection"]["consecutive_5xx"], 2);
    }

    #[test]
    fn the_session_filter_runs_after_mcpx_and_before_the_router() {
        let names = |b: &Value| -> Vec<String> {
            b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_string())
                .collect()
        };
        let b = render(REPLICAS);
        assert_eq!(names(&b), ["envoy.filters.http.wasm", FILTER, "envoy.filters.http.router"]);
        let f =
            &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][1];
        assert_eq!(f["typed_config"]["session_state"]["name"], "envoy.http.stateful_session.envelope");
        assert_eq!(f["typed_config"]["session_state"]["typed_config"]["header"]["name"], "mcp-session-id");
        assert_eq!(f["typed_config"]["strict"], false);
        // Only fixed hosts: no session filter at all.
        let plain = render("servers:\n  - name: one\n    url: http://127.0.0.1:3002/mcp\n");
        assert_eq!(names(&plain), ["envoy.filters.http.wasm", "envoy.filters.http.router"]);
        // A DNS name may resolve to several pods: STRICT_DNS, affinity on.
        let dns = render("servers:\n  - name: k\n    url: http://mcp.tools.svc.cluster.local:8080/mcp\n");
        assert_eq!(dns["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
        assert_eq!(names(&dns)[1], FILTER);
    }
}
