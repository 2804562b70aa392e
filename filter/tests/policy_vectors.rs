//! Runs tests/vectors/policy.yaml natively twice: against the decision code
//! (`Gateway`: headers, body limit, body) and through the real per-request
//! state machine on the fake host (`stream::fake`: headers, the body in its
//! chunks, what the backend receives and what the client gets). The e2e
//! twin is tests/e2e/test_policy_vectors.py; the data is the test.

use mcpx_filter::gateway::{Attributes, BodyOutcome, Gateway, HeadOutcome, RequestHead};
use mcpx_filter::stream::fake::Envoy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

#[derive(Deserialize)]
struct File {
    configs: BTreeMap<String, String>,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    #[serde(default)]
    bypass: bool,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: String,
    #[serde(default)]
    repeat: BTreeMap<String, (String, usize)>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    chunks: Option<usize>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: u16,
    #[serde(default)]
    code: Option<i64>,
    reached: bool,
}

impl Vector {
    fn body_bytes(&self) -> Vec<u8> {
        let mut text = self.body.clone();
        for (marker, (unit, n)) in &self.repeat {
            text = text.replace(marker, &unit.repeat(*n));
        }
        match self.encoding.as_deref() {
            Some("latin1") => text.chars().map(|c| c as u32 as u8).collect(),
            Some("utf-16le") => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            None => text.into_bytes(),
            Some(other) => panic!("{}: unknown encoding {other}", self.name),
        }
    }

    fn headers(&self, body_len: usize) -> Vec<(String, String)> {
        let mut h = vec![
            (":method".to_string(), self.method.clone().unwrap_or_else(|| "POST".into())),
            (":path".to_string(), self.path.clone().unwrap_or_else(|| "/mcp/demo".into())),
        ];
        if !self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            h.push(("content-type".into(), "application/json".into()));
        }
        h.extend(self.headers.iter().filter(|(_, v)| !v.is_empty()).cloned());
        match self.chunks {
            None => h.push(("content-length".into(), body_len.to_string())),
            // What an HTTP/1.1 client sends with a chunked body.
            Some(_) => h.push(("transfer-encoding".into(), "chunked".into())),
        }
        h
    }
}

/// What the gateway did: `None` = forwarded, else (status, JSON-RPC code).
fn run(gw: &Gateway, v: &Vector) -> Option<(u16, Option<i64>)> {
    let body = v.body_bytes();
    let headers = v.headers(body.len());
    let mut attrs = Attributes::default();
    let reply = match gw.on_request_headers(&RequestHead { headers: &headers }, &mut attrs) {
        HeadOutcome::PassThrough | HeadOutcome::Forward(_) => return None,
        // Waiting for OAuth keys ends, natively, in the reply it carries.
        HeadOutcome::Reply(r) | HeadOutcome::AwaitKeys(r) => r,
        HeadOutcome::Health(_) => panic!("{}: policy vectors are MCP requests, not /health", v.name),
        HeadOutcome::ReadBody(_) if !gw.body_within_limit(body.len()) => gw.too_large(),
        HeadOutcome::ReadBody(req) => match gw.on_request_body(&req, &body, &mut attrs) {
            BodyOutcome::Forward(_) => return None,
            BodyOutcome::Reply(r) => r,
        },
    };
    let json: serde_json::Value = serde_json::from_str(&reply.body).expect("replies are JSON");
    Some((reply.status, json["error"]["code"].as_i64()))
}

/// The same vector through the state machine and the fake host, the body
/// in `chunks` pieces: `None` = forwarded (and the backend received exactly
/// the bytes sent), else the client's (status, JSON-RPC code) and nothing
/// reached the backend.
fn run_stream(gw: &Rc<Gateway>, v: &Vector) -> Result<Option<(u16, Option<i64>)>, String> {
    let body = v.body_bytes();
    let headers = v.headers(body.len());
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let n = v.chunks.unwrap_or(1).max(1);
    let size = body.len().div_ceil(n).max(1);
    let chunks: Vec<&[u8]> = body.chunks(size).collect();
    let mut e = Envoy::new(Some(gw.clone()));
    e.request(&headers, &chunks, false);
    if let Some(r) = e.reply() {
        if e.backend.headers.is_some() || !e.backend.body.is_empty() {
            return Err(format!("replied {} but the backend received the request", r.status));
        }
        let json: serde_json::Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
        return Ok(Some((r.status, json["error"]["code"].as_i64())));
    }
    if e.request_held() {
        return Err("the request is still held".into());
    }
    if e.backend.headers.is_none() || e.backend.body != body {
        return Err(format!(
            "forwarded, but the backend received {} of the {} bytes sent",
            e.backend.body.len(),
            body.len()
        ));
    }
    Ok(None)
}

fn check(v: &Vector, got: Option<(u16, Option<i64>)>) -> bool {
    match got {
        None => v.expect.reached,
        Some((status, code)) => {
            !v.expect.reached && status == v.expect.status && v.expect.code.is_none_or(|c| Some(c) == code)
        }
    }
}

#[test]
fn policy_vectors_through_the_state_machine() {
    let text = include_str!("../../tests/vectors/policy.yaml");
    let file: File = serde_yaml::from_str(text).expect("tests/vectors/policy.yaml parses");
    let gateways: BTreeMap<&str, Rc<Gateway>> = file
        .configs
        .iter()
        .map(|(name, cfg)| {
            (name.as_str(), Rc::new(Gateway::from_plugin_config(cfg).unwrap_or_else(|e| panic!("{name}: {e}"))))
        })
        .collect();
    assert!(file.vectors.len() >= 60 && file.vectors.iter().any(|v| v.chunks.is_some()));
    let mut failures = Vec::new();
    for v in &file.vectors {
        let gw = &gateways[v.config.as_deref().unwrap_or("base")];
        match run_stream(gw, v) {
            Ok(got) if check(v, got) => {}
            Ok(got) => failures.push(format!(
                "{}: expected {:?}/{:?} reached={}, got {got:?}",
                v.name, v.expect.status, v.expect.code, v.expect.reached
            )),
            Err(e) => failures.push(format!("{}: {e}", v.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed through the state machine:\n{}",
        failures.len(),
        file.vectors.len(),
        failures.join("\n")
    );
}

#[test]
fn policy_vectors() {
    let text = include_str!("../../tests/vectors/policy.yaml");
    let file: File = serde_yaml::from_str(text).expect("tests/vectors/policy.yaml parses");
    let gateways: BTreeMap<&str, Gateway> = file
        .configs
        .iter()
        .map(|(name, cfg)| (name.as_str(), Gateway::from_plugin_config(cfg).unwrap_or_else(|e| panic!("{name}: {e}"))))
        .collect();
    let mut failures = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for v in &file.vectors {
        assert!(names.insert(v.name.as_str()), "duplicate vector name {}", v.name);
        let gw = &gateways[v.config.as_deref().unwrap_or("base")];
        let got = run(gw, v);
        if !check(v, got) {
            failures.push(format!(
                "{}: expected {:?}/{:?} reached={}, got {got:?}",
                v.name, v.expect.status, v.expect.code, v.expect.reached
            ));
        }
    }
    let bypass = file.vectors.iter().filter(|v| v.bypass).count();
    assert!(
        file.vectors.len() >= 60 && bypass * 2 >= file.vectors.len(),
        "{} vectors, {bypass} bypass",
        file.vectors.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        file.vectors.len(),
        failures.join("\n")
    );
}
