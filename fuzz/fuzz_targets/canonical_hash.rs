//! Canonical JSON and tool hashing (integrity pinning) on arbitrary JSON.
//! Properties: no panic; the canonical form is itself JSON and a fixed point
//! (canonicalising it again changes nothing); a tool's hash survives
//! re-serialisation (pretty-printing), so reformatting never trips a pin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::integrity::{canonical_json, tool_hash};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let canon = canonical_json(&v);
    let reparsed: Value = serde_json::from_str(&canon).expect("canonical form is JSON");
    assert_eq!(canonical_json(&reparsed), canon, "canonical form is a fixed point");
    let pretty = serde_json::to_string_pretty(&v).expect("serialises");
    let again: Value = serde_json::from_str(&pretty).expect("pretty form parses");
    assert_eq!(tool_hash(&again), tool_hash(&v), "re-serialisation changed the hash");
});
