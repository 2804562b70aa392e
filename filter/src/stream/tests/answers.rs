//! The answer side, natively: replies Envoy made (429, 503, …) wrapped in
//! the JSON envelope with the request's id; a tools/list answer rewritten
//! with its Content-Length fixed; refused redirects; the request counted
//! when it ends; `/health` probes and `/metrics`.

use super::*;
use crate::integrity::BaselineStore;
use crate::names::metric;

const LIMITED: &str = "servers:
  - name: demo
    policy: { allow_tools: [echo] }
rate_limit: { enabled: true, rps: 100, burst: 100, per_tool: true, tool_rps: 1, tool_burst: 5 }
audit: { enabled: true }
";

/// A forwarded `tools/call echo` with JSON-RPC id 9.
fn forwarded_call() -> Envoy {
    let mut e = Envoy::new(Some(gateway(LIMITED)));
    e.request(&post("/mcp/demo"), &[&call("echo", 9)], false);
    assert!(e.reply().is_none() && e.backend.headers.is_some());
    e
}

struct EnvoyCase {
    status: u16,
    details: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// The client's status, JSON-RPC code, audit reason and Retry-After.
    expect: (u16, i64, &'static str, Option<&'static str>),
}

const ENVOY_REPLIES: &[EnvoyCase] = &[
    EnvoyCase {
        status: 429,
        details: "local_rate_limited",
        headers: &[],
        expect: (429, -32029, "rate_limited", Some("1")),
    },
    EnvoyCase {
        status: 429,
        details: "request_rate_limited",
        headers: &[("x-ratelimit-reset", "30")],
        expect: (429, -32029, "rate_limited", Some("30")),
    },
    EnvoyCase {
        status: 503,
        details: "no_healthy_upstream",
        headers: &[],
        expect: (503, -32050, "circuit_open", Some("30")),
    },
    EnvoyCase {
        status: 503,
        details: "upstream_reset_before_response_started{connection_failure}",
        headers: &[],
        expect: (503, -32050, "upstream_unavailable", None),
    },
    EnvoyCase {
        status: 504,
        details: "response_timeout",
        headers: &[],
        expect: (504, -32050, "upstream_timeout", None),
    },
    EnvoyCase {
        status: 503,
        details: "upstream_reset_before_response_started{overflow}",
        headers: &[],
        expect: (503, -32050, "overflow", Some("1")),
    },
];

#[test]
fn envoy_replies_get_the_envelope_with_the_request_id() {
    for case in ENVOY_REPLIES {
        let mut e = forwarded_call();
        let mut headers = vec![("content-type", "text/plain"), ("content-length", "18")];
        headers.extend_from_slice(case.headers);
        e.envoy_reply(case.status, case.details, &headers, b"envoy's plain text");
        e.finish();
        let (status, code, reason, retry) = case.expect;
        let v = json(&e.client);
        assert_eq!(e.client.header(":status"), Some(status.to_string().as_str()), "{}", case.details);
        assert_eq!((v["id"].as_u64(), v["error"]["code"].as_i64()), (Some(9), Some(code)), "{}: {v}", case.details);
        assert_eq!(e.client.header("content-type"), Some("application/json"), "{}", case.details);
        assert_eq!(e.client.header("content-length"), None, "{}: Envoy recomputes it", case.details);
        assert_eq!(e.client.header("retry-after"), retry, "{}", case.details);
        assert_eq!(e.host.attribute("mcp_reason"), Some(reason), "{}", case.details);
        let decision = if status == 429 { "rate_limited" } else { "error" };
        assert_eq!(e.host.attribute("mcp_decision"), Some(decision), "{}", case.details);
        let series = format!("{}.server.demo.tool.echo.decision.{decision}.client.anonymous", metric::TOOL_CALLS);
        assert_eq!(e.host.counters.get(&series), Some(&1), "{}: {:?}", case.details, e.host.counters);
        assert_eq!(e.host.counters.contains_key(metric::RATE_LIMIT_HITS), status == 429, "{}", case.details);
    }
}

#[test]
fn a_bodiless_envoy_reply_keeps_its_status_and_records_the_decision() {
    let mut e = forwarded_call();
    e.envoy_reply(429, "local_rate_limited", &[], b"");
    assert_eq!(e.client.header(":status"), Some("429"));
    assert_eq!(e.client.header("retry-after"), Some("1"));
    assert_eq!(e.host.attribute("mcp_decision"), Some("rate_limited"));
}

#[test]
fn a_backend_error_is_not_mistaken_for_envoys() {
    let mut e = forwarded_call();
    e.host.code_details = "via_upstream".into();
    e.response(&[(":status", "503"), ("content-type", "text/plain")], &[b"backend says no"]);
    assert_eq!(e.client.body, b"backend says no");
    assert_eq!(e.host.attribute("mcp_decision"), Some("allow"));
}

#[test]
fn the_forwarded_call_carries_the_rate_limit_headers() {
    let e = forwarded_call();
    assert_eq!(e.backend.header("x-mcpx-hits"), Some("1"));
    assert_eq!(e.backend.header("x-mcpx-tool"), Some("demo/echo"), "{:?}", e.backend.headers);
    // A single call: the tool bucket is charged x-mcpx-hits (Envoy's fallback).
    assert_eq!(e.backend.header("x-mcpx-tool-hits"), None);
}

#[test]
fn a_tools_list_answer_is_rewritten_with_its_content_length() {
    let mut e = listed(FILTERING);
    assert_eq!(e.backend.header("accept-encoding"), Some("identity"), "lists are asked for uncompressed");
    let body = tools_result(7, &["echo", "dangerous_delete", "other"]);
    let len = body.len().to_string();
    // Headers are held until the body is inspected.
    assert_eq!(
        e.response_headers(&[(":status", "200"), JSON, ("content-length", len.as_str())], false),
        crate::stream::Action::Pause
    );
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    e.response_data(a, false);
    assert!(e.client.headers.is_none() && e.client.body.is_empty(), "nothing before the whole list is inspected");
    e.response_data(b, true);
    let v = json(&e.client);
    assert_eq!(tool_names(&v), ["echo"]);
    assert_eq!(e.client.header("content-length"), Some(e.client.body.len().to_string().as_str()));
}

#[test]
fn an_unparseable_list_answer_is_replaced_by_a_502_envelope() {
    let mut e = listed(FILTERING);
    e.response_headers(&[(":status", "200"), JSON], false);
    e.response_data(br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"}"#, true);
    let v = json(&e.client);
    assert_eq!(
        (e.client.header(":status"), v["id"].as_u64(), v["error"]["code"].as_i64()),
        (Some("502"), Some(7), Some(-32050))
    );
    assert_eq!(e.client.header("content-length"), Some(e.client.body.len().to_string().as_str()));
    assert_eq!(e.host.attribute("mcp_reason"), Some("uninspectable_answer"));
}

#[test]
fn a_redirect_is_refused_with_the_envelope() {
    let mut e = listed(FILTERING);
    e.response(&[(":status", "302"), ("location", "https://elsewhere.example/"), ("content-length", "5")], &[b"moved"]);
    let v = json(&e.client);
    assert_eq!(e.client.header(":status"), Some("502"));
    assert_eq!(e.client.header("location"), None);
    assert_eq!((v["id"].as_u64(), v["error"]["code"].as_i64()), (Some(7), Some(-32050)));
    assert_eq!(e.host.attribute("mcp_reason"), Some("redirect"));
}

#[test]
fn a_finished_request_is_counted_with_bounded_labels() {
    let mut e = forwarded_call();
    e.response(&[(":status", "200"), JSON], &[br#"{"jsonrpc":"2.0","id":9,"result":{}}"#]);
    e.host.now_ms += 12;
    e.finish();
    let c = &e.host.counters;
    assert_eq!(
        c.get(&format!("{}.server.demo.method.tools_call.status_code.200", metric::REQUESTS)),
        Some(&1),
        "{c:?}"
    );
    assert_eq!(
        c.get(&format!("{}.server.demo.tool.echo.decision.allow.client.anonymous", metric::TOOL_CALLS)),
        Some(&1)
    );
    assert_eq!(e.host.histograms, [(format!("{}.server.demo", metric::REQUEST_DURATION_MS), 12)]);
}

#[test]
fn health_probes_every_backend_then_answers() {
    let yaml =
        "servers:\n  - name: demo\n    url: http://127.0.0.1:9/mcp\n  - name: two\n    url: http://127.0.0.1:9/mcp\n";
    let mut e = Envoy::new(Some(gateway(yaml)));
    e.request(&[(":method", "GET"), (":path", "/health"), (":authority", "gw.local")], &[], false);
    assert_eq!(e.host.calls.len(), 2, "one probe per backend, dispatched at once");
    assert!(e.reply().is_none() && e.request_held());
    let ok = br#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    e.call_answer(e.host.calls[0].token, &[(":status", "200"), JSON], ok);
    assert!(e.reply().is_none(), "waits for every probe");
    e.call_answer(e.host.calls[1].token, &[(":status", "500")], b"");
    let r = e.reply().unwrap();
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((r.status, v["status"].as_str()), (200, Some("degraded")), "{}", r.body);
    assert_eq!(
        (v["servers"]["demo"]["healthy"].as_bool(), v["servers"]["two"]["healthy"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(e.host.calls[0].cluster, "mcpx_server_demo");
    assert!(e.backend.headers.is_none());
}

#[test]
fn metrics_get_the_breaker_series() {
    let mut e = Envoy::new(Some(gateway(FILTERING)));
    e.request(&[(":method", "GET"), (":path", "/metrics"), (":authority", "gw.local")], &[], false);
    assert!(e.reply().is_none());
    e.response(&[(":status", "200"), ("content-length", "10")], &[b"# envoy\nx 1"]);
    let text = String::from_utf8(e.client.body.clone()).unwrap();
    assert!(text.starts_with("# envoy\nx 1\n") && text.contains("mcpx_breaker_state"), "{text}");
    assert_eq!(e.client.header("content-length"), None);
}

#[test]
fn without_a_configuration_every_request_is_refused() {
    let mut e = Envoy::new(None);
    e.request(&post("/mcp/demo"), &[&call("echo", 1)], false);
    assert_eq!(e.reply().map(|r| r.status), Some(503));
    assert!(e.backend.headers.is_none() && e.backend.body.is_empty());
}

#[test]
fn a_header_that_is_not_text_is_refused_before_anything_is_decided() {
    let mut e = Envoy::new(Some(gateway(FILTERING)));
    e.host.request_headers =
        post("/mcp/demo").iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect();
    e.host.request_headers.push((b"mcp-method".to_vec(), b"caf\xe9".to_vec()));
    e.request_headers_raw(false);
    e.request_data(&call("echo", 1), true);
    assert_eq!(e.reply().map(|r| r.status), Some(400));
    assert_eq!(e.host.attribute("mcp_reason"), Some("bad_request"));
    assert!(e.backend.headers.is_none() && e.backend.body.is_empty());
}

/// The host calls of an allowed `tools/call` with per-tool rate limits and
/// the audit on, from the request headers to `on_log`: a new call on the
/// request path fails this (the per-request cost must not grow).
#[test]
fn an_allowed_call_makes_the_same_host_calls() {
    let mut e = forwarded_call();
    let request_side = e.host.host_calls.get();
    e.response(&[(":status", "200"), JSON], &[br#"{"jsonrpc":"2.0","id":9,"result":{}}"#]);
    e.finish();
    let total = e.host.host_calls.get();
    // Request: read the headers; read the body; x-mcpx-hits, x-mcpx-tool
    // (x-mcpx-tool-hits only for a batch with other messages); mcp_server,
    // mcp_method, mcp_tool, mcp_decision. Answer (list inspection is on by
    // default): :status, content-type, the buffered body. End: two counters,
    // one histogram; no `response.code` (it was 8, 7): the status is the
    // `:status` the answer phase already read.
    assert_eq!((request_side, total - request_side), (8, 6), "attributes {:?}", e.host.attributes);
}

#[test]
fn a_configuration_is_refused_with_its_reason_or_built() {
    use crate::stream::configure::configure;
    use crate::stream::fake::FakeHost;
    let cases: &[(Option<&[u8]>, Option<&str>)] = &[
        (None, Some("the plugin configuration is empty")),
        (Some(b""), Some("the plugin configuration is empty")),
        (Some(b"servers: \xff"), Some("not UTF-8")),
        (Some(b"servers: 3"), Some("invalid configuration")),
        (Some(FILTERING.as_bytes()), None),
    ];
    for (bytes, refused) in cases {
        let mut host = FakeHost::default();
        let got = configure(&mut host, *bytes);
        match refused {
            Some(why) => {
                assert!(got.is_none(), "{why}");
                assert!(
                    host.logs.iter().any(|(l, m)| *l == crate::stream::Level::Error && m.contains(why)),
                    "{:?}",
                    host.logs
                );
            }
            None => {
                assert!(got.is_some(), "{:?}", host.logs);
                assert!(host.get(crate::integrity::BASELINE_KEY).unwrap().is_some(), "the baseline keys are created");
            }
        }
    }
}
