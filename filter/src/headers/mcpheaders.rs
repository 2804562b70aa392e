//! The 2026-07-28 routing headers must agree with the body (docs/policy.md).
//!
//! Modern MCP clients mirror parts of the JSON-RPC body into HTTP headers so
//! intermediaries can route without parsing: `Mcp-Method` (= `method`),
//! `Mcp-Name` (= the tool/prompt name or resource URI), `Mcp-Param-<token>`
//! (= a tool argument whose schema carries `x-mcp-header: <token>`) and
//! `MCP-Protocol-Version`. The gateway decides on the body; anything that
//! trusts a header that says `echo` while the body calls `dangerous_delete`
//! would be fooled, so every such header that is present must agree with the
//! body, else HTTP 400 / JSON-RPC -32020 before any backend sees it.
//!
//! Decisions a reader should know (docs/policy.md "Header rules"):
//! - Absent headers are not required: handshake-era clients send none, and a
//!   modern backend enforces presence itself. Present means checked.
//! - A repeated `Mcp-*` / `MCP-Protocol-Version` header is refused: first-copy
//!   and last-copy readers would disagree.
//! - `Mcp-Param-<token>` exists only in protocol 2026-07-28: on a request of
//!   an older version (or with no version at all) it is refused, because a
//!   backend or router of that era might trust it unchecked. On a 2026-07-28
//!   `tools/call` the headers are checked through the tool's `x-mcp-header`
//!   map, kept from its listed definition ([`crate::headers::paramheaders`]); values
//!   may use the `=?base64?…?=` sentinel, decoded strictly.
//! - Batches: these headers describe one message, so `Mcp-Method`, `Mcp-Name`
//!   or `Mcp-Param-*` on a batch is refused. `MCP-Protocol-Version` must still
//!   be supported and agree with every element's `_meta` version.

use crate::envelope::code;
use crate::headers::headervalue::decode_value;
use crate::headers::paramheaders::{self, ToolHeaders};
use crate::request::jsonrpc::{Body, Message};
use serde_json::Value;

/// Protocol revisions the gateway knows; any other `MCP-Protocol-Version` is
/// refused with -32022.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];

/// The stateless protocol revision (no `initialize`, version on every request).
pub const MODERN_VERSION: &str = "2026-07-28";

/// The first protocol revision without JSON-RPC batches (they exist only in
/// 2025-03-26). Revisions are dates, so they compare as strings.
pub const FIRST_VERSION_WITHOUT_BATCHES: &str = "2025-06-18";

/// The `params._meta` key carrying a modern request's protocol version.
pub const META_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// The first protocol revision that defines `Mcp-Param-*` headers (and the
/// header/body validation that makes them safe to act on).
pub const FIRST_VERSION_WITH_PARAM_HEADERS: &str = "2026-07-28";

/// A tool's recorded `x-mcp-header` map by tool name (`None`: never
/// recorded; `Err`: the record could not be read).
pub type ToolHeadersLookup<'a> = dyn Fn(&str) -> Result<Option<ToolHeaders>, String> + 'a;

const METHOD: &str = "mcp-method";
const NAME: &str = "mcp-name";
const VERSION: &str = "mcp-protocol-version";
const PARAM_PREFIX: &str = "mcp-param-";

/// The routing headers of one request, captured in the head phase so the
/// body phase needs no host call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpHeaders {
    method: Option<String>,
    name: Option<String>,
    version: Option<String>,
    /// `(token, raw value)` per `Mcp-Param-<token>` header, token as sent.
    params: Vec<(String, String)>,
    /// The first routing header that appeared more than once.
    repeated: Option<String>,
}

/// A disagreement, with its JSON-RPC code (-32020 or -32022) and extra data.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

fn mismatch(message: String) -> Result<(), HeaderError> {
    Err(HeaderError { code: code::HEADER_MISMATCH, message, data: None })
}

impl McpHeaders {
    /// Picks the routing headers out of the request headers (any case).
    pub fn capture<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            let slot = match lower.as_str() {
                METHOD => &mut h.method,
                NAME => &mut h.name,
                VERSION => &mut h.version,
                l if l.starts_with(PARAM_PREFIX) => {
                    h.params.push((name[PARAM_PREFIX.len()..].to_string(), value.to_string()));
                    if seen.contains(&lower) {
                        h.repeated.get_or_insert(name.to_string());
                    }
                    seen.push(lower);
                    continue;
                }
                _ => continue,
            };
            if slot.is_some() {
                h.repeated.get_or_insert(name.to_string());
            }
            *slot = Some(value.to_string());
        }
        h
    }

    /// The `MCP-Protocol-Version` header, if sent.
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    /// Whether `m` is a 2026-07-28 (modern era) request, by this header or
    /// its own `params._meta` version (the check above makes them agree).
    pub fn is_modern(&self, m: &Message) -> bool {
        self.version.as_deref().or_else(|| meta_version(m)) == Some(MODERN_VERSION)
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every present header against the parsed body, with no tool's
    /// header map known (each `Mcp-Param-*` must then name an argument).
    pub fn check(&self, body: &Body) -> Result<(), HeaderError> {
        self.check_with(body, &|_| Ok(None))
    }

    /// Checks every present header against the parsed body; a 2026-07-28
    /// `tools/call` is checked through its tool's map from `tool_headers`.
    pub fn check_with(&self, body: &Body, tool_headers: &ToolHeadersLookup<'_>) -> Result<(), HeaderError> {
        if let Some(name) = &self.repeated {
            return mismatch(format!("header {name} appears more than once"));
        }
        if let Some(v) = &self.version {
            if !SUPPORTED_VERSIONS.contains(&v.as_str()) && !is_negotiation(body) {
                return Err(HeaderError {
                    code: code::UNSUPPORTED_VERSION,
                    message: format!(
                        "MCP-Protocol-Version {v:?} is not a protocol version this gateway can inspect, so the \
                         request was not forwarded; send server/discover (or initialize) to learn the versions the \
                         server supports"
                    ),
                    // No `supported` list: the gateway's own list would name
                    // versions the server may not speak. The server's answer
                    // to the negotiation request names its own.
                    data: Some(serde_json::json!({ "requested": v })),
                });
            }
            for m in body.messages() {
                if let Some(meta) = meta_version(m) {
                    if meta != v {
                        return mismatch(format!(
                            "MCP-Protocol-Version header {v:?} does not match params._meta protocol version {meta:?}"
                        ));
                    }
                }
            }
        }
        match body {
            Body::Single(m) => self.check_message(m, tool_headers),
            Body::Batch(_) if self.method.is_some() || self.name.is_some() || !self.params.is_empty() => mismatch(
                "Mcp-Method, Mcp-Name and Mcp-Param-* headers describe a single message and cannot be sent with a batch"
                    .into(),
            ),
            Body::Batch(_) => Ok(()),
        }
    }

    fn check_message(&self, m: &Message, tool_headers: &ToolHeadersLookup<'_>) -> Result<(), HeaderError> {
        let method = m.method();
        if let Some(h) = &self.method {
            if Some(h.as_str()) != method {
                return mismatch(format!(
                    "Mcp-Method header {h:?} does not match the body's method {:?}",
                    method.unwrap_or("(none: a response)")
                ));
            }
        }
        let params = match m.params() {
            Some(Value::Object(o)) => Some(o),
            _ => None,
        };
        if let Some(h) = &self.name {
            let Some(key) = method.and_then(name_key) else {
                return mismatch(format!(
                    "Mcp-Name header {h:?} was sent, but {} names no tool, prompt or resource",
                    method.unwrap_or("a response")
                ));
            };
            let body_value = params.and_then(|p| p.get(key)).and_then(Value::as_str);
            let Some(decoded) = decode_value(h) else {
                return mismatch("Mcp-Name header carries a malformed =?base64?...?= value".into());
            };
            if Some(decoded.as_str()) != body_value {
                return mismatch(format!(
                    "Mcp-Name header {decoded:?} does not match the body's params.{key} {:?}",
                    body_value.unwrap_or("(absent)")
                ));
            }
        }
        // The version the request speaks: the header, else the body's `_meta`.
        let version = self.version.as_deref().or_else(|| meta_version(m));
        let modern = version.is_some_and(|v| v >= FIRST_VERSION_WITH_PARAM_HEADERS);
        if !self.params.is_empty() {
            if method != Some("tools/call") {
                return mismatch("Mcp-Param-* headers are only valid on tools/call".into());
            }
            if !modern {
                return mismatch(format!(
                    "Mcp-Param-* headers are defined only by protocol {FIRST_VERSION_WITH_PARAM_HEADERS}, and this \
                     request speaks {}",
                    version
                        .map_or_else(|| "no version (no MCP-Protocol-Version header)".to_string(), |v| v.to_string())
                ));
            }
        }
        if modern && method == Some("tools/call") {
            // A call without a string name is refused later (invalid params).
            let Some(tool) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else { return Ok(()) };
            let known = tool_headers(tool).map_err(|e| HeaderError {
                code: code::HEADER_MISMATCH,
                message: format!("the Mcp-Param headers of tool {tool:?} cannot be checked: {e}"),
                data: None,
            })?;
            let args = params.and_then(|p| p.get("arguments")).and_then(Value::as_object);
            if let Err(message) = paramheaders::check(known.as_ref(), args, &self.params) {
                return mismatch(message);
            }
        }
        Ok(())
    }
}

/// A lone `server/discover` or `initialize`: the requests that negotiate the
/// version. With a version the gateway does not know they still go to the
/// server, whose own answer (its `-32022` naming the versions it supports,
/// or its discovery result) is what the client needs. Neither acts on
/// anything, and neither answer holds a tool list.
fn is_negotiation(body: &Body) -> bool {
    matches!(body, Body::Single(m) if matches!(m.method(), Some("server/discover" | "initialize")))
}

/// The params key a method's `Mcp-Name` mirrors.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
        _ => None,
    }
}

fn meta_version(m: &Message) -> Option<&str> {
    m.params()?.get("_meta")?.get(META_VERSION_KEY)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::jsonrpc::parse_body;

    fn check(headers: &[(&str, &str)], body: &str) -> Result<(), HeaderError> {
        let h = McpHeaders::capture(headers.iter().copied());
        h.check(&parse_body(body.as_bytes()).unwrap())
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi","Region":"eu","n":5,"flag":true,"obj":{}},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    fn code_of(r: Result<(), HeaderError>) -> Option<i64> {
        r.err().map(|e| e.code)
    }

    #[test]
    fn agreeing_headers_pass() {
        let h = [
            ("Mcp-Method", "tools/call"),
            ("mcp-name", "echo"),
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Param-region", "eu"),
            ("Mcp-Param-N", "5"),
            ("Mcp-Param-flag", "true"),
            ("Mcp-Param-Text", "=?base64?aGk=?="),
        ];
        assert_eq!(check(&h, CALL), Ok(()));
        assert_eq!(check(&[], CALL), Ok(()));
        let n50 = CALL.replace("\"n\":5", "\"n\":5.0");
        assert_eq!(check(&[("Mcp-Param-n", "5")], &n50), Ok(()));
        assert_eq!(check(&[("Mcp-Param-n", "5.0")], &n50), Ok(()));
    }

    #[test]
    fn disagreements_are_32020() {
        let cases: &[&[(&str, &str)]] = &[
            &[("Mcp-Method", "tools/list")],
            &[("Mcp-Method", "Tools/Call")],
            &[("Mcp-Name", "dangerous_delete")],
            &[("Mcp-Name", "=?base64?ZWNobw?=")],   // unpadded
            &[("Mcp-Name", "=?base64?ZWNobx==?=")], // non-canonical
            &[("Mcp-Param-region", "us")],
            &[("Mcp-Param-missing", "x")],
            &[("Mcp-Param-obj", "{}")],
            &[("Mcp-Param-flag", "1")],
            &[("MCP-Protocol-Version", "2025-11-25")],
            &[("Mcp-Method", "tools/call"), ("mcp-method", "tools/call")],
            &[("Mcp-Param-text", "hi"), ("mcp-param-TEXT", "hi")],
        ];
        for h in cases {
            assert_eq!(code_of(check(h, CALL)), Some(code::HEADER_MISMATCH), "{h:?}");
        }
    }

    #[test]
    fn param_headers_need_protocol_2026_07_28() {
        let old_call =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
        let param = ("Mcp-Param-text", "hi");
        // (version header, expected) on a body without `_meta`.
        let cases: &[(Option<&str>, bool)] = &[
            (None, false),
            (Some("2024-11-05"), false),
            (Some("2025-03-26"), false),
            (Some("2025-06-18"), false),
            (Some("2025-11-25"), false),
            (Some("2026-07-28"), true),
        ];
        for (version, passes) in cases {
            let mut h = vec![param];
            h.extend(version.map(|v| ("MCP-Protocol-Version", v)));
            assert_eq!(check(&h, old_call).is_ok(), *passes, "{version:?}");
        }
        // The body's `_meta` version counts when the header is absent.
        assert_eq!(check(&[param], CALL), Ok(()));
    }

    #[test]
    fn modern_calls_are_checked_through_the_tool_map() {
        let h = |hs: &[(&str, &str)]| McpHeaders::capture(hs.iter().copied());
        let body = parse_body(CALL.as_bytes()).unwrap();
        let map = |tool: &str| {
            assert_eq!(tool, "echo");
            Ok(Some(ToolHeaders::Map(vec![paramheaders::Declared {
                path: vec!["Region".into()],
                token: "Where".into(),
            }])))
        };
        assert_eq!(h(&[("Mcp-Param-where", "eu")]).check_with(&body, &map), Ok(()));
        // The body value without its header; a same-name header the map does not declare.
        assert_eq!(code_of(h(&[]).check_with(&body, &map)), Some(code::HEADER_MISMATCH));
        assert_eq!(code_of(h(&[("Mcp-Param-Region", "eu")]).check_with(&body, &map)), Some(code::HEADER_MISMATCH));
        // An unreadable record fails closed.
        let broken = |_: &str| Err("shared data unavailable".to_string());
        assert_eq!(code_of(h(&[]).check_with(&body, &broken)), Some(code::HEADER_MISMATCH));
        // Older protocol versions never consult the map (no header semantics there).
        let old =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"Region":"eu"}}}"#;
        let old = parse_body(old.as_bytes()).unwrap();
        assert_eq!(h(&[("MCP-Protocol-Version", "2025-11-25")]).check_with(&old, &broken), Ok(()));
    }

    #[test]
    fn unsupported_version_is_32022_without_the_gateways_list() {
        let e = check(&[("MCP-Protocol-Version", "2099-01-01")], CALL).unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_VERSION);
        let data = e.data.unwrap();
        assert_eq!(data["requested"], "2099-01-01");
        assert!(data.get("supported").is_none(), "the gateway's list is not the server's: {data}");
        assert!(!e.message.contains("2025-06-18"), "{}", e.message);
    }

    #[test]
    fn an_unknown_version_may_negotiate_with_the_server() {
        let v999 = [("MCP-Protocol-Version", "v999.0.0")];
        let discover = r#"{"jsonrpc":"2.0","id":301,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999.0.0"}}}"#;
        assert_eq!(check(&v999, discover), Ok(()));
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"v999.0.0"}}"#;
        assert_eq!(check(&v999, init), Ok(()));
        // Still checked against the body.
        let other_meta = discover.replace(r#"protocolVersion":"v999.0.0""#, r#"protocolVersion":"2026-07-28""#);
        assert_eq!(code_of(check(&v999, &other_meta)), Some(code::HEADER_MISMATCH));
        // Anything that acts, and batches, are refused before the server.
        let batch = format!("[{discover}]");
        for body in [CALL, batch.as_str(), r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#] {
            assert_eq!(code_of(check(&v999, body)), Some(code::UNSUPPORTED_VERSION), "{body}");
        }
    }

    #[test]
    fn names_and_methods() {
        let read = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a b"}}"#;
        assert_eq!(check(&[("Mcp-Name", "=?base64?ZmlsZTovLy9hIGI=?=")], read), Ok(()));
        assert!(check(&[("Mcp-Name", "file:///etc")], read).is_err());
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(check(&[("Mcp-Name", "echo")], list).is_err(), "a name on a nameless method");
        assert!(check(&[("Mcp-Param-x", "1")], list).is_err());
        let resp = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert!(check(&[("Mcp-Method", "tools/call")], resp).is_err());
    }

    #[test]
    fn batches() {
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#;
        assert_eq!(check(&[("MCP-Protocol-Version", "2025-03-26")], batch), Ok(()));
        assert!(check(&[("Mcp-Method", "ping")], batch).is_err());
        let meta = r#"[{"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}]"#;
        assert!(check(&[("MCP-Protocol-Version", "2025-03-26")], meta).is_err());
    }
}
