//! A server's answer, kept as the exact bytes it wrote: the bridge swaps the
//! id back but never re-serialises `result`/`error`, so key order, number
//! formatting and large payloads pass through untouched and unparsed.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct Reply {
    is_error: bool,
    /// The `result` or `error` member, verbatim.
    payload: Box<RawValue>,
}

/// What the bridge needs to know about a line from the child, borrowed from it.
#[derive(Deserialize)]
pub struct Peek<'a> {
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

impl Reply {
    /// From a peeked response line; None unless it has `result` or `error`.
    pub fn from_peek(p: &Peek<'_>) -> Option<Reply> {
        match (p.result, p.error) {
            (Some(r), _) => Some(Reply { is_error: false, payload: r.to_owned() }),
            (None, Some(e)) => Some(Reply { is_error: true, payload: e.to_owned() }),
            (None, None) => None,
        }
    }

    /// A result the bridge made (e.g. a list filtered per caller).
    pub fn result(value: &Value) -> Reply {
        // Serialising a Value cannot fail; the default is `null`.
        let payload = serde_json::value::to_raw_value(value).unwrap_or_default();
        Reply { is_error: false, payload }
    }

    /// An error the bridge answers with instead of the child.
    pub fn error(code: i64, message: &str) -> Reply {
        let error = serde_json::json!({"code": code, "message": message});
        let payload = serde_json::value::to_raw_value(&error).unwrap_or_default();
        Reply { is_error: true, payload }
    }

    /// An error with `data` (e.g. the versions a -32022 names).
    pub fn error_with_data(code: i64, message: &str, data: Value) -> Reply {
        let error = serde_json::json!({"code": code, "message": message, "data": data});
        let payload = serde_json::value::to_raw_value(&error).unwrap_or_default();
        Reply { is_error: true, payload }
    }

    /// The parsed error object; None for results.
    pub fn error_value(&self) -> Option<Value> {
        self.is_error.then(|| serde_json::from_str(self.payload.get()).ok()).flatten()
    }

    pub fn is_result(&self) -> bool {
        !self.is_error
    }

    /// The parsed result; None for errors.
    pub fn result_value(&self) -> Option<Value> {
        (!self.is_error).then(|| serde_json::from_str(self.payload.get()).ok()).flatten()
    }

    pub fn error_code(&self) -> Option<i64> {
        if !self.is_error {
            return None;
        }
        serde_json::from_str::<Value>(self.payload.get()).ok()?.get("code")?.as_i64()
    }

    /// The full JSON-RPC response for a client, carrying its id.
    pub fn message(&self, id: &Value) -> String {
        let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
        let key = if self.is_error { "error" } else { "result" };
        let payload = self.payload.get();
        let mut s = String::with_capacity(payload.len() + id.len() + 32);
        s.push_str(r#"{"jsonrpc":"2.0","id":"#);
        s.push_str(&id);
        s.push_str(",\"");
        s.push_str(key);
        s.push_str("\":");
        s.push_str(payload);
        s.push('}');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_passes_byte_for_byte_with_the_clients_id() {
        let line = r#"{"jsonrpc":"2.0","id":17,"result":{"z":1,"a":[1.50,2e3],"m":"\u00e9"}}"#;
        let peek: Peek = serde_json::from_str(line).unwrap();
        assert_eq!(peek.id.unwrap().get(), "17");
        let r = Reply::from_peek(&peek).unwrap();
        assert!(r.is_result());
        let msg = r.message(&json!("client-1"));
        assert_eq!(msg, r#"{"jsonrpc":"2.0","id":"client-1","result":{"z":1,"a":[1.50,2e3],"m":"\u00e9"}}"#);
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v["result"]["m"], "é");
    }

    #[test]
    fn errors_and_non_responses() {
        let peek: Peek = serde_json::from_str(r#"{"id":1,"error":{"code":-32601,"message":"no"}}"#).unwrap();
        let r = Reply::from_peek(&peek).unwrap();
        assert_eq!(r.error_code(), Some(-32601));
        assert!(r.result_value().is_none());
        assert!(r.message(&json!(2)).contains(r#""error":{"code":-32601"#));
        let peek: Peek = serde_json::from_str(r#"{"id":1,"method":"roots/list"}"#).unwrap();
        assert!(Reply::from_peek(&peek).is_none() && peek.method.is_some());
        let peek: Peek = serde_json::from_str(r#"{"id":null,"result":{}}"#).unwrap();
        assert!(peek.id.is_none());
        assert_eq!(
            Reply::result(&json!({"a":1})).message(&json!(null)),
            r#"{"jsonrpc":"2.0","id":null,"result":{"a":1}}"#
        );
    }
}
