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
//!
//! One file per step, each an `impl Gateway` block: `admit` (phase 0),
//! `headers` (phase 1), `body` (phase 2), `lists` (the response phase);
//! this file holds the `Gateway` itself and the outcomes each step returns.

use crate::auth::{self, Auth, Check, Grant};
use crate::config::{Config, ConfigError, IntegrityMode, Mode};
use crate::envelope::{Reply, ReplyTo};
use crate::headers::mcpheaders::McpHeaders;
use crate::integrity::{self, StoreError};
use crate::policy::{Effective, Policy};
use serde_json::Value;
use std::collections::BTreeMap;

mod admit;
mod body;
mod headers;
mod lists;

pub use headers::check_json_content_type;

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
}

/// `(server, tool)` → the integrity violation recorded for it, if any.
pub type ViolationLookup<'a> = dyn Fn(&str, &str) -> Result<Option<integrity::Kind>, StoreError> + 'a;

#[cfg(test)]
mod admit_tests;

#[cfg(test)]
mod tests;
