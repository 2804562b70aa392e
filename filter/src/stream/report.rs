//! What a request leaves behind: the findings of an answer's inspection
//! (log lines, counters, audit attributes; all bounded however many
//! violations one hostile list holds) and its metrics when it ends.

use super::{known_tools, metrics, Host, Level, Stream};
use crate::config::IntegrityMode;
use crate::gateway::Gateway;
use crate::integrity;
use crate::names::{self, attr};
use crate::ops;
use crate::tools_list::inspect::Inspection;

impl Stream {
    /// Audits what inspecting an answer found: learns the advertised tools
    /// (bounded labels), then log lines, counters and the audit attributes.
    pub(super) fn report<H: Host>(&mut self, host: &mut H, gateway: &Gateway, server: &str, found: &Inspection) {
        known_tools::learn(host, server, &found.listed);
        if let Some(e) = &found.store_error {
            host.log(Level::Warn, &format!("mcpx: integrity baseline unavailable, list passed unchecked: {e}"));
        }
        self.report_invalid_headers(host, gateway, server, &found.invalid_headers);
        if found.violations.is_empty() {
            return;
        }
        let mode = gateway.config().inspection.tool_integrity;
        let action = if mode == IntegrityMode::Enforce { "removed_from_list" } else { "passed_warn" };
        log_violations(host, server, &found.violations, action);
        let mut counts: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
        for v in &found.violations {
            *counts.entry((tool_label(host, gateway, server, &v.tool), v.kind.as_str())).or_default() += 1;
        }
        let server_label = names::label(server);
        for ((tool, kind), n) in counts {
            metrics::integrity_violation(host, &server_label, &tool, kind, n);
        }
        self.attrs.integrity =
            crate::tools_list::inspect::audit_note(self.attrs.integrity.as_deref(), &found.violations);
        if let Some(n) = &self.attrs.integrity {
            host.set_attribute(attr::INTEGRITY, n);
            host.set_attribute(attr::INTEGRITY_ACTION, action);
        }
    }

    /// Tools removed for invalid `x-mcp-header` annotations: a warn line each
    /// (bounded), a counter (kind `invalid_x_mcp_header`) and the integrity
    /// audit event, like the integrity violations beside them.
    fn report_invalid_headers<H: Host>(
        &mut self,
        host: &mut H,
        gateway: &Gateway,
        server: &str,
        invalid: &[(String, String)],
    ) {
        if invalid.is_empty() {
            return;
        }
        const KIND: &str = "invalid_x_mcp_header";
        let named = crate::tools_list::inspect::MAX_NAMED_VIOLATIONS;
        for (tool, why) in invalid.iter().take(named) {
            let tool: String = tool.chars().take(128).collect();
            let why: String = why.chars().take(256).collect();
            host.log(
                Level::Warn,
                &format!("mcpx: tool removed from tools/list kind={KIND} server={server} tool={tool:?} reason={why:?}"),
            );
        }
        let server_label = ops::sanitize(server);
        for (tool, _) in invalid {
            let label = tool_label(host, gateway, server, tool);
            metrics::integrity_violation(host, &server_label, &label, KIND, 1);
        }
        let entries = invalid.iter().map(|(tool, _)| format!("{KIND}:{}", ops::sanitize(tool)));
        self.attrs.integrity = crate::tools_list::inspect::audit_note_entries(self.attrs.integrity.as_deref(), entries);
        if let Some(n) = &self.attrs.integrity {
            host.set_attribute(attr::INTEGRITY, n);
            host.set_attribute(attr::INTEGRITY_ACTION, "removed_from_list");
        }
    }

    /// Counts the finished MCP request with bounded labels. The labels
    /// are borrowed (the tool label was computed when the call was decided);
    /// the status is the one the response phase saw, else `response.code`.
    pub(super) fn count<H: Host>(&self, host: &mut H, gateway: &Gateway) {
        if self.attrs.decision.is_none() {
            return; // not an MCP request
        }
        let config = gateway.config();
        let tool = match (self.attrs.method.as_deref(), self.attrs.tool.as_deref(), self.attrs.server.as_deref()) {
            (Some("tools/call" | "batch"), Some(t), Some(s)) => Some(match self.tool_label.as_deref() {
                Some(label) => std::borrow::Cow::Borrowed(label),
                None => std::borrow::Cow::Owned(tool_label(host, gateway, s, t)),
            }),
            _ => None,
        };
        let status = match self.status {
            Some(s) => s,
            None => host.response_code().unwrap_or(0),
        };
        let duration = host.now_ms().saturating_sub(self.started_ms);
        let labels = metrics::RequestLabels {
            server: self.attrs.server.as_deref(),
            method: self.attrs.method.as_deref(),
            tool: tool.as_deref(),
            client: metrics::Client::of(config, self.attrs.client.as_deref()),
        };
        metrics::request(host, &labels, &self.attrs, status, duration);
    }
}

/// The bounded label of a tool: configured or advertised by the backend.
pub(super) fn tool_label<H: Host>(host: &mut H, gateway: &Gateway, server: &str, tool: &str) -> String {
    let known = ops::is_configured_tool(gateway.config(), server, tool) || known_tools::is_known(host, server, tool);
    ops::tool_label(tool, known)
}

/// A warn log line per violation, at once (the audit event is written when
/// the request ends); at most `MAX_NAMED_VIOLATIONS` lines per answer, then
/// one line with the count. `action`: what the gateway did with the tools.
fn log_violations<H: Host>(host: &mut H, server: &str, violations: &[integrity::Violation], action: &str) {
    let short = |h: &Option<String>| h.as_deref().map_or("-".to_string(), |h| h.chars().take(16).collect());
    let named = crate::tools_list::inspect::MAX_NAMED_VIOLATIONS;
    for v in violations.iter().take(named) {
        host.log(
            Level::Warn,
            &format!(
                "mcpx: integrity violation kind={} server={} tool={:?} pinned={} seen={} other_server={} action={}",
                v.kind.as_str(),
                server,
                v.tool.chars().take(128).collect::<String>(),
                short(&v.pinned),
                short(&v.seen),
                v.other_server.as_deref().unwrap_or("-"),
                action
            ),
        );
    }
    if let Some(more) = violations.len().checked_sub(named).filter(|n| *n > 0) {
        host.log(
            Level::Warn,
            &format!("mcpx: integrity violation: {more} more on server {server} in the same answer, action={action}"),
        );
    }
}
