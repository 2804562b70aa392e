//! Authentication (see docs/auth.md): static bearer tokens and API keys, and an
//! OAuth 2.1 resource server (RS256 JWTs, RFC 9728 metadata, RFC 8707
//! per-server audiences, step-up scopes). Host-independent: the glue feeds
//! JWKS documents in and the gateway asks [`Auth::check`] per request.

pub mod b64;
pub mod jwks;
pub mod jwt;
pub mod oauth;
pub mod secret;

use crate::config::{expand_env, AuthConfig, AuthType, Config, ConfigError};
use crate::envelope::{code, Reply, ReplyTo};
use crate::request::RequestHead;
use oauth::OAuth;
use secret::{Credentials, Digest};
use std::collections::BTreeSet;

/// The identity of the anonymous `auth.token` credential.
pub const DEFAULT_IDENTITY: &str = "default";
pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
const REALM: &str = "mcpx";

/// Who the caller is, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub identity: String,
    /// OAuth only: what the token grants (for per-tool step-up scopes).
    pub grant: Option<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub scopes: BTreeSet<String>,
    /// The per-server RFC 9728 metadata URL, for challenges.
    pub metadata_url: String,
}

/// A refused request: the reply and a short reason for audit.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reply: Reply,
    pub reason: &'static str,
}

/// The outcome of [`Auth::check`].
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Auth is off: nobody is identified, everything passes.
    Open,
    Allowed(Principal),
    Refused(Refusal),
    /// OAuth keys are not there yet (none loaded, or the token's `kid` is
    /// new and a re-fetch is allowed): wait for them (the glue pauses the
    /// request and asks again), or send this refusal when waiting is over.
    AwaitKeys(Refusal),
}

#[derive(Debug)]
enum Kind {
    Disabled,
    Static { scheme: Scheme, credentials: Credentials },
    OAuth(Box<OAuth>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    Bearer,
    /// The lowercase header name.
    ApiKey(String),
}

#[derive(Debug)]
pub struct Auth {
    kind: Kind,
}

impl Auth {
    pub fn new(a: &AuthConfig, servers: &[String]) -> Result<Self, ConfigError> {
        if !a.enabled {
            return Ok(Self { kind: Kind::Disabled });
        }
        let kind = match a.kind {
            AuthType::Bearer | AuthType::ApiKey => {
                let mut credentials = Credentials::default();
                if let Some(t) = a.token.as_deref().filter(|t| !t.is_empty()) {
                    credentials.push(DEFAULT_IDENTITY, digest("auth.token", t)?);
                }
                for (i, c) in a.clients.iter().enumerate() {
                    credentials.push(&c.name, digest(&format!("auth.clients[{i}].token"), &c.token)?);
                }
                if credentials.is_empty() {
                    return Err(ConfigError {
                        key: "auth".into(),
                        message: "needs `token:` or `clients:` when enabled".into(),
                    });
                }
                let scheme = match a.kind {
                    AuthType::ApiKey => {
                        Scheme::ApiKey(a.header.as_deref().unwrap_or(DEFAULT_API_KEY_HEADER).to_ascii_lowercase())
                    }
                    _ => Scheme::Bearer,
                };
                Kind::Static { scheme, credentials }
            }
            AuthType::Oauth => {
                let o = a.oauth.as_ref().ok_or_else(|| ConfigError {
                    key: "auth.oauth".into(),
                    message: "is required with `type: oauth`".into(),
                })?;
                Kind::OAuth(Box::new(OAuth::new(o, servers)?))
            }
        };
        Ok(Self { kind })
    }

    pub fn enabled(&self) -> bool {
        !matches!(self.kind, Kind::Disabled)
    }

    pub fn oauth(&self) -> Option<&OAuth> {
        match &self.kind {
            Kind::OAuth(o) => Some(o),
            _ => None,
        }
    }

    /// The request header that carries the gateway's credential. It is
    /// removed before forwarding: no token passthrough.
    pub fn credential_header(&self) -> Option<&str> {
        match &self.kind {
            Kind::Disabled => None,
            Kind::Static { scheme: Scheme::ApiKey(h), .. } => Some(h),
            _ => Some("authorization"),
        }
    }

    /// Authenticates a request for `server` (`None`: a gateway endpoint such
    /// as `/servers`, where any valid credential will do), at `now` seconds.
    pub fn check(&self, head: &RequestHead<'_>, server: Option<&str>, now: u64) -> Check {
        match &self.kind {
            Kind::Disabled => Check::Open,
            Kind::Static { scheme, credentials } => check_static(scheme, credentials, head),
            Kind::OAuth(o) => o.check(head, server, now),
        }
    }

    /// The RFC 9728 metadata document for `path`, when it is one (oauth only).
    pub fn metadata(&self, head: &RequestHead<'_>) -> Option<Reply> {
        self.oauth().and_then(|o| o.metadata(head))
    }
}

fn digest(key: &str, value: &str) -> Result<Digest, ConfigError> {
    if value.contains("${") {
        return Err(ConfigError { key: key.into(), message: crate::config::UNEXPANDED_SECRET.into() });
    }
    Digest::from_config(value).map_err(|m| ConfigError { key: key.into(), message: m })
}

/// All values of one request header (a repeated header is several entries).
fn header_values<'a>(head: &RequestHead<'a>, name: &str) -> Vec<&'a str> {
    head.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start_matches(' ');
    let token68 = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    (!token.is_empty() && token.bytes().all(token68)).then_some(token)
}

/// The presented credential, or why there is none usable.
enum Presented<'a> {
    Missing,
    Unusable(&'static str),
    Token(&'a str),
}

fn presented<'a>(head: &RequestHead<'a>, header: &str, bearer: bool) -> Presented<'a> {
    match header_values(head, header).as_slice() {
        [] => Presented::Missing,
        [v] if bearer => match bearer_token(v) {
            Some(t) => Presented::Token(t),
            None => Presented::Unusable("the Authorization header must be `Bearer <token>`"),
        },
        [""] => Presented::Missing,
        [v] => Presented::Token(v),
        _ => Presented::Unusable("more than one credential header was sent"),
    }
}

fn check_static(scheme: &Scheme, credentials: &Credentials, head: &RequestHead<'_>) -> Check {
    let (header, bearer) = match scheme {
        Scheme::Bearer => ("authorization", true),
        Scheme::ApiKey(h) => (h.as_str(), false),
    };
    let challenge = match scheme {
        Scheme::Bearer => format!("Bearer realm=\"{REALM}\""),
        Scheme::ApiKey(h) => format!("ApiKey realm=\"{REALM}\", header=\"{h}\""),
    };
    let how = match scheme {
        Scheme::Bearer => "send `Authorization: Bearer <token>`".to_string(),
        Scheme::ApiKey(h) => format!("send the API key in the `{h}` header"),
    };
    match presented(head, header, bearer) {
        Presented::Missing => {
            Check::Refused(unauthorized(&challenge, &format!("authentication required: {how}"), "auth_missing"))
        }
        Presented::Unusable(why) => Check::Refused(unauthorized(
            &format!("{challenge}, error=\"invalid_request\""),
            &format!("invalid credentials: {why}"),
            "auth_invalid",
        )),
        Presented::Token(t) => match credentials.identify(t) {
            Some(identity) => Check::Allowed(Principal { identity: identity.to_string(), grant: None }),
            None => Check::Refused(unauthorized(
                &format!("{challenge}, error=\"invalid_token\""),
                "invalid credentials",
                "auth_invalid",
            )),
        },
    }
}

pub(crate) fn unauthorized(challenge: &str, message: &str, reason: &'static str) -> Refusal {
    Refusal {
        reply: Reply::error(401, code::UNAUTHORIZED, message, &ReplyTo::Http)
            .with_header("www-authenticate", challenge),
        reason,
    }
}

/// A value safe inside a quoted challenge parameter (RFC 6750 §3).
pub(crate) fn quoted_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

/// The config as the filter should receive it from `mcpx render/run`:
/// `${VAR}` in static credentials expanded with `lookup`, and every static
/// credential replaced by its `sha256:` digest, so the rendered Envoy config
/// holds no secret.
pub fn seal_config(config: &Config, lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut c = config.clone();
    let seal_one = |key: String, value: &mut String| -> Result<(), ConfigError> {
        let expanded = expand_env(value, &lookup).map_err(|m| ConfigError { key: key.clone(), message: m })?;
        *value = secret::seal(&expanded).map_err(|m| ConfigError { key, message: m })?;
        Ok(())
    };
    if let Some(t) = c.auth.token.as_mut().filter(|t| !t.is_empty()) {
        seal_one("auth.token".into(), t)?;
    }
    for (i, client) in c.auth.clients.iter_mut().enumerate() {
        seal_one(format!("auth.clients[{i}].token"), &mut client.token)?;
    }
    Ok(c)
}

/// Seconds since the Unix epoch (the crate's one clock).
pub use crate::clock::now_secs;

#[cfg(test)]
mod tests;
