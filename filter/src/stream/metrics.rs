//! Filter-defined Prometheus series (docs/operations.md). Envoy files them
//! as `wasmcustom.<name>`; the rendered `stats_tags` turn the `.key.value`
//! pairs into labels, so
//! `mcpx_tool_calls_total.server.demo.tool.echo.decision.allow.client.anonymous`
//! is served as `mcpx_tool_calls_total{server="demo",tool="echo",...}`.
//!
//! Every label value is bounded (configured servers, known tools, fixed
//! method/decision words, configured clients) and sanitised: each distinct
//! name is a permanent Envoy stat. The host keeps the metric ids.

use super::Host;
use crate::names::metric::{
    AUTH_FAILURES, INTEGRITY_VIOLATIONS, RATE_LIMIT_HITS, REQUESTS, REQUEST_DURATION_MS, TOOL_CALLS,
};
use crate::request::{Attributes, Decision};

/// The label-less counters, defined when the plugin is configured so they
/// are served (as 0) before any hit.
pub const STATIC_COUNTERS: [&str; 2] = [AUTH_FAILURES, RATE_LIMIT_HITS];

/// The already-bounded labels of one finished MCP request.
pub struct RequestLabels<'a> {
    pub server: &'a str,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    pub client: &'a str,
}

/// Counts one finished MCP request (called from `on_log`).
pub fn request<H: Host>(host: &mut H, labels: &RequestLabels<'_>, attrs: &Attributes, status: u64, duration_ms: u64) {
    let RequestLabels { server, method, tool, client } = labels;
    host.add_counter(&format!("{REQUESTS}.server.{server}.method.{method}.status_code.{status}"), 1);
    host.record_histogram(&format!("{REQUEST_DURATION_MS}.server.{server}"), duration_ms);
    let decision = attrs.decision.map_or("none", Decision::as_str);
    if let Some(tool) = tool {
        host.add_counter(&format!("{TOOL_CALLS}.server.{server}.tool.{tool}.decision.{decision}.client.{client}"), 1);
    }
    match attrs.decision {
        Some(Decision::AuthFailed) => host.add_counter(AUTH_FAILURES, 1),
        Some(Decision::RateLimited) => host.add_counter(RATE_LIMIT_HITS, 1),
        _ => {}
    }
}

/// Counts `n` integrity violations of one kind (a fixed word: `rug_pull`,
/// `shadowing`, `malformed`, `overflow`) for one bounded tool label (a
/// configured or learned tool, else `_other`), so a rug-pulling backend
/// cannot mint series or long labels.
pub fn integrity_violation<H: Host>(host: &mut H, server: &str, tool: &str, kind: &str, n: u64) {
    host.add_counter(&format!("{INTEGRITY_VIOLATIONS}.server.{server}.tool.{tool}.kind.{kind}"), n);
}
