//! The `mcpx.yaml` schema (docs/configuration.md), shared by the filter and the `mcpx` binary.
//!
//! One schema, two readers: `mcpx check`/`run` validate a file in
//! [`Mode::Gateway`] (backends need a `url` or a `command`), while the filter
//! validates its plugin configuration in [`Mode::Plugin`] (the mesh routes to
//! backends, so only names and policy matter). Unknown keys are rejected by
//! serde with the key and its line; semantic errors name the key path and the fix.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Who is reading the config: the standalone gateway or the filter alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `mcpx run/check/render`: every backend must be reachable.
    Gateway,
    /// The wasm plugin configuration: routing belongs to Envoy or the mesh.
    Plugin,
}

pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Why a plugin configuration may not hold `${VAR}` in a credential.
pub const UNEXPANDED_SECRET: &str = "holds an unexpanded ${VAR}: the filter cannot read environment variables; \
     `mcpx run/render` expand them, or write the value (or its sha256:<hex> digest) into the plugin configuration";

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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `stdout`, `stderr` or a file path.
    #[serde(default = "default_audit_output")]
    pub output: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { enabled: true, output: default_audit_output() }
    }
}

fn yes() -> bool {
    true
}

fn default_audit_output() -> String {
    "stdout".to_string()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_rps")]
    pub rps: u32,
    #[serde(default = "default_burst")]
    pub burst: u32,
    #[serde(default)]
    pub per_tool: bool,
    #[serde(default = "default_tool_rps")]
    pub tool_rps: u32,
    #[serde(default = "default_tool_burst")]
    pub tool_burst: u32,
    /// One bucket per client identity (`client_rps`, `client_burst`).
    #[serde(default)]
    pub per_client: bool,
    #[serde(default = "default_rps")]
    pub client_rps: u32,
    #[serde(default = "default_burst")]
    pub client_burst: u32,
    /// Where the buckets live: in each Envoy (`local`) or in a rate-limit
    /// service shared by every gateway (`global`, docs/operations.md).
    #[serde(default)]
    pub backend: RateLimitBackend,
    /// `global`: the gRPC `RateLimitService` as `HOST:PORT`.
    #[serde(default)]
    pub service: Option<String>,
    /// `global`: what a request gets while the service cannot answer.
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    #[default]
    Local,
    Global,
}

/// `deny` (the default) fails closed: no answer from the service, no call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    #[default]
    Deny,
    Allow,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            rps: default_rps(),
            burst: default_burst(),
            per_tool: false,
            tool_rps: default_tool_rps(),
            tool_burst: default_tool_burst(),
            per_client: false,
            client_rps: default_rps(),
            client_burst: default_burst(),
            backend: RateLimitBackend::Local,
            service: None,
            failure_mode: None,
        }
    }
}

fn default_rps() -> u32 {
    100
}
fn default_burst() -> u32 {
    20
}
fn default_tool_rps() -> u32 {
    10
}
fn default_tool_burst() -> u32 {
    5
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IntegrityMode {
    Off,
    #[default]
    Warn,
    Enforce,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InspectionConfig {
    #[serde(default)]
    pub tool_integrity: IntegrityMode,
    #[serde(default = "yes")]
    pub filter_tools_list: bool,
    /// The reviewed lock file (`mcpx.lock`, docs/integrity.md), relative to
    /// mcpx.yaml. `mcpx run/render` read it and embed its pins as [`Self::pins`];
    /// the filter cannot read files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// The lock's pins, embedded: server -> tool -> JCS SHA-256 (hex). The
    /// servers listed here are checked against these pins instead of first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins: Option<LockPins>,
}

/// server -> tool name -> SHA-256 (lowercase hex) of the tool's RFC 8785 form.
pub type LockPins = BTreeMap<String, BTreeMap<String, String>>;

impl Default for InspectionConfig {
    fn default() -> Self {
        Self { tool_integrity: IntegrityMode::default(), filter_tools_list: true, lock: None, pins: None }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    #[serde(default = "default_cooldown")]
    pub cooldown: Duration,
    #[serde(default = "default_half_open_max")]
    pub half_open_max: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            failure_threshold: default_failure_threshold(),
            cooldown: default_cooldown(),
            half_open_max: default_half_open_max(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_cooldown() -> Duration {
    Duration::from_millis(30_000)
}
fn default_half_open_max() -> u32 {
    1
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: None,
            service_name: default_service_name(),
            sample_ratio: default_sample_ratio(),
        }
    }
}

fn default_service_name() -> String {
    "mcpx".to_string()
}
fn default_sample_ratio() -> f64 {
    0.1
}

/// Bounds on what one client may hold: request size, how long a request may
/// take to arrive, and how many connections the gateway accepts. The
/// timeouts and the connection cap are Envoy settings `mcpx` renders; the
/// filter reads only `max_body_bytes`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// All request headers must arrive within this (408 after it).
    #[serde(default = "default_request_headers_timeout")]
    pub request_headers_timeout: Duration,
    /// The whole request, headers and body, must arrive within this (408
    /// after it). It never bounds the response, so streams keep streaming.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Duration,
    /// Open client connections the gateway accepts at once; more are closed
    /// on accept (Envoy's overload manager).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

pub const DEFAULT_REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_millis(10_000);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(30_000);
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_headers_timeout: DEFAULT_REQUEST_HEADERS_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_request_headers_timeout() -> Duration {
    DEFAULT_REQUEST_HEADERS_TIMEOUT
}
fn default_request_timeout() -> Duration {
    DEFAULT_REQUEST_TIMEOUT
}
fn default_max_connections() -> u32 {
    DEFAULT_MAX_CONNECTIONS
}

/// A duration written as `500ms`, `30s`, `2m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }
    pub fn as_millis(self) -> u64 {
        self.millis
    }
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit())?;
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().ok()?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        n.checked_mul(factor).map(Self::from_millis)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.millis;
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: write a whole number with a unit, e.g. 500ms, 30s, 2m or 1h"
            ))
        })
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A config error: where (a key path such as `servers[1].name`, or the YAML
/// position) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A parsed backend URL: `http(s)://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The backend's own MCP path; `/mcp` when the URL has none.
    pub path: String,
}

impl BackendUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("must not contain user credentials; use auth headers instead".into());
        }
        if path.contains(['?', '#']) {
            return Err("must not contain a query string or fragment".into());
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(if tls { 443 } else { 80 });
        let path = if path.is_empty() || path == "/" { "/mcp".to_string() } else { path.to_string() };
        Ok(Self { tls, host, port, path })
    }
}

/// Splits `host:port`, `[v6]:port`, `host`; the host may be empty (`:8080`).
/// `backend: global` needs a service to ask; the global-only keys make no
/// sense with `local` (a typo there would silently keep limits per gateway).
fn validate_rate_limit_backend(rl: &RateLimitConfig) -> Result<(), ConfigError> {
    if rl.enabled && rl.per_client && (rl.client_rps == 0 || rl.client_burst == 0) {
        return Err(ConfigError::new("rate_limit", "client_rps and client_burst must be at least 1 when per_client"));
    }
    match rl.backend {
        RateLimitBackend::Local => {
            if rl.service.is_some() {
                return Err(ConfigError::new(
                    "rate_limit.service",
                    "is only used with backend: global; add `backend: global` or remove it",
                ));
            }
            if rl.failure_mode.is_some() {
                return Err(ConfigError::new(
                    "rate_limit.failure_mode",
                    "is only used with backend: global; add `backend: global` or remove it",
                ));
            }
        }
        RateLimitBackend::Global => {
            let Some(service) = rl.service.as_deref() else {
                return Err(ConfigError::new(
                    "rate_limit.service",
                    "is required with backend: global; name the rate-limit service as HOST:PORT, e.g. 127.0.0.1:8081",
                ));
            };
            match split_host_port(service) {
                Ok((host, Some(_))) if !host.is_empty() => {}
                Ok(_) => {
                    return Err(ConfigError::new(
                        "rate_limit.service",
                        format!("{service:?} needs a host and a port, e.g. ratelimit:8081"),
                    ))
                }
                Err(m) => return Err(ConfigError::new("rate_limit.service", format!("{service:?} {m}"))),
            }
        }
    }
    Ok(())
}

pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']').ok_or("has an unclosed '[' in the IPv6 address")?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("has unexpected text {after:?} after the IPv6 address")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("has an invalid port {p:?}; use a number from 1 to 65535"))?,
        ),
        None => None,
    };
    Ok((host.to_string(), port))
}

/// Server names become URL path segments and Envoy stat/cluster names.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Config {
    /// Parses and validates a config file's text (YAML; JSON is YAML too).
    pub fn from_yaml(text: &str, mode: Mode) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                "",
                "the config is empty; at least `servers:` is needed (see examples/demo.yaml)",
            ));
        }
        let config: Config = serde_yaml::from_str(text).map_err(|e| ConfigError::new("", describe_yaml_error(&e)))?;
        config.validate(mode)?;
        Ok(config)
    }

    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The listen address as (host, port); `:8080` means all interfaces.
    pub fn listen_addr(&self) -> Result<(String, u16), ConfigError> {
        let (host, port) = split_host_port(&self.listen).map_err(|m| ConfigError::new("listen", m))?;
        let port =
            port.ok_or_else(|| ConfigError::new("listen", "needs a port, e.g. \":8080\" or \"127.0.0.1:8080\""))?;
        let host = if host.is_empty() { "0.0.0.0".to_string() } else { host };
        Ok((host, port))
    }

    /// Every rule that can be checked without touching the network.
    pub fn validate(&self, mode: Mode) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.servers.is_empty() {
            return Err(ConfigError::new("servers", "no servers are configured; add at least one `- name: …` entry"));
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.servers.iter().enumerate() {
            let key = format!("servers[{i}]");
            validate_server(s, &key, mode)?;
            if !names.insert(s.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    format!("server name {:?} is used twice; every server needs its own name", s.name),
                ));
            }
        }
        validate_auth(&self.auth, &names)?;
        if mode == Mode::Plugin {
            // The filter cannot read the environment: `mcpx run/render` expand
            // these; a plugin configuration written by hand must not hold them.
            let tokens = self.auth.token.iter().map(|t| ("auth.token".to_string(), t)).chain(
                self.auth.clients.iter().enumerate().map(|(i, c)| (format!("auth.clients[{i}].token"), &c.token)),
            );
            for (key, value) in tokens {
                if value.contains("${") {
                    return Err(ConfigError::new(key, UNEXPANDED_SECRET));
                }
            }
        }
        for (client, c) in &self.clients {
            for (server, policy) in &c.servers {
                let key = format!("clients.{client}.servers.{server}");
                if !names.contains(server.as_str()) {
                    return Err(ConfigError::new(
                        key,
                        format!("names a server that is not in `servers:`; known servers: {}", join(&names)),
                    ));
                }
                validate_policy(policy, &key)?;
            }
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_body_bytes > 64 * 1024 * 1024 {
            return Err(ConfigError::new("limits.max_body_bytes", "must be between 1 and 67108864 (64 MiB)"));
        }
        validate_limits(&self.limits)?;
        if ![DENIAL_STATUS_DEFAULT, DENIAL_STATUS_FORBIDDEN].contains(&self.denial_http_status) {
            return Err(ConfigError::new(
                "denial_http_status",
                format!(
                    "is {} but must be 200 (the default: every official MCP client reads the JSON-RPC -32003 error and \
                     keeps its session) or 403 (the status policy denials had before; the TypeScript SDK and the \
                     Inspector then see an HTTP error, not the JSON-RPC one); remove the key or set one of them",
                    self.denial_http_status
                ),
            ));
        }
        let rl = &self.rate_limit;
        if rl.enabled && (rl.rps == 0 || rl.burst == 0 || (rl.per_tool && (rl.tool_rps == 0 || rl.tool_burst == 0))) {
            return Err(ConfigError::new(
                "rate_limit",
                "rps, burst, tool_rps and tool_burst must be at least 1 when enabled",
            ));
        }
        validate_rate_limit_backend(rl)?;
        let cb = &self.circuit_breaker;
        if cb.enabled && (cb.failure_threshold == 0 || cb.half_open_max == 0 || cb.cooldown.as_millis() == 0) {
            return Err(ConfigError::new(
                "circuit_breaker",
                "failure_threshold, half_open_max and cooldown must be above zero when enabled",
            ));
        }
        if let Some(cors) = &self.cors {
            for (i, o) in cors.allowed_origins.iter().enumerate() {
                if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                    return Err(ConfigError::new(
                        format!("cors.allowed_origins[{i}]"),
                        format!(
                            "{o:?} is not an origin; write it as scheme://host[:port], e.g. https://app.example.com"
                        ),
                    ));
                }
            }
        }
        let t = &self.tracing;
        if !(0.0..=1.0).contains(&t.sample_ratio) {
            return Err(ConfigError::new("tracing.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if t.enabled {
            match &t.endpoint {
                Some(e) => {
                    BackendUrl::parse(e).map_err(|m| ConfigError::new("tracing.endpoint", format!("{e:?} {m}")))?;
                }
                None => {
                    return Err(ConfigError::new(
                        "tracing.endpoint",
                        "is required when tracing is enabled, e.g. http://otel-collector:4318",
                    ))
                }
            }
        }
        if self.audit.output.trim().is_empty() {
            return Err(ConfigError::new("audit.output", "must be stdout, stderr or a file path"));
        }
        self.validate_lock(mode)
    }

    /// `inspection.lock` / `inspection.pins`: who reads the file, that the
    /// pins are hashes, and that every locked server is configured (a lock
    /// for a misspelt or removed server would silently leave the real one
    /// on trust-on-first-use, so that is an error, not a warning).
    pub fn validate_lock(&self, mode: Mode) -> Result<(), ConfigError> {
        let i = &self.inspection;
        if i.lock.is_some() && mode == Mode::Plugin {
            return Err(ConfigError::new(
                "inspection.lock",
                "the filter cannot read files; `mcpx run` and `mcpx render` embed the lock as inspection.pins \
                 (write that, or render the plugin configuration with mcpx)",
            ));
        }
        if i.lock.is_some() && i.pins.is_some() {
            return Err(ConfigError::new("inspection", "set either lock (a file) or pins (embedded), not both"));
        }
        if (i.lock.is_some() || i.pins.is_some()) && i.tool_integrity == IntegrityMode::Off {
            return Err(ConfigError::new(
                "inspection.tool_integrity",
                "is off, so the lock would not be enforced; set it to warn or enforce, or remove the lock",
            ));
        }
        let Some(pins) = &i.pins else { return Ok(()) };
        for (server, tools) in pins {
            if self.server(server).is_none() {
                return Err(ConfigError::new(
                    format!("inspection.pins.{server}"),
                    "the lock pins a server that is not in `servers:`; re-run `mcpx pin` or remove its entries",
                ));
            }
            for (tool, hash) in tools {
                if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(ConfigError::new(
                        format!("inspection.pins.{server}.{tool}"),
                        "is not a SHA-256 in lowercase hex (64 characters); re-run `mcpx pin`",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The request timeouts and the connection cap are always on: zero would
/// let a client hold a connection (and a slot) for as long as it likes.
fn validate_limits(l: &LimitsConfig) -> Result<(), ConfigError> {
    if l.request_headers_timeout.as_millis() == 0 {
        return Err(ConfigError::new(
            "limits.request_headers_timeout",
            "must be above zero (e.g. 10s): it bounds how long a client may take to send its headers",
        ));
    }
    if l.request_timeout.as_millis() == 0 {
        return Err(ConfigError::new(
            "limits.request_timeout",
            "must be above zero (e.g. 30s): it bounds how long a client may take to send its whole request",
        ));
    }
    if l.request_headers_timeout > l.request_timeout {
        return Err(ConfigError::new(
            "limits.request_headers_timeout",
            format!(
                "is {} but limits.request_timeout is {}; the headers are part of the request, so lower it or raise request_timeout",
                l.request_headers_timeout, l.request_timeout
            ),
        ));
    }
    if l.max_connections == 0 {
        return Err(ConfigError::new(
            "limits.max_connections",
            "must be at least 1 (e.g. 10000); keep it below the open-files limit (ulimit -n)",
        ));
    }
    Ok(())
}

fn join(names: &BTreeSet<&str>) -> String {
    names.iter().copied().collect::<Vec<_>>().join(", ")
}

/// `endpoints`: each a backend URL, all with the first one's scheme and
/// path (they are replicas of one server), none twice.
fn validate_endpoints(endpoints: &[String], key: &str) -> Result<(), ConfigError> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(ConfigError::new(
            format!("{key}.endpoints"),
            format!(
                "lists {} URLs; at most {MAX_ENDPOINTS} are allowed (use a DNS name in `url` for more)",
                endpoints.len()
            ),
        ));
    }
    let mut first: Option<BackendUrl> = None;
    for (i, url) in endpoints.iter().enumerate() {
        let k = format!("{key}.endpoints[{i}]");
        let u = BackendUrl::parse(url).map_err(|m| ConfigError::new(&k, format!("{url:?} {m}")))?;
        if endpoints.iter().take(i).any(|e| e == url) {
            return Err(ConfigError::new(&k, format!("{url:?} is listed twice; list each replica once")));
        }
        match &first {
            None => first = Some(u),
            Some(f) if f.tls != u.tls || f.path != u.path => {
                return Err(ConfigError::new(
                    &k,
                    format!(
                        "{url:?} must have the same scheme and path as endpoints[0] ({}://…{}): endpoints are replicas of one server",
                        if f.tls { "https" } else { "http" },
                        f.path
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_server(s: &ServerConfig, key: &str, mode: Mode) -> Result<(), ConfigError> {
    if !is_valid_name(&s.name) {
        return Err(ConfigError::new(
            format!("{key}.name"),
            format!("{:?} is not a valid server name; use 1-64 lowercase letters, digits, '-' or '_' (it becomes the path /mcp/NAME)", s.name),
        ));
    }
    let key = format!("servers.{}", s.name);
    match s.transport {
        Transport::Http => {
            if s.command.is_some() || !s.args.is_empty() || !s.env.is_empty() || s.workdir.is_some() || s.user.is_some()
            {
                return Err(ConfigError::new(
                    &key,
                    "command/args/env/workdir/user are for `transport: stdio`; add `transport: stdio` or remove them",
                ));
            }
            if s.url.is_some() && !s.endpoints.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.endpoints"),
                    "cannot be combined with url; list every replica under endpoints and remove url",
                ));
            }
            validate_endpoints(&s.endpoints, &key)?;
            match &s.url {
                Some(url) => {
                    BackendUrl::parse(url)
                        .map_err(|m| ConfigError::new(format!("{key}.url"), format!("{url:?} {m}")))?;
                }
                None if !s.endpoints.is_empty() => {}
                None if mode == Mode::Gateway => {
                    return Err(ConfigError::new(format!("{key}.url"), "is required for an HTTP server, e.g. url: http://localhost:3001/mcp (or set `transport: stdio` and `command:`)"));
                }
                None => {}
            }
        }
        Transport::Stdio => {
            if !s.endpoints.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.endpoints"),
                    "is for HTTP servers; a stdio server is started from `command:` instead",
                ));
            }
            if s.url.is_some() {
                return Err(ConfigError::new(
                    format!("{key}.url"),
                    "is for HTTP servers; a stdio server is started from `command:` instead",
                ));
            }
            match &s.command {
                Some(c) if !c.trim().is_empty() => {}
                _ if mode == Mode::Gateway => {
                    return Err(ConfigError::new(
                        format!("{key}.command"),
                        "is required for `transport: stdio`, e.g. command: npx",
                    ));
                }
                _ => {}
            }
            for k in s.env.keys() {
                if k.is_empty() || k.contains('=') {
                    return Err(ConfigError::new(
                        format!("{key}.env"),
                        format!("{k:?} is not a valid environment variable name"),
                    ));
                }
            }
        }
    }
    if let Some(t) = s.request_timeout {
        if t.as_millis() == 0 {
            return Err(ConfigError::new(format!("{key}.request_timeout"), "must be above zero, e.g. 30s"));
        }
    }
    if let Some(n) = s.max_in_flight {
        if n == 0 || n > MAX_MAX_IN_FLIGHT {
            return Err(ConfigError::new(
                format!("{key}.max_in_flight"),
                format!("must be between 1 and {MAX_MAX_IN_FLIGHT} (requests in flight at once), e.g. 64"),
            ));
        }
    }
    validate_policy(&s.policy, &format!("{key}.policy"))
}

fn validate_policy(p: &PolicyConfig, key: &str) -> Result<(), ConfigError> {
    for (list, name) in [(&p.allow_resources, "allow_resources"), (&p.deny_resources, "deny_resources")] {
        for (i, prefix) in list.iter().enumerate() {
            crate::request::resource_uri::normalise(prefix).map_err(|why| {
                ConfigError::new(
                    format!("{key}.{name}[{i}]"),
                    format!("{prefix:?} cannot be a resource prefix because {why}; write it without dot segments or encoded separators"),
                )
            })?;
        }
    }
    for (tool, rule) in &p.tool_rules {
        for (arg, r) in &rule.args {
            let k = format!("{key}.tool_rules.{tool}.args.{arg}");
            if r == &ArgRule::default() {
                return Err(ConfigError::new(
                    k,
                    "has no condition; use equals, one_of, prefix, suffix, regex or required",
                ));
            }
            if let Some(re) = &r.regex {
                regex_lite::Regex::new(re).map_err(|e| {
                    ConfigError::new(format!("{k}.regex"), format!("invalid regular expression {re:?}: {e}"))
                })?;
            }
            if matches!(&r.one_of, Some(v) if v.is_empty()) {
                return Err(ConfigError::new(
                    format!("{k}.one_of"),
                    "is empty, so nothing could match; list the allowed values",
                ));
            }
        }
    }
    Ok(())
}

fn validate_auth(a: &AuthConfig, servers: &BTreeSet<&str>) -> Result<(), ConfigError> {
    if !a.enabled {
        return Ok(());
    }
    let mut seen = BTreeSet::new();
    for (i, c) in a.clients.iter().enumerate() {
        if c.name.trim().is_empty() {
            return Err(ConfigError::new(
                format!("auth.clients[{i}].name"),
                "must not be empty; it is the client's identity",
            ));
        }
        if c.token.is_empty() {
            return Err(ConfigError::new(format!("auth.clients[{i}].token"), "must not be empty"));
        }
        if !seen.insert(c.name.as_str()) {
            return Err(ConfigError::new(format!("auth.clients[{i}].name"), format!("{:?} is listed twice", c.name)));
        }
    }
    match a.kind {
        AuthType::Bearer | AuthType::ApiKey => {
            if a.token.as_deref().is_none_or(str::is_empty) && a.clients.is_empty() {
                return Err(ConfigError::new("auth", "needs `token:` or `clients:` when enabled with type bearer/api_key (tip: token: \"${MCPX_TOKEN}\")"));
            }
            if let Some(h) = &a.header {
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(ConfigError::new("auth.header", format!("{h:?} is not a valid HTTP header name")));
                }
            }
        }
        AuthType::Oauth if a.oauth.is_none() => {
            return Err(ConfigError::new("auth.oauth", "is required with `type: oauth` (resource, jwks_uri, ...)"));
        }
        AuthType::Oauth => {}
    }
    // An `oauth:` block is checked whenever present, so a later switch to
    // `type: oauth` cannot surface old mistakes.
    if let Some(o) = &a.oauth {
        for (k, v) in [("resource", &o.resource), ("jwks_uri", &o.jwks_uri)] {
            if !(v.starts_with("https://") || v.starts_with("http://")) {
                return Err(ConfigError::new(format!("auth.oauth.{k}"), format!("{v:?} must be an http(s) URL")));
            }
        }
        BackendUrl::parse(&o.jwks_uri).map_err(|m| ConfigError::new("auth.oauth.jwks_uri", m))?;
        if o.authorization_servers.is_empty() && o.issuer.is_none() {
            return Err(ConfigError::new(
                "auth.oauth.authorization_servers",
                "list at least one authorization server (or set `issuer:`): clients discover it from the RFC 9728 metadata",
            ));
        }
        if o.identity_claim.is_empty() {
            return Err(ConfigError::new("auth.oauth.identity_claim", "must name a claim, e.g. sub"));
        }
        for scope_key in o.scopes.keys() {
            let server = scope_key.split('/').next().unwrap_or_default();
            if !servers.contains(server) {
                return Err(ConfigError::new(
                    format!("auth.oauth.scopes.{scope_key}"),
                    format!(
                        "names a server that is not in `servers:`; write SERVER or SERVER/TOOL (known: {})",
                        join(servers)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Turns serde_yaml's message into one that says where and what to do.
fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    if msg.contains("unknown field") {
        format!("{msg}. Remove the key or fix its spelling (see docs/configuration.md)")
    } else {
        msg
    }
}

/// Expands `${VAR}` references with `lookup`; an unset variable is an error
/// naming it (a missing secret must never silently become "").
pub fn expand_env(s: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| format!("unclosed ${{ in {s:?}"))?;
        let var = &after[..end];
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("${{{var}}} is not a valid environment variable reference"));
        }
        let value = lookup(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(y, Mode::Gateway)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse("servers:\n  - name: demo\n    url: http://127.0.0.1:3001\n").unwrap();
        assert_eq!(c.listen_addr().unwrap(), ("0.0.0.0".to_string(), 8080));
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(c.limits.request_timeout, Duration::from_millis(30_000));
        assert!(c.inspection.filter_tools_list);
        assert_eq!(BackendUrl::parse(c.servers[0].url.as_deref().unwrap()).unwrap().path, "/mcp");
    }

    #[test]
    fn spec_example_is_accepted() {
        let text = include_str!("../tests/data/spec-example.yaml");
        let c = Config::from_yaml(text, Mode::Gateway).unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[1].request_timeout, Some(Duration::from_millis(30_000)));
        assert_eq!(c.circuit_breaker.cooldown.as_millis(), 30_000);
    }

    #[test]
    fn global_rate_limit_keys_are_checked() {
        let base = "servers: [{ name: demo, url: 'http://h:1' }]\nrate_limit: ";
        let ok = parse(&format!("{base}{{ enabled: true, backend: global, service: 'rl:8081' }}")).unwrap();
        assert_eq!(ok.rate_limit.backend, RateLimitBackend::Global);
        assert_eq!(ok.rate_limit.failure_mode.unwrap_or_default(), FailureMode::Deny);
        let allow =
            parse(&format!("{base}{{ enabled: true, backend: global, service: 'rl:8081', failure_mode: allow }}"));
        assert_eq!(allow.unwrap().rate_limit.failure_mode, Some(FailureMode::Allow));
        let cases = [
            ("{ enabled: true, backend: global }", "rate_limit.service", "is required"),
            ("{ enabled: true, backend: global, service: 'rl' }", "rate_limit.service", "needs a host and a port"),
            ("{ enabled: true, backend: global, service: 'rl:0' }", "rate_limit.service", "invalid port"),
            ("{ enabled: true, service: 'rl:8081' }", "rate_limit.service", "backend: global"),
            ("{ enabled: true, failure_mode: allow }", "rate_limit.failure_mode", "backend: global"),
            ("{ enabled: true, per_client: true, client_rps: 0 }", "rate_limit", "client_rps"),
        ];
        for (rl, key, text) in cases {
            let e = parse(&format!("{base}{rl}")).unwrap_err();
            assert_eq!(e.key, key, "{rl}: {e}");
            assert!(e.message.contains(text), "{rl}: {e}");
        }
        let e = parse(&format!("{base}{{ enabled: true, backend: global, service: 'rl:1', failure_mode: open }}"))
            .unwrap_err();
        assert!(e.message.contains("unknown variant `open`"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e = parse("servers:\n  - name: demo\n    url: http://h:1\n    polcy: {}\n").unwrap_err();
        assert!(e.message.contains("unknown field `polcy`"), "{e}");
        assert!(e.message.contains("line 4"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let cases = [
            ("servers:\n  - name: Demo\n    url: http://h:1\n", "servers[0].name"),
            ("servers:\n  - name: a\n    url: http://h:1\n  - name: a\n    url: http://h:2\n", "servers[1].name"),
            ("servers:\n  - name: a\n", "servers.a.url"),
            ("servers:\n  - name: a\n    url: ftp://h\n", "servers.a.url"),
            ("servers:\n  - name: a\n    transport: stdio\n", "servers.a.command"),
            ("servers:\n  - name: a\n    url: http://h:1\n    policy:\n      tool_rules:\n        t:\n          args:\n            p: { regex: \"(\" }\n", "servers.a.policy.tool_rules.t.args.p.regex"),
            ("servers:\n  - name: a\n    url: http://h:1\nclients:\n  bot:\n    servers:\n      b: {}\n", "clients.bot.servers.b"),
            ("servers:\n  - name: a\n    url: http://h:1\nauth:\n  enabled: true\n", "auth"),
            ("servers:\n  - name: a\n    url: http://h:1\nauth:\n  enabled: true\n  type: oauth\n", "auth.oauth"),
            ("servers:\n  - name: a\n    url: http://h:1\nauth:\n  enabled: true\n  type: oauth\n  oauth: { resource: \"https://g/mcp\", jwks_uri: \"https://a/jwks\" }\n", "auth.oauth.authorization_servers"),
            ("listen: \"8080\"\nservers:\n  - name: a\n    url: http://h:1\n", "listen"),
            ("servers:\n  - name: a\n    url: http://h:1\n    policy: {deny_resources: [\"file:///x/../y\"]}\n", "servers.a.policy.deny_resources[0]"),
            ("servers:\n  - name: a\n    url: http://h:1\nlimits: { request_timeout: 0s }\n", "limits.request_timeout"),
            ("servers:\n  - name: a\n    url: http://h:1\nlimits: { request_headers_timeout: 0s }\n", "limits.request_headers_timeout"),
            ("servers:\n  - name: a\n    url: http://h:1\nlimits: { request_headers_timeout: 1m, request_timeout: 30s }\n", "limits.request_headers_timeout"),
            ("servers:\n  - name: a\n    url: http://h:1\nlimits: { max_connections: 0 }\n", "limits.max_connections"),
            ("servers:\n  - name: a\n    url: http://h:1\n    max_in_flight: 0\n", "servers.a.max_in_flight"),
            ("servers:\n  - name: a\n    url: http://h:1\n    max_in_flight: 1000001\n", "servers.a.max_in_flight"),
            ("servers:\n  - name: a\n    url: http://h:1\ndenial_http_status: 400\n", "denial_http_status"),
            ("servers:\n  - name: a\n    url: http://h:1\n    endpoints: [\"http://h:2\"]\n", "servers.a.endpoints"),
            ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"ftp://h:2\"]\n", "servers.a.endpoints[1]"),
            ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"https://h:2/mcp\"]\n", "servers.a.endpoints[1]"),
            ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"http://h:2/other\"]\n", "servers.a.endpoints[1]"),
            ("servers:\n  - name: a\n    endpoints: [\"http://h:1/mcp\", \"http://h:1/mcp\"]\n", "servers.a.endpoints[1]"),
            ("servers:\n  - name: a\n    transport: stdio\n    command: x\n    endpoints: [\"http://h:1\"]\n", "servers.a.endpoints"),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.key, key, "for {text:?}: {e}");
        }
    }

    #[test]
    fn denial_status_defaults_to_200_and_keeps_403_as_a_choice() {
        let base = "servers:\n  - name: a\n    url: http://h:1\n";
        assert_eq!(parse(base).unwrap().denial_http_status, 200);
        assert_eq!(parse(&format!("{base}denial_http_status: 403\n")).unwrap().denial_http_status, 403);
        let e = parse(&format!("{base}denial_http_status: 418\n")).unwrap_err();
        assert!(e.message.contains("must be 200") && e.message.contains("or 403"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(Duration::parse("2m"), Some(Duration::from_millis(120_000)));
        assert_eq!(Duration::parse("30"), None);
        assert_eq!(Duration::parse("1.5s"), None);
        assert_eq!(Duration::from_millis(30_000).to_string(), "30s");
        let e = parse("servers:\n  - name: a\n    transport: stdio\n    command: x\n    request_timeout: 30sec\n")
            .unwrap_err();
        assert!(e.message.contains("invalid duration"), "{e}");
    }

    #[test]
    fn plugin_mode_needs_no_url() {
        assert!(Config::from_yaml("servers:\n  - name: a\n", Mode::Plugin).is_ok());
        assert!(Config::from_yaml("{\"servers\":[{\"name\":\"a\"}]}", Mode::Plugin).is_ok());
    }

    #[test]
    fn round_trips_through_json() {
        let text = include_str!("../tests/data/spec-example.yaml");
        let c = Config::from_yaml(text, Mode::Gateway).unwrap();
        let json = serde_json::to_string(&c).unwrap();
        let back = Config::from_yaml(&json, Mode::Gateway).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn env_expansion() {
        let look = |k: &str| (k == "T").then(|| "s3cret".to_string());
        assert_eq!(expand_env("Bearer ${T}!", look).unwrap(), "Bearer s3cret!");
        assert_eq!(expand_env("plain", look).unwrap(), "plain");
        assert!(expand_env("${NOPE}", look).unwrap_err().contains("NOPE"));
        assert!(expand_env("${T", look).is_err());
    }

    #[test]
    fn url_parsing() {
        let u = BackendUrl::parse("https://[::1]:9443/api/mcp").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port, u.path.as_str()), (true, "::1", 9443, "/api/mcp"));
        assert!(BackendUrl::parse("http://u:p@h/").is_err());
        assert!(BackendUrl::parse("http://h:0").is_err());
        assert!(BackendUrl::parse("http://h/x?y").is_err());
    }
}
