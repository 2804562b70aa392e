//! The per-request context: fetches headers and bodies, hands them to
//! [`Gateway`], and carries out its outcome.

use super::health::HealthCheck;
use super::shared::SharedStore;
use super::{host, known_tools, metrics};
use crate::config::IntegrityMode;
use crate::control;
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::{
    Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan, MCP_PREFIX,
};
use crate::inspect::Inspection;
use crate::integrity;
use crate::ops;
use crate::sse::{FeedError, SseRewriter};
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

pub struct HttpFilter {
    gateway: Option<Rc<Gateway>>,
    /// Set while an MCP POST body is being buffered.
    awaiting_body: Option<McpRequest>,
    /// The request, once forwarded, and what to do with its response.
    forwarded: Option<(McpRequest, ResponsePlan)>,
    response: ResponseBody,
    /// Serves the operator endpoints instead of MCP (control listener).
    control: bool,
    attrs: Attributes,
    /// Whom an error Envoy makes later (429, 503) must answer.
    reply_to: ReplyTo,
    started_ms: u64,
    /// The bounded label of the called tool, computed once per request.
    tool_label: Option<String>,
    /// OAuth: held until the key set is loaded (see `waiting.rs`).
    key_wait: Option<KeyWait>,
    /// A `/health` request waiting for its probes.
    health: Option<HealthCheck>,
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>, control: bool) -> Self {
        Self {
            gateway,
            awaiting_body: None,
            forwarded: None,
            response: ResponseBody::PassThrough,
            control,
            attrs: Attributes::default(),
            reply_to: ReplyTo::Http,
            started_ms: 0,
            tool_label: None,
            health: None,
            key_wait: None,
        }
    }

    pub fn waiting_for_keys(&self) -> bool {
        self.key_wait.is_some()
    }

    pub fn wait_is_over(&self) -> bool {
        self.key_wait.as_ref().is_some_and(|w| crate::auth::now_secs() >= w.deadline)
    }

    /// Called (as this request's context) when keys arrived or the wait is
    /// over: runs the headers phase again and carries on from where it was.
    pub fn wake(&mut self) {
        let (Some(gateway), Some(w)) = (self.gateway.clone(), self.key_wait.take()) else { return };
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
                let now = crate::auth::now_secs();
                let deadline = deadline.unwrap_or(now + KEY_WAIT_SECS);
                if now >= deadline {
                    return self.reply(&reply);
                }
                self.attrs = Attributes::default();
                self.key_wait = Some(KeyWait { headers, headers_end_stream: end_of_stream, body_done, deadline });
                Action::Pause
            }
            HeadOutcome::Forward(_) if !end_of_stream => {
                // GET / DELETE with a body (HTTP/2 data, or one the headers did not announce).
                let method = self.attrs.method.clone().unwrap_or_default();
                let reply = Gateway::body_not_allowed(&method, &mut self.attrs);
                self.reply(&reply)
            }
            HeadOutcome::Forward(req) => {
                if gateway.config().rate_limit.enabled {
                    host::set_request_header(ops::RATE_LIMIT_HITS_HEADER, Some("1"));
                    set_client_key(gateway, &req);
                }
                if let Some((name, value)) = gateway.bridge_identity(&req) {
                    host::set_request_header(name, Some(&value));
                }
                self.publish_attributes();
                self.forwarded = Some((req, ResponsePlan::PassThrough));
                Action::Continue
            }
            HeadOutcome::Health(detail) => {
                let check = HealthCheck::start(gateway, detail);
                if check.done() {
                    return self.reply(&check.reply());
                }
                self.health = Some(check);
                Action::Pause
            }
            HeadOutcome::ReadBody(req) if end_of_stream => self.decide_body(gateway, req, &[]),
            HeadOutcome::ReadBody(req) => match body_done {
                Some(size) => {
                    let body = host::body(BufferType::HttpRequestBody, size);
                    self.decide_body(gateway, req, &body)
                }
                None => {
                    self.awaiting_body = Some(req);
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
        // Read only in enforce mode, only for tools/call: one small shared-data read.
        let lookup = |server: &str, tool: &str| integrity::recorded_violation(&SharedStore, server, tool);
        match gateway.on_request_body_with(&req, body, &mut self.attrs, &lookup) {
            BodyOutcome::Reply(r) => self.reply(&r),
            BodyOutcome::Forward(f) => {
                for (name, value) in &f.set_headers {
                    host::set_request_header(name, Some(value));
                }
                let rl = &gateway.config().rate_limit;
                if rl.enabled {
                    // Tokens: one per message (a batch costs what its messages would alone).
                    host::set_request_header(ops::RATE_LIMIT_HITS_HEADER, Some(&f.hits.max(1).to_string()));
                    set_client_key(gateway, &req);
                }
                if let (true, true, Some(tool), true) =
                    (rl.enabled, rl.per_tool, self.attrs.tool.as_deref(), f.tool_hits > 0)
                {
                    // The per-tool bucket key and its cost.
                    let label = tool_label(gateway, &req.server, tool);
                    host::set_request_header(ops::RATE_LIMIT_HEADER, Some(&ops::rate_limit_key(&req.server, &label)));
                    host::set_request_header(ops::RATE_LIMIT_TOOL_HITS_HEADER, Some(&f.tool_hits.to_string()));
                    self.tool_label = Some(label);
                }
                self.reply_to = f.reply_to;
                self.publish_attributes();
                self.forwarded = Some((req, f.response));
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
        let server_label = ops::sanitize(server);
        for ((tool, kind), n) in counts {
            metrics::integrity_violation(&server_label, &tool, kind, n);
        }
        self.attrs.integrity = crate::inspect::audit_note(self.attrs.integrity.as_deref(), &found.violations);
        if let Some(n) = &self.attrs.integrity {
            host::set_attribute("mcp_integrity", n);
            host::set_attribute("mcp_integrity_action", action);
        }
    }

    /// The request's list ids (for the id of an error), if it asked for a
    /// list the request pinned; empty for every other request.
    fn list_ids(&self) -> Vec<serde_json::Value> {
        match &self.forwarded {
            Some((_, ResponsePlan::FilterToolsList { list_ids })) => list_ids.clone(),
            _ => Vec::new(),
        }
    }

    /// A buffered JSON answer, whole: every list in it inspected.
    fn finish_json(&mut self, gateway: &Gateway, body_size: usize) -> Action {
        let Some((req, _)) = self.forwarded.clone() else { return Action::Continue };
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
        let Some((req, _)) = self.forwarded.clone() else { return Action::Continue };
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
            Ok::<_, crate::inspect::InspectError>(body)
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
        self.attrs.decision = Some("error");
        self.attrs.reason = Some(reason.to_string());
        host::set_attribute("mcp_decision", "error");
        host::set_attribute("mcp_reason", reason);
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

/// A warn log line per violation, at once (the audit event is written when
/// the request ends); at most `MAX_NAMED_VIOLATIONS` lines per answer, then
/// one line with the count. `action`: what the gateway did with the tools.
fn log_violations(server: &str, violations: &[integrity::Violation], action: &str) {
    let short = |h: &Option<String>| h.as_deref().map_or("-".to_string(), |h| h.chars().take(16).collect());
    let named = crate::inspect::MAX_NAMED_VIOLATIONS;
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
        let Some(check) = self.health.as_mut() else { return };
        if check.on_response(token_id, body_size) && check.done() {
            let reply = check.reply();
            self.health = None;
            self.reply(&reply);
        }
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone() else {
            // No valid configuration: refuse rather than pass unchecked.
            return self.reply(&Reply::error(503, code::UNAVAILABLE, "gateway not configured", &ReplyTo::Http));
        };
        let credential: Vec<&str> = gateway.credential_header().into_iter().collect();
        let headers = match host::request_headers(&credential) {
            Ok(h) => h,
            Err(reply) => {
                self.attrs.decision = Some("error");
                // 400: a header the gateway reads is not UTF-8; 500: Envoy
                // would not hand over the headers.
                self.attrs.reason = Some(if reply.status == 400 { "bad_request" } else { "host_error" }.into());
                return self.reply(&reply);
            }
        };
        let head = RequestHead { headers: &headers };
        if self.control {
            return self.reply(&control::handle(&head, &mut SharedStore));
        }
        self.started_ms = host::now_ms();
        for name in head.internal_headers() {
            host::set_request_header(name, None);
        }
        // No token passthrough: the gateway's credential never reaches a
        // backend. Removed only when sent, like the internal headers above:
        // every header change is a host call and a route re-match.
        if let Some(name) = gateway.credential_header().filter(|n| head.get(n).is_some()) {
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
                    self.response = ResponseBody::Metrics;
                    Action::Continue
                }
                ops::MetricsAccess::Refuse(r) => self.reply(&r),
            };
        }
        self.handle_head(&gateway, headers, end_of_stream, None, None)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Waiting for keys: keep buffering; never let the body run ahead.
        if let (Some(gateway), Some(w)) = (self.gateway.clone(), self.key_wait.as_mut()) {
            if !gateway.body_within_limit(body_size) {
                self.key_wait = None;
                return self.reply(&gateway.too_large());
            }
            if end_of_stream {
                w.body_done = Some(body_size);
            }
            return Action::Pause;
        }
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

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        // Trailers end the request. A body still held (for keys or for the
        // decision) must not be released by a Continue here: that would
        // forward it unchecked.
        const ALL: usize = u32::MAX as usize;
        if let Some(w) = self.key_wait.as_mut() {
            w.body_done = Some(ALL);
            return Action::Pause;
        }
        let (Some(gateway), Some(req)) = (self.gateway.clone(), self.awaiting_body.take()) else {
            return Action::Continue;
        };
        let body = host::body(BufferType::HttpRequestBody, ALL);
        if !gateway.body_within_limit(body.len()) {
            return self.reply(&gateway.too_large());
        }
        self.decide_body(&gateway, req, &body)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone() else { return Action::Continue };
        if matches!(self.response, ResponseBody::Metrics) {
            if end_of_stream {
                self.response = ResponseBody::PassThrough;
            } else {
                // The body grows by the derived series.
                host::set_response_header("content-length", None);
            }
            return Action::Continue;
        }
        if self.forwarded.is_some() {
            let details = host::property_string(&["response", "code_details"]);
            if ops::is_envoy_reply(&details) {
                self.envelope_envoy_reply(&gateway, &details, end_of_stream);
                return Action::Continue;
            }
        }
        if self.forwarded.is_none() || !gateway.inspects_lists() {
            return Action::Continue;
        }
        let status = host::response_header(":status").unwrap_or_default();
        if status.starts_with('3') {
            let why = format!("the backend answered {status} (a redirect); MCP answers must come from the gateway");
            return self.refuse_answer("redirect", &why, end_of_stream);
        }
        // Clients read a message only from a 2xx answer with a body.
        if end_of_stream || !status.starts_with('2') {
            return Action::Continue;
        }
        // Clients pick the parser by substring of Content-Type (the
        // TypeScript SDK checks `includes`), so classify the same way.
        let content_type = host::response_header("content-type").unwrap_or_default().to_ascii_lowercase();
        let (sse, json) = (content_type.contains("text/event-stream"), content_type.contains("json"));
        if sse && json {
            let why = format!("Content-Type {content_type:?} names both JSON and an event stream");
            return self.refuse_answer("ambiguous_answer", &why, end_of_stream);
        }
        if sse {
            // Inspect the events as they pass; their length changes, so drop
            // Content-Length. A list request's event ids go too (as before
            // every stream was inspected: a resumed list is re-inspected now,
            // but a cached replay need not be offered).
            host::set_response_header("content-length", None);
            let list = !self.list_ids().is_empty();
            self.response = ResponseBody::Sse(if list { SseRewriter::dropping_ids() } else { SseRewriter::default() });
            return Action::Continue;
        }
        if !json {
            return Action::Continue; // no client parses it
        }
        // Hold the headers until the body is inspected, so Content-Length
        // (and the status, when refused) can be corrected.
        self.response = ResponseBody::BufferJson;
        Action::Pause
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
        if let Some(gateway) = self.gateway.clone() {
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
