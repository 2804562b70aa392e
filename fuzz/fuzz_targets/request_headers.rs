//! The header phase on arbitrary header lists ("name: value" lines).
//! Property: no panic; every local reply is a JSON envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::gateway::{Attributes, Gateway, HeadOutcome, RequestHead};
use std::sync::OnceLock;

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| Gateway::from_plugin_config("servers: [{name: demo}, {name: other}]").expect("valid"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let headers: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut attrs = Attributes::default();
    if let HeadOutcome::Reply(r) = gateway().on_request_headers(&RequestHead { headers: &headers }, &mut attrs) {
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("error envelope is JSON");
        assert!(v.get("error").is_some());
    }
});
