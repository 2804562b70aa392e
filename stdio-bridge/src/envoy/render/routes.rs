//! The route configuration: `/metrics` to Envoy's admin, `/mcp/{server}`
//! to each server's cluster, a 404 envelope for anything else.

use super::clusters::{authority_of, ADMIN_CLUSTER};
use super::filters::cors_policy;
use super::local_ratelimit::{percent, rate_limit_policy, token_bucket};
use super::{affinity, cluster_name, proto_duration};
use crate::error::{Error, Result};
use crate::ratelimit::render as global_rl;
use mcpx_filter::config::{BackendUrl, Config, ServerConfig, Transport};
use mcpx_filter::names::{self, INTERNAL_HEADERS};
use serde_json::{json, Value};

pub fn route_config(config: &Config) -> Result<Value> {
    let mut routes = vec![metrics_route(config)];
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
    let mut vhost = json!({ "name": "mcpx", "domains": ["*"], "routes": routes });
    let mut per_filter = serde_json::Map::new();
    if let Some(cors) = cors_policy(config) {
        per_filter.insert("envoy.filters.http.cors".into(), cors);
    }
    if let Some(rl) = rate_limit_policy(config) {
        per_filter.insert("envoy.filters.http.local_ratelimit".into(), rl);
    }
    if !per_filter.is_empty() {
        vhost["typed_per_filter_config"] = Value::Object(per_filter);
    }
    Ok(json!({ "name": "mcpx", "virtual_hosts": [vhost] }))
}

/// How long an HTTP backend may stay silent, before its answer or inside a
/// stream: its `request_timeout`, else an hour. A stdio server's deadline is
/// kept by the bridge (which answers 504 itself), so its route keeps the hour.
fn backend_idle_timeout(server: &ServerConfig) -> String {
    match (server.transport, server.request_timeout) {
        (Transport::Http, Some(t)) => proto_duration(t.as_millis()),
        _ => "3600s".to_string(),
    }
}

fn server_route(config: &Config, name: &str) -> Result<Value> {
    let server = config.server(name).ok_or_else(|| Error::internal(format!("unknown server {name}")))?;
    let (authority, path) = match server.transport {
        Transport::Http => {
            let url = server.primary_url().ok_or_else(|| Error::config(format!("servers.{name}.url is missing")))?;
            let u = BackendUrl::parse(url).map_err(|e| Error::config(format!("servers.{name}.url: {e}")))?;
            (authority_of(&u), u.path)
        }
        Transport::Stdio => ("127.0.0.1".to_string(), format!("/mcp/{name}")),
    };
    let mut route = json!({
        "match": { "path": format!("/mcp/{name}") },
        "route": {
            "cluster": cluster_name(name),
            // Keep the backend's own path: /mcp/demo -> http://h:3001/mcp.
            "prefix_rewrite": path,
            // Backends that check Host (DNS-rebinding defences) see their own.
            "host_rewrite_literal": authority,
            // Streams (SSE) may outlive ordinary timeouts; idleness still ends them.
            "timeout": "0s",
            "idle_timeout": backend_idle_timeout(server),
        },
        "request_headers_to_remove": INTERNAL_HEADERS,
    });
    if server.endpoints.len() > 1 {
        // Each replica sees its own host name (set on its endpoint), not the first one's.
        let r = &mut route["route"];
        r.as_object_mut().map(|o| o.remove("host_rewrite_literal"));
        r["auto_host_rewrite"] = json!(true);
    }
    if affinity::needed(config) {
        if let Some(off) = affinity::route_config(server) {
            route["typed_per_filter_config"] = json!({ affinity::FILTER: off });
        }
    }
    if global_rl::is_global(config) {
        route["route"]["rate_limits"] = global_rl::route_rate_limits(config);
    }
    Ok(route)
}

/// `/metrics` on the main listener: exactly this path, to admin's
/// `/stats/prometheus`. Scrapes do not spend the MCP budget: the route has
/// its own bucket (Envoy requires one on a per-route policy).
fn metrics_route(config: &Config) -> Value {
    let mut route = json!({
        "match": { "path": names::METRICS_PATH },
        "route": { "cluster": ADMIN_CLUSTER, "prefix_rewrite": "/stats/prometheus", "timeout": "10s" },
    });
    if config.rate_limit.enabled && !global_rl::is_global(config) {
        route["typed_per_filter_config"] = json!({ "envoy.filters.http.local_ratelimit": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "mcpx_metrics",
            "token_bucket": token_bucket(50, 50),
            "filter_enabled": { "default_value": percent(100.0) },
            "filter_enforced": { "default_value": percent(100.0) },
        } });
    }
    route
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn routes_keep_the_backend_path() {
        let b = render("servers:\n  - name: demo\n    url: http://localhost:3001\n  - name: api\n    url: https://api.example.com/v1/mcp\n");
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        assert_eq!(routes[0]["match"]["path"], "/metrics");
        assert_eq!(routes[1]["match"]["path"], "/mcp/demo");
        assert_eq!(routes[1]["route"]["prefix_rewrite"], "/mcp");
        assert_eq!(routes[1]["route"]["host_rewrite_literal"], "localhost:3001");
        assert_eq!(routes[2]["route"]["prefix_rewrite"], "/v1/mcp");
        assert_eq!(routes[2]["route"]["host_rewrite_literal"], "api.example.com");
        assert_eq!(routes[3]["direct_response"]["status"], 404);
        let clusters = &b["static_resources"]["clusters"];
        assert_eq!(clusters[0]["type"], "STRICT_DNS");
        assert_eq!(clusters[1]["transport_socket"]["typed_config"]["sni"], "api.example.com");
    }

    #[test]
    fn health_probes_use_the_route_rewrites() {
        let yaml = "servers:\n  - name: a\n    url: http://localhost:3001\n  - name: b\n    url: https://[::1]/v1/mcp\n  - name: c\n    transport: stdio\n    command: npx\n";
        let config = Config::from_yaml(yaml, Mode::Gateway).unwrap();
        let b = bootstrap(&config, &opts()).unwrap();
        let routes = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
            ["route_config"]["virtual_hosts"][0]["routes"];
        for s in &config.servers {
            let t = mcpx_filter::endpoints::health::target(s).unwrap();
            let path = format!("/mcp/{}", s.name);
            let route = routes.as_array().unwrap().iter().find(|r| r["match"]["path"] == path.as_str()).unwrap();
            assert_eq!(route["route"]["cluster"], t.cluster);
            assert_eq!(route["route"]["prefix_rewrite"], t.path);
            assert_eq!(route["route"]["host_rewrite_literal"], t.authority);
        }
    }

    #[test]
    fn a_policy_only_change_leaves_the_routes_and_so_the_buckets_alone() {
        let routes = |policy: &str, clients: &str| {
            let yaml = format!(
                "servers:\n  - name: a\n    url: http://h:1\n    policy: {policy}\n{clients}\
                 rate_limit: {{ enabled: true, rps: 5, burst: 5, per_tool: true, tool_rps: 1, tool_burst: 2 }}\n"
            );
            route_config(&Config::from_yaml(&yaml, Mode::Gateway).unwrap()).unwrap()
        };
        let base = routes("{ allow_tools: [echo, add] }", "");
        for (policy, clients) in [
            ("{ allow_tools: [echo, add], deny_tools: [add] }", ""),
            ("{ allow_tools: [echo, add], deny_tools: [add, x, y, z] }", ""),
            ("{ allow_tools: [echo] }", ""),
            ("{ allow_tools: [echo, add], tool_rules: { echo: { args: { m: { equals: hi } } } } }", ""),
            ("{ allow_tools: [echo, add] }", "clients:\n  bot:\n    servers:\n      a: { deny_tools: [echo, q] }\n"),
        ] {
            assert_eq!(routes(policy, clients), base, "{policy} {clients}");
        }
    }
}
