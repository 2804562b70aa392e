//! Envoy's side of global rate limits: the `envoy.filters.http.ratelimit`
//! filter (after the mcpx filter, which sets the descriptor headers from the
//! parsed body), the descriptors each MCP server route sends, and the gRPC
//! cluster of the service.

use super::buckets::{self, DOMAIN};
use crate::envoy::render::socket_address;
use crate::error::{Error, Result};
use mcpx_filter::config::{Config, FailureMode, RateLimitBackend};
use serde_json::{json, Value};

/// The cluster of the rate-limit service.
pub const CLUSTER: &str = "mcpx_ratelimit";
const STATS: &str = "mcpx_rate_limit";
/// How long a request waits for the service before the failure mode applies.
/// Envoy's default (20 ms) would turn a briefly loaded service into refusals.
const TIMEOUT: &str = "1s";

/// Whether the config asks for global limits.
pub fn is_global(config: &Config) -> bool {
    config.rate_limit.enabled && config.rate_limit.backend == RateLimitBackend::Global
}

/// The HTTP filter. With `failure_mode: deny` an unanswered check is a 503
/// (details `rate_limiter_error`, which the mcpx filter envelopes); with
/// `allow` the request goes on uncounted.
pub fn filter(config: &Config) -> Value {
    let deny = config.rate_limit.failure_mode.unwrap_or_default() == FailureMode::Deny;
    json!({
        "name": "envoy.filters.http.ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
            "domain": DOMAIN,
            "stat_prefix": STATS,
            "timeout": TIMEOUT,
            "failure_mode_deny": deny,
            "status_on_error": { "code": "ServiceUnavailable" },
            // x-ratelimit-reset on a 429 becomes its Retry-After.
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "rate_limit_service": {
                "grpc_service": { "envoy_grpc": { "cluster_name": CLUSTER }, "timeout": TIMEOUT },
                "transport_api_version": "V3",
            },
        },
    })
}

/// Envoy's global rate-limit replies have no body (429 over the limit, 503
/// when the service failed under `deny`). These mappers give them a JSON
/// envelope, matched by the response flag only that filter sets (`RL`,
/// `RLSE`), so the mcpx filter's own replies are never rewritten; the mcpx
/// filter then puts the request's JSON-RPC id in it.
pub fn local_reply_mappers() -> Vec<Value> {
    let mapper = |flag: &str, code: i64, message: &str| {
        json!({
            "filter": { "response_flag_filter": { "flags": [flag] } },
            "body_format_override": { "json_format": { "jsonrpc": "2.0", "id": null,
                "error": { "code": code, "message": message, "data": { "details": "%RESPONSE_CODE_DETAILS%" } } } },
        })
    };
    vec![
        mapper(
            "RL",
            mcpx_filter::envelope::code::RATE_LIMITED,
            "rate limit exceeded; retry after the Retry-After interval",
        ),
        mapper("RLSE", mcpx_filter::envelope::code::UNAVAILABLE, "the rate-limit service is unavailable"),
    ]
}

/// The route-level `rate_limits` of an MCP server route: only those routes
/// ask the service (`/metrics` and the 404 route never do).
pub fn route_rate_limits(config: &Config) -> Value {
    Value::Array(buckets::actions(config))
}

/// The gRPC (HTTP/2) cluster of the service at `rate_limit.service`.
pub fn cluster(config: &Config) -> Result<Option<Value>> {
    if !is_global(config) {
        return Ok(None);
    }
    let service = config.rate_limit.service.as_deref().unwrap_or_default();
    let (host, port) = mcpx_filter::config::split_host_port(service)
        .ok()
        .and_then(|(h, p)| p.map(|p| (h, p)))
        .ok_or_else(|| Error::config(format!("rate_limit.service: {service:?} is not HOST:PORT")))?;
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
    Ok(Some(json!({
        "name": CLUSTER,
        "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": { "http2_protocol_options": {} },
            },
        },
        "load_assignment": {
            "cluster_name": CLUSTER,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": socket_address(&host, port) } }] }],
        },
    })))
}

#[cfg(test)]
mod tests {
    use crate::envoy::render::{bootstrap, RenderOptions};
    use mcpx_filter::config::{Config, Mode};
    use serde_json::Value;

    fn render(rl: &str) -> Value {
        let yaml = format!("servers: [{{ name: demo, url: 'http://127.0.0.1:3001/mcp' }}]\nrate_limit: {rl}\n");
        let opts = RenderOptions {
            listen: ("127.0.0.1".into(), 8080),
            admin: "127.0.0.1:9901".parse().unwrap(),
            wasm_path: "/x.wasm".into(),
            bridge: None,
            control: None,
        };
        bootstrap(&Config::from_yaml(&yaml, Mode::Gateway).unwrap(), &opts).unwrap()
    }

    fn hcm(b: &Value) -> &Value {
        &b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    }

    #[test]
    fn global_renders_the_ratelimit_filter_route_descriptors_and_grpc_cluster() {
        let b = render("{ enabled: true, rps: 2, burst: 4, per_tool: true, per_client: true, backend: global, service: 'rl.internal:8081' }");
        let filters = hcm(&b)["http_filters"].as_array().unwrap();
        let names: Vec<&str> = filters.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["envoy.filters.http.wasm", "envoy.filters.http.ratelimit", "envoy.filters.http.router"]);
        let f = &filters[1]["typed_config"];
        assert_eq!(f["failure_mode_deny"], true, "deny is the default");
        assert_eq!(f["domain"], "mcpx");
        assert_eq!(f["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"], super::CLUSTER);
        let vhost = &hcm(&b)["route_config"]["virtual_hosts"][0];
        assert!(vhost.get("typed_per_filter_config").is_none(), "no local buckets");
        let routes = vhost["routes"].as_array().unwrap();
        let demo = routes.iter().find(|r| r["match"]["path"] == "/mcp/demo").unwrap();
        let limits = demo["route"]["rate_limits"].as_array().unwrap();
        assert_eq!(limits.len(), 3);
        assert_eq!(limits[0]["hits_addend"]["format"], "%REQ(x-mcpx-hits)%");
        assert_eq!(limits[2]["actions"][0]["request_headers"]["descriptor_key"], "mcpx_client");
        // /metrics and the 404 route never ask the service.
        assert!(routes
            .iter()
            .filter(|r| r["match"]["path"] != "/mcp/demo")
            .all(|r| r["route"].get("rate_limits").is_none() && r.get("typed_per_filter_config").is_none()));
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let c = clusters.iter().find(|c| c["name"] == super::CLUSTER).unwrap();
        assert_eq!(c["type"], "STRICT_DNS");
        assert_eq!(
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            8081
        );
        assert!(c["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
            ["explicit_http_config"]["http2_protocol_options"]
            .is_object());
    }

    #[test]
    fn failure_mode_allow_and_local_default() {
        let b = render("{ enabled: true, backend: global, service: '127.0.0.1:8081', failure_mode: allow }");
        assert_eq!(hcm(&b)["http_filters"][1]["typed_config"]["failure_mode_deny"], false);
        let local = render("{ enabled: true }");
        assert_eq!(hcm(&local)["http_filters"][1]["name"], "envoy.filters.http.local_ratelimit");
        let clusters = local["static_resources"]["clusters"].as_array().unwrap();
        assert!(clusters.iter().all(|c| c["name"] != super::CLUSTER));
    }
}
