//! Phase 2, the whole request body: strict parsing, the era and batch
//! rules, policy, integrity enforcement and the rate-limit cost.

use super::{BodyOutcome, Forward, Gateway, McpRequest, ResponsePlan, ViolationLookup, LIST_ACCEPT};
use crate::config::IntegrityMode;
use crate::envelope::{code, Reply, ReplyTo};
use crate::headers::mcpheaders::McpHeaders;
use crate::integrity;
use crate::policy::Action;
use crate::request::jsonrpc::{self, Body};
use crate::request::{Attributes, Decision};
use serde_json::Value;

impl Gateway {
    /// Phase 2: parse the whole body and decide (no integrity baseline: for
    /// callers without one, e.g. tests).
    pub fn on_request_body(&self, req: &McpRequest, body: &[u8], attrs: &mut Attributes) -> BodyOutcome {
        self.on_request_body_with(req, body, attrs, &|_, _| Ok(None))
    }

    /// Phase 2 with `violation(server, tool)`, which tells whether integrity
    /// pinning recorded a violation for a tool (read only in `enforce` mode).
    pub fn on_request_body_with(
        &self,
        req: &McpRequest,
        body: &[u8],
        attrs: &mut Attributes,
        violation: &ViolationLookup<'_>,
    ) -> BodyOutcome {
        self.on_request_body_checked(req, body, attrs, violation, &|_| Ok(None))
    }

    /// Phase 2 with the integrity lookup and `tool_headers(tool)`, the
    /// `x-mcp-header` map recorded for a tool of this server (read only for
    /// 2026-07-28 `tools/call`).
    pub fn on_request_body_checked(
        &self,
        req: &McpRequest,
        body: &[u8],
        attrs: &mut Attributes,
        violation: &ViolationLookup<'_>,
        tool_headers: &crate::headers::mcpheaders::ToolHeadersLookup<'_>,
    ) -> BodyOutcome {
        let parsed = match jsonrpc::parse_body(body) {
            Ok(b) => b,
            Err(e) => {
                attrs.decision = Some(Decision::Error);
                attrs.reason = Some(if e.code == code::PARSE_ERROR { "parse_error" } else { "invalid_request" }.into());
                let to = match e.id {
                    Some(id) => ReplyTo::JsonRpc(id),
                    None if e.code == code::PARSE_ERROR => ReplyTo::JsonRpc(Value::Null),
                    None => ReplyTo::message(None),
                };
                return BodyOutcome::Reply(Reply::error(400, e.code, &e.message, &to));
            }
        };
        let Some(policy) = self.effective(req) else {
            return BodyOutcome::Reply(Reply::error(404, code::NOT_FOUND, "unknown MCP server", &ReplyTo::Http));
        };
        let reply_to = ReplyTo::message(parsed.reply_id());
        let messages = parsed.messages();
        attrs.method = Some(match &parsed {
            Body::Single(m) => m.method().unwrap_or("response").to_string(),
            Body::Batch(_) => "batch".to_string(),
        });
        // Headers that disagree with the body never reach a backend (docs/policy.md).
        if let Err(e) = req.mcp_headers.check_with(&parsed, tool_headers) {
            attrs.decision = Some(Decision::Error);
            attrs.reason = Some("header_mismatch".into());
            return BodyOutcome::Reply(Reply::error_with_data(400, e.code, &e.message, e.data, &reply_to));
        }
        if let Body::Batch(_) = &parsed {
            if let Some(reply) = self.check_batch_version(req, attrs) {
                return BodyOutcome::Reply(reply);
            }
        }
        let mut list_ids = Vec::new();
        let mut calls: Vec<&str> = Vec::new();
        for m in messages {
            let Some(method) = m.method() else { continue };
            let classified = if era_removed_untargeted(method, m, &req.mcp_headers) {
                Ok(Action::Other)
            } else {
                Action::classify(method, m.params())
            };
            let action = match classified {
                Ok(a) => a,
                Err(e) => {
                    attrs.decision = Some(Decision::Error);
                    attrs.reason = Some("invalid_params".into());
                    return BodyOutcome::Reply(Reply::error(400, code::INVALID_PARAMS, &e.0, &reply_to));
                }
            };
            let action = completion_target(method, m.params()).unwrap_or(action);
            if let Action::CallTool { name, .. } = action {
                // A batch names its first tool; each denial names its own.
                attrs.tool.get_or_insert_with(|| name.to_string());
            }
            if let Err(d) = policy.check(&action) {
                attrs.decision = Some(Decision::Deny);
                attrs.reason = Some(d.reason.as_str().to_string());
                if let Action::CallTool { name, .. } = action {
                    attrs.tool = Some(name.to_string());
                }
                let data = serde_json::json!({ "reason": d.reason.as_str() });
                return BodyOutcome::Reply(self.denial(&d.message, data, &reply_to));
            }
            if let Action::CallTool { name, .. } = action {
                calls.push(name);
                if let Some(reply) = self.check_call_integrity(&req.server, name, violation, &reply_to, attrs) {
                    return BodyOutcome::Reply(reply);
                }
            }
            // OAuth step-up: a tool may need scopes beyond the server's.
            if let (Action::CallTool { name, .. }, Some(grant), Some(o)) = (&action, &req.grant, self.auth.oauth()) {
                if let Some(r) = o.check_tool(&req.server, name, grant, &reply_to) {
                    attrs.decision = Some(Decision::Deny);
                    attrs.reason = Some(r.reason.into());
                    attrs.tool = Some(name.to_string());
                    return BodyOutcome::Reply(r.reply);
                }
            }
            if method == "tools/list" {
                if let Some(id) = m.id() {
                    list_ids.push(id.clone());
                }
            }
        }
        if let Some(reply) = self.check_batch_charge(&calls, attrs) {
            return BodyOutcome::Reply(reply);
        }
        attrs.decision = Some(Decision::Allow);
        let hits = u32::try_from(messages.len()).unwrap_or(u32::MAX);
        let tool_hits = u32::try_from(calls.len()).unwrap_or(u32::MAX);
        let mut forward = Forward { reply_to, hits, tool_hits, ..Forward::default() };
        forward.set_headers.extend(self.bridge_identity(req));
        if !list_ids.is_empty() && self.inspects_lists() {
            // Pin uncompressed JSON so the list can be inspected: no streaming
            // or encoding bypass. SSE stays acceptable (at low preference) only
            // because Streamable HTTP servers may refuse a client that does
            // not accept both (406); an SSE answer is inspected event by event.
            forward.set_headers.push(("accept", LIST_ACCEPT.to_string()));
            forward.set_headers.push(("accept-encoding", "identity".to_string()));
            forward.response = ResponsePlan::FilterToolsList { list_ids };
        }
        BodyOutcome::Forward(forward)
    }

    /// Batches exist only in protocol revision 2025-03-26 (and are tolerated
    /// from clients that send no version); from 2025-06-18 on, a batch is not
    /// an MCP message and is refused rather than guessed at.
    fn check_batch_version(&self, req: &McpRequest, attrs: &mut Attributes) -> Option<Reply> {
        let v =
            req.mcp_headers.version().filter(|v| *v >= crate::headers::mcpheaders::FIRST_VERSION_WITHOUT_BATCHES)?;
        attrs.decision = Some(Decision::Error);
        attrs.reason = Some("batch_not_allowed".into());
        let msg = format!(
            "JSON-RPC batches are not part of MCP protocol version {v} (only 2025-03-26 has them); send each message in its own POST"
        );
        Some(Reply::error(400, code::INVALID_REQUEST, &msg, &ReplyTo::message(None)))
    }

    /// A batch is charged to the rate limits as its messages would be sent
    /// alone: N tokens from the global bucket and one per call from the
    /// called tool's bucket. One request can charge only one tool bucket, so
    /// with per-tool limits on, a batch calling two different tools is
    /// refused rather than under-charged.
    fn check_batch_charge(&self, calls: &[&str], attrs: &mut Attributes) -> Option<Reply> {
        let rl = &self.config.rate_limit;
        let first = calls.first()?;
        let other = calls.iter().find(|c| *c != first)?;
        if !(rl.enabled && rl.per_tool) {
            return None;
        }
        attrs.decision = Some(Decision::Error);
        attrs.reason = Some("batch_mixed_tools".into());
        let msg = format!(
            "a batch may call only one tool while per-tool rate limits are on (each call is charged to its tool's \
             bucket); send the calls to {first:?} and {other:?} as separate requests"
        );
        Some(Reply::error(400, code::INVALID_REQUEST, &msg, &ReplyTo::message(None)))
    }

    /// Refuses a call to a tool that integrity pinning recorded as violating
    /// (`enforce` only; fails closed when the record cannot be read).
    fn check_call_integrity(
        &self,
        server: &str,
        tool: &str,
        violation: &ViolationLookup<'_>,
        reply_to: &ReplyTo,
        attrs: &mut Attributes,
    ) -> Option<Reply> {
        if self.config.inspection.tool_integrity != IntegrityMode::Enforce {
            return None;
        }
        let pins = self.config.inspection.pins.as_ref().and_then(|l| l.get(server));
        // A locked server's tool that is not in the lock is refused without a
        // lookup: it was never reviewed, listed or not.
        let recorded = match pins {
            Some(p) if !p.contains_key(tool) => Ok(Some(integrity::Kind::Unpinned)),
            _ => violation(server, tool),
        };
        let kind = match recorded {
            Ok(None) => return None,
            Ok(Some(kind)) => kind,
            Err(e) => {
                attrs.decision = Some(Decision::Error);
                attrs.reason = Some("integrity_unavailable".into());
                let msg = format!("tool integrity could not be checked, so the call is refused: {e}");
                return Some(Reply::error(503, code::UNAVAILABLE, &msg, reply_to));
            }
        };
        attrs.decision = Some(Decision::Deny);
        attrs.reason = Some(format!("integrity_{}", kind.as_str()));
        attrs.tool = Some(tool.to_string());
        let msg = if pins.is_some() {
            format!(
                "tool {tool:?} on server {server:?} is blocked by tool_integrity: enforce: {}. An operator can review \
                 it with `mcpx pin --check` and accept it with `mcpx pin --update --server {server} --tool {tool}`",
                kind.explain()
            )
        } else {
            format!(
                "tool {tool:?} on server {server:?} is blocked by tool_integrity: enforce: {}. An operator can review \
                 it with `mcpx baseline show` and accept it with `mcpx baseline reset --server {server} --tool {tool}`",
                kind.explain()
            )
        };
        let data = serde_json::json!({ "reason": attrs.reason, "integrity": kind.as_str() });
        Some(self.denial(&msg, data, reply_to))
    }

    /// The answer to a parseable request that policy (or integrity pinning)
    /// refused: JSON-RPC -32003. Its HTTP status is `denial_http_status`
    /// (200 by default) when the error answers the request's own id, since
    /// only a 2xx reaches every official client as a JSON-RPC error with its
    /// session intact (docs/clients.md). Without an id to answer (a batch,
    /// a notification) nobody could match the error to a call, so an HTTP
    /// error status (403) says it. Authentication failures (401, and 403
    /// `insufficient_scope` with its challenge) and rate limits (429) keep
    /// their statuses: OAuth clients act on those.
    fn denial(&self, message: &str, data: Value, reply_to: &ReplyTo) -> Reply {
        let status = match reply_to {
            ReplyTo::JsonRpc(id) if !id.is_null() => self.config.denial_http_status,
            _ => crate::config::DENIAL_STATUS_FORBIDDEN,
        };
        Reply::error_with_data(status, code::FORBIDDEN, message, Some(data), reply_to)
    }
}

/// `resources/subscribe` does not exist in the 2026-07-28 era (servers answer
/// -32601). Sent there without a `uri` it names nothing policy could judge,
/// so the server's own answer is the right one, not the gateway's -32602.
/// With a `uri` (in any spelling) it is judged as ever: a lenient server
/// might still serve it.
fn era_removed_untargeted(method: &str, m: &jsonrpc::Message, headers: &McpHeaders) -> bool {
    method == "resources/subscribe"
        && headers.is_modern(m)
        && match m.params() {
            None => true,
            Some(Value::Object(o)) => !o.keys().any(|k| crate::request::fold::fold_eq(k, "uri")),
            Some(_) => false, // not an MCP shape: classify refuses it
        }
}

/// `completion/complete` asks about one prompt's or resource's arguments:
/// it is judged as a `prompts/get` of that prompt or a `resources/read` of
/// that resource, so a caller learns nothing about one it may not use.
fn completion_target<'a>(method: &str, params: Option<&'a Value>) -> Option<Action<'a>> {
    if method != "completion/complete" {
        return None;
    }
    let r = params?.get("ref")?;
    match r.get("type")?.as_str()? {
        "ref/prompt" => Some(Action::GetPrompt { name: r.get("name")?.as_str()? }),
        "ref/resource" => Some(Action::ReadResource { uri: r.get("uri")?.as_str()? }),
        _ => None,
    }
}
