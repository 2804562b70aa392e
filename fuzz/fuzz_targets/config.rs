//! mcpx.yaml parsing and validation on arbitrary text.
//! Properties: no panic; valid configs round-trip through JSON; a valid
//! plugin configuration always compiles into a Gateway, and so does a valid
//! mcpx.yaml once sealed as `mcpx render/run` seal it (`${VAR}` expanded,
//! credentials replaced by digests): validation and compilation agree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::auth::seal_config;
use mcpx_filter::config::{Config, Mode};
use mcpx_filter::gateway::Gateway;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for mode in [Mode::Gateway, Mode::Plugin] {
        if let Ok(config) = Config::from_yaml(text, mode) {
            let json = serde_json::to_string(&config).expect("a valid config serialises");
            let back = Config::from_yaml(&json, mode).expect("the rendered plugin configuration is valid");
            assert_eq!(serde_json::to_string(&back).expect("serialises"), json);
            let for_filter = match mode {
                Mode::Plugin => config,
                // An invalid ${...} reference is a clear render error, not a crash.
                Mode::Gateway => match seal_config(&config, |var| Some(format!("value-of-{var}"))) {
                    Ok(sealed) => sealed,
                    Err(_) => continue,
                },
            };
            Gateway::new(for_filter).expect("a validated config compiles");
        }
    }
});
