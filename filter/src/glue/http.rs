//! The per-request context: fetches headers and bodies, hands them to
//! [`Gateway`], and carries out its outcome.

use super::host;
use crate::envelope::{code, Reply, ReplyTo};
use crate::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType};
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

pub struct HttpFilter {
    gateway: Option<Rc<Gateway>>,
    /// Set while an MCP POST body is being buffered.
    awaiting_body: Option<McpRequest>,
    /// The request, once forwarded, and what to do with its response.
    forwarded: Option<(McpRequest, ResponsePlan)>,
    /// The response body is being buffered for rewriting.
    buffering_response: bool,
    attrs: Attributes,
    key_wait: Option<KeyWait>,
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>) -> Self {
        Self {
            gateway,
            awaiting_body: None,
            forwarded: None,
            buffering_response: false,
            attrs: Attributes::default(),
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
        if action == Action::Continue && proxy_wasm::hostcalls::resume_http_request().is_err() {
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
            HeadOutcome::Forward(req) => {
                self.publish_attributes();
                self.forwarded = Some((req, ResponsePlan::PassThrough));
                Action::Continue
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
        for name in head.internal_headers() {
            host::set_request_header(name, None);
        }
        // No token passthrough: the gateway's credential never reaches a backend.
        if let Some(name) = gateway.credential_header() {
            host::set_request_header(name, None);
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
