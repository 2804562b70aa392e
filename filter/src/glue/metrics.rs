//! The `mcpx_*` series through the proxy-wasm metric calls: a metric is
//! defined once per VM and its id cached by name. Which series and labels
//! is decided in the core (`crate::stream::metrics`), which hands over a
//! borrowed name: a lookup allocates nothing, and hashes with FNV-1a (the
//! names are the filter's own bounded series, not attacker-chosen keys a
//! DoS-resistant hash would be needed for).

use super::host::{self, log};
use proxy_wasm::types::{LogLevel, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a, 64 bit: a few cycles per byte where the default SipHash costs a
/// setup and rounds per lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

thread_local! {
    static IDS: RefCell<HashMap<String, u32, BuildHasherDefault<Fnv>>> = RefCell::new(HashMap::default());
}

fn id(kind: MetricType, name: &str) -> Option<u32> {
    if let Some(id) = IDS.with(|m| m.borrow().get(name).copied()) {
        return Some(id);
    }
    match host::define_metric(kind, name) {
        Ok(id) => {
            IDS.with(|m| m.borrow_mut().insert(name.to_string(), id));
            Some(id)
        }
        Err(_) => {
            log(LogLevel::Warn, &format!("mcpx: could not define metric {name}"));
            None
        }
    }
}

pub fn add(name: &str, n: u64) {
    if let Some(id) = id(MetricType::Counter, name) {
        let _ = host::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }
}

pub fn record(name: &str, value: u64) {
    if let Some(id) = id(MetricType::Histogram, name) {
        let _ = host::record_metric(id, value);
    }
}

/// Defines the label-less counters so they are served (as 0) before any hit.
pub fn define_static() {
    for name in crate::stream::metrics::STATIC_COUNTERS {
        let _ = id(MetricType::Counter, name);
    }
}
