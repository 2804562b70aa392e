//! One running stdio server: the process (in its own process group), a
//! writer task that owns its stdin, a reader task that splits its stdout into
//! JSON-RPC messages, a task that copies its stderr to the log tagged with the
//! server name, and a supervisor that notices the exit.

use super::ids::{Outcome, Pending, Registration};
use super::lines::{Frame, Lines};
use super::reply::{Peek, Reply};
use super::spec::Spec;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};

/// Longest stdout line (one JSON-RPC message) accepted; longer ones are
/// skipped with a log line. Matches the largest `limits.max_body_bytes`.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// stderr lines are log lines: keep them short.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// How the child ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub at: Instant,
    /// e.g. "exit status: 1" or "signal: 9 (SIGKILL)".
    pub status: String,
}

/// Why a call got no answer from the child.
#[derive(Debug)]
pub enum CallError {
    /// The child exited (or was never usable); the text says how.
    Gone(String),
    /// `request_timeout` passed.
    Timeout(Duration),
}

enum Write {
    Line(Vec<u8>),
    /// Close stdin: the polite way to ask a stdio server to exit.
    Close,
}

pub struct Child {
    pub name: Arc<str>,
    pub pid: u32,
    pub started: Instant,
    writer: mpsc::Sender<Write>,
    pending: Arc<Pending>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Child {
    /// Starts the process and its I/O tasks. Must run inside a tokio runtime,
    /// on a long-lived thread (PR_SET_PDEATHSIG follows the spawning thread).
    pub fn spawn(name: &str, spec: &Spec) -> Result<Arc<Child>, String> {
        let mut cmd = Command::new(&spec.command);
        cmd.args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: teardown signals the whole group, so
            // grandchildren (npx -> node) go too.
            .process_group(0);
        if let Some(dir) = &spec.workdir {
            cmd.current_dir(dir);
        }
        // SAFETY: prctl is async-signal-safe and touches only the new process.
        // If mcpx itself is killed outright, the kernel kills the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "command not found (is it installed and on PATH?)".to_string(),
                _ => e.to_string(),
            };
            format!("cannot start server `{name}` (`{}`): {why}", spec.command)
        })?;
        let pid = child.id().ok_or_else(|| format!("server `{name}` exited before it could be supervised"))?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(format!("server `{name}`: stdio pipes were not created"));
        };
        let name: Arc<str> = Arc::from(name);
        let pending = Arc::new(Pending::default());
        let (writer, write_rx) = mpsc::channel(1024);
        let (exit_tx, exit) = watch::channel(None);
        let (stdout_done_tx, stdout_done) = oneshot::channel();

        tokio::spawn(write_stdin(stdin, write_rx));
        let reader =
            Reader { name: name.clone(), pending: pending.clone(), writer: writer.clone(), seen: Default::default() };
        tokio::spawn(async move {
            reader.run(stdout).await;
            let _ = stdout_done_tx.send(());
        });
        tokio::spawn(copy_stderr(name.clone(), stderr));
        let sup_name = name.clone();
        let sup_pending = pending.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            // Whatever the leader left behind in its group goes with it.
            kill_group(pid, libc::SIGKILL);
            // Answers written just before the exit are still in the pipe.
            let _ = tokio::time::timeout(Duration::from_secs(2), stdout_done).await;
            sup_pending.close(&format!("server `{sup_name}` exited ({status}) before answering"));
            eprintln!("mcpx bridge: server `{sup_name}` (pid {pid}) exited: {status}");
            let _ = exit_tx.send(Some(Exit { at: Instant::now(), status }));
        });
        eprintln!("mcpx bridge: started server `{name}` (pid {pid}): {} {}", spec.command, spec.args.join(" "));
        Ok(Arc::new(Child { name, pid, started: Instant::now(), writer, pending, exit }))
    }

    pub fn exited(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Sends a request (with a child-side id swapped in) and waits for the answer.
    pub async fn call(&self, mut message: Value, timeout: Duration) -> Result<Reply, CallError> {
        let (id, rx) = self.pending.register().map_err(CallError::Gone)?;
        let registration = Registration { pending: &self.pending, id };
        if let Some(obj) = message.as_object_mut() {
            obj.insert("id".into(), json!(id));
        }
        let line = to_line(&message);
        drop(message);
        let exchange = async {
            self.writer
                .send(Write::Line(line))
                .await
                .map_err(|_| CallError::Gone(format!("server `{}` has closed its input", self.name)))?;
            match rx.await {
                Ok(Outcome::Reply(r)) => Ok(r),
                Ok(Outcome::Gone(reason)) => Err(CallError::Gone(reason)),
                Err(_) => Err(CallError::Gone(format!("server `{}` went away", self.name))),
            }
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => {
                // Tell the server to stop working on it (MCP cancellation).
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "request_timeout elapsed at the gateway"}});
                let _ = self.writer.try_send(Write::Line(to_line(&cancel)));
                Err(CallError::Timeout(timeout))
            }
        };
        drop(registration);
        result
    }

    /// Sends a notification (no answer expected).
    pub async fn notify(&self, message: &Value) -> Result<(), String> {
        self.writer
            .send(Write::Line(to_line(message)))
            .await
            .map_err(|_| format!("server `{}` has closed its input", self.name))
    }

    async fn wait_exit(&self) {
        let mut rx = self.exit.clone();
        let _ = rx.wait_for(|e| e.is_some()).await;
    }

    /// Retires the child: lets in-flight requests finish (up to `drain`),
    /// closes stdin, and kills the process group if it lingers past `grace`.
    pub async fn stop(&self, drain: Duration, grace: Duration) {
        if self.exited().is_none() {
            let _ = tokio::time::timeout(drain, self.pending.drained()).await;
            let _ = self.writer.send(Write::Close).await;
            if tokio::time::timeout(grace, self.wait_exit()).await.is_err() {
                eprintln!(
                    "mcpx bridge: server `{}` (pid {}) ignored stdin closing; terminating it",
                    self.name, self.pid
                );
                kill_group(self.pid, libc::SIGTERM);
                if tokio::time::timeout(Duration::from_secs(2), self.wait_exit()).await.is_err() {
                    kill_group(self.pid, libc::SIGKILL);
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.wait_exit()).await;
        // The supervisor already killed the group on exit; this catches a
        // grandchild that outlived a leader which exited on its own.
        kill_group(self.pid, libc::SIGKILL);
    }
}

fn to_line(message: &Value) -> Vec<u8> {
    // Compact JSON never contains a raw newline, so one message is one line.
    let mut line = serde_json::to_vec(message).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Signals every process in the child's group (its pgid is its pid).
fn kill_group(pid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pid) {
        if pgid > 1 {
            // SAFETY: kill(2) with a negative pid signals that process group;
            // ESRCH (group already gone) is fine.
            unsafe { libc::kill(-pgid, signal) };
        }
    }
}

/// Owns stdin; writes whole messages only (a request abandoned by its client
/// can never leave half a line behind), coalescing queued ones.
async fn write_stdin(mut stdin: ChildStdin, mut rx: mpsc::Receiver<Write>) {
    while let Some(first) = rx.recv().await {
        let Write::Line(mut buf) = first else { break };
        let mut close = false;
        while buf.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(Write::Line(l)) => buf.extend_from_slice(&l),
                Ok(Write::Close) => {
                    close = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if stdin.write_all(&buf).await.is_err() || close {
            break;
        }
    }
    drop(stdin);
}

async fn read_frames<R: AsyncRead + Unpin>(mut src: R, max: usize, mut each: impl FnMut(Frame)) {
    let mut lines = Lines::new(max);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut frames = Vec::new();
    loop {
        match src.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                lines.feed(&chunk[..n], &mut frames);
                for f in frames.drain(..) {
                    each(f);
                }
            }
        }
    }
}

async fn copy_stderr<R: AsyncRead + Unpin>(name: Arc<str>, stderr: R) {
    read_frames(stderr, MAX_STDERR_LINE, |f| match f {
        Frame::Line(l) => eprintln!("[stdio:{name}] {}", String::from_utf8_lossy(&l).trim_end()),
        Frame::TooLong(n) => eprintln!("[stdio:{name}] (a {n}-byte stderr line, not shown)"),
    })
    .await;
}

/// Turns the child's stdout into deliveries to waiting requests.
struct Reader {
    name: Arc<str>,
    pending: Arc<Pending>,
    writer: mpsc::Sender<Write>,
    /// Dropped messages by kind, so a chatty server logs O(log n) lines.
    seen: Mutex<HashMap<String, u64>>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(&self, stdout: R) {
        read_frames(stdout, MAX_LINE_BYTES, |f| match f {
            Frame::Line(l) => self.line(&l),
            Frame::TooLong(n) => eprintln!(
                "mcpx bridge: server `{}` wrote a {n}-byte line to stdout, over the {MAX_LINE_BYTES}-byte limit; skipped",
                self.name
            ),
        })
        .await;
    }

    fn line(&self, line: &[u8]) {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        if trimmed.starts_with(b"[") {
            // A batch from the server (rare): split it, then handle each message.
            if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(trimmed) {
                for item in items {
                    self.line(&serde_json::to_vec(&item).unwrap_or_default());
                }
                return;
            }
        }
        match serde_json::from_slice::<Peek>(trimmed) {
            Ok(p) => self.message(p),
            Err(_) => {
                let shown: String = String::from_utf8_lossy(&trimmed[..trimmed.len().min(200)]).into();
                eprintln!(
                    "mcpx bridge: server `{}` wrote non-JSON (or a non-message) to stdout (skipped, {} bytes): {shown:?}",
                    self.name,
                    trimmed.len()
                );
            }
        }
    }

    fn message(&self, p: Peek<'_>) {
        if let Some(m) = p.method {
            let method = serde_json::from_str::<String>(m.get()).unwrap_or_else(|_| m.get().to_string());
            match p.id {
                Some(id) => {
                    // Nobody to relay it to; answer so the server does not wait forever.
                    self.dropped("request", &method);
                    let error = json!({"code": -32601,
                        "message": format!("{method}: the mcpx bridge does not relay server-initiated requests")});
                    let reply = format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{error}}}\n", id.get());
                    let _ = self.writer.try_send(Write::Line(reply.into_bytes()));
                }
                None => self.dropped("notification", &method),
            }
            return;
        }
        match (p.id, Reply::from_peek(&p)) {
            (Some(id), Some(reply)) => {
                let ours = id.get().parse::<u64>().is_ok_and(|n| self.pending.resolve(n, reply));
                if !ours {
                    eprintln!(
                        "mcpx bridge: server `{}` answered id {}, which nobody waits for (timed out?); dropped",
                        self.name,
                        id.get()
                    );
                }
            }
            _ => {
                eprintln!("mcpx bridge: server `{}` wrote an object that is not a JSON-RPC message; skipped", self.name)
            }
        }
    }

    fn dropped(&self, kind: &str, method: &str) {
        let n = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let n = seen.entry(format!("{kind} {method}")).or_insert(0);
            *n += 1;
            *n
        };
        if n.is_power_of_two() {
            eprintln!(
                "mcpx bridge: server `{}` sent {kind} {method}; not relayed (server-initiated messages are dropped; {n} so far)",
                self.name
            );
        }
    }
}
