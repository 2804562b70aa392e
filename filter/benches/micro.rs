//! Native micro-benchmarks of the filter's host-independent core.
//!
//!     cargo bench -p mcpx-filter --bench micro -- [--quick] [--json FILE] [FILTER]
//!
//! No framework (no new dependencies): every case is timed in batches sized
//! to a few milliseconds each, and the median batch gives ns per iteration
//! (the minimum is printed too; the median is the one to quote on a shared
//! machine). `make bench` runs this and puts the table into
//! docs/performance.md.
//!
//! To add a case, push one more `Case` in `cases()`. The cases for modules
//! that other work adds (integrity pinning, JWT auth) live in `pending` at the
//! bottom: until those modules exist they either measure a stand-in (and say
//! so in `note`) or report themselves as skipped, so this file always builds
//! against the current tree.

use mcpx_filter::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead, ResponsePlan};
use mcpx_filter::jsonrpc;
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The gateway config of the benchmarks: the policy part of the "full
/// gateway" variant in tests/bench/bench.py (argument rules included).
const CONFIG: &str = r#"
servers:
  - name: demo
    policy:
      allow_tools: [echo, read_file, tool_0, tool_1]
      deny_tools: [dangerous_delete]
      tool_rules:
        echo:
          args:
            text: { regex: "^[a-z0-9 ]{1,200}$", required: true }
        read_file:
          args:
            path: { prefix: "/data/" }
clients:
  ci-bot:
    servers:
      demo: { allow_tools: [echo] }
"#;

/// A typical tools/call (about the size of the spike's 346-byte body).
const TOOLS_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from the mcpx benchmark this is a typical short argument"},"_meta":{"progressToken":"bench-1","client":"wrk"}}}"#;

/// The same call with an argument that breaks the regex rule: the deny path
/// (error envelope included).
const TOOLS_CALL_DENIED: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"text":"Hello; rm -rf / # not allowed by the rule"}}}"#;

pub struct Case {
    pub name: String,
    /// Shown next to the figure (what it measures, or why it is a stand-in).
    pub note: String,
    /// Runs one iteration; `None` means skipped (the note says why).
    pub run: Option<Box<dyn FnMut()>>,
}

fn case(name: impl Into<String>, note: impl Into<String>, run: impl FnMut() + 'static) -> Case {
    Case { name: name.into(), note: note.into(), run: Some(Box::new(run)) }
}

fn skipped(name: impl Into<String>, why: impl Into<String>) -> Case {
    Case { name: name.into(), note: why.into(), run: None }
}

fn gateway() -> Gateway {
    Gateway::from_plugin_config(CONFIG).expect("the benchmark config is valid")
}

fn request_headers() -> Vec<(String, String)> {
    [
        (":authority", "127.0.0.1:8080"),
        (":path", "/mcp/demo"),
        (":method", "POST"),
        (":scheme", "http"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("authorization", "Bearer bench-token-0123456789"),
        ("mcp-protocol-version", "2025-11-25"),
        ("content-length", "221"),
        ("user-agent", "wrk"),
        ("x-request-id", "6f1c0f0e-8d0a-4a43-9b43-0c6a3c9f7b10"),
        ("x-forwarded-proto", "http"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A `tools/list` response shaped like the demo server's `--tools N` tools.
pub fn tools_list_response(n: usize) -> Vec<u8> {
    let mut tools = vec![json!({"name": "dangerous_delete", "description": "Deletes a path.",
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}})];
    tools.extend((0..n).map(|i| {
        json!({
            "name": format!("tool_{i}"),
            "description": format!("Generated tool number {i} for large tools/list tests."),
            "inputSchema": {"type": "object",
                "properties": {"value": {"type": "string", "description": "any value"}}, "required": []},
        })
    }));
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": tools}})).unwrap_or_default()
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();

    let gw = gateway();
    let headers = request_headers();
    out.push(case("headers: POST /mcp/demo", "Gateway::on_request_headers (routing, content checks)", move || {
        let mut a = Attributes::default();
        let o = gw.on_request_headers(&RequestHead { headers: black_box(&headers) }, &mut a);
        assert!(matches!(o, HeadOutcome::ReadBody(_)));
        black_box(o);
    }));

    out.push(case(
        "parse: tools/call",
        format!("jsonrpc::parse_body, strict (duplicate-key checks), {} bytes", TOOLS_CALL.len()),
        || {
            black_box(jsonrpc::parse_body(black_box(TOOLS_CALL.as_bytes())).ok());
        },
    ));

    for (name, identity, body, allowed) in [
        ("parse + decide: tools/call allowed", None, TOOLS_CALL, true),
        ("parse + decide: tools/call, client override", Some("ci-bot"), TOOLS_CALL, true),
        ("parse + decide: tools/call denied by arg rule", None, TOOLS_CALL_DENIED, false),
    ] {
        let gw = gateway();
        let req = McpRequest { server: "demo".into(), identity: identity.map(String::from) };
        out.push(case(name, "Gateway::on_request_body: parse, policy + regex argument rule, outcome", move || {
            let mut a = Attributes::default();
            let o = gw.on_request_body(&req, black_box(body.as_bytes()), &mut a);
            assert_eq!(matches!(o, BodyOutcome::Forward(_)), allowed);
            black_box(o);
        }));
    }

    for n in [10, 100, 1000, 5000] {
        let gw = gateway();
        let req = McpRequest { server: "demo".into(), identity: None };
        let body = tools_list_response(n);
        let note = format!("Gateway::rewrite_tools_list: parse, filter, re-serialise ({} KiB)", body.len() / 1024);
        out.push(case(format!("tools/list rewrite: {n} tools"), note, move || {
            let ids = [json!(1)];
            let r = gw.rewrite_tools_list(&req, &ids, black_box(&body));
            assert!(matches!(r, Ok(Some(_))));
            black_box(r.ok());
        }));
    }
    // Keep the plan type in use so a change to it shows up here first.
    let _ = ResponsePlan::PassThrough;

    out.extend(pending::cases());
    out
}

/// Cases for modules other branches add. When a module lands, replace the
/// stand-in with a call into it (and drop "stand-in" from the note).
mod pending {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A large tool: long description, 60 properties, nested schema.
    pub fn large_tool() -> Value {
        let props: serde_json::Map<String, Value> = (0..60)
            .map(|i| {
                (
                    format!("field_{i:02}"),
                    json!({"type": "object", "description": format!("Field {i}: ").repeat(8),
                        "properties": {"a": {"type": "string", "enum": ["x", "y", "z"]}, "b": {"type": "integer", "minimum": 0}}}),
                )
            })
            .collect();
        json!({
            "name": "large_tool",
            "description": "A large tool description. ".repeat(160),
            "inputSchema": {"type": "object", "properties": props, "required": ["field_00", "field_01"]},
            "annotations": {"title": "Large", "readOnlyHint": true},
        })
    }

    pub fn cases() -> Vec<Case> {
        let tool = large_tool();
        let size = serde_json::to_vec(&tool).map(|v| v.len()).unwrap_or(0);
        vec![
            // Stand-in until the integrity module lands: canonical JSON
            // (serde_json without preserve_order sorts keys, no whitespace)
            // then SHA-256, which is what SPEC §4 asks for.
            case(
                "canonical hash: large tool",
                format!(
                    "stand-in (sorted-key serde_json + sha2) until the integrity module lands; {} KiB tool",
                    size / 1024
                ),
                move || {
                    let bytes = serde_json::to_vec(black_box(&tool)).unwrap_or_default();
                    black_box(Sha256::digest(&bytes));
                },
            ),
            skipped("JWT verify: cold (RS256)", "skipped: no JWT auth module in this build yet"),
            skipped("JWT verify: cached", "skipped: no JWT auth module in this build yet"),
        ]
    }
}

struct Settings {
    batch: Duration,
    batches: usize,
}

struct Measured {
    median_ns: f64,
    min_ns: f64,
    iters_per_batch: u64,
}

fn measure(run: &mut dyn FnMut(), s: &Settings) -> Measured {
    // Warm up and size a batch so it lasts about `s.batch`.
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            run();
        }
        let took = t.elapsed();
        if took >= s.batch / 4 || iters >= 1 << 30 {
            let per = took.as_secs_f64() / iters as f64;
            iters = ((s.batch.as_secs_f64() / per.max(1e-9)) as u64).max(1);
            break;
        }
        iters *= 4;
    }
    let mut per_iter: Vec<f64> = (0..s.batches)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                run();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    per_iter.sort_by(f64::total_cmp);
    Measured { median_ns: per_iter[per_iter.len() / 2], min_ns: per_iter[0], iters_per_batch: iters }
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let mut quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut json_out = None;
    let mut filter = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json_out = args.next(),
            "--bench" => {} // cargo bench passes this
            other if !other.starts_with('-') => filter = Some(other.to_string()),
            other => {
                eprintln!("micro: unknown option {other}; use --quick, --json FILE or a name filter");
                std::process::exit(2);
            }
        }
    }
    let s = if quick {
        Settings { batch: Duration::from_millis(20), batches: 7 }
    } else {
        Settings { batch: Duration::from_millis(50), batches: 21 }
    };

    let mut results = Vec::new();
    println!("{:<48} {:>12} {:>12}  note", "case", "median", "min");
    for mut c in cases() {
        if filter.as_deref().is_some_and(|f| !c.name.contains(f)) {
            continue;
        }
        match c.run.as_mut() {
            Some(run) => {
                let m = measure(run.as_mut(), &s);
                println!("{:<48} {:>12} {:>12}  {}", c.name, human(m.median_ns), human(m.min_ns), c.note);
                results.push(json!({"name": c.name, "note": c.note, "median_ns": m.median_ns, "min_ns": m.min_ns,
                    "iters_per_batch": m.iters_per_batch, "batches": s.batches}));
            }
            None => {
                println!("{:<48} {:>12} {:>12}  {}", c.name, "-", "-", c.note);
                results.push(json!({"name": c.name, "note": c.note, "skipped": true}));
            }
        }
    }
    if let Some(path) = json_out {
        let text = serde_json::to_string_pretty(&results).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("micro: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}
