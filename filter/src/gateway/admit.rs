//! Phase 0, before routing: the headers removed before anything is
//! forwarded, the Origin check and the `/metrics` gate.

use super::{Admission, Admit, Gateway};
use crate::envelope::{code, Reply, ReplyTo};
use crate::request::{Attributes, Decision, RequestHead, MCP_PREFIX};

impl Gateway {
    /// Phase 0, before routing: which headers the glue removes before
    /// anything is forwarded, the Origin check and the `/metrics` gate. Runs
    /// once per request (not again after a key wait).
    pub fn admit<'a>(&'a self, head: &RequestHead<'a>, attrs: &mut Attributes) -> Admission<'a> {
        // Client copies of internal headers, and the gateway's credential (no
        // token passthrough: it never reaches a backend). Only those present:
        // every header change is a host call and a route re-match.
        let mut remove: Vec<&'a str> = head.internal_headers().collect();
        if let Some(name) = self.credential_header().filter(|n| head.get(n).is_some()) {
            remove.push(name);
        }
        if let Some(reply) = crate::ops::check_origin(&self.config, head) {
            attrs.server =
                head.path().strip_prefix(MCP_PREFIX).filter(|s| self.config.server(s).is_some()).map(String::from);
            attrs.decision = Some(Decision::Deny);
            attrs.reason = Some("origin".into());
            return Admission { remove, verdict: Admit::Reply(reply) };
        }
        let verdict = if head.path() == crate::names::METRICS_PATH { self.metrics_gate(head) } else { Admit::Continue };
        Admission { remove, verdict }
    }

    /// `/metrics`: only GET is served; with auth enabled the caller must
    /// present a valid credential of any client (docs/auth.md).
    fn metrics_gate(&self, head: &RequestHead<'_>) -> Admit {
        if head.method() != "GET" {
            let r = Reply::error(405, code::METHOD_NOT_ALLOWED, "use GET /metrics", &ReplyTo::Http)
                .with_header("allow", "GET");
            return Admit::Reply(r);
        }
        match self.authenticate(head) {
            Ok(_) => Admit::ServeMetrics,
            Err(r) => Admit::Reply(r),
        }
    }
}
