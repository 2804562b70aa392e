//! Small wrappers over host calls that log instead of panicking.

use crate::envelope::Reply;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

pub fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

pub fn request_headers() -> Option<Vec<(String, String)>> {
    hostcalls::get_map(MapType::HttpRequestHeaders).ok()
}

pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
}

pub fn set_request_header(name: &str, value: Option<&str>) {
    if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_err() {
        log(LogLevel::Warn, &format!("mcpx: could not change request header {name}"));
    }
}

pub fn set_response_header(name: &str, value: Option<&str>) {
    if hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value).is_err() {
        log(LogLevel::Warn, &format!("mcpx: could not change response header {name}"));
    }
}

pub fn body(kind: BufferType, size: usize) -> Vec<u8> {
    match hostcalls::get_buffer(kind, 0, size) {
        Ok(Some(b)) => b,
        _ => Vec::new(),
    }
}

pub fn replace_body(kind: BufferType, old_size: usize, new: &[u8]) -> bool {
    hostcalls::set_buffer(kind, 0, old_size, new).is_ok()
}

/// Filter state `wasm.<name>`, read by access logs as
/// `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_attribute(name: &str, value: &str) {
    let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
}

pub fn send(reply: &Reply) {
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(reply.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if hostcalls::send_http_response(u32::from(reply.status), headers, Some(reply.body.as_bytes())).is_err() {
        log(LogLevel::Error, "mcpx: could not send a local reply");
    }
}

/// A string property such as `response.code_details`; empty when absent.
pub fn property_string(path: &[&str]) -> String {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    }
}

/// An integer property such as `response.code` (8 bytes, little-endian).
pub fn property_u64(path: &[&str]) -> Option<u64> {
    match hostcalls::get_property(path.to_vec()) {
        Ok(Some(b)) => <[u8; 8]>::try_from(b.as_slice()).ok().map(u64::from_le_bytes),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch, from the host clock.
pub fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
