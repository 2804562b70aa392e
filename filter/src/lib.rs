//! mcpx filter: an MCP-aware proxy-wasm HTTP filter for Envoy.
//!
//! Everything but `glue` is host-independent and unit-tested natively; `glue`
//! is the thin proxy-wasm layer, compiled only for wasm.

// A panic kills the wasm VM for its worker thread: outside tests the filter
// may not unwrap, expect, panic or index unchecked (enforced by clippy in
// `make test`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod ablation;
pub mod auth;
pub mod config;
pub mod control;
pub mod endpoints;
pub mod envelope;
pub mod fold;
mod fold_table;
pub mod gateway;
pub mod health;
pub mod hostmap;
pub mod inspect;
pub mod integrity;
pub mod jsonrpc;
pub mod mcpheaders;
pub mod ops;
pub mod policy;
pub mod resource_uri;
pub mod scalar;
pub mod servers;
pub mod sse;
pub mod toolslist;

// On the host only with `--features lint-glue`, so clippy holds the glue to
// the same no-panic lints (`make unit`); it is never linked there.
#[cfg(any(target_arch = "wasm32", feature = "lint-glue"))]
mod glue;
