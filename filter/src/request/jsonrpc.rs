//! Strict JSON-RPC 2.0 parsing of MCP request bodies.
//!
//! The gateway decides on what it parses, and the backend acts on what *it*
//! parses; any difference between the two is a bypass. So the parser refuses
//! everything two JSON parsers might read differently: keys that are equal or
//! equal under Unicode simple case folding at any depth (Go's decoder matches
//! `Method` and `paramſ` to `method` and `params`, last one winning; see
//! [`crate::request::fold`]), member names spelled in another case, a message mixing
//! request and response members, method names with control characters or
//! surrounding whitespace, trailing data, byte-order marks, invalid UTF-8 and
//! nested batches.

use crate::request::fold;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
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

/// Parses JSON, refusing duplicate object keys (equal, or equal under simple
/// case folding: -32600) at every depth and anything after the value
/// (-32700). Invalid UTF-8 and a BOM are syntax errors.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, ParseError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue { duplicate: &duplicate }.deserialize(&mut de).map_err(|e| {
        match duplicate.borrow_mut().take() {
            Some((a, b)) if a == b => ParseError::invalid(format!("duplicate key {b:?} in an object"), None),
            Some((a, b)) => ParseError::invalid(
                format!(
                    "duplicate key {b:?}: it equals {a:?} under Unicode case folding, and some JSON decoders \
                     (Go's) read the two as one key"
                ),
                None,
            ),
            None => ParseError::parse(format!("invalid JSON: {e}")),
        }
    })?;
    de.end().map_err(|e| ParseError::parse(format!("invalid JSON: trailing data after the message ({e})")))?;
    Ok(value)
}

/// The top-level members of a JSON-RPC message.
const MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

/// Refuses a key of `obj` that is a case variant of one of `names` (exact
/// duplicates and fold-duplicates were refused while parsing, so a variant
/// is the only spelling present): a lenient decoder would read it as the
/// member the gateway did not see.
pub fn check_spelling(obj: &Map<String, Value>, names: &[&str], what: &str) -> Result<(), String> {
    for k in obj.keys() {
        if let Some(n) = names.iter().find(|n| fold::fold_eq(k, n) && k != *n) {
            return Err(format!(
                "{what} {k:?} is a case variant of {n:?}; member names are case-sensitive and some decoders \
                 would read it as {n:?}"
            ));
        }
    }
    Ok(())
}

/// Why a name (method, tool, prompt) cannot be decided on: control
/// characters anywhere, or whitespace (or a BOM) at either end, which some
/// backends strip or read differently.
pub fn name_problem(name: &str) -> Option<&'static str> {
    let edge = |c: char| c.is_whitespace() || c == '\u{feff}';
    if name.chars().any(|c| c.is_control() || c == '\u{feff}') {
        Some("contains a control character")
    } else if name.starts_with(edge) || name.ends_with(edge) {
        Some("has surrounding whitespace")
    } else {
        None
    }
}

fn to_message(v: Value) -> Result<Message, ParseError> {
    let Value::Object(mut obj) = v else {
        return Err(ParseError::invalid("a JSON-RPC message must be an object", None));
    };
    let spelling = check_spelling(&obj, &MEMBERS, "member");
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return Err(ParseError::invalid("\"id\" must be a string, number or null", None)),
    };
    if let Err(msg) = spelling {
        return Err(ParseError::invalid(msg, id));
    }
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
            if let Some(why) = name_problem(&method) {
                return Err(ParseError::invalid(format!("method name {method:?} {why}"), id));
            }
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

/// A `serde_json::Value` seed that errors on keys equal under simple case
/// folding, recording the pair in `duplicate` (the error type cannot carry it).
#[derive(Clone, Copy)]
pub(crate) struct StrictValue<'a> {
    pub(crate) duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { duplicate: self.duplicate })
    }
}

pub(crate) struct StrictVisitor<'a> {
    pub(crate) duplicate: &'a RefCell<Option<(String, String)>>,
}

impl<'de> Visitor<'de> for StrictVisitor<'_> {
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
        let seed = StrictValue { duplicate: self.duplicate };
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(seed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let seed = StrictValue { duplicate: self.duplicate };
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(seed)?;
            entries.push((key, v));
        }
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        if let Some((a, b)) = fold::duplicate(&keys) {
            *self.duplicate.borrow_mut() = Some((a.to_string(), b.to_string()));
            return Err(de::Error::custom("duplicate key"));
        }
        Ok(Value::Object(entries.into_iter().collect()))
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
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}"#, INVALID_REQUEST),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
                INVALID_REQUEST,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"p":{"x":1,"x":2}}}}"#,
                INVALID_REQUEST,
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
    fn keys_equal_under_case_folding_are_refused_at_any_depth() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Name":"rm"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"path":"/a","PATH":"/b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{},"paramſ":{"x":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"e","arguments":{"key":1,"\u212Aey":2}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[{"deep":{"σ":1,"ς":2}}]}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping","METHOD":"x"}]"#,
        ] {
            let e = parse_body(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_REQUEST, "{body}: {e:?}");
            assert!(e.message.contains("duplicate key"), "{body}: {e:?}");
        }
        let e = parse_body(r#"{"jsonrpc":"2.0","id":1,"method":"x","Method":"y"}"#.as_bytes()).unwrap_err();
        assert!(e.message.contains("\"Method\"") && e.message.contains("\"method\""), "{e:?}");
        // Distinct keys that only look alike pass (no Turkic or multi-character folds).
        assert!(parse_body(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"i":1,"ı":2,"ss":3,"ß":4}}"#.as_bytes())
            .is_ok());
    }

    #[test]
    fn members_in_another_spelling_and_mixed_messages_are_refused() {
        for body in [
            // A response to the gateway, a request to Go.
            r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","Result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","ERROR":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","ID":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","paramſ":{}}"#,
            r#"{"JSONRPC":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#,
        ] {
            let e = parse_body(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_REQUEST, "{body}: {e:?}");
        }
    }

    #[test]
    fn method_names_with_control_characters_or_surrounding_whitespace_are_refused() {
        // JSON escapes, decoded by the parser.
        for m in [
            r"tools/call ",
            r" tools/call",
            r"tools/call\n",
            r"tools/\u0000call",
            r"\ufefftools/call",
            r"tools/call\u00a0",
            r"tools/call\u2028",
            r"\ttools/call",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}","params":{{"name":"x"}}}}"#);
            let e = parse_body(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, INVALID_REQUEST, "{m:?}: {e:?}");
        }
        assert_eq!(name_problem("tools/call"), None);
        assert_eq!(name_problem("a b"), None);
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
