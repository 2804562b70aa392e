//! Strict JSON-RPC 2.0 parsing of MCP request bodies.
//!
//! The gateway decides on what it parses, and the backend acts on what *it*
//! parses; any difference between the two is a bypass. So the parser refuses
//! everything two JSON parsers might read differently: duplicate keys at any
//! depth, trailing data, byte-order marks, invalid UTF-8, nested batches.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;

/// One JSON-RPC message from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call that expects an answer.
    Request { id: Value, method: String, params: Option<Value> },
    /// A fire-and-forget message (no `id`).
    Notification { method: String, params: Option<Value> },
    /// A client's answer to a server-initiated request (e.g. elicitation).
    Response { id: Value },
}

impl Message {
    pub fn method(&self) -> Option<&str> {
        match self {
            Message::Request { method, .. } | Message::Notification { method, .. } => Some(method),
            Message::Response { .. } => None,
        }
    }

    pub fn id(&self) -> Option<&Value> {
        match self {
            Message::Request { id, .. } | Message::Response { id } => Some(id),
            Message::Notification { .. } => None,
        }
    }

    pub fn params(&self) -> Option<&Value> {
        match self {
            Message::Request { params, .. } | Message::Notification { params, .. } => params.as_ref(),
            Message::Response { .. } => None,
        }
    }
}

/// A POST body: one message or a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(v) => v,
        }
    }

    /// The id an error envelope should carry: the single request's id.
    pub fn reply_id(&self) -> Option<&Value> {
        match self {
            Body::Single(m) => m.id(),
            Body::Batch(_) => None,
        }
    }
}

/// Why a body was refused, with the JSON-RPC code and the id when one was read.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub code: i64,
    pub message: String,
    pub id: Option<Value>,
}

impl ParseError {
    fn parse(message: impl Into<String>) -> Self {
        Self { code: PARSE_ERROR, message: message.into(), id: None }
    }
    fn invalid(message: impl Into<String>, id: Option<Value>) -> Self {
        Self { code: INVALID_REQUEST, message: message.into(), id }
    }
}

/// Parses a request body strictly (see the module docs).
pub fn parse_body(bytes: &[u8]) -> Result<Body, ParseError> {
    let value = parse_strict(bytes)?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(ParseError::invalid("empty batch", None));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                if item.is_array() {
                    return Err(ParseError::invalid(
                        format!("batch element {i} is itself an array; nested batches are not allowed"),
                        None,
                    ));
                }
                out.push(to_message(item).map_err(|mut e| {
                    e.message = format!("batch element {i}: {}", e.message);
                    e.id = None;
                    e
                })?);
            }
            Ok(Body::Batch(out))
        }
        other => Ok(Body::Single(to_message(other)?)),
    }
}

/// Parses JSON, refusing duplicate object keys at every depth and anything
/// after the value. Invalid UTF-8 and a BOM are syntax errors.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de).map_err(|e| ParseError::parse(format!("invalid JSON: {e}")))?;
    de.end().map_err(|e| ParseError::parse(format!("invalid JSON: trailing data after the message ({e})")))?;
    Ok(value)
}

fn to_message(v: Value) -> Result<Message, ParseError> {
    let Value::Object(mut obj) = v else {
        return Err(ParseError::invalid("a JSON-RPC message must be an object", None));
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return Err(ParseError::invalid("\"id\" must be a string, number or null", None)),
    };
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        _ => return Err(ParseError::invalid("\"jsonrpc\" must be \"2.0\"", id)),
    }
    let params = match obj.remove("params") {
        None => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => return Err(ParseError::invalid("\"params\" must be an object or an array", id)),
    };
    match obj.remove("method") {
        Some(Value::String(method)) => {
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(ParseError::invalid("a message cannot have both \"method\" and \"result\"/\"error\"", id));
            }
            Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            })
        }
        Some(_) => Err(ParseError::invalid("\"method\" must be a string", id)),
        None => match id {
            Some(id) if obj.contains_key("result") != obj.contains_key("error") && params.is_none() => {
                Ok(Message::Response { id })
            }
            _ => Err(ParseError::invalid(
                "a message needs \"method\" (a request) or \"id\" with \"result\" or \"error\" (a response)",
                id,
            )),
        },
    }
}

/// A `serde_json::Value` seed that errors on duplicate keys.
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn single(s: &str) -> Message {
        match parse_body(s.as_bytes()).unwrap() {
            Body::Single(m) => m,
            b => panic!("not single: {b:?}"),
        }
    }

    #[test]
    fn request_notification_response() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Message::Request { id: json!(1), method: "tools/list".into(), params: None }
        );
        assert!(matches!(
            single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Message::Notification { .. }
        ));
        assert!(matches!(single(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#), Message::Response { .. }));
    }

    #[test]
    fn escapes_are_decoded_before_deciding() {
        let m = single(r#"{"jsonrpc":"2.0","id":1,"method":"tools\/c\u0061ll","params":{"name":"x"}}"#);
        assert_eq!(m.method(), Some("tools/call"));
    }

    #[test]
    fn refusals() {
        let cases: &[(&str, i64)] = &[
            ("", PARSE_ERROR),
            ("{", PARSE_ERROR),
            ("\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", PARSE_ERROR),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#, PARSE_ERROR),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#, PARSE_ERROR),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#, PARSE_ERROR),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"p":{"x":1,"x":2}}}}"#,
                PARSE_ERROR,
            ),
            (r#"[]"#, INVALID_REQUEST),
            (r#"[[{"jsonrpc":"2.0","id":1,"method":"ping"}]]"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, INVALID_REQUEST),
            (r#"{"id":1,"method":"ping"}"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#, INVALID_REQUEST),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#, INVALID_REQUEST),
            (r#"7"#, INVALID_REQUEST),
        ];
        for (body, code) in cases {
            let e = parse_body(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, *code, "{body:?}: {e:?}");
        }
        assert!(parse_body(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}").is_err());
    }

    #[test]
    fn invalid_request_keeps_the_id() {
        let e = parse_body(br#"{"jsonrpc":"2.0","id":7,"method":"x","params":3}"#).unwrap_err();
        assert_eq!(e.id, Some(json!(7)));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse_body(deep.as_bytes()).unwrap_err().code, PARSE_ERROR);
    }

    #[test]
    fn batch() {
        let b = parse_body(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"n"}]"#).unwrap();
        assert_eq!(b.messages().len(), 2);
        assert_eq!(b.reply_id(), None);
    }
}
