//! Load driver for tests/bench/bridge_bench.py (not a test): drives one stdio
//! MCP server with N concurrent callers for S seconds, either directly over
//! its pipes or through `mcpx bridge`, and prints one JSON line. Written in
//! Rust so the driver's own cost is small next to the child's and the bridge's.
//!
//!   bridge_bench direct CALLERS SECONDS -- CMD ARGS...
//!   bridge_bench bridge CALLERS SECONDS MCPX -- CMD ARGS...

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

fn call_body(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "echo", "arguments": {"text": format!("hello {id}")}}})
    .to_string()
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}"#;

/// Runs `callers` loops of `one_call` for `seconds` after a 0.5 s warm-up.
async fn drive<F, Fut>(callers: usize, seconds: f64, one_call: F) -> (f64, u64)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one_call = Arc::new(one_call);
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..callers {
        let (f, counting, stop, done) = (one_call.clone(), counting.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = (k as u64 + 1) * 10_000_000;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                f(k, i).await;
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    (n as f64 / elapsed, n)
}

async fn direct(callers: usize, seconds: f64, cmd: &[String]) -> Value {
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the server");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let waiters: Waiters = Default::default();
    let w = waiters.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::with_capacity(1 << 16, stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if let Some(tx) = v.get("id").and_then(Value::as_u64).and_then(|id| w.lock().unwrap().remove(&id)) {
                    let _ = tx.send(());
                }
            }
        }
    });
    // One writer owning stdin, coalescing queued lines (as a good client would).
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut buf = first.into_bytes();
            while let Ok(more) = rx.try_recv() {
                buf.extend_from_slice(more.as_bytes());
            }
            if stdin.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let send = {
        let (tx, waiters) = (tx.clone(), waiters.clone());
        move |id: u64, line: String| {
            let (done_tx, done_rx) = oneshot::channel();
            waiters.lock().unwrap().insert(id, done_tx);
            let _ = tx.send(line + "\n");
            done_rx
        }
    };
    let _ = send(0, INIT.to_string()).await;
    let _ = tx.send("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n".to_string());
    let (rate, calls) = drive(callers, seconds, move |_, id| {
        let rx = send(id, call_body(id));
        async move {
            let _ = rx.await;
        }
    })
    .await;
    drop(tx);
    let _ = child.kill().await;
    json!({"calls_per_s": rate, "calls": calls})
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16) -> Sender {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the bridge");
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    sender
}

async fn post(sender: &mut Sender, body: String) -> Value {
    let req = hyper::Request::post("/mcp/b")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("send");
    assert_eq!(resp.status(), 200, "the bridge answered {}", resp.status());
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("JSON answer")
}

async fn bridge(callers: usize, seconds: f64, mcpx: &str, cmd: &[String]) -> Value {
    let dir = std::env::temp_dir().join(format!("mcpx-bridge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("mcpx.yaml");
    let yaml = format!(
        "servers:\n  - name: b\n    transport: stdio\n    command: {}\n    args: {}\n",
        json!(cmd[0]),
        json!(cmd[1..])
    );
    std::fs::write(&cfg, yaml).expect("write config");
    let mut proc = Command::new(mcpx)
        .args(["bridge", "-c"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start mcpx bridge");
    let pid = proc.id().expect("pid");
    let mut lines = BufReader::new(proc.stdout.take().expect("stdout")).lines();
    let ready = lines.next_line().await.expect("ready line").expect("ready line");
    let port: u16 = ready
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the ready line");
    let mut first = connect(port).await;
    post(&mut first, INIT.to_string()).await;
    let mut senders = Vec::new();
    for _ in 0..callers {
        senders.push(Arc::new(tokio::sync::Mutex::new(connect(port).await)));
    }
    let senders = Arc::new(senders);
    let cpu_before = cpu_seconds(pid);
    let (rate, calls) = drive(callers, seconds, move |k, id| {
        let s = senders[k].clone();
        async move {
            let answer = post(&mut *s.lock().await, call_body(id)).await;
            assert_eq!(answer["id"], json!(id));
        }
    })
    .await;
    let cpu = cpu_seconds(pid) - cpu_before;
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let _ = tokio::time::timeout(Duration::from_secs(10), proc.wait()).await;
    let _ = std::fs::remove_dir_all(&dir);
    json!({"calls_per_s": rate, "calls": calls,
           "bridge_cpu_us_per_call": if calls > 0 { cpu / calls as f64 * 1e6 } else { 0.0 }})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let split = args.iter().position(|a| a == "--").expect("usage: see the file header");
    let (opts, cmd) = (&args[1..split], &args[split + 1..]);
    let callers: usize = opts[1].parse().expect("CALLERS");
    let seconds: f64 = opts[2].parse().expect("SECONDS");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let out = match opts[0].as_str() {
        "direct" => rt.block_on(direct(callers, seconds, cmd)),
        "bridge" => rt.block_on(bridge(callers, seconds, &opts[3], cmd)),
        other => panic!("unknown mode {other}"),
    };
    println!("{out}");
}
