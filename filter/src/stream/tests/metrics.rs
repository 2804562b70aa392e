//! The series and labels a finished request leaves, for a table of
//! requests: written out as the names the per-request `format!` code (before
//! the borrowed-label writer) produced, so the exported series cannot drift.

use super::{call, gateway, post, JSON, LIST};
use crate::stream::fake::Envoy;

const CONFIG: &str = "servers:
  - name: demo
    policy:
      allow_tools: [echo]
      deny_tools: [dangerous_delete]
auth:
  enabled: true
  clients:
    - { name: ci.bot, token: bot-token }
";

struct Case {
    what: &'static str,
    drive: fn(&mut Envoy),
    /// Every counter with its value, and every histogram name.
    counters: &'static [(&'static str, u64)],
    histograms: &'static [&'static str],
}

fn bot(path: &str) -> Vec<(&str, &str)> {
    let mut h = post(path);
    h.push(("authorization", "Bearer bot-token"));
    h
}

const ANSWER: &[u8] = br#"{"jsonrpc":"2.0","id":9,"result":{}}"#;

const CASES: &[Case] = &[
    Case {
        what: "allowed call",
        drive: |e| {
            e.request(&bot("/mcp/demo"), &[&call("echo", 9)], false);
            e.response(&[(":status", "200"), JSON], &[ANSWER]);
        },
        counters: &[
            ("mcpx_requests_total.server.demo.method.tools_call.status_code.200", 1),
            ("mcpx_tool_calls_total.server.demo.tool.echo.decision.allow.client.ci_bot", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "denied call",
        drive: |e| e.request(&bot("/mcp/demo"), &[&call("dangerous_delete", 9)], false),
        counters: &[
            ("mcpx_requests_total.server.demo.method.tools_call.status_code.200", 1),
            ("mcpx_tool_calls_total.server.demo.tool.dangerous_delete.decision.deny.client.ci_bot", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "unknown tool: _other",
        drive: |e| e.request(&bot("/mcp/demo"), &[&call("mint.a-series!", 9)], false),
        counters: &[
            ("mcpx_requests_total.server.demo.method.tools_call.status_code.200", 1),
            ("mcpx_tool_calls_total.server.demo.tool._other.decision.deny.client.ci_bot", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "Envoy's 429",
        drive: |e| {
            e.request(&bot("/mcp/demo"), &[&call("echo", 9)], false);
            e.envoy_reply(429, "local_rate_limited", &[], b"");
        },
        counters: &[
            ("mcpx_rate_limit_hits_total", 1),
            ("mcpx_requests_total.server.demo.method.tools_call.status_code.429", 1),
            ("mcpx_tool_calls_total.server.demo.tool.echo.decision.rate_limited.client.ci_bot", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "filter reply: a wrong token",
        drive: |e| {
            let mut h = post("/mcp/demo");
            h.push(("authorization", "Bearer wrong"));
            e.request(&h, &[&call("echo", 9)], false);
        },
        counters: &[
            ("mcpx_auth_failures_total", 1),
            ("mcpx_requests_total.server.demo.method.none.status_code.401", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "tools/list",
        drive: |e| {
            e.request(&bot("/mcp/demo"), &[LIST], false);
            e.response(&[(":status", "200"), JSON], &[br#"{"jsonrpc":"2.0","id":7,"result":{"tools":[]}}"#]);
        },
        counters: &[("mcpx_requests_total.server.demo.method.tools_list.status_code.200", 1)],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "a backend 500, passed through",
        drive: |e| {
            e.request(&bot("/mcp/demo"), &[&call("echo", 9)], false);
            e.response(&[(":status", "500"), JSON], &[ANSWER]);
        },
        counters: &[
            ("mcpx_requests_total.server.demo.method.tools_call.status_code.500", 1),
            ("mcpx_tool_calls_total.server.demo.tool.echo.decision.allow.client.ci_bot", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "a backend redirect, refused by the filter (502)",
        drive: |e| {
            e.request(&bot("/mcp/demo"), &[&call("echo", 9)], false);
            e.response(&[(":status", "302"), ("location", "https://elsewhere.example/"), JSON], &[ANSWER]);
        },
        counters: &[
            ("mcpx_requests_total.server.demo.method.tools_call.status_code.502", 1),
            ("mcpx_tool_calls_total.server.demo.tool.echo.decision.error.client.ci_bot", 1),
        ],
        histograms: &["mcpx_request_duration_ms.server.demo"],
    },
    Case {
        what: "an unknown server",
        drive: |e| e.request(&bot("/mcp/no.such"), &[&call("echo", 9)], false),
        counters: &[("mcpx_requests_total.server._unknown.method.none.status_code.404", 1)],
        histograms: &["mcpx_request_duration_ms.server._unknown"],
    },
];

#[test]
fn each_request_leaves_exactly_the_series_it_always_did() {
    let gw = gateway(CONFIG);
    for case in CASES {
        let mut e = Envoy::new(Some(gw.clone()));
        (case.drive)(&mut e);
        e.host.now_ms += 7;
        e.finish();
        let counters: Vec<(&str, u64)> = e.host.counters.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(counters, case.counters, "{}", case.what);
        let histograms: Vec<(&str, u64)> = e.host.histograms.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let want: Vec<(&str, u64)> = case.histograms.iter().map(|h| (*h, 7)).collect();
        assert_eq!(histograms, want, "{}", case.what);
    }
}
