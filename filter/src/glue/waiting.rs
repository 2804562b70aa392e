//! Requests that arrive before the OAuth key set is loaded wait, paused,
//! instead of failing (Envoy lets a paused request be resumed later, from
//! another callback).
//!
//! The SDK owns every HTTP context, so the root could not reach a paused
//! request to finish it. Each [`HttpFilter`] is therefore held in an
//! `Rc<RefCell<…>>` by a thin [`Waitable`] that delegates every callback;
//! a waiting request registers a weak reference here, and the root's tick
//! wakes it (with the host's effective context switched to that request)
//! once keys are loaded, or when its bounded wait is over (then it gets the
//! 503 — fail closed, never allow).

use super::host;
use super::http::HttpFilter;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::{Rc, Weak};

thread_local! {
    /// Paused requests of this VM: (context id, filter).
    static WAITERS: RefCell<Vec<(u32, Weak<RefCell<HttpFilter>>)>> = const { RefCell::new(Vec::new()) };
}

/// Wakes the waiting requests of this VM: all of them when keys are loaded,
/// otherwise only those whose wait is over.
pub fn wake(keys_loaded: bool) {
    let waiters = WAITERS.with(|w| std::mem::take(&mut *w.borrow_mut()));
    let mut still = Vec::new();
    for (id, weak) in waiters {
        let Some(filter) = weak.upgrade() else { continue };
        let Ok(mut f) = filter.try_borrow_mut() else {
            still.push((id, weak));
            continue;
        };
        if !f.waiting_for_keys() {
            continue;
        }
        if !f.due_to_wake(keys_loaded) {
            still.push((id, weak));
            continue;
        }
        // The request may be gone (client hung up): then there is nothing to do.
        if host::set_effective_context(id).is_err() {
            continue;
        }
        f.wake();
        if f.waiting_for_keys() {
            still.push((id, weak));
        }
    }
    WAITERS.with(|w| w.borrow_mut().extend(still));
}

/// The HTTP context the SDK sees: delegates everything to the filter.
pub struct Waitable {
    id: u32,
    inner: Rc<RefCell<HttpFilter>>,
}

impl Waitable {
    pub fn new(id: u32, filter: HttpFilter) -> Self {
        Self { id, inner: Rc::new(RefCell::new(filter)) }
    }

    fn register_if_waiting(&self) {
        if self.inner.borrow().waiting_for_keys() {
            let weak = Rc::downgrade(&self.inner);
            WAITERS.with(|w| w.borrow_mut().push((self.id, weak)));
        }
    }
}

impl Context for Waitable {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, trailers: usize) {
        self.inner.borrow_mut().on_http_call_response(token, headers, body, trailers)
    }
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        self.inner.borrow_mut().on_grpc_call_response(token, status, size)
    }
    fn on_grpc_stream_initial_metadata(&mut self, token: u32, n: u32) {
        self.inner.borrow_mut().on_grpc_stream_initial_metadata(token, n)
    }
    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        self.inner.borrow_mut().on_grpc_stream_message(token, size)
    }
    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, n: u32) {
        self.inner.borrow_mut().on_grpc_stream_trailing_metadata(token, n)
    }
    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        self.inner.borrow_mut().on_grpc_stream_close(token, status)
    }
    fn on_done(&mut self) -> bool {
        self.inner.borrow_mut().on_done()
    }
}

impl HttpContext for Waitable {
    fn on_http_request_headers(&mut self, n: usize, eos: bool) -> Action {
        let action = self.inner.borrow_mut().on_http_request_headers(n, eos);
        self.register_if_waiting();
        action
    }
    fn on_http_request_body(&mut self, size: usize, eos: bool) -> Action {
        self.inner.borrow_mut().on_http_request_body(size, eos)
    }
    fn on_http_request_trailers(&mut self, n: usize) -> Action {
        self.inner.borrow_mut().on_http_request_trailers(n)
    }
    fn on_http_response_headers(&mut self, n: usize, eos: bool) -> Action {
        self.inner.borrow_mut().on_http_response_headers(n, eos)
    }
    fn on_http_response_body(&mut self, size: usize, eos: bool) -> Action {
        self.inner.borrow_mut().on_http_response_body(size, eos)
    }
    fn on_http_response_trailers(&mut self, n: usize) -> Action {
        self.inner.borrow_mut().on_http_response_trailers(n)
    }
    fn on_log(&mut self) {
        self.inner.borrow_mut().on_log()
    }
}
