//! Protocol eras on one shared child. MCP has two: the handshake era
//! (2024-11-05 … 2025-11-25: `initialize`, then requests on that session) and
//! the 2026-07-28 era (no handshake: every request carries its protocol
//! version, client info and capabilities in `params._meta`, and
//! `server/discover` describes the server). A stdio connection serves one era
//! for its whole life, and a child's one connection is the bridge's, not any
//! client's. So the bridge, not the first client, opens it, in the era that
//! serves every client:
//!
//! - the handshake era whenever the child accepts `initialize` (every server
//!   of either era but a 2026-only one does). Handshake clients are then
//!   served as they are; 2026-07-28 requests lose their envelope on the way
//!   in (the child would refuse it on a handshake connection) and
//!   `server/discover` is answered from the child's `initialize` result.
//! - the 2026-07-28 era when the child refuses `initialize` naming only
//!   2026-era versions. 2026-07-28 requests pass as they are; handshake
//!   clients get their `initialize` answered from the child's
//!   `server/discover` result and an envelope put on each request.
//!
//! Which era a request belongs to is read from the request itself (its
//! envelope), never from what an earlier client did. What the bridge says
//! about the child is tied to the running child (see `upstream::Instance`):
//! a new child is asked again.

use super::reply::Reply;
use serde_json::{json, Map, Value};

pub const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
pub const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
pub const CLIENT_CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";
/// The envelope keys a handshake-era child must not see.
const ENVELOPE_KEYS: &[&str] = &[PROTOCOL_VERSION_KEY, CLIENT_INFO_KEY, CLIENT_CAPABILITIES_KEY, LOG_LEVEL_KEY];

/// Handshake-era versions the bridge can serve, oldest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// 2026-era versions the bridge can serve.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// The version the bridge offers a child in its own `initialize`.
pub const BRIDGE_HANDSHAKE_VERSION: &str = "2025-11-25";

pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// What the bridge's one connection to a child speaks, and what the child
/// said about itself when it was opened.
#[derive(Debug, Clone)]
pub enum ChildEra {
    /// Opened with `initialize`; its result, kept verbatim.
    Handshake { initialize: Reply },
    /// 2026-only: opened with `server/discover` at `version`; its result.
    Modern { discover: Reply, version: String },
}

/// The era one request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestEra {
    Handshake,
    /// Carries the envelope (or is `server/discover`); the version it names
    /// (None: not a string).
    Modern(Option<String>),
}

/// `initialize` is the handshake whatever it carries; `server/discover` and
/// any request whose `params._meta` names a protocol version are 2026-era
/// (the same test as the official SDKs': a bare `_meta` is not evidence,
/// handshake clients put `progressToken` there).
pub fn request_era(message: &Value) -> RequestEra {
    let method = message.get("method").and_then(Value::as_str);
    if method == Some("initialize") {
        return RequestEra::Handshake;
    }
    let version = message.pointer("/params/_meta").and_then(Value::as_object).and_then(|m| m.get(PROTOCOL_VERSION_KEY));
    match version {
        Some(v) => RequestEra::Modern(v.as_str().map(str::to_string)),
        // A bare probe: answered at the newest version the bridge serves.
        None if method == Some("server/discover") => RequestEra::Modern(MODERN_VERSIONS.last().map(|v| v.to_string())),
        None => RequestEra::Handshake,
    }
}

/// The bridge's own `initialize` to a child. Its capabilities are what the
/// bridge can carry, whoever the clients are: none, because server-to-client
/// requests (sampling, elicitation, roots) are not relayed. A child then
/// offers nothing that would need them (the first client's capabilities
/// never decide what the shared child offers everybody).
pub fn bridge_initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": BRIDGE_HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "mcpx-bridge", "version": env!("CARGO_PKG_VERSION")},
    }})
}

/// The bridge's `server/discover` to a 2026-only child, with its envelope.
pub fn bridge_discover(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": bridge_envelope(version)}})
}

fn bridge_envelope(version: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(PROTOCOL_VERSION_KEY.into(), json!(version));
    m.insert(CLIENT_CAPABILITIES_KEY.into(), json!({}));
    m.insert(CLIENT_INFO_KEY.into(), json!({"name": "mcpx-bridge", "version": env!("CARGO_PKG_VERSION")}));
    m
}

/// An `initialize` refused with -32022 whose `data.supported` names only
/// 2026-era versions: the child speaks only that era. Returns the newest
/// such version the bridge serves.
pub fn modern_only(reply: &Reply) -> Option<String> {
    if reply.error_code() != Some(UNSUPPORTED_PROTOCOL_VERSION) {
        return None;
    }
    let error = reply.error_value()?;
    let supported: Vec<&str> = error.pointer("/data/supported")?.as_array()?.iter().filter_map(Value::as_str).collect();
    if supported.iter().any(|v| HANDSHAKE_VERSIONS.contains(v)) {
        return None;
    }
    MODERN_VERSIONS.iter().rev().find(|v| supported.contains(v)).map(|v| v.to_string())
}

/// -32022 for a 2026-era request naming a version the bridge does not serve.
pub fn unsupported_version(requested: Option<&str>) -> Reply {
    let mut supported: Vec<&str> = MODERN_VERSIONS.to_vec();
    supported.extend_from_slice(HANDSHAKE_VERSIONS);
    let data = json!({"supported": supported, "requested": requested});
    Reply::error_with_data(
        UNSUPPORTED_PROTOCOL_VERSION,
        &format!(
            "unsupported protocol version {}: the mcpx bridge serves {} per request, or {} through initialize",
            requested.map(|v| format!("{v:?}")).unwrap_or_else(|| "(not a string)".into()),
            MODERN_VERSIONS.join(", "),
            HANDSHAKE_VERSIONS.join(", ")
        ),
        data,
    )
}

/// A 2026-07-28 request on its way to a handshake-era child: the envelope
/// keys go (the child would refuse the request otherwise); the rest of
/// `_meta` (e.g. `progressToken`) stays.
pub fn strip_envelope(message: &mut Value) {
    let Some(params) = message.get_mut("params").and_then(Value::as_object_mut) else { return };
    let empty = match params.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(meta) => {
            for k in ENVELOPE_KEYS {
                meta.remove(*k);
            }
            meta.is_empty()
        }
        None => false,
    };
    if empty {
        params.remove("_meta");
    }
}

/// A handshake-era request on its way to a 2026-only child: it gets the
/// bridge's envelope (the bridge's capabilities, for the same reason as in
/// [`bridge_initialize`]).
pub fn add_envelope(message: &mut Value, version: &str) {
    let Some(obj) = message.as_object_mut() else { return };
    let params = obj.entry("params").or_insert_with(|| json!({}));
    if !params.is_object() {
        return;
    }
    let Some(params) = params.as_object_mut() else { return };
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        for (k, v) in bridge_envelope(version) {
            meta.insert(k, v);
        }
    }
}

/// Results whose 2026-07-28 form carries caching directives.
const CACHEABLE: &[&str] =
    &["tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read", "server/discover"];

/// A handshake-era child's result on its way to a 2026-07-28 client: the
/// fields that era requires and the older one lacks are added. `resultType`
/// is "complete" (a handshake-era result is never anything else); caching
/// is "private" with a ttl of 0 (the child said nothing about caching, so
/// nothing may be reused). Errors and fields already there are untouched.
pub fn to_modern_result(method: &str, reply: Reply) -> Reply {
    let Some(Value::Object(mut result)) = reply.result_value() else { return reply };
    let mut add = vec![("resultType", json!("complete"))];
    if CACHEABLE.contains(&method) {
        add.extend([("cacheScope", json!("private")), ("ttlMs", json!(0))]);
    }
    if add.iter().all(|(k, _)| result.contains_key(*k)) {
        return reply;
    }
    for (k, v) in add {
        result.entry(k).or_insert(v);
    }
    Reply::result(&Value::Object(result))
}

/// `server/discover` answered for a handshake-era child, from its
/// `initialize` result: the same capabilities, server info and instructions.
pub fn discover_from_initialize(initialize: &Reply) -> Reply {
    let Some(init) = initialize.result_value() else { return initialize.clone() };
    let mut result = Map::new();
    result.insert("supportedVersions".into(), json!(MODERN_VERSIONS));
    result.insert("capabilities".into(), init.get("capabilities").cloned().unwrap_or_else(|| json!({})));
    if let Some(i) = init.get("instructions") {
        result.insert("instructions".into(), i.clone());
    }
    if let Some(info) = init.get("serverInfo") {
        result.insert("_meta".into(), json!({SERVER_INFO_KEY: info}));
    }
    to_modern_result("server/discover", Reply::result(&Value::Object(result)))
}

/// `initialize` answered for a 2026-only child, from its `server/discover`
/// result. The version is the client's when the bridge serves it (nothing
/// version-specific passes the handshake: every later request is re-enveloped
/// at the child's version), else the newest handshake version.
pub fn initialize_from_discover(discover: &Reply, requested: Option<&str>, server: &str) -> Reply {
    let Some(d) = discover.result_value() else { return discover.clone() };
    let version = requested.filter(|v| HANDSHAKE_VERSIONS.contains(v)).unwrap_or(BRIDGE_HANDSHAKE_VERSION);
    let info = d
        .pointer(&format!("/_meta/{}", SERVER_INFO_KEY.replace('/', "~1")))
        .cloned()
        .unwrap_or_else(|| json!({"name": server, "version": ""}));
    let mut result = Map::new();
    result.insert("protocolVersion".into(), json!(version));
    result.insert("capabilities".into(), d.get("capabilities").cloned().unwrap_or_else(|| json!({})));
    result.insert("serverInfo".into(), info);
    if let Some(i) = d.get("instructions") {
        result.insert("instructions".into(), i.clone());
    }
    Reply::result(&Value::Object(result))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::reply::Peek;

    fn reply(line: &str) -> Reply {
        let peek: Peek = serde_json::from_str(line).unwrap();
        Reply::from_peek(&peek).unwrap()
    }

    fn modern(method: &str) -> Value {
        json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"_meta": {
            PROTOCOL_VERSION_KEY: "2026-07-28", CLIENT_CAPABILITIES_KEY: {}, CLIENT_INFO_KEY: {"name": "c"},
            LOG_LEVEL_KEY: "debug", "progressToken": 7}}})
    }

    #[test]
    fn the_era_is_read_from_each_request() {
        assert_eq!(request_era(&modern("tools/list")), RequestEra::Modern(Some("2026-07-28".into())));
        let legacy =
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": {"progressToken": 1}}});
        assert_eq!(request_era(&legacy), RequestEra::Handshake);
        // `initialize` is the handshake even when a client stamps the envelope on it.
        assert_eq!(request_era(&modern("initialize")), RequestEra::Handshake);
        assert_eq!(
            request_era(&json!({"id": 1, "method": "server/discover"})),
            RequestEra::Modern(Some("2026-07-28".into()))
        );
        let odd = json!({"id": 1, "method": "ping", "params": {"_meta": {PROTOCOL_VERSION_KEY: 5}}});
        assert_eq!(request_era(&odd), RequestEra::Modern(None));
    }

    #[test]
    fn the_envelope_is_stripped_for_a_handshake_child_and_added_for_a_modern_one() {
        let mut m = modern("tools/call");
        strip_envelope(&mut m);
        assert_eq!(m["params"]["_meta"], json!({"progressToken": 7}));
        let mut bare = json!({"id": 1, "method": "ping", "params": {"_meta": {PROTOCOL_VERSION_KEY: "2026-07-28"}}});
        strip_envelope(&mut bare);
        assert_eq!(bare["params"], json!({}));
        let mut legacy = json!({"id": 1, "method": "tools/list"});
        add_envelope(&mut legacy, "2026-07-28");
        assert_eq!(request_era(&legacy), RequestEra::Modern(Some("2026-07-28".into())));
        assert_eq!(legacy["params"]["_meta"][CLIENT_CAPABILITIES_KEY], json!({}));
    }

    #[test]
    fn bridge_handshake_declares_no_client_capabilities() {
        let init = bridge_initialize();
        assert_eq!(init["params"]["capabilities"], json!({}));
        assert_eq!(init["params"]["protocolVersion"], BRIDGE_HANDSHAKE_VERSION);
    }

    #[test]
    fn discover_and_initialize_are_derived_from_each_other() {
        let init = reply(
            r#"{"id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"},"instructions":"hi"}}"#,
        );
        let d = discover_from_initialize(&init).result_value().unwrap();
        assert_eq!(d["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(d["capabilities"], json!({"tools": {}}));
        assert_eq!(d["_meta"][SERVER_INFO_KEY]["name"], "s");
        assert_eq!(d["instructions"], "hi");
        let back = initialize_from_discover(&Reply::result(&d), Some("2025-06-18"), "x").result_value().unwrap();
        assert_eq!(back["protocolVersion"], "2025-06-18");
        assert_eq!(back["serverInfo"]["name"], "s");
        assert_eq!(back["capabilities"], json!({"tools": {}}));
        let unknown = initialize_from_discover(&Reply::result(&json!({})), Some("1999-01-01"), "x");
        assert_eq!(unknown.result_value().unwrap()["protocolVersion"], BRIDGE_HANDSHAKE_VERSION);
        assert_eq!(unknown.result_value().unwrap()["serverInfo"]["name"], "x");
    }

    #[test]
    fn handshake_results_get_the_fields_2026_requires() {
        let list = to_modern_result("tools/list", Reply::result(&json!({"tools": []}))).result_value().unwrap();
        assert_eq!(list, json!({"tools": [], "resultType": "complete", "cacheScope": "private", "ttlMs": 0}));
        let call = to_modern_result("tools/call", Reply::result(&json!({"content": [], "resultType": "x"})));
        assert_eq!(call.result_value().unwrap(), json!({"content": [], "resultType": "x"}));
        let err = to_modern_result("tools/list", Reply::error(-1, "no"));
        assert_eq!(err.error_code(), Some(-1));
        let d = discover_from_initialize(&Reply::result(&json!({"capabilities": {}}))).result_value().unwrap();
        assert_eq!((d["ttlMs"].clone(), d["cacheScope"].clone()), (json!(0), json!("private")));
    }

    #[test]
    fn only_a_refusal_naming_2026_versions_alone_means_modern_only() {
        let only = reply(r#"{"id":0,"error":{"code":-32022,"message":"m","data":{"supported":["2026-07-28"]}}}"#);
        assert_eq!(modern_only(&only).as_deref(), Some("2026-07-28"));
        let both =
            reply(r#"{"id":0,"error":{"code":-32022,"message":"m","data":{"supported":["2025-11-25","2026-07-28"]}}}"#);
        assert_eq!(modern_only(&both), None);
        assert_eq!(modern_only(&reply(r#"{"id":0,"error":{"code":-32601,"message":"m"}}"#)), None);
        let r = unsupported_version(Some("2099-01-01"));
        assert_eq!(r.error_code(), Some(UNSUPPORTED_PROTOCOL_VERSION));
        assert_eq!(r.error_value().unwrap()["data"]["requested"], "2099-01-01");
    }
}
