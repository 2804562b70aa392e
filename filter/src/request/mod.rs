//! The request as every phase reads it: the head Envoy hands over and the
//! facts the audit line, metrics and rate limits are built from (here), and
//! the bytes read into values in the one form every later step compares:
//! header maps from the host (`hostmap`), the strict JSON-RPC body
//! (`jsonrpc`), case-folded keys (`fold`), typed argument scalars (`scalar`)
//! and resource URIs in normal form (`resource_uri`).
//!
//! A leaf directory (it imports only `names`), so `auth`, `endpoints`, `ops`
//! and `gateway` all read the same types without importing each other.

pub mod fold;
mod fold_table;
pub mod hostmap;
pub mod jsonrpc;
pub mod resource_uri;
pub mod scalar;

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
    pub decision: Option<Decision>,
    pub reason: Option<String>,
    /// Integrity violations seen on this request, `kind:tool` comma-separated
    /// (audit field `integrity`; see `inspect::audit_note`).
    pub integrity: Option<String>,
}

/// What the gateway decided about a request: the audit line's `decision`
/// and the `decision` label of `mcpx_tool_calls_total`. `None` in
/// [`Attributes`] means the request was not an audited MCP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Forwarded (Envoy may still refuse it later: then `RateLimited` or `Error`).
    Allow,
    /// Refused by policy (tools, arguments, resources, Origin, integrity).
    Deny,
    /// No valid credential, or not enough scope.
    AuthFailed,
    /// Envoy's rate limit answered 429.
    RateLimited,
    /// Malformed, unsupported or undeliverable.
    Error,
}

impl Decision {
    /// The word audit lines and metric labels carry (docs/operations.md).
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::AuthFailed => "auth_failed",
            Decision::RateLimited => "rate_limited",
            Decision::Error => "error",
        }
    }
}

/// The identity as a header value: visible ASCII only (an identity from a JWT
/// claim may hold anything), `%XX` for every other byte and for `%` itself.
pub fn encode_identity(identity: &str) -> String {
    let mut out = String::with_capacity(identity.len());
    for b in identity.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Decision;

    #[test]
    fn decisions_are_the_documented_words() {
        let all = [Decision::Allow, Decision::Deny, Decision::AuthFailed, Decision::RateLimited, Decision::Error];
        let words: Vec<&str> = all.iter().map(|d| d.as_str()).collect();
        assert_eq!(words, ["allow", "deny", "auth_failed", "rate_limited", "error"]);
        let ops = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md")).unwrap();
        for w in words {
            assert!(ops.contains(&format!("`{w}`")), "docs/operations.md does not name the decision {w}");
        }
    }
}
