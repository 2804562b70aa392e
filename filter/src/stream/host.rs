//! What the per-request state machine needs from its host (Envoy through
//! proxy-wasm, or the in-memory fake of the native tests).
//!
//! The state machine is generic over [`Host`], so the proxy-wasm
//! implementation (`glue/host.rs`, a unit struct) is monomorphised and
//! inlined: no `dyn` on the request path, no allocation the raw calls would
//! not make anyway. Every method returns or logs a host error; none panics
//! (a panic kills the VM of the worker).

use crate::envelope::Reply;
use crate::integrity::BaselineStore;
use crate::request::hostmap::BytePair;
use std::time::Duration;

/// A status the host returned instead of `Ok` (proxy-wasm `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

pub const NOT_FOUND: HostError = HostError(1);
pub const CAS_MISMATCH: HostError = HostError(8);
pub const INTERNAL_FAILURE: HostError = HostError(10);

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            5 => "BadExpression",
            6 => "InvalidMemoryAccess",
            7 => "Empty",
            8 => "CasMismatch",
            9 => "ResultMismatch",
            10 => "InternalFailure",
            11 => "BrokenConnection",
            12 => "Unimplemented",
            _ => "unknown status",
        };
        write!(f, "{name} ({})", self.0)
    }
}

/// Log levels the filter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// The body buffers the filter reads or replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Request,
    Response,
    /// The answer to a dispatched HTTP call (`/health` probes).
    CallResponse,
}

/// Which way a callback lets the stream go (proxy-wasm `Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// The host calls of one request. Shared data is the [`BaselineStore`]
/// supertrait (integrity pins, learned tools, `x-mcp-header` maps).
pub trait Host: BaselineStore {
    /// The request headers as bytes, as Envoy hands them over.
    fn request_header_pairs(&mut self) -> Result<Vec<BytePair>, String>;
    /// Sets (`Some`) or removes (`None`) a request header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// One response header (the first, if repeated), lossily as text; a
    /// value that is not UTF-8 keeps U+FFFD, so it matches no media type
    /// the filter streams.
    fn response_header(&mut self, name: &str) -> Option<String>;
    /// Sets (`Some`) or removes (`None`) a response header.
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    /// Up to `size` bytes of a buffer from its start; empty when unavailable.
    fn body(&mut self, which: Body, size: usize) -> Vec<u8>;
    /// Replaces the first `old_size` bytes of a buffer; false when refused.
    fn replace_body(&mut self, which: Body, old_size: usize, new: &[u8]) -> bool;
    /// Answers the request from the filter (`content-type: application/json`
    /// plus the reply's headers).
    fn send_reply(&mut self, reply: &Reply);
    /// `response.code`: the status of the answer (Envoy's own, too).
    fn response_code(&mut self) -> Option<u64>;
    /// `response.code_details`: who made the answer; empty when absent.
    fn response_code_details(&mut self) -> String;
    /// Filter state `wasm.<name>` (the audit attributes).
    fn set_attribute(&mut self, name: &str, value: &str);
    /// Dispatches an HTTP call through an Envoy cluster; its answer comes
    /// back through the stream's `on_http_call_response` with the token.
    fn http_call(
        &mut self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// A header of the call answer being handled, lossily as text.
    fn call_response_header(&mut self, name: &str) -> Option<String>;
    /// Adds `n` to a counter named with its labels (`name.key.value…`).
    fn add_counter(&mut self, name: &str, n: u64);
    /// Records one value in a histogram.
    fn record_histogram(&mut self, name: &str, value: u64);
    fn log(&mut self, level: Level, msg: &str);
    /// Lets a paused request go on (after the key wait).
    fn resume_request(&mut self) -> Result<(), HostError>;
    /// Wall-clock milliseconds since the Unix epoch (`crate::clock`).
    fn now_ms(&mut self) -> u64;
}
