//! Global rate limiting (`rate_limit.backend: global`): the buckets of
//! `mcpx.yaml` counted once for every gateway, by a service speaking Envoy's
//! `RateLimitService` gRPC protocol (docs/operations.md#global-rate-limits).
//!
//! - [`buckets`]: the buckets and their descriptor keys, the one definition
//!   both sides use;
//! - [`render`]: Envoy's side (the `envoy.filters.http.ratelimit` filter,
//!   the descriptors each MCP route sends, the gRPC cluster);
//! - [`service`]: `mcpx ratelimit`, the bundled service (limitador, Redis).

pub mod buckets;
pub mod render;
pub mod service;
