//! mcpx filter: an MCP-aware proxy-wasm HTTP filter for Envoy.
//!
//! Everything but `glue` is host-independent and unit-tested natively; `glue`
//! is the thin proxy-wasm layer, compiled only for wasm.

pub mod config;
pub mod control;
pub mod endpoints;
pub mod envelope;
pub mod gateway;
pub mod health;
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

#[cfg(target_arch = "wasm32")]
mod glue;
