//! JSON-RPC id rewriting: every request forwarded to a child gets a fresh
//! numeric id from one counter per child, so requests from many clients (who
//! all like to use id 1) never collide and any number can be in flight at
//! once. The child's answer is matched back by that id and the client's own
//! id is put back.
//!
//! The same id names the request's progress token at the child
//! (`mcpx-progress-{id}`), so progress notifications find their way back to
//! the client that asked, whatever token it chose (see [`Sink`]).

use super::reply::Reply;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};

/// The prefix of the progress tokens the bridge gives a child.
const PROGRESS_PREFIX: &str = "mcpx-progress-";

/// Where one request's notifications go: its client's event stream. Each
/// item is one JSON-RPC notification, serialised.
#[derive(Clone, Debug)]
pub struct Sink {
    pub tx: mpsc::Sender<String>,
}

/// The progress token a child gets for the request with child-side id `id`.
pub fn progress_token(id: u64) -> String {
    format!("{PROGRESS_PREFIX}{id}")
}

/// The request a child's progress token names, if it is one of the bridge's.
pub fn progress_id(token: &Value) -> Option<u64> {
    token.as_str()?.strip_prefix(PROGRESS_PREFIX)?.parse().ok()
}

/// A request's relay: its sink and the progress token its client chose.
struct Route {
    sink: Sink,
    client_token: Option<Value>,
}

/// What a waiting request gets.
#[derive(Debug)]
pub enum Outcome {
    /// The child's answer (the caller puts the client's id on it).
    Reply(Reply),
    /// The child went away before answering; the reason says how.
    Gone(String),
}

#[derive(Default)]
struct Inner {
    next: u64,
    waiting: HashMap<u64, oneshot::Sender<Outcome>>,
    /// The in-flight requests whose client takes notifications.
    routes: HashMap<u64, Route>,
    /// Set once the child has exited: new requests are refused with this.
    closed: Option<String>,
}

/// The requests in flight to one child.
#[derive(Default)]
pub struct Pending {
    inner: Mutex<Inner>,
    /// Signalled whenever the last in-flight request finishes (for draining).
    idle: Notify,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every operation is a single insert/remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves a child-side id and the channel its answer will arrive on.
    pub fn register(&self) -> Result<(u64, oneshot::Receiver<Outcome>), String> {
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Err(reason.clone());
        }
        inner.next += 1;
        let id = inner.next;
        let (tx, rx) = oneshot::channel();
        inner.waiting.insert(id, tx);
        Ok((id, rx))
    }

    /// Sends request `id`'s notifications to `sink`; `client_token`: the
    /// progress token its client chose (the child sees the bridge's).
    pub fn route(&self, id: u64, sink: Sink, client_token: Option<Value>) {
        let mut inner = self.lock();
        if inner.waiting.contains_key(&id) {
            inner.routes.insert(id, Route { sink, client_token });
        }
    }

    /// For a progress notification: the sink of the request its token names,
    /// and the client's own token to put back. None when that request is
    /// over, never asked for progress, or its client takes no notifications.
    pub fn progress_sink(&self, token: &Value) -> Option<(Sink, Value)> {
        let id = progress_id(token)?;
        let inner = self.lock();
        let route = inner.routes.get(&id)?;
        Some((route.sink.clone(), route.client_token.clone()?))
    }

    /// For a log message, which names no request on stdio: the sink of the
    /// only request in flight. With two or more in flight nobody can tell
    /// whose it is, so it goes to nobody.
    pub fn sole_sink(&self) -> Option<Sink> {
        let inner = self.lock();
        if inner.waiting.len() != 1 {
            return None;
        }
        inner.routes.values().next().map(|r| r.sink.clone())
    }

    /// Delivers the child's response; false when nobody waits for `id`
    /// (timed out, cancelled, or an id the bridge never sent).
    pub fn resolve(&self, id: u64, reply: Reply) -> bool {
        let tx = {
            let mut inner = self.lock();
            let tx = inner.waiting.remove(&id);
            inner.routes.remove(&id);
            if inner.waiting.is_empty() {
                self.idle.notify_waiters();
            }
            tx
        };
        tx.is_some_and(|tx| tx.send(Outcome::Reply(reply)).is_ok())
    }

    /// Forgets a request (timeout, or the HTTP client went away).
    pub fn cancel(&self, id: u64) {
        let mut inner = self.lock();
        inner.waiting.remove(&id);
        inner.routes.remove(&id);
        if inner.waiting.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// The child is gone: fail everything in flight and refuse new requests.
    pub fn close(&self, reason: &str) {
        let waiting: Vec<_> = {
            let mut inner = self.lock();
            inner.closed = Some(reason.to_string());
            inner.routes.clear();
            inner.waiting.drain().map(|(_, tx)| tx).collect()
        };
        for tx in waiting {
            let _ = tx.send(Outcome::Gone(reason.to_string()));
        }
        self.idle.notify_waiters();
    }

    pub fn in_flight(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Waits until nothing is in flight.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Removes the registration when the request ends early (client gone or
/// timeout), so the map never keeps abandoned entries.
pub struct Registration<'a> {
    pub pending: &'a Pending,
    pub id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.pending.cancel(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashSet;

    fn answer(n: u64) -> Reply {
        Reply::result(&json!(n))
    }
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_requests_get_distinct_ids_and_their_own_answers() {
        let p = Arc::new(Pending::default());
        let mut tasks = Vec::new();
        for client in 0..200u64 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let (id, rx) = p.register().unwrap();
                (client, id, rx)
            }));
        }
        let mut regs = Vec::new();
        for t in tasks {
            regs.push(t.await.unwrap());
        }
        let ids: HashSet<u64> = regs.iter().map(|r| r.1).collect();
        assert_eq!(ids.len(), 200);
        // Answer in reverse order; each waiter gets its own.
        for (client, id, _) in regs.iter().rev() {
            assert!(p.resolve(*id, answer(*client)));
        }
        for (client, id, rx) in regs {
            match rx.await.unwrap() {
                Outcome::Reply(r) => assert_eq!(r.result_value(), Some(json!(client))),
                Outcome::Gone(r) => panic!("{id}: {r}"),
            }
        }
        assert_eq!(p.in_flight(), 0);
    }

    #[tokio::test]
    async fn unknown_or_foreign_ids_are_ignored() {
        let p = Pending::default();
        let (id, _rx) = p.register().unwrap();
        assert!(!p.resolve(id + 1, answer(0)));
        assert!(!p.resolve(0, answer(0)));
        assert_eq!(p.in_flight(), 1);
    }

    #[tokio::test]
    async fn close_fails_in_flight_and_refuses_new() {
        let p = Pending::default();
        let (_, rx1) = p.register().unwrap();
        let (_, rx2) = p.register().unwrap();
        p.close("child exited (signal 9)");
        for rx in [rx1, rx2] {
            assert!(matches!(rx.await.unwrap(), Outcome::Gone(r) if r.contains("signal 9")));
        }
        assert!(p.register().is_err());
        p.drained().await;
    }

    #[tokio::test]
    async fn progress_goes_to_the_request_its_token_names_and_logs_only_when_unambiguous() {
        let p = Pending::default();
        let (a, _ra) = p.register().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        p.route(a, Sink { tx }, Some(serde_json::json!("client-token")));
        let (sink, token) = p.progress_sink(&Value::from(progress_token(a))).unwrap();
        assert_eq!(token, "client-token");
        sink.tx.try_send("n".into()).unwrap();
        assert_eq!(rx.recv().await.unwrap(), "n");
        assert!(p.progress_sink(&Value::from(progress_token(a + 1))).is_none());
        assert!(p.progress_sink(&Value::from(a)).is_none(), "a client's own token is not the bridge's");
        assert!(p.sole_sink().is_some());
        // A second request in flight: a log message could be either one's.
        let (b, _rb) = p.register().unwrap();
        assert!(p.sole_sink().is_none());
        p.cancel(b);
        assert!(p.sole_sink().is_some());
        assert!(p.resolve(a, Reply::result(&serde_json::json!({}))));
        assert!(p.progress_sink(&Value::from(progress_token(a))).is_none(), "over: nothing routed");
        assert!(p.sole_sink().is_none());
    }

    #[tokio::test]
    async fn dropped_registration_is_forgotten() {
        let p = Pending::default();
        let (id, _rx) = p.register().unwrap();
        drop(Registration { pending: &p, id });
        assert_eq!(p.in_flight(), 0);
        assert!(!p.resolve(id, answer(0)));
    }
}
