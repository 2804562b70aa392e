//! RS256 access-token verification (OAuth 2.1 resource server, RFC 9068).
//!
//! Split in two so verified tokens can be cached: [`verify`] does the costly,
//! request-independent part once per token (header rules, key, signature,
//! issuer, identity); [`VerifiedToken::check`] does the cheap per-request part
//! every time (time window, audience for this server, scopes).

use super::b64;
use super::jwks::{KeySet, Lookup};
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Tokens longer than this are refused before any work.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 60;

/// Why a token was refused. `description()` is safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed(String),
    /// `alg` other than RS256 (including `none` and HS256): refused before
    /// any cryptography.
    Algorithm(String),
    /// No keys loaded yet.
    NoKeys,
    /// The token's `kid` is not in the current key set.
    UnknownKid(String),
    /// No `kid` and several keys.
    AmbiguousKey,
    Signature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingExpiry,
    Issuer,
    Audience {
        expected: String,
    },
    Identity(String),
    Scope {
        required: Vec<String>,
    },
}

impl TokenError {
    pub fn description(&self) -> String {
        match self {
            TokenError::Malformed(m) => format!("malformed token: {m}"),
            TokenError::Algorithm(a) => format!("token algorithm {a:?} is not accepted; only RS256 is"),
            TokenError::NoKeys => "the authorization server's keys are not loaded yet".into(),
            TokenError::UnknownKid(k) => format!("token key id {k:?} is not in the authorization server's key set"),
            TokenError::AmbiguousKey => "token has no key id (kid) and the key set has several keys".into(),
            TokenError::Signature => "token signature is invalid".into(),
            TokenError::Expired => "token has expired".into(),
            TokenError::NotYetValid => "token is not valid yet (nbf)".into(),
            TokenError::IssuedInFuture => "token was issued in the future (iat)".into(),
            TokenError::MissingExpiry => "token has no expiry (exp)".into(),
            TokenError::Issuer => "token issuer (iss) is not the configured issuer".into(),
            TokenError::Audience { expected } => {
                format!("token audience (aud) does not include this server's resource {expected:?}")
            }
            TokenError::Identity(claim) => format!("token has no string {claim:?} claim to identify the caller"),
            TokenError::Scope { required } => format!("token lacks the required scope(s): {}", required.join(" ")),
        }
    }

    /// A short stable word for audit logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed_token",
            TokenError::Algorithm(_) => "bad_algorithm",
            TokenError::NoKeys => "keys_unavailable",
            TokenError::UnknownKid(_) | TokenError::AmbiguousKey => "unknown_key",
            TokenError::Signature => "bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid | TokenError::IssuedInFuture => "token_not_yet_valid",
            TokenError::MissingExpiry => "no_expiry",
            TokenError::Issuer => "wrong_issuer",
            TokenError::Audience { .. } => "wrong_audience",
            TokenError::Identity(_) => "no_identity",
            TokenError::Scope { .. } => "insufficient_scope",
        }
    }
}

/// What verification needs besides the key set.
#[derive(Debug, Clone)]
pub struct Rules {
    pub issuer: Option<String>,
    pub identity_claim: String,
}

/// The facts of a token whose signature and issuer were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub identity: String,
    pub audiences: Vec<String>,
    pub scopes: BTreeSet<String>,
    pub expires_at: u64,
    pub not_before: Option<u64>,
}

/// The header facts we act on, read before any cryptography.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    pub kid: Option<String>,
}

pub fn parse_header(token: &str) -> Result<Header, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, _signature] = parts.as_slice() else {
        return Err(TokenError::Malformed("a JWT has three dot-separated parts".into()));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::Malformed("empty header or payload".into()));
    }
    let raw = b64::decode(header).ok_or_else(|| TokenError::Malformed("header is not base64url".into()))?;
    // Strict JSON: duplicate keys would let two parsers see different algs.
    let v =
        crate::request::jsonrpc::parse_strict(&raw).map_err(|_| TokenError::Malformed("header is not JSON".into()))?;
    let obj = v.as_object().ok_or_else(|| TokenError::Malformed("header is not a JSON object".into()))?;
    match obj.get("alg") {
        Some(Value::String(a)) if a == "RS256" => {}
        Some(Value::String(a)) => return Err(TokenError::Algorithm(a.clone())),
        _ => return Err(TokenError::Algorithm("(missing)".into())),
    }
    if obj.contains_key("crit") {
        return Err(TokenError::Malformed("critical header extensions are not supported".into()));
    }
    match obj.get("typ") {
        None => {}
        Some(Value::String(t))
            if ["jwt", "at+jwt", "application/at+jwt"].iter().any(|ok| t.eq_ignore_ascii_case(ok)) => {}
        Some(_) => return Err(TokenError::Malformed("typ is not JWT or at+jwt".into())),
    }
    let kid = match obj.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(TokenError::Malformed("kid is not a string".into())),
    };
    Ok(Header { kid })
}

/// Verifies header rules, key, signature, time (at `now`), issuer and
/// identity. Audience and scopes are per request: see [`VerifiedToken::check`].
pub fn verify(token: &str, keys: Option<&KeySet>, rules: &Rules, now: u64) -> Result<VerifiedToken, TokenError> {
    let header = parse_header(token)?;
    let keys = keys.ok_or(TokenError::NoKeys)?;
    let key = match keys.lookup(header.kid.as_deref()) {
        Lookup::Found(k) => k,
        Lookup::Unknown => return Err(TokenError::UnknownKid(header.kid.unwrap_or_default())),
        Lookup::Ambiguous => return Err(TokenError::AmbiguousKey),
    };
    verify_with_key(token, key, rules, now)
}

fn verify_with_key(token: &str, key: &RsaPublicKey, rules: &Rules, now: u64) -> Result<VerifiedToken, TokenError> {
    // parse_header has checked the length, the three parts and alg RS256.
    let (signed, signature) =
        token.rsplit_once('.').ok_or_else(|| TokenError::Malformed("a JWT has three dot-separated parts".into()))?;
    let signature = b64::decode(signature).ok_or_else(|| TokenError::Malformed("signature is not base64url".into()))?;
    let digest = Sha256::digest(signed.as_bytes());
    key.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &signature).map_err(|_| TokenError::Signature)?;
    let payload = signed.split('.').nth(1).unwrap_or_default();
    let raw = b64::decode(payload).ok_or_else(|| TokenError::Malformed("claims could not be read".into()))?;
    // Claims that do not parse (e.g. a numeric sub) are refused.
    let claims: Claims =
        serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed("claims could not be read".into()))?;
    claims.check_times(now)?;
    let expires_at = claims.exp.ok_or(TokenError::MissingExpiry)?.0;
    if let Some(issuer) = &rules.issuer {
        if claims.iss.as_deref() != Some(issuer.as_str()) {
            return Err(TokenError::Issuer);
        }
    }
    let identity = match rules.identity_claim.as_str() {
        "sub" => claims.sub.clone(),
        "iss" => claims.iss.clone(),
        other => claims.custom.get(other).and_then(Value::as_str).map(str::to_string),
    }
    .filter(|s| !s.is_empty())
    .ok_or_else(|| TokenError::Identity(rules.identity_claim.clone()))?;
    let audiences = match claims.aud {
        Some(Audience::One(a)) => vec![a],
        Some(Audience::Many(set)) => set,
        None => Vec::new(),
    };
    Ok(VerifiedToken {
        identity,
        audiences,
        scopes: scopes(&claims.custom),
        expires_at,
        not_before: claims.nbf.map(|t| t.0),
    })
}

/// The registered claims (RFC 7519 §4.1) with the types the RFC gives them;
/// any other claim is kept in `custom`. A registered claim of another type
/// makes the token malformed.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<Timestamp>,
    #[serde(default)]
    nbf: Option<Timestamp>,
    #[serde(default)]
    iat: Option<Timestamp>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(flatten)]
    custom: Map<String, Value>,
}

impl Claims {
    /// Issued in the future, not yet valid, expired: in that order, each
    /// with [`LEEWAY_SECS`] of clock skew.
    fn check_times(&self, now: u64) -> Result<(), TokenError> {
        let _ = (&self.jti, &self.nonce); // read for their type only
        if self.iat.is_some_and(|t| t.0 > now.saturating_add(LEEWAY_SECS)) {
            return Err(TokenError::IssuedInFuture);
        }
        if self.nbf.is_some_and(|t| now.saturating_add(LEEWAY_SECS) < t.0) {
            return Err(TokenError::NotYetValid);
        }
        if self.exp.is_some_and(|t| now < LEEWAY_SECS || now - LEEWAY_SECS > t.0) {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// `aud`: one string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A NumericDate: seconds since the epoch; a fraction is dropped, a
/// negative value is malformed.
#[derive(Clone, Copy)]
struct Timestamp(u64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                u64::try_from(v).map(Timestamp).map_err(|_| E::custom("negative NumericDate"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Timestamp, E> {
                // `as` saturates (NaN and negatives become 0).
                Ok(Timestamp(v as u64))
            }
        }
        d.deserialize_any(V)
    }
}

/// Granted scopes: `scope` (space-separated, RFC 9068/8693) or `scp` (a list
/// or a string, as some servers write it).
fn scopes(custom: &Map<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for name in ["scope", "scp"] {
        match custom.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_string)),
            _ => {}
        }
    }
    out
}

impl VerifiedToken {
    /// The per-request checks: still within its time window at `now`, meant
    /// for one of `audiences`, and carrying every scope in `required`.
    pub fn check(&self, now: u64, audiences: &[&str], required: &[String]) -> Result<(), TokenError> {
        if now > self.expires_at.saturating_add(LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if self.not_before.is_some_and(|nbf| now.saturating_add(LEEWAY_SECS) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if !self.audiences.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(TokenError::Audience { expected: audiences.first().copied().unwrap_or_default().to_string() });
        }
        self.check_scopes(required)
    }

    pub fn check_scopes(&self, required: &[String]) -> Result<(), TokenError> {
        if required.iter().all(|s| self.scopes.contains(s)) {
            Ok(())
        } else {
            Err(TokenError::Scope { required: required.to_vec() })
        }
    }
}
