//! The stdio bridge (docs/bridge.md): every `transport: stdio` server of
//! `mcpx.yaml` as a Streamable HTTP endpoint `/mcp/{name}` on one listener,
//! which Envoy routes to like any other backend.
//!
//! - `spec`: how to launch a server (command, env without the gateway's secrets).
//! - `child`: the process, its pipes and its process group.
//! - `lines`: line framing of the child's output.
//! - `ids`: JSON-RPC id rewriting and the requests in flight.
//! - `reply`: answers kept verbatim (only the id is swapped back).
//! - `era`: both protocol eras on one child (the bridge opens it; requests are
//!   answered or translated in their own era).
//! - `isolation`: what one identity may not do to another on a shared child.
//! - `sanitize`: child output made safe for the log.
//! - `upstream`: one server: lazy start, respawn with backoff, sessions.
//! - `http`: the HTTP surface.

mod child;
mod era;
mod http;
mod ids;
mod isolation;
mod lines;
mod reply;
mod sanitize;
pub mod spec;
mod upstream;

use crate::error::{Error, Result};
use mcpx_filter::config::Config;
use serde_json::Value;
use spec::ServerSpec;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use upstream::Upstream;

pub use http::TOKEN_HEADER;

/// How long in-flight requests may take to finish when the bridge shuts down.
const SHUTDOWN_DRAIN_CAP: Duration = Duration::from_secs(10);

pub(crate) struct Inner {
    servers: RwLock<HashMap<String, Arc<Upstream>>>,
    /// When set, requests must carry it in `x-mcpx-bridge-token`.
    token: Option<String>,
}

impl Inner {
    fn server(&self, name: &str) -> Option<Arc<Upstream>> {
        self.servers.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }
}

/// What a reload did, by server name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// Unchanged: the running child (if any) keeps running.
    pub kept: Vec<String>,
    /// New servers (started on their first request).
    pub added: Vec<String>,
    /// Changed launch settings: the old child is retired.
    pub replaced: Vec<String>,
    /// No longer configured: the child is retired.
    pub removed: Vec<String>,
}

/// The running bridge. Dropping it does not stop the children: call
/// [`Bridge::shutdown`].
pub struct Bridge {
    inner: Arc<Inner>,
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    accept: JoinHandle<()>,
    /// Retirements started by reloads, awaited by shutdown.
    retiring: Mutex<Vec<JoinHandle<()>>>,
}

impl Bridge {
    /// Binds `listen` and starts serving the stdio servers of `config`.
    /// Children start on their first request. `token`: see [`protect_routes`].
    pub async fn start(config: &Config, listen: SocketAddr, token: Option<String>) -> Result<Bridge> {
        harden_process();
        let specs = spec::resolve(config, &spec::current_environ())?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::io_other(format!("the stdio bridge cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| Error::io_other(e.to_string()))?;
        let servers = specs.into_iter().map(|s| (s.name.clone(), Arc::new(Upstream::new(s)))).collect();
        let inner = Arc::new(Inner { servers: RwLock::new(servers), token });
        let accept = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(Bridge { inner, addr, runtime: tokio::runtime::Handle::current(), accept, retiring: Mutex::new(Vec::new()) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Applies a new configuration (hot reload): servers whose launch settings
    /// (command, args, resolved env, workdir) are unchanged keep their child and
    /// sessions (a new `request_timeout` applies at once); changed ones get a
    /// fresh server and the old child is retired after its in-flight requests
    /// finish; removed ones are retired; new ones start on first request.
    /// All or nothing: on error (e.g. an unset `${VAR}`) nothing changes.
    pub fn apply(&self, config: &Config) -> Result<Reload> {
        let specs: Vec<ServerSpec> = spec::resolve(config, &spec::current_environ())?;
        let mut report = Reload::default();
        let mut retire = Vec::new();
        {
            let mut servers = self.inner.servers.write().unwrap_or_else(|p| p.into_inner());
            let mut next = HashMap::new();
            for s in specs {
                let name = s.name.clone();
                match servers.remove(&name) {
                    Some(old) if old.spec.launch == s.launch => {
                        old.set_timeout(s.request_timeout);
                        report.kept.push(name.clone());
                        next.insert(name, old);
                    }
                    Some(old) => {
                        retire.push(old);
                        report.replaced.push(name.clone());
                        next.insert(name, Arc::new(Upstream::new(s)));
                    }
                    None => {
                        report.added.push(name.clone());
                        next.insert(name, Arc::new(Upstream::new(s)));
                    }
                }
            }
            for (name, old) in servers.drain() {
                report.removed.push(name);
                retire.push(old);
            }
            *servers = next;
        }
        let mut retiring = self.retiring.lock().unwrap_or_else(|p| p.into_inner());
        for old in retire {
            let drain = old.timeout();
            retiring.push(self.runtime.spawn(async move { old.retire(drain).await }));
        }
        for list in [&mut report.kept, &mut report.added, &mut report.replaced, &mut report.removed] {
            list.sort();
        }
        Ok(report)
    }

    /// The pid of a server's running child (None if not started or exited),
    /// for operators and the hot-reload code.
    #[allow(dead_code)]
    pub async fn pid(&self, server: &str) -> Option<u32> {
        self.inner.server(server)?.pid().await
    }

    /// Stops accepting requests, lets in-flight ones finish (bounded), closes
    /// every child's stdin and kills the process groups of those that linger.
    pub async fn shutdown(&self) {
        self.accept.abort();
        let all: Vec<Arc<Upstream>> =
            self.inner.servers.write().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, u)| u).collect();
        let mut tasks: Vec<JoinHandle<()>> = all
            .into_iter()
            .map(|u| {
                let drain = u.timeout().min(SHUTDOWN_DRAIN_CAP);
                tokio::spawn(async move { u.retire(drain).await })
            })
            .collect();
        tasks.append(&mut self.retiring.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// Before any child exists: children must not be able to read mcpx's memory
/// or environment (the gateway's secrets), and must not outlive a panic.
fn harden_process() {
    // Not dumpable: /proc/<mcpx>/{environ,mem,…} and ptrace are closed to
    // processes of the same user (the stdio children), and no core dump
    // holds the secrets. Children are not affected (execve resets it).
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes a flag of this process.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        eprintln!("mcpx bridge: warning: could not make mcpx non-dumpable: {}", std::io::Error::last_os_error());
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            child::kill_all();
            previous(info);
        }));
    });
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // EMFILE and friends: wait a moment rather than spin.
                eprintln!("mcpx bridge: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let inner = inner.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(http::handle(inner, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Adds the bridge token to the routes of stdio servers in a rendered Envoy
/// bootstrap, so only this Envoy can use the bridge: any local process could
/// otherwise reach the loopback port and call tools past auth and policy.
pub fn protect_routes(bootstrap: &mut Value, config: &Config, token: &str) {
    let stdio: Vec<String> = config
        .servers
        .iter()
        .filter(|s| s.transport == mcpx_filter::config::Transport::Stdio)
        .map(|s| crate::envoy::render::cluster_name(&s.name))
        .collect();
    let Some(listeners) = bootstrap.pointer_mut("/static_resources/listeners").and_then(Value::as_array_mut) else {
        return;
    };
    for listener in listeners {
        let chains = listener.get_mut("filter_chains").and_then(Value::as_array_mut);
        for chain in chains.into_iter().flatten() {
            let filters = chain.get_mut("filters").and_then(Value::as_array_mut);
            for f in filters.into_iter().flatten() {
                let vhosts = f.pointer_mut("/typed_config/route_config/virtual_hosts").and_then(Value::as_array_mut);
                for vh in vhosts.into_iter().flatten() {
                    let routes = vh.get_mut("routes").and_then(Value::as_array_mut);
                    for r in routes.into_iter().flatten() {
                        let to_stdio = r
                            .pointer("/route/cluster")
                            .and_then(Value::as_str)
                            .is_some_and(|c| stdio.iter().any(|s| s == c));
                        if let (true, Some(obj)) = (to_stdio, r.as_object_mut()) {
                            let add = obj.entry("request_headers_to_add").or_insert_with(|| Value::Array(vec![]));
                            if let Some(list) = add.as_array_mut() {
                                list.push(serde_json::json!({
                                    "header": { "key": TOKEN_HEADER, "value": token },
                                    "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                                }));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A fresh random token for [`protect_routes`].
pub fn new_token() -> String {
    upstream::random_hex(32)
}

/// `mcpx bridge`: serves until SIGINT/SIGTERM; SIGHUP re-reads the config
/// file and applies it (an invalid file is reported and ignored).
pub async fn serve(
    path: &Path,
    config: Config,
    listen: SocketAddr,
    load: impl Fn(&Path) -> Result<Config>,
) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = std::env::var("MCPX_BRIDGE_TOKEN").ok().filter(|t| !t.is_empty());
    if !listen.ip().is_loopback() && token.is_none() {
        eprintln!(
            "mcpx bridge: warning: listening on {listen} without MCPX_BRIDGE_TOKEN; anyone who can reach it can call \
             these servers' tools without the gateway's auth and policy. Set MCPX_BRIDGE_TOKEN and have Envoy send it \
             as {TOKEN_HEADER}, or keep the bridge on a private network."
        );
    }
    let mut hup = signal(SignalKind::hangup()).map_err(|e| Error::io_other(format!("cannot handle signals: {e}")))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::io_other(format!("cannot handle signals: {e}")))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::io_other(format!("cannot handle signals: {e}")))?;
    let bridge = Bridge::start(&config, listen, token).await?;
    let names: Vec<String> = config
        .servers
        .iter()
        .filter(|s| s.transport == mcpx_filter::config::Transport::Stdio)
        .map(|s| format!("http://{}/mcp/{}", bridge.local_addr(), s.name))
        .collect();
    println!("mcpx bridge: listening on http://{}; servers: {}", bridge.local_addr(), names.join(", "));
    loop {
        tokio::select! {
            _ = hup.recv() => match load(path).and_then(|c| bridge.apply(&c)) {
                Ok(r) => println!(
                    "mcpx bridge: reloaded {}: kept [{}], added [{}], replaced [{}], removed [{}]",
                    path.display(), r.kept.join(", "), r.added.join(", "), r.replaced.join(", "), r.removed.join(", ")
                ),
                Err(e) => eprintln!("mcpx bridge: reload rejected, still running the previous config: {e}"),
            },
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!("mcpx bridge: shutting down");
    bridge.shutdown().await;
    Ok(())
}
