//! JWT verification and JWKS parsing (OAuth) on arbitrary input.
//! Properties: no panic; a header accepted names RS256 (anything else is
//! refused before any cryptography); verification without a key set never
//! succeeds; and no token verifies against a real RS256 key whose private
//! half nobody has (it was thrown away when this file was written), so only
//! a signature made with the key could pass, never a crafted one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpx_filter::auth::jwks::KeySet;
use mcpx_filter::auth::jwt::{parse_header, verify, Rules};
use std::sync::OnceLock;

/// A 2048-bit RSA public key, kid "k1"; its private key was discarded.
const JWKS: &str = r#"{"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1", "n": "9_DAjgo8T1ahAlDeMgvhRYwsDnz9WjOcXGvB06dZNg__XJIZjt3WkRxgw-k7g4aNODlDxtZm86UJXqnYjc_vEjK3wjJxPtVsFuUjI5NIKCXDeBWX4yjtyKCdUDNcxrE9NE7cjqoqHn43qwIJt6fuUET89xqzKrIPp7tewjT4645Wcbqh_K-v77KbrfY92CzHdWrYwZwKny8Z_XcsVE230injTiKdnZjqMnQOKO9-Zr9t9uDiPm9Jv-abD8pzjLa1Z3p9die1BDuLk1DKqeLwVx1jb-ciV1KQ62Uu_9NhbBcAc7l1AefS8zhyytrJLikk8YEVk4ZPnWuErw7yC0p-QQ", "e": "AQAB"}]}"#;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| KeySet::parse(JWKS.as_bytes()).expect("the fixed JWKS parses"))
}

fuzz_target!(|data: &[u8]| {
    let _ = KeySet::parse(data);
    let Ok(token) = std::str::from_utf8(data) else { return };
    let rules = Rules { issuer: None, identity_claim: "sub".into() };
    let now = 1_800_000_000;
    assert!(verify(token, None, &rules, now).is_err(), "a token verified without any key set");
    assert!(verify(token, Some(keys()), &rules, now).is_err(), "a token verified without the private key");
    if parse_header(token).is_ok() {
        let header = token.split('.').next().unwrap_or_default();
        let raw = mcpx_filter::auth::b64::decode(header).expect("an accepted header is base64url");
        let v: serde_json::Value = serde_json::from_slice(&raw).expect("an accepted header is JSON");
        assert_eq!(v["alg"], "RS256");
    }
});
