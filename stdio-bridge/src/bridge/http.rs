//! Streamable HTTP for the bridge: `POST /mcp/{name}` carries JSON-RPC (one
//! message or a batch), `DELETE /mcp/{name}` ends a session, `GET` is 405
//! (no stream of server-initiated messages is offered). An answer is
//! `application/json`, unless the child sends progress or log notifications
//! for the request while it runs and the client accepts
//! `text/event-stream`: then the answer becomes an event stream carrying
//! those notifications and, last, the response.

use super::ids::Sink;
use super::upstream::{Failure, Upstream};
use super::Inner;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Largest request body (the gateway's own limit is at most 64 MiB).
const MAX_BODY: usize = 64 * 1024 * 1024 + 1024;
/// The header Envoy adds so only it can reach the bridge (see `protect_routes`).
pub const TOKEN_HEADER: &str = "x-mcpx-bridge-token";
/// The caller's identity, set by the filter (client copies are removed on
/// entry to Envoy); absent when auth is off.
const IDENTITY_HEADER: &str = mcpx_filter::names::IDENTITY_HEADER;
const SESSION: &str = "mcp-session-id";

/// Bridge-made error codes (the gateway's table in mcpx_filter::envelope).
const INVALID_REQUEST: i64 = -32600;
const PARSE_ERROR: i64 = -32700;
const UNAUTHORIZED: i64 = -32001;
const NOT_FOUND: i64 = -32004;
const METHOD_NOT_ALLOWED: i64 = -32005;
const PAYLOAD_TOO_LARGE: i64 = -32013;
const UNAVAILABLE: i64 = -32050;
/// The server did not answer within `request_timeout`.
const TIMEOUT: i64 = -32054;
/// Notifications queued for one client; more are dropped, not waited for.
const RELAY_QUEUE: usize = 256;

pub type Resp = Response<BoxBody<Bytes, Infallible>>;

pub async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Resp {
    if let Some(expected) = &inner.token {
        let given = req.headers().get(TOKEN_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
        if !constant_time_eq(given, expected.as_bytes()) {
            let msg = format!(
                "missing or wrong {TOKEN_HEADER} header: this bridge only serves the mcpx gateway. With `mcpx bridge`, \
                 set the same MCPX_BRIDGE_TOKEN for the bridge and in your Envoy route (request_headers_to_add: \
                 {TOKEN_HEADER})"
            );
            return error(StatusCode::UNAUTHORIZED, None, UNAUTHORIZED, &msg);
        }
    }
    let upstream = req.uri().path().strip_prefix("/mcp/").and_then(|name| inner.server(name));
    let Some(upstream) = upstream else {
        return error(StatusCode::NOT_FOUND, None, NOT_FOUND, "not found: stdio servers are at /mcp/{server}");
    };
    let session = req.headers().get(SESSION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let events = req
        .headers()
        .get_all(ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.to_ascii_lowercase().contains("text/event-stream")));
    // Opaque: only compared. Not valid visible ASCII means not from the filter.
    let identity: Arc<str> =
        Arc::from(req.headers().get(IDENTITY_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default());
    match *req.method() {
        Method::POST => post(upstream, session, identity, events, req.into_body()).await,
        Method::DELETE => match session {
            None => error(StatusCode::BAD_REQUEST, None, INVALID_REQUEST, "DELETE needs the Mcp-Session-Id header"),
            Some(s) if upstream.end_session(&s, &identity) => empty(StatusCode::NO_CONTENT),
            Some(_) => error(StatusCode::NOT_FOUND, None, NOT_FOUND, "unknown or already ended session"),
        },
        _ => {
            let mut r = error(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                METHOD_NOT_ALLOWED,
                "method not allowed: use POST (stdio servers offer no stream of server-initiated messages; progress and \
                 log notifications come on the stream of the request they belong to)",
            );
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
            r
        }
    }
}

async fn post(
    upstream: Arc<Upstream>,
    session: Option<String>,
    identity: Arc<str>,
    events: bool,
    body: Incoming,
) -> Resp {
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, None, PAYLOAD_TOO_LARGE, "request body too large")
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, None, INVALID_REQUEST, "could not read the request body"),
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, Some(&Value::Null), PARSE_ERROR, &format!("parse error: {e}")),
    };
    drop(body);
    let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
    if let Some(s) = &session {
        if !is_initialize && !upstream.has_session(s, &identity) {
            return error(
                StatusCode::NOT_FOUND,
                message.get("id"),
                NOT_FOUND,
                "session not found (ended, or the bridge restarted): start a new one with initialize",
            );
        }
    }
    match message {
        Value::Array(items) if items.is_empty() => {
            error(StatusCode::BAD_REQUEST, Some(&Value::Null), INVALID_REQUEST, "empty batch")
        }
        Value::Array(items) => batch(upstream, items, identity).await,
        single => one(upstream, single, identity, events).await,
    }
}

enum Kind {
    Request(Value),
    Notification,
    /// A client's answer to a server-initiated request (never relayed).
    Response,
    Invalid(&'static str),
}

fn classify(m: &Value) -> Kind {
    let Some(obj) = m.as_object() else { return Kind::Invalid("a JSON-RPC message must be an object") };
    match (obj.get("method"), obj.get("id")) {
        (Some(Value::String(_)), Some(id @ (Value::String(_) | Value::Number(_)))) => Kind::Request(id.clone()),
        (Some(Value::String(_)), None) => Kind::Notification,
        (Some(Value::String(_)), Some(_)) => Kind::Invalid("id must be a string or a number"),
        (Some(_), _) => Kind::Invalid("method must be a string"),
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => Kind::Response,
        (None, _) => Kind::Invalid("not a JSON-RPC request, notification or response"),
    }
}

/// One message: a request gets its answer, a notification 202.
async fn one(upstream: Arc<Upstream>, message: Value, identity: Arc<str>, events: bool) -> Resp {
    match classify(&message) {
        Kind::Request(id) => {
            let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
            if events && !is_initialize {
                return relayed(upstream, message, identity, id).await;
            }
            match upstream.request(message, &identity, None).await {
                Ok(reply) => {
                    let mut r = bytes_response(StatusCode::OK, reply.message(&id).into_bytes());
                    if is_initialize && reply.is_result() {
                        if let Ok(v) = HeaderValue::from_str(&upstream.new_session(&identity)) {
                            r.headers_mut().insert(SESSION, v);
                        }
                    }
                    r
                }
                Err(f) => failure(&upstream, Some(&id), f),
            }
        }
        Kind::Notification => match upstream.notification(message).await {
            Ok(()) => empty(StatusCode::ACCEPTED),
            Err(f) => failure(&upstream, None, f),
        },
        Kind::Response => {
            eprintln!("mcpx bridge: server `{}`: a client sent a response; dropped (nothing asked)", upstream.name());
            empty(StatusCode::ACCEPTED)
        }
        Kind::Invalid(why) => error(StatusCode::BAD_REQUEST, Some(&Value::Null), INVALID_REQUEST, why),
    }
}

/// A batch (2025-03-26): every element goes to the child on its own, all at
/// once; the answers come back in the order of the requests.
async fn batch(upstream: Arc<Upstream>, items: Vec<Value>, identity: Arc<str>) -> Resp {
    let mut tasks = Vec::with_capacity(items.len());
    for item in items {
        let upstream = upstream.clone();
        let identity = identity.clone();
        tasks.push(tokio::spawn(async move {
            match classify(&item) {
                Kind::Request(id) => Some(match upstream.request(item, &identity, None).await {
                    Ok(reply) => reply.message(&id),
                    Err(f) => failure_object(&upstream, &id, f).1.to_string(),
                }),
                Kind::Notification => {
                    let _ = upstream.notification(item).await;
                    None
                }
                Kind::Response => None,
                Kind::Invalid(why) => Some(error_object(&Value::Null, INVALID_REQUEST, why).to_string()),
            }
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Some(a)) => answers.push(a),
            Ok(None) => {}
            Err(_) => answers.push(error_object(&Value::Null, -32603, "internal error in the bridge").to_string()),
        }
    }
    if answers.is_empty() {
        empty(StatusCode::ACCEPTED)
    } else {
        bytes_response(StatusCode::OK, format!("[{}]", answers.join(",")).into_bytes())
    }
}

/// Aborts the request when its client goes away (dropping the request
/// cancels it at the child, as for a JSON answer).
struct Running(JoinHandle<Result<super::reply::Reply, Failure>>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request whose client accepts an event stream: answered in JSON when
/// nothing comes before the answer, else as a stream of its notifications
/// followed by the answer.
async fn relayed(upstream: Arc<Upstream>, message: Value, identity: Arc<str>, id: Value) -> Resp {
    let (tx, mut notes) = mpsc::channel::<String>(RELAY_QUEUE);
    let up = upstream.clone();
    let mut running = Running(tokio::spawn(async move { up.request(message, &identity, Some(Sink { tx })).await }));
    let first = tokio::select! {
        biased;
        Some(n) = notes.recv() => n,
        done = &mut running.0 => return match done {
            Ok(Ok(reply)) => bytes_response(StatusCode::OK, reply.message(&id).into_bytes()),
            Ok(Err(f)) => failure(&upstream, Some(&id), f),
            Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, Some(&id), -32603, "internal error in the bridge"),
        },
    };
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        if body_tx.send(event(&first)).await.is_err() {
            return;
        }
        let done = loop {
            tokio::select! {
                biased;
                Some(n) = notes.recv() => if body_tx.send(event(&n)).await.is_err() { return },
                done = &mut running.0 => break done,
            }
        };
        // Written before the answer, so queued before it: they go first.
        while let Ok(n) = notes.try_recv() {
            if body_tx.send(event(&n)).await.is_err() {
                return;
            }
        }
        let last = match done {
            Ok(Ok(reply)) => reply.message(&id),
            Ok(Err(f)) => failure_object(&upstream, &id, f).1.to_string(),
            Err(_) => error_object(&id, -32603, "internal error in the bridge").to_string(),
        };
        let _ = body_tx.send(event(&last)).await;
    });
    let mut r = Response::new(Events(body_rx).boxed());
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// One server-sent event carrying one JSON-RPC message (compact JSON: no
/// line breaks, so one `data:` line).
fn event(message: &str) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

/// A response body fed by a channel, one frame per event.
struct Events(mpsc::Receiver<Bytes>);

impl hyper::body::Body for Events {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn failure_object(upstream: &Upstream, id: &Value, f: Failure) -> (StatusCode, Value, Option<u64>) {
    match f {
        Failure::Unavailable { message, retry_after } => (
            StatusCode::SERVICE_UNAVAILABLE,
            error_object(id, UNAVAILABLE, &message),
            Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
        ),
        Failure::Crashed(reason) => (
            StatusCode::BAD_GATEWAY,
            error_object(id, UNAVAILABLE, &format!("{reason}; it will be restarted, the request may be retried")),
            None,
        ),
        Failure::Timeout(t) => (
            StatusCode::GATEWAY_TIMEOUT,
            error_object(
                id,
                TIMEOUT,
                &format!(
                    "server `{}` did not answer within {} ms (request_timeout); the request was cancelled",
                    upstream.name(),
                    t.as_millis()
                ),
            ),
            None,
        ),
    }
}

fn failure(upstream: &Upstream, id: Option<&Value>, f: Failure) -> Resp {
    let (status, body, retry_after) = failure_object(upstream, id.unwrap_or(&Value::Null), f);
    let mut r = json_response(status, &body);
    if let Some(secs) = retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

fn error_object(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The gateway's envelope: a JSON-RPC error when there is a message to
/// answer (`id` given), else `{"error":{…}}`.
fn error(status: StatusCode, id: Option<&Value>, code: i64, message: &str) -> Resp {
    let body = match id {
        Some(id) => error_object(id, code, message),
        None => json!({"error": {"code": code, "message": message}}),
    };
    json_response(status, &body)
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

fn bytes_response(status: StatusCode, bytes: Vec<u8>) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert!(matches!(classify(&json!({"jsonrpc":"2.0","id":1,"method":"ping"})), Kind::Request(_)));
        assert!(matches!(classify(&json!({"jsonrpc":"2.0","method":"notifications/x"})), Kind::Notification));
        assert!(matches!(classify(&json!({"jsonrpc":"2.0","id":1,"result":{}})), Kind::Response));
        assert!(matches!(classify(&json!({"jsonrpc":"2.0","id":{},"method":"ping"})), Kind::Invalid(_)));
        assert!(matches!(classify(&json!({"jsonrpc":"2.0","id":1})), Kind::Invalid(_)));
        assert!(matches!(classify(&json!(3)), Kind::Invalid(_)));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
