//! Operator commands: what an operator runs against a config or a running
//! gateway, besides `run` and `render`.
//!
//! - [`baseline`]: `mcpx baseline show/reset` over the control socket;
//! - [`pin`]: `mcpx pin`, the tools of every server written to, checked
//!   against or updated in `mcpx.lock`;
//! - [`lockfile`]: the `mcpx.lock` text format.

pub mod baseline;
pub mod lockfile;
pub mod pin;
