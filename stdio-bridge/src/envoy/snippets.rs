//! `mcpx render --snippets`: only the pieces a user adds to their own Envoy.
//!
//! The snippets are cut out of the full bootstrap that `mcpx render` (and
//! `mcpx run`) produce, never assembled separately, so whatever the renderer
//! grows (rate limits, outlier detection, access logs, CORS, extra clusters)
//! shows up here without a second code path that could drift.
//!
//! What is cut out, from the main listener's HTTP connection manager:
//! - `http_filters` without the router (the user has their own router);
//! - every other HCM setting except the boilerplate the user already has
//!   (`stat_prefix`, `codec_type`, `route_config`), e.g. request-id handling
//!   and `access_log`;
//! - the routes of the mcpx virtual host except its catch-all 404, and the
//!   virtual host's own settings (e.g. `typed_per_filter_config` for CORS or
//!   rate limits);
//! - listener settings (`per_connection_buffer_limit_bytes`);
//! - all clusters, and bootstrap-level sections other than `node`, `admin`
//!   and `static_resources` (e.g. `stats_config`, `overload_manager`), plus
//!   any extra listeners.

use crate::error::{Error, Result};
use serde_json::{json, Map, Value};

/// The snippets, as a mapping from section name to its content. Key order is
/// the order of the sections in the YAML output.
pub struct Snippets {
    sections: Vec<(&'static str, &'static str, Value)>,
}

/// HCM keys every user's Envoy already has; everything else is ours.
const HCM_BOILERPLATE: &[&str] = &["@type", "stat_prefix", "codec_type", "route_config", "http_filters"];
/// Virtual host keys that belong to the user's own virtual host.
const VHOST_BOILERPLATE: &[&str] = &["name", "domains", "routes"];
/// Listener keys that are the user's own.
const LISTENER_BOILERPLATE: &[&str] = &["name", "address", "filter_chains"];
/// Bootstrap keys that are the user's own.
const BOOTSTRAP_BOILERPLATE: &[&str] = &["node", "admin", "static_resources"];

impl Snippets {
    /// Cuts the snippets out of a bootstrap rendered by `render::bootstrap`.
    pub fn from_bootstrap(bootstrap: &Value) -> Result<Self> {
        let listeners = bootstrap["static_resources"]["listeners"]
            .as_array()
            .ok_or_else(|| Error::internal("the rendered bootstrap has no listeners"))?;
        let main = listeners.first().ok_or_else(|| Error::internal("the rendered bootstrap has no listeners"))?;
        let hcm = main["filter_chains"][0]["filters"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["name"] == "envoy.filters.network.http_connection_manager"))
            .map(|f| &f["typed_config"])
            .ok_or_else(|| Error::internal("the main listener has no HTTP connection manager"))?;

        let filters: Vec<Value> = hcm["http_filters"]
            .as_array()
            .ok_or_else(|| Error::internal("the HTTP connection manager has no http_filters"))?
            .iter()
            .filter(|f| f["name"] != "envoy.filters.http.router")
            .cloned()
            .collect();

        let vhost = &hcm["route_config"]["virtual_hosts"][0];
        let routes: Vec<Value> = vhost["routes"]
            .as_array()
            .ok_or_else(|| Error::internal("the rendered route configuration has no routes"))?
            .iter()
            .filter(|r| !is_catch_all(r))
            .cloned()
            .collect();

        let mut sections = vec![
            (
                "http_filters",
                "Add to your HttpConnectionManager's `http_filters`, in this order, BEFORE\n\
                 envoy.filters.http.router (the router must stay last).",
                Value::Array(filters),
            ),
            (
                "http_connection_manager",
                "Set these on the same HttpConnectionManager (next to `http_filters`): request ids,\n\
                 access log, and the hostile-network defaults (request timeouts, header names\n\
                 with underscores dropped, the JSON envelope for Envoy's 408).",
                Value::Object(without(hcm, HCM_BOILERPLATE)),
            ),
            (
                "routes",
                "Add to the `routes` of the virtual host MCP clients reach, BEFORE any\n\
                 catch-all route (e.g. `prefix: /`), so /mcp/{server} reaches these first.",
                Value::Array(routes),
            ),
            (
                "virtual_host",
                "Set these on that virtual host (next to `routes`).",
                Value::Object(without(vhost, VHOST_BOILERPLATE)),
            ),
            (
                "listener",
                "Set these on the listener (next to `filter_chains`): the filter buffers\n\
                 request bodies and tools/list responses up to this size.",
                Value::Object(without(main, LISTENER_BOILERPLATE)),
            ),
            (
                "clusters",
                "Add to `static_resources.clusters`: one per MCP server (and any the\n\
                 filter calls out to).",
                bootstrap["static_resources"]["clusters"].clone(),
            ),
            (
                "listeners",
                "Add to `static_resources.listeners` (extra listeners mcpx needs).",
                Value::Array(listeners.iter().skip(1).cloned().collect()),
            ),
            (
                "bootstrap",
                "Merge into the top level of your bootstrap. `overload_manager` caps client\n\
                 connections for the whole Envoy (limits.max_connections): set\n\
                 `ignore_global_conn_limit: true` on your admin and on any listener that must\n\
                 stay reachable when clients hold every slot.",
                Value::Object(match bootstrap.as_object() {
                    Some(b) => b.iter().filter(|(k, _)| !BOOTSTRAP_BOILERPLATE.contains(&k.as_str())).fold(
                        Map::new(),
                        |mut m, (k, v)| {
                            m.insert(k.clone(), v.clone());
                            m
                        },
                    ),
                    None => Map::new(),
                }),
            ),
        ];
        // Empty sections would only make the reader wonder.
        sections.retain(|(_, _, v)| !is_empty(v));
        Ok(Self { sections })
    }

    /// One JSON object, section name -> content.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (name, _, value) in &self.sections {
            m.insert((*name).to_string(), value.clone());
        }
        Value::Object(m)
    }

    /// One YAML document with a comment above each section saying where it goes.
    pub fn to_yaml(&self, config_name: &str) -> Result<String> {
        let mut out = format!(
            "# Envoy snippets for {config_name}, generated by `mcpx render --snippets`.\n\
             # Merge each section below into your own Envoy configuration where its comment\n\
             # says; the keys here (http_filters, routes, ...) only name the sections.\n\
             # Regenerate after every change to {config_name}.\n"
        );
        for (name, comment, value) in &self.sections {
            out.push('\n');
            for line in comment.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
            let text = serde_yaml::to_string(&json!({ *name: value })).map_err(|e| Error::internal(e.to_string()))?;
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// The renderer's own catch-all (`prefix: /` with a direct 404); the user has theirs.
fn is_catch_all(route: &Value) -> bool {
    route["match"]["prefix"] == "/" && route.get("direct_response").is_some()
}

fn without(v: &Value, keys: &[&str]) -> Map<String, Value> {
    v.as_object()
        .map(|o| o.iter().filter(|(k, _)| !keys.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::render::{self, RenderOptions};
    use mcpx_filter::config::{Config, Mode};

    fn bootstrap(yaml: &str) -> Value {
        let opts = RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x/mcpx_filter.wasm".into(),
            bridge: Some("127.0.0.1:7000".parse().unwrap()),
            control: Some("/run/mcpx/control.sock".into()),
        };
        render::bootstrap(&Config::from_yaml(yaml, Mode::Gateway).unwrap(), &opts).unwrap()
    }

    const TWO: &str = "servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\n  - name: gh\n    transport: stdio\n    command: npx\n";

    #[test]
    fn snippets_are_the_rendered_pieces_without_the_users_own() {
        let b = bootstrap(TWO);
        let s = Snippets::from_bootstrap(&b).unwrap().to_json();
        let hcm = &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        // The wasm filter (and anything else before the router), never the router.
        let filters = s["http_filters"].as_array().unwrap();
        assert_eq!(filters[0], hcm["http_filters"][0]);
        assert!(filters.iter().all(|f| f["name"] != "envoy.filters.http.router"));
        assert_eq!(filters.len(), hcm["http_filters"].as_array().unwrap().len() - 1);
        // GET /metrics and one route per server, no catch-all 404 (the user has their own).
        let routes = s["routes"].as_array().unwrap();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0]["match"]["path"], "/metrics");
        assert_eq!(routes[1]["match"]["path"], "/mcp/demo");
        assert!(routes.iter().all(|r| r.get("direct_response").is_none()));
        // Every cluster, unchanged.
        assert_eq!(s["clusters"], b["static_resources"]["clusters"]);
        // Settings that matter, without the user's boilerplate.
        assert_eq!(s["http_connection_manager"]["always_set_request_id_in_response"], true);
        assert!(s["http_connection_manager"].get("stat_prefix").is_none());
        assert!(s["http_connection_manager"].get("route_config").is_none());
        assert!(s["listener"]["per_connection_buffer_limit_bytes"].as_u64().unwrap() >= 1024 * 1024);
        assert!(s["listener"].get("address").is_none());
        // The hostile-network defaults travel with the snippets.
        assert_eq!(s["http_connection_manager"]["request_timeout"], hcm["request_timeout"]);
        assert_eq!(
            s["http_connection_manager"]["common_http_protocol_options"]["headers_with_underscores_action"],
            "DROP_HEADER"
        );
        assert_eq!(s["bootstrap"]["overload_manager"], b["overload_manager"]);
        // No admin or node: those are the user's.
        assert!(s.get("bootstrap").is_none_or(|b| b.get("admin").is_none() && b.get("node").is_none()));
    }

    #[test]
    fn yaml_parses_back_to_the_same_sections_and_says_where_they_go() {
        let snippets = Snippets::from_bootstrap(&bootstrap(TWO)).unwrap();
        let text = snippets.to_yaml("mcpx.yaml").unwrap();
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, snippets.to_json());
        assert!(text.contains("BEFORE\n# envoy.filters.http.router"), "{text}");
        assert!(text.contains("# Add to `static_resources.clusters`"), "{text}");
    }

    #[test]
    fn extra_renderer_pieces_follow_automatically() {
        // What the operations work adds to the bootstrap must reach the snippets
        // without changes here.
        let mut b = bootstrap(TWO);
        let hcm = &mut b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        hcm["access_log"] = json!([{ "name": "envoy.access_loggers.stdout" }]);
        let filters = hcm["http_filters"].as_array_mut().unwrap();
        filters.insert(1, json!({ "name": "envoy.filters.http.local_ratelimit" }));
        hcm["route_config"]["virtual_hosts"][0]["typed_per_filter_config"] = json!({ "x": 1 });
        b["stats_config"] = json!({ "stats_tags": [] });
        b["static_resources"]["clusters"].as_array_mut().unwrap()[0]["outlier_detection"] =
            json!({ "consecutive_5xx": 5 });
        let s = Snippets::from_bootstrap(&b).unwrap().to_json();
        assert_eq!(s["http_filters"][1]["name"], "envoy.filters.http.local_ratelimit");
        assert_eq!(s["http_connection_manager"]["access_log"][0]["name"], "envoy.access_loggers.stdout");
        assert_eq!(s["virtual_host"]["typed_per_filter_config"]["x"], 1);
        assert_eq!(s["bootstrap"]["stats_config"], json!({ "stats_tags": [] }));
        assert_eq!(s["clusters"][0]["outlier_detection"]["consecutive_5xx"], 5);
    }
}
