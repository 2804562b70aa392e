//! What the bridge remembers about a server's handshake so clients after
//! the first do not need a child round trip, and so a respawned child can be
//! brought back to the state existing sessions expect.
//!
//! Handshake era: the first successful `initialize` (its params and result)
//! is kept; later `initialize` requests are answered from it, and after a
//! respawn the bridge replays it (`initialize` + `notifications/initialized`)
//! before the new child sees any client request. Modern era: the first
//! `server/discover` answer is kept likewise (a "method not found" answer
//! too, so legacy servers are not re-probed by every client).

use super::reply::Reply;
use serde_json::{json, Value};

const METHOD_NOT_FOUND: i64 = -32601;

#[derive(Debug, Default)]
pub struct Cache {
    initialize: Option<Handshake>,
    discover: Option<Reply>,
}

#[derive(Debug, Clone)]
struct Handshake {
    params: Value,
    result: Reply,
}

impl Cache {
    pub fn initialize_reply(&self) -> Option<Reply> {
        self.initialize.as_ref().map(|h| h.result.clone())
    }

    /// Keeps a successful handshake (an error answer is not cached).
    pub fn store_initialize(&mut self, params: Value, reply: &Reply) -> bool {
        if !reply.is_result() {
            return false;
        }
        self.initialize = Some(Handshake { params, result: reply.clone() });
        true
    }

    /// The `initialize` to replay to a fresh child, if any client shook hands
    /// (its id is replaced when it is sent).
    pub fn replay_request(&self) -> Option<Value> {
        self.initialize.as_ref().map(|h| json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": h.params}))
    }

    /// A respawned child may answer differently (e.g. it was upgraded).
    pub fn refresh_initialize(&mut self, reply: &Reply) {
        if let (Some(h), true) = (self.initialize.as_mut(), reply.is_result()) {
            h.result = reply.clone();
        }
    }

    pub fn discover_reply(&self) -> Option<Reply> {
        self.discover.clone()
    }

    pub fn store_discover(&mut self, reply: &Reply) {
        if reply.is_result() || reply.error_code() == Some(METHOD_NOT_FOUND) {
            self.discover = Some(reply.clone());
        }
    }
}

/// The notification that completes a handshake.
pub fn initialized() -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/initialized"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::reply::Peek;

    fn reply(line: &str) -> Reply {
        let peek: Peek = serde_json::from_str(line).unwrap();
        Reply::from_peek(&peek).unwrap()
    }

    #[test]
    fn initialize_is_answered_from_cache_with_the_callers_id() {
        let mut c = Cache::default();
        assert!(c.initialize_reply().is_none());
        assert!(c.replay_request().is_none());
        assert!(!c.store_initialize(json!({}), &reply(r#"{"id":1,"error":{"code":-1,"message":"no"}}"#)));
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": {}});
        assert!(c.store_initialize(params.clone(), &reply(r#"{"id":5,"result":{"protocolVersion":"2025-06-18"}}"#)));
        let r: Value = serde_json::from_str(&c.initialize_reply().unwrap().message(&json!("abc"))).unwrap();
        assert_eq!(r["id"], "abc");
        assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
        let replay = c.replay_request().unwrap();
        assert_eq!((replay["method"].clone(), replay["params"].clone()), (json!("initialize"), params));
        c.refresh_initialize(&reply(r#"{"id":0,"result":{"protocolVersion":"2025-11-25"}}"#));
        assert_eq!(c.initialize_reply().unwrap().result_value().unwrap()["protocolVersion"], "2025-11-25");
    }

    #[test]
    fn discover_caches_results_and_method_not_found_only() {
        let mut c = Cache::default();
        c.store_discover(&reply(r#"{"id":1,"error":{"code":-32603,"message":"busy"}}"#));
        assert!(c.discover_reply().is_none());
        c.store_discover(&reply(r#"{"id":1,"error":{"code":-32601,"message":"nope"}}"#));
        assert_eq!(c.discover_reply().unwrap().error_code(), Some(-32601));
        c.store_discover(&reply(r#"{"id":1,"result":{"supportedVersions":["2026-07-28"]}}"#));
        let r = c.discover_reply().unwrap().result_value().unwrap();
        assert_eq!(r["supportedVersions"][0], "2026-07-28");
    }
}
