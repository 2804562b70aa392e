//! mcpx filter: an MCP-aware proxy-wasm HTTP filter for Envoy.
//!
//! Everything but `glue` is host-independent and unit-tested natively; `glue`
//! is the thin proxy-wasm layer, compiled only for wasm. The picture of the
//! request and response paths is docs/architecture.md.
//!
//! # Layout
//!
//! In the order a request meets them:
//!
//! - `glue/` — proxy-wasm only: `root` (config, ticks), `http` (one context
//!   per request), `host` (every host call), `shared`, `metrics`, `health`,
//!   `jwks`, `waiting`, `known_tools`. Carries out what the core decides.
//! - `request` — the request types every phase reads (a leaf module).
//! - `names` — Envoy names shared with the `mcpx` renderer.
//! - `gateway` — the pipeline, in order: admit, headers, body, response plan.
//!   `endpoints` (`/health`, `/servers`), `auth/` (credentials, OAuth).
//! - Body: `jsonrpc` (strict parse, with `fold`/`fold_table` for case-folded
//!   keys), `mcpheaders`, `policy` (with `scalar`, `resource_uri`).
//! - Response: `inspect` (every list in an answer), `toolslist` (rewrite),
//!   `toolscan` (one tool read once: checks, canonical hash),
//!   `integrity` (pins), `sse` (event streams).
//! - Shared pieces: `config` (the schema, also used by the binary),
//!   `envelope` (the JSON error envelope), `ops` (Origin rule, labels,
//!   Envoy's own replies), `hostmap`, `health`, `servers`, `control`.

// A panic kills the wasm VM for its worker thread: outside tests the filter
// may not unwrap, expect, panic or index unchecked (enforced by clippy in
// `make test`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod ablation;
pub mod auth;
pub mod clock;
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
pub mod headervalue;
pub mod mcpheaders;
pub mod names;
pub mod ops;
pub mod paramheaders;
pub mod policy;
pub mod request;
pub mod resource_uri;
pub mod response;
pub mod scalar;
pub mod servers;
pub mod sse;
pub mod toolscan;
pub mod toolslist;

// On the host only with `--features lint-glue`, so clippy holds the glue to
// the same no-panic lints (`make unit`); it is never linked there.
#[cfg(any(target_arch = "wasm32", feature = "lint-glue"))]
mod glue;
