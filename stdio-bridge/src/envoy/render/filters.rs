//! The HTTP filter chain, in order, and each filter's own configuration:
//! CORS, the mcpx wasm filter (with its plugin configuration), then what
//! `affinity`, rate limiting and the router add.

use super::local_ratelimit::local_rate_limit_filter;
use super::{affinity, RenderOptions};
use crate::error::{Error, Result};
use crate::ratelimit::render as global_rl;
use mcpx_filter::config::Config;
use serde_json::{json, Value};

/// Order: CORS (answers allowed preflights) -> mcpx (auth, parse, policy,
/// Origin check, rate-limit key) -> local rate limit (reads the key) -> router.
pub fn http_filters(config: &Config, opts: &RenderOptions) -> Result<Value> {
    let mut filters = Vec::new();
    if config.cors.is_some() {
        filters.push(cors_filter());
    }
    filters.push(wasm_filter(config, &opts.wasm_path)?);
    // After the mcpx filter: it decides first, then Envoy picks the session's host.
    if affinity::needed(config) {
        filters.push(affinity::filter());
    }
    if global_rl::is_global(config) {
        filters.push(global_rl::filter(config));
    } else if config.rate_limit.enabled {
        filters.push(local_rate_limit_filter());
    }
    filters.push(json!({ "name": "envoy.filters.http.router",
          "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" } }));
    Ok(Value::Array(filters))
}

/// The plugin configuration: the config the filter reads, as JSON text.
/// Static credentials go in as `sha256:` digests (`${VAR}` expanded first),
/// so the rendered output never holds a secret (docs/auth.md).
pub fn plugin_configuration(config: &Config) -> Result<String> {
    let sealed =
        mcpx_filter::auth::seal_config(config, |k| std::env::var(k).ok()).map_err(|e| Error::config(e.to_string()))?;
    serde_json::to_string(&sealed)
        .map_err(|e| Error::internal(format!("cannot serialise the filter configuration: {e}")))
}

pub fn wasm_filter(config: &Config, wasm_path: &str) -> Result<Value> {
    wasm_filter_for(config, wasm_path, "mcpx")
}

/// The filter with a given root id; everything in `vm_config` is the same
/// for every root id so they all share one VM and its shared data.
pub(super) fn wasm_filter_for(config: &Config, wasm_path: &str, root_id: &str) -> Result<Value> {
    Ok(json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": root_id,
                "root_id": root_id,
                // Required to hold the headers while the body is read (Envoy 1.40: without it the
                // body callback never runs and the request hangs until `stream_idle_timeout`).
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

/// CORS runs first so an allowed preflight is answered by Envoy; the filter
/// refuses every other `Origin` with 403 (so a disallowed preflight never
/// reaches a backend).
pub fn cors_filter() -> Value {
    json!({
        "name": "envoy.filters.http.cors",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors" },
    })
}

pub fn cors_policy(config: &Config) -> Option<Value> {
    let cors = config.cors.as_ref()?;
    let origins: Vec<Value> = cors
        .allowed_origins
        .iter()
        .map(|o| {
            if o == "*" {
                json!({ "safe_regex": { "regex": ".*" } })
            } else {
                json!({ "exact": o, "ignore_case": true })
            }
        })
        .collect();
    let mut allow_headers = vec![
        "authorization",
        "content-type",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "x-request-id",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    if let Some(h) = &config.auth.header {
        allow_headers.push(h.to_ascii_lowercase());
    } else {
        allow_headers.push("x-api-key".into());
    }
    Some(json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": origins,
        "allow_methods": "GET, POST, DELETE, OPTIONS",
        "allow_headers": allow_headers.join(", "),
        "expose_headers": "mcp-session-id, mcp-protocol-version, x-request-id, www-authenticate, retry-after",
        "max_age": "600",
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;

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
    fn secrets_are_sealed_and_jwks_gets_a_verified_cluster() {
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\nauth:\n  enabled: true\n  token: top-secret-value\n");
        let text = serde_json::to_string(&b).unwrap();
        assert!(!text.contains("top-secret-value"));
        assert!(text.contains("sha256:"));
        let b = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001/mcp\nauth:\n  enabled: true\n  type: oauth\n  oauth:\n    resource: https://gw.example.com/mcp\n    jwks_uri: https://auth.example.com/.well-known/jwks.json\n    issuer: https://auth.example.com\n");
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let c = clusters.iter().find(|c| c["name"] == "mcpx_jwks").expect("a mcpx_jwks cluster");
        let tls = &c["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "auth.example.com");
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "auth.example.com"
        );
    }

    #[test]
    fn filter_order_is_cors_wasm_ratelimit_router() {
        let b = render(OPS);
        let names: Vec<&str> =
            hcm(&b)["http_filters"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.cors",
                "envoy.filters.http.wasm",
                "envoy.filters.http.local_ratelimit",
                "envoy.filters.http.router"
            ]
        );
        // Without the blocks, neither CORS nor rate limiting is rendered.
        let plain = render("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n");
        assert_eq!(hcm(&plain)["http_filters"].as_array().unwrap().len(), 2);
        assert!(hcm(&plain).get("tracing").is_none());
    }
}
