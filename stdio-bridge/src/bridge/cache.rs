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

use serde_json::{json, Value};

const METHOD_NOT_FOUND: i64 = -32601;

#[derive(Debug, Default)]
pub struct Cache {
    initialize: Option<Handshake>,
    /// The whole `server/discover` answer without its id.
    discover: Option<Value>,
}

#[derive(Debug, Clone)]
struct Handshake {
    params: Value,
    result: Value,
}

impl Cache {
    pub fn initialize_reply(&self, client_id: &Value) -> Option<Value> {
        self.initialize.as_ref().map(|h| json!({"jsonrpc": "2.0", "id": client_id, "result": h.result}))
    }

    /// Keeps a successful handshake (an error answer is not cached).
    pub fn store_initialize(&mut self, params: Value, reply: &Value) -> bool {
        match reply.get("result") {
            Some(result) => {
                self.initialize = Some(Handshake { params, result: result.clone() });
                true
            }
            None => false,
        }
    }

    /// The `initialize` to replay to a fresh child, if any client shook hands
    /// (its id is replaced when it is sent).
    pub fn replay_request(&self) -> Option<Value> {
        self.initialize.as_ref().map(|h| json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": h.params}))
    }

    /// A respawned child may answer differently (e.g. it was upgraded).
    pub fn refresh_initialize(&mut self, reply: &Value) {
        if let (Some(h), Some(result)) = (self.initialize.as_mut(), reply.get("result")) {
            h.result = result.clone();
        }
    }

    pub fn discover_reply(&self, client_id: &Value) -> Option<Value> {
        self.discover.as_ref().map(|d| {
            let mut reply = d.clone();
            if let Some(obj) = reply.as_object_mut() {
                obj.insert("id".into(), client_id.clone());
            }
            reply
        })
    }

    pub fn store_discover(&mut self, reply: &Value) {
        let cacheable = reply.get("result").is_some()
            || reply.pointer("/error/code").and_then(Value::as_i64) == Some(METHOD_NOT_FOUND);
        if cacheable {
            let mut d = reply.clone();
            if let Some(obj) = d.as_object_mut() {
                obj.remove("id");
            }
            self.discover = Some(d);
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

    #[test]
    fn initialize_is_answered_from_cache_with_the_callers_id() {
        let mut c = Cache::default();
        assert!(c.initialize_reply(&json!(1)).is_none());
        assert!(c.replay_request().is_none());
        assert!(!c.store_initialize(json!({}), &json!({"id": 1, "error": {"code": -1, "message": "no"}})));
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": {}});
        let reply = json!({"jsonrpc": "2.0", "id": 5, "result": {"protocolVersion": "2025-06-18"}});
        assert!(c.store_initialize(params.clone(), &reply));
        let r = c.initialize_reply(&json!("abc")).unwrap();
        assert_eq!(r["id"], "abc");
        assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
        let replay = c.replay_request().unwrap();
        assert_eq!((replay["method"].clone(), replay["params"].clone()), (json!("initialize"), params));
        c.refresh_initialize(&json!({"result": {"protocolVersion": "2025-11-25"}}));
        assert_eq!(c.initialize_reply(&json!(1)).unwrap()["result"]["protocolVersion"], "2025-11-25");
    }

    #[test]
    fn discover_caches_results_and_method_not_found_only() {
        let mut c = Cache::default();
        c.store_discover(&json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "busy"}}));
        assert!(c.discover_reply(&json!(2)).is_none());
        c.store_discover(&json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "nope"}}));
        assert_eq!(c.discover_reply(&json!(2)).unwrap()["error"]["code"], -32601);
        c.store_discover(&json!({"jsonrpc": "2.0", "id": 1, "result": {"supportedVersions": ["2026-07-28"]}}));
        let r = c.discover_reply(&json!(9)).unwrap();
        assert_eq!(r["id"], 9);
        assert_eq!(r["result"]["supportedVersions"][0], "2026-07-28");
    }
}
