//! The per-request context: translates each proxy-wasm callback into the
//! core state machine (`crate::stream::Stream`) over the proxy-wasm host,
//! and its `Action` back. Every decision is made there.

use super::host::WasmHost;
use crate::gateway::Gateway;
use crate::stream::{self, Stream};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct HttpFilter {
    stream: Stream,
}

#[inline]
fn action(a: stream::Action) -> Action {
    match a {
        stream::Action::Continue => Action::Continue,
        stream::Action::Pause => Action::Pause,
    }
}

impl HttpFilter {
    pub fn new(gateway: Option<Rc<Gateway>>, control: bool) -> Self {
        Self { stream: Stream::new(gateway, control) }
    }

    pub fn waiting_for_keys(&self) -> bool {
        self.stream.waiting_for_keys()
    }

    /// Whether the key wait is due to end: keys arrived, or time is up.
    pub fn due_to_wake(&self, keys_loaded: bool) -> bool {
        self.stream.due_to_wake(&mut WasmHost, keys_loaded)
    }

    /// Runs the headers phase again (this request is the effective context).
    pub fn wake(&mut self) {
        self.stream.wake(&mut WasmHost)
    }
}

impl Context for HttpFilter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        self.stream.on_http_call_response(&mut WasmHost, token_id, body_size)
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "crash-probe")]
        super::crash_probe::crash_if_asked();
        action(self.stream.on_request_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_request_body(&mut WasmHost, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.stream.on_request_trailers(&mut WasmHost))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_response_headers(&mut WasmHost, end_of_stream))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.stream.on_response_body(&mut WasmHost, body_size, end_of_stream))
    }

    fn on_log(&mut self) {
        self.stream.on_log(&mut WasmHost)
    }
}
