//! mcpx.yaml parsing and validation on arbitrary text.
//! Properties: no panic; a config that validates always compiles into a
//! Gateway (validation and compilation agree); valid configs round-trip
//! through the JSON plugin configuration the renderer produces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::config::{Config, Mode};
use mcpx_filter::gateway::Gateway;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for mode in [Mode::Gateway, Mode::Plugin] {
        if let Ok(config) = Config::from_yaml(text, mode) {
            let json = serde_json::to_string(&config).expect("a valid config serialises");
            let back = Config::from_yaml(&json, mode).expect("the rendered plugin configuration is valid");
            assert_eq!(serde_json::to_string(&back).expect("serialises"), json);
            Gateway::new(config).expect("a validated config compiles");
        }
    }
});
