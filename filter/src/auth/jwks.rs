//! The authorization server's signing keys (RFC 7517 JWK Set), RS256 only.

use super::b64;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;

/// Largest JWKS document accepted (a real one is a few KB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
const MAX_KEYS: usize = 64;
/// RSA keys below this size are ignored (RFC 7518 §3.3 requires 2048).
const MIN_MODULUS_BITS: usize = 2048;

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    pub key: RsaPublicKey,
}

/// The keys of one fetched JWKS.
#[derive(Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("(none)")).collect();
        write!(f, "KeySet{kids:?}")
    }
}

/// How a token's `kid` resolves against the set.
pub enum Lookup<'a> {
    Found(&'a RsaPublicKey),
    /// The kid is not in this set: maybe the server rotated keys.
    Unknown,
    /// No kid in the token and more than one key: refuse rather than guess.
    Ambiguous,
}

impl KeySet {
    /// Parses a JWKS; keys that are not RS256 signing keys are skipped.
    /// A document with no usable key is an error (keep the old set).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        if body.len() > MAX_JWKS_BYTES {
            return Err(format!("JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or("JWKS has no \"keys\" array")?;
        let mut set = KeySet::default();
        for k in keys.iter().take(MAX_KEYS) {
            if let Some(key) = rsa_signing_key(k) {
                set.keys.push(key);
            }
        }
        if set.keys.is_empty() {
            return Err("JWKS has no RS256 signing key (kty RSA, n, e, at least 2048 bits)".into());
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn lookup(&self, kid: Option<&str>) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) => Lookup::Found(&k.key),
                None => Lookup::Unknown,
            },
            None => match self.keys.as_slice() {
                [only] => Lookup::Found(&only.key),
                _ => Lookup::Ambiguous,
            },
        }
    }
}

fn rsa_signing_key(k: &Value) -> Option<Key> {
    let s = |name: &str| k.get(name).and_then(Value::as_str);
    if s("kty") != Some("RSA") {
        return None;
    }
    if !matches!(s("use"), None | Some("sig")) || !matches!(s("alg"), None | Some("RS256")) {
        return None;
    }
    let n = b64::decode(s("n")?)?;
    let e = b64::decode(s("e")?)?;
    let significant = n.iter().skip_while(|b| **b == 0).count();
    if significant * 8 < MIN_MODULUS_BITS {
        return None;
    }
    // Sizes and exponent are checked here (at most 4096 bits, as before).
    let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e)).ok()?;
    Some(Key { kid: s("kid").map(str::to_string), key })
}
