//! The per-request context: fetches headers and bodies, hands them to
//! [`Gateway`], and carries out its outcome.

use super::health::HealthCheck;
use super::host;
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan};
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
    /// A `/health` request waiting for its probes.
    health: Option<HealthCheck>,
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>) -> Self {
        Self {
            gateway,
            awaiting_body: None,
            forwarded: None,
            buffering_response: false,
            attrs: Attributes::default(),
            health: None,
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
        match gateway.on_request_body(&req, body, &mut self.attrs) {
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
        let Some(headers) = host::request_headers() else {
            return self.reply(&Reply::error(500, code::UNAVAILABLE, "could not read request headers", &ReplyTo::Http));
        };
        let head = RequestHead { headers: &headers };
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
            HeadOutcome::Health(detail) => {
                let check = HealthCheck::start(&gateway, detail);
                if check.done() {
                    return self.reply(&check.reply());
                }
                self.health = Some(check);
                Action::Pause
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
        let (Some(gateway), Some((req, ResponsePlan::FilterToolsList { list_ids }))) =
            (self.gateway.clone(), self.forwarded.as_ref())
        else {
            return Action::Continue;
        };
        let body = host::body(BufferType::HttpResponseBody, body_size);
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
}
