//! Decodes request bodies as Rust MCP servers do. Two views per body:
//! `serde-derive` (typed structs, as rmcp does: exact key match, a duplicate
//! field is an error) and `serde-value` (`serde_json::Value`: exact keys, the
//! last duplicate wins). Both decode the bytes as UTF-8 whatever the charset.
//!
//! stdin: one JSON object per line {"case", "body_hex", ...}; stdout: two
//! lines per case, one per view.
use std::io::{BufRead, Write};

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct EchoArgs {
    text: Option<String>,
    kind: Option<String>,
}

fn kind(has_method: bool, id: &Option<Value>) -> &'static str {
    match (has_method, id) {
        (true, Some(v)) if !v.is_null() => "request",
        (true, _) => "notification",
        _ => "response",
    }
}

fn value_view(raw: &Value) -> Value {
    let get = |v: &Value, k: &str| v.as_object().and_then(|o| o.get(k)).cloned();
    let method = get(raw, "method");
    let id = get(raw, "id");
    let mut v = json!({"kind": kind(method.is_some(), &id), "id": id.as_ref().map(|i| i.to_string()),
                       "method": method, "tool": null, "text": null, "kind_arg": null});
    if method.as_ref().and_then(Value::as_str) == Some("tools/call") {
        if let Some(p) = get(raw, "params") {
            v["tool"] = get(&p, "name").unwrap_or(Value::Null);
            if let Some(a) = get(&p, "arguments") {
                v["text"] = get(&a, "text").unwrap_or(Value::Null);
                v["kind_arg"] = get(&a, "kind").unwrap_or(Value::Null);
            }
        }
    }
    v
}

fn decode(case: &str, body: &[u8]) -> [Value; 2] {
    let mut out = [
        json!({"case": case, "decoder": "rust-serde-derive", "status": "ok", "messages": []}),
        json!({"case": case, "decoder": "rust-serde-value", "status": "ok", "messages": []}),
    ];
    // Value view.
    match serde_json::from_slice::<Value>(body) {
        Err(e) => {
            out[1]["status"] = json!("rejected");
            out[1]["error"] = json!(e.to_string());
        }
        Ok(val) => {
            let items = match &val {
                Value::Array(a) => a.clone(),
                other => vec![other.clone()],
            };
            out[1]["messages"] = Value::Array(items.iter().map(value_view).collect());
        }
    }
    // Derive view: deserialize the text straight into structs so duplicate
    // fields are seen (rmcp deserializes its message enum from the bytes).
    let derived: Result<Vec<Value>, String> = (|| {
        let texts: Vec<Box<serde_json::value::RawValue>> =
            if body.iter().find(|b| !b" \t\r\n".contains(b)) == Some(&b'[') {
                serde_json::from_slice(body).map_err(|e| e.to_string())?
            } else {
                vec![serde_json::from_slice(body).map_err(|e| e.to_string())?]
            };
        texts.iter().map(|t| derive_from_text(t.get())).collect()
    })();
    match derived {
        Ok(msgs) => out[0]["messages"] = Value::Array(msgs),
        Err(e) => {
            out[0]["status"] = json!("rejected");
            out[0]["error"] = json!(e);
        }
    }
    out
}

#[derive(Deserialize)]
struct WireText<'a> {
    #[allow(dead_code)]
    jsonrpc: Option<String>,
    id: Option<Value>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<&'a serde_json::value::RawValue>,
    #[allow(dead_code)]
    result: Option<Value>,
    #[allow(dead_code)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct CallParamsText<'a> {
    name: Option<String>,
    #[serde(borrow)]
    arguments: Option<&'a serde_json::value::RawValue>,
}

fn derive_from_text(text: &str) -> Result<Value, String> {
    let w: WireText = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut v = json!({"kind": kind(w.method.is_some(), &w.id), "id": w.id.as_ref().map(|i| i.to_string()),
                       "method": w.method, "tool": null, "text": null, "kind_arg": null});
    if w.method.as_deref() == Some("tools/call") {
        if let Some(p) = w.params {
            let p: CallParamsText = serde_json::from_str(p.get()).map_err(|e| e.to_string())?;
            v["tool"] = json!(p.name);
            if let Some(a) = p.arguments.filter(|a| a.get() != "null") {
                let a: EchoArgs = serde_json::from_str(a.get()).map_err(|e| e.to_string())?;
                v["text"] = json!(a.text);
                v["kind_arg"] = json!(a.kind);
            }
        }
    }
    Ok(v)
}

fn main() {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { std::process::exit(2) };
        let Ok(c) = serde_json::from_str::<Value>(&line) else { std::process::exit(2) };
        let case = c["case"].as_str().unwrap_or_default().to_owned();
        let Some(body) = unhex(c["body_hex"].as_str().unwrap_or_default()) else { std::process::exit(2) };
        for o in decode(&case, &body) {
            let _ = writeln!(stdout, "{o}");
        }
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}
