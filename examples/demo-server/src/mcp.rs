//! JSON-RPC 2.0 / MCP message handling, independent of HTTP plumbing.
//!
//! [`handle_post`] takes the raw body of a POST and returns a [`Reply`] that
//! `server.rs` turns into an HTTP response. Responses are built as JSON text
//! (`String`) so batches are a simple join and `tools/list` can splice in the
//! pre-serialised tools array.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::control::ModeSnapshot;
use crate::tools::{CallOutcome, Catalogue, StreamPlan};

/// Protocol versions of the handshake era that `initialize` echoes back.
pub const HANDSHAKE_VERSIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// What `initialize` answers when the client asks for something else.
pub const DEFAULT_VERSION: &str = "2025-11-25";
/// Versions advertised by `server/discover` (modern era first).
pub const DISCOVER_VERSIONS: [&str; 2] = ["2026-07-28", "2025-11-25"];
/// Version reported in `serverInfo`.
pub const SERVER_VERSION: &str = "0.1.0";

// JSON-RPC error codes.
pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// Everything message handling needs for one HTTP request.
pub struct Ctx<'a> {
    /// `serverInfo.name` (from `--name`).
    pub name: &'a str,
    /// The tools.
    pub catalogue: &'a Catalogue,
    /// Runtime switches, read once per request.
    pub mode: ModeSnapshot,
    /// The request's `Accept` allows `text/event-stream`.
    pub accept_sse: bool,
}

/// What to send back for one POST body.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// Notifications / responses only: HTTP 202, empty body.
    Accepted,
    /// A JSON body (single response or batch array).
    Json {
        status: StatusCode,
        body: String,
        /// Set when the body answers an `initialize`: the new `Mcp-Session-Id`.
        session_id: Option<String>,
        /// The body answers a `tools/list` (for `sse_lists` mode).
        lists_tools: bool,
    },
    /// A single `tools/call stream` with an SSE-capable client: the server
    /// streams progress events, then the JSON-RPC result for `id`.
    Stream {
        id: Value,
        plan: StreamPlan,
        /// `params._meta.progressToken`, echoed in each progress event.
        progress_token: Option<Value>,
    },
}

impl Reply {
    fn json(status: StatusCode, body: String) -> Self {
        Reply::Json { status, body, session_id: None, lists_tools: false }
    }
}

/// Side information gathered while handling the messages of one body.
#[derive(Default)]
struct Flags {
    session_id: Option<String>,
    lists_tools: bool,
}

/// What one message produced.
enum Out {
    /// Nothing (notification or client response).
    Nothing,
    /// A JSON-RPC response as JSON text.
    Response(String),
    /// Stream this `tools/call` (only offered for single messages).
    Stream(Value, StreamPlan, Option<Value>),
}

/// Handles the body of a POST: a single JSON-RPC message or a batch.
pub async fn handle_post(body: &[u8], ctx: &Ctx<'_>) -> Reply {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Reply::json(StatusCode::BAD_REQUEST, error(&Value::Null, PARSE_ERROR, &format!("parse error: {e}")))
        }
    };
    let mut flags = Flags::default();
    match parsed {
        Value::Array(items) => {
            if items.is_empty() {
                return Reply::json(
                    StatusCode::BAD_REQUEST,
                    error(&Value::Null, INVALID_REQUEST, "invalid request: empty batch"),
                );
            }
            // Batch members run one after the other; `stream` answers as JSON.
            let mut parts = Vec::with_capacity(items.len());
            for item in &items {
                if let Out::Response(text) = handle_message(item, false, ctx, &mut flags).await {
                    parts.push(text);
                }
            }
            if parts.is_empty() {
                return Reply::Accepted;
            }
            let mut body = String::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1);
            body.push('[');
            body.push_str(&parts.join(","));
            body.push(']');
            Reply::Json { status: StatusCode::OK, body, session_id: flags.session_id, lists_tools: flags.lists_tools }
        }
        single => match handle_message(&single, ctx.accept_sse, ctx, &mut flags).await {
            Out::Nothing => Reply::Accepted,
            Out::Stream(id, plan, progress_token) => Reply::Stream { id, plan, progress_token },
            Out::Response(body) => {
                // A message that is not JSON-RPC at all is a client error.
                let status = if is_invalid_request(&single) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
                Reply::Json { status, body, session_id: flags.session_id, lists_tools: flags.lists_tools }
            }
        },
    }
}

/// The `fail` mode answer: HTTP 500 with a JSON-RPC error, using the
/// request's id when the body is a single message with a usable one.
pub fn fail_reply(body: &[u8]) -> Reply {
    let id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .filter(valid_id)
        .unwrap_or(Value::Null);
    Reply::json(StatusCode::INTERNAL_SERVER_ERROR, error(&id, INTERNAL_ERROR, "internal error (demo fail mode)"))
}

/// True when `msg` has no usable `jsonrpc`/`method`/`id` shape.
fn is_invalid_request(msg: &Value) -> bool {
    match msg.as_object() {
        None => true,
        Some(o) => {
            o.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
                || !o.get("method").is_some_and(Value::is_string)
                || o.get("id").is_some_and(|id| !valid_id(id))
        }
    }
}

/// JSON-RPC ids are strings, numbers or null.
fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_) | Value::Number(_) | Value::Null)
}

/// Handles one JSON-RPC message (a batch member or the whole body).
async fn handle_message(msg: &Value, allow_stream: bool, ctx: &Ctx<'_>, flags: &mut Flags) -> Out {
    let Some(obj) = msg.as_object() else {
        return Out::Response(error(&Value::Null, INVALID_REQUEST, "invalid request: not an object"));
    };
    let id = obj.get("id");
    if let Some(id) = id {
        if !valid_id(id) {
            return Out::Response(error(&Value::Null, INVALID_REQUEST, "invalid request: bad id"));
        }
    }
    let reply_id = id.cloned().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Out::Response(error(&reply_id, INVALID_REQUEST, "invalid request: jsonrpc must be \"2.0\""));
    }
    let method = match obj.get("method") {
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return Out::Response(error(&reply_id, INVALID_REQUEST, "invalid request: method must be a string")),
        // A response to a server-initiated request: accepted, nothing to say.
        None if id.is_some() && (obj.contains_key("result") || obj.contains_key("error")) => return Out::Nothing,
        None => return Out::Response(error(&reply_id, INVALID_REQUEST, "invalid request: no method")),
    };
    // Notifications (no id) never get an answer, whatever the method.
    let Some(id) = id else { return Out::Nothing };

    let params = obj.get("params").unwrap_or(&Value::Null);
    if !matches!(params, Value::Object(_) | Value::Array(_) | Value::Null) {
        return Out::Response(error(id, INVALID_PARAMS, "invalid params: must be an object or array"));
    }

    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked.filter(|v| HANDSHAKE_VERSIONS.contains(v)).unwrap_or(DEFAULT_VERSION);
            flags.session_id = Some(new_session_id());
            Out::Response(result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": server_info(ctx.name),
                }),
            ))
        }
        "server/discover" => Out::Response(result(
            id,
            json!({
                "supportedVersions": DISCOVER_VERSIONS,
                "capabilities": {"tools": {}},
                "serverInfo": server_info(ctx.name),
            }),
        )),
        "ping" => Out::Response(result(id, json!({}))),
        "tools/list" => {
            flags.lists_tools = true;
            let tools = ctx.catalogue.tools_json(ctx.mode.rug_pull, ctx.mode.reorder_keys);
            let id = id_text(id);
            let mut body = String::with_capacity(tools.len() + id.len() + 48);
            body.push_str(r#"{"jsonrpc":"2.0","id":"#);
            body.push_str(&id);
            body.push_str(r#","result":{"tools":"#);
            body.push_str(tools);
            body.push_str("}}");
            Out::Response(body)
        }
        "tools/call" => {
            let Some(name) = params.get("name").and_then(Value::as_str) else {
                return Out::Response(error(id, INVALID_PARAMS, "invalid params: missing tool name"));
            };
            let empty = Map::new();
            let args = match params.get("arguments") {
                None | Some(Value::Null) => &empty,
                Some(Value::Object(a)) => a,
                Some(_) => {
                    return Out::Response(error(id, INVALID_PARAMS, "invalid params: arguments must be an object"))
                }
            };
            match ctx.catalogue.call(name, args).await {
                CallOutcome::Result(r) => Out::Response(result(id, r)),
                CallOutcome::Error(code, msg) => Out::Response(error(id, code, &msg)),
                CallOutcome::Stream(plan) if allow_stream => {
                    let token = params.pointer("/_meta/progressToken").cloned();
                    Out::Stream(id.clone(), plan, token)
                }
                CallOutcome::Stream(plan) => {
                    // No SSE: take as long as the stream would, then answer.
                    let total = plan.count.saturating_mul(plan.interval_ms);
                    tokio::time::sleep(Duration::from_millis(total)).await;
                    Out::Response(result(id, plan.result()))
                }
            }
        }
        _ => Out::Response(error(id, METHOD_NOT_FOUND, "method not found")),
    }
}

fn server_info(name: &str) -> Value {
    json!({"name": name, "version": SERVER_VERSION})
}

/// The JSON text of an id (a valid id always serialises).
fn id_text(id: &Value) -> String {
    serde_json::to_string(id).unwrap_or_else(|_| "null".into())
}

/// A JSON-RPC success response as JSON text.
pub fn result(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// A JSON-RPC error response as JSON text.
pub fn error(id: &Value, code: i64, message: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string()
}

/// A JSON `notifications/progress` message for event `progress` of `total`.
pub fn progress_event(progress: u64, total: u64, token: Option<&Value>) -> String {
    let token = token.map(|t| format!(r#""progressToken":{},"#, id_text(t))).unwrap_or_default();
    format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{{token}"progress":{progress},"total":{total},"ts_ms":{}}}}}"#,
        crate::now_ms()
    )
}

/// A fresh random session id: 32 lowercase hex digits.
///
/// Uses std's randomly keyed SipHash (no extra dependency); unique per call
/// thanks to a counter, unpredictable enough for a demo.
pub fn new_session_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Relaxed);
    let a = RandomState::new().hash_one((n, crate::now_ms()));
    let b = RandomState::new().hash_one((n, a));
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(catalogue: &Catalogue) -> Ctx<'_> {
        Ctx { name: "demo", catalogue, mode: ModeSnapshot::default(), accept_sse: false }
    }

    /// Runs a body and returns (status, parsed JSON body, session id).
    async fn run(body: &str, ctx: &Ctx<'_>) -> (StatusCode, Value, Option<String>) {
        match handle_post(body.as_bytes(), ctx).await {
            Reply::Json { status, body, session_id, .. } => {
                (status, serde_json::from_str(&body).expect("valid JSON"), session_id)
            }
            Reply::Accepted => (StatusCode::ACCEPTED, Value::Null, None),
            Reply::Stream { .. } => panic!("unexpected stream"),
        }
    }

    #[tokio::test]
    async fn initialize_echoes_known_version_and_sets_session() {
        let c = Catalogue::new(0);
        let (s, v, sid) = run(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#,
            &ctx(&c),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["id"], 1);
        assert_eq!(v["result"]["protocolVersion"], "2025-03-26");
        assert_eq!(v["result"]["capabilities"]["tools"]["listChanged"], false);
        assert_eq!(v["result"]["serverInfo"], json!({"name": "demo", "version": "0.1.0"}));
        let sid = sid.expect("session id");
        assert_eq!(sid.len(), 32);
        assert!(sid.bytes().all(|b| b.is_ascii_hexdigit()));

        let (_, v, _) = run(
            r#"{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"1999-01-01"}}"#,
            &ctx(&c),
        )
        .await;
        assert_eq!(v["id"], "a");
        assert_eq!(v["result"]["protocolVersion"], DEFAULT_VERSION);
        assert_ne!(new_session_id(), new_session_id());
    }

    #[tokio::test]
    async fn single_requests() {
        let c = Catalogue::new(2);
        let (_, v, _) = run(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#, &ctx(&c)).await;
        assert_eq!(v, json!({"jsonrpc": "2.0", "id": 7, "result": {}}));

        let (_, v, _) = run(r#"{"jsonrpc":"2.0","id":2,"method":"server/discover"}"#, &ctx(&c)).await;
        assert_eq!(v["result"]["supportedVersions"], json!(["2026-07-28", "2025-11-25"]));

        let (_, v, _) = run(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#, &ctx(&c)).await;
        assert_eq!(v["id"], 3);
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 7);

        let (_, v, _) = run(
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#,
            &ctx(&c),
        )
        .await;
        assert_eq!(v["result"], json!({"content": [{"type": "text", "text": "hello"}], "isError": false}));
    }

    #[tokio::test]
    async fn tools_list_modes() {
        let c = Catalogue::new(0);
        let mut cx = ctx(&c);
        cx.mode.rug_pull = true;
        cx.mode.reorder_keys = true;
        match handle_post(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &cx).await {
            Reply::Json { body, lists_tools, .. } => {
                assert!(lists_tools);
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["result"]["tools"][0]["description"], crate::tools::ECHO_RUG_PULL_DESCRIPTION);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn batch_skips_notifications() {
        let c = Catalogue::new(0);
        let (s, v, sid) = run(
            r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}},
                {"jsonrpc":"2.0","method":"notifications/initialized"},
                {"jsonrpc":"2.0","id":2,"method":"ping"},
                {"jsonrpc":"2.0","id":3,"method":"nope"}]"#,
            &ctx(&c),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 3);
        assert_eq!(arr[0]["id"], 1);
        assert_eq!(arr[1], json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
        assert_eq!(arr[2]["error"]["code"], METHOD_NOT_FOUND);
        assert!(sid.is_some());
    }

    #[tokio::test]
    async fn notifications_get_202() {
        let c = Catalogue::new(0);
        let cx = ctx(&c);
        let single = handle_post(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, &cx).await;
        assert_eq!(single, Reply::Accepted);
        let batch =
            handle_post(br#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","method":"b","params":{}}]"#, &cx).await;
        assert_eq!(batch, Reply::Accepted);
        // A client's response to a server request is accepted too.
        let resp = handle_post(br#"{"jsonrpc":"2.0","id":9,"result":{}}"#, &cx).await;
        assert_eq!(resp, Reply::Accepted);
    }

    #[tokio::test]
    async fn unknown_method_and_unknown_tool() {
        let c = Catalogue::new(0);
        let (s, v, _) = run(r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#, &ctx(&c)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["error"], json!({"code": -32601, "message": "method not found"}));
        let (_, v, _) =
            run(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"nope"}}"#, &ctx(&c)).await;
        assert_eq!(v["error"], json!({"code": -32602, "message": "unknown tool: nope"}));
    }

    #[tokio::test]
    async fn malformed_and_invalid() {
        let c = Catalogue::new(0);
        for bad in ["{", "", "not json", r#"{"jsonrpc":"2.0","id":1,"method":"ping""#] {
            let (s, v, _) = run(bad, &ctx(&c)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(v["error"]["code"], PARSE_ERROR);
            assert_eq!(v["id"], Value::Null);
        }
        let (s, v, _) = run("[]", &ctx(&c)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v["error"]["code"], INVALID_REQUEST);
        for bad in [
            "42",
            r#"{"id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
        ] {
            let (s, v, _) = run(bad, &ctx(&c)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(v["error"]["code"], INVALID_REQUEST, "{bad}");
        }
        // Invalid members of a batch get their own error entries.
        let (s, v, _) = run(r#"[1,{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, &ctx(&c)).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["error"]["code"], INVALID_REQUEST);
        assert_eq!(v[1]["result"], json!({}));
        // Bad tool arguments are JSON-RPC errors, not panics.
        let (_, v, _) =
            run(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":[1]}}"#, &ctx(&c))
                .await;
        assert_eq!(v["error"]["code"], INVALID_PARAMS);
    }

    #[tokio::test]
    async fn stream_needs_sse_and_single_message() {
        let c = Catalogue::new(0);
        let body = br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"stream","arguments":{"count":2,"interval_ms":1},"_meta":{"progressToken":"p"}}}"#;
        let mut cx = ctx(&c);
        cx.accept_sse = true;
        assert_eq!(
            handle_post(body, &cx).await,
            Reply::Stream {
                id: json!(5),
                plan: StreamPlan { count: 2, interval_ms: 1 },
                progress_token: Some(json!("p")),
            }
        );
        cx.accept_sse = false;
        let (_, v, _) = run(std::str::from_utf8(body).unwrap(), &cx).await;
        assert_eq!(v["result"]["content"][0]["text"], "streamed 2 events");
    }

    #[test]
    fn fail_reply_uses_id() {
        match fail_reply(br#"{"jsonrpc":"2.0","id":"x","method":"ping"}"#) {
            Reply::Json { status, body, .. } => {
                assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["id"], "x");
                assert_eq!(v["error"]["code"], INTERNAL_ERROR);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn progress_event_shape() {
        let v: Value = serde_json::from_str(&progress_event(1, 3, Some(&json!(7)))).unwrap();
        assert_eq!(v["method"], "notifications/progress");
        assert_eq!(v["params"]["progress"], 1);
        assert_eq!(v["params"]["total"], 3);
        assert_eq!(v["params"]["progressToken"], 7);
        assert!(v["params"]["ts_ms"].as_u64().unwrap() > 0);
    }
}
