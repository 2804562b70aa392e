//! Local rate limiting (`rate_limit`, the default backend): Envoy's
//! `local_ratelimit` filter and the virtual host's buckets, charged from the
//! headers the filter sets. The global backend is `crate::ratelimit`.

use crate::ratelimit::buckets;
use crate::ratelimit::render as global_rl;
use mcpx_filter::config::Config;
use mcpx_filter::names;
use mcpx_filter::ops;
use serde_json::{json, Value};

const RATE_LIMIT_STATS: &str = "mcpx_rate_limit";

pub(super) fn percent(p: f64) -> Value {
    json!({ "numerator": p.round() as u64, "denominator": "HUNDRED" })
}

/// A token bucket of `burst` tokens refilled at `rps` per second.
pub(super) fn token_bucket(rps: u32, burst: u32) -> Value {
    json!({ "max_tokens": burst, "tokens_per_fill": rps, "fill_interval": "1s" })
}

/// The HCM local rate limit filter: without a bucket of its own it passes
/// everything; the virtual host's policy ([`rate_limit_policy`]) limits.
pub fn local_rate_limit_filter() -> Value {
    json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": RATE_LIMIT_STATS,
        },
    })
}

/// The rate limit policy of the virtual host (one bucket set shared by all
/// routes and all worker threads). The global bucket (`rps`, `burst`) is a
/// descriptor charged `x-mcpx-hits` tokens (Envoy `hits_addend`): one per
/// JSON-RPC message, so a batch of N costs what N single requests cost. With
/// `per_tool`, one bucket per (server, tool), keyed on the `x-mcpx-tool:
/// server/tool` header and charged `x-mcpx-tool-hits` tokens (one per call).
/// The filter sets all three from the parsed body (clients' copies are
/// removed on entry). Requests the filter set no cost on (not MCP) fall to
/// the default bucket, of the same size.
pub fn rate_limit_policy(config: &Config) -> Option<Value> {
    let rl = &config.rate_limit;
    if !rl.enabled || global_rl::is_global(config) {
        return None;
    }
    let mut policy = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": RATE_LIMIT_STATS,
        "token_bucket": token_bucket(rl.rps, rl.burst),
        "filter_enabled": { "default_value": percent(100.0) },
        "filter_enforced": { "default_value": percent(100.0) },
        // MCP requests are charged through the global descriptor below.
        "always_consume_default_token_bucket": false,
    });
    // Wildcard value: one bucket per tool key / client key.
    let descriptors: Vec<Value> = buckets::buckets(config)
        .iter()
        .map(|b| {
            let value = if b.value_header.is_some() { "" } else { buckets::GLOBAL_VALUE };
            json!({ "entries": [{ "key": b.key, "value": value }], "token_bucket": token_bucket(b.rps, b.burst) })
        })
        .collect();
    policy["rate_limits"] = Value::Array(buckets::actions(config));
    policy["descriptors"] = Value::Array(descriptors);
    if rl.per_tool || rl.per_client {
        // Per-client buckets: one per identity (evicting one would refill
        // it), in whole blocks like the tool buckets.
        let clients = if rl.per_client {
            config.auth.clients.len().div_ceil(TOOL_BUCKET_BLOCK).max(1) * TOOL_BUCKET_BLOCK
        } else {
            0
        };
        policy["max_dynamic_descriptors"] = json!(max_tool_buckets(config) + clients);
    }
    Some(policy)
}

/// Enough dynamic buckets that the LRU never evicts (an evicted bucket comes
/// back full: a reset). Per server the filter emits at most: one key per
/// configured tool name (the server's own lists and rules and every client
/// override for it, after label sanitising), one per learned tool
/// (`MAX_LEARNED_TOOLS`), and `server/_other`.
///
/// The configured part is rounded up to whole blocks of
/// [`TOOL_BUCKET_BLOCK`] so that editing an allow or deny list leaves the
/// route configuration, and with it every bucket, untouched: Envoy rebuilds
/// all buckets full whenever the route configuration changes.
pub fn max_tool_buckets(config: &Config) -> usize {
    let configured: usize = config.servers.iter().map(|s| configured_tool_labels(config, &s.name).len()).sum();
    config.servers.len() * (ops::MAX_LEARNED_TOOLS + 1)
        + configured.div_ceil(TOOL_BUCKET_BLOCK).max(1) * TOOL_BUCKET_BLOCK
}

/// See [`max_tool_buckets`]. The LRU's memory grows with the keys in use,
/// not with its cap, so headroom costs nothing.
pub const TOOL_BUCKET_BLOCK: usize = 1024;

/// The distinct rate-limit labels of the tool names the config names for
/// `server` (the names `ops::is_configured_tool` accepts).
fn configured_tool_labels(config: &Config, server: &str) -> std::collections::BTreeSet<String> {
    let names = |p: &mcpx_filter::config::PolicyConfig| -> Vec<String> {
        p.allow_tools.iter().chain(&p.deny_tools).chain(p.tool_rules.keys()).map(|t| names::label(t)).collect()
    };
    let own = config.server(server).map(|s| names(&s.policy)).unwrap_or_default();
    let overrides = config.clients.values().filter_map(|c| c.servers.get(server)).flat_map(names);
    own.into_iter().chain(overrides).collect()
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn rate_limits_are_global_plus_per_tool_wildcard() {
        let b = render(OPS);
        let rl = &hcm(&b)["route_config"]["virtual_hosts"][0]["typed_per_filter_config"]
            ["envoy.filters.http.local_ratelimit"];
        assert_eq!(rl["token_bucket"], json!({"max_tokens": 9, "tokens_per_fill": 7, "fill_interval": "1s"}));
        assert_eq!(rl["always_consume_default_token_bucket"], false);
        // The global bucket is a descriptor charged one token per message.
        assert_eq!(rl["rate_limits"][0]["actions"][0]["generic_key"]["descriptor_key"], "mcpx_global");
        assert_eq!(rl["rate_limits"][0]["hits_addend"]["format"], "%REQ(x-mcpx-hits)%");
        assert_eq!(
            rl["descriptors"][0]["token_bucket"],
            json!({"max_tokens": 9, "tokens_per_fill": 7, "fill_interval": "1s"})
        );
        // Per tool: one wildcard bucket per tool, charged one token per call.
        assert_eq!(rl["rate_limits"][1]["actions"][0]["request_headers"]["header_name"], "x-mcpx-tool");
        assert_eq!(rl["rate_limits"][1]["hits_addend"]["format"], "%REQ(x-mcpx-tool-hits)%");
        assert_eq!(rl["descriptors"][1]["entries"][0]["value"], "");
        assert_eq!(rl["descriptors"][1]["token_bucket"]["max_tokens"], 3);
        assert!(rl["max_dynamic_descriptors"].as_u64().unwrap() > ops::MAX_LEARNED_TOOLS as u64);
    }

    /// The keys the filter can emit for `server`: what `ops::tool_label`
    /// gives every configured name, every learned name and any other name.
    fn possible_keys(config: &Config, server: &str, learned: &[String]) -> std::collections::BTreeSet<String> {
        let mut names: Vec<String> = learned.to_vec();
        let s = config.server(server).unwrap();
        let policies = std::iter::once(&s.policy).chain(config.clients.values().filter_map(|c| c.servers.get(server)));
        for p in policies {
            names.extend(p.allow_tools.iter().chain(&p.deny_tools).chain(p.tool_rules.keys()).cloned());
        }
        names.push("a-tool-nobody-named".into());
        names
            .iter()
            .map(|n| {
                let known = ops::is_configured_tool(config, server, n) || learned.contains(n);
                ops::rate_limit_key(server, &ops::tool_label(n, known))
            })
            .collect()
    }

    #[test]
    fn tool_bucket_cap_counts_every_key_including_client_overrides() {
        // 3 server-configured names and 2 more named only by client overrides.
        let yaml =
            "servers:\n  - name: a\n    url: http://h:1\n    policy: { allow_tools: [t1, t2], deny_tools: [t3] }\n\
            clients:\n  bot:\n    servers:\n      a: { allow_tools: [t1, c1], deny_tools: [c2] }\n\
            rate_limit: { enabled: true, per_tool: true }\n";
        let config = Config::from_yaml(yaml, Mode::Gateway).unwrap();
        assert_eq!(configured_tool_labels(&config, "a").len(), 5);
        let learned: Vec<String> = (0..ops::MAX_LEARNED_TOOLS).map(|i| format!("learned{i}")).collect();
        let keys = possible_keys(&config, "a", &learned);
        assert_eq!(keys.len(), ops::MAX_LEARNED_TOOLS + 5 + 1, "learned + configured + _other");
        assert!(max_tool_buckets(&config) >= keys.len());
        // Past a whole block of configured names the cap still covers them all.
        let many: Vec<String> = (0..TOOL_BUCKET_BLOCK + 3).map(|i| format!("d{i}")).collect();
        let yaml = format!(
            "servers:\n  - name: a\n    url: http://h:1\n    policy: {{ deny_tools: [{}] }}\n\
             clients:\n  bot:\n    servers:\n      a: {{ allow_tools: [x1, x2] }}\n",
            many.join(", ")
        );
        let config = Config::from_yaml(&yaml, Mode::Gateway).unwrap();
        let keys = possible_keys(&config, "a", &learned);
        assert_eq!(keys.len(), ops::MAX_LEARNED_TOOLS + TOOL_BUCKET_BLOCK + 3 + 2 + 1);
        assert!(max_tool_buckets(&config) >= keys.len(), "{} < {}", max_tool_buckets(&config), keys.len());
    }

    #[test]
    fn the_renderer_and_the_filter_label_a_tool_alike() {
        // Long, dotted and non-ASCII names: the renderer's bucket count and the
        // filter's labels (metrics, rate-limit key) must be the same strings.
        let long = "t".repeat(100);
        let odd = ["a.b/c", "é-tool", long.as_str(), &format!("{long}x")];
        let yaml = format!(
            "servers:\n  - name: a\n    url: http://h:1\n    policy: {{ allow_tools: [{}] }}\n",
            odd.map(|n| format!("{n:?}")).join(", ")
        );
        let config = Config::from_yaml(&yaml, Mode::Gateway).unwrap();
        let filter: std::collections::BTreeSet<String> = odd
            .iter()
            .map(|n| {
                assert!(ops::is_configured_tool(&config, "a", n));
                ops::tool_label(n, true)
            })
            .collect();
        assert_eq!(configured_tool_labels(&config, "a"), filter);
        assert_eq!(filter.len(), 3, "the two names that share their first 64 characters share a label");
        assert!(filter.iter().all(|l| l.len() <= names::MAX_LABEL_CHARS));
    }
}
