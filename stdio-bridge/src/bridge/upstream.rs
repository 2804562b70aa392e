//! One configured stdio server: the shared child (spawned lazily, respawned
//! with bounded exponential backoff after a crash, opened by the bridge in
//! the era that serves every client: see `era`) and its HTTP sessions.

use super::child::{CallError, Child};
use super::era::{self, ChildEra, RequestEra};
use super::ids::Sink;
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

/// A running child and what it said about itself when the bridge opened it:
/// both go when it exits, so a new child is always asked again.
pub struct Instance {
    pub child: Arc<Child>,
    pub era: ChildEra,
}

#[derive(Default)]
struct State {
    child: Option<Arc<Instance>>,
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
    async fn instance(&self) -> Result<Arc<Instance>, Failure> {
        let mut st = self.state.lock().await;
        if self.retired.load(Ordering::Acquire) {
            return Err(Failure::Unavailable {
                message: format!("server `{}` was removed or replaced by a config reload", self.name()),
                retry_after: Duration::from_secs(1),
            });
        }
        if let Some(i) = &st.child {
            let c = &i.child;
            match c.exited() {
                None => return Ok(i.clone()),
                Some(exit) => {
                    let lived = exit.at.saturating_duration_since(c.started);
                    st.failures = if lived >= STABLE_AFTER { 1 } else { st.failures + 1 };
                    st.not_before = Some(exit.at + backoff(st.failures));
                    st.last_problem = Some(format!("its last run exited ({})", exit.status));
                    // What the old child said about itself goes with it.
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
        match self.open(&child).await {
            Ok(era) => {
                let instance = Arc::new(Instance { child, era });
                st.child = Some(instance.clone());
                Ok(instance)
            }
            Err(why) => {
                let c = child.clone();
                tokio::spawn(async move { c.stop(Duration::ZERO, Duration::from_secs(1)).await });
                Err(self.failed_start(&mut st, format!("server `{}`: {why}", self.name())))
            }
        }
    }

    /// Opens the bridge's one connection to a new child (see `era`): the
    /// handshake era when the child accepts the bridge's `initialize`, the
    /// 2026-07-28 era when it refuses it naming only 2026-era versions.
    async fn open(&self, child: &Child) -> Result<ChildEra, String> {
        let asked = |e: CallError, what: &str| match e {
            CallError::Gone(r) => r,
            CallError::Timeout(t) => format!("no answer to the bridge's {what} within {t:?}"),
        };
        let init =
            child.call(era::bridge_initialize(), self.timeout(), None).await.map_err(|e| asked(e, "initialize"))?;
        if init.is_result() {
            child.notify(&initialized()).await?;
            eprintln!("mcpx bridge: server `{}` (pid {}): opened in the handshake era", self.name(), child.pid);
            return Ok(ChildEra::Handshake { initialize: init });
        }
        let Some(version) = era::modern_only(&init) else {
            return Err(format!("it answered the bridge's initialize with {}", init.message(&json!(0))));
        };
        let discover = child
            .call(era::bridge_discover(&version), self.timeout(), None)
            .await
            .map_err(|e| asked(e, "server/discover"))?;
        if !discover.is_result() {
            return Err(format!(
                "it speaks only {version} but answered server/discover with {}",
                discover.message(&json!(0))
            ));
        }
        eprintln!("mcpx bridge: server `{}` (pid {}): opened in the {version} era", self.name(), child.pid);
        Ok(ChildEra::Modern { discover, version })
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
    /// `sink`: where the request's progress and log notifications go.
    pub async fn request(&self, message: Value, identity: &str, sink: Option<Sink>) -> Result<Reply, Failure> {
        let plan = isolation::plan(&message, identity, &lock(&self.tasks), self.name());
        if let Plan::Answer(reply) = plan {
            return Ok(reply);
        }
        let reply = self.forward(message, sink).await?;
        Ok(isolation::after(&plan, reply, identity, &mut lock(&self.tasks)))
    }

    /// Serves the request in its own era on the child's one connection:
    /// answered from what this child said about itself, or translated.
    async fn forward(&self, mut message: Value, sink: Option<Sink>) -> Result<Reply, Failure> {
        let instance = self.instance().await?;
        let method = message.get("method").and_then(Value::as_str).unwrap_or_default().to_string();
        let method = method.as_str();
        match (&instance.era, era::request_era(&message)) {
            (ChildEra::Handshake { initialize }, RequestEra::Handshake) if method == "initialize" => {
                return Ok(initialize.clone());
            }
            (ChildEra::Handshake { .. }, RequestEra::Handshake) => {}
            (ChildEra::Handshake { .. }, RequestEra::Modern(v))
                if !v.as_deref().is_some_and(|v| era::MODERN_VERSIONS.contains(&v)) =>
            {
                return Ok(era::unsupported_version(v.as_deref()));
            }
            (ChildEra::Handshake { initialize }, RequestEra::Modern(_)) if method == "server/discover" => {
                return Ok(era::discover_from_initialize(initialize));
            }
            (ChildEra::Handshake { .. }, RequestEra::Modern(_)) => {
                era::strip_envelope(&mut message);
                let reply = instance.child.call(message, self.timeout(), sink).await?;
                return Ok(era::to_modern_result(method, reply));
            }
            (ChildEra::Modern { discover, .. }, RequestEra::Handshake) if method == "initialize" => {
                let requested = message.pointer("/params/protocolVersion").and_then(Value::as_str);
                return Ok(era::initialize_from_discover(discover, requested, self.name()));
            }
            (ChildEra::Modern { version, .. }, RequestEra::Handshake) => era::add_envelope(&mut message, version),
            // A 2026-only child judges 2026 requests itself (versions included).
            (ChildEra::Modern { .. }, RequestEra::Modern(_)) => {}
        }
        Ok(instance.child.call(message, self.timeout(), sink).await?)
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
                let instance = self.instance().await?;
                instance.child.notify(&message).await.map_err(Failure::Crashed)
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
        st.child.as_ref().map(|i| &i.child).filter(|c| c.exited().is_none()).map(|c| c.pid)
    }

    /// Stops taking requests and stops the child: in-flight requests get up
    /// to `drain` to finish, then stdin is closed and the group killed if it
    /// lingers.
    pub async fn retire(&self, drain: Duration) {
        self.retired.store(true, Ordering::Release);
        let instance = self.state.lock().await.child.take();
        if let Some(i) = instance {
            i.child.stop(drain, EXIT_GRACE).await;
        }
    }
}

/// The notification that completes the bridge's handshake with a child.
fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
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
