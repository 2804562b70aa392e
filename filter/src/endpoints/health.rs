//! `GET /health` (docs/reload-and-health.md), host-independent: which backends to probe and
//! how, how one probe's answer is judged, and how the results add up.
//!
//! The glue (`glue/health.rs`) sends one MCP `ping` per server through that
//! server's Envoy cluster, all at once, and feeds the answers back here.

use crate::config::{BackendUrl, Config, ServerConfig, Transport};
use crate::envelope::Reply;
use serde_json::{json, Map, Value};

/// How long one probe may take. Envoy answers a timeout with a synthetic 504
/// and a refused connection with a synthetic 503; the call's callback gets a
/// response either way, never a failure of its own.
pub const PROBE_TIMEOUT_MS: u64 = 2_000;

/// The probe's JSON-RPC request; the id marks it as the gateway's own.
pub const PING_BODY: &str = r#"{"jsonrpc":"2.0","id":"mcpx-health","method":"ping"}"#;

/// How long a worker reuses its last probe results. Every `/health` would
/// otherwise send one request to every backend: an amplifier for anyone who
/// can reach the gateway (unauthenticated callers included, for the summary).
pub const CACHE_MS: u64 = 1_000;

/// The longest piece of a backend's error text repeated in a report.
const MAX_ERROR_TEXT: usize = 160;

/// The Envoy cluster of a server: `mcpx run` renders one per server with
/// this name, and the filter can only call predefined clusters.
pub use crate::names::cluster_name;

/// Where to send one server's probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub cluster: String,
    /// The backend's own MCP path (the same rewrite the server's route does).
    pub path: String,
    /// The Host the backend expects.
    pub authority: String,
}

impl Target {
    /// The request headers of the probe (`:method`, `:path`, `:authority` are
    /// required by Envoy for a dispatched call).
    pub fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            (":method", "POST"),
            (":path", &self.path),
            (":authority", &self.authority),
            ("content-type", "application/json"),
            // Streamable HTTP servers may refuse a POST that does not accept both.
            ("accept", "application/json, text/event-stream"),
        ]
    }
}

/// The probe target of a server, or why it cannot be probed.
pub fn target(server: &ServerConfig) -> Result<Target, String> {
    let cluster = cluster_name(&server.name);
    match server.transport {
        // The bridge serves each stdio server at /mcp/{name}.
        Transport::Stdio => {
            Ok(Target { cluster, path: format!("/mcp/{}", server.name), authority: "127.0.0.1".to_string() })
        }
        Transport::Http => {
            let url = server.primary_url().ok_or("no url is configured, so the gateway cannot probe it")?;
            let u = BackendUrl::parse(url).map_err(|e| format!("url {e}"))?;
            let default_port = if u.tls { 443 } else { 80 };
            let host = if u.host.contains(':') { format!("[{}]", u.host) } else { u.host.clone() };
            let authority = if u.port == default_port { host } else { format!("{host}:{}", u.port) };
            Ok(Target { cluster, path: u.path, authority })
        }
    }
}

/// One server's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealth {
    pub healthy: bool,
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

impl ServerHealth {
    pub fn down(error: impl Into<String>, latency_ms: Option<u64>) -> Self {
        Self { healthy: false, latency_ms, error: Some(error.into()) }
    }

    /// Judges the answer to a probe: the server is up when it answered (below
    /// 500) with a JSON-RPC response, as JSON or as an SSE event. A JSON-RPC
    /// error still counts: the server is there and speaks MCP (e.g. a server
    /// that wants a session before `ping`).
    pub fn from_answer(status: Option<u16>, content_type: Option<&str>, body: &[u8], latency_ms: u64) -> Self {
        let Some(status) = status else {
            return Self::down("no answer (the call returned no :status)", Some(latency_ms));
        };
        let text = String::from_utf8_lossy(body);
        if status >= 500 {
            let detail = match status {
                504 => format!("no answer within {PROBE_TIMEOUT_MS} ms"),
                _ => short(text.trim()),
            };
            return Self::down(format!("HTTP {status}: {detail}"), Some(latency_ms));
        }
        let sse = content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let answered = if sse { sse_events(&text).any(is_response) } else { is_response(&text) };
        if answered {
            Self { healthy: true, latency_ms: Some(latency_ms), error: None }
        } else {
            Self::down(format!("HTTP {status}, but the answer to ping is not a JSON-RPC response"), Some(latency_ms))
        }
    }
}

/// Why a probe could not even be sent. Envoy refuses the call with
/// InternalFailure when the request fails at once, which for a defined
/// cluster means no host can take it (circuit breaker open: every host
/// ejected by outlier detection, or a threshold reached); with BadArgument
/// when the cluster does not exist.
pub fn dispatch_failure(cluster: &str, failed_at_once: bool, status: &str) -> String {
    if failed_at_once {
        format!("no healthy upstream: circuit open (Envoy cluster {cluster} has no host that can take the probe)")
    } else {
        format!("cannot call Envoy cluster {cluster} ({status}); is it defined?")
    }
}

fn short(s: &str) -> String {
    if s.is_empty() {
        return "(empty body)".to_string();
    }
    match s.char_indices().nth(MAX_ERROR_TEXT) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The `data:` payloads of an SSE body.
fn sse_events(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim)
}

fn is_response(text: &str) -> bool {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Object(o)) => o.contains_key("result") || o.contains_key("error"),
        _ => false,
    }
}

/// The gateway's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overall {
    Healthy,
    /// Some backends are down.
    Degraded,
    /// All backends are down: HTTP 503, so load balancers take it out.
    Unhealthy,
}

impl Overall {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a ServerHealth>) -> Self {
        let (mut up, mut down) = (0usize, 0usize);
        for r in results {
            if r.healthy {
                up += 1
            } else {
                down += 1
            }
        }
        match (up, down) {
            (_, 0) => Overall::Healthy,
            (0, _) => Overall::Unhealthy,
            _ => Overall::Degraded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Healthy => "healthy",
            Overall::Degraded => "degraded",
            Overall::Unhealthy => "unhealthy",
        }
    }

    pub fn http_status(self) -> u16 {
        match self {
            Overall::Unhealthy => 503,
            _ => 200,
        }
    }
}

/// What a `/health` caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Per-server results (no auth, or an authenticated caller).
    Full,
    /// Only the overall status: anonymous callers when auth is on.
    Summary,
}

/// The `/health` answer for results in config order (`(server, result)`).
pub fn report(results: &[(String, ServerHealth)], detail: Detail) -> Reply {
    let overall = Overall::of(results.iter().map(|(_, r)| r));
    let mut body = json!({ "status": overall.as_str() });
    if detail == Detail::Full {
        let mut servers = Map::new();
        for (name, r) in results {
            servers.insert(name.clone(), json!({ "healthy": r.healthy, "latency_ms": r.latency_ms, "error": r.error }));
        }
        if let Some(b) = body.as_object_mut() {
            b.insert("servers".into(), Value::Object(servers));
        }
    }
    Reply::json(overall.http_status(), &body).with_header("cache-control", "no-store")
}

/// The last results of one worker, reused for [`CACHE_MS`].
#[derive(Debug, Default)]
pub struct Cache {
    last: Option<(u64, Vec<(String, ServerHealth)>)>,
}

impl Cache {
    /// Fresh results for exactly these servers (a reload that changes the
    /// server list makes them stale at once).
    pub fn get(&self, now_ms: u64, servers: &[String]) -> Option<&[(String, ServerHealth)]> {
        let (at, results) = self.last.as_ref()?;
        let fresh = now_ms >= *at && now_ms - at < CACHE_MS;
        let same = results.len() == servers.len() && results.iter().zip(servers).all(|((a, _), b)| a == b);
        (fresh && same).then_some(results.as_slice())
    }

    pub fn put(&mut self, now_ms: u64, results: Vec<(String, ServerHealth)>) {
        self.last = Some((now_ms, results));
    }
}

/// The servers to probe, in config order.
pub fn plan(config: &Config) -> Vec<(String, Result<Target, String>)> {
    config.servers.iter().map(|s| (s.name.clone(), target(s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    fn up() -> ServerHealth {
        ServerHealth { healthy: true, latency_ms: Some(1), error: None }
    }

    #[test]
    fn overall_status() {
        let down = ServerHealth::down("x", None);
        assert_eq!(Overall::of(&[up(), up()]), Overall::Healthy);
        assert_eq!(Overall::of(&[up(), down.clone()]), Overall::Degraded);
        assert_eq!(Overall::of(&[down.clone(), down.clone()]), Overall::Unhealthy);
        assert_eq!(Overall::Unhealthy.http_status(), 503);
        assert_eq!(Overall::Degraded.http_status(), 200);
    }

    #[test]
    fn judging_answers() {
        let ok = ServerHealth::from_answer(
            Some(200),
            Some("application/json"),
            br#"{"jsonrpc":"2.0","id":"mcpx-health","result":{}}"#,
            3,
        );
        assert_eq!(ok, ServerHealth { healthy: true, latency_ms: Some(3), error: None });
        let sse = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"mcpx-health\",\"result\":{}}\n\n";
        assert!(ServerHealth::from_answer(Some(200), Some("text/event-stream"), sse, 1).healthy);
        // A JSON-RPC error (e.g. "session required") still means the server is up.
        let err = br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Missing session ID"}}"#;
        assert!(ServerHealth::from_answer(Some(400), Some("application/json"), err, 1).healthy);
        // Envoy's synthetic answers for a dead or slow backend.
        let dead = ServerHealth::from_answer(
            Some(503),
            Some("text/plain"),
            b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
            1,
        );
        assert!(!dead.healthy);
        assert!(dead.error.as_deref().unwrap().starts_with("HTTP 503: upstream connect error"));
        let slow = ServerHealth::from_answer(Some(504), None, b"upstream request timeout", 2000);
        assert_eq!(slow.error.as_deref(), Some("HTTP 504: no answer within 2000 ms"));
        // Something that is not an MCP server.
        assert!(!ServerHealth::from_answer(Some(200), Some("text/html"), b"<html>", 1).healthy);
        assert!(!ServerHealth::from_answer(Some(401), None, b"", 1).healthy);
        assert!(!ServerHealth::from_answer(None, None, b"", 1).healthy);
        let long = "x".repeat(1000);
        let e = ServerHealth::from_answer(Some(500), None, long.as_bytes(), 1).error.unwrap();
        assert!(e.chars().count() < 200, "error text is cut: {e}");
    }

    #[test]
    fn report_shapes() {
        let results = vec![("a".to_string(), up()), ("b".to_string(), ServerHealth::down("HTTP 503: dead", Some(2)))];
        let r = report(&results, Detail::Full);
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "degraded");
        assert_eq!(v["servers"]["a"], json!({"healthy": true, "latency_ms": 1, "error": null}));
        assert_eq!(v["servers"]["b"]["error"], "HTTP 503: dead");
        let r = report(&results, Detail::Summary);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v, json!({"status": "degraded"}));
        let all_down = vec![("a".to_string(), ServerHealth::down("x", None))];
        assert_eq!(report(&all_down, Detail::Summary).status, 503);
    }

    #[test]
    fn cache_is_short_lived_and_per_server_list() {
        let mut c = Cache::default();
        let names = vec!["a".to_string()];
        assert!(c.get(0, &names).is_none());
        c.put(1_000, vec![("a".to_string(), up())]);
        assert!(c.get(1_500, &names).is_some());
        assert!(c.get(2_000, &names).is_none(), "stale after CACHE_MS");
        assert!(c.get(500, &names).is_none(), "a clock that went back");
        assert!(c.get(1_500, &["a".to_string(), "b".to_string()]).is_none());
    }

    #[test]
    fn targets_follow_the_backend_url() {
        let c = Config::from_yaml(
            "servers:\n  - name: a\n    url: http://127.0.0.1:3001\n  - name: b\n    url: https://api.example.com/v1/mcp\n  - name: c\n    transport: stdio\n    command: npx\n",
            Mode::Gateway,
        )
        .unwrap();
        let p = plan(&c);
        let t = |i: usize| p[i].1.clone().unwrap();
        assert_eq!(
            t(0),
            Target { cluster: "mcpx_server_a".into(), path: "/mcp".into(), authority: "127.0.0.1:3001".into() }
        );
        assert_eq!((t(1).path.as_str(), t(1).authority.as_str()), ("/v1/mcp", "api.example.com"));
        assert_eq!((t(2).path.as_str(), t(2).authority.as_str()), ("/mcp/c", "127.0.0.1"));
        let plugin = Config::from_yaml("servers:\n  - name: a\n", Mode::Plugin).unwrap();
        assert!(plan(&plugin)[0].1.is_err());
    }

    #[test]
    fn refused_probe_says_why() {
        let open = dispatch_failure("mcpx_server_demo", true, "InternalFailure (10)");
        assert!(open.starts_with("no healthy upstream"), "{open}");
        assert!(!open.contains("is it defined"), "{open}");
        let missing = dispatch_failure("mcpx_server_demo", false, "BadArgument (2)");
        assert!(missing.contains("is it defined?"), "{missing}");
    }
}
