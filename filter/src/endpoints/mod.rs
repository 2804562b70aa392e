//! The gateway's own endpoints on the main listener: `/health` and
//! `/servers` (docs/reload-and-health.md). The filter answers them before any route applies.
//!
//! Beside them: `health` (which backends to probe and how to report them),
//! `servers` (the server list and a policy summary) and `control` (the
//! operator's `/baseline` endpoints, served only on the control listener).

pub mod control;
pub mod health;
pub mod servers;

use crate::config::Config;
use crate::envelope::{code, Reply, ReplyTo};
use crate::request::{Attributes, Decision, RequestHead};
use health::Detail;

/// A path the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    Servers,
}

impl Endpoint {
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/health" => Some(Endpoint::Health),
            "/servers" => Some(Endpoint::Servers),
            _ => None,
        }
    }
}

/// What the caller of an endpoint may see.
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Everything: auth is off, or the caller has a valid credential.
    Full,
    /// Auth is on and the caller has no valid credential: only the
    /// load-balancer view of `/health`; this 401 for everything else.
    Anonymous(Reply),
}

/// What the gateway does for an endpoint request.
#[derive(Debug)]
pub enum Answer {
    /// Probe every backend, then answer with this much detail.
    Health(Detail),
    Reply(Reply),
}

/// Answers `/health` (by asking the glue to probe) and `/servers`.
/// `access` decides how much the caller may see; it is asked only for
/// methods an endpoint serves. It fails closed: with auth on, nobody gets
/// details until a credential is verified.
pub fn answer(
    ep: Endpoint,
    head: &RequestHead<'_>,
    config: &Config,
    attrs: &mut Attributes,
    access: impl FnOnce() -> Access,
) -> Answer {
    attrs.method = Some(head.method().to_string());
    if !matches!(head.method(), "GET" | "HEAD") {
        attrs.decision = Some(Decision::Error);
        attrs.reason = Some("method_not_allowed".into());
        let msg = format!("{} answers GET only", head.path());
        return Answer::Reply(
            Reply::error(405, code::METHOD_NOT_ALLOWED, &msg, &ReplyTo::Http).with_header("allow", "GET"),
        );
    }
    // No decision for an answered endpoint: the audit trail and the
    // request metrics are for MCP requests (and refusals), not for
    // load-balancer polls of /health or reads of /servers.
    match (ep, access()) {
        (Endpoint::Health, Access::Full) => Answer::Health(Detail::Full),
        (Endpoint::Health, Access::Anonymous(_)) => Answer::Health(Detail::Summary),
        (Endpoint::Servers, Access::Full) => {
            Answer::Reply(Reply::json(200, &servers::summary(config)).with_header("cache-control", "no-store"))
        }
        (Endpoint::Servers, Access::Anonymous(reply)) => {
            attrs.decision = Some(Decision::AuthFailed);
            attrs.reason = Some("credential_required".into());
            Answer::Reply(reply)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{Gateway, HeadOutcome};

    fn outcome(config: &str, method: &str, path: &str) -> HeadOutcome {
        let gw = Gateway::from_plugin_config(config).unwrap();
        let h = vec![(":method".to_string(), method.to_string()), (":path".to_string(), path.to_string())];
        gw.on_request_headers(&RequestHead { headers: &h }, &mut Attributes::default())
    }

    const OPEN: &str = "servers:\n  - name: demo\n";
    const AUTH: &str = "servers:\n  - name: demo\nauth:\n  enabled: true\n  token: s3cret\n";

    #[test]
    fn routes_and_methods() {
        assert!(matches!(outcome(OPEN, "GET", "/health"), HeadOutcome::Health(Detail::Full)));
        assert!(matches!(outcome(OPEN, "GET", "/health?x=1"), HeadOutcome::Health(Detail::Full)));
        assert!(matches!(outcome(OPEN, "POST", "/health"), HeadOutcome::Reply(r) if r.status == 405));
        assert!(matches!(outcome(OPEN, "GET", "/servers"), HeadOutcome::Reply(r) if r.status == 200));
        assert!(matches!(outcome(OPEN, "GET", "/healthz"), HeadOutcome::PassThrough));
    }

    #[test]
    fn only_refusals_are_audited() {
        let decision = |config: &str, method: &str, path: &str| {
            let gw = Gateway::from_plugin_config(config).unwrap();
            let h = vec![(":method".to_string(), method.to_string()), (":path".to_string(), path.to_string())];
            let mut a = Attributes::default();
            gw.on_request_headers(&RequestHead { headers: &h }, &mut a);
            a.decision
        };
        assert_eq!(decision(OPEN, "GET", "/health"), None);
        assert_eq!(decision(OPEN, "GET", "/servers"), None);
        assert_eq!(decision(AUTH, "GET", "/health"), None);
        assert_eq!(decision(AUTH, "GET", "/servers"), Some(Decision::AuthFailed));
        assert_eq!(decision(OPEN, "POST", "/health"), Some(Decision::Error));
    }

    #[test]
    fn auth_hides_details() {
        assert!(matches!(outcome(AUTH, "GET", "/health"), HeadOutcome::Health(Detail::Summary)));
        let HeadOutcome::Reply(r) = outcome(AUTH, "GET", "/servers") else { panic!("not a reply") };
        assert_eq!(r.status, 401);
        assert!(!r.body.contains("s3cret"));
    }
}
