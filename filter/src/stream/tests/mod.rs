//! Native runs of the per-request state machine through the fake host
//! (`stream::fake`): what the backend would receive and what the client
//! gets, for the paths that used to run only inside Envoy. The policy
//! vectors run through the same harness in `filter/tests/policy_vectors.rs`.

mod answers;
mod jwks;
mod key_wait;
mod metrics;
mod sse;
mod trailers;

use super::fake::{Envoy, Received};
use crate::gateway::Gateway;
use serde_json::Value;
use std::rc::Rc;

fn gateway(yaml: &str) -> Rc<Gateway> {
    Rc::new(Gateway::from_plugin_config(yaml).unwrap_or_else(|e| panic!("{e}")))
}

/// A policy with a denied tool, list filtering on and integrity off.
const FILTERING: &str = "servers:
  - name: demo
    policy:
      allow_tools: [echo]
      deny_tools: [dangerous_delete]
inspection: { tool_integrity: \"off\", filter_tools_list: true }
audit: { enabled: true }
";

const JSON: (&str, &str) = ("content-type", "application/json");

fn post(path: &str) -> Vec<(&str, &str)> {
    vec![(":method", "POST"), (":path", path), (":authority", "gw.local"), JSON]
}

fn call(tool: &str, id: u64) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#)
        .into_bytes()
}

const LIST: &[u8] = br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;

/// A tools/list answer naming these tools.
fn tools_result(id: u64, tools: &[&str]) -> String {
    let tools: Vec<Value> =
        tools.iter().map(|t| serde_json::json!({ "name": t, "inputSchema": { "type": "object" } })).collect();
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": tools } }).to_string()
}

fn json(r: &Received) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&r.body)))
}

fn tool_names(v: &Value) -> Vec<String> {
    v["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// A forwarded tools/list with the given policy.
fn listed(yaml: &str) -> Envoy {
    let mut e = Envoy::new(Some(gateway(yaml)));
    e.request(&post("/mcp/demo"), &[LIST], false);
    assert!(e.backend.headers.is_some() && e.reply().is_none(), "the list request is forwarded");
    e
}
