//! The one error envelope every gateway-made error uses (docs/policy.md):
//! a JSON-RPC error object carrying the request's id when the request held a
//! parseable JSON-RPC message, else `{"error":{"code":…,"message":…}}`.

use serde_json::{json, Value};

/// JSON-RPC error codes the gateway uses. Parse errors follow JSON-RPC 2.0;
/// the rest are in the implementation-defined server range.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const UNAUTHORIZED: i64 = -32001;
    pub const FORBIDDEN: i64 = -32003;
    pub const NOT_FOUND: i64 = -32004;
    pub const METHOD_NOT_ALLOWED: i64 = -32005;
    pub const PAYLOAD_TOO_LARGE: i64 = -32013;
    pub const UNSUPPORTED_MEDIA_TYPE: i64 = -32015;
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const UNSUPPORTED_VERSION: i64 = -32022;
    pub const RATE_LIMITED: i64 = -32029;
    pub const UNAVAILABLE: i64 = -32050;
}

/// Whether the request held a JSON-RPC message whose id the error must echo.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ReplyTo {
    /// No parseable JSON-RPC message: plain `{"error":…}`.
    #[default]
    Http,
    /// A JSON-RPC message: `{"jsonrpc":"2.0","id":…,"error":…}` (id null for
    /// notifications and batches).
    JsonRpc(Value),
}

impl ReplyTo {
    pub fn message(id: Option<&Value>) -> Self {
        ReplyTo::JsonRpc(id.cloned().unwrap_or(Value::Null))
    }
}

/// A response the gateway makes itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    /// Extra headers besides `content-type: application/json`.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Self {
        Self { status, body: body.to_string(), headers: Vec::new() }
    }

    pub fn error(status: u16, code: i64, message: &str, to: &ReplyTo) -> Self {
        Self::error_with_data(status, code, message, None, to)
    }

    pub fn error_with_data(status: u16, code: i64, message: &str, data: Option<Value>, to: &ReplyTo) -> Self {
        let mut error = json!({ "code": code, "message": message });
        if let (Some(d), Some(e)) = (data, error.as_object_mut()) {
            e.insert("data".into(), d);
        }
        let body = match to {
            ReplyTo::Http => json!({ "error": error }),
            ReplyTo::JsonRpc(id) => json!({ "jsonrpc": "2.0", "id": id, "error": error }),
        };
        Self::json(status, &body)
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        let r = Reply::error(403, code::FORBIDDEN, "no", &ReplyTo::JsonRpc(json!(7)));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v, json!({"jsonrpc":"2.0","id":7,"error":{"code":-32003,"message":"no"}}));
        let r = Reply::error(404, code::NOT_FOUND, "nope", &ReplyTo::Http);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v, json!({"error":{"code":-32004,"message":"nope"}}));
        let r = Reply::error(400, code::INVALID_REQUEST, "x", &ReplyTo::message(None));
        assert!(r.body.contains("\"id\":null"));
    }
}
