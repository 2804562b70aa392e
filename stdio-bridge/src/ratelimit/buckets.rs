//! The rate-limit buckets of a config, as descriptor keys. Envoy sends one
//! descriptor per bucket that applies to a request, charged what the filter
//! computed (`hits_addend`): one token per JSON-RPC message for the global
//! and per-client buckets, one per `tools/call` for the per-tool bucket.

use mcpx_filter::config::{Config, RateLimitConfig};
use mcpx_filter::ops;

/// The rate-limit domain Envoy sends and the service's limitador namespace.
pub const DOMAIN: &str = "mcpx";

/// One bucket kind: the descriptor key Envoy sends, the header whose value
/// is the descriptor value (`None`: the constant value `all`), and the
/// header holding the request's cost (`a?b`: header `a`, else `b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub key: &'static str,
    pub value_header: Option<&'static str>,
    pub hits_header: &'static str,
    pub rps: u32,
    pub burst: u32,
}

pub const GLOBAL_KEY: &str = "mcpx_global";
pub const GLOBAL_VALUE: &str = "all";
pub const TOOL_KEY: &str = "mcpx_tool";
pub const CLIENT_KEY: &str = "mcpx_client";

/// The configured buckets (none when rate limiting is off).
pub fn buckets(config: &Config) -> Vec<Bucket> {
    let rl: &RateLimitConfig = &config.rate_limit;
    if !rl.enabled {
        return Vec::new();
    }
    let mut out = vec![Bucket {
        key: GLOBAL_KEY,
        value_header: None,
        hits_header: ops::RATE_LIMIT_HITS_HEADER,
        rps: rl.rps,
        burst: rl.burst,
    }];
    if rl.per_tool {
        out.push(Bucket {
            key: TOOL_KEY,
            value_header: Some(ops::RATE_LIMIT_HEADER),
            // x-mcpx-tool-hits, else x-mcpx-hits: the filter sets the former
            // only when a batch's calls are fewer than its messages.
            hits_header: ops::RATE_LIMIT_TOOL_HITS_SOURCE,
            rps: rl.tool_rps,
            burst: rl.tool_burst,
        });
    }
    if rl.per_client {
        out.push(Bucket {
            key: CLIENT_KEY,
            value_header: Some(ops::RATE_LIMIT_CLIENT_HEADER),
            hits_header: ops::RATE_LIMIT_HITS_HEADER,
            rps: rl.client_rps,
            burst: rl.client_burst,
        });
    }
    out
}

/// A shared service counts in fixed windows, not token buckets: a window of
/// `ceil(burst / rps)` seconds admitting `rps` per second of it. Over any
/// window that is the bucket's long-run rate, and a full window's budget can
/// be spent at once, as a burst can; an idle bucket never holds more than
/// one window's worth.
pub fn window(rps: u32, burst: u32) -> (u64, u64) {
    let rps = u64::from(rps.max(1));
    let seconds = u64::from(burst.max(1)).div_ceil(rps).max(1);
    (rps * seconds, seconds)
}

/// The Envoy rate-limit actions (route-level `rate_limits`, or embedded in
/// the local filter): one entry per bucket, each charged its hits header.
/// An entry whose value header is absent (no tool call, say) is not sent.
pub fn actions(config: &Config) -> Vec<serde_json::Value> {
    buckets(config)
        .iter()
        .map(|b| {
            let action = match b.value_header {
                None => {
                    serde_json::json!({ "generic_key": { "descriptor_key": b.key, "descriptor_value": GLOBAL_VALUE } })
                }
                Some(h) => serde_json::json!({ "request_headers": { "header_name": h, "descriptor_key": b.key } }),
            };
            serde_json::json!({ "actions": [action], "hits_addend": { "format": format!("%REQ({})%", b.hits_header) } })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keep_the_long_run_rate_and_admit_a_burst() {
        assert_eq!(window(100, 20), (100, 1));
        assert_eq!(window(1, 5), (5, 5));
        assert_eq!(window(2, 5), (6, 3));
        assert_eq!(window(10, 10), (10, 1));
    }

    #[test]
    fn buckets_follow_the_config() {
        let c = Config::from_yaml(
            "servers: [{ name: demo, url: 'http://127.0.0.1:1/mcp' }]\n\
             rate_limit: { enabled: true, rps: 3, burst: 4, per_tool: true, per_client: true, client_rps: 2, client_burst: 2 }\n",
            mcpx_filter::config::Mode::Gateway,
        )
        .unwrap();
        let b = buckets(&c);
        let keys: Vec<_> = b.iter().map(|b| b.key).collect();
        assert_eq!(keys, [GLOBAL_KEY, TOOL_KEY, CLIENT_KEY]);
        let a = actions(&c);
        assert_eq!(a[2]["actions"][0]["request_headers"]["header_name"], "x-mcpx-client");
        assert_eq!(a[2]["hits_addend"]["format"], "%REQ(x-mcpx-hits)%");
        assert_eq!(a[1]["hits_addend"]["format"], "%REQ(x-mcpx-tool-hits?x-mcpx-hits)%");
    }
}
