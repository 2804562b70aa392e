//! The schema of `mcpx.yaml`, part one: who reads it ([`Mode`]), the file's
//! top level ([`Config`]), the servers and their policy, the clients and
//! authentication. Serde reads it; the defaults stand beside their keys.

use super::{
    AuditConfig, CircuitBreakerConfig, CorsConfig, Duration, InspectionConfig, LimitsConfig, RateLimitConfig,
    TracingConfig,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// Who is reading the config: the standalone gateway or the filter alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `mcpx run/check/render`: every backend must be reachable.
    Gateway,
    /// The wasm plugin configuration: routing belongs to Envoy or the mesh.
    Plugin,
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub auth: AuthConfig,
    /// Per-identity overrides; they can only narrow the server policy.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub inspection: InspectionConfig,
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    #[serde(default)]
    pub tracing: TracingConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// HTTP status of a policy denial (docs/policy.md "What a denied client sees").
    #[serde(default = "default_denial_http_status")]
    pub denial_http_status: u16,
}

/// A denial answered with HTTP 200 and the JSON-RPC error: the one status every
/// official client reads as a JSON-RPC error while keeping its session (the
/// TypeScript SDK turns any other status into a transport error; docs/clients.md).
pub const DENIAL_STATUS_DEFAULT: u16 = 200;
/// The status denials had before; kept for deployments whose tooling counts on it.
pub const DENIAL_STATUS_FORBIDDEN: u16 = 403;

fn default_denial_http_status() -> u16 {
    DENIAL_STATUS_DEFAULT
}

fn default_listen() -> String {
    ":8080".to_string()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Http,
    Stdio,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub name: String,
    #[serde(default)]
    pub transport: Transport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Several replicas of one HTTP backend, instead of `url` (same scheme
    /// and path each): Envoy balances new sessions over them and keeps a
    /// 2025-era session on the replica that created it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// stdio: the account the child runs as (name or numeric uid); mcpx must
    /// run as root to switch. Absent: mcpx's own account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// stdio: the bridge's deadline for each request. HTTP: how long the
    /// backend may stay silent (before its answer or inside a stream) before
    /// Envoy cuts it off (504, reason `upstream_timeout`); unset, an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// Requests in flight to this server at once (Envoy's circuit-breaker
    /// thresholds); past it, 503 with reason `overflow` and `Retry-After`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
}

/// Upper bound for `servers[].endpoints`.
pub const MAX_ENDPOINTS: usize = 64;

impl ServerConfig {
    /// Every URL of an HTTP backend: `url`, or each of `endpoints`.
    pub fn backend_urls(&self) -> Vec<&str> {
        match &self.url {
            Some(u) => vec![u.as_str()],
            None => self.endpoints.iter().map(String::as_str).collect(),
        }
    }

    /// The URL that gives the backend's scheme, path and name (`url`, or the
    /// first endpoint: validation makes them agree on scheme and path).
    pub fn primary_url(&self) -> Option<&str> {
        self.url.as_deref().or(self.endpoints.first().map(String::as_str))
    }
}

/// `servers[].max_in_flight` when unset: Envoy's own default thresholds.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 1024;
/// Upper bound for `servers[].max_in_flight`.
pub const MAX_MAX_IN_FLIGHT: u32 = 1_000_000;

/// A server's (or a client override's) policy, as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Empty or absent: every tool allowed (unless denied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_tools: Vec<String>,
    /// Deny wins over allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_tools: Vec<String>,
    /// Blocks `tools/call`; discovery stays allowed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_rules: BTreeMap<String, ToolRule>,
    /// `resources/read`: URI prefixes allowed (empty: all) and denied (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_resources: Vec<String>,
    /// `prompts/get`: prompt names allowed (empty: all) and denied (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_prompts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_prompts: Vec<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ToolRule {
    #[serde(default)]
    pub args: BTreeMap<String, ArgRule>,
}

/// Conditions on one argument; all present conditions must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// A scalar written in the config (string, number or bool), with its JSON
/// type: rules compare typed (see `crate::request::scalar`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scalar(pub crate::request::scalar::Typed);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        crate::request::scalar::Typed::from_json(&v)
            .map(Scalar)
            .ok_or_else(|| serde::de::Error::custom("expected a string, number or boolean"))
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Server name -> policy that narrows that server's policy for this client.
    #[serde(default)]
    pub servers: BTreeMap<String, PolicyConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    #[default]
    Bearer,
    ApiKey,
    Oauth,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, rename = "type")]
    pub kind: AuthType,
    /// A single anonymous credential (identity "default").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Named credentials; the name is the identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<AuthClient>,
    /// `api_key` only; default `X-API-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<OAuthConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthClient {
    pub name: String,
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The gateway's resource URI (RFC 8707); server N's is `resource + "/" + N`.
    pub resource: String,
    pub jwks_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_servers: Vec<String>,
    #[serde(default = "default_identity_claim")]
    pub identity_claim: String,
    #[serde(default)]
    pub accept_gateway_audience: bool,
    /// `server` or `server/tool` -> scopes a token must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scopes: BTreeMap<String, Vec<String>>,
    /// Public base URL of the gateway (e.g. `https://gw.example.com`) used in
    /// metadata URLs; absent: taken from the request's scheme and authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// The Envoy cluster the filter fetches `jwks_uri` through; `mcpx`
    /// renders `mcpx_jwks`. Mesh users name theirs (e.g. Istio's
    /// `outbound|443||auth.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_cluster: Option<String>,
}

fn default_identity_claim() -> String {
    "sub".to_string()
}
