//! Config errors: where (a key path or the YAML position) and what to do.

use std::fmt;

/// Why a plugin configuration may not hold `${VAR}` in a credential.
pub const UNEXPANDED_SECRET: &str = "holds an unexpanded ${VAR}: the filter cannot read environment variables; \
     `mcpx run/render` expand them, or write the value (or its sha256:<hex> digest) into the plugin configuration";

/// A config error: where (a key path such as `servers[1].name`, or the YAML
/// position) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(super) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Turns serde_yaml's message into one that says where and what to do.
pub(super) fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    if msg.contains("unknown field") {
        format!("{msg}. Remove the key or fix its spelling (see docs/configuration.md)")
    } else {
        msg
    }
}
