//! The request pipeline, free of proxy-wasm calls so it runs and is tested
//! natively. The glue (`glue/`) feeds it headers and bodies and carries out
//! the outcome it returns.
//!
//! Order (every step but Envoy's is a function here, called in this order):
//! CORS (Envoy) → [`Gateway::admit`]: internal headers and the credential
//! removed, Origin check, `/metrics` gate → [`Gateway::on_request_headers`]:
//! OAuth metadata, `/health` and `/servers`, route, auth, method and header
//! checks → [`Gateway::on_request_body`]: parse, policy, rate-limit cost →
//! rate limit (Envoy, from headers set here) → forward → inspect the response
//! ([`Gateway::rewrite_tools_list`], [`Gateway::list_inspector`]).

use crate::auth::{self, Auth, Check, Grant};
use crate::config::{Config, ConfigError, IntegrityMode, Mode};
use crate::endpoints;
use crate::envelope::{code, Reply, ReplyTo};
use crate::headers::mcpheaders::McpHeaders;
use crate::integrity::{self, BaselineStore, StoreError};
use crate::policy::{Action, Effective, Policy};
use crate::request::jsonrpc::{self, Body};
use crate::tools_list::inspect::ListInspector;
use serde_json::Value;
use std::collections::BTreeMap;

// The names and request types live in leaf modules (so `auth`, `ops` and
// `endpoints` need not import this one); re-exported where they were.
pub use crate::names::{IDENTITY_HEADER, INTERNAL_HEADERS, INTERNAL_HEADER_PREFIX};
pub use crate::request::{encode_identity, Attributes, Decision, RequestHead, MCP_PREFIX};

/// The `Accept` a `tools/list` is forwarded with when it will be inspected.
pub const LIST_ACCEPT: &str = "application/json, text/event-stream;q=0.1";

/// Everything the filter needs, built once per configuration.
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    servers: BTreeMap<String, ServerEntry>,
    auth: Auth,
}

#[derive(Debug)]
struct ServerEntry {
    policy: Policy,
    /// Client identity -> that client's override for this server.
    clients: BTreeMap<String, Policy>,
}

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

/// What [`Gateway::admit`] decided.
#[derive(Debug)]
pub struct Admission<'a> {
    /// Request headers to remove before anything is forwarded.
    pub remove: Vec<&'a str>,
    pub verdict: Admit,
}

#[derive(Debug, PartialEq)]
pub enum Admit {
    /// Go on to [`Gateway::on_request_headers`].
    Continue,
    /// `/metrics`: forward to Envoy's stats; the glue appends the breaker series.
    ServeMetrics,
    /// Answer now; the request never reaches a backend.
    Reply(Reply),
}

/// What to do after the request headers.
#[derive(Debug)]
pub enum HeadOutcome {
    /// Not an MCP or gateway path: let Envoy's routes decide.
    PassThrough,
    /// Answer now; the request never reaches a backend.
    Reply(Reply),
    /// A JSON-RPC POST: buffer the body, then call [`Gateway::on_request_body`].
    ReadBody(McpRequest),
    /// GET (server stream) or DELETE (session end): forward as is.
    Forward(McpRequest),
    /// OAuth keys are not loaded yet (or a re-fetch may bring the token's
    /// new `kid`): hold the request and run the headers phase again when
    /// keys change; when waiting is over, send this reply (503 or 401).
    AwaitKeys(Reply),
    /// `GET /health`: probe every backend, then answer with this much detail.
    Health(crate::endpoints::health::Detail),
}

/// An authenticated request to one MCP server, carried from the headers to
/// the body and response phases.
#[derive(Debug, Clone)]
pub struct McpRequest {
    pub server: String,
    /// The caller's identity, when auth established one.
    pub identity: Option<String>,
    /// The 2026-07-28 routing headers, checked against the body.
    pub mcp_headers: McpHeaders,
    /// OAuth: the token's scopes, for per-tool step-up checks.
    pub grant: Option<Grant>,
}

/// What to do with a complete request body.
#[derive(Debug)]
pub enum BodyOutcome {
    Reply(Reply),
    Forward(Forward),
}

/// How to forward an allowed request.
#[derive(Debug, Default)]
pub struct Forward {
    /// Request headers to set (e.g. the pinned `accept` for tools/list).
    pub set_headers: Vec<(&'static str, String)>,
    /// What to do with the response.
    pub response: ResponsePlan,
    /// Whom an error made later (by Envoy: 429, 503) must answer.
    pub reply_to: ReplyTo,
    /// Rate-limit tokens this request costs: one per message, so a batch
    /// costs what its messages would cost sent alone (global bucket).
    pub hits: u32,
    /// Tokens for the called tool's bucket: one per `tools/call` (all calls
    /// of a batch name the same tool when per-tool limits are on).
    pub tool_hits: u32,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub enum ResponsePlan {
    #[default]
    PassThrough,
    /// Buffer the JSON response and filter the tools of these list requests.
    FilterToolsList { list_ids: Vec<Value> },
}

impl Gateway {
    /// Builds the gateway from a plugin configuration (YAML or JSON).
    pub fn from_plugin_config(text: &str) -> Result<Self, ConfigError> {
        Self::new(Config::from_yaml(text, Mode::Plugin)?)
    }

    pub fn new(config: Config) -> Result<Self, ConfigError> {
        let compile = |p, key: String| Policy::compile(p).map_err(|m| ConfigError { key, message: m });
        let mut servers = BTreeMap::new();
        for s in &config.servers {
            let policy = compile(&s.policy, format!("servers.{}.policy", s.name))?;
            servers.insert(s.name.clone(), ServerEntry { policy, clients: BTreeMap::new() });
        }
        for (client, c) in &config.clients {
            for (server, p) in &c.servers {
                let key = format!("clients.{client}.servers.{server}");
                let policy = compile(p, key.clone())?;
                let entry =
                    servers.get_mut(server).ok_or_else(|| ConfigError { key, message: "unknown server".into() })?;
                entry.clients.insert(client.clone(), policy);
            }
        }
        let names: Vec<String> = config.servers.iter().map(|s| s.name.clone()).collect();
        let auth = Auth::new(&config.auth, &names)?;
        Ok(Self { config, servers, auth })
    }

    /// Authentication (static credentials or OAuth state); the glue feeds
    /// the OAuth key set through it.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The header carrying the gateway's credential; the glue removes it
    /// before anything is forwarded (no token passthrough).
    pub fn credential_header(&self) -> Option<&str> {
        self.auth.credential_header()
    }

    /// "Any valid credential" for gateway endpoints (/servers, /metrics,
    /// /health detail): `Ok(None)` when auth is off, `Ok(Some(identity))`
    /// for a valid credential, else the 401 (or 503) reply to send.
    pub fn authenticate(&self, head: &RequestHead<'_>) -> Result<Option<String>, Reply> {
        match self.auth.check(head, None, auth::now_secs()) {
            Check::Open => Ok(None),
            Check::Allowed(p) => Ok(Some(p.identity)),
            Check::Refused(r) | Check::AwaitKeys(r) => Err(r.reply),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    fn max_body(&self) -> u64 {
        self.config.limits.max_body_bytes
    }

    fn effective<'a>(&'a self, req: &McpRequest) -> Option<Effective<'a>> {
        let entry = self.servers.get(&req.server)?;
        let client = req.identity.as_ref().and_then(|id| entry.clients.get(id));
        Some(Effective { server: &entry.policy, client })
    }

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

    /// The identity header for a request to a stdio server (the bridge), if
    /// auth established an identity.
    pub fn bridge_identity(&self, req: &McpRequest) -> Option<(&'static str, String)> {
        let server = self.config.server(&req.server)?;
        if server.transport != crate::config::Transport::Stdio {
            return None;
        }
        req.identity.as_deref().map(|id| (IDENTITY_HEADER, encode_identity(id)))
    }

    /// Whether the request's MCP facts are published to Envoy as filter
    /// state (`wasm.mcp_*`): only the audit log and the tracing span tags
    /// read them, and each property is a host call and an Envoy allocation.
    pub fn publishes_attributes(&self) -> bool {
        self.config.audit.enabled || self.config.tracing.enabled
    }

    /// Whether answers are inspected for lists (integrity or filtering on).
    pub fn inspects_lists(&self) -> bool {
        self.config.inspection.filter_tools_list || self.config.inspection.tool_integrity != IntegrityMode::Off
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

    /// The response-phase inspector of `tools/list` for this request.
    pub fn list_inspector<'a>(&'a self, req: &'a McpRequest) -> Option<ListInspector<'a>> {
        Some(ListInspector {
            server: &req.server,
            policy: self.effective(req)?,
            filter: self.config.inspection.filter_tools_list,
            integrity: self.config.inspection.tool_integrity,
            lock: self.config.inspection.pins.as_ref(),
        })
    }

    /// Response phase for a JSON answer: the new body, if it changed, and the
    /// integrity violations found. The answer to a list request
    /// (`list_ids` not empty) is always parsed; any other answer only when
    /// it might hold a list. An answer that might hold a list but cannot be
    /// inspected is replaced by an error, never passed.
    pub fn rewrite_tools_list(
        &self,
        req: &McpRequest,
        list_ids: &[Value],
        body: &[u8],
        store: &mut dyn BaselineStore,
    ) -> Result<crate::tools_list::inspect::Inspection, Reply> {
        let Some(inspector) = self.list_inspector(req) else {
            return Ok(Default::default());
        };
        let found =
            if list_ids.is_empty() { inspector.inspect_any(body, store) } else { inspector.inspect_json(body, store) };
        found.map_err(|e| Self::uninspectable(list_ids, &e.0))
    }

    /// The error that replaces a list that could not be inspected.
    pub fn uninspectable(list_ids: &[Value], why: &str) -> Reply {
        let to = ReplyTo::message(list_ids.first());
        Reply::error(
            502,
            code::UNAVAILABLE,
            &format!("the backend's answer could not be inspected for lists: {why}"),
            &to,
        )
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

/// `(server, tool)` → the integrity violation recorded for it, if any.
pub type ViolationLookup<'a> = dyn Fn(&str, &str) -> Result<Option<integrity::Kind>, StoreError> + 'a;

#[cfg(test)]
#[path = "admit_tests.rs"]
mod admit_tests;

#[cfg(test)]
mod tests {
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
        let servers =
            |extra: &[(&str, &str)]| g.authenticate(&RequestHead { headers: &headers("GET", "/servers", extra) });
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
        let req =
            McpRequest { server: "demo".into(), identity: None, mcp_headers: McpHeaders::capture(h), grant: None };
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
        let BodyOutcome::Forward(f) = run_body(&g, None, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).0 else {
            panic!()
        };
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
        let (o, a) =
            body(None, r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"dangerous_delete"}}"#);
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
        let g = Gateway::from_plugin_config(
            "servers:\n  - name: demo\n    policy: {deny_resources: [\"file:///secret\"]}\n",
        )
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
        assert!(
            matches!(body(Some("bot"), call).0, BodyOutcome::Reply(r) if r.status == 200 && r.body.contains("-32003"))
        );
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
        let call =
            |name: &str| format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"{name}"}}}}"#);
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
        let e = Gateway::from_plugin_config(&format!("{CONFIG}inspection: {{pins: {{demo: {{echo: abc}}}}}}\n"))
            .unwrap_err();
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
        for allowed in [r#"{"type":"ref/prompt","name":"greet"}"#, r#"{"type":"ref/resource","uri":"file:///data/ok"}"#]
        {
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
}
