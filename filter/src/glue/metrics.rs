//! Filter-defined Prometheus series (docs/operations.md), through the proxy-wasm
//! metric host calls. Envoy files them as `wasmcustom.<name>`; the rendered
//! `stats_tags` turn the `.key.value` pairs into labels, so
//! `mcpx_tool_calls_total.server.demo.tool.echo.decision.allow.client.anonymous`
//! is served as `mcpx_tool_calls_total{server="demo",tool="echo",...}`.
//!
//! Every label value is bounded (configured servers, known tools, fixed
//! method/decision words, configured clients) and sanitised: each distinct
//! name is a permanent Envoy stat. Metric ids are cached per VM.

use super::host::{self, log};
use crate::request::{Attributes, Decision};
use proxy_wasm::types::{LogLevel, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

fn id(kind: MetricType, name: &str) -> Option<u32> {
    if let Some(id) = IDS.with(|m| m.borrow().get(name).copied()) {
        return Some(id);
    }
    match host::define_metric(kind, name) {
        Ok(id) => {
            IDS.with(|m| m.borrow_mut().insert(name.to_string(), id));
            Some(id)
        }
        Err(_) => {
            log(LogLevel::Warn, &format!("mcpx: could not define metric {name}"));
            None
        }
    }
}

fn inc(name: &str) {
    add(name, 1);
}

fn add(name: &str, n: u64) {
    if let Some(id) = id(MetricType::Counter, name) {
        let _ = host::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

fn record(name: &str, value: u64) {
    if let Some(id) = id(MetricType::Histogram, name) {
        let _ = host::record_metric(id, value);
    }
}

use crate::names::metric::{
    AUTH_FAILURES, INTEGRITY_VIOLATIONS, RATE_LIMIT_HITS, REQUESTS, REQUEST_DURATION_MS, TOOL_CALLS,
};

/// Defines the label-less counters so they are served (as 0) before any hit.
pub fn define_static() {
    for name in [AUTH_FAILURES, RATE_LIMIT_HITS] {
        let _ = id(MetricType::Counter, name);
    }
}

/// The already-bounded labels of one finished MCP request.
pub struct RequestLabels<'a> {
    pub server: &'a str,
    pub method: &'a str,
    pub tool: Option<&'a str>,
    pub client: &'a str,
}

/// Counts one finished MCP request (called from `on_log`).
pub fn request(labels: &RequestLabels<'_>, attrs: &Attributes, status: u64, duration_ms: u64) {
    let RequestLabels { server, method, tool, client } = labels;
    inc(&format!("{REQUESTS}.server.{server}.method.{method}.status_code.{status}"));
    record(&format!("{REQUEST_DURATION_MS}.server.{server}"), duration_ms);
    let decision = attrs.decision.map_or("none", Decision::as_str);
    if let Some(tool) = tool {
        inc(&format!("{TOOL_CALLS}.server.{server}.tool.{tool}.decision.{decision}.client.{client}"));
    }
    match attrs.decision {
        Some(Decision::AuthFailed) => inc(AUTH_FAILURES),
        Some(Decision::RateLimited) => inc(RATE_LIMIT_HITS),
        _ => {}
    }
}

/// Counts `n` integrity violations of one kind (a fixed word: `rug_pull`,
/// `shadowing`, `malformed`, `overflow`) for one bounded tool label (a
/// configured or learned tool, else `_other`), so a rug-pulling backend
/// cannot mint series or long labels.
pub fn integrity_violation(server: &str, tool: &str, kind: &str, n: u64) {
    add(&format!("{INTEGRITY_VIOLATIONS}.server.{server}.tool.{tool}.kind.{kind}"), n);
}
