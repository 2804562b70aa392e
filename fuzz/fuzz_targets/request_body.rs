//! JSON-RPC parsing and the policy decision on arbitrary bodies.
//! Properties: no panic; the strict parser accepts only what serde_json
//! accepts (so the gateway never decides on a body a backend reads otherwise).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::gateway::{Attributes, BodyOutcome, Gateway, McpRequest};
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
      demo: { allow_tools: [echo] }
"#;

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| Gateway::from_plugin_config(CONFIG).expect("fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    if mcpx_filter::jsonrpc::parse_strict(data).is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(data).is_ok(), "strict parser accepted what serde_json refuses");
    }
    for identity in [None, Some("bot".to_string())] {
        let req = McpRequest { server: "demo".into(), identity, mcp_headers: Default::default() };
        let mut attrs = Attributes::default();
        match gateway().on_request_body(&req, data, &mut attrs) {
            BodyOutcome::Reply(r) => {
                assert!((400..600).contains(&r.status));
                let v: serde_json::Value = serde_json::from_str(&r.body).expect("error envelope is JSON");
                assert!(v.get("error").is_some());
            }
            BodyOutcome::Forward(_) => assert_eq!(attrs.decision, Some("allow")),
        }
    }
});
