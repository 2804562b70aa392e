//! Canonical JSON (RFC 8785, JCS) and tool hashing on arbitrary JSON.
//! Properties: no panic; the canonical form is itself JSON and a fixed point
//! (canonicalising it again changes nothing); it does not depend on the
//! order members arrive in; every number reads back as the same double
//! (JCS writes numbers as ECMAScript does, never losing one); object keys
//! come out in UTF-16 code-unit order; a tool's hash survives
//! re-serialisation (pretty-printing), so reformatting never trips a pin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::integrity::{canonical_json, tool_hash};
use serde_json::Value;

/// The same value with every object's members inserted in reverse order.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().rev().map(|(k, v)| (k.clone(), reversed(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

/// `a` (original) and `b` (canonical, reparsed) are the same JSON, numbers
/// compared as doubles; and `b`'s keys, as written, are in UTF-16 order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (x, y) => x == y,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let canon = canonical_json(&v);
    let reparsed: Value = serde_json::from_str(&canon).expect("canonical form is JSON");
    assert_eq!(canonical_json(&reparsed), canon, "canonical form is a fixed point");
    assert!(same(&v, &reparsed), "canonical form changed a value");
    assert_eq!(canonical_json(&reversed(&v)), canon, "member order changed the canonical form");
    if let Value::Object(m) = &v {
        // Top-level keys, in the order written: each key's canonical text
        // appears in UTF-16 order.
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        let mut at = 0;
        for k in keys {
            let needle = format!("{}:", canonical_json(&Value::String(k.clone())));
            let found = canon[at..].find(&needle).expect("every key is written, in UTF-16 order");
            at += found + needle.len();
        }
    }
    let pretty = serde_json::to_string_pretty(&v).expect("serialises");
    let again: Value = serde_json::from_str(&pretty).expect("pretty form parses");
    assert_eq!(tool_hash(&again), tool_hash(&v), "re-serialisation changed the hash");
});
