//! tools/list response rewriting on arbitrary backend answers.
//! Properties: no panic; a rewritten body is JSON and never gains tools.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::toolslist::rewrite;
use serde_json::Value;

fn count_tools(v: &Value) -> usize {
    let one = |m: &Value| m.pointer("/result/tools").and_then(Value::as_array).map_or(0, Vec::len);
    match v {
        Value::Array(items) => items.iter().map(one).sum(),
        other => one(other),
    }
}

fuzz_target!(|data: &[u8]| {
    let keep = |t: &Value| t.get("name").and_then(Value::as_str).is_some_and(|n| !n.starts_with('x'));
    if let Ok(r) = rewrite(data, true, keep) {
        if let Some(body) = r.body {
            let after: Value = serde_json::from_slice(&body).expect("rewritten body is JSON");
            let before: Value = serde_json::from_slice(data).expect("input was JSON");
            assert!(count_tools(&after) <= count_tools(&before));
        }
    }
});
