//! tools/list response inspection on arbitrary backend answers, through the
//! real `Gateway` with a policy (integrity off, so only policy removes).
//! Properties: no panic; an answer the gateway passes unchanged needed no
//! change (the client gets the backend's bytes); a rewritten answer is, as a
//! value, exactly the backend's with the tools the policy forbids removed
//! from every list result, whatever its id and however its member names are
//! cased (clients match ids numerically, Go decoders fold member names), and
//! `cacheScope: private` added for a client with its own view, every other
//! message and field untouched; the removed names are exactly those tools.
//! And the one-pass inspection (each tool read once, kept tools spliced in as
//! the backend wrote them) decides exactly as the tree path it replaced:
//! the same refusals, and an answer that reads as the same value, on one
//! event-stream line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::request::fold::fold_eq;
use mcpx_filter::gateway::{Gateway, McpRequest};
use mcpx_filter::integrity::MemoryStore;
use serde_json::{json, Value};
use std::sync::OnceLock;

const CONFIG: &str = r#"
servers:
  - name: demo
    policy:
      deny_tools: [dangerous_delete, x]
clients:
  bot:
    servers:
      demo: { allow_tools: [echo, read_file, x] }
inspection: { tool_integrity: "off", filter_tools_list: true }
"#;

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| Gateway::from_plugin_config(CONFIG).expect("fuzz config is valid"))
}

/// The policy, read from CONFIG by hand: may this caller see the tool?
fn visible(tool: &Value, bot: bool) -> bool {
    let Some(name) = tool.get("name").and_then(Value::as_str) else { return false };
    name != "dangerous_delete" && name != "x" && (!bot || name == "echo" || name == "read_file")
}

/// The member of `obj` a case-folding decoder reads as `name`.
fn member<'a>(obj: &'a mut serde_json::Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    obj.iter_mut().find(|(k, _)| fold_eq(k, name)).map(|(_, v)| v)
}

/// The expected answer: `before` with the forbidden tools removed from every
/// list result; also returns the removed tools' names.
fn expected(before: &Value, bot: bool) -> (Value, Vec<String>) {
    let mut after = before.clone();
    let mut removed = Vec::new();
    let mut one = |msg: &mut Value| {
        let Some(msg) = msg.as_object_mut() else { return };
        let Some(result) = member(msg, "result").and_then(Value::as_object_mut) else { return };
        // A list is a result with a `tools` array, whatever the message's id.
        let Some(Value::Array(tools)) = member(result, "tools") else { return };
        for t in tools.iter().filter(|t| !visible(t, bot)) {
            removed.push(t.get("name").and_then(Value::as_str).unwrap_or("<unnamed>").to_string());
        }
        tools.retain(|t| visible(t, bot));
        if bot {
            result.insert("cacheScope".into(), json!("private"));
        }
    };
    match &mut after {
        Value::Array(items) => items.iter_mut().for_each(&mut one),
        other => one(other),
    }
    (after, removed)
}

fuzz_target!(|data: &[u8]| {
    let ids = [json!(1), json!("a")];
    for identity in [None, Some("bot".to_string())] {
        let bot = identity.is_some();
        let req = McpRequest { server: "demo".into(), identity, mcp_headers: Default::default(), grant: None };
        let found = gateway().rewrite_tools_list(&req, &ids, data, &mut MemoryStore::default());
        let inspector = gateway().list_inspector(&req).expect("the fuzz config has the server");
        let tree = inspector.inspect_json_tree(data, &mut MemoryStore::default());
        assert_eq!(found.is_ok(), tree.is_ok(), "the one-pass and tree paths disagree on refusing");
        let Ok(inspection) = found else {
            continue;
        };
        let tree = tree.map(|t| t.body).unwrap_or_default();
        assert_eq!(inspection.body.is_some(), tree.is_some(), "one path rewrote the answer, the other did not");
        if let (Some(one), Some(tree)) = (&inspection.body, tree) {
            assert!(!one.iter().any(|b| *b == b'\n' || *b == b'\r'), "the rewritten answer has a line break");
            let one: Value = serde_json::from_slice(one).expect("the spliced answer is JSON");
            let tree: Value = serde_json::from_slice(&tree).expect("the tree answer is JSON");
            assert_eq!(one, tree, "the one-pass and tree paths wrote different answers");
        }
        // Clients skip one leading BOM, and so does the inspector.
        let unmarked = data.strip_prefix("\u{feff}".as_bytes()).unwrap_or(data);
        let before: Value = serde_json::from_slice(unmarked).expect("an inspected answer is JSON");
        assert!(before.is_object() || before.is_array(), "a scalar answer was passed as a list");
        let (want, removed) = expected(&before, bot);
        match inspection.body {
            None => assert_eq!(want, before, "passed unchanged although the policy forbids some of it"),
            Some(body) => {
                let after: Value = serde_json::from_slice(&body).expect("the rewritten answer is JSON");
                assert_eq!(after, want, "the rewrite changed more, or less, than the forbidden tools");
            }
        }
        assert_eq!(inspection.removed, removed);
    }
});
