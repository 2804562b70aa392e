//! Envoy control: everything `mcpx run` and `mcpx render` do to Envoy.
//!
//! - [`render`]: the bootstrap for a validated config, one file per concern;
//! - [`snippets`]: `render --snippets`, the pieces for your own Envoy;
//! - [`dynamic`]: the xDS files (LDS, ECDS) Envoy watches, written atomically;
//! - [`files`]: the control socket and work directory `run` makes, private to this user;
//! - [`reload`]: SIGHUP / `--watch` reloads, checked against Envoy's counters;
//! - [`launch`]: finding Envoy and the filter, running Envoy as a supervised child;
//! - [`audit`]: the events the binary adds to the audit stream (start, reload).

pub mod audit;
pub mod dynamic;
pub mod files;
pub mod launch;
pub mod reload;
pub mod render;
pub mod snippets;
