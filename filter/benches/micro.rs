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
//! To add a case, push one more `Case` in `cases()`; the integrity pinning
//! and JWT cases live in `pending` at the bottom.

use mcpx_filter::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, McpRequest, RequestHead};
use mcpx_filter::request::jsonrpc;
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
    /// Shown next to the figure: what it measures.
    pub note: String,
    /// Runs one iteration.
    pub run: Box<dyn FnMut()>,
}

fn case(name: impl Into<String>, note: impl Into<String>, run: impl FnMut() + 'static) -> Case {
    Case { name: name.into(), note: note.into(), run: Box::new(run) }
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

/// The request as the headers phase hands it to the body phase (built by the
/// gateway itself, so new fields never break this file).
fn mcp_request(gw: &Gateway, identity: Option<&str>) -> McpRequest {
    let headers = request_headers();
    match gw.on_request_headers(&RequestHead { headers: &headers }, &mut Attributes::default()) {
        HeadOutcome::ReadBody(mut req) => {
            req.identity = identity.map(String::from);
            req
        }
        other => panic!("the benchmark request was not accepted for its body: {other:?}"),
    }
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

    // Forwarding a re-serialised canonical body instead of the client's
    // bytes (SECURITY.md "Parser differentials"): its extra cost per request.
    let parsed = jsonrpc::parse_strict(TOOLS_CALL.as_bytes()).expect("the benchmark body parses");
    out.push(case(
        "re-serialise: tools/call",
        "serde_json::to_vec of the already parsed tools/call (extra cost of forwarding a canonical body)",
        move || {
            black_box(serde_json::to_vec(black_box(&parsed)).ok());
        },
    ));
    let wide: String = {
        let keys: Vec<String> = (0..1000).map(|i| format!("\"key_{i}\":{i}")).collect();
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{{}}}}}}}"#,
            keys.join(",")
        )
    };
    out.push(case(
        "parse: 1000 argument keys",
        format!("jsonrpc::parse_body with the case-folded duplicate check on a wide object, {} bytes", wide.len()),
        move || {
            black_box(jsonrpc::parse_body(black_box(wide.as_bytes())).ok());
        },
    ));

    for (name, identity, body, allowed) in [
        ("parse + decide: tools/call allowed", None, TOOLS_CALL, true),
        ("parse + decide: tools/call, client override", Some("ci-bot"), TOOLS_CALL, true),
        ("parse + decide: tools/call denied by arg rule", None, TOOLS_CALL_DENIED, false),
    ] {
        let gw = gateway();
        let req = mcp_request(&gw, identity);
        out.push(case(name, "Gateway::on_request_body: parse, policy + regex argument rule, outcome", move || {
            let mut a = Attributes::default();
            let o = gw.on_request_body(&req, black_box(body.as_bytes()), &mut a);
            assert_eq!(matches!(o, BodyOutcome::Forward(_)), allowed);
            black_box(o);
        }));
    }

    for n in [10, 100, 1000, 5000] {
        let gw = gateway();
        let req = mcp_request(&gw, None);
        let body = tools_list_response(n);
        let (what, run) = pending::list_inspection(gw, req, body.clone());
        let note = format!("Gateway::rewrite_tools_list: {what} ({} KiB)", body.len() / 1024);
        out.push(Case { name: format!("tools/list inspection: {n} tools"), note, run });
    }
    // The same lists, each answer a text the VM has not just read (two
    // answers alternate, as a client's request ids do, so the kept answer
    // never matches): "new answer" reuses the kept read of each unchanged
    // tool; "tools never read" forgets those too, i.e. a list seen for the
    // first time (the strict read, canonical text and SHA-256 of every tool).
    for (label, forget) in [("new answer, same tools", false), ("tools never read", true)] {
        for n in [100, 1000] {
            let gw = gateway();
            let req = mcp_request(&gw, None);
            let bodies = [
                tools_list_response(n),
                String::from_utf8_lossy(&tools_list_response(n)).replacen("\"id\":1", "\"id\":2", 1).into_bytes(),
            ];
            let mut store = mcpx_filter::integrity::MemoryStore::default();
            let mut i = 0usize;
            out.push(case(
                format!("tools/list inspection, {label}: {n} tools"),
                format!("Gateway::rewrite_tools_list on an answer not read before ({} KiB)", bodies[0].len() / 1024),
                move || {
                    i += 1;
                    if forget {
                        mcpx_filter::tools_list::scan::forget_kept_reads();
                    }
                    let body = &bodies[i % 2];
                    let r = gw.rewrite_tools_list(&req, &[json!(1), json!(2)], black_box(body), &mut store);
                    assert!(r.as_ref().is_ok_and(|i| i.body.is_some() && i.violations.is_empty()));
                    black_box(r.ok());
                },
            ));
        }
    }

    out.push(whole_call());

    out.extend(pending::cases());
    out.extend(lock_cases());
    out
}

/// The benchmark's policy ([`CONFIG`]) with everything else the full gateway
/// of tests/bench/bench.py turns on (bearer auth, per-tool rate limits,
/// audit, enforce) as a whole request: what the core does between Envoy's
/// callbacks, through the in-memory host (whose own bookkeeping is included,
/// so this is an upper bound).
fn whole_call() -> Case {
    use mcpx_filter::stream::fake::Envoy;
    use std::rc::Rc;
    let big = 10_000_000;
    let full = format!(
        "{CONFIG}auth:\n  enabled: true\n  type: bearer\n  clients:\n    - {{ name: bench, token: \"bench-token-0123456789\" }}\n    - {{ name: ci-bot, token: \"other-token-0123456789\" }}\naudit: {{ enabled: true }}\nrate_limit: {{ enabled: true, rps: {big}, burst: {big}, per_tool: true, tool_rps: {big}, tool_burst: {big} }}\ninspection: {{ tool_integrity: enforce, filter_tools_list: true }}\n"
    );
    let gw = Rc::new(Gateway::from_plugin_config(&full).expect("the full benchmark config is valid"));
    let headers: Vec<(String, String)> = request_headers();
    let answer = br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"hello from the mcpx benchmark this is a typical short argument"}]}}"#;
    case(
        "stream: allowed tools/call, whole request",
        "stream::Stream through the in-memory host: headers, body, answer, on_log (full benchmark config)",
        move || {
            let mut e = Envoy::new(Some(gw.clone()));
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            e.request(&h, &[TOOLS_CALL.as_bytes()], false);
            e.response(&[(":status", "200"), ("content-type", "application/json")], &[answer]);
            e.finish();
            assert!(e.reply().is_none(), "the benchmark call must be forwarded");
            black_box(e);
        },
    )
}

/// The reviewed lock (`inspection.pins`) at 10, 1,000 and 5,000 tools: what
/// loading it costs (per plugin configure, i.e. per worker and reload), the
/// heap it holds, and what a call and a list cost with it.
fn lock_cases() -> Vec<Case> {
    let mut out = Vec::new();
    for n in [10usize, 1000, 5000] {
        let body = tools_list_response(n);
        let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
        let tools = doc["result"]["tools"].as_array().cloned().unwrap_or_default();
        let pins: serde_json::Map<String, Value> = tools
            .iter()
            .map(|t| (t["name"].as_str().unwrap_or_default().to_string(), json!(mcpx_filter::integrity::tool_hash(t))))
            .collect();
        let mut config: Value = serde_yaml::from_str(CONFIG).unwrap_or_default();
        config["inspection"] = json!({"tool_integrity": "enforce", "pins": {"demo": pins}});
        let text = serde_json::to_string(&config).unwrap_or_default();
        let heap = heap_of(|| Gateway::from_plugin_config(&text).expect("the lock config is valid"));
        let load_text = text.clone();
        out.push(case(
            format!("lock: load plugin config, {n} tools"),
            format!(
                "Gateway::from_plugin_config with inspection.pins ({} KiB of JSON; the gateway holds {} KiB of heap)",
                text.len() / 1024,
                heap / 1024
            ),
            move || {
                black_box(Gateway::from_plugin_config(black_box(&load_text)).ok());
            },
        ));
        let gw = Gateway::from_plugin_config(&text).expect("the lock config is valid");
        let req = mcp_request(&gw, None);
        let call = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"tool_0","arguments":{}}}"#;
        let nothing_recorded = |_: &str, _: &str| Ok(None);
        out.push(case(
            format!("lock: tools/call, {n} tools pinned"),
            "Gateway::on_request_body_with in enforce: the lock lookup plus the recorded-violation lookup",
            move || {
                let o = gw.on_request_body_with(
                    &req,
                    black_box(call.as_bytes()),
                    &mut Attributes::default(),
                    &nothing_recorded,
                );
                assert!(matches!(o, BodyOutcome::Forward(_)));
                black_box(o);
            },
        ));
        let gw = Gateway::from_plugin_config(&text).expect("the lock config is valid");
        let req = mcp_request(&gw, None);
        let mut store = mcpx_filter::integrity::MemoryStore::default();
        out.push(case(
            format!("lock: tools/list inspection, {n} tools"),
            format!("Gateway::rewrite_tools_list checked against the lock ({} KiB list)", body.len() / 1024),
            move || {
                let r = gw.rewrite_tools_list(&req, &[json!(1)], black_box(&body), &mut store);
                assert!(r.as_ref().is_ok_and(|i| i.violations.is_empty()));
                black_box(r.ok());
            },
        ));
    }
    out
}

/// Heap bytes still held by what `make` returns (counted by [`Counting`]).
fn heap_of<T>(make: impl FnOnce() -> T) -> usize {
    use std::sync::atomic::Ordering::SeqCst;
    COUNTING.store(true, SeqCst);
    let before = LIVE.load(SeqCst);
    let value = make();
    let after = LIVE.load(SeqCst);
    COUNTING.store(false, SeqCst);
    drop(value);
    after.saturating_sub(before) as usize
}

static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

/// The system allocator, counting live bytes while [`COUNTING`] is set.
struct Counting;

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
            LIVE.fetch_add(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        if COUNTING.load(std::sync::atomic::Ordering::Relaxed) {
            LIVE.fetch_sub(l.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        unsafe { std::alloc::System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Integrity pinning and JWT verification cases.
mod pending {
    use super::*;

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

    /// With integrity pinning: every tool is also hashed and checked against
    /// the baseline (pinned by the first call, verified by the later ones).
    pub fn list_inspection(gw: Gateway, req: McpRequest, body: Vec<u8>) -> (&'static str, Box<dyn FnMut()>) {
        let mut store = mcpx_filter::integrity::MemoryStore::default();
        let run = move || {
            let r = gw.rewrite_tools_list(&req, &[json!(1)], black_box(&body), &mut store);
            assert!(r.as_ref().is_ok_and(|i| i.body.is_some() && i.violations.is_empty()));
            black_box(r.ok());
        };
        ("parse, policy filter, integrity hash + baseline check, re-serialise", Box::new(run))
    }

    pub fn cases() -> Vec<Case> {
        let mut out = integrity_cases();
        out.extend(hostile_backend_cases());
        out.extend(jwt_cases());
        out
    }

    fn integrity_cases() -> Vec<Case> {
        let tool = large_tool();
        let size = serde_json::to_vec(&tool).map(|v| v.len()).unwrap_or(0);
        vec![case(
            "canonical hash: large tool",
            format!("integrity::tool_hash (canonical JSON + SHA-256), {} KiB tool", size / 1024),
            move || {
                black_box(mcpx_filter::integrity::tool_hash(black_box(&tool)));
            },
        )]
    }

    /// What the caps against hostile backends cost on the normal path.
    fn hostile_backend_cases() -> Vec<Case> {
        use mcpx_filter::integrity::{self, MemoryStore, MAX_VIOLATIONS_PER_SERVER};
        use mcpx_filter::response::sse::SseRewriter;
        let tool = |i: usize, d: &str| json!({"name": format!("t{i}"), "description": d});
        // A record at its cap: every advertised tool changed once.
        let mut store = MemoryStore::default();
        integrity::ensure_initialized(&mut store).expect("init");
        let n = MAX_VIOLATIONS_PER_SERVER + 100;
        let v1: Vec<Value> = (0..n).map(|i| tool(i, "v1")).collect();
        let v2: Vec<Value> = (0..n).map(|i| tool(i, "v2")).collect();
        integrity::check_tools(&mut store, "demo", &v1).expect("pin");
        integrity::check_tools(&mut store, "demo", &v2).expect("violate");
        use mcpx_filter::integrity::BaselineStore;
        let record = store.get(integrity::VIOLATIONS_KEY).ok().flatten().map(|(v, _)| v).unwrap_or_default();
        let before = case(
            format!("tools/call integrity check before the marks: {n} tools in violation"),
            "what the check did before: parse the whole violations record, then look the tool up",
            move || {
                let all: integrity::Violations = serde_json::from_slice(black_box(&record)).expect("record");
                black_box(all.get("demo").and_then(|t| t.get("untouched")).map(|v| v.kind));
            },
        );
        let lookup = case(
            format!("tools/call integrity check: {n} tools in violation"),
            "integrity::recorded_violation with the record at its cap (reads the tool's and the server's mark)",
            move || {
                let k = integrity::recorded_violation(&store, "demo", black_box("untouched")).expect("lookup");
                black_box(k);
            },
        );
        let answer = br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"hello from the mcpx benchmark this is a typical short answer"}],"isError":false}}"#.to_vec();
        let prefilter = case(
            "answer prefilter: typical tools/call answer",
            "inspect::might_carry_list on a 150-byte answer (the cost every non-list answer pays)",
            move || {
                assert!(!mcpx_filter::tools_list::inspect::might_carry_list(black_box(&answer)));
            },
        );
        // One 1 MiB event arriving in 16 KiB chunks: scanned once, not per chunk.
        let mut event = b"data: ".to_vec();
        event.extend(std::iter::repeat_n(b'a', 1 << 20));
        event.extend_from_slice(b"\n\n");
        let sse = case(
            "SSE: 1 MiB event in 16 KiB chunks",
            "sse::SseRewriter::feed, 64 chunks, one event (pending-event cap and resumed scan)",
            move || {
                let mut r = SseRewriter::default();
                let mut out = 0;
                for chunk in event.chunks(16 * 1024) {
                    out += r.feed(black_box(chunk), false, |_| Ok::<_, ()>(None)).map_or(0, |o| o.len());
                }
                assert_eq!(out, event.len());
            },
        );
        vec![before, lookup, prefilter, sse]
    }

    fn jwt_cases() -> Vec<Case> {
        use jwt_simple::prelude::*;
        use mcpx_filter::auth::{jwks, jwt, now_secs, Auth, Check};
        use mcpx_filter::config::{Config, Mode};
        use serde_json::Map;

        const RESOURCE: &str = "https://gw.example.com/mcp";
        const ISSUER: &str = "https://auth.example.com";
        let kp = RS256KeyPair::generate(2048).expect("RSA key generation").with_key_id("bench");
        let c = kp.public_key().to_components();
        let jwks_doc =
            serde_json::to_vec(&json!({"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
            "n": base64url(&c.n), "e": base64url(&c.e)}]}))
            .unwrap_or_default();
        let now = now_secs();
        let claims: JWTClaims<Map<String, Value>> = serde_json::from_value(json!({
            "iss": ISSUER, "sub": "alice", "aud": format!("{RESOURCE}/demo"), "iat": now - 10, "exp": now + 3600,
            "scope": "mcp:read"}))
        .expect("claims");
        let token = kp.sign(claims).expect("signing");

        let keys = jwks::KeySet::parse(&jwks_doc).expect("JWKS");
        let rules = jwt::Rules { issuer: Some(ISSUER.into()), identity_claim: "sub".into() };
        let cold_token = token.clone();
        let cold = case(
            "JWT verify: cold (RS256)",
            "auth::jwt::verify: header, key lookup, RS256 signature, claims",
            move || {
                assert!(jwt::verify(black_box(&cold_token), Some(&keys), &rules, now).is_ok());
            },
        );

        let yaml = format!(
            "servers:\n  - name: demo\nauth:\n  enabled: true\n  type: oauth\n  oauth:\n    resource: {RESOURCE}\n    jwks_uri: {ISSUER}/jwks.json\n    issuer: {ISSUER}\n"
        );
        let config = Config::from_yaml(&yaml, Mode::Plugin).expect("oauth config");
        let auth = Auth::new(&config.auth, &["demo".to_string()]).expect("auth");
        auth.oauth().expect("oauth").install_jwks(&jwks_doc, now).expect("install JWKS");
        let headers: Vec<(String, String)> = [
            (":method", "POST"),
            (":path", "/mcp/demo"),
            (":scheme", "http"),
            (":authority", "gw.example.com"),
            ("authorization", &format!("Bearer {token}")),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cached = case(
            "JWT verify: cached",
            "Auth::check with the verified-token cache warm (digest lookup, time and audience checks)",
            move || {
                let c = auth.check(&RequestHead { headers: black_box(&headers) }, Some("demo"), now);
                assert!(matches!(c, Check::Allowed(_)));
            },
        );
        vec![cold, cached]
    }

    /// Unpadded base64url, for the JWK's modulus and exponent.
    fn base64url(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
        for chunk in data.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
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
        let m = measure(c.run.as_mut(), &s);
        println!("{:<48} {:>12} {:>12}  {}", c.name, human(m.median_ns), human(m.min_ns), c.note);
        results.push(json!({"name": c.name, "note": c.note, "median_ns": m.median_ns, "min_ns": m.min_ns,
            "iters_per_batch": m.iters_per_batch, "batches": s.batches}));
    }
    if let Some(path) = json_out {
        let text = serde_json::to_string_pretty(&results).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("micro: cannot write {path}: {e}");
            std::process::exit(1);
        }
    }
}
