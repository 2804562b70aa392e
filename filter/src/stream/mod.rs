//! One request through the filter, as a state machine over a [`Host`]:
//! the decisions the proxy-wasm callbacks used to make themselves. The glue
//! (`glue/http.rs`) only translates each Envoy callback into the matching
//! method here and the returned [`Action`] back; the native tests drive the
//! same methods through the in-memory [`fake::FakeHost`].
//!
//! One [`Phase`] at a time: a request waits for OAuth keys, or for its
//! body, or for its `/health` probes, or has been forwarded; never two.
//! How its answer is read is the [`ResponseBody`] beside it.
//!
//! # Layout
//!
//! - `mod.rs` — the request side: headers, the key wait, body, trailers.
//! - `response.rs` — the answer: Envoy's own replies, refusals, buffered
//!   JSON, SSE chunk by chunk, `/metrics`.
//! - `report.rs` — what the answer's inspection found (logs, counters,
//!   audit attributes) and the request's metrics when it ends.
//! - `host.rs` — the [`Host`] trait; `fake.rs` — the recording fake.
//! - `health.rs`, `known_tools.rs`, `metrics.rs` — `/health` probes, the
//!   tools each backend advertised, the `mcpx_*` series.
//! - `configure.rs` — what the root does with a plugin configuration.
//! - `jwks.rs` — the OAuth key-set fetcher the root's ticks drive (one
//!   fetch per floor interval for all VMs, the document shared).

// Native only: the tests' host, never in the `.wasm`.
pub mod configure;
#[cfg(not(target_arch = "wasm32"))]
pub mod fake;
pub mod health;
pub mod host;
pub mod jwks;
pub mod known_tools;
pub mod metrics;
mod report;
mod response;
#[cfg(test)]
mod tests;

pub use host::{Action, Body, Host, HostError, Level};

use crate::ablation::{self, Part};
use crate::endpoints::control;
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::ResponsePlan;
use crate::gateway::{Admit, Attributes, BodyOutcome, Decision, Gateway, HeadOutcome, McpRequest, RequestHead};
use crate::integrity;
use crate::names::{self, attr};
use crate::ops;
use crate::request::hostmap;
use crate::response::sse::SseRewriter;
use health::HealthCheck;
use std::rc::Rc;

/// How long a request waits for the first OAuth key set before its 503.
pub const KEY_WAIT_SECS: u64 = 5;

/// The body size that means "all of it" (trailers end a body whose size
/// the filter was not told).
const ALL: usize = u32::MAX as usize;

/// A request held until the OAuth keys are loaded.
pub struct KeyWait {
    headers: Vec<(String, String)>,
    headers_end_stream: bool,
    /// Set once the whole body has been buffered: its size.
    body_done: Option<usize>,
    deadline: u64,
}

/// How the response body of a request is handled.
#[derive(Default)]
pub enum ResponseBody {
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

/// Where a request is.
#[derive(Default)]
pub enum Phase {
    /// Headers not decided yet; or the request was answered here, or passes
    /// through untouched.
    #[default]
    Idle,
    /// OAuth: held until the key set is loaded.
    KeyWait(KeyWait),
    /// An MCP POST whose body is being buffered.
    ReadingBody(McpRequest),
    /// A `/health` request waiting for its probes.
    Health(HealthCheck),
    /// Forwarded, and what to do with its response.
    Forwarded(McpRequest, ResponsePlan),
}

/// The state of one request (one per proxy-wasm HTTP context).
pub struct Stream {
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
    /// The `:status` of an answer the response phase let through with the
    /// status unchanged (the metrics' `status_code`); `None`: ask Envoy
    /// (`response.code`) when the request ends.
    status: Option<u64>,
}

impl Stream {
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
            status: None,
        }
    }

    /// The request's audit facts so far (what `on_log` counts).
    pub fn attributes(&self) -> &Attributes {
        &self.attrs
    }

    pub fn waiting_for_keys(&self) -> bool {
        matches!(self.phase, Phase::KeyWait(_))
    }

    /// Whether a held request is due to be woken: every one once keys are
    /// loaded, otherwise only one whose wait is over (it then gets its 503).
    pub fn due_to_wake<H: Host>(&self, host: &mut H, keys_loaded: bool) -> bool {
        match &self.phase {
            Phase::KeyWait(w) => keys_loaded || host.now_ms() / 1000 >= w.deadline,
            _ => false,
        }
    }

    /// Called (as this request's context) when keys arrived or the wait is
    /// over: runs the headers phase again and carries on from where it was.
    pub fn wake<H: Host>(&mut self, host: &mut H) {
        let Some(gateway) = self.gateway.clone() else { return };
        let w = match std::mem::take(&mut self.phase) {
            Phase::KeyWait(w) => w,
            other => {
                self.phase = other;
                return;
            }
        };
        let action = self.handle_head(host, &gateway, w.headers, w.headers_end_stream, w.body_done, Some(w.deadline));
        if action == Action::Continue && host.resume_request().is_err() {
            host.log(Level::Error, "mcpx: could not resume a request after the key wait");
        }
    }

    pub fn on_request_headers<H: Host>(&mut self, host: &mut H, end_of_stream: bool) -> Action {
        if ablation::skip(Part::All) {
            return Action::Continue;
        }
        let Some(gateway) = self.gateway.clone() else {
            // No valid configuration: refuse rather than pass unchecked.
            return self.reply(host, &Reply::error(503, code::UNAVAILABLE, "gateway not configured", &ReplyTo::Http));
        };
        let credential: Vec<&str> = gateway.credential_header().into_iter().collect();
        let headers = match request_headers(host, &credential) {
            Ok(h) => h,
            Err(reply) => {
                self.attrs.decision = Some(Decision::Error);
                // 400: a header the gateway reads is not UTF-8; 500: Envoy
                // would not hand over the headers.
                self.attrs.reason = Some(if reply.status == 400 { "bad_request" } else { "host_error" }.into());
                return self.reply(host, &reply);
            }
        };
        if ablation::skip(Part::AfterHeaders) {
            return Action::Continue;
        }
        let head = RequestHead { headers: &headers };
        if self.control {
            let reply = control::handle(&head, host);
            return self.reply(host, &reply);
        }
        if !ablation::skip(Part::Metrics) {
            self.started_ms = host.now_ms();
        }
        let verdict = {
            let admission = gateway.admit(&head, &mut self.attrs);
            for name in admission.remove {
                host.set_request_header(name, None);
            }
            admission.verdict
        };
        match verdict {
            Admit::Continue => {}
            Admit::ServeMetrics => {
                self.response = ResponseBody::Metrics;
                return Action::Continue;
            }
            Admit::Reply(r) => return self.reply(host, &r),
        }
        self.handle_head(host, &gateway, headers, end_of_stream, None, None)
    }

    /// The headers phase. `body_done`: the body was already buffered while
    /// waiting for keys; `deadline`: the end of that wait, if waiting.
    fn handle_head<H: Host>(
        &mut self,
        host: &mut H,
        gateway: &Gateway,
        headers: Vec<(String, String)>,
        end_of_stream: bool,
        body_done: Option<usize>,
        deadline: Option<u64>,
    ) -> Action {
        let head = RequestHead { headers: &headers };
        match gateway.on_request_headers(&head, &mut self.attrs) {
            HeadOutcome::PassThrough => Action::Continue,
            HeadOutcome::Reply(r) => self.reply(host, &r),
            HeadOutcome::AwaitKeys(reply) => {
                let now = host.now_ms() / 1000;
                let deadline = deadline.unwrap_or(now + KEY_WAIT_SECS);
                if now >= deadline {
                    return self.reply(host, &reply);
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
                self.reply(host, &reply)
            }
            HeadOutcome::Forward(req) => {
                if gateway.config().rate_limit.enabled && !ablation::skip(Part::RateLimitHeaders) {
                    host.set_request_header(names::RATE_LIMIT_HITS_HEADER, Some("1"));
                    set_client_key(host, gateway, &req);
                }
                if let Some((name, value)) = gateway.bridge_identity(&req) {
                    host.set_request_header(name, Some(&value));
                }
                self.publish_attributes(host);
                self.phase = Phase::Forwarded(req, ResponsePlan::PassThrough);
                Action::Continue
            }
            HeadOutcome::Health(detail) => {
                let check = HealthCheck::start(host, gateway, detail);
                if check.done() {
                    let reply = check.reply();
                    return self.reply(host, &reply);
                }
                self.phase = Phase::Health(check);
                Action::Pause
            }
            HeadOutcome::ReadBody(req) if end_of_stream => self.decide_body(host, gateway, req, &[]),
            HeadOutcome::ReadBody(req) => match body_done {
                Some(size) => {
                    let body = host.body(Body::Request, size);
                    self.decide_body(host, gateway, req, &body)
                }
                None => {
                    self.phase = Phase::ReadingBody(req);
                    Action::Pause
                }
            },
        }
    }

    fn reply<H: Host>(&mut self, host: &mut H, reply: &Reply) -> Action {
        self.publish_attributes(host);
        host.send_reply(reply);
        Action::Pause
    }

    /// Hands the request's MCP facts to Envoy (access logs, tracing); they
    /// stay in `attrs` for the metrics counted in `on_log`.
    fn publish_attributes<H: Host>(&mut self, host: &mut H) {
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
                host.set_attribute(name, v);
            }
        }
    }

    fn decide_body<H: Host>(&mut self, host: &mut H, gateway: &Gateway, req: McpRequest, body: &[u8]) -> Action {
        let outcome = {
            let store: &H = host;
            // Read only in enforce mode, only for tools/call: one small shared-data read.
            let lookup = |server: &str, tool: &str| integrity::recorded_violation(store, server, tool);
            // Read only for 2026-07-28 tools/call: the tool's x-mcp-header map.
            let tool_headers =
                |tool: &str| crate::headers::paramheaders::lookup(store, &req.server, tool).map_err(|e| e.to_string());
            gateway.on_request_body_checked(&req, body, &mut self.attrs, &lookup, &tool_headers)
        };
        match outcome {
            BodyOutcome::Reply(r) => self.reply(host, &r),
            BodyOutcome::Forward(f) => {
                for (name, value) in &f.set_headers {
                    host.set_request_header(name, Some(value));
                }
                let rl = &gateway.config().rate_limit;
                let rl_on = rl.enabled && !ablation::skip(Part::RateLimitHeaders);
                let hits = f.hits.max(1);
                if rl_on {
                    // Tokens: one per message (a batch costs what its messages would alone).
                    host.set_request_header(names::RATE_LIMIT_HITS_HEADER, Some(&hits.to_string()));
                    set_client_key(host, gateway, &req);
                }
                if let (true, true, Some(tool), true) =
                    (rl_on, rl.per_tool, self.attrs.tool.as_deref(), f.tool_hits > 0)
                {
                    // The per-tool bucket key and its cost (the cost header only
                    // when it differs from x-mcpx-hits, which Envoy falls back to).
                    let label = report::tool_label(host, gateway, &req.server, tool);
                    host.set_request_header(names::RATE_LIMIT_HEADER, Some(&ops::rate_limit_key(&req.server, &label)));
                    if let Some(tool_hits) = ops::tool_hits_header(hits, f.tool_hits) {
                        host.set_request_header(names::RATE_LIMIT_TOOL_HITS_HEADER, Some(&tool_hits));
                    }
                    self.tool_label = Some(label);
                }
                self.reply_to = f.reply_to;
                self.publish_attributes(host);
                self.phase = Phase::Forwarded(req, f.response);
                Action::Continue
            }
        }
    }

    pub fn on_request_body<H: Host>(&mut self, host: &mut H, body_size: usize, end_of_stream: bool) -> Action {
        // Waiting for keys: keep buffering; never let the body run ahead.
        if let (Some(gateway), Phase::KeyWait(w)) = (self.gateway.clone(), &mut self.phase) {
            if !gateway.body_within_limit(body_size) {
                self.phase = Phase::Idle;
                return self.reply(host, &gateway.too_large());
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
            return self.reply(host, &gateway.too_large());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let Phase::ReadingBody(req) = std::mem::take(&mut self.phase) else { return Action::Continue };
        let body = host.body(Body::Request, body_size);
        if ablation::stops_after_body(&body) {
            return Action::Continue;
        }
        self.decide_body(host, &gateway, req, &body)
    }

    pub fn on_request_trailers<H: Host>(&mut self, host: &mut H) -> Action {
        // Trailers end the request. A body still held (for keys or for the
        // decision) must not be released by a Continue here: that would
        // forward it unchecked.
        if let Phase::KeyWait(w) = &mut self.phase {
            w.body_done = Some(ALL);
            return Action::Pause;
        }
        let (Some(gateway), Phase::ReadingBody(_)) = (self.gateway.clone(), &self.phase) else {
            return Action::Continue;
        };
        let Phase::ReadingBody(req) = std::mem::take(&mut self.phase) else { return Action::Continue };
        let body = host.body(Body::Request, ALL);
        if !gateway.body_within_limit(body.len()) {
            return self.reply(host, &gateway.too_large());
        }
        self.decide_body(host, &gateway, req, &body)
    }

    /// The answer to one `/health` probe; the reply once all are in.
    pub fn on_http_call_response<H: Host>(&mut self, host: &mut H, token: u32, body_size: usize) {
        let Phase::Health(check) = &mut self.phase else { return };
        if check.on_response(host, token, body_size) && check.done() {
            let reply = check.reply();
            self.phase = Phase::Idle;
            self.reply(host, &reply);
        }
    }

    /// The stream ended: count it.
    pub fn on_log<H: Host>(&mut self, host: &mut H) {
        if let Some(gateway) = self.gateway.clone().filter(|_| !ablation::skip(Part::Metrics)) {
            self.count(host, &gateway);
        }
    }
}

/// The request headers as the text the gateway decides on: `Err` is the
/// 400 to send (a header the gateway reads is not UTF-8) or the 500 when
/// Envoy would not give the headers. `extra`: the credential header.
fn request_headers<H: Host>(host: &mut H, extra: &[&str]) -> Result<Vec<(String, String)>, Reply> {
    let pairs = match host.request_header_pairs() {
        Ok(p) => p,
        Err(e) => {
            host.log(Level::Error, &format!("mcpx: could not read request headers: {e}"));
            return Err(Reply::error(500, code::UNAVAILABLE, "could not read request headers", &ReplyTo::Http));
        }
    };
    hostmap::screen(pairs, extra).map_err(|bad| {
        let msg =
            format!("request header {:?} is not valid UTF-8 text; the gateway reads it and will not guess", bad.name);
        Reply::error(400, code::INVALID_REQUEST, &msg, &ReplyTo::Http)
    })
}

/// The per-client bucket key (charged `x-mcpx-hits`, like the global bucket).
fn set_client_key<H: Host>(host: &mut H, gateway: &Gateway, req: &McpRequest) {
    if gateway.config().rate_limit.per_client {
        host.set_request_header(
            ops::RATE_LIMIT_CLIENT_HEADER,
            Some(&ops::rate_limit_client_key(req.identity.as_deref())),
        );
    }
}
