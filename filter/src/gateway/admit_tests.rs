//! `Gateway::admit`: what happens to a request before it is routed (the
//! header removals, the Origin check and the `/metrics` gate), decided in the
//! core and carried out by the glue.

use crate::gateway::{Admit, Gateway};
use crate::request::{Attributes, Decision, RequestHead};

const OPEN: &str = "servers:\n  - name: demo\n";
const TOKEN: &str = "servers:\n  - name: demo\nauth:\n  enabled: true\n  token: s3cret\n";
const API_KEY: &str = "servers:\n  - name: demo\nauth:\n  enabled: true\n  type: api_key\n  token: s3cret\n";

fn head(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h =
        vec![(":method".into(), method.into()), (":path".into(), path.into()), (":authority".into(), "gw:8080".into())];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    h
}

fn admit(config: &str, h: &[(String, String)]) -> (Vec<String>, Admit, Attributes) {
    let gw = Gateway::from_plugin_config(config).unwrap();
    let mut attrs = Attributes::default();
    let a = gw.admit(&RequestHead { headers: h }, &mut attrs);
    (a.remove.iter().map(|s| s.to_string()).collect(), a.verdict, attrs)
}

#[test]
fn internal_headers_and_the_credential_are_removed_only_when_sent() {
    let (remove, verdict, _) = admit(TOKEN, &head("POST", "/mcp/demo", &[]));
    assert!(remove.is_empty(), "no header sent, no host call: {remove:?}");
    assert_eq!(verdict, Admit::Continue);
    let sent = head(
        "POST",
        "/mcp/demo",
        &[("X-Mcpx-Tool", "demo/echo"), ("authorization", "Bearer s3cret"), ("x-mcpx-hits", "0")],
    );
    let (remove, _, _) = admit(TOKEN, &sent);
    assert_eq!(remove, ["X-Mcpx-Tool", "x-mcpx-hits", "authorization"]);
    let (remove, _, _) = admit(API_KEY, &head("POST", "/mcp/demo", &[("x-api-key", "s3cret")]));
    assert_eq!(remove, ["x-api-key"]);
    let (remove, _, _) = admit(OPEN, &head("POST", "/mcp/demo", &[("authorization", "Bearer x")]));
    assert!(remove.is_empty(), "without auth the client's own Authorization is the backend's business");
}

#[test]
fn a_foreign_origin_is_refused_and_audited_before_routing() {
    let (remove, verdict, attrs) = admit(
        TOKEN,
        &head("POST", "/mcp/demo", &[("origin", "http://evil.example"), ("authorization", "Bearer s3cret")]),
    );
    let Admit::Reply(r) = verdict else { panic!("not refused: {verdict:?}") };
    assert_eq!(r.status, 403);
    assert!(r.body.contains("cors.allowed_origins"), "{}", r.body);
    assert_eq!(
        (attrs.server.as_deref(), attrs.decision, attrs.reason.as_deref()),
        (Some("demo"), Some(Decision::Deny), Some("origin"))
    );
    assert_eq!(remove, ["authorization"], "the credential goes even from a refused request");
    // An unknown server is not named in the audit line.
    let (_, _, attrs) = admit(OPEN, &head("POST", "/mcp/nope", &[("origin", "http://evil.example")]));
    assert_eq!((attrs.server, attrs.decision), (None, Some(Decision::Deny)));
    // The gateway's own origin on a loopback name is allowed.
    let local = [(":authority", "localhost:8080"), ("origin", "http://localhost:8080")];
    let mut h = head("POST", "/mcp/demo", &[]);
    h.retain(|(k, _)| k != ":authority");
    h.extend(local.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    assert_eq!(admit(OPEN, &h).1, Admit::Continue);
}

#[test]
fn metrics_is_get_only_and_needs_a_credential_when_auth_is_on() {
    assert_eq!(admit(OPEN, &head("GET", "/metrics", &[])).1, Admit::ServeMetrics);
    assert_eq!(admit(OPEN, &head("GET", "/metrics?x=1", &[])).1, Admit::ServeMetrics);
    let Admit::Reply(r) = admit(OPEN, &head("POST", "/metrics", &[])).1 else { panic!("POST served") };
    assert_eq!(r.status, 405);
    let Admit::Reply(r) = admit(TOKEN, &head("GET", "/metrics", &[])).1 else { panic!("served without a credential") };
    assert_eq!(r.status, 401);
    let (remove, verdict, attrs) = admit(TOKEN, &head("GET", "/metrics", &[("authorization", "Bearer s3cret")]));
    assert_eq!(verdict, Admit::ServeMetrics);
    assert_eq!(remove, ["authorization"]);
    assert_eq!(attrs, Attributes::default(), "a scrape is not an audited MCP request");
    assert_eq!(admit(OPEN, &head("GET", "/metricsx", &[])).1, Admit::Continue);
}
