//! The per-request context: fetches headers and bodies, hands them to
//! [`Gateway`], and carries out its outcome.

use super::host;
use super::shared::{self, SharedStore};
use crate::config::IntegrityMode;
use crate::control;
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan};
use crate::inspect::Inspection;
use crate::integrity;
use crate::sse::SseRewriter;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::rc::Rc;

/// How the response body of a forwarded request is handled.
#[derive(Default)]
enum ResponseBody {
    /// Streamed through untouched (everything but an inspected tools/list).
    #[default]
    PassThrough,
    /// A JSON tools/list: buffered whole, headers held for Content-Length.
    BufferJson,
    /// A tools/list answered as `text/event-stream`: inspected event by event.
    Sse(SseRewriter),
    /// The SSE list could not be inspected; an error event was sent and the
    /// rest of the stream is dropped.
    Dropped,
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
    /// Integrity violations seen in this response, for the `mcp_integrity` attribute.
    integrity_seen: Vec<String>,
    attrs: Attributes,
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>, control: bool) -> Self {
        Self {
            gateway,
            awaiting_body: None,
            forwarded: None,
            response: ResponseBody::PassThrough,
            control,
            integrity_seen: Vec::new(),
            attrs: Attributes::default(),
        }
    }

    fn reply(&mut self, reply: &Reply) -> Action {
        self.publish_attributes();
        host::send(reply);
        Action::Pause
    }

    /// Hands the request's MCP facts to Envoy (access logs, stats).
    fn publish_attributes(&mut self) {
        let a = std::mem::take(&mut self.attrs);
        let fields = [
            ("mcp_server", a.server.as_deref()),
            ("mcp_method", a.method.as_deref()),
            ("mcp_tool", a.tool.as_deref()),
            ("mcp_client", a.client.as_deref()),
            ("mcp_decision", a.decision),
            ("mcp_reason", a.reason.as_deref()),
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
                self.publish_attributes();
                self.forwarded = Some((req, f.response));
                Action::Continue
            }
        }
    }

    /// Audits what inspecting a list found: log lines, counters, attribute.
    fn report(&mut self, gateway: &Gateway, server: &str, found: &Inspection) {
        if let Some(e) = &found.store_error {
            host::log(LogLevel::Warn, &format!("mcpx: integrity baseline unavailable, list passed unchecked: {e}"));
        }
        if found.violations.is_empty() {
            return;
        }
        let mode = gateway.config().inspection.tool_integrity;
        let action = if mode == IntegrityMode::Enforce { "removed_from_list" } else { "passed_warn" };
        shared::report(server, &found.violations, action);
        self.integrity_seen.extend(found.violations.iter().map(|v| format!("{}:{}", v.kind.as_str(), v.tool)));
        host::set_attribute("mcp_integrity", &self.integrity_seen.join(","));
    }

    /// The buffered JSON tools/list, whole.
    fn finish_json_list(&mut self, gateway: &Gateway, body_size: usize) -> Action {
        let Some((req, ResponsePlan::FilterToolsList { list_ids })) = self.forwarded.clone() else {
            return Action::Continue;
        };
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
                host::set_response_header(":status", Some(&reply.status.to_string()));
                host::set_response_header("content-type", Some("application/json"));
                reply.body.into_bytes()
            }
        };
        if host::replace_body(BufferType::HttpResponseBody, body_size, &new) {
            host::set_response_header("content-length", Some(&new.len().to_string()));
        } else {
            host::log(LogLevel::Error, "mcpx: could not rewrite a tools/list response");
        }
        Action::Continue
    }

    /// One chunk of a tools/list answered as an event stream: complete events
    /// go on at once (inspected), an unfinished one waits for the next chunk.
    fn sse_chunk(&mut self, gateway: &Gateway, mut rewriter: SseRewriter, body_size: usize, eos: bool) -> Action {
        let Some((req, ResponsePlan::FilterToolsList { list_ids })) = self.forwarded.clone() else {
            return Action::Continue;
        };
        let Some(inspector) = gateway.list_inspector(&req) else {
            return Action::Continue;
        };
        let chunk = host::body(BufferType::HttpResponseBody, body_size);
        let mut found = Vec::new();
        let out = rewriter.feed(&chunk, eos, |data| {
            if data.iter().all(u8::is_ascii_whitespace) {
                // e.g. the empty priming event of a resumable stream.
                return Ok(None);
            }
            let f = inspector.inspect_json(data, &list_ids, &mut SharedStore)?;
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
                self.response = ResponseBody::Dropped;
                let reply = Gateway::uninspectable(&list_ids, &e.0);
                format!("event: message\ndata: {}\n\n", reply.body).into_bytes()
            }
        };
        if out != chunk && !host::replace_body(BufferType::HttpResponseBody, body_size, &out) {
            host::log(LogLevel::Error, "mcpx: could not rewrite a tools/list event stream");
        }
        Action::Continue
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
        let head = RequestHead { headers: &headers };
        if self.control {
            return self.reply(&control::handle(&head, &mut SharedStore));
        }
        for name in head.internal_headers() {
            host::set_request_header(name, None);
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
        if end_of_stream || !matches!(&self.forwarded, Some((_, ResponsePlan::FilterToolsList { .. }))) {
            return Action::Continue;
        }
        // Clients act only on a 2xx answer's result; anything else (e.g.
        // Envoy's own 503 or 429) passes as it is.
        if !host::response_header(":status").is_some_and(|s| s.starts_with('2')) {
            return Action::Continue;
        }
        let content_type = host::response_header("content-type").unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/event-stream") {
            // The backend ignored the pinned Accept. Inspect the events as
            // they pass; their length changes, so drop Content-Length. Event
            // ids go too: resuming with Last-Event-ID would replay the list on
            // a GET stream, which is not inspected.
            host::set_response_header("content-length", None);
            self.response = ResponseBody::Sse(SseRewriter::dropping_ids());
            return Action::Continue;
        }
        // Hold the headers until the body is rewritten, so Content-Length
        // can be corrected.
        self.response = ResponseBody::BufferJson;
        Action::Pause
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone() else { return Action::Continue };
        match std::mem::take(&mut self.response) {
            ResponseBody::PassThrough => Action::Continue,
            ResponseBody::BufferJson if !end_of_stream => {
                self.response = ResponseBody::BufferJson;
                Action::Pause
            }
            ResponseBody::BufferJson => self.finish_json_list(&gateway, body_size),
            ResponseBody::Sse(rewriter) => self.sse_chunk(&gateway, rewriter, body_size, end_of_stream),
            ResponseBody::Dropped => {
                self.response = ResponseBody::Dropped;
                if body_size > 0 && !host::replace_body(BufferType::HttpResponseBody, body_size, &[]) {
                    host::log(LogLevel::Error, "mcpx: could not drop the rest of an uninspectable stream");
                }
                Action::Continue
            }
        }
    }
}
