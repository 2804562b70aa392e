//! The Envoy names the filter and the `mcpx` renderer must spell the same
//! way: cluster names, internal request headers, the filter-state attributes
//! the access log reads, metric names and their label rule. One definition
//! each; the renderer imports them from here (it depends on this crate).

/// Every MCP server is one Envoy cluster named `mcpx_server_{name}`: the
/// route sends to it, the filter's `/health` probes call it (the filter may
/// call only clusters that exist), and `/metrics` reads its outlier stats.
pub const CLUSTER_PREFIX: &str = "mcpx_server_";

/// The Envoy cluster of a server.
pub fn cluster_name(server: &str) -> String {
    format!("{CLUSTER_PREFIX}{server}")
}

/// Request headers whose names start with this are the filter's own; a client
/// copy is removed on entry and ours are removed before forwarding.
pub const INTERNAL_HEADER_PREFIX: &str = "x-mcpx-";

/// The internal request header carrying the per-tool rate-limit key
/// `server/tool` (one header, so one descriptor and one route re-match).
pub const RATE_LIMIT_HEADER: &str = "x-mcpx-tool";

/// The internal request header carrying how many tokens the request costs
/// in the global bucket (one per JSON-RPC message; Envoy's `hits_addend`).
pub const RATE_LIMIT_HITS_HEADER: &str = "x-mcpx-hits";

/// The internal request header carrying how many tokens the request costs
/// in its tool's bucket (one per `tools/call`), set only when that differs
/// from [`RATE_LIMIT_HITS_HEADER`] (a batch with other messages than calls).
pub const RATE_LIMIT_TOOL_HITS_HEADER: &str = "x-mcpx-tool-hits";

/// Where Envoy reads the tool bucket's cost (`%REQ(...)%` of its
/// `hits_addend`): `x-mcpx-tool-hits`, else `x-mcpx-hits` (Envoy's `?`
/// fallback). A single call costs one token in both buckets, so one header
/// (one host call fewer) serves both.
pub const RATE_LIMIT_TOOL_HITS_SOURCE: &str = "x-mcpx-tool-hits?x-mcpx-hits";

/// The caller's identity, set by the filter on requests to stdio servers so
/// the bridge can keep one identity's session state (tasks) from another's on
/// a shared child. Never taken from the client: every `x-mcpx-*` header a
/// client sends is removed on entry; HTTP backends never get it.
pub const IDENTITY_HEADER: &str = "x-mcpx-identity";

/// The internal headers the filter sets for Envoy (rate-limit descriptors,
/// routing). Rendered routes remove them before forwarding.
pub const INTERNAL_HEADERS: &[&str] = &[
    "x-mcpx-server",
    "x-mcpx-method",
    RATE_LIMIT_HEADER,
    "x-mcpx-client",
    RATE_LIMIT_HITS_HEADER,
    RATE_LIMIT_TOOL_HITS_HEADER,
];

/// The Prometheus endpoint on the main listener (routed to Envoy admin's
/// `/stats/prometheus` and nothing else).
pub const METRICS_PATH: &str = "/metrics";

/// The filter-state attributes the filter sets per request (as Envoy
/// properties, read by the access log as `wasm.<name>`): the audit line,
/// the integrity event and the trace tags are built from them.
pub mod attr {
    pub const SERVER: &str = "mcp_server";
    pub const METHOD: &str = "mcp_method";
    pub const TOOL: &str = "mcp_tool";
    pub const CLIENT: &str = "mcp_client";
    pub const DECISION: &str = "mcp_decision";
    pub const REASON: &str = "mcp_reason";
    pub const INTEGRITY: &str = "mcp_integrity";
    pub const INTEGRITY_ACTION: &str = "mcp_integrity_action";

    /// Every attribute above.
    pub const ALL: &[&str] = &[SERVER, METHOD, TOOL, CLIENT, DECISION, REASON, INTEGRITY, INTEGRITY_ACTION];

    /// How Envoy's access log and CEL name an attribute the filter set.
    pub fn filter_state_key(name: &str) -> String {
        format!("wasm.{name}")
    }
}

/// Label used for a tool the gateway does not know, so a client can never
/// mint new metric series or rate-limit buckets by inventing tool names.
pub const OTHER: &str = "_other";

/// The longest label, in characters (each one ASCII after [`label`]).
pub const MAX_LABEL_CHARS: usize = 64;

/// The one label-safe form of a name, for metric labels, rate-limit keys and
/// audit notes alike, so one tool never gets two labels. Envoy stat names
/// are split on `.`, so only `[A-Za-z0-9_-]` survive (others become `_`);
/// the first [`MAX_LABEL_CHARS`] characters are kept, so a label is at most
/// 64 bytes however long the name.
pub fn label(name: &str) -> String {
    name.chars()
        .take(MAX_LABEL_CHARS)
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect()
}

/// The filter's metric names all start with this; the renderer's
/// `stats_tags` match it.
pub const METRIC_PREFIX: &str = "mcpx_";

/// Label names of the filter's `mcpx_*` series: each `.key.value` pair of a
/// stat name becomes `key="value"` through the rendered `stats_tags`.
pub const METRIC_LABELS: &[&str] = &["server", "method", "status_code", "tool", "decision", "client", "kind"];

/// The metric names the filter defines (label-less ones whole; the others
/// are followed by `.key.value` pairs from [`METRIC_LABELS`]).
pub mod metric {
    pub const AUTH_FAILURES: &str = "mcpx_auth_failures_total";
    pub const RATE_LIMIT_HITS: &str = "mcpx_rate_limit_hits_total";
    pub const REQUESTS: &str = "mcpx_requests_total";
    pub const REQUEST_DURATION_MS: &str = "mcpx_request_duration_ms";
    pub const TOOL_CALLS: &str = "mcpx_tool_calls_total";
    pub const INTEGRITY_VIOLATIONS: &str = "mcpx_integrity_violations_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_safe_and_bounded() {
        assert_eq!(label("echo"), "echo");
        assert_eq!(label("a.b/c d"), "a_b_c_d");
        assert_eq!(label("é"), "_", "one character, one underscore");
        let long = "x".repeat(100);
        assert_eq!(label(&long).len(), MAX_LABEL_CHARS);
        assert_eq!(label(&"é".repeat(100)).len(), MAX_LABEL_CHARS, "bytes bounded too");
    }

    #[test]
    fn internal_names_share_the_prefix_and_clusters_the_prefix() {
        for h in INTERNAL_HEADERS.iter().chain([&IDENTITY_HEADER]) {
            assert!(h.starts_with(INTERNAL_HEADER_PREFIX), "{h}: client copies must be stripped on entry");
        }
        assert_eq!(cluster_name("demo"), "mcpx_server_demo");
        for m in [
            metric::AUTH_FAILURES,
            metric::RATE_LIMIT_HITS,
            metric::REQUESTS,
            metric::REQUEST_DURATION_MS,
            metric::TOOL_CALLS,
            metric::INTEGRITY_VIOLATIONS,
        ] {
            assert!(m.starts_with(METRIC_PREFIX) && !m.contains('.'), "{m}");
        }
        assert!(attr::ALL.iter().all(|a| a.starts_with("mcp_")));
        assert_eq!(
            RATE_LIMIT_TOOL_HITS_SOURCE,
            format!("{RATE_LIMIT_TOOL_HITS_HEADER}?{RATE_LIMIT_HITS_HEADER}"),
            "the tool bucket falls back to the global cost header"
        );
    }
}
