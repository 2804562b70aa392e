//! The OAuth key wait, natively: a request that arrives before the key set
//! is loaded is held (its body buffered, never forwarded ahead), woken by
//! the keys, or answered 503 when the wait is over; trailers during the
//! wait end the body without releasing it. One table, one runner.

use super::*;
use crate::auth::b64;
use crate::stream::KEY_WAIT_SECS;
use jwt_simple::prelude::*;
use serde_json::json;

const OAUTH: &str = "servers:
  - name: demo
    policy: { deny_tools: [dangerous_delete] }
auth:
  enabled: true
  type: oauth
  oauth:
    resource: https://gw.example.com/mcp
    jwks_uri: https://auth.example.com/jwks.json
    issuer: https://auth.example.com
limits: { max_body_bytes: 1024 }
audit: { enabled: true }
";

fn key() -> RS256KeyPair {
    RS256KeyPair::from_pem(include_str!("../../../tests/data/test-rsa-a.pem")).unwrap().with_key_id("key-a")
}

fn keyset() -> Vec<u8> {
    let c = key().public_key().to_components();
    let jwk = json!({ "kty": "RSA", "kid": "key-a", "alg": "RS256", "n": b64::encode(&c.n), "e": b64::encode(&c.e) });
    serde_json::to_vec(&json!({ "keys": [jwk] })).unwrap()
}

/// A token valid now (the gateway checks tokens against the wall clock).
fn token() -> String {
    let now = crate::clock::now_secs();
    let claims = json!({
        "iss": "https://auth.example.com", "sub": "alice", "aud": "https://gw.example.com/mcp/demo",
        "iat": now - 10, "exp": now + 3600, "scope": "mcp:read"
    });
    let c: JWTClaims<serde_json::Map<String, Value>> = serde_json::from_value(claims).unwrap();
    format!("Bearer {}", key().sign(c).unwrap())
}

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Request headers; `true`: they end the request.
    Headers(bool),
    /// A body chunk; `true`: it ends the request.
    Data(&'static [u8], bool),
    Trailers,
    /// The key set arrives and the root wakes the waiting requests.
    Keys,
    /// Time passes, then the root's tick runs.
    Wait(u64),
}

#[derive(Debug, PartialEq)]
enum Expect {
    /// Still held by the filter: nothing reached the backend.
    Held,
    /// Forwarded with exactly this body.
    Forwarded(&'static [u8]),
    /// Answered by the gateway (status, JSON-RPC code); nothing forwarded.
    Replied(u16, i64),
}

const ECHO: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
const DELETE: &[u8] =
    br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"dangerous_delete","arguments":{}}}"#;
const HALF: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","#;
const REST: &[u8] = br#""params":{"name":"echo","arguments":{}}}"#;
const BIG: &[u8] = &[b' '; 2000];
const WAIT_MS: u64 = KEY_WAIT_SECS * 1000;

use Expect::*;
use Step::*;

struct Case {
    name: &'static str,
    steps: &'static [Step],
    expect: Expect,
}

const CASES: &[Case] = &[
    Case { name: "held while the keys are missing", steps: &[Headers(false), Data(ECHO, true)], expect: Held },
    Case {
        name: "woken by the keys: the body buffered in two chunks is forwarded whole",
        steps: &[Headers(false), Data(HALF, false), Data(REST, true), Keys],
        expect: Forwarded(ECHO),
    },
    Case {
        name: "keys before the body ends: the body is read, then decided",
        steps: &[Headers(false), Data(HALF, false), Keys, Data(REST, true)],
        expect: Forwarded(ECHO),
    },
    Case {
        name: "woken by the keys into a policy denial",
        steps: &[Headers(false), Data(DELETE, true), Keys],
        expect: Replied(200, -32003),
    },
    Case {
        name: "a tick before the deadline keeps it held",
        steps: &[Headers(false), Data(ECHO, true), Wait(WAIT_MS - 1000)],
        expect: Held,
    },
    Case {
        name: "the wait is over: 503, fail closed",
        steps: &[Headers(false), Data(ECHO, true), Wait(WAIT_MS)],
        expect: Replied(503, -32050),
    },
    Case {
        name: "a body over the limit while waiting is 413",
        steps: &[Headers(false), Data(BIG, false)],
        expect: Replied(413, -32013),
    },
    Case {
        name: "trailers during the wait keep the body held",
        steps: &[Headers(false), Data(ECHO, false), Trailers],
        expect: Held,
    },
    Case {
        name: "trailers during the wait, then keys: the whole body is decided",
        steps: &[Headers(false), Data(HALF, false), Data(REST, false), Trailers, Keys],
        expect: Forwarded(ECHO),
    },
    Case {
        name: "trailers during the wait, then keys: a denied body is never released",
        steps: &[Headers(false), Data(DELETE, false), Trailers, Keys],
        expect: Replied(200, -32003),
    },
    Case {
        name: "trailers during the wait, then time is up: 503",
        steps: &[Headers(false), Data(ECHO, false), Trailers, Wait(WAIT_MS)],
        expect: Replied(503, -32050),
    },
];

fn run(case: &Case) -> (Expect, Envoy) {
    let gw = gateway(OAUTH);
    let mut e = Envoy::new(Some(gw.clone()));
    e.host.now_ms = crate::clock::now_ms();
    let auth = token();
    let mut headers = post("/mcp/demo");
    headers.push(("authorization", &auth));
    for step in case.steps {
        match *step {
            Headers(eos) => {
                e.request_headers(&headers, eos);
            }
            Data(chunk, eos) => {
                e.request_data(chunk, eos);
            }
            Trailers => {
                e.request_trailers();
            }
            Keys => {
                let oauth = gw.auth().oauth().unwrap();
                oauth.install_jwks(&keyset(), crate::clock::now_secs()).unwrap();
                e.tick(oauth.has_keys());
            }
            Wait(ms) => {
                e.host.now_ms += ms;
                e.tick(false);
            }
        }
    }
    let got = match e.reply() {
        Some(r) => {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            Replied(r.status, v["error"]["code"].as_i64().unwrap())
        }
        None if e.request_held() => Held,
        None => Forwarded(Box::leak(e.backend.body.clone().into_boxed_slice())),
    };
    (got, e)
}

#[test]
fn key_wait_cases() {
    let mut failures = Vec::new();
    for case in CASES {
        let (got, e) = run(case);
        if got != case.expect {
            failures.push(format!("{}: expected {:?}, got {got:?}", case.name, case.expect));
        }
        // Whatever happened, nothing reached the backend unless forwarded,
        // and a forwarded request carried its decision.
        match got {
            Forwarded(_) => {
                assert_eq!(e.host.attribute("mcp_decision"), Some("allow"), "{}", case.name);
                assert_eq!(e.backend.header("authorization"), None, "{}: the credential is removed", case.name);
            }
            _ => {
                assert!(e.backend.headers.is_none() && e.backend.body.is_empty(), "{}: reached the backend", case.name)
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_wait_resumes_the_request_once() {
    let case = &CASES[1];
    let (_, e) = run(case);
    assert_eq!(e.host.resumed, 1);
}
