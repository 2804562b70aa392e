//! One running stdio server: the process (in its own process group), a
//! writer task that owns its stdin, a reader task that splits its stdout into
//! JSON-RPC messages, a task that copies its stderr to the log tagged with the
//! server name, and a supervisor that notices the exit.
//!
//! A child is not trusted. Everything it writes is escaped and cut before it
//! reaches the log (`sanitize`); what the bridge remembers about it is bounded;
//! and a child that stops reading its stdin cannot hang anyone: every write
//! to it has a deadline (its `request_timeout`), after which its whole process
//! group is killed.

use super::ids::{self, Outcome, Pending, Registration, Sink};
use super::lines::{Frame, Lines};
use super::reply::{Peek, Reply};
use super::sanitize::{self, for_log};
use super::spec::Spec;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Longest stdout line (one JSON-RPC message) accepted; longer ones are
/// skipped with a log line. Matches the largest `limits.max_body_bytes`.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
/// stderr lines are log lines: keep them short.
const MAX_STDERR_LINE: usize = 16 * 1024;
/// Distinct kinds of dropped server-initiated messages counted per child;
/// further kinds share one counter (a child inventing method names cannot
/// grow the bridge's memory).
const MAX_DROPPED_KINDS: usize = 64;
/// How long closing stdin may wait for queued messages to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Process groups of children that are running, so that a panic of mcpx
/// still ends them (see [`kill_all`]).
static LIVE_GROUPS: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn live_groups() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// SIGKILLs the process group of every running child (last resort: a panic).
pub fn kill_all() {
    // try_lock: a panic hook must never wait (the panicking thread may hold it).
    let groups = match LIVE_GROUPS.try_lock() {
        Ok(g) => g,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    for pgid in groups.iter().flatten() {
        kill_group(*pgid, libc::SIGKILL);
    }
}

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
    /// The task that owns stdin; aborted (closing stdin) if it is stuck.
    writer_task: Mutex<Option<JoinHandle<()>>>,
    /// The deadline of every write, in ms (the server's `request_timeout`).
    write_timeout_ms: Arc<AtomicU64>,
    pending: Arc<Pending>,
    exit: watch::Receiver<Option<Exit>>,
}

impl Drop for Child {
    fn drop(&mut self) {
        // Every exit path: a child nobody holds any more must not outlive us.
        if self.exited().is_none() {
            kill_group(self.pid, libc::SIGKILL);
        }
    }
}

impl Child {
    /// Starts the process and its I/O tasks. Must run inside a tokio runtime,
    /// on a long-lived thread (PR_SET_PDEATHSIG follows the spawning thread).
    /// `write_timeout_ms`: the deadline of each write to its stdin.
    pub fn spawn(name: &str, spec: &Spec, write_timeout_ms: Arc<AtomicU64>) -> Result<Arc<Child>, String> {
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
        let account = spec.user.clone();
        let parent = std::process::id();
        // SAFETY: only async-signal-safe system calls on data prepared before
        // the fork; they touch only the new process.
        unsafe {
            cmd.pre_exec(move || {
                // `user:`: groups first, then gid, then uid (after which we
                // could no longer change the others).
                if let Some(a) = &account {
                    if libc::setgroups(a.groups.len(), a.groups.as_ptr()) != 0
                        || libc::setgid(a.gid) != 0
                        || libc::setuid(a.uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // After the uid change, which would clear it: if mcpx itself
                // is killed outright, the kernel kills the child.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
                // mcpx died before the prctl: nobody would ever end this child.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "command not found (is it installed and on PATH?)".to_string(),
                _ => e.to_string(),
            };
            let who = spec.user.as_ref().map(|a| format!(" as user {}", a.name)).unwrap_or_default();
            format!("cannot start server `{name}` (`{}`){who}: {why}", spec.command)
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
        live_groups().get_or_insert_with(HashSet::new).insert(pid);
        // Why mcpx killed it, if it did (for the requests that fail).
        let killed: Arc<Mutex<Option<String>>> = Arc::default();

        let stuck = Stuck { name: name.clone(), pid, timeout_ms: write_timeout_ms.clone(), killed: killed.clone() };
        let writer_task = tokio::spawn(write_stdin(stdin, write_rx, stuck));
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
            let mut status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            // Whatever the leader left behind in its group goes with it.
            kill_group(pid, libc::SIGKILL);
            if let Some(g) = live_groups().as_mut() {
                g.remove(&pid);
            }
            if let Some(why) = killed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                status = format!("{status}; mcpx killed it because {why}");
            }
            // Answers written just before the exit are still in the pipe.
            let _ = tokio::time::timeout(Duration::from_secs(2), stdout_done).await;
            sup_pending.close(&format!("server `{sup_name}` exited ({status}) before answering"));
            eprintln!("mcpx bridge: server `{sup_name}` (pid {pid}) exited: {status}");
            let _ = exit_tx.send(Some(Exit { at: Instant::now(), status }));
        });
        eprintln!("mcpx bridge: started server `{name}` (pid {pid}): {} {}", spec.command, spec.args.join(" "));
        Ok(Arc::new(Child {
            name,
            pid,
            started: Instant::now(),
            writer,
            writer_task: Mutex::new(Some(writer_task)),
            write_timeout_ms,
            pending,
            exit,
        }))
    }

    pub fn exited(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Sends a request (with a child-side id swapped in) and waits for the
    /// answer. Its progress and log notifications go to `sink`, if given.
    pub async fn call(&self, mut message: Value, timeout: Duration, sink: Option<Sink>) -> Result<Reply, CallError> {
        let (id, rx) = self.pending.register().map_err(CallError::Gone)?;
        let registration = Registration { pending: &self.pending, id };
        if let Some(obj) = message.as_object_mut() {
            obj.insert("id".into(), json!(id));
        }
        // Clients choose their progress tokens (and all like `1`): the child
        // sees one only this request has, whether or not it is relayed.
        let token = message.pointer_mut("/params/_meta").and_then(Value::as_object_mut).and_then(|meta| {
            let client = meta.get("progressToken")?.clone();
            meta.insert("progressToken".into(), json!(ids::progress_token(id)));
            Some(client)
        });
        if let Some(sink) = sink {
            self.pending.route(id, sink, token);
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

    fn write_timeout(&self) -> Duration {
        write_deadline(&self.write_timeout_ms)
    }

    /// Sends a notification (no answer expected). Bounded: a full queue in
    /// front of a child that stopped reading fails instead of waiting.
    pub async fn notify(&self, message: &Value) -> Result<(), String> {
        let send = self.writer.send(Write::Line(to_line(message)));
        match tokio::time::timeout(self.write_timeout(), send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(format!("server `{}` has closed its input", self.name)),
            Err(_) => Err(format!("server `{}` is not reading its input", self.name)),
        }
    }

    /// Closes stdin after what is queued; a writer stuck on a child that no
    /// longer reads is cut off (dropping stdin closes it all the same).
    async fn close_stdin(&self) {
        let _ = self.writer.try_send(Write::Close);
        let task = self.writer_task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut task) = task {
            if tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    async fn wait_exit(&self) {
        let mut rx = self.exit.clone();
        let _ = rx.wait_for(|e| e.is_some()).await;
    }

    /// Retires the child: lets in-flight requests finish (up to `drain`),
    /// closes stdin, and kills the process group if it lingers past `grace`.
    /// Bounded whatever the child does: at most `drain` + `grace` + 2 s.
    pub async fn stop(&self, drain: Duration, grace: Duration) {
        if self.exited().is_none() {
            let _ = tokio::time::timeout(drain, self.pending.drained()).await;
            let deadline = tokio::time::Instant::now() + grace;
            self.close_stdin().await;
            if tokio::time::timeout_at(deadline, self.wait_exit()).await.is_err() {
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

/// The deadline of one write: the server's `request_timeout`, at least a
/// second (a tiny timeout must not make every busy moment look like a hang).
fn write_deadline(timeout_ms: &AtomicU64) -> Duration {
    Duration::from_millis(timeout_ms.load(Ordering::Relaxed)).max(Duration::from_secs(1))
}

/// What the writer needs to deal with a child that stopped reading.
struct Stuck {
    name: Arc<str>,
    pid: u32,
    timeout_ms: Arc<AtomicU64>,
    killed: Arc<Mutex<Option<String>>>,
}

/// Owns stdin; writes whole messages only (a request abandoned by its client
/// can never leave half a line behind), coalescing queued ones. A write that
/// does not complete within the server's `request_timeout` means the child
/// stopped reading: its process group is killed (the supervisor then fails
/// what is in flight, and the next request starts a new child).
async fn write_stdin(mut stdin: ChildStdin, mut rx: mpsc::Receiver<Write>, stuck: Stuck) {
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
        let limit = write_deadline(&stuck.timeout_ms);
        match tokio::time::timeout(limit, stdin.write_all(&buf)).await {
            Ok(Ok(())) if !close => {}
            Ok(_) => break,
            Err(_) => {
                let why =
                    format!("it stopped reading its input (a write did not complete within {} ms)", limit.as_millis());
                eprintln!("mcpx bridge: server `{}` (pid {}): {why}; killing its process group", stuck.name, stuck.pid);
                *stuck.killed.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                kill_group(stuck.pid, libc::SIGKILL);
                break;
            }
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
        Frame::Line(l) => eprintln!("[stdio:{name}] {}", for_log(l.trim_ascii_end(), sanitize::STDERR_CHARS)),
        Frame::TooLong(n) => eprintln!("[stdio:{name}] (a {n}-byte stderr line, not shown)"),
    })
    .await;
}

/// Turns the child's stdout into deliveries to waiting requests.
struct Reader {
    name: Arc<str>,
    pending: Arc<Pending>,
    writer: mpsc::Sender<Write>,
    /// Dropped messages by kind, so a chatty server logs O(log n) lines;
    /// at most MAX_DROPPED_KINDS kinds (then one shared counter).
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
            Ok(p) => self.message(trimmed, p),
            Err(_) => {
                eprintln!(
                    "mcpx bridge: server `{}` wrote non-JSON (or a non-message) to stdout (skipped, {} bytes): {}",
                    self.name,
                    trimmed.len(),
                    for_log(&trimmed[..trimmed.len().min(200)], 200)
                );
            }
        }
    }

    fn message(&self, line: &[u8], p: Peek<'_>) {
        if let Some(m) = p.method {
            // Escaped and cut: it goes to the log and back to the child.
            let raw = serde_json::from_str::<String>(m.get()).unwrap_or_else(|_| m.get().to_string());
            let method = for_log(raw.as_bytes(), sanitize::NAME_CHARS);
            drop(raw);
            match p.id {
                Some(id) => {
                    // Nobody to relay it to; answer so the server does not wait forever.
                    self.dropped("request", &method);
                    let error = json!({"code": -32601,
                        "message": format!("{method}: the mcpx bridge does not relay server-initiated requests")});
                    let reply = format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{error}}}\n", id.get());
                    let _ = self.writer.try_send(Write::Line(reply.into_bytes()));
                }
                None => {
                    if !self.relay(&method, line) {
                        self.dropped("notification", &method)
                    }
                }
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
                        for_log(id.get().as_bytes(), sanitize::NAME_CHARS)
                    );
                }
            }
            _ => {
                eprintln!("mcpx bridge: server `{}` wrote an object that is not a JSON-RPC message; skipped", self.name)
            }
        }
    }

    /// Progress goes to the request its token names, a log message to the
    /// only request in flight (stdio says nothing else about whose it is);
    /// false when it goes nowhere. Never waits: a client that does not read
    /// its stream loses notifications, the child is not held up.
    fn relay(&self, method: &str, line: &[u8]) -> bool {
        let (sink, message) = match method {
            "notifications/progress" => {
                let Ok(mut n) = serde_json::from_slice::<Value>(line) else { return false };
                let Some((sink, client_token)) =
                    n.pointer("/params/progressToken").and_then(|t| self.pending.progress_sink(t))
                else {
                    return false;
                };
                if let Some(params) = n.get_mut("params").and_then(Value::as_object_mut) {
                    params.insert("progressToken".into(), client_token);
                }
                (sink, n)
            }
            "notifications/message" => {
                let Some(sink) = self.pending.sole_sink() else { return false };
                let Ok(n) = serde_json::from_slice::<Value>(line) else { return false };
                (sink, n)
            }
            _ => return false,
        };
        sink.tx.try_send(message.to_string()).is_ok()
    }

    fn dropped(&self, kind: &str, method: &str) {
        let (n, method) = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let mut key = format!("{kind} {method}");
            let mut shown = method;
            if !seen.contains_key(&key) && seen.len() >= MAX_DROPPED_KINDS {
                key = format!("{kind} (other methods)");
                shown = "(one of many other methods)";
            }
            let n = seen.entry(key).or_insert(0);
            *n += 1;
            (*n, shown)
        };
        if n.is_power_of_two() {
            eprintln!(
                "mcpx bridge: server `{}` sent {kind} {method}; not relayed (nobody to relay it to; {n} so far)",
                self.name
            );
        }
    }
}
