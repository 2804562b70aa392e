//! Header/body agreement (2026-07-28 `Mcp-Method`, `Mcp-Name`,
//! `Mcp-Param-*`, `MCP-Protocol-Version`) through the real `Gateway`'s head
//! and body phases. Input: header lines ("name: value"), a blank line, the
//! body.
//! Properties: no panic; whenever the request is forwarded, every routing
//! header present says what the body says (read by a lenient, last-key-wins
//! decoder): `Mcp-Method` is the single message's method, `Mcp-Name` its
//! params.name or params.uri, each `Mcp-Param-X` names exactly one argument;
//! none of them appears twice, and none comes with a batch. `Mcp-Param-*` is
//! forwarded only on a 2026-07-28 request; and when tool `t` has a known
//! `x-mcp-header` map (`region` -> `Region`, `cfg.tenant` -> `Tenant`), a
//! forwarded call to it carries exactly the declared headers whose argument
//! has a scalar value, and no other `Mcp-Param-*`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, RequestHead};
use mcpx_filter::headers::paramheaders::{Declared, ToolHeaders};
use serde_json::Value;
use std::sync::OnceLock;

/// The map the second run knows for tool `t`.
fn map() -> Vec<Declared> {
    vec![
        Declared { path: vec!["region".into()], token: "Region".into() },
        Declared { path: vec!["cfg".into(), "tenant".into()], token: "Tenant".into() },
    ]
}

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| Gateway::from_plugin_config("servers: [{name: demo}]").expect("valid"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut headers: Vec<(String, String)> = vec![
        (":method".into(), "POST".into()),
        (":path".into(), "/mcp/demo".into()),
        ("content-type".into(), "application/json".into()),
    ];
    headers.extend(head.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())));
    let mut attrs = Attributes::default();
    let HeadOutcome::ReadBody(req) = gateway().on_request_headers(&RequestHead { headers: &headers }, &mut attrs)
    else {
        return;
    };
    let known = |tool: &str| Ok((tool == "t").then(|| ToolHeaders::Map(map())));
    let mapped = matches!(
        gateway().on_request_body_checked(&req, body.as_bytes(), &mut Attributes::default(), &|_, _| Ok(None), &known),
        BodyOutcome::Forward(_)
    );
    let forwarded = matches!(gateway().on_request_body(&req, body.as_bytes(), &mut attrs), BodyOutcome::Forward(_));
    if !forwarded && !mapped {
        return;
    }
    let msg: Value = serde_json::from_str(body).expect("a forwarded body is JSON");
    let params: Vec<String> = headers
        .iter()
        .filter_map(|(k, _)| k.to_ascii_lowercase().strip_prefix("mcp-param-").map(str::to_string))
        .collect();
    let meta = msg.pointer("/params/_meta/io.modelcontextprotocol~1protocolVersion").and_then(Value::as_str);
    let header = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("mcp-protocol-version")).map(|(_, v)| v.as_str());
    let modern = header.or(meta).is_some_and(|v| v >= "2026-07-28");
    assert!(params.is_empty() || modern, "Mcp-Param forwarded on an older version");
    let call_to_t = msg.get("method").and_then(Value::as_str) == Some("tools/call")
        && msg.pointer("/params/name").and_then(Value::as_str) == Some("t");
    if mapped && modern && call_to_t {
        let args = msg.pointer("/params/arguments");
        for d in map() {
            let mut v = args;
            for step in &d.path {
                v = v.and_then(|a| a.as_object()).and_then(|o| o.get(step));
            }
            let scalar = matches!(v, Some(Value::String(_) | Value::Number(_) | Value::Bool(_)));
            let sent = params.iter().filter(|p| p.eq_ignore_ascii_case(&d.token)).count();
            assert_eq!(sent, usize::from(scalar), "{} header and its argument disagree on presence", d.token);
        }
        for p in &params {
            assert!(map().iter().any(|d| d.token.eq_ignore_ascii_case(p)), "undeclared Mcp-Param-{p} forwarded");
        }
    }
    if !forwarded {
        return;
    }
    let routing = |h: &str| h.eq_ignore_ascii_case("mcp-method") || h.eq_ignore_ascii_case("mcp-name")
        || h.to_ascii_lowercase().starts_with("mcp-param-");
    let names: Vec<String> = headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    for (k, v) in &headers {
        let lower = k.to_ascii_lowercase();
        let copies = names.iter().filter(|n| **n == lower).count();
        if routing(k) || lower == "mcp-protocol-version" {
            assert_eq!(copies, 1, "{k} forwarded twice");
        }
        if routing(k) {
            assert!(msg.is_object(), "{k} forwarded with a batch");
        }
        let plain = !v.starts_with("=?base64?");
        let method = msg.get("method").and_then(Value::as_str);
        let params = msg.get("params");
        if lower == "mcp-method" {
            assert_eq!(method, Some(v.as_str()), "Mcp-Method disagrees with the body");
        }
        if lower == "mcp-name" && plain {
            let key = if method.is_some_and(|m| m.starts_with("resources/")) { "uri" } else { "name" };
            let said = params.and_then(|p| p.get(key)).and_then(Value::as_str);
            assert_eq!(said, Some(v.as_str()), "Mcp-Name disagrees with the body");
        }
        if let Some(token) = lower.strip_prefix("mcp-param-") {
            let args = params.and_then(|p| p.get("arguments")).and_then(Value::as_object);
            let matching = args.into_iter().flatten().filter(|(a, _)| a.eq_ignore_ascii_case(token)).count();
            assert_eq!(matching, 1, "{k} names no single argument");
        }
    }
});
