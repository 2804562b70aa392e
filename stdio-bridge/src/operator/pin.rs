//! `mcpx pin` (docs/integrity.md): asks the configured servers for their
//! tools and writes, checks or updates the reviewed lock (`mcpx.lock`).
//!
//! Servers are reached the way the gateway reaches them: HTTP servers at
//! their `url`; stdio servers through the stdio bridge (the same spawning,
//! environment and handshake code `mcpx run` uses), started in-process on a
//! loopback port for the duration of the command. Each server gets an MCP
//! `initialize`, `notifications/initialized`, then `tools/list` pages
//! following `nextCursor`.

use crate::bridge;
use crate::error::{Error, Result};
use crate::operator::lockfile::{self, Lock};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mcpx_filter::config::{BackendUrl, Config, Transport};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;

/// What `mcpx pin` does with the live tools.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the lock (all servers, or replace just `--server`'s block).
    Write,
    /// Compare with the lock; differences exit 1.
    Check,
    /// Accept one reviewed change: one tool (or one server) re-pinned.
    Update { server: String, tool: Option<String> },
}

/// At most this many `tools/list` pages per server (a server whose cursor
/// never ends must not hang `mcpx pin`).
const MAX_PAGES: usize = 1000;
const PROTOCOL_VERSION: &str = "2025-06-18";
const TIMEOUT: Duration = Duration::from_secs(60);

/// Where the lock lives: `--lock`, else `inspection.lock`, else `mcpx.lock`
/// next to mcpx.yaml.
pub fn lock_location(config_path: &Path, config: &Config, explicit: Option<&Path>) -> PathBuf {
    match explicit {
        Some(p) => p.to_path_buf(),
        None => lockfile::lock_path(config_path, config.inspection.lock.as_deref().unwrap_or("mcpx.lock")),
    }
}

/// Runs `mcpx pin`; returns whether the live servers match (for `--check`).
pub fn run(
    config_path: &Path,
    config: &Config,
    server: Option<&str>,
    lock_path: &Path,
    action: Action,
) -> Result<bool> {
    let scope: Vec<String> = match server {
        Some(s) => {
            config.server(s).ok_or_else(|| {
                let known: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
                Error::usage(format!(
                    "--server {s}: not a server in {} (known: {})",
                    config_path.display(),
                    known.join(", ")
                ))
            })?;
            vec![s.to_string()]
        }
        None => config.servers.iter().map(|s| s.name.clone()).collect(),
    };
    let existing = match (&action, lock_path.exists()) {
        (Action::Write, false) => Lock::default(),
        (_, _) => Lock::read(lock_path)?,
    };
    if let (Action::Check, Some(s)) = (&action, server) {
        if !existing.servers.contains_key(s) {
            let shown = lock_path.display();
            return Err(Error::usage(format!("--server {s}: {shown} does not pin it (it is on trust on first use)")));
        }
    }
    // --check looks at the servers the lock pins (others keep first use).
    let scope: Vec<String> = match action {
        Action::Check => scope.into_iter().filter(|s| existing.servers.contains_key(s)).collect(),
        _ => scope,
    };
    let live = fetch(config, &scope)?;
    match action {
        Action::Write => {
            let mut lock = existing;
            for (s, tools) in live {
                lock.servers.insert(s, tools);
            }
            lock.write(lock_path)?;
            let n: usize = lock.servers.values().map(BTreeMap::len).sum();
            eprintln!(
                "mcpx: wrote {} ({} server(s), {n} tool(s)); review it and commit it",
                lock_path.display(),
                lock.servers.len()
            );
            Ok(true)
        }
        Action::Check => {
            let report = check(&existing, &live);
            if report.is_empty() {
                println!("{}: the live servers match the lock ({} server(s) checked)", lock_path.display(), live.len());
                Ok(true)
            } else {
                print!("{report}");
                println!(
                    "\n{}: the live servers differ from the lock. Review the changes above; accept one with \
                     `mcpx pin --update --server S --tool T`, then commit the lock.",
                    lock_path.display()
                );
                Ok(false)
            }
        }
        Action::Update { server, tool } => {
            let mut lock = existing;
            let live_tools = live.get(&server).cloned().unwrap_or_default();
            let what = match tool {
                Some(t) => {
                    let entry = lock.servers.entry(server.clone()).or_default();
                    match live_tools.get(&t) {
                        Some(def) => {
                            entry.insert(t.clone(), def.clone());
                            format!("re-pinned tool {t:?} on server {server}")
                        }
                        None if entry.remove(&t).is_some() => {
                            format!("removed tool {t:?} from server {server} (the server no longer lists it)")
                        }
                        None => {
                            return Err(Error::usage(format!(
                                "--tool {t}: server {server} does not list it and the lock does not pin it"
                            )))
                        }
                    }
                }
                None => {
                    lock.servers.insert(server.clone(), live_tools);
                    format!("re-pinned every tool of server {server}")
                }
            };
            lock.write(lock_path)?;
            eprintln!("mcpx: {what} in {}; commit the lock and reload the gateway", lock_path.display());
            Ok(true)
        }
    }
}

/// The readable differences between the lock and the live tools, or "".
pub fn check(lock: &Lock, live: &BTreeMap<String, BTreeMap<String, Value>>) -> String {
    let mut out = String::new();
    for (server, tools) in live {
        let pinned = lock.servers.get(server).cloned().unwrap_or_default();
        let names: std::collections::BTreeSet<&String> = pinned.keys().chain(tools.keys()).collect();
        for name in names {
            let shown = serde_json::to_string(name).unwrap_or_default();
            match (pinned.get(name), tools.get(name)) {
                (Some(p), Some(l)) => {
                    let changes = lockfile::diff(p, l);
                    if !changes.is_empty() {
                        out.push_str(&format!("server {server}, tool {shown}: changed (a rug pull unless reviewed)\n"));
                        for c in changes {
                            out.push_str(&format!("    {c}\n"));
                        }
                    }
                }
                (Some(_), None) => {
                    out.push_str(&format!("server {server}, tool {shown}: pinned but no longer listed\n"))
                }
                (None, Some(l)) => out.push_str(&format!(
                    "server {server}, tool {shown}: new, not in the lock (unpinned)\n    + {}\n",
                    mcpx_filter::integrity::canonical_json(l)
                )),
                (None, None) => {}
            }
        }
    }
    out
}

/// Lists the tools of `servers` (server -> tool -> definition).
pub fn fetch(config: &Config, servers: &[String]) -> Result<BTreeMap<String, BTreeMap<String, Value>>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io_other(format!("cannot start the runtime: {e}")))?;
    rt.block_on(async {
        let needs_bridge = servers.iter().any(|s| config.server(s).is_some_and(|c| c.transport == Transport::Stdio));
        let token = bridge::new_token();
        let stdio = match needs_bridge {
            true => {
                Some(bridge::Bridge::start(config, SocketAddr::from(([127, 0, 0, 1], 0)), Some(token.clone())).await?)
            }
            false => None,
        };
        let mut out = BTreeMap::new();
        let mut failure = None;
        for name in servers {
            let Some(server) = config.server(name) else { continue };
            let target = match (&server.transport, &stdio) {
                (Transport::Stdio, Some(b)) => Ok(Target {
                    addr: b.local_addr().to_string(),
                    host: "127.0.0.1".into(),
                    path: format!("/mcp/{name}"),
                    headers: vec![(bridge::TOKEN_HEADER.to_string(), token.clone())],
                    tls: false,
                }),
                _ => Target::http(server.primary_url().unwrap_or_default()),
            };
            let listed = match target {
                Ok(t) => tokio::time::timeout(TIMEOUT, list_tools(&t))
                    .await
                    .unwrap_or_else(|_| Err(Error::network("timed out"))),
                Err(e) => Err(e),
            };
            match listed {
                Ok(tools) => {
                    out.insert(name.clone(), tools);
                }
                Err(e) => {
                    failure = Some(e.context(format!("listing the tools of server {name}")));
                    break;
                }
            }
        }
        if let Some(b) = stdio {
            b.shutdown().await;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}

/// One MCP endpoint over HTTP/1.1, in the clear or over TLS.
struct Target {
    /// host:port to connect to.
    addr: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    /// https: the server's certificate is verified against the system's CA
    /// store (or `SSL_CERT_FILE`) and its host name, as Envoy verifies it.
    tls: bool,
}

impl Target {
    fn http(url: &str) -> Result<Target> {
        let u = BackendUrl::parse(url).map_err(Error::config)?;
        Ok(Target {
            addr: format!("{}:{}", u.host, u.port),
            host: u.host.clone(),
            path: u.path,
            headers: Vec::new(),
            tls: u.tls,
        })
    }
}

/// Every tool the server lists, by name (pages followed via `nextCursor`).
async fn list_tools(t: &Target) -> Result<BTreeMap<String, Value>> {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
        "clientInfo": {"name": "mcpx-pin", "version": env!("CARGO_PKG_VERSION")}}});
    let (reply, session) = post(t, &init, None).await?;
    result_of(&reply, "initialize")?;
    post(t, &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), session.as_deref()).await?;
    let mut tools = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut seen_cursors = std::collections::BTreeSet::new();
    for page in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let req = json!({"jsonrpc": "2.0", "id": 2 + page, "method": "tools/list", "params": params});
        let (reply, _) = post(t, &req, session.as_deref()).await?;
        let result = result_of(&reply, "tools/list")?;
        for tool in result
            .get("tools")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::network("tools/list answered without a tools array"))?
        {
            let name = tool
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::network("a listed tool has no string name"))?;
            if tools.insert(name.to_string(), tool.clone()).is_some() {
                return Err(Error::network(format!(
                    "tool {name:?} is listed twice; a lock cannot pin two definitions of one name"
                )));
            }
        }
        cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_string);
        match &cursor {
            None => return Ok(tools),
            Some(c) if !seen_cursors.insert(c.clone()) => {
                return Err(Error::network(format!("nextCursor {c:?} repeats")))
            }
            Some(_) => {}
        }
    }
    Err(Error::network(format!("more than {MAX_PAGES} tools/list pages")))
}

fn result_of<'a>(reply: &'a Option<Value>, method: &str) -> Result<&'a Value> {
    let reply = reply.as_ref().ok_or_else(|| Error::network(format!("{method}: no answer")))?;
    if let Some(e) = reply.get("error") {
        return Err(Error::network(format!("{method} failed: {e}")));
    }
    reply.get("result").ok_or_else(|| Error::network(format!("{method}: the answer has no result")))
}

/// POSTs one message; returns the answer (JSON or the last JSON-RPC
/// response of an event stream) and the session id, if the server set one.
async fn post(t: &Target, msg: &Value, session: Option<&str>) -> Result<(Option<Value>, Option<String>)> {
    let stream =
        TcpStream::connect(&t.addr).await.map_err(|e| Error::network(format!("cannot connect to {}: {e}", t.addr)))?;
    let mut sender = if t.tls {
        let connector = native_tls::TlsConnector::new().map_err(|e| Error::network(format!("TLS: {e}")))?;
        let stream = tokio_native_tls::TlsConnector::from(connector).connect(&t.host, stream).await.map_err(|e| {
            Error::network(format!(
                "TLS with {} failed: {e} (a private CA: point SSL_CERT_FILE at its certificate)",
                t.addr
            ))
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Error::network(e.to_string()))?;
        tokio::spawn(conn);
        sender
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Error::network(e.to_string()))?;
        tokio::spawn(conn);
        sender
    };
    let mut req = hyper::Request::post(&t.path)
        .header("host", &t.host)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if let Some(s) = session {
        req = req.header("mcp-session-id", s).header("mcp-protocol-version", PROTOCOL_VERSION);
    }
    for (k, v) in &t.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let body = serde_json::to_vec(msg).map_err(|e| Error::internal(e.to_string()))?;
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| Error::internal(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| Error::network(format!("{}: {e}", t.addr)))?;
    let status = resp.status();
    let sid = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"));
    let bytes = resp.into_body().collect().await.map_err(|e| Error::network(e.to_string()))?.to_bytes();
    if !status.is_success() {
        return Err(Error::network(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes))));
    }
    if bytes.is_empty() || status == hyper::StatusCode::ACCEPTED {
        return Ok((None, sid));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| Error::network("the answer is not UTF-8"))?;
    let value = if sse {
        // The response is the event whose data is a JSON-RPC response.
        sse_data(text)
            .into_iter()
            .filter_map(|d| serde_json::from_str::<Value>(&d).ok())
            .rfind(|v| v.get("id").is_some())
    } else {
        Some(serde_json::from_str(text).map_err(|e| Error::network(format!("the answer is not JSON: {e}")))?)
    };
    Ok((value, sid))
}

/// The data of each event of an event stream.
fn sse_data(text: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            if !data.is_empty() {
                events.push(data.join("\n"));
                data.clear();
            }
        } else if let Some(d) = line.strip_prefix("data:") {
            data.push(d.strip_prefix(' ').unwrap_or(d));
        }
    }
    if !data.is_empty() {
        events.push(data.join("\n"));
    }
    events
}

/// `mcpx baseline show --as-lock`: the trust-on-first-use baseline as a
/// lock. The baseline keeps hashes only, so each pinned tool's definition
/// is fetched live and kept when it still hashes to the pin; the others are
/// reported (they changed since first use: review them) and left out.
pub fn baseline_as_lock(config: &Config, baseline: &Value) -> Result<(Lock, Vec<String>)> {
    let pinned = baseline.get("servers").and_then(Value::as_object).cloned().unwrap_or_default();
    let servers: Vec<String> = pinned.keys().filter(|s| config.server(s).is_some()).cloned().collect();
    let live = fetch(config, &servers)?;
    let mut lock = Lock::default();
    let mut skipped = Vec::new();
    for (server, tools) in &pinned {
        let Some(tools) = tools.as_object() else { continue };
        let entry = lock.servers.entry(server.clone()).or_default();
        for (tool, pin) in tools {
            let want = pin.get("sha256").and_then(Value::as_str).unwrap_or_default();
            match live.get(server).and_then(|t| t.get(tool)) {
                Some(def) if mcpx_filter::integrity::tool_hash(def) == want => {
                    entry.insert(tool.clone(), def.clone());
                }
                Some(_) => skipped.push(format!("{server}/{tool}: its live definition differs from the baseline pin")),
                None => skipped.push(format!("{server}/{tool}: not listed by the server now (or not configured)")),
            }
        }
    }
    Ok((lock, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_stream_data_is_joined_per_event() {
        let text = "event: message\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\n: ping\n\ndata: x\n";
        assert_eq!(sse_data(text), ["{\"a\":\n1}", "x"]);
    }

    #[test]
    fn check_reports_changed_new_and_gone_tools() {
        let mut lock = Lock::default();
        let demo = lock.servers.entry("demo".into()).or_default();
        demo.insert("echo".into(), json!({"name": "echo", "description": "Echo"}));
        demo.insert("gone".into(), json!({"name": "gone"}));
        let mut live = BTreeMap::new();
        let tools: BTreeMap<String, Value> = [
            ("echo".to_string(), json!({"name": "echo", "description": "Echo!"})),
            ("new".to_string(), json!({"name": "new"})),
        ]
        .into_iter()
        .collect();
        live.insert("demo".to_string(), tools);
        let r = check(&lock, &live);
        assert!(r.contains("server demo, tool \"echo\": changed"), "{r}");
        assert!(r.contains("~ description:\n      pinned: \"Echo\"\n      live:   \"Echo!\""), "{r}");
        assert!(r.contains("tool \"gone\": pinned but no longer listed"), "{r}");
        assert!(r.contains("tool \"new\": new, not in the lock (unpinned)"), "{r}");
        assert_eq!(check(&lock, &BTreeMap::new()), "");
    }
}
