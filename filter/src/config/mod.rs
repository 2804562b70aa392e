//! The `mcpx.yaml` schema (docs/configuration.md), shared by the filter and the `mcpx` binary.
//!
//! One schema, two readers: `mcpx check`/`run` validate a file in
//! [`Mode::Gateway`] (backends need a `url` or a `command`), while the filter
//! validates its plugin configuration in [`Mode::Plugin`] (the mesh routes to
//! backends, so only names and policy matter). Unknown keys are rejected by
//! serde with the key and its line; semantic errors name the key path and the fix.
//!
//! - `schema` — the file's top level, servers, policy, clients, auth;
//! - `operations` — audit, rate limits, inspection, breaker, CORS, tracing,
//!   limits;
//! - `values` — single values: backend URLs, `host:port`, names, `${VAR}`;
//! - `validate` — parsing and the semantic rules;
//! - `error` — [`ConfigError`] and the messages that say what to do.

mod error;
mod operations;
mod schema;
mod validate;
mod values;

pub use error::*;
pub use operations::*;
pub use schema::*;
pub use values::*;

#[cfg(test)]
mod tests;
