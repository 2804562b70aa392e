//! mcpx filter: an MCP-aware proxy-wasm HTTP filter for Envoy.
//!
//! Everything but `glue` is host-independent and unit-tested natively; `glue`
//! is the thin proxy-wasm layer, compiled only for wasm. The picture of the
//! request and response paths is docs/architecture.md.
//!
//! # Layout
//!
//! The directories follow the request path; read them in this order:
//!
//! ```text
//! glue/         proxy-wasm only, translation: root (config bytes, ticks and
//!               call answers, handed to stream/jwks), http (one context per
//!               request, handed to stream/), host (every host call: the
//!               proxy-wasm `stream::Host`), shared, metrics (metric ids),
//!               waiting (held requests)
//! stream/       one request's state machine, generic over `stream::Host`:
//!               key wait, body, trailers, the answer, reports, metrics;
//!               jwks (the OAuth key-set fetcher: lease, shared document);
//!               `stream::fake` runs it natively (tests in stream/tests/)
//! gateway/      the pipeline, one file per step: admit (phase 0), headers
//!               (1), body (2), lists (the response phase)
//! request/      the request as read: RequestHead, Attributes, Decision (mod),
//!               hostmap, jsonrpc (strict body), fold, scalar, resource_uri
//! auth/         credentials: static digests, OAuth resource server, JWT, JWKS
//! endpoints/    the gateway's own answers: /health, /servers, control
//! headers/      Mcp-* headers against the body: mcpheaders, paramheaders
//! policy/       tool, resource and prompt policy: action (what a message
//!               asks for), args (argument rules), pattern (the regex rule)
//! response/     how an answer is read (mod: classify), sse (event streams)
//! tools_list/   every list in an answer: inspect, rewrite (one pass, spliced),
//!               scan (one tool read once: name, canonical text)
//! integrity/    tool pins: mod (rug pulls, shadowing, the lock), canonical
//!               (RFC 8785 text, SHA-256), store (shared data, CAS)
//!
//! Shared by every step:
//! config/       the mcpx.yaml schema, also used by the binary
//! names.rs      Envoy names shared with the mcpx renderer
//! envelope.rs   the JSON error envelope and its codes
//! ops.rs        the Origin rule, labels, Envoy's own replies, breaker series
//! clock.rs      the one clock (wall time)
//! ablation.rs   benchmark-only switches (never shipped)
//! test_rng.rs   the property tests' fixed random source (tests only)
//! lib.rs        this file: the layout and the no-panic lints
//! ```

// A panic kills the wasm VM for its worker thread: outside tests the filter
// may not unwrap, expect, panic or index unchecked (enforced by clippy in
// `make test`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

pub mod ablation;
pub mod auth;
pub mod clock;
pub mod config;
pub mod endpoints;
pub mod envelope;
pub mod gateway;
pub mod headers;
pub mod integrity;
pub mod names;
pub mod ops;
pub mod policy;
pub mod request;
pub mod response;
pub mod stream;
pub mod tools_list;

#[cfg(test)]
mod test_rng;

// On the host only with `--features lint-glue`, so clippy holds the glue to
// the same no-panic lints (`make unit`); it is never linked there.
#[cfg(any(target_arch = "wasm32", feature = "lint-glue"))]
mod glue;
