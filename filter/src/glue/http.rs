//! The per-request context: fetches headers and bodies, hands them to
//! [`Gateway`], and carries out its outcome.

use super::health::HealthCheck;
use super::shared::SharedStore;
use super::{host, known_tools, metrics};
use crate::ablation::{self, Part};
use crate::config::IntegrityMode;
use crate::endpoints::control;
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::{
    Admit, Attributes, BodyOutcome, Decision, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan,
};
use crate::headers::paramheaders;
use crate::integrity;
use crate::names::{self, attr};
use crate::ops;
use crate::response;
use crate::response::sse::{FeedError, SseRewriter};
use crate::tools_list::inspect::{self, Inspection};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::rc::Rc;

/// How long a request waits for the first OAuth key set before its 503.
const KEY_WAIT_SECS: u64 = 5;

/// A request held until the OAuth keys are loaded (see `waiting.rs`).
struct KeyWait {
    headers: Vec<(String, String)>,
    headers_end_stream: bool,
    /// Set once the whole body has been buffered: its size.
    body_done: Option<usize>,
    deadline: u64,
}

/// How the response body of a request is handled.
#[derive(Default)]
enum ResponseBody {
    /// Streamed through untouched (everything but the cases below).
    #[default]
    PassThrough,
    /// A JSON answer to an MCP request: buffered whole (a JSON answer is
    /// only read whole), headers held for Content-Length.
    BufferJson,
    /// An event-stream answer: inspected event by event as it passes.
    Sse(SseRewriter),
    /// The stream could not be inspected; an error event was sent and the
    /// rest of the stream is dropped.
    Dropped,
    /// A refused answer (3xx, ambiguous type): its body becomes this envelope.
    Refused(String),
    /// A reply Envoy made (429, 503, …): its body becomes this envelope.
    EnvoyReply(String),
    /// `/metrics`: the breaker series derived from Envoy stats are appended.
    Metrics,
}

/// Where a request is. One phase at a time: a request waits for keys, or
/// for its body, or for its probes, or has been forwarded; never two.
#[derive(Default)]
enum Phase {
    /// Headers not decided yet; or the request was answered here, or passes
    /// through untouched.
    #[default]
    Idle,
    /// OAuth: held until the key set is loaded (see `waiting.rs`).
    KeyWait(KeyWait),
    /// An MCP POST whose body is being buffered.
    ReadingBody(McpRequest),
    /// A `/health` request waiting for its probes.
    Health(HealthCheck),
    /// Forwarded, and what to do with its response.
    Forwarded(McpRequest, ResponsePlan),
}

pub struct HttpFilter {
    gateway: Option<Rc<Gateway>>,
    phase: Phase,
    response: ResponseBody,
    /// Serves the operator endpoints instead of MCP (control listener).
    control: bool,
    attrs: Attributes,
    /// Whom an error Envoy makes later (429, 503) must answer.
    reply_to: ReplyTo,
    started_ms: u64,
    /// The bounded label of the called tool, computed once per request.
    tool_label: Option<String>,
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>, control: bool) -> Self {
        Self {
            gateway,
            phase: Phase::Idle,
            response: ResponseBody::PassThrough,
            control,
            attrs: Attributes::default(),
            reply_to: ReplyTo::Http,
            started_ms: 0,
            tool_label: None,
        }
    }

    pub fn waiting_for_keys(&self) -> bool {
        matches!(self.phase, Phase::KeyWait(_))
    }

    pub fn wait_is_over(&self) -> bool {
        matches!(&self.phase, Phase::KeyWait(w) if crate::clock::now_secs() >= w.deadline)
    }

    /// Called (as this request's context) when keys arrived or the wait is
    /// over: runs the headers phase again and carries on from where it was.
    pub fn wake(&mut self) {
        let Some(gateway) = self.gateway.clone() else { return };
        let w = match std::mem::take(&mut self.phase) {
            Phase::KeyWait(w) => w,
            other => {
                self.phase = other;
                return;
            }
        };
        let action = self.handle_head(&gateway, w.headers, w.headers_end_stream, w.body_done, Some(w.deadline));
        if action == Action::Continue && host::resume_http_request().is_err() {
            host::log(proxy_wasm::types::LogLevel::Error, "mcpx: could not resume a request after the key wait");
        }
    }

    /// The headers phase. `body_done`: the body was already buffered while
    /// waiting for keys; `deadline`: the end of that wait, if waiting.
    fn handle_head(
        &mut self,
        gateway: &Gateway,
        headers: Vec<(String, String)>,
        end_of_stream: bool,
        body_done: Option<usize>,
        deadline: Option<u64>,
    ) -> Action {
        let head = RequestHead { headers: &headers };
        match gateway.on_request_headers(&head, &mut self.attrs) {
            HeadOutcome::PassThrough => Action::Continue,
            HeadOutcome::Reply(r) => self.reply(&r),
            HeadOutcome::AwaitKeys(reply) => {
                let now = crate::clock::now_secs();
                let deadline = deadline.unwrap_or(now + KEY_WAIT_SECS);
                if now >= deadline {
                    return self.reply(&reply);
                }
                self.attrs = Attributes::default();
                self.phase =
                    Phase::KeyWait(KeyWait { headers, headers_end_stream: end_of_stream, body_done, deadline });
                Action::Pause
            }
            HeadOutcome::Forward(_) if !end_of_stream => {
                // GET / DELETE with a body (HTTP/2 data, or one the headers did not announce).
                let method = self.attrs.method.clone().unwrap_or_default();
                let reply = Gateway::body_not_allowed(&method, &mut self.attrs);
                self.reply(&reply)
            }
            HeadOutcome::Forward(req) => {
                if gateway.config().rate_limit.enabled && !ablation::skip(Part::RateLimitHeaders) {
                    host::set_request_header(names::RATE_LIMIT_HITS_HEADER, Some("1"));
                    set_client_key(gateway, &req);
                }
                if let Some((name, value)) = gateway.bridge_identity(&req) {
                    host::set_request_header(name, Some(&value));
                }
                self.publish_attributes();
                self.phase = Phase::Forwarded(req, ResponsePlan::PassThrough);
                Action::Continue
            }
            HeadOutcome::Health(detail) => {
                let check = HealthCheck::start(gateway, detail);
                if check.done() {
                    return self.reply(&check.reply());
                }
                self.phase = Phase::Health(check);
                Action::Pause
            }
            HeadOutcome::ReadBody(req) if end_of_stream => self.decide_body(gateway, req, &[]),
            HeadOutcome::ReadBody(req) => match body_done {
                Some(size) => {
                    let body = host::body(BufferType::HttpRequestBody, size);
                    self.decide_body(gateway, req, &body)
                }
                None => {
                    self.phase = Phase::ReadingBody(req);
                    Action::Pause
                }
            },
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
        if ablation::skip(Part::Attributes) || !self.gateway.as_ref().is_some_and(|g| g.publishes_attributes()) {
            return;
        }
        let a = &self.attrs;
        let fields = [
            (attr::SERVER, a.server.as_deref()),
            (attr::METHOD, a.method.as_deref()),
            (attr::TOOL, a.tool.as_deref()),
            (attr::CLIENT, a.client.as_deref()),
            (attr::DECISION, a.decision.map(Decision::as_str)),
            (attr::REASON, a.reason.as_deref()),
            (attr::INTEGRITY, a.integrity.as_deref()),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                host::set_attribute(name, v);
            }
        }
    }

    fn decide_body(&mut self, gateway: &Gateway, req: McpRequest, body: &[u8]) -> Action {
        // Read only in enforce mode, only for tools/call: one small shared-data read.
        let lookup = |server: &str, tool: &str| integrity::recorded_violation(&SharedStore, server, tool);
        // Read only for 2026-07-28 tools/call: the tool's x-mcp-header map.
        let tool_headers =
            |tool: &str| paramheaders::lookup(&SharedStore, &req.server, tool).map_err(|e| e.to_string());
        match gateway.on_request_body_checked(&req, body, &mut self.attrs, &lookup, &tool_headers) {
            BodyOutcome::Reply(r) => self.reply(&r),
            BodyOutcome::Forward(f) => {
                for (name, value) in &f.set_headers {
                    host::set_request_header(name, Some(value));
                }
                let rl = &gateway.config().rate_limit;
                let rl_on = rl.enabled && !ablation::skip(Part::RateLimitHeaders);
                let hits = f.hits.max(1);
                if rl_on {
                    // Tokens: one per message (a batch costs what its messages would alone).
                    host::set_request_header(names::RATE_LIMIT_HITS_HEADER, Some(&hits.to_string()));
                    set_client_key(gateway, &req);
                }
                if let (true, true, Some(tool), true) =
                    (rl_on, rl.per_tool, self.attrs.tool.as_deref(), f.tool_hits > 0)
                {
                    // The per-tool bucket key and its cost (the cost header only
                    // when it differs from x-mcpx-hits, which Envoy falls back to).
                    let label = tool_label(gateway, &req.server, tool);
                    host::set_request_header(names::RATE_LIMIT_HEADER, Some(&ops::rate_limit_key(&req.server, &label)));
                    if let Some(tool_hits) = ops::tool_hits_header(hits, f.tool_hits) {
                        host::set_request_header(names::RATE_LIMIT_TOOL_HITS_HEADER, Some(&tool_hits));
                    }
                    self.tool_label = Some(label);
                }
                self.reply_to = f.reply_to;
                self.publish_attributes();
                self.phase = Phase::Forwarded(req, f.response);
                Action::Continue
            }
        }
    }

    /// Audits what inspecting an answer found: learns the advertised tools
    /// (bounded labels), then log lines, counters and the audit attributes,
    /// all bounded however many violations one hostile list holds.
    fn report(&mut self, gateway: &Gateway, server: &str, found: &Inspection) {
        known_tools::learn(server, &found.listed);
        if let Some(e) = &found.store_error {
            host::log(LogLevel::Warn, &format!("mcpx: integrity baseline unavailable, list passed unchecked: {e}"));
        }
        self.report_invalid_headers(gateway, server, &found.invalid_headers);
        if found.violations.is_empty() {
            return;
        }
        let mode = gateway.config().inspection.tool_integrity;
        let action = if mode == IntegrityMode::Enforce { "removed_from_list" } else { "passed_warn" };
        log_violations(server, &found.violations, action);
        let mut counts: std::collections::BTreeMap<(String, &'static str), u64> = Default::default();
        for v in &found.violations {
            *counts.entry((tool_label(gateway, server, &v.tool), v.kind.as_str())).or_default() += 1;
        }
        let server_label = names::label(server);
        for ((tool, kind), n) in counts {
            metrics::integrity_violation(&server_label, &tool, kind, n);
        }
        self.attrs.integrity = inspect::audit_note(self.attrs.integrity.as_deref(), &found.violations);
        if let Some(n) = &self.attrs.integrity {
            host::set_attribute(attr::INTEGRITY, n);
            host::set_attribute(attr::INTEGRITY_ACTION, action);
        }
    }

    /// Tools removed for invalid `x-mcp-header` annotations: a warn line each
    /// (bounded), a counter (kind `invalid_x_mcp_header`) and the integrity
    /// audit event, like the integrity violations beside them.
    fn report_invalid_headers(&mut self, gateway: &Gateway, server: &str, invalid: &[(String, String)]) {
        if invalid.is_empty() {
            return;
        }
        const KIND: &str = "invalid_x_mcp_header";
        let named = inspect::MAX_NAMED_VIOLATIONS;
        for (tool, why) in invalid.iter().take(named) {
            let tool: String = tool.chars().take(128).collect();
            let why: String = why.chars().take(256).collect();
            host::log(
                LogLevel::Warn,
                &format!("mcpx: tool removed from tools/list kind={KIND} server={server} tool={tool:?} reason={why:?}"),
            );
        }
        let server_label = ops::sanitize(server);
        for (tool, _) in invalid {
            metrics::integrity_violation(&server_label, &tool_label(gateway, server, tool), KIND, 1);
        }
        let entries = invalid.iter().map(|(tool, _)| format!("{KIND}:{}", ops::sanitize(tool)));
        self.attrs.integrity = inspect::audit_note_entries(self.attrs.integrity.as_deref(), entries);
        if let Some(n) = &self.attrs.integrity {
            host::set_attribute("mcp_integrity", n);
            host::set_attribute("mcp_integrity_action", "removed_from_list");
        }
    }

    /// The request's list ids (for the id of an error), if it asked for a
    /// list the request pinned; empty for every other request.
    fn list_ids(&self) -> Vec<serde_json::Value> {
        match &self.phase {
            Phase::Forwarded(_, ResponsePlan::FilterToolsList { list_ids }) => list_ids.clone(),
            _ => Vec::new(),
        }
    }

    /// A buffered JSON answer, whole: every list in it inspected.
    fn finish_json(&mut self, gateway: &Gateway, body_size: usize) -> Action {
        let Phase::Forwarded(req, _) = &self.phase else { return Action::Continue };
        let req = req.clone();
        let list_ids = self.list_ids();
        let body = host::body(BufferType::HttpResponseBody, body_size);
        let new = match gateway.rewrite_tools_list(&req, &list_ids, &body, &mut SharedStore) {
            Ok(found) => {
                self.report(gateway, &req.server, &found);
                match found.body {
                    None => return Action::Continue,
                    Some(new) => new,
                }
            }
            Err(reply) => {
                self.note_refused("uninspectable_answer");
                host::set_response_header(":status", Some(&reply.status.to_string()));
                host::set_response_header("content-type", Some("application/json"));
                reply.body.into_bytes()
            }
        };
        if host::replace_body(BufferType::HttpResponseBody, body_size, &new) {
            host::set_response_header("content-length", Some(&new.len().to_string()));
        } else {
            host::log(LogLevel::Error, "mcpx: could not rewrite an answer");
        }
        Action::Continue
    }

    /// One chunk of an event-stream answer: complete events go on at once
    /// (inspected), an unfinished one waits for the next chunk.
    fn sse_chunk(&mut self, gateway: &Gateway, mut rewriter: SseRewriter, body_size: usize, eos: bool) -> Action {
        let Phase::Forwarded(req, _) = &self.phase else { return Action::Continue };
        let req = req.clone();
        let Some(inspector) = gateway.list_inspector(&req) else { return Action::Continue };
        let list_ids = self.list_ids();
        let chunk = host::body(BufferType::HttpResponseBody, body_size);
        let mut found = Vec::new();
        let out = rewriter.feed(&chunk, eos, |data| {
            if data.iter().all(u8::is_ascii_whitespace) {
                // e.g. the empty priming event of a resumable stream.
                return Ok(None);
            }
            let f = inspector.inspect_any(data, &mut SharedStore)?;
            let body = f.body.clone();
            found.push(f);
            Ok::<_, inspect::InspectError>(body)
        });
        for f in &found {
            self.report(gateway, &req.server, f);
        }
        let out = match out {
            Ok(out) => {
                self.response = ResponseBody::Sse(rewriter);
                out
            }
            Err(e) => {
                let why = match e {
                    FeedError::Inspect(e) => e.0,
                    FeedError::TooLarge(n) => {
                        format!("an event grew past {} bytes ({n} held) without ending", rewriter.max_event)
                    }
                };
                self.note_refused("uninspectable_answer");
                self.response = ResponseBody::Dropped;
                let reply = Gateway::uninspectable(&list_ids, &why);
                format!("event: message\ndata: {}\n\n", reply.body).into_bytes()
            }
        };
        if out != chunk && !host::replace_body(BufferType::HttpResponseBody, body_size, &out) {
            host::log(LogLevel::Error, "mcpx: could not rewrite an event stream");
        }
        Action::Continue
    }

    /// Records that the gateway refused the backend's answer.
    fn note_refused(&mut self, reason: &str) {
        self.attrs.decision = Some(Decision::Error);
        self.attrs.reason = Some(reason.to_string());
        host::set_attribute(attr::DECISION, Decision::Error.as_str());
        host::set_attribute(attr::REASON, reason);
    }

    /// Refuses the backend's answer in the headers phase (502 with the
    /// envelope): a redirect would take the client off the gateway to an
    /// answer it never inspects; an ambiguous type would be read differently
    /// by different clients.
    fn refuse_answer(&mut self, reason: &str, why: &str, end_of_stream: bool) -> Action {
        self.note_refused(reason);
        let reply = Gateway::uninspectable(&self.list_ids(), why);
        host::set_response_header(":status", Some("502"));
        host::set_response_header("location", None);
        host::set_response_header("content-type", Some("application/json"));
        if end_of_stream {
            // No body to replace: the status and type say it.
            return Action::Continue;
        }
        host::set_response_header("content-length", None);
        self.response = ResponseBody::Refused(reply.body);
        Action::Continue
    }

    /// Turns a reply Envoy made after the filter let the request through
    /// (local rate limit 429, open circuit 503, overflow, connect failure)
    /// into the JSON envelope with the request's id, and records the
    /// decision (`rate_limited` is not `allow`).
    fn envelope_envoy_reply(&mut self, gateway: &Gateway, details: &str, end_of_stream: bool) {
        let status = host::property_u64(&["response", "code"]).and_then(|c| u16::try_from(c).ok()).unwrap_or(503);
        let cooldown = gateway.config().circuit_breaker.cooldown.as_millis().div_ceil(1000);
        let mut er = ops::envoy_reply(status, details, &self.reply_to, cooldown);
        if status == 429 {
            // A global limit's window reset (`x-ratelimit-reset`) is the honest Retry-After.
            if let Some(reset) = host::response_header("x-ratelimit-reset").and_then(|v| ops::retry_after(&v)) {
                er.reply.headers.retain(|(k, _)| k != "retry-after");
                er.reply.headers.push(("retry-after".into(), reset));
            }
        }
        self.attrs.decision = Some(er.decision);
        self.attrs.reason = Some(er.reason.clone());
        host::set_attribute(attr::DECISION, er.decision.as_str());
        host::set_attribute(attr::REASON, &er.reason);
        for (k, v) in &er.reply.headers {
            host::set_response_header(k, Some(v));
        }
        if end_of_stream {
            return;
        }
        host::set_response_header("content-type", Some("application/json"));
        host::set_response_header("content-length", None);
        self.response = ResponseBody::EnvoyReply(er.reply.body);
    }

    fn append_breaker_series(&mut self, gateway: &Gateway, body_size: usize) {
        let body = host::body(BufferType::HttpResponseBody, body_size);
        let servers: Vec<&str> = gateway.config().servers.iter().map(|s| s.name.as_str()).collect();
        let extra = ops::breaker_series(&String::from_utf8_lossy(&body), &servers);
        let mut new = body;
        if !new.is_empty() && !new.ends_with(b"\n") {
            new.push(b'\n');
        }
        new.extend_from_slice(extra.as_bytes());
        if !host::replace_body(BufferType::HttpResponseBody, body_size, &new) {
            host::log(LogLevel::Error, "mcpx: could not append the breaker series to /metrics");
        }
    }

    /// Counts the finished MCP request with bounded labels.
    fn count(&self, gateway: &Gateway) {
        if self.attrs.decision.is_none() {
            return; // not an MCP request
        }
        let config = gateway.config();
        let server = self.attrs.server.as_deref().map_or_else(|| "_unknown".to_string(), names::label);
        let method = ops::method_label(self.attrs.method.as_deref());
        let tool = match (self.attrs.method.as_deref(), self.attrs.tool.as_deref(), self.attrs.server.as_deref()) {
            (Some("tools/call" | "batch"), Some(t), Some(s)) => {
                Some(self.tool_label.clone().unwrap_or_else(|| tool_label(gateway, s, t)))
            }
            _ => None,
        };
        let client = ops::client_label(config, self.attrs.client.as_deref());
        let status = host::property_u64(&["response", "code"]).unwrap_or(0);
        let duration = crate::clock::now_ms().saturating_sub(self.started_ms);
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

/// A warn log line per violation, at once (the audit event is written when
/// the request ends); at most `MAX_NAMED_VIOLATIONS` lines per answer, then
/// one line with the count. `action`: what the gateway did with the tools.
fn log_violations(server: &str, violations: &[integrity::Violation], action: &str) {
    let short = |h: &Option<String>| h.as_deref().map_or("-".to_string(), |h| h.chars().take(16).collect());
    let named = inspect::MAX_NAMED_VIOLATIONS;
    for v in violations.iter().take(named) {
        host::log(
            LogLevel::Warn,
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
        host::log(
            LogLevel::Warn,
            &format!("mcpx: integrity violation: {more} more on server {server} in the same answer, action={action}"),
        );
    }
}

/// Replaces a buffered body, logging (never panicking) when Envoy refuses.
fn replace_whole_body(body_size: usize, new: &[u8], what: &str) {
    if !host::replace_body(BufferType::HttpResponseBody, body_size, new) {
        host::log(LogLevel::Error, &format!("mcpx: could not rewrite {what}"));
    }
}

impl Context for HttpFilter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Phase::Health(check) = &mut self.phase else { return };
        if check.on_response(token_id, body_size) && check.done() {
            let reply = check.reply();
            self.phase = Phase::Idle;
            self.reply(&reply);
        }
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "crash-probe")]
        super::crash_probe::crash_if_asked();
        if ablation::skip(Part::All) {
            return Action::Continue;
        }
        let Some(gateway) = self.gateway.clone() else {
            // No valid configuration: refuse rather than pass unchecked.
            return self.reply(&Reply::error(503, code::UNAVAILABLE, "gateway not configured", &ReplyTo::Http));
        };
        let credential: Vec<&str> = gateway.credential_header().into_iter().collect();
        let headers = match host::request_headers(&credential) {
            Ok(h) => h,
            Err(reply) => {
                self.attrs.decision = Some(Decision::Error);
                // 400: a header the gateway reads is not UTF-8; 500: Envoy
                // would not hand over the headers.
                self.attrs.reason = Some(if reply.status == 400 { "bad_request" } else { "host_error" }.into());
                return self.reply(&reply);
            }
        };
        if ablation::skip(Part::AfterHeaders) {
            return Action::Continue;
        }
        let head = RequestHead { headers: &headers };
        if self.control {
            return self.reply(&control::handle(&head, &mut SharedStore));
        }
        if !ablation::skip(Part::Metrics) {
            self.started_ms = crate::clock::now_ms();
        }
        let verdict = {
            let admission = gateway.admit(&head, &mut self.attrs);
            for name in admission.remove {
                host::set_request_header(name, None);
            }
            admission.verdict
        };
        match verdict {
            Admit::Continue => {}
            Admit::ServeMetrics => {
                self.response = ResponseBody::Metrics;
                return Action::Continue;
            }
            Admit::Reply(r) => return self.reply(&r),
        }
        self.handle_head(&gateway, headers, end_of_stream, None, None)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Waiting for keys: keep buffering; never let the body run ahead.
        if let (Some(gateway), Phase::KeyWait(w)) = (self.gateway.clone(), &mut self.phase) {
            if !gateway.body_within_limit(body_size) {
                self.phase = Phase::Idle;
                return self.reply(&gateway.too_large());
            }
            if end_of_stream {
                w.body_done = Some(body_size);
            }
            return Action::Pause;
        }
        let (Some(gateway), Phase::ReadingBody(_)) = (self.gateway.clone(), &self.phase) else {
            return Action::Continue;
        };
        if !gateway.body_within_limit(body_size) {
            self.phase = Phase::Idle;
            return self.reply(&gateway.too_large());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Phase::ReadingBody(req) = std::mem::take(&mut self.phase) else { return Action::Continue };
        let body = host::body(BufferType::HttpRequestBody, body_size);
        if ablation::stops_after_body(&body) {
            return Action::Continue;
        }
        self.decide_body(&gateway, req, &body)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the request. A body still held (for keys or for the
        // decision) must not be released by a Continue here: that would
        // forward it unchecked.
        const ALL: usize = u32::MAX as usize;
        if let Phase::KeyWait(w) = &mut self.phase {
            w.body_done = Some(ALL);
            return Action::Pause;
        }
        let (Some(gateway), Phase::ReadingBody(_)) = (self.gateway.clone(), &self.phase) else {
            return Action::Continue;
        };
        let Phase::ReadingBody(req) = std::mem::take(&mut self.phase) else { return Action::Continue };
        let body = host::body(BufferType::HttpRequestBody, ALL);
        if !gateway.body_within_limit(body.len()) {
            return self.reply(&gateway.too_large());
        }
        self.decide_body(&gateway, req, &body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone().filter(|_| !ablation::skip(Part::Response)) else {
            return Action::Continue;
        };
        if matches!(self.response, ResponseBody::Metrics) {
            if end_of_stream {
                self.response = ResponseBody::PassThrough;
            } else {
                // The body grows by the derived series.
                host::set_response_header("content-length", None);
            }
            return Action::Continue;
        }
        if !matches!(self.phase, Phase::Forwarded(..)) {
            return Action::Continue;
        }
        let status = host::response_header(":status").unwrap_or_default();
        // Envoy's own replies (429, 503, ...) are errors: a 2xx came from
        // the backend, so the details need not be read for it.
        if !status.starts_with('2') {
            let details = host::property_string(&["response", "code_details"]);
            if ops::is_envoy_reply(&details) {
                self.envelope_envoy_reply(&gateway, &details, end_of_stream);
                return Action::Continue;
            }
        }
        if !gateway.inspects_lists() {
            return Action::Continue;
        }
        // Read only when it can matter: a redirect is refused bodiless too.
        let content_type = if status.starts_with('2') && !end_of_stream {
            host::response_header("content-type").unwrap_or_default()
        } else {
            String::new()
        };
        let list_request = matches!(&self.phase, Phase::Forwarded(_, ResponsePlan::FilterToolsList { list_ids }) if !list_ids.is_empty());
        match response::classify(&status, &content_type, end_of_stream, list_request) {
            response::Read::PassThrough => Action::Continue,
            response::Read::Refuse { reason, why } => self.refuse_answer(reason, &why, end_of_stream),
            response::Read::Sse { drop_ids } => {
                // Inspect the events as they pass; their length changes, so
                // drop Content-Length.
                host::set_response_header("content-length", None);
                self.response =
                    ResponseBody::Sse(if drop_ids { SseRewriter::dropping_ids() } else { SseRewriter::default() });
                Action::Continue
            }
            response::Read::BufferJson => {
                // Hold the headers until the body is inspected, so
                // Content-Length (and the status, when refused) can be corrected.
                self.response = ResponseBody::BufferJson;
                Action::Pause
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone() else { return Action::Continue };
        match std::mem::take(&mut self.response) {
            ResponseBody::PassThrough => Action::Continue,
            // Whole-body rewrites wait for the end of the stream.
            r @ (ResponseBody::BufferJson
            | ResponseBody::EnvoyReply(_)
            | ResponseBody::Refused(_)
            | ResponseBody::Metrics)
                if !end_of_stream =>
            {
                self.response = r;
                Action::Pause
            }
            ResponseBody::BufferJson => self.finish_json(&gateway, body_size),
            ResponseBody::EnvoyReply(body) | ResponseBody::Refused(body) => {
                replace_whole_body(body_size, body.as_bytes(), "an Envoy reply");
                Action::Continue
            }
            ResponseBody::Metrics => {
                self.append_breaker_series(&gateway, body_size);
                Action::Continue
            }
            ResponseBody::Sse(rewriter) => self.sse_chunk(&gateway, rewriter, body_size, end_of_stream),
            ResponseBody::Dropped => {
                self.response = ResponseBody::Dropped;
                if body_size > 0 {
                    replace_whole_body(body_size, &[], "the rest of an uninspectable stream");
                }
                Action::Continue
            }
        }
    }

    fn on_log(&mut self) {
        if let Some(gateway) = self.gateway.clone().filter(|_| !ablation::skip(Part::Metrics)) {
            self.count(&gateway);
        }
    }
}

/// The per-client bucket key (charged `x-mcpx-hits`, like the global bucket).
fn set_client_key(gateway: &Gateway, req: &McpRequest) {
    if gateway.config().rate_limit.per_client {
        host::set_request_header(
            ops::RATE_LIMIT_CLIENT_HEADER,
            Some(&ops::rate_limit_client_key(req.identity.as_deref())),
        );
    }
}
