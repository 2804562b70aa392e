//! The per-request context: fetches headers and bodies, hands them to
//! [`Gateway`], and carries out its outcome.

use super::{host, known_tools, metrics};
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::{
    Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan, MCP_PREFIX,
};
use crate::ops;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};
use std::rc::Rc;

pub struct HttpFilter {
    gateway: Option<Rc<Gateway>>,
    /// Set while an MCP POST body is being buffered.
    awaiting_body: Option<McpRequest>,
    /// The request, once forwarded, and what to do with its response.
    forwarded: Option<(McpRequest, ResponsePlan)>,
    /// The response body is being buffered for rewriting.
    buffering_response: bool,
    attrs: Attributes,
    /// Whom an error Envoy makes later (429, 503) must answer.
    reply_to: ReplyTo,
    /// The JSON envelope replacing the body of an Envoy-made reply.
    envoy_reply_body: Option<String>,
    /// Serving `/metrics`: append the breaker series derived from Envoy stats.
    serving_metrics: bool,
    started_ms: u64,
    /// The bounded label of the called tool, computed once per request.
    tool_label: Option<String>,
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>) -> Self {
        Self {
            gateway,
            awaiting_body: None,
            forwarded: None,
            buffering_response: false,
            attrs: Attributes::default(),
            reply_to: ReplyTo::Http,
            envoy_reply_body: None,
            serving_metrics: false,
            started_ms: 0,
            tool_label: None,
        }
    }

    fn reply(&mut self, reply: &Reply) -> Action {
        self.publish_attributes();
        host::send(reply);
        Action::Pause
    }

    /// Hands the request's MCP facts to Envoy (access logs, tracing); they
    /// stay in `attrs` for the metrics counted in `on_log`.
    fn publish_attributes(&mut self) {
        let a = &self.attrs;
        let fields = [
            ("mcp_server", a.server.as_deref()),
            ("mcp_method", a.method.as_deref()),
            ("mcp_tool", a.tool.as_deref()),
            ("mcp_client", a.client.as_deref()),
            ("mcp_decision", a.decision),
            ("mcp_reason", a.reason.as_deref()),
            ("mcp_integrity", a.integrity.as_deref()),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                host::set_attribute(name, v);
            }
        }
    }

    fn decide_body(&mut self, gateway: &Gateway, req: McpRequest, body: &[u8]) -> Action {
        match gateway.on_request_body(&req, body, &mut self.attrs) {
            BodyOutcome::Reply(r) => self.reply(&r),
            BodyOutcome::Forward(f) => {
                for (name, value) in &f.set_headers {
                    host::set_request_header(name, Some(value));
                }
                let rl = &gateway.config().rate_limit;
                if let (true, true, Some(tool)) = (rl.enabled, rl.per_tool, self.attrs.tool.as_deref()) {
                    // The per-tool bucket key: one header, so one route re-match.
                    let label = tool_label(gateway, &req.server, tool);
                    host::set_request_header(ops::RATE_LIMIT_HEADER, Some(&ops::rate_limit_key(&req.server, &label)));
                    self.tool_label = Some(label);
                }
                self.reply_to = f.reply_to;
                self.publish_attributes();
                self.forwarded = Some((req, f.response));
                Action::Continue
            }
        }
    }
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone() else {
            // No valid configuration: refuse rather than pass unchecked.
            return self.reply(&Reply::error(503, code::UNAVAILABLE, "gateway not configured", &ReplyTo::Http));
        };
        let Some(headers) = host::request_headers() else {
            return self.reply(&Reply::error(500, code::UNAVAILABLE, "could not read request headers", &ReplyTo::Http));
        };
        self.started_ms = host::now_ms();
        let head = RequestHead { headers: &headers };
        for name in head.internal_headers() {
            host::set_request_header(name, None);
        }
        if let Some(reply) = ops::check_origin(gateway.config(), &head) {
            let server = head.path().strip_prefix(MCP_PREFIX).filter(|s| gateway.config().server(s).is_some());
            self.attrs.server = server.map(String::from);
            self.attrs.decision = Some("deny");
            self.attrs.reason = Some("origin".into());
            return self.reply(&reply);
        }
        if head.path() == ops::METRICS_PATH {
            return match ops::metrics_access(&gateway, &head) {
                ops::MetricsAccess::Serve => {
                    self.serving_metrics = true;
                    Action::Continue
                }
                ops::MetricsAccess::Refuse(r) => self.reply(&r),
            };
        }
        match gateway.on_request_headers(&head, &mut self.attrs) {
            HeadOutcome::PassThrough => Action::Continue,
            HeadOutcome::Reply(r) => self.reply(&r),
            HeadOutcome::Forward(req) => {
                self.publish_attributes();
                self.forwarded = Some((req, ResponsePlan::PassThrough));
                Action::Continue
            }
            HeadOutcome::ReadBody(req) if end_of_stream => self.decide_body(&gateway, req, &[]),
            HeadOutcome::ReadBody(req) => {
                self.awaiting_body = Some(req);
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let (Some(gateway), Some(_)) = (self.gateway.clone(), self.awaiting_body.as_ref()) else {
            return Action::Continue;
        };
        if !gateway.body_within_limit(body_size) {
            self.awaiting_body = None;
            return self.reply(&gateway.too_large());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Some(req) = self.awaiting_body.take() else { return Action::Continue };
        let body = host::body(BufferType::HttpRequestBody, body_size);
        self.decide_body(&gateway, req, &body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.serving_metrics && !end_of_stream {
            // The body grows by the derived series.
            host::set_response_header("content-length", None);
            self.buffering_response = true;
            return Action::Continue;
        }
        if self.forwarded.is_some() {
            let details = host::property_string(&["response", "code_details"]);
            if ops::is_envoy_reply(&details) {
                self.envelope_envoy_reply(&details, end_of_stream);
                return Action::Continue;
            }
        }
        if end_of_stream || !matches!(&self.forwarded, Some((_, ResponsePlan::FilterToolsList { .. }))) {
            return Action::Continue;
        }
        // Hold the headers until the body is rewritten, so Content-Length
        // can be corrected.
        self.buffering_response = true;
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.buffering_response {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.buffering_response = false;
        if let Some(new) = self.envoy_reply_body.take() {
            if !host::replace_body(BufferType::HttpResponseBody, body_size, new.as_bytes()) {
                host::log(proxy_wasm::types::LogLevel::Error, "mcpx: could not rewrite an Envoy reply");
            }
            return Action::Continue;
        }
        if self.serving_metrics {
            self.append_breaker_series(body_size);
            return Action::Continue;
        }
        let (Some(gateway), Some((req, ResponsePlan::FilterToolsList { list_ids }))) =
            (self.gateway.clone(), self.forwarded.as_ref())
        else {
            return Action::Continue;
        };
        let body = host::body(BufferType::HttpResponseBody, body_size);
        known_tools::learn(&req.server, &ops::listed_tool_names(&body));
        let new = match gateway.rewrite_tools_list(req, list_ids, &body) {
            Ok(None) => return Action::Continue,
            Ok(Some(new)) => new,
            Err(reply) => {
                host::set_response_header(":status", Some(&reply.status.to_string()));
                host::set_response_header("content-type", Some("application/json"));
                reply.body.into_bytes()
            }
        };
        if host::replace_body(BufferType::HttpResponseBody, body_size, &new) {
            host::set_response_header("content-length", Some(&new.len().to_string()));
        } else {
            host::log(proxy_wasm::types::LogLevel::Error, "mcpx: could not rewrite a tools/list response");
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(gateway) = self.gateway.clone() {
            self.count(&gateway);
        }
    }
}

impl HttpFilter {
    /// Turns a reply Envoy made after the filter let the request through
    /// (local rate limit 429, open circuit 503, overflow, connect failure)
    /// into the JSON envelope with the request's id, and records the
    /// decision (`rate_limited` is not `allow`).
    fn envelope_envoy_reply(&mut self, details: &str, end_of_stream: bool) {
        let Some(gateway) = self.gateway.clone() else { return };
        let status = host::property_u64(&["response", "code"]).and_then(|c| u16::try_from(c).ok()).unwrap_or(503);
        let cooldown = gateway.config().circuit_breaker.cooldown.as_millis().div_ceil(1000);
        let er = ops::envoy_reply(status, details, &self.reply_to, cooldown);
        self.attrs.decision = Some(er.decision);
        self.attrs.reason = Some(er.reason.clone());
        host::set_attribute("mcp_decision", er.decision);
        host::set_attribute("mcp_reason", &er.reason);
        for (k, v) in &er.reply.headers {
            host::set_response_header(k, Some(v));
        }
        if end_of_stream {
            return;
        }
        host::set_response_header("content-type", Some("application/json"));
        host::set_response_header("content-length", None);
        self.envoy_reply_body = Some(er.reply.body);
        self.buffering_response = true;
    }

    /// The audit and metrics hook for integrity violations (issue 4 calls
    /// it while inspecting a `tools/list` answer): the request's audit line
    /// gets `integrity: "kind:tool,..."`, `mcpx_integrity_violations_total`
    /// is counted, and a JSON line goes to Envoy's log at once.
    #[allow(dead_code)]
    pub fn note_integrity(&mut self, server: &str, tool: &str, kind: &'static str) {
        let note = ops::add_integrity(self.attrs.integrity.as_deref(), kind, tool);
        host::set_attribute("mcp_integrity", &note);
        self.attrs.integrity = Some(note);
        let known = self.gateway.as_ref().is_some_and(|g| ops::is_configured_tool(g.config(), server, tool))
            || known_tools::is_known(server, tool);
        metrics::integrity_violation(&ops::sanitize(server), &ops::tool_label(tool, known), kind);
        let line = serde_json::json!({ "event": "integrity_violation", "server": server, "tool": tool, "kind": kind });
        host::log(proxy_wasm::types::LogLevel::Warn, &format!("mcpx audit: {line}"));
    }

    fn append_breaker_series(&mut self, body_size: usize) {
        let Some(gateway) = self.gateway.clone() else { return };
        let body = host::body(BufferType::HttpResponseBody, body_size);
        let servers: Vec<&str> = gateway.config().servers.iter().map(|s| s.name.as_str()).collect();
        let extra = ops::breaker_series(&String::from_utf8_lossy(&body), &servers);
        let mut new = body;
        if !new.is_empty() && !new.ends_with(b"\n") {
            new.push(b'\n');
        }
        new.extend_from_slice(extra.as_bytes());
        if !host::replace_body(BufferType::HttpResponseBody, body_size, &new) {
            host::log(proxy_wasm::types::LogLevel::Error, "mcpx: could not append the breaker series to /metrics");
        }
    }

    /// Counts the finished MCP request with bounded labels.
    fn count(&self, gateway: &Gateway) {
        if self.attrs.decision.is_none() {
            return; // not an MCP request
        }
        let config = gateway.config();
        let server = self.attrs.server.as_deref().map_or_else(|| "_unknown".to_string(), ops::sanitize);
        let method = ops::method_label(self.attrs.method.as_deref());
        let tool = match (self.attrs.method.as_deref(), self.attrs.tool.as_deref(), self.attrs.server.as_deref()) {
            (Some("tools/call" | "batch"), Some(t), Some(s)) => {
                Some(self.tool_label.clone().unwrap_or_else(|| tool_label(gateway, s, t)))
            }
            _ => None,
        };
        let client = ops::client_label(config, self.attrs.client.as_deref());
        let status = host::property_u64(&["response", "code"]).unwrap_or(0);
        let duration = host::now_ms().saturating_sub(self.started_ms);
        let labels =
            metrics::RequestLabels { server: &server, method: &method, tool: tool.as_deref(), client: &client };
        metrics::request(&labels, &self.attrs, status, duration);
    }
}

/// The bounded label of a tool: configured or advertised by the backend.
fn tool_label(gateway: &Gateway, server: &str, tool: &str) -> String {
    let known = ops::is_configured_tool(gateway.config(), server, tool) || known_tools::is_known(server, tool);
    ops::tool_label(tool, known)
}
