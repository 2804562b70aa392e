//! Filter-defined Prometheus series (docs/operations.md). Envoy files them
//! as `wasmcustom.<name>`; the rendered `stats_tags` turn the `.key.value`
//! pairs into labels, so
//! `mcpx_tool_calls_total.server.demo.tool.echo.decision.allow.client.anonymous`
//! is served as `mcpx_tool_calls_total{server="demo",tool="echo",...}`.
//!
//! Every label value is bounded (configured servers, known tools, fixed
//! method/decision words, configured clients) and sanitised: each distinct
//! name is a permanent Envoy stat. The host keeps the metric ids.
//!
//! Names are written into one buffer per VM, reused for every series of
//! every request: no `format!`, no label `String`s on the request path (the
//! labels are sanitised as they are written, from the config's or the
//! request's own `&str`s).

use super::Host;
use crate::names::metric::{
    AUTH_FAILURES, INTEGRITY_VIOLATIONS, RATE_LIMIT_HITS, REQUESTS, REQUEST_DURATION_MS, TOOL_CALLS,
};
use crate::names::{MAX_LABEL_CHARS, OTHER};
use crate::request::{Attributes, Decision};
use std::cell::RefCell;

/// The label-less counters, defined when the plugin is configured so they
/// are served (as 0) before any hit.
pub const STATIC_COUNTERS: [&str; 2] = [AUTH_FAILURES, RATE_LIMIT_HITS];

/// The labels of one finished MCP request, as borrowed raw values: each is
/// sanitised (or replaced by its bounded word) as the name is written.
pub struct RequestLabels<'a> {
    /// The configured server (`None`: `_unknown`).
    pub server: Option<&'a str>,
    /// The JSON-RPC method (`None`: `none`; an unknown one: `other`).
    pub method: Option<&'a str>,
    /// The tool's bounded label (already `_other` for an unknown tool).
    pub tool: Option<&'a str>,
    /// The caller's label: a configured client, `default`, `anonymous` or `_other`.
    pub client: Client<'a>,
}

/// The caller's metric label, decided without allocating.
#[derive(Clone, Copy)]
pub enum Client<'a> {
    /// A configured client name or `default`, sanitised when written.
    Named(&'a str),
    Anonymous,
    Other,
}

impl<'a> Client<'a> {
    /// The bounded label of a caller: a configured client name, `default`
    /// for the single anonymous token, `anonymous` without auth, `_other`
    /// for identities the config does not list (e.g. OAuth subjects). The
    /// same words as `ops::client_label`.
    pub fn of(config: &crate::config::Config, identity: Option<&'a str>) -> Self {
        match identity {
            None => Client::Anonymous,
            Some(id) if id == "default" || config.auth.clients.iter().any(|c| c.name == id) => Client::Named(id),
            Some(_) => Client::Other,
        }
    }
}

thread_local! {
    /// The series name being written (one per VM; a name is at most a few
    /// hundred bytes, so it stops growing after the first requests).
    static NAME: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes a name into the VM's buffer and hands it to `f`.
fn with_name<R>(write: impl FnOnce(&mut Name), f: impl FnOnce(&str) -> R) -> R {
    NAME.with(|buf| {
        // A name handed to the host is never re-entered here, but fall back
        // to a fresh buffer rather than panic if it ever were.
        match buf.try_borrow_mut() {
            Ok(mut s) => {
                s.clear();
                write(&mut Name(&mut s));
                f(&s)
            }
            Err(_) => {
                let mut s = String::new();
                write(&mut Name(&mut s));
                f(&s)
            }
        }
    })
}

struct Name<'a>(&'a mut String);

impl Name<'_> {
    fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }
    /// `.key.` then the value as `crate::names::label` makes it.
    fn label(&mut self, key: &str, value: &str) -> &mut Self {
        self.0.push('.');
        self.0.push_str(key);
        self.0.push('.');
        let safe = |c: char| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' };
        self.0.extend(value.chars().take(MAX_LABEL_CHARS).map(safe));
        self
    }
    /// `.key.` then a fixed word (already label-safe).
    fn word(&mut self, key: &str, value: &str) -> &mut Self {
        self.0.push('.');
        self.0.push_str(key);
        self.0.push('.');
        self.0.push_str(value);
        self
    }
    fn server(&mut self, server: Option<&str>) -> &mut Self {
        match server {
            Some(s) => self.label("server", s),
            None => self.word("server", "_unknown"),
        }
    }
    /// `ops::method_label`: a known method with `/` as `_`, else `other`/`none`.
    fn method(&mut self, method: Option<&str>) -> &mut Self {
        match method {
            Some(m) if crate::ops::KNOWN_METHODS.contains(&m) => {
                self.0.push_str(".method.");
                self.0.extend(m.chars().map(|c| if c == '/' { '_' } else { c }));
                self
            }
            Some(_) => self.word("method", "other"),
            None => self.word("method", "none"),
        }
    }
    fn client(&mut self, client: Client<'_>) -> &mut Self {
        match client {
            Client::Named(n) => self.label("client", n),
            Client::Anonymous => self.word("client", "anonymous"),
            Client::Other => self.word("client", OTHER),
        }
    }
    fn number(&mut self, key: &str, n: u64) -> &mut Self {
        use std::fmt::Write;
        self.word(key, "");
        let _ = write!(self.0, "{n}");
        self
    }
}

/// Counts one finished MCP request (called from `on_log`).
pub fn request<H: Host>(host: &mut H, labels: &RequestLabels<'_>, attrs: &Attributes, status: u64, duration_ms: u64) {
    let RequestLabels { server, method, tool, client } = *labels;
    with_name(
        |n| {
            n.raw(REQUESTS).server(server).method(method).number("status_code", status);
        },
        |name| host.add_counter(name, 1),
    );
    with_name(
        |n| {
            n.raw(REQUEST_DURATION_MS).server(server);
        },
        |name| host.record_histogram(name, duration_ms),
    );
    let decision = attrs.decision.map_or("none", Decision::as_str);
    if let Some(tool) = tool {
        with_name(
            |n| {
                // The tool label is already bounded and sanitised.
                n.raw(TOOL_CALLS).server(server).word("tool", tool).word("decision", decision).client(client);
            },
            |name| host.add_counter(name, 1),
        );
    }
    match attrs.decision {
        Some(Decision::AuthFailed) => host.add_counter(AUTH_FAILURES, 1),
        Some(Decision::RateLimited) => host.add_counter(RATE_LIMIT_HITS, 1),
        _ => {}
    }
}

/// Counts `n` integrity violations of one kind (a fixed word: `rug_pull`,
/// `shadowing`, `malformed`, `overflow`) for one bounded tool label (a
/// configured or learned tool, else `_other`), so a rug-pulling backend
/// cannot mint series or long labels.
pub fn integrity_violation<H: Host>(host: &mut H, server: &str, tool: &str, kind: &str, n: u64) {
    with_name(
        |b| {
            b.raw(INTEGRITY_VIOLATIONS).word("server", server).word("tool", tool).word("kind", kind);
        },
        |name| host.add_counter(name, n),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_written_as_the_ops_and_names_helpers_make_them() {
        let yaml =
            "servers:\n  - name: demo\nauth:\n  enabled: true\n  clients:\n    - { name: ci.bot, token: bot-token }\n";
        let gateway = crate::gateway::Gateway::from_plugin_config(yaml).unwrap_or_else(|e| panic!("{e}"));
        let config = gateway.config();
        let methods = [None, Some("tools/call"), Some("resources/templates/list"), Some("x/y"), Some("")];
        for m in methods {
            let got = with_name(
                |n| {
                    n.method(m);
                },
                str::to_string,
            );
            assert_eq!(got, format!(".method.{}", crate::ops::method_label(m)));
        }
        let long = "é.".repeat(80);
        for s in ["demo", "a.b c", long.as_str(), ""] {
            let got = with_name(
                |n| {
                    n.server(Some(s));
                },
                str::to_string,
            );
            assert_eq!(got, format!(".server.{}", crate::names::label(s)));
        }
        for id in [None, Some("default"), Some("ci.bot"), Some("someone")] {
            let got = with_name(
                |n| {
                    n.client(Client::of(config, id));
                },
                str::to_string,
            );
            assert_eq!(got, format!(".client.{}", crate::ops::client_label(config, id)));
        }
    }
}
