//! The test/benchmark control surface: everything under `/_`.
//!
//! * [`Mode`] holds runtime switches (`fail`, `rug_pull`, `reorder_keys`,
//!   `sse_lists`, `delay_ms`) as atomics, so the hot path reads them without
//!   locking.
//! * [`Recorder`] keeps the last [`RECORD_CAP`] MCP requests in a ring
//!   buffer behind a mutex; recording is a few small allocations and a short
//!   lock, and can be disabled with `--no-record`.
//! * [`handle`] serves `/_health`, `/_received`, `/_reset` and `/_mode`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde::Serialize;
use serde_json::{json, Value};

use crate::server::{json_response, text_response, Resp};

/// Maximum number of recorded requests; the oldest entry is dropped first.
pub const RECORD_CAP: usize = 10_000;

/// Runtime switches set with `POST /_mode`.
#[derive(Default)]
pub struct Mode {
    fail: AtomicBool,
    rug_pull: AtomicBool,
    reorder_keys: AtomicBool,
    sse_lists: AtomicBool,
    delay_ms: AtomicU64,
}

/// A consistent-enough copy of [`Mode`] for one request (and for `GET /_mode`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct ModeSnapshot {
    /// Every MCP request answers HTTP 500 with a JSON-RPC error.
    pub fail: bool,
    /// `tools/list` returns `echo` with a changed description.
    pub rug_pull: bool,
    /// `tools/list` writes tool objects with other key order and whitespace.
    pub reorder_keys: bool,
    /// `tools/list` is answered as `text/event-stream`.
    pub sse_lists: bool,
    /// Every MCP response is delayed this many milliseconds.
    pub delay_ms: u64,
}

impl Mode {
    /// Reads all switches.
    pub fn snapshot(&self) -> ModeSnapshot {
        ModeSnapshot {
            fail: self.fail.load(Relaxed),
            rug_pull: self.rug_pull.load(Relaxed),
            reorder_keys: self.reorder_keys.load(Relaxed),
            sse_lists: self.sse_lists.load(Relaxed),
            delay_ms: self.delay_ms.load(Relaxed),
        }
    }

    /// Merges a JSON object of switches. Unknown keys or wrong types are
    /// rejected as a whole (nothing is applied) so typos in tests show up.
    /// `{"reset": true}` restores the defaults before the other keys apply.
    pub fn merge(&self, patch: &Value) -> Result<(), String> {
        let obj = patch.as_object().ok_or_else(|| "mode must be a JSON object".to_owned())?;
        // Validate everything first, then apply.
        let mut bools: Vec<(&AtomicBool, bool)> = Vec::new();
        let mut delay = None;
        let mut reset = false;
        for (key, value) in obj {
            let flag = match key.as_str() {
                "fail" => &self.fail,
                "rug_pull" => &self.rug_pull,
                "reorder_keys" => &self.reorder_keys,
                "sse_lists" => &self.sse_lists,
                "delay_ms" => {
                    delay = Some(value.as_u64().ok_or_else(|| "delay_ms must be a non-negative integer".to_owned())?);
                    continue;
                }
                "reset" => {
                    reset = value.as_bool().ok_or_else(|| "reset must be a boolean".to_owned())?;
                    continue;
                }
                other => return Err(format!("unknown mode key: {other}")),
            };
            let on = value.as_bool().ok_or_else(|| format!("{key} must be a boolean"))?;
            bools.push((flag, on));
        }
        if reset {
            for flag in [&self.fail, &self.rug_pull, &self.reorder_keys, &self.sse_lists] {
                flag.store(false, Relaxed);
            }
            self.delay_ms.store(0, Relaxed);
        }
        for (flag, on) in bools {
            flag.store(on, Relaxed);
        }
        if let Some(ms) = delay {
            self.delay_ms.store(ms, Relaxed);
        }
        Ok(())
    }
}

/// One recorded request, as `GET /_received` shows it.
#[derive(Debug, Serialize)]
pub struct Recorded {
    /// Milliseconds since the Unix epoch when the request was recorded.
    pub ts_ms: u64,
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without the query string, e.g. `/mcp`.
    pub path: String,
    /// Query string (without `?`), or null.
    pub query: Option<String>,
    /// All headers, lowercased name → value (repeated headers joined by ", ").
    pub headers: serde_json::Map<String, Value>,
    /// The request body as (lossy UTF-8) text.
    pub body: String,
}

impl Recorded {
    /// Captures a request. `headers` names are already lowercase in hyper.
    pub fn new(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Self {
        let mut map = serde_json::Map::with_capacity(headers.keys_len());
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            match map.get_mut(name.as_str()) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    map.insert(name.as_str().to_owned(), Value::String(value.into_owned()));
                }
            }
        }
        Recorded {
            ts_ms: crate::now_ms(),
            method: method.as_str().to_owned(),
            path: path.to_owned(),
            query: query.map(str::to_owned),
            headers: map,
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

/// In-memory ring of recorded requests.
#[derive(Default)]
pub struct Recorder {
    ring: Mutex<VecDeque<Recorded>>,
}

impl Recorder {
    /// Appends an entry, dropping the oldest past [`RECORD_CAP`].
    pub fn push(&self, entry: Recorded) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() >= RECORD_CAP {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The recorded requests as a JSON array, oldest first.
    pub fn to_json(&self) -> String {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_string(&*ring).unwrap_or_else(|_| "[]".into())
    }
}

/// Serves a control path (one starting with `/_`).
pub fn handle(method: &Method, path: &str, body: &[u8], mode: &Mode, recorder: Option<&Recorder>) -> Resp {
    match (path, method) {
        ("/_health", &Method::GET) | ("/_health", &Method::HEAD) => text_response(StatusCode::OK, "ok"),
        ("/_received", &Method::GET) => match recorder {
            Some(r) => json_response(StatusCode::OK, r.to_json()),
            // --no-record: nothing is ever recorded.
            None => json_response(StatusCode::OK, "[]".into()),
        },
        ("/_reset", &Method::POST) => {
            if let Some(r) = recorder {
                r.clear();
            }
            json_response(StatusCode::OK, r#"{"ok":true}"#.into())
        }
        ("/_mode", &Method::GET) => mode_response(mode),
        ("/_mode", &Method::POST) => {
            let patch: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return control_error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
            };
            match mode.merge(&patch) {
                Ok(()) => mode_response(mode),
                Err(e) => control_error(StatusCode::BAD_REQUEST, &e),
            }
        }
        ("/_health" | "/_received" | "/_reset" | "/_mode", _) => {
            control_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => control_error(StatusCode::NOT_FOUND, "unknown control endpoint"),
    }
}

fn mode_response(mode: &Mode) -> Resp {
    let body = serde_json::to_string(&mode.snapshot()).unwrap_or_else(|_| "{}".into());
    json_response(StatusCode::OK, body)
}

fn control_error(status: StatusCode, message: &str) -> Resp {
    json_response(status, json!({"error": message}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_merge_and_reset() {
        let m = Mode::default();
        m.merge(&json!({"fail": true, "delay_ms": 5})).unwrap();
        assert_eq!(m.snapshot(), ModeSnapshot { fail: true, delay_ms: 5, ..Default::default() });
        m.merge(&json!({"rug_pull": true})).unwrap();
        assert!(m.snapshot().fail && m.snapshot().rug_pull);
        // Invalid patches change nothing.
        assert!(m.merge(&json!({"sse_lists": true, "typo": 1})).is_err());
        assert!(m.merge(&json!({"fail": "yes"})).is_err());
        assert!(m.merge(&json!([1])).is_err());
        assert!(!m.snapshot().sse_lists);
        m.merge(&json!({"reset": true, "sse_lists": true})).unwrap();
        assert_eq!(m.snapshot(), ModeSnapshot { sse_lists: true, ..Default::default() });
    }

    #[test]
    fn recorder_ring_is_capped() {
        let r = Recorder::default();
        let headers = HeaderMap::new();
        for i in 0..RECORD_CAP + 5 {
            r.push(Recorded::new(&Method::POST, "/mcp", None, &headers, i.to_string().as_bytes()));
        }
        let all: Vec<Value> = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(all.len(), RECORD_CAP);
        assert_eq!(all[0]["body"], "5");
        r.clear();
        assert_eq!(r.to_json(), "[]");
    }

    #[test]
    fn recorded_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        let rec = Recorded::new(&Method::POST, "/mcp", Some("a=b"), &headers, b"{}");
        assert_eq!(rec.headers["x-a"], "1, 2");
        assert_eq!(rec.headers["content-type"], "application/json");
        assert_eq!(rec.query.as_deref(), Some("a=b"));
    }
}
