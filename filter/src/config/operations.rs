//! The schema of `mcpx.yaml`, part two: how the gateway operates: audit,
//! rate limits, list inspection and integrity, the circuit breaker, CORS,
//! tracing, limits and the [`Duration`] values they use.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

use super::DEFAULT_MAX_BODY_BYTES;

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
