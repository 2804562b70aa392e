//! The answer's side of a request: which response callbacks apply, Envoy's
//! own replies wrapped in the envelope, refused answers, buffered JSON
//! inspected whole, event streams inspected event by event, `/metrics`.

use super::{Action, Body, Host, Level, Phase, ResponseBody, Stream};
use crate::ablation::{self, Part};
use crate::gateway::{Decision, Gateway, ResponsePlan};
use crate::names::attr;
use crate::ops;
use crate::response::sse::{FeedError, SseRewriter};

impl Stream {
    pub fn on_response_headers<H: Host>(&mut self, host: &mut H, end_of_stream: bool) -> Action {
        let Some(gateway) = self.gateway.clone().filter(|_| !ablation::skip(Part::Response)) else {
            return Action::Continue;
        };
        if matches!(self.response, ResponseBody::Metrics) {
            if end_of_stream {
                self.response = ResponseBody::PassThrough;
            } else {
                // The body grows by the derived series.
                host.set_response_header("content-length", None);
            }
            return Action::Continue;
        }
        if !matches!(self.phase, Phase::Forwarded(..)) {
            return Action::Continue;
        }
        let status = host.response_header(":status").unwrap_or_default();
        // Kept for the metrics, so `on_log` need not read `response.code`;
        // every place below that changes the status forgets it again.
        self.status = status.parse().ok();
        // Envoy's own replies (429, 503, ...) are errors: a 2xx came from
        // the backend, so the details need not be read for it.
        if !status.starts_with('2') {
            let details = host.response_code_details();
            if ops::is_envoy_reply(&details) {
                self.envelope_envoy_reply(host, &gateway, &details, end_of_stream);
                return Action::Continue;
            }
        }
        if !gateway.inspects_lists() {
            return Action::Continue;
        }
        // Read only when it can matter: a redirect is refused bodiless too.
        let content_type = if status.starts_with('2') && !end_of_stream {
            host.response_header("content-type").unwrap_or_default()
        } else {
            String::new()
        };
        let list_request = matches!(&self.phase, Phase::Forwarded(_, ResponsePlan::FilterToolsList { list_ids }) if !list_ids.is_empty());
        match crate::response::classify(&status, &content_type, end_of_stream, list_request) {
            crate::response::Read::PassThrough => Action::Continue,
            crate::response::Read::Refuse { reason, why } => self.refuse_answer(host, reason, &why, end_of_stream),
            crate::response::Read::Sse { drop_ids } => {
                // Inspect the events as they pass; their length changes, so
                // drop Content-Length.
                host.set_response_header("content-length", None);
                self.response =
                    ResponseBody::Sse(if drop_ids { SseRewriter::dropping_ids() } else { SseRewriter::default() });
                Action::Continue
            }
            crate::response::Read::BufferJson => {
                // Hold the headers until the body is inspected, so
                // Content-Length (and the status, when refused) can be corrected.
                self.response = ResponseBody::BufferJson;
                Action::Pause
            }
        }
    }

    pub fn on_response_body<H: Host>(&mut self, host: &mut H, body_size: usize, end_of_stream: bool) -> Action {
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
            ResponseBody::BufferJson => self.finish_json(host, &gateway, body_size),
            ResponseBody::EnvoyReply(body) | ResponseBody::Refused(body) => {
                replace_whole_body(host, body_size, body.as_bytes(), "an Envoy reply");
                Action::Continue
            }
            ResponseBody::Metrics => {
                self.append_breaker_series(host, &gateway, body_size);
                Action::Continue
            }
            ResponseBody::Sse(rewriter) => self.sse_chunk(host, &gateway, rewriter, body_size, end_of_stream),
            ResponseBody::Dropped => {
                self.response = ResponseBody::Dropped;
                if body_size > 0 {
                    replace_whole_body(host, body_size, &[], "the rest of an uninspectable stream");
                }
                Action::Continue
            }
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
    fn finish_json<H: Host>(&mut self, host: &mut H, gateway: &Gateway, body_size: usize) -> Action {
        let Phase::Forwarded(req, _) = &self.phase else { return Action::Continue };
        let req = req.clone();
        let list_ids = self.list_ids();
        let body = host.body(Body::Response, body_size);
        let new = match gateway.rewrite_tools_list(&req, &list_ids, &body, host) {
            Ok(found) => {
                self.report(host, gateway, &req.server, &found);
                match found.body {
                    None => return Action::Continue,
                    Some(new) => new,
                }
            }
            Err(reply) => {
                self.note_refused(host, "uninspectable_answer");
                self.status = None;
                host.set_response_header(":status", Some(&reply.status.to_string()));
                host.set_response_header("content-type", Some("application/json"));
                reply.body.into_bytes()
            }
        };
        if host.replace_body(Body::Response, body_size, &new) {
            host.set_response_header("content-length", Some(&new.len().to_string()));
        } else {
            host.log(Level::Error, "mcpx: could not rewrite an answer");
        }
        Action::Continue
    }

    /// One chunk of an event-stream answer: complete events go on at once
    /// (inspected), an unfinished one waits for the next chunk.
    fn sse_chunk<H: Host>(
        &mut self,
        host: &mut H,
        gateway: &Gateway,
        mut rewriter: SseRewriter,
        body_size: usize,
        eos: bool,
    ) -> Action {
        let Phase::Forwarded(req, _) = &self.phase else { return Action::Continue };
        let req = req.clone();
        let Some(inspector) = gateway.list_inspector(&req) else { return Action::Continue };
        let list_ids = self.list_ids();
        let chunk = host.body(Body::Response, body_size);
        let mut found = Vec::new();
        let out = rewriter.feed(&chunk, eos, |data| {
            if data.iter().all(u8::is_ascii_whitespace) {
                // e.g. the empty priming event of a resumable stream.
                return Ok(None);
            }
            let f = inspector.inspect_any(data, host)?;
            let body = f.body.clone();
            found.push(f);
            Ok::<_, crate::tools_list::inspect::InspectError>(body)
        });
        for f in &found {
            self.report(host, gateway, &req.server, f);
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
                self.note_refused(host, "uninspectable_answer");
                self.response = ResponseBody::Dropped;
                let reply = Gateway::uninspectable(&list_ids, &why);
                format!("event: message\ndata: {}\n\n", reply.body).into_bytes()
            }
        };
        if out != chunk && !host.replace_body(Body::Response, body_size, &out) {
            host.log(Level::Error, "mcpx: could not rewrite an event stream");
        }
        Action::Continue
    }

    /// Records that the gateway refused the backend's answer.
    fn note_refused<H: Host>(&mut self, host: &mut H, reason: &str) {
        self.attrs.decision = Some(Decision::Error);
        self.attrs.reason = Some(reason.to_string());
        host.set_attribute(attr::DECISION, Decision::Error.as_str());
        host.set_attribute(attr::REASON, reason);
    }

    /// Refuses the backend's answer in the headers phase (502 with the
    /// envelope): a redirect would take the client off the gateway to an
    /// answer it never inspects; an ambiguous type would be read differently
    /// by different clients.
    fn refuse_answer<H: Host>(&mut self, host: &mut H, reason: &str, why: &str, end_of_stream: bool) -> Action {
        self.note_refused(host, reason);
        let reply = Gateway::uninspectable(&self.list_ids(), why);
        self.status = None;
        host.set_response_header(":status", Some("502"));
        host.set_response_header("location", None);
        host.set_response_header("content-type", Some("application/json"));
        if end_of_stream {
            // No body to replace: the status and type say it.
            return Action::Continue;
        }
        host.set_response_header("content-length", None);
        self.response = ResponseBody::Refused(reply.body);
        Action::Continue
    }

    /// Turns a reply Envoy made after the filter let the request through
    /// (local rate limit 429, open circuit 503, overflow, connect failure)
    /// into the JSON envelope with the request's id, and records the
    /// decision (`rate_limited` is not `allow`).
    fn envelope_envoy_reply<H: Host>(&mut self, host: &mut H, gateway: &Gateway, details: &str, end_of_stream: bool) {
        self.status = None; // the envelope may carry another status
        let status = host.response_code().and_then(|c| u16::try_from(c).ok()).unwrap_or(503);
        let cooldown = gateway.config().circuit_breaker.cooldown.as_millis().div_ceil(1000);
        let mut er = ops::envoy_reply(status, details, &self.reply_to, cooldown);
        if status == 429 {
            // A global limit's window reset (`x-ratelimit-reset`) is the honest Retry-After.
            if let Some(reset) = host.response_header("x-ratelimit-reset").and_then(|v| ops::retry_after(&v)) {
                er.reply.headers.retain(|(k, _)| k != "retry-after");
                er.reply.headers.push(("retry-after".into(), reset));
            }
        }
        self.attrs.decision = Some(er.decision);
        self.attrs.reason = Some(er.reason.clone());
        host.set_attribute(attr::DECISION, er.decision.as_str());
        host.set_attribute(attr::REASON, &er.reason);
        for (k, v) in &er.reply.headers {
            host.set_response_header(k, Some(v));
        }
        if end_of_stream {
            return;
        }
        host.set_response_header("content-type", Some("application/json"));
        host.set_response_header("content-length", None);
        self.response = ResponseBody::EnvoyReply(er.reply.body);
    }

    fn append_breaker_series<H: Host>(&mut self, host: &mut H, gateway: &Gateway, body_size: usize) {
        let body = host.body(Body::Response, body_size);
        let servers: Vec<&str> = gateway.config().servers.iter().map(|s| s.name.as_str()).collect();
        let extra = ops::breaker_series(&String::from_utf8_lossy(&body), &servers);
        let mut new = body;
        if !new.is_empty() && !new.ends_with(b"\n") {
            new.push(b'\n');
        }
        new.extend_from_slice(extra.as_bytes());
        if !host.replace_body(Body::Response, body_size, &new) {
            host.log(Level::Error, "mcpx: could not append the breaker series to /metrics");
        }
    }
}

/// Replaces a buffered body, logging (never panicking) when Envoy refuses.
fn replace_whole_body<H: Host>(host: &mut H, body_size: usize, new: &[u8], what: &str) {
    if !host.replace_body(Body::Response, body_size, new) {
        host.log(Level::Error, &format!("mcpx: could not rewrite {what}"));
    }
}
