//! `mcpx-demo`: a small, fast demo MCP server over Streamable HTTP.
//!
//! Used by the mcpx quickstart (`make run`), by end-to-end tests, and by
//! benchmarks as a fast direct backend. Modules:
//!
//! * `main`    — command line, socket, accept loop (this file)
//! * `server`  — the hyper service: routing, recording, modes, SSE
//! * `mcp`     — JSON-RPC 2.0 / MCP message handling
//! * `tools`   — the tool catalogue (`tools/list`, `tools/call`)
//! * `control` — the `/_…` test endpoints (`/_received`, `/_mode`, …)
//!
//! See README.md beside Cargo.toml for the protocol and control surface.

mod control;
mod mcp;
mod server;
mod tools;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::server::App;

/// A small, fast demo MCP server (Streamable HTTP, JSON-RPC 2.0).
///
/// Any path is accepted for MCP traffic (canonical: /mcp). Paths starting
/// with /_ are the test control surface: /_health, /_received, /_reset,
/// /_mode (see the crate's README.md).
#[derive(Parser, Debug)]
#[command(name = "mcpx-demo", version)]
struct Args {
    /// Address to listen on (HOST:PORT). Port 0 picks a free port; the real
    /// address is printed and written to --ready-file.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3001")]
    listen: String,

    /// Server name reported in serverInfo.name.
    #[arg(long, default_value = "demo")]
    name: String,

    /// Add N generated tools tool_0..tool_{N-1} to tools/list (large-list tests).
    #[arg(long, value_name = "N", default_value_t = 0)]
    tools: usize,

    /// Once listening, write the bound address (e.g. 127.0.0.1:40123) to PATH.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,

    /// Do not record requests for /_received (for benchmarks).
    #[arg(long)]
    no_record: bool,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Writes `contents` to `path` atomically (temp file + rename), so a test
/// polling for the file never reads it half-written.
fn write_atomic(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("mcpx-demo: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let listener =
        TcpListener::bind(&args.listen).await.map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;

    let app = Arc::new(App {
        name: args.name,
        catalogue: tools::Catalogue::new(args.tools),
        mode: control::Mode::default(),
        recorder: (!args.no_record).then(control::Recorder::default),
    });

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "mcpx-demo listening on http://{addr}")?;
        out.flush()?;
    }
    eprintln!(
        "mcpx-demo: serving {} tools as {:?}; recording {}",
        app.catalogue.len(),
        app.name,
        if app.recorder.is_some() { "on" } else { "off" }
    );
    if let Some(path) = &args.ready_file {
        write_atomic(path, &addr.to_string())
            .map_err(|e| format!("cannot write ready file {}: {e}", path.display()))?;
    }

    // One shutdown future for the whole loop (not one per accept).
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // e.g. too many open files: report, back off briefly, go on.
                    eprintln!("mcpx-demo: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut shutdown => {
                eprintln!("mcpx-demo: shutting down");
                return Ok(());
            }
        };
        // Small request/response messages: don't wait for Nagle.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(server::handle(app, req).await) }
            });
            // HTTP/1.1 with keep-alive (hyper's default); errors here are
            // client disconnects and malformed HTTP, nothing to act on.
            let _ = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
