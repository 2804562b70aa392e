//! Trailers end a request whose body the filter holds: the body is decided
//! then (forwarded whole, or refused), never released unchecked.

use super::*;

const LIMITED: &str = "servers:
  - name: demo
    policy: { deny_tools: [dangerous_delete] }
limits: { max_body_bytes: 200 }
";

struct Case {
    name: &'static str,
    chunks: &'static [&'static [u8]],
    /// `None`: forwarded whole; else the gateway's (status, JSON-RPC code).
    expect: Option<(u16, i64)>,
}

const CASES: &[Case] = &[
    Case {
        name: "an allowed call in two chunks, then trailers",
        chunks: &[br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","#, br#""params":{"name":"echo"}}"#],
        expect: None,
    },
    Case {
        name: "a denied call ended by trailers is refused",
        chunks: &[br#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"dangerous_delete"}}"#],
        expect: Some((200, -32003)),
    },
    Case {
        name: "a body that is not JSON-RPC, ended by trailers",
        chunks: &[b"{\"jsonrpc\":"],
        expect: Some((400, -32700)),
    },
    Case { name: "trailers with no body at all: an empty body is refused", chunks: &[], expect: Some((400, -32700)) },
];

#[test]
fn trailers_end_a_held_body() {
    let mut failures = Vec::new();
    for case in CASES {
        let mut e = Envoy::new(Some(gateway(LIMITED)));
        e.request_headers(&post("/mcp/demo"), false);
        for chunk in case.chunks {
            assert_eq!(e.request_data(chunk, false), crate::stream::Action::Pause, "{}: a body is held", case.name);
        }
        assert!(e.backend.body.is_empty(), "{}: nothing went before the trailers", case.name);
        e.request_trailers();
        let whole: Vec<u8> = case.chunks.concat();
        let got = e.reply().map(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap();
            (r.status, v["error"]["code"].as_i64().unwrap_or(0))
        });
        match (got, case.expect) {
            (None, None) if e.backend.body == whole && !e.request_held() => {}
            (Some(g), Some(x)) if g == x && e.backend.headers.is_none() && e.backend.body.is_empty() => {}
            _ => failures.push(format!(
                "{}: expected {:?}, got {got:?}, backend got {:?}",
                case.name,
                case.expect,
                String::from_utf8_lossy(&e.backend.body)
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn trailers_after_an_oversized_body_are_413() {
    // Each chunk within the limit is held; the trailers see all of it.
    let mut e = Envoy::new(Some(gateway(LIMITED)));
    e.request_headers(&post("/mcp/demo"), false);
    let chunk = [b' '; 150];
    e.request_data(&chunk, false);
    // Envoy would call the body callback with the total; the limit is
    // checked there too, so feed the second half without a callback.
    e.host.request_body.extend_from_slice(&chunk);
    e.request_trailers();
    assert_eq!(e.reply().map(|r| r.status), Some(413));
    assert!(e.backend.headers.is_none() && e.backend.body.is_empty());
}
