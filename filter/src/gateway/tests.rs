use super::*;

#[test]
fn attributes_are_published_only_for_their_readers() {
    let gw = |extra: &str| Gateway::from_plugin_config(&format!("servers: [{{name: demo}}]\n{extra}")).unwrap();
    assert!(!gw("audit: { enabled: false }").publishes_attributes());
    assert!(gw("").publishes_attributes(), "audit is on by default");
    assert!(gw("audit: { enabled: false }\ntracing: { enabled: true, endpoint: \"http://127.0.0.1:4318\" }")
        .publishes_attributes());
}

const CONFIG: &str = r#"
servers:
  - name: demo
    policy:
      deny_tools: [dangerous_delete]
clients:
  bot:
    servers:
      demo: { allow_tools: [echo] }
"#;

fn gw() -> Gateway {
    Gateway::from_plugin_config(CONFIG).unwrap()
}

fn headers(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h = vec![(":method".to_string(), method.to_string()), (":path".to_string(), path.to_string())];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn head_outcome(method: &str, path: &str, extra: &[(&str, &str)]) -> HeadOutcome {
    let h = headers(method, path, extra);
    gw().on_request_headers(&RequestHead { headers: &h }, &mut Attributes::default())
}

fn status(o: &HeadOutcome) -> u16 {
    match o {
        HeadOutcome::Reply(r) => r.status,
        _ => 0,
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn routing() {
    assert!(matches!(head_outcome("GET", "/other", &[]), HeadOutcome::PassThrough));
    assert_eq!(status(&head_outcome("POST", "/mcp/nope", &[JSON])), 404);
    assert_eq!(status(&head_outcome("POST", "/mcp/demo/x", &[JSON])), 404);
    assert!(matches!(head_outcome("POST", "/mcp/demo?x=1", &[JSON]), HeadOutcome::ReadBody(_)));
    assert!(matches!(head_outcome("GET", "/mcp/demo", &[]), HeadOutcome::Forward(_)));
    assert!(matches!(head_outcome("DELETE", "/mcp/demo", &[]), HeadOutcome::Forward(_)));
    assert_eq!(status(&head_outcome("PUT", "/mcp/demo", &[])), 405);
}

const AUTH_CONFIG: &str = "servers:\n  - name: demo\nauth:\n  enabled: true\n  clients:\n    - { name: bot, token: bot-token }\nclients:\n  bot:\n    servers:\n      demo: { allow_tools: [echo] }\n";

#[test]
fn auth_comes_first_for_every_method_and_sets_the_identity() {
    let g = Gateway::from_plugin_config(AUTH_CONFIG).unwrap();
    let run = |m: &str, p: &str, extra: &[(&str, &str)]| {
        let h = headers(m, p, extra);
        let mut a = Attributes::default();
        let o = g.on_request_headers(&RequestHead { headers: &h }, &mut a);
        (o, a)
    };
    for m in ["POST", "GET", "DELETE", "PUT"] {
        let (o, a) = run(m, "/mcp/demo", &[JSON]);
        assert_eq!(status(&o), 401, "{m}");
        assert_eq!(a.decision, Some(Decision::AuthFailed));
    }
    let bot = ("authorization", "Bearer bot-token");
    assert_eq!(status(&run("POST", "/mcp/nope", &[JSON]).0), 401, "unknown servers are not revealed");
    assert_eq!(status(&run("POST", "/mcp/nope", &[JSON, bot]).0), 404);
    let (o, a) = run("POST", "/mcp/demo", &[JSON, bot]);
    let HeadOutcome::ReadBody(req) = o else { panic!("not authenticated") };
    assert_eq!((req.identity.as_deref(), a.client.as_deref()), (Some("bot"), Some("bot")));
    // The identity's override applies in the body phase.
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}"#;
    assert!(matches!(g.on_request_body(&req, call, &mut a.clone()), BodyOutcome::Reply(r) if r.status == 200));
    assert_eq!(g.credential_header(), Some("authorization"));
    let servers = |extra: &[(&str, &str)]| g.authenticate(&RequestHead { headers: &headers("GET", "/servers", extra) });
    assert_eq!(servers(&[bot]), Ok(Some("bot".to_string())));
    assert!(servers(&[("authorization", "Bearer bot-toke")]).is_err());
    assert!(matches!(run("GET", "/other", &[]).0, HeadOutcome::PassThrough));
    assert_eq!(gw().authenticate(&RequestHead { headers: &headers("GET", "/servers", &[]) }), Ok(None));
}

#[test]
fn oauth_answers_do_not_reveal_which_server_names_exist() {
    let cfg = "servers:\n  - name: demo\n  - name: scoped\nauth:\n  enabled: true\n  type: oauth\n  oauth:\n    resource: https://gw.example.com/mcp\n    jwks_uri: https://auth.example.com/jwks.json\n    issuer: https://auth.example.com\n    scopes: { scoped: [mcp:s] }\n";
    let g = Gateway::from_plugin_config(cfg).unwrap();
    let answer = |m: &str, path: &str| {
        let h = headers(m, path, &[JSON, (":authority", "gw.local")]);
        let mut a = Attributes::default();
        match g.on_request_headers(&RequestHead { headers: &h }, &mut a) {
            HeadOutcome::Reply(r) | HeadOutcome::AwaitKeys(r) => r,
            o => panic!("{o:?}"),
        }
    };
    // The 401 for an unknown name is the known one's with the name swapped.
    for m in ["POST", "GET", "DELETE"] {
        let known = answer(m, "/mcp/demo");
        let unknown = answer(m, "/mcp/nope");
        assert_eq!(known.status, 401);
        let swap = |r: &Reply| format!("{} {:?} {}", r.status, r.headers, r.body).replace("/nope", "/demo");
        assert_eq!(swap(&unknown), swap(&known), "{m}");
    }
    // Metadata: a document for any name, shaped like a known server's.
    let known = answer("GET", "/.well-known/oauth-protected-resource/mcp/demo");
    let unknown = answer("GET", "/.well-known/oauth-protected-resource/mcp/nope");
    assert_eq!((known.status, unknown.status), (200, 200));
    assert_eq!(unknown.body.replace("/nope", "/demo"), known.body);
    // What is revealed: a server with `scopes` advertises them (docs/auth.md).
    assert!(answer("GET", "/mcp/scoped").headers.iter().any(|(_, v)| v.contains("scope=\"mcp:s\"")));
}

#[test]
fn post_header_checks() {
    assert_eq!(status(&head_outcome("POST", "/mcp/demo", &[])), 415);
    assert_eq!(status(&head_outcome("POST", "/mcp/demo", &[("content-type", "text/plain")])), 415);
    assert_eq!(status(&head_outcome("POST", "/mcp/demo", &[JSON, ("content-encoding", "gzip")])), 415);
    assert_eq!(status(&head_outcome("POST", "/mcp/demo", &[JSON, ("content-length", "99999999")])), 413);
    let ok = head_outcome("POST", "/mcp/demo", &[("content-type", "Application/JSON; charset=utf-8")]);
    assert!(matches!(ok, HeadOutcome::ReadBody(_)));
}

#[test]
fn only_utf8_json_is_accepted() {
    let ct = |v: &str| status(&head_outcome("POST", "/mcp/demo", &[("content-type", v)]));
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "application/json; charset=\"UTF-8\"",
        "application/json ; charset = utf-8",
        "application/json; charset=\"utf\\-8\"",
        "application/json; profile=x",
        "application/json;",
    ] {
        assert_eq!(ct(ok), 0, "{ok}");
    }
    for bad in [
        "application/json; charset=utf-7",
        "application/json; charset=UTF-16",
        "application/json; charset=\"UTF-16\"",
        "application/json; CHARSET=utf-16le",
        "application/json; charset=utf-8; charset=utf-7",
        "application/json; charset=utf-8; charset=utf-8",
        "application/json; charset=latin1",
        "application/json; charset= utf-7 ",
        "application/json;charset=\"utf-8",
        "application/json; charset",
        "application/json; =utf-8",
        "application/json; charset=",
        "application/json; charset=\"\"",
        "application/json, text/plain",
        "text/json",
    ] {
        assert_eq!(ct(bad), 415, "{bad}");
    }
    let two = [("content-type", "application/json"), ("content-type", "application/json; charset=utf-7")];
    assert_eq!(status(&head_outcome("POST", "/mcp/demo", &two)), 415);
}

#[test]
fn bodies_only_on_post() {
    for (m, extra) in [
        ("GET", ("content-length", "5")),
        ("DELETE", ("content-length", "12")),
        ("GET", ("transfer-encoding", "chunked")),
        ("DELETE", ("Transfer-Encoding", "chunked")),
        ("GET", ("content-length", "x")),
    ] {
        let mut a = Attributes::default();
        let h = headers(m, "/mcp/demo", &[extra]);
        let o = gw().on_request_headers(&RequestHead { headers: &h }, &mut a);
        assert_eq!(status(&o), 400, "{m} {extra:?}");
        assert_eq!(a.reason.as_deref(), Some("body_not_allowed"));
    }
    assert!(matches!(head_outcome("GET", "/mcp/demo", &[("content-length", "0")]), HeadOutcome::Forward(_)));
}

const RL: &str = "rate_limit: { enabled: true, rps: 10, burst: 10, per_tool: true, tool_rps: 1, tool_burst: 2 }\n";

fn run_body(g: &Gateway, version: Option<&str>, b: &str) -> (BodyOutcome, Attributes) {
    let h: Vec<(&str, &str)> = version.map(|v| ("mcp-protocol-version", v)).into_iter().collect();
    let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::capture(h), grant: None };
    let mut a = Attributes::default();
    (g.on_request_body(&req, b.as_bytes(), &mut a), a)
}

fn calls(tools: &[&str]) -> String {
    let items: Vec<String> = tools
        .iter()
        .enumerate()
        .map(|(i, t)| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"{t}"}}}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

#[test]
fn a_batch_is_charged_per_message_and_per_call() {
    let g = Gateway::from_plugin_config(&format!("{CONFIG}{RL}")).unwrap();
    let (o, a) = run_body(&g, None, &calls(&["echo"; 200]));
    let BodyOutcome::Forward(f) = o else { panic!("refused") };
    assert_eq!((f.hits, f.tool_hits, a.tool.as_deref()), (200, 200, Some("echo")));
    let mixed = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#;
    let BodyOutcome::Forward(f) = run_body(&g, Some("2025-03-26"), mixed).0 else { panic!("refused") };
    assert_eq!((f.hits, f.tool_hits), (3, 1));
    let BodyOutcome::Forward(f) = run_body(&g, None, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).0 else { panic!() };
    assert_eq!((f.hits, f.tool_hits), (1, 0));
}

#[test]
fn a_batch_that_cannot_be_charged_exactly_is_refused() {
    let g = Gateway::from_plugin_config(&format!("{CONFIG}{RL}")).unwrap();
    let (o, a) = run_body(&g, None, &calls(&["echo", "echo", "read_file"]));
    let BodyOutcome::Reply(r) = o else { panic!("forwarded") };
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["code"], -32600);
    assert!(v["error"]["message"].as_str().unwrap().contains("read_file"), "{v}");
    assert_eq!(a.reason.as_deref(), Some("batch_mixed_tools"));
    // Without per-tool limits one request charges only the global bucket.
    assert!(matches!(run_body(&gw(), None, &calls(&["echo", "read_file"])).0, BodyOutcome::Forward(_)));
}

#[test]
fn batches_are_refused_where_the_protocol_has_none() {
    for v in ["2025-06-18", "2025-11-25", "2026-07-28"] {
        let (o, a) = run_body(&gw(), Some(v), &calls(&["echo"]));
        assert!(matches!(o, BodyOutcome::Reply(ref r) if r.status == 400), "{v}");
        assert_eq!(a.reason.as_deref(), Some("batch_not_allowed"));
    }
    for v in [None, Some("2025-03-26"), Some("2024-11-05")] {
        assert!(matches!(run_body(&gw(), v, &calls(&["echo"])).0, BodyOutcome::Forward(_)), "{v:?}");
    }
    // A single message is fine in every revision.
    let one = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert!(matches!(run_body(&gw(), Some("2025-11-25"), one).0, BodyOutcome::Forward(_)));
}

#[test]
fn stdio_servers_get_the_encoded_identity_http_ones_never() {
    let text = "servers:\n  - name: demo\n  - name: local\n    transport: stdio\n    command: x\n";
    let g = Gateway::from_plugin_config(text).unwrap();
    let call = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#;
    let forwarded = |server: &str, identity: Option<&str>| {
        let req = McpRequest {
            server: server.into(),
            identity: identity.map(String::from),
            mcp_headers: McpHeaders::default(),
            grant: None,
        };
        let BodyOutcome::Forward(f) = g.on_request_body(&req, call, &mut Attributes::default()) else { panic!() };
        f.set_headers.into_iter().filter(|(k, _)| *k == IDENTITY_HEADER).map(|(_, v)| v).collect::<Vec<_>>()
    };
    assert_eq!(forwarded("local", Some("alice")), ["alice"]);
    assert_eq!(forwarded("local", Some("a b%\n\u{e9}")), ["a%20b%25%0A%C3%A9"]);
    assert!(forwarded("local", None).is_empty());
    assert!(forwarded("demo", Some("alice")).is_empty());
    assert!(IDENTITY_HEADER.starts_with(INTERNAL_HEADER_PREFIX), "client copies must be stripped on entry");
}

#[test]
fn internal_headers_are_found() {
    let h = headers("POST", "/mcp/demo", &[("X-MCPX-Tool", "echo"), ("x-other", "1")]);
    let head = RequestHead { headers: &h };
    assert_eq!(head.internal_headers().collect::<Vec<_>>(), ["X-MCPX-Tool"]);
}

fn body(identity: Option<&str>, body: &str) -> (BodyOutcome, Attributes) {
    let req = McpRequest {
        server: "demo".into(),
        identity: identity.map(String::from),
        mcp_headers: McpHeaders::default(),
        grant: None,
    };
    let mut a = Attributes::default();
    (gw().on_request_body(&req, body.as_bytes(), &mut a), a)
}

#[test]
fn denied_call_is_200_with_the_jsonrpc_error_naming_id_and_tool() {
    let (o, a) = body(None, r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"dangerous_delete"}}"#);
    let BodyOutcome::Reply(r) = o else { panic!("not denied") };
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["id"], 9);
    assert!(v["error"]["message"].as_str().unwrap().contains("dangerous_delete"));
    assert_eq!(v["error"]["code"], -32003);
    assert_eq!((a.decision, a.tool.as_deref()), (Some(Decision::Deny), Some("dangerous_delete")));
}

#[test]
fn denial_http_status_403_keeps_the_old_status() {
    let g = Gateway::from_plugin_config(&format!("{CONFIG}denial_http_status: 403\n")).unwrap();
    let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::default(), grant: None };
    let call = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"dangerous_delete"}}"#;
    let BodyOutcome::Reply(r) = g.on_request_body(&req, call.as_bytes(), &mut Attributes::default()) else {
        panic!("not denied")
    };
    assert_eq!(r.status, 403);
    assert_eq!(serde_json::from_str::<Value>(&r.body).unwrap()["error"]["code"], -32003);
}

#[test]
fn a_denial_with_no_id_to_answer_stays_403() {
    // A notification: nobody could match a 200's error to a call.
    let (o, a) = body(None, r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"dangerous_delete"}}"#);
    assert!(matches!(o, BodyOutcome::Reply(r) if r.status == 403));
    assert_eq!(a.decision, Some(Decision::Deny));
}

#[test]
fn era_removed_subscribe_without_uri_is_left_to_the_server() {
    let g =
        Gateway::from_plugin_config("servers:\n  - name: demo\n    policy: {deny_resources: [\"file:///secret\"]}\n")
            .unwrap();
    let modern = McpHeaders::capture([("MCP-Protocol-Version", "2026-07-28")]);
    let run = |headers: &McpHeaders, params: &str| {
        let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: headers.clone(), grant: None };
        let body = format!(r#"{{"jsonrpc":"2.0","id":500,"method":"resources/subscribe"{params}}}"#);
        g.on_request_body(&req, body.as_bytes(), &mut Attributes::default())
    };
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}"#;
    // Modern era, no uri: the server answers (-32601).
    assert!(matches!(run(&modern, &format!(r#","params":{{{meta}}}"#)), BodyOutcome::Forward(_)));
    assert!(matches!(run(&McpHeaders::default(), &format!(r#","params":{{{meta}}}"#)), BodyOutcome::Forward(_)));
    // A uri, in any spelling, is still judged; legacy era still needs one.
    for params in [
        format!(r#","params":{{{meta},"uri":"file:///secret"}}"#),
        format!(r#","params":{{{meta},"URI":"file:///secret"}}"#),
        r#","params":["file:///secret"]"#.to_string(),
    ] {
        assert!(matches!(run(&modern, &params), BodyOutcome::Reply(_)), "{params}");
    }
    let legacy = McpHeaders::capture([("MCP-Protocol-Version", "2025-11-25")]);
    assert!(matches!(run(&legacy, r#","params":{}"#), BodyOutcome::Reply(r) if r.status == 400));
}

#[test]
fn one_denied_element_rejects_the_batch() {
    let (o, _) = body(
        None,
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"dangerous_delete"}}]"#,
    );
    assert!(matches!(o, BodyOutcome::Reply(r) if r.status == 403));
}

#[test]
fn forward_remembers_whom_a_later_error_answers() {
    let (o, a) = body(None, r#"{"jsonrpc":"2.0","id":"k-1","method":"tools/call","params":{"name":"echo"}}"#);
    let BodyOutcome::Forward(f) = o else { panic!("not forwarded") };
    assert_eq!(f.reply_to, ReplyTo::JsonRpc(Value::String("k-1".into())));
    assert_eq!((a.decision, a.tool.as_deref()), (Some(Decision::Allow), Some("echo")));
}

#[test]
fn client_override_applies_with_identity() {
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}}"#;
    assert!(matches!(body(None, call).0, BodyOutcome::Forward(_)));
    assert!(matches!(body(Some("bot"), call).0, BodyOutcome::Reply(r) if r.status == 200 && r.body.contains("-32003")));
    assert!(matches!(body(Some("someone-else"), call).0, BodyOutcome::Forward(_)));
}

#[test]
fn tools_list_is_pinned_and_filtered() {
    let (o, _) = body(None, r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let BodyOutcome::Forward(f) = o else { panic!() };
    assert_eq!(f.set_headers[0], ("accept", LIST_ACCEPT.to_string()));
    let ResponsePlan::FilterToolsList { list_ids } = f.response else { panic!() };
    let resp = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"},{"name":"dangerous_delete"}]}}"#;
    let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::default(), grant: None };
    let mut store = integrity::MemoryStore::default();
    let out = gw().rewrite_tools_list(&req, &list_ids, resp.as_bytes(), &mut store).unwrap().body.unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
    assert!(gw().rewrite_tools_list(&req, &list_ids, b"garbage", &mut store).is_err());
}

#[test]
fn a_locked_server_refuses_calls_to_tools_not_in_the_lock() {
    let hash = "a".repeat(64);
    let cfg = format!("{CONFIG}inspection: {{tool_integrity: enforce, pins: {{demo: {{echo: \"{hash}\"}}}}}}\n");
    let g = Gateway::from_plugin_config(&cfg).unwrap();
    let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::default(), grant: None };
    let nothing_recorded = |_: &str, _: &str| Ok(None);
    let call = |name: &str| format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{name}"}}}}"#);
    let mut a = Attributes::default();
    let o = g.on_request_body_with(&req, call("read_file").as_bytes(), &mut a, &nothing_recorded);
    let BodyOutcome::Reply(r) = o else { panic!("an unpinned tool was forwarded") };
    assert_eq!(r.status, 200); // the default denial_http_status
    assert!(r.body.contains("-32003"), "{}", r.body);
    assert_eq!(a.reason.as_deref(), Some("integrity_unpinned"));
    assert!(r.body.contains("mcpx pin --update --server demo --tool read_file"), "{}", r.body);
    let o = g.on_request_body_with(&req, call("echo").as_bytes(), &mut Attributes::default(), &nothing_recorded);
    assert!(matches!(o, BodyOutcome::Forward(_)));
    // The plugin configuration cannot name a file, nor pin an unknown server.
    let e = Gateway::from_plugin_config(&format!("{CONFIG}inspection: {{lock: mcpx.lock}}\n")).unwrap_err();
    assert_eq!(e.key, "inspection.lock");
    let e = Gateway::from_plugin_config(&format!("{CONFIG}inspection: {{pins: {{gone: {{}}}}}}\n")).unwrap_err();
    assert_eq!(e.key, "inspection.pins.gone");
    let e =
        Gateway::from_plugin_config(&format!("{CONFIG}inspection: {{pins: {{demo: {{echo: abc}}}}}}\n")).unwrap_err();
    assert_eq!(e.key, "inspection.pins.demo.echo");
    let off = format!("{CONFIG}inspection: {{tool_integrity: off, pins: {{demo: {{}}}}}}\n");
    assert_eq!(Gateway::from_plugin_config(&off).unwrap_err().key, "inspection.tool_integrity");
}

#[test]
fn enforce_refuses_calls_to_violating_tools_even_in_a_batch() {
    let g = Gateway::from_plugin_config(&format!("{CONFIG}inspection: {{tool_integrity: enforce}}\n")).unwrap();
    let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::default(), grant: None };
    let lookup = |s: &str, t: &str| Ok((s == "demo" && t == "echo").then_some(integrity::Kind::RugPull));
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}"#;
    let mut a = Attributes::default();
    let BodyOutcome::Reply(r) = g.on_request_body_with(&req, call.as_bytes(), &mut a, &lookup) else { panic!() };
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["id"], 3);
    assert!(v["error"]["message"].as_str().unwrap().contains("rug pull"), "{v}");
    assert_eq!(a.reason.as_deref(), Some("integrity_rug_pull"));
    let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file"}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}]"#;
    let o = g.on_request_body_with(&req, batch.as_bytes(), &mut Attributes::default(), &lookup);
    assert!(matches!(o, BodyOutcome::Reply(r) if r.status == 403));
    let other = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file"}}"#;
    let o = g.on_request_body_with(&req, other.as_bytes(), &mut Attributes::default(), &lookup);
    assert!(matches!(o, BodyOutcome::Forward(_)));
    // Fail closed when the record cannot be read.
    let broken = |_: &str, _: &str| Err(StoreError::Host("down".into()));
    let o = g.on_request_body_with(&req, other.as_bytes(), &mut Attributes::default(), &broken);
    assert!(matches!(o, BodyOutcome::Reply(r) if r.status == 503));
    // warn mode never refuses.
    let o = gw().on_request_body_with(&req, call.as_bytes(), &mut Attributes::default(), &lookup);
    assert!(matches!(o, BodyOutcome::Forward(_)));
}

#[test]
fn completion_for_a_denied_prompt_or_resource_is_refused() {
    let g = Gateway::from_plugin_config(
        "servers:\n  - name: demo\n    policy: {deny_prompts: [secret], deny_resources: [\"file:///data/secret\"]}\n",
    )
    .unwrap();
    let req = McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::default(), grant: None };
    let run = |r: &str| {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{{"ref":{r},"argument":{{"name":"a","value":""}}}}}}"#
        );
        g.on_request_body(&req, body.as_bytes(), &mut Attributes::default())
    };
    for denied in
        [r#"{"type":"ref/prompt","name":"secret"}"#, r#"{"type":"ref/resource","uri":"file:///data/secret/{x}"}"#]
    {
        let BodyOutcome::Reply(r) = run(denied) else { panic!("{denied} not refused") };
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["error"]["code"], -32003, "{denied}");
    }
    for allowed in [r#"{"type":"ref/prompt","name":"greet"}"#, r#"{"type":"ref/resource","uri":"file:///data/ok"}"#] {
        assert!(matches!(run(allowed), BodyOutcome::Forward(_)), "{allowed}");
    }
}

#[test]
fn parse_errors_use_the_envelope() {
    let (o, _) = body(None, "{not json");
    let BodyOutcome::Reply(r) = o else { panic!() };
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["error"]["code"], -32700);
}
