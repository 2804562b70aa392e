//! The OAuth 2.1 resource server: per-server audiences (RFC 8707), RFC 9728
//! metadata, challenges with `resource_metadata`, step-up scopes, and the
//! per-VM key set and verified-token cache.

use super::jwks::KeySet;
use super::jwt::{self, Rules, TokenError, VerifiedToken};
use super::{quoted_safe, unauthorized, Check, Grant, Principal, Refusal};
use crate::config::{BackendUrl, ConfigError, OAuthConfig};
use crate::envelope::{code, Reply, ReplyTo};
use crate::request::{RequestHead, MCP_PREFIX};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The Envoy cluster the JWKS is fetched through (rendered by `mcpx`).
pub const DEFAULT_JWKS_CLUSTER: &str = "mcpx_jwks";
/// Verified tokens kept per VM; beyond this the cache is emptied.
const TOKEN_CACHE_MAX: usize = 4096;
/// The key set is re-fetched this often even when nothing asks for it.
pub const REFRESH_SECS: u64 = 300;
/// At most one JWKS fetch per this many seconds (per gateway, all workers),
/// however many unknown `kid`s arrive.
pub const REFETCH_FLOOR_SECS: u64 = 2;

#[derive(Debug)]
pub struct OAuth {
    resource: String,
    rules: Rules,
    accept_gateway_audience: bool,
    scopes: BTreeMap<String, Vec<String>>,
    public_url: Option<String>,
    authorization_servers: Vec<String>,
    servers: Vec<String>,
    /// Where the key set comes from.
    pub jwks: JwksSource,
    /// A Mutex, not a RefCell, only so a `Gateway` stays `Sync` (the fuzz
    /// targets and the native binary may share one); wasm never contends.
    state: Mutex<State>,
}

/// How to fetch the JWKS through Envoy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSource {
    pub uri: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
}

impl JwksSource {
    pub fn parse(uri: &str, cluster: &str) -> Result<Self, String> {
        let u = BackendUrl::parse(uri)?;
        let default_port = if u.tls { 443 } else { 80 };
        let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
        let authority = if u.port == default_port { host } else { format!("{host}:{}", u.port) };
        // BackendUrl defaults an empty path to /mcp; a JWKS path is its own.
        let after_scheme = uri.split_once("://").map_or("", |(_, r)| r);
        let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]).to_string();
        Ok(Self { uri: uri.to_string(), cluster: cluster.to_string(), authority, path })
    }
}

/// Per-VM mutable state: the current keys and verified tokens.
#[derive(Debug, Default)]
struct State {
    keys: Option<KeySet>,
    /// When the current keys were fetched (seconds).
    fetched_at: Option<u64>,
    /// A token named a kid we do not have: fetch again (subject to the floor).
    refetch_wanted: bool,
    cache: HashMap<[u8; 32], VerifiedToken>,
}

impl OAuth {
    pub fn new(o: &OAuthConfig, servers: &[String]) -> Result<Self, ConfigError> {
        let err = |key: &str, message: String| ConfigError { key: format!("auth.oauth.{key}"), message };
        let cluster = o.jwks_cluster.as_deref().unwrap_or(DEFAULT_JWKS_CLUSTER);
        if cluster.trim().is_empty() {
            return Err(err("jwks_cluster", "must name an Envoy cluster (default mcpx_jwks)".into()));
        }
        let jwks = JwksSource::parse(&o.jwks_uri, cluster).map_err(|m| err("jwks_uri", m))?;
        let mut authorization_servers = o.authorization_servers.clone();
        if authorization_servers.is_empty() {
            authorization_servers.extend(o.issuer.clone());
        }
        Ok(Self {
            resource: o.resource.trim_end_matches('/').to_string(),
            rules: Rules { issuer: o.issuer.clone(), identity_claim: o.identity_claim.clone() },
            accept_gateway_audience: o.accept_gateway_audience,
            scopes: o.scopes.clone(),
            public_url: o.public_url.as_ref().map(|u| u.trim_end_matches('/').to_string()),
            authorization_servers,
            servers: servers.to_vec(),
            jwks,
            state: Mutex::new(State::default()),
        })
    }

    /// The per-VM state; a poisoned lock (a panic elsewhere) is still usable.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Server `name`'s resource URI: the audience its tokens must name.
    pub fn server_resource(&self, server: &str) -> String {
        format!("{}/{server}", self.resource)
    }

    fn server_scopes(&self, server: &str) -> Vec<String> {
        self.scopes.get(server).cloned().unwrap_or_default()
    }

    /// Scopes a call to `tool` on `server` needs beyond the server's own.
    pub fn tool_scopes(&self, server: &str, tool: &str) -> Option<&Vec<String>> {
        self.scopes.get(&format!("{server}/{tool}"))
    }

    // ---- keys (fed by `stream::jwks`) ----

    /// Installs a fetched JWKS; the verified-token cache is emptied because
    /// a key may have been withdrawn. Returns the number of usable keys.
    pub fn install_jwks(&self, body: &[u8], fetched_at: u64) -> Result<usize, String> {
        let set = KeySet::parse(body)?;
        let n = set.len();
        let mut s = self.state();
        s.keys = Some(set);
        s.fetched_at = Some(fetched_at);
        s.refetch_wanted = false;
        s.cache.clear();
        Ok(n)
    }

    pub fn has_keys(&self) -> bool {
        self.state().keys.is_some()
    }

    /// Whether this VM would like a fetch now (`stream::jwks` applies the floor).
    pub fn fetch_wanted(&self, now: u64) -> bool {
        let s = self.state();
        s.keys.is_none() || s.refetch_wanted || s.fetched_at.is_none_or(|t| now.saturating_sub(t) >= REFRESH_SECS)
    }

    /// Whether the current keys are old enough that fetching again is
    /// allowed (`stream::jwks`'s shared lease enforces the same floor globally).
    pub fn refetch_possible(&self, now: u64) -> bool {
        self.state().fetched_at.is_none_or(|t| now >= t.saturating_add(REFETCH_FLOOR_SECS))
    }

    // ---- requests ----

    pub fn check(&self, head: &RequestHead<'_>, server: Option<&str>, now: u64) -> Check {
        let metadata_url = self.metadata_url(head, server);
        let required = server.map(|s| self.server_scopes(s)).unwrap_or_default();
        let challenge = |extra: &str| {
            let mut c = format!("Bearer resource_metadata=\"{}\"", quoted_safe(&metadata_url));
            if !required.is_empty() {
                c.push_str(&format!(", scope=\"{}\"", quoted_safe(&required.join(" "))));
            }
            c.push_str(extra);
            c
        };
        let values = super::header_values(head, "authorization");
        let token = match values.as_slice() {
            [] => {
                let msg = "authentication required: send `Authorization: Bearer <access token>` (OAuth; see the resource_metadata in WWW-Authenticate)";
                return Check::Refused(unauthorized(&challenge(""), msg, "auth_missing"));
            }
            [v] => match super::bearer_token(v) {
                Some(t) => t,
                None => {
                    let msg = "invalid credentials: the Authorization header must be `Bearer <access token>`";
                    return Check::Refused(unauthorized(
                        &challenge(", error=\"invalid_request\""),
                        msg,
                        "auth_invalid",
                    ));
                }
            },
            _ => {
                return Check::Refused(unauthorized(
                    &challenge(", error=\"invalid_request\""),
                    "invalid credentials: more than one Authorization header",
                    "auth_invalid",
                ))
            }
        };
        let verified = match self.verified(token, now) {
            Ok(v) => v,
            Err(TokenError::NoKeys) => return Check::AwaitKeys(keys_unavailable(&self.jwks.uri)),
            // Maybe a rotated key: wait for a re-fetch when the floor allows
            // one, else refuse now (a flood of bogus kids stays cheap).
            Err(e @ TokenError::UnknownKid(_)) if self.refetch_possible(now) => {
                return Check::AwaitKeys(self.invalid_token(&challenge, &e))
            }
            Err(e) => return Check::Refused(self.invalid_token(&challenge, &e)),
        };
        // A server accepts its own resource; gateway endpoints (/servers,
        // /metrics) accept a token for any server of this gateway.
        let resources: Vec<String> = match server {
            Some(s) => vec![self.server_resource(s)],
            None => self.servers.iter().map(|s| self.server_resource(s)).collect(),
        };
        let mut audiences: Vec<&str> = resources.iter().map(String::as_str).collect();
        if self.accept_gateway_audience || server.is_none() {
            audiences.push(&self.resource);
        }
        match verified.check(now, &audiences, &[]) {
            Ok(()) => {}
            Err(e) => return Check::Refused(self.invalid_token(&challenge, &e)),
        }
        if let Err(e) = verified.check_scopes(&required) {
            let desc = format!("{} (server {:?})", e.description(), server.unwrap_or_default());
            return Check::Refused(insufficient_scope(&metadata_url, &required, &desc, &ReplyTo::Http));
        }
        Check::Allowed(Principal {
            identity: verified.identity,
            grant: Some(Grant { scopes: verified.scopes, metadata_url }),
        })
    }

    /// The verified facts of `token`, from the cache or verified now; the
    /// time window is re-checked on every use.
    fn verified(&self, token: &str, now: u64) -> Result<VerifiedToken, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut s = self.state();
        let verified = match s.cache.get(&key) {
            Some(v) => v.clone(),
            None => {
                let v = jwt::verify(token, s.keys.as_ref(), &self.rules, now).inspect_err(|e| {
                    if matches!(e, TokenError::UnknownKid(_) | TokenError::NoKeys) {
                        s.refetch_wanted = true;
                    }
                })?;
                if s.cache.len() >= TOKEN_CACHE_MAX {
                    s.cache.retain(|_, t| t.expires_at.saturating_add(jwt::LEEWAY_SECS) >= now);
                    if s.cache.len() >= TOKEN_CACHE_MAX {
                        s.cache.clear();
                    }
                }
                s.cache.insert(key, v.clone());
                v
            }
        };
        // Time is re-checked on every use, cached or not.
        verified.check_time(now)?;
        Ok(verified)
    }

    fn invalid_token(&self, challenge: &dyn Fn(&str) -> String, e: &TokenError) -> Refusal {
        let desc = e.description();
        let extra = format!(", error=\"invalid_token\", error_description=\"{}\"", quoted_safe(&desc));
        unauthorized(&challenge(&extra), &format!("invalid access token: {desc}"), e.reason())
    }

    /// The per-tool step-up check for a `tools/call` of `tool` on `server`.
    pub fn check_tool(&self, server: &str, tool: &str, grant: &Grant, to: &ReplyTo) -> Option<Refusal> {
        let tool_scopes = self.tool_scopes(server, tool)?;
        if tool_scopes.iter().all(|s| grant.scopes.contains(s)) {
            return None;
        }
        // Ask for everything this call needs: the server's scopes and the tool's.
        let mut all = self.server_scopes(server);
        for s in tool_scopes {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        let desc = format!("tool {tool:?} needs scope(s) {}", tool_scopes.join(" "));
        Some(insufficient_scope(&grant.metadata_url, &all, &desc, to))
    }

    // ---- metadata (RFC 9728) ----

    /// The public base URL: `public_url`, else the request's scheme and
    /// authority, else the origin of `resource`.
    fn base_url(&self, head: &RequestHead<'_>) -> String {
        if let Some(u) = &self.public_url {
            return u.clone();
        }
        let proto = |v: Option<&str>| {
            v.map(|p| p.split(',').next().unwrap_or("").trim().to_ascii_lowercase())
                .filter(|p| p == "http" || p == "https")
        };
        let scheme = proto(head.get("x-forwarded-proto")).or_else(|| proto(head.get(":scheme")));
        let authority = head
            .get(":authority")
            .or_else(|| head.get("host"))
            .filter(|a| !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b)));
        match (scheme, authority) {
            (Some(s), Some(a)) => format!("{s}://{a}"),
            (None, Some(a)) => format!("http://{a}"),
            _ => origin(&self.resource),
        }
    }

    /// The metadata URL for `server` (path-inserted, RFC 9728 §3.1), or the
    /// gateway-wide one.
    pub fn metadata_url(&self, head: &RequestHead<'_>, server: Option<&str>) -> String {
        match server {
            Some(s) => format!("{}{METADATA_PATH}{MCP_PREFIX}{s}", self.base_url(head)),
            None => format!("{}{METADATA_PATH}", self.base_url(head)),
        }
    }

    pub fn metadata(&self, head: &RequestHead<'_>) -> Option<Reply> {
        let rest = head.path().strip_prefix(METADATA_PATH)?;
        let server = match rest {
            "" | "/" => None,
            r => match r.strip_prefix(MCP_PREFIX) {
                Some(s) => Some(s),
                None => return None,
            },
        };
        if !matches!(head.method(), "GET" | "HEAD") {
            return Some(
                Reply::error(405, code::METHOD_NOT_ALLOWED, "metadata is read with GET", &ReplyTo::Http)
                    .with_header("allow", "GET, HEAD"),
            );
        }
        Some(Reply::json(200, &self.metadata_doc(server)?).with_header("cache-control", "max-age=300"))
    }

    /// `None` for an unknown server is decided by the caller (it knows the
    /// server list); here every name gets a document.
    fn metadata_doc(&self, server: Option<&str>) -> Option<Value> {
        let (resource, scopes): (String, BTreeSet<&String>) = match server {
            Some(s) => {
                let prefix = format!("{s}/");
                let scopes = self
                    .scopes
                    .iter()
                    .filter(|(k, _)| k.as_str() == s || k.starts_with(&prefix))
                    .flat_map(|(_, v)| v)
                    .collect();
                (self.server_resource(s), scopes)
            }
            None => (self.resource.clone(), self.scopes.values().flatten().collect()),
        };
        let mut doc = json!({
            "resource": resource,
            "authorization_servers": self.authorization_servers,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcpx MCP gateway",
        });
        if let (false, Some(d)) = (scopes.is_empty(), doc.as_object_mut()) {
            d.insert("scopes_supported".into(), json!(scopes));
        }
        Some(doc)
    }
}

impl VerifiedToken {
    fn check_time(&self, now: u64) -> Result<(), TokenError> {
        if now > self.expires_at.saturating_add(jwt::LEEWAY_SECS) {
            return Err(TokenError::Expired);
        }
        if self.not_before.is_some_and(|nbf| now.saturating_add(jwt::LEEWAY_SECS) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }
}

fn origin(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or("")),
        None => url.to_string(),
    }
}

fn insufficient_scope(metadata_url: &str, scopes: &[String], desc: &str, to: &ReplyTo) -> Refusal {
    let challenge = format!(
        "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"{}\"",
        quoted_safe(&scopes.join(" ")),
        quoted_safe(metadata_url),
        quoted_safe(desc)
    );
    let data = json!({ "reason": "insufficient_scope", "scopes": scopes });
    Refusal {
        reply: Reply::error_with_data(
            403,
            code::FORBIDDEN,
            &format!("insufficient scope: {desc}; request a token with the scope(s) in WWW-Authenticate"),
            Some(data),
            to,
        )
        .with_header("www-authenticate", challenge),
        reason: "insufficient_scope",
    }
}

/// Fail closed while no key set has ever been loaded.
fn keys_unavailable(jwks_uri: &str) -> Refusal {
    let msg = format!(
        "the gateway cannot verify access tokens yet: the authorization server's keys ({jwks_uri}) have not been loaded; retry shortly"
    );
    Refusal {
        reply: Reply::error(503, code::UNAVAILABLE, &msg, &ReplyTo::Http).with_header("retry-after", "1"),
        reason: "keys_unavailable",
    }
}
