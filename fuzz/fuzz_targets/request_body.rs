//! The policy decision on arbitrary bodies, checked against what a lenient
//! backend would read.
//!
//! Properties: no panic; every refusal is a JSON-RPC error envelope; and for
//! every body the real `Gateway` forwards, a last-key-wins decoding of it (what
//! serde_json, Python's json or JavaScript's JSON.parse read) contains no call
//! the policy forbids: no denied or unlisted tool, no argument-rule violation,
//! no resource outside the allowed prefix, no denied prompt, no case variant of
//! a policed method. The oracle below is written from the policy text, not
//! from the gateway's code, so a parser differential (the gateway deciding on
//! one value while the backend reads another) or a policy bug shows up here.
//! The lenient value, written back out canonically, must also get the same
//! decision (the gateway's view and the backend's view agree).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::gateway::{Attributes, BodyOutcome, Decision, Gateway, McpRequest};
use serde_json::{Map, Value};
use std::sync::OnceLock;

const CONFIG: &str = r#"
servers:
  - name: demo
    policy:
      deny_tools: [dangerous_delete]
      allow_resources: ["file:///data/"]
      deny_prompts: [evil]
      tool_rules:
        read_file:
          args:
            path: { prefix: "/data/", regex: "[a-z/._]+" }
            mode: { one_of: [r, 1, true], required: false }
clients:
  bot:
    servers:
      demo: { allow_tools: [echo, read_file] }
"#;

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| Gateway::from_plugin_config(CONFIG).expect("fuzz config is valid"))
}

/// A scalar as a rule compares it (5, 5.0 and "5" alike); None for others.
fn scalar(v: &Value) -> Option<String> {
    mcpx_filter::request::scalar::normalise(v)
}

/// Why the lenient reading of one message breaks the policy, if it does.
fn violation(msg: &Value, bot: bool) -> Option<String> {
    let method = msg.get("method")?.as_str()?;
    let params = msg.get("params").and_then(Value::as_object);
    let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
    const POLICED: [&str; 4] = ["tools/call", "resources/read", "resources/subscribe", "prompts/get"];
    if POLICED.iter().any(|p| p.eq_ignore_ascii_case(method)) && !POLICED.contains(&method) {
        return Some(format!("case variant {method:?} of a policed method"));
    }
    match method {
        "tools/call" => {
            let Some(name) = name else { return Some("tools/call without a string name".into()) };
            if name == "dangerous_delete" {
                return Some("denied tool".into());
            }
            if bot && name != "echo" && name != "read_file" {
                return Some(format!("tool {name:?} outside the client's allow_tools"));
            }
            if name == "read_file" {
                let args: Option<&Map<String, Value>> =
                    params.and_then(|p| p.get("arguments")).and_then(Value::as_object);
                let path = args.and_then(|a| a.get("path")).and_then(scalar);
                let Some(path) = path else { return Some("read_file without a scalar path".into()) };
                let charset = |c: char| c.is_ascii_lowercase() || matches!(c, '/' | '.' | '_');
                if !path.starts_with("/data/") || !path.chars().all(charset) {
                    return Some(format!("read_file path {path:?} breaks its rule"));
                }
                if let Some(mode) = args.and_then(|a| a.get("mode")) {
                    match scalar(mode) {
                        Some(m) if ["r", "1", "true"].contains(&m.as_str()) => {}
                        _ => return Some(format!("read_file mode {mode} breaks its rule")),
                    }
                }
            }
            None
        }
        "resources/read" | "resources/subscribe" => {
            let Some(uri) = params.and_then(|p| p.get("uri")).and_then(Value::as_str) else {
                return Some(format!("{method} without a string uri"));
            };
            match mcpx_filter::request::resource_uri::normalise(uri) {
                Ok(n) if n.starts_with("file:///data/") => None,
                _ => Some(format!("resource {uri:?} outside file:///data/")),
            }
        }
        "prompts/get" => match name {
            Some("evil") => Some("denied prompt".into()),
            Some(_) => None,
            None => Some("prompts/get without a string name".into()),
        },
        _ => None,
    }
}

fn decide(req: &McpRequest, body: &[u8]) -> (BodyOutcome, Attributes) {
    let mut attrs = Attributes::default();
    let out = gateway().on_request_body(req, body, &mut attrs);
    (out, attrs)
}

fuzz_target!(|data: &[u8]| {
    for identity in [None, Some("bot".to_string())] {
        let bot = identity.is_some();
        let req = McpRequest { server: "demo".into(), identity, mcp_headers: Default::default(), grant: None };
        let (outcome, attrs) = decide(&req, data);
        match outcome {
            BodyOutcome::Reply(r) => {
                let v: Value = serde_json::from_str(&r.body).expect("error envelope is JSON");
                assert!(v.get("error").is_some());
                // An error status, or a policy denial answered 200 with the
                // JSON-RPC error (the default denial_http_status).
                let denial = r.status == 200 && v["error"]["code"] == -32003 && attrs.decision == Some(Decision::Deny);
                assert!((400..600).contains(&r.status) || denial, "status {} for {}", r.status, r.body);
            }
            BodyOutcome::Forward(_) => {
                assert_eq!(attrs.decision, Some(Decision::Allow));
                let lenient: Value =
                    serde_json::from_slice(data).expect("a forwarded body is JSON to a lenient reader too");
                let messages = match &lenient {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    one => vec![one],
                };
                for m in messages {
                    if let Some(why) = violation(m, bot) {
                        panic!("forwarded, but a lenient backend reads a forbidden call: {why}");
                    }
                }
                // The same value written canonically gets the same decision.
                let canonical = serde_json::to_vec(&lenient).expect("serialises");
                let (again, attrs2) = decide(&req, &canonical);
                assert!(matches!(again, BodyOutcome::Forward(_)), "its lenient reading is refused");
                assert_eq!((attrs2.method, attrs2.tool), (attrs.method, attrs.tool));
            }
        }
    }
});
