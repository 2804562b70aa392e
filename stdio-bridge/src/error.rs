//! The one error type of the `mcpx` binary.
//!
//! An [`Error`] is a [`Kind`] (what went wrong, for callers that decide on
//! it), a message written for the operator (a config error names the key and
//! the fix), the file it is about if any, and a chain of context: what mcpx
//! was doing, outermost first. It reads as
//! `while reloading /etc/mcpx.yaml: /etc/mcpx.yaml: servers.api.url: ...`.
//!
//! Not here: the stdio bridge's request path, which has its own typed
//! errors (`bridge::child::CallError`, `bridge::upstream::Failure`) because
//! their text is the JSON-RPC error a client reads.
//!
//! Why not anyhow or thiserror: callers match on the kind (anyhow erases it),
//! the messages are all written here by hand (thiserror's derive would save a
//! dozen lines of `Display`), and the binary's errors never need a backtrace
//! or a foreign source chain. Sixty lines of our own cost less than a crate.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong. Every error of the binary exits `mcpx` with status 1;
/// the kind is for callers that react differently (and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `mcpx.yaml`, or the lock it names, is not valid.
    Config,
    /// A command-line flag or argument is wrong.
    Usage,
    /// A file, directory or socket on this machine could not be used.
    Io,
    /// Envoy: not found, did not start, refused a configuration, or exited.
    Envoy,
    /// A peer did not answer as it must: an MCP server, the control
    /// listener, Redis.
    Network,
    /// A bug in mcpx itself (e.g. a rendered document missing a part).
    Internal,
}

#[derive(Debug)]
pub struct Error {
    kind: Kind,
    message: String,
    /// The file the error is about. A config error is shown after it
    /// (`mcpx.yaml: servers.x.url: ...`).
    path: Option<PathBuf>,
    /// What mcpx was doing, innermost first (as it was added).
    context: Vec<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), path: None, context: Vec::new() }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config, message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Kind::Usage, message)
    }

    pub fn envoy(message: impl Into<String>) -> Self {
        Self::new(Kind::Envoy, message)
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self::new(Kind::Network, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, message)
    }

    /// `cannot {action} {path}: {error}`, e.g. `io("read", path, e)`.
    pub fn io(action: &str, path: &Path, e: impl fmt::Display) -> Self {
        let mut err = Self::new(Kind::Io, format!("cannot {action} {}: {e}", path.display()));
        err.path = Some(path.to_path_buf());
        err
    }

    /// An I/O failure that is about no file (a signal handler, a runtime).
    pub fn io_other(message: impl Into<String>) -> Self {
        Self::new(Kind::Io, message)
    }

    /// A config error found in `path`: shown as `path: message`.
    pub fn config_in(path: &Path, message: impl fmt::Display) -> Self {
        Self::config(message.to_string()).in_file(path)
    }

    /// Names the file this error is about (a config error is then shown
    /// after it). An error that already names its file keeps it.
    pub fn in_file(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// Appends a hint to the message (`"...; or check with --no-env"`).
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.message.push_str(hint);
        self
    }

    /// Adds what mcpx was doing: shown as `while {what}: ...`.
    pub fn context(mut self, what: impl Into<String>) -> Self {
        self.context.push(what.into());
        self
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The file the error is about, if any.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for what in self.context.iter().rev() {
            write!(f, "while {what}: ")?;
        }
        match (&self.path, self.kind) {
            (Some(p), Kind::Config) => write!(f, "{}: {}", p.display(), self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

/// `.context(...)` and `.with_context(|| ...)` on any `Result` whose error
/// is an [`Error`].
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.context(what))
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.context(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_while_x_then_the_file_then_the_message() {
        let e: Result<()> = Err(Error::config("servers.a.url is missing; add url: http://HOST:PORT/mcp"));
        let e = e
            .map_err(|e| e.in_file(Path::new("/etc/mcpx.yaml")))
            .context("rendering the Envoy configuration")
            .with_context(|| "reloading /etc/mcpx.yaml".to_string())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "while reloading /etc/mcpx.yaml: while rendering the Envoy configuration: \
             /etc/mcpx.yaml: servers.a.url is missing; add url: http://HOST:PORT/mcp"
        );
        assert_eq!(e.kind(), Kind::Config);
        assert_eq!(e.path(), Some(Path::new("/etc/mcpx.yaml")));
    }

    #[test]
    fn io_names_the_action_and_keeps_its_own_file() {
        let e = Error::io("read", Path::new("/x/lock"), "No such file").in_file(Path::new("/x/mcpx.yaml"));
        assert_eq!(e.to_string(), "cannot read /x/lock: No such file");
        assert_eq!((e.kind(), e.path()), (Kind::Io, Some(Path::new("/x/lock"))));
    }
}
