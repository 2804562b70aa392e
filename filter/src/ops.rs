//! Operations support that needs MCP awareness, free of proxy-wasm calls:
//! the Origin rule (DNS-rebinding defence; applied by `Gateway::admit`), bounded
//! metric / rate-limit labels, the JSON envelope for replies Envoy makes
//! itself (429 from local rate limiting, 503 from an open circuit), and the
//! breaker series derived from Envoy's own outlier-detection stats.
//!
//! Envoy does the rate limiting, circuit breaking, stats, CORS and access
//! logging; this module only supplies what those need from the filter.

use crate::config::Config;
use crate::envelope::{code, Reply, ReplyTo};
use crate::request::{Decision, RequestHead};

use crate::names::label;
// Defined with the other names the renderer shares; re-exported here so
// existing paths keep working (`sanitize` is `names::label`).
pub use crate::names::{
    label as sanitize, CLUSTER_PREFIX, METRICS_PATH, OTHER, RATE_LIMIT_HEADER, RATE_LIMIT_HITS_HEADER,
    RATE_LIMIT_TOOL_HITS_HEADER, RATE_LIMIT_TOOL_HITS_SOURCE,
};

/// The internal request header carrying the per-client rate-limit key
/// (the caller's identity, `%XX`-encoded, or `anonymous` without auth).
pub const RATE_LIMIT_CLIENT_HEADER: &str = "x-mcpx-client";

/// The per-client rate-limit key of a caller. Unlike the metric label this is
/// the identity itself (an OAuth subject too): a bucket per caller is the point.
pub fn rate_limit_client_key(identity: Option<&str>) -> String {
    identity.map_or_else(|| "anonymous".to_string(), crate::request::encode_identity)
}

/// At most this many tools per server are learned from `tools/list`
/// answers; the rest share the `_other` label and bucket.
pub const MAX_LEARNED_TOOLS: usize = 256;

/// Whether a browser `Origin` may use the gateway: it is listed in
/// `cors.allowed_origins` (no `cors:` block lists none), or it is the
/// gateway's own origin *on a loopback name* (`localhost`, `127.0.0.1`,
/// `[::1]`; Origin authority equal to the request's Host), which is what
/// MCP's DNS-rebinding rules accept for local servers.
///
/// There is deliberately no general "same origin" exemption: under DNS
/// rebinding the attacker's page *is* same-origin with the name it rebinds
/// (Origin `http://evil.example:8080`, Host `evil.example:8080`). The browser
/// sets Host from the page's URL, so a rebinding page can never present a
/// loopback Host.
pub fn origin_allowed(config: &Config, origin: &str, host: Option<&str>) -> bool {
    let origin = origin.trim();
    if let Some(cors) = &config.cors {
        if cors.allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin)) {
            return true;
        }
    }
    let Some(authority) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else {
        return false;
    };
    let Some(host) = host.map(str::trim) else { return false };
    authority.eq_ignore_ascii_case(host) && is_loopback_authority(authority)
}

fn is_loopback_authority(authority: &str) -> bool {
    let Ok((name, _)) = crate::config::split_host_port(authority) else { return false };
    // A bracketed IPv6 literal comes back without brackets.
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "::1"
}

/// 403 for a request whose `Origin` header is not allowed; `None` for
/// requests without `Origin` (non-browser clients) or with an allowed one.
pub fn check_origin(config: &Config, head: &RequestHead<'_>) -> Option<Reply> {
    let origin = head.get("origin")?;
    let host = head.get(":authority").or_else(|| head.get("host"));
    if origin_allowed(config, origin, host) {
        return None;
    }
    let msg = format!(
        "Origin {origin:?} is not allowed (DNS-rebinding defence); add it to cors.allowed_origins to let a browser app use this gateway"
    );
    Some(Reply::error(403, code::FORBIDDEN, &msg, &ReplyTo::Http))
}

/// Whether the config names `tool` for `server` (allow and deny lists,
/// argument rules, client overrides): such tools are always labelled.
pub fn is_configured_tool(config: &Config, server: &str, tool: &str) -> bool {
    let names = |p: &crate::config::PolicyConfig| {
        p.allow_tools.iter().any(|t| t == tool)
            || p.deny_tools.iter().any(|t| t == tool)
            || p.tool_rules.contains_key(tool)
    };
    config.server(server).is_some_and(|s| names(&s.policy))
        || config.clients.values().any(|c| c.servers.get(server).is_some_and(names))
}

/// The bounded label of a tool: its sanitised name when `known`, else `_other`.
pub fn tool_label(tool: &str, known: bool) -> String {
    if known {
        label(tool)
    } else {
        OTHER.to_string()
    }
}

/// The per-tool rate-limit key for the internal header: `server/tool`.
pub fn rate_limit_key(server: &str, tool_label: &str) -> String {
    format!("{server}/{tool_label}")
}

/// The value of `x-mcpx-tool-hits`, or `None` when the header is not needed:
/// Envoy charges the tool bucket from `x-mcpx-hits` when it is absent
/// ([`RATE_LIMIT_TOOL_HITS_SOURCE`]), so it is set only when the two costs
/// differ (a batch with messages other than its calls). `hits` is the value
/// sent in `x-mcpx-hits`.
pub fn tool_hits_header(hits: u32, tool_hits: u32) -> Option<String> {
    (tool_hits != hits).then(|| tool_hits.to_string())
}

/// MCP methods that get their own label; anything else is `other`.
pub(crate) const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "batch",
    "response",
    "GET",
    "DELETE",
];

/// The bounded metric label of a JSON-RPC method (`/` becomes `_` because
/// Envoy stat names cannot carry it reliably: `tools/call` -> `tools_call`).
pub fn method_label(method: Option<&str>) -> String {
    match method {
        Some(m) if KNOWN_METHODS.contains(&m) => m.replace('/', "_"),
        Some(_) => "other".to_string(),
        None => "none".to_string(),
    }
}

/// The bounded metric label of a caller: a configured client name, `default`
/// for the single anonymous token, `anonymous` without auth, `_other` for
/// identities the config does not list (e.g. OAuth subjects).
pub fn client_label(config: &Config, identity: Option<&str>) -> String {
    match identity {
        None => "anonymous".to_string(),
        Some(id) if id == "default" || config.auth.clients.iter().any(|c| c.name == id) => label(id),
        Some(_) => OTHER.to_string(),
    }
}

/// What the filter makes of a reply Envoy generated after the filter let the
/// request through (local rate limit, open circuit, overflow, connect
/// failure, timeout): the JSON envelope, the audit decision and reason.
#[derive(Debug, PartialEq)]
pub struct EnvoyReply {
    pub reply: Reply,
    pub decision: Decision,
    pub reason: String,
}

/// `details` is Envoy's `response.code_details` (e.g. `local_rate_limited`,
/// `no_healthy_upstream`); `via_upstream` means the backend answered.
pub fn is_envoy_reply(details: &str) -> bool {
    !details.is_empty() && details != "via_upstream"
}

/// Builds the envelope for an Envoy-made reply with the request's JSON-RPC id.
pub fn envoy_reply(status: u16, details: &str, to: &ReplyTo, cooldown_secs: u64) -> EnvoyReply {
    let data = serde_json::json!({ "details": details });
    if status == 429 || details == "local_rate_limited" {
        // Buckets refill at least one token per second (rps >= 1).
        let reply = Reply::error_with_data(
            429,
            code::RATE_LIMITED,
            "rate limit exceeded; retry after the Retry-After interval",
            Some(data),
            to,
        )
        .with_header("retry-after", "1");
        return EnvoyReply { reply, decision: Decision::RateLimited, reason: "rate_limited".into() };
    }
    let (message, reason, retry) = match details {
        "no_healthy_upstream" => (
            "the backend is failing and its circuit breaker is open; retry later".to_string(),
            "circuit_open",
            Some(cooldown_secs.max(1)),
        ),
        // Envoy's global rate-limit filter with `failure_mode: deny` (the
        // service or its store did not answer): refused, fail closed.
        "rate_limiter_error" => (
            "the rate-limit service is unavailable and rate_limit.failure_mode is deny; retry later".to_string(),
            "ratelimit_unavailable",
            Some(1),
        ),
        d if d.contains("overflow") => {
            ("the backend has too many requests in flight; retry later".to_string(), "overflow", Some(1))
        }
        d if d.contains("timeout") => ("the backend did not answer in time".to_string(), "upstream_timeout", None),
        _ => ("the backend is unavailable".to_string(), "upstream_unavailable", None),
    };
    let mut reply = Reply::error_with_data(status, code::UNAVAILABLE, &message, Some(data), to);
    if let Some(secs) = retry {
        reply = reply.with_header("retry-after", secs.to_string());
    }
    EnvoyReply { reply, decision: Decision::Error, reason: reason.into() }
}

/// A `Retry-After` from Envoy's `x-ratelimit-reset` (seconds until the
/// window resets): at least 1, bounded, digits only.
pub fn retry_after(reset: &str) -> Option<String> {
    reset.trim().parse::<u64>().ok().map(|s| s.clamp(1, 86_400).to_string())
}

/// Appends `mcpx_breaker_state{server}` (1 = open, 0 = closed) and
/// `mcpx_breaker_trips_total{server}` to Envoy's Prometheus text, derived from
/// its outlier-detection stats (`ejections_active`, `ejections_enforced_total`)
/// of each server's cluster: Envoy owns the breaker, so its stats are the truth.
pub fn breaker_series(prometheus: &str, servers: &[&str]) -> String {
    let value = |metric: &str, server: &str| -> Option<f64> {
        let needle = format!("{metric}{{envoy_cluster_name=\"{CLUSTER_PREFIX}{server}\"}} ");
        prometheus.lines().find_map(|l| l.strip_prefix(&needle)).and_then(|v| v.trim().parse().ok())
    };
    let mut state = String::from("# TYPE mcpx_breaker_state gauge\n");
    let mut trips = String::from("# TYPE mcpx_breaker_trips_total counter\n");
    for s in servers {
        let active = value("envoy_cluster_outlier_detection_ejections_active", s).unwrap_or(0.0);
        let total = value("envoy_cluster_outlier_detection_ejections_enforced_total", s).unwrap_or(0.0);
        state.push_str(&format!("mcpx_breaker_state{{server=\"{s}\"}} {}\n", u8::from(active > 0.0)));
        trips.push_str(&format!("mcpx_breaker_trips_total{{server=\"{s}\"}} {total}\n"));
    }
    state + &trips
}

/// Integrity violation kinds, as audit and metric words.
pub const INTEGRITY_KINDS: &[&str] = &["rug_pull", "shadowing", "malformed", "overflow"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    #[test]
    fn the_tool_cost_header_is_set_only_when_it_differs_from_the_global_cost() {
        assert_eq!(tool_hits_header(1, 1), None, "a single call: Envoy reads x-mcpx-hits");
        assert_eq!(tool_hits_header(5, 5), None, "a batch of calls only");
        assert_eq!(tool_hits_header(3, 1).as_deref(), Some("1"), "a batch with other messages");
        assert_eq!(tool_hits_header(200, 0).as_deref(), Some("0"));
    }

    fn config(extra: &str) -> Config {
        let text = format!(
            "servers:\n  - name: demo\n    policy:\n      allow_tools: [echo]\n      deny_tools: [dangerous_delete]\nclients:\n  bot:\n    servers:\n      demo: {{ allow_tools: [read_file] }}\n{extra}"
        );
        Config::from_yaml(&text, Mode::Plugin).unwrap()
    }

    fn head(h: &[(&str, &str)]) -> Vec<(String, String)> {
        h.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn no_cors_block_refuses_cross_origin_requests() {
        let c = config("");
        let h = head(&[(":method", "POST"), (":path", "/mcp/demo"), ("origin", "http://app.example.com")]);
        let r = check_origin(&c, &RequestHead { headers: &h }).unwrap();
        assert_eq!(r.status, 403);
        assert!(r.body.contains("cors.allowed_origins"));
        // Non-browser clients send no Origin and are not affected.
        let h = head(&[(":method", "POST"), (":path", "/mcp/demo")]);
        assert!(check_origin(&c, &RequestHead { headers: &h }).is_none());
    }

    #[test]
    fn only_loopback_same_origin_is_implicitly_allowed() {
        let c = config("");
        let ok = |origin: &str, host: &str| origin_allowed(&c, origin, Some(host));
        assert!(ok("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(ok("http://localhost:8080", "LOCALHOST:8080"));
        assert!(ok("http://[::1]:8080", "[::1]:8080"));
        // DNS rebinding: Origin equals Host, but the name is the attacker's.
        assert!(!ok("http://evil.example:8080", "evil.example:8080"));
        assert!(!ok("http://localhost.evil.example:8080", "localhost.evil.example:8080"));
        // Another local app (other port), or a loopback Origin with a foreign Host.
        assert!(!ok("http://localhost:3000", "localhost:8080"));
        assert!(!ok("http://localhost:8080", "evil.example:8080"));
        assert!(!ok("null", "localhost:8080"));
        assert!(!origin_allowed(&c, "http://localhost:8080", None));
    }

    #[test]
    fn only_listed_origins_pass() {
        let c = config("cors: { allowed_origins: [\"https://app.example.com\"] }\n");
        let ok = |origin: &str| origin_allowed(&c, origin, Some("gw.example.com"));
        assert!(ok("https://app.example.com"));
        assert!(ok("HTTPS://APP.example.com"));
        for bad in ["https://app.example.com.evil.io", "http://app.example.com", "null", "", "https://evil.io"] {
            assert!(!ok(bad), "{bad}");
        }
        let star = config("cors: { allowed_origins: [\"*\"] }\n");
        assert!(origin_allowed(&star, "https://anything.example", None));
    }

    #[test]
    fn labels_are_bounded() {
        let c = config("");
        for t in ["dangerous_delete", "echo", "read_file"] {
            assert!(is_configured_tool(&c, "demo", t), "{t}");
        }
        assert!(!is_configured_tool(&c, "demo", "slow"));
        assert!(!is_configured_tool(&c, "nope", "echo"));
        assert_eq!(tool_label("echo", true), "echo");
        assert_eq!(tool_label("made.up", false), OTHER);
        assert_eq!(sanitize("a.b/c d"), "a_b_c_d");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 64);
        assert_eq!(method_label(Some("tools/call")), "tools_call");
        assert_eq!(method_label(Some("evil.method")), "other");
        assert_eq!(client_label(&c, None), "anonymous");
        assert_eq!(client_label(&c, Some("someone.random")), OTHER);
        assert_eq!(rate_limit_key("demo", "echo"), "demo/echo");
    }

    #[test]
    fn envoy_replies_get_the_envelope_with_the_id() {
        let to = ReplyTo::JsonRpc(serde_json::json!(7));
        let r = envoy_reply(503, "rate_limiter_error", &to, 30);
        assert_eq!((r.reply.status, r.decision, r.reason.as_str()), (503, Decision::Error, "ratelimit_unavailable"));
        assert!(r.reply.headers.iter().any(|(k, v)| k == "retry-after" && v == "1"));
        assert_eq!(rate_limit_client_key(None), "anonymous");
        assert_eq!(retry_after("0").as_deref(), Some("1"));
        assert_eq!(retry_after(" 7").as_deref(), Some("7"));
        assert_eq!(retry_after("x"), None);
        assert_eq!(rate_limit_client_key(Some("a b")), "a%20b");
        let r = envoy_reply(429, "local_rate_limited", &to, 30);
        assert_eq!((r.reply.status, r.decision), (429, Decision::RateLimited));
        let v: serde_json::Value = serde_json::from_str(&r.reply.body).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], code::RATE_LIMITED);
        assert!(r.reply.headers.contains(&("retry-after".to_string(), "1".to_string())));
        let r = envoy_reply(503, "no_healthy_upstream", &to, 30);
        assert_eq!((r.reply.status, r.decision, r.reason.as_str()), (503, Decision::Error, "circuit_open"));
        assert!(r.reply.headers.contains(&("retry-after".to_string(), "30".to_string())));
        assert!(!is_envoy_reply("via_upstream"));
        assert!(is_envoy_reply("no_healthy_upstream"));
    }

    #[test]
    fn breaker_series_come_from_envoy_stats() {
        let prom = "envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name=\"mcpx_server_demo\"} 1\n\
                    envoy_cluster_outlier_detection_ejections_enforced_total{envoy_cluster_name=\"mcpx_server_demo\"} 3\n\
                    envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name=\"mcpx_server_other\"} 0\n";
        let out = breaker_series(prom, &["demo", "other", "missing"]);
        assert!(out.contains("mcpx_breaker_state{server=\"demo\"} 1\n"), "{out}");
        assert!(out.contains("mcpx_breaker_trips_total{server=\"demo\"} 3\n"), "{out}");
        assert!(out.contains("mcpx_breaker_state{server=\"other\"} 0\n"), "{out}");
        assert!(out.contains("mcpx_breaker_state{server=\"missing\"} 0\n"), "{out}");
    }
}
