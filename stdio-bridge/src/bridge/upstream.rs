//! One configured stdio server: the shared child (spawned lazily, respawned
//! with bounded exponential backoff after a crash), its handshake cache and
//! its HTTP sessions.

use super::cache::{initialized, Cache};
use super::child::{CallError, Child};
use super::isolation::{self, Plan, TaskOwners};
use super::reply::Reply;
use super::spec::ServerSpec;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child that lived this long before exiting was not crash-looping: its
/// exit counts as a first failure again.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Backoff after the second failure in a row, doubling up to the cap.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// From this many failures in a row the server is called crash-looping.
const CRASH_LOOP: u32 = 3;
/// Sessions remembered per server (oldest forgotten first).
const MAX_SESSIONS: usize = 100_000;
/// How long a retired child gets to exit after its stdin is closed.
pub const EXIT_GRACE: Duration = Duration::from_secs(3);

/// Why a request got no answer from the server.
#[derive(Debug)]
pub enum Failure {
    /// No child to send it to (cannot start, backing off, or retired).
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    /// The child exited while the request was in flight.
    Crashed(String),
    Timeout(Duration),
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Gone(reason) => Failure::Crashed(reason),
            CallError::Timeout(d) => Failure::Timeout(d),
        }
    }
}

/// Zero for the first failure (a one-off crash restarts at once), then
/// 250ms, 500ms, 1s, ... up to 30s.
pub fn backoff(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let doublings = (failures - 2).min(16);
    BACKOFF_START.saturating_mul(1 << doublings).min(BACKOFF_CAP)
}

#[derive(Default)]
struct State {
    child: Option<Arc<Child>>,
    /// Failed starts or early exits in a row.
    failures: u32,
    not_before: Option<Instant>,
    last_problem: Option<String>,
}

#[derive(Default)]
struct Sessions {
    /// Session id -> the identity that opened it.
    known: HashMap<String, String>,
    order: VecDeque<String>,
}

pub struct Upstream {
    pub spec: ServerSpec,
    /// `request_timeout` in ms; shared with the child (the deadline of each write).
    timeout_ms: Arc<AtomicU64>,
    state: tokio::sync::Mutex<State>,
    cache: Mutex<Cache>,
    /// Serialises the first handshake so concurrent first clients share it.
    init_lock: tokio::sync::Mutex<()>,
    sessions: Mutex<Sessions>,
    /// Whose task each task id is (see `isolation`).
    tasks: Mutex<TaskOwners>,
    retired: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Upstream {
    pub fn new(spec: ServerSpec) -> Self {
        Self {
            timeout_ms: Arc::new(AtomicU64::new(spec.request_timeout.as_millis() as u64)),
            spec,
            state: Default::default(),
            cache: Default::default(),
            init_lock: Default::default(),
            sessions: Default::default(),
            tasks: Default::default(),
            retired: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// A reload may change the timeout without restarting the child.
    pub fn set_timeout(&self, t: Duration) {
        self.timeout_ms.store(t.as_millis() as u64, Ordering::Relaxed);
    }

    /// The running child, starting one if needed. Concurrent callers wait for
    /// the same start; a crash-looping server fails fast with a retry time.
    async fn child(&self) -> Result<Arc<Child>, Failure> {
        let mut st = self.state.lock().await;
        if self.retired.load(Ordering::Acquire) {
            return Err(Failure::Unavailable {
                message: format!("server `{}` was removed or replaced by a config reload", self.name()),
                retry_after: Duration::from_secs(1),
            });
        }
        if let Some(c) = &st.child {
            match c.exited() {
                None => return Ok(c.clone()),
                Some(exit) => {
                    let lived = exit.at.saturating_duration_since(c.started);
                    st.failures = if lived >= STABLE_AFTER { 1 } else { st.failures + 1 };
                    st.not_before = Some(exit.at + backoff(st.failures));
                    st.last_problem = Some(format!("its last run exited ({})", exit.status));
                    st.child = None;
                }
            }
        }
        let now = Instant::now();
        if let Some(not_before) = st.not_before.filter(|t| *t > now) {
            let problem = st.last_problem.as_deref().unwrap_or("it failed");
            let looping = if st.failures >= CRASH_LOOP { " is crash-looping:" } else { " is restarting:" };
            return Err(Failure::Unavailable {
                message: format!(
                    "server `{}`{looping} {problem}; {} failures in a row, next start in {} ms",
                    self.name(),
                    st.failures,
                    (not_before - now).as_millis()
                ),
                retry_after: not_before - now,
            });
        }
        let child = match Child::spawn(self.name(), &self.spec.launch, self.timeout_ms.clone()) {
            Ok(c) => c,
            Err(e) => return Err(self.failed_start(&mut st, e)),
        };
        // A respawn: bring the new child to the state existing sessions expect.
        let replay = lock(&self.cache).replay_request();
        if let Some(request) = replay {
            match child.call(request, self.timeout()).await {
                Ok(reply) if reply.is_result() => {
                    lock(&self.cache).refresh_initialize(&reply);
                    let _ = child.notify(&initialized()).await;
                    eprintln!("mcpx bridge: server `{}`: handshake replayed to the new child", self.name());
                }
                outcome => {
                    let why = match outcome {
                        Ok(reply) => format!("it answered the replayed initialize with {}", reply.message(&json!(0))),
                        Err(CallError::Gone(r)) => r,
                        Err(CallError::Timeout(t)) => format!("no answer to the replayed initialize within {t:?}"),
                    };
                    let c = child.clone();
                    tokio::spawn(async move { c.stop(Duration::ZERO, Duration::from_secs(1)).await });
                    return Err(self.failed_start(&mut st, format!("handshake replay failed: {why}")));
                }
            }
        }
        st.child = Some(child.clone());
        Ok(child)
    }

    fn failed_start(&self, st: &mut State, problem: String) -> Failure {
        st.failures += 1;
        let wait = backoff(st.failures.max(2));
        st.not_before = Some(Instant::now() + wait);
        eprintln!("mcpx bridge: {problem}");
        st.last_problem = Some(problem.clone());
        Failure::Unavailable { message: problem, retry_after: wait }
    }

    /// A JSON-RPC request (it has an id) from `identity` ("" when auth is
    /// off). Returns the answer; the caller puts the client's id on it.
    pub async fn request(&self, message: Value, identity: &str) -> Result<Reply, Failure> {
        let plan = isolation::plan(&message, identity, &lock(&self.tasks), self.name());
        match plan {
            Plan::Pass => self.forward(message).await,
            Plan::Answer(reply) => Ok(reply),
            plan => {
                let reply = self.call(message).await?;
                Ok(isolation::after(&plan, reply, identity, &mut lock(&self.tasks)))
            }
        }
    }

    async fn forward(&self, message: Value) -> Result<Reply, Failure> {
        match message.get("method").and_then(Value::as_str) {
            Some("initialize") => self.initialize(message).await,
            Some("server/discover") => {
                if let Some(r) = lock(&self.cache).discover_reply() {
                    return Ok(r);
                }
                let reply = self.call(message).await?;
                lock(&self.cache).store_discover(&reply);
                Ok(reply)
            }
            _ => self.call(message).await,
        }
    }

    async fn call(&self, message: Value) -> Result<Reply, Failure> {
        let child = self.child().await?;
        Ok(child.call(message, self.timeout()).await?)
    }

    async fn initialize(&self, message: Value) -> Result<Reply, Failure> {
        if let Some(r) = lock(&self.cache).initialize_reply() {
            return Ok(r);
        }
        let _first = self.init_lock.lock().await;
        if let Some(r) = lock(&self.cache).initialize_reply() {
            return Ok(r);
        }
        let params = message.get("params").cloned().unwrap_or_else(|| json!({}));
        let child = self.child().await?;
        let reply = child.call(message, self.timeout()).await?;
        if lock(&self.cache).store_initialize(params, &reply) {
            // The bridge owns the child's session: it completes the handshake
            // itself; clients' own `initialized` notifications are absorbed.
            let _ = child.notify(&initialized()).await;
        }
        Ok(reply)
    }

    /// A JSON-RPC notification (no id): forwarded, except those that belong
    /// to a client's own session with the bridge.
    pub async fn notification(&self, message: Value) -> Result<(), Failure> {
        match message.get("method").and_then(Value::as_str) {
            // The bridge sent its own when it shook hands with the child.
            Some("notifications/initialized") => Ok(()),
            // Its requestId is the client's id, which means nothing to the
            // child; the bridge cancels timed-out requests itself.
            Some("notifications/cancelled") => Ok(()),
            _ => {
                let child = self.child().await?;
                child.notify(&message).await.map_err(Failure::Crashed)
            }
        }
    }

    /// A new session of `identity`; only the same identity may use or end it.
    pub fn new_session(&self, identity: &str) -> String {
        let id = random_hex(16);
        let mut s = lock(&self.sessions);
        if s.order.len() >= MAX_SESSIONS {
            if let Some(old) = s.order.pop_front() {
                s.known.remove(&old);
            }
        }
        s.known.insert(id.clone(), identity.to_string());
        s.order.push_back(id.clone());
        id
    }

    pub fn has_session(&self, id: &str, identity: &str) -> bool {
        lock(&self.sessions).known.get(id).is_some_and(|owner| owner == identity)
    }

    pub fn end_session(&self, id: &str, identity: &str) -> bool {
        let mut s = lock(&self.sessions);
        if s.known.get(id).is_none_or(|owner| owner != identity) {
            return false;
        }
        s.known.remove(id);
        s.order.retain(|x| x != id);
        true
    }

    /// Pid of the running child, if one is running.
    pub async fn pid(&self) -> Option<u32> {
        let st = self.state.lock().await;
        st.child.as_ref().filter(|c| c.exited().is_none()).map(|c| c.pid)
    }

    /// Stops taking requests and stops the child: in-flight requests get up
    /// to `drain` to finish, then stdin is closed and the group killed if it
    /// lingers.
    pub async fn retire(&self, drain: Duration) {
        self.retired.store(true, Ordering::Release);
        let child = self.state.lock().await.child.take();
        if let Some(c) = child {
            c.stop(drain, EXIT_GRACE).await;
        }
    }
}

/// Unpredictable hex from the kernel's CSPRNG (session ids must not be guessable).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        // SAFETY: writes at most `bytes - filled` bytes into `buf` from `filled`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), bytes - filled, 0) };
        if n <= 0 {
            // getrandom(2) only fails on ancient kernels; fall back to /dev/urandom.
            use std::io::Read;
            if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
                if f.read_exact(&mut buf[filled..]).is_ok() {
                    break;
                }
            }
            continue;
        }
        filled += n as usize;
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_once_then_exponential_and_bounded() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(250));
        assert_eq!(backoff(3), Duration::from_millis(500));
        assert_eq!(backoff(5), Duration::from_secs(2));
        assert_eq!(backoff(12), BACKOFF_CAP);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[test]
    fn session_ids_are_random_and_forgettable() {
        let spec = ServerSpec {
            name: "t".into(),
            launch: super::super::spec::Spec {
                command: "true".into(),
                args: vec![],
                env: Default::default(),
                workdir: None,
                user: None,
            },
            request_timeout: Duration::from_secs(1),
        };
        let u = Upstream::new(spec);
        let a = u.new_session("alice");
        let b = u.new_session("alice");
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(u.has_session(&a, "alice"));
        // Another identity can neither use nor end it.
        assert!(!u.has_session(&a, "bob") && !u.end_session(&a, "bob") && !u.has_session(&a, ""));
        assert!(u.end_session(&a, "alice"));
        assert!(!u.has_session(&a, "alice") && !u.end_session(&a, "alice"));
        assert!(u.has_session(&b, "alice"));
    }
}
