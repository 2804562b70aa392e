//! Tool, resource and prompt policy (docs/policy.md).
//!
//! A [`Policy`] is compiled once at configure time (regexes included). The
//! effective decision for a request is the server's policy AND the client's
//! override, each checked in turn, so an override can only narrow.
//!
//! `action` says what a message asks for (a tool call, a resource read, a
//! prompt); `args` holds the compiled argument rules of a tool and
//! `pattern` their `regex` rule; this file holds a compiled [`Policy`]
//! layer and the [`Effective`] pair judged.

use crate::config::PolicyConfig;
use crate::request::resource_uri;
use std::collections::{BTreeMap, BTreeSet};

mod action;
mod args;
pub mod pattern;

pub use action::{Action, InvalidParams};
use args::ArgCheck;

/// Why a message was refused. The message names the tool (or resource or
/// prompt) and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: DenyReason,
    pub message: String,
}

/// The rule that refused, as a stable short word for audit and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    DenyList,
    NotAllowed,
    ReadOnly,
    ArgumentRule,
    Integrity,
    /// A resource URI with dot segments or encoded separators (fail closed).
    ResourceUri,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::DenyList => "deny_list",
            DenyReason::NotAllowed => "not_allowed",
            DenyReason::ReadOnly => "read_only",
            DenyReason::ArgumentRule => "argument_rule",
            DenyReason::Integrity => "integrity",
            DenyReason::ResourceUri => "resource_uri",
        }
    }
}

fn deny(reason: DenyReason, message: String) -> Result<(), Denial> {
    Err(Denial { reason, message })
}

/// A compiled policy layer.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allow_tools: Option<BTreeSet<String>>,
    deny_tools: BTreeSet<String>,
    read_only: bool,
    rules: BTreeMap<String, Vec<ArgCheck>>,
    allow_resources: Vec<String>,
    deny_resources: Vec<String>,
    allow_prompts: Option<BTreeSet<String>>,
    deny_prompts: BTreeSet<String>,
}

/// Resource prefixes in the normal form URIs are compared in.
fn resource_prefixes(v: &[String], key: &str) -> Result<Vec<String>, String> {
    v.iter()
        .enumerate()
        .map(|(i, p)| {
            resource_uri::normalise(p).map_err(|why| format!("{key}[{i}]: {p:?} is not usable because {why}"))
        })
        .collect()
}

fn set_or_all(v: &[String]) -> Option<BTreeSet<String>> {
    (!v.is_empty()).then(|| v.iter().cloned().collect())
}

impl Policy {
    pub fn compile(p: &PolicyConfig) -> Result<Self, String> {
        let mut rules = BTreeMap::new();
        for (tool, rule) in &p.tool_rules {
            let checks = rule
                .args
                .iter()
                .map(|(arg, r)| {
                    ArgCheck::compile(arg, r).map_err(|e| format!("tool_rules.{tool}.args.{arg}.regex: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.insert(tool.clone(), checks);
        }
        Ok(Self {
            allow_tools: set_or_all(&p.allow_tools),
            deny_tools: p.deny_tools.iter().cloned().collect(),
            read_only: p.read_only,
            rules,
            allow_resources: resource_prefixes(&p.allow_resources, "allow_resources")?,
            deny_resources: resource_prefixes(&p.deny_resources, "deny_resources")?,
            allow_prompts: set_or_all(&p.allow_prompts),
            deny_prompts: p.deny_prompts.iter().cloned().collect(),
        })
    }

    /// Whether the tool may be called at all (ignoring arguments): the test
    /// used to filter `tools/list`.
    pub fn tool_visible(&self, tool: &str) -> bool {
        self.check_tool_name(tool).is_ok()
    }

    fn check_tool_name(&self, tool: &str) -> Result<(), Denial> {
        if self.deny_tools.contains(tool) {
            return deny(DenyReason::DenyList, format!("tool {tool:?} is denied by policy (deny_tools)"));
        }
        if let Some(allow) = &self.allow_tools {
            if !allow.contains(tool) {
                return deny(
                    DenyReason::NotAllowed,
                    format!("tool {tool:?} is not allowed by policy (not in allow_tools)"),
                );
            }
        }
        if self.read_only {
            return deny(DenyReason::ReadOnly, format!("tool {tool:?} cannot be called: the server is read_only"));
        }
        Ok(())
    }

    pub fn check(&self, action: &Action<'_>) -> Result<(), Denial> {
        match *action {
            Action::CallTool { name, args } => {
                self.check_tool_name(name)?;
                for c in self.rules.get(name).into_iter().flatten() {
                    c.check(name, args)?;
                }
                Ok(())
            }
            Action::ReadResource { uri } => {
                if self.allow_resources.is_empty() && self.deny_resources.is_empty() {
                    return Ok(());
                }
                // Compare normal forms; refuse what a backend might resolve
                // differently from the text (crate::request::resource_uri).
                let norm = match resource_uri::normalise(uri) {
                    Ok(n) => n,
                    Err(why) => {
                        return deny(
                            DenyReason::ResourceUri,
                            format!("resource {uri:?} is refused because {why} (resource rules apply to this server)"),
                        )
                    }
                };
                if let Some(p) = self.deny_resources.iter().find(|p| norm.starts_with(p.as_str())) {
                    return deny(
                        DenyReason::DenyList,
                        format!("resource {uri:?} is denied by policy (deny_resources {p:?})"),
                    );
                }
                if !self.allow_resources.is_empty()
                    && !self.allow_resources.iter().any(|p| norm.starts_with(p.as_str()))
                {
                    return deny(
                        DenyReason::NotAllowed,
                        format!("resource {uri:?} is not allowed by policy (no allow_resources prefix matches)"),
                    );
                }
                Ok(())
            }
            Action::GetPrompt { name } => {
                if self.deny_prompts.contains(name) {
                    return deny(DenyReason::DenyList, format!("prompt {name:?} is denied by policy (deny_prompts)"));
                }
                if matches!(&self.allow_prompts, Some(a) if !a.contains(name)) {
                    return deny(
                        DenyReason::NotAllowed,
                        format!("prompt {name:?} is not allowed by policy (not in allow_prompts)"),
                    );
                }
                Ok(())
            }
            Action::Other => Ok(()),
        }
    }
}

/// The layers in force for one request: the server's and, for an identified
/// client with an override, the client's.
#[derive(Debug, Clone, Copy)]
pub struct Effective<'a> {
    pub server: &'a Policy,
    pub client: Option<&'a Policy>,
}

impl Effective<'_> {
    pub fn check(&self, action: &Action<'_>) -> Result<(), Denial> {
        self.server.check(action)?;
        match self.client {
            Some(c) => c.check(action),
            None => Ok(()),
        }
    }

    pub fn tool_visible(&self, tool: &str) -> bool {
        self.server.tool_visible(tool) && self.client.is_none_or(|c| c.tool_visible(tool))
    }
}

#[cfg(test)]
mod tests;
