//! Phase 1, the request headers: OAuth metadata, the gateway's own
//! endpoints, routing, authentication, the method and the header checks
//! that need no body.

use super::{Gateway, HeadOutcome, McpRequest};
use crate::auth::{self, Check};
use crate::endpoints;
use crate::envelope::{code, Reply, ReplyTo};
use crate::headers::mcpheaders::McpHeaders;
use crate::request::{Attributes, Decision, RequestHead, MCP_PREFIX};

/// Whether the request head announces a body (`Content-Length` above 0, or
/// any `Transfer-Encoding`).
fn head_declares_body(head: &RequestHead<'_>) -> bool {
    head.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding")
            || (k.eq_ignore_ascii_case("content-length") && v.trim().parse::<u64>().map_or(true, |n| n > 0))
    })
}

/// Accepts `application/json` with no `charset` parameter or exactly one
/// that is `utf-8` (any case, quoted or not). Anything else would let a
/// backend that honours the charset (Express's JSON parser does) decode the
/// bytes into a message the gateway never saw. Malformed parameters are
/// refused too: parsers disagree on them.
pub fn check_json_content_type(ct: &str) -> Result<(), String> {
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(format!("Content-Type must be application/json, got {ct:?}"));
    }
    let rest = ct.get(ct.find(';').unwrap_or(ct.len())..).unwrap_or("");
    let mut charsets = 0;
    for (name, value) in media_params(rest).map_err(|why| format!("Content-Type {ct:?}: {why}"))? {
        if name.eq_ignore_ascii_case("charset") {
            charsets += 1;
            if !value.eq_ignore_ascii_case("utf-8") || charsets > 1 {
                return Err(format!(
                    "Content-Type {ct:?}: only UTF-8 JSON is accepted (no charset parameter, or one charset=utf-8)"
                ));
            }
        }
    }
    Ok(())
}

/// The `; name=value` parameters of a media type, values unquoted
/// (RFC 9110 quoted-string, with `\` escapes). Whitespace around `;` and `=`
/// is tolerated, as common parsers do.
fn media_params(mut s: &str) -> Result<Vec<(&str, String)>, String> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        s = s.strip_prefix(';').ok_or("a parameter must follow \";\"")?.trim_start();
        if s.is_empty() {
            return Ok(out); // a trailing ";"
        }
        let eq = s.find('=').ok_or("a parameter has no \"=\"")?;
        let (name, after) = s.split_at(eq);
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b)) {
            return Err(format!("malformed parameter name {name:?}"));
        }
        let after = after.get(1..).unwrap_or("").trim_start();
        let (value, rest) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => v.push(chars.next().ok_or("unterminated quoted value")?.1),
                    Some((i, '"')) => break i + 1,
                    Some((_, c)) => v.push(c),
                    None => return Err("unterminated quoted value".into()),
                }
            };
            (v, q.get(end..).unwrap_or(""))
        } else {
            let end = after.find(';').unwrap_or(after.len());
            let (v, rest) = after.split_at(end);
            (v.trim().to_string(), rest)
        };
        if value.is_empty() || value.contains(|c: char| c.is_control()) {
            return Err(format!("parameter {name:?} has an empty or malformed value"));
        }
        out.push((name, value));
        s = rest;
    }
}

impl Gateway {
    /// Phase 1: routing, auth and the checks that need no body.
    pub fn on_request_headers(&self, head: &RequestHead<'_>, attrs: &mut Attributes) -> HeadOutcome {
        let path = head.path();
        if let Some(reply) = self.metadata(head) {
            attrs.decision = Some(Decision::Allow);
            attrs.reason = Some("oauth_metadata".into());
            return HeadOutcome::Reply(reply);
        }
        if let Some(ep) = crate::endpoints::Endpoint::from_path(path) {
            let access = || match self.authenticate(head) {
                Ok(_) => endpoints::Access::Full,
                Err(reply) => endpoints::Access::Anonymous(reply),
            };
            return match endpoints::answer(ep, head, &self.config, attrs, access) {
                endpoints::Answer::Health(detail) => HeadOutcome::Health(detail),
                endpoints::Answer::Reply(reply) => HeadOutcome::Reply(reply),
            };
        }
        let Some(server) = path.strip_prefix(MCP_PREFIX) else {
            return HeadOutcome::PassThrough;
        };
        let known = self.servers.contains_key(server);
        if known {
            attrs.server = Some(server.to_string());
        }
        // Auth before anything else, for every method (GET and DELETE too),
        // and the same way for unknown names: the 401 (its challenge's
        // resource_metadata URL included) must not tell a caller without a
        // credential which server names exist.
        let principal = match self.auth.check(head, Some(server), auth::now_secs()) {
            Check::Open => None,
            Check::Allowed(p) => Some(p),
            Check::Refused(r) => {
                attrs.decision = Some(Decision::AuthFailed);
                attrs.reason = Some(r.reason.into());
                return HeadOutcome::Reply(r.reply);
            }
            Check::AwaitKeys(r) => {
                attrs.decision = Some(if r.reply.status == 401 { Decision::AuthFailed } else { Decision::Error });
                attrs.reason = Some(r.reason.into());
                return HeadOutcome::AwaitKeys(r.reply);
            }
        };
        if !known {
            let known: Vec<&str> = self.servers.keys().map(String::as_str).collect();
            let msg = format!("unknown MCP server {server:?}; this gateway serves: {}", known.join(", "));
            attrs.decision = Some(Decision::Error);
            attrs.reason = Some("unknown_server".into());
            return HeadOutcome::Reply(Reply::error(404, code::NOT_FOUND, &msg, &ReplyTo::Http));
        }
        attrs.client = principal.as_ref().map(|p| p.identity.clone());
        let (identity, grant) = principal.map_or((None, None), |p| (Some(p.identity), p.grant));
        let mcp_headers = McpHeaders::capture(head.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let req = McpRequest { server: server.to_string(), identity, mcp_headers, grant };
        match head.method() {
            "POST" => match self.check_post_headers(head) {
                Some(reply) => {
                    attrs.decision = Some(Decision::Error);
                    attrs.reason = Some("bad_request".into());
                    HeadOutcome::Reply(reply)
                }
                None => HeadOutcome::ReadBody(req),
            },
            "GET" | "DELETE" => {
                attrs.method = Some(head.method().to_string());
                if head_declares_body(head) {
                    return HeadOutcome::Reply(Self::body_not_allowed(head.method(), attrs));
                }
                attrs.decision = Some(Decision::Allow);
                HeadOutcome::Forward(req)
            }
            other => {
                attrs.decision = Some(Decision::Error);
                attrs.reason = Some("method_not_allowed".into());
                HeadOutcome::Reply(
                    Reply::error(
                        405,
                        code::METHOD_NOT_ALLOWED,
                        &format!("{other} is not supported on an MCP endpoint; use POST, GET or DELETE"),
                        &ReplyTo::Http,
                    )
                    .with_header("allow", "POST, GET, DELETE"),
                )
            }
        }
    }

    /// RFC 9728 metadata (oauth only), served without auth.
    fn metadata(&self, head: &RequestHead<'_>) -> Option<Reply> {
        // Every name under /mcp/ gets a document, known or not: a 404 for
        // unknown names would list the servers to anyone (docs/auth.md).
        self.auth.metadata(head)
    }

    /// The refusal of a body on a method other than POST: the gateway only
    /// parses (and so only decides on) POST bodies, so a body elsewhere would
    /// reach the backend unread.
    pub fn body_not_allowed(method: &str, attrs: &mut Attributes) -> Reply {
        attrs.decision = Some(Decision::Error);
        attrs.reason = Some("body_not_allowed".into());
        let msg =
            format!("a {method} request to an MCP endpoint must not carry a body; send JSON-RPC messages with POST");
        Reply::error(400, code::INVALID_REQUEST, &msg, &ReplyTo::Http)
    }

    /// Content type, encoding and declared size of a JSON-RPC POST.
    fn check_post_headers(&self, head: &RequestHead<'_>) -> Option<Reply> {
        let types = head.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("content-type")).count();
        let ct = head.get("content-type").unwrap_or("");
        if let Err(why) = check_json_content_type(ct).and_then(|()| match types {
            0 | 1 => Ok(()),
            _ => Err("Content-Type appears more than once".to_string()),
        }) {
            let msg = format!("{why} (with curl, add -H 'Content-Type: application/json')");
            return Some(Reply::error(415, code::UNSUPPORTED_MEDIA_TYPE, &msg, &ReplyTo::Http));
        }
        if let Some(enc) = head.get("content-encoding").filter(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            let msg = format!("Content-Encoding {enc:?} is not accepted; send the JSON body uncompressed");
            return Some(Reply::error(415, code::UNSUPPORTED_MEDIA_TYPE, &msg, &ReplyTo::Http));
        }
        if let Some(len) = head.get("content-length").and_then(|l| l.trim().parse::<u64>().ok()) {
            if len > self.max_body() {
                return Some(self.too_large());
            }
        }
        None
    }

    pub fn too_large(&self) -> Reply {
        let msg = format!("request body is larger than limits.max_body_bytes ({} bytes)", self.max_body());
        Reply::error(413, code::PAYLOAD_TOO_LARGE, &msg, &ReplyTo::Http)
    }

    /// Whether a body of `len` bytes (so far) is still within the limit.
    pub fn body_within_limit(&self, len: usize) -> bool {
        len as u64 <= self.max_body()
    }
}
