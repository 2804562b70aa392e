//! The hyper service: HTTP routing, request recording, runtime modes, and
//! turning [`mcp::Reply`] values into HTTP responses (JSON, 202, or SSE).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::control::{self, Mode, Recorded, Recorder};
use crate::mcp::{self, Reply};
use crate::tools::{Catalogue, StreamPlan};

/// Largest request body accepted (bigger bodies get 413).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Response body: either a complete buffer or a live SSE channel.
pub type RespBody = Either<Full<Bytes>, ChannelBody>;
/// Response type of every handler.
pub type Resp = Response<RespBody>;

/// Shared state of the server (one per process, behind an `Arc`).
pub struct App {
    /// `serverInfo.name`.
    pub name: String,
    /// The tools.
    pub catalogue: Catalogue,
    /// Runtime switches (`/_mode`).
    pub mode: Mode,
    /// Request log (`/_received`); `None` with `--no-record`.
    pub recorder: Option<Recorder>,
}

/// A streaming body fed by a tokio channel: each `Bytes` sent is one frame,
/// written and flushed by hyper as soon as it arrives. The body ends when
/// the sending task drops its sender.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

/// Entry point for every request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();

    // Read the whole body (requests are small JSON-RPC messages).
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                mcp::error(&Value::Null, mcp::INVALID_REQUEST, "request body too large"),
            )
        }
        Err(_) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                mcp::error(&Value::Null, mcp::INVALID_REQUEST, "could not read request body"),
            )
        }
    };

    let path = parts.uri.path();
    if path.starts_with("/_") {
        return control::handle(&parts.method, path, &body, &app.mode, app.recorder.as_ref());
    }

    if let Some(recorder) = &app.recorder {
        recorder.push(Recorded::new(&parts.method, path, parts.uri.query(), &parts.headers, &body));
    }

    // Read the switches once so one request sees one consistent mode.
    let mode = app.mode.snapshot();
    if mode.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(mode.delay_ms)).await;
    }
    if mode.fail {
        return reply_response(mcp::fail_reply(&body), false);
    }

    match parts.method {
        Method::POST => {
            let accept_sse =
                parts.headers.get_all(ACCEPT).iter().any(|v| contains_ignore_case(v.as_bytes(), b"text/event-stream"));
            let ctx = mcp::Ctx { name: &app.name, catalogue: &app.catalogue, mode, accept_sse };
            let reply = mcp::handle_post(&body, &ctx).await;
            reply_response(reply, mode.sse_lists)
        }
        // Session end: nothing to clean up in this stateless demo.
        Method::DELETE => empty_response(StatusCode::OK),
        // GET would open a server-initiated SSE stream; this demo has none.
        _ => {
            let mut resp = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                mcp::error(&Value::Null, -32000, "method not allowed: this demo server has no server-initiated stream"),
            );
            resp.headers_mut().insert(ALLOW, HeaderValue::from_static("POST, DELETE"));
            resp
        }
    }
}

/// Turns a [`Reply`] into an HTTP response. With `sse_lists`, an answer that
/// contains a `tools/list` result is wrapped in one SSE event.
fn reply_response(reply: Reply, sse_lists: bool) -> Resp {
    match reply {
        Reply::Accepted => empty_response(StatusCode::ACCEPTED),
        Reply::Json { status, body, session_id, lists_tools } => {
            let mut resp = if sse_lists && lists_tools && status == StatusCode::OK {
                sse_response(Either::Left(Full::new(Bytes::from(sse_event(&body)))))
            } else {
                json_response(status, body)
            };
            if let Some(sid) = session_id.and_then(|s| HeaderValue::from_str(&s).ok()) {
                resp.headers_mut().insert("mcp-session-id", sid);
            }
            resp
        }
        Reply::Stream { id, plan, progress_token } => stream_response(id, plan, progress_token),
    }
}

/// Starts the `stream` tool: a task sends `plan.count` progress events,
/// `plan.interval_ms` apart (the first one at once), then, one interval
/// after the last, the JSON-RPC result. Each event is its own body frame,
/// so it reaches the client when it is sent.
fn stream_response(id: Value, plan: StreamPlan, progress_token: Option<Value>) -> Resp {
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        let interval = Duration::from_millis(plan.interval_ms);
        for i in 1..=plan.count {
            if i > 1 {
                tokio::time::sleep(interval).await;
            }
            let event = mcp::progress_event(i, plan.count, progress_token.as_ref());
            if tx.send(Bytes::from(sse_event(&event))).await.is_err() {
                return; // client went away
            }
        }
        if plan.count > 0 {
            tokio::time::sleep(interval).await;
        }
        let done = mcp::result(&id, plan.result());
        let _ = tx.send(Bytes::from(sse_event(&done))).await;
    });
    sse_response(Either::Right(ChannelBody { rx }))
}

/// Formats one SSE `message` event. Multi-line data (e.g. the hand-written
/// `reorder_keys` JSON) becomes several `data:` lines, as SSE requires.
pub fn sse_event(data: &str) -> String {
    let mut out = String::with_capacity(data.len() + 32);
    out.push_str("event: message\n");
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn sse_response(body: RespBody) -> Resp {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// A complete `application/json` response.
pub fn json_response(status: StatusCode, body: String) -> Resp {
    full_response(status, "application/json", Bytes::from(body))
}

/// A complete `text/plain` response.
pub fn text_response(status: StatusCode, body: &'static str) -> Resp {
    full_response(status, "text/plain; charset=utf-8", Bytes::from_static(body.as_bytes()))
}

fn full_response(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Either::Left(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn empty_response(status: StatusCode) -> Resp {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::new())));
    *resp.status_mut() = status;
    resp
}

/// ASCII case-insensitive substring search (for the `Accept` header).
fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_event_splits_lines() {
        assert_eq!(sse_event("{}"), "event: message\ndata: {}\n\n");
        assert_eq!(sse_event("[\n1\n]"), "event: message\ndata: [\ndata: 1\ndata: ]\n\n");
    }

    #[test]
    fn accept_matching() {
        assert!(contains_ignore_case(b"application/json, Text/Event-Stream", b"text/event-stream"));
        assert!(!contains_ignore_case(b"application/json", b"text/event-stream"));
    }
}
