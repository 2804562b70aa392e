//! The request as every phase reads it: the head Envoy hands over and the
//! facts the audit line, metrics and rate limits are built from. A leaf
//! module (it imports only `names`), so `auth`, `endpoints`, `ops`
//! and `gateway` all read the same types without importing each other.

use crate::names::INTERNAL_HEADER_PREFIX;

/// The MCP endpoints live under this prefix: `/mcp/{server}`.
pub const MCP_PREFIX: &str = "/mcp/";

/// The request line and headers, as Envoy gives them (`:method`, `:path`
/// pseudo-headers included; names lowercase).
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub headers: &'a [(String, String)],
}

impl<'a> RequestHead<'a> {
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> &'a str {
        self.get(":method").unwrap_or("")
    }

    /// The path without its query string.
    pub fn path(&self) -> &'a str {
        let p = self.get(":path").unwrap_or("");
        p.split_once('?').map_or(p, |(path, _)| path)
    }

    /// The client-sent copies of internal headers, to be removed on entry.
    pub fn internal_headers(&self) -> impl Iterator<Item = &'a str> {
        self.headers.iter().map(|(k, _)| k.as_str()).filter(|k| starts_with_ignore_case(k, INTERNAL_HEADER_PREFIX))
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes().get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The per-request facts audit logs, metrics and rate limits are built from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub server: Option<String>,
    pub method: Option<String>,
    pub tool: Option<String>,
    pub client: Option<String>,
    pub decision: Option<&'static str>,
    pub reason: Option<String>,
    /// Integrity violations seen on this request, `kind:tool` comma-separated
    /// (audit field `integrity`; see `inspect::audit_note`).
    pub integrity: Option<String>,
}
