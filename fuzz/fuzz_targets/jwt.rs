//! JWT header parsing and JWKS parsing (OAuth) on arbitrary input.
//! Properties: no panic; a header accepted names RS256 (anything else is
//! refused before any cryptography); verification without keys never
//! succeeds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::auth::jwks::KeySet;
use mcpx_filter::auth::jwt::parse_header;

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::parse(data);
    let Ok(token) = std::str::from_utf8(data) else { return };
    if parse_header(token).is_ok() {
        let header = token.split('.').next().unwrap_or_default();
        let raw = mcpx_filter::auth::b64::decode(header).expect("an accepted header is base64url");
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("an accepted header is JSON");
        assert_eq!(v["alg"], "RS256");
    }
});
