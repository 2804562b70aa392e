//! The one clock of the filter and the `mcpx` binary: wall-clock time since
//! the Unix epoch. Inside Envoy `SystemTime` is WASI's `clock_time_get`,
//! which Envoy answers from the same real-time source as proxy-wasm's own
//! time call, so the core, the glue and the binary read one clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Seconds since the Unix epoch: token lifetimes, key refresh, key waits.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}
