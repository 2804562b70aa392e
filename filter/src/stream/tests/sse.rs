//! Event-stream answers fed in chunks, as Envoy hands them over: an event
//! goes on only once it is complete and inspected, however the chunks cut
//! it; an event that cannot be inspected (or never ends within the limit)
//! ends the stream with an error event, and nothing after it is passed.

use super::*;
use crate::response::sse::MAX_PENDING_EVENT;
use crate::stream::Action;

const SSE: (&str, &str) = ("content-type", "text/event-stream");

fn stream_answer() -> Vec<(&'static str, &'static str)> {
    vec![(":status", "200"), SSE, ("content-length", "999")]
}

/// One event whose list holds a denied tool.
fn event() -> String {
    format!("event: message\nid: 41\ndata: {}\n\n", tools_result(7, &["echo", "dangerous_delete"]))
}

/// The data of each event the client received.
fn events(body: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(body.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or_else(|| panic!("no data in {e:?}"));
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

#[test]
fn an_event_cut_anywhere_is_passed_only_once_whole_and_inspected() {
    let ev = event();
    let bytes = ev.as_bytes();
    for cut in 1..bytes.len() {
        let mut e = listed(FILTERING);
        assert_eq!(e.response_headers(&stream_answer(), false), Action::Continue);
        let (a, b) = bytes.split_at(cut);
        e.response_data(a, false);
        assert!(e.client.body.is_empty(), "cut {cut}: part of an unfinished event went on");
        e.response_data(b, true);
        let got = events(&e.client.body);
        assert_eq!(got.len(), 1, "cut {cut}");
        assert_eq!(tool_names(&got[0]), ["echo"], "cut {cut}: the denied tool is removed");
        let text = String::from_utf8_lossy(&e.client.body);
        assert!(!text.lines().any(|l| l.starts_with("id:")), "cut {cut}: a list answer's event id is dropped");
        assert_eq!(e.client.header("content-length"), None, "cut {cut}: the events change length");
    }
}

#[test]
fn complete_events_go_on_at_once_and_the_unfinished_one_waits() {
    let mut e = listed(FILTERING);
    e.response_headers(&stream_answer(), false);
    let first = event();
    let second = event();
    let (head, tail) = second.split_at(30);
    e.response_data(format!("{first}{head}").as_bytes(), false);
    assert_eq!(events(&e.client.body).len(), 1, "the complete event went on, the cut one waits");
    e.response_data(tail.as_bytes(), false);
    assert_eq!(events(&e.client.body).len(), 2);
    e.response_data(b"", true);
    assert!(events(&e.client.body).iter().all(|v| tool_names(v) == ["echo"]));
}

#[test]
fn an_oversized_event_drops_the_stream_with_an_error_event() {
    let mut e = listed(FILTERING);
    e.response_headers(&stream_answer(), false);
    e.response_data(event().as_bytes(), false);
    let passed = e.client.body.len();
    assert!(passed > 0);
    // An event that never ends, past the limit.
    let mut huge = b"event: message\ndata: ".to_vec();
    huge.resize(MAX_PENDING_EVENT + 1, b'x');
    e.response_data(&huge, false);
    let after = &e.client.body[passed..];
    let got = events(after);
    assert_eq!(got.len(), 1, "exactly one error event: {:?}", String::from_utf8_lossy(after));
    assert_eq!(got[0]["error"]["code"], -32050);
    assert_eq!(got[0]["id"], 7, "the error answers the list request");
    assert!(got[0]["error"]["message"].as_str().unwrap().contains("bytes"));
    assert_eq!(e.host.attribute("mcp_decision"), Some("error"));
    assert_eq!(e.host.attribute("mcp_reason"), Some("uninspectable_answer"));
    // Whatever comes next is dropped.
    let len = e.client.body.len();
    e.response_data(event().as_bytes(), false);
    e.response_data(b"data: more\n\n", true);
    assert_eq!(e.client.body.len(), len, "nothing after the error event");
}

#[test]
fn an_uninspectable_event_drops_the_stream_with_an_error_event() {
    let mut e = listed(FILTERING);
    e.response_headers(&stream_answer(), false);
    e.response_data(b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[\n\n", false);
    let got = events(&e.client.body);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0]["id"].clone(), got[0]["error"]["code"].clone()), (json_id(7), Value::from(-32050)));
    let len = e.client.body.len();
    e.response_data(event().as_bytes(), true);
    assert_eq!(e.client.body.len(), len, "nothing after the error event");
}

fn json_id(n: u64) -> Value {
    Value::from(n)
}
