//! An in-memory [`Host`] that records everything, and [`Envoy`], a small
//! model of how Envoy drives one stream's callbacks (what it buffers while
//! a callback pauses, what goes on when one continues). The native tests
//! run the real state machine through them: what the backend would
//! receive, what the client gets, which attributes, counters and log lines
//! the request left. Native only; never in the `.wasm`.

use super::{Action, Body, Host, HostError, Level, Stream};
use crate::envelope::Reply;
use crate::gateway::Gateway;
use crate::integrity::{BaselineStore, MemoryStore, StoreError, Stored};
use crate::request::hostmap::BytePair;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// One HTTP call the stream dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// The host side of one stream, in memory.
#[derive(Debug, Default)]
pub struct FakeHost {
    /// The request headers as the stream sees them (changed by its sets).
    pub request_headers: Vec<BytePair>,
    /// When set, reading the request headers fails with this message.
    pub request_headers_error: Option<String>,
    /// Request body bytes Envoy holds for the filter (not yet forwarded).
    pub request_body: Vec<u8>,
    /// The response headers as the stream sees them.
    pub response_headers: Vec<(String, String)>,
    /// Response body bytes Envoy holds for the filter (not yet sent).
    pub response_body: Vec<u8>,
    /// `response.code` and `response.code_details`.
    pub response_code: Option<u64>,
    pub code_details: String,
    /// The answer to the call being handled: headers and body.
    pub call_response: (Vec<(String, String)>, Vec<u8>),
    /// The local reply the stream sent, if any.
    pub reply: Option<Reply>,
    /// Every attribute set, in order.
    pub attributes: Vec<(String, String)>,
    pub counters: BTreeMap<String, u64>,
    pub histograms: Vec<(String, u64)>,
    pub logs: Vec<(Level, String)>,
    pub calls: Vec<Call>,
    /// How many times the stream resumed a paused request.
    pub resumed: u32,
    /// When set, `replace_body` is refused (as Envoy refuses it after the
    /// stream moved on).
    pub refuse_replace: bool,
    pub now_ms: u64,
    /// Shared data (pins, learned tools), with Envoy's compare-and-swap.
    pub shared: MemoryStore,
    /// Every host call the stream made, counted (the request path's cost;
    /// the clock is WASI's, not a proxy-wasm call, and is not counted).
    pub host_calls: Cell<u32>,
}

impl FakeHost {
    fn crossed(&self) {
        self.host_calls.set(self.host_calls.get() + 1);
    }

    /// The last value set for an attribute.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A request header as text (the first with that name).
    pub fn request_header(&self, name: &str) -> Option<String> {
        self.request_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    fn header_of<'a>(map: &'a [(String, String)], name: &str) -> Option<&'a str> {
        map.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl BaselineStore for FakeHost {
    fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        self.crossed();
        self.shared.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.crossed();
        self.shared.set(key, value, cas)
    }
}

/// Header names are lowercase, as Envoy hands them over.
struct Lower(Vec<u8>);
impl From<&str> for Lower {
    fn from(s: &str) -> Self {
        Lower(s.to_ascii_lowercase().into_bytes())
    }
}

impl Host for FakeHost {
    fn request_header_pairs(&mut self) -> Result<Vec<BytePair>, String> {
        self.crossed();
        match &self.request_headers_error {
            Some(e) => Err(e.clone()),
            None => Ok(self.request_headers.clone()),
        }
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.crossed();
        let key = Lower::from(name).0;
        self.request_headers.retain(|(k, _)| *k != key);
        if let Some(v) = value {
            self.request_headers.push((key, v.as_bytes().to_vec()));
        }
    }

    fn response_header(&mut self, name: &str) -> Option<String> {
        self.crossed();
        Self::header_of(&self.response_headers, name).map(str::to_string)
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        self.crossed();
        let name = name.to_ascii_lowercase();
        if name == ":status" {
            // Headers not yet sent: Envoy's `response.code` is the new status.
            self.response_code = value.and_then(|v| v.parse().ok());
        }
        self.response_headers.retain(|(k, _)| *k != name);
        if let Some(v) = value {
            self.response_headers.push((name, v.to_string()));
        }
    }

    fn body(&mut self, which: Body, size: usize) -> Vec<u8> {
        self.crossed();
        let all = match which {
            Body::Request => &self.request_body,
            Body::Response => &self.response_body,
            Body::CallResponse => &self.call_response.1,
        };
        all.get(..size.min(all.len())).map(<[u8]>::to_vec).unwrap_or_default()
    }

    fn replace_body(&mut self, which: Body, old_size: usize, new: &[u8]) -> bool {
        self.crossed();
        if self.refuse_replace {
            return false;
        }
        let buf = match which {
            Body::Request => &mut self.request_body,
            Body::Response => &mut self.response_body,
            Body::CallResponse => return false,
        };
        let end = old_size.min(buf.len());
        buf.splice(..end, new.iter().copied());
        true
    }

    fn send_reply(&mut self, reply: &Reply) {
        self.crossed();
        // Envoy's `response.code` is then the reply's status.
        self.response_code = Some(u64::from(reply.status));
        self.reply = Some(reply.clone());
    }

    fn response_code(&mut self) -> Option<u64> {
        self.crossed();
        self.response_code
    }

    fn response_code_details(&mut self) -> String {
        self.crossed();
        self.code_details.clone()
    }

    fn set_attribute(&mut self, name: &str, value: &str) {
        self.crossed();
        self.attributes.push((name.to_string(), value.to_string()));
    }

    fn http_call(
        &mut self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<u32, HostError> {
        self.crossed();
        let token = u32::try_from(self.calls.len()).unwrap_or(u32::MAX).saturating_add(1);
        let headers = headers.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.calls.push(Call { token, cluster: cluster.to_string(), headers, body: body.map(<[u8]>::to_vec) });
        Ok(token)
    }

    fn call_response_header(&mut self, name: &str) -> Option<String> {
        self.crossed();
        Self::header_of(&self.call_response.0, name).map(str::to_string)
    }

    fn add_counter(&mut self, name: &str, n: u64) {
        self.crossed();
        *self.counters.entry(name.to_string()).or_default() += n;
    }

    fn record_histogram(&mut self, name: &str, value: u64) {
        self.crossed();
        self.histograms.push((name.to_string(), value));
    }

    fn log(&mut self, level: Level, msg: &str) {
        self.logs.push((level, msg.to_string()));
    }

    fn resume_request(&mut self) -> Result<(), HostError> {
        self.crossed();
        self.resumed += 1;
        Ok(())
    }

    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
}

/// What one side of the exchange received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// The headers when they went on (`None`: they never did).
    pub headers: Option<Vec<(String, String)>>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_deref().and_then(|h| FakeHost::header_of(h, name))
    }
}

/// A model of Envoy driving one stream: a paused callback makes Envoy hold
/// (buffer) what came so far; a continue (or a resume) sends it on.
pub struct Envoy {
    pub host: FakeHost,
    pub stream: Stream,
    /// What the backend received.
    pub backend: Received,
    /// What the client received (a local reply, or the backend's answer).
    pub client: Received,
    /// The request is held (a callback paused and nothing resumed it).
    request_held: bool,
    /// The response headers are held until a body callback continues.
    response_held: bool,
}

fn text_pairs(pairs: &[BytePair]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

impl Envoy {
    pub fn new(gateway: Option<Rc<Gateway>>) -> Self {
        Self::with_control(gateway, false)
    }

    /// `control`: the stream serves the operator endpoints.
    pub fn with_control(gateway: Option<Rc<Gateway>>, control: bool) -> Self {
        Self {
            host: FakeHost { now_ms: 1_000_000, ..FakeHost::default() },
            stream: Stream::new(gateway, control),
            backend: Received::default(),
            client: Received::default(),
            request_held: false,
            response_held: false,
        }
    }

    /// The local reply the stream sent, if any.
    pub fn reply(&self) -> Option<&Reply> {
        self.host.reply.as_ref()
    }

    fn replied(&mut self) -> bool {
        let Some(r) = &self.host.reply else { return false };
        if self.client.headers.is_none() {
            let mut headers = vec![(":status".to_string(), r.status.to_string())];
            headers.push(("content-type".into(), "application/json".into()));
            headers.extend(r.headers.iter().cloned());
            self.client = Received { headers: Some(headers), body: r.body.clone().into_bytes() };
        }
        true
    }

    /// After a request callback: hold, or send on what Envoy held.
    fn request_went(&mut self, action: Action) {
        if self.replied() {
            self.request_held = true;
            return;
        }
        match action {
            Action::Pause => self.request_held = true,
            Action::Continue => self.release_request(),
        }
    }

    fn release_request(&mut self) {
        self.request_held = false;
        if self.backend.headers.is_none() {
            self.backend.headers = Some(text_pairs(&self.host.request_headers));
        }
        self.backend.body.append(&mut self.host.request_body);
    }

    /// The request headers arrive (`end_of_stream`: no body follows).
    pub fn request_headers(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.host.request_headers =
            headers.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
        self.request_headers_raw(end_of_stream)
    }

    /// Like [`Envoy::request_headers`], with `host.request_headers` already set.
    pub fn request_headers_raw(&mut self, end_of_stream: bool) -> Action {
        let action = self.stream.on_request_headers(&mut self.host, end_of_stream);
        self.request_went(action);
        action
    }

    /// A chunk of request body (the callback sees everything Envoy holds).
    pub fn request_data(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        if self.host.reply.is_some() {
            return Action::Pause;
        }
        self.host.request_body.extend_from_slice(chunk);
        let size = self.host.request_body.len();
        let action = self.stream.on_request_body(&mut self.host, size, end_of_stream);
        self.request_went(action);
        action
    }

    /// Trailers end the request.
    pub fn request_trailers(&mut self) -> Action {
        if self.host.reply.is_some() {
            return Action::Pause;
        }
        let action = self.stream.on_request_trailers(&mut self.host);
        self.request_went(action);
        action
    }

    /// A whole request: headers, the body in `chunks`, then trailers if asked.
    pub fn request(&mut self, headers: &[(&str, &str)], chunks: &[&[u8]], trailers: bool) {
        let no_body = chunks.is_empty() && !trailers;
        self.request_headers(headers, no_body);
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len() && !trailers;
            self.request_data(chunk, last);
        }
        if trailers {
            self.request_trailers();
        }
    }

    /// The root's tick (or the key set's arrival) wakes a held request.
    pub fn tick(&mut self, keys_loaded: bool) {
        if !self.stream.due_to_wake(&mut self.host, keys_loaded) {
            return;
        }
        let resumed = self.host.resumed;
        self.stream.wake(&mut self.host);
        if self.replied() {
            return;
        }
        if self.host.resumed > resumed {
            self.release_request();
        }
    }

    /// Whether the request is still held by the filter.
    pub fn request_held(&self) -> bool {
        self.request_held && self.host.reply.is_none()
    }

    fn release_response(&mut self) {
        if self.client.headers.is_none() {
            self.client.headers = Some(self.host.response_headers.clone());
        }
        self.response_held = false;
        self.client.body.append(&mut self.host.response_body);
    }

    /// The answer's headers arrive from upstream (or from Envoy itself).
    pub fn response_headers(&mut self, headers: &[(&str, &str)], end_of_stream: bool) -> Action {
        self.host.response_headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if self.host.response_code.is_none() {
            self.host.response_code =
                FakeHost::header_of(&self.host.response_headers, ":status").and_then(|s| s.parse().ok());
        }
        let action = self.stream.on_response_headers(&mut self.host, end_of_stream);
        match action {
            Action::Continue => self.release_response(),
            Action::Pause => self.response_held = true,
        }
        action
    }

    /// A chunk of the answer's body.
    pub fn response_data(&mut self, chunk: &[u8], end_of_stream: bool) -> Action {
        self.host.response_body.extend_from_slice(chunk);
        let size = self.host.response_body.len();
        let action = self.stream.on_response_body(&mut self.host, size, end_of_stream);
        if action == Action::Continue {
            self.release_response();
        }
        action
    }

    /// A whole answer from the backend: headers, then the body in `chunks`.
    pub fn response(&mut self, headers: &[(&str, &str)], chunks: &[&[u8]]) {
        self.response_headers(headers, chunks.is_empty());
        for (i, chunk) in chunks.iter().enumerate() {
            self.response_data(chunk, i + 1 == chunks.len());
        }
    }

    /// A reply Envoy itself made (`details`: its `response.code_details`).
    pub fn envoy_reply(&mut self, status: u16, details: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.host.response_code = Some(u64::from(status));
        self.host.code_details = details.to_string();
        let status = status.to_string();
        let mut all = vec![(":status", status.as_str())];
        all.extend_from_slice(headers);
        let chunks: Vec<&[u8]> = if body.is_empty() { vec![] } else { vec![body] };
        self.response(&all, &chunks);
    }

    /// The answer to a dispatched call (`/health` probes).
    pub fn call_answer(&mut self, token: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.host.call_response =
            (headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), body.to_vec());
        self.stream.on_http_call_response(&mut self.host, token, body.len());
        self.replied();
    }

    /// The stream ends (Envoy's access-log callback): metrics are counted.
    pub fn finish(&mut self) {
        self.stream.on_log(&mut self.host);
    }
}
