//! Every call into Envoy goes through here, over the raw proxy-wasm ABI
//! imports, and returns an error instead of panicking.
//!
//! Why not the SDK's `hostcalls`: proxy-wasm 0.2.5 panics on any status it
//! does not expect (`status => panic!("unexpected status")`, even where it
//! returns `Result`), and reads header maps with
//! `String::from_utf8(..).unwrap()`, so a header value that is not UTF-8
//! (`X-A: caf\xe9`, from a client or a backend) panicked and killed the VM of
//! the worker. A panic here is a 503 for everyone on that worker. So:
//! statuses are plain `u32`s (an enum return type would be undefined
//! behaviour for a value it does not list), maps and values are bytes, and
//! what is text is decided by the caller (`crate::request::hostmap::screen`).
//!
//! The one SDK call kept is `dispatch_http_call` (see [`http_call`]).

use crate::envelope::Reply;
use crate::request::hostmap::{self, BytePair};
use crate::stream::{self, Body};
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::ptr::{null, null_mut};
use std::time::Duration;

pub use crate::stream::host::{HostError, CAS_MISMATCH, NOT_FOUND};

const OK: u32 = 0;

fn check(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

// The proxy-wasm ABI 0.2.1 imports, as Envoy provides them. Enums are passed
// as their `u32` values.
#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Takes ownership of memory the host allocated in this VM (through the
/// SDK's exported `proxy_on_memory_allocate`, a boxed byte slice of exactly
/// `size` bytes).
///
/// # Safety
/// `data`/`size` must come from a host call that returned `Ok` and handed
/// this allocation over.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        // SAFETY: see above; capacity equals length for these allocations.
        Some(unsafe { Vec::from_raw_parts(data, size, size) })
    }
}

pub fn log(level: LogLevel, msg: &str) {
    // SAFETY: pointer and length of a live &str.
    let _ = unsafe { proxy_log(level as u32, msg.as_ptr(), msg.len()) };
}

pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: plain value.
    check(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

/// Up to `max` bytes of a buffer from its start; `Ok(empty)` when the host
/// has none.
pub fn buffer(kind: BufferType, max: usize) -> Result<Vec<u8>, HostError> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid out-pointers; on Ok the host hands over `data`.
    let status = unsafe { proxy_get_buffer_bytes(kind as u32, 0, max, &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(unsafe { owned(data, size) }.unwrap_or_default()),
        Err(NOT_FOUND) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A body (request, response, call answer); empty when unavailable.
pub fn body(kind: BufferType, size: usize) -> Vec<u8> {
    match buffer(kind, size) {
        Ok(b) => b,
        Err(e) => {
            log(LogLevel::Warn, &format!("mcpx: could not read a body from Envoy: {e}"));
            Vec::new()
        }
    }
}

/// Replaces the first `old_size` bytes of a buffer; false when Envoy refuses.
pub fn replace_body(kind: BufferType, old_size: usize, new: &[u8]) -> bool {
    // SAFETY: pointer and length of a live slice.
    check(unsafe { proxy_set_buffer_bytes(kind as u32, 0, old_size, new.as_ptr(), new.len()) }).is_ok()
}

/// The plugin configuration (the policy part of mcpx.yaml), if any.
pub fn plugin_configuration() -> Option<Vec<u8>> {
    buffer(BufferType::PluginConfiguration, usize::MAX).ok().filter(|b| !b.is_empty())
}

/// A whole header map, as bytes.
pub fn header_pairs(map: MapType) -> Result<Vec<BytePair>, String> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid out-pointers; on Ok the host hands over `data`.
    let status = unsafe { proxy_get_header_map_pairs(map as u32, &mut data, &mut size) };
    check(status).map_err(|e| e.to_string())?;
    let bytes = unsafe { owned(data, size) }.unwrap_or_default();
    hostmap::decode(&bytes).map_err(|e| e.to_string())
}

/// One header as bytes (the first, if repeated); `Ok(None)` when absent.
pub fn header_bytes(map: MapType, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid pointers; on Ok the host hands over `data`.
    let status = unsafe { proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(Some(unsafe { owned(data, size) }.unwrap_or_default())),
        Err(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A response header the filter reads (`:status`, `content-type`). A value
/// that is not UTF-8 is returned lossily (U+FFFD): it then matches no media
/// type the filter streams, so a `tools/list` answer is buffered and
/// inspected as JSON (and refused if it is not), never passed unread.
pub fn response_header(name: &str) -> Option<String> {
    match header_bytes(MapType::HttpResponseHeaders, name) {
        Ok(v) => v.map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        Err(e) => {
            log(LogLevel::Warn, &format!("mcpx: could not read response header {name}: {e}"));
            None
        }
    }
}

/// A header of a dispatched call's answer, lossily as text.
pub fn call_response_header(name: &str) -> Option<String> {
    header_bytes(MapType::HttpCallResponseHeaders, name)
        .ok()
        .flatten()
        .map(|b| String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live &strs.
    check(unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
            None => proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()),
        }
    })
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    if let Err(e) = set_header(MapType::HttpRequestHeaders, name, value) {
        log(LogLevel::Warn, &format!("mcpx: could not change request header {name}: {e}"));
    }
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    if let Err(e) = set_header(MapType::HttpResponseHeaders, name, value) {
        log(LogLevel::Warn, &format!("mcpx: could not change response header {name}: {e}"));
    }
}

/// Property paths are their parts joined by NUL bytes.
fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

/// A property's raw value; `None` when absent or unavailable.
pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    let p = property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    // SAFETY: valid pointers; on Ok the host hands over `data`.
    let status = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    check(status).ok()?;
    unsafe { owned(data, size) }
}

/// Filter state `wasm.<name>`, read by access logs as
/// `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_attribute(name: &str, value: &str) {
    // SAFETY: pointers and lengths of live buffers.
    let status = unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if let Err(e) = check(status) {
        log(LogLevel::Debug, &format!("mcpx: could not set attribute {name}: {e}"));
    }
}

/// A string property such as `response.code_details`; empty when absent.
pub fn property_string(path: &[&str]) -> String {
    property(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// An integer property such as `response.code` (8 bytes, little-endian).
pub fn property_u64(path: &[&str]) -> Option<u64> {
    property(path).and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map(u64::from_le_bytes)
}

/// Shared data: (value, cas); `(None, None)` when the key does not exist.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    // SAFETY: valid pointers; on Ok the host hands over `data`.
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match check(status) {
        Ok(()) => Ok((unsafe { owned(data, size) }, (cas != 0).then_some(cas))),
        Err(NOT_FOUND) => Ok((None, None)),
        Err(e) => Err(e),
    }
}

/// Sets shared data; with `cas`, only if nobody changed it since (else
/// [`CAS_MISMATCH`]).
pub fn set_shared_data(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live buffers.
    check(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas.unwrap_or(0)) })
}

/// Lets a paused request go on (proxy-wasm stream type 0: HTTP request).
pub fn resume_http_request() -> Result<(), HostError> {
    // SAFETY: plain value.
    check(unsafe { proxy_continue_stream(0) })
}

/// Makes `context_id` the stream later calls act on (waking a paused request).
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: plain value.
    check(unsafe { proxy_set_effective_context(context_id) })
}

pub fn send(reply: &Reply) {
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let Some(map) = hostmap::encode(&headers) else {
        log(LogLevel::Error, "mcpx: could not encode a local reply's headers");
        return;
    };
    let body = reply.body.as_bytes();
    // SAFETY: pointers and lengths of live buffers; -1: not a gRPC reply.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(reply.status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    if let Err(e) = check(status) {
        log(LogLevel::Error, &format!("mcpx: could not send a local reply: {e}"));
    }
}

/// Dispatches an HTTP call through an Envoy cluster; the answer comes to the
/// calling context's `on_http_call_response`.
///
/// This is the one call left to the SDK: its dispatcher must register the
/// token, or it panics (`expect("invalid token_id")`) when the answer
/// arrives, and that registration is reachable only through
/// `hostcalls::dispatch_http_call`. It panics only on a status other than
/// Ok, BadArgument and InternalFailure; Envoy's `http_call` returns just
/// those for valid memory (BadArgument: no such cluster or a missing
/// `:method`/`:path`/`:authority`; InternalFailure: the request failed at
/// once, e.g. no healthy upstream).
pub fn http_call(
    cluster: &str,
    headers: Vec<(&str, &str)>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, HostError> {
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout).map_err(|s| HostError(s as u32))
}

/// A metric id (`kind`: proxy-wasm metric type).
pub fn define_metric(kind: proxy_wasm::types::MetricType, name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    // SAFETY: valid pointers.
    check(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) }).map(|()| id)
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), HostError> {
    // SAFETY: plain values.
    check(unsafe { proxy_increment_metric(id, by) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: plain values.
    check(unsafe { proxy_record_metric(id, value) })
}

/// The proxy-wasm [`stream::Host`]: each method is the raw call above, so
/// the state machine monomorphised over it makes the same host calls the
/// glue made by hand (a unit struct: nothing per request).
pub struct WasmHost;

fn buffer_type(which: Body) -> BufferType {
    match which {
        Body::Request => BufferType::HttpRequestBody,
        Body::Response => BufferType::HttpResponseBody,
        Body::CallResponse => BufferType::HttpCallResponseBody,
    }
}

impl crate::integrity::BaselineStore for WasmHost {
    #[inline]
    fn get(&self, key: &str) -> Result<Option<crate::integrity::Stored>, crate::integrity::StoreError> {
        super::shared::SharedStore.get(key)
    }
    #[inline]
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), crate::integrity::StoreError> {
        super::shared::SharedStore.set(key, value, cas)
    }
}

impl stream::Host for WasmHost {
    #[inline]
    fn request_header_pairs(&mut self) -> Result<Vec<BytePair>, String> {
        header_pairs(MapType::HttpRequestHeaders)
    }
    #[inline]
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        set_request_header(name, value)
    }
    #[inline]
    fn response_header(&mut self, name: &str) -> Option<String> {
        response_header(name)
    }
    #[inline]
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        set_response_header(name, value)
    }
    #[inline]
    fn body(&mut self, which: Body, size: usize) -> Vec<u8> {
        body(buffer_type(which), size)
    }
    #[inline]
    fn replace_body(&mut self, which: Body, old_size: usize, new: &[u8]) -> bool {
        replace_body(buffer_type(which), old_size, new)
    }
    #[inline]
    fn send_reply(&mut self, reply: &Reply) {
        send(reply)
    }
    #[inline]
    fn response_code(&mut self) -> Option<u64> {
        property_u64(&["response", "code"])
    }
    #[inline]
    fn response_code_details(&mut self) -> String {
        property_string(&["response", "code_details"])
    }
    #[inline]
    fn set_attribute(&mut self, name: &str, value: &str) {
        set_attribute(name, value)
    }
    #[inline]
    fn http_call(
        &mut self,
        cluster: &str,
        headers: Vec<(&str, &str)>,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        http_call(cluster, headers, body, timeout)
    }
    #[inline]
    fn call_response_header(&mut self, name: &str) -> Option<String> {
        call_response_header(name)
    }
    #[inline]
    fn add_counter(&mut self, name: &str, n: u64) {
        super::metrics::add(name, n)
    }
    #[inline]
    fn record_histogram(&mut self, name: &str, value: u64) {
        super::metrics::record(name, value)
    }
    #[inline]
    fn log(&mut self, level: stream::Level, msg: &str) {
        let level = match level {
            stream::Level::Debug => LogLevel::Debug,
            stream::Level::Info => LogLevel::Info,
            stream::Level::Warn => LogLevel::Warn,
            stream::Level::Error => LogLevel::Error,
        };
        log(level, msg)
    }
    #[inline]
    fn resume_request(&mut self) -> Result<(), HostError> {
        resume_http_request()
    }
    #[inline]
    fn now_ms(&mut self) -> u64 {
        crate::clock::now_ms()
    }
}
